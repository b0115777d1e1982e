//! The configuration file (TOML; every key in docs/configuration.md):
//! parsing, validation, and errors that name the file, the line and the
//! key.
//!
//! Parsing is two passes: serde reads the raw shape ([`raw`]: unknown keys,
//! wrong types and unknown words are refused with the span of the culprit),
//! then each section's module checks meaning (scopes defined, secrets are
//! hashes, TTLs in range) and builds its part: [`server`], `token_service`,
//! `credentials`, `clients` (which builds the core's [`Engine`]),
//! `token_store`.

mod client_auth;
mod clients;
mod credentials;
mod managers;
pub mod raw;
mod server;
mod token_service;
mod token_store;

pub use crate::source::SourceError as ConfigError;
pub use client_auth::{ClientAuthPolicy, ProofLimits};
pub use raw::{AuthMethod, HashPolicy};

use crate::lockout::LockoutPolicy;
use crate::source::{read_file, Locator};
use crate::store::RedisConfig;
use raw::RawConfig;
use ropc_core::Engine;
use ropc_hash::{HashParams, HashPriority, StoredHash};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// `host:port` for `/metrics`, `/healthz` and the operator's `/admin/`
    /// endpoints only, plain HTTP.
    pub admin_listen: Option<String>,
    /// The local socket (Unix) for the same, mode 0600; none: no socket.
    pub admin_socket: Option<PathBuf>,
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
    /// The hash pool.
    pub hash_pool: HashPoolConfig,
    /// The core engine: policy, clients, scopes.
    pub engine: Arc<Engine>,
    /// JWT access token settings.
    pub jwt: JwtConfig,
    /// Client secret hashes, by client index (none for a retired slot).
    pub client_secrets: Vec<Option<Arc<StoredHash>>>,
    /// How each client authenticates, by client index (none for a retired
    /// slot).
    pub client_auth: Vec<Option<Arc<ClientAuthPolicy>>>,
    /// `[server] client_ca_file`: TLS clients are asked for a certificate
    /// signed by this CA.
    pub client_ca_file: Option<PathBuf>,
    /// `[client_auth]`.
    pub proof_limits: ProofLimits,
    /// The credential manager each client names, by client index (none:
    /// the default, `[credential_manager]`).
    pub client_managers: Vec<Option<String>>,
    /// `[credential_managers.NAME]`, by name.
    pub managers: std::collections::BTreeMap<String, crate::credentials::ManagerConfig>,
    /// Where token records live.
    pub token_store: TokenStoreConfig,
}

/// `[hash_pool]`: the threads that hash passwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashPoolConfig {
    /// Worker threads (0 = one per core).
    pub workers: usize,
    /// Queue length (0 = derived).
    pub queue: usize,
    /// How the OS schedules the workers.
    pub policy: HashPolicy,
    /// Their nice value under the normal policy.
    pub nice: i32,
    /// The longest wait for a worker a verification may expect before it
    /// is refused with 503 (zero: only the queue's length bounds it).
    pub max_queue_wait: Duration,
}

impl HashPoolConfig {
    /// How far below the request threads the OS schedules the workers.
    pub fn priority(&self) -> HashPriority {
        match self.policy {
            HashPolicy::Normal => HashPriority::Nice(self.nice),
            HashPolicy::Idle => HashPriority::Idle,
        }
    }
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

/// The write-ahead log's default background sync interval: what a power
/// cut (not a crash of the process) can lose at most.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 50;

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
        let server = server::parse(&loc, &dir, &raw.server)?;
        let hash_pool = server::hash_pool(&loc, &raw.hash_pool)?;
        let service = token_service::parse(&loc, raw.token_service, server.max_body_bytes)?;
        let argon2 = credentials::argon2(&loc, &raw.credential_manager)?;
        let lockout = credentials::lockout(&loc, &raw.credential_manager)?;
        let managers = managers::parse(&loc, &dir, raw.credential_managers)?;
        let client_ca = server.client_ca_file.is_some();
        let built =
            clients::build(&loc, &dir, service.engine, raw.scopes, raw.clients, previous, &managers, client_ca)?;
        let proof_limits = client_auth::limits(&loc, &raw.client_auth)?;
        let users_file = credentials::users_file(&loc, &dir, &raw.credential_manager, &built.engine, &built.managers)?;
        let jwt = token_service::jwt(&dir, raw.jwt, &built.engine);
        let token_store = token_store::parse(&loc, &dir, raw.token_store)?;
        Ok(Config {
            file: path.to_owned(),
            listen: server.listen,
            admin_listen: server.admin_listen,
            admin_socket: server.admin_socket,
            tls: server.tls,
            max_body_bytes: server.max_body_bytes,
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_header_bytes: server.max_header_bytes,
            max_connections: server.max_connections,
            shutdown_delay: server.shutdown_delay,
            endpoints: service.endpoints,
            issuer: service.issuer,
            users_file,
            argon2,
            lockout,
            hash_pool,
            engine: Arc::new(built.engine),
            jwt,
            client_secrets: built.secrets,
            client_auth: built.auth,
            client_ca_file: server.client_ca_file,
            proof_limits,
            client_managers: built.managers,
            managers,
            token_store,
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

#[cfg(test)]
mod tests;
