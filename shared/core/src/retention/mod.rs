//! Retention: changing how long a point is kept, and deleting what is due. The decisions
//! are [`lifecycle`]'s; [`RetentionService`] reads, calls the cloud and saves.
//!
//! `expire-retention` reads only due points (the store's due index), deletes their
//! snapshots, releases the ones something else now uses (the cloud refuses the delete), and
//! marks a point whose snapshot vanished behind snapnest's back as damaged.

pub mod lifecycle;

use std::collections::{BTreeMap, HashSet};

use futures_util::StreamExt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

use crate::access::Caller;
use crate::clock::Clock;
use crate::cloud::CloudProvider;
use crate::error::{Error, Result};
use crate::ids::{BackupId, ExpiryRunId};
use crate::model::{BackupRecord, Change, Lease, ResourceKind, RestorePhase, RestoreRecord, Timestamp};
use crate::records::{Records, StoredRecord};
use crate::restore::RestoreService;
use crate::snapshots::{delete_snapshot, describe_snapshots, replica_tags, snapshot_tags};
use crate::status::{ItemStatus, JobStatus};
use crate::store::Collection;

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
    /// Volumes and databases in-place restores replaced, deleted once no longer kept.
    #[serde(default)]
    pub replaced_deleted: usize,
    /// Points left for the next run because the cloud failed transiently.
    pub deferred: usize,
    /// Live points whose snapshots (and copies) were looked for.
    #[serde(default)]
    pub points_verified: usize,
    /// The run stopped at its time budget; the next run goes on from there.
    #[serde(default)]
    pub stopped_at_budget: bool,
    /// Of those, points found missing a snapshot or a copy deleted behind snapnest's back.
    #[serde(default)]
    pub damage_found: usize,
}

/// A record of one expire-retention run that had something to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpiryRun {
    pub run_id: ExpiryRunId,
    pub status: JobStatus,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub summary: ExpirySummary,
    pub version: u64,
}

const EXPIRY_OWNER: &str = "expiry";

/// Snapshot deletes an expiry makes at once (the AWS adapter bounds each API family to 8 in
/// flight per region; the SDK's adaptive retry paces what is still throttled).
const DELETES_IN_FLIGHT: usize = 16;

impl StoredRecord for ExpiryRun {
    const COLLECTION: Collection = Collection::ExpiryRuns;
    const WHAT: &'static str = "expiry run";
    fn id(&self) -> &str {
        &self.run_id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn owner(&self) -> &str {
        EXPIRY_OWNER
    }
    fn created_at(&self) -> Timestamp {
        self.started_at
    }
}

/// Retention changes and the expiry of due points.
#[derive(Clone)]
pub struct RetentionService {
    records: Records,
    clouds: Arc<dyn CloudProvider>,
    clock: Arc<dyn Clock>,
    /// Deletes what in-place restores replaced once it is no longer kept.
    restores: RestoreService,
    caller: Arc<Caller>,
}

impl RetentionService {
    pub fn new(
        records: Records,
        clouds: Arc<dyn CloudProvider>,
        clock: Arc<dyn Clock>,
        restores: RestoreService,
        caller: Arc<Caller>,
    ) -> Self {
        Self { records, clouds, clock, restores, caller }
    }

    /// Extends a point's retention, sets a later date, or makes it permanent; the snapshots'
    /// expiry tags follow.
    #[instrument(skip(self, request))]
    pub async fn change(&self, backup_id: &str, request: &RetentionRequest) -> Result<BackupRecord> {
        let now = self.clock.now();
        let backup_id = BackupId::parse("backup id", backup_id)?;
        let mut record: BackupRecord = self.records.load(&backup_id).await?;
        self.caller.check(&record.owners, "backup", &backup_id)?;
        let old = record.expires_at;
        record.expires_at = lifecycle::new_expiry(&record, request, now)?;
        let replicas_follow = lifecycle::replica_expiry(&record, old, record.expires_at);
        let until = record.expires_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
        record.changes.push(Change::new(format!("retention: expires {until}"), &self.caller.principal, now));
        if let (Some(expiry), Some(replication)) = (replicas_follow, record.replication.as_mut()) {
            replication.expires_at = expiry;
        }
        self.records.save(&mut record).await?;
        let cloud = self.clouds.region(&record.region)?;
        let tags = snapshot_tags(&record);
        for item in record.items.iter().filter(|i| i.status == ItemStatus::Succeeded && !i.released) {
            if let Some(snapshot_id) = &item.snapshot_id {
                if let Err(e) = cloud.tag_snapshot(snapshot_id, &tags).await {
                    warn!(snapshot_id, error = %e, "expiry tag not updated; the record is authoritative");
                }
            }
        }
        // The copies' expiry tags follow too, in their region.
        if let (Some(_), Some(replication)) = (replicas_follow, record.replication.as_ref()) {
            let destination = self.clouds.region(&replication.region)?;
            let tags = replica_tags(&record);
            for item in &replication.items {
                let Some(copy) = &item.replica_snapshot_id else { continue };
                let mut tags = tags.clone();
                tags.insert(crate::cloud::tag::COPY_OF.to_owned(), item.source_snapshot_id.clone());
                if let Err(e) = destination.tag_snapshot(copy, &tags).await {
                    warn!(copy, error = %e, "expiry tag of a copy not updated; the record is authoritative");
                }
            }
        }
        info!(expires_at = ?record.expires_at, "retention changed");
        Ok(record)
    }

    /// Deletes everything that is due: expired points' snapshots and expired replicas.
    pub async fn expire_due(&self) -> Result<ExpirySummary> {
        self.expire_due_until(None).await
    }

    /// As [`RetentionService::expire_due`], stopping cleanly before `deadline` (the
    /// invocation's end, less a margin): no delete starts after it, what was done is saved, a
    /// point left half way keeps its `expiring_since` and the next run finishes it (a snapshot
    /// it then finds gone was deleted by snapnest, never "damage").
    #[instrument(skip(self))]
    pub async fn expire_due_until(&self, deadline: Option<Timestamp>) -> Result<ExpirySummary> {
        let started_at = self.clock.now();
        let mut summary = ExpirySummary::default();
        let due = self.records.due::<BackupRecord>(started_at).await?;
        let due = self.verify(due, started_at, &mut summary).await?;
        for record in due {
            if self.past(deadline) {
                summary.stopped_at_budget = true;
                break;
            }
            let backup_id = record.backup_id.clone();
            if let Err(e) = self.expire_backup(record, started_at, deadline, &mut summary).await {
                summary.deferred += 1;
                warn!(%backup_id, error = %e, "expiry deferred to the next run");
            }
        }
        match self.restores.expire_replaced().await {
            Ok(deleted) => summary.replaced_deleted = deleted,
            Err(e) => {
                summary.deferred += 1;
                warn!(error = %e, "replaced resources left for the next run");
            }
        }
        self.record_run(started_at, &summary).await;
        Ok(summary)
    }

    /// The run's time is up.
    fn past(&self, deadline: Option<Timestamp>) -> bool {
        crate::clock::past(self.clock.as_ref(), deadline)
    }

    #[instrument(skip_all, fields(backup_id = %record.backup_id, service_instance_id = %record.service_instance_id))]
    async fn expire_backup(
        &self,
        mut record: BackupRecord,
        now: Timestamp,
        deadline: Option<Timestamp>,
        summary: &mut ExpirySummary,
    ) -> Result<()> {
        if !record.restores_running.is_empty() && self.prune_finished_restores(&mut record).await? {
            // Restores that ended without saying so (they died) no longer hold the point.
            self.records.save(&mut record).await?;
        }
        let (point_due, replicas_due) = (lifecycle::point_due(&record, now), lifecycle::replicas_due(&record, now));
        if !point_due && !replicas_due {
            return Ok(());
        }
        // Deletes are made only under the point's expiry lease, taken with the intent in one
        // conditional save before the first delete: a retention change or a restore that got
        // in first makes this save fail (the point is left for the next run), one that comes
        // after is refused, and a second expiry run at the same time leaves the point alone.
        let run = uuid::Uuid::new_v4().to_string();
        if Lease::held_by_another(&record.expiry_lease, &run, now) {
            return Ok(());
        }
        let resumed = record.expiring_since.is_some();
        record.expiry_lease = Lease::take(&run, now);
        if point_due && !resumed {
            record.expiring_since = Some(now);
        }
        self.records.save(&mut record).await?;
        if point_due {
            let cloud = self.clouds.region(&record.region)?;
            // DELETES_IN_FLIGHT at once; none starts past the deadline.
            let deletes = futures_util::stream::iter(lifecycle::snapshots_to_delete(&record))
                .map(|(n, kind, snapshot_id)| {
                    let cloud = cloud.clone();
                    async move {
                        if self.past(deadline) {
                            return None;
                        }
                        Some((n, delete_snapshot(cloud.as_ref(), kind, &snapshot_id).await, snapshot_id))
                    }
                })
                .buffer_unordered(DELETES_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await;
            let mut failed = None;
            let mut all_done = true;
            for done in deletes {
                match done {
                    Some((n, Ok(outcome), snapshot_id)) => {
                        lifecycle::snapshot_deleted(&mut record, n, &snapshot_id, outcome, resumed, summary)
                    }
                    Some((_, Err(e), _)) => failed = Some(e),
                    None => all_done = false,
                }
            }
            if let Some(e) = failed {
                // What was deleted is saved; the point stays expiring for the next run.
                record.expiry_lease = None;
                self.records.save(&mut record).await?;
                return Err(e.into());
            }
            if !all_done {
                summary.stopped_at_budget = true;
                record.expiry_lease = None;
                self.records.save(&mut record).await?;
                return Ok(());
            }
            lifecycle::point_expired(&mut record, summary)?;
        }
        if replicas_due {
            let replication = record.replication.as_mut().expect("checked by replicas_due");
            let cloud = self.clouds.region(&replication.region)?;
            for item in replication.items.iter() {
                if let Some(id) = &item.replica_snapshot_id {
                    lifecycle::replica_deleted(&delete_snapshot(cloud.as_ref(), item.kind, id).await?, summary);
                }
            }
            replication.status.transition(JobStatus::Expired)?;
            summary.replicas_expired += 1;
        }
        record.expiry_lease = None;
        self.records.save(&mut record).await?;
        info!(status = record.status.as_str(), damaged = record.damaged, "backup point expired");
        Ok(())
    }

    /// Looks for the snapshots and copies of the live points due for it, in one batched
    /// describe per region and kind: a snapshot deleted behind snapnest's back is noticed
    /// while the point lives. A describe that fails verifies nothing in its region (the
    /// points stay due); it never marks damage. Answers the points, as saved.
    async fn verify(
        &self,
        due: Vec<BackupRecord>,
        now: Timestamp,
        summary: &mut ExpirySummary,
    ) -> Result<Vec<BackupRecord>> {
        let to_verify = |r: &BackupRecord| lifecycle::verification_due(r, now);
        let mut wanted: BTreeMap<String, Vec<(ResourceKind, String)>> = BTreeMap::new();
        for record in due.iter().filter(|r| to_verify(r)) {
            for (region, kind, id) in lifecycle::snapshots_to_verify(record) {
                wanted.entry(region).or_default().push((kind, id));
            }
        }
        let mut missing = HashSet::new();
        let mut unanswered = HashSet::new();
        for (region, snapshots) in wanted {
            let asked: Vec<String> = snapshots.iter().map(|(_, id)| id.clone()).collect();
            let reported = match self.clouds.region(&region) {
                Ok(cloud) => describe_snapshots(cloud.as_ref(), snapshots).await,
                Err(e) => Err(e),
            };
            match reported {
                Ok(reported) => missing.extend(asked.into_iter().filter(|id| !reported.contains_key(id))),
                Err(e) => {
                    warn!(%region, error = %e, "snapshots not verified this run");
                    unanswered.insert(region);
                }
            }
        }
        let mut out = Vec::with_capacity(due.len());
        let mut chains: BTreeMap<String, Vec<BackupRecord>> = BTreeMap::new();
        for mut record in due {
            let answered =
                lifecycle::snapshots_to_verify(&record).iter().all(|(region, _, _)| !unanswered.contains(region));
            if !to_verify(&record) || !answered {
                summary.deferred += usize::from(to_verify(&record));
                out.push(record);
                continue;
            }
            let damaged = lifecycle::verified(&mut record, &missing, now);
            if !damaged {
                self.measure_storage(&mut record, &mut chains).await?;
            }
            match self.records.save(&mut record).await {
                Ok(()) => {
                    summary.points_verified += 1;
                    summary.damage_found += usize::from(damaged);
                    if damaged {
                        warn!(backup_id = %record.backup_id, "snapshots of a live point were deleted outside snapnest");
                    }
                    out.push(record);
                }
                // Changed meanwhile (a retention change, a restore): verified on the next run.
                Err(Error::Conflict { .. }) => summary.deferred += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// What each volume snapshot of a point stores beyond the one before it in its chain
    /// (`changed_bytes`; all its data for the first). The service instance's points are read
    /// once per run (`chains`). A snapshot the cloud cannot compare keeps its last figure.
    async fn measure_storage(
        &self,
        record: &mut BackupRecord,
        chains: &mut BTreeMap<String, Vec<BackupRecord>>,
    ) -> Result<()> {
        if !chains.contains_key(&record.service_instance_id) {
            let points = self.records.all_owned::<BackupRecord>(&record.service_instance_id).await?;
            chains.insert(record.service_instance_id.clone(), points);
        }
        let cloud = self.clouds.region(&record.region)?;
        for (n, snapshot, predecessor) in lifecycle::chain_predecessors(record, &chains[&record.service_instance_id]) {
            let stored = match predecessor {
                None => Ok(record.items[n].size_bytes),
                Some(earlier) => cloud.changed_bytes(&earlier, &snapshot).await,
            };
            match stored {
                Ok(bytes) => record.items[n].stored_bytes = Some(bytes),
                Err(e) => warn!(%snapshot, error = %e, "snapshot storage not measured this run"),
            }
        }
        Ok(())
    }

    /// Drops the restores that no longer read the point (ended, or never written); true
    /// when any was dropped.
    async fn prune_finished_restores(&self, record: &mut BackupRecord) -> Result<bool> {
        let mut running = Vec::new();
        for restore_id in &record.restores_running {
            match self.records.load::<RestoreRecord>(restore_id).await {
                Ok(restore) if restore.phase != RestorePhase::Done => running.push(restore_id.clone()),
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let pruned = running.len() != record.restores_running.len();
        record.restores_running = running;
        Ok(pruned)
    }

    /// Keeps a record of an expire-retention run that had something to do.
    async fn record_run(&self, started_at: Timestamp, summary: &ExpirySummary) {
        let busy = summary.points_expired
            + summary.replicas_expired
            + summary.replaced_deleted
            + summary.deferred
            + summary.damage_found
            > 0;
        if !busy {
            return;
        }
        let mut run = ExpiryRun {
            run_id: ExpiryRunId::generate(),
            status: if summary.deferred > 0 { JobStatus::PartiallyFailed } else { JobStatus::Succeeded },
            started_at,
            finished_at: self.clock.now(),
            summary: summary.clone(),
            version: 0,
        };
        if let Err(e) = self.records.insert(&mut run, None).await {
            warn!(error = %e, "expiry run not recorded; the points themselves are");
        }
    }
}
