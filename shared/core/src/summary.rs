//! What a person reads first on a backup or restore record: its resources counted by status,
//! how long it took, the bytes, the cause when it did not fully succeed, and what to do
//! next. Derived from the record each time it is read, never stored, so it cannot go stale.

use serde::{Deserialize, Serialize};

use crate::ids::{BackupId, PolicyId};
use crate::model::{BackupRecord, RestoreMode, RestorePhase, RestoreRecord, Timestamp, Trigger};
use crate::status::{ItemStatus, JobStatus};

/// How many causes a summary quotes; the items hold every one.
const CAUSES_QUOTED: usize = 3;

/// A record's resources by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: usize,
    pub pending: usize,
    pub running: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub rolled_back: usize,
}

impl Counts {
    fn of(statuses: impl Iterator<Item = ItemStatus>) -> Counts {
        let mut counts = Counts::default();
        for status in statuses {
            counts.total += 1;
            *match status {
                ItemStatus::Pending => &mut counts.pending,
                ItemStatus::Running => &mut counts.running,
                ItemStatus::Succeeded => &mut counts.succeeded,
                ItemStatus::Failed => &mut counts.failed,
                ItemStatus::Cancelled => &mut counts.cancelled,
                ItemStatus::RolledBack => &mut counts.rolled_back,
            } += 1;
        }
        counts
    }
}

/// The summary of a backup or a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// One line: where the record stands.
    pub headline: String,
    pub resources: Counts,
    /// From its start to its end, or to now while it runs.
    pub duration_seconds: i64,
    /// Bytes of what it holds (a backup: its succeeded snapshots; a restore: what it restores).
    pub bytes: u64,
    /// Why it did not fully succeed, for the whole record (`PartiallyFailed`, `Failed`,
    /// `Cancelled`, `RolledBack`, a damaged point); null otherwise.
    pub cause: Option<String>,
    /// The first causes of its failed resources, as `resource: cause`.
    pub causes: Vec<String>,
    /// What to do next.
    pub next: String,
}

/// A record as the API answers it: the record and its summary.
#[derive(Debug, Clone, Serialize)]
pub struct WithSummary<T> {
    #[serde(flatten)]
    pub record: T,
    pub summary: Summary,
}

/// A backup point in a list: what tells points apart and its summary, not its resources (a
/// point of 1,594 items is about a megabyte; GET /backups/{id} has them), so a page of the
/// largest points stays far inside a Lambda response's 6 MB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupListing {
    pub backup_id: BackupId,
    pub service_instance_id: String,
    pub region: String,
    pub status: JobStatus,
    pub trigger: Trigger,
    pub policy_id: Option<PolicyId>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub snapshot_bytes: u64,
    pub damaged: bool,
    /// The copy to another region, if the point has one: its region and status.
    pub replication_region: Option<String>,
    pub replication_status: Option<JobStatus>,
    pub requested_by: Option<String>,
    pub summary: Summary,
}

impl BackupListing {
    /// How `record` is listed at `now`.
    pub fn of(record: &BackupRecord, now: Timestamp) -> Self {
        let replication = record.replication.as_ref();
        Self {
            backup_id: record.backup_id.clone(),
            service_instance_id: record.service_instance_id.clone(),
            region: record.region.clone(),
            status: record.status,
            trigger: record.trigger,
            policy_id: record.policy_id.clone(),
            started_at: record.started_at,
            finished_at: record.finished_at,
            expires_at: record.expires_at,
            snapshot_bytes: record.snapshot_bytes,
            damaged: record.damaged,
            replication_region: replication.map(|r| r.region.clone()),
            replication_status: replication.map(|r| r.status),
            requested_by: record.requested_by.clone(),
            summary: of_backup(record, now),
        }
    }
}

impl WithSummary<BackupRecord> {
    /// A backup record with its summary at `now`.
    pub fn backup(record: BackupRecord, now: Timestamp) -> Self {
        Self { summary: of_backup(&record, now), record }
    }
}

impl WithSummary<RestoreRecord> {
    /// A restore record with its summary at `now`.
    pub fn restore(record: RestoreRecord, now: Timestamp) -> Self {
        Self { summary: of_restore(&record, now), record }
    }
}

/// The resources by status, and the first causes of the failed ones as `resource: cause`.
fn counted<'a>(items: impl Iterator<Item = (&'a str, ItemStatus, Option<&'a str>)> + Clone) -> (Counts, Vec<String>) {
    let counts = Counts::of(items.clone().map(|(_, status, _)| status));
    let causes = items
        .filter(|(_, status, _)| *status == ItemStatus::Failed)
        .take(CAUSES_QUOTED)
        .map(|(resource, _, error)| format!("{resource}: {}", error.unwrap_or("no cause given")))
        .collect();
    (counts, causes)
}

fn duration(started: Timestamp, finished: Option<Timestamp>, now: Timestamp) -> i64 {
    (finished.unwrap_or(now) - started).num_seconds().max(0)
}

/// A backup point's summary at `now`.
pub fn of_backup(record: &BackupRecord, now: Timestamp) -> Summary {
    let items = record.items.iter().map(|i| (i.resource_id.as_str(), i.status, i.error.as_deref()));
    let (resources, causes) = counted(items);
    let first = causes.first().cloned().unwrap_or_default();
    let id = &record.backup_id;
    let (headline, cause, next) = match record.status {
        JobStatus::Pending => (
            format!("Starting: {} resources to snapshot", resources.total),
            None,
            format!("Follow it: GET /backups/{id}."),
        ),
        JobStatus::Running => (
            format!("Snapshotting: {} of {} resources done", resources.succeeded + resources.failed, resources.total),
            None,
            format!("Follow it: GET /backups/{id}; cancel it: POST /jobs/{id}/cancel."),
        ),
        JobStatus::Succeeded if record.damaged => (
            format!("Damaged: {} resources were backed up, but a snapshot was deleted outside snapnest", resources.total),
            Some("a snapshot of the point was deleted outside snapnest; it cannot be fully restored".to_owned()),
            format!("Back the service instance up again: POST /service-instances/{}/backups.", record.service_instance_id),
        ),
        JobStatus::Succeeded => (
            format!("Backed up: {} resources", resources.total),
            None,
            format!("Restore it when needed: POST /backups/{id}/restores (\"dry_run\": true shows the plan first)."),
        ),
        JobStatus::PartiallyFailed => (
            format!("Partly backed up: {} of {} resources failed", resources.failed, resources.total),
            Some(format!("{} of {} resources failed; first: {first}", resources.failed, resources.total)),
            format!(
                "The failed resources are not in the point. Fix their cause, then back up again: POST /service-instances/{}/backups.",
                record.service_instance_id
            ),
        ),
        JobStatus::Failed => {
            let cause = record.error.clone().unwrap_or_else(|| format!("every resource failed; first: {first}"));
            (
                "Failed: nothing was backed up".to_owned(),
                Some(cause),
                format!(
                    "Fix the cause, then back up again: POST /service-instances/{}/backups.",
                    record.service_instance_id
                ),
            )
        }
        JobStatus::Cancelled => (
            format!("Cancelled: {} of {} resources had been backed up", resources.succeeded, resources.total),
            Some(if record.cleanup_pending {
                "cancelled; its snapshots are being deleted".to_owned()
            } else {
                "cancelled".to_owned()
            }),
            format!("Back up again when ready: POST /service-instances/{}/backups.", record.service_instance_id),
        ),
        JobStatus::Expired => (
            "Expired: its retention ended and its snapshots were deleted".to_owned(),
            None,
            "Nothing: the point can no longer be restored.".to_owned(),
        ),
        JobStatus::RollingBack | JobStatus::RolledBack => {
            (record.status.as_str().to_owned(), None, format!("Follow it: GET /backups/{id}."))
        }
    };
    Summary {
        headline,
        resources,
        duration_seconds: duration(record.started_at, record.finished_at, now),
        bytes: record.snapshot_bytes,
        cause,
        causes,
        next,
    }
}

fn phase_words(phase: RestorePhase) -> &'static str {
    match phase {
        RestorePhase::SafetyBackup => "taking the safety backup",
        RestorePhase::StoppingInstances => "stopping the instances",
        RestorePhase::Restoring => "making the new volumes and databases",
        RestorePhase::Committing => "keeping what was replaced",
        RestorePhase::StartingInstances => "starting the instances",
        RestorePhase::RollingBack => "rolling back",
        RestorePhase::Done => "done",
    }
}

/// A restore's summary at `now`.
pub fn of_restore(record: &RestoreRecord, now: Timestamp) -> Summary {
    let items = record.items.iter().map(|i| (i.resource_id.as_str(), i.status, i.error.as_deref()));
    let (resources, causes) = counted(items);
    let first = causes.first().cloned().unwrap_or_default();
    let cause_of_record = record.error.clone().or_else(|| (!first.is_empty()).then(|| first.clone()));
    let id = &record.restore_id;
    let what = match record.mode {
        RestoreMode::InPlace => "in place".to_owned(),
        RestoreMode::Clone => "as a clone".to_owned(),
        RestoreMode::DisasterRecovery => format!("in {}", record.region),
    };
    let (headline, cause, next) = match record.status {
        JobStatus::Pending | JobStatus::Running => (
            format!(
                "Restoring {what}: {} of {} resources done ({})",
                resources.succeeded + resources.failed,
                resources.total,
                phase_words(record.phase)
            ),
            None,
            format!("Follow it: GET /restores/{id}; cancel it: POST /jobs/{id}/cancel."),
        ),
        JobStatus::Succeeded => (
            format!("Restored {what}: {} resources", resources.total),
            None,
            match (record.mode, record.kept_until) {
                (RestoreMode::InPlace, Some(until)) => format!(
                    "Check the service instance. Until {} the replaced resources are kept: POST /restores/{id}/rollback puts them back.",
                    until.to_rfc3339()
                ),
                _ => "Check the restored resources.".to_owned(),
            },
        ),
        JobStatus::PartiallyFailed => (
            format!("Partly restored {what}: {} of {} resources failed", resources.failed, resources.total),
            Some(format!("{} of {} resources failed; first: {first}", resources.failed, resources.total)),
            "The failed resources were not restored: fix their cause and restore them again (resource_ids).".to_owned(),
        ),
        JobStatus::Failed => (
            format!("Failed to restore {what}"),
            Some(cause_of_record.unwrap_or_else(|| "every resource failed".to_owned())),
            "Fix the cause, then restore again (\"dry_run\": true shows the plan first).".to_owned(),
        ),
        JobStatus::RollingBack => (
            "Rolling back: putting the service instance back as it was".to_owned(),
            cause_of_record,
            format!("Follow it: GET /restores/{id}."),
        ),
        JobStatus::RolledBack => (
            "Rolled back: the service instance is as it was before the restore".to_owned(),
            Some(cause_of_record.unwrap_or_else(|| "rolled back".to_owned())),
            "Fix the cause, then restore again.".to_owned(),
        ),
        JobStatus::Cancelled => (
            format!("Cancelled: {} of {} resources had been restored", resources.succeeded, resources.total),
            Some("cancelled".to_owned()),
            "Restore again when ready.".to_owned(),
        ),
        JobStatus::Expired => (record.status.as_str().to_owned(), None, "Nothing.".to_owned()),
    };
    Summary {
        headline,
        resources,
        duration_seconds: duration(record.started_at, record.finished_at, now),
        bytes: record.items.iter().map(|i| i.size_bytes).sum(),
        cause,
        causes,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::backup_point;
    use crate::model::{BackupItem, ResourceKind};

    fn item(id: &str, status: ItemStatus, error: Option<&str>) -> BackupItem {
        BackupItem { status, error: error.map(str::to_owned), ..BackupItem::new(id, ResourceKind::Volume) }
    }

    #[test]
    fn a_partly_failed_point_says_how_many_failed_why_and_what_to_do() {
        // GIVEN a point of three volumes, two failed, that ran ten minutes
        let mut point = backup_point(vec![
            item("vol-1", ItemStatus::Succeeded, None),
            item("vol-2", ItemStatus::Failed, Some("SnapshotLimitExceeded: too many snapshots")),
            item("vol-3", ItemStatus::Failed, None),
        ]);
        point.status = JobStatus::PartiallyFailed;
        point.finished_at = Some(point.started_at + chrono::Duration::minutes(10));
        // WHEN it is summarised
        let summary = of_backup(&point, point.started_at + chrono::Duration::hours(1));
        // THEN the counts, the duration, the record's cause and each failed resource's cause
        assert_eq!((summary.resources.total, summary.resources.succeeded, summary.resources.failed), (3, 1, 2));
        assert_eq!(summary.duration_seconds, 600);
        assert_eq!(summary.headline, "Partly backed up: 2 of 3 resources failed");
        assert_eq!(
            summary.cause.as_deref(),
            Some("2 of 3 resources failed; first: vol-2: SnapshotLimitExceeded: too many snapshots")
        );
        assert_eq!(summary.causes[1], "vol-3: no cause given");
        assert!(summary.next.contains("POST /service-instances/si-1/backups"), "{}", summary.next);
    }

    #[test]
    fn a_running_point_counts_to_now_and_a_failed_one_names_its_own_cause() {
        // GIVEN a point still snapshotting one of two volumes
        let mut point =
            backup_point(vec![item("vol-1", ItemStatus::Succeeded, None), item("vol-2", ItemStatus::Running, None)]);
        point.status = JobStatus::Running;
        point.finished_at = None;
        // THEN its duration runs to now and there is no cause yet
        let summary = of_backup(&point, point.started_at + chrono::Duration::seconds(42));
        assert_eq!(summary.duration_seconds, 42);
        assert_eq!(summary.headline, "Snapshotting: 1 of 2 resources done");
        assert_eq!(summary.cause, None);
        // WHEN the whole point failed for a reason no item holds THEN that is its cause
        point.status = JobStatus::Failed;
        point.error = Some("nothing carries the service instance's tag any more".into());
        let summary = of_backup(&point, point.started_at);
        assert_eq!(summary.cause, point.error);
    }
}
