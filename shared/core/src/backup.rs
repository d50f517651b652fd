//! Backups: the request, the record written first, the snapshots issued per instance as
//! one crash-consistent group, and the polling that carries a point to a final status.
//!
//! Crash safety: the record is written (Pending, with a start lease) before any cloud
//! call. If the invocation dies before it saved the snapshot ids, poll-status takes over
//! once the lease ran out and first adopts the snapshots already tagged with the backup
//! id, so a retried start never snapshots twice.

use std::collections::{BTreeMap, HashMap};

use chrono::Duration;
use serde::Deserialize;
use tracing::{info, warn};

use crate::cloud::{tag, Cloud, CloudError, Inventory, SnapshotState, SnapshotStatus, Tags, VolumeSelection};
use crate::error::{Error, Result};
use crate::model::{BackupItem, BackupRecord, Replication, ResourceKind, Selection, Timestamp, Trigger};
use crate::records::start_lease;
use crate::status::{ItemStatus, JobStatus};
use crate::store::StoreError;
use crate::validate::{self, MAX_INSTANCES_PER_BACKUP};
use crate::Snapnest;

/// Body of `POST /service-instances/{id}/backups`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    pub client_token: Option<String>,
    pub instance_ids: Option<Vec<String>>,
    pub volume_ids: Option<Vec<String>>,
    pub retention_days: Option<u32>,
    pub never_expire: Option<bool>,
    pub destination_region: Option<String>,
    /// Retention of the replicas in the destination region; defaults to the point's.
    pub destination_retention_days: Option<u32>,
}

/// Who asks for a backup besides a user: a policy run or an in-place restore.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupOrigin {
    pub trigger: Trigger,
    pub policy_id: Option<String>,
}

impl BackupOrigin {
    pub fn manual() -> Self {
        Self { trigger: Trigger::Manual, policy_id: None }
    }
}

/// A validated backup request.
#[derive(Debug, Clone, PartialEq)]
struct BackupPlan {
    selection: Selection,
    expires_at: Option<Timestamp>,
    replication: Option<(String, Option<Timestamp>)>,
}

impl BackupRequest {
    fn validate(&self, home_region: &str, default_retention_days: u32, now: Timestamp) -> Result<BackupPlan> {
        if let Some(token) = &self.client_token {
            validate::identifier("client_token", token)?;
        }
        let instance_ids = self.instance_ids.clone().unwrap_or_default();
        if instance_ids.len() > MAX_INSTANCES_PER_BACKUP {
            return Err(Error::bad_request(
                "TooManyInstances",
                format!(
                    "instance_ids: {} instances given; at most {MAX_INSTANCES_PER_BACKUP} can be backed up in one request",
                    instance_ids.len()
                ),
            ));
        }
        for id in &instance_ids {
            validate::prefixed_id("instance_ids", "i", id)?;
        }
        let volume_ids = self.volume_ids.clone().unwrap_or_default();
        for id in &volume_ids {
            validate::prefixed_id("volume_ids", "vol", id)?;
        }
        let never_expire = self.never_expire.unwrap_or(false);
        let expires_at = match (self.retention_days, never_expire) {
            (Some(_), true) => {
                return Err(Error::bad_request(
                    "InvalidRetention",
                    "retention_days and never_expire cannot be given together",
                ))
            }
            (None, true) => None,
            (days, false) => {
                let days = days.unwrap_or(default_retention_days);
                validate::retention_days("retention_days", days)?;
                Some(now + Duration::days(days.into()))
            }
        };
        let replication = match &self.destination_region {
            None if self.destination_retention_days.is_some() => {
                return Err(Error::bad_request("NoDestinationRegion", "No destination region is specified."))
            }
            None => None,
            Some(region) => {
                validate::region("destination_region", region)?;
                if region == home_region {
                    return Err(Error::bad_request(
                        "InvalidRegion",
                        format!("destination_region: '{region}' is the region of the service instance itself"),
                    ));
                }
                let replica_expiry = match self.destination_retention_days {
                    Some(days) => {
                        validate::retention_days("destination_retention_days", days)?;
                        Some(now + Duration::days(days.into()))
                    }
                    None => expires_at,
                };
                Some((region.clone(), replica_expiry))
            }
        };
        Ok(BackupPlan { selection: Selection { instance_ids, volume_ids }, expires_at, replication })
    }
}

/// The items a backup will hold: the selected instances' volumes, then the databases.
fn plan_items(inventory: &Inventory, selection: &Selection, service_instance_id: &str) -> Result<Vec<BackupItem>> {
    for id in &selection.instance_ids {
        if !inventory.instances.iter().any(|i| &i.instance_id == id) {
            return Err(Error::not_found("instance", format!("{id} (not in service instance {service_instance_id})")));
        }
    }
    for id in &selection.volume_ids {
        if !inventory.instances.iter().flat_map(|i| &i.volumes).any(|v| &v.volume_id == id) {
            return Err(Error::not_found(
                "volume",
                format!("{id} (not attached in service instance {service_instance_id})"),
            ));
        }
    }
    let instances: Vec<_> = inventory
        .instances
        .iter()
        .filter(|i| selection.instance_ids.is_empty() || selection.instance_ids.contains(&i.instance_id))
        .filter(|i| {
            selection.volume_ids.is_empty() || i.volumes.iter().any(|v| selection.volume_ids.contains(&v.volume_id))
        })
        .collect();
    if instances.len() > MAX_INSTANCES_PER_BACKUP {
        return Err(Error::bad_request(
            "TooManyInstances",
            format!(
                "service instance {service_instance_id} has {} instances; at most {MAX_INSTANCES_PER_BACKUP} can be backed up in one request (choose them with instance_ids)",
                instances.len()
            ),
        ));
    }
    let mut items = Vec::new();
    for instance in instances {
        for volume in &instance.volumes {
            if !selection.volume_ids.is_empty() && !selection.volume_ids.contains(&volume.volume_id) {
                continue;
            }
            items.push(volume_item(
                &volume.volume_id,
                &instance.instance_id,
                &volume.device,
                &instance.availability_zone,
                volume.size_gib,
            ));
        }
    }
    for db in &inventory.databases {
        let mut item = BackupItem::new(&db.db_id, ResourceKind::Database);
        item.availability_zone = db.availability_zone.clone();
        items.push(item);
    }
    if items.is_empty() {
        return Err(Error::not_found(
            "service instance",
            format!("{service_instance_id} (no instance, volume or database carries its tag)"),
        ));
    }
    Ok(items)
}

fn volume_item(volume_id: &str, instance_id: &str, device: &str, availability_zone: &str, size_gib: u64) -> BackupItem {
    let mut item = BackupItem::new(volume_id, ResourceKind::Volume);
    item.instance_id = Some(instance_id.to_owned());
    item.device = Some(device.to_owned());
    item.availability_zone = Some(availability_zone.to_owned());
    item.size_bytes = size_gib << 30;
    item
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

/// The tags on every snapshot of a point (SPEC "Backup" 3).
pub fn snapshot_tags(record: &BackupRecord) -> Tags {
    let expiry = record.expires_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
    Tags::from([
        (tag::BACKUP_ID.to_owned(), record.backup_id.clone()),
        (tag::SERVICE_INSTANCE.to_owned(), record.service_instance_id.clone()),
        (tag::EXPIRES_AT.to_owned(), expiry),
        (tag::MANAGED.to_owned(), "true".to_owned()),
    ])
}

pub(crate) fn new_record_id(prefix: &str) -> String {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &uuid[..20])
}

impl Snapnest {
    /// Starts a backup of a service instance: validates, discovers, writes the record, issues
    /// the snapshots. Returns the record (status `Running`, or terminal if every call failed).
    /// A retried request with the same client token returns the first request's record.
    pub async fn create_backup(
        &self,
        service_instance_id: &str,
        request: &BackupRequest,
        origin: BackupOrigin,
        now: Timestamp,
    ) -> Result<BackupRecord> {
        validate::identifier("service instance id", service_instance_id)?;
        let cloud = self.clouds.home();
        let plan = request.validate(cloud.region(), self.settings.default_retention_days, now)?;
        let inventory = cloud.discover(&self.settings.tag_key, service_instance_id).await?;
        let items = plan_items(&inventory, &plan.selection, service_instance_id)?;

        let mut record = BackupRecord {
            backup_id: new_record_id("bk"),
            service_instance_id: service_instance_id.to_owned(),
            region: cloud.region().to_owned(),
            status: JobStatus::Pending,
            trigger: origin.trigger,
            policy_id: origin.policy_id,
            started_at: now,
            finished_at: None,
            expires_at: plan.expires_at,
            snapshot_bytes: 0,
            items,
            replication: plan.replication.map(|(region, expires_at)| Replication {
                region,
                status: JobStatus::Pending,
                expires_at,
                items: Vec::new(),
            }),
            damaged: false,
            cleanup_pending: false,
            error: None,
            selection: plan.selection,
            client_token: request.client_token.clone(),
            start_lease_until: Some(now + start_lease()),
            version: 0,
        };
        match self.insert(&mut record, request.client_token.as_deref()).await {
            Ok(()) => {}
            Err(StoreError::TokenUsed { existing_id }) => return self.load(&existing_id).await,
            Err(StoreError::LockHeld { holder, .. }) => {
                return Err(Error::conflict(
                    "BackupAlreadyRunning",
                    format!(
                    "backup {holder} of service instance {service_instance_id} is still running; wait for it to finish"
                ),
                ))
            }
            Err(other) => return Err(other.into()),
        }
        info!(backup_id = %record.backup_id, service_instance_id, items = record.items.len(), "backup record written");
        self.issue_snapshots(&mut record, cloud.as_ref(), now).await;
        match self.save(&mut record).await {
            Ok(()) => Ok(record),
            // poll-status took the backup over (this invocation was too slow); its record wins.
            Err(Error::Conflict { .. }) => self.load(&record.backup_id).await,
            Err(e) => Err(e),
        }
    }

    /// Issues the snapshot calls for every item that has none yet. Cloud errors end up on
    /// the items they concern; the rest of the point goes on.
    async fn issue_snapshots(&self, record: &mut BackupRecord, cloud: &dyn Cloud, now: Timestamp) {
        let tags = snapshot_tags(record);
        // Snapshots a crashed earlier attempt already started carry the backup id: adopt them.
        let adopted: HashMap<String, String> = match cloud.find_snapshots(tag::BACKUP_ID, &record.backup_id).await {
            Ok(found) => found.into_iter().map(|s| (s.volume_id, s.snapshot_id)).collect(),
            Err(e) => {
                warn!(backup_id = %record.backup_id, error = %e, "cannot look for earlier snapshots; will retry on the next poll");
                return;
            }
        };
        for item in
            record.items.iter_mut().filter(|i| i.status == ItemStatus::Pending && i.kind == ResourceKind::Volume)
        {
            if let Some(snapshot_id) = adopted.get(&item.resource_id) {
                item.snapshot_id = Some(snapshot_id.clone());
                item.status = ItemStatus::Running;
            }
        }

        let mut by_instance: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (n, item) in record.items.iter().enumerate() {
            if item.status == ItemStatus::Pending && item.kind == ResourceKind::Volume {
                by_instance.entry(item.instance_id.clone().unwrap_or_default()).or_default().push(n);
            }
        }
        for (instance_id, positions) in by_instance {
            if self.was_cancelled(&record.backup_id).await {
                info!(backup_id = %record.backup_id, "backup cancelled while starting: no more snapshots issued");
                return;
            }
            self.snapshot_instance_items(record, cloud, &instance_id, &positions, &tags).await;
        }

        for item in
            record.items.iter_mut().filter(|i| i.status == ItemStatus::Pending && i.kind == ResourceKind::Database)
        {
            let name = db_snapshot_name(&record.backup_id, &item.resource_id);
            match cloud.snapshot_database(&item.resource_id, &name, &tags).await {
                Ok(()) | Err(CloudError::AlreadyExists(_)) => {
                    item.snapshot_id = Some(name);
                    item.status = ItemStatus::Running;
                }
                Err(e) => item.fail(e.to_string()),
            }
        }
        record.start_lease_until = None;
        record.refresh_status(now);
    }

    /// Whether the stored record says the backup was cancelled (checked between instances,
    /// so a cancel stops a long start from issuing more snapshots).
    async fn was_cancelled(&self, backup_id: &str) -> bool {
        matches!(self.load::<BackupRecord>(backup_id).await, Ok(stored) if stored.status == JobStatus::Cancelled)
    }

    /// One instance: a crash-consistent group when the instance allows it, else one
    /// snapshot per volume (and the items say the group was not consistent).
    async fn snapshot_instance_items(
        &self,
        record: &mut BackupRecord,
        cloud: &dyn Cloud,
        instance_id: &str,
        positions: &[usize],
        tags: &Tags,
    ) {
        let volumes = if record.selection.volume_ids.is_empty() {
            VolumeSelection::All
        } else {
            VolumeSelection::Only(positions.iter().map(|&n| record.items[n].resource_id.clone()).collect())
        };
        match cloud.snapshot_instance(instance_id, &volumes, tags).await {
            Ok(started) => {
                let template = record.items[positions[0]].clone();
                for snapshot in started {
                    match positions.iter().find(|&&n| record.items[n].resource_id == snapshot.volume_id) {
                        Some(&n) => {
                            let item = &mut record.items[n];
                            item.snapshot_id = Some(snapshot.snapshot_id);
                            item.status = ItemStatus::Running;
                            item.consistent_group = true;
                        }
                        // "Protect All Disks": a volume attached since discovery is part of the group.
                        None => {
                            let mut item = volume_item(
                                &snapshot.volume_id,
                                instance_id,
                                "",
                                template.availability_zone.as_deref().unwrap_or(""),
                                0,
                            );
                            item.device = None;
                            item.snapshot_id = Some(snapshot.snapshot_id);
                            item.status = ItemStatus::Running;
                            item.consistent_group = true;
                            record.items.push(item);
                        }
                    }
                }
                for &n in positions {
                    if record.items[n].status == ItemStatus::Pending {
                        record.items[n].fail("The volume is no longer attached to the instance.");
                    }
                }
            }
            Err(CloudError::GroupUnsupported(reason)) => {
                info!(backup_id = %record.backup_id, instance_id, %reason, "no consistent group; snapshotting volumes one by one");
                for &n in positions {
                    let item = &mut record.items[n];
                    match cloud.snapshot_volume(&item.resource_id, tags).await {
                        Ok(started) => {
                            item.snapshot_id = Some(started.snapshot_id);
                            item.status = ItemStatus::Running;
                            item.consistent_group = false;
                        }
                        Err(e) => item.fail(e.to_string()),
                    }
                }
            }
            Err(e) => {
                for &n in positions {
                    record.items[n].fail(e.to_string());
                }
            }
        }
    }

    /// One poll of a backup: takes over a start whose invoker died, and folds the cloud's
    /// snapshot states into the items. Saves when anything changed.
    pub async fn advance_backup(&self, mut record: BackupRecord, now: Timestamp) -> Result<BackupRecord> {
        let cloud = self.clouds.region(&record.region)?;
        let before = record.clone();
        match record.status {
            JobStatus::Pending => {
                if record.start_lease_until.is_some_and(|lease| lease > now) {
                    return Ok(record);
                }
                // Claim the start first: of two pollers, only one wins the version.
                record.start_lease_until = Some(now + start_lease());
                self.save(&mut record).await?;
                warn!(backup_id = %record.backup_id, "finishing a backup whose start was interrupted");
                self.issue_snapshots(&mut record, cloud.as_ref(), now).await;
            }
            JobStatus::Running => self.poll_snapshots(&mut record, cloud.as_ref(), now).await?,
            _ => return Ok(record),
        }
        if record != before {
            self.save(&mut record).await?;
            if record.status.is_terminal() {
                log_finished(&record);
            }
        }
        Ok(record)
    }

    async fn poll_snapshots(&self, record: &mut BackupRecord, cloud: &dyn Cloud, now: Timestamp) -> Result<()> {
        let running = record
            .items
            .iter()
            .filter(|i| i.status == ItemStatus::Running)
            .filter_map(|i| Some((i.kind, i.snapshot_id.clone()?)));
        let reported = describe_snapshots_of(cloud, running).await?;
        for item in record.items.iter_mut().filter(|i| i.status == ItemStatus::Running) {
            let Some(snapshot_id) = item.snapshot_id.clone() else { continue };
            match reported.get(&snapshot_id) {
                None => item.fail(format!("snapshot {snapshot_id} disappeared before it completed")),
                Some(status) => {
                    item.progress = status.progress;
                    match &status.state {
                        SnapshotState::Pending => {}
                        SnapshotState::Completed => {
                            item.status = ItemStatus::Succeeded;
                            item.progress = 100;
                            if status.size_bytes > 0 {
                                item.size_bytes = status.size_bytes;
                            }
                        }
                        SnapshotState::Error(cause) => item.fail(cause.clone()),
                    }
                }
            }
        }
        record.refresh_status(now);
        Ok(())
    }

    /// A page of a service instance's backups, newest first.
    pub async fn list_backups(
        &self,
        service_instance_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<BackupRecord>, Option<String>)> {
        validate::identifier("service instance id", service_instance_id)?;
        let page = self.store.list_owned(crate::store::Collection::Backups, service_instance_id, limit, cursor).await?;
        let records = page.documents.into_iter().map(crate::records::from_document).collect::<Result<_>>()?;
        Ok((records, page.next_cursor))
    }
}

/// What the cloud reports of EBS and DB snapshots, by id, in one batched describe per kind
/// (none for a kind with no id). Ids the cloud does not know are absent.
pub(crate) async fn describe_snapshots_of(
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

/// One structured line per finished point, with a CloudWatch embedded-metric block so a
/// failed backup can raise an alarm without a metrics API call.
fn log_finished(record: &BackupRecord) {
    let failed = matches!(record.status, JobStatus::Failed | JobStatus::PartiallyFailed) as u8;
    let failed_items: Vec<_> = record
        .items
        .iter()
        .filter(|i| i.status == ItemStatus::Failed)
        .map(|i| format!("{}: {}", i.resource_id, i.error.as_deref().unwrap_or("unknown")))
        .collect();
    // CloudWatch extracts a metric only from a log line whose top level is the embedded
    // metric format object, so it is printed on its own line, not as a tracing field.
    let emf = serde_json::json!({
        "level": "INFO",
        "_aws": {
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "snapnest",
                "Dimensions": [["ServiceInstance"]],
                "Metrics": [{"Name": "BackupFailed", "Unit": "Count"}, {"Name": "BackupSnapshotBytes", "Unit": "Bytes"}]
            }]
        },
        "ServiceInstance": record.service_instance_id,
        "BackupFailed": failed,
        "BackupSnapshotBytes": record.snapshot_bytes,
    });
    println!("{emf}");
    if failed == 1 {
        warn!(backup_id = %record.backup_id, service_instance_id = %record.service_instance_id, status = record.status.as_str(), failed_items = ?failed_items, "backup finished with failures");
    } else {
        info!(backup_id = %record.backup_id, service_instance_id = %record.service_instance_id, status = record.status.as_str(), snapshot_bytes = record.snapshot_bytes, "backup finished");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn requests_are_validated_before_anything_happens() {
        let now = Utc::now();
        let ok = |r: BackupRequest| r.validate("us-east-1", 7, now);
        let plan = ok(BackupRequest::default()).unwrap();
        assert_eq!(plan.expires_at, Some(now + Duration::days(7)));
        assert_eq!(ok(BackupRequest { never_expire: Some(true), ..Default::default() }).unwrap().expires_at, None);

        let too_many = BackupRequest {
            instance_ids: Some((0..100).map(|n| format!("i-{n:08x}")).collect()),
            ..Default::default()
        };
        assert!(matches!(ok(too_many), Err(Error::BadRequest { code: "TooManyInstances", .. })));
        let ninety_nine =
            BackupRequest { instance_ids: Some((0..99).map(|n| format!("i-{n:08x}")).collect()), ..Default::default() };
        assert!(ok(ninety_nine).is_ok());
        for bad in [
            BackupRequest { retention_days: Some(0), ..Default::default() },
            BackupRequest { retention_days: Some(65_537), ..Default::default() },
            BackupRequest { retention_days: Some(3), never_expire: Some(true), ..Default::default() },
            BackupRequest { destination_region: Some("mars-1".into()), ..Default::default() },
            BackupRequest { destination_region: Some("us-east-1".into()), ..Default::default() },
            BackupRequest { destination_retention_days: Some(3), ..Default::default() },
            BackupRequest { instance_ids: Some(vec!["vol-123".into()]), ..Default::default() },
            BackupRequest { client_token: Some("has space".into()), ..Default::default() },
        ] {
            assert!(matches!(ok(bad.clone()), Err(Error::BadRequest { .. })), "{bad:?}");
        }
        let replicated = ok(BackupRequest {
            destination_region: Some("us-west-2".into()),
            destination_retention_days: Some(30),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(replicated.replication, Some(("us-west-2".into(), Some(now + Duration::days(30)))));
    }

    #[test]
    fn db_snapshot_names_are_valid_rds_identifiers() {
        assert_eq!(db_snapshot_name("bk-1", "orders--db_x"), "snapnest-bk-1-orders-dbx");
        assert!(db_snapshot_name("bk", &"a".repeat(300)).len() <= 255);
        assert!(!db_snapshot_name("bk", "db-").ends_with('-'));
    }
}
