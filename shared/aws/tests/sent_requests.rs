//! What the AWS adapter actually sends, captured below the SDK. moto ignores most request
//! parameters, so where correctness depends on what AWS does with one, the parameter is
//! asserted here on the wire.

mod common;

use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use snapnest_aws::cloud::AwsProvider;
use snapnest_core::cloud::{
    tag, CloudError, CloudProvider, DatabaseSettings, DeleteOutcome, ImageDevice, ImageSpec, InstanceSettings, Tags,
    VolumeSettings,
};

/// Records every request body and answers each with the canned response for its `Action`
/// (HTTP 400 for an error document, as the query protocols do, 200 otherwise).
#[derive(Debug, Clone)]
struct Capture {
    bodies: Arc<Mutex<Vec<String>>>,
    answers: &'static [(&'static str, &'static str)],
}

impl Capture {
    fn answering(answers: &'static [(&'static str, &'static str)]) -> Capture {
        Capture { bodies: Arc::default(), answers }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl HttpConnector for Capture {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default()).into_owned();
        let action = parameters(&body).into_iter().find(|(k, _)| k == "Action").map(|(_, v)| v).unwrap_or_default();
        let answer = self
            .answers
            .iter()
            .find(|(a, _)| *a == action)
            .map(|(_, answer)| *answer)
            .unwrap_or_else(|| panic!("no canned answer for {action}: {body}"));
        self.bodies.lock().unwrap().push(body);
        // RDS (query) errors are <ErrorResponse>, EC2's <Response><Errors>.
        let code =
            if answer.starts_with("<ErrorResponse") || answer.starts_with("<Response><Errors>") { 400u16 } else { 200 };
        let status = StatusCode::try_from(code).expect("a status");
        HttpConnectorFuture::ready(Ok(HttpResponse::new(status, SdkBody::from(answer))))
    }
}

fn capturing_config(capture: &Capture) -> SdkConfig {
    common::config_sending_to(capture.clone())
}

/// The query-protocol parameters of a captured EC2 or RDS request.
fn parameters(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%2F", "/").replace("%3A", ":")))
        .collect()
}

/// The value of one parameter of a captured request.
fn get<'a>(sent: &'a [(String, String)], name: &str) -> Option<&'a str> {
    sent.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn create_volume_sends_the_callers_client_token_on_every_attempt() {
    let capture = Capture::answering(&[(
        "CreateVolume",
        r#"<CreateVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><volumeId>vol-0new</volumeId></CreateVolumeResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let tags = Tags::from([("snapnest:restore-id".to_owned(), "rs-1".to_owned())]);
    for _ in 0..2 {
        let made =
            cloud.create_volume("snap-0abc", "us-east-1a", "rs-1-vol-0old", &VolumeSettings::default(), &tags).await;
        assert_eq!(made.as_deref(), Ok("vol-0new"));
    }
    let bodies = capture.bodies();
    assert_eq!(bodies.len(), 2, "one request per call: {bodies:?}");
    for body in &bodies {
        let sent = parameters(body);
        assert_eq!(get(&sent, "Action"), Some("CreateVolume"), "{body}");
        // The same token on both: EC2 answers the second with the first one's volume.
        assert_eq!(get(&sent, "ClientToken"), Some("rs-1-vol-0old"), "{body}");
        assert_eq!(get(&sent, "SnapshotId"), Some("snap-0abc"), "{body}");
        assert_eq!(get(&sent, "AvailabilityZone"), Some("us-east-1a"), "{body}");
    }
}

#[tokio::test]
async fn delete_database_skips_the_final_snapshot() {
    let capture = Capture::answering(&[(
        "DeleteDBInstance",
        r#"<DeleteDBInstanceResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DeleteDBInstanceResult><DBInstance><DBInstanceIdentifier>si-demo-mysql-old</DBInstanceIdentifier><DBInstanceStatus>deleting</DBInstanceStatus></DBInstance></DeleteDBInstanceResult></DeleteDBInstanceResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    assert_eq!(cloud.delete_database("si-demo-mysql-old").await, Ok(DeleteOutcome::Deleted));
    let bodies = capture.bodies();
    assert_eq!(bodies.len(), 1, "one request: {bodies:?}");
    let sent = parameters(&bodies[0]);
    assert_eq!(get(&sent, "Action"), Some("DeleteDBInstance"), "{}", bodies[0]);
    assert_eq!(get(&sent, "DBInstanceIdentifier"), Some("si-demo-mysql-old"), "{}", bodies[0]);
    // Without it RDS would take a final snapshot, and refuse the call for want of its name.
    assert_eq!(get(&sent, "SkipFinalSnapshot"), Some("true"), "{}", bodies[0]);
    assert_eq!(get(&sent, "FinalDBSnapshotIdentifier"), None, "{}", bodies[0]);
}

#[tokio::test]
async fn delete_database_of_a_database_already_being_deleted_is_deleted() {
    // RDS refuses a second DeleteDBInstance with InvalidDBInstanceState while the first runs;
    // moto deletes at once and cannot show it.
    let capture = Capture::answering(&[
        (
            "DeleteDBInstance",
            r#"<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>InvalidDBInstanceState</Code><Message>Instance si-demo-mysql-old is already being deleted.</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"#,
        ),
        (
            "DescribeDBInstances",
            r#"<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstancesResult><DBInstances><DBInstance><DBInstanceIdentifier>si-demo-mysql-old</DBInstanceIdentifier><DBInstanceStatus>deleting</DBInstanceStatus></DBInstance></DBInstances></DescribeDBInstancesResult></DescribeDBInstancesResponse>"#,
        ),
    ]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    assert_eq!(cloud.delete_database("si-demo-mysql-old").await, Ok(DeleteOutcome::Deleted));
    let actions: Vec<String> =
        capture.bodies().iter().filter_map(|body| get(&parameters(body), "Action").map(str::to_owned)).collect();
    assert_eq!(actions, ["DeleteDBInstance", "DescribeDBInstances"]);
}

#[tokio::test]
async fn untag_resource_removes_the_keys_of_a_database_by_its_arn() {
    let capture = Capture::answering(&[
        (
            "DescribeDBInstances",
            r#"<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstancesResult><DBInstances><DBInstance><DBInstanceIdentifier>si-demo-mysql-old</DBInstanceIdentifier><DBInstanceArn>arn:aws:rds:us-east-1:123456789012:db:si-demo-mysql-old</DBInstanceArn><DBInstanceStatus>available</DBInstanceStatus></DBInstance></DBInstances></DescribeDBInstancesResult></DescribeDBInstancesResponse>"#,
        ),
        (
            "RemoveTagsFromResource",
            r#"<RemoveTagsFromResourceResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></RemoveTagsFromResourceResponse>"#,
        ),
    ]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let keys = [tag::REPLACED_BY.to_owned(), tag::KEPT_UNTIL.to_owned()];
    assert_eq!(cloud.untag_resource("si-demo-mysql-old", &keys).await, Ok(()));
    let bodies = capture.bodies();
    assert_eq!(bodies.len(), 2, "the ARN is looked up, then the tags removed: {bodies:?}");
    let sent = parameters(&bodies[1]);
    assert_eq!(get(&sent, "Action"), Some("RemoveTagsFromResource"), "{}", bodies[1]);
    assert_eq!(get(&sent, "ResourceName"), Some("arn:aws:rds:us-east-1:123456789012:db:si-demo-mysql-old"));
    assert_eq!(get(&sent, "TagKeys.member.1"), Some(tag::REPLACED_BY), "{}", bodies[1]);
    assert_eq!(get(&sent, "TagKeys.member.2"), Some(tag::KEPT_UNTIL), "{}", bodies[1]);
    assert_eq!(get(&sent, "TagKeys.member.3"), None, "{}", bodies[1]);

    // No keys: nothing is sent at all.
    assert_eq!(cloud.untag_resource("si-demo-mysql-old", &[]).await, Ok(()));
    assert_eq!(capture.bodies().len(), 2);
}

#[tokio::test]
async fn untag_resource_of_a_volume_sends_keys_without_values() {
    let capture = Capture::answering(&[(
        "DeleteTags",
        r#"<DeleteTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><return>true</return></DeleteTagsResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let keys = [tag::KEPT_UNTIL.to_owned()];
    assert_eq!(cloud.untag_resource("vol-0123456789abcdef0", &keys).await, Ok(()));
    // An empty key list must not become a DeleteTags without tags, which deletes every tag.
    assert_eq!(cloud.untag_resource("vol-0123456789abcdef0", &[]).await, Ok(()));
    let bodies = capture.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let sent = parameters(&bodies[0]);
    assert_eq!(get(&sent, "Action"), Some("DeleteTags"), "{}", bodies[0]);
    assert_eq!(get(&sent, "ResourceId.1"), Some("vol-0123456789abcdef0"), "{}", bodies[0]);
    assert_eq!(get(&sent, "Tag.1.Key"), Some(tag::KEPT_UNTIL), "{}", bodies[0]);
    // A value would delete the tag only where it matches: keys alone delete it whatever it holds.
    assert_eq!(get(&sent, "Tag.1.Value"), None, "{}", bodies[0]);
}

#[tokio::test]
async fn a_restored_volume_gets_the_backed_up_volumes_settings() {
    let capture = Capture::answering(&[
        (
            "CreateVolume",
            r#"<CreateVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><volumeId>vol-0new</volumeId></CreateVolumeResponse>"#,
        ),
        (
            "ModifyInstanceAttribute",
            r#"<ModifyInstanceAttributeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><return>true</return></ModifyInstanceAttributeResponse>"#,
        ),
    ]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    // GIVEN an encrypted io2 volume with multi-attach, as backed up
    let settings = VolumeSettings {
        volume_type: Some("io2".into()),
        iops: Some(16000),
        throughput: None,
        encrypted: true,
        kms_key_id: Some("arn:aws:kms:us-east-1:123456789012:key/orders".into()),
        multi_attach: true,
        delete_on_termination: true,
    };
    // WHEN it is restored and attached where it was
    cloud.create_volume("snap-0abc", "us-east-1a", "rs-1-vol-0old", &settings, &Tags::new()).await.unwrap();
    cloud.set_delete_on_termination("i-0abc", "/dev/xvda", true).await.unwrap();
    // THEN CreateVolume names its type, IOPS, key and multi-attach (gp2 and defaults otherwise)
    let bodies = capture.bodies();
    let created = parameters(&bodies[0]);
    assert_eq!(get(&created, "VolumeType"), Some("io2"), "{}", bodies[0]);
    assert_eq!(get(&created, "Iops"), Some("16000"), "{}", bodies[0]);
    assert_eq!(get(&created, "Throughput"), None, "{}", bodies[0]);
    assert_eq!(get(&created, "Encrypted"), Some("true"), "{}", bodies[0]);
    assert_eq!(get(&created, "KmsKeyId"), Some("arn:aws:kms:us-east-1:123456789012:key/orders"), "{}", bodies[0]);
    assert_eq!(get(&created, "MultiAttachEnabled"), Some("true"), "{}", bodies[0]);
    // AND the attachment is made to go with the instance, as the backed-up one did
    let modified = parameters(&bodies[1]);
    assert_eq!(get(&modified, "Action"), Some("ModifyInstanceAttribute"), "{}", bodies[1]);
    assert_eq!(get(&modified, "InstanceId"), Some("i-0abc"), "{}", bodies[1]);
    assert_eq!(get(&modified, "BlockDeviceMapping.1.DeviceName"), Some("/dev/xvda"), "{}", bodies[1]);
    assert_eq!(get(&modified, "BlockDeviceMapping.1.Ebs.DeleteOnTermination"), Some("true"), "{}", bodies[1]);
}

#[tokio::test]
async fn a_gp2_volumes_reported_iops_are_not_sent_back() {
    let capture = Capture::answering(&[(
        "CreateVolume",
        r#"<CreateVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><volumeId>vol-0new</volumeId></CreateVolumeResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    // GIVEN a gp2 volume, for which DescribeVolumes reports its baseline IOPS and throughput
    let settings = VolumeSettings {
        volume_type: Some("gp2".into()),
        iops: Some(100),
        throughput: Some(128),
        ..Default::default()
    };
    // WHEN it is restored THEN neither is sent (CreateVolume refuses them for gp2)
    cloud.create_volume("snap-0abc", "us-east-1a", "rs-1-vol", &settings, &Tags::new()).await.unwrap();
    let sent = parameters(&capture.bodies()[0]);
    assert_eq!(get(&sent, "VolumeType"), Some("gp2"));
    assert_eq!((get(&sent, "Iops"), get(&sent, "Throughput"), get(&sent, "Encrypted")), (None, None, None));
}

#[tokio::test]
async fn a_restored_database_lands_in_the_backed_up_databases_network_and_groups() {
    let capture = Capture::answering(&[(
        "RestoreDBInstanceFromDBSnapshot",
        r#"<RestoreDBInstanceFromDBSnapshotResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><RestoreDBInstanceFromDBSnapshotResult><DBInstance><DBInstanceIdentifier>orders-rst1</DBInstanceIdentifier><DBInstanceStatus>creating</DBInstanceStatus></DBInstance></RestoreDBInstanceFromDBSnapshotResult></RestoreDBInstanceFromDBSnapshotResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    // GIVEN a Multi-AZ database in its own subnet group, security groups and groups
    let settings = DatabaseSettings {
        instance_class: Some("db.m6g.large".into()),
        subnet_group: Some("orders-db".into()),
        security_group_ids: vec!["sg-0a".into(), "sg-0b".into()],
        parameter_group: Some("orders-mysql8".into()),
        option_group: Some("orders-options".into()),
        multi_az: true,
        publicly_accessible: false,
        deletion_protection: true,
        storage_type: Some("gp3".into()),
        port: Some(3306),
    };
    // WHEN its snapshot is restored
    cloud.restore_database("snapnest-bk-1-orders", "orders-rst1", &settings, &Tags::new()).await.unwrap();
    // THEN the request names all of it (the default VPC, groups and Single-AZ otherwise)
    let bodies = capture.bodies();
    let sent = parameters(&bodies[0]);
    for (name, value) in [
        ("DBInstanceClass", "db.m6g.large"),
        ("DBSubnetGroupName", "orders-db"),
        ("VpcSecurityGroupIds.VpcSecurityGroupId.1", "sg-0a"),
        ("VpcSecurityGroupIds.VpcSecurityGroupId.2", "sg-0b"),
        ("DBParameterGroupName", "orders-mysql8"),
        ("OptionGroupName", "orders-options"),
        ("MultiAZ", "true"),
        ("PubliclyAccessible", "false"),
        ("DeletionProtection", "true"),
        ("StorageType", "gp3"),
        ("Port", "3306"),
    ] {
        assert_eq!(get(&sent, name), Some(value), "{name} in {}", bodies[0]);
    }
}

#[tokio::test]
async fn a_snapshots_size_is_the_data_it_holds_not_the_volumes_provisioned_size() {
    let capture = Capture::answering(&[(
        "DescribeSnapshots",
        r#"<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><snapshotSet>
            <item><snapshotId>snap-full</snapshotId><status>completed</status><progress>100%</progress><volumeSize>100</volumeSize><fullSnapshotSizeInBytes>3221225472</fullSnapshotSizeInBytes></item>
            <item><snapshotId>snap-old</snapshotId><status>completed</status><progress>100%</progress><volumeSize>8</volumeSize></item>
        </snapshotSet></DescribeSnapshotsResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    // WHEN EC2 reports a 100 GiB volume's snapshot holding 3 GiB, and one without the figure
    let reported = cloud.describe_snapshots(&["snap-full".into(), "snap-old".into()]).await.unwrap();
    let size = |id: &str| reported.iter().find(|s| s.snapshot_id == id).map(|s| s.size_bytes);
    // THEN the first counts 3 GiB, the second its provisioned 8 GiB
    assert_eq!(size("snap-full"), Some(3 << 30));
    assert_eq!(size("snap-old"), Some(8 << 30));
}

#[tokio::test]
async fn a_database_that_is_backing_up_is_busy_not_failed() {
    // RDS refuses CreateDBSnapshot while the instance is not available; moto never does.
    let capture = Capture::answering(&[(
        "CreateDBSnapshot",
        r#"<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>InvalidDBInstanceState</Code><Message>Database instance is not in available state.</Message></Error><RequestId>r-2</RequestId></ErrorResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let answer = cloud.snapshot_database("orders", "snapnest-bk-1-orders", &Tags::new()).await;
    assert_eq!(
        answer,
        Err(snapnest_core::cloud::CloudError::Busy("Database instance is not in available state.".into()))
    );
}

#[tokio::test]
async fn copies_are_encrypted_with_the_destination_key_and_a_quota_refusal_waits() {
    let capture = Capture::answering(&[
        (
            "DescribeSnapshots",
            r#"<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><snapshotSet><item><snapshotId>snap-src</snapshotId><volumeId>vol-1</volumeId><status>completed</status></item></snapshotSet></DescribeSnapshotsResponse>"#,
        ),
        (
            "CopySnapshot",
            r#"<Response><Errors><Error><Code>ResourceLimitExceeded</Code><Message>You have exceeded the number of concurrent snapshot copies.</Message></Error></Errors><RequestID>r-3</RequestID></Response>"#,
        ),
        (
            "DescribeDBSnapshots",
            r#"<DescribeDBSnapshotsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBSnapshotsResult><DBSnapshots><DBSnapshot><DBSnapshotIdentifier>snapnest-bk-1-orders</DBSnapshotIdentifier><DBSnapshotArn>arn:aws:rds:us-east-1:123456789012:snapshot:snapnest-bk-1-orders</DBSnapshotArn><Status>available</Status><Encrypted>true</Encrypted></DBSnapshot></DBSnapshots></DescribeDBSnapshotsResult></DescribeDBSnapshotsResponse>"#,
        ),
        (
            "CopyDBSnapshot",
            r#"<CopyDBSnapshotResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><CopyDBSnapshotResult><DBSnapshot><DBSnapshotIdentifier>snapnest-bk-1-orders-replica</DBSnapshotIdentifier></DBSnapshot></CopyDBSnapshotResult></CopyDBSnapshotResponse>"#,
        ),
    ]);
    let provider = AwsProvider::new(&capturing_config(&capture));
    let west = provider.region("us-west-2").unwrap();
    let key = Some("alias/snapnest-replicas");
    // WHEN an EBS snapshot is copied with the destination's key and the account is at its quota
    let answer = west.copy_snapshot("us-east-1", "snap-src", key, &Tags::new()).await;
    // THEN the copy waits (Busy), not fails
    assert!(matches!(answer, Err(snapnest_core::cloud::CloudError::Busy(_))), "{answer:?}");
    // WHEN a DB snapshot is copied
    let group = Some("orders-mysql8-west");
    west.copy_db_snapshot(
        "us-east-1",
        "snapnest-bk-1-orders",
        "snapnest-bk-1-orders-replica",
        key,
        group,
        &Tags::new(),
    )
    .await
    .unwrap();
    // THEN both requests name the destination's key (an encrypted RDS copy needs it)
    let bodies = capture.bodies();
    let copy = bodies.iter().map(|b| parameters(b)).find(|p| get(p, "Action") == Some("CopySnapshot")).unwrap();
    assert_eq!((get(&copy, "KmsKeyId"), get(&copy, "Encrypted")), (Some("alias/snapnest-replicas"), Some("true")));
    let db_copy = bodies.iter().map(|b| parameters(b)).find(|p| get(p, "Action") == Some("CopyDBSnapshot")).unwrap();
    assert_eq!(get(&db_copy, "KmsKeyId"), Some("alias/snapnest-replicas"));
    // and the DB copy the destination's option group for a source with a non-default one
    assert_eq!(get(&db_copy, "OptionGroupName"), Some("orders-mysql8-west"));
    assert_eq!(
        get(&db_copy, "SourceDBSnapshotIdentifier"),
        Some("arn:aws:rds:us-east-1:123456789012:snapshot:snapnest-bk-1-orders")
    );
}

#[tokio::test]
async fn an_unencrypted_db_snapshot_is_copied_without_a_key() {
    // RDS refuses a KmsKeyId for an unencrypted source.
    let capture = Capture::answering(&[
        (
            "DescribeDBSnapshots",
            r#"<DescribeDBSnapshotsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBSnapshotsResult><DBSnapshots><DBSnapshot><DBSnapshotIdentifier>snapnest-bk-1-orders</DBSnapshotIdentifier><DBSnapshotArn>arn:aws:rds:us-east-1:123456789012:snapshot:snapnest-bk-1-orders</DBSnapshotArn><Status>available</Status><Encrypted>false</Encrypted></DBSnapshot></DBSnapshots></DescribeDBSnapshotsResult></DescribeDBSnapshotsResponse>"#,
        ),
        (
            "CopyDBSnapshot",
            r#"<CopyDBSnapshotResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><CopyDBSnapshotResult><DBSnapshot><DBSnapshotIdentifier>snapnest-bk-1-orders-replica</DBSnapshotIdentifier></DBSnapshot></CopyDBSnapshotResult></CopyDBSnapshotResponse>"#,
        ),
    ]);
    let west = AwsProvider::new(&capturing_config(&capture)).region("us-west-2").unwrap();
    let key = Some("alias/snapnest-replicas");
    west.copy_db_snapshot("us-east-1", "snapnest-bk-1-orders", "copy", key, None, &Tags::new()).await.unwrap();
    let bodies = capture.bodies();
    let db_copy = bodies.iter().map(|b| parameters(b)).find(|p| get(p, "Action") == Some("CopyDBSnapshot")).unwrap();
    assert_eq!(get(&db_copy, "KmsKeyId"), None);
    assert_eq!(get(&db_copy, "OptionGroupName"), None);
}

#[tokio::test]
async fn deletion_protection_is_changed_at_once() {
    let capture = Capture::answering(&[(
        "ModifyDBInstance",
        r#"<ModifyDBInstanceResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><ModifyDBInstanceResult><DBInstance><DBInstanceIdentifier>orders-rst1</DBInstanceIdentifier></DBInstance></ModifyDBInstanceResult></ModifyDBInstanceResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    // WHEN a roll-back turns off the protection of the database it is about to delete
    cloud.set_deletion_protection("orders-rst1", false).await.unwrap();
    // THEN it is one ModifyDBInstance applied now (a pending change would leave it protected)
    let sent = parameters(&capture.bodies()[0]);
    assert_eq!(get(&sent, "DBInstanceIdentifier"), Some("orders-rst1"));
    assert_eq!(get(&sent, "DeletionProtection"), Some("false"));
    assert_eq!(get(&sent, "ApplyImmediately"), Some("true"));
}

fn launch_devices() -> Vec<ImageDevice> {
    vec![
        ImageDevice {
            device: "/dev/xvda".into(),
            snapshot_id: "snap-0root".into(),
            settings: VolumeSettings {
                volume_type: Some("gp3".into()),
                iops: Some(4000),
                throughput: Some(250),
                delete_on_termination: true,
                ..Default::default()
            },
        },
        ImageDevice {
            device: "/dev/xvdb".into(),
            snapshot_id: "snap-0data".into(),
            settings: VolumeSettings {
                volume_type: Some("io2".into()),
                iops: Some(16000),
                encrypted: true,
                kms_key_id: Some("arn:aws:kms:us-east-1:123456789012:key/data".into()),
                ..Default::default()
            },
        },
    ]
}

#[tokio::test]
async fn an_image_is_registered_from_the_points_snapshots_and_found_by_name_when_registered_before() {
    let capture = Capture::answering(&[
        (
            "RegisterImage",
            r#"<Response><Errors><Error><Code>InvalidAMIName.Duplicate</Code><Message>AMI name snapnest-rs-1-i-1 is already in use by AMI ami-0first</Message></Error></Errors><RequestID>r</RequestID></Response>"#,
        ),
        (
            "DescribeImages",
            r#"<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><imagesSet><item><imageId>ami-0first</imageId><imageState>available</imageState></item></imagesSet></DescribeImagesResponse>"#,
        ),
    ]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let spec = ImageSpec {
        name: "snapnest-rs-1-i-1".into(),
        architecture: Some("arm64".into()),
        root_device_name: "/dev/xvda".into(),
        ena_support: true,
        boot_mode: Some("uefi".into()),
        devices: launch_devices(),
    };
    let tags = Tags::from([(tag::RESTORE_ID.to_owned(), "rs-1".to_owned())]);
    assert_eq!(cloud.register_image(&spec, &tags).await.as_deref(), Ok("ami-0first"), "the image registered first");
    let bodies = capture.bodies();
    let sent = parameters(&bodies[0]);
    let body = &bodies[0];
    for (name, value) in [
        ("Action", "RegisterImage"),
        ("Name", "snapnest-rs-1-i-1"),
        ("RootDeviceName", "/dev/xvda"),
        ("VirtualizationType", "hvm"),
        ("Architecture", "arm64"),
        ("EnaSupport", "true"),
        ("BootMode", "uefi"),
        ("BlockDeviceMapping.1.DeviceName", "/dev/xvda"),
        ("BlockDeviceMapping.1.Ebs.SnapshotId", "snap-0root"),
        ("BlockDeviceMapping.1.Ebs.VolumeType", "gp3"),
        ("BlockDeviceMapping.1.Ebs.Iops", "4000"),
        ("BlockDeviceMapping.1.Ebs.Throughput", "250"),
        ("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true"),
        ("BlockDeviceMapping.2.Ebs.SnapshotId", "snap-0data"),
        ("TagSpecification.1.ResourceType", "image"),
    ] {
        assert_eq!(get(&sent, name), Some(value), "{name}: {body}");
    }
    // RegisterImage refuses an encryption state in its mappings: the launch carries it.
    assert_eq!(get(&sent, "BlockDeviceMapping.2.Ebs.Encrypted"), None, "{body}");
    assert_eq!(get(&sent, "BlockDeviceMapping.2.Ebs.KmsKeyId"), None, "{body}");
    let found = parameters(&bodies[1]);
    assert_eq!(get(&found, "Owner.1"), Some("self"), "{}", bodies[1]);
    assert_eq!(get(&found, "Filter.1.Name"), Some("name"), "{}", bodies[1]);
    assert_eq!(get(&found, "Filter.1.Value.1"), Some("snapnest-rs-1-i-1"), "{}", bodies[1]);
}

#[tokio::test]
async fn an_instance_is_launched_in_its_network_with_its_profile_and_keys_under_one_client_token() {
    let capture = Capture::answering(&[(
        "RunInstances",
        r#"<RunInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><instancesSet><item><instanceId>i-0new</instanceId></item></instancesSet></RunInstancesResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let settings = InstanceSettings {
        instance_type: Some("m7g.large".into()),
        subnet_id: Some("subnet-0app".into()),
        security_group_ids: vec!["sg-0app".into(), "sg-0ssh".into()],
        iam_instance_profile: Some("arn:aws:iam::123456789012:instance-profile/app".into()),
        key_name: Some("app-key".into()),
        ..Default::default()
    };
    let tags = Tags::from([(tag::CLONE_OF.to_owned(), "i-1".to_owned())]);
    for _ in 0..2 {
        let launched = cloud.run_instance("ami-0first", &settings, &launch_devices(), "rs-1-i-1", &tags).await;
        assert_eq!(launched.as_deref(), Ok("i-0new"));
    }
    let bodies = capture.bodies();
    assert_eq!(bodies.len(), 2);
    for body in &bodies {
        let sent = parameters(body);
        for (name, value) in [
            ("Action", "RunInstances"),
            ("ImageId", "ami-0first"),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            // The same token on every attempt: EC2 answers a repeat with the first instance.
            ("ClientToken", "rs-1-i-1"),
            ("InstanceType", "m7g.large"),
            ("SubnetId", "subnet-0app"),
            ("SecurityGroupId.1", "sg-0app"),
            ("SecurityGroupId.2", "sg-0ssh"),
            ("IamInstanceProfile.Arn", "arn:aws:iam::123456789012:instance-profile/app"),
            ("KeyName", "app-key"),
            ("BlockDeviceMapping.1.Ebs.SnapshotId", "snap-0root"),
            ("BlockDeviceMapping.2.DeviceName", "/dev/xvdb"),
            ("BlockDeviceMapping.2.Ebs.SnapshotId", "snap-0data"),
            ("BlockDeviceMapping.2.Ebs.VolumeType", "io2"),
            ("BlockDeviceMapping.2.Ebs.Iops", "16000"),
            ("BlockDeviceMapping.2.Ebs.Encrypted", "true"),
            ("BlockDeviceMapping.2.Ebs.KmsKeyId", "arn:aws:kms:us-east-1:123456789012:key/data"),
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.2.ResourceType", "volume"),
        ] {
            assert_eq!(get(&sent, name), Some(value), "{name}: {body}");
        }
        assert_eq!(get(&sent, "BlockDeviceMapping.1.Ebs.Encrypted"), None, "{body}");
    }
}

#[tokio::test]
async fn a_snapshot_gone_behind_snapnests_back_is_not_found_though_the_role_refuses_its_delete() {
    // The role may delete only snapshots tagged snapnest:managed; one that no longer exists
    // has no tags, so EC2 answers UnauthorizedOperation: the adapter asks whether it exists.
    let gone = Capture::answering(&[
        (
            "DeleteSnapshot",
            r#"<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>r</RequestID></Response>"#,
        ),
        (
            "DescribeSnapshots",
            r#"<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><snapshotSet/></DescribeSnapshotsResponse>"#,
        ),
    ]);
    let cloud = AwsProvider::new(&capturing_config(&gone)).home();
    assert_eq!(cloud.delete_snapshot("snap-0gone").await, Ok(DeleteOutcome::NotFound));
    assert_eq!(gone.bodies().len(), 2, "the delete, then the describe");

    // One that exists and is refused stays refused: the role is wrong, and that is said.
    let there = Capture::answering(&[
        (
            "DeleteSnapshot",
            r#"<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>r</RequestID></Response>"#,
        ),
        (
            "DescribeSnapshots",
            r#"<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><snapshotSet><item><snapshotId>snap-0there</snapshotId><status>completed</status><progress>100%</progress><volumeSize>8</volumeSize></item></snapshotSet></DescribeSnapshotsResponse>"#,
        ),
    ]);
    let cloud = AwsProvider::new(&capturing_config(&there)).home();
    assert!(
        matches!(cloud.delete_snapshot("snap-0there").await, Err(CloudError::Rejected { code, .. }) if code == "UnauthorizedOperation")
    );
}

#[tokio::test]
async fn a_group_of_chosen_disks_excludes_the_root_and_the_other_data_disks() {
    let capture = Capture::answering(&[
        (
            "DescribeInstances",
            r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><reservationSet><item><instancesSet><item><instanceId>i-0app</instanceId><instanceState><code>16</code><name>running</name></instanceState><rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs><volumeId>vol-0root</volumeId><status>attached</status></ebs></item><item><deviceName>/dev/xvdb</deviceName><ebs><volumeId>vol-0chosen</volumeId><status>attached</status></ebs></item><item><deviceName>/dev/xvdc</deviceName><ebs><volumeId>vol-0other</volumeId><status>attached</status></ebs></item></blockDeviceMapping></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#,
        ),
        (
            "CreateSnapshots",
            r#"<CreateSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><snapshotSet><item><snapshotId>snap-0chosen</snapshotId><volumeId>vol-0chosen</volumeId></item></snapshotSet></CreateSnapshotsResponse>"#,
        ),
        (
            "CreateTags",
            r#"<CreateTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><return>true</return></CreateTagsResponse>"#,
        ),
    ]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let chosen = snapnest_core::cloud::VolumeSelection::Only(vec!["vol-0chosen".into()]);
    let started = cloud.snapshot_instance("i-0app", &chosen, &Tags::new()).await.unwrap();
    assert_eq!(started.len(), 1);
    let bodies = capture.bodies();
    let body = bodies.iter().find(|b| b.contains("Action=CreateSnapshots")).unwrap();
    let sent = parameters(body);
    // EC2 API Reference, CreateSnapshots InstanceSpecification: the root has its own flag,
    // the data volumes not chosen are listed by id.
    assert_eq!(get(&sent, "InstanceSpecification.ExcludeBootVolume"), Some("true"), "{body}");
    assert_eq!(get(&sent, "InstanceSpecification.ExcludeDataVolumeId.1"), Some("vol-0other"), "{body}");
    assert_eq!(get(&sent, "InstanceSpecification.ExcludeDataVolumeId.2"), None, "{body}");
    // Tags go on at creation: one DescribeInstances and one CreateSnapshots, no CreateTags.
    let actions: Vec<String> = bodies.iter().filter_map(|b| get(&parameters(b), "Action").map(str::to_owned)).collect();
    assert_eq!(actions, vec!["DescribeInstances", "CreateSnapshots"]);
}

#[tokio::test]
async fn a_group_of_every_disk_is_one_call_and_a_terminated_instance_is_said_so() {
    let capture = Capture::answering(&[(
        "CreateSnapshots",
        r#"<CreateSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><snapshotSet><item><snapshotId>snap-0root</snapshotId><volumeId>vol-0root</volumeId></item><item><snapshotId>snap-0data</snapshotId><volumeId>vol-0data</volumeId></item></snapshotSet></CreateSnapshotsResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let every = snapnest_core::cloud::VolumeSelection::All;
    let tags = Tags::from([(tag::BACKUP_ID.to_owned(), "bk-1".to_owned())]);
    let started = cloud.snapshot_instance("i-0app", &every, &tags).await.unwrap();
    assert_eq!(started.len(), 2);
    // One round trip per instance: no DescribeInstances first, every tag on at creation.
    let bodies = capture.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let sent = parameters(&bodies[0]);
    assert_eq!(get(&sent, "Action"), Some("CreateSnapshots"));
    assert_eq!(get(&sent, "InstanceSpecification.ExcludeBootVolume"), Some("false"));
    assert_eq!(get(&sent, "TagSpecification.1.ResourceType"), Some("snapshot"));
    assert_eq!(get(&sent, "TagSpecification.1.Tag.1.Key"), Some(tag::BACKUP_ID));

    // EC2 may accept CreateSnapshots for a terminated instance and snapshot nothing: the
    // instance's state then says why.
    let capture = Capture::answering(&[
        (
            "CreateSnapshots",
            r#"<CreateSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><snapshotSet/></CreateSnapshotsResponse>"#,
        ),
        (
            "DescribeInstances",
            r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><reservationSet><item><instancesSet><item><instanceId>i-0gone</instanceId><instanceState><code>48</code><name>terminated</name></instanceState></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#,
        ),
    ]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let answer = cloud.snapshot_instance("i-0gone", &every, &tags).await;
    assert!(matches!(answer, Err(CloudError::InstanceReleased(ref id)) if id == "i-0gone"), "{answer:?}");
}

#[tokio::test]
async fn the_running_snapshots_of_many_backups_are_listed_by_tag_a_thousand_a_page() {
    let capture = Capture::answering(&[(
        "DescribeSnapshots",
        r#"<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><snapshotSet><item><snapshotId>snap-0a</snapshotId><volumeId>vol-0a</volumeId><status>pending</status><progress>40%</progress><volumeSize>8</volumeSize></item><item><snapshotId>snap-0b</snapshotId><volumeId>vol-0b</volumeId><status>completed</status><progress>100%</progress><volumeSize>8</volumeSize></item></snapshotSet></DescribeSnapshotsResponse>"#,
    )]);
    let cloud = AwsProvider::new(&capturing_config(&capture)).home();
    let backups = vec!["bk-1".to_owned(), "bk-2".to_owned()];
    let found = cloud.describe_snapshots_tagged(tag::BACKUP_ID, &backups).await.unwrap();
    assert_eq!(found.len(), 2);
    let bodies = capture.bodies();
    assert_eq!(bodies.len(), 1);
    let sent = parameters(&bodies[0]);
    // EC2 API Reference, DescribeSnapshots: MaxResults (5 to 1,000) cannot go with
    // SnapshotIds, so many snapshots are described by a tag filter, this account's only.
    assert_eq!(get(&sent, "MaxResults"), Some("1000"));
    assert_eq!(get(&sent, "Owner.1"), Some("self"));
    assert_eq!(get(&sent, "Filter.1.Name"), Some(format!("tag:{}", tag::BACKUP_ID).as_str()));
    assert_eq!(get(&sent, "Filter.1.Value.1"), Some("bk-1"));
    assert_eq!(get(&sent, "Filter.1.Value.2"), Some("bk-2"));
    assert_eq!(get(&sent, "SnapshotId.1"), None);
}

/// Answers EBS direct API `ListChangedBlocks` (REST-JSON) a page at a time: two blocks and a
/// next token, then one block; records each request's URI.
#[derive(Debug, Clone, Default)]
struct ChangedBlocks {
    uris: Arc<Mutex<Vec<String>>>,
}

impl HttpConnector for ChangedBlocks {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let uri = request.uri().to_string();
        let body = if uri.contains("pageToken=") {
            r#"{"ChangedBlocks":[{"BlockIndex":9}],"BlockSize":524288,"VolumeSize":8}"#
        } else {
            r#"{"ChangedBlocks":[{"BlockIndex":1},{"BlockIndex":2}],"BlockSize":524288,"VolumeSize":8,"NextToken":"page-2"}"#
        };
        self.uris.lock().unwrap().push(uri);
        let mut response = HttpResponse::new(StatusCode::try_from(200u16).unwrap(), SdkBody::from(body));
        response.headers_mut().insert("content-type", "application/json");
        HttpConnectorFuture::ready(Ok(response))
    }
}

#[tokio::test]
async fn what_a_snapshot_adds_to_its_chain_is_its_changed_blocks_over_every_page() {
    let blocks = ChangedBlocks::default();
    let config = common::config_sending_to(blocks.clone());
    let cloud = AwsProvider::new(&config).home();
    // EBS direct APIs, ListChangedBlocks: the blocks that differ, BlockSize bytes each.
    assert_eq!(cloud.changed_bytes("snap-0earlier", "snap-0later").await, Ok(3 * 524_288));
    let uris = blocks.uris.lock().unwrap().clone();
    assert_eq!(uris.len(), 2, "both pages: {uris:?}");
    assert!(uris[0].contains("/snapshots/snap-0later/changedblocks"), "{uris:?}");
    assert!(uris[0].contains("firstSnapshotId=snap-0earlier"), "{uris:?}");
    assert!(uris[1].contains("pageToken=page-2"), "{uris:?}");
}
