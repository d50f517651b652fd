//! The simulated cloud: EC2, EBS and RDS in a file, for local runs and tests.
//!
//! State lives in `cloud.sqlite` in `SNAPNEST_DATA_DIR` so every function process sees
//! the same cloud (one JSON document, changed in `BEGIN IMMEDIATE` transactions).
//! Long operations finish `SNAPNEST_SIM_SNAPSHOT_SECONDS` after they start, every call
//! waits `SNAPNEST_SIM_LATENCY_MS`, and `SNAPNEST_SIM_FAULTS` injects seeded faults:
//! `throttle=<p>` (a call is throttled), `snapshot_error=<p>` (a snapshot ends in error),
//! `release=<p>` (the instance is found released when its snapshot is asked for),
//! `seed=<n>`. Every volume and database carries a content fingerprint that snapshots
//! copy and restores bring back, so a test can prove which data a restore returned.

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

/// Faults to inject, parsed from `SNAPNEST_SIM_FAULTS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    pub throttle: f64,
    pub snapshot_error: f64,
    pub release: f64,
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
                "seed" => faults.seed = value.parse().map_err(|_| format!("seed: '{value}' is not a number"))?,
                other => return Err(format!("unknown fault '{other}' (throttle, snapshot_error, release, seed)")),
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
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Region {
    instances: BTreeMap<String, SimInstance>,
    volumes: BTreeMap<String, SimVolume>,
    snapshots: BTreeMap<String, SimSnapshot>,
    databases: BTreeMap<String, SimDatabase>,
    db_snapshots: BTreeMap<String, SimSnapshot>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct World {
    regions: BTreeMap<String, Region>,
    /// Counts calls and created ids: the fault injection is seeded by it, ids come from it.
    counter: u64,
}

impl World {
    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}-{:017x}", self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 4)
    }
}

/// The simulated cloud of every region, shared through a file.
#[derive(Clone)]
pub struct SimulatedCloud {
    conn: Arc<Mutex<Connection>>,
    settings: Arc<SimSettings>,
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
        let cloud = Self { conn: Arc::new(Mutex::new(conn)), settings: Arc::new(settings) };
        let home = cloud.settings.home_region.clone();
        cloud.mutate_blocking(move |world, _| {
            if world.regions.is_empty() {
                let az = format!("{home}a");
                seed_service_instance(world, &home, &az, DEMO_SERVICE_INSTANCE, 2, 3, 1, true);
            }
            Ok(())
        })?;
        Ok(cloud)
    }

    pub fn settings(&self) -> &SimSettings {
        &self.settings
    }

    fn mutate_blocking<T>(&self, work: impl FnOnce(&mut World, &mut SmallRng) -> CloudResult<T>) -> CloudResult<T> {
        let mut conn = self.conn.lock().map_err(|_| sim_err("mutex poisoned"))?;
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

    /// Runs one simulated API call of `region`: latency, throttling, then `work`.
    async fn call<T: Send + 'static>(
        &self,
        region: &str,
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
                if rng.gen_bool(settings.faults.throttle) {
                    return Err(CloudError::Throttled("Request limit exceeded (simulated)".into()));
                }
                let mut taken = world.regions.remove(&region).unwrap_or_default();
                let out = work(&mut taken, world, &settings, rng);
                world.regions.insert(region, taken);
                out
            })
        })
        .await
        .map_err(sim_err)?
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

    /// The volume attached to `instance_id` at `device`.
    pub fn volume_at(&self, region: &str, instance_id: &str, device: &str) -> CloudResult<Option<String>> {
        let (region, want) = (region.to_owned(), Some((instance_id.to_owned(), device.to_owned())));
        self.mutate_blocking(move |world, _| {
            let r = world.regions.entry(region).or_default();
            Ok(r.volumes.values().find(|v| v.attachment == want).map(|v| v.id.clone()))
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

    /// Ids of the EBS and DB snapshots that exist in a region.
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
                Some((instance, device)) if *instance == i.id => {
                    Some(AttachedVolume { volume_id: v.id.clone(), device: device.clone(), size_gib: v.size_gib })
                }
                _ => None,
            }
        })
        .collect();
    volumes.sort_by(|a, b| a.device.cmp(&b.device));
    Instance { instance_id: i.id.clone(), state: i.state, availability_zone: i.availability_zone.clone(), volumes }
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
            .call(&self.region, move |r, _, _, _| {
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
                    })
                    .collect();
                Ok(Inventory { instances, databases })
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
        self.cloud
            .call(&self.region, move |r, world, settings, rng| {
                settle(r, now_ms());
                let instance = Self::live_instance(r, &id, settings, rng)?;
                if !instance.consistent_groups {
                    return Err(CloudError::GroupUnsupported(format!("{id} does not support multi-volume snapshots")));
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
                    let mut snapshot_tags = tags.clone();
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
                    started.push(StartedSnapshot { snapshot_id: snapshot.id.clone(), volume_id: volume.id.clone() });
                    r.snapshots.insert(snapshot.id.clone(), snapshot);
                }
                Ok(started)
            })
            .await
    }

    async fn snapshot_volume(&self, volume_id: &str, tags: &Tags) -> CloudResult<StartedSnapshot> {
        let (id, tags) = (volume_id.to_owned(), tags.clone());
        self.cloud
            .call(&self.region, move |r, world, settings, rng| {
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
            .call(&self.region, move |r, world, settings, rng| {
                if r.db_snapshots.contains_key(&snapshot_id) {
                    return Err(CloudError::AlreadyExists(snapshot_id));
                }
                let db = r.databases.get(&db_id).cloned().ok_or_else(|| CloudError::NotFound(db_id.clone()))?;
                let mut snapshot =
                    Self::new_snapshot(world, settings, rng, &db.id, db.allocated_gib, &db.fingerprint, &tags);
                snapshot.id = snapshot_id.clone();
                r.db_snapshots.insert(snapshot_id, snapshot);
                Ok(())
            })
            .await
    }

    async fn describe_snapshots(&self, snapshot_ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        let ids = snapshot_ids.to_vec();
        self.cloud
            .call(&self.region, move |r, _, _, _| {
                let now = now_ms();
                Ok(ids.iter().filter_map(|id| r.snapshots.get(id)).map(|s| snapshot_status(s, now)).collect())
            })
            .await
    }

    async fn describe_db_snapshots(&self, snapshot_ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        let ids = snapshot_ids.to_vec();
        self.cloud
            .call(&self.region, move |r, _, _, _| {
                let now = now_ms();
                Ok(ids.iter().filter_map(|id| r.db_snapshots.get(id)).map(|s| snapshot_status(s, now)).collect())
            })
            .await
    }

    async fn find_snapshots(&self, key: &str, value: &str) -> CloudResult<Vec<StartedSnapshot>> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.cloud
            .call(&self.region, move |r, _, _, _| {
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
        self.cloud.call(&self.region, move |r, _, _, _| Ok(delete_from(&mut r.snapshots, &id))).await
    }

    async fn delete_db_snapshot(&self, snapshot_id: &str) -> CloudResult<DeleteOutcome> {
        let id = snapshot_id.to_owned();
        self.cloud.call(&self.region, move |r, _, _, _| Ok(delete_from(&mut r.db_snapshots, &id))).await
    }

    async fn tag_snapshot(&self, snapshot_id: &str, tags: &Tags) -> CloudResult<()> {
        let (id, tags) = (snapshot_id.to_owned(), tags.clone());
        self.cloud
            .call(&self.region, move |r, _, _, _| {
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

    async fn copy_snapshot(&self, source_region: &str, snapshot_id: &str, tags: &Tags) -> CloudResult<String> {
        let (source_region, id, tags, dest) =
            (source_region.to_owned(), snapshot_id.to_owned(), tags.clone(), self.region.clone());
        self.cloud
            .call(&dest, move |r, world, settings, rng| {
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
        tags: &Tags,
    ) -> CloudResult<()> {
        let (source_region, id, target, tags, dest) =
            (source_region.to_owned(), snapshot_id.to_owned(), target_id.to_owned(), tags.clone(), self.region.clone());
        self.cloud
            .call(&dest, move |r, world, settings, rng| {
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
            })
            .await
    }

    async fn stop_instances(&self, instance_ids: &[String]) -> CloudResult<()> {
        self.move_instances(instance_ids, InstanceState::Stopping, InstanceState::Stopped).await
    }

    async fn start_instances(&self, instance_ids: &[String]) -> CloudResult<()> {
        self.move_instances(instance_ids, InstanceState::Pending, InstanceState::Running).await
    }

    async fn describe_instances(&self, instance_ids: &[String]) -> CloudResult<Vec<Instance>> {
        let ids = instance_ids.to_vec();
        self.cloud
            .call(&self.region, move |r, _, _, _| {
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
        tags: &Tags,
    ) -> CloudResult<String> {
        let (id, az, tags) = (snapshot_id.to_owned(), availability_zone.to_owned(), tags.clone());
        let token = client_token.to_owned();
        self.cloud
            .call(&self.region, move |r, world, settings, _| {
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
                    },
                );
                Ok(volume_id)
            })
            .await
    }

    async fn describe_volumes(&self, volume_ids: &[String]) -> CloudResult<Vec<VolumeStatus>> {
        let ids = volume_ids.to_vec();
        self.cloud
            .call(&self.region, move |r, _, _, _| {
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

    async fn detach_volume(&self, instance_id: &str, volume_id: &str) -> CloudResult<()> {
        self.move_volume(volume_id, instance_id, None).await
    }

    async fn attach_volume(&self, instance_id: &str, volume_id: &str, device: &str) -> CloudResult<()> {
        self.move_volume(volume_id, instance_id, Some(device.to_owned())).await
    }

    async fn delete_volume(&self, volume_id: &str) -> CloudResult<DeleteOutcome> {
        let id = volume_id.to_owned();
        self.cloud
            .call(&self.region, move |r, _, _, _| {
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
        self.cloud.call(&self.region, move |r, _, _, _| Ok(tags_of(r, &id)?.extend(tags))).await
    }

    async fn untag_resource(&self, resource_id: &str, keys: &[String]) -> CloudResult<()> {
        let (id, keys) = (resource_id.to_owned(), keys.to_vec());
        self.cloud
            .call(&self.region, move |r, _, _, _| {
                let tags = tags_of(r, &id)?;
                keys.iter().for_each(|k| {
                    tags.remove(k);
                });
                Ok(())
            })
            .await
    }

    async fn restore_database(&self, snapshot_id: &str, new_db_id: &str, tags: &Tags) -> CloudResult<()> {
        let (id, new_id, tags) = (snapshot_id.to_owned(), new_db_id.to_owned(), tags.clone());
        let snapshot_az = format!("{}a", self.region);
        self.cloud
            .call(&self.region, move |r, _, settings, _| {
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
                    },
                );
                Ok(())
            })
            .await
    }

    async fn describe_databases(&self, db_ids: &[String]) -> CloudResult<Vec<DatabaseStatus>> {
        let ids = db_ids.to_vec();
        self.cloud
            .call(&self.region, move |r, _, _, _| {
                settle(r, now_ms());
                Ok(ids
                    .iter()
                    .filter_map(|id| r.databases.get(id))
                    .map(|d| DatabaseStatus { db_id: d.id.clone(), status: d.status.clone(), tags: d.tags.clone() })
                    .collect())
            })
            .await
    }

    async fn rename_database(&self, db_id: &str, new_db_id: &str) -> CloudResult<()> {
        let (id, new_id) = (db_id.to_owned(), new_db_id.to_owned());
        self.cloud
            .call(&self.region, move |r, _, settings, _| {
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

    async fn delete_database(&self, db_id: &str) -> CloudResult<DeleteOutcome> {
        let id = db_id.to_owned();
        self.cloud
            .call(&self.region, move |r, _, _, _| {
                settle(r, now_ms());
                Ok(match r.databases.remove(&id) {
                    Some(_) => DeleteOutcome::Deleted,
                    None => DeleteOutcome::NotFound,
                })
            })
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
    async fn move_instances(&self, ids: &[String], via: InstanceState, to: InstanceState) -> CloudResult<()> {
        let ids = ids.to_vec();
        self.cloud
            .call(&self.region, move |r, _, settings, _| {
                let now = now_ms();
                settle(r, now);
                for id in &ids {
                    let instance = r.instances.get_mut(id).ok_or_else(|| CloudError::NotFound(id.clone()))?;
                    if instance.state == InstanceState::Terminated {
                        return Err(CloudError::InstanceReleased(id.clone()));
                    }
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

    async fn move_volume(&self, volume_id: &str, instance_id: &str, device: Option<String>) -> CloudResult<()> {
        let (id, instance_id) = (volume_id.to_owned(), instance_id.to_owned());
        self.cloud
            .call(&self.region, move |r, _, settings, _| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_reject_nonsense() {
        let faults: Faults = "throttle=0.2, snapshot_error=0.05,seed=7".parse().unwrap();
        assert_eq!(faults, Faults { throttle: 0.2, snapshot_error: 0.05, release: 0.0, seed: 7 });
        assert!("throttle=2".parse::<Faults>().is_err());
        assert!("lightning=0.1".parse::<Faults>().is_err());
        assert!("throttle".parse::<Faults>().is_err());
        assert_eq!("".parse::<Faults>().unwrap(), Faults::default());
    }

    #[tokio::test]
    async fn create_volume_with_a_used_client_token_answers_the_first_volume() {
        let dir = tempfile::tempdir().unwrap();
        let settings = SimSettings {
            home_region: "us-east-1".into(),
            operation_time: Duration::ZERO,
            latency: Duration::ZERO,
            faults: Faults::default(),
        };
        let cloud = SimulatedCloud::open(dir.path(), settings).unwrap();
        let home = cloud.region("us-east-1").unwrap();
        let inventory = home.discover("service-instance-id", DEMO_SERVICE_INSTANCE).await.unwrap();
        let volume = &inventory.instances[0].volumes[0];
        let started = home.snapshot_volume(&volume.volume_id, &Tags::new()).await.unwrap();
        let az = &inventory.instances[0].availability_zone;

        let first = home.create_volume(&started.snapshot_id, az, "rs-1-vol-a", &Tags::new()).await.unwrap();
        let again = home.create_volume(&started.snapshot_id, az, "rs-1-vol-a", &Tags::new()).await.unwrap();
        let other = home.create_volume(&started.snapshot_id, az, "rs-1-vol-b", &Tags::new()).await.unwrap();
        assert_eq!(again, first, "the same token makes no second volume");
        assert_ne!(other, first, "another token makes another volume");
    }
}
