//! The in-memory token store: a fixed number of shards, each a
//! `parking_lot::RwLock<HashMap>` keyed by the token digest. The key is
//! already a uniform hash, so the map hashes it by taking 8 of its bytes and
//! the shard is chosen from 8 others.
//!
//! Expired records are swept one shard at a time ([`ShardedTokenMap::sweep_step`]),
//! so no pass ever stops the whole map.
//!
//! Revoked grant families are a separate small map (revocations are rare);
//! a look-up consults it only when it is not empty, and a record of a revoked
//! family reads as absent.

use super::{Commit, StoreError, TokenStore};
use parking_lot::RwLock;
use ropc_core::{FamilyId, Issued, TokenKey, TokenRecord};
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
    revoked: RwLock<HashMap<FamilyId, u64>>,
    revoked_count: AtomicUsize,
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
            revoked: RwLock::default(),
            revoked_count: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: &TokenKey) -> &Shard {
        let b = &key.0[8..16];
        let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        &self.shards[(n as usize) & self.mask]
    }

    /// The record under `key`, unless its family is revoked.
    pub fn get_now(&self, key: &TokenKey) -> Option<TokenRecord> {
        let record = self.shard(key).read().get(key).copied()?;
        if self.revoked_count.load(Ordering::Acquire) > 0 && self.revoked.read().contains_key(&record.family) {
            return None;
        }
        Some(record)
    }

    /// Inserts or replaces a record.
    pub fn insert(&self, key: TokenKey, record: TokenRecord) {
        self.shard(&key).write().insert(key, record);
    }

    /// Removes a record.
    pub fn remove_now(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.shard(key).write().remove(key)
    }

    /// Revokes every record of `family` until `until`.
    pub fn revoke_family_now(&self, family: FamilyId, until: u64) {
        let mut revoked = self.revoked.write();
        let entry = revoked.entry(family).or_insert(until);
        *entry = (*entry).max(until);
        self.revoked_count.store(revoked.len(), Ordering::Release);
    }

    /// Revoked families whose tokens have not all expired.
    pub fn revoked_families(&self) -> usize {
        self.revoked_count.load(Ordering::Relaxed)
    }

    /// Stores issued tokens, retiring a rotated refresh token atomically
    /// (compare-and-set on its `retired_at` under its shard's lock).
    pub fn commit_now(&self, issued: &Issued) -> Commit {
        if let Some(old) = &issued.retire {
            let mut shard = self.shard(old).write();
            match shard.get_mut(old) {
                Some(record) if !record.is_retired() => record.retired_at = issued.access.1.issued_at.max(1),
                _ => return Commit::LostRace,
            }
        }
        self.store_only_now(issued);
        Commit::Stored
    }

    /// Stores issued tokens without retiring anything.
    pub fn store_only_now(&self, issued: &Issued) {
        self.insert(issued.access.0, issued.access.1);
        if let Some((key, record)) = issued.refresh {
            self.insert(key, record);
        }
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
    /// many went. Call it periodically; one call locks one shard. Each full
    /// round also forgets revocations whose tokens have all expired.
    pub fn sweep_step(&self, now: u64) -> usize {
        let i = self.next_sweep.fetch_add(1, Ordering::Relaxed) & self.mask;
        if i == 0 && self.revoked_count.load(Ordering::Relaxed) > 0 {
            let mut revoked = self.revoked.write();
            revoked.retain(|_, until| *until > now);
            self.revoked_count.store(revoked.len(), Ordering::Release);
        }
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
    fn get(&self, key: &TokenKey) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send {
        ready(Ok(self.get_now(key)))
    }

    fn commit(&self, issued: &Issued) -> impl Future<Output = Result<Commit, StoreError>> + Send {
        ready(Ok(self.commit_now(issued)))
    }

    fn store_only(&self, issued: &Issued) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store_only_now(issued);
        ready(Ok(()))
    }

    fn remove(&self, key: &TokenKey) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send {
        ready(Ok(self.remove_now(key)))
    }

    fn revoke_family(&self, family: FamilyId, until: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.revoke_family_now(family, until);
        ready(Ok(()))
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
            retired_at: 0,
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
        assert!(map.get_now(&key(1)).is_some_and(|r| r.is_retired()), "kept, marked retired");
        assert!(map.get_now(&key(3)).is_some());
        let replay = Issued { access: (key(4), record(50, TokenKind::Access)), refresh: None, retire: Some(key(1)) };
        assert_eq!(map.commit_now(&replay), Commit::LostRace);
        assert_eq!(map.get_now(&key(4)), None, "a lost race stores nothing");
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn revoked_families_read_as_absent_until_swept() {
        let map = ShardedTokenMap::new(2);
        map.insert(key(1), record(100, TokenKind::Refresh));
        map.insert(key(2), TokenRecord { family: FamilyId(8), ..record(100, TokenKind::Access) });
        map.revoke_family_now(FamilyId(7), 100);
        assert_eq!(map.get_now(&key(1)), None);
        assert!(map.get_now(&key(2)).is_some(), "other families are untouched");
        assert_eq!(map.revoked_families(), 1);
        // Once every token of the family has expired, the sweep forgets both.
        for _ in 0..map.shard_count() {
            map.sweep_step(100);
        }
        assert_eq!((map.revoked_families(), map.len()), (0, 0));
    }

    #[test]
    fn a_burst_of_short_lived_tokens_leaves_memory() {
        let map = ShardedTokenMap::new(64);
        for n in 0..50_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&n.to_le_bytes());
            k[8..12].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
            map.insert(TokenKey(k), record(1_000 + u64::from(n % 2), TokenKind::Access));
        }
        map.insert(key(200), record(5_000, TokenKind::Refresh));
        assert_eq!(map.len(), 50_001);
        // One full round of incremental sweeps after the burst expired.
        let removed: usize = (0..map.shard_count()).map(|_| map.sweep_step(1_001)).sum();
        assert_eq!(removed, 50_000);
        assert_eq!(map.len(), 1, "only the live token is left");
    }

    #[test]
    fn sweep_is_incremental_and_complete() {
        let map = ShardedTokenMap::new(8);
        for n in 0..200u8 {
            map.insert(key(n), record(if n % 2 == 0 { 10 } else { 1000 }, TokenKind::Access));
        }
        assert_eq!(map.len(), 200);
        let removed: usize = (0..map.shard_count()).map(|_| map.sweep_step(10)).sum();
        assert_eq!(removed, 100);
        assert_eq!(map.len(), 100);
        assert!(map.get_now(&key(1)).is_some() && map.get_now(&key(2)).is_none());
    }
}
