//! The composition root: the running server's parts, built once from the
//! configuration and wired together. Each part owns its concern; this
//! module only holds them and strings their metrics together.
//!
//! | part | owns |
//! |---|---|
//! | [`LiveConfig`] | the configuration generation in force, and commits |
//! | [`Auth`] | the hash pool, the lockout, the pacing of answers |
//! | [`Tokens`] | token records (memory and its log, or Redis) |
//! | [`Platform`] | randomness and the digest the core asks for |
//! | [`RequestMetrics`] | request counts and latencies |

use crate::auth::{Auth, PoolError};
use crate::clock;
use crate::config::{Config, TokenStoreConfig};
use crate::grant::Grants;
use crate::live::{BuildError, Committed, Live, LiveConfig};
use crate::metrics::RequestMetrics;
use crate::provider::Platform;
use crate::store::{wal, MemoryStore, RedisConn, RedisTokens, Tokens};
use ropc_metrics::Exposition;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration, its users file or its keys.
    Build(BuildError),
    /// The hash pool's threads.
    Pool(PoolError),
    /// The token log.
    TokenLog(PathBuf, std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Build(e) => e.fmt(f),
            StartError::Pool(e) => e.fmt(f),
            StartError::TokenLog(path, e) => write!(f, "{}: cannot open the token log: {e}", path.display()),
        }
    }
}

impl std::error::Error for StartError {}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    live: LiveConfig,
    /// Client and user authentication.
    pub auth: Auth,
    /// Token records.
    pub tokens: Tokens,
    platform: Platform,
    /// Request counters and latencies.
    pub requests: RequestMetrics,
    /// Set while shutting down: `/healthz` answers 503.
    draining: AtomicBool,
    /// Connections being served.
    open_connections: AtomicUsize,
    /// Sweep steps taken.
    sweeps: std::sync::atomic::AtomicU64,
}

impl App {
    /// Builds the state for `config`: reads the users file, starts the hash
    /// pool, opens the token store. `bound_port` is the port actually
    /// listened on.
    pub fn new(config: Config, bound_port: Option<u16>) -> Result<Self, StartError> {
        let shared = match &config.token_store {
            TokenStoreConfig::Redis(c) => {
                let scripts = crate::store::redis::SCRIPTS.iter().chain(&crate::lockout::redis::SCRIPTS).copied();
                Some(Arc::new(RedisConn::new(c.clone(), scripts.collect())))
            }
            TokenStoreConfig::Memory { .. } => None,
        };
        let live = LiveConfig::start(config, bound_port).map_err(StartError::Build)?;
        // What a verification at the configured cost takes, so that padded
        // answers (locked users, fast legacy hashes) match it from the first
        // request on, before any real verification has been timed.
        let typical = live.load().users.time_dummy();
        let auth = Auth::new(live.boot(), shared.clone(), typical).map_err(StartError::Pool)?;
        let tokens = match (&live.boot().token_store, shared) {
            (TokenStoreConfig::Memory { wal: Some(path), sync_interval_ms }, _) => {
                let mode = match sync_interval_ms {
                    0 => wal::Sync::Always,
                    ms => wal::Sync::Interval(Duration::from_millis(*ms)),
                };
                let store = MemoryStore::durable(path, mode, live.names(), clock::now)
                    .map_err(|e| StartError::TokenLog(path.clone(), e))?;
                Tokens::Memory(store)
            }
            (TokenStoreConfig::Redis(_), Some(conn)) => Tokens::Redis(RedisTokens::new(conn)),
            _ => Tokens::Memory(MemoryStore::volatile()),
        };
        Ok(Self {
            live,
            auth,
            tokens,
            platform: Platform::default(),
            requests: RequestMetrics::default(),
            draining: AtomicBool::new(false),
            open_connections: AtomicUsize::new(0),
            sweeps: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The configuration in force now. A request holds on to it until it
    /// ends, so that a commit never changes the rules halfway through one.
    pub fn live(&self) -> Arc<Live> {
        self.live.load()
    }

    /// The configuration the server started with (listeners, connection
    /// limits and timeouts, hash pool: what a commit cannot change).
    pub fn boot(&self) -> &Config {
        self.live.boot()
    }

    /// A config commit (SIGHUP, `ropc config reload`); see
    /// [`LiveConfig::commit`]. Blocking: call it off the async workers,
    /// then [`App::after_commit`] on them.
    pub fn reload(&self) -> Result<Committed, BuildError> {
        self.live.commit(|next| self.auth.lockout.set_policy(next.config.lockout))
    }

    /// What a commit sets off: the users whose password changed in the
    /// users file lose their earlier grants.
    pub async fn after_commit(&self, committed: &Committed) {
        let live = self.live();
        let now = clock::now();
        for user in &committed.users_changed {
            let Some(owner) = crate::store::Names::owner(&*live, *user) else { continue };
            let whose = crate::store::Whose::User(owner);
            if let Err(e) = self.grants().end_grants(&live, whose, now, "password changed in the users file").await {
                tracing::error!(error = %e, "cannot end the grants of a user whose password changed");
            }
        }
    }

    /// Config commits refused since the start.
    pub fn reloads_failed(&self) -> u64 {
        self.live.refused()
    }

    /// What the grants need.
    pub fn grants(&self) -> Grants<'_> {
        Grants { auth: &self.auth, tokens: &self.tokens, platform: &self.platform }
    }

    /// Starts draining: `/healthz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Counts a connection in `ropc_open_connections` until the guard drops.
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(self))
    }

    /// The Prometheus text exposition of every metric: each part writes
    /// its own.
    pub fn render_metrics(&self) -> String {
        let mut out = Exposition::new();
        self.requests.write_metrics(&mut out);
        self.auth.write_metrics(&mut out);
        self.tokens.write_metrics(&mut out);
        let live = self.live();
        out.gauge("ropc_config_generation", "Config commits since the start, plus one.", live.generation);
        out.counter(
            "ropc_config_reload_failures_total",
            "Config reloads refused (the previous configuration kept serving).",
            self.reloads_failed(),
        );
        out.gauge("ropc_clients", "Configured clients.", live.engine.clients.len());
        out.gauge("ropc_users", "Users in the users file.", live.users.len());
        live.managers.write_metrics(&mut out);
        out.gauge("ropc_open_connections", "Connections being served.", self.open_connections.load(Ordering::Relaxed));
        out.gauge("ropc_draining", "1 while shutting down.", u8::from(self.is_draining()));
        out.finish()
    }

    /// Removes expired records from one shard of the store, and sweeps one
    /// shard of the lockout counters.
    pub fn sweep_step(&self) -> usize {
        let now = clock::now();
        self.auth.lockout.sweep_step(now);
        let steps = self.sweeps.fetch_add(1, Ordering::Relaxed);
        if steps % u64::try_from(self.tokens.shard_count()).unwrap_or(1).max(1) == 0 {
            // Once a round: forget the accounts no live token can name.
            let live = self.live();
            let c = &live.engine.config;
            let longest = c.refresh_token_ttl.max(c.access_token_ttl).saturating_add(60);
            live.accounts().sweep(now.saturating_sub(longest));
        }
        self.tokens.sweep_step(now)
    }

    /// How often to sweep one shard so that the whole store is swept about
    /// once per `period`.
    pub fn sweep_interval(&self, period: Duration) -> Duration {
        period / u32::try_from(self.tokens.shard_count()).unwrap_or(1).max(1)
    }
}

/// One connection in `ropc_open_connections`, until it is dropped (however
/// the connection ends: a failed TLS handshake too).
#[derive(Debug)]
pub struct OpenConnection(Arc<App>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}
