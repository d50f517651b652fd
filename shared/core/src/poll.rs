//! poll-status: one pass over every active backup and restore (read from the store's
//! sparse index of active records, never a scan). A record that fails to advance is
//! logged and left for the next pass; the others go on.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;
use tracing::{instrument, warn};

use crate::backup::BackupService;
use crate::clock::{past, Clock, Timestamp};
use crate::cloud::SnapshotStatus;
use crate::error::Result;
use crate::model::{BackupRecord, RestoreRecord};
use crate::records::Records;
use crate::restore::RestoreService;

/// Records a pass advances at once. Each advance makes a few batched describes and writes;
/// the AWS adapter bounds the calls in flight per API family further.
const RECORDS_IN_FLIGHT: usize = 8;

/// How one record's step of a pass went.
enum Step {
    /// Not started: the pass's time was up.
    OutOfTime,
    /// Nothing for this pass to do (or a clean-up that went through).
    Skipped,
    /// Failed this pass; the next one tries again.
    Deferred,
    Advanced {
        finished: bool,
    },
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PollSummary {
    pub backups_polled: usize,
    pub backups_finished: usize,
    pub restores_polled: usize,
    pub restores_finished: usize,
    /// Records whose step failed this pass (retried on the next).
    pub deferred: usize,
    /// The pass stopped at its time budget; the next pass goes on.
    pub stopped_at_budget: bool,
}

/// The poll-status use case: every active backup and restore, advanced by its own service.
#[derive(Clone)]
pub struct Poller {
    records: Records,
    backups: BackupService,
    restores: RestoreService,
    clock: Arc<dyn Clock>,
}

impl Poller {
    pub fn new(records: Records, backups: BackupService, restores: RestoreService, clock: Arc<dyn Clock>) -> Self {
        Self { records, backups, restores, clock }
    }

    pub async fn poll_active(&self) -> Result<PollSummary> {
        self.poll_active_until(None).await
    }

    /// One pass, starting no record's step after `deadline` (the invocation's end less a
    /// margin): what is left is the next pass's. Records are advanced RECORDS_IN_FLIGHT at
    /// once; each is guarded on its own (conditional saves, leases), so their order is free.
    #[instrument(skip(self))]
    pub async fn poll_active_until(&self, deadline: Option<Timestamp>) -> Result<PollSummary> {
        let mut summary = PollSummary::default();
        let backups = self.records.active::<BackupRecord>().await?;
        // One batched describe per region for every running point, not one per point.
        let reports = self.backups.describe_running(&backups).await;
        let outcomes: Vec<Step> = futures_util::stream::iter(backups)
            .map(|backup| {
                let reported = reports.get(&backup.region);
                self.step_backup(backup, reported, deadline)
            })
            .buffer_unordered(RECORDS_IN_FLIGHT)
            .collect()
            .await;
        let restores = self.records.active::<RestoreRecord>().await?;
        let restore_outcomes: Vec<Step> = futures_util::stream::iter(restores)
            .map(|restore| self.step_restore(restore, deadline))
            .buffer_unordered(RECORDS_IN_FLIGHT)
            .collect()
            .await;
        for (outcome, is_backup) in
            outcomes.into_iter().map(|o| (o, true)).chain(restore_outcomes.into_iter().map(|o| (o, false)))
        {
            match outcome {
                Step::OutOfTime => summary.stopped_at_budget = true,
                Step::Skipped => {}
                Step::Deferred => summary.deferred += 1,
                Step::Advanced { finished } => {
                    let (polled, done) = if is_backup {
                        (&mut summary.backups_polled, &mut summary.backups_finished)
                    } else {
                        (&mut summary.restores_polled, &mut summary.restores_finished)
                    };
                    *polled += 1;
                    *done += usize::from(finished);
                }
            }
        }
        Ok(summary)
    }

    async fn step_backup(
        &self,
        backup: BackupRecord,
        reported: Option<&HashMap<String, SnapshotStatus>>,
        deadline: Option<Timestamp>,
    ) -> Step {
        if past(self.clock.as_ref(), deadline) {
            return Step::OutOfTime;
        }
        let backup_id = backup.backup_id.clone();
        if backup.cleanup_pending {
            return match self.backups.clean_up_cancelled(backup).await {
                Ok(_) => Step::Skipped,
                Err(e) => {
                    warn!(%backup_id, error = %e, "cancelled backup's snapshots not all deleted yet");
                    Step::Deferred
                }
            };
        }
        if backup.status.is_terminal() {
            return Step::Skipped; // active only for replication: the replicate function's work
        }
        match self.backups.advance_with(backup, reported).await {
            Ok(b) => Step::Advanced { finished: b.status.is_terminal() },
            Err(e) => {
                warn!(%backup_id, error = %e, "backup not advanced this pass");
                Step::Deferred
            }
        }
    }

    async fn step_restore(&self, restore: RestoreRecord, deadline: Option<Timestamp>) -> Step {
        if past(self.clock.as_ref(), deadline) {
            return Step::OutOfTime;
        }
        let restore_id = restore.restore_id.clone();
        match self.restores.advance(restore).await {
            Ok(r) => Step::Advanced { finished: r.status.is_terminal() },
            Err(e) => {
                warn!(%restore_id, error = %e, "restore not advanced this pass");
                Step::Deferred
            }
        }
    }
}
