//! Process wiring shared by every function binary: logging through the Lambda runtime's
//! subscriber, the service built once from the environment at cold start ([`init`]), and
//! scheduled runs' errors as Retryable / NonRetryable diagnostics.

use std::sync::Arc;

use lambda_runtime::Diagnostic;
use tracing::error;

use snapnest_core::clock::SystemClock;
use snapnest_core::cloud::CloudProvider;
use snapnest_core::events::{EventBus, EventPublisher};
use snapnest_core::store::Store;
use snapnest_core::{Error, Settings, Snapnest};
use snapnest_local::embedded::EmbeddedStore;
use snapnest_local::retry::RetryingProvider;
use snapnest_local::simulated::{SimSettings, SimulatedCloud};

use crate::api::causes;
use crate::config::{CloudKind, Config, StartQueue, StoreKind};

/// What an EventBridge schedule invokes the scheduled functions with.
pub type ScheduledEvent = aws_lambda_events::cloudwatch_events::CloudWatchEvent;

/// A failed scheduled run, as Lambda sees it: the type says whether an asynchronous retry
/// can help (`Retryable`) or the event should go to the failure destination, and the
/// message carries the cause chain, which the failure destination's record keeps.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HandlerError(#[from] pub Error);

/// The runtime converts a handler's error once per failed invocation: the one place it is
/// logged.
impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        let retryable = e.0.is_retryable();
        let causes = causes(&e.0);
        error!(retryable, causes = ?causes, "scheduled run failed: {}", e.0);
        let error_message = std::iter::once(e.0.to_string()).chain(causes).collect::<Vec<_>>().join(": ");
        Diagnostic { error_type: if retryable { "Retryable" } else { "NonRetryable" }.to_owned(), error_message }
    }
}

/// Logs through the Lambda runtime's subscriber: the level from `AWS_LAMBDA_LOG_LEVEL`
/// (or `RUST_LOG`, default INFO), JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON` (the
/// template's LoggingConfig sets it) or, for local runs, `SNAPNEST_LOG_FORMAT=json`.
/// Logs go to stderr so that stdout carries only data: the demo's records and the
/// embedded-metric lines CloudWatch reads.
/// How long before the invocation's end a scheduled run stops starting work: time to save
/// what it did (a few conditional writes) and answer.
pub const BUDGET_MARGIN: std::time::Duration = std::time::Duration::from_secs(20);

/// When a scheduled run must stop: the invocation's deadline (Lambda's context, milliseconds
/// since the epoch) less [`BUDGET_MARGIN`], or less half the time left when that is shorter;
/// none for a deadline already past or unreadable (a local emulator's), as no run could do
/// anything within it.
pub fn budget_end(deadline_ms: u64) -> Option<snapnest_core::clock::Timestamp> {
    let deadline = chrono::DateTime::from_timestamp_millis(i64::try_from(deadline_ms).ok()?)?;
    let left = deadline - chrono::Utc::now();
    if left <= chrono::Duration::zero() {
        return None;
    }
    Some(deadline - chrono::Duration::from_std(BUDGET_MARGIN).ok()?.min(left / 2))
}

pub fn init_tracing() {
    let local_json = std::env::var("SNAPNEST_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if local_json && std::env::var_os("AWS_LAMBDA_LOG_FORMAT").is_none() {
        // The runtime's subscriber reads only Lambda's variable. Called first thing in
        // `main`, before anything else reads the environment.
        std::env::set_var("AWS_LAMBDA_LOG_FORMAT", "JSON");
    }
    lambda_runtime::tracing::init_default_subscriber_with_writer(std::io::stderr);
}

/// A function's cold start: logging, the configuration (a bad value fails init with a
/// message naming the variable), and the service, built once for every invocation.
pub async fn init() -> Result<Arc<Snapnest>, lambda_runtime::Error> {
    init_tracing();
    let config = Config::from_env().inspect_err(|e| error!(variable = e.variable, "bad configuration: {e}"))?;
    let app = build(&config).await.inspect_err(|e| error!("cannot build the service: {e:#}"))?;
    Ok(Arc::new(app))
}

/// publish-events' cold start: logging, the configuration, and the publisher on the store
/// and the event bus it names.
pub async fn init_publisher() -> Result<EventPublisher, lambda_runtime::Error> {
    init_tracing();
    let config = Config::from_env().inspect_err(|e| error!(variable = e.variable, "bad configuration: {e}"))?;
    let publisher = build_publisher(&config).await.inspect_err(|e| error!("cannot build the publisher: {e:#}"))?;
    Ok(publisher)
}

/// The publisher of the table's changes: the store (its rows hold some events' causes) and
/// the bus `SNAPNEST_EVENT_BUS` names (EventBridge), or, unset, one held in the process.
pub async fn build_publisher(config: &Config) -> anyhow::Result<EventPublisher> {
    let app = build(config).await?;
    let bus: Arc<dyn EventBus> = match &config.event_bus {
        Some(bus) => {
            let sdk = snapnest_aws::sdk_config(&config.home_region).await;
            Arc::new(snapnest_aws::events::EventBridgeBus::from_config(&sdk, bus))
        }
        None => Arc::new(snapnest_local::events::InProcessBus::default()),
    };
    Ok(EventPublisher::new(app.store.clone(), bus))
}

/// Builds the service from a configuration: the store and the cloud it names, on the
/// system clock.
pub async fn build(config: &Config) -> anyhow::Result<Snapnest> {
    // One SDK configuration for the AWS adapters, loaded once, and only when one is used.
    let needs_aws = config.store == StoreKind::DynamoDb
        || config.cloud == CloudKind::Aws
        || matches!(config.start_queue, StartQueue::Sqs(_));
    let sdk = if needs_aws { Some(snapnest_aws::sdk_config(&config.home_region).await) } else { None };
    let sdk = || sdk.as_ref().expect("loaded above for the AWS adapters");
    let store: Arc<dyn Store> = match config.store {
        StoreKind::Embedded => Arc::new(EmbeddedStore::open(&config.data_dir)?),
        StoreKind::DynamoDb => {
            let table = config.table.as_deref().expect("checked by Config");
            Arc::new(snapnest_aws::dynamodb::DynamoStore::from_config(sdk(), table))
        }
    };
    let clouds: Arc<dyn CloudProvider> = match config.cloud {
        CloudKind::Aws => Arc::new(snapnest_aws::cloud::AwsProvider::new(sdk())),
        // The simulated cloud's injected throttling is retried below the port, as the SDK does for AWS.
        CloudKind::Simulated => Arc::new(RetryingProvider(SimulatedCloud::open(
            &config.data_dir,
            SimSettings {
                home_region: config.home_region.clone(),
                operation_time: config.sim_operation_time,
                latency: config.sim_latency,
                faults: config.sim_faults.clone(),
            },
        )?)),
    };
    let settings = Settings {
        tag_key: config.tag_key.clone(),
        default_retention_days: config.default_retention_days,
        default_destination_region: config.default_destination_region.clone(),
        keep_replaced_days: config.keep_replaced_days,
        admins: config.admins.clone(),
        replica_kms_keys: config.replica_kms_keys.clone(),
        replica_option_groups: config.replica_option_groups.clone(),
        trust_unverified_callers: config.identity == crate::config::Identity::Header,
    };
    let app = Snapnest::new(store, clouds, Arc::new(SystemClock), settings);
    Ok(match &config.start_queue {
        StartQueue::Sqs(url) => app.with_queue(Arc::new(snapnest_aws::queue::SqsQueue::from_config(sdk(), url))),
        StartQueue::LocalLambda(endpoint) => app.with_queue(Arc::new(crate::work::LocalLambdaQueue::new(endpoint))),
        StartQueue::InPlace => app,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_stops_short_of_its_deadline_and_an_unreadable_one_does_not_stop_it() {
        let now = chrono::Utc::now();
        let ms = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis() as u64;
        // Five minutes left: stop 20 s before the end.
        let end = budget_end(ms(now + chrono::Duration::minutes(5))).unwrap();
        assert!((end - (now + chrono::Duration::seconds(280))).num_milliseconds().abs() < 1_000, "{end}");
        // Ten seconds left: stop half way.
        let end = budget_end(ms(now + chrono::Duration::seconds(10))).unwrap();
        assert!(end > now && end < now + chrono::Duration::seconds(10), "{end}");
        // None or past: no budget.
        assert_eq!(budget_end(0), None);
        assert_eq!(budget_end(ms(now - chrono::Duration::seconds(1))), None);
    }
    use snapnest_core::store::StoreError;

    #[test]
    fn a_failed_run_carries_its_causes_and_whether_a_retry_can_help() {
        let unavailable = Error::Store(StoreError::Unavailable("ProvisionedThroughputExceeded".into()));
        let diagnostic = Diagnostic::from(HandlerError(unavailable));
        assert_eq!(diagnostic.error_type, "Retryable");
        assert_eq!(
            diagnostic.error_message,
            "Failed to synchronize metadata.: store unavailable: ProvisionedThroughputExceeded"
        );
        let refused = Error::bad_request("NoDestinationRegion", "No destination region is specified.");
        let diagnostic = Diagnostic::from(HandlerError(refused));
        assert_eq!(diagnostic.error_type, "NonRetryable");
        assert_eq!(diagnostic.error_message, "No destination region is specified.");
    }
}
