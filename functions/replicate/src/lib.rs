//! replicate: copies finished points to their destination region, within the per-region copy limit (scheduled).

use std::sync::Arc;

use serde_json::{json, Value};
use snapnest_core::Snapnest;
use snapnest_lambda::runtime::HandlerError;

/// Any event runs one pass; the answer is what the pass did.
pub async fn handle(app: Arc<Snapnest>, _event: Value) -> Result<Value, HandlerError> {
    Ok(json!(app.replication.replicate_due().await?))
}
