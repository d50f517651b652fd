//! create-backup: `POST /service-instances/{id}/backups` starts a backup point. (Policies
//! start theirs from run-policies.)

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::model::BackupRecord;
use snapnest_core::Snapnest;
use snapnest_lambda::api::{self, ApiError, JsonBody, PathParams, ServiceInstanceId};

/// create-backup's routes, as [`api::ROUTES`] declares them.
pub fn router(app: Arc<Snapnest>) -> Router {
    let routes = Router::new().route("/service-instances/{id}/backups", post(create_backup));
    api::router(routes, app)
}

/// Start a backup point of a service instance
///
/// Discovers the instances, volumes and databases tagged with the service instance id,
/// writes the backup record (`Pending`) and issues the snapshots: one crash-consistent
/// group per EC2 instance where the instance allows it, one DB snapshot per database.
/// Answers at once with the record (usually `Running`); poll `GET /backups/{backup_id}`.
/// A retried request with the same `client_token` answers the first request's record.
/// One backup of a service instance runs at a time.
async fn create_backup(
    State(app): State<Arc<Snapnest>>,
    PathParams(ServiceInstanceId(id)): PathParams<ServiceInstanceId>,
    JsonBody(body): JsonBody<BackupRequest>,
) -> Result<(StatusCode, Json<BackupRecord>), ApiError> {
    let record = app.create_backup(&id, &body, BackupOrigin::manual(), chrono::Utc::now()).await?;
    Ok((StatusCode::ACCEPTED, Json(record)))
}
