//! One poll pass over 10,000 running snapshots of 50 backups, a tenth of them newly complete:
//! the describe calls it makes and the store items it writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::clock::SystemClock;
use snapnest_core::model::BackupRecord;

use crate::fanout::ms;
use crate::figure;
use crate::world::{World, REGION};

const BACKUPS: usize = 50;
const INSTANCES: usize = 50;
const VOLUMES_PER_INSTANCE: usize = 4;

pub async fn run() -> crate::Outcome {
    // Snapshots take an hour: nothing completes unless the scenario says so.
    let world = World::new(Duration::from_millis(50), Duration::from_secs(3600), Arc::new(SystemClock));
    let app = world.app.clone();
    let started = futures_util::future::join_all((0..BACKUPS).map(|n| {
        let si = format!("si-poll-{n:02}");
        world.sim.add_service_instance(REGION, &si, INSTANCES, VOLUMES_PER_INSTANCE, 0, true).expect("add");
        let app = app.clone();
        async move { app.backups.create(&si, &BackupRequest::default(), BackupOrigin::manual()).await }
    }))
    .await;
    let started: Vec<BackupRecord> = started.into_iter().collect::<Result<_, _>>()?;
    let snapshots: Vec<String> =
        started.iter().flat_map(|b| b.items.iter().filter_map(|i| i.snapshot_id.clone())).collect();
    let newly_complete: Vec<String> = snapshots.iter().step_by(10).cloned().collect();
    world.sim.finish_snapshots(REGION, &newly_complete)?;

    let calls = world.sim.calls_made();
    world.store.watch.take();
    let read = world.store.items_read();
    let began = Instant::now();
    let summary = app.poller.poll_active().await?;
    let wall = began.elapsed();
    let describe_calls = world.sim.calls_made() - calls;
    let written = world.store.watch.take();
    let read = world.store.items_read() - read;

    let mut changed = 0;
    for before in &started {
        let after = app.backups.get(&before.backup_id).await?;
        changed += after
            .items
            .iter()
            .zip(&before.items)
            .filter(|(a, b)| a.status != b.status || a.progress != b.progress)
            .count();
    }
    figure("poll.backups", summary.backups_polled);
    figure("poll.running_snapshots", snapshots.len());
    figure("poll.newly_complete", newly_complete.len());
    figure("poll.describe_calls", describe_calls);
    figure("poll.items_changed", changed);
    figure("poll.store_items_written", written.rows + written.documents);
    figure("poll.store_rows_written", written.rows);
    figure("poll.store_headers_written", written.documents);
    figure("poll.store_items_read", read);
    figure("poll.wall_ms", format!("{:.0}", ms(wall)));
    Ok(())
}
