//! A service on the embedded store and an instant simulated cloud in a throwaway
//! directory, on simulated time, behind a [`Tripwire`]: the restore tests' world. Each
//! poll moves the clock ten seconds, so leases and deadlines pass without waiting.

use std::path::Path;
use std::sync::Arc;

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
        Self::open(tempfile::tempdir().expect("a temporary directory"))
    }

    /// A copy of another sandbox's world, as it is now (it must not be working).
    pub fn copy_of(other: &Sandbox) -> Sandbox {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for entry in std::fs::read_dir(other.dir.path()).expect("the sandbox's files") {
            let entry = entry.expect("a file");
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy the world");
        }
        let copy = Self::open(dir);
        copy.clock.advance(other.clock.now() - copy.clock.now());
        copy
    }

    fn open(dir: tempfile::TempDir) -> Sandbox {
        let clock = Arc::new(SteppingClock::new(Utc::now()));
        let (app, sim, wire) = service(dir.path(), clock.clone());
        Sandbox { dir, app, sim, wire, clock }
    }

    /// Backs `si` up and polls until the point is finished.
    pub async fn backup(&self, si: &str) -> BackupRecord {
        let origin = BackupOrigin { trigger: Trigger::Manual, policy_id: None };
        let started = self.app.backups.create(si, &BackupRequest::default(), origin).await.expect("start a backup");
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
    /// restore has work left; every pass may die at the tripwire.
    pub async fn settle(&self) {
        for _ in 0..200 {
            self.clock.advance(chrono::Duration::seconds(10));
            let _ = self.wire.invoke(self.app.poller.poll_active()).await;
            let backups = self.app.store.list_active(Collection::Backups).await.expect("active backups");
            let restores = self.app.store.list_active(Collection::Restores).await.expect("active restores");
            if backups.is_empty() && restores.is_empty() {
                return;
            }
        }
        panic!("poll-status did not finish the work in 200 passes");
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

/// The service over the world in `dir`: the embedded store, the simulated cloud (instant,
/// its throttling retried as in production) behind a tripwire, on `clock`.
pub fn service(dir: &Path, clock: Arc<SteppingClock>) -> (Arc<Snapnest>, SimulatedCloud, Arc<Wire>) {
    let settings = SimSettings {
        home_region: REGION.into(),
        operation_time: std::time::Duration::ZERO,
        latency: std::time::Duration::ZERO,
        faults: Default::default(),
    };
    let sim = SimulatedCloud::open(dir, settings).expect("the simulated cloud");
    let store = Arc::new(EmbeddedStore::open(dir).expect("the embedded store"));
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

/// An in-place restore request.
pub fn in_place(safety_backup: bool) -> RestoreRequest {
    RestoreRequest {
        mode: snapnest_core::model::RestoreMode::InPlace,
        safety_backup: Some(safety_backup),
        region: None,
        allow_partial: None,
        on_failure: None,
        dry_run: None,
        client_token: None,
    }
}
