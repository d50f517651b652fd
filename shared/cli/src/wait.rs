//! `--wait`: follows a backup or restore record until it ends, showing its progress as the
//! record tells it — a bar of resources done with the bytes, a bar per resource while a
//! backup's snapshots report a percentage, a spinner with the phase while a restore's step
//! has none. On a terminal the bars redraw in place; otherwise a line is printed each time
//! what it says changes, so a CI log reads as a history.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::client::Api;
use crate::commands::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Backup,
    Restore,
}

impl Job {
    fn path(self, id: &str) -> String {
        match self {
            Job::Backup => format!("/backups/{id}"),
            Job::Restore => format!("/restores/{id}"),
        }
    }

    fn id(self, record: &Value) -> String {
        let key = match self {
            Job::Backup => "backup_id",
            Job::Restore => "restore_id",
        };
        text(record, key).to_owned()
    }
}

/// How often the record is read: the functions advance it every few seconds at most.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Whether a record's status is one it keeps (`JobStatus::is_terminal` in the domain).
pub fn is_finished(status: &str) -> bool {
    !matches!(status, "Pending" | "Running" | "RollingBack")
}

pub async fn follow(api: &Api, job: Job, mut record: Value, timeout: Duration) -> anyhow::Result<(Value, Outcome)> {
    let id = job.id(&record);
    let deadline = Instant::now() + timeout;
    let mut progress = Progress::new(&id);
    loop {
        progress.show(&record);
        if is_finished(text(&record, "status")) {
            break;
        }
        if Instant::now() >= deadline {
            progress.finish();
            eprintln!(
                "gave up waiting after {} s; {id} goes on (snapnest {} describe {id} --wait)",
                timeout.as_secs(),
                if job == Job::Backup { "backup" } else { "restore" }
            );
            return Ok((record, Outcome::JobFailed));
        }
        tokio::time::sleep(POLL_EVERY).await;
        record = api.get(&job.path(&id)).await?;
    }
    progress.finish();
    let status = text(&record, "status");
    if status == "Succeeded" {
        eprintln!("{id} {status}: {}", text(&record["summary"], "headline"));
        return Ok((record, Outcome::Done));
    }
    eprintln!("{id} ended {status}: {}", or_dash(text(&record["summary"], "cause")));
    for item in record["items"].as_array().into_iter().flatten() {
        if let Some(error) = item["error"].as_str() {
            eprintln!("  {} ({}): {error}", text(item, "resource_id"), text(item, "status"));
        }
    }
    if let Some(error) = record["error"].as_str() {
        eprintln!("  {error}");
    }
    if let Some(next) = record["summary"]["next"].as_str() {
        eprintln!("next: {next}");
    }
    Ok((record, Outcome::JobFailed))
}

/// Most resources given a bar of their own; beyond, the total bar says it all.
const MOST_BARS: usize = 16;

struct Progress {
    id: String,
    interactive: bool,
    bars: MultiProgress,
    total: ProgressBar,
    resources: BTreeMap<String, ProgressBar>,
    last_line: String,
}

impl Progress {
    fn new(id: &str) -> Progress {
        let interactive = std::io::stderr().is_terminal();
        let bars = MultiProgress::with_draw_target(if interactive {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let total = bars.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:24}] {pos}/{len} resources · {wide_msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        total.set_prefix(id.to_owned());
        total.enable_steady_tick(Duration::from_millis(120));
        Progress { id: id.to_owned(), interactive, bars, total, resources: BTreeMap::new(), last_line: String::new() }
    }

    fn show(&mut self, record: &Value) {
        let counts = &record["summary"]["resources"];
        let count = |k: &str| counts[k].as_u64().unwrap_or(0);
        let total = count("total");
        let done = total.saturating_sub(count("pending") + count("running"));
        let mut message = text(record, "status").to_owned();
        if let Some(phase) = record["phase"].as_str() {
            message.push_str(&format!(" · {}", phase.replace('_', " ")));
        }
        if let Some(bytes) = record["summary"]["bytes"].as_u64().filter(|b| *b > 0) {
            message.push_str(&format!(" · {}", HumanBytes(bytes)));
        }
        if count("failed") > 0 {
            message.push_str(&format!(" · {} failed", count("failed")));
        }
        self.total.set_length(total);
        self.total.set_position(done);
        self.total.set_message(message.clone());
        let line = format!("{} {done}/{total} resources · {message}", self.id);
        if !self.interactive && line != self.last_line {
            eprintln!("{line}");
        }
        self.last_line = line;
        if self.interactive {
            self.show_resources(record);
        }
    }

    /// A bar per resource: a percentage while a snapshot reports one, else a spinner with
    /// its step.
    fn show_resources(&mut self, record: &Value) {
        let items = record["items"].as_array().map(Vec::as_slice).unwrap_or_default();
        if items.len() > MOST_BARS {
            return;
        }
        for item in items {
            let resource = text(item, "resource_id").to_owned();
            let bar = self.resources.entry(resource.clone()).or_insert_with(|| {
                let bar = self.bars.add(ProgressBar::new(100));
                bar.set_prefix(resource.clone());
                bar
            });
            let status = text(item, "status");
            match item["progress"].as_u64() {
                Some(percent) => {
                    bar.set_style(
                        ProgressStyle::with_template("  {prefix:<28} [{bar:20}] {pos:>3}% {wide_msg}")
                            .expect("a valid template")
                            .progress_chars("=> "),
                    );
                    bar.set_position(percent);
                    bar.set_message(status.to_owned());
                }
                None => {
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {prefix:<26} {wide_msg}").expect("a valid template"),
                    );
                    let step = item["step"].as_str().unwrap_or_default().replace('_', " ");
                    bar.set_message(if step.is_empty() { status.to_owned() } else { format!("{status} · {step}") });
                    bar.tick();
                }
            }
            if is_item_finished(status) && !bar.is_finished() {
                bar.finish();
            }
        }
    }

    fn finish(&self) {
        for bar in self.resources.values() {
            bar.finish();
        }
        self.total.finish();
    }
}

fn is_item_finished(status: &str) -> bool {
    !matches!(status, "Pending" | "Running")
}

pub fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_each_status_when_asked_if_finished_then_only_pending_running_and_rolling_back_go_on() {
        for status in ["Pending", "Running", "RollingBack"] {
            assert!(!is_finished(status), "{status}");
        }
        for status in ["Succeeded", "PartiallyFailed", "Failed", "Cancelled", "Expired", "RolledBack"] {
            assert!(is_finished(status), "{status}");
        }
    }
}
