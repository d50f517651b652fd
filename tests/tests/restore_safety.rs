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

use snapnest_core::cloud::InstanceState;
use snapnest_core::ids::RestoreId;
use snapnest_core::model::{BackupRecord, ResourceKind, RestoreRecord};
use snapnest_core::restore::Started;
use snapnest_core::status::JobStatus;
use snapnest_core::store::Collection;
use snapnest_core::Snapnest;
use snapnest_e2e::sandbox::{in_place, Sandbox, REGION};
use snapnest_e2e::tripwire::Trip;
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
async fn run(c: &Sandbox, backup_id: &str, safety_backup: bool) -> RestoreRecord {
    let mut body = in_place(safety_backup);
    body.client_token = Some("restore-under-test".into());
    if let Some(Ok(Started::Plan(_))) = c.wire.invoke(c.app.restores.create(backup_id, &body)).await {
        panic!("not a dry run");
    }
    c.settle().await;
    the_restore(&c.app).await.expect("the restore record was written before any cloud call")
}

/// The invariants every case must end with; a description of each breach.
async fn breaches(c: &Sandbox, before: &Before, restore: &RestoreRecord) -> Vec<String> {
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
                let at =
                    sim.volume_at(REGION, item.instance_id.as_ref().unwrap(), item.device.as_ref().unwrap()).unwrap();
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
        let clean = Sandbox::copy_of(&before.world);
        let restore = run(&clean, &backup_id, safety_backup).await;
        assert_eq!(restore.status, JobStatus::Succeeded, "{restore:#?}");
        assert!(breaches(&clean, &before, &restore).await.is_empty());
        let calls = clean.wire.mutations();
        for mishap in [Mishap::Dies, Mishap::Cancelled, Mishap::Refused] {
            for k in 1..=calls {
                // WHEN the k-th call goes wrong that way
                let c = Sandbox::copy_of(&before.world);
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
