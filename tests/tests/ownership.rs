//! Whose is it: two callers, each owning one service instance (its `snapnest:owner` tag),
//! and an admin. Every route answers the other caller's ids exactly as ids that do not
//! exist (404), lists show each caller only its own, and the admin sees both. Locally the
//! `x-snapnest-caller` header names the caller; deployed, only API Gateway's verified
//! identity counts (checked at the end).

use std::sync::Arc;

use serde_json::{json, Value};
use snapnest_core::cloud::{tag, Tags};
use snapnest_core::Snapnest;
use snapnest_e2e::{call, event, local_service};
use snapnest_local::simulated::DEMO_SERVICE_INSTANCE;

const REGION: &str = "us-east-1";

/// A request to whichever function serves the route, as `caller` (None: no caller header).
async fn request(
    app: &Arc<Snapnest>,
    caller: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut ev = event("admin-api-get-backup.json");
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["method"] = json!(method);
    ev["requestContext"]["http"]["path"] = json!(path);
    if let Some(caller) = caller {
        ev["headers"]["x-snapnest-caller"] = json!(caller);
    }
    if let Some(body) = body {
        ev["body"] = json!(body.to_string());
    }
    for router in [create_backup::router(app.clone()), restore::router(app.clone()), admin_api::router(app.clone())] {
        let (status, answer) = call(router, ev.clone()).await;
        let unrouted = status == 404 && answer["message"].as_str().is_some_and(|m| m.starts_with("route "));
        if !unrouted {
            return (status, answer);
        }
    }
    panic!("no function serves {method} {path}");
}

/// Tags every instance and database of a service instance as owned by `owner`.
async fn own(app: &Snapnest, si: &str, owner: &str) {
    let cloud = app.clouds.home();
    let inventory = cloud.discover("service-instance-id", si).await.unwrap();
    let tags = Tags::from([(tag::OWNER.to_owned(), owner.to_owned())]);
    for id in inventory.instances.iter().map(|i| &i.instance_id).chain(inventory.databases.iter().map(|d| &d.db_id)) {
        cloud.tag_resource(id, &tags).await.unwrap();
    }
}

async fn settle(app: &Arc<Snapnest>) {
    for _ in 0..100 {
        let summary = app.poller.poll_active().await.unwrap();
        if summary.backups_polled + summary.restores_polled == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_route_answers_another_callers_ids_with_404_and_an_admin_sees_both() {
    // GIVEN alice owning si-demo, bob owning si-other, and "platform" an admin group
    let dir = tempfile::tempdir().unwrap();
    let (app, sim) = local_service(dir.path(), &[("SNAPNEST_ADMINS", "platform")]).await;
    sim.add_service_instance(REGION, "si-other", 1, 1, 1, true).unwrap();
    own(&app, DEMO_SERVICE_INSTANCE, "alice").await;
    own(&app, "si-other", "bob").await;
    let (alice, bob) = (Some("alice"), Some("bob"));

    // Each takes a backup of their own; neither may back up the other's.
    let (status, answer) = request(&app, bob, "POST", "/service-instances/si-demo/backups", Some(json!({}))).await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("NotFound")), "{answer}");
    let (status, mine) = request(&app, alice, "POST", "/service-instances/si-demo/backups", Some(json!({}))).await;
    assert_eq!(status, 202, "{mine}");
    let (status, theirs) = request(&app, bob, "POST", "/service-instances/si-other/backups", Some(json!({}))).await;
    assert_eq!(status, 202, "{theirs}");
    settle(&app).await;
    let backup_id = mine["backup_id"].as_str().unwrap().to_owned();
    let (status, restore) = request(
        &app,
        alice,
        "POST",
        &format!("/backups/{backup_id}/restores"),
        Some(json!({"mode": "in_place", "safety_backup": false})),
    )
    .await;
    assert_eq!(status, 202, "{restore}");
    settle(&app).await;
    let restore_id = restore["restore_id"].as_str().unwrap().to_owned();
    let (status, policy) = request(
        &app,
        alice,
        "POST",
        "/policies",
        Some(json!({"name": "nightly", "interval_days": 1, "retention_days": 7})),
    )
    .await;
    assert_eq!(status, 201, "{policy}");
    let policy_id = policy["policy_id"].as_str().unwrap().to_owned();

    // WHEN bob asks for anything of alice's THEN it is a 404, as an id that does not exist
    let settings = json!({"name": "mine now", "interval_days": 1, "retention_days": 7});
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/service-instances/si-demo/backups".into(), None),
        ("GET", "/service-instances/si-demo/capacity".into(), None),
        ("GET", format!("/backups/{backup_id}"), None),
        ("PATCH", format!("/backups/{backup_id}/retention"), Some(json!({"extend_days": 1}))),
        ("POST", format!("/backups/{backup_id}/restores"), Some(json!({"mode": "clone"}))),
        ("POST", format!("/backups/{backup_id}/restores"), Some(json!({"mode": "in_place", "dry_run": true}))),
        ("GET", format!("/restores/{restore_id}"), None),
        ("POST", format!("/restores/{restore_id}/rollback"), None),
        ("POST", format!("/jobs/{backup_id}/cancel"), Some(json!({}))),
        ("POST", format!("/jobs/{restore_id}/cancel"), Some(json!({}))),
        ("GET", format!("/policies/{policy_id}"), None),
        ("PUT", format!("/policies/{policy_id}"), Some(settings)),
        ("POST", format!("/policies/{policy_id}/suspend"), None),
        ("POST", format!("/policies/{policy_id}/resume"), None),
        ("POST", format!("/policies/{policy_id}/targets"), Some(json!({"attach": ["si-other"]}))),
        ("DELETE", format!("/policies/{policy_id}"), None),
        (
            "POST",
            "/policies".into(),
            Some(json!({"name": "x", "interval_days": 1, "retention_days": 7, "targets": ["si-demo"]})),
        ),
    ];
    for (method, path, body) in &routes {
        let (status, answer) = request(&app, bob, method, path, body.clone()).await;
        assert_eq!((status, answer["error"].as_str()), (404, Some("NotFound")), "bob {method} {path}: {answer}");
        let missing = path.replace(&backup_id, "bk-01a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6");
        let missing = missing.replace(&restore_id, "rs-01a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6");
        if missing != *path && !path.contains("si-demo") {
            // …answered like an id that does not exist: the same status and code.
            let (status, _) = request(&app, bob, method, &missing, body.clone()).await;
            assert_eq!(status, 404, "{method} {missing}");
        }
    }
    // AND lists show each only their own
    let ids = |answer: &Value, key: &str| -> Vec<String> {
        answer["items"].as_array().unwrap().iter().map(|j| j[key].as_str().unwrap().to_owned()).collect()
    };
    let (_, jobs) = request(&app, bob, "GET", "/jobs", None).await;
    assert!(ids(&jobs, "service_instance_id").iter().all(|si| si == "si-other"), "{jobs}");
    let (_, jobs) = request(&app, alice, "GET", "/jobs", None).await;
    let seen = ids(&jobs, "service_instance_id");
    assert!(!seen.is_empty() && seen.iter().all(|si| si == DEMO_SERVICE_INSTANCE), "{jobs}");
    let (_, policies) = request(&app, bob, "GET", "/policies", None).await;
    assert!(ids(&policies, "policy_id").is_empty(), "{policies}");

    // AND alice reaches every one of her own; the admin reaches both callers' records
    for caller in [alice, Some("carol-in-platform")] {
        let (status, answer) = request(&app, caller, "GET", &format!("/backups/{backup_id}"), None).await;
        let expected = if caller == alice { 200 } else { 404 };
        assert_eq!(status, expected, "{caller:?}: {answer}");
    }
    let mut admin_event_groups = event("admin-api-get-backup.json");
    admin_event_groups["headers"]["x-snapnest-groups"] = json!("platform");
    for (method, path) in [
        ("GET", format!("/backups/{backup_id}")),
        ("GET", format!("/backups/{}", theirs["backup_id"].as_str().unwrap())),
        ("GET", format!("/restores/{restore_id}")),
        ("GET", format!("/policies/{policy_id}")),
        ("GET", "/service-instances/si-other/capacity".into()),
    ] {
        let mut ev = admin_event_groups.clone();
        ev["rawPath"] = json!(path);
        ev["requestContext"]["http"]["method"] = json!(method);
        ev["requestContext"]["http"]["path"] = json!(path);
        ev["headers"]["x-snapnest-caller"] = json!("carol");
        let (status, answer) = call(admin_api::router(app.clone()), ev).await;
        assert_eq!(status, 200, "admin {method} {path}: {answer}");
    }
    let (_, all) = request(&app, None, "GET", "/jobs", None).await;
    let everyone: std::collections::BTreeSet<String> = ids(&all, "service_instance_id").into_iter().collect();
    assert!(
        everyone.contains("si-other") && everyone.contains(DEMO_SERVICE_INSTANCE),
        "locally, no caller is the system"
    );
}

#[tokio::test]
async fn deployed_only_a_verified_identity_counts() {
    // GIVEN the functions as deployed (SNAPNEST_IDENTITY=verified) and alice owning si-demo
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = local_service(dir.path(), &[("SNAPNEST_IDENTITY", "verified")]).await;
    own(&app, DEMO_SERVICE_INSTANCE, "arn:aws:iam::123456789012:role/ops").await;
    // WHEN a request names a caller in the header only THEN it is refused (401), nothing written
    let (status, answer) =
        request(&app, Some("alice"), "POST", "/service-instances/si-demo/backups", Some(json!({}))).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("Unauthenticated")), "{answer}");
    // WHEN API Gateway verified an assumed role of the owning role THEN it is that caller
    let mut ev = event("create-backup.json");
    ev["requestContext"]["authorizer"] = json!({"iam": {
        "accessKey": "ASIA000000", "accountId": "123456789012", "callerId": "AROA000:alice",
        "principalOrgId": null, "userArn": "arn:aws:sts::123456789012:assumed-role/ops/alice", "userId": "AROA000:alice"
    }});
    let (status, created) = call(create_backup::router(app.clone()), ev.clone()).await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["owners"], json!(["arn:aws:iam::123456789012:role/ops"]));
    // AND another verified principal is answered 404
    ev["requestContext"]["authorizer"]["iam"]["userArn"] = json!("arn:aws:sts::123456789012:assumed-role/dev/bob");
    let (status, _) = call(create_backup::router(app.clone()), ev).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn every_record_says_who_asked_for_it_and_for_each_change_since() {
    // GIVEN the functions as deployed and alice (an assumed role of "ops", which owns si-demo)
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = local_service(dir.path(), &[("SNAPNEST_IDENTITY", "verified"), ("SNAPNEST_ADMINS", "ops")]).await;
    own(&app, DEMO_SERVICE_INSTANCE, "arn:aws:iam::123456789012:role/ops").await;
    let as_verified = |principal: &str, method: &str, path: &str, body: Value| {
        let mut ev = event("create-backup.json");
        ev["rawPath"] = json!(path);
        ev["requestContext"]["http"]["method"] = json!(method);
        ev["requestContext"]["http"]["path"] = json!(path);
        ev["body"] = json!(body.to_string());
        ev["requestContext"]["authorizer"] = json!({"iam": {
            "accessKey": "ASIA000000", "accountId": "123456789012", "callerId": "AROA000:x",
            "principalOrgId": null, "userArn": principal, "userId": "AROA000:x"
        }});
        ev
    };
    let alice = "arn:aws:sts::123456789012:assumed-role/ops/alice";
    let carol = "arn:aws:sts::123456789012:assumed-role/ops/carol";
    // WHEN alice backs si-demo up THEN the point says she asked for it
    let ev = as_verified(alice, "POST", "/service-instances/si-demo/backups", json!({"retention_days": 3}));
    let (status, created) = call(create_backup::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["requested_by"], alice);
    assert_eq!(created["changes"], json!([]));
    let backup_id = created["backup_id"].as_str().unwrap().to_owned();
    settle(&app).await;
    // WHEN carol extends its retention THEN the change says who and what
    let path = format!("/backups/{backup_id}/retention");
    let ev = as_verified(carol, "PATCH", &path, json!({"extend_days": 2}));
    let (status, extended) = call(admin_api::router(app.clone()), ev).await;
    assert_eq!(status, 200, "{extended}");
    let change = &extended["changes"][0];
    assert_eq!(change["by"], carol);
    assert!(change["what"].as_str().unwrap().starts_with("retention: expires "), "{change}");
    // WHEN alice restores it in place and carol cancels the restore
    let path = format!("/backups/{backup_id}/restores");
    let ev = as_verified(alice, "POST", &path, json!({"mode": "in_place"}));
    let (status, restore) = call(restore::router(app.clone()), ev).await;
    assert_eq!(status, 202, "{restore}");
    assert_eq!(restore["requested_by"], alice);
    let path = format!("/jobs/{}/cancel", restore["restore_id"].as_str().unwrap());
    let (status, cancelled) = call(admin_api::router(app.clone()), as_verified(carol, "POST", &path, json!({}))).await;
    assert_eq!(status, 202, "{cancelled}");
    let restore = app.restores.get(restore["restore_id"].as_str().unwrap()).await.unwrap();
    assert_eq!(restore.changes.len(), 1);
    assert_eq!((restore.changes[0].what.as_str(), restore.changes[0].by.as_str()), ("cancel", carol));
    // WHEN alice makes a policy and carol suspends it THEN both are in its changes
    let body =
        json!({"name": "nightly", "interval_days": 1, "start_time": "2030-01-01T02:00:00Z", "retention_days": 7});
    let (status, policy) = call(admin_api::router(app.clone()), as_verified(alice, "POST", "/policies", body)).await;
    assert_eq!(status, 201, "{policy}");
    let path = format!("/policies/{}/suspend", policy["policy_id"].as_str().unwrap());
    let (status, suspended) = call(admin_api::router(app.clone()), as_verified(carol, "POST", &path, json!({}))).await;
    assert_eq!(status, 200, "{suspended}");
    let who: Vec<(String, String)> = suspended["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["what"].as_str().unwrap().to_owned(), c["by"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(who, vec![("create".to_owned(), alice.to_owned()), ("suspend".to_owned(), carol.to_owned())]);
}

#[tokio::test]
async fn in_jwt_mode_each_route_needs_its_scope() {
    // GIVEN the functions as deployed in JWT mode and dana, whose group owns si-demo
    let dir = tempfile::tempdir().unwrap();
    let (app, _sim) = local_service(dir.path(), &[("SNAPNEST_IDENTITY", "verified")]).await;
    own(&app, DEMO_SERVICE_INSTANCE, "ops").await;
    let as_jwt = |scope: &str, method: &str, path: &str| {
        let mut ev = event("create-backup.json");
        ev["rawPath"] = json!(path);
        ev["requestContext"]["http"]["method"] = json!(method);
        ev["requestContext"]["http"]["path"] = json!(path);
        ev["body"] = json!("{}");
        ev["requestContext"]["authorizer"] = json!({"jwt": {
            "claims": {"sub": "dana", "cognito:groups": "[ops]", "scope": scope},
            "scopes": null
        }});
        ev
    };
    let backups = "/service-instances/si-demo/backups";
    // WHEN a token with snapnest/read only lists THEN it may; WHEN it starts a backup THEN 403
    let (status, _) = call(admin_api::router(app.clone()), as_jwt("snapnest/read", "GET", backups)).await;
    assert_eq!(status, 200);
    let (status, refused) = call(create_backup::router(app.clone()), as_jwt("snapnest/read", "POST", backups)).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"], "Forbidden");
    assert_eq!(
        refused["message"],
        "POST /service-instances/si-demo/backups needs the scope snapnest/backup; the token has snapnest/read"
    );
    assert!(app.backups.list(DEMO_SERVICE_INSTANCE, 10, None).await.unwrap().0.is_empty(), "nothing written");
    // AND with snapnest/backup it may; a restore needs snapnest/restore, a policy snapnest/admin
    let (status, created) =
        call(create_backup::router(app.clone()), as_jwt("openid snapnest/backup", "POST", backups)).await;
    assert_eq!(status, 202, "{created}");
    let restores = format!("/backups/{}/restores", created["backup_id"].as_str().unwrap());
    let (status, _) = call(restore::router(app.clone()), as_jwt("snapnest/backup", "POST", &restores)).await;
    assert_eq!(status, 403);
    let (status, _) = call(admin_api::router(app.clone()), as_jwt("snapnest/restore", "POST", "/policies")).await;
    assert_eq!(status, 403);
    let (status, answer) = call(admin_api::router(app.clone()), as_jwt("snapnest/admin", "GET", "/policies")).await;
    assert_eq!(status, 200, "{answer}");
}
