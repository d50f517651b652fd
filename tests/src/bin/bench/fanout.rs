//! The largest request at 50 ms a call: how soon it answers, and how close its start comes to
//! the least time its snapshot calls can take within the concurrency bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use snapnest_core::backup::SNAPSHOT_CALLS_IN_FLIGHT;
use snapnest_core::clock::SystemClock;
use snapnest_core::Snapnest;
use snapnest_lambda::work::sqs_event;
use snapnest_local::queue::InProcessQueue;

use crate::figure;
use crate::world::{World, REGION};

const LATENCY: Duration = Duration::from_millis(50);

pub async fn run() -> crate::Outcome {
    let world = World::new(LATENCY, Duration::from_secs(3600), Arc::new(SystemClock));
    world.sim.add_service_instance(REGION, "si-fanout", 99, 16, 10, true)?;
    let starts = Arc::new(InProcessQueue::default());
    // The store without the meter: its serializing would be counted as the request's time.
    let (clouds, clock, settings) = (world.app.clouds.clone(), world.app.clock.clone(), world.app.settings.clone());
    let app = Arc::new(Snapnest::new(world.unmetered.clone(), clouds, clock, settings).with_queue(starts.clone()));
    let mutations = world.sim.mutations()?;
    world.sim.reset_round_trips();

    let began = Instant::now();
    let event = snapnest_e2e::http_event("create-backup.json", &[("si-demo", "si-fanout")], Some(&json!({})));
    let (status, answer) = snapnest_e2e::call(create_backup::router(app.clone()), event).await;
    let http = began.elapsed();
    if status != 202 {
        return Err(format!("create-backup answered {status}: {answer}").into());
    }
    let http_round_trips = world.sim.sequential_round_trips();
    let answered = Instant::now();
    // As the start queue's event source would: start-backup with the queued message.
    let response = start_backup::handle(&app, sqs_event(&starts.take())).await;
    if !response.batch_item_failures.is_empty() {
        return Err(format!("start-backup failed: {response:?}").into());
    }
    let issued = world.sim.last_call_began().ok_or("no call was made")? - began;
    let first_call = world.sim.first_call_began_after(answered).ok_or("no call after the answer")? - answered;
    let calls = (world.sim.mutations()? - mutations) as usize;
    let limit = Duration::from_millis(calls.div_ceil(SNAPSHOT_CALLS_IN_FLIGHT) as u64 * LATENCY.as_millis() as u64);

    figure("fanout.items", answer["items"].as_array().map_or(0, Vec::len));
    figure("fanout.http_ms", format!("{:.0}", ms(http)));
    figure("fanout.http_round_trips", http_round_trips);
    figure("fanout.calls", calls);
    figure("fanout.concurrency", SNAPSHOT_CALLS_IN_FLIGHT);
    figure("fanout.most_in_flight", world.sim.most_in_flight());
    figure("fanout.start_to_first_call_ms", format!("{:.0}", ms(first_call)));
    figure("fanout.wall_ms", format!("{:.0}", ms(issued)));
    figure("fanout.limit_ms", format!("{:.0}", ms(limit)));
    figure("fanout.ratio_to_limit", format!("{:.2}", issued.as_secs_f64() / limit.as_secs_f64()));
    Ok(())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
