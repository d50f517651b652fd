//! The events of every state change, end to end: the records table's writes as its stream
//! carries them, through publish-events' handler, to EventBridge. Locally there is no stream:
//! the local tests feed the handler stream events made from the documents as the DynamoDB
//! store writes them (`events/publish-events.json` among them); on moto, the table's own
//! stream is read (DynamoDB Streams API) after a backup and an in-place restore, and what the
//! handler publishes through the EventBridge adapter is read back from an SQS queue that an
//! EventBridge rule on `source: snapnest` targets.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Value};
use snapnest_core::events::{DetailType, Event, EventBus, EventPublisher, PublishError};
use snapnest_core::policy::{PolicyRequest, PolicyRunStatus};
use snapnest_core::store::Collection;
use snapnest_e2e::aws_fixture::MotoSnapnest;
use snapnest_e2e::stream::{lambda_event, read_table_stream, Write};
use snapnest_e2e::{call, http_event, scheduled_event};
use snapnest_local::events::InProcessBus;

/// An event as (detail-type, status, previous status), what a sequence is compared by.
type State = (&'static str, String, Option<String>);

fn state(event: &Event) -> State {
    let detail: Value = serde_json::from_str(&event.detail()).unwrap();
    let text = |v: &Value| v.as_str().map(str::to_owned);
    (event.detail_type().as_str(), text(&detail["status"]).unwrap(), text(&detail["previous_status"]))
}

fn states(list: &[(&'static str, &str, Option<&str>)]) -> Vec<State> {
    list.iter().map(|(d, s, p)| (*d, s.to_string(), p.map(str::to_owned))).collect()
}

/// The id of the record an event is about (its restore, else its policy, else its point).
fn record_of(event: &Event) -> String {
    let detail: Value = serde_json::from_str(&event.detail()).unwrap();
    ["restore_id", "policy_id", "backup_id"]
        .iter()
        .find_map(|k| detail[*k].as_str().map(str::to_owned))
        .expect("an event names its record")
}

#[tokio::test]
async fn the_sample_stream_event_publishes_a_points_changes_and_a_failed_policy_run() {
    // GIVEN publish-events on an empty local store and a bus held in the process
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = snapnest_e2e::local_service(dir.path(), &[]).await;
    let bus = Arc::new(InProcessBus::default());
    let publisher = EventPublisher::new(app.store.clone(), bus.clone());
    // WHEN it is invoked with events/publish-events.json
    let event = serde_json::from_value(snapnest_e2e::event("publish-events.json")).expect("a stream event");
    let answer = publish_events::handle(&publisher, event).await;
    // THEN everything is published: a point Pending, Running, Succeeded, and a policy run
    // that found nothing tagged
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    let published = bus.take();
    assert_eq!(
        published.iter().map(state).collect::<Vec<_>>(),
        states(&[
            ("Backup State Change", "Pending", None),
            ("Backup State Change", "Running", Some("Pending")),
            ("Backup State Change", "Succeeded", Some("Running")),
            ("Policy Run State Change", "Failed", None),
        ])
    );
    let Event::Backup(created) = &published[0] else { panic!("{published:?}") };
    assert_eq!(created.requested_by.as_deref(), Some("arn:aws:sts::123456789012:assumed-role/ops/alice"));
    assert_eq!(created.time.to_rfc3339(), "2026-11-20T02:00:00+00:00", "the write's time");
    let Event::PolicyRun(run) = &published[3] else { panic!("{published:?}") };
    assert_eq!(run.cause.as_deref(), Some("no resources tagged service-instance-id=si-gone in us-east-1"));
}

/// A bus that takes the first `takes` events of each publish and refuses the rest.
struct Refusing {
    takes: usize,
    taken: Mutex<Vec<Event>>,
}

#[async_trait]
impl EventBus for Refusing {
    async fn publish(&self, events: &[Event]) -> Result<(), PublishError> {
        let take = self.takes.min(events.len());
        self.taken.lock().unwrap().extend_from_slice(&events[..take]);
        if take == events.len() {
            return Ok(());
        }
        Err(PublishError { failed: (take..events.len()).collect(), cause: "ThrottlingException: Rate exceeded".into() })
    }
}

#[tokio::test]
async fn a_change_not_published_is_reported_so_the_stream_delivers_it_and_what_follows_again() {
    // GIVEN the sample's four changes, and a bus that takes only two events
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = snapnest_e2e::local_service(dir.path(), &[]).await;
    let bus = Arc::new(Refusing { takes: 2, taken: Mutex::default() });
    let publisher = EventPublisher::new(app.store.clone(), bus.clone());
    let sample = snapnest_e2e::event("publish-events.json");
    // WHEN the batch is handled
    let answer = publish_events::handle(&publisher, serde_json::from_value(sample.clone()).unwrap()).await;
    // THEN the third change (the first not published) is reported by its sequence number:
    // Lambda retries from it, none is skipped
    let third = sample["Records"][2]["dynamodb"]["SequenceNumber"].as_str().unwrap();
    let reported: Vec<_> = answer.batch_item_failures.iter().map(|f| f.item_identifier.as_deref()).collect();
    assert_eq!(reported, vec![Some(third)]);
    assert_eq!(bus.taken.lock().unwrap().len(), 2);
    // AND a record that is no snapnest item stops the batch there, the changes before it published
    let mut broken = sample.clone();
    broken["Records"][1]["dynamodb"]["NewImage"]["body"] = json!({"S": "not a record"});
    let bus = Arc::new(InProcessBus::default());
    let publisher = EventPublisher::new(app.store.clone(), bus.clone());
    let answer = publish_events::handle(&publisher, serde_json::from_value(broken).unwrap()).await;
    let second = sample["Records"][1]["dynamodb"]["SequenceNumber"].as_str().unwrap();
    assert_eq!(answer.batch_item_failures[0].item_identifier.as_deref(), Some(second));
    assert_eq!(bus.take().iter().map(state).collect::<Vec<_>>(), states(&[("Backup State Change", "Pending", None)]));
}

#[tokio::test]
async fn a_policy_run_that_finds_nothing_tagged_fails_with_the_cause_and_publishes_it() {
    // GIVEN a due policy protecting si-gone, of which nothing carries the tag, and si-demo
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = snapnest_e2e::local_service(dir.path(), &[]).await;
    let request = PolicyRequest {
        name: "hourly".into(),
        interval_hours: Some(1),
        retention_days: Some(3),
        start_time: Some(Utc::now() + chrono::Duration::minutes(1)),
        targets: Some(vec!["si-gone".into(), "si-demo".into()]),
        ..Default::default()
    };
    let policy = app.policies.create(&request).await.unwrap();
    let before = app.store.get(Collection::Policies, &policy.policy_id).await.unwrap().unwrap();
    // WHEN run-policies runs it, at its slot
    let at_slot = app.with_clock(Arc::new(snapnest_core::clock::FixedClock(policy.next_run_at)));
    let tick = run_policies::handle(&at_slot, scheduled_event("run-policies.json"), None).await.unwrap();
    // THEN the run is PartiallyFailed, saying what was looked for and where, and counted
    assert_eq!((tick.backups_started, tick.policies_failed), (1, 1), "{tick:?}");
    let ran = app.policies.get(&policy.policy_id).await.unwrap().last_run.unwrap();
    assert_eq!(ran.status, PolicyRunStatus::PartiallyFailed);
    assert_eq!(
        ran.cause.as_deref(),
        Some("1 of 2 service instances were not backed up; first: si-gone: no resources tagged service-instance-id=si-gone in us-east-1")
    );
    // AND its write publishes one Policy Run State Change with the cause
    let after = app.store.get(Collection::Policies, &policy.policy_id).await.unwrap().unwrap();
    let bus = Arc::new(InProcessBus::default());
    let publisher = EventPublisher::new(app.store.clone(), bus.clone());
    let writes = [Write::of_documents(Some(&before), Some(&after), 1, Utc::now().timestamp() as f64)];
    let answer =
        publish_events::handle(&publisher, lambda_event(&writes, "arn:aws:dynamodb:us-east-1:1:table/t/stream/x"))
            .await;
    assert!(answer.batch_item_failures.is_empty());
    let published = bus.take();
    assert_eq!(
        published.iter().map(state).collect::<Vec<_>>(),
        states(&[("Policy Run State Change", "PartiallyFailed", None)])
    );
    let Event::PolicyRun(change) = &published[0] else { panic!("{published:?}") };
    assert_eq!(change.cause, ran.cause);
    assert_eq!((change.targets, change.backups_started), (2, 1));
}

/// A bus that keeps what it publishes and passes it on.
struct Tee {
    inner: snapnest_aws::events::EventBridgeBus,
    seen: Mutex<Vec<Event>>,
}

#[async_trait]
impl EventBus for Tee {
    async fn publish(&self, events: &[Event]) -> Result<(), PublishError> {
        self.seen.lock().unwrap().extend_from_slice(events);
        self.inner.publish(events).await
    }
}

async fn run_until(app: &Arc<snapnest_core::Snapnest>, file: &str, placeholder: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        poll_status::handle(app, scheduled_event("poll-status.json"), None).await.unwrap();
        let (status, record) = call(admin_api::router(app.clone()), http_event(file, &[(placeholder, id)], None)).await;
        assert_eq!(status, 200, "{record}");
        if !matches!(record["status"].as_str(), Some("Pending" | "Running" | "RollingBack")) {
            return record;
        }
        assert!(Instant::now() < deadline, "{id} did not finish: {record:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_backup_and_an_in_place_restore_publish_each_state_change_in_order_on_moto() {
    // GIVEN snapnest on moto (its table made from template.yaml, with its stream), and an
    // EventBridge rule sending this service instance's snapnest events to a queue
    let moto = MotoSnapnest::start("events").await;
    let (app, si) = (moto.app.clone(), moto.service_instance_id.clone());
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(snapnest_e2e::aws_fixture::HOME))
        .load()
        .await;
    let (events, sqs) = (aws_sdk_eventbridge::Client::new(&sdk), aws_sdk_sqs::Client::new(&sdk));
    let queue_url = sqs.create_queue().queue_name(format!("{si}-events")).send().await.unwrap().queue_url.unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    // The subscription docs/events.md shows: a rule on source snapnest (and, here, this
    // service instance), with a queue as its target.
    let pattern = json!({"source": ["snapnest"], "detail": {"service_instance_id": [si]}});
    events.put_rule().name(format!("{si}-rule")).event_pattern(pattern.to_string()).send().await.unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder().id("queue").arn(&queue_arn).build().unwrap();
    events.put_targets().rule(format!("{si}-rule")).targets(target).send().await.unwrap();

    // WHEN a backup runs to Succeeded and an in-place restore of it (with its safety backup)
    // runs to Succeeded, through the functions' handlers
    let ev = http_event("create-backup.json", &[("si-demo", &si)], Some(&json!({"retention_days": 1})));
    let (status, created) = call(create_backup::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{created}");
    let backup_id = created["backup_id"].as_str().unwrap().to_owned();
    let backup = run_until(&app, "admin-api-get-backup.json", "BACKUP_ID", &backup_id).await;
    assert_eq!(backup["status"], "Succeeded", "{backup:#}");
    let (status, restore) =
        call(restore::router(app.clone()), http_event("restore.json", &[("BACKUP_ID", &backup_id)], None)).await;
    assert_eq!(status, 202, "{restore}");
    let restore_id = restore["restore_id"].as_str().unwrap().to_owned();
    let restore = run_until(&app, "admin-api-get-restore.json", "RESTORE_ID", &restore_id).await;
    assert_eq!(restore["status"], "Succeeded", "{restore:#}");
    let safety_id = restore["safety_backup_id"].as_str().expect("a safety backup").to_owned();

    // AND publish-events is handed the table's stream, as the event source mapping would
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    let writes = read_table_stream(&moto.dynamodb, &streams, &moto.table).await;
    assert!(writes.len() > 10, "the stream has every write: {}", writes.len());
    let bus = Arc::new(Tee {
        inner: snapnest_aws::events::EventBridgeBus::from_config(&sdk, "default"),
        seen: Mutex::default(),
    });
    let publisher = EventPublisher::new(app.store.clone(), bus.clone());
    let answer = publish_events::handle(
        &publisher,
        lambda_event(&writes, "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"),
    )
    .await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");

    // THEN each record's state changes, in the order they were saved, each once
    let published = bus.seen.lock().unwrap().clone();
    let mut by_record: BTreeMap<String, Vec<State>> = BTreeMap::new();
    for event in &published {
        by_record.entry(record_of(event)).or_default().push(state(event));
    }
    let point = states(&[
        ("Backup State Change", "Pending", None),
        ("Backup State Change", "Running", Some("Pending")),
        ("Backup State Change", "Succeeded", Some("Running")),
    ]);
    assert_eq!(by_record[&backup_id], point, "the point");
    assert_eq!(by_record[&safety_id], point, "the safety backup");
    assert_eq!(
        by_record[&restore_id],
        states(&[
            ("Restore State Change", "Pending", None),
            ("Restore State Change", "Running", Some("Pending")),
            ("Restore State Change", "Succeeded", Some("Running")),
        ]),
        "the restore"
    );
    assert_eq!(by_record.len(), 3, "{by_record:#?}");
    // AND the safety backup finished before the restore went on: its Succeeded comes first
    let at = |record: &str, status: &str| {
        published.iter().position(|e| record_of(e) == record && state(e).1 == status).expect("published")
    };
    assert!(at(&safety_id, "Succeeded") < at(&restore_id, "Succeeded"));
    // AND the details say who asked, why and when
    let Event::Backup(safety) = &published[at(&safety_id, "Pending")] else { panic!() };
    assert_eq!(safety.trigger, snapnest_core::model::Trigger::SafetyBackup);
    let Event::Restore(done) = &published[at(&restore_id, "Succeeded")] else { panic!() };
    assert_eq!((done.backup_id.as_str(), done.cause.as_ref()), (backup_id.as_str(), None));
    assert_eq!(done.safety_backup_id.as_deref(), Some(safety_id.as_str()));
    assert!(published
        .iter()
        .all(|e| e.detail_type() != DetailType::Replication && e.detail_type() != DetailType::Expiry));

    // AND EventBridge delivered every one to the rule's queue, as published
    let mut delivered: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivered.len() < published.len() && Instant::now() < deadline {
        let received = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.unwrap();
        for message in received.messages() {
            delivered.push(serde_json::from_str(message.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(delivered.len(), published.len(), "{delivered:#?}");
    for (delivered, event) in delivered.iter().zip(&published) {
        assert_eq!(delivered["source"], "snapnest");
        assert_eq!(delivered["detail-type"], event.detail_type().as_str());
        assert_eq!(delivered["detail"], serde_json::from_str::<Value>(&event.detail()).unwrap());
    }
    let last = delivered.iter().rev().find(|d| d["detail"]["restore_id"] == restore_id.as_str()).unwrap();
    assert_eq!(last["detail"]["status"], "Succeeded");
    assert_eq!(last["detail"]["previous_status"], "Running");
    assert_eq!(last["detail"]["service_instance_id"], si.as_str());
}
