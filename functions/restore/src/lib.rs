//! restore: `POST /backups/{backup_id}/restores` starts an in-place, clone or
//! disaster-recovery restore; poll-status carries it on.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use snapnest_core::model::RestoreRecord;
use snapnest_core::restore::RestoreRequest;
use snapnest_core::Snapnest;
use snapnest_lambda::api::{self, ApiError, BackupId, JsonBody, PathParams};

/// restore's routes, as [`api::ROUTES`] declares them.
pub fn router(app: Arc<Snapnest>) -> Router {
    let routes = Router::new().route("/backups/{backup_id}/restores", post(create_restore));
    api::router(routes, app)
}

/// Restore a backup point in place, as a clone, or in the replication region
///
/// `in_place` takes a safety backup first (unless `safety_backup: false`), stops the
/// instances, swaps restored volumes in at the same devices and restored databases in under
/// the same ids, and starts the instances again. `clone` creates new volumes and databases
/// next to the originals. `disaster_recovery` clones from the replicated snapshots in the
/// destination region. Answers at once with the record; poll `GET /restores/{restore_id}`.
/// A retried request with the same `client_token` answers the first request's record.
async fn create_restore(
    State(app): State<Arc<Snapnest>>,
    PathParams(BackupId(backup_id)): PathParams<BackupId>,
    JsonBody(body): JsonBody<RestoreRequest>,
) -> Result<(StatusCode, Json<RestoreRecord>), ApiError> {
    let record = app.create_restore(&backup_id, &body, chrono::Utc::now()).await?;
    Ok((StatusCode::ACCEPTED, Json(record)))
}
