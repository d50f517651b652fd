//! Work handed from one function to another through a queue, so that the function a person
//! called answers at once and the work runs in an invocation of its own: an HTTP request
//! writes a backup's record and answers 202, and start-backup issues its snapshot calls.
//!
//! The port says nothing of the engine: the AWS adapter sends to SQS (start-backup reads it
//! through a Lambda event source with a maximum concurrency), a local run hands the same
//! message to the local Lambda emulator. A message that is lost costs time, never a
//! backup: the record was written first, with a start lease, and poll-status takes the
//! start over once the lease has run out.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::BackupId;

/// One piece of work, as the queue carries it (a JSON message body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "work", rename_all = "snake_case")]
pub enum Work {
    /// Issue the snapshot calls of a backup whose record was just written at `version`.
    /// Only the record at that version is started by the message: a redelivered or late
    /// message finds it moved on and leaves it alone.
    StartBackup { backup_id: BackupId, version: u64 },
}

impl Work {
    /// The message body that carries it.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("work serializes")
    }

    /// The work a message body carries.
    pub fn from_body(body: &str) -> Result<Work, serde_json::Error> {
        serde_json::from_str(body)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the work queue did not take the message: {0}")]
    Unavailable(String),
}

/// Where work is sent.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn send(&self, work: &Work) -> Result<(), QueueError>;
}
