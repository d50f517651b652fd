//! snapnest's domain: backup points and restores of *service instances* (every EC2
//! instance, EBS volume and RDS database carrying one tag), their status rules,
//! retention and replication, over two ports — [`store::Store`] for records and
//! [`cloud::Cloud`] for EC2/EBS/RDS. This crate knows no AWS, SQLite or Lambda type: the
//! adapters (`snapnest-local`, `snapnest-aws`) implement its ports, and the Lambda edge
//! (`snapnest-lambda`) wires them and maps results to HTTP.

pub mod backup;
pub mod cloud;
pub mod error;
pub mod jobs;
pub mod model;
pub mod policy;
pub mod poll;
pub mod records;
pub mod replication;
pub mod restore;
pub mod retention;
pub mod status;
pub mod store;
pub mod validate;

use std::sync::Arc;

pub use error::{Error, Result};

use cloud::CloudProvider;
use store::Store;

/// Settings the workflows need, from [`config::Config`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub tag_key: String,
    pub default_retention_days: u32,
    /// Where a policy that turns replication on without naming a region copies to.
    pub default_destination_region: Option<String>,
}

/// The service: the ports and settings every workflow runs on. Built once per process.
#[derive(Clone)]
pub struct Snapnest {
    pub store: Arc<dyn Store>,
    pub clouds: Arc<dyn CloudProvider>,
    pub settings: Settings,
}

impl Snapnest {
    pub fn new(store: Arc<dyn Store>, clouds: Arc<dyn CloudProvider>, settings: Settings) -> Self {
        Self { store, clouds, settings }
    }
}
