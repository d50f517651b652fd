//! Restores: in place (safety backup, stop, swap volumes at the same devices, swap
//! database ids, keep what was replaced, start — or roll back), as a clone, or as a clone
//! in the replication region.
//!
//! [`plan`] decides what a restore will do; [`machine`] is its state machine, pure;
//! [`RestoreService::advance`] is the shell around it: observe what the restore touches,
//! let the machine step, save the intent, make the calls it asks for, fold their answers
//! in, save. The restore function starts a restore and poll-status finishes it; a run may
//! die at any point without losing track, and two runs cannot both act on one restore
//! (the second's save of its intent loses, before it calls the cloud).

pub mod launch;
pub mod machine;
pub mod plan;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;
use tracing::{info, instrument, warn};

use crate::access::Caller;
use crate::backup::{BackupOrigin, BackupRequest, BackupService};
use crate::clock::Clock;
use crate::cloud::{tag, Cloud, CloudError, CloudProvider, DeleteOutcome, InstanceState};
use crate::error::{Error, Result};
use crate::ids::{BackupId, RestoreId};
use crate::model::{
    BackupRecord, Change, CloneTarget, Lease, OnFailure, ResourceKind, RestoreItem, RestoreMode, RestorePhase,
    RestoreRecord, Trigger,
};
use crate::records::Records;
use crate::status::JobStatus;
use crate::store::StoreError;
use crate::validate;

use machine::{Answer, Command, Observation, Rules, SafetyBackup, Wanted, RELEASED};
use plan::{Current, RestorePlan};

/// Body of `POST /backups/{backup_id}/restores`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub mode: RestoreMode,
    /// In place only: take a backup of the current state first (default true).
    pub safety_backup: Option<bool>,
    /// Where to restore; only the replication region is valid for disaster recovery.
    pub region: Option<String>,
    /// In place only: restore a `PartiallyFailed` point, leaving what it lacks as it is now.
    pub allow_partial: Option<bool>,
    /// In place only: on a failure, put everything back (default) or only what failed.
    pub on_failure: Option<OnFailure>,
    /// Only these volumes or databases of the point (default: all of them).
    pub resource_ids: Option<Vec<String>>,
    /// Answer the plan (200) and change nothing.
    pub dry_run: Option<bool>,
    pub client_token: Option<String>,
    /// Clone and disaster recovery: launch the instances again, or make loose volumes.
    pub target: Option<CloneTarget>,
    /// Launched instances: their type (disaster recovery: required).
    pub instance_type: Option<String>,
    /// Launched instances: their subnet (disaster recovery: required, in the destination).
    pub subnet_id: Option<String>,
    /// Launched instances: their security groups (disaster recovery: required).
    pub security_group_ids: Option<Vec<String>>,
    /// Launched instances: their key pair (the backed-up one's in a clone; none in another
    /// region unless named).
    pub key_name: Option<String>,
    /// Loose volumes: their availability zone (disaster recovery: required).
    pub availability_zone: Option<String>,
    /// Databases: their DB subnet group (disaster recovery: required).
    pub db_subnet_group: Option<String>,
    /// Databases: their VPC security groups.
    pub db_security_group_ids: Option<Vec<String>>,
}

impl RestoreRequest {
    /// A request of `mode` with every option left to its default.
    pub fn new(mode: RestoreMode) -> Self {
        Self {
            mode,
            safety_backup: None,
            region: None,
            allow_partial: None,
            on_failure: None,
            resource_ids: None,
            dry_run: None,
            client_token: None,
            target: None,
            instance_type: None,
            subnet_id: None,
            security_group_ids: None,
            key_name: None,
            availability_zone: None,
            db_subnet_group: None,
            db_security_group_ids: None,
        }
    }
}

/// What `POST /backups/{backup_id}/restores` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// A dry run: what the restore would do now.
    Plan(Box<RestorePlan>),
    Restore(Box<RestoreRecord>),
}

/// How many observe–step–act rounds one call of [`RestoreService::advance`] makes at most:
/// enough to cross the phases that need no waiting, few enough to bound an invocation.
const ROUNDS_PER_ADVANCE: usize = 5;

/// Conditional writes of the backup point a restore makes before it gives up on a race.
const HOLD_ATTEMPTS: usize = 5;

/// Starting, following, cancelling and rolling back restores.
#[derive(Clone)]
pub struct RestoreService {
    records: Records,
    clouds: Arc<dyn CloudProvider>,
    clock: Arc<dyn Clock>,
    backups: BackupService,
    rules: Rules,
    caller: Arc<Caller>,
}

impl RestoreService {
    pub fn new(
        records: Records,
        clouds: Arc<dyn CloudProvider>,
        clock: Arc<dyn Clock>,
        backups: BackupService,
        rules: Rules,
        caller: Arc<Caller>,
    ) -> Self {
        Self { records, clouds, clock, backups, rules, caller }
    }

    /// Plans a restore of a backup point; unless it is a dry run, starts it and takes its
    /// first steps.
    #[instrument(skip(self, request), fields(restore_id))]
    pub async fn create(&self, backup_id: &str, request: &RestoreRequest) -> Result<Started> {
        let now = self.clock.now();
        let backup_id = &BackupId::parse("backup id", backup_id)?;
        if let Some(token) = &request.client_token {
            validate::identifier("client_token", token)?;
        }
        if let Some(region) = &request.region {
            validate::region("region", region)?;
        }
        let backup: BackupRecord = self.records.load(backup_id).await?;
        self.caller.check(&backup.owners, "backup", backup_id)?;
        let (region, mut items) = plan::items_of(&backup, request)?;
        let instances = plan::destination(&backup, request, &region, &mut items)?;
        let in_place = request.mode == RestoreMode::InPlace;
        let safety_backup = in_place && request.safety_backup.unwrap_or(true);
        let mut record = RestoreRecord {
            restore_id: RestoreId::generate(),
            backup_id: backup_id.clone(),
            service_instance_id: backup.service_instance_id.clone(),
            mode: request.mode,
            region,
            status: JobStatus::Pending,
            phase: match (in_place, safety_backup) {
                (true, true) => RestorePhase::SafetyBackup,
                (true, false) => RestorePhase::StoppingInstances,
                (false, _) => RestorePhase::Restoring,
            },
            phase_started_at: Some(now),
            on_failure: request.on_failure.unwrap_or_default(),
            safety_backup,
            safety_backup_id: None,
            started_at: now,
            finished_at: None,
            items,
            instances,
            stopped_instance_ids: Vec::new(),
            service_changed: false,
            rollback: None,
            kept_until: None,
            owners: backup.owners.clone(),
            lease: None,
            error: None,
            client_token: request.client_token.clone(),
            requested_by: Some(self.caller.principal.clone()),
            changes: Vec::new(),
            version: 0,
            stored_rows: Default::default(),
        };
        let current = if in_place { self.current(&record).await? } else { Current::default() };
        if in_place {
            check_instances_exist(&record.items, &current)?;
            plan::against(&mut record, &current);
        }
        if request.dry_run == Some(true) {
            let plan = RestorePlan::of(&record, &current, &backup, now + self.rules.keep_replaced);
            return Ok(Started::Plan(Box::new(plan)));
        }
        machine::derive_status(&mut record, now);
        tracing::Span::current().record("restore_id", record.restore_id.as_str());
        let run = uuid::Uuid::new_v4().to_string();
        record.lease = Lease::take(&run, now);
        self.hold_point(backup, &record.restore_id).await?;
        let refused = match self.records.insert(&mut record, request.client_token.as_deref()).await {
            Ok(()) => None,
            Err(StoreError::TokenUsed { existing_id }) => {
                Some(Ok(Started::Restore(Box::new(self.records.load(&existing_id).await?))))
            }
            Err(StoreError::LockHeld { holder, .. }) => Some(Err(Error::conflict(
                "RestoreAlreadyRunning",
                format!("restore {holder} of service instance {} is still running", record.service_instance_id),
            ))),
            Err(other) => Some(Err(other.into())),
        };
        if let Some(answer) = refused {
            self.release_point(&record).await;
            return answer;
        }
        info!(%backup_id, mode = ?record.mode, "restore record written");
        Ok(Started::Restore(Box::new(self.advance_as(record, &run).await?)))
    }

    /// What the cloud holds now of what an in-place restore will replace.
    async fn current(&self, record: &RestoreRecord) -> Result<Current> {
        let cloud = self.clouds.region(&record.region)?;
        let ids = machine::instance_ids(&record.items);
        let instances = if ids.is_empty() { Vec::new() } else { cloud.describe_instances(&ids).await? };
        let db_ids: Vec<String> =
            record.items.iter().filter(|i| i.kind == ResourceKind::Database).map(|i| i.resource_id.clone()).collect();
        let databases = if db_ids.is_empty() { Vec::new() } else { cloud.describe_databases(&db_ids).await? };
        Ok(Current {
            instances: instances.into_iter().map(|i| (i.instance_id.clone(), i)).collect(),
            databases: databases.into_iter().map(|d| d.db_id).collect::<HashSet<_>>(),
        })
    }

    /// A restore record; 404 when there is none, or it is not the caller's.
    pub async fn get(&self, restore_id: &str) -> Result<RestoreRecord> {
        let record: RestoreRecord = self.records.load(&RestoreId::parse("restore id", restore_id)?).await?;
        self.caller.check(&record.owners, "restore", restore_id)?;
        Ok(record)
    }

    /// Moves a restore on as far as the cloud allows now, and saves it: the intent of every
    /// call before the call, the answers after. A run acts only while it holds the restore's
    /// lease, taken with a conditional save before its first call: of two runs at once, the
    /// second finds it held and leaves the restore alone.
    pub async fn advance(&self, record: RestoreRecord) -> Result<RestoreRecord> {
        let run = uuid::Uuid::new_v4().to_string();
        self.advance_as(record, &run).await
    }

    #[instrument(skip_all, fields(restore_id = %record.restore_id, service_instance_id = %record.service_instance_id))]
    async fn advance_as(&self, mut record: RestoreRecord, run: &str) -> Result<RestoreRecord> {
        if record.phase == RestorePhase::Done {
            return Ok(record);
        }
        let now = self.clock.now();
        if Lease::held_by_another(&record.lease, run, now) {
            return Ok(record);
        }
        let cloud = self.clouds.region(&record.region)?;
        let mut saved = record.clone();
        record.lease = Lease::take(run, now);
        for _ in 0..ROUNDS_PER_ADVANCE {
            let phase = record.phase;
            let observed = match self.observe(&machine::wanted(&record), cloud.as_ref()).await {
                Ok(observed) => observed,
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, "restore step will be retried on the next poll");
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let commands = machine::step(&mut record, &observed, &self.rules);
            // The lease is written with the first intent: a pass that only waits writes nothing.
            let unchanged = RestoreRecord { lease: saved.lease.clone(), ..record.clone() } == saved;
            if !(commands.is_empty() && unchanged) {
                self.save_if_changed(&mut record, &mut saved).await?;
            }
            for command in &commands {
                let answer = self.act(&record, command, cloud.as_ref()).await?;
                if let Err(e) = &answer {
                    warn!(?command, error = %e, "restore call failed");
                }
                machine::command_done(&mut record, command, answer, self.clock.now());
            }
            self.save_if_changed(&mut record, &mut saved).await?;
            if commands.is_empty() && record.phase == phase {
                break;
            }
        }
        record.lease = None;
        self.save_if_changed(&mut record, &mut saved).await?;
        Ok(record)
    }

    async fn save_if_changed(&self, record: &mut RestoreRecord, saved: &mut RestoreRecord) -> Result<()> {
        machine::derive_status(record, self.clock.now());
        if record != saved {
            self.records.save(record).await?;
            if record.status.is_terminal() && !saved.status.is_terminal() {
                // RestoreFailed ([`crate::metrics`]) raises the alarm on a restore that failed.
                crate::metrics::emit(&crate::metrics::restore_finished(record, self.clock.now()));
                if crate::metrics::restore_failed(record) {
                    warn!(status = record.status.as_str(), error = ?record.error, "restore failed");
                } else {
                    info!(status = record.status.as_str(), error = ?record.error, "restore finished");
                }
            }
            if record.phase == RestorePhase::Done && saved.phase != RestorePhase::Done {
                self.release_point(record).await;
            }
            *saved = record.clone();
        }
        Ok(())
    }

    /// Writes the restore onto its backup point, so that expire-retention leaves the point's
    /// snapshots alone until it is done. One conditional write decides against an expiry
    /// starting at the same moment: whichever saves first wins, the other is refused.
    async fn hold_point(&self, mut backup: BackupRecord, restore_id: &RestoreId) -> Result<()> {
        for _ in 0..HOLD_ATTEMPTS {
            if let Some(since) = backup.expiring_since {
                return Err(Error::expiring(&backup.backup_id, since));
            }
            backup.restores_running.push(restore_id.clone());
            match self.records.save(&mut backup).await {
                Err(Error::Conflict { code: "ConcurrentModification", .. }) => {
                    backup = self.records.load(&backup.backup_id).await?;
                }
                other => return other,
            }
        }
        Err(Error::conflict("ConcurrentModification", format!("backup {} is changing; retry", backup.backup_id)))
    }

    /// Takes a finished restore off its point. Best effort: expire-retention also drops the
    /// restores that ended from the points they held.
    async fn release_point(&self, restore: &RestoreRecord) {
        for _ in 0..HOLD_ATTEMPTS {
            let mut backup: BackupRecord = match self.records.load(&restore.backup_id).await {
                Ok(backup) => backup,
                Err(e) => return warn!(error = %e, "backup point not released; expire-retention will"),
            };
            let before = backup.restores_running.len();
            backup.restores_running.retain(|id| *id != restore.restore_id);
            if backup.restores_running.len() == before {
                return;
            }
            match self.records.save(&mut backup).await {
                Err(Error::Conflict { code: "ConcurrentModification", .. }) => continue,
                Err(e) => return warn!(error = %e, "backup point not released; expire-retention will"),
                Ok(()) => return,
            }
        }
    }

    /// What the machine wants to know, in one batched describe per kind.
    async fn observe(&self, wanted: &Wanted, cloud: &dyn Cloud) -> Result<Observation, CloudError> {
        let mut observed = Observation { now: self.clock.now(), ..Default::default() };
        if !wanted.instance_ids.is_empty() {
            let instances = cloud.describe_instances(&wanted.instance_ids).await?;
            observed.instances = instances.into_iter().map(|i| (i.instance_id.clone(), i)).collect();
        }
        if !wanted.volume_ids.is_empty() {
            let volumes = cloud.describe_volumes(&wanted.volume_ids).await?;
            observed.volumes = volumes.into_iter().map(|v| (v.volume_id.clone(), v)).collect();
        }
        if !wanted.database_ids.is_empty() {
            let databases = cloud.describe_databases(&wanted.database_ids).await?;
            observed.databases = databases.into_iter().map(|d| (d.db_id.clone(), d)).collect();
        }
        for name in &wanted.image_names {
            observed.images_named.insert(name.clone(), cloud.find_image(name).await?);
        }
        if let Some(restore_id) = &wanted.launched_by {
            for (instance_id, tags) in cloud.find_instances(tag::RESTORE_ID, restore_id).await? {
                if let Some(source) = tags.get(tag::CLONE_OF) {
                    observed.launched.insert(source.clone(), instance_id);
                }
            }
        }
        if !wanted.image_ids.is_empty() {
            let images = cloud.describe_images(&wanted.image_ids).await?;
            observed.images = images.into_iter().map(|i| (i.image_id.clone(), i)).collect();
        }
        if let Some(safety_id) = &wanted.safety_backup {
            observed.safety_backup = Some(match self.records.load::<BackupRecord>(safety_id).await {
                Ok(safety) if safety.status == JobStatus::Succeeded => SafetyBackup::Succeeded,
                Ok(safety) if safety.status.is_terminal() => SafetyBackup::Ended(safety.status),
                Ok(_) => SafetyBackup::Running,
                Err(e) => {
                    warn!(%safety_id, error = %e, "safety backup not readable this pass");
                    SafetyBackup::Unknown
                }
            });
        }
        Ok(observed)
    }

    /// Makes one call the machine asked for. The outer error is the store's (the pass
    /// stops); the inner one is the cloud's answer, for the machine to judge.
    async fn act(
        &self,
        record: &RestoreRecord,
        command: &Command,
        cloud: &dyn Cloud,
    ) -> Result<Result<Answer, CloudError>> {
        let done = |outcome: Result<(), CloudError>| outcome.map(|()| Answer::Done);
        let deleted = |outcome: Result<DeleteOutcome, CloudError>| outcome.map(|_| Answer::Done);
        Ok(match command {
            Command::TakeSafetyBackup => {
                let origin = BackupOrigin { trigger: Trigger::SafetyBackup, policy_id: None };
                // The restore's own id as client token: a repeated step finds the same safety backup.
                let request =
                    BackupRequest { client_token: Some(format!("safety-{}", record.restore_id)), ..Default::default() };
                match self.backups.create(&record.service_instance_id, &request, origin).await {
                    Ok(safety) => Ok(Answer::SafetyBackup(safety.backup_id)),
                    Err(Error::Conflict { message, .. }) => {
                        Err(CloudError::Rejected { code: "SafetyBackupRefused".into(), message })
                    }
                    Err(Error::Cloud(e)) => Err(e),
                    Err(e) => return Err(e),
                }
            }
            Command::StopInstances(ids) => done(cloud.stop_instances(ids).await),
            Command::StartInstances(ids) => done(cloud.start_instances(ids).await),
            Command::CreateVolume { snapshot_id, availability_zone, client_token, settings, tags, .. } => cloud
                .create_volume(snapshot_id, availability_zone, client_token, settings, tags)
                .await
                .map(Answer::Made),
            Command::DetachVolume { instance_id, volume_id, .. } => {
                done(cloud.detach_volume(instance_id, volume_id).await)
            }
            Command::AttachVolume { instance_id, volume_id, device, .. } => {
                done(cloud.attach_volume(instance_id, volume_id, device).await)
            }
            Command::SetDeleteOnTermination { instance_id, device, .. } => {
                done(cloud.set_delete_on_termination(instance_id, device, true).await)
            }
            Command::DeleteVolume { volume_id, .. } => deleted(cloud.delete_volume(volume_id).await),
            Command::RestoreDatabase { snapshot_id, new_db_id, settings, tags, .. } => {
                done(cloud.restore_database(snapshot_id, new_db_id, settings, tags).await)
            }
            Command::RenameDatabase { from, to, .. } => done(cloud.rename_database(from, to).await),
            Command::DeleteDatabase { db_id, .. } => deleted(cloud.delete_database(db_id).await),
            Command::ProtectDatabase { db_id, protect, .. } => {
                done(cloud.set_deletion_protection(db_id, *protect).await)
            }
            Command::Retag { resource_id, add, remove, .. } => {
                let tagged = if add.is_empty() { Ok(()) } else { cloud.tag_resource(resource_id, add).await };
                match tagged {
                    Ok(()) if !remove.is_empty() => done(cloud.untag_resource(resource_id, remove).await),
                    other => done(other),
                }
            }
            Command::DeleteReplaced { kind: ResourceKind::Volume, resource_id, .. } => {
                deleted(cloud.delete_volume(resource_id).await)
            }
            Command::DeleteReplaced { kind: ResourceKind::Database, resource_id, .. } => {
                deleted(cloud.delete_database(resource_id).await)
            }
            Command::RegisterImage { spec, tags, .. } => cloud.register_image(spec, tags).await.map(Answer::Made),
            Command::RunInstance { image_id, settings, devices, client_token, tags, .. } => {
                cloud.run_instance(image_id, settings, devices, client_token, tags).await.map(Answer::Made)
            }
            Command::DeregisterImage { image_id, .. } => deleted(cloud.deregister_image(image_id).await),
        })
    }

    /// Cancels a running restore. Before it changed anything it just ends; after, an
    /// in-place restore rolls back (the next polls carry that out).
    pub async fn cancel(&self, restore_id: &RestoreId) -> Result<RestoreRecord> {
        let mut restore: RestoreRecord = self.records.load(restore_id).await?;
        self.caller.check(&restore.owners, "restore", restore_id)?;
        if restore.status.is_terminal() {
            return Err(Error::not_running(restore_id, restore.status));
        }
        if restore.status == JobStatus::RollingBack {
            return Err(Error::conflict(
                "RestoreRollingBack",
                format!("restore {restore_id} is already rolling back: {}", restore.error.clone().unwrap_or_default()),
            ));
        }
        let now = self.clock.now();
        machine::cancel(&mut restore, now)?;
        restore.changes.push(Change::new("cancel", &self.caller.principal, now));
        self.records.save(&mut restore).await?;
        if restore.phase == RestorePhase::Done {
            self.release_point(&restore).await;
        }
        info!(%restore_id, status = restore.status.as_str(), "restore cancelled");
        Ok(restore)
    }

    /// Puts back what a finished in-place restore replaced, while it is kept: instances
    /// stopped, originals swapped back in, what the restore made deleted, instances started.
    #[instrument(skip(self))]
    pub async fn rollback(&self, restore_id: &str) -> Result<RestoreRecord> {
        let restore_id = RestoreId::parse("restore id", restore_id)?;
        let mut restore: RestoreRecord = self.records.load(&restore_id).await?;
        self.caller.check(&restore.owners, "restore", &restore_id)?;
        let now = self.clock.now();
        if let Some(refusal) = machine::rollback_refusal(&restore, now) {
            return Err(Error::conflict(
                "RollbackNotPossible",
                format!("restore {restore_id} cannot be rolled back: {refusal}"),
            ));
        }
        machine::request_rollback(&mut restore, now)?;
        restore.changes.push(Change::new("roll back", &self.caller.principal, now));
        match self.records.save(&mut restore).await {
            Ok(()) => {}
            Err(Error::Store(StoreError::LockHeld { holder, .. })) => {
                return Err(Error::conflict(
                    "RestoreAlreadyRunning",
                    format!("restore {holder} of service instance {} is running", restore.service_instance_id),
                ))
            }
            Err(e) => return Err(e),
        }
        info!(%restore_id, "roll-back requested");
        self.advance(restore).await
    }

    /// Deletes what finished in-place restores replaced once it is no longer kept — only
    /// resources still tagged as replaced by that restore. Returns how many were deleted.
    pub async fn expire_replaced(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut deleted = 0;
        for mut restore in self.records.due::<RestoreRecord>(now).await? {
            let cloud = self.clouds.region(&restore.region)?;
            let mut saved = restore.clone();
            let observed = self.observe(&machine::wanted_replaced(&restore), cloud.as_ref()).await?;
            let commands = machine::expire_replaced(&mut restore, &observed);
            for command in &commands {
                let answer = self.act(&restore, command, cloud.as_ref()).await?;
                if let Err(e) = &answer {
                    warn!(restore_id = %restore.restore_id, ?command, error = %e, "replaced resource not deleted yet");
                }
                deleted += usize::from(answer.is_ok());
                machine::command_done(&mut restore, command, answer, now);
            }
            self.save_if_changed(&mut restore, &mut saved).await?;
        }
        Ok(deleted)
    }
}

/// In place: every instance the point covers must still exist (the seed's error otherwise).
fn check_instances_exist(items: &[RestoreItem], current: &Current) -> Result<()> {
    for id in machine::instance_ids(items) {
        let state = current.instances.get(&id).map(|i| i.state);
        if matches!(state, None | Some(InstanceState::Terminated | InstanceState::ShuttingDown)) {
            return Err(Error::conflict("InstanceReleased", format!("{RELEASED} ({id})")));
        }
    }
    Ok(())
}
