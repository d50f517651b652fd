//! The embedded store: one SQLite file in `SNAPNEST_DATA_DIR`, shared by every function
//! process on the machine (`cargo lambda watch` runs each function as its own process).
//!
//! SQLite rather than a JSON file or sled: several processes write at once, and SQLite
//! gives them real transactions (`BEGIN IMMEDIATE` + a busy timeout), partial indexes for
//! the "active" and "due" lookups, and a bundled build with no system dependency.
//! The conditional-write semantics are the DynamoDB store's: put-if-absent, update on the
//! expected version, tokens and locks written in the same transaction as the record.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use snapnest_core::model::Timestamp;
use snapnest_core::store::{Collection, Cursor, Document, Page, Row, Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    active INTEGER NOT NULL,
    due_at INTEGER,
    lock_key TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE INDEX IF NOT EXISTS documents_by_owner ON documents (collection, owner, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS documents_by_time ON documents (collection, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS documents_active ON documents (collection) WHERE active = 1;
CREATE INDEX IF NOT EXISTS documents_due ON documents (collection, due_at) WHERE due_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS rows (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (collection, id, key)
);
CREATE TABLE IF NOT EXISTS client_tokens (scope TEXT PRIMARY KEY, id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, holder TEXT NOT NULL);
";

/// The SQLite-backed [`Store`].
#[derive(Clone)]
pub struct EmbeddedStore {
    // A std Mutex: every use is inside `spawn_blocking`, never held across an await.
    conn: Arc<Mutex<Connection>>,
}

impl EmbeddedStore {
    /// Opens (creating when missing) `store.sqlite` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Internal(format!("cannot create {}: {e}", data_dir.display())))?;
        let conn = Connection::open(data_dir.join("store.sqlite")).map_err(internal)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(internal)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(internal)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(internal)?;
        conn.execute_batch(SCHEMA).map_err(internal)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn with_conn<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Internal("store mutex poisoned".into()))?;
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }
}

fn internal(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(code.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Internal(other.to_string()),
    }
}

fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl EmbeddedStore {
    /// A newest-first page of a collection, of one owner or of all.
    async fn newest_first(
        &self,
        collection: Collection,
        owner: Option<String>,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        let after = cursor.map(Cursor::position).transpose()?;
        self.with_conn(move |conn| {
            let (start_ms, start_id) = after.unwrap_or((i64::MAX, String::new()));
            let sql = format!(
                "SELECT {COLUMNS} FROM documents WHERE collection = ?1 AND (?2 IS NULL OR owner = ?2)
                 AND (created_at < ?3 OR (created_at = ?3 AND (?4 = '' OR id < ?4)))
                 ORDER BY created_at DESC, id DESC LIMIT ?5"
            );
            let mut documents = query_documents(
                conn,
                collection,
                &sql,
                params![collection.as_str(), owner, start_ms, start_id, limit as i64 + 1],
            )?;
            let next_cursor = if documents.len() > limit {
                documents.truncate(limit);
                documents.last().map(Cursor::after_document)
            } else {
                None
            };
            Ok(Page { documents, next_cursor })
        })
        .await
    }
}

/// Writes rows of `doc` inside its transaction, each only over the version it was read at.
fn write_rows(tx: &rusqlite::Transaction<'_>, doc: &Document, rows: &[Row]) -> Result<(), StoreError> {
    let conflict = || StoreError::VersionConflict { collection: doc.collection, id: doc.id.clone() };
    for row in rows {
        let written = if row.version == 1 {
            tx.execute(
                "INSERT OR IGNORE INTO rows (collection, id, key, version, body) VALUES (?1, ?2, ?3, 1, ?4)",
                params![doc.collection.as_str(), doc.id, row.key, row.body.to_string()],
            )
        } else {
            tx.execute(
                "UPDATE rows SET version = ?4, body = ?5
                 WHERE collection = ?1 AND id = ?2 AND key = ?3 AND version = ?4 - 1",
                params![doc.collection.as_str(), doc.id, row.key, row.version as i64, row.body.to_string()],
            )
        }
        .map_err(internal)?;
        if written == 0 {
            return Err(conflict());
        }
    }
    Ok(())
}

fn token_scope(doc: &Document, token: &str) -> String {
    format!("{}#{}#{}", doc.collection, doc.owner, token)
}

const COLUMNS: &str = "id, version, owner, created_at, active, due_at, lock_key, body";

fn row_to_document(collection: Collection, row: &rusqlite::Row<'_>) -> rusqlite::Result<Document> {
    let body: String = row.get(7)?;
    Ok(Document {
        collection,
        id: row.get(0)?,
        version: row.get::<_, i64>(1)? as u64,
        owner: row.get(2)?,
        created_at: from_millis(row.get(3)?),
        active: row.get::<_, i64>(4)? != 0,
        due_at: row.get::<_, Option<i64>>(5)?.map(from_millis),
        lock: row.get(6)?,
        body: serde_json::from_str(&body)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(e)))?,
    })
}

fn query_documents(
    conn: &Connection,
    collection: Collection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Document>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(internal)?;
    let rows = stmt.query_map(params, |row| row_to_document(collection, row)).map_err(internal)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn insert_with_rows(
        &self,
        doc: &Document,
        rows: &[Row],
        client_token: Option<&str>,
    ) -> Result<(), StoreError> {
        let doc = doc.clone();
        let rows = rows.to_vec();
        let token = client_token.map(|t| token_scope(&doc, t));
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(internal)?;
            if let Some(scope) = &token {
                let existing: Option<String> = tx
                    .query_row("SELECT id FROM client_tokens WHERE scope = ?1", [scope], |r| r.get(0))
                    .optional()
                    .map_err(internal)?;
                if let Some(existing_id) = existing {
                    return Err(StoreError::TokenUsed { existing_id });
                }
                tx.execute("INSERT INTO client_tokens (scope, id) VALUES (?1, ?2)", params![scope, doc.id])
                    .map_err(internal)?;
            }
            if let Some(key) = &doc.lock {
                let holder: Option<String> = tx
                    .query_row("SELECT holder FROM locks WHERE key = ?1", [key], |r| r.get(0))
                    .optional()
                    .map_err(internal)?;
                if let Some(holder) = holder {
                    return Err(StoreError::LockHeld { key: key.clone(), holder });
                }
                tx.execute("INSERT INTO locks (key, holder) VALUES (?1, ?2)", params![key, doc.id])
                    .map_err(internal)?;
            }
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO documents (collection, id, version, owner, created_at, active, due_at, lock_key, body)
                     VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        doc.collection.as_str(),
                        doc.id,
                        doc.owner,
                        millis(doc.created_at),
                        doc.active as i64,
                        doc.due_at.map(millis),
                        doc.lock,
                        doc.body.to_string()
                    ],
                )
                .map_err(internal)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists { collection: doc.collection, id: doc.id.clone() });
            }
            write_rows(&tx, &doc, &rows)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn update_with_rows(&self, doc: &Document, rows: &[Row]) -> Result<(), StoreError> {
        let doc = doc.clone();
        let rows = rows.to_vec();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(internal)?;
            let held: Option<Option<String>> = tx
                .query_row(
                    "SELECT lock_key FROM documents WHERE collection = ?1 AND id = ?2 AND version = ?3",
                    params![doc.collection.as_str(), doc.id, doc.version as i64 - 1],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            let Some(held_lock) = held else {
                return Err(StoreError::VersionConflict { collection: doc.collection, id: doc.id.clone() });
            };
            tx.execute(
                "UPDATE documents SET version = ?3, active = ?4, due_at = ?5, lock_key = ?6, body = ?7
                 WHERE collection = ?1 AND id = ?2",
                params![
                    doc.collection.as_str(),
                    doc.id,
                    doc.version as i64,
                    doc.active as i64,
                    doc.due_at.map(millis),
                    doc.lock,
                    doc.body.to_string()
                ],
            )
            .map_err(internal)?;
            if held_lock != doc.lock {
                if let Some(key) = &doc.lock {
                    let holder: Option<String> = tx
                        .query_row("SELECT holder FROM locks WHERE key = ?1", [key], |r| r.get(0))
                        .optional()
                        .map_err(internal)?;
                    match holder {
                        Some(holder) if holder != doc.id => {
                            return Err(StoreError::LockHeld { key: key.clone(), holder })
                        }
                        Some(_) => {}
                        None => {
                            tx.execute("INSERT INTO locks (key, holder) VALUES (?1, ?2)", params![key, doc.id])
                                .map_err(internal)?;
                        }
                    }
                }
                if let Some(key) = &held_lock {
                    tx.execute("DELETE FROM locks WHERE key = ?1 AND holder = ?2", params![key, doc.id])
                        .map_err(internal)?;
                }
            }
            write_rows(&tx, &doc, &rows)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn get_rows(&self, collection: Collection, id: &str) -> Result<Vec<Row>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT key, version, body FROM rows WHERE collection = ?1 AND id = ?2 ORDER BY key")
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![collection.as_str(), id], |r| {
                    let body: String = r.get(2)?;
                    Ok(Row {
                        key: r.get(0)?,
                        version: r.get::<_, i64>(1)? as u64,
                        body: serde_json::from_str(&body).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
                        })?,
                    })
                })
                .map_err(internal)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
        })
        .await
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM documents WHERE collection = ?1 AND id = ?2");
            Ok(query_documents(conn, collection, &sql, params![collection.as_str(), id])?.pop())
        })
        .await
    }

    async fn list_owned(
        &self,
        collection: Collection,
        owner: &str,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        self.newest_first(collection, Some(owner.to_owned()), limit, cursor).await
    }

    async fn list_collection(
        &self,
        collection: Collection,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        self.newest_first(collection, None, limit, cursor).await
    }

    async fn delete(&self, collection: Collection, id: &str, version: u64) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(internal)?;
            let held: Option<Option<String>> = tx
                .query_row(
                    "SELECT lock_key FROM documents WHERE collection = ?1 AND id = ?2 AND version = ?3",
                    params![collection.as_str(), id, version as i64],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            let Some(held_lock) = held else {
                return Err(StoreError::VersionConflict { collection, id: id.clone() });
            };
            tx.execute("DELETE FROM documents WHERE collection = ?1 AND id = ?2", params![collection.as_str(), id])
                .map_err(internal)?;
            tx.execute("DELETE FROM rows WHERE collection = ?1 AND id = ?2", params![collection.as_str(), id])
                .map_err(internal)?;
            if let Some(key) = held_lock {
                tx.execute("DELETE FROM locks WHERE key = ?1 AND holder = ?2", params![key, id]).map_err(internal)?;
            }
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn acquire_lock(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let (key, holder) = (key.to_owned(), holder.to_owned());
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(internal)?;
            let current: Option<String> = tx
                .query_row("SELECT holder FROM locks WHERE key = ?1", [&key], |r| r.get(0))
                .optional()
                .map_err(internal)?;
            match current {
                Some(current) if current != holder => return Err(StoreError::LockHeld { key, holder: current }),
                Some(_) => {}
                None => {
                    tx.execute("INSERT INTO locks (key, holder) VALUES (?1, ?2)", params![key, holder])
                        .map_err(internal)?;
                }
            }
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn release_lock(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let (key, holder) = (key.to_owned(), holder.to_owned());
        self.with_conn(move |conn| {
            conn.execute("DELETE FROM locks WHERE key = ?1 AND holder = ?2", params![key, holder]).map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn list_active(&self, collection: Collection) -> Result<Vec<Document>, StoreError> {
        self.with_conn(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM documents WHERE collection = ?1 AND active = 1");
            query_documents(conn, collection, &sql, [collection.as_str()])
        })
        .await
    }

    async fn list_due(&self, collection: Collection, now: Timestamp) -> Result<Vec<Document>, StoreError> {
        self.with_conn(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM documents WHERE collection = ?1 AND due_at IS NOT NULL AND due_at <= ?2 ORDER BY due_at"
            );
            query_documents(conn, collection, &sql, params![collection.as_str(), millis(now)])
        })
        .await
    }
}
