//! poll-status: one pass over every active backup and restore (read from the store's
//! sparse index of active records, never a scan). A record that fails to advance is
//! logged and left for the next pass; the others go on.

use serde::Serialize;
use tracing::warn;

use crate::error::Result;
use crate::model::{BackupRecord, RestoreRecord, Timestamp};
use crate::Snapnest;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PollSummary {
    pub backups_polled: usize,
    pub backups_finished: usize,
    pub restores_polled: usize,
    pub restores_finished: usize,
    /// Records whose step failed this pass (retried on the next).
    pub deferred: usize,
}

impl Snapnest {
    pub async fn poll_active(&self, now: Timestamp) -> Result<PollSummary> {
        let mut summary = PollSummary::default();
        for backup in self.active::<BackupRecord>().await? {
            if backup.cleanup_pending {
                let backup_id = backup.backup_id.clone();
                if let Err(e) = self.clean_up_cancelled(backup, now).await {
                    summary.deferred += 1;
                    warn!(backup_id, error = %e, "cancelled backup's snapshots not all deleted yet");
                }
                continue;
            }
            if backup.status.is_terminal() {
                continue; // active only for replication: the replicate function's work
            }
            summary.backups_polled += 1;
            let backup_id = backup.backup_id.clone();
            match self.advance_backup(backup, now).await {
                Ok(b) if b.status.is_terminal() => summary.backups_finished += 1,
                Ok(_) => {}
                Err(e) => {
                    summary.deferred += 1;
                    warn!(backup_id, error = %e, "backup not advanced this pass");
                }
            }
        }
        for restore in self.active::<RestoreRecord>().await? {
            summary.restores_polled += 1;
            let restore_id = restore.restore_id.clone();
            match self.advance_restore(restore, now).await {
                Ok(r) if r.status.is_terminal() => summary.restores_finished += 1,
                Ok(_) => {}
                Err(e) => {
                    summary.deferred += 1;
                    warn!(restore_id, error = %e, "restore not advanced this pass");
                }
            }
        }
        Ok(summary)
    }
}
