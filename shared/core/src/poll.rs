//! poll-status: one pass over every active backup and restore (read from the store's
//! sparse index of active records, never a scan). A record that fails to advance is
//! logged and left for the next pass; the others go on.

use std::sync::Arc;

use serde::Serialize;
use tracing::{instrument, warn};

use crate::backup::BackupService;
use crate::clock::{past, Clock, Timestamp};
use crate::error::Result;
use crate::model::{BackupRecord, RestoreRecord};
use crate::records::Records;
use crate::restore::RestoreService;

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
    /// margin): what is left is the next pass's.
    #[instrument(skip(self))]
    pub async fn poll_active_until(&self, deadline: Option<Timestamp>) -> Result<PollSummary> {
        let mut summary = PollSummary::default();
        let out_of_time = |summary: &mut PollSummary| {
            summary.stopped_at_budget = past(self.clock.as_ref(), deadline);
            summary.stopped_at_budget
        };
        for backup in self.records.active::<BackupRecord>().await? {
            if out_of_time(&mut summary) {
                return Ok(summary);
            }
            if backup.cleanup_pending {
                let backup_id = backup.backup_id.clone();
                if let Err(e) = self.backups.clean_up_cancelled(backup).await {
                    summary.deferred += 1;
                    warn!(%backup_id, error = %e, "cancelled backup's snapshots not all deleted yet");
                }
                continue;
            }
            if backup.status.is_terminal() {
                continue; // active only for replication: the replicate function's work
            }
            summary.backups_polled += 1;
            let backup_id = backup.backup_id.clone();
            match self.backups.advance(backup).await {
                Ok(b) if b.status.is_terminal() => summary.backups_finished += 1,
                Ok(_) => {}
                Err(e) => {
                    summary.deferred += 1;
                    warn!(%backup_id, error = %e, "backup not advanced this pass");
                }
            }
        }
        for restore in self.records.active::<RestoreRecord>().await? {
            if out_of_time(&mut summary) {
                return Ok(summary);
            }
            summary.restores_polled += 1;
            let restore_id = restore.restore_id.clone();
            match self.restores.advance(restore).await {
                Ok(r) if r.status.is_terminal() => summary.restores_finished += 1,
                Ok(_) => {}
                Err(e) => {
                    summary.deferred += 1;
                    warn!(%restore_id, error = %e, "restore not advanced this pass");
                }
            }
        }
        Ok(summary)
    }
}
