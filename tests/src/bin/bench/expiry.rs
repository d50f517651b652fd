//! expire-retention over a table of 1,000,000 points, 100 of them due with 10,000 snapshots
//! on a cloud taking 50 ms a call, run with a 3-second budget until done: what a run reads,
//! how fast snapshots go, and that no cut-off is taken for damage.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::params;
use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::clock::{Clock, Timestamp};
use snapnest_core::model::BackupRecord;
use snapnest_core::status::JobStatus;

use crate::figure;
use crate::world::{World, REGION};

const TABLE_POINTS: usize = 1_000_000;
const DUE_POINTS: usize = 100;
/// 25 instances × 4 volumes: 100 snapshots a point.
const INSTANCES: usize = 25;
const VOLUMES_PER_INSTANCE: usize = 4;
const BUDGET: chrono::Duration = chrono::Duration::seconds(3);

/// The system clock moved on by an offset the scenario sets (days pass at once).
#[derive(Default)]
struct MovedClock(AtomicI64);

impl Clock for MovedClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now() + chrono::Duration::milliseconds(self.0.load(Ordering::SeqCst))
    }
}

pub async fn run() -> crate::Outcome {
    let clock = Arc::new(MovedClock::default());
    let world = World::new(Duration::from_millis(50), Duration::ZERO, clock.clone());
    let app = world.app.clone();

    // The due points: real backups of real (simulated) snapshots, kept one day.
    let request = BackupRequest { retention_days: Some(1), ..Default::default() };
    let points = futures_util::future::join_all((0..DUE_POINTS).map(|n| {
        let si = format!("si-expiry-{n:03}");
        world.sim.add_service_instance(REGION, &si, INSTANCES, VOLUMES_PER_INSTANCE, 0, true).expect("add");
        let (app, request) = (app.clone(), request.clone());
        async move { app.backups.create(&si, &request, BackupOrigin::manual()).await }
    }))
    .await;
    let points: Vec<BackupRecord> = points.into_iter().collect::<Result<_, _>>()?;
    while !app.store.list_active(snapnest_core::store::Collection::Backups).await?.is_empty() {
        app.poller.poll_active().await?;
    }
    let snapshots: usize = points.iter().map(|p| p.items.len()).sum();

    // The rest of the table: points due in 30 days, written straight into the embedded
    // store's file (headers only; no run reads them).
    let filled = Instant::now();
    fill(&world.dir.path().join("store.sqlite"), TABLE_POINTS - DUE_POINTS, clock.now())?;
    eprintln!(
        "(expiry: {} filler points written in {:.1} s)",
        TABLE_POINTS - DUE_POINTS,
        filled.elapsed().as_secs_f64()
    );

    // Two days on, the 100 points are due; each run has a 3-second budget.
    clock.0.store(chrono::Duration::days(2).num_milliseconds(), Ordering::SeqCst);
    world.sim.reset_most_in_flight();
    let (mut runs, mut deleted, mut most_read, mut first_read) = (0, 0, 0, None);
    let began = Instant::now();
    loop {
        let read = world.store.items_read();
        let deadline = clock.now() + BUDGET;
        let summary = app.retention.expire_due_until(Some(deadline)).await?;
        let read = world.store.items_read() - read;
        first_read.get_or_insert(read);
        most_read = most_read.max(read);
        runs += 1;
        deleted += summary.snapshots_deleted;
        if !summary.stopped_at_budget && summary.deferred == 0 {
            break;
        }
        if runs > 100 {
            return Err("expire-retention did not finish in 100 runs".into());
        }
    }
    let elapsed = began.elapsed();
    let mut damaged = 0;
    let mut expired = 0;
    for point in &points {
        let after = app.backups.get(&point.backup_id).await?;
        damaged += usize::from(after.damaged);
        expired += usize::from(after.status == JobStatus::Expired);
    }
    let left = world.sim.snapshot_ids(REGION)?.len();

    figure("expiry.table_points", TABLE_POINTS);
    figure("expiry.due_points", DUE_POINTS);
    figure("expiry.due_items", DUE_POINTS + snapshots);
    figure("expiry.items_read_first_run", first_read.unwrap_or_default());
    figure("expiry.items_read_most_in_a_run", most_read);
    figure("expiry.runs", runs);
    figure("expiry.snapshots", snapshots);
    figure("expiry.snapshots_deleted", deleted);
    figure("expiry.snapshots_left", left);
    figure("expiry.points_expired", expired);
    figure("expiry.most_in_flight", world.sim.most_in_flight());
    figure("expiry.snapshots_per_s", format!("{:.0}", deleted as f64 / elapsed.as_secs_f64()));
    figure("expiry.false_damaged", damaged);
    Ok(())
}

/// `count` points of other service instances, due in 30 days, in one transaction.
fn fill(store: &std::path::Path, count: usize, now: Timestamp) -> Result<(), rusqlite::Error> {
    let mut conn = rusqlite::Connection::open(store)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO documents (collection, id, version, owner, created_at, active, due_at, lock_key, body) \
             VALUES ('backups', ?1, 1, ?2, ?3, 0, ?4, NULL, ?5)",
        )?;
        let created = now.timestamp_millis();
        let due = (now + chrono::Duration::days(30)).timestamp_millis();
        for n in 0..count {
            let id = format!("bk-filler{n:07}");
            let owner = format!("si-filler-{:04}", n % 10_000);
            let body = format!(r#"{{"backup_id":"{id}","service_instance_id":"{owner}","status":"Succeeded"}}"#);
            insert.execute(params![id, owner, created, due, body])?;
        }
    }
    tx.commit()
}
