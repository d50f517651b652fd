//! The EventBridge event bus: snapnest's events as `PutEvents` entries (source `snapnest`, the
//! event's detail-type, its detail as JSON, its time).
//!
//! Amazon EventBridge API Reference, "PutEvents": a request takes at most 10 entries, and a
//! failed entry does not fail the request — the answer's `FailedEntryCount` counts them and
//! each of its `Entries` (in the order of the request's) has an `ErrorCode` for one that failed
//! and an `EventId` for one that did. EventBridge User Guide, "Calculating PutEvents event
//! entry size": an entry counts its Time (14 bytes), Source, DetailType and Detail (UTF-8
//! bytes); the entries of one request must total less than 256 KB. So events are sent in
//! batches of at most 10 entries and 256 KB, and only the entries that failed are sent again.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_eventbridge::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use tracing::warn;

use snapnest_core::events::{Event, EventBus, PublishError, SOURCE};

/// Entries one `PutEvents` request takes.
pub const MAX_ENTRIES: usize = 10;
/// The size the entries of one request stay under.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Sends of an entry EventBridge refused (throttled, an internal failure) before it is given
/// back as not published: the stream delivers its change again later.
const ATTEMPTS: u32 = 4;

/// The [`EventBus`] on Amazon EventBridge.
#[derive(Clone, Debug)]
pub struct EventBridgeBus {
    client: Client,
    /// The bus's name or ARN; none: the account's default bus.
    bus: Option<String>,
    /// The wait before the first resend of failed entries; doubled for each later one.
    first_retry: Duration,
}

impl EventBridgeBus {
    /// The bus `bus` (a name or an ARN; `default` is the account's default bus) with a client
    /// from the process's one SDK configuration.
    pub fn from_config(sdk: &SdkConfig, bus: &str) -> EventBridgeBus {
        EventBridgeBus::new(Client::new(sdk), bus)
    }

    pub fn new(client: Client, bus: &str) -> EventBridgeBus {
        let bus = (bus != "default").then(|| bus.to_owned());
        EventBridgeBus { client, bus, first_retry: Duration::from_millis(100) }
    }

    /// The same bus waiting `first_retry` before resending failed entries (tests).
    pub fn with_first_retry(mut self, first_retry: Duration) -> EventBridgeBus {
        self.first_retry = first_retry;
        self
    }

    fn entry(&self, event: &Event) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(event.detail_type().as_str())
            .detail(event.detail())
            .time(aws_smithy_types::DateTime::from_millis(event.time().timestamp_millis()))
            .set_event_bus_name(self.bus.clone())
            .build()
    }

    /// Sends one batch; answers the positions (in `batch`) of the entries not taken, and why.
    async fn send(&self, entries: Vec<PutEventsRequestEntry>) -> Result<Vec<(usize, String)>, String> {
        let count = entries.len();
        let output = self.client.put_events().set_entries(Some(entries)).send().await.map_err(|e| {
            match e.as_service_error() {
                Some(service) => {
                    format!("{}: {}", service.code().unwrap_or("Unknown"), service.message().unwrap_or_default())
                }
                None => format!("{}", DisplayErrorContext(&e)),
            }
        })?;
        let answered = output.entries();
        let mut failed: Vec<(usize, String)> = answered
            .iter()
            .enumerate()
            .filter_map(|(n, entry)| {
                let code = entry.error_code()?;
                Some((n, format!("{code}: {}", entry.error_message().unwrap_or_default())))
            })
            .collect();
        // An answer without an entry for each sent one: the unanswered ones are not known taken.
        failed.extend((answered.len()..count).map(|n| (n, "no result entry".to_owned())));
        if failed.is_empty() && output.failed_entry_count() > 0 {
            failed.extend((0..count).map(|n| (n, format!("FailedEntryCount {}", output.failed_entry_count()))));
        }
        Ok(failed)
    }
}

/// The size EventBridge counts for an entry of `event`.
pub fn entry_size(event: &Event) -> usize {
    14 + SOURCE.len() + event.detail_type().as_str().len() + event.detail().len()
}

/// `sizes` (entry sizes, in order) cut into consecutive batches of at most [`MAX_ENTRIES`]
/// entries totalling less than [`MAX_REQUEST_BYTES`]; each batch is the positions it holds.
pub fn batches(sizes: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &(position, size) in sizes {
        match batches.last_mut() {
            Some(batch) if batch.len() < MAX_ENTRIES && bytes + size < MAX_REQUEST_BYTES => {
                batch.push(position);
                bytes += size;
            }
            _ => {
                batches.push(vec![position]);
                bytes = size;
            }
        }
    }
    batches
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[Event]) -> Result<(), PublishError> {
        let sizes: Vec<(usize, usize)> = events.iter().map(entry_size).enumerate().collect();
        // An entry over the limit can never be sent: given back at once, with the cause.
        let (mut pending, too_large): (Vec<_>, Vec<_>) =
            sizes.into_iter().partition(|(_, size)| *size < MAX_REQUEST_BYTES);
        let mut cause =
            too_large.first().map(|(_, size)| format!("an entry of {size} bytes is over PutEvents' 256 KB"));
        let mut delay = self.first_retry;
        for attempt in 0..ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            let mut again = Vec::new();
            for batch in batches(&pending) {
                let entries = batch.iter().map(|&n| self.entry(&events[n])).collect();
                match self.send(entries).await {
                    Ok(failed) => {
                        for (n, why) in failed {
                            again.push(batch[n]);
                            cause = Some(why);
                        }
                    }
                    Err(why) => {
                        warn!(entries = batch.len(), error = %why, "PutEvents failed; its entries are sent again");
                        again.extend(batch.iter().copied());
                        cause = Some(why);
                    }
                }
            }
            pending.retain(|(n, _)| again.contains(n));
        }
        let mut failed: Vec<usize> = pending.iter().chain(&too_large).map(|(n, _)| *n).collect();
        if failed.is_empty() {
            return Ok(());
        }
        failed.sort_unstable();
        Err(PublishError { failed, cause: cause.unwrap_or_default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_ten_entries_and_less_than_256_kb() {
        // GIVEN 23 small entries THEN 10, 10, 3 in order
        let small: Vec<(usize, usize)> = (0..23).map(|n| (n, 500)).collect();
        let cut = batches(&small);
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 3]);
        assert_eq!(cut.concat(), (0..23).collect::<Vec<_>>());
        // GIVEN entries of 100 KB THEN two to a batch (three would reach 300 KB)
        let large: Vec<(usize, usize)> = (0..5).map(|n| (n, 100 * 1024)).collect();
        assert_eq!(batches(&large), vec![vec![0, 1], vec![2, 3], vec![4]]);
    }
}
