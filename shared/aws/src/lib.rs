//! snapnest's AWS adapters: the DynamoDB store ([`dynamodb::DynamoStore`]), the EC2/EBS/RDS
//! cloud ([`cloud::AwsProvider`]), the SQS work queue ([`queue::SqsQueue`]) and the EventBridge
//! event bus ([`events::EventBridgeBus`]), all built from one [`SdkConfig`] loaded once per
//! process by [`sdk_config`].

pub mod cloud;
pub mod dynamodb;
pub mod events;
pub mod queue;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_types::retry::RetryMode;

/// The one SDK configuration of a process: credentials, endpoint (`AWS_ENDPOINT_URL`, so the
/// same code talks to AWS and to an emulator), `home_region`, and adaptive retries.
pub async fn sdk_config(home_region: &str) -> SdkConfig {
    // An explicit retry config makes the loader ignore AWS_MAX_ATTEMPTS/AWS_RETRY_MODE, so
    // read them through the SDK's own provider first and only switch the mode to adaptive
    // (client-side rate limiting once throttled), keeping the attempts the operator chose.
    let retry = aws_config::default_provider::retry_config::default_provider()
        .retry_config()
        .await
        .with_retry_mode(RetryMode::Adaptive);
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(home_region.to_owned()))
        .retry_config(retry)
        .load()
        .await
}
