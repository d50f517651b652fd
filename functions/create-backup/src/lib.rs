//! create-backup: `POST /service-instances/{id}/backups` starts a backup point. (Policies
//! start theirs from run-policies.)

use std::sync::Arc;

use serde_json::{json, Value};
use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::{Error, Snapnest};
use snapnest_lambda::api::{self, Route};
use snapnest_lambda::runtime::{HandlerError, Invocation};

pub async fn handle(app: Arc<Snapnest>, event: Value) -> Result<Value, HandlerError> {
    let Invocation::Http(request) = Invocation::classify(event)? else {
        return Err(Error::bad_request("UnexpectedEvent", "create-backup is called over HTTP only").into());
    };
    let outcome = async {
        match request.route()? {
            Route::CreateBackup { service_instance_id } => {
                let body: BackupRequest = request.json_body()?;
                app.create_backup(&service_instance_id, &body, BackupOrigin::manual(), chrono::Utc::now()).await
            }
            other => Err(Error::not_found("route", format!("{other:?} (not served by create-backup)"))),
        }
    }
    .await;
    Ok(json!(api::respond(202, outcome)))
}
