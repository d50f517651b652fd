//! The restore state machine, pure: given a restore record and what the cloud reports now
//! ([`Observation`]), [`step`] moves the record on and says which cloud calls to make
//! ([`Command`]); [`command_done`] folds each call's answer back in. No store, no cloud,
//! no clock: the service observes, calls `step`, acts, and saves.
//!
//! ```text
//! in place:  SafetyBackup ─▶ StoppingInstances ─▶ Restoring ─▶ StartingInstances ─▶ Done
//! clone, disaster recovery:                        Restoring ─────────────────────▶ Done
//! ```
//! Per item (`RestoreStep`): a volume is created from its snapshot, then (in place) the
//! volume at its device is detached and the new one attached there; a database is restored
//! under a temporary id, then (in place) the original is renamed away and the restored one
//! renamed to the original id. Each step waits until the cloud shows the previous one done,
//! so any poll can carry a restore on after a crash.

use std::collections::{BTreeSet, HashMap};

use crate::cloud::{tag, CloudError, InstanceState, Tags, VolumeState, VolumeStatus};
use crate::ids::BackupId;
use crate::model::{ResourceKind, RestoreItem, RestoreMode, RestorePhase, RestoreRecord, RestoreStep, Timestamp};
use crate::status::{aggregate, ItemStatus, JobStatus};

/// The seeds' words for an instance that no longer exists.
pub const RELEASED: &str = "This instance has been released.";

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
    /// Instances of the restore's items; an id that is absent no longer exists.
    pub instances: HashMap<String, InstanceState>,
    /// Volumes the items name (new, current, replaced); absent = unknown to the cloud.
    pub volumes: HashMap<String, VolumeStatus>,
    /// RDS status words of the databases the items name; absent = no such database.
    pub databases: HashMap<String, String>,
    pub safety_backup: Option<SafetyBackup>,
}

/// What [`step`] needs observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub instance_ids: Vec<String>,
    pub volume_ids: Vec<String>,
    pub database_ids: Vec<String>,
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
    /// Marks what an in-place restore took out of service.
    MarkReplaced {
        resource_id: String,
        tags: Tags,
    },
    RestoreDatabase {
        item: usize,
        snapshot_id: String,
        new_db_id: String,
        tags: Tags,
    },
    RenameDatabase {
        item: usize,
        from: String,
        to: String,
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

/// The temporary id a database is restored under, and the id its original is renamed to.
fn database_ids(record: &RestoreRecord, original: &str) -> (String, String) {
    let suffix: String = {
        let tail: Vec<char> = record.restore_id.chars().rev().take(8).collect();
        tail.into_iter().rev().collect()
    };
    let restored = match record.mode {
        RestoreMode::InPlace => format!("{original}-rst{suffix}"),
        _ => format!("{original}-clone{suffix}"),
    };
    (restored, format!("{original}-old{suffix}"))
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

/// What the restore's current phase needs observed.
pub fn wanted(record: &RestoreRecord) -> Wanted {
    let mut wanted = Wanted::default();
    match record.phase {
        RestorePhase::SafetyBackup => wanted.safety_backup = record.safety_backup_id.clone(),
        RestorePhase::StoppingInstances => wanted.instance_ids = instance_ids(&record.items),
        RestorePhase::StartingInstances => wanted.instance_ids = record.stopped_instance_ids.clone(),
        RestorePhase::Restoring => {
            for item in record.items.iter().filter(|i| !i.status.is_terminal()) {
                match item.kind {
                    ResourceKind::Volume => wanted.volume_ids.extend(
                        [Some(&item.resource_id), item.new_resource_id.as_ref(), item.replaced_resource_id.as_ref()]
                            .into_iter()
                            .flatten()
                            .cloned(),
                    ),
                    ResourceKind::Database => {
                        let (restored, old) = database_ids(record, &item.resource_id);
                        wanted.database_ids.extend([item.resource_id.clone(), restored, old]);
                    }
                }
            }
        }
        RestorePhase::Done => {}
    }
    wanted.volume_ids.sort();
    wanted.volume_ids.dedup();
    wanted
}

/// Moves the restore on as far as `observed` allows and returns the calls to make now.
/// Phases that need no call advance at once; the service calls `step` again after the
/// calls are made, until it returns none.
pub fn step(record: &mut RestoreRecord, observed: &Observation, tag_key: &str) -> Vec<Command> {
    match record.phase {
        RestorePhase::SafetyBackup => safety_backup(record, observed),
        RestorePhase::StoppingInstances => stop_instances(record, observed),
        RestorePhase::Restoring => restore_items(record, observed, tag_key),
        RestorePhase::StartingInstances => start_instances(record, observed),
        RestorePhase::Done => Vec::new(),
    }
}

fn safety_backup(record: &mut RestoreRecord, observed: &Observation) -> Vec<Command> {
    if record.safety_backup_id.is_none() {
        return vec![Command::TakeSafetyBackup];
    }
    match observed.safety_backup.clone().unwrap_or(SafetyBackup::Unknown) {
        SafetyBackup::Succeeded => record.phase = RestorePhase::StoppingInstances,
        SafetyBackup::Ended(status) => {
            let id = record.safety_backup_id.clone().expect("checked above");
            abort(record, format!("safety backup {id} ended {}; nothing was changed", status.as_str()));
        }
        SafetyBackup::Running | SafetyBackup::Unknown => {}
    }
    Vec::new()
}

fn gone(state: Option<&InstanceState>) -> bool {
    matches!(state, None | Some(InstanceState::Terminated | InstanceState::ShuttingDown))
}

fn stop_instances(record: &mut RestoreRecord, observed: &Observation) -> Vec<Command> {
    let ids = instance_ids(&record.items);
    for item in record.items.iter_mut().filter(|i| i.status == ItemStatus::Pending) {
        if item.instance_id.as_ref().is_some_and(|id| gone(observed.instances.get(id))) {
            item.fail(RELEASED);
        }
    }
    let live: Vec<&String> = ids.iter().filter(|id| !gone(observed.instances.get(*id))).collect();
    if record.stopped_instance_ids.is_empty() {
        // Only instances that were running are ours to start again afterwards; they are
        // recorded before the stop call is made.
        let running: Vec<String> = live
            .iter()
            .filter(|id| observed.instances.get(**id) != Some(&InstanceState::Stopped))
            .map(|id| (*id).clone())
            .collect();
        if !running.is_empty() {
            record.stopped_instance_ids = running.clone();
            return vec![Command::StopInstances(running)];
        }
    }
    if live.iter().all(|id| observed.instances.get(*id) == Some(&InstanceState::Stopped)) {
        record.phase = RestorePhase::Restoring;
    }
    Vec::new()
}

fn start_instances(record: &mut RestoreRecord, observed: &Observation) -> Vec<Command> {
    let waiting: Vec<&String> = record
        .stopped_instance_ids
        .iter()
        .filter(|id| {
            observed.instances.get(*id).is_some_and(|s| {
                !matches!(s, InstanceState::Running | InstanceState::Terminated | InstanceState::ShuttingDown)
            })
        })
        .collect();
    if waiting.is_empty() {
        record.phase = RestorePhase::Done;
        return Vec::new();
    }
    let to_start: Vec<String> = waiting
        .into_iter()
        .filter(|id| observed.instances.get(*id) == Some(&InstanceState::Stopped))
        .cloned()
        .collect();
    if to_start.is_empty() {
        Vec::new()
    } else {
        vec![Command::StartInstances(to_start)]
    }
}

fn restore_items(record: &mut RestoreRecord, observed: &Observation, tag_key: &str) -> Vec<Command> {
    let mut commands = Vec::new();
    for n in 0..record.items.len() {
        if record.items[n].status.is_terminal() {
            continue;
        }
        let tags = restore_tags(record, &record.items[n].resource_id, tag_key);
        let command = match record.items[n].kind {
            ResourceKind::Volume => volume_step(record, n, observed, tags),
            ResourceKind::Database => database_step(record, n, observed, tags),
        };
        commands.extend(command);
    }
    if commands.is_empty() && record.items.iter().all(|i| i.status.is_terminal()) {
        record.phase =
            if record.mode == RestoreMode::InPlace { RestorePhase::StartingInstances } else { RestorePhase::Done };
    }
    commands
}

fn finish(item: &mut RestoreItem) {
    item.step = RestoreStep::Done;
    item.status = ItemStatus::Succeeded;
}

fn replaced_mark(record: &RestoreRecord) -> Tags {
    Tags::from([(tag::REPLACED_BY.to_owned(), record.restore_id.to_string())])
}

fn volume_step(record: &mut RestoreRecord, n: usize, observed: &Observation, tags: Tags) -> Vec<Command> {
    let in_place = record.mode == RestoreMode::InPlace;
    let mark = replaced_mark(record);
    let token = volume_token(record, &record.items[n].resource_id);
    let item = &mut record.items[n];
    let (instance_id, device) = (item.instance_id.clone().unwrap_or_default(), item.device.clone().unwrap_or_default());
    let new_id = item.new_resource_id.clone().unwrap_or_default();
    let attach_new = Command::AttachVolume {
        item: n,
        instance_id: instance_id.clone(),
        volume_id: new_id.clone(),
        device: device.clone(),
    };
    match item.step {
        RestoreStep::NotStarted => vec![Command::CreateVolume {
            item: n,
            snapshot_id: item.snapshot_id.clone().unwrap_or_default(),
            availability_zone: item.availability_zone.clone().unwrap_or_default(),
            client_token: token,
            tags,
        }],
        RestoreStep::Creating => match observed.volumes.get(&new_id).map(|v| v.state) {
            Some(VolumeState::Available) if !in_place => {
                finish(item);
                Vec::new()
            }
            Some(VolumeState::Available) => {
                // The volume at the device now (the original, unless someone swapped it since).
                let current = observed.volumes.get(&item.resource_id).and_then(|v| v.attachment.clone());
                if current == Some((instance_id.clone(), device)) {
                    vec![Command::DetachVolume { item: n, instance_id, volume_id: item.resource_id.clone() }]
                } else {
                    vec![attach_new]
                }
            }
            Some(VolumeState::Error) | None => {
                let snapshot_id = item.snapshot_id.clone().unwrap_or_default();
                item.fail(format!("volume {new_id} could not be created from {snapshot_id}"));
                Vec::new()
            }
            Some(_) => Vec::new(),
        },
        RestoreStep::DetachingOld => {
            let old = item.replaced_resource_id.clone().unwrap_or_default();
            if observed.volumes.get(&old).is_some_and(|v| v.attachment.is_none()) {
                vec![Command::MarkReplaced { resource_id: old, tags: mark }, attach_new]
            } else {
                Vec::new()
            }
        }
        RestoreStep::AttachingNew => {
            if observed.volumes.get(&new_id).and_then(|v| v.attachment.clone()) == Some((instance_id, device)) {
                finish(item);
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn database_step(record: &mut RestoreRecord, n: usize, observed: &Observation, tags: Tags) -> Vec<Command> {
    let in_place = record.mode == RestoreMode::InPlace;
    let mark = replaced_mark(record);
    let original = record.items[n].resource_id.clone();
    let (restored, old) = database_ids(record, &original);
    let status = |id: &str| observed.databases.get(id).map(String::as_str);
    let item = &mut record.items[n];
    match item.step {
        RestoreStep::NotStarted => vec![Command::RestoreDatabase {
            item: n,
            snapshot_id: item.snapshot_id.clone().unwrap_or_default(),
            new_db_id: restored,
            tags,
        }],
        RestoreStep::Creating => match status(&restored) {
            Some("available") if !in_place => {
                finish(item);
                Vec::new()
            }
            Some("available") if status(&original).is_some() => {
                vec![Command::RenameDatabase { item: n, from: original, to: old }]
            }
            Some("available") => {
                item.step = RestoreStep::RenamingOld;
                Vec::new()
            }
            Some("failed" | "incompatible-restore" | "incompatible-parameters") | None => {
                item.fail(format!("database {restored} could not be restored"));
                Vec::new()
            }
            Some(_) => Vec::new(),
        },
        RestoreStep::RenamingOld => {
            let original_gone = status(&original).is_none();
            let renamed_ready = item.replaced_resource_id.is_none() || status(&old) == Some("available");
            if original_gone && renamed_ready {
                vec![Command::RenameDatabase { item: n, from: restored, to: original }]
            } else {
                Vec::new()
            }
        }
        RestoreStep::RenamingNew => {
            if status(&original) != Some("available") {
                return Vec::new();
            }
            item.new_resource_id = Some(original);
            finish(item);
            match item.replaced_resource_id.clone() {
                Some(old) => vec![Command::MarkReplaced { resource_id: old, tags: mark }],
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// Folds a command's answer into the record. A call the cloud refused for good fails the
/// item it was for (the rest of the restore goes on); a transient failure changes nothing,
/// and the next poll makes the same call again.
pub fn command_done(record: &mut RestoreRecord, command: &Command, answer: Result<Answer, CloudError>) {
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) if e.is_retryable() => return,
        Err(e) => {
            match command {
                Command::CreateVolume { item, .. }
                | Command::DetachVolume { item, .. }
                | Command::AttachVolume { item, .. }
                | Command::RenameDatabase { item, .. } => record.items[*item].fail(e.to_string()),
                Command::RestoreDatabase { item, new_db_id, .. } => match e {
                    // Made by an earlier attempt: carry on with it.
                    CloudError::AlreadyExists(_) => database_created(&mut record.items[*item], new_db_id),
                    e => record.items[*item].fail(e.to_string()),
                },
                Command::TakeSafetyBackup => {
                    abort(record, format!("the safety backup could not start: {e}; nothing was changed"))
                }
                // Stop/start/mark failures: retried by the next poll, which sees the cloud again.
                Command::StopInstances(_) | Command::StartInstances(_) | Command::MarkReplaced { .. } => {}
            }
            return;
        }
    };
    match (command, answer) {
        (Command::TakeSafetyBackup, Answer::SafetyBackup(id)) => record.safety_backup_id = Some(id),
        (Command::CreateVolume { item, .. }, Answer::Made(volume_id)) => {
            let item = &mut record.items[*item];
            item.new_resource_id = Some(volume_id);
            item.status = ItemStatus::Running;
            item.step = RestoreStep::Creating;
        }
        (Command::DetachVolume { item, volume_id, .. }, _) => {
            let item = &mut record.items[*item];
            item.replaced_resource_id = Some(volume_id.clone());
            item.step = RestoreStep::DetachingOld;
        }
        (Command::AttachVolume { item, .. }, _) => record.items[*item].step = RestoreStep::AttachingNew,
        (Command::RestoreDatabase { item, new_db_id, .. }, _) => database_created(&mut record.items[*item], new_db_id),
        (Command::RenameDatabase { item, to, .. }, _) => {
            let item = &mut record.items[*item];
            if item.step == RestoreStep::Creating {
                item.replaced_resource_id = Some(to.clone());
                item.step = RestoreStep::RenamingOld;
            } else {
                item.step = RestoreStep::RenamingNew;
            }
        }
        _ => {}
    }
}

fn database_created(item: &mut RestoreItem, new_db_id: &str) {
    item.new_resource_id = Some(new_db_id.to_owned());
    item.status = ItemStatus::Running;
    item.step = RestoreStep::Creating;
}

/// Ends a restore before it touched anything.
pub fn abort(record: &mut RestoreRecord, cause: String) {
    for item in record.items.iter_mut() {
        item.fail(cause.clone());
    }
    record.error = Some(cause);
    record.phase = RestorePhase::Done;
}

/// A user cancels the restore: unfinished items are cancelled; instances it stopped are
/// still started again by the next polls.
pub fn cancel(record: &mut RestoreRecord, now: Timestamp) -> Result<(), crate::status::IllegalTransition> {
    record.status.transition(JobStatus::Cancelled)?;
    record.finished_at = Some(now);
    for item in record.items.iter_mut().filter(|i| !i.status.is_terminal()) {
        item.status = ItemStatus::Cancelled;
    }
    record.phase =
        if record.stopped_instance_ids.is_empty() { RestorePhase::Done } else { RestorePhase::StartingInstances };
    Ok(())
}

/// The restore's status: from its items once done, `Pending` until it started, else `Running`.
pub fn derive_status(record: &mut RestoreRecord, now: Timestamp) {
    if record.status == JobStatus::Cancelled {
        return;
    }
    let derived = if record.phase == RestorePhase::Done {
        aggregate(record.items.iter().map(|i| i.status))
    } else if record.phase == RestorePhase::SafetyBackup && record.safety_backup_id.is_none() {
        JobStatus::Pending
    } else {
        JobStatus::Running
    };
    record.status = derived;
    if derived.is_terminal() && record.finished_at.is_none() {
        record.finished_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RestoreId;
    use chrono::Utc;

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
            replaced_resource_id: None,
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
            ..volume_item(db_id, "", "")
        }
    }

    fn restore(mode: RestoreMode, phase: RestorePhase, items: Vec<RestoreItem>) -> RestoreRecord {
        RestoreRecord {
            restore_id: RestoreId::generate(),
            backup_id: BackupId::generate(),
            service_instance_id: "si-1".into(),
            mode,
            region: "us-east-1".into(),
            status: JobStatus::Pending,
            phase,
            safety_backup: false,
            safety_backup_id: None,
            started_at: Utc::now(),
            finished_at: None,
            items,
            stopped_instance_ids: Vec::new(),
            error: None,
            client_token: None,
            version: 1,
            stored_rows: Default::default(),
        }
    }

    fn attached(volume_id: &str, instance: &str, device: &str) -> (String, VolumeStatus) {
        let status = VolumeStatus {
            volume_id: volume_id.into(),
            state: VolumeState::InUse,
            attachment: Some((instance.into(), device.into())),
            busy: false,
            tags: Tags::new(),
        };
        (volume_id.into(), status)
    }

    fn available(volume_id: &str) -> (String, VolumeStatus) {
        (
            volume_id.into(),
            VolumeStatus {
                volume_id: volume_id.into(),
                state: VolumeState::Available,
                attachment: None,
                busy: false,
                tags: Tags::new(),
            },
        )
    }

    /// Applies every command as the cloud would answer it when all goes well.
    fn succeed(record: &mut RestoreRecord, commands: &[Command]) {
        for command in commands {
            let answer = match command {
                Command::CreateVolume { item, .. } => Answer::Made(format!("vol-new{item}")),
                Command::TakeSafetyBackup => Answer::SafetyBackup(BackupId::generate()),
                _ => Answer::Done,
            };
            command_done(record, command, Ok(answer));
        }
    }

    #[test]
    fn an_in_place_volume_restore_stops_swaps_at_the_device_and_starts_again() {
        // GIVEN an in-place restore of one volume of a running instance
        let mut record = restore(
            RestoreMode::InPlace,
            RestorePhase::StoppingInstances,
            vec![volume_item("vol-a", "i-1", "/dev/xvda")],
        );
        let mut seen = Observation {
            instances: HashMap::from([("i-1".to_owned(), InstanceState::Running)]),
            ..Default::default()
        };
        // WHEN it steps THEN it records the instance before asking to stop it
        let commands = step(&mut record, &seen, "service-instance-id");
        assert_eq!(commands, vec![Command::StopInstances(vec!["i-1".into()])]);
        assert_eq!(record.stopped_instance_ids, vec!["i-1".to_owned()]);
        // WHEN the instance is stopped THEN it moves to restoring and creates the volume with its token
        seen.instances.insert("i-1".into(), InstanceState::Stopped);
        assert!(step(&mut record, &seen, "service-instance-id").is_empty());
        assert_eq!(record.phase, RestorePhase::Restoring);
        let commands = step(&mut record, &seen, "service-instance-id");
        assert!(
            matches!(&commands[..], [Command::CreateVolume { client_token, .. }] if *client_token == volume_token(&record, "vol-a"))
        );
        succeed(&mut record, &commands);
        // WHEN the new volume is available and the old one still at the device THEN the old is detached
        seen.volumes = HashMap::from([available("vol-new0"), attached("vol-a", "i-1", "/dev/xvda")]);
        let commands = step(&mut record, &seen, "service-instance-id");
        assert_eq!(
            commands,
            vec![Command::DetachVolume { item: 0, instance_id: "i-1".into(), volume_id: "vol-a".into() }]
        );
        succeed(&mut record, &commands);
        // WHEN it is detached THEN it is marked replaced and the new one attached at the device
        seen.volumes.insert("vol-a".into(), available("vol-a").1);
        let commands = step(&mut record, &seen, "service-instance-id");
        assert!(
            matches!(&commands[..], [Command::MarkReplaced { resource_id, .. }, Command::AttachVolume { device, .. }] if resource_id == "vol-a" && device == "/dev/xvda")
        );
        succeed(&mut record, &commands);
        // WHEN the new volume shows attached THEN the item is done and the instance started again
        seen.volumes.insert("vol-new0".into(), attached("vol-new0", "i-1", "/dev/xvda").1);
        assert!(step(&mut record, &seen, "service-instance-id").is_empty());
        assert_eq!(record.items[0].status, ItemStatus::Succeeded);
        assert_eq!(record.items[0].replaced_resource_id.as_deref(), Some("vol-a"));
        assert_eq!(record.phase, RestorePhase::StartingInstances);
        assert_eq!(step(&mut record, &seen, "service-instance-id"), vec![Command::StartInstances(vec!["i-1".into()])]);
        seen.instances.insert("i-1".into(), InstanceState::Running);
        step(&mut record, &seen, "service-instance-id");
        assert_eq!(record.phase, RestorePhase::Done);
        derive_status(&mut record, Utc::now());
        assert_eq!(record.status, JobStatus::Succeeded);
    }

    #[test]
    fn an_in_place_database_restore_renames_the_original_away_and_the_restored_one_in() {
        // GIVEN an in-place restore of database "orders" (no instances to stop)
        let mut record = restore(RestoreMode::InPlace, RestorePhase::Restoring, vec![database_item("orders")]);
        let (restored, old) = database_ids(&record, "orders");
        let mut seen = Observation::default();
        // WHEN it steps THEN the snapshot is restored under a temporary id
        let commands = step(&mut record, &seen, "k");
        assert!(matches!(&commands[..], [Command::RestoreDatabase { new_db_id, .. }] if *new_db_id == restored));
        succeed(&mut record, &commands);
        // WHEN the copy is available THEN the original is renamed out of the way
        seen.databases = HashMap::from([(restored.clone(), "available".into()), ("orders".into(), "available".into())]);
        let commands = step(&mut record, &seen, "k");
        assert_eq!(commands, vec![Command::RenameDatabase { item: 0, from: "orders".into(), to: old.clone() }]);
        succeed(&mut record, &commands);
        // WHEN the original name is free THEN the restored one takes it
        seen.databases = HashMap::from([(restored.clone(), "available".into()), (old.clone(), "available".into())]);
        let commands = step(&mut record, &seen, "k");
        assert_eq!(commands, vec![Command::RenameDatabase { item: 0, from: restored.clone(), to: "orders".into() }]);
        succeed(&mut record, &commands);
        // WHEN the restored one is available under the original name THEN the old one is marked and the item done
        seen.databases = HashMap::from([("orders".into(), "available".into()), (old.clone(), "available".into())]);
        let commands = step(&mut record, &seen, "k");
        assert!(matches!(&commands[..], [Command::MarkReplaced { resource_id, .. }] if *resource_id == old));
        assert_eq!(record.items[0].status, ItemStatus::Succeeded);
        assert_eq!(record.items[0].new_resource_id.as_deref(), Some("orders"));
    }

    #[test]
    fn a_released_instance_fails_its_items_and_the_rest_goes_on() {
        // GIVEN an in-place restore over two instances, one of them terminated
        let mut record = restore(
            RestoreMode::InPlace,
            RestorePhase::StoppingInstances,
            vec![volume_item("vol-a", "i-1", "/dev/xvda"), volume_item("vol-b", "i-2", "/dev/xvda")],
        );
        let seen = Observation {
            instances: HashMap::from([("i-1".to_owned(), InstanceState::Stopped)]),
            ..Default::default()
        };
        // WHEN it steps THEN i-2's item fails with the seed's words and i-1 (already stopped) goes on
        assert!(step(&mut record, &seen, "k").is_empty());
        assert_eq!(record.items[1].error.as_deref(), Some(RELEASED));
        assert_eq!(record.phase, RestorePhase::Restoring);
        assert!(record.stopped_instance_ids.is_empty(), "an instance it did not stop is not started");
    }

    #[test]
    fn a_transient_failure_changes_nothing_and_a_refusal_fails_the_item() {
        // GIVEN a clone about to create its volume
        let mut record =
            restore(RestoreMode::Clone, RestorePhase::Restoring, vec![volume_item("vol-a", "i-1", "/dev/xvda")]);
        let commands = step(&mut record, &Observation::default(), "k");
        // WHEN the call is throttled THEN the item is as it was (the next poll calls again)
        command_done(&mut record, &commands[0], Err(CloudError::Throttled("slow".into())));
        assert_eq!(record.items[0].step, RestoreStep::NotStarted);
        assert_eq!(record.items[0].status, ItemStatus::Pending);
        // WHEN it is refused THEN the item fails with the cause
        command_done(&mut record, &commands[0], Err(CloudError::NotFound("snap-of-vol-a".into())));
        assert_eq!(record.items[0].status, ItemStatus::Failed);
        assert!(step(&mut record, &Observation::default(), "k").is_empty());
        assert_eq!(record.phase, RestorePhase::Done);
    }

    #[test]
    fn a_failed_safety_backup_ends_the_restore_before_anything_changes() {
        // GIVEN an in-place restore waiting for its safety backup
        let mut record =
            restore(RestoreMode::InPlace, RestorePhase::SafetyBackup, vec![volume_item("vol-a", "i-1", "/dev/xvda")]);
        let commands = step(&mut record, &Observation::default(), "k");
        assert_eq!(commands, vec![Command::TakeSafetyBackup]);
        succeed(&mut record, &commands);
        derive_status(&mut record, Utc::now());
        assert_eq!(record.status, JobStatus::Running);
        // WHEN the safety backup fails
        let seen = Observation { safety_backup: Some(SafetyBackup::Ended(JobStatus::Failed)), ..Default::default() };
        assert!(step(&mut record, &seen, "k").is_empty());
        // THEN the restore is done, every item failed with the cause, and nothing was stopped
        derive_status(&mut record, Utc::now());
        assert_eq!(record.status, JobStatus::Failed);
        assert!(record.error.as_deref().unwrap().contains("nothing was changed"));
        assert!(record.stopped_instance_ids.is_empty());
    }

    #[test]
    fn a_cancel_after_the_stop_still_starts_the_instances_again() {
        // GIVEN an in-place restore that stopped i-1
        let mut record =
            restore(RestoreMode::InPlace, RestorePhase::Restoring, vec![volume_item("vol-a", "i-1", "/dev/xvda")]);
        record.stopped_instance_ids = vec!["i-1".into()];
        // WHEN it is cancelled
        cancel(&mut record, Utc::now()).unwrap();
        // THEN it is Cancelled and goes on to start i-1
        assert_eq!(record.status, JobStatus::Cancelled);
        assert_eq!(record.phase, RestorePhase::StartingInstances);
        let seen = Observation {
            instances: HashMap::from([("i-1".to_owned(), InstanceState::Stopped)]),
            ..Default::default()
        };
        assert_eq!(step(&mut record, &seen, "k"), vec![Command::StartInstances(vec!["i-1".into()])]);
    }
}
