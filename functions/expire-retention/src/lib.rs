//! expire-retention: deletes the snapshots of expired backup points (scheduled, hourly).

use std::sync::Arc;

use serde_json::{json, Value};
use snapnest_core::Snapnest;
use snapnest_lambda::runtime::HandlerError;

/// Any event runs one pass; the answer is what the pass did.
pub async fn handle(app: Arc<Snapnest>, _event: Value) -> Result<Value, HandlerError> {
    Ok(json!(app.retention.expire_due().await?))
}
