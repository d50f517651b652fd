//! Every scheduled lifecycle survives a crash at any of its cloud calls, a store write that
//! fails, and a second run at the same time — replicate, expire-retention, poll-status
//! (backups, and the clean-up of a cancelled backup) — on `si-demo` in the simulated cloud,
//! on simulated time. And what a user asks while a run works is what happens.
//!
//! After the next runs have finished, always: no snapshot or copy exists that no record
//! lists, none was made twice, no point is marked damaged that was not damaged, and every
//! record is terminal. (In-place restores: `restore_safety.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::clock::Clock;
use snapnest_core::cloud::tag;
use snapnest_core::jobs::CancelRequest;
use snapnest_core::model::{BackupRecord, RestoreMode, Trigger};
use snapnest_core::restore::{RestoreRequest, Started};
use snapnest_core::retention::RetentionRequest;
use snapnest_core::status::JobStatus;
use snapnest_core::store::Collection;
use snapnest_core::{Error, Snapnest};
use snapnest_e2e::sandbox::{Sandbox, REGION};
use snapnest_e2e::tripwire::{Trip, WriteTrip};
use snapnest_local::simulated::DEMO_SERVICE_INSTANCE;

const SI: &str = DEMO_SERVICE_INSTANCE;
const WEST: &str = "us-west-2";

fn replicated(retention_days: u32) -> BackupRequest {
    BackupRequest {
        retention_days: Some(retention_days),
        destination_region: Some(WEST.into()),
        destination_retention_days: Some(retention_days),
        ..Default::default()
    }
}

async fn backups(app: &Snapnest) -> Vec<BackupRecord> {
    let page = app.store.list_owned(Collection::Backups, SI, 100, None).await.unwrap();
    let mut out = Vec::new();
    for doc in page.documents {
        out.push(app.backups.get(&doc.id).await.unwrap());
    }
    out
}

/// The invariants; a description of each breach.
async fn breaches(world: &Sandbox) -> Vec<String> {
    let mut found = Vec::new();
    let mut listed = BTreeSet::new();
    for backup in backups(&world.app).await {
        if !backup.status.is_terminal() || backup.cleanup_pending {
            found.push(format!(
                "backup {} is {} (clean-up pending: {})",
                backup.backup_id,
                backup.status.as_str(),
                backup.cleanup_pending
            ));
        }
        if let Some(replication) = backup.replication.as_ref().filter(|r| !r.status.is_terminal()) {
            found.push(format!("replication of {} is {}", backup.backup_id, replication.status.as_str()));
        }
        if backup.damaged {
            found.push(format!(
                "backup {} is marked damaged, and nothing was deleted behind snapnest",
                backup.backup_id
            ));
        }
        listed.extend(backup.items.iter().filter_map(|i| i.snapshot_id.clone()));
        if let Some(replication) = &backup.replication {
            listed.extend(replication.items.iter().filter_map(|i| i.replica_snapshot_id.clone()));
        }
    }
    for region in [REGION, WEST] {
        for snapshot in world.sim.snapshot_ids(region).unwrap() {
            if !listed.contains(&snapshot) {
                found.push(format!("{region} snapshot {snapshot} is listed by no record"));
            }
        }
    }
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for snapshot in world.sim.snapshot_ids(WEST).unwrap() {
        if let Some(source) = world.sim.snapshot_tags(WEST, &snapshot).unwrap().get(tag::COPY_OF) {
            *copies.entry(source.clone()).or_default() += 1;
        }
    }
    for (source, count) in copies.into_iter().filter(|(_, n)| *n > 1) {
        found.push(format!("{source} was copied {count} times"));
    }
    found
}

type Step = for<'a> fn(&'a Sandbox) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Runs `step` on a copy of `before` once cleanly to count its calls and writes, then once
/// per call dying right after it and once per write failing; `finish` then runs the
/// scheduled functions to the end. Returns the cases run and the breaches found.
async fn every_point(name: &str, before: &Sandbox, step: Step, finish: Step) -> (usize, Vec<String>) {
    let clean = Sandbox::copy_of(before);
    step(&clean).await;
    finish(&clean).await;
    let (calls, writes) = (clean.wire.mutations(), clean.wire.writes());
    assert!(calls > 0, "{name} makes cloud calls");
    let mut problems: Vec<String> = breaches(&clean).await.into_iter().map(|b| format!("{name}, clean: {b}")).collect();
    let mut cases = 0;
    for k in 1..=calls {
        let world = Sandbox::copy_of(before);
        world.wire.arm(k, Trip::Die);
        step(&world).await;
        finish(&world).await;
        cases += 1;
        problems.extend(breaches(&world).await.into_iter().map(|b| format!("{name}, dies after call {k}: {b}")));
    }
    for k in 1..=writes {
        let world = Sandbox::copy_of(before);
        world.wire.arm_write(k, WriteTrip::Fails);
        step(&world).await;
        finish(&world).await;
        cases += 1;
        problems.extend(breaches(&world).await.into_iter().map(|b| format!("{name}, write {k} fails: {b}")));
    }
    println!("{name}: {calls} calls, {writes} writes, {cases} cases");
    (cases, problems)
}

fn replicate(world: &Sandbox) -> Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(world.replicate())
}

fn expire(world: &Sandbox) -> Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(world.expire(world.clock.now() + chrono::Duration::days(2)))
}

fn settle(world: &Sandbox) -> Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(world.settle())
}

fn back_up(world: &Sandbox) -> Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(async move {
        let origin = BackupOrigin { trigger: Trigger::Manual, policy_id: None };
        let request = BackupRequest { client_token: Some("nightly".into()), ..Default::default() };
        let _ = world.wire.invoke(world.app.backups.create(SI, &request, origin)).await;
    })
}

fn cancel_and_clean_up(world: &Sandbox) -> Pin<Box<dyn Future<Output = ()> + '_>> {
    Box::pin(async move {
        let running =
            backups(&world.app).await.into_iter().find(|b| !b.status.is_terminal()).expect("a running backup");
        let cancel = world.app.jobs.cancel(&running.backup_id, &CancelRequest { keep_snapshots: false });
        let _ = world.wire.invoke(cancel).await;
        world.settle().await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lifecycle_finishes_after_a_crash_at_any_call_or_a_failed_write() {
    let mut cases = 0;
    let mut problems = Vec::new();

    // GIVEN a finished point of si-demo that replicates to us-west-2
    let before = Sandbox::new();
    before.backup_with(SI, &replicated(1)).await;
    // WHEN replicate dies after each call or a write of it fails, THEN the next runs finish
    let (n, p) = every_point("replicate", &before, replicate, replicate).await;
    (cases, problems) = (cases + n, [problems, p].concat());

    // GIVEN the point replicated, WHEN expire-retention dies or fails anywhere two days later
    before.replicate().await;
    let (n, p) = every_point("expire-retention", &before, expire, expire).await;
    (cases, problems) = (cases + n, [problems, p].concat());

    // GIVEN si-demo, WHEN the backup's start (create-backup) dies anywhere, THEN poll-status
    // finishes it without a snapshot made twice
    let fresh = Sandbox::new();
    let (n, p) = every_point("create-backup then poll-status", &fresh, back_up, settle).await;
    (cases, problems) = (cases + n, [problems, p].concat());

    // GIVEN a backup started, WHEN it is cancelled and its clean-up dies or fails anywhere
    let started = Sandbox::new();
    back_up(&started).await;
    let (n, p) = every_point("cancel clean-up", &started, cancel_and_clean_up, settle).await;
    (cases, problems) = (cases + n, [problems, p].concat());

    println!("lifecycle crash and write-failure cases run: {cases}");
    assert!(problems.is_empty(), "{} breaches:\n{}", problems.len(), problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_of_each_scheduled_function_do_nothing_twice() {
    for round in 0..3 {
        // GIVEN si-demo with latency on every call, so two runs interleave
        let world = Sandbox::with_latency(Duration::from_millis(1 + round));
        let origin = BackupOrigin { trigger: Trigger::Manual, policy_id: None };
        world.app.backups.create(SI, &replicated(1), origin.clone()).await.unwrap();
        // WHEN poll-status, replicate, then expire-retention each run twice at once until done
        for _ in 0..50 {
            world.clock.advance(chrono::Duration::seconds(10));
            let (a, b) = tokio::join!(world.app.poller.poll_active(), world.app.poller.poll_active());
            let _ = (a, b);
            let (a, b) = tokio::join!(world.app.replication.replicate_due(), world.app.replication.replicate_due());
            let _ = (a, b);
        }
        let at = world.clock.now() + chrono::Duration::days(2);
        for _ in 0..5 {
            let (a, b) = tokio::join!(snapnest_e2e::expire_at(&world.app, at), snapnest_e2e::expire_at(&world.app, at));
            let _ = (a, b);
        }
        // THEN everything ended once: no copy twice, nothing left, nothing damaged
        let problems = breaches(&world).await;
        assert!(problems.is_empty(), "round {round}: {problems:#?}");
        let point = backups(&world.app).await.remove(0);
        assert_eq!(point.status, JobStatus::Expired, "round {round}: {point:#?}");
        assert!(world.sim.snapshot_ids(REGION).unwrap().is_empty() && world.sim.snapshot_ids(WEST).unwrap().is_empty());
    }
}

/// A user's request made at one moment of a scheduled run, and what it was answered.
type Request = fn(Arc<Snapnest>, String) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

fn extend_retention(app: Arc<Snapnest>, backup_id: String) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> {
    Box::pin(async move {
        let request = RetentionRequest { extend_days: Some(7), ..Default::default() };
        app.retention.change(&backup_id, &request).await.map(|_| ())
    })
}

fn clone_it(app: Arc<Snapnest>, backup_id: String) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> {
    Box::pin(async move {
        let request = RestoreRequest::new(RestoreMode::Clone);
        match app.restores.create(&backup_id, &request).await? {
            Started::Restore(_) => Ok(()),
            Started::Plan(_) => panic!("not a dry run"),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_racing_expiry_is_answered_what_happens() {
    // GIVEN a point whose retention ran out
    let before = Sandbox::new();
    let point = before.backup_with(SI, &BackupRequest { retention_days: Some(1), ..Default::default() }).await;
    let at = before.clock.now() + chrono::Duration::days(2);
    let clean = Sandbox::copy_of(&before);
    clean.expire(at).await;
    let (calls, writes) = (clean.wire.mutations(), clean.wire.writes());
    let mut cases = 0;
    for (what, request) in [("extend retention", extend_retention as Request), ("clone", clone_it as Request)] {
        // WHEN the request comes before each write, or after each call, of the expiry run
        let offsets = (1..=writes).map(|k| (true, k)).chain((1..=calls).map(|k| (false, k)));
        for (before_write, k) in offsets {
            let world = Sandbox::copy_of(&before);
            let answer = Arc::new(std::sync::Mutex::new(None));
            let (app, id, slot) = (world.app.clone(), point.backup_id.to_string(), answer.clone());
            let hook: snapnest_e2e::tripwire::Hook = Box::new(move || {
                let (app, id, slot) = (app.clone(), id.clone(), slot.clone());
                Box::pin(async move {
                    let outcome = request(app, id).await;
                    *slot.lock().unwrap() = Some(outcome);
                })
            });
            if before_write {
                world.wire.arm_write(k, WriteTrip::Before(hook));
            } else {
                world.wire.arm(k, Trip::Then(hook));
            }
            world.expire(at).await;
            world.settle().await;
            world.expire(at).await;
            cases += 1;
            // THEN the answer is what happened
            let outcome = answer.lock().unwrap().take().expect("the request was made during the run");
            let after: BackupRecord = world.app.backups.get(&point.backup_id).await.unwrap();
            let at_offset = format!("{what} {} {k}", if before_write { "before write" } else { "after call" });
            match outcome {
                Ok(()) if what == "extend retention" => {
                    assert_ne!(after.status, JobStatus::Expired, "{at_offset}: 200, then expired anyway");
                    assert!(after.expires_at > point.expires_at, "{at_offset}");
                    assert_eq!(world.sim.snapshot_ids(REGION).unwrap().len(), 7, "{at_offset}");
                }
                Ok(()) => {
                    // The clone ran to the end on the point's snapshots.
                    let restores = world.app.store.list_owned(Collection::Restores, SI, 10, None).await.unwrap();
                    let restore = world.app.restores.get(&restores.documents[0].id).await.unwrap();
                    assert_eq!(restore.status, JobStatus::Succeeded, "{at_offset}: {restore:#?}");
                }
                Err(Error::Conflict { code, .. }) => {
                    assert!(
                        matches!(code, "BackupExpiring" | "BackupExpired" | "BackupNotRestorable"),
                        "{at_offset}: {code}"
                    );
                    assert_eq!(after.status, JobStatus::Expired, "{at_offset}: refused, and not expired");
                }
                Err(other) => panic!("{at_offset}: {other}"),
            }
            assert!(!after.damaged, "{at_offset}");
            let problems = breaches(&world).await;
            assert!(problems.is_empty(), "{at_offset}: {problems:#?}");
        }
    }
    println!("requests raced against expire-retention: {cases}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_cancelled_while_it_starts_leaves_no_snapshot() {
    // GIVEN how many calls a backup's start makes
    let before = Sandbox::new();
    let clean = Sandbox::copy_of(&before);
    back_up(&clean).await;
    let calls = clean.wire.mutations();
    for k in 1..=calls {
        // WHEN the user cancels it right after the start's k-th call (the start goes on)
        let world = Sandbox::copy_of(&before);
        let app = world.app.clone();
        world.wire.arm(
            k,
            Trip::Then(Box::new(move || {
                let app = app.clone();
                Box::pin(async move {
                    let running = backups(&app).await.into_iter().next().expect("the backup was written first");
                    let cancel = CancelRequest { keep_snapshots: false };
                    app.jobs.cancel(&running.backup_id, &cancel).await.expect("a starting backup can be cancelled");
                })
            })),
        );
        back_up(&world).await;
        world.settle().await;
        // THEN once poll-status is done it is Cancelled and none of its snapshots is left
        let point = backups(&world.app).await.remove(0);
        assert_eq!(point.status, JobStatus::Cancelled, "after call {k}");
        assert!(!point.cleanup_pending, "after call {k}");
        let left = world.sim.snapshot_ids(REGION).unwrap();
        assert!(left.is_empty(), "after call {k} of {calls}: {left:?} left");
    }
}

#[tokio::test]
async fn a_database_busy_when_the_backup_starts_is_snapshotted_once_it_is_available() {
    for released in [true, false] {
        // GIVEN si-demo whose database is backing up
        let world = Sandbox::new();
        let db = format!("{SI}-mysql");
        world.sim.set_database_status(REGION, &db, "backing-up").unwrap();
        // WHEN a backup starts THEN the database's item waits, saying why, and the point runs
        let origin = BackupOrigin { trigger: Trigger::Manual, policy_id: None };
        let started = world.app.backups.create(SI, &BackupRequest::default(), origin).await.unwrap();
        let item = started.items.iter().find(|i| i.resource_id == db).unwrap();
        assert_eq!(item.status, snapnest_core::status::ItemStatus::Pending, "{item:?}");
        assert!(item.error.as_deref().unwrap().contains("backing-up"), "{item:?}");
        for _ in 0..3 {
            world.clock.advance(chrono::Duration::minutes(1));
            world.app.poller.poll_active().await.unwrap();
        }
        assert_eq!(world.app.backups.get(&started.backup_id).await.unwrap().status, JobStatus::Running);
        if released {
            // WHEN it is available again THEN the next polls snapshot it: Succeeded
            world.sim.set_database_status(REGION, &db, "available").unwrap();
            world.settle().await;
            let point = world.app.backups.get(&started.backup_id).await.unwrap();
            assert_eq!(point.status, JobStatus::Succeeded, "{point:#?}");
        } else {
            // WHEN it stays busy past the wait THEN its item fails with the cause: PartiallyFailed
            world.clock.advance(chrono::Duration::minutes(30));
            world.settle().await;
            let point = world.app.backups.get(&started.backup_id).await.unwrap();
            assert_eq!(point.status, JobStatus::PartiallyFailed, "{point:#?}");
            let item = point.items.iter().find(|i| i.resource_id == db).unwrap();
            assert!(item.error.as_deref().unwrap().contains("not available for a snapshot within 30 minutes"));
        }
    }
}

#[tokio::test]
async fn replicas_are_made_with_the_destination_regions_key() {
    // GIVEN a point replicating to us-west-2, whose key is configured
    let world = Sandbox::new();
    world.backup_with(SI, &replicated(7)).await;
    // WHEN it is replicated
    world.replicate().await;
    // THEN every copy was asked for with that key
    let copies: Vec<_> = world
        .sim
        .calls()
        .unwrap()
        .into_iter()
        .filter(|c| c.op == "copy_snapshot" || c.op == "copy_db_snapshot")
        .collect();
    assert_eq!(copies.len(), 7, "{copies:?}");
    assert!(copies.iter().all(|c| c.args.iter().any(|a| a == "alias/snapnest-replicas")), "{copies:?}");
}

#[tokio::test]
async fn the_copies_are_kept_as_long_as_an_extended_point() {
    // GIVEN a point and its copies, both kept for a day
    let world = Sandbox::new();
    let point = world.backup_with(SI, &replicated(1)).await;
    world.replicate().await;
    let copies_until = backups(&world.app).await[0].replication.as_ref().unwrap().expires_at.unwrap();
    // WHEN the point's retention is extended by a week
    let request = RetentionRequest { extend_days: Some(7), ..Default::default() };
    let changed = world.app.retention.change(&point.backup_id, &request).await.unwrap();
    // THEN the copies are kept a week longer too, and their expiry tags say so
    let replication = changed.replication.as_ref().unwrap();
    assert_eq!(replication.expires_at, Some(copies_until + chrono::Duration::days(7)));
    let copy = replication.items[0].replica_snapshot_id.clone().unwrap();
    let tags = world.sim.snapshot_tags(WEST, &copy).unwrap();
    assert_eq!(tags.get(tag::EXPIRES_AT), replication.expires_at.map(|t| t.to_rfc3339()).as_ref());
    // AND expire-retention two days later deletes neither the point nor its copies
    world.expire(world.clock.now() + chrono::Duration::days(2)).await;
    let after = backups(&world.app).await.remove(0);
    assert_eq!(after.status, JobStatus::Succeeded);
    assert_eq!(after.replication.unwrap().status, JobStatus::Succeeded);
    assert_eq!(world.sim.snapshot_ids(WEST).unwrap().len(), 7);
}

/// A clock that moves a second each time it is read: a run's time budget runs out after as
/// many readings as it is given seconds, so each budget cuts the run at another point.
struct Ticking(std::sync::Mutex<snapnest_core::clock::Timestamp>);

impl Clock for Ticking {
    fn now(&self) -> snapnest_core::clock::Timestamp {
        let mut now = self.0.lock().unwrap();
        *now += chrono::Duration::seconds(1);
        *now
    }
}

/// A copy of `before`'s world and its use cases on a [`Ticking`] clock from `start`: a run
/// given a budget of `n` seconds is cut off after `n` readings of the clock.
fn ticking_copy(before: &Sandbox, start: snapnest_core::clock::Timestamp) -> (Sandbox, Snapnest) {
    let copy = Sandbox::copy_of(before);
    let app = copy.app.with_clock(Arc::new(Ticking(std::sync::Mutex::new(start))));
    (copy, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_cut_off_by_its_time_budget_at_any_point_is_finished_by_the_next_run() {
    // GIVEN a point of si-demo (six volume snapshots and a database's) whose retention is over
    let before = Sandbox::new();
    let point = before.backup(SI).await;
    let snapshots: BTreeSet<String> = point.items.iter().filter_map(|i| i.snapshot_id.clone()).collect();
    let due = point.expires_at.unwrap() + chrono::Duration::minutes(1);
    let mut cuts = 0;
    for budget in 1.. {
        // WHEN an expire-retention run's time is up after `budget` seconds
        let (c, app) = ticking_copy(&before, due);
        let summary = app.retention.expire_due_until(Some(due + chrono::Duration::seconds(budget))).await.unwrap();
        if !summary.stopped_at_budget {
            assert_eq!(summary.points_expired, 1, "a budget that does not cut finishes: {summary:?}");
            break;
        }
        cuts += 1;
        // THEN the next run finishes it: expired, not damaged, every snapshot deleted once
        snapnest_e2e::expire_at(&c.app, due + chrono::Duration::hours(1)).await.unwrap();
        let record: BackupRecord = c.app.backups.get(&point.backup_id).await.unwrap();
        assert_eq!(record.status, JobStatus::Expired, "budget {budget}: {record:#?}");
        assert!(!record.damaged, "budget {budget}: snapnest's own deletes are not damage: {record:#?}");
        let left: BTreeSet<String> = c.sim.snapshot_ids(REGION).unwrap().into_iter().collect();
        assert!(left.is_disjoint(&snapshots), "budget {budget}: {left:?} left");
        let mut deletes: BTreeMap<String, usize> = BTreeMap::new();
        for call in
            c.sim.calls().unwrap().into_iter().filter(|c| c.op.starts_with("delete_") && c.op.ends_with("snapshot"))
        {
            *deletes.entry(call.args[0].clone()).or_default() += 1;
        }
        assert!(deletes.values().all(|n| *n == 1), "budget {budget}: deleted twice: {deletes:?}");
        assert_eq!(deletes.len(), snapshots.len(), "budget {budget}: {deletes:?}");
        assert!(budget < 500, "the budget never stopped cutting");
    }
    assert!(cuts >= 3, "only {cuts} cut points");
}

/// How many times the simulated cloud accepted each `op`, by its argument `arg`.
fn accepted(world: &Sandbox, ops: &[&str], arg: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for call in world.sim.calls().unwrap().into_iter().filter(|c| ops.contains(&c.op.as_str())) {
        *counts.entry(call.args[arg].clone()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_cut_off_by_its_time_budget_at_any_point_is_finished_by_the_next_passes() {
    // GIVEN three running backups and an in-place restore
    let before = Sandbox::new();
    let point = before.backup(SI).await;
    for n in 0..3 {
        let si = format!("si-cut-{n}");
        before.sim.add_service_instance(REGION, &si, 2, 2, 1, true).unwrap();
        before.app.backups.create(&si, &BackupRequest::default(), BackupOrigin::manual()).await.unwrap();
    }
    let request = snapnest_e2e::sandbox::in_place(false);
    let Started::Restore(restore) = before.app.restores.create(&point.backup_id, &request).await.unwrap() else {
        panic!("a restore")
    };
    let start = before.clock.now() + chrono::Duration::seconds(10);
    let mut cuts = 0;
    for budget in 1.. {
        // WHEN a poll-status pass's time is up after `budget` seconds
        let (c, app) = ticking_copy(&before, start);
        let summary = app.poller.poll_active_until(Some(start + chrono::Duration::seconds(budget))).await.unwrap();
        if !summary.stopped_at_budget {
            break;
        }
        cuts += 1;
        // THEN the next passes finish everything: nothing failed, nothing made twice
        c.clock.advance(chrono::Duration::seconds(budget + 10));
        c.settle().await;
        for backup in c.app.store.list_collection(Collection::Backups, 100, None).await.unwrap().documents {
            let backup = c.app.backups.get(&backup.id).await.unwrap();
            assert_eq!(backup.status, JobStatus::Succeeded, "budget {budget}: {backup:#?}");
        }
        let restored = c.app.restores.get(&restore.restore_id).await.unwrap();
        assert_eq!(restored.status, JobStatus::Succeeded, "budget {budget}: {restored:#?}");
        let groups = accepted(&c, &["snapshot_instance"], 0);
        assert!(groups.values().all(|n| *n == 1), "budget {budget}: an instance snapshotted twice: {groups:?}");
        let volumes = accepted(&c, &["create_volume"], 2);
        assert!(volumes.values().all(|n| *n == 1), "budget {budget}: a volume made twice: {volumes:?}");
        assert!(budget < 500, "the budget never stopped cutting");
    }
    assert!(cuts >= 3, "only {cuts} cut points");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_cut_off_by_its_time_budget_at_any_point_is_finished_by_the_next_runs() {
    // GIVEN three finished points to copy to us-west-2
    let before = Sandbox::new();
    let mut sources = BTreeSet::new();
    for n in 0..3 {
        let si = format!("si-copy-{n}");
        before.sim.add_service_instance(REGION, &si, 1, 2, 1, true).unwrap();
        let point = before.backup_with(&si, &replicated(3)).await;
        sources.extend(point.items.iter().filter_map(|i| i.snapshot_id.clone()));
    }
    let start = before.clock.now() + chrono::Duration::minutes(1);
    let mut cuts = 0;
    for budget in 1.. {
        // WHEN a replicate run's time is up after `budget` seconds
        let (c, app) = ticking_copy(&before, start);
        let summary = app.replication.replicate_due_until(Some(start + chrono::Duration::seconds(budget))).await;
        if !summary.unwrap().stopped_at_budget {
            break;
        }
        cuts += 1;
        // THEN the next runs copy everything, each snapshot once, and nothing failed
        c.clock.advance(chrono::Duration::seconds(budget + 60));
        c.replicate().await;
        for doc in c.app.store.list_collection(Collection::Backups, 100, None).await.unwrap().documents {
            let point = c.app.backups.get(&doc.id).await.unwrap();
            let replication = point.replication.expect("replicated");
            assert_eq!(replication.status, JobStatus::Succeeded, "budget {budget}: {replication:#?}");
        }
        let copies = accepted(&c, &["copy_snapshot", "copy_db_snapshot"], 1);
        assert_eq!(copies.keys().cloned().collect::<BTreeSet<_>>(), sources, "budget {budget}");
        assert!(copies.values().all(|n| *n == 1), "budget {budget}: copied twice: {copies:?}");
        assert!(budget < 500, "the budget never stopped cutting");
    }
    assert!(cuts >= 2, "only {cuts} cut points");
}
