//! End to end under `cargo lambda watch`: every function runs as its own process on the
//! embedded store and simulated cloud; the test drives the SPEC's HTTP routes and invokes
//! each scheduled function with its `events/` file, as Lambda would.

use snapnest_e2e::watch::{backup_and_restore_over_http, Watch};

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
}
