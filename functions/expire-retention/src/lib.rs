//! expire-retention: deletes the snapshots of expired backup points (scheduled, hourly).

use snapnest_core::retention::ExpirySummary;
use snapnest_core::Snapnest;
use snapnest_lambda::runtime::{HandlerError, ScheduledEvent};

/// One pass, stopping cleanly before `deadline` (the invocation's end less a margin); the
/// answer is what it did. The schedule's event carries nothing the pass needs: it works from
/// the records as they are when it runs, so a late or retried event is harmless.
pub async fn handle(
    app: &Snapnest,
    _event: ScheduledEvent,
    deadline: Option<snapnest_core::clock::Timestamp>,
) -> Result<ExpirySummary, HandlerError> {
    Ok(app.retention.expire_due_until(deadline).await?)
}
