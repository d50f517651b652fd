//! The one-command demo: backs up the demo service instance `si-demo`, polls it to
//! success, restores it in place and prints both records — by sending the events in
//! `events/` to the functions' own routers and handlers, on the embedded store and simulated
//! cloud in `SNAPNEST_DATA_DIR` (default `.snapnest`). A new point's start goes through a
//! queue to start-backup's handler, as the start queue carries it when deployed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use snapnest_e2e::{call, event, http_event, scheduled_event};
use snapnest_lambda::config::Config;
use snapnest_lambda::work::sqs_event;
use snapnest_local::queue::InProcessQueue;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    snapnest_lambda::runtime::init_tracing();
    let config = Config::from_env()?;
    let starts = Arc::new(InProcessQueue::default());
    let app = Arc::new(snapnest_lambda::runtime::build(&config).await?.with_queue(starts.clone()));
    let started = Instant::now();

    let (status, backup) = call(create_backup::router(app.clone()), event("create-backup.json")).await;
    if status != 202 {
        return Err(format!("create-backup answered {status}: {backup}").into());
    }
    let backup_id = backup["backup_id"].as_str().unwrap_or_default().to_owned();
    eprintln!("backup {backup_id} started with {} items", backup["items"].as_array().map_or(0, Vec::len));
    let backup = poll(&app, &starts, "admin-api-get-backup.json", "BACKUP_ID", &backup_id).await?;
    println!("{}", serde_json::to_string_pretty(&backup)?);

    let ev = http_event("restore.json", &[("BACKUP_ID", &backup_id)], None);
    let (status, restore) = call(restore::router(app.clone()), ev).await;
    if status != 202 {
        return Err(format!("restore answered {status}: {restore}").into());
    }
    let restore_id = restore["restore_id"].as_str().unwrap_or_default().to_owned();
    eprintln!("in-place restore {restore_id} started");
    let restore = poll(&app, &starts, "admin-api-get-restore.json", "RESTORE_ID", &restore_id).await?;
    println!("{}", serde_json::to_string_pretty(&restore)?);

    eprintln!(
        "backup {} and restore {} in {:.1} s (state in {})",
        backup["status"].as_str().unwrap_or("?"),
        restore["status"].as_str().unwrap_or("?"),
        started.elapsed().as_secs_f64(),
        config.data_dir.display()
    );
    if backup["status"] == "Succeeded" && restore["status"] == "Succeeded" {
        Ok(())
    } else {
        Err("the demo did not succeed".into())
    }
}

/// Hands what was queued to start-backup, then runs poll-status, once a second until the
/// record leaves Pending/Running.
async fn poll(
    app: &Arc<snapnest_core::Snapnest>,
    starts: &InProcessQueue,
    file: &str,
    placeholder: &str,
    id: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let queued = starts.take();
        if !queued.is_empty() {
            let answer = start_backup::handle(app, sqs_event(&queued)).await;
            eprintln!("  start-backup: {} started, {} to retry", queued.len(), answer.batch_item_failures.len());
        }
        let summary = serde_json::to_value(poll_status::handle(app, scheduled_event("poll-status.json"), None).await?)?;
        let (_, record) = call(admin_api::router(app.clone()), http_event(file, &[(placeholder, id)], None)).await;
        let status = record["status"].as_str().unwrap_or("?");
        let done =
            record["items"].as_array().map_or(0, |items| items.iter().filter(|i| i["status"] == "Succeeded").count());
        eprintln!(
            "  {id}: {status} ({done}/{} items done; poll {summary})",
            record["items"].as_array().map_or(0, Vec::len)
        );
        if !matches!(status, "Pending" | "Running") {
            return Ok(record);
        }
        if Instant::now() > deadline {
            return Err(format!("{id} did not finish in time").into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
