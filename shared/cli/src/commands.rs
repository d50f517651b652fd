//! Each command: the request it sends, and how its answer is shown.

use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::Api;
use crate::render;
use crate::wait::{self, Job};
use crate::{BackupCommand, Command, JobsCommand, Output, PolicyCommand, RestoreCommand, RestoreMode, WaitArgs};

pub enum Outcome {
    Done,
    /// A job waited for ended other than `Succeeded`.
    JobFailed,
}

pub async fn run(api: &Api, command: Command, output: Output) -> anyhow::Result<Outcome> {
    match command {
        Command::Backup(command) => backup(api, command, output).await,
        Command::Restore(command) => restore(api, command, output).await,
        Command::Jobs(command) => jobs(api, command, output).await,
        Command::Policy(command) => policy(api, command, output).await,
        Command::Capacity { service_instance_id } => {
            let capacity = api.get(&format!("/service-instances/{}/capacity", segment(&service_instance_id))).await?;
            show(output, &capacity, render::capacity);
            Ok(Outcome::Done)
        }
        Command::Console { port } => {
            crate::console::serve(api.clone(), port).await?;
            Ok(Outcome::Done)
        }
        Command::Schedules(args) => {
            crate::schedules::run(api.endpoint().clone(), args).await?;
            Ok(Outcome::Done)
        }
    }
}

async fn backup(api: &Api, command: BackupCommand, output: Output) -> anyhow::Result<Outcome> {
    match command {
        BackupCommand::Create {
            service_instance_id,
            retention_days,
            never_expire,
            instance_ids,
            destination_region,
            client_token,
            wait,
        } => {
            let mut body = Map::new();
            put(&mut body, "retention_days", retention_days.map(Value::from));
            put(&mut body, "never_expire", never_expire.then_some(Value::Bool(true)));
            put(&mut body, "instance_ids", (!instance_ids.is_empty()).then(|| json!(instance_ids)));
            put(&mut body, "destination_region", destination_region.map(Value::from));
            put(&mut body, "client_token", client_token.map(Value::from));
            let path = format!("/service-instances/{}/backups", segment(&service_instance_id));
            let created = api.send(Method::POST, &path, Some(&Value::Object(body))).await?.body;
            follow(api, Job::Backup, created, wait, output).await
        }
        BackupCommand::List { service_instance_id, limit, next_token } => {
            let mut path = format!("/service-instances/{}/backups?limit={limit}", segment(&service_instance_id));
            if let Some(token) = next_token {
                path.push_str(&format!("&next_token={}", segment(&token)));
            }
            let page = api.get(&path).await?;
            show(output, &page, render::backup_page);
            Ok(Outcome::Done)
        }
        BackupCommand::Describe { backup_id, wait } => {
            let record = api.get(&format!("/backups/{}", segment(&backup_id))).await?;
            follow(api, Job::Backup, record, wait, output).await
        }
        BackupCommand::Extend { backup_id, days, never_expire } => {
            let body = match (days, never_expire) {
                (_, true) => json!({"never_expire": true}),
                (Some(days), false) => json!({"extend_days": days}),
                (None, false) => unreachable!("clap requires --days unless --never-expire"),
            };
            let path = format!("/backups/{}/retention", segment(&backup_id));
            let record = api.send(Method::PATCH, &path, Some(&body)).await?.body;
            show(output, &record, render::backup);
            Ok(Outcome::Done)
        }
    }
}

async fn restore(api: &Api, command: RestoreCommand, output: Output) -> anyhow::Result<Outcome> {
    match command {
        RestoreCommand::Create {
            backup_id,
            mode,
            dry_run,
            restore_region,
            resource_ids,
            no_safety_backup,
            allow_partial,
            client_token,
            wait,
        } => {
            let mode = match mode {
                RestoreMode::InPlace => "in_place",
                RestoreMode::Clone => "clone",
                RestoreMode::DisasterRecovery => "disaster_recovery",
            };
            let mut body = Map::new();
            body.insert("mode".into(), mode.into());
            put(&mut body, "dry_run", dry_run.then_some(Value::Bool(true)));
            put(&mut body, "region", restore_region.map(Value::from));
            put(&mut body, "resource_ids", (!resource_ids.is_empty()).then(|| json!(resource_ids)));
            put(&mut body, "safety_backup", no_safety_backup.then_some(Value::Bool(false)));
            put(&mut body, "allow_partial", allow_partial.then_some(Value::Bool(true)));
            put(&mut body, "client_token", client_token.map(Value::from));
            let path = format!("/backups/{}/restores", segment(&backup_id));
            let answer = api.send(Method::POST, &path, Some(&Value::Object(body))).await?.body;
            if dry_run {
                show(output, &answer, render::plan);
                return Ok(Outcome::Done);
            }
            follow(api, Job::Restore, answer, wait, output).await
        }
        RestoreCommand::Describe { restore_id, wait } => {
            let record = api.get(&format!("/restores/{}", segment(&restore_id))).await?;
            follow(api, Job::Restore, record, wait, output).await
        }
        RestoreCommand::Rollback { restore_id, wait } => {
            let path = format!("/restores/{}/rollback", segment(&restore_id));
            let record = api.send(Method::POST, &path, None).await?.body;
            follow(api, Job::Restore, record, wait, output).await
        }
    }
}

async fn jobs(api: &Api, command: JobsCommand, output: Output) -> anyhow::Result<Outcome> {
    match command {
        JobsCommand::List { kind, status, limit } => {
            let mut path = format!("/jobs?limit={limit}");
            for (name, value) in [("kind", kind), ("status", status)] {
                if let Some(value) = value {
                    path.push_str(&format!("&{name}={}", segment(&value)));
                }
            }
            let page = api.get(&path).await?;
            show(output, &page, render::jobs);
            Ok(Outcome::Done)
        }
        JobsCommand::Cancel { job_id, keep_snapshots } => {
            let body = if keep_snapshots { json!({"keep_snapshots": true}) } else { json!({}) };
            let path = format!("/jobs/{}/cancel", segment(&job_id));
            let job = api.send(Method::POST, &path, Some(&body)).await?.body;
            show(output, &job, render::job);
            Ok(Outcome::Done)
        }
    }
}

async fn policy(api: &Api, command: PolicyCommand, output: Output) -> anyhow::Result<Outcome> {
    let one = |id: &str| format!("/policies/{}", segment(id));
    let answer = match command {
        PolicyCommand::Create { name, every_hours, every_days, start_time, retention_days, replicate_to, targets } => {
            let mut body = Map::new();
            body.insert("name".into(), name.into());
            put(&mut body, "interval_hours", every_hours.map(Value::from));
            put(&mut body, "interval_days", every_days.map(Value::from));
            put(&mut body, "start_time", start_time.map(Value::from));
            body.insert("retention_days".into(), retention_days.into());
            if let Some(region) = replicate_to {
                body.insert("replicate".into(), true.into());
                body.insert("destination_region".into(), region.into());
            }
            put(&mut body, "targets", (!targets.is_empty()).then(|| json!(targets)));
            api.send(Method::POST, "/policies", Some(&Value::Object(body))).await?.body
        }
        PolicyCommand::List => {
            let page = api.get("/policies?limit=100").await?;
            show(output, &page, render::policies);
            return Ok(Outcome::Done);
        }
        PolicyCommand::Describe { policy_id } => api.get(&one(&policy_id)).await?,
        PolicyCommand::Attach { policy_id, service_instance_ids } => {
            let path = format!("{}/targets", one(&policy_id));
            api.send(Method::POST, &path, Some(&json!({"attach": service_instance_ids}))).await?.body
        }
        PolicyCommand::Detach { policy_id, service_instance_ids } => {
            let path = format!("{}/targets", one(&policy_id));
            api.send(Method::POST, &path, Some(&json!({"detach": service_instance_ids}))).await?.body
        }
        PolicyCommand::Suspend { policy_id } => {
            api.send(Method::POST, &format!("{}/suspend", one(&policy_id)), None).await?.body
        }
        PolicyCommand::Resume { policy_id } => {
            api.send(Method::POST, &format!("{}/resume", one(&policy_id)), None).await?.body
        }
        PolicyCommand::Delete { policy_id } => api.send(Method::DELETE, &one(&policy_id), None).await?.body,
    };
    show(output, &answer, render::policy);
    Ok(Outcome::Done)
}

/// Shows a backup or restore record; with `--wait`, follows it to its end first.
async fn follow(api: &Api, job: Job, record: Value, wait: WaitArgs, output: Output) -> anyhow::Result<Outcome> {
    let render = match job {
        Job::Backup => render::backup,
        Job::Restore => render::restore,
    };
    if !wait.wait {
        show(output, &record, render);
        return Ok(Outcome::Done);
    }
    let (record, outcome) = wait::follow(api, job, record, std::time::Duration::from_secs(wait.timeout)).await?;
    show(output, &record, render);
    Ok(outcome)
}

fn show(output: Output, value: &Value, table: fn(&Value) -> String) {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).expect("JSON serializes")),
        Output::Table => print!("{}", table(value)),
        Output::Id => {
            let ids = ["job_id", "restore_id", "backup_id", "policy_id", "service_instance_id"];
            match ids.iter().find_map(|k| value.get(*k).and_then(Value::as_str)) {
                Some(id) => println!("{id}"),
                // A page: one id per line.
                None => {
                    for item in value["items"].as_array().into_iter().flatten() {
                        if let Some(id) = ids.iter().find_map(|k| item.get(*k).and_then(Value::as_str)) {
                            println!("{id}");
                        }
                    }
                }
            }
        }
    }
}

fn put(body: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        body.insert(key.into(), value);
    }
}

/// An id as one path segment or query value: what is not an identifier character is
/// percent-encoded, so an id can never reach another route.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn given_an_id_with_path_characters_when_it_is_put_in_a_route_then_it_stays_one_segment() {
        assert_eq!(segment("bk-1.a_b~"), "bk-1.a_b~");
        assert_eq!(segment("../jobs?x=1"), "..%2Fjobs%3Fx%3D1");
    }
}
