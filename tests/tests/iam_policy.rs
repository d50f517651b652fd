//! Every cloud and store call each function's handler can reach is allowed by that
//! function's role in `template.yaml`, decided by a real IAM policy evaluator
//! (`@cloud-copilot/iam-simulate`, installed pinned by `scripts/install-tools.sh` into
//! `tests/iam`), and every destructive call is allowed only under a condition on the
//! resource.
//!
//! The functions' handlers run, as in production, on one world (the embedded store and the
//! simulated cloud behind a recording decorator, on simulated time): create-backup,
//! run-policies, replicate, restore and admin-api through their own routers and handlers,
//! poll-status and expire-retention through the services their handlers call. Scenarios
//! reach the failure paths too: roll-backs of in-place restores (a refused attach, a
//! cancel, a roll-back on request), cancelled backups and replications, damaged points,
//! replaced resources past their keeping time; publish-events publishes the events of every
//! record's write (its `PutEvents`, the rows it reads for a cause, and the stream reads and
//! failure-queue sends Lambda makes with its role). Each call is turned into the requests AWS
//! authorises for it (`snapnest_e2e::iam`), with the tags sent and the tags the resource
//! carried then, and evaluated against the role of the function that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use snapnest_core::clock::Clock;
use snapnest_core::cloud::{CloudProvider, Tags};
use snapnest_core::events::EventPublisher;
use snapnest_core::ids::{BackupId, JobId};
use snapnest_core::store::Collection;
use snapnest_core::store::Document;
use snapnest_core::{Settings, Snapnest};
use snapnest_e2e::iam::{self, IamRequest};
use snapnest_e2e::moto::repo_root;
use snapnest_e2e::recording_cloud::{CallLog, RecordingBus, RecordingProvider, RecordingQueue, RecordingStore};
use snapnest_e2e::stream::Write;
use snapnest_e2e::template::load_template;
use snapnest_e2e::tripwire::SteppingClock;
use snapnest_local::embedded::EmbeddedStore;
use snapnest_local::events::InProcessBus;
use snapnest_local::queue::InProcessQueue;
use snapnest_local::retry::RetryingProvider;
use snapnest_local::simulated::{SimSettings, SimulatedCloud, DEMO_SERVICE_INSTANCE};

const REGION: &str = iam::HOME;
const DESTINATION: &str = "us-west-2";

/// The functions of `template.yaml`, by package.
const FUNCTIONS: [&str; 9] = [
    "create-backup",
    "start-backup",
    "run-policies",
    "poll-status",
    "expire-retention",
    "restore",
    "replicate",
    "admin-api",
    "publish-events",
];

struct World {
    _dir: tempfile::TempDir,
    app: Arc<Snapnest>,
    sim: SimulatedCloud,
    clock: Arc<SteppingClock>,
    log: Arc<CallLog>,
    starts: Arc<InProcessQueue>,
    /// publish-events' use case, publishing to a recording bus.
    publisher: EventPublisher,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(SteppingClock::new(Utc::now()));
        let settings = SimSettings {
            home_region: REGION.into(),
            operation_time: Duration::ZERO,
            latency: Duration::ZERO,
            faults: Default::default(),
        };
        let sim = SimulatedCloud::open(dir.path(), settings).expect("the simulated cloud");
        let log = Arc::new(CallLog::default());
        let store = Arc::new(RecordingStore {
            inner: Arc::new(EmbeddedStore::open(dir.path()).expect("the embedded store")),
            log: log.clone(),
        });
        let clouds = Arc::new(RecordingProvider {
            inner: Arc::new(RetryingProvider(sim.clone())),
            sim: sim.clone(),
            log: log.clone(),
        });
        let settings = Settings {
            tag_key: iam::TAG_KEY.into(),
            default_retention_days: 7,
            default_destination_region: Some(DESTINATION.into()),
            keep_replaced_days: 7,
            admins: Vec::new(),
            replica_kms_keys: [(DESTINATION.to_owned(), "alias/snapnest-replicas".to_owned())].into(),
            replica_option_groups: [(
                DESTINATION.to_owned(),
                [("si-demo-mysql8-options".to_owned(), "si-demo-mysql8-options-west".to_owned())].into(),
            )]
            .into(),
            trust_unverified_callers: true,
        };
        let starts = Arc::new(InProcessQueue::default());
        let queue = Arc::new(RecordingQueue { inner: starts.clone(), log: log.clone() });
        let bus = Arc::new(RecordingBus { inner: Arc::new(InProcessBus::default()), log: log.clone() });
        let publisher = EventPublisher::new(store.clone(), bus);
        let app = Arc::new(Snapnest::new(store, clouds, clock.clone(), settings).with_queue(queue));
        World { _dir: dir, app, sim, clock, log, starts, publisher }
    }

    /// publish-events, given the table's stream as it would carry `writes` (each record
    /// header's write as the DynamoDB store makes it).
    async fn publish(&self, writes: &[(Option<Document>, Document)]) {
        let writes: Vec<Write> = writes
            .iter()
            .enumerate()
            .map(|(n, (old, new))| Write::of_documents(old.as_ref(), Some(new), n as u64 + 1, 1_796_000_000.0))
            .collect();
        let event = snapnest_e2e::stream::lambda_event(&writes, &iam::stream_arn());
        let answer = self.log.run("publish-events", publish_events::handle(&self.publisher, event)).await;
        assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    }

    /// Tags every volume of the home region with its instance's service instance: what an
    /// in-place restore needs (README, "Deploy": volumes tagged, or instances launched with
    /// "propagate tags to volumes").
    async fn tag_volumes(&self, si: &str) {
        let home = self.sim.region(REGION).expect("the home region");
        let inventory = home.discover(iam::TAG_KEY, si).await.expect("discover");
        let tags: Tags = [(iam::TAG_KEY.to_owned(), si.to_owned())].into();
        for volume in inventory.instances.iter().flat_map(|i| &i.volumes) {
            home.tag_resource(&volume.volume_id, &tags).await.expect("tag a volume");
        }
    }

    /// An HTTP request to an HTTP function's router, as API Gateway sends it.
    async fn http(&self, function: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let router = match function {
            "create-backup" => create_backup::router(self.app.clone()),
            "restore" => restore::router(self.app.clone()),
            "admin-api" => admin_api::router(self.app.clone()),
            other => panic!("{other} is no HTTP function"),
        };
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut event = snapnest_e2e::event("restore.json");
        event["rawPath"] = json!(path);
        event["rawQueryString"] = json!(query);
        event["requestContext"]["http"]["path"] = json!(path);
        event["requestContext"]["http"]["method"] = json!(method);
        event["body"] = body.map_or(Value::Null, |b| json!(b.to_string()));
        self.log.run(function, snapnest_e2e::call(router, event)).await
    }

    async fn http_ok(&self, function: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.http(function, method, path, body).await;
        assert!((200..300).contains(&status), "{function} {method} {path}: {status} {answer}");
        answer
    }

    /// start-backup, given what create-backup and run-policies queued.
    async fn start_queued(&self) {
        let event = snapnest_lambda::work::sqs_event(&self.starts.take());
        let answer = self.log.run("start-backup", start_backup::handle(&self.app, event)).await;
        assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    }

    /// poll-status, a pass every ten simulated seconds, until nothing is left for it.
    async fn poll(&self) {
        self.start_queued().await;
        for _ in 0..200 {
            self.clock.advance(chrono::Duration::seconds(10));
            let _ = self.log.run("poll-status", self.app.poller.poll_active()).await;
            if self.app.store.list_active(Collection::Restores).await.expect("active").is_empty()
                && self.backups_settled().await
            {
                return;
            }
        }
        panic!("poll-status did not finish in 200 passes");
    }

    async fn backups_settled(&self) -> bool {
        for doc in self.app.store.list_active(Collection::Backups).await.expect("active") {
            let backup = self.app.backups.get(&doc.id).await.expect("a backup");
            if !backup.status.is_terminal() || backup.cleanup_pending {
                return false;
            }
        }
        true
    }

    /// replicate, a run a minute, until no copy is in flight.
    async fn replicate(&self) {
        for _ in 0..20 {
            self.clock.advance(chrono::Duration::minutes(1));
            let _ = self.log.run("replicate", self.app.replication.replicate_due()).await;
            let mut copying = false;
            for doc in self.app.store.list_active(Collection::Backups).await.expect("active") {
                let backup = self.app.backups.get(&doc.id).await.expect("a backup");
                copying |= backup.replication.is_some_and(|r| !r.status.is_terminal());
            }
            if !copying {
                return;
            }
        }
        panic!("replicate did not finish in 20 runs");
    }

    async fn backup(&self, si: &str, body: Value) -> String {
        let answer =
            self.http_ok("create-backup", "POST", &format!("/service-instances/{si}/backups"), Some(body)).await;
        self.poll().await;
        answer["backup_id"].as_str().expect("a backup id").to_owned()
    }

    async fn restore(&self, backup_id: &str, body: Value) -> String {
        let answer = self.http_ok("restore", "POST", &format!("/backups/{backup_id}/restores"), Some(body)).await;
        answer["restore_id"].as_str().map(str::to_owned).unwrap_or_default()
    }

    async fn restore_status(&self, restore_id: &str) -> String {
        self.app.restores.get(restore_id).await.expect("the restore").status.as_str().to_owned()
    }
}

/// Runs every function's reachable paths on one world and returns what was recorded.
async fn run_scenarios() -> World {
    let w = World::new();
    w.tag_volumes(DEMO_SERVICE_INSTANCE).await;
    // An instance whose volumes cannot be snapshotted as a group (one CreateSnapshot each).
    w.sim.add_service_instance(REGION, "si-single", 1, 2, 0, false).expect("add si-single");
    w.tag_volumes("si-single").await;

    // create-backup (and poll-status finishing it): a replicated point, a point of some
    // disks only, a point taken volume by volume.
    let replicated = w
        .backup(
            DEMO_SERVICE_INSTANCE,
            json!({"retention_days": 1, "destination_region": DESTINATION, "destination_retention_days": 1}),
        )
        .await;
    let inventory = w.sim.region(REGION).unwrap().discover(iam::TAG_KEY, DEMO_SERVICE_INSTANCE).await.unwrap();
    let first = &inventory.instances[0];
    w.backup(
        DEMO_SERVICE_INSTANCE,
        json!({"retention_days": 1, "instance_ids": [first.instance_id], "volume_ids": [first.volumes[1].volume_id]}),
    )
    .await;
    let single = w.backup("si-single", json!({"retention_days": 1})).await;

    // replicate, then admin-api's read routes and a retention change (which re-tags the
    // point's snapshots and its copies in the destination region).
    w.replicate().await;
    w.http_ok("admin-api", "GET", &format!("/service-instances/{DEMO_SERVICE_INSTANCE}/backups"), None).await;
    w.http_ok("admin-api", "GET", &format!("/backups/{replicated}"), None).await;
    w.http_ok("admin-api", "GET", "/jobs", None).await;
    w.http_ok("admin-api", "GET", &format!("/service-instances/{DEMO_SERVICE_INSTANCE}/capacity"), None).await;
    w.http_ok("admin-api", "PATCH", &format!("/backups/{replicated}/retention"), Some(json!({"extend_days": 1}))).await;
    w.http_ok("admin-api", "PATCH", &format!("/backups/{single}/retention"), Some(json!({"extend_days": 1}))).await;

    // admin-api's policies, and run-policies starting a due policy's backup.
    let policy = w
        .http_ok(
            "admin-api",
            "POST",
            "/policies",
            Some(json!({"name": "hourly", "interval_hours": 1, "retention_days": 1, "targets": ["si-single"]})),
        )
        .await;
    let policy_id = policy["policy_id"].as_str().expect("a policy id").to_owned();
    w.http_ok("admin-api", "GET", "/policies", None).await;
    w.http_ok("admin-api", "GET", &format!("/policies/{policy_id}"), None).await;
    let policy_written = w.app.store.get(Collection::Policies, &policy_id).await.expect("read").expect("the policy");
    w.http_ok("admin-api", "POST", &format!("/policies/{policy_id}/suspend"), None).await;
    w.http_ok("admin-api", "POST", &format!("/policies/{policy_id}/resume"), None).await;
    let due = w.clock.now() + chrono::Duration::hours(2);
    w.log.run("run-policies", snapnest_e2e::run_policies_at(&w.app, due)).await.expect("run-policies");
    let policy_ran = w.app.store.get(Collection::Policies, &policy_id).await.expect("read").expect("the policy");
    w.poll().await;
    w.http_ok("admin-api", "DELETE", &format!("/policies/{policy_id}"), None).await;

    // restore: the dry run, a clone, a disaster recovery from the copies.
    w.http_ok(
        "restore",
        "POST",
        &format!("/backups/{replicated}/restores"),
        Some(json!({"mode": "in_place", "dry_run": true})),
    )
    .await;
    // Clones and disaster recoveries launch instances (image, launch, deregistration) or
    // make loose volumes.
    let launched = w.restore(&replicated, json!({"mode": "clone"})).await;
    w.poll().await;
    assert_eq!(w.restore_status(&launched).await, "Succeeded");
    w.restore(&replicated, json!({"mode": "clone", "target": "volumes"})).await;
    w.poll().await;
    let network = json!({
        "mode": "disaster_recovery",
        "region": DESTINATION,
        "instance_type": "m7g.large",
        "subnet_id": snapnest_local::simulated::subnet_in(&format!("{DESTINATION}b")),
        "security_group_ids": ["sg-0west"],
        "key_name": "west-key",
        "db_subnet_group": "west-db",
    });
    let recovered = w.restore(&replicated, network).await;
    w.poll().await;
    assert_eq!(w.restore_status(&recovered).await, "Succeeded");
    let loose = json!({
        "mode": "disaster_recovery",
        "region": DESTINATION,
        "target": "volumes",
        "availability_zone": format!("{DESTINATION}c"),
        "db_subnet_group": "west-db",
    });
    w.restore(&replicated, loose).await;
    w.poll().await;

    // In place, committed, then rolled back on request.
    let rolled = w.restore(&replicated, json!({"mode": "in_place"})).await;
    w.poll().await;
    assert_eq!(w.restore_status(&rolled).await, "Succeeded");
    w.http_ok("restore", "POST", &format!("/restores/{rolled}/rollback"), None).await;
    w.poll().await;
    assert_eq!(w.restore_status(&rolled).await, "RolledBack");

    // In place, a volume the cloud refuses to attach: rolled back by poll-status.
    w.sim.fail_call(1, Some("attach_volume"), "IncorrectState", "refused (simulated)").expect("arm a failure");
    let refused = w.restore(&replicated, json!({"mode": "in_place", "safety_backup": false})).await;
    w.poll().await;
    assert_eq!(w.restore_status(&refused).await, "RolledBack");

    // In place, cancelled once its instances are stopped: rolled back.
    let cancelled = w.restore(&replicated, json!({"mode": "in_place", "safety_backup": false})).await;
    w.clock.advance(chrono::Duration::seconds(10));
    w.log.run("poll-status", w.app.poller.poll_active()).await.expect("a poll");
    w.http_ok("admin-api", "POST", &format!("/jobs/{cancelled}/cancel"), Some(json!({}))).await;
    w.poll().await;
    assert_eq!(w.restore_status(&cancelled).await, "RolledBack");

    // In place and kept: what it replaced is deleted by expire-retention later.
    let kept = w.restore(&replicated, json!({"mode": "in_place", "safety_backup": false})).await;
    w.poll().await;
    assert_eq!(w.restore_status(&kept).await, "Succeeded");

    // admin-api cancels: a running backup (its snapshots deleted) and a replication (its
    // copies deleted in the destination region).
    let running = w
        .http_ok(
            "create-backup",
            "POST",
            &format!("/service-instances/{DEMO_SERVICE_INSTANCE}/backups"),
            Some(json!({})),
        )
        .await;
    let running = running["backup_id"].as_str().expect("a backup id").to_owned();
    w.http_ok("admin-api", "POST", &format!("/jobs/{running}/cancel"), Some(json!({"keep_snapshots": false}))).await;
    w.poll().await;
    let copying =
        w.backup(DEMO_SERVICE_INSTANCE, json!({"retention_days": 1, "destination_region": DESTINATION})).await;
    w.clock.advance(chrono::Duration::minutes(1));
    w.log.run("replicate", w.app.replication.replicate_due()).await.expect("a replicate run");
    let job = JobId::replication_of(&BackupId::parse("backup id", &copying).expect("a backup id"));
    w.http_ok("admin-api", "POST", &format!("/jobs/{job}/cancel"), Some(json!({"keep_snapshots": false}))).await;

    // expire-retention after everything's retention and keeping time, one point damaged
    // (a snapshot deleted behind snapnest's back).
    let damaged = w.app.backups.get(&single).await.expect("the point");
    let snapshot = damaged.items.iter().find_map(|i| i.snapshot_id.clone()).expect("a snapshot");
    w.sim.tamper_snapshot(REGION, &snapshot, None).expect("delete a snapshot behind snapnest's back");
    let later = w.clock.now() + chrono::Duration::days(30);
    for run in 0..5 {
        let at = later + chrono::Duration::minutes(run);
        w.log.run("expire-retention", snapnest_e2e::expire_at(&w.app, at)).await.expect("expire-retention");
    }

    // publish-events, on the writes of every record header: each record written, a policy's
    // run, and a point that ended PartiallyFailed (whose cause is read from its rows).
    let mut writes: Vec<(Option<Document>, Document)> = Vec::new();
    for collection in [Collection::Backups, Collection::Restores] {
        let page = w.app.store.list_collection(collection, 100, None).await.expect("the records");
        writes.extend(page.documents.into_iter().map(|doc| (None, doc)));
    }
    writes.push((Some(policy_written), policy_ran));
    let (_, point) = writes.iter().find(|(_, d)| d.collection == Collection::Backups).cloned().expect("a point");
    let (mut running, mut partly) = (point.clone(), point);
    running.body["status"] = json!("Running");
    (partly.body["status"], partly.body["error"]) = (json!("PartiallyFailed"), Value::Null);
    writes.push((Some(running), partly));
    w.publish(&writes).await;
    w
}

/// The requests of every recorded call, and the port methods the mapping does not know.
fn requests_of(log: &CallLog) -> (Vec<IamRequest>, BTreeSet<String>) {
    let mut requests = Vec::new();
    let mut unmapped = BTreeSet::new();
    for call in log.cloud_calls() {
        match iam::cloud_requests(&call) {
            Some(found) => requests.extend(found),
            None => {
                unmapped.insert(format!("Cloud::{}", call.method));
            }
        }
    }
    requests.extend(log.queue_calls().iter().flat_map(iam::queue_requests));
    requests.extend(log.bus_calls().iter().flat_map(iam::bus_requests));
    // What Lambda reads and sends with publish-events' role: the stream, the failure queue.
    requests.extend(iam::stream_reader_requests("publish-events"));
    for call in log.store_calls() {
        match iam::store_requests(&call) {
            Some(found) => requests.extend(found),
            None => {
                unmapped.insert(format!("Store::{}", call.method));
            }
        }
    }
    (requests, unmapped)
}

/// Requests no role may be allowed: they prove the evaluator decides, and that the
/// conditions bite.
fn negative_controls() -> Vec<IamRequest> {
    let request = |function: &str, action: &str, resource: String| IamRequest {
        function: function.into(),
        action: action.into(),
        resource,
        context: BTreeMap::new(),
        origin: "negative control".into(),
        gone: false,
    };
    vec![
        request(
            "poll-status",
            "ec2:DeleteVolume",
            format!("arn:aws:ec2:{REGION}:{}:volume/vol-0untagged", iam::ACCOUNT),
        ),
        request(
            "expire-retention",
            "ec2:DeleteVolume",
            format!("arn:aws:ec2:{REGION}:{}:volume/vol-0untagged", iam::ACCOUNT),
        ),
        request("restore", "rds:DeleteDBInstance", format!("arn:aws:rds:{REGION}:{}:db:someone-elses", iam::ACCOUNT)),
        request("admin-api", "dynamodb:DeleteTable", iam::table_arn()),
        request(
            "poll-status",
            "ec2:TerminateInstances",
            format!("arn:aws:ec2:{REGION}:{}:instance/i-0abc", iam::ACCOUNT),
        ),
        request("create-backup", "ec2:DeleteSnapshot", format!("arn:aws:ec2:{REGION}::snapshot/snap-0abc")),
        // Events go on the default bus only, and only as snapnest's.
        request(
            "publish-events",
            "events:PutEvents",
            format!("arn:aws:events:{REGION}:{}:event-bus/someone-elses", iam::ACCOUNT),
        ),
        IamRequest {
            context: [("events:source".to_owned(), iam::ContextValue::Many(vec!["snapnest".into(), "aws.ec2".into()]))]
                .into(),
            ..request("publish-events", "events:PutEvents", iam::default_bus_arn())
        },
        request("poll-status", "events:PutEvents", iam::default_bus_arn()),
        request("publish-events", "dynamodb:PutItem", iam::table_arn()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reachable_call_of_every_function_is_allowed_by_its_role_and_destructive_ones_only_under_a_condition() {
    let started = Instant::now();
    let world = run_scenarios().await;
    let (requests, unmapped) = requests_of(&world.log);
    assert!(unmapped.is_empty(), "port methods without an entry in the IAM mapping (snapnest_e2e::iam): {unmapped:?}");

    // Every function was exercised.
    let by_function: BTreeMap<&str, usize> =
        FUNCTIONS.iter().map(|f| (*f, requests.iter().filter(|r| r.function == *f).count())).collect();
    for (function, count) in &by_function {
        assert!(*count > 0, "{function}: no call recorded");
    }

    let template = load_template(&repo_root().join("template.yaml"));
    let roles = iam::role_policies(&template, iam::parameters());
    for function in FUNCTIONS {
        assert!(roles.contains_key(function), "template.yaml has no function {function}");
    }

    // Each distinct request, each destructive one again without its resource's tags, and
    // the negative controls.
    let distinct = iam::distinct(requests.clone());
    let destructive: Vec<IamRequest> = distinct.iter().filter(|r| r.is_destructive()).map(|r| r.untagged()).collect();
    let controls = negative_controls();
    let all: Vec<IamRequest> = distinct.iter().chain(&destructive).chain(&controls).cloned().collect();
    let decisions = iam::evaluate(&repo_root(), &roles, &all);
    let (reachable, rest) = decisions.split_at(distinct.len());
    let (unconditioned, controlled) = rest.split_at(destructive.len());

    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for (request, decision) in distinct.iter().zip(reachable) {
        if decision.result == "Error" {
            failures.push(format!("INVALID {}: {}", request.describe(), decision.errors.clone().unwrap_or_default()));
        } else if decision.result != "Allowed" && request.gone {
            // No tag condition can hold for a resource that is not there; EC2 and RDS then
            // refuse the call (UnauthorizedOperation / AccessDenied) where they would answer
            // NotFound without the condition.
            notes.push(format!("denied on a resource that no longer exists: {}", request.describe()));
        } else if decision.result != "Allowed" {
            failures.push(format!("DENIED ({}) {}", decision.result, request.describe()));
        }
    }
    for (request, decision) in destructive.iter().zip(unconditioned) {
        if decision.result == "Allowed" || decision.result == "Error" {
            failures.push(format!("UNCONDITIONED ({}) {}", decision.result, request.describe()));
        }
    }
    for (request, decision) in controls.iter().zip(controlled) {
        if decision.result == "Allowed" || decision.result == "Error" {
            failures.push(format!("NEGATIVE CONTROL {} {}", decision.result, request.describe()));
        }
    }

    let actions: BTreeMap<&str, BTreeSet<&str>> = FUNCTIONS
        .iter()
        .map(|f| (*f, distinct.iter().filter(|r| r.function == *f).map(|r| r.action.as_str()).collect()))
        .collect();
    eprintln!(
        "IAM: {} requests recorded, {} distinct evaluated, {} destructive re-evaluated untagged, {} negative controls, in {:.1} s",
        requests.len(),
        distinct.len(),
        destructive.len(),
        controls.len(),
        started.elapsed().as_secs_f64()
    );
    for (function, actions) in &actions {
        eprintln!("  {function}: {}", actions.iter().copied().collect::<Vec<_>>().join(", "));
    }
    for note in &notes {
        eprintln!("  note: {note}");
    }
    assert!(failures.is_empty(), "{} IAM failures:\n{}", failures.len(), failures.join("\n"));
}
