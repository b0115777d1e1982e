//! Precise short delays for the async side: one thread that sleeps until
//! the earliest deadline it holds, then answers. tokio's timer rounds every
//! sleep up to its next millisecond tick and adds the wake-up of a parked
//! worker, about 1 ms in all; a locked account's answer must not be told
//! apart from a wrong password's by that margin.

use parking_lot::{Condvar, Mutex};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct Wait {
    until: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Wait {
    fn eq(&self, other: &Self) -> bool {
        (self.until, self.seq) == (other.until, other.seq)
    }
}
impl Eq for Wait {}
impl PartialOrd for Wait {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Wait {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.until, self.seq).cmp(&(other.until, other.seq))
    }
}

/// A queue of delays served by one thread.
#[derive(Debug)]
pub struct Delays {
    shared: Arc<Shared>,
    capacity: usize,
    /// Moving mean of how late a wait ends (thread wake-up, then the async
    /// task's), in nanoseconds; later waits start that much earlier.
    lateness_ns: AtomicU64,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when a wait earlier than every other arrives, or on close.
    earlier: Condvar,
}

#[derive(Debug, Default)]
struct State {
    heap: BinaryHeap<Reverse<Wait>>,
    seq: u64,
    closed: bool,
}

impl std::fmt::Debug for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wait").field("until", &self.until).finish()
    }
}

impl Delays {
    /// Starts the delay thread; at most `capacity` delays wait at once.
    pub fn new(capacity: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new().name("ropc-delay".into()).spawn(move || run(&thread_shared))?;
        Ok(Self { shared, capacity, lateness_ns: AtomicU64::new(0) })
    }

    /// Waits until `until`. Falls back to tokio's timer when the queue is full.
    pub async fn until(&self, until: Instant) {
        let (wake, woken) = oneshot::channel();
        let queued = {
            let mut state = self.shared.state.lock();
            if state.closed || state.heap.len() >= self.capacity {
                false
            } else {
                // Wake the thread only when this wait comes before every
                // other: it sleeps until the earliest one anyway. Under a
                // steady stream of equal delays that is never, so a wait
                // costs the thread one wake-up, at its deadline.
                let earliest = state.heap.peek().is_none_or(|Reverse(w)| until < w.until);
                state.seq += 1;
                let seq = state.seq;
                state.heap.push(Reverse(Wait { until, seq, wake }));
                if earliest {
                    self.shared.earlier.notify_one();
                }
                true
            }
        };
        if queued {
            let _ = woken.await;
        } else {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    /// Waits for `duration`, ending as close to it as the measured lateness
    /// of earlier waits allows.
    pub async fn sleep(&self, duration: Duration) {
        let start = Instant::now();
        let late = Duration::from_nanos(self.lateness_ns.load(Ordering::Relaxed));
        self.until(start + duration.saturating_sub(late)).await;
        let actual = start.elapsed();
        let late_now = u64::try_from(actual.saturating_sub(duration.saturating_sub(late)).as_nanos()).unwrap_or(0);
        let mean = crate::metrics::moving_mean(self.lateness_ns.load(Ordering::Relaxed), late_now, 8);
        self.lateness_ns.store(mean.min(5_000_000), Ordering::Relaxed);
    }
}

impl Drop for Delays {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.earlier.notify_one();
    }
}

/// The delay thread: sleeps on the condition variable until the earliest
/// deadline (or until an earlier wait arrives), then wakes every wait that
/// is due, outside the lock.
fn run(shared: &Shared) {
    let mut due = Vec::new();
    loop {
        {
            let mut state = shared.state.lock();
            loop {
                if state.closed {
                    return;
                }
                let now = Instant::now();
                while state.heap.peek().is_some_and(|Reverse(w)| w.until <= now) {
                    if let Some(Reverse(w)) = state.heap.pop() {
                        due.push(w.wake);
                    }
                }
                if !due.is_empty() {
                    break;
                }
                match state.heap.peek().map(|Reverse(w)| w.until) {
                    Some(until) => {
                        shared.earlier.wait_until(&mut state, until);
                    }
                    None => shared.earlier.wait(&mut state),
                }
            }
        }
        for wake in due.drain(..) {
            let _ = wake.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_in_deadline_order_and_on_time() {
        let d = Delays::new(16).unwrap();
        let start = Instant::now();
        let (a, b) = tokio::join!(d.sleep(Duration::from_millis(30)), d.sleep(Duration::from_millis(10)));
        let _ = (a, b);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }

    #[tokio::test]
    async fn an_earlier_wait_is_not_held_up_by_a_later_one() {
        let d = std::sync::Arc::new(Delays::new(16).unwrap());
        // The thread is asleep until the 2 s deadline when the 20 ms one
        // arrives: it must be woken for it.
        let long = tokio::spawn({
            let d = std::sync::Arc::clone(&d);
            async move { d.until(Instant::now() + Duration::from_secs(2)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        d.until(start + Duration::from_millis(20)).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(20) && took < Duration::from_millis(1000), "{took:?}");
        assert!(!long.is_finished(), "the 2 s wait ended early");
        long.abort();
    }

    #[tokio::test]
    async fn a_full_queue_falls_back_to_the_runtime_timer() {
        let d = Delays::new(1).unwrap();
        let start = Instant::now();
        let (a, b) = tokio::join!(d.sleep(Duration::from_millis(30)), d.sleep(Duration::from_millis(30)));
        let _ = (a, b);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(29) && took < Duration::from_millis(500), "{took:?}");
    }
}
