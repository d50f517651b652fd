//! Records for the lifecycles' unit tests.

use chrono::Utc;

use crate::ids::BackupId;
use crate::model::{BackupItem, BackupRecord, ReplicaItem, Replication, Selection, Trigger};
use crate::status::ItemStatus;
use crate::status::JobStatus;

/// A manual backup point of `items` in us-east-1, just started (`Pending`), never expiring.
pub fn backup_point(items: Vec<BackupItem>) -> BackupRecord {
    let now = Utc::now();
    BackupRecord {
        backup_id: BackupId::generate(),
        service_instance_id: "si-1".into(),
        region: "us-east-1".into(),
        status: JobStatus::Pending,
        trigger: Trigger::Manual,
        policy_id: None,
        started_at: now,
        finished_at: None,
        expires_at: None,
        snapshot_bytes: 0,
        items,
        requested_by: None,
        changes: Vec::new(),
        skipped: Vec::new(),
        verified_at: None,
        replication: None,
        damaged: false,
        cleanup_pending: false,
        expiring_since: None,
        restores_running: Vec::new(),
        expiry_lease: None,
        owners: Vec::new(),
        error: None,
        selection: Selection::default(),
        client_token: None,
        start_lease_until: None,
        version: 1,
        stored_rows: Default::default(),
    }
}

/// A finished replication to `region` of every item of `items`, each copy named
/// `<snapshot>-<suffix>`.
pub fn replicated(items: &[BackupItem], region: &str, suffix: &str) -> Replication {
    let copies = items
        .iter()
        .map(|i| ReplicaItem {
            resource_id: i.resource_id.clone(),
            kind: i.kind,
            source_snapshot_id: i.snapshot_id.clone().unwrap_or_default(),
            replica_snapshot_id: Some(format!("{}-{suffix}", i.snapshot_id.clone().unwrap_or_default())),
            status: ItemStatus::Succeeded,
            progress: 100,
            error: None,
            attempts: 1,
            option_group: None,
        })
        .collect();
    Replication { region: region.into(), status: JobStatus::Succeeded, expires_at: None, items: copies, lease: None }
}
