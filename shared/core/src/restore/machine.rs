//! The restore state machine, pure: given a restore record and what the cloud reports now
//! ([`Observation`]), [`step`] moves the record on and says which cloud calls to make
//! ([`Command`]); [`command_done`] folds each call's answer back in. No store, no cloud,
//! no clock: the service observes, calls `step`, saves, acts, folds, and saves again.
//!
//! The phases are in [`RestorePhase`]. Three rules make an in-place restore safe:
//! - **Write ahead.** `step` writes the intent of every call into the record (the item's
//!   next step, the instances about to be stopped) before returning the command, and the
//!   service saves the record before it makes the call. Every call is either idempotent
//!   (`CreateVolume` with a client token, a database restored under a fixed name) or made
//!   only when the cloud shows it is still needed, so a run that dies at any point is
//!   finished by the next one, and two runs cannot both act (the second save loses).
//! - **Swap what is there now.** The volume detached is the one at the device when the
//!   swap starts, not the one the backup was taken of; databases are told apart by the
//!   restore's tag, not by their names.
//! - **Finish or roll back.** Once the service instance was changed (an instance stopped),
//!   a resource that fails for good, a phase past its [`Deadlines`] or a cancel puts every
//!   resource back ([`OnFailure::Rollback`]) or only the failed one ([`OnFailure::Keep`]):
//!   originals re-attached at their devices or renamed back, what the restore made deleted,
//!   the instances it stopped started. No device is left empty, no database id missing.

use std::collections::{BTreeSet, HashMap};

use chrono::Duration;

use crate::cloud::{
    tag, CloudError, DatabaseSettings, DatabaseStatus, ImageDevice, ImageSpec, ImageStatus, Instance, InstanceSettings,
    InstanceState, Tags, VolumeSettings, VolumeState, VolumeStatus,
};
use crate::ids::BackupId;
use crate::model::{
    OnFailure, ReplacedState, ResourceKind, RestoreItem, RestoreMode, RestorePhase, RestoreRecord, RestoreStep,
    Rollback, RollbackReason, Timestamp,
};
use crate::status::{aggregate, IllegalTransition, ItemStatus, JobStatus};

use super::launch;

/// The seeds' words for an instance that no longer exists.
pub const RELEASED: &str = "This instance has been released.";

/// RDS statuses from which a database restore does not recover.
const DATABASE_FAILED: &[&str] = &["failed", "incompatible-restore", "incompatible-parameters", "storage-full"];

/// How long each phase of an in-place restore may take. Past it, the restore is rolled back
/// (stopping, restoring) or ends saying which instances did not start (starting).
#[derive(Debug, Clone, PartialEq)]
pub struct Deadlines {
    pub stopping: Duration,
    pub restoring: Duration,
    pub starting: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            // An EBS-backed instance stops in a minute or two; a Windows shutdown or a
            // hibernation takes longer. Half an hour means the stop is stuck.
            stopping: Duration::minutes(30),
            // A volume made from a snapshot is usable within minutes (its blocks load lazily),
            // but a DB instance restored from a snapshot can take hours for a large database.
            restoring: Duration::hours(6),
            starting: Duration::minutes(30),
        }
    }
}

/// What the machine needs to know of the deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// The tag key that makes a resource part of a service instance.
    pub tag_key: String,
    /// How long replaced volumes and databases are kept for a roll-back.
    pub keep_replaced: Duration,
    pub deadlines: Deadlines,
}

/// Where the safety backup of an in-place restore stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SafetyBackup {
    /// Not asked for yet, or its record is not readable this pass.
    Unknown,
    Running,
    Succeeded,
    /// Ended otherwise (`Failed`, `Cancelled`…): the restore stops before touching anything.
    Ended(JobStatus),
}

/// What the cloud and the store report now of what the restore touches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub now: Timestamp,
    /// Instances of the restore's items, with the volumes at their devices; an id that is
    /// absent no longer exists.
    pub instances: HashMap<String, Instance>,
    /// Volumes the items name (new and replaced); absent = unknown to the cloud.
    pub volumes: HashMap<String, VolumeStatus>,
    /// Databases under the names the items use; absent = no such database.
    pub databases: HashMap<String, DatabaseStatus>,
    /// Images registered to launch instances from; absent = deregistered (or not visible yet).
    pub images: HashMap<String, ImageStatus>,
    /// Images looked up by name (a registration whose answer was lost): `None` = there is none.
    pub images_named: HashMap<String, Option<ImageStatus>>,
    /// Instances carrying the restore's tag, by the instance they clone (a launch whose
    /// answer was lost).
    pub launched: HashMap<String, String>,
    pub safety_backup: Option<SafetyBackup>,
}

impl Observation {
    fn state(&self, instance_id: &str) -> Option<InstanceState> {
        self.instances.get(instance_id).map(|i| i.state)
    }

    /// The volume at a device of an instance now.
    fn at_device(&self, instance_id: &str, device: &str) -> Option<String> {
        let instance = self.instances.get(instance_id)?;
        instance.volumes.iter().find(|v| v.device == device).map(|v| v.volume_id.clone())
    }

    /// The tags of a volume or database; `None` when the cloud does not know it.
    fn tags(&self, kind: ResourceKind, id: &str) -> Option<&Tags> {
        match kind {
            ResourceKind::Volume => self.volumes.get(id).map(|v| &v.tags),
            ResourceKind::Database => self.databases.get(id).map(|d| &d.tags),
        }
    }

    /// Whether the volume at a device goes with its instance now.
    fn deleted_with_instance(&self, instance_id: &str, device: &str) -> bool {
        self.instances
            .get(instance_id)
            .is_some_and(|i| i.volumes.iter().any(|v| v.device == device && v.settings.delete_on_termination))
    }

    fn database(&self, db_id: &str) -> Option<&str> {
        self.databases.get(db_id).map(|d| d.status.as_str())
    }

    /// A volume is settled: not being created, attached or detached.
    fn volume_settled(&self, volume_id: &str) -> bool {
        self.volumes.get(volume_id).is_some_and(|v| !v.busy && v.state != VolumeState::Creating)
    }
}

/// What [`step`] needs observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub instance_ids: Vec<String>,
    pub volume_ids: Vec<String>,
    pub database_ids: Vec<String>,
    pub image_ids: Vec<String>,
    /// Image names to look up (a registration whose answer was lost).
    pub image_names: Vec<String>,
    /// Look up the instances this restore launched (a launch whose answer was lost).
    pub launched_by: Option<String>,
    pub safety_backup: Option<BackupId>,
}

/// A cloud call the restore needs made now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start a backup of the service instance under the restore's own client token.
    TakeSafetyBackup,
    StopInstances(Vec<String>),
    StartInstances(Vec<String>),
    CreateVolume {
        item: usize,
        snapshot_id: String,
        availability_zone: String,
        client_token: String,
        settings: VolumeSettings,
        tags: Tags,
    },
    DetachVolume {
        item: usize,
        instance_id: String,
        volume_id: String,
    },
    AttachVolume {
        item: usize,
        instance_id: String,
        volume_id: String,
        device: String,
    },
    /// Makes the volume at a device go with its instance, as the backed-up one did.
    SetDeleteOnTermination {
        item: usize,
        instance_id: String,
        device: String,
    },
    /// Deletes a volume the restore made (roll-back).
    DeleteVolume {
        item: usize,
        volume_id: String,
    },
    RestoreDatabase {
        item: usize,
        snapshot_id: String,
        new_db_id: String,
        settings: DatabaseSettings,
        tags: Tags,
    },
    RenameDatabase {
        item: usize,
        from: String,
        to: String,
    },
    /// Deletes a database the restore made (roll-back).
    DeleteDatabase {
        item: usize,
        db_id: String,
    },
    /// Turns deletion protection on (the restored database, once committed, as the backed-up
    /// one had it) or off (a restored database the roll-back deletes).
    ProtectDatabase {
        item: usize,
        db_id: String,
        protect: bool,
    },
    /// Adds `add`, then removes the keys `remove`: marks a replaced resource as kept, or
    /// gives it back to the service instance on a roll-back.
    Retag {
        item: usize,
        resource_id: String,
        add: Tags,
        remove: Vec<String>,
    },
    /// Deletes a replaced volume or database whose keeping time is over (expire-retention).
    DeleteReplaced {
        item: usize,
        kind: ResourceKind,
        resource_id: String,
    },
    /// Registers the image one instance is launched from (clone, disaster recovery).
    RegisterImage {
        launch: usize,
        spec: ImageSpec,
        tags: Tags,
    },
    RunInstance {
        launch: usize,
        image_id: String,
        settings: InstanceSettings,
        devices: Vec<ImageDevice>,
        client_token: String,
        tags: Tags,
    },
    DeregisterImage {
        launch: usize,
        image_id: String,
    },
}

/// What a command answered, when it answers more than success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Done,
    /// The id of the volume the call made.
    Made(String),
    /// The safety backup the call started.
    SafetyBackup(BackupId),
}

/// The instances the items' volumes belong to, each once, in order.
pub fn instance_ids(items: &[RestoreItem]) -> Vec<String> {
    items.iter().filter_map(|i| i.instance_id.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// The names a database item uses: the id it has (and keeps in place), the temporary id
/// the snapshot is restored under, and the id the original is kept under. The suffix is
/// the restore's own, so two restores never use the same names.
pub fn database_ids(record: &RestoreRecord, original: &str) -> (String, String, String) {
    let suffix: String = {
        let tail: Vec<char> = record.restore_id.chars().rev().take(8).collect();
        tail.into_iter().rev().collect()
    };
    let restored = match record.mode {
        RestoreMode::InPlace => format!("{original}-rst{suffix}"),
        _ => format!("{original}-clone{suffix}"),
    };
    (original.to_owned(), restored, format!("{original}-old{suffix}"))
}

/// Tags on what a restore creates: snapnest's and, in place, the service instance's own tag,
/// so the next backup's discovery finds a database restored under its original id (a clone
/// is not part of the service instance).
pub fn restore_tags(record: &RestoreRecord, source: &str, tag_key: &str) -> Tags {
    let mut tags = Tags::from([
        (tag::RESTORE_ID.to_owned(), record.restore_id.to_string()),
        (tag::SERVICE_INSTANCE.to_owned(), record.service_instance_id.clone()),
        (tag::BACKUP_ID.to_owned(), record.backup_id.to_string()),
        (tag::SOURCE_VOLUME.to_owned(), source.to_owned()),
        (tag::MANAGED.to_owned(), "true".to_owned()),
    ]);
    if record.mode == RestoreMode::InPlace {
        tags.insert(tag_key.to_owned(), record.service_instance_id.clone());
    }
    tags
}

/// The `CreateVolume` client token of one item: the same on every attempt, so a call
/// retried after a crash or a lost answer finds the volume the first one made.
pub fn volume_token(record: &RestoreRecord, resource_id: &str) -> String {
    format!("{}-{resource_id}", record.restore_id).chars().take(64).collect()
}

/// What the restore needs observed: everything its items name, while it is not done.
pub fn wanted(record: &RestoreRecord) -> Wanted {
    let mut wanted = Wanted::default();
    match record.phase {
        RestorePhase::Done => return wanted,
        RestorePhase::SafetyBackup => {
            wanted.safety_backup = record.safety_backup_id.clone();
            return wanted;
        }
        _ => {}
    }
    if record.mode == RestoreMode::InPlace {
        let mut ids: BTreeSet<String> = instance_ids(&record.items).into_iter().collect();
        ids.extend(record.stopped_instance_ids.iter().cloned());
        wanted.instance_ids = ids.into_iter().collect();
    }
    for launch in &record.instances {
        wanted.instance_ids.extend(launch.new_instance_id.iter().cloned());
        wanted.image_ids.extend(launch.image_id.iter().filter(|_| !launch.image_released).cloned());
        let lost = |step| launch.step == step && !launch.image_released;
        if lost(crate::model::LaunchStep::RegisteringImage) && launch.image_id.is_none() {
            wanted.image_names.push(launch::image_name(record, &launch.instance_id));
        }
        if lost(crate::model::LaunchStep::Launching) && launch.new_instance_id.is_none() {
            wanted.launched_by = Some(record.restore_id.to_string());
        }
    }
    for item in &record.items {
        match item.kind {
            ResourceKind::Volume => wanted.volume_ids.extend(
                [item.new_resource_id.as_ref(), item.replaced_resource_id.as_ref()].into_iter().flatten().cloned(),
            ),
            ResourceKind::Database => {
                let (original, restored, old) = database_ids(record, &item.resource_id);
                wanted.database_ids.extend([original, restored, old]);
            }
        }
    }
    wanted.volume_ids.sort();
    wanted.volume_ids.dedup();
    wanted
}

/// Moves the restore on as far as `observed` allows and returns the calls to make now.
/// Phases that need no call advance at once; the service calls `step` again after the
/// calls are made, until it returns none and the phase stays.
pub fn step(record: &mut RestoreRecord, observed: &Observation, rules: &Rules) -> Vec<Command> {
    if record.stopped_instance_ids.iter().any(|id| observed.state(id).is_some_and(|s| s != InstanceState::Running)) {
        record.service_changed = true;
    }
    check_deadline(record, observed.now, rules);
    match record.phase {
        RestorePhase::SafetyBackup => safety_backup(record, observed),
        RestorePhase::StoppingInstances => stop_instances(record, observed),
        RestorePhase::Restoring => restore_items(record, observed, rules),
        RestorePhase::Committing => commit(record, observed, rules),
        RestorePhase::StartingInstances => start_instances(record, observed),
        RestorePhase::RollingBack => roll_back_items(record, observed, rules),
        RestorePhase::Done => Vec::new(),
    }
}

fn enter(record: &mut RestoreRecord, phase: RestorePhase, now: Timestamp) {
    record.phase = phase;
    record.phase_started_at = Some(now);
}

fn check_deadline(record: &mut RestoreRecord, now: Timestamp, rules: &Rules) {
    // A roll-back is not given up on; only its last phase, the start, has a deadline.
    let rolling_back = record.rollback.is_some() && record.phase != RestorePhase::StartingInstances;
    if record.mode != RestoreMode::InPlace || rolling_back {
        return;
    }
    let Some(started) = record.phase_started_at else { return };
    let limit = match record.phase {
        RestorePhase::StoppingInstances => rules.deadlines.stopping,
        RestorePhase::Restoring => rules.deadlines.restoring,
        RestorePhase::StartingInstances => rules.deadlines.starting,
        _ => return,
    };
    if now <= started + limit {
        return;
    }
    let minutes = limit.num_minutes();
    match record.phase {
        RestorePhase::StoppingInstances => start_rollback(
            record,
            RollbackReason::Deadline,
            format!("the instances did not stop within {minutes} minutes"),
            now,
        ),
        RestorePhase::Restoring => {
            let cause = format!("not restored within {minutes} minutes");
            if record.on_failure == OnFailure::Rollback {
                start_rollback(record, RollbackReason::Deadline, cause, now);
            } else {
                for n in 0..record.items.len() {
                    if !matches!(
                        record.items[n].step,
                        RestoreStep::Done | RestoreStep::RolledBack | RestoreStep::RollingBack
                    ) {
                        fail_item(record, n, cause.clone(), now);
                    }
                }
            }
        }
        _ => {
            let stopped = record.stopped_instance_ids.join(", ");
            let late = format!("not all of {stopped} started within {minutes} minutes; start them by hand");
            record.error = Some(match record.error.take() {
                Some(cause) => format!("{cause}; {late}"),
                None => late,
            });
            enter(record, RestorePhase::Done, now);
        }
    }
}

fn safety_backup(record: &mut RestoreRecord, observed: &Observation) -> Vec<Command> {
    if record.safety_backup_id.is_none() {
        return vec![Command::TakeSafetyBackup];
    }
    match observed.safety_backup.clone().unwrap_or(SafetyBackup::Unknown) {
        SafetyBackup::Succeeded => enter(record, RestorePhase::StoppingInstances, observed.now),
        SafetyBackup::Ended(status) => {
            let id = record.safety_backup_id.clone().expect("checked above");
            abort(record, format!("safety backup {id} ended {}; nothing was changed", status.as_str()), observed.now);
        }
        SafetyBackup::Running | SafetyBackup::Unknown => {}
    }
    Vec::new()
}

fn gone(state: Option<InstanceState>) -> bool {
    matches!(state, None | Some(InstanceState::Terminated | InstanceState::ShuttingDown))
}

fn stop_instances(record: &mut RestoreRecord, observed: &Observation) -> Vec<Command> {
    let now = observed.now;
    let ids = instance_ids(&record.items);
    if record.rollback.is_none() && !record.service_changed {
        if let Some(released) = ids.iter().find(|id| gone(observed.state(id))) {
            abort(record, format!("{RELEASED} ({released}); nothing was changed"), now);
            return Vec::new();
        }
    }
    // Every running instance is stopped, and written down before the call as one to start
    // again; one recorded earlier that still runs never got the call (the run died first).
    let running: Vec<String> =
        ids.iter().filter(|id| observed.state(id) == Some(InstanceState::Running)).cloned().collect();
    if !running.is_empty() {
        for id in &running {
            if !record.stopped_instance_ids.contains(id) {
                record.stopped_instance_ids.push(id.clone());
            }
        }
        return vec![Command::StopInstances(running)];
    }
    if ids.iter().all(|id| gone(observed.state(id)) || observed.state(id) == Some(InstanceState::Stopped)) {
        let next = if record.rollback.is_some() { RestorePhase::RollingBack } else { RestorePhase::Restoring };
        enter(record, next, now);
    }
    Vec::new()
}

fn start_instances(record: &mut RestoreRecord, observed: &Observation) -> Vec<Command> {
    let waiting: Vec<&String> = record
        .stopped_instance_ids
        .iter()
        .filter(|id| !gone(observed.state(id)) && observed.state(id) != Some(InstanceState::Running))
        .collect();
    if waiting.is_empty() {
        enter(record, RestorePhase::Done, observed.now);
        return Vec::new();
    }
    let to_start: Vec<String> =
        waiting.into_iter().filter(|id| observed.state(id) == Some(InstanceState::Stopped)).cloned().collect();
    if to_start.is_empty() {
        Vec::new()
    } else {
        vec![Command::StartInstances(to_start)]
    }
}

fn restore_items(record: &mut RestoreRecord, observed: &Observation, rules: &Rules) -> Vec<Command> {
    let mut commands = Vec::new();
    for n in 0..record.items.len() {
        let item = &record.items[n];
        let in_place = record.mode == RestoreMode::InPlace;
        if settled(item) || launch::is_launched(record, n) {
            continue;
        }
        commands.extend(match (item.step, item.kind, in_place) {
            (RestoreStep::RollingBack, _, _) => roll_back_item(record, n, observed, rules),
            (_, ResourceKind::Volume, true) => swap_volume(record, n, observed, rules),
            (_, ResourceKind::Database, true) => swap_database(record, n, observed, rules),
            (_, ResourceKind::Volume, false) => clone_volume(record, n, observed, rules),
            (_, ResourceKind::Database, false) => clone_database(record, n, observed, rules),
        });
        if record.phase != RestorePhase::Restoring {
            // A failure turned the restore into a roll-back: nothing more goes forward.
            return Vec::new();
        }
    }
    for l in 0..record.instances.len() {
        commands.extend(launch::step(record, l, observed));
    }
    if commands.is_empty() && record.items.iter().all(settled) && record.instances.iter().all(|l| l.settled()) {
        let restored_any = record.items.iter().any(|i| i.step == RestoreStep::Done);
        let next = match record.mode {
            RestoreMode::InPlace if restored_any => {
                record.kept_until = Some(observed.now + rules.keep_replaced);
                RestorePhase::Committing
            }
            RestoreMode::InPlace => RestorePhase::StartingInstances,
            _ => RestorePhase::Done,
        };
        enter(record, next, observed.now);
    }
    commands
}

fn finish(item: &mut RestoreItem) {
    item.step = RestoreStep::Done;
    item.status = ItemStatus::Succeeded;
}

fn begin(item: &mut RestoreItem, step: RestoreStep) {
    item.step = step;
    item.status = ItemStatus::Running;
}

/// A resource failed for good: in place, the restore rolls back (or, with
/// [`OnFailure::Keep`], this resource alone is put back); otherwise the item just fails.
fn fail_item(record: &mut RestoreRecord, n: usize, cause: String, now: Timestamp) -> Vec<Command> {
    let resource_id = record.items[n].resource_id.clone();
    record.items[n].fail(cause.clone());
    if record.mode != RestoreMode::InPlace || record.items[n].step == RestoreStep::RolledBack {
        return Vec::new();
    }
    match record.on_failure {
        OnFailure::Rollback => start_rollback(record, RollbackReason::Failure, format!("{resource_id}: {cause}"), now),
        OnFailure::Keep if record.items[n].step == RestoreStep::NotStarted => {
            record.items[n].step = RestoreStep::RolledBack
        }
        OnFailure::Keep => record.items[n].step = RestoreStep::RollingBack,
    }
    Vec::new()
}

/// An item needs nothing more in the restoring phase: done, put back, or (clone) failed.
fn settled(item: &RestoreItem) -> bool {
    item.step != RestoreStep::RollingBack
        && (item.status.is_terminal() || matches!(item.step, RestoreStep::Done | RestoreStep::RolledBack))
}

fn create_volume(record: &mut RestoreRecord, n: usize, rules: &Rules) -> Command {
    let token = volume_token(record, &record.items[n].resource_id);
    let tags = restore_tags(record, &record.items[n].resource_id, &rules.tag_key);
    let item = &record.items[n];
    Command::CreateVolume {
        item: n,
        snapshot_id: item.snapshot_id.clone().unwrap_or_default(),
        availability_zone: item.availability_zone.clone().unwrap_or_default(),
        client_token: token,
        settings: item.volume_settings.clone().unwrap_or_default(),
        tags,
    }
}

fn clone_volume(record: &mut RestoreRecord, n: usize, observed: &Observation, rules: &Rules) -> Vec<Command> {
    let Some(new_id) = record.items[n].new_resource_id.clone() else {
        begin(&mut record.items[n], RestoreStep::Creating);
        return vec![create_volume(record, n, rules)];
    };
    match observed.volumes.get(&new_id).map(|v| v.state) {
        Some(VolumeState::Available | VolumeState::InUse) => finish(&mut record.items[n]),
        Some(VolumeState::Error) => {
            let snapshot_id = record.items[n].snapshot_id.clone().unwrap_or_default();
            return fail_item(
                record,
                n,
                format!("volume {new_id} could not be created from {snapshot_id}"),
                observed.now,
            );
        }
        Some(VolumeState::Creating) | None => {}
    }
    Vec::new()
}

fn clone_database(record: &mut RestoreRecord, n: usize, observed: &Observation, rules: &Rules) -> Vec<Command> {
    let (_, restored, _) = database_ids(record, &record.items[n].resource_id);
    let tags = restore_tags(record, &record.items[n].resource_id, &rules.tag_key);
    match observed.database(&restored) {
        None => {
            begin(&mut record.items[n], RestoreStep::Creating);
            let snapshot_id = record.items[n].snapshot_id.clone().unwrap_or_default();
            let settings = record.items[n].database_settings.clone().unwrap_or_default();
            vec![Command::RestoreDatabase { item: n, snapshot_id, new_db_id: restored, settings, tags }]
        }
        Some("available") => {
            record.items[n].new_resource_id = Some(restored);
            finish(&mut record.items[n]);
            Vec::new()
        }
        Some(status) if DATABASE_FAILED.contains(&status) => {
            fail_item(record, n, format!("database {restored} could not be restored: {status}"), observed.now)
        }
        Some(_) => Vec::new(),
    }
}

/// In place, one volume: make it, then swap it in at its device for whatever is there now.
fn swap_volume(record: &mut RestoreRecord, n: usize, observed: &Observation, rules: &Rules) -> Vec<Command> {
    let now = observed.now;
    let item = &record.items[n];
    let (instance_id, device) = (item.instance_id.clone().unwrap_or_default(), item.device.clone().unwrap_or_default());
    if gone(observed.state(&instance_id)) {
        return fail_item(record, n, format!("{RELEASED} ({instance_id})"), now);
    }
    let Some(new_id) = item.new_resource_id.clone() else {
        // Not made yet, or made by a run that died before it could write the id down: the
        // client token makes the call answer the same volume.
        begin(&mut record.items[n], RestoreStep::Creating);
        return vec![create_volume(record, n, rules)];
    };
    let new_volume = observed.volumes.get(&new_id);
    let at_device = observed.at_device(&instance_id, &device);
    let attach = Command::AttachVolume {
        item: n,
        instance_id: instance_id.clone(),
        volume_id: new_id.clone(),
        device: device.clone(),
    };
    let taken =
        |other: &str| format!("{device} of {instance_id} now holds {other}, which this restore did not put there");
    match item.step {
        RestoreStep::NotStarted | RestoreStep::Creating => match new_volume.map(|v| v.state) {
            Some(VolumeState::Available) => {
                let item = &mut record.items[n];
                record.service_changed = true;
                match at_device {
                    None => {
                        item.replaced_resource_id = None;
                        item.step = RestoreStep::AttachingNew;
                        vec![attach]
                    }
                    Some(current) => {
                        item.replaced_resource_id = Some(current.clone());
                        item.step = RestoreStep::DetachingOld;
                        vec![Command::DetachVolume { item: n, instance_id, volume_id: current }]
                    }
                }
            }
            Some(VolumeState::Error) => {
                let snapshot_id = item.snapshot_id.clone().unwrap_or_default();
                fail_item(record, n, format!("volume {new_id} could not be created from {snapshot_id}"), now)
            }
            _ => Vec::new(),
        },
        RestoreStep::DetachingOld => match at_device {
            None => {
                record.items[n].step = RestoreStep::AttachingNew;
                vec![attach]
            }
            Some(current) if Some(&current) == item.replaced_resource_id.as_ref() => {
                if observed.volume_settled(&current) {
                    vec![Command::DetachVolume { item: n, instance_id, volume_id: current }]
                } else {
                    Vec::new()
                }
            }
            Some(current) if current == new_id => {
                record.items[n].step = RestoreStep::AttachingNew;
                Vec::new()
            }
            Some(other) => fail_item(record, n, taken(&other), now),
        },
        RestoreStep::AttachingNew => match at_device {
            Some(current) if current == new_id => {
                if !new_volume.is_some_and(|v| !v.busy && v.state == VolumeState::InUse) {
                    return Vec::new();
                }
                if wants_delete_on_termination(item) && !observed.deleted_with_instance(&instance_id, &device) {
                    return vec![Command::SetDeleteOnTermination { item: n, instance_id, device }];
                }
                finish(&mut record.items[n]);
                Vec::new()
            }
            None if new_volume.is_some_and(|v| !v.busy && v.attachment.is_none()) => vec![attach],
            None => Vec::new(),
            Some(other) => fail_item(record, n, taken(&other), now),
        },
        _ => Vec::new(),
    }
}

/// The backed-up volume went with its instance: so does the one restored in its place.
fn wants_delete_on_termination(item: &RestoreItem) -> bool {
    item.volume_settings.as_ref().is_some_and(|s| s.delete_on_termination)
}

/// The restore's own database: it carries the restore's tag.
fn is_ours(record: &RestoreRecord, observed: &Observation, db_id: &str) -> bool {
    observed.databases.get(db_id).is_some_and(|d| d.tags.get(tag::RESTORE_ID) == Some(&record.restore_id.to_string()))
}

/// In place, one database: restore it under a temporary id, rename the original away,
/// rename the restored one to the original id.
fn swap_database(record: &mut RestoreRecord, n: usize, observed: &Observation, rules: &Rules) -> Vec<Command> {
    let now = observed.now;
    let (original, restored, old) = database_ids(record, &record.items[n].resource_id);
    let ours = |id: &str| is_ours(record, observed, id);
    let status = |id: &str| observed.database(id);
    let restore_call = Command::RestoreDatabase {
        item: n,
        snapshot_id: record.items[n].snapshot_id.clone().unwrap_or_default(),
        new_db_id: restored.clone(),
        // Created unprotected, so a roll-back can delete it; protected once committed.
        settings: DatabaseSettings {
            deletion_protection: false,
            ..record.items[n].database_settings.clone().unwrap_or_default()
        },
        tags: restore_tags(record, &record.items[n].resource_id, &rules.tag_key),
    };
    let rename = |from: &str, to: &str| Command::RenameDatabase { item: n, from: from.to_owned(), to: to.to_owned() };
    match record.items[n].step {
        RestoreStep::NotStarted => {
            begin(&mut record.items[n], RestoreStep::Creating);
            vec![restore_call]
        }
        RestoreStep::Creating => match status(&restored) {
            // Not there: the call was never made (the run died first), or is not visible yet.
            None => vec![restore_call],
            Some("available") if !ours(&restored) => fail_item(
                record,
                n,
                format!("database id {restored} is taken by a database this restore did not make"),
                now,
            ),
            Some("available") => match status(&original) {
                None => {
                    record.service_changed = true;
                    record.items[n].replaced_resource_id = None;
                    record.items[n].step = RestoreStep::RenamingNew;
                    vec![rename(&restored, &original)]
                }
                Some("available") => {
                    record.service_changed = true;
                    record.items[n].replaced_resource_id = Some(old.clone());
                    record.items[n].step = RestoreStep::RenamingOld;
                    vec![rename(&original, &old)]
                }
                // The original is busy (a backup, a modification): the swap waits for it.
                Some(_) => Vec::new(),
            },
            Some(s) if DATABASE_FAILED.contains(&s) => {
                fail_item(record, n, format!("database {restored} could not be restored: {s}"), now)
            }
            Some(_) => Vec::new(),
        },
        RestoreStep::RenamingOld => match (status(&original), status(&old)) {
            (Some("available"), None) if !ours(&original) => vec![rename(&original, &old)],
            (None, Some("available")) if status(&restored) == Some("available") => {
                record.items[n].step = RestoreStep::RenamingNew;
                vec![rename(&restored, &original)]
            }
            _ => Vec::new(),
        },
        RestoreStep::RenamingNew => {
            if status(&original) == Some("available") && ours(&original) {
                record.items[n].new_resource_id = Some(original);
                finish(&mut record.items[n]);
                Vec::new()
            } else if status(&original).is_none() && status(&restored) == Some("available") {
                vec![rename(&restored, &original)]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// Every swapped resource is in service: what they replaced is tagged as kept (and loses the
/// service-instance tag, so backups no longer find it) before the instances start again.
fn commit(record: &mut RestoreRecord, observed: &Observation, rules: &Rules) -> Vec<Command> {
    let kept_until = record.kept_until.map(|t| t.to_rfc3339()).unwrap_or_default();
    let mut commands = Vec::new();
    for n in 0..record.items.len() {
        let item = &record.items[n];
        let Some(replaced) = item.replaced_resource_id.clone() else { continue };
        if item.step != RestoreStep::Done || item.replaced_state.is_some() {
            continue;
        }
        let tags = observed.tags(item.kind, &replaced);
        let Some(tags) = tags else {
            let item = &mut record.items[n];
            item.replaced_state = Some(ReplacedState::Released);
            item.error = Some(format!("{replaced}, which this restore replaced, no longer exists"));
            continue;
        };
        let had_service_tag = tags.contains_key(&rules.tag_key);
        let item = &mut record.items[n];
        item.replaced_untagged |= had_service_tag;
        commands.push(Command::Retag {
            item: n,
            resource_id: replaced,
            add: Tags::from([
                (tag::REPLACED_BY.to_owned(), record.restore_id.to_string()),
                (tag::KEPT_UNTIL.to_owned(), kept_until.clone()),
            ]),
            remove: vec![rules.tag_key.clone()],
        });
    }
    // A restored database is protected from deletion once committed, as the backed-up one was.
    for (n, item) in record.items.iter().enumerate() {
        let wants = item.database_settings.as_ref().is_some_and(|s| s.deletion_protection);
        let db_id = item.new_resource_id.clone().unwrap_or_default();
        let unprotected = observed.databases.get(&db_id).is_some_and(|d| !d.deletion_protection);
        if item.kind == ResourceKind::Database && item.step == RestoreStep::Done && wants && unprotected {
            commands.push(Command::ProtectDatabase { item: n, db_id, protect: true });
        }
    }
    let marked = record
        .items
        .iter()
        .all(|i| i.replaced_resource_id.is_none() || i.step != RestoreStep::Done || i.replaced_state.is_some());
    if commands.is_empty() && marked {
        enter(record, RestorePhase::StartingInstances, observed.now);
    }
    commands
}

/// Starts putting the service instance back as it was: every item that did something is
/// rolled back; one that never started is cancelled.
fn start_rollback(record: &mut RestoreRecord, reason: RollbackReason, cause: String, now: Timestamp) {
    if record.rollback.is_some() {
        return;
    }
    record.rollback = Some(Rollback { reason, cause: cause.clone(), started_at: now, not_put_back: Vec::new() });
    record.error = Some(cause);
    for item in record.items.iter_mut() {
        match item.step {
            RestoreStep::NotStarted => {
                item.step = RestoreStep::RolledBack;
                if !item.status.is_terminal() {
                    item.status = ItemStatus::Cancelled;
                }
            }
            RestoreStep::RolledBack => {}
            _ => item.step = RestoreStep::RollingBack,
        }
    }
    // Swapped devices are only put back on stopped instances: a restore whose instances may
    // run again (starting, or finished) stops them first.
    let next = match record.phase {
        RestorePhase::StartingInstances | RestorePhase::Done => {
            if record.phase == RestorePhase::Done {
                record.stopped_instance_ids.clear();
                record.finished_at = None;
            }
            RestorePhase::StoppingInstances
        }
        _ => RestorePhase::RollingBack,
    };
    enter(record, next, now);
}

fn roll_back_items(record: &mut RestoreRecord, observed: &Observation, rules: &Rules) -> Vec<Command> {
    let mut commands = Vec::new();
    for n in 0..record.items.len() {
        if record.items[n].step == RestoreStep::RollingBack {
            commands.extend(roll_back_item(record, n, observed, rules));
        }
    }
    if commands.is_empty() && record.items.iter().all(|i| i.step != RestoreStep::RollingBack) {
        enter(record, RestorePhase::StartingInstances, observed.now);
    }
    commands
}

fn roll_back_item(record: &mut RestoreRecord, n: usize, observed: &Observation, rules: &Rules) -> Vec<Command> {
    match record.items[n].kind {
        ResourceKind::Volume => roll_back_volume(record, n, observed, rules),
        ResourceKind::Database => roll_back_database(record, n, observed, rules),
    }
}

/// The item is back as it was (or could not be put back: `problem`).
fn rolled_back(record: &mut RestoreRecord, n: usize, problem: Option<String>) -> Vec<Command> {
    let rolling_back_all = record.rollback.is_some();
    let item = &mut record.items[n];
    item.step = RestoreStep::RolledBack;
    match problem {
        Some(problem) => {
            item.fail(format!("not put back: {problem}"));
            let resource_id = item.resource_id.clone();
            if let Some(rollback) = record.rollback.as_mut() {
                rollback.not_put_back.push(resource_id);
            }
        }
        None if rolling_back_all => item.status = ItemStatus::RolledBack,
        None => item.status = ItemStatus::Failed,
    }
    Vec::new()
}

/// Gives a kept resource back to the service instance: the tags the swap changed, undone.
fn unmark(record: &RestoreRecord, n: usize, resource_id: &str, rules: &Rules) -> Command {
    let item = &record.items[n];
    let mut add = Tags::new();
    if item.replaced_untagged {
        add.insert(rules.tag_key.clone(), record.service_instance_id.clone());
    }
    Command::Retag {
        item: n,
        resource_id: resource_id.to_owned(),
        add,
        remove: vec![tag::REPLACED_BY.to_owned(), tag::KEPT_UNTIL.to_owned()],
    }
}

fn roll_back_volume(record: &mut RestoreRecord, n: usize, observed: &Observation, rules: &Rules) -> Vec<Command> {
    let item = &record.items[n];
    let (instance_id, device) = (item.instance_id.clone().unwrap_or_default(), item.device.clone().unwrap_or_default());
    let original = item.replaced_resource_id.clone();
    let Some(new_id) = item.new_resource_id.clone() else {
        if item.step == RestoreStep::NotStarted {
            return rolled_back(record, n, None);
        }
        // A create may have been made by a run that died before writing the id down: the
        // same client token answers that volume (or makes one), which is then deleted.
        return vec![create_volume(record, n, rules)];
    };
    let at_device = observed.at_device(&instance_id, &device);
    let new_volume = observed.volumes.get(&new_id);
    if at_device.as_ref() == Some(&new_id) {
        return if observed.volume_settled(&new_id) {
            vec![Command::DetachVolume { item: n, instance_id, volume_id: new_id }]
        } else {
            Vec::new()
        };
    }
    match (&at_device, &original) {
        (None, Some(original)) => {
            // Until the original is back, the device must stay free for it.
            if !observed.volumes.contains_key(original) {
                return rolled_back(
                    record,
                    n,
                    Some(format!("{original} no longer exists; {device} of {instance_id} is empty")),
                );
            }
            if gone(observed.state(&instance_id)) {
                return rolled_back(record, n, Some(format!("{RELEASED} ({instance_id})")));
            }
            let free = observed.volumes.get(original).is_some_and(|v| v.attachment.is_none() && !v.busy);
            let new_detached = new_volume.is_none_or(|v| v.attachment.is_none() && !v.busy);
            return if free && new_detached {
                vec![Command::AttachVolume { item: n, instance_id, volume_id: original.clone(), device }]
            } else {
                Vec::new()
            };
        }
        (Some(current), original) if Some(current) != original.as_ref() => {
            return rolled_back(record, n, Some(format!("{device} of {instance_id} now holds {current}")));
        }
        _ => {}
    }
    // The original (or nothing, if the device was empty) is at the device: it goes with its
    // instance again if the backed-up volume did, the restore's volume goes, and a kept
    // original gets its tags back.
    if original.is_some()
        && wants_delete_on_termination(&record.items[n])
        && !observed.deleted_with_instance(&instance_id, &device)
        && original.as_ref().is_some_and(|o| observed.volume_settled(o))
    {
        return vec![Command::SetDeleteOnTermination { item: n, instance_id, device }];
    }
    if let Some(volume) = new_volume {
        return if volume.state != VolumeState::Creating && !volume.busy && volume.attachment.is_none() {
            vec![Command::DeleteVolume { item: n, volume_id: new_id }]
        } else {
            Vec::new()
        };
    }
    if let (Some(original), Some(ReplacedState::Kept)) = (&original, record.items[n].replaced_state) {
        if !observed.volume_settled(original) {
            return Vec::new();
        }
        return vec![unmark(record, n, original, rules)];
    }
    rolled_back(record, n, None)
}

fn roll_back_database(record: &mut RestoreRecord, n: usize, observed: &Observation, rules: &Rules) -> Vec<Command> {
    let (original, restored, old) = database_ids(record, &record.items[n].resource_id);
    let ours = |id: &str| is_ours(record, observed, id);
    let status = |id: &str| observed.database(id);
    let busy = [&original, &restored, &old]
        .iter()
        .any(|id| status(id).is_some_and(|s| s != "available" && !DATABASE_FAILED.contains(&s)));
    if busy {
        return Vec::new(); // being created, renamed or deleted: wait for it
    }
    let rename = |from: &str, to: &str| Command::RenameDatabase { item: n, from: from.to_owned(), to: to.to_owned() };
    if status(&original).is_some() && ours(&original) {
        // The restored database holds the id: it moves back out of the way first.
        return if status(&restored).is_none() {
            vec![rename(&original, &restored)]
        } else {
            rolled_back(record, n, Some(format!("{restored} is taken; {original} is the restored database")))
        };
    }
    if status(&original).is_none() && status(&old).is_some() {
        return vec![rename(&old, &original)];
    }
    if status(&restored).is_some() && ours(&restored) {
        if observed.databases.get(&restored).is_some_and(|d| d.deletion_protection) {
            return vec![Command::ProtectDatabase { item: n, db_id: restored, protect: false }];
        }
        return vec![Command::DeleteDatabase { item: n, db_id: restored }];
    }
    if status(&original).is_none() && record.items[n].replaced_resource_id.is_some() {
        return rolled_back(record, n, Some(format!("the original database {original} no longer exists")));
    }
    if status(&original).is_some() && record.items[n].replaced_state == Some(ReplacedState::Kept) {
        return vec![unmark(record, n, &original, rules)];
    }
    rolled_back(record, n, None)
}

/// Folds a command's answer into the record. A transient failure changes nothing (the next
/// poll sees the cloud and asks again); a refusal fails the item it was for, which rolls
/// the restore back; a refusal during a roll-back is noted and asked again.
pub fn command_done(record: &mut RestoreRecord, command: &Command, answer: Result<Answer, CloudError>, now: Timestamp) {
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) if e.is_retryable() => return,
        Err(e) => return refused(record, command, e, now),
    };
    match (command, answer) {
        (Command::TakeSafetyBackup, Answer::SafetyBackup(id)) => record.safety_backup_id = Some(id),
        (Command::StopInstances(_), _) => record.service_changed = true,
        (Command::CreateVolume { item, .. }, Answer::Made(volume_id)) => {
            record.items[*item].new_resource_id = Some(volume_id)
        }
        (Command::Retag { item, .. }, _) => {
            let item = &mut record.items[*item];
            item.replaced_state = match (record.phase, item.replaced_state) {
                (RestorePhase::Committing, _) => Some(ReplacedState::Kept),
                (_, Some(ReplacedState::Kept)) => Some(ReplacedState::Restored),
                (_, other) => other,
            };
        }
        (Command::DeleteReplaced { item, .. }, _) => record.items[*item].replaced_state = Some(ReplacedState::Deleted),
        (Command::RegisterImage { launch, .. }, Answer::Made(image_id)) => {
            record.instances[*launch].image_id = Some(image_id)
        }
        (Command::RunInstance { launch, .. }, Answer::Made(instance_id)) => {
            record.instances[*launch].new_instance_id = Some(instance_id)
        }
        (Command::DeregisterImage { launch, .. }, _) => record.instances[*launch].image_released = true,
        _ => {}
    }
}

fn refused(record: &mut RestoreRecord, command: &Command, error: CloudError, now: Timestamp) {
    let item_of = |command: &Command| match command {
        Command::CreateVolume { item, .. }
        | Command::DetachVolume { item, .. }
        | Command::AttachVolume { item, .. }
        | Command::SetDeleteOnTermination { item, .. }
        | Command::DeleteVolume { item, .. }
        | Command::RestoreDatabase { item, .. }
        | Command::RenameDatabase { item, .. }
        | Command::DeleteDatabase { item, .. }
        | Command::ProtectDatabase { item, .. }
        | Command::Retag { item, .. }
        | Command::DeleteReplaced { item, .. } => Some(*item),
        _ => None,
    };
    match command {
        Command::TakeSafetyBackup => {
            abort(record, format!("the safety backup could not start: {error}; nothing was changed"), now)
        }
        Command::RegisterImage { launch: l, .. } => {
            launch::fail(record, *l, format!("{}: {error}", what(command)));
            // Refused: no image was registered.
            record.instances[*l].image_released = record.instances[*l].image_id.is_none();
        }
        Command::RunInstance { launch: l, .. } => launch::fail(record, *l, format!("{}: {error}", what(command))),
        Command::DeregisterImage { launch: l, .. } if matches!(error, CloudError::NotFound(_)) => {
            record.instances[*l].image_released = true
        }
        // Asked again by the next poll.
        Command::DeregisterImage { launch: l, .. } => {
            record.instances[*l].error = Some(format!("{}: {error}", what(command)))
        }
        Command::StopInstances(_) if record.rollback.is_none() => {
            start_rollback(record, RollbackReason::Failure, format!("the instances could not be stopped: {error}"), now)
        }
        // Made by an earlier attempt: the next step tells by its tag whether it is ours.
        Command::RestoreDatabase { .. } if matches!(error, CloudError::AlreadyExists(_)) => {}
        Command::Retag { item, .. } | Command::DeleteReplaced { item, .. }
            if matches!(error, CloudError::NotFound(_)) =>
        {
            let item = &mut record.items[*item];
            item.replaced_state = Some(match command {
                Command::DeleteReplaced { .. } => ReplacedState::Deleted,
                _ => ReplacedState::Released,
            });
        }
        command => match item_of(command) {
            Some(n) if record.phase == RestorePhase::Restoring && record.items[n].step != RestoreStep::RollingBack => {
                fail_item(record, n, error.to_string(), now);
            }
            // Roll-back, tags, starts: asked again by the next poll, which sees the cloud.
            Some(n) => record.items[n].error = Some(format!("{}: {error}", what(command))),
            None => {}
        },
    }
}

fn what(command: &Command) -> &'static str {
    match command {
        Command::CreateVolume { .. } => "create volume",
        Command::DetachVolume { .. } => "detach volume",
        Command::AttachVolume { .. } => "attach volume",
        Command::SetDeleteOnTermination { .. } => "set delete on termination",
        Command::DeleteVolume { .. } => "delete volume",
        Command::RestoreDatabase { .. } => "restore database",
        Command::RenameDatabase { .. } => "rename database",
        Command::DeleteDatabase { .. } => "delete database",
        Command::ProtectDatabase { .. } => "set deletion protection",
        Command::Retag { .. } => "tag",
        Command::DeleteReplaced { .. } => "delete replaced",
        Command::TakeSafetyBackup => "safety backup",
        Command::StopInstances(_) => "stop instances",
        Command::StartInstances(_) => "start instances",
        Command::RegisterImage { .. } => "register image",
        Command::RunInstance { .. } => "launch instance",
        Command::DeregisterImage { .. } => "deregister image",
    }
}

/// Ends a restore before it changed anything.
pub fn abort(record: &mut RestoreRecord, cause: String, now: Timestamp) {
    for item in record.items.iter_mut().filter(|i| !i.status.is_terminal()) {
        item.fail(cause.clone());
    }
    record.error = Some(cause);
    if record.rollback.is_none() && (record.service_changed || record.items.iter().any(|i| i.new_resource_id.is_some()))
    {
        // Something was made or stopped after all: put it back.
        return start_rollback(record, RollbackReason::Failure, record.error.clone().unwrap_or_default(), now);
    }
    enter(record, RestorePhase::Done, now);
}

/// A user cancels the restore. Before it changed or made anything, it just ends; after, an
/// in-place restore rolls back (status `RollingBack`, then `RolledBack`).
pub fn cancel(record: &mut RestoreRecord, now: Timestamp) -> Result<(), IllegalTransition> {
    if record.status.is_terminal() || record.rollback.is_some() {
        return Err(IllegalTransition { from: record.status, to: JobStatus::Cancelled });
    }
    let touched = record.service_changed
        || !record.stopped_instance_ids.is_empty()
        || record.items.iter().any(|i| i.step != RestoreStep::NotStarted);
    // The run at work loses its next save and stops; the next poll acts on the cancel at once.
    record.lease = None;
    if record.mode == RestoreMode::InPlace && touched {
        record.status.transition(JobStatus::RollingBack)?;
        start_rollback(record, RollbackReason::Cancel, "cancelled by the user".to_owned(), now);
        return Ok(());
    }
    record.status.transition(JobStatus::Cancelled)?;
    record.finished_at = Some(now);
    for item in record.items.iter_mut().filter(|i| !i.status.is_terminal()) {
        item.status = ItemStatus::Cancelled;
    }
    launch::cancel(record);
    // An image still registered is deregistered by the next poll before the restore is done.
    if record.instances.iter().all(|l| l.settled()) {
        enter(record, RestorePhase::Done, now);
    }
    Ok(())
}

/// Why a finished restore cannot be rolled back, if it cannot.
pub fn rollback_refusal(record: &RestoreRecord, now: Timestamp) -> Option<String> {
    if record.mode != RestoreMode::InPlace {
        return Some("only an in-place restore can be rolled back".into());
    }
    if !matches!(record.status, JobStatus::Succeeded | JobStatus::PartiallyFailed) {
        return Some(format!(
            "the restore is {}; only a finished in-place restore can be rolled back",
            record.status.as_str()
        ));
    }
    if !record.keeps_replaced() || record.kept_until.is_some_and(|until| until <= now) {
        return Some("what it replaced is no longer kept".into());
    }
    None
}

/// The user asks to put back what a finished in-place restore replaced.
pub fn request_rollback(record: &mut RestoreRecord, now: Timestamp) -> Result<(), IllegalTransition> {
    record.status.transition(JobStatus::RollingBack)?;
    record.lease = None;
    start_rollback(record, RollbackReason::Request, "roll-back requested by the user".to_owned(), now);
    Ok(())
}

/// The replaced resources whose keeping time is over, to delete — only those still carrying
/// this restore's `snapnest:replaced-by` tag; others are no longer snapnest's to delete.
pub fn expire_replaced(record: &mut RestoreRecord, observed: &Observation) -> Vec<Command> {
    // A roll-back still at work (asked for just before kept_until) owns them until it ends.
    if record.phase != RestorePhase::Done || record.kept_until.is_none_or(|until| until > observed.now) {
        return Vec::new();
    }
    let restore_id = record.restore_id.to_string();
    let mut commands = Vec::new();
    for (n, item) in record.items.iter_mut().enumerate() {
        let Some(replaced) = item.replaced_resource_id.clone() else { continue };
        if item.replaced_state != Some(ReplacedState::Kept) {
            continue;
        }
        let tags = observed.tags(item.kind, &replaced);
        let protected = item.kind == ResourceKind::Database
            && observed.databases.get(&replaced).is_some_and(|d| d.deletion_protection);
        match tags {
            None => item.replaced_state = Some(ReplacedState::Deleted),
            Some(_) if protected => {
                // The user's own protection on the database it replaced is respected.
                item.replaced_state = Some(ReplacedState::Released);
                item.error = Some(format!("{replaced} is kept: its deletion protection is on"));
            }
            Some(tags) if tags.get(tag::REPLACED_BY) == Some(&restore_id) => {
                commands.push(Command::DeleteReplaced { item: n, kind: item.kind, resource_id: replaced })
            }
            Some(_) => item.replaced_state = Some(ReplacedState::Released),
        }
    }
    commands
}

/// What expire-retention needs observed to delete a restore's replaced resources.
pub fn wanted_replaced(record: &RestoreRecord) -> Wanted {
    let mut wanted = Wanted::default();
    for item in record.items.iter().filter(|i| i.replaced_state == Some(ReplacedState::Kept)) {
        if let Some(id) = &item.replaced_resource_id {
            match item.kind {
                ResourceKind::Volume => wanted.volume_ids.push(id.clone()),
                ResourceKind::Database => wanted.database_ids.push(id.clone()),
            }
        }
    }
    wanted
}

/// The restore's status: from its items once done, `RollingBack` while it rolls back,
/// `Pending` until it started, else `Running`.
pub fn derive_status(record: &mut RestoreRecord, now: Timestamp) {
    let derived = if record.status == JobStatus::Cancelled && record.rollback.is_none() {
        // A cancel is final, also while a clone's images are still being deregistered.
        JobStatus::Cancelled
    } else if record.phase == RestorePhase::Done {
        match &record.rollback {
            Some(rollback) if !rollback.not_put_back.is_empty() => {
                record.error = Some(format!(
                    "the roll-back is incomplete ({} not put back, see their errors); it started because: {}",
                    rollback.not_put_back.join(", "),
                    rollback.cause
                ));
                JobStatus::Failed
            }
            Some(_) if record.service_changed => JobStatus::RolledBack,
            Some(rollback) if rollback.reason == RollbackReason::Cancel => JobStatus::Cancelled,
            Some(_) => JobStatus::Failed,
            None => aggregate(record.items.iter().map(|i| i.status)),
        }
    } else if record.rollback.is_some() {
        JobStatus::RollingBack
    } else if record.phase == RestorePhase::SafetyBackup && record.safety_backup_id.is_none() {
        JobStatus::Pending
    } else {
        JobStatus::Running
    };
    if record.status != derived {
        debug_assert!(record.status.can_become(derived), "{:?} -> {derived:?}", record.status);
        record.status = derived;
    }
    if derived.is_terminal() && record.finished_at.is_none() {
        record.finished_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::AttachedVolume;
    use chrono::Utc;

    const KEY: &str = "service-instance-id";

    fn rules() -> Rules {
        Rules { tag_key: KEY.into(), keep_replaced: Duration::days(7), deadlines: Deadlines::default() }
    }

    fn volume_item(volume_id: &str, instance: &str, device: &str) -> RestoreItem {
        RestoreItem {
            resource_id: volume_id.into(),
            kind: ResourceKind::Volume,
            snapshot_id: Some(format!("snap-of-{volume_id}")),
            new_resource_id: None,
            status: ItemStatus::Pending,
            error: None,
            instance_id: Some(instance.into()),
            device: Some(device.into()),
            availability_zone: Some("us-east-1a".into()),
            replaced_resource_id: Some(volume_id.into()),
            replaced_state: None,
            replaced_untagged: false,
            size_bytes: 8 << 30,
            volume_settings: Some(VolumeSettings {
                volume_type: Some("gp3".into()),
                delete_on_termination: device == "/dev/xvda",
                ..Default::default()
            }),
            database_settings: None,
            step: RestoreStep::NotStarted,
        }
    }

    fn database_item(db_id: &str) -> RestoreItem {
        RestoreItem {
            resource_id: db_id.into(),
            kind: ResourceKind::Database,
            snapshot_id: Some(format!("snapnest-{db_id}")),
            instance_id: None,
            device: None,
            availability_zone: None,
            volume_settings: None,
            database_settings: Some(DatabaseSettings { multi_az: true, ..Default::default() }),
            ..volume_item(db_id, "", "")
        }
    }

    fn restore(mode: RestoreMode, phase: RestorePhase, items: Vec<RestoreItem>) -> RestoreRecord {
        RestoreRecord {
            status: JobStatus::Running,
            phase,
            on_failure: OnFailure::Rollback,
            safety_backup: false,
            items,
            ..crate::fixtures::restore_of(mode)
        }
    }

    /// A small cloud the tests change by hand: instances with devices, volumes, databases.
    #[derive(Default)]
    struct World {
        instances: HashMap<String, (InstanceState, Vec<(String, String)>)>,
        volumes: HashMap<String, Option<(String, String)>>,
        databases: HashMap<String, Tags>,
        /// (instance, device) whose volume goes with the instance.
        deleted_with: std::collections::HashSet<(String, String)>,
        /// Registered images and the devices they launch with.
        images: HashMap<String, Vec<String>>,
    }

    impl World {
        fn with_instance(mut self, id: &str, state: InstanceState, devices: &[(&str, &str)]) -> Self {
            let devices: Vec<(String, String)> = devices.iter().map(|(d, v)| (d.to_string(), v.to_string())).collect();
            self.deleted_with.insert((id.to_owned(), "/dev/xvda".to_owned()));
            for (device, volume) in &devices {
                self.volumes.insert(volume.clone(), Some((id.to_owned(), device.clone())));
            }
            self.instances.insert(id.into(), (state, devices));
            self
        }

        fn observe(&self) -> Observation {
            let mut observed = Observation { now: Utc::now(), ..Default::default() };
            for (id, (state, _)) in &self.instances {
                let volumes = self
                    .volumes
                    .iter()
                    .filter_map(|(v, at)| match at {
                        Some((i, d)) if i == id => Some(AttachedVolume {
                            volume_id: v.clone(),
                            device: d.clone(),
                            size_gib: 8,
                            settings: VolumeSettings {
                                delete_on_termination: self.deleted_with.contains(&(id.clone(), d.clone())),
                                ..Default::default()
                            },
                        }),
                        _ => None,
                    })
                    .collect();
                let instance = Instance {
                    instance_id: id.clone(),
                    state: *state,
                    availability_zone: "us-east-1a".into(),
                    volumes,
                    settings: Default::default(),
                };
                observed.instances.insert(id.clone(), instance);
            }
            for (id, at) in &self.volumes {
                let status = VolumeStatus {
                    volume_id: id.clone(),
                    state: if at.is_some() { VolumeState::InUse } else { VolumeState::Available },
                    attachment: at.clone(),
                    busy: false,
                    tags: Tags::new(),
                };
                observed.volumes.insert(id.clone(), status);
            }
            for id in self.images.keys() {
                let status =
                    ImageStatus { image_id: id.clone(), state: crate::cloud::ImageState::Available, reason: None };
                observed.images.insert(id.clone(), status);
            }
            for (id, tags) in &self.databases {
                let status = DatabaseStatus {
                    db_id: id.clone(),
                    status: "available".into(),
                    tags: tags.clone(),
                    deletion_protection: false,
                };
                observed.databases.insert(id.clone(), status);
            }
            observed
        }

        /// Carries out a command at once, as a cloud whose every change is instant; `fail`
        /// refuses it instead.
        fn apply(&mut self, command: &Command, fail: bool) -> Result<Answer, CloudError> {
            if fail {
                return Err(CloudError::Rejected { code: "Refused".into(), message: "refused".into() });
            }
            match command {
                Command::StopInstances(ids) => ids.iter().for_each(|id| self.set_state(id, InstanceState::Stopped)),
                Command::StartInstances(ids) => ids.iter().for_each(|id| self.set_state(id, InstanceState::Running)),
                Command::CreateVolume { client_token, .. } => {
                    let id = format!("vol-new-{}", client_token.len() + self.volumes.len());
                    let id = self
                        .volumes
                        .keys()
                        .find(|v| v.ends_with(&format!("#{client_token}")))
                        .cloned()
                        .unwrap_or(format!("{id}#{client_token}"));
                    self.volumes.entry(id.clone()).or_insert(None);
                    return Ok(Answer::Made(id));
                }
                Command::DetachVolume { volume_id, .. } => {
                    if let Some(Some(at)) = self.volumes.insert(volume_id.clone(), None) {
                        self.deleted_with.remove(&at);
                    }
                }
                Command::AttachVolume { instance_id, volume_id, device, .. } => {
                    self.volumes.insert(volume_id.clone(), Some((instance_id.clone(), device.clone())));
                }
                Command::SetDeleteOnTermination { instance_id, device, .. } => {
                    self.deleted_with.insert((instance_id.clone(), device.clone()));
                }
                Command::DeleteVolume { volume_id, .. } => {
                    self.volumes.remove(volume_id);
                }
                Command::RestoreDatabase { new_db_id, tags, .. } => {
                    self.databases.insert(new_db_id.clone(), tags.clone());
                }
                Command::RenameDatabase { from, to, .. } => {
                    let tags = self.databases.remove(from).expect("renamed database exists");
                    self.databases.insert(to.clone(), tags);
                }
                Command::DeleteDatabase { db_id, .. } => {
                    self.databases.remove(db_id);
                }
                // Not modelled here: no database of these tests is protected.
                Command::ProtectDatabase { .. } => {}
                Command::Retag { resource_id, add, remove, .. } => {
                    if let Some(tags) = self.databases.get_mut(resource_id) {
                        tags.extend(add.clone());
                        remove.iter().for_each(|k| {
                            tags.remove(k);
                        });
                    }
                }
                Command::TakeSafetyBackup => return Ok(Answer::SafetyBackup(BackupId::generate())),
                Command::DeleteReplaced { .. } => {}
                Command::RegisterImage { spec, .. } => {
                    let id = format!("ami-{}", spec.name);
                    self.images.insert(id.clone(), spec.devices.iter().map(|d| d.device.clone()).collect());
                    return Ok(Answer::Made(id));
                }
                Command::RunInstance { image_id, client_token, .. } => {
                    let id = format!("i-new#{client_token}");
                    if !self.instances.contains_key(&id) {
                        let devices = self.images[image_id].clone();
                        let volumes: Vec<(String, String)> =
                            devices.iter().map(|d| (d.clone(), format!("vol-new{d}"))).collect();
                        let volumes: Vec<(&str, &str)> =
                            volumes.iter().map(|(d, v)| (d.as_str(), v.as_str())).collect();
                        *self = std::mem::take(self).with_instance(&id, InstanceState::Running, &volumes);
                    }
                    return Ok(Answer::Made(id));
                }
                Command::DeregisterImage { image_id, .. } => {
                    self.images.remove(image_id);
                }
            }
            Ok(Answer::Done)
        }

        fn set_state(&mut self, id: &str, state: InstanceState) {
            self.instances.get_mut(id).expect("known instance").0 = state;
        }

        fn at_device(&self, instance: &str, device: &str) -> Option<String> {
            let wanted = Some((instance.to_owned(), device.to_owned()));
            self.volumes.iter().find(|(_, at)| **at == wanted).map(|(v, _)| v.clone())
        }
    }

    /// Runs the restore to its end; the `fail_at`-th command (1-based) is refused.
    fn run(record: &mut RestoreRecord, world: &mut World, fail_at: Option<usize>) -> Vec<Command> {
        let mut made = Vec::new();
        for _ in 0..100 {
            let observed = world.observe();
            let commands = step(record, &observed, &rules());
            for command in &commands {
                made.push(command.clone());
                let answer = world.apply(command, fail_at == Some(made.len()));
                command_done(record, command, answer, Utc::now());
            }
            derive_status(record, Utc::now());
            if record.phase == RestorePhase::Done {
                return made;
            }
        }
        panic!("the restore did not end: {record:?}");
    }

    fn demo() -> (RestoreRecord, World) {
        let record = restore(
            RestoreMode::InPlace,
            RestorePhase::StoppingInstances,
            vec![
                volume_item("vol-a", "i-1", "/dev/xvda"),
                volume_item("vol-b", "i-1", "/dev/xvdb"),
                database_item("orders"),
            ],
        );
        let mut world = World::default().with_instance(
            "i-1",
            InstanceState::Running,
            &[("/dev/xvda", "vol-a"), ("/dev/xvdb", "vol-b")],
        );
        world.databases.insert("orders".into(), Tags::from([(KEY.to_owned(), "si-1".to_owned())]));
        (record, world)
    }

    #[test]
    fn an_in_place_restore_swaps_every_device_and_the_database_then_keeps_what_it_replaced() {
        // GIVEN a running instance with two volumes and a database of the service instance
        let (mut record, mut world) = demo();
        // WHEN the restore runs with every call succeeding
        let made = run(&mut record, &mut world, None);
        // THEN it stopped the instance before anything else and started it last
        assert_eq!(made.first(), Some(&Command::StopInstances(vec!["i-1".into()])));
        assert_eq!(made.last(), Some(&Command::StartInstances(vec!["i-1".into()])));
        // AND each device holds the restored volume, the database id the restored database
        assert_eq!(record.status, JobStatus::Succeeded, "{record:?}");
        for item in &record.items[..2] {
            let at = world.at_device("i-1", item.device.as_deref().unwrap());
            assert_eq!(at, item.new_resource_id);
        }
        assert_eq!(world.databases["orders"].get(tag::RESTORE_ID), Some(&record.restore_id.to_string()));
        // AND the restored root goes with its instance, as the backed-up root did; the data volume does not
        assert!(world.deleted_with.contains(&("i-1".to_owned(), "/dev/xvda".to_owned())));
        assert!(!world.deleted_with.contains(&("i-1".to_owned(), "/dev/xvdb".to_owned())));
        assert!(made
            .iter()
            .any(|c| matches!(c, Command::SetDeleteOnTermination { device, .. } if device == "/dev/xvda")));
        // AND the volumes and the database were made with the backed-up settings
        for command in &made {
            match command {
                Command::CreateVolume { settings, .. } => assert_eq!(settings.volume_type.as_deref(), Some("gp3")),
                Command::RestoreDatabase { settings, .. } => assert!(settings.multi_az),
                _ => {}
            }
        }
        // AND what was replaced is kept, tagged, and the old database left the service instance
        let (_, _, old) = database_ids(&record, "orders");
        assert!(record.items.iter().all(|i| i.replaced_state == Some(ReplacedState::Kept)));
        assert_eq!(world.databases[&old].get(tag::REPLACED_BY), Some(&record.restore_id.to_string()));
        assert!(!world.databases[&old].contains_key(KEY));
        assert!(record.kept_until.is_some());
        assert_eq!(world.instances["i-1"].0, InstanceState::Running);
    }

    #[test]
    fn the_swap_detaches_what_is_at_the_device_now_not_what_the_backup_saw() {
        // GIVEN a restore planned when vol-a was at /dev/xvda, and someone swapped in vol-x since
        let mut record = restore(
            RestoreMode::InPlace,
            RestorePhase::StoppingInstances,
            vec![volume_item("vol-a", "i-1", "/dev/xvda")],
        );
        let mut world = World::default().with_instance("i-1", InstanceState::Running, &[("/dev/xvda", "vol-x")]);
        world.volumes.insert("vol-a".into(), None);
        // WHEN it runs
        let made = run(&mut record, &mut world, None);
        // THEN vol-x was detached and is the one kept; the restored volume is at the device
        assert!(made.iter().any(|c| matches!(c, Command::DetachVolume { volume_id, .. } if volume_id == "vol-x")));
        assert_eq!(record.items[0].replaced_resource_id.as_deref(), Some("vol-x"));
        assert_eq!(world.at_device("i-1", "/dev/xvda"), record.items[0].new_resource_id);
        assert_eq!(record.status, JobStatus::Succeeded);
    }

    #[test]
    fn a_failure_after_the_stop_rolls_everything_back_whatever_call_fails() {
        // GIVEN the demo restore, WHEN each of its calls in turn is refused for good
        let (mut clean, mut clean_world) = demo();
        let calls = run(&mut clean, &mut clean_world, None).len();
        for k in 1..=calls {
            let (mut record, mut world) = demo();
            let made = run(&mut record, &mut world, Some(k));
            let failed = &made[k - 1];
            if matches!(failed, Command::StartInstances(_) | Command::Retag { .. }) {
                // Past the swap, refusals are asked again: the restore still succeeds.
                assert_eq!(record.status, JobStatus::Succeeded, "call {k} {failed:?}");
                assert_eq!(world.instances["i-1"].0, InstanceState::Running, "call {k} {failed:?}");
                continue;
            }
            // THEN the devices hold the original volumes and the database id the original
            assert_eq!(world.at_device("i-1", "/dev/xvda").as_deref(), Some("vol-a"), "call {k} {failed:?}");
            assert_eq!(world.at_device("i-1", "/dev/xvdb").as_deref(), Some("vol-b"), "call {k} {failed:?}");
            let orders = &world.databases["orders"];
            assert!(orders.get(tag::RESTORE_ID).is_none(), "call {k} {failed:?}: {orders:?}");
            // AND nothing the restore made is left, and the instance runs
            assert_eq!(world.databases.len(), 1, "call {k} {failed:?}: {:?}", world.databases.keys());
            assert_eq!(world.volumes.len(), 2, "call {k} {failed:?}: {:?}", world.volumes);
            assert_eq!(world.instances["i-1"].0, InstanceState::Running, "call {k} {failed:?}");
            // AND the record says what happened: Failed before the instance stopped, RolledBack after
            let expected = if k == 1 { JobStatus::Failed } else { JobStatus::RolledBack };
            assert_eq!(record.status, expected, "call {k} {failed:?}: {record:?}");
            assert!(record.error.as_deref().is_some_and(|e| !e.is_empty()));
        }
    }

    #[test]
    fn a_cancel_before_the_stop_just_ends_and_after_it_rolls_back() {
        // GIVEN a restore waiting for its safety backup
        let (mut record, _) = demo();
        record.phase = RestorePhase::SafetyBackup;
        // WHEN it is cancelled THEN it ends Cancelled with nothing to put back
        cancel(&mut record, Utc::now()).unwrap();
        assert_eq!((record.status, record.phase), (JobStatus::Cancelled, RestorePhase::Done));
        // GIVEN the demo restore half way (the instance stopped, a volume created)
        let (mut record, mut world) = demo();
        for _ in 0..2 {
            let commands = step(&mut record, &world.observe(), &rules());
            for command in &commands {
                let answer = world.apply(command, false);
                command_done(&mut record, command, answer, Utc::now());
            }
        }
        assert!(record.service_changed);
        // WHEN it is cancelled THEN it rolls back and ends RolledBack with the instance running
        cancel(&mut record, Utc::now()).unwrap();
        assert_eq!(record.status, JobStatus::RollingBack);
        assert!(cancel(&mut record, Utc::now()).is_err(), "a roll-back cannot be cancelled");
        run(&mut record, &mut world, None);
        assert_eq!(record.status, JobStatus::RolledBack);
        assert_eq!(world.at_device("i-1", "/dev/xvda").as_deref(), Some("vol-a"));
        assert_eq!(world.volumes.len(), 2);
        assert_eq!(world.instances["i-1"].0, InstanceState::Running);
    }

    #[test]
    fn keep_puts_back_only_what_failed() {
        // GIVEN the demo restore with on_failure keep, WHEN the first attach is refused
        let (mut record, mut world) = demo();
        record.on_failure = OnFailure::Keep;
        let (mut probe, mut probe_world) = demo();
        let all = run(&mut probe, &mut probe_world, None);
        let attach = all.iter().position(|c| matches!(c, Command::AttachVolume { .. })).unwrap() + 1;
        run(&mut record, &mut world, Some(attach));
        // THEN that device holds its original again, the others are restored: PartiallyFailed
        assert_eq!(record.status, JobStatus::PartiallyFailed, "{record:?}");
        let failed = record.items.iter().find(|i| i.status == ItemStatus::Failed).unwrap();
        assert_eq!(world.at_device("i-1", failed.device.as_deref().unwrap()).as_ref(), Some(&failed.resource_id));
        let kept = record.items.iter().filter(|i| i.status == ItemStatus::Succeeded).count();
        assert_eq!(kept, 2);
    }

    #[test]
    fn an_instance_that_cannot_stop_fails_the_restore_before_anything_changes() {
        // GIVEN the demo restore, WHEN its stop is refused
        let (mut record, mut world) = demo();
        run(&mut record, &mut world, Some(1));
        // THEN it failed with the cloud's words, made nothing, and the lock can go
        assert_eq!(record.status, JobStatus::Failed);
        assert!(record.error.as_deref().unwrap().contains("could not be stopped: Refused: refused"));
        assert_eq!(record.phase, RestorePhase::Done);
        assert_eq!(world.volumes.len(), 2);
    }

    #[test]
    fn a_stop_past_its_deadline_rolls_back() {
        // GIVEN a restore whose stop began 31 minutes ago and has not finished
        let (mut record, mut world) = demo();
        record.stopped_instance_ids = vec!["i-1".into()];
        record.phase_started_at = Some(Utc::now() - Duration::minutes(31));
        world.set_state("i-1", InstanceState::Stopping);
        // WHEN it steps THEN it rolls back (nothing was swapped: straight on to starting i-1),
        // naming the deadline
        step(&mut record, &world.observe(), &rules());
        assert_eq!(record.rollback.as_ref().map(|r| r.reason), Some(RollbackReason::Deadline));
        assert_eq!(record.phase, RestorePhase::StartingInstances);
        assert!(record.error.as_deref().unwrap().contains("did not stop within 30 minutes"));
        world.set_state("i-1", InstanceState::Stopped);
        run(&mut record, &mut world, None);
        assert_eq!(record.status, JobStatus::RolledBack);
        assert_eq!(world.instances["i-1"].0, InstanceState::Running);
    }

    #[test]
    fn a_finished_restore_is_rolled_back_on_request_while_its_replaced_resources_are_kept() {
        // GIVEN a finished demo restore
        let (mut record, mut world) = demo();
        run(&mut record, &mut world, None);
        assert_eq!(rollback_refusal(&record, Utc::now()), None);
        // WHEN the user asks for a roll-back
        request_rollback(&mut record, Utc::now()).unwrap();
        let made = run(&mut record, &mut world, None);
        // THEN the instance was stopped first, the originals are back, the restored ones gone
        assert_eq!(made.first(), Some(&Command::StopInstances(vec!["i-1".into()])));
        assert_eq!(record.status, JobStatus::RolledBack, "{record:?}");
        assert_eq!(world.at_device("i-1", "/dev/xvda").as_deref(), Some("vol-a"));
        assert_eq!(world.volumes.len(), 2);
        assert_eq!(world.databases.len(), 1);
        assert_eq!(world.databases["orders"].get(KEY).map(String::as_str), Some("si-1"), "the tag is back");
        assert!(!world.databases["orders"].contains_key(tag::REPLACED_BY));
        assert!(record.items.iter().all(|i| i.replaced_state == Some(ReplacedState::Restored)));
        // AND once rolled back it cannot be rolled back again
        assert!(rollback_refusal(&record, Utc::now()).is_some());
    }

    #[test]
    fn replaced_resources_are_deleted_after_kept_until_only_with_this_restores_tag() {
        // GIVEN a finished restore whose replaced database still carries its tag, and a
        // volume someone re-tagged for themselves
        let (mut record, mut world) = demo();
        run(&mut record, &mut world, None);
        let mut observed = world.observe();
        observed.now = record.kept_until.unwrap() + Duration::seconds(1);
        let (_, _, old) = database_ids(&record, "orders");
        observed.databases.get_mut(&old).unwrap().tags = world.databases[&old].clone();
        for volume in ["vol-a", "vol-b"] {
            observed.volumes.get_mut(volume).unwrap().tags = Tags::from([(
                tag::REPLACED_BY.to_owned(),
                if volume == "vol-a" { record.restore_id.to_string() } else { "other".into() },
            )]);
        }
        // WHEN expiry looks at it before kept_until THEN nothing is due
        let mut early = observed.clone();
        early.now = record.kept_until.unwrap() - Duration::seconds(1);
        assert!(expire_replaced(&mut record.clone(), &early).is_empty());
        // WHEN after kept_until THEN the tagged ones are deleted and the re-tagged one released
        let commands = expire_replaced(&mut record, &observed);
        let targets: Vec<&str> = commands
            .iter()
            .map(|c| match c {
                Command::DeleteReplaced { resource_id, .. } => resource_id.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(targets, vec!["vol-a", old.as_str()]);
        assert_eq!(record.items[1].replaced_state, Some(ReplacedState::Released));
    }

    /// A clone of instance i-1 (root and one data volume) launched as a new instance.
    fn launching_clone() -> (RestoreRecord, World) {
        let items = vec![volume_item("vol-data", "i-1", "/dev/xvdb"), volume_item("vol-root", "i-1", "/dev/xvda")];
        let mut record = restore(RestoreMode::Clone, RestorePhase::Restoring, items);
        let settings = InstanceSettings {
            instance_type: Some("m7g.large".into()),
            root_device_name: Some("/dev/xvda".into()),
            ..Default::default()
        };
        record.instances = vec![crate::model::RestoredInstance::new("i-1", settings)];
        (record, World::default())
    }

    #[test]
    fn a_clone_launches_the_instance_from_an_image_of_its_snapshots_and_then_deregisters_the_image() {
        // GIVEN a clone of an instance with a root and a data volume
        let (mut record, mut world) = launching_clone();
        // WHEN it runs to its end
        let made = run(&mut record, &mut world, None);
        // THEN an image is registered from both snapshots, root first, the instance is
        // launched from it with its settings and a client token, and the image deregistered
        let Command::RegisterImage { spec, .. } = &made[0] else { panic!("{made:?}") };
        let devices: Vec<(&str, &str)> =
            spec.devices.iter().map(|d| (d.device.as_str(), d.snapshot_id.as_str())).collect();
        assert_eq!(devices, vec![("/dev/xvda", "snap-of-vol-root"), ("/dev/xvdb", "snap-of-vol-data")]);
        assert_eq!(spec.root_device_name, "/dev/xvda");
        let Command::RunInstance { settings, client_token, tags, .. } = &made[1] else { panic!("{made:?}") };
        assert_eq!(settings.instance_type.as_deref(), Some("m7g.large"));
        assert_eq!(client_token, &volume_token(&record, "i-1"));
        assert_eq!(tags.get(tag::CLONE_OF).map(String::as_str), Some("i-1"));
        assert!(matches!(&made[2], Command::DeregisterImage { .. }), "{made:?}");
        assert_eq!(made.len(), 3, "{made:?}");
        assert!(world.images.is_empty());
        // and each volume's item names the volume at its device on the new instance
        let new_id = record.instances[0].new_instance_id.clone().unwrap();
        assert_eq!(record.items[1].new_resource_id, world.at_device(&new_id, "/dev/xvda"));
        assert_eq!(record.items[0].new_resource_id, world.at_device(&new_id, "/dev/xvdb"));
        assert_eq!(record.status, JobStatus::Succeeded);
        assert_eq!(record.phase, RestorePhase::Done);
    }

    #[test]
    fn a_refused_launch_fails_the_instances_volumes_and_still_deregisters_its_image() {
        // GIVEN a clone whose launch EC2 refuses (the second call)
        let (mut record, mut world) = launching_clone();
        let made = run(&mut record, &mut world, Some(2));
        // THEN both volumes fail with the cause, and the image does not outlive the restore
        assert!(matches!(made.last(), Some(Command::DeregisterImage { .. })), "{made:?}");
        assert!(world.images.is_empty());
        assert_eq!(record.instances[0].status, ItemStatus::Failed);
        assert!(record.items.iter().all(|i| i.status == ItemStatus::Failed
            && i.error.as_deref().is_some_and(|e| e.contains("i-1") && e.contains("launch instance"))));
        assert_eq!(record.status, JobStatus::Failed);
        assert_eq!(record.phase, RestorePhase::Done);
    }

    #[test]
    fn a_clone_cancelled_while_its_image_is_registered_deregisters_it_and_stays_cancelled() {
        // GIVEN a clone whose image is registered, not launched yet
        let (mut record, mut world) = launching_clone();
        let commands = step(&mut record, &world.observe(), &rules());
        let answer = world.apply(&commands[0], false);
        command_done(&mut record, &commands[0], answer, Utc::now());
        // WHEN the user cancels
        cancel(&mut record, Utc::now()).unwrap();
        derive_status(&mut record, Utc::now());
        // THEN it is Cancelled at once, but not done until the image is gone
        assert_eq!(record.status, JobStatus::Cancelled);
        assert_ne!(record.phase, RestorePhase::Done);
        let made = run(&mut record, &mut world, None);
        assert!(matches!(made.as_slice(), [Command::DeregisterImage { .. }]), "{made:?}");
        assert!(world.images.is_empty());
        assert_eq!((record.status, record.phase), (JobStatus::Cancelled, RestorePhase::Done));
        assert!(record.instances[0].new_instance_id.is_none(), "nothing is launched after a cancel");
    }

    #[test]
    fn a_launch_whose_answer_was_lost_finds_what_it_made_instead_of_making_it_again() {
        // GIVEN a launch asked of EC2 whose answer never came back (the run died)
        let (mut record, world) = launching_clone();
        record.instances[0].step = crate::model::LaunchStep::Launching;
        record.instances[0].status = ItemStatus::Running;
        record.instances[0].image_id = Some("ami-1".into());
        let mut observed = world.observe();
        observed.launched.insert("i-1".into(), "i-launched".into());
        // WHEN the next run steps it, seeing the instance carrying the restore's tag
        assert_eq!(wanted(&record).launched_by.as_deref(), Some(record.restore_id.as_str()));
        let commands = step(&mut record, &observed, &rules());
        // THEN it adopts that instance and launches no other
        assert!(!commands.iter().any(|c| matches!(c, Command::RunInstance { .. })), "{commands:?}");
        assert_eq!(record.instances[0].new_instance_id.as_deref(), Some("i-launched"));

        // GIVEN a registration whose answer was lost, then a cancel
        let (mut record, world) = launching_clone();
        record.instances[0].step = crate::model::LaunchStep::RegisteringImage;
        cancel(&mut record, Utc::now()).unwrap();
        let name = launch::image_name(&record, "i-1");
        assert_eq!(wanted(&record).image_names, vec![name.clone()]);
        let mut observed = world.observe();
        let image =
            ImageStatus { image_id: "ami-lost".into(), state: crate::cloud::ImageState::Available, reason: None };
        observed.images_named.insert(name.clone(), Some(image));
        // WHEN the next run looks it up by name THEN it deregisters it
        let commands = step(&mut record, &observed, &rules());
        assert!(
            matches!(commands.as_slice(), [Command::DeregisterImage { image_id, .. }] if image_id == "ami-lost"),
            "{commands:?}"
        );
        // and when no image has that name, nothing is left to do
        let (mut record, world) = launching_clone();
        record.instances[0].step = crate::model::LaunchStep::RegisteringImage;
        cancel(&mut record, Utc::now()).unwrap();
        let mut observed = world.observe();
        observed.images_named.insert(launch::image_name(&record, "i-1"), None);
        assert!(step(&mut record, &observed, &rules()).is_empty());
        assert_eq!(record.phase, RestorePhase::Done);
    }
}
