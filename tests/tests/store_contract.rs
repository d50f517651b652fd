//! The store contract (`snapnest_testkit::store_contract`) against both adapters: the embedded
//! SQLite store, and the DynamoDB store on moto with its table created from the one
//! definition in `template.yaml`. The DynamoDB test then reads the raw items to check the
//! key design itself (docs/dynamodb.md): lock and token items, index keys (sparse ones
//! only while they apply), a record's items as rows beside its document with no item over
//! 400 KB, an update that writes only the rows that changed, and nothing left of a deleted
//! document.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use snapnest_aws::dynamodb::{self, DynamoStore};
use snapnest_core::model::Timestamp;
use snapnest_core::store::{Collection, Document, Row, Store, StoreError};
use snapnest_e2e::moto::{repo_root, Moto};
use snapnest_e2e::template::create_table_from_template;
use snapnest_local::embedded::EmbeddedStore;
use snapnest_testkit::store_contract::{check_store_contract, point_rows};

type Item = HashMap<String, AttributeValue>;

/// DynamoDB's item size limit.
const MAX_ITEM_BYTES: usize = 400 * 1024;

#[tokio::test]
async fn embedded_store_meets_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open the embedded store");
    let started = Instant::now();
    check_store_contract(&store).await;
    eprintln!("embedded store contract: {:?}", started.elapsed());
}

#[tokio::test]
async fn dynamodb_store_on_moto_meets_the_contract() {
    // Fail fast on moto's 500s instead of retrying them three times.
    std::env::set_var("AWS_MAX_ATTEMPTS", "2");
    Moto::shared();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = Client::from_conf(dynamodb::client_config(&sdk));
    let table = format!("snapnest-contract-{}", uuid::Uuid::new_v4().simple());
    create_table_from_template(&client, &repo_root().join("template.yaml"), &table)
        .await
        .expect("create the table from template.yaml");
    check_table_matches_template(&client, &table).await;

    let store = DynamoStore::from_config(&snapnest_aws::sdk_config("us-east-1").await, &table);
    let started = Instant::now();
    check_store_contract(&store).await;
    eprintln!("DynamoDB store contract on moto: {:?}", started.elapsed());

    let raw = Raw { client: &client, table: &table };
    check_document_lock_and_token_items(&store, &raw).await;
    check_delete_and_stand_alone_lock_items(&store, &raw).await;
    check_rows_are_items_of_their_own(&store, &raw).await;
    check_every_item(&raw).await;
    check_error_mapping(&sdk, &table).await;
}

/// The created table is the template's: keys, indexes, billing, protection, TTL, PITR.
async fn check_table_matches_template(client: &Client, table: &str) {
    let described = client.describe_table().table_name(table).send().await.expect("DescribeTable");
    let description = described.table.expect("a table description");
    let keys: Vec<(&str, &str)> =
        description.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().as_str())).collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
    let mut indexes: Vec<(String, Vec<String>, String)> = description
        .global_secondary_indexes()
        .iter()
        .map(|index| {
            (
                index.index_name().unwrap_or_default().to_owned(),
                index.key_schema().iter().map(|k| k.attribute_name().to_owned()).collect(),
                index.projection().and_then(|p| p.projection_type()).map(|t| t.as_str().to_owned()).unwrap_or_default(),
            )
        })
        .collect();
    indexes.sort();
    let expected = [
        (dynamodb::INDEX_ACTIVE, ["active_key", "created_key"]),
        (dynamodb::INDEX_BY_COLLECTION, ["collection_key", "created_key"]),
        (dynamodb::INDEX_BY_OWNER, ["owner_key", "created_key"]),
        (dynamodb::INDEX_DUE, ["due_key", "due_at"]),
    ]
    .map(|(name, keys)| (name.to_owned(), keys.map(str::to_owned).to_vec(), "KEYS_ONLY".to_owned()));
    assert_eq!(indexes, expected);
    assert_eq!(
        description.billing_mode_summary().and_then(|b| b.billing_mode()).map(|m| m.as_str()),
        Some("PAY_PER_REQUEST")
    );
    assert_eq!(description.deletion_protection_enabled(), Some(true));

    let ttl = client.describe_time_to_live().table_name(table).send().await.expect("DescribeTimeToLive");
    let ttl = ttl.time_to_live_description.expect("a TTL description");
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    assert_eq!(ttl.time_to_live_status().map(|s| s.as_str()), Some("ENABLED"));
    let backups =
        client.describe_continuous_backups().table_name(table).send().await.expect("DescribeContinuousBackups");
    let pitr = backups
        .continuous_backups_description
        .and_then(|d| d.point_in_time_recovery_description)
        .and_then(|p| p.point_in_time_recovery_status);
    assert_eq!(pitr.as_ref().map(|s| s.as_str()), Some("ENABLED"));
}

/// Raw access to the table, bypassing the store.
struct Raw<'a> {
    client: &'a Client,
    table: &'a str,
}

impl Raw<'_> {
    async fn item(&self, pk: &str, sk: &str) -> Option<Item> {
        let output = self
            .client
            .get_item()
            .table_name(self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        output.item
    }

    /// Every item of one partition.
    async fn partition(&self, pk: &str) -> Vec<Item> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("Query");
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return items,
            }
        }
    }

    async fn scan(&self) -> Vec<Item> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("Scan");
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return items,
            }
        }
    }
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

/// An upper bound of an item's size as DynamoDB counts it (attribute names + values).
fn item_size(item: &Item) -> usize {
    fn value_size(value: &AttributeValue) -> usize {
        match value {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Ss(v) | AttributeValue::Ns(v) => v.iter().map(String::len).sum(),
            AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
            AttributeValue::L(v) => 3 + v.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
            AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + value_size(v)).sum::<usize>(),
            _ => 1,
        }
    }
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn now() -> Timestamp {
    Utc.timestamp_millis_opt(Utc::now().timestamp_millis()).single().expect("now")
}

fn new_doc(id: String, owner: &str) -> Document {
    Document {
        collection: Collection::Backups,
        id,
        version: 1,
        owner: owner.to_owned(),
        created_at: now(),
        active: false,
        due_at: None,
        lock: None,
        body: json!({ "hello": "world" }),
    }
}

fn next(doc: &Document, change: impl FnOnce(&mut Document)) -> Document {
    let mut next = doc.clone();
    next.version += 1;
    change(&mut next);
    next
}

/// The document item's attributes, the lock item while held (gone once released), the
/// token item with its expiry, and the sparse index keys present only while they apply.
async fn check_document_lock_and_token_items(store: &DynamoStore, raw: &Raw<'_>) {
    let tag = tag();
    let owner = format!("raw-owner-{tag}");
    let lock = format!("raw-lock-{tag}");
    let token = format!("raw-token-{tag}");
    let mut doc = new_doc(format!("raw-{tag}"), &owner);
    doc.active = true;
    doc.lock = Some(lock.clone());
    store.insert(&doc, Some(&token)).await.expect("insert");
    let pk = format!("backup#{}", doc.id);

    let item = raw.item(&pk, "doc").await.expect("the document item");
    assert_eq!(text(&item, "id"), Some(doc.id.as_str()));
    assert_eq!(number(&item, "version"), Some(1));
    assert_eq!(text(&item, "owner"), Some(owner.as_str()));
    assert_eq!(number(&item, "created_at"), Some(doc.created_at.timestamp_millis()));
    assert_eq!(text(&item, "owner_key"), Some(format!("backup#{owner}").as_str()));
    assert_eq!(text(&item, "collection_key"), Some("backup"));
    assert_eq!(
        text(&item, "created_key"),
        Some(format!("{:015}#{}", doc.created_at.timestamp_millis(), doc.id).as_str())
    );
    assert_eq!(text(&item, "active_key"), Some("backup"));
    assert_eq!(text(&item, "lock_key"), Some(lock.as_str()));
    assert!(!item.contains_key("due_key") && !item.contains_key("due_at"), "not due: no due index keys");
    assert!(!item.contains_key("parts"), "a small body is inline");
    let body: Value = serde_json::from_str(text(&item, "body").expect("an inline body")).expect("JSON body");
    assert_eq!(body, doc.body);

    let lock_item = raw.item(&format!("lock#{lock}"), "lock").await.expect("the lock item while held");
    assert_eq!(text(&lock_item, "holder"), Some(doc.id.as_str()));
    let token_item =
        raw.item(&format!("token#backup#{owner}"), &format!("token#{token}")).await.expect("the token item");
    assert_eq!(text(&token_item, "id"), Some(doc.id.as_str()));
    let expires = number(&token_item, "ttl").expect("the token expires");
    let week = Utc::now().timestamp() + 7 * 24 * 3600;
    assert!((week - 120..=week + 5).contains(&expires), "token ttl {expires}, expected about {week}");

    let released = next(&doc, |d| {
        d.active = false;
        d.lock = None;
        d.due_at = Some(now());
    });
    store.update(&released).await.expect("update");
    assert!(raw.item(&format!("lock#{lock}"), "lock").await.is_none(), "the lock item is deleted on release");
    let item = raw.item(&pk, "doc").await.expect("the document item");
    assert_eq!(number(&item, "version"), Some(2));
    assert!(!item.contains_key("active_key"), "an inactive document has no active_key: {item:?}");
    assert!(!item.contains_key("lock_key"), "a released lock leaves no lock_key");
    assert_eq!(text(&item, "due_key"), Some("backup"));
    assert_eq!(number(&item, "due_at"), released.due_at.map(|t| t.timestamp_millis()));
    assert!(raw.item(&format!("token#backup#{owner}"), &format!("token#{token}")).await.is_some(), "tokens stay");
}

/// A delete leaves no item of the document: not its item, not its rows, not the lock it
/// held (its client token stays, as tokens do). A stand-alone lock is a lock item with its
/// holder while held, and none once released.
async fn check_delete_and_stand_alone_lock_items(store: &DynamoStore, raw: &Raw<'_>) {
    let tag = tag();
    let lock = format!("raw-delete-lock-{tag}");
    let token = format!("raw-delete-token-{tag}");
    let mut doc = new_doc(format!("raw-delete-{tag}"), "raw-owner");
    doc.lock = Some(lock.clone());
    store.insert_with_rows(&doc, &point_rows(1), Some(&token)).await.expect("insert");
    let v2 = next(&doc, |d| d.body = json!({ "revision": 2 }));
    store.update(&v2).await.expect("update");
    let pk = format!("backup#{}", doc.id);
    let items = raw.partition(&pk).await;
    assert!(items.len() > 2, "a document with rows before the delete: {} items", items.len());
    assert!(raw.item(&format!("lock#{lock}"), "lock").await.is_some(), "the lock item before the delete");

    store.delete(Collection::Backups, &doc.id, 2).await.expect("delete");
    let left: Vec<_> = raw.partition(&pk).await.iter().map(|i| text(i, "sk").unwrap_or_default().to_owned()).collect();
    assert!(left.is_empty(), "a deleted document left items: {left:?}");
    assert!(raw.item(&format!("lock#{lock}"), "lock").await.is_none(), "a deleted document left its lock item");
    assert!(raw.item("token#backup#raw-owner", &format!("token#{token}")).await.is_some(), "tokens stay");

    let job = format!("raw-job-{tag}");
    store.acquire_lock(&lock, &job).await.expect("acquire_lock");
    let lock_item = raw.item(&format!("lock#{lock}"), "lock").await.expect("the stand-alone lock item");
    assert_eq!(text(&lock_item, "holder"), Some(job.as_str()));
    for index_key in ["owner_key", "collection_key", "created_key"] {
        assert!(!lock_item.contains_key(index_key), "a lock item has {index_key}");
    }
    store.release_lock(&lock, &job).await.expect("release_lock");
    assert!(raw.item(&format!("lock#{lock}"), "lock").await.is_none(), "the released lock item is deleted");
}

/// A 1,594-item point is a small document item and one row item per item; a poll that
/// changes ten items writes exactly those ten row items (their versions move on, the
/// others stay at 1) and the document; a refused insert leaves no row item.
async fn check_rows_are_items_of_their_own(store: &DynamoStore, raw: &Raw<'_>) {
    let tag = tag();
    let token = format!("raw-rows-token-{tag}");
    let mut doc = new_doc(format!("raw-rows-{tag}"), "raw-owner");
    doc.body = json!({ "backup_id": doc.id, "status": "Running" });
    doc.active = true;
    let rows = point_rows(1);
    store.insert_with_rows(&doc, &rows, Some(&token)).await.expect("insert with rows");
    let pk = format!("backup#{}", doc.id);
    let items = raw.partition(&pk).await;
    assert_eq!(items.len(), rows.len() + 1, "one document item and one item per row");
    let document = items.iter().find(|i| text(i, "sk") == Some("doc")).expect("the document item");
    let header_bytes = item_size(document);
    assert!(header_bytes < 4 * 1024, "the document item holds no items: {header_bytes} bytes");

    let changed: Vec<Row> = rows
        .iter()
        .step_by(160)
        .map(|row| Row { version: 2, body: json!({ "status": "Succeeded" }), ..row.clone() })
        .collect();
    assert_eq!(changed.len(), 10);
    let v2 = next(&doc, |d| d.body = json!({ "backup_id": d.id, "status": "Running", "poll": 2 }));
    store.update_with_rows(&v2, &changed).await.expect("update of ten rows");
    let items = raw.partition(&pk).await;
    let at_version = |version: i64| {
        items
            .iter()
            .filter(|i| i.contains_key("sk") && text(i, "sk") != Some("doc") && number(i, "version") == Some(version))
            .count()
    };
    assert_eq!((at_version(2), at_version(1)), (10, rows.len() - 10), "only the changed rows were written");
    let written: usize = changed.iter().map(|r| r.body.to_string().len()).sum::<usize>() + header_bytes;
    eprintln!(
        "a poll of a {}-item point that changed 10 items wrote 11 items (~{written} bytes of bodies and header)",
        rows.len()
    );

    let refused = new_doc(format!("raw-rows-refused-{tag}"), "raw-owner");
    let outcome = store.insert_with_rows(&refused, &point_rows(1), Some(&token)).await;
    assert!(matches!(&outcome, Err(StoreError::TokenUsed { existing_id }) if *existing_id == doc.id), "{outcome:?}");
    assert!(raw.partition(&format!("backup#{}", refused.id)).await.is_empty(), "a refused insert leaves no rows");
}

/// Across everything the contract and these checks wrote: no item over 400 KB, every row
/// belongs to a document, every document has its collection's `collection_key`, and only
/// documents have index keys.
async fn check_every_item(raw: &Raw<'_>) {
    let items = raw.scan().await;
    let largest = items.iter().map(item_size).max().unwrap_or(0);
    assert!(largest < MAX_ITEM_BYTES, "an item of {largest} bytes");
    let documents: HashSet<String> =
        items.iter().filter(|i| text(i, "sk") == Some("doc")).filter_map(|i| Some(text(i, "pk")?.to_owned())).collect();
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for item in &items {
        let (pk, sk) = (text(item, "pk").unwrap(), text(item, "sk").unwrap());
        let kind = match sk {
            "doc" => "document",
            "lock" => "lock",
            _ if sk.starts_with("token#") => "token",
            _ if sk.starts_with("row#") => "row",
            _ => panic!("unexpected item {pk} / {sk}"),
        };
        *kinds.entry(kind).or_default() += 1;
        if kind == "document" {
            let collection = pk.split_once('#').map(|(collection, _)| collection);
            assert_eq!(text(item, "collection_key"), collection, "document {pk}: collection_key");
        }
        if kind == "row" {
            assert!(documents.contains(pk), "a row without its document: {pk} / {sk}");
        }
        if kind != "document" {
            for index_key in ["owner_key", "collection_key", "created_key", "active_key", "due_key", "due_at"] {
                assert!(!item.contains_key(index_key), "{kind} item {pk} has {index_key}");
            }
        }
    }
    eprintln!("table after the run: {} items, largest {largest} bytes, {kinds:?}", items.len());
}

/// SDK failures map to the store's errors: a missing table is Internal (retrying will not
/// help), an unreachable endpoint is Unavailable (it may).
async fn check_error_mapping(sdk: &aws_config::SdkConfig, table: &str) {
    let missing = DynamoStore::new(Client::from_conf(dynamodb::client_config(sdk)), format!("{table}-missing"));
    let outcome = missing.get(Collection::Backups, "x").await;
    assert!(matches!(&outcome, Err(StoreError::Internal(m)) if m.contains("ResourceNotFound")), "{outcome:?}");

    let unreachable_config = dynamodb::client_config(sdk).to_builder().endpoint_url("http://127.0.0.1:1").build();
    let unreachable = DynamoStore::new(Client::from_conf(unreachable_config), table);
    let outcome = unreachable.get(Collection::Backups, "x").await;
    assert!(matches!(&outcome, Err(e @ StoreError::Unavailable(_)) if e.is_retryable()), "{outcome:?}");
}
