//! ropc-server: the `ropc` binary's runtime around [`ropc_core`].
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the command line |
//! | [`config`] | the config file and its errors |
//! | [`server`], [`http`], [`tls`] | listening, routing, TLS |
//! | [`app`] | running a token request through the core |
//! | [`hash`] | password hashing and the hash pool |
//! | [`credentials`] | the users file and client secrets |
//! | [`store`] | token records |
//! | [`users_file`] | changing the users file (lock file, atomic rewrite) |
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod delay;
pub mod demo;
pub mod fsutil;
pub mod hash;
pub mod http;
pub mod idle;
pub mod jwt;
pub mod lockout;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod store;
pub mod tls;
pub mod users_file;
