//! start-backup's Lambda entry point: the service is built once at cold start, then each SQS
//! batch is started.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use snapnest_lambda::runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let app = runtime::init().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async {
        Ok::<_, lambda_runtime::Error>(start_backup::handle(&app, event.payload).await)
    }))
    .await
}
