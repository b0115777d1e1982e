//! One connection to Redis (a node, or a Redis Cluster), shared by the
//! token store and the lockout: reconnection, timeouts, round trips, and
//! Lua scripts by EVALSHA.
//!
//! Every command is bounded by `command_timeout_ms`, and connecting by
//! `connect_timeout_ms`. While Redis is unreachable, one request at a time
//! tries to reconnect (at most every [`RECONNECT_EVERY`]); the others fail
//! at once, so that the endpoints answer `503` quickly instead of queueing.
//!
//! Scripts are loaded (`SCRIPT LOAD`, on every primary of a cluster) when a
//! connection is made, then run by their SHA1, as redis-rs's `Script` does.
//! A Redis that lost them (`SCRIPT FLUSH`, a failover to a node that never
//! had them) answers NOSCRIPT: they are loaded again, and the batch is sent
//! once more only if running it twice is harmless ([`Retry`]).

use super::RedisConfig;
use crate::redact::redact_url;
use crate::store::StoreError;
use parking_lot::Mutex;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ToRedisArgs, Value};
use ropc_metrics::Exposition;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often a request may try to reconnect while Redis is down.
pub const RECONNECT_EVERY: Duration = Duration::from_millis(200);

/// Whether a batch may be sent again after Redis lost the scripts in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice changes nothing that running it once did not.
    Safe,
    /// It counts something: a second run would count it twice. After a
    /// NOSCRIPT it fails, as for any Redis error.
    Never,
}

/// A Lua script ropc runs in Redis: its text, and its SHA1, which EVALSHA
/// names it by (as redis-rs's `Script` does).
pub struct Lua {
    code: &'static str,
    sha1: OnceLock<String>,
}

impl Lua {
    /// The script `code`.
    pub const fn new(code: &'static str) -> Self {
        Self { code, sha1: OnceLock::new() }
    }

    /// Its SHA1, in hex.
    pub fn sha1(&self) -> &str {
        self.sha1.get_or_init(|| {
            hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, self.code.as_bytes()).as_ref())
        })
    }
}

impl std::fmt::Debug for Lua {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lua({})", self.sha1())
    }
}

/// A connection to one node or to a cluster.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The shared connection, its health and its counters.
pub struct RedisConn {
    config: RedisConfig,
    /// Loaded on every new connection.
    scripts: Vec<&'static Lua>,
    conn: Mutex<Option<Conn>>,
    /// A reconnect is under way: other requests fail fast.
    connecting: AtomicBool,
    /// No reconnect before this.
    next_attempt: Mutex<Instant>,
    /// Whether the last command succeeded (for `/healthz` and metrics).
    up: AtomicBool,
    round_trips: AtomicU64,
    errors: AtomicU64,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisConn({:?}, up: {})", self.config, self.up.load(Ordering::Relaxed))
    }
}

impl RedisConn {
    /// A connection for `config` that loads `scripts` whenever it connects.
    /// Connects lazily: a Redis that is down at start makes requests fail
    /// with 503 until it is up.
    pub fn new(config: RedisConfig, scripts: Vec<&'static Lua>) -> Self {
        Self {
            config,
            scripts,
            conn: Mutex::new(None),
            connecting: AtomicBool::new(false),
            next_attempt: Mutex::new(Instant::now()),
            up: AtomicBool::new(false),
            round_trips: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// `prefix` + `kind:` + `rest`: every key ropc writes.
    pub fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}:{rest}", self.config.prefix)
    }

    /// Whether the last command (or connection attempt) succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Round trips to Redis since the start.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Failed or timed-out round trips since the start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Whether the nodes are a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.config.cluster
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        let mut conn = if self.config.cluster {
            let client = redis::cluster::ClusterClient::builder(self.config.nodes.clone())
                .connection_timeout(self.config.connect_timeout)
                .response_timeout(self.config.command_timeout)
                // No retry by the client library: a resent compare-and-set
                // that had already run would read as a replay.
                .retries(0)
                .build()?;
            Conn::Cluster(client.get_async_connection().await?)
        } else {
            let client = redis::Client::open(self.config.nodes[0].as_str())?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(self.config.connect_timeout)
                .set_response_timeout(self.config.command_timeout);
            Conn::Single(client.get_multiplexed_async_connection_with_config(&config).await?)
        };
        self.load_scripts(&mut conn).await?;
        Ok(conn)
    }

    /// `SCRIPT LOAD` of every script (a cluster routes it to every primary).
    async fn load_scripts(&self, conn: &mut Conn) -> Result<(), RedisError> {
        for script in &self.scripts {
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            let _: Value = redis::cmd("SCRIPT").arg("LOAD").arg(script.code).query_async(conn).await?;
        }
        Ok(())
    }

    /// The connection, or a new one. Fails at once while another request
    /// is reconnecting or the last attempt was under [`RECONNECT_EVERY`]
    /// ago.
    async fn conn(&self) -> Result<Conn, StoreError> {
        if let Some(c) = self.conn.lock().clone() {
            return Ok(c);
        }
        if Instant::now() < *self.next_attempt.lock() || self.connecting.swap(true, Ordering::Acquire) {
            return Err(StoreError);
        }
        // Cleared however this ends, also when the request is dropped
        // mid-connect (a reset stream, a shutdown).
        struct Connecting<'a>(&'a AtomicBool);
        impl Drop for Connecting<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _connecting = Connecting(&self.connecting);
        let attempt = tokio::time::timeout(self.config.connect_timeout, self.connect()).await;
        let result = match attempt {
            Ok(Ok(c)) => {
                *self.conn.lock() = Some(c.clone());
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(event = "token_store_up", nodes = ?self.redacted_nodes(), "connected to Redis");
                }
                Ok(c)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timed out".to_owned()),
        };
        result.map_err(|e| {
            *self.next_attempt.lock() = Instant::now() + RECONNECT_EVERY;
            self.went_down(&e);
            StoreError
        })
    }

    fn redacted_nodes(&self) -> Vec<String> {
        self.config.nodes.iter().map(|n| redact_url(n)).collect()
    }

    fn went_down(&self, why: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(
                event = "token_store_down",
                nodes = ?self.redacted_nodes(),
                error = why,
                "Redis unreachable: token endpoints answer 503 until it is back"
            );
        }
    }

    /// Runs `cmds`: one pipelined round trip on a single node; one round
    /// trip per command, in order, on a cluster (a cluster pipeline must
    /// stay in one slot). Each round trip is bounded by the command
    /// timeout. A connection error or a timeout drops the connection, so
    /// that the next request reconnects. After a NOSCRIPT, the scripts are
    /// loaded again, and the batch is sent again if `retry` allows.
    pub async fn batch(&self, cmds: Vec<Cmd>, retry: Retry) -> Result<Vec<Value>, StoreError> {
        let mut conn = self.conn().await?;
        match self.send(&mut conn, &cmds).await {
            Err(Sent::NoScript) => {
                tracing::warn!("Redis had lost ropc's scripts (SCRIPT FLUSH, or a failover): loading them again");
                if self.load_scripts(&mut conn).await.is_err() || retry == Retry::Never {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(StoreError);
                }
                self.send(&mut conn, &cmds).await.map_err(|_| StoreError)
            }
            other => other.map_err(|_| StoreError),
        }
    }

    async fn send(&self, conn: &mut Conn, cmds: &[Cmd]) -> Result<Vec<Value>, Sent> {
        let groups: Vec<&[Cmd]> = if self.config.cluster { cmds.chunks(1).collect() } else { vec![cmds] };
        let mut out = Vec::with_capacity(cmds.len());
        for group in groups {
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            let mut c = conn.clone();
            let call = async move {
                if let [one] = group {
                    return one.query_async::<Value>(&mut c).await.map(|v| vec![v]);
                }
                let mut pipe = redis::pipe();
                for cmd in group {
                    pipe.add_command(cmd.clone());
                }
                pipe.query_async::<Vec<Value>>(&mut c).await
            };
            match tokio::time::timeout(self.config.command_timeout, call).await {
                Ok(Ok(values)) => out.extend(values),
                Ok(Err(e)) if e.kind() == ErrorKind::NoScriptError => return Err(Sent::NoScript),
                Ok(Err(e)) => {
                    if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout() {
                        *self.conn.lock() = None;
                        self.went_down(&e.to_string());
                    } else {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "Redis refused a command");
                    }
                    return Err(Sent::Failed);
                }
                Err(_) => {
                    *self.conn.lock() = None;
                    self.went_down("command timed out");
                    return Err(Sent::Failed);
                }
            }
        }
        Ok(out)
    }

    /// One command's reply, converted.
    pub async fn one<T: redis::FromRedisValue>(&self, cmd: Cmd, retry: Retry) -> Result<T, StoreError> {
        let values = self.batch(vec![cmd], retry).await?;
        convert(values.into_iter().next().unwrap_or(Value::Nil))
    }

    /// One `PING`: whether Redis answers now.
    pub async fn ping(&self) -> bool {
        self.one::<String>(redis::cmd("PING"), Retry::Safe).await.is_ok()
    }

    /// Appends the connection's metrics.
    pub fn write_metrics(&self, out: &mut Exposition) {
        out.gauge("ropc_token_store_up", "1 while Redis answers.", u8::from(self.is_up()));
        out.counter("ropc_token_store_round_trips_total", "Round trips to Redis.", self.round_trips());
        out.counter("ropc_token_store_errors_total", "Redis round trips that failed or timed out.", self.errors());
    }
}

/// How a batch failed.
enum Sent {
    /// NOSCRIPT: Redis does not have a script.
    NoScript,
    /// Anything else (already counted and logged).
    Failed,
}

/// `EVALSHA` of `script` with `keys` and `args`: run by its hash, loaded
/// when the connection was made.
pub fn evalsha<A: ToRedisArgs>(script: &Lua, keys: &[&str], args: &[A]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.sha1()).arg(keys.len());
    for k in keys {
        cmd.arg(*k);
    }
    for a in args {
        cmd.arg(a);
    }
    cmd
}

/// A reply as `T`; an unexpected reply is logged and fails.
pub fn convert<T: redis::FromRedisValue>(v: Value) -> Result<T, StoreError> {
    redis::from_redis_value(&v).map_err(|e| {
        tracing::error!(error = %e, "unexpected reply from Redis");
        StoreError
    })
}

/// Hex of `bytes`: the key part of a token digest or a username.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
