//! poll-status: advances every running backup and restore (scheduled, every minute).

use snapnest_core::poll::PollSummary;
use snapnest_core::Snapnest;
use snapnest_lambda::runtime::{HandlerError, ScheduledEvent};

/// One pass; the answer is what it did. The schedule's event carries nothing the pass needs:
/// it works from the records as they are when it runs, so a late or retried event is harmless.
pub async fn handle(
    app: &Snapnest,
    _event: ScheduledEvent,
    deadline: Option<snapnest_core::clock::Timestamp>,
) -> Result<PollSummary, HandlerError> {
    Ok(app.poller.poll_active_until(deadline).await?)
}
