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
use crate::status::JobStatus;

/// Records a pass advances at once. Each advance makes a few batched describes and writes;
/// the AWS adapter bounds the calls in flight per API family further.
const RECORDS_IN_FLIGHT: usize = 8;

/// Whether a backup's header says poll-status has work on it: running, or cancelled with
/// snapshots to delete (a finished point is active for its replication, replicate's work).
fn has_work_to_poll(doc: &crate::store::Document) -> bool {
    let status = crate::records::header_status(doc);
    let cleanup_pending = doc.body.get("cleanup_pending").and_then(|c| c.as_bool()).unwrap_or(false);
    !status.is_some_and(JobStatus::is_terminal) || cleanup_pending
}

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
        // A finished point is active only while replicate copies it: its rows are not read.
        let backups = self.records.active_where::<BackupRecord>(has_work_to_poll).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Collection, Document};

    fn header(body: serde_json::Value) -> Document {
        Document {
            collection: Collection::Backups,
            id: "bk-1".into(),
            version: 3,
            owner: "si-demo".into(),
            created_at: chrono::Utc::now(),
            active: true,
            due_at: None,
            lock: None,
            body,
        }
    }

    #[test]
    fn a_pass_reads_only_the_points_it_has_work_on() {
        // GIVEN active points as their headers say
        let running = header(serde_json::json!({"status": "Running"}));
        let pending = header(serde_json::json!({"status": "Pending"}));
        let copying = header(serde_json::json!({"status": "Succeeded", "cleanup_pending": false}));
        let cancelled = header(serde_json::json!({"status": "Cancelled", "cleanup_pending": true}));
        // THEN running, pending and cancelled-with-snapshots-to-delete are poll-status's work
        assert!(has_work_to_poll(&running) && has_work_to_poll(&pending) && has_work_to_poll(&cancelled));
        // AND a finished point active only for its replication is not read
        assert!(!has_work_to_poll(&copying));
    }
}
