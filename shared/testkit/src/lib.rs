//! The contracts every adapter of snapnest's ports must pass, run by the tests against the
//! local and the AWS adapters alike. A dev-dependency only: nothing here ships.

pub mod cloud_contract;
pub mod store_contract;
