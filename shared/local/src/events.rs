//! An event bus held in the process, for local runs and the tests: each event is logged (one
//! structured line, `detail-type` and `detail`) and kept until taken, as an EventBridge rule
//! with a queue target would keep it.

use std::sync::Mutex;

use async_trait::async_trait;
use snapnest_core::events::{Event, EventBus, PublishError, SOURCE};
use tracing::info;

#[derive(Default)]
pub struct InProcessBus {
    published: Mutex<Vec<Event>>,
}

impl InProcessBus {
    /// Everything published since the last take, in order.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.published.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, events: &[Event]) -> Result<(), PublishError> {
        for event in events {
            info!(source = SOURCE, detail_type = event.detail_type().as_str(), detail = %event.detail(), "event");
        }
        self.published.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(events);
        Ok(())
    }
}
