//! run-policies: backs up the targets of every policy whose slot is due (scheduled, every 5
//! minutes). The backups of a slot carry a client token made of the policy and the slot, so a
//! retried or overlapping run finds them instead of starting them again.

use std::sync::Arc;

use serde_json::{json, Value};
use snapnest_core::Snapnest;
use snapnest_lambda::runtime::HandlerError;

/// Any event runs one pass; the answer is what the pass did.
pub async fn handle(app: Arc<Snapnest>, _event: Value) -> Result<Value, HandlerError> {
    Ok(json!(app.run_due_policies(chrono::Utc::now()).await?))
}
