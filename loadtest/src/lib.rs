//! ropc-loadtest: a load generator and report for ropc and any other OAuth
//! 2.0 (RFC 6749) token endpoint.
//!
//! Virtual users each own one HTTP/1.1 connection (keep-alive, or a new one
//! per request) and send password, refresh, client credentials or RFC 7662
//! introspection requests in a closed loop or at a fixed arrival rate. The
//! report gives throughput, latency percentiles and errors by HTTP status and
//! OAuth error code, on the terminal, as JSON and as an SVG chart. The
//! `fixture` command writes a ropc configuration with known users, so that a
//! run can be reproduced with two commands.
//!
//! Layout: [`cli`] parses the command line; [`run`] drives the virtual users
//! over [`client`] connections; [`scenario`] builds the requests and judges
//! the answers; [`stats`] records them; [`report`] and [`svg`] present them;
//! [`fixture`] writes the server side.

#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod cpu;
pub mod dpop;
pub mod fixture;
pub mod form;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod svg;
