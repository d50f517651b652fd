//! snapnest's Lambda edge: the configuration read at cold start, the wiring of the adapters
//! it names ([`runtime::build`]), the Lambda event loop, and the HTTP API ([`api`]).

pub mod api;
pub mod config;
pub mod runtime;
