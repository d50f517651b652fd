//! The events snapnest publishes: one per state change of a backup point, a restore, a
//! replication (the copy of a point to its destination region), an expiry (the deletion of a
//! point's snapshots at the end of its retention) and a policy run, each an EventBridge event
//! of source `snapnest` with a detail-type per lifecycle (schema: `docs/events.md`).
//!
//! No use case publishes anything. Deployed, the records table's DynamoDB stream (each write's
//! old and new image, in the order of the writes to each item) feeds publish-events, which
//! turns each record header's change into its events with the pure [`changes::changes`] and
//! publishes them through the [`EventBus`] port (EventBridge `PutEvents`). So an event is
//! published for every saved change and only for a saved one, whenever a function dies: the
//! stream is the outbox. Publishing is at least once (a retried stream batch publishes its
//! events again); an event names its record's `version`, which with the ids and detail-type
//! tells a repeat from a new change.

pub mod changes;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tracing::{info, warn};

use crate::error::Result;
use crate::ids::{BackupId, PolicyId, RestoreId};
use crate::model::{BackupRecord, RestoreMode, RestoreRecord, Timestamp, Trigger};
use crate::policy::{Policy, PolicyRunStatus};
use crate::records::{self, Records};
use crate::status::JobStatus;
use crate::store::{Collection, Document, Store};

/// The `source` of every event.
pub const SOURCE: &str = "snapnest";

/// What an event is about: its EventBridge `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetailType {
    Backup,
    Restore,
    Replication,
    Expiry,
    PolicyRun,
}

impl DetailType {
    pub const ALL: [DetailType; 5] = [Self::Backup, Self::Restore, Self::Replication, Self::Expiry, Self::PolicyRun];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "Backup State Change",
            Self::Restore => "Restore State Change",
            Self::Replication => "Replication State Change",
            Self::Expiry => "Expiry State Change",
            Self::PolicyRun => "Policy Run State Change",
        }
    }
}

/// One event: a lifecycle's change of state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    Backup(BackupChange),
    Restore(RestoreChange),
    Replication(ReplicationChange),
    Expiry(ExpiryChange),
    PolicyRun(PolicyRunChange),
}

impl Event {
    pub fn detail_type(&self) -> DetailType {
        match self {
            Self::Backup(_) => DetailType::Backup,
            Self::Restore(_) => DetailType::Restore,
            Self::Replication(_) => DetailType::Replication,
            Self::Expiry(_) => DetailType::Expiry,
            Self::PolicyRun(_) => DetailType::PolicyRun,
        }
    }

    /// When the change was saved.
    pub fn time(&self) -> Timestamp {
        match self {
            Self::Backup(c) => c.time,
            Self::Restore(c) => c.time,
            Self::Replication(c) => c.time,
            Self::Expiry(c) => c.time,
            Self::PolicyRun(c) => c.time,
        }
    }

    /// The event's `detail`, as JSON text.
    pub fn detail(&self) -> String {
        serde_json::to_string(self).expect("an event serializes")
    }
}

/// A backup point's status changed (or the point was written: `previous_status` null).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupChange {
    pub backup_id: BackupId,
    pub service_instance_id: String,
    pub region: String,
    pub status: JobStatus,
    pub previous_status: Option<JobStatus>,
    /// Why it did not fully succeed (`PartiallyFailed`, `Failed`, `Cancelled`), as the
    /// record's summary says it.
    pub cause: Option<String>,
    pub trigger: Trigger,
    pub policy_id: Option<PolicyId>,
    pub requested_by: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub snapshot_bytes: u64,
    /// The record's version after the change.
    pub version: u64,
    pub time: Timestamp,
}

/// A restore's status changed (or the restore was written).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreChange {
    pub restore_id: RestoreId,
    pub backup_id: BackupId,
    pub service_instance_id: String,
    pub region: String,
    pub mode: RestoreMode,
    pub status: JobStatus,
    pub previous_status: Option<JobStatus>,
    /// Why it did not fully succeed (`PartiallyFailed`, `Failed`, `Cancelled`, `RollingBack`,
    /// `RolledBack`), as the record's summary says it.
    pub cause: Option<String>,
    pub requested_by: Option<String>,
    pub safety_backup_id: Option<BackupId>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub version: u64,
    pub time: Timestamp,
}

/// The replication of a point to its destination region changed status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicationChange {
    pub backup_id: BackupId,
    pub service_instance_id: String,
    /// The point's region.
    pub source_region: String,
    /// The destination region.
    pub region: String,
    pub status: JobStatus,
    pub previous_status: Option<JobStatus>,
    /// Why copies are missing (`PartiallyFailed`, `Failed`) or none were made (`Cancelled`).
    pub cause: Option<String>,
    /// Who asked for the point (and so for its copy).
    pub requested_by: Option<String>,
    /// When the copies expire; null: never.
    pub expires_at: Option<Timestamp>,
    pub version: u64,
    pub time: Timestamp,
}

/// The deletion of a point's snapshots at the end of its retention began (`Running`) or
/// ended (`Succeeded`, the point is `Expired`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpiryChange {
    pub backup_id: BackupId,
    pub service_instance_id: String,
    pub region: String,
    pub status: JobStatus,
    pub previous_status: Option<JobStatus>,
    /// Set when a snapshot of the point had been deleted outside snapnest.
    pub cause: Option<String>,
    pub damaged: bool,
    pub expires_at: Option<Timestamp>,
    pub expiring_since: Option<Timestamp>,
    pub version: u64,
    pub time: Timestamp,
}

/// A policy ran a slot (or skipped it): what the run came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyRunChange {
    pub policy_id: PolicyId,
    pub policy_name: String,
    pub slot: Timestamp,
    pub status: PolicyRunStatus,
    /// What the policy's run before this one came to; null for its first.
    pub previous_status: Option<PolicyRunStatus>,
    pub cause: Option<String>,
    /// Service instances the run was to back up.
    pub targets: usize,
    /// Of those, the ones whose backup was started (each backup has its own events).
    pub backups_started: usize,
    /// The first causes of the targets not backed up, as `service instance: cause`.
    pub causes: Vec<String>,
    pub ran_at: Timestamp,
    pub version: u64,
    pub time: Timestamp,
}

/// A record as one side of a change of the table: its header, and its rows when they were
/// read (an event's cause may be in its items).
#[derive(Debug, Clone, PartialEq)]
pub enum Header {
    Backup(Box<BackupRecord>),
    Restore(Box<RestoreRecord>),
    Policy(Box<Policy>),
}

impl Header {
    /// The record a header document holds, without its rows; none for what has no events
    /// (expire-retention's run records).
    pub fn of(doc: &Document) -> Result<Option<Header>> {
        Ok(match doc.collection {
            Collection::Backups => Some(Header::Backup(Box::new(records::from_header(doc.clone())?))),
            Collection::Restores => Some(Header::Restore(Box::new(records::from_header(doc.clone())?))),
            Collection::Policies => Some(Header::Policy(Box::new(records::from_header(doc.clone())?))),
            Collection::ExpiryRuns => None,
        })
    }

    /// The record of a header document with its rows as stored now (a save writes the rows
    /// before the header, so they are at least as new as it).
    async fn with_rows(records: &Records, doc: Document) -> Result<Option<Header>> {
        Ok(match doc.collection {
            Collection::Backups => Some(Header::Backup(Box::new(records.read(doc).await?))),
            Collection::Restores => Some(Header::Restore(Box::new(records.read(doc).await?))),
            Collection::Policies | Collection::ExpiryRuns => Header::of(&doc)?,
        })
    }
}

/// One write of a record header as the table's stream carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Where the write is in the stream (its sequence number): what a failed batch names.
    pub position: String,
    /// The header before the write; none for an insert.
    pub old: Option<Document>,
    /// The header after the write; none for a delete.
    pub new: Option<Document>,
    /// When the write was made.
    pub at: Timestamp,
}

/// Events the bus did not take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} event(s) not published: {cause}", failed.len())]
pub struct PublishError {
    /// Positions in the published slice of the events not taken (after the adapter's retries).
    pub failed: Vec<usize>,
    pub cause: String,
}

/// The `EventBus` port: where events go. The EventBridge adapter is
/// `snapnest_aws::events::EventBridgeBus`; locally, `snapnest_local::events::InProcessBus`
/// logs them and keeps them for the tests.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes `events` in order. The adapter batches, and retries what the bus refused
    /// for now; what it still did not take is the error.
    async fn publish(&self, events: &[Event]) -> Result<(), PublishError>;
}

/// What one batch of changes came to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Published {
    /// Changes read (record headers written).
    pub changes: usize,
    /// Events published.
    pub events: usize,
    /// The first change not published in full, and why: it and every change after it are
    /// to be delivered again (their events published again, at least once).
    pub failed_at: Option<String>,
    pub cause: Option<String>,
}

/// publish-events' use case: the events of the table's changes, published.
#[derive(Clone)]
pub struct EventPublisher {
    records: Records,
    bus: Arc<dyn EventBus>,
}

impl EventPublisher {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn EventBus>) -> Self {
        Self { records: Records::new(store), bus }
    }

    /// The events of one change: what [`changes::changes`] says of its two headers, with the
    /// record's rows read when an event's cause is in them.
    pub async fn events_of(&self, change: &Change) -> Result<Vec<Event>> {
        let old = change.old.as_ref().map(Header::of).transpose()?.flatten();
        let Some(doc) = &change.new else { return Ok(Vec::new()) };
        let Some(mut new) = Header::of(doc)? else { return Ok(Vec::new()) };
        if changes::needs_items(old.as_ref(), &new) {
            if let Some(full) = Header::with_rows(&self.records, doc.clone()).await? {
                new = full;
            }
        }
        Ok(changes::changes(old.as_ref(), Some(&new), change.at))
    }

    /// Publishes the events of `changes`, in order. A change whose events could not be made
    /// (its rows unreadable) or were not all taken by the bus is reported with everything
    /// after it, so the stream delivers them again; nothing is skipped.
    pub async fn publish(&self, changes: &[Change]) -> Published {
        let mut published = Published { changes: changes.len(), ..Default::default() };
        let mut events = Vec::new();
        // The change each event is of.
        let mut of_change = Vec::new();
        let mut unreadable = None;
        for (n, change) in changes.iter().enumerate() {
            match self.events_of(change).await {
                Ok(found) => {
                    of_change.extend(std::iter::repeat_n(n, found.len()));
                    events.extend(found);
                }
                Err(e) => {
                    warn!(position = %change.position, error = %e, "events of a change not made; it comes again");
                    unreadable = Some((n, e.to_string()));
                    break;
                }
            }
        }
        let mut failed = unreadable;
        if !events.is_empty() {
            match self.bus.publish(&events).await {
                Ok(()) => published.events = events.len(),
                Err(e) => {
                    let first = e.failed.iter().copied().min().unwrap_or(0);
                    published.events = events.len() - e.failed.len();
                    let change = of_change.get(first).copied().unwrap_or(0);
                    warn!(position = %changes[change].position, error = %e, "events not published; they come again");
                    if failed.as_ref().is_none_or(|(n, _)| change < *n) {
                        failed = Some((change, e.to_string()));
                    }
                }
            }
        }
        if let Some((n, cause)) = failed {
            published.failed_at = Some(changes[n].position.clone());
            published.cause = Some(cause);
        }
        info!(changes = published.changes, events = published.events, failed_at = ?published.failed_at, "changes published");
        published
    }
}
