//! The replay cache: every client assertion's and DPoP proof's `jti`, kept
//! until the proof could no longer be accepted anyway (RFC 7523 §3, RFC
//! 9449 §11.1), so that a second use is refused.
//!
//! In memory it is a set of [`table::Shard`]s: a `jti` already seen is
//! found without a lock, and a new one is inserted under its shard's lock,
//! so of two racing uses exactly one is first. Its size is bounded: when
//! full (after sweeping what expired), a new `jti` cannot be recorded, so
//! the proof is refused with 503 rather than accepted unrecorded. Each
//! owner (a client) may hold at most half of it, counted in one of
//! [`OWNER_BUCKETS`] buckets, so that one client cannot crowd the others
//! out. With the Redis token store the cache is Redis (`SET NX PX`), shared
//! by every instance.

use super::redis::{hex, RedisConn, Retry};
use super::table::{self, Shard};
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

const SHARDS: usize = 16;
/// Owners are counted in this many buckets (clients that share one share
/// its half of the cache).
pub const OWNER_BUCKETS: usize = 64;

/// Why a `jti` could not be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The in-memory cache is full of live entries.
    Full,
    /// Redis did not answer.
    Unavailable,
}

/// Seen `jti`s.
#[derive(Debug)]
pub enum ReplayCache {
    /// In this process.
    Memory(MemoryReplay),
    /// In Redis, shared.
    Redis(Arc<RedisConn>),
}

/// The in-memory replay cache.
#[derive(Debug)]
pub struct MemoryReplay {
    shards: Box<[CachePadded<Shard>]>,
    capacity: usize,
    len: AtomicUsize,
    next_sweep: AtomicU64,
    sweep_cursor: AtomicUsize,
    /// Entries per owner bucket.
    owners: Box<[AtomicUsize]>,
    /// When the cache was last swept whole (at most once a second).
    last_full_sweep: AtomicU64,
}

impl ReplayCache {
    /// An in-memory cache of at most `capacity` entries.
    pub fn memory(capacity: usize) -> Self {
        ReplayCache::Memory(MemoryReplay {
            shards: (0..SHARDS).map(|_| CachePadded::new(Shard::default())).collect(),
            capacity,
            len: AtomicUsize::new(0),
            next_sweep: AtomicU64::new(0),
            sweep_cursor: AtomicUsize::new(0),
            owners: (0..OWNER_BUCKETS).map(|_| AtomicUsize::new(0)).collect(),
            last_full_sweep: AtomicU64::new(0),
        })
    }

    /// Records the use of `id` (a digest naming the proof kind, the key or
    /// client, and the `jti`) by `owner` (the client's index) until
    /// `until`; returns whether this was its first use.
    pub async fn first_use(&self, id: &[u8; 16], owner: u32, until: u64, now: u64) -> Result<bool, ReplayError> {
        match self {
            ReplayCache::Memory(m) => m.first_use(id, owner, until, now),
            ReplayCache::Redis(conn) => {
                let ttl_ms = until.saturating_sub(now).max(1).saturating_mul(1000);
                let cmd =
                    redis::cmd("SET").arg(conn.key("jti", &hex(id))).arg(1).arg("PX").arg(ttl_ms).arg("NX").clone();
                // Not retried: a lost reply to a SET that landed would make
                // the retry refuse the first use as a replay.
                let reply: Option<String> = conn.one(cmd, Retry::Never).await.map_err(|_| ReplayError::Unavailable)?;
                Ok(reply.is_some())
            }
        }
    }

    /// Entries held (in memory; Redis expires its own).
    pub fn len(&self) -> usize {
        match self {
            ReplayCache::Memory(m) => m.len.load(Ordering::Relaxed),
            ReplayCache::Redis(_) => 0,
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MemoryReplay {
    fn bucket(owner: u64) -> usize {
        (owner as usize) % OWNER_BUCKETS
    }

    fn first_use(&self, id: &[u8; 16], owner: u32, until: u64, now: u64) -> Result<bool, ReplayError> {
        let key = table::key_of(id);
        let shard = &self.shards[(key[0] as usize) % SHARDS];
        // The read path: a replay is found without a lock.
        if shard.get(&key).is_some_and(|v| v[0] > now) {
            return Ok(false);
        }
        self.sweep_now_and_then(now);
        let bucket = &self.owners[Self::bucket(u64::from(owner))];
        let full = || {
            self.len.load(Ordering::Relaxed) >= self.capacity
                || bucket.load(Ordering::Relaxed) >= (self.capacity / 2).max(1)
        };
        if full() {
            self.sweep_all(now);
            if full() {
                return Err(ReplayError::Full);
            }
        }
        let value = [until, u64::from(owner), 0, 0];
        // An expired entry under the same key is replaced: its proof
        // could not be accepted any more anyway.
        let mut previous_owner = None;
        let replaced = shard.update(&key, |v| {
            (v[0] <= now).then(|| {
                previous_owner = Some(v[1]);
                value
            })
        });
        if let Some(previous) = previous_owner {
            self.owners[Self::bucket(previous)].fetch_sub(1, Ordering::Relaxed);
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        if replaced {
            return Ok(previous_owner.is_some());
        }
        let inserted = shard.insert_new(&key, &value);
        if inserted {
            self.len.fetch_add(1, Ordering::Relaxed);
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        Ok(inserted)
    }

    /// One shard a second is swept of expired entries.
    fn sweep_now_and_then(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now < due || self.next_sweep.compare_exchange(due, now + 1, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        let i = self.sweep_cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
        self.sweep_shard(i, now);
    }

    /// Sweeps every shard, at most once a second: a cache full of live
    /// entries is not walked again by every refused request.
    fn sweep_all(&self, now: u64) {
        let last = self.last_full_sweep.load(Ordering::Relaxed);
        if now <= last
            || self.last_full_sweep.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        for i in 0..SHARDS {
            self.sweep_shard(i, now);
        }
    }

    fn sweep_shard(&self, i: usize, now: u64) {
        let removed = self.shards[i].sweep(|v| {
            let expired = v[0] <= now;
            if expired {
                self.owners[Self::bucket(v[1])].fetch_sub(1, Ordering::Relaxed);
            }
            expired
        });
        self.len.fetch_sub(removed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[0] = n;
        id[9] = n.wrapping_mul(31);
        id
    }

    #[tokio::test]
    async fn a_jti_is_first_once_until_it_expires() {
        let cache = ReplayCache::memory(1_000);
        assert_eq!(cache.first_use(&id(1), 0, 100, 10).await, Ok(true));
        assert_eq!(cache.first_use(&id(1), 0, 100, 11).await, Ok(false));
        assert_eq!(cache.first_use(&id(2), 0, 100, 11).await, Ok(true));
        // Past `until` the proof is refused for its age anyway; the entry
        // may be reused.
        assert_eq!(cache.first_use(&id(1), 0, 200, 100).await, Ok(true));
        assert_eq!(cache.first_use(&id(1), 0, 200, 150).await, Ok(false));
    }

    #[tokio::test]
    async fn a_full_cache_refuses_until_entries_expire() {
        let cache = ReplayCache::memory(4);
        for n in 0..4 {
            assert_eq!(cache.first_use(&id(n), u32::from(n), 50, 10).await, Ok(true));
        }
        assert_eq!(cache.first_use(&id(9), 9, 50, 10).await, Err(ReplayError::Full));
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.first_use(&id(9), 9, 100, 50).await, Ok(true), "expired entries were swept");
        assert!(cache.len() <= 4, "bounded");
    }

    #[tokio::test]
    async fn one_owner_holds_at_most_half_of_the_cache() {
        let cache = ReplayCache::memory(8);
        for n in 0..4 {
            assert_eq!(cache.first_use(&id(n), 3, 50, 10).await, Ok(true));
        }
        assert_eq!(cache.first_use(&id(4), 3, 50, 10).await, Err(ReplayError::Full), "owner 3 has its half");
        for n in 10..14 {
            assert_eq!(cache.first_use(&id(n), 4, 50, 10).await, Ok(true), "another owner still has room");
        }
        // Once owner 3's entries expire (swept at most once a second), it
        // has room again.
        assert_eq!(cache.first_use(&id(5), 3, 100, 11).await, Err(ReplayError::Full), "still live");
        assert_eq!(cache.first_use(&id(5), 3, 100, 50).await, Ok(true));
    }

    #[test]
    fn of_racing_uses_exactly_one_is_first() {
        let cache = Arc::new(ReplayCache::memory(100_000));
        let firsts = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                    for n in 0..=255u8 {
                        if rt.block_on(cache.first_use(&id(n), 0, 100, 1)) == Ok(true) {
                            firsts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(firsts.load(Ordering::Relaxed), 256);
    }
}
