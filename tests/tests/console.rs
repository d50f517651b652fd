//! The web console (`snapnest console`) as a person uses it, in headless Chromium: the page
//! is driven by `tests/console/console.mjs` (playwright-core and Debian's chromium, both
//! installed pinned by `scripts/install-tools.sh`) against `cargo lambda watch`, with the
//! local schedules (`snapnest schedules`) advancing the records. It creates a backup and
//! watches it reach Succeeded, restores it in place from the plan after confirming what will
//! stop, cancels a running backup from the Jobs tab, manages a policy, and reads an error of
//! the API off the page; every step saves a screenshot.
//!
//! The screenshots go to `SNAPNEST_TEST_ARTIFACTS` (default `<target>/console-artifacts`);
//! the test prints where.

use std::path::{Path, PathBuf};
use std::time::Duration;

use snapnest_e2e::cli::Running;
use snapnest_e2e::moto::{free_port, repo_root, wait_for_port};
use snapnest_e2e::watch::Watch;

/// `<target>`: the test binary is `<target>/debug/deps/console-<hash>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).expect("<target>/<profile>/deps/<binary>").to_path_buf()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_backs_up_restores_cancels_and_manages_policies_in_a_browser() {
    let console_dir = repo_root().join("tests/console");
    assert!(
        console_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run scripts/install-tools.sh (npm ci in tests/console)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "{chromium} is missing: run scripts/install-tools.sh (Debian's chromium)");
    let artifacts = match std::env::var_os("SNAPNEST_TEST_ARTIFACTS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = target_dir().join("console-artifacts");
            // Only this run's screenshots in the default folder.
            let _ = std::fs::remove_dir_all(&dir);
            dir
        }
    };
    std::fs::create_dir_all(&artifacts).unwrap();

    let dir = tempfile::tempdir().unwrap();
    // Snapshots slow enough that the page can cancel a backup while it runs (step 3).
    let watch = Watch::start(
        dir.path(),
        &[("SNAPNEST_DATA_DIR", &dir.path().display().to_string()), ("SNAPNEST_SIM_SNAPSHOT_SECONDS", "4")],
    );
    watch.warm_up().await;
    let _schedules =
        Running::start(&watch.base, &["schedules", "--every", "poll-status=1"], &dir.path().join("schedules.log"));
    let port = free_port();
    let _console =
        Running::start(&watch.base, &["console", "--port", &port.to_string()], &dir.path().join("console.log"));
    wait_for_port(port, Duration::from_secs(60));

    let node = std::process::Command::new("node")
        .arg(console_dir.join("console.mjs"))
        .current_dir(&console_dir)
        .env("SNAPNEST_CONSOLE_URL", format!("http://127.0.0.1:{port}"))
        .env("SNAPNEST_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .output();
    let output = node.expect("run node tests/console/console.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    if !output.status.success() {
        // The temporary folder goes with the test: keep the servers' logs beside the screenshots.
        for log in ["watch.log", "schedules.log", "console.log"] {
            let _ = std::fs::copy(dir.path().join(log), artifacts.join(log));
        }
    }
    println!("console screenshots: {}", artifacts.display());
    assert!(
        output.status.success(),
        "the console test failed ({}): {}\nscreenshots and the servers' logs: {}",
        output.status,
        stderr.trim(),
        artifacts.display()
    );
}
