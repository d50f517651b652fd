//! The HTTP API (SPEC "HTTP API") on axum: the extractors every route reads its input with,
//! the one mapping from [`Error`] to an HTTP answer ([`ApiError`]), and the router each HTTP
//! function serves its own routes through ([`router`]).
//!
//! Every refusal is `{"error": <code>, "message": <for a person>}`, whether the domain or an
//! extractor refuses: the extractors here wrap axum's `Json`, `Query` and `Path` only to turn
//! their rejections into the same 400s the domain answers (`MalformedJson`,
//! `InvalidRequest`, …).

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::{error, warn};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use snapnest_core::access::Caller;
use snapnest_core::store::Cursor;
use snapnest_core::{Error, Snapnest};

/// The routes of one function, with their OpenAPI description, over the service.
pub type Routes = OpenApiRouter<Arc<Snapnest>>;

/// A domain error as an HTTP answer. The newtype exists because both [`Error`] and axum's
/// `IntoResponse` are foreign to this crate.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// Every error answer's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// A machine-readable code: `NotFound` (404), `MetadataSyncFailed` (503), `CloudError`
    /// (502, or 503 when the cloud kept throttling), or the code of a 400 or 409
    /// (`TooManyInstances`, `BackupAlreadyRunning`, …).
    #[schema(example = "BackupAlreadyRunning")]
    pub error: String,
    /// What is wrong, for a person.
    #[schema(
        example = "backup bk-3f9c2a7d41e84b0c9a15 of service instance si-demo is still running; wait for it to finish"
    )]
    pub message: String,
}

impl ApiError {
    /// The HTTP status of each error, in one place.
    pub fn status(&self) -> StatusCode {
        match &self.0 {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Cloud(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            Error::Cloud(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The machine-readable code of each error.
    pub fn code(&self) -> &'static str {
        match &self.0 {
            Error::BadRequest { code, .. } | Error::Conflict { code, .. } => code,
            Error::NotFound { .. } => "NotFound",
            Error::Unauthenticated(_) => "Unauthenticated",
            Error::Forbidden(_) => "Forbidden",
            Error::Store(_) => "MetadataSyncFailed",
            Error::Cloud(_) => "CloudError",
        }
    }

    /// The answer's body: the error's code and its message with echoed values capped.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: self.code().to_owned(), message: cap_echoes(&self.0.to_string()).into_owned() }
    }
}

/// Server-side failures are logged here, with their cause chain, once; refusals as warnings.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = self.body();
        if status.is_server_error() {
            error!(status = status.as_u16(), code = body.error, causes = ?causes(&self.0), "{}", body.message);
        } else {
            warn!(status = status.as_u16(), code = body.error, "{}", body.message);
        }
        (status, Json(body)).into_response()
    }
}

/// The messages of an error's sources, outermost first.
pub fn causes(error: &dyn std::error::Error) -> Vec<String> {
    std::iter::successors(error.source(), |e| e.source()).map(ToString::to_string).collect()
}

/// The longest user value (in quotes) an error message repeats in full.
pub const ECHO_LIMIT: usize = 100;
/// The longest message an error answer carries, whatever it quotes.
pub const MESSAGE_LIMIT: usize = 1_000;

/// An error message with every quoted value (`'…'`, `` `…` `` or `"…"`) longer than
/// [`ECHO_LIMIT`] characters cut there with an ellipsis, and the whole cut at
/// [`MESSAGE_LIMIT`]. The domain quotes what it was given ("client_token: '…' must be…"); a
/// 6 MB token must not come back as a 6 MB answer or log line.
pub fn cap_echoes(message: &str) -> Cow<'_, str> {
    let too_long = |s: &str| s.chars().nth(ECHO_LIMIT).is_some();
    if !too_long(message) {
        return Cow::Borrowed(message);
    }
    let mut capped = String::new();
    let mut rest = message;
    while let Some(open) = rest.find(['\'', '`', '"']) {
        let quote = rest[open..].chars().next().unwrap_or('\'');
        let inner_start = open + quote.len_utf8();
        let Some(len) = rest[inner_start..].find(quote) else { break };
        let quoted = &rest[inner_start..inner_start + len];
        capped.push_str(&rest[..inner_start]);
        if too_long(quoted) {
            capped.extend(quoted.chars().take(ECHO_LIMIT));
            capped.push('…');
        } else {
            capped.push_str(quoted);
        }
        capped.push(quote);
        rest = &rest[inner_start + len + quote.len_utf8()..];
    }
    capped.push_str(rest);
    if capped.chars().nth(MESSAGE_LIMIT).is_some() {
        capped = capped.chars().take(MESSAGE_LIMIT).collect();
        capped.push('…');
    }
    Cow::Owned(capped)
}

/// A JSON request body read as `T` by axum's `Json`: an empty body reads as `{}`, and no
/// content type is required (clients of the SPEC send bare bodies). Malformed JSON is a 400
/// `MalformedJson`; wrong types, missing or unknown fields a 400 `InvalidRequest`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| Error::bad_request("MalformedBody", format!("request body: {}", source_text(&e))))?;
        let bytes = if bytes.trim_ascii().is_empty() { Bytes::from_static(b"{}") } else { bytes };
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let code = match rejection {
                    JsonRejection::JsonSyntaxError(_) => "MalformedJson",
                    _ => "InvalidRequest",
                };
                Err(Error::bad_request(code, format!("request body: {}", json_cause(&rejection))).into())
            }
        }
    }
}

/// The query string read as `T` by axum's `Query`; a string it cannot read is a 400
/// `InvalidRequest`. Fields that need checking beyond that are read as strings and checked
/// where they are used (`limit` → `InvalidLimit`, `status` → `InvalidStatus`, …).
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| refused("query string", &e))
    }
}

/// The path's parameters read as `T` by axum's `Path` (percent-decoded); one that does not
/// decode is a 400 `InvalidRequest`.
#[derive(Debug, Clone)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| refused("path", &e))
    }
}

/// What is wrong with a JSON body, for a person: the field it concerns, serde_json's words
/// without its "at line 1 column N" (a syntax error says where as a character) and without
/// Rust's type names.
fn json_cause(rejection: &JsonRejection) -> String {
    let Some(cause) = std::error::Error::source(rejection).and_then(std::error::Error::source) else {
        return rejection.to_string();
    };
    match cause.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
        Some(located) => {
            let message = plain_json_message(located.inner());
            match located.path().to_string() {
                // An unknown field's path is its parent's, and the message names the field; a
                // syntax error is about the text, not a field.
                path if path == "."
                    || located.inner().is_syntax()
                    || located.inner().is_eof()
                    || located.inner().to_string().starts_with("unknown field") =>
                {
                    message
                }
                path => format!("{path}: {message}"),
            }
        }
        None => cause.to_string(),
    }
}

/// serde_json's message in a person's words (see [`json_cause`]).
fn plain_json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) if error.line() > 0 => &text[..at],
        _ => text.as_str(),
    };
    let mut message = message.to_owned();
    // serde names the Rust type it wanted; say what to send instead.
    for (rust, plain) in [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected an object"),
        ("expected a borrowed string", "expected a string"),
    ] {
        if let Some(rest) = message.strip_suffix(rust) {
            message = format!("{rest}{plain}");
        }
    }
    if let Some(at) = message.find("expected struct ") {
        // A struct read from a list says "invalid length"; either way, an object is wanted.
        message = if message.starts_with("invalid length") {
            "expected a JSON object ({…}), not a list".to_owned()
        } else {
            format!("{}expected an object", &message[..at])
        };
    }
    if error.is_syntax() || error.is_eof() {
        let place = if error.line() <= 1 {
            format!("character {}", error.column())
        } else {
            format!("line {}, character {}", error.line(), error.column())
        };
        return format!("not valid JSON: {message} (at {place})");
    }
    message
}

/// A 400 `InvalidRequest` for the part of the request an extractor could not read.
fn refused(part: &str, rejection: &dyn std::error::Error) -> ApiError {
    Error::bad_request("InvalidRequest", format!("{part}: {}", source_text(rejection))).into()
}

/// What an extractor's rejection says about the input, without axum's preamble
/// ("Failed to deserialize the query string: …").
fn source_text(rejection: &dyn std::error::Error) -> String {
    rejection.source().map_or_else(|| rejection.to_string(), ToString::to_string)
}

/// The id of a route's path: one type per kind of id, each both the extractor's target
/// (`PathParams<BackupId>`) and the parameter's description.
macro_rules! path_id {
    ($(#[doc = $doc:literal])* $name:ident($param:literal, example = $example:literal)) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Deserialize, IntoParams)]
        #[into_params(names($param), parameter_in = Path)]
        pub struct $name(
            $(#[doc = $doc])*
            #[param(value_type = crate::openapi::schema::Identifier, example = $example)]
            pub String,
        );
    };
}

path_id! {
    /// The service instance id (the value of the `service-instance-id` tag).
    ServiceInstanceId("id", example = "si-demo")
}
path_id! {
    /// A backup point's id.
    BackupId("backup_id", example = "bk-3f9c2a7d41e84b0c9a15")
}
path_id! {
    /// A restore's id.
    RestoreId("restore_id", example = "rs-8d21f0c7b34a4e6f9102")
}
path_id! {
    /// A backup (`bk-…`), replication (`rp-…`), restore (`rs-…`) or expiry (`ex-…`) job id.
    JobId("job_id", example = "bk-3f9c2a7d41e84b0c9a15")
}
path_id! {
    /// The policy id.
    PolicyId("id", example = "pl-5a0e7c91d2b34f68a0c4")
}

/// `limit` and `next_token` of a listing. `limit` is read as text so that a bad one is
/// refused with its own code.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Most items in a page.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<String>,
    /// The `next_token` of the previous page.
    pub next_token: Option<String>,
}

impl PageQuery {
    /// The limit (1–100, default 20) and the cursor.
    pub fn page(&self) -> Result<(usize, Option<Cursor>), ApiError> {
        let limit = match &self.limit {
            None => 20,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| Error::bad_request("InvalidLimit", format!("limit: '{v}' is not 1 to 100")))?,
        };
        Ok((limit, self.next_token.as_deref().map(Cursor::from_token)))
    }
}

/// A page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `next_token` for the next page; null on the last page.
    pub next_token: Option<String>,
}

impl<T> From<(Vec<T>, Option<Cursor>)> for Page<T> {
    fn from((items, next_cursor): (Vec<T>, Option<Cursor>)) -> Self {
        Self { items, next_token: next_cursor.map(|cursor| cursor.token().to_owned()) }
    }
}

/// A function's router: its own routes, and a JSON 404 for everything else, including a
/// known path with another method (the route of another function, or of none).
///
/// Each HTTP function serves only its own routes, not the whole API: its IAM role grants
/// exactly what those routes reach, so a request routed to the wrong function is a clear
/// 404 rather than an access error half way through, and each binary carries only its
/// handlers. API Gateway (template.yaml) and `cargo lambda watch` (Cargo.toml) send each
/// route to its function; tests keep both in step with these routers.
/// The header a local run reads the caller from.
pub const CALLER_HEADER: &str = "x-snapnest-caller";
/// The header a local run reads the caller's groups from.
pub const GROUPS_HEADER: &str = "x-snapnest-groups";

/// The use cases acting for whoever calls: a handler's way to reach the domain.
pub struct Acting(pub Snapnest);

impl FromRequestParts<Arc<Snapnest>> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<Snapnest>) -> Result<Self, Self::Rejection> {
        let caller = caller_of(parts, &app.settings.admins, app.settings.trust_unverified_callers)?;
        Ok(Acting(app.for_caller(caller)))
    }
}

/// The caller of a request: what API Gateway verified (the IAM principal, or the JWT's
/// subject and groups); only in local runs (`cargo lambda watch`, tests), where nothing is
/// verified, the `x-snapnest-caller` header (with `x-snapnest-groups`, comma-separated) or,
/// without it, the system.
fn caller_of(parts: &Parts, admins: &[String], trust_unverified: bool) -> Result<Caller, ApiError> {
    use lambda_http::request::RequestContext;
    let authorizer = match parts.extensions.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(context)) => context.authorizer.as_ref(),
        _ => None,
    };
    if let Some(authorizer) = authorizer {
        if let Some(arn) = authorizer.iam.as_ref().and_then(|iam| iam.user_arn.as_deref()) {
            return Ok(Caller::from_iam_arn(arn, admins));
        }
        if let Some(jwt) = authorizer.jwt.as_ref() {
            let claims = &jwt.claims;
            check_scope(
                &parts.method,
                parts.uri.path(),
                claims.get("scope").or_else(|| claims.get("scp")),
                &jwt.scopes,
            )?;
            if let Some(subject) = claims.get("sub") {
                // HTTP APIs hand array claims over as one string: "[admins ops]".
                let groups = claims.get("cognito:groups").or_else(|| claims.get("groups"));
                let groups = groups.map(|g| {
                    g.trim_matches(['[', ']'])
                        .split([' ', ','])
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                });
                return Ok(Caller::new(subject, groups.unwrap_or_default(), admins));
            }
        }
    }
    if !trust_unverified {
        return Err(Error::Unauthenticated("the request carries no verified identity".into()).into());
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok(match header(CALLER_HEADER) {
        Some(name) => {
            let groups = header(GROUPS_HEADER).unwrap_or_default();
            let groups = groups.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned);
            Caller::new(&name, groups, admins)
        }
        None => Caller::system(),
    })
}

/// The JWT scope each route needs: reading anything `snapnest/read`; backups (start, retention,
/// cancel of a backup or replication) `snapnest/backup`; restores (start, roll-back, cancel)
/// `snapnest/restore`; policies `snapnest/admin`, which also stands for every other scope.
pub fn scope_for(method: &axum::http::Method, path: &str) -> &'static str {
    if method == axum::http::Method::GET {
        "snapnest/read"
    } else if path.starts_with("/policies") {
        "snapnest/admin"
    } else if path.ends_with("/restores") || path.ends_with("/rollback") || path.starts_with("/jobs/rs-") {
        "snapnest/restore"
    } else {
        "snapnest/backup"
    }
}

/// A JWT caller may use a route only with its scope (or `snapnest/admin`): the token's
/// `scope` claim (space-separated, OAuth 2.0) or `scp`, or the scopes API Gateway read from it.
fn check_scope(
    method: &axum::http::Method,
    path: &str,
    claim: Option<&String>,
    verified: &Option<Vec<String>>,
) -> Result<(), ApiError> {
    let needed = scope_for(method, path);
    let held: Vec<&str> = claim
        .map(|c| c.trim_matches(['[', ']']).split([' ', ',']).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let held: Vec<&str> = held.into_iter().chain(verified.iter().flatten().map(String::as_str)).collect();
    if held.iter().any(|s| *s == needed || *s == "snapnest/admin") {
        return Ok(());
    }
    let has = if held.is_empty() { "none".to_owned() } else { held.join(" ") };
    Err(Error::Forbidden(format!("{method} {path} needs the scope {needed}; the token has {has}")).into())
}

pub fn router(routes: Routes, app: Arc<Snapnest>) -> Router {
    let (router, _) = routes.split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        // Lambda hands over the whole body (at most 6 MB) already read; axum's 2 MB default
        // would only turn a large body the domain refuses with a clear 400 into another error.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

async fn not_found(request: Request) -> ApiError {
    Error::not_found("route", format!("{} {}", request.method(), request.uri().path())).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        n: Option<u32>,
    }

    async fn read(body: &str) -> Result<Body, ApiError> {
        let request = Request::builder().body(axum::body::Body::from(body.to_owned())).unwrap();
        JsonBody::<Body>::from_request(request, &()).await.map(|b| b.0)
    }

    #[tokio::test]
    async fn bodies_reject_unknown_fields_and_bad_json_with_400() {
        for (bad, code) in [
            ("{\"x\": 1}", "InvalidRequest"),
            ("{\"n\": -1}", "InvalidRequest"),
            ("{\"n\": ", "MalformedJson"),
            ("[]", "InvalidRequest"),
        ] {
            let e = read(bad).await.unwrap_err();
            assert_eq!((e.status(), e.code()), (StatusCode::BAD_REQUEST, code), "{bad}");
            assert!(e.body().message.starts_with("request body: "), "{bad}: {}", e.body().message);
        }
        assert!(read("").await.unwrap().n.is_none());
        assert!(read(" \n").await.is_ok());
        assert_eq!(read("{\"n\": 3}").await.unwrap().n, Some(3));
        let unknown = read("{\"x\": 1}").await.unwrap_err().body().message;
        assert_eq!(unknown, "request body: unknown field `x`, expected `n`");
    }

    #[tokio::test]
    async fn body_errors_name_the_field_and_what_to_send_not_rust_types_or_serde_positions() {
        let message = |body: &'static str| async move { read(body).await.unwrap_err().body().message };
        assert_eq!(
            message("{\"n\": \"seven\"}").await,
            "request body: n: invalid type: string \"seven\", expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            message("{\"n\": -1}").await,
            "request body: n: invalid value: integer `-1`, expected a whole number from 0 to 4294967295"
        );
        assert_eq!(message("[]").await, "request body: expected a JSON object ({…}), not a list");
        assert_eq!(message("7").await, "request body: invalid type: integer `7`, expected an object");
        assert_eq!(
            message("{\"n\": ").await,
            "request body: not valid JSON: EOF while parsing a value (at character 6)"
        );
        assert_eq!(
            message("{\n\"n\": 1,,}").await,
            "request body: not valid JSON: key must be a string (at line 2, character 8)"
        );
    }

    #[test]
    fn each_route_needs_its_scope_and_admin_stands_for_all() {
        use axum::http::Method;
        let scope = |method: Method, path: &str| scope_for(&method, path);
        assert_eq!(scope(Method::GET, "/restores/rs-1"), "snapnest/read");
        assert_eq!(scope(Method::POST, "/service-instances/si-1/backups"), "snapnest/backup");
        assert_eq!(scope(Method::PATCH, "/backups/bk-1/retention"), "snapnest/backup");
        assert_eq!(scope(Method::POST, "/jobs/bk-1/cancel"), "snapnest/backup");
        assert_eq!(scope(Method::POST, "/jobs/rs-1/cancel"), "snapnest/restore");
        assert_eq!(scope(Method::POST, "/backups/bk-1/restores"), "snapnest/restore");
        assert_eq!(scope(Method::POST, "/restores/rs-1/rollback"), "snapnest/restore");
        assert_eq!(scope(Method::DELETE, "/policies/pl-1"), "snapnest/admin");
        let post = Method::POST;
        assert!(check_scope(&post, "/policies", Some(&"openid snapnest/admin".to_owned()), &None).is_ok());
        assert!(check_scope(&post, "/policies", None, &Some(vec!["snapnest/admin".into()])).is_ok());
        let refused = check_scope(&post, "/policies", None, &None).unwrap_err();
        assert_eq!((refused.status(), refused.code()), (StatusCode::FORBIDDEN, "Forbidden"));
    }

    #[test]
    fn pages_default_to_20_and_refuse_other_limits() {
        let page = |limit: Option<&str>| PageQuery { limit: limit.map(str::to_owned), next_token: None };
        assert_eq!(page(None).page().unwrap().0, 20);
        assert_eq!(page(Some("100")).page().unwrap().0, 100);
        for bad in ["0", "101", "ten", ""] {
            assert_eq!(page(Some(bad)).page().unwrap_err().code(), "InvalidLimit", "{bad}");
        }
    }

    #[test]
    fn long_quoted_values_are_capped_in_messages() {
        let short = "client_token: 'has space' must be 1 to 128 letters";
        assert_eq!(cap_echoes(short), short);
        let token = "x".repeat(6 << 20);
        let message = format!("client_token: '{token}' must be 1 to 128 letters, digits, '-', '_' or '.'");
        let capped = cap_echoes(&message);
        assert_eq!(
            capped,
            format!("client_token: '{}…' must be 1 to 128 letters, digits, '-', '_' or '.'", "x".repeat(ECHO_LIMIT))
        );
        let unquoted = "y ".repeat(10_000);
        assert_eq!(cap_echoes(&unquoted).chars().count(), MESSAGE_LIMIT + 1);
        let serde = format!("request body: unknown field `{token}`, expected `n` at line 1 column 9");
        assert!(cap_echoes(&serde).ends_with("…`, expected `n` at line 1 column 9"));
    }
}
