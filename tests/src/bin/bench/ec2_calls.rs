//! EC2 calls per snapshot, through the real SDK against moto and counted on the wire (every
//! request the SDK sends, retries and pages included): to create a point of 40 instances ×
//! (a root and 5 data volumes), and to delete it when it expires.

use std::sync::{Arc, Mutex};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::status::JobStatus;
use snapnest_core::Snapnest;

use crate::figure;

const INSTANCES: usize = 40;
const DATA_VOLUMES: usize = 5;

/// Passes every request on, writing down the EC2 actions (query protocol, EC2's version).
#[derive(Debug, Clone)]
struct CountEc2 {
    inner: SharedHttpConnector,
    actions: Arc<Mutex<Vec<String>>>,
}

impl HttpConnector for CountEc2 {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default()).into_owned();
        if body.contains("Version=2016-11-15") {
            let action = body.split('&').find_map(|p| p.strip_prefix("Action=")).unwrap_or("?").to_owned();
            self.actions.lock().unwrap().push(action);
        }
        self.inner.call(request)
    }
}

pub async fn run() -> crate::Outcome {
    // moto on 127.0.0.1, started once for the process (AWS_ENDPOINT_URL points at it).
    snapnest_e2e::moto::Moto::shared();
    std::env::set_var("AWS_MAX_ATTEMPTS", "2");
    let sdk = snapnest_aws::sdk_config("us-east-1").await;
    let plain: SharedHttpClient = aws_smithy_http_client::Builder::new().build_http();
    let actions = Arc::new(Mutex::new(Vec::new()));
    let counted = actions.clone();
    let counting = http_client_fn(move |settings, components| {
        let inner = plain.http_connector(settings, components);
        SharedHttpConnector::new(CountEc2 { inner, actions: counted.clone() })
    });
    let sdk = sdk.into_builder().http_client(counting).build();
    let ec2 = aws_sdk_ec2::Client::new(&sdk);

    // The service instance, made in moto (not counted).
    let si = format!("si-calls-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    for _ in 0..INSTANCES {
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("service-instance-id").value(&si).build())
            .build();
        let reservation = ec2
            .run_instances()
            .image_id("ami-1e749f67")
            .min_count(1)
            .max_count(1)
            .tag_specifications(tags)
            .send()
            .await?;
        let instance = &reservation.instances()[0];
        let instance_id = instance.instance_id().ok_or("an instance id")?;
        let az = instance.placement().and_then(|p| p.availability_zone()).ok_or("an AZ")?;
        for n in 0..DATA_VOLUMES {
            let volume = ec2.create_volume().availability_zone(az).size(8).send().await?;
            let device = format!("/dev/sd{}", (b'f' + n as u8) as char);
            let volume_id = volume.volume_id().ok_or("a volume id")?;
            ec2.attach_volume().volume_id(volume_id).instance_id(instance_id).device(device).send().await?;
        }
    }

    let data = tempfile::tempdir()?;
    let store = Arc::new(snapnest_local::embedded::EmbeddedStore::open(data.path())?);
    let clouds = Arc::new(snapnest_aws::cloud::AwsProvider::new(&sdk));
    let app = Snapnest::new(store, clouds, Arc::new(snapnest_core::clock::SystemClock), crate::world::settings());

    actions.lock().unwrap().clear();
    let request = BackupRequest { retention_days: Some(1), ..Default::default() };
    let point = app.backups.create(&si, &request, BackupOrigin::manual()).await?;
    let create_calls = std::mem::take(&mut *actions.lock().unwrap());
    let snapshots = point.items.iter().filter(|i| i.snapshot_id.is_some()).count();
    // moto's snapshots are complete at once: one poll finishes the point.
    let mut finished = app.backups.get(&point.backup_id).await?;
    for _ in 0..10 {
        if finished.status.is_terminal() {
            break;
        }
        app.poller.poll_active().await?;
        finished = app.backups.get(&point.backup_id).await?;
    }
    if finished.status != JobStatus::Succeeded {
        return Err(format!("the point ended {:?}", finished.status).into());
    }
    let poll_calls = std::mem::take(&mut *actions.lock().unwrap());

    // Two days on, the point has expired: expire-retention deletes its snapshots.
    let later = chrono::Utc::now() + chrono::Duration::days(2);
    let summary = snapnest_e2e::expire_at(&app, later).await?;
    let clean_calls = std::mem::take(&mut *actions.lock().unwrap());

    let per = |calls: &[String]| calls.len() as f64 / snapshots as f64;
    figure("moto.snapshots", snapshots);
    figure("moto.create.ec2_calls", create_calls.len());
    figure("moto.create.ec2_calls_by_action", by_action(&create_calls));
    figure("moto.create.ec2_calls_per_snapshot", format!("{:.3}", per(&create_calls)));
    figure("moto.poll.ec2_calls", poll_calls.len());
    figure("moto.clean.snapshots_deleted", summary.snapshots_deleted);
    figure("moto.clean.ec2_calls", clean_calls.len());
    figure("moto.clean.ec2_calls_by_action", by_action(&clean_calls));
    figure("moto.clean.ec2_calls_per_snapshot", format!("{:.3}", per(&clean_calls)));
    Ok(())
}

fn by_action(calls: &[String]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for call in calls {
        *counts.entry(call.as_str()).or_default() += 1;
    }
    counts.iter().map(|(a, n)| format!("{a}={n}")).collect::<Vec<_>>().join(" ")
}
