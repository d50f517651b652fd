//! `snapnest console`: the web console on 127.0.0.1. The page's API calls (`/api/...`) are
//! forwarded to the endpoint, signed with the user's own credentials, so the deployed API
//! keeps IAM authorization and nothing is exposed beyond this machine.
//!
//! Only this machine's browser reaches the server, but any page that browser opens could
//! try to: an API call must name this server as its `Host` (no DNS rebinding), come from
//! its own origin when the browser says one, and carry `x-snapnest-console: 1`, a header a
//! page of another origin cannot add without a CORS preflight this server never grants.

use std::net::{Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;

use crate::client::{Api, AuthMode};

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const STYLE_CSS: &str = include_str!("../console/style.css");

/// The header every API call of the page carries.
pub const CONSOLE_HEADER: &str = "x-snapnest-console";

#[derive(Clone)]
struct Console {
    api: Api,
    auth: &'static str,
    /// `127.0.0.1:<port>` and `localhost:<port>`: the hosts the page is served as.
    hosts: [String; 2],
}

pub async fn serve(api: Api, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e} (choose another with --port)"))?;
    let port = listener.local_addr()?.port();
    let auth = match api.auth() {
        AuthMode::None => "none",
        AuthMode::Iam { .. } => "iam",
        AuthMode::Bearer(_) => "jwt",
    };
    let console = Console { api: api.clone(), auth, hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")] };
    eprintln!(
        "snapnest console on http://127.0.0.1:{port}/ — forwarding to {} ({}); Ctrl-C stops it",
        api.endpoint(),
        match auth {
            "iam" => "signed with your AWS credentials",
            "jwt" => "with your bearer token",
            _ => "no authentication",
        }
    );
    axum::serve(listener, router(console))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/app.js", get(|| async { page("text/javascript; charset=utf-8", APP_JS) }))
        .route("/style.css", get(|| async { page("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/console-info", get(info))
        .route("/api/{*path}", any(forward))
        .with_state(console)
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            // The page runs only its own script and talks only to this server.
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; frame-ancestors 'none'"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn info(State(console): State<Console>) -> Json<serde_json::Value> {
    Json(json!({"endpoint": console.api.endpoint().as_str(), "auth": console.auth}))
}

async fn forward(
    State(console): State<Console>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = console.check(&headers) {
        return error(StatusCode::FORBIDDEN, "Forbidden", refused);
    }
    let mut path_and_query = format!("/{path}");
    if let Some(query) = uri.query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let body = (!body.is_empty()).then(|| body.to_vec());
    match console.api.send_raw(method, &path_and_query, body).await {
        Ok((status, body)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")],
            body,
        )
            .into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, "ApiUnreachable", &e.to_string()),
    }
}

impl Console {
    fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
        if !value(header::HOST).is_some_and(|host| self.hosts.iter().any(|h| h == host)) {
            return Err("the console answers only as 127.0.0.1 or localhost");
        }
        if let Some(origin) = value(header::ORIGIN) {
            if !self.hosts.iter().any(|h| origin == format!("http://{h}")) {
                return Err("a page of another origin may not call the console's API");
            }
        }
        if value(CONSOLE_HEADER.try_into().expect("a valid header name")) != Some("1") {
            return Err("the console's API is for the console's own page");
        }
        Ok(())
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn console() -> Console {
        let api = Api::new("http://127.0.0.1:9".parse().unwrap(), AuthMode::None).await.unwrap();
        Console { api, auth: "none", hosts: ["127.0.0.1:8080".into(), "localhost:8080".into()] }
    }

    async fn status(request: Request<Body>) -> StatusCode {
        router(console().await).oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn given_a_request_not_from_the_console_page_when_it_calls_the_api_then_it_is_refused_before_forwarding() {
        let call = |host: &str, origin: Option<&str>, marked: bool| {
            let mut request = Request::post("/api/service-instances/si-demo/backups").header("host", host);
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            if marked {
                request = request.header(CONSOLE_HEADER, "1");
            }
            request.body(Body::from("{}")).unwrap()
        };
        assert_eq!(status(call("evil.example:8080", None, true)).await, StatusCode::FORBIDDEN);
        assert_eq!(status(call("127.0.0.1:8080", Some("http://evil.example"), true)).await, StatusCode::FORBIDDEN);
        assert_eq!(status(call("127.0.0.1:8080", Some("http://127.0.0.1:8080"), false)).await, StatusCode::FORBIDDEN);
        // The console's own call passes the checks and is forwarded (here to a closed port).
        assert_eq!(status(call("127.0.0.1:8080", Some("http://127.0.0.1:8080"), true)).await, StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn given_the_console_when_its_page_is_asked_for_then_it_is_served_with_a_strict_policy() {
        let response = router(console().await).oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_SECURITY_POLICY], "default-src 'self'; frame-ancestors 'none'");
    }
}
