//! Backup policies: the scheduled tick of create-backup runs every policy that is due.

use serde::Serialize;
use tracing::info;

use crate::error::Result;
use crate::model::Timestamp;
use crate::Snapnest;

/// What one policy tick did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TickSummary {
    pub policies_due: usize,
    pub backups_started: usize,
}

impl Snapnest {
    /// Runs every policy whose next run is due. Policies are not stored yet, so a tick
    /// finds none and says so.
    pub async fn run_due_policies(&self, now: Timestamp) -> Result<TickSummary> {
        info!(%now, "policy tick: no policy is due");
        Ok(TickSummary::default())
    }
}
