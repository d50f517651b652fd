//! The simulated cloud: EC2, EBS and RDS in a file, for local runs and tests.
//!
//! State lives in `cloud.sqlite` in `SNAPNEST_DATA_DIR` so every function process sees
//! the same cloud (one JSON document, changed in `BEGIN IMMEDIATE` transactions).
//! Long operations finish `SNAPNEST_SIM_SNAPSHOT_SECONDS` after they start, every call
//! waits `SNAPNEST_SIM_LATENCY_MS`, and `SNAPNEST_SIM_FAULTS` injects seeded faults:
//! `throttle=<p>` (a call is throttled), `snapshot_error=<p>` (a snapshot ends in error),
//! `release=<p>` (the instance is found released when its snapshot is asked for),
//! `fail=<op>` (the next call of that mutating operation is refused with `SimulatedFailure`;
//! the key may repeat), `seed=<n>`. Every volume and database carries a content fingerprint
//! that snapshots copy and restores bring back, so a test can prove which data a restore
//! returned.
//!
//! Faults a test places itself are persisted with the world, so they hold whichever process
//! makes the call: [`SimulatedCloud::fail_call`] refuses the nth mutating call, and
//! [`SimulatedCloud::refuse_stop`] makes an instance one `StopInstances` refuses. The world
//! also counts every mutating call ([`SimulatedCloud::mutations`]) and logs the ones it
//! accepted ([`SimulatedCloud::calls`]), so a test can tell which calls changed it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use snapnest_core::cloud::*;

/// The operations of the `Cloud` port that change the world: what `mutations` counts,
/// `fail=` and `fail_call` name, and the call log records.
pub const MUTATING_OPS: &[&str] = &[
    "snapshot_instance",
    "snapshot_volume",
    "snapshot_database",
    "delete_snapshot",
    "delete_db_snapshot",
    "tag_snapshot",
    "copy_snapshot",
    "copy_db_snapshot",
    "stop_instances",
    "start_instances",
    "create_volume",
    "detach_volume",
    "attach_volume",
    "set_delete_on_termination",
    "set_deletion_protection",
    "delete_volume",
    "tag_resource",
    "untag_resource",
    "restore_database",
    "rename_database",
    "delete_database",
    "register_image",
    "deregister_image",
    "run_instance",
];

/// The error code of a call refused by `fail=<op>`.
pub const SIMULATED_FAILURE: &str = "SimulatedFailure";

/// Ids EC2 takes in one describe (a filter's values, an id list).
const EC2_IDS_PER_CALL: usize = 200;

/// Snapshots in one page of a filtered EC2 listing (DescribeSnapshots' MaxResults' most).
const SNAPSHOTS_PER_PAGE: usize = 1000;

/// Faults to inject, parsed from `SNAPNEST_SIM_FAULTS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    pub throttle: f64,
    pub snapshot_error: f64,
    pub release: f64,
    /// Operations (of [`MUTATING_OPS`]) whose next call is refused, once each.
    pub fail: Vec<String>,
    pub seed: u64,
}

impl std::str::FromStr for Faults {
    type Err = String;
    fn from_str(spec: &str) -> Result<Self, String> {
        let mut faults = Faults::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("'{part}' is not key=value"))?;
            let probability = || -> Result<f64, String> {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(|| format!("{key}: '{value}' is not a probability between 0 and 1"))
            };
            match key {
                "throttle" => faults.throttle = probability()?,
                "snapshot_error" => faults.snapshot_error = probability()?,
                "release" => faults.release = probability()?,
                "fail" if MUTATING_OPS.contains(&value) => faults.fail.push(value.to_owned()),
                "fail" => return Err(format!("fail: '{value}' is not a mutating call ({})", MUTATING_OPS.join(", "))),
                "seed" => faults.seed = value.parse().map_err(|_| format!("seed: '{value}' is not a number"))?,
                other => {
                    return Err(format!("unknown fault '{other}' (throttle, snapshot_error, release, fail, seed)"))
                }
            }
        }
        Ok(faults)
    }
}

/// How the simulation behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    pub home_region: String,
    /// How long a snapshot, copy, volume creation or database restore takes.
    pub operation_time: Duration,
    pub latency: Duration,
    pub faults: Faults,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimInstance {
    id: String,
    state: InstanceState,
    /// The state being moved to, reached at `ready_at_ms`.
    target: Option<InstanceState>,
    ready_at_ms: i64,
    availability_zone: String,
    tags: Tags,
    consistent_groups: bool,
    /// Why `StopInstances` refuses this instance (an instance-store root, stop protection).
    #[serde(default)]
    stop_refusal: Option<Refusal>,
    /// Type, network, boot settings.
    #[serde(default)]
    settings: InstanceSettings,
    /// The `RunInstances` client token it was launched with.
    #[serde(default)]
    client_token: Option<String>,
}

/// An image registered from snapshots.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimImage {
    id: String,
    name: String,
    root_device_name: String,
    devices: Vec<(String, String, VolumeSettings)>,
    tags: Tags,
    ready_at_ms: i64,
}

/// A refusal the cloud answers instead of doing the call.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Refusal {
    code: String,
    message: String,
}

impl Refusal {
    fn error(&self) -> CloudError {
        CloudError::Rejected { code: self.code.clone(), message: self.message.clone() }
    }
}

/// A mutating call to refuse when its turn comes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingFailure {
    /// Only calls of this operation count; any mutating call does when `None`.
    op: Option<String>,
    /// Counted calls until the refused one, which is the one that brings this to 0.
    calls_to_go: u64,
    refusal: Refusal,
}

/// A mutating call the simulated cloud accepted, as the call log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCall {
    pub region: String,
    /// The `Cloud` method, e.g. `create_volume`.
    pub op: String,
    /// The call's arguments in the port's parameter order, tags left out (`untag_resource`
    /// keeps its keys). A list of ids (`stop_instances`) spreads into the arguments; a
    /// `VolumeSelection` is `all` or its volume ids joined by commas.
    pub args: Vec<String>,
}

/// A mutating call as `call` receives it: what pending failures match and the log records.
struct Mutation {
    op: &'static str,
    args: Vec<String>,
}

/// The `Mutation` of a call of `op` with `args`, for `SimulatedCloud::call`.
fn mutating<S: AsRef<str>>(op: &'static str, args: impl IntoIterator<Item = S>) -> Option<Mutation> {
    Some(Mutation { op, args: args.into_iter().map(|a| a.as_ref().to_owned()).collect() })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimVolume {
    id: String,
    availability_zone: String,
    size_gib: u64,
    tags: Tags,
    attachment: Option<(String, String)>,
    fingerprint: String,
    ready_at_ms: i64,
    /// A detach or attach in progress, done at `ready_at_ms`.
    moving: Option<VolumeMove>,
    /// The `CreateVolume` client token it was made with.
    #[serde(default)]
    client_token: Option<String>,
    /// Type, IOPS, encryption…, and whether it goes with the instance it is attached to.
    #[serde(default)]
    settings: VolumeSettings,
}

/// A volume's attachment change in progress. (An enum rather than `Option<Option<_>>`,
/// which JSON cannot tell apart from `None`.)
#[derive(Debug, Clone, Serialize, Deserialize)]
enum VolumeMove {
    Detach,
    Attach { instance_id: String, device: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimSnapshot {
    id: String,
    source_id: String,
    size_gib: u64,
    fingerprint: String,
    tags: Tags,
    started_ms: i64,
    ready_at_ms: i64,
    error: Option<String>,
    /// Why a delete is refused (an AMI or a volume uses it).
    in_use_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimDatabase {
    id: String,
    engine: String,
    availability_zone: String,
    allocated_gib: u64,
    tags: Tags,
    fingerprint: String,
    status: String,
    ready_at_ms: i64,
    #[serde(default)]
    settings: DatabaseSettings,
    /// The DB cluster it is a member of.
    #[serde(default)]
    cluster_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Region {
    instances: BTreeMap<String, SimInstance>,
    volumes: BTreeMap<String, SimVolume>,
    snapshots: BTreeMap<String, SimSnapshot>,
    databases: BTreeMap<String, SimDatabase>,
    db_snapshots: BTreeMap<String, SimSnapshot>,
    #[serde(default)]
    images: BTreeMap<String, SimImage>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct World {
    regions: BTreeMap<String, Region>,
    /// Counts calls and created ids: the fault injection is seeded by it, ids come from it.
    counter: u64,
    /// Mutating calls made, refused ones included.
    #[serde(default)]
    mutations: u64,
    /// The mutating calls the cloud accepted, in order.
    #[serde(default)]
    calls: Vec<SimCall>,
    /// Failures placed by `fail_call` or `fail=`, in the order they were placed.
    #[serde(default)]
    failures: Vec<PendingFailure>,
    /// The `fail=` list last armed: every process of a local run opens the cloud with the
    /// same list, and it must arm once for the world, not once per process.
    #[serde(default)]
    armed_fail: Vec<String>,
}

impl World {
    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}-{:017x}", self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 4)
    }

    /// Counts a mutating call of `op` against the pending failures and answers the refusal
    /// of the first one whose turn it is. Every failure whose turn it is is used up: they
    /// all name this call.
    fn due_failure(&mut self, op: &str) -> Option<Refusal> {
        let mut due = None;
        self.failures.retain_mut(|failure| {
            if failure.op.as_deref().is_some_and(|only| only != op) {
                return true;
            }
            failure.calls_to_go = failure.calls_to_go.saturating_sub(1);
            if failure.calls_to_go > 0 {
                return true;
            }
            due.get_or_insert_with(|| failure.refusal.clone());
            false
        });
        due
    }
}

/// The simulated cloud of every region, shared through a file, or held in memory.
#[derive(Clone)]
pub struct SimulatedCloud {
    world: Arc<Backing>,
    settings: Arc<SimSettings>,
    /// Calls of this handle under way now, and the most there have been at once.
    in_flight: Arc<(std::sync::atomic::AtomicUsize, std::sync::atomic::AtomicUsize)>,
    /// Calls of this handle made so far, reads and writes.
    made: Arc<std::sync::atomic::AtomicUsize>,
    /// When each call of this handle began and ended, for the round trips made one after
    /// another ([`SimulatedCloud::sequential_round_trips`]).
    windows: Arc<Mutex<Vec<(std::time::Instant, std::time::Instant)>>>,
}

/// Where the world is kept: in a file every local function process shares (each call reads
/// and writes it whole, in a transaction), or in this process's memory (a benchmark's
/// large world, where that would be most of the time measured).
enum Backing {
    File(Mutex<Connection>),
    Memory(Mutex<World>),
}

/// The simulated cloud of one region.
pub struct SimulatedRegion {
    cloud: SimulatedCloud,
    region: String,
}

/// The demo service instance of the SPEC.
pub const DEMO_SERVICE_INSTANCE: &str = "si-demo";

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn sim_err(e: impl std::fmt::Display) -> CloudError {
    CloudError::Transient(format!("simulated cloud storage: {e}"))
}

impl SimulatedCloud {
    /// Opens (creating and seeding with `si-demo` when new) `cloud.sqlite` in `data_dir`.
    pub fn open(data_dir: &Path, settings: SimSettings) -> CloudResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(sim_err)?;
        let conn = Connection::open(data_dir.join("cloud.sqlite")).map_err(sim_err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sim_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sim_err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS world (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)",
        )
        .map_err(sim_err)?;
        Self::seeded(Backing::File(Mutex::new(conn)), settings)
    }

    /// A simulated cloud held in this process's memory only, seeded with `si-demo`.
    pub fn in_memory(settings: SimSettings) -> CloudResult<Self> {
        Self::seeded(Backing::Memory(Mutex::new(World::default())), settings)
    }

    fn seeded(world: Backing, settings: SimSettings) -> CloudResult<Self> {
        let cloud = Self {
            world: Arc::new(world),
            settings: Arc::new(settings),
            in_flight: Arc::default(),
            made: Arc::default(),
            windows: Arc::default(),
        };
        let (home, fail) = (cloud.settings.home_region.clone(), cloud.settings.faults.fail.clone());
        cloud.mutate_blocking(move |world, _| {
            if world.regions.is_empty() {
                let az = format!("{home}a");
                seed_service_instance(world, &home, &az, DEMO_SERVICE_INSTANCE, 2, 3, 1, true);
            }
            // Armed when the list differs from the one armed last, so the processes of one run
            // arm it once; an open without `fail=` (a test's own handle) leaves it alone. A
            // fresh data dir, or another list, arms again.
            if !fail.is_empty() && world.armed_fail != fail {
                for op in &fail {
                    world.failures.push(PendingFailure {
                        op: Some(op.clone()),
                        calls_to_go: 1,
                        refusal: Refusal {
                            code: SIMULATED_FAILURE.into(),
                            message: format!("{op} failed (simulated)"),
                        },
                    });
                }
                world.armed_fail = fail;
            }
            Ok(())
        })?;
        Ok(cloud)
    }

    pub fn settings(&self) -> &SimSettings {
        &self.settings
    }

    fn mutate_blocking<T>(&self, work: impl FnOnce(&mut World, &mut SmallRng) -> CloudResult<T>) -> CloudResult<T> {
        let conn = match self.world.as_ref() {
            Backing::File(conn) => conn,
            Backing::Memory(world) => {
                let mut world = world.lock().map_err(|_| sim_err("mutex poisoned"))?;
                world.counter += 1;
                let seed = self.settings.faults.seed ^ world.counter.wrapping_mul(0x2545_F491_4F6C_DD1D);
                return work(&mut world, &mut SmallRng::seed_from_u64(seed));
            }
        };
        let mut conn = conn.lock().map_err(|_| sim_err("mutex poisoned"))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sim_err)?;
        let stored: Option<String> =
            tx.query_row("SELECT state FROM world WHERE id = 1", [], |r| r.get(0)).optional().map_err(sim_err)?;
        let mut world: World = match stored {
            Some(json) => serde_json::from_str(&json).map_err(sim_err)?,
            None => World::default(),
        };
        world.counter += 1;
        let mut rng =
            SmallRng::seed_from_u64(self.settings.faults.seed ^ world.counter.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let out = work(&mut world, &mut rng);
        // State changes made before a failure are kept, as in a real cloud.
        let json = serde_json::to_string(&world).map_err(sim_err)?;
        tx.execute("INSERT OR REPLACE INTO world (id, state) VALUES (1, ?1)", params![json]).map_err(sim_err)?;
        tx.commit().map_err(sim_err)?;
        out
    }

    /// Runs one simulated API call of `region`: latency, then for a `mutation` its count and
    /// any failure placed for it, throttling, then `work` (`mutation` is `None` for the calls
    /// that only read). The pending failures count before throttling, so the nth call is
    /// the nth that reaches the cloud, whatever the throttle draws.
    ///
    /// The log takes a mutating call when `work` accepted it, even one that found nothing
    /// to do (a delete of what is gone, a used client token): the cloud answered it as done.
    /// A refused call — a placed failure, throttling, the cloud's own rules — is counted
    /// but not logged, as it changed nothing. (Every refusal here checks before it changes
    /// anything; the release fault's termination is the world's doing, not the call's.)
    async fn call<T: Send + 'static>(
        &self,
        region: &str,
        mutation: Option<Mutation>,
        work: impl FnOnce(&mut Region, &mut World, &SimSettings, &mut SmallRng) -> CloudResult<T> + Send + 'static,
    ) -> CloudResult<T> {
        use std::sync::atomic::Ordering;
        self.made.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.0.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight.1.fetch_max(now, Ordering::SeqCst);
        let began = std::time::Instant::now();
        let out = self.call_now(region, mutation, work).await;
        self.in_flight.0.fetch_sub(1, Ordering::SeqCst);
        // Kept only where calls take time (tests and benchmarks of latency), not by a
        // long-lived local run's processes.
        if !self.settings.latency.is_zero() {
            if let Ok(mut windows) = self.windows.lock() {
                windows.push((began, std::time::Instant::now()));
            }
        }
        out
    }

    /// The calls of this handle made one after another since the last reset: the longest
    /// chain of calls each begun after the one before it ended. That is the count of round
    /// trips a caller waited for in turn, whatever the machine's speed: calls made at once
    /// overlap and count once, calls made after another's answer count each.
    pub fn sequential_round_trips(&self) -> usize {
        let mut windows = self.windows.lock().map(|w| w.clone()).unwrap_or_default();
        // The most windows that do not overlap: earliest end first (interval scheduling).
        windows.sort_by_key(|(_, end)| *end);
        let mut chain = 0;
        let mut last_end = None;
        for (began, end) in windows {
            if last_end.is_none_or(|last| began >= last) {
                chain += 1;
                last_end = Some(end);
            }
        }
        chain
    }

    /// When the first call of this handle begun after `after` began (with a latency set).
    pub fn first_call_began_after(&self, after: std::time::Instant) -> Option<std::time::Instant> {
        self.windows.lock().ok()?.iter().map(|(began, _)| *began).filter(|b| *b > after).min()
    }

    /// When the last call of this handle began (with a latency set).
    pub fn last_call_began(&self) -> Option<std::time::Instant> {
        self.windows.lock().ok()?.iter().map(|(began, _)| *began).max()
    }

    /// Counts calls and round trips afresh from now on.
    pub fn reset_round_trips(&self) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.clear();
        }
    }

    /// Calls of this handle made so far, of every kind (each page of a listing is one).
    pub fn calls_made(&self) -> usize {
        self.made.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most calls of this handle that were under way at once.
    pub fn most_in_flight(&self) -> usize {
        self.in_flight.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts the most calls at once afresh from now on.
    pub fn reset_most_in_flight(&self) {
        self.in_flight.1.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    async fn call_now<T: Send + 'static>(
        &self,
        region: &str,
        mutation: Option<Mutation>,
        work: impl FnOnce(&mut Region, &mut World, &SimSettings, &mut SmallRng) -> CloudResult<T> + Send + 'static,
    ) -> CloudResult<T> {
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        let this = self.clone();
        let region = region.to_owned();
        tokio::task::spawn_blocking(move || {
            let settings = this.settings.clone();
            this.mutate_blocking(|world, rng| {
                if let Some(mutation) = &mutation {
                    world.mutations += 1;
                    if let Some(refusal) = world.due_failure(mutation.op) {
                        return Err(refusal.error());
                    }
                }
                if rng.gen_bool(settings.faults.throttle) {
                    return Err(CloudError::Throttled("Request limit exceeded (simulated)".into()));
                }
                let mut taken = world.regions.remove(&region).unwrap_or_default();
                let out = work(&mut taken, world, &settings, rng);
                world.regions.insert(region.clone(), taken);
                if let (Some(Mutation { op, args }), Ok(_)) = (mutation, &out) {
                    world.calls.push(SimCall { region, op: op.to_owned(), args });
                }
                out
            })
        })
        .await
        .map_err(sim_err)?
    }

    /// Makes the `nth` mutating call from now (1 = the next) fail with `Rejected { code,
    /// message }`, changing nothing; only calls of `op` count when it is given. One-shot;
    /// several may be pending, and those whose turn is the same call are all used up by it.
    pub fn fail_call(&self, nth: u64, op: Option<&str>, code: &str, message: &str) -> CloudResult<()> {
        let invalid = |message: String| CloudError::Rejected { code: "InvalidParameterValue".into(), message };
        if nth == 0 {
            return Err(invalid("nth counts from 1 (the next call)".into()));
        }
        if let Some(op) = op.filter(|op| !MUTATING_OPS.contains(op)) {
            // A misspelt operation would never come, and the failure with it.
            return Err(invalid(format!("'{op}' is not a mutating call ({})", MUTATING_OPS.join(", "))));
        }
        let failure = PendingFailure {
            op: op.map(str::to_owned),
            calls_to_go: nth,
            refusal: Refusal { code: code.to_owned(), message: message.to_owned() },
        };
        self.mutate_blocking(move |world, _| {
            world.failures.push(failure);
            Ok(())
        })
    }

    /// Makes `StopInstances` refuse every call that names `instance_id`, changing nothing,
    /// as EC2 does for an instance-store root (`UnsupportedOperation`) or under stop
    /// protection (`OperationNotPermitted`).
    pub fn refuse_stop(&self, region: &str, instance_id: &str, code: &str, message: &str) -> CloudResult<()> {
        let (region, id) = (region.to_owned(), instance_id.to_owned());
        let refusal = Refusal { code: code.to_owned(), message: message.to_owned() };
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            r.instances.get_mut(&id).ok_or_else(|| CloudError::NotFound(id.clone()))?.stop_refusal = Some(refusal);
            Ok(())
        })
    }

    /// How many mutating calls were made, refused ones included.
    pub fn mutations(&self) -> CloudResult<u64> {
        self.mutate_blocking(|world, _| Ok(world.mutations))
    }

    /// The mutating calls the cloud accepted, in order (see `call` for which are logged).
    pub fn calls(&self) -> CloudResult<Vec<SimCall>> {
        self.mutate_blocking(|world, _| Ok(world.calls.clone()))
    }

    /// Adds a service instance of `instances` instances with `volumes_per_instance` volumes
    /// each and `databases` DB instances (tests, benchmarks). Returns nothing; discover it.
    pub fn add_service_instance(
        &self,
        region: &str,
        service_instance_id: &str,
        instances: usize,
        volumes_per_instance: usize,
        databases: usize,
        consistent_groups: bool,
    ) -> CloudResult<()> {
        let (region, si) = (region.to_owned(), service_instance_id.to_owned());
        self.mutate_blocking(move |world, _| {
            let az = format!("{region}a");
            seed_service_instance(
                world,
                &region,
                &az,
                &si,
                instances,
                volumes_per_instance,
                databases,
                consistent_groups,
            );
            Ok(())
        })
    }

    /// Adds an Aurora DB instance, a member of `cluster_id`, to a service instance (tests).
    pub fn add_cluster_member(
        &self,
        region: &str,
        service_instance_id: &str,
        db_id: &str,
        cluster_id: &str,
    ) -> CloudResult<()> {
        let (region, si, id, cluster) =
            (region.to_owned(), service_instance_id.to_owned(), db_id.to_owned(), cluster_id.to_owned());
        self.mutate_blocking(move |world, _| {
            let az = format!("{region}a");
            let r = world.regions.entry(region).or_default();
            let tags: Tags = [("service-instance-id".to_owned(), si)].into();
            let member = SimDatabase {
                fingerprint: format!("{id}#initial"),
                id: id.clone(),
                engine: "aurora-mysql".into(),
                availability_zone: az,
                allocated_gib: 1,
                tags,
                status: "available".into(),
                ready_at_ms: 0,
                settings: DatabaseSettings::default(),
                cluster_id: Some(cluster),
            };
            r.databases.insert(id, member);
            Ok(())
        })
    }

    /// Writes new data to a volume or database: its fingerprint changes.
    pub fn write_data(&self, region: &str, resource_id: &str) -> CloudResult<String> {
        let (region, id) = (region.to_owned(), resource_id.to_owned());
        self.mutate_blocking(move |world, _| {
            let counter = world.counter;
            let r = world.regions.entry(region).or_default();
            let fingerprint = format!("{id}#write-{counter}");
            if let Some(v) = r.volumes.get_mut(&id) {
                v.fingerprint = fingerprint.clone();
            } else if let Some(d) = r.databases.get_mut(&id) {
                d.fingerprint = fingerprint.clone();
            } else {
                return Err(CloudError::NotFound(id));
            }
            Ok(fingerprint)
        })
    }

    /// The content fingerprint of a volume or database.
    pub fn fingerprint(&self, region: &str, resource_id: &str) -> CloudResult<String> {
        let (region, id) = (region.to_owned(), resource_id.to_owned());
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            r.volumes
                .get(&id)
                .map(|v| v.fingerprint.clone())
                .or_else(|| r.databases.get(&id).map(|d| d.fingerprint.clone()))
                .ok_or(CloudError::NotFound(id))
        })
    }

    /// The tags of a volume.
    pub fn volume_tags(&self, region: &str, volume_id: &str) -> CloudResult<Tags> {
        let (region, id) = (region.to_owned(), volume_id.to_owned());
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            r.volumes.get(&id).map(|v| v.tags.clone()).ok_or(CloudError::NotFound(id))
        })
    }

    /// Ids of the volumes that exist in a region.
    pub fn volume_ids(&self, region: &str) -> CloudResult<Vec<String>> {
        let region = region.to_owned();
        self.mutate_blocking(move |world, _| {
            Ok(world.regions.entry(region).or_default().volumes.keys().cloned().collect())
        })
    }

    /// Ids of the DB instances that exist in a region.
    pub fn database_ids(&self, region: &str) -> CloudResult<Vec<String>> {
        let region = region.to_owned();
        self.mutate_blocking(move |world, _| {
            Ok(world.regions.entry(region).or_default().databases.keys().cloned().collect())
        })
    }

    /// The state of an instance now (transitions whose time has come are settled first).
    pub fn instance_state(&self, region: &str, instance_id: &str) -> CloudResult<InstanceState> {
        let (region, id) = (region.to_owned(), instance_id.to_owned());
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            settle(r, now_ms());
            r.instances.get(&id).map(|i| i.state).ok_or(CloudError::NotFound(id))
        })
    }

    /// A DB instance as (status, fingerprint, tags), settled first; `None` when it does not exist.
    pub fn database(&self, region: &str, db_id: &str) -> CloudResult<Option<(String, String, Tags)>> {
        let (region, id) = (region.to_owned(), db_id.to_owned());
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            settle(r, now_ms());
            Ok(r.databases.get(&id).map(|d| (d.status.clone(), d.fingerprint.clone(), d.tags.clone())))
        })
    }

    /// The volume attached to `instance_id` at `device`.
    pub fn volume_at(&self, region: &str, instance_id: &str, device: &str) -> CloudResult<Option<String>> {
        let (region, want) = (region.to_owned(), Some((instance_id.to_owned(), device.to_owned())));
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            Ok(r.volumes.values().find(|v| v.attachment == want).map(|v| v.id.clone()))
        })
    }

    /// Puts a database in an RDS status (`backing-up`, `modifying`…) until it is set back to
    /// `available`.
    pub fn set_database_status(&self, region: &str, db_id: &str, status: &str) -> CloudResult<()> {
        let (region, id, status) = (region.to_owned(), db_id.to_owned(), status.to_owned());
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            let db = r.databases.get_mut(&id).ok_or_else(|| CloudError::NotFound(id.clone()))?;
            db.ready_at_ms = if status == "available" { 0 } else { i64::MAX };
            db.status = status;
            Ok(())
        })
    }

    /// Terminates an instance ("This instance has been released.").
    pub fn release_instance(&self, region: &str, instance_id: &str) -> CloudResult<()> {
        let (region, id) = (region.to_owned(), instance_id.to_owned());
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            let instance = r.instances.get_mut(&id).ok_or_else(|| CloudError::NotFound(id.clone()))?;
            instance.state = InstanceState::Terminated;
            instance.target = None;
            Ok(())
        })
    }

    /// Deletes a snapshot behind snapnest's back, or marks it used by something else.
    pub fn tamper_snapshot(&self, region: &str, snapshot_id: &str, used_by: Option<&str>) -> CloudResult<()> {
        let (region, id, used_by) = (region.to_owned(), snapshot_id.to_owned(), used_by.map(str::to_owned));
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            match used_by {
                Some(user) => {
                    r.snapshots.get_mut(&id).ok_or_else(|| CloudError::NotFound(id.clone()))?.in_use_by = Some(user)
                }
                None => {
                    r.snapshots.remove(&id);
                    r.db_snapshots.remove(&id);
                }
            }
            Ok(())
        })
    }

    /// Makes EBS snapshots of a region complete now, whatever their time left (benchmarks).
    pub fn finish_snapshots(&self, region: &str, snapshot_ids: &[String]) -> CloudResult<()> {
        let (region, ids) = (region.to_owned(), snapshot_ids.to_vec());
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            let now = now_ms();
            for id in &ids {
                let snapshot = r.snapshots.get_mut(id).ok_or_else(|| CloudError::NotFound(id.clone()))?;
                snapshot.ready_at_ms = now;
            }
            Ok(())
        })
    }

    /// The images registered in a region.
    pub fn image_ids(&self, region: &str) -> CloudResult<Vec<String>> {
        let region = region.to_owned();
        self.mutate_blocking(move |world, _| {
            Ok(world.regions.entry(region).or_default().images.keys().cloned().collect())
        })
    }

    pub fn snapshot_ids(&self, region: &str) -> CloudResult<Vec<String>> {
        let region = region.to_owned();
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            Ok(r.snapshots.keys().chain(r.db_snapshots.keys()).cloned().collect())
        })
    }

    /// The tags of an EBS or DB snapshot.
    pub fn snapshot_tags(&self, region: &str, snapshot_id: &str) -> CloudResult<Tags> {
        let (region, id) = (region.to_owned(), snapshot_id.to_owned());
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            r.snapshots
                .get(&id)
                .or_else(|| r.db_snapshots.get(&id))
                .map(|s| s.tags.clone())
                .ok_or(CloudError::NotFound(id))
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn seed_service_instance(
    world: &mut World,
    region: &str,
    az: &str,
    si: &str,
    instances: usize,
    volumes_per_instance: usize,
    databases: usize,
    consistent_groups: bool,
) {
    let tags: Tags = [("service-instance-id".to_owned(), si.to_owned()), ("Name".to_owned(), si.to_owned())].into();
    for _ in 0..instances {
        let instance_id = world.next_id("i");
        let mut volumes = Vec::new();
        for v in 0..volumes_per_instance {
            let volume_id = world.next_id("vol");
            let device = if v == 0 { "/dev/xvda".to_owned() } else { format!("/dev/xvd{}", (b'a' + v as u8) as char) };
            volumes.push(SimVolume {
                fingerprint: format!("{volume_id}#initial"),
                id: volume_id,
                availability_zone: az.to_owned(),
                size_gib: if v == 0 { 8 } else { 100 },
                tags: Tags::new(),
                attachment: Some((instance_id.clone(), device)),
                ready_at_ms: 0,
                moving: None,
                client_token: None,
                // The root goes with its instance, as launched; data volumes are provisioned gp3.
                settings: if v == 0 {
                    VolumeSettings {
                        volume_type: Some("gp3".into()),
                        delete_on_termination: true,
                        ..Default::default()
                    }
                } else {
                    VolumeSettings {
                        volume_type: Some("gp3".into()),
                        iops: Some(6000),
                        throughput: Some(250),
                        encrypted: true,
                        kms_key_id: Some(format!("arn:aws:kms:{region}:123456789012:key/{si}")),
                        ..Default::default()
                    }
                },
            });
        }
        let r = world.regions.entry(region.to_owned()).or_default();
        r.instances.insert(
            instance_id.clone(),
            SimInstance {
                id: instance_id,
                state: InstanceState::Running,
                target: None,
                ready_at_ms: 0,
                availability_zone: az.to_owned(),
                tags: tags.clone(),
                consistent_groups,
                stop_refusal: None,
                settings: InstanceSettings {
                    instance_type: Some("m7g.large".into()),
                    subnet_id: Some(subnet_in(az)),
                    security_group_ids: vec![format!("sg-{si}")],
                    iam_instance_profile: Some(format!("arn:aws:iam::123456789012:instance-profile/{si}")),
                    key_name: Some(format!("{si}-key")),
                    architecture: Some("arm64".into()),
                    root_device_name: Some("/dev/xvda".into()),
                    ena_support: true,
                    boot_mode: Some("uefi".into()),
                    platform: None,
                },
                client_token: None,
            },
        );
        for volume in volumes {
            r.volumes.insert(volume.id.clone(), volume);
        }
    }
    for n in 0..databases {
        let db_id = if databases == 1 { format!("{si}-mysql") } else { format!("{si}-mysql-{n}") };
        let r = world.regions.entry(region.to_owned()).or_default();
        r.databases.insert(
            db_id.clone(),
            SimDatabase {
                fingerprint: format!("{db_id}#initial"),
                id: db_id,
                engine: "mysql".into(),
                availability_zone: az.to_owned(),
                allocated_gib: 20,
                tags: tags.clone(),
                status: "available".into(),
                ready_at_ms: 0,
                settings: DatabaseSettings {
                    instance_class: Some("db.m6g.large".into()),
                    subnet_group: Some(format!("{si}-db")),
                    security_group_ids: vec![format!("sg-{si}")],
                    parameter_group: Some(format!("{si}-mysql8")),
                    option_group: Some(format!("{si}-mysql8-options")),
                    multi_az: true,
                    publicly_accessible: false,
                    deletion_protection: true,
                    storage_type: Some("gp3".into()),
                    port: Some(3306),
                },
                cluster_id: None,
            },
        );
    }
}

/// An instance as the cloud reports it, with the volumes at its devices: attached, being
/// detached, or being attached (the device is taken from the attach call on, as in EC2).
fn instance_view(r: &Region, i: &SimInstance) -> Instance {
    let mut volumes: Vec<_> = r
        .volumes
        .values()
        .filter_map(|v| {
            let at = match (&v.attachment, &v.moving) {
                (Some((instance, device)), _) => Some((instance, device)),
                (None, Some(VolumeMove::Attach { instance_id, device })) => Some((instance_id, device)),
                _ => None,
            };
            match at {
                Some((instance, device)) if *instance == i.id => Some(AttachedVolume {
                    volume_id: v.id.clone(),
                    device: device.clone(),
                    size_gib: v.size_gib,
                    settings: v.settings.clone(),
                }),
                _ => None,
            }
        })
        .collect();
    volumes.sort_by(|a, b| a.device.cmp(&b.device));
    Instance {
        instance_id: i.id.clone(),
        state: i.state,
        availability_zone: i.availability_zone.clone(),
        volumes,
        settings: i.settings.clone(),
    }
}

/// The simulated subnet of a zone (one per zone): what a launch into that zone names.
pub fn subnet_in(az: &str) -> String {
    format!("subnet-{}", az.bytes().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The zone of a simulated subnet, if it is one.
fn subnet_zone(subnet: &str) -> Option<String> {
    let hex = subnet.strip_prefix("subnet-")?;
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect();
    String::from_utf8(bytes?).ok()
}

/// Moves transitional states on to where they were going once their time has come.
fn settle(region: &mut Region, now: i64) {
    for instance in region.instances.values_mut() {
        if let Some(target) = instance.target {
            if now >= instance.ready_at_ms {
                instance.state = target;
                instance.target = None;
            }
        }
    }
    for volume in region.volumes.values_mut() {
        if now >= volume.ready_at_ms {
            match volume.moving.take() {
                Some(VolumeMove::Detach) => volume.attachment = None,
                Some(VolumeMove::Attach { instance_id, device }) => volume.attachment = Some((instance_id, device)),
                None => {}
            }
        }
    }
    for db in region.databases.values_mut() {
        if db.status != "available" && now >= db.ready_at_ms {
            db.status = "available".into();
        }
    }
}

fn snapshot_status(s: &SimSnapshot, now: i64) -> SnapshotStatus {
    let total = (s.ready_at_ms - s.started_ms).max(1);
    let done = now >= s.ready_at_ms;
    let progress = if done { 100 } else { ((now - s.started_ms).max(0) * 100 / total).min(99) as u8 };
    let state = match (&s.error, done) {
        (Some(e), true) => SnapshotState::Error(e.clone()),
        (_, true) => SnapshotState::Completed,
        _ => SnapshotState::Pending,
    };
    SnapshotStatus { snapshot_id: s.id.clone(), state, progress, size_bytes: s.size_gib << 30 }
}

fn delete_from(snapshots: &mut BTreeMap<String, SimSnapshot>, id: &str) -> DeleteOutcome {
    match snapshots.get(id) {
        None => DeleteOutcome::NotFound,
        Some(s) if s.in_use_by.is_some() => DeleteOutcome::InUse(s.in_use_by.clone().unwrap_or_default()),
        Some(_) => {
            snapshots.remove(id);
            DeleteOutcome::Deleted
        }
    }
}

impl SimulatedRegion {
    fn op_ms(settings: &SimSettings) -> i64 {
        settings.operation_time.as_millis() as i64
    }

    fn new_snapshot(
        world: &mut World,
        settings: &SimSettings,
        rng: &mut SmallRng,
        source_id: &str,
        size_gib: u64,
        fingerprint: &str,
        tags: &Tags,
    ) -> SimSnapshot {
        let now = now_ms();
        SimSnapshot {
            id: world.next_id("snap"),
            source_id: source_id.to_owned(),
            size_gib,
            fingerprint: fingerprint.to_owned(),
            tags: tags.clone(),
            started_ms: now,
            ready_at_ms: now + Self::op_ms(settings),
            error: rng
                .gen_bool(settings.faults.snapshot_error)
                .then(|| "Snapshot creation failed: internal error (simulated)".to_owned()),
            in_use_by: None,
        }
    }

    /// The instance, checked to exist and not be released; with the release fault applied.
    fn live_instance<'a>(
        r: &'a mut Region,
        id: &str,
        settings: &SimSettings,
        rng: &mut SmallRng,
    ) -> CloudResult<&'a mut SimInstance> {
        let instance = r.instances.get_mut(id).ok_or_else(|| CloudError::NotFound(id.to_owned()))?;
        if rng.gen_bool(settings.faults.release) {
            instance.state = InstanceState::Terminated;
        }
        if matches!(instance.state, InstanceState::Terminated | InstanceState::ShuttingDown) {
            return Err(CloudError::InstanceReleased(id.to_owned()));
        }
        Ok(instance)
    }
}

#[async_trait]
impl Cloud for SimulatedRegion {
    fn region(&self) -> &str {
        &self.region
    }

    async fn discover(&self, tag_key: &str, value: &str) -> CloudResult<Inventory> {
        let (key, value) = (tag_key.to_owned(), value.to_owned());
        self.cloud
            .call(&self.region, None, move |r, _, _, _| {
                settle(r, now_ms());
                let tagged = |tags: &Tags| tags.get(&key) == Some(&value);
                let instances = r
                    .instances
                    .values()
                    .filter(|i| tagged(&i.tags) && i.state != InstanceState::Terminated)
                    .map(|i| instance_view(r, i))
                    .collect();
                let databases = r
                    .databases
                    .values()
                    .filter(|d| tagged(&d.tags))
                    .map(|d| Database {
                        db_id: d.id.clone(),
                        engine: d.engine.clone(),
                        status: d.status.clone(),
                        availability_zone: Some(d.availability_zone.clone()),
                        settings: d.settings.clone(),
                        cluster_id: d.cluster_id.clone(),
                    })
                    .collect();
                let owners = r
                    .instances
                    .values()
                    .filter(|i| tagged(&i.tags) && i.state != InstanceState::Terminated)
                    .map(|i| &i.tags)
                    .chain(r.databases.values().filter(|d| tagged(&d.tags)).map(|d| &d.tags))
                    .filter_map(|tags| tags.get(tag::OWNER).cloned())
                    .collect();
                Ok(Inventory { instances, databases, owners })
            })
            .await
    }

    async fn snapshot_instance(
        &self,
        instance_id: &str,
        volumes: &VolumeSelection,
        tags: &Tags,
    ) -> CloudResult<Vec<StartedSnapshot>> {
        let (id, selection, tags) = (instance_id.to_owned(), volumes.clone(), tags.clone());
        let selected = match volumes {
            VolumeSelection::All => "all".to_owned(),
            VolumeSelection::Only(ids) => ids.join(","),
        };
        self.cloud
            .call(
                &self.region,
                mutating("snapshot_instance", [instance_id, selected.as_str()]),
                move |r, world, settings, rng| {
                    settle(r, now_ms());
                    let instance = Self::live_instance(r, &id, settings, rng)?;
                    if !instance.consistent_groups {
                        return Err(CloudError::GroupUnsupported(format!(
                            "{id} does not support multi-volume snapshots"
                        )));
                    }
                    let chosen: Vec<SimVolume> = r
                        .volumes
                        .values()
                        .filter(|v| v.attachment.as_ref().is_some_and(|(i, _)| *i == id))
                        .filter(|v| match &selection {
                            VolumeSelection::All => true,
                            VolumeSelection::Only(ids) => ids.contains(&v.id),
                        })
                        .cloned()
                        .collect();
                    let mut started = Vec::new();
                    for volume in chosen {
                        // As EC2's CreateSnapshots: the group's one tag specification only.
                        let snapshot_tags = tags.clone();
                        let snapshot = Self::new_snapshot(
                            world,
                            settings,
                            rng,
                            &volume.id,
                            volume.size_gib,
                            &volume.fingerprint,
                            &snapshot_tags,
                        );
                        started
                            .push(StartedSnapshot { snapshot_id: snapshot.id.clone(), volume_id: volume.id.clone() });
                        r.snapshots.insert(snapshot.id.clone(), snapshot);
                    }
                    Ok(started)
                },
            )
            .await
    }

    async fn snapshot_volume(&self, volume_id: &str, tags: &Tags) -> CloudResult<StartedSnapshot> {
        let (id, tags) = (volume_id.to_owned(), tags.clone());
        self.cloud
            .call(&self.region, mutating("snapshot_volume", [volume_id]), move |r, world, settings, rng| {
                settle(r, now_ms());
                let volume = r.volumes.get(&id).cloned().ok_or_else(|| CloudError::NotFound(id.clone()))?;
                if let Some((instance_id, _)) = &volume.attachment {
                    Self::live_instance(r, instance_id, settings, rng)?;
                }
                let mut snapshot_tags = tags;
                snapshot_tags.insert(tag::SOURCE_VOLUME.into(), volume.id.clone());
                let snapshot = Self::new_snapshot(
                    world,
                    settings,
                    rng,
                    &volume.id,
                    volume.size_gib,
                    &volume.fingerprint,
                    &snapshot_tags,
                );
                let started = StartedSnapshot { snapshot_id: snapshot.id.clone(), volume_id: id };
                r.snapshots.insert(snapshot.id.clone(), snapshot);
                Ok(started)
            })
            .await
    }

    async fn snapshot_database(&self, db_id: &str, snapshot_id: &str, tags: &Tags) -> CloudResult<()> {
        let (db_id, snapshot_id, tags) = (db_id.to_owned(), snapshot_id.to_owned(), tags.clone());
        self.cloud
            .call(
                &self.region,
                mutating("snapshot_database", [&db_id, &snapshot_id]),
                move |r, world, settings, rng| {
                    if r.db_snapshots.contains_key(&snapshot_id) {
                        return Err(CloudError::AlreadyExists(snapshot_id));
                    }
                    settle(r, now_ms());
                    let db = r.databases.get(&db_id).cloned().ok_or_else(|| CloudError::NotFound(db_id.clone()))?;
                    if db.status != "available" {
                        return Err(CloudError::Busy(format!(
                            "Database instance is not in available state: {db_id} is {}",
                            db.status
                        )));
                    }
                    let mut snapshot =
                        Self::new_snapshot(world, settings, rng, &db.id, db.allocated_gib, &db.fingerprint, &tags);
                    snapshot.id = snapshot_id.clone();
                    r.db_snapshots.insert(snapshot_id, snapshot);
                    Ok(())
                },
            )
            .await
    }

    async fn describe_snapshots(&self, snapshot_ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        // One call per 200 ids, as EC2 takes them.
        let mut statuses = Vec::new();
        for chunk in snapshot_ids.chunks(EC2_IDS_PER_CALL) {
            let ids = chunk.to_vec();
            let found = self
                .cloud
                .call(&self.region, None, move |r, _, _, _| {
                    let now = now_ms();
                    Ok(ids.iter().filter_map(|id| r.snapshots.get(id)).map(|s| snapshot_status(s, now)).collect())
                })
                .await?;
            statuses.extend::<Vec<_>>(found);
        }
        Ok(statuses)
    }

    async fn describe_snapshots_tagged(&self, key: &str, values: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        // A page of a thousand per call, as EC2 lists them.
        let mut statuses = Vec::new();
        for chunk in values.chunks(EC2_IDS_PER_CALL) {
            let mut after: Option<String> = None;
            loop {
                let (key, values, from) = (key.to_owned(), chunk.to_vec(), after.clone());
                let page: Vec<SnapshotStatus> = self
                    .cloud
                    .call(&self.region, None, move |r, _, _, _| {
                        let now = now_ms();
                        Ok(r.snapshots
                            .range::<String, _>((
                                from.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                                std::ops::Bound::Unbounded,
                            ))
                            .map(|(_, s)| s)
                            .filter(|s| s.tags.get(&key).is_some_and(|v| values.contains(v)))
                            .take(SNAPSHOTS_PER_PAGE)
                            .map(|s| snapshot_status(s, now))
                            .collect())
                    })
                    .await?;
                let full = page.len() == SNAPSHOTS_PER_PAGE;
                after = page.last().map(|s| s.snapshot_id.clone());
                statuses.extend(page);
                if !full {
                    break;
                }
            }
        }
        Ok(statuses)
    }

    async fn describe_db_snapshots(&self, snapshot_ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        let ids = snapshot_ids.to_vec();
        self.cloud
            .call(&self.region, None, move |r, _, _, _| {
                let now = now_ms();
                Ok(ids.iter().filter_map(|id| r.db_snapshots.get(id)).map(|s| snapshot_status(s, now)).collect())
            })
            .await
    }

    async fn find_snapshots(&self, key: &str, value: &str) -> CloudResult<Vec<StartedSnapshot>> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.cloud
            .call(&self.region, None, move |r, _, _, _| {
                Ok(r.snapshots
                    .values()
                    .filter(|s| s.tags.get(&key) == Some(&value))
                    .map(|s| StartedSnapshot { snapshot_id: s.id.clone(), volume_id: s.source_id.clone() })
                    .collect())
            })
            .await
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> CloudResult<DeleteOutcome> {
        let id = snapshot_id.to_owned();
        self.cloud
            .call(&self.region, mutating("delete_snapshot", [snapshot_id]), move |r, _, _, _| {
                Ok(delete_from(&mut r.snapshots, &id))
            })
            .await
    }

    async fn delete_db_snapshot(&self, snapshot_id: &str) -> CloudResult<DeleteOutcome> {
        let id = snapshot_id.to_owned();
        self.cloud
            .call(&self.region, mutating("delete_db_snapshot", [snapshot_id]), move |r, _, _, _| {
                Ok(delete_from(&mut r.db_snapshots, &id))
            })
            .await
    }

    async fn tag_snapshot(&self, snapshot_id: &str, tags: &Tags) -> CloudResult<()> {
        let (id, tags) = (snapshot_id.to_owned(), tags.clone());
        self.cloud
            .call(&self.region, mutating("tag_snapshot", [snapshot_id]), move |r, _, _, _| {
                let snapshot = r
                    .snapshots
                    .get_mut(&id)
                    .or_else(|| r.db_snapshots.get_mut(&id))
                    .ok_or_else(|| CloudError::NotFound(id.clone()))?;
                snapshot.tags.extend(tags);
                Ok(())
            })
            .await
    }

    async fn copy_snapshot(
        &self,
        source_region: &str,
        snapshot_id: &str,
        kms_key_id: Option<&str>,
        tags: &Tags,
    ) -> CloudResult<String> {
        let (source_region, id, tags, dest) =
            (source_region.to_owned(), snapshot_id.to_owned(), tags.clone(), self.region.clone());
        let key = kms_key_id.unwrap_or("default").to_owned();
        self.cloud
            .call(&dest, mutating("copy_snapshot", [&source_region, &id, &key]), move |r, world, settings, rng| {
                let source = world
                    .regions
                    .get(&source_region)
                    .and_then(|s| s.snapshots.get(&id))
                    .cloned()
                    .ok_or_else(|| CloudError::NotFound(id.clone()))?;
                let mut copy = Self::new_snapshot(
                    world,
                    settings,
                    rng,
                    &source.source_id,
                    source.size_gib,
                    &source.fingerprint,
                    &tags,
                );
                copy.tags.insert(tag::SOURCE_VOLUME.into(), source.source_id.clone());
                let copy_id = copy.id.clone();
                r.snapshots.insert(copy_id.clone(), copy);
                Ok(copy_id)
            })
            .await
    }

    async fn copy_db_snapshot(
        &self,
        source_region: &str,
        snapshot_id: &str,
        target_id: &str,
        kms_key_id: Option<&str>,
        option_group: Option<&str>,
        tags: &Tags,
    ) -> CloudResult<()> {
        let key = kms_key_id.unwrap_or("default").to_owned();
        let group = option_group.unwrap_or("default").to_owned();
        let (source_region, id, target, tags, dest) =
            (source_region.to_owned(), snapshot_id.to_owned(), target_id.to_owned(), tags.clone(), self.region.clone());
        self.cloud
            .call(
                &dest,
                mutating("copy_db_snapshot", [&source_region, &id, &target, &key, &group]),
                move |r, world, settings, rng| {
                    if r.db_snapshots.contains_key(&target) {
                        return Err(CloudError::AlreadyExists(target));
                    }
                    let source = world
                        .regions
                        .get(&source_region)
                        .and_then(|s| s.db_snapshots.get(&id))
                        .cloned()
                        .ok_or_else(|| CloudError::NotFound(id.clone()))?;
                    let mut copy = Self::new_snapshot(
                        world,
                        settings,
                        rng,
                        &source.source_id,
                        source.size_gib,
                        &source.fingerprint,
                        &tags,
                    );
                    copy.id = target.clone();
                    r.db_snapshots.insert(target, copy);
                    Ok(())
                },
            )
            .await
    }

    async fn stop_instances(&self, instance_ids: &[String]) -> CloudResult<()> {
        self.move_instances("stop_instances", instance_ids, InstanceState::Stopping, InstanceState::Stopped).await
    }

    async fn start_instances(&self, instance_ids: &[String]) -> CloudResult<()> {
        self.move_instances("start_instances", instance_ids, InstanceState::Pending, InstanceState::Running).await
    }

    async fn describe_instances(&self, instance_ids: &[String]) -> CloudResult<Vec<Instance>> {
        let ids = instance_ids.to_vec();
        self.cloud
            .call(&self.region, None, move |r, _, _, _| {
                settle(r, now_ms());
                Ok(ids.iter().filter_map(|id| r.instances.get(id)).map(|i| instance_view(r, i)).collect())
            })
            .await
    }

    async fn create_volume(
        &self,
        snapshot_id: &str,
        availability_zone: &str,
        client_token: &str,
        volume_settings: &VolumeSettings,
        tags: &Tags,
    ) -> CloudResult<String> {
        let (id, az, tags) = (snapshot_id.to_owned(), availability_zone.to_owned(), tags.clone());
        // Delete-on-termination belongs to an attachment, not to a new volume.
        let volume_settings = VolumeSettings { delete_on_termination: false, ..volume_settings.clone() };
        let token = client_token.to_owned();
        self.cloud
            .call(
                &self.region,
                mutating("create_volume", [snapshot_id, availability_zone, client_token]),
                move |r, world, settings, _| {
                    // EC2's idempotency: the same client token answers the volume it made before.
                    if let Some(made) = r.volumes.values().find(|v| v.client_token.as_deref() == Some(token.as_str())) {
                        return Ok(made.id.clone());
                    }
                    let snapshot = r.snapshots.get(&id).cloned().ok_or_else(|| CloudError::NotFound(id.clone()))?;
                    if !matches!(snapshot_status(&snapshot, now_ms()).state, SnapshotState::Completed) {
                        return Err(CloudError::Rejected {
                            code: "IncorrectState".into(),
                            message: format!("snapshot {id} is not completed"),
                        });
                    }
                    let volume_id = world.next_id("vol");
                    r.volumes.insert(
                        volume_id.clone(),
                        SimVolume {
                            id: volume_id.clone(),
                            availability_zone: az,
                            size_gib: snapshot.size_gib,
                            tags,
                            attachment: None,
                            fingerprint: snapshot.fingerprint,
                            ready_at_ms: now_ms() + Self::op_ms(settings),
                            moving: None,
                            client_token: Some(token),
                            settings: volume_settings,
                        },
                    );
                    Ok(volume_id)
                },
            )
            .await
    }

    async fn describe_volumes(&self, volume_ids: &[String]) -> CloudResult<Vec<VolumeStatus>> {
        let ids = volume_ids.to_vec();
        self.cloud
            .call(&self.region, None, move |r, _, _, _| {
                let now = now_ms();
                settle(r, now);
                Ok(ids
                    .iter()
                    .filter_map(|id| r.volumes.get(id))
                    .map(|v| VolumeStatus {
                        volume_id: v.id.clone(),
                        state: match (&v.attachment, now >= v.ready_at_ms) {
                            (_, false) if v.moving.is_none() => VolumeState::Creating,
                            (Some(_), _) => VolumeState::InUse,
                            (None, _) => VolumeState::Available,
                        },
                        attachment: v.attachment.clone().or_else(|| match &v.moving {
                            Some(VolumeMove::Attach { instance_id, device }) => {
                                Some((instance_id.clone(), device.clone()))
                            }
                            _ => None,
                        }),
                        busy: v.moving.is_some(),
                        tags: v.tags.clone(),
                    })
                    .collect())
            })
            .await
    }

    async fn set_delete_on_termination(&self, instance_id: &str, device: &str, delete: bool) -> CloudResult<()> {
        self.set_on_termination(instance_id, device, delete).await
    }

    async fn detach_volume(&self, instance_id: &str, volume_id: &str) -> CloudResult<()> {
        self.move_volume(volume_id, instance_id, None).await
    }

    async fn attach_volume(&self, instance_id: &str, volume_id: &str, device: &str) -> CloudResult<()> {
        self.move_volume(volume_id, instance_id, Some(device.to_owned())).await
    }

    async fn delete_volume(&self, volume_id: &str) -> CloudResult<DeleteOutcome> {
        let id = volume_id.to_owned();
        self.cloud
            .call(&self.region, mutating("delete_volume", [volume_id]), move |r, _, _, _| {
                settle(r, now_ms());
                match r.volumes.get(&id) {
                    None => Ok(DeleteOutcome::NotFound),
                    Some(v) if v.attachment.is_some() || v.moving.is_some() => Err(CloudError::Rejected {
                        code: "VolumeInUse".into(),
                        message: format!("Volume {id} is currently attached"),
                    }),
                    Some(_) => {
                        r.volumes.remove(&id);
                        Ok(DeleteOutcome::Deleted)
                    }
                }
            })
            .await
    }

    async fn tag_resource(&self, resource_id: &str, tags: &Tags) -> CloudResult<()> {
        let (id, tags) = (resource_id.to_owned(), tags.clone());
        self.cloud
            .call(&self.region, mutating("tag_resource", [resource_id]), move |r, _, _, _| {
                tags_of(r, &id)?.extend(tags);
                Ok(())
            })
            .await
    }

    async fn untag_resource(&self, resource_id: &str, keys: &[String]) -> CloudResult<()> {
        let (id, keys) = (resource_id.to_owned(), keys.to_vec());
        self.cloud
            .call(
                &self.region,
                mutating("untag_resource", std::iter::once(resource_id).chain(keys.iter().map(String::as_str))),
                move |r, _, _, _| {
                    let tags = tags_of(r, &id)?;
                    keys.iter().for_each(|k| {
                        tags.remove(k);
                    });
                    Ok(())
                },
            )
            .await
    }

    async fn restore_database(
        &self,
        snapshot_id: &str,
        new_db_id: &str,
        database_settings: &DatabaseSettings,
        tags: &Tags,
    ) -> CloudResult<()> {
        let (id, new_id, tags) = (snapshot_id.to_owned(), new_db_id.to_owned(), tags.clone());
        let database_settings = database_settings.clone();
        let snapshot_az = format!("{}a", self.region);
        self.cloud
            .call(&self.region, mutating("restore_database", [snapshot_id, new_db_id]), move |r, _, settings, _| {
                if r.databases.contains_key(&new_id) {
                    return Err(CloudError::AlreadyExists(new_id));
                }
                let snapshot = r.db_snapshots.get(&id).cloned().ok_or_else(|| CloudError::NotFound(id.clone()))?;
                let engine = "mysql".to_owned();
                r.databases.insert(
                    new_id.clone(),
                    SimDatabase {
                        id: new_id,
                        engine,
                        availability_zone: snapshot_az.clone(),
                        allocated_gib: snapshot.size_gib,
                        tags,
                        fingerprint: snapshot.fingerprint,
                        status: "creating".into(),
                        ready_at_ms: now_ms() + Self::op_ms(settings),
                        settings: database_settings,
                        cluster_id: None,
                    },
                );
                Ok(())
            })
            .await
    }

    async fn describe_databases(&self, db_ids: &[String]) -> CloudResult<Vec<DatabaseStatus>> {
        let ids = db_ids.to_vec();
        self.cloud
            .call(&self.region, None, move |r, _, _, _| {
                settle(r, now_ms());
                Ok(ids
                    .iter()
                    .filter_map(|id| r.databases.get(id))
                    .map(|d| DatabaseStatus {
                        db_id: d.id.clone(),
                        status: d.status.clone(),
                        tags: d.tags.clone(),
                        deletion_protection: d.settings.deletion_protection,
                    })
                    .collect())
            })
            .await
    }

    async fn rename_database(&self, db_id: &str, new_db_id: &str) -> CloudResult<()> {
        let (id, new_id) = (db_id.to_owned(), new_db_id.to_owned());
        self.cloud
            .call(&self.region, mutating("rename_database", [db_id, new_db_id]), move |r, _, settings, _| {
                settle(r, now_ms());
                if r.databases.contains_key(&new_id) {
                    return Err(CloudError::AlreadyExists(new_id));
                }
                let mut db = r.databases.remove(&id).ok_or_else(|| CloudError::NotFound(id.clone()))?;
                db.id = new_id.clone();
                db.status = "renaming".into();
                db.ready_at_ms = now_ms() + Self::op_ms(settings) / 4;
                r.databases.insert(new_id, db);
                Ok(())
            })
            .await
    }

    async fn set_deletion_protection(&self, db_id: &str, protect: bool) -> CloudResult<()> {
        let id = db_id.to_owned();
        let args = [db_id, if protect { "true" } else { "false" }];
        self.cloud
            .call(&self.region, mutating("set_deletion_protection", args), move |r, _, _, _| {
                settle(r, now_ms());
                let db = r.databases.get_mut(&id).ok_or_else(|| CloudError::NotFound(id.clone()))?;
                db.settings.deletion_protection = protect;
                Ok(())
            })
            .await
    }

    async fn delete_database(&self, db_id: &str) -> CloudResult<DeleteOutcome> {
        let id = db_id.to_owned();
        self.cloud
            .call(&self.region, mutating("delete_database", [db_id]), move |r, _, _, _| {
                settle(r, now_ms());
                // As RDS: a protected instance refuses to be deleted.
                if r.databases.get(&id).is_some_and(|d| d.settings.deletion_protection) {
                    return Err(CloudError::Rejected {
                        code: "InvalidParameterCombination".into(),
                        message: format!("Cannot delete protected DB Instance, please disable deletion protection and try again ({id})"),
                    });
                }
                Ok(match r.databases.remove(&id) {
                    Some(_) => DeleteOutcome::Deleted,
                    None => DeleteOutcome::NotFound,
                })
            })
            .await
    }

    async fn register_image(&self, spec: &ImageSpec, tags: &Tags) -> CloudResult<String> {
        self.register(spec, tags).await
    }

    async fn describe_images(&self, image_ids: &[String]) -> CloudResult<Vec<ImageStatus>> {
        self.images(image_ids).await
    }

    async fn changed_bytes(&self, earlier: &str, later: &str) -> CloudResult<u64> {
        let (earlier, later) = (earlier.to_owned(), later.to_owned());
        self.cloud
            .call(&self.region, None, move |r, _, _, _| {
                let get = |id: &String| r.snapshots.get(id).ok_or_else(|| CloudError::NotFound(id.clone()));
                let (a, b) = (get(&earlier)?, get(&later)?);
                // The simulated cloud knows a volume's data as one fingerprint: the same data
                // adds nothing, any write changes every block.
                Ok(if a.fingerprint == b.fingerprint { 0 } else { b.size_gib << 30 })
            })
            .await
    }

    async fn find_image(&self, name: &str) -> CloudResult<Option<ImageStatus>> {
        let name = name.to_owned();
        let found = self.cloud.call(&self.region, None, move |r, _, _, _| {
            Ok(r.images.values().find(|i| i.name == name).map(|i| i.id.clone()))
        });
        match found.await? {
            Some(id) => Ok(self.images(&[id]).await?.into_iter().next()),
            None => Ok(None),
        }
    }

    async fn find_instances(&self, key: &str, value: &str) -> CloudResult<Vec<(String, Tags)>> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.cloud
            .call(&self.region, None, move |r, _, _, _| {
                Ok(r.instances
                    .values()
                    .filter(|i| i.state != InstanceState::Terminated && i.tags.get(&key) == Some(&value))
                    .map(|i| (i.id.clone(), i.tags.clone()))
                    .collect())
            })
            .await
    }

    async fn deregister_image(&self, image_id: &str) -> CloudResult<DeleteOutcome> {
        self.deregister(image_id).await
    }

    async fn run_instance(
        &self,
        image_id: &str,
        settings: &InstanceSettings,
        devices: &[ImageDevice],
        client_token: &str,
        tags: &Tags,
    ) -> CloudResult<String> {
        self.launch(image_id, settings, devices, client_token, tags).await
    }
}

/// The image side of the simulated cloud: `RegisterImage` unique by name, images holding
/// their snapshots (a delete is refused while one uses it), `RunInstances` idempotent by
/// client token, its volumes made from the image's snapshots at their devices.
impl SimulatedRegion {
    async fn register(&self, spec: &ImageSpec, tags: &Tags) -> CloudResult<String> {
        let (spec, tags) = (spec.clone(), tags.clone());
        self.cloud
            .call(&self.region, mutating("register_image", [spec.name.as_str()]), move |r, world, settings, _| {
                if let Some(image) = r.images.values().find(|i| i.name == spec.name) {
                    // What the adapter does with EC2's InvalidAMIName.Duplicate: the image made first.
                    return Ok(image.id.clone());
                }
                if !spec.devices.iter().any(|d| d.device == spec.root_device_name) {
                    return Err(CloudError::Rejected {
                        code: "InvalidBlockDeviceMapping".into(),
                        message: format!("no snapshot for the root device {}", spec.root_device_name),
                    });
                }
                for device in &spec.devices {
                    let snapshot = r
                        .snapshots
                        .get(&device.snapshot_id)
                        .ok_or_else(|| CloudError::NotFound(device.snapshot_id.clone()))?;
                    if !matches!(snapshot_status(snapshot, now_ms()).state, SnapshotState::Completed) {
                        return Err(CloudError::Rejected {
                            code: "IncorrectState".into(),
                            message: format!("snapshot {} is not completed", device.snapshot_id),
                        });
                    }
                }
                let image_id = world.next_id("ami");
                for device in &spec.devices {
                    if let Some(snapshot) = r.snapshots.get_mut(&device.snapshot_id) {
                        snapshot.in_use_by.get_or_insert_with(|| image_id.clone());
                    }
                }
                r.images.insert(
                    image_id.clone(),
                    SimImage {
                        id: image_id.clone(),
                        name: spec.name.clone(),
                        root_device_name: spec.root_device_name.clone(),
                        devices: spec
                            .devices
                            .iter()
                            .map(|d| (d.device.clone(), d.snapshot_id.clone(), d.settings.clone()))
                            .collect(),
                        tags,
                        ready_at_ms: now_ms() + Self::op_ms(settings),
                    },
                );
                Ok(image_id)
            })
            .await
    }

    async fn images(&self, image_ids: &[String]) -> CloudResult<Vec<ImageStatus>> {
        let ids = image_ids.to_vec();
        self.cloud
            .call(&self.region, None, move |r, _, _, _| {
                let now = now_ms();
                Ok(ids
                    .iter()
                    .filter_map(|id| r.images.get(id))
                    .map(|i| ImageStatus {
                        image_id: i.id.clone(),
                        state: if now >= i.ready_at_ms { ImageState::Available } else { ImageState::Pending },
                        reason: None,
                    })
                    .collect())
            })
            .await
    }

    async fn deregister(&self, image_id: &str) -> CloudResult<DeleteOutcome> {
        let id = image_id.to_owned();
        self.cloud
            .call(&self.region, mutating("deregister_image", [image_id]), move |r, _, _, _| {
                let Some(image) = r.images.remove(&id) else { return Ok(DeleteOutcome::NotFound) };
                for (_, snapshot_id, _) in &image.devices {
                    if let Some(snapshot) = r.snapshots.get_mut(snapshot_id) {
                        if snapshot.in_use_by.as_deref() == Some(id.as_str()) {
                            snapshot.in_use_by = None;
                        }
                    }
                }
                Ok(DeleteOutcome::Deleted)
            })
            .await
    }

    async fn launch(
        &self,
        image_id: &str,
        instance_settings: &InstanceSettings,
        devices: &[ImageDevice],
        client_token: &str,
        tags: &Tags,
    ) -> CloudResult<String> {
        let (image_id, instance_settings, token, tags) =
            (image_id.to_owned(), instance_settings.clone(), client_token.to_owned(), tags.clone());
        let devices = devices.to_vec();
        let home = self.region.clone();
        self.cloud
            .call(
                &self.region,
                mutating("run_instance", [image_id.as_str(), client_token]),
                move |r, world, settings, _| {
                    // EC2's idempotency: the same client token answers the instance it launched.
                    if let Some(made) = r.instances.values().find(|i| i.client_token.as_deref() == Some(token.as_str()))
                    {
                        return Ok(made.id.clone());
                    }
                    let image =
                        r.images.get(&image_id).cloned().ok_or_else(|| CloudError::NotFound(image_id.clone()))?;
                    if now_ms() < image.ready_at_ms {
                        return Err(CloudError::Rejected {
                            code: "IncorrectState".into(),
                            message: format!("image {image_id} is pending"),
                        });
                    }
                    let Some(instance_type) = instance_settings.instance_type.clone() else {
                        return Err(CloudError::Rejected {
                            code: "MissingParameter".into(),
                            message: "The request must contain the parameter InstanceType".into(),
                        });
                    };
                    let zone = instance_settings
                        .subnet_id
                        .as_deref()
                        .and_then(subnet_zone)
                        .filter(|z| z.starts_with(&home))
                        .ok_or_else(|| CloudError::Rejected {
                            code: "InvalidSubnetID.NotFound".into(),
                            message: format!(
                                "The subnet ID '{}' does not exist",
                                instance_settings.subnet_id.clone().unwrap_or_default()
                            ),
                        })?;
                    // As EC2: the request's mappings override the image's, device by device.
                    let mut mappings = image.devices.clone();
                    for d in &devices {
                        match mappings.iter_mut().find(|(device, _, _)| *device == d.device) {
                            Some(mapping) => *mapping = (d.device.clone(), d.snapshot_id.clone(), d.settings.clone()),
                            None => mappings.push((d.device.clone(), d.snapshot_id.clone(), d.settings.clone())),
                        }
                    }
                    let instance_id = world.next_id("i");
                    let ready_at_ms = now_ms() + Self::op_ms(settings);
                    for (device, snapshot_id, volume_settings) in &mappings {
                        let snapshot = r
                            .snapshots
                            .get(snapshot_id)
                            .cloned()
                            .ok_or_else(|| CloudError::NotFound(snapshot_id.clone()))?;
                        let volume_id = world.next_id("vol");
                        r.volumes.insert(
                            volume_id.clone(),
                            SimVolume {
                                id: volume_id,
                                availability_zone: zone.clone(),
                                size_gib: snapshot.size_gib,
                                tags: tags.clone(),
                                attachment: Some((instance_id.clone(), device.clone())),
                                fingerprint: snapshot.fingerprint,
                                ready_at_ms,
                                moving: None,
                                client_token: None,
                                settings: volume_settings.clone(),
                            },
                        );
                    }
                    r.instances.insert(
                        instance_id.clone(),
                        SimInstance {
                            id: instance_id.clone(),
                            state: InstanceState::Pending,
                            target: Some(InstanceState::Running),
                            ready_at_ms,
                            availability_zone: zone,
                            tags,
                            consistent_groups: true,
                            stop_refusal: None,
                            settings: InstanceSettings {
                                instance_type: Some(instance_type),
                                root_device_name: Some(image.root_device_name.clone()),
                                ..instance_settings
                            },
                            client_token: Some(token),
                        },
                    );
                    Ok(instance_id)
                },
            )
            .await
    }
}

/// The tags of an instance, a volume or a database.
fn tags_of<'a>(r: &'a mut Region, id: &str) -> CloudResult<&'a mut Tags> {
    if let Some(v) = r.volumes.get_mut(id) {
        return Ok(&mut v.tags);
    }
    if let Some(i) = r.instances.get_mut(id) {
        return Ok(&mut i.tags);
    }
    r.databases.get_mut(id).map(|d| &mut d.tags).ok_or_else(|| CloudError::NotFound(id.to_owned()))
}

impl SimulatedRegion {
    /// Starts or stops instances. As in EC2, one instance that cannot go refuses the whole
    /// call: every instance is checked before any moves.
    async fn move_instances(
        &self,
        op: &'static str,
        ids: &[String],
        via: InstanceState,
        to: InstanceState,
    ) -> CloudResult<()> {
        let ids = ids.to_vec();
        self.cloud
            .call(&self.region, mutating(op, &ids), move |r, _, settings, _| {
                let now = now_ms();
                settle(r, now);
                for id in &ids {
                    let instance = r.instances.get(id).ok_or_else(|| CloudError::NotFound(id.clone()))?;
                    if instance.state == InstanceState::Terminated {
                        return Err(CloudError::InstanceReleased(id.clone()));
                    }
                    if let Some(refusal) = instance.stop_refusal.as_ref().filter(|_| to == InstanceState::Stopped) {
                        return Err(refusal.error());
                    }
                }
                for instance in r.instances.values_mut().filter(|i| ids.contains(&i.id)) {
                    if instance.state != to && instance.target != Some(to) {
                        instance.state = via;
                        instance.target = Some(to);
                        instance.ready_at_ms = now + Self::op_ms(settings) / 2;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn set_on_termination(&self, instance_id: &str, device: &str, delete: bool) -> CloudResult<()> {
        let (instance_id, device) = (instance_id.to_owned(), device.to_owned());
        let args = [instance_id.as_str(), device.as_str(), if delete { "true" } else { "false" }];
        self.cloud
            .call(&self.region, mutating("set_delete_on_termination", args), move |r, _, _, _| {
                settle(r, now_ms());
                let at = Some((instance_id.clone(), device.clone()));
                let volume =
                    r.volumes.values_mut().find(|v| v.attachment == at).ok_or_else(|| CloudError::Rejected {
                        code: "InvalidInstanceAttributeValue".into(),
                        message: format!("no volume is attached at {device} of {instance_id}"),
                    })?;
                volume.settings.delete_on_termination = delete;
                Ok(())
            })
            .await
    }

    async fn move_volume(&self, volume_id: &str, instance_id: &str, device: Option<String>) -> CloudResult<()> {
        let mutation = match &device {
            Some(device) => mutating("attach_volume", [instance_id, volume_id, device.as_str()]),
            None => mutating("detach_volume", [instance_id, volume_id]),
        };
        let (id, instance_id) = (volume_id.to_owned(), instance_id.to_owned());
        self.cloud
            .call(&self.region, mutation, move |r, _, settings, _| {
                let now = now_ms();
                settle(r, now);
                let volume = r.volumes.get(&id).ok_or_else(|| CloudError::NotFound(id.clone()))?;
                let in_use_at = |dev: &str| {
                    r.volumes
                        .values()
                        .any(|v| v.attachment.as_ref().is_some_and(|(i, d)| *i == instance_id && d == dev))
                };
                match &device {
                    Some(dev) if volume.attachment.is_some() || in_use_at(dev) => {
                        return Err(CloudError::Rejected {
                            code: "InvalidParameterValue".into(),
                            message: format!("{dev} of {instance_id} is in use or {id} is attached"),
                        })
                    }
                    None if volume.attachment.as_ref().is_none_or(|(i, _)| *i != instance_id) => {
                        return Err(CloudError::Rejected {
                            code: "IncorrectState".into(),
                            message: format!("{id} is not attached to {instance_id}"),
                        })
                    }
                    _ => {}
                }
                let volume = r.volumes.get_mut(&id).expect("checked above");
                // A new attachment is not deleted with its instance until asked (EC2's default).
                volume.settings.delete_on_termination = false;
                volume.moving = Some(match device {
                    Some(device) => VolumeMove::Attach { instance_id: instance_id.clone(), device },
                    None => VolumeMove::Detach,
                });
                volume.ready_at_ms = now + Self::op_ms(settings) / 4;
                Ok(())
            })
            .await
    }
}

impl CloudProvider for SimulatedCloud {
    fn home_region(&self) -> &str {
        &self.settings.home_region
    }

    fn home(&self) -> Arc<dyn Cloud> {
        Arc::new(SimulatedRegion { cloud: self.clone(), region: self.settings.home_region.clone() })
    }

    fn region(&self, region: &str) -> CloudResult<Arc<dyn Cloud>> {
        if !snapnest_core::validate::is_region_name(region) {
            return Err(CloudError::Rejected {
                code: "InvalidRegion".into(),
                message: format!("'{region}' is not a region name"),
            });
        }
        Ok(Arc::new(SimulatedRegion { cloud: self.clone(), region: region.to_owned() }))
    }
}

/// What an IAM condition on a call could read of a resource: its tags now.
impl SimulatedCloud {
    /// The tags of an instance, volume, EBS snapshot, image, DB instance or DB snapshot; `None`
    /// when nothing in the region has that id.
    pub fn resource_tags(&self, region: &str, resource_id: &str) -> CloudResult<Option<Tags>> {
        let (region, id) = (region.to_owned(), resource_id.to_owned());
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            Ok(r.instances
                .get(&id)
                .map(|i| &i.tags)
                .or_else(|| r.volumes.get(&id).map(|v| &v.tags))
                .or_else(|| r.snapshots.get(&id).map(|s| &s.tags))
                .or_else(|| r.databases.get(&id).map(|d| &d.tags))
                .or_else(|| r.db_snapshots.get(&id).map(|s| &s.tags))
                .or_else(|| r.images.get(&id).map(|i| &i.tags))
                .cloned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "us-east-1";

    /// A simulated cloud where every operation ends at once, with `faults`.
    fn open_cloud(dir: &Path, faults: Faults) -> SimulatedCloud {
        let settings =
            SimSettings { home_region: HOME.into(), operation_time: Duration::ZERO, latency: Duration::ZERO, faults };
        SimulatedCloud::open(dir, settings).unwrap()
    }

    fn rejected(code: &str, message: &str) -> CloudError {
        CloudError::Rejected { code: code.into(), message: message.into() }
    }

    fn call(region: &str, op: &str, args: &[&str]) -> SimCall {
        SimCall { region: region.into(), op: op.into(), args: args.iter().map(|a| a.to_string()).collect() }
    }

    #[test]
    fn faults_parse_and_reject_nonsense() {
        let faults: Faults = "throttle=0.2, snapshot_error=0.05,seed=7".parse().unwrap();
        assert_eq!(faults, Faults { throttle: 0.2, snapshot_error: 0.05, release: 0.0, fail: vec![], seed: 7 });
        assert!("throttle=2".parse::<Faults>().is_err());
        assert!("lightning=0.1".parse::<Faults>().is_err());
        assert!("throttle".parse::<Faults>().is_err());
        assert_eq!("".parse::<Faults>().unwrap(), Faults::default());
    }

    #[test]
    fn fail_parses_mutating_calls_and_rejects_others() {
        // GIVEN two `fail=` keys naming mutating calls
        let faults: Faults = "fail=stop_instances, fail=create_volume".parse().unwrap();
        // THEN both are kept, in order
        assert_eq!(faults.fail, ["stop_instances", "create_volume"]);

        // GIVEN a `fail=` naming a read, a misspelt call, or a misspelt key
        let read = "fail=describe_volumes".parse::<Faults>().unwrap_err();
        let misspelt = "fail=stop_instance".parse::<Faults>().unwrap_err();
        let key = "fial=stop_instances".parse::<Faults>().unwrap_err();
        // THEN each is refused, saying what is accepted
        assert!(read.contains("is not a mutating call") && read.contains("stop_instances"), "{read}");
        assert!(misspelt.contains("'stop_instance'"), "{misspelt}");
        assert!(key.contains("unknown fault 'fial'") && key.contains("fail"), "{key}");
    }

    #[tokio::test]
    async fn fail_from_the_environment_fails_the_next_call_once_per_world() {
        // GIVEN a cloud opened with `fail=stop_instances`, then opened again by a second
        // process of the same run and by a test handle without faults
        let dir = tempfile::tempdir().unwrap();
        let faults: Faults = "fail=stop_instances".parse().unwrap();
        let cloud = open_cloud(dir.path(), faults.clone());
        open_cloud(dir.path(), faults);
        open_cloud(dir.path(), Faults::default());
        let home = cloud.region(HOME).unwrap();
        let instance =
            home.discover("service-instance-id", DEMO_SERVICE_INSTANCE).await.unwrap().instances[0].instance_id.clone();

        // WHEN stop_instances is called twice
        let first = home.stop_instances(std::slice::from_ref(&instance)).await;
        let second = home.stop_instances(std::slice::from_ref(&instance)).await;

        // THEN only the first fails, with SimulatedFailure, and the second stops the instance
        assert_eq!(first, Err(rejected(SIMULATED_FAILURE, "stop_instances failed (simulated)")));
        assert_eq!(second, Ok(()));
        assert_eq!(cloud.instance_state(HOME, &instance).unwrap(), InstanceState::Stopped);
    }

    #[tokio::test]
    async fn the_nth_call_fails_and_changes_nothing_and_the_next_succeeds() {
        // GIVEN a completed snapshot and a failure placed on the 2nd mutating call from now
        let dir = tempfile::tempdir().unwrap();
        let cloud = open_cloud(dir.path(), Faults::default());
        let home = cloud.region(HOME).unwrap();
        let inventory = home.discover("service-instance-id", DEMO_SERVICE_INSTANCE).await.unwrap();
        let volume = &inventory.instances[0].volumes[0].volume_id;
        let az = &inventory.instances[0].availability_zone;
        let snapshot = home.snapshot_volume(volume, &Tags::new()).await.unwrap().snapshot_id;
        cloud.fail_call(2, None, "InternalError", "An internal error has occurred").unwrap();
        let (volumes_before, mutations_before) = (cloud.volume_ids(HOME).unwrap(), cloud.mutations().unwrap());

        // WHEN three mutating calls are made, a read between them
        let first = home.tag_resource(volume, &[("k".to_owned(), "v".to_owned())].into()).await;
        home.describe_volumes(std::slice::from_ref(volume)).await.unwrap();
        let second = home.create_volume(&snapshot, az, "token-1", &VolumeSettings::default(), &Tags::new()).await;
        let volumes_after_second = cloud.volume_ids(HOME).unwrap();
        let third = home.create_volume(&snapshot, az, "token-1", &VolumeSettings::default(), &Tags::new()).await;

        // THEN the read is not counted, the second mutating call is refused and made no
        // volume, and the third, the same call again, makes one
        assert_eq!(first, Ok(()));
        assert_eq!(second, Err(rejected("InternalError", "An internal error has occurred")));
        assert!(!second.unwrap_err().is_retryable(), "a placed failure is a permanent refusal");
        assert_eq!(volumes_after_second, volumes_before);
        let made = third.unwrap();
        assert_eq!(cloud.volume_ids(HOME).unwrap().len(), volumes_before.len() + 1);
        assert!(cloud.volume_ids(HOME).unwrap().contains(&made));
        // AND all three are counted, the refused one is not logged
        assert_eq!(cloud.mutations().unwrap(), mutations_before + 3);
        let ops: Vec<_> = cloud.calls().unwrap().into_iter().map(|c| c.op).collect();
        assert_eq!(ops, ["snapshot_volume", "tag_resource", "create_volume"]);
    }

    #[tokio::test]
    async fn a_failure_for_one_operation_counts_only_its_calls() {
        // GIVEN a failure on the 2nd tag_resource from now
        let dir = tempfile::tempdir().unwrap();
        let cloud = open_cloud(dir.path(), Faults::default());
        let home = cloud.region(HOME).unwrap();
        let inventory = home.discover("service-instance-id", DEMO_SERVICE_INSTANCE).await.unwrap();
        let volume = &inventory.instances[0].volumes[0].volume_id;
        cloud.fail_call(2, Some("tag_resource"), "RequestLimitExceeded", "no").unwrap();
        let tag = |key: &str| -> Tags { [(key.to_owned(), "v".to_owned())].into() };

        // WHEN tag_resource, other mutating calls, then tag_resource twice
        assert_eq!(home.tag_resource(volume, &tag("a")).await, Ok(()));
        home.snapshot_volume(volume, &Tags::new()).await.unwrap();
        home.untag_resource(volume, &["a".to_owned()]).await.unwrap();
        let refused = home.tag_resource(volume, &tag("b")).await;
        let accepted = home.tag_resource(volume, &tag("c")).await;

        // THEN the other calls did not count: the second tag_resource is the refused one,
        // its tag absent, and the third is accepted
        assert_eq!(refused, Err(rejected("RequestLimitExceeded", "no")));
        assert_eq!(accepted, Ok(()));
        assert_eq!(cloud.volume_tags(HOME, volume).unwrap(), tag("c"));

        // GIVEN two failures whose turn is the same next call
        cloud.fail_call(1, None, "First", "first").unwrap();
        cloud.fail_call(1, Some("tag_resource"), "Second", "second").unwrap();
        // WHEN tag_resource is called twice
        let refused = home.tag_resource(volume, &tag("d")).await;
        let accepted = home.tag_resource(volume, &tag("e")).await;
        // THEN the first placed answers that call, and both are used up by it
        assert_eq!(refused, Err(rejected("First", "first")));
        assert_eq!(accepted, Ok(()));

        // AND nonsense is refused rather than waiting for a call that never comes
        assert!(cloud.fail_call(0, None, "X", "x").is_err());
        assert!(cloud.fail_call(1, Some("describe_volumes"), "X", "x").is_err());
    }

    #[tokio::test]
    async fn an_instance_that_cannot_stop_refuses_the_whole_stop() {
        // GIVEN two running instances, the second one that cannot be stopped
        let dir = tempfile::tempdir().unwrap();
        let cloud = open_cloud(dir.path(), Faults::default());
        let home = cloud.region(HOME).unwrap();
        let inventory = home.discover("service-instance-id", DEMO_SERVICE_INSTANCE).await.unwrap();
        let ids: Vec<String> = inventory.instances.iter().map(|i| i.instance_id.clone()).collect();
        let message =
            format!("The instance '{}' does not have an 'ebs' root device type and cannot be stopped.", ids[1]);
        cloud.refuse_stop(HOME, &ids[1], "UnsupportedOperation", &message).unwrap();

        // WHEN both are stopped in one call
        let stopped = home.stop_instances(&ids).await;

        // THEN the whole call is refused with the cloud's message, both still run, and
        // nothing is logged
        assert_eq!(stopped, Err(rejected("UnsupportedOperation", &message)));
        for id in &ids {
            assert_eq!(cloud.instance_state(HOME, id).unwrap(), InstanceState::Running, "{id}");
        }
        assert!(cloud.calls().unwrap().is_empty());
        // AND the other one stops on its own, and the refused one still starts
        assert_eq!(home.stop_instances(&ids[..1]).await, Ok(()));
        assert_eq!(cloud.instance_state(HOME, &ids[0]).unwrap(), InstanceState::Stopped);
        assert_eq!(home.start_instances(&ids).await, Ok(()));
    }

    #[tokio::test]
    async fn the_log_shows_the_accepted_calls_with_their_arguments() {
        // GIVEN the demo service instance, one of its volumes snapshotted
        let dir = tempfile::tempdir().unwrap();
        let cloud = open_cloud(dir.path(), Faults::default());
        let home = cloud.region(HOME).unwrap();
        let inventory = home.discover("service-instance-id", DEMO_SERVICE_INSTANCE).await.unwrap();
        let ids: Vec<String> = inventory.instances.iter().map(|i| i.instance_id.clone()).collect();
        let (instance, az) = (&ids[0], &inventory.instances[0].availability_zone);
        let snapshot =
            home.snapshot_volume(&inventory.instances[0].volumes[0].volume_id, &Tags::new()).await.unwrap().snapshot_id;
        let db = &inventory.databases[0].db_id;
        let tags: Tags = [("k".to_owned(), "v".to_owned())].into();

        // WHEN mutating calls are made, one refused by the cloud's own rules, and a read
        home.stop_instances(&ids).await.unwrap();
        let volume = home.create_volume(&snapshot, az, "rs-1-vol", &VolumeSettings::default(), &tags).await.unwrap();
        home.attach_volume(instance, &volume, "/dev/xvdz").await.unwrap();
        home.untag_resource(&volume, &["k".to_owned()]).await.unwrap();
        assert!(home.rename_database("no-such-db", "other").await.is_err());
        home.rename_database(db, "si-demo-mysql-old").await.unwrap();
        home.describe_databases(&["si-demo-mysql-old".to_owned()]).await.unwrap();

        // THEN the log shows the accepted ones in order with their arguments, tags left
        // out; the refused one is counted but not logged, the read neither
        let after_snapshot = &cloud.calls().unwrap()[1..];
        assert_eq!(
            after_snapshot,
            [
                call(HOME, "stop_instances", &[&ids[0], &ids[1]]),
                call(HOME, "create_volume", &[&snapshot, az, "rs-1-vol"]),
                call(HOME, "attach_volume", &[instance, &volume, "/dev/xvdz"]),
                call(HOME, "untag_resource", &[&volume, "k"]),
                call(HOME, "rename_database", &[db, "si-demo-mysql-old"]),
            ]
        );
        assert_eq!(cloud.mutations().unwrap(), 7);
        // AND the getters see what the calls did
        assert_eq!(cloud.volume_tags(HOME, &volume).unwrap(), Tags::new());
        assert_eq!(cloud.database_ids(HOME).unwrap(), ["si-demo-mysql-old"]);
        let (status, fingerprint, db_tags) = cloud.database(HOME, "si-demo-mysql-old").unwrap().unwrap();
        assert_eq!((status.as_str(), fingerprint.as_str()), ("available", "si-demo-mysql#initial"));
        assert_eq!(db_tags.get("service-instance-id").map(String::as_str), Some(DEMO_SERVICE_INSTANCE));
        assert_eq!(cloud.database(HOME, db).unwrap(), None);
    }

    #[tokio::test]
    async fn create_volume_with_a_used_client_token_answers_the_first_volume() {
        let dir = tempfile::tempdir().unwrap();
        let cloud = open_cloud(dir.path(), Faults::default());
        let home = cloud.region(HOME).unwrap();
        let inventory = home.discover("service-instance-id", DEMO_SERVICE_INSTANCE).await.unwrap();
        let volume = &inventory.instances[0].volumes[0];
        let started = home.snapshot_volume(&volume.volume_id, &Tags::new()).await.unwrap();
        let az = &inventory.instances[0].availability_zone;

        let first = home
            .create_volume(&started.snapshot_id, az, "rs-1-vol-a", &VolumeSettings::default(), &Tags::new())
            .await
            .unwrap();
        let again = home
            .create_volume(&started.snapshot_id, az, "rs-1-vol-a", &VolumeSettings::default(), &Tags::new())
            .await
            .unwrap();
        let other = home
            .create_volume(&started.snapshot_id, az, "rs-1-vol-b", &VolumeSettings::default(), &Tags::new())
            .await
            .unwrap();
        assert_eq!(again, first, "the same token makes no second volume");
        assert_ne!(other, first, "another token makes another volume");
    }
}
