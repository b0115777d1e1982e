//! The in-memory token store: a fixed number of shards, each a [`Shard`]
//! (an open-addressing table whose look-ups take no lock; see
//! [`super::table`]). The key is already a uniform digest, so the shard is
//! chosen from its bits and nothing is hashed again.
//!
//! A record is packed into 32 bytes beside its 16-byte key (see [`pack`]), so
//! a live token costs about 52 to 65 bytes of table, whatever the load.
//!
//! Expired records are swept one shard at a time ([`ShardedTokenMap::sweep_step`]),
//! so no pass ever stops the whole map, and a shard shrinks when it empties.
//!
//! Revoked grant families are a separate small map (revocations are rare);
//! a look-up consults it only when it is not empty, and a record of a revoked
//! family reads as absent.

use super::table::{self, Shard, Value};
use super::Commit;
use crossbeam_utils::CachePadded;
use parking_lot::RwLock;
use ropc_core::{ClientIndex, FamilyId, Issued, ScopeSet, TokenKey, TokenKind, TokenRecord, UserRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const RETIRED: u64 = 1 << 63;
const REFRESH: u64 = 1 << 62;

fn seconds(t: u64) -> u64 {
    t.min(u64::from(u32::MAX))
}

/// Packs a record into four words:
///
/// | word | bits |
/// |---|---|
/// | 0 | `expires_at` (low 32), `issued_at` or, once retired, `retired_at` (high 32) |
/// | 1 | the scope set |
/// | 2 | the family |
/// | 3 | `user` (low 32), `client` (24: [`ropc_core::ClientTable::CAPACITY`]), then the refresh and retired flags |
///
/// Times are seconds since the epoch in 32 bits (good until 2106; later
/// times are clamped to it). A retired refresh token needs `retired_at` but
/// no longer its `issued_at` (nothing reads the issue time of a token that
/// no longer works), so the two share a field: unpacked, a retired record
/// reports its `retired_at` as `issued_at` too.
pub fn pack(r: &TokenRecord) -> Value {
    let second = if r.is_retired() { r.retired_at } else { r.issued_at };
    let mut w3 = u64::from(r.user.0) | (u64::from(r.client.0) & 0xFF_FFFF) << 32;
    if r.kind == TokenKind::Refresh {
        w3 |= REFRESH;
    }
    if r.is_retired() {
        w3 |= RETIRED;
    }
    [seconds(r.expires_at) | seconds(second) << 32, r.scope.bits(), r.family.0, w3]
}

/// The inverse of [`pack`].
pub fn unpack(v: &Value) -> TokenRecord {
    let second = v[0] >> 32;
    let retired = v[3] & RETIRED != 0;
    TokenRecord {
        expires_at: v[0] & 0xFFFF_FFFF,
        issued_at: second,
        scope: ScopeSet::from_bits(v[1]),
        family: FamilyId(v[2]),
        user: UserRef(v[3] as u32),
        client: ClientIndex(((v[3] >> 32) & 0xFF_FFFF) as u32),
        kind: if v[3] & REFRESH != 0 { TokenKind::Refresh } else { TokenKind::Access },
        retired_at: if retired { second.max(1) } else { 0 },
    }
}

fn words(key: &TokenKey) -> table::Key {
    table::key_of(&key.0)
}

/// Token records in memory, split into shards.
#[derive(Debug)]
pub struct ShardedTokenMap {
    shards: Box<[CachePadded<Shard>]>,
    mask: usize,
    next_sweep: AtomicUsize,
    revoked: RwLock<HashMap<FamilyId, u64>>,
    revoked_count: AtomicUsize,
    /// The latest expiry of any record ever stored: a family revocation
    /// lasts at least this long, so that it still covers tokens issued under
    /// a longer lifetime than the one configured now (a config commit or a
    /// restart may lower `refresh_token_ttl`).
    latest_expiry: AtomicU64,
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
            shards: (0..n).map(|_| CachePadded::new(Shard::default())).collect(),
            mask: n - 1,
            next_sweep: AtomicUsize::new(0),
            revoked: RwLock::default(),
            revoked_count: AtomicUsize::new(0),
            latest_expiry: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &table::Key) -> &Shard {
        // The low bits of the second word; the table uses the first word
        // and the top bits of the second.
        &self.shards[(key[1] as usize) & self.mask]
    }

    /// The record under `key`, unless its family is revoked. Takes no lock
    /// (but a read lock on the revoked families while any are revoked).
    pub fn get_now(&self, key: &TokenKey) -> Option<TokenRecord> {
        let k = words(key);
        let record = unpack(&self.shard(&k).get(&k)?);
        if self.revoked_count.load(Ordering::Acquire) > 0 && self.revoked.read().contains_key(&record.family) {
            return None;
        }
        Some(record)
    }

    /// Inserts or replaces a record.
    pub fn insert(&self, key: TokenKey, record: TokenRecord) {
        // Expiries grow with the clock's seconds: the shared line is read on
        // every insert but written about once a second.
        if record.expires_at > self.latest_expiry.load(Ordering::Relaxed) {
            self.latest_expiry.fetch_max(record.expires_at, Ordering::Relaxed);
        }
        let k = words(&key);
        self.shard(&k).insert(&k, &pack(&record));
    }

    /// Removes a record.
    pub fn remove_now(&self, key: &TokenKey) -> Option<TokenRecord> {
        let k = words(key);
        self.shard(&k).remove(&k).as_ref().map(unpack)
    }

    /// Revokes every record of `family` until `until`.
    /// Returns until when it is revoked now (at least `until`; longer to
    /// cover every token ever stored).
    pub fn revoke_family_now(&self, family: FamilyId, until: u64) -> u64 {
        let until = until.max(self.latest_expiry.load(Ordering::Relaxed));
        let mut revoked = self.revoked.write();
        let entry = revoked.entry(family).or_insert(until);
        *entry = (*entry).max(until);
        let until = *entry;
        self.revoked_count.store(revoked.len(), Ordering::Release);
        until
    }

    /// Calls `f` with every record (expired ones not yet swept included),
    /// one shard at a time.
    pub fn for_each(&self, mut f: impl FnMut(TokenKey, TokenRecord)) {
        let mut items = Vec::new();
        for shard in self.shards.iter() {
            // Copy the shard under its lock; call `f` after releasing it.
            items.clear();
            shard.for_each(|k, v| items.push((*k, *v)));
            for (k, v) in &items {
                let mut key = [0u8; TokenKey::LEN];
                key[..8].copy_from_slice(&k[0].to_le_bytes());
                key[8..].copy_from_slice(&k[1].to_le_bytes());
                f(TokenKey(key), unpack(v));
            }
        }
    }

    /// Undoes [`ShardedTokenMap::commit_now`]'s retirement of `key` at `at`
    /// (when what follows it failed). The issue time, which a retired record
    /// does not keep, becomes `at`.
    pub fn unretire(&self, key: &TokenKey, at: u64) {
        let k = words(key);
        self.shard(&k).update(&k, |v| {
            let mut record = unpack(&v);
            (record.retired_at == at.max(1)).then(|| {
                record.retired_at = 0;
                record.issued_at = at;
                pack(&record)
            })
        });
    }

    /// Whether `family` is revoked.
    pub fn is_revoked(&self, family: FamilyId) -> bool {
        self.revoked_count.load(Ordering::Acquire) > 0 && self.revoked.read().contains_key(&family)
    }

    /// The revoked families and until when.
    pub fn revoked_list(&self) -> Vec<(FamilyId, u64)> {
        self.revoked.read().iter().map(|(f, u)| (*f, *u)).collect()
    }

    /// Revoked families whose tokens have not all expired.
    pub fn revoked_families(&self) -> usize {
        self.revoked_count.load(Ordering::Relaxed)
    }

    /// Stores issued tokens, retiring a rotated refresh token atomically
    /// (compare-and-set of its retired flag under its shard's lock).
    pub fn commit_now(&self, issued: &Issued) -> Commit {
        if let Some(old) = &issued.retire {
            let k = words(old);
            let at = issued.access.1.issued_at.max(1);
            let retired = self.shard(&k).update(&k, |v| {
                let mut record = unpack(&v);
                (!record.is_retired()).then(|| {
                    record.retired_at = at;
                    pack(&record)
                })
            });
            if !retired {
                return Commit::LostRace;
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
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the shards' tables (slots and control bytes).
    pub fn table_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.bytes()).sum()
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Removes expired records from the next shard in turn and returns how
    /// many went. Call it periodically; one call locks one shard's writers
    /// (readers go on). Each full round also forgets revocations whose
    /// tokens have all expired.
    pub fn sweep_step(&self, now: u64) -> usize {
        let i = self.next_sweep.fetch_add(1, Ordering::Relaxed) & self.mask;
        if i == 0 && self.revoked_count.load(Ordering::Relaxed) > 0 {
            let mut revoked = self.revoked.write();
            revoked.retain(|_, until| *until > now);
            self.revoked_count.store(revoked.len(), Ordering::Release);
        }
        let now = seconds(now);
        self.shards[i].sweep(|v| v[0] & 0xFFFF_FFFF <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> TokenKey {
        let mut k = [n; 16];
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
    fn records_pack_into_32_bytes_and_back() {
        let r = TokenRecord {
            expires_at: 4_000_000_000,
            issued_at: 3_999_999_700,
            scope: ScopeSet::from_bits(0x8000_0000_0000_0005),
            family: FamilyId(u64::MAX - 3),
            user: UserRef::NONE,
            client: ClientIndex(ropc_core::ClientTable::CAPACITY as u32 - 1),
            kind: TokenKind::Refresh,
            retired_at: 0,
        };
        assert_eq!(unpack(&pack(&r)), r);
        let access = TokenRecord { kind: TokenKind::Access, user: UserRef(0), client: ClientIndex(0), ..r };
        assert_eq!(unpack(&pack(&access)), access);
        // Retired: the retirement time takes the issue time's place.
        let retired = TokenRecord { retired_at: 4_000_000_001, ..r };
        let back = unpack(&pack(&retired));
        assert!(back.is_retired());
        assert_eq!((back.retired_at, back.expires_at, back.family), (4_000_000_001, r.expires_at, r.family));
        // Times past 2106 clamp to it instead of wrapping into the past.
        let far = TokenRecord { expires_at: u64::MAX, ..r };
        assert_eq!(unpack(&pack(&far)).expires_at, u64::from(u32::MAX));
        assert_eq!(std::mem::size_of::<table::Value>(), 32);
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
    fn a_revocation_outlives_every_stored_token_whatever_horizon_it_is_given() {
        // Issued under a 30-day lifetime; the revocation comes after a commit
        // lowered it to a day, so the engine's horizon is short.
        let map = ShardedTokenMap::new(2);
        map.insert(key(1), record(30 * 86_400, TokenKind::Refresh));
        map.revoke_family_now(FamilyId(7), 86_400);
        for _ in 0..map.shard_count() {
            map.sweep_step(86_400 + 1);
        }
        assert_eq!(map.revoked_families(), 1, "still revoked after the short horizon");
        assert_eq!(map.get_now(&key(1)), None);
    }

    #[test]
    fn a_burst_of_short_lived_tokens_leaves_memory() {
        let map = ShardedTokenMap::new(64);
        for n in 0..50_000u32 {
            let mut k = [0u8; 16];
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
