//! End to end under `cargo lambda watch`: every function runs as its own process on the
//! embedded store and simulated cloud; the test drives the SPEC's HTTP routes and invokes
//! each scheduled function with its `events/` file, as Lambda would.

use snapnest_e2e::watch::{backup_and_restore_over_http, invoke, Watch};

#[tokio::test]
async fn backup_and_restore_succeed_under_cargo_lambda_watch() {
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(
        dir.path(),
        &[("SNAPNEST_DATA_DIR", &dir.path().display().to_string()), ("SNAPNEST_SIM_SNAPSHOT_SECONDS", "0.3")],
    );
    let (backup, restore) = backup_and_restore_over_http(&watch, "si-demo").await;
    assert_eq!(backup["items"].as_array().unwrap().len(), 7, "2 instances x 3 volumes + 1 database");
    assert_eq!(restore["mode"], "in_place");

    // Every sample event works with the function its name begins with, as
    // `cargo lambda invoke <function> --data-file events/<file>` would send it.
    let client = reqwest::Client::new();
    let functions = [
        "create-backup",
        "start-backup",
        "poll-status",
        "expire-retention",
        "restore",
        "replicate",
        "admin-api",
        "run-policies",
        "publish-events",
    ];
    let mut invoked = 0;
    for entry in std::fs::read_dir(snapnest_e2e::moto::repo_root().join("events")).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        let function =
            functions.iter().find(|f| file.starts_with(*f)).unwrap_or_else(|| panic!("{file}: which function?"));
        let answer = invoke(&client, &watch, function, &file).await;
        if let Some(status) = answer["statusCode"].as_u64() {
            // HTTP samples name placeholder ids: a JSON answer, found or a clear 404.
            let body: serde_json::Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
            assert!(matches!(status, 200..=202 | 404), "{file}: {status} {body}");
            assert!(body.is_object(), "{file}: {body}");
        }
        invoked += 1;
    }
    assert!(invoked >= 14, "{invoked} sample events");
}
