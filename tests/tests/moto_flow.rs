//! snapnest against the AWS APIs on moto, through the real SDK: the DynamoDB store and the
//! AWS provider, the whole flow through the functions' handlers, then the functions
//! themselves under `cargo lambda watch`. Every step is checked in the emulator itself
//! (snapshots and their tags, attached volumes, DB identifiers, table items), not only in
//! what snapnest answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::Filter;
use serde_json::{json, Value};
use snapnest_core::cloud::tag;
use snapnest_core::Snapnest;
use snapnest_e2e::aws_fixture::{create_kms_key, MotoSnapnest, HOME, WEST};
use snapnest_e2e::watch::{backup_and_restore_over_http, Watch};
use snapnest_e2e::{call, http_event, scheduled_event};

async fn get(app: &Arc<Snapnest>, file: &str, placeholder: &str, id: &str) -> Value {
    let (status, body) = call(admin_api::router(app.clone()), http_event(file, &[(placeholder, id)], None)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Runs `step` (a scheduled function) until `done` says the record at `file` is finished.
async fn run_until(
    app: &Arc<Snapnest>,
    file: &str,
    placeholder: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        poll_status::handle(app, scheduled_event("poll-status.json"), None).await.unwrap();
        replicate::handle(app, scheduled_event("replicate.json"), None).await.unwrap();
        let record = get(app, file, placeholder, id).await;
        if done(&record) {
            return record;
        }
        assert!(Instant::now() < deadline, "{id} did not finish: {record:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn snapshots_tagged(ec2: &aws_sdk_ec2::Client, backup_id: &str) -> Vec<aws_sdk_ec2::types::Snapshot> {
    ec2.describe_snapshots()
        .owner_ids("self")
        .filters(Filter::builder().name(format!("tag:{}", tag::BACKUP_ID)).values(backup_id).build())
        .send()
        .await
        .unwrap()
        .snapshots
        .unwrap_or_default()
}

#[tokio::test]
async fn the_whole_flow_on_dynamodb_and_the_aws_apis() {
    let moto = MotoSnapnest::start("flow").await;
    let (app, si) = (moto.app.clone(), moto.service_instance_id.clone());

    // Backup, replicated to us-west-2.
    let body = json!({"retention_days": 1, "destination_region": WEST});
    let ev = http_event("create-backup.json", &[("si-demo", &si)], Some(&body));
    let (status, created) = call(create_backup::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{created}");
    let backup_id = created["backup_id"].as_str().unwrap().to_owned();
    let backup = run_until(&app, "admin-api-get-backup.json", "BACKUP_ID", &backup_id, |b| {
        b["status"] == "Succeeded" && b["replication"]["status"] == "Succeeded"
    })
    .await;
    let items = backup["items"].as_array().unwrap();
    assert_eq!(items.len(), 7, "2 instances x 3 volumes + 1 database: {backup:#}");
    assert!(items.iter().filter(|i| i["kind"] == "volume").all(|i| i["consistent_group"] == true));

    // In the emulator: six EBS snapshots carrying the point's tags, one manual DB snapshot.
    let ebs = snapshots_tagged(&moto.ec2, &backup_id).await;
    assert_eq!(ebs.len(), 6);
    for snapshot in &ebs {
        let tags = snapshot.tags();
        let value = |k: &str| tags.iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_owned);
        assert_eq!(value(tag::SERVICE_INSTANCE).as_deref(), Some(si.as_str()));
        assert_eq!(value(tag::EXPIRES_AT), backup["expires_at"].as_str().map(|e| e.replace('Z', "+00:00")));
        assert!(snapshot.volume_id().is_some(), "each snapshot names its volume: {snapshot:?}");
    }
    let db_snapshot = items.iter().find(|i| i["kind"] == "database").unwrap()["snapshot_id"].as_str().unwrap();
    let described = moto.rds.describe_db_snapshots().db_snapshot_identifier(db_snapshot).send().await.unwrap();
    assert_eq!(described.db_snapshots()[0].db_instance_identifier(), Some(moto.db_id.as_str()));
    // ...and the copies in us-west-2.
    assert_eq!(snapshots_tagged(&moto.ec2_west, &backup_id).await.len(), 6);
    let west_db = moto.rds_west.describe_db_snapshots().snapshot_type("manual").send().await.unwrap();
    assert!(west_db
        .db_snapshots()
        .iter()
        .any(|s| s.db_snapshot_identifier().is_some_and(|id| id.contains(&backup_id))));

    // In-place restore: volumes swapped at the same devices, the DB id swapped.
    let ev = http_event("restore.json", &[("BACKUP_ID", &backup_id)], None);
    let (status, restore) = call(restore::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{restore}");
    let restore_id = restore["restore_id"].as_str().unwrap().to_owned();
    let restore = run_until(&app, "admin-api-get-restore.json", "RESTORE_ID", &restore_id, |r| {
        !matches!(r["status"].as_str(), Some("Pending" | "Running"))
    })
    .await;
    assert_eq!(restore["status"], "Succeeded", "{restore:#}");
    for item in restore["items"].as_array().unwrap().iter().filter(|i| i["kind"] == "volume") {
        let (new_id, old_id) = (item["new_resource_id"].as_str().unwrap(), item["resource_id"].as_str().unwrap());
        let volumes = moto.ec2.describe_volumes().volume_ids(new_id).volume_ids(old_id).send().await.unwrap();
        let new = volumes.volumes().iter().find(|v| v.volume_id() == Some(new_id)).unwrap();
        let attachment = &new.attachments()[0];
        assert_eq!(attachment.instance_id(), item["instance_id"].as_str());
        assert_eq!(attachment.device(), item["device"].as_str());
        let old = volumes.volumes().iter().find(|v| v.volume_id() == Some(old_id)).unwrap();
        assert!(old.attachments().is_empty(), "the old volume is detached and kept");
        assert!(old.tags().iter().any(|t| t.key() == Some(tag::REPLACED_BY) && t.value() == Some(&restore_id)));
    }
    let databases = moto.rds.describe_db_instances().send().await.unwrap();
    let ids: Vec<&str> = databases.db_instances().iter().filter_map(|d| d.db_instance_identifier()).collect();
    let serving =
        databases.db_instances().iter().find(|d| d.db_instance_identifier() == Some(moto.db_id.as_str())).unwrap();
    assert!(
        serving.tag_list().iter().any(|t| t.key() == Some(tag::RESTORE_ID) && t.value() == Some(&restore_id)),
        "the original identifier now names the restored database"
    );
    assert!(
        serving.tag_list().iter().any(|t| t.key() == Some("service-instance-id") && t.value() == Some(si.as_str())),
        "the restored database is still part of the service instance"
    );
    assert!(
        ids.iter().any(|id| id.starts_with(&format!("{}-old", moto.db_id))),
        "the replaced database is kept: {ids:?}"
    );
    let instances = moto
        .ec2
        .describe_instances()
        .filters(Filter::builder().name("tag:service-instance-id").values(&si).build())
        .send()
        .await
        .unwrap();
    for instance in instances.reservations().iter().flat_map(|r| r.instances()) {
        assert_eq!(instance.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"));
    }

    // Expiry two days later: the point's and the replicas' snapshots are gone.
    let summary = snapnest_e2e::expire_at(&app, chrono::Utc::now() + chrono::Duration::days(2)).await.unwrap();
    assert!(summary.points_expired >= 1 && summary.replicas_expired >= 1, "{summary:?}");
    let expired = get(&app, "admin-api-get-backup.json", "BACKUP_ID", &backup_id).await;
    assert_eq!(expired["status"], "Expired");
    assert_eq!(expired["replication"]["status"], "Expired");
    assert!(snapshots_tagged(&moto.ec2, &backup_id).await.is_empty());
    assert!(snapshots_tagged(&moto.ec2_west, &backup_id).await.is_empty());
    let left = moto.rds.describe_db_snapshots().db_snapshot_identifier(db_snapshot).send().await;
    assert!(left.is_err() || left.unwrap().db_snapshots().is_empty(), "the DB snapshot is deleted");

    // In the table: the expired point left both indexes and the lock was released.
    let item = moto
        .dynamodb
        .get_item()
        .table_name(&moto.table)
        .key("pk", AttributeValue::S(format!("backup#{backup_id}")))
        .key("sk", AttributeValue::S("doc".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the backup's document item");
    assert!(!item.contains_key("active_key") && !item.contains_key("due_key"), "{item:?}");
    let body: Value = serde_json::from_str(item["body"].as_s().unwrap()).unwrap();
    assert_eq!(body["status"], "Expired");
    let lock = moto
        .dynamodb
        .get_item()
        .table_name(&moto.table)
        .key("pk", AttributeValue::S(format!("lock#backup#{si}")))
        .key("sk", AttributeValue::S("lock".into()))
        .send()
        .await
        .unwrap();
    assert!(lock.item.is_none(), "no backup of {si} is running");
}

#[tokio::test]
async fn the_functions_under_cargo_lambda_watch_on_dynamodb_and_the_aws_apis() {
    let moto = MotoSnapnest::start("watch").await;
    let logs = tempfile::tempdir().unwrap();
    let env = moto.function_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let watch = Watch::start(logs.path(), &env);
    let (backup, restore) = backup_and_restore_over_http(&watch, &moto.service_instance_id).await;
    assert_eq!(backup["items"].as_array().unwrap().len(), 7);
    // What the functions did is in the emulator.
    let backup_id = backup["backup_id"].as_str().unwrap();
    assert_eq!(snapshots_tagged(&moto.ec2, backup_id).await.len(), 6);
    let restore_id = restore["restore_id"].as_str().unwrap();
    let new_volumes = moto
        .ec2
        .describe_volumes()
        .filters(Filter::builder().name(format!("tag:{}", tag::RESTORE_ID)).values(restore_id).build())
        .send()
        .await
        .unwrap();
    for volume in new_volumes.volumes() {
        assert_eq!(volume.attachments().len(), 1, "every restored volume is attached: {volume:?}");
    }
    assert_eq!(new_volumes.volumes().len(), 6);
}

#[tokio::test]
async fn a_new_points_start_goes_through_sqs_to_start_backup_on_moto() {
    // GIVEN snapnest on moto with a start queue in SQS
    snapnest_e2e::moto::Moto::shared();
    let sdk =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(HOME)).load().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = format!("snapnest-start-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let queue_url = sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    let moto = MotoSnapnest::start_with("sqs", &[("SNAPNEST_START_QUEUE_URL", queue_url.as_str())]).await;

    // WHEN create-backup is asked for a point
    let event = http_event("create-backup.json", &[("si-demo", &moto.service_instance_id)], Some(&json!({})));
    let (status, created) = call(create_backup::router(moto.app.clone()), event).await;

    // THEN it answers 202 Pending and has made no snapshot: the start is a message in SQS
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["status"], "Pending");
    let backup_id = created["backup_id"].as_str().unwrap();
    assert!(snapshots_tagged(&moto.ec2, backup_id).await.is_empty());
    let received = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let body: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(body, json!({"work": "start_backup", "backup_id": backup_id, "version": 1}));

    // WHEN start-backup is invoked with it, as the SQS event source would
    let mut message = aws_lambda_events::sqs::SqsMessage::default();
    message.message_id = messages[0].message_id().map(str::to_owned);
    message.receipt_handle = messages[0].receipt_handle().map(str::to_owned);
    message.body = messages[0].body().map(str::to_owned);
    let mut sqs_event = aws_lambda_events::sqs::SqsEvent::default();
    sqs_event.records = vec![message];
    let answer = start_backup::handle(&moto.app, sqs_event).await;

    // THEN the point's snapshots are in EC2, tagged with it, and its record is Running
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert_eq!(snapshots_tagged(&moto.ec2, backup_id).await.len(), 6);
    let record = get(&moto.app, "admin-api-get-backup.json", "BACKUP_ID", backup_id).await;
    assert_ne!(record["status"], "Pending", "{record:#}");
}

#[tokio::test]
async fn a_backup_of_99_instances_with_16_volumes_and_10_databases_stores_and_polls_on_dynamodb() {
    let moto = MotoSnapnest::start("large").await;
    let data = tempfile::tempdir().unwrap();
    // The cloud is simulated (moto would take minutes to create 1,584 volumes); the store is
    // DynamoDB on moto, whose 400 KB item limit is what this checks.
    let env = [
        ("SNAPNEST_STORE", "dynamodb".to_owned()),
        ("SNAPNEST_TABLE", moto.table.clone()),
        ("SNAPNEST_DATA_DIR", data.path().display().to_string()),
        ("SNAPNEST_SIM_SNAPSHOT_SECONDS", "0.5".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    let config =
        snapnest_lambda::config::Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let app = Arc::new(snapnest_lambda::runtime::build(&config).await.unwrap());
    let sim = snapnest_local::simulated::SimulatedCloud::open(
        data.path(),
        snapnest_local::simulated::SimSettings {
            home_region: "us-east-1".into(),
            operation_time: Duration::from_millis(500),
            latency: Duration::ZERO,
            faults: Default::default(),
        },
    )
    .unwrap();
    sim.add_service_instance("us-east-1", "si-large", 99, 16, 10, true).unwrap();

    let ev = http_event("create-backup.json", &[("si-demo", "si-large")], Some(&json!({})));
    let (status, created) = call(create_backup::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{}", &created.to_string()[..300.min(created.to_string().len())]);
    let id = created["backup_id"].as_str().unwrap().to_owned();
    let backup = run_until(&app, "admin-api-get-backup.json", "BACKUP_ID", &id, |b| b["status"] == "Succeeded").await;
    let items = backup["items"].as_array().unwrap();
    assert_eq!(items.len(), 99 * 16 + 10);
    assert!(items.iter().all(|i| i["status"] == "Succeeded" && i["snapshot_id"].is_string()));
    // Stored as one row item per item beside a small document item: no item is near 400 KB.
    let scan: Vec<_> =
        moto.dynamodb.scan().table_name(&moto.table).into_paginator().items().send().collect::<Vec<_>>().await;
    let scan: Vec<_> = scan.into_iter().map(Result::unwrap).collect();
    let pk = format!("backup#{id}");
    let rows = scan
        .iter()
        .filter(|i| i["pk"].as_s().is_ok_and(|p| *p == pk) && i["sk"].as_s().is_ok_and(|sk| sk.starts_with("row#")))
        .count();
    assert_eq!(rows, items.len(), "one row item per item of the point");
    for item in &scan {
        let size: usize = item.iter().map(|(k, v)| k.len() + v.as_s().map_or(16, String::len)).sum();
        assert!(size < 400 * 1024, "an item of {size} bytes");
    }
}

/// The volume at each device of the service instance's instances, in the emulator.
async fn devices(moto: &MotoSnapnest) -> std::collections::BTreeMap<String, String> {
    let instances = moto
        .ec2
        .describe_instances()
        .filters(Filter::builder().name("tag:service-instance-id").values(&moto.service_instance_id).build())
        .send()
        .await
        .unwrap();
    let mut devices = std::collections::BTreeMap::new();
    for instance in instances.reservations().iter().flat_map(|r| r.instances()) {
        assert_eq!(instance.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"));
        for mapping in instance.block_device_mappings() {
            let place = format!("{} {}", instance.instance_id().unwrap(), mapping.device_name().unwrap());
            let previous = devices.insert(place.clone(), mapping.ebs().unwrap().volume_id().unwrap().to_owned());
            assert!(previous.is_none(), "{place} holds one volume");
        }
    }
    devices
}

async fn volume_tags(moto: &MotoSnapnest, volume_id: &str) -> std::collections::BTreeMap<String, String> {
    let volumes = moto.ec2.describe_volumes().volume_ids(volume_id).send().await.unwrap();
    let volume = volumes.volumes().first().unwrap_or_else(|| panic!("{volume_id} exists"));
    volume.tags().iter().map(|t| (t.key().unwrap().to_owned(), t.value().unwrap_or_default().to_owned())).collect()
}

async fn database_tags(moto: &MotoSnapnest, db_id: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let databases = moto.rds.describe_db_instances().send().await.unwrap();
    let db = databases.db_instances().iter().find(|d| d.db_instance_identifier() == Some(db_id))?;
    Some(
        db.tag_list().iter().map(|t| (t.key().unwrap().to_owned(), t.value().unwrap_or_default().to_owned())).collect(),
    )
}

async fn backup_now(app: &Arc<Snapnest>, si: &str) -> Value {
    let ev = http_event("create-backup.json", &[("si-demo", si)], Some(&json!({})));
    let (status, created) = call(create_backup::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{created}");
    let id = created["backup_id"].as_str().unwrap().to_owned();
    run_until(app, "admin-api-get-backup.json", "BACKUP_ID", &id, |b| b["status"] == "Succeeded").await
}

async fn restore_in_place(app: &Arc<Snapnest>, backup: &Value) -> Value {
    let body = json!({"mode": "in_place", "safety_backup": false});
    let ev = http_event("restore.json", &[("BACKUP_ID", backup["backup_id"].as_str().unwrap())], Some(&body));
    let (status, restore) = call(restore::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{restore}");
    let id = restore["restore_id"].as_str().unwrap().to_owned();
    settled_restore(app, &id).await
}

async fn settled_restore(app: &Arc<Snapnest>, id: &str) -> Value {
    run_until(app, "admin-api-get-restore.json", "RESTORE_ID", id, |r| {
        !matches!(r["status"].as_str(), Some("Pending" | "Running" | "RollingBack")) && r["phase"] == "done"
    })
    .await
}

#[tokio::test]
async fn in_place_restores_one_after_another_and_a_roll_back_on_dynamodb_and_the_aws_apis() {
    // GIVEN two points of a service instance on moto
    let moto = MotoSnapnest::start("sequences").await;
    let (app, si) = (moto.app.clone(), moto.service_instance_id.clone());
    let older = backup_now(&app, &si).await;
    let newer = backup_now(&app, &si).await;
    let original = devices(&moto).await;

    // WHEN the newer point is restored in place, twice, then the older one
    let mut restores = Vec::new();
    for point in [&newer, &newer, &older] {
        let before = devices(&moto).await;
        let restore = restore_in_place(&app, point).await;
        assert_eq!(restore["status"], "Succeeded", "{restore:#}");
        let restore_id = restore["restore_id"].as_str().unwrap().to_owned();
        // THEN every device holds a volume this restore made, and what was there before is
        // kept, detached, tagged replaced-by the restore with its keeping time
        let after = devices(&moto).await;
        assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
        for (place, volume) in &after {
            assert_eq!(volume_tags(&moto, volume).await.get(tag::RESTORE_ID), Some(&restore_id), "{place}");
            let replaced = volume_tags(&moto, &before[place]).await;
            assert_eq!(replaced.get(tag::REPLACED_BY), Some(&restore_id), "{place}");
            assert!(replaced.contains_key(tag::KEPT_UNTIL), "{place}: {replaced:?}");
        }
        // AND the database id names the restored database; the replaced one left the service
        // instance (no service-instance tag) and is kept under the restore's name
        let serving = database_tags(&moto, &moto.db_id).await.expect("the database id exists");
        assert_eq!(serving.get(tag::RESTORE_ID), Some(&restore_id));
        assert_eq!(serving.get("service-instance-id"), Some(&si));
        let db_item = restore["items"].as_array().unwrap().iter().find(|i| i["kind"] == "database").unwrap();
        let kept = database_tags(&moto, db_item["replaced_resource_id"].as_str().unwrap()).await.expect("kept");
        assert_eq!(kept.get(tag::REPLACED_BY), Some(&restore_id));
        assert!(!kept.contains_key("service-instance-id"), "{kept:?}");
        restores.push((restore_id, before));
    }
    assert_ne!(devices(&moto).await, original);

    // AND a backup now has exactly the items of the first one
    let after = backup_now(&app, &si).await;
    let places = |b: &Value| -> Vec<String> {
        let mut p: Vec<String> = b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{} {} {}",
                    i["instance_id"],
                    i["device"],
                    if i["kind"] == "database" { &i["resource_id"] } else { &Value::Null }
                )
            })
            .collect();
        p.sort();
        p
    };
    assert_eq!(places(&after), places(&older));

    // WHEN the last restore is rolled back on request
    let (last_id, before_last) = restores.pop().unwrap();
    let ev = http_event("restore-rollback.json", &[("RESTORE_ID", &last_id)], None);
    let (status, answer) = call(restore::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{answer}");
    let rolled_back = settled_restore(&app, &last_id).await;
    // THEN it is RolledBack: the devices hold what they held before it (given back to the
    // service instance, no longer marked replaced), what it made is deleted
    assert_eq!(rolled_back["status"], "RolledBack", "{rolled_back:#}");
    assert_eq!(devices(&moto).await, before_last);
    for volume in before_last.values() {
        let tags = volume_tags(&moto, volume).await;
        assert!(!tags.contains_key(tag::REPLACED_BY) && !tags.contains_key(tag::KEPT_UNTIL), "{tags:?}");
    }
    let made = moto
        .ec2
        .describe_volumes()
        .filters(Filter::builder().name(format!("tag:{}", tag::RESTORE_ID)).values(&last_id).build())
        .send()
        .await
        .unwrap();
    assert!(made.volumes().is_empty(), "{:?}", made.volumes());
    let serving = database_tags(&moto, &moto.db_id).await.expect("the database id exists");
    assert_eq!(serving.get(tag::RESTORE_ID), Some(&restores[1].0), "the previous restore's database is back");
    assert_eq!(serving.get("service-instance-id"), Some(&si));
    assert!(!serving.contains_key(tag::REPLACED_BY));
}

#[tokio::test]
async fn an_encrypted_point_replicates_under_the_destinations_keys_on_moto() {
    // GIVEN a service instance with a volume and a database encrypted under a key of their
    // region, and snapnest told which key copies get in us-west-2
    let (east_key, west_key) = (create_kms_key(HOME).await, create_kms_key(WEST).await);
    let keys = format!("{WEST}={west_key}");
    let moto = MotoSnapnest::start_with("encrypted", &[("SNAPNEST_REPLICA_KMS_KEYS", keys.as_str())]).await;
    let (ec2, rds) = (&moto.ec2, &moto.rds);
    let tag = aws_sdk_ec2::types::Tag::builder().key("service-instance-id").value(&moto.service_instance_id).build();
    let instances = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:service-instance-id")
                .values(&moto.service_instance_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let instance = instances.reservations()[0].instances()[0].clone();
    let zone = instance.placement().and_then(|p| p.availability_zone()).unwrap();
    let volume = ec2
        .create_volume()
        .availability_zone(zone)
        .size(20)
        .encrypted(true)
        .kms_key_id(&east_key)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
                .tags(tag)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let volume_id = volume.volume_id().unwrap().to_owned();
    ec2.attach_volume()
        .volume_id(&volume_id)
        .instance_id(instance.instance_id().unwrap())
        .device("/dev/sdh")
        .send()
        .await
        .unwrap();
    let encrypted_db = format!("{}-secure", moto.service_instance_id);
    rds.create_db_instance()
        .db_instance_identifier(&encrypted_db)
        .engine("mysql")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("contract-password-1")
        .storage_encrypted(true)
        .kms_key_id(&east_key)
        .tags(aws_sdk_rds::types::Tag::builder().key("service-instance-id").value(&moto.service_instance_id).build())
        .send()
        .await
        .unwrap();

    // WHEN a point of it is copied to us-west-2
    let app = &moto.app;
    let request = snapnest_core::backup::BackupRequest { destination_region: Some(WEST.into()), ..Default::default() };
    let point = app
        .backups
        .create(&moto.service_instance_id, &request, snapnest_core::backup::BackupOrigin::manual())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let point = loop {
        app.poller.poll_active().await.unwrap();
        app.replication.replicate_due().await.unwrap();
        let record: snapnest_core::model::BackupRecord = app.backups.get(&point.backup_id).await.unwrap();
        if record.replication.as_ref().is_some_and(|r| r.status.is_terminal()) {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "{record:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let replication = point.replication.clone().unwrap();
    assert_eq!(replication.status, snapnest_core::status::JobStatus::Succeeded, "{point:#?}");
    let copy_of = |resource: &str| {
        replication
            .items
            .iter()
            .find(|i| i.resource_id == resource)
            .and_then(|i| i.replica_snapshot_id.clone())
            .unwrap()
    };

    // THEN the encrypted volume's copy is under the destination's key
    let copy = copy_of(&volume_id);
    let described = moto.ec2_west.describe_snapshots().snapshot_ids(&copy).send().await.unwrap();
    let snapshot = &described.snapshots()[0];
    assert_eq!((snapshot.encrypted(), snapshot.kms_key_id()), (Some(true), Some(west_key.as_str())), "{snapshot:?}");
    // and so is the encrypted database's, while the unencrypted one is copied as it is
    let db_copy = copy_of(&encrypted_db);
    let described = moto.rds_west.describe_db_snapshots().db_snapshot_identifier(&db_copy).send().await.unwrap();
    let db_snapshot = &described.db_snapshots()[0];
    assert_eq!(db_snapshot.kms_key_id(), Some(west_key.as_str()), "{db_snapshot:?}");
    let plain_copy = copy_of(&moto.db_id);
    let described = moto.rds_west.describe_db_snapshots().db_snapshot_identifier(&plain_copy).send().await.unwrap();
    assert_eq!(described.db_snapshots()[0].kms_key_id(), None, "{:?}", described.db_snapshots()[0]);
}

/// `scripts/seed-moto.py`, as the README's "On moto" runs it: a service instance snapnest
/// backs up whole, and a second run that changes nothing.
#[tokio::test]
async fn the_seeding_script_makes_a_service_instance_that_backs_up_whole() {
    let moto = MotoSnapnest::start("seed").await;
    let si = format!("si-seeded-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let seed = || {
        let output = std::process::Command::new(snapnest_e2e::moto::tools_bin().join("python"))
            .arg(snapnest_e2e::moto::repo_root().join("scripts/seed-moto.py"))
            .arg(&si)
            .env("AWS_ENDPOINT_URL", &snapnest_e2e::moto::Moto::shared().endpoint)
            .env("AWS_REGION", HOME)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let first = seed();
    assert_eq!(seed(), first, "a second run finds the same resources and creates none");

    let ev = http_event("create-backup.json", &[("si-demo", &si)], Some(&json!({"retention_days": 1})));
    let (status, created) = call(create_backup::router(moto.app.clone()), ev).await;
    assert_eq!(status, 202, "{created}");
    let backup_id = created["backup_id"].as_str().unwrap().to_owned();
    let backup = run_until(&moto.app, "admin-api-get-backup.json", "BACKUP_ID", &backup_id, |b| {
        b["status"] != "Pending" && b["status"] != "Running"
    })
    .await;
    assert_eq!(backup["status"], "Succeeded", "{backup:#}");
    let items = backup["items"].as_array().unwrap();
    assert_eq!(items.len(), 7, "2 instances x 3 volumes + 1 database: {backup:#}");
    assert!(first.contains(&format!("database {si}-mysql")), "{first}");

    // And it refuses an endpoint that is not on this machine.
    let refused = std::process::Command::new(snapnest_e2e::moto::tools_bin().join("python"))
        .arg(snapnest_e2e::moto::repo_root().join("scripts/seed-moto.py"))
        .arg(&si)
        .env("AWS_ENDPOINT_URL", "https://ec2.us-east-1.amazonaws.com")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only seeds an emulator on this machine"));
}
