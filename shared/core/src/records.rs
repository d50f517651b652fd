//! Typed access to the store: backup and restore records to and from [`Document`]s.
//!
//! This is where a record decides which indexes it is in (active while a scheduled
//! function has work on it, due while something of it can expire) and which lock it
//! holds (one running backup per service instance; one in-place restore per service
//! instance). Every save is a conditional write on the version that was read.

use std::sync::Arc;

use chrono::Duration;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::model::{BackupRecord, RestoreMode, RestorePhase, RestoreRecord, Timestamp};
use crate::store::{Collection, Document, Store, StoreError};

/// A record kept in the store.
pub trait StoredRecord: Serialize + DeserializeOwned + Send + Sync {
    const COLLECTION: Collection;
    /// How a user names it in an error ("backup", "restore").
    const WHAT: &'static str;
    fn id(&self) -> &str;
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
    fn owner(&self) -> &str;
    fn created_at(&self) -> Timestamp;
    /// In the store's index of records a scheduled function has work on.
    fn active(&self) -> bool {
        false
    }
    /// In the store's index of due times until then.
    fn due_at(&self) -> Option<Timestamp> {
        None
    }
    /// The lock the record holds while set.
    fn lock(&self) -> Option<String> {
        None
    }
}

/// The lock key of the one running backup of a service instance.
pub fn backup_lock(service_instance_id: &str) -> String {
    format!("backup#{service_instance_id}")
}

/// The lock key of the one running in-place restore of a service instance.
pub fn restore_lock(service_instance_id: &str) -> String {
    format!("restore#{service_instance_id}")
}

impl StoredRecord for BackupRecord {
    const COLLECTION: Collection = Collection::Backups;
    const WHAT: &'static str = "backup";
    fn id(&self) -> &str {
        &self.backup_id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn owner(&self) -> &str {
        &self.service_instance_id
    }
    fn created_at(&self) -> Timestamp {
        self.started_at
    }
    fn active(&self) -> bool {
        self.needs_work()
    }
    fn due_at(&self) -> Option<Timestamp> {
        self.next_expiry()
    }
    fn lock(&self) -> Option<String> {
        (!self.status.is_terminal()).then(|| backup_lock(&self.service_instance_id))
    }
}

impl StoredRecord for RestoreRecord {
    const COLLECTION: Collection = Collection::Restores;
    const WHAT: &'static str = "restore";
    fn id(&self) -> &str {
        &self.restore_id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn owner(&self) -> &str {
        &self.service_instance_id
    }
    fn created_at(&self) -> Timestamp {
        self.started_at
    }
    fn active(&self) -> bool {
        // A cancelled in-place restore still has instances to start again.
        self.phase != RestorePhase::Done
    }
    fn due_at(&self) -> Option<Timestamp> {
        None
    }
    fn lock(&self) -> Option<String> {
        (self.mode == RestoreMode::InPlace && self.phase != RestorePhase::Done)
            .then(|| restore_lock(&self.service_instance_id))
    }
}

fn to_document<R: StoredRecord>(record: &R) -> Result<Document> {
    Ok(Document {
        collection: R::COLLECTION,
        id: record.id().to_owned(),
        version: record.version(),
        owner: record.owner().to_owned(),
        created_at: record.created_at(),
        active: record.active(),
        due_at: record.due_at(),
        lock: record.lock(),
        body: serde_json::to_value(record).map_err(|e| StoreError::Internal(format!("serialize record: {e}")))?,
    })
}

pub fn from_document<R: StoredRecord>(doc: Document) -> Result<R> {
    let mut record: R = serde_json::from_value(doc.body)
        .map_err(|e| StoreError::Internal(format!("{} '{}' is unreadable: {e}", R::WHAT, doc.id)))?;
    record.set_version(doc.version);
    Ok(record)
}

/// How long the invocation that creates a backup may take to issue its snapshots before
/// poll-status assumes it died and takes over.
pub fn start_lease() -> Duration {
    Duration::seconds(60)
}

/// Typed access to the store: every read, insert and conditional save of a record goes
/// through here. Cheap to clone; each service holds one.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
}

impl Records {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The store itself, for what has no typed form (locks, listings across collections).
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Reads a record; 404 when there is none.
    pub async fn load<R: StoredRecord>(&self, id: &str) -> Result<R> {
        match self.store.get(R::COLLECTION, id).await? {
            Some(doc) => from_document(doc),
            None => Err(Error::not_found(R::WHAT, id)),
        }
    }

    /// Writes a new record (version 1) with its client token and lock.
    pub async fn insert<R: StoredRecord>(&self, record: &mut R, client_token: Option<&str>) -> Result<(), StoreError> {
        record.set_version(1);
        let doc = to_document(record).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.store.insert(&doc, client_token).await
    }

    /// Saves a changed record if nobody else saved it since it was read.
    pub async fn save<R: StoredRecord>(&self, record: &mut R) -> Result<()> {
        let read_version = record.version();
        record.set_version(read_version + 1);
        let outcome = match to_document(record) {
            Ok(doc) => self.store.update(&doc).await.map_err(Error::from),
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            record.set_version(read_version);
        }
        outcome
    }

    /// Every record a scheduled function has work on.
    pub async fn active<R: StoredRecord>(&self) -> Result<Vec<R>> {
        self.store.list_active(R::COLLECTION).await?.into_iter().map(from_document).collect()
    }

    /// Every record due at `now`.
    pub async fn due<R: StoredRecord>(&self, now: Timestamp) -> Result<Vec<R>> {
        self.store.list_due(R::COLLECTION, now).await?.into_iter().map(from_document).collect()
    }

    /// A page of one owner's records, newest first.
    pub async fn page_owned<R: StoredRecord>(
        &self,
        owner: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<R>, Option<String>)> {
        let page = self.store.list_owned(R::COLLECTION, owner, limit, cursor).await?;
        let records = page.documents.into_iter().map(from_document).collect::<Result<_>>()?;
        Ok((records, page.next_cursor))
    }

    /// A page of every record of a kind, newest first.
    pub async fn page_all<R: StoredRecord>(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<R>, Option<String>)> {
        let page = self.store.list_collection(R::COLLECTION, limit, cursor).await?;
        let records = page.documents.into_iter().map(from_document).collect::<Result<_>>()?;
        Ok((records, page.next_cursor))
    }
}
