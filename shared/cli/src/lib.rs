//! The `snapnest` command line and web console, over snapnest's HTTP API only: it shares no
//! code with the domain, so the API is the one path into it.
//!
//! Exit status: 0 when the command did what it asked (and, with `--wait`, the job ended
//! `Succeeded`); 1 when a job it waited for ended otherwise (each failed resource's cause is
//! printed); 2 for a usage error; 3 when the API refused the request or could not be reached.

pub mod client;
mod commands;
mod console;
mod render;
pub mod schedules;
mod wait;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use client::{Api, AuthMode};

#[derive(Parser, Debug)]
#[command(name = "snapnest", version, about = "Back up and restore service instances through the snapnest API")]
pub struct Cli {
    /// The snapnest API: `cargo lambda watch` locally, or the stack's ApiUrl output.
    #[arg(long, env = "SNAPNEST_ENDPOINT", default_value = "http://127.0.0.1:9000", global = true)]
    endpoint: reqwest::Url,
    /// JWT mode: the bearer token to send (otherwise a non-local endpoint is signed with
    /// SigV4 from the standard AWS credential chain).
    #[arg(long, env = "SNAPNEST_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The API's region for SigV4 when its host does not name one.
    #[arg(long, env = "AWS_REGION", global = true)]
    region: Option<String>,
    /// How answers are printed (default: table on a terminal, JSON otherwise).
    #[arg(long, short, value_enum, global = true)]
    output: Option<Output>,
    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    /// Only the answer's id (backup, restore, policy or job): for scripts,
    /// `backup_id=$(snapnest backup create si-demo --output id)`.
    Id,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Back up a service instance, list and describe its points, extend a retention.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Restore a backup point (in place, as a clone, or in the replication region).
    #[command(subcommand)]
    Restore(RestoreCommand),
    /// Backup, restore, replication and expiry jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Backup policies: a schedule, a retention, and the service instances they protect.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// What a service instance's backups store.
    Capacity {
        /// The service instance id (its resources carry the tag `service-instance-id=<id>`).
        service_instance_id: String,
    },
    /// Serve the web console on 127.0.0.1, forwarding its API calls (signed) to the endpoint.
    Console {
        /// The local port (0: any free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Local runs: invoke the scheduled functions through `cargo lambda watch`, as
    /// EventBridge invokes them when deployed (watch runs no schedules of its own).
    Schedules(schedules::SchedulesArgs),
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Back up every resource of a service instance as one point.
    Create {
        service_instance_id: String,
        /// Days to keep the point (default: the deployment's, 7).
        #[arg(long, conflicts_with = "never_expire")]
        retention_days: Option<u32>,
        /// Keep the point until it is deleted by hand.
        #[arg(long)]
        never_expire: bool,
        /// Only these instances (default: every instance of the service instance).
        #[arg(long = "instance", value_name = "INSTANCE_ID")]
        instance_ids: Vec<String>,
        /// Copy the point to this region as well.
        #[arg(long)]
        destination_region: Option<String>,
        /// Makes a retried command answer the first one's point instead of starting another.
        #[arg(long)]
        client_token: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// A service instance's backup points, newest first.
    List {
        service_instance_id: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        next_token: Option<String>,
    },
    /// One point with every resource, its status and cause.
    Describe {
        backup_id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Keep a point longer (never shorter).
    Extend {
        backup_id: String,
        /// Days to add to its expiry.
        #[arg(long, required_unless_present = "never_expire")]
        days: Option<u32>,
        #[arg(long)]
        never_expire: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RestoreMode {
    InPlace,
    Clone,
    DisasterRecovery,
}

#[derive(Subcommand, Debug)]
pub enum RestoreCommand {
    /// Restore a backup point. In place, the instances stop while their disks are swapped.
    Create {
        backup_id: String,
        #[arg(long, value_enum, default_value = "in-place")]
        mode: RestoreMode,
        /// Show the plan (what would stop, what would be replaced) and change nothing.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
        /// Disaster recovery: the region to restore in.
        #[arg(long = "restore-region")]
        restore_region: Option<String>,
        /// Only these disks or databases.
        #[arg(long = "resource", value_name = "RESOURCE_ID")]
        resource_ids: Vec<String>,
        /// In place: skip the safety backup of what is replaced.
        #[arg(long)]
        no_safety_backup: bool,
        /// In place from a PartiallyFailed point: restore what it holds.
        #[arg(long)]
        allow_partial: bool,
        #[arg(long)]
        client_token: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// One restore with its steps.
    Describe {
        restore_id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Put back what a finished in-place restore replaced.
    Rollback {
        restore_id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Jobs of every kind, newest first.
    List {
        /// backup, restore, replication or expiry.
        #[arg(long)]
        kind: Option<String>,
        /// e.g. Running, Failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Stop a running backup, restore or replication.
    Cancel {
        job_id: String,
        /// Keep the snapshots (or copies) it already made.
        #[arg(long)]
        keep_snapshots: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// A new policy: back up its targets every interval, keep each point for a retention.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, conflicts_with = "every_days", required_unless_present = "every_days")]
        every_hours: Option<u32>,
        #[arg(long)]
        every_days: Option<u32>,
        /// The first slot (RFC 3339, e.g. 2026-12-01T02:00:00Z).
        #[arg(long)]
        start_time: Option<String>,
        #[arg(long)]
        retention_days: u32,
        /// Copy every point to this region too.
        #[arg(long)]
        replicate_to: Option<String>,
        /// Service instances it protects from the start.
        #[arg(long = "target", value_name = "SERVICE_INSTANCE_ID")]
        targets: Vec<String>,
    },
    /// Every policy.
    List,
    /// One policy, with its last run and its changes.
    Describe { policy_id: String },
    /// Protect service instances with a policy.
    Attach {
        policy_id: String,
        #[arg(required = true)]
        service_instance_ids: Vec<String>,
    },
    /// Stop protecting service instances with a policy.
    Detach {
        policy_id: String,
        #[arg(required = true)]
        service_instance_ids: Vec<String>,
    },
    /// Stop a policy's runs until it is resumed.
    Suspend { policy_id: String },
    /// Run a suspended policy again from its next slot.
    Resume { policy_id: String },
    /// Delete a policy (its backup points stay until they expire).
    Delete { policy_id: String },
}

#[derive(Args, Debug, Clone, Copy)]
pub struct WaitArgs {
    /// Follow the job until it ends, showing its progress; exit 1 unless it succeeds.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit 1, the job goes on).
    #[arg(long, default_value_t = 3600, requires = "wait")]
    pub timeout: u64,
}

/// Runs one command line; the process's exit status.
pub async fn run(cli: Cli) -> ExitCode {
    let output = cli.output.unwrap_or(if std::io::stdout().is_terminal() { Output::Table } else { Output::Json });
    let auth = match AuthMode::for_endpoint(&cli.endpoint, cli.token.clone(), cli.region.clone()) {
        Ok(auth) => auth,
        Err(e) => return failed(&e.to_string()),
    };
    let api = match Api::new(cli.endpoint.clone(), auth).await {
        Ok(api) => api,
        Err(e) => return failed(&e.to_string()),
    };
    match commands::run(&api, cli.command, output).await {
        Ok(commands::Outcome::Done) => ExitCode::SUCCESS,
        Ok(commands::Outcome::JobFailed) => ExitCode::from(1),
        Err(e) => failed(&format!("{e:#}")),
    }
}

fn failed(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(3)
}
