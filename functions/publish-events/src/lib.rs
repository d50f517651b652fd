//! publish-events: one EventBridge event per state change of a backup point, a restore, a
//! replication, an expiry and a policy run (`docs/events.md`), read from the records table's
//! DynamoDB stream. Each stream record is one write of one item with its old and new image;
//! the writes of record headers become changes, the publisher says which events each makes
//! and publishes them. The table's other items (a record's rows, client tokens, locks) make
//! none.
//!
//! Failures: the batch's changes are published in order, and the first change not published
//! in full is reported by its sequence number, so the stream delivers it and every later one
//! again (Lambda Developer Guide, "Configuring partial batch response with DynamoDB and
//! Lambda": Lambda checkpoints before the lowest reported sequence number and retries from
//! it). Nothing is skipped; a change may be published twice, and its events say their
//! record's `version` to tell.

use aws_lambda_events::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use snapnest_aws::dynamodb::header_from_stream_image;
use snapnest_core::events::{Change, EventPublisher};
use tracing::error;

/// Publishes the events of a stream batch; answers the first change to deliver again, if any.
pub async fn handle(publisher: &EventPublisher, event: StreamEvent) -> DynamoDbEventResponse {
    let mut changes = Vec::new();
    let mut unreadable = None;
    for record in &event.records {
        match change_of(record) {
            Ok(Some(change)) => changes.push(change),
            Ok(None) => {}
            Err(e) => {
                // Everything from here on comes again; the changes before it are published.
                error!(event_id = %record.event_id, error = %e, "a stream record that is no snapnest item");
                unreadable = Some(position(record));
                break;
            }
        }
    }
    let published = publisher.publish(&changes).await;
    let mut response = DynamoDbEventResponse::default();
    if let Some(position) = published.failed_at.or(unreadable) {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(position);
        response.batch_item_failures.push(failure);
    }
    response
}

/// Where a record is in the stream: its sequence number, which a partial batch response names.
fn position(record: &EventRecord) -> String {
    record.change.sequence_number.clone().unwrap_or_else(|| record.event_id.clone())
}

/// The change of a record header a stream record carries; none for the table's other items.
fn change_of(record: &EventRecord) -> Result<Option<Change>, String> {
    let header = |image: &serde_json::Value| header_from_stream_image(image).map_err(|e| e.to_string());
    let image = |item| serde_json::to_value(item).map_err(|e| e.to_string());
    let old = header(&image(&record.change.old_image)?)?;
    let new = header(&image(&record.change.new_image)?)?;
    if old.is_none() && new.is_none() {
        return Ok(None);
    }
    // ApproximateCreationDateTime: when the write was made, to the second (DynamoDB Streams API
    // Reference, "StreamRecord").
    let at = Some(record.change.approximate_creation_date_time)
        .filter(|at| at.timestamp() > 0)
        .unwrap_or_else(chrono::Utc::now);
    Ok(Some(Change { position: position(record), old, new, at }))
}
