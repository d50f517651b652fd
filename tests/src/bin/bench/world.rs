//! The world most scenarios run in: the embedded store behind a meter of what is read and
//! written, and the simulated cloud held in memory with a latency on every call.

use std::sync::Arc;
use std::time::Duration;

use snapnest_core::clock::Clock;
use snapnest_core::store::Store;
use snapnest_core::{Settings, Snapnest};
use snapnest_e2e::{Watched, WriteMeter};
use snapnest_local::embedded::EmbeddedStore;
use snapnest_local::retry::RetryingProvider;
use snapnest_local::simulated::{SimSettings, SimulatedCloud};

pub const REGION: &str = "us-east-1";

/// A local run's settings: the default tag, a week's retention, no replication defaults.
pub fn settings() -> Settings {
    Settings {
        tag_key: "service-instance-id".into(),
        default_retention_days: 7,
        default_destination_region: None,
        keep_replaced_days: 7,
        admins: Vec::new(),
        replica_kms_keys: Default::default(),
        replica_option_groups: Default::default(),
        trust_unverified_callers: true,
    }
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub app: Arc<Snapnest>,
    pub sim: SimulatedCloud,
    pub store: Arc<Watched<WriteMeter>>,
    /// The same store without the meter, for what measures time rather than items.
    pub unmetered: Arc<dyn Store>,
}

impl World {
    /// Calls take `latency`; snapshots take `operation_time` to complete.
    pub fn new(latency: Duration, operation_time: Duration, clock: Arc<dyn Clock>) -> World {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sim = SimulatedCloud::in_memory(SimSettings {
            home_region: REGION.into(),
            operation_time,
            latency,
            faults: Default::default(),
        })
        .expect("the simulated cloud");
        let embedded = Arc::new(EmbeddedStore::open(dir.path()).expect("the embedded store"));
        let store = Arc::new(Watched::new(embedded.clone(), WriteMeter::default()));
        let app = Arc::new(Snapnest::new(store.clone(), Arc::new(RetryingProvider(sim.clone())), clock, settings()));
        World { dir, app, sim, store, unmetered: embedded }
    }
}
