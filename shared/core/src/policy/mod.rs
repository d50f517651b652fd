//! Backup policies: a schedule (every N hours or days from a start time), a retention, an
//! optional destination region with its own retention, and the service instances it
//! protects — at most one policy per service instance.
//!
//! The run-policies function's scheduled tick reads the due policies from the store's due index (never
//! a scan) and runs each once per slot: the backups of a slot carry a client token made of
//! the policy id and the slot, so a retried or overlapping tick finds the backups it already
//! started instead of starting them again, and only one tick wins the conditional write that
//! moves the policy to its next slot. A tick that comes late (the function was down) runs the
//! latest missed slot once, not every missed slot. [`schedule`] decides; [`PolicyService`]
//! reads, runs the backups and saves.

pub mod schedule;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

use crate::access::Caller;
use crate::backup::{BackupOrigin, BackupService};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::{BackupId, PolicyId};
use crate::model::{Change, Timestamp, Trigger};
use crate::records::{Records, StoredRecord};
use crate::store::{Collection, Cursor, StoreError};
use crate::validate;

pub const PERMANENT_RETENTION: &str =
    "The policy contains permanent retention rules and cannot be applied to instance backup.";
pub const NO_DESTINATION_REGION: &str = "No destination region is specified.";
pub const SUSPENDED: &str = "The backup plan has been suspended.";

/// The owner under which every policy is listed.
const ALL_POLICIES: &str = "policies";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyState {
    Active,
    Suspended,
}

/// What happened to one service instance in a policy run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetOutcome {
    pub service_instance_id: String,
    pub backup_id: Option<BackupId>,
    pub error: Option<String>,
}

/// What a policy run came to: every protected service instance backed up, some, none, or
/// the slot skipped (a suspended policy). A run that finds nothing to back up is `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PolicyRunStatus {
    /// Every target's backup was started.
    Succeeded,
    /// Some targets' backups were started, others not (each target's `error` says why).
    PartiallyFailed,
    /// No backup was started: every target failed, or the policy protects none.
    Failed,
    /// The slot did not run (a suspended policy).
    Skipped,
}

impl PolicyRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::PartiallyFailed => "PartiallyFailed",
            Self::Failed => "Failed",
            Self::Skipped => "Skipped",
        }
    }
}

/// The latest slot a policy ran (or skipped), and what the run came to: the policy run's
/// record (policy runs have no record of their own; the policy keeps its last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredPolicyRun")]
pub struct PolicyRun {
    pub slot: Timestamp,
    pub ran_at: Timestamp,
    pub status: PolicyRunStatus,
    /// Why the run did not back up every target (`Failed`, `PartiallyFailed`, `Skipped`).
    pub cause: Option<String>,
    /// Why the slot did not run (a suspended policy).
    pub skipped: Option<String>,
    pub targets: Vec<TargetOutcome>,
}

/// A policy run as stored: runs saved before runs had a status get theirs from their targets.
#[derive(Deserialize)]
struct StoredPolicyRun {
    slot: Timestamp,
    ran_at: Timestamp,
    #[serde(default)]
    status: Option<PolicyRunStatus>,
    #[serde(default)]
    cause: Option<String>,
    skipped: Option<String>,
    targets: Vec<TargetOutcome>,
}

impl From<StoredPolicyRun> for PolicyRun {
    fn from(stored: StoredPolicyRun) -> Self {
        let (status, cause) = match stored.status {
            Some(status) => (status, stored.cause),
            None => schedule::run_outcome(stored.skipped.as_deref(), &stored.targets),
        };
        PolicyRun {
            slot: stored.slot,
            ran_at: stored.ran_at,
            status,
            cause,
            skipped: stored.skipped,
            targets: stored.targets,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub policy_id: PolicyId,
    pub name: String,
    pub state: PolicyState,
    pub interval_hours: Option<u32>,
    pub interval_days: Option<u32>,
    pub start_time: Timestamp,
    pub retention_days: u32,
    pub destination_region: Option<String>,
    pub destination_retention_days: Option<u32>,
    pub targets: Vec<String>,
    /// "Protect All Disks" off: only these volumes of the targets' instances (a disk
    /// attached later is not included); empty: every disk, those attached later too.
    #[serde(default)]
    pub volume_ids: Vec<String>,
    /// The next slot the tick will run (or, while suspended, report as skipped).
    pub next_run_at: Timestamp,
    pub last_run: Option<PolicyRun>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Who the policy belongs to: whoever created it.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Who made, changed, suspended, resumed it or changed its targets, and when; the last
    /// [`CHANGES_KEPT`].
    #[serde(default)]
    pub changes: Vec<Change>,
    pub version: u64,
}

/// Changes a policy keeps of its history (the newest).
pub const CHANGES_KEPT: usize = 20;

impl Policy {
    fn changed(&mut self, what: impl Into<String>, by: &str, at: Timestamp) {
        self.changes.push(Change::new(what, by, at));
        let over = self.changes.len().saturating_sub(CHANGES_KEPT);
        self.changes.drain(..over);
        self.updated_at = at;
    }
}

/// Body of `POST /policies` and `PUT /policies/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    pub name: String,
    pub interval_hours: Option<u32>,
    pub interval_days: Option<u32>,
    /// First slot; later slots follow every interval. Default: now.
    pub start_time: Option<Timestamp>,
    pub retention_days: Option<u32>,
    /// Refused: instance backups need a retention (the seed's rule).
    pub never_expire: Option<bool>,
    /// Copy each point to `destination_region` (or the configured default region).
    pub replicate: Option<bool>,
    pub destination_region: Option<String>,
    pub destination_retention_days: Option<u32>,
    /// `POST` only: service instances to attach at once.
    pub targets: Option<Vec<String>>,
    /// "Protect All Disks" off: only these volumes (default: every disk).
    pub volume_ids: Option<Vec<String>>,
}

/// Body of `POST /policies/{id}/targets`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsRequest {
    #[serde(default)]
    pub attach: Vec<String>,
    #[serde(default)]
    pub detach: Vec<String>,
}

/// What one policy tick did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TickSummary {
    pub policies_due: usize,
    pub backups_started: usize,
    pub policies_skipped: usize,
    /// Runs that ended `Failed` or `PartiallyFailed` (counted by the PolicyRunFailed metric).
    pub policies_failed: usize,
    /// Target failures of this tick (the run went on for the others).
    pub errors: Vec<TargetOutcome>,
    /// The tick stopped at its time budget; the next tick runs the policies left (their
    /// slots are still due).
    pub stopped_at_budget: bool,
}

impl StoredRecord for Policy {
    const COLLECTION: Collection = Collection::Policies;
    const WHAT: &'static str = "policy";
    fn id(&self) -> &str {
        &self.policy_id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn owner(&self) -> &str {
        ALL_POLICIES
    }
    fn created_at(&self) -> Timestamp {
        self.created_at
    }
    fn due_at(&self) -> Option<Timestamp> {
        // Suspended policies stay in the due index so the tick can say they were skipped.
        Some(self.next_run_at)
    }
}

/// The lock that makes a service instance belong to one policy.
fn target_lock(service_instance_id: &str) -> String {
    format!("policy-target#{service_instance_id}")
}

/// Policies and their scheduled runs.
#[derive(Clone)]
pub struct PolicyService {
    records: Records,
    backups: BackupService,
    clock: Arc<dyn Clock>,
    home_region: String,
    /// Where a policy that turns replication on without naming a region copies to.
    default_destination_region: Option<String>,
    caller: Arc<Caller>,
}

impl PolicyService {
    pub fn new(
        records: Records,
        backups: BackupService,
        clock: Arc<dyn Clock>,
        home_region: String,
        default_destination_region: Option<String>,
        caller: Arc<Caller>,
    ) -> Self {
        Self { records, backups, clock, home_region, default_destination_region, caller }
    }

    #[instrument(skip_all)]
    pub async fn create(&self, request: &PolicyRequest) -> Result<Policy> {
        let now = self.clock.now();
        let settings = request.validate(&self.home_region, self.default_destination_region.as_deref(), now)?;
        let mut policy = Policy {
            policy_id: PolicyId::generate(),
            name: settings.name,
            state: PolicyState::Active,
            interval_hours: settings.interval_hours,
            interval_days: settings.interval_days,
            start_time: settings.start_time,
            retention_days: settings.retention_days,
            destination_region: settings.destination_region,
            destination_retention_days: settings.destination_retention_days,
            targets: Vec::new(),
            volume_ids: settings.volume_ids,
            next_run_at: settings.start_time,
            last_run: None,
            created_at: now,
            updated_at: now,
            owners: vec![self.caller.principal.clone()],
            changes: Vec::new(),
            version: 0,
        };
        policy.changed("create", &self.caller.principal, now);
        policy.next_run_at = policy.slot_at_or_after(now);
        self.records.insert(&mut policy, None).await?;
        info!(policy_id = %policy.policy_id, "policy created");
        match &request.targets {
            Some(targets) if !targets.is_empty() => {
                let attach = TargetsRequest { attach: targets.clone(), detach: Vec::new() };
                match self.change_targets(&policy.policy_id, &attach).await {
                    Ok(attached) => Ok(attached),
                    // A refused request leaves nothing behind: the policy goes again.
                    Err(refused) => {
                        let current: Policy = self.records.load(&policy.policy_id).await?;
                        self.records.store().delete(Collection::Policies, &policy.policy_id, current.version).await?;
                        Err(refused)
                    }
                }
            }
            _ => Ok(policy),
        }
    }

    /// A policy; 404 when there is none, or it is not the caller's.
    pub async fn get(&self, policy_id: &str) -> Result<Policy> {
        let policy: Policy = self.records.load(&PolicyId::parse("policy id", policy_id)?).await?;
        self.caller.check(&policy.owners, "policy", policy_id)?;
        Ok(policy)
    }

    /// A page of the caller's policies, newest first.
    pub async fn list(&self, limit: usize, cursor: Option<&Cursor>) -> Result<(Vec<Policy>, Option<Cursor>)> {
        let (page, next) = self.records.page_all::<Policy>(limit, cursor).await?;
        Ok((page.into_iter().filter(|p| self.caller.owns(&p.owners)).collect(), next))
    }

    /// Replaces a policy's settings; its targets and state stay.
    pub async fn update(&self, policy_id: &str, request: &PolicyRequest) -> Result<Policy> {
        let now = self.clock.now();
        if request.targets.is_some() {
            return Err(Error::bad_request("InvalidRequest", "targets: change them with POST /policies/{id}/targets"));
        }
        let settings = request.validate(&self.home_region, self.default_destination_region.as_deref(), now)?;
        let mut policy = self.get(policy_id).await?;
        policy.name = settings.name;
        policy.interval_hours = settings.interval_hours;
        policy.interval_days = settings.interval_days;
        policy.start_time = settings.start_time;
        policy.retention_days = settings.retention_days;
        policy.destination_region = settings.destination_region;
        policy.destination_retention_days = settings.destination_retention_days;
        policy.volume_ids = settings.volume_ids;
        policy.next_run_at = policy.slot_at_or_after(now);
        policy.changed("update", &self.caller.principal, now);
        self.records.save(&mut policy).await?;
        Ok(policy)
    }

    /// Deletes a policy and frees its service instances for another policy.
    pub async fn delete(&self, policy_id: &str) -> Result<Policy> {
        let policy = self.get(policy_id).await?;
        self.records.store().delete(Collection::Policies, &policy.policy_id, policy.version).await?;
        for target in &policy.targets {
            self.records.store().release_lock(&target_lock(target), &policy.policy_id).await?;
        }
        info!(policy_id, "policy deleted");
        Ok(policy)
    }

    /// Suspends (never runs) or resumes a policy. Resuming starts from the next slot after
    /// now: slots missed while suspended are not made up.
    pub async fn set_state(&self, policy_id: &str, state: PolicyState) -> Result<Policy> {
        let now = self.clock.now();
        let mut policy = self.get(policy_id).await?;
        if policy.state == state {
            return Ok(policy);
        }
        policy.state = state;
        if state == PolicyState::Active {
            policy.next_run_at = policy.slot_at_or_after(now);
        }
        let what = if state == PolicyState::Active { "resume" } else { "suspend" };
        policy.changed(what, &self.caller.principal, now);
        self.records.save(&mut policy).await?;
        info!(policy_id, state = ?state, "policy state changed");
        Ok(policy)
    }

    /// Attaches and detaches service instances. A service instance belongs to at most one
    /// policy: attaching one another policy holds is a 409 naming that policy.
    pub async fn change_targets(&self, policy_id: &str, request: &TargetsRequest) -> Result<Policy> {
        for id in request.attach.iter().chain(&request.detach) {
            validate::identifier("service instance id", id)?;
        }
        if request.attach.is_empty() && request.detach.is_empty() {
            return Err(Error::bad_request("InvalidRequest", "give service instances to attach or detach"));
        }
        let mut policy = self.get(policy_id).await?;
        for target in &request.attach {
            // Only the caller's own service instances: another's is not found.
            self.backups.owners_of(target).await?;
        }
        let policy_id = policy.policy_id.clone();
        let store = self.records.store();
        let mut newly_held = Vec::new();
        for target in &request.attach {
            match store.acquire_lock(&target_lock(target), &policy_id).await {
                Ok(()) => newly_held.push(target.clone()),
                Err(StoreError::LockHeld { holder, .. }) => {
                    self.release_targets(&newly_held, &policy).await;
                    return Err(Error::conflict(
                        "PolicyAlreadyAttached",
                        format!("service instance {target} is already protected by policy {holder}"),
                    ));
                }
                Err(e) => {
                    self.release_targets(&newly_held, &policy).await;
                    return Err(e.into());
                }
            }
        }
        for target in &request.attach {
            if !policy.targets.contains(target) {
                policy.targets.push(target.clone());
            }
        }
        policy.targets.retain(|t| !request.detach.contains(t));
        let what: Vec<String> = request
            .attach
            .iter()
            .map(|t| format!("attach {t}"))
            .chain(request.detach.iter().map(|t| format!("detach {t}")))
            .collect();
        policy.changed(what.join(", "), &self.caller.principal, self.clock.now());
        if let Err(e) = self.records.save(&mut policy).await {
            self.release_targets(&newly_held, &policy).await;
            return Err(e);
        }
        for target in &request.detach {
            store.release_lock(&target_lock(target), &policy_id).await?;
        }
        Ok(policy)
    }

    /// Gives back locks taken for targets the policy did not already have.
    async fn release_targets(&self, taken: &[String], policy: &Policy) {
        for target in taken.iter().filter(|t| !policy.targets.contains(t)) {
            if let Err(e) = self.records.store().release_lock(&target_lock(target), &policy.policy_id).await {
                warn!(policy_id = %policy.policy_id, target, error = %e, "target lock left held; attaching it again will take it over");
            }
        }
    }

    /// The scheduled tick: runs every policy whose next slot is due.
    #[instrument(skip(self))]
    pub async fn run_due(&self) -> Result<TickSummary> {
        self.run_due_until(None).await
    }

    /// As [`PolicyService::run_due`], starting no policy's run after `deadline`.
    pub async fn run_due_until(&self, deadline: Option<Timestamp>) -> Result<TickSummary> {
        let now = self.clock.now();
        let mut summary = TickSummary::default();
        for policy in self.records.due::<Policy>(now).await? {
            if crate::clock::past(self.clock.as_ref(), deadline) {
                summary.stopped_at_budget = true;
                break;
            }
            summary.policies_due += 1;
            self.run(policy, now, &mut summary).await?;
        }
        info!(policies_due = summary.policies_due, backups_started = summary.backups_started, "policy tick done");
        Ok(summary)
    }

    #[instrument(skip_all, fields(policy_id = %policy.policy_id))]
    async fn run(&self, mut policy: Policy, now: Timestamp, summary: &mut TickSummary) -> Result<()> {
        let mut run = schedule::plan_run(&policy, now);
        if run.skipped.is_some() {
            summary.policies_skipped += 1;
        } else {
            let origin = BackupOrigin { trigger: Trigger::Scheduled, policy_id: Some(policy.policy_id.clone()) };
            let request = policy.backup_request(run.slot);
            for target in &policy.targets {
                let outcome = match self.backups.create(target, &request, origin.clone()).await {
                    Ok(backup) => {
                        summary.backups_started += 1;
                        schedule::target_outcome(target, Ok(backup.backup_id))
                    }
                    // The record store failing is the tick's failure: retried whole, the tokens
                    // make the backups already started come back instead of starting again.
                    Err(e @ Error::Store(_)) => return Err(e),
                    Err(e) => {
                        warn!(service_instance_id = %target, error = %e, "policy target not backed up");
                        let failed = schedule::target_failed(target, &e, self.backups.tag_key(), &self.home_region);
                        summary.errors.push(failed.clone());
                        failed
                    }
                };
                run.targets.push(outcome);
            }
        }
        schedule::finish_run(&mut policy, run);
        match self.records.save(&mut policy).await {
            // Another tick ran this slot and moved the policy on first: nothing to do.
            Err(Error::Conflict { .. }) => return Ok(()),
            other => other?,
        }
        let run = policy.last_run.as_ref().expect("finish_run keeps the run");
        summary.policies_failed += usize::from(crate::metrics::policy_run_failed(run));
        log_run(&policy, run);
        Ok(())
    }
}

/// One structured line per policy run, and its embedded-metric line (PolicyRunFailed), so a
/// run that backed up fewer service instances than it protects raises an alarm.
fn log_run(policy: &Policy, run: &PolicyRun) {
    if run.status == PolicyRunStatus::Skipped {
        return info!(policy_id = %policy.policy_id, slot = %run.slot, "policy run skipped");
    }
    crate::metrics::emit(&crate::metrics::policy_run_finished(policy, run));
    if crate::metrics::policy_run_failed(run) {
        warn!(policy_id = %policy.policy_id, slot = %run.slot, status = run.status.as_str(), cause = ?run.cause, "policy run failed");
    } else {
        info!(policy_id = %policy.policy_id, slot = %run.slot, targets = run.targets.len(), "policy run done");
    }
}
