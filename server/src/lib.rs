//! ropc-server: the `ropc` binary's runtime around [`ropc_core`]. ARCHITECTURE.md
//! maps these modules and the path one password grant takes through them.
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the command line |
//! | [`runtime`] | listening, accepting, draining; the sweeper; signals |
//! | [`http`] | routing, bodies, responses, the request log and metrics |
//! | [`grant`] | the Step loops: a grant driven through the core |
//! | [`auth`] | client secrets, passwords, pacing of answers, upgrades |
//! | [`lockout`] | brute-force counters, in memory or in Redis |
//! | [`store`] | token records: memory and its log, or Redis |
//! | [`app`] | the composition root |
//! | [`live`] | one generation of the configuration, and commits |
//! | [`config`] | the config file and its errors |
//! | [`credentials`] | the users and the client secrets |
//! | [`metrics`] | the request metrics and their labels |
//! | [`provider`] | randomness and the digest for the core |
//! | [`jwt`], [`tls`] | JWT signing keys; TLS certificates |
//! | [`users_file`], [`fsutil`] | changing files atomically |
//! | [`source`], [`slots`], [`clock`], [`routes`], [`redact`], [`idle`], [`logging`], [`demo`] | small pieces the others share |
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod access_log;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod fsutil;
pub mod grant;
pub mod http;
pub mod idle;
pub mod jose;
pub mod jwt;
pub mod live;
pub mod lockout;
pub mod logging;
pub mod metrics;
pub mod provider;
pub mod redact;
pub mod routes;
pub mod runtime;
pub mod slots;
pub mod source;
pub mod store;
#[cfg(test)]
mod test_log;
pub mod tls;
pub mod users_file;
