//! The `snapnest` CLI as a user runs it, against `cargo lambda watch` with the local
//! schedules (`snapnest schedules`) standing in for EventBridge: nobody invokes poll-status
//! by hand. Off a terminal the CLI prints JSON and a progress line per change.

use serde_json::Value;
use snapnest_e2e::cli::{run, Running};
use snapnest_e2e::watch::Watch;

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_backs_up_restores_cancels_and_manages_policies_under_cargo_lambda_watch() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    // The first instance snapshot of this world is refused for good: the first backup fails
    // in part, every later one succeeds.
    let watch = Watch::start(
        dir.path(),
        &[
            ("SNAPNEST_DATA_DIR", &data_dir),
            ("SNAPNEST_SIM_SNAPSHOT_SECONDS", "1"),
            ("SNAPNEST_SIM_FAULTS", "fail=snapshot_instance"),
        ],
    );
    watch.warm_up().await;
    let endpoint = watch.base.clone();
    let _schedules =
        Running::start(&endpoint, &["schedules", "--every", "poll-status=1"], &dir.path().join("schedules.log"));
    let cli = |args: &[&str]| tokio::task::block_in_place(|| run(&endpoint, args));

    // GIVEN a snapshot call that will fail WHEN a backup is created with --wait
    let failed = cli(&["backup", "create", "si-demo", "--wait", "--retention-days", "3"]);
    // THEN it exits 1 and says which resources failed, and why
    assert_eq!(failed.code, 1, "{failed:#?}");
    assert_eq!(failed.json()["status"], "PartiallyFailed", "{failed:#?}");
    assert!(failed.stderr.contains("ended PartiallyFailed"), "{}", failed.stderr);
    let failed_record = failed.json();
    let failed_items: Vec<&Value> =
        failed_record["items"].as_array().unwrap().iter().filter(|i| i["status"] == "Failed").collect();
    assert!(!failed_items.is_empty());
    for item in failed_items {
        let line = format!("  {} (Failed): {}", item["resource_id"].as_str().unwrap(), item["error"].as_str().unwrap());
        assert!(failed.stderr.contains(&line), "{line} in {}", failed.stderr);
    }

    // WHEN a backup is created with --wait THEN it follows it to Succeeded and exits 0,
    // its progress printed as it went
    let backup = cli(&["backup", "create", "si-demo", "--wait", "--retention-days", "3"]);
    assert_eq!(backup.code, 0, "{backup:#?}");
    let record = backup.json();
    assert_eq!(record["status"], "Succeeded");
    let backup_id = record["backup_id"].as_str().unwrap().to_owned();
    assert!(backup.stderr.contains(&format!("{backup_id} 0/7 resources")), "{}", backup.stderr);
    assert!(backup.stderr.contains(&format!("{backup_id} 7/7 resources · Succeeded")), "{}", backup.stderr);
    assert!(backup.stderr.contains(&format!("{backup_id} Succeeded: Backed up: 7 resources")), "{}", backup.stderr);

    let list = cli(&["backup", "list", "si-demo"]);
    assert_eq!(list.code, 0, "{list:#?}");
    let page = list.json();
    let listed: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|p| p["backup_id"].as_str().unwrap()).collect();
    assert_eq!(listed.first(), Some(&backup_id.as_str()), "newest first");
    assert_eq!(listed.len(), 2);

    let extended = cli(&["backup", "extend", &backup_id, "--days", "2"]);
    assert_eq!(extended.code, 0, "{extended:#?}");
    assert_ne!(extended.json()["expires_at"], record["expires_at"]);

    let described = cli(&["backup", "describe", &backup_id, "--output", "table"]);
    assert_eq!(described.code, 0, "{described:#?}");
    assert!(
        described.stdout.contains("RESOURCE") && described.stdout.contains("Backed up: 7 resources"),
        "{}",
        described.stdout
    );

    // WHEN a restore is previewed THEN the plan names the instances that will stop and
    // nothing starts
    let plan = cli(&["restore", "create", &backup_id, "--dry-run"]);
    assert_eq!(plan.code, 0, "{plan:#?}");
    let stops = plan.json()["stop_instances"].as_array().unwrap().len();
    assert_eq!(stops, 2, "{}", plan.stdout);
    let shown = cli(&["restore", "create", &backup_id, "--dry-run", "--output", "table"]);
    assert!(shown.stdout.contains("will stop 2 instance(s)"), "{}", shown.stdout);
    let jobs = cli(&["jobs", "list", "--kind", "restore"]);
    assert_eq!(jobs.json()["items"].as_array().unwrap().len(), 0, "a dry run starts nothing");

    // WHEN it is restored in place with --wait THEN it ends Succeeded
    let restore = cli(&["restore", "create", &backup_id, "--wait"]);
    assert_eq!(restore.code, 0, "{restore:#?}");
    assert_eq!(restore.json()["status"], "Succeeded");
    assert_eq!(restore.json()["mode"], "in_place");
    let restore_id = restore.json()["restore_id"].as_str().unwrap().to_owned();
    let again = cli(&["restore", "describe", &restore_id]);
    assert_eq!(again.json()["status"], "Succeeded");

    // WHEN a running backup is cancelled THEN it ends Cancelled, and waiting on it exits 1
    let started = cli(&["backup", "create", "si-demo"]);
    assert_eq!(started.code, 0, "{started:#?}");
    let running_id = started.json()["backup_id"].as_str().unwrap().to_owned();
    let cancelled = cli(&["jobs", "cancel", &running_id]);
    assert_eq!(cancelled.code, 0, "{cancelled:#?}");
    assert_eq!(cancelled.json()["job_id"], running_id.as_str());
    let ended = cli(&["backup", "describe", &running_id, "--wait"]);
    assert_eq!((ended.code, ended.json()["status"].as_str()), (1, Some("Cancelled")), "{ended:#?}");
    assert!(ended.stderr.contains("ended Cancelled"), "{}", ended.stderr);

    // Policies: create, attach, suspend, resume, list, detach, delete
    let created = cli(&["policy", "create", "--name", "nightly", "--every-days", "1", "--retention-days", "7"]);
    assert_eq!(created.code, 0, "{created:#?}");
    let policy_id = created.json()["policy_id"].as_str().unwrap().to_owned();
    let attached = cli(&["policy", "attach", &policy_id, "si-demo"]);
    assert_eq!(attached.json()["targets"], serde_json::json!(["si-demo"]), "{attached:#?}");
    assert_eq!(cli(&["policy", "suspend", &policy_id]).json()["state"], "suspended");
    assert_eq!(cli(&["policy", "resume", &policy_id]).json()["state"], "active");
    let policies = cli(&["policy", "list"]).json();
    assert!(policies["items"].as_array().unwrap().iter().any(|p| p["policy_id"] == policy_id.as_str()));
    let described = cli(&["policy", "describe", &policy_id, "--output", "table"]);
    assert!(described.stdout.contains("attach") && described.stdout.contains("suspend"), "{}", described.stdout);
    assert_eq!(cli(&["policy", "detach", &policy_id, "si-demo"]).json()["targets"], serde_json::json!([]));
    assert_eq!(cli(&["policy", "delete", &policy_id]).code, 0);
    assert_eq!(cli(&["policy", "describe", &policy_id]).code, 3, "deleted");

    let capacity = cli(&["capacity", "si-demo"]);
    assert_eq!(capacity.json()["service_instance_id"], "si-demo");
    assert!(capacity.json()["snapshot_bytes"].as_u64().unwrap() > 0);

    // An id the API does not know: exit 3 with the API's own code and message
    let unknown = cli(&["backup", "describe", "bk-00000000000000000000"]);
    assert_eq!(unknown.code, 3, "{unknown:#?}");
    assert_eq!(unknown.stderr, "error: NotFound (404): backup 'bk-00000000000000000000' does not exist\n");
}
