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
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::cloud::InstanceState;
use snapnest_core::ids::RestoreId;
use snapnest_core::model::{BackupRecord, ResourceKind, RestoreMode, RestoreRecord, Trigger};
use snapnest_core::restore::{RestoreRequest, Started};
use snapnest_core::status::JobStatus;
use snapnest_core::store::Collection;
use snapnest_core::{Settings, Snapnest};
use snapnest_e2e::tripwire::{SteppingClock, Trip, Tripwire, Wire};
use snapnest_local::embedded::EmbeddedStore;
use snapnest_local::retry::RetryingProvider;
use snapnest_local::simulated::{SimSettings, SimulatedCloud, DEMO_SERVICE_INSTANCE};

const REGION: &str = "us-east-1";
const SI: &str = DEMO_SERVICE_INSTANCE;

struct Case {
    _dir: tempfile::TempDir,
    app: Arc<Snapnest>,
    sim: SimulatedCloud,
    wire: Arc<Wire>,
    clock: Arc<SteppingClock>,
}

fn open(dir: &Path, clock: Arc<SteppingClock>) -> (Arc<Snapnest>, SimulatedCloud, Arc<Wire>) {
    let settings = SimSettings {
        home_region: REGION.into(),
        operation_time: std::time::Duration::ZERO,
        latency: std::time::Duration::ZERO,
        faults: Default::default(),
    };
    let sim = SimulatedCloud::open(dir, settings).expect("simulated cloud");
    let store = Arc::new(EmbeddedStore::open(dir).expect("embedded store"));
    let wire = Arc::new(Wire::default());
    let clouds = Arc::new(Tripwire { inner: Arc::new(RetryingProvider(sim.clone())), wire: wire.clone() });
    let settings = Settings {
        tag_key: "service-instance-id".into(),
        default_retention_days: 7,
        default_destination_region: None,
        keep_replaced_days: 7,
    };
    (Arc::new(Snapnest::new(store, clouds, clock, settings)), sim, wire)
}

/// What the world looked like before each case: the point, and the data at each resource.
struct Before {
    dir: tempfile::TempDir,
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
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SteppingClock::new(Utc::now()));
    let (app, sim, _) = open(dir.path(), clock.clone());
    let origin = BackupOrigin { trigger: Trigger::Manual, policy_id: None };
    let started = app.backups.create(SI, &BackupRequest::default(), origin).await.expect("backup");
    let backup = settle_backup(&app, &clock, &started.backup_id).await;
    assert_eq!(backup.status, JobStatus::Succeeded, "{backup:?}");
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
        dir,
    }
}

async fn settle_backup(app: &Snapnest, clock: &SteppingClock, id: &str) -> BackupRecord {
    for _ in 0..50 {
        clock.advance(chrono::Duration::seconds(10));
        app.poller.poll_active().await.expect("poll");
        let record: BackupRecord = app.backups.get(id).await.expect("read backup");
        if record.status.is_terminal() {
            return record;
        }
    }
    panic!("backup {id} did not finish");
}

/// A fresh copy of the prepared world.
fn case(before: &Before) -> Case {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(before.dir.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let clock = Arc::new(SteppingClock::new(Utc::now() + chrono::Duration::minutes(5)));
    let (app, sim, wire) = open(dir.path(), clock.clone());
    Case { _dir: dir, app, sim, wire, clock }
}

fn request(safety_backup: bool) -> RestoreRequest {
    RestoreRequest {
        mode: RestoreMode::InPlace,
        safety_backup: Some(safety_backup),
        region: None,
        allow_partial: None,
        on_failure: None,
        dry_run: None,
        client_token: Some("restore-under-test".into()),
    }
}

async fn the_restore(app: &Snapnest) -> Option<RestoreRecord> {
    let page = app.store.list_owned(Collection::Restores, SI, 10, None).await.unwrap();
    let doc = page.documents.first()?;
    Some(app.restores.get(&doc.id).await.unwrap())
}

/// Starts the restore and runs poll-status until everything is finished; each invocation
/// may die at the armed call. Returns the restore and the calls made.
async fn run(c: &Case, backup_id: &str, safety_backup: bool) -> RestoreRecord {
    let body = request(safety_backup);
    let create = c.app.restores.create(backup_id, &body);
    if let Some(Ok(Started::Plan(_))) = c.wire.invoke(create).await {
        panic!("not a dry run");
    }
    for _ in 0..200 {
        c.clock.advance(chrono::Duration::seconds(10));
        let _ = c.wire.invoke(c.app.poller.poll_active()).await;
        let restore = the_restore(&c.app).await.expect("the restore record was written before any cloud call");
        let busy = !c.app.store.list_active(Collection::Backups).await.unwrap().is_empty();
        if restore.status.is_terminal() && !busy && !c.app.store.list_active(Collection::Restores).await.unwrap().iter().any(|d| d.id == restore.restore_id.as_str()) {
            return restore;
        }
    }
    panic!("the restore did not finish: {:#?}", the_restore(&c.app).await);
}

/// The invariants every case must end with; a description of each breach.
async fn breaches(c: &Case, before: &Before, restore: &RestoreRecord) -> Vec<String> {
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
    let expected = if restore.status == JobStatus::Succeeded { &before.backed_up } else { &before.current };
    for (resource_id, fingerprint) in expected {
        let now = match before.backup.items.iter().find(|i| &i.resource_id == resource_id).unwrap().kind {
            ResourceKind::Volume => {
                let item = before.backup.items.iter().find(|i| &i.resource_id == resource_id).unwrap();
                let at = sim.volume_at(REGION, item.instance_id.as_ref().unwrap(), item.device.as_ref().unwrap()).unwrap();
                at.map(|v| sim.fingerprint(REGION, &v).unwrap())
            }
            ResourceKind::Database => sim.fingerprint(REGION, resource_id).ok(),
        };
        if now.as_ref() != Some(fingerprint) {
            found.push(format!("{resource_id} holds {now:?}, not {fingerprint} ({})", restore.status.as_str()));
        }
    }
    // Everything the restore made is listed in its record or deleted.
    let listed: BTreeSet<String> = restore
        .items
        .iter()
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
    if !restore.status.is_terminal() {
        found.push(format!("the restore is {}", restore.status.as_str()));
    }
    let doc = c.app.store.get(Collection::Restores, restore.restore_id.as_str()).await.unwrap().unwrap();
    if doc.lock.is_some() {
        found.push(format!("the restore still holds {:?}", doc.lock));
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mishap {
    Dies,
    Cancelled,
    Refused,
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
        let clean = case(&before);
        let restore = run(&clean, &backup_id, safety_backup).await;
        assert_eq!(restore.status, JobStatus::Succeeded, "{restore:#?}");
        assert!(breaches(&clean, &before, &restore).await.is_empty());
        let calls = clean.wire.mutations();
        for mishap in [Mishap::Dies, Mishap::Cancelled, Mishap::Refused] {
            for k in 1..=calls {
                // WHEN the k-th call goes wrong that way
                let c = case(&before);
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
                    Mishap::Refused => {
                        c.sim.fail_call(k, None, "SimulatedFailure", "refused for good (simulated)").unwrap()
                    }
                }
                let restore = run(&c, &backup_id, safety_backup).await;
                cases += 1;
                *outcomes.entry(format!("{mishap:?} → {}", restore.status.as_str())).or_default() += 1;
                // THEN poll-status brought it to an end that leaves the service instance whole
                for breach in breaches(&c, &before, &restore).await {
                    problems.push(format!(
                        "safety backup {safety_backup}, call {k} of {calls} {mishap:?}: {breach}\n  {:?}",
                        restore.error
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
