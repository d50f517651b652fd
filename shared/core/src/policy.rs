//! Backup policies: a schedule (every N hours or days from a start time), a retention, an
//! optional destination region with its own retention, and the service instances it
//! protects — at most one policy per service instance.
//!
//! create-backup's scheduled tick reads the due policies from the store's due index (never
//! a scan) and runs each once per slot: the backups of a slot carry a client token made of
//! the policy id and the slot, so a retried or overlapping tick finds the backups it already
//! started instead of starting them again, and only one tick wins the conditional write that
//! moves the policy to its next slot. A tick that comes late (the function was down) runs the
//! latest missed slot once, not every missed slot.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::backup::{BackupOrigin, BackupRequest};
use crate::error::{Error, Result};
use crate::model::{Timestamp, Trigger};
use crate::records::{from_document, StoredRecord};
use crate::store::{Collection, StoreError};
use crate::validate::{self, MAX_RETENTION_DAYS};
use crate::Snapnest;

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
    pub backup_id: Option<String>,
    pub error: Option<String>,
}

/// The latest slot a policy ran (or skipped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRun {
    pub slot: Timestamp,
    pub ran_at: Timestamp,
    /// Why the slot did not run (a suspended policy).
    pub skipped: Option<String>,
    pub targets: Vec<TargetOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub policy_id: String,
    pub name: String,
    pub state: PolicyState,
    pub interval_hours: Option<u32>,
    pub interval_days: Option<u32>,
    pub start_time: Timestamp,
    pub retention_days: u32,
    pub destination_region: Option<String>,
    pub destination_retention_days: Option<u32>,
    pub targets: Vec<String>,
    /// The next slot the tick will run (or, while suspended, report as skipped).
    pub next_run_at: Timestamp,
    pub last_run: Option<PolicyRun>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
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
    /// Target failures of this tick (the run went on for the others).
    pub errors: Vec<TargetOutcome>,
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

impl Policy {
    fn period(&self) -> Duration {
        match (self.interval_hours, self.interval_days) {
            (Some(hours), _) => Duration::hours(hours.into()),
            (_, Some(days)) => Duration::days(days.into()),
            (None, None) => Duration::days(1),
        }
    }

    /// The first slot at or after `t`.
    pub fn slot_at_or_after(&self, t: Timestamp) -> Timestamp {
        if t <= self.start_time {
            return self.start_time;
        }
        let period = self.period().num_seconds();
        let elapsed = (t - self.start_time).num_seconds();
        let steps = (elapsed + period - 1) / period;
        self.start_time + Duration::seconds(steps * period)
    }

    /// The last slot at or before `t` (`t` at or after the start).
    pub fn slot_at_or_before(&self, t: Timestamp) -> Timestamp {
        let period = self.period().num_seconds();
        let steps = (t - self.start_time).num_seconds().max(0) / period;
        self.start_time + Duration::seconds(steps * period)
    }

    fn backup_request(&self, slot: Timestamp) -> BackupRequest {
        BackupRequest {
            client_token: Some(format!("{}-{}", self.policy_id, slot.timestamp())),
            retention_days: Some(self.retention_days),
            destination_region: self.destination_region.clone(),
            destination_retention_days: self.destination_region.as_ref().and(self.destination_retention_days),
            ..Default::default()
        }
    }
}

struct PolicySettings {
    name: String,
    interval_hours: Option<u32>,
    interval_days: Option<u32>,
    start_time: Timestamp,
    retention_days: u32,
    destination_region: Option<String>,
    destination_retention_days: Option<u32>,
}

impl PolicyRequest {
    fn validate(&self, home_region: &str, default_destination: Option<&str>, now: Timestamp) -> Result<PolicySettings> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(Error::bad_request("InvalidName", "name: 1 to 128 characters"));
        }
        match (self.interval_hours, self.interval_days) {
            (Some(h), None) if (1..=8760).contains(&h) => {}
            (None, Some(d)) if (1..=365).contains(&d) => {}
            (Some(_), Some(_)) | (None, None) => {
                return Err(Error::bad_request(
                    "InvalidInterval",
                    "give exactly one of interval_hours or interval_days",
                ))
            }
            _ => {
                return Err(Error::bad_request(
                    "InvalidInterval",
                    "interval_hours must be 1 to 8760, interval_days 1 to 365",
                ))
            }
        }
        if self.never_expire == Some(true) {
            return Err(Error::bad_request("PermanentRetention", PERMANENT_RETENTION));
        }
        let retention_days = self
            .retention_days
            .ok_or_else(|| Error::bad_request("InvalidRetention", "retention_days is required (1 to 65536)"))?;
        validate::retention_days("retention_days", retention_days)?;
        let destination_region = match (&self.destination_region, self.replicate) {
            (Some(region), Some(true) | None) => Some(region.clone()),
            (None, Some(true)) => Some(
                default_destination
                    .ok_or_else(|| Error::bad_request("NoDestinationRegion", NO_DESTINATION_REGION))?
                    .to_owned(),
            ),
            (Some(_), Some(false)) => {
                return Err(Error::bad_request("InvalidRequest", "destination_region given with replicate: false"))
            }
            (None, _) => None,
        };
        if let Some(region) = &destination_region {
            validate::region("destination_region", region)?;
            if region == home_region {
                return Err(Error::bad_request(
                    "InvalidRegion",
                    format!("destination_region: '{region}' is the region of the service instances"),
                ));
            }
        }
        if let Some(days) = self.destination_retention_days {
            if destination_region.is_none() {
                return Err(Error::bad_request("NoDestinationRegion", NO_DESTINATION_REGION));
            }
            validate::retention_days("destination_retention_days", days)?;
        }
        for target in self.targets.iter().flatten() {
            validate::identifier("targets", target)?;
        }
        Ok(PolicySettings {
            name: name.to_owned(),
            interval_hours: self.interval_hours,
            interval_days: self.interval_days,
            start_time: self.start_time.unwrap_or(now),
            retention_days: retention_days.min(MAX_RETENTION_DAYS),
            destination_region,
            destination_retention_days: self.destination_retention_days,
        })
    }
}

impl Snapnest {
    pub async fn create_policy(&self, request: &PolicyRequest, now: Timestamp) -> Result<Policy> {
        let settings =
            request.validate(self.clouds.home_region(), self.settings.default_destination_region.as_deref(), now)?;
        let mut policy = Policy {
            policy_id: crate::backup::new_record_id("pl"),
            name: settings.name,
            state: PolicyState::Active,
            interval_hours: settings.interval_hours,
            interval_days: settings.interval_days,
            start_time: settings.start_time,
            retention_days: settings.retention_days,
            destination_region: settings.destination_region,
            destination_retention_days: settings.destination_retention_days,
            targets: Vec::new(),
            next_run_at: settings.start_time,
            last_run: None,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        policy.next_run_at = policy.slot_at_or_after(now);
        self.insert(&mut policy, None).await?;
        info!(policy_id = %policy.policy_id, "policy created");
        match &request.targets {
            Some(targets) if !targets.is_empty() => {
                let attach = TargetsRequest { attach: targets.clone(), detach: Vec::new() };
                match self.change_targets(&policy.policy_id, &attach, now).await {
                    Ok(attached) => Ok(attached),
                    // A refused request leaves nothing behind: the policy goes again.
                    Err(refused) => {
                        let current: Policy = self.load(&policy.policy_id).await?;
                        self.store.delete(Collection::Policies, &policy.policy_id, current.version).await?;
                        Err(refused)
                    }
                }
            }
            _ => Ok(policy),
        }
    }

    pub async fn get_policy(&self, policy_id: &str) -> Result<Policy> {
        validate::identifier("policy id", policy_id)?;
        self.load(policy_id).await
    }

    /// A page of policies, newest first.
    pub async fn list_policies(&self, limit: usize, cursor: Option<&str>) -> Result<(Vec<Policy>, Option<String>)> {
        let page = self.store.list_collection(Collection::Policies, limit, cursor).await?;
        let policies = page.documents.into_iter().map(from_document).collect::<Result<_>>()?;
        Ok((policies, page.next_cursor))
    }

    /// Replaces a policy's settings; its targets and state stay.
    pub async fn update_policy(&self, policy_id: &str, request: &PolicyRequest, now: Timestamp) -> Result<Policy> {
        if request.targets.is_some() {
            return Err(Error::bad_request("InvalidRequest", "targets: change them with POST /policies/{id}/targets"));
        }
        let settings =
            request.validate(self.clouds.home_region(), self.settings.default_destination_region.as_deref(), now)?;
        let mut policy = self.get_policy(policy_id).await?;
        policy.name = settings.name;
        policy.interval_hours = settings.interval_hours;
        policy.interval_days = settings.interval_days;
        policy.start_time = settings.start_time;
        policy.retention_days = settings.retention_days;
        policy.destination_region = settings.destination_region;
        policy.destination_retention_days = settings.destination_retention_days;
        policy.next_run_at = policy.slot_at_or_after(now);
        policy.updated_at = now;
        self.save(&mut policy).await?;
        Ok(policy)
    }

    /// Deletes a policy and frees its service instances for another policy.
    pub async fn delete_policy(&self, policy_id: &str) -> Result<Policy> {
        let policy = self.get_policy(policy_id).await?;
        self.store.delete(Collection::Policies, policy_id, policy.version).await?;
        for target in &policy.targets {
            self.store.release_lock(&target_lock(target), policy_id).await?;
        }
        info!(policy_id, "policy deleted");
        Ok(policy)
    }

    /// Suspends (never runs) or resumes a policy. Resuming starts from the next slot after
    /// now: slots missed while suspended are not made up.
    pub async fn set_policy_state(&self, policy_id: &str, state: PolicyState, now: Timestamp) -> Result<Policy> {
        let mut policy = self.get_policy(policy_id).await?;
        if policy.state == state {
            return Ok(policy);
        }
        policy.state = state;
        if state == PolicyState::Active {
            policy.next_run_at = policy.slot_at_or_after(now);
        }
        policy.updated_at = now;
        self.save(&mut policy).await?;
        info!(policy_id, state = ?state, "policy state changed");
        Ok(policy)
    }

    /// Attaches and detaches service instances. A service instance belongs to at most one
    /// policy: attaching one another policy holds is a 409 naming that policy.
    pub async fn change_targets(&self, policy_id: &str, request: &TargetsRequest, now: Timestamp) -> Result<Policy> {
        for id in request.attach.iter().chain(&request.detach) {
            validate::identifier("service instance id", id)?;
        }
        if request.attach.is_empty() && request.detach.is_empty() {
            return Err(Error::bad_request("InvalidRequest", "give service instances to attach or detach"));
        }
        let mut policy = self.get_policy(policy_id).await?;
        let mut newly_held = Vec::new();
        for target in &request.attach {
            match self.store.acquire_lock(&target_lock(target), policy_id).await {
                Ok(()) => newly_held.push(target.clone()),
                Err(StoreError::LockHeld { holder, .. }) => {
                    self.release_targets(&newly_held, &policy, policy_id).await;
                    return Err(Error::conflict(
                        "PolicyAlreadyAttached",
                        format!("service instance {target} is already protected by policy {holder}"),
                    ));
                }
                Err(e) => {
                    self.release_targets(&newly_held, &policy, policy_id).await;
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
        policy.updated_at = now;
        if let Err(e) = self.save(&mut policy).await {
            self.release_targets(&newly_held, &policy, policy_id).await;
            return Err(e);
        }
        for target in &request.detach {
            self.store.release_lock(&target_lock(target), policy_id).await?;
        }
        Ok(policy)
    }

    /// Gives back locks taken for targets the policy did not already have.
    async fn release_targets(&self, taken: &[String], policy: &Policy, policy_id: &str) {
        for target in taken.iter().filter(|t| !policy.targets.contains(t)) {
            if let Err(e) = self.store.release_lock(&target_lock(target), policy_id).await {
                warn!(policy_id, target, error = %e, "target lock left held; attaching it again will take it over");
            }
        }
    }

    /// create-backup's scheduled tick: runs every policy whose next slot is due.
    pub async fn run_due_policies(&self, now: Timestamp) -> Result<TickSummary> {
        let mut summary = TickSummary::default();
        for doc in self.store.list_due(Collection::Policies, now).await? {
            let policy: Policy = from_document(doc)?;
            summary.policies_due += 1;
            self.run_policy(policy, now, &mut summary).await?;
        }
        info!(policies_due = summary.policies_due, backups_started = summary.backups_started, "policy tick done");
        Ok(summary)
    }

    async fn run_policy(&self, mut policy: Policy, now: Timestamp, summary: &mut TickSummary) -> Result<()> {
        let slot = policy.slot_at_or_before(now).max(policy.next_run_at);
        let mut run = PolicyRun { slot, ran_at: now, skipped: None, targets: Vec::new() };
        if policy.state == PolicyState::Suspended {
            run.skipped = Some(SUSPENDED.to_owned());
            summary.policies_skipped += 1;
        } else {
            let origin = BackupOrigin { trigger: Trigger::Scheduled, policy_id: Some(policy.policy_id.clone()) };
            let request = policy.backup_request(slot);
            for target in &policy.targets {
                let outcome = match self.create_backup(target, &request, origin.clone(), now).await {
                    Ok(backup) => {
                        summary.backups_started += 1;
                        TargetOutcome {
                            service_instance_id: target.clone(),
                            backup_id: Some(backup.backup_id),
                            error: None,
                        }
                    }
                    // The record store failing is the tick's failure: retried whole, the tokens
                    // make the backups already started come back instead of starting again.
                    Err(e @ Error::Store(_)) => return Err(e),
                    Err(e) => {
                        warn!(policy_id = %policy.policy_id, service_instance_id = %target, error = %e, "policy target not backed up");
                        let failed = TargetOutcome {
                            service_instance_id: target.clone(),
                            backup_id: None,
                            error: Some(e.to_string()),
                        };
                        summary.errors.push(failed.clone());
                        failed
                    }
                };
                run.targets.push(outcome);
            }
        }
        policy.next_run_at = slot + policy.period();
        policy.last_run = Some(run);
        match self.save(&mut policy).await {
            // Another tick ran this slot and moved the policy on first: nothing to do.
            Err(Error::Conflict { .. }) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn policy(start: Timestamp, hours: u32) -> Policy {
        Policy {
            policy_id: "pl-1".into(),
            name: "nightly".into(),
            state: PolicyState::Active,
            interval_hours: Some(hours),
            interval_days: None,
            start_time: start,
            retention_days: 7,
            destination_region: None,
            destination_retention_days: None,
            targets: vec![],
            next_run_at: start,
            last_run: None,
            created_at: start,
            updated_at: start,
            version: 1,
        }
    }

    #[test]
    fn slots_follow_the_start_time_and_interval() {
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
        let p = policy(start, 6);
        assert_eq!(p.slot_at_or_after(start - Duration::days(3)), start);
        assert_eq!(p.slot_at_or_after(start), start);
        assert_eq!(p.slot_at_or_after(start + Duration::minutes(1)), start + Duration::hours(6));
        assert_eq!(p.slot_at_or_before(start + Duration::hours(13)), start + Duration::hours(12));
        assert_eq!(p.slot_at_or_before(start + Duration::hours(12)), start + Duration::hours(12));
    }

    #[test]
    fn requests_follow_the_seed_rules() {
        let now = Utc::now();
        let base =
            PolicyRequest { name: "p".into(), interval_days: Some(1), retention_days: Some(7), ..Default::default() };
        assert!(base.validate("us-east-1", None, now).is_ok());
        let permanent = PolicyRequest { never_expire: Some(true), retention_days: None, ..base.clone() };
        assert!(
            matches!(permanent.validate("us-east-1", None, now), Err(Error::BadRequest { message, .. }) if message == PERMANENT_RETENTION)
        );
        let no_region = PolicyRequest { replicate: Some(true), ..base.clone() };
        assert!(
            matches!(no_region.validate("us-east-1", None, now), Err(Error::BadRequest { message, .. }) if message == NO_DESTINATION_REGION)
        );
        let default_region = no_region.validate("us-east-1", Some("eu-west-1"), now).unwrap();
        assert_eq!(default_region.destination_region.as_deref(), Some("eu-west-1"));
        for bad in [
            PolicyRequest { interval_hours: Some(2), ..base.clone() },
            PolicyRequest { interval_days: Some(0), ..base.clone() },
            PolicyRequest { retention_days: Some(65_537), ..base.clone() },
            PolicyRequest { retention_days: None, ..base.clone() },
            PolicyRequest { destination_region: Some("us-east-1".into()), ..base.clone() },
            PolicyRequest { name: " ".into(), ..base.clone() },
        ] {
            assert!(matches!(bad.validate("us-east-1", None, now), Err(Error::BadRequest { .. })), "{bad:?}");
        }
    }
}
