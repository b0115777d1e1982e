//! Precise short delays for the async side: one thread that sleeps until
//! the earliest deadline it holds, then answers. tokio's timer rounds every
//! sleep up to its next millisecond tick and adds the wake-up of a parked
//! worker, about 1 ms in all; a locked account's answer must not be told
//! apart from a wrong password's by that margin.

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    sender: Sender<(Instant, oneshot::Sender<()>)>,
    /// Moving mean of how late a wait ends (thread wake-up, then the async
    /// task's), in nanoseconds; later waits start that much earlier.
    lateness_ns: AtomicU64,
}

impl Delays {
    /// Starts the delay thread; at most `capacity` delays wait at once.
    pub fn new(capacity: usize) -> std::io::Result<Self> {
        let (sender, receiver) = bounded(capacity);
        std::thread::Builder::new().name("ropc-delay".into()).spawn(move || run(receiver))?;
        Ok(Self { sender, lateness_ns: AtomicU64::new(0) })
    }

    /// Waits until `until`. Falls back to tokio's timer when the queue is full.
    pub async fn until(&self, until: Instant) {
        let (wake, woken) = oneshot::channel();
        match self.sender.try_send((until, wake)) {
            Ok(()) => {
                let _ = woken.await;
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                tokio::time::sleep_until(until.into()).await;
            }
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
        let old = self.lateness_ns.load(Ordering::Relaxed);
        let mean = if old == 0 { late_now } else { old - old / 8 + late_now / 8 };
        self.lateness_ns.store(mean.min(5_000_000), Ordering::Relaxed);
    }
}

fn run(receiver: Receiver<(Instant, oneshot::Sender<()>)>) {
    let mut heap: BinaryHeap<Reverse<Wait>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(w)| w.until <= now) {
            if let Some(Reverse(w)) = heap.pop() {
                let _ = w.wake.send(());
            }
        }
        let next = match heap.peek() {
            Some(Reverse(w)) => receiver.recv_deadline(w.until),
            None => receiver.recv().map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
        };
        match next {
            Ok((until, wake)) => {
                seq += 1;
                heap.push(Reverse(Wait { until, seq, wake }));
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
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
}
