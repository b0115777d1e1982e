//! The lockout's counters in this process: per username and per IP, in
//! sharded maps whose size is bounded.

use super::window::Window;
use super::{Gate, LockSignal, Locked, LockoutPolicy, Outcome, CLEAN_BURST};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
struct UserEntry {
    failures: Window,
    locked_until: u64,
    consecutive_locks: u32,
    /// Attempts let through and not finished yet.
    pending: u32,
    /// Fired when this username is locked, for the attempts in flight that
    /// watch it ([`MemoryLockout::gate`]); dropped when none is left.
    signal: Option<Arc<LockSignal>>,
    trusted: [(Option<IpAddr>, u64); 4],
    last_seen: u64,
}

#[derive(Clone, Debug, Default)]
struct IpEntry {
    failures: Window,
    throttled_until: u64,
    last_seen: u64,
}

pub(super) const SHARDS: usize = 16;

struct Sharded<K, V> {
    shards: Vec<Mutex<HashMap<K, V>>>,
    hasher: std::collections::hash_map::RandomState,
    len: AtomicUsize,
}

impl<K: Hash + Eq + Clone, V: Default> Sharded<K, V> {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            len: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: &K) -> &Mutex<HashMap<K, V>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Runs `f` on the entry for `key`, creating it. When the map is full,
    /// an entry of the same shard makes room: the one `rank` puts first
    /// (unlocked before locked, then least recently seen). New keys are
    /// always tracked, so filling the map cannot switch the protection off;
    /// a shard with nothing to evict lets the map pass `cap` by its one new
    /// key (so at most `cap` + [`SHARDS`] in all).
    fn with<R>(&self, key: &K, cap: usize, rank: impl Fn(&V) -> (bool, u64), f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let mut shard = self.shard(key).lock();
        if !shard.contains_key(key) {
            if self.len.load(Ordering::Relaxed) >= cap {
                let victim = shard.iter().min_by_key(|(_, v)| rank(v)).map(|(k, _)| k.clone());
                if let Some(k) = victim {
                    shard.remove(&k);
                    self.len.fetch_sub(1, Ordering::Relaxed);
                }
            }
            shard.insert(key.clone(), V::default());
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        shard.get_mut(key).map(f)
    }

    fn peek_mut<R>(&self, key: &K, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.shard(key).lock().get_mut(key).map(f)
    }

    fn peek<R>(&self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.shard(key).lock().get(key).map(f)
    }
}

/// Failure counters and locks of this process. Usernames are keyed by the
/// caller's keyed 64-bit hash of them (`user`): fixed-size keys whatever
/// length clients send, and no username kept.
pub struct MemoryLockout {
    users: Sharded<u64, UserEntry>,
    ips: Sharded<IpAddr, IpEntry>,
    next_sweep: AtomicUsize,
}

/// What the sweep found ended: expired locks (by user key) and throttles.
#[derive(Debug, Default)]
pub(super) struct Swept {
    pub(super) unlocked: Vec<u64>,
    pub(super) unthrottled: Vec<IpAddr>,
}

impl MemoryLockout {
    pub(super) fn new() -> Self {
        Self { users: Sharded::new(), ips: Sharded::new(), next_sweep: AtomicUsize::new(0) }
    }

    /// The gate of a password attempt for `user` from `ip`. An `Open`
    /// attempt is counted as in flight until [`MemoryLockout::finish`], so
    /// that a burst of concurrent guesses cannot slip past the threshold
    /// while the hashes run. With `watch`, an `Open` attempt that the
    /// user's lock applies to (not from a trusted IP) gets a signal fired
    /// if the username is locked while it is in flight.
    pub(super) fn gate(
        &self,
        p: &LockoutPolicy,
        user: u64,
        ip: IpAddr,
        now: u64,
        watch: bool,
    ) -> (Gate, Option<Arc<LockSignal>>) {
        if let Some(retry_after) = self.ip_throttled(ip, now) {
            return (Gate::IpThrottled { retry_after }, None);
        }
        if p.max_failures == 0 {
            return (Gate::Open, None);
        }
        let trusted_for = p.trusted_ip_days.saturating_mul(86_400);
        let rank = |e: &UserEntry| (e.locked_until > now || e.pending > 0, e.last_seen);
        let gate = self.users.with(&user, p.max_tracked, rank, |e| {
            e.last_seen = now;
            let trusted = e.trusted.iter().any(|(t, at)| *t == Some(ip) && at.saturating_add(trusted_for) > now);
            if trusted {
                // Counted in flight like any other, so that its `finish`
                // releases its own slot, not another attempt's.
                e.pending += 1;
                return (Gate::Open, None);
            }
            if e.locked_until > now {
                return (Gate::UserLocked, None);
            }
            e.failures.roll(now, p.window);
            let failures = e.failures.estimate(now, p.window);
            // A user with a clean record may log in many times at once (a
            // shared service account). Once there are failures or past
            // locks, attempts in flight count as if they will fail, so a
            // burst of guesses cannot outrun the threshold. A clean record
            // still caps attempts in flight, at a few times the threshold,
            // so the first burst of guesses hashes at most that many before
            // the first failure is known (and, watched, fewer: those still
            // queued when the lock comes spend none).
            let suspect = failures > 0 || e.consecutive_locks > 0;
            let cap = if suspect { p.max_failures } else { p.max_failures.saturating_mul(CLEAN_BURST) };
            if failures.saturating_add(e.pending) >= cap {
                return (if suspect { Gate::UserLocked } else { Gate::Crowded }, None);
            }
            e.pending += 1;
            let signal = watch.then(|| Arc::clone(e.signal.get_or_insert_with(Default::default)));
            (Gate::Open, signal)
        });
        gate.unwrap_or((Gate::Open, None))
    }

    /// Ends an attempt that [`MemoryLockout::gate`] let through. Returns
    /// the lock a failure started, and the seconds of an IP throttle it
    /// started.
    pub(super) fn finish(
        &self,
        p: &LockoutPolicy,
        user: u64,
        ip: IpAddr,
        now: u64,
        outcome: Outcome,
    ) -> (Option<Locked>, Option<u64>) {
        // Whatever the policy says now: a config commit may have switched
        // the lockout on or off since `gate` counted this attempt.
        self.users.peek_mut(&user, |e| {
            e.pending = e.pending.saturating_sub(1);
            if e.pending == 0 {
                e.signal = None;
            }
        });
        match outcome {
            Outcome::Failed => self.failure(p, user, ip, now),
            Outcome::Succeeded => {
                self.success(p, user, ip, now);
                (None, None)
            }
            Outcome::NoAnswer => (None, None),
        }
    }

    /// Counts a failed attempt (wrong password or unknown user) against
    /// the user and the IP.
    pub(super) fn failure(&self, p: &LockoutPolicy, user: u64, ip: IpAddr, now: u64) -> (Option<Locked>, Option<u64>) {
        let throttled = self.ip_failure(p, ip, now);
        if p.max_failures == 0 {
            return (None, throttled);
        }
        let rank = |e: &UserEntry| (e.locked_until > now || e.pending > 0, e.last_seen);
        let locked = self.users.with(&user, p.max_tracked, rank, |e| {
            e.last_seen = now;
            if e.locked_until > now {
                return None; // failures from trusted IPs during a lock do not extend it
            }
            if e.failures.add(now, p.window) < p.max_failures {
                return None;
            }
            e.consecutive_locks = e.consecutive_locks.saturating_add(1);
            let backoff = 1u64 << (e.consecutive_locks - 1).min(20);
            let seconds = p.lock_time.saturating_mul(backoff).min(p.max_lock_time);
            e.locked_until = now.saturating_add(seconds);
            e.failures = Window::default();
            if let Some(signal) = e.signal.take() {
                signal.fire();
            }
            Some(Locked { seconds, consecutive: e.consecutive_locks })
        });
        (locked.flatten(), throttled)
    }

    /// Counts a failure against `ip` only; returns the seconds of a
    /// throttle it started.
    pub(super) fn ip_failure(&self, p: &LockoutPolicy, ip: IpAddr, now: u64) -> Option<u64> {
        if p.ip_max_failures == 0 {
            return None;
        }
        let rank = |e: &IpEntry| (e.throttled_until > now, e.last_seen);
        self.ips
            .with(&ip, p.max_tracked, rank, |e| {
                e.last_seen = now;
                let started = e.failures.add(now, p.window) >= p.ip_max_failures && e.throttled_until <= now;
                started.then(|| {
                    e.throttled_until = now.saturating_add(p.window);
                    p.window
                })
            })
            .flatten()
    }

    /// Seconds `ip` is still throttled, if it is.
    pub(super) fn ip_throttled(&self, ip: IpAddr, now: u64) -> Option<u64> {
        let until = self.ips.peek(&ip, |e| e.throttled_until).unwrap_or(0);
        (until > now).then(|| until - now)
    }

    /// Records a successful login: clears the user's failures and trusts `ip`.
    fn success(&self, p: &LockoutPolicy, user: u64, ip: IpAddr, now: u64) {
        if p.max_failures == 0 {
            return;
        }
        let rank = |e: &UserEntry| (e.locked_until > now, e.last_seen);
        self.users.with(&user, p.max_tracked, rank, |e| {
            e.last_seen = now;
            e.failures = Window::default();
            if e.locked_until <= now {
                e.consecutive_locks = 0;
            }
            let slot = match e.trusted.iter().position(|(t, _)| *t == Some(ip)) {
                Some(i) => i,
                None => e.trusted.iter().enumerate().min_by_key(|(_, (_, at))| *at).map_or(0, |(i, _)| i),
            };
            e.trusted[slot] = (Some(ip), now);
        });
    }

    /// Sweeps one shard of each map: forgets idle entries, and reports
    /// locks and throttles that expired.
    pub(super) fn sweep_step(&self, p: &LockoutPolicy, now: u64) -> Swept {
        let i = self.next_sweep.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let idle = p.idle_time();
        let trusted_for = p.trusted_ip_days.saturating_mul(86_400);
        let mut swept = Swept::default();
        {
            let mut users = self.users.shards[i].lock();
            let before = users.len();
            users.retain(|key, e| {
                if e.locked_until != 0 && e.locked_until <= now {
                    e.locked_until = 0;
                    swept.unlocked.push(*key);
                }
                let trusts = e.trusted.iter().any(|(t, at)| t.is_some() && at.saturating_add(trusted_for) > now);
                e.locked_until > now || e.pending > 0 || e.last_seen.saturating_add(idle) > now || trusts
            });
            self.users.len.fetch_sub(before - users.len(), Ordering::Relaxed);
        }
        let mut ips = self.ips.shards[i].lock();
        let before = ips.len();
        ips.retain(|ip, e| {
            if e.throttled_until != 0 && e.throttled_until <= now {
                e.throttled_until = 0;
                swept.unthrottled.push(*ip);
            }
            e.throttled_until > now || e.last_seen.saturating_add(idle) > now
        });
        self.ips.len.fetch_sub(before - ips.len(), Ordering::Relaxed);
        swept
    }

    /// Usernames tracked.
    pub(super) fn tracked_users(&self) -> usize {
        self.users.len.load(Ordering::Relaxed)
    }

    /// IPs tracked.
    pub(super) fn tracked_ips(&self) -> usize {
        self.ips.len.load(Ordering::Relaxed)
    }
}
