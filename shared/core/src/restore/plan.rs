//! What a restore will do, decided before it does anything: which resources it brings
//! back from which snapshots ([`items_of`], from the backup point and the request alone),
//! and — in place — what each of them replaces now ([`against`], from what the cloud
//! reports). [`RestorePlan`] is that decision as a user reads it: the dry run's answer.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::cloud::{DatabaseSettings, Instance, VolumeSettings};
use crate::error::{Error, Result};
use crate::ids::{BackupId, RestoreId};
use crate::model::{
    BackupRecord, OnFailure, ResourceKind, RestoreItem, RestoreMode, RestoreRecord, RestoreStep, Timestamp,
};
use crate::status::{ItemStatus, JobStatus};
use crate::validate;

use super::machine::{database_ids, instance_ids};
use super::RestoreRequest;

/// What the cloud holds now of the resources an in-place restore replaces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    /// The point's instances, with the volumes at their devices; absent = no longer exists.
    pub instances: HashMap<String, Instance>,
    /// The point's databases that exist under their ids.
    pub databases: HashSet<String>,
}

/// A restore as it will run: the answer to a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The id the restore gets if it is started now from this plan (the temporary and kept
    /// database names carry its last eight characters).
    pub restore_id: RestoreId,
    pub backup_id: BackupId,
    pub service_instance_id: String,
    pub mode: RestoreMode,
    pub region: String,
    pub safety_backup: bool,
    pub on_failure: OnFailure,
    /// In place: the instances that run now and will be stopped, then started again.
    pub stop_instances: Vec<String>,
    pub volumes: Vec<PlannedVolume>,
    pub databases: Vec<PlannedDatabase>,
    /// In place: replaced volumes and databases are kept at least until then.
    pub replaced_kept_until: Option<Timestamp>,
    /// Resources of the point this restore leaves as they are, and why.
    pub skipped: Vec<SkippedResource>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedVolume {
    /// The volume the backup was taken of.
    pub source_volume_id: String,
    pub snapshot_id: String,
    pub size_bytes: u64,
    pub availability_zone: Option<String>,
    /// In place: where the new volume goes.
    pub instance_id: Option<String>,
    pub device: Option<String>,
    /// In place: the volume at that device now, detached and kept (null: the device is empty).
    pub replaces_volume_id: Option<String>,
    /// How the new volume is made (type, IOPS, encryption…) and whether it goes with its
    /// instance: the backed-up volume's configuration.
    pub settings: Option<VolumeSettings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedDatabase {
    pub db_id: String,
    pub snapshot_id: String,
    /// The id the snapshot is restored under (in place: until the swap).
    pub restored_as: String,
    /// In place: the id the current database is renamed to and kept under (null: no
    /// database holds the id now).
    pub current_renamed_to: Option<String>,
    /// The id the restored database ends with.
    pub final_id: String,
    /// Its class, network, groups, Multi-AZ…: the backed-up database's configuration.
    pub settings: Option<DatabaseSettings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedResource {
    pub resource_id: String,
    pub kind: ResourceKind,
    pub reason: String,
}

impl RestorePlan {
    /// The plan of a restore record not started yet, built by [`against`] from `current`.
    pub fn of(record: &RestoreRecord, current: &Current, backup: &BackupRecord, kept_until: Timestamp) -> RestorePlan {
        let in_place = record.mode == RestoreMode::InPlace;
        let running =
            |id: &String| current.instances.get(id).is_some_and(|i| i.state == crate::cloud::InstanceState::Running);
        let mut volumes = Vec::new();
        let mut databases = Vec::new();
        for item in &record.items {
            let snapshot_id = item.snapshot_id.clone().unwrap_or_default();
            match item.kind {
                ResourceKind::Volume => volumes.push(PlannedVolume {
                    source_volume_id: item.resource_id.clone(),
                    snapshot_id,
                    size_bytes: item.size_bytes,
                    availability_zone: item.availability_zone.clone(),
                    instance_id: in_place.then(|| item.instance_id.clone()).flatten(),
                    device: in_place.then(|| item.device.clone()).flatten(),
                    replaces_volume_id: item.replaced_resource_id.clone(),
                    settings: item.volume_settings.clone(),
                }),
                ResourceKind::Database => {
                    let (original, restored, _) = database_ids(record, &item.resource_id);
                    databases.push(PlannedDatabase {
                        db_id: item.resource_id.clone(),
                        snapshot_id,
                        final_id: if in_place { original } else { restored.clone() },
                        restored_as: restored,
                        current_renamed_to: item.replaced_resource_id.clone(),
                        settings: item.database_settings.clone(),
                    })
                }
            }
        }
        RestorePlan {
            restore_id: record.restore_id.clone(),
            backup_id: record.backup_id.clone(),
            service_instance_id: record.service_instance_id.clone(),
            mode: record.mode,
            region: record.region.clone(),
            safety_backup: record.safety_backup,
            on_failure: record.on_failure,
            stop_instances: if in_place {
                instance_ids(&record.items).into_iter().filter(running).collect()
            } else {
                Vec::new()
            },
            volumes,
            databases,
            replaced_kept_until: in_place.then_some(kept_until),
            skipped: skipped_of(backup, record),
        }
    }
}

/// In place: fills in what each item replaces now — the volume at its device, the id its
/// database will be kept under — from what the cloud reports.
pub fn against(record: &mut RestoreRecord, current: &Current) {
    if record.mode != RestoreMode::InPlace {
        return;
    }
    let names: Vec<(String, String, String)> =
        record.items.iter().map(|i| database_ids(record, &i.resource_id)).collect();
    for (item, (original, _, old)) in record.items.iter_mut().zip(names) {
        item.replaced_resource_id = match item.kind {
            ResourceKind::Volume => {
                let (instance_id, device) = (item.instance_id.as_deref(), item.device.as_deref());
                current
                    .instances
                    .get(instance_id.unwrap_or_default())
                    .and_then(|i| i.volumes.iter().find(|v| Some(v.device.as_str()) == device))
                    .map(|v| v.volume_id.clone())
            }
            ResourceKind::Database => current.databases.contains(&original).then_some(old),
        };
    }
}

/// The point's resources a restore does not bring back, and why.
fn skipped_of(backup: &BackupRecord, record: &RestoreRecord) -> Vec<SkippedResource> {
    let copied = |b: &crate::model::BackupItem| {
        backup
            .replication
            .as_ref()
            .is_some_and(|r| r.items.iter().any(|c| c.resource_id == b.resource_id && c.replica_snapshot_id.is_some()))
    };
    backup
        .items
        .iter()
        .filter(|b| !record.items.iter().any(|i| i.resource_id == b.resource_id))
        .map(|b| SkippedResource {
            resource_id: b.resource_id.clone(),
            kind: b.kind,
            reason: if b.released {
                "its snapshot is used by something else and no longer managed by snapnest".to_owned()
            } else if b.status == ItemStatus::Succeeded && record.mode == RestoreMode::DisasterRecovery && !copied(b) {
                "its snapshot has no completed copy in the destination region".to_owned()
            } else if b.status == ItemStatus::Succeeded {
                "not among the resource_ids asked for: it stays as it is now".to_owned()
            } else {
                format!(
                    "the backup has no snapshot of it ({}): it stays as it is now",
                    b.error.clone().unwrap_or_else(|| format!("{:?}", b.status))
                )
            },
        })
        .collect()
}

/// The region a restore works in and its items: one per succeeded snapshot of the point
/// (in the destination region's copy for a disaster recovery). Refused, with nothing
/// written, for a point that cannot be restored as asked.
pub fn items_of(backup: &BackupRecord, request: &RestoreRequest) -> Result<(String, Vec<RestoreItem>)> {
    let backup_id = &backup.backup_id;
    if !backup.status.is_restorable() {
        return Err(Error::conflict(
            "BackupNotRestorable",
            format!(
                "backup {backup_id} is {}; only a Succeeded or PartiallyFailed point can be restored",
                backup.status.as_str()
            ),
        ));
    }
    if let Some(since) = backup.expiring_since {
        return Err(Error::expiring(backup_id, since));
    }
    if backup.damaged {
        return Err(Error::conflict(
            "BackupDamaged",
            format!("backup {backup_id} is damaged: a snapshot of it was deleted outside snapnest"),
        ));
    }
    let selected = |id: &str| request.resource_ids.as_ref().is_none_or(|ids| ids.iter().any(|i| i == id));
    if let Some(ids) = &request.resource_ids {
        check_selection(backup, ids)?;
    }
    // A selection is complete when each selected resource has its snapshot (checked above).
    let in_place_of_part = request.mode == RestoreMode::InPlace
        && backup.status == JobStatus::PartiallyFailed
        && request.resource_ids.is_none();
    if in_place_of_part && request.allow_partial != Some(true) {
        // In place, a partial point would bring back some disks and databases and leave the
        // others at today's data: the user says so knowingly, or nothing happens.
        return Err(Error::conflict(
            "BackupIncomplete",
            format!(
                "backup {backup_id} is PartiallyFailed: it has no snapshot of {}; \
                 restore it in place with \"allow_partial\": true to leave those as they are now",
                missing(backup)
            ),
        ));
    }
    let (region, replicas) = match request.mode {
        RestoreMode::DisasterRecovery => {
            let replication =
                backup.replication.as_ref().filter(|r| r.status == JobStatus::Succeeded).ok_or_else(|| {
                    Error::conflict(
                        "NotReplicated",
                        format!("backup {backup_id} has no completed copy in another region"),
                    )
                })?;
            if request.region.as_ref().is_some_and(|r| *r != replication.region) {
                return Err(Error::bad_request(
                    "InvalidRegion",
                    format!(
                        "region: backup {backup_id} is replicated to {}, not {}",
                        replication.region,
                        request.region.as_deref().unwrap_or("")
                    ),
                ));
            }
            (replication.region.clone(), Some(replication))
        }
        _ => {
            if request.region.as_ref().is_some_and(|r| *r != backup.region) {
                return Err(Error::bad_request(
                    "InvalidRegion",
                    format!(
                        "region: only a disaster_recovery restore can target another region than {}",
                        backup.region
                    ),
                ));
            }
            (backup.region.clone(), None)
        }
    };
    let items: Vec<RestoreItem> = backup
        .items
        .iter()
        .filter(|i| i.status == ItemStatus::Succeeded && !i.released && selected(&i.resource_id))
        .map(|i| RestoreItem {
            resource_id: i.resource_id.clone(),
            kind: i.kind,
            snapshot_id: match replicas {
                Some(replication) => replication
                    .items
                    .iter()
                    .find(|r| r.resource_id == i.resource_id)
                    .and_then(|r| r.replica_snapshot_id.clone()),
                None => i.snapshot_id.clone(),
            },
            new_resource_id: None,
            status: ItemStatus::Pending,
            error: None,
            instance_id: i.instance_id.clone(),
            device: i.device.clone(),
            availability_zone: if replicas.is_some() {
                Some(format!("{region}a"))
            } else {
                i.availability_zone.clone()
            },
            replaced_resource_id: None,
            replaced_state: None,
            replaced_untagged: false,
            size_bytes: i.size_bytes,
            // In another region a customer-managed key and the network are the source's.
            volume_settings: i.volume_settings.clone().map(|v| match replicas {
                Some(_) => VolumeSettings { kms_key_id: None, ..v },
                None => v,
            }),
            database_settings: i.database_settings.as_ref().map(|d| match replicas {
                Some(_) => d.elsewhere(),
                None => d.clone(),
            }),
            step: RestoreStep::NotStarted,
        })
        .filter(|item| item.snapshot_id.is_some())
        .collect();
    if items.is_empty() {
        return Err(Error::conflict("BackupNotRestorable", format!("backup {backup_id} holds no usable snapshot")));
    }
    Ok((region, items))
}

/// `resource_ids`: at least one, each a resource of the point with a snapshot to restore.
fn check_selection(backup: &BackupRecord, ids: &[String]) -> Result<()> {
    let backup_id = &backup.backup_id;
    if ids.is_empty() {
        return Err(Error::bad_request(
            "InvalidRequest",
            "resource_ids: name at least one volume or database of the backup, or leave it out",
        ));
    }
    for id in ids {
        validate::identifier("resource_ids", id)?;
        let Some(item) = backup.items.iter().find(|i| i.resource_id == *id) else {
            return Err(Error::bad_request(
                "InvalidResourceId",
                format!("resource_ids: {id} is not in backup {backup_id}"),
            ));
        };
        if item.status != ItemStatus::Succeeded || item.released {
            return Err(Error::conflict(
                "BackupIncomplete",
                format!("backup {backup_id} has no snapshot of {id} to restore"),
            ));
        }
    }
    Ok(())
}

/// The resources a point has no usable snapshot of, named for a person (at most ten).
fn missing(backup: &BackupRecord) -> String {
    let ids: Vec<&str> =
        backup.items.iter().filter(|i| i.status != ItemStatus::Succeeded).map(|i| i.resource_id.as_str()).collect();
    match ids.len() {
        0..=10 => ids.join(", "),
        n => format!("{} and {} more", ids[..10].join(", "), n - 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::backup_point;
    use crate::model::{BackupItem, ReplicaItem, Replication, ResourceKind};

    fn request(mode: RestoreMode, region: Option<&str>) -> RestoreRequest {
        RestoreRequest {
            mode,
            safety_backup: None,
            region: region.map(str::to_owned),
            allow_partial: None,
            on_failure: None,
            dry_run: None,
            resource_ids: None,
            client_token: None,
        }
    }

    fn finished_point() -> BackupRecord {
        let mut done = BackupItem::new("vol-1", ResourceKind::Volume);
        done.status = ItemStatus::Succeeded;
        done.snapshot_id = Some("snap-1".into());
        done.availability_zone = Some("us-east-1b".into());
        let mut failed = BackupItem::new("vol-2", ResourceKind::Volume);
        failed.status = ItemStatus::Failed;
        BackupRecord { status: JobStatus::PartiallyFailed, ..backup_point(vec![done, failed]) }
    }

    #[test]
    fn a_restore_brings_back_each_succeeded_snapshot_in_its_zone() {
        // GIVEN a point with one succeeded and one failed item
        let point = finished_point();
        // WHEN a clone is planned
        let (region, items) = items_of(&point, &request(RestoreMode::Clone, None)).unwrap();
        // THEN it works in the point's region, on the succeeded snapshot only, in its zone
        assert_eq!(region, "us-east-1");
        assert_eq!(items.len(), 1);
        assert_eq!(
            (items[0].snapshot_id.as_deref(), items[0].availability_zone.as_deref()),
            (Some("snap-1"), Some("us-east-1b"))
        );
        assert_eq!(items[0].step, RestoreStep::NotStarted);
    }

    #[test]
    fn an_in_place_restore_of_a_partial_point_needs_allow_partial() {
        // GIVEN a PartiallyFailed point (vol-2 has no snapshot)
        let point = finished_point();
        // WHEN it is restored in place without allow_partial
        let refused = items_of(&point, &request(RestoreMode::InPlace, None));
        // THEN it is a 409 naming what is missing
        assert!(
            matches!(&refused, Err(Error::Conflict { code: "BackupIncomplete", message }) if message.contains("vol-2")),
            "{refused:?}"
        );
        // WHEN allow_partial is given THEN the succeeded item is planned
        let allowed = RestoreRequest { allow_partial: Some(true), ..request(RestoreMode::InPlace, None) };
        assert_eq!(items_of(&point, &allowed).unwrap().1.len(), 1);
        // AND a clone of it needs nothing more (the original is untouched)
        assert!(items_of(&point, &request(RestoreMode::Clone, None)).is_ok());
    }

    #[test]
    fn a_disaster_recovery_uses_the_copies_in_the_destination_region() {
        // GIVEN a point whose replication finished
        let mut point = finished_point();
        point.replication = Some(Replication {
            region: "us-west-2".into(),
            status: JobStatus::Succeeded,
            expires_at: None,
            items: vec![ReplicaItem {
                resource_id: "vol-1".into(),
                kind: ResourceKind::Volume,
                source_snapshot_id: "snap-1".into(),
                replica_snapshot_id: Some("snap-copy".into()),
                status: ItemStatus::Succeeded,
                progress: 100,
                error: None,
                attempts: 0,
            }],
            lease: None,
        });
        // WHEN a disaster recovery is planned THEN it restores the copy there
        let (region, items) = items_of(&point, &request(RestoreMode::DisasterRecovery, None)).unwrap();
        assert_eq!((region.as_str(), items[0].snapshot_id.as_deref()), ("us-west-2", Some("snap-copy")));
        // AND another region is a 400
        let elsewhere = items_of(&point, &request(RestoreMode::DisasterRecovery, Some("eu-west-1")));
        assert!(matches!(elsewhere, Err(Error::BadRequest { code: "InvalidRegion", .. })));
    }

    #[test]
    fn resource_ids_restore_just_those_and_a_partial_point_needs_nothing_more() {
        // GIVEN a PartiallyFailed point (vol-1 has a snapshot, vol-2 none)
        let point = finished_point();
        // WHEN just vol-1 is restored in place THEN it is planned, without allow_partial
        let mut only = request(RestoreMode::InPlace, None);
        only.resource_ids = Some(vec!["vol-1".into()]);
        let (_, items) = items_of(&point, &only).unwrap();
        assert_eq!(items.iter().map(|i| i.resource_id.as_str()).collect::<Vec<_>>(), vec!["vol-1"]);
        // AND a resource without a snapshot is a 409, one not in the point a 400, none a 400
        for (ids, code) in
            [(vec!["vol-2"], "BackupIncomplete"), (vec!["vol-9"], "InvalidResourceId"), (vec![], "InvalidRequest")]
        {
            only.resource_ids = Some(ids.iter().map(|s| s.to_string()).collect());
            let refused = items_of(&point, &only).unwrap_err();
            assert!(
                matches!(&refused, Error::BadRequest { code: c, .. } | Error::Conflict { code: c, .. } if *c == code),
                "{ids:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_point_that_cannot_be_restored_is_refused() {
        // GIVEN a running point, a damaged one, and one never replicated
        let mut running = finished_point();
        running.status = JobStatus::Running;
        let mut damaged = finished_point();
        damaged.damaged = true;
        // WHEN each is planned THEN each is a 409 naming why
        for (point, mode, code) in [
            (running, RestoreMode::Clone, "BackupNotRestorable"),
            (damaged, RestoreMode::InPlace, "BackupDamaged"),
            (finished_point(), RestoreMode::DisasterRecovery, "NotReplicated"),
        ] {
            assert!(
                matches!(items_of(&point, &request(mode, None)), Err(Error::Conflict { code: c, .. }) if c == code)
            );
        }
    }
}
