//! create-backup: `POST /service-instances/{id}/backups` starts a backup point. (Policies
//! start theirs from run-policies.)

use std::sync::Arc;

use axum::http::StatusCode;
use axum::{Json, Router};
use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::model::BackupRecord;
use snapnest_core::summary::WithSummary;
use snapnest_core::Snapnest;
use snapnest_lambda::api::{self, Acting, ApiError, ErrorBody, JsonBody, PathParams, Routes, ServiceInstanceId};
use snapnest_lambda::openapi::{examples, responses, schema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// create-backup's routes and their description.
pub fn routes() -> Routes {
    OpenApiRouter::new().routes(routes!(create_backup))
}

/// What create-backup serves, over `app`.
pub fn router(app: Arc<Snapnest>) -> Router {
    api::router(routes(), app)
}

/// Start a backup point of a service instance
///
/// Discovers the instances, volumes and databases tagged with the service instance id,
/// writes the backup record (`Pending`) and answers at once with it; start-backup then
/// issues the snapshots, many at once: one crash-consistent group per EC2 instance where
/// the instance allows it, one DB snapshot per database. Follow it with
/// `GET /backups/{backup_id}` (`Running` once the snapshots are issued).
/// A retried request with the same `client_token` answers the first request's record.
/// One backup of a service instance runs at a time.
#[utoipa::path(
    post,
    path = "/service-instances/{id}/backups",
    operation_id = "createBackup",
    tag = "backups",
    params(ServiceInstanceId),
    request_body(
        content = Option<schema::BackupRequest>,
        examples(
            ("simple" = (summary = "Every resource, kept 7 days", value = json!({"retention_days": 7, "client_token": "first-try"}))),
            ("replicated" = (summary = "One instance, copied to another region", value = json!({
                "client_token": "nightly-2026-11-01",
                "instance_ids": ["i-0a1b2c3d4e5f60718"],
                "retention_days": 7,
                "destination_region": "us-west-2",
                "destination_retention_days": 30
            }))),
        )
    ),
    responses(
        (
            status = 202,
            description = "The backup record, as written: its snapshots are issued right after.",
            body = schema::BackupRecord,
            examples(
                ("started" = (summary = "A manual backup of one instance and the database, its snapshots about to be issued", value = json!(examples::backup_started()))),
            )
        ),
        (
            status = 400,
            description = "Invalid request; nothing was started.",
            body = ErrorBody,
            examples(
                ("TooManyInstances" = (value = json!({
                    "error": "TooManyInstances",
                    "message": "instance_ids: 100 instances given; at most 99 can be backed up in one request"
                }))),
                ("NoDestinationRegion" = (summary = "destination_retention_days without destination_region", value = json!({"error": "NoDestinationRegion", "message": "No destination region is specified."}))),
                ("InvalidRetention" = (value = json!({
                    "error": "InvalidRetention",
                    "message": "retention_days and never_expire cannot be given together"
                }))),
                ("InvalidRegion" = (value = json!({
                    "error": "InvalidRegion",
                    "message": "destination_region: 'us-east-1' is the region of the service instance itself"
                }))),
                ("InvalidIdentifier" = (value = json!({
                    "error": "InvalidIdentifier",
                    "message": "instance_ids: 'vol-0a1b2c3d4e5f60001' is not a i-… id"
                }))),
                ("InvalidRequest" = (value = json!({
                    "error": "InvalidRequest",
                    "message": "request body: unknown field `retention`, expected one of `client_token`, `instance_ids`, `volume_ids`, `retention_days`, `never_expire`, `destination_region`, `destination_retention_days`"
                }))),
                ("MalformedJson" = (value = json!({
                    "error": "MalformedJson",
                    "message": "request body: not valid JSON: EOF while parsing an object (at character 20)"
                }))),
            )
        ),
        (
            status = 404,
            description = "Nothing carries the service instance's tag, or a selected instance or volume is not part of it.",
            body = ErrorBody,
            examples(
                ("ServiceInstance" = (value = json!({
                    "error": "NotFound",
                    "message": "service instance 'si-unknown (no instance, volume or database carries its tag)' does not exist"
                }))),
                ("Instance" = (value = json!({
                    "error": "NotFound",
                    "message": "instance 'i-0123456789abcdef0 (not in service instance si-demo)' does not exist"
                }))),
            )
        ),
        (
            status = 409,
            description = "A backup of this service instance is still running.",
            body = ErrorBody,
            example = json!({
                "error": "BackupAlreadyRunning",
                "message": "backup bk-3f9c2a7d41e84b0c9a15 of service instance si-demo is still running; wait for it to finish"
            })
        ),
        (
            status = 502,
            description = "The cloud refused the discovery of the service instance's resources.",
            body = ErrorBody,
            example = json!({
                "error": "CloudError",
                "message": "cloud call failed: UnauthorizedOperation: You are not authorized to perform this operation."
            })
        ),
        (status = 503, response = responses::RetryLater),
    )
)]
async fn create_backup(
    Acting(app): Acting,
    PathParams(ServiceInstanceId(id)): PathParams<ServiceInstanceId>,
    JsonBody(body): JsonBody<BackupRequest>,
) -> Result<(StatusCode, Json<WithSummary<BackupRecord>>), ApiError> {
    let record = app.backups.create(&id, &body, BackupOrigin::manual()).await?;
    Ok((StatusCode::ACCEPTED, Json(WithSummary::backup(record, app.clock.now()))))
}
