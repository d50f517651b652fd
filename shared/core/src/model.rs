//! The records users read: backup points and restores, with one item per resource.
//!
//! Field names and shapes are the SPEC's HTTP API; fields the API does not show
//! (`version`, leases, the plan of an in-place restore) are `#[serde(skip_serializing…)]`
//! only where a user has no use for them. Records are plain data: the workflows in
//! [`crate::backup`], [`crate::restore`], [`crate::retention`] and [`crate::replication`] change them,
//! [`crate::records`] stores them.

use serde::{Deserialize, Serialize};

use crate::cloud::{DatabaseSettings, InstanceSettings, VolumeSettings};
use crate::ids::{BackupId, PolicyId, RestoreId};
use crate::status::{aggregate, ItemStatus, JobStatus};
use crate::store::StoredRows;

pub use crate::clock::Timestamp;

/// What a backup item protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Volume,
    Database,
}

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Scheduled,
    /// Taken by an in-place restore before it overwrites anything.
    SafetyBackup,
}

/// One volume or database of a backup point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupItem {
    /// Volume id or DB instance identifier.
    pub resource_id: String,
    pub kind: ResourceKind,
    /// The EC2 instance the volume was attached to.
    pub instance_id: Option<String>,
    /// The device name the volume was attached at (`/dev/xvda`…).
    pub device: Option<String>,
    pub availability_zone: Option<String>,
    pub snapshot_id: Option<String>,
    /// Whether the snapshot was taken in one crash-consistent group with the instance's other volumes.
    pub consistent_group: bool,
    pub status: ItemStatus,
    /// 0–100.
    pub progress: u8,
    pub size_bytes: u64,
    pub error: Option<String>,
    /// The cloud refused to delete the snapshot because something uses it: snapnest no longer
    /// manages its lifecycle (seed: "Cloud Backup no longer manages the lifecycle of the snapshot").
    #[serde(default)]
    pub released: bool,
    /// A volume's configuration when it was backed up, for a faithful restore.
    #[serde(default)]
    pub volume_settings: Option<VolumeSettings>,
    /// A database's configuration when it was backed up, for a faithful restore.
    #[serde(default)]
    pub database_settings: Option<DatabaseSettings>,
    /// On the item of an instance's root volume: the instance's configuration, to launch it
    /// again (clone, disaster recovery).
    #[serde(default)]
    pub instance_settings: Option<InstanceSettings>,
    /// A volume's snapshot: the storage it adds to its volume's chain — the blocks changed
    /// since the snapshot of the newest older point that still holds one (all its data for
    /// the first). Found by expire-retention's daily look; none until then.
    #[serde(default)]
    pub stored_bytes: Option<u64>,
}

impl BackupItem {
    pub fn new(resource_id: &str, kind: ResourceKind) -> Self {
        Self {
            resource_id: resource_id.to_owned(),
            kind,
            instance_id: None,
            device: None,
            availability_zone: None,
            snapshot_id: None,
            consistent_group: false,
            status: ItemStatus::Pending,
            progress: 0,
            size_bytes: 0,
            error: None,
            released: false,
            volume_settings: None,
            database_settings: None,
            instance_settings: None,
            stored_bytes: None,
        }
    }

    pub fn fail(&mut self, cause: impl Into<String>) {
        self.status = ItemStatus::Failed;
        self.error = Some(cause.into());
    }
}

/// A resource a backup or a restore leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedResource {
    pub resource_id: String,
    pub kind: ResourceKind,
    pub reason: String,
}

/// The copy of one snapshot in the destination region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaItem {
    pub resource_id: String,
    pub kind: ResourceKind,
    pub source_snapshot_id: String,
    pub replica_snapshot_id: Option<String>,
    pub status: ItemStatus,
    pub progress: u8,
    pub error: Option<String>,
    /// Copy attempts that failed on a transient error; retried until the limit.
    #[serde(default)]
    pub attempts: u32,
    /// A database's copy: the destination's option group it was made with (for a source
    /// with a non-default one; none: the engine's default there).
    #[serde(default)]
    pub option_group: Option<String>,
}

/// The right of one run to act on a record's lifecycle until `until`: taken with a
/// conditional save before the run's first cloud call, so of two runs at once only one
/// acts; a run that dies keeps it until it lapses, then the next run takes over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub until: Timestamp,
}

impl Lease {
    /// How long a run holds a lease: longer than a scheduled function may run (its Lambda
    /// timeout is 300 s), so a lease only lapses once its run is over.
    pub fn duration() -> chrono::Duration {
        chrono::Duration::minutes(6)
    }

    /// Another run holds it now.
    pub fn held_by_another(lease: &Option<Lease>, me: &str, now: Timestamp) -> bool {
        lease.as_ref().is_some_and(|l| l.holder != me && l.until > now)
    }

    pub fn take(me: &str, now: Timestamp) -> Option<Lease> {
        Some(Lease { holder: me.to_owned(), until: now + Self::duration() })
    }
}

/// Remote replication of a backup point ("Replication to Other Region").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    pub region: String,
    pub status: JobStatus,
    /// When the replicas expire (their own retention); null = never.
    pub expires_at: Option<Timestamp>,
    pub items: Vec<ReplicaItem>,
    /// The replicate run copying now.
    #[serde(default)]
    pub lease: Option<Lease>,
}

impl Replication {
    pub fn refresh_status(&mut self) {
        if !matches!(self.status, JobStatus::Expired | JobStatus::Cancelled) {
            self.status = aggregate(self.items.iter().map(|i| i.status));
        }
    }
}

/// What a backup was asked to cover, kept so a crashed start can be finished the same way.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Only these EC2 instances; empty = every instance of the service instance.
    #[serde(default)]
    pub instance_ids: Vec<String>,
    /// Only these volumes ("Protect All Disks" off); empty = all attached volumes.
    #[serde(default)]
    pub volume_ids: Vec<String>,
}

/// A backup point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub backup_id: BackupId,
    pub service_instance_id: String,
    /// The region the resources and the snapshots live in.
    pub region: String,
    pub status: JobStatus,
    pub trigger: Trigger,
    pub policy_id: Option<PolicyId>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Null = never expires.
    pub expires_at: Option<Timestamp>,
    pub snapshot_bytes: u64,
    pub items: Vec<BackupItem>,
    /// Resources of the service instance the point does not hold, and why (a member of a DB
    /// cluster; a disk a policy selected that is no longer attached).
    #[serde(default)]
    pub skipped: Vec<SkippedResource>,
    pub replication: Option<Replication>,
    /// A snapshot of this point was deleted behind snapnest's back: it cannot be fully restored.
    #[serde(default)]
    pub damaged: bool,
    /// Cancelled without keeping its snapshots, and not all of them are deleted yet.
    #[serde(default)]
    pub cleanup_pending: bool,
    /// When expire-retention began deleting its snapshots (written before the first delete):
    /// from then on its retention cannot change, and a snapshot found gone was deleted by
    /// snapnest itself.
    #[serde(default)]
    pub expiring_since: Option<Timestamp>,
    /// Restores reading this point's snapshots now: it is not expired until they end.
    #[serde(default)]
    pub restores_running: Vec<RestoreId>,
    /// The expire-retention run deleting this point's snapshots (or its copies) now.
    #[serde(default)]
    pub expiry_lease: Option<Lease>,
    /// Who the point belongs to: the `snapnest:owner` tags of the service instance when it
    /// was taken.
    #[serde(default)]
    pub owners: Vec<String>,
    /// When expire-retention last found every snapshot of the point (and its copies) still
    /// there; it looks again a day later, so one deleted behind snapnest's back is noticed
    /// while the point lives, not only at its expiry.
    #[serde(default)]
    pub verified_at: Option<Timestamp>,
    /// Why the whole point failed when no item could say (e.g. nothing to back up).
    pub error: Option<String>,
    /// Who asked for the point: the IAM principal or the JWT subject of the request, or
    /// `snapnest` for a policy's run and an in-place restore's safety backup.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// What was asked of it since, by whom and when (a cancel, a retention change).
    #[serde(default)]
    pub changes: Vec<Change>,
    #[serde(default)]
    pub selection: Selection,
    pub client_token: Option<String>,
    /// Until when the invocation that started this backup owns the right to issue its
    /// snapshots; after that poll-status takes over (the starter died half way).
    pub start_lease_until: Option<Timestamp>,
    /// Optimistic-concurrency version: every save must name the version it read.
    pub version: u64,
    /// The rows its items were read from.
    #[serde(skip)]
    pub stored_rows: StoredRows,
}

impl BackupRecord {
    /// Work remains for a scheduled function: snapshots to poll, or copies to make.
    pub fn needs_work(&self) -> bool {
        !self.status.is_terminal()
            || self.cleanup_pending
            || self.replication.as_ref().is_some_and(|r| !r.status.is_terminal())
    }

    /// The earliest moment something of this point is due for deletion.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        let own = (self.status != JobStatus::Expired && self.status.is_terminal()).then_some(self.expires_at).flatten();
        let replica = self
            .replication
            .as_ref()
            .filter(|r| r.status != JobStatus::Expired && r.status.is_terminal())
            .and_then(|r| r.expires_at);
        match (own, replica) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// How a restore brings the data back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    /// Swap restored volumes in at the same devices and restored databases in under the same ids.
    InPlace,
    /// New volumes and a new database id; the originals are untouched.
    Clone,
    /// A clone made in the destination region from the replicated snapshots.
    DisasterRecovery,
}

/// What a clone or a disaster recovery makes of a point's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloneTarget {
    /// Each instance launched again from its volumes' snapshots (the default when every
    /// instance of the selection can be: its root volume is selected and it is not Windows).
    Instances,
    /// Loose volumes, attached to nothing.
    Volumes,
}

/// Where the launch of one instance of a clone or a disaster recovery stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchStep {
    #[default]
    NotStarted,
    /// An image is being registered from the instance's snapshots.
    RegisteringImage,
    /// The instance is being launched from the image.
    Launching,
    Done,
}

/// An instance a clone or a disaster recovery launches from a point's snapshots: an image
/// is registered from the root and data snapshots, the instance launched from it, and the
/// image deregistered again (it would hold the point's snapshots past their expiry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoredInstance {
    /// The backed-up instance.
    pub instance_id: String,
    /// What it is launched with: the backed-up instance's configuration, with what the
    /// request names in its place.
    pub settings: InstanceSettings,
    pub image_id: Option<String>,
    /// No image of the launch is left registered: deregistered once the instance is
    /// launched or the launch ended, or never registered.
    #[serde(default)]
    pub image_released: bool,
    /// The instance launched.
    pub new_instance_id: Option<String>,
    pub status: ItemStatus,
    pub error: Option<String>,
    pub step: LaunchStep,
}

impl RestoredInstance {
    pub fn new(instance_id: &str, settings: InstanceSettings) -> Self {
        Self {
            instance_id: instance_id.to_owned(),
            settings,
            image_id: None,
            image_released: false,
            new_instance_id: None,
            status: ItemStatus::Pending,
            error: None,
            step: LaunchStep::NotStarted,
        }
    }

    /// Nothing more to do: the launch ended and no image of it is left registered (none was
    /// asked for, or it is deregistered, or none exists under its name).
    pub fn settled(&self) -> bool {
        self.status.is_terminal() && (self.step == LaunchStep::NotStarted || self.image_released)
    }
}

/// What an in-place restore does when one of its resources fails, or a phase deadline passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Put every resource back as it was before the restore (the default).
    #[default]
    Rollback,
    /// Put back only what failed; keep what was restored.
    Keep,
}

/// The phase a restore is in. Each phase is finished (as seen in the cloud) before the
/// next starts, so any poll can carry a restore on after a crash.
///
/// ```text
/// in place:  SafetyBackup ─▶ StoppingInstances ─▶ Restoring ─▶ Committing ─▶ StartingInstances ─▶ Done
///                                  │                  │                            ▲
///                                  └──── failure, deadline, cancel ──▶ RollingBack ┘
/// clone, disaster recovery:                        Restoring ─────────────────────────────────▶ Done
/// ```
/// A roll-back the user asks for after the restore ended goes StoppingInstances ─▶
/// RollingBack ─▶ StartingInstances ─▶ Done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestorePhase {
    SafetyBackup,
    StoppingInstances,
    Restoring,
    /// In place, every resource swapped: the replaced ones are tagged as kept.
    Committing,
    StartingInstances,
    RollingBack,
    Done,
}

/// Where one resource's restore stands, finer than its [`ItemStatus`]. Each step is
/// written to the record before the cloud call that starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreStep {
    NotStarted,
    /// New volume or database being created from the snapshot.
    Creating,
    /// In place: the volume at the device is being detached.
    DetachingOld,
    /// In place: the new volume is being attached at the device.
    AttachingNew,
    /// In place: the original database is being renamed out of the way.
    RenamingOld,
    /// In place: the restored database is being renamed to the original id.
    RenamingNew,
    Done,
    /// In place: being put back as it was (original re-attached or renamed back, what the
    /// restore made deleted).
    RollingBack,
    RolledBack,
}

/// What became of the volume or database an in-place restore took out of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplacedState {
    /// Tagged `snapnest:replaced-by`, without the service-instance tag; kept until `kept_until`.
    Kept,
    /// Deleted by expire-retention after `kept_until`.
    Deleted,
    /// In service again after a roll-back.
    Restored,
    /// No longer carries this restore's tag (someone took it over): left alone.
    Released,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreItem {
    pub resource_id: String,
    pub kind: ResourceKind,
    pub snapshot_id: Option<String>,
    /// The volume or DB id holding the restored data (in place: the id now in service).
    pub new_resource_id: Option<String>,
    pub status: ItemStatus,
    pub error: Option<String>,
    pub instance_id: Option<String>,
    pub device: Option<String>,
    pub availability_zone: Option<String>,
    /// In place: the volume at the device (planned, then what was found there at the swap),
    /// or the id the original database is kept under.
    pub replaced_resource_id: Option<String>,
    /// In place: what became of the replaced resource.
    #[serde(default)]
    pub replaced_state: Option<ReplacedState>,
    /// The replaced resource carried the service-instance tag, which the swap took off.
    #[serde(default)]
    pub replaced_untagged: bool,
    /// Size of the snapshot the item is restored from.
    #[serde(default)]
    pub size_bytes: u64,
    /// How the restored volume is configured (the backed-up volume's settings).
    #[serde(default)]
    pub volume_settings: Option<VolumeSettings>,
    /// How the restored database is configured (in another region, without the network
    /// and groups of the source region).
    #[serde(default)]
    pub database_settings: Option<DatabaseSettings>,
    pub step: RestoreStep,
}

impl RestoreItem {
    pub fn fail(&mut self, cause: impl Into<String>) {
        self.status = ItemStatus::Failed;
        self.error = Some(cause.into());
    }
}

/// Why an in-place restore is being (or was) rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackReason {
    /// A resource failed for good.
    Failure,
    /// A phase did not finish before its deadline.
    Deadline,
    /// The user cancelled the restore.
    Cancel,
    /// The user asked for the roll-back of a finished restore.
    Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub reason: RollbackReason,
    pub cause: String,
    pub started_at: Timestamp,
    /// Resources the roll-back could not put back (each item's error says why).
    #[serde(default)]
    pub not_put_back: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRecord {
    pub restore_id: RestoreId,
    pub backup_id: BackupId,
    pub service_instance_id: String,
    pub mode: RestoreMode,
    /// Where the restored resources are created.
    pub region: String,
    pub status: JobStatus,
    pub phase: RestorePhase,
    /// When the current phase began: its deadline counts from here.
    #[serde(default)]
    pub phase_started_at: Option<Timestamp>,
    #[serde(default)]
    pub on_failure: OnFailure,
    pub safety_backup: bool,
    pub safety_backup_id: Option<BackupId>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub items: Vec<RestoreItem>,
    /// Clone and disaster recovery: the instances launched from the point (their volumes'
    /// items follow them).
    #[serde(default)]
    pub instances: Vec<RestoredInstance>,
    /// Instances this restore stopped and must start again, whatever happens. Written
    /// before the stop call is made.
    #[serde(default)]
    pub stopped_instance_ids: Vec<String>,
    /// Something of the service instance was changed (an instance stopped, a device or a
    /// database id swapped): an end before that is a plain failure or cancel, after it a
    /// roll-back.
    #[serde(default)]
    pub service_changed: bool,
    #[serde(default)]
    pub rollback: Option<Rollback>,
    /// In place: until when the replaced volumes and databases are kept for a roll-back.
    #[serde(default)]
    pub kept_until: Option<Timestamp>,
    /// Who the restore belongs to: its backup point's owners.
    #[serde(default)]
    pub owners: Vec<String>,
    /// The run advancing the restore now.
    #[serde(default)]
    pub lease: Option<Lease>,
    pub error: Option<String>,
    pub client_token: Option<String>,
    /// Who asked for the restore: the IAM principal or the JWT subject of the request.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// What was asked of it since, by whom and when (a cancel, a roll-back).
    #[serde(default)]
    pub changes: Vec<Change>,
    pub version: u64,
    /// The rows its items were read from.
    #[serde(skip)]
    pub stored_rows: StoredRows,
}

/// Something asked of a record after it was made: what, by whom (the IAM principal or the
/// JWT subject of the request), when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub what: String,
    pub by: String,
    pub at: Timestamp,
}

impl Change {
    pub fn new(what: impl Into<String>, by: &str, at: Timestamp) -> Change {
        Change { what: what.into(), by: by.to_owned(), at }
    }
}

impl RestoreRecord {
    /// Replaced resources are still kept (a roll-back is possible, expiry has work).
    pub fn keeps_replaced(&self) -> bool {
        self.items.iter().any(|i| i.replaced_state == Some(ReplacedState::Kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn record(items: &[ItemStatus]) -> BackupRecord {
        crate::fixtures::backup_point(
            items
                .iter()
                .enumerate()
                .map(|(n, &status)| BackupItem {
                    status,
                    size_bytes: 10 << n,
                    ..BackupItem::new(&format!("vol-{n}"), ResourceKind::Volume)
                })
                .collect(),
        )
    }

    #[test]
    fn finished_point_counts_only_succeeded_bytes_and_stamps_the_end() {
        let now = Utc::now();
        let mut point = record(&[ItemStatus::Succeeded, ItemStatus::Failed, ItemStatus::Succeeded]);
        crate::backup::lifecycle::derive_status(&mut point, now).unwrap();
        assert_eq!(point.status, JobStatus::PartiallyFailed);
        assert_eq!(point.snapshot_bytes, 10 + 40);
        assert_eq!(point.finished_at, Some(now));
    }

    #[test]
    fn running_point_has_no_end_and_needs_work() {
        let mut point = record(&[ItemStatus::Succeeded, ItemStatus::Running]);
        crate::backup::lifecycle::derive_status(&mut point, Utc::now()).unwrap();
        assert_eq!(point.status, JobStatus::Running);
        assert!(point.finished_at.is_none());
        assert!(point.needs_work());
    }

    #[test]
    fn a_lease_keeps_other_runs_out_until_it_lapses() {
        // GIVEN a lease run A took now
        let now = Utc::now();
        let lease = Lease::take("run-a", now);
        // THEN run B is kept out, A is not, and after the lease's time B may take it
        assert!(Lease::held_by_another(&lease, "run-b", now));
        assert!(!Lease::held_by_another(&lease, "run-a", now));
        assert!(!Lease::held_by_another(&lease, "run-b", now + Lease::duration() + chrono::Duration::seconds(1)));
        assert!(!Lease::held_by_another(&None, "run-b", now));
    }

    #[test]
    fn next_expiry_is_the_earlier_of_point_and_replicas() {
        let now = Utc::now();
        let mut point = record(&[ItemStatus::Succeeded]);
        crate::backup::lifecycle::derive_status(&mut point, now).unwrap();
        assert_eq!(point.next_expiry(), None);
        point.expires_at = Some(now + chrono::Duration::days(7));
        assert_eq!(point.next_expiry(), point.expires_at);
        point.replication = Some(Replication {
            region: "us-west-2".into(),
            status: JobStatus::Succeeded,
            expires_at: Some(now + chrono::Duration::days(3)),
            items: vec![],
            lease: None,
        });
        assert_eq!(point.next_expiry(), Some(now + chrono::Duration::days(3)));
        point.status = JobStatus::Expired;
        point.replication.as_mut().unwrap().status = JobStatus::Expired;
        assert_eq!(point.next_expiry(), None);
    }
}
