//! The backup lifecycle as pure transitions: what a backup point becomes, given what the
//! cloud answered or reports. No store, no cloud, no clock: each function takes the record,
//! an observation and the instant, and changes the record or refuses.
//!
//! ```text
//! Pending ──snapshots started──▶ Running ──every item terminal──▶ Succeeded | PartiallyFailed | Failed
//!    │                              │
//!    └──────────── cancel ──────────┴──▶ Cancelled            (any finished point) ──▶ Expired
//! ```
//! A point's status is derived from its items ([`derive_status`]); only `Cancelled` and
//! `Expired` are imposed, and every change goes through [`JobStatus::transition`].

use std::collections::{BTreeMap, HashMap};

use chrono::Duration;

use crate::cloud::{CloudError, SnapshotState, SnapshotStatus, StartedSnapshot, VolumeSelection};
use crate::model::{BackupItem, BackupRecord, ResourceKind, Timestamp};
use crate::snapshots::db_snapshot_name;
use crate::status::{aggregate, IllegalTransition, ItemStatus, JobStatus};

/// How long the invocation that creates a backup may take to issue its snapshots before
/// poll-status assumes it died and takes over.
pub fn start_lease() -> Duration {
    Duration::seconds(60)
}

/// Recomputes the status from the items, stamping `finished_at` and the byte total when
/// the point becomes terminal. Cancelled and expired points keep their status.
pub fn derive_status(record: &mut BackupRecord, now: Timestamp) -> Result<(), IllegalTransition> {
    if matches!(record.status, JobStatus::Cancelled | JobStatus::Expired) {
        return Ok(());
    }
    let derived = aggregate(record.items.iter().map(|i| i.status));
    record.status.transition(derived)?;
    record.snapshot_bytes =
        record.items.iter().filter(|i| i.status == ItemStatus::Succeeded).map(|i| i.size_bytes).sum();
    if derived.is_terminal() && record.finished_at.is_none() {
        record.finished_at = Some(now);
    }
    Ok(())
}

/// A snapshot call to make: one crash-consistent group per instance, then each database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotCall {
    /// `CreateSnapshots` for an instance; `positions` are the items it covers.
    Group { instance_id: String, volumes: VolumeSelection, positions: Vec<usize> },
    /// `CreateDBSnapshot` under a name chosen from the backup id, so a retry meets the first.
    Database { position: usize, db_id: String, snapshot_name: String },
}

/// The calls still to make for the items that have no snapshot yet, after adopting the
/// snapshots an interrupted start already made (`found`: tagged with the backup id).
pub fn plan_snapshot_calls(record: &mut BackupRecord, found: &[StartedSnapshot]) -> Vec<SnapshotCall> {
    let adopted: HashMap<&str, &str> = found.iter().map(|s| (s.volume_id.as_str(), s.snapshot_id.as_str())).collect();
    for item in record.items.iter_mut().filter(|i| i.status == ItemStatus::Pending && i.kind == ResourceKind::Volume) {
        if let Some(snapshot_id) = adopted.get(item.resource_id.as_str()) {
            item.snapshot_id = Some((*snapshot_id).to_owned());
            item.status = ItemStatus::Running;
        }
    }
    let mut by_instance: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut calls = Vec::new();
    for (n, item) in record.items.iter().enumerate().filter(|(_, i)| i.status == ItemStatus::Pending) {
        match item.kind {
            ResourceKind::Volume => {
                by_instance.entry(item.instance_id.clone().unwrap_or_default()).or_default().push(n)
            }
            ResourceKind::Database => calls.push(SnapshotCall::Database {
                position: n,
                db_id: item.resource_id.clone(),
                snapshot_name: db_snapshot_name(&record.backup_id, &item.resource_id),
            }),
        }
    }
    let groups = by_instance.into_iter().map(|(instance_id, positions)| {
        let volumes = if record.selection.volume_ids.is_empty() {
            VolumeSelection::All
        } else {
            VolumeSelection::Only(positions.iter().map(|&n| record.items[n].resource_id.clone()).collect())
        };
        SnapshotCall::Group { instance_id, volumes, positions }
    });
    groups.chain(calls).collect()
}

/// What one instance's group call answered. A volume attached since discovery is part of
/// the group ("Protect All Disks") and gets an item of its own; a volume the group left
/// out is no longer attached.
pub fn group_started(record: &mut BackupRecord, instance_id: &str, positions: &[usize], started: Vec<StartedSnapshot>) {
    let availability_zone = positions.first().and_then(|&n| record.items[n].availability_zone.clone());
    for snapshot in started {
        let item = match positions.iter().find(|&&n| record.items[n].resource_id == snapshot.volume_id) {
            Some(&n) => &mut record.items[n],
            None => {
                let mut item = BackupItem::new(&snapshot.volume_id, ResourceKind::Volume);
                item.instance_id = Some(instance_id.to_owned());
                item.availability_zone = availability_zone.clone();
                record.items.push(item);
                record.items.last_mut().expect("just pushed")
            }
        };
        item.snapshot_id = Some(snapshot.snapshot_id);
        item.status = ItemStatus::Running;
        item.consistent_group = true;
    }
    for &n in positions {
        if record.items[n].status == ItemStatus::Pending {
            record.items[n].fail("The volume is no longer attached to the instance.");
        }
    }
}

/// What a single snapshot call (a volume outside a group, or a database) answered.
pub fn snapshot_started(item: &mut BackupItem, answer: Result<String, CloudError>) {
    match answer {
        Ok(snapshot_id) => {
            item.snapshot_id = Some(snapshot_id);
            item.status = ItemStatus::Running;
        }
        Err(e) => item.fail(e.to_string()),
    }
}

/// How long a backup waits for a database that refuses a snapshot for now (backing up, being
/// modified) before its item fails: RDS's own backup window is at most 30 minutes long
/// (RDS User Guide, "Backup window"), a modification usually less.
pub fn database_busy_wait() -> Duration {
    Duration::minutes(30)
}

/// What a database snapshot call answered: a busy database keeps its item waiting (the next
/// poll asks again) until [`database_busy_wait`] after the backup started.
pub fn database_snapshot_started(
    item: &mut BackupItem,
    answer: Result<String, CloudError>,
    started_at: Timestamp,
    now: Timestamp,
) {
    match answer {
        Err(CloudError::Busy(why)) if now < started_at + database_busy_wait() => {
            item.error = Some(format!("waiting for the database to be available: {why}"));
        }
        Err(CloudError::Busy(why)) => item.fail(format!(
            "the database was not available for a snapshot within {} minutes: {why}",
            database_busy_wait().num_minutes()
        )),
        answer => {
            item.error = None;
            snapshot_started(item, answer);
        }
    }
}

/// A call that failed for every item it covered.
pub fn call_failed(record: &mut BackupRecord, positions: &[usize], error: &CloudError) {
    for &n in positions {
        record.items[n].fail(error.to_string());
    }
}

/// Every call has been made: the start is over and poll-status follows the snapshots.
pub fn start_finished(record: &mut BackupRecord, now: Timestamp) -> Result<(), IllegalTransition> {
    record.start_lease_until = None;
    derive_status(record, now)
}

/// Whether start-backup may start a point create handed to it: only one still waiting for
/// its start. The lease is renewed from now, as the message may have waited in the queue.
pub fn claim_start(record: &mut BackupRecord, now: Timestamp) -> bool {
    if record.status != JobStatus::Pending {
        return false;
    }
    record.start_lease_until = Some(now + start_lease());
    true
}

/// Whether poll-status may take over a start whose invoker has not finished in time.
/// Taking over renews the lease, so of two pollers only the one that saves it first goes on.
pub fn take_over_start(record: &mut BackupRecord, now: Timestamp) -> bool {
    if record.status != JobStatus::Pending || record.start_lease_until.is_some_and(|lease| lease > now) {
        return false;
    }
    record.start_lease_until = Some(now + start_lease());
    true
}

/// Folds what the cloud reports of the running snapshots into their items.
pub fn snapshots_reported(
    record: &mut BackupRecord,
    reported: &HashMap<String, SnapshotStatus>,
    now: Timestamp,
) -> Result<(), IllegalTransition> {
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
    derive_status(record, now)
}

/// The ids of the snapshots still being made, by kind, for one batched describe each.
pub fn running_snapshots(record: &BackupRecord) -> Vec<(ResourceKind, String)> {
    record
        .items
        .iter()
        .filter(|i| i.status == ItemStatus::Running)
        .filter_map(|i| Some((i.kind, i.snapshot_id.clone()?)))
        .collect()
}

/// A user cancels a running point: unfinished items are cancelled, and unless the user
/// keeps them, the snapshots already made are to be deleted (`cleanup_pending`).
pub fn cancel(record: &mut BackupRecord, keep_snapshots: bool, now: Timestamp) -> Result<(), IllegalTransition> {
    record.status.transition(JobStatus::Cancelled)?;
    record.finished_at = Some(now);
    record.cleanup_pending = !keep_snapshots;
    for item in record.items.iter_mut().filter(|i| !i.status.is_terminal()) {
        item.status = ItemStatus::Cancelled;
    }
    if let Some(replication) = record.replication.as_mut() {
        replication.status = JobStatus::Cancelled;
    }
    Ok(())
}

/// How the delete of a cancelled point's snapshot ended, for its item.
pub fn cleanup_deleted(item: &mut BackupItem, snapshot_id: &str, in_use_by: Option<String>) {
    match in_use_by {
        None => {
            item.snapshot_id = None;
            item.error = Some(format!("snapshot {snapshot_id} deleted when the backup was cancelled"));
        }
        Some(by) => {
            item.released = true;
            item.error = Some(format!("kept: the snapshot is in use ({by})"));
        }
    }
}

/// The clean-up of a cancelled point is over once nothing is left and no starting
/// invocation can still make snapshots (its lease has passed).
pub fn cleanup_pass_done(record: &mut BackupRecord, now: Timestamp) {
    if record.start_lease_until.is_none_or(|lease| lease <= now) {
        record.cleanup_pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::backup_point;
    use chrono::Utc;

    fn point(items: Vec<BackupItem>) -> BackupRecord {
        BackupRecord { start_lease_until: Some(Utc::now() + start_lease()), ..backup_point(items) }
    }

    fn volume(id: &str, instance: &str) -> BackupItem {
        let mut item = BackupItem::new(id, ResourceKind::Volume);
        item.instance_id = Some(instance.into());
        item.availability_zone = Some("us-east-1a".into());
        item
    }

    fn started(volume_id: &str, snapshot_id: &str) -> StartedSnapshot {
        StartedSnapshot { volume_id: volume_id.into(), snapshot_id: snapshot_id.into() }
    }

    fn reported(id: &str, state: SnapshotState, size_bytes: u64) -> (String, SnapshotStatus) {
        (id.into(), SnapshotStatus { snapshot_id: id.into(), state, progress: 40, size_bytes })
    }

    #[test]
    fn a_busy_database_is_waited_for_then_fails_with_the_cause() {
        // GIVEN a database item of a backup started now
        let started = Utc::now();
        let mut item = BackupItem::new("orders", ResourceKind::Database);
        let busy = || Err(CloudError::Busy("orders is backing-up".into()));
        // WHEN RDS refuses the snapshot for now THEN the item waits, saying why
        database_snapshot_started(&mut item, busy(), started, started + Duration::minutes(10));
        assert_eq!(item.status, ItemStatus::Pending);
        assert!(item.error.as_deref().unwrap().contains("backing-up"));
        // WHEN it is available again THEN the snapshot starts and the note goes
        let mut later = item.clone();
        database_snapshot_started(
            &mut later,
            Ok("snapnest-bk-1-orders".into()),
            started,
            started + Duration::minutes(11),
        );
        assert_eq!((later.status, later.error.as_deref()), (ItemStatus::Running, None));
        // WHEN it is still busy past the wait THEN the item fails with the cause
        database_snapshot_started(&mut item, busy(), started, started + database_busy_wait());
        assert_eq!(item.status, ItemStatus::Failed);
        assert!(item.error.as_deref().unwrap().contains("within 30 minutes"));
    }

    #[test]
    fn a_new_point_plans_one_group_per_instance_then_each_database() {
        // GIVEN a point of two instances' volumes and a database
        let mut record = point(vec![
            volume("vol-a1", "i-a"),
            volume("vol-b1", "i-b"),
            volume("vol-a2", "i-a"),
            BackupItem::new("orders", ResourceKind::Database),
        ]);
        // WHEN its snapshot calls are planned with nothing made yet
        let calls = plan_snapshot_calls(&mut record, &[]);
        // THEN each instance is one group of all its disks, and the database follows by name
        assert_eq!(
            calls,
            vec![
                SnapshotCall::Group { instance_id: "i-a".into(), volumes: VolumeSelection::All, positions: vec![0, 2] },
                SnapshotCall::Group { instance_id: "i-b".into(), volumes: VolumeSelection::All, positions: vec![1] },
                SnapshotCall::Database {
                    position: 3,
                    db_id: "orders".into(),
                    snapshot_name: db_snapshot_name(&record.backup_id, "orders"),
                },
            ]
        );
    }

    #[test]
    fn an_interrupted_start_adopts_what_it_made_and_plans_only_the_rest() {
        // GIVEN a point whose first start made the snapshots of instance i-a, then died
        let mut record = point(vec![volume("vol-a1", "i-a"), volume("vol-b1", "i-b")]);
        // WHEN the takeover plans its calls with the snapshots found by the backup-id tag
        let calls = plan_snapshot_calls(&mut record, &[started("vol-a1", "snap-1")]);
        // THEN the made snapshot is adopted and only i-b is snapshotted
        assert_eq!(record.items[0].snapshot_id.as_deref(), Some("snap-1"));
        assert_eq!(record.items[0].status, ItemStatus::Running);
        assert_eq!(calls.len(), 1);
        assert!(matches!(&calls[0], SnapshotCall::Group { instance_id, .. } if instance_id == "i-b"));
    }

    #[test]
    fn selected_disks_are_named_in_the_group_call() {
        // GIVEN a point of selected volumes ("Protect All Disks" off)
        let mut record = point(vec![volume("vol-a2", "i-a")]);
        record.selection.volume_ids = vec!["vol-a2".into()];
        // WHEN its calls are planned
        let calls = plan_snapshot_calls(&mut record, &[]);
        // THEN the group names only them
        assert!(matches!(&calls[0], SnapshotCall::Group { volumes: VolumeSelection::Only(v), .. } if v == &["vol-a2"]));
    }

    #[test]
    fn a_disk_attached_since_discovery_joins_the_group_and_a_detached_one_fails() {
        // GIVEN an instance discovered with vol-a1 and vol-a2
        let mut record = point(vec![volume("vol-a1", "i-a"), volume("vol-a2", "i-a")]);
        // WHEN its group snapshots vol-a1 and a newly attached vol-a3, but not vol-a2
        group_started(&mut record, "i-a", &[0, 1], vec![started("vol-a1", "snap-1"), started("vol-a3", "snap-3")]);
        // THEN vol-a3 gets an item of its own and vol-a2 fails with the reason
        assert_eq!(record.items.len(), 3);
        assert_eq!(record.items[2].resource_id, "vol-a3");
        assert!(record.items[2].consistent_group);
        assert_eq!(record.items[1].status, ItemStatus::Failed);
        assert_eq!(record.items[1].error.as_deref(), Some("The volume is no longer attached to the instance."));
    }

    #[test]
    fn finished_snapshots_make_the_point_succeeded_with_its_bytes_and_end() {
        // GIVEN a running point of two snapshots
        let now = Utc::now();
        let mut record = point(vec![volume("vol-a1", "i-a"), volume("vol-a2", "i-a")]);
        group_started(&mut record, "i-a", &[0, 1], vec![started("vol-a1", "snap-1"), started("vol-a2", "snap-2")]);
        start_finished(&mut record, now).unwrap();
        assert_eq!(record.status, JobStatus::Running);
        // WHEN the cloud reports one completed and the other still pending
        let first = HashMap::from([
            reported("snap-1", SnapshotState::Completed, 100),
            reported("snap-2", SnapshotState::Pending, 0),
        ]);
        snapshots_reported(&mut record, &first, now).unwrap();
        // THEN the point runs on with the progress of each
        assert_eq!(record.status, JobStatus::Running);
        assert_eq!(record.items[1].progress, 40);
        // WHEN the second completes
        snapshots_reported(&mut record, &HashMap::from([reported("snap-2", SnapshotState::Completed, 50)]), now)
            .unwrap();
        // THEN it is Succeeded, with the end and the byte total stamped
        assert_eq!(record.status, JobStatus::Succeeded);
        assert_eq!(record.snapshot_bytes, 150);
        assert_eq!(record.finished_at, Some(now));
        assert!(record.start_lease_until.is_none());
    }

    #[test]
    fn a_failed_or_vanished_snapshot_fails_its_item_with_the_cause() {
        // GIVEN a running point of two snapshots
        let now = Utc::now();
        let mut record = point(vec![volume("vol-a1", "i-a"), volume("vol-a2", "i-a")]);
        group_started(&mut record, "i-a", &[0, 1], vec![started("vol-a1", "snap-1"), started("vol-a2", "snap-2")]);
        start_finished(&mut record, now).unwrap();
        // WHEN one errors and the other is not reported at all
        let answer = HashMap::from([reported("snap-1", SnapshotState::Error("disk error".into()), 0)]);
        snapshots_reported(&mut record, &answer, now).unwrap();
        // THEN both fail with their cause and the point is Failed
        assert_eq!(record.items[0].error.as_deref(), Some("disk error"));
        assert!(record.items[1].error.as_deref().unwrap().contains("disappeared"));
        assert_eq!(record.status, JobStatus::Failed);
    }

    #[test]
    fn a_start_is_taken_over_only_after_its_lease_and_only_once() {
        // GIVEN a pending point whose starter holds the lease
        let now = Utc::now();
        let mut record = point(vec![volume("vol-a1", "i-a")]);
        // WHEN a poll comes inside the lease THEN it leaves the start alone
        assert!(!take_over_start(&mut record, now));
        // WHEN a poll comes after the lease THEN it takes over and renews the lease
        let later = now + start_lease() * 2;
        assert!(take_over_start(&mut record, later));
        assert_eq!(record.start_lease_until, Some(later + start_lease()));
        // AND a second poll at the same moment does not
        assert!(!take_over_start(&mut record, later));
    }

    #[test]
    fn a_handed_over_start_is_claimed_with_a_fresh_lease_unless_the_point_moved_on() {
        // GIVEN a point written a minute ago, its start handed to start-backup
        let written = Utc::now();
        let mut record = point(vec![volume("vol-1", "i-1")]);
        record.start_lease_until = Some(written + start_lease());
        // WHEN start-backup claims it after the message waited in the queue
        let now = written + Duration::seconds(50);
        // THEN it holds the start for a full lease from now
        assert!(claim_start(&mut record, now));
        assert_eq!(record.start_lease_until, Some(now + start_lease()));
        // AND a point cancelled meanwhile is not claimed
        record.status = JobStatus::Cancelled;
        assert!(!claim_start(&mut record, now));
    }

    #[test]
    fn a_cancel_cancels_what_is_unfinished_and_refuses_a_finished_point() {
        // GIVEN a running point with one finished item
        let now = Utc::now();
        let mut record = point(vec![volume("vol-a1", "i-a"), volume("vol-a2", "i-a")]);
        group_started(&mut record, "i-a", &[0, 1], vec![started("vol-a1", "snap-1"), started("vol-a2", "snap-2")]);
        start_finished(&mut record, now).unwrap();
        snapshots_reported(
            &mut record,
            &HashMap::from([
                reported("snap-1", SnapshotState::Completed, 1),
                reported("snap-2", SnapshotState::Pending, 0),
            ]),
            now,
        )
        .unwrap();
        // WHEN the user cancels without keeping the snapshots
        cancel(&mut record, false, now).unwrap();
        // THEN the point is Cancelled, its clean-up pending, the running item cancelled
        assert_eq!(record.status, JobStatus::Cancelled);
        assert!(record.cleanup_pending);
        assert_eq!(record.items[0].status, ItemStatus::Succeeded);
        assert_eq!(record.items[1].status, ItemStatus::Cancelled);
        // AND later polls do not derive another status over the cancel
        derive_status(&mut record, now).unwrap();
        assert_eq!(record.status, JobStatus::Cancelled);
        // WHEN a finished point is cancelled THEN the transition is refused
        let mut done = point(vec![]);
        done.status = JobStatus::Succeeded;
        assert!(cancel(&mut done, true, now).is_err());
        assert_eq!(done.status, JobStatus::Succeeded);
    }

    #[test]
    fn the_cleanup_of_a_cancelled_point_waits_for_the_starters_lease() {
        // GIVEN a cancelled point whose starter may still be issuing snapshots
        let now = Utc::now();
        let mut record = point(vec![]);
        cancel(&mut record, false, now).unwrap();
        // WHEN a clean-up pass ends inside the lease THEN it stays pending for the next pass
        cleanup_pass_done(&mut record, now);
        assert!(record.cleanup_pending);
        // WHEN one ends after it THEN the clean-up is over
        cleanup_pass_done(&mut record, now + start_lease() * 2);
        assert!(!record.cleanup_pending);
    }
}
