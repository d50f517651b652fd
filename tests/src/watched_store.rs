//! A store in front of another that sees every record write before passing it on, and
//! counts what every read returns: how the tests count, fail or race the writes of a
//! use case without a special path in the store adapters.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use snapnest_core::clock::Timestamp;
use snapnest_core::store::{Collection, Cursor, Document, Page, Row, Store, StoreError};

/// What sees a record write first. An error is the write's answer (it is not made).
#[async_trait]
pub trait Watch: Send + Sync {
    /// `insert`: the record is new; otherwise an update of it.
    async fn before_write(&self, doc: &Document, rows: &[Row], insert: bool) -> Result<(), StoreError>;
}

#[async_trait]
impl<W: Watch + ?Sized> Watch for Arc<W> {
    async fn before_write(&self, doc: &Document, rows: &[Row], insert: bool) -> Result<(), StoreError> {
        (**self).before_write(doc, rows, insert).await
    }
}

/// `inner`, with `watch` seeing each record write first, and a count of what is read.
pub struct Watched<W> {
    inner: Arc<dyn Store>,
    pub watch: W,
    /// Documents and rows the reads returned.
    items_read: AtomicUsize,
}

impl<W> Watched<W> {
    pub fn new(inner: Arc<dyn Store>, watch: W) -> Self {
        Self { inner, watch, items_read: AtomicUsize::new(0) }
    }

    /// Documents and rows read so far (each row, header or listed document is one item).
    pub fn items_read(&self) -> usize {
        self.items_read.load(Ordering::SeqCst)
    }

    fn read<T>(&self, answer: Result<T, StoreError>, items: impl Fn(&T) -> usize) -> Result<T, StoreError> {
        if let Ok(found) = &answer {
            self.items_read.fetch_add(items(found), Ordering::SeqCst);
        }
        answer
    }
}

#[async_trait]
impl<W: Watch> Store for Watched<W> {
    async fn insert_with_rows(&self, doc: &Document, rows: &[Row], token: Option<&str>) -> Result<(), StoreError> {
        self.watch.before_write(doc, rows, true).await?;
        self.inner.insert_with_rows(doc, rows, token).await
    }
    async fn update_with_rows(&self, doc: &Document, rows: &[Row]) -> Result<(), StoreError> {
        self.watch.before_write(doc, rows, false).await?;
        self.inner.update_with_rows(doc, rows).await
    }
    async fn get_rows(&self, c: Collection, id: &str) -> Result<Vec<Row>, StoreError> {
        self.read(self.inner.get_rows(c, id).await, Vec::len)
    }
    async fn get(&self, c: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        self.read(self.inner.get(c, id).await, |d| usize::from(d.is_some()))
    }
    async fn list_owned(&self, c: Collection, o: &str, l: usize, cur: Option<&Cursor>) -> Result<Page, StoreError> {
        self.read(self.inner.list_owned(c, o, l, cur).await, |p| p.documents.len())
    }
    async fn list_collection(&self, c: Collection, l: usize, cur: Option<&Cursor>) -> Result<Page, StoreError> {
        self.read(self.inner.list_collection(c, l, cur).await, |p| p.documents.len())
    }
    async fn delete(&self, c: Collection, id: &str, v: u64) -> Result<(), StoreError> {
        self.inner.delete(c, id, v).await
    }
    async fn acquire_lock(&self, k: &str, h: &str) -> Result<(), StoreError> {
        self.inner.acquire_lock(k, h).await
    }
    async fn release_lock(&self, k: &str, h: &str) -> Result<(), StoreError> {
        self.inner.release_lock(k, h).await
    }
    async fn list_active(&self, c: Collection) -> Result<Vec<Document>, StoreError> {
        self.read(self.inner.list_active(c).await, Vec::len)
    }
    async fn list_due(&self, c: Collection, now: Timestamp) -> Result<Vec<Document>, StoreError> {
        self.read(self.inner.list_due(c, now).await, Vec::len)
    }
}

/// Counts what is written: documents, rows and their bytes of JSON. The benchmark watches
/// the real store with it to show what each step costs in writes.
#[derive(Debug, Default)]
pub struct WriteMeter(Mutex<Written>);

/// Writes counted by a [`WriteMeter`] since it was last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub documents: usize,
    pub rows: usize,
    pub bytes: usize,
}

impl WriteMeter {
    /// What was written since the last call, and starts counting again.
    pub fn take(&self) -> Written {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[async_trait]
impl Watch for WriteMeter {
    async fn before_write(&self, doc: &Document, rows: &[Row], _insert: bool) -> Result<(), StoreError> {
        let mut written = self.0.lock().unwrap();
        written.documents += 1;
        written.rows += rows.len();
        written.bytes += doc.body.to_string().len() + rows.iter().map(|r| r.body.to_string().len()).sum::<usize>();
        Ok(())
    }
}
