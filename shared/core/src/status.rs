//! The status rules of backup and restore records, as pure functions.
//!
//! A record's status is never stored on its own authority: it is derived from the
//! statuses of its items (one per volume or database) by [`aggregate`], and the
//! only statuses a user or the scheduler can impose on top of that (`Cancelled`,
//! `Expired`) go through [`JobStatus::can_become`]. Keeping this in one pure module
//! lets every combination be tested without a store or a cloud.

use serde::{Deserialize, Serialize};

/// Where one resource of a backup, restore or copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ItemStatus {
    /// Planned; no cloud call has been made for it yet.
    Pending,
    /// The cloud is working on it (snapshot in progress, volume being created…).
    Running,
    Succeeded,
    Failed,
    /// The job was cancelled before this item finished.
    Cancelled,
    /// An in-place restore put this resource back as it was before the restore.
    RolledBack,
}

impl ItemStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled | Self::RolledBack)
    }
}

/// Where a whole backup point, restore or replication stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    /// Written, nothing started yet (the seeds' empty record).
    Pending,
    /// At least one item is still being worked on (the seeds' "backing up" / "restoring").
    Running,
    Succeeded,
    /// Every item is terminal, some succeeded and some failed.
    PartiallyFailed,
    /// Every item is terminal and none succeeded.
    Failed,
    Cancelled,
    /// A backup point whose retention ran out; its snapshots are deleted.
    Expired,
    /// An in-place restore is putting the service instance back as it was before it
    /// (after a failure, a deadline, a cancel, or at the user's request).
    RollingBack,
    /// An in-place restore ended with the service instance as it was before it.
    RolledBack,
}

impl JobStatus {
    pub const ALL: [JobStatus; 9] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::PartiallyFailed,
        Self::Failed,
        Self::Cancelled,
        Self::Expired,
        Self::RollingBack,
        Self::RolledBack,
    ];

    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running | Self::RollingBack)
    }

    /// A finished point that still holds snapshots someone may restore from.
    pub fn is_restorable(self) -> bool {
        matches!(self, Self::Succeeded | Self::PartiallyFailed)
    }

    /// Moves to `next` if [`JobStatus::can_become`] allows it; otherwise the status stays
    /// and the refused transition is the error (a bug or a lost race, never applied).
    pub fn transition(&mut self, next: JobStatus) -> Result<(), IllegalTransition> {
        if self.can_become(next) {
            *self = next;
            Ok(())
        } else {
            Err(IllegalTransition { from: *self, to: next })
        }
    }

    /// The transitions a record may make. Everything else is a bug or a lost race.
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        match (self, next) {
            (a, b) if a == b => true,
            (Pending, Running | Succeeded | PartiallyFailed | Failed | Cancelled) => true,
            (Running, Succeeded | PartiallyFailed | Failed | Cancelled) => true,
            // A roll-back starts from a restore at work, or from a finished in-place restore
            // whose replaced resources are still kept; it ends put back, or failed to.
            (Pending | Running | Succeeded | PartiallyFailed, RollingBack) => true,
            (Pending | Running | RollingBack, RolledBack) => true,
            (RollingBack, Failed | Cancelled) => true,
            // A point that finished keeps its snapshots until its retention runs out.
            (Succeeded | PartiallyFailed | Failed | Cancelled, Expired) => true,
            _ => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::PartiallyFailed => "PartiallyFailed",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
            Self::Expired => "Expired",
            Self::RollingBack => "RollingBack",
            Self::RolledBack => "RolledBack",
        }
    }
}

impl std::str::FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown status '{s}'"))
    }
}

/// A status change the lifecycle does not allow, refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {} job cannot become {}", from.as_str(), to.as_str())]
pub struct IllegalTransition {
    pub from: JobStatus,
    pub to: JobStatus,
}

/// The status of a job derived from its items (SPEC "Backup" 4):
/// - no items, or all `Pending` → `Pending`;
/// - any item `Pending` or `Running` (and not all pending) → `Running`;
/// - all terminal and any `RolledBack` → `RolledBack`;
/// - all terminal and any `Cancelled` → `Cancelled`;
/// - all terminal with failures → `PartiallyFailed` when some succeeded, else `Failed`;
/// - all succeeded → `Succeeded`.
pub fn aggregate<I>(items: I) -> JobStatus
where
    I: IntoIterator<Item = ItemStatus>,
{
    let (mut pending, mut running, mut succeeded, mut failed, mut cancelled, mut rolled_back) = (0, 0, 0, 0, 0, 0);
    for status in items {
        match status {
            ItemStatus::Pending => pending += 1,
            ItemStatus::Running => running += 1,
            ItemStatus::Succeeded => succeeded += 1,
            ItemStatus::Failed => failed += 1,
            ItemStatus::Cancelled => cancelled += 1,
            ItemStatus::RolledBack => rolled_back += 1,
        }
    }
    let total = pending + running + succeeded + failed + cancelled + rolled_back;
    if total == pending {
        JobStatus::Pending
    } else if pending + running > 0 {
        JobStatus::Running
    } else if rolled_back > 0 {
        JobStatus::RolledBack
    } else if cancelled > 0 {
        JobStatus::Cancelled
    } else if failed > 0 && succeeded > 0 {
        JobStatus::PartiallyFailed
    } else if failed > 0 {
        JobStatus::Failed
    } else {
        JobStatus::Succeeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ItemStatus as I;
    use JobStatus as J;

    const ALL_ITEMS: [ItemStatus; 6] = [I::Pending, I::Running, I::Succeeded, I::Failed, I::Cancelled, I::RolledBack];
    const ALL_JOBS: [JobStatus; 9] = JobStatus::ALL;

    /// The rule written independently of `aggregate`, from the counts of each status.
    fn expected(items: &[ItemStatus]) -> JobStatus {
        let count = |s: ItemStatus| items.iter().filter(|&&i| i == s).count();
        if items.iter().all(|&i| i == I::Pending) {
            J::Pending
        } else if items.iter().any(|i| !i.is_terminal()) {
            J::Running
        } else if count(I::RolledBack) > 0 {
            J::RolledBack
        } else if count(I::Cancelled) > 0 {
            J::Cancelled
        } else if count(I::Failed) == items.len() {
            J::Failed
        } else if count(I::Failed) > 0 {
            J::PartiallyFailed
        } else {
            J::Succeeded
        }
    }

    #[test]
    fn every_combination_of_up_to_four_items_aggregates_by_the_rule() {
        // 6^1 + 6^2 + 6^3 + 6^4 combinations, order included.
        let mut checked = 0;
        for len in 1..=4u32 {
            for code in 0..6usize.pow(len) {
                let mut n = code;
                let items: Vec<_> = (0..len)
                    .map(|_| {
                        let s = ALL_ITEMS[n % 6];
                        n /= 6;
                        s
                    })
                    .collect();
                assert_eq!(aggregate(items.iter().copied()), expected(&items), "{items:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 6 + 36 + 216 + 1296);
    }

    #[test]
    fn named_cases_match_the_spec() {
        assert_eq!(aggregate([]), J::Pending);
        assert_eq!(aggregate([I::Succeeded, I::Running]), J::Running);
        assert_eq!(aggregate([I::Succeeded, I::Pending]), J::Running);
        assert_eq!(aggregate([I::Succeeded; 7]), J::Succeeded);
        assert_eq!(aggregate([I::Succeeded, I::Failed]), J::PartiallyFailed);
        assert_eq!(aggregate([I::Failed, I::Failed]), J::Failed);
        assert_eq!(aggregate([I::Succeeded, I::Cancelled]), J::Cancelled);
        assert_eq!(aggregate([I::Failed, I::Cancelled, I::Running]), J::Running);
    }

    #[test]
    fn transitions_only_go_forward() {
        for from in ALL_JOBS {
            for to in ALL_JOBS {
                let allowed = from.can_become(to);
                let rolling_back = from == J::RollingBack;
                let forward = from == to
                    || (!from.is_terminal() && !rolling_back && to.is_terminal() && to != J::Expired)
                    || (from == J::Pending && to == J::Running)
                    || (from.is_terminal() && from != J::Expired && from != J::RolledBack && to == J::Expired)
                    // roll-backs: into one from work or a finished restore, out of one to its ends
                    || (to == J::RollingBack && matches!(from, J::Pending | J::Running | J::Succeeded | J::PartiallyFailed))
                    || (rolling_back && matches!(to, J::RolledBack | J::Failed | J::Cancelled));
                assert_eq!(allowed, forward, "{from:?} -> {to:?}");
            }
        }
        assert!(!J::Expired.can_become(J::Succeeded));
        assert!(!J::Running.can_become(J::Pending));
        assert!(!J::Running.can_become(J::Expired));
    }

    #[test]
    fn a_refused_transition_leaves_the_status_as_it_was() {
        // GIVEN an expired point
        let mut status = J::Expired;
        // WHEN something tries to make it Succeeded again
        let refused = status.transition(J::Succeeded);
        // THEN the change is refused and the status stays
        assert_eq!(refused, Err(IllegalTransition { from: J::Expired, to: J::Succeeded }));
        assert_eq!(status, J::Expired);
        // AND an allowed change is applied
        let mut running = J::Running;
        assert_eq!(running.transition(J::Succeeded), Ok(()));
        assert_eq!(running, J::Succeeded);
    }

    #[test]
    fn statuses_parse_case_insensitively() {
        for status in ALL_JOBS {
            assert_eq!(status.as_str().to_lowercase().parse::<JobStatus>(), Ok(status));
        }
        assert!("Done".parse::<JobStatus>().is_err());
    }
}
