//! Configuration, read once from the environment at cold start (SPEC "Configuration").
//! A bad value fails start-up with a message naming the variable, not each request.

use std::path::PathBuf;
use std::time::Duration;

use snapnest_local::simulated::Faults;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Embedded,
    DynamoDb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudKind {
    Simulated,
    Aws,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub store: StoreKind,
    pub table: Option<String>,
    pub cloud: CloudKind,
    pub data_dir: PathBuf,
    pub tag_key: String,
    pub home_region: String,
    pub sim_operation_time: Duration,
    pub sim_latency: Duration,
    pub sim_faults: Faults,
    /// Retention of a manual backup that names none.
    pub default_retention_days: u32,
    /// Where a policy that turns replication on without naming a region copies to.
    pub default_destination_region: Option<String>,
    /// How long an in-place restore keeps what it replaced, for a roll-back.
    pub keep_replaced_days: u32,
    /// Names whose callers see every service instance (`SNAPNEST_ADMINS`, comma-separated).
    pub admins: Vec<String>,
    /// `SNAPNEST_REPLICA_KMS_KEYS`: `region=key` pairs, comma-separated.
    pub replica_kms_keys: std::collections::BTreeMap<String, String>,
    /// `SNAPNEST_REPLICA_OPTION_GROUPS`: `region:source=destination` entries, comma-separated.
    pub replica_option_groups: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// Who calls: `verified` (deployed: only what API Gateway verified) or `header` (local:
    /// the `x-snapnest-caller` header, or the system).
    pub identity: Identity,
    /// Where a new backup's start goes.
    pub start_queue: StartQueue,
    /// Where publish-events publishes (`SNAPNEST_EVENT_BUS`): an EventBridge bus's name or ARN
    /// (`default`: the account's default bus); unset: logged and kept in the process (local
    /// runs, which have no table stream to publish from).
    pub event_bus: Option<String>,
}

/// Where create-backup and run-policies hand a new backup's snapshot calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartQueue {
    /// Deployed: the SQS queue start-backup reads (`SNAPNEST_START_QUEUE_URL`).
    Sqs(String),
    /// Local: start-backup invoked through the local Lambda emulator's invoke API, as the SQS
    /// event source would (`SNAPNEST_LOCAL_LAMBDA`, e.g. `cargo lambda watch`'s address).
    LocalLambda(String),
    /// Neither: the request issues the snapshot calls itself (one-process runs).
    InPlace,
}

/// Where the HTTP functions learn who calls (`SNAPNEST_IDENTITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Verified,
    Header,
}

/// The variables a deployed function reads (the template must set each of them).
pub const DEPLOYED_VARIABLES: &[&str] = &[
    "SNAPNEST_STORE",
    "SNAPNEST_TABLE",
    "SNAPNEST_CLOUD",
    "SNAPNEST_TAG_KEY",
    "SNAPNEST_DEFAULT_RETENTION_DAYS",
    "SNAPNEST_DESTINATION_REGION",
    "SNAPNEST_KEEP_REPLACED_DAYS",
    "SNAPNEST_ADMINS",
    "SNAPNEST_IDENTITY",
    "SNAPNEST_REPLICA_KMS_KEYS",
    "SNAPNEST_REPLICA_OPTION_GROUPS",
    "SNAPNEST_START_QUEUE_URL",
    "SNAPNEST_EVENT_BUS",
];

/// The variables only local runs use: the embedded store and the simulated cloud.
pub const LOCAL_VARIABLES: &[&str] = &[
    "SNAPNEST_DATA_DIR",
    "SNAPNEST_SIM_SNAPSHOT_SECONDS",
    "SNAPNEST_SIM_LATENCY_MS",
    "SNAPNEST_SIM_FAULTS",
    "SNAPNEST_LOG_FORMAT",
    "SNAPNEST_LOCAL_LAMBDA",
];

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let err = |variable: &'static str, message: String| ConfigError { variable, message };
        let store = match get("SNAPNEST_STORE").as_deref() {
            None | Some("embedded") => StoreKind::Embedded,
            Some("dynamodb") => StoreKind::DynamoDb,
            Some(other) => return Err(err("SNAPNEST_STORE", format!("'{other}' is not embedded or dynamodb"))),
        };
        let table = get("SNAPNEST_TABLE");
        if store == StoreKind::DynamoDb && table.is_none() {
            return Err(err("SNAPNEST_TABLE", "required when SNAPNEST_STORE=dynamodb".into()));
        }
        let cloud = match get("SNAPNEST_CLOUD").as_deref() {
            None | Some("simulated") => CloudKind::Simulated,
            Some("aws") => CloudKind::Aws,
            Some(other) => return Err(err("SNAPNEST_CLOUD", format!("'{other}' is not simulated or aws"))),
        };
        let number = |variable: &'static str, default: f64| -> Result<f64, ConfigError> {
            match get(variable) {
                None => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| err(variable, format!("'{v}' is not a non-negative number"))),
            }
        };
        let home_region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into());
        if !snapnest_core::validate::is_region_name(&home_region) {
            return Err(err("AWS_REGION", format!("'{home_region}' is not a region name")));
        }
        let default_destination_region = get("SNAPNEST_DESTINATION_REGION");
        if let Some(region) = &default_destination_region {
            if !snapnest_core::validate::is_region_name(region) || *region == home_region {
                return Err(err(
                    "SNAPNEST_DESTINATION_REGION",
                    format!("'{region}' is not a region name other than {home_region}"),
                ));
            }
        }
        Ok(Self {
            default_destination_region,
            store,
            table,
            cloud,
            data_dir: get("SNAPNEST_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".snapnest")),
            tag_key: get("SNAPNEST_TAG_KEY").unwrap_or_else(|| "service-instance-id".into()),
            home_region,
            sim_operation_time: Duration::from_secs_f64(number("SNAPNEST_SIM_SNAPSHOT_SECONDS", 2.0)?),
            sim_latency: Duration::from_secs_f64(number("SNAPNEST_SIM_LATENCY_MS", 0.0)? / 1000.0),
            sim_faults: match get("SNAPNEST_SIM_FAULTS") {
                None => Faults::default(),
                Some(spec) => spec.parse().map_err(|m| err("SNAPNEST_SIM_FAULTS", m))?,
            },
            default_retention_days: match get("SNAPNEST_DEFAULT_RETENTION_DAYS") {
                None => 7,
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|d| (1..=snapnest_core::validate::MAX_RETENTION_DAYS).contains(d))
                    .ok_or_else(|| err("SNAPNEST_DEFAULT_RETENTION_DAYS", format!("'{v}' is not 1 to 65536")))?,
            },
            keep_replaced_days: match get("SNAPNEST_KEEP_REPLACED_DAYS") {
                None => 7,
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|d| (1..=365).contains(d))
                    .ok_or_else(|| err("SNAPNEST_KEEP_REPLACED_DAYS", format!("'{v}' is not 1 to 365")))?,
            },
            admins: get("SNAPNEST_ADMINS")
                .map(|v| v.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
            replica_kms_keys: match get("SNAPNEST_REPLICA_KMS_KEYS") {
                None => Default::default(),
                Some(pairs) => pairs
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|pair| match pair.split_once('=') {
                        Some((region, key))
                            if snapnest_core::validate::is_region_name(region.trim()) && !key.trim().is_empty() =>
                        {
                            Ok((region.trim().to_owned(), key.trim().to_owned()))
                        }
                        _ => Err(err("SNAPNEST_REPLICA_KMS_KEYS", format!("'{pair}' is not region=key"))),
                    })
                    .collect::<Result<_, _>>()?,
            },
            replica_option_groups: {
                let mut groups: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
                    Default::default();
                for entry in get("SNAPNEST_REPLICA_OPTION_GROUPS").iter().flat_map(|v| v.split(',')).map(str::trim) {
                    if entry.is_empty() {
                        continue;
                    }
                    let parsed = entry.split_once(':').and_then(|(region, rest)| {
                        let (source, destination) = rest.split_once('=')?;
                        let (region, source, destination) = (region.trim(), source.trim(), destination.trim());
                        let valid = snapnest_core::validate::is_region_name(region)
                            && !source.is_empty()
                            && !destination.is_empty();
                        valid.then(|| (region.to_owned(), source.to_owned(), destination.to_owned()))
                    });
                    let Some((region, source, destination)) = parsed else {
                        return Err(err(
                            "SNAPNEST_REPLICA_OPTION_GROUPS",
                            format!("'{entry}' is not region:source-group=destination-group"),
                        ));
                    };
                    groups.entry(region).or_default().insert(source, destination);
                }
                groups
            },
            start_queue: match (get("SNAPNEST_START_QUEUE_URL"), get("SNAPNEST_LOCAL_LAMBDA")) {
                (Some(url), None) => StartQueue::Sqs(url),
                (None, Some(endpoint)) if endpoint.starts_with("http://") || endpoint.starts_with("https://") => {
                    StartQueue::LocalLambda(endpoint.trim_end_matches('/').to_owned())
                }
                (None, Some(other)) => {
                    return Err(err("SNAPNEST_LOCAL_LAMBDA", format!("'{other}' is not an http:// address")))
                }
                (Some(_), Some(_)) => {
                    return Err(err("SNAPNEST_LOCAL_LAMBDA", "not with SNAPNEST_START_QUEUE_URL: one queue".into()))
                }
                (None, None) => StartQueue::InPlace,
            },
            event_bus: match get("SNAPNEST_EVENT_BUS") {
                // EventBridge API Reference, "PutEventsRequestEntry": EventBusName is a name
                // ([/\.\-_A-Za-z0-9]+, 1 to 256) or an ARN (up to 1,600 characters).
                Some(bus)
                    if bus.len() <= 1600
                        && (bus.starts_with("arn:")
                            || (bus.len() <= 256
                                && bus.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)))) =>
                {
                    Some(bus)
                }
                Some(other) => {
                    return Err(err("SNAPNEST_EVENT_BUS", format!("'{other}' is not an EventBridge bus name or ARN")))
                }
                None => None,
            },
            identity: match get("SNAPNEST_IDENTITY").as_deref() {
                None | Some("header") => Identity::Header,
                Some("verified") => Identity::Verified,
                Some(other) => return Err(err("SNAPNEST_IDENTITY", format!("'{other}' is not verified or header"))),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_store_and_simulated_cloud() {
        let c = config(&[]).unwrap();
        assert_eq!((c.store, c.cloud), (StoreKind::Embedded, CloudKind::Simulated));
        assert_eq!(c.data_dir, PathBuf::from(".snapnest"));
        assert_eq!(c.tag_key, "service-instance-id");
        assert_eq!(c.sim_operation_time, Duration::from_secs(2));
        assert_eq!(c.default_retention_days, 7);
        assert_eq!(c.keep_replaced_days, 7);
        assert_eq!(c.start_queue, StartQueue::InPlace);
        assert_eq!(c.event_bus, None);
    }

    #[test]
    fn the_event_bus_is_a_name_or_an_arn() {
        assert_eq!(config(&[("SNAPNEST_EVENT_BUS", "default")]).unwrap().event_bus.as_deref(), Some("default"));
        let arn = "arn:aws:events:us-east-1:123456789012:event-bus/snapnest";
        assert_eq!(config(&[("SNAPNEST_EVENT_BUS", arn)]).unwrap().event_bus.as_deref(), Some(arn));
        assert_eq!(config(&[("SNAPNEST_EVENT_BUS", "has space")]).unwrap_err().variable, "SNAPNEST_EVENT_BUS");
    }

    #[test]
    fn a_start_queue_is_sqs_deployed_or_the_local_emulator() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/snapnest-start";
        assert_eq!(config(&[("SNAPNEST_START_QUEUE_URL", url)]).unwrap().start_queue, StartQueue::Sqs(url.into()));
        let local = config(&[("SNAPNEST_LOCAL_LAMBDA", "http://127.0.0.1:9000/")]).unwrap();
        assert_eq!(local.start_queue, StartQueue::LocalLambda("http://127.0.0.1:9000".into()));
        assert_eq!(config(&[("SNAPNEST_LOCAL_LAMBDA", "9000")]).unwrap_err().variable, "SNAPNEST_LOCAL_LAMBDA");
        let both = config(&[("SNAPNEST_LOCAL_LAMBDA", "http://127.0.0.1:9000"), ("SNAPNEST_START_QUEUE_URL", url)]);
        assert_eq!(both.unwrap_err().variable, "SNAPNEST_LOCAL_LAMBDA");
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(config(&[("SNAPNEST_STORE", "redis")]).unwrap_err().variable, "SNAPNEST_STORE");
        assert_eq!(
            config(&[("SNAPNEST_KEEP_REPLACED_DAYS", "0")]).unwrap_err().variable,
            "SNAPNEST_KEEP_REPLACED_DAYS"
        );
        assert_eq!(config(&[("SNAPNEST_STORE", "dynamodb")]).unwrap_err().variable, "SNAPNEST_TABLE");
        assert_eq!(
            config(&[("SNAPNEST_SIM_SNAPSHOT_SECONDS", "-1")]).unwrap_err().variable,
            "SNAPNEST_SIM_SNAPSHOT_SECONDS"
        );
        assert_eq!(config(&[("SNAPNEST_SIM_FAULTS", "throttle=9")]).unwrap_err().variable, "SNAPNEST_SIM_FAULTS");
        assert_eq!(config(&[("AWS_REGION", "mars")]).unwrap_err().variable, "AWS_REGION");
        assert_eq!(config(&[("SNAPNEST_IDENTITY", "anyone")]).unwrap_err().variable, "SNAPNEST_IDENTITY");
        let bad_keys = config(&[("SNAPNEST_REPLICA_KMS_KEYS", "alias/x")]);
        assert_eq!(bad_keys.unwrap_err().variable, "SNAPNEST_REPLICA_KMS_KEYS");
    }

    #[test]
    fn deployed_settings_are_read() {
        let c = config(&[
            ("SNAPNEST_IDENTITY", "verified"),
            ("SNAPNEST_ADMINS", "ops, platform"),
            ("SNAPNEST_REPLICA_KMS_KEYS", "us-west-2=alias/snapnest, eu-west-1=arn:aws:kms:eu-west-1:1:key/k"),
        ])
        .unwrap();
        assert_eq!((c.identity, c.admins), (Identity::Verified, vec!["ops".to_owned(), "platform".to_owned()]));
        assert_eq!(c.replica_kms_keys.get("us-west-2").map(String::as_str), Some("alias/snapnest"));
        assert_eq!(c.replica_kms_keys.len(), 2);
        let groups = config(&[("SNAPNEST_REPLICA_OPTION_GROUPS", "us-west-2:orders-og=orders-og-west")]).unwrap();
        assert_eq!(groups.replica_option_groups["us-west-2"]["orders-og"], "orders-og-west");
        let bad = config(&[("SNAPNEST_REPLICA_OPTION_GROUPS", "orders-og=west")]);
        assert_eq!(bad.unwrap_err().variable, "SNAPNEST_REPLICA_OPTION_GROUPS");
    }
}
