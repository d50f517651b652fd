//! The behaviour every [`Store`] adapter must have, as one check run against each of them
//! (the embedded store on a temporary folder, the DynamoDB store on moto) by
//! `tests/tests/store_contract.rs`, so the adapters cannot drift apart.
//!
//! [`check_store_contract`] panics on the first breach, saying which. It only adds
//! documents, all with ids, owners, tokens and lock keys unique to the run, so it can run
//! against a store that holds other data (moto's state is shared by the test process).
//! The lists of the active and due indexes hold every document of a collection, so those
//! checks are about the run's own documents plus invariants on the rest (all active, all
//! due, in due order). Index checks are retried for a few seconds, because a DynamoDB
//! index is eventually consistent; against moto and SQLite they pass at once.
//!
//! Not covered: concurrent writers racing each other. moto applies a transaction without
//! isolation from concurrent requests, so a race there would test moto, not the adapter.

use std::future::Future;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use super::{Collection, Document, Store, StoreError};
use crate::model::Timestamp;

/// Runs every check of the store contract against `store`; panics on the first breach.
pub async fn check_store_contract(store: &dyn Store) {
    let run = Run::new();
    round_trip(store, &run).await;
    insert_conflicts(store, &run).await;
    versioned_updates(store, &run).await;
    lock_release(store, &run).await;
    owned_lists(store, &run).await;
    active_index(store, &run).await;
    due_index(store, &run).await;
    large_bodies(store, &run).await;
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
    expected.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
    let whole = store.list_owned(Collection::Backups, &owner, 10, None).await.expect("list_owned");
    assert_eq!(whole.documents, expected, "list_owned newest first");
    assert_eq!(whole.next_cursor, None, "list_owned: a complete list has no cursor");
    let exact = store.list_owned(Collection::Backups, &owner, 5, None).await.expect("list_owned limit 5");
    assert_eq!((exact.documents.len(), exact.next_cursor), (5, None), "list_owned with limit = count");

    // Pages of two: every document exactly once, in order; the tie spans pages 1 and 2.
    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_owned(Collection::Backups, &owner, 2, cursor.as_deref()).await.expect("list_owned page");
        sizes.push(page.documents.len());
        paged.extend(page.documents);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(sizes.len() < 10, "list_owned pages do not end: {sizes:?}");
    }
    assert_eq!(sizes, [2, 2, 1], "list_owned page sizes");
    assert_eq!(paged, expected, "list_owned pages");

    let restores = store.list_owned(Collection::Restores, &owner, 10, None).await.expect("list_owned restores");
    assert_eq!(restores.documents, [restore], "list_owned is per collection");
    let nobody = store.list_owned(Collection::Backups, &run.name("nobody"), 10, None).await.expect("list_owned");
    assert_eq!((nobody.documents.len(), nobody.next_cursor), (0, None), "list_owned of an unknown owner");
    for bad in ["not-a-cursor", "soon:list-a"] {
        let outcome = store.list_owned(Collection::Backups, &owner, 2, Some(bad)).await;
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

/// A backup of 99 instances × 16 volumes + 10 databases: 1,594 items, over 400 KB of JSON
/// (DynamoDB's item limit), as a record body.
pub fn large_backup_body(id: &str, revision: u32) -> Value {
    let mut items = Vec::with_capacity(99 * 16 + 10);
    for instance in 0..99u32 {
        for volume in 0..16u32 {
            items.push(json!({
                "resource_id": format!("vol-{instance:03}{volume:02}0123456789abcdef"),
                "kind": "volume",
                "instance_id": format!("i-{instance:03}0123456789abcdef"),
                "device": format!("/dev/sd{}", char::from(b'f' + volume as u8)),
                "snapshot_id": format!("snap-{instance:03}{volume:02}{revision:04}0123456789"),
                "consistent_group": volume != 15,
                "status": if revision > 1 { "Succeeded" } else { "Running" },
                "progress": (revision * 37 + volume) % 101,
                "size_bytes": 8_589_934_592u64 * u64::from(volume + 1),
                "volume_type": "gp3",
                "availability_zone": "eu-west-1b",
                "started_at": format!("2025-06-{:02}T12:{:02}:{:02}.123Z", revision % 28 + 1, instance % 60, volume),
                "error": if volume == 15 { json!(format!("Volume occupé — réessayez ✓ ({instance})")) } else { Value::Null },
            }));
        }
    }
    for database in 0..10u32 {
        items.push(json!({
            "resource_id": format!("db-{database:02}-orders"),
            "kind": "database",
            "snapshot_id": format!("snapnest-{id}-db-{database:02}"),
            "status": "Running",
            "progress": revision,
            "error": null,
        }));
    }
    json!({ "backup_id": id, "revision": revision, "items": items, "replication": { "region": "eu-west-1", "items": [] } })
}

/// Bodies over DynamoDB's 400 KB item limit insert, update, read back whole and list.
async fn large_bodies(store: &dyn Store, run: &Run) {
    let lock = run.name("contract-lock#large");
    let mut doc = run.doc(Collection::Backups, "large");
    doc.body = large_backup_body(&doc.id, 1);
    let size = doc.body.to_string().len();
    assert!(size > 400 * 1024, "the large body is only {size} bytes");
    doc.active = true;
    doc.due_at = Some(run.now - chrono::Duration::seconds(1));
    doc.lock = Some(lock.clone());
    let token = run.name("token-large");
    insert(store, &doc, Some(&token)).await;
    assert_stored(store, &doc, "large insert").await;

    let mut second = run.doc(Collection::Backups, "large-second");
    second.body = large_backup_body(&second.id, 1);
    let e = expect_err(store.insert(&second, Some(&token)).await, "large insert with a used token");
    assert!(matches!(&e, StoreError::TokenUsed { existing_id } if *existing_id == doc.id), "large token: {e:?}");
    assert_absent(store, Collection::Backups, &second.id, "large insert with a used token").await;

    let v2 = next(&doc, |d| d.body = large_backup_body(&d.id, 2));
    update(store, &v2).await;
    assert_stored(store, &v2, "large update").await;
    let v3 = next(&v2, |d| {
        d.body = large_backup_body(&d.id, 3);
        d.lock = None;
    });
    update(store, &v3).await;
    assert_stored(store, &v3, "second large update").await;
    let stale = next(&v2, |d| d.body = large_backup_body(&d.id, 99));
    let e = expect_err(store.update(&stale).await, "large update on a stale version");
    assert!(is_conflict(&e, &doc), "large stale update: {e:?}");
    assert_stored(store, &v3, "a refused large update changes nothing").await;
    let mut next_holder = run.doc(Collection::Backups, "large-next-holder");
    next_holder.lock = Some(lock);
    insert(store, &next_holder, None).await;

    let v3_ref = &v3;
    eventually("list_active with a large body", || async move {
        let active = store.list_active(Collection::Backups).await.map_err(|e| format!("{e:?}"))?;
        listed(&active, v3_ref, "list_active")
    })
    .await;
    eventually("list_due with a large body", || async move {
        let due = store.list_due(Collection::Backups, v3_ref.created_at + chrono::Duration::hours(2)).await;
        listed(&due.map_err(|e| format!("{e:?}"))?, v3_ref, "list_due")
    })
    .await;
    let owned = store.list_owned(Collection::Backups, &v3.owner, 100, None).await.expect("list_owned");
    listed(&owned.documents, &v3, "list_owned").unwrap_or_else(|e| panic!("{e}"));

    // Large to small and back.
    let small = next(&v3, |d| d.body = json!({ "revision": 4 }));
    update(store, &small).await;
    assert_stored(store, &small, "large body replaced by a small one").await;
    let large_again = next(&small, |d| d.body = large_backup_body(&d.id, 5));
    update(store, &large_again).await;
    assert_stored(store, &large_again, "small body replaced by a large one").await;
}
