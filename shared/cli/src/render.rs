//! `--output table`: the API's answers as a person reads them. Every value shown comes from
//! the answer as it is; `--output json` prints the answer whole.

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use indicatif::HumanBytes;
use serde_json::Value;

use crate::wait::text;

/// Columns as `kubectl get` prints them: one line per row, whatever the terminal's width,
/// so every id stays whole and can be copied.
fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(NOTHING).set_content_arrangement(ContentArrangement::Disabled).set_header(header.to_vec());
    table
}

fn cell(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn bytes(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_u64).map(|b| HumanBytes(b).to_string()).unwrap_or_else(|| "-".into())
}

/// A time as `2026-11-30 14:05:09Z` (the answer's RFC 3339, shorter).
fn time(value: &Value, key: &str) -> String {
    match value.get(key).and_then(Value::as_str) {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.to_utc().format("%Y-%m-%d %H:%M:%SZ").to_string())
            .unwrap_or_else(|_| t.to_owned()),
        None => "-".into(),
    }
}

/// A point's expiry: null means it is kept until deleted by hand.
fn expires(point: &Value) -> String {
    if point["expires_at"].is_null() {
        "never".into()
    } else {
        time(point, "expires_at")
    }
}

fn lines(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs.iter().filter(|(_, v)| v != "-").map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

fn summary_lines(record: &Value) -> Vec<(&'static str, String)> {
    let summary = &record["summary"];
    vec![("summary", cell(summary, "headline")), ("cause", cell(summary, "cause")), ("next", cell(summary, "next"))]
}

fn replication(record: &Value) -> String {
    match record.get("replication").filter(|r| !r.is_null()) {
        Some(r) => format!("{} to {}", text(r, "status"), text(r, "region")),
        None => "-".into(),
    }
}

pub fn backup(record: &Value) -> String {
    let mut out = lines(&[
        ("backup", cell(record, "backup_id")),
        ("service instance", cell(record, "service_instance_id")),
        ("status", cell(record, "status")),
        ("started", time(record, "started_at")),
        ("finished", time(record, "finished_at")),
        ("size", bytes(record, "snapshot_bytes")),
        ("expires", expires(record)),
        ("replication", replication(record)),
        ("requested by", cell(record, "requested_by")),
    ]);
    let mut resources = table(&["RESOURCE", "KIND", "INSTANCE", "DEVICE", "STATUS", "PROGRESS", "SNAPSHOT", "CAUSE"]);
    for item in record["items"].as_array().into_iter().flatten() {
        resources.add_row(vec![
            cell(item, "resource_id"),
            cell(item, "kind"),
            cell(item, "instance_id"),
            cell(item, "device"),
            cell(item, "status"),
            item["progress"].as_u64().map(|p| format!("{p}%")).unwrap_or_else(|| "-".into()),
            cell(item, "snapshot_id"),
            cell(item, "error"),
        ]);
    }
    out.push_str(&format!("{resources}\n"));
    for skipped in record["skipped"].as_array().into_iter().flatten() {
        out.push_str(&format!("skipped {}: {}\n", cell(skipped, "resource_id"), cell(skipped, "reason")));
    }
    out.push_str(&lines(&summary_lines(record)));
    out
}

pub fn backup_page(page: &Value) -> String {
    let mut points = table(&["BACKUP", "STATUS", "STARTED", "FINISHED", "SIZE", "EXPIRES", "REPLICATION", "SUMMARY"]);
    for point in page["items"].as_array().into_iter().flatten() {
        points.add_row(vec![
            cell(point, "backup_id"),
            cell(point, "status"),
            time(point, "started_at"),
            time(point, "finished_at"),
            bytes(point, "snapshot_bytes"),
            expires(point),
            replication(point),
            cell(&point["summary"], "headline"),
        ]);
    }
    format!("{points}\n{}", next_page(page))
}

fn next_page(page: &Value) -> String {
    match page["next_token"].as_str() {
        Some(token) => format!("more: --next-token {token}\n"),
        None => String::new(),
    }
}

pub fn restore(record: &Value) -> String {
    let mut out = lines(&[
        ("restore", cell(record, "restore_id")),
        ("backup", cell(record, "backup_id")),
        ("service instance", cell(record, "service_instance_id")),
        ("mode", cell(record, "mode")),
        ("status", cell(record, "status")),
        ("phase", cell(record, "phase")),
        ("started", time(record, "started_at")),
        ("finished", time(record, "finished_at")),
        ("safety backup", cell(record, "safety_backup_id")),
        ("kept until", time(record, "kept_until")),
        ("requested by", cell(record, "requested_by")),
    ]);
    let mut resources = table(&["RESOURCE", "KIND", "INSTANCE", "DEVICE", "STEP", "STATUS", "RESTORED AS", "CAUSE"]);
    for item in record["items"].as_array().into_iter().flatten() {
        resources.add_row(vec![
            cell(item, "resource_id"),
            cell(item, "kind"),
            cell(item, "instance_id"),
            cell(item, "device"),
            cell(item, "step"),
            cell(item, "status"),
            cell(item, "new_resource_id"),
            cell(item, "error"),
        ]);
    }
    out.push_str(&format!("{resources}\n"));
    out.push_str(&lines(&summary_lines(record)));
    out
}

/// A dry run's plan: what would stop, what would be replaced, and what would not be restored.
pub fn plan(plan: &Value) -> String {
    let stops: Vec<&str> = plan["stop_instances"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let mut out = lines(&[
        ("plan for", format!("{} of {}", cell(plan, "mode"), cell(plan, "backup_id"))),
        ("service instance", cell(plan, "service_instance_id")),
        ("region", cell(plan, "region")),
        ("safety backup", cell(plan, "safety_backup")),
        ("replaced kept until", time(plan, "replaced_kept_until")),
    ]);
    out.push_str(&if stops.is_empty() {
        "nothing stops\n".to_owned()
    } else {
        format!("will stop {} instance(s) while their disks are swapped: {}\n", stops.len(), stops.join(", "))
    });
    let mut volumes = table(&["VOLUME", "INSTANCE", "DEVICE", "REPLACES", "FROM SNAPSHOT", "SIZE"]);
    for volume in plan["volumes"].as_array().into_iter().flatten() {
        volumes.add_row(vec![
            cell(volume, "source_volume_id"),
            cell(volume, "instance_id"),
            cell(volume, "device"),
            cell(volume, "replaces_volume_id"),
            cell(volume, "snapshot_id"),
            bytes(volume, "size_bytes"),
        ]);
    }
    out.push_str(&format!("{volumes}\n"));
    for database in plan["databases"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "database {} from {} (restored as {}, then {})\n",
            cell(database, "db_id"),
            cell(database, "snapshot_id"),
            cell(database, "restored_as"),
            cell(database, "final_id")
        ));
    }
    for instance in plan["instances"].as_array().into_iter().flatten() {
        out.push_str(&format!("launches an instance for {}\n", cell(instance, "source_instance_id")));
    }
    for skipped in plan["skipped"].as_array().into_iter().flatten() {
        out.push_str(&format!("not restored {}: {}\n", cell(skipped, "resource_id"), cell(skipped, "reason")));
    }
    out.push_str("nothing was changed (dry run)\n");
    out
}

pub fn jobs(page: &Value) -> String {
    let mut jobs = table(&["JOB", "KIND", "SERVICE INSTANCE", "STATUS", "PROGRESS", "REGION", "STARTED", "FINISHED"]);
    for job in page["items"].as_array().into_iter().flatten() {
        jobs.add_row(job_row(job));
    }
    format!("{jobs}\n{}", next_page(page))
}

fn job_row(job: &Value) -> Vec<String> {
    vec![
        cell(job, "job_id"),
        cell(job, "kind"),
        cell(job, "service_instance_id"),
        cell(job, "status"),
        format!("{}/{}", job["progress"]["done"].as_u64().unwrap_or(0), job["progress"]["total"].as_u64().unwrap_or(0)),
        cell(job, "region"),
        time(job, "started_at"),
        time(job, "finished_at"),
    ]
}

pub fn job(job: &Value) -> String {
    let mut one = table(&["JOB", "KIND", "SERVICE INSTANCE", "STATUS", "PROGRESS", "REGION", "STARTED", "FINISHED"]);
    one.add_row(job_row(job));
    format!("{one}\n")
}

fn schedule(policy: &Value) -> String {
    match (policy["interval_hours"].as_u64(), policy["interval_days"].as_u64()) {
        (Some(h), _) => format!("every {h} h"),
        (_, Some(d)) => format!("every {d} d"),
        _ => "-".into(),
    }
}

fn targets(policy: &Value) -> String {
    let targets: Vec<&str> = policy["targets"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if targets.is_empty() {
        "-".into()
    } else {
        targets.join(", ")
    }
}

pub fn policies(page: &Value) -> String {
    let mut policies = table(&["POLICY", "NAME", "STATE", "SCHEDULE", "RETENTION", "TARGETS", "NEXT RUN"]);
    for policy in page["items"].as_array().into_iter().flatten() {
        policies.add_row(vec![
            cell(policy, "policy_id"),
            cell(policy, "name"),
            cell(policy, "state"),
            schedule(policy),
            format!("{} d", cell(policy, "retention_days")),
            targets(policy),
            time(policy, "next_run_at"),
        ]);
    }
    format!("{policies}\n{}", next_page(page))
}

pub fn policy(policy: &Value) -> String {
    let last_run = &policy["last_run"];
    let mut out = lines(&[
        ("policy", cell(policy, "policy_id")),
        ("name", cell(policy, "name")),
        ("state", cell(policy, "state")),
        ("schedule", schedule(policy)),
        ("retention", format!("{} d", cell(policy, "retention_days"))),
        ("replicates to", cell(policy, "destination_region")),
        ("targets", targets(policy)),
        ("next run", time(policy, "next_run_at")),
        ("last run", time(last_run, "ran_at")),
        ("last run skipped", cell(last_run, "skipped")),
    ]);
    for change in policy["changes"].as_array().into_iter().flatten() {
        out.push_str(&format!("{}  {} by {}\n", time(change, "at"), cell(change, "what"), cell(change, "by")));
    }
    out
}

pub fn capacity(capacity: &Value) -> String {
    lines(&[
        ("service instance", cell(capacity, "service_instance_id")),
        ("backup points", cell(capacity, "backup_points")),
        ("snapshots store", bytes(capacity, "snapshot_bytes")),
        ("replicas store", bytes(capacity, "replica_bytes")),
    ])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn given_a_failed_resource_when_a_backup_is_shown_then_its_cause_and_the_record_cause_are_on_screen() {
        let record = json!({
            "backup_id": "bk-1", "service_instance_id": "si-demo", "status": "PartiallyFailed",
            "started_at": "2026-11-30T10:00:00Z", "expires_at": null, "snapshot_bytes": 2147483648u64,
            "items": [{"resource_id": "vol-1", "kind": "volume", "status": "Failed", "progress": 0,
                       "error": "Snapshot creation failed: internal error"}],
            "summary": {"headline": "1 of 1 resources failed", "cause": "vol-1: Snapshot creation failed", "next": null}
        });
        let shown = backup(&record);
        assert!(shown.contains("Snapshot creation failed: internal error"), "{shown}");
        assert!(shown.contains("cause") && shown.contains("vol-1: Snapshot creation failed"), "{shown}");
        assert!(shown.contains("never"), "{shown}");
        assert!(shown.contains("2.00 GiB"), "{shown}");
        assert!(!shown.contains("next "), "a field the answer leaves empty is not shown: {shown}");
    }

    #[test]
    fn given_a_plan_when_it_is_shown_then_it_says_what_will_stop() {
        let shown =
            plan(&json!({"mode": "in_place", "backup_id": "bk-1", "stop_instances": ["i-1", "i-2"], "volumes": []}));
        assert!(shown.contains("will stop 2 instance(s) while their disks are swapped: i-1, i-2"), "{shown}");
        assert!(shown.contains("nothing was changed"), "{shown}");
    }
}
