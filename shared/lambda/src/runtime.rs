//! Process wiring shared by every function binary: structured logging, the service built
//! once from the environment at cold start, and the Lambda event loop with errors turned
//! into Retryable / NonRetryable diagnostics.

use std::future::Future;
use std::sync::Arc;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

use snapnest_core::clock::SystemClock;
use snapnest_core::cloud::CloudProvider;
use snapnest_core::store::Store;
use snapnest_core::{Error, Settings, Snapnest};
use snapnest_local::embedded::EmbeddedStore;
use snapnest_local::retry::RetryingProvider;
use snapnest_local::simulated::{SimSettings, SimulatedCloud};

use crate::api::HttpRequest;
use crate::config::{CloudKind, Config, StoreKind};

/// What a function was invoked with.
#[derive(Debug)]
pub enum Invocation {
    /// An API Gateway HTTP API (or function URL) request.
    Http(Box<HttpRequest>),
    /// An EventBridge schedule, or any other event without an HTTP shape.
    Scheduled(Value),
}

impl Invocation {
    pub fn classify(event: Value) -> Result<Invocation, Error> {
        if event.get("requestContext").and_then(|c| c.get("http")).is_some() {
            let request = serde_json::from_value(event)
                .map_err(|e| Error::bad_request("MalformedEvent", format!("HTTP event: {e}")))?;
            Ok(Invocation::Http(Box::new(request)))
        } else {
            Ok(Invocation::Scheduled(event))
        }
    }
}

/// A failed scheduled invocation, as Lambda sees it: the type says whether an asynchronous
/// retry can help (`Retryable`) or the event should go to the failure destination.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HandlerError(#[from] pub Error);

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        let kind = if e.0.is_retryable() { "Retryable" } else { "NonRetryable" };
        Diagnostic { error_type: kind.to_owned(), error_message: e.0.to_string() }
    }
}

/// JSON logs when `AWS_LAMBDA_LOG_FORMAT=JSON` (set in the template) or
/// `SNAPNEST_LOG_FORMAT=json`; readable text otherwise. Level from `RUST_LOG` (default info).
pub fn init_tracing() {
    let json = ["AWS_LAMBDA_LOG_FORMAT", "SNAPNEST_LOG_FORMAT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|f| f.eq_ignore_ascii_case("json")));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(false).without_time().try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

/// Builds the service from a configuration: the store and the cloud it names, on the
/// system clock.
pub async fn build(config: &Config) -> anyhow::Result<Snapnest> {
    // One SDK configuration for both AWS adapters, loaded once, and only when one is used.
    let needs_aws = config.store == StoreKind::DynamoDb || config.cloud == CloudKind::Aws;
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
    };
    Ok(Snapnest::new(store, clouds, Arc::new(SystemClock), settings))
}

/// The whole of a function's `main`: logging, the service from the environment, the event loop.
pub async fn serve<H, F>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: Fn(Arc<Snapnest>, Value) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Value, HandlerError>> + Send,
{
    init_tracing();
    let config = Config::from_env()?;
    let app = Arc::new(build(&config).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (app, handler) = (app.clone(), handler.clone());
        async move { handler(app, event.payload).await }
    }))
    .await
}
