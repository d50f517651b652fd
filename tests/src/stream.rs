//! The records table's DynamoDB stream as publish-events receives it: writes (an item before
//! and after, in DynamoDB's JSON form) made into the Lambda event of a stream batch, either
//! from documents as the DynamoDB store writes them or read from moto's stream.

use serde_json::{json, Value};
use snapnest_core::store::Document;

/// One write as a stream record carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The item before the write (none for an insert), in DynamoDB's JSON form.
    pub old: Option<Value>,
    /// The item after the write (none for a delete).
    pub new: Option<Value>,
    /// Its sequence number in the stream.
    pub sequence: String,
    /// When it was made, in epoch seconds (`ApproximateCreationDateTime`).
    pub at: f64,
}

impl Write {
    /// The write of a record header from `old` to `new` as the DynamoDB store makes it.
    pub fn of_documents(old: Option<&Document>, new: Option<&Document>, sequence: u64, at: f64) -> Write {
        let image = |doc: &Document| snapnest_aws::dynamodb::stream_image(doc).expect("a document's item");
        Write { old: old.map(image), new: new.map(image), sequence: format!("{sequence:021}"), at }
    }

    fn event_name(&self) -> &'static str {
        match (&self.old, &self.new) {
            (None, _) => "INSERT",
            (Some(_), Some(_)) => "MODIFY",
            (Some(_), None) => "REMOVE",
        }
    }
}

/// The Lambda event of a batch of `writes` on `stream_arn`, as the DynamoDB event source
/// mapping sends it (Lambda Developer Guide, "Process DynamoDB records with Lambda", the
/// example event).
pub fn lambda_event(writes: &[Write], stream_arn: &str) -> aws_lambda_events::dynamodb::Event {
    let records: Vec<Value> = writes
        .iter()
        .map(|write| {
            let item = write.new.as_ref().or(write.old.as_ref()).expect("a write has an image");
            let mut change = json!({
                "ApproximateCreationDateTime": write.at,
                "Keys": {"pk": item["pk"], "sk": item["sk"]},
                "SequenceNumber": write.sequence,
                "SizeBytes": item.to_string().len() + write.old.as_ref().map_or(0, |o| o.to_string().len()),
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            });
            if let Some(new) = &write.new {
                change["NewImage"] = new.clone();
            }
            if let Some(old) = &write.old {
                change["OldImage"] = old.clone();
            }
            json!({
                "eventID": format!("event-{}", write.sequence),
                "eventName": write.event_name(),
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": change,
                "eventSourceARN": stream_arn,
            })
        })
        .collect();
    serde_json::from_value(json!({"Records": records})).expect("a DynamoDB stream event")
}

/// Every write of `table`'s stream from its start, in order (moto keeps one shard per table).
pub async fn read_table_stream(
    dynamodb: &aws_sdk_dynamodb::Client,
    streams: &aws_sdk_dynamodbstreams::Client,
    table: &str,
) -> Vec<Write> {
    use aws_sdk_dynamodbstreams::types::ShardIteratorType;
    let described = dynamodb.describe_table().table_name(table).send().await.expect("describe the table");
    let stream = described.table().and_then(|t| t.latest_stream_arn()).expect("the table has a stream").to_owned();
    let description = streams.describe_stream().stream_arn(&stream).send().await.expect("describe the stream");
    let shards = description.stream_description().map(|d| d.shards().to_vec()).unwrap_or_default();
    let mut writes = Vec::new();
    for shard in shards {
        let shard_id = shard.shard_id().expect("a shard id");
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream)
            .shard_id(shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("a shard iterator")
            .shard_iterator;
        while let Some(at) = iterator.take() {
            let page = streams.get_records().shard_iterator(at).send().await.expect("the shard's records");
            if page.records().is_empty() {
                break;
            }
            for record in page.records() {
                let change = record.dynamodb().expect("a stream record");
                let image = |item: Option<
                    &std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
                >| {
                    item.filter(|i| !i.is_empty())
                        .map(|i| Value::Object(i.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect()))
                };
                writes.push(Write {
                    old: image(change.old_image.as_ref()),
                    new: image(change.new_image.as_ref()),
                    sequence: change.sequence_number().unwrap_or_default().to_owned(),
                    at: change.approximate_creation_date_time().map_or(0.0, |t| t.as_secs_f64()),
                });
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    writes
}

/// An attribute of a stream record in DynamoDB's JSON form.
fn attribute_json(value: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as A;
    match value {
        A::S(text) => json!({"S": text}),
        A::N(number) => json!({"N": number}),
        A::Bool(flag) => json!({"BOOL": flag}),
        A::Null(flag) => json!({"NULL": flag}),
        A::Ss(texts) => json!({"SS": texts}),
        A::Ns(numbers) => json!({"NS": numbers}),
        A::L(values) => json!({"L": values.iter().map(attribute_json).collect::<Vec<_>>()}),
        A::M(map) => {
            json!({"M": map.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>()})
        }
        other => panic!("an attribute the store never writes: {other:?}"),
    }
}
