//! replicate: copies finished points to their destination region, within the per-region copy
//! limit (scheduled, every 5 minutes).

use snapnest_core::replication::ReplicationSummary;
use snapnest_core::Snapnest;
use snapnest_lambda::runtime::{HandlerError, ScheduledEvent};

/// One pass; the answer is what it did. The schedule's event carries nothing the pass needs:
/// it works from the records as they are when it runs, so a late or retried event is harmless.
pub async fn handle(
    app: &Snapnest,
    _event: ScheduledEvent,
    deadline: Option<snapnest_core::clock::Timestamp>,
) -> Result<ReplicationSummary, HandlerError> {
    Ok(app.replication.replicate_due_until(deadline).await?)
}
