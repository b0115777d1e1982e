//! Appends: the first request to find nobody writing becomes the writer
//! and writes everything queued with one `write(2)`; the syncs that make
//! what was written durable (group commit, or a background interval).

use super::{Stats, Wal};
use crossbeam_channel::Receiver;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A batch that waited this long between its first append and the end of
/// its write is logged as a warning (grants waited for it). A write takes
/// well under a millisecond; 50 ms catches the filesystem holding one up
/// (seen: 50-100 ms while syncs took 0.25 s or more), and a disk stalled
/// for seconds logs about two lines per stall, as the writes queue behind
/// one.
pub(super) const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(50);

/// Appends are written in batches: the first request to find nobody
/// writing becomes the writer and writes everything queued (its own bytes
/// and those queued meanwhile) with one `write(2)` per batch; the others
/// wait for their batch. Under load, one system call serves many grants,
/// with no thread hand-off.
#[derive(Default)]
pub(super) struct Batches {
    pub(super) queue: parking_lot::Mutex<Queue>,
    /// The last batch written (or failed).
    pub(super) done: AtomicU64,
    /// Batches whose write failed (rare; trimmed, and every batch up to
    /// `failed_floor` counts as failed once trimmed ones are forgotten).
    pub(super) failed: parking_lot::Mutex<std::collections::BTreeSet<u64>>,
    pub(super) failed_floor: AtomicU64,
    pub(super) any_failed: std::sync::atomic::AtomicBool,
    pub(super) notify: tokio::sync::Notify,
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) bytes: Vec<u8>,
    pub(super) entries: u64,
    /// The batch being filled (the next to be written).
    pub(super) batch: u64,
    pub(super) writing: bool,
    /// When the batch being filled got its first bytes.
    pub(super) since: Option<std::time::Instant>,
}

/// Most batches one writer writes before handing the rest to a task, so
/// that its own request is not held by a stream of others.
const BATCHES_PER_WRITER: usize = 8;

/// The first appender's duty to write the queued batches, done when it is
/// dropped: at once after its yield, or when its request is dropped during
/// the yield.
pub(super) struct WriterDuty<'a>(pub(super) &'a Wal);

impl Drop for WriterDuty<'_> {
    fn drop(&mut self) {
        self.0.write_batches();
    }
}

/// The file and the compaction state, under one lock: appends are one
/// `write(2)` each, in order.
pub(super) struct Inner {
    pub(super) file: File,
    /// Bytes appended since the start (a sequence number for syncs).
    pub(super) written: u64,
    /// `written` when a sync last completed.
    pub(super) synced: u64,
    /// While a snapshot is being built: the bytes appended since it began.
    pub(super) compacting: Option<Vec<u8>>,
    pub(super) since_snapshot: u64,
    pub(super) last_snapshot: u64,
    /// The last write failed, and its torn bytes may still be in the file:
    /// the next write cuts them off first (and fails if it cannot).
    pub(super) broken: bool,
    /// The file's length after the last whole write.
    pub(super) good_len: u64,
    /// Counts the files the log was written to: a compaction puts a new
    /// one in place, and a sync of the one before says nothing about it.
    pub(super) generation: u64,
    /// [`Sync::Always`]: a compaction renamed its file in this directory
    /// but could not sync the directory; syncs retry it, and nothing is
    /// answered as synced until it succeeds.
    pub(super) dir_unsynced: Option<PathBuf>,
    pub(super) _lock: crate::fsutil::FileLock,
}

impl Wal {
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
}

/// Syncs the log if anything was written since the last sync (and a
/// compaction's directory, if it could not); returns how much of the log
/// (its `written` count) is now durable, or none on failure. (With
/// [`Sync::Interval`], after a compaction switched files during the sync,
/// only as much as the new file's next sync makes durable.)
pub(super) fn sync_now(inner: &parking_lot::Mutex<Inner>, stats: &Stats) -> Option<u64> {
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
pub(super) fn group_commit(
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
