//! The memory store's write-ahead log: refresh-token records (and their
//! retirements, removals and family revocations) survive a restart, graceful
//! or `kill -9`. Access tokens stay in memory only; they live minutes.
//!
//! - **Group commit.** A request appends its entries and waits until they
//!   are written and `fdatasync`ed; one writer thread takes everything
//!   queued meanwhile and makes it durable with one write and one sync, so
//!   the cost per grant falls as the load grows.
//! - **Framing.** Each entry is `len (u32 LE) · crc32 (u32 LE) · payload`.
//!   A torn tail (the process died mid-write) fails its check and is
//!   ignored, with everything after it.
//! - **Names, not indices.** Records are [`Portable`]: a restart may number
//!   clients, users and scopes differently.
//! - **Compaction.** At start the log is replayed into the map and rewritten
//!   as a snapshot of what is live. While serving, once the log has grown by
//!   twice the last snapshot (and at least [`COMPACT_MIN`]), a snapshot of
//!   the map is taken on another thread while appends go on; the writer then
//!   replaces the log (atomically: temp file, fsync, rename) with the
//!   snapshot followed by everything appended since it began. Map changes
//!   are made before their entries are queued, so an entry queued before
//!   the snapshot began is in the snapshot, and one queued after is
//!   replayed on top of it.

use super::portable::Portable;
use super::{ShardedTokenMap, StoreError};
use crate::app::Live;
use crossbeam_channel::{Receiver, Sender};
use ropc_core::{FamilyId, TokenKey, TokenKind};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The log is compacted once it grew by at least this much since the last
/// snapshot (and by twice the snapshot's size).
pub const COMPACT_MIN: u64 = 16 << 20;

/// Entries queued at most; a full queue makes requests wait (never drop).
const QUEUE: usize = 65_536;

/// Largest entry accepted on replay (a corrupt length cannot make us
/// allocate gigabytes).
const MAX_ENTRY: usize = 1 << 20;

const PUT: u8 = b'P';
const RETIRE: u8 = b'R';
const DELETE: u8 = b'D';
const FAMILY: u8 = b'F';

/// One change to the durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A refresh-token record under its key.
    Put(TokenKey, Portable),
    /// A refresh token retired by a rotation at this time.
    Retire(TokenKey, u64),
    /// A token removed (revoked).
    Delete(TokenKey),
    /// A family revoked until this time.
    RevokeFamily(u64, u64),
}

impl Entry {
    fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        match self {
            Entry::Put(key, record) => {
                out.push(PUT);
                out.extend_from_slice(&key.0);
                out.extend_from_slice(&record.encode());
            }
            Entry::Retire(key, at) => {
                out.push(RETIRE);
                out.extend_from_slice(&key.0);
                out.extend_from_slice(&at.to_le_bytes());
            }
            Entry::Delete(key) => {
                out.push(DELETE);
                out.extend_from_slice(&key.0);
            }
            Entry::RevokeFamily(family, until) => {
                out.push(FAMILY);
                out.extend_from_slice(&family.to_le_bytes());
                out.extend_from_slice(&until.to_le_bytes());
            }
        }
        out
    }

    /// The framed bytes: length, checksum, payload.
    pub fn frame(&self) -> Vec<u8> {
        let payload = self.payload();
        let mut out = Vec::with_capacity(8 + payload.len());
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    fn parse(payload: &[u8]) -> Option<Entry> {
        let (&tag, rest) = payload.split_first()?;
        let key = |b: &[u8]| -> Option<TokenKey> { Some(TokenKey(b.get(..TokenKey::LEN)?.try_into().ok()?)) };
        let u64_at =
            |b: &[u8], at: usize| -> Option<u64> { Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)) };
        match tag {
            PUT => Some(Entry::Put(key(rest)?, Portable::decode(rest.get(TokenKey::LEN..)?)?)),
            RETIRE if rest.len() == TokenKey::LEN + 8 => Some(Entry::Retire(key(rest)?, u64_at(rest, TokenKey::LEN)?)),
            DELETE if rest.len() == TokenKey::LEN => Some(Entry::Delete(key(rest)?)),
            FAMILY if rest.len() == 16 => Some(Entry::RevokeFamily(u64_at(rest, 0)?, u64_at(rest, 8)?)),
            _ => None,
        }
    }
}

/// Reads framed entries until the end or the first torn or corrupt one.
/// Returns them and how many bytes were valid.
pub fn read_entries(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_ENTRY {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(entry) = Entry::parse(payload) else { break };
        entries.push(entry);
        at += 8 + len;
    }
    (entries, at)
}

/// The state a sequence of entries leaves, with what expired by `now`
/// dropped.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Refresh-token records by key.
    pub records: HashMap<[u8; 16], Portable>,
    /// Revoked families and until when.
    pub families: HashMap<u64, u64>,
}

impl Replayed {
    /// Applies `entries` in order.
    pub fn apply(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            match e {
                Entry::Put(key, record) => {
                    self.records.insert(key.0, record);
                }
                Entry::Retire(key, at) => {
                    if let Some(r) = self.records.get_mut(&key.0) {
                        if r.retired_at == 0 {
                            r.retired_at = at;
                        }
                    }
                }
                Entry::Delete(key) => {
                    self.records.remove(&key.0);
                }
                Entry::RevokeFamily(family, until) => {
                    let e = self.families.entry(family).or_insert(until);
                    *e = (*e).max(until);
                }
            }
        }
    }

    /// Drops records and revocations that ended by `now`.
    pub fn expire(&mut self, now: u64) {
        self.records.retain(|_, r| r.expires_at > now);
        self.families.retain(|_, until| *until > now);
    }
}

/// Framed entries to append (and how many), and who waits for them
/// (true: durable).
struct Append(Vec<u8>, u64, tokio::sync::oneshot::Sender<bool>);

/// Builds a snapshot: every live refresh record and revocation, framed.
pub type SnapshotFn = Box<dyn Fn() -> Vec<u8> + Send + Sync>;

/// The log's handle: queue entries and wait until they are durable.
pub struct Wal {
    tx: Sender<Append>,
    path: PathBuf,
    stats: Arc<Stats>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes in the log file now.
    pub bytes: AtomicU64,
    /// fdatasync calls since start.
    pub syncs: AtomicU64,
    /// Entries appended since start.
    pub entries: AtomicU64,
    /// Compactions since start.
    pub compactions: AtomicU64,
    /// Failed writes since start.
    pub failures: AtomicU64,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wal({})", self.path.display())
    }
}

impl Wal {
    /// Replays the log at `path` and hands the state to `restore`,
    /// rewrites the log as `snapshot()` (which should by then reflect the
    /// restored state), and starts the writer thread. The log is compacted
    /// again whenever it grew by `compact_min` and twice the last snapshot.
    pub fn open(
        path: &Path,
        restore: impl FnOnce(Replayed),
        snapshot: SnapshotFn,
        compact_min: u64,
    ) -> io::Result<Wal> {
        let now = crate::app::now();
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (entries, valid) = read_entries(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                ignored_bytes = bytes.len() - valid,
                "the token log ends in a torn or corrupt entry (a crash mid-write); ignored from there"
            );
        }
        let mut state = Replayed::default();
        state.apply(entries);
        state.expire(now);
        restore(state);
        let snap = snapshot();
        crate::fsutil::write_atomic(path, &snap, 0o600)?;
        let file = OpenOptions::new().append(true).open(path)?;
        let stats = Arc::new(Stats::default());
        stats.bytes.store(snap.len() as u64, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let (snap_tx, snap_rx) = crossbeam_channel::bounded(1);
        let writer = Writer {
            file,
            path: path.to_owned(),
            rx,
            snap_tx,
            snap_rx,
            stats: Arc::clone(&stats),
            snapshot: Arc::new(snapshot),
            last_snapshot: snap.len() as u64,
            since_snapshot: 0,
            compact_min,
            compacting: None,
        };
        std::thread::Builder::new().name("ropc-token-log".into()).spawn(move || writer.run())?;
        Ok(Wal { tx, path: path.to_owned(), stats })
    }

    /// Appends `entries` and waits until they are durable.
    pub async fn append(&self, entries: &[Entry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(entries.len() * 128);
        for e in entries {
            bytes.extend_from_slice(&e.frame());
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        let tx = self.tx.clone();
        let msg = Append(bytes, entries.len() as u64, done);
        // A full queue waits, off the async workers.
        if let Err(crossbeam_channel::TrySendError::Full(msg)) = tx.try_send(msg) {
            tokio::task::spawn_blocking(move || tx.send(msg)).await.map_err(|_| StoreError)?.map_err(|_| StoreError)?;
        }
        match wait.await {
            Ok(true) => Ok(()),
            _ => Err(StoreError),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

struct Writer {
    file: File,
    path: PathBuf,
    rx: Receiver<Append>,
    /// Snapshots built by the compaction thread.
    snap_tx: Sender<io::Result<Vec<u8>>>,
    snap_rx: Receiver<io::Result<Vec<u8>>>,
    stats: Arc<Stats>,
    snapshot: Arc<SnapshotFn>,
    last_snapshot: u64,
    since_snapshot: u64,
    compact_min: u64,
    /// While a snapshot is being built: the bytes appended since it began.
    compacting: Option<Vec<u8>>,
}

impl Writer {
    fn run(mut self) {
        // Ends when the app's handle (the only sender of appends) is gone.
        loop {
            crossbeam_channel::select! {
                recv(self.rx) -> first => {
                    let Ok(first) = first else { break };
                    let mut bytes = Vec::new();
                    let mut count = 0;
                    let mut waiters = Vec::new();
                    for Append(b, n, w) in std::iter::once(first).chain(self.rx.try_iter().take(4096)) {
                        bytes.extend_from_slice(&b);
                        count += n;
                        waiters.push(w);
                    }
                    let ok = self.write(&bytes, count);
                    for w in waiters {
                        let _ = w.send(ok);
                    }
                    self.maybe_compact();
                }
                recv(self.snap_rx) -> snapshot => {
                    if let Ok(s) = snapshot {
                        self.finish_compaction(s);
                    }
                }
            }
        }
    }

    fn write(&mut self, bytes: &[u8], count: u64) -> bool {
        let result = self.file.write_all(bytes).and_then(|()| self.file.sync_data());
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.stats.entries.fetch_add(count, Ordering::Relaxed);
                self.stats.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                self.since_snapshot += bytes.len() as u64;
                if let Some(since) = &mut self.compacting {
                    since.extend_from_slice(bytes);
                }
                true
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(file = %self.path.display(), error = %e, "cannot write the token log: grants fail with 503");
                false
            }
        }
    }

    fn maybe_compact(&mut self) {
        if self.compacting.is_some() || self.since_snapshot < self.compact_min.max(2 * self.last_snapshot) {
            return;
        }
        self.compacting = Some(Vec::new());
        let (snapshot, tx) = (Arc::clone(&self.snapshot), self.snap_tx.clone());
        let spawned = std::thread::Builder::new().name("ropc-token-snapshot".into()).spawn(move || {
            let _ = tx.send(Ok(snapshot()));
        });
        if let Err(e) = spawned {
            self.finish_compaction(Err(e));
        }
    }

    fn finish_compaction(&mut self, snapshot: io::Result<Vec<u8>>) {
        let Some(since) = self.compacting.take() else { return };
        let result = snapshot.and_then(|mut snap| {
            let snap_len = snap.len() as u64;
            snap.extend_from_slice(&since);
            crate::fsutil::write_atomic(&self.path, &snap, 0o600)?;
            let file = OpenOptions::new().append(true).open(&self.path)?;
            Ok((file, snap_len, snap.len() as u64))
        });
        match result {
            Ok((file, snap_len, total)) => {
                self.file = file;
                self.last_snapshot = snap_len;
                self.since_snapshot = total - snap_len;
                self.stats.bytes.store(total, Ordering::Relaxed);
                self.stats.compactions.fetch_add(1, Ordering::Relaxed);
                tracing::info!(file = %self.path.display(), bytes = total, "token log compacted");
            }
            Err(e) => {
                // The old log is intact (the replace is atomic); try later.
                self.since_snapshot = 0;
                tracing::error!(file = %self.path.display(), error = %e, "cannot compact the token log");
            }
        }
    }
}

/// Puts replayed records into `map`, as `live` numbers clients, users and
/// scopes (records of ones no longer configured are dropped), and logs what
/// came back.
pub fn restore_into(map: &ShardedTokenMap, live: &Live, state: Replayed, path: &Path) {
    let (mut restored, mut dropped) = (0usize, 0usize);
    for (key, record) in &state.records {
        match record.to_record(live) {
            Some(r) => {
                map.insert(TokenKey(*key), r);
                restored += 1;
            }
            None => dropped += 1,
        }
    }
    for (family, until) in &state.families {
        map.revoke_family_now(FamilyId(*family), *until);
    }
    tracing::info!(
        file = %path.display(),
        refresh_tokens = restored,
        dropped_for_removed_clients_or_users = dropped,
        revoked_families = state.families.len(),
        "token log replayed"
    );
}

/// The snapshot of `map` as framed entries: every refresh record (with its
/// retirement) and every family revocation, named as `live` names them.
pub fn snapshot_of(map: &ShardedTokenMap, live: &Live) -> Vec<u8> {
    let mut out = Vec::new();
    let now = crate::app::now();
    map.for_each(|key, record| {
        if record.kind == TokenKind::Refresh && record.expires_at > now {
            if let Some(p) = Portable::from_record(&record, live) {
                out.extend_from_slice(&Entry::Put(key, p).frame());
            }
        }
    });
    for (family, until) in map.revoked_list() {
        if until > now {
            out.extend_from_slice(&Entry::RevokeFamily(family.0, until).frame());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portable(expires_at: u64) -> Portable {
        Portable {
            family: 9,
            kind: TokenKind::Refresh,
            retired_at: 0,
            issued_at: 1,
            expires_at,
            client: "legacy".into(),
            scope: "read".into(),
            user: Some("alice".into()),
        }
    }

    /// The durable state of a fake store, kept in step with the log the way
    /// the app keeps its map: change first, then append.
    #[derive(Default)]
    struct Fake {
        records: parking_lot::Mutex<HashMap<[u8; 16], Portable>>,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_under_concurrent_appends_keeps_exactly_the_live_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.wal");
        let fake = Arc::new(Fake::default());
        let open = |fake: &Arc<Fake>| {
            let (f1, f2) = (Arc::clone(fake), Arc::clone(fake));
            let restore = move |state: Replayed| *f1.records.lock() = state.records;
            let snapshot: SnapshotFn = Box::new(move || {
                let records = f2.records.lock().clone();
                records.into_iter().flat_map(|(k, p)| Entry::Put(TokenKey(k), p).frame()).collect()
            });
            Wal::open(&path, restore, snapshot, 4096).unwrap()
        };
        let wal = Arc::new(open(&fake));
        let far = crate::app::now() + 3600;
        let mut tasks = Vec::new();
        for t in 0..4u8 {
            let (wal, fake) = (Arc::clone(&wal), Arc::clone(&fake));
            tasks.push(tokio::spawn(async move {
                for i in 0..400u16 {
                    let mut key = [t; 16];
                    key[..2].copy_from_slice(&i.to_le_bytes());
                    let entry = if i % 3 == 2 {
                        // Delete the one put just before.
                        key[..2].copy_from_slice(&(i - 1).to_le_bytes());
                        fake.records.lock().remove(&key);
                        Entry::Delete(TokenKey(key))
                    } else {
                        let p = portable(far);
                        fake.records.lock().insert(key, p.clone());
                        Entry::Put(TokenKey(key), p)
                    };
                    wal.append(&[entry]).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(wal.stats().compactions.load(Ordering::Relaxed) > 0, "the log was compacted meanwhile");
        let expected = fake.records.lock().clone();
        assert_eq!(expected.len(), 4 * (400 - 2 * 133));
        drop(wal);
        // A restart sees exactly the state the appends left.
        let again = Arc::new(Fake::default());
        let _wal = open(&again);
        assert_eq!(*again.records.lock(), expected);
    }

    #[test]
    fn entries_round_trip_and_a_torn_tail_is_cut_off() {
        let entries = vec![
            Entry::Put(TokenKey([1; 16]), portable(100)),
            Entry::Retire(TokenKey([1; 16]), 50),
            Entry::Put(TokenKey([2; 16]), portable(200)),
            Entry::Delete(TokenKey([2; 16])),
            Entry::RevokeFamily(9, 300),
        ];
        let mut bytes: Vec<u8> = entries.iter().flat_map(Entry::frame).collect();
        let whole = bytes.len();
        assert_eq!(read_entries(&bytes), (entries.clone(), whole));
        // Torn mid-entry: everything before it survives.
        bytes.extend_from_slice(&Entry::Put(TokenKey([3; 16]), portable(100)).frame()[..20]);
        assert_eq!(read_entries(&bytes), (entries.clone(), whole));
        // A flipped bit fails the checksum.
        let mut corrupt: Vec<u8> = entries.iter().flat_map(Entry::frame).collect();
        corrupt[12] ^= 1;
        assert_eq!(read_entries(&corrupt).0, vec![]);
        // A huge length is not believed.
        assert_eq!(read_entries(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]).0, vec![]);

        let mut state = Replayed::default();
        state.apply(entries);
        assert_eq!(state.records.len(), 1);
        assert_eq!(state.records[&[1; 16]].retired_at, 50);
        assert_eq!(state.families[&9], 300);
        state.expire(100);
        assert!(state.records.is_empty(), "expired at 100");
        assert_eq!(state.families.len(), 1);
    }
}
