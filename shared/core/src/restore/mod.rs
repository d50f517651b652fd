//! Restores: in place (safety backup, stop, swap volumes at the same devices, swap
//! database ids, start), as a clone, or as a clone in the replication region.
//!
//! [`machine`] is the restore's state machine, pure; [`RestoreService::advance`] is the
//! shell around it: observe what the current phase needs, let the machine step, make the
//! calls it asks for, fold their answers in, save. The restore function starts a restore
//! and poll-status finishes it; any call may die without losing track, since the machine
//! only moves on what the cloud shows.

pub mod machine;
pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use tracing::{info, instrument, warn};

use crate::backup::{BackupOrigin, BackupRequest, BackupService};
use crate::clock::Clock;
use crate::cloud::{Cloud, CloudError, CloudProvider, InstanceState};
use crate::error::{Error, Result};
use crate::ids::{BackupId, RestoreId};
use crate::model::{BackupRecord, RestoreItem, RestoreMode, RestorePhase, RestoreRecord, Trigger};
use crate::records::Records;
use crate::status::JobStatus;
use crate::store::StoreError;
use crate::validate;

use machine::{Answer, Command, Observation, SafetyBackup, RELEASED};

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
    pub client_token: Option<String>,
}

/// How many observe–step–act rounds one call of [`RestoreService::advance`] makes at most:
/// enough to cross the phases that need no waiting, few enough to bound an invocation.
const ROUNDS_PER_ADVANCE: usize = 5;

/// Starting, following and cancelling restores.
#[derive(Clone)]
pub struct RestoreService {
    records: Records,
    clouds: Arc<dyn CloudProvider>,
    clock: Arc<dyn Clock>,
    backups: BackupService,
    tag_key: String,
}

impl RestoreService {
    pub fn new(
        records: Records,
        clouds: Arc<dyn CloudProvider>,
        clock: Arc<dyn Clock>,
        backups: BackupService,
        tag_key: String,
    ) -> Self {
        Self { records, clouds, clock, backups, tag_key }
    }

    /// Starts a restore of a backup point and takes its first steps.
    #[instrument(skip(self, request), fields(restore_id))]
    pub async fn create(&self, backup_id: &str, request: &RestoreRequest) -> Result<RestoreRecord> {
        let now = self.clock.now();
        let backup_id = &BackupId::parse("backup id", backup_id)?;
        if let Some(token) = &request.client_token {
            validate::identifier("client_token", token)?;
        }
        if let Some(region) = &request.region {
            validate::region("region", region)?;
        }
        let backup: BackupRecord = self.records.load(backup_id).await?;
        let (region, items) = plan::items_of(&backup, request)?;
        let in_place = request.mode == RestoreMode::InPlace;
        if in_place {
            self.check_instances_exist(&backup, &items).await?;
        }
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
            safety_backup,
            safety_backup_id: None,
            started_at: now,
            finished_at: None,
            items,
            stopped_instance_ids: Vec::new(),
            error: None,
            client_token: request.client_token.clone(),
            version: 0,
            stored_rows: Default::default(),
        };
        machine::derive_status(&mut record, now);
        tracing::Span::current().record("restore_id", record.restore_id.as_str());
        match self.records.insert(&mut record, request.client_token.as_deref()).await {
            Ok(()) => {}
            Err(StoreError::TokenUsed { existing_id }) => return self.records.load(&existing_id).await,
            Err(StoreError::LockHeld { holder, .. }) => {
                return Err(Error::conflict(
                    "RestoreAlreadyRunning",
                    format!("restore {holder} of service instance {} is still running", backup.service_instance_id),
                ))
            }
            Err(other) => return Err(other.into()),
        }
        info!(%backup_id, mode = ?record.mode, "restore record written");
        self.advance(record).await
    }

    /// In place: every instance the point covers must still exist (the seed's error otherwise).
    async fn check_instances_exist(&self, backup: &BackupRecord, items: &[RestoreItem]) -> Result<()> {
        let ids = machine::instance_ids(items);
        if ids.is_empty() {
            return Ok(());
        }
        let cloud = self.clouds.region(&backup.region)?;
        let states = cloud.describe_instances(&ids).await?;
        for id in &ids {
            let state = states.iter().find(|i| i.instance_id == *id).map(|i| i.state);
            if matches!(state, None | Some(InstanceState::Terminated | InstanceState::ShuttingDown)) {
                return Err(Error::conflict("InstanceReleased", format!("{RELEASED} ({id})")));
            }
        }
        Ok(())
    }

    /// A restore record; 404 when there is none.
    pub async fn get(&self, restore_id: &str) -> Result<RestoreRecord> {
        self.records.load(&RestoreId::parse("restore id", restore_id)?).await
    }

    /// Moves a restore on as far as the cloud allows now, and saves it.
    #[instrument(skip_all, fields(restore_id = %record.restore_id, service_instance_id = %record.service_instance_id))]
    pub async fn advance(&self, mut record: RestoreRecord) -> Result<RestoreRecord> {
        if record.phase == RestorePhase::Done {
            return Ok(record);
        }
        let cloud = self.clouds.region(&record.region)?;
        let before = record.clone();
        for _ in 0..ROUNDS_PER_ADVANCE {
            let phase = record.phase;
            let observed = match self.observe(&record, cloud.as_ref()).await {
                Ok(observed) => observed,
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, "restore step will be retried on the next poll");
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let commands = machine::step(&mut record, &observed, &self.tag_key);
            for command in &commands {
                let answer = self.act(&record, command, cloud.as_ref()).await?;
                if let Err(e) = &answer {
                    warn!(?command, error = %e, "restore call failed");
                }
                machine::command_done(&mut record, command, answer);
            }
            if commands.is_empty() && record.phase == phase {
                break;
            }
        }
        machine::derive_status(&mut record, self.clock.now());
        if record != before {
            self.records.save(&mut record).await?;
            if record.status.is_terminal() {
                info!(status = record.status.as_str(), "restore finished");
            }
        }
        Ok(record)
    }

    /// What the current phase needs to know, in one batched describe per kind.
    async fn observe(&self, record: &RestoreRecord, cloud: &dyn Cloud) -> Result<Observation, CloudError> {
        let wanted = machine::wanted(record);
        let mut observed = Observation::default();
        if !wanted.instance_ids.is_empty() {
            observed.instances =
                cloud.describe_instances(&wanted.instance_ids).await?.into_iter().map(|i| (i.instance_id, i.state)).collect();
        }
        if !wanted.volume_ids.is_empty() {
            let volumes = cloud.describe_volumes(&wanted.volume_ids).await?;
            observed.volumes = volumes.into_iter().map(|v| (v.volume_id.clone(), v)).collect();
        }
        if !wanted.database_ids.is_empty() {
            let databases = cloud.describe_databases(&wanted.database_ids).await?;
            observed.databases = databases.into_iter().map(|d| (d.db_id, d.status)).collect::<HashMap<_, _>>();
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
            Command::CreateVolume { snapshot_id, availability_zone, client_token, tags, .. } => {
                cloud.create_volume(snapshot_id, availability_zone, client_token, tags).await.map(Answer::Made)
            }
            Command::DetachVolume { instance_id, volume_id, .. } => {
                done(cloud.detach_volume(instance_id, volume_id).await)
            }
            Command::AttachVolume { instance_id, volume_id, device, .. } => {
                done(cloud.attach_volume(instance_id, volume_id, device).await)
            }
            Command::MarkReplaced { resource_id, tags } => done(cloud.tag_resource(resource_id, tags).await),
            Command::RestoreDatabase { snapshot_id, new_db_id, tags, .. } => {
                done(cloud.restore_database(snapshot_id, new_db_id, tags).await)
            }
            Command::RenameDatabase { from, to, .. } => done(cloud.rename_database(from, to).await),
        })
    }

    /// Cancels a running restore; instances it stopped are started again by the next polls.
    pub async fn cancel(&self, restore_id: &RestoreId) -> Result<RestoreRecord> {
        let mut restore: RestoreRecord = self.records.load(restore_id).await?;
        if restore.status.is_terminal() {
            return Err(Error::not_running(restore_id, restore.status));
        }
        machine::cancel(&mut restore, self.clock.now())?;
        self.records.save(&mut restore).await?;
        Ok(restore)
    }
}
