//! Compaction: the log rewritten as a snapshot of the map while appends go
//! on, then put in place of the old one.

use super::writer::Inner;
use super::{SnapshotFn, Stats, Sync, SyncFn, Wal};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Wal {
    pub(super) fn maybe_compact(&self, inner: &mut Inner) {
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
            sync_copy: Arc::clone(&self.sync_copy),
        };
        let spawned = std::thread::Builder::new().name("ropc-token-snapshot".into()).spawn(move || job.run());
        if let Err(e) = spawned {
            inner.compacting = None;
            inner.since_snapshot = 0;
            tracing::error!(error = %e, "cannot start the token log's compaction");
        }
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
pub(super) struct Compaction {
    snapshot: Arc<SnapshotFn>,
    /// Weak: a compaction does not keep a closed log (and its lock) alive.
    inner: std::sync::Weak<parking_lot::Mutex<Inner>>,
    path: PathBuf,
    stats: Arc<Stats>,
    mode: Sync,
    /// Syncs the copied appends (step 2).
    sync_copy: SyncFn,
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
            (self.sync_copy)(file.file())?;
        }
        Ok(Stage { file, snap_len: snap.len() as u64, len, durable })
    }
}
