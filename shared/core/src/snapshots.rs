//! What every lifecycle does with snapshots the same way: how they are tagged and named,
//! described in batches, and deleted.

use std::collections::HashMap;

use crate::cloud::{tag, Cloud, CloudError, CloudResult, DeleteOutcome, SnapshotStatus, Tags};
use crate::model::{BackupRecord, ResourceKind, Timestamp};

/// The tags on every snapshot of a point (SPEC "Backup" 3).
pub fn snapshot_tags(record: &BackupRecord) -> Tags {
    Tags::from([
        (tag::BACKUP_ID.to_owned(), record.backup_id.to_string()),
        (tag::SERVICE_INSTANCE.to_owned(), record.service_instance_id.clone()),
        (tag::EXPIRES_AT.to_owned(), expiry_tag(record.expires_at)),
        (tag::MANAGED.to_owned(), "true".to_owned()),
    ])
}

/// The tags on the copies of a point's snapshots in its replication region: the point's,
/// with the copies' own expiry.
pub fn replica_tags(record: &BackupRecord) -> Tags {
    let mut tags = snapshot_tags(record);
    let expires_at = record.replication.as_ref().and_then(|r| r.expires_at);
    tags.insert(tag::EXPIRES_AT.to_owned(), expiry_tag(expires_at));
    tags
}

fn expiry_tag(expires_at: Option<Timestamp>) -> String {
    expires_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
}

/// The RDS snapshot identifier of a database in a backup: deterministic, so a retried
/// `CreateDBSnapshot` meets the first one. RDS wants letters, digits and single hyphens.
pub fn db_snapshot_name(backup_id: &str, db_id: &str) -> String {
    let mut name = format!("snapnest-{backup_id}-{db_id}");
    name.retain(|c| c.is_ascii_alphanumeric() || c == '-');
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    name.trim_end_matches('-').chars().take(255).collect()
}

/// What the cloud reports of EBS and DB snapshots, by id, in one batched describe per kind
/// (none for a kind with no id). Ids the cloud does not know are absent.
pub async fn describe_snapshots(
    cloud: &dyn Cloud,
    snapshots: impl IntoIterator<Item = (ResourceKind, String)>,
) -> Result<HashMap<String, SnapshotStatus>, CloudError> {
    let (mut volume_ids, mut db_ids) = (Vec::new(), Vec::new());
    for (kind, id) in snapshots {
        match kind {
            ResourceKind::Volume => volume_ids.push(id),
            ResourceKind::Database => db_ids.push(id),
        }
    }
    let mut reported = HashMap::new();
    if !volume_ids.is_empty() {
        let found = cloud.describe_snapshots(&volume_ids).await?;
        reported.extend(found.into_iter().map(|s| (s.snapshot_id.clone(), s)));
    }
    if !db_ids.is_empty() {
        let found = cloud.describe_db_snapshots(&db_ids).await?;
        reported.extend(found.into_iter().map(|s| (s.snapshot_id.clone(), s)));
    }
    Ok(reported)
}

/// What the cloud reports of the running snapshots of many backups of one region, in as few
/// calls as it allows: the EBS snapshots listed by their backup-id tag (a thousand a page),
/// any running one the listing missed described by id (a tag filter may lag a snapshot made
/// seconds ago, and one that is gone must be told from one not listed yet), and the DB
/// snapshots by id. Completed snapshots of those backups come along; callers look up theirs.
pub async fn describe_running(
    cloud: &dyn Cloud,
    backups: &[&BackupRecord],
) -> Result<HashMap<String, SnapshotStatus>, CloudError> {
    let (mut backup_ids, mut running) = (Vec::new(), Vec::new());
    for backup in backups {
        let of_backup = crate::backup::lifecycle::running_snapshots(backup);
        if of_backup.iter().any(|(kind, _)| *kind == ResourceKind::Volume) {
            backup_ids.push(backup.backup_id.to_string());
        }
        running.extend(of_backup);
    }
    let mut reported = HashMap::new();
    if !backup_ids.is_empty() {
        let listed = cloud.describe_snapshots_tagged(tag::BACKUP_ID, &backup_ids).await?;
        reported.extend(listed.into_iter().map(|s| (s.snapshot_id.clone(), s)));
    }
    // The DB snapshots, and any EBS snapshot the listing missed, by id.
    let unlisted = running.into_iter().filter(|(_, id)| !reported.contains_key(id));
    let by_id = describe_snapshots(cloud, unlisted).await?;
    reported.extend(by_id);
    Ok(reported)
}

/// Deletes an EBS or a DB snapshot.
pub async fn delete_snapshot(cloud: &dyn Cloud, kind: ResourceKind, snapshot_id: &str) -> CloudResult<DeleteOutcome> {
    match kind {
        ResourceKind::Volume => cloud.delete_snapshot(snapshot_id).await,
        ResourceKind::Database => cloud.delete_db_snapshot(snapshot_id).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_snapshot_names_are_valid_rds_identifiers() {
        assert_eq!(db_snapshot_name("bk-1", "orders--db_x"), "snapnest-bk-1-orders-dbx");
        assert!(db_snapshot_name("bk", &"a".repeat(300)).len() <= 255);
        assert!(!db_snapshot_name("bk", "db-").ends_with('-'));
    }
}
