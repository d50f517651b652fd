//! admin-api: the read and admin routes — describe and list backups, change retention,
//! describe restores, jobs and cancel, capacity, and policies.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::{Json, Router};
use serde::Deserialize;
use snapnest_core::jobs::{CancelRequest, Capacity, Job, JobKind};
use snapnest_core::model::{BackupRecord, RestoreRecord};
use snapnest_core::policy::{Policy, PolicyRequest, PolicyState, TargetsRequest};
use snapnest_core::retention::RetentionRequest;
use snapnest_core::status::JobStatus;
use snapnest_core::summary::{BackupListing, WithSummary};
use snapnest_core::{validate, Error, Snapnest};
use snapnest_lambda::api::{
    self, Acting, ApiError, BackupId, ErrorBody, JobId, JsonBody, Page, PageQuery, PathParams, PolicyId, QueryParams,
    RestoreId, Routes, ServiceInstanceId,
};
use snapnest_lambda::openapi::{examples, responses, schema};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// admin-api's routes and their description.
pub fn routes() -> Routes {
    OpenApiRouter::new()
        .routes(routes!(list_backups))
        .routes(routes!(get_backup))
        .routes(routes!(change_retention))
        .routes(routes!(get_restore))
        .routes(routes!(list_jobs))
        .routes(routes!(cancel_job))
        .routes(routes!(capacity))
        .routes(routes!(create_policy, list_policies))
        .routes(routes!(get_policy, update_policy, delete_policy))
        .routes(routes!(suspend_policy))
        .routes(routes!(resume_policy))
        .routes(routes!(change_targets))
}

/// What admin-api serves, over `app`.
pub fn router(app: Arc<Snapnest>) -> Router {
    api::router(routes(), app)
}

/// The filters of `GET /jobs`, read as text so that a bad one is refused with its own code;
/// an empty one filters nothing.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// Only jobs of this kind.
    #[param(value_type = Option<schema::JobKind>)]
    kind: Option<String>,
    /// Only jobs with this status (matched case-insensitively).
    #[param(value_type = Option<schema::JobStatus>)]
    status: Option<String>,
}

impl JobFilter {
    fn parse(&self) -> Result<(Option<JobKind>, Option<JobStatus>), Error> {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let kind = given(&self.kind).map(|k| k.parse::<JobKind>()).transpose()?;
        let status = given(&self.status)
            .map(|s| s.parse::<JobStatus>().map_err(|m| Error::bad_request("InvalidStatus", format!("status: {m}"))))
            .transpose()?;
        Ok((kind, status))
    }
}

/// List the backup points of a service instance, newest first
#[utoipa::path(
    get,
    path = "/service-instances/{id}/backups",
    operation_id = "listBackups",
    tag = "backups",
    params(ServiceInstanceId, PageQuery),
    responses(
        (
            status = 200,
            description = "A page of backup points, each as listed (its resources are in GET /backups/{backup_id}); empty for a service instance without backups.",
            body = schema::BackupPage,
            example = json!({
                "items": [examples::backup_listed()],
                "next_token": "1793498400000:bk-3f9c2a7d41e84b0c9a15"
            })
        ),
        (
            status = 400,
            description = "Invalid paging or service instance id.",
            body = ErrorBody,
            examples(
                ("InvalidLimit" = (value = json!({"error": "InvalidLimit", "message": "limit: '500' is not 1 to 100"}))),
                ("InvalidNextToken" = (value = json!({"error": "InvalidNextToken", "message": "next_token is not one this API returned"}))),
                ("InvalidIdentifier" = (value = json!({
                    "error": "InvalidIdentifier",
                    "message": "service instance id: 'si demo' must be 1 to 128 letters, digits, '-', '_' or '.'"
                }))),
            )
        ),
        (status = 503, response = responses::MetadataSyncFailed),
    )
)]
async fn list_backups(
    Acting(app): Acting,
    PathParams(ServiceInstanceId(id)): PathParams<ServiceInstanceId>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<BackupListing>>, ApiError> {
    let (limit, cursor) = page.page()?;
    let (records, next) = app.backups.list(&id, limit, cursor.as_ref()).await?;
    let now = app.clock.now();
    Ok(Json((records.iter().map(|r| BackupListing::of(r, now)).collect(), next).into()))
}

/// Describe a backup point
#[utoipa::path(
    get,
    path = "/backups/{backup_id}",
    operation_id = "getBackup",
    tag = "backups",
    params(BackupId),
    responses(
        (
            status = 200,
            description = "The backup record.",
            body = schema::BackupRecord,
            examples(
                ("succeeded" = (summary = "A finished point, copied to another region", value = json!(examples::backup_succeeded()))),
            )
        ),
        (status = 400, response = responses::InvalidBackupId),
        (status = 404, response = responses::BackupNotFound),
        (status = 503, response = responses::MetadataSyncFailed),
    )
)]
async fn get_backup(
    Acting(app): Acting,
    PathParams(BackupId(backup_id)): PathParams<BackupId>,
) -> Result<Json<WithSummary<BackupRecord>>, ApiError> {
    validate::identifier("backup id", &backup_id)?;
    Ok(Json(WithSummary::backup(app.backups.get(&backup_id).await?, app.clock.now())))
}

/// Extend a backup point's retention, or make it permanent
///
/// Exactly one of `extend_days`, `expires_at` or `never_expire: true`. Retention is never
/// shortened, and a point is kept at most 65,536 days after it started. The snapshots'
/// expiry tags follow the record.
#[utoipa::path(
    patch,
    path = "/backups/{backup_id}/retention",
    operation_id = "changeRetention",
    tag = "backups",
    params(BackupId),
    request_body(
        content = schema::RetentionRequest,
        examples(
            ("extend" = (value = json!({"extend_days": 30}))),
            ("date" = (value = json!({"expires_at": "2027-01-01T00:00:00Z"}))),
            ("permanent" = (value = json!({"never_expire": true}))),
        )
    ),
    responses(
        (
            status = 200,
            description = "The backup record with its new `expires_at`.",
            body = schema::BackupRecord,
            examples(
                ("extended" = (summary = "A finished point, copied to another region", value = json!(examples::backup_succeeded()))),
            )
        ),
        (
            status = 400,
            description = "Not exactly one valid retention change.",
            body = ErrorBody,
            examples(
                ("NotExactlyOne" = (value = json!({
                    "error": "InvalidRetention",
                    "message": "give exactly one of extend_days, expires_at or never_expire"
                }))),
                ("OutOfRange" = (value = json!({
                    "error": "InvalidRetention",
                    "message": "extend_days: 0 is out of range (1 to 65536 days)"
                }))),
                ("InPast" = (value = json!({"error": "InvalidRetention", "message": "expires_at must be in the future"}))),
                ("InvalidRequest" = (value = json!({
                    "error": "InvalidRequest",
                    "message": "request body: unknown field `days`, expected one of `extend_days`, `expires_at`, `never_expire`"
                }))),
                ("InvalidIdentifier" = (value = json!({
                    "error": "InvalidIdentifier",
                    "message": "backup id: 'bk 3f9c' must be 1 to 128 letters, digits, '-', '_' or '.'"
                }))),
            )
        ),
        (status = 404, response = responses::BackupNotFound),
        (
            status = 409,
            description = "The change would shorten the retention, the point has expired, or it changed meanwhile.",
            body = ErrorBody,
            examples(
                ("RetentionShortened" = (value = json!({
                    "error": "RetentionShortened",
                    "message": "expires_at 2026-11-03 02:00:00 UTC is before the promised 2026-11-08 02:00:00 UTC; retention cannot be shortened"
                }))),
                ("NeverExpires" = (value = json!({
                    "error": "RetentionShortened",
                    "message": "backup bk-3f9c2a7d41e84b0c9a15 never expires; a date would shorten its retention"
                }))),
                ("BackupExpired" = (value = json!({
                    "error": "BackupExpired",
                    "message": "backup bk-3f9c2a7d41e84b0c9a15 has expired; its snapshots are deleted"
                }))),
                ("BackupExpiring" = (value = json!({
                    "error": "BackupExpiring",
                    "message": "backup bk-3f9c2a7d41e84b0c9a15 is expiring: its snapshots have been being deleted since 2026-11-28 03:00:00 UTC"
                }))),
                ("ConcurrentModification" = (value = json!({
                    "error": "ConcurrentModification",
                    "message": "backup 'bk-3f9c2a7d41e84b0c9a15' was changed by another request; read it again and retry"
                }))),
            )
        ),
        (status = 503, response = responses::MetadataSyncFailed),
    )
)]
async fn change_retention(
    Acting(app): Acting,
    PathParams(BackupId(backup_id)): PathParams<BackupId>,
    JsonBody(body): JsonBody<RetentionRequest>,
) -> Result<Json<WithSummary<BackupRecord>>, ApiError> {
    Ok(Json(WithSummary::backup(app.retention.change(&backup_id, &body).await?, app.clock.now())))
}

/// Describe a restore
#[utoipa::path(
    get,
    path = "/restores/{restore_id}",
    operation_id = "getRestore",
    tag = "restores",
    params(RestoreId),
    responses(
        (
            status = 200,
            description = "The restore record.",
            body = schema::RestoreRecord,
            examples(
                ("finished" = (summary = "A finished in-place restore", value = json!(examples::restore_succeeded()))),
            )
        ),
        (status = 400, response = responses::InvalidRestoreId),
        (status = 404, response = responses::RestoreNotFound),
        (status = 503, response = responses::MetadataSyncFailed),
    )
)]
async fn get_restore(
    Acting(app): Acting,
    PathParams(RestoreId(restore_id)): PathParams<RestoreId>,
) -> Result<Json<WithSummary<RestoreRecord>>, ApiError> {
    Ok(Json(WithSummary::restore(app.restores.get(&restore_id).await?, app.clock.now())))
}

/// List jobs of every kind, newest first
///
/// A backup point is a backup job (`bk-…`) and, when it replicates, a replication job
/// (`rp-…`, same suffix); a restore is a restore job (`rs-…`); every expire-retention run
/// that found something due is an expiry job (`ex-…`).
#[utoipa::path(
    get,
    path = "/jobs",
    operation_id = "listJobs",
    tag = "jobs",
    params(PageQuery, JobFilter),
    responses(
        (
            status = 200,
            description = "A page of jobs.",
            body = schema::JobPage,
            example = json!({
                "items": [
                    {
                        "job_id": "rs-8d21f0c7b34a4e6f9102",
                        "kind": "restore",
                        "status": "Running",
                        "service_instance_id": "si-demo",
                        "backup_id": "bk-3f9c2a7d41e84b0c9a15",
                        "started_at": "2026-11-21T09:30:00Z",
                        "finished_at": null,
                        "region": "us-east-1",
                        "progress": {"done": 0, "total": 2}
                    },
                    {
                        "job_id": "ex-c41d9e2f7a8b4c30d516",
                        "kind": "expiry",
                        "status": "Succeeded",
                        "service_instance_id": null,
                        "backup_id": null,
                        "started_at": "2026-11-08T03:00:00Z",
                        "finished_at": "2026-11-08T03:00:05Z",
                        "region": null,
                        "progress": {"done": 1, "total": 1}
                    },
                    {
                        "job_id": "bk-3f9c2a7d41e84b0c9a15",
                        "kind": "backup",
                        "status": "Succeeded",
                        "service_instance_id": "si-demo",
                        "backup_id": "bk-3f9c2a7d41e84b0c9a15",
                        "started_at": "2026-11-01T02:00:00Z",
                        "finished_at": "2026-11-01T02:04:12Z",
                        "region": null,
                        "progress": {"done": 3, "total": 3}
                    },
                    {
                        "job_id": "rp-3f9c2a7d41e84b0c9a15",
                        "kind": "replication",
                        "status": "Succeeded",
                        "service_instance_id": "si-demo",
                        "backup_id": "bk-3f9c2a7d41e84b0c9a15",
                        "started_at": "2026-11-01T02:00:00Z",
                        "finished_at": null,
                        "region": "us-west-2",
                        "progress": {"done": 3, "total": 3}
                    }
                ],
                "next_token": null
            })
        ),
        (
            status = 400,
            description = "Invalid filter or paging.",
            body = ErrorBody,
            examples(
                ("InvalidKind" = (value = json!({
                    "error": "InvalidKind",
                    "message": "kind: 'snapshot' is not backup, restore, replication or expiry"
                }))),
                ("InvalidStatus" = (value = json!({"error": "InvalidStatus", "message": "status: unknown status 'Done'"}))),
                ("InvalidLimit" = (value = json!({"error": "InvalidLimit", "message": "limit: '0' is not 1 to 100"}))),
                ("InvalidNextToken" = (value = json!({"error": "InvalidNextToken", "message": "next_token is not one this API returned"}))),
            )
        ),
        (status = 503, response = responses::MetadataSyncFailed),
    )
)]
async fn list_jobs(
    Acting(app): Acting,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(filter): QueryParams<JobFilter>,
) -> Result<Json<Page<Job>>, ApiError> {
    let (limit, cursor) = page.page()?;
    let (kind, status) = filter.parse()?;
    Ok(Json(app.jobs.list(kind, status, limit, cursor.as_ref()).await?.into()))
}

/// Cancel a running backup, restore or replication
///
/// A backup stops issuing snapshots and, unless `keep_snapshots`, deletes the ones it made
/// (a snapshot something else uses is kept and released). A replication stops and deletes
/// its copies unless `keep_snapshots`. A restore stops; instances it stopped are started
/// again by the next polls. Expiry jobs cannot be cancelled.
#[utoipa::path(
    post,
    path = "/jobs/{job_id}/cancel",
    operation_id = "cancelJob",
    tag = "jobs",
    params(JobId),
    request_body(
        content = Option<schema::CancelRequest>,
        examples(
            ("delete" = (summary = "Delete what the job made (the default)", value = json!({}))),
            ("keep" = (value = json!({"keep_snapshots": true}))),
        )
    ),
    responses(
        (
            status = 202,
            description = "The job, cancelled.",
            body = schema::Job,
            example = json!({
                "job_id": "bk-3f9c2a7d41e84b0c9a15",
                "kind": "backup",
                "status": "Cancelled",
                "service_instance_id": "si-demo",
                "backup_id": "bk-3f9c2a7d41e84b0c9a15",
                "started_at": "2026-11-01T02:00:00Z",
                "finished_at": "2026-11-01T02:01:30Z",
                "region": null,
                "progress": {"done": 3, "total": 3}
            })
        ),
        (
            status = 400,
            description = "Invalid job id or body.",
            body = ErrorBody,
            examples(
                ("InvalidRequest" = (value = json!({
                    "error": "InvalidRequest",
                    "message": "request body: unknown field `keep`, expected `keep_snapshots`"
                }))),
                ("InvalidIdentifier" = (value = json!({
                    "error": "InvalidIdentifier",
                    "message": "job id: 'bk 3f9c' must be 1 to 128 letters, digits, '-', '_' or '.'"
                }))),
            )
        ),
        (
            status = 404,
            description = "No such job.",
            body = ErrorBody,
            examples(
                ("Job" = (value = json!({"error": "NotFound", "message": "job 'xy-123' does not exist"}))),
                ("Backup" = (value = json!({"error": "NotFound", "message": "backup 'bk-3f9c2a7d41e84b0c9a15' does not exist"}))),
                ("Replication" = (summary = "rp-… of a backup that does not replicate", value = json!({
                    "error": "NotFound",
                    "message": "replication job 'bk-3f9c2a7d41e84b0c9a15' does not exist"
                }))),
            )
        ),
        (
            status = 409,
            description = "The job is not running (or cannot be cancelled), or it changed meanwhile.",
            body = ErrorBody,
            examples(
                ("JobNotRunning" = (value = json!({
                    "error": "JobNotRunning",
                    "message": "job bk-3f9c2a7d41e84b0c9a15 is Succeeded and cannot be cancelled"
                }))),
                ("JobNotCancellable" = (value = json!({
                    "error": "JobNotCancellable",
                    "message": "expiry run ex-c41d9e2f7a8b4c30d516 is not cancellable"
                }))),
                ("ConcurrentModification" = (value = json!({
                    "error": "ConcurrentModification",
                    "message": "backup 'bk-3f9c2a7d41e84b0c9a15' was changed by another request; read it again and retry"
                }))),
            )
        ),
        (
            status = 502,
            description = "The cloud refused to delete a snapshot or copy. The job is already cancelled; poll-status finishes the clean-up of a backup.",
            body = ErrorBody,
            example = json!({
                "error": "CloudError",
                "message": "cloud call failed: UnauthorizedOperation: You are not authorized to perform this operation."
            })
        ),
        (status = 503, response = responses::RetryLater),
    )
)]
async fn cancel_job(
    Acting(app): Acting,
    PathParams(JobId(job_id)): PathParams<JobId>,
    JsonBody(body): JsonBody<CancelRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(app.jobs.cancel(&job_id, &body).await?)))
}

/// Snapshot storage of a service instance
///
/// Summed from the records on every read: the points that still hold snapshots
/// (`Succeeded` or `PartiallyFailed`, not expired) and their copies in other regions.
/// A service instance without backups has zeros.
#[utoipa::path(
    get,
    path = "/service-instances/{id}/capacity",
    operation_id = "getCapacity",
    tag = "capacity",
    params(ServiceInstanceId),
    responses(
        (
            status = 200,
            description = "The capacity.",
            body = schema::Capacity,
            example = json!({
                "service_instance_id": "si-demo",
                "snapshot_bytes": 274877906944_u64,
                "backup_points": 2,
                "replica_bytes": 137438953472_u64
            })
        ),
        (
            status = 400,
            description = "The service instance id is not a valid identifier.",
            body = ErrorBody,
            example = json!({
                "error": "InvalidIdentifier",
                "message": "service instance id: 'si demo' must be 1 to 128 letters, digits, '-', '_' or '.'"
            })
        ),
        (status = 503, response = responses::MetadataSyncFailed),
    )
)]
async fn capacity(
    Acting(app): Acting,
    PathParams(ServiceInstanceId(id)): PathParams<ServiceInstanceId>,
) -> Result<Json<Capacity>, ApiError> {
    Ok(Json(app.jobs.capacity(&id).await?))
}

/// Create a backup policy
///
/// A schedule (every `interval_hours` or `interval_days` from `start_time`), a retention,
/// and optionally replication to a destination region. `targets` attaches service
/// instances at once; a service instance belongs to at most one policy. If attaching a
/// target fails (409), nothing is created.
#[utoipa::path(
    post,
    path = "/policies",
    operation_id = "createPolicy",
    tag = "policies",
    request_body(
        content = schema::PolicyRequest,
        example = json!({
            "name": "nightly",
            "interval_days": 1,
            "start_time": "2026-11-01T02:00:00Z",
            "retention_days": 7,
            "destination_region": "us-west-2",
            "destination_retention_days": 30,
            "targets": ["si-demo"]
        })
    ),
    responses(
        (
            status = 201,
            description = "The policy.",
            body = schema::Policy,
            example = json!({
                "policy_id": "pl-5a0e7c91d2b34f68a0c4",
                "name": "nightly",
                "state": "active",
                "interval_hours": null,
                "interval_days": 1,
                "start_time": "2026-11-01T02:00:00Z",
                "retention_days": 7,
                "destination_region": "us-west-2",
                "destination_retention_days": 30,
                "targets": ["si-demo"], "volume_ids": [],
                "next_run_at": "2026-11-01T02:00:00Z",
                "last_run": null,
                "created_at": "2026-10-31T17:12:03Z",
                "updated_at": "2026-10-31T17:12:03Z",
                "owners": ["arn:aws:sts::123456789012:assumed-role/ops/alice"],
                "changes": [
                    {"what": "create", "by": "arn:aws:sts::123456789012:assumed-role/ops/alice", "at": "2026-10-31T17:12:03Z"},
                    {"what": "attach si-demo", "by": "arn:aws:sts::123456789012:assumed-role/ops/alice", "at": "2026-10-31T17:12:03Z"}
                ],
                "version": 2
            })
        ),
        (status = 400, response = responses::InvalidPolicy),
        (
            status = 409,
            description = "A target is already protected by another policy.",
            body = ErrorBody,
            example = json!({
                "error": "PolicyAlreadyAttached",
                "message": "service instance si-demo is already protected by policy pl-0b7d4e2a9c1f48e6b3d2"
            })
        ),
        (status = 503, response = responses::MetadataSyncFailed),
    )
)]
async fn create_policy(
    Acting(app): Acting,
    JsonBody(body): JsonBody<PolicyRequest>,
) -> Result<(StatusCode, Json<Policy>), ApiError> {
    Ok((StatusCode::CREATED, Json(app.policies.create(&body).await?)))
}

/// List backup policies, newest first
#[utoipa::path(
    get,
    path = "/policies",
    operation_id = "listPolicies",
    tag = "policies",
    params(PageQuery),
    responses(
        (
            status = 200,
            description = "A page of policies.",
            body = schema::PolicyPage,
            example = json!({
                "items": [
                    {
                        "policy_id": "pl-5a0e7c91d2b34f68a0c4",
                        "name": "nightly",
                        "state": "suspended",
                        "interval_hours": null,
                        "interval_days": 1,
                        "start_time": "2026-11-01T02:00:00Z",
                        "retention_days": 7,
                        "destination_region": null,
                        "destination_retention_days": null,
                        "targets": ["si-demo"], "volume_ids": [],
                        "next_run_at": "2026-11-21T02:00:00Z",
                        "last_run": {
                            "slot": "2026-11-20T02:00:00Z",
                            "ran_at": "2026-11-20T02:00:38Z",
                            "status": "Skipped",
                            "cause": "The backup plan has been suspended.",
                            "skipped": "The backup plan has been suspended.",
                            "targets": []
                        },
                        "created_at": "2026-10-31T17:12:03Z",
                        "updated_at": "2026-11-19T08:45:00Z",
                        "owners": ["arn:aws:sts::123456789012:assumed-role/ops/alice"],
                        "changes": [
                            {"what": "create", "by": "arn:aws:sts::123456789012:assumed-role/ops/alice", "at": "2026-10-31T17:12:03Z"},
                            {"what": "suspend", "by": "arn:aws:sts::123456789012:assumed-role/ops/alice", "at": "2026-11-19T08:45:00Z"}
                        ],
                        "version": 22
                    }
                ],
                "next_token": null
            })
        ),
        (
            status = 400,
            description = "Invalid paging.",
            body = ErrorBody,
            examples(
                ("InvalidLimit" = (value = json!({"error": "InvalidLimit", "message": "limit: 'ten' is not 1 to 100"}))),
                ("InvalidNextToken" = (value = json!({"error": "InvalidNextToken", "message": "next_token is not one this API returned"}))),
            )
        ),
        (status = 503, response = responses::MetadataSyncFailed),
    )
)]
async fn list_policies(
    Acting(app): Acting,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<Policy>>, ApiError> {
    let (limit, cursor) = page.page()?;
    Ok(Json(app.policies.list(limit, cursor.as_ref()).await?.into()))
}

/// Describe a backup policy
#[utoipa::path(
    get,
    path = "/policies/{id}",
    operation_id = "getPolicy",
    tag = "policies",
    params(PolicyId),
    responses(responses::PolicyAnswers)
)]
async fn get_policy(
    Acting(app): Acting,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.policies.get(&policy_id).await?))
}

/// Replace a backup policy's settings
///
/// Same body as `POST /policies` without `targets` (change those with
/// `POST /policies/{id}/targets`); the targets and the state stay. The next run is the
/// first slot of the new schedule after now.
#[utoipa::path(
    put,
    path = "/policies/{id}",
    operation_id = "updatePolicy",
    tag = "policies",
    params(PolicyId),
    request_body(
        content = schema::PolicyRequest,
        example = json!({
            "name": "every-six-hours",
            "interval_hours": 6,
            "start_time": "2026-11-01T00:00:00Z",
            "retention_days": 3
        })
    ),
    responses(
        (status = 200, response = responses::Policy),
        (status = 400, response = responses::InvalidPolicy),
        (status = 404, response = responses::PolicyNotFound),
        (status = 409, response = responses::PolicyConcurrentModification),
        (status = 503, response = responses::MetadataSyncFailed),
    )
)]
async fn update_policy(
    Acting(app): Acting,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
    JsonBody(body): JsonBody<PolicyRequest>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.policies.update(&policy_id, &body).await?))
}

/// Delete a backup policy
///
/// Frees its service instances for another policy; their backup points stay.
#[utoipa::path(
    delete,
    path = "/policies/{id}",
    operation_id = "deletePolicy",
    tag = "policies",
    params(PolicyId),
    responses(
        responses::PolicyAnswers,
        (status = 409, response = responses::PolicyConcurrentModification),
    )
)]
async fn delete_policy(
    Acting(app): Acting,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.policies.delete(&policy_id).await?))
}

/// Suspend a backup policy
///
/// A suspended policy takes no backups; each slot it skips is reported in `last_run`.
#[utoipa::path(
    post,
    path = "/policies/{id}/suspend",
    operation_id = "suspendPolicy",
    tag = "policies",
    params(PolicyId),
    responses(
        responses::PolicyAnswers,
        (status = 409, response = responses::PolicyConcurrentModification),
    )
)]
async fn suspend_policy(
    Acting(app): Acting,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.policies.set_state(&policy_id, PolicyState::Suspended).await?))
}

/// Resume a suspended backup policy
///
/// Runs again from the next slot after now; slots missed while suspended are not made up.
#[utoipa::path(
    post,
    path = "/policies/{id}/resume",
    operation_id = "resumePolicy",
    tag = "policies",
    params(PolicyId),
    responses(
        responses::PolicyAnswers,
        (status = 409, response = responses::PolicyConcurrentModification),
    )
)]
async fn resume_policy(
    Acting(app): Acting,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.policies.set_state(&policy_id, PolicyState::Active).await?))
}

/// Attach service instances to a policy, or detach them
#[utoipa::path(
    post,
    path = "/policies/{id}/targets",
    operation_id = "changePolicyTargets",
    tag = "policies",
    params(PolicyId),
    request_body(
        content = schema::TargetsRequest,
        example = json!({"attach": ["si-demo", "si-orders"], "detach": ["si-legacy"]})
    ),
    responses(
        (status = 200, response = responses::Policy),
        (
            status = 400,
            description = "Nothing to attach or detach, or an invalid id or body.",
            body = ErrorBody,
            examples(
                ("Empty" = (value = json!({"error": "InvalidRequest", "message": "give service instances to attach or detach"}))),
                ("UnknownField" = (value = json!({
                    "error": "InvalidRequest",
                    "message": "request body: unknown field `add`, expected `attach` or `detach`"
                }))),
                ("InvalidIdentifier" = (value = json!({
                    "error": "InvalidIdentifier",
                    "message": "service instance id: 'si demo' must be 1 to 128 letters, digits, '-', '_' or '.'"
                }))),
            )
        ),
        (status = 404, response = responses::PolicyNotFound),
        (
            status = 409,
            description = "A service instance is already protected by another policy, or the policy changed meanwhile.",
            body = ErrorBody,
            examples(
                ("PolicyAlreadyAttached" = (value = json!({
                    "error": "PolicyAlreadyAttached",
                    "message": "service instance si-orders is already protected by policy pl-0b7d4e2a9c1f48e6b3d2"
                }))),
                ("ConcurrentModification" = (value = json!({
                    "error": "ConcurrentModification",
                    "message": "policy 'pl-5a0e7c91d2b34f68a0c4' was changed by another request; read it again and retry"
                }))),
            )
        ),
        (status = 503, response = responses::MetadataSyncFailed),
    )
)]
async fn change_targets(
    Acting(app): Acting,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
    JsonBody(body): JsonBody<TargetsRequest>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.policies.change_targets(&policy_id, &body).await?))
}
