//! `docs/openapi.yaml` checked against the code. The document is generated from the
//! functions' routes (`cargo run -p snapnest-e2e --bin openapi`), so the first test only
//! checks that the committed file is up to date; the others check what generation cannot:
//! each route is served by exactly one function's router and answered there, every error
//! answer has an example whose code the code produces with that status, every request body
//! schema lists exactly the fields snapnest-core accepts and forbids others, and every
//! example round-trips through snapnest-core's own types.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use axum::body::Body;
use axum::http::Request;
use lambda_http::tower::ServiceExt;
use serde_json::Value;
use snapnest_core::jobs::{Capacity, Job, Progress};
use snapnest_e2e::moto::repo_root;
use snapnest_e2e::{http_functions, http_routes, local_service, openapi_yaml, OPENAPI_COMMAND};
use snapnest_lambda::api::Page;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    let path = repo_root().join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

#[test]
fn docs_openapi_yaml_is_the_document_the_code_generates() {
    let path = repo_root().join("docs/openapi.yaml");
    let generated = openapi_yaml();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == generated {
        return;
    }
    if std::env::var_os("SNAPNEST_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let line = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .map_or_else(|| committed.lines().count().min(generated.lines().count()) + 1, |n| n + 1);
    panic!(
        "docs/openapi.yaml is not what the code generates (first difference at line {line}).\n\
         Regenerate it: {OPENAPI_COMMAND}\n\
         (or SNAPNEST_UPDATE_OPENAPI=1 cargo test -p snapnest-e2e --test openapi)"
    );
}

/// Follows local `$ref`s (`#/components/...`) to what they name.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else { return value };
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("only local $refs are used: {reference}"));
        value = doc.pointer(pointer).unwrap_or_else(|| panic!("$ref {reference} names nothing"));
    }
    panic!("$ref chain too long (a cycle?)")
}

/// The component schema name a `$ref` points at (`#/components/schemas/X` → `X`).
fn schema_name(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.strip_prefix("#/components/schemas/")
}

struct Operation<'a> {
    method: String,
    path: String,
    item: &'a Value,
    op: &'a Value,
}

impl Operation<'_> {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let paths = doc["paths"].as_object().expect("docs/openapi.yaml has paths");
    let mut found = Vec::new();
    for (path, item) in paths {
        for (key, op) in item.as_object().expect("a path item is a mapping") {
            if METHODS.contains(&key.as_str()) {
                found.push(Operation { method: key.to_ascii_uppercase(), path: path.clone(), item, op });
            }
        }
    }
    found
}

/// Every (status, response) of an operation, references resolved.
fn responses<'a>(doc: &'a Value, op: &Operation<'a>) -> Vec<(u16, &'a Value)> {
    op.op["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{} has no responses", op.name()))
        .iter()
        .map(|(status, response)| {
            let status = status
                .parse::<u16>()
                .unwrap_or_else(|_| panic!("{}: use explicit status codes, not {status}", op.name()));
            (status, resolve(doc, response))
        })
        .collect()
}

/// The examples of a media type object (`example`, or each of `examples`), by name.
fn examples<'a>(doc: &'a Value, media: &'a Value) -> Vec<(String, &'a Value)> {
    let mut found = Vec::new();
    if let Some(example) = media.get("example") {
        found.push(("example".to_owned(), example));
    }
    for (name, example) in media.get("examples").and_then(Value::as_object).into_iter().flatten() {
        let example = resolve(doc, example);
        let value = example.get("value").unwrap_or_else(|| panic!("example '{name}' has no value"));
        found.push((name.clone(), value));
    }
    found
}

fn json_media<'a>(content_owner: &'a Value, what: &str) -> &'a Value {
    content_owner.pointer("/content/application~1json").unwrap_or_else(|| panic!("{what}: no application/json content"))
}

/// The Rust sources of the code that answers HTTP requests, without their test modules.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, found: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                let production = match text.find("#[cfg(test)]\nmod ") {
                    Some(at) => text[..at].to_owned(),
                    None => text,
                };
                found.push((path.display().to_string(), production));
            }
        }
    }
    let root = repo_root();
    let mut found = Vec::new();
    walk(&root.join("shared"), &mut found);
    for function in std::fs::read_dir(root.join("functions")).expect("functions/") {
        let src = function.expect("directory entry").path().join("src");
        if src.is_dir() {
            walk(&src, &mut found);
        }
    }
    assert!(found.iter().any(|(path, _)| path.ends_with("api.rs")), "shared/lambda/src/api.rs not found");
    found
}

/// The codes passed to each `needle` call: a string literal right after it (whitespace and
/// newlines allowed: `Error::bad_request(\n    "TooManyInstances", …` → `TooManyInstances`),
/// or a variable bound just before by `let code = if … { "A" } else { "B" };` → `A`, `B`.
fn literal_arguments(text: &str, needle: &str) -> Vec<String> {
    let literals = |text: &str| -> Vec<String> { text.split('"').skip(1).step_by(2).map(str::to_owned).collect() };
    let mut found = Vec::new();
    let mut offset = 0;
    while let Some(at) = text[offset..].find(needle) {
        let call = offset + at;
        offset = call + needle.len();
        let argument = text[offset..].trim_start();
        if let Some(literal) = argument.strip_prefix('"') {
            found.extend(literal.split('"').next().map(str::to_owned));
            continue;
        }
        let variable: String = argument.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let after = argument[variable.len()..].trim_start();
        if variable.is_empty() || !after.starts_with(',') {
            continue; // a definition (`fn bad_request(code: …`), not a call
        }
        let binding = format!("let {variable} = ");
        let Some(start) = text[..call].rfind(&binding) else { continue };
        let statement = &text[start..call];
        let statement = &statement[..statement.find(';').unwrap_or(statement.len())];
        found.extend(literals(statement));
    }
    found
}

/// Every error code the code can answer with, and the statuses it comes with
/// (`shared/lambda/src/api.rs`: `ApiError::status`, `ApiError::code`).
fn producible_codes() -> BTreeMap<String, BTreeSet<u16>> {
    let mut codes: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut code_of = None;
    for (path, text) in sources() {
        for code in literal_arguments(&text, "bad_request(") {
            codes.entry(code).or_default().insert(400);
        }
        for code in literal_arguments(&text, "conflict(") {
            codes.entry(code).or_default().insert(409);
        }
        if path.ends_with("lambda/src/api.rs") {
            let start = text.find("pub fn code(&self)").expect("api.rs has ApiError::code");
            let end = start + text[start..].find("\n    }\n").expect("ApiError::code ends");
            code_of = Some(text[start..end].to_owned());
        }
    }
    // The codes of the variants without a code of their own, as `ApiError::code` names them.
    let code_of = code_of.expect("api.rs read");
    for (code, statuses) in [("NotFound", &[404][..]), ("MetadataSyncFailed", &[503]), ("CloudError", &[502, 503])] {
        assert!(
            code_of.contains(&format!("\"{code}\"")),
            "ApiError::code in shared/lambda/src/api.rs no longer answers {code}"
        );
        codes.entry(code.to_owned()).or_default().extend(statuses);
    }
    for expected in
        ["TooManyInstances", "BackupAlreadyRunning", "PolicyAlreadyAttached", "InvalidStatus", "MalformedJson"]
    {
        assert!(codes.contains_key(expected), "the scan of the sources missed {expected}: {codes:?}");
    }
    codes
}

/// Names of the structs snapnest-core reads request bodies into: those it deserializes with
/// `#[serde(deny_unknown_fields)]`.
fn strict_structs() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (_, text) in sources().iter().filter(|(path, _)| path.contains("shared/core/")) {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("deny_unknown_fields") {
            rest = &rest[at..];
            let after = &rest[rest.find("struct ").expect("deny_unknown_fields on a struct") + "struct ".len()..];
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.insert(name);
            rest = after;
        }
    }
    found
}

/// A path of the template with sample ids in its parameters.
fn sample_path(template: &str) -> String {
    template
        .replace("{id}", "si-sample")
        .replace("{backup_id}", "bk-sample")
        .replace("{restore_id}", "rs-sample")
        .replace("{job_id}", "bk-sample")
}

#[tokio::test]
async fn each_route_is_documented_and_served_by_its_function_only() {
    let doc = document();
    let documented: BTreeSet<(String, String)> =
        operations(&doc).iter().map(|o| (o.method.clone(), o.path.clone())).collect();
    let routes = http_routes();
    let served: BTreeSet<(String, String)> = routes.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(served.len(), routes.len(), "a route is served by two functions: {routes:?}");
    assert_eq!(served, documented, "the functions' routes vs docs/openapi.yaml");
    assert_eq!(served.len(), 18, "the SPEC's routes and the roll-back of an in-place restore");

    // Every function answers its own routes (found or not, a JSON answer of the route) and
    // a JSON 404 for every other request: another function's route, another method, no route.
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = local_service(dir.path(), &[]).await;
    let routers = [
        ("create-backup", create_backup::router(app.clone())),
        ("restore", restore::router(app.clone())),
        ("admin-api", admin_api::router(app.clone())),
    ];
    assert_eq!(routers.len(), http_functions().len());
    let others =
        [("GET".to_owned(), "/nowhere".to_owned(), ""), ("DELETE".to_owned(), "/backups/{backup_id}".to_owned(), "")];
    for (function, router) in routers {
        for (method, path, owner) in routes.iter().chain(&others) {
            let request =
                Request::builder().method(method.as_str()).uri(sample_path(path)).body(Body::from("{}")).unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            let body: Value =
                serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{function} {method} {path}: {e}"));
            let unrouted = status == 404 && body["message"].as_str().is_some_and(|m| m.starts_with("route '"));
            assert_eq!(unrouted, *owner != function, "{function} {method} {path}: {status} {body}");
            assert!(body.is_object(), "{function} {method} {path}: {body}");
        }
    }
}

#[test]
fn every_operation_is_fully_described() {
    let doc = document();
    let mut operation_ids = BTreeSet::new();
    for op in operations(&doc) {
        let name = op.name();
        let id = op.op["operationId"].as_str().unwrap_or_else(|| panic!("{name}: no operationId"));
        assert!(operation_ids.insert(id.to_owned()), "{name}: operationId {id} is used twice");
        assert!(op.op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{name}: no summary");

        // Path parameters: exactly the template's, each required.
        let in_template: BTreeSet<String> =
            op.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}').map(str::to_owned)).collect();
        let mut declared = BTreeSet::new();
        for list in [&op.item["parameters"], &op.op["parameters"]] {
            for parameter in list.as_array().into_iter().flatten() {
                let parameter = resolve(&doc, parameter);
                if parameter["in"] == "path" {
                    assert_eq!(
                        parameter["required"], true,
                        "{name}: path parameter {} not required",
                        parameter["name"]
                    );
                    declared.insert(parameter["name"].as_str().expect("parameter name").to_owned());
                }
            }
        }
        assert_eq!(declared, in_template, "{name}: path parameters declared vs in the template");

        if let Some(body) = op.op.get("requestBody") {
            let media = json_media(resolve(&doc, body), &format!("{name} request body"));
            assert!(media.get("schema").is_some(), "{name}: request body without a schema");
            assert!(!examples(&doc, media).is_empty(), "{name}: request body without an example");
        }

        let mut successes: Vec<_> = responses(&doc, &op).into_iter().filter(|(s, _)| (200..300).contains(s)).collect();
        if name == "POST /backups/{backup_id}/restores" {
            // A dry run answers its plan (200) where a restore answers its record (202).
            assert_eq!(successes.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![200, 202], "{name}");
            successes.remove(0);
        }
        assert_eq!(successes.len(), 1, "{name}: exactly one success response");
        let media = json_media(successes[0].1, &format!("{name} {}", successes[0].0));
        assert!(media.get("schema").is_some(), "{name}: success response without a schema");
        assert!(!examples(&doc, media).is_empty(), "{name}: success response without an example");
    }
}

#[test]
fn every_error_response_has_an_example_with_error_and_message() {
    let doc = document();
    let mut problems = Vec::new();
    for op in operations(&doc) {
        for (status, response) in responses(&doc, &op) {
            if status < 400 {
                continue;
            }
            let at = format!("{} {status}", op.name());
            let Some(media) = response.pointer("/content/application~1json") else {
                problems.push(format!("{at}: no application/json content"));
                continue;
            };
            if schema_name(&media["schema"]) != Some("Error") {
                problems.push(format!("{at}: schema is not #/components/schemas/Error"));
            }
            let found = examples(&doc, media);
            if found.is_empty() {
                problems.push(format!("{at}: no example"));
            }
            for (example, value) in found {
                let keys: BTreeSet<&str> = value.as_object().into_iter().flatten().map(|(k, _)| k.as_str()).collect();
                let strings = value["error"].is_string() && value["message"].is_string();
                if keys != BTreeSet::from(["error", "message"]) || !strings {
                    problems.push(format!("{at} example {example}: not {{error, message}} strings: {value}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "error responses of docs/openapi.yaml:\n  {}", problems.join("\n  "));
}

#[test]
fn strict_request_bodies_forbid_additional_properties() {
    let doc = document();
    let strict = strict_structs();
    for expected in
        ["BackupRequest", "RestoreRequest", "RetentionRequest", "PolicyRequest", "TargetsRequest", "CancelRequest"]
    {
        assert!(strict.contains(expected), "the scan for deny_unknown_fields missed {expected}: {strict:?}");
    }

    let mut body_schemas = BTreeSet::new();
    let mut problems = Vec::new();
    for op in operations(&doc) {
        let Some(body) = op.op.get("requestBody") else { continue };
        let schema = &json_media(resolve(&doc, body), &op.name())["schema"];
        match schema_name(schema) {
            Some(name) => {
                body_schemas.insert(name.to_owned());
            }
            None => problems.push(format!("{}: request body schema is not a named component", op.name())),
        }
        if resolve(&doc, schema)["additionalProperties"] != false {
            problems.push(format!("{}: request body schema lacks additionalProperties: false", op.name()));
        }
    }
    for name in &strict {
        let schema = &doc["components"]["schemas"][name];
        if schema.is_null() {
            problems.push(format!("{name} (deny_unknown_fields) has no schema in components.schemas"));
        } else if schema["additionalProperties"] != false {
            problems.push(format!("{name} (deny_unknown_fields) lacks additionalProperties: false"));
        }
        if !body_schemas.contains(name) {
            problems.push(format!("{name} (deny_unknown_fields) is no operation's request body"));
        }
    }
    assert!(problems.is_empty(), "request bodies of docs/openapi.yaml:\n  {}", problems.join("\n  "));
}

/// The fields a `deny_unknown_fields` type accepts, from serde's own refusal of an unknown
/// one ("unknown field `x`, expected one of `a`, `b`" / "expected `a` or `b`" / "expected `a`").
macro_rules! accepted_fields {
    ($type:ty) => {{
        let refusal = serde_json::from_str::<$type>(r#"{"__probe__": 0}"#).expect_err("unknown field refused");
        let text = refusal.to_string();
        let expected = text.split_once("expected").map(|(_, rest)| rest).unwrap_or_default();
        expected.split('`').skip(1).step_by(2).map(str::to_owned).collect::<BTreeSet<String>>()
    }};
}

#[test]
fn request_schemas_list_exactly_the_fields_the_code_accepts() {
    use snapnest_core::backup::BackupRequest;
    use snapnest_core::jobs::CancelRequest;
    use snapnest_core::policy::{PolicyRequest, TargetsRequest};
    use snapnest_core::restore::RestoreRequest;
    use snapnest_core::retention::RetentionRequest;

    let doc = document();
    let mut checked = BTreeSet::new();
    for name in strict_structs() {
        let accepted = match name.as_str() {
            "BackupRequest" => accepted_fields!(BackupRequest),
            "RestoreRequest" => accepted_fields!(RestoreRequest),
            "RetentionRequest" => accepted_fields!(RetentionRequest),
            "PolicyRequest" => accepted_fields!(PolicyRequest),
            "TargetsRequest" => accepted_fields!(TargetsRequest),
            "CancelRequest" => accepted_fields!(CancelRequest),
            other => panic!(
                "{other} is read with deny_unknown_fields: describe it in snapnest_lambda::openapi::schema and add it here"
            ),
        };
        assert!(!accepted.is_empty(), "{name}: no fields read from serde's message");
        let documented: BTreeSet<String> = doc["components"]["schemas"][&name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: no properties in docs/openapi.yaml"))
            .keys()
            .cloned()
            .collect();
        assert_eq!(documented, accepted, "{name}: properties in docs/openapi.yaml vs fields the code accepts");
        checked.insert(name);
    }
    assert!(checked.len() >= 6, "{checked:?}");
}

#[test]
fn error_examples_use_codes_the_code_produces_with_that_status() {
    let doc = document();
    let codes = producible_codes();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for op in operations(&doc) {
        for (status, response) in responses(&doc, &op) {
            if status < 400 {
                continue;
            }
            let Some(media) = response.pointer("/content/application~1json") else { continue };
            for (example, value) in examples(&doc, media) {
                let code = value["error"].as_str().unwrap_or_default();
                used.insert(code.to_owned());
                match codes.get(code) {
                    None => problems.push(format!(
                        "{} {status} example {example}: '{code}' is no code the code produces",
                        op.name()
                    )),
                    Some(statuses) if !statuses.contains(&status) => problems.push(format!(
                        "{} {status} example {example}: '{code}' comes with {statuses:?}, not {status}",
                        op.name()
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    assert!(problems.is_empty(), "error examples of docs/openapi.yaml:\n  {}", problems.join("\n  "));
    for code in ["NotFound", "MetadataSyncFailed", "CloudError", "InvalidRequest", "MalformedJson"] {
        assert!(used.contains(code), "no error example shows {code}");
    }
}

/// Whether a schema allows null (OpenAPI 3.1: `type: [..., "null"]`, or a `oneOf`/`anyOf`
/// alternative of `type: "null"`).
fn allows_null(doc: &Value, schema: &Value) -> bool {
    let schema = resolve(doc, schema);
    let null_type = |s: &Value| s["type"] == "null" || s["type"].as_array().is_some_and(|t| t.contains(&"null".into()));
    null_type(schema)
        || ["oneOf", "anyOf"].iter().any(|c| schema[*c].as_array().into_iter().flatten().any(|a| allows_null(doc, a)))
}

/// An example checked against its schema: objects have only the schema's properties and
/// every required one, enums hold, nulls only where allowed, recursively through `$ref`,
/// `allOf`, `anyOf`, `oneOf` and `items`.
fn check_shape(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if value.is_null() {
        if !allows_null(doc, schema) {
            problems.push(format!("{at}: null, but the schema does not allow it"));
        }
        return;
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for alternative in schema[combinator].as_array().into_iter().flatten() {
            // The null alternative of an optional value says nothing about a value.
            if resolve(doc, alternative)["type"] != "null" {
                check_shape(doc, alternative, value, at, problems);
            }
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    match value {
        Value::Object(object) => {
            let Some(properties) = schema["properties"].as_object() else { return };
            for (key, field) in object {
                match properties.get(key) {
                    Some(property) => check_shape(doc, property, field, &format!("{at}.{key}"), problems),
                    None => problems.push(format!("{at}: '{key}' is not a property of the schema")),
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap_or_default();
                if !object.contains_key(required) {
                    problems.push(format!("{at}: required '{required}' missing"));
                }
            }
        }
        Value::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                check_shape(doc, &schema["items"], item, &format!("{at}[{n}]"), problems);
            }
        }
        _ => {}
    }
}

/// A field of an example, read as the type the code's struct has there.
macro_rules! field {
    ($value:expr, $name:literal) => {
        serde_json::from_value($value[$name].clone()).unwrap_or_else(|e| panic!("{}: {e}", $name))
    };
}

fn job_of(value: &Value) -> Job {
    let progress = &value["progress"];
    Job {
        job_id: field!(value, "job_id"),
        kind: field!(value, "kind"),
        status: field!(value, "status"),
        service_instance_id: field!(value, "service_instance_id"),
        backup_id: field!(value, "backup_id"),
        started_at: field!(value, "started_at"),
        finished_at: field!(value, "finished_at"),
        region: field!(value, "region"),
        progress: Progress { done: field!(progress, "done"), total: field!(progress, "total") },
    }
}

fn capacity_of(value: &Value) -> Capacity {
    Capacity {
        service_instance_id: field!(value, "service_instance_id"),
        snapshot_bytes: field!(value, "snapshot_bytes"),
        backup_points: field!(value, "backup_points"),
        replica_bytes: field!(value, "replica_bytes"),
    }
}

/// An example of a record schema, read into the code's type and written back out.
fn round_trip(schema: &str, value: &Value) -> Value {
    use snapnest_core::model::{BackupRecord, RestoreRecord};
    use snapnest_core::policy::Policy;
    use snapnest_core::summary::WithSummary;
    let unreadable = |e: serde_json::Error| format!("{schema} example does not read as the code's type: {e}\n{value}");
    let out = match schema {
        // A record is answered with the summary the code derives from it (at the end, or a
        // minute after the start while it runs: the examples' clock).
        "BackupRecord" => {
            let record: BackupRecord =
                serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{}", unreadable(e)));
            let now = record.finished_at.unwrap_or(record.started_at + chrono::Duration::minutes(1));
            serde_json::to_value(WithSummary::backup(record, now))
        }
        "RestoreRecord" => {
            let record: RestoreRecord =
                serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{}", unreadable(e)));
            let now = record.finished_at.unwrap_or(record.started_at + chrono::Duration::minutes(1));
            serde_json::to_value(WithSummary::restore(record, now))
        }
        "BackupListing" => serde_json::to_value(
            serde_json::from_value::<snapnest_core::summary::BackupListing>(value.clone())
                .unwrap_or_else(|e| panic!("{}", unreadable(e))),
        ),
        "Policy" => serde_json::to_value(
            serde_json::from_value::<Policy>(value.clone()).unwrap_or_else(|e| panic!("{}", unreadable(e))),
        ),
        "RestorePlan" => serde_json::to_value(
            serde_json::from_value::<snapnest_core::restore::plan::RestorePlan>(value.clone())
                .unwrap_or_else(|e| panic!("{}", unreadable(e))),
        ),
        "Job" => serde_json::to_value(job_of(value)),
        "Capacity" => serde_json::to_value(capacity_of(value)),
        page if page.ends_with("Page") => {
            let item = &page[..page.len() - "Page".len()];
            let item = if item == "Backup" { "BackupListing" } else { item };
            let items: Vec<Value> =
                value["items"].as_array().expect("a page has items").iter().map(|v| round_trip(item, v)).collect();
            serde_json::to_value(Page { items, next_token: value["next_token"].as_str().map(str::to_owned) })
        }
        other => panic!("no round trip for {other}: add one"),
    };
    out.expect("serializes")
}

#[test]
fn examples_match_their_schemas_and_the_codes_types() {
    use snapnest_core::backup::BackupRequest;
    use snapnest_core::jobs::CancelRequest;
    use snapnest_core::policy::{PolicyRequest, TargetsRequest};
    use snapnest_core::restore::RestoreRequest;
    use snapnest_core::retention::RetentionRequest;

    let doc = document();
    let mut problems = Vec::new();
    for op in operations(&doc) {
        let name = op.name();
        if let Some(body) = op.op.get("requestBody") {
            let media = json_media(resolve(&doc, body), &name);
            let schema = schema_name(&media["schema"]).unwrap_or_default().to_owned();
            for (example, value) in examples(&doc, media) {
                check_shape(&doc, &media["schema"], value, &format!("{name} body {example}"), &mut problems);
                let text = value.to_string();
                let read = match schema.as_str() {
                    "BackupRequest" => serde_json::from_str::<BackupRequest>(&text).err(),
                    "RestoreRequest" => serde_json::from_str::<RestoreRequest>(&text).err(),
                    "RetentionRequest" => serde_json::from_str::<RetentionRequest>(&text).err(),
                    "PolicyRequest" => serde_json::from_str::<PolicyRequest>(&text).err(),
                    "TargetsRequest" => serde_json::from_str::<TargetsRequest>(&text).err(),
                    "CancelRequest" => serde_json::from_str::<CancelRequest>(&text).err(),
                    other => panic!("{name}: no Rust type known for request schema {other}"),
                };
                if let Some(e) = read {
                    problems.push(format!("{name} body {example}: the code refuses it: {e}"));
                }
            }
        }
        for (status, response) in responses(&doc, &op) {
            let media = json_media(response, &format!("{name} {status}"));
            for (example, value) in examples(&doc, media) {
                let at = format!("{name} {status} {example}");
                check_shape(&doc, &media["schema"], value, &at, &mut problems);
                if (200..300).contains(&status) {
                    let schema = schema_name(&media["schema"]).expect("success schemas are named components");
                    let written = round_trip(schema, value);
                    if &written != value {
                        problems.push(format!("{at}: the code writes it differently:\n    {written}\n    vs {value}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "examples of docs/openapi.yaml:\n  {}", problems.join("\n  "));
}

#[test]
fn record_schemas_require_every_property() {
    // The code writes every field of a record (an absent value as null), so a client can
    // rely on each key being there; the schemas say so.
    let doc = document();
    let mut problems = Vec::new();
    for name in [
        "BackupRecord",
        "BackupItem",
        "Replication",
        "ReplicaItem",
        "Selection",
        "RestoreRecord",
        "RestoreItem",
        "Policy",
        "PolicyRun",
        "TargetOutcome",
        "Job",
        "Progress",
        "Capacity",
        "BackupPage",
        "JobPage",
        "PolicyPage",
        "Error",
    ] {
        let schema = &doc["components"]["schemas"][name];
        let properties: BTreeSet<&str> =
            schema["properties"].as_object().into_iter().flatten().map(|(k, _)| k.as_str()).collect();
        let required: BTreeSet<&str> =
            schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if properties.is_empty() || properties != required {
            problems.push(format!("{name}: properties {properties:?} vs required {required:?}"));
        }
    }
    assert!(problems.is_empty(), "record schemas:\n  {}", problems.join("\n  "));
}
