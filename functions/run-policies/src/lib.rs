//! run-policies: backs up the targets of every policy whose slot is due (scheduled, every 5
//! minutes). The backups of a slot carry a client token made of the policy and the slot, so a
//! retried or overlapping run finds them instead of starting them again.

use snapnest_core::policy::TickSummary;
use snapnest_core::Snapnest;
use snapnest_lambda::runtime::{HandlerError, ScheduledEvent};

/// One pass; the answer is what it did. The schedule's event carries nothing the pass needs:
/// it works from the records as they are when it runs, so a late or retried event is harmless.
pub async fn handle(
    app: &Snapnest,
    _event: ScheduledEvent,
    deadline: Option<snapnest_core::clock::Timestamp>,
) -> Result<TickSummary, HandlerError> {
    Ok(app.policies.run_due_until(deadline).await?)
}
