//! The OpenAPI description of the HTTP API, generated from the code: each HTTP function's
//! routes carry their own `#[utoipa::path]` (method, path, parameters, bodies, answers and
//! examples), and [`document`] puts them together with what they share: the info, servers,
//! security and tags of [`ApiDoc`], the body shapes of [`schema`], and the answers of
//! [`responses`]. `docs/openapi.yaml` is this document, kept up to date by a test.

pub mod examples;
pub mod schema;

use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

use crate::api::{ErrorBody, Routes};

const DESCRIPTION: &str = r#"Backups and restores of *service instances*: every EC2 instance, EBS volume and RDS database
that carries one tag (`service-instance-id=<id>`) is backed up as one backup point, and
restored in place, as a clone, or in another region (SPEC "HTTP API").

JSON in and out. Every error has the body `{"error": "<CodeName>", "message": "<text>"}`
(schema `Error`) with one of these statuses (`shared/lambda/src/api.rs`, `ApiError::status`):

| status | when | `error` |
|---|---|---|
| 400 | bad input; nothing was written. Unknown JSON fields are rejected. | the code naming what is wrong |
| 404 | an id that does not exist (or is not yours), or a route the API does not have | `NotFound` |
| 409 | the request is valid but the current state forbids it | the code naming the conflict |
| 502 | the cloud refused a call the request depended on | `CloudError` |
| 503 | the record store failed (`MetadataSyncFailed`), or the cloud kept throttling or failing transiently (`CloudError`); safe to retry | `MetadataSyncFailed`, `CloudError` |

A message quotes a value of the request up to 100 characters (then `…`).

Times are RFC 3339 UTC. Listings are newest first, at most `limit` (1–100, default 20) per
page; pass the `next_token` of a page to get the next one (`null` on the last page).

Every route is authorized by API Gateway before snapnest sees it: AWS IAM (SigV4-signed
requests) by default, or a JWT bearer token where the API is deployed with a JWT authorizer.
API Gateway answers an unauthorized request itself (401/403, with its own body).

This document is generated from the code (`cargo run -p snapnest-e2e --bin openapi`);
`tests/tests/openapi.rs` checks that it is up to date and that its examples are answers the
code gives."#;

/// What every route shares; the routes themselves come from the functions ([`document`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "snapnest",
        version = env!("CARGO_PKG_VERSION"),
        description = DESCRIPTION,
        license(name = "Apache-2.0"),
    ),
    servers(
        (
            url = "https://{api_id}.execute-api.{region}.amazonaws.com",
            description = "API Gateway HTTP API ($default stage)",
            variables(("api_id" = (default = "abcdef1234")), ("region" = (default = "us-east-1")))
        ),
        (url = "http://127.0.0.1:9000", description = "cargo lambda watch (local; no authorization)"),
    ),
    security(("sigv4" = []), ("jwt" = [])),
    tags(
        (name = "backups", description = "Backup points of a service instance, and their retention."),
        (name = "restores", description = "In-place, clone and disaster-recovery restores of a backup point."),
        (name = "jobs", description = "Backup, restore, replication and expiry jobs; cancelling a running one."),
        (name = "capacity", description = "Snapshot storage a service instance uses."),
        (name = "policies", description = "Scheduled backups of service instances."),
    ),
    components(
        schemas(ErrorBody),
        responses(
            responses::MetadataSyncFailed,
            responses::RetryLater,
            responses::InvalidBackupId,
            responses::BackupNotFound,
            responses::InvalidRestoreId,
            responses::RestoreNotFound,
            responses::Policy,
            responses::InvalidPolicy,
            responses::InvalidPolicyId,
            responses::PolicyNotFound,
            responses::PolicyConcurrentModification,
        ),
    ),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

/// The two ways API Gateway may authorize a caller (template.yaml's `AuthMode`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut sigv4 = ApiKeyValue::with_description(
            "Authorization",
            "AWS IAM authorization; requests are signed with Signature Version 4 (the default).",
        );
        sigv4.extensions = Some(
            utoipa::openapi::extensions::ExtensionsBuilder::new()
                .add("x-amazon-apigateway-authtype", "awsSigv4")
                .build(),
        );
        components.add_security_scheme("sigv4", SecurityScheme::ApiKey(ApiKey::Header(sigv4)));
        components.add_security_scheme(
            "jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A JWT bearer token, where the HTTP API is deployed with a JWT authorizer."))
                    .build(),
            ),
        );
    }
}

/// The whole API's description: [`ApiDoc`] with every function's routes.
pub fn document(functions: impl IntoIterator<Item = Routes>) -> Document {
    let mut document =
        functions.into_iter().fold(ApiDoc::openapi(), |document, routes| document.merge_from(routes.into_openapi()));
    optional_bodies_are_absent_not_null(&mut document);
    document
}

/// A route declares an optional body as `Option<Body>`, which utoipa describes as "the body,
/// or null". The body is optional in the other sense: it may be left out (an empty body reads
/// as `{}`), while a `null` body is refused like any other non-object. So the null
/// alternative goes; the body's `required: false` says the rest.
fn optional_bodies_are_absent_not_null(document: &mut Document) {
    for item in document.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        let bodies = operations.into_iter().flatten().filter_map(|op| match op.request_body.as_mut() {
            Some(RefOr::T(body)) => Some(body),
            _ => None,
        });
        for body in bodies {
            for content in body.content.values_mut() {
                let RefOr::T(content) = content else { continue };
                if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                    let not_null: Vec<_> = one_of.items.iter().filter(|s| !is_null(s)).cloned().collect();
                    if let [only] = not_null.as_slice() {
                        content.schema = Some(only.clone());
                    }
                }
            }
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

/// The method and path template of every operation of a document, as API Gateway and
/// `cargo lambda watch` declare routes: `("POST", "/service-instances/{id}/backups")`.
pub fn operations(document: &Document) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (path, item) in &document.paths.paths {
        let methods = [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("OPTIONS", &item.options),
            ("HEAD", &item.head),
            ("PATCH", &item.patch),
            ("TRACE", &item.trace),
        ];
        found.extend(methods.into_iter().filter(|(_, op)| op.is_some()).map(|(m, _)| (m.to_owned(), path.clone())));
    }
    found
}

/// Answers several routes give, described once (`#/components/responses/…`).
pub mod responses {
    // Each answer's body type exists to be described, never built.
    #![allow(dead_code)]

    use utoipa::{IntoResponses, ToResponse};

    use crate::api::ErrorBody;
    use crate::openapi::{examples, schema};

    /// The record store failed; nothing was lost and the request is safe to retry.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "MetadataSyncFailed", "message": "Failed to synchronize metadata."}))]
    pub struct MetadataSyncFailed(ErrorBody);

    /// The record store failed, or the cloud kept throttling; retry (with the same
    /// `client_token` where the request has one).
    #[derive(ToResponse)]
    #[response(examples(
        ("MetadataSyncFailed" = (value = json!({"error": "MetadataSyncFailed", "message": "Failed to synchronize metadata."}))),
        ("Throttled" = (value = json!({
            "error": "CloudError",
            "message": "cloud call failed: throttled: RequestLimitExceeded: Request limit exceeded."
        }))),
    ))]
    pub struct RetryLater(ErrorBody);

    /// The backup id is not a valid identifier.
    #[derive(ToResponse)]
    #[response(example = json!({
        "error": "InvalidIdentifier",
        "message": "backup id: 'bk 3f9c' must be 1 to 128 letters, digits, '-', '_' or '.'"
    }))]
    pub struct InvalidBackupId(ErrorBody);

    /// No such backup point.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "NotFound", "message": "backup 'bk-3f9c2a7d41e84b0c9a15' does not exist"}))]
    pub struct BackupNotFound(ErrorBody);

    /// The restore id is not a valid identifier.
    #[derive(ToResponse)]
    #[response(example = json!({
        "error": "InvalidIdentifier",
        "message": "restore id: 'rs 8d21' must be 1 to 128 letters, digits, '-', '_' or '.'"
    }))]
    pub struct InvalidRestoreId(ErrorBody);

    /// No such restore.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "NotFound", "message": "restore 'rs-8d21f0c7b34a4e6f9102' does not exist"}))]
    pub struct RestoreNotFound(ErrorBody);

    /// The policy.
    #[derive(ToResponse)]
    #[response(examples(("policy" = (value = json!(examples::policy())))))]
    pub struct Policy(schema::Policy);

    /// The policy settings are invalid; nothing was written or changed.
    #[derive(ToResponse)]
    #[response(examples(
        ("PermanentRetention" = (summary = "never_expire is true", value = json!({
            "error": "PermanentRetention",
            "message": "The policy contains permanent retention rules and cannot be applied to instance backup."
        }))),
        ("NoDestinationRegion" = (summary = "replicate is true and no region is given or configured", value = json!({
            "error": "NoDestinationRegion",
            "message": "No destination region is specified."
        }))),
        ("InvalidInterval" = (value = json!({
            "error": "InvalidInterval",
            "message": "give exactly one of interval_hours or interval_days"
        }))),
        ("InvalidRetention" = (value = json!({
            "error": "InvalidRetention",
            "message": "retention_days is required (1 to 65536)"
        }))),
        ("InvalidName" = (value = json!({"error": "InvalidName", "message": "name: 1 to 128 characters"}))),
        ("InvalidRegion" = (value = json!({
            "error": "InvalidRegion",
            "message": "destination_region: 'us-east-1' is the region of the service instances"
        }))),
        ("MissingName" = (value = json!({
            "error": "InvalidRequest",
            "message": "request body: missing field `name`"
        }))),
        ("UnknownField" = (value = json!({
            "error": "InvalidRequest",
            "message": "request body: unknown field `schedule`, expected one of `name`, `interval_hours`, `interval_days`, `start_time`, `retention_days`, `never_expire`, `replicate`, `destination_region`, `destination_retention_days`, `targets`"
        }))),
        ("InvalidTarget" = (summary = "POST: a target that is no identifier", value = json!({
            "error": "InvalidIdentifier",
            "message": "targets: 'si demo' must be 1 to 128 letters, digits, '-', '_' or '.'"
        }))),
        ("Targets" = (summary = "PUT: targets given", value = json!({
            "error": "InvalidRequest",
            "message": "targets: change them with POST /policies/{id}/targets"
        }))),
        ("InvalidIdentifier" = (summary = "PUT: a policy id that is no identifier", value = json!({
            "error": "InvalidIdentifier",
            "message": "policy id: 'pl 5a0e' must be 1 to 128 letters, digits, '-', '_' or '.'"
        }))),
    ))]
    pub struct InvalidPolicy(ErrorBody);

    /// The policy id is not a valid identifier.
    #[derive(ToResponse)]
    #[response(example = json!({
        "error": "InvalidIdentifier",
        "message": "policy id: 'pl 5a0e' must be 1 to 128 letters, digits, '-', '_' or '.'"
    }))]
    pub struct InvalidPolicyId(ErrorBody);

    /// No such policy.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "NotFound", "message": "policy 'pl-5a0e7c91d2b34f68a0c4' does not exist"}))]
    pub struct PolicyNotFound(ErrorBody);

    /// The policy was changed by another request meanwhile; read it again and retry.
    #[derive(ToResponse)]
    #[response(examples(("ConcurrentModification" = (value = json!({
        "error": "ConcurrentModification",
        "message": "policy 'pl-5a0e7c91d2b34f68a0c4' was changed by another request; read it again and retry"
    })))))]
    pub struct PolicyConcurrentModification(ErrorBody);

    /// What a route on one policy (`/policies/{id}…`) answers besides a conflict.
    #[derive(IntoResponses)]
    // Never built, so its size does not matter.
    #[allow(clippy::large_enum_variant)]
    pub enum PolicyAnswers {
        #[response(status = 200)]
        Found(#[ref_response] Policy),
        #[response(status = 400)]
        InvalidPolicyId(#[ref_response] InvalidPolicyId),
        #[response(status = 404)]
        PolicyNotFound(#[ref_response] PolicyNotFound),
        #[response(status = 503)]
        MetadataSyncFailed(#[ref_response] MetadataSyncFailed),
    }
}
