//! restore: `POST /backups/{backup_id}/restores` starts an in-place, clone or
//! disaster-recovery restore; poll-status carries it on.

use std::sync::Arc;

use serde_json::{json, Value};
use snapnest_core::restore::RestoreRequest;
use snapnest_core::{Error, Snapnest};
use snapnest_lambda::api::{self, Route};
use snapnest_lambda::runtime::{HandlerError, Invocation};

pub async fn handle(app: Arc<Snapnest>, event: Value) -> Result<Value, HandlerError> {
    let Invocation::Http(request) = Invocation::classify(event)? else {
        return Err(Error::bad_request("UnexpectedEvent", "restore is called over HTTP only").into());
    };
    let outcome = async {
        match request.route()? {
            Route::CreateRestore { backup_id } => {
                let body: RestoreRequest = request.json_body()?;
                app.restores.create(&backup_id, &body).await
            }
            other => Err(Error::not_found("route", format!("{other:?} (not served by restore)"))),
        }
    }
    .await;
    Ok(json!(api::respond(202, outcome)))
}
