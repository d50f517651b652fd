//! The behaviour every [`Store`] adapter must have, as one check run against each of them
//! (the embedded store on a temporary folder, the DynamoDB store on moto) by
//! `tests/tests/store_contract.rs`, so the adapters cannot drift apart.
//!
//! [`check_store_contract`] panics on the first breach, saying which. It only writes,
//! deletes and locks with ids, owners, tokens, lock keys and holders unique to the run,
//! so it can run against a store that holds other data (moto's state is shared by the
//! test process). The collection list and the lists of the active and due indexes hold
//! every document of a collection, so those checks are about the run's own documents plus
//! invariants on the rest (newest first and each once; all active; all due, in due order).
//! Index checks are retried for a few seconds, because a DynamoDB index is eventually
//! consistent; against moto and SQLite they pass at once.
//!
//! Not covered: concurrent writers racing each other. moto applies a transaction without
//! isolation from concurrent requests, so a race there would test moto, not the adapter.

use std::future::Future;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use snapnest_core::model::Timestamp;
use snapnest_core::store::{Collection, Cursor, Document, Page, Row, Store, StoreError};

/// Runs every check of the store contract against `store`; panics on the first breach.
pub async fn check_store_contract(store: &dyn Store) {
    let run = Run::new();
    round_trip(store, &run).await;
    insert_conflicts(store, &run).await;
    versioned_updates(store, &run).await;
    lock_release(store, &run).await;
    lock_taken_by_update(store, &run).await;
    owned_lists(store, &run).await;
    collection_lists(store, &run).await;
    deletes(store, &run).await;
    standalone_locks(store, &run).await;
    active_index(store, &run).await;
    due_index(store, &run).await;
    rows(store, &run).await;
}

/// What makes this run's names unique, and its notion of now.
struct Run {
    tag: String,
    /// Stores keep times to the millisecond: every time the contract writes is whole millis.
    now: Timestamp,
}

impl Run {
    fn new() -> Self {
        let now = Utc.timestamp_millis_opt(Utc::now().timestamp_millis()).single().expect("now is a valid time");
        Run { tag: uuid::Uuid::new_v4().simple().to_string(), now }
    }

    fn name(&self, name: &str) -> String {
        format!("{name}-{}", self.tag)
    }

    /// A new document (version 1, created a minute ago, inactive, not due, no lock).
    fn doc(&self, collection: Collection, name: &str) -> Document {
        Document {
            collection,
            id: self.name(name),
            version: 1,
            owner: self.name("owner"),
            created_at: self.now - chrono::Duration::minutes(1),
            active: false,
            due_at: None,
            lock: None,
            body: json!({ "name": name, "revision": 1 }),
        }
    }
}

/// The document as stored after an update to `version` with `change` applied.
fn next(doc: &Document, change: impl FnOnce(&mut Document)) -> Document {
    let mut next = doc.clone();
    next.version += 1;
    change(&mut next);
    next
}

async fn insert(store: &dyn Store, doc: &Document, token: Option<&str>) {
    if let Err(e) = store.insert(doc, token).await {
        panic!("insert of {} '{}' failed: {e:?}", doc.collection, doc.id);
    }
}

async fn update(store: &dyn Store, doc: &Document) {
    if let Err(e) = store.update(doc).await {
        panic!("update of {} '{}' to version {} failed: {e:?}", doc.collection, doc.id, doc.version);
    }
}

async fn get(store: &dyn Store, collection: Collection, id: &str) -> Option<Document> {
    match store.get(collection, id).await {
        Ok(doc) => doc,
        Err(e) => panic!("get of {collection} '{id}' failed: {e:?}"),
    }
}

/// Asserts the stored document is exactly `expected`.
async fn assert_stored(store: &dyn Store, expected: &Document, what: &str) {
    let stored = get(store, expected.collection, &expected.id).await;
    assert_eq!(stored.as_ref(), Some(expected), "{what}: stored document differs");
}

async fn assert_absent(store: &dyn Store, collection: Collection, id: &str, what: &str) {
    let stored = get(store, collection, id).await;
    assert!(stored.is_none(), "{what}: {collection} '{id}' should not exist, found {stored:?}");
}

fn expect_err(outcome: Result<(), StoreError>, what: &str) -> StoreError {
    match outcome {
        Ok(()) => panic!("{what}: succeeded, should have failed"),
        Err(e) => e,
    }
}

fn is_lock_held(e: &StoreError, lock: &str, by: &str) -> bool {
    matches!(e, StoreError::LockHeld { key, holder } if key == lock && holder == by)
}

fn is_conflict(e: &StoreError, doc: &Document) -> bool {
    matches!(e, StoreError::VersionConflict { collection, id } if *collection == doc.collection && *id == doc.id)
}

/// Retries `check` for up to 10 s (index reads may lag the writes they reflect).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for _ in 0..40 {
        match check().await {
            Ok(()) => return,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: {last}");
}

fn find<'a>(docs: &'a [Document], wanted: &Document) -> Option<&'a Document> {
    docs.iter().find(|doc| doc.collection == wanted.collection && doc.id == wanted.id)
}

/// `expected` is listed exactly as it is stored.
fn listed(docs: &[Document], expected: &Document, list: &str) -> Result<(), String> {
    match find(docs, expected) {
        Some(doc) if doc == expected => Ok(()),
        Some(doc) => Err(format!("{list} lists '{}' as {doc:?}, stored is {expected:?}", expected.id)),
        None => Err(format!("{list} lacks '{}'", expected.id)),
    }
}

fn not_listed(docs: &[Document], unexpected: &Document, list: &str) -> Result<(), String> {
    match find(docs, unexpected) {
        Some(doc) => Err(format!("{list} lists '{}' (version {}), it should not", doc.id, doc.version)),
        None => Ok(()),
    }
}

/// Every page of a paginated list, following its cursors from the first page (`list`
/// gets the cursor, `None` for the first page).
async fn pages<F, Fut>(what: &str, mut list: F) -> Result<Vec<Vec<Document>>, String>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: Future<Output = Result<Page, StoreError>>,
{
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = list(cursor.take()).await.map_err(|e| format!("{what} page {}: {e:?}", pages.len() + 1))?;
        pages.push(page.documents);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(pages),
        }
        if pages.len() > 1_000 {
            return Err(format!("{what}: pages do not end"));
        }
    }
}

/// Newest first: creation time descending, then id descending.
fn newest_first(a: &Document, b: &Document) -> std::cmp::Ordering {
    b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id))
}

/// Every field survives insert and get; collections are separate key spaces.
async fn round_trip(store: &dyn Store, run: &Run) {
    let mut doc = run.doc(Collection::Backups, "round-trip");
    doc.created_at = run.now - chrono::Duration::milliseconds(5_123);
    doc.active = true;
    doc.due_at = Some(run.now + chrono::Duration::days(30));
    doc.lock = Some(run.name("contract-lock#round-trip"));
    doc.body = json!({
        "text": "snapnest — sauvegardé ✓ 𝄞", "empty": "", "null": null, "yes": true, "no": false,
        "int": -42, "big": u64::MAX, "float": 1.5, "tiny": 1e-300,
        "nested": { "list": [1, "two", { "three": [3.0] }], "object": {} },
        "quote": "a \"quoted\" \\ back\\slash\nnewline",
    });
    insert(store, &doc, None).await;
    assert_stored(store, &doc, "round trip").await;

    assert_absent(store, Collection::Backups, &run.name("never-written"), "unknown id").await;
    assert_absent(store, Collection::Restores, &doc.id, "other collection").await;
    let mut same_id = run.doc(Collection::Restores, "round-trip");
    same_id.body = json!({ "kind": "restore" });
    insert(store, &same_id, None).await;
    assert_stored(store, &same_id, "same id in another collection").await;
    assert_stored(store, &doc, "same id in another collection leaves the first").await;
}

/// An existing id, a used token, a held lock: checked in the order token, lock, id, and
/// nothing of a refused insert is written.
async fn insert_conflicts(store: &dyn Store, run: &Run) {
    let existing = run.doc(Collection::Backups, "exists");
    insert(store, &existing, None).await;
    let mut again = existing.clone();
    again.body = json!({ "overwritten": true });
    let e = expect_err(store.insert(&again, None).await, "insert of an existing id");
    assert!(
        matches!(&e, StoreError::AlreadyExists { collection, id } if *collection == existing.collection && *id == existing.id),
        "insert of an existing id: {e:?}"
    );
    assert_stored(store, &existing, "a refused insert leaves the stored document").await;

    // A client token, scoped to collection and owner.
    let token = run.name("token");
    let first = run.doc(Collection::Backups, "token-first");
    insert(store, &first, Some(&token)).await;
    let second = run.doc(Collection::Backups, "token-second");
    let e = expect_err(store.insert(&second, Some(&token)).await, "insert with a used token");
    assert!(matches!(&e, StoreError::TokenUsed { existing_id } if *existing_id == first.id), "used token: {e:?}");
    assert_absent(store, Collection::Backups, &second.id, "insert with a used token").await;
    let e = expect_err(store.insert(&first, Some(&token)).await, "the same request retried");
    assert!(matches!(&e, StoreError::TokenUsed { existing_id } if *existing_id == first.id), "retry: {e:?}");
    let mut other_owner = run.doc(Collection::Backups, "token-other-owner");
    other_owner.owner = run.name("other-owner");
    insert(store, &other_owner, Some(&token)).await;
    insert(store, &run.doc(Collection::Restores, "token-other-collection"), Some(&token)).await;

    // A lock.
    let lock = run.name("contract-lock#conflicts");
    let mut holder = run.doc(Collection::Backups, "lock-holder");
    holder.lock = Some(lock.clone());
    insert(store, &holder, None).await;
    let fresh_token = run.name("token-after-lock");
    let mut contender = run.doc(Collection::Backups, "lock-contender");
    contender.lock = Some(lock.clone());
    let e = expect_err(store.insert(&contender, Some(&fresh_token)).await, "insert with a held lock");
    assert!(is_lock_held(&e, &lock, &holder.id), "held lock: {e:?}");
    assert_absent(store, Collection::Backups, &contender.id, "insert with a held lock").await;
    // The refused insert did not keep its token.
    insert(store, &run.doc(Collection::Backups, "token-after-lock"), Some(&fresh_token)).await;
    // The holder's lock is held by another collection's insert too.
    let mut restore = run.doc(Collection::Restores, "lock-contender");
    restore.lock = Some(lock.clone());
    let e = expect_err(store.insert(&restore, None).await, "insert with a lock held from another collection");
    assert!(is_lock_held(&e, &lock, &holder.id), "held lock across collections: {e:?}");

    // Token before lock (a retried request finds its record while its lock is held),
    // lock before id.
    let mut both = run.doc(Collection::Backups, "token-and-lock");
    both.lock = Some(lock.clone());
    let e = expect_err(store.insert(&both, Some(&token)).await, "insert with a used token and a held lock");
    assert!(matches!(&e, StoreError::TokenUsed { existing_id } if *existing_id == first.id), "token first: {e:?}");
    let e = expect_err(store.insert(&holder, None).await, "insert of an existing id with a held lock");
    assert!(is_lock_held(&e, &lock, &holder.id), "lock before id: {e:?}");
    assert_stored(store, &holder, "refused inserts leave the lock holder").await;
}

/// An update applies only on the version it read.
async fn versioned_updates(store: &dyn Store, run: &Run) {
    let mut doc = run.doc(Collection::Backups, "update");
    doc.active = true;
    doc.due_at = Some(run.now + chrono::Duration::days(1));
    insert(store, &doc, None).await;

    let v2 = next(&doc, |d| {
        d.active = false;
        d.due_at = None;
        d.body = json!({ "name": "update", "revision": 2, "status": "Succeeded" });
    });
    // Owner and creation time are fixed at insert (they place a document in its owner's
    // list): an update's values for them are ignored.
    let moved =
        Document { owner: run.name("another-owner"), created_at: run.now + chrono::Duration::days(1), ..v2.clone() };
    update(store, &moved).await;
    assert_stored(store, &v2, "update on the read version").await;
    let listed = store.list_owned(Collection::Backups, &moved.owner, 10, None).await.expect("list_owned");
    assert!(listed.documents.is_empty(), "an update moved a document to another owner");

    let stale = next(&doc, |d| d.body = json!({ "stale": true }));
    let e = expect_err(store.update(&stale).await, "update on a stale version");
    assert!(is_conflict(&e, &doc), "stale version: {e:?}");
    let ahead = Document { version: 7, ..stale.clone() };
    let e = expect_err(store.update(&ahead).await, "update on a version never written");
    assert!(is_conflict(&e, &doc), "future version: {e:?}");
    let zero = Document { version: 1, ..stale.clone() };
    let e = expect_err(store.update(&zero).await, "update to version 1");
    assert!(is_conflict(&e, &doc), "version 1: {e:?}");
    assert_stored(store, &v2, "refused updates change nothing").await;

    let missing = next(&run.doc(Collection::Backups, "update-missing"), |_| {});
    let e = expect_err(store.update(&missing).await, "update of a missing document");
    assert!(is_conflict(&e, &missing), "missing document: {e:?}");
    assert_absent(store, Collection::Backups, &missing.id, "update of a missing document").await;

    let v3 = next(&v2, |d| {
        d.due_at = Some(run.now + chrono::Duration::days(2));
        d.body = json!({ "name": "update", "revision": 3 });
    });
    update(store, &v3).await;
    assert_stored(store, &v3, "second update").await;
}

/// A lock stays held through updates that keep it and is released by the update that
/// drops it, and only then.
async fn lock_release(store: &dyn Store, run: &Run) {
    let lock = run.name("contract-lock#release");
    let mut doc = run.doc(Collection::Restores, "release");
    doc.lock = Some(lock.clone());
    insert(store, &doc, None).await;
    let mut contender = run.doc(Collection::Restores, "release-contender");
    contender.lock = Some(lock.clone());

    let kept = next(&doc, |d| d.body = json!({ "revision": 2 }));
    update(store, &kept).await;
    let e = expect_err(store.insert(&contender, None).await, "insert while the lock is kept");
    assert!(is_lock_held(&e, &lock, &doc.id), "kept lock: {e:?}");

    let stale_release = next(&doc, |d| d.lock = None);
    let e = expect_err(store.update(&stale_release).await, "stale update releasing the lock");
    assert!(is_conflict(&e, &doc), "stale release: {e:?}");
    let e = expect_err(store.insert(&contender, None).await, "insert after a refused release");
    assert!(is_lock_held(&e, &lock, &doc.id), "lock after a refused release: {e:?}");

    let released = next(&kept, |d| {
        d.lock = None;
        d.body = json!({ "revision": 3, "status": "Succeeded" });
    });
    update(store, &released).await;
    assert_stored(store, &released, "release").await;
    insert(store, &contender, None).await;

    // Updating the former holder again does not touch the lock it no longer holds.
    let after = next(&released, |d| d.body = json!({ "revision": 4 }));
    update(store, &after).await;
    let mut third = run.doc(Collection::Restores, "release-third");
    third.lock = Some(lock.clone());
    let e = expect_err(store.insert(&third, None).await, "insert with the lock taken over");
    assert!(is_lock_held(&e, &lock, &contender.id), "taken-over lock: {e:?}");
}

/// One owner's documents, newest first (same creation time: id descending), in pages.
async fn owned_lists(store: &dyn Store, run: &Run) {
    let owner = run.name("list-owner");
    let base = run.now - chrono::Duration::hours(1);
    let minutes = [("list-a", 5), ("list-b", 4), ("list-c", 4), ("list-d", 2), ("list-e", 1)];
    let mut docs: Vec<Document> = minutes
        .iter()
        .map(|(name, minute)| {
            let mut doc = run.doc(Collection::Backups, name);
            doc.owner = owner.clone();
            doc.created_at = base + chrono::Duration::minutes(*minute);
            doc
        })
        .collect();
    for index in [3, 0, 4, 2, 1] {
        insert(store, &docs[index], None).await;
    }
    let mut other_owner = run.doc(Collection::Backups, "list-other-owner");
    other_owner.created_at = base + chrono::Duration::minutes(3);
    insert(store, &other_owner, None).await;
    let mut restore = run.doc(Collection::Restores, "list-restore");
    restore.owner = owner.clone();
    insert(store, &restore, None).await;

    // The list shows the stored version.
    docs[0] = next(&docs[0], |d| d.body = json!({ "revision": 2 }));
    update(store, &docs[0]).await;

    let mut expected = docs.clone();
    expected.sort_by(newest_first);
    let whole = store.list_owned(Collection::Backups, &owner, 10, None).await.expect("list_owned");
    assert_eq!(whole.documents, expected, "list_owned newest first");
    assert_eq!(whole.next_cursor, None, "list_owned: a complete list has no cursor");
    let exact = store.list_owned(Collection::Backups, &owner, 5, None).await.expect("list_owned limit 5");
    assert_eq!((exact.documents.len(), exact.next_cursor), (5, None), "list_owned with limit = count");

    // Pages of two: every document exactly once, in order; the tie spans pages 1 and 2.
    let owner_ref = &owner;
    let paged = pages("list_owned", |cursor| async move {
        store.list_owned(Collection::Backups, owner_ref, 2, cursor.as_ref()).await
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let sizes: Vec<usize> = paged.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1], "list_owned page sizes");
    assert_eq!(paged.concat(), expected, "list_owned pages");

    let restores = store.list_owned(Collection::Restores, &owner, 10, None).await.expect("list_owned restores");
    assert_eq!(restores.documents, [restore], "list_owned is per collection");
    let nobody = store.list_owned(Collection::Backups, &run.name("nobody"), 10, None).await.expect("list_owned");
    assert_eq!((nobody.documents.len(), nobody.next_cursor), (0, None), "list_owned of an unknown owner");
    for bad in ["not-a-cursor", "soon:list-a"] {
        let outcome = store.list_owned(Collection::Backups, &owner, 2, Some(&Cursor::from_token(bad))).await;
        assert!(matches!(outcome, Err(StoreError::BadCursor)), "cursor '{bad}': {outcome:?}");
    }
}

/// The active index lists what is active, and drops a document once it is not.
async fn active_index(store: &dyn Store, run: &Run) {
    let mut on = run.doc(Collection::Backups, "active-on");
    on.active = true;
    let off = run.doc(Collection::Backups, "active-off");
    let mut restore = run.doc(Collection::Restores, "active-restore");
    restore.active = true;
    for doc in [&on, &off, &restore] {
        insert(store, doc, None).await;
    }
    let (on_ref, off_ref, restore_ref) = (&on, &off, &restore);
    eventually("list_active after inserts", || async move {
        let active = store.list_active(Collection::Backups).await.map_err(|e| format!("{e:?}"))?;
        listed(&active, on_ref, "list_active")?;
        not_listed(&active, off_ref, "list_active")?;
        not_listed(&active, restore_ref, "list_active(backups)")?;
        match active.iter().find(|doc| !doc.active || doc.collection != Collection::Backups) {
            Some(doc) => Err(format!("list_active lists inactive or foreign '{}'", doc.id)),
            None => Ok(()),
        }
    })
    .await;
    eventually("list_active per collection", || async move {
        let active = store.list_active(Collection::Restores).await.map_err(|e| format!("{e:?}"))?;
        listed(&active, restore_ref, "list_active(restores)")?;
        not_listed(&active, on_ref, "list_active(restores)")
    })
    .await;

    let now_off = next(&on, |d| d.active = false);
    let now_on = next(&off, |d| d.active = true);
    update(store, &now_off).await;
    update(store, &now_on).await;
    let (now_off, now_on) = (&now_off, &now_on);
    eventually("list_active after updates", || async move {
        let active = store.list_active(Collection::Backups).await.map_err(|e| format!("{e:?}"))?;
        listed(&active, now_on, "list_active")?;
        not_listed(&active, now_off, "list_active")
    })
    .await;
}

/// The due index lists what is due at or before now, in due order.
async fn due_index(store: &dyn Store, run: &Run) {
    let now = run.now;
    let due = |name: &str, collection: Collection, at: Option<Timestamp>| {
        let mut doc = run.doc(collection, name);
        doc.due_at = at;
        doc
    };
    let past = due("due-past", Collection::Backups, Some(now - chrono::Duration::hours(1)));
    let at_now = due("due-now", Collection::Backups, Some(now));
    let future = due("due-future", Collection::Backups, Some(now + chrono::Duration::hours(1)));
    let never = due("due-never", Collection::Backups, None);
    let restore = due("due-restore", Collection::Restores, Some(now - chrono::Duration::hours(1)));
    for doc in [&past, &at_now, &future, &never, &restore] {
        insert(store, doc, None).await;
    }
    let check_due = |docs: &[Document]| -> Result<(), String> {
        if let Some(doc) = docs.iter().find(|d| d.due_at.is_none_or(|at| at > now)) {
            return Err(format!("list_due lists '{}' due {:?}, not due at {now}", doc.id, doc.due_at));
        }
        if docs.windows(2).any(|pair| pair[0].due_at > pair[1].due_at) {
            return Err("list_due is not in due order".into());
        }
        Ok(())
    };
    let (past_ref, at_now_ref, future_ref, never_ref, restore_ref) = (&past, &at_now, &future, &never, &restore);
    eventually("list_due after inserts", || async move {
        let listed_due = store.list_due(Collection::Backups, now).await.map_err(|e| format!("{e:?}"))?;
        check_due(&listed_due)?;
        listed(&listed_due, past_ref, "list_due")?;
        listed(&listed_due, at_now_ref, "list_due (due exactly now)")?;
        not_listed(&listed_due, future_ref, "list_due")?;
        not_listed(&listed_due, never_ref, "list_due")?;
        not_listed(&listed_due, restore_ref, "list_due(backups)")
    })
    .await;
    eventually("list_due per collection", || async move {
        let listed_due = store.list_due(Collection::Restores, now).await.map_err(|e| format!("{e:?}"))?;
        listed(&listed_due, restore_ref, "list_due(restores)")
    })
    .await;

    let no_longer = next(&past, |d| d.due_at = None);
    let sooner = next(&future, |d| d.due_at = Some(now - chrono::Duration::hours(2)));
    update(store, &no_longer).await;
    update(store, &sooner).await;
    let (no_longer, sooner) = (&no_longer, &sooner);
    eventually("list_due after updates", || async move {
        let listed_due = store.list_due(Collection::Backups, now).await.map_err(|e| format!("{e:?}"))?;
        check_due(&listed_due)?;
        listed(&listed_due, sooner, "list_due")?;
        not_listed(&listed_due, no_longer, "list_due")
    })
    .await;
}

/// An update that newly names a lock takes it, or fails with `LockHeld` and changes
/// nothing when another record holds it; an update naming another lock moves to it.
async fn lock_taken_by_update(store: &dyn Store, run: &Run) {
    let lock = run.name("contract-lock#update");
    let doc = run.doc(Collection::Backups, "late-lock");
    insert(store, &doc, None).await;
    let locked = next(&doc, |d| d.lock = Some(lock.clone()));
    update(store, &locked).await;
    assert_stored(store, &locked, "update taking a lock").await;
    let mut contender = run.doc(Collection::Restores, "late-lock-contender");
    contender.lock = Some(lock.clone());
    let e = expect_err(store.insert(&contender, None).await, "insert with a lock an update took");
    assert!(is_lock_held(&e, &lock, &doc.id), "lock taken by an update: {e:?}");

    let other = run.doc(Collection::Backups, "late-lock-other");
    insert(store, &other, None).await;
    let other_locked = next(&other, |d| d.lock = Some(lock.clone()));
    let e = expect_err(store.update(&other_locked).await, "update taking a held lock");
    assert!(is_lock_held(&e, &lock, &doc.id), "update taking a held lock: {e:?}");
    assert_stored(store, &other, "an update refused for a held lock changes nothing").await;

    update(store, &next(&locked, |d| d.lock = None)).await;
    update(store, &other_locked).await;
    assert_stored(store, &other_locked, "update taking the freed lock").await;

    let moved_lock = run.name("contract-lock#update-moved");
    let moved = next(&other_locked, |d| d.lock = Some(moved_lock.clone()));
    update(store, &moved).await;
    assert_stored(store, &moved, "update moving to another lock").await;
    let e = expect_err(store.acquire_lock(&moved_lock, &run.name("job")).await, "acquire of the lock moved to");
    assert!(is_lock_held(&e, &moved_lock, &other.id), "lock moved to: {e:?}");
    insert(store, &contender, None).await;
}

/// Every document of a collection whatever its owner, newest first (same creation time:
/// id descending), in pages, each exactly once; collections are separate.
async fn collection_lists(store: &dyn Store, run: &Run) {
    let base = run.now - chrono::Duration::hours(2);
    let specs =
        [("all-a", "one", 5), ("all-b", "two", 4), ("all-c", "three", 4), ("all-d", "one", 2), ("all-e", "four", 1)];
    let mut docs: Vec<Document> = specs
        .iter()
        .map(|(name, owner, minute)| {
            let mut doc = run.doc(Collection::Policies, name);
            doc.owner = run.name(owner);
            doc.created_at = base + chrono::Duration::minutes(*minute);
            doc
        })
        .collect();
    for index in [3, 0, 4, 2, 1] {
        insert(store, &docs[index], None).await;
    }
    // Another collection, with one of the ids too.
    let mut same_id = run.doc(Collection::ExpiryRuns, "all-b");
    same_id.created_at = base + chrono::Duration::minutes(3);
    same_id.body = json!({ "kind": "expiry" });
    let mut expiry = run.doc(Collection::ExpiryRuns, "all-expiry");
    expiry.owner = run.name("one");
    for doc in [&same_id, &expiry] {
        insert(store, doc, None).await;
    }
    // The list shows the stored version.
    docs[0] = next(&docs[0], |d| d.body = json!({ "revision": 2 }));
    update(store, &docs[0]).await;
    let mut expected = docs.clone();
    expected.sort_by(newest_first);

    let expected_ref = &expected;
    eventually("list_collection in pages of two", || async move {
        let paged = pages("list_collection", |cursor| async move {
            store.list_collection(Collection::Policies, 2, cursor.as_ref()).await
        })
        .await?;
        let sizes: Vec<usize> = paged.iter().map(Vec::len).collect();
        if sizes.split_last().is_some_and(|(last, full)| !(1..=2).contains(last) || full.iter().any(|s| *s != 2)) {
            return Err(format!("list_collection page sizes {sizes:?}: 2 on every page, 1 or 2 on the last"));
        }
        let all = paged.concat();
        if let Some(foreign) = all.iter().find(|d| d.collection != Collection::Policies) {
            return Err(format!("list_collection(policies) lists {} '{}'", foreign.collection, foreign.id));
        }
        if all.windows(2).any(|pair| newest_first(&pair[0], &pair[1]).is_ge()) {
            return Err("list_collection is not newest first, each document once".into());
        }
        let ours: Vec<Document> = all.into_iter().filter(|d| find(expected_ref, d).is_some()).collect();
        if ours != *expected_ref {
            return Err(format!("list_collection lists this run's documents as {ours:?}, expected {expected_ref:?}"));
        }
        Ok(())
    })
    .await;
    let (same_id_ref, expiry_ref) = (&same_id, &expiry);
    eventually("list_collection per collection", || async move {
        let listed_all = store.list_collection(Collection::ExpiryRuns, 1_000, None).await;
        let listed_all = listed_all.map_err(|e| format!("{e:?}"))?.documents;
        listed(&listed_all, same_id_ref, "list_collection(expiry)")?;
        listed(&listed_all, expiry_ref, "list_collection(expiry)")?;
        match listed_all.iter().find(|d| d.collection != Collection::ExpiryRuns) {
            Some(doc) => Err(format!("list_collection(expiry) lists {} '{}'", doc.collection, doc.id)),
            None => Ok(()),
        }
    })
    .await;
    for bad in ["not-a-cursor", "soon:all-a"] {
        let outcome = store.list_collection(Collection::Policies, 2, Some(&Cursor::from_token(bad))).await;
        assert!(matches!(outcome, Err(StoreError::BadCursor)), "list_collection cursor '{bad}': {outcome:?}");
    }
}

/// A delete applies only on the stored version, releases the lock the document holds (and
/// only that), takes it out of every list, and leaves its id free for a new insert.
async fn deletes(store: &dyn Store, run: &Run) {
    let lock = run.name("contract-lock#delete");
    let mut doc = run.doc(Collection::Backups, "delete");
    doc.lock = Some(lock.clone());
    doc.active = true;
    doc.due_at = Some(run.now - chrono::Duration::minutes(1));
    insert(store, &doc, None).await;
    let v2 = next(&doc, |d| d.body = json!({ "name": "delete", "revision": 2 }));
    update(store, &v2).await;
    let mut contender = run.doc(Collection::Restores, "delete-contender");
    contender.lock = Some(lock.clone());

    for stale in [0, 1, 3] {
        let e = expect_err(store.delete(doc.collection, &doc.id, stale).await, "delete on a stale version");
        assert!(is_conflict(&e, &doc), "delete on version {stale}: {e:?}");
    }
    assert_stored(store, &v2, "refused deletes change nothing").await;
    let e = expect_err(store.insert(&contender, None).await, "insert after a refused delete");
    assert!(is_lock_held(&e, &lock, &doc.id), "lock after a refused delete: {e:?}");

    if let Err(e) = store.delete(doc.collection, &doc.id, v2.version).await {
        panic!("delete on the stored version failed: {e:?}");
    }
    assert_absent(store, doc.collection, &doc.id, "delete").await;
    insert(store, &contender, None).await;
    let owned = store.list_owned(doc.collection, &doc.owner, 1_000, None).await.expect("list_owned");
    not_listed(&owned.documents, &v2, "list_owned after a delete").unwrap_or_else(|e| panic!("{e}"));
    let v2_ref = &v2;
    eventually("lists after a delete", || async move {
        let active = store.list_active(v2_ref.collection).await.map_err(|e| format!("{e:?}"))?;
        not_listed(&active, v2_ref, "list_active after a delete")?;
        let due = store.list_due(v2_ref.collection, run.now).await.map_err(|e| format!("{e:?}"))?;
        not_listed(&due, v2_ref, "list_due after a delete")
    })
    .await;

    let e = expect_err(store.delete(doc.collection, &doc.id, v2.version).await, "delete of a deleted document");
    assert!(is_conflict(&e, &doc), "delete of a deleted document: {e:?}");
    let never = run.doc(Collection::Backups, "delete-never-written");
    let e = expect_err(store.delete(never.collection, &never.id, 1).await, "delete of a missing document");
    assert!(is_conflict(&e, &never), "delete of a missing document: {e:?}");
    let mut again = run.doc(Collection::Backups, "delete");
    again.body = json!({ "name": "delete", "reborn": true });
    insert(store, &again, None).await;
    assert_stored(store, &again, "insert of a deleted id").await;

    // A document whose lock was released and taken by another: its delete leaves it.
    let other_lock = run.name("contract-lock#delete-lost");
    let mut held = run.doc(Collection::Restores, "delete-lost-lock");
    held.lock = Some(other_lock.clone());
    insert(store, &held, None).await;
    let job = run.name("job-after-release");
    store.release_lock(&other_lock, &held.id).await.expect("release_lock by the holding document");
    store.acquire_lock(&other_lock, &job).await.expect("acquire_lock of the released lock");
    store.delete(held.collection, &held.id, 1).await.expect("delete of a document whose lock was taken");
    let e = expect_err(store.acquire_lock(&other_lock, &run.name("job-third")).await, "acquire after that delete");
    assert!(is_lock_held(&e, &other_lock, &job), "a delete released another's lock: {e:?}");
    store.release_lock(&other_lock, &job).await.expect("release_lock");

    // Rows go with their document.
    let mut large = run.doc(Collection::Backups, "delete-large");
    large.lock = Some(run.name("contract-lock#delete-large"));
    store.insert_with_rows(&large, &point_rows(1), None).await.expect("insert with rows");
    store.delete(large.collection, &large.id, 1).await.expect("delete of a document with rows");
    assert_absent(store, large.collection, &large.id, "delete of a document with rows").await;
    assert!(store.get_rows(large.collection, &large.id).await.expect("get_rows").is_empty(), "rows left by a delete");
    insert(store, &large, None).await;
    assert_stored(store, &large, "insert of a deleted document").await;
    assert!(store.get_rows(large.collection, &large.id).await.expect("get_rows").is_empty(), "old rows came back");
}

/// Stand-alone locks: taken by one holder at a time (again by the same holder), released
/// only by their holder, and the same locks documents take.
async fn standalone_locks(store: &dyn Store, run: &Run) {
    let key = run.name("contract-lock#standalone");
    let (a, b) = (run.name("job-a"), run.name("job-b"));

    store.acquire_lock(&key, &a).await.expect("acquire_lock of a free lock");
    store.acquire_lock(&key, &a).await.expect("acquire_lock by its holder again");
    let e = expect_err(store.acquire_lock(&key, &b).await, "acquire_lock of a held lock");
    assert!(is_lock_held(&e, &key, &a), "held lock: {e:?}");
    store.release_lock(&key, &b).await.expect("release_lock by another");
    let e = expect_err(store.acquire_lock(&key, &b).await, "acquire_lock after a release by another");
    assert!(is_lock_held(&e, &key, &a), "a release by another released the lock: {e:?}");

    let mut doc = run.doc(Collection::Backups, "standalone-lock");
    doc.lock = Some(key.clone());
    let e = expect_err(store.insert(&doc, None).await, "insert with a lock held stand-alone");
    assert!(is_lock_held(&e, &key, &a), "insert with a stand-alone lock: {e:?}");
    assert_absent(store, doc.collection, &doc.id, "insert with a lock held stand-alone").await;

    store.release_lock(&key, &a).await.expect("release_lock by its holder");
    store.release_lock(&key, &a).await.expect("release_lock of a free lock");
    store.acquire_lock(&key, &b).await.expect("acquire_lock after the release");
    let e = expect_err(store.acquire_lock(&key, &a).await, "acquire_lock taken over");
    assert!(is_lock_held(&e, &key, &b), "lock taken over: {e:?}");
    store.release_lock(&key, &b).await.expect("release_lock");

    insert(store, &doc, None).await;
    let e = expect_err(store.acquire_lock(&key, &a).await, "acquire_lock of a document's lock");
    assert!(is_lock_held(&e, &key, &doc.id), "a document's lock: {e:?}");
    store.release_lock(&key, &a).await.expect("release_lock of a document's lock by another");
    let e = expect_err(store.acquire_lock(&key, &a).await, "acquire_lock after a release by another");
    assert!(is_lock_held(&e, &key, &doc.id), "a document's lock released by another: {e:?}");
}

/// The items of a backup of 99 instances × 16 volumes + 10 databases: 1,594 rows, over
/// 400 KB of JSON together (DynamoDB's item limit), each at `revision`.
pub fn point_rows(revision: u32) -> Vec<Row> {
    let mut rows = Vec::with_capacity(99 * 16 + 10);
    for instance in 0..99u32 {
        for volume in 0..16u32 {
            rows.push(json!({
                "resource_id": format!("vol-{instance:03}{volume:02}0123456789abcdef"),
                "kind": "volume",
                "instance_id": format!("i-{instance:03}0123456789abcdef"),
                "device": format!("/dev/sd{}", char::from(b'f' + volume as u8)),
                "snapshot_id": format!("snap-{instance:03}{volume:02}0123456789"),
                "status": if revision > 1 { "Succeeded" } else { "Running" },
                "progress": (revision * 37 + volume) % 101,
                "size_bytes": 8_589_934_592u64 * u64::from(volume + 1),
                "volume_type": "gp3",
                "availability_zone": "eu-west-1b",
                "consistent_group": volume != 15,
                "started_at": format!("2025-06-{:02}T12:{:02}:{:02}.123Z", revision % 28 + 1, instance % 60, volume),
                "error": if volume == 15 { json!(format!("Volume occupé — réessayez ✓ ({instance})")) } else { Value::Null },
            }));
        }
    }
    for database in 0..10u32 {
        rows.push(
            json!({ "resource_id": format!("db-{database:02}-orders"), "kind": "database", "status": "Running" }),
        );
    }
    rows.into_iter().enumerate().map(|(n, body)| Row { key: format!("item#{n:05}"), version: 1, body }).collect()
}

/// `rows` with the bodies of those at `positions` changed, one version on.
fn rows_changed(rows: &[Row], positions: impl IntoIterator<Item = usize>, mark: &str) -> Vec<Row> {
    positions
        .into_iter()
        .map(|n| {
            let mut row = rows[n].clone();
            row.body["progress"] = json!(mark);
            row.version += 1;
            row
        })
        .collect()
}

/// Rows: written with their document and only then visible, read back in key order, each
/// updated on its own version, never when a refused write.
async fn rows(store: &dyn Store, run: &Run) {
    let lock = run.name("contract-lock#rows");
    let mut doc = run.doc(Collection::Backups, "rows");
    doc.active = true;
    doc.lock = Some(lock.clone());
    let token = run.name("token-rows");
    let written = point_rows(1);
    assert!(written.iter().map(|r| r.body.to_string().len()).sum::<usize>() > 400 * 1024);
    store.insert_with_rows(&doc, &written, Some(&token)).await.expect("insert with 1,594 rows");
    assert_stored(store, &doc, "insert with rows").await;
    let read = store.get_rows(doc.collection, &doc.id).await.expect("get_rows");
    assert_eq!(read.len(), written.len(), "every row is read back");
    assert!(read == written, "rows read back in key order, as written");

    // A refused insert leaves no rows.
    let second = run.doc(Collection::Backups, "rows-second");
    let e = expect_err(store.insert_with_rows(&second, &point_rows(1), Some(&token)).await, "rows with a used token");
    assert!(matches!(&e, StoreError::TokenUsed { existing_id } if *existing_id == doc.id), "rows token: {e:?}");
    assert!(
        store.get_rows(second.collection, &second.id).await.expect("get_rows").is_empty(),
        "rows of a refused insert"
    );
    let small = run.doc(Collection::Backups, "rows-small-refused");
    let few = point_rows(1).into_iter().take(3).collect::<Vec<_>>();
    let mut refused = small.clone();
    refused.lock = Some(lock.clone());
    let e = expect_err(store.insert_with_rows(&refused, &few, None).await, "rows with a held lock");
    assert!(is_lock_held(&e, &lock, &doc.id), "rows lock: {e:?}");
    assert!(store.get_rows(small.collection, &small.id).await.expect("get_rows").is_empty(), "rows of a held lock");

    // A poll that changed ten items writes ten rows with the document.
    let v2 = next(&doc, |d| d.body = json!({ "revision": 2 }));
    let ten = rows_changed(&written, (0..10).map(|n| n * 100), "v2");
    store.update_with_rows(&v2, &ten).await.expect("update of ten rows");
    assert_stored(store, &v2, "update with rows").await;
    let read = store.get_rows(doc.collection, &doc.id).await.expect("get_rows");
    for (n, row) in read.iter().enumerate() {
        let changed = n % 100 == 0 && n < 1000;
        assert_eq!(row.version, if changed { 2 } else { 1 }, "row {n}");
        assert_eq!(row.body["progress"] == json!("v2"), changed, "row {n}");
    }

    // A row read at an older version refuses the whole write, document included.
    let stale_doc = next(&v2, |d| d.body = json!({ "revision": 3 }));
    let stale = rows_changed(&written, [0, 1], "stale");
    let e = expect_err(store.update_with_rows(&stale_doc, &stale).await, "update of a stale row");
    assert!(is_conflict(&e, &doc), "stale row: {e:?}");
    assert_stored(store, &v2, "a refused row write changes the document").await;
    let read = store.get_rows(doc.collection, &doc.id).await.expect("get_rows");
    assert_eq!(read[1].version, 1, "a refused write changed a row");

    // More rows than one transaction holds, and a new row, with the lock released.
    let mut many = rows_changed(&read, 200..450, "v3");
    many.push(Row { key: "item#99999".into(), version: 1, body: json!({ "resource_id": "vol-new" }) });
    let v3 = next(&v2, |d| {
        d.body = json!({ "revision": 3 });
        d.lock = None;
        d.active = false;
    });
    store.update_with_rows(&v3, &many).await.expect("update of 251 rows");
    assert_stored(store, &v3, "update with many rows").await;
    let read = store.get_rows(doc.collection, &doc.id).await.expect("get_rows");
    assert_eq!(read.len(), written.len() + 1);
    assert_eq!(read.last().map(|r| r.body["resource_id"].clone()), Some(json!("vol-new")));
    for (n, row) in read.iter().enumerate().take(450).skip(200) {
        // Rows 200, 300 and 400 were at version 2 already.
        let version = if n % 100 == 0 { 3 } else { 2 };
        assert_eq!((row.version, &row.body["progress"]), (version, &json!("v3")), "row {n}");
    }
    let mut next_holder = run.doc(Collection::Backups, "rows-next-holder");
    next_holder.lock = Some(lock);
    insert(store, &next_holder, None).await;
}
