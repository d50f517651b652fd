//! `snapnest schedules`: local runs' EventBridge. `cargo lambda watch` serves the functions
//! but runs no schedules, so nothing would advance a backup after its start. This invokes
//! each scheduled function through watch's Lambda invoke API with the scheduled event
//! EventBridge sends, so locally the same functions do the same work as deployed (no
//! shortcut into the domain, no second way to poll). Locally the rates are shorter than
//! the template's: simulated snapshots take seconds, not minutes.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

/// Every function the template runs on a schedule: its name, the template's rate, and the
/// local default in seconds.
pub const SCHEDULED: [(&str, &str, u64); 4] = [
    ("poll-status", "rate(1 minute)", 2),
    ("replicate", "rate(5 minutes)", 10),
    ("run-policies", "rate(5 minutes)", 30),
    ("expire-retention", "rate(1 hour)", 60),
];

#[derive(Args, Debug, Clone)]
pub struct SchedulesArgs {
    /// A rate of one function, in seconds, e.g. `--every poll-status=1` (repeatable).
    #[arg(long = "every", value_name = "FUNCTION=SECONDS", value_parser = parse_rate)]
    rates: Vec<(String, u64)>,
    /// Invoke each function once, in the table's order, and stop.
    #[arg(long)]
    once: bool,
    /// Print every invocation, not only the failed ones.
    #[arg(long, short)]
    verbose: bool,
}

fn parse_rate(s: &str) -> Result<(String, u64), String> {
    let (function, seconds) = s.split_once('=').ok_or("expected FUNCTION=SECONDS")?;
    if !SCHEDULED.iter().any(|(f, _, _)| *f == function) {
        let names: Vec<&str> = SCHEDULED.iter().map(|(f, _, _)| *f).collect();
        return Err(format!("'{function}' is not a scheduled function ({})", names.join(", ")));
    }
    let seconds: u64 = seconds.parse().ok().filter(|s| *s > 0).ok_or("SECONDS must be a whole number from 1")?;
    Ok((function.to_owned(), seconds))
}

pub async fn run(endpoint: reqwest::Url, args: SchedulesArgs) -> anyhow::Result<()> {
    let host = endpoint.host_str().unwrap_or_default();
    anyhow::ensure!(
        matches!(host, "127.0.0.1" | "localhost"),
        "schedules is for cargo lambda watch on this machine; deployed, EventBridge runs them (endpoint: {endpoint})"
    );
    let http = reqwest::Client::builder().timeout(Duration::from_secs(900)).build()?;
    let base = endpoint.as_str().trim_end_matches('/').to_owned();
    if args.once {
        for (function, _, _) in SCHEDULED {
            invoke(&http, &base, function, true).await?;
        }
        return Ok(());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (function, rate, default) in SCHEDULED {
        let seconds = args.rates.iter().rev().find(|(f, _)| f == function).map_or(default, |(_, s)| *s);
        eprintln!("{function}: every {seconds} s (deployed: {rate})");
        let (http, base, verbose) = (http.clone(), base.clone(), args.verbose);
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(seconds));
            // A run that overran its slot is not made up for, as EventBridge does not.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = invoke(&http, &base, function, verbose).await {
                    eprintln!("{function}: {e:#}");
                }
            }
        });
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        Some(ended) = tasks.join_next() => Err(anyhow::anyhow!("a schedule stopped: {ended:?}")),
    }
}

/// One invocation with the event EventBridge's scheduled rule sends.
async fn invoke(http: &reqwest::Client, base: &str, function: &str, verbose: bool) -> anyhow::Result<()> {
    let event = json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "local",
        "resources": [format!("arn:aws:events:local:000000000000:rule/snapnest-{function}")],
        "detail": {}
    });
    let began = Instant::now();
    let response = http
        .post(format!("{base}/2015-03-31/functions/{function}/invocations"))
        .json(&event)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach cargo lambda watch at {base}: {e}"))?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "invocation answered {status}: {answer}");
    if verbose {
        eprintln!("{function}: {} ms: {answer}", began.elapsed().as_millis());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_rate_when_it_is_parsed_then_only_a_scheduled_function_and_a_positive_number_pass() {
        assert_eq!(parse_rate("poll-status=1").unwrap(), ("poll-status".into(), 1));
        assert!(parse_rate("restore=1").unwrap_err().contains("not a scheduled function"));
        assert!(parse_rate("poll-status=0").is_err());
        assert!(parse_rate("poll-status").is_err());
    }
}
