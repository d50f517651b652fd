//! The AWS adapter of the [`Cloud`] port: EC2/EBS through `aws-sdk-ec2`, RDS through `aws-sdk-rds`.
//!
//! [`AwsProvider`] is built once per process from one `SdkConfig` (credentials, endpoint
//! and retry settings come from the SDK's own environment variables, so the same code talks
//! to AWS and to an emulator). It hands out an [`AwsCloud`] per region; the clients of a
//! region are built once and cached, since building one resolves endpoints and credentials.
//!
//! Everything AWS-specific stays here: the shapes of the calls, pagination and chunking of
//! id lists, and the translation of the SDK's errors into [`CloudError`] (in one function,
//! [`cloud_error`], so every call classifies throttling, transient failures and missing
//! resources the same way). Each call is traced with its region and operation; errors are
//! returned, not logged, because the caller decides what they mean and logs at its boundary.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types as ec2;
use aws_sdk_rds::types as rds;
use tokio::sync::Semaphore;
use tracing::Instrument;

use snapnest_core::cloud::*;

/// Calls in flight per API family (EC2, RDS) and region. AWS rate-limits per account and
/// region with a token bucket; a bounded fan-out keeps one busy invocation from draining it
/// for everyone else, and the SDK's adaptive retry handles what still gets throttled.
const PERMITS_PER_FAMILY: usize = 8;

/// Ids per EC2 describe call: EC2 accepts up to 200 values in one filter or id list.
const EC2_IDS_PER_CALL: usize = 200;

/// Snapshots per page of a filtered DescribeSnapshots (its MaxResults' most).
const SNAPSHOTS_PER_PAGE: i32 = 1000;

/// Ids per RDS describe call: RDS filters take fewer values than EC2's, 100 is safe.
const RDS_IDS_PER_CALL: usize = 100;

/// Error codes AWS uses for rate limiting across EC2 and RDS (and the SDK's common list).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "EC2ThrottledException",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "ProvisionedThroughputExceededException",
    // Snapshots of one volume started too close together: the same cure as throttling.
    "SnapshotCreationPerVolumeRateExceeded",
];

/// Error codes of server-side failures that a later attempt may not meet.
const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Every region's cloud on AWS, from one SDK configuration.
pub struct AwsProvider {
    home_region: String,
    home: Arc<AwsCloud>,
    regions: Arc<Regions>,
}

/// The shared configuration and the clients built from it so far, by region.
struct Regions {
    config: SdkConfig,
    clients: Mutex<HashMap<String, Arc<RegionClients>>>,
}

/// The EC2, EBS direct and RDS clients of one region and the bounds on their concurrent calls.
struct RegionClients {
    region: String,
    ec2: aws_sdk_ec2::Client,
    ebs: aws_sdk_ebs::Client,
    rds: aws_sdk_rds::Client,
    ec2_permits: Semaphore,
    rds_permits: Semaphore,
}

/// EC2, EBS and RDS of one AWS region.
///
/// It can reach the other regions' clients too: a copy is made by the destination region
/// but needs to read the source snapshot (its volume, its ARN) in the source region.
pub struct AwsCloud {
    here: Arc<RegionClients>,
    regions: Arc<Regions>,
}

impl AwsProvider {
    /// The clouds of every region from the process's one SDK configuration
    /// ([`crate::sdk_config`]); its region is the home region.
    pub fn new(config: &SdkConfig) -> AwsProvider {
        let home_region = config.region().map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
        let regions = Arc::new(Regions { config: config.clone(), clients: Mutex::new(HashMap::new()) });
        let home = Arc::new(AwsCloud { here: regions.clients(&home_region), regions: regions.clone() });
        AwsProvider { home_region, home, regions }
    }
}

impl CloudProvider for AwsProvider {
    fn home_region(&self) -> &str {
        &self.home_region
    }

    fn home(&self) -> Arc<dyn Cloud> {
        self.home.clone()
    }

    fn region(&self, region: &str) -> CloudResult<Arc<dyn Cloud>> {
        // The SDK would happily build a client for any string and fail on the first call with
        // a DNS error that looks transient; refuse a malformed name up front instead.
        if !snapnest_core::validate::is_region_name(region) {
            return Err(CloudError::Rejected {
                code: "InvalidRegion".into(),
                message: format!("'{region}' is not a region name (like us-west-2)"),
            });
        }
        Ok(Arc::new(AwsCloud { here: self.regions.clients(region), regions: self.regions.clone() }))
    }
}

impl Regions {
    /// The clients of `region`, built from the shared configuration on first use.
    fn clients(&self, region: &str) -> Arc<RegionClients> {
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let name = Region::new(region.to_owned());
                let ec2_config = aws_sdk_ec2::config::Builder::from(&self.config).region(name.clone()).build();
                let ebs_config = aws_sdk_ebs::config::Builder::from(&self.config).region(name.clone()).build();
                let rds_config = aws_sdk_rds::config::Builder::from(&self.config).region(name).build();
                Arc::new(RegionClients {
                    region: region.to_owned(),
                    ec2: aws_sdk_ec2::Client::from_conf(ec2_config),
                    ebs: aws_sdk_ebs::Client::from_conf(ebs_config),
                    rds: aws_sdk_rds::Client::from_conf(rds_config),
                    ec2_permits: Semaphore::new(PERMITS_PER_FAMILY),
                    rds_permits: Semaphore::new(PERMITS_PER_FAMILY),
                })
            })
            .clone()
    }
}

impl RegionClients {
    /// One EC2 call (or one paginated listing): bounded, traced, its error translated.
    async fn ec2<T, E, Fut>(
        &self,
        operation: &'static str,
        subject: &str,
        call: impl FnOnce(aws_sdk_ec2::Client) -> Fut,
    ) -> CloudResult<T>
    where
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.run(&self.ec2_permits, "ec2", operation, subject, call(self.ec2.clone())).await
    }

    /// One EBS direct API call, bounded with EC2's (the same service's quotas).
    async fn ebs<T, E, Fut>(
        &self,
        operation: &'static str,
        subject: &str,
        call: impl FnOnce(aws_sdk_ebs::Client) -> Fut,
    ) -> CloudResult<T>
    where
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.run(&self.ec2_permits, "ebs", operation, subject, call(self.ebs.clone())).await
    }

    /// One RDS call (or one paginated listing): bounded, traced, its error translated.
    async fn rds<T, E, Fut>(
        &self,
        operation: &'static str,
        subject: &str,
        call: impl FnOnce(aws_sdk_rds::Client) -> Fut,
    ) -> CloudResult<T>
    where
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.run(&self.rds_permits, "rds", operation, subject, call(self.rds.clone())).await
    }

    async fn run<T, E, Fut>(
        &self,
        permits: &Semaphore,
        service: &'static str,
        operation: &'static str,
        subject: &str,
        call: Fut,
    ) -> CloudResult<T>
    where
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let span = tracing::debug_span!("cloud_call", region = %self.region, service, operation);
        async {
            // The semaphores live as long as the clients and are never closed.
            let _permit = permits.acquire().await.expect("cloud call semaphore is never closed");
            let started = Instant::now();
            let outcome = call.await;
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                ok = outcome.is_ok(),
                "cloud call finished"
            );
            outcome.map_err(|error| cloud_error(subject, error))
        }
        .instrument(span)
        .await
    }

    /// The ARN of a DB snapshot: RDS tags and cross-region copies address snapshots by ARN.
    async fn db_snapshot_arn(&self, snapshot_id: &str) -> CloudResult<String> {
        Ok(self.db_snapshot(snapshot_id).await?.0)
    }

    /// A DB snapshot's ARN and whether it is encrypted.
    async fn db_snapshot(&self, snapshot_id: &str) -> CloudResult<(String, bool)> {
        let out = self
            .rds("DescribeDBSnapshots", snapshot_id, |c| {
                c.describe_db_snapshots().db_snapshot_identifier(snapshot_id).send()
            })
            .await?;
        out.db_snapshots()
            .iter()
            .find_map(|s| Some((s.db_snapshot_arn()?.to_owned(), s.encrypted().unwrap_or(false))))
            .ok_or_else(|| CloudError::NotFound(snapshot_id.to_owned()))
    }

    /// The ARN of a DB instance, for `AddTagsToResource` and `RemoveTagsFromResource`.
    async fn db_instance_arn(&self, db_id: &str) -> CloudResult<String> {
        let out = self
            .rds("DescribeDBInstances", db_id, |c| c.describe_db_instances().db_instance_identifier(db_id).send())
            .await?;
        out.db_instances()
            .iter()
            .find_map(|d| d.db_instance_arn())
            .map(str::to_owned)
            .ok_or_else(|| CloudError::NotFound(db_id.to_owned()))
    }

    /// Instances by id as EC2 describes them, leaving out ids EC2 does not know.
    async fn find_instances(&self, instance_ids: &[String]) -> CloudResult<Vec<ec2::Instance>> {
        let mut found = Vec::new();
        for chunk in instance_ids.chunks(EC2_IDS_PER_CALL) {
            // A filter on instance-id, unlike InstanceIds, does not fail the whole call
            // when one id is unknown.
            let reservations = self
                .ec2("DescribeInstances", "instances", |c| {
                    c.describe_instances()
                        .filters(filter("instance-id", chunk))
                        .into_paginator()
                        .items()
                        .send()
                        .try_collect()
                })
                .await?;
            found.extend(reservations.into_iter().flat_map(|r| r.instances.unwrap_or_default()));
        }
        Ok(found)
    }

    /// The port's view of instances EC2 described: state, AZ and the volumes at their devices.
    ///
    /// The devices come from each instance's `BlockDeviceMappings`. EC2 API Reference,
    /// `EbsInstanceBlockDevice` `Status`: attaching | attached | detaching | detached. A device
    /// is taken from the start of an attach until its detach has ended, so every status but
    /// `detached` counts. Mappings carry no size: one `DescribeVolumes` per 200 volumes adds it.
    async fn with_volumes<'a>(
        &self,
        subject: &str,
        described: impl IntoIterator<Item = &'a ec2::Instance>,
    ) -> CloudResult<Vec<Instance>> {
        let mut instances: Vec<Instance> = described
            .into_iter()
            .filter_map(|i| {
                let volumes = i
                    .block_device_mappings()
                    .iter()
                    .filter_map(|m| {
                        let ebs = m.ebs()?;
                        match ebs.status().map(|s| s.as_str()) {
                            Some("attaching" | "attached" | "detaching") => Some(AttachedVolume {
                                volume_id: ebs.volume_id()?.to_owned(),
                                device: m.device_name()?.to_owned(),
                                size_gib: 0,
                                settings: VolumeSettings {
                                    delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
                                    ..Default::default()
                                },
                            }),
                            _ => None,
                        }
                    })
                    .collect();
                Some(Instance {
                    instance_id: i.instance_id()?.to_owned(),
                    state: instance_state(i.state().and_then(|s| s.name())),
                    availability_zone: i.placement().and_then(|p| p.availability_zone()).unwrap_or_default().to_owned(),
                    volumes,
                    settings: instance_settings(i),
                })
            })
            .collect();

        let volume_ids: Vec<String> = instances.iter().flat_map(|i| &i.volumes).map(|v| v.volume_id.clone()).collect();
        let mut described: HashMap<String, (u64, VolumeSettings)> = HashMap::new();
        for chunk in volume_ids.chunks(EC2_IDS_PER_CALL) {
            let volumes = self
                .ec2("DescribeVolumes", subject, |c| {
                    c.describe_volumes()
                        .filters(filter("volume-id", chunk))
                        .into_paginator()
                        .items()
                        .send()
                        .try_collect()
                })
                .await?;
            described.extend(volumes.iter().filter_map(|v| {
                let settings = VolumeSettings {
                    volume_type: v.volume_type().map(|t| t.as_str().to_owned()),
                    iops: v.iops().map(|n| n.max(0) as u32),
                    throughput: v.throughput().map(|n| n.max(0) as u32),
                    encrypted: v.encrypted().unwrap_or(false),
                    kms_key_id: v.kms_key_id().map(str::to_owned),
                    multi_attach: v.multi_attach_enabled().unwrap_or(false),
                    delete_on_termination: false,
                };
                Some((v.volume_id()?.to_owned(), (v.size()?.max(0) as u64, settings)))
            }));
        }
        for instance in &mut instances {
            for volume in &mut instance.volumes {
                if let Some((size_gib, settings)) = described.get(&volume.volume_id) {
                    volume.size_gib = *size_gib;
                    // Delete-on-termination is the attachment's, read from the mapping above.
                    let delete_on_termination = volume.settings.delete_on_termination;
                    volume.settings = VolumeSettings { delete_on_termination, ..settings.clone() };
                }
            }
            instance.volumes.sort_by(|a, b| a.device.cmp(&b.device));
        }
        Ok(instances)
    }

    /// An instance to snapshot: `InstanceReleased` once it is terminated or shutting down.
    async fn instance_for_snapshot(&self, instance_id: &str) -> CloudResult<ec2::Instance> {
        let reservations = self
            .ec2("DescribeInstances", instance_id, |ec2| ec2.describe_instances().instance_ids(instance_id).send())
            .await?;
        let instance = reservations
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .cloned()
            .ok_or_else(|| CloudError::NotFound(instance_id.to_owned()))?;
        if matches!(
            instance_state(instance.state().and_then(|s| s.name())),
            InstanceState::Terminated | InstanceState::ShuttingDown
        ) {
            return Err(CloudError::InstanceReleased(instance_id.to_owned()));
        }
        Ok(instance)
    }

    /// One `CreateSnapshots`: a crash-consistent group of the instance's volumes `spec`
    /// selects, every tag on at creation (one tag specification for the group; each
    /// snapshot's own volume is its `VolumeId`), so there is no CreateTags per snapshot.
    async fn create_group(
        &self,
        instance_id: &str,
        spec: ec2::InstanceSpecification,
        tags: &Tags,
    ) -> CloudResult<Vec<StartedSnapshot>> {
        let created = self
            .ec2("CreateSnapshots", instance_id, |ec2| {
                ec2.create_snapshots()
                    .instance_specification(spec)
                    .set_tag_specifications(tag_specification(ec2::ResourceType::Snapshot, tags))
                    .description(format!("snapnest consistent group of {instance_id}"))
                    .send()
            })
            .await
            .map_err(|error| match error {
                CloudError::Rejected { code, message } if code == "UnsupportedOperation" => {
                    CloudError::GroupUnsupported(if message.is_empty() { code } else { message })
                }
                other => other,
            })?;
        Ok(created
            .snapshots()
            .iter()
            .filter_map(|s| {
                Some(StartedSnapshot { snapshot_id: s.snapshot_id()?.to_owned(), volume_id: s.volume_id()?.to_owned() })
            })
            .collect())
    }

    /// Turns a refused start/stop into `InstanceReleased` when an instance was terminated,
    /// as EC2 answers `IncorrectInstanceState` without saying which instance or why.
    async fn explain_refusal(&self, instance_ids: &[String], error: CloudError) -> CloudError {
        if !matches!(&error, CloudError::Rejected { code, .. } if code == "IncorrectInstanceState") {
            return error;
        }
        match self.find_instances(instance_ids).await {
            Ok(instances) => instances
                .iter()
                .find(|i| {
                    let state = instance_state(i.state().and_then(|s| s.name()));
                    matches!(state, InstanceState::Terminated | InstanceState::ShuttingDown)
                })
                .and_then(|i| i.instance_id())
                .map(|id| CloudError::InstanceReleased(id.to_owned()))
                .unwrap_or(error),
            Err(_) => error,
        }
    }

    /// EC2 `CreateTags`; nothing to do for no tags (EC2 rejects an empty tag list).
    async fn create_tags(&self, resource_id: &str, tags: &Tags) -> CloudResult<()> {
        if tags.is_empty() {
            return Ok(());
        }
        self.ec2("CreateTags", resource_id, |c| {
            c.create_tags().resources(resource_id).set_tags(Some(ec2_tags(tags))).send()
        })
        .await
        .map(drop)
    }

    /// RDS `AddTagsToResource` on an ARN.
    async fn add_rds_tags(&self, arn: &str, tags: &Tags) -> CloudResult<()> {
        if tags.is_empty() {
            return Ok(());
        }
        self.rds("AddTagsToResource", arn, |c| {
            c.add_tags_to_resource().resource_name(arn).set_tags(Some(rds_tags(tags))).send()
        })
        .await
        .map(drop)
    }
}

#[async_trait]
impl Cloud for AwsCloud {
    fn region(&self) -> &str {
        &self.here.region
    }

    async fn discover(&self, tag_key: &str, value: &str) -> CloudResult<Inventory> {
        let c = &self.here;
        // Terminated instances stay listed for about an hour; the state filter leaves them out.
        let reservations = c
            .ec2("DescribeInstances", value, |ec2| {
                ec2.describe_instances()
                    .filters(filter(format!("tag:{tag_key}"), [value]))
                    .filters(filter("instance-state-name", ["pending", "running", "stopping", "stopped"]))
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
            })
            .await?;
        let live: Vec<&ec2::Instance> = reservations
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| {
                let state = instance_state(i.state().and_then(|s| s.name()));
                !matches!(state, InstanceState::Terminated | InstanceState::ShuttingDown)
            })
            .collect();
        let mut owners: std::collections::BTreeSet<String> =
            live.iter().filter_map(|i| ec2_tag(i.tags(), tag::OWNER)).map(str::to_owned).collect();
        let instances = c.with_volumes(value, live).await?;

        // DescribeDBInstances has no tag filter: list them all and read each TagList.
        let db_instances = c
            .rds("DescribeDBInstances", value, |rds| {
                rds.describe_db_instances().into_paginator().items().send().try_collect()
            })
            .await?;
        let tagged: Vec<&rds::DbInstance> = db_instances
            .iter()
            .filter(|d| d.tag_list().iter().any(|t| t.key() == Some(tag_key) && t.value() == Some(value)))
            .collect();
        owners.extend(
            tagged
                .iter()
                .flat_map(|d| d.tag_list())
                .filter(|t| t.key() == Some(tag::OWNER))
                .filter_map(|t| t.value().map(str::to_owned)),
        );
        let databases = tagged
            .into_iter()
            .map(|d| Database {
                db_id: d.db_instance_identifier().unwrap_or_default().to_owned(),
                engine: d.engine().unwrap_or_default().to_owned(),
                status: d.db_instance_status().unwrap_or_default().to_owned(),
                availability_zone: d.availability_zone().map(str::to_owned),
                settings: database_settings(d),
                // RDS User Guide, "Creating a DB cluster snapshot": the instances of an Aurora
                // or Multi-AZ DB cluster are snapshotted as their cluster; CreateDBSnapshot
                // refuses them.
                cluster_id: d.db_cluster_identifier().map(str::to_owned),
            })
            .collect();
        Ok(Inventory { instances, databases, owners })
    }

    async fn snapshot_instance(
        &self,
        instance_id: &str,
        volumes: &VolumeSelection,
        tags: &Tags,
    ) -> CloudResult<Vec<StartedSnapshot>> {
        let spec = ec2::InstanceSpecification::builder().instance_id(instance_id);
        let wanted = match volumes {
            // Every attached volume: one call. EC2 snapshots what is attached when it is
            // asked, so a disk attached since discovery is in the group too.
            VolumeSelection::All => {
                let answer = self.here.create_group(instance_id, spec.exclude_boot_volume(false).build(), tags).await;
                return match answer {
                    Ok(started) if !started.is_empty() => Ok(started),
                    // Nothing snapshotted, or refused: a terminated instance is said so (EC2 may
                    // accept CreateSnapshots for one and snapshot nothing).
                    answer => match self.here.instance_for_snapshot(instance_id).await {
                        Err(CloudError::InstanceReleased(id)) => Err(CloudError::InstanceReleased(id)),
                        _ => answer,
                    },
                };
            }
            VolumeSelection::Only(wanted) => wanted,
        };
        // Chosen disks: the instance is read first for its root device and what is attached,
        // which the exclusion list needs.
        let instance = self.here.instance_for_snapshot(instance_id).await?;
        let root_device = instance.root_device_name();
        let attached: Vec<(&str, &str)> = instance
            .block_device_mappings()
            .iter()
            .filter_map(|m| Some((m.device_name()?, m.ebs()?.volume_id()?)))
            .collect();
        let chosen = |volume: &str| wanted.iter().any(|w| w == volume);
        if !attached.iter().any(|(_, volume)| chosen(volume)) {
            // Nothing selected is attached: there is no group to take.
            return Ok(Vec::new());
        }
        let is_root = |device: &str| Some(device) == root_device;
        let root_chosen = attached.iter().any(|(device, volume)| is_root(device) && chosen(volume));
        // The root volume cannot be named in ExcludeDataVolumeIds; it has its own flag.
        let excluded: Vec<String> = attached
            .iter()
            .filter(|(device, volume)| !is_root(device) && !chosen(volume))
            .map(|(_, volume)| (*volume).to_owned())
            .collect();
        let spec = spec
            .exclude_boot_volume(!root_chosen)
            .set_exclude_data_volume_ids((!excluded.is_empty()).then_some(excluded))
            .build();
        self.here.create_group(instance_id, spec, tags).await
    }

    async fn snapshot_volume(&self, volume_id: &str, tags: &Tags) -> CloudResult<StartedSnapshot> {
        let mut tags = tags.clone();
        tags.insert(tag::SOURCE_VOLUME.into(), volume_id.to_owned());
        let created = self
            .here
            .ec2("CreateSnapshot", volume_id, |ec2| {
                ec2.create_snapshot()
                    .volume_id(volume_id)
                    .set_tag_specifications(tag_specification(ec2::ResourceType::Snapshot, &tags))
                    .description(format!("snapnest snapshot of {volume_id}"))
                    .send()
            })
            .await?;
        let snapshot_id = created.snapshot_id().ok_or_else(|| missing_field("CreateSnapshot", "SnapshotId"))?;
        Ok(StartedSnapshot { snapshot_id: snapshot_id.to_owned(), volume_id: volume_id.to_owned() })
    }

    async fn snapshot_database(&self, db_id: &str, snapshot_id: &str, tags: &Tags) -> CloudResult<()> {
        self.here
            .rds("CreateDBSnapshot", db_id, |rds| {
                rds.create_db_snapshot()
                    .db_instance_identifier(db_id)
                    .db_snapshot_identifier(snapshot_id)
                    .set_tags(Some(rds_tags(tags)))
                    .send()
            })
            .await
            .map(drop)
            .map_err(|error| match already_exists_is(error, snapshot_id) {
                // RDS API Reference, CreateDBSnapshot: InvalidDBInstanceStateFault when the DB
                // instance is not in the available state (backing-up, modifying…) — a state it
                // leaves by itself, so the snapshot is asked for again later.
                CloudError::Rejected { code, message } if code == "InvalidDBInstanceState" => CloudError::Busy(message),
                other => other,
            })
    }

    async fn describe_snapshots(&self, snapshot_ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        let c = &self.here;
        let mut statuses = Vec::new();
        for chunk in snapshot_ids.chunks(EC2_IDS_PER_CALL) {
            let by_ids = c
                .ec2("DescribeSnapshots", "snapshots", |ec2| {
                    ec2.describe_snapshots()
                        .set_snapshot_ids(Some(chunk.to_vec()))
                        .into_paginator()
                        .items()
                        .send()
                        .try_collect()
                })
                .await;
            let snapshots = match by_ids {
                Ok(snapshots) => snapshots,
                // One unknown id fails the whole call with InvalidSnapshot.NotFound; a filter on
                // snapshot-id lists the ones that exist and skips the rest.
                Err(CloudError::NotFound(_)) => {
                    c.ec2("DescribeSnapshots", "snapshots", |ec2| {
                        ec2.describe_snapshots()
                            .owner_ids("self")
                            .filters(filter("snapshot-id", chunk))
                            .into_paginator()
                            .items()
                            .send()
                            .try_collect()
                    })
                    .await?
                }
                Err(other) => return Err(other),
            };
            statuses.extend(snapshots.iter().filter_map(ebs_snapshot_status));
        }
        Ok(statuses)
    }

    async fn describe_snapshots_tagged(&self, key: &str, values: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        let mut statuses = Vec::new();
        for chunk in values.chunks(EC2_IDS_PER_CALL) {
            // EC2 API Reference, DescribeSnapshots: MaxResults is 5 to 1,000 and cannot be
            // given with SnapshotIds; a filtered listing pages a thousand at a time.
            let snapshots = self
                .here
                .ec2("DescribeSnapshots", "snapshots", |ec2| {
                    ec2.describe_snapshots()
                        .owner_ids("self")
                        .filters(filter(format!("tag:{key}"), chunk))
                        .max_results(SNAPSHOTS_PER_PAGE)
                        .into_paginator()
                        .items()
                        .send()
                        .try_collect()
                })
                .await?;
            statuses.extend(snapshots.iter().filter_map(ebs_snapshot_status));
        }
        Ok(statuses)
    }

    async fn describe_db_snapshots(&self, snapshot_ids: &[String]) -> CloudResult<Vec<SnapshotStatus>> {
        let mut statuses = Vec::new();
        for chunk in snapshot_ids.chunks(RDS_IDS_PER_CALL) {
            // The db-snapshot-id filter skips unknown ids where DBSnapshotIdentifier would fail;
            // snapnest only makes manual snapshots, RDS's automated ones are not ours.
            let snapshots = self
                .here
                .rds("DescribeDBSnapshots", "db snapshots", |rds| {
                    rds.describe_db_snapshots()
                        .snapshot_type("manual")
                        .filters(rds_filter("db-snapshot-id", chunk))
                        .into_paginator()
                        .items()
                        .send()
                        .try_collect()
                })
                .await?;
            statuses.extend(snapshots.iter().filter_map(db_snapshot_status));
        }
        Ok(statuses)
    }

    async fn find_snapshots(&self, key: &str, value: &str) -> CloudResult<Vec<StartedSnapshot>> {
        // OwnerIds=self keeps the listing to this account's snapshots (not public ones).
        let snapshots = self
            .here
            .ec2("DescribeSnapshots", value, |ec2| {
                ec2.describe_snapshots()
                    .owner_ids("self")
                    .filters(filter(format!("tag:{key}"), [value]))
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
            })
            .await?;
        Ok(snapshots
            .iter()
            .filter_map(|s| {
                // A copy's VolumeId is a placeholder in AWS; the source-volume tag is the truth.
                let volume_id = ec2_tag(s.tags(), tag::SOURCE_VOLUME).or(s.volume_id())?;
                Some(StartedSnapshot { snapshot_id: s.snapshot_id()?.to_owned(), volume_id: volume_id.to_owned() })
            })
            .collect())
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> CloudResult<DeleteOutcome> {
        let outcome = self
            .here
            .ec2("DeleteSnapshot", snapshot_id, |ec2| ec2.delete_snapshot().snapshot_id(snapshot_id).send())
            .await;
        match outcome {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(CloudError::NotFound(_)) => Ok(DeleteOutcome::NotFound),
            Err(CloudError::Rejected { code, message }) if code == "InvalidSnapshot.InUse" => {
                Ok(DeleteOutcome::InUse(if message.is_empty() { code } else { message }))
            }
            Err(refused) if is_unauthorized(&refused) => {
                let found = self.describe_snapshots(&[snapshot_id.to_owned()]).await?;
                if found.is_empty() {
                    Ok(DeleteOutcome::NotFound)
                } else {
                    Err(refused)
                }
            }
            Err(other) => Err(other),
        }
    }

    async fn delete_db_snapshot(&self, snapshot_id: &str) -> CloudResult<DeleteOutcome> {
        let outcome = self
            .here
            .rds("DeleteDBSnapshot", snapshot_id, |rds| {
                rds.delete_db_snapshot().db_snapshot_identifier(snapshot_id).send()
            })
            .await;
        match outcome {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(CloudError::NotFound(_)) => Ok(DeleteOutcome::NotFound),
            Err(CloudError::Rejected { code, message }) if code.starts_with("InvalidDBSnapshotState") => {
                Ok(DeleteOutcome::InUse(if message.is_empty() { code } else { message }))
            }
            Err(other) => Err(other),
        }
    }

    async fn tag_snapshot(&self, snapshot_id: &str, tags: &Tags) -> CloudResult<()> {
        // EBS snapshot ids have a fixed shape; anything else is a DB snapshot name snapnest chose.
        if is_ec2_id(snapshot_id) {
            self.here.create_tags(snapshot_id, tags).await
        } else {
            let arn = self.here.db_snapshot_arn(snapshot_id).await?;
            self.here.add_rds_tags(&arn, tags).await
        }
    }

    async fn copy_snapshot(
        &self,
        source_region: &str,
        snapshot_id: &str,
        kms_key_id: Option<&str>,
        tags: &Tags,
    ) -> CloudResult<String> {
        // Read the source first: its source volume goes on the copy (CopySnapshot copies no
        // tags and gives the copy a placeholder VolumeId), and a missing source fails early.
        let source = self.regions.clients(source_region);
        let found = source
            .ec2("DescribeSnapshots", snapshot_id, |ec2| ec2.describe_snapshots().snapshot_ids(snapshot_id).send())
            .await?;
        let original = found.snapshots().first().ok_or_else(|| CloudError::NotFound(snapshot_id.to_owned()))?;
        let mut tags = tags.clone();
        if let Some(volume) = ec2_tag(original.tags(), tag::SOURCE_VOLUME).or(original.volume_id()) {
            tags.entry(tag::SOURCE_VOLUME.to_owned()).or_insert_with(|| volume.to_owned());
        }
        let copied = self
            .here
            .ec2("CopySnapshot", snapshot_id, |ec2| {
                // EC2 API Reference, CopySnapshot: `KmsKeyId` (with `Encrypted`) is the
                // destination region's key for the copy; without it an encrypted source is
                // copied under the region's default key for EBS.
                ec2.copy_snapshot()
                    .source_region(source_region)
                    .source_snapshot_id(snapshot_id)
                    .description(format!("snapnest copy of {snapshot_id} from {source_region}"))
                    .set_kms_key_id(kms_key_id.map(str::to_owned))
                    .set_encrypted(kms_key_id.map(|_| true))
                    .set_tag_specifications(tag_specification(ec2::ResourceType::Snapshot, &tags))
                    .send()
            })
            .await
            .map_err(quota_is_busy)?;
        copied.snapshot_id().map(str::to_owned).ok_or_else(|| missing_field("CopySnapshot", "SnapshotId"))
    }

    async fn copy_db_snapshot(
        &self,
        source_region: &str,
        snapshot_id: &str,
        target_id: &str,
        kms_key_id: Option<&str>,
        option_group: Option<&str>,
        tags: &Tags,
    ) -> CloudResult<()> {
        // A cross-region CopyDBSnapshot names its source by ARN, which also carries the source
        // region (the Rust SDK has no SourceRegion parameter for it).
        let (source_arn, encrypted) = self.regions.clients(source_region).db_snapshot(snapshot_id).await?;
        self.here
            .rds("CopyDBSnapshot", snapshot_id, |rds| {
                // RDS API Reference, CopyDBSnapshot `KmsKeyId`: an encrypted snapshot copied to
                // another region needs a key of that region (PreSignedUrl only in GovCloud);
                // "If you copy an unencrypted snapshot and specify a value for the KmsKeyId
                // parameter, an error is returned" — so it goes with encrypted sources only.
                // `OptionGroupName`: to specify "if you are copying a snapshot from one AWS
                // Region to another, and your DB instance uses a nondefault option group".
                rds.copy_db_snapshot()
                    .source_db_snapshot_identifier(&source_arn)
                    .target_db_snapshot_identifier(target_id)
                    .set_kms_key_id(kms_key_id.filter(|_| encrypted).map(str::to_owned))
                    .set_option_group_name(option_group.map(str::to_owned))
                    .set_tags(Some(rds_tags(tags)))
                    .send()
            })
            .await
            .map(drop)
            .map_err(|error| quota_is_busy(already_exists_is(error, target_id)))
    }

    async fn stop_instances(&self, instance_ids: &[String]) -> CloudResult<()> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        let outcome = self
            .here
            .ec2("StopInstances", "instances", |ec2| {
                ec2.stop_instances().set_instance_ids(Some(instance_ids.to_vec())).send()
            })
            .await;
        match outcome {
            Ok(_) => Ok(()),
            Err(error) => Err(self.here.explain_refusal(instance_ids, error).await),
        }
    }

    async fn start_instances(&self, instance_ids: &[String]) -> CloudResult<()> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        let outcome = self
            .here
            .ec2("StartInstances", "instances", |ec2| {
                ec2.start_instances().set_instance_ids(Some(instance_ids.to_vec())).send()
            })
            .await;
        match outcome {
            Ok(_) => Ok(()),
            Err(error) => Err(self.here.explain_refusal(instance_ids, error).await),
        }
    }

    async fn describe_instances(&self, instance_ids: &[String]) -> CloudResult<Vec<Instance>> {
        let found = self.here.find_instances(instance_ids).await?;
        self.here.with_volumes("instances", &found).await
    }

    async fn create_volume(
        &self,
        snapshot_id: &str,
        availability_zone: &str,
        client_token: &str,
        settings: &VolumeSettings,
        tags: &Tags,
    ) -> CloudResult<String> {
        let kind = settings.volume_type.as_deref();
        let created = self
            .here
            .ec2("CreateVolume", snapshot_id, |ec2| {
                // EC2 API Reference, CreateVolume: without `VolumeType` the volume is gp2, and
                // `Iops`/`Throughput` are the type's defaults; `Encrypted` with `KmsKeyId`
                // encrypts it under that key (a volume from an encrypted snapshot is encrypted
                // anyway); `MultiAttachEnabled` only for io1/io2. So the backed-up settings go
                // with the request, each only when the backed-up volume had it.
                // EC2 API Reference, CreateVolume `ClientToken`: a repeated request with the same
                // token returns the first request's volume ("Ensuring idempotency"), so the SDK's
                // retry of a call that did reach EC2 cannot make a second volume. Without it the
                // SDK leaves the token empty and every attempt is a new volume.
                ec2.create_volume()
                    .snapshot_id(snapshot_id)
                    .availability_zone(availability_zone)
                    .client_token(client_token)
                    .set_volume_type(settings.volume_type.as_deref().map(ec2::VolumeType::from))
                    // DescribeVolumes reports a gp2 volume's baseline IOPS too, but CreateVolume
                    // takes `Iops` only for io1, io2 and gp3, and `Throughput` only for gp3.
                    .set_iops(settings.iops.filter(|_| matches!(kind, Some("io1" | "io2" | "gp3"))).map(|n| n as i32))
                    .set_throughput(settings.throughput.filter(|_| kind == Some("gp3")).map(|n| n as i32))
                    .set_encrypted(settings.encrypted.then_some(true))
                    .set_kms_key_id(settings.kms_key_id.clone().filter(|_| settings.encrypted))
                    .set_multi_attach_enabled(settings.multi_attach.then_some(true))
                    .set_tag_specifications(tag_specification(ec2::ResourceType::Volume, tags))
                    .send()
            })
            .await?;
        created.volume_id().map(str::to_owned).ok_or_else(|| missing_field("CreateVolume", "VolumeId"))
    }

    async fn describe_volumes(&self, volume_ids: &[String]) -> CloudResult<Vec<VolumeStatus>> {
        let mut statuses = Vec::new();
        for chunk in volume_ids.chunks(EC2_IDS_PER_CALL) {
            // A volume-id filter skips unknown ids where VolumeIds would fail the call.
            let volumes = self
                .here
                .ec2("DescribeVolumes", "volumes", |ec2| {
                    ec2.describe_volumes()
                        .filters(filter("volume-id", chunk))
                        .into_paginator()
                        .items()
                        .send()
                        .try_collect()
                })
                .await?;
            statuses.extend(volumes.iter().filter_map(|v| {
                Some(VolumeStatus {
                    volume_id: v.volume_id()?.to_owned(),
                    state: match v.state().map(|s| s.as_str()) {
                        Some("creating") => VolumeState::Creating,
                        Some("available") => VolumeState::Available,
                        Some("in-use") => VolumeState::InUse,
                        // deleting, deleted, error: not usable any more.
                        _ => VolumeState::Error,
                    },
                    // EC2 API Reference, `VolumeAttachment` `State`: attaching | attached | detaching |
                    // detached | busy. An attachment counts from the start of an attach until it is
                    // fully detached, the way the device stays taken on the instance until then.
                    attachment: v.attachments().iter().find_map(|a| match a.state().map(|s| s.as_str()) {
                        Some("attaching" | "attached" | "busy" | "detaching") => {
                            Some((a.instance_id()?.to_owned(), a.device()?.to_owned()))
                        }
                        _ => None,
                    }),
                    // While an attach or detach is in progress EC2 refuses another one.
                    busy: v
                        .attachments()
                        .iter()
                        .any(|a| matches!(a.state().map(|s| s.as_str()), Some("attaching" | "detaching"))),
                    tags: ec2_tag_map(v.tags()),
                })
            }));
        }
        Ok(statuses)
    }

    async fn detach_volume(&self, instance_id: &str, volume_id: &str) -> CloudResult<()> {
        // InstanceId is passed although optional: it guards against detaching a volume that
        // has meanwhile moved to another instance (and some emulators need it).
        self.here
            .ec2("DetachVolume", volume_id, |ec2| {
                ec2.detach_volume().volume_id(volume_id).instance_id(instance_id).send()
            })
            .await
            .map(drop)
    }

    async fn set_delete_on_termination(&self, instance_id: &str, device: &str, delete: bool) -> CloudResult<()> {
        // EC2 API Reference, ModifyInstanceAttribute `BlockDeviceMappings`: only
        // `DeleteOnTermination` of an attached EBS volume can be changed this way; a volume
        // attached with AttachVolume starts with it false.
        let mapping = ec2::InstanceBlockDeviceMappingSpecification::builder()
            .device_name(device)
            .ebs(ec2::EbsInstanceBlockDeviceSpecification::builder().delete_on_termination(delete).build())
            .build();
        self.here
            .ec2("ModifyInstanceAttribute", instance_id, |ec2| {
                ec2.modify_instance_attribute().instance_id(instance_id).block_device_mappings(mapping.clone()).send()
            })
            .await
            .map(drop)
    }

    async fn attach_volume(&self, instance_id: &str, volume_id: &str, device: &str) -> CloudResult<()> {
        self.here
            .ec2("AttachVolume", volume_id, |ec2| {
                ec2.attach_volume().volume_id(volume_id).instance_id(instance_id).device(device).send()
            })
            .await
            .map(drop)
    }

    async fn delete_volume(&self, volume_id: &str) -> CloudResult<DeleteOutcome> {
        // EC2 API Reference, DeleteVolume: "The volume must be in the available state (not
        // attached to an instance)"; EC2 refuses an attached one (VolumeInUse), which is passed
        // on as the cloud's refusal. The volume may stay `deleting` for several minutes.
        let outcome =
            self.here.ec2("DeleteVolume", volume_id, |ec2| ec2.delete_volume().volume_id(volume_id).send()).await;
        match outcome {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(CloudError::NotFound(_)) => Ok(DeleteOutcome::NotFound),
            Err(refused) if is_unauthorized(&refused) => {
                if self.describe_volumes(&[volume_id.to_owned()]).await?.is_empty() {
                    Ok(DeleteOutcome::NotFound)
                } else {
                    Err(refused)
                }
            }
            Err(other) => Err(other),
        }
    }

    async fn tag_resource(&self, resource_id: &str, tags: &Tags) -> CloudResult<()> {
        // EC2 ids (instances, volumes, snapshots) have a fixed shape; anything else is a DB
        // instance identifier, which RDS tags by ARN.
        if is_ec2_id(resource_id) {
            self.here.create_tags(resource_id, tags).await
        } else {
            let arn = self.here.db_instance_arn(resource_id).await?;
            self.here.add_rds_tags(&arn, tags).await
        }
    }

    async fn untag_resource(&self, resource_id: &str, keys: &[String]) -> CloudResult<()> {
        // Nothing to remove is nothing to send: EC2 DeleteTags without tags would delete every
        // user tag of the resource (EC2 API Reference, DeleteTags `Tags`).
        if keys.is_empty() {
            return Ok(());
        }
        if is_ec2_id(resource_id) {
            // A key without a value deletes the tag whatever its value (DeleteTags `Tags`).
            let tags: Vec<ec2::Tag> = keys.iter().map(|k| ec2::Tag::builder().key(k).build()).collect();
            self.here
                .ec2("DeleteTags", resource_id, |ec2| {
                    ec2.delete_tags().resources(resource_id).set_tags(Some(tags)).send()
                })
                .await
                .map(drop)
        } else {
            // RDS API Reference, RemoveTagsFromResource: `ResourceName` is the ARN, `TagKeys`
            // the keys to remove.
            let arn = self.here.db_instance_arn(resource_id).await?;
            self.here
                .rds("RemoveTagsFromResource", &arn, |rds| {
                    rds.remove_tags_from_resource().resource_name(&arn).set_tag_keys(Some(keys.to_vec())).send()
                })
                .await
                .map(drop)
        }
    }

    async fn restore_database(
        &self,
        snapshot_id: &str,
        new_db_id: &str,
        settings: &DatabaseSettings,
        tags: &Tags,
    ) -> CloudResult<()> {
        self.here
            .rds("RestoreDBInstanceFromDBSnapshot", snapshot_id, |rds| {
                // RDS API Reference, RestoreDBInstanceFromDBSnapshot: without DBSubnetGroupName
                // the instance goes to the default VPC ("No default subnet detected" without
                // one), without VpcSecurityGroupIds to the default group, without the group
                // names to the default parameter and option groups, Single-AZ unless MultiAZ,
                // and without DeletionProtection. The backed-up instance's settings go along.
                rds.restore_db_instance_from_db_snapshot()
                    .db_snapshot_identifier(snapshot_id)
                    .db_instance_identifier(new_db_id)
                    .set_db_instance_class(settings.instance_class.clone())
                    .set_db_subnet_group_name(settings.subnet_group.clone())
                    .set_vpc_security_group_ids(
                        (!settings.security_group_ids.is_empty()).then(|| settings.security_group_ids.clone()),
                    )
                    // The engine's default groups are what RDS picks without a name; only
                    // a group of the user's own needs naming (moto also knows no default
                    // option group by name).
                    .set_db_parameter_group_name(
                        settings.parameter_group.clone().filter(|g| !g.starts_with("default.")),
                    )
                    .set_option_group_name(settings.option_group.clone().filter(|g| !g.starts_with("default:")))
                    .multi_az(settings.multi_az)
                    .publicly_accessible(settings.publicly_accessible)
                    .deletion_protection(settings.deletion_protection)
                    .set_storage_type(settings.storage_type.clone())
                    .set_port(settings.port.map(i32::from))
                    .set_tags(Some(rds_tags(tags)))
                    .send()
            })
            .await
            .map(drop)
            .map_err(|error| already_exists_is(error, new_db_id))
    }

    async fn describe_databases(&self, db_ids: &[String]) -> CloudResult<Vec<DatabaseStatus>> {
        let mut statuses = Vec::new();
        for chunk in db_ids.chunks(RDS_IDS_PER_CALL) {
            // The db-instance-id filter skips unknown ids where DBInstanceIdentifier would fail.
            let databases = self
                .here
                .rds("DescribeDBInstances", "databases", |rds| {
                    rds.describe_db_instances()
                        .filters(rds_filter("db-instance-id", chunk))
                        .into_paginator()
                        .items()
                        .send()
                        .try_collect()
                })
                .await?;
            statuses.extend(databases.iter().filter_map(|d| {
                Some(DatabaseStatus {
                    db_id: d.db_instance_identifier()?.to_owned(),
                    status: d.db_instance_status().unwrap_or_default().to_owned(),
                    tags: rds_tag_map(d.tag_list()),
                    deletion_protection: d.deletion_protection().unwrap_or(false),
                })
            }));
        }
        Ok(statuses)
    }

    async fn rename_database(&self, db_id: &str, new_db_id: &str) -> CloudResult<()> {
        self.here
            .rds("ModifyDBInstance", db_id, |rds| {
                rds.modify_db_instance()
                    .db_instance_identifier(db_id)
                    .new_db_instance_identifier(new_db_id)
                    .apply_immediately(true)
                    .send()
            })
            .await
            .map(drop)
            .map_err(|error| already_exists_is(error, new_db_id))
    }

    async fn set_deletion_protection(&self, db_id: &str, protect: bool) -> CloudResult<()> {
        // RDS API Reference, ModifyDBInstance `DeletionProtection`: a protected instance
        // refuses DeleteDBInstance until this is turned off.
        self.here
            .rds("ModifyDBInstance", db_id, |rds| {
                rds.modify_db_instance()
                    .db_instance_identifier(db_id)
                    .deletion_protection(protect)
                    .apply_immediately(true)
                    .send()
            })
            .await
            .map(drop)
    }

    async fn delete_database(&self, db_id: &str) -> CloudResult<DeleteOutcome> {
        // RDS API Reference, DeleteDBInstance `SkipFinalSnapshot`: without it RDS takes a final
        // DB snapshot (and needs FinalDBSnapshotIdentifier); snapnest deletes only what a backup
        // point holds or what was copied back in place, so no final snapshot is taken.
        let outcome = self
            .here
            .rds("DeleteDBInstance", db_id, |rds| {
                rds.delete_db_instance().db_instance_identifier(db_id).skip_final_snapshot(true).send()
            })
            .await;
        match outcome {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(CloudError::NotFound(_)) => Ok(DeleteOutcome::NotFound),
            // A DB instance already `deleting` is refused with InvalidDBInstanceState: the delete
            // asked for is under way. Any other state is the cloud's refusal.
            Err(CloudError::Rejected { code, message }) if code.starts_with("InvalidDBInstanceState") => {
                match self.describe_databases(&[db_id.to_owned()]).await {
                    Ok(found) => match found.iter().find(|d| d.db_id == db_id) {
                        None => Ok(DeleteOutcome::NotFound),
                        Some(d) if d.status == "deleting" => Ok(DeleteOutcome::Deleted),
                        Some(_) => Err(CloudError::Rejected { code, message }),
                    },
                    Err(_) => Err(CloudError::Rejected { code, message }),
                }
            }
            Err(other) => Err(other),
        }
    }

    async fn register_image(&self, spec: &ImageSpec, tags: &Tags) -> CloudResult<String> {
        // EC2 API Reference, RegisterImage: "You can't set the encryption state of the volume
        // using the block device mapping" — `Encrypted`/`KmsKeyId` go with the launch instead.
        let devices: Vec<ec2::BlockDeviceMapping> =
            spec.devices.iter().map(|d| device_mapping(d, ec2::EbsBlockDevice::builder()).build()).collect();
        let registered = self
            .here
            .ec2("RegisterImage", &spec.name, |ec2| {
                ec2.register_image()
                    .name(&spec.name)
                    .description("launched by snapnest from a backup point; deregistered once launched")
                    .root_device_name(&spec.root_device_name)
                    .virtualization_type("hvm")
                    .set_architecture(spec.architecture.as_deref().map(ec2::ArchitectureValues::from))
                    .ena_support(spec.ena_support)
                    .set_boot_mode(spec.boot_mode.as_deref().map(ec2::BootModeValues::from))
                    .set_block_device_mappings(Some(devices))
                    .set_tag_specifications(tag_specification(ec2::ResourceType::Image, tags))
                    .send()
            })
            .await;
        match registered {
            Ok(out) => out.image_id().map(str::to_owned).ok_or_else(|| missing_field("RegisterImage", "ImageId")),
            // EC2 API Reference, RegisterImage `Name`: unique in the account and region; a second
            // registration is refused `InvalidAMIName.Duplicate`. The image is the one an earlier
            // attempt registered: it is found by its name.
            Err(CloudError::Rejected { code, .. }) if code == "InvalidAMIName.Duplicate" => self
                .find_image(&spec.name)
                .await?
                .map(|image| image.image_id)
                .ok_or_else(|| CloudError::NotFound(spec.name.clone())),
            Err(other) => Err(other),
        }
    }

    async fn changed_bytes(&self, earlier: &str, later: &str) -> CloudResult<u64> {
        // Amazon EBS direct APIs, ListChangedBlocks: the blocks that differ between two
        // snapshots of one volume's lineage, a page at a time (NextToken), each `BlockSize`
        // bytes (512 KiB). Their sum is what `later` stores beyond `earlier`.
        let mut bytes = 0u64;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .here
                .ebs("ListChangedBlocks", later, |ebs| {
                    ebs.list_changed_blocks()
                        .first_snapshot_id(earlier)
                        .second_snapshot_id(later)
                        .max_results(10_000)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            let block = page.block_size().unwrap_or(512 * 1024).max(0) as u64;
            bytes += page.changed_blocks().len() as u64 * block;
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(bytes);
            }
        }
    }

    async fn find_image(&self, name: &str) -> CloudResult<Option<ImageStatus>> {
        let found = self
            .here
            .ec2("DescribeImages", name, |ec2| {
                ec2.describe_images().owners("self").filters(filter("name", [name])).send()
            })
            .await?;
        Ok(found.images().iter().find_map(image_status))
    }

    async fn find_instances(&self, key: &str, value: &str) -> CloudResult<Vec<(String, Tags)>> {
        let reservations = self
            .here
            .ec2("DescribeInstances", value, |ec2| {
                ec2.describe_instances()
                    .filters(filter(format!("tag:{key}"), [value]))
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
            })
            .await?;
        Ok(reservations
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| !matches!(instance_state(i.state().and_then(|s| s.name())), InstanceState::Terminated))
            .filter_map(|i| Some((i.instance_id()?.to_owned(), ec2_tag_map(i.tags()))))
            .collect())
    }

    async fn describe_images(&self, image_ids: &[String]) -> CloudResult<Vec<ImageStatus>> {
        let mut statuses = Vec::new();
        for chunk in image_ids.chunks(EC2_IDS_PER_CALL) {
            // An image-id filter skips unknown (deregistered) ids where ImageIds would fail the call.
            let out = self
                .here
                .ec2("DescribeImages", "images", |ec2| {
                    ec2.describe_images().owners("self").filters(filter("image-id", chunk)).send()
                })
                .await?;
            statuses.extend(out.images().iter().filter_map(image_status));
        }
        Ok(statuses)
    }

    async fn deregister_image(&self, image_id: &str) -> CloudResult<DeleteOutcome> {
        // EC2 API Reference, DeregisterImage: the image's snapshots are kept unless
        // `DeleteAssociatedSnapshots` is true; they are the backup point's, so it is not sent.
        let deregistered =
            self.here.ec2("DeregisterImage", image_id, |ec2| ec2.deregister_image().image_id(image_id).send()).await;
        match deregistered {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(CloudError::NotFound(_)) => Ok(DeleteOutcome::NotFound),
            Err(CloudError::Rejected { code, .. }) if code == "InvalidAMIID.Unavailable" => Ok(DeleteOutcome::NotFound),
            Err(refused) if is_unauthorized(&refused) => {
                if self.describe_images(&[image_id.to_owned()]).await?.is_empty() {
                    Ok(DeleteOutcome::NotFound)
                } else {
                    Err(refused)
                }
            }
            Err(other) => Err(other),
        }
    }

    async fn run_instance(
        &self,
        image_id: &str,
        settings: &InstanceSettings,
        devices: &[ImageDevice],
        client_token: &str,
        tags: &Tags,
    ) -> CloudResult<String> {
        // EC2 API Reference, EbsBlockDevice `KmsKeyId`: "only supported on BlockDeviceMapping
        // objects called by CreateFleet, RequestSpotInstances, and RunInstances" — the launch
        // repeats the image's mappings with the same snapshots, so each volume gets the
        // backed-up volume's type, IOPS, throughput and key.
        let mappings: Vec<ec2::BlockDeviceMapping> = devices.iter().map(launch_mapping).collect();
        let profile = settings
            .iam_instance_profile
            .as_ref()
            .map(|arn| ec2::IamInstanceProfileSpecification::builder().arn(arn).build());
        let tag_specifications: Option<Vec<ec2::TagSpecification>> =
            [ec2::ResourceType::Instance, ec2::ResourceType::Volume]
                .into_iter()
                .map(|resource| tag_specification(resource, tags))
                .collect::<Option<Vec<_>>>()
                .map(|specs| specs.into_iter().flatten().collect());
        let launched = self
            .here
            .ec2("RunInstances", image_id, |ec2| {
                // EC2 API Reference, RunInstances `ClientToken`: a repeated request with the same
                // token answers the first one's instance ("Ensuring idempotency"), so a retried
                // launch never starts a second instance. Without `SubnetId` and `SecurityGroupIds`
                // EC2 uses the default VPC and its default group: the backed-up instance's (or the
                // request's) are always sent.
                ec2.run_instances()
                    .image_id(image_id)
                    .min_count(1)
                    .max_count(1)
                    .client_token(client_token)
                    .set_instance_type(settings.instance_type.as_deref().map(ec2::InstanceType::from))
                    .set_subnet_id(settings.subnet_id.clone())
                    .set_security_group_ids(
                        (!settings.security_group_ids.is_empty()).then(|| settings.security_group_ids.clone()),
                    )
                    .set_iam_instance_profile(profile)
                    .set_key_name(settings.key_name.clone())
                    .set_block_device_mappings((!mappings.is_empty()).then_some(mappings))
                    .set_tag_specifications(tag_specifications)
                    .send()
            })
            .await?;
        launched
            .instances()
            .iter()
            .find_map(|i| i.instance_id())
            .map(str::to_owned)
            .ok_or_else(|| missing_field("RunInstances", "InstanceId"))
    }
}

/// Translates any SDK error into a [`CloudError`]; `subject` is the resource the call was about.
///
/// Classification goes by error code and HTTP status, never by message: EC2 messages are
/// free text (and empty on some emulators), codes are the API's contract.
/// What a faithful restore of a DB instance needs of its configuration.
/// What an instance launched from its backup needs again, as `DescribeInstances` reports it.
fn instance_settings(i: &ec2::Instance) -> InstanceSettings {
    InstanceSettings {
        instance_type: i.instance_type().map(|t| t.as_str().to_owned()),
        subnet_id: i.subnet_id().map(str::to_owned),
        security_group_ids: i.security_groups().iter().filter_map(|g| g.group_id()).map(str::to_owned).collect(),
        iam_instance_profile: i.iam_instance_profile().and_then(|p| p.arn()).map(str::to_owned),
        key_name: i.key_name().map(str::to_owned),
        architecture: i.architecture().map(|a| a.as_str().to_owned()),
        root_device_name: i.root_device_name().map(str::to_owned),
        ena_support: i.ena_support().unwrap_or(false),
        // The mode it booted in; `BootMode` is the image's, absent on most.
        boot_mode: i
            .current_instance_boot_mode()
            .map(|m| m.as_str().to_owned())
            .or_else(|| i.boot_mode().map(|m| m.as_str().to_owned())),
        platform: i.platform().map(|p| p.as_str().to_owned()),
    }
}

/// A device of an image or a launch: its snapshot, and the backed-up volume's type, IOPS,
/// throughput and delete-on-termination (sent as CreateVolume sends them).
fn device_mapping(
    d: &ImageDevice,
    ebs: ec2::builders::EbsBlockDeviceBuilder,
) -> ec2::builders::BlockDeviceMappingBuilder {
    let kind = d.settings.volume_type.as_deref();
    let ebs = ebs
        .snapshot_id(&d.snapshot_id)
        .set_volume_type(d.settings.volume_type.as_deref().map(ec2::VolumeType::from))
        .set_iops(d.settings.iops.filter(|_| matches!(kind, Some("io1" | "io2" | "gp3"))).map(|n| n as i32))
        .set_throughput(d.settings.throughput.filter(|_| kind == Some("gp3")).map(|n| n as i32))
        .delete_on_termination(d.settings.delete_on_termination)
        .build();
    ec2::BlockDeviceMapping::builder().device_name(&d.device).ebs(ebs)
}

/// A device of a launch: as the image's, encrypted under the backed-up volume's key.
fn launch_mapping(d: &ImageDevice) -> ec2::BlockDeviceMapping {
    let encryption = ec2::EbsBlockDevice::builder()
        .set_encrypted(d.settings.encrypted.then_some(true))
        .set_kms_key_id(d.settings.kms_key_id.clone().filter(|_| d.settings.encrypted));
    device_mapping(d, encryption).build()
}

/// The port's view of an image EC2 described.
fn image_status(i: &ec2::Image) -> Option<ImageStatus> {
    Some(ImageStatus {
        image_id: i.image_id()?.to_owned(),
        state: image_state(i.state()),
        reason: i.state_reason().and_then(|r| r.message()).map(str::to_owned),
    })
}

fn image_state(state: Option<&ec2::ImageState>) -> ImageState {
    match state {
        Some(ec2::ImageState::Available) => ImageState::Available,
        Some(ec2::ImageState::Pending) | None => ImageState::Pending,
        // failed, error, invalid, deregistered, disabled, transient: it will not become usable.
        Some(_) => ImageState::Failed,
    }
}

fn database_settings(d: &rds::DbInstance) -> DatabaseSettings {
    DatabaseSettings {
        instance_class: d.db_instance_class().map(str::to_owned),
        subnet_group: d.db_subnet_group().and_then(|g| g.db_subnet_group_name()).map(str::to_owned),
        security_group_ids: d
            .vpc_security_groups()
            .iter()
            .filter_map(|g| g.vpc_security_group_id())
            .map(str::to_owned)
            .collect(),
        parameter_group: d.db_parameter_groups().first().and_then(|g| g.db_parameter_group_name()).map(str::to_owned),
        option_group: d.option_group_memberships().first().and_then(|g| g.option_group_name()).map(str::to_owned),
        multi_az: d.multi_az().unwrap_or(false),
        publicly_accessible: d.publicly_accessible().unwrap_or(false),
        deletion_protection: d.deletion_protection().unwrap_or(false),
        storage_type: d.storage_type().map(str::to_owned),
        port: d.endpoint().and_then(|e| e.port()).or(d.db_instance_port()).and_then(|p| u16::try_from(p).ok()),
    }
}

/// A copy refused for the account's quota (concurrent copies, snapshots per region) waits
/// for the next run: copies in flight finishing, or snapshots expiring, make room.
fn quota_is_busy(error: CloudError) -> CloudError {
    match error {
        CloudError::Rejected { code, message }
            if matches!(
                code.as_str(),
                "ResourceLimitExceeded" | "SnapshotCopyLimitExceeded" | "SnapshotQuotaExceeded"
            ) =>
        {
            CloudError::Busy(format!("{code}: {message}"))
        }
        other => other,
    }
}

fn cloud_error<E>(subject: &str, error: SdkError<E>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        // No answer at all (connection refused or reset, DNS, timeouts): worth another try.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            return CloudError::Transient(DisplayErrorContext(&error).to_string())
        }
        // The request could not even be built: a bug or bad input, never retried.
        SdkError::ConstructionFailure(_) => {
            return CloudError::Rejected {
                code: "ConstructionFailure".into(),
                message: DisplayErrorContext(&error).to_string(),
            }
        }
        _ => {}
    }
    let status = error.raw_response().map(|r| r.status().as_u16()).unwrap_or_default();
    let code = error.code().unwrap_or_default().to_owned();
    let message = error.message().unwrap_or_default().to_owned();
    let summary = || if message.is_empty() { code.clone() } else { format!("{code}: {message}") };
    if THROTTLING_CODES.contains(&code.as_str()) || status == 429 {
        CloudError::Throttled(summary())
    } else if status >= 500 || TRANSIENT_CODES.contains(&code.as_str()) {
        CloudError::Transient(if code.is_empty() { format!("HTTP {status} from the cloud") } else { summary() })
    } else if code.ends_with("NotFound") || code.ends_with("NotFoundFault") {
        // InvalidVolume.NotFound, InvalidSnapshot.NotFound, DBInstanceNotFound, …
        CloudError::NotFound(subject.to_owned())
    } else if code.ends_with("AlreadyExists") || code.ends_with("AlreadyExistsFault") {
        CloudError::AlreadyExists(subject.to_owned())
    } else if code.is_empty() {
        // An answer that could not be parsed (e.g. an HTML error page).
        CloudError::Rejected { code: format!("HTTP {status}"), message: DisplayErrorContext(&error).to_string() }
    } else {
        CloudError::Rejected { code, message }
    }
}

/// `AlreadyExists` names the identifier being created, not the source the call was about.
fn already_exists_is(error: CloudError, created: &str) -> CloudError {
    match error {
        CloudError::AlreadyExists(_) => CloudError::AlreadyExists(created.to_owned()),
        other => other,
    }
}

/// The role refused the call. The roles allow deletes only on resources tagged
/// `snapnest:managed`, and a resource that no longer exists has no tags, so EC2 answers its
/// delete `UnauthorizedOperation` rather than `NotFound` (IAM evaluates before EC2 looks the
/// resource up): the caller asks whether it still exists before calling it a refusal.
fn is_unauthorized(error: &CloudError) -> bool {
    matches!(error, CloudError::Rejected { code, .. } if code == "UnauthorizedOperation")
}

fn missing_field(operation: &str, field: &str) -> CloudError {
    CloudError::Rejected { code: "MalformedResponse".into(), message: format!("{operation} answered without {field}") }
}

/// Whether `id` has the shape of an EC2 resource id (`i-`, `vol-`, `snap-`, `ami-` + 8 or 17 hex).
fn is_ec2_id(id: &str) -> bool {
    let Some((prefix, hex)) = id.split_once('-') else { return false };
    matches!(prefix, "i" | "vol" | "snap" | "ami")
        && matches!(hex.len(), 8 | 17)
        && hex.chars().all(|c| c.is_ascii_hexdigit())
}

fn instance_state(name: Option<&ec2::InstanceStateName>) -> InstanceState {
    match name.map(|n| n.as_str()) {
        Some("running") => InstanceState::Running,
        Some("stopping") => InstanceState::Stopping,
        Some("stopped") => InstanceState::Stopped,
        Some("shutting-down") => InstanceState::ShuttingDown,
        Some("terminated") => InstanceState::Terminated,
        // "pending", and anything EC2 may add later, is on its way somewhere.
        _ => InstanceState::Pending,
    }
}

/// An EBS snapshot's status: `pending`/`completed`/`error`, progress `"NN%"`, size in GiB.
fn ebs_snapshot_status(s: &ec2::Snapshot) -> Option<SnapshotStatus> {
    let state = match s.state().map(|s| s.as_str()) {
        Some("completed") => SnapshotState::Completed,
        Some("error") => SnapshotState::Error(s.state_message().unwrap_or("snapshot failed").to_owned()),
        // pending, recoverable, recovering: not usable yet.
        _ => SnapshotState::Pending,
    };
    let progress = s
        .progress()
        .and_then(|p| p.trim().trim_end_matches('%').parse::<u8>().ok())
        .unwrap_or(if state == SnapshotState::Completed { 100 } else { 0 })
        .min(100);
    // EC2 API Reference, Snapshot `fullSnapshotSizeInBytes`: the blocks written to the volume
    // when the snapshot was taken (its full, not incremental, size) — far closer to what is
    // stored than the volume's provisioned size, which is the fallback when it is not reported.
    let provisioned = (s.volume_size().unwrap_or(0).max(0) as u64) << 30;
    let size_bytes = s.full_snapshot_size_in_bytes().map_or(provisioned, |b| b.max(0) as u64);
    Some(SnapshotStatus { snapshot_id: s.snapshot_id()?.to_owned(), state, progress, size_bytes })
}

/// A DB snapshot's status: RDS says `creating`/`copying`/`available`/`failed`, in percent.
fn db_snapshot_status(s: &rds::DbSnapshot) -> Option<SnapshotStatus> {
    let status = s.status().unwrap_or_default();
    let state = match status {
        "available" => SnapshotState::Completed,
        "failed" | "error" => SnapshotState::Error(format!("DB snapshot {status}")),
        _ if status.starts_with("incompatible") => SnapshotState::Error(format!("DB snapshot {status}")),
        _ => SnapshotState::Pending,
    };
    // PercentProgress is often absent once a snapshot is available.
    let progress = s
        .percent_progress()
        .map(|p| p.clamp(0, 100) as u8)
        .filter(|_| state != SnapshotState::Completed)
        .unwrap_or(if state == SnapshotState::Completed { 100 } else { 0 });
    let size_gib = s.allocated_storage().unwrap_or(0).max(0) as u64;
    Some(SnapshotStatus {
        snapshot_id: s.db_snapshot_identifier()?.to_owned(),
        state,
        progress,
        size_bytes: size_gib << 30,
    })
}

fn filter<V: AsRef<str>>(name: impl Into<String>, values: impl IntoIterator<Item = V>) -> ec2::Filter {
    ec2::Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(|v| v.as_ref().to_owned()).collect()))
        .build()
}

fn rds_filter<V: AsRef<str>>(name: impl Into<String>, values: impl IntoIterator<Item = V>) -> rds::Filter {
    rds::Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(|v| v.as_ref().to_owned()).collect()))
        .build()
}

fn ec2_tags(tags: &Tags) -> Vec<ec2::Tag> {
    tags.iter().map(|(k, v)| ec2::Tag::builder().key(k).value(v).build()).collect()
}

/// Tags for a resource a call creates; none for no tags (EC2 rejects an empty specification).
fn tag_specification(resource: ec2::ResourceType, tags: &Tags) -> Option<Vec<ec2::TagSpecification>> {
    (!tags.is_empty())
        .then(|| vec![ec2::TagSpecification::builder().resource_type(resource).set_tags(Some(ec2_tags(tags))).build()])
}

fn ec2_tag<'a>(tags: &'a [ec2::Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// The tags EC2 reports on a resource, as a map.
fn ec2_tag_map(tags: &[ec2::Tag]) -> Tags {
    tags.iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect()
}

/// The tags RDS reports on a resource (`TagList`), as a map.
fn rds_tag_map(tags: &[rds::Tag]) -> Tags {
    tags.iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect()
}

fn rds_tags(tags: &Tags) -> Vec<rds::Tag> {
    tags.iter().map(|(k, v)| rds::Tag::builder().key(k).value(v).build()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_ids_are_told_from_rds_names() {
        assert!(is_ec2_id("snap-0123456789abcdef0"));
        assert!(is_ec2_id("vol-12345678"));
        assert!(is_ec2_id("i-9607aa1742a44e9a6"));
        assert!(!is_ec2_id("snapnest-b-123"));
        assert!(!is_ec2_id("si-demo-mysql"));
        assert!(!is_ec2_id("snap-notahexid12345"));
    }
}
