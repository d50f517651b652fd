//! A work queue held in the process, for the demo, the benchmark and the tests: what is sent
//! waits until the harness takes it and hands it to start-backup's handler, as the SQS event
//! source would.

use std::sync::Mutex;

use async_trait::async_trait;
use snapnest_core::queue::{QueueError, Work, WorkQueue};

#[derive(Default)]
pub struct InProcessQueue {
    waiting: Mutex<Vec<Work>>,
}

impl InProcessQueue {
    /// Everything sent since the last take, oldest first.
    pub fn take(&self) -> Vec<Work> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl WorkQueue for InProcessQueue {
    async fn send(&self, work: &Work) -> Result<(), QueueError> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).push(work.clone());
        Ok(())
    }
}
