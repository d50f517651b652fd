//! The `Clock` port: where the domain reads the time. Services read it once per operation
//! and hand that instant to the pure lifecycles, so a lifecycle is a function of its inputs
//! and tests can move time forward without sleeping.

/// An instant, to the nanosecond, in UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's clock: what every deployed function uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// Whether a run whose time ends at `deadline` (none: no end) must stop starting work now.
pub fn past(clock: &dyn Clock, deadline: Option<Timestamp>) -> bool {
    deadline.is_some_and(|d| clock.now() >= d)
}

/// A clock that always reads the same instant: the use cases as of that moment.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}
