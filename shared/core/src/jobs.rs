//! The jobs view (backup, restore, replication and expiry jobs, newest first), cancelling
//! a running job, and the snapshot capacity of a service instance.
//!
//! Jobs are not stored twice: a backup record is a backup job (and, when it replicates, a
//! replication job `rp-…`), a restore record a restore job, and every expire-retention run
//! that found something due leaves an expiry record (`ex-…`).

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{info, instrument};

use crate::access::Caller;
use crate::backup::BackupService;
use crate::error::{Error, Result};
use crate::ids::{BackupId, JobId};
use crate::model::{BackupRecord, RestoreRecord, Timestamp};
use crate::records::Records;
use crate::replication::ReplicationService;
use crate::restore::RestoreService;
use crate::retention::ExpiryRun;
use crate::status::{ItemStatus, JobStatus};
use crate::store::{Collection, Cursor, Document};
use crate::validate;

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
    pub backup_id: Option<BackupId>,
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
    /// Bytes the snapshots of every point that still holds them store: a volume snapshot
    /// counts the blocks changed since the one before it (EBS snapshots are incremental),
    /// once expire-retention's daily look has measured it, its data until then.
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

/// The jobs a record is: a backup (and its replication), a restore, an expiry run; and
/// whom they belong to (an expiry run: nobody's but an admin's).
async fn jobs_of(records: &Records, doc: Document) -> Result<(Vec<Job>, Vec<String>)> {
    Ok(match doc.collection {
        Collection::Backups => {
            let b: BackupRecord = records.read(doc).await?;
            let mut jobs = vec![Job {
                job_id: b.backup_id.to_string(),
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
                    job_id: JobId::replication_of(&b.backup_id),
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
            (jobs, b.owners)
        }
        Collection::Restores => {
            let r: RestoreRecord = records.read(doc).await?;
            let job = Job {
                job_id: r.restore_id.to_string(),
                kind: JobKind::Restore,
                status: r.status,
                service_instance_id: Some(r.service_instance_id.clone()),
                backup_id: Some(r.backup_id.clone()),
                started_at: r.started_at,
                finished_at: r.finished_at,
                region: Some(r.region.clone()),
                progress: progress(r.items.iter().map(|i| i.status)),
            };
            (vec![job], r.owners)
        }
        Collection::ExpiryRuns => {
            let e: ExpiryRun = records.read(doc).await?;
            let job = Job {
                job_id: e.run_id.to_string(),
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
            };
            (vec![job], Vec::new())
        }
        Collection::Policies => (Vec::new(), Vec::new()),
    })
}

/// A cursor position: (created millis, id) of the last document a page examined.
fn position(doc: &Document) -> (i64, String) {
    (doc.created_at.timestamp_millis(), doc.id.clone())
}

/// The jobs list, cancel, and capacity: views over the backup and restore records, and
/// the cancel of whichever lifecycle a job id names.
#[derive(Clone)]
pub struct Jobs {
    records: Records,
    backups: BackupService,
    restores: RestoreService,
    replication: ReplicationService,
    caller: Arc<Caller>,
}

impl Jobs {
    pub fn new(
        records: Records,
        backups: BackupService,
        restores: RestoreService,
        replication: ReplicationService,
        caller: Arc<Caller>,
    ) -> Self {
        Self { records, backups, restores, replication, caller }
    }

    /// Jobs newest first, of one kind and status or all. Pages hold at most `limit` jobs
    /// (a backup and its replication, which share a record, are never split across pages).
    pub async fn list(
        &self,
        kind: Option<JobKind>,
        status: Option<JobStatus>,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<Job>, Option<Cursor>)> {
        let collections: Vec<Collection> = match kind {
            Some(JobKind::Backup | JobKind::Replication) => vec![Collection::Backups],
            Some(JobKind::Restore) => vec![Collection::Restores],
            Some(JobKind::Expiry) => vec![Collection::ExpiryRuns],
            None => vec![Collection::Backups, Collection::Restores, Collection::ExpiryRuns],
        };
        let wanted = |job: &Job| kind.is_none_or(|k| job.kind == k) && status.is_none_or(|s| job.status == s);
        let mut cursor = cursor.cloned();
        let mut jobs = Vec::new();
        // Each round reads a page of every collection after the cursor, merges them newest
        // first, and keeps what is certainly in order: documents no older than the oldest
        // of the pages that have more to give.
        loop {
            let mut documents = Vec::new();
            let mut frontier: Option<(i64, String)> = None;
            for &collection in &collections {
                let page = self.records.store().list_collection(collection, limit.max(10), cursor.as_ref()).await?;
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
                let (found, owners) = jobs_of(&self.records, doc).await?;
                cursor = Some(Cursor::after(at.0, &at.1));
                if self.caller.owns(&owners) {
                    jobs.extend(found.into_iter().filter(wanted));
                }
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
    #[instrument(skip(self, request))]
    pub async fn cancel(&self, job_id: &str, request: &CancelRequest) -> Result<Job> {
        let job = match JobId::parse(job_id)? {
            JobId::Backup(backup_id) => {
                let backup = self.backups.cancel(&backup_id, request.keep_snapshots).await?;
                self.view(Collection::Backups, &backup.backup_id, JobKind::Backup).await?
            }
            JobId::Replication(backup_id) => {
                self.backups.get(&backup_id).await?; // the caller's, or 404
                self.replication.cancel(&backup_id, request.keep_snapshots).await?;
                self.view(Collection::Backups, &backup_id, JobKind::Replication).await?
            }
            JobId::Restore(restore_id) => {
                self.restores.cancel(&restore_id).await?;
                self.view(Collection::Restores, &restore_id, JobKind::Restore).await?
            }
            JobId::Expiry(run_id) => {
                return Err(Error::conflict("JobNotCancellable", format!("expiry run {run_id} is not cancellable")))
            }
        };
        info!(keep_snapshots = request.keep_snapshots, "job cancelled");
        Ok(job)
    }

    async fn view(&self, collection: Collection, id: &str, kind: JobKind) -> Result<Job> {
        let doc = self.records.store().get(collection, id).await?.ok_or_else(|| Error::not_found("job", id))?;
        let (jobs, owners) = jobs_of(&self.records, doc).await?;
        self.caller.check(&owners, "job", id)?;
        jobs.into_iter().find(|j| j.kind == kind).ok_or_else(|| Error::not_found("job", id))
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
        let points = self.records.all_owned::<BackupRecord>(service_instance_id).await?;
        let seen = !points.is_empty();
        let mine: Vec<BackupRecord> = points.into_iter().filter(|p| self.caller.owns(&p.owners)).collect();
        if seen && mine.is_empty() {
            return Err(Error::not_found("service instance", service_instance_id));
        }
        for backup in mine.iter().filter(|b| b.status.is_restorable()) {
            capacity.backup_points += 1;
            capacity.snapshot_bytes += backup
                .items
                .iter()
                .filter(|i| i.status == ItemStatus::Succeeded && i.snapshot_id.is_some())
                .map(|i| i.stored_bytes.unwrap_or(i.size_bytes))
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
                    .map(|i| i.stored_bytes.unwrap_or(i.size_bytes))
                    .sum::<u64>();
            }
        }
        Ok(capacity)
    }
}
