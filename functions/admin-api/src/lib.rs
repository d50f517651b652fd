//! admin-api: the read and admin routes — describe and list backups, change retention,
//! describe restores, jobs and cancel, capacity, and policies.

use std::sync::Arc;

use serde_json::{json, Value};
use snapnest_core::jobs::{CancelRequest, JobKind};
use snapnest_core::model::BackupRecord;
use snapnest_core::policy::{PolicyRequest, PolicyState, TargetsRequest};
use snapnest_core::retention::RetentionRequest;
use snapnest_core::status::JobStatus;
use snapnest_core::{validate, Error, Snapnest};
use snapnest_lambda::api::{self, HttpRequest, Route};
use snapnest_lambda::runtime::{HandlerError, Invocation};

pub async fn handle(app: Arc<Snapnest>, event: Value) -> Result<Value, HandlerError> {
    let Invocation::Http(request) = Invocation::classify(event)? else {
        return Err(Error::bad_request("UnexpectedEvent", "admin-api is called over HTTP only").into());
    };
    let route = request.route();
    let status = match &route {
        Ok(Route::CreatePolicy) => 201,
        Ok(Route::CancelJob { .. }) => 202,
        _ => 200,
    };
    Ok(json!(api::respond(status, serve(&app, &request, route).await)))
}

async fn serve(app: &Snapnest, request: &HttpRequest, route: Result<Route, Error>) -> Result<Value, Error> {
    let now = chrono::Utc::now();
    match route? {
        Route::GetBackup { backup_id } => {
            validate::identifier("backup id", &backup_id)?;
            Ok(json!(app.load::<BackupRecord>(&backup_id).await?))
        }
        Route::ListBackups { service_instance_id } => {
            let (limit, cursor) = request.page()?;
            let (items, next) = app.list_backups(&service_instance_id, limit, cursor.as_deref()).await?;
            Ok(api::page_body(items, next))
        }
        Route::ChangeRetention { backup_id } => {
            let body: RetentionRequest = request.json_body()?;
            Ok(json!(app.change_retention(&backup_id, &body, now).await?))
        }
        Route::GetRestore { restore_id } => Ok(json!(app.get_restore(&restore_id).await?)),
        Route::ListJobs => {
            let (limit, cursor) = request.page()?;
            let kind = request.query("kind").map(str::parse::<JobKind>).transpose()?;
            let status = request
                .query("status")
                .map(|s| {
                    s.parse::<JobStatus>().map_err(|m| Error::bad_request("InvalidStatus", format!("status: {m}")))
                })
                .transpose()?;
            let (items, next) = app.list_jobs(kind, status, limit, cursor.as_deref()).await?;
            Ok(api::page_body(items, next))
        }
        Route::CancelJob { job_id } => {
            let body: CancelRequest = request.json_body()?;
            Ok(json!(app.cancel_job(&job_id, &body, now).await?))
        }
        Route::Capacity { service_instance_id } => Ok(json!(app.capacity(&service_instance_id).await?)),
        Route::CreatePolicy => Ok(json!(app.create_policy(&request.json_body::<PolicyRequest>()?, now).await?)),
        Route::ListPolicies => {
            let (limit, cursor) = request.page()?;
            let (items, next) = app.list_policies(limit, cursor.as_deref()).await?;
            Ok(api::page_body(items, next))
        }
        Route::GetPolicy { policy_id } => Ok(json!(app.get_policy(&policy_id).await?)),
        Route::UpdatePolicy { policy_id } => {
            Ok(json!(app.update_policy(&policy_id, &request.json_body::<PolicyRequest>()?, now).await?))
        }
        Route::DeletePolicy { policy_id } => Ok(json!(app.delete_policy(&policy_id).await?)),
        Route::SuspendPolicy { policy_id } => {
            Ok(json!(app.set_policy_state(&policy_id, PolicyState::Suspended, now).await?))
        }
        Route::ResumePolicy { policy_id } => {
            Ok(json!(app.set_policy_state(&policy_id, PolicyState::Active, now).await?))
        }
        Route::ChangeTargets { policy_id } => {
            Ok(json!(app.change_targets(&policy_id, &request.json_body::<TargetsRequest>()?, now).await?))
        }
        other => Err(Error::not_found("route", format!("{other:?} (not served by admin-api)"))),
    }
}
