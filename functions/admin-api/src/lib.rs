//! admin-api: the read and admin routes — describe and list backups, change retention,
//! describe restores, jobs and cancel, capacity, and policies.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use snapnest_core::jobs::{CancelRequest, Capacity, Job, JobKind};
use snapnest_core::model::{BackupRecord, RestoreRecord};
use snapnest_core::policy::{Policy, PolicyRequest, PolicyState, TargetsRequest};
use snapnest_core::retention::RetentionRequest;
use snapnest_core::status::JobStatus;
use snapnest_core::{validate, Error, Snapnest};
use snapnest_lambda::api::{
    self, ApiError, BackupId, JobId, JsonBody, Page, PageQuery, PathParams, PolicyId, QueryParams, RestoreId,
    ServiceInstanceId,
};

/// admin-api's routes, as [`api::ROUTES`] declares them.
pub fn router(app: Arc<Snapnest>) -> Router {
    let routes = Router::new()
        .route("/service-instances/{id}/backups", get(list_backups))
        .route("/backups/{backup_id}", get(get_backup))
        .route("/backups/{backup_id}/retention", patch(change_retention))
        .route("/restores/{restore_id}", get(get_restore))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{job_id}/cancel", post(cancel_job))
        .route("/service-instances/{id}/capacity", get(capacity))
        .route("/policies", post(create_policy).get(list_policies))
        .route("/policies/{id}", get(get_policy).put(update_policy).delete(delete_policy))
        .route("/policies/{id}/suspend", post(suspend_policy))
        .route("/policies/{id}/resume", post(resume_policy))
        .route("/policies/{id}/targets", post(change_targets));
    api::router(routes, app)
}

/// The filters of `GET /jobs`, read as text so that a bad one is refused with its own code;
/// an empty one filters nothing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobFilter {
    /// Only jobs of this kind.
    kind: Option<String>,
    /// Only jobs with this status (matched case-insensitively).
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
async fn list_backups(
    State(app): State<Arc<Snapnest>>,
    PathParams(ServiceInstanceId(id)): PathParams<ServiceInstanceId>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<BackupRecord>>, ApiError> {
    let (limit, cursor) = page.page()?;
    Ok(Json(app.list_backups(&id, limit, cursor).await?.into()))
}

/// Describe a backup point
async fn get_backup(
    State(app): State<Arc<Snapnest>>,
    PathParams(BackupId(backup_id)): PathParams<BackupId>,
) -> Result<Json<BackupRecord>, ApiError> {
    validate::identifier("backup id", &backup_id)?;
    Ok(Json(app.load::<BackupRecord>(&backup_id).await?))
}

/// Extend a backup point's retention, or make it permanent
///
/// Exactly one of `extend_days`, `expires_at` or `never_expire: true`. Retention is never
/// shortened, and a point is kept at most 65,536 days after it started. The snapshots'
/// expiry tags follow the record.
async fn change_retention(
    State(app): State<Arc<Snapnest>>,
    PathParams(BackupId(backup_id)): PathParams<BackupId>,
    JsonBody(body): JsonBody<RetentionRequest>,
) -> Result<Json<BackupRecord>, ApiError> {
    Ok(Json(app.change_retention(&backup_id, &body, Utc::now()).await?))
}

/// Describe a restore
async fn get_restore(
    State(app): State<Arc<Snapnest>>,
    PathParams(RestoreId(restore_id)): PathParams<RestoreId>,
) -> Result<Json<RestoreRecord>, ApiError> {
    Ok(Json(app.get_restore(&restore_id).await?))
}

/// List jobs of every kind, newest first
///
/// A backup point is a backup job (`bk-…`) and, when it replicates, a replication job
/// (`rp-…`, same suffix); a restore is a restore job (`rs-…`); every expire-retention run
/// that found something due is an expiry job (`ex-…`).
async fn list_jobs(
    State(app): State<Arc<Snapnest>>,
    QueryParams(page): QueryParams<PageQuery>,
    QueryParams(filter): QueryParams<JobFilter>,
) -> Result<Json<Page<Job>>, ApiError> {
    let (limit, cursor) = page.page()?;
    let (kind, status) = filter.parse()?;
    Ok(Json(app.list_jobs(kind, status, limit, cursor).await?.into()))
}

/// Cancel a running backup, restore or replication
///
/// A backup stops issuing snapshots and, unless `keep_snapshots`, deletes the ones it made
/// (a snapshot something else uses is kept and released). A replication stops and deletes
/// its copies unless `keep_snapshots`. A restore stops; instances it stopped are started
/// again by the next polls. Expiry jobs cannot be cancelled.
async fn cancel_job(
    State(app): State<Arc<Snapnest>>,
    PathParams(JobId(job_id)): PathParams<JobId>,
    JsonBody(body): JsonBody<CancelRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(app.cancel_job(&job_id, &body, Utc::now()).await?)))
}

/// Snapshot storage of a service instance
///
/// Summed from the records on every read: the points that still hold snapshots
/// (`Succeeded` or `PartiallyFailed`, not expired) and their copies in other regions.
/// A service instance without backups has zeros.
async fn capacity(
    State(app): State<Arc<Snapnest>>,
    PathParams(ServiceInstanceId(id)): PathParams<ServiceInstanceId>,
) -> Result<Json<Capacity>, ApiError> {
    Ok(Json(app.capacity(&id).await?))
}

/// Create a backup policy
///
/// A schedule (every `interval_hours` or `interval_days` from `start_time`), a retention,
/// and optionally replication to a destination region. `targets` attaches service
/// instances at once; a service instance belongs to at most one policy. If attaching a
/// target fails (409), nothing is created.
async fn create_policy(
    State(app): State<Arc<Snapnest>>,
    JsonBody(body): JsonBody<PolicyRequest>,
) -> Result<(StatusCode, Json<Policy>), ApiError> {
    Ok((StatusCode::CREATED, Json(app.create_policy(&body, Utc::now()).await?)))
}

/// List backup policies, newest first
async fn list_policies(
    State(app): State<Arc<Snapnest>>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<Policy>>, ApiError> {
    let (limit, cursor) = page.page()?;
    Ok(Json(app.list_policies(limit, cursor).await?.into()))
}

/// Describe a backup policy
async fn get_policy(
    State(app): State<Arc<Snapnest>>,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.get_policy(&policy_id).await?))
}

/// Replace a backup policy's settings
///
/// Same body as `POST /policies` without `targets` (change those with
/// `POST /policies/{id}/targets`); the targets and the state stay. The next run is the
/// first slot of the new schedule after now.
async fn update_policy(
    State(app): State<Arc<Snapnest>>,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
    JsonBody(body): JsonBody<PolicyRequest>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.update_policy(&policy_id, &body, Utc::now()).await?))
}

/// Delete a backup policy
///
/// Frees its service instances for another policy; their backup points stay.
async fn delete_policy(
    State(app): State<Arc<Snapnest>>,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.delete_policy(&policy_id).await?))
}

/// Suspend a backup policy
///
/// A suspended policy takes no backups; each slot it skips is reported in `last_run`.
async fn suspend_policy(
    State(app): State<Arc<Snapnest>>,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.set_policy_state(&policy_id, PolicyState::Suspended, Utc::now()).await?))
}

/// Resume a suspended backup policy
///
/// Runs again from the next slot after now; slots missed while suspended are not made up.
async fn resume_policy(
    State(app): State<Arc<Snapnest>>,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.set_policy_state(&policy_id, PolicyState::Active, Utc::now()).await?))
}

/// Attach service instances to a policy, or detach them
async fn change_targets(
    State(app): State<Arc<Snapnest>>,
    PathParams(PolicyId(policy_id)): PathParams<PolicyId>,
    JsonBody(body): JsonBody<TargetsRequest>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(app.change_targets(&policy_id, &body, Utc::now()).await?))
}
