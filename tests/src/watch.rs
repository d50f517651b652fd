//! `cargo lambda watch` for the end-to-end tests: every function as its own process.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::event;
use crate::moto::{free_port, repo_root, tools_bin, wait_for_port};

/// `cargo lambda watch` in its own process group, stopped with everything it started.
pub struct Watch {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
}

impl Watch {
    /// Starts it with `env` passed to every function; its log goes to `log_dir/watch.log`.
    pub fn start(log_dir: &std::path::Path, env: &[(&str, &str)]) -> Watch {
        let bin = tools_bin();
        let port = free_port();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let log = std::fs::File::create(log_dir.join("watch.log")).unwrap();
        let child = crate::without_test_env(&mut Command::new(bin.join("cargo-lambda")))
            .args(["lambda", "watch", "--ignore-changes", "-A", "127.0.0.1", "-P", &port.to_string()])
            .args(["--env-var", "SNAPNEST_LOG_FORMAT=json"])
            // A new point's start goes to start-backup through watch's invoke API, as SQS
            // hands it to start-backup when deployed.
            .args(["--env-var", &format!("SNAPNEST_LOCAL_LAMBDA=http://127.0.0.1:{port}")])
            .args(env.iter().flat_map(|(k, v)| ["--env-var".to_owned(), format!("{k}={v}")]))
            .current_dir(repo_root())
            .env("PATH", path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start cargo lambda watch");
        wait_for_port(port, Duration::from_secs(120));
        Watch { child, base: format!("http://127.0.0.1:{port}") }
    }

    /// Each function's first call under watch builds and starts its process; these make
    /// them without a deadline (each is refused or finds nothing, and changes nothing), so
    /// a test's own calls and the schedules meet running functions.
    pub async fn warm_up(&self) {
        let watch = self;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(1200)).build().unwrap();
        let url = |path: &str| format!("{}{path}", watch.base);
        let (status, answer) = call(&client, Method::GET, &url("/jobs"), None).await;
        assert_eq!(status, 200, "admin-api: {answer}");
        let (status, answer) =
            call(&client, Method::POST, &url("/service-instances/si-demo/backups"), Some(json!({"warm_up": true})))
                .await;
        assert_eq!(status, 400, "create-backup: {answer}");
        let (status, answer) = call(
            &client,
            Method::POST,
            &url("/backups/bk-warm-up/restores"),
            Some(json!({"mode": "in_place", "dry_run": true})),
        )
        .await;
        assert_eq!(status, 404, "restore: {answer}");
        invoke(&client, watch, "start-backup", "start-backup.json").await;
        for function in ["poll-status", "replicate", "run-policies", "expire-retention"] {
            invoke(&client, watch, function, &format!("{function}.json")).await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Sends a request; the answer's status and JSON body.
pub async fn call(client: &reqwest::Client, method: Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{url} answered {status}: {text}")))
}

/// Invokes a function through the Lambda invoke API with one of the `events/` files.
pub async fn invoke(client: &reqwest::Client, watch: &Watch, function: &str, file: &str) -> Value {
    let url = format!("{}/2015-03-31/functions/{function}/invocations", watch.base);
    let (status, answer) = call(client, Method::POST, &url, Some(event(file))).await;
    assert_eq!(status, 200, "{function}: {answer}");
    answer
}

pub async fn poll_until_done(client: &reqwest::Client, watch: &Watch, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        invoke(client, watch, "poll-status", "poll-status.json").await;
        let (status, record) = call(client, Method::GET, &format!("{}{path}", watch.base), None).await;
        assert_eq!(status, 200, "{record}");
        if !matches!(record["status"].as_str(), Some("Pending" | "Running")) {
            return record;
        }
        assert!(Instant::now() < deadline, "{path} did not finish: {record:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Over the SPEC's HTTP routes and the Lambda invoke API: a backup of `si` polled to
/// success, a refused bad request, listing, a retention extension, an in-place restore
/// polled to success, and one run of every other scheduled function. Returns the final
/// backup and restore records.
pub async fn backup_and_restore_over_http(watch: &Watch, si: &str) -> (Value, Value) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
    let url = |path: &str| format!("{}{path}", watch.base);

    let (status, created) = call(
        &client,
        Method::POST,
        &url(&format!("/service-instances/{si}/backups")),
        Some(json!({"retention_days": 3})),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let backup_id = created["backup_id"].as_str().unwrap().to_owned();
    let (status, refused) =
        call(&client, Method::POST, &url(&format!("/service-instances/{si}/backups")), Some(json!({"bogus": 1}))).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("InvalidRequest")));

    // The request answered before any snapshot call; start-backup, invoked through watch as
    // SQS invokes it when deployed, makes them without any poll-status pass, well within
    // the start lease (60 s) after which poll-status would take the start over.
    assert_eq!(created["status"], "Pending", "{created:#}");
    let handed_over = Instant::now();
    loop {
        let (_, record) = call(&client, Method::GET, &url(&format!("/backups/{backup_id}")), None).await;
        if record["status"] != "Pending" {
            assert!(record["items"].as_array().unwrap().iter().all(|i| i["snapshot_id"].is_string()), "{record:#}");
            break;
        }
        assert!(handed_over.elapsed() < Duration::from_secs(30), "start-backup did not start {backup_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let backup = poll_until_done(&client, watch, &format!("/backups/{backup_id}")).await;
    assert_eq!(backup["status"], "Succeeded", "{backup:#}");

    let (status, list) = call(&client, Method::GET, &url(&format!("/service-instances/{si}/backups")), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["backup_id"], backup_id.as_str());
    let (status, extended) =
        call(&client, Method::PATCH, &url(&format!("/backups/{backup_id}/retention")), Some(json!({"extend_days": 1})))
            .await;
    assert_eq!(status, 200, "{extended}");

    let (status, restore) =
        call(&client, Method::POST, &url(&format!("/backups/{backup_id}/restores")), Some(json!({"mode": "in_place"})))
            .await;
    assert_eq!(status, 202, "{restore}");
    let restore_id = restore["restore_id"].as_str().unwrap();
    let restore = poll_until_done(&client, watch, &format!("/restores/{restore_id}")).await;
    assert_eq!(restore["status"], "Succeeded", "{restore:#}");
    assert!(restore["items"].as_array().unwrap().iter().all(|i| i["new_resource_id"].is_string()));

    // The other scheduled functions answer their events with what they did.
    let expiry = invoke(&client, watch, "expire-retention", "expire-retention.json").await;
    assert_eq!(expiry["points_expired"], 0, "nothing is due yet: {expiry}");
    let replication = invoke(&client, watch, "replicate", "replicate.json").await;
    assert_eq!(replication["points_examined"], 0, "{replication}");
    let tick = invoke(&client, watch, "run-policies", "run-policies.json").await;
    assert_eq!(tick["backups_started"], 0, "{tick}");
    (backup, restore)
}
