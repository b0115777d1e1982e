//! One shard of the token map: an open-addressing table of fixed-size slots
//! whose look-ups take no lock.
//!
//! # Layout
//!
//! A slot is six 64-bit words: the 16-byte key and a 32-byte packed value.
//! Slots come in groups of eight, and each group has one control word of
//! eight bytes, one per slot, as in SwissTable (hashbrown): `EMPTY`,
//! `DELETED`, or 7 bits of the key for a full slot, so that a probe compares
//! eight slots with a few arithmetic instructions and reads a key only on a
//! likely match. That is 49 bytes per slot, and the table runs at up to 15/16
//! full, so a live record costs 52 to 65 bytes (key and value included).
//! Keys are already uniform digests, so the table does not hash them again:
//! the first key word picks the starting group, the top bits of the second
//! the control byte.
//!
//! # Concurrency
//!
//! Writers (insert, update, delete, sweep, resize) take the shard's
//! `parking_lot::Mutex`. Readers never lock: a shard is a seqlock. A writer
//! makes the shard's sequence number odd, changes slots, and makes it even
//! again; a reader notes the number, probes with plain atomic loads, and
//! retries if the number changed meanwhile (or was odd), so it never acts
//! on a torn record. Writes are a handful of stores, so retries are rare.
//! Every slot and control word is an atomic, so the racy reads are defined
//! behaviour.
//!
//! A resize builds a new table beside the old one (readers go on reading
//! the old one, which no longer changes), then swaps the pointer inside one
//! odd/even step. The old table is freed through crossbeam-epoch once no
//! reader can still hold it.

use crossbeam_epoch::{self as epoch, Atomic, Owned, Shared};
use parking_lot::Mutex;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};

/// A key as two words.
pub type Key = [u64; 2];

/// The key of a 16-byte digest (little-endian words): digests are already
/// uniform, so nothing is hashed again.
pub fn key_of(digest: &[u8; 16]) -> Key {
    let (a, b) = digest.split_at(8);
    [u64::from_le_bytes(a.try_into().unwrap_or_default()), u64::from_le_bytes(b.try_into().unwrap_or_default())]
}
/// A packed value as four words.
pub type Value = [u64; 4];

const GROUP: usize = 8;
const EMPTY: u8 = 0xFF;
const DELETED: u8 = 0x80;
const LSB: u64 = 0x0101_0101_0101_0101;
const MSB: u64 = 0x8080_8080_8080_8080;
/// The smallest table, in groups.
const MIN_GROUPS: usize = 2;

/// Bytes of one slot plus its control byte.
pub const SLOT_BYTES: usize = 6 * 8 + 1;

/// Bytes (high bit of each) of `ctrl` that may equal `byte`. False positives
/// are possible (the caller compares keys); misses are not.
fn match_byte(ctrl: u64, byte: u8) -> u64 {
    let x = ctrl ^ (LSB * u64::from(byte));
    x.wrapping_sub(LSB) & !x & MSB
}

/// Bytes of `ctrl` that are `EMPTY` (exact).
fn match_empty(ctrl: u64) -> u64 {
    ctrl & (ctrl << 1) & MSB
}

/// Bytes of `ctrl` that are `EMPTY` or `DELETED` (exact).
fn match_free(ctrl: u64) -> u64 {
    ctrl & MSB
}

fn lowest(mask: u64) -> usize {
    mask.trailing_zeros() as usize / 8
}

fn tag(key: &Key) -> u8 {
    (key[1] >> 57) as u8
}

fn with_byte(ctrl: u64, i: usize, byte: u8) -> u64 {
    (ctrl & !(0xFF << (i * 8))) | (u64::from(byte) << (i * 8))
}

struct Table {
    ctrl: Box<[AtomicU64]>,
    slots: Box<[[AtomicU64; 6]]>,
}

impl Table {
    fn new(groups: usize) -> Self {
        Self {
            ctrl: (0..groups).map(|_| AtomicU64::new(u64::MAX)).collect(),
            slots: (0..groups * GROUP).map(|_| Default::default()).collect(),
        }
    }

    fn groups(&self) -> usize {
        self.ctrl.len()
    }

    fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The first group of `key`'s probe sequence (Lemire's multiply-shift, so
    /// any number of groups works, not only powers of two).
    fn start(&self, key: &Key) -> usize {
        ((u128::from(key[0]) * self.groups() as u128) >> 64) as usize
    }

    /// The slot holding `key`. Probes whole groups in order and stops at
    /// the first group with an `EMPTY` byte. Visits each group at most once,
    /// so even a reader racing a writer (whose result is then discarded)
    /// terminates.
    fn find(&self, key: &Key) -> Option<usize> {
        let tag = tag(key);
        let mut g = self.start(key);
        for _ in 0..self.groups() {
            let ctrl = self.ctrl[g].load(Ordering::Relaxed);
            let mut m = match_byte(ctrl, tag);
            while m != 0 {
                let i = g * GROUP + lowest(m);
                let s = &self.slots[i];
                if s[0].load(Ordering::Relaxed) == key[0] && s[1].load(Ordering::Relaxed) == key[1] {
                    return Some(i);
                }
                m &= m - 1;
            }
            if match_empty(ctrl) != 0 {
                return None;
            }
            g = if g + 1 == self.groups() { 0 } else { g + 1 };
        }
        None
    }

    /// One probe for an insert: `Ok(slot)` holding `key`, or `Err(slot)`,
    /// the first `EMPTY` or `DELETED` slot of its probe sequence, where it
    /// goes. Writers only; the caller keeps the table below full.
    fn find_or_free(&self, key: &Key) -> Result<usize, usize> {
        let tag = tag(key);
        let mut g = self.start(key);
        let mut free = None;
        loop {
            let ctrl = self.ctrl[g].load(Ordering::Relaxed);
            let mut m = match_byte(ctrl, tag);
            while m != 0 {
                let i = g * GROUP + lowest(m);
                if self.key(i) == *key {
                    return Ok(i);
                }
                m &= m - 1;
            }
            let f = match_free(ctrl);
            if free.is_none() && f != 0 {
                free = Some(g * GROUP + lowest(f));
            }
            if match_empty(ctrl) != 0 {
                // Not further along: a probe for it would stop here.
                return Err(free.unwrap_or(g * GROUP + lowest(match_empty(ctrl))));
            }
            g = if g + 1 == self.groups() { 0 } else { g + 1 };
        }
    }

    /// Where a new key goes: the first `EMPTY` or `DELETED` slot of its probe
    /// sequence. The caller keeps the table below full, so there is one.
    fn free_slot(&self, key: &Key) -> usize {
        let mut g = self.start(key);
        loop {
            let m = match_free(self.ctrl[g].load(Ordering::Relaxed));
            if m != 0 {
                return g * GROUP + lowest(m);
            }
            g = if g + 1 == self.groups() { 0 } else { g + 1 };
        }
    }

    fn value(&self, i: usize) -> Value {
        let s = &self.slots[i];
        [2, 3, 4, 5].map(|w| s[w].load(Ordering::Relaxed))
    }

    fn key(&self, i: usize) -> Key {
        let s = &self.slots[i];
        [s[0].load(Ordering::Relaxed), s[1].load(Ordering::Relaxed)]
    }

    fn ctrl_byte(&self, i: usize) -> u8 {
        (self.ctrl[i / GROUP].load(Ordering::Relaxed) >> ((i % GROUP) * 8)) as u8
    }

    fn set_ctrl(&self, i: usize, byte: u8) {
        let word = &self.ctrl[i / GROUP];
        word.store(with_byte(word.load(Ordering::Relaxed), i % GROUP, byte), Ordering::Relaxed);
    }

    fn write(&self, i: usize, key: &Key, value: &Value) {
        let s = &self.slots[i];
        s[0].store(key[0], Ordering::Relaxed);
        s[1].store(key[1], Ordering::Relaxed);
        self.write_value(i, value);
    }

    fn write_value(&self, i: usize, value: &Value) {
        let s = &self.slots[i];
        for (w, v) in value.iter().enumerate() {
            s[2 + w].store(*v, Ordering::Relaxed);
        }
    }

    /// Full slots as (index, key).
    fn full(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.capacity()).filter(|&i| self.ctrl_byte(i) & 0x80 == 0)
    }

    fn bytes(&self) -> usize {
        self.capacity() * SLOT_BYTES
    }
}

#[derive(Default)]
struct Counts {
    /// Full slots.
    len: usize,
    /// `DELETED` slots (tombstones), cleared by the next rebuild.
    deleted: usize,
}

/// One shard: a table, its sequence number, and its writers' lock.
pub struct Shard {
    seq: AtomicU64,
    table: Atomic<Table>,
    writer: Mutex<Counts>,
    /// `Counts::len`, readable without the lock (for metrics).
    len: AtomicUsize,
    /// Bytes of the current table, readable without the lock.
    bytes: AtomicUsize,
}

impl Default for Shard {
    fn default() -> Self {
        let table = Table::new(MIN_GROUPS);
        let bytes = table.bytes();
        Self {
            seq: AtomicU64::new(0),
            table: Atomic::new(table),
            writer: Mutex::new(Counts::default()),
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(bytes),
        }
    }
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("len", &self.len()).field("bytes", &self.bytes()).finish()
    }
}

/// The writer's side of a shard, with its lock held.
struct Write<'s> {
    shard: &'s Shard,
    counts: parking_lot::MutexGuard<'s, Counts>,
}

impl Write<'_> {
    fn table(&self) -> &Table {
        // SAFETY: the pointer is never null (set in `Shard::default`, and
        // only replaced by `rebuild` with another table). Only a writer
        // replaces the table, and we hold the writers' lock, so the current
        // table stays current, and is not retired, while we use it: no epoch
        // guard is needed for it.
        unsafe { self.shard.table.load(Ordering::Acquire, epoch::unprotected()).deref() }
    }

    /// Runs `f` between the odd and the even sequence number, so that a
    /// reader overlapping it retries.
    fn publish<R>(&self, f: impl FnOnce(&Table) -> R) -> R {
        let seq = self.shard.seq.load(Ordering::Relaxed);
        self.shard.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let r = f(self.table());
        self.shard.seq.store(seq + 2, Ordering::Release);
        r
    }

    fn delete(&mut self, i: usize) {
        let table = self.table();
        // A group that already has an EMPTY slot stops every probe that
        // reaches it, so this slot can become EMPTY too; otherwise a probe
        // must go on past it, and it becomes a tombstone.
        let byte = if match_empty(table.ctrl[i / GROUP].load(Ordering::Relaxed)) != 0 { EMPTY } else { DELETED };
        self.publish(|t| t.set_ctrl(i, byte));
        self.counts.len -= 1;
        self.counts.deleted += usize::from(byte == DELETED);
        self.shard.len.store(self.counts.len, Ordering::Relaxed);
    }

    /// Replaces the table with one sized for the live records (3/4 full),
    /// without tombstones.
    fn rebuild(&mut self) {
        let old = self.table();
        let groups = (self.counts.len * 4 / 3).div_ceil(GROUP).max(MIN_GROUPS);
        let new = Table::new(groups);
        for i in old.full() {
            let key = old.key(i);
            let j = new.free_slot(&key);
            new.write(j, &key, &old.value(i));
            new.set_ctrl(j, tag(&key));
        }
        self.shard.bytes.store(new.bytes(), Ordering::Relaxed);
        let new = Owned::new(new);
        let guard = epoch::pin();
        let old = self.publish(|_| self.shard.table.swap(new, Ordering::AcqRel, &guard));
        // SAFETY: `old` is no longer reachable from the shard; readers that
        // loaded it before the swap hold pinned guards, and the epoch
        // collector frees it only after they are all unpinned.
        unsafe { guard.defer_destroy(old) };
        // Hand the old table to the global queue now: left in this thread's
        // local bag it would wait for 64 more deferred frees on this thread
        // (the sweeper's shrinks would keep big tables alive for long).
        guard.flush();
        self.counts.deleted = 0;
    }
}

impl Shard {
    fn write(&self) -> Write<'_> {
        Write { shard: self, counts: self.writer.lock() }
    }

    /// The value under `key`. Takes no lock.
    pub fn get(&self, key: &Key) -> Option<Value> {
        let guard = epoch::pin();
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let table: Shared<'_, Table> = self.table.load(Ordering::Acquire, &guard);
            // SAFETY: never null; freed only through `defer_destroy` after
            // being replaced, which waits for `guard`.
            let table = unsafe { table.deref() };
            let found = table.find(key).map(|i| table.value(i));
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == seq {
                return found;
            }
        }
    }

    /// Inserts or replaces the value under `key`.
    pub fn insert(&self, key: &Key, value: &Value) {
        self.put(key, value, true);
    }

    /// Inserts `value` under `key` unless a value is there already; returns
    /// whether it inserted. Of two racing calls for one key, exactly one
    /// inserts.
    pub fn insert_new(&self, key: &Key, value: &Value) -> bool {
        self.put(key, value, false)
    }

    fn put(&self, key: &Key, value: &Value, replace: bool) -> bool {
        let mut w = self.write();
        let mut slot = w.table().find_or_free(key);
        if let Ok(i) = slot {
            if replace {
                w.publish(|t| t.write_value(i, value));
            }
            return false;
        }
        // Keep at most 15/16 of the slots full or deleted, so that probes
        // stay short and there is always a free slot.
        if (w.counts.len + w.counts.deleted + 1) * 16 > w.table().capacity() * 15 {
            w.rebuild();
            slot = w.table().find_or_free(key);
        }
        let (Ok(i) | Err(i)) = slot;
        let table = w.table();
        let was_deleted = table.ctrl_byte(i) == DELETED;
        w.publish(|t| {
            t.write(i, key, value);
            t.set_ctrl(i, tag(key));
        });
        w.counts.len += 1;
        w.counts.deleted -= usize::from(was_deleted);
        self.len.store(w.counts.len, Ordering::Relaxed);
        true
    }

    /// Changes the value under `key` in place with `f`, which sees the
    /// current value and returns the new one or `None` to leave it. Returns
    /// whether a value was present and changed.
    pub fn update(&self, key: &Key, f: impl FnOnce(Value) -> Option<Value>) -> bool {
        let w = self.write();
        let table = w.table();
        let Some(i) = table.find(key) else { return false };
        match f(table.value(i)) {
            Some(v) => {
                w.publish(|t| t.write_value(i, &v));
                true
            }
            None => false,
        }
    }

    /// Removes and returns the value under `key`.
    pub fn remove(&self, key: &Key) -> Option<Value> {
        let mut w = self.write();
        let i = w.table().find(key)?;
        let value = w.table().value(i);
        w.delete(i);
        Some(value)
    }

    /// Removes every value for which `expired` says so; returns how many.
    /// Shrinks the table when it is less than a quarter full after.
    pub fn sweep(&self, mut expired: impl FnMut(&Value) -> bool) -> usize {
        let mut w = self.write();
        let doomed: Vec<usize> = {
            let table = w.table();
            table.full().filter(|&i| expired(&table.value(i))).collect()
        };
        for &i in &doomed {
            w.delete(i);
        }
        let capacity = w.table().capacity();
        if capacity > MIN_GROUPS * GROUP && (w.counts.len * 4 < capacity || w.counts.deleted * 4 > capacity) {
            w.rebuild();
        }
        doomed.len()
    }

    /// Calls `f` with every key and value, under the shard's write lock:
    /// writers of this shard wait, readers do not.
    pub fn for_each(&self, mut f: impl FnMut(&Key, &Value)) {
        let w = self.write();
        let table = w.table();
        for i in table.full() {
            f(&table.key(i), &table.value(i));
        }
    }

    /// Live values.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the shard holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the shard's current table.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader or writer can hold the table.
        unsafe {
            let table = self.table.load(Ordering::Relaxed, epoch::unprotected());
            drop(table.into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn key(n: u64) -> Key {
        // Spread like a digest would be.
        let a = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555;
        let b = (n ^ 0xABCD).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        [a, b]
    }

    #[test]
    fn matches_are_exact_for_empty_and_free() {
        let ctrl = u64::from_le_bytes([EMPTY, 0x12, DELETED, 0x7F, EMPTY, 0, 0x12, DELETED]);
        assert_eq!(match_empty(ctrl), 0x0000_0080_0000_0080);
        assert_eq!(match_free(ctrl), 0x8000_0080_0080_0080);
        let m = match_byte(ctrl, 0x12);
        assert!(m & 0x8000 != 0 && m & 0x0080_0000_0000_0000 != 0);
    }

    #[test]
    fn behaves_like_a_hash_map() {
        let shard = Shard::default();
        let mut model: HashMap<u64, Value> = HashMap::new();
        let mut x = 1u64;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = x % 3_000;
            match x % 5 {
                0 | 1 => {
                    let v = [step, n, !step, 7];
                    shard.insert(&key(n), &v);
                    model.insert(n, v);
                }
                2 => assert_eq!(shard.remove(&key(n)), model.remove(&n), "remove {n}"),
                3 => {
                    let changed = shard.update(&key(n), |mut v| {
                        v[3] += 1;
                        Some(v)
                    });
                    assert_eq!(changed, model.get_mut(&n).map(|v| v[3] += 1).is_some());
                }
                _ => assert_eq!(shard.get(&key(n)), model.get(&n).copied(), "get {n}"),
            }
            assert_eq!(shard.len(), model.len());
        }
        for n in 0..3_000 {
            assert_eq!(shard.get(&key(n)), model.get(&n).copied());
        }
        // Sweep the odd ones; the table shrinks with them.
        let before = shard.bytes();
        let odd = model.values().filter(|v| v[0] % 2 == 1).count();
        assert_eq!(shard.sweep(|v| v[0] % 2 == 1), odd);
        model.retain(|_, v| v[0] % 2 == 0);
        for n in 0..3_000 {
            assert_eq!(shard.get(&key(n)), model.get(&n).copied());
        }
        assert_eq!(shard.sweep(|_| true), model.len());
        assert!(shard.is_empty() && shard.bytes() < before && shard.get(&key(1)).is_none());
    }

    #[test]
    fn tombstones_never_fill_the_table() {
        // Insert-remove churn at a constant size must not run out of free
        // slots or grow without bound.
        let shard = Shard::default();
        for n in 0..100_000 {
            shard.insert(&key(n), &[n, 0, 0, 0]);
            if n >= 50 {
                assert!(shard.remove(&key(n - 50)).is_some());
            }
        }
        assert_eq!(shard.len(), 50);
        assert!(shard.bytes() <= 128 * SLOT_BYTES, "{} bytes for 50 records", shard.bytes());
    }

    #[test]
    fn readers_never_see_a_torn_value() {
        // Writers store values whose four words agree; concurrent readers
        // must only ever see agreeing words, while inserts make the table
        // grow and removals shrink it.
        let shard = Arc::new(Shard::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (shard, stop) = (shard.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for n in 0..64 {
                        if let Some(v) = shard.get(&key(n)) {
                            assert!(v.iter().all(|w| *w == v[0]), "torn value {v:?}");
                            seen += 1;
                        }
                    }
                }
                seen
            })
        };
        for round in 0..2_000u64 {
            for n in 0..64 {
                shard.insert(&key(n), &[round; 4]);
            }
            for n in 1_000..1_000 + round % 300 {
                shard.insert(&key(n), &[n; 4]);
            }
            shard.sweep(|v| v[0] >= 1_000);
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }
}
