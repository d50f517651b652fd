//! The `Store` port: where records live, in snapnest's vocabulary.
//!
//! A store keeps [`Document`]s: a record's JSON body plus the few attributes the store
//! must index or check (owner, creation time, version, the "active" and "due" indexes,
//! the lock it holds). The typed layer over it is [`crate::records`]. Two adapters
//! implement it with the same conditional-write semantics:
//! `snapnest_local::embedded::EmbeddedStore` (SQLite, shared by every local function
//! process) and `snapnest_aws::dynamodb::DynamoStore`.

use async_trait::async_trait;
use serde_json::Value;

use std::collections::BTreeMap;

use crate::clock::Timestamp;

/// A kind of record, each in its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    Backups,
    Restores,
    Policies,
    /// One record per expire-retention run that found something due.
    ExpiryRuns,
}

impl Collection {
    pub const ALL: [Collection; 4] = [Self::Backups, Self::Restores, Self::Policies, Self::ExpiryRuns];

    /// The collection whose [`Collection::as_str`] is `name`.
    pub fn named(name: &str) -> Option<Collection> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backups => "backup",
            Self::Restores => "restore",
            Self::Policies => "policy",
            Self::ExpiryRuns => "expiry",
        }
    }
}

impl std::fmt::Display for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record as the store sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub collection: Collection,
    pub id: String,
    /// The version this document has once written: 1 on insert, stored + 1 on update.
    pub version: u64,
    /// The service instance the record belongs to; lists are per owner.
    pub owner: String,
    /// Lists are newest first by this.
    pub created_at: Timestamp,
    /// Needs work by a scheduled function (the sparse "active" index).
    pub active: bool,
    /// When something of it is next due (expiry); in the "due" index while set.
    pub due_at: Option<Timestamp>,
    /// The lock this record holds while set: at most one record holds a given key.
    /// Inserting with a held key fails; updating with `None` releases it.
    pub lock: Option<String>,
    pub body: Value,
}

/// A row of a document: a part of a record that changes on its own (one item of a backup
/// point or a restore), stored and versioned apart from the document, so a change to one
/// item writes that row and not the whole record.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Unique within its document; rows are read back in the order of their keys.
    pub key: String,
    /// The version this row has once written: 1 when new, stored + 1 on update.
    pub version: u64,
    pub body: Value,
}

/// Where a newest-first listing goes on: the position after the last document of a page.
/// Opaque outside the stores: a client gets it as `next_token` and hands it back as it
/// came; only a store reads the position in it, and refuses one it did not make
/// ([`StoreError::BadCursor`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    /// The position after a document created at `created_ms` (epoch milliseconds) with `id`:
    /// every listing is ordered by creation time, then id, newest first.
    pub fn after(created_ms: i64, id: &str) -> Cursor {
        Cursor(format!("{created_ms}:{id}"))
    }

    /// The position after `doc`.
    pub fn after_document(doc: &Document) -> Cursor {
        Cursor::after(doc.created_at.timestamp_millis(), &doc.id)
    }

    /// A cursor as a client sent it back; read only by [`Cursor::position`].
    pub fn from_token(token: &str) -> Cursor {
        Cursor(token.to_owned())
    }

    /// What a client is given to ask for the next page.
    pub fn token(&self) -> &str {
        &self.0
    }

    /// The (creation milliseconds, id) the cursor is after; `BadCursor` for anything a
    /// store did not make.
    pub fn position(&self) -> Result<(i64, String), StoreError> {
        let (ms, id) = self.0.split_once(':').ok_or(StoreError::BadCursor)?;
        let ms: i64 = ms.parse().map_err(|_| StoreError::BadCursor)?;
        if id.is_empty() {
            return Err(StoreError::BadCursor);
        }
        Ok((ms, id.to_owned()))
    }
}

/// The rows a record was read from, by key: their versions and bodies, so a save writes
/// only the rows that changed, each conditional on the version it was read at. Not part of
/// what a record is: two records are equal whatever rows they were read from.
#[derive(Debug, Clone, Default)]
pub struct StoredRows(BTreeMap<String, (u64, Value)>);

impl PartialEq for StoredRows {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl StoredRows {
    /// The rows as read from (or written to) the store.
    pub fn from_rows(rows: Vec<Row>) -> StoredRows {
        StoredRows(rows.into_iter().map(|row| (row.key, (row.version, row.body))).collect())
    }

    /// Of a record's rows now (key and body), those that differ from what was read, each one
    /// version on (1 for a new row). `None` when a row that was read is not among them: rows
    /// are never taken away.
    pub fn changes(&self, rows: Vec<(String, Value)>) -> Option<Vec<Row>> {
        let mut kept = 0;
        let mut changed = Vec::new();
        for (key, body) in rows {
            match self.0.get(&key) {
                Some((_, was)) if *was == body => kept += 1,
                Some((version, _)) => {
                    kept += 1;
                    changed.push(Row { key, version: version + 1, body });
                }
                None => changed.push(Row { key, version: 1, body }),
            }
        }
        (kept == self.0.len()).then_some(changed)
    }

    /// Rows written: what the next save compares with.
    pub fn remember(&mut self, rows: Vec<Row>) {
        self.0.extend(rows.into_iter().map(|row| (row.key, (row.version, row.body))));
    }
}

/// A page of a newest-first listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub documents: Vec<Document>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored version is not the one the writer read: someone else wrote first.
    #[error("{collection} '{id}' was changed concurrently")]
    VersionConflict { collection: Collection, id: String },
    #[error("{collection} '{id}' already exists")]
    AlreadyExists { collection: Collection, id: String },
    /// Another record holds the lock (e.g. a backup already running for the service instance).
    #[error("lock '{key}' is held by '{holder}'")]
    LockHeld { key: String, holder: String },
    /// The client token was used before; the first request's record is `existing_id`.
    #[error("client token already used by '{existing_id}'")]
    TokenUsed { existing_id: String },
    #[error("invalid page cursor")]
    BadCursor,
    /// A transient failure of the backing store (throttling, network): retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: corrupt data, a misconfigured table.
    #[error("store failure: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Writes a new document (version 1) with its rows (each version 1), atomically with
    /// its client token (when given, scoped to the collection and owner) and its lock (when
    /// set). Fails with `TokenUsed` before `LockHeld`, so a retried request finds its
    /// record; a refused insert leaves nothing of the document or its rows.
    async fn insert_with_rows(
        &self,
        doc: &Document,
        rows: &[Row],
        client_token: Option<&str>,
    ) -> Result<(), StoreError>;

    /// [`Store::insert_with_rows`] of a document without rows.
    async fn insert(&self, doc: &Document, client_token: Option<&str>) -> Result<(), StoreError> {
        self.insert_with_rows(doc, &[], client_token).await
    }

    /// Replaces a document if the stored version is `doc.version - 1`, and writes `rows`
    /// (only the ones that changed), each if its stored version is `row.version - 1` (none
    /// stored for a new row, version 1): `VersionConflict` otherwise. Releases the lock the
    /// stored document held when `doc.lock` no longer names it, and takes a lock `doc.lock`
    /// newly names (`LockHeld` if another record holds it). Owner and creation time are
    /// fixed at insert; an update keeps the stored ones. All or nothing where the store can
    /// write that much at once; otherwise the rows go first, in all-or-nothing batches, and
    /// the document last, so a reader never sees a document newer than its rows.
    async fn update_with_rows(&self, doc: &Document, rows: &[Row]) -> Result<(), StoreError>;

    /// [`Store::update_with_rows`] of the document alone.
    async fn update(&self, doc: &Document) -> Result<(), StoreError> {
        self.update_with_rows(doc, &[]).await
    }

    /// Every row of a document, in key order (read consistently); none for a missing one.
    async fn get_rows(&self, collection: Collection, id: &str) -> Result<Vec<Row>, StoreError>;

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError>;

    /// Documents of one owner, newest first.
    async fn list_owned(
        &self,
        collection: Collection,
        owner: &str,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page, StoreError>;

    /// Every document of a collection whatever its owner, newest first (the jobs list).
    async fn list_collection(
        &self,
        collection: Collection,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page, StoreError>;

    /// Deletes a document and its rows if the stored version is `version`, releasing the
    /// lock it holds.
    /// `VersionConflict` when it changed or is gone.
    async fn delete(&self, collection: Collection, id: &str, version: u64) -> Result<(), StoreError>;

    /// Takes the lock `key` for `holder`; taking a lock one already holds succeeds.
    /// `LockHeld` with the holder when another holds it.
    async fn acquire_lock(&self, key: &str, holder: &str) -> Result<(), StoreError>;

    /// Releases the lock `key` if `holder` holds it; otherwise does nothing.
    async fn release_lock(&self, key: &str, holder: &str) -> Result<(), StoreError>;

    /// Every document with `active` set, read from an index that holds only those.
    async fn list_active(&self, collection: Collection) -> Result<Vec<Document>, StoreError>;

    /// Every document whose `due_at` is at or before `now`, read from an index of due times.
    async fn list_due(&self, collection: Collection, now: Timestamp) -> Result<Vec<Document>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(key: &str, version: u64, body: Value) -> Row {
        Row { key: key.into(), version, body }
    }

    #[test]
    fn a_save_sends_only_the_rows_that_changed_one_version_on() {
        // GIVEN two rows read at versions 1 and 4
        let stored = StoredRows::from_rows(vec![row("item#0", 1, json!("a")), row("item#1", 4, json!("b"))]);
        // WHEN the record now has item#1 changed and a new item#2
        let now = vec![("item#0".into(), json!("a")), ("item#1".into(), json!("b2")), ("item#2".into(), json!("c"))];
        // THEN only those two are written: item#1 at version 5, item#2 new at 1
        assert_eq!(stored.changes(now), Some(vec![row("item#1", 5, json!("b2")), row("item#2", 1, json!("c"))]));
        // AND a record that lost a row it was read with is refused
        assert_eq!(stored.changes(vec![("item#0".into(), json!("a"))]), None);
    }
}
