//! The in-memory token store: a fixed number of shards, each a
//! `parking_lot::RwLock<HashMap>` keyed by the token digest. The key is
//! already a uniform hash, so the map hashes it by taking 8 of its bytes and
//! the shard is chosen from 8 others.
//!
//! Expired records are swept one shard at a time ([`ShardedTokenMap::sweep_step`]),
//! so no pass ever stops the whole map.

use super::{Commit, StoreError, TokenStore};
use parking_lot::RwLock;
use ropc_core::{Issued, TokenKey, TokenRecord};
use std::collections::HashMap;
use std::future::{ready, Future};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Hashes a [`TokenKey`] by reading 8 of its (already uniform) bytes.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `TokenKey` hashes as its 32-byte array (plus a length prefix for
        // slices, which arrives through `write_usize`).
        if let Some(b) = bytes.get(..8) {
            self.0 = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type Shard = RwLock<HashMap<TokenKey, TokenRecord, BuildHasherDefault<KeyHasher>>>;

/// Token records in memory, split into shards.
#[derive(Debug)]
pub struct ShardedTokenMap {
    shards: Box<[Shard]>,
    mask: usize,
    next_sweep: AtomicUsize,
}

impl Default for ShardedTokenMap {
    fn default() -> Self {
        Self::new(64)
    }
}

impl ShardedTokenMap {
    /// A map with `shards` shards (rounded up to a power of two).
    pub fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        Self {
            shards: (0..n).map(|_| RwLock::default()).collect(),
            mask: n - 1,
            next_sweep: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: &TokenKey) -> &Shard {
        let b = &key.0[8..16];
        let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        &self.shards[(n as usize) & self.mask]
    }

    /// The record under `key`.
    pub fn get_now(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.shard(key).read().get(key).copied()
    }

    /// Inserts or replaces a record.
    pub fn insert(&self, key: TokenKey, record: TokenRecord) {
        self.shard(&key).write().insert(key, record);
    }

    /// Removes a record.
    pub fn remove_now(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.shard(key).write().remove(key)
    }

    /// Stores issued tokens, retiring a rotated refresh token atomically.
    pub fn commit_now(&self, issued: &Issued) -> Commit {
        if let Some(old) = &issued.retire {
            if self.remove_now(old).is_none() {
                return Commit::LostRace;
            }
        }
        self.insert(issued.access.0, issued.access.1);
        if let Some((key, record)) = issued.refresh {
            self.insert(key, record);
        }
        Commit::Stored
    }

    /// Live records (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Removes expired records from the next shard in turn and returns how
    /// many went. Call it periodically; one call locks one shard.
    pub fn sweep_step(&self, now: u64) -> usize {
        let i = self.next_sweep.fetch_add(1, Ordering::Relaxed) & self.mask;
        let mut shard = self.shards[i].write();
        let before = shard.len();
        shard.retain(|_, r| r.is_active(now));
        if shard.capacity() > 64 && shard.len() < shard.capacity() / 4 {
            shard.shrink_to_fit();
        }
        before - shard.len()
    }
}

impl TokenStore for ShardedTokenMap {
    fn get(
        &self,
        key: &TokenKey,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send {
        ready(Ok(self.get_now(key)))
    }

    fn commit(&self, issued: &Issued) -> impl Future<Output = Result<Commit, StoreError>> + Send {
        ready(Ok(self.commit_now(issued)))
    }

    fn remove(
        &self,
        key: &TokenKey,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send {
        ready(Ok(self.remove_now(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ropc_core::{ClientIndex, FamilyId, ScopeSet, TokenKind, UserRef};

    fn key(n: u8) -> TokenKey {
        let mut k = [n; 32];
        k[8] = n.wrapping_mul(37);
        TokenKey(k)
    }

    fn record(expires_at: u64, kind: TokenKind) -> TokenRecord {
        TokenRecord {
            expires_at,
            issued_at: 0,
            scope: ScopeSet::EMPTY,
            family: FamilyId(7),
            user: UserRef(1),
            client: ClientIndex(0),
            kind,
        }
    }

    #[test]
    fn commit_rotates_exactly_once() {
        let map = ShardedTokenMap::new(4);
        map.insert(key(1), record(100, TokenKind::Refresh));
        let issued = Issued {
            access: (key(2), record(50, TokenKind::Access)),
            refresh: Some((key(3), record(100, TokenKind::Refresh))),
            retire: Some(key(1)),
        };
        assert_eq!(map.commit_now(&issued), Commit::Stored);
        assert_eq!(map.get_now(&key(1)), None);
        assert!(map.get_now(&key(3)).is_some());
        let replay = Issued {
            access: (key(4), record(50, TokenKind::Access)),
            refresh: None,
            retire: Some(key(1)),
        };
        assert_eq!(map.commit_now(&replay), Commit::LostRace);
        assert_eq!(map.get_now(&key(4)), None, "a lost race stores nothing");
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn sweep_is_incremental_and_complete() {
        let map = ShardedTokenMap::new(8);
        for n in 0..200u8 {
            map.insert(
                key(n),
                record(if n % 2 == 0 { 10 } else { 1000 }, TokenKind::Access),
            );
        }
        assert_eq!(map.len(), 200);
        let removed: usize = (0..map.shard_count()).map(|_| map.sweep_step(10)).sum();
        assert_eq!(removed, 100);
        assert_eq!(map.len(), 100);
        assert!(map.get_now(&key(1)).is_some() && map.get_now(&key(2)).is_none());
    }
}
