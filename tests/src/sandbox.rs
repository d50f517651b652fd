//! A service on the embedded store and an instant simulated cloud in a throwaway
//! directory, on simulated time, behind a [`Tripwire`]: the restore tests' world. Each
//! poll moves the clock ten seconds, so leases and deadlines pass without waiting.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::clock::Clock;
use snapnest_core::model::{BackupRecord, RestoreRecord, Trigger};
use snapnest_core::restore::{RestoreRequest, Started};
use snapnest_core::store::Collection;
use snapnest_core::{Settings, Snapnest};
use snapnest_local::embedded::EmbeddedStore;
use snapnest_local::retry::RetryingProvider;
use snapnest_local::simulated::{SimSettings, SimulatedCloud};

use crate::tripwire::{SteppingClock, Tripwire, Wire};
use crate::Watched;

pub const REGION: &str = "us-east-1";

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub app: Arc<Snapnest>,
    pub sim: SimulatedCloud,
    pub wire: Arc<Wire>,
    pub clock: Arc<SteppingClock>,
}

impl Sandbox {
    /// A new world holding the simulated cloud's `si-demo`.
    pub fn new() -> Sandbox {
        Self::open(tempfile::tempdir().expect("a temporary directory"), Duration::ZERO)
    }

    /// The same, with `latency` on every cloud call (so runs at once interleave).
    pub fn with_latency(latency: Duration) -> Sandbox {
        Self::open(tempfile::tempdir().expect("a temporary directory"), latency)
    }

    /// A copy of another sandbox's world, as it is now (it must not be working).
    pub fn copy_of(other: &Sandbox) -> Sandbox {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for entry in std::fs::read_dir(other.dir.path()).expect("the sandbox's files") {
            let entry = entry.expect("a file");
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy the world");
        }
        let copy = Self::open(dir, Duration::ZERO);
        copy.clock.advance(other.clock.now() - copy.clock.now());
        copy
    }

    /// With `latency` on every call and the cloud held in memory: a large world's calls then
    /// cost their latency only, not a file's read and write each (fan-out's round trips).
    pub fn in_memory_with_latency(latency: Duration) -> Sandbox {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(SteppingClock::new(Utc::now()));
        let sim = SimulatedCloud::in_memory(sim_settings(latency)).expect("the simulated cloud");
        let (app, wire) = service_on(dir.path(), clock.clone(), sim.clone());
        Sandbox { dir, app, sim, wire, clock }
    }

    fn open(dir: tempfile::TempDir, latency: Duration) -> Sandbox {
        let clock = Arc::new(SteppingClock::new(Utc::now()));
        let (app, sim, wire) = service(dir.path(), clock.clone(), latency);
        Sandbox { dir, app, sim, wire, clock }
    }

    /// Backs `si` up and polls until the point is finished.
    pub async fn backup(&self, si: &str) -> BackupRecord {
        self.backup_with(si, &BackupRequest::default()).await
    }

    /// Backs `si` up as `request` asks and polls until the point is finished (its
    /// replication, if any, is replicate's work).
    pub async fn backup_with(&self, si: &str, request: &BackupRequest) -> BackupRecord {
        let origin = BackupOrigin { trigger: Trigger::Manual, policy_id: None };
        let started = self.app.backups.create(si, request, origin).await.expect("start a backup");
        self.settle().await;
        self.app.backups.get(&started.backup_id).await.expect("read the backup")
    }

    /// Starts a restore (not a dry run) and polls until everything has finished.
    pub async fn restore(&self, backup_id: &str, request: &RestoreRequest) -> RestoreRecord {
        let Started::Restore(started) = self.app.restores.create(backup_id, request).await.expect("start a restore")
        else {
            panic!("a restore that is not a dry run answers its record")
        };
        self.settle().await;
        self.app.restores.get(&started.restore_id).await.expect("read the restore")
    }

    /// Runs poll-status (each pass ten simulated seconds after the last) until no backup or
    /// restore has work left for it; every pass may die at the tripwire.
    pub async fn settle(&self) {
        for _ in 0..200 {
            self.clock.advance(chrono::Duration::seconds(10));
            let _ = self.wire.invoke(self.app.poller.poll_active()).await;
            if !self.poll_has_work().await {
                return;
            }
        }
        panic!("poll-status did not finish the work in 200 passes");
    }

    async fn poll_has_work(&self) -> bool {
        let restores = self.app.store.list_active(Collection::Restores).await.expect("active restores");
        if !restores.is_empty() {
            return true;
        }
        for doc in self.app.store.list_active(Collection::Backups).await.expect("active backups") {
            let backup = self.app.backups.get(&doc.id).await.expect("read a backup");
            if !backup.status.is_terminal() || backup.cleanup_pending {
                return true;
            }
        }
        false
    }

    /// Runs replicate (each run a minute after the last) until no replication is at work;
    /// every run may die at the tripwire.
    pub async fn replicate(&self) {
        for _ in 0..50 {
            self.clock.advance(chrono::Duration::minutes(1));
            let _ = self.wire.invoke(self.app.replication.replicate_due()).await;
            let active = self.app.store.list_active(Collection::Backups).await.expect("active backups");
            let mut copying = false;
            for doc in active {
                let backup = self.app.backups.get(&doc.id).await.expect("read a backup");
                copying |= backup.replication.is_some_and(|r| !r.status.is_terminal());
            }
            if !copying {
                return;
            }
        }
        panic!("replicate did not finish in 50 runs");
    }

    /// Runs expire-retention from `at` on, each run a minute after the last, until nothing
    /// is due; every run may die at the tripwire.
    pub async fn expire(&self, at: chrono::DateTime<Utc>) {
        for run in 0..20 {
            let now = at + chrono::Duration::minutes(run);
            let _ = self.wire.invoke(crate::expire_at(&self.app, now)).await;
            if self.app.store.list_due(Collection::Backups, now).await.expect("due backups").is_empty() {
                return;
            }
        }
        panic!("expire-retention did not finish in 20 runs");
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

/// The service over the world in `dir`: the embedded store, the simulated cloud (instant,
/// its throttling retried as in production) behind a tripwire, on `clock`.
pub fn service(dir: &Path, clock: Arc<SteppingClock>, latency: Duration) -> (Arc<Snapnest>, SimulatedCloud, Arc<Wire>) {
    let sim = SimulatedCloud::open(dir, sim_settings(latency)).expect("the simulated cloud");
    let (app, wire) = service_on(dir, clock, sim.clone());
    (app, sim, wire)
}

fn sim_settings(latency: Duration) -> SimSettings {
    SimSettings { home_region: REGION.into(), operation_time: Duration::ZERO, latency, faults: Default::default() }
}

/// The service over `sim` and the embedded store in `dir`.
fn service_on(dir: &Path, clock: Arc<SteppingClock>, sim: SimulatedCloud) -> (Arc<Snapnest>, Arc<Wire>) {
    let wire = Arc::new(Wire::default());
    let store = Arc::new(Watched::new(Arc::new(EmbeddedStore::open(dir).expect("the embedded store")), wire.clone()));
    let clouds = Arc::new(Tripwire { inner: Arc::new(RetryingProvider(sim.clone())), wire: wire.clone() });
    let settings = Settings {
        tag_key: "service-instance-id".into(),
        default_retention_days: 7,
        default_destination_region: None,
        keep_replaced_days: 7,
        admins: Vec::new(),
        replica_kms_keys: [("us-west-2".to_owned(), "alias/snapnest-replicas".to_owned())].into(),
        replica_option_groups: Default::default(),
        trust_unverified_callers: true,
    };
    (Arc::new(Snapnest::new(store, clouds, clock, settings)), wire)
}

/// An in-place restore request.
pub fn in_place(safety_backup: bool) -> RestoreRequest {
    RestoreRequest {
        safety_backup: Some(safety_backup),
        ..RestoreRequest::new(snapnest_core::model::RestoreMode::InPlace)
    }
}
