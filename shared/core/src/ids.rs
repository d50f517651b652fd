//! Record ids: one type per kind of record, so a restore id can never be passed where a
//! backup id is wanted. New ids are a kind prefix and a UUIDv7, so they sort by creation
//! time; any stored id of the right prefix (older ids were random) is accepted as it is.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::validate;

macro_rules! record_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// What every id of this kind starts with, before the `-`.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}-{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// An id from a request: a 400 naming `field` unless it is a well-formed id of this kind.
            pub fn parse(field: &'static str, value: &str) -> Result<Self> {
                validate::identifier(field, value)?;
                match value.strip_prefix(concat!($prefix, "-")) {
                    Some(rest) if !rest.is_empty() => Ok(Self(value.to_owned())),
                    _ => Err(Error::not_found($what, value)),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

record_id!(
    /// A backup point (`bk-…`).
    BackupId, "bk", "backup"
);
record_id!(
    /// A restore (`rs-…`).
    RestoreId, "rs", "restore"
);
record_id!(
    /// A backup policy (`pl-…`).
    PolicyId, "pl", "policy"
);
record_id!(
    /// One expire-retention run that had something to do (`ex-…`).
    ExpiryRunId, "ex", "expiry run"
);

/// A job of the jobs list, named as the user sees it. A backup's replication has no record
/// of its own: it is the backup's, named `rp-` and the rest of the backup id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobId {
    Backup(BackupId),
    Replication(BackupId),
    Restore(RestoreId),
    Expiry(ExpiryRunId),
}

const REPLICATION_PREFIX: &str = "rp-";

impl JobId {
    /// A job id from a request: 400 when malformed, 404 when it names no kind of job.
    pub fn parse(value: &str) -> Result<JobId> {
        validate::identifier("job id", value)?;
        if let Some(rest) = value.strip_prefix(REPLICATION_PREFIX) {
            return Ok(JobId::Replication(BackupId::parse("job id", &format!("{}-{rest}", BackupId::PREFIX))?));
        }
        let kind = value.split('-').next().unwrap_or_default();
        match kind {
            BackupId::PREFIX => Ok(JobId::Backup(BackupId::parse("job id", value)?)),
            RestoreId::PREFIX => Ok(JobId::Restore(RestoreId::parse("job id", value)?)),
            ExpiryRunId::PREFIX => Ok(JobId::Expiry(ExpiryRunId::parse("job id", value)?)),
            _ => Err(Error::not_found("job", value)),
        }
    }

    /// The id of the replication job of a backup.
    pub fn replication_of(backup_id: &BackupId) -> String {
        let rest = backup_id.split_once('-').map_or(backup_id.as_str(), |(_, rest)| rest);
        format!("{REPLICATION_PREFIX}{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_sort_by_creation_and_parse_back() {
        let first = BackupId::generate();
        let second = BackupId::generate();
        assert!(first < second, "{first} then {second}");
        assert_eq!(BackupId::parse("backup id", &first).unwrap(), first);
        assert!(first.starts_with("bk-"));
    }

    #[test]
    fn ids_of_another_kind_or_malformed_are_refused() {
        assert!(matches!(BackupId::parse("backup id", "rs-0123"), Err(Error::NotFound { .. })));
        assert!(matches!(BackupId::parse("backup id", "bk-"), Err(Error::NotFound { .. })));
        assert!(matches!(BackupId::parse("backup id", "bk 1"), Err(Error::BadRequest { .. })));
        // Ids made before time-ordered ids keep working.
        assert!(BackupId::parse("backup id", "bk-0123456789abcdef0123").is_ok());
    }

    #[test]
    fn job_ids_name_their_kind() {
        let backup = BackupId::generate();
        let replication = JobId::replication_of(&backup);
        assert_eq!(JobId::parse(&backup).unwrap(), JobId::Backup(backup.clone()));
        assert_eq!(JobId::parse(&replication).unwrap(), JobId::Replication(backup));
        assert!(matches!(JobId::parse("rs-1").unwrap(), JobId::Restore(_)));
        assert!(matches!(JobId::parse("ex-1").unwrap(), JobId::Expiry(_)));
        assert!(matches!(JobId::parse("zz-1"), Err(Error::NotFound { .. })));
    }
}
