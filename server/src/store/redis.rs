//! The shared token store: Redis (or Valkey), one node or a Redis Cluster,
//! so that any number of ropc instances see the same tokens, rotations,
//! revocations and brute-force counters.
//!
//! Keys (all under the configured prefix, `ropc:` by default):
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `t:<digest>` | a [`Portable`] record | until the token expires |
//! | `f:<family>` | `1`: the grant family is revoked | until its last token expires |
//! | `lu:{<user hash>}` | failure window, lock and back-off of a username | idle time |
//! | `lt:{<user hash>}:<ip>` | an IP the user logged in from (trusted) | `trusted_ip_days` |
//! | `lp:{<user hash>}` | the user's attempts in flight: ids scored by when they began | idle time (gone with its last member) |
//! | `li:<ip>` | failure window and throttle of an IP | idle time |
//!
//! Round trips: reading a record is one (a script checks the family), or
//! two on a cluster, where the family key may live on another node.
//! Storing a grant is one pipeline: the new records, and the compare-and-set
//! that retires the rotated refresh token. Usernames are stored only as a
//! SHA-256 digest.
//!
//! Every command is bounded by `command_timeout_ms`, and connecting by
//! `connect_timeout_ms`. While Redis is unreachable, one request at a time
//! tries to reconnect (at most every [`RECONNECT_EVERY`]); the others fail
//! at once, so that the endpoints answer `503` quickly instead of queueing.

use super::portable::Portable;
use super::{Commit, StoreError};
use crate::app::Live;
use crate::config::{redact_url, RedisConfig};
use crate::lockout::{Gate, LockoutPolicy};
use parking_lot::Mutex;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use ropc_core::{FamilyId, Issued, TokenKey, TokenRecord};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a request may try to reconnect while Redis is down.
pub const RECONNECT_EVERY: Duration = Duration::from_millis(200);

/// Reads a record unless its family is revoked (one node only: the family
/// key is not declared, which a cluster would refuse).
const GET: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
if redis.call('EXISTS', ARGV[1] .. 'f:' .. string.sub(v, 1, 16)) == 1 then return false end
return v
";

/// Marks a refresh token retired, only if it exists and is not retired:
/// of two concurrent rotations exactly one gets 1.
const RETIRE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if string.sub(v, 18, 33) ~= '0000000000000000' then return 0 end
redis.call('SET', KEYS[1], string.sub(v, 1, 17) .. ARGV[1] .. string.sub(v, 34), 'KEEPTTL')
return 1
";

/// The sliding window of the in-memory lockout, in Lua: `roll` then
/// `estimate` over hash fields ws (start), wc (current), wp (previous);
/// put before each script that uses it, at compile time.
macro_rules! lua_window {
    () => {
        r"
local function window(key, now, len)
  local ws = tonumber(redis.call('HGET', key, 'ws') or '0')
  local wc = tonumber(redis.call('HGET', key, 'wc') or '0')
  local wp = tonumber(redis.call('HGET', key, 'wp') or '0')
  local elapsed = math.max(now - ws, 0)
  if elapsed >= 2 * len then ws = now - now % len; wc = 0; wp = 0
  elseif elapsed >= len then ws = ws + len; wp = wc; wc = 0 end
  return ws, wc, wp
end
local function estimate(ws, wc, wp, now, len)
  local into = math.max(math.min(now - ws, len), 0)
  return wc + math.floor(wp * (len - into) / len + 0.5)
end
"
    };
}

/// Starts a password attempt: 0 open, 1 locked (or at the cap of a record
/// with failures or past locks), 2 at a clean record's cap
/// (`Gate::Crowded`). KEYS: user, trust, in flight. ARGV: now,
/// max_failures, window, clean burst, idle TTL, the attempt's id.
///
/// Attempts in flight are members of a sorted set, scored by when they
/// began: each finish removes its own (a second one, or one for an attempt
/// never admitted, removes nothing), and each stops counting 60 s after it
/// began (ended or not; a login still queued then no longer holds a slot),
/// whatever else happens for the user. So a slot whose finish never comes
/// (an instance that crashed, a check whose answer came too late) is held
/// about 60 s at most. The set lives a second longer than the last
/// member's 60 s, at least.
const USER_BEGIN: &str = concat!(
    lua_window!(),
    r"
local now, maxf, len, burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - 60))
local pe = redis.call('ZCARD', KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then
  -- a trusted IP passes, counted in flight so that its finish releases its own slot
  redis.call('ZADD', KEYS[3], now, ARGV[6])
  redis.call('EXPIRE', KEYS[3], ttl + 1)
  return 0
end
local lu = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0')
if lu > now then return 1 end
local ws, wc, wp = window(KEYS[1], now, len)
local failures = estimate(ws, wc, wp, now, len)
local cl = tonumber(redis.call('HGET', KEYS[1], 'cl') or '0')
local suspect = failures > 0 or cl > 0
local cap = maxf * burst
if suspect then cap = maxf end
if failures + pe >= cap then
  if suspect then return 1 end
  return 2
end
redis.call('HSET', KEYS[1], 'ws', ws, 'wc', wc, 'wp', wp)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[3], now, ARGV[6])
redis.call('EXPIRE', KEYS[3], ttl + 1)
return 0
"
);

/// Ends an attempt. KEYS: user, trust, in flight. ARGV: now, outcome (0
/// none, 1 failed, 2 success), max_failures, window, lock_time,
/// max_lock_time, idle TTL, trust TTL, the attempt's id. Returns the
/// lock's seconds when this failure locked the user, else 0.
const USER_FINISH: &str = concat!(
    lua_window!(),
    r"
local now, outcome, maxf, len = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lock_time, max_lock, ttl, trust_ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('ZREM', KEYS[3], ARGV[9])
local locked = 0
local lu = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0')
if outcome == 1 and lu <= now then
  local ws, wc, wp = window(KEYS[1], now, len)
  wc = wc + 1
  if estimate(ws, wc, wp, now, len) >= maxf then
    local cl = tonumber(redis.call('HGET', KEYS[1], 'cl') or '0') + 1
    locked = math.min(lock_time * 2 ^ math.min(cl - 1, 20), max_lock)
    redis.call('HSET', KEYS[1], 'cl', cl, 'lu', now + locked, 'ws', now, 'wc', 0, 'wp', 0)
  else
    redis.call('HSET', KEYS[1], 'ws', ws, 'wc', wc, 'wp', wp)
  end
elseif outcome == 2 then
  redis.call('HSET', KEYS[1], 'ws', now, 'wc', 0, 'wp', 0)
  if lu <= now then redis.call('HSET', KEYS[1], 'cl', 0) end
  if trust_ttl > 0 then redis.call('SET', KEYS[2], 1, 'EX', trust_ttl) end
end
redis.call('EXPIRE', KEYS[1], ttl)
return locked
"
);

/// Counts a failure against an IP. KEYS: ip. ARGV: now, ip_max_failures,
/// window, idle TTL. Returns the throttle's seconds when this failure
/// started one, else 0.
const IP_FAILURE: &str = concat!(
    lua_window!(),
    r"
local now, maxf, len, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ws, wc, wp = window(KEYS[1], now, len)
wc = wc + 1
local tu = tonumber(redis.call('HGET', KEYS[1], 'tu') or '0')
local started = 0
if estimate(ws, wc, wp, now, len) >= maxf and tu <= now then
  redis.call('HSET', KEYS[1], 'tu', now + len)
  started = len
end
redis.call('HSET', KEYS[1], 'ws', ws, 'wc', wc, 'wp', wp)
redis.call('EXPIRE', KEYS[1], ttl)
return started
"
);

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

/// Token records, revoked families and brute-force counters in Redis.
pub struct RedisStore {
    config: RedisConfig,
    conn: Mutex<Option<Conn>>,
    /// A reconnect is under way: other requests fail fast.
    connecting: AtomicBool,
    /// No reconnect before this.
    next_attempt: Mutex<Instant>,
    /// Whether the last command succeeded (for `/healthz` and metrics).
    up: AtomicBool,
    round_trips: AtomicU64,
    errors: AtomicU64,
    /// The latest expiry this instance stored: a family revocation lasts at
    /// least this long (see the memory store's).
    latest_expiry: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisStore({:?}, up: {})", self.config, self.up.load(Ordering::Relaxed))
    }
}

/// Hex of the first 16 bytes of SHA-256: the key part of a token digest or
/// a username.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The answer of a [`RedisStore::begin_detached`] not yet read: dropped
/// with an open gate sent but unread, it gives the slot back.
struct UnreadGate {
    rx: tokio::sync::oneshot::Receiver<Result<Gate, StoreError>>,
    /// The store, policy, user, IP, time and attempt id to release.
    release: Option<(Arc<RedisStore>, LockoutPolicy, String, IpAddr, u64, u64)>,
}

impl Drop for UnreadGate {
    fn drop(&mut self) {
        let Some((store, policy, user, ip, now, attempt)) = self.release.take() else { return };
        // After `close`, the task's send fails (and it gives the slot back
        // itself), or it already succeeded and the gate is read here.
        self.rx.close();
        // A refused guess whose request went away before reading its gate
        // counts nothing, as an open one whose hash had not started.
        if let Ok(Ok(Gate::Open)) = self.rx.try_recv() {
            store.release_later(policy, user, ip, now, false, attempt);
        }
    }
}

impl RedisStore {
    /// A store for `config`. Connects lazily: a Redis that is down at start
    /// makes requests fail with 503 until it is up.
    pub fn new(config: RedisConfig) -> Self {
        Self {
            config,
            conn: Mutex::new(None),
            connecting: AtomicBool::new(false),
            next_attempt: Mutex::new(Instant::now()),
            up: AtomicBool::new(false),
            round_trips: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latest_expiry: AtomicU64::new(0),
        }
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

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}:{rest}", self.config.prefix)
    }

    fn token_key(&self, key: &TokenKey) -> String {
        self.key("t", &hex(&key.0))
    }

    fn family_key(&self, family: FamilyId) -> String {
        self.key("f", &format!("{:016x}", family.0))
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        if self.config.cluster {
            let client = redis::cluster::ClusterClient::builder(self.config.nodes.clone())
                .connection_timeout(self.config.connect_timeout)
                .response_timeout(self.config.command_timeout)
                // No retry by the client library: a resent compare-and-set
                // that had already run would read as a replay.
                .retries(0)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        } else {
            let client = redis::Client::open(self.config.nodes[0].as_str())?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(self.config.connect_timeout)
                .set_response_timeout(self.config.command_timeout);
            Ok(Conn::Single(client.get_multiplexed_async_connection_with_config(&config).await?))
        }
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
        let result = result.map_err(|e| {
            *self.next_attempt.lock() = Instant::now() + RECONNECT_EVERY;
            self.went_down(&e);
            StoreError
        });
        result
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
    /// that the next request reconnects.
    async fn batch(&self, cmds: Vec<Cmd>) -> Result<Vec<Value>, StoreError> {
        let mut conn = self.conn().await?;
        let call = |conn: &mut Conn, cmds: Vec<Cmd>| {
            let mut conn = conn.clone();
            async move {
                if cmds.len() == 1 {
                    return cmds[0].query_async::<Value>(&mut conn).await.map(|v| vec![v]);
                }
                let mut pipe = redis::pipe();
                for c in cmds {
                    pipe.add_command(c);
                }
                pipe.query_async::<Vec<Value>>(&mut conn).await
            }
        };
        let groups: Vec<Vec<Cmd>> =
            if self.config.cluster { cmds.into_iter().map(|c| vec![c]).collect() } else { vec![cmds] };
        let mut out = Vec::new();
        for group in groups {
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(self.config.command_timeout, call(&mut conn, group)).await {
                Ok(Ok(values)) => out.extend(values),
                Ok(Err(e)) => {
                    if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout() {
                        *self.conn.lock() = None;
                        self.went_down(&e.to_string());
                    } else {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "Redis refused a command");
                    }
                    return Err(StoreError);
                }
                Err(_) => {
                    *self.conn.lock() = None;
                    self.went_down("command timed out");
                    return Err(StoreError);
                }
            }
        }
        Ok(out)
    }

    /// One command's reply, converted.
    async fn one<T: redis::FromRedisValue>(&self, cmd: Cmd) -> Result<T, StoreError> {
        let values = self.batch(vec![cmd]).await?;
        convert(values.into_iter().next().unwrap_or(Value::Nil))
    }

    /// One `PING`: whether Redis answers now.
    pub async fn ping(&self) -> bool {
        self.one::<String>(redis::cmd("PING")).await.is_ok()
    }

    fn eval<A: redis::ToRedisArgs>(script: &str, keys: &[&str], args: &[A]) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len());
        for k in keys {
            cmd.arg(*k);
        }
        for a in args {
            cmd.arg(a);
        }
        cmd
    }

    /// The record under `key` as `live` numbers it, unless its family is
    /// revoked or its client or user is gone.
    pub async fn get(&self, live: &Live, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        let tkey = self.token_key(key);
        let value: Option<Vec<u8>> = if self.config.cluster {
            let v: Option<Vec<u8>> = self.one(redis::cmd("GET").arg(&tkey).clone()).await?;
            let family = v.as_ref().and_then(|v| Portable::decode(v)).map(|p| FamilyId(p.family));
            match family {
                Some(family) => {
                    let revoked: bool = self.one(redis::cmd("EXISTS").arg(self.family_key(family)).clone()).await?;
                    v.filter(|_| !revoked)
                }
                None => None,
            }
        } else {
            self.one(Self::eval(GET, &[&tkey], &[self.config.prefix.as_str()])).await?
        };
        Ok(value.and_then(|v| Portable::decode(&v)).and_then(|p| p.to_record(live)))
    }

    /// The SETs of what `issued` stores, and the keys they write.
    fn record_sets(&self, live: &Live, issued: &Issued) -> Result<(Vec<Cmd>, Vec<String>), StoreError> {
        let mut cmds = Vec::with_capacity(3);
        let mut keys = Vec::with_capacity(2);
        for (key, record) in std::iter::once(&issued.access).chain(issued.refresh.as_ref()) {
            let portable = Portable::from_record(record, live).ok_or(StoreError)?;
            let tkey = self.token_key(key);
            self.latest_expiry.fetch_max(record.expires_at, Ordering::Relaxed);
            cmds.push(
                redis::cmd("SET").arg(&tkey).arg(portable.encode()).arg("EXAT").arg(record.expires_at.max(1)).clone(),
            );
            keys.push(tkey);
        }
        Ok((cmds, keys))
    }

    /// Stores a grant's records, then retires the rotated refresh token by
    /// compare-and-set, in one pipeline (in this order, so that the winner's
    /// records exist before the old token stops working). When the
    /// compare-and-set loses, the new records are deleted again and the race
    /// is reported.
    pub async fn commit(&self, live: &Live, issued: &Issued) -> Result<Commit, StoreError> {
        let (mut cmds, written) = self.record_sets(live, issued)?;
        let Some(old) = &issued.retire else {
            self.batch(cmds).await?;
            return Ok(Commit::Stored);
        };
        let at = format!("{:016x}", issued.access.1.issued_at.max(1));
        cmds.push(Self::eval(RETIRE, &[&self.token_key(old)], &[at.as_str()]));
        let values = self.batch(cmds).await?;
        let won: i64 = convert(values.last().cloned().unwrap_or(Value::Nil))?;
        if won == 1 {
            return Ok(Commit::Stored);
        }
        self.batch(written.iter().map(|k| redis::cmd("DEL").arg(k).clone()).collect()).await?;
        Ok(Commit::LostRace)
    }

    /// Stores a grant's records without retiring anything.
    pub async fn store_only(&self, live: &Live, issued: &Issued) -> Result<(), StoreError> {
        let (cmds, _) = self.record_sets(live, issued)?;
        self.batch(cmds).await.map(drop)
    }

    /// Removes the record under `key`.
    pub async fn remove(&self, key: &TokenKey) -> Result<(), StoreError> {
        self.batch(vec![redis::cmd("DEL").arg(self.token_key(key)).clone()]).await.map(drop)
    }

    /// Revokes `family` until `until`: every instance's next read of any of
    /// its tokens sees it.
    pub async fn revoke_family(&self, family: FamilyId, until: u64) -> Result<(), StoreError> {
        let until = until.max(self.latest_expiry.load(Ordering::Relaxed)).max(1);
        let key = self.family_key(family);
        // Never shorten a revocation another instance (or an earlier one)
        // made: create it, or push its expiry later, never earlier.
        let create = redis::cmd("SET").arg(&key).arg(1).arg("EXAT").arg(until).arg("NX").clone();
        let extend = redis::cmd("EXPIREAT").arg(&key).arg(until).arg("GT").clone();
        self.batch(vec![create, extend]).await.map(drop)
    }

    /// A user's keys: its counters, its trust of `ip`, its attempts in
    /// flight.
    fn user_keys(&self, user: &str, ip: IpAddr) -> [String; 3] {
        let digest = ring::digest::digest(&ring::digest::SHA256, user.as_bytes());
        let tag = hex(&digest.as_ref()[..16]);
        // One hash tag: a user's keys live in one cluster slot.
        [
            self.key("lu", &format!("{{{tag}}}")),
            self.key("lt", &format!("{{{tag}}}:{ip}")),
            self.key("lp", &format!("{{{tag}}}")),
        ]
    }

    fn ip_key(&self, ip: IpAddr) -> String {
        self.key("li", &ip.to_string())
    }

    /// Seconds the IP is still throttled, if it is.
    pub async fn ip_throttled(&self, ip: IpAddr, now: u64) -> Result<Option<u64>, StoreError> {
        let until: Option<u64> = self.one(redis::cmd("HGET").arg(self.ip_key(ip)).arg("tu").clone()).await?;
        Ok(until.filter(|u| *u > now).map(|u| u - now))
    }

    /// [`crate::lockout::Lockout::begin`], shared: the IP check and the user
    /// gate in one pipeline. An open gate holds a slot in flight under
    /// `attempt` (see [`new_attempt`]) until [`Self::finish`] with the same
    /// id, or for 60 s.
    pub async fn begin(
        &self,
        p: &LockoutPolicy,
        user: &str,
        ip: IpAddr,
        now: u64,
        attempt: u64,
    ) -> Result<Gate, StoreError> {
        let mut cmds = vec![redis::cmd("HGET").arg(self.ip_key(ip)).arg("tu").clone()];
        if p.max_failures != 0 {
            let [ukey, tkey, pkey] = self.user_keys(user, ip);
            let burst = u64::from(crate::lockout::CLEAN_BURST);
            cmds.push(Self::eval(
                USER_BEGIN,
                &[&ukey, &tkey, &pkey],
                &[now, u64::from(p.max_failures), p.window, burst, idle_ttl(p), attempt],
            ));
        }
        let values = self.batch(cmds).await?;
        let mut values = values.into_iter();
        let until: Option<u64> = convert(values.next().unwrap_or(Value::Nil))?;
        let locked: Option<u64> = convert(values.next().unwrap_or(Value::Nil))?;
        if let Some(until) = until.filter(|u| *u > now) {
            // The user gate ran in the same pipeline: an attempt it let in
            // gives its in-flight slot back, or throttled requests would
            // fill the user's slots.
            if p.max_failures != 0 && locked == Some(0) {
                // A failure here leaves the slot taken for 60 s
                // (USER_BEGIN); the answer is still the throttle's.
                let _ = self.finish(p, user, ip, now, None, attempt).await;
            }
            return Ok(Gate::IpThrottled { retry_after: until - now });
        }
        Ok(match locked {
            Some(1) => Gate::UserLocked,
            Some(2) => Gate::Crowded,
            _ => Gate::Open,
        })
    }

    /// [`Self::begin`] under a new attempt id, in a task of its own, for a
    /// request that may be dropped while it waits (its client hung up).
    /// Redis runs the user gate whether or not anyone reads the answer, so
    /// an open gate that reaches nobody would keep its in-flight slot for
    /// 60 s; repeated hang-ups could then hold a username shut. Here an
    /// open gate nobody received gives its slot back, and so does a check
    /// that failed: one that outlived `command_timeout_ms` (answered 503)
    /// may still run in Redis. The release removes this attempt's own slot
    /// or nothing; should Redis run the check after it (the timeout drops
    /// the connection, and the release goes over a new one), the slot
    /// stops counting 60 s after the attempt began. Returns the gate and
    /// the attempt's id, for [`Self::finish`].
    pub async fn begin_detached(
        self: &Arc<Self>,
        p: &LockoutPolicy,
        user: &str,
        ip: IpAddr,
        now: u64,
    ) -> Result<(Gate, u64), StoreError> {
        let attempt = new_attempt();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (store, policy, name) = (Arc::clone(self), *p, user.to_owned());
        tokio::spawn(async move {
            let gate = store.begin(&policy, &name, ip, now, attempt).await;
            let failed = gate.is_err();
            let unread_open = matches!(tx.send(gate), Err(Ok(Gate::Open)));
            if failed || unread_open {
                // Nobody will finish this attempt: the request went away
                // before an open gate reached it, or it was answered 503.
                let _ = store.finish(&policy, &name, ip, now, None, attempt).await;
            }
        });
        let mut pending = UnreadGate { rx, release: Some((Arc::clone(self), *p, user.to_owned(), ip, now, attempt)) };
        let gate = (&mut pending.rx).await.unwrap_or(Err(StoreError));
        pending.release = None;
        gate.map(|gate| (gate, attempt))
    }

    /// Gives back the in-flight slot that [`Self::begin`] took for
    /// `attempt`, whose request went away, from a task of its own (the
    /// caller is a `Drop`); `cost_a_hash` also counts a failure against the
    /// IP. Outside a runtime (a drop at shutdown) the slot is left to the
    /// 60-s rule of USER_BEGIN.
    pub fn release_later(
        self: Arc<Self>,
        p: LockoutPolicy,
        user: String,
        ip: IpAddr,
        now: u64,
        cost_a_hash: bool,
        attempt: u64,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let _ = self.finish(&p, &user, ip, now, None, attempt).await;
            if cost_a_hash {
                self.count_ip(&p, ip, now, crate::lockout::FAILED_LOGINS).await;
            }
        });
    }

    /// [`Self::ip_failure`], with the audit line of a throttle it starts
    /// (`why`); a Redis error loses the count.
    async fn count_ip(&self, p: &LockoutPolicy, ip: IpAddr, now: u64, why: &'static str) {
        if let Ok(seconds @ 1..) = self.ip_failure(p, ip, now).await {
            tracing::warn!(event = "ip_throttled", %ip, seconds, why);
        }
    }

    /// [`Self::count_ip`] in a task of its own (returned; `None` outside a
    /// runtime), so that a request dropped meanwhile does not take the
    /// count along.
    pub fn ip_failure_later(
        self: Arc<Self>,
        p: LockoutPolicy,
        ip: IpAddr,
        now: u64,
        why: &'static str,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(runtime.spawn(async move { self.count_ip(&p, ip, now, why).await }))
    }

    /// [`crate::lockout::Lockout::finish`], shared, for the attempt
    /// [`Self::begin`] admitted under `attempt`. Returns the seconds of a
    /// lock this attempt started, and of an IP throttle it started.
    pub async fn finish(
        &self,
        p: &LockoutPolicy,
        user: &str,
        ip: IpAddr,
        now: u64,
        failed: Option<bool>,
        attempt: u64,
    ) -> Result<(u64, u64), StoreError> {
        let outcome: u64 = match failed {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        let mut cmds = Vec::with_capacity(2);
        if p.max_failures != 0 {
            let [ukey, tkey, pkey] = self.user_keys(user, ip);
            let trust_ttl = p.trusted_ip_days.saturating_mul(86_400);
            cmds.push(Self::eval(
                USER_FINISH,
                &[&ukey, &tkey, &pkey],
                &[
                    now,
                    outcome,
                    u64::from(p.max_failures),
                    p.window,
                    p.lock_time,
                    p.max_lock_time,
                    idle_ttl(p),
                    trust_ttl,
                    attempt,
                ],
            ));
        }
        let ip_counted = outcome == 1 && p.ip_max_failures != 0;
        if ip_counted {
            cmds.push(self.ip_failure_cmd(p, ip, now));
        }
        if cmds.is_empty() {
            return Ok((0, 0));
        }
        let values: Vec<u64> = self.batch(cmds).await?.into_iter().map(convert).collect::<Result<_, _>>()?;
        let mut values = values.into_iter();
        let locked = if p.max_failures != 0 { values.next().unwrap_or(0) } else { 0 };
        Ok((locked, if ip_counted { values.next().unwrap_or(0) } else { 0 }))
    }

    fn ip_failure_cmd(&self, p: &LockoutPolicy, ip: IpAddr, now: u64) -> Cmd {
        Self::eval(IP_FAILURE, &[&self.ip_key(ip)], &[now, u64::from(p.ip_max_failures), p.window, idle_ttl(p)])
    }

    /// Counts a failure against `ip` alone (a failed client
    /// authentication, a guess refused by a lock, a hang-up that cost a
    /// hash); returns the seconds of a throttle it started.
    pub async fn ip_failure(&self, p: &LockoutPolicy, ip: IpAddr, now: u64) -> Result<u64, StoreError> {
        if p.ip_max_failures == 0 {
            return Ok(0);
        }
        self.one(self.ip_failure_cmd(p, ip, now)).await
    }
}

/// A new attempt id: unique among this process's attempts, and (with a
/// random part drawn once) among the instances sharing the Redis.
pub fn new_attempt() -> u64 {
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nonce = *NONCE.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without the system's randomness, the time still tells instances
        // apart in practice.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
            bytes = u64::try_from(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
            )
            .unwrap_or(u64::MAX)
            .to_le_bytes();
        }
        u64::from_le_bytes(bytes)
    });
    nonce ^ NEXT.fetch_add(1, Ordering::Relaxed)
}

fn convert<T: redis::FromRedisValue>(v: Value) -> Result<T, StoreError> {
    redis::from_redis_value(&v).map_err(|e| {
        tracing::error!(error = %e, "unexpected reply from Redis");
        StoreError
    })
}

/// How long lockout state is kept after its last touch.
fn idle_ttl(p: &LockoutPolicy) -> u64 {
    p.window.max(p.max_lock_time).saturating_mul(2).max(60)
}
