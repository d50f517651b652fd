//! create-backup: `POST /service-instances/{id}/backups` starts a backup point; the
//! scheduled tick runs the policies that are due.

use std::sync::Arc;

use serde_json::{json, Value};
use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::{Error, Snapnest};
use snapnest_lambda::api::{self, Route};
use snapnest_lambda::runtime::{HandlerError, Invocation};

pub async fn handle(app: Arc<Snapnest>, event: Value) -> Result<Value, HandlerError> {
    match Invocation::classify(event)? {
        Invocation::Http(request) => {
            let outcome = async {
                match request.route()? {
                    Route::CreateBackup { service_instance_id } => {
                        let body: BackupRequest = request.json_body()?;
                        app.backups.create(&service_instance_id, &body, BackupOrigin::manual()).await
                    }
                    other => Err(Error::not_found("route", format!("{other:?} (not served by create-backup)"))),
                }
            }
            .await;
            Ok(json!(api::respond(202, outcome)))
        }
        Invocation::Scheduled(_) => Ok(json!(app.policies.run_due().await?)),
    }
}
