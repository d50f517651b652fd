//! What a backup request asks for: validated before anything is written, then turned into
//! the items of the point from what discovery found.

use chrono::Duration;
use serde::Deserialize;

use crate::cloud::Inventory;
use crate::error::{Error, Result};
use crate::ids::PolicyId;
use crate::model::{BackupItem, ResourceKind, Selection, SkippedResource, Timestamp, Trigger};
use crate::validate::{self, MAX_INSTANCES_PER_BACKUP};

/// Body of `POST /service-instances/{id}/backups`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    pub client_token: Option<String>,
    pub instance_ids: Option<Vec<String>>,
    pub volume_ids: Option<Vec<String>>,
    pub retention_days: Option<u32>,
    pub never_expire: Option<bool>,
    pub destination_region: Option<String>,
    /// Retention of the replicas in the destination region; defaults to the point's.
    pub destination_retention_days: Option<u32>,
}

/// Who asks for a backup besides a user: a policy run or an in-place restore.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupOrigin {
    pub trigger: Trigger,
    pub policy_id: Option<PolicyId>,
}

impl BackupOrigin {
    pub fn manual() -> Self {
        Self { trigger: Trigger::Manual, policy_id: None }
    }
}

/// A validated backup request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BackupPlan {
    pub(crate) selection: Selection,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) replication: Option<(String, Option<Timestamp>)>,
}

impl BackupRequest {
    pub(crate) fn validate(
        &self,
        home_region: &str,
        default_retention_days: u32,
        now: Timestamp,
    ) -> Result<BackupPlan> {
        if let Some(token) = &self.client_token {
            validate::identifier("client_token", token)?;
        }
        let instance_ids = self.instance_ids.clone().unwrap_or_default();
        if instance_ids.len() > MAX_INSTANCES_PER_BACKUP {
            return Err(Error::bad_request(
                "TooManyInstances",
                format!(
                    "instance_ids: {} instances given; at most {MAX_INSTANCES_PER_BACKUP} can be backed up in one request",
                    instance_ids.len()
                ),
            ));
        }
        for id in &instance_ids {
            validate::prefixed_id("instance_ids", "i", id)?;
        }
        let volume_ids = self.volume_ids.clone().unwrap_or_default();
        for id in &volume_ids {
            validate::prefixed_id("volume_ids", "vol", id)?;
        }
        let never_expire = self.never_expire.unwrap_or(false);
        let expires_at = match (self.retention_days, never_expire) {
            (Some(_), true) => {
                return Err(Error::bad_request(
                    "InvalidRetention",
                    "retention_days and never_expire cannot be given together",
                ))
            }
            (None, true) => None,
            (days, false) => {
                let days = days.unwrap_or(default_retention_days);
                validate::retention_days("retention_days", days)?;
                Some(now + Duration::days(days.into()))
            }
        };
        let replication = match &self.destination_region {
            None if self.destination_retention_days.is_some() => {
                return Err(Error::bad_request("NoDestinationRegion", "No destination region is specified."))
            }
            None => None,
            Some(region) => {
                validate::region("destination_region", region)?;
                if region == home_region {
                    return Err(Error::bad_request(
                        "InvalidRegion",
                        format!("destination_region: '{region}' is the region of the service instance itself"),
                    ));
                }
                let replica_expiry = match self.destination_retention_days {
                    Some(days) => {
                        validate::retention_days("destination_retention_days", days)?;
                        Some(now + Duration::days(days.into()))
                    }
                    None => expires_at,
                };
                Some((region.clone(), replica_expiry))
            }
        };
        Ok(BackupPlan { selection: Selection { instance_ids, volume_ids }, expires_at, replication })
    }
}

/// The items a backup will hold (the selected instances' volumes, then the databases) and
/// what it leaves out: members of DB clusters, and — when the selection may be stale (a
/// policy's) — selected disks no longer attached, instead of refusing the backup.
pub(crate) fn plan_items(
    inventory: &Inventory,
    selection: &Selection,
    service_instance_id: &str,
    selection_may_be_stale: bool,
) -> Result<(Vec<BackupItem>, Vec<SkippedResource>)> {
    for id in &selection.instance_ids {
        if !inventory.instances.iter().any(|i| &i.instance_id == id) {
            return Err(Error::not_found("instance", format!("{id} (not in service instance {service_instance_id})")));
        }
    }
    let mut skipped = Vec::new();
    for id in &selection.volume_ids {
        if !inventory.instances.iter().flat_map(|i| &i.volumes).any(|v| &v.volume_id == id) {
            if !selection_may_be_stale {
                return Err(Error::not_found(
                    "volume",
                    format!("{id} (not attached in service instance {service_instance_id})"),
                ));
            }
            skipped.push(SkippedResource {
                resource_id: id.clone(),
                kind: ResourceKind::Volume,
                reason: format!("selected, but not attached in service instance {service_instance_id}"),
            });
        }
    }
    let instances: Vec<_> = inventory
        .instances
        .iter()
        .filter(|i| selection.instance_ids.is_empty() || selection.instance_ids.contains(&i.instance_id))
        .filter(|i| {
            selection.volume_ids.is_empty() || i.volumes.iter().any(|v| selection.volume_ids.contains(&v.volume_id))
        })
        .collect();
    if instances.len() > MAX_INSTANCES_PER_BACKUP {
        return Err(Error::bad_request(
            "TooManyInstances",
            format!(
                "service instance {service_instance_id} has {} instances; at most {MAX_INSTANCES_PER_BACKUP} can be backed up in one request (choose them with instance_ids)",
                instances.len()
            ),
        ));
    }
    let mut items = Vec::new();
    for instance in instances {
        for volume in &instance.volumes {
            if !selection.volume_ids.is_empty() && !selection.volume_ids.contains(&volume.volume_id) {
                continue;
            }
            let mut item = volume_item(
                &volume.volume_id,
                &instance.instance_id,
                &volume.device,
                &instance.availability_zone,
                volume.size_gib,
            );
            item.volume_settings = Some(volume.settings.clone());
            // The instance's own configuration goes with its root volume: an instance can be
            // launched again from the point only with its root.
            if instance.settings.root_device_name.as_deref() == Some(volume.device.as_str()) {
                item.instance_settings = Some(instance.settings.clone());
            }
            items.push(item);
        }
    }
    for db in &inventory.databases {
        if let Some(cluster) = &db.cluster_id {
            skipped.push(SkippedResource {
                resource_id: db.db_id.clone(),
                kind: ResourceKind::Database,
                reason: format!(
                    "a member of DB cluster {cluster} (Aurora or Multi-AZ DB cluster): RDS snapshots only the \
                     whole cluster (CreateDBClusterSnapshot), which snapnest does not back up yet"
                ),
            });
            continue;
        }
        let mut item = BackupItem::new(&db.db_id, ResourceKind::Database);
        item.availability_zone = db.availability_zone.clone();
        item.database_settings = Some(db.settings.clone());
        items.push(item);
    }
    if items.is_empty() && skipped.is_empty() {
        return Err(Error::not_found(
            "service instance",
            format!("{service_instance_id} (no instance, volume or database carries its tag)"),
        ));
    }
    if items.is_empty() {
        let why: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.resource_id, s.reason)).collect();
        return Err(Error::conflict(
            "NothingToBackUp",
            format!("service instance {service_instance_id} has nothing snapnest can back up ({})", why.join("; ")),
        ));
    }
    Ok((items, skipped))
}

fn volume_item(volume_id: &str, instance_id: &str, device: &str, availability_zone: &str, size_gib: u64) -> BackupItem {
    let mut item = BackupItem::new(volume_id, ResourceKind::Volume);
    item.instance_id = Some(instance_id.to_owned());
    item.device = Some(device.to_owned());
    item.availability_zone = Some(availability_zone.to_owned());
    item.size_bytes = size_gib << 30;
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn requests_are_validated_before_anything_happens() {
        let now = Utc::now();
        let ok = |r: BackupRequest| r.validate("us-east-1", 7, now);
        let plan = ok(BackupRequest::default()).unwrap();
        assert_eq!(plan.expires_at, Some(now + Duration::days(7)));
        assert_eq!(ok(BackupRequest { never_expire: Some(true), ..Default::default() }).unwrap().expires_at, None);

        let too_many = BackupRequest {
            instance_ids: Some((0..100).map(|n| format!("i-{n:08x}")).collect()),
            ..Default::default()
        };
        assert!(matches!(ok(too_many), Err(Error::BadRequest { code: "TooManyInstances", .. })));
        let ninety_nine =
            BackupRequest { instance_ids: Some((0..99).map(|n| format!("i-{n:08x}")).collect()), ..Default::default() };
        assert!(ok(ninety_nine).is_ok());
        for bad in [
            BackupRequest { retention_days: Some(0), ..Default::default() },
            BackupRequest { retention_days: Some(65_537), ..Default::default() },
            BackupRequest { retention_days: Some(3), never_expire: Some(true), ..Default::default() },
            BackupRequest { destination_region: Some("mars-1".into()), ..Default::default() },
            BackupRequest { destination_region: Some("us-east-1".into()), ..Default::default() },
            BackupRequest { destination_retention_days: Some(3), ..Default::default() },
            BackupRequest { instance_ids: Some(vec!["vol-123".into()]), ..Default::default() },
            BackupRequest { client_token: Some("has space".into()), ..Default::default() },
        ] {
            assert!(matches!(ok(bad.clone()), Err(Error::BadRequest { .. })), "{bad:?}");
        }
        let replicated = ok(BackupRequest {
            destination_region: Some("us-west-2".into()),
            destination_retention_days: Some(30),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(replicated.replication, Some(("us-west-2".into(), Some(now + Duration::days(30)))));
    }

    fn inventory() -> Inventory {
        use crate::cloud::{AttachedVolume, Database, Instance, InstanceState};
        let volume = |id: &str, device: &str| AttachedVolume {
            volume_id: id.into(),
            device: device.into(),
            size_gib: 8,
            settings: Default::default(),
        };
        let database = |id: &str, cluster: Option<&str>| Database {
            db_id: id.into(),
            engine: "mysql".into(),
            status: "available".into(),
            availability_zone: None,
            settings: Default::default(),
            cluster_id: cluster.map(str::to_owned),
        };
        Inventory {
            instances: vec![Instance {
                instance_id: "i-1".into(),
                state: InstanceState::Running,
                availability_zone: "us-east-1a".into(),
                volumes: vec![volume("vol-root", "/dev/xvda"), volume("vol-data", "/dev/xvdb")],
                settings: Default::default(),
            }],
            databases: vec![database("orders", None), database("orders-aurora-1", Some("orders-aurora"))],
            owners: Default::default(),
        }
    }

    #[test]
    fn a_db_cluster_member_is_left_out_with_its_cause_and_the_rest_is_backed_up() {
        // GIVEN a service instance with a plain database and a member of an Aurora cluster
        // WHEN its backup is planned
        let (items, skipped) = plan_items(&inventory(), &Selection::default(), "si-1", false).unwrap();
        // THEN the volumes and the plain database are items, the member is skipped saying why
        let ids: Vec<&str> = items.iter().map(|i| i.resource_id.as_str()).collect();
        assert_eq!(ids, vec!["vol-root", "vol-data", "orders"]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].resource_id, "orders-aurora-1");
        assert!(skipped[0].reason.contains("DB cluster orders-aurora"), "{}", skipped[0].reason);
    }

    #[test]
    fn a_policys_disk_no_longer_attached_is_skipped_but_a_users_is_a_404() {
        // GIVEN a selection of one attached disk and one that is gone
        let selection = Selection { instance_ids: vec![], volume_ids: vec!["vol-data".into(), "vol-gone".into()] };
        // WHEN a policy's backup plans it THEN the attached one is backed up, the gone one skipped
        let (items, skipped) = plan_items(&inventory(), &selection, "si-1", true).unwrap();
        let ids: Vec<&str> = items.iter().map(|i| i.resource_id.as_str()).collect();
        assert_eq!(ids, vec!["vol-data", "orders"], "only the selected disk, and the database");
        assert!(skipped.iter().any(|s| s.resource_id == "vol-gone" && s.reason.contains("not attached")));
        // WHEN a user asks for it THEN a 404 names the volume
        let refused = plan_items(&inventory(), &selection, "si-1", false);
        assert!(matches!(&refused, Err(Error::NotFound { .. })), "{refused:?}");
    }
}
