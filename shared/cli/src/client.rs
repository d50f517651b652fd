//! The snapnest HTTP API as the CLI and the console reach it: locally `cargo lambda watch`
//! with no authentication, deployed the API Gateway endpoint signed with SigV4 from the
//! standard AWS credential chain, or in JWT mode with a bearer token.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use reqwest::Method;
use serde_json::Value;

/// How requests prove who sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// `cargo lambda watch`: no authentication.
    None,
    /// IAM mode: SigV4 for the `execute-api` service in `region`.
    Iam { region: String },
    /// JWT mode: `Authorization: Bearer <token>`.
    Bearer(String),
}

impl AuthMode {
    /// What a bare endpoint implies: loopback is `cargo lambda watch`; a token means JWT
    /// mode; anything else is the deployed API in IAM mode, in the region its host names
    /// (`<api-id>.execute-api.<region>.amazonaws.com`) or the given one.
    pub fn for_endpoint(
        endpoint: &reqwest::Url,
        token: Option<String>,
        region: Option<String>,
    ) -> Result<AuthMode, ClientError> {
        if let Some(token) = token {
            return Ok(AuthMode::Bearer(token));
        }
        let host = endpoint.host_str().unwrap_or_default();
        if matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") {
            return Ok(AuthMode::None);
        }
        let region = region.or_else(|| region_of_host(host)).ok_or_else(|| ClientError::NoRegion(host.to_owned()))?;
        Ok(AuthMode::Iam { region })
    }
}

/// `abc123.execute-api.eu-west-1.amazonaws.com` → `eu-west-1`.
fn region_of_host(host: &str) -> Option<String> {
    let mut labels = host.split('.');
    labels.find(|l| *l == "execute-api")?;
    labels.next().filter(|r| !r.is_empty()).map(str::to_owned)
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {endpoint}: {cause}. Is the API running there? (locally: cargo lambda watch -A 127.0.0.1 -P 9000; or set --endpoint / SNAPNEST_ENDPOINT)")]
    Unreachable { endpoint: String, cause: String },
    #[error("{code} ({status}): {message}")]
    Api { status: u16, code: String, message: String },
    #[error("the API answered {status} with something that is not JSON: {body}")]
    NotJson { status: u16, body: String },
    #[error("no AWS credentials to sign the request with: {0}")]
    Credentials(String),
    #[error("cannot tell the region of {0}: pass --region (or set AWS_REGION)")]
    NoRegion(String),
    #[error("signing the request: {0}")]
    Signing(String),
}

/// An answer of the API: its status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

#[derive(Clone)]
pub struct Api {
    endpoint: reqwest::Url,
    auth: AuthMode,
    http: reqwest::Client,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

impl Api {
    pub async fn new(endpoint: reqwest::Url, auth: AuthMode) -> Result<Api, ClientError> {
        let credentials = match &auth {
            AuthMode::Iam { region } => {
                let config = aws_config::from_env().region(aws_config::Region::new(region.clone())).load().await;
                Some(config.credentials_provider().ok_or_else(|| {
                    ClientError::Credentials(
                        "no credential provider is configured (aws configure, or AWS_PROFILE)".into(),
                    )
                })?)
            }
            _ => None,
        };
        // API Gateway ends a request after 30 s; `cargo lambda watch` compiles a function on
        // its first request, which takes minutes on a cold build.
        let timeout = if auth == AuthMode::None { Duration::from_secs(900) } else { Duration::from_secs(60) };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("snapnest-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with default settings");
        Ok(Api { endpoint, auth, http, credentials })
    }

    pub fn endpoint(&self) -> &reqwest::Url {
        &self.endpoint
    }

    pub fn auth(&self) -> &AuthMode {
        &self.auth
    }

    /// Sends one request and answers its status and raw body, whatever the status: the
    /// console forwards both as they are.
    pub async fn send_raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let base = self.endpoint.as_str().trim_end_matches('/');
        let url = format!("{base}{path_and_query}");
        let body = body.unwrap_or_default();
        let mut request = self.http.request(method.clone(), &url);
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        match &self.auth {
            AuthMode::None => {}
            AuthMode::Bearer(token) => request = request.bearer_auth(token),
            AuthMode::Iam { region } => {
                for (name, value) in self.sigv4_headers(&method, &url, &body, region).await? {
                    request = request.header(name, value);
                }
            }
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { endpoint: base.to_owned(), cause: root_cause(&e) })?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable { endpoint: base.to_owned(), cause: root_cause(&e) })?;
        Ok((status, bytes.to_vec()))
    }

    /// Sends one request; a 4xx/5xx answer is an [`ClientError::Api`] with the API's own
    /// code and message.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON serializes"));
        let (status, raw) = self.send_raw(method, path_and_query, bytes).await?;
        let body: Value = serde_json::from_slice(&raw).map_err(|_| ClientError::NotJson {
            status,
            body: String::from_utf8_lossy(&raw).chars().take(300).collect(),
        })?;
        if status >= 400 {
            let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            return Err(ClientError::Api { status, code: text("error"), message: text("message") });
        }
        Ok(Answer { status, body })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        Ok(self.send(Method::GET, path, None).await?.body)
    }

    /// The headers SigV4 adds for this request (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` for temporary credentials). API Gateway's IAM authorization
    /// checks the signature for the service name `execute-api` over the whole payload:
    /// https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html
    async fn sigv4_headers(
        &self,
        method: &Method,
        url: &str,
        body: &[u8],
        region: &str,
    ) -> Result<Vec<(String, String)>, ClientError> {
        let provider = self.credentials.as_ref().expect("IAM mode loads a credential provider");
        let credentials = provider.provide_credentials().await.map_err(|e| ClientError::Credentials(root_cause(&e)))?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("execute-api")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into();
        let signable = SignableRequest::new(method.as_str(), url, std::iter::empty(), SignableBody::Bytes(body))
            .map_err(|e| ClientError::Signing(e.to_string()))?;
        let (instructions, _signature) =
            sign(signable, &params).map_err(|e| ClientError::Signing(e.to_string()))?.into_parts();
        Ok(instructions.headers().map(|(name, value)| (name.to_owned(), value.to_owned())).collect())
    }
}

/// The innermost cause of an error chain: what a user can act on.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        s.parse().unwrap()
    }

    #[test]
    fn given_an_endpoint_when_no_mode_is_named_then_it_is_implied_by_the_host() {
        assert_eq!(AuthMode::for_endpoint(&url("http://127.0.0.1:9000"), None, None).unwrap(), AuthMode::None);
        assert_eq!(
            AuthMode::for_endpoint(&url("https://ab12cd.execute-api.eu-west-1.amazonaws.com/"), None, None).unwrap(),
            AuthMode::Iam { region: "eu-west-1".into() }
        );
        assert_eq!(
            AuthMode::for_endpoint(&url("https://api.example.com/"), Some("t".into()), None).unwrap(),
            AuthMode::Bearer("t".into())
        );
        assert!(matches!(
            AuthMode::for_endpoint(&url("https://api.example.com/"), None, None),
            Err(ClientError::NoRegion(_))
        ));
        assert_eq!(
            AuthMode::for_endpoint(&url("https://api.example.com/"), None, Some("us-east-2".into())).unwrap(),
            AuthMode::Iam { region: "us-east-2".into() }
        );
    }

    #[tokio::test]
    async fn given_iam_mode_when_a_request_is_signed_then_it_carries_a_sigv4_authorization_for_execute_api() {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let api = Api::new(
            url("https://ab12cd.execute-api.eu-west-1.amazonaws.com/"),
            AuthMode::Iam { region: "eu-west-1".into() },
        )
        .await
        .unwrap();
        let headers = api
            .sigv4_headers(
                &Method::POST,
                "https://ab12cd.execute-api.eu-west-1.amazonaws.com/jobs/x/cancel",
                b"{}",
                "eu-west-1",
            )
            .await
            .unwrap();
        let authorization = &headers.iter().find(|(n, _)| n == "authorization").unwrap().1;
        assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{authorization}");
        assert!(authorization.contains("/eu-west-1/execute-api/aws4_request"), "{authorization}");
        assert!(headers.iter().any(|(n, _)| n == "x-amz-date"));
    }
}
