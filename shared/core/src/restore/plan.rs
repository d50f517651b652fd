//! What a restore will do, decided before it does anything: which resources it brings
//! back from which snapshots ([`items_of`], from the backup point and the request alone),
//! and — in place — what each of them replaces now ([`against`], from what the cloud
//! reports). [`RestorePlan`] is that decision as a user reads it: the dry run's answer.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::cloud::{DatabaseSettings, Instance, InstanceSettings, VolumeSettings};
use crate::error::{Error, Result};
use crate::ids::{BackupId, RestoreId};
use crate::model::{
    BackupItem, BackupRecord, CloneTarget, OnFailure, ResourceKind, RestoreItem, RestoreMode, RestoreRecord,
    RestoreStep, RestoredInstance, SkippedResource, Timestamp,
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
    /// Clone and disaster recovery: the instances launched from the point, each from its
    /// volumes' snapshots (the volumes are listed in `volumes` too).
    #[serde(default)]
    pub instances: Vec<PlannedInstance>,
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
pub struct PlannedInstance {
    /// The backed-up instance.
    pub source_instance_id: String,
    /// The volumes it is launched with, root first.
    pub volume_ids: Vec<String>,
    /// Its type, subnet, security groups, profile, key pair and boot settings.
    pub settings: InstanceSettings,
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
            instances: record
                .instances
                .iter()
                .map(|launch| PlannedInstance {
                    source_instance_id: launch.instance_id.clone(),
                    volume_ids: launch_devices(record, launch).into_iter().map(|i| i.resource_id.clone()).collect(),
                    settings: launch.settings.clone(),
                })
                .collect(),
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

/// The volume items an instance is launched with, its root first.
pub fn launch_devices<'a>(record: &'a RestoreRecord, launch: &RestoredInstance) -> Vec<&'a RestoreItem> {
    let root = launch.settings.root_device_name.as_deref();
    let mut items: Vec<&RestoreItem> = record
        .items
        .iter()
        .filter(|i| i.kind == ResourceKind::Volume && i.instance_id.as_deref() == Some(launch.instance_id.as_str()))
        .collect();
    items.sort_by_key(|i| (i.device.as_deref() != root, i.device.clone()));
    items
}

/// Clone and disaster recovery: where the restored resources go. Fills in what the request
/// names for the destination (the databases' network, the loose volumes' zone) and answers
/// the instances to launch; refused with a 400 naming the field for what cannot be done.
pub fn destination(
    backup: &BackupRecord,
    request: &RestoreRequest,
    region: &str,
    items: &mut [RestoreItem],
) -> Result<Vec<RestoredInstance>> {
    let given = [
        ("target", request.target.is_some()),
        ("instance_type", request.instance_type.is_some()),
        ("subnet_id", request.subnet_id.is_some()),
        ("security_group_ids", request.security_group_ids.is_some()),
        ("key_name", request.key_name.is_some()),
        ("availability_zone", request.availability_zone.is_some()),
        ("db_subnet_group", request.db_subnet_group.is_some()),
        ("db_security_group_ids", request.db_security_group_ids.is_some()),
    ];
    if request.mode == RestoreMode::InPlace {
        if let Some((field, _)) = given.iter().find(|(_, given)| *given) {
            return Err(Error::bad_request(
                "InvalidRequest",
                format!(
                    "{field}: only for a clone or a disaster_recovery restore; in place, every resource keeps its own"
                ),
            ));
        }
        return Ok(Vec::new());
    }
    check_destination_fields(request, region)?;
    let elsewhere = request.mode == RestoreMode::DisasterRecovery;
    for item in items.iter_mut().filter(|i| i.kind == ResourceKind::Database) {
        let settings = item.database_settings.get_or_insert_with(Default::default);
        if let Some(group) = &request.db_subnet_group {
            settings.subnet_group = Some(group.clone());
        }
        if let Some(groups) = &request.db_security_group_ids {
            settings.security_group_ids = groups.clone();
        }
        if elsewhere && settings.subnet_group.is_none() {
            return Err(Error::bad_request(
                "MissingParameter",
                format!(
                    "db_subnet_group: a disaster recovery restores {} into {region}'s network; name a DB subnet group there",
                    item.resource_id
                ),
            ));
        }
    }
    let mut instance_ids: Vec<String> = items.iter().filter_map(|i| i.instance_id.clone()).collect();
    instance_ids.sort();
    instance_ids.dedup();
    let launchable: Vec<(String, std::result::Result<InstanceSettings, String>)> =
        instance_ids.iter().map(|id| (id.clone(), launchable(backup, items, id))).collect();
    let target = request.target.unwrap_or(if launchable.iter().all(|(_, l)| l.is_ok()) {
        CloneTarget::Instances
    } else {
        CloneTarget::Volumes
    });
    if target == CloneTarget::Volumes {
        for (field, given) in &given[1..5] {
            if *given {
                return Err(Error::bad_request(
                    "InvalidRequest",
                    format!("{field}: only for launched instances (\"target\": \"instances\")"),
                ));
            }
        }
        let volumes = items.iter().any(|i| i.kind == ResourceKind::Volume);
        match &request.availability_zone {
            Some(zone) => {
                for item in items.iter_mut().filter(|i| i.kind == ResourceKind::Volume) {
                    item.availability_zone = Some(zone.clone());
                }
            }
            None if elsewhere && volumes => {
                return Err(Error::bad_request(
                    "MissingParameter",
                    format!("availability_zone: a disaster recovery makes the volumes in {region}; name a zone there"),
                ))
            }
            None => {}
        }
        return Ok(Vec::new());
    }
    if request.availability_zone.is_some() {
        return Err(Error::bad_request(
            "InvalidRequest",
            "availability_zone: launched instances go where their subnet is; it is for \"target\": \"volumes\"",
        ));
    }
    let mut missing = Vec::new();
    if elsewhere && !instance_ids.is_empty() {
        for (field, given) in &given[1..4] {
            if !*given {
                missing.push(*field);
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::bad_request(
            "MissingParameter",
            format!(
                "{}: a disaster recovery launches the instances in {region}'s network; name them there \
                 (or \"target\": \"volumes\" for the disks alone)",
                missing.join(", ")
            ),
        ));
    }
    let mut launches = Vec::new();
    for (instance_id, settings) in launchable {
        let settings = settings.map_err(|why| {
            Error::bad_request(
                "InvalidTarget",
                format!(
                    "target: instance {instance_id} cannot be launched again: {why}; \
                     \"target\": \"volumes\" clones its disks alone"
                ),
            )
        })?;
        let mut settings = if elsewhere { settings.elsewhere() } else { settings };
        if let Some(instance_type) = &request.instance_type {
            settings.instance_type = Some(instance_type.clone());
        }
        if let Some(subnet) = &request.subnet_id {
            settings.subnet_id = Some(subnet.clone());
        }
        if let Some(groups) = &request.security_group_ids {
            settings.security_group_ids = groups.clone();
        }
        if let Some(key) = &request.key_name {
            settings.key_name = Some(key.clone());
        }
        launches.push(RestoredInstance::new(&instance_id, settings));
    }
    Ok(launches)
}

/// An instance's configuration, if it can be launched again from the restore's items; else why not.
fn launchable(
    backup: &BackupRecord,
    items: &[RestoreItem],
    instance_id: &str,
) -> std::result::Result<InstanceSettings, String> {
    let root: Option<&BackupItem> =
        backup.items.iter().find(|i| i.instance_id.as_deref() == Some(instance_id) && i.instance_settings.is_some());
    let Some(root) = root else {
        return Err("the point holds no snapshot of its root volume with its configuration".into());
    };
    let settings = root.instance_settings.clone().unwrap_or_default();
    if !items.iter().any(|i| i.resource_id == root.resource_id) {
        return Err(format!("its root volume {} is not restored", root.resource_id));
    }
    if settings.is_windows() {
        return Err("it runs Windows, and an image registered from snapshots does not boot Windows".into());
    }
    Ok(settings)
}

/// The formats of what the request names for the destination.
fn check_destination_fields(request: &RestoreRequest, region: &str) -> Result<()> {
    if let Some(instance_type) = &request.instance_type {
        let ok = instance_type.len() <= 64
            && instance_type.split_once('.').is_some_and(|(family, size)| !family.is_empty() && !size.is_empty())
            && instance_type.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'));
        if !ok {
            return Err(Error::bad_request(
                "InvalidParameterValue",
                format!("instance_type: '{instance_type}' is not an instance type (like m7g.large)"),
            ));
        }
    }
    if let Some(subnet) = &request.subnet_id {
        validate::prefixed_id("subnet_id", "subnet", subnet)?;
    }
    for (field, groups) in
        [("security_group_ids", &request.security_group_ids), ("db_security_group_ids", &request.db_security_group_ids)]
    {
        if let Some(groups) = groups {
            if groups.is_empty() {
                return Err(Error::bad_request("InvalidParameterValue", format!("{field}: name at least one group")));
            }
            for group in groups {
                validate::prefixed_id(field, "sg", group)?;
            }
        }
    }
    if let Some(key) = &request.key_name {
        if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err(Error::bad_request(
                "InvalidParameterValue",
                "key_name: 1 to 255 printable ASCII characters".to_owned(),
            ));
        }
    }
    if let Some(zone) = &request.availability_zone {
        validate::identifier("availability_zone", zone)?;
        if !zone.starts_with(region) || zone.len() == region.len() {
            return Err(Error::bad_request(
                "InvalidParameterValue",
                format!("availability_zone: '{zone}' is not a zone of {region}"),
            ));
        }
    }
    if let Some(group) = &request.db_subnet_group {
        validate::identifier("db_subnet_group", group)?;
    }
    Ok(())
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
        .chain(
            backup
                .skipped
                .iter()
                .map(|s| SkippedResource { reason: format!("the backup did not take it: {}", s.reason), ..s.clone() }),
        )
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
            // In another region the request names the zone (`destination`).
            availability_zone: if replicas.is_some() { None } else { i.availability_zone.clone() },
            replaced_resource_id: None,
            replaced_state: None,
            replaced_untagged: false,
            size_bytes: i.size_bytes,
            // In another region a customer-managed key and the network are the source's.
            volume_settings: i.volume_settings.clone().map(|v| match replicas {
                Some(_) => VolumeSettings { kms_key_id: None, ..v },
                None => v,
            }),
            // In another region: the option group the copy was made with there (none: the
            // engine's default), the network named by the request (`destination`).
            database_settings: i.database_settings.as_ref().map(|d| match replicas {
                Some(replication) => DatabaseSettings {
                    option_group: replication
                        .items
                        .iter()
                        .find(|r| r.resource_id == i.resource_id)
                        .and_then(|r| r.option_group.clone()),
                    ..d.elsewhere()
                },
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
        RestoreRequest { region: region.map(str::to_owned), ..RestoreRequest::new(mode) }
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
                option_group: None,
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

    /// A point of one instance (root with its configuration, one data disk) and a database,
    /// copied to us-west-2.
    fn instance_point() -> BackupRecord {
        let volume = |id: &str, device: &str| BackupItem {
            instance_id: Some("i-1".into()),
            device: Some(device.into()),
            availability_zone: Some("us-east-1a".into()),
            snapshot_id: Some(format!("snap-{id}")),
            status: ItemStatus::Succeeded,
            ..BackupItem::new(id, ResourceKind::Volume)
        };
        let root = BackupItem {
            instance_settings: Some(InstanceSettings {
                instance_type: Some("m7g.large".into()),
                subnet_id: Some("subnet-0east".into()),
                security_group_ids: vec!["sg-0east".into()],
                iam_instance_profile: Some("arn:aws:iam::123456789012:instance-profile/app".into()),
                key_name: Some("east-key".into()),
                root_device_name: Some("/dev/xvda".into()),
                ..Default::default()
            }),
            ..volume("vol-root", "/dev/xvda")
        };
        let database = BackupItem {
            snapshot_id: Some("db-snap".into()),
            status: ItemStatus::Succeeded,
            database_settings: Some(DatabaseSettings { subnet_group: Some("east-db".into()), ..Default::default() }),
            ..BackupItem::new("orders", ResourceKind::Database)
        };
        let items = vec![root, volume("vol-data", "/dev/xvdb"), database];
        BackupRecord {
            status: JobStatus::Succeeded,
            replication: Some(crate::fixtures::replicated(&items, "us-west-2", "west")),
            ..backup_point(items)
        }
    }

    fn destination_of(
        point: &BackupRecord,
        request: &RestoreRequest,
    ) -> Result<(Vec<RestoreItem>, Vec<RestoredInstance>)> {
        let (region, mut items) = items_of(point, request)?;
        let launches = destination(point, request, &region, &mut items)?;
        Ok((items, launches))
    }

    fn refusal(outcome: Result<(Vec<RestoreItem>, Vec<RestoredInstance>)>) -> (&'static str, String) {
        match outcome {
            Err(Error::BadRequest { code, message }) => (code, message),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn a_clone_launches_the_instance_again_with_its_own_configuration_or_the_requests() {
        // GIVEN a point of one whole instance
        let point = instance_point();
        // WHEN it is cloned with no options THEN the instance is launched as it was
        let (_, launches) = destination_of(&point, &RestoreRequest::new(RestoreMode::Clone)).unwrap();
        assert_eq!(launches.len(), 1);
        assert_eq!(launches[0].settings.subnet_id.as_deref(), Some("subnet-0east"));
        assert_eq!(launches[0].settings.key_name.as_deref(), Some("east-key"));
        // WHEN the request names a type and a subnet THEN those are used, the rest kept
        let request = RestoreRequest {
            instance_type: Some("c7g.xlarge".into()),
            subnet_id: Some("subnet-0other".into()),
            ..RestoreRequest::new(RestoreMode::Clone)
        };
        let (_, launches) = destination_of(&point, &request).unwrap();
        let settings = &launches[0].settings;
        assert_eq!(
            (settings.instance_type.as_deref(), settings.subnet_id.as_deref(), settings.security_group_ids.as_slice()),
            (Some("c7g.xlarge"), Some("subnet-0other"), ["sg-0east".to_owned()].as_slice())
        );
    }

    #[test]
    fn a_disaster_recovery_needs_the_destinations_network_named() {
        // GIVEN a point copied to us-west-2
        let point = instance_point();
        // WHEN a disaster recovery names nothing THEN a 400 names every missing field
        let (code, message) = refusal(destination_of(&point, &RestoreRequest::new(RestoreMode::DisasterRecovery)));
        assert_eq!(code, "MissingParameter");
        assert!(message.contains("db_subnet_group"), "{message}");
        let request = RestoreRequest {
            db_subnet_group: Some("west-db".into()),
            ..RestoreRequest::new(RestoreMode::DisasterRecovery)
        };
        let (code, message) = refusal(destination_of(&point, &request));
        assert_eq!(code, "MissingParameter");
        assert!(message.starts_with("instance_type, subnet_id, security_group_ids:"), "{message}");
        // WHEN they are named THEN the instance is launched there, without the source
        // region's key pair, with its instance profile (IAM is global)
        let request = RestoreRequest {
            instance_type: Some("m7g.large".into()),
            subnet_id: Some("subnet-0west".into()),
            security_group_ids: Some(vec!["sg-0west".into()]),
            ..request
        };
        let (items, launches) = destination_of(&point, &request).unwrap();
        let settings = &launches[0].settings;
        assert_eq!(settings.subnet_id.as_deref(), Some("subnet-0west"));
        assert_eq!(settings.key_name, None);
        assert!(settings.iam_instance_profile.is_some());
        assert_eq!(items[0].snapshot_id.as_deref(), Some("snap-vol-root-west"), "from the copies");
        let database = items.iter().find(|i| i.kind == ResourceKind::Database).unwrap();
        assert_eq!(database.database_settings.as_ref().unwrap().subnet_group.as_deref(), Some("west-db"));
    }

    #[test]
    fn one_disk_alone_is_a_loose_volume_and_an_instance_needs_its_root() {
        // GIVEN a point of one instance
        let point = instance_point();
        let one_disk = |target| RestoreRequest {
            resource_ids: Some(vec!["vol-data".into()]),
            target,
            ..RestoreRequest::new(RestoreMode::Clone)
        };
        // WHEN one data disk is cloned THEN it is a loose volume, nothing is launched
        let (items, launches) = destination_of(&point, &one_disk(None)).unwrap();
        assert_eq!((items.len(), launches.len()), (1, 0));
        // WHEN it is asked for as an instance THEN a 400 says the root is missing
        let (code, message) = refusal(destination_of(&point, &one_disk(Some(CloneTarget::Instances))));
        assert_eq!(code, "InvalidTarget");
        assert!(message.contains("vol-root is not restored"), "{message}");
    }

    #[test]
    fn windows_instances_are_cloned_as_volumes_and_in_place_takes_no_destination() {
        // GIVEN a point of a Windows instance
        let mut point = instance_point();
        point.items[0].instance_settings.as_mut().unwrap().platform = Some("windows".into());
        // WHEN it is cloned THEN its disks are, and asking for the instance is a 400
        let (_, launches) = destination_of(&point, &RestoreRequest::new(RestoreMode::Clone)).unwrap();
        assert!(launches.is_empty());
        let request =
            RestoreRequest { target: Some(CloneTarget::Instances), ..RestoreRequest::new(RestoreMode::Clone) };
        assert!(refusal(destination_of(&point, &request)).1.contains("Windows"));
        // WHEN an in-place restore names a destination THEN a 400 names the field
        let request =
            RestoreRequest { subnet_id: Some("subnet-0abc".into()), ..RestoreRequest::new(RestoreMode::InPlace) };
        let (code, message) = refusal(destination_of(&point, &request));
        assert_eq!(code, "InvalidRequest");
        assert!(message.starts_with("subnet_id:"), "{message}");
        // WHEN a zone of another region is named THEN a 400
        let request = RestoreRequest {
            target: Some(CloneTarget::Volumes),
            availability_zone: Some("eu-west-1a".into()),
            ..RestoreRequest::new(RestoreMode::Clone)
        };
        assert!(refusal(destination_of(&point, &request)).1.contains("not a zone of us-east-1"));
    }
}
