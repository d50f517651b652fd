//! How long snapnest's main operations take on the embedded store and the simulated cloud
//! (no AWS needed), and, with `--moto`, with the DynamoDB store on moto: a demo backup and
//! in-place restore end to end, and the largest backup a request may ask for (99 instances ×
//! 16 volumes + 10 databases = 1,594 items).

use std::sync::Arc;
use std::time::{Duration, Instant};

use snapnest_core::backup::{BackupOrigin, BackupRequest};
use snapnest_core::model::{BackupRecord, RestoreMode};
use snapnest_core::restore::{RestoreRequest, Started};
use snapnest_core::retention::RetentionRequest;
use snapnest_core::status::JobStatus;
use snapnest_core::Snapnest;
use snapnest_lambda::config::Config;
use snapnest_local::simulated::{SimSettings, SimulatedCloud};

const REGION: &str = "us-east-1";

pub async fn run(with_moto: bool) -> crate::Outcome {
    let data = tempfile::tempdir()?;
    let mut env = vec![
        ("SNAPNEST_DATA_DIR".to_owned(), data.path().display().to_string()),
        ("SNAPNEST_SIM_SNAPSHOT_SECONDS".to_owned(), "0.2".to_owned()),
        ("AWS_REGION".to_owned(), REGION.to_owned()),
    ];
    let label = if with_moto {
        let moto = snapnest_e2e::aws_fixture::MotoSnapnest::start("bench").await;
        env.push(("SNAPNEST_STORE".into(), "dynamodb".into()));
        env.push(("SNAPNEST_TABLE".into(), moto.table.clone()));
        "DynamoDB store on moto + simulated cloud"
    } else {
        "embedded store + simulated cloud"
    };
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))?;
    let built = snapnest_lambda::runtime::build(&config).await?;
    // Every write goes through a meter, to print what each step costs in store writes.
    let metered = Arc::new(snapnest_e2e::Watched::new(built.store.clone(), snapnest_e2e::WriteMeter::default()));
    let meter = &metered.watch;
    let app =
        Arc::new(Snapnest::new(metered.clone(), built.clouds.clone(), built.clock.clone(), built.settings.clone()));
    let sim = SimulatedCloud::open(
        data.path(),
        SimSettings {
            home_region: REGION.into(),
            operation_time: config.sim_operation_time,
            latency: Duration::ZERO,
            faults: Default::default(),
        },
    )?;
    println!("snapnest bench — {label}, simulated operations take {:?}", config.sim_operation_time);

    // The demo service instance, end to end.
    let started = Instant::now();
    let backup = app.backups.create("si-demo", &BackupRequest::default(), BackupOrigin::manual()).await?;
    let create = started.elapsed();
    let (backup, passes) = poll_backup(&app, backup.backup_id).await?;
    println!(
        "si-demo backup (7 items):      create {:>8.1} ms, Succeeded after {:>6.2} s ({passes} poll passes)",
        ms(create),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let request = RestoreRequest { safety_backup: Some(true), ..RestoreRequest::new(RestoreMode::InPlace) };
    let Started::Restore(mut restore) = app.restores.create(&backup.backup_id, &request).await? else {
        return Err("a restore that is not a dry run answers its record".into());
    };
    let mut passes = 0;
    while !restore.status.is_terminal() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        app.poller.poll_active().await?;
        *restore = app.restores.get(&restore.restore_id).await?;
        passes += 1;
    }
    println!(
        "si-demo in-place restore:      {:?} after {:>6.2} s ({passes} poll passes, safety backup included)",
        restore.status,
        started.elapsed().as_secs_f64()
    );

    // The largest request: 99 instances x 16 volumes + 10 databases.
    sim.add_service_instance(REGION, "si-large", 99, 16, 10, true)?;
    meter.take();
    let started = Instant::now();
    let backup = app.backups.create("si-large", &BackupRequest::default(), BackupOrigin::manual()).await?;
    let create = started.elapsed();
    let size = serde_json::to_vec(&backup)?.len();
    let create_writes = meter.take();
    tokio::time::sleep(config.sim_operation_time).await;
    let pass = Instant::now();
    app.poller.poll_active().await?;
    let pass = pass.elapsed();
    let poll_writes = meter.take();
    app.poller.poll_active().await?;
    let idle_writes = meter.take();
    app.retention.change(&backup.backup_id, &RetentionRequest { extend_days: Some(1), ..Default::default() }).await?;
    let retention_writes = meter.take();
    let (backup, passes) = poll_backup(&app, backup.backup_id).await?;
    println!(
        "99 x 16 + 10 backup ({} items): create {:>8.1} ms (discovery, 99 CreateSnapshots, 10 CreateDBSnapshot, record {} KB)",
        backup.items.len(),
        ms(create),
        size / 1024
    );
    println!(
        "99 x 16 + 10 backup:            one poll pass {:>8.1} ms (batched describes), {:?} after {} more passes",
        ms(pass),
        backup.status,
        passes
    );
    let writes = |w: snapnest_e2e::Written| {
        format!("{} document + {} rows, {:.1} KB of JSON", w.documents, w.rows, w.bytes as f64 / 1024.0)
    };
    println!("99 x 16 + 10 backup, store writes: create {}", writes(create_writes));
    println!("                                   the poll pass that finished it {}", writes(poll_writes));
    println!("                                   a poll pass with nothing new {}", writes(idle_writes));
    println!("                                   a retention change {}", writes(retention_writes));
    let started = Instant::now();
    let page = app.backups.list("si-large", 20, None).await?;
    println!("list the service instance's backups: {:>8.1} ms ({} records)", ms(started.elapsed()), page.0.len());
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn poll_backup(
    app: &Arc<Snapnest>,
    id: snapnest_core::ids::BackupId,
) -> Result<(BackupRecord, usize), Box<dyn std::error::Error>> {
    let mut passes = 0;
    loop {
        let record: BackupRecord = app.backups.get(&id).await?;
        if !matches!(record.status, JobStatus::Pending | JobStatus::Running) {
            return Ok((record, passes));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        app.poller.poll_active().await?;
        passes += 1;
    }
}
