//! The memory store's write-ahead log: refresh-token records (and their
//! retirements, removals and family revocations) survive a restart, graceful
//! or `kill -9`. Access tokens stay in memory only; they live minutes.
//!
//! - **Durable when answered.** A request writes its entries with one
//!   `write(2)` before it answers, so a crash of the process (`kill -9`)
//!   loses nothing it acknowledged. With [`Sync::Always`] it also waits for
//!   `fdatasync` (group commit: one sync thread takes every append waiting
//!   and syncs once for all); with [`Sync::Interval`] (the default) a
//!   background thread syncs at that interval, bounding what a power cut can
//!   lose, as Redis's `appendfsync everysec` does.
//! - **Framing.** Each entry is `len (u32 LE) · crc32 (u32 LE) · payload`.
//!   A torn tail (the process died mid-write) fails its check and is
//!   ignored, with everything after it.
//! - **Names, not indices.** Records are [`Portable`]: a restart may number
//!   clients, users and scopes differently.
//! - **Compaction.** At start the log is replayed into the map and rewritten
//!   as a snapshot of what is live. While serving, once the log has grown by
//!   twice the last snapshot (and at least [`COMPACT_MIN`]), a snapshot of
//!   the map is taken on another thread while appends go on; the log is then
//!   replaced (atomically: temp file, fsync, rename) by the snapshot
//!   followed by everything appended since it began. Map changes
//!   are made before their entries are queued, so an entry queued before
//!   the snapshot began is in the snapshot, and one queued after is
//!   replayed on top of it. Appends wait only while the compaction switches
//!   files, not while it syncs its new file (with [`Sync::Always`], also
//!   while it syncs the last appends it copies, and the directory): see
//!   [`Compaction`].

use super::portable::Portable;
use super::{ShardedTokenMap, StoreError};
use crate::app::Live;
use crossbeam_channel::{Receiver, Sender};
use ropc_core::{FamilyId, TokenKey, TokenKind};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The log is compacted once it grew by at least this much since the last
/// snapshot (and by twice the snapshot's size).
pub const COMPACT_MIN: u64 = 16 << 20;

/// Appends waiting for a group commit at most; more wait (never drop).
const QUEUE: usize = 65_536;

/// A batch that waited this long between its first append and the end of
/// its write is logged as a warning (grants waited for it). A write takes
/// well under a millisecond; 50 ms catches the filesystem holding one up
/// (seen: 50-100 ms while syncs took 0.25 s or more), and a disk stalled
/// for seconds logs about two lines per stall, as the writes queue behind
/// one.
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(50);

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
        let mut out = Vec::with_capacity(160);
        frame_into(&mut out, |o| o.extend_from_slice(&self.payload()));
        out
    }

    /// The framed `Put` of `record` under `key`, appended to `out`, straight
    /// from the record (see [`Portable::encode_record`]); false if its
    /// client or user is no longer configured.
    pub fn frame_put(out: &mut Vec<u8>, key: &TokenKey, record: &ropc_core::TokenRecord, live: &Live) -> bool {
        let mut ok = true;
        frame_into(out, |o| {
            o.push(PUT);
            o.extend_from_slice(&key.0);
            ok = Portable::encode_record(record, live, o);
        });
        ok
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

/// Appends one frame: `payload` writes the payload, then its length and
/// checksum are filled in before it.
fn frame_into(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    payload(out);
    let len = u32::try_from(out.len() - start - 8).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads framed entries until the end or the first torn or corrupt frame
/// (whole frames of an unknown kind are skipped). Returns them and how many
/// bytes were valid.
pub fn read_entries(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        // No entry is empty (each has its kind's tag), and an empty payload
        // passes its check (crc32 of nothing is 0): zeros, as a file grown
        // but never written leaves, end the log here like any torn tail.
        if len == 0 || len > MAX_ENTRY {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        // A whole frame this version cannot read (a newer kind of entry) is
        // skipped; the ones after it still count.
        if let Some(entry) = Entry::parse(payload) {
            entries.push(entry);
        }
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

/// When an append counts as done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// Once `fdatasync` returned (group commit): nothing acknowledged is
    /// lost, even to a power cut.
    Always,
    /// Once `write(2)` returned: in the kernel's page cache, so a crash of
    /// the process (`kill -9`) loses nothing; a power cut or kernel crash
    /// loses at most the last interval, which a background thread syncs.
    Interval(std::time::Duration),
}

/// Builds a snapshot: every live refresh record and revocation, framed.
pub type SnapshotFn = Box<dyn Fn() -> Vec<u8> + Send + std::marker::Sync>;

/// The log's handle: append entries, durable as [`Sync`] says. Clones
/// share the log.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<parking_lot::Mutex<Inner>>,
    /// Appends waiting to be written, and who writes them.
    batches: Arc<Batches>,
    path: PathBuf,
    mode: Sync,
    /// Group commit ([`Sync::Always`]): appends waiting for a sync.
    waiters: Option<Sender<(u64, tokio::sync::oneshot::Sender<bool>)>>,
    snapshot: Arc<SnapshotFn>,
    compact_min: u64,
    stats: Arc<Stats>,
    /// Tests: runs in a compaction just before it syncs the appends it
    /// copied (to show appends go on meanwhile).
    #[cfg(test)]
    before_tail_sync: Option<Arc<dyn Fn() + Send + std::marker::Sync>>,
}

/// Appends are written in batches: the first request to find nobody
/// writing becomes the writer and writes everything queued (its own bytes
/// and those queued meanwhile) with one `write(2)` per batch; the others
/// wait for their batch. Under load, one system call serves many grants,
/// with no thread hand-off.
#[derive(Default)]
struct Batches {
    queue: parking_lot::Mutex<Queue>,
    /// The last batch written (or failed).
    done: AtomicU64,
    /// Batches whose write failed (rare; trimmed, and every batch up to
    /// `failed_floor` counts as failed once trimmed ones are forgotten).
    failed: parking_lot::Mutex<std::collections::BTreeSet<u64>>,
    failed_floor: AtomicU64,
    any_failed: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    entries: u64,
    /// The batch being filled (the next to be written).
    batch: u64,
    writing: bool,
    /// When the batch being filled got its first bytes.
    since: Option<std::time::Instant>,
}

/// Most batches one writer writes before handing the rest to a task, so
/// that its own request is not held by a stream of others.
const BATCHES_PER_WRITER: usize = 8;

/// The first appender's duty to write the queued batches, done when it is
/// dropped: at once after its yield, or when its request is dropped during
/// the yield.
struct WriterDuty<'a>(&'a Wal);

impl Drop for WriterDuty<'_> {
    fn drop(&mut self) {
        self.0.write_batches();
    }
}

/// The file and the compaction state, under one lock: appends are one
/// `write(2)` each, in order.
struct Inner {
    file: File,
    /// Bytes appended since the start (a sequence number for syncs).
    written: u64,
    /// `written` when a sync last completed.
    synced: u64,
    /// While a snapshot is being built: the bytes appended since it began.
    compacting: Option<Vec<u8>>,
    since_snapshot: u64,
    last_snapshot: u64,
    /// The last write failed, and its torn bytes may still be in the file:
    /// the next write cuts them off first (and fails if it cannot).
    broken: bool,
    /// The file's length after the last whole write.
    good_len: u64,
    /// Counts the files the log was written to: a compaction puts a new
    /// one in place, and a sync of the one before says nothing about it.
    generation: u64,
    /// [`Sync::Always`]: a compaction renamed its file in this directory
    /// but could not sync the directory; syncs retry it, and nothing is
    /// answered as synced until it succeeds.
    dir_unsynced: Option<PathBuf>,
    _lock: crate::fsutil::FileLock,
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
    /// Failed writes or syncs since start.
    pub failures: AtomicU64,
    /// How long each batch's write took, the wait for the log's lock
    /// included (a compaction switching files, or a `write(2)` the filesystem
    /// holds up, shows here).
    pub write_time: crate::metrics::Histogram,
    /// How long each `fdatasync` took.
    pub sync_time: crate::metrics::Histogram,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wal({}, {:?})", self.path.display(), self.mode)
    }
}

impl Wal {
    /// Replays the log at `path` and hands the state to `restore`,
    /// rewrites the log as `snapshot()` (which should by then reflect the
    /// restored state), and starts the sync thread. The log is compacted
    /// again whenever it grew by `compact_min` and twice the last snapshot.
    pub fn open(
        path: &Path,
        restore: impl FnOnce(Replayed),
        snapshot: SnapshotFn,
        compact_min: u64,
        mode: Sync,
    ) -> io::Result<Wal> {
        // One process per log: another's renames would strand our writes.
        let lock = crate::fsutil::lock(path, false).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::other(format!(
                    "another ropc process uses this token log (it holds {}); give each instance its own [token_store] file",
                    crate::fsutil::lock_path(path).display()
                ))
            } else {
                e
            }
        })?;
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
            // A crash mid-write leaves a short torn tail; anything longer is
            // damage: keep a copy before the log is rewritten.
            let copy = path.with_extension("corrupt");
            let kept = bytes.len() - valid > MAX_ENTRY + 8 && std::fs::write(&copy, &bytes).is_ok();
            tracing::warn!(
                file = %path.display(),
                ignored_bytes = bytes.len() - valid,
                copy = %if kept { copy.display().to_string() } else { String::new() },
                "the token log ends in a torn or corrupt entry; ignored from there"
            );
        }
        let mut state = Replayed::default();
        state.apply(entries);
        state.expire(now);
        restore(state);
        let snap = snapshot();
        let mut staged = crate::fsutil::Staged::new(path, 0o600)?;
        staged.file().write_all(&snap)?;
        let file = staged.commit()?;
        let stats = Arc::new(Stats::default());
        stats.bytes.store(snap.len() as u64, Ordering::Relaxed);
        let inner = Arc::new(parking_lot::Mutex::new(Inner {
            file,
            written: 0,
            synced: 0,
            compacting: None,
            since_snapshot: 0,
            last_snapshot: snap.len() as u64,
            broken: false,
            good_len: snap.len() as u64,
            generation: 0,
            dir_unsynced: None,
            _lock: lock,
        }));
        let waiters = match mode {
            Sync::Always => {
                let (tx, rx) = crossbeam_channel::bounded(QUEUE);
                let (inner, stats) = (Arc::clone(&inner), Arc::clone(&stats));
                std::thread::Builder::new()
                    .name("ropc-token-sync".into())
                    .spawn(move || group_commit(&inner, &stats, &rx))?;
                Some(tx)
            }
            Sync::Interval(every) => {
                let (weak, stats) = (Arc::downgrade(&inner), Arc::clone(&stats));
                std::thread::Builder::new().name("ropc-token-sync".into()).spawn(move || {
                    // Ends with the log.
                    while let Some(inner) = weak.upgrade() {
                        sync_now(&inner, &stats);
                        drop(inner);
                        std::thread::sleep(every);
                    }
                })?;
                None
            }
        };
        let batches = Arc::new(Batches::default());
        batches.queue.lock().batch = 1;
        Ok(Wal {
            inner,
            batches,
            path: path.to_owned(),
            mode,
            waiters,
            snapshot: Arc::new(snapshot),
            compact_min,
            stats,
            #[cfg(test)]
            before_tail_sync: None,
        })
    }

    /// Appends `entries`; returns once they are durable as the [`Sync`]
    /// mode says.
    pub async fn append(&self, entries: &[Entry]) -> Result<(), StoreError> {
        let mut bytes = Vec::with_capacity(entries.len() * 128);
        for e in entries {
            bytes.extend_from_slice(&e.frame());
        }
        self.append_framed(bytes, entries.len() as u64).await
    }

    /// Appends `count` entries already framed into `bytes`.
    pub async fn append_framed(&self, bytes: Vec<u8>, count: u64) -> Result<(), StoreError> {
        if count == 0 {
            return Ok(());
        }
        let (batch, lead) = {
            let mut q = self.batches.queue.lock();
            if q.since.is_none() {
                q.since = Some(std::time::Instant::now());
            }
            q.bytes.extend_from_slice(&bytes);
            q.entries += count;
            let lead = !q.writing;
            q.writing = true;
            (q.batch, lead)
        };
        if lead {
            // The duty to write is held by a guard: if this request is
            // dropped while it yields (its client hung up), the guard still
            // writes. Otherwise `writing` would stay set, nobody would write
            // again, and every later grant would wait for ever.
            let duty = WriterDuty(self);
            // Let the other requests that are ready run first: on a busy
            // core they append their entries meanwhile, and one write then
            // carries them all (without this, one core serving many
            // connections writes one grant at a time).
            tokio::task::yield_now().await;
            drop(duty);
        }
        loop {
            let notified = self.batches.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.batches.done.load(Ordering::Acquire) >= batch {
                break;
            }
            notified.await;
        }
        if self.batches.any_failed.load(Ordering::Acquire)
            && (batch <= self.batches.failed_floor.load(Ordering::Acquire)
                || self.batches.failed.lock().contains(&batch))
        {
            return Err(StoreError);
        }
        let Some(waiters) = &self.waiters else { return Ok(()) };
        let seq = self.inner.lock().written;
        let (done, wait) = tokio::sync::oneshot::channel();
        let msg = (seq, done);
        if let Err(crossbeam_channel::TrySendError::Full(msg)) = waiters.try_send(msg) {
            // A full queue waits, off the async workers.
            let tx = waiters.clone();
            tokio::task::spawn_blocking(move || tx.send(msg)).await.map_err(|_| StoreError)?.map_err(|_| StoreError)?;
        }
        match wait.await {
            Ok(true) => Ok(()),
            _ => Err(StoreError),
        }
    }

    /// Writes queued batches, at most [`BATCHES_PER_WRITER`]; hands the
    /// rest, if any, to a task that yields between batches.
    fn write_batches(&self) {
        for _ in 0..BATCHES_PER_WRITER {
            if !self.write_queued() {
                return;
            }
        }
        // Still more: a task carries on, so that this request can answer.
        // (A runtime shutting down may drop that task unrun, which loses
        // nothing its requests still wait for; outside any runtime, the
        // rest is written here.)
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            while self.write_queued() {}
            return;
        };
        let handoff = self.clone();
        runtime.spawn(async move {
            while handoff.write_queued() {
                tokio::task::yield_now().await;
            }
        });
    }

    /// Writes what is queued as one batch and wakes its waiters; false (and
    /// nobody writing any more) when nothing was queued.
    fn write_queued(&self) -> bool {
        let (bytes, entries, id, since) = {
            let mut q = self.batches.queue.lock();
            if q.bytes.is_empty() {
                q.writing = false;
                return false;
            }
            let id = q.batch;
            q.batch += 1;
            (std::mem::take(&mut q.bytes), std::mem::take(&mut q.entries), id, q.since.take())
        };
        if !self.write(&bytes, entries, since) {
            let mut failed = self.batches.failed.lock();
            failed.insert(id);
            while failed.len() > 4096 {
                if let Some(trimmed) = failed.pop_first() {
                    self.batches.failed_floor.fetch_max(trimmed, Ordering::Release);
                }
            }
            self.batches.any_failed.store(true, Ordering::Release);
        }
        self.batches.done.store(id, Ordering::Release);
        self.batches.notify.notify_waiters();
        true
    }

    /// Writes one batch, queued since `since`: one `write(2)`. A failed
    /// write is cut off the file again, so that no torn entry sits before
    /// later ones. A batch whose grants waited long is logged, with where
    /// the time went.
    fn write(&self, bytes: &[u8], entries: u64, since: Option<std::time::Instant>) -> bool {
        let started = std::time::Instant::now();
        let mut inner = self.inner.lock();
        let lock_wait = started.elapsed();
        let written = self.write_locked(&mut inner, bytes, entries);
        drop(inner);
        let took = started.elapsed();
        self.stats.write_time.observe(took);
        let waited = since.map_or(took, |s| s.elapsed());
        if waited >= SLOW_WRITE {
            tracing::warn!(
                file = %self.path.display(),
                waited_ms = waited.as_millis() as u64,
                before_write_ms = waited.saturating_sub(took).as_millis() as u64,
                lock_wait_ms = lock_wait.as_millis() as u64,
                write_ms = took.saturating_sub(lock_wait).as_millis() as u64,
                bytes = bytes.len(),
                "grants waited long for the token log"
            );
        }
        written
    }

    fn write_locked(&self, inner: &mut Inner, bytes: &[u8], entries: u64) -> bool {
        if inner.broken {
            // After a failed write: only append once the torn bytes are cut
            // off, or replay would stop before what follows.
            let good = inner.good_len;
            let whole = inner.file.set_len(good).and_then(|()| inner.file.metadata()).is_ok_and(|m| m.len() == good);
            if !whole {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            inner.broken = false;
        }
        if let Err(e) = inner.file.write_all(bytes) {
            let good = inner.good_len;
            let _ = inner.file.set_len(good);
            inner.broken = true;
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(file = %self.path.display(), error = %e, "cannot write the token log: grants fail with 503");
            return false;
        }
        inner.good_len += bytes.len() as u64;
        inner.written += bytes.len() as u64;
        inner.since_snapshot += bytes.len() as u64;
        if let Some(since) = &mut inner.compacting {
            since.extend_from_slice(bytes);
        }
        self.stats.entries.fetch_add(entries, Ordering::Relaxed);
        self.stats.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.maybe_compact(inner);
        true
    }

    fn maybe_compact(&self, inner: &mut Inner) {
        if inner.compacting.is_some() || inner.since_snapshot < self.compact_min.max(2 * inner.last_snapshot) {
            return;
        }
        inner.compacting = Some(Vec::new());
        let job = Compaction {
            snapshot: Arc::clone(&self.snapshot),
            inner: Arc::downgrade(&self.inner),
            path: self.path.clone(),
            stats: Arc::clone(&self.stats),
            mode: self.mode,
            #[cfg(test)]
            before_tail_sync: self.before_tail_sync.clone(),
        };
        let spawned = std::thread::Builder::new().name("ropc-token-snapshot".into()).spawn(move || job.run());
        if let Err(e) = spawned {
            inner.compacting = None;
            inner.since_snapshot = 0;
            tracing::error!(error = %e, "cannot start the token log's compaction");
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Tests: `hook` runs in each compaction just before it syncs the
    /// appends it copied.
    #[cfg(test)]
    fn before_tail_sync(&mut self, hook: impl Fn() + Send + std::marker::Sync + 'static) {
        self.before_tail_sync = Some(Arc::new(hook));
    }
}

/// One compaction, on a thread of its own. Appends go on all along, and are
/// copied into `Inner::compacting` from the moment it begins:
///
/// 1. The snapshot is built and written to a temporary file.
/// 2. The appends copied so far are taken and written after it, and the
///    file is synced; again while more than [`SMALL_TAIL`] was copied
///    meanwhile (at most [`TAIL_ROUNDS`] rounds). The log's lock is held
///    only to take them.
/// 3. Under the lock: the appends copied since (little, unless the disk
///    kept every round's sync waiting) are written too, and the file is
///    renamed over the log; appends go to it from then on.
///    - [`Sync::Always`]: that tail is synced before the rename, and the
///      directory after it, still under the lock: those appends were
///      answered as synced, and no append may be answered before the
///      rename is durable. (If the directory sync fails, the sync thread
///      retries it, and answers nothing as synced until it succeeds.)
///    - [`Sync::Interval`]: the tail is synced at the sync thread's next
///      turn, like any append, and the directory by the compaction just
///      after it lets go of the lock. A power cut in between can lose that
///      tail (appends of the last moments, as between two syncs) if the
///      rename survives it.
/// 4. The file it replaced is closed, once appends go on.
///
/// A failure before the rename leaves the log in use as it was, and the
/// next append that finds the log grown enough tries again.
struct Compaction {
    snapshot: Arc<SnapshotFn>,
    /// Weak: a compaction does not keep a closed log (and its lock) alive.
    inner: std::sync::Weak<parking_lot::Mutex<Inner>>,
    path: PathBuf,
    stats: Arc<Stats>,
    mode: Sync,
    #[cfg(test)]
    before_tail_sync: Option<Arc<dyn Fn() + Send + std::marker::Sync>>,
}

/// Step 2 goes round again while more than this was copied during a round.
const SMALL_TAIL: usize = 64 << 10;

/// Rounds of step 2 at most.
const TAIL_ROUNDS: usize = 4;

/// Steps 1 and 2 done.
struct Stage {
    file: crate::fsutil::Staged,
    /// The snapshot's length.
    snap_len: u64,
    /// The file's length.
    len: u64,
    /// The log's `written` count the file holds (synced) up to.
    durable: u64,
}

impl Compaction {
    fn run(self) {
        let stage = self.stage();
        let Some(log) = self.inner.upgrade() else { return };
        let mut inner = log.lock();
        let locked = std::time::Instant::now();
        let Some(tail) = inner.compacting.take() else { return };
        let always = self.mode == Sync::Always;
        let mut stage = match stage {
            Ok(stage) => stage,
            Err(e) => return self.failed(inner, e),
        };
        let installed = stage.file.file().write_all(&tail).and_then(|()| {
            if always {
                stage.file.file().sync_data()?;
            }
            stage.file.install()
        });
        let file = match installed {
            Ok(file) => file,
            Err(e) => {
                self.failed(inner, e);
                // The temporary file goes only now, not while appends wait.
                drop(stage);
                return;
            }
        };
        if always {
            // A directory synced covers earlier renames in it too.
            inner.dir_unsynced = match crate::fsutil::sync_dir(stage.file.dir()) {
                Ok(()) => None,
                Err(e) => {
                    tracing::error!(error = %e, "cannot sync the token log's directory after a compaction: grants fail until a sync of it succeeds");
                    Some(stage.file.dir().to_owned())
                }
            };
        }
        let total = stage.len + tail.len() as u64;
        let old = std::mem::replace(&mut inner.file, file);
        inner.generation += 1;
        inner.good_len = total;
        inner.broken = false;
        inner.synced = if always { inner.written } else { stage.durable };
        inner.last_snapshot = stage.snap_len;
        inner.since_snapshot = total - stage.snap_len;
        self.stats.bytes.store(total, Ordering::Relaxed);
        drop(inner);
        drop(log);
        let held = locked.elapsed();
        // Closing the replaced file may free its blocks: not while appends
        // wait.
        drop(old);
        if !always {
            if let Err(e) = crate::fsutil::sync_dir(stage.file.dir()) {
                tracing::warn!(error = %e, "cannot sync the token log's directory after a compaction");
            }
        }
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            file = %self.path.display(),
            bytes = total,
            tail_bytes = tail.len(),
            appends_held_us = held.as_micros() as u64,
            "token log compacted"
        );
    }

    /// Nothing was renamed: the log in use is whole. Try again later.
    fn failed(&self, mut inner: parking_lot::MutexGuard<'_, Inner>, e: io::Error) {
        inner.since_snapshot = 0;
        drop(inner);
        tracing::error!(file = %self.path.display(), error = %e, "cannot compact the token log");
    }

    /// Steps 1 and 2.
    fn stage(&self) -> io::Result<Stage> {
        let snap = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.snapshot)()))
            .map_err(|_| io::Error::other("the snapshot panicked"))?;
        let mut file = crate::fsutil::Staged::new(&self.path, 0o600)?;
        file.file().write_all(&snap)?;
        let mut len = snap.len() as u64;
        let mut durable = 0;
        for round in 0..TAIL_ROUNDS {
            let since = {
                let log = self.inner.upgrade().ok_or_else(|| io::Error::other("the token log was closed"))?;
                let mut inner = log.lock();
                let piled_up = inner.compacting.as_ref().map_or(0, Vec::len);
                if round > 0 && piled_up <= SMALL_TAIL {
                    // Little came during the last sync: step 3 takes it.
                    break;
                }
                durable = inner.written;
                inner.compacting.as_mut().map(std::mem::take).unwrap_or_default()
            };
            file.file().write_all(&since)?;
            len += since.len() as u64;
            #[cfg(test)]
            if let Some(hook) = &self.before_tail_sync {
                hook();
            }
            file.file().sync_data()?;
        }
        Ok(Stage { file, snap_len: snap.len() as u64, len, durable })
    }
}

/// Syncs the log if anything was written since the last sync (and a
/// compaction's directory, if it could not); returns how much of the log
/// (its `written` count) is now durable, or none on failure. (With
/// [`Sync::Interval`], after a compaction switched files during the sync,
/// only as much as the new file's next sync makes durable.)
fn sync_now(inner: &parking_lot::Mutex<Inner>, stats: &Stats) -> Option<u64> {
    let (fd, upto, generation, dir) = {
        let i = inner.lock();
        if i.synced == i.written && i.dir_unsynced.is_none() {
            return Some(i.synced);
        }
        (i.file.try_clone(), i.written, i.generation, i.dir_unsynced.clone())
    };
    stats.syncs.fetch_add(1, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let synced = fd.and_then(|f| f.sync_data()).and_then(|()| dir.as_deref().map_or(Ok(()), crate::fsutil::sync_dir));
    stats.sync_time.observe(started.elapsed());
    match synced {
        Ok(()) => {
            // (`broken` stays: a sync does not cut off torn bytes.)
            let mut i = inner.lock();
            if i.generation == generation {
                i.synced = i.synced.max(upto);
                if dir.is_some() {
                    i.dir_unsynced = None;
                }
            }
            // Else a compaction put another file in place meanwhile. It
            // holds everything up to `upto` too: with Sync::Always synced,
            // and its rename too, before the lock was let go; with
            // Sync::Interval what it holds unsynced is left to the next
            // sync.
            Some(upto)
        }
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot sync the token log");
            None
        }
    }
}

/// [`Sync::Always`]: takes every waiting append, syncs once, answers them
/// all. Ends when the log is dropped.
fn group_commit(
    inner: &parking_lot::Mutex<Inner>,
    stats: &Stats,
    rx: &Receiver<(u64, tokio::sync::oneshot::Sender<bool>)>,
) {
    while let Ok(first) = rx.recv() {
        let batch: Vec<_> = std::iter::once(first).chain(rx.try_iter()).collect();
        let durable = sync_now(inner, stats);
        for (seq, done) in batch {
            let _ = done.send(durable.is_some_and(|upto| upto >= seq));
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
        for mode in [Sync::Always, Sync::Interval(std::time::Duration::from_millis(5))] {
            compaction_keeps_the_live_state(mode).await;
        }
    }

    /// The first appender of a batch becomes its writer and yields before
    /// writing. A request dropped in that yield (its client hung up) must
    /// not leave the log without a writer: every later append would wait
    /// for ever, and with it every grant.
    #[tokio::test(flavor = "current_thread")]
    async fn a_writer_dropped_before_it_writes_does_not_stall_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.wal");
        let snapshot: SnapshotFn = Box::new(Vec::new);
        let wal =
            Wal::open(&path, |_| {}, snapshot, 1 << 20, Sync::Interval(std::time::Duration::from_millis(5))).unwrap();
        let entry = || [Entry::Put(TokenKey([1; 16]), portable(crate::app::now() + 3600))];
        {
            let first = entry();
            let mut lead = Box::pin(wal.append(&first));
            // One poll: it becomes the writer and yields; then it is dropped.
            let polled =
                std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(lead.as_mut(), cx))).await;
            assert!(polled.is_pending(), "the writer yields before it writes");
        }
        let next = entry();
        tokio::time::timeout(std::time::Duration::from_secs(5), wal.append(&next))
            .await
            .expect("an append after a dropped writer completes")
            .unwrap();
        assert_eq!(wal.stats().entries.load(Ordering::Relaxed), 2, "the dropped writer's entry was written too");
    }

    /// A batch whose grants waited 50 ms or more says so in the log, and
    /// where the time went; a quick one says nothing.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_batch_is_logged_with_where_its_time_went() {
        #[derive(Clone, Default)]
        struct Capture(Arc<parking_lot::Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let logs = Capture::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().unwrap();
        let snapshot: SnapshotFn = Box::new(Vec::new);
        let wal = Wal::open(
            &dir.path().join("tokens.wal"),
            |_| {},
            snapshot,
            1 << 20,
            Sync::Interval(std::time::Duration::from_secs(1)),
        )
        .unwrap();
        let entry = |b: u8| [Entry::Put(TokenKey([b; 16]), portable(crate::app::now() + 3600))];
        let started = std::time::Instant::now();
        wal.append(&entry(1)).await.unwrap();
        let quick = started.elapsed() < SLOW_WRITE;
        let warning = "grants waited long for the token log";
        let count = |logs: &Capture| String::from_utf8_lossy(&logs.0.lock()).matches(warning).count();
        // (Unless this machine held the test up that long itself.)
        let before = count(&logs);
        if quick {
            assert_eq!(before, 0, "a quick write is not logged");
        }
        // Something (a compaction, a stuck disk) holds the log for 300 ms.
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let inner = Arc::clone(&wal.inner);
        let holder = std::thread::spawn(move || {
            let _held = inner.lock();
            locked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
        });
        locked.recv().unwrap();
        wal.append(&entry(2)).await.unwrap();
        holder.join().unwrap();
        let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
        assert_eq!(text.matches(warning).count(), before + 1, "{text}");
        let field = |name: &str| -> u64 {
            // The last warning's fields.
            let at = text.rfind(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {text}")) + name.len() + 1;
            text[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
        };
        // The time went to the lock, and the parts add up to the whole
        // (each rounded down to a millisecond).
        assert!(field("lock_wait_ms") >= 250, "{text}");
        let parts = field("before_write_ms") + field("lock_wait_ms") + field("write_ms");
        assert!(parts <= field("waited_ms") && parts + 2 >= field("waited_ms"), "{text}");
    }

    /// A compaction syncs its copy of the log without holding the log's
    /// lock: appends go on while that sync waits for the disk (which, under
    /// someone else's heavy writeback, can take seconds), and the ones made
    /// meanwhile end up in the compacted log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_go_on_while_a_compaction_syncs() {
        let interval = Sync::Interval(std::time::Duration::from_millis(5));
        // A few appends during the sync: one round, and they are the tail.
        appends_go_on_while_a_compaction_syncs_in(Sync::Always, 20, 1).await;
        appends_go_on_while_a_compaction_syncs_in(interval, 20, 1).await;
        // More than SMALL_TAIL (~78 KB) during the sync: a second round
        // takes them, so that little is written under the lock.
        appends_go_on_while_a_compaction_syncs_in(interval, 600, 2).await;
    }

    /// Appends `during` entries while the compaction's first sync is held,
    /// and expects `rounds` rounds of step 2.
    async fn appends_go_on_while_a_compaction_syncs_in(mode: Sync, during: u16, rounds: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.wal");
        // Opens the log with `fake` as the map it snapshots and restores.
        let open = |fake: &Arc<Fake>| {
            let (f1, f2) = (Arc::clone(fake), Arc::clone(fake));
            let restore = move |state: Replayed| *f1.records.lock() = state.records;
            let snapshot: SnapshotFn = Box::new(move || {
                let records = f2.records.lock().clone();
                records.into_iter().flat_map(|(k, p)| Entry::Put(TokenKey(k), p).frame()).collect()
            });
            Wal::open(&path, restore, snapshot, 4096, mode)
        };
        let fake = Arc::new(Fake::default());
        let mut wal = open(&fake).unwrap();
        let (paused_tx, paused) = std::sync::mpsc::channel::<()>();
        let (resume, resume_rx) = std::sync::mpsc::channel::<()>();
        let resume_rx = parking_lot::Mutex::new(resume_rx);
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hook_released = Arc::clone(&released);
        wal.before_tail_sync(move || {
            let _ = paused_tx.send(());
            let _ = resume_rx.lock().recv_timeout(std::time::Duration::from_secs(10));
            hook_released.store(true, Ordering::SeqCst);
        });
        let far = crate::app::now() + 3600;
        // As the app does: the map first, then the log.
        let put = |i: u16| {
            let mut key = [7; 16];
            key[..2].copy_from_slice(&i.to_le_bytes());
            fake.records.lock().insert(key, portable(far));
            [Entry::Put(TokenKey(key), portable(far))]
        };
        // About 130 bytes each: the 32nd or so crosses 4096 (the log began
        // as an empty snapshot) and starts a compaction.
        let mut i = 0;
        while wal.stats().bytes.load(Ordering::Relaxed) < 8192 {
            wal.append(&put(i)).await.unwrap();
            i += 1;
        }
        tokio::task::block_in_place(|| paused.recv_timeout(std::time::Duration::from_secs(5)))
            .expect("a compaction began and reached its sync");
        for _ in 0..during {
            wal.append(&put(i)).await.unwrap();
            i += 1;
        }
        assert!(!released.load(Ordering::SeqCst), "appends waited for the compaction's sync");
        resume.send(()).unwrap();
        let mut seen = 1;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while wal.stats().compactions.load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "the compaction finished");
            if paused.try_recv().is_ok() {
                // Another round of step 2.
                seen += 1;
                resume.send(()).unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(seen, rounds, "rounds of syncing the copied appends");
        // Appends after it go to the new file.
        wal.append(&put(i)).await.unwrap();
        i += 1;
        drop(wal);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let reopened = Arc::new(Fake::default());
        loop {
            // The sync thread lets go of the log's lock soon after the drop.
            match open(&reopened) {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("another ropc") => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(reopened.records.lock().len(), usize::from(i), "every append survived the compaction");
        assert_eq!(*reopened.records.lock(), *fake.records.lock());
    }

    async fn compaction_keeps_the_live_state(mode: Sync) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.wal");
        let fake = Arc::new(Fake::default());
        let open = |fake: &Arc<Fake>| {
            // The previous handle's threads let go of the log's lock soon
            // after it is dropped.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let (f1, f2) = (Arc::clone(fake), Arc::clone(fake));
                let restore = move |state: Replayed| *f1.records.lock() = state.records;
                let snapshot: SnapshotFn = Box::new(move || {
                    let records = f2.records.lock().clone();
                    records.into_iter().flat_map(|(k, p)| Entry::Put(TokenKey(k), p).frame()).collect()
                });
                match Wal::open(&path, restore, snapshot, 4096, mode) {
                    Ok(wal) => break wal,
                    Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("another ropc") => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
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
        // Zeros (a length of 0 with the checksum of nothing, 0) end the
        // log: what follows them is not replayed.
        let mut zeroed: Vec<u8> = entries[..1].iter().flat_map(Entry::frame).collect();
        let first = zeroed.len();
        zeroed.extend_from_slice(&[0; 4096]);
        zeroed.extend(entries[2..].iter().flat_map(Entry::frame));
        assert_eq!(read_entries(&zeroed), (entries[..1].to_vec(), first));

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
