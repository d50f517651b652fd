//! publish-events' Lambda entry point: the publisher is built once at cold start, then each
//! batch of the records table's stream is published.

use aws_lambda_events::dynamodb::Event as StreamEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use snapnest_lambda::runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let publisher = runtime::init_publisher().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<StreamEvent>| async {
        Ok::<_, lambda_runtime::Error>(publish_events::handle(&publisher, event.payload).await)
    }))
    .await
}
