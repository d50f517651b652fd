//! snapnest's Lambda edge: the configuration read at cold start, the wiring of the adapters
//! it names ([`runtime::build`]), and the HTTP API on axum ([`api`]).

pub mod api;
pub mod config;
pub mod runtime;
