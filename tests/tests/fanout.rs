//! A backup's start issues its snapshot calls at once, within the bound: many instances at
//! real latencies are started in a few round trips, never with more calls in flight than
//! allowed. Time is the simulated cloud's latency; the figures are counted by the cloud.

use std::time::Duration;

use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::status::JobStatus;
use snapnest_e2e::sandbox::{Sandbox, REGION};

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
async fn a_poll_pass_advances_running_backups_at_once_within_the_bound() {
    // GIVEN twelve running backups, every cloud call taking 20 ms
    let world = Sandbox::with_latency(Duration::from_millis(20));
    for n in 0..12 {
        let si = format!("si-{n}");
        world.sim.add_service_instance(REGION, &si, 1, 1, 0, true).unwrap();
        world.app.backups.create(&si, &BackupRequest::default(), BackupOrigin::manual()).await.unwrap();
    }
    world.sim.reset_most_in_flight();
    // WHEN poll-status makes one pass
    let summary = world.app.poller.poll_active().await.unwrap();
    // THEN it polled every one, several at once, never more than 8
    assert_eq!(summary.backups_polled, 12, "{summary:?}");
    let most = world.sim.most_in_flight();
    assert!((2..=8).contains(&most), "{most} calls were in flight at once");
}
