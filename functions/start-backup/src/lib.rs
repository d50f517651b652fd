//! start-backup: issues the snapshot calls of the backups create-backup and run-policies
//! wrote, read from the start queue (SQS event source). The request that wrote a point has
//! answered already; this is where its calls are made, up to the start's bound in flight.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use snapnest_core::queue::Work;
use snapnest_core::Snapnest;
use tracing::{error, info, warn};

/// Starts each message's backup. A message whose start failed for a reason a retry can help
/// (the store or the cloud unavailable) is reported failed, so SQS delivers it again (and,
/// after the queue's receive limit, moves it to the failure queue); one that can never succeed
/// is logged and dropped. The point itself is safe either way: poll-status takes over a start
/// whose lease runs out.
pub async fn handle(app: &Snapnest, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let work = match Work::from_body(message.body.as_deref().unwrap_or_default()) {
            Ok(work) => work,
            Err(e) => {
                error!(message_id = %id, error = %e, "not a piece of work; left to the failure queue");
                response.batch_item_failures.push(failed(id));
                continue;
            }
        };
        match work {
            Work::StartBackup { backup_id, version } => match app.backups.start(&backup_id, version).await {
                Ok(record) => info!(%backup_id, status = record.status.as_str(), "start handled"),
                Err(e) if e.is_retryable() => {
                    warn!(%backup_id, error = %e, "start failed; the message comes again");
                    response.batch_item_failures.push(failed(id));
                }
                Err(e) => error!(%backup_id, error = %e, "start refused; poll-status follows the point"),
            },
        }
    }
    response
}

fn failed(item_identifier: String) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = item_identifier;
    failure
}
