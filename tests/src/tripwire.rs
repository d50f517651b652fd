//! A cloud and a store in front of the real ones that trip on the k-th mutating cloud call
//! or the k-th store write: the function dies right after the call (it took effect, its
//! answer never arrives and nothing after it runs), the write fails, or something else
//! happens at that point (a user's request). How the tests kill a function at every point,
//! or race a user against it, without a special path in the product.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use snapnest_core::clock::{Clock, Timestamp};
use snapnest_core::cloud::*;
use snapnest_core::store::{Document, Row, StoreError};
use tokio::sync::Notify;

/// Something to run between two cloud calls.
pub type Hook = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What happens at the tripping call.
pub enum Trip {
    /// The function dies: the call took effect, nothing after it runs.
    Die,
    /// The hook runs after the call, then the function goes on.
    Then(Hook),
}

/// What happens at the tripping store write.
pub enum WriteTrip {
    /// The write fails (the store is unavailable); the function sees the error.
    Fails,
    /// The hook runs just before the write, which then goes ahead.
    Before(Hook),
}

struct Armed<T> {
    at: u64,
    trip: T,
}

/// The state a [`Tripwire`] and the store it watches share with every cloud they hand out.
#[derive(Default)]
pub struct Wire {
    mutations: AtomicU64,
    armed: Mutex<Option<Armed<Trip>>>,
    writes: AtomicU64,
    armed_write: Mutex<Option<Armed<WriteTrip>>>,
    died: Notify,
}

impl Wire {
    /// Trips at the `k`-th mutating call from now (1 = the next).
    pub fn arm(&self, k: u64, trip: Trip) {
        let at = self.mutations.load(Ordering::SeqCst) + k;
        *self.armed.lock().unwrap() = Some(Armed { at, trip });
    }

    /// Trips at the `k`-th store write from now (1 = the next).
    pub fn arm_write(&self, k: u64, trip: WriteTrip) {
        let at = self.writes.load(Ordering::SeqCst) + k;
        *self.armed_write.lock().unwrap() = Some(Armed { at, trip });
    }

    pub fn mutations(&self) -> u64 {
        self.mutations.load(Ordering::SeqCst)
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    async fn next_write(&self) -> Result<(), StoreError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let trip = {
            let mut armed = self.armed_write.lock().unwrap();
            match armed.as_ref() {
                Some(a) if a.at == n => armed.take().map(|a| a.trip),
                _ => None,
            }
        };
        match trip {
            Some(WriteTrip::Fails) => Err(StoreError::Unavailable("the store failed (simulated)".into())),
            Some(WriteTrip::Before(hook)) => {
                hook().await;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Resolves once a function died at the tripping call.
    pub async fn died(&self) {
        self.died.notified().await
    }

    /// Runs `work` as a function invocation that may die: `None` when it did.
    pub async fn invoke<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            out = work => Some(out),
            () = self.died() => None,
        }
    }

    async fn after_mutation(&self) {
        let n = self.mutations.fetch_add(1, Ordering::SeqCst) + 1;
        let trip = {
            let mut armed = self.armed.lock().unwrap();
            match armed.as_ref() {
                Some(a) if a.at == n => armed.take().map(|a| a.trip),
                _ => None,
            }
        };
        match trip {
            Some(Trip::Die) => {
                self.died.notify_waiters();
                std::future::pending::<()>().await;
            }
            Some(Trip::Then(hook)) => hook().await,
            None => {}
        }
    }
}

/// A [`CloudProvider`] whose clouds trip as their [`Wire`] is armed.
pub struct Tripwire {
    pub inner: Arc<dyn CloudProvider>,
    pub wire: Arc<Wire>,
}

impl CloudProvider for Tripwire {
    fn home_region(&self) -> &str {
        self.inner.home_region()
    }
    fn home(&self) -> Arc<dyn Cloud> {
        Arc::new(TripCloud { inner: self.inner.home(), wire: self.wire.clone() })
    }
    fn region(&self, region: &str) -> CloudResult<Arc<dyn Cloud>> {
        Ok(Arc::new(TripCloud { inner: self.inner.region(region)?, wire: self.wire.clone() }))
    }
}

struct TripCloud {
    inner: Arc<dyn Cloud>,
    wire: Arc<Wire>,
}

impl TripCloud {
    async fn mutation<T>(&self, out: CloudResult<T>) -> CloudResult<T> {
        self.wire.after_mutation().await;
        out
    }
}

#[async_trait]
impl Cloud for TripCloud {
    fn region(&self) -> &str {
        self.inner.region()
    }
    async fn discover(&self, tag_key: &str, value: &str) -> CloudResult<Inventory> {
        self.inner.discover(tag_key, value).await
    }
    async fn snapshot_instance(
        &self,
        instance_id: &str,
        volumes: &VolumeSelection,
        tags: &Tags,
    ) -> CloudResult<Vec<StartedSnapshot>> {
        self.mutation(self.inner.snapshot_instance(instance_id, volumes, tags).await).await
    }
    async fn snapshot_volume(&self, volume_id: &str, tags: &Tags) -> CloudResult<StartedSnapshot> {
        self.mutation(self.inner.snapshot_volume(volume_id, tags).await).await
    }
    async fn snapshot_database(&self, db_id: &str, snapshot_id: &str, tags: &Tags) -> CloudResult<()> {
        self.mutation(self.inner.snapshot_database(db_id, snapshot_id, tags).await).await
    }
    async fn describe_snapshots(&self, ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        self.inner.describe_snapshots(ids).await
    }
    async fn describe_db_snapshots(&self, ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        self.inner.describe_db_snapshots(ids).await
    }
    async fn describe_snapshots_tagged(&self, key: &str, values: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        self.inner.describe_snapshots_tagged(key, values).await
    }
    async fn find_snapshots(&self, key: &str, value: &str) -> CloudResult<Vec<StartedSnapshot>> {
        self.inner.find_snapshots(key, value).await
    }
    async fn changed_bytes(&self, earlier: &str, later: &str) -> CloudResult<u64> {
        self.inner.changed_bytes(earlier, later).await
    }
    async fn delete_snapshot(&self, id: &str) -> CloudResult<DeleteOutcome> {
        self.mutation(self.inner.delete_snapshot(id).await).await
    }
    async fn delete_db_snapshot(&self, id: &str) -> CloudResult<DeleteOutcome> {
        self.mutation(self.inner.delete_db_snapshot(id).await).await
    }
    async fn tag_snapshot(&self, id: &str, tags: &Tags) -> CloudResult<()> {
        self.mutation(self.inner.tag_snapshot(id, tags).await).await
    }
    async fn copy_snapshot(
        &self,
        source_region: &str,
        id: &str,
        key: Option<&str>,
        tags: &Tags,
    ) -> CloudResult<String> {
        self.mutation(self.inner.copy_snapshot(source_region, id, key, tags).await).await
    }
    async fn copy_db_snapshot(
        &self,
        source_region: &str,
        id: &str,
        target: &str,
        key: Option<&str>,
        option_group: Option<&str>,
        tags: &Tags,
    ) -> CloudResult<()> {
        self.mutation(self.inner.copy_db_snapshot(source_region, id, target, key, option_group, tags).await).await
    }
    async fn stop_instances(&self, ids: &[String]) -> CloudResult<()> {
        self.mutation(self.inner.stop_instances(ids).await).await
    }
    async fn start_instances(&self, ids: &[String]) -> CloudResult<()> {
        self.mutation(self.inner.start_instances(ids).await).await
    }
    async fn describe_instances(&self, ids: &[String]) -> CloudResult<Vec<Instance>> {
        self.inner.describe_instances(ids).await
    }
    async fn create_volume(
        &self,
        snapshot_id: &str,
        az: &str,
        token: &str,
        settings: &VolumeSettings,
        tags: &Tags,
    ) -> CloudResult<String> {
        self.mutation(self.inner.create_volume(snapshot_id, az, token, settings, tags).await).await
    }
    async fn describe_volumes(&self, ids: &[String]) -> CloudResult<Vec<VolumeStatus>> {
        self.inner.describe_volumes(ids).await
    }
    async fn detach_volume(&self, instance_id: &str, volume_id: &str) -> CloudResult<()> {
        self.mutation(self.inner.detach_volume(instance_id, volume_id).await).await
    }
    async fn attach_volume(&self, instance_id: &str, volume_id: &str, device: &str) -> CloudResult<()> {
        self.mutation(self.inner.attach_volume(instance_id, volume_id, device).await).await
    }
    async fn set_delete_on_termination(&self, instance_id: &str, device: &str, delete: bool) -> CloudResult<()> {
        self.mutation(self.inner.set_delete_on_termination(instance_id, device, delete).await).await
    }
    async fn delete_volume(&self, volume_id: &str) -> CloudResult<DeleteOutcome> {
        self.mutation(self.inner.delete_volume(volume_id).await).await
    }
    async fn tag_resource(&self, id: &str, tags: &Tags) -> CloudResult<()> {
        self.mutation(self.inner.tag_resource(id, tags).await).await
    }
    async fn untag_resource(&self, id: &str, keys: &[String]) -> CloudResult<()> {
        self.mutation(self.inner.untag_resource(id, keys).await).await
    }
    async fn restore_database(
        &self,
        snapshot_id: &str,
        new_db_id: &str,
        settings: &DatabaseSettings,
        tags: &Tags,
    ) -> CloudResult<()> {
        self.mutation(self.inner.restore_database(snapshot_id, new_db_id, settings, tags).await).await
    }
    async fn describe_databases(&self, ids: &[String]) -> CloudResult<Vec<DatabaseStatus>> {
        self.inner.describe_databases(ids).await
    }
    async fn rename_database(&self, db_id: &str, new_db_id: &str) -> CloudResult<()> {
        self.mutation(self.inner.rename_database(db_id, new_db_id).await).await
    }
    async fn set_deletion_protection(&self, db_id: &str, protect: bool) -> CloudResult<()> {
        self.mutation(self.inner.set_deletion_protection(db_id, protect).await).await
    }
    async fn delete_database(&self, db_id: &str) -> CloudResult<DeleteOutcome> {
        self.mutation(self.inner.delete_database(db_id).await).await
    }
    async fn register_image(&self, spec: &ImageSpec, tags: &Tags) -> CloudResult<String> {
        self.mutation(self.inner.register_image(spec, tags).await).await
    }
    async fn find_image(&self, name: &str) -> CloudResult<Option<ImageStatus>> {
        self.inner.find_image(name).await
    }
    async fn find_instances(&self, key: &str, value: &str) -> CloudResult<Vec<(String, Tags)>> {
        self.inner.find_instances(key, value).await
    }
    async fn describe_images(&self, ids: &[String]) -> CloudResult<Vec<ImageStatus>> {
        self.inner.describe_images(ids).await
    }
    async fn deregister_image(&self, id: &str) -> CloudResult<DeleteOutcome> {
        self.mutation(self.inner.deregister_image(id).await).await
    }
    async fn run_instance(
        &self,
        image_id: &str,
        settings: &InstanceSettings,
        devices: &[ImageDevice],
        client_token: &str,
        tags: &Tags,
    ) -> CloudResult<String> {
        self.mutation(self.inner.run_instance(image_id, settings, devices, client_token, tags).await).await
    }
}

/// The store writes trip as the wire is armed: [`crate::Watched`]`<Arc<Wire>>` in front of
/// the real store.
#[async_trait]
impl crate::watched_store::Watch for Wire {
    async fn before_write(&self, _doc: &Document, _rows: &[Row], _insert: bool) -> Result<(), StoreError> {
        self.next_write().await
    }
}

/// A clock the test moves: simulated time, so deadlines and leases pass without waiting.
pub struct SteppingClock(Mutex<Timestamp>);

impl SteppingClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }
    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for SteppingClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}
