//! The `Cloud` port: what snapnest needs from EC2, EBS and RDS, in its own vocabulary.
//!
//! One [`Cloud`] speaks to one region, as an AWS client does; a [`CloudProvider`] hands
//! out the cloud of any region (copies are made by the destination region's cloud, as
//! `CopySnapshot` is called in the destination region). Every call is one non-blocking
//! step: long operations (snapshots, copies, volume creation, DB restores) are started by
//! one call and followed with the batched `describe_*` calls, so a Lambda never waits.
//! Adapters: `snapnest_local::simulated::SimulatedCloud` and `snapnest_aws::cloud::AwsCloud`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

/// Tags to put on what snapnest creates.
pub type Tags = BTreeMap<String, String>;

/// Tag keys snapnest writes on everything it creates.
pub mod tag {
    pub const BACKUP_ID: &str = "snapnest:backup-id";
    pub const SERVICE_INSTANCE: &str = "snapnest:service-instance-id";
    pub const EXPIRES_AT: &str = "snapnest:expires-at";
    pub const SOURCE_VOLUME: &str = "snapnest:source-volume-id";
    /// On a copy in another region: the snapshot it copies. `CopySnapshot` takes no client
    /// token, so this is how a run that died after the call finds the copy it made.
    pub const COPY_OF: &str = "snapnest:copy-of";
    pub const RESTORE_ID: &str = "snapnest:restore-id";
    /// On a volume or database an in-place restore took out of service, kept for roll-back:
    /// the restore's id. Only what carries it is ever deleted as "replaced".
    pub const REPLACED_BY: &str = "snapnest:replaced-by";
    /// Until when a replaced volume or database is kept (RFC 3339).
    pub const KEPT_UNTIL: &str = "snapnest:kept-until";
    /// Every resource snapnest manages carries this; IAM conditions on destructive calls use it.
    pub const MANAGED: &str = "snapnest:managed";
    /// On a service instance's instances and databases: who may see and act on its backups
    /// and restores (an IAM principal ARN, a role name, or a JWT subject or group).
    pub const OWNER: &str = "snapnest:owner";
    /// On an instance a clone or a disaster recovery launched: the backed-up instance.
    pub const CLONE_OF: &str = "snapnest:clone-of";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

/// A volume at a device of an instance: attached, or being attached or detached (the
/// device is taken until a detach ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedVolume {
    pub volume_id: String,
    pub device: String,
    pub size_gib: u64,
    pub settings: VolumeSettings,
}

/// How a volume is configured: what a volume restored from its snapshot gets again (a
/// `CreateVolume` without them is gp2 with its defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeSettings {
    /// `gp3`, `io2`…; none: the cloud's default.
    pub volume_type: Option<String>,
    pub iops: Option<u32>,
    /// MiB/s (gp3).
    pub throughput: Option<u32>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub multi_attach: bool,
    /// Deleted with its instance (set on the attachment, not the volume).
    pub delete_on_termination: bool,
}

/// How a DB instance is configured: what a database restored from its snapshot gets again
/// (`RestoreDBInstanceFromDBSnapshot` without them lands in the default VPC and groups,
/// Single-AZ, without deletion protection).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseSettings {
    pub instance_class: Option<String>,
    pub subnet_group: Option<String>,
    pub security_group_ids: Vec<String>,
    pub parameter_group: Option<String>,
    pub option_group: Option<String>,
    pub multi_az: bool,
    pub publicly_accessible: bool,
    pub deletion_protection: bool,
    pub storage_type: Option<String>,
    pub port: Option<u16>,
}

impl DatabaseSettings {
    /// What still applies in another region: the network, parameter and option groups are
    /// the source region's and do not exist there.
    pub fn elsewhere(&self) -> DatabaseSettings {
        DatabaseSettings {
            subnet_group: None,
            security_group_ids: Vec::new(),
            parameter_group: None,
            option_group: None,
            ..self.clone()
        }
    }
}

/// How an instance is configured and booted: what an instance launched from its backup
/// (clone, disaster recovery) gets again.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceSettings {
    /// `m7g.large`…
    pub instance_type: Option<String>,
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    /// The instance profile's ARN (IAM is global: it holds in every region).
    pub iam_instance_profile: Option<String>,
    pub key_name: Option<String>,
    /// `x86_64`, `arm64`…: the image registered from the root snapshot must say it.
    pub architecture: Option<String>,
    /// The device the instance boots from (`/dev/xvda`).
    pub root_device_name: Option<String>,
    pub ena_support: bool,
    /// `uefi`, `legacy-bios`; none: the architecture's default.
    pub boot_mode: Option<String>,
    /// `windows` for Windows instances: an image registered from their snapshots does not
    /// boot (its licence is not carried over), so they are cloned as volumes only.
    pub platform: Option<String>,
}

impl InstanceSettings {
    /// What still applies in another region: the subnet, security groups and key pair are
    /// the source region's and do not exist there.
    pub fn elsewhere(&self) -> InstanceSettings {
        InstanceSettings { subnet_id: None, security_group_ids: Vec::new(), key_name: None, ..self.clone() }
    }

    pub fn is_windows(&self) -> bool {
        self.platform.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("windows"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub instance_id: String,
    pub state: InstanceState,
    pub availability_zone: String,
    pub volumes: Vec<AttachedVolume>,
    pub settings: InstanceSettings,
}

/// One device of an image registered from a backup point: the snapshot its volume is made
/// from, configured as the backed-up volume was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDevice {
    pub device: String,
    pub snapshot_id: String,
    pub settings: VolumeSettings,
}

/// An image (AMI) to register from a point's snapshots, to launch one instance from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Unique in the account and region: a second registration under it is refused, which
    /// makes the call idempotent (`RegisterImage` takes no client token).
    pub name: String,
    pub architecture: Option<String>,
    pub root_device_name: String,
    pub ena_support: bool,
    pub boot_mode: Option<String>,
    pub devices: Vec<ImageDevice>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageState {
    Pending,
    Available,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStatus {
    pub image_id: String,
    pub state: ImageState,
    /// Why it failed, as the cloud says.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub db_id: String,
    pub engine: String,
    pub status: String,
    pub availability_zone: Option<String>,
    pub settings: DatabaseSettings,
    /// The DB cluster it is a member of (Aurora, Multi-AZ DB cluster): RDS snapshots such a
    /// database only as its cluster (`CreateDBClusterSnapshot`).
    pub cluster_id: Option<String>,
}

/// Every resource of a service instance, found by tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub instances: Vec<Instance>,
    pub databases: Vec<Database>,
    /// The values of the `snapnest:owner` tags on its instances and databases.
    pub owners: std::collections::BTreeSet<String>,
}

/// Which of an instance's volumes go into its consistent group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSelection {
    /// "Protect All Disks": whatever is attached when the snapshot is taken.
    All,
    /// Only these volumes; the instance's others are excluded.
    Only(Vec<String>),
}

/// A snapshot just started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedSnapshot {
    pub snapshot_id: String,
    pub volume_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotState {
    Pending,
    Completed,
    Error(String),
}

/// What the cloud reports of one snapshot (EBS or RDS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub snapshot_id: String,
    pub state: SnapshotState,
    /// 0–100.
    pub progress: u8,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeState {
    Creating,
    Available,
    InUse,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStatus {
    pub volume_id: String,
    pub state: VolumeState,
    /// (instance id, device) from the start of an attach until a detach has ended.
    pub attachment: Option<(String, String)>,
    /// An attach or a detach is in progress: asking again would be refused.
    pub busy: bool,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseStatus {
    pub db_id: String,
    /// RDS's own status words: `creating`, `available`, `renaming`, …
    pub status: String,
    pub tags: Tags,
    /// It cannot be deleted until this is turned off.
    pub deletion_protection: bool,
}

impl DatabaseStatus {
    pub fn is_available(&self) -> bool {
        self.status == "available"
    }
}

/// How a delete ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// Something uses the snapshot (an AMI, a volume being created): it is released, not deleted.
    InUse(String),
    /// It was already gone.
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// Rate limited; retry with backoff.
    #[error("throttled: {0}")]
    Throttled(String),
    /// A transient failure (5xx, timeout); retry with backoff.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The EC2 instance was terminated ("This instance has been released.").
    #[error("This instance has been released.")]
    InstanceReleased(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A multi-volume consistent group is not possible for this instance.
    #[error("consistent group not supported: {0}")]
    GroupUnsupported(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The resource refuses the call in its current state, for now (a database backing up
    /// or being modified): the same call later can succeed.
    #[error("busy: {0}")]
    Busy(String),
    /// The cloud refused the call; `code` is its error code.
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
}

impl CloudError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Transient(_))
    }
}

pub type CloudResult<T> = Result<T, CloudError>;

/// EC2, EBS and RDS in one region.
#[async_trait]
pub trait Cloud: Send + Sync {
    fn region(&self) -> &str;

    /// Instances (with their attached volumes) and DB instances tagged `tag_key=value`.
    /// Terminated instances are left out.
    async fn discover(&self, tag_key: &str, value: &str) -> CloudResult<Inventory>;

    /// One crash-consistent snapshot group of an instance's volumes (`CreateSnapshots`).
    async fn snapshot_instance(
        &self,
        instance_id: &str,
        volumes: &VolumeSelection,
        tags: &Tags,
    ) -> CloudResult<Vec<StartedSnapshot>>;

    /// One volume on its own (`CreateSnapshot`), where a group is not possible.
    async fn snapshot_volume(&self, volume_id: &str, tags: &Tags) -> CloudResult<StartedSnapshot>;

    /// A DB snapshot under a name snapnest chooses, so a retried call finds the first one.
    /// `Busy` while the database is not available (backing up, being modified).
    async fn snapshot_database(&self, db_id: &str, snapshot_id: &str, tags: &Tags) -> CloudResult<()>;

    /// Status of many EBS snapshots in one batched call; ids the cloud does not know are absent.
    async fn describe_snapshots(&self, snapshot_ids: &[String]) -> CloudResult<Vec<SnapshotStatus>>;

    /// Status of many DB snapshots; ids the cloud does not know are absent.
    async fn describe_db_snapshots(&self, snapshot_ids: &[String]) -> CloudResult<Vec<SnapshotStatus>>;

    /// Status of this account's EBS snapshots carrying tag `key` with any of `values` (the
    /// running snapshots of many backups at once, by their backup ids): a listing pages a
    /// thousand a call where a describe by ids takes 200.
    async fn describe_snapshots_tagged(&self, key: &str, values: &[String]) -> CloudResult<Vec<SnapshotStatus>>;

    /// EBS snapshots carrying `key=value`, as (snapshot id, source volume id): how a
    /// backup that crashed after `CreateSnapshots` finds what it already started.
    async fn find_snapshots(&self, key: &str, value: &str) -> CloudResult<Vec<StartedSnapshot>>;

    /// Bytes of the blocks that differ between two snapshots of one volume, `earlier` then
    /// `later`: the storage `later` adds to its chain (EBS direct APIs, `ListChangedBlocks`).
    async fn changed_bytes(&self, earlier: &str, later: &str) -> CloudResult<u64>;

    async fn delete_snapshot(&self, snapshot_id: &str) -> CloudResult<DeleteOutcome>;
    async fn delete_db_snapshot(&self, snapshot_id: &str) -> CloudResult<DeleteOutcome>;

    /// Replaces the snapnest tags of a snapshot (the expiry follows retention changes).
    async fn tag_snapshot(&self, snapshot_id: &str, tags: &Tags) -> CloudResult<()>;

    /// Copies an EBS snapshot from `source_region` into this region; returns the copy's id.
    /// `kms_key_id`: this region's key to encrypt the copy with (none: the source's
    /// encryption, with this region's default key). A copy refused for the account's quota of
    /// concurrent copies is `Busy`.
    async fn copy_snapshot(
        &self,
        source_region: &str,
        snapshot_id: &str,
        kms_key_id: Option<&str>,
        tags: &Tags,
    ) -> CloudResult<String>;

    /// Copies a DB snapshot from `source_region` into this region under `target_id`.
    /// `kms_key_id` applies to an encrypted source only (an unencrypted one is copied as it
    /// is); `option_group`: this region's option group for a source with a non-default one.
    async fn copy_db_snapshot(
        &self,
        source_region: &str,
        snapshot_id: &str,
        target_id: &str,
        kms_key_id: Option<&str>,
        option_group: Option<&str>,
        tags: &Tags,
    ) -> CloudResult<()>;

    /// Stops instances (one call for all). An instance that cannot be stopped (instance-store
    /// root, Spot, stop protection) refuses the whole call with the cloud's message.
    async fn stop_instances(&self, instance_ids: &[String]) -> CloudResult<()>;
    async fn start_instances(&self, instance_ids: &[String]) -> CloudResult<()>;
    /// Instances with their states and the volumes at their devices; ids the cloud does
    /// not know are absent.
    async fn describe_instances(&self, instance_ids: &[String]) -> CloudResult<Vec<Instance>>;

    /// A new volume from a snapshot in an availability zone; returns the volume id. A second
    /// call with the same `client_token` (at most 64 ASCII characters) returns the volume the
    /// first one made instead of making another.
    async fn create_volume(
        &self,
        snapshot_id: &str,
        availability_zone: &str,
        client_token: &str,
        settings: &VolumeSettings,
        tags: &Tags,
    ) -> CloudResult<String>;
    async fn describe_volumes(&self, volume_ids: &[String]) -> CloudResult<Vec<VolumeStatus>>;
    async fn detach_volume(&self, instance_id: &str, volume_id: &str) -> CloudResult<()>;
    async fn attach_volume(&self, instance_id: &str, volume_id: &str, device: &str) -> CloudResult<()>;
    /// Whether the volume at `device` is deleted with the instance (`ModifyInstanceAttribute`).
    async fn set_delete_on_termination(&self, instance_id: &str, device: &str, delete: bool) -> CloudResult<()>;
    /// Deletes a volume that is not attached.
    async fn delete_volume(&self, volume_id: &str) -> CloudResult<DeleteOutcome>;
    /// Adds (or overwrites) tags on an instance, a volume or a DB instance.
    async fn tag_resource(&self, resource_id: &str, tags: &Tags) -> CloudResult<()>;
    /// Removes tag keys from an instance, a volume or a DB instance; absent keys are fine.
    async fn untag_resource(&self, resource_id: &str, keys: &[String]) -> CloudResult<()>;

    /// A new DB instance `new_db_id` from a DB snapshot, configured as `settings` say.
    async fn restore_database(
        &self,
        snapshot_id: &str,
        new_db_id: &str,
        settings: &DatabaseSettings,
        tags: &Tags,
    ) -> CloudResult<()>;
    async fn describe_databases(&self, db_ids: &[String]) -> CloudResult<Vec<DatabaseStatus>>;
    /// Renames a DB instance (`ModifyDBInstance NewDBInstanceIdentifier`, applied immediately).
    async fn rename_database(&self, db_id: &str, new_db_id: &str) -> CloudResult<()>;
    /// Turns a DB instance's deletion protection on or off (`ModifyDBInstance`, applied
    /// immediately).
    async fn set_deletion_protection(&self, db_id: &str, protect: bool) -> CloudResult<()>;
    /// Deletes a DB instance snapnest created or replaced, without a final snapshot (the
    /// data is in a backup point, or was copied back in place).
    async fn delete_database(&self, db_id: &str) -> CloudResult<DeleteOutcome>;

    /// Registers an image from snapshots (`RegisterImage`); returns its id. Asked again under
    /// the same name, it answers the image registered first.
    async fn register_image(&self, spec: &ImageSpec, tags: &Tags) -> CloudResult<String>;
    /// The image registered under a name, if any: how a launch whose registration's answer
    /// was lost (a crash, a cancel) finds its image without registering one.
    async fn find_image(&self, name: &str) -> CloudResult<Option<ImageStatus>>;
    /// Instances (not terminated) carrying `key=value`, with their tags: how a launch whose
    /// answer was lost finds the instance it launched without launching another.
    async fn find_instances(&self, key: &str, value: &str) -> CloudResult<Vec<(String, Tags)>>;
    /// States of images; ids the cloud does not know (deregistered) are absent.
    async fn describe_images(&self, image_ids: &[String]) -> CloudResult<Vec<ImageStatus>>;
    /// Deregisters an image; its snapshots stay (they belong to the backup point).
    async fn deregister_image(&self, image_id: &str) -> CloudResult<DeleteOutcome>;
    /// Launches one instance from an image (`RunInstances`), its volumes made as `devices`
    /// say (the image's snapshots, each volume's settings and encryption key); returns its
    /// id. A second call with the same `client_token` (at most 64 ASCII characters) answers
    /// the instance the first one launched.
    async fn run_instance(
        &self,
        image_id: &str,
        settings: &InstanceSettings,
        devices: &[ImageDevice],
        client_token: &str,
        tags: &Tags,
    ) -> CloudResult<String>;
}

/// Hands out the cloud of a region.
pub trait CloudProvider: Send + Sync {
    /// The region the service instances live in.
    fn home_region(&self) -> &str;
    /// The cloud of the home region.
    fn home(&self) -> Arc<dyn Cloud>;
    /// The cloud of any region (`CloudError::Rejected` for a name the cloud does not know).
    fn region(&self, region: &str) -> CloudResult<Arc<dyn Cloud>>;
}
