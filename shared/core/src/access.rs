//! Whose is it: who is calling, and whether a service instance's records are theirs.
//!
//! A service instance belongs to the names in the `snapnest:owner` tags of its instances
//! and databases ([`crate::cloud::tag::OWNER`]), read when a backup is taken and kept in
//! every record made of it; a policy belongs to whoever created it. A caller sees and acts
//! on what one of its names owns — its principal, the role it assumed, its groups — and an
//! admin on everything. What is not the caller's answers exactly as what does not exist
//! (404), so ids of others' records reveal nothing.

use std::collections::BTreeSet;

use crate::error::Error;

/// Who makes a request, as the edge read it from the request's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal, for logs and as the owner of what it creates (policies).
    pub principal: String,
    /// Every name an owner tag may use for this caller.
    pub names: BTreeSet<String>,
    pub admin: bool,
}

impl Caller {
    /// The scheduled functions, and local runs that name no caller: everything is theirs.
    pub fn system() -> Caller {
        Caller { principal: "snapnest".into(), names: BTreeSet::new(), admin: true }
    }

    /// A caller with its principal and the other names it goes by (role, groups).
    pub fn new(principal: &str, other_names: impl IntoIterator<Item = String>, admin_names: &[String]) -> Caller {
        let mut names: BTreeSet<String> = other_names.into_iter().collect();
        names.insert(principal.to_owned());
        let admin = names.iter().any(|n| admin_names.contains(n));
        Caller { principal: principal.to_owned(), names, admin }
    }

    /// An IAM caller, from the ARN API Gateway verified: the ARN itself and, for an assumed
    /// role (`arn:aws:sts::<account>:assumed-role/<role>/<session>`), the role's name and ARN.
    pub fn from_iam_arn(arn: &str, admin_names: &[String]) -> Caller {
        let mut names = Vec::new();
        if let Some((prefix, rest)) = arn.split_once(":assumed-role/") {
            if let (Some(role), Some(account)) = (rest.split('/').next(), prefix.strip_prefix("arn:aws:sts::")) {
                names.push(role.to_owned());
                names.push(format!("arn:aws:iam::{account}:role/{role}"));
            }
        }
        Caller::new(arn, names, admin_names)
    }

    /// Whether records owned by `owners` are this caller's.
    pub fn owns<'a>(&self, owners: impl IntoIterator<Item = &'a String>) -> bool {
        self.admin || owners.into_iter().any(|o| self.names.contains(o))
    }

    /// `Ok` when the record is the caller's; the same 404 as a missing record otherwise.
    pub fn check<'a>(
        &self,
        owners: impl IntoIterator<Item = &'a String>,
        what: &'static str,
        id: &str,
    ) -> Result<(), Error> {
        if self.owns(owners) {
            Ok(())
        } else {
            Err(Error::not_found(what, id))
        }
    }
}

impl Default for Caller {
    fn default() -> Self {
        Caller::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assumed_role_owns_by_its_arn_its_role_name_and_its_role_arn() {
        // GIVEN a caller that assumed role "ops" in account 123456789012
        let caller = Caller::from_iam_arn("arn:aws:sts::123456789012:assumed-role/ops/alice", &[]);
        // THEN owner tags naming the role, the role ARN or the session ARN are its; others are not
        for owner in ["ops", "arn:aws:iam::123456789012:role/ops", "arn:aws:sts::123456789012:assumed-role/ops/alice"] {
            assert!(caller.owns([&owner.to_owned()]), "{owner}");
        }
        assert!(!caller.owns([&"dev".to_owned()]));
        assert!(!caller.owns([]), "a service instance without an owner tag is nobody's but an admin's");
        assert!(matches!(caller.check([&"dev".to_owned()], "backup", "bk-1"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn an_admin_name_sees_everything() {
        // GIVEN "platform" as an admin name, and a caller in that group
        let admins = vec!["platform".to_owned()];
        let caller = Caller::new("user-1", ["platform".to_owned()], &admins);
        // THEN it owns everything, owner tag or not
        assert!(caller.admin && caller.owns([]) && caller.owns([&"anyone".to_owned()]));
        assert!(!Caller::new("user-2", [], &admins).admin);
    }
}
