//! A policy's schedule and runs as pure decisions: which slot a tick runs, what a run
//! asks of the backup service, and where the policy goes next. No store, no clock.

use chrono::Duration;

use crate::backup::BackupRequest;
use crate::error::{Error, Result};
use crate::model::Timestamp;
use crate::validate::{self, MAX_RETENTION_DAYS};

use super::{
    Policy, PolicyRequest, PolicyRun, PolicyRunStatus, PolicyState, TargetOutcome, NO_DESTINATION_REGION,
    PERMANENT_RETENTION, SUSPENDED,
};

impl Policy {
    pub(crate) fn period(&self) -> Duration {
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

    /// The request of a slot's backups: its client token is the policy and the slot, so a
    /// repeated or overlapping tick finds the backups it already started.
    pub fn backup_request(&self, slot: Timestamp) -> BackupRequest {
        BackupRequest {
            client_token: Some(format!("{}-{}", self.policy_id, slot.timestamp())),
            retention_days: Some(self.retention_days),
            destination_region: self.destination_region.clone(),
            destination_retention_days: self.destination_region.as_ref().and(self.destination_retention_days),
            volume_ids: (!self.volume_ids.is_empty()).then(|| self.volume_ids.clone()),
            ..Default::default()
        }
    }
}

/// What a tick does with a due policy: the slot it runs (the latest one due, never one
/// before the policy's next), or the slot it reports skipped because the policy is suspended.
pub fn plan_run(policy: &Policy, now: Timestamp) -> PolicyRun {
    let slot = policy.slot_at_or_before(now).max(policy.next_run_at);
    let skipped = (policy.state == PolicyState::Suspended).then(|| SUSPENDED.to_owned());
    let (status, cause) = run_outcome(skipped.as_deref(), &[]);
    PolicyRun { slot, ran_at: now, status, cause, skipped, targets: Vec::new() }
}

/// The run is over: what it came to is written on it, it is the policy's last, and the next
/// slot follows it.
pub fn finish_run(policy: &mut Policy, mut run: PolicyRun) {
    (run.status, run.cause) = run_outcome(run.skipped.as_deref(), &run.targets);
    policy.next_run_at = run.slot + policy.period();
    policy.last_run = Some(run);
}

/// Why a policy with no service instance attached backed nothing up.
pub const NO_TARGETS: &str = "the policy protects no service instance (attach one: POST /policies/{id}/targets)";

/// What a run came to, and its cause when it did not back up every target: skipped (a
/// suspended policy), every target's backup started, some, or none — a run that finds
/// nothing to back up (no target, or nothing tagged) fails with the cause.
pub fn run_outcome(skipped: Option<&str>, targets: &[TargetOutcome]) -> (PolicyRunStatus, Option<String>) {
    if let Some(why) = skipped {
        return (PolicyRunStatus::Skipped, Some(why.to_owned()));
    }
    let failed: Vec<&TargetOutcome> = targets.iter().filter(|t| t.error.is_some()).collect();
    let first =
        failed.first().map(|t| format!("{}: {}", t.service_instance_id, t.error.as_deref().unwrap_or_default()));
    match (targets.len(), failed.len()) {
        (0, _) => (PolicyRunStatus::Failed, Some(NO_TARGETS.to_owned())),
        (_, 0) => (PolicyRunStatus::Succeeded, None),
        (1, 1) => (PolicyRunStatus::Failed, failed[0].error.clone()),
        (all, n) if all == n => (
            PolicyRunStatus::Failed,
            Some(format!("none of {all} service instances was backed up; first: {}", first.unwrap_or_default())),
        ),
        (all, n) => (
            PolicyRunStatus::PartiallyFailed,
            Some(format!("{n} of {all} service instances were not backed up; first: {}", first.unwrap_or_default())),
        ),
    }
}

/// A target backed up (its backup id) or not (the cause), for the run's record.
pub fn target_outcome(service_instance_id: &str, outcome: Result<crate::ids::BackupId, String>) -> TargetOutcome {
    match outcome {
        Ok(backup_id) => TargetOutcome {
            service_instance_id: service_instance_id.to_owned(),
            backup_id: Some(backup_id),
            error: None,
        },
        Err(cause) => {
            TargetOutcome { service_instance_id: service_instance_id.to_owned(), backup_id: None, error: Some(cause) }
        }
    }
}

/// A target whose backup the run could not start, and the cause in a person's words: a
/// service instance of which nothing carries the tag (the backup's discovery found no
/// instance, volume or database) is "no resources tagged `<tag>=<id>` in `<region>`".
pub fn target_failed(service_instance_id: &str, error: &Error, tag_key: &str, region: &str) -> TargetOutcome {
    let cause = match error {
        // The system caller owns every service instance: a backup of one that is not found
        // found nothing carrying its tag.
        Error::NotFound { what: "service instance", .. } => {
            format!("no resources tagged {tag_key}={service_instance_id} in {region}")
        }
        other => other.to_string(),
    };
    target_outcome(service_instance_id, Err(cause))
}

pub(crate) struct PolicySettings {
    pub(crate) name: String,
    pub(crate) interval_hours: Option<u32>,
    pub(crate) interval_days: Option<u32>,
    pub(crate) start_time: Timestamp,
    pub(crate) retention_days: u32,
    pub(crate) destination_region: Option<String>,
    pub(crate) destination_retention_days: Option<u32>,
    pub(crate) volume_ids: Vec<String>,
}

impl PolicyRequest {
    pub(crate) fn validate(
        &self,
        home_region: &str,
        default_destination: Option<&str>,
        now: Timestamp,
    ) -> Result<PolicySettings> {
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
        let volume_ids = self.volume_ids.clone().unwrap_or_default();
        if self.volume_ids.as_ref().is_some_and(|ids| ids.is_empty()) {
            return Err(Error::bad_request(
                "InvalidRequest",
                "volume_ids: name at least one volume, or leave it out to protect every disk",
            ));
        }
        for id in &volume_ids {
            validate::prefixed_id("volume_ids", "vol", id)?;
        }
        Ok(PolicySettings {
            name: name.to_owned(),
            interval_hours: self.interval_hours,
            interval_days: self.interval_days,
            start_time: self.start_time.unwrap_or(now),
            retention_days: retention_days.min(MAX_RETENTION_DAYS),
            destination_region,
            destination_retention_days: self.destination_retention_days,
            volume_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::policy;
    use chrono::{TimeZone, Utc};

    #[test]
    fn slots_follow_the_start_time_and_interval() {
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
        let p = policy(start);
        assert_eq!(p.slot_at_or_after(start - Duration::days(3)), start);
        assert_eq!(p.slot_at_or_after(start), start);
        assert_eq!(p.slot_at_or_after(start + Duration::minutes(1)), start + Duration::hours(6));
        assert_eq!(p.slot_at_or_before(start + Duration::hours(13)), start + Duration::hours(12));
        assert_eq!(p.slot_at_or_before(start + Duration::hours(12)), start + Duration::hours(12));
    }

    #[test]
    fn a_late_tick_runs_the_latest_missed_slot_once_and_moves_on() {
        // GIVEN a 6-hourly policy whose next slot was 13 hours ago (the tick was down)
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
        let mut p = policy(start);
        let now = start + Duration::hours(13);
        // WHEN the tick plans its run
        let run = plan_run(&p, now);
        // THEN it runs the latest due slot, not the three missed ones
        assert_eq!(run.slot, start + Duration::hours(12));
        assert!(run.skipped.is_none());
        // AND once finished the policy's next slot is the one after it
        finish_run(&mut p, run);
        assert_eq!(p.next_run_at, start + Duration::hours(18));
        assert_eq!(p.last_run.as_ref().unwrap().slot, start + Duration::hours(12));
    }

    #[test]
    fn a_suspended_policy_reports_its_slot_skipped() {
        // GIVEN a suspended policy that is due
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
        let mut p = policy(start);
        p.state = PolicyState::Suspended;
        // WHEN a tick plans its run THEN the slot is skipped with the seed's words
        let run = plan_run(&p, start);
        assert_eq!(run.skipped.as_deref(), Some(SUSPENDED));
    }

    #[test]
    fn a_slots_backups_carry_the_same_client_token_on_every_tick() {
        // GIVEN a policy WHEN two ticks build the request of the same slot THEN the tokens match
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
        let p = policy(start);
        assert_eq!(p.backup_request(start).client_token, p.backup_request(start).client_token);
        assert_ne!(p.backup_request(start).client_token, p.backup_request(start + Duration::hours(6)).client_token);
    }

    fn ok(si: &str) -> TargetOutcome {
        target_outcome(si, Ok(crate::ids::BackupId::generate()))
    }

    #[test]
    fn a_run_that_finds_nothing_tagged_fails_with_the_cause() {
        // GIVEN a policy protecting si-gone, of which nothing carries the tag any more
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
        let mut p = policy(start);
        p.targets = vec!["si-gone".into()];
        let mut run = plan_run(&p, start);
        // WHEN its backup's discovery finds nothing (the backup service's 404)
        let refused = Error::not_found("service instance", "si-gone (no instance, volume or database carries its tag)");
        run.targets.push(target_failed("si-gone", &refused, "service-instance-id", "us-east-1"));
        finish_run(&mut p, run);
        // THEN the run failed, saying what was looked for and where
        let run = p.last_run.as_ref().unwrap();
        assert_eq!(run.status, PolicyRunStatus::Failed);
        assert_eq!(run.cause.as_deref(), Some("no resources tagged service-instance-id=si-gone in us-east-1"));
        assert_eq!(run.targets[0].error, run.cause);
        assert!(crate::metrics::policy_run_failed(run), "counted by PolicyRunFailed");
        assert_eq!(crate::metrics::policy_run_finished(&p, run)["PolicyRunFailed"], 1);
        // AND the next slot still follows
        assert_eq!(p.next_run_at, start + Duration::hours(6));
    }

    #[test]
    fn a_runs_outcome_follows_its_targets() {
        // GIVEN runs of various targets THEN each comes to what its targets say
        let failed = |si: &str| target_outcome(si, Err("This instance has been released.".into()));
        assert_eq!(run_outcome(None, &[ok("si-1"), ok("si-2")]), (PolicyRunStatus::Succeeded, None));
        let (status, cause) = run_outcome(None, &[ok("si-1"), failed("si-2"), failed("si-3")]);
        assert_eq!(status, PolicyRunStatus::PartiallyFailed);
        assert_eq!(
            cause.as_deref(),
            Some("2 of 3 service instances were not backed up; first: si-2: This instance has been released.")
        );
        let (status, cause) = run_outcome(None, &[failed("si-1"), failed("si-2")]);
        assert_eq!(status, PolicyRunStatus::Failed);
        assert!(cause.unwrap().starts_with("none of 2 service instances was backed up; first: si-1: "));
        // AND a policy that protects nothing finds nothing to back up: a failure, saying so
        assert_eq!(run_outcome(None, &[]), (PolicyRunStatus::Failed, Some(NO_TARGETS.to_owned())));
        // AND a suspended policy's slot is skipped, not failed
        assert_eq!(run_outcome(Some(SUSPENDED), &[]), (PolicyRunStatus::Skipped, Some(SUSPENDED.to_owned())));
        // AND any other refusal is quoted as it is
        let other =
            target_failed("si-1", &Error::conflict("BackupAlreadyRunning", "backup bk-1 is still running"), "k", "r");
        assert_eq!(other.error.as_deref(), Some("backup bk-1 is still running"));
    }

    #[test]
    fn a_run_stored_before_runs_had_a_status_gets_it_from_its_targets() {
        // GIVEN a last run as an older snapnest stored it, one of two targets failed
        let stored = serde_json::json!({
            "slot": "2026-11-20T02:00:00Z", "ran_at": "2026-11-20T02:00:41Z", "skipped": null,
            "targets": [
                {"service_instance_id": "si-1", "backup_id": "bk-1", "error": null},
                {"service_instance_id": "si-2", "backup_id": null, "error": "refused"}
            ]
        });
        // WHEN it is read THEN its status and cause are derived
        let run: PolicyRun = serde_json::from_value(stored).unwrap();
        assert_eq!(run.status, PolicyRunStatus::PartiallyFailed);
        assert!(run.cause.unwrap().ends_with("first: si-2: refused"));
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
