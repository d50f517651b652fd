//! restore: `POST /backups/{backup_id}/restores` plans (dry run) or starts an in-place,
//! clone or disaster-recovery restore, and `POST /restores/{restore_id}/rollback` puts
//! back what a finished in-place restore replaced; poll-status carries both on.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use snapnest_core::model::RestoreRecord;
use snapnest_core::restore::{RestoreRequest, Started};
use snapnest_core::summary::WithSummary;
use snapnest_core::Snapnest;
use snapnest_lambda::api::{self, Acting, ApiError, BackupId, ErrorBody, JsonBody, PathParams, RestoreId, Routes};
use snapnest_lambda::openapi::{examples, responses, schema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// restore's routes and their description.
pub fn routes() -> Routes {
    OpenApiRouter::new().routes(routes!(create_restore)).routes(routes!(rollback_restore))
}

/// What restore serves, over `app`.
pub fn router(app: Arc<Snapnest>) -> Router {
    api::router(routes(), app)
}

/// Restore a backup point in place, as a clone, or in the replication region
///
/// `in_place` takes a safety backup first (unless `safety_backup: false`), stops the
/// instances, swaps restored volumes in at the same devices and restored databases in under
/// the same ids, and starts the instances again. `clone` creates new volumes and databases
/// next to the originals. `disaster_recovery` clones from the replicated snapshots in the
/// destination region. Answers at once with the record; poll `GET /restores/{restore_id}`.
/// A retried request with the same `client_token` answers the first request's record.
///
/// In place, the restore swaps whatever is at each device now and, once it stopped the
/// instances, finishes or rolls back: a resource that fails for good, a phase past its
/// deadline or a cancel puts everything back (`on_failure: "keep"` puts back only what
/// failed) and the record ends `RolledBack`. What it replaced is kept, tagged
/// `snapnest:replaced-by`, until `kept_until`. `"dry_run": true` answers the plan (200)
/// and changes nothing.
#[utoipa::path(
    post,
    path = "/backups/{backup_id}/restores",
    operation_id = "createRestore",
    tag = "restores",
    params(BackupId),
    request_body(
        content = schema::RestoreRequest,
        examples(
            ("in_place" = (value = json!({"mode": "in_place", "client_token": "restore-2026-11-21"}))),
            ("clone" = (value = json!({"mode": "clone"}))),
            ("disaster_recovery" = (value = json!({"mode": "disaster_recovery", "region": "us-west-2"}))),
            ("dry_run" = (value = json!({"mode": "in_place", "dry_run": true}))),
            ("one_disk" = (value = json!({"mode": "in_place", "resource_ids": ["vol-0a1b2c3d4e5f60001"]}))),
        )
    ),
    responses(
        (
            status = 200,
            description = "A dry run: what the restore would do now. Nothing was changed.",
            body = schema::RestorePlan,
            examples(
                ("plan" = (summary = "The plan of an in-place restore", value = json!(examples::restore_plan()))),
            )
        ),
        (
            status = 202,
            description = "The restore record, as started.",
            body = schema::RestoreRecord,
            examples(
                ("started" = (summary = "An in-place restore taking its safety backup", value = json!(examples::restore_started()))),
            )
        ),
        (
            status = 400,
            description = "Invalid request; nothing was started.",
            body = ErrorBody,
            examples(
                ("InvalidRegion" = (value = json!({
                    "error": "InvalidRegion",
                    "message": "region: only a disaster_recovery restore can target another region than us-east-1"
                }))),
                ("NotReplicatedThere" = (value = json!({
                    "error": "InvalidRegion",
                    "message": "region: backup bk-3f9c2a7d41e84b0c9a15 is replicated to us-west-2, not eu-west-1"
                }))),
                ("MissingMode" = (value = json!({
                    "error": "InvalidRequest",
                    "message": "request body: missing field `mode`"
                }))),
                ("UnknownMode" = (value = json!({
                    "error": "InvalidRequest",
                    "message": "request body: mode: unknown variant `snapshot`, expected one of `in_place`, `clone`, `disaster_recovery`"
                }))),
                ("InvalidResourceId" = (value = json!({
                    "error": "InvalidResourceId",
                    "message": "resource_ids: vol-0f0f0f0f0f0f0f0f0 is not in backup bk-3f9c2a7d41e84b0c9a15"
                }))),
                ("InvalidIdentifier" = (value = json!({
                    "error": "InvalidIdentifier",
                    "message": "client_token: 'has space' must be 1 to 128 letters, digits, '-', '_' or '.'"
                }))),
                ("MalformedJson" = (value = json!({
                    "error": "MalformedJson",
                    "message": "request body: not valid JSON: EOF while parsing an object (at character 17)"
                }))),
            )
        ),
        (status = 404, response = responses::BackupNotFound),
        (
            status = 409,
            description = "The point cannot be restored now.",
            body = ErrorBody,
            examples(
                ("InstanceReleased" = (summary = "In place, an instance of the point was terminated", value = json!({
                    "error": "InstanceReleased",
                    "message": "This instance has been released. (i-0a1b2c3d4e5f60718)"
                }))),
                ("BackupIncomplete" = (value = json!({
                    "error": "BackupIncomplete",
                    "message": "backup bk-3f9c2a7d41e84b0c9a15 is PartiallyFailed: it has no snapshot of vol-0c1d2e3f4a5b6c7d8; restore it in place with \"allow_partial\": true to leave those as they are now"
                }))),
                ("BackupNotRestorable" = (value = json!({
                    "error": "BackupNotRestorable",
                    "message": "backup bk-3f9c2a7d41e84b0c9a15 is Running; only a Succeeded or PartiallyFailed point can be restored"
                }))),
                ("BackupExpiring" = (value = json!({
                    "error": "BackupExpiring",
                    "message": "backup bk-3f9c2a7d41e84b0c9a15 is expiring: its snapshots have been being deleted since 2026-11-28 03:00:00 UTC"
                }))),
                ("BackupDamaged" = (value = json!({
                    "error": "BackupDamaged",
                    "message": "backup bk-3f9c2a7d41e84b0c9a15 is damaged: a snapshot of it was deleted outside snapnest"
                }))),
                ("NotReplicated" = (value = json!({
                    "error": "NotReplicated",
                    "message": "backup bk-3f9c2a7d41e84b0c9a15 has no completed copy in another region"
                }))),
                ("RestoreAlreadyRunning" = (value = json!({
                    "error": "RestoreAlreadyRunning",
                    "message": "restore rs-8d21f0c7b34a4e6f9102 of service instance si-demo is still running"
                }))),
                ("ConcurrentModification" = (value = json!({
                    "error": "ConcurrentModification",
                    "message": "restore 'rs-8d21f0c7b34a4e6f9102' was changed by another request; read it again and retry"
                }))),
            )
        ),
        (
            status = 502,
            description = "The cloud refused a call the restore's first steps depended on.",
            body = ErrorBody,
            example = json!({
                "error": "CloudError",
                "message": "cloud call failed: UnauthorizedOperation: You are not authorized to perform this operation."
            })
        ),
        (status = 503, response = responses::RetryLater),
    )
)]
async fn create_restore(
    Acting(app): Acting,
    PathParams(BackupId(backup_id)): PathParams<BackupId>,
    JsonBody(body): JsonBody<RestoreRequest>,
) -> Result<Response, ApiError> {
    Ok(match app.restores.create(&backup_id, &body).await? {
        Started::Plan(plan) => (StatusCode::OK, Json(plan)).into_response(),
        Started::Restore(record) => {
            (StatusCode::ACCEPTED, Json(WithSummary::restore(*record, app.clock.now()))).into_response()
        }
    })
}

/// Roll back a finished in-place restore
///
/// While what the restore replaced is kept (until its `kept_until`), stops the instances,
/// re-attaches the replaced volumes at their devices, renames the replaced databases back to
/// their ids, deletes what the restore created and starts the instances again. Answers at
/// once with the record (`RollingBack`); it ends `RolledBack`.
#[utoipa::path(
    post,
    path = "/restores/{restore_id}/rollback",
    operation_id = "rollbackRestore",
    tag = "restores",
    params(RestoreId),
    responses(
        (
            status = 202,
            description = "The restore record, rolling back.",
            body = schema::RestoreRecord,
            examples(
                ("rolling_back" = (summary = "Stopping the instances to swap the originals back", value = json!(examples::restore_rolling_back()))),
            )
        ),
        (status = 400, response = responses::InvalidRestoreId),
        (status = 404, response = responses::RestoreNotFound),
        (
            status = 409,
            description = "The restore cannot be rolled back (now).",
            body = ErrorBody,
            examples(
                ("RollbackNotPossible" = (value = json!({
                    "error": "RollbackNotPossible",
                    "message": "restore rs-8d21f0c7b34a4e6f9102 cannot be rolled back: what it replaced is no longer kept"
                }))),
                ("RestoreAlreadyRunning" = (value = json!({
                    "error": "RestoreAlreadyRunning",
                    "message": "restore rs-0c9e1d2f3a4b5c6d7e8f of service instance si-demo is running"
                }))),
            )
        ),
        (status = 503, response = responses::RetryLater),
    )
)]
async fn rollback_restore(
    Acting(app): Acting,
    PathParams(RestoreId(restore_id)): PathParams<RestoreId>,
) -> Result<(StatusCode, Json<WithSummary<RestoreRecord>>), ApiError> {
    let record = app.restores.rollback(&restore_id).await?;
    Ok((StatusCode::ACCEPTED, Json(WithSummary::restore(record, app.clock.now()))))
}
