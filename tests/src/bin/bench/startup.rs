//! Each release function binary against a minimal Lambda runtime API (the endpoints the
//! runtime client calls: `next`, the invocation's `response` or `error`, `init/error`): the
//! time from the process's start to its first `next` (its init, done before it asks for
//! work), and its resident memory once it has answered one invocation.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::figure;

/// Each function and the sample event of `events/` it is invoked with.
const FUNCTIONS: [(&str, &str); 9] = [
    ("create-backup", "create-backup.json"),
    ("start-backup", "start-backup.json"),
    ("poll-status", "poll-status.json"),
    ("expire-retention", "expire-retention.json"),
    ("restore", "restore-dry-run.json"),
    ("replicate", "replicate.json"),
    ("admin-api", "admin-api-list-jobs.json"),
    ("run-policies", "run-policies.json"),
    ("publish-events", "publish-events.json"),
];

/// What the runtime API saw: the first `next` (init done), then the invocation's answer
/// (`Ok`) or error.
type Seen = mpsc::UnboundedSender<Result<Instant, String>>;

/// Serves the runtime API on `listener`: the first `next` gets `event`, later ones wait.
async fn serve(listener: TcpListener, event: Value, seen: Seen) {
    let event = event.to_string();
    let handed_out = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    while let Ok((stream, _)) = listener.accept().await {
        let (event, seen, handed_out) = (event.clone(), seen.clone(), handed_out.clone());
        tokio::spawn(async move {
            let mut stream = BufReader::new(stream);
            loop {
                // One HTTP/1.1 request: its line, its headers, its body.
                let mut line = String::new();
                if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let (mut length, mut header) = (0usize, String::new());
                loop {
                    header.clear();
                    if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                if stream.read_exact(&mut body).await.is_err() {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let answer = if path.ends_with("/invocation/next") {
                    if handed_out.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        // One invocation only: the runtime waits here until it is stopped.
                        std::future::pending::<()>().await;
                    }
                    let _ = seen.send(Ok(Instant::now()));
                    let deadline = (chrono::Utc::now() + chrono::Duration::minutes(5)).timestamp_millis();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         lambda-runtime-aws-request-id: bench-request-1\r\n\
                         lambda-runtime-deadline-ms: {deadline}\r\n\
                         lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:bench\r\n\
                         lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\
                         content-length: {}\r\n\r\n{event}",
                        event.len()
                    )
                } else {
                    let _ = if path.ends_with("/response") {
                        seen.send(Ok(Instant::now()))
                    } else {
                        seen.send(Err(String::from_utf8_lossy(&body).into_owned()))
                    };
                    "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_owned()
                };
                if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

pub async fn run() -> crate::Outcome {
    let bin_dir = std::env::current_exe()?.parent().ok_or("no directory of the benchmark")?.to_owned();
    let data = tempfile::tempdir()?;
    // The simulated cloud seeds its world once; every function opens it as it is.
    snapnest_local::simulated::SimulatedCloud::open(
        data.path(),
        snapnest_local::simulated::SimSettings {
            home_region: "us-east-1".into(),
            operation_time: Duration::from_secs(2),
            latency: Duration::ZERO,
            faults: Default::default(),
        },
    )?;
    for (function, event) in FUNCTIONS {
        let binary = bin_dir.join(function);
        if !binary.exists() {
            return Err(format!(
                "{} is not built: cargo build --release --workspace --bins (./scripts/bench.sh does)",
                binary.display()
            )
            .into());
        }
        let (init, rss) = measure(&binary, function, snapnest_e2e::event(event), data.path()).await?;
        figure(&format!("init.{function}.ms"), format!("{:.1}", init.as_secs_f64() * 1000.0));
        figure(&format!("rss.{function}.mb"), format!("{:.1}", rss as f64 / 1024.0));
    }
    Ok(())
}

/// Init time and resident KiB after one invocation of `binary`.
async fn measure(
    binary: &std::path::Path,
    function: &str,
    event: Value,
    data: &std::path::Path,
) -> Result<(Duration, u64), Box<dyn std::error::Error>> {
    let (seen, mut events) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(serve(listener, event, seen));

    let spawned = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_REGION", "us-east-1")
        .env("SNAPNEST_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let outcome = async {
        let wait = |what: &'static str| async move { Err::<Instant, String>(format!("{function}: no {what} in 30 s")) };
        let first_next = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .map_err(|_| ())
            .ok()
            .flatten()
            .unwrap_or(wait("init").await)?;
        tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .map_err(|_| ())
            .ok()
            .flatten()
            .unwrap_or(wait("answer").await)?;
        // The runtime is waiting for its next event: what it holds now is what it keeps.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).map_err(|e| e.to_string())?;
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or("no VmRSS")?;
        Ok::<_, String>((first_next - spawned, rss))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    Ok(outcome?)
}
