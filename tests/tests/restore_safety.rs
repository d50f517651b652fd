//! An in-place restore of `si-demo` finishes or rolls back whatever happens at any of its
//! cloud calls: the function dies right after it, the user cancels right after it, or the
//! cloud refuses it for good. After poll-status has run to the end, every case must leave
//! the service instance whole: one volume at every device of the point, the database id
//! there and available, the instances that ran running again, the data of the backup
//! (restored) or of just before (rolled back, cancelled, failed), everything the restore
//! made listed in its record or deleted, and the lock free.
//!
//! Time is simulated (the clock moves ten seconds per poll, the cloud's operations are
//! instant), so each case takes milliseconds.

use std::collections::{BTreeMap, BTreeSet};

use snapnest_core::cloud::{tag, InstanceState};
use snapnest_core::ids::RestoreId;
use snapnest_core::model::{BackupRecord, ResourceKind, RestoreRecord};
use snapnest_core::restore::{RestoreRequest, Started};
use snapnest_core::status::JobStatus;
use snapnest_core::store::Collection;
use snapnest_core::Snapnest;
use snapnest_e2e::sandbox::{in_place, Sandbox, REGION};
use snapnest_e2e::tripwire::{Trip, WriteTrip};
use snapnest_local::simulated::DEMO_SERVICE_INSTANCE;

const SI: &str = DEMO_SERVICE_INSTANCE;

/// What the world looked like before each case: the point, and the data at each resource.
struct Before {
    world: Sandbox,
    backup: BackupRecord,
    /// Fingerprints of the point's resources at backup time.
    backed_up: BTreeMap<String, String>,
    /// …and just before the restore (new data written since).
    current: BTreeMap<String, String>,
    volumes: BTreeSet<String>,
    databases: BTreeSet<String>,
    snapshots: BTreeSet<String>,
}

/// `si-demo` with a finished backup point, and new data written to every resource since.
async fn prepare() -> Before {
    let world = Sandbox::new();
    let backup = world.backup(SI).await;
    assert_eq!(backup.status, JobStatus::Succeeded, "{backup:?}");
    let sim = &world.sim;
    let mut backed_up = BTreeMap::new();
    let mut current = BTreeMap::new();
    for item in &backup.items {
        backed_up.insert(item.resource_id.clone(), sim.fingerprint(REGION, &item.resource_id).unwrap());
        current.insert(item.resource_id.clone(), sim.write_data(REGION, &item.resource_id).unwrap());
    }
    Before {
        backup,
        backed_up,
        current,
        volumes: sim.volume_ids(REGION).unwrap().into_iter().collect(),
        databases: sim.database_ids(REGION).unwrap().into_iter().collect(),
        snapshots: sim.snapshot_ids(REGION).unwrap().into_iter().collect(),
        world,
    }
}

async fn the_restore(app: &Snapnest) -> Option<RestoreRecord> {
    let page = app.store.list_owned(Collection::Restores, SI, 10, None).await.unwrap();
    let doc = page.documents.first()?;
    Some(app.restores.get(&doc.id).await.unwrap())
}

/// Starts the restore (the invocation may die at the armed call) and runs poll-status
/// until everything is finished.
async fn run(c: &Sandbox, backup_id: &str, safety_backup: bool) -> Option<RestoreRecord> {
    let mut body = in_place(safety_backup);
    body.client_token = Some("restore-under-test".into());
    if let Some(Ok(Started::Plan(_))) = c.wire.invoke(c.app.restores.create(backup_id, &body)).await {
        panic!("not a dry run");
    }
    c.settle().await;
    // None: the request failed before its record was written (a store write failed); the
    // caller was answered an error and nothing may have changed.
    the_restore(&c.app).await
}

/// The invariants every case must end with; a description of each breach.
async fn breaches(c: &Sandbox, before: &Before, restore: Option<&RestoreRecord>) -> Vec<String> {
    let mut found = Vec::new();
    let sim = &c.sim;
    // Each (instance, device) of the point holds one volume; every instance that ran runs.
    let mut instances = BTreeSet::new();
    for item in before.backup.items.iter().filter(|i| i.kind == ResourceKind::Volume) {
        let (instance, device) = (item.instance_id.clone().unwrap(), item.device.clone().unwrap());
        instances.insert(instance.clone());
        if sim.volume_at(REGION, &instance, &device).unwrap().is_none() {
            found.push(format!("{device} of {instance} is empty"));
        }
    }
    for instance in &instances {
        let state = sim.instance_state(REGION, instance).unwrap();
        if state != InstanceState::Running {
            found.push(format!("{instance} is {state:?}"));
        }
    }
    // The database id exists and is available.
    for item in before.backup.items.iter().filter(|i| i.kind == ResourceKind::Database) {
        match sim.database(REGION, &item.resource_id).unwrap() {
            Some((status, _, _)) if status == "available" => {}
            other => found.push(format!("database {} is {other:?}", item.resource_id)),
        }
    }
    // The data is the backup's (restored) or what it was before (anything else).
    let succeeded = restore.is_some_and(|r| r.status == JobStatus::Succeeded);
    let status = restore.map_or("not started", |r| r.status.as_str());
    let expected = if succeeded { &before.backed_up } else { &before.current };
    for (resource_id, fingerprint) in expected {
        let now = match before.backup.items.iter().find(|i| &i.resource_id == resource_id).unwrap().kind {
            ResourceKind::Volume => {
                let item = before.backup.items.iter().find(|i| &i.resource_id == resource_id).unwrap();
                let at =
                    sim.volume_at(REGION, item.instance_id.as_ref().unwrap(), item.device.as_ref().unwrap()).unwrap();
                at.map(|v| sim.fingerprint(REGION, &v).unwrap())
            }
            ResourceKind::Database => sim.fingerprint(REGION, resource_id).ok(),
        };
        if now.as_ref() != Some(fingerprint) {
            found.push(format!("{resource_id} holds {now:?}, not {fingerprint} ({status})"));
        }
    }
    // Everything the restore made is listed in its record or deleted.
    let listed: BTreeSet<String> = restore
        .iter()
        .flat_map(|r| &r.items)
        .flat_map(|i| [i.new_resource_id.clone(), i.replaced_resource_id.clone()])
        .flatten()
        .collect();
    for volume in sim.volume_ids(REGION).unwrap() {
        if !before.volumes.contains(&volume) && !listed.contains(&volume) {
            found.push(format!("volume {volume} is listed nowhere"));
        }
    }
    for db in sim.database_ids(REGION).unwrap() {
        if !before.databases.contains(&db) && !listed.contains(&db) {
            found.push(format!("database {db} is listed nowhere"));
        }
    }
    // Snapshots: the safety backup's are listed in its own record (a cancel can end the
    // restore before it wrote the safety backup's id down).
    let mut snapshots_listed = before.snapshots.clone();
    let page = c.app.store.list_owned(Collection::Backups, SI, 10, None).await.unwrap();
    for doc in page.documents {
        let backup: BackupRecord = c.app.backups.get(&doc.id).await.unwrap();
        snapshots_listed.extend(backup.items.iter().filter_map(|i| i.snapshot_id.clone()));
    }
    for snapshot in sim.snapshot_ids(REGION).unwrap() {
        if !snapshots_listed.contains(&snapshot) {
            found.push(format!("snapshot {snapshot} is listed nowhere"));
        }
    }
    // The restore ended and holds no lock.
    let Some(restore) = restore else { return found };
    if !restore.status.is_terminal() {
        found.push(format!("the restore is {}", restore.status.as_str()));
    }
    let doc = c.app.store.get(Collection::Restores, restore.restore_id.as_str()).await.unwrap().unwrap();
    if doc.lock.is_some() {
        found.push(format!("the restore still holds {:?}", doc.lock));
    }
    found
}

/// Makes the k-th call (or, for `WriteFails`, the k-th store write) go wrong that way.
fn arm(c: &Sandbox, mishap: Mishap, k: u64) {
    match mishap {
        Mishap::Dies => c.wire.arm(k, Trip::Die),
        Mishap::Cancelled => {
            let app = c.app.clone();
            c.wire.arm(
                k,
                Trip::Then(Box::new(move || {
                    let app = app.clone();
                    Box::pin(async move {
                        if let Some(restore) = the_restore(&app).await {
                            let id = RestoreId::parse("restore id", &restore.restore_id).unwrap();
                            let _ = app.restores.cancel(&id).await;
                        }
                    })
                })),
            )
        }
        Mishap::Refused => c.sim.fail_call(k, None, "SimulatedFailure", "refused for good (simulated)").unwrap(),
        Mishap::WriteFails => c.wire.arm_write(k, WriteTrip::Fails),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mishap {
    Dies,
    Cancelled,
    Refused,
    /// The k-th store write fails (k counts writes, not calls).
    WriteFails,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_restore_finishes_or_rolls_back_at_every_call() {
    let before = prepare().await;
    let backup_id = before.backup.backup_id.to_string();
    let mut cases = 0;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for safety_backup in [false, true] {
        // GIVEN how many mutating calls the restore makes when nothing goes wrong
        let clean = Sandbox::copy_of(&before.world);
        let restore = run(&clean, &backup_id, safety_backup).await.expect("the restore was written");
        assert_eq!(restore.status, JobStatus::Succeeded, "{restore:#?}");
        assert!(breaches(&clean, &before, Some(&restore)).await.is_empty());
        let (calls, writes) = (clean.wire.mutations(), clean.wire.writes());
        for mishap in [Mishap::Dies, Mishap::Cancelled, Mishap::Refused, Mishap::WriteFails] {
            let points = if mishap == Mishap::WriteFails { writes } else { calls };
            for k in 1..=points {
                // WHEN the k-th call goes wrong that way
                let c = Sandbox::copy_of(&before.world);
                arm(&c, mishap, k);
                let restore = run(&c, &backup_id, safety_backup).await;
                cases += 1;
                let status = restore.as_ref().map_or("not started (answered an error)", |r| r.status.as_str());
                *outcomes.entry(format!("{mishap:?} → {status}")).or_default() += 1;
                // THEN poll-status brought it to an end that leaves the service instance whole
                for breach in breaches(&c, &before, restore.as_ref()).await {
                    problems.push(format!(
                        "safety backup {safety_backup}, point {k} of {points} {mishap:?}: {breach}\n  {:?}",
                        restore.as_ref().map(|r| &r.error)
                    ));
                }
            }
        }
    }
    println!("in-place restore cases run: {cases}");
    for (outcome, count) in &outcomes {
        println!("  {outcome}: {count}");
    }
    assert!(problems.is_empty(), "{} breaches:\n{}", problems.len(), problems.join("\n"));
    assert!(cases >= 100, "only {cases} cases ran");
}

/// What a clone may leave behind, whatever happened: no image registered; every instance,
/// volume and database it made named by its record (an instance in `instances`, a volume on
/// a listed instance or an item's, a database under its item's clone name), each instance
/// launched once; the originals untouched and running; the point no longer held.
async fn clone_breaches(c: &Sandbox, before: &Before, restore: Option<&RestoreRecord>) -> Vec<String> {
    let mut found = Vec::new();
    let sim = &c.sim;
    let images = sim.image_ids(REGION).unwrap();
    if !images.is_empty() {
        found.push(format!("images left registered: {images:?}"));
    }
    let cloud = c.app.clouds.home();
    let clones = cloud.find_instances(tag::SERVICE_INSTANCE, SI).await.unwrap();
    let launched: BTreeSet<String> =
        restore.iter().flat_map(|r| &r.instances).filter_map(|l| l.new_instance_id.clone()).collect();
    let mut per_source: BTreeMap<String, usize> = BTreeMap::new();
    for (instance, tags) in &clones {
        if !launched.contains(instance) {
            found.push(format!("instance {instance} is listed nowhere ({tags:?})"));
        }
        *per_source.entry(tags.get(tag::CLONE_OF).cloned().unwrap_or_default()).or_default() += 1;
    }
    for (source, count) in per_source.iter().filter(|(_, n)| **n > 1) {
        found.push(format!("{source} was launched {count} times"));
    }
    let on_launched: BTreeSet<String> = cloud
        .describe_instances(&launched.iter().cloned().collect::<Vec<_>>())
        .await
        .unwrap()
        .into_iter()
        .flat_map(|i| i.volumes.into_iter().map(|v| v.volume_id))
        .collect();
    let items: BTreeSet<String> =
        restore.iter().flat_map(|r| &r.items).filter_map(|i| i.new_resource_id.clone()).collect();
    for volume in sim.volume_ids(REGION).unwrap() {
        if !before.volumes.contains(&volume) && !on_launched.contains(&volume) && !items.contains(&volume) {
            found.push(format!("volume {volume} is listed nowhere"));
        }
    }
    let clone_names: BTreeSet<String> = restore
        .iter()
        .flat_map(|r| r.items.iter().map(move |i| snapnest_core::restore::machine::database_ids(r, &i.resource_id).1))
        .collect();
    for db in sim.database_ids(REGION).unwrap() {
        if !before.databases.contains(&db) && !clone_names.contains(&db) {
            found.push(format!("database {db} is listed nowhere"));
        }
    }
    // The originals hold what they held before, and run.
    for (resource_id, fingerprint) in &before.current {
        if sim.fingerprint(REGION, resource_id).ok().as_ref() != Some(fingerprint) {
            found.push(format!("{resource_id} changed"));
        }
    }
    for instance in before.backup.items.iter().filter_map(|i| i.instance_id.clone()).collect::<BTreeSet<_>>() {
        if sim.instance_state(REGION, &instance).unwrap() != InstanceState::Running {
            found.push(format!("{instance} does not run"));
        }
    }
    let Some(restore) = restore else { return found };
    if !restore.status.is_terminal() || restore.phase != snapnest_core::model::RestorePhase::Done {
        found.push(format!("the clone is {} in {:?}", restore.status.as_str(), restore.phase));
    }
    // The point expires when due: a finished restore holds it no longer (one whose release
    // failed, a write failing, is released by expire-retention then).
    let point: BackupRecord = c.app.backups.get(&before.backup.backup_id).await.unwrap();
    c.expire(point.expires_at.unwrap() + chrono::Duration::minutes(1)).await;
    let point: BackupRecord = c.app.backups.get(&before.backup.backup_id).await.unwrap();
    if point.status != JobStatus::Expired {
        found.push(format!("the point did not expire: {} held by {:?}", point.status.as_str(), point.restores_running));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_launches_each_instance_once_and_leaves_no_image_at_every_call() {
    let before = prepare().await;
    let backup_id = before.backup.backup_id.to_string();
    let request = RestoreRequest {
        client_token: Some("clone-under-test".into()),
        ..RestoreRequest::new(snapnest_core::model::RestoreMode::Clone)
    };
    let start = |c: &Sandbox| {
        let (app, request, backup_id) = (c.app.clone(), request.clone(), backup_id.clone());
        async move { app.restores.create(&backup_id, &request).await }
    };
    // GIVEN how many mutating calls and writes a clone makes when nothing goes wrong
    let clean = Sandbox::copy_of(&before.world);
    clean.wire.invoke(start(&clean)).await;
    clean.settle().await;
    let restore = the_restore(&clean.app).await.expect("the clone was written");
    assert_eq!(restore.status, JobStatus::Succeeded, "{restore:#?}");
    assert_eq!(restore.instances.len(), 2, "{restore:#?}");
    let (calls, writes) = (clean.wire.mutations(), clean.wire.writes());
    let clean_breaches = clone_breaches(&clean, &before, Some(&restore)).await;
    assert!(clean_breaches.is_empty(), "{clean_breaches:?}");
    let (mut cases, mut problems) = (0, Vec::new());
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for mishap in [Mishap::Dies, Mishap::Cancelled, Mishap::Refused, Mishap::WriteFails] {
        let points = if mishap == Mishap::WriteFails { writes } else { calls };
        for k in 1..=points {
            // WHEN the k-th call (or write) goes wrong that way
            let c = Sandbox::copy_of(&before.world);
            arm(&c, mishap, k);
            c.wire.invoke(start(&c)).await;
            c.settle().await;
            let restore = the_restore(&c.app).await;
            cases += 1;
            let status = restore.as_ref().map_or("not started (answered an error)", |r| r.status.as_str());
            *outcomes.entry(format!("{mishap:?} → {status}")).or_default() += 1;
            // THEN poll-status ends it with nothing made twice, nothing unnamed, no image left
            for breach in clone_breaches(&c, &before, restore.as_ref()).await {
                problems.push(format!("point {k} of {points} {mishap:?}: {breach}"));
            }
        }
    }
    println!("clone cases run: {cases}");
    for (outcome, count) in &outcomes {
        println!("  {outcome}: {count}");
    }
    assert!(problems.is_empty(), "{} breaches:\n{}", problems.len(), problems.join("\n"));
    assert!(cases >= 20, "only {cases} cases ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_polls_at_once_carry_in_place_restores_out_once() {
    // GIVEN si-demo with latency on every call, so two poll-status passes interleave
    let world = Sandbox::with_latency(std::time::Duration::from_millis(1));
    let point = world.backup(SI).await;
    let volumes_before: BTreeSet<String> = world.sim.volume_ids(REGION).unwrap().into_iter().collect();
    let mut listed = BTreeSet::new();
    for run in 0..3 {
        // WHEN an in-place restore is carried out by two poll-status passes at a time
        let Started::Restore(restore) = world.app.restores.create(&point.backup_id, &in_place(false)).await.unwrap()
        else {
            panic!("not a dry run")
        };
        for _ in 0..100 {
            world.clock.advance(chrono::Duration::seconds(10));
            let (a, b) = tokio::join!(world.app.poller.poll_active(), world.app.poller.poll_active());
            let _ = (a, b);
            if world.app.store.list_active(Collection::Restores).await.unwrap().is_empty() {
                break;
            }
        }
        // THEN it succeeded, and made one volume per device: every volume is listed
        let restore = world.app.restores.get(&restore.restore_id).await.unwrap();
        assert_eq!(restore.status, JobStatus::Succeeded, "run {run}: {restore:#?}");
        listed.extend(restore.items.iter().filter_map(|i| i.new_resource_id.clone()));
    }
    for volume in world.sim.volume_ids(REGION).unwrap() {
        assert!(volumes_before.contains(&volume) || listed.contains(&volume), "{volume} is an orphan");
    }
    assert_eq!(world.sim.volume_ids(REGION).unwrap().len(), volumes_before.len() + 3 * 6);
}
