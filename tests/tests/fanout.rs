//! A backup's start issues its snapshot calls at once, within the bound: many instances at
//! real latencies are started in a few round trips, never with more calls in flight than
//! allowed. Time is the simulated cloud's latency; the figures are counted by the cloud.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::status::JobStatus;
use snapnest_e2e::sandbox::{Sandbox, REGION};
use snapnest_lambda::work::sqs_event;
use snapnest_local::queue::InProcessQueue;

const LATENCY: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_request_answers_202_after_a_few_round_trips_and_its_start_runs_within_the_bound() {
    // GIVEN the largest service instance a request may name — 99 instances of 16 volumes and
    // 10 databases — on a cloud taking 50 ms a call, and the start queue
    let world = Sandbox::in_memory_with_latency(LATENCY);
    world.sim.add_service_instance(REGION, "si-large", 99, 16, 10, true).unwrap();
    let starts = Arc::new(InProcessQueue::default());
    let app = Arc::new(world.app.with_queue(starts.clone()));
    let mutations_before = world.sim.mutations().unwrap();
    world.sim.reset_round_trips();

    // WHEN create-backup is asked for a backup of it
    let event = snapnest_e2e::http_event("create-backup.json", &[("si-demo", "si-large")], Some(&json!({})));
    let (status, answer) = snapnest_e2e::call(create_backup::router(app.clone()), event).await;
    let before_answer = world.sim.sequential_round_trips();

    // THEN it answers 202 with the record, Pending, after discovery's few round trips — not
    // one per instance: well inside API Gateway's 29 s at any latency near 50 ms
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "Pending");
    assert_eq!(answer["items"].as_array().unwrap().len(), 99 * 16 + 10);
    assert!(before_answer <= 4, "{before_answer} round trips before the answer");
    assert_eq!(world.sim.mutations().unwrap(), mutations_before, "no snapshot call before the answer");

    // WHEN start-backup takes the queued start
    let queued = starts.take();
    assert_eq!(queued.len(), 1);
    world.sim.reset_most_in_flight();
    world.sim.reset_round_trips();
    let response = start_backup::handle(&app, sqs_event(&queued)).await;
    let start_round_trips = world.sim.sequential_round_trips();

    // THEN every snapshot call is made (one group per instance, one per database), 16 at
    // once: ceil(109 / 16) = 7 round trips, one after another
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let point = app.backups.get(answer["backup_id"].as_str().unwrap()).await.unwrap();
    assert_eq!(point.status, JobStatus::Running);
    assert!(point.items.iter().all(|i| i.snapshot_id.is_some()));
    assert_eq!(world.sim.mutations().unwrap() - mutations_before, 109);
    // (One more at most where the calls of a wave end staggered and a chain hops slots.)
    assert!((7..=8).contains(&start_round_trips), "{start_round_trips} round trips to issue 109 calls 16 at once");
    assert_eq!(world.sim.most_in_flight(), 16);

    // AND a redelivered message starts nothing twice
    let again = start_backup::handle(&app, sqs_event(&queued)).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(world.sim.mutations().unwrap() - mutations_before, 109);

    // AND a list shows the point compact — a page of 100 such points stays far inside a Lambda
    // response's 6 MB — while its describe holds every resource
    let list = snapnest_e2e::http_event("admin-api-list-backups.json", &[("si-demo", "si-large")], None);
    let (status, page) = snapnest_e2e::call(admin_api::router(app.clone()), list).await;
    assert_eq!(status, 200, "{page}");
    let listed = page["items"][0].to_string().len();
    assert!(listed * 100 < 1 << 20, "{listed} bytes for one listed point");
    assert_eq!(page["items"][0]["summary"]["resources"]["total"], 1594);
    assert!(page["items"][0].get("items").is_none());
    let described = serde_json::to_string(&point).unwrap().len();
    assert!(described > 500_000, "{described} bytes described");
}

#[tokio::test]
async fn a_start_message_that_never_comes_is_taken_over_by_poll_status_after_the_lease() {
    // GIVEN a point whose start message was lost
    let world = Sandbox::new();
    let lost = Arc::new(InProcessQueue::default());
    let app = world.app.with_queue(lost.clone());
    let point = app.backups.create("si-demo", &BackupRequest::default(), BackupOrigin::manual()).await.unwrap();
    assert_eq!(point.status, JobStatus::Pending);
    drop(lost.take());
    // WHEN poll-status passes before and after the start lease
    world.app.poller.poll_active().await.unwrap();
    assert_eq!(world.app.backups.get(&point.backup_id).await.unwrap().status, JobStatus::Pending);
    world.clock.advance(chrono::Duration::seconds(61));
    world.app.poller.poll_active().await.unwrap();
    // THEN the point is started once, by poll-status
    let started = world.app.backups.get(&point.backup_id).await.unwrap();
    assert_eq!(started.status, JobStatus::Running, "{started:#?}");
    assert!(started.items.iter().all(|i| i.snapshot_id.is_some()));
    // AND the message, were it delivered late, starts nothing again
    let mutations = world.sim.mutations().unwrap();
    let work = snapnest_core::queue::Work::StartBackup { backup_id: point.backup_id.clone(), version: point.version };
    let late = start_backup::handle(&world.app, sqs_event(&[work])).await;
    assert!(late.batch_item_failures.is_empty());
    assert_eq!(world.sim.mutations().unwrap(), mutations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_start_issues_its_snapshot_calls_at_once_within_the_bound() {
    // GIVEN 40 instances of 2 volumes and a database, every cloud call taking 20 ms
    let world = Sandbox::with_latency(Duration::from_millis(20));
    world.sim.add_service_instance(REGION, "si-wide", 40, 2, 1, true).unwrap();
    // WHEN a backup of it starts
    let point = world.app.backups.create("si-wide", &BackupRequest::default(), BackupOrigin::manual()).await.unwrap();
    // THEN every snapshot call was made, and they overlapped — never more than 16 at once
    assert_eq!(point.items.len(), 81);
    assert_eq!(point.status, JobStatus::Running, "{point:#?}");
    assert!(point.items.iter().all(|i| i.snapshot_id.is_some()), "{point:#?}");
    let most = world.sim.most_in_flight();
    assert!((8..=16).contains(&most), "{most} calls were in flight at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_pass_describes_every_running_backup_in_one_listing() {
    // GIVEN twelve running backups, every cloud call taking 20 ms
    let world = Sandbox::with_latency(Duration::from_millis(20));
    for n in 0..12 {
        let si = format!("si-{n}");
        world.sim.add_service_instance(REGION, &si, 1, 2, 0, true).unwrap();
        world.app.backups.create(&si, &BackupRequest::default(), BackupOrigin::manual()).await.unwrap();
    }
    let before = world.sim.calls_made();
    // WHEN poll-status makes one pass
    let summary = world.app.poller.poll_active().await.unwrap();
    // THEN it polled every one, their 24 snapshots described in one listing by backup id
    assert_eq!(summary.backups_polled, 12, "{summary:?}");
    assert_eq!(world.sim.calls_made() - before, 1, "describe calls of the pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_deletes_a_points_snapshots_at_once_within_the_bound() {
    // GIVEN a point of 20 instances × 3 volumes kept one day, every call taking 20 ms
    let world = Sandbox::in_memory_with_latency(Duration::from_millis(20));
    world.sim.add_service_instance(REGION, "si-expiring", 20, 3, 0, true).unwrap();
    let request = BackupRequest { retention_days: Some(1), ..Default::default() };
    let point = world.backup_with("si-expiring", &request).await;
    assert_eq!(point.status, JobStatus::Succeeded);
    world.sim.reset_most_in_flight();
    world.sim.reset_round_trips();
    // WHEN expire-retention runs once it has expired
    let summary =
        snapnest_e2e::expire_at(&world.app, point.expires_at.unwrap() + chrono::Duration::minutes(1)).await.unwrap();
    // THEN its 60 snapshots are deleted 16 at once: never more, in a few round trips
    assert_eq!(summary.snapshots_deleted, 60, "{summary:?}");
    assert_eq!(world.sim.most_in_flight(), 16);
    let round_trips = world.sim.sequential_round_trips();
    assert!((4..=5).contains(&round_trips), "{round_trips} round trips for 60 deletes 16 at once");
}
