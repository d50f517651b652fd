//! Typed access to the store: backup and restore records to and from [`Document`]s.
//!
//! This is where a record decides which indexes it is in (active while a scheduled
//! function has work on it, due while something of it can expire) and which lock it
//! holds (one running backup per service instance; one in-place restore per service
//! instance). A record's item lists are stored as rows beside its header document, so a
//! save writes the header and only the rows that changed; every save is a conditional
//! write on the versions that were read.

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::{BackupRecord, RestoreMode, RestorePhase, RestoreRecord, Timestamp};
use crate::status::JobStatus;
use crate::store::{Collection, Cursor, Document, Row, Store, StoreError, StoredRows};

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
    /// The lists of per-resource items the record keeps as rows of its document: each
    /// list's row-key prefix and where it sits in the record's JSON. A list outgrows an
    /// item of the store (a 1,594-item point) and changes an element at a time.
    const ROW_LISTS: &'static [RowList] = &[];
    /// The rows the record was read from, for the records that have rows.
    fn stored_rows(&mut self) -> Option<&mut StoredRows> {
        None
    }
}

/// A list of a record kept as rows: `prefix` names its rows (`<prefix>#00042`), `path` is
/// the list's place in the record's JSON (a missing parent means the list is absent).
pub struct RowList {
    pub prefix: &'static str,
    pub path: &'static [&'static str],
}

fn row_key(prefix: &str, index: usize) -> String {
    format!("{prefix}#{index:05}")
}

/// Takes the row lists out of a record's JSON: the header that is left, and the rows.
fn split_rows(lists: &[RowList], mut body: Value) -> (Value, Vec<(String, Value)>) {
    let mut rows = Vec::new();
    for list in lists {
        let (last, parents) = list.path.split_last().expect("a row list has a path");
        let parent = parents.iter().try_fold(&mut body, |node, name| node.get_mut(*name));
        if let Some(Value::Object(parent)) = parent {
            if let Some(Value::Array(elements)) = parent.remove(*last) {
                rows.extend(elements.into_iter().enumerate().map(|(n, element)| (row_key(list.prefix, n), element)));
            }
        }
    }
    (body, rows)
}

/// Puts the rows back into a header as the lists they came from.
fn join_rows(lists: &[RowList], mut body: Value, rows: &[Row]) -> Value {
    for list in lists {
        let (last, parents) = list.path.split_last().expect("a row list has a path");
        let marker = format!("{}#", list.prefix);
        let elements: Vec<Value> = rows.iter().filter(|r| r.key.starts_with(&marker)).map(|r| r.body.clone()).collect();
        let parent = parents.iter().try_fold(&mut body, |node, name| node.get_mut(*name));
        if let Some(Value::Object(parent)) = parent {
            parent.insert((*last).to_owned(), Value::Array(elements));
        }
    }
    body
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
    const ROW_LISTS: &'static [RowList] =
        &[RowList { prefix: "item", path: &["items"] }, RowList { prefix: "replica", path: &["replication", "items"] }];
    fn stored_rows(&mut self) -> Option<&mut StoredRows> {
        Some(&mut self.stored_rows)
    }
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
        // Due to expire, or to have its snapshots looked for: whichever comes first.
        match (self.next_expiry(), crate::retention::lifecycle::next_verification(self)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn lock(&self) -> Option<String> {
        (!self.status.is_terminal()).then(|| backup_lock(&self.service_instance_id))
    }
}

impl StoredRecord for RestoreRecord {
    const COLLECTION: Collection = Collection::Restores;
    const WHAT: &'static str = "restore";
    const ROW_LISTS: &'static [RowList] = &[RowList { prefix: "item", path: &["items"] }];
    fn stored_rows(&mut self) -> Option<&mut StoredRows> {
        Some(&mut self.stored_rows)
    }
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
        // expire-retention deletes the replaced resources once they are no longer kept.
        self.keeps_replaced().then_some(self.kept_until).flatten()
    }
    fn lock(&self) -> Option<String> {
        (self.mode == RestoreMode::InPlace && self.phase != RestorePhase::Done)
            .then(|| restore_lock(&self.service_instance_id))
    }
}

/// A record as the store keeps it: its header document, and its rows.
fn to_document<R: StoredRecord>(record: &R) -> Result<(Document, Vec<(String, Value)>)> {
    let body = serde_json::to_value(record).map_err(|e| StoreError::Internal(format!("serialize record: {e}")))?;
    let (body, rows) = split_rows(R::ROW_LISTS, body);
    let doc = Document {
        collection: R::COLLECTION,
        id: record.id().to_owned(),
        version: record.version(),
        owner: record.owner().to_owned(),
        created_at: record.created_at(),
        active: record.active(),
        due_at: record.due_at(),
        lock: record.lock(),
        body,
    };
    Ok((doc, rows))
}

/// A record from its header document and its rows.
fn from_parts<R: StoredRecord>(doc: Document, rows: Vec<Row>) -> Result<R> {
    let body = join_rows(R::ROW_LISTS, doc.body, &rows);
    let mut record: R = serde_json::from_value(body)
        .map_err(|e| StoreError::Internal(format!("{} '{}' is unreadable: {e}", R::WHAT, doc.id)))?;
    record.set_version(doc.version);
    if let Some(stored) = record.stored_rows() {
        *stored = StoredRows::from_rows(rows);
    }
    Ok(record)
}

/// A record from its header document alone: its row lists (a point's items, its copies)
/// empty. What a record's header says (status, ids, times, errors) without a read of its rows.
pub fn from_header<R: StoredRecord>(doc: Document) -> Result<R> {
    from_parts(doc, Vec::new())
}

/// The status a backup or restore's header document says, read without its item rows; none
/// when the header has no readable one.
pub fn header_status(doc: &Document) -> Option<JobStatus> {
    doc.body.get("status")?.as_str()?.parse().ok()
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
            Some(doc) => self.read(doc).await,
            None => Err(Error::not_found(R::WHAT, id)),
        }
    }

    /// The record of a document a listing found, with its rows.
    pub async fn read<R: StoredRecord>(&self, doc: Document) -> Result<R> {
        let rows =
            if R::ROW_LISTS.is_empty() { Vec::new() } else { self.store.get_rows(R::COLLECTION, &doc.id).await? };
        from_parts(doc, rows)
    }

    /// Writes a new record (version 1) with its rows, client token and lock.
    pub async fn insert<R: StoredRecord>(&self, record: &mut R, client_token: Option<&str>) -> Result<(), StoreError> {
        record.set_version(1);
        let (doc, rows) = to_document(record).map_err(|e| StoreError::Internal(e.to_string()))?;
        let rows: Vec<Row> = rows.into_iter().map(|(key, body)| Row { key, version: 1, body }).collect();
        self.store.insert_with_rows(&doc, &rows, client_token).await?;
        if let Some(stored) = record.stored_rows() {
            *stored = StoredRows::from_rows(rows);
        }
        Ok(())
    }

    /// Saves a changed record if nobody else saved it since it was read: its header, and
    /// only the rows that changed, each conditional on the version it was read at.
    pub async fn save<R: StoredRecord>(&self, record: &mut R) -> Result<()> {
        let read_version = record.version();
        record.set_version(read_version + 1);
        let outcome = self.write_changes(record).await;
        if outcome.is_err() {
            record.set_version(read_version);
        }
        outcome
    }

    async fn write_changes<R: StoredRecord>(&self, record: &mut R) -> Result<()> {
        let (doc, rows) = to_document(record)?;
        let mut unread = StoredRows::default();
        let stored = record.stored_rows().unwrap_or(&mut unread);
        let changed = stored
            .changes(rows)
            .ok_or_else(|| StoreError::Internal(format!("{} '{}' lost items it had", R::WHAT, doc.id)))?;
        self.store.update_with_rows(&doc, &changed).await?;
        stored.remember(changed);
        Ok(())
    }

    /// Every record a scheduled function has work on.
    pub async fn active<R: StoredRecord>(&self) -> Result<Vec<R>> {
        self.active_where(|_| true).await
    }

    /// The records a scheduled function has work on whose header `wanted` keeps: the others'
    /// rows are not read (a finished point active for another function's work).
    pub async fn active_where<R: StoredRecord>(&self, wanted: impl Fn(&Document) -> bool) -> Result<Vec<R>> {
        let docs = self.store.list_active(R::COLLECTION).await?;
        self.read_all(docs.into_iter().filter(|doc| wanted(doc)).collect()).await
    }

    /// Every record due at `now`.
    pub async fn due<R: StoredRecord>(&self, now: Timestamp) -> Result<Vec<R>> {
        self.read_all(self.store.list_due(R::COLLECTION, now).await?).await
    }

    async fn read_all<R: StoredRecord>(&self, docs: Vec<Document>) -> Result<Vec<R>> {
        let mut records = Vec::with_capacity(docs.len());
        for doc in docs {
            records.push(self.read(doc).await?);
        }
        Ok(records)
    }

    /// Every record of one owner, newest first, read a page at a time.
    pub async fn all_owned<R: StoredRecord>(&self, owner: &str) -> Result<Vec<R>> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = self.page_owned::<R>(owner, 100, cursor.as_ref()).await?;
            all.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// A page of one owner's records, newest first.
    pub async fn page_owned<R: StoredRecord>(
        &self,
        owner: &str,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<R>, Option<Cursor>)> {
        let page = self.store.list_owned(R::COLLECTION, owner, limit, cursor).await?;
        Ok((self.read_all(page.documents).await?, page.next_cursor))
    }

    /// A page of every record of a kind, newest first.
    pub async fn page_all<R: StoredRecord>(
        &self,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<R>, Option<Cursor>)> {
        let page = self.store.list_collection(R::COLLECTION, limit, cursor).await?;
        Ok((self.read_all(page.documents).await?, page.next_cursor))
    }
}
