//! Restores: in place (safety backup, stop, swap volumes at the same devices, swap
//! database ids, start), as a clone, or as a clone in the replication region.
//!
//! A restore is a small state machine ([`RestorePhase`] for the whole, [`RestoreStep`]
//! per item) driven by [`Snapnest::advance_restore`]: each call moves every item as far
//! as the cloud allows right now and saves, so the restore function starts it and
//! poll-status finishes it, and any call may die without losing track. Instances this
//! restore stopped are recorded before the stop call and are started again whatever
//! happened to the items.

use serde::Deserialize;
use tracing::{info, warn};

use crate::backup::{BackupOrigin, BackupRequest};
use crate::cloud::{tag, Cloud, CloudError, InstanceState, Tags, VolumeState};
use crate::error::{Error, Result};
use crate::model::{
    BackupRecord, ResourceKind, RestoreItem, RestoreMode, RestorePhase, RestoreRecord, RestoreStep, Timestamp, Trigger,
};
use crate::status::{ItemStatus, JobStatus};
use crate::store::StoreError;
use crate::validate;
use crate::Snapnest;

/// Body of `POST /backups/{backup_id}/restores`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub mode: RestoreMode,
    /// In place only: take a backup of the current state first (default true).
    pub safety_backup: Option<bool>,
    /// Where to restore; only the replication region is valid for disaster recovery.
    pub region: Option<String>,
    pub client_token: Option<String>,
}

const RELEASED: &str = "This instance has been released.";

fn short(id: &str) -> String {
    id.rsplit('-').next().unwrap_or(id).chars().take(8).collect()
}

impl Snapnest {
    /// Starts a restore of a backup point and takes its first steps.
    pub async fn create_restore(
        &self,
        backup_id: &str,
        request: &RestoreRequest,
        now: Timestamp,
    ) -> Result<RestoreRecord> {
        validate::identifier("backup id", backup_id)?;
        if let Some(token) = &request.client_token {
            validate::identifier("client_token", token)?;
        }
        if let Some(region) = &request.region {
            validate::region("region", region)?;
        }
        let backup: BackupRecord = self.load(backup_id).await?;
        if !backup.status.is_restorable() {
            return Err(Error::conflict(
                "BackupNotRestorable",
                format!(
                    "backup {backup_id} is {}; only a Succeeded or PartiallyFailed point can be restored",
                    backup.status.as_str()
                ),
            ));
        }
        if backup.damaged {
            return Err(Error::conflict(
                "BackupDamaged",
                format!("backup {backup_id} is damaged: a snapshot of it was deleted outside snapnest"),
            ));
        }
        let (region, replicas) = match request.mode {
            RestoreMode::DisasterRecovery => {
                let replication =
                    backup.replication.as_ref().filter(|r| r.status == JobStatus::Succeeded).ok_or_else(|| {
                        Error::conflict(
                            "NotReplicated",
                            format!("backup {backup_id} has no completed copy in another region"),
                        )
                    })?;
                if request.region.as_ref().is_some_and(|r| *r != replication.region) {
                    return Err(Error::bad_request(
                        "InvalidRegion",
                        format!(
                            "region: backup {backup_id} is replicated to {}, not {}",
                            replication.region,
                            request.region.as_deref().unwrap_or("")
                        ),
                    ));
                }
                (replication.region.clone(), Some(replication))
            }
            _ => {
                if request.region.as_ref().is_some_and(|r| *r != backup.region) {
                    return Err(Error::bad_request(
                        "InvalidRegion",
                        format!(
                            "region: only a disaster_recovery restore can target another region than {}",
                            backup.region
                        ),
                    ));
                }
                (backup.region.clone(), None)
            }
        };
        let items: Vec<RestoreItem> = backup
            .items
            .iter()
            .filter(|i| i.status == ItemStatus::Succeeded && !i.released)
            .map(|i| RestoreItem {
                resource_id: i.resource_id.clone(),
                kind: i.kind,
                snapshot_id: match replicas {
                    Some(replication) => replication
                        .items
                        .iter()
                        .find(|r| r.resource_id == i.resource_id)
                        .and_then(|r| r.replica_snapshot_id.clone()),
                    None => i.snapshot_id.clone(),
                },
                new_resource_id: None,
                status: ItemStatus::Pending,
                error: None,
                instance_id: i.instance_id.clone(),
                device: i.device.clone(),
                availability_zone: if replicas.is_some() {
                    Some(format!("{region}a"))
                } else {
                    i.availability_zone.clone()
                },
                replaced_resource_id: None,
                step: RestoreStep::NotStarted,
            })
            .collect();
        if items.is_empty() {
            return Err(Error::conflict("BackupNotRestorable", format!("backup {backup_id} holds no usable snapshot")));
        }
        let in_place = request.mode == RestoreMode::InPlace;
        if in_place {
            self.check_instances_exist(&backup, &items).await?;
        }
        let safety_backup = in_place && request.safety_backup.unwrap_or(true);
        let mut record = RestoreRecord {
            restore_id: crate::backup::new_record_id("rs"),
            backup_id: backup_id.to_owned(),
            service_instance_id: backup.service_instance_id.clone(),
            mode: request.mode,
            region,
            status: JobStatus::Pending,
            phase: match (in_place, safety_backup) {
                (true, true) => RestorePhase::SafetyBackup,
                (true, false) => RestorePhase::StoppingInstances,
                (false, _) => RestorePhase::Restoring,
            },
            safety_backup,
            safety_backup_id: None,
            started_at: now,
            finished_at: None,
            items,
            stopped_instance_ids: Vec::new(),
            error: None,
            client_token: request.client_token.clone(),
            version: 0,
        };
        record.refresh_status(now);
        match self.insert(&mut record, request.client_token.as_deref()).await {
            Ok(()) => {}
            Err(StoreError::TokenUsed { existing_id }) => return self.load(&existing_id).await,
            Err(StoreError::LockHeld { holder, .. }) => {
                return Err(Error::conflict(
                    "RestoreAlreadyRunning",
                    format!("restore {holder} of service instance {} is still running", backup.service_instance_id),
                ))
            }
            Err(other) => return Err(other.into()),
        }
        info!(restore_id = %record.restore_id, backup_id, mode = ?record.mode, "restore record written");
        self.advance_restore(record, now).await
    }

    /// In place: every instance the point covers must still exist (the seed's error otherwise).
    async fn check_instances_exist(&self, backup: &BackupRecord, items: &[RestoreItem]) -> Result<()> {
        let ids = instance_ids(items);
        if ids.is_empty() {
            return Ok(());
        }
        let cloud = self.clouds.region(&backup.region)?;
        let states = cloud.describe_instances(&ids).await?;
        for id in &ids {
            let state = states.iter().find(|(i, _)| i == id).map(|(_, s)| *s);
            if matches!(state, None | Some(InstanceState::Terminated | InstanceState::ShuttingDown)) {
                return Err(Error::conflict("InstanceReleased", format!("{RELEASED} ({id})")));
            }
        }
        Ok(())
    }

    /// Moves a restore on as far as the cloud allows now, and saves it.
    pub async fn advance_restore(&self, mut record: RestoreRecord, now: Timestamp) -> Result<RestoreRecord> {
        if record.phase == RestorePhase::Done {
            return Ok(record);
        }
        let cloud = self.clouds.region(&record.region)?;
        let before = record.clone();
        // Each pass finishes a phase or stops at something still in progress.
        for _ in 0..5 {
            let phase = record.phase;
            let outcome = match phase {
                RestorePhase::SafetyBackup => self.safety_backup_step(&mut record, now).await,
                RestorePhase::StoppingInstances => stop_step(&mut record, cloud.as_ref()).await,
                RestorePhase::Restoring => {
                    restore_items_step(&mut record, cloud.as_ref(), &self.settings.tag_key).await
                }
                RestorePhase::StartingInstances => start_step(&mut record, cloud.as_ref()).await,
                RestorePhase::Done => Ok(()),
            };
            if let Err(e) = outcome {
                if e.is_retryable() {
                    warn!(restore_id = %record.restore_id, error = %e, "restore step will be retried on the next poll");
                    break;
                }
                return Err(e);
            }
            if record.phase == phase {
                break;
            }
        }
        record.refresh_status(now);
        if record != before {
            self.save(&mut record).await?;
            if record.status.is_terminal() {
                info!(restore_id = %record.restore_id, status = record.status.as_str(), "restore finished");
            }
        }
        Ok(record)
    }

    async fn safety_backup_step(&self, record: &mut RestoreRecord, now: Timestamp) -> Result<()> {
        let Some(safety_id) = record.safety_backup_id.clone() else {
            let origin = BackupOrigin { trigger: Trigger::SafetyBackup, policy_id: None };
            // The restore's own id as client token: a retried step finds the same safety backup.
            let request =
                BackupRequest { client_token: Some(format!("safety-{}", record.restore_id)), ..Default::default() };
            match self.create_backup(&record.service_instance_id, &request, origin, now).await {
                Ok(safety) => {
                    record.safety_backup_id = Some(safety.backup_id);
                    // Mark the record as started so the id is saved before anything else happens.
                    record.status = JobStatus::Running;
                    return Ok(());
                }
                Err(Error::Conflict { message, .. }) => {
                    abort(record, format!("the safety backup could not start: {message}; nothing was changed"));
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        };
        let safety: BackupRecord = self.load(&safety_id).await?;
        match safety.status {
            JobStatus::Succeeded => record.phase = RestorePhase::StoppingInstances,
            status if status.is_terminal() => {
                abort(record, format!("safety backup {safety_id} ended {}; nothing was changed", status.as_str()))
            }
            _ => {}
        }
        Ok(())
    }

    /// A restore record; 404 when there is none.
    pub async fn get_restore(&self, restore_id: &str) -> Result<RestoreRecord> {
        validate::identifier("restore id", restore_id)?;
        self.load(restore_id).await
    }
}

/// Ends a restore before it touched anything.
fn abort(record: &mut RestoreRecord, cause: String) {
    for item in record.items.iter_mut() {
        item.fail(cause.clone());
    }
    record.error = Some(cause);
    record.phase = RestorePhase::Done;
}

/// The EC2 instances the items' volumes belong to, each once.
fn instance_ids(items: &[RestoreItem]) -> Vec<String> {
    let mut ids: Vec<String> = items.iter().filter_map(|i| i.instance_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Tags on what a restore creates: snapnest's and, in place, the service instance's own tag,
/// so the next backup's discovery finds a database restored under its original id (a clone
/// is not part of the service instance).
fn restore_tags(record: &RestoreRecord, source: &str, tag_key: &str) -> Tags {
    let mut tags = Tags::from([
        (tag::RESTORE_ID.to_owned(), record.restore_id.clone()),
        (tag::SERVICE_INSTANCE.to_owned(), record.service_instance_id.clone()),
        (tag::BACKUP_ID.to_owned(), record.backup_id.clone()),
        (tag::SOURCE_VOLUME.to_owned(), source.to_owned()),
        (tag::MANAGED.to_owned(), "true".to_owned()),
    ]);
    if record.mode == RestoreMode::InPlace {
        tags.insert(tag_key.to_owned(), record.service_instance_id.clone());
    }
    tags
}

async fn stop_step(record: &mut RestoreRecord, cloud: &dyn Cloud) -> Result<()> {
    let ids = instance_ids(&record.items);
    let states = cloud.describe_instances(&ids).await?;
    let state_of = |id: &str| states.iter().find(|(i, _)| i == id).map(|(_, s)| *s);
    for item in record.items.iter_mut().filter(|i| i.status == ItemStatus::Pending) {
        if let Some(id) = &item.instance_id {
            if matches!(state_of(id), None | Some(InstanceState::Terminated | InstanceState::ShuttingDown)) {
                item.fail(RELEASED);
            }
        }
    }
    let live: Vec<String> = ids
        .iter()
        .filter(|id| !matches!(state_of(id), None | Some(InstanceState::Terminated | InstanceState::ShuttingDown)))
        .cloned()
        .collect();
    if record.stopped_instance_ids.is_empty() {
        // Only instances that were running are ours to start again afterwards.
        let running: Vec<String> =
            live.iter().filter(|id| state_of(id) != Some(InstanceState::Stopped)).cloned().collect();
        if !running.is_empty() {
            record.stopped_instance_ids = running.clone();
            record.status = JobStatus::Running;
            cloud.stop_instances(&running).await?;
            return Ok(());
        }
    }
    if live.iter().all(|id| state_of(id) == Some(InstanceState::Stopped)) {
        record.phase = RestorePhase::Restoring;
    }
    Ok(())
}

async fn start_step(record: &mut RestoreRecord, cloud: &dyn Cloud) -> Result<()> {
    let ids = record.stopped_instance_ids.clone();
    if ids.is_empty() {
        record.phase = RestorePhase::Done;
        return Ok(());
    }
    let states = cloud.describe_instances(&ids).await?;
    let waiting: Vec<String> = states
        .iter()
        .filter(|(_, s)| !matches!(s, InstanceState::Running | InstanceState::Terminated | InstanceState::ShuttingDown))
        .map(|(id, _)| id.clone())
        .collect();
    if waiting.is_empty() {
        record.phase = RestorePhase::Done;
        return Ok(());
    }
    let to_start: Vec<String> =
        states.iter().filter(|(_, s)| *s == InstanceState::Stopped).map(|(id, _)| id.clone()).collect();
    if !to_start.is_empty() {
        cloud.start_instances(&to_start).await?;
    }
    Ok(())
}

async fn restore_items_step(record: &mut RestoreRecord, cloud: &dyn Cloud, tag_key: &str) -> Result<()> {
    let in_place = record.mode == RestoreMode::InPlace;
    let suffix = short(&record.restore_id);
    for n in 0..record.items.len() {
        if record.items[n].status.is_terminal() {
            continue;
        }
        let tags = restore_tags(record, &record.items[n].resource_id, tag_key);
        let item = &mut record.items[n];
        let outcome = match item.kind {
            ResourceKind::Volume => advance_volume(item, cloud, in_place, &tags).await,
            ResourceKind::Database => advance_database(item, cloud, in_place, &suffix, &tags).await,
        };
        match outcome {
            Ok(()) => {}
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => item.fail(e.to_string()),
        }
    }
    if record.items.iter().all(|i| i.status.is_terminal()) {
        record.phase = if in_place { RestorePhase::StartingInstances } else { RestorePhase::Done };
    }
    Ok(())
}

async fn advance_volume(
    item: &mut RestoreItem,
    cloud: &dyn Cloud,
    in_place: bool,
    tags: &Tags,
) -> Result<(), CloudError> {
    let snapshot_id = item.snapshot_id.clone().unwrap_or_default();
    match item.step {
        RestoreStep::NotStarted => {
            let az = item.availability_zone.clone().unwrap_or_default();
            let volume_id =
                cloud.create_volume(&snapshot_id, &az, &volume_token(tags, &item.resource_id), tags).await?;
            item.new_resource_id = Some(volume_id);
            item.status = ItemStatus::Running;
            item.step = RestoreStep::Creating;
        }
        RestoreStep::Creating => {
            let new_id = item.new_resource_id.clone().unwrap_or_default();
            let status = describe_volume(cloud, &new_id).await?;
            match status.map(|s| s.state) {
                Some(VolumeState::Available) if !in_place => finish(item),
                Some(VolumeState::Available) => {
                    let (instance, device) =
                        (item.instance_id.clone().unwrap_or_default(), item.device.clone().unwrap_or_default());
                    // The volume at the device now (the original, unless someone swapped it since).
                    let current = describe_volume(cloud, &item.resource_id).await?;
                    match current.and_then(|c| c.attachment.filter(|(i, d)| *i == instance && *d == device)) {
                        Some(_) => {
                            cloud.detach_volume(&instance, &item.resource_id).await?;
                            item.replaced_resource_id = Some(item.resource_id.clone());
                            item.step = RestoreStep::DetachingOld;
                        }
                        None => attach_new(item, cloud).await?,
                    }
                }
                Some(VolumeState::Error) | None => {
                    item.fail(format!("volume {new_id} could not be created from {snapshot_id}"))
                }
                _ => {}
            }
        }
        RestoreStep::DetachingOld => {
            let old = item.replaced_resource_id.clone().unwrap_or_default();
            if describe_volume(cloud, &old).await?.is_some_and(|s| s.attachment.is_none()) {
                let mark = Tags::from([(tag::REPLACED_BY_RESTORE.to_owned(), tags[tag::RESTORE_ID].clone())]);
                cloud.tag_resource(&old, &mark).await?;
                attach_new(item, cloud).await?;
            }
        }
        RestoreStep::AttachingNew => {
            let new_id = item.new_resource_id.clone().unwrap_or_default();
            let want = (item.instance_id.clone().unwrap_or_default(), item.device.clone().unwrap_or_default());
            if describe_volume(cloud, &new_id).await?.and_then(|s| s.attachment) == Some(want) {
                finish(item);
            }
        }
        _ => {}
    }
    Ok(())
}

async fn attach_new(item: &mut RestoreItem, cloud: &dyn Cloud) -> Result<(), CloudError> {
    let (instance, device) = (item.instance_id.clone().unwrap_or_default(), item.device.clone().unwrap_or_default());
    let new_id = item.new_resource_id.clone().unwrap_or_default();
    cloud.attach_volume(&instance, &new_id, &device).await?;
    item.step = RestoreStep::AttachingNew;
    Ok(())
}

async fn describe_volume(cloud: &dyn Cloud, id: &str) -> Result<Option<crate::cloud::VolumeStatus>, CloudError> {
    let ids = [id.to_owned()];
    Ok(cloud.describe_volumes(&ids).await?.into_iter().next())
}

async fn database_status(cloud: &dyn Cloud, id: &str) -> Result<Option<String>, CloudError> {
    let ids = [id.to_owned()];
    Ok(cloud.describe_databases(&ids).await?.into_iter().next().map(|d| d.status))
}

/// The `CreateVolume` client token of one item of a restore: the same on every attempt, so a
/// call retried after a crash or a lost answer finds the volume the first one made.
fn volume_token(tags: &Tags, resource_id: &str) -> String {
    format!("{}-{resource_id}", tags[tag::RESTORE_ID]).chars().take(64).collect()
}

fn finish(item: &mut RestoreItem) {
    item.step = RestoreStep::Done;
    item.status = ItemStatus::Succeeded;
}

/// In place: restore to a temporary id, rename the original out of the way, rename the
/// restored one to the original id (the seed's "rename restored databases back").
async fn advance_database(
    item: &mut RestoreItem,
    cloud: &dyn Cloud,
    in_place: bool,
    suffix: &str,
    tags: &Tags,
) -> Result<(), CloudError> {
    let original = item.resource_id.clone();
    let restored = format!("{original}-{}{suffix}", if in_place { "rst" } else { "clone" });
    let old = format!("{original}-old{suffix}");
    match item.step {
        RestoreStep::NotStarted => {
            let snapshot_id = item.snapshot_id.clone().unwrap_or_default();
            match cloud.restore_database(&snapshot_id, &restored, tags).await {
                Ok(()) | Err(CloudError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
            item.new_resource_id = Some(restored);
            item.status = ItemStatus::Running;
            item.step = RestoreStep::Creating;
        }
        RestoreStep::Creating => match database_status(cloud, &restored).await?.as_deref() {
            Some("available") if !in_place => finish(item),
            Some("available") => {
                if database_status(cloud, &original).await?.is_some() {
                    cloud.rename_database(&original, &old).await?;
                    item.replaced_resource_id = Some(old);
                }
                item.step = RestoreStep::RenamingOld;
            }
            Some("failed" | "incompatible-restore" | "incompatible-parameters") | None => {
                item.fail(format!("database {restored} could not be restored"))
            }
            _ => {}
        },
        RestoreStep::RenamingOld => {
            let original_gone = database_status(cloud, &original).await?.is_none();
            let renamed_ready = item.replaced_resource_id.is_none()
                || database_status(cloud, &old).await?.as_deref() == Some("available");
            if original_gone && renamed_ready {
                cloud.rename_database(&restored, &original).await?;
                item.step = RestoreStep::RenamingNew;
            }
        }
        RestoreStep::RenamingNew => {
            let restored_in_service = database_status(cloud, &original).await?.as_deref() == Some("available");
            if restored_in_service {
                if let Some(old) = &item.replaced_resource_id {
                    let mark = Tags::from([(tag::REPLACED_BY_RESTORE.to_owned(), tags[tag::RESTORE_ID].clone())]);
                    cloud.tag_resource(old, &mark).await?;
                }
                item.new_resource_id = Some(original);
                finish(item);
            }
        }
        _ => {}
    }
    Ok(())
}
