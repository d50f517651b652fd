//! A cloud and a store in front of the real ones that write down every port call, and for
//! whom: which function's handler was running, the region, the resources named, the tags
//! sent, and the tags the named resources carried just before the call (what an IAM
//! condition on `aws:ResourceTag/...` reads). The IAM test (`tests/tests/iam_policy.rs`)
//! turns each call into the requests AWS authorises and evaluates the function's role.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use snapnest_core::clock::Timestamp;
use snapnest_core::cloud::*;
use snapnest_core::events::{Event, EventBus, PublishError};
use snapnest_core::queue::{QueueError, Work, WorkQueue};
use snapnest_core::store::{Collection, Cursor, Document, Page, Row, Store, StoreError};
use snapnest_local::events::InProcessBus;
use snapnest_local::queue::InProcessQueue;
use snapnest_local::simulated::SimulatedCloud;

/// One call of the `Cloud` port.
#[derive(Debug, Clone)]
pub struct CloudCall {
    pub function: String,
    pub method: &'static str,
    /// The region of the cloud the call was made on.
    pub region: String,
    /// The call's arguments by name (`instance`, `volume`, `snapshot`, `db`, …); every value
    /// a list, so a call on many resources is one entry.
    pub args: BTreeMap<&'static str, Vec<String>>,
    /// The tags the call puts on what it creates or tags.
    pub tags: Tags,
    /// Of every existing resource the call names: its tags just before the call.
    pub resource_tags: BTreeMap<String, Tags>,
    /// The KMS key the call makes the cloud use on the caller's behalf, when known.
    pub kms_keys: Vec<String>,
    pub succeeded: bool,
}

/// One call of the `Store` port.
#[derive(Debug, Clone)]
pub struct StoreCall {
    pub function: String,
    pub method: &'static str,
}

/// One message sent to the work queue.
#[derive(Debug, Clone)]
pub struct QueueCall {
    pub function: String,
    pub work: Work,
}

/// One publish to the event bus: the detail-type of each event.
#[derive(Debug, Clone)]
pub struct BusCall {
    pub function: String,
    pub detail_types: Vec<&'static str>,
}

/// Everything recorded, and which function is running now.
#[derive(Default)]
pub struct CallLog {
    function: Mutex<Option<String>>,
    cloud: Mutex<Vec<CloudCall>>,
    store: Mutex<Vec<StoreCall>>,
    queue: Mutex<Vec<QueueCall>>,
    bus: Mutex<Vec<BusCall>>,
    /// The KMS key of every volume and snapshot seen so far: a volume's from what discovery
    /// and describes report, a snapshot's from its volume, a copy's from the key it was
    /// made with (or its source's).
    keys: Mutex<BTreeMap<String, String>>,
}

impl CallLog {
    /// Calls from now on are `function`'s (`None`: the test's own arranging, not recorded).
    pub fn acting_as(&self, function: Option<&str>) {
        *self.function.lock().unwrap() = function.map(str::to_owned);
    }

    /// Runs `work` as `function`'s handler would: its calls are recorded as `function`'s.
    pub async fn run<T>(&self, function: &str, work: impl std::future::Future<Output = T>) -> T {
        self.acting_as(Some(function));
        let out = work.await;
        self.acting_as(None);
        out
    }

    pub fn cloud_calls(&self) -> Vec<CloudCall> {
        self.cloud.lock().unwrap().clone()
    }

    pub fn store_calls(&self) -> Vec<StoreCall> {
        self.store.lock().unwrap().clone()
    }

    pub fn queue_calls(&self) -> Vec<QueueCall> {
        self.queue.lock().unwrap().clone()
    }

    pub fn bus_calls(&self) -> Vec<BusCall> {
        self.bus.lock().unwrap().clone()
    }

    fn function(&self) -> Option<String> {
        self.function.lock().unwrap().clone()
    }

    fn learn_key(&self, resource: &str, key: Option<&str>) {
        if let Some(key) = key {
            self.keys.lock().unwrap().insert(resource.to_owned(), key.to_owned());
        }
    }

    fn key_of(&self, resource: &str) -> Option<String> {
        self.keys.lock().unwrap().get(resource).cloned()
    }

    fn learn_instances(&self, instances: &[Instance]) {
        for volume in instances.iter().flat_map(|i| &i.volumes) {
            self.learn_key(&volume.volume_id, volume.settings.kms_key_id.as_deref());
        }
    }

    fn learn_snapshots(&self, started: &[StartedSnapshot]) {
        for snapshot in started {
            let key = self.key_of(&snapshot.volume_id);
            self.learn_key(&snapshot.snapshot_id, key.as_deref());
        }
    }
}

/// A [`CloudProvider`] whose clouds record every call in `log`, reading resources' tags
/// from `sim` (the simulated cloud behind `inner`).
pub struct RecordingProvider {
    pub inner: Arc<dyn CloudProvider>,
    pub sim: SimulatedCloud,
    pub log: Arc<CallLog>,
}

impl CloudProvider for RecordingProvider {
    fn home_region(&self) -> &str {
        self.inner.home_region()
    }
    fn home(&self) -> Arc<dyn Cloud> {
        Arc::new(RecordingCloud { inner: self.inner.home(), sim: self.sim.clone(), log: self.log.clone() })
    }
    fn region(&self, region: &str) -> CloudResult<Arc<dyn Cloud>> {
        Ok(Arc::new(RecordingCloud { inner: self.inner.region(region)?, sim: self.sim.clone(), log: self.log.clone() }))
    }
}

struct RecordingCloud {
    inner: Arc<dyn Cloud>,
    sim: SimulatedCloud,
    log: Arc<CallLog>,
}

/// A call being recorded: what it names, before it is made.
struct Pending {
    call: Option<CloudCall>,
}

impl RecordingCloud {
    /// Starts recording a call of `method` naming `args`; the tags of every named resource
    /// that exists (in this region, or in `source_region` for `source`) are read now.
    fn begin(&self, method: &'static str, args: &[(&'static str, &[String])], tags: &Tags) -> Pending {
        let Some(function) = self.log.function() else { return Pending { call: None } };
        let region = self.inner.region().to_owned();
        let mut resource_tags = BTreeMap::new();
        let source_region = args.iter().find(|(name, _)| *name == "source_region").and_then(|(_, v)| v.first());
        for (name, values) in args {
            if matches!(*name, "source_region" | "kms_key" | "keys" | "device" | "az" | "new_db" | "target") {
                continue;
            }
            let in_region = if *name == "source" { source_region.unwrap_or(&region) } else { &region };
            for id in *values {
                if let Ok(Some(found)) = self.sim.resource_tags(in_region, id) {
                    resource_tags.insert(id.clone(), found);
                }
            }
        }
        Pending {
            call: Some(CloudCall {
                function,
                method,
                region,
                args: args.iter().map(|(name, values)| (*name, values.to_vec())).collect(),
                tags: tags.clone(),
                resource_tags,
                kms_keys: Vec::new(),
                succeeded: false,
            }),
        }
    }

    fn end<T>(&self, mut pending: Pending, outcome: &CloudResult<T>, created: Vec<String>) {
        if let Some(mut call) = pending.call.take() {
            call.succeeded = outcome.is_ok();
            if !created.is_empty() {
                call.args.insert("created", created);
            }
            self.log.cloud.lock().unwrap().push(call);
        }
    }
}

fn one(id: &str) -> Vec<String> {
    vec![id.to_owned()]
}

#[async_trait]
impl Cloud for RecordingCloud {
    fn region(&self) -> &str {
        self.inner.region()
    }

    async fn discover(&self, tag_key: &str, value: &str) -> CloudResult<Inventory> {
        let pending = self.begin("discover", &[("tag", &[format!("{tag_key}={value}")])], &Tags::new());
        let out = self.inner.discover(tag_key, value).await;
        if let Ok(inventory) = &out {
            self.log.learn_instances(&inventory.instances);
        }
        self.end(pending, &out, Vec::new());
        out
    }

    async fn snapshot_instance(
        &self,
        instance_id: &str,
        volumes: &VolumeSelection,
        tags: &Tags,
    ) -> CloudResult<Vec<StartedSnapshot>> {
        // CreateSnapshots is authorised on the volumes it snapshots: the attached ones.
        let attached: Vec<String> = match self.inner.describe_instances(&one(instance_id)).await {
            Ok(found) => found.iter().flat_map(|i| &i.volumes).map(|v| v.volume_id.clone()).collect(),
            Err(_) => Vec::new(),
        };
        let chosen: Vec<String> = match volumes {
            VolumeSelection::All => attached,
            VolumeSelection::Only(wanted) => attached.into_iter().filter(|v| wanted.contains(v)).collect(),
        };
        let pending = self.begin("snapshot_instance", &[("instance", &one(instance_id)), ("volume", &chosen)], tags);
        let out = self.inner.snapshot_instance(instance_id, volumes, tags).await;
        let created = out.as_ref().map(|s| s.iter().map(|s| s.snapshot_id.clone()).collect()).unwrap_or_default();
        if let Ok(started) = &out {
            self.log.learn_snapshots(started);
        }
        self.end(pending, &out, created);
        out
    }

    async fn snapshot_volume(&self, volume_id: &str, tags: &Tags) -> CloudResult<StartedSnapshot> {
        let pending = self.begin("snapshot_volume", &[("volume", &one(volume_id))], tags);
        let out = self.inner.snapshot_volume(volume_id, tags).await;
        let created = out.as_ref().map(|s| vec![s.snapshot_id.clone()]).unwrap_or_default();
        if let Ok(started) = &out {
            self.log.learn_snapshots(std::slice::from_ref(started));
        }
        self.end(pending, &out, created);
        out
    }

    async fn snapshot_database(&self, db_id: &str, snapshot_id: &str, tags: &Tags) -> CloudResult<()> {
        let pending = self.begin("snapshot_database", &[("db", &one(db_id)), ("target", &one(snapshot_id))], tags);
        let out = self.inner.snapshot_database(db_id, snapshot_id, tags).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn describe_snapshots(&self, ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        let pending = self.begin("describe_snapshots", &[], &Tags::new());
        let out = self.inner.describe_snapshots(ids).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn describe_db_snapshots(&self, ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        let pending = self.begin("describe_db_snapshots", &[], &Tags::new());
        let out = self.inner.describe_db_snapshots(ids).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn describe_snapshots_tagged(&self, key: &str, values: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        let pending = self.begin("describe_snapshots_tagged", &[], &Tags::new());
        let out = self.inner.describe_snapshots_tagged(key, values).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn find_snapshots(&self, key: &str, value: &str) -> CloudResult<Vec<StartedSnapshot>> {
        let pending = self.begin("find_snapshots", &[], &Tags::new());
        let out = self.inner.find_snapshots(key, value).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn changed_bytes(&self, earlier: &str, later: &str) -> CloudResult<u64> {
        let pending =
            self.begin("changed_bytes", &[("snapshot", &[earlier.to_owned(), later.to_owned()])], &Tags::new());
        let out = self.inner.changed_bytes(earlier, later).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn delete_snapshot(&self, id: &str) -> CloudResult<DeleteOutcome> {
        let pending = self.begin("delete_snapshot", &[("snapshot", &one(id))], &Tags::new());
        let out = self.inner.delete_snapshot(id).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn delete_db_snapshot(&self, id: &str) -> CloudResult<DeleteOutcome> {
        let pending = self.begin("delete_db_snapshot", &[("db_snapshot", &one(id))], &Tags::new());
        let out = self.inner.delete_db_snapshot(id).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn tag_snapshot(&self, id: &str, tags: &Tags) -> CloudResult<()> {
        let pending = self.begin("tag_snapshot", &[("snapshot", &one(id))], tags);
        let out = self.inner.tag_snapshot(id, tags).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn copy_snapshot(
        &self,
        source_region: &str,
        id: &str,
        key: Option<&str>,
        tags: &Tags,
    ) -> CloudResult<String> {
        let mut pending = self.begin(
            "copy_snapshot",
            &[
                ("source_region", &one(source_region)),
                ("source", &one(id)),
                ("kms_key", &key.map(one).unwrap_or_default()),
            ],
            tags,
        );
        let source_key = self.log.key_of(id);
        if let (Some(call), Some(source_key)) = (pending.call.as_mut(), &source_key) {
            call.args.insert("source_key", one(source_key));
        }
        let out = self.inner.copy_snapshot(source_region, id, key, tags).await;
        let created = out.as_ref().map(|copy| vec![copy.clone()]).unwrap_or_default();
        if let Ok(copy) = &out {
            // Without a key the copy is under the destination region's default (AWS-managed) key.
            self.log.learn_key(copy, key);
        }
        self.end(pending, &out, created);
        out
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
        let mut pending = self.begin(
            "copy_db_snapshot",
            &[
                ("source_region", &one(source_region)),
                ("source", &one(id)),
                ("target", &one(target)),
                ("kms_key", &key.map(one).unwrap_or_default()),
                ("option_group", &option_group.map(one).unwrap_or_default()),
            ],
            tags,
        );
        if let Some(call) = pending.call.as_mut() {
            call.kms_keys = key.map(one).unwrap_or_default();
        }
        let out = self.inner.copy_db_snapshot(source_region, id, target, key, option_group, tags).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn stop_instances(&self, ids: &[String]) -> CloudResult<()> {
        let pending = self.begin("stop_instances", &[("instance", ids)], &Tags::new());
        let out = self.inner.stop_instances(ids).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn start_instances(&self, ids: &[String]) -> CloudResult<()> {
        let pending = self.begin("start_instances", &[("instance", ids)], &Tags::new());
        let out = self.inner.start_instances(ids).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn describe_instances(&self, ids: &[String]) -> CloudResult<Vec<Instance>> {
        let pending = self.begin("describe_instances", &[], &Tags::new());
        let out = self.inner.describe_instances(ids).await;
        if let Ok(instances) = &out {
            self.log.learn_instances(instances);
        }
        self.end(pending, &out, Vec::new());
        out
    }

    async fn create_volume(
        &self,
        snapshot_id: &str,
        az: &str,
        token: &str,
        settings: &VolumeSettings,
        tags: &Tags,
    ) -> CloudResult<String> {
        let mut pending = self.begin("create_volume", &[("snapshot", &one(snapshot_id)), ("az", &one(az))], tags);
        let key = settings.kms_key_id.clone().filter(|_| settings.encrypted).or_else(|| self.log.key_of(snapshot_id));
        if let Some(call) = pending.call.as_mut() {
            call.kms_keys = key.iter().cloned().collect();
        }
        let out = self.inner.create_volume(snapshot_id, az, token, settings, tags).await;
        let created = out.as_ref().map(|v| vec![v.clone()]).unwrap_or_default();
        if let Ok(volume) = &out {
            self.log.learn_key(volume, key.as_deref());
        }
        self.end(pending, &out, created);
        out
    }

    async fn describe_volumes(&self, ids: &[String]) -> CloudResult<Vec<VolumeStatus>> {
        let pending = self.begin("describe_volumes", &[], &Tags::new());
        let out = self.inner.describe_volumes(ids).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn detach_volume(&self, instance_id: &str, volume_id: &str) -> CloudResult<()> {
        let pending =
            self.begin("detach_volume", &[("instance", &one(instance_id)), ("volume", &one(volume_id))], &Tags::new());
        let out = self.inner.detach_volume(instance_id, volume_id).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn attach_volume(&self, instance_id: &str, volume_id: &str, device: &str) -> CloudResult<()> {
        let pending = self.begin(
            "attach_volume",
            &[("instance", &one(instance_id)), ("volume", &one(volume_id)), ("device", &one(device))],
            &Tags::new(),
        );
        let out = self.inner.attach_volume(instance_id, volume_id, device).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn set_delete_on_termination(&self, instance_id: &str, device: &str, delete: bool) -> CloudResult<()> {
        let pending = self.begin(
            "set_delete_on_termination",
            &[("instance", &one(instance_id)), ("device", &one(device))],
            &Tags::new(),
        );
        let out = self.inner.set_delete_on_termination(instance_id, device, delete).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn delete_volume(&self, volume_id: &str) -> CloudResult<DeleteOutcome> {
        let pending = self.begin("delete_volume", &[("volume", &one(volume_id))], &Tags::new());
        let out = self.inner.delete_volume(volume_id).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn tag_resource(&self, id: &str, tags: &Tags) -> CloudResult<()> {
        let pending = self.begin("tag_resource", &[("resource", &one(id))], tags);
        let out = self.inner.tag_resource(id, tags).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn untag_resource(&self, id: &str, keys: &[String]) -> CloudResult<()> {
        let pending = self.begin("untag_resource", &[("resource", &one(id)), ("keys", keys)], &Tags::new());
        let out = self.inner.untag_resource(id, keys).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn restore_database(
        &self,
        snapshot_id: &str,
        new_db_id: &str,
        settings: &DatabaseSettings,
        tags: &Tags,
    ) -> CloudResult<()> {
        // RDS picks the engine's default groups without a name (see the AWS adapter): only a
        // group of the user's own is named in the request, and so authorised.
        let named = |group: &Option<String>, default: &str| {
            group.iter().filter(|g| !g.starts_with(default)).cloned().collect::<Vec<_>>()
        };
        let pending = self.begin(
            "restore_database",
            &[
                ("db_snapshot", &one(snapshot_id)),
                ("new_db", &one(new_db_id)),
                ("subnet_group", &settings.subnet_group.iter().cloned().collect::<Vec<_>>()),
                ("parameter_group", &named(&settings.parameter_group, "default.")),
                ("option_group", &named(&settings.option_group, "default:")),
            ],
            tags,
        );
        let out = self.inner.restore_database(snapshot_id, new_db_id, settings, tags).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn describe_databases(&self, ids: &[String]) -> CloudResult<Vec<DatabaseStatus>> {
        let pending = self.begin("describe_databases", &[], &Tags::new());
        let out = self.inner.describe_databases(ids).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn rename_database(&self, db_id: &str, new_db_id: &str) -> CloudResult<()> {
        let pending = self.begin("rename_database", &[("db", &one(db_id)), ("new_db", &one(new_db_id))], &Tags::new());
        let out = self.inner.rename_database(db_id, new_db_id).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn set_deletion_protection(&self, db_id: &str, protect: bool) -> CloudResult<()> {
        let pending = self.begin("set_deletion_protection", &[("db", &one(db_id))], &Tags::new());
        let out = self.inner.set_deletion_protection(db_id, protect).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn delete_database(&self, db_id: &str) -> CloudResult<DeleteOutcome> {
        let pending = self.begin("delete_database", &[("db", &one(db_id))], &Tags::new());
        let out = self.inner.delete_database(db_id).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn register_image(&self, spec: &ImageSpec, tags: &Tags) -> CloudResult<String> {
        let snapshots: Vec<String> = spec.devices.iter().map(|d| d.snapshot_id.clone()).collect();
        let pending = self.begin("register_image", &[("snapshot", &snapshots)], tags);
        let out = self.inner.register_image(spec, tags).await;
        let created = out.as_ref().map(|image| vec![image.clone()]).unwrap_or_default();
        self.end(pending, &out, created);
        out
    }

    async fn find_image(&self, name: &str) -> CloudResult<Option<ImageStatus>> {
        let pending = self.begin("find_image", &[], &Tags::new());
        let out = self.inner.find_image(name).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn find_instances(&self, key: &str, value: &str) -> CloudResult<Vec<(String, Tags)>> {
        let pending = self.begin("find_instances", &[], &Tags::new());
        let out = self.inner.find_instances(key, value).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn describe_images(&self, ids: &[String]) -> CloudResult<Vec<ImageStatus>> {
        let pending = self.begin("describe_images", &[], &Tags::new());
        let out = self.inner.describe_images(ids).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn deregister_image(&self, image_id: &str) -> CloudResult<DeleteOutcome> {
        let pending = self.begin("deregister_image", &[("image", &one(image_id))], &Tags::new());
        let out = self.inner.deregister_image(image_id).await;
        self.end(pending, &out, Vec::new());
        out
    }

    async fn run_instance(
        &self,
        image_id: &str,
        settings: &InstanceSettings,
        devices: &[ImageDevice],
        client_token: &str,
        tags: &Tags,
    ) -> CloudResult<String> {
        let listed = |value: &Option<String>| value.iter().cloned().collect::<Vec<_>>();
        let mut pending = self.begin(
            "run_instance",
            &[
                ("image", &one(image_id)),
                ("subnet", &listed(&settings.subnet_id)),
                ("security_group", &settings.security_group_ids),
                ("key_pair", &listed(&settings.key_name)),
                ("instance_profile", &listed(&settings.iam_instance_profile)),
            ],
            tags,
        );
        if let Some(call) = pending.call.as_mut() {
            call.kms_keys =
                devices.iter().filter_map(|d| d.settings.kms_key_id.clone().filter(|_| d.settings.encrypted)).collect();
        }
        let out = self.inner.run_instance(image_id, settings, devices, client_token, tags).await;
        let created = out.as_ref().map(|instance| vec![instance.clone()]).unwrap_or_default();
        self.end(pending, &out, created);
        out
    }
}

/// A store that records which of its methods each function calls, then passes the call on.
pub struct RecordingStore {
    pub inner: Arc<dyn Store>,
    pub log: Arc<CallLog>,
}

impl RecordingStore {
    fn record(&self, method: &'static str) {
        if let Some(function) = self.log.function() {
            self.log.store.lock().unwrap().push(StoreCall { function, method });
        }
    }
}

#[async_trait]
impl Store for RecordingStore {
    async fn insert_with_rows(&self, doc: &Document, rows: &[Row], token: Option<&str>) -> Result<(), StoreError> {
        self.record("insert_with_rows");
        self.inner.insert_with_rows(doc, rows, token).await
    }
    async fn update_with_rows(&self, doc: &Document, rows: &[Row]) -> Result<(), StoreError> {
        self.record("update_with_rows");
        self.inner.update_with_rows(doc, rows).await
    }
    async fn get_rows(&self, c: Collection, id: &str) -> Result<Vec<Row>, StoreError> {
        self.record("get_rows");
        self.inner.get_rows(c, id).await
    }
    async fn get(&self, c: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        self.record("get");
        self.inner.get(c, id).await
    }
    async fn list_owned(&self, c: Collection, o: &str, l: usize, cur: Option<&Cursor>) -> Result<Page, StoreError> {
        self.record("list_owned");
        self.inner.list_owned(c, o, l, cur).await
    }
    async fn list_collection(&self, c: Collection, l: usize, cur: Option<&Cursor>) -> Result<Page, StoreError> {
        self.record("list_collection");
        self.inner.list_collection(c, l, cur).await
    }
    async fn delete(&self, c: Collection, id: &str, v: u64) -> Result<(), StoreError> {
        self.record("delete");
        self.inner.delete(c, id, v).await
    }
    async fn acquire_lock(&self, k: &str, h: &str) -> Result<(), StoreError> {
        self.record("acquire_lock");
        self.inner.acquire_lock(k, h).await
    }
    async fn release_lock(&self, k: &str, h: &str) -> Result<(), StoreError> {
        self.record("release_lock");
        self.inner.release_lock(k, h).await
    }
    async fn list_active(&self, c: Collection) -> Result<Vec<Document>, StoreError> {
        self.record("list_active");
        self.inner.list_active(c).await
    }
    async fn list_due(&self, c: Collection, now: Timestamp) -> Result<Vec<Document>, StoreError> {
        self.record("list_due");
        self.inner.list_due(c, now).await
    }
}

/// The in-process work queue, writing down who sent what.
pub struct RecordingQueue {
    pub inner: Arc<InProcessQueue>,
    pub log: Arc<CallLog>,
}

#[async_trait]
impl WorkQueue for RecordingQueue {
    async fn send(&self, work: &Work) -> Result<(), QueueError> {
        if let Some(function) = self.log.function() {
            self.log.queue.lock().unwrap().push(QueueCall { function, work: work.clone() });
        }
        self.inner.send(work).await
    }
}

/// The in-process event bus, writing down who published what.
pub struct RecordingBus {
    pub inner: Arc<InProcessBus>,
    pub log: Arc<CallLog>,
}

#[async_trait]
impl EventBus for RecordingBus {
    async fn publish(&self, events: &[Event]) -> Result<(), PublishError> {
        if let Some(function) = self.log.function() {
            let detail_types = events.iter().map(|e| e.detail_type().as_str()).collect();
            self.log.bus.lock().unwrap().push(BusCall { function, detail_types });
        }
        self.inner.publish(events).await
    }
}
