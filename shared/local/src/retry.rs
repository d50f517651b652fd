//! Retries with exponential backoff and jitter for throttled and transient calls of the
//! simulated cloud, as a decorator of the `Cloud` port.
//!
//! The AWS adapter has the SDK's own adaptive retry and is not wrapped: retrying on top of
//! it would multiply the attempts. This layer makes the simulated cloud's injected
//! throttling survivable, and bounds the total wait so a scheduled invocation finishes
//! inside its timeout and the next poll carries on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::{Rng, SeedableRng};

use snapnest_core::cloud::*;

const MAX_ATTEMPTS: u32 = 8;
const FIRST_DELAY: Duration = Duration::from_millis(25);
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Runs `call` until it succeeds, fails for good, or has been throttled `MAX_ATTEMPTS` times.
pub async fn retrying<T, F, Fut>(operation: &str, mut call: F) -> CloudResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = CloudResult<T>>,
{
    let mut delay = FIRST_DELAY;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(error) if error.is_retryable() && attempt < MAX_ATTEMPTS => {
                // Full jitter: a random wait up to the current ceiling spreads retrying callers.
                let wait = rand::rngs::StdRng::from_entropy().gen_range(delay / 2..=delay);
                tracing::debug!(operation, attempt, %error, wait_ms = wait.as_millis() as u64, "retrying cloud call");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(MAX_DELAY);
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// A cloud whose every call is retried with [`retrying`]: what the simulated cloud is
/// wrapped in, so its injected throttling is absorbed below the port the way the AWS SDK's
/// adaptive retry absorbs real throttling. The domain calls each port method once.
pub struct RetryingCloud(pub Arc<dyn Cloud>);

/// Hands out [`RetryingCloud`]s of the regions of another provider.
pub struct RetryingProvider<P>(pub P);

impl<P: CloudProvider> CloudProvider for RetryingProvider<P> {
    fn home_region(&self) -> &str {
        self.0.home_region()
    }
    fn home(&self) -> Arc<dyn Cloud> {
        Arc::new(RetryingCloud(self.0.home()))
    }
    fn region(&self, region: &str) -> CloudResult<Arc<dyn Cloud>> {
        Ok(Arc::new(RetryingCloud(self.0.region(region)?)))
    }
}

#[async_trait]
impl Cloud for RetryingCloud {
    fn region(&self) -> &str {
        self.0.region()
    }
    async fn discover(&self, tag_key: &str, value: &str) -> CloudResult<Inventory> {
        retrying("discover", || self.0.discover(tag_key, value)).await
    }
    async fn snapshot_instance(
        &self,
        instance_id: &str,
        volumes: &VolumeSelection,
        tags: &Tags,
    ) -> CloudResult<Vec<StartedSnapshot>> {
        retrying("snapshot_instance", || self.0.snapshot_instance(instance_id, volumes, tags)).await
    }
    async fn snapshot_volume(&self, volume_id: &str, tags: &Tags) -> CloudResult<StartedSnapshot> {
        retrying("snapshot_volume", || self.0.snapshot_volume(volume_id, tags)).await
    }
    async fn snapshot_database(&self, db_id: &str, snapshot_id: &str, tags: &Tags) -> CloudResult<()> {
        retrying("snapshot_database", || self.0.snapshot_database(db_id, snapshot_id, tags)).await
    }
    async fn describe_snapshots(&self, snapshot_ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        retrying("describe_snapshots", || self.0.describe_snapshots(snapshot_ids)).await
    }
    async fn describe_db_snapshots(&self, snapshot_ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        retrying("describe_db_snapshots", || self.0.describe_db_snapshots(snapshot_ids)).await
    }
    async fn describe_snapshots_tagged(&self, key: &str, values: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        retrying("describe_snapshots_tagged", || self.0.describe_snapshots_tagged(key, values)).await
    }
    async fn find_snapshots(&self, key: &str, value: &str) -> CloudResult<Vec<StartedSnapshot>> {
        retrying("find_snapshots", || self.0.find_snapshots(key, value)).await
    }
    async fn changed_bytes(&self, earlier: &str, later: &str) -> CloudResult<u64> {
        retrying("changed_bytes", || self.0.changed_bytes(earlier, later)).await
    }
    async fn delete_snapshot(&self, snapshot_id: &str) -> CloudResult<DeleteOutcome> {
        retrying("delete_snapshot", || self.0.delete_snapshot(snapshot_id)).await
    }
    async fn delete_db_snapshot(&self, snapshot_id: &str) -> CloudResult<DeleteOutcome> {
        retrying("delete_db_snapshot", || self.0.delete_db_snapshot(snapshot_id)).await
    }
    async fn tag_snapshot(&self, snapshot_id: &str, tags: &Tags) -> CloudResult<()> {
        retrying("tag_snapshot", || self.0.tag_snapshot(snapshot_id, tags)).await
    }
    async fn copy_snapshot(
        &self,
        source_region: &str,
        snapshot_id: &str,
        kms_key_id: Option<&str>,
        tags: &Tags,
    ) -> CloudResult<String> {
        retrying("copy_snapshot", || self.0.copy_snapshot(source_region, snapshot_id, kms_key_id, tags)).await
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
        retrying("copy_db_snapshot", || {
            self.0.copy_db_snapshot(source_region, snapshot_id, target_id, kms_key_id, option_group, tags)
        })
        .await
    }
    async fn stop_instances(&self, instance_ids: &[String]) -> CloudResult<()> {
        retrying("stop_instances", || self.0.stop_instances(instance_ids)).await
    }
    async fn start_instances(&self, instance_ids: &[String]) -> CloudResult<()> {
        retrying("start_instances", || self.0.start_instances(instance_ids)).await
    }
    async fn describe_instances(&self, instance_ids: &[String]) -> CloudResult<Vec<Instance>> {
        retrying("describe_instances", || self.0.describe_instances(instance_ids)).await
    }
    async fn create_volume(
        &self,
        snapshot_id: &str,
        availability_zone: &str,
        client_token: &str,
        settings: &VolumeSettings,
        tags: &Tags,
    ) -> CloudResult<String> {
        retrying("create_volume", || self.0.create_volume(snapshot_id, availability_zone, client_token, settings, tags))
            .await
    }
    async fn describe_volumes(&self, volume_ids: &[String]) -> CloudResult<Vec<VolumeStatus>> {
        retrying("describe_volumes", || self.0.describe_volumes(volume_ids)).await
    }
    async fn detach_volume(&self, instance_id: &str, volume_id: &str) -> CloudResult<()> {
        retrying("detach_volume", || self.0.detach_volume(instance_id, volume_id)).await
    }
    async fn attach_volume(&self, instance_id: &str, volume_id: &str, device: &str) -> CloudResult<()> {
        retrying("attach_volume", || self.0.attach_volume(instance_id, volume_id, device)).await
    }
    async fn set_delete_on_termination(&self, instance_id: &str, device: &str, delete: bool) -> CloudResult<()> {
        retrying("set_delete_on_termination", || self.0.set_delete_on_termination(instance_id, device, delete)).await
    }
    async fn delete_volume(&self, volume_id: &str) -> CloudResult<DeleteOutcome> {
        retrying("delete_volume", || self.0.delete_volume(volume_id)).await
    }
    async fn tag_resource(&self, resource_id: &str, tags: &Tags) -> CloudResult<()> {
        retrying("tag_resource", || self.0.tag_resource(resource_id, tags)).await
    }
    async fn untag_resource(&self, resource_id: &str, keys: &[String]) -> CloudResult<()> {
        retrying("untag_resource", || self.0.untag_resource(resource_id, keys)).await
    }
    async fn restore_database(
        &self,
        snapshot_id: &str,
        new_db_id: &str,
        settings: &DatabaseSettings,
        tags: &Tags,
    ) -> CloudResult<()> {
        retrying("restore_database", || self.0.restore_database(snapshot_id, new_db_id, settings, tags)).await
    }
    async fn describe_databases(&self, db_ids: &[String]) -> CloudResult<Vec<DatabaseStatus>> {
        retrying("describe_databases", || self.0.describe_databases(db_ids)).await
    }
    async fn rename_database(&self, db_id: &str, new_db_id: &str) -> CloudResult<()> {
        retrying("rename_database", || self.0.rename_database(db_id, new_db_id)).await
    }
    async fn set_deletion_protection(&self, db_id: &str, protect: bool) -> CloudResult<()> {
        retrying("set_deletion_protection", || self.0.set_deletion_protection(db_id, protect)).await
    }
    async fn delete_database(&self, db_id: &str) -> CloudResult<DeleteOutcome> {
        retrying("delete_database", || self.0.delete_database(db_id)).await
    }
    async fn register_image(&self, spec: &ImageSpec, tags: &Tags) -> CloudResult<String> {
        retrying("register_image", || self.0.register_image(spec, tags)).await
    }
    async fn find_image(&self, name: &str) -> CloudResult<Option<ImageStatus>> {
        retrying("find_image", || self.0.find_image(name)).await
    }
    async fn find_instances(&self, key: &str, value: &str) -> CloudResult<Vec<(String, Tags)>> {
        retrying("find_instances", || self.0.find_instances(key, value)).await
    }
    async fn describe_images(&self, image_ids: &[String]) -> CloudResult<Vec<ImageStatus>> {
        retrying("describe_images", || self.0.describe_images(image_ids)).await
    }
    async fn deregister_image(&self, image_id: &str) -> CloudResult<DeleteOutcome> {
        retrying("deregister_image", || self.0.deregister_image(image_id)).await
    }
    async fn run_instance(
        &self,
        image_id: &str,
        settings: &InstanceSettings,
        devices: &[ImageDevice],
        client_token: &str,
        tags: &Tags,
    ) -> CloudResult<String> {
        retrying("run_instance", || self.0.run_instance(image_id, settings, devices, client_token, tags)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snapnest_core::cloud::CloudError;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn throttled_calls_are_retried_until_they_succeed() {
        let calls = AtomicU32::new(0);
        let out = retrying("test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(CloudError::Throttled("slow down".into()))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(out, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried_and_retries_are_bounded() {
        let calls = AtomicU32::new(0);
        let out: CloudResult<()> = retrying("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CloudError::NotFound("vol-1".into()))
        })
        .await;
        assert_eq!(out, Err(CloudError::NotFound("vol-1".into())));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let out: CloudResult<()> = retrying("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CloudError::Transient("500".into()))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), MAX_ATTEMPTS);
    }
}
