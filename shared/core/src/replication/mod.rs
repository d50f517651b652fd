//! Replication of finished points into their destination region ("Replication to Other
//! Region"), at most [`MAX_COPIES_IN_FLIGHT_PER_REGION`] copies at a time per destination
//! (the AWS limit on concurrent snapshot copies): the rest wait as `Pending` and start as
//! copies finish. Transient copy failures are retried up to
//! [`lifecycle::MAX_COPY_ATTEMPTS`] runs. [`lifecycle`] decides; [`ReplicationService`] acts.

pub mod lifecycle;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::clock::Clock;
use crate::cloud::{tag, CloudError, CloudProvider, DeleteOutcome};
use crate::error::{Error, Result};
use crate::ids::{BackupId, JobId};
use crate::model::{BackupRecord, Lease, ReplicaItem, ResourceKind};
use crate::records::Records;
use crate::snapshots::{db_snapshot_name, delete_snapshot, describe_snapshots, replica_tags};
use crate::status::{ItemStatus, JobStatus};

use lifecycle::CopyStart;

pub const MAX_COPIES_IN_FLIGHT_PER_REGION: usize = 20;

/// What one run of replicate did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplicationSummary {
    pub points_examined: usize,
    pub copies_started: usize,
    pub copies_completed: usize,
    pub copies_failed: usize,
    /// Copies in flight per destination region after this run.
    pub in_flight: HashMap<String, usize>,
    /// The run stopped at its time budget; the next run goes on.
    pub stopped_at_budget: bool,
}

/// Copying finished points to their destination region.
#[derive(Clone)]
pub struct ReplicationService {
    records: Records,
    clouds: Arc<dyn CloudProvider>,
    clock: Arc<dyn Clock>,
    /// The KMS key of each destination region, for encrypted copies.
    kms_keys: BTreeMap<String, String>,
    /// Per destination region, the option group there for each non-default source one.
    option_groups: BTreeMap<String, BTreeMap<String, String>>,
}

impl ReplicationService {
    pub fn new(
        records: Records,
        clouds: Arc<dyn CloudProvider>,
        clock: Arc<dyn Clock>,
        kms_keys: BTreeMap<String, String>,
        option_groups: BTreeMap<String, BTreeMap<String, String>>,
    ) -> Self {
        Self { records, clouds, clock, kms_keys, option_groups }
    }

    /// Advances every point that waits for replication: polls copies in flight, starts new
    /// ones within the per-region limit.
    #[instrument(skip(self))]
    pub async fn replicate_due(&self) -> Result<ReplicationSummary> {
        self.replicate_due_until(None).await
    }

    /// As [`ReplicationService::replicate_due`], starting no point after `deadline`.
    pub async fn replicate_due_until(&self, deadline: Option<crate::clock::Timestamp>) -> Result<ReplicationSummary> {
        let mut points: Vec<BackupRecord> =
            self.records.active::<BackupRecord>().await?.into_iter().filter(lifecycle::wants_replication).collect();
        points.sort_by_key(|p| p.finished_at);
        let mut summary = ReplicationSummary { points_examined: points.len(), ..Default::default() };
        for point in &points {
            let replication = point.replication.as_ref().expect("filtered");
            *summary.in_flight.entry(replication.region.clone()).or_default() +=
                replication.items.iter().filter(|i| i.status == ItemStatus::Running).count();
        }
        for mut point in points {
            if crate::clock::past(self.clock.as_ref(), deadline) {
                summary.stopped_at_budget = true;
                break;
            }
            let backup_id = point.backup_id.clone();
            let before = point.clone();
            let run = uuid::Uuid::new_v4().to_string();
            if let Err(e) = self.replicate_point(&mut point, &run, &mut summary).await {
                warn!(%backup_id, error = %e, "replication step deferred to the next run");
            }
            // This run is over for the point, whatever happened: a lease it took goes with the save.
            if let Some(replication) =
                point.replication.as_mut().filter(|r| r.lease.as_ref().is_some_and(|l| l.holder == run))
            {
                replication.lease = None;
            }
            if point != before {
                if let Err(e) = self.records.save(&mut point).await {
                    warn!(%backup_id, error = %e, "replication progress not saved; the next run repeats it");
                } else if let Some(replication) = point.replication.as_ref().filter(|r| r.status.is_terminal()) {
                    // ReplicationFailed ([`crate::metrics`]) raises the alarm on copies missing.
                    crate::metrics::emit(&crate::metrics::replication_finished(&point, self.clock.now()));
                    if crate::metrics::replication_failed(&point) {
                        warn!(%backup_id, region = %replication.region, status = replication.status.as_str(), "replication failed");
                    } else {
                        info!(%backup_id, region = %replication.region, status = replication.status.as_str(), "replication finished");
                    }
                }
            }
        }
        Ok(summary)
    }

    #[instrument(skip_all, fields(backup_id = %point.backup_id))]
    async fn replicate_point(
        &self,
        point: &mut BackupRecord,
        run: &str,
        summary: &mut ReplicationSummary,
    ) -> Result<()> {
        lifecycle::begin(point)?;
        let source_region = point.region.clone();
        let backup_id = point.backup_id.clone();
        let tags = replica_tags(point);
        let replication = point.replication.as_mut().expect("filtered");
        if replication.status.is_terminal() {
            return Ok(());
        }
        let destination = self.clouds.region(&replication.region)?;
        let in_flight = summary.in_flight.entry(replication.region.clone()).or_default();

        let running = replication
            .items
            .iter()
            .filter(|i| i.status == ItemStatus::Running)
            .filter_map(|i| Some((i.kind, i.replica_snapshot_id.clone()?)));
        let reported = describe_snapshots(destination.as_ref(), running).await?;
        let ended = lifecycle::copies_reported(&mut replication.items, &reported);
        summary.copies_completed += ended.completed;
        summary.copies_failed += ended.failed;
        *in_flight = in_flight.saturating_sub(ended.completed + ended.failed);

        // Copy calls are made only under the replication's lease, taken (with the intent of
        // the copies about to be asked for) in one conditional save before the first call.
        let asked = |i: &ReplicaItem| i.status == ItemStatus::Running && i.replica_snapshot_id.is_none();
        let room = MAX_COPIES_IN_FLIGHT_PER_REGION.saturating_sub(*in_flight);
        let pending = room > 0 && replication.items.iter().any(|i| i.status == ItemStatus::Pending);
        if !pending && !replication.items.iter().any(asked) {
            lifecycle::derive_status(replication);
            return Ok(());
        }
        let now = self.clock.now();
        if Lease::held_by_another(&replication.lease, run, now) {
            return Ok(());
        }
        replication.lease = Lease::take(run, now);
        // Copies asked for by a run that died before it wrote their ids down.
        let unknown: Vec<usize> =
            replication.items.iter().enumerate().filter(|(_, i)| asked(i)).map(|(n, _)| n).collect();
        let starting = lifecycle::start_copies(&mut replication.items, room);
        *in_flight += starting.len();
        self.records.save(point).await?;
        // A database with a non-default option group: its copy needs this region's stand-in.
        let groups = self.option_groups.get(&point.replication.as_ref().expect("filtered").region);
        let option_group_of: BTreeMap<String, Option<String>> = point
            .items
            .iter()
            .filter_map(|i| {
                let source = i.database_settings.as_ref()?.option_group.as_ref()?;
                (!source.starts_with("default:"))
                    .then(|| (i.resource_id.clone(), groups.and_then(|g| g.get(source)).cloned()))
            })
            .collect();
        for (db, group) in &option_group_of {
            if group.is_none() {
                warn!(%backup_id, %db, "no option group is configured for this database's copies (SNAPNEST_REPLICA_OPTION_GROUPS); they get the destination's default");
            }
        }
        let replication = point.replication.as_mut().expect("filtered");
        // Found by tag (EBS) or by their fixed name (DB), or asked for again.
        let mut calls: Vec<usize> = Vec::new();
        for n in unknown {
            let item = &mut replication.items[n];
            match item.kind {
                ResourceKind::Volume => {
                    let found = destination.find_snapshots(tag::COPY_OF, &item.source_snapshot_id).await?;
                    match lifecycle::copy_found(item, found.into_iter().map(|s| s.snapshot_id).collect()) {
                        Some(extras) => {
                            for extra in extras {
                                warn!(%backup_id, copy = %extra, "a copy made twice is deleted");
                                destination.delete_snapshot(&extra).await?;
                            }
                        }
                        None => calls.push(n),
                    }
                }
                ResourceKind::Database => calls.push(n),
            }
        }
        calls.extend(starting);
        let key = self.kms_keys.get(&replication.region).map(String::as_str);
        for n in calls {
            let item = &mut replication.items[n];
            let mut tags = tags.clone();
            tags.insert(tag::COPY_OF.to_owned(), item.source_snapshot_id.clone());
            let answer = match item.kind {
                ResourceKind::Volume => {
                    destination.copy_snapshot(&source_region, &item.source_snapshot_id, key, &tags).await
                }
                ResourceKind::Database => {
                    let target = db_snapshot_name(&backup_id, &format!("{}-replica", item.resource_id));
                    item.option_group = option_group_of.get(&item.resource_id).cloned().flatten();
                    let group = item.option_group.as_deref();
                    match destination
                        .copy_db_snapshot(&source_region, &item.source_snapshot_id, &target, key, group, &tags)
                        .await
                    {
                        Ok(()) | Err(CloudError::AlreadyExists(_)) => Ok(target),
                        Err(e) => Err(e),
                    }
                }
            };
            match lifecycle::copy_started(item, answer) {
                CopyStart::Started => summary.copies_started += 1,
                CopyStart::Deferred => *in_flight = in_flight.saturating_sub(1),
                CopyStart::Failed => {
                    *in_flight = in_flight.saturating_sub(1);
                    summary.copies_failed += 1
                }
            }
        }
        replication.lease = None;
        lifecycle::derive_status(replication);
        Ok(())
    }

    /// Cancels a point's running replication; unless `keep`, deletes the copies made so far.
    pub async fn cancel(&self, backup_id: &BackupId, keep: bool) -> Result<()> {
        let mut backup: BackupRecord = self.records.load(backup_id).await?;
        let Some(replication) = backup.replication.as_mut() else {
            return Err(Error::not_found("replication job", backup_id.as_str()));
        };
        if replication.status.is_terminal() {
            return Err(Error::not_running(&JobId::replication_of(backup_id), replication.status));
        }
        replication.status.transition(JobStatus::Cancelled)?;
        let cloud = self.clouds.region(&replication.region)?;
        for item in replication.items.iter_mut() {
            if !item.status.is_terminal() {
                item.status = ItemStatus::Cancelled;
            }
            if let (false, Some(id)) = (keep, item.replica_snapshot_id.clone()) {
                if delete_snapshot(cloud.as_ref(), item.kind, &id).await? != DeleteOutcome::Deleted {
                    warn!(%backup_id, replica = %id, "replica not deleted on cancel");
                }
                item.replica_snapshot_id = None;
            }
        }
        self.records.save(&mut backup).await
    }
}
