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
//! | `gu:<owner hash>` | the user's grant families, scored by when their last token expires | the last one's expiry |
//! | `gc:<client hash>` | the same for a client | the same |
//!
//! Round trips: reading a record is one (a script checks the family), or
//! two on a cluster, where the family key may live on another node.
//! Storing a grant is one pipeline: the new records, and the compare-and-set
//! that retires the rotated refresh token.

mod conn;

pub use conn::{convert, evalsha, hex, Lua, RedisConn, Retry, RECONNECT_EVERY};

use super::portable::Portable;
use super::{Commit, Names, StoreError, TokenStore, Whose};
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

/// Adds a family to a grant index: KEYS: the index. ARGV: the family's
/// last expiry (its score; never lowered), the family, now (older members
/// go). The index lives as long as its last member.
static INDEX: Lua = Lua::new(
    r"
redis.call('ZADD', KEYS[1], 'GT', ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIREAT', KEYS[1], ARGV[1])
else
  redis.call('EXPIREAT', KEYS[1], ARGV[1], 'GT')
end
return 1
",
);

/// Ends every live grant of an index (one node only: the family keys are
/// not declared). KEYS: the index. ARGV: now, the key prefix, until when.
/// Returns how many were not revoked already.
static END: Lua = Lua::new(
    r"
local n = 0
for _, f in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')) do
  local k = ARGV[2] .. 'f:' .. f
  if redis.call('SET', k, 1, 'EXAT', ARGV[3], 'NX') then n = n + 1 else redis.call('EXPIREAT', k, ARGV[3], 'GT') end
end
return n
",
);

/// The token store's scripts, for [`RedisConn::new`].
pub static SCRIPTS: [&Lua; 4] = [&GET, &RETIRE, &INDEX, &END];

/// The index key of `whose` grants: a digest of the owner or client.
fn index_key(conn: &RedisConn, kind: &str, parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(&[0]);
    }
    conn.key(kind, &hex(&ctx.finish().as_ref()[..16]))
}

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

    /// The SETs of what `issued` stores, and the keys they write; then
    /// the family's place in its user's and its client's grant indices
    /// (in the same pipeline: no round trip more on one node).
    fn record_sets(&self, names: &dyn Names, issued: &Issued) -> Result<(Vec<Cmd>, Vec<String>), StoreError> {
        let mut cmds = Vec::with_capacity(5);
        let mut keys = Vec::with_capacity(2);
        let mut last = None;
        for (key, record) in std::iter::once(&issued.access).chain(issued.refresh.as_ref()) {
            let portable = Portable::from_record(record, names).ok_or(StoreError)?;
            let tkey = self.token_key(key);
            self.latest_expiry.fetch_max(record.expires_at, Ordering::Relaxed);
            cmds.push(
                redis::cmd("SET").arg(&tkey).arg(portable.encode()).arg("EXAT").arg(record.expires_at.max(1)).clone(),
            );
            keys.push(tkey);
            if last.as_ref().is_none_or(|(r, _): &(TokenRecord, Portable)| record.expires_at > r.expires_at) {
                last = Some((*record, portable));
            }
        }
        if let Some((record, portable)) = last {
            let family = format!("{:016x}", record.family.0);
            let args = [record.expires_at.max(1).to_string(), family, record.issued_at.to_string()];
            if let Some(owner) = &portable.owner {
                let key = index_key(&self.conn, "gu", &[owner.manager.as_deref().unwrap_or(""), &owner.username]);
                cmds.push(evalsha(&INDEX, &[&key], &args));
            }
            let key = index_key(&self.conn, "gc", &[&portable.client]);
            cmds.push(evalsha(&INDEX, &[&key], &args));
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
        let retire_at = cmds.len();
        cmds.push(evalsha(&RETIRE, &[&self.token_key(old)], &[at.as_str()]));
        // Safe to send again after a NOSCRIPT: the SETs and the index write
        // the same values, and RETIRE did not run.
        let values = self.conn.batch(cmds, Retry::Safe).await?;
        let won: i64 = convert(values.get(retire_at).cloned().unwrap_or(Value::Nil))?;
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

    /// Every live grant in the index of `whose` (the index has no issue
    /// times: all of them, `before` being now for every caller).
    async fn end_grants(&self, names: &dyn Names, whose: Whose, before: u64, until: u64) -> Result<usize, StoreError> {
        let key = match whose {
            Whose::User(owner) => {
                index_key(&self.conn, "gu", &[owner.manager.as_deref().unwrap_or(""), &owner.username])
            }
            Whose::Client(client) => {
                let Some(id) = names.client_id(client) else { return Ok(0) };
                index_key(&self.conn, "gc", &[id])
            }
        };
        let until = until.max(self.latest_expiry.load(Ordering::Relaxed)).max(1);
        if !self.conn.is_cluster() {
            let prefix = self.conn.config().prefix.clone();
            let args = [before.to_string(), prefix, until.to_string()];
            return self.conn.one(evalsha(&END, &[&key], &args), Retry::Safe).await;
        }
        // On a cluster the family keys live on other nodes: one by one.
        let range = redis::cmd("ZRANGEBYSCORE").arg(&key).arg(before).arg("+inf").clone();
        let families: Vec<String> = self.conn.one(range, Retry::Safe).await?;
        let mut ended = 0;
        for family in families {
            let k = self.conn.key("f", &family);
            let create = redis::cmd("SET").arg(&k).arg(1).arg("EXAT").arg(until).arg("NX").clone();
            let extend = redis::cmd("EXPIREAT").arg(&k).arg(until).arg("GT").clone();
            let values = self.conn.batch(vec![create, extend], Retry::Safe).await?;
            if values.first().is_some_and(|v| matches!(v, Value::Okay | Value::SimpleString(_))) {
                ended += 1;
            }
        }
        Ok(ended)
    }
}
