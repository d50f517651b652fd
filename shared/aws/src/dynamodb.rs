//! The DynamoDB store: every record in one table with generic string keys `pk`/`sk`,
//! defined once as `SnapnestTable` in `template.yaml`. The full key design, and why it is
//! so, is in `docs/dynamodb.md`; in short:
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | document (a record's header) | `<collection>#<id>` | `doc` |
//! | row of a document (one item of a record) | `<collection>#<id>` | `row#<key>` |
//! | client token (expires by TTL) | `token#<collection>#<owner>` | `token#<token>` |
//! | lock | `lock#<key>` | `lock` |
//!
//! Four KEYS_ONLY global secondary indexes serve the lists without a scan: `by-owner`
//! (newest first per owner), `by-collection` (newest first across owners), `active`
//! (sparse: only documents with work to do) and `due` (sparse, sorted by due time). Index reads are eventually consistent, so lists read the
//! documents themselves afterwards (consistently) and re-check what the index claimed.
//!
//! Every write is conditional: an insert is one transaction of token, lock and document,
//! each put-if-absent; an update is a transaction on the version that was read, with the
//! lock release in it; a delete is a transaction on the version too, releasing the lock.
//! Stand-alone locks (`acquire_lock`) are the same lock items, each one conditional write.
//! A record's items are rows beside its document, each with its own version: a poll that
//! changes ten items of a 1,594-item point writes ten rows and the header, in one
//! transaction while that is at most [`MAX_TRANSACTION_ITEMS`] items.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryMode};
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, Delete, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, PointInTimeRecoverySpecification, Projection, ProjectionType, Put,
    PutRequest, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification, StreamViewType,
    TableClass, TimeToLiveSpecification, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{TimeZone, Utc};
use serde_json::Value;

use snapnest_core::model::Timestamp;
use snapnest_core::store::{Collection, Cursor, Document, Page, Row, Store, StoreError};

/// The logical id of the table in `template.yaml`.
pub const TABLE_RESOURCE: &str = "SnapnestTable";
/// Newest-first listing per owner: `owner_key` / `created_key`.
pub const INDEX_BY_OWNER: &str = "by-owner";
/// Newest-first listing of a whole collection (the jobs list): `collection_key` / `created_key`.
pub const INDEX_BY_COLLECTION: &str = "by-collection";
/// Sparse: documents with `active` set: `active_key` / `created_key`.
pub const INDEX_ACTIVE: &str = "active";
/// Sparse: documents with a due time: `due_key` / `due_at` (a number, so it sorts numerically).
pub const INDEX_DUE: &str = "due";

/// The largest body (bytes of JSON) of a document or a row. An item is at most 400 KB
/// including attribute names and the other attributes (keys, owner, lock, index keys);
/// a record's items are rows, so its header stays far below this.
pub const MAX_BODY: usize = 350 * 1024;
/// TransactWriteItems takes at most 100 actions ("TransactWriteItems", DynamoDB API
/// Reference: "up to 100 action requests").
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// Conditional row puts in flight at once when a write has more rows than a transaction.
/// A record's rows share one partition key, and a partition takes at most 1,000 write
/// units a second (DynamoDB Developer Guide, "partition key design"): eight puts of a few
/// milliseconds each stay well below that.
const ROW_PUTS_IN_FLIGHT: usize = 8;
/// How long a client token is remembered: a client retries within minutes, and an expired
/// token item is removed by DynamoDB's TTL sweep (within days of expiry, not at once).
pub const TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Attempts of an insert (or a lock acquisition) whose blocking item (token or lock)
/// vanished in between.
const MAX_INSERT_ROUNDS: usize = 3;
/// Rounds of unprocessed batch items before giving up (with backoff between rounds).
const MAX_BATCH_ROUNDS: u32 = 10;
/// BatchWriteItem takes at most 25 requests; BatchGetItem at most 100 keys.
const BATCH_WRITE_MAX: usize = 25;
const BATCH_GET_MAX: usize = 100;

/// Attribute names. Expressions always refer to them through `#` placeholders, because
/// several (`owner`, `data`, `ttl`, `version`...) are DynamoDB reserved words.
mod attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const ID: &str = "id";
    pub const VERSION: &str = "version";
    pub const OWNER: &str = "owner";
    pub const CREATED_AT: &str = "created_at";
    pub const OWNER_KEY: &str = "owner_key";
    pub const COLLECTION_KEY: &str = "collection_key";
    pub const CREATED_KEY: &str = "created_key";
    pub const ACTIVE_KEY: &str = "active_key";
    pub const DUE_KEY: &str = "due_key";
    pub const DUE_AT: &str = "due_at";
    pub const LOCK_KEY: &str = "lock_key";
    pub const BODY: &str = "body";
    pub const HOLDER: &str = "holder";
    pub const COLLECTION: &str = "collection";
    pub const TTL: &str = "ttl";
}

const DOC_SK: &str = "doc";
const ROW_SK_PREFIX: &str = "row#";
const LOCK_SK: &str = "lock";

type Item = HashMap<String, AttributeValue>;

/// The DynamoDB-backed [`Store`].
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store on `table` with the SDK's own configuration from the environment
    /// (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` for an emulator, `AWS_MAX_ATTEMPTS`).
    /// The store on `table`, with a client from the process's one SDK configuration.
    pub fn from_config(sdk: &aws_config::SdkConfig, table: &str) -> DynamoStore {
        DynamoStore::new(Client::from_conf(client_config(sdk)), table)
    }

    /// A store on `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore { client, table: table.into() }
    }

    /// The table this store writes.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The client, for tooling that inspects the table.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The DynamoDB client configuration of `sdk` with adaptive retry: the client slows down
/// by itself when DynamoDB throttles, which a Lambda fleet needs more than a fixed backoff.
/// The attempt count stays what the environment says (`AWS_MAX_ATTEMPTS`, default 3).
pub fn client_config(sdk: &SdkConfig) -> aws_sdk_dynamodb::Config {
    let retry = sdk.retry_config().cloned().unwrap_or_else(RetryConfig::standard);
    aws_sdk_dynamodb::config::Builder::from(sdk).retry_config(retry.with_retry_mode(RetryMode::Adaptive)).build()
}

// ---------------------------------------------------------------------------------------
// Keys and attribute values

fn doc_pk(collection: Collection, id: &str) -> String {
    format!("{collection}#{id}")
}

/// Tokens are scoped to collection and owner (as in the embedded store). The owner is in
/// the partition key and the token in the sort key, so no token can be read as another
/// owner's, whatever `#` they contain.
fn token_key(collection: Collection, owner: &str, token: &str) -> Item {
    key(format!("token#{collection}#{owner}"), format!("token#{token}"))
}

fn lock_key(lock: &str) -> Item {
    key(format!("lock#{lock}"), LOCK_SK.to_owned())
}

/// The lock item of `lock` held by `holder`: a document (with its collection) or a
/// stand-alone holder of [`Store::acquire_lock`].
fn lock_item(lock: &str, holder: &str, collection: Option<Collection>) -> Item {
    let mut item = lock_key(lock);
    item.insert(attr::HOLDER.into(), s(holder));
    if let Some(collection) = collection {
        item.insert(attr::COLLECTION.into(), s(collection.as_str()));
    }
    item
}

/// The condition of taking a lock (`#pk`, `#holder`, `:holder`): free, or already ours.
const LOCK_FREE_OR_OURS: &str = "attribute_not_exists(#pk) OR #holder = :holder";
/// The condition of releasing a lock (`#holder`, `:holder`): it is ours.
const LOCK_OURS: &str = "#holder = :holder";

fn key(pk: String, sk: String) -> Item {
    HashMap::from([(attr::PK.to_owned(), AttributeValue::S(pk)), (attr::SK.to_owned(), AttributeValue::S(sk))])
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Millis either side of 1970 the `created_key` encoding covers (about 31,700 years).
const MILLIS_SPAN: i64 = 1_000_000_000_000_000;

/// Millis as a string that sorts like the number (index sort keys compare bytes):
/// 15 zero-padded digits, negative times as `-` and their distance above `-MILLIS_SPAN`
/// (`-` sorts before every digit).
fn sortable_millis(ms: i64) -> Result<String, StoreError> {
    if !(-MILLIS_SPAN < ms && ms < MILLIS_SPAN) {
        return Err(StoreError::Internal(format!("time {ms} ms since 1970 is out of the indexable range")));
    }
    Ok(if ms >= 0 { format!("{ms:015}") } else { format!("-{:015}", ms + MILLIS_SPAN) })
}

fn parse_sortable_millis(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    if digits.len() != 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i64 = digits.parse().ok()?;
    Some(if negative { value - MILLIS_SPAN } else { value })
}

/// The `by-owner` and `by-collection` sort key: creation time, then id, so documents created in the same
/// millisecond still have one order (id descending in a newest-first list, as embedded).
fn created_key(ms: i64, id: &str) -> Result<String, StoreError> {
    Ok(format!("{}#{id}", sortable_millis(ms)?))
}

/// The position a page cursor names, refused when it is outside what `created_key` holds.
fn parse_cursor(cursor: &Cursor) -> Result<(i64, String), StoreError> {
    let (ms, id) = cursor.position()?;
    sortable_millis(ms).map_err(|_| StoreError::BadCursor)?;
    Ok((ms, id))
}

fn cursor_of(index_key: &Item) -> Result<Cursor, StoreError> {
    let created = attr_s(index_key, attr::CREATED_KEY)?;
    created
        .split_once('#')
        .and_then(|(ms, id)| Some(Cursor::after(parse_sortable_millis(ms)?, id)))
        .ok_or_else(|| StoreError::Internal(format!("malformed {} '{created}'", attr::CREATED_KEY)))
}

fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<Timestamp, StoreError> {
    Utc.timestamp_millis_opt(ms).single().ok_or_else(|| StoreError::Internal(format!("time {ms} ms is out of range")))
}

fn attr_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    opt_s(item, name).ok_or_else(|| StoreError::Internal(format!("item lacks string attribute '{name}'")))
}

fn opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

fn attr_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    opt_n(item, name)?.ok_or_else(|| StoreError::Internal(format!("item lacks number attribute '{name}'")))
}

fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Internal(format!("attribute '{name}' is not a valid number: {value}"))),
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------
// Documents and their bodies

/// A body as a DynamoDB string, refused when it would not fit in an item.
fn body_text(what: &str, body: &Value) -> Result<String, StoreError> {
    let json = body.to_string();
    if json.len() > MAX_BODY {
        return Err(StoreError::Internal(format!(
            "{what} is {} bytes of JSON, over the {MAX_BODY} an item holds",
            json.len()
        )));
    }
    Ok(json)
}

fn row_sk(key: &str) -> String {
    format!("{ROW_SK_PREFIX}{key}")
}

/// The item of one row of the document under `pk`.
fn row_item(pk: &str, row: &Row) -> Result<Item, StoreError> {
    let mut item = key(pk.to_owned(), row_sk(&row.key));
    item.insert(attr::VERSION.into(), n(row.version));
    item.insert(attr::BODY.into(), s(body_text(&format!("row '{}' of {pk}", row.key), &row.body)?));
    Ok(item)
}

/// The owner and creation time of a document: set by its insert and kept by every update
/// (as the embedded store does), since they place it in its owner's list.
struct Placement<'a> {
    owner: &'a str,
    created_ms: i64,
}

/// The document item of `doc` at `version`. A put replaces the whole item, so an index
/// key left out here (inactive, no due time, no lock) is removed from the stored item:
/// that is how the sparse indexes drop a document.
fn document_item(doc: &Document, placement: &Placement<'_>, version: u64) -> Result<Item, StoreError> {
    let collection = doc.collection.as_str();
    let Placement { owner, created_ms } = *placement;
    let mut item = key(doc_pk(doc.collection, &doc.id), DOC_SK.to_owned());
    item.insert(attr::ID.into(), s(&doc.id));
    item.insert(attr::VERSION.into(), n(version));
    item.insert(attr::OWNER.into(), s(owner));
    item.insert(attr::CREATED_AT.into(), n(created_ms));
    item.insert(attr::OWNER_KEY.into(), s(format!("{collection}#{owner}")));
    item.insert(attr::COLLECTION_KEY.into(), s(collection));
    item.insert(attr::CREATED_KEY.into(), s(created_key(created_ms, &doc.id)?));
    if doc.active {
        item.insert(attr::ACTIVE_KEY.into(), s(collection));
    }
    if let Some(due) = doc.due_at {
        item.insert(attr::DUE_KEY.into(), s(collection));
        item.insert(attr::DUE_AT.into(), n(millis(due)));
    }
    if let Some(lock) = &doc.lock {
        item.insert(attr::LOCK_KEY.into(), s(lock));
    }
    item.insert(attr::BODY.into(), s(body_text(&format!("{collection} '{}'", doc.id), &doc.body)?));
    Ok(item)
}

fn decode_document(collection: Collection, item: &Item) -> Result<Document, StoreError> {
    let id = attr_s(item, attr::ID)?.to_owned();
    let body = attr_s(item, attr::BODY)?;
    let body = serde_json::from_str(body)
        .map_err(|e| StoreError::Internal(format!("{collection} '{id}' has an unreadable body: {e}")))?;
    Ok(Document {
        collection,
        version: attr_n(item, attr::VERSION)?,
        owner: attr_s(item, attr::OWNER)?.to_owned(),
        created_at: from_millis(attr_n(item, attr::CREATED_AT)?)?,
        active: item.contains_key(attr::ACTIVE_KEY),
        due_at: opt_n::<i64>(item, attr::DUE_AT)?.map(from_millis).transpose()?,
        lock: opt_s(item, attr::LOCK_KEY).map(str::to_owned),
        body,
        id,
    })
}

// ---------------------------------------------------------------------------------------
// The table's stream

/// The record header a DynamoDB stream image holds, decoded as the store reads its documents;
/// none for the table's other items (a record's rows, client tokens, locks) and for an empty
/// image (the old image of an insert, the new image of a delete). `image` is the item in
/// DynamoDB's JSON form (`{"pk": {"S": "backup#bk-1"}, "version": {"N": "3"}, …}`), as a Lambda
/// stream event carries `NewImage` and `OldImage` (DynamoDB API Reference, Streams,
/// "StreamRecord": the item as it appeared after and before the modification).
pub fn header_from_stream_image(image: &Value) -> Result<Option<Document>, StoreError> {
    let Some(fields) = image.as_object().filter(|fields| !fields.is_empty()) else { return Ok(None) };
    let item: Item = fields
        .iter()
        .map(|(name, value)| Ok((name.clone(), attribute_from_json(value)?)))
        .collect::<Result<_, StoreError>>()?;
    if opt_s(&item, attr::SK) != Some(DOC_SK) {
        return Ok(None);
    }
    let pk = attr_s(&item, attr::PK)?;
    let collection = pk
        .split_once('#')
        .and_then(|(collection, _)| Collection::named(collection))
        .ok_or_else(|| StoreError::Internal(format!("a document under an unknown key '{pk}'")))?;
    decode_document(collection, &item).map(Some)
}

/// The item the store writes for `doc` (at its version), in DynamoDB's JSON form: the image a
/// stream record of the write carries. For tests and sample events.
pub fn stream_image(doc: &Document) -> Result<Value, StoreError> {
    let placement = Placement { owner: &doc.owner, created_ms: millis(doc.created_at) };
    let item = document_item(doc, &placement, doc.version)?;
    Ok(Value::Object(item.iter().map(|(name, value)| (name.clone(), attribute_to_json(value))).collect()))
}

/// One attribute from DynamoDB's JSON form (`{"S": "…"}`, `{"N": "…"}`, …).
fn attribute_from_json(value: &Value) -> Result<AttributeValue, StoreError> {
    let bad = || StoreError::Internal(format!("not a DynamoDB attribute value: {value}"));
    let (kind, inner) = value.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()).ok_or_else(bad)?;
    let text = || inner.as_str().map(str::to_owned).ok_or_else(bad);
    let texts = || -> Result<Vec<String>, StoreError> {
        inner.as_array().ok_or_else(bad)?.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(bad)).collect()
    };
    let binary = |v: &Value| {
        use base64::Engine as _;
        let text = v.as_str().ok_or_else(bad)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(aws_smithy_types::Blob::new)
            .map_err(|e| StoreError::Internal(format!("binary attribute: {e}")))
    };
    Ok(match kind.as_str() {
        "S" => AttributeValue::S(text()?),
        "N" => AttributeValue::N(text()?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().ok_or_else(bad)?),
        "NULL" => AttributeValue::Null(inner.as_bool().ok_or_else(bad)?),
        "SS" => AttributeValue::Ss(texts()?),
        "NS" => AttributeValue::Ns(texts()?),
        "B" => AttributeValue::B(binary(inner)?),
        "BS" => AttributeValue::Bs(inner.as_array().ok_or_else(bad)?.iter().map(binary).collect::<Result<_, _>>()?),
        "L" => AttributeValue::L(
            inner.as_array().ok_or_else(bad)?.iter().map(attribute_from_json).collect::<Result<_, _>>()?,
        ),
        "M" => AttributeValue::M(
            inner
                .as_object()
                .ok_or_else(bad)?
                .iter()
                .map(|(k, v)| Ok((k.clone(), attribute_from_json(v)?)))
                .collect::<Result<_, StoreError>>()?,
        ),
        _ => return Err(bad()),
    })
}

/// One attribute in DynamoDB's JSON form.
fn attribute_to_json(value: &AttributeValue) -> Value {
    use base64::Engine as _;
    use serde_json::json;
    let binary = |blob: &aws_smithy_types::Blob| base64::engine::general_purpose::STANDARD.encode(blob.as_ref());
    match value {
        AttributeValue::S(text) => json!({"S": text}),
        AttributeValue::N(number) => json!({"N": number}),
        AttributeValue::Bool(flag) => json!({"BOOL": flag}),
        AttributeValue::Null(flag) => json!({"NULL": flag}),
        AttributeValue::Ss(texts) => json!({"SS": texts}),
        AttributeValue::Ns(numbers) => json!({"NS": numbers}),
        AttributeValue::B(blob) => json!({"B": binary(blob)}),
        AttributeValue::Bs(blobs) => json!({"BS": blobs.iter().map(binary).collect::<Vec<_>>()}),
        AttributeValue::L(values) => json!({"L": values.iter().map(attribute_to_json).collect::<Vec<_>>()}),
        AttributeValue::M(map) => {
            json!({"M": map.iter().map(|(k, v)| (k.clone(), attribute_to_json(v))).collect::<serde_json::Map<_, _>>()})
        }
        // A kind newer than this SDK: none of the store's own.
        _ => json!({"NULL": true}),
    }
}

// ---------------------------------------------------------------------------------------
// Errors

/// Error codes DynamoDB returns for load, not for a bad request: worth retrying later.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
];

/// Maps any SDK error: throttling, 5xx, timeouts and network failures are
/// [`StoreError::Unavailable`] (retryable); the rest (validation, missing table, access
/// denied) is [`StoreError::Internal`] with DynamoDB's message.
fn sdk_error<E>(operation: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(context) => {
            let code = context.err().code().unwrap_or("Unknown");
            let text = format!("DynamoDB {operation}: {code}: {}", context.err().message().unwrap_or_default());
            if context.raw().status().is_server_error() || TRANSIENT_CODES.contains(&code) {
                StoreError::Unavailable(text)
            } else {
                StoreError::Internal(text)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("DynamoDB {operation}: {}", DisplayErrorContext(&err)))
        }
        _ => StoreError::Internal(format!("DynamoDB {operation}: {}", DisplayErrorContext(&err))),
    }
}

fn build_error(e: BuildError) -> StoreError {
    StoreError::Internal(format!("DynamoDB request: {e}"))
}

fn condition_failed(reason: Option<&CancellationReason>) -> bool {
    reason.and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
}

/// The error for a cancelled transaction none of whose conditions failed.
fn cancellation_error(operation: &str, reasons: &[CancellationReason]) -> StoreError {
    let codes: Vec<&str> = reasons.iter().filter_map(CancellationReason::code).filter(|c| *c != "None").collect();
    let text = format!("DynamoDB {operation} cancelled: {codes:?}");
    let transient = ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"];
    if codes.iter().all(|c| transient.contains(c)) {
        StoreError::Unavailable(text)
    } else {
        StoreError::Internal(text)
    }
}

// ---------------------------------------------------------------------------------------
// Requests

/// A Query, paginated by [`DynamoStore::query`].
struct Query<'a> {
    operation: &'static str,
    index: Option<&'static str>,
    condition: &'a str,
    names: &'a [(&'a str, &'a str)],
    values: Vec<(&'a str, AttributeValue)>,
    forward: bool,
    start: Option<Item>,
}

/// One partition of an index sorted by `created_key`, listed by [`DynamoStore::newest_first`].
struct Listing {
    operation: &'static str,
    index: &'static str,
    /// The index's partition key attribute, and the partition's value of it.
    partition: &'static str,
    value: String,
}

impl DynamoStore {
    /// One consistent GetItem, reading only `projection` when given.
    async fn get_item(&self, operation: &str, key: Item, projection: &[&str]) -> Result<Option<Item>, StoreError> {
        let mut request = self.client.get_item().table_name(&self.table).set_key(Some(key)).consistent_read(true);
        if !projection.is_empty() {
            let placeholders: Vec<String> = (0..projection.len()).map(|i| format!("#p{i}")).collect();
            request = request.projection_expression(placeholders.join(", "));
            for (placeholder, name) in placeholders.iter().zip(projection) {
                request = request.expression_attribute_names(placeholder, *name);
            }
        }
        let output = request.send().await.map_err(|e| sdk_error(operation, e))?;
        Ok(output.item)
    }

    /// Every item of a query, or the first `max`, following `LastEvaluatedKey` (a page
    /// ends at 1 MB whatever the limit). Index queries cannot be consistent; table
    /// queries are.
    async fn query(&self, spec: Query<'_>, max: usize) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = spec.start;
        while items.len() < max {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(spec.index.map(str::to_owned))
                .key_condition_expression(spec.condition)
                .scan_index_forward(spec.forward)
                .set_exclusive_start_key(start.take());
            if max != usize::MAX {
                request = request.limit(i32::try_from(max - items.len()).unwrap_or(i32::MAX));
            }
            if spec.index.is_none() {
                request = request.consistent_read(true);
            }
            for (placeholder, name) in spec.names {
                request = request.expression_attribute_names(*placeholder, *name);
            }
            for (placeholder, value) in &spec.values {
                request = request.expression_attribute_values(*placeholder, value.clone());
            }
            let output = request.send().await.map_err(|e| sdk_error(spec.operation, e))?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => break,
            }
        }
        items.truncate(max);
        Ok(items)
    }

    /// Runs a transaction: `Ok(None)` when it committed, `Ok(Some(reasons))` when it was
    /// cancelled (one reason per item, in order), `Err` for any other failure — after
    /// which the outcome may be unknown (a timeout can hide a commit).
    async fn transact(
        &self,
        operation: &str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Option<Vec<CancellationReason>>, StoreError> {
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(context))
                if matches!(context.err(), TransactWriteItemsError::TransactionCanceledException(_)) =>
            {
                let TransactWriteItemsError::TransactionCanceledException(cancelled) = context.into_err() else {
                    unreachable!("matched above")
                };
                Ok(Some(cancelled.cancellation_reasons.unwrap_or_default()))
            }
            Err(e) => Err(sdk_error(operation, e)),
        }
    }

    /// A conditional put for a transaction. With `return_blocker`, a failed condition
    /// returns the item that blocked it (a token's record id, a lock's holder), sparing a
    /// read; documents do not ask, their refusal needs no detail and they are large.
    fn put(
        &self,
        item: Item,
        condition: &str,
        names: &[(&str, &str)],
        values: &[(&str, AttributeValue)],
        return_blocker: bool,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item)).condition_expression(condition);
        if return_blocker {
            put = put.return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        }
        for (placeholder, name) in names {
            put = put.expression_attribute_names(*placeholder, *name);
        }
        for (placeholder, value) in values {
            put = put.expression_attribute_values(*placeholder, value.clone());
        }
        Ok(TransactWriteItem::builder().put(put.build().map_err(build_error)?).build())
    }

    /// The attribute `name` of the item a failed condition names (from the cancellation
    /// reason, or read when DynamoDB did not return it), `None` when there is no item.
    async fn blocking_value(
        &self,
        reason: Option<&CancellationReason>,
        key: Item,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        let returned = reason.filter(|reason| condition_failed(Some(reason))).and_then(CancellationReason::item);
        self.current_value(returned, key, name).await
    }

    /// The attribute `name` of the item that failed a condition: from `returned` (what
    /// DynamoDB sent back with the failure), else read; `None` when there is no item.
    async fn current_value(
        &self,
        returned: Option<&Item>,
        key: Item,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        if let Some(item) = returned {
            return Ok(Some(attr_s(item, name)?.to_owned()));
        }
        let item = self.get_item("GetItem", key, &[name]).await?;
        Ok(item.as_ref().and_then(|item| opt_s(item, name)).map(str::to_owned))
    }

    /// Batch writes, retrying what DynamoDB leaves unprocessed (under load) with backoff.
    async fn batch_write(&self, operation: &str, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(BATCH_WRITE_MAX) {
            let mut pending = chunk.to_vec();
            let mut round = 0;
            while !pending.is_empty() {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_error(operation, e))?;
                pending = output.unprocessed_items.and_then(|mut left| left.remove(&self.table)).unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    backoff(operation, round).await?;
                }
            }
        }
        Ok(())
    }

    /// The items with `keys` (consistent), by `pk`, retrying unprocessed keys with backoff.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<HashMap<String, Item>, StoreError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending = chunk.to_vec();
            let mut round = 0;
            while !pending.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(build_error)?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", e))?;
                for item in output.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                    found.insert(attr_s(&item, attr::PK)?.to_owned(), item);
                }
                pending = output
                    .unprocessed_keys
                    .and_then(|mut left| left.remove(&self.table))
                    .map(|left| left.keys)
                    .unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    backoff("BatchGetItem", round).await?;
                }
            }
        }
        Ok(found)
    }

    /// A conditional put of one row: absent for a new row, else at the version before.
    fn row_put(&self, pk: &str, row: &Row) -> Result<TransactWriteItem, StoreError> {
        let item = row_item(pk, row)?;
        if row.version <= 1 {
            self.put(item, "attribute_not_exists(#pk)", &[("#pk", attr::PK)], &[], false)
        } else {
            self.put(
                item,
                "#version = :previous",
                &[("#version", attr::VERSION)],
                &[(":previous", n(row.version - 1))],
                false,
            )
        }
    }

    /// Writes rows ahead of their document, each with a conditional PutItem (absent for a
    /// new row, else at the version before), [`ROW_PUTS_IN_FLIGHT`] at a time;
    /// `VersionConflict` when a row is not at the version it was read at. Single puts, not
    /// transactions: a row's condition is all it needs, and a transaction costs twice the
    /// write capacity ("TransactWriteItems", DynamoDB Developer Guide, capacity for transactions).
    async fn write_rows_ahead(&self, doc: &Document, rows: &[Row]) -> Result<(), StoreError> {
        let pk = doc_pk(doc.collection, &doc.id);
        for chunk in rows.chunks(ROW_PUTS_IN_FLIGHT) {
            let mut puts = tokio::task::JoinSet::new();
            for row in chunk {
                let item = row_item(&pk, row)?;
                let mut put = self.client.put_item().table_name(&self.table).set_item(Some(item));
                put = if row.version <= 1 {
                    put.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", attr::PK)
                } else {
                    put.condition_expression("#version = :previous")
                        .expression_attribute_names("#version", attr::VERSION)
                        .expression_attribute_values(":previous", n(row.version - 1))
                };
                puts.spawn(put.send());
            }
            while let Some(outcome) = puts.join_next().await {
                match outcome.map_err(|e| StoreError::Internal(format!("row write task failed: {e}")))? {
                    Ok(_) => {}
                    Err(SdkError::ServiceError(context))
                        if matches!(context.err(), PutItemError::ConditionalCheckFailedException(_)) =>
                    {
                        return Err(StoreError::VersionConflict { collection: doc.collection, id: doc.id.clone() })
                    }
                    Err(e) => return Err(sdk_error("PutItem row", e)),
                }
            }
        }
        Ok(())
    }

    /// Writes the rows of a new document ahead of it in batches: its id is new, so they
    /// need no condition, and a batch costs a single write per row.
    async fn batch_put_rows(&self, doc: &Document, rows: &[Row]) -> Result<(), StoreError> {
        let pk = doc_pk(doc.collection, &doc.id);
        let mut requests = Vec::with_capacity(rows.len());
        for row in rows {
            let item = row_item(&pk, row)?;
            let put = PutRequest::builder().set_item(Some(item)).build().map_err(build_error)?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write("BatchWriteItem rows", requests).await
    }

    /// Deletes the rows of a document that was not written. A failure
    /// only leaves rows no document names, so it is logged, not returned.
    async fn discard_rows(&self, doc: &Document, rows: &[Row]) {
        let pk = doc_pk(doc.collection, &doc.id);
        let requests: Result<Vec<WriteRequest>, BuildError> = rows
            .iter()
            .map(|row| {
                let delete = DeleteRequest::builder().set_key(Some(key(pk.clone(), row_sk(&row.key)))).build()?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect();
        let outcome = match requests {
            Ok(requests) => self.batch_write("BatchWriteItem delete rows", requests).await,
            Err(e) => Err(build_error(e)),
        };
        if let Err(e) = outcome {
            tracing::warn!(pk, error = %e, "rows of a document that was not written left behind");
        }
    }

    /// Every row item of a document, in key order.
    async fn row_items(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        self.query(
            Query {
                operation: "Query rows",
                index: None,
                condition: "#pk = :pk AND begins_with(#sk, :rows)",
                names: &[("#pk", attr::PK), ("#sk", attr::SK)],
                values: vec![(":pk", s(pk)), (":rows", s(ROW_SK_PREFIX))],
                forward: true,
                start: None,
            },
            usize::MAX,
        )
        .await
    }

    /// A newest-first page of the documents in one partition of an index sorted by
    /// `created_key` (`by-owner`: one owner's, `by-collection`: the whole collection's).
    async fn newest_first(
        &self,
        collection: Collection,
        listing: Listing,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        // A cursor names the last document returned; its index key is the exclusive start.
        let start = match cursor {
            None => None,
            Some(cursor) => {
                let (ms, id) = parse_cursor(cursor)?;
                let mut start = key(doc_pk(collection, &id), DOC_SK.into());
                start.insert(listing.partition.into(), s(listing.value.as_str()));
                start.insert(attr::CREATED_KEY.into(), s(created_key(ms, &id)?));
                Some(start)
            }
        };
        // One more than asked tells whether there is a next page, without an empty last page.
        let mut keys = self
            .query(
                Query {
                    operation: listing.operation,
                    index: Some(listing.index),
                    condition: "#partition = :partition",
                    names: &[("#partition", listing.partition)],
                    values: vec![(":partition", s(listing.value))],
                    forward: false,
                    start,
                },
                limit.saturating_add(1),
            )
            .await?;
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next_cursor = match keys.last() {
            Some(last) if more => Some(cursor_of(last)?),
            _ => None,
        };
        Ok(Page { documents: self.documents(collection, &keys).await?, next_cursor })
    }

    /// Reads a document (consistently).
    async fn read(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        match self.get_item("GetItem", key(doc_pk(collection, id), DOC_SK.into()), &[]).await? {
            Some(item) => Ok(Some(decode_document(collection, &item)?)),
            None => Ok(None),
        }
    }

    /// The documents an index query found, in its order, read consistently from the
    /// table; documents that vanished are skipped.
    async fn documents(&self, collection: Collection, index_keys: &[Item]) -> Result<Vec<Document>, StoreError> {
        let mut keys = Vec::with_capacity(index_keys.len());
        let mut seen = std::collections::HashSet::new();
        for index_key in index_keys {
            let pk = attr_s(index_key, attr::PK)?;
            if seen.insert(pk.to_owned()) {
                keys.push(key(pk.to_owned(), DOC_SK.into()));
            }
        }
        let mut items = self.batch_get(keys).await?;
        let mut documents = Vec::with_capacity(index_keys.len());
        for index_key in index_keys {
            let Some(item) = items.remove(attr_s(index_key, attr::PK)?) else {
                continue;
            };
            documents.push(decode_document(collection, &item)?);
        }
        Ok(documents)
    }
}

/// Waits before retrying unprocessed batch items: 100 ms doubling up to 3.2 s.
async fn backoff(operation: &str, round: u32) -> Result<(), StoreError> {
    if round > MAX_BATCH_ROUNDS {
        return Err(StoreError::Unavailable(format!("DynamoDB {operation}: items still unprocessed")));
    }
    tokio::time::sleep(Duration::from_millis(50 << round.min(6))).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The port

#[async_trait]
impl Store for DynamoStore {
    async fn insert_with_rows(
        &self,
        doc: &Document,
        rows: &[Row],
        client_token: Option<&str>,
    ) -> Result<(), StoreError> {
        let pk = doc_pk(doc.collection, &doc.id);
        let placement = Placement { owner: &doc.owner, created_ms: millis(doc.created_at) };
        let doc_item = document_item(doc, &placement, 1)?;
        // Token, lock and document are at most three actions; the rows join them when they fit.
        let together = rows.len() + 3 <= MAX_TRANSACTION_ITEMS;
        let row_items = if together {
            rows.iter().map(|row| self.row_put(&pk, row)).collect::<Result<Vec<_>, _>>()?
        } else {
            // Rows first: no reader finds the document before them. Record ids are new
            // (time-ordered UUIDs), so no other document's rows are under this key.
            if let Err(e) = self.batch_put_rows(doc, rows).await {
                self.discard_rows(doc, rows).await;
                return Err(e);
            }
            Vec::new()
        };
        let mut uncertain = false;
        let outcome = self.insert_transaction(doc, client_token, doc_item, row_items, &mut uncertain).await;
        // Rows written ahead are deleted only when the document surely was not written: a
        // transaction that failed in transit (timeout, 5xx) may have committed.
        if outcome.is_err() && !uncertain && !together {
            self.discard_rows(doc, rows).await;
        }
        outcome
    }

    async fn update_with_rows(&self, doc: &Document, rows: &[Row]) -> Result<(), StoreError> {
        let conflict = || StoreError::VersionConflict { collection: doc.collection, id: doc.id.clone() };
        let Some(previous) = doc.version.checked_sub(1).filter(|v| *v >= 1) else {
            return Err(conflict());
        };
        let pk = doc_pk(doc.collection, &doc.id);
        // What the stored version holds (its lock, its placement), read before writing; the
        // transaction's version condition guarantees it is still that version.
        let projection = [attr::VERSION, attr::OWNER, attr::CREATED_AT, attr::LOCK_KEY];
        let Some(stored) = self.get_item("GetItem", key(pk.clone(), DOC_SK.into()), &projection).await? else {
            return Err(conflict());
        };
        if attr_n::<u64>(&stored, attr::VERSION)? != previous {
            return Err(conflict());
        }
        let placement =
            Placement { owner: attr_s(&stored, attr::OWNER)?, created_ms: attr_n(&stored, attr::CREATED_AT)? };
        let mut items = vec![self.put(
            document_item(doc, &placement, doc.version)?,
            "#version = :previous",
            &[("#version", attr::VERSION)],
            &[(":previous", n(previous))],
            false,
        )?];
        let (release_at, acquire_at) = self.plan_lock_change(doc, opt_s(&stored, attr::LOCK_KEY), &mut items).await?;
        let rows_from = items.len();
        if rows_from + rows.len() <= MAX_TRANSACTION_ITEMS {
            for row in rows {
                items.push(self.row_put(&pk, row)?);
            }
        } else {
            // Too many for one transaction: the rows go first, so the document a reader
            // finds is never newer than its rows; a row at another version stops it all.
            self.write_rows_ahead(doc, rows).await?;
        }
        let reasons = match self.transact("TransactWriteItems update", items).await? {
            None => return Ok(()),
            Some(reasons) => reasons,
        };
        if condition_failed(reasons.first()) || reasons.iter().skip(rows_from).any(|r| condition_failed(Some(r))) {
            return Err(conflict());
        }
        if let (Some(at), Some(lock)) = (acquire_at, &doc.lock) {
            if condition_failed(reasons.get(at)) {
                return match self.blocking_value(reasons.get(at), lock_key(lock), attr::HOLDER).await? {
                    Some(holder) => Err(StoreError::LockHeld { key: lock.clone(), holder }),
                    None => Err(StoreError::Unavailable(format!("lock '{lock}' changed hands during the update"))),
                };
            }
        }
        if release_at.is_some_and(|at| condition_failed(reasons.get(at))) {
            return Err(StoreError::Unavailable("the released lock changed hands during the update".into()));
        }
        Err(cancellation_error("TransactWriteItems update", &reasons))
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        self.read(collection, id).await
    }

    async fn get_rows(&self, collection: Collection, id: &str) -> Result<Vec<Row>, StoreError> {
        let items = self.row_items(&doc_pk(collection, id)).await?;
        items
            .iter()
            .map(|item| {
                let key = attr_s(item, attr::SK)?.trim_start_matches(ROW_SK_PREFIX).to_owned();
                let body = serde_json::from_str(attr_s(item, attr::BODY)?).map_err(|e| {
                    StoreError::Internal(format!("row '{key}' of {collection} '{id}' is unreadable: {e}"))
                })?;
                Ok(Row { key, version: attr_n(item, attr::VERSION)?, body })
            })
            .collect()
    }

    async fn list_owned(
        &self,
        collection: Collection,
        owner: &str,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        let listing = Listing {
            operation: "Query by-owner",
            index: INDEX_BY_OWNER,
            partition: attr::OWNER_KEY,
            value: format!("{collection}#{owner}"),
        };
        self.newest_first(collection, listing, limit, cursor).await
    }

    async fn list_collection(
        &self,
        collection: Collection,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        let listing = Listing {
            operation: "Query by-collection",
            index: INDEX_BY_COLLECTION,
            partition: attr::COLLECTION_KEY,
            value: collection.as_str().to_owned(),
        };
        self.newest_first(collection, listing, limit, cursor).await
    }

    async fn delete(&self, collection: Collection, id: &str, version: u64) -> Result<(), StoreError> {
        let conflict = || StoreError::VersionConflict { collection, id: id.to_owned() };
        let pk = doc_pk(collection, id);
        // What the stored version holds (its lock), read before deleting; the transaction's
        // version condition guarantees it is still that version.
        let projection = [attr::VERSION, attr::LOCK_KEY];
        let Some(stored) = self.get_item("GetItem", key(pk.clone(), DOC_SK.into()), &projection).await? else {
            return Err(conflict());
        };
        if attr_n::<u64>(&stored, attr::VERSION)? != version {
            return Err(conflict());
        }
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk.clone(), DOC_SK.into())))
            .condition_expression("#version = :version")
            .expression_attribute_names("#version", attr::VERSION)
            .expression_attribute_values(":version", n(version));
        let mut items = vec![TransactWriteItem::builder().delete(delete.build().map_err(build_error)?).build()];
        let release_at = match opt_s(&stored, attr::LOCK_KEY) {
            Some(lock) => self.plan_release(lock, id, &mut items).await?,
            None => None,
        };
        match self.transact("TransactWriteItems delete", items).await? {
            None => {
                // The rows go after their document: no reader finds a document without them.
                let rows = self.row_items(&pk).await?;
                let requests = rows
                    .iter()
                    .map(|row| {
                        let sk = attr_s(row, attr::SK)?.to_owned();
                        let delete =
                            DeleteRequest::builder().set_key(Some(key(pk.clone(), sk))).build().map_err(build_error)?;
                        Ok(WriteRequest::builder().delete_request(delete).build())
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                self.batch_write("BatchWriteItem delete rows", requests).await
            }
            Some(reasons) if condition_failed(reasons.first()) => Err(conflict()),
            Some(reasons) if release_at.is_some_and(|at| condition_failed(reasons.get(at))) => {
                Err(StoreError::Unavailable("the released lock changed hands during the delete".into()))
            }
            Some(reasons) => Err(cancellation_error("TransactWriteItems delete", &reasons)),
        }
    }

    async fn acquire_lock(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        // A failed condition returns the lock item, naming its holder; when it does not
        // and the lock is free again by the time it is read, try again.
        for _ in 0..MAX_INSERT_ROUNDS {
            let outcome = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(lock_item(key, holder, None)))
                .condition_expression(LOCK_FREE_OR_OURS)
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#holder", attr::HOLDER)
                .expression_attribute_values(":holder", s(holder))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let returned = match outcome {
                Ok(_) => return Ok(()),
                Err(SdkError::ServiceError(context)) if context.err().is_conditional_check_failed_exception() => {
                    let PutItemError::ConditionalCheckFailedException(failed) = context.into_err() else {
                        unreachable!("matched above")
                    };
                    failed.item
                }
                Err(e) => return Err(sdk_error("PutItem lock", e)),
            };
            match self.current_value(returned.as_ref(), lock_key(key), attr::HOLDER).await? {
                Some(current) if current != holder => {
                    return Err(StoreError::LockHeld { key: key.to_owned(), holder: current })
                }
                _ => continue,
            }
        }
        Err(StoreError::Unavailable(format!("lock '{key}' kept changing hands")))
    }

    async fn release_lock(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let outcome = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(lock_key(key)))
            .condition_expression(LOCK_OURS)
            .expression_attribute_names("#holder", attr::HOLDER)
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(()),
            // Free, or held by another: not ours to release.
            Err(SdkError::ServiceError(context)) if context.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(sdk_error("DeleteItem lock", e)),
        }
    }

    async fn list_active(&self, collection: Collection) -> Result<Vec<Document>, StoreError> {
        let keys = self
            .query(
                Query {
                    operation: "Query active",
                    index: Some(INDEX_ACTIVE),
                    condition: "#active_key = :collection",
                    names: &[("#active_key", attr::ACTIVE_KEY)],
                    values: vec![(":collection", s(collection.as_str()))],
                    forward: true,
                    start: None,
                },
                usize::MAX,
            )
            .await?;
        // The index lags the table: keep what the documents themselves say is active.
        Ok(self.documents(collection, &keys).await?.into_iter().filter(|doc| doc.active).collect())
    }

    async fn list_due(&self, collection: Collection, now: Timestamp) -> Result<Vec<Document>, StoreError> {
        let keys = self
            .query(
                Query {
                    operation: "Query due",
                    index: Some(INDEX_DUE),
                    condition: "#due_key = :collection AND #due_at <= :now",
                    names: &[("#due_key", attr::DUE_KEY), ("#due_at", attr::DUE_AT)],
                    values: vec![(":collection", s(collection.as_str())), (":now", n(millis(now)))],
                    forward: true,
                    start: None,
                },
                usize::MAX,
            )
            .await?;
        // The index lags the table: keep what the documents themselves say is due.
        let documents = self.documents(collection, &keys).await?;
        Ok(documents.into_iter().filter(|doc| doc.due_at.is_some_and(|due| due <= now)).collect())
    }
}

impl DynamoStore {
    /// One transaction of the token, the lock and the document, each put only if absent.
    /// When it is cancelled, the first blocker in the order token, lock, document is the
    /// error, so a retried request finds its record even while its lock is held. Each
    /// blocker is looked up (in the reason DynamoDB returns, else read) rather than trusting
    /// which conditions DynamoDB reports as failed; when none is there any more (a token
    /// expired, a lock released meanwhile), the transaction is tried again.
    /// `uncertain` is set when the transaction failed in a way that may hide a commit.
    async fn insert_transaction(
        &self,
        doc: &Document,
        token: Option<&str>,
        doc_item: Item,
        row_items: Vec<TransactWriteItem>,
        uncertain: &mut bool,
    ) -> Result<(), StoreError> {
        let absent = "attribute_not_exists(#pk)";
        let pk_name = [("#pk", attr::PK)];
        for _ in 0..MAX_INSERT_ROUNDS {
            let mut items = Vec::with_capacity(3);
            let token_key = token.map(|t| token_key(doc.collection, &doc.owner, t));
            if let Some(token_key) = &token_key {
                let expires = Utc::now().timestamp() + TOKEN_TTL.as_secs() as i64;
                let mut item = token_key.clone();
                item.insert(attr::ID.into(), s(&doc.id));
                item.insert(attr::TTL.into(), n(expires));
                items.push(self.put(item, absent, &pk_name, &[], true)?);
            }
            if let Some(lock) = &doc.lock {
                let item = lock_item(lock, &doc.id, Some(doc.collection));
                items.push(self.put(item, absent, &pk_name, &[], true)?);
            }
            items.push(self.put(doc_item.clone(), absent, &pk_name, &[], false)?);
            items.extend(row_items.iter().cloned());

            let reasons = match self.transact("TransactWriteItems insert", items).await {
                Ok(None) => return Ok(()),
                Ok(Some(reasons)) => reasons,
                Err(e) => {
                    *uncertain = e.is_retryable();
                    return Err(e);
                }
            };
            if !reasons.iter().any(|reason| condition_failed(Some(reason))) {
                return Err(cancellation_error("TransactWriteItems insert", &reasons));
            }
            let mut at = 0;
            if let Some(token_key) = token_key {
                if let Some(existing_id) = self.blocking_value(reasons.get(at), token_key, attr::ID).await? {
                    return Err(StoreError::TokenUsed { existing_id });
                }
                at += 1;
            }
            if let Some(lock) = &doc.lock {
                if let Some(holder) = self.blocking_value(reasons.get(at), lock_key(lock), attr::HOLDER).await? {
                    return Err(StoreError::LockHeld { key: lock.clone(), holder });
                }
                at += 1;
            }
            // The document, or one of its rows, is there already.
            if reasons.iter().skip(at).any(|r| condition_failed(Some(r))) {
                return Err(StoreError::AlreadyExists { collection: doc.collection, id: doc.id.clone() });
            }
        }
        Err(StoreError::Unavailable(format!("insert of {} '{}' kept conflicting", doc.collection, doc.id)))
    }

    /// Adds the lock changes of an update to its transaction, returning where the release
    /// and the acquisition are in it. A lock is released only when this document holds it
    /// (checked in the transaction too); a new lock is taken only when free or already ours,
    /// so a document's `lock` always names a lock item it holds.
    async fn plan_lock_change(
        &self,
        doc: &Document,
        stored_lock: Option<&str>,
        items: &mut Vec<TransactWriteItem>,
    ) -> Result<(Option<usize>, Option<usize>), StoreError> {
        if stored_lock == doc.lock.as_deref() {
            return Ok((None, None));
        }
        let release_at = match stored_lock {
            Some(old) => self.plan_release(old, &doc.id, items).await?,
            None => None,
        };
        let mut acquire_at = None;
        if let Some(new) = &doc.lock {
            acquire_at = Some(items.len());
            items.push(self.put(
                lock_item(new, &doc.id, Some(doc.collection)),
                LOCK_FREE_OR_OURS,
                &[("#pk", attr::PK), ("#holder", attr::HOLDER)],
                &[(":holder", s(&doc.id))],
                true,
            )?);
        }
        Ok((release_at, acquire_at))
    }

    /// Adds the release of `lock` to a transaction when `holder` holds it (checked in the
    /// transaction too), returning where it is; a lock held by another is left alone.
    async fn plan_release(
        &self,
        lock: &str,
        holder: &str,
        items: &mut Vec<TransactWriteItem>,
    ) -> Result<Option<usize>, StoreError> {
        let held = self.get_item("GetItem lock", lock_key(lock), &[attr::HOLDER]).await?;
        if held.as_ref().and_then(|item| opt_s(item, attr::HOLDER)) != Some(holder) {
            return Ok(None);
        }
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(lock_key(lock)))
            .condition_expression(LOCK_OURS)
            .expression_attribute_names("#holder", attr::HOLDER)
            .expression_attribute_values(":holder", s(holder));
        items.push(TransactWriteItem::builder().delete(delete.build().map_err(build_error)?).build());
        Ok(Some(items.len() - 1))
    }
}

// ---------------------------------------------------------------------------------------
// The table, from its one definition in template.yaml

/// The `SnapnestTable` resource of a CloudFormation/SAM template (as JSON; a YAML template
/// parsed into JSON with its `!Tags` turned into `{"Fn::Tag": ...}` objects works too).
pub fn table_resource(template: &Value) -> Result<&Value, StoreError> {
    template
        .get("Resources")
        .and_then(|resources| resources.get(TABLE_RESOURCE))
        .ok_or_else(|| StoreError::Internal(format!("the template has no resource {TABLE_RESOURCE}")))
}

/// Creates `table_name` exactly as the `AWS::DynamoDB::Table` `resource` defines it (keys,
/// attribute definitions, global secondary indexes, billing mode, deletion protection,
/// streams, table class), waits until it is active, then applies its time-to-live and
/// point-in-time-recovery settings, which CreateTable does not take.
///
/// Properties that do not change what the store can do (tags, encryption, contributor
/// insights...) are left to CloudFormation; ones that would (local indexes, provisioned
/// capacity) are refused rather than silently dropped.
pub async fn create_table_from_definition(
    client: &Client,
    resource: &Value,
    table_name: &str,
) -> Result<(), StoreError> {
    let bad = |what: String| StoreError::Internal(format!("{TABLE_RESOURCE}: {what}"));
    if resource.get("Type").and_then(Value::as_str) != Some("AWS::DynamoDB::Table") {
        return Err(bad("is not an AWS::DynamoDB::Table".into()));
    }
    let props = resource.get("Properties").ok_or_else(|| bad("has no Properties".into()))?;
    for unsupported in ["LocalSecondaryIndexes", "ProvisionedThroughput", "ImportSourceSpecification"] {
        if props.get(unsupported).is_some() {
            return Err(bad(format!("{unsupported} is not supported here")));
        }
    }
    let mut request = client.create_table().table_name(table_name);
    for definition in list(props, "AttributeDefinitions")? {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(definition, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(text(definition, "AttributeType")?))
                .build()
                .map_err(build_error)?,
        );
    }
    request = request.set_key_schema(Some(key_schema(props)?));
    for index in optional_list(props, "GlobalSecondaryIndexes")?.unwrap_or_default() {
        let projection = index.get("Projection").ok_or_else(|| bad("an index has no Projection".into()))?;
        let non_key = optional_list(projection, "NonKeyAttributes")?
            .map(|names| names.iter().map(|name| literal(name).map(str::to_owned)).collect::<Result<Vec<_>, _>>())
            .transpose()?;
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text(index, "IndexName")?)
                .set_key_schema(Some(key_schema(index)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(text(projection, "ProjectionType")?))
                        .set_non_key_attributes(non_key)
                        .build(),
                )
                .build()
                .map_err(build_error)?,
        );
    }
    match props.get("BillingMode").map(literal).transpose()? {
        Some("PAY_PER_REQUEST") => request = request.billing_mode(BillingMode::PayPerRequest),
        other => return Err(bad(format!("BillingMode {other:?} is not supported here (PAY_PER_REQUEST is)"))),
    }
    if let Some(protected) = props.get("DeletionProtectionEnabled") {
        request = request.deletion_protection_enabled(flag(protected)?);
    }
    if let Some(class) = props.get("TableClass") {
        request = request.table_class(TableClass::from(literal(class)?));
    }
    if let Some(stream) = props.get("StreamSpecification") {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(text(stream, "StreamViewType")?))
                .build()
                .map_err(build_error)?,
        );
    }
    request.send().await.map_err(|e| sdk_error("CreateTable", e))?;
    client
        .wait_until_table_exists()
        .table_name(table_name)
        .wait(Duration::from_secs(300))
        .await
        .map_err(|e| StoreError::Unavailable(format!("table {table_name} did not become active: {e}")))?;

    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        if flag(ttl.get("Enabled").unwrap_or(&Value::Bool(false)))? {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(text(ttl, "AttributeName")?)
                .enabled(true)
                .build()
                .map_err(build_error)?;
            client
                .update_time_to_live()
                .table_name(table_name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
        }
    }
    if let Some(pitr) = props.get("PointInTimeRecoverySpecification") {
        if flag(pitr.get("PointInTimeRecoveryEnabled").unwrap_or(&Value::Bool(false)))? {
            let spec = PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .map_err(build_error)?;
            client
                .update_continuous_backups()
                .table_name(table_name)
                .point_in_time_recovery_specification(spec)
                .send()
                .await
                .map_err(|e| sdk_error("UpdateContinuousBackups", e))?;
        }
    }
    Ok(())
}

fn key_schema(parent: &Value) -> Result<Vec<KeySchemaElement>, StoreError> {
    list(parent, "KeySchema")?
        .iter()
        .map(|element| {
            KeySchemaElement::builder()
                .attribute_name(text(element, "AttributeName")?)
                .key_type(KeyType::from(text(element, "KeyType")?))
                .build()
                .map_err(build_error)
        })
        .collect()
}

fn list<'a>(parent: &'a Value, name: &str) -> Result<&'a Vec<Value>, StoreError> {
    parent
        .get(name)
        .and_then(Value::as_array)
        .ok_or_else(|| StoreError::Internal(format!("{TABLE_RESOURCE}: {name} must be a list")))
}

fn optional_list<'a>(parent: &'a Value, name: &str) -> Result<Option<&'a [Value]>, StoreError> {
    parent.get(name).map(|_| list(parent, name).map(Vec::as_slice)).transpose()
}

fn text<'a>(parent: &'a Value, name: &str) -> Result<&'a str, StoreError> {
    literal(parent.get(name).ok_or_else(|| StoreError::Internal(format!("{TABLE_RESOURCE}: {name} is missing")))?)
}

/// A plain string; an intrinsic function (`!Ref`, `!Sub`...) only CloudFormation resolves.
fn literal(value: &Value) -> Result<&str, StoreError> {
    value.as_str().ok_or_else(|| {
        StoreError::Internal(format!(
            "{TABLE_RESOURCE}: {value} is not a literal string \
             (intrinsic functions are not resolved here)"
        ))
    })
}

/// A boolean, also as CloudFormation accepts it: the strings "true" / "false".
fn flag(value: &Value) -> Result<bool, StoreError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(StoreError::Internal(format!("{TABLE_RESOURCE}: {other} is not a boolean"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_millis_sort_like_numbers() {
        let samples = [-MILLIS_SPAN + 1, -86_400_000, -1, 0, 1, 9, 10, 1_717_171_717_171, MILLIS_SPAN - 1];
        let encoded: Vec<String> = samples.iter().map(|ms| sortable_millis(*ms).unwrap()).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted);
        for (ms, text) in samples.iter().zip(&encoded) {
            assert_eq!(parse_sortable_millis(text), Some(*ms));
        }
        assert!(sortable_millis(MILLIS_SPAN).is_err());
        assert!(sortable_millis(-MILLIS_SPAN).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let mut index_key = Item::new();
        index_key.insert(attr::CREATED_KEY.into(), s(created_key(1_717_000_000_123, "b-1:x#y").unwrap()));
        let cursor = cursor_of(&index_key).unwrap();
        assert_eq!(cursor.token(), "1717000000123:b-1:x#y");
        assert_eq!(parse_cursor(&cursor).unwrap(), (1_717_000_000_123, "b-1:x#y".to_owned()));
        for bad in ["", "garbage", "12x:id", "12:", ":id", "99999999999999999999:id"] {
            assert!(matches!(parse_cursor(&Cursor::from_token(bad)), Err(StoreError::BadCursor)), "{bad}");
        }
    }

    #[test]
    fn a_stream_image_of_a_header_reads_back_as_the_document_and_rows_are_no_header() {
        // GIVEN a backup header as the store writes it, active and due
        let doc = Document {
            collection: Collection::Backups,
            id: "bk-1".into(),
            version: 4,
            owner: "si-1".into(),
            created_at: from_millis(1_717_000_000_123).unwrap(),
            active: true,
            due_at: Some(from_millis(1_717_100_000_000).unwrap()),
            lock: Some("backup#si-1".into()),
            body: serde_json::json!({"backup_id": "bk-1", "status": "Running"}),
        };
        // WHEN its stream image is decoded THEN it is the same document
        let image = stream_image(&doc).unwrap();
        assert_eq!(image["sk"], serde_json::json!({"S": "doc"}));
        assert_eq!(image["version"], serde_json::json!({"N": "4"}));
        assert_eq!(header_from_stream_image(&image).unwrap(), Some(doc));
        // AND a row, a lock or an empty image is no header
        let row = serde_json::json!({"pk": {"S": "backup#bk-1"}, "sk": {"S": "row#item#00000"}, "version": {"N": "1"}});
        assert_eq!(header_from_stream_image(&row).unwrap(), None);
        let lock = serde_json::json!({"pk": {"S": "lock#backup#si-1"}, "sk": {"S": "lock"}, "holder": {"S": "bk-1"}});
        assert_eq!(header_from_stream_image(&lock).unwrap(), None);
        assert_eq!(header_from_stream_image(&serde_json::json!({})).unwrap(), None);
        // AND every attribute kind reads back
        let all = serde_json::json!({"M": {"l": {"L": [{"NS": ["1"]}, {"SS": ["a"]}, {"NULL": true}, {"BOOL": false}, {"B": "AAE="}]}}});
        assert_eq!(attribute_to_json(&attribute_from_json(&all).unwrap()), all);
        assert!(attribute_from_json(&serde_json::json!({"X": 1})).is_err());
    }

    #[test]
    fn a_body_too_large_for_an_item_is_refused_and_a_row_has_its_own_key() {
        let doc = |body: Value| Document {
            collection: Collection::Backups,
            id: "b".into(),
            version: 1,
            owner: "si".into(),
            created_at: Utc::now(),
            active: false,
            due_at: None,
            lock: None,
            body,
        };
        let placement = Placement { owner: "si", created_ms: 0 };
        let item = document_item(&doc(serde_json::json!({"a": 1})), &placement, 3).unwrap();
        assert_eq!(opt_s(&item, attr::BODY), Some(r#"{"a":1}"#));
        assert!(!item.contains_key(attr::ACTIVE_KEY));
        let big = doc(Value::String("x".repeat(MAX_BODY)));
        assert!(matches!(document_item(&big, &placement, 3), Err(StoreError::Internal(_))));
        assert_eq!(row_sk("item#00042"), "row#item#00042");
    }
}
