//! Retention as pure decisions: what a retention change makes of a point's expiry, and what
//! the outcome of each snapshot delete makes of an expiring point. A promise is never
//! broken: retention can be extended or made permanent, never shortened.

use chrono::Duration;

use crate::cloud::DeleteOutcome;
use crate::error::{Error, Result};
use crate::model::{BackupItem, BackupRecord, ResourceKind, Timestamp};
use crate::status::{IllegalTransition, ItemStatus, JobStatus};
use crate::validate::{self, MAX_RETENTION_DAYS};

use super::{ExpirySummary, RetentionRequest};

/// The expiry a retention request gives the point, or why it is refused (nothing changes).
pub fn new_expiry(record: &BackupRecord, request: &RetentionRequest, now: Timestamp) -> Result<Option<Timestamp>> {
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
    let backup_id = &record.backup_id;
    if record.status == JobStatus::Expired {
        return Err(Error::conflict(
            "BackupExpired",
            format!("backup {backup_id} has expired; its snapshots are deleted"),
        ));
    }
    if let Some(since) = record.expiring_since {
        return Err(Error::expiring(backup_id, since));
    }
    let limit = record.started_at + Duration::days(MAX_RETENTION_DAYS.into());
    let expiry = match (request, record.expires_at) {
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
    if expiry.is_some_and(|e| e > limit) {
        return Err(Error::bad_request(
            "InvalidRetention",
            format!("a point is kept at most {MAX_RETENTION_DAYS} days after it started (until {limit})"),
        ));
    }
    if expiry.is_some_and(|e| e <= now) {
        return Err(Error::bad_request("InvalidRetention", "expires_at must be in the future"));
    }
    Ok(expiry)
}

/// What a retention change of the point makes of its copies' expiry: moved by as much as the
/// point's (never earlier), or never when the point is kept for ever. `None`: unchanged (no
/// copies, copies already expired, or copies that never expire).
pub fn replica_expiry(
    record: &BackupRecord,
    old_point: Option<Timestamp>,
    new_point: Option<Timestamp>,
) -> Option<Option<Timestamp>> {
    let replication = record.replication.as_ref().filter(|r| r.status != JobStatus::Expired)?;
    let current = replication.expires_at?;
    match (old_point, new_point) {
        (_, None) => Some(None),
        (Some(old), Some(new)) if new > old => Some(Some(current + (new - old))),
        _ => None,
    }
}

/// Whether the point's own snapshots are due for deletion at `now`: its retention ran out,
/// and nothing reads them (a restore, or a replication still copying them).
pub fn point_due(record: &BackupRecord, now: Timestamp) -> bool {
    let copying = record.replication.as_ref().is_some_and(|r| !r.status.is_terminal());
    record.status.is_terminal()
        && record.status != JobStatus::Expired
        && record.expires_at.is_some_and(|e| e <= now)
        && record.restores_running.is_empty()
        && !copying
}

/// Whether the point's copies in the destination region are due for deletion at `now`
/// (not while a restore may be reading them).
pub fn replicas_due(record: &BackupRecord, now: Timestamp) -> bool {
    record.restores_running.is_empty()
        && record.replication.as_ref().is_some_and(|r| {
            r.status.is_terminal() && r.status != JobStatus::Expired && r.expires_at.is_some_and(|e| e <= now)
        })
}

/// The snapshots an expiring point still manages: (item position, kind, snapshot id).
pub fn snapshots_to_delete(record: &BackupRecord) -> Vec<(usize, ResourceKind, String)> {
    record
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| !item.released)
        .filter_map(|(n, item)| Some((n, item.kind, item.snapshot_id.clone()?)))
        .collect()
}

/// How the delete of one of an expiring point's snapshots ended: deleted; in use by
/// something else (released from snapnest's management, never retried); or already gone,
/// which for a snapshot of a succeeded item means it was deleted behind snapnest's back —
/// unless an earlier run of this expiry (`resumed`) may have deleted it.
pub fn snapshot_deleted(
    record: &mut BackupRecord,
    position: usize,
    snapshot_id: &str,
    outcome: DeleteOutcome,
    resumed: bool,
    summary: &mut ExpirySummary,
) {
    let item: &mut BackupItem = &mut record.items[position];
    match outcome {
        DeleteOutcome::Deleted => summary.snapshots_deleted += 1,
        DeleteOutcome::InUse(by) => {
            item.released = true;
            item.error = Some(format!("released from snapnest's management: the snapshot is in use ({by})"));
            summary.snapshots_released += 1;
        }
        DeleteOutcome::NotFound if item.status == ItemStatus::Succeeded && !resumed => {
            record.damaged = true;
            item.error = Some(format!("snapshot {snapshot_id} was deleted outside snapnest"));
        }
        DeleteOutcome::NotFound => {}
    }
    let item = &mut record.items[position];
    item.snapshot_id = item.released.then(|| snapshot_id.to_owned());
}

/// Every snapshot of the point has been dealt with: it is `Expired`.
pub fn point_expired(record: &mut BackupRecord, summary: &mut ExpirySummary) -> Result<(), IllegalTransition> {
    record.status.transition(JobStatus::Expired)?;
    summary.points_expired += 1;
    summary.points_damaged += record.damaged as usize;
    Ok(())
}

/// How often a live point's snapshots are looked for.
pub fn verify_every() -> Duration {
    Duration::days(1)
}

/// When the point's snapshots are next looked for: a day after it finished or was last
/// verified, while it can be restored (not damaged, not expiring).
pub fn next_verification(record: &BackupRecord) -> Option<Timestamp> {
    let live = record.status.is_restorable() && !record.damaged && record.expiring_since.is_none();
    live.then(|| record.verified_at.or(record.finished_at)).flatten().map(|at| at + verify_every())
}

/// Whether this run looks for the point's snapshots: its day has come, and it is not about to
/// be deleted (a point due to expire is deleted now; a snapshot gone behind snapnest's back
/// is found by its delete, so looking first would only cost describes and reads).
pub fn verification_due(record: &BackupRecord, now: Timestamp) -> bool {
    next_verification(record).is_some_and(|at| at <= now) && !point_due(record, now)
}

/// The snapshots a verification looks for: (region, kind, snapshot id) of every succeeded
/// item and every finished copy.
pub fn snapshots_to_verify(record: &BackupRecord) -> Vec<(String, ResourceKind, String)> {
    let own = record
        .items
        .iter()
        .filter(|i| i.status == ItemStatus::Succeeded && !i.released)
        .filter_map(|i| Some((record.region.clone(), i.kind, i.snapshot_id.clone()?)));
    let copies = record.replication.iter().filter(|r| r.status != JobStatus::Expired).flat_map(|r| {
        r.items
            .iter()
            .filter(|c| c.status == ItemStatus::Succeeded)
            .filter_map(|c| Some((r.region.clone(), c.kind, c.replica_snapshot_id.clone()?)))
    });
    own.chain(copies).collect()
}

/// What a verification found: every snapshot the cloud no longer knows (a describe that
/// answered; one that failed verifies nothing and changes nothing) marks its item, and a
/// missing snapshot of the point makes it damaged; a missing copy fails its replica item
/// (a disaster recovery then refuses the copies). Returns whether anything was missing.
pub fn verified(record: &mut BackupRecord, missing: &std::collections::HashSet<String>, now: Timestamp) -> bool {
    let mut found_missing = false;
    for item in record.items.iter_mut().filter(|i| i.status == ItemStatus::Succeeded && !i.released) {
        if let Some(id) = item.snapshot_id.as_ref().filter(|id| missing.contains(*id)) {
            item.error = Some(format!("snapshot {id} was deleted outside snapnest (noticed {now})"));
            record.damaged = true;
            found_missing = true;
        }
    }
    if let Some(replication) = record.replication.as_mut() {
        for copy in replication.items.iter_mut().filter(|c| c.status == ItemStatus::Succeeded) {
            if let Some(id) = copy.replica_snapshot_id.clone().filter(|id| missing.contains(id)) {
                copy.status = ItemStatus::Failed;
                copy.error = Some(format!("copy {id} was deleted outside snapnest (noticed {now})"));
                found_missing = true;
            }
        }
        replication.refresh_status();
    }
    record.verified_at = Some(now);
    found_missing
}

/// For each volume snapshot of `record`, the snapshot it adds to: that of the same volume in
/// the newest point of `others` started before it that still holds one (none: the first of
/// its chain). As (item position, snapshot, predecessor).
pub fn chain_predecessors(record: &BackupRecord, others: &[BackupRecord]) -> Vec<(usize, String, Option<String>)> {
    let mut older: Vec<&BackupRecord> = others
        .iter()
        .filter(|o| o.backup_id != record.backup_id && o.started_at < record.started_at)
        .filter(|o| o.status.is_restorable() && o.region == record.region)
        .collect();
    older.sort_by_key(|o| std::cmp::Reverse(o.started_at));
    record
        .items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.kind == ResourceKind::Volume && i.status == ItemStatus::Succeeded && !i.released)
        .filter_map(|(n, item)| {
            let snapshot = item.snapshot_id.clone()?;
            let predecessor = older.iter().find_map(|o| {
                o.items
                    .iter()
                    .find(|i| i.resource_id == item.resource_id && i.status == ItemStatus::Succeeded && !i.released)
                    .and_then(|i| i.snapshot_id.clone())
            });
            Some((n, snapshot, predecessor))
        })
        .collect()
}

/// How the delete of one replica ended, for the run's summary.
pub fn replica_deleted(outcome: &DeleteOutcome, summary: &mut ExpirySummary) {
    match outcome {
        DeleteOutcome::Deleted => summary.snapshots_deleted += 1,
        DeleteOutcome::InUse(_) => summary.snapshots_released += 1,
        DeleteOutcome::NotFound => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::backup_point;
    use chrono::Utc;

    fn point(expires_in_days: Option<i64>) -> BackupRecord {
        let now = Utc::now();
        let mut item = BackupItem::new("vol-1", ResourceKind::Volume);
        item.status = ItemStatus::Succeeded;
        item.snapshot_id = Some("snap-1".into());
        let mut db = BackupItem::new("orders", ResourceKind::Database);
        db.status = ItemStatus::Succeeded;
        db.snapshot_id = Some("snapnest-db".into());
        BackupRecord {
            status: JobStatus::Succeeded,
            finished_at: Some(now),
            expires_at: expires_in_days.map(|d| now + Duration::days(d)),
            ..backup_point(vec![item, db])
        }
    }

    fn extend(days: u32) -> RetentionRequest {
        RetentionRequest { extend_days: Some(days), ..Default::default() }
    }

    #[test]
    fn retention_is_extended_or_made_permanent_but_never_shortened() {
        // GIVEN a point that expires in 7 days
        let now = Utc::now();
        let record = point(Some(7));
        let promised = record.expires_at.unwrap();
        // WHEN it is extended by 3 days THEN it expires 3 days later
        assert_eq!(new_expiry(&record, &extend(3), now).unwrap(), Some(promised + Duration::days(3)));
        // WHEN it is made permanent THEN it never expires
        let never = RetentionRequest { never_expire: Some(true), ..Default::default() };
        assert_eq!(new_expiry(&record, &never, now).unwrap(), None);
        // WHEN an earlier date is asked THEN it is refused as a shortening
        let earlier = RetentionRequest { expires_at: Some(promised - Duration::days(1)), ..Default::default() };
        assert!(matches!(new_expiry(&record, &earlier, now), Err(Error::Conflict { code: "RetentionShortened", .. })));
        // WHEN a permanent point is given a date THEN that is a shortening too
        let permanent = point(None);
        assert!(matches!(
            new_expiry(&permanent, &extend(1), now),
            Err(Error::Conflict { code: "RetentionShortened", .. })
        ));
    }

    #[test]
    fn bad_retention_requests_are_400s() {
        let now = Utc::now();
        let record = point(Some(7));
        for bad in [
            RetentionRequest::default(),
            RetentionRequest { extend_days: Some(1), never_expire: Some(true), ..Default::default() },
            RetentionRequest { never_expire: Some(false), ..Default::default() },
            extend(0),
            extend(70_000),
        ] {
            assert!(matches!(new_expiry(&record, &bad, now), Err(Error::BadRequest { .. })), "{bad:?}");
        }
    }

    #[test]
    fn an_expiring_point_deletes_releases_or_finds_damage_per_snapshot() {
        // GIVEN a point past its expiry with a volume and a database snapshot
        let now = Utc::now();
        let mut record = point(Some(-1));
        let mut summary = ExpirySummary::default();
        assert!(point_due(&record, now));
        let targets = snapshots_to_delete(&record);
        assert_eq!(targets.len(), 2);
        // WHEN the volume snapshot is in use by an AMI and the DB snapshot is already gone
        snapshot_deleted(&mut record, 0, "snap-1", DeleteOutcome::InUse("ami-1".into()), false, &mut summary);
        snapshot_deleted(&mut record, 1, "snapnest-db", DeleteOutcome::NotFound, false, &mut summary);
        point_expired(&mut record, &mut summary).unwrap();
        // THEN the volume snapshot is released (kept, never retried), the point damaged and Expired
        assert!(record.items[0].released);
        assert_eq!(record.items[0].snapshot_id.as_deref(), Some("snap-1"));
        assert!(record.items[1].snapshot_id.is_none());
        assert!(record.damaged);
        assert_eq!(record.status, JobStatus::Expired);
        assert_eq!((summary.snapshots_released, summary.points_damaged, summary.points_expired), (1, 1, 1));
        // AND a released snapshot is not deleted again
        assert!(snapshots_to_delete(&record).is_empty());
        assert!(!point_due(&record, now));
    }

    #[test]
    fn a_snapshot_gone_when_an_earlier_run_of_the_expiry_began_is_not_damage() {
        // GIVEN a point whose expiry began in a run that died after deleting its snapshot
        let mut record = point(Some(-1));
        record.expiring_since = Some(Utc::now());
        let mut summary = ExpirySummary::default();
        // WHEN the next run finds the snapshot gone
        snapshot_deleted(&mut record, 0, "snap-1", DeleteOutcome::NotFound, true, &mut summary);
        // THEN the point is not damaged: snapnest deleted it itself
        assert!(!record.damaged);
        assert!(record.items[0].snapshot_id.is_none());
        // AND its retention can no longer change
        let refused = new_expiry(&record, &extend(7), Utc::now());
        assert!(matches!(refused, Err(Error::Conflict { code: "BackupExpiring", .. })), "{refused:?}");
    }

    #[test]
    fn the_copies_expiry_follows_the_points_retention_changes() {
        // GIVEN a point expiring in a day whose copies expire in three
        let now = Utc::now();
        let mut record = point(Some(1));
        let copies_expire = now + Duration::days(3);
        record.replication = Some(crate::model::Replication {
            region: "us-west-2".into(),
            status: JobStatus::Succeeded,
            expires_at: Some(copies_expire),
            items: vec![],
            lease: None,
        });
        let old = record.expires_at;
        // WHEN the point is extended by a week THEN its copies are too
        let extended = old.map(|e| e + Duration::days(7));
        assert_eq!(replica_expiry(&record, old, extended), Some(Some(copies_expire + Duration::days(7))));
        // WHEN the point is kept for ever THEN so are its copies
        assert_eq!(replica_expiry(&record, old, None), Some(None));
        // AND copies that never expire, or already expired, stay as they are
        record.replication.as_mut().unwrap().expires_at = None;
        assert_eq!(replica_expiry(&record, old, extended), None);
    }

    #[test]
    fn a_point_read_by_a_restore_or_a_replication_is_not_due() {
        // GIVEN a point past its expiry that a restore reads, and one still being copied
        let now = Utc::now();
        let mut restored = point(Some(-1));
        restored.restores_running = vec![crate::ids::RestoreId::generate()];
        let mut copying = point(Some(-1));
        copying.replication = Some(crate::model::Replication {
            region: "us-west-2".into(),
            status: JobStatus::Running,
            expires_at: None,
            items: vec![],
            lease: None,
        });
        // THEN neither is due until that ends
        assert!(!point_due(&restored, now));
        assert!(!point_due(&copying, now));
        copying.replication.as_mut().unwrap().status = JobStatus::Succeeded;
        restored.restores_running.clear();
        assert!(point_due(&restored, now) && point_due(&copying, now));
    }

    #[test]
    fn a_point_in_retention_or_still_running_is_not_due() {
        let now = Utc::now();
        assert!(!point_due(&point(Some(1)), now));
        assert!(!point_due(&point(None), now));
        let mut running = point(Some(-1));
        running.status = JobStatus::Running;
        assert!(!point_due(&running, now));
    }

    #[test]
    fn a_live_point_is_looked_at_daily_and_a_snapshot_gone_behind_its_back_damages_it() {
        // GIVEN a point that finished now, with a copy of each snapshot in us-west-2
        let now = Utc::now();
        let mut record = point(Some(30));
        record.replication = Some(crate::fixtures::replicated(&record.items, "us-west-2", "copy"));
        // THEN it is due to be looked at a day after it finished, for its snapshots and copies
        assert_eq!(next_verification(&record), Some(record.finished_at.unwrap() + verify_every()));
        let looked_for: Vec<(String, String)> =
            snapshots_to_verify(&record).into_iter().map(|(region, _, id)| (region, id)).collect();
        assert_eq!(looked_for.len(), 4);
        assert!(looked_for.contains(&("us-west-2".into(), "snapnest-db-copy".into())));
        // WHEN everything is there THEN it is verified, due again a day later
        assert!(!verified(&mut record, &Default::default(), now));
        assert_eq!(next_verification(&record), Some(now + verify_every()));
        assert!(!record.damaged);
        // WHEN a snapshot and a copy are gone THEN the point is damaged, the copy's item failed
        let missing = ["snap-1".to_owned(), "snapnest-db-copy".to_owned()].into_iter().collect();
        assert!(verified(&mut record, &missing, now));
        assert!(record.damaged);
        assert!(record.items[0].error.as_deref().unwrap().contains("deleted outside snapnest"));
        let replication = record.replication.as_ref().unwrap();
        assert_eq!(replication.items[1].status, ItemStatus::Failed);
        assert_eq!(replication.status, JobStatus::PartiallyFailed);
        // and a damaged point is no longer looked at (it is only waited for to expire)
        assert_eq!(next_verification(&record), None);
    }

    #[test]
    fn a_point_due_to_expire_is_deleted_without_being_looked_at_first() {
        // GIVEN a point kept three days, never looked at
        let record = point(Some(3));
        let finished = record.finished_at.unwrap();
        // WHEN a run comes a day after it finished, before it expires
        // THEN its snapshots are looked for
        assert!(verification_due(&record, finished + verify_every()));
        // WHEN the run comes once it has expired THEN it is deleted, not looked at
        assert!(!verification_due(&record, finished + Duration::days(4)));
        assert!(point_due(&record, finished + Duration::days(4)));
    }

    #[test]
    fn a_volume_snapshot_adds_to_the_newest_older_snapshot_of_its_volume() {
        // GIVEN three points of the same volume, the middle one without a snapshot of it
        let at = |hours: i64, snapshot: Option<&str>| {
            let mut record = point(Some(30));
            record.started_at = Utc::now() + Duration::hours(hours);
            record.items[0].snapshot_id = snapshot.map(str::to_owned);
            record.items[0].status = if snapshot.is_some() { ItemStatus::Succeeded } else { ItemStatus::Failed };
            record
        };
        let (first, middle, last) = (at(0, Some("snap-a")), at(1, None), at(2, Some("snap-c")));
        let all = vec![last.clone(), middle.clone(), first.clone()];
        // THEN the first is the start of its chain, the last adds to the first
        assert_eq!(chain_predecessors(&first, &all), vec![(0, "snap-a".to_owned(), None)]);
        assert_eq!(chain_predecessors(&last, &all), vec![(0, "snap-c".to_owned(), Some("snap-a".to_owned()))]);
        // and a database's snapshot is in no chain (RDS snapshots are sized as they are)
        assert!(chain_predecessors(&middle, &all).is_empty());
        // WHEN the first point expired THEN the last starts its chain again
        let mut expired = first.clone();
        expired.status = JobStatus::Expired;
        assert_eq!(chain_predecessors(&last, &[last.clone(), expired]), vec![(0, "snap-c".to_owned(), None)]);
    }
}
