//! Helpers shared by snapnest's end-to-end tests and the demo: events from `events/` and the
//! functions they invoke, a service on a throwaway data directory, the OpenAPI document of
//! the functions' routes, and moto.

pub mod aws_fixture;
pub mod cli;
pub mod iam;
pub mod moto;
pub mod recording_cloud;
pub mod sandbox;
pub mod stream;
pub mod template;
pub mod tripwire;
pub mod watch;
pub mod watched_store;

pub use watched_store::{Watched, WriteMeter, Written};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lambda_http::tower::ServiceExt;
use serde_json::Value;
use snapnest_core::clock::FixedClock;
use snapnest_core::Snapnest;
use snapnest_lambda::api::Routes;
use snapnest_lambda::config::Config;
use snapnest_lambda::runtime::ScheduledEvent;
use snapnest_local::simulated::{SimSettings, SimulatedCloud};

/// An event file of `events/`, parsed.
pub fn event(name: &str) -> Value {
    let path = moto::repo_root().join("events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// An HTTP event from an `events/` file with the path's placeholders filled in and,
/// when given, another body.
pub fn http_event(name: &str, replacements: &[(&str, &str)], body: Option<&Value>) -> Value {
    let mut event = event(name);
    for field in ["rawPath"] {
        let mut text = event[field].as_str().unwrap_or_default().to_owned();
        for (from, to) in replacements {
            text = text.replace(from, to);
        }
        event[field] = Value::String(text.clone());
        event["requestContext"]["http"]["path"] = Value::String(text);
    }
    if let Some(body) = body {
        event["body"] = Value::String(body.to_string());
    }
    event
}

/// A scheduled function's event from an `events/` file.
pub fn scheduled_event(name: &str) -> ScheduledEvent {
    serde_json::from_value(event(name)).unwrap_or_else(|e| panic!("{name} is no EventBridge event: {e}"))
}

/// Sends an HTTP API event to a function's router as Lambda does: the event read into a
/// request by lambda_http (`lambda_http::run` reads it the same way), the answer as its
/// status code and JSON body.
pub async fn call(router: axum::Router, event: Value) -> (u16, Value) {
    let request = lambda_http::request::from_str(&event.to_string()).expect("an HTTP API event");
    let response = router.oneshot(request).await.unwrap_or_else(|never| match never {});
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the answer's body");
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, body)
}

/// Each HTTP function's package name and its routes.
pub fn http_functions() -> Vec<(&'static str, Routes)> {
    vec![("create-backup", create_backup::routes()), ("restore", restore::routes()), ("admin-api", admin_api::routes())]
}

/// Every route of the API: method, path template (as API Gateway and `cargo lambda watch`
/// declare it) and the function that serves it.
pub fn http_routes() -> Vec<(String, String, &'static str)> {
    let mut routes = Vec::new();
    for (function, routes_of) in http_functions() {
        let operations = snapnest_lambda::openapi::operations(routes_of.get_openapi());
        routes.extend(operations.into_iter().map(|(method, path)| (method, path, function)));
    }
    routes
}

/// How `docs/openapi.yaml` is made.
pub const OPENAPI_COMMAND: &str = "cargo run -p snapnest-e2e --bin openapi > docs/openapi.yaml";

/// The OpenAPI document of every HTTP function's routes, as `docs/openapi.yaml` holds it.
pub fn openapi_yaml() -> String {
    let document = snapnest_lambda::openapi::document(http_functions().into_iter().map(|(_, routes)| routes));
    let yaml = serde_yaml::to_string(&document).expect("the document serializes");
    format!("# Generated from the code by `{OPENAPI_COMMAND}`; edit the code, not this file.\n{yaml}")
}

/// A service on the embedded store and simulated cloud in `data_dir`, plus a direct
/// handle on that simulated cloud for arranging and inspecting it.
pub async fn local_service(data_dir: &Path, extra_env: &[(&str, &str)]) -> (Arc<Snapnest>, SimulatedCloud) {
    let mut env: Vec<(String, String)> = vec![
        ("SNAPNEST_DATA_DIR".into(), data_dir.display().to_string()),
        ("SNAPNEST_SIM_SNAPSHOT_SECONDS".into(), "0.2".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ];
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_lookup(|name| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("valid test configuration");
    let app = snapnest_lambda::runtime::build(&config).await.expect("build the local service");
    let sim = SimulatedCloud::open(
        &config.data_dir,
        SimSettings {
            home_region: config.home_region.clone(),
            operation_time: config.sim_operation_time,
            latency: Duration::ZERO,
            faults: Default::default(),
        },
    )
    .expect("open the simulated cloud");
    (Arc::new(app), sim)
}

/// Where the demo keeps its state unless `SNAPNEST_DATA_DIR` says otherwise.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("SNAPNEST_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".snapnest"))
}

/// The policy tick as it runs at `at` (the scheduler's clock moved there).
pub async fn run_policies_at(
    app: &Snapnest,
    at: chrono::DateTime<chrono::Utc>,
) -> snapnest_core::Result<snapnest_core::policy::TickSummary> {
    app.with_clock(Arc::new(FixedClock(at))).policies.run_due().await
}

/// expire-retention as it runs at `at`.
pub async fn expire_at(
    app: &Snapnest,
    at: chrono::DateTime<chrono::Utc>,
) -> snapnest_core::Result<snapnest_core::retention::ExpirySummary> {
    app.with_clock(Arc::new(FixedClock(at))).retention.expire_due().await
}

/// Clears what `cargo test` sets for the test binary itself (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_*`, `CARGO_CRATE_NAME`, …) from a command that builds with cargo (`cargo
/// lambda watch`, `cargo run`): build scripts such as ring's rerun when those change, and the
/// child would rebuild TLS and the AWS SDK, then the next plain build would rebuild them back.
pub fn without_test_env(command: &mut std::process::Command) -> &mut std::process::Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let of_the_test = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix));
        if of_the_test {
            command.env_remove(name.as_ref());
        }
    }
    command
}
