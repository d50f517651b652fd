//! Backups: the use case around the backup lifecycle. [`BackupService`] observes (discovery,
//! the snapshots' states), lets [`lifecycle`] decide, acts (the snapshot calls) and saves.
//!
//! Crash safety: the record is written (Pending, with a start lease) before any cloud
//! call, and every snapshot carries the backup id in its tags. If the invocation dies
//! before it saved the snapshot ids, poll-status takes over once the lease ran out and first
//! adopts the snapshots already tagged with the backup id, so a retried start never
//! snapshots twice.

pub mod lifecycle;
pub mod request;

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{info, instrument, warn};

use crate::access::Caller;
use crate::clock::Clock;
use crate::cloud::{tag, Cloud, CloudError, CloudProvider, DeleteOutcome, SnapshotStatus};
use crate::error::{Error, Result};
use crate::ids::BackupId;
use crate::model::{BackupRecord, Change, Replication, ResourceKind, Timestamp, Trigger};
use crate::queue::{Work, WorkQueue};
use crate::records::Records;
use crate::snapshots::{db_snapshot_name, delete_snapshot, describe_snapshots, snapshot_tags};
use crate::status::{ItemStatus, JobStatus};
use crate::store::{Cursor, StoreError};
use crate::validate;

use futures_util::StreamExt;
use lifecycle::SnapshotCall;

/// Snapshot calls a backup's start makes at once. The AWS adapter lets 8 calls per API family
/// and region in flight and the SDK's adaptive retry paces what EC2 still throttles (Amazon
/// EC2 API, "Request throttling": a token bucket per API and account per region); 16 keeps
/// both families busy when a start mixes instances and databases.
pub const SNAPSHOT_CALLS_IN_FLIGHT: usize = 16;

/// Whether a start looks for snapshots an earlier, interrupted attempt made (by the
/// backup-id tag) before it plans its calls.
#[derive(Clone, Copy)]
enum Adopt {
    /// The point was never started: its first start saves the lookup.
    No,
    Earlier,
}

/// The answer of one snapshot call of a start.
enum CallAnswer {
    /// The backup was cancelled before the call: nothing was made.
    Cancelled,
    Group {
        instance_id: String,
        positions: Vec<usize>,
        answer: Result<Vec<crate::cloud::StartedSnapshot>, CloudError>,
    },
    /// No consistent group for the instance: each volume's own snapshot.
    Volumes(Vec<(usize, Result<String, CloudError>)>),
    Database {
        position: usize,
        answer: Result<String, CloudError>,
    },
}
pub use request::{BackupOrigin, BackupRequest};

/// Creating, following and cancelling backup points.
#[derive(Clone)]
pub struct BackupService {
    records: Records,
    clouds: Arc<dyn CloudProvider>,
    clock: Arc<dyn Clock>,
    tag_key: String,
    default_retention_days: u32,
    caller: Arc<Caller>,
    /// Where a new point's start is handed to start-backup; without one (local runs and
    /// tests that want one invocation) the request issues the snapshot calls itself.
    queue: Option<Arc<dyn WorkQueue>>,
}

impl BackupService {
    pub fn new(
        records: Records,
        clouds: Arc<dyn CloudProvider>,
        clock: Arc<dyn Clock>,
        tag_key: String,
        default_retention_days: u32,
        caller: Arc<Caller>,
        queue: Option<Arc<dyn WorkQueue>>,
    ) -> Self {
        Self { records, clouds, clock, tag_key, default_retention_days, caller, queue }
    }

    /// Starts a backup of a service instance: validates, discovers, writes the record, then
    /// hands the snapshot calls to start-backup through the work queue and returns the record
    /// (`Pending`), or, without a queue, issues them itself and returns it `Running` (or
    /// terminal if every call failed). A retried request with the same client token returns
    /// the first request's record.
    #[instrument(skip(self, request), fields(backup_id))]
    pub async fn create(
        &self,
        service_instance_id: &str,
        request: &BackupRequest,
        origin: BackupOrigin,
    ) -> Result<BackupRecord> {
        let now = self.clock.now();
        validate::identifier("service instance id", service_instance_id)?;
        let cloud = self.clouds.home();
        let plan = request.validate(cloud.region(), self.default_retention_days, now)?;
        let inventory = cloud.discover(&self.tag_key, service_instance_id).await?;
        self.caller.check(&inventory.owners, "service instance", service_instance_id)?;
        // A policy's disks are chosen when it is made; one detached since is left out, said why.
        let selection_may_be_stale = origin.trigger == Trigger::Scheduled;
        let (items, skipped) =
            request::plan_items(&inventory, &plan.selection, service_instance_id, selection_may_be_stale)?;

        let mut record = BackupRecord {
            backup_id: BackupId::generate(),
            service_instance_id: service_instance_id.to_owned(),
            region: cloud.region().to_owned(),
            status: JobStatus::Pending,
            trigger: origin.trigger,
            policy_id: origin.policy_id,
            started_at: now,
            finished_at: None,
            expires_at: plan.expires_at,
            snapshot_bytes: 0,
            items,
            skipped,
            replication: plan.replication.map(|(region, expires_at)| Replication {
                region,
                status: JobStatus::Pending,
                expires_at,
                items: Vec::new(),
                lease: None,
            }),
            damaged: false,
            cleanup_pending: false,
            expiring_since: None,
            restores_running: Vec::new(),
            expiry_lease: None,
            owners: inventory.owners.iter().cloned().collect(),
            verified_at: None,
            error: None,
            requested_by: Some(self.caller.principal.clone()),
            changes: Vec::new(),
            selection: plan.selection,
            client_token: request.client_token.clone(),
            start_lease_until: Some(now + lifecycle::start_lease()),
            version: 0,
            stored_rows: Default::default(),
        };
        tracing::Span::current().record("backup_id", record.backup_id.as_str());
        match self.records.insert(&mut record, request.client_token.as_deref()).await {
            Ok(()) => {}
            Err(StoreError::TokenUsed { existing_id }) => return self.records.load(&existing_id).await,
            Err(StoreError::LockHeld { holder, .. }) => {
                return Err(Error::conflict(
                    "BackupAlreadyRunning",
                    format!(
                    "backup {holder} of service instance {service_instance_id} is still running; wait for it to finish"
                ),
                ))
            }
            Err(other) => return Err(other.into()),
        }
        info!(items = record.items.len(), "backup record written");
        if let Some(queue) = &self.queue {
            let work = Work::StartBackup { backup_id: record.backup_id.clone(), version: record.version };
            match queue.send(&work).await {
                Ok(()) => info!("start handed to start-backup"),
                // The record holds a start lease: poll-status starts the point once it runs out.
                Err(e) => warn!(error = %e, "start not handed over; poll-status takes it over after the start lease"),
            }
            return Ok(record);
        }
        // Nothing can carry this new point's id yet: there is nothing earlier to adopt.
        self.issue_snapshots(&mut record, cloud.as_ref(), now, Adopt::No).await?;
        self.save_started(record).await
    }

    /// start-backup: issues the snapshot calls of a point create handed over at `version`.
    /// The record is claimed first (a conditional save), so of a redelivered message and a
    /// poll-status take-over only one starts it; a point that moved on (started, cancelled)
    /// is left alone, and one whose start lease ran out is taken over as poll-status would.
    #[instrument(skip(self), fields(service_instance_id))]
    pub async fn start(&self, backup_id: &BackupId, version: u64) -> Result<BackupRecord> {
        let mut record: BackupRecord = self.records.load(backup_id).await?;
        tracing::Span::current().record("service_instance_id", record.service_instance_id.as_str());
        let now = self.clock.now();
        if record.version != version {
            // Someone moved it on; a start that died since is taken over like a poll would.
            return self.advance(record).await;
        }
        if !lifecycle::claim_start(&mut record, now) {
            return Ok(record);
        }
        match self.records.save(&mut record).await {
            Ok(()) => {}
            Err(Error::Conflict { .. }) => return self.records.load(backup_id).await,
            Err(e) => return Err(e),
        }
        let cloud = self.clouds.region(&record.region)?;
        // Claimed at the version create wrote: no call of this point was made before.
        self.issue_snapshots(&mut record, cloud.as_ref(), now, Adopt::No).await?;
        self.save_started(record).await
    }

    async fn save_started(&self, mut record: BackupRecord) -> Result<BackupRecord> {
        match self.records.save(&mut record).await {
            Ok(()) => {
                // Every snapshot call refused: the point ended at its start.
                if record.status.is_terminal() {
                    log_finished(&record);
                }
                Ok(record)
            }
            // poll-status took the backup over (this invocation was too slow); its record wins.
            Err(Error::Conflict { .. }) => self.records.load(&record.backup_id).await,
            Err(e) => Err(e),
        }
    }

    /// The tag whose value names a resource's service instance.
    pub fn tag_key(&self) -> &str {
        &self.tag_key
    }

    /// A backup point; 404 when there is none, or it is not the caller's.
    pub async fn get(&self, backup_id: &str) -> Result<BackupRecord> {
        let record: BackupRecord = self.records.load(&BackupId::parse("backup id", backup_id)?).await?;
        self.caller.check(&record.owners, "backup", backup_id)?;
        Ok(record)
    }

    /// The owners of a service instance as its resources' tags say now (404 when none of
    /// them is the caller's).
    pub async fn owners_of(&self, service_instance_id: &str) -> Result<Vec<String>> {
        validate::identifier("service instance id", service_instance_id)?;
        let inventory = self.clouds.home().discover(&self.tag_key, service_instance_id).await?;
        self.caller.check(&inventory.owners, "service instance", service_instance_id)?;
        Ok(inventory.owners.into_iter().collect())
    }

    /// A page of a service instance's backups, newest first.
    pub async fn list(
        &self,
        service_instance_id: &str,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<BackupRecord>, Option<Cursor>)> {
        validate::identifier("service instance id", service_instance_id)?;
        let (page, next) = self.records.page_owned::<BackupRecord>(service_instance_id, limit, cursor).await?;
        let some = !page.is_empty();
        let visible: Vec<BackupRecord> = page.into_iter().filter(|b| self.caller.owns(&b.owners)).collect();
        if some && visible.is_empty() {
            return Err(Error::not_found("service instance", service_instance_id));
        }
        Ok((visible, next))
    }

    /// Makes the snapshot calls for every item that has none yet. Cloud errors end up on
    /// the items they concern; the rest of the point goes on.
    async fn issue_snapshots(
        &self,
        record: &mut BackupRecord,
        cloud: &dyn Cloud,
        now: Timestamp,
        adopt: Adopt,
    ) -> Result<()> {
        let tags = snapshot_tags(record);
        // Snapshots a crashed earlier attempt already started carry the backup id: adopt them.
        let found = match adopt {
            Adopt::No => Vec::new(),
            Adopt::Earlier => match cloud.find_snapshots(tag::BACKUP_ID, &record.backup_id).await {
                Ok(found) => found,
                Err(e) => {
                    warn!(backup_id = %record.backup_id, error = %e, "cannot look for earlier snapshots; will retry on the next poll");
                    return Ok(());
                }
            },
        };
        let calls = lifecycle::plan_snapshot_calls(record, &found);
        let backup_id = record.backup_id.clone();
        let resource_ids: Vec<String> = record.items.iter().map(|i| i.resource_id.clone()).collect();
        // The calls run SNAPSHOT_CALLS_IN_FLIGHT at a time (the adapters bound each API family
        // further); their answers are folded into the record in the order they come.
        let mut answers = futures_util::stream::iter(calls)
            .map(|call| self.snapshot_call(call, &backup_id, &resource_ids, cloud, &tags))
            .buffer_unordered(SNAPSHOT_CALLS_IN_FLIGHT);
        let mut cancelled = false;
        while let Some(answer) = answers.next().await {
            match answer {
                CallAnswer::Cancelled => cancelled = true,
                CallAnswer::Group { instance_id, positions, answer: Ok(started) } => {
                    lifecycle::group_started(record, &instance_id, &positions, started)
                }
                CallAnswer::Group { positions, answer: Err(e), .. } => lifecycle::call_failed(record, &positions, &e),
                CallAnswer::Volumes(answers) => {
                    for (n, answer) in answers {
                        lifecycle::snapshot_started(&mut record.items[n], answer);
                    }
                }
                CallAnswer::Database { position, answer } => {
                    let started_at = record.started_at;
                    lifecycle::database_snapshot_started(&mut record.items[position], answer, started_at, now);
                }
            }
        }
        if cancelled {
            info!(%backup_id, "backup cancelled while starting: no more snapshots issued");
            return Ok(());
        }
        Ok(lifecycle::start_finished(record, now)?)
    }

    /// One snapshot call of a start, unless the backup was cancelled meanwhile.
    async fn snapshot_call(
        &self,
        call: SnapshotCall,
        backup_id: &BackupId,
        resource_ids: &[String],
        cloud: &dyn Cloud,
        tags: &crate::cloud::Tags,
    ) -> CallAnswer {
        match call {
            SnapshotCall::Group { instance_id, volumes, positions } => {
                if self.was_cancelled(backup_id).await {
                    return CallAnswer::Cancelled;
                }
                match cloud.snapshot_instance(&instance_id, &volumes, tags).await {
                    Err(CloudError::GroupUnsupported(reason)) => {
                        info!(%backup_id, instance_id, %reason, "no consistent group; snapshotting volumes one by one");
                        let mut answers = Vec::new();
                        for n in positions {
                            let answer = cloud.snapshot_volume(&resource_ids[n], tags).await;
                            answers.push((n, answer.map(|s| s.snapshot_id)));
                        }
                        CallAnswer::Volumes(answers)
                    }
                    answer => CallAnswer::Group { instance_id, positions, answer },
                }
            }
            SnapshotCall::Database { position, db_id, snapshot_name } => {
                let answer = match cloud.snapshot_database(&db_id, &snapshot_name, tags).await {
                    Ok(()) | Err(CloudError::AlreadyExists(_)) => Ok(snapshot_name),
                    Err(e) => Err(e),
                };
                CallAnswer::Database { position, answer }
            }
        }
    }

    /// Whether the stored record says the backup was cancelled (checked before each
    /// instance's call, so a cancel stops a long start from issuing more snapshots). Reads
    /// the record's header only, never its item rows.
    async fn was_cancelled(&self, backup_id: &BackupId) -> bool {
        match self.records.store().get(crate::store::Collection::Backups, backup_id).await {
            Ok(Some(doc)) => crate::records::header_status(&doc) == Some(JobStatus::Cancelled),
            _ => false,
        }
    }

    /// One poll of a backup: takes over a start whose invoker died, and folds the cloud's
    /// snapshot states into the items. Saves when anything changed.
    pub async fn advance(&self, record: BackupRecord) -> Result<BackupRecord> {
        self.advance_with(record, None).await
    }

    /// [`BackupService::advance`], with the snapshots' states already described for a whole
    /// poll pass (`reported`: every running snapshot of the pass's backups in the record's
    /// region, by id), or described for this record alone when `None`.
    #[instrument(skip_all, fields(backup_id = %record.backup_id, service_instance_id = %record.service_instance_id))]
    pub async fn advance_with(
        &self,
        mut record: BackupRecord,
        reported: Option<&HashMap<String, SnapshotStatus>>,
    ) -> Result<BackupRecord> {
        let now = self.clock.now();
        let cloud = self.clouds.region(&record.region)?;
        let before = record.clone();
        match record.status {
            JobStatus::Pending => {
                if !lifecycle::take_over_start(&mut record, now) {
                    return Ok(record);
                }
                // Claim the start first: of two pollers, only one wins the version.
                self.records.save(&mut record).await?;
                warn!("finishing a backup whose start was interrupted");
                self.issue_snapshots(&mut record, cloud.as_ref(), now, Adopt::Earlier).await?;
            }
            JobStatus::Running => {
                let described;
                let reported = match reported {
                    Some(reported) => reported,
                    None => {
                        described = describe_snapshots(cloud.as_ref(), lifecycle::running_snapshots(&record)).await?;
                        &described
                    }
                };
                lifecycle::snapshots_reported(&mut record, reported, now)?;
                // A database that was busy when the start asked: asked again now.
                if record.items.iter().any(|i| i.status == ItemStatus::Pending) && !record.status.is_terminal() {
                    self.issue_snapshots(&mut record, cloud.as_ref(), now, Adopt::Earlier).await?;
                }
            }
            _ => return Ok(record),
        }
        if record != before {
            self.records.save(&mut record).await?;
            if record.status.is_terminal() {
                log_finished(&record);
            }
        }
        Ok(record)
    }

    /// The running snapshots of every running point of `backups`, described per region in
    /// one batched listing ([`crate::snapshots::describe_running`]): a poll pass's describes
    /// grow with the snapshots, a thousand a call, not with the points. A region whose
    /// describe failed is left out (its points describe for themselves, or wait a pass).
    pub async fn describe_running(&self, backups: &[BackupRecord]) -> HashMap<String, HashMap<String, SnapshotStatus>> {
        let mut by_region: HashMap<&str, Vec<&BackupRecord>> = HashMap::new();
        for backup in backups.iter().filter(|b| b.status == JobStatus::Running && !b.cleanup_pending) {
            by_region.entry(backup.region.as_str()).or_default().push(backup);
        }
        let mut reports = HashMap::new();
        for (region, running) in by_region {
            let described = match self.clouds.region(region) {
                Ok(cloud) => crate::snapshots::describe_running(cloud.as_ref(), &running).await,
                Err(e) => Err(e),
            };
            match described {
                Ok(reported) => {
                    reports.insert(region.to_owned(), reported);
                }
                Err(e) => warn!(region, error = %e, "running snapshots not described for the pass"),
            }
        }
        reports
    }

    /// Cancels a running point; unless `keep_snapshots`, deletes what it made.
    pub async fn cancel(&self, backup_id: &BackupId, keep_snapshots: bool) -> Result<BackupRecord> {
        let now = self.clock.now();
        let mut backup: BackupRecord = self.records.load(backup_id).await?;
        self.caller.check(&backup.owners, "backup", backup_id)?;
        if backup.status.is_terminal() {
            return Err(Error::not_running(backup_id, backup.status));
        }
        lifecycle::cancel(&mut backup, keep_snapshots, now)?;
        let what = if keep_snapshots { "cancel, keeping its snapshots" } else { "cancel" };
        backup.changes.push(Change::new(what, &self.caller.principal, now));
        // Saved before any deletion: the backup lock is released and the starting
        // invocation (if still running) sees the cancellation and stops issuing snapshots.
        self.records.save(&mut backup).await?;
        if keep_snapshots {
            Ok(backup)
        } else {
            self.clean_up_cancelled(backup).await
        }
    }

    /// Deletes every snapshot a cancelled backup made, including ones an invocation still
    /// starting it made after the cancel (found by the backup-id tag). Finished once the
    /// start lease has passed and nothing is left; poll-status repeats it until then.
    #[instrument(skip_all, fields(backup_id = %backup.backup_id))]
    pub async fn clean_up_cancelled(&self, mut backup: BackupRecord) -> Result<BackupRecord> {
        let now = self.clock.now();
        let cloud = self.clouds.region(&backup.region)?;
        let tagged = cloud.find_snapshots(tag::BACKUP_ID, &backup.backup_id).await?;
        let mut untracked: Vec<String> = tagged.into_iter().map(|s| s.snapshot_id).collect();
        for item in backup.items.iter_mut() {
            // A DB snapshot the starter asked for but had not written down yet has its fixed name.
            let id = match (&item.snapshot_id, item.kind) {
                (Some(id), _) => id.clone(),
                (None, ResourceKind::Database) => db_snapshot_name(&backup.backup_id, &item.resource_id),
                (None, ResourceKind::Volume) => continue,
            };
            untracked.retain(|t| *t != id);
            match delete_snapshot(cloud.as_ref(), item.kind, &id).await? {
                DeleteOutcome::NotFound if item.snapshot_id.is_none() => {}
                DeleteOutcome::Deleted | DeleteOutcome::NotFound => lifecycle::cleanup_deleted(item, &id, None),
                DeleteOutcome::InUse(by) => lifecycle::cleanup_deleted(item, &id, Some(by)),
            }
        }
        let mut leftovers = 0;
        for id in untracked {
            if delete_snapshot(cloud.as_ref(), ResourceKind::Volume, &id).await? == DeleteOutcome::Deleted {
                leftovers += 1;
            }
        }
        if leftovers > 0 {
            warn!(leftovers, "deleted snapshots started after the cancel");
        }
        lifecycle::cleanup_pass_done(&mut backup, now);
        self.records.save(&mut backup).await?;
        Ok(backup)
    }
}

/// One structured line per finished point, and its embedded-metric line (BackupFailed,
/// BackupSnapshotBytes; [`crate::metrics`]) so a failed backup can raise an alarm without a
/// metrics API call.
fn log_finished(record: &BackupRecord) {
    crate::metrics::emit(&crate::metrics::backup_finished(record));
    if crate::metrics::backup_failed(record) {
        let failed_items: Vec<_> = record
            .items
            .iter()
            .filter(|i| i.status == ItemStatus::Failed)
            .map(|i| format!("{}: {}", i.resource_id, i.error.as_deref().unwrap_or("unknown")))
            .collect();
        warn!(backup_id = %record.backup_id, service_instance_id = %record.service_instance_id, status = record.status.as_str(), failed_items = ?failed_items, "backup finished with failures");
    } else {
        info!(backup_id = %record.backup_id, service_instance_id = %record.service_instance_id, status = record.status.as_str(), snapshot_bytes = record.snapshot_bytes, "backup finished");
    }
}
