//! Examples of the API's answers, shared by the routes that answer them. Each is checked
//! against its schema and read back through snapnest-core's own type by
//! `tests/tests/openapi.rs`.

use serde_json::{json, Value};
use snapnest_core::model::{BackupRecord, RestoreRecord};
use snapnest_core::summary::{self, WithSummary};

/// A manual backup of one instance and the database, its snapshots about to be issued.
pub fn backup_started() -> Value {
    backup_as_answered(backup_started_record())
}

/// A finished point, copied to another region.
pub fn backup_succeeded() -> Value {
    backup_as_answered(backup_succeeded_record())
}

/// [`backup_succeeded`] as a list shows it.
pub fn backup_listed() -> Value {
    let record: BackupRecord = serde_json::from_value(backup_succeeded_record()).expect("a backup record");
    let now = record.finished_at.unwrap_or(record.started_at);
    serde_json::to_value(summary::BackupListing::of(&record, now)).expect("serializes")
}

/// An in-place restore taking its safety backup.
pub fn restore_started() -> Value {
    restore_as_answered(restore_started_record())
}

/// A finished in-place restore.
pub fn restore_succeeded() -> Value {
    restore_as_answered(restore_succeeded_record())
}

/// A finished in-place restore being rolled back at the user's request.
pub fn restore_rolling_back() -> Value {
    restore_as_answered(restore_rolling_back_record())
}

/// A backup record as the API answers it: read through snapnest-core's type, with the
/// summary the code derives (its clock a minute after the start, or at the end).
fn backup_as_answered(record: Value) -> Value {
    let record: BackupRecord = serde_json::from_value(record).expect("the example is a backup record");
    let now = record.finished_at.unwrap_or(record.started_at + chrono::Duration::minutes(1));
    serde_json::to_value(WithSummary { summary: summary::of_backup(&record, now), record }).expect("serializes")
}

/// A restore record as the API answers it (see [`backup_as_answered`]).
fn restore_as_answered(record: Value) -> Value {
    let record: RestoreRecord = serde_json::from_value(record).expect("the example is a restore record");
    let now = record.finished_at.unwrap_or(record.started_at + chrono::Duration::minutes(1));
    serde_json::to_value(WithSummary { summary: summary::of_restore(&record, now), record }).expect("serializes")
}

/// The record of [`backup_started`].
fn backup_started_record() -> Value {
    json!({
        "backup_id": "bk-3f9c2a7d41e84b0c9a15",
        "service_instance_id": "si-demo",
        "region": "us-east-1",
        "status": "Pending",
        "trigger": "manual",
        "policy_id": null,
        "started_at": "2026-11-01T02:00:00Z",
        "finished_at": null,
        "expires_at": "2026-11-08T02:00:00Z",
        "snapshot_bytes": 0,
        "items": [
            {
                "resource_id": "vol-0a1b2c3d4e5f60001",
                "kind": "volume",
                "instance_id": "i-0a1b2c3d4e5f60718",
                "device": "/dev/xvda",
                "availability_zone": "us-east-1a",
                "snapshot_id": null,
                "consistent_group": false,
                "status": "Pending",
                "progress": 0,
                "size_bytes": 8589934592_u64,
                "error": null,
                "released": false,
                "volume_settings": null,
                "database_settings": null,
                "instance_settings": null,
                "stored_bytes": null
            },
            {
                "resource_id": "vol-0a1b2c3d4e5f60002",
                "kind": "volume",
                "instance_id": "i-0a1b2c3d4e5f60718",
                "device": "/dev/xvdb",
                "availability_zone": "us-east-1a",
                "snapshot_id": null,
                "consistent_group": false,
                "status": "Pending",
                "progress": 0,
                "size_bytes": 107374182400_u64,
                "error": null,
                "released": false,
                "volume_settings": null,
                "database_settings": null,
                "instance_settings": null,
                "stored_bytes": null
            },
            {
                "resource_id": "si-demo-mysql",
                "kind": "database",
                "instance_id": null,
                "device": null,
                "availability_zone": "us-east-1a",
                "snapshot_id": null,
                "consistent_group": false,
                "status": "Pending",
                "progress": 0,
                "size_bytes": 0,
                "error": null,
                "released": false,
                "volume_settings": null,
                "database_settings": null,
                "instance_settings": null,
                "stored_bytes": null
            }
        ],
        "skipped": [],
        "replication": {
            "region": "us-west-2",
            "status": "Pending",
            "expires_at": "2026-12-01T02:00:00Z",
            "items": [],
            "lease": null
        },
        "damaged": false,
        "cleanup_pending": false,
        "expiring_since": null,
        "restores_running": [],
        "expiry_lease": null,
        "owners": ["team-orders"],
        "verified_at": null,
        "error": null,
        "selection": {"instance_ids": ["i-0a1b2c3d4e5f60718"], "volume_ids": []},
        "client_token": "first-try",
        "requested_by": "arn:aws:sts::123456789012:assumed-role/ops/alice",
        "changes": [],
        "start_lease_until": "2026-11-01T02:01:00Z",
        "version": 1
    })
}

/// The record of [`backup_succeeded`].
fn backup_succeeded_record() -> Value {
    json!({
        "backup_id": "bk-3f9c2a7d41e84b0c9a15",
        "service_instance_id": "si-demo",
        "region": "us-east-1",
        "status": "Succeeded",
        "trigger": "manual",
        "policy_id": null,
        "started_at": "2026-11-01T02:00:00Z",
        "finished_at": "2026-11-01T02:04:12Z",
        "expires_at": "2026-12-08T02:00:00Z",
        "snapshot_bytes": 137438953472_u64,
        "items": [
            {
                "resource_id": "vol-0a1b2c3d4e5f60001",
                "kind": "volume",
                "instance_id": "i-0a1b2c3d4e5f60718",
                "device": "/dev/xvda",
                "availability_zone": "us-east-1a",
                "snapshot_id": "snap-0a1b2c3d4e5f61001",
                "consistent_group": true,
                "status": "Succeeded",
                "progress": 100,
                "size_bytes": 8589934592_u64,
                "error": null,
                "released": false,
                "volume_settings": null,
                "database_settings": null,
                "instance_settings": null,
                "stored_bytes": null
            },
            {
                "resource_id": "vol-0a1b2c3d4e5f60002",
                "kind": "volume",
                "instance_id": "i-0a1b2c3d4e5f60718",
                "device": "/dev/xvdb",
                "availability_zone": "us-east-1a",
                "snapshot_id": "snap-0a1b2c3d4e5f61002",
                "consistent_group": true,
                "status": "Succeeded",
                "progress": 100,
                "size_bytes": 107374182400_u64,
                "error": null,
                "released": false,
                "volume_settings": null,
                "database_settings": null,
                "instance_settings": null,
                "stored_bytes": null
            },
            {
                "resource_id": "si-demo-mysql",
                "kind": "database",
                "instance_id": null,
                "device": null,
                "availability_zone": "us-east-1a",
                "snapshot_id": "snapnest-bk-3f9c2a7d41e84b0c9a15-si-demo-mysql",
                "consistent_group": false,
                "status": "Succeeded",
                "progress": 100,
                "size_bytes": 21474836480_u64,
                "error": null,
                "released": false,
                "volume_settings": null,
                "database_settings": null,
                "instance_settings": null,
                "stored_bytes": null
            }
        ],
        "skipped": [],
        "replication": {
            "region": "us-west-2",
            "status": "Succeeded",
            "expires_at": "2026-12-01T02:00:00Z",
            "items": [
                {
                    "resource_id": "vol-0a1b2c3d4e5f60001",
                    "kind": "volume",
                    "source_snapshot_id": "snap-0a1b2c3d4e5f61001",
                    "replica_snapshot_id": "snap-0f9e8d7c6b5a42001",
                    "status": "Succeeded",
                    "progress": 100,
                    "error": null,
                    "attempts": 0,
                    "option_group": null
                },
                {
                    "resource_id": "vol-0a1b2c3d4e5f60002",
                    "kind": "volume",
                    "source_snapshot_id": "snap-0a1b2c3d4e5f61002",
                    "replica_snapshot_id": "snap-0f9e8d7c6b5a42002",
                    "status": "Succeeded",
                    "progress": 100,
                    "error": null,
                    "attempts": 1,
                    "option_group": null
                },
                {
                    "resource_id": "si-demo-mysql",
                    "kind": "database",
                    "source_snapshot_id": "snapnest-bk-3f9c2a7d41e84b0c9a15-si-demo-mysql",
                    "replica_snapshot_id": "snapnest-bk-3f9c2a7d41e84b0c9a15-si-demo-mysql-replica",
                    "status": "Succeeded",
                    "progress": 100,
                    "error": null,
                    "attempts": 0,
                    "option_group": null
                }
            ],
            "lease": null
        },
        "damaged": false,
        "cleanup_pending": false,
        "expiring_since": null,
        "restores_running": [],
        "expiry_lease": null,
        "owners": ["team-orders"],
        "verified_at": null,
        "error": null,
        "selection": {"instance_ids": ["i-0a1b2c3d4e5f60718"], "volume_ids": []},
        "client_token": "first-try",
        "requested_by": "arn:aws:sts::123456789012:assumed-role/ops/alice",
        "changes": [],
        "start_lease_until": null,
        "version": 9
    })
}

/// The record of [`restore_started`].
fn restore_started_record() -> Value {
    json!({
        "restore_id": "rs-8d21f0c7b34a4e6f9102",
        "backup_id": "bk-3f9c2a7d41e84b0c9a15",
        "service_instance_id": "si-demo",
        "mode": "in_place",
        "region": "us-east-1",
        "status": "Running",
        "phase": "safety_backup",
        "phase_started_at": "2026-11-21T09:30:00Z",
        "on_failure": "rollback",
        "safety_backup": true,
        "safety_backup_id": "bk-71e0b5c2a9d34f8e6c10",
        "started_at": "2026-11-21T09:30:00Z",
        "finished_at": null,
        "items": [
            {
                "resource_id": "vol-0a1b2c3d4e5f60001",
                "kind": "volume",
                "snapshot_id": "snap-0a1b2c3d4e5f61001",
                "new_resource_id": null,
                "status": "Pending",
                "error": null,
                "instance_id": "i-0a1b2c3d4e5f60718",
                "device": "/dev/xvda",
                "availability_zone": "us-east-1a",
                "replaced_resource_id": "vol-0a1b2c3d4e5f60001",
                "replaced_state": null,
                "replaced_untagged": false,
                "size_bytes": 8589934592u64,
                "volume_settings": null,
                "database_settings": null,
                "step": "not_started"
            },
            {
                "resource_id": "si-demo-mysql",
                "kind": "database",
                "snapshot_id": "snapnest-bk-3f9c2a7d41e84b0c9a15-si-demo-mysql",
                "new_resource_id": null,
                "status": "Pending",
                "error": null,
                "instance_id": null,
                "device": null,
                "availability_zone": "us-east-1a",
                "replaced_resource_id": "si-demo-mysql-old4e6f9102",
                "replaced_state": null,
                "replaced_untagged": false,
                "size_bytes": 21474836480u64,
                "volume_settings": null,
                "database_settings": null,
                "step": "not_started"
            }
        ],
        "instances": [],
        "stopped_instance_ids": [],
        "service_changed": false,
        "rollback": null,
        "kept_until": null,
        "owners": ["team-orders"],
        "lease": null,
        "error": null,
        "client_token": "restore-2026-11-21",
        "requested_by": "arn:aws:sts::123456789012:assumed-role/ops/alice",
        "changes": [],
        "version": 2
    })
}

/// The record of [`restore_succeeded`].
fn restore_succeeded_record() -> Value {
    json!({
        "restore_id": "rs-8d21f0c7b34a4e6f9102",
        "backup_id": "bk-3f9c2a7d41e84b0c9a15",
        "service_instance_id": "si-demo",
        "mode": "in_place",
        "region": "us-east-1",
        "status": "Succeeded",
        "phase": "done",
        "phase_started_at": "2026-11-21T09:41:27Z",
        "on_failure": "rollback",
        "safety_backup": true,
        "safety_backup_id": "bk-71e0b5c2a9d34f8e6c10",
        "started_at": "2026-11-21T09:30:00Z",
        "finished_at": "2026-11-21T09:41:27Z",
        "items": [
            {
                "resource_id": "vol-0a1b2c3d4e5f60001",
                "kind": "volume",
                "snapshot_id": "snap-0a1b2c3d4e5f61001",
                "new_resource_id": "vol-0c3d4e5f6a7b80001",
                "status": "Succeeded",
                "error": null,
                "instance_id": "i-0a1b2c3d4e5f60718",
                "device": "/dev/xvda",
                "availability_zone": "us-east-1a",
                "replaced_resource_id": "vol-0a1b2c3d4e5f60001",
                "replaced_state": "kept",
                "replaced_untagged": false,
                "size_bytes": 8589934592u64,
                "volume_settings": null,
                "database_settings": null,
                "step": "done"
            },
            {
                "resource_id": "si-demo-mysql",
                "kind": "database",
                "snapshot_id": "snapnest-bk-3f9c2a7d41e84b0c9a15-si-demo-mysql",
                "new_resource_id": "si-demo-mysql",
                "status": "Succeeded",
                "error": null,
                "instance_id": null,
                "device": null,
                "availability_zone": "us-east-1a",
                "replaced_resource_id": "si-demo-mysql-old4e6f9102",
                "replaced_state": "kept",
                "replaced_untagged": true,
                "size_bytes": 21474836480u64,
                "volume_settings": null,
                "database_settings": null,
                "step": "done"
            }
        ],
        "instances": [],
        "stopped_instance_ids": ["i-0a1b2c3d4e5f60718"],
        "service_changed": true,
        "rollback": null,
        "kept_until": "2026-11-28T09:40:02Z",
        "owners": ["team-orders"],
        "lease": null,
        "error": null,
        "client_token": "restore-2026-11-21",
        "requested_by": "arn:aws:sts::123456789012:assumed-role/ops/alice",
        "changes": [],
        "version": 14
    })
}

/// The record of [`restore_rolling_back`].
fn restore_rolling_back_record() -> Value {
    let mut restore = restore_succeeded_record();
    restore["status"] = json!("RollingBack");
    restore["phase"] = json!("stopping_instances");
    restore["phase_started_at"] = json!("2026-11-22T08:00:00Z");
    restore["finished_at"] = Value::Null;
    restore["stopped_instance_ids"] = json!([]);
    restore["rollback"] = json!({
        "reason": "request",
        "cause": "roll-back requested by the user",
        "started_at": "2026-11-22T08:00:00Z",
        "not_put_back": []
    });
    restore["error"] = json!("roll-back requested by the user");
    for item in restore["items"].as_array_mut().expect("items") {
        item["step"] = json!("rolling_back");
    }
    restore["version"] = json!(15);
    restore
}

/// The dry run of an in-place restore.
pub fn restore_plan() -> Value {
    json!({
        "restore_id": "rs-019ad3c48e2b7f10a2c34d5e6f708192",
        "backup_id": "bk-3f9c2a7d41e84b0c9a15",
        "service_instance_id": "si-demo",
        "mode": "in_place",
        "region": "us-east-1",
        "safety_backup": true,
        "on_failure": "rollback",
        "stop_instances": ["i-0a1b2c3d4e5f60718"],
        "volumes": [{
            "source_volume_id": "vol-0a1b2c3d4e5f60001",
            "snapshot_id": "snap-0a1b2c3d4e5f61001",
            "size_bytes": 8589934592u64,
            "availability_zone": "us-east-1a",
            "instance_id": "i-0a1b2c3d4e5f60718",
            "device": "/dev/xvda",
            "replaces_volume_id": "vol-0c3d4e5f6a7b80001",
            "settings": {
                "volume_type": "gp3",
                "iops": 3000,
                "throughput": 125,
                "encrypted": true,
                "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                "multi_attach": false,
                "delete_on_termination": true
            }
        }],
        "databases": [{
            "db_id": "si-demo-mysql",
            "snapshot_id": "snapnest-bk-3f9c2a7d41e84b0c9a15-si-demo-mysql",
            "restored_as": "si-demo-mysql-rst6f708192",
            "current_renamed_to": "si-demo-mysql-old6f708192",
            "final_id": "si-demo-mysql",
            "settings": {
                "instance_class": "db.m6g.large",
                "subnet_group": "si-demo-db",
                "security_group_ids": ["sg-0a1b2c3d4e5f60718"],
                "parameter_group": "si-demo-mysql8",
                "option_group": null,
                "multi_az": true,
                "publicly_accessible": false,
                "deletion_protection": true,
                "storage_type": "gp3",
                "port": 3306
            }
        }],
        "instances": [],
        "replaced_kept_until": "2026-11-28T09:30:00Z",
        "skipped": [{
            "resource_id": "vol-0a1b2c3d4e5f60002",
            "kind": "volume",
            "reason": "the backup has no snapshot of it (Snapshot creation failed: internal error): it stays as it is now"
        }]
    })
}

/// A policy that ran its latest slot.
pub fn policy() -> Value {
    json!({
        "policy_id": "pl-5a0e7c91d2b34f68a0c4",
        "name": "nightly",
        "state": "active",
        "interval_hours": null,
        "interval_days": 1,
        "start_time": "2026-11-01T02:00:00Z",
        "retention_days": 7,
        "destination_region": "us-west-2",
        "destination_retention_days": 30,
        "targets": ["si-demo"],
        "volume_ids": [],
        "next_run_at": "2026-11-21T02:00:00Z",
        "last_run": {
            "slot": "2026-11-20T02:00:00Z",
            "ran_at": "2026-11-20T02:00:41Z",
            "status": "Succeeded",
            "cause": null,
            "skipped": null,
            "targets": [
                {
                    "service_instance_id": "si-demo",
                    "backup_id": "bk-9a8b7c6d5e4f40312a0b",
                    "error": null
                }
            ]
        },
        "created_at": "2026-10-31T17:12:03Z",
        "updated_at": "2026-11-20T02:00:41Z",
        "owners": ["arn:aws:sts::123456789012:assumed-role/ops/alice"],
        "changes": [
            {"what": "create", "by": "arn:aws:sts::123456789012:assumed-role/ops/alice", "at": "2026-10-31T17:12:03Z"},
            {"what": "attach si-demo", "by": "arn:aws:sts::123456789012:assumed-role/ops/alice", "at": "2026-10-31T17:12:03Z"}
        ],
        "version": 21
    })
}
