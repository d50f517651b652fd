//! The work queue on SQS: create-backup and run-policies send each new point's start to the
//! start queue, and start-backup reads it through a Lambda event source (template.yaml
//! `StartQueue`, with a maximum concurrency).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use snapnest_core::queue::{QueueError, Work, WorkQueue};

pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn from_config(sdk: &SdkConfig, queue_url: &str) -> Self {
        Self { sqs: aws_sdk_sqs::Client::new(sdk), queue_url: queue_url.to_owned() }
    }
}

#[async_trait]
impl WorkQueue for SqsQueue {
    async fn send(&self, work: &Work) -> Result<(), QueueError> {
        let body = work.to_body();
        // The SDK retries throttling and transient failures (adaptive mode, sdk_config).
        self.sqs.send_message().queue_url(&self.queue_url).message_body(body).send().await.map(drop).map_err(|e| {
            let code = e.code().unwrap_or("unknown");
            let message = e.message().map(str::to_owned).unwrap_or_else(|| e.to_string());
            QueueError::Unavailable(format!("SendMessage: {code}: {message}"))
        })
    }
}
