//! Retention: changing how long a point is kept, and deleting what is due.
//!
//! A promise is never broken: retention can be extended or made permanent, never
//! shortened. `expire-retention` reads only due points (the store's due index), deletes
//! their snapshots, releases the ones something else now uses (the cloud refuses the
//! delete), and marks a point whose snapshot vanished behind snapnest's back as damaged.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::backup::snapshot_tags;
use crate::cloud::{Cloud, CloudResult, DeleteOutcome};
use crate::error::{Error, Result};
use crate::model::{BackupRecord, ResourceKind, Timestamp};
use crate::records::from_document;
use crate::status::{ItemStatus, JobStatus};
use crate::store::Collection;
use crate::validate::{self, MAX_RETENTION_DAYS};
use crate::Snapnest;

/// Body of `PATCH /backups/{backup_id}/retention`: exactly one of the three.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    pub extend_days: Option<u32>,
    pub expires_at: Option<Timestamp>,
    pub never_expire: Option<bool>,
}

/// What one run of expire-retention did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpirySummary {
    pub points_expired: usize,
    pub replicas_expired: usize,
    pub snapshots_deleted: usize,
    pub snapshots_released: usize,
    pub points_damaged: usize,
    /// Points left for the next run because the cloud failed transiently.
    pub deferred: usize,
}

impl Snapnest {
    /// Extends a point's retention, sets a later date, or makes it permanent; the snapshots'
    /// expiry tags follow.
    pub async fn change_retention(
        &self,
        backup_id: &str,
        request: &RetentionRequest,
        now: Timestamp,
    ) -> Result<BackupRecord> {
        validate::identifier("backup id", backup_id)?;
        let given = [request.extend_days.is_some(), request.expires_at.is_some(), request.never_expire.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(Error::bad_request(
                "InvalidRetention",
                "give exactly one of extend_days, expires_at or never_expire",
            ));
        }
        if request.never_expire == Some(false) {
            return Err(Error::bad_request("InvalidRetention", "never_expire can only be true"));
        }
        let mut record: BackupRecord = self.load(backup_id).await?;
        if record.status == JobStatus::Expired {
            return Err(Error::conflict(
                "BackupExpired",
                format!("backup {backup_id} has expired; its snapshots are deleted"),
            ));
        }
        let limit = record.started_at + Duration::days(MAX_RETENTION_DAYS.into());
        let new_expiry = match (request, record.expires_at) {
            (RetentionRequest { never_expire: Some(true), .. }, _) => None,
            (_, None) => {
                return Err(Error::conflict(
                    "RetentionShortened",
                    format!("backup {backup_id} never expires; a date would shorten its retention"),
                ))
            }
            (RetentionRequest { extend_days: Some(days), .. }, Some(current)) => {
                validate::retention_days("extend_days", *days)?;
                Some(current + Duration::days((*days).into()))
            }
            (RetentionRequest { expires_at: Some(date), .. }, Some(current)) => {
                if *date < current {
                    return Err(Error::conflict(
                        "RetentionShortened",
                        format!("expires_at {date} is before the promised {current}; retention cannot be shortened"),
                    ));
                }
                Some(*date)
            }
            _ => unreachable!("exactly one field was checked above"),
        };
        if new_expiry.is_some_and(|e| e > limit) {
            return Err(Error::bad_request(
                "InvalidRetention",
                format!("a point is kept at most {MAX_RETENTION_DAYS} days after it started (until {limit})"),
            ));
        }
        if new_expiry.is_some_and(|e| e <= now) {
            return Err(Error::bad_request("InvalidRetention", "expires_at must be in the future"));
        }
        record.expires_at = new_expiry;
        self.save(&mut record).await?;
        let cloud = self.clouds.region(&record.region)?;
        let tags = snapshot_tags(&record);
        for item in record.items.iter().filter(|i| i.status == ItemStatus::Succeeded && !i.released) {
            if let Some(snapshot_id) = &item.snapshot_id {
                if let Err(e) = cloud.tag_snapshot(snapshot_id, &tags).await {
                    warn!(backup_id, snapshot_id, error = %e, "expiry tag not updated; the record is authoritative");
                }
            }
        }
        info!(backup_id, expires_at = ?record.expires_at, "retention changed");
        Ok(record)
    }

    /// Deletes everything that is due: expired points' snapshots and expired replicas.
    pub async fn expire_due(&self, now: Timestamp) -> Result<ExpirySummary> {
        let started_at = chrono::Utc::now();
        let mut summary = ExpirySummary::default();
        for doc in self.store.list_due(Collection::Backups, now).await? {
            let record: BackupRecord = from_document(doc)?;
            let backup_id = record.backup_id.clone();
            if let Err(e) = self.expire_backup(record, now, &mut summary).await {
                summary.deferred += 1;
                warn!(backup_id, error = %e, "expiry deferred to the next run");
            }
        }
        self.record_expiry_run(started_at, &summary, chrono::Utc::now()).await;
        Ok(summary)
    }

    async fn expire_backup(&self, mut record: BackupRecord, now: Timestamp, summary: &mut ExpirySummary) -> Result<()> {
        let own_due = record.status.is_terminal()
            && record.status != JobStatus::Expired
            && record.expires_at.is_some_and(|e| e <= now);
        if own_due {
            let cloud = self.clouds.region(&record.region)?;
            let mut targets: Vec<(usize, ResourceKind, String)> = Vec::new();
            for (n, item) in record.items.iter().enumerate() {
                if let (Some(id), false) = (&item.snapshot_id, item.released) {
                    targets.push((n, item.kind, id.clone()));
                }
            }
            for (n, kind, snapshot_id) in targets {
                let outcome = delete(cloud.as_ref(), kind, &snapshot_id).await?;
                let item = &mut record.items[n];
                match outcome {
                    DeleteOutcome::Deleted => summary.snapshots_deleted += 1,
                    DeleteOutcome::InUse(by) => {
                        item.released = true;
                        item.error =
                            Some(format!("released from snapnest's management: the snapshot is in use ({by})"));
                        summary.snapshots_released += 1;
                    }
                    DeleteOutcome::NotFound if item.status == ItemStatus::Succeeded => {
                        record.damaged = true;
                        item.error = Some(format!("snapshot {snapshot_id} was deleted outside snapnest"));
                    }
                    DeleteOutcome::NotFound => {}
                }
                item.snapshot_id = item.released.then_some(snapshot_id);
            }
            if record.damaged {
                summary.points_damaged += 1;
            }
            record.status = JobStatus::Expired;
            summary.points_expired += 1;
        }
        let replica_due = record.replication.as_ref().is_some_and(|r| {
            r.status.is_terminal() && r.status != JobStatus::Expired && r.expires_at.is_some_and(|e| e <= now)
        });
        if replica_due {
            let replication = record.replication.as_mut().expect("checked above");
            let cloud = self.clouds.region(&replication.region)?;
            for item in replication.items.iter_mut() {
                if let Some(id) = item.replica_snapshot_id.clone() {
                    match delete(cloud.as_ref(), item.kind, &id).await? {
                        DeleteOutcome::Deleted => summary.snapshots_deleted += 1,
                        DeleteOutcome::InUse(_) => summary.snapshots_released += 1,
                        DeleteOutcome::NotFound => {}
                    }
                }
            }
            replication.status = JobStatus::Expired;
            summary.replicas_expired += 1;
        }
        self.save(&mut record).await?;
        info!(backup_id = %record.backup_id, status = record.status.as_str(), damaged = record.damaged, "backup point expired");
        Ok(())
    }
}

pub(crate) async fn delete(cloud: &dyn Cloud, kind: ResourceKind, snapshot_id: &str) -> CloudResult<DeleteOutcome> {
    match kind {
        ResourceKind::Volume => cloud.delete_snapshot(snapshot_id).await,
        ResourceKind::Database => cloud.delete_db_snapshot(snapshot_id).await,
    }
}
