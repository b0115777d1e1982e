//! `[server]` and `[hash_pool]`: listeners, TLS, limits, and the hash
//! workers' threads.

use super::raw::{RawHashPool, RawServer, RawTls};
use super::{ConfigError, HashPoolConfig, TlsMode};
use crate::source::Locator;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// `[server]`, validated.
pub(super) struct Server {
    pub(super) listen: String,
    pub(super) admin_listen: Option<String>,
    pub(super) admin_socket: Option<std::path::PathBuf>,
    pub(super) tls: TlsMode,
    pub(super) client_ca_file: Option<std::path::PathBuf>,
    pub(super) max_body_bytes: usize,
    pub(super) header_read_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_header_bytes: usize,
    pub(super) max_connections: usize,
    pub(super) shutdown_delay: Duration,
}

/// `v` if it lies in `range`, else an error naming `key` and the range.
pub(super) fn bounded(
    loc: &Locator<'_>,
    v: &Spanned<u64>,
    key: &str,
    range: RangeInclusive<u64>,
    unit: &str,
) -> Result<u64, ConfigError> {
    if range.contains(v.get_ref()) {
        Ok(*v.get_ref())
    } else {
        Err(loc.at(v.span(), key, format!("must be between {} and {}{unit}", range.start(), range.end())))
    }
}

/// `[hash_pool] max_queue_wait_ms` unless set: about a dozen OWASP-cost
/// hashes per worker.
pub const DEFAULT_MAX_QUEUE_WAIT_MS: u64 = 250;

/// The local admin socket's default name, beside the config file.
pub const DEFAULT_ADMIN_SOCKET: &str = "ropc-admin.sock";

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

pub(super) fn parse(loc: &Locator<'_>, dir: &Path, server: &RawServer) -> Result<Server, ConfigError> {
    let listen = server.listen.get_ref().clone();
    if !is_host_port(&listen) {
        return Err(loc.at(server.listen.span(), "server.listen", "expected `host:port`, e.g. \"127.0.0.1:8443\""));
    }
    let admin_listen = match &server.admin_listen {
        Some(a) if !is_host_port(a.get_ref()) => {
            return Err(loc.at(a.span(), "server.admin_listen", "expected `host:port`, e.g. \"127.0.0.1:9090\""))
        }
        Some(a) => Some(a.get_ref().clone()),
        None => None,
    };
    let admin_socket = match server.admin_socket.as_ref().map(Spanned::get_ref) {
        None => Some(dir.join(DEFAULT_ADMIN_SOCKET)),
        Some(s) if s.is_empty() => None,
        Some(s) => Some(dir.join(s)),
    };
    let tls = match server.tls.as_ref().map(Spanned::get_ref) {
        None | Some(RawTls::SelfSigned) => TlsMode::SelfSigned,
        Some(RawTls::Off) => TlsMode::Off,
        Some(RawTls::Files { cert, key }) => TlsMode::Files { cert: dir.join(cert), key: dir.join(key) },
    };
    let client_ca_file = match &server.client_ca_file {
        Some(f) if tls == TlsMode::Off => {
            return Err(loc.at(f.span(), "server.client_ca_file", "client certificates need TLS: tls is \"off\""))
        }
        Some(f) => {
            let path = dir.join(f.get_ref());
            crate::tls::client_ca(&path).map_err(|e| loc.at(f.span(), "server.client_ca_file", e))?;
            Some(path)
        }
        None => None,
    };
    let max_body = bounded(loc, &server.max_body_bytes, "server.max_body_bytes", 64..=1 << 20, "")?;
    let header_timeout = bounded(loc, &server.header_read_timeout, "server.header_read_timeout", 1..=300, " seconds")?;
    let idle_timeout = bounded(loc, &server.idle_timeout, "server.idle_timeout", header_timeout..=3600, " seconds")?;
    let shutdown_delay = bounded(loc, &server.shutdown_delay, "server.shutdown_delay", 0..=300, " seconds")?;
    let max_header_bytes = bounded(loc, &server.max_header_bytes, "server.max_header_bytes", 8192..=1 << 20, "")?;
    let max_connections = bounded(loc, &server.max_connections, "server.max_connections", 1..=1_000_000, "")?;
    Ok(Server {
        listen,
        admin_listen,
        admin_socket,
        tls,
        client_ca_file,
        max_body_bytes: max_body as usize,
        header_read_timeout: Duration::from_secs(header_timeout),
        idle_timeout: Duration::from_secs(idle_timeout),
        max_header_bytes: max_header_bytes as usize,
        max_connections: max_connections as usize,
        shutdown_delay: Duration::from_secs(shutdown_delay),
    })
}

pub(super) fn hash_pool(loc: &Locator<'_>, raw: &RawHashPool) -> Result<HashPoolConfig, ConfigError> {
    let nice = match &raw.nice {
        Some(nice) => bounded(loc, nice, "hash_pool.nice", 0..=19, "")?,
        None => u64::from(ropc_hash::DEFAULT_NICE.unsigned_abs()),
    };
    let max_wait = match &raw.max_queue_wait_ms {
        Some(ms) => bounded(loc, ms, "hash_pool.max_queue_wait_ms", 0..=60_000, " ms")?,
        None => DEFAULT_MAX_QUEUE_WAIT_MS,
    };
    Ok(HashPoolConfig {
        workers: raw.workers,
        queue: raw.queue,
        policy: raw.policy,
        nice: i32::try_from(nice).unwrap_or(0),
        max_queue_wait: Duration::from_millis(max_wait),
    })
}
