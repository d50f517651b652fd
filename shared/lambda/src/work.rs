//! Work between functions as Lambda carries it: the SQS batch start-backup is invoked with,
//! and, for local runs, a queue that hands that batch to a local Lambda emulator
//! (`cargo lambda watch`) the way the SQS event source hands it to Lambda.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use snapnest_core::queue::{QueueError, Work, WorkQueue};
use tracing::warn;

/// The function that reads the start queue.
pub const START_FUNCTION: &str = "start-backup";

/// The SQS event carrying `works`, one message each.
pub fn sqs_event(works: &[Work]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = works
        .iter()
        .map(|work| {
            let mut message = SqsMessage::default();
            message.message_id = Some(uuid::Uuid::new_v4().to_string());
            message.body = Some(work.to_body());
            message.event_source = Some("aws:sqs".into());
            message
        })
        .collect();
    event
}

/// A local run's start queue: each message is sent to start-backup through the emulator's
/// invoke API (`POST /2015-03-31/functions/start-backup/invocations`), in the background,
/// as the emulator answers only when the function has. A message the emulator does not
/// take is logged; the point's start lease lets poll-status start it, as on AWS.
pub struct LocalLambdaQueue {
    client: reqwest::Client,
    invoke_url: Arc<str>,
}

impl LocalLambdaQueue {
    /// `endpoint`: the emulator's address (`http://127.0.0.1:9000`).
    pub fn new(endpoint: &str) -> Self {
        let invoke_url = format!("{endpoint}/2015-03-31/functions/{START_FUNCTION}/invocations").into();
        Self { client: reqwest::Client::new(), invoke_url }
    }
}

#[async_trait]
impl WorkQueue for LocalLambdaQueue {
    async fn send(&self, work: &Work) -> Result<(), QueueError> {
        let event = serde_json::to_vec(&sqs_event(std::slice::from_ref(work)))
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        let (client, url) = (self.client.clone(), self.invoke_url.clone());
        tokio::spawn(async move {
            let sent = client.post(&*url).header("content-type", "application/json").body(event).send().await;
            match sent {
                Ok(answer) if answer.status().is_success() => {}
                Ok(answer) => warn!(url = %url, status = %answer.status(), "the local emulator refused the start"),
                Err(e) => warn!(url = %url, error = %e, "the local emulator did not take the start"),
            }
        });
        Ok(())
    }
}
