//! What the EventBridge adapter sends, captured below the SDK: the `PutEvents` requests' entries
//! (Source, DetailType, Detail, Time), at most 10 to a request, and only the entries
//! EventBridge did not take sent again (EventBridge API Reference, "PutEvents": up to 10
//! entries; a failed entry has an `ErrorCode` in the answer's `Entries`, in request order, and
//! is counted in `FailedEntryCount`). moto takes every entry, so the refusals are scripted here.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::{json, Value};
use snapnest_aws::events::EventBridgeBus;
use snapnest_core::events::{Event, EventBus, PolicyRunChange};
use snapnest_core::ids::PolicyId;
use snapnest_core::policy::PolicyRunStatus;

/// Records every request's JSON body and target, and answers each from a script: the
/// positions (in that request) of the entries to refuse.
#[derive(Clone, Debug, Default)]
struct Capture {
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    refusals: Arc<Mutex<VecDeque<Vec<usize>>>>,
}

impl HttpConnector for Capture {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get("x-amz-target").unwrap_or_default().to_owned();
        let body: Value = serde_json::from_slice(request.body().bytes().unwrap_or_default()).expect("a JSON body");
        let count = body["Entries"].as_array().map_or(0, Vec::len);
        let refused = self.refusals.lock().unwrap().pop_front().unwrap_or_default();
        let entries: Vec<Value> = (0..count)
            .map(|n| {
                if refused.contains(&n) {
                    json!({"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"})
                } else {
                    json!({"EventId": format!("id-{n}")})
                }
            })
            .collect();
        self.requests.lock().unwrap().push((target, body));
        let answer = json!({"FailedEntryCount": refused.len(), "Entries": entries}).to_string();
        HttpConnectorFuture::ready(Ok(HttpResponse::new(StatusCode::try_from(200u16).unwrap(), SdkBody::from(answer))))
    }
}

fn bus(capture: &Capture) -> EventBridgeBus {
    let sdk = common::config_sending_to(capture.clone());
    EventBridgeBus::from_config(&sdk, "default").with_first_retry(Duration::from_millis(1))
}

/// The `n`th of a series of policy runs' events.
fn event(n: usize) -> Event {
    let time = chrono::DateTime::parse_from_rfc3339("2026-11-20T02:00:41Z").unwrap().with_timezone(&chrono::Utc);
    Event::PolicyRun(PolicyRunChange {
        policy_id: PolicyId::parse("policy id", &format!("pl-{n:04}")).unwrap(),
        policy_name: format!("policy {n}"),
        slot: time,
        status: PolicyRunStatus::Failed,
        previous_status: None,
        cause: Some(format!("no resources tagged service-instance-id=si-{n} in us-east-1")),
        targets: 1,
        backups_started: 0,
        causes: vec![],
        ran_at: time,
        version: 1,
        time,
    })
}

#[tokio::test]
async fn events_go_ten_to_a_put_events_request_as_snapnest_entries_and_only_refused_ones_again() {
    // GIVEN 23 events, and EventBridge throttling the fourth entry of the first request
    let capture = Capture::default();
    capture.refusals.lock().unwrap().push_back(vec![3]);
    let events: Vec<Event> = (0..23).map(event).collect();
    // WHEN they are published
    bus(&capture).publish(&events).await.expect("all published in the end");
    // THEN three requests of 10, 10 and 3 entries, then one with the refused entry alone
    let requests = capture.requests.lock().unwrap().clone();
    let sizes: Vec<usize> = requests.iter().map(|(_, b)| b["Entries"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, vec![10, 10, 3, 1], "{requests:?}");
    assert!(requests.iter().all(|(target, _)| target == "AWSEvents.PutEvents"));
    let sent: Vec<&Value> = requests.iter().flat_map(|(_, b)| b["Entries"].as_array().unwrap()).collect();
    assert_eq!(sent[23], sent[3], "the refused entry, the same again");
    // AND each entry is snapnest's event: source, detail-type, the detail as JSON text, its time
    for (entry, event) in sent.iter().zip(&events) {
        assert_eq!(entry["Source"], "snapnest");
        assert_eq!(entry["DetailType"], "Policy Run State Change");
        let detail: Value = serde_json::from_str(entry["Detail"].as_str().unwrap()).unwrap();
        assert_eq!(detail, serde_json::from_str::<Value>(&event.detail()).unwrap());
        assert_eq!(entry["Time"].as_f64(), Some(event.time().timestamp() as f64), "{entry}");
        // The default bus: no bus named.
        assert!(entry.get("EventBusName").is_none(), "{entry}");
    }
    let first: Value = serde_json::from_str(sent[0]["Detail"].as_str().unwrap()).unwrap();
    assert_eq!(first["policy_id"], "pl-0000");
    assert_eq!(first["status"], "Failed");
}

#[tokio::test]
async fn an_entry_refused_on_every_attempt_is_given_back_as_not_published() {
    // GIVEN EventBridge refusing the second entry every time
    let capture = Capture::default();
    capture.refusals.lock().unwrap().extend([vec![1], vec![0], vec![0], vec![0]]);
    // WHEN three events are published
    let refused = bus(&capture).publish(&(0..3).map(event).collect::<Vec<_>>()).await.unwrap_err();
    // THEN it was sent four times in all, then given back with EventBridge's cause
    assert_eq!(refused.failed, vec![1]);
    assert_eq!(refused.cause, "ThrottlingException: Rate exceeded");
    let sizes: Vec<usize> =
        capture.requests.lock().unwrap().iter().map(|(_, b)| b["Entries"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, vec![3, 1, 1, 1]);
}
