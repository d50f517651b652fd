//! What the AWS adapter actually sends, captured below the SDK. moto ignores most request
//! parameters, so where correctness depends on what AWS does with one, the parameter is
//! asserted here on the wire.

use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::http::{http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use snapnest_aws::cloud::AwsProvider;
use snapnest_core::cloud::{CloudProvider, Tags};

/// Records every request body and answers each with the same canned response.
#[derive(Debug, Clone)]
struct Capture {
    bodies: Arc<Mutex<Vec<String>>>,
    answer: &'static str,
}

impl HttpConnector for Capture {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default()).into_owned();
        self.bodies.lock().unwrap().push(body);
        let status = StatusCode::try_from(200u16).expect("200 is a status");
        HttpConnectorFuture::ready(Ok(HttpResponse::new(status, SdkBody::from(self.answer))))
    }
}

fn capturing_config(capture: &Capture) -> SdkConfig {
    let capture = capture.clone();
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new("AKID", "SECRET", None, None, "test")))
        .http_client(http_client_fn(move |_, _| SharedHttpConnector::new(capture.clone())))
        .build()
}

/// The query-protocol parameters of a captured EC2 request.
fn parameters(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%2F", "/").replace("%3A", ":")))
        .collect()
}

#[tokio::test]
async fn create_volume_sends_the_callers_client_token_on_every_attempt() {
    let capture = Capture {
        bodies: Arc::default(),
        answer: r#"<CreateVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><volumeId>vol-0new</volumeId></CreateVolumeResponse>"#,
    };
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let tags = Tags::from([("snapnest:restore-id".to_owned(), "rs-1".to_owned())]);
    for _ in 0..2 {
        let made = cloud.create_volume("snap-0abc", "us-east-1a", "rs-1-vol-0old", &tags).await;
        assert_eq!(made.as_deref(), Ok("vol-0new"));
    }
    let bodies = capture.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "one request per call: {bodies:?}");
    for body in &bodies {
        let sent = parameters(body);
        let get = |name: &str| sent.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("Action"), Some("CreateVolume"), "{body}");
        // The same token on both: EC2 answers the second with the first one's volume.
        assert_eq!(get("ClientToken"), Some("rs-1-vol-0old"), "{body}");
        assert_eq!(get("SnapshotId"), Some("snap-0abc"), "{body}");
        assert_eq!(get("AvailabilityZone"), Some("us-east-1a"), "{body}");
    }
}
