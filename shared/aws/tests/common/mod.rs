//! What the tests that capture the SDK's requests share: an SDK configuration (us-east-1,
//! fixed credentials) whose every request goes to a connector of the test's own, which
//! records it and answers it.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::http::{http_client_fn, HttpConnector, SharedHttpConnector};

pub fn config_sending_to(connector: impl HttpConnector + Clone + 'static) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new("AKID", "SECRET", None, None, "test")))
        .http_client(http_client_fn(move |_, _| SharedHttpConnector::new(connector.clone())))
        .build()
}
