//! Which events a write of a record produces, as a pure function of the record's header
//! before and after it ([`changes`]). A lifecycle's state is its status:
//!
//! | lifecycle | where its state is | event when |
//! |---|---|---|
//! | backup point | a backup record's `status` | it is written, and each time its status changes |
//! | restore | a restore record's `status` | the same |
//! | replication | a backup record's `replication.status` (per destination region) | the same |
//! | expiry | a backup record's `expiring_since` (`Running`), then its `status` `Expired` (`Succeeded`) | each |
//! | policy run | a policy's `last_run` (its `status`, per slot) | each new run |
//!
//! A write that changes nothing of these (a poll's progress, a lease, a retention change)
//! produces nothing. The cause of an event is the record's own (the API's summary cause):
//! when it is in the record's items, [`needs_items`] says so and the caller reads them first.

use crate::model::{BackupRecord, RestoreRecord, Timestamp};
use crate::policy::{Policy, PolicyRun};
use crate::status::{ItemStatus, JobStatus};
use crate::summary;

use super::{BackupChange, Event, ExpiryChange, Header, PolicyRunChange, ReplicationChange, RestoreChange};

/// The longest cause an event quotes (a cause is a record's or a cloud's message; an
/// EventBridge entry holds at most 256 KB).
pub const MAX_CAUSE: usize = 1_000;

/// How many targets' causes a policy run's event quotes.
const CAUSES_QUOTED: usize = 3;

/// The cause of a deletion that found a snapshot already gone.
pub const DAMAGED: &str = "a snapshot of the point had been deleted outside snapnest before it expired";

/// The events of one write: `old` is the record before it (none for an insert), `new` after
/// it (none for a delete, which has none), `at` when it was made. Backup records give, in
/// this order, the point's own event, its replication's, its expiry's.
pub fn changes(old: Option<&Header>, new: Option<&Header>, at: Timestamp) -> Vec<Event> {
    match (old, new) {
        (_, None) => Vec::new(),
        (old, Some(Header::Backup(new))) => {
            let old = match old {
                Some(Header::Backup(old)) => Some(old.as_ref()),
                _ => None,
            };
            backup_changes(old, new, at)
        }
        (old, Some(Header::Restore(new))) => {
            let old_status = match old {
                Some(Header::Restore(old)) => Some(old.status),
                _ => None,
            };
            (old_status != Some(new.status)).then(|| restore_event(new, old_status, at)).into_iter().collect()
        }
        (old, Some(Header::Policy(new))) => {
            let old_run = match old {
                Some(Header::Policy(old)) => old.last_run.as_ref(),
                _ => None,
            };
            match &new.last_run {
                Some(run) if old_run.is_none_or(|o| (o.slot, o.ran_at) != (run.slot, run.ran_at)) => {
                    vec![policy_run_event(new, run, old_run, at)]
                }
                _ => Vec::new(),
            }
        }
    }
}

/// Whether the cause of an event of this write is in the record's items (rows), which a
/// header alone does not hold: read them before calling [`changes`].
pub fn needs_items(old: Option<&Header>, new: &Header) -> bool {
    match (old, new) {
        (old, Header::Backup(new)) => {
            let old = match old {
                Some(Header::Backup(old)) => Some(old.as_ref()),
                _ => None,
            };
            let point = old.map(|o| o.status) != Some(new.status)
                && (new.status == JobStatus::PartiallyFailed
                    || (new.status == JobStatus::Failed && new.error.is_none()));
            let copies = new.replication.as_ref().is_some_and(|r| {
                matches!(r.status, JobStatus::Failed | JobStatus::PartiallyFailed)
                    && old.and_then(|o| o.replication.as_ref()).map(|o| o.status) != Some(r.status)
            });
            point || copies
        }
        (old, Header::Restore(new)) => {
            let old_status = match old {
                Some(Header::Restore(old)) => Some(old.status),
                _ => None,
            };
            let from_items = new.status == JobStatus::PartiallyFailed
                || (matches!(new.status, JobStatus::Failed | JobStatus::RollingBack | JobStatus::RolledBack)
                    && new.error.is_none());
            old_status != Some(new.status) && from_items
        }
        (_, Header::Policy(_)) => false,
    }
}

fn backup_changes(old: Option<&BackupRecord>, new: &BackupRecord, at: Timestamp) -> Vec<Event> {
    let mut events = Vec::new();
    let previous = old.map(|o| o.status);
    if previous != Some(new.status) {
        let cause = match new.status {
            JobStatus::PartiallyFailed | JobStatus::Failed | JobStatus::Cancelled => summary::of_backup(new, at).cause,
            _ => None,
        };
        events.push(Event::Backup(BackupChange {
            backup_id: new.backup_id.clone(),
            service_instance_id: new.service_instance_id.clone(),
            region: new.region.clone(),
            status: new.status,
            previous_status: previous,
            cause: bounded(cause),
            trigger: new.trigger,
            policy_id: new.policy_id.clone(),
            requested_by: new.requested_by.clone(),
            started_at: new.started_at,
            finished_at: new.finished_at,
            expires_at: new.expires_at,
            snapshot_bytes: new.snapshot_bytes,
            version: new.version,
            time: at,
        }));
    }
    if let Some(replication) = &new.replication {
        let previous = old.and_then(|o| o.replication.as_ref()).map(|r| r.status);
        if previous != Some(replication.status) {
            events.push(Event::Replication(ReplicationChange {
                backup_id: new.backup_id.clone(),
                service_instance_id: new.service_instance_id.clone(),
                source_region: new.region.clone(),
                region: replication.region.clone(),
                status: replication.status,
                previous_status: previous,
                cause: bounded(replication_cause(new)),
                requested_by: new.requested_by.clone(),
                expires_at: replication.expires_at,
                version: new.version,
                time: at,
            }));
        }
    }
    let previous = old.and_then(expiry_status);
    if let Some(status) = expiry_status(new).filter(|s| Some(*s) != previous) {
        events.push(Event::Expiry(ExpiryChange {
            backup_id: new.backup_id.clone(),
            service_instance_id: new.service_instance_id.clone(),
            region: new.region.clone(),
            status,
            previous_status: previous,
            cause: (new.damaged && status == JobStatus::Succeeded).then(|| DAMAGED.to_owned()),
            damaged: new.damaged,
            expires_at: new.expires_at,
            expiring_since: new.expiring_since,
            version: new.version,
            time: at,
        }));
    }
    events
}

/// Where the deletion of a point's snapshots stands: begun (`expiring_since` written before
/// the first delete) or done (the point `Expired`); none before.
fn expiry_status(record: &BackupRecord) -> Option<JobStatus> {
    if record.status == JobStatus::Expired {
        Some(JobStatus::Succeeded)
    } else {
        record.expiring_since.map(|_| JobStatus::Running)
    }
}

/// Why a point's copies are missing, or were never made.
fn replication_cause(record: &BackupRecord) -> Option<String> {
    let replication = record.replication.as_ref()?;
    let copies = &replication.items;
    let failed: Vec<_> = copies.iter().filter(|c| c.status == ItemStatus::Failed).collect();
    let first = failed
        .first()
        .map(|c| format!("{}: {}", c.resource_id, c.error.as_deref().unwrap_or("no cause given")))
        .unwrap_or_default();
    match replication.status {
        JobStatus::PartiallyFailed => {
            Some(format!("{} of {} copies failed; first: {first}", failed.len(), copies.len()))
        }
        JobStatus::Failed => Some(format!("every copy failed; first: {first}")),
        // A point that ended without a snapshot to copy is not replicated (replication::lifecycle::begin).
        JobStatus::Cancelled if !record.status.is_restorable() => {
            Some(format!("the backup point ended {}: nothing to copy", record.status.as_str()))
        }
        JobStatus::Cancelled => Some("cancelled".to_owned()),
        _ => None,
    }
}

fn restore_event(new: &RestoreRecord, previous: Option<JobStatus>, at: Timestamp) -> Event {
    let cause = match new.status {
        JobStatus::PartiallyFailed
        | JobStatus::Failed
        | JobStatus::Cancelled
        | JobStatus::RollingBack
        | JobStatus::RolledBack => summary::of_restore(new, at).cause,
        _ => None,
    };
    Event::Restore(RestoreChange {
        restore_id: new.restore_id.clone(),
        backup_id: new.backup_id.clone(),
        service_instance_id: new.service_instance_id.clone(),
        region: new.region.clone(),
        mode: new.mode,
        status: new.status,
        previous_status: previous,
        cause: bounded(cause),
        requested_by: new.requested_by.clone(),
        safety_backup_id: new.safety_backup_id.clone(),
        started_at: new.started_at,
        finished_at: new.finished_at,
        version: new.version,
        time: at,
    })
}

fn policy_run_event(policy: &Policy, run: &PolicyRun, previous: Option<&PolicyRun>, at: Timestamp) -> Event {
    let causes = run
        .targets
        .iter()
        .filter_map(|t| Some(format!("{}: {}", t.service_instance_id, t.error.as_deref()?)))
        .take(CAUSES_QUOTED)
        .filter_map(|c| bounded(Some(c)))
        .collect();
    Event::PolicyRun(PolicyRunChange {
        policy_id: policy.policy_id.clone(),
        policy_name: policy.name.clone(),
        slot: run.slot,
        status: run.status,
        previous_status: previous.map(|p| p.status),
        cause: bounded(run.cause.clone()),
        targets: run.targets.len(),
        backups_started: run.targets.iter().filter(|t| t.backup_id.is_some()).count(),
        causes,
        ran_at: run.ran_at,
        version: policy.version,
        time: at,
    })
}

/// A cause cut to [`MAX_CAUSE`] characters.
fn bounded(cause: Option<String>) -> Option<String> {
    cause.map(|c| match c.char_indices().nth(MAX_CAUSE) {
        Some((end, _)) => format!("{}…", &c[..end]),
        None => c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::DetailType;
    use crate::fixtures::{backup_point, policy, replicated, restore_of};
    use crate::model::{BackupItem, ReplicaItem, ResourceKind, RestoreMode, Rollback, RollbackReason};
    use crate::policy::{schedule, PolicyRunStatus};
    use chrono::{Duration, Utc};
    use serde_json::json;

    fn backup(record: &BackupRecord) -> Header {
        Header::Backup(Box::new(record.clone()))
    }

    fn restore(record: &RestoreRecord) -> Header {
        Header::Restore(Box::new(record.clone()))
    }

    /// The events as (detail-type, status, previous status) for a compact comparison.
    fn summary_of(events: &[Event]) -> Vec<(DetailType, String, Option<String>)> {
        events
            .iter()
            .map(|e| {
                let detail: serde_json::Value = serde_json::from_str(&e.detail()).unwrap();
                let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
                (e.detail_type(), text(&detail["status"]).unwrap(), text(&detail["previous_status"]))
            })
            .collect()
    }

    fn states(list: &[(DetailType, &str, Option<&str>)]) -> Vec<(DetailType, String, Option<String>)> {
        list.iter().map(|(d, s, p)| (*d, s.to_string(), p.map(str::to_owned))).collect()
    }

    fn volume(id: &str, status: ItemStatus, error: Option<&str>) -> BackupItem {
        BackupItem {
            status,
            error: error.map(str::to_owned),
            snapshot_id: Some(format!("snap-{id}")),
            ..BackupItem::new(id, ResourceKind::Volume)
        }
    }

    #[test]
    fn a_new_backup_point_is_an_event_with_no_previous_status() {
        // GIVEN a point just written (Pending), asked for by alice
        let mut point = backup_point(vec![volume("vol-1", ItemStatus::Pending, None)]);
        point.requested_by = Some("arn:aws:iam::123456789012:user/alice".into());
        let at = Utc::now();
        // WHEN its insert is seen
        let events = changes(None, Some(&backup(&point)), at);
        // THEN one Backup State Change, Pending, from nothing, with its ids, requester and time
        assert_eq!(summary_of(&events), states(&[(DetailType::Backup, "Pending", None)]));
        let Event::Backup(change) = &events[0] else { panic!("{events:?}") };
        assert_eq!((&change.backup_id, change.service_instance_id.as_str()), (&point.backup_id, "si-1"));
        assert_eq!(change.requested_by, point.requested_by);
        assert_eq!((change.cause.as_ref(), change.time, change.version), (None, at, 1));
    }

    #[test]
    fn a_status_change_is_one_event_and_a_write_that_keeps_it_is_none() {
        // GIVEN a running point
        let mut running = backup_point(vec![volume("vol-1", ItemStatus::Running, None)]);
        running.status = JobStatus::Running;
        // WHEN a poll saves its progress only THEN nothing is published
        let mut progressed = running.clone();
        progressed.items[0].progress = 50;
        progressed.version += 1;
        assert!(changes(Some(&backup(&running)), Some(&backup(&progressed)), Utc::now()).is_empty());
        // WHEN it succeeds THEN Running → Succeeded
        let mut done = progressed.clone();
        done.status = JobStatus::Succeeded;
        done.items[0].status = ItemStatus::Succeeded;
        let events = changes(Some(&backup(&progressed)), Some(&backup(&done)), Utc::now());
        assert_eq!(summary_of(&events), states(&[(DetailType::Backup, "Succeeded", Some("Running"))]));
        // AND a delete publishes nothing
        assert!(changes(Some(&backup(&done)), None, Utc::now()).is_empty());
    }

    #[test]
    fn a_partly_failed_point_carries_the_summary_cause_from_its_items() {
        // GIVEN a point that ended with one of two volumes failed
        let mut running =
            backup_point(vec![volume("vol-1", ItemStatus::Running, None), volume("vol-2", ItemStatus::Running, None)]);
        running.status = JobStatus::Running;
        let mut ended = running.clone();
        ended.status = JobStatus::PartiallyFailed;
        ended.items[0].status = ItemStatus::Succeeded;
        ended.items[1].fail("SnapshotLimitExceeded: too many snapshots");
        // THEN its cause is in its items: they are read first
        let header_only = BackupRecord { items: Vec::new(), ..ended.clone() };
        assert!(needs_items(Some(&backup(&running)), &backup(&header_only)));
        // WHEN the change is seen with them THEN the event quotes the record's cause
        let events = changes(Some(&backup(&running)), Some(&backup(&ended)), Utc::now());
        let Event::Backup(change) = &events[0] else { panic!("{events:?}") };
        assert_eq!(change.status, JobStatus::PartiallyFailed);
        assert_eq!(
            change.cause.as_deref(),
            Some("1 of 2 resources failed; first: vol-2: SnapshotLimitExceeded: too many snapshots")
        );
        // AND a point that failed for a reason of its own needs no items
        let mut failed = header_only.clone();
        failed.status = JobStatus::Failed;
        failed.error = Some("nothing carries the service instance's tag any more".into());
        assert!(!needs_items(Some(&backup(&running)), &backup(&failed)));
        let events = changes(Some(&backup(&running)), Some(&backup(&failed)), Utc::now());
        let Event::Backup(change) = &events[0] else { panic!("{events:?}") };
        assert_eq!(change.cause, failed.error);
        // AND a success never does
        let mut succeeded = header_only;
        succeeded.status = JobStatus::Succeeded;
        assert!(!needs_items(Some(&backup(&running)), &backup(&succeeded)));
    }

    #[test]
    fn a_replication_has_its_own_events_per_destination_region() {
        // GIVEN a finished point whose copy to us-west-2 is asked for
        let items = vec![volume("vol-1", ItemStatus::Succeeded, None), volume("vol-2", ItemStatus::Succeeded, None)];
        let mut point = backup_point(items.clone());
        point.status = JobStatus::Succeeded;
        let mut copying = point.clone();
        copying.replication = Some(replicated(&items, "us-west-2", "west"));
        let replication = copying.replication.as_mut().unwrap();
        replication.status = JobStatus::Pending;
        let before = copying.clone();
        // WHEN the copies start THEN a Replication State Change Pending → Running in us-west-2
        copying.replication.as_mut().unwrap().status = JobStatus::Running;
        let events = changes(Some(&backup(&before)), Some(&backup(&copying)), Utc::now());
        assert_eq!(summary_of(&events), states(&[(DetailType::Replication, "Running", Some("Pending"))]));
        let Event::Replication(change) = &events[0] else { panic!("{events:?}") };
        assert_eq!((change.region.as_str(), change.source_region.as_str()), ("us-west-2", "us-east-1"));
        // WHEN one copy fails for good THEN PartiallyFailed, the copy's cause read from the rows
        let mut ended = copying.clone();
        let replication = ended.replication.as_mut().unwrap();
        replication.status = JobStatus::PartiallyFailed;
        replication.items[1] = ReplicaItem {
            status: ItemStatus::Failed,
            error: Some("SnapshotCopyLimitExceeded".into()),
            ..replication.items[1].clone()
        };
        assert!(needs_items(Some(&backup(&copying)), &backup(&ended)));
        let events = changes(Some(&backup(&copying)), Some(&backup(&ended)), Utc::now());
        let Event::Replication(change) = &events[0] else { panic!("{events:?}") };
        assert_eq!(change.cause.as_deref(), Some("1 of 2 copies failed; first: vol-2: SnapshotCopyLimitExceeded"));
        // AND a point that failed is not copied, and says why
        let mut failed = backup_point(vec![volume("vol-1", ItemStatus::Failed, Some("boom"))]);
        failed.status = JobStatus::Failed;
        failed.replication = Some(replicated(&[], "us-west-2", "west"));
        failed.replication.as_mut().unwrap().status = JobStatus::Pending;
        let mut not_copied = failed.clone();
        not_copied.replication.as_mut().unwrap().status = JobStatus::Cancelled;
        let events = changes(Some(&backup(&failed)), Some(&backup(&not_copied)), Utc::now());
        let Event::Replication(change) = &events[0] else { panic!("{events:?}") };
        assert_eq!(change.cause.as_deref(), Some("the backup point ended Failed: nothing to copy"));
    }

    #[test]
    fn an_expiry_begins_then_ends_and_the_point_is_expired() {
        // GIVEN a succeeded point whose retention ran out, copied to us-west-2
        let items = vec![volume("vol-1", ItemStatus::Succeeded, None)];
        let mut point = backup_point(items.clone());
        point.status = JobStatus::Succeeded;
        point.expires_at = Some(Utc::now() - Duration::hours(1));
        point.replication = Some(replicated(&items, "us-west-2", "west"));
        // WHEN expire-retention writes its intent THEN Expiry State Change Running, from nothing
        let mut expiring = point.clone();
        expiring.expiring_since = Some(Utc::now());
        let events = changes(Some(&backup(&point)), Some(&backup(&expiring)), Utc::now());
        assert_eq!(summary_of(&events), states(&[(DetailType::Expiry, "Running", None)]));
        // WHEN its snapshots are deleted (one already gone) and its copies with them THEN
        // the point is Expired, its copies Expired, and the expiry Succeeded, naming the damage
        let mut expired = expiring.clone();
        expired.status = JobStatus::Expired;
        expired.damaged = true;
        expired.replication.as_mut().unwrap().status = JobStatus::Expired;
        let events = changes(Some(&backup(&expiring)), Some(&backup(&expired)), Utc::now());
        assert_eq!(
            summary_of(&events),
            states(&[
                (DetailType::Backup, "Expired", Some("Succeeded")),
                (DetailType::Replication, "Expired", Some("Succeeded")),
                (DetailType::Expiry, "Succeeded", Some("Running")),
            ])
        );
        let Event::Expiry(change) = &events[2] else { panic!("{events:?}") };
        assert!(change.damaged);
        assert_eq!(change.cause.as_deref(), Some(DAMAGED));
    }

    #[test]
    fn a_restore_rolled_back_after_a_failure_says_why() {
        // GIVEN an in-place restore rolling back
        let mut rolling = restore_of(RestoreMode::InPlace);
        rolling.status = JobStatus::RollingBack;
        rolling.requested_by = Some("alice".into());
        // WHEN it ends rolled back, its cause on the record
        let mut rolled = rolling.clone();
        rolled.status = JobStatus::RolledBack;
        rolled.error = Some("vol-1: attach refused: IncorrectState".into());
        rolled.rollback = Some(Rollback {
            reason: RollbackReason::Failure,
            cause: "vol-1: attach refused: IncorrectState".into(),
            started_at: Utc::now(),
            not_put_back: vec![],
        });
        // THEN one Restore State Change RollingBack → RolledBack with the cause and requester
        assert!(!needs_items(Some(&restore(&rolling)), &restore(&rolled)));
        let events = changes(Some(&restore(&rolling)), Some(&restore(&rolled)), Utc::now());
        assert_eq!(summary_of(&events), states(&[(DetailType::Restore, "RolledBack", Some("RollingBack"))]));
        let Event::Restore(change) = &events[0] else { panic!("{events:?}") };
        assert_eq!(change.cause, rolled.error);
        assert_eq!(change.requested_by.as_deref(), Some("alice"));
        // AND one that failed with no cause of its own has it in its items
        let mut failed = rolling.clone();
        failed.status = JobStatus::Failed;
        assert!(needs_items(Some(&restore(&rolling)), &restore(&failed)));
        // AND a new restore is one event from nothing
        let pending = restore_of(RestoreMode::Clone);
        assert_eq!(
            summary_of(&changes(None, Some(&restore(&pending)), Utc::now())),
            states(&[(DetailType::Restore, "Pending", None)])
        );
    }

    #[test]
    fn each_policy_run_is_an_event_with_the_outcome_of_the_one_before() {
        // GIVEN a policy whose first run backed up its one target
        let start = Utc::now();
        let mut p = policy(start);
        p.targets = vec!["si-1".into()];
        let before = p.clone();
        let mut run = schedule::plan_run(&p, start);
        run.targets.push(schedule::target_outcome("si-1", Ok(crate::ids::BackupId::generate())));
        schedule::finish_run(&mut p, run);
        p.version += 1;
        // WHEN the run is saved THEN a Policy Run State Change Succeeded, from nothing
        let header = |p: &Policy| Header::Policy(Box::new(p.clone()));
        let events = changes(Some(&header(&before)), Some(&header(&p)), start);
        assert_eq!(summary_of(&events), states(&[(DetailType::PolicyRun, "Succeeded", None)]));
        // WHEN the next slot finds nothing tagged THEN Failed, after Succeeded, with the cause
        let first = p.clone();
        let slot = p.next_run_at;
        let mut run = schedule::plan_run(&p, slot);
        let refused = crate::Error::not_found("service instance", "si-1");
        run.targets.push(schedule::target_failed("si-1", &refused, "service-instance-id", "us-east-1"));
        schedule::finish_run(&mut p, run);
        let events = changes(Some(&header(&first)), Some(&header(&p)), slot);
        let Event::PolicyRun(change) = &events[0] else { panic!("{events:?}") };
        assert_eq!(
            (change.status, change.previous_status),
            (PolicyRunStatus::Failed, Some(PolicyRunStatus::Succeeded))
        );
        assert_eq!(change.cause.as_deref(), Some("no resources tagged service-instance-id=si-1 in us-east-1"));
        assert_eq!((change.targets, change.backups_started), (1, 0));
        assert_eq!(change.causes, vec!["si-1: no resources tagged service-instance-id=si-1 in us-east-1".to_owned()]);
        // AND a change of the policy itself (a suspend) is no run
        let mut suspended = p.clone();
        suspended.state = crate::policy::PolicyState::Suspended;
        assert!(changes(Some(&header(&p)), Some(&header(&suspended)), slot).is_empty());
    }

    #[test]
    fn the_detail_is_the_documented_json() {
        // GIVEN a manual point that failed
        let mut point = backup_point(vec![]);
        point.status = JobStatus::Failed;
        point.error = Some("nothing to back up".into());
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T02:00:41Z").unwrap().with_timezone(&Utc);
        // WHEN its event's detail is made
        let events = changes(None, Some(&backup(&point)), at);
        let detail: serde_json::Value = serde_json::from_str(&events[0].detail()).unwrap();
        // THEN it has exactly the fields docs/events.md lists, times in RFC 3339
        let mut fields: Vec<&str> = detail.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            vec![
                "backup_id",
                "cause",
                "expires_at",
                "finished_at",
                "policy_id",
                "previous_status",
                "region",
                "requested_by",
                "service_instance_id",
                "snapshot_bytes",
                "started_at",
                "status",
                "time",
                "trigger",
                "version"
            ]
        );
        assert_eq!(
            (&detail["status"], &detail["previous_status"], &detail["trigger"]),
            (&json!("Failed"), &json!(null), &json!("manual"))
        );
        assert_eq!(detail["time"], "2026-11-20T02:00:41Z");
        assert_eq!(events[0].detail_type().as_str(), "Backup State Change");
    }

    #[test]
    fn a_long_cause_is_cut() {
        let long = "x".repeat(MAX_CAUSE + 10);
        let cut = bounded(Some(long)).unwrap();
        assert_eq!(cut.chars().count(), MAX_CAUSE + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(bounded(Some("short".into())).as_deref(), Some("short"));
    }
}
