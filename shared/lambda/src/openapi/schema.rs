//! The shapes of the API's request and answer bodies, for the OpenAPI document.
//!
//! snapnest-core reads and writes these bodies (its request and record types) and stays
//! free of any documentation dependency, so the shapes are described here, next to the
//! routes. `tests/tests/openapi.rs` ties each one to core's serde: a request schema has
//! exactly the fields core accepts, and every example of an answer reads as core's type and
//! is written back by it unchanged, so a field added to or dropped from either side fails.

// Fields exist to be described, never read.
#![allow(dead_code)]

use std::borrow::Cow;

use serde::Deserialize;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// A named string or integer schema: `$name` in `components.schemas`.
macro_rules! named_schema {
    ($(#[doc = $doc:literal])* $name:ident($inner:ty) => $build:expr) => {
        $(#[doc = $doc])*
        #[derive(Deserialize)]
        pub struct $name($inner);

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let description = [$($doc.trim()),*].join(" ");
                let builder: ObjectBuilder = $build;
                builder.description(Some(description)).into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

named_schema! {
    /// 1 to 128 letters, digits, `-`, `_` or `.` (400 `InvalidIdentifier` otherwise).
    Identifier(String) => ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[A-Za-z0-9._-]{1,128}$"))
}

named_schema! {
    /// An AWS region name (400 `InvalidRegion` otherwise).
    Region(String) => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[a-z]{2}(-gov)?-[a-z]+-[0-9]{1,2}$"))
        .examples(["us-west-2"])
}

named_schema! {
    /// RFC 3339, UTC.
    Timestamp(String) => ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .examples(["2026-11-01T02:00:00Z"])
}

named_schema! {
    /// Days, 1 to 65,536.
    RetentionDays(u32) => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(snapnest_core::validate::MAX_RETENTION_DAYS))
}

/// Of a backup point, restore, replication or job. Derived from the items: all pending →
/// `Pending`; any pending or running → `Running`; all finished and any cancelled →
/// `Cancelled`; failures → `PartiallyFailed` (some succeeded) or `Failed`; else `Succeeded`.
/// `Expired`: a point whose retention ran out (its snapshots are deleted).
#[derive(ToSchema)]
pub enum JobStatus {
    Pending,
    Running,
    Succeeded,
    PartiallyFailed,
    Failed,
    Cancelled,
    Expired,
    /// An in-place restore putting the service instance back as it was before it.
    RollingBack,
    /// An in-place restore that ended with the service instance as it was before it.
    RolledBack,
}

/// Of one volume or database of a backup, copy or restore.
#[derive(ToSchema)]
pub enum ItemStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Put back as it was before the restore.
    RolledBack,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ResourceKind {
    Volume,
    Database,
}

/// Why the backup was taken (`safety_backup`, by an in-place restore).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Scheduled,
    SafetyBackup,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    InPlace,
    Clone,
    DisasterRecovery,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RestorePhase {
    SafetyBackup,
    StoppingInstances,
    Restoring,
    /// In place: every resource swapped; what was replaced is being tagged as kept.
    Committing,
    StartingInstances,
    RollingBack,
    Done,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RestoreStep {
    NotStarted,
    Creating,
    DetachingOld,
    AttachingNew,
    RenamingOld,
    RenamingNew,
    Done,
    RollingBack,
    RolledBack,
}

/// In place, on a failure: put everything back (default) or only what failed.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(rename_all = "snake_case")]
pub enum OnFailure {
    Rollback,
    Keep,
}

/// What became of a volume or database an in-place restore replaced.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ReplacedState {
    /// Tagged `snapnest:replaced-by`, kept until `kept_until`.
    Kept,
    /// Deleted by expire-retention after `kept_until`.
    Deleted,
    /// In service again after a roll-back.
    Restored,
    /// No longer tagged as replaced by this restore: left alone.
    Released,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RollbackReason {
    Failure,
    Deadline,
    Cancel,
    Request,
}

/// Why and since when an in-place restore is (or was) rolled back.
#[derive(ToSchema)]
pub struct Rollback {
    reason: RollbackReason,
    cause: String,
    started_at: Timestamp,
    /// Resources the roll-back could not put back (each item's error says why).
    not_put_back: Vec<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum PolicyState {
    Active,
    Suspended,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum JobKind {
    Backup,
    Restore,
    Replication,
    Expiry,
}

/// Body of `POST /service-instances/{id}/backups`; every field is optional.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Makes the request idempotent; a retry answers the first request's record.
    client_token: Option<Identifier>,
    /// Only these EC2 instances (default every instance of the service instance); at most 99.
    #[schema(max_items = 99, pattern = "^i-[A-Za-z0-9]{1,64}$")]
    instance_ids: Option<Vec<String>>,
    /// Only these attached volumes (default all, "Protect All Disks").
    #[schema(pattern = "^vol-[A-Za-z0-9]{1,64}$")]
    volume_ids: Option<Vec<String>>,
    /// Days to keep the point (default the configured retention); not with `never_expire`.
    retention_days: Option<RetentionDays>,
    /// Keep the point until its retention is changed; not with `retention_days`.
    never_expire: Option<bool>,
    /// Copy the point to this region (not the service instance's own).
    destination_region: Option<Region>,
    /// Days to keep the copies (default the point's retention); needs `destination_region`.
    destination_retention_days: Option<RetentionDays>,
}

/// Body of `POST /backups/{backup_id}/restores`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    mode: RestoreMode,
    /// In place only, take a backup of the current state first.
    #[schema(default = true)]
    safety_backup: Option<bool>,
    /// Where to restore: the point's own region for `in_place` and `clone`, the replication
    /// region for `disaster_recovery` (the default in each case).
    region: Option<Region>,
    /// In place only: restore a `PartiallyFailed` point, leaving the disks and databases it
    /// has no snapshot of as they are now (409 `BackupIncomplete` without it).
    #[schema(default = false)]
    allow_partial: Option<bool>,
    /// In place only: on a failure, a passed deadline or a cancel after the instances were
    /// stopped, put everything back (`rollback`) or only what failed (`keep`).
    #[schema(default = "rollback")]
    on_failure: Option<OnFailure>,
    /// Answer the plan (200) and change nothing.
    #[schema(default = false)]
    dry_run: Option<bool>,
    /// Only these volumes or databases of the point (default: all); each needs a snapshot in
    /// the point (409 `BackupIncomplete`), an id not in it is a 400 `InvalidResourceId`.
    #[schema(min_items = 1)]
    resource_ids: Option<Vec<Identifier>>,
    /// Makes the request idempotent; a retry answers the first request's record.
    client_token: Option<Identifier>,
    /// Clone and disaster recovery: launch the point's instances again (each from an image
    /// of its root and data snapshots, with its type, subnet, security groups, profile and
    /// key pair) or make loose volumes. Default `instances` when every selected instance
    /// can be launched (its root volume selected, not Windows), else `volumes`.
    target: Option<CloneTarget>,
    /// Launched instances: their type (default the backed-up one's; disaster recovery:
    /// required, 400 `MissingParameter`).
    #[schema(example = "m7g.large")]
    instance_type: Option<String>,
    /// Launched instances: their subnet (default the backed-up one's; disaster recovery:
    /// required, in the destination region).
    #[schema(pattern = "^subnet-[0-9a-zA-Z]+$")]
    subnet_id: Option<String>,
    /// Launched instances: their security groups (default the backed-up one's; disaster
    /// recovery: required).
    #[schema(min_items = 1)]
    security_group_ids: Option<Vec<String>>,
    /// Launched instances: their key pair (default the backed-up one's in a clone, none in
    /// another region).
    key_name: Option<String>,
    /// `target: volumes`: the zone of the new volumes (default the backed-up ones'; disaster
    /// recovery: required, a zone of the destination region).
    availability_zone: Option<String>,
    /// Databases: their DB subnet group (default the backed-up one's; disaster recovery:
    /// required, in the destination region).
    db_subnet_group: Option<Identifier>,
    /// Databases: their VPC security groups (default the backed-up ones'; in another region
    /// the subnet group's VPC default).
    #[schema(min_items = 1)]
    db_security_group_ids: Option<Vec<String>>,
}

/// Body of `PATCH /backups/{backup_id}/retention`; exactly one of the three.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1, max_properties = 1)]
pub struct RetentionRequest {
    /// Days to add to the current expiry.
    extend_days: Option<RetentionDays>,
    /// A new expiry, in the future and not before the current one.
    expires_at: Option<Timestamp>,
    /// Keep the point until its retention is changed again (only `true`).
    never_expire: Option<bool>,
}

/// Body of `POST /policies` and `PUT /policies/{id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    /// Run every N hours; exactly one of `interval_hours` and `interval_days`.
    #[schema(minimum = 1, maximum = 8760)]
    interval_hours: Option<u32>,
    /// Run every N days; exactly one of `interval_hours` and `interval_days`.
    #[schema(minimum = 1, maximum = 365)]
    interval_days: Option<u32>,
    /// The first slot; later slots follow every interval (default now).
    start_time: Option<Timestamp>,
    /// Days to keep each point.
    retention_days: RetentionDays,
    /// Refused (400 `PermanentRetention`) when true; instance backups need a retention.
    never_expire: Option<bool>,
    /// Copy each point to `destination_region`, or to the configured default region when
    /// none is given (400 `NoDestinationRegion` when there is none).
    replicate: Option<bool>,
    destination_region: Option<Region>,
    /// Days to keep the copies (default the points' retention).
    destination_retention_days: Option<RetentionDays>,
    /// `POST` only: service instances to attach at once.
    targets: Option<Vec<Identifier>>,
    /// "Protect All Disks" off: only these volumes of the targets' instances (a disk
    /// attached later is not included; one detached is listed in the point's `skipped`).
    /// Default: every disk.
    #[schema(min_items = 1)]
    volume_ids: Option<Vec<String>>,
}

/// Body of `POST /policies/{id}/targets`; at least one id in all.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetsRequest {
    #[serde(default)]
    attach: Vec<Identifier>,
    #[serde(default)]
    detach: Vec<Identifier>,
}

/// Body of `POST /jobs/{job_id}/cancel`; may be empty.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Keep the snapshots (or copies) the job already made.
    #[serde(default)]
    keep_snapshots: bool,
}

// The answers: every field is always written (an absent value as null), so every property
// is required.

/// One volume or database of a backup point.
#[derive(ToSchema)]
pub struct BackupItem {
    /// Volume id or DB instance identifier.
    resource_id: String,
    kind: ResourceKind,
    /// The EC2 instance the volume was attached to.
    #[schema(required = true)]
    instance_id: Option<String>,
    /// The device the volume was attached at (`/dev/xvda`…).
    #[schema(required = true)]
    device: Option<String>,
    #[schema(required = true)]
    availability_zone: Option<String>,
    #[schema(required = true)]
    snapshot_id: Option<String>,
    /// Snapshotted in one crash-consistent group with the instance's other volumes.
    consistent_group: bool,
    status: ItemStatus,
    #[schema(maximum = 100)]
    progress: u8,
    size_bytes: u64,
    #[schema(required = true)]
    error: Option<String>,
    /// The snapshot is in use elsewhere; snapnest no longer manages its lifecycle.
    released: bool,
    /// A volume's configuration when it was backed up.
    #[schema(required = true)]
    volume_settings: Option<VolumeSettings>,
    /// A database's configuration when it was backed up.
    #[schema(required = true)]
    database_settings: Option<DatabaseSettings>,
    /// On the item of an instance's root volume: the instance's configuration, to launch it
    /// again (clone, disaster recovery).
    #[schema(required = true)]
    instance_settings: Option<InstanceSettings>,
    /// A volume's snapshot: the bytes it stores beyond the snapshot before it in its volume's
    /// chain (EBS `ListChangedBlocks`; all its data for the first), measured by
    /// expire-retention's daily look; null until then.
    #[schema(required = true)]
    stored_bytes: Option<u64>,
}

/// The copy of one snapshot in the destination region.
#[derive(ToSchema)]
pub struct ReplicaItem {
    resource_id: String,
    kind: ResourceKind,
    source_snapshot_id: String,
    #[schema(required = true)]
    replica_snapshot_id: Option<String>,
    status: ItemStatus,
    #[schema(maximum = 100)]
    progress: u8,
    #[schema(required = true)]
    error: Option<String>,
    /// Copy attempts that failed on a transient error.
    attempts: u32,
    /// A database's copy: the destination's option group it was made with
    /// (`SNAPNEST_REPLICA_OPTION_GROUPS`; null: the engine's default there).
    #[schema(required = true)]
    option_group: Option<String>,
}

/// The copy of a backup point in another region.
#[derive(ToSchema)]
pub struct Replication {
    region: String,
    status: JobStatus,
    /// When the copies expire; null = never.
    #[schema(required = true)]
    expires_at: Option<Timestamp>,
    items: Vec<ReplicaItem>,
    /// The replicate run copying now.
    #[schema(required = true)]
    lease: Option<Lease>,
}

/// The right of one run to act on a lifecycle until `until` (a run that dies keeps it until
/// it lapses, then the next run takes over).
#[derive(ToSchema)]
pub struct Lease {
    holder: String,
    until: Timestamp,
}

/// What the backup was asked to cover (empty lists = everything).
#[derive(ToSchema)]
pub struct Selection {
    instance_ids: Vec<String>,
    volume_ids: Vec<String>,
}

/// A backup point.
#[derive(ToSchema)]
pub struct BackupRecord {
    #[schema(example = "bk-3f9c2a7d41e84b0c9a15")]
    backup_id: String,
    service_instance_id: String,
    /// The region of the resources and the snapshots.
    region: String,
    status: JobStatus,
    trigger: Trigger,
    #[schema(required = true)]
    policy_id: Option<String>,
    started_at: Timestamp,
    #[schema(required = true)]
    finished_at: Option<Timestamp>,
    /// Null = never expires.
    #[schema(required = true)]
    expires_at: Option<Timestamp>,
    /// Bytes of the succeeded snapshots, once the point finished.
    snapshot_bytes: u64,
    items: Vec<BackupItem>,
    /// Resources of the service instance the point does not hold, and why: a member of a DB
    /// cluster (Aurora, Multi-AZ DB cluster), or a disk its policy selected that is no longer
    /// attached.
    skipped: Vec<SkippedResource>,
    #[schema(required = true)]
    replication: Option<Replication>,
    /// A snapshot was deleted outside snapnest; the point cannot be fully restored.
    damaged: bool,
    /// Cancelled without keeping its snapshots, and not all are deleted yet.
    cleanup_pending: bool,
    /// When expire-retention began deleting the point's snapshots; from then on its
    /// retention cannot change (409 `BackupExpiring`).
    #[schema(required = true)]
    expiring_since: Option<Timestamp>,
    /// Restores reading the point's snapshots now: it does not expire until they end.
    restores_running: Vec<String>,
    /// The expire-retention run deleting the point's snapshots now.
    #[schema(required = true)]
    expiry_lease: Option<Lease>,
    /// Who the point belongs to: the service instance's `snapnest:owner` tags when it was taken.
    owners: Vec<String>,
    /// When expire-retention last found every snapshot and copy of the point still there (it
    /// looks daily while the point can be restored; one deleted outside snapnest makes the
    /// point `damaged`, a copy's item `Failed`).
    #[schema(required = true)]
    verified_at: Option<Timestamp>,
    /// Why the whole point failed when no item could say.
    #[schema(required = true)]
    error: Option<String>,
    selection: Selection,
    #[schema(required = true)]
    client_token: Option<String>,
    /// Set while the invocation that started the backup is still issuing snapshots.
    #[schema(required = true)]
    start_lease_until: Option<Timestamp>,
    /// The record's version; every change increments it.
    #[schema(minimum = 1)]
    version: u64,
    /// Who asked for it: the IAM principal or the JWT subject of the request (`snapnest` for
    /// what the scheduled functions start).
    #[schema(required = true)]
    requested_by: Option<String>,
    /// What was asked of it since, by whom and when.
    changes: Vec<Change>,
    /// What a person reads first: counts by status, duration, bytes, the cause, what to do next.
    summary: Summary,
}

/// One volume or database of a restore.
#[derive(ToSchema)]
pub struct RestoreItem {
    resource_id: String,
    kind: ResourceKind,
    #[schema(required = true)]
    snapshot_id: Option<String>,
    /// The volume or DB id holding the restored data (in place, the id now in service).
    #[schema(required = true)]
    new_resource_id: Option<String>,
    status: ItemStatus,
    #[schema(required = true)]
    error: Option<String>,
    #[schema(required = true)]
    instance_id: Option<String>,
    #[schema(required = true)]
    device: Option<String>,
    #[schema(required = true)]
    availability_zone: Option<String>,
    /// In place: the volume found at the device when it was swapped, or the id the original
    /// database is kept under.
    #[schema(required = true)]
    replaced_resource_id: Option<String>,
    /// What became of the replaced resource (null until the restore is committed).
    #[schema(required = true)]
    replaced_state: Option<ReplacedState>,
    /// The replaced resource carried the service-instance tag, which the swap took off.
    replaced_untagged: bool,
    /// Size of the snapshot the item is restored from.
    size_bytes: u64,
    /// How the restored volume is made (the backed-up volume's configuration).
    #[schema(required = true)]
    volume_settings: Option<VolumeSettings>,
    /// How the restored database is made (in another region, without the source's network and groups).
    #[schema(required = true)]
    database_settings: Option<DatabaseSettings>,
    step: RestoreStep,
}

/// A restore.
#[derive(ToSchema)]
pub struct RestoreRecord {
    #[schema(example = "rs-8d21f0c7b34a4e6f9102")]
    restore_id: String,
    backup_id: String,
    service_instance_id: String,
    mode: RestoreMode,
    /// Where the restored resources are created.
    region: String,
    status: JobStatus,
    phase: RestorePhase,
    /// When the current phase began; its deadline counts from here.
    #[schema(required = true)]
    phase_started_at: Option<Timestamp>,
    on_failure: OnFailure,
    safety_backup: bool,
    #[schema(required = true)]
    safety_backup_id: Option<String>,
    started_at: Timestamp,
    #[schema(required = true)]
    finished_at: Option<Timestamp>,
    items: Vec<RestoreItem>,
    /// Clone and disaster recovery: the instances launched from the point (their volumes'
    /// items follow them).
    instances: Vec<RestoredInstance>,
    /// Instances this restore stopped and starts again.
    stopped_instance_ids: Vec<String>,
    /// Something of the service instance was changed (an instance stopped, a device or a
    /// database id swapped): an end after this is a roll-back.
    service_changed: bool,
    #[schema(required = true)]
    rollback: Option<Rollback>,
    /// In place: until when the replaced volumes and databases are kept for a roll-back.
    #[schema(required = true)]
    kept_until: Option<Timestamp>,
    /// Who the restore belongs to: its backup point's owners.
    owners: Vec<String>,
    /// The run advancing the restore now.
    #[schema(required = true)]
    lease: Option<Lease>,
    #[schema(required = true)]
    error: Option<String>,
    #[schema(required = true)]
    client_token: Option<String>,
    #[schema(minimum = 1)]
    version: u64,
    /// Who asked for it: the IAM principal or the JWT subject of the request (`snapnest` for
    /// what the scheduled functions start).
    #[schema(required = true)]
    requested_by: Option<String>,
    /// What was asked of it since, by whom and when.
    changes: Vec<Change>,
    /// What a person reads first: counts by status, duration, bytes, the cause, what to do next.
    summary: Summary,
}

/// How a volume is configured: what a volume restored from its snapshot gets again.
#[derive(ToSchema)]
pub struct VolumeSettings {
    /// `gp3`, `io2`…; null: the cloud's default (gp2).
    #[schema(required = true)]
    volume_type: Option<String>,
    #[schema(required = true)]
    iops: Option<u32>,
    /// MiB/s (gp3).
    #[schema(required = true)]
    throughput: Option<u32>,
    encrypted: bool,
    #[schema(required = true)]
    kms_key_id: Option<String>,
    multi_attach: bool,
    /// Deleted with its instance.
    delete_on_termination: bool,
}

/// How an instance is configured and booted: what an instance launched from its backup
/// gets again.
#[derive(ToSchema)]
pub struct InstanceSettings {
    #[schema(required = true, example = "m7g.large")]
    instance_type: Option<String>,
    #[schema(required = true)]
    subnet_id: Option<String>,
    security_group_ids: Vec<String>,
    /// The instance profile's ARN.
    #[schema(required = true)]
    iam_instance_profile: Option<String>,
    #[schema(required = true)]
    key_name: Option<String>,
    #[schema(required = true)]
    architecture: Option<String>,
    /// The device it boots from.
    #[schema(required = true)]
    root_device_name: Option<String>,
    ena_support: bool,
    #[schema(required = true)]
    boot_mode: Option<String>,
    /// `windows` for Windows instances (cloned as volumes only).
    #[schema(required = true)]
    platform: Option<String>,
}

/// What a clone or a disaster recovery makes of a point's instances.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloneTarget {
    /// Each instance launched again from its volumes' snapshots (the default when every
    /// instance of the selection can be: its root volume is selected and it is not Windows).
    Instances,
    /// Loose volumes, attached to nothing.
    Volumes,
}

/// Where the launch of one instance stands.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum LaunchStep {
    NotStarted,
    /// An image is being registered from the instance's snapshots.
    RegisteringImage,
    /// The instance is being launched from the image.
    Launching,
    Done,
}

/// An instance a clone or a disaster recovery launches: an image is registered from the
/// root and data snapshots, the instance launched from it, the image deregistered again.
#[derive(ToSchema)]
pub struct RestoredInstance {
    /// The backed-up instance.
    instance_id: String,
    /// What it is launched with.
    settings: InstanceSettings,
    #[schema(required = true)]
    image_id: Option<String>,
    /// The image is deregistered.
    image_released: bool,
    /// The instance launched.
    #[schema(required = true)]
    new_instance_id: Option<String>,
    status: ItemStatus,
    #[schema(required = true)]
    error: Option<String>,
    step: LaunchStep,
}

/// An instance a clone or a disaster recovery will launch.
#[derive(ToSchema)]
pub struct PlannedInstance {
    /// The backed-up instance.
    source_instance_id: String,
    /// The volumes it is launched with, root first.
    volume_ids: Vec<String>,
    settings: InstanceSettings,
}

/// How a DB instance is configured: what a database restored from its snapshot gets again.
#[derive(ToSchema)]
pub struct DatabaseSettings {
    #[schema(required = true)]
    instance_class: Option<String>,
    #[schema(required = true)]
    subnet_group: Option<String>,
    security_group_ids: Vec<String>,
    #[schema(required = true)]
    parameter_group: Option<String>,
    #[schema(required = true)]
    option_group: Option<String>,
    multi_az: bool,
    publicly_accessible: bool,
    deletion_protection: bool,
    #[schema(required = true)]
    storage_type: Option<String>,
    #[schema(required = true)]
    port: Option<u16>,
}

/// A volume a restore will create.
#[derive(ToSchema)]
pub struct PlannedVolume {
    /// The volume the backup was taken of.
    source_volume_id: String,
    snapshot_id: String,
    size_bytes: u64,
    #[schema(required = true)]
    availability_zone: Option<String>,
    /// In place: the instance and device the new volume goes to.
    #[schema(required = true)]
    instance_id: Option<String>,
    #[schema(required = true)]
    device: Option<String>,
    /// In place: the volume at that device now, detached and kept (null: the device is empty).
    #[schema(required = true)]
    replaces_volume_id: Option<String>,
    /// How the new volume is made, and whether it goes with its instance.
    #[schema(required = true)]
    settings: Option<VolumeSettings>,
}

/// A database a restore will create.
#[derive(ToSchema)]
pub struct PlannedDatabase {
    db_id: String,
    snapshot_id: String,
    /// The id the snapshot is restored under (in place: until the swap).
    restored_as: String,
    /// In place: the id the current database is renamed to and kept under.
    #[schema(required = true)]
    current_renamed_to: Option<String>,
    /// The id the restored database ends with.
    final_id: String,
    /// Class, network, groups, Multi-AZ…: the backed-up database's configuration.
    #[schema(required = true)]
    settings: Option<DatabaseSettings>,
}

/// A resource of the point a restore leaves as it is.
#[derive(ToSchema)]
pub struct SkippedResource {
    resource_id: String,
    kind: ResourceKind,
    reason: String,
}

/// What a restore would do now: the answer to a dry run.
#[derive(ToSchema)]
pub struct RestorePlan {
    /// The id a restore started now from this plan gets (the temporary and kept database
    /// names carry its last eight characters).
    restore_id: String,
    backup_id: String,
    service_instance_id: String,
    mode: RestoreMode,
    region: String,
    safety_backup: bool,
    on_failure: OnFailure,
    /// In place: the instances that run now and will be stopped, then started again.
    stop_instances: Vec<String>,
    volumes: Vec<PlannedVolume>,
    databases: Vec<PlannedDatabase>,
    /// Clone and disaster recovery: the instances launched from the point.
    instances: Vec<PlannedInstance>,
    /// In place: replaced volumes and databases are kept at least until then.
    #[schema(required = true)]
    replaced_kept_until: Option<Timestamp>,
    skipped: Vec<SkippedResource>,
}

/// What happened to one service instance in a policy run.
#[derive(ToSchema)]
pub struct TargetOutcome {
    service_instance_id: String,
    #[schema(required = true)]
    backup_id: Option<String>,
    #[schema(required = true)]
    error: Option<String>,
}

/// What a policy run came to: every target's backup started (`Succeeded`), some
/// (`PartiallyFailed`), none — every target failed, or the policy protects none — (`Failed`),
/// or the slot not run (`Skipped`, a suspended policy).
#[derive(ToSchema)]
pub enum PolicyRunStatus {
    Succeeded,
    PartiallyFailed,
    Failed,
    Skipped,
}

/// The latest slot a policy ran (or skipped), and what the run came to.
#[derive(ToSchema)]
pub struct PolicyRun {
    slot: Timestamp,
    ran_at: Timestamp,
    status: PolicyRunStatus,
    /// Why the run did not back up every target, e.g. "no resources tagged
    /// service-instance-id=si-demo in us-east-1".
    #[schema(required = true)]
    cause: Option<String>,
    /// Why the slot did not run ("The backup plan has been suspended.").
    #[schema(required = true)]
    skipped: Option<String>,
    targets: Vec<TargetOutcome>,
}

/// A backup policy.
#[derive(ToSchema)]
pub struct Policy {
    #[schema(example = "pl-5a0e7c91d2b34f68a0c4")]
    policy_id: String,
    name: String,
    state: PolicyState,
    #[schema(required = true)]
    interval_hours: Option<u32>,
    #[schema(required = true)]
    interval_days: Option<u32>,
    start_time: Timestamp,
    retention_days: RetentionDays,
    #[schema(required = true)]
    destination_region: Option<String>,
    #[schema(required = true)]
    destination_retention_days: Option<u32>,
    targets: Vec<String>,
    /// "Protect All Disks" off: only these volumes of the targets' instances; empty: every
    /// disk, those attached later too.
    volume_ids: Vec<String>,
    /// The next slot (while suspended, the next one reported as skipped).
    next_run_at: Timestamp,
    #[schema(required = true)]
    last_run: Option<PolicyRun>,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// Who the policy belongs to: whoever created it.
    owners: Vec<String>,
    /// Who made, changed, suspended, resumed it or changed its targets, and when (the last 20).
    changes: Vec<Change>,
    #[schema(minimum = 1)]
    version: u64,
}

/// Items done of items in all.
#[derive(ToSchema)]
pub struct Progress {
    done: usize,
    total: usize,
}

/// One line of the jobs list.
#[derive(ToSchema)]
pub struct Job {
    #[schema(example = "rp-3f9c2a7d41e84b0c9a15")]
    job_id: String,
    kind: JobKind,
    status: JobStatus,
    #[schema(required = true)]
    service_instance_id: Option<String>,
    #[schema(required = true)]
    backup_id: Option<String>,
    started_at: Timestamp,
    #[schema(required = true)]
    finished_at: Option<Timestamp>,
    /// Replication jobs, the destination region; restore jobs, where the restore runs.
    #[schema(required = true)]
    region: Option<String>,
    progress: Progress,
}

/// Snapshot storage of a service instance.
#[derive(ToSchema)]
pub struct Capacity {
    service_instance_id: String,
    /// Bytes the snapshots of every point that still holds them store: a volume snapshot
    /// counts the blocks changed since the one before it in its chain (EBS snapshots are
    /// incremental), once expire-retention's daily look measured it; its data until then.
    snapshot_bytes: u64,
    /// Points that still hold snapshots (Succeeded or PartiallyFailed, not expired).
    backup_points: usize,
    /// Bytes of the copies in other regions, counted the same way.
    replica_bytes: u64,
}

/// A backup point as a list shows it: what tells points apart and its summary; its
/// resources are in `GET /backups/{backup_id}`.
#[derive(ToSchema)]
pub struct BackupListing {
    #[schema(example = "bk-3f9c2a7d41e84b0c9a15")]
    backup_id: String,
    service_instance_id: String,
    region: String,
    status: JobStatus,
    trigger: Trigger,
    #[schema(required = true)]
    policy_id: Option<String>,
    started_at: Timestamp,
    #[schema(required = true)]
    finished_at: Option<Timestamp>,
    /// Null = never expires.
    #[schema(required = true)]
    expires_at: Option<Timestamp>,
    snapshot_bytes: u64,
    damaged: bool,
    /// The region it is copied to, if it is.
    #[schema(required = true)]
    replication_region: Option<String>,
    #[schema(required = true)]
    replication_status: Option<JobStatus>,
    #[schema(required = true)]
    requested_by: Option<String>,
    summary: Summary,
}

/// A page of backup points, newest first.
#[derive(ToSchema)]
pub struct BackupPage {
    items: Vec<BackupListing>,
    /// Pass as `next_token` for the next page; null on the last page.
    #[schema(required = true)]
    next_token: Option<String>,
}

/// A page of jobs, newest first.
#[derive(ToSchema)]
pub struct JobPage {
    items: Vec<Job>,
    /// Pass as `next_token` for the next page; null on the last page.
    #[schema(required = true)]
    next_token: Option<String>,
}

/// A page of policies, newest first.
#[derive(ToSchema)]
pub struct PolicyPage {
    items: Vec<Policy>,
    /// Pass as `next_token` for the next page; null on the last page.
    #[schema(required = true)]
    next_token: Option<String>,
}

/// A record's resources by status.
#[derive(ToSchema)]
pub struct Counts {
    total: usize,
    pending: usize,
    running: usize,
    succeeded: usize,
    failed: usize,
    cancelled: usize,
    rolled_back: usize,
}

/// What a person reads first on a backup or restore record; derived from it on each read.
#[derive(ToSchema)]
pub struct Summary {
    /// One line: where the record stands.
    #[schema(example = "Partly backed up: 1 of 7 resources failed")]
    headline: String,
    resources: Counts,
    /// From its start to its end, or to now while it runs.
    duration_seconds: i64,
    /// A backup: bytes of its succeeded snapshots; a restore: of what it restores.
    bytes: u64,
    /// Why it did not fully succeed, for the whole record; null when it did (or runs).
    #[schema(required = true)]
    cause: Option<String>,
    /// The first causes of its failed resources, as `resource: cause` (the items hold all).
    causes: Vec<String>,
    /// What to do next.
    next: String,
}

/// Something asked of a record after it was made.
#[derive(ToSchema)]
pub struct Change {
    #[schema(example = "cancel")]
    what: String,
    /// The IAM principal or the JWT subject of the request.
    #[schema(example = "arn:aws:sts::123456789012:assumed-role/ops/alice")]
    by: String,
    at: Timestamp,
}
