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

//!
//! | file | owns |
//! |---|---|
//! | `frame` | the entries and their framing |
//! | `replay` | the state entries leave; restoring it; the map's snapshot |
//! | `writer` | appends: batches, one `write(2)` each, and the syncs |
//! | `compaction` | rewriting the log as a snapshot while appends go on |

mod compaction;
mod frame;
mod replay;
mod writer;

pub use frame::{read_entries, Entry};
pub use replay::{restore_into, snapshot_of, Replayed};

use crate::store::StoreError;
use crossbeam_channel::Sender;
use frame::MAX_ENTRY;
use ropc_metrics::Exposition;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use writer::{group_commit, sync_now, Batches, Inner, WriterDuty};

/// The log is compacted once it grew by at least this much since the last
/// snapshot (and by twice the snapshot's size).
pub const COMPACT_MIN: u64 = 16 << 20;

/// Appends waiting for a group commit at most; more wait (never drop).
const QUEUE: usize = 65_536;

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

/// Syncs a compaction's new file after it copied the appends made during
/// the snapshot into it (step 2 of [`compaction`]'s rounds).
pub type SyncFn = Arc<dyn Fn(&File) -> io::Result<()> + Send + std::marker::Sync>;

/// How a log runs.
#[derive(Clone)]
pub struct Options {
    /// Compact once the log grew by this much (and twice the last snapshot).
    pub compact_min: u64,
    /// When an append counts as done.
    pub mode: Sync,
    /// How a compaction syncs the appends it copied: `File::sync_data`,
    /// unless a test wants to hold it.
    pub sync_copy: SyncFn,
}

impl Options {
    /// [`COMPACT_MIN`], `mode`, and `sync_data`.
    pub fn new(mode: Sync) -> Self {
        Self { compact_min: COMPACT_MIN, mode, sync_copy: Arc::new(File::sync_data) }
    }
}

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
    sync_copy: SyncFn,
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
    /// Failed writes or syncs since start.
    pub failures: AtomicU64,
    /// How long each batch's write took, the wait for the log's lock
    /// included (a compaction switching files, or a `write(2)` the filesystem
    /// holds up, shows here).
    pub write_time: ropc_metrics::Histogram,
    /// How long each `fdatasync` took.
    pub sync_time: ropc_metrics::Histogram,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wal({}, {:?})", self.path.display(), self.mode)
    }
}

impl Wal {
    /// Replays the log at `path`, drops what expired by `now`, and hands
    /// the state to `restore`; rewrites the log as `snapshot()` (which
    /// should by then reflect the restored state), and starts the sync
    /// thread. The log is compacted again whenever it grew by
    /// `options.compact_min` and twice the last snapshot.
    pub fn open(
        path: &Path,
        now: u64,
        restore: impl FnOnce(Replayed),
        snapshot: SnapshotFn,
        options: Options,
    ) -> io::Result<Wal> {
        let Options { compact_min, mode, sync_copy } = options;
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
            sync_copy,
            stats,
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

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Appends the log's metrics.
    pub fn write_metrics(&self, out: &mut Exposition) {
        let st = &self.stats;
        out.gauge("ropc_token_log_bytes", "Bytes in the token log.", st.bytes.load(Ordering::Relaxed));
        out.counter(
            "ropc_token_log_entries_total",
            "Entries written to the token log.",
            st.entries.load(Ordering::Relaxed),
        );
        out.counter(
            "ropc_token_log_syncs_total",
            "fdatasync calls on the token log (one per group commit).",
            st.syncs.load(Ordering::Relaxed),
        );
        out.counter(
            "ropc_token_log_compactions_total",
            "Rewrites of the token log as a snapshot.",
            st.compactions.load(Ordering::Relaxed),
        );
        out.counter(
            "ropc_token_log_failures_total",
            "Failed writes to the token log.",
            st.failures.load(Ordering::Relaxed),
        );
        out.histogram(
            "ropc_token_log_write_seconds",
            "Time to write one batch of grants to the token log, the wait for its lock included.",
            &st.write_time,
        );
        out.histogram("ropc_token_log_sync_seconds", "Time of one fdatasync of the token log.", &st.sync_time);
    }
}

#[cfg(test)]
mod tests;
