//! The HTTP API (SPEC "HTTP API"): API Gateway HTTP API events in, JSON responses out.
//!
//! The routes, the request parsing (unknown fields → 400), and the mapping from
//! [`Error`] to HTTP status live here, in one place; function handlers only pick the
//! routes they serve and call the domain.

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use tracing::{error, warn};

use snapnest_core::store::Cursor;
use snapnest_core::Error;

/// The part of an API Gateway HTTP API (payload 2.0) or function-URL event we read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    pub raw_path: String,
    #[serde(default)]
    pub query_string_parameters: HashMap<String, String>,
    pub request_context: RequestContext,
    pub body: Option<String>,
    #[serde(default)]
    pub is_base64_encoded: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestContext {
    pub http: HttpDescription,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpDescription {
    pub method: String,
}

/// An HTTP API (payload 2.0) response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    pub status_code: u16,
    pub headers: HashMap<String, String>,
    /// Always empty; present because some API Gateway emulators require the field.
    #[serde(default)]
    pub multi_value_headers: HashMap<String, Vec<String>>,
    #[serde(default)]
    pub cookies: Vec<String>,
    pub body: String,
    pub is_base64_encoded: bool,
}

impl HttpResponse {
    pub fn json(status_code: u16, body: &impl Serialize) -> Self {
        let body =
            serde_json::to_string(body).unwrap_or_else(|e| format!("{{\"error\":\"Internal\",\"message\":\"{e}\"}}"));
        Self {
            status_code,
            headers: HashMap::from([("content-type".to_owned(), "application/json".to_owned())]),
            multi_value_headers: HashMap::new(),
            cookies: Vec::new(),
            body,
            is_base64_encoded: false,
        }
    }

    pub fn body_json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Every route of the SPEC's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    CreateBackup { service_instance_id: String },
    ListBackups { service_instance_id: String },
    GetBackup { backup_id: String },
    ChangeRetention { backup_id: String },
    CreateRestore { backup_id: String },
    GetRestore { restore_id: String },
    ListJobs,
    CancelJob { job_id: String },
    Capacity { service_instance_id: String },
    CreatePolicy,
    ListPolicies,
    GetPolicy { policy_id: String },
    UpdatePolicy { policy_id: String },
    DeletePolicy { policy_id: String },
    SuspendPolicy { policy_id: String },
    ResumePolicy { policy_id: String },
    ChangeTargets { policy_id: String },
}

/// Method and path templates, as API Gateway and `cargo lambda watch` declare them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/service-instances/{id}/backups"),
    ("GET", "/service-instances/{id}/backups"),
    ("GET", "/backups/{backup_id}"),
    ("PATCH", "/backups/{backup_id}/retention"),
    ("POST", "/backups/{backup_id}/restores"),
    ("GET", "/restores/{restore_id}"),
    ("GET", "/jobs"),
    ("POST", "/jobs/{job_id}/cancel"),
    ("GET", "/service-instances/{id}/capacity"),
    ("POST", "/policies"),
    ("GET", "/policies"),
    ("GET", "/policies/{id}"),
    ("PUT", "/policies/{id}"),
    ("DELETE", "/policies/{id}"),
    ("POST", "/policies/{id}/suspend"),
    ("POST", "/policies/{id}/resume"),
    ("POST", "/policies/{id}/targets"),
];

impl Route {
    /// Matches a request's method and path; 404 for a path the API does not have.
    pub fn parse(method: &str, path: &str) -> Result<Route, Error> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let owned = |s: &str| s.to_owned();
        let route = match (method.to_ascii_uppercase().as_str(), segments.as_slice()) {
            ("POST", ["service-instances", id, "backups"]) => Route::CreateBackup { service_instance_id: owned(id) },
            ("GET", ["service-instances", id, "backups"]) => Route::ListBackups { service_instance_id: owned(id) },
            ("GET", ["backups", id]) => Route::GetBackup { backup_id: owned(id) },
            ("PATCH", ["backups", id, "retention"]) => Route::ChangeRetention { backup_id: owned(id) },
            ("POST", ["backups", id, "restores"]) => Route::CreateRestore { backup_id: owned(id) },
            ("GET", ["restores", id]) => Route::GetRestore { restore_id: owned(id) },
            ("GET", ["jobs"]) => Route::ListJobs,
            ("POST", ["jobs", id, "cancel"]) => Route::CancelJob { job_id: owned(id) },
            ("GET", ["service-instances", id, "capacity"]) => Route::Capacity { service_instance_id: owned(id) },
            ("POST", ["policies"]) => Route::CreatePolicy,
            ("GET", ["policies"]) => Route::ListPolicies,
            ("GET", ["policies", id]) => Route::GetPolicy { policy_id: owned(id) },
            ("PUT", ["policies", id]) => Route::UpdatePolicy { policy_id: owned(id) },
            ("DELETE", ["policies", id]) => Route::DeletePolicy { policy_id: owned(id) },
            ("POST", ["policies", id, "suspend"]) => Route::SuspendPolicy { policy_id: owned(id) },
            ("POST", ["policies", id, "resume"]) => Route::ResumePolicy { policy_id: owned(id) },
            ("POST", ["policies", id, "targets"]) => Route::ChangeTargets { policy_id: owned(id) },
            _ => return Err(Error::not_found("route", format!("{method} {path}"))),
        };
        Ok(route)
    }
}

impl HttpRequest {
    pub fn route(&self) -> Result<Route, Error> {
        Route::parse(&self.request_context.http.method, &self.raw_path)
    }

    /// The JSON body as `T`; an empty body reads as `{}`. Unknown fields, wrong types and
    /// malformed JSON are 400s naming what is wrong.
    pub fn json_body<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let raw = self.body.clone().unwrap_or_default();
        let text = if self.is_base64_encoded {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw.trim())
                .map_err(|e| Error::bad_request("MalformedBody", format!("body is not valid base64: {e}")))?;
            String::from_utf8(bytes).map_err(|_| Error::bad_request("MalformedBody", "body is not UTF-8"))?
        } else {
            raw
        };
        let text = if text.trim().is_empty() { "{}" } else { text.as_str() };
        serde_json::from_str(text).map_err(|e| {
            let code = if e.is_syntax() || e.is_eof() { "MalformedJson" } else { "InvalidRequest" };
            Error::bad_request(code, format!("request body: {e}"))
        })
    }

    /// A query-string parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_string_parameters.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// `limit` (1–100, default 20) and `next_token` of a listing.
    pub fn page(&self) -> Result<(usize, Option<Cursor>), Error> {
        let limit = match self.query_string_parameters.get("limit") {
            None => 20,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| Error::bad_request("InvalidLimit", format!("limit: '{v}' is not 1 to 100")))?,
        };
        Ok((limit, self.query_string_parameters.get("next_token").map(|token| Cursor::from_token(token))))
    }
}

/// The HTTP status of each error, in one place.
pub fn status_of(error: &Error) -> u16 {
    match error {
        Error::BadRequest { .. } => 400,
        Error::NotFound { .. } => 404,
        Error::Conflict { .. } => 409,
        Error::Store(_) => 503,
        Error::Cloud(e) if e.is_retryable() => 503,
        Error::Cloud(_) => 502,
    }
}

/// The machine-readable code of each error.
pub fn code_of(error: &Error) -> &'static str {
    match error {
        Error::BadRequest { code, .. } | Error::Conflict { code, .. } => code,
        Error::NotFound { .. } => "NotFound",
        Error::Store(_) => "MetadataSyncFailed",
        Error::Cloud(_) => "CloudError",
    }
}

/// `{"error": <code>, "message": <for a person>}` with the error's status. Server-side
/// failures are logged here, once.
pub fn error_response(error: &Error) -> HttpResponse {
    let status = status_of(error);
    if status >= 500 {
        error!(error = %error, source = ?std::error::Error::source(error), "request failed");
    } else {
        warn!(status, code = code_of(error), message = %error, "request refused");
    }
    HttpResponse::json(status, &json!({ "error": code_of(error), "message": error.to_string() }))
}

/// A handler outcome as a response.
pub fn respond<T: Serialize>(success_status: u16, outcome: Result<T, Error>) -> HttpResponse {
    match outcome {
        Ok(body) => HttpResponse::json(success_status, &body),
        Err(e) => error_response(&e),
    }
}

/// Records as the API shows them.
pub fn page_body<T: Serialize>(items: Vec<T>, next_token: Option<Cursor>) -> Value {
    json!({ "items": items, "next_token": next_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, body: Option<&str>) -> HttpRequest {
        serde_json::from_value(json!({
            "rawPath": path,
            "requestContext": {"http": {"method": method}},
            "body": body,
        }))
        .unwrap()
    }

    #[test]
    fn every_declared_route_parses_and_others_are_404() {
        for (method, template) in ROUTES {
            let path = template
                .replace("{id}", "si-1")
                .replace("{backup_id}", "bk-1")
                .replace("{restore_id}", "rs-1")
                .replace("{job_id}", "bk-1");
            assert!(Route::parse(method, &path).is_ok(), "{method} {path}");
        }
        assert_eq!(
            Route::parse("POST", "/service-instances/si-1/backups/").unwrap(),
            Route::CreateBackup { service_instance_id: "si-1".into() }
        );
        let missing = Route::parse("DELETE", "/backups/bk-1").unwrap_err();
        assert_eq!(status_of(&missing), 404);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        n: Option<u32>,
    }

    #[test]
    fn bodies_reject_unknown_fields_and_bad_json_with_400() {
        for bad in ["{\"x\": 1}", "{\"n\": -1}", "{\"n\": ", "[]"] {
            let e = request("POST", "/", Some(bad)).json_body::<Body>().unwrap_err();
            assert_eq!(status_of(&e), 400, "{bad}");
            let response = error_response(&e);
            assert_eq!(response.status_code, 400);
            assert!(response.body_json()["message"].as_str().unwrap().contains("request body"));
        }
        assert!(request("POST", "/", None).json_body::<Body>().is_ok());
        let encoded = base64::engine::general_purpose::STANDARD.encode("{\"n\": 3}");
        let mut r = request("POST", "/", Some(&encoded));
        r.is_base64_encoded = true;
        assert_eq!(r.json_body::<Body>().unwrap().n, Some(3));
    }
}
