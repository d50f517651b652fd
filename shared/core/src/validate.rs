//! Checks on user input that several operations share. Each returns a 400 naming the field.

use crate::error::Error;

/// The seeds' limit on retention (and on extending it).
pub const MAX_RETENTION_DAYS: u32 = 65_536;
/// The seeds' limit on EC2 instances per backup request.
pub const MAX_INSTANCES_PER_BACKUP: usize = 99;

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `ap-southeast-5`…
pub fn is_region_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let (geo, rest) = match parts.as_slice() {
        [geo, "gov", rest @ ..] | [geo, rest @ ..] => (geo, rest),
        [] => return false,
    };
    matches!(rest, [area, n] if !area.is_empty() && area.chars().all(|c| c.is_ascii_lowercase())
        && !n.is_empty() && n.len() <= 2 && n.chars().all(|c| c.is_ascii_digit()))
        && geo.len() == 2
        && geo.chars().all(|c| c.is_ascii_lowercase())
}

pub fn region(field: &'static str, name: &str) -> Result<(), Error> {
    if is_region_name(name) {
        Ok(())
    } else {
        Err(Error::bad_request("InvalidRegion", format!("{field}: '{name}' is not a region name (like us-west-2)")))
    }
}

/// Ids we put in keys and tags: 1–128 of letters, digits, `-`, `_`, `.`.
pub fn identifier(field: &'static str, value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            "InvalidIdentifier",
            format!("{field}: '{value}' must be 1 to 128 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// An AWS-style id with a prefix (`i-…`, `vol-…`).
pub fn prefixed_id(field: &'static str, prefix: &str, value: &str) -> Result<(), Error> {
    let ok = value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| !hex.is_empty() && hex.len() <= 64 && hex.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request("InvalidIdentifier", format!("{field}: '{value}' is not a {prefix}-… id")))
    }
}

pub fn retention_days(field: &'static str, days: u32) -> Result<(), Error> {
    if (1..=MAX_RETENTION_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(Error::bad_request(
            "InvalidRetention",
            format!("{field}: {days} is out of range (1 to {MAX_RETENTION_DAYS} days)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names() {
        for good in ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-5", "il-central-1"] {
            assert!(is_region_name(good), "{good}");
        }
        for bad in ["", "us", "us-east", "US-EAST-1", "us-east-1a", "mars-1", "us_east_1", "us-east-123"] {
            assert!(!is_region_name(bad), "{bad}");
        }
    }

    #[test]
    fn ids_and_retention() {
        assert!(prefixed_id("instance_ids", "i", "i-0abc123").is_ok());
        assert!(prefixed_id("instance_ids", "i", "vol-0abc").is_err());
        assert!(prefixed_id("instance_ids", "i", "i-").is_err());
        assert!(identifier("id", "si-demo").is_ok());
        assert!(identifier("id", "si demo").is_err());
        assert!(identifier("id", &"x".repeat(129)).is_err());
        assert!(retention_days("retention_days", 1).is_ok());
        assert!(retention_days("retention_days", 65_536).is_ok());
        assert!(retention_days("retention_days", 0).is_err());
        assert!(retention_days("retention_days", 65_537).is_err());
    }
}
