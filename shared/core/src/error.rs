//! The domain's error type. Every failure a user can see is one of these variants;
//! the Lambda edge (`snapnest_lambda::api`) maps them to HTTP status codes in one place.

use crate::cloud::CloudError;
use crate::status::{IllegalTransition, JobStatus};
use crate::store::StoreError;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong; nothing was written.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// An id that does not exist (or is not this caller's).
    #[error("{what} '{id}' does not exist")]
    NotFound { what: &'static str, id: String },
    /// The request carries no identity the deployment trusts.
    #[error("{0}")]
    Unauthenticated(String),
    /// The identity is known but may not use this route (a JWT without the route's scope).
    #[error("{0}")]
    Forbidden(String),
    /// The request is valid but the current state forbids it.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The record store failed; the operation is safe to retry and nothing was lost.
    #[error("Failed to synchronize metadata.")]
    Store(#[source] StoreError),
    /// The cloud refused or failed a call the request depended on.
    #[error("cloud call failed: {0}")]
    Cloud(#[from] CloudError),
}

impl Error {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }

    pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound { what, id: id.into() }
    }

    /// The 409 of a cancel that comes after the job ended.
    pub fn not_running(id: &str, status: JobStatus) -> Self {
        Self::conflict("JobNotRunning", format!("job {id} is {} and cannot be cancelled", status.as_str()))
    }

    /// The 409 of a change to a point whose snapshots expire-retention has begun to delete.
    pub fn expiring(backup_id: &str, since: crate::clock::Timestamp) -> Self {
        Self::conflict(
            "BackupExpiring",
            format!("backup {backup_id} is expiring: its snapshots have been being deleted since {since}"),
        )
    }

    /// Whether an asynchronous invocation should be retried by Lambda.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Cloud(e) => e.is_retryable(),
            _ => false,
        }
    }
}

impl From<IllegalTransition> for Error {
    fn from(e: IllegalTransition) -> Self {
        // Reached when a request races a lifecycle that has moved on (cancel after finish…).
        Self::conflict("IllegalTransition", e.to_string())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            // A lost optimistic-concurrency race is a conflict the caller can see and retry.
            StoreError::VersionConflict { collection, id } => Self::conflict(
                "ConcurrentModification",
                format!("{collection} '{id}' was changed by another request; read it again and retry"),
            ),
            StoreError::BadCursor => Self::bad_request("InvalidNextToken", "next_token is not one this API returned"),
            other => Self::Store(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
