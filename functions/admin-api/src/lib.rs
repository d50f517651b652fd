//! admin-api: the read and admin routes — describe and list backups, change retention,
//! describe restores, jobs and cancel, capacity, and policies.

use std::sync::Arc;

use serde_json::{json, Value};
use snapnest_core::jobs::{CancelRequest, JobKind};
use snapnest_core::policy::{PolicyRequest, PolicyState, TargetsRequest};
use snapnest_core::retention::RetentionRequest;
use snapnest_core::status::JobStatus;
use snapnest_core::{Error, Snapnest};
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
    match route? {
        Route::GetBackup { backup_id } => Ok(json!(app.backups.get(&backup_id).await?)),
        Route::ListBackups { service_instance_id } => {
            let (limit, cursor) = request.page()?;
            let (items, next) = app.backups.list(&service_instance_id, limit, cursor.as_ref()).await?;
            Ok(api::page_body(items, next))
        }
        Route::ChangeRetention { backup_id } => {
            let body: RetentionRequest = request.json_body()?;
            Ok(json!(app.retention.change(&backup_id, &body).await?))
        }
        Route::GetRestore { restore_id } => Ok(json!(app.restores.get(&restore_id).await?)),
        Route::ListJobs => {
            let (limit, cursor) = request.page()?;
            let kind = request.query("kind").map(str::parse::<JobKind>).transpose()?;
            let status = request
                .query("status")
                .map(|s| {
                    s.parse::<JobStatus>().map_err(|m| Error::bad_request("InvalidStatus", format!("status: {m}")))
                })
                .transpose()?;
            let (items, next) = app.jobs.list(kind, status, limit, cursor.as_ref()).await?;
            Ok(api::page_body(items, next))
        }
        Route::CancelJob { job_id } => {
            let body: CancelRequest = request.json_body()?;
            Ok(json!(app.jobs.cancel(&job_id, &body).await?))
        }
        Route::Capacity { service_instance_id } => Ok(json!(app.jobs.capacity(&service_instance_id).await?)),
        Route::CreatePolicy => Ok(json!(app.policies.create(&request.json_body::<PolicyRequest>()?).await?)),
        Route::ListPolicies => {
            let (limit, cursor) = request.page()?;
            let (items, next) = app.policies.list(limit, cursor.as_ref()).await?;
            Ok(api::page_body(items, next))
        }
        Route::GetPolicy { policy_id } => Ok(json!(app.policies.get(&policy_id).await?)),
        Route::UpdatePolicy { policy_id } => {
            Ok(json!(app.policies.update(&policy_id, &request.json_body::<PolicyRequest>()?).await?))
        }
        Route::DeletePolicy { policy_id } => Ok(json!(app.policies.delete(&policy_id).await?)),
        Route::SuspendPolicy { policy_id } => {
            Ok(json!(app.policies.set_state(&policy_id, PolicyState::Suspended).await?))
        }
        Route::ResumePolicy { policy_id } => Ok(json!(app.policies.set_state(&policy_id, PolicyState::Active).await?)),
        Route::ChangeTargets { policy_id } => {
            Ok(json!(app.policies.change_targets(&policy_id, &request.json_body::<TargetsRequest>()?).await?))
        }
        other => Err(Error::not_found("route", format!("{other:?} (not served by admin-api)"))),
    }
}
