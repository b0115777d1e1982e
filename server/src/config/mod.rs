//! The configuration file (TOML, contract in DESIGN.md Part 2): parsing,
//! validation, and errors that name the file, the line and the key.
//!
//! Parsing is two passes: serde reads the raw shape (rejecting unknown keys
//! and wrong types, with the span of the culprit), then [`Config::from_raw`]
//! checks meaning (scopes defined, secrets are hashes, TTLs positive) and
//! builds the core's [`Engine`].

use crate::hash::{HashParams, HashPriority, StoredHash};
use crate::lockout::LockoutPolicy;
use ropc_core::client::Client;
use ropc_core::scope::{ScopeRegistry, ScopeSet};
use ropc_core::{Capabilities, ClientIndex, Engine, EngineConfig, Limits, TokenFormat};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

mod raw;
use raw::*;

/// A configuration problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The key, as a dotted path (`clients.scopes`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// How the listener speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP: loopback, or behind a TLS-terminating proxy.
    Off,
    /// A self-signed certificate for localhost, generated once and kept
    /// beside the config file.
    SelfSigned,
    /// A real certificate chain and key, PEM.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
}

/// The paths of the endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The token endpoint.
    pub token: String,
    /// The revocation endpoint (RFC 7009).
    pub revocation: String,
    /// The introspection endpoint (RFC 7662).
    pub introspection: String,
    /// The JWKS endpoint (RFC 7517), served when a client uses JWTs.
    pub jwks: String,
}

/// Where JWT signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeySource {
    /// ropc generates and rotates keys in this directory.
    Managed(PathBuf),
    /// The operator's key, and older keys still published.
    Files {
        /// The signing key (PKCS#8 PEM).
        signing_key: PathBuf,
        /// Keys no longer signing whose tokens may still be live.
        previous_keys: Vec<PathBuf>,
    },
}

/// JWT access token settings (`[jwt]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Algorithm of generated keys.
    pub algorithm: crate::jwt::Algorithm,
    /// Key source.
    pub keys: JwtKeySource,
    /// The `aud` claim; `None` = the issuer.
    pub audience: Option<String>,
    /// Whether any client uses JWT access tokens.
    pub in_use: bool,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// The directory relative paths are resolved against.
    pub dir: PathBuf,
    /// `host:port` to listen on.
    pub listen: String,
    /// `host:port` for `/metrics` and `/healthz` only, plain HTTP.
    pub admin_listen: Option<String>,
    /// TLS mode.
    pub tls: TlsMode,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Time a client has to send its request headers (and its body). hyper
    /// also closes an HTTP/1 connection idle this long between requests.
    pub header_read_timeout: Duration,
    /// A connection with no bytes read or written this long is closed.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), bytes.
    pub max_header_bytes: usize,
    /// Most connections served at once; more are refused with 503.
    pub max_connections: usize,
    /// After SIGTERM, how long to keep serving (with `/healthz` at 503)
    /// before closing the listeners, so a load balancer notices.
    pub shutdown_delay: Duration,
    /// Endpoint paths.
    pub endpoints: Endpoints,
    /// The configured issuer; `None` = derived from listen and tls.
    pub issuer: Option<String>,
    /// The users file, resolved.
    pub users_file: Option<PathBuf>,
    /// Parameters for new password hashes.
    pub argon2: HashParams,
    /// Brute-force protection.
    pub lockout: LockoutPolicy,
    /// Hash worker threads (0 = one per core).
    pub hash_workers: usize,
    /// Hash queue length (0 = derived).
    pub hash_queue: usize,
    /// How far below the request threads the OS schedules the hash
    /// workers: a nice value, or `SCHED_IDLE`.
    pub hash_priority: HashPriority,
    /// The core engine: policy, clients, scopes.
    pub engine: Arc<Engine>,
    /// JWT access token settings.
    pub jwt: JwtConfig,
    /// Client secret hashes, by client index (none for a retired slot).
    pub client_secrets: Vec<Option<Arc<StoredHash>>>,
    /// Where token records live.
    pub token_store: TokenStoreConfig,
}

/// Where token records live (`[token_store]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenStoreConfig {
    /// In this process; refresh tokens also go to a write-ahead log at
    /// `wal` (none: `durable = false`) so that they survive a restart.
    Memory {
        /// The write-ahead log file.
        wal: Option<PathBuf>,
        /// How the log syncs: 0 = `fdatasync` before answering, else
        /// every this many milliseconds in the background.
        sync_interval_ms: u64,
    },
    /// Shared by every instance through Redis (or Valkey).
    Redis(RedisConfig),
}

/// `[token_store] kind = "redis"`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URLs: one for a single node, or the seed
    /// nodes of a Redis Cluster.
    pub nodes: Vec<String>,
    /// Whether `nodes` are Redis Cluster seeds.
    pub cluster: bool,
    /// Prefix of every key ropc writes.
    pub prefix: String,
    /// Bound on opening a connection.
    pub connect_timeout: Duration,
    /// Bound on one command (round trip).
    pub command_timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may carry a password.
        f.debug_struct("RedisConfig")
            .field("nodes", &self.nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>())
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

/// The write-ahead log's default background sync interval: what a power
/// cut (not a crash of the process) can lose at most.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 50;

fn parse_token_store(loc: &Locator<'_>, dir: &Path, raw: RawTokenStore) -> Result<TokenStoreConfig, ConfigError> {
    let kind = raw.kind.as_ref().map_or("memory", |k| k.get_ref().as_str());
    let span_of = |v: &Option<Spanned<String>>| v.as_ref().map_or(0..0, |v| v.span());
    match kind {
        "memory" => {
            if let Some(url) = &raw.url {
                return Err(loc.at(url.span(), "token_store.url", "only used with kind = \"redis\""));
            }
            if let Some(node) = raw.cluster_nodes.first() {
                return Err(loc.at(node.span(), "token_store.cluster_nodes", "only used with kind = \"redis\""));
            }
            let wal = raw.durable.unwrap_or(true).then(|| dir.join(raw.file.as_deref().unwrap_or("ropc-tokens.wal")));
            let sync_interval_ms = match &raw.sync_interval_ms {
                None => DEFAULT_SYNC_INTERVAL_MS,
                Some(v) if *v.get_ref() <= 10_000 => *v.get_ref(),
                Some(v) => {
                    return Err(loc.at(
                        v.span(),
                        "token_store.sync_interval_ms",
                        "must be at most 10000 (0: sync before answering)",
                    ))
                }
            };
            Ok(TokenStoreConfig::Memory { wal, sync_interval_ms })
        }
        "redis" => {
            if raw.durable.is_some() || raw.file.is_some() || raw.sync_interval_ms.is_some() {
                return Err(loc.at(
                    span_of(&raw.kind),
                    "token_store.durable",
                    "durable, file and sync_interval_ms are for kind = \"memory\"; Redis keeps its own persistence (RDB/AOF)",
                ));
            }
            let cluster = !raw.cluster_nodes.is_empty();
            let nodes: Vec<&Spanned<String>> = match (&raw.url, cluster) {
                (Some(url), false) => vec![url],
                (None, true) => raw.cluster_nodes.iter().collect(),
                (Some(url), true) => {
                    return Err(loc.at(url.span(), "token_store.url", "set url (one node) or cluster_nodes, not both"))
                }
                (None, false) => {
                    return Err(loc.at(
                        span_of(&raw.kind),
                        "token_store.url",
                        "kind = \"redis\" needs url = \"redis://host:6379\" (or cluster_nodes)",
                    ))
                }
            };
            for node in &nodes {
                let key = if cluster { "token_store.cluster_nodes" } else { "token_store.url" };
                if let Err(e) = redis::Client::open(node.get_ref().as_str()) {
                    return Err(loc.at(node.span(), key, format!("not a Redis URL: {e}")));
                }
            }
            let prefix = raw.prefix.as_ref().map_or("ropc:", |p| p.get_ref().as_str()).to_owned();
            let ms = |v: &Option<Spanned<u64>>, key: &str, default: u64| match v {
                None => Ok(Duration::from_millis(default)),
                Some(v) if (1..=60_000).contains(v.get_ref()) => Ok(Duration::from_millis(*v.get_ref())),
                Some(v) => Err(loc.at(v.span(), key, "must be between 1 and 60000 milliseconds")),
            };
            Ok(TokenStoreConfig::Redis(RedisConfig {
                nodes: nodes.iter().map(|n| n.get_ref().clone()).collect(),
                cluster,
                prefix,
                connect_timeout: ms(&raw.connect_timeout_ms, "token_store.connect_timeout_ms", 500)?,
                command_timeout: ms(&raw.command_timeout_ms, "token_store.command_timeout_ms", 250)?,
            }))
        }
        other => Err(loc.at(
            span_of(&raw.kind),
            "token_store.kind",
            format!("unknown kind {other:?} (expected \"memory\" or \"redis\")"),
        )),
    }
}

/// `url` with any password replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Builds errors for one source text.
struct Locator<'s> {
    file: &'s Path,
    source: &'s str,
}

impl Locator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.source.as_bytes()[..offset.min(self.source.len())].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn at(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        // Defaults carry an empty span at 0: no line to point at.
        let line = (span != (0..0)).then(|| self.line_of(span.start));
        ConfigError { file: self.file.to_owned(), line, key: key.into(), message: message.into() }
    }

    /// The dotted key at `offset`: the enclosing table header plus the key
    /// on that line, for errors serde reports with only a span.
    fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.source.len());
        let line_start = self.source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.source[offset..].find('\n').map_or(self.source.len(), |i| offset + i);
        let line = self.source[line_start..line_end].trim();
        let header = |l: &str| l.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_owned();
        if line.starts_with('[') {
            return header(line);
        }
        let key = line.split('=').next().unwrap_or("").trim().trim_matches('"');
        let table = self.source[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(header)
            .unwrap_or_default();
        match (table.is_empty(), key.is_empty()) {
            (true, _) => key.to_owned(),
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

/// The text of `path`; an error says `what` went wrong and names the file.
pub fn read_file(path: &Path, what: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        line: None,
        key: String::new(),
        message: format!("{what}: {e}"),
    })
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::parse(path, &read_file(path, "cannot read the file")?)
    }

    /// Reads and validates the config file at `path` as the successor of
    /// `previous` (a live reload): every scope and client that `previous`
    /// has keeps its index, since token records store indices, and removed
    /// ones leave retired slots that are never reused. New scopes and
    /// clients take the next free indices.
    pub fn load_after(path: &Path, previous: &Config) -> Result<Config, ConfigError> {
        Self::parse_after(path, &read_file(path, "cannot read the file")?, Some(&previous.engine))
    }

    /// Validates `source` as if read from `path`.
    pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigError> {
        Self::parse_after(path, source, None)
    }

    /// Validates `source` as if read from `path`, keeping the scope and
    /// client indices of `previous` (see [`Config::load_after`]).
    pub fn parse_after(path: &Path, source: &str, previous: Option<&Engine>) -> Result<Config, ConfigError> {
        let loc = Locator { file: path, source };
        let raw: RawConfig = toml::from_str(source).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let key = if span == (0..0) { String::new() } else { loc.key_at(span.start) };
            let line = e.span().map(|s| loc.line_of(s.start));
            ConfigError { file: path.to_owned(), line, key, message: e.message().trim().to_owned() }
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Self::from_raw(&loc, dir, raw, previous)
    }

    fn from_raw(
        loc: &Locator<'_>,
        dir: PathBuf,
        raw: RawConfig,
        previous: Option<&Engine>,
    ) -> Result<Config, ConfigError> {
        let server = raw.server;
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
        let tls = match &server.tls {
            None => TlsMode::SelfSigned,
            Some(v) => parse_tls(loc, &dir, v)?,
        };
        let bounded = |v: &Spanned<u64>, key: &str, range: std::ops::RangeInclusive<u64>, unit: &str| {
            if range.contains(v.get_ref()) {
                Ok(*v.get_ref())
            } else {
                Err(loc.at(v.span(), key, format!("must be between {} and {}{unit}", range.start(), range.end())))
            }
        };
        let max_body = bounded(&server.max_body_bytes, "server.max_body_bytes", 64..=1 << 20, "")?;
        let header_timeout = bounded(&server.header_read_timeout, "server.header_read_timeout", 1..=300, " seconds")?;
        let idle_timeout = bounded(&server.idle_timeout, "server.idle_timeout", header_timeout..=3600, " seconds")?;
        let shutdown_delay = bounded(&server.shutdown_delay, "server.shutdown_delay", 0..=300, " seconds")?;
        let max_header_bytes = bounded(&server.max_header_bytes, "server.max_header_bytes", 8192..=1 << 20, "")?;
        let max_connections = bounded(&server.max_connections, "server.max_connections", 1..=1_000_000, "")?;
        let hash_nice = match &raw.hash_pool.nice {
            Some(nice) => bounded(nice, "hash_pool.nice", 0..=19, "")?,
            None => u64::from(crate::hash::DEFAULT_NICE.unsigned_abs()),
        };
        let hash_priority = match raw.hash_pool.policy.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
            None | Some(("normal", _)) => HashPriority::Nice(i32::try_from(hash_nice).unwrap_or(0)),
            Some(("idle", _)) => HashPriority::Idle,
            Some((_, span)) => return Err(loc.at(span, "hash_pool.policy", "must be \"normal\" or \"idle\"")),
        };

        let ts = raw.token_service;
        for (key, path) in [
            ("token_service.token_endpoint", &ts.token_endpoint),
            ("token_service.revocation_endpoint", &ts.revocation_endpoint),
            ("token_service.introspection_endpoint", &ts.introspection_endpoint),
            ("token_service.jwks_endpoint", &ts.jwks_endpoint),
        ] {
            if !path.get_ref().starts_with('/') || path.get_ref().contains(['?', '#', ' ']) {
                return Err(loc.at(path.span(), key, "must be a path starting with `/`, without query or fragment"));
            }
        }
        let paths = [
            ts.token_endpoint.get_ref(),
            ts.revocation_endpoint.get_ref(),
            ts.introspection_endpoint.get_ref(),
            ts.jwks_endpoint.get_ref(),
        ];
        if (0..paths.len()).any(|i| paths[i + 1..].contains(&paths[i])) {
            return Err(loc.at(ts.revocation_endpoint.span(), "token_service", "the endpoint paths must all differ"));
        }
        for (key, path) in [
            ("token_service.token_endpoint", &ts.token_endpoint),
            ("token_service.revocation_endpoint", &ts.revocation_endpoint),
            ("token_service.introspection_endpoint", &ts.introspection_endpoint),
            ("token_service.jwks_endpoint", &ts.jwks_endpoint),
        ] {
            if ["/metrics", "/healthz", crate::http::METADATA_PATH].contains(&path.get_ref().as_str()) {
                return Err(loc.at(path.span(), key, format!("{:?} is reserved", path.get_ref())));
            }
        }
        for (key, ttl) in [
            ("token_service.access_token_ttl", &ts.access_token_ttl),
            ("token_service.refresh_token_ttl", &ts.refresh_token_ttl),
        ] {
            bounded(ttl, key, 1..=10 * 365 * 86_400, " seconds")?;
        }
        if *ts.refresh_reuse_grace.get_ref() > 300 {
            return Err(loc.at(
                ts.refresh_reuse_grace.span(),
                "token_service.refresh_reuse_grace",
                "must be at most 300 seconds: a longer window lets a stolen refresh token go unnoticed",
            ));
        }
        if let Some(issuer) = &ts.issuer {
            let i = issuer.get_ref();
            if !(i.starts_with("https://") || i.starts_with("http://")) || i.contains(['?', '#']) {
                return Err(loc.at(
                    issuer.span(),
                    "token_service.issuer",
                    "must be an http(s) URL without query or fragment",
                ));
            }
        }

        let cm = raw.credential_manager;
        let argon2 = match &cm.argon2 {
            None => HashParams::default(),
            Some(a) => {
                let r = a.get_ref();
                let params = HashParams { m_cost: r.m_cost, t_cost: r.t_cost, p_cost: r.p_cost };
                params.to_params().map_err(|e| loc.at(a.span(), "credential_manager.argon2", e))?;
                params
            }
        };

        let lockout = match &cm.lockout {
            None => LockoutPolicy::default(),
            Some(l) => {
                let r = l.get_ref();
                let d = LockoutPolicy::default();
                let p = LockoutPolicy {
                    max_failures: r.max_failures.unwrap_or(d.max_failures),
                    window: r.window.unwrap_or(d.window),
                    lock_time: r.lock_time.unwrap_or(d.lock_time),
                    max_lock_time: r.max_lock_time.unwrap_or(d.max_lock_time),
                    ip_max_failures: r.ip_max_failures.unwrap_or(d.ip_max_failures),
                    trusted_ip_days: r.trusted_ip_days.unwrap_or(d.trusted_ip_days),
                    max_tracked: r.max_tracked.unwrap_or(d.max_tracked),
                };
                const DAY: u64 = 86_400;
                let problem = if p.window == 0 || p.lock_time == 0 {
                    Some("window and lock_time must be at least 1 second")
                } else if p.window > DAY || p.max_lock_time > DAY {
                    Some("window and max_lock_time must be at most 86400 seconds")
                } else if p.trusted_ip_days > 365 {
                    Some("trusted_ip_days must be at most 365")
                } else if p.max_lock_time < p.lock_time {
                    Some("max_lock_time must be at least lock_time")
                } else if p.ip_max_failures != 0 && p.ip_max_failures < p.max_failures {
                    Some(
                        "ip_max_failures must be well above max_failures, or one NAT'd office locks its colleagues out",
                    )
                } else if p.max_tracked < 100 {
                    Some("max_tracked must be at least 100")
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(loc.at(l.span(), "credential_manager.lockout", problem));
                }
                p
            }
        };

        let mut scopes = ScopeRegistry::new();
        // On a reload, the previous scopes first, each at its old index.
        let mut placed = vec![false; raw.scopes.len()];
        for index in 0..previous.map_or(0, |p| p.scopes.slots()) {
            let name = previous.and_then(|p| p.scopes.name(index));
            match name.and_then(|name| raw.scopes.iter().position(|s| s.name.get_ref() == name)) {
                Some(at) => {
                    let s = &raw.scopes[at];
                    scopes
                        .register(s.name.get_ref())
                        .map_err(|e| loc.at(s.name.span(), "scopes.name", e.to_string()))?;
                    placed[at] = true;
                }
                None => {
                    scopes.retire_slot().map_err(|e| loc.at(0..0, "scopes", e.to_string()))?;
                }
            }
        }
        for (s, _) in raw.scopes.iter().zip(&placed).filter(|(_, placed)| !**placed) {
            scopes.register(s.name.get_ref()).map_err(|e| {
                let retired = scopes.slots() - scopes.names().count();
                let message = match e {
                    ropc_core::scope::ScopeError::TooMany if retired > 0 => format!(
                        "{e}, and {retired} of them are scopes removed since the server started (their tokens may \
                         still be live); restart the server to free them"
                    ),
                    _ => e.to_string(),
                };
                loc.at(s.name.span(), "scopes.name", message)
            })?;
        }

        let mut engine = Engine {
            config: EngineConfig {
                access_token_ttl: *ts.access_token_ttl.get_ref(),
                refresh_token_ttl: *ts.refresh_token_ttl.get_ref(),
                detailed_errors: ts.detailed_errors,
                rotate_refresh_tokens: ts.rotate_refresh_tokens,
                refresh_reuse_grace: *ts.refresh_reuse_grace.get_ref(),
                limits: Limits { max_body_len: max_body as usize, ..Limits::default() },
            },
            clients: Default::default(),
            scopes,
        };
        let mut client_secrets = Vec::new();
        // On a reload, the previous clients first, each at its old index;
        // a removed client's index is retired for good.
        let mut clients: Vec<Option<RawClient>> = raw.clients.into_iter().map(Some).collect();
        let mut order = Vec::with_capacity(clients.len());
        if let Some(previous) = previous {
            for index in 0..previous.clients.slots() {
                let id = previous.clients.get(ClientIndex(index as u32)).map(|c| c.id.as_str());
                let at =
                    id.and_then(|id| clients.iter().position(|c| c.as_ref().is_some_and(|c| c.id.get_ref() == id)));
                order.push(at.and_then(|at| clients[at].take()));
            }
        }
        order.extend(clients.into_iter().flatten().map(Some));
        for (n, c) in order.into_iter().enumerate() {
            let Some(c) = c else {
                engine.clients.retire_slot().map_err(|e| loc.at(0..0, "clients", e.to_string()))?;
                client_secrets.push(None);
                continue;
            };
            if n >= crate::store::MAX_CLIENTS {
                return Err(loc.at(
                    c.id.span(),
                    "clients",
                    format!("at most {} clients fit a token record", crate::store::MAX_CLIENTS),
                ));
            }
            let secret = StoredHash::parse(c.secret.get_ref()).map_err(|e| {
                loc.at(
                    c.secret.span(),
                    "clients.secret",
                    format!("{e}; store a hash from `ropc hash-password` or `ropc client add`, never the plain secret"),
                )
            })?;
            let mut capabilities = Capabilities::empty();
            for cap in c.capabilities.get_ref() {
                let known = Capabilities::from_name(cap.get_ref()).ok_or_else(|| {
                    loc.at(
                        cap.span(),
                        "clients.capabilities",
                        format!(
                            "unknown capability {:?} (expected password, refresh_token or client_credentials)",
                            cap.get_ref()
                        ),
                    )
                })?;
                capabilities = capabilities.union(known);
            }
            let scope_set = |key: &str, names: &[Spanned<String>]| -> Result<ScopeSet, ConfigError> {
                let mut set = ScopeSet::EMPTY;
                for n in names {
                    let i = engine.scopes.index_of(n.get_ref()).ok_or_else(|| {
                        loc.at(n.span(), key, format!("scope {:?} is not defined by any [[scopes]] entry", n.get_ref()))
                    })?;
                    set = set.union(ScopeSet::single(i));
                }
                Ok(set)
            };
            let allowed_scopes = scope_set("clients.scopes", &c.scopes)?;
            let default_scopes = scope_set("clients.default_scopes", &c.default_scopes)?;
            let client = Client { id: c.id.get_ref().clone(), capabilities, allowed_scopes, default_scopes };
            let index = engine.clients.add(client).map_err(|e| {
                let key = match e {
                    ropc_core::client::ClientError::DefaultNotAllowed => "clients.default_scopes",
                    _ => "clients.id",
                };
                loc.at(c.id.span(), key, format!("client {:?}: {e}", c.id.get_ref()))
            })?;
            if let Some(format) = &c.access_token_format {
                let format = match format.get_ref().as_str() {
                    "opaque" => TokenFormat::Opaque,
                    "jwt" => TokenFormat::Jwt,
                    other => {
                        return Err(loc.at(
                            format.span(),
                            "clients.access_token_format",
                            format!("unknown format {other:?} (expected \"opaque\" or \"jwt\")"),
                        ))
                    }
                };
                engine.clients.set_access_token_format(index, format);
            }
            client_secrets.push(Some(Arc::new(secret)));
        }

        let needs_users = engine.clients.capabilities().contains(Capabilities::PASSWORD);
        let users_file = match &cm.users_file {
            Some(f) => Some(dir.join(f.get_ref())),
            None if needs_users => {
                return Err(loc.at(
                    0..0,
                    "credential_manager.users_file",
                    "a client has the `password` capability, so [credential_manager] users_file must be set",
                ))
            }
            None => None,
        };

        let raw_jwt = raw.jwt;
        let algorithm = match raw_jwt.algorithm.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("EdDSA") => crate::jwt::Algorithm::EdDsa,
            Some("ES256") => crate::jwt::Algorithm::Es256,
            Some(other) => {
                let span = raw_jwt.algorithm.as_ref().map_or(0..0, |a| a.span());
                return Err(loc.at(span, "jwt.algorithm", format!("unknown algorithm {other:?} (EdDSA or ES256)")));
            }
        };
        let keys = match raw_jwt.signing_key {
            Some(key) => JwtKeySource::Files {
                signing_key: dir.join(key),
                previous_keys: raw_jwt.previous_keys.iter().map(|p| dir.join(p)).collect(),
            },
            None => JwtKeySource::Managed(dir.join(raw_jwt.keys_dir.as_deref().unwrap_or("jwt-keys"))),
        };
        let in_use = engine.clients.iter().any(|(i, _)| engine.clients.access_token_format(i) == TokenFormat::Jwt);
        let jwt = JwtConfig { algorithm, keys, audience: raw_jwt.audience, in_use };

        let token_store = parse_token_store(loc, &dir, raw.token_store)?;

        Ok(Config {
            jwt,
            token_store,
            file: loc.file.to_owned(),
            listen,
            admin_listen,
            tls,
            max_body_bytes: max_body as usize,
            header_read_timeout: Duration::from_secs(header_timeout),
            idle_timeout: Duration::from_secs(idle_timeout),
            max_header_bytes: max_header_bytes as usize,
            max_connections: max_connections as usize,
            shutdown_delay: Duration::from_secs(shutdown_delay),
            endpoints: Endpoints {
                token: ts.token_endpoint.into_inner(),
                revocation: ts.revocation_endpoint.into_inner(),
                introspection: ts.introspection_endpoint.into_inner(),
                jwks: ts.jwks_endpoint.into_inner(),
            },
            issuer: ts.issuer.map(|i| i.into_inner().trim_end_matches('/').to_owned()),
            users_file,
            argon2,
            lockout,
            hash_workers: raw.hash_pool.workers,
            hash_queue: raw.hash_pool.queue,
            hash_priority,
            engine: Arc::new(engine),
            client_secrets,
            dir,
        })
    }

    /// The issuer: configured, or derived from `listen` and TLS. `bound_port`
    /// is the port actually bound, which differs when `listen` asks for 0.
    pub fn issuer(&self, bound_port: Option<u16>) -> String {
        if let Some(i) = &self.issuer {
            return i.clone();
        }
        let scheme = if self.tls == TlsMode::Off { "http" } else { "https" };
        let (host, port) = self.listen.rsplit_once(':').unwrap_or((&self.listen, "0"));
        let port = bound_port.map_or_else(|| port.to_owned(), |p| p.to_string());
        let host = match host {
            // The self-signed certificate names localhost.
            "127.0.0.1" | "0.0.0.0" | "[::]" | "[::1]" if self.tls == TlsMode::SelfSigned => "localhost",
            h => h,
        };
        format!("{scheme}://{host}:{port}")
    }
}

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

fn parse_tls(loc: &Locator<'_>, dir: &Path, v: &Spanned<toml::Value>) -> Result<TlsMode, ConfigError> {
    const EXPECTED: &str = "expected \"self-signed\", \"off\" or { cert = \"cert.pem\", key = \"key.pem\" }";
    match v.get_ref() {
        toml::Value::String(s) if s == "self-signed" => Ok(TlsMode::SelfSigned),
        toml::Value::String(s) if s == "off" => Ok(TlsMode::Off),
        toml::Value::Table(t) => {
            if let Some(extra) = t.keys().find(|k| *k != "cert" && *k != "key") {
                return Err(loc.at(v.span(), "server.tls", format!("unknown key `{extra}`; {EXPECTED}")));
            }
            let path = |k: &str| match t.get(k) {
                Some(toml::Value::String(p)) => Ok(dir.join(p)),
                _ => Err(loc.at(v.span(), &format!("server.tls.{k}"), format!("missing or not a string; {EXPECTED}"))),
            };
            Ok(TlsMode::Files { cert: path("cert")?, key: path("key")? })
        }
        _ => Err(loc.at(v.span(), "server.tls", EXPECTED)),
    }
}

#[cfg(test)]
mod tests;
