//! Policies, retention, replication, restore modes, jobs with cancel and capacity — each
//! scenario run twice: on the embedded store and the simulated cloud, and on DynamoDB and
//! the AWS APIs (moto). What cannot be arranged on moto (a fault in the middle of a call)
//! is said where it is skipped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Value};
use snapnest_core::cloud::InstanceState;
use snapnest_core::model::{BackupRecord, RestoreRecord};
use snapnest_core::policy::{PolicyRequest, NO_DESTINATION_REGION, PERMANENT_RETENTION, SUSPENDED};
use snapnest_core::status::JobStatus;
use snapnest_core::store::{Collection, Document, Row, StoreError};
use snapnest_core::{Error, Snapnest};
use snapnest_e2e::aws_fixture::MotoSnapnest;
use snapnest_e2e::{call, event, http_event, local_service};

const HOME: &str = "us-east-1";
const WEST: &str = "us-west-2";

/// One of the two ways to run snapnest, with what a test needs to arrange and inspect it.
struct Backend {
    app: Arc<Snapnest>,
    si: String,
    sim: Option<snapnest_local::simulated::SimulatedCloud>,
    moto: Option<MotoSnapnest>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    async fn simulated() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let (app, sim) = local_service(dir.path(), &[]).await;
        Backend { app, si: "si-demo".into(), sim: Some(sim), moto: None, _dir: Some(dir) }
    }

    async fn moto(name: &str) -> Backend {
        let moto = MotoSnapnest::start(name).await;
        Backend { app: moto.app.clone(), si: moto.service_instance_id.clone(), sim: None, moto: Some(moto), _dir: None }
    }

    /// Terminates an EC2 instance of the service instance.
    async fn release(&self, instance_id: &str) {
        if let Some(sim) = &self.sim {
            sim.release_instance(HOME, instance_id).unwrap();
        }
        if let Some(moto) = &self.moto {
            moto.ec2.terminate_instances().instance_ids(instance_id).send().await.unwrap();
        }
    }

    /// What a disaster recovery names in the destination region: a subnet, a security group
    /// and a DB subnet group there.
    async fn destination_network(&self) -> Value {
        if self.sim.is_some() {
            return json!({
                "instance_type": "m7g.large",
                "subnet_id": snapnest_local::simulated::subnet_in("us-west-2b"),
                "security_group_ids": ["sg-0west"],
                "db_subnet_group": "west-db",
            });
        }
        let moto = self.moto.as_ref().unwrap();
        let subnets = moto.ec2_west.describe_subnets().send().await.unwrap();
        let subnet_ids: Vec<String> =
            subnets.subnets().iter().filter_map(|s| s.subnet_id()).map(str::to_owned).collect();
        let groups = moto.ec2_west.describe_security_groups().send().await.unwrap();
        let group = groups.security_groups()[0].group_id().unwrap().to_owned();
        let db_group = format!("{}-west-db", self.si);
        moto.rds_west
            .create_db_subnet_group()
            .db_subnet_group_name(&db_group)
            .db_subnet_group_description("disaster recovery")
            .set_subnet_ids(Some(subnet_ids.clone()))
            .send()
            .await
            .unwrap();
        json!({
            "instance_type": "t3.micro",
            "subnet_id": subnet_ids[0],
            "security_group_ids": [group],
            "db_subnet_group": db_group,
        })
    }

    /// The snapshot a volume was made from, as the cloud itself says (moto), or whether its
    /// data is the snapshot's (the simulated cloud's fingerprints).
    async fn made_from(&self, region: &str, volume_id: &str, source_volume: &str, snapshot_id: &str) -> bool {
        if let Some(sim) = &self.sim {
            return sim.fingerprint(region, volume_id).unwrap() == sim.fingerprint(HOME, source_volume).unwrap();
        }
        let moto = self.moto.as_ref().unwrap();
        let ec2 = if region == HOME { &moto.ec2 } else { &moto.ec2_west };
        let described = ec2.describe_volumes().volume_ids(volume_id).send().await.unwrap();
        described.volumes()[0].snapshot_id() == Some(snapshot_id)
    }

    /// An Aurora MySQL DB instance, a member of its cluster, tagged into the service
    /// instance; returns its id.
    async fn add_aurora_member(&self) -> String {
        let (cluster, member) = (format!("{}-aurora", self.si), format!("{}-aurora-1", self.si));
        if let Some(sim) = &self.sim {
            sim.add_cluster_member(HOME, &self.si, &member, &cluster).unwrap();
            return member;
        }
        let moto = self.moto.as_ref().unwrap();
        moto.rds
            .create_db_cluster()
            .db_cluster_identifier(&cluster)
            .engine("aurora-mysql")
            .master_username("admin")
            .master_user_password("cluster-password-1")
            .send()
            .await
            .unwrap();
        let tag = aws_sdk_rds::types::Tag::builder().key("service-instance-id").value(&self.si).build();
        moto.rds
            .create_db_instance()
            .db_instance_identifier(&member)
            .db_cluster_identifier(&cluster)
            .engine("aurora-mysql")
            .db_instance_class("db.r6g.large")
            .tags(tag)
            .send()
            .await
            .unwrap();
        member
    }

    /// Deletes an EBS snapshot of the home region without snapnest.
    async fn delete_snapshot_outside(&self, snapshot_id: &str) {
        if let Some(sim) = &self.sim {
            sim.tamper_snapshot(HOME, snapshot_id, None).unwrap();
        }
        if let Some(moto) = &self.moto {
            moto.ec2.delete_snapshot().snapshot_id(snapshot_id).send().await.unwrap();
        }
    }

    /// Whether an EBS snapshot exists in a region, asked of the cloud itself.
    async fn snapshot_exists(&self, region: &str, snapshot_id: &str) -> bool {
        let cloud = self.app.clouds.region(region).unwrap();
        !cloud.describe_snapshots(&[snapshot_id.to_owned()]).await.unwrap().is_empty()
    }

    /// A service instance with 8 instances x 3 volumes + 1 database (25 snapshots).
    async fn large_service_instance(&self) -> String {
        if let Some(sim) = &self.sim {
            sim.add_service_instance(HOME, "si-wide", 8, 3, 1, true).unwrap();
            return "si-wide".into();
        }
        let moto = self.moto.as_ref().unwrap();
        let si = format!("{}-wide", self.si);
        snapnest_e2e::aws_fixture::create_service_instance(&moto.ec2, &moto.rds, "service-instance-id", &si).await;
        for _ in 0..3 {
            // three more pairs of instances under the same tag: 8 in all
            snapnest_e2e::aws_fixture::create_instances(&moto.ec2, "service-instance-id", &si, 2).await;
        }
        si
    }
}

async fn admin(app: &Arc<Snapnest>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut ev = event("admin-api-get-backup.json");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["method"] = json!(method);
    ev["requestContext"]["http"]["path"] = json!(path);
    // API Gateway sends the query both raw (which lambda_http reads) and as parameters.
    let params: serde_json::Map<String, Value> =
        query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), json!(v))).collect();
    ev["rawQueryString"] = json!(query);
    ev["queryStringParameters"] = Value::Object(params);
    if let Some(body) = body {
        ev["body"] = json!(body.to_string());
    }
    call(admin_api::router(app.clone()), ev).await
}

async fn start_backup(app: &Arc<Snapnest>, si: &str, body: Value) -> Value {
    let ev = http_event("create-backup.json", &[("si-demo", si)], Some(&body));
    let (status, created) = call(create_backup::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{created}");
    created
}

/// Polls and replicates until `done` holds for the backup.
async fn backup_until(app: &Arc<Snapnest>, id: &str, done: impl Fn(&BackupRecord) -> bool) -> BackupRecord {
    wait_for(app, id, true, done).await
}

/// Polls (without replicating) until the backup is finished.
async fn poll_until_finished(app: &Arc<Snapnest>, id: &str) -> BackupRecord {
    wait_for(app, id, false, finished).await
}

/// A restore once it ended, polled as poll-status does.
async fn restore_finished(app: &Arc<Snapnest>, restore_id: &str) -> RestoreRecord {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        app.poller.poll_active().await.unwrap();
        let restore: RestoreRecord = app.restores.get(restore_id).await.unwrap();
        if restore.status.is_terminal() {
            return restore;
        }
        assert!(Instant::now() < deadline, "{restore:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for(
    app: &Arc<Snapnest>,
    id: &str,
    replicate: bool,
    done: impl Fn(&BackupRecord) -> bool,
) -> BackupRecord {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        app.poller.poll_active().await.unwrap();
        if replicate {
            app.replication.replicate_due().await.unwrap();
        }
        let record: BackupRecord = app.backups.get(id).await.unwrap();
        if done(&record) {
            return record;
        }
        assert!(Instant::now() < deadline, "{id}: {record:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn finished(b: &BackupRecord) -> bool {
    b.status.is_terminal()
}

// ---------------------------------------------------------------------------------------
// Policies

/// Fails the next policy updates (as many as it holds), as DynamoDB does under throttling.
struct FailPolicyUpdates(AtomicUsize);

#[async_trait]
impl snapnest_e2e::watched_store::Watch for FailPolicyUpdates {
    async fn before_write(&self, doc: &Document, _rows: &[Row], insert: bool) -> Result<(), StoreError> {
        let policy_update = !insert && doc.collection == Collection::Policies;
        if policy_update && self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(StoreError::Unavailable("ProvisionedThroughputExceededException".into()));
        }
        Ok(())
    }
}

async fn backups_of(app: &Arc<Snapnest>, si: &str) -> Vec<BackupRecord> {
    app.backups.list(si, 100, None).await.unwrap().0
}

async fn policies(b: &Backend) {
    let app = &b.app;
    // The first slot is a second away; the tick below runs just after it.
    let start = Utc::now() + chrono::Duration::seconds(1);
    let body = json!({"name": "every six hours", "interval_hours": 6, "start_time": start.to_rfc3339(),
                      "retention_days": 7, "destination_region": WEST, "destination_retention_days": 3,
                      "targets": [b.si]});
    let (status, policy) = admin(app, "POST", "/policies", Some(body)).await;
    assert_eq!(status, 201, "{policy}");
    let policy_id = policy["policy_id"].as_str().unwrap().to_owned();
    assert_eq!(policy["targets"], json!([b.si]));

    // The seeds' errors.
    let (status, e) =
        admin(app, "POST", "/policies", Some(json!({"name": "x", "interval_days": 1, "never_expire": true}))).await;
    assert_eq!((status, e["message"].as_str()), (400, Some(PERMANENT_RETENTION)));
    let (status, e) = admin(
        app,
        "POST",
        "/policies",
        Some(json!({"name": "x", "interval_days": 1, "retention_days": 3, "replicate": true})),
    )
    .await;
    assert_eq!((status, e["message"].as_str()), (400, Some(NO_DESTINATION_REGION)));
    // One policy per service instance.
    let (_, other) =
        admin(app, "POST", "/policies", Some(json!({"name": "y", "interval_days": 1, "retention_days": 3}))).await;
    let other_id = other["policy_id"].as_str().unwrap();
    let (status, e) =
        admin(app, "POST", &format!("/policies/{other_id}/targets"), Some(json!({"attach": [b.si]}))).await;
    assert_eq!(status, 409, "{e}");
    assert!(e["message"].as_str().unwrap().contains(&policy_id), "the message names the holder: {e}");
    // Creating a policy with a target another policy holds writes nothing.
    let (_, before) = admin(app, "GET", "/policies", None).await;
    let (status, _) = admin(
        app,
        "POST",
        "/policies",
        Some(json!({"name": "z", "interval_days": 1, "retention_days": 3, "targets": [b.si]})),
    )
    .await;
    assert_eq!(status, 409);
    let (_, after) = admin(app, "GET", "/policies", None).await;
    assert_eq!(before["items"].as_array().unwrap().len(), after["items"].as_array().unwrap().len());

    // Due now: one tick runs the slot once; a retried tick and an overlapping one start nothing more.
    let now = start + chrono::Duration::seconds(1);
    assert_eq!(
        snapnest_e2e::run_policies_at(app, start - chrono::Duration::seconds(1)).await.unwrap().policies_due,
        0,
        "not due yet"
    );
    let (first, retried) =
        tokio::join!(snapnest_e2e::run_policies_at(app, now), snapnest_e2e::run_policies_at(app, now));
    let started = first.unwrap().backups_started.max(retried.unwrap().backups_started);
    assert_eq!(started, 1);
    snapnest_e2e::run_policies_at(app, now).await.unwrap();
    let backups = backups_of(app, &b.si).await;
    assert_eq!(backups.len(), 1, "one backup for the slot");
    assert_eq!(backups[0].policy_id.as_deref(), Some(policy_id.as_str()));
    assert_eq!(backups[0].replication.as_ref().unwrap().region, WEST);
    let first_backup = backup_until(app, &backups[0].backup_id, finished).await;
    assert_eq!(first_backup.status, JobStatus::Succeeded);

    // The function was down for five slots: the latest slot runs once.
    let late = now + chrono::Duration::hours(31);
    let summary = snapnest_e2e::run_policies_at(app, late).await.unwrap();
    assert_eq!(summary.backups_started, 1, "{summary:?}");
    assert_eq!(backups_of(app, &b.si).await.len(), 2);
    let second = &backups_of(app, &b.si).await[0];
    backup_until(app, &second.backup_id, finished).await;
    let (_, policy) = admin(app, "GET", &format!("/policies/{policy_id}"), None).await;
    let next: chrono::DateTime<Utc> = policy["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > late && next <= late + chrono::Duration::hours(6), "{policy}");

    // Suspended: never runs, says why.
    let (status, _) = admin(app, "POST", &format!("/policies/{policy_id}/suspend"), None).await;
    assert_eq!(status, 200);
    let summary = snapnest_e2e::run_policies_at(app, late + chrono::Duration::hours(7)).await.unwrap();
    assert_eq!((summary.backups_started, summary.policies_skipped), (0, 1));
    let (_, policy) = admin(app, "GET", &format!("/policies/{policy_id}"), None).await;
    assert_eq!(policy["last_run"]["skipped"], SUSPENDED);
    assert_eq!(backups_of(app, &b.si).await.len(), 2);

    // A store write failing mid-run: the tick fails with the seed's message, and its retry
    // finishes the slot without a second backup.
    admin(app, "POST", &format!("/policies/{policy_id}/resume"), None).await;
    let flaky = Snapnest::new(
        Arc::new(snapnest_e2e::Watched::new(app.store.clone(), FailPolicyUpdates(AtomicUsize::new(1)))),
        app.clouds.clone(),
        app.clock.clone(),
        app.settings.clone(),
    );
    let then = late + chrono::Duration::hours(13);
    let failed = snapnest_e2e::run_policies_at(&flaky, then).await.unwrap_err();
    assert!(matches!(failed, Error::Store(_)));
    assert_eq!(failed.to_string(), "Failed to synchronize metadata.");
    let retried = snapnest_e2e::run_policies_at(&flaky, then).await.unwrap();
    assert_eq!(retried.policies_due, 1);
    assert_eq!(backups_of(app, &b.si).await.len(), 3, "the retry found the slot's backup instead of starting another");

    // Deleting the policy frees the service instance for the other one.
    let (status, _) = admin(app, "DELETE", &format!("/policies/{policy_id}"), None).await;
    assert_eq!(status, 200);
    let (status, attached) =
        admin(app, "POST", &format!("/policies/{other_id}/targets"), Some(json!({"attach": [b.si]}))).await;
    assert_eq!(status, 200, "{attached}");
    let (_, listed) = admin(app, "GET", "/policies", None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

/// A member of an Aurora cluster in the service instance is left out of its backups with the
/// cause, the rest backed up; a policy that protects one disk ("Protect All Disks" off)
/// backs up that disk alone, and lists it as skipped once it is detached.
async fn cluster_members_and_chosen_disks(b: &Backend) {
    let app = &b.app;
    let member = b.add_aurora_member().await;
    let created = start_backup(app, &b.si, json!({})).await;
    let point = poll_until_finished(app, created["backup_id"].as_str().unwrap()).await;
    assert_eq!(point.status, JobStatus::Succeeded, "{point:#?}");
    assert!(point.items.iter().all(|i| i.resource_id != member), "{point:#?}");
    let skipped = point.skipped.iter().find(|s| s.resource_id == member).expect("the member is listed as skipped");
    assert!(skipped.reason.contains("CreateDBClusterSnapshot"), "{}", skipped.reason);

    let disk = point.items.iter().find(|i| i.instance_id.is_some() && i.instance_settings.is_none()).unwrap();
    let start = Utc::now() + chrono::Duration::seconds(1);
    let body = json!({"name": "one disk", "interval_hours": 6, "start_time": start.to_rfc3339(),
                      "retention_days": 7, "targets": [b.si], "volume_ids": [disk.resource_id]});
    let (status, policy) = admin(app, "POST", "/policies", Some(body)).await;
    assert_eq!(status, 201, "{policy}");
    assert_eq!(policy["volume_ids"], json!([disk.resource_id]));
    let (status, refused) = admin(
        app,
        "POST",
        "/policies",
        Some(json!({"name": "x", "interval_days": 1, "retention_days": 3, "volume_ids": ["i-123"]})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");

    let first_slot = start + chrono::Duration::seconds(1);
    snapnest_e2e::run_policies_at(app, first_slot).await.unwrap();
    let scheduled = backups_of(app, &b.si).await.into_iter().find(|p| p.policy_id.is_some()).unwrap();
    let scheduled = poll_until_finished(app, &scheduled.backup_id).await;
    let volumes: Vec<&str> =
        scheduled.items.iter().filter(|i| i.instance_id.is_some()).map(|i| i.resource_id.as_str()).collect();
    if b.sim.is_some() {
        assert_eq!(volumes, vec![disk.resource_id.as_str()], "the chosen disk alone: {scheduled:#?}");
    } else {
        // moto honours ExcludeBootVolume but ignores ExcludeDataVolumeIds (the other data disk
        // is snapshotted too, and recorded so it expires): what is sent is asserted on the
        // wire in shared/aws/tests/sent_requests.rs.
        let root = point.items.iter().find(|i| i.instance_settings.is_some()).unwrap();
        assert!(volumes.contains(&disk.resource_id.as_str()), "{scheduled:#?}");
        assert!(!volumes.contains(&root.resource_id.as_str()), "the root is not selected: {scheduled:#?}");
    }

    // Detached since: the next slot's point says so instead of failing.
    let cloud = app.clouds.home();
    cloud.detach_volume(disk.instance_id.as_deref().unwrap(), &disk.resource_id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cloud.describe_volumes(std::slice::from_ref(&disk.resource_id)).await.unwrap()[0].attachment.is_some() {
        assert!(Instant::now() < deadline, "the detach ends");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let next_slot = first_slot + chrono::Duration::hours(6);
    let summary = snapnest_e2e::run_policies_at(app, next_slot).await.unwrap();
    assert_eq!(summary.backups_started, 1, "{summary:?}");
    let latest = backups_of(app, &b.si).await.into_iter().next().unwrap();
    assert!(latest.items.iter().all(|i| i.instance_id.is_none()), "{latest:#?}");
    assert!(
        latest.skipped.iter().any(|s| s.resource_id == disk.resource_id && s.reason.contains("not attached")),
        "{latest:#?}"
    );
}

#[tokio::test]
async fn cluster_members_and_chosen_disks_on_the_simulated_cloud() {
    cluster_members_and_chosen_disks(&Backend::simulated().await).await;
}

#[tokio::test]
async fn cluster_members_and_chosen_disks_on_moto() {
    cluster_members_and_chosen_disks(&Backend::moto("cluster").await).await;
}

/// A snapshot deleted behind snapnest's back is noticed by the next daily look while the
/// point lives (not only at its expiry): the point is damaged, its restore refused; a
/// point looked at the same day is left alone.
async fn damage_found_while_the_point_lives(b: &Backend) {
    let app = &b.app;
    let created = start_backup(app, &b.si, json!({"retention_days": 30})).await;
    let point = poll_until_finished(app, created["backup_id"].as_str().unwrap()).await;
    assert_eq!(point.status, JobStatus::Succeeded, "{point:#?}");
    let finished = point.finished_at.unwrap();

    // Within the day: not looked at yet.
    let early = snapnest_e2e::expire_at(app, finished + chrono::Duration::hours(1)).await.unwrap();
    assert_eq!(early.points_verified, 0, "{early:?}");
    // A day later, all there: verified, nothing found.
    let day = snapnest_e2e::expire_at(app, finished + chrono::Duration::hours(25)).await.unwrap();
    assert!(day.points_verified >= 1 && day.damage_found == 0, "{day:?}");
    let looked: BackupRecord = app.backups.get(&point.backup_id).await.unwrap();
    assert!(looked.verified_at.is_some() && !looked.damaged, "{looked:#?}");

    // A snapshot deleted outside snapnest: the next look, a day after the last, finds it.
    let gone = point.items.iter().find(|i| i.kind == snapnest_core::model::ResourceKind::Volume).unwrap();
    b.delete_snapshot_outside(gone.snapshot_id.as_deref().unwrap()).await;
    let next = snapnest_e2e::expire_at(app, finished + chrono::Duration::hours(50)).await.unwrap();
    assert_eq!(next.damage_found, 1, "{next:?}");
    let damaged: BackupRecord = app.backups.get(&point.backup_id).await.unwrap();
    assert!(damaged.damaged, "{damaged:#?}");
    assert_eq!(damaged.status, JobStatus::Succeeded, "still there until its retention ends");
    let item = damaged.items.iter().find(|i| i.resource_id == gone.resource_id).unwrap();
    assert!(item.error.as_deref().unwrap().contains("deleted outside snapnest"), "{item:?}");
    let ev = http_event("restore.json", &[("BACKUP_ID", point.backup_id.as_str())], Some(&json!({"mode": "clone"})));
    let (status, refused) = call(restore::router(app.clone()), ev).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("BackupDamaged")), "{refused}");
}

#[tokio::test]
async fn damage_found_while_the_point_lives_on_the_simulated_cloud() {
    damage_found_while_the_point_lives(&Backend::simulated().await).await;
}

#[tokio::test]
async fn a_cloud_that_does_not_answer_never_marks_a_point_damaged() {
    // GIVEN a live point with a snapshot deleted outside snapnest, and a day gone by
    let dir = tempfile::tempdir().unwrap();
    let (app, sim) = local_service(dir.path(), &[]).await;
    let created = start_backup(&app, "si-demo", json!({"retention_days": 30})).await;
    let point = poll_until_finished(&app, created["backup_id"].as_str().unwrap()).await;
    sim.tamper_snapshot(HOME, point.items[0].snapshot_id.as_deref().unwrap(), None).unwrap();
    let day_later = point.finished_at.unwrap() + chrono::Duration::hours(25);
    // WHEN expire-retention runs while every describe is throttled
    let (throttled, _) = local_service(dir.path(), &[("SNAPNEST_SIM_FAULTS", "throttle=1.0")]).await;
    let summary = snapnest_e2e::expire_at(&throttled, day_later).await.unwrap();
    // THEN nothing is verified and nothing is marked: the point waits for the next run
    assert_eq!((summary.points_verified, summary.damage_found), (0, 0), "{summary:?}");
    assert!(summary.deferred >= 1, "{summary:?}");
    let untouched: BackupRecord = app.backups.get(&point.backup_id).await.unwrap();
    assert!(!untouched.damaged && untouched.verified_at.is_none(), "{untouched:#?}");
    // WHEN the cloud answers again THEN the next run finds the damage
    let summary = snapnest_e2e::expire_at(&app, day_later).await.unwrap();
    assert_eq!(summary.damage_found, 1, "{summary:?}");
}

#[tokio::test]
async fn capacity_counts_what_each_volume_snapshot_adds_to_its_chain() {
    // GIVEN two points of si-demo, one data volume written between them
    let dir = tempfile::tempdir().unwrap();
    let (app, sim) = local_service(dir.path(), &[]).await;
    let created = start_backup(&app, "si-demo", json!({})).await;
    let first = poll_until_finished(&app, created["backup_id"].as_str().unwrap()).await;
    let written = first.items.iter().find(|i| i.instance_id.is_some() && i.instance_settings.is_none()).unwrap();
    sim.write_data(HOME, &written.resource_id).unwrap();
    let created = start_backup(&app, "si-demo", json!({})).await;
    let second = poll_until_finished(&app, created["backup_id"].as_str().unwrap()).await;
    let before = app.jobs.capacity("si-demo").await.unwrap();
    // WHEN expire-retention's daily look has measured them
    snapnest_e2e::expire_at(&app, second.finished_at.unwrap() + chrono::Duration::hours(25)).await.unwrap();
    let first: BackupRecord = app.backups.get(&first.backup_id).await.unwrap();
    let second: BackupRecord = app.backups.get(&second.backup_id).await.unwrap();
    // THEN the first point's volume snapshots store all their data, the second's only the
    // written volume's (the others changed nothing)
    for item in first.items.iter().filter(|i| i.instance_id.is_some()) {
        assert_eq!(item.stored_bytes, Some(item.size_bytes), "{item:?}");
    }
    for item in second.items.iter().filter(|i| i.instance_id.is_some()) {
        let expected = if item.resource_id == written.resource_id { item.size_bytes } else { 0 };
        assert_eq!(item.stored_bytes, Some(expected), "{item:?}");
    }
    // and the capacity is that, not every point's full size
    let databases: u64 = [&first, &second]
        .iter()
        .flat_map(|p| &p.items)
        .filter(|i| i.kind == snapnest_core::model::ResourceKind::Database)
        .map(|i| i.size_bytes)
        .sum();
    let volumes_first: u64 = first.items.iter().filter(|i| i.instance_id.is_some()).map(|i| i.size_bytes).sum();
    let capacity = app.jobs.capacity("si-demo").await.unwrap();
    assert_eq!(capacity.snapshot_bytes, volumes_first + written.size_bytes + databases, "{capacity:?}");
    assert!(capacity.snapshot_bytes < before.snapshot_bytes, "{before:?} → {capacity:?}");
}

#[tokio::test]
async fn damage_found_while_the_point_lives_on_moto() {
    damage_found_while_the_point_lives(&Backend::moto("damage").await).await;
}

#[tokio::test]
async fn policies_on_the_simulated_cloud() {
    policies(&Backend::simulated().await).await;
}

#[tokio::test]
async fn policies_on_moto() {
    policies(&Backend::moto("policies").await).await;
}

#[tokio::test]
async fn a_released_instance_fails_its_items_and_the_policy_run_goes_on() {
    // Simulated only: the instance must be released between discovery and the snapshot
    // call, which moto cannot arrange (the cloud contract checks the AWS mapping of a
    // terminated instance to "This instance has been released." on moto).
    let dir = tempfile::tempdir().unwrap();
    let (app, sim) = local_service(dir.path(), &[("SNAPNEST_SIM_FAULTS", "release=1")]).await;
    sim.add_service_instance(HOME, "si-other", 1, 1, 1, true).unwrap();
    let request = PolicyRequest {
        name: "p".into(),
        interval_days: Some(1),
        retention_days: Some(3),
        targets: Some(vec!["si-demo".into(), "si-other".into()]),
        ..Default::default()
    };
    app.policies.create(&request).await.unwrap();
    let summary = snapnest_e2e::run_policies_at(&app, Utc::now()).await.unwrap();
    assert_eq!(summary.backups_started, 2, "both targets ran: {summary:?}");
    for si in ["si-demo", "si-other"] {
        let backup = backup_until(&app, &backups_of(&app, si).await[0].backup_id, finished).await;
        assert_eq!(backup.status, JobStatus::PartiallyFailed, "the databases still succeed");
        let volume = backup.items.iter().find(|i| i.instance_id.is_some()).unwrap();
        assert_eq!(volume.error.as_deref(), Some("This instance has been released."));
    }
}

// ---------------------------------------------------------------------------------------
// Retention, replication, restore modes

async fn retention_replication_and_restores(b: &Backend) {
    let app = &b.app;
    let created = start_backup(
        app,
        &b.si,
        json!({"retention_days": 5, "destination_region": WEST, "destination_retention_days": 2}),
    )
    .await;
    let id = created["backup_id"].as_str().unwrap().to_owned();
    let backup = backup_until(app, &id, |b| {
        b.status.is_terminal() && b.replication.as_ref().is_some_and(|r| r.status.is_terminal())
    })
    .await;
    assert_eq!(backup.replication.as_ref().unwrap().status, JobStatus::Succeeded);

    // Retention: extend, refuse to shorten, follow on the snapshots' tags.
    let (status, extended) =
        admin(app, "PATCH", &format!("/backups/{id}/retention"), Some(json!({"extend_days": 10}))).await;
    assert_eq!(status, 200, "{extended}");
    let (status, _) =
        admin(app, "PATCH", &format!("/backups/{id}/retention"), Some(json!({"expires_at": Utc::now().to_rfc3339()})))
            .await;
    assert_eq!(status, 409);
    let snapshot = backup.items[0].snapshot_id.clone().unwrap();
    let cloud = app.clouds.home();
    let found = cloud
        .find_snapshots(
            snapnest_core::cloud::tag::EXPIRES_AT,
            extended["expires_at"].as_str().unwrap().replace('Z', "+00:00").as_str(),
        )
        .await
        .unwrap();
    assert!(found.iter().any(|s| s.snapshot_id == snapshot), "the expiry tag followed the extension");

    // Disaster recovery from the copies names the destination's network: without it, a 400
    // that names what is missing, and nothing is written.
    let ev = http_event("restore.json", &[("BACKUP_ID", &id)], Some(&json!({"mode": "disaster_recovery"})));
    let (status, refused) = call(restore::router(app.clone()), ev).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "MissingParameter", "{refused}");
    let mut network = b.destination_network().await;
    network["mode"] = json!("disaster_recovery");

    // Disaster recovery and a clone launch the instances again from the point's snapshots.
    for (mode, region, body) in [("disaster_recovery", WEST, network), ("clone", HOME, json!({"mode": "clone"}))] {
        let ev = http_event("restore.json", &[("BACKUP_ID", &id)], Some(&body));
        let (status, restore) = call(restore::router(app.clone()), ev).await;
        assert_eq!(status, 202, "{restore}");
        assert_eq!(restore["region"], region);
        let done = restore_finished(app, restore["restore_id"].as_str().unwrap()).await;
        assert_eq!(done.status, JobStatus::Succeeded, "{mode}: {done:#?}");
        let cloud = app.clouds.region(region).unwrap();
        assert_eq!(done.instances.len(), 2, "{mode}: one launch per instance: {done:#?}");
        let launched: Vec<String> = done.instances.iter().filter_map(|l| l.new_instance_id.clone()).collect();
        let running = cloud.describe_instances(&launched).await.unwrap();
        assert_eq!(running.len(), 2, "{mode}: the launched instances exist in {region}");
        assert!(running.iter().all(|i| i.state == InstanceState::Running), "{mode}: {running:?}");
        assert!(done.instances.iter().all(|l| l.image_released), "{mode}: no image is left registered");
        for item in done.items.iter().filter(|i| i.instance_id.is_some()) {
            let launch = done.instances.iter().find(|l| Some(&l.instance_id) == item.instance_id.as_ref()).unwrap();
            let new_instance =
                running.iter().find(|i| Some(&i.instance_id) == launch.new_instance_id.as_ref()).unwrap();
            let at_device = new_instance.volumes.iter().find(|v| Some(&v.device) == item.device.as_ref());
            let volume = at_device.unwrap_or_else(|| panic!("{mode}: {:?} of {new_instance:?}", item.device));
            assert_eq!(item.new_resource_id.as_ref(), Some(&volume.volume_id), "{mode}");
            let snapshot = item.snapshot_id.as_deref().unwrap();
            assert!(b.made_from(region, &volume.volume_id, &item.resource_id, snapshot).await, "{mode}: {item:?}");
        }
        let originals = app.clouds.home().describe_instances(&[backup.items[0].instance_id.clone().unwrap()]).await;
        assert!(
            originals.unwrap()[0].volumes.iter().any(|v| v.volume_id == backup.items[0].resource_id),
            "{mode}: the originals are untouched"
        );
    }

    // One disk alone: a clone of just one data volume is a loose volume from its snapshot.
    let disk = backup.items.iter().find(|i| i.instance_id.is_some() && i.instance_settings.is_none()).unwrap();
    let body = json!({"mode": "clone", "resource_ids": [disk.resource_id]});
    let ev = http_event("restore.json", &[("BACKUP_ID", &id)], Some(&body));
    let (status, restore) = call(restore::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{restore}");
    let one = restore_finished(app, restore["restore_id"].as_str().unwrap()).await;
    assert_eq!((one.status, one.items.len(), one.instances.len()), (JobStatus::Succeeded, 1, 0), "{one:#?}");
    let volume = one.items[0].new_resource_id.clone().unwrap();
    assert!(b.made_from(HOME, &volume, &disk.resource_id, disk.snapshot_id.as_deref().unwrap()).await);

    // Replicas expire by their own (shorter) retention, moved by the point's extension too,
    // and the point by its own.
    let replica = backup.replication.as_ref().unwrap().items[0].replica_snapshot_id.clone().unwrap();
    let replicas_until: chrono::DateTime<Utc> =
        extended["replication"]["expires_at"].as_str().unwrap().parse().expect("the copies' expiry");
    let before_replicas = backup.replication.as_ref().unwrap().expires_at.unwrap();
    assert_eq!(replicas_until, before_replicas + chrono::Duration::days(10), "the copies follow the extension");
    let summary = snapnest_e2e::expire_at(app, before_replicas + chrono::Duration::days(1)).await.unwrap();
    assert_eq!((summary.replicas_expired, summary.points_expired), (0, 0), "{summary:?}");
    let summary = snapnest_e2e::expire_at(app, replicas_until + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!((summary.replicas_expired, summary.points_expired), (1, 0), "{summary:?}");
    assert!(!b.snapshot_exists(WEST, &replica).await);
    assert!(b.snapshot_exists(HOME, &snapshot).await);

    // In place on a released instance: the seed's 409; a clone still works.
    b.release(backup.items[0].instance_id.as_deref().unwrap()).await;
    let ev = http_event("restore.json", &[("BACKUP_ID", &id)], None);
    let (status, refused) = call(restore::router(app.clone()), ev).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["message"].as_str().unwrap().starts_with("This instance has been released."));
}

#[tokio::test]
async fn retention_replication_and_restore_modes_on_the_simulated_cloud() {
    retention_replication_and_restores(&Backend::simulated().await).await;
}

#[tokio::test]
async fn retention_replication_and_restore_modes_on_moto() {
    retention_replication_and_restores(&Backend::moto("modes").await).await;
}

async fn replication_limit(b: &Backend) {
    let app = &b.app;
    let si = b.large_service_instance().await;
    let created = start_backup(app, &si, json!({"destination_region": WEST})).await;
    let id = created["backup_id"].as_str().unwrap().to_owned();
    let backup = poll_until_finished(app, &id).await;
    assert_eq!(backup.items.len(), 25);
    // The first run starts 20 copies (the AWS limit per destination region); the rest wait.
    let first = app.replication.replicate_due().await.unwrap();
    assert_eq!(first.copies_started, 20, "{first:?}");
    let record: BackupRecord = app.backups.get(&id).await.unwrap();
    let replication = record.replication.unwrap();
    assert_eq!(replication.items.iter().filter(|i| i.status == snapnest_core::status::ItemStatus::Pending).count(), 5);
    assert_eq!(replication.status, JobStatus::Running);
    let done = backup_until(app, &id, |b| b.replication.as_ref().is_some_and(|r| r.status.is_terminal())).await;
    assert_eq!(done.replication.unwrap().status, JobStatus::Succeeded);
}

#[tokio::test]
async fn at_most_twenty_copies_in_flight_on_the_simulated_cloud() {
    replication_limit(&Backend::simulated().await).await;
}

#[tokio::test]
async fn at_most_twenty_copies_in_flight_on_moto() {
    replication_limit(&Backend::moto("limit").await).await;
}

// ---------------------------------------------------------------------------------------
// Jobs, cancel, capacity

async fn jobs_cancel_and_capacity(b: &Backend) {
    let app = &b.app;
    let (_, empty) = admin(app, "GET", &format!("/service-instances/{}/capacity", b.si), None).await;
    assert_eq!((empty["snapshot_bytes"].as_u64(), empty["backup_points"].as_u64()), (Some(0), Some(0)));

    // A finished point counts at once.
    let kept = start_backup(app, &b.si, json!({"retention_days": 1})).await;
    let kept_id = kept["backup_id"].as_str().unwrap().to_owned();
    let kept = backup_until(app, &kept_id, finished).await;
    let (_, capacity) = admin(app, "GET", &format!("/service-instances/{}/capacity", b.si), None).await;
    assert_eq!(capacity["backup_points"], 1);
    assert_eq!(capacity["snapshot_bytes"].as_u64(), Some(kept.snapshot_bytes));
    assert!(kept.snapshot_bytes > 0);

    // Cancel a running backup: it becomes Cancelled and its snapshots are deleted.
    let running = start_backup(app, &b.si, json!({})).await;
    let running_id = running["backup_id"].as_str().unwrap().to_owned();
    let (status, job) = admin(app, "POST", &format!("/jobs/{running_id}/cancel"), Some(json!({}))).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!((job["kind"].as_str(), job["status"].as_str()), (Some("backup"), Some("Cancelled")));
    let cancelled = backup_until(app, &running_id, |b| !b.cleanup_pending).await;
    for item in running["items"].as_array().unwrap().iter().filter(|i| i["kind"] == "volume") {
        if let Some(snapshot) = item["snapshot_id"].as_str() {
            assert!(!b.snapshot_exists(HOME, snapshot).await, "{snapshot} deleted on cancel");
        }
    }
    assert!(cancelled.items.iter().all(|i| i.snapshot_id.is_none()));
    let (status, again) = admin(app, "POST", &format!("/jobs/{running_id}/cancel"), Some(json!({}))).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("JobNotRunning")));

    // Cancel keeping the snapshots.
    let keep = start_backup(app, &b.si, json!({"destination_region": WEST})).await;
    let keep_id = keep["backup_id"].as_str().unwrap().to_owned();
    admin(app, "POST", &format!("/jobs/{keep_id}/cancel"), Some(json!({"keep_snapshots": true}))).await;
    let snapshot = keep["items"][0]["snapshot_id"].as_str().unwrap();
    assert!(b.snapshot_exists(HOME, snapshot).await, "kept on request");

    // Cancel a replication: the copies made so far are deleted.
    let replicated = start_backup(app, &b.si, json!({"destination_region": WEST})).await;
    let replicated_id = replicated["backup_id"].as_str().unwrap().to_owned();
    poll_until_finished(app, &replicated_id).await;
    app.replication.replicate_due().await.unwrap();
    let copies: Vec<String> = app
        .backups
        .get(&replicated_id)
        .await
        .unwrap()
        .replication
        .unwrap()
        .items
        .iter()
        .filter_map(|i| i.replica_snapshot_id.clone())
        .filter(|s| s.starts_with("snap-"))
        .collect();
    assert!(!copies.is_empty());
    let job_id = replicated_id.replacen("bk-", "rp-", 1);
    let (status, job) = admin(app, "POST", &format!("/jobs/{job_id}/cancel"), Some(json!({}))).await;
    assert_eq!(
        (status, job["kind"].as_str(), job["status"].as_str()),
        (202, Some("replication"), Some("Cancelled")),
        "{job}"
    );
    for copy in &copies {
        assert!(!b.snapshot_exists(WEST, copy).await, "copy {copy} deleted");
    }

    // Cancel an in-place restore once it stopped the instances: it rolls back, the
    // instances it stopped run again, and nothing it made is left.
    let ev = http_event(
        "restore.json",
        &[("BACKUP_ID", &kept_id)],
        Some(&json!({"mode": "in_place", "safety_backup": false})),
    );
    let (status, restore) = call(restore::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{restore}");
    let restore_id = restore["restore_id"].as_str().unwrap().to_owned();
    let (status, job) = admin(app, "POST", &format!("/jobs/{restore_id}/cancel"), Some(json!({}))).await;
    assert_eq!((status, job["status"].as_str()), (202, Some("RollingBack")), "{job}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        app.poller.poll_active().await.unwrap();
        let r: snapnest_core::model::RestoreRecord = app.restores.get(&restore_id).await.unwrap();
        if r.phase == snapnest_core::model::RestorePhase::Done {
            let states = app.clouds.home().describe_instances(&r.stopped_instance_ids).await.unwrap();
            assert!(states.iter().all(|i| i.state == snapnest_core::cloud::InstanceState::Running), "{states:?}");
            assert_eq!(r.status, JobStatus::RolledBack, "{r:#?}");
            assert_eq!(r.error.as_deref(), Some("cancelled by the user"));
            let made: Vec<String> = r.items.iter().filter_map(|i| i.new_resource_id.clone()).collect();
            let left = app.clouds.home().describe_volumes(&made).await.unwrap();
            assert!(left.is_empty(), "the volumes it made are deleted: {left:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{r:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Expiry: the expired point leaves the capacity at once and an expiry job is listed.
    snapnest_e2e::expire_at(app, Utc::now() + chrono::Duration::days(2)).await.unwrap();
    let (_, capacity) = admin(app, "GET", &format!("/service-instances/{}/capacity", b.si), None).await;
    assert!(capacity["backup_points"].as_u64().unwrap() < 3, "{capacity}");
    let points_left = capacity["backup_points"].as_u64().unwrap();
    let (_, kept_after) = admin(app, "GET", &format!("/backups/{kept_id}"), None).await;
    assert_eq!(kept_after["status"], "Expired");
    assert!(points_left <= 2);

    // The jobs list: every kind, newest first, filters, pages of 2 that list each job once.
    let (status, all) = admin(app, "GET", "/jobs", None).await;
    assert_eq!(status, 200);
    let kinds: std::collections::HashSet<&str> =
        all["items"].as_array().unwrap().iter().filter_map(|j| j["kind"].as_str()).collect();
    assert_eq!(kinds, ["backup", "restore", "replication", "expiry"].into_iter().collect());
    let times: Vec<&str> = all["items"].as_array().unwrap().iter().map(|j| j["started_at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    let (_, cancelled_backups) = admin(app, "GET", "/jobs?kind=backup&status=Cancelled", None).await;
    assert_eq!(cancelled_backups["items"].as_array().unwrap().len(), 2);
    let mut paged = Vec::new();
    let mut path = "/jobs?limit=2".to_owned();
    loop {
        let (_, page) = admin(app, "GET", &path, None).await;
        paged.extend(page["items"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_owned()));
        match page["next_token"].as_str() {
            Some(next) => path = format!("/jobs?limit=2&next_token={next}"),
            None => break,
        }
    }
    let every: Vec<String> =
        all["items"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(paged, every);
    let (status, bad) = admin(app, "GET", "/jobs?kind=snapshot", None).await;
    assert_eq!((status, bad["error"].as_str()), (400, Some("InvalidKind")));
}

#[tokio::test]
async fn jobs_cancel_and_capacity_on_the_simulated_cloud() {
    jobs_cancel_and_capacity(&Backend::simulated().await).await;
}

#[tokio::test]
async fn jobs_cancel_and_capacity_on_moto() {
    jobs_cancel_and_capacity(&Backend::moto("jobs").await).await;
}
