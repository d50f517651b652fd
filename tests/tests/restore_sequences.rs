//! In-place restores one after another, their dry run, their roll-back on request, and
//! what becomes of what they replaced — on the simulated cloud, on simulated time.

use std::collections::BTreeSet;

use serde_json::json;
use snapnest_core::cloud::tag;
use snapnest_core::model::{BackupItem, BackupRecord, ReplacedState, ResourceKind, RestoreRecord};
use snapnest_core::restore::plan::RestorePlan;
use snapnest_core::restore::Started;
use snapnest_core::status::JobStatus;
use snapnest_e2e::sandbox::{in_place, Sandbox, REGION};
use snapnest_e2e::{call, expire_at, http_event};
use snapnest_local::simulated::{SimCall, DEMO_SERVICE_INSTANCE};

const SI: &str = DEMO_SERVICE_INSTANCE;

/// What a device or database holds now, by the point's resource it stands for.
fn data(world: &Sandbox, point: &BackupRecord) -> Vec<(String, String)> {
    point
        .items
        .iter()
        .map(|item| (place(item), world.sim.fingerprint(REGION, &in_service(world, item)).unwrap()))
        .collect()
}

/// Where a point's resource is in service: its instance and device, or its DB id.
fn place(item: &BackupItem) -> String {
    match item.kind {
        ResourceKind::Volume => format!("{} {}", item.instance_id.as_deref().unwrap(), item.device.as_deref().unwrap()),
        ResourceKind::Database => item.resource_id.clone(),
    }
}

/// What a backup point covers, as places.
fn places(point: &BackupRecord) -> BTreeSet<String> {
    point.items.iter().map(place).collect()
}

/// The volume or database in service now where a point's resource was.
fn in_service(world: &Sandbox, item: &BackupItem) -> String {
    match item.kind {
        ResourceKind::Volume => world
            .sim
            .volume_at(REGION, item.instance_id.as_ref().unwrap(), item.device.as_ref().unwrap())
            .unwrap()
            .expect("every device holds a volume"),
        ResourceKind::Database => item.resource_id.clone(),
    }
}

fn write_everything(world: &Sandbox, point: &BackupRecord) {
    for item in &point.items {
        world.sim.write_data(REGION, &in_service(world, item)).unwrap();
    }
}

#[tokio::test]
async fn the_same_point_twice_and_an_older_point_after_a_newer_one_restore_in_place() {
    // GIVEN two points of si-demo with different data, and newer data since
    let world = Sandbox::new();
    let older = world.backup(SI).await;
    let at_older = data(&world, &older);
    write_everything(&world, &older);
    let newer = world.backup(SI).await;
    let at_newer = data(&world, &newer);
    write_everything(&world, &newer);
    assert_ne!(at_older, at_newer);

    // WHEN the newer point is restored in place, twice
    for run in 1..=2 {
        let restore = world.restore(&newer.backup_id, &in_place(false)).await;
        // THEN each time every device and the database hold the newer point's data
        assert_eq!(restore.status, JobStatus::Succeeded, "run {run}: {restore:#?}");
        assert_eq!(data(&world, &newer), at_newer, "run {run}");
        // AND what it replaced is kept, tagged with the restore, out of the service instance
        for item in &restore.items {
            assert_eq!(item.replaced_state, Some(ReplacedState::Kept), "{item:?}");
        }
        let (_, _, old_db) = old_database(&restore);
        let (_, _, tags) = world.sim.database(REGION, &old_db).unwrap().expect("the replaced database is kept");
        assert_eq!(tags.get(tag::REPLACED_BY), Some(&restore.restore_id.to_string()));
        assert!(!tags.contains_key("service-instance-id"), "{tags:?}");
    }
    // WHEN the older point is restored after the newer one THEN it brings the older data back
    let restore = world.restore(&older.backup_id, &in_place(false)).await;
    assert_eq!(restore.status, JobStatus::Succeeded, "{restore:#?}");
    assert_eq!(data(&world, &older), at_older);

    // AND a backup now covers exactly what the first one did: the replaced ones are not in it
    let after = world.backup(SI).await;
    assert_eq!(after.status, JobStatus::Succeeded);
    assert_eq!(places(&after), places(&older));
    assert_eq!(after.items.len(), 7);
}

fn old_database(restore: &RestoreRecord) -> (String, String, String) {
    let item = restore.items.iter().find(|i| i.kind == ResourceKind::Database).unwrap();
    (item.resource_id.clone(), item.new_resource_id.clone().unwrap(), item.replaced_resource_id.clone().unwrap())
}

#[tokio::test]
async fn the_demo_five_times_keeps_seven_items() {
    // GIVEN si-demo, WHEN it is backed up and restored in place (with its safety backup) five times
    let world = Sandbox::new();
    for run in 1..=5 {
        let point = world.backup(SI).await;
        // THEN every backup has the same seven items
        assert_eq!(
            point.items.len(),
            7,
            "run {run}: {:?}",
            point.items.iter().map(|i| &i.resource_id).collect::<Vec<_>>()
        );
        let restore = world.restore(&point.backup_id, &in_place(true)).await;
        assert_eq!(restore.status, JobStatus::Succeeded, "run {run}: {restore:#?}");
    }
}

/// A call as the plan names it, for comparing with what the cloud saw.
fn call_of(c: &SimCall) -> Option<String> {
    let a = &c.args;
    Some(match c.op.as_str() {
        "stop_instances" | "start_instances" => format!("{} {}", c.op, a.join(",")),
        "create_volume" => format!("create_volume {} {}", a[0], a[1]),
        "detach_volume" => format!("detach_volume {} {}", a[0], a[1]),
        "attach_volume" => format!("attach_volume {} {}", a[0], a[2]),
        "restore_database" => format!("restore_database {} {}", a[0], a[1]),
        "rename_database" => format!("rename_database {} {}", a[0], a[1]),
        // Tags on what was replaced: named by the plan as "kept".
        "tag_resource" | "untag_resource" => return None,
        other => format!("{other} {}", a.join(" ")),
    })
}

/// The calls a plan says the restore makes, in the same words.
fn calls_of(plan: &RestorePlan) -> Vec<String> {
    let mut calls = vec![format!("stop_instances {}", plan.stop_instances.join(","))];
    for v in &plan.volumes {
        calls.push(format!("create_volume {} {}", v.snapshot_id, v.availability_zone.as_deref().unwrap()));
        let (instance, device) = (v.instance_id.as_deref().unwrap(), v.device.as_deref().unwrap());
        if let Some(replaced) = &v.replaces_volume_id {
            calls.push(format!("detach_volume {instance} {replaced}"));
        }
        calls.push(format!("attach_volume {instance} {device}"));
        if v.settings.as_ref().is_some_and(|s| s.delete_on_termination) {
            calls.push(format!("set_delete_on_termination {instance} {device} true"));
        }
    }
    for d in &plan.databases {
        calls.push(format!("restore_database {} {}", d.snapshot_id, d.restored_as));
        if let Some(kept) = &d.current_renamed_to {
            calls.push(format!("rename_database {} {kept}", d.db_id));
        }
        calls.push(format!("rename_database {} {}", d.restored_as, d.final_id));
        // Made unprotected (a roll-back can delete it), protected once committed.
        if d.settings.as_ref().is_some_and(|s| s.deletion_protection) {
            calls.push(format!("set_deletion_protection {} true", d.final_id));
        }
    }
    calls.push(format!("start_instances {}", plan.stop_instances.join(",")));
    calls.sort();
    calls
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_is_what_the_restore_then_does() {
    // GIVEN a point of si-demo
    let world = Sandbox::new();
    let point = world.backup(SI).await;
    let calls_before = world.sim.calls().unwrap().len();
    // WHEN its in-place restore is asked for as a dry run through the restore function
    let body = json!({"mode": "in_place", "safety_backup": false, "dry_run": true});
    let event = http_event("restore.json", &[("BACKUP_ID", &point.backup_id)], Some(&body));
    let (status, answer) = call(restore::router(world.app.clone()), event).await;
    // THEN it answers 200 with the plan, and nothing was called or written
    assert_eq!(status, 200, "{answer}");
    let plan: RestorePlan = serde_json::from_value(answer.clone()).unwrap();
    assert_eq!(world.sim.calls().unwrap().len(), calls_before);
    let restores = world.app.store.list_owned(snapnest_core::store::Collection::Restores, SI, 10, None).await.unwrap();
    assert!(restores.documents.is_empty());
    assert_eq!(plan.stop_instances.len(), 2);
    assert_eq!(plan.volumes.len(), 6);
    assert!(plan.volumes.iter().all(|v| v.replaces_volume_id.as_ref() == Some(&v.source_volume_id)));
    assert!(plan.replaced_kept_until.is_some());

    // WHEN the restore runs
    let Started::Restore(restore) = world.app.restores.create(&point.backup_id, &in_place(false)).await.unwrap() else {
        panic!("not a dry run")
    };
    world.settle().await;
    let restore: RestoreRecord = world.app.restores.get(&restore.restore_id).await.unwrap();
    assert_eq!(restore.status, JobStatus::Succeeded);
    // THEN the cloud saw exactly the plan's calls (the database names carry the restore's id)
    let suffix = |id: &str| id.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<String>();
    let (plan_suffix, restore_suffix) = (suffix(&plan.restore_id), suffix(&restore.restore_id));
    let mut made: Vec<String> = world.sim.calls().unwrap()[calls_before..]
        .iter()
        .filter_map(call_of)
        .map(|c| c.replace(&restore_suffix, &plan_suffix))
        .collect();
    made.sort();
    assert_eq!(made, calls_of(&plan));
}

#[tokio::test]
async fn a_finished_restore_rolls_back_on_request_and_what_it_replaced_expires_after_kept_until() {
    // GIVEN a point, newer data, and a finished in-place restore of the point
    let world = Sandbox::new();
    let point = world.backup(SI).await;
    write_everything(&world, &point);
    let before = data(&world, &point);
    let restore = world.restore(&point.backup_id, &in_place(false)).await;
    assert_eq!(restore.status, JobStatus::Succeeded);
    // WHEN the user asks for its roll-back through the restore function
    let event = http_event("restore-rollback.json", &[("RESTORE_ID", &restore.restore_id)], None);
    let (status, answer) = call(restore::router(world.app.clone()), event.clone()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "RollingBack");
    world.settle().await;
    // THEN it ends RolledBack with the data of before the restore, nothing it made left
    let rolled_back = world.app.restores.get(&restore.restore_id).await.unwrap();
    assert_eq!(rolled_back.status, JobStatus::RolledBack, "{rolled_back:#?}");
    assert_eq!(data(&world, &point), before);
    for item in &rolled_back.items {
        assert_eq!(item.replaced_state, Some(ReplacedState::Restored));
        let made = item.new_resource_id.as_deref().unwrap();
        if item.kind == ResourceKind::Volume {
            assert!(!world.sim.volume_ids(REGION).unwrap().contains(&made.to_owned()), "{made} was deleted");
        }
    }
    assert_eq!(world.sim.database_ids(REGION).unwrap(), vec![format!("{SI}-mysql")]);
    // AND a second roll-back is a 409
    let (status, answer) = call(restore::router(world.app.clone()), event).await;
    assert_eq!((status, answer["error"].as_str()), (409, Some("RollbackNotPossible")), "{answer}");

    // GIVEN another finished restore, WHEN expire-retention runs before and after kept_until
    let restore = world.restore(&point.backup_id, &in_place(false)).await;
    let kept_until = restore.kept_until.unwrap();
    let early = expire_at(&world.app, kept_until - chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(early.replaced_deleted, 0);
    let late = expire_at(&world.app, kept_until + chrono::Duration::minutes(1)).await.unwrap();
    // THEN after it every replaced volume is deleted, the replaced database kept because its
    // deletion protection is on (the user's), and the record says so; a roll-back is no
    // longer possible
    assert_eq!(late.replaced_deleted, 6, "{late:?}");
    let expired = world.app.restores.get(&restore.restore_id).await.unwrap();
    for item in &expired.items {
        let replaced = item.replaced_resource_id.clone().unwrap();
        match item.kind {
            ResourceKind::Volume => {
                assert_eq!(item.replaced_state, Some(ReplacedState::Deleted));
                assert!(!world.sim.volume_ids(REGION).unwrap().contains(&replaced));
            }
            ResourceKind::Database => {
                assert_eq!(item.replaced_state, Some(ReplacedState::Released));
                assert!(item.error.as_deref().unwrap().contains("deletion protection"), "{item:?}");
                assert!(world.sim.database_ids(REGION).unwrap().contains(&replaced));
            }
        }
    }
    let event = http_event("restore-rollback.json", &[("RESTORE_ID", &restore.restore_id)], None);
    let (status, _) = call(restore::router(world.app.clone()), event).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn an_instance_that_cannot_be_stopped_fails_the_restore_before_anything_is_swapped() {
    // GIVEN a point, and an instance whose stop the cloud refuses
    let world = Sandbox::new();
    let point = world.backup(SI).await;
    let instance = point.items[0].instance_id.clone().unwrap();
    let message = format!("The instance '{instance}' does not have an 'ebs' root device type and cannot be stopped.");
    world.sim.refuse_stop(REGION, &instance, "UnsupportedOperation", &message).unwrap();
    let volumes = world.sim.volume_ids(REGION).unwrap();
    // WHEN it is restored in place
    let restore = world.restore(&point.backup_id, &in_place(false)).await;
    // THEN it failed with the cloud's message, changed and left nothing, and holds no lock
    assert_eq!(restore.status, JobStatus::Failed, "{restore:#?}");
    assert!(restore.error.as_deref().unwrap().contains(&message), "{:?}", restore.error);
    assert_eq!(world.sim.volume_ids(REGION).unwrap(), volumes);
    let doc = world.app.store.get(snapnest_core::store::Collection::Restores, &restore.restore_id).await.unwrap();
    assert!(doc.unwrap().lock.is_none());
    // AND a clone of the same point can run at once
    let mut clone = in_place(false);
    clone.mode = snapnest_core::model::RestoreMode::Clone;
    assert_eq!(world.restore(&point.backup_id, &clone).await.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn a_restored_volume_and_database_keep_the_backed_up_configuration() {
    // GIVEN a point of si-demo (gp3 roots that go with their instance, encrypted provisioned
    // data volumes, a Multi-AZ database in its own subnet and groups)
    let world = Sandbox::new();
    let point = world.backup(SI).await;
    assert!(point.items.iter().all(|i| i.volume_settings.is_some() || i.database_settings.is_some()));
    // WHEN it is restored in place
    let restore = world.restore(&point.backup_id, &in_place(false)).await;
    assert_eq!(restore.status, JobStatus::Succeeded);
    // THEN what is in service now is configured as what was backed up
    let now = world.app.clouds.home().discover("service-instance-id", SI).await.unwrap();
    for item in point.items.iter().filter(|i| i.kind == ResourceKind::Volume) {
        let instance = now.instances.iter().find(|i| Some(&i.instance_id) == item.instance_id.as_ref()).unwrap();
        let volume = instance.volumes.iter().find(|v| Some(&v.device) == item.device.as_ref()).unwrap();
        assert_ne!(Some(&volume.volume_id), Some(&item.resource_id), "restored, not the original");
        assert_eq!(Some(&volume.settings), item.volume_settings.as_ref(), "{}", volume.device);
    }
    let database = point.items.iter().find(|i| i.kind == ResourceKind::Database).unwrap();
    let serving = now.databases.iter().find(|d| d.db_id == database.resource_id).unwrap();
    assert_eq!(Some(&serving.settings), database.database_settings.as_ref());
    assert!(
        serving.settings.multi_az && serving.settings.deletion_protection && serving.settings.subnet_group.is_some()
    );
}

#[tokio::test]
async fn one_disk_is_restored_in_place_and_nothing_else_changes() {
    // GIVEN a point of si-demo and new data written everywhere since
    let world = Sandbox::new();
    let point = world.backup(SI).await;
    write_everything(&world, &point);
    let before = data(&world, &point);
    let disk = point
        .items
        .iter()
        .find(|i| i.kind == ResourceKind::Volume && i.device.as_deref() == Some("/dev/xvdb"))
        .unwrap();
    // WHEN only that disk is restored in place
    let mut request = in_place(false);
    request.resource_ids = Some(vec![disk.resource_id.clone()]);
    let restore = world.restore(&point.backup_id, &request).await;
    // THEN only its device holds the backed-up data; every other device and the database
    // hold what they held, and only its instance was stopped (and runs again)
    assert_eq!(restore.status, JobStatus::Succeeded, "{restore:#?}");
    assert_eq!(restore.items.len(), 1);
    assert_eq!(restore.stopped_instance_ids, vec![disk.instance_id.clone().unwrap()]);
    let after = data(&world, &point);
    for ((place, then), (_, now)) in before.iter().zip(&after) {
        if *place == self::place(disk) {
            assert_ne!(then, now, "{place} was restored");
        } else {
            assert_eq!(then, now, "{place} is untouched");
        }
    }
}
