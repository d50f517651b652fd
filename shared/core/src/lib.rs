//! snapnest's domain: backup points and restores of *service instances* (every EC2
//! instance, EBS volume and RDS database carrying one tag), their status rules,
//! retention and replication, over three ports — [`store::Store`] for records,
//! [`cloud::Cloud`] for EC2/EBS/RDS and [`queue::WorkQueue`] for work handed to another
//! function — and the events of every state change ([`events`], published through the
//! [`events::EventBus`] port by publish-events). This crate knows no AWS, SQLite or Lambda type: the
//! adapters (`snapnest-local`, `snapnest-aws`) implement its ports, and the Lambda edge
//! (`snapnest-lambda`) wires them and maps results to HTTP.

pub mod access;
pub mod backup;
pub mod clock;
pub mod cloud;
pub mod error;
pub mod events;
pub mod ids;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod poll;
pub mod queue;
pub mod records;
pub mod replication;
pub mod restore;
pub mod retention;
pub mod snapshots;
pub mod status;
pub mod store;
pub mod summary;
pub mod validate;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;

pub use error::{Error, Result};

use access::Caller;
use backup::BackupService;
use clock::Clock;
use cloud::CloudProvider;
use jobs::Jobs;
use policy::PolicyService;
use poll::Poller;
use queue::WorkQueue;
use records::Records;
use replication::ReplicationService;
use restore::RestoreService;
use retention::RetentionService;
use store::Store;

/// Settings the use cases need, from the process's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub tag_key: String,
    pub default_retention_days: u32,
    /// Where a policy that turns replication on without naming a region copies to.
    pub default_destination_region: Option<String>,
    /// How long an in-place restore keeps what it replaced, for a roll-back.
    pub keep_replaced_days: u32,
    /// Names (principal ARNs, role names, JWT subjects or groups) whose callers see and act
    /// on every service instance.
    pub admins: Vec<String>,
    /// Per destination region, the KMS key replicas are encrypted with there (an encrypted
    /// RDS snapshot cannot be copied to another region without one).
    pub replica_kms_keys: std::collections::BTreeMap<String, String>,
    /// Per destination region, the option group there that stands for each non-default
    /// source option group (`CopyDBSnapshot OptionGroupName`; a disaster recovery's database
    /// gets it too).
    pub replica_option_groups: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// Local runs only: a caller the request names without verification is believed, and a
    /// request naming none acts as the system. Deployed, only verified identities count.
    pub trust_unverified_callers: bool,
}

/// Every use case of snapnest, each holding only the ports it uses. Built once per process;
/// a handler calls one of them.
#[derive(Clone)]
pub struct Snapnest {
    pub backups: BackupService,
    pub restores: RestoreService,
    pub replication: ReplicationService,
    pub retention: RetentionService,
    pub policies: PolicyService,
    pub jobs: Jobs,
    pub poller: Poller,
    /// What the use cases were built on, kept to build them again (another clock, caller).
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    pub clouds: Arc<dyn CloudProvider>,
    pub settings: Settings,
    /// Whom the use cases act for: [`Caller::system`] unless built [`Snapnest::for_caller`].
    pub caller: Arc<Caller>,
    /// Where work is handed to another function ([`Snapnest::with_queue`]); none: done in place.
    pub queue: Option<Arc<dyn WorkQueue>>,
}

impl Snapnest {
    /// The use cases as the scheduled functions run them: for the system, which owns all.
    pub fn new(
        store: Arc<dyn Store>,
        clouds: Arc<dyn CloudProvider>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Self {
        Self::build(store, clouds, clock, settings, Arc::new(Caller::system()), None)
    }

    /// The same use cases, handing work to other functions through `queue`.
    pub fn with_queue(&self, queue: Arc<dyn WorkQueue>) -> Snapnest {
        let (store, clouds, clock) = (self.store.clone(), self.clouds.clone(), self.clock.clone());
        Snapnest::build(store, clouds, clock, self.settings.clone(), self.caller.clone(), Some(queue))
    }

    fn build(
        store: Arc<dyn Store>,
        clouds: Arc<dyn CloudProvider>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        caller: Arc<Caller>,
        queue: Option<Arc<dyn WorkQueue>>,
    ) -> Self {
        let records = Records::new(store.clone());
        let backups = BackupService::new(
            records.clone(),
            clouds.clone(),
            clock.clone(),
            settings.tag_key.clone(),
            settings.default_retention_days,
            caller.clone(),
            queue.clone(),
        );
        let restores = RestoreService::new(
            records.clone(),
            clouds.clone(),
            clock.clone(),
            backups.clone(),
            restore::machine::Rules {
                tag_key: settings.tag_key.clone(),
                keep_replaced: chrono::Duration::days(settings.keep_replaced_days.into()),
                deadlines: Default::default(),
            },
            caller.clone(),
        );
        let replication = ReplicationService::new(
            records.clone(),
            clouds.clone(),
            clock.clone(),
            settings.replica_kms_keys.clone(),
            settings.replica_option_groups.clone(),
        );
        let retention =
            RetentionService::new(records.clone(), clouds.clone(), clock.clone(), restores.clone(), caller.clone());
        let policies = PolicyService::new(
            records.clone(),
            backups.clone(),
            clock.clone(),
            clouds.home_region().to_owned(),
            settings.default_destination_region.clone(),
            caller.clone(),
        );
        let jobs = Jobs::new(records.clone(), backups.clone(), restores.clone(), replication.clone(), caller.clone());
        let poller = Poller::new(records, backups.clone(), restores.clone(), clock.clone());
        Self {
            backups,
            restores,
            replication,
            retention,
            policies,
            jobs,
            poller,
            clock,
            store,
            clouds,
            settings,
            caller,
            queue,
        }
    }

    /// The same use cases over the same adapters, reading time from `clock`.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Snapnest {
        Snapnest::build(
            self.store.clone(),
            self.clouds.clone(),
            clock,
            self.settings.clone(),
            self.caller.clone(),
            self.queue.clone(),
        )
    }

    /// The same use cases acting for `caller`: what is not theirs is not found.
    pub fn for_caller(&self, caller: Caller) -> Snapnest {
        Snapnest::build(
            self.store.clone(),
            self.clouds.clone(),
            self.clock.clone(),
            self.settings.clone(),
            Arc::new(caller),
            self.queue.clone(),
        )
    }
}
