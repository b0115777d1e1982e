//! The shared token store: Redis (or Valkey), one node or a Redis Cluster,
//! so that any number of ropc instances see the same tokens, rotations and
//! revocations. The brute-force counters share the connection
//! ([`crate::lockout`]'s Redis backend).
//!
//! Keys (all under the configured prefix, `ropc:` by default):
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `t:<digest>` | a [`Portable`] record | until the token expires |
//! | `f:<family>` | `1`: the grant family is revoked | until its last token expires |
//!
//! Round trips: reading a record is one (a script checks the family), or
//! two on a cluster, where the family key may live on another node.
//! Storing a grant is one pipeline: the new records, and the compare-and-set
//! that retires the rotated refresh token.

mod conn;

pub use conn::{convert, evalsha, hex, Lua, RedisConn, Retry, RECONNECT_EVERY};

use super::portable::Portable;
use super::{Commit, Names, StoreError, TokenStore};
use crate::redact::redact_url;
use redis::{Cmd, Value};
use ropc_core::{FamilyId, Issued, TokenKey, TokenRecord};
use ropc_metrics::Exposition;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// Reads a record unless its family is revoked (one node only: the family
/// key is not declared, which a cluster would refuse).
static GET: Lua = Lua::new(
    r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
if redis.call('EXISTS', ARGV[1] .. 'f:' .. string.sub(v, 1, 16)) == 1 then return false end
return v
",
);

/// Marks a refresh token retired, only if it exists and is not retired:
/// of two concurrent rotations exactly one gets 1.
static RETIRE: Lua = Lua::new(
    r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if string.sub(v, 18, 33) ~= '0000000000000000' then return 0 end
redis.call('SET', KEYS[1], string.sub(v, 1, 17) .. ARGV[1] .. string.sub(v, 34), 'KEEPTTL')
return 1
",
);

/// The token store's scripts, for [`RedisConn::new`].
pub static SCRIPTS: [&Lua; 2] = [&GET, &RETIRE];

/// Token records and revoked families in Redis.
#[derive(Debug)]
pub struct RedisTokens {
    conn: Arc<RedisConn>,
    /// The latest expiry this instance stored: a family revocation lasts at
    /// least this long (see the memory store's).
    latest_expiry: AtomicU64,
}

impl RedisTokens {
    /// Tokens over `conn`.
    pub fn new(conn: Arc<RedisConn>) -> Self {
        Self { conn, latest_expiry: AtomicU64::new(0) }
    }

    /// The connection.
    pub fn conn(&self) -> &Arc<RedisConn> {
        &self.conn
    }

    fn token_key(&self, key: &TokenKey) -> String {
        self.conn.key("t", &hex(&key.0))
    }

    fn family_key(&self, family: FamilyId) -> String {
        self.conn.key("f", &format!("{:016x}", family.0))
    }

    /// The SETs of what `issued` stores, and the keys they write.
    fn record_sets(&self, names: &dyn Names, issued: &Issued) -> Result<(Vec<Cmd>, Vec<String>), StoreError> {
        let mut cmds = Vec::with_capacity(3);
        let mut keys = Vec::with_capacity(2);
        for (key, record) in std::iter::once(&issued.access).chain(issued.refresh.as_ref()) {
            let portable = Portable::from_record(record, names).ok_or(StoreError)?;
            let tkey = self.token_key(key);
            self.latest_expiry.fetch_max(record.expires_at, Ordering::Relaxed);
            cmds.push(
                redis::cmd("SET").arg(&tkey).arg(portable.encode()).arg("EXAT").arg(record.expires_at.max(1)).clone(),
            );
            keys.push(tkey);
        }
        Ok((cmds, keys))
    }

    /// Appends the connection's metrics.
    pub fn write_metrics(&self, out: &mut Exposition) {
        self.conn.write_metrics(out);
    }
}

impl TokenStore for RedisTokens {
    async fn get(&self, names: &dyn Names, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        let tkey = self.token_key(key);
        let value: Option<Vec<u8>> = if self.conn.is_cluster() {
            let v: Option<Vec<u8>> = self.conn.one(redis::cmd("GET").arg(&tkey).clone(), Retry::Safe).await?;
            let family = v.as_ref().and_then(|v| Portable::decode(v)).map(|p| FamilyId(p.family));
            match family {
                Some(family) => {
                    let exists = redis::cmd("EXISTS").arg(self.family_key(family)).clone();
                    let revoked: bool = self.conn.one(exists, Retry::Safe).await?;
                    v.filter(|_| !revoked)
                }
                None => None,
            }
        } else {
            let prefix = self.conn.config().prefix.as_str();
            self.conn.one(evalsha(&GET, &[&tkey], &[prefix]), Retry::Safe).await?
        };
        Ok(value.and_then(|v| Portable::decode(&v)).and_then(|p| p.to_record(names)))
    }

    /// Stores a grant's records, then retires the rotated refresh token by
    /// compare-and-set, in one pipeline (in this order, so that the winner's
    /// records exist before the old token stops working). When the
    /// compare-and-set loses, the new records are deleted again and the race
    /// is reported.
    async fn commit(&self, names: &dyn Names, issued: &Issued) -> Result<Commit, StoreError> {
        let (mut cmds, written) = self.record_sets(names, issued)?;
        let Some(old) = &issued.retire else {
            self.conn.batch(cmds, Retry::Safe).await?;
            return Ok(Commit::Stored);
        };
        let at = format!("{:016x}", issued.access.1.issued_at.max(1));
        cmds.push(evalsha(&RETIRE, &[&self.token_key(old)], &[at.as_str()]));
        // Safe to send again after a NOSCRIPT: the SETs write the same
        // values, and RETIRE did not run.
        let values = self.conn.batch(cmds, Retry::Safe).await?;
        let won: i64 = convert(values.last().cloned().unwrap_or(Value::Nil))?;
        if won == 1 {
            return Ok(Commit::Stored);
        }
        let dels = written.iter().map(|k| redis::cmd("DEL").arg(k).clone()).collect();
        self.conn.batch(dels, Retry::Safe).await?;
        Ok(Commit::LostRace)
    }

    async fn store_only(&self, names: &dyn Names, issued: &Issued) -> Result<(), StoreError> {
        let (cmds, _) = self.record_sets(names, issued)?;
        self.conn.batch(cmds, Retry::Safe).await.map(drop)
    }

    async fn remove(&self, key: &TokenKey) -> Result<(), StoreError> {
        self.conn.batch(vec![redis::cmd("DEL").arg(self.token_key(key)).clone()], Retry::Safe).await.map(drop)
    }

    /// Revokes `family` until `until`: every instance's next read of any of
    /// its tokens sees it.
    async fn revoke_family(&self, family: FamilyId, until: u64) -> Result<(), StoreError> {
        let until = until.max(self.latest_expiry.load(Ordering::Relaxed)).max(1);
        let key = self.family_key(family);
        // Never shorten a revocation another instance (or an earlier one)
        // made: create it, or push its expiry later, never earlier.
        let create = redis::cmd("SET").arg(&key).arg(1).arg("EXAT").arg(until).arg("NX").clone();
        let extend = redis::cmd("EXPIREAT").arg(&key).arg(until).arg("GT").clone();
        self.conn.batch(vec![create, extend], Retry::Safe).await.map(drop)
    }
}
