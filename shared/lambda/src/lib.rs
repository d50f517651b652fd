//! snapnest's Lambda edge: the configuration read at cold start, the wiring of the adapters
//! it names ([`runtime::build`]), the HTTP API on axum ([`api`]) and its OpenAPI description
//! ([`openapi`]), and work between functions as Lambda carries it ([`work`]).

pub mod api;
pub mod config;
pub mod openapi;
pub mod runtime;
pub mod work;
