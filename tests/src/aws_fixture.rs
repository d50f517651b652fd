//! Resources in moto for the tests that run snapnest against the AWS APIs.

use aws_sdk_ec2::types::{self as ec2, ResourceType, TagSpecification};
use aws_sdk_rds::types as rds;

/// Two running instances, each with its root volume (moto gives `/dev/sda1`, 8 GiB) and two
/// data volumes at `/dev/sdf` and `/dev/sdg`, and one MySQL DB instance, all tagged
/// `service-instance-id=<si>`. Returns the DB instance id.
pub async fn create_service_instance(
    ec2: &aws_sdk_ec2::Client,
    rds: &aws_sdk_rds::Client,
    tag_key: &str,
    si: &str,
) -> String {
    create_instances(ec2, tag_key, si, 2).await;
    let db_id = format!("{si}-mysql");
    rds.create_db_instance()
        .db_instance_identifier(&db_id)
        .engine("mysql")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("contract-password-1")
        .tags(rds::Tag::builder().key(tag_key).value(si).build())
        .send()
        .await
        .expect("create the database");
    db_id
}

/// `count` running instances tagged `tag_key=si`, each with its root volume and two data
/// volumes at `/dev/sdf` and `/dev/sdg`.
pub async fn create_instances(ec2: &aws_sdk_ec2::Client, tag_key: &str, si: &str, count: usize) {
    for _ in 0..count {
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(ec2::Tag::builder().key(tag_key).value(si).build())
            .tags(ec2::Tag::builder().key("Name").value(si).build())
            .build();
        let reservation = ec2
            .run_instances()
            .image_id("ami-1e749f67")
            .instance_type(ec2::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .tag_specifications(tags)
            .send()
            .await
            .expect("run an instance");
        let instance = &reservation.instances()[0];
        let instance_id = instance.instance_id().expect("instance id");
        let az = instance.placement().and_then(|p| p.availability_zone()).expect("an AZ");
        for (device, size) in [("/dev/sdf", 50), ("/dev/sdg", 100)] {
            let volume = ec2.create_volume().availability_zone(az).size(size).send().await.expect("create a volume");
            let volume_id = volume.volume_id().expect("volume id");
            ec2.attach_volume()
                .volume_id(volume_id)
                .instance_id(instance_id)
                .device(device)
                .send()
                .await
                .expect("attach");
        }
    }
}

/// A customer-managed KMS key in moto's `region`; returns its ARN. (A JSON 1.1 request of
/// KMS's own protocol: moto reads the region from the credential scope and checks no
/// signature.)
pub async fn create_kms_key(region: &str) -> String {
    let endpoint = crate::moto::Moto::shared().endpoint.clone();
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("X-Amz-Target", "TrentService.CreateKey")
        .header(
            "Authorization",
            format!("AWS4-HMAC-SHA256 Credential=testing/20261130/{region}/kms/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(r#"{"Description": "snapnest test key"}"#)
        .send()
        .await
        .expect("create a KMS key")
        .json()
        .await
        .expect("a CreateKey answer");
    answer["KeyMetadata"]["Arn"].as_str().expect("the key's ARN").to_owned()
}

/// snapnest on moto: a DynamoDB table made from `template.yaml`, a service instance of two
/// instances × three volumes and one database, the service built with
/// `SNAPNEST_STORE=dynamodb SNAPNEST_CLOUD=aws`, and raw SDK clients to check the emulator.
pub struct MotoSnapnest {
    pub app: std::sync::Arc<snapnest_core::Snapnest>,
    pub table: String,
    pub service_instance_id: String,
    pub db_id: String,
    pub ec2: aws_sdk_ec2::Client,
    pub rds: aws_sdk_rds::Client,
    pub ec2_west: aws_sdk_ec2::Client,
    pub rds_west: aws_sdk_rds::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

pub const HOME: &str = "us-east-1";
pub const WEST: &str = "us-west-2";

impl MotoSnapnest {
    /// Everything with names unique to this call (moto's state is shared by the process).
    pub async fn start(name: &str) -> MotoSnapnest {
        Self::start_with(name, &[]).await
    }

    /// As [`MotoSnapnest::start`], with more configuration (`SNAPNEST_*` variables).
    pub async fn start_with(name: &str, extra_env: &[(&str, &str)]) -> MotoSnapnest {
        crate::moto::Moto::shared();
        // moto answers some calls it cannot serve with HTTP 500: fail fast, do not retry them.
        std::env::set_var("AWS_MAX_ATTEMPTS", "2");
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let service_instance_id = format!("si-{name}-{}", &unique[..8]);
        let table = format!("snapnest-{name}-{}", &unique[..8]);
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(HOME))
            .load()
            .await;
        let west = |b: aws_sdk_ec2::config::Builder| b.region(aws_config::Region::new(WEST)).build();
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let rds = aws_sdk_rds::Client::new(&sdk);
        let ec2_west = aws_sdk_ec2::Client::from_conf(west(aws_sdk_ec2::config::Builder::from(&sdk)));
        let rds_west = aws_sdk_rds::Client::from_conf(
            aws_sdk_rds::config::Builder::from(&sdk).region(aws_config::Region::new(WEST)).build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        crate::template::create_table_from_template(&dynamodb, &crate::moto::repo_root().join("template.yaml"), &table)
            .await
            .expect("create the table from template.yaml");
        let db_id = create_service_instance(&ec2, &rds, "service-instance-id", &service_instance_id).await;
        let mut env = vec![
            ("SNAPNEST_STORE", "dynamodb"),
            ("SNAPNEST_TABLE", table.as_str()),
            ("SNAPNEST_CLOUD", "aws"),
            ("AWS_REGION", HOME),
        ];
        env.extend_from_slice(extra_env);
        let config = snapnest_lambda::config::Config::from_lookup(|k| {
            env.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string())
        })
        .expect("configuration");
        let app = std::sync::Arc::new(snapnest_lambda::runtime::build(&config).await.expect("build snapnest on moto"));
        MotoSnapnest { app, table, service_instance_id, db_id, ec2, rds, ec2_west, rds_west, dynamodb }
    }

    /// The environment `cargo lambda watch` passes to the functions to run them on this.
    pub fn function_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SNAPNEST_STORE", "dynamodb".into()),
            ("SNAPNEST_TABLE", self.table.clone()),
            ("SNAPNEST_CLOUD", "aws".into()),
            ("AWS_REGION", HOME.into()),
            ("AWS_ENDPOINT_URL", crate::moto::Moto::shared().endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_MAX_ATTEMPTS", "2".into()),
        ]
    }
}
