//! The CloudWatch metrics snapnest's alarms read, as embedded-metric-format log lines: one
//! JSON object per finished backup, restore, replication and policy run, printed on its own
//! line to stdout, from which CloudWatch Logs extracts the metric without a metrics API call
//! (CloudWatch User Guide, "Specification: Embedded metric format"). The lines are built by
//! pure functions (tested below) and printed by [`emit`]; `template.yaml` has an alarm on
//! each `*Failed` metric.
//!
//! Each metric has one dimension set: `ServiceInstance` for backups, restores and
//! replications, `Policy` for policy runs. A metric exists only with its dimension, so each
//! alarm sums it over every value with a Metrics Insights query
//! (`SELECT SUM(RestoreFailed) FROM SCHEMA(snapnest, ServiceInstance)`). A finished record
//! logs 0 when it did not fail, so the metric exists before the first failure.

use serde_json::{json, Value};

use crate::model::{BackupRecord, RestoreRecord, RollbackReason, Timestamp};
use crate::policy::{Policy, PolicyRun, PolicyRunStatus};
use crate::status::JobStatus;

/// The namespace of every snapnest metric.
pub const NAMESPACE: &str = "snapnest";

/// A backup point ended `Failed` or `PartiallyFailed`.
pub const BACKUP_FAILED: &str = "BackupFailed";
/// A restore ended without doing what was asked: `Failed`, `PartiallyFailed`, or rolled back
/// after a failure or a deadline (a roll-back the user asked for, or a cancel, is not one).
pub const RESTORE_FAILED: &str = "RestoreFailed";
/// A replication ended `Failed` or `PartiallyFailed` (copies missing in the destination).
pub const REPLICATION_FAILED: &str = "ReplicationFailed";
/// A policy run backed up fewer service instances than it protects (`Failed` or
/// `PartiallyFailed`: nothing tagged, a backup refused, no target at all).
pub const POLICY_RUN_FAILED: &str = "PolicyRunFailed";

/// One embedded-metric-format line: `metrics` (name, unit, value) under one dimension
/// (name, value), at `at`.
fn line(dimension: (&str, &str), metrics: &[(&str, &str, u64)], at: Timestamp) -> Value {
    let (dimension_name, dimension_value) = dimension;
    let definitions: Vec<Value> = metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
    let mut line = json!({
        "level": "INFO",
        "_aws": {
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[dimension_name]],
                "Metrics": definitions,
            }]
        },
    });
    line[dimension_name] = json!(dimension_value);
    for (name, _, value) in metrics {
        line[*name] = json!(value);
    }
    line
}

/// Prints a metric line on its own: CloudWatch extracts a metric only from a log line whose
/// top level is the embedded-metric object, so it is never a field of a tracing event.
pub fn emit(line: &Value) {
    println!("{line}");
}

/// Whether a finished backup point failed.
pub fn backup_failed(record: &BackupRecord) -> bool {
    matches!(record.status, JobStatus::Failed | JobStatus::PartiallyFailed)
}

/// The line of a finished backup point: `BackupFailed` and the bytes it holds.
pub fn backup_finished(record: &BackupRecord) -> Value {
    line(
        ("ServiceInstance", &record.service_instance_id),
        &[
            (BACKUP_FAILED, "Count", u64::from(backup_failed(record))),
            ("BackupSnapshotBytes", "Bytes", record.snapshot_bytes),
        ],
        record.finished_at.unwrap_or(record.started_at),
    )
}

/// Whether a finished restore failed (see [`RESTORE_FAILED`]).
pub fn restore_failed(record: &RestoreRecord) -> bool {
    match record.status {
        JobStatus::Failed | JobStatus::PartiallyFailed => true,
        JobStatus::RolledBack => record
            .rollback
            .as_ref()
            .is_some_and(|r| matches!(r.reason, RollbackReason::Failure | RollbackReason::Deadline)),
        _ => false,
    }
}

/// The line of a finished restore.
pub fn restore_finished(record: &RestoreRecord, at: Timestamp) -> Value {
    line(
        ("ServiceInstance", &record.service_instance_id),
        &[(RESTORE_FAILED, "Count", u64::from(restore_failed(record)))],
        record.finished_at.unwrap_or(at),
    )
}

/// Whether a point's finished replication failed.
pub fn replication_failed(record: &BackupRecord) -> bool {
    record.replication.as_ref().is_some_and(|r| matches!(r.status, JobStatus::Failed | JobStatus::PartiallyFailed))
}

/// The line of a point's finished replication.
pub fn replication_finished(record: &BackupRecord, at: Timestamp) -> Value {
    line(
        ("ServiceInstance", &record.service_instance_id),
        &[(REPLICATION_FAILED, "Count", u64::from(replication_failed(record)))],
        at,
    )
}

/// Whether a policy run failed (see [`POLICY_RUN_FAILED`]).
pub fn policy_run_failed(run: &PolicyRun) -> bool {
    matches!(run.status, PolicyRunStatus::Failed | PolicyRunStatus::PartiallyFailed)
}

/// The line of a policy run.
pub fn policy_run_finished(policy: &Policy, run: &PolicyRun) -> Value {
    line(("Policy", &policy.policy_id), &[(POLICY_RUN_FAILED, "Count", u64::from(policy_run_failed(run)))], run.ran_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::backup_point;
    use crate::model::Replication;

    #[test]
    fn a_failed_backup_point_logs_backup_failed_one_under_its_service_instance() {
        // GIVEN a point that ended PartiallyFailed with 42 bytes
        let mut point = backup_point(vec![]);
        point.status = JobStatus::PartiallyFailed;
        point.snapshot_bytes = 42;
        point.finished_at = Some(point.started_at);
        // WHEN its line is made
        let line = backup_finished(&point);
        // THEN it is the embedded metric format CloudWatch reads, BackupFailed = 1
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "snapnest");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["ServiceInstance"]]));
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "BackupFailed", "Unit": "Count"}, {"Name": "BackupSnapshotBytes", "Unit": "Bytes"}])
        );
        assert_eq!(
            (&line["ServiceInstance"], &line["BackupFailed"], &line["BackupSnapshotBytes"]),
            (&json!("si-1"), &json!(1), &json!(42))
        );
        assert_eq!(line["_aws"]["Timestamp"], json!(point.started_at.timestamp_millis()));
    }

    #[test]
    fn a_restore_rolled_back_after_a_failure_counts_but_one_rolled_back_on_request_does_not() {
        use crate::model::{RestoreMode, Rollback};
        // GIVEN an in-place restore rolled back after a refused attach
        let mut restore = crate::fixtures::restore_of(RestoreMode::InPlace);
        restore.status = JobStatus::RolledBack;
        let rollback =
            |reason| Rollback { reason, cause: "refused".into(), started_at: restore.started_at, not_put_back: vec![] };
        restore.rollback = Some(rollback(RollbackReason::Failure));
        // THEN RestoreFailed = 1 under its service instance
        let line = restore_finished(&restore, restore.started_at);
        assert_eq!((&line["RestoreFailed"], &line["ServiceInstance"]), (&json!(1), &json!("si-1")));
        // AND rolled back because the user asked, or cancelled, it did not fail
        restore.rollback = Some(rollback(RollbackReason::Request));
        assert!(!restore_failed(&restore));
        restore.status = JobStatus::Cancelled;
        assert!(!restore_failed(&restore));
        restore.status = JobStatus::PartiallyFailed;
        assert!(restore_failed(&restore));
    }

    #[test]
    fn a_replication_that_lost_copies_logs_replication_failed_and_a_finished_one_zero() {
        // GIVEN a point whose copies partly failed
        let mut point = backup_point(vec![]);
        let replication = Replication {
            region: "us-west-2".into(),
            status: JobStatus::PartiallyFailed,
            expires_at: None,
            items: vec![],
            lease: None,
        };
        point.replication = Some(replication);
        // THEN ReplicationFailed = 1; once all copied, 0
        let at = point.started_at;
        assert_eq!(replication_finished(&point, at)["ReplicationFailed"], 1);
        point.replication.as_mut().unwrap().status = JobStatus::Succeeded;
        assert_eq!(replication_finished(&point, at)["ReplicationFailed"], 0);
        // AND a copy cancelled with its point is no failure
        point.replication.as_mut().unwrap().status = JobStatus::Cancelled;
        assert!(!replication_failed(&point));
    }
}
