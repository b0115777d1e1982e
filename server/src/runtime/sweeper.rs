//! The sweeper thread: expired records and idle lockout counters go, one
//! shard per step, off the request threads.

use crate::app::App;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Sweeps expired records and lockout counters, one shard per step, on a
/// thread of its own: a step scans a whole shard under its writers' lock,
/// which takes longer the larger the store, and on a request thread it would
/// hold up every request queued behind it. Stops when dropped.
pub(super) struct Sweeper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sweeper {
    pub(super) fn start(app: Arc<App>) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let interval = app.sweep_interval(Duration::from_secs(10));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ropc-sweeper".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(interval);
                    if !flag.load(Ordering::Relaxed) {
                        app.sweep_step();
                    }
                }
            })
            .map_err(
                |e| tracing::error!(error = %e, "cannot start the sweeper thread; expired records stay until restart"),
            )
            .ok();
        Self { stop, thread }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
