//! The jobs view (backup, restore, replication and expiry jobs, newest first), cancelling
//! a running job, and the snapshot capacity of a service instance.
//!
//! Jobs are not stored twice: a backup record is a backup job (and, when it replicates, a
//! replication job `rp-…`), a restore record a restore job, and every expire-retention run
//! that found something due leaves an expiry record (`ex-…`).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::cloud::{tag, DeleteOutcome};
use crate::error::{Error, Result};
use crate::model::{BackupRecord, ResourceKind, RestorePhase, RestoreRecord, Timestamp};
use crate::records::{from_document, StoredRecord};
use crate::retention::{delete, ExpirySummary};
use crate::status::{ItemStatus, JobStatus};
use crate::store::{Collection, Document};
use crate::validate;
use crate::Snapnest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Backup,
    Restore,
    Replication,
    Expiry,
}

impl std::str::FromStr for JobKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "backup" => Ok(Self::Backup),
            "restore" => Ok(Self::Restore),
            "replication" => Ok(Self::Replication),
            "expiry" => Ok(Self::Expiry),
            other => Err(Error::bad_request(
                "InvalidKind",
                format!("kind: '{other}' is not backup, restore, replication or expiry"),
            )),
        }
    }
}

/// One line of the jobs list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub job_id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub service_instance_id: Option<String>,
    pub backup_id: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// For replication jobs: the destination region.
    pub region: Option<String>,
    /// Items done of items in all.
    pub progress: Progress,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

/// A record of one expire-retention run that had something to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpiryRun {
    pub run_id: String,
    pub status: JobStatus,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub summary: ExpirySummary,
    pub version: u64,
}

const EXPIRY_OWNER: &str = "expiry";

impl StoredRecord for ExpiryRun {
    const COLLECTION: Collection = Collection::ExpiryRuns;
    const WHAT: &'static str = "expiry run";
    fn id(&self) -> &str {
        &self.run_id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn owner(&self) -> &str {
        EXPIRY_OWNER
    }
    fn created_at(&self) -> Timestamp {
        self.started_at
    }
}

/// Body of `POST /jobs/{job_id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Keep the snapshots (or copies) the job already made; default: delete them.
    #[serde(default)]
    pub keep_snapshots: bool,
}

/// `GET /service-instances/{id}/capacity`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capacity {
    pub service_instance_id: String,
    /// Bytes of the snapshots of every point that still holds them.
    pub snapshot_bytes: u64,
    /// Points that still hold snapshots (Succeeded or PartiallyFailed, not expired).
    pub backup_points: usize,
    /// Bytes of the copies in other regions.
    pub replica_bytes: u64,
}

fn progress<I: IntoIterator<Item = ItemStatus>>(items: I) -> Progress {
    let (mut done, mut total) = (0, 0);
    for status in items {
        total += 1;
        done += status.is_terminal() as usize;
    }
    Progress { done, total }
}

const REPLICATION_PREFIX: &str = "rp-";
const BACKUP_PREFIX: &str = "bk-";

fn jobs_of(doc: Document) -> Result<Vec<Job>> {
    Ok(match doc.collection {
        Collection::Backups => {
            let b: BackupRecord = from_document(doc)?;
            let mut jobs = vec![Job {
                job_id: b.backup_id.clone(),
                kind: JobKind::Backup,
                status: b.status,
                service_instance_id: Some(b.service_instance_id.clone()),
                backup_id: Some(b.backup_id.clone()),
                started_at: b.started_at,
                finished_at: b.finished_at,
                region: None,
                progress: progress(b.items.iter().map(|i| i.status)),
            }];
            if let Some(r) = &b.replication {
                jobs.push(Job {
                    job_id: b.backup_id.replacen(BACKUP_PREFIX, REPLICATION_PREFIX, 1),
                    kind: JobKind::Replication,
                    status: r.status,
                    service_instance_id: Some(b.service_instance_id.clone()),
                    backup_id: Some(b.backup_id.clone()),
                    started_at: b.started_at,
                    finished_at: None,
                    region: Some(r.region.clone()),
                    progress: progress(r.items.iter().map(|i| i.status)),
                });
            }
            jobs
        }
        Collection::Restores => {
            let r: RestoreRecord = from_document(doc)?;
            vec![Job {
                job_id: r.restore_id.clone(),
                kind: JobKind::Restore,
                status: r.status,
                service_instance_id: Some(r.service_instance_id.clone()),
                backup_id: Some(r.backup_id.clone()),
                started_at: r.started_at,
                finished_at: r.finished_at,
                region: Some(r.region.clone()),
                progress: progress(r.items.iter().map(|i| i.status)),
            }]
        }
        Collection::ExpiryRuns => {
            let e: ExpiryRun = from_document(doc)?;
            vec![Job {
                job_id: e.run_id.clone(),
                kind: JobKind::Expiry,
                status: e.status,
                service_instance_id: None,
                backup_id: None,
                started_at: e.started_at,
                finished_at: Some(e.finished_at),
                region: None,
                progress: Progress {
                    done: e.summary.points_expired,
                    total: e.summary.points_expired + e.summary.deferred,
                },
            }]
        }
        Collection::Policies => Vec::new(),
    })
}

/// A cursor position: (created millis, id) of the last document a page examined.
fn position(doc: &Document) -> (i64, String) {
    (doc.created_at.timestamp_millis(), doc.id.clone())
}

impl Snapnest {
    /// Jobs newest first, of one kind and status or all. Pages hold at most `limit` jobs
    /// (a backup and its replication, which share a record, are never split across pages).
    pub async fn list_jobs(
        &self,
        kind: Option<JobKind>,
        status: Option<JobStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Job>, Option<String>)> {
        let collections: Vec<Collection> = match kind {
            Some(JobKind::Backup | JobKind::Replication) => vec![Collection::Backups],
            Some(JobKind::Restore) => vec![Collection::Restores],
            Some(JobKind::Expiry) => vec![Collection::ExpiryRuns],
            None => vec![Collection::Backups, Collection::Restores, Collection::ExpiryRuns],
        };
        let wanted = |job: &Job| kind.is_none_or(|k| job.kind == k) && status.is_none_or(|s| job.status == s);
        let mut cursor = cursor.map(str::to_owned);
        let mut jobs = Vec::new();
        // Each round reads a page of every collection after the cursor, merges them newest
        // first, and keeps what is certainly in order: documents no older than the oldest
        // of the pages that have more to give.
        loop {
            let mut documents = Vec::new();
            let mut frontier: Option<(i64, String)> = None;
            for &collection in &collections {
                let page = self.store.list_collection(collection, limit.max(10), cursor.as_deref()).await?;
                if page.next_cursor.is_some() {
                    if let Some(last) = page.documents.last().map(position) {
                        frontier = Some(frontier.map_or(last.clone(), |f: (i64, String)| f.max(last)));
                    }
                }
                documents.extend(page.documents);
            }
            documents.sort_by_key(|d| std::cmp::Reverse(position(d)));
            let exhausted = frontier.is_none();
            for doc in documents {
                let at = position(&doc);
                if frontier.as_ref().is_some_and(|f| at < *f) {
                    break;
                }
                let found: Vec<Job> = jobs_of(doc)?.into_iter().filter(wanted).collect();
                cursor = Some(format!("{}:{}", at.0, at.1));
                jobs.extend(found);
                if jobs.len() >= limit {
                    return Ok((jobs, cursor));
                }
            }
            if exhausted {
                return Ok((jobs, None));
            }
        }
    }

    /// Cancels a running backup, restore or replication (`POST /jobs/{id}/cancel`).
    pub async fn cancel_job(&self, job_id: &str, request: &CancelRequest, now: Timestamp) -> Result<Job> {
        validate::identifier("job id", job_id)?;
        let job = if job_id.starts_with(BACKUP_PREFIX) {
            let backup = self.cancel_backup(job_id, request.keep_snapshots, now).await?;
            self.job_view(Collection::Backups, &backup.backup_id, JobKind::Backup).await?
        } else if let Some(rest) = job_id.strip_prefix(REPLICATION_PREFIX) {
            let backup_id = format!("{BACKUP_PREFIX}{rest}");
            self.cancel_replication(&backup_id, request.keep_snapshots).await?;
            self.job_view(Collection::Backups, &backup_id, JobKind::Replication).await?
        } else if job_id.starts_with("rs-") {
            self.cancel_restore(job_id, now).await?;
            self.job_view(Collection::Restores, job_id, JobKind::Restore).await?
        } else if job_id.starts_with("ex-") {
            return Err(Error::conflict("JobNotCancellable", format!("expiry run {job_id} is not cancellable")));
        } else {
            return Err(Error::not_found("job", job_id));
        };
        info!(job_id, keep_snapshots = request.keep_snapshots, "job cancelled");
        Ok(job)
    }

    async fn job_view(&self, collection: Collection, id: &str, kind: JobKind) -> Result<Job> {
        let doc = self.store.get(collection, id).await?.ok_or_else(|| Error::not_found("job", id))?;
        jobs_of(doc)?.into_iter().find(|j| j.kind == kind).ok_or_else(|| Error::not_found("job", id))
    }

    async fn cancel_backup(&self, backup_id: &str, keep: bool, now: Timestamp) -> Result<BackupRecord> {
        let mut backup: BackupRecord = self.load(backup_id).await?;
        if backup.status.is_terminal() {
            return Err(not_running(backup_id, backup.status));
        }
        backup.status = JobStatus::Cancelled;
        backup.finished_at = Some(now);
        backup.cleanup_pending = !keep;
        for item in backup.items.iter_mut().filter(|i| !i.status.is_terminal()) {
            item.status = ItemStatus::Cancelled;
        }
        if let Some(replication) = backup.replication.as_mut() {
            replication.status = JobStatus::Cancelled;
        }
        // Saved before any deletion: the backup lock is released and the starting
        // invocation (if still running) sees the cancellation and stops issuing snapshots.
        self.save(&mut backup).await?;
        if !keep {
            self.clean_up_cancelled(backup, now).await
        } else {
            Ok(backup)
        }
    }

    /// Deletes every snapshot a cancelled backup made, including ones an invocation still
    /// starting it made after the cancel (found by the backup-id tag). Finished once the
    /// start lease has passed and nothing is left; poll-status repeats it until then.
    pub(crate) async fn clean_up_cancelled(&self, mut backup: BackupRecord, now: Timestamp) -> Result<BackupRecord> {
        let cloud = self.clouds.region(&backup.region)?;
        let mut leftovers = 0;
        let tagged = cloud.find_snapshots(tag::BACKUP_ID, &backup.backup_id).await?;
        let mut volume_snapshots: HashSet<String> = tagged.into_iter().map(|s| s.snapshot_id).collect();
        for item in backup.items.iter_mut() {
            let Some(id) = item.snapshot_id.clone() else { continue };
            if item.kind == ResourceKind::Volume {
                volume_snapshots.remove(&id);
            }
            match delete(cloud.as_ref(), item.kind, &id).await? {
                DeleteOutcome::Deleted | DeleteOutcome::NotFound => {
                    item.snapshot_id = None;
                    item.error = Some(format!("snapshot {id} deleted when the backup was cancelled"));
                }
                DeleteOutcome::InUse(by) => {
                    item.released = true;
                    item.error = Some(format!("kept: the snapshot is in use ({by})"));
                }
            }
        }
        for id in volume_snapshots {
            if delete(cloud.as_ref(), ResourceKind::Volume, &id).await? == DeleteOutcome::Deleted {
                leftovers += 1;
            }
        }
        let starter_may_run = backup.start_lease_until.is_some_and(|lease| lease > now);
        if !starter_may_run {
            backup.cleanup_pending = false;
        }
        if leftovers > 0 {
            warn!(backup_id = %backup.backup_id, leftovers, "deleted snapshots started after the cancel");
        }
        self.save(&mut backup).await?;
        Ok(backup)
    }

    async fn cancel_replication(&self, backup_id: &str, keep: bool) -> Result<()> {
        let mut backup: BackupRecord = self.load(backup_id).await?;
        let Some(replication) = backup.replication.as_mut() else {
            return Err(Error::not_found("replication job", backup_id));
        };
        if replication.status.is_terminal() {
            return Err(not_running(backup_id, replication.status));
        }
        let cloud = self.clouds.region(&replication.region)?;
        for item in replication.items.iter_mut() {
            if !item.status.is_terminal() {
                item.status = ItemStatus::Cancelled;
            }
            if let (false, Some(id)) = (keep, item.replica_snapshot_id.clone()) {
                if delete(cloud.as_ref(), item.kind, &id).await? != DeleteOutcome::Deleted {
                    warn!(backup_id, replica = %id, "replica not deleted on cancel");
                }
                item.replica_snapshot_id = None;
            }
        }
        replication.status = JobStatus::Cancelled;
        self.save(&mut backup).await
    }

    async fn cancel_restore(&self, restore_id: &str, now: Timestamp) -> Result<()> {
        let mut restore: RestoreRecord = self.load(restore_id).await?;
        if restore.status.is_terminal() {
            return Err(not_running(restore_id, restore.status));
        }
        restore.status = JobStatus::Cancelled;
        restore.finished_at = Some(now);
        for item in restore.items.iter_mut().filter(|i| !i.status.is_terminal()) {
            item.status = ItemStatus::Cancelled;
        }
        // Instances this restore stopped are started again by the next polls.
        restore.phase =
            if restore.stopped_instance_ids.is_empty() { RestorePhase::Done } else { RestorePhase::StartingInstances };
        self.save(&mut restore).await
    }

    /// Snapshot bytes and points of a service instance, summed from its records on every
    /// read, so the figure is current as points complete and expire.
    pub async fn capacity(&self, service_instance_id: &str) -> Result<Capacity> {
        validate::identifier("service instance id", service_instance_id)?;
        let mut capacity = Capacity {
            service_instance_id: service_instance_id.to_owned(),
            snapshot_bytes: 0,
            backup_points: 0,
            replica_bytes: 0,
        };
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.list_owned(Collection::Backups, service_instance_id, 100, cursor.as_deref()).await?;
            for doc in page.documents {
                let backup: BackupRecord = from_document(doc)?;
                if !backup.status.is_restorable() {
                    continue;
                }
                capacity.backup_points += 1;
                capacity.snapshot_bytes += backup
                    .items
                    .iter()
                    .filter(|i| i.status == ItemStatus::Succeeded && i.snapshot_id.is_some())
                    .map(|i| i.size_bytes)
                    .sum::<u64>();
                if let Some(r) = backup.replication.as_ref().filter(|r| r.status != JobStatus::Expired) {
                    let copied: HashSet<&str> = r
                        .items
                        .iter()
                        .filter(|i| i.status == ItemStatus::Succeeded)
                        .map(|i| i.resource_id.as_str())
                        .collect();
                    capacity.replica_bytes += backup
                        .items
                        .iter()
                        .filter(|i| copied.contains(i.resource_id.as_str()))
                        .map(|i| i.size_bytes)
                        .sum::<u64>();
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(capacity),
            }
        }
    }

    /// Keeps a record of an expire-retention run that had something to do.
    pub(crate) async fn record_expiry_run(&self, started_at: Timestamp, summary: &ExpirySummary, now: Timestamp) {
        let busy = summary.points_expired + summary.replicas_expired + summary.deferred > 0;
        if !busy {
            return;
        }
        let mut run = ExpiryRun {
            run_id: crate::backup::new_record_id("ex"),
            status: if summary.deferred > 0 { JobStatus::PartiallyFailed } else { JobStatus::Succeeded },
            started_at,
            finished_at: now,
            summary: summary.clone(),
            version: 0,
        };
        if let Err(e) = self.insert(&mut run, None).await {
            warn!(error = %e, "expiry run not recorded; the points themselves are");
        }
    }
}

fn not_running(id: &str, status: JobStatus) -> Error {
    Error::conflict("JobNotRunning", format!("job {id} is {} and cannot be cancelled", status.as_str()))
}
