//! poll-status's Lambda entry point: the service is built once at cold start, then each scheduled
//! event runs one pass.

use lambda_runtime::{service_fn, LambdaEvent};
use snapnest_lambda::runtime::{self, ScheduledEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let app = runtime::init().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<ScheduledEvent>| {
        let deadline = runtime::budget_end(event.context.deadline);
        poll_status::handle(&app, event.payload, deadline)
    }))
    .await
}
