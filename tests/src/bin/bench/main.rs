//! snapnest's benchmark: each scenario prints `name: value` lines, the figures the README
//! quotes. `cargo run --release -p snapnest-e2e -- all` runs them all (`./scripts/bench.sh`
//! builds the function binaries the start-up scenario runs first); a scenario's name runs it
//! alone:
//!
//! - `fanout`: the largest request (99 instances × 16 volumes + 10 databases) on the
//!   simulated cloud at 50 ms a call: request → 202, request → every snapshot call issued,
//!   against the least the concurrency bound allows.
//! - `ec2-per-snapshot`: EC2 calls per snapshot to create and to delete a point, through the
//!   real SDK against moto, counted on the wire.
//! - `poll`: one poll pass over 10,000 running snapshots of 50 backups, 10% newly complete.
//! - `expiry`: expire-retention over 1,000,000 points in the embedded store, 10,000 of whose
//!   snapshots are due, at 50 ms a call, cut off by a short time budget and resumed.
//! - `start-up`: each release function binary against a minimal Lambda runtime API.
//! - `operations`: the demo's backup and restore and the largest point end to end
//!   (`-- operations --moto`: on the DynamoDB store on moto).

mod ec2_calls;
mod expiry;
mod fanout;
mod operations;
mod poll;
mod startup;
mod world;

type Outcome = Result<(), Box<dyn std::error::Error>>;

const SCENARIOS: [&str; 6] = ["fanout", "ec2-per-snapshot", "poll", "expiry", "start-up", "operations"];

/// One figure, as the README quotes it.
pub fn figure(name: &str, value: impl std::fmt::Display) {
    println!("{name}: {value}");
}

#[tokio::main]
async fn main() -> Outcome {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let with_moto = std::env::args().any(|a| a == "--moto");
    let wanted: Vec<&str> = if args.is_empty() || args.iter().any(|a| a == "all") {
        SCENARIOS.to_vec()
    } else {
        let mut wanted = Vec::new();
        for name in &args {
            match SCENARIOS.iter().find(|s| **s == name.as_str()) {
                Some(scenario) => wanted.push(*scenario),
                None => return Err(format!("no scenario '{name}'; all, or of {}", SCENARIOS.join(", ")).into()),
            }
        }
        wanted
    };
    machine();
    let started = std::time::Instant::now();
    for scenario in wanted {
        let began = std::time::Instant::now();
        match scenario {
            "fanout" => fanout::run().await?,
            "ec2-per-snapshot" => ec2_calls::run().await?,
            "poll" => poll::run().await?,
            "expiry" => expiry::run().await?,
            "start-up" => startup::run().await?,
            _ => operations::run(with_moto).await?,
        }
        eprintln!("({scenario}: {:.1} s)", began.elapsed().as_secs_f64());
    }
    eprintln!("(all: {:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// What the figures come from.
fn machine() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    figure("machine", format!("{model}, {cores} cores, {}", std::env::consts::OS));
}
