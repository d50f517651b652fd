//! Replication as pure transitions: which copies a finished point needs, and what the
//! destination's answers and reports make of each copy.

use std::collections::HashMap;

use crate::cloud::{CloudError, SnapshotState, SnapshotStatus};
use crate::model::{BackupRecord, ReplicaItem, Replication};
use crate::status::{IllegalTransition, ItemStatus, JobStatus};

/// Copy attempts that fail on a transient error before the copy fails for good.
pub const MAX_COPY_ATTEMPTS: u32 = 5;

/// A finished point whose replication is not over.
pub fn wants_replication(record: &BackupRecord) -> bool {
    record.status.is_terminal() && record.replication.as_ref().is_some_and(|r| !r.status.is_terminal())
}

/// Prepares the point's replication: one copy per succeeded snapshot, on the first run. A
/// point that ended with nothing usable to copy (failed, cancelled) is not replicated.
pub fn begin(record: &mut BackupRecord) -> Result<(), IllegalTransition> {
    let restorable = record.status.is_restorable();
    let sources: Vec<ReplicaItem> = record
        .items
        .iter()
        .filter(|i| i.status == ItemStatus::Succeeded)
        .filter_map(|i| {
            Some(ReplicaItem {
                resource_id: i.resource_id.clone(),
                kind: i.kind,
                source_snapshot_id: i.snapshot_id.clone()?,
                replica_snapshot_id: None,
                status: ItemStatus::Pending,
                progress: 0,
                error: None,
                attempts: 0,
                option_group: None,
            })
        })
        .collect();
    let Some(replication) = record.replication.as_mut() else { return Ok(()) };
    if !restorable {
        return replication.status.transition(JobStatus::Cancelled);
    }
    if replication.items.is_empty() {
        replication.items = sources;
        replication.status.transition(JobStatus::Running)?;
    }
    Ok(())
}

/// The copies to ask for now, at most `room`: each is marked asked for (`Running`, no
/// copy id yet) — the intent the service saves before it makes any call.
pub fn start_copies(items: &mut [ReplicaItem], room: usize) -> Vec<usize> {
    let mut started = Vec::new();
    for (n, item) in items.iter_mut().enumerate().filter(|(_, i)| i.status == ItemStatus::Pending) {
        if started.len() >= room {
            break;
        }
        item.status = ItemStatus::Running;
        started.push(n);
    }
    started
}

/// A copy asked for by a run that died before writing its id down, as the destination's
/// tags show it: the first is adopted and any others (a call made twice) are returned to
/// be deleted; `None` when there is none and it must be asked for again.
pub fn copy_found(item: &mut ReplicaItem, mut found: Vec<String>) -> Option<Vec<String>> {
    found.sort();
    let mut found = found.into_iter();
    item.replica_snapshot_id = Some(found.next()?);
    Some(found.collect())
}

/// What a copy call answered: the copy's id (it is now running), or a failure that is
/// retried on a later run while attempts remain.
pub fn copy_started(item: &mut ReplicaItem, answer: Result<String, CloudError>) -> CopyStart {
    match answer {
        Ok(replica) => {
            item.replica_snapshot_id = Some(replica);
            item.status = ItemStatus::Running;
            CopyStart::Started
        }
        // Over the account's copy quota: room comes as copies finish; no attempt is spent.
        Err(CloudError::Busy(why)) => {
            item.error = Some(format!("waiting for room under the copy quota: {why}"));
            item.status = ItemStatus::Pending;
            CopyStart::Deferred
        }
        Err(e) if e.is_retryable() && item.attempts + 1 < MAX_COPY_ATTEMPTS => {
            item.attempts += 1;
            item.error = Some(e.to_string());
            item.status = ItemStatus::Pending;
            CopyStart::Deferred
        }
        Err(e) => {
            item.status = ItemStatus::Failed;
            item.error = Some(e.to_string());
            CopyStart::Failed
        }
    }
}

/// How a copy call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyStart {
    Started,
    /// Transient failure; tried again on a later run.
    Deferred,
    Failed,
}

/// How many running copies the destination reported finished (completed, failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopiesEnded {
    pub completed: usize,
    pub failed: usize,
}

/// Folds the destination's view of the running copies into their items.
pub fn copies_reported(items: &mut [ReplicaItem], reported: &HashMap<String, SnapshotStatus>) -> CopiesEnded {
    let mut ended = CopiesEnded::default();
    for item in items.iter_mut().filter(|i| i.status == ItemStatus::Running) {
        // Asked for, its id not known yet: the service finds it by tag first.
        let Some(id) = item.replica_snapshot_id.clone() else { continue };
        let outcome = match reported.get(&id) {
            None => Some(Err(format!("copy {id} disappeared before it completed"))),
            Some(status) => {
                item.progress = status.progress;
                match &status.state {
                    SnapshotState::Pending => None,
                    SnapshotState::Completed => Some(Ok(())),
                    SnapshotState::Error(e) => Some(Err(e.clone())),
                }
            }
        };
        match outcome {
            None => {}
            Some(Ok(())) => {
                item.status = ItemStatus::Succeeded;
                item.progress = 100;
                ended.completed += 1;
            }
            Some(Err(cause)) => {
                item.status = ItemStatus::Failed;
                item.error = Some(cause);
                ended.failed += 1;
            }
        }
    }
    ended
}

/// The replication's status, from its copies.
pub fn derive_status(replication: &mut Replication) {
    replication.refresh_status();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::backup_point;
    use crate::model::{BackupItem, ResourceKind};
    use chrono::Utc;

    fn finished_point(status: JobStatus) -> BackupRecord {
        let mut done = BackupItem::new("vol-1", ResourceKind::Volume);
        done.status = ItemStatus::Succeeded;
        done.snapshot_id = Some("snap-1".into());
        let mut failed = BackupItem::new("vol-2", ResourceKind::Volume);
        failed.status = ItemStatus::Failed;
        BackupRecord {
            status,
            finished_at: Some(Utc::now()),
            replication: Some(Replication {
                region: "us-west-2".into(),
                status: JobStatus::Pending,
                expires_at: None,
                items: vec![],
                lease: None,
            }),
            ..backup_point(vec![done, failed])
        }
    }

    #[test]
    fn a_finished_point_copies_each_succeeded_snapshot_once() {
        // GIVEN a partially failed point that replicates
        let mut record = finished_point(JobStatus::PartiallyFailed);
        assert!(wants_replication(&record));
        // WHEN its replication begins (twice: a repeated run)
        begin(&mut record).unwrap();
        begin(&mut record).unwrap();
        // THEN one copy is planned, of the succeeded snapshot only
        let replication = record.replication.as_ref().unwrap();
        assert_eq!(replication.status, JobStatus::Running);
        assert_eq!(replication.items.len(), 1);
        assert_eq!(replication.items[0].source_snapshot_id, "snap-1");
    }

    #[test]
    fn copies_are_asked_for_within_the_room_and_a_lost_answer_is_found_by_tag() {
        // GIVEN a point with three snapshots to copy and room for two copies
        let mut record = finished_point(JobStatus::Succeeded);
        begin(&mut record).unwrap();
        let items = &mut record.replication.as_mut().unwrap().items;
        items.extend([items[0].clone(), items[0].clone()]);
        items[1].source_snapshot_id = "snap-2".into();
        items[2].source_snapshot_id = "snap-3".into();
        // WHEN copies are started THEN two are marked asked for (the intent), without ids
        assert_eq!(start_copies(items, 2), vec![0, 1]);
        assert!(items[..2].iter().all(|i| i.status == ItemStatus::Running && i.replica_snapshot_id.is_none()));
        assert_eq!(items[2].status, ItemStatus::Pending);
        // AND an asked-for copy with no id yet is not taken for a vanished one
        let ended = copies_reported(items, &HashMap::new());
        assert_eq!(ended, CopiesEnded::default());
        // WHEN the run died after the calls and the next finds the copies by tag
        let extras = copy_found(&mut items[0], vec!["snap-copy-b".into(), "snap-copy-a".into()]);
        // THEN one is adopted and the other (made twice) is to be deleted
        assert_eq!(items[0].replica_snapshot_id.as_deref(), Some("snap-copy-a"));
        assert_eq!(extras, Some(vec!["snap-copy-b".to_owned()]));
        // AND a copy that is not there is asked for again
        assert_eq!(copy_found(&mut items[1], vec![]), None);
        assert!(items[1].replica_snapshot_id.is_none());
    }

    #[test]
    fn a_copy_over_the_quota_waits_without_spending_an_attempt() {
        // GIVEN a planned copy
        let mut record = finished_point(JobStatus::Succeeded);
        begin(&mut record).unwrap();
        let item = &mut record.replication.as_mut().unwrap().items[0];
        // WHEN the destination refuses it for the copy quota, more times than attempts allow
        for _ in 0..MAX_COPY_ATTEMPTS + 2 {
            let answer = copy_started(item, Err(CloudError::Busy("ResourceLimitExceeded: too many copies".into())));
            assert_eq!(answer, CopyStart::Deferred);
        }
        // THEN it still waits, saying why, with every attempt left
        assert_eq!((item.status, item.attempts), (ItemStatus::Pending, 0));
        assert!(item.error.as_deref().unwrap().contains("copy quota"));
    }

    #[test]
    fn a_failed_point_is_not_replicated() {
        // GIVEN a failed point WHEN replication begins THEN it is cancelled
        let mut record = finished_point(JobStatus::Failed);
        begin(&mut record).unwrap();
        assert_eq!(record.replication.as_ref().unwrap().status, JobStatus::Cancelled);
        assert!(!wants_replication(&record));
    }

    #[test]
    fn transient_copy_failures_are_retried_until_the_limit() {
        // GIVEN a planned copy
        let mut record = finished_point(JobStatus::Succeeded);
        begin(&mut record).unwrap();
        let item = &mut record.replication.as_mut().unwrap().items[0];
        // WHEN the copy call is throttled THEN it is deferred, up to the limit
        for _ in 1..MAX_COPY_ATTEMPTS {
            assert_eq!(copy_started(item, Err(CloudError::Throttled("slow".into()))), CopyStart::Deferred);
            assert_eq!(item.status, ItemStatus::Pending);
        }
        // AND the last attempt fails the copy
        assert_eq!(copy_started(item, Err(CloudError::Throttled("slow".into()))), CopyStart::Failed);
        assert_eq!(item.status, ItemStatus::Failed);
    }

    #[test]
    fn copies_finish_as_the_destination_reports_them() {
        // GIVEN a running copy
        let mut record = finished_point(JobStatus::Succeeded);
        begin(&mut record).unwrap();
        let replication = record.replication.as_mut().unwrap();
        assert_eq!(copy_started(&mut replication.items[0], Ok("snap-copy".into())), CopyStart::Started);
        // WHEN the destination reports it completed
        let reported = HashMap::from([(
            "snap-copy".to_owned(),
            SnapshotStatus {
                snapshot_id: "snap-copy".into(),
                state: SnapshotState::Completed,
                progress: 100,
                size_bytes: 1,
            },
        )]);
        let ended = copies_reported(&mut replication.items, &reported);
        derive_status(replication);
        // THEN the copy and the replication succeed
        assert_eq!(ended, CopiesEnded { completed: 1, failed: 0 });
        assert_eq!(replication.status, JobStatus::Succeeded);
    }
}
