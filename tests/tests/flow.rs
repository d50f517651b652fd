//! The whole flow on the embedded store and the simulated cloud, through the functions'
//! own handlers and the events in `events/`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snapnest_core::cloud::{tag, Tags, VolumeSelection};
use snapnest_core::model::{BackupRecord, RestoreRecord};
use snapnest_core::status::{ItemStatus, JobStatus};
use snapnest_core::Snapnest;
use snapnest_e2e::{call, event, http_event, local_service, scheduled_event};
use snapnest_local::simulated::SimulatedCloud;
use std::sync::Arc;

const REGION: &str = "us-east-1";

async fn start_backup(app: &Arc<Snapnest>, si: &str, body: Value) -> (u16, Value) {
    let ev = http_event("create-backup.json", &[("si-demo", si)], Some(&body));
    call(create_backup::router(app.clone()), ev).await
}

async fn get(app: &Arc<Snapnest>, file: &str, placeholder: &str, id: &str) -> (u16, Value) {
    let ev = http_event(file, &[(placeholder, id)], None);
    call(admin_api::router(app.clone()), ev).await
}

/// Runs poll-status with its event until the record at `file` leaves Pending/Running.
async fn poll_until_done(app: &Arc<Snapnest>, file: &str, placeholder: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        poll_status::handle(app, scheduled_event("poll-status.json"), None).await.expect("poll-status pass");
        let (status, record) = get(app, file, placeholder, id).await;
        assert_eq!(status, 200, "{record}");
        if !matches!(record["status"].as_str(), Some("Pending" | "Running")) {
            return record;
        }
        assert!(Instant::now() < deadline, "{id} did not finish: {record:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn fingerprints(sim: &SimulatedCloud, record: &Value) -> HashMap<String, String> {
    record["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let id = i["resource_id"].as_str().unwrap().to_owned();
            (id.clone(), sim.fingerprint(REGION, &id).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn backup_then_in_place_restore_brings_back_the_data_of_backup_time() {
    let dir = tempfile::tempdir().unwrap();
    let (app, sim) = local_service(dir.path(), &[]).await;

    let (status, created) = start_backup(&app, "si-demo", json!({"retention_days": 7})).await;
    assert_eq!(status, 202, "{created}");
    let backup_id = created["backup_id"].as_str().unwrap().to_owned();
    let at_backup = fingerprints(&sim, &created);

    let backup = poll_until_done(&app, "admin-api-get-backup.json", "BACKUP_ID", &backup_id).await;
    assert_eq!(backup["status"], "Succeeded", "{backup:#}");
    let items = backup["items"].as_array().unwrap();
    assert_eq!(items.len(), 7, "2 instances x 3 volumes + 1 database");
    assert!(items.iter().all(|i| i["status"] == "Succeeded" && i["snapshot_id"].is_string() && i["progress"] == 100));
    assert!(items.iter().filter(|i| i["kind"] == "volume").all(|i| i["consistent_group"] == true));
    assert!(backup["snapshot_bytes"].as_u64().unwrap() > 0);
    assert!(backup["finished_at"].is_string());
    // Snapshots carry the point's tags, so the console shows the true retention.
    let snapshot = items[0]["snapshot_id"].as_str().unwrap();
    let tags = sim.snapshot_tags(REGION, snapshot).unwrap();
    assert_eq!(tags[tag::BACKUP_ID], backup_id);
    assert_eq!(tags[tag::SERVICE_INSTANCE], "si-demo");
    assert_eq!(tags[tag::EXPIRES_AT], backup["expires_at"].as_str().unwrap().replace('Z', "+00:00"));

    // New data is written after the backup...
    for id in at_backup.keys() {
        sim.write_data(REGION, id).unwrap();
    }
    assert_ne!(fingerprints(&sim, &created), at_backup);

    // ...and the in-place restore brings back the data of backup time.
    let ev = http_event("restore.json", &[("BACKUP_ID", &backup_id)], None);
    let (status, restore) = call(restore::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{restore}");
    let restore_id = restore["restore_id"].as_str().unwrap().to_owned();
    let restore = poll_until_done(&app, "admin-api-get-restore.json", "RESTORE_ID", &restore_id).await;
    assert_eq!(restore["status"], "Succeeded", "{restore:#}");
    assert!(restore["finished_at"].is_string());

    for item in backup["items"].as_array().unwrap() {
        let original = item["resource_id"].as_str().unwrap();
        let now_serving = match item["kind"].as_str().unwrap() {
            "volume" => sim
                .volume_at(REGION, item["instance_id"].as_str().unwrap(), item["device"].as_str().unwrap())
                .unwrap()
                .expect("a volume is attached at the device"),
            // The restored database took over the original identifier.
            _ => original.to_owned(),
        };
        if item["kind"] == "volume" {
            assert_ne!(now_serving, original, "a new volume was swapped in");
        }
        assert_eq!(sim.fingerprint(REGION, &now_serving).unwrap(), at_backup[original], "{original}");
    }
    // The safety backup holds the data from just before the restore.
    let safety_id = restore["safety_backup_id"].as_str().expect("a safety backup was taken");
    let (_, safety) = get(&app, "admin-api-get-backup.json", "BACKUP_ID", safety_id).await;
    assert_eq!(safety["status"], "Succeeded");
    assert_eq!(safety["trigger"], "safety_backup");
    // Instances run again.
    let record: RestoreRecord = serde_json::from_value(restore.clone()).unwrap();
    let cloud = app.clouds.home();
    for instance in cloud.describe_instances(&record.stopped_instance_ids).await.unwrap() {
        assert_eq!(instance.state, snapnest_core::cloud::InstanceState::Running, "{}", instance.instance_id);
    }
    assert_eq!(record.stopped_instance_ids.len(), 2);
}

#[tokio::test]
async fn a_snapshot_error_makes_the_point_partially_failed_with_the_cause_on_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = local_service(dir.path(), &[("SNAPNEST_SIM_FAULTS", "snapshot_error=0.4,seed=3")]).await;
    let (status, created) = start_backup(&app, "si-demo", json!({})).await;
    assert_eq!(status, 202, "{created}");
    let id = created["backup_id"].as_str().unwrap();
    let backup = poll_until_done(&app, "admin-api-get-backup.json", "BACKUP_ID", id).await;
    assert_eq!(backup["status"], "PartiallyFailed", "{backup:#}");
    let failed: Vec<_> = backup["items"].as_array().unwrap().iter().filter(|i| i["status"] == "Failed").collect();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|i| i["error"].as_str().unwrap().contains("Snapshot creation failed")));
    // The answer says so first: how many failed, the record's cause, what to do next.
    let summary = &backup["summary"];
    assert_eq!(summary["resources"]["failed"], failed.len(), "{summary:#}");
    assert_eq!(summary["resources"]["total"], 7);
    let cause = summary["cause"].as_str().unwrap();
    assert!(cause.starts_with(&format!("{} of 7 resources failed; first: ", failed.len())), "{cause}");
    assert!(cause.contains("Snapshot creation failed"), "{cause}");
    assert!(summary["next"].as_str().unwrap().contains("POST /service-instances/si-demo/backups"), "{summary:#}");

    // In place, a partial point needs the user's say-so; nothing is written without it.
    let restore = |body: serde_json::Value| http_event("restore.json", &[("BACKUP_ID", id)], Some(&body));
    let (status, refused) = call(restore::router(app.clone()), restore(json!({"mode": "in_place"}))).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("BackupIncomplete")), "{refused}");
    let first_failed = failed[0]["resource_id"].as_str().unwrap();
    assert!(refused["message"].as_str().unwrap().contains(first_failed), "{refused}");
    let restores = app.jobs.list(Some(snapnest_core::jobs::JobKind::Restore), None, 100, None).await.unwrap().0;
    assert!(restores.is_empty(), "a refused restore wrote nothing: {restores:?}");
    let body = json!({"mode": "in_place", "allow_partial": true, "safety_backup": false});
    let (status, started) = call(restore::router(app.clone()), restore(body)).await;
    assert_eq!(status, 202, "{started}");
    let succeeded = backup["items"].as_array().unwrap().iter().filter(|i| i["status"] == "Succeeded").count();
    assert_eq!(started["items"].as_array().unwrap().len(), succeeded, "only what the point holds is restored");
}

#[tokio::test]
async fn throttling_is_retried_and_the_backup_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = local_service(dir.path(), &[("SNAPNEST_SIM_FAULTS", "throttle=0.3,seed=11")]).await;
    let (status, created) = start_backup(&app, "si-demo", json!({})).await;
    assert_eq!(status, 202, "{created}");
    let backup =
        poll_until_done(&app, "admin-api-get-backup.json", "BACKUP_ID", created["backup_id"].as_str().unwrap()).await;
    assert_eq!(backup["status"], "Succeeded", "{backup:#}");
}

#[tokio::test]
async fn a_second_backup_while_one_runs_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = local_service(dir.path(), &[("SNAPNEST_SIM_SNAPSHOT_SECONDS", "60")]).await;
    let (status, first) = start_backup(&app, "si-demo", json!({})).await;
    assert_eq!(status, 202);
    let (status, second) = start_backup(&app, "si-demo", json!({})).await;
    assert_eq!(status, 409, "{second}");
    assert_eq!(second["error"], "BackupAlreadyRunning");
    assert!(second["message"].as_str().unwrap().contains(first["backup_id"].as_str().unwrap()));
    let (_, list) = get(&app, "admin-api-list-backups.json", "si-demo", "si-demo").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "nothing was written for the refused request");
}

#[tokio::test]
async fn bad_requests_are_400s_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, sim) = local_service(dir.path(), &[]).await;
    sim.add_service_instance(REGION, "si-big", 100, 1, 0, true).unwrap();

    let hundred: Vec<String> = (0..100).map(|n| format!("i-{n:017x}")).collect();
    let cases = [
        ("si-demo", json!({"instance_ids": hundred}), "TooManyInstances"),
        ("si-big", json!({}), "TooManyInstances"),
        ("si-demo", json!({"retention_days": 0}), "InvalidRetention"),
        ("si-demo", json!({"retention_days": 65537}), "InvalidRetention"),
        ("si-demo", json!({"destination_region": "moon-1"}), "InvalidRegion"),
        ("si-demo", json!({"surprise": true}), "InvalidRequest"),
        ("si-demo", json!({"instance_ids": "i-1"}), "InvalidRequest"),
    ];
    for (si, body, code) in cases {
        let (status, answer) = start_backup(&app, si, body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["error"], code, "{body}");
        assert!(!answer["message"].as_str().unwrap().is_empty());
    }
    // Malformed JSON.
    let mut ev = http_event("create-backup.json", &[], None);
    ev["body"] = json!("{\"retention_days\": ");
    let (status, answer) = call(create_backup::router(app.clone()), ev).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("MalformedJson")));
    // Messages a person reads: the field, what to send, no parser positions or Rust types.
    let (_, answer) = start_backup(&app, "si-demo", json!({"retention_days": "seven"})).await;
    assert_eq!(
        answer["message"],
        "request body: retention_days: invalid type: string \"seven\", expected a whole number from 0 to 4294967295"
    );
    let restore = http_event("restore.json", &[("BACKUP_ID", "bk-x")], Some(&json!({"mode": "snapshot"})));
    let (status, answer) = call(restore::router(app.clone()), restore).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["message"],
        "request body: mode: unknown variant `snapshot`, expected one of `in_place`, `clone`, `disaster_recovery`"
    );
    // A huge value is refused without coming back whole: the message quotes its start.
    let token = "x".repeat(6 << 20);
    let (status, answer) = start_backup(&app, "si-demo", json!({"client_token": token})).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("InvalidIdentifier")), "{}", answer["error"]);
    let message = answer["message"].as_str().unwrap();
    assert!(message.len() < 300 && message.contains(&format!("'{}…'", &token[..100])), "{message}");
    // Unknown service instance and unknown ids are 404s.
    let (status, _) = start_backup(&app, "si-nobody", json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = start_backup(&app, "si-demo", json!({"instance_ids": ["i-0000000000000000f"]})).await;
    assert_eq!(status, 404);
    let (status, _) = get(&app, "admin-api-get-backup.json", "BACKUP_ID", "bk-unknown").await;
    assert_eq!(status, 404);

    for si in ["si-demo", "si-big", "si-nobody"] {
        let (_, list) = get(&app, "admin-api-list-backups.json", "si-demo", si).await;
        assert_eq!(list["items"], json!([]), "nothing written for {si}");
    }
}

#[tokio::test]
async fn the_same_client_token_twice_makes_one_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = local_service(dir.path(), &[]).await;
    let (s1, first) = start_backup(&app, "si-demo", json!({"client_token": "nightly-2026-11-21"})).await;
    let (s2, second) = start_backup(&app, "si-demo", json!({"client_token": "nightly-2026-11-21"})).await;
    assert_eq!((s1, s2), (202, 202), "{second}");
    assert_eq!(first["backup_id"], second["backup_id"]);
    let (_, list) = get(&app, "admin-api-list-backups.json", "si-demo", "si-demo").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_released_instance_fails_its_items_and_blocks_only_in_place_restores() {
    let dir = tempfile::tempdir().unwrap();
    let (app, sim) = local_service(dir.path(), &[]).await;
    let (_, created) = start_backup(&app, "si-demo", json!({})).await;
    let id = created["backup_id"].as_str().unwrap().to_owned();
    let backup = poll_until_done(&app, "admin-api-get-backup.json", "BACKUP_ID", &id).await;
    assert_eq!(backup["status"], "Succeeded");
    let victim = backup["items"][0]["instance_id"].as_str().unwrap().to_owned();
    sim.release_instance(REGION, &victim).unwrap();

    let ev = http_event("restore.json", &[("BACKUP_ID", &id)], None);
    let (status, refused) = call(restore::router(app.clone()), ev).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("This instance has been released."));
    let clone = http_event("restore.json", &[("BACKUP_ID", &id)], Some(&json!({"mode": "clone"})));
    let (status, cloned) = call(restore::router(app.clone()), clone).await;
    assert_eq!(status, 202, "{cloned}");
    let cloned =
        poll_until_done(&app, "admin-api-get-restore.json", "RESTORE_ID", cloned["restore_id"].as_str().unwrap()).await;
    assert_eq!(cloned["status"], "Succeeded", "{cloned:#}");
    for item in cloned["items"].as_array().unwrap() {
        let new_id = item["new_resource_id"].as_str().unwrap();
        assert_ne!(new_id, item["resource_id"].as_str().unwrap(), "a clone never replaces the original");
    }
}

#[tokio::test]
async fn a_backup_whose_starter_died_is_finished_by_poll_status_without_duplicate_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (app, sim) = local_service(dir.path(), &[]).await;
    // A backup record written Pending with an expired start lease, as left by a crash...
    let now = chrono::Utc::now();
    let (_, created) = start_backup(&app, "si-demo", json!({})).await;
    let mut record: BackupRecord = serde_json::from_value(created).unwrap();
    record.backup_id = snapnest_core::ids::BackupId::generate();
    record.status = JobStatus::Pending;
    record.start_lease_until = Some(now - chrono::Duration::seconds(1));
    record.client_token = None;
    for item in record.items.iter_mut() {
        *item = snapnest_core::model::BackupItem { status: ItemStatus::Pending, snapshot_id: None, ..item.clone() };
    }
    // (the lock belongs to the first backup: finish it so the store accepts this one)
    poll_until_done(&app, "admin-api-get-backup.json", "BACKUP_ID", &created_id(&app).await).await;
    snapnest_core::records::Records::new(app.store.clone()).insert(&mut record, None).await.unwrap();
    // ...after it had already snapshotted the first instance.
    let instance = record.items[0].instance_id.clone().unwrap();
    let tags = Tags::from([(tag::BACKUP_ID.to_owned(), record.backup_id.to_string())]);
    let early = app.clouds.home().snapshot_instance(&instance, &VolumeSelection::All, &tags).await.unwrap();
    let snapshots_before = sim.snapshot_ids(REGION).unwrap().len();

    let finished = poll_until_done(&app, "admin-api-get-backup.json", "BACKUP_ID", &record.backup_id).await;
    assert_eq!(finished["status"], "Succeeded", "{finished:#}");
    let adopted: Vec<&str> =
        finished["items"].as_array().unwrap().iter().filter_map(|i| i["snapshot_id"].as_str()).collect();
    for s in &early {
        assert!(adopted.contains(&s.snapshot_id.as_str()), "adopted {}", s.snapshot_id);
    }
    // Only the second instance's 3 volumes and the database were snapshotted by the takeover.
    assert_eq!(sim.snapshot_ids(REGION).unwrap().len(), snapshots_before + 4);
}

/// A second point of si-demo, finished, to make permanent.
async fn create_never_expiring(app: &Arc<Snapnest>) -> (u16, Value) {
    let (status, created) = start_backup(app, "si-demo", json!({"retention_days": 2})).await;
    poll_until_done(app, "admin-api-get-backup.json", "BACKUP_ID", created["backup_id"].as_str().unwrap()).await;
    (status, created)
}

async fn created_id(app: &Arc<Snapnest>) -> String {
    let (_, list) = get(app, "admin-api-list-backups.json", "si-demo", "si-demo").await;
    list["items"][0]["backup_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn retention_extends_never_shortens_and_expiry_deletes_only_due_points() {
    let dir = tempfile::tempdir().unwrap();
    let (app, sim) = local_service(dir.path(), &[]).await;
    let (_, created) = start_backup(&app, "si-demo", json!({"retention_days": 1})).await;
    let id = created["backup_id"].as_str().unwrap().to_owned();
    let backup = poll_until_done(&app, "admin-api-get-backup.json", "BACKUP_ID", &id).await;

    let patch = |body: Value| http_event("admin-api-change-retention.json", &[("BACKUP_ID", &id)], Some(&body));
    let (status, extended) = call(admin_api::router(app.clone()), patch(json!({"extend_days": 2}))).await;
    assert_eq!(status, 200, "{extended}");
    let before: chrono::DateTime<chrono::Utc> = backup["expires_at"].as_str().unwrap().parse().unwrap();
    let after: chrono::DateTime<chrono::Utc> = extended["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(after - before, chrono::Duration::days(2));
    let snapshot = backup["items"][0]["snapshot_id"].as_str().unwrap();
    assert_eq!(sim.snapshot_tags(REGION, snapshot).unwrap()[tag::EXPIRES_AT], after.to_rfc3339());
    let (status, shorter) =
        call(admin_api::router(app.clone()), patch(json!({"expires_at": before.to_rfc3339()}))).await;
    assert_eq!((status, shorter["error"].as_str()), (409, Some("RetentionShortened")));
    let (status, _) = call(admin_api::router(app.clone()), patch(json!({"extend_days": 65536}))).await;
    assert_eq!(status, 400, "the total may not pass 65,536 days");

    // Never expiring, then no date can shorten it; a permanent point is never due.
    let (_, never) = create_never_expiring(&app).await;
    let never_id = never["backup_id"].as_str().unwrap().to_owned();
    let patch_never =
        |body: Value| http_event("admin-api-change-retention.json", &[("BACKUP_ID", &never_id)], Some(&body));
    let (status, forever) = call(admin_api::router(app.clone()), patch_never(json!({"never_expire": true}))).await;
    assert_eq!((status, forever["expires_at"].clone()), (200, Value::Null), "{forever}");
    let (status, _) = call(admin_api::router(app.clone()), patch_never(json!({"extend_days": 1}))).await;
    assert_eq!(status, 409);

    // Not due yet: nothing happens.
    let summary = expire_retention::handle(&app, scheduled_event("expire-retention.json"), None).await.unwrap();
    assert_eq!(summary.points_expired, 0);
    // Due four days later (through the domain with a later clock): deleted, one released.
    // One snapshot is used by an AMI (released, kept), one was deleted behind snapnest's back.
    let used = backup["items"][1]["snapshot_id"].as_str().unwrap();
    sim.tamper_snapshot(REGION, used, Some("ami-0123")).unwrap();
    let vanished = backup["items"][2]["snapshot_id"].as_str().unwrap();
    sim.tamper_snapshot(REGION, vanished, None).unwrap();
    let summary = snapnest_e2e::expire_at(&app, chrono::Utc::now() + chrono::Duration::days(4)).await.unwrap();
    assert_eq!((summary.points_expired, summary.snapshots_deleted, summary.snapshots_released), (1, 5, 1));
    assert_eq!(summary.points_damaged, 1);
    let (_, expired) = get(&app, "admin-api-get-backup.json", "BACKUP_ID", &id).await;
    assert_eq!(expired["status"], "Expired");
    assert_eq!(expired["damaged"], true);
    assert_eq!(expired["items"][1]["released"], true);
    assert!(expired["items"][2]["error"].as_str().unwrap().contains("deleted outside snapnest"));
    let left = sim.snapshot_ids(REGION).unwrap();
    for item in backup["items"].as_array().unwrap() {
        let snapshot = item["snapshot_id"].as_str().unwrap();
        assert_eq!(left.iter().any(|s| s == snapshot), snapshot == used, "{snapshot}");
    }
    // Read through the due index: a second run finds nothing.
    let again = snapnest_e2e::expire_at(&app, chrono::Utc::now() + chrono::Duration::days(4)).await.unwrap();
    assert_eq!(again.points_expired, 0);
}

#[tokio::test]
async fn replication_copies_every_snapshot_and_disaster_recovery_restores_from_the_copies() {
    let dir = tempfile::tempdir().unwrap();
    let groups = ("SNAPNEST_REPLICA_OPTION_GROUPS", "us-west-2:si-demo-mysql8-options=si-demo-options-west");
    let (app, sim) = local_service(dir.path(), &[groups]).await;
    let body = json!({"destination_region": "us-west-2", "destination_retention_days": 3});
    let (_, created) = start_backup(&app, "si-demo", body).await;
    let id = created["backup_id"].as_str().unwrap().to_owned();
    poll_until_done(&app, "admin-api-get-backup.json", "BACKUP_ID", &id).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let backup = loop {
        replicate::handle(&app, scheduled_event("replicate.json"), None).await.unwrap();
        let (_, b) = get(&app, "admin-api-get-backup.json", "BACKUP_ID", &id).await;
        if b["replication"]["status"] == "Succeeded" {
            break b;
        }
        assert!(Instant::now() < deadline, "{b:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(backup["replication"]["items"].as_array().unwrap().len(), 7);
    // The database's copy is made with the destination's stand-in for its option group.
    let db_copy = sim.calls().unwrap().into_iter().find(|c| c.op == "copy_db_snapshot").unwrap();
    assert_eq!(db_copy.args.last().map(String::as_str), Some("si-demo-options-west"), "{db_copy:?}");
    let replica = backup["replication"]["items"].as_array().unwrap().iter().find(|i| i["kind"] == "database");
    assert_eq!(replica.unwrap()["option_group"], "si-demo-options-west");
    assert_eq!(sim.snapshot_ids("us-west-2").unwrap().len(), 7);

    // The disks alone, in a zone of the destination, and the database in its subnet group there.
    let body = json!({
        "mode": "disaster_recovery",
        "target": "volumes",
        "availability_zone": "us-west-2c",
        "db_subnet_group": "west-db"
    });
    let dr = http_event("restore.json", &[("BACKUP_ID", &id)], Some(&body));
    let (status, restore) = call(restore::router(app.clone()), dr).await;
    assert_eq!(status, 202, "{restore}");
    assert_eq!(restore["region"], "us-west-2");
    let restore =
        poll_until_done(&app, "admin-api-get-restore.json", "RESTORE_ID", restore["restore_id"].as_str().unwrap())
            .await;
    assert_eq!(restore["status"], "Succeeded", "{restore:#}");
    for item in restore["items"].as_array().unwrap() {
        let original = sim.fingerprint(REGION, item["resource_id"].as_str().unwrap()).unwrap();
        let copy = sim.fingerprint("us-west-2", item["new_resource_id"].as_str().unwrap()).unwrap();
        assert_eq!(copy, original);
        if item["kind"] == "volume" {
            assert_eq!(item["availability_zone"], "us-west-2c");
        } else {
            assert_eq!(item["database_settings"]["subnet_group"], "west-db");
            assert_eq!(item["database_settings"]["option_group"], "si-demo-options-west");
        }
    }
    assert_eq!(restore["instances"], json!([]), "target volumes launches nothing");
}

#[tokio::test]
async fn scheduled_functions_answer_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = local_service(dir.path(), &[]).await;
    let tick = run_policies::handle(&app, scheduled_event("run-policies.json"), None).await.unwrap();
    assert_eq!(tick.backups_started, 0);
    let poll = poll_status::handle(&app, scheduled_event("poll-status.json"), None).await.unwrap();
    assert_eq!(poll.backups_polled, 0);
    let replicate = replicate::handle(&app, scheduled_event("replicate.json"), None).await.unwrap();
    assert_eq!(replicate.points_examined, 0);
    let (status, _) = call(restore::router(app.clone()), event("restore.json")).await;
    assert_eq!(status, 404, "the sample event names no real backup");
}

#[tokio::test]
async fn every_scheduled_run_stops_at_its_time_budget_and_the_next_goes_on() {
    // GIVEN a running backup to be copied to us-west-2, and a policy whose slot is due
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = local_service(dir.path(), &[]).await;
    let (status, created) = start_backup(&app, "si-demo", json!({"destination_region": "us-west-2"})).await;
    assert_eq!(status, 202, "{created}");
    let request = snapnest_core::policy::PolicyRequest {
        name: "hourly".into(),
        interval_hours: Some(1),
        start_time: Some(chrono::Utc::now() - chrono::Duration::minutes(5)),
        retention_days: Some(7),
        ..Default::default()
    };
    app.policies.create(&request).await.unwrap();
    // WHEN each scheduled function's time is already up
    let spent = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    let poll = poll_status::handle(&app, scheduled_event("poll-status.json"), spent).await.unwrap();
    // (the policy's slot comes an hour after its start: the tick runs as of then)
    let slot =
        app.with_clock(Arc::new(snapnest_core::clock::FixedClock(chrono::Utc::now() + chrono::Duration::minutes(56))));
    let tick = slot.policies.run_due_until(spent).await.unwrap();
    // THEN it starts nothing and says so
    assert!(poll.stopped_at_budget && poll.backups_polled == 0, "{poll:?}");
    assert!(tick.stopped_at_budget && tick.backups_started == 0, "{tick:?}");
    // WHEN the next runs have time THEN they go on
    let id = created["backup_id"].as_str().unwrap();
    poll_until_done(&app, "admin-api-get-backup.json", "BACKUP_ID", id).await;
    let copy = replicate::handle(&app, scheduled_event("replicate.json"), spent).await.unwrap();
    assert!(copy.stopped_at_budget && copy.copies_started == 0, "{copy:?}");
    let copy = replicate::handle(&app, scheduled_event("replicate.json"), None).await.unwrap();
    assert!(!copy.stopped_at_budget && copy.copies_started == 7, "{copy:?}");
    let tick = slot.policies.run_due_until(None).await.unwrap();
    assert_eq!((tick.stopped_at_budget, tick.policies_due), (false, 1), "{tick:?}");
}
