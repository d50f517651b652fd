//! The `Cloud` contract run against both adapters: the simulated cloud, and the AWS adapter
//! on moto (the AWS emulator). The same assertions ([`check_cloud_contract`]) keep the
//! simulation honest; each test then checks what only its adapter can show.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::types::{self as ec2, Filter};
use aws_sdk_rds::types as rds;
use snapnest_aws::cloud::AwsProvider;
use snapnest_core::cloud::{tag, CloudError, CloudProvider, DeleteOutcome, Tags, VolumeSelection};
use snapnest_e2e::aws_fixture::create_service_instance;
use snapnest_e2e::moto::Moto;
use snapnest_local::simulated::{Faults, SimSettings, SimulatedCloud};
use snapnest_testkit::cloud_contract::{check_cloud_contract, check_cloud_contract_with, EmulatorGaps};

const TAG_KEY: &str = "service-instance-id";
const HOME: &str = "us-east-1";
const DESTINATION: &str = "us-west-2";

#[tokio::test]
async fn simulated_cloud_meets_the_contract() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let settings = SimSettings {
        home_region: HOME.into(),
        operation_time: Duration::from_millis(300),
        latency: Duration::ZERO,
        faults: Faults::default(),
    };
    let cloud = SimulatedCloud::open(dir.path(), settings).expect("open the simulated cloud");
    cloud.add_service_instance(HOME, "si-contract", 2, 3, 1, true).expect("add the service instance");
    let home = cloud.home();
    let destination = cloud.region(DESTINATION).expect("the destination region");

    check_cloud_contract(home.as_ref(), destination.as_ref(), TAG_KEY, "si-contract").await;

    // What the simulation injects on purpose: a snapshot something else uses, a released instance.
    let inventory = home.discover(TAG_KEY, "si-contract").await.expect("discover");
    let instance = &inventory.instances[1];
    let snapshot = home.snapshot_volume(&instance.volumes[0].volume_id, &Tags::new()).await.expect("snapshot");
    cloud.tamper_snapshot(HOME, &snapshot.snapshot_id, Some("ami-0123456789abcdef0")).expect("tamper");
    let outcome = home.delete_snapshot(&snapshot.snapshot_id).await;
    assert!(matches!(outcome, Ok(DeleteOutcome::InUse(_))), "{outcome:?}");
    cloud.release_instance(HOME, &instance.instance_id).expect("release");
    let outcome = home.snapshot_instance(&instance.instance_id, &VolumeSelection::All, &Tags::new()).await;
    assert!(matches!(outcome, Err(CloudError::InstanceReleased(_))), "{outcome:?}");
}

#[tokio::test]
async fn aws_cloud_on_moto_meets_the_contract() {
    Moto::shared();
    // moto answers some malformed calls with HTTP 500: fail fast instead of retrying them.
    std::env::set_var("AWS_MAX_ATTEMPTS", "2");
    let run = format!("{:08x}", SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").subsec_nanos());
    let si = format!("si-contract-{run}");
    let config = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(HOME)).load().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let rds = aws_sdk_rds::Client::new(&config);
    let west = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&config).region(Region::new(DESTINATION)).build(),
    );
    let db_id = create_service_instance(&ec2, &rds, TAG_KEY, &si).await;

    let provider = AwsProvider::new(&snapnest_aws::sdk_config(HOME).await);
    assert_eq!(provider.home_region(), HOME);
    let home = provider.home();
    let destination = provider.region(DESTINATION).expect("the destination region");
    // moto 5.2.5's CreateSnapshots honours ExcludeBootVolume but ignores ExcludeDataVolumeIds
    // (moto/ec2/models/elastic_block_store.py), so a group of one selected data volume comes
    // back with every data volume of the instance; AWS returns only the selected one.
    let gaps = EmulatorGaps { create_snapshots_ignores_excluded_volumes: true };
    check_cloud_contract_with(home.as_ref(), destination.as_ref(), TAG_KEY, &si, &gaps).await;

    // Afterwards, through the SDK itself: the snapshots carry snapnest's tags and their source
    // volume (the group that was kept: the contract deletes the others).
    let snapshots = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter(format!("tag:{}", tag::SERVICE_INSTANCE), &si))
        .send()
        .await
        .expect("describe snapshots");
    assert_eq!(snapshots.snapshots().len(), 3, "the kept group: {:?}", snapshots.snapshots());
    for snapshot in snapshots.snapshots() {
        let tags = snapshot.tags();
        for key in [tag::BACKUP_ID, tag::EXPIRES_AT, tag::MANAGED] {
            assert!(ec2_tag(tags, key).is_some(), "{key} on {snapshot:?}");
        }
        assert!(snapshot.volume_id().is_some_and(|v| v.starts_with("vol-")), "its own volume: {snapshot:?}");
    }

    // The copy exists in the destination region, tagged, naming its source volume.
    let copies = west
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter(format!("tag:{}", tag::SERVICE_INSTANCE), &si))
        .send()
        .await
        .expect("describe copies");
    assert_eq!(copies.snapshots().len(), 1, "{:?}", copies.snapshots());
    let copy = &copies.snapshots()[0];
    assert!(ec2_tag(copy.tags(), tag::BACKUP_ID).is_some_and(|b| b.ends_with("-copy")), "{copy:?}");
    let source_volume = ec2_tag(copy.tags(), tag::SOURCE_VOLUME).expect("the copy names its source volume");
    assert!(snapshots.snapshots().iter().any(|s| s.volume_id() == Some(source_volume)), "{copy:?}");

    // The volume attached at the swapped device is the new one; the old one is kept, detached.
    let new_volumes = ec2
        .describe_volumes()
        .filters(filter(format!("tag:{}", tag::SERVICE_INSTANCE), &si))
        .send()
        .await
        .expect("describe volumes");
    assert_eq!(new_volumes.volumes().len(), 1, "{:?}", new_volumes.volumes());
    let new_volume = &new_volumes.volumes()[0];
    let restore_id = ec2_tag(new_volume.tags(), tag::RESTORE_ID).expect("the new volume names its restore");
    let attachment = &new_volume.attachments()[0];
    let (instance_id, device) = (attachment.instance_id().expect("instance"), attachment.device().expect("device"));
    assert_eq!(device, "/dev/sdg", "the highest device was swapped");
    let instance = ec2.describe_instances().instance_ids(instance_id).send().await.expect("describe instance");
    let mapped = instance.reservations()[0].instances()[0]
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(device))
        .and_then(|m| m.ebs()?.volume_id());
    assert_eq!(mapped, new_volume.volume_id(), "{device} of {instance_id} is the new volume");
    let old_volumes = ec2
        .describe_volumes()
        .filters(filter(format!("tag:{}", tag::REPLACED_BY), restore_id))
        .send()
        .await
        .expect("describe old volumes");
    assert_eq!(old_volumes.volumes().len(), 1, "{:?}", old_volumes.volumes());
    let old_volume = &old_volumes.volumes()[0];
    assert!(old_volume.attachments().is_empty() && old_volume.state().map(|s| s.as_str()) == Some("available"));

    // The databases after the identifier swap: the original under `<id>-old`, the restored
    // one under the original name.
    let databases = rds.describe_db_instances().send().await.expect("describe databases");
    let by_id = |id: &str| databases.db_instances().iter().find(|d| d.db_instance_identifier() == Some(id));
    let old = by_id(&format!("{db_id}-old")).expect("the original database, renamed");
    assert_eq!(rds_tag(old.tag_list(), TAG_KEY), Some(si.as_str()), "it keeps its tags: {old:?}");
    assert!(rds_tag(old.tag_list(), tag::REPLACED_BY).is_some(), "{old:?}");
    let current = by_id(&db_id).expect("the restored database, under the original name");
    assert!(rds_tag(current.tag_list(), tag::RESTORE_ID).is_some(), "{current:?}");
    let with_si: Vec<_> = databases
        .db_instances()
        .iter()
        .filter(|d| rds_tag(d.tag_list(), tag::SERVICE_INSTANCE) == Some(si.as_str()))
        .filter_map(|d| d.db_instance_identifier())
        .collect();
    assert_eq!(with_si, [db_id.as_str()], "no database is left under the temporary id");

    // AWS behaviour the contract cannot provoke through the port alone.
    // A snapshot an AMI uses is refused as in use (InvalidSnapshot.InUse).
    let inventory = home.discover(TAG_KEY, &si).await.expect("discover");
    let instance = &inventory.instances[1].instance_id;
    let image = ec2.create_image().instance_id(instance).name(format!("contract-{run}")).send().await.expect("image");
    let images = ec2.describe_images().image_ids(image.image_id().expect("id")).send().await.expect("describe image");
    let image_snapshot = images.images()[0].block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .expect("the image's snapshot")
        .to_owned();
    let outcome = home.delete_snapshot(&image_snapshot).await;
    assert!(matches!(outcome, Ok(DeleteOutcome::InUse(_))), "{outcome:?}");

    // Hundreds of ids are described in chunks; unknown ones make no chunk fail.
    let kept = snapshots.snapshots()[0].snapshot_id().expect("id").to_owned();
    let mut many: Vec<String> = (0..250_u64).map(|n| format!("snap-{:017x}", 0xbad0000 + n)).collect();
    many.push(kept.clone());
    let described = home.describe_snapshots(&many).await.expect("describe many");
    assert_eq!(described.iter().map(|s| s.snapshot_id.as_str()).collect::<Vec<_>>(), [kept.as_str()]);

    // A terminated instance is "released".
    ec2.terminate_instances().instance_ids(instance).send().await.expect("terminate");
    let outcome = home.snapshot_instance(instance, &VolumeSelection::All, &Tags::new()).await;
    assert!(matches!(outcome, Err(CloudError::InstanceReleased(_))), "{outcome:?}");

    // A malformed region name is refused rather than sent to DNS.
    assert!(matches!(provider.region("moon-base-1"), Err(CloudError::Rejected { .. })));
}

fn filter(name: impl Into<String>, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn ec2_tag<'a>(tags: &'a [ec2::Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

fn rds_tag<'a>(tags: &'a [rds::Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}
