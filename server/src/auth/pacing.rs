//! The timing policy of answers: an answer that is refused without a hash
//! (a locked account) or checked by a fast legacy hash takes as long as a
//! verification at the configured cost, so that its timing tells nothing.
//!
//! Delays that make an answer take as long as a password verification: a
//! locked account's `invalid_grant`, and a wrong password against a fast
//! legacy hash. They run on tokio's timer, corrected by how late earlier
//! delays ended.
//!
//! tokio's timer rounds every deadline up to its next millisecond tick, and
//! the parked worker's wake-up comes on top. A moving mean of that lateness
//! is taken off each new delay, so the delays are right on average and
//! spread over about a millisecond. A verification's own time spreads wider
//! than that whenever the pool has a queue, and by some tenths of a
//! millisecond even when it is idle.
//!
//! An earlier version ran its own thread, sleeping until the earliest
//! deadline. Its ends were sharper, but each delay cost that thread a
//! wake-up and then a cross-thread wake of a tokio worker. Under 1,000
//! locked attempts a second those wake-ups preempted the hash workers
//! (0.5 CPU s per 20 s for the thread alone), and valid logins paid for
//! them. On the timer, an expiry is handled by the worker that is awake
//! for the network anyway, or by one wake-up on its own core.

use ropc_hash::{HashPool, PasswordVerifier};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long answers should take: the moving mean of a verification at the
/// configured cost, queue wait included, and the delays that pad answers
/// to it.
#[derive(Debug)]
pub struct Pacing {
    /// Moving mean of a password verification's latency, queue included, in
    /// nanoseconds: how long a locked account's answer waits.
    verify_latency_ns: AtomicU64,
    delays: Delays,
    pool: Option<Arc<HashPool>>,
}

impl Pacing {
    /// Pacing seeded with `seed` (a verification timed at start, so that
    /// padded answers match it from the first request on), for the queue of
    /// `pool` (none: hashes start at once).
    pub fn new(seed: Duration, pool: Option<Arc<HashPool>>) -> Self {
        let seed = u64::try_from(seed.as_nanos()).unwrap_or(u64::MAX);
        Self { verify_latency_ns: AtomicU64::new(seed), delays: Delays::new(), pool }
    }

    /// What a verification at the configured cost takes right now, queue
    /// wait included.
    pub fn typical(&self) -> Duration {
        Duration::from_nanos(self.verify_latency_ns.load(Ordering::Relaxed))
    }

    /// Takes a verification at the configured cost that took `took` into
    /// the mean.
    pub fn observe(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let mean = ropc_metrics::moving_mean(self.verify_latency_ns.load(Ordering::Relaxed), took, 16);
        self.verify_latency_ns.store(mean, Ordering::Relaxed);
    }

    /// How long a hash submitted now would wait for the jobs queued ahead
    /// of it (none without a pool: the inline verifier starts at once).
    pub fn queue_wait(&self) -> Duration {
        self.pool.as_ref().map_or(Duration::ZERO, |pool| {
            let rounds = pool.queue_len() / pool.workers().max(1);
            pool.mean_hash_time().saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
        })
    }

    /// One hash's mean time on the pool, if there is one.
    pub fn mean_hash_time(&self) -> Option<Duration> {
        self.pool.as_ref().map(|pool| pool.mean_hash_time())
    }

    /// Waits until `since` + `total`, if that is still ahead.
    pub async fn pad(&self, since: Instant, total: Duration) {
        if let Some(rest) = total.checked_sub(since.elapsed()) {
            self.delays.sleep(rest).await;
        }
    }

    /// Waits `duration`, as precisely as the timer allows.
    pub async fn sleep(&self, duration: Duration) {
        self.delays.sleep(duration).await;
    }
}

/// The lateness correction shared by every delay.
#[derive(Debug, Default)]
pub struct Delays {
    /// Moving mean of how late a delay ends, in nanoseconds; later delays
    /// are shortened by it.
    lateness_ns: AtomicU64,
}

/// The largest correction taken off a delay.
const MAX_CORRECTION: Duration = Duration::from_millis(5);

impl Delays {
    /// No delay has run yet: no correction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for `duration`, ending as close to it as the measured lateness
    /// of earlier delays allows.
    pub async fn sleep(&self, duration: Duration) {
        let start = Instant::now();
        let late = Duration::from_nanos(self.lateness_ns.load(Ordering::Relaxed));
        let target = duration.saturating_sub(late);
        tokio::time::sleep_until((start + target).into()).await;
        if target.is_zero() {
            // Nothing was left to wait (the correction ate it all): this
            // end says nothing about the timer's lateness.
            return;
        }
        let late_now = u64::try_from(start.elapsed().saturating_sub(target).as_nanos()).unwrap_or(u64::MAX);
        let mean = ropc_metrics::moving_mean(self.lateness_ns.load(Ordering::Relaxed), late_now, 8);
        let max = u64::try_from(MAX_CORRECTION.as_nanos()).unwrap_or(u64::MAX);
        self.lateness_ns.store(mean.min(max), Ordering::Relaxed);
    }

    /// The correction the next delay gets.
    #[cfg(test)]
    fn correction(&self) -> Duration {
        Duration::from_nanos(self.lateness_ns.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_delay_is_never_short_before_it_learns_its_lateness() {
        let d = Delays::new();
        let start = Instant::now();
        d.sleep(Duration::from_millis(20)).await;
        assert!(start.elapsed() >= Duration::from_millis(20), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn the_correction_learns_the_timer_lateness_and_stays_bounded() {
        let d = Delays::new();
        // tokio's timer ends a sleep on a millisecond tick after its
        // deadline: every delay here is late by something, so the
        // correction must become positive.
        for _ in 0..16 {
            d.sleep(Duration::from_micros(2_300)).await;
        }
        let c = d.correction();
        assert!(c > Duration::ZERO && c <= MAX_CORRECTION, "{c:?}");
    }
}
