//! Records for the lifecycles' unit tests.

use chrono::Utc;

use crate::ids::{BackupId, PolicyId, RestoreId};
use crate::model::{
    BackupItem, BackupRecord, ReplicaItem, Replication, RestoreMode, RestorePhase, RestoreRecord, Selection, Timestamp,
    Trigger,
};
use crate::policy::{Policy, PolicyState};
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

/// A restore of a point of si-1 in us-east-1, just written (`Pending`), without items.
pub fn restore_of(mode: RestoreMode) -> RestoreRecord {
    let now = Utc::now();
    RestoreRecord {
        restore_id: RestoreId::generate(),
        backup_id: BackupId::generate(),
        service_instance_id: "si-1".into(),
        mode,
        region: "us-east-1".into(),
        status: JobStatus::Pending,
        phase: if mode == RestoreMode::InPlace { RestorePhase::SafetyBackup } else { RestorePhase::Restoring },
        phase_started_at: Some(now),
        on_failure: Default::default(),
        safety_backup: mode == RestoreMode::InPlace,
        safety_backup_id: None,
        started_at: now,
        finished_at: None,
        items: Vec::new(),
        instances: Vec::new(),
        stopped_instance_ids: Vec::new(),
        service_changed: false,
        rollback: None,
        kept_until: None,
        owners: Vec::new(),
        lease: None,
        error: None,
        client_token: None,
        requested_by: None,
        changes: Vec::new(),
        version: 1,
        stored_rows: Default::default(),
    }
}

/// An active 6-hourly policy starting at `start`, protecting nothing yet.
pub fn policy(start: Timestamp) -> Policy {
    Policy {
        policy_id: PolicyId::generate(),
        name: "six-hourly".into(),
        state: PolicyState::Active,
        interval_hours: Some(6),
        interval_days: None,
        start_time: start,
        retention_days: 7,
        destination_region: None,
        destination_retention_days: None,
        targets: Vec::new(),
        volume_ids: Vec::new(),
        next_run_at: start,
        last_run: None,
        created_at: start,
        updated_at: start,
        owners: Vec::new(),
        changes: Vec::new(),
        version: 1,
    }
}
