//! Replication of finished points into their destination region ("Replication to Other
//! Region"), at most [`MAX_COPIES_IN_FLIGHT_PER_REGION`] copies at a time per destination
//! (the AWS limit on concurrent snapshot copies): the rest wait as `Pending` and start as
//! copies finish. Transient copy failures are retried up to [`MAX_COPY_ATTEMPTS`] runs.

use std::collections::HashMap;

use serde::Serialize;
use tracing::{info, warn};

use crate::backup::{db_snapshot_name, describe_snapshots_of, snapshot_tags};
use crate::cloud::{Cloud, CloudError, SnapshotState};
use crate::error::Result;
use crate::model::{BackupRecord, ReplicaItem, ResourceKind};
use crate::status::{ItemStatus, JobStatus};
use crate::Snapnest;

pub const MAX_COPIES_IN_FLIGHT_PER_REGION: usize = 20;
pub const MAX_COPY_ATTEMPTS: u32 = 5;

/// What one run of replicate did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplicationSummary {
    pub points_examined: usize,
    pub copies_started: usize,
    pub copies_completed: usize,
    pub copies_failed: usize,
    /// Copies in flight per destination region after this run.
    pub in_flight: HashMap<String, usize>,
}

fn wants_replication(record: &BackupRecord) -> bool {
    record.status.is_terminal() && record.replication.as_ref().is_some_and(|r| !r.status.is_terminal())
}

impl Snapnest {
    /// Advances every point that waits for replication: polls copies in flight, starts new
    /// ones within the per-region limit.
    pub async fn replicate_due(&self) -> Result<ReplicationSummary> {
        let mut points: Vec<BackupRecord> =
            self.active::<BackupRecord>().await?.into_iter().filter(wants_replication).collect();
        points.sort_by_key(|p| p.finished_at);
        let mut summary = ReplicationSummary { points_examined: points.len(), ..Default::default() };
        for point in &points {
            let replication = point.replication.as_ref().expect("filtered");
            *summary.in_flight.entry(replication.region.clone()).or_default() +=
                replication.items.iter().filter(|i| i.status == ItemStatus::Running).count();
        }
        for mut point in points {
            let backup_id = point.backup_id.clone();
            let before = point.clone();
            if let Err(e) = self.replicate_point(&mut point, &mut summary).await {
                warn!(backup_id, error = %e, "replication step deferred to the next run");
            }
            if point != before {
                if let Err(e) = self.save(&mut point).await {
                    warn!(backup_id, error = %e, "replication progress not saved; the next run repeats it");
                } else if point.replication.as_ref().is_some_and(|r| r.status.is_terminal()) {
                    let replication = point.replication.as_ref().expect("present");
                    info!(backup_id, region = %replication.region, status = replication.status.as_str(), "replication finished");
                }
            }
        }
        Ok(summary)
    }

    async fn replicate_point(&self, point: &mut BackupRecord, summary: &mut ReplicationSummary) -> Result<()> {
        let source_region = point.region.clone();
        let mut tags = snapshot_tags(point);
        let backup_id = point.backup_id.clone();
        let finished_ok = point.status.is_restorable();
        let sources: Vec<ReplicaItem> = point
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
                })
            })
            .collect();
        let replication = point.replication.as_mut().expect("filtered");
        if !finished_ok {
            // Nothing usable to copy: the point failed or was cancelled.
            replication.status = JobStatus::Cancelled;
            return Ok(());
        }
        if replication.items.is_empty() {
            replication.items = sources;
            replication.status = JobStatus::Running;
        }
        let expiry = replication.expires_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
        tags.insert(crate::cloud::tag::EXPIRES_AT.to_owned(), expiry);
        let destination = self.clouds.region(&replication.region)?;
        let in_flight = summary.in_flight.entry(replication.region.clone()).or_default();

        let counts = (&mut summary.copies_completed, &mut summary.copies_failed);
        poll_copies(destination.as_ref(), &mut replication.items, in_flight, counts).await?;

        for item in replication.items.iter_mut().filter(|i| i.status == ItemStatus::Pending) {
            if *in_flight >= MAX_COPIES_IN_FLIGHT_PER_REGION {
                break;
            }
            let started = match item.kind {
                ResourceKind::Volume => {
                    destination.copy_snapshot(&source_region, &item.source_snapshot_id, &tags).await.map(Some)
                }
                ResourceKind::Database => {
                    let target = db_snapshot_name(&backup_id, &format!("{}-replica", item.resource_id));
                    match destination.copy_db_snapshot(&source_region, &item.source_snapshot_id, &target, &tags).await {
                        Ok(()) | Err(CloudError::AlreadyExists(_)) => Ok(Some(target)),
                        Err(e) => Err(e),
                    }
                }
            };
            match started {
                Ok(replica) => {
                    item.replica_snapshot_id = replica;
                    item.status = ItemStatus::Running;
                    *in_flight += 1;
                    summary.copies_started += 1;
                }
                Err(e) if e.is_retryable() && item.attempts + 1 < MAX_COPY_ATTEMPTS => {
                    item.attempts += 1;
                    item.error = Some(e.to_string());
                }
                Err(e) => {
                    item.status = ItemStatus::Failed;
                    item.error = Some(e.to_string());
                    summary.copies_failed += 1;
                }
            }
        }
        replication.refresh_status();
        Ok(())
    }
}

/// Folds the destination's view of running copies into the items.
async fn poll_copies(
    destination: &dyn Cloud,
    items: &mut [ReplicaItem],
    in_flight: &mut usize,
    (completed, failed): (&mut usize, &mut usize),
) -> Result<()> {
    let running = items
        .iter()
        .filter(|i| i.status == ItemStatus::Running)
        .filter_map(|i| Some((i.kind, i.replica_snapshot_id.clone()?)));
    let reported = describe_snapshots_of(destination, running).await?;
    for item in items.iter_mut().filter(|i| i.status == ItemStatus::Running) {
        let id = item.replica_snapshot_id.clone().unwrap_or_default();
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
                *completed += 1;
                *in_flight = in_flight.saturating_sub(1);
            }
            Some(Err(cause)) => {
                item.status = ItemStatus::Failed;
                item.error = Some(cause);
                *failed += 1;
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }
    Ok(())
}
