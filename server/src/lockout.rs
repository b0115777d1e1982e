//! Brute-force protection (RFC 6749 §4.3.2): failed password attempts are
//! counted per username and per client IP in sliding windows, in maps whose
//! size is bounded.
//!
//! - A username that passes `max_failures` in `window` seconds is locked for
//!   `lock_time`, doubling with each consecutive lock up to `max_lock_time`.
//!   Locks always expire. While locked, attempts get the same `invalid_grant`
//!   as a wrong password, and no hash is spent.
//! - The lock is per username, not per (username, IP): an attacker who
//!   rotates IPs is still stopped. The price is that an attacker can keep
//!   locking a known username. To keep its owner in, IPs from which the user
//!   logged in successfully in the last `trusted_ip_days` are exempt from the
//!   user's lock (their own failures are still counted): the owner keeps
//!   working from their usual places while the attacker stays locked out.
//! - An IP that passes `ip_max_failures` (well above the per-user threshold,
//!   so that one office behind a NAT does not lock out its colleagues) gets
//!   `429` with `Retry-After` until its window has passed.
//! - Unknown usernames are counted and locked exactly like known ones, so a
//!   lock reveals nothing about who exists.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Thresholds, from `[credential_manager.lockout]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures per username within `window` that lock it (0 disables).
    pub max_failures: u32,
    /// The sliding window, seconds.
    pub window: u64,
    /// The first lock's length, seconds.
    pub lock_time: u64,
    /// The longest lock, seconds.
    pub max_lock_time: u64,
    /// Failures per IP within `window` that throttle it (0 disables).
    pub ip_max_failures: u32,
    /// How long a successful login exempts its IP from the user's lock, days.
    pub trusted_ip_days: u64,
    /// Most usernames and IPs tracked at once (each map).
    pub max_tracked: usize,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: 300,
            lock_time: 300,
            max_lock_time: 3600,
            ip_max_failures: 100,
            trusted_ip_days: 30,
            max_tracked: 100_000,
        }
    }
}

/// A sliding-window counter in constant space: this window's count plus the
/// previous window's, weighted by how much of it still overlaps.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    start: u64,
    current: u32,
    previous: u32,
}

impl Window {
    fn roll(&mut self, now: u64, len: u64) {
        let len = len.max(1);
        let elapsed = now.saturating_sub(self.start);
        if elapsed >= 2 * len {
            *self = Window { start: now - now % len, current: 0, previous: 0 };
        } else if elapsed >= len {
            *self = Window { start: self.start + len, current: 0, previous: self.current };
        }
    }

    fn add(&mut self, now: u64, len: u64) -> u32 {
        self.roll(now, len);
        self.current = self.current.saturating_add(1);
        self.estimate(now, len)
    }

    fn estimate(&self, now: u64, len: u64) -> u32 {
        let len = len.max(1);
        let into = now.saturating_sub(self.start).min(len);
        let weight = (len - into) as f64 / len as f64;
        self.current + (f64::from(self.previous) * weight).round() as u32
    }
}

#[derive(Clone, Debug, Default)]
struct UserEntry {
    failures: Window,
    locked_until: u64,
    consecutive_locks: u32,
    /// Attempts let through and not finished yet.
    pending: u32,
    /// Fired when this username is locked, for the attempts in flight that
    /// watch it ([`Lockout::begin_watched`]); dropped when none is left.
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

/// The audit line's `why` for an IP throttled by its failed logins (or
/// hang-ups that cost a hash).
pub const FAILED_LOGINS: &str = "too many failed logins from one IP";

/// The audit line's `why` for an IP throttled by its guesses at locked
/// accounts.
pub const REFUSED_GUESSES: &str = "too many refused logins from one IP";

/// What a password attempt may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Verify the password.
    Open,
    /// The username is locked, or its attempts in flight are at the cap of
    /// a record with failures or past locks: answer as for a wrong
    /// password, hash nothing. A guess all the same, it counts against the
    /// IP.
    UserLocked,
    /// A clean record's attempts in flight are at their cap (a burst of
    /// logins to a shared account, or the first burst of guesses before any
    /// has failed): answered as `UserLocked`, but counted against nobody.
    Crowded,
    /// The IP is throttled: answer `429` with this `Retry-After`.
    IpThrottled {
        /// Seconds until the IP may try again.
        retry_after: u64,
    },
}

/// Fired once, when a username is locked, for its password attempts still
/// in flight: one whose hash has not started yet need not spend it (the
/// answer is the locked user's, whatever the password).
#[derive(Debug, Default)]
pub struct LockSignal {
    fired: AtomicBool,
    notify: tokio::sync::Notify,
}

impl LockSignal {
    fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Resolves once the username is locked (at once if it already is).
    pub async fn fired(&self) {
        // A `Notified` hears every `notify_waiters` from its creation on, so
        // a lock between the check and the wait is not missed.
        let notified = self.notify.notified();
        if self.fired.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

const SHARDS: usize = 16;

/// How many times `max_failures` a user with a clean record may have in
/// flight at once (a shared service account logging in concurrently).
pub(crate) const CLEAN_BURST: u32 = 4;

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

/// Failure counters and locks.
pub struct Lockout {
    /// Swapped by a config commit; counters and locks carry over.
    policy: arc_swap::ArcSwap<LockoutPolicy>,
    /// Keyed by a keyed 64-bit hash of the username: fixed-size keys
    /// whatever length clients send.
    users: Sharded<u64, UserEntry>,
    user_hasher: std::collections::hash_map::RandomState,
    ips: Sharded<IpAddr, IpEntry>,
    next_sweep: AtomicUsize,
    locks: AtomicU64,
    refused: AtomicU64,
}

impl std::fmt::Debug for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lockout({:?}, {} users, {} IPs)", self.policy(), self.tracked_users(), self.tracked_ips())
    }
}

impl Lockout {
    /// Empty counters under `policy`.
    pub fn new(policy: LockoutPolicy) -> Self {
        Self {
            policy: arc_swap::ArcSwap::from_pointee(policy),
            users: Sharded::new(),
            user_hasher: Default::default(),
            ips: Sharded::new(),
            next_sweep: AtomicUsize::new(0),
            locks: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> LockoutPolicy {
        **self.policy.load()
    }

    /// Puts `policy` in force (a config commit). Counters and running locks
    /// stay; the new thresholds and times apply from the next attempt.
    pub fn set_policy(&self, policy: LockoutPolicy) {
        self.policy.store(std::sync::Arc::new(policy));
    }

    fn key(&self, user: &str) -> u64 {
        self.user_hasher.hash_one(user)
    }

    /// Starts a password attempt for `user` from `ip`: whether it may verify
    /// a password. An `Open` attempt is counted as in flight until
    /// [`Lockout::finish`], so that a burst of concurrent guesses cannot
    /// slip past the threshold while the hashes run.
    pub fn begin(&self, user: &str, ip: IpAddr, now: u64) -> Gate {
        self.gate(user, ip, now, false).0
    }

    /// [`Lockout::begin`], and for an `Open` attempt that the user's lock
    /// applies to (not from a trusted IP), a signal fired if the username is
    /// locked while the attempt is in flight: a burst of guesses queued
    /// behind the hashes that lock the account then spends no more hashes.
    pub fn begin_watched(&self, user: &str, ip: IpAddr, now: u64) -> (Gate, Option<Arc<LockSignal>>) {
        self.gate(user, ip, now, true)
    }

    fn gate(&self, user: &str, ip: IpAddr, now: u64, watch: bool) -> (Gate, Option<Arc<LockSignal>>) {
        let p = self.policy();
        if let Some(retry_after) = self.ip_throttled(ip, now) {
            return (Gate::IpThrottled { retry_after }, None);
        }
        if p.max_failures == 0 {
            return (Gate::Open, None);
        }
        let trusted_for = p.trusted_ip_days.saturating_mul(86_400);
        let rank = |e: &UserEntry| (e.locked_until > now || e.pending > 0, e.last_seen);
        let gate = self.users.with(&self.key(user), p.max_tracked, rank, |e| {
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
            // burst of guesses cannot outrun the threshold.
            // A clean record still caps attempts in flight, at a few times
            // the threshold, so the first burst of guesses hashes at most
            // that many before the first failure is known (and, watched,
            // fewer: those still queued when the lock comes spend none).
            let suspect = failures > 0 || e.consecutive_locks > 0;
            let cap = if suspect { p.max_failures } else { p.max_failures.saturating_mul(CLEAN_BURST) };
            if failures.saturating_add(e.pending) >= cap {
                return (if suspect { Gate::UserLocked } else { Gate::Crowded }, None);
            }
            e.pending += 1;
            let signal = watch.then(|| Arc::clone(e.signal.get_or_insert_with(Default::default)));
            (Gate::Open, signal)
        });
        let (gate, signal) = gate.unwrap_or((Gate::Open, None));
        if matches!(gate, Gate::UserLocked | Gate::Crowded) {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        (gate, signal)
    }

    /// Ends an attempt that [`Lockout::begin`] let through. `failed`: a wrong
    /// password or unknown user; `None`: no answer (the hash queue was full).
    pub fn finish(&self, user: &str, ip: IpAddr, now: u64, failed: Option<bool>) {
        // Whatever the policy says now: a config commit may have switched
        // the lockout on or off since `begin` counted this attempt.
        self.users.peek_mut(&self.key(user), |e| {
            e.pending = e.pending.saturating_sub(1);
            if e.pending == 0 {
                e.signal = None;
            }
        });
        match failed {
            Some(true) => self.failure(user, ip, now),
            Some(false) => self.success(user, ip, now),
            None => {}
        }
    }

    /// Ends an attempt whose hash started but whose answer nobody will read
    /// (its client hung up): it cost a hash, so it counts against the IP,
    /// not against the user.
    pub fn abandon(&self, user: &str, ip: IpAddr, now: u64) {
        self.finish(user, ip, now, None);
        self.ip_failure(ip, now, FAILED_LOGINS);
    }

    /// Counts a failed attempt (wrong password or unknown user).
    pub fn failure(&self, user: &str, ip: IpAddr, now: u64) {
        let p = self.policy();
        self.ip_failure(ip, now, FAILED_LOGINS);
        if p.max_failures == 0 {
            return;
        }
        let rank = |e: &UserEntry| (e.locked_until > now || e.pending > 0, e.last_seen);
        self.users.with(&self.key(user), p.max_tracked, rank, |e| {
            e.last_seen = now;
            if e.locked_until > now {
                return; // failures from trusted IPs during a lock do not extend it
            }
            if e.failures.add(now, p.window) >= p.max_failures {
                e.consecutive_locks = e.consecutive_locks.saturating_add(1);
                let backoff = 1u64 << (e.consecutive_locks - 1).min(20);
                let seconds = p.lock_time.saturating_mul(backoff).min(p.max_lock_time);
                e.locked_until = now.saturating_add(seconds);
                e.failures = Window::default();
                if let Some(signal) = e.signal.take() {
                    signal.fire();
                }
                self.locks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    event = "account_locked",
                    user = ?user,
                    user_key = format_args!("{:016x}", self.key(user)),
                    seconds,
                    consecutive = e.consecutive_locks,
                    "too many failed logins; the account is locked"
                );
            }
        });
    }

    /// Counts a failure against `ip` only: a failed client authentication,
    /// or an attempt refused by a user's lock. `why` goes into the audit
    /// line of a throttle it starts.
    pub fn ip_failure(&self, ip: IpAddr, now: u64, why: &'static str) {
        let p = self.policy();
        if p.ip_max_failures == 0 {
            return;
        }
        let rank = |e: &IpEntry| (e.throttled_until > now, e.last_seen);
        self.ips.with(&ip, p.max_tracked, rank, |e| {
            e.last_seen = now;
            if e.failures.add(now, p.window) >= p.ip_max_failures && e.throttled_until <= now {
                e.throttled_until = now.saturating_add(p.window);
                tracing::warn!(event = "ip_throttled", %ip, seconds = p.window, why);
            }
        });
    }

    /// Whether `ip` is throttled now (seconds left).
    /// Counts as refused when it is.
    pub fn ip_throttled(&self, ip: IpAddr, now: u64) -> Option<u64> {
        let until = self.ips.peek(&ip, |e| e.throttled_until).unwrap_or(0);
        let left = (until > now).then(|| until - now);
        if left.is_some() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        left
    }

    /// Records a successful login: clears the user's failures and trusts `ip`.
    pub fn success(&self, user: &str, ip: IpAddr, now: u64) {
        if self.policy().max_failures == 0 {
            return;
        }
        let rank = |e: &UserEntry| (e.locked_until > now, e.last_seen);
        self.users.with(&self.key(user), self.policy().max_tracked, rank, |e| {
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

    /// Sweeps one shard of each map: logs expired locks as unlocked and
    /// forgets idle entries. Call it periodically.
    pub fn sweep_step(&self, now: u64) {
        let i = self.next_sweep.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let p = self.policy();
        let idle = p.window.max(p.max_lock_time).saturating_mul(2);
        let trusted_for = p.trusted_ip_days.saturating_mul(86_400);
        {
            let mut users = self.users.shards[i].lock();
            let before = users.len();
            users.retain(|key, e| {
                if e.locked_until != 0 && e.locked_until <= now {
                    e.locked_until = 0;
                    // The username itself is not kept (only a keyed hash).
                    tracing::info!(
                        event = "account_unlocked",
                        user_key = format_args!("{key:016x}"),
                        "the lock expired"
                    );
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
                tracing::info!(event = "ip_unthrottled", %ip, "the IP may try again");
            }
            e.throttled_until > now || e.last_seen.saturating_add(idle) > now
        });
        self.ips.len.fetch_sub(before - ips.len(), Ordering::Relaxed);
    }

    /// Counts an attempt refused elsewhere (the shared Redis lockout).
    pub fn note_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lock taken elsewhere (the shared Redis lockout).
    pub fn note_lock(&self) {
        self.locks.fetch_add(1, Ordering::Relaxed);
    }

    /// Locks taken since start.
    pub fn locks(&self) -> u64 {
        self.locks.load(Ordering::Relaxed)
    }

    /// Attempts refused without a hash since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Usernames tracked.
    pub fn tracked_users(&self) -> usize {
        self.users.len.load(Ordering::Relaxed)
    }

    /// IPs tracked.
    pub fn tracked_ips(&self) -> usize {
        self.ips.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    /// Probes the gate without leaving an attempt in flight.
    fn check(l: &Lockout, user: &str, ip: IpAddr, now: u64) -> Gate {
        let gate = l.begin(user, ip, now);
        if gate == Gate::Open {
            l.finish(user, ip, now, None);
        }
        gate
    }

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            max_failures: 3,
            window: 60,
            lock_time: 10,
            max_lock_time: 40,
            ip_max_failures: 10,
            ..Default::default()
        }
    }

    #[test]
    fn locks_after_the_threshold_and_expires_with_backoff() {
        let l = Lockout::new(policy());
        let mut now = 1_000;
        for _ in 0..2 {
            l.failure("alice", A, now);
        }
        assert_eq!(check(&l, "alice", A, now), Gate::Open);
        l.failure("alice", A, now);
        assert_eq!(check(&l, "alice", A, now), Gate::UserLocked);
        assert_eq!(check(&l, "alice", B, now), Gate::UserLocked, "per user, not per IP");
        assert_eq!(check(&l, "bob", A, now), Gate::Open);
        // The first lock lasts 10 s, exactly.
        now += 9;
        assert_eq!(check(&l, "alice", A, now), Gate::UserLocked);
        now += 1;
        assert_eq!(check(&l, "alice", A, now), Gate::Open);
        // The next lock doubles: 20 s; then 40; then capped at 40.
        for expected in [20, 40, 40] {
            for _ in 0..3 {
                l.failure("alice", A, now);
            }
            assert_eq!(check(&l, "alice", A, now + expected - 1), Gate::UserLocked, "{expected}");
            now += expected;
            assert_eq!(check(&l, "alice", A, now), Gate::Open, "{expected}");
        }
        assert_eq!(l.locks(), 4);
    }

    #[test]
    fn a_trusted_ip_passes_the_users_lock() {
        let l = Lockout::new(policy());
        l.success("alice", A, 1_000);
        for _ in 0..3 {
            l.failure("alice", B, 1_001);
        }
        assert_eq!(check(&l, "alice", B, 1_002), Gate::UserLocked);
        assert_eq!(check(&l, "alice", A, 1_002), Gate::Open, "the owner's usual IP still gets in");
    }

    #[test]
    fn a_lock_fires_the_signal_of_the_attempts_in_flight_only() {
        let l = Lockout::new(policy());
        l.success("alice", A, 1_000);
        let (gate, trusted) = l.begin_watched("alice", A, 1_001);
        assert_eq!((gate, trusted.is_some()), (Gate::Open, false), "the user's lock does not apply from A");
        let (gate, first) = l.begin_watched("alice", B, 1_001);
        let (_, second) = l.begin_watched("alice", B, 1_001);
        assert_eq!(gate, Gate::Open);
        let (first, second) = (first.unwrap(), second.unwrap());
        assert!(Arc::ptr_eq(&first, &second), "one signal per username");
        assert!(!first.fired.load(Ordering::SeqCst));
        // Failures below the threshold fire nothing; the one that locks does.
        l.failure("alice", B, 1_001);
        l.failure("alice", B, 1_001);
        assert!(!first.fired.load(Ordering::SeqCst));
        l.failure("alice", B, 1_001);
        assert!(first.fired.load(Ordering::SeqCst));
        for ip in [A, B, B] {
            l.finish("alice", ip, 1_001, None);
        }
        // Once the lock has passed, a new attempt watches a new signal.
        let (gate, next) = l.begin_watched("alice", B, 1_011);
        assert_eq!(gate, Gate::Open);
        assert!(!next.unwrap().fired.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_signal_fired_before_the_wait_is_not_missed() {
        let signal = LockSignal::default();
        signal.fire();
        tokio::time::timeout(std::time::Duration::from_secs(5), signal.fired()).await.expect("already fired");
        let signal = Arc::new(LockSignal::default());
        let waiter = tokio::spawn({
            let signal = Arc::clone(&signal);
            async move { signal.fired().await }
        });
        tokio::task::yield_now().await;
        signal.fire();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("woken").unwrap();
    }

    #[test]
    fn a_trusted_login_releases_only_its_own_slot() {
        let l = Lockout::new(policy());
        l.success("alice", A, 1_000);
        l.failure("alice", B, 1_001);
        // One failure: two more guesses may be in flight from B...
        for _ in 0..2 {
            assert_eq!(l.begin("alice", B, 1_002), Gate::Open);
        }
        assert_eq!(l.begin("alice", B, 1_002), Gate::UserLocked);
        // ...and the owner's attempt from A, ending without an answer (a
        // full hash queue), does not free one of them.
        assert_eq!(l.begin("alice", A, 1_002), Gate::Open);
        l.finish("alice", A, 1_002, None);
        assert_eq!(l.begin("alice", B, 1_002), Gate::UserLocked);
    }

    #[test]
    fn an_ip_is_throttled_well_above_the_user_threshold() {
        let l = Lockout::new(policy());
        for i in 0..9 {
            l.failure(&format!("user{i}"), A, 1_000);
        }
        assert_eq!(check(&l, "someone", A, 1_000), Gate::Open);
        l.failure("user9", A, 1_000);
        assert_eq!(check(&l, "someone", A, 1_000), Gate::IpThrottled { retry_after: 60 });
        assert_eq!(check(&l, "someone", B, 1_000), Gate::Open);
        assert_eq!(check(&l, "someone", A, 1_060), Gate::Open);
    }

    #[test]
    fn sliding_window_forgets_old_failures() {
        let l = Lockout::new(policy());
        l.failure("alice", A, 1_000);
        l.failure("alice", A, 1_000);
        // Two windows later both are forgotten.
        l.failure("alice", A, 1_200);
        assert_eq!(check(&l, "alice", A, 1_200), Gate::Open);
    }

    #[test]
    fn concurrent_guesses_cannot_outrun_the_threshold() {
        let l = Lockout::new(policy());
        // A clean record: several logins at once are fine, up to a cap.
        for _ in 0..12 {
            assert_eq!(l.begin("svc", A, 1_000), Gate::Open);
        }
        assert_eq!(l.begin("svc", A, 1_000), Gate::Crowded, "capped at 4 x max_failures, not yet a guess");
        // After a failure, two guesses in flight use up the rest of the
        // allowance of three...
        l.failure("alice", A, 1_000);
        for _ in 0..2 {
            assert_eq!(l.begin("alice", A, 1_000), Gate::Open);
        }
        // ...so a third waits for their outcome, without a hash.
        assert_eq!(l.begin("alice", A, 1_000), Gate::UserLocked);
        for _ in 0..2 {
            l.finish("alice", A, 1_000, Some(true));
        }
        assert_eq!(check(&l, "alice", A, 1_001), Gate::UserLocked, "three failures lock");
        // Successes release their slot and clear the count.
        assert_eq!(l.begin("bob", A, 1_000), Gate::Open);
        l.finish("bob", A, 1_000, Some(false));
        assert_eq!(check(&l, "bob", A, 1_000), Gate::Open);
    }

    #[test]
    fn memory_is_bounded() {
        let l = Lockout::new(LockoutPolicy { max_tracked: 100, ..policy() });
        for i in 0..1_000 {
            l.failure(&format!("user{i}"), A, 1_000 + 400 + i);
        }
        // A new name whose shard is empty is tracked without an eviction,
        // so the bound is the cap plus one per shard.
        assert!(l.tracked_users() <= 100 + SHARDS, "{}", l.tracked_users());
        // A full map still tracks, and locks, a new name.
        for _ in 0..3 {
            l.failure("target", A, 2_500);
        }
        assert_eq!(check(&l, "target", B, 2_500), Gate::UserLocked);
        for _ in 0..SHARDS {
            l.sweep_step(1_000_000);
        }
        assert_eq!((l.tracked_users(), l.tracked_ips()), (0, 0));
    }
}
