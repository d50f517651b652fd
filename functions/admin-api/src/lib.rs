//! admin-api: the read and admin routes — describe and list backups, change retention,
//! describe restores.

use std::sync::Arc;

use serde_json::{json, Value};
use snapnest::api::{self, HttpRequest, Route};
use snapnest::model::BackupRecord;
use snapnest::retention::RetentionRequest;
use snapnest::runtime::{HandlerError, Invocation};
use snapnest::{validate, Error, Snapnest};

pub async fn handle(app: Arc<Snapnest>, event: Value) -> Result<Value, HandlerError> {
    let Invocation::Http(request) = Invocation::classify(event)? else {
        return Err(Error::bad_request("UnexpectedEvent", "admin-api is called over HTTP only").into());
    };
    Ok(json!(api::respond(200, route(&app, &request).await)))
}

async fn route(app: &Snapnest, request: &HttpRequest) -> Result<Value, Error> {
    let now = chrono::Utc::now();
    match request.route()? {
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
        other => Err(Error::not_found("route", format!("{other:?} (not served by admin-api)"))),
    }
}
