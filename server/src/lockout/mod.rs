//! Brute-force protection (RFC 6749 §4.3.2): failed password attempts are
//! counted per username and per client IP in sliding windows.
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
//!
//! [`Lockout`] is the one interface; it keeps the counters in this process
//! ([`memory`]) or in Redis, shared by every instance ([`redis`]), as
//! `[token_store]` says. The two make the same decisions (the parity tests
//! hold them to one table of cases), and this module alone writes their
//! audit lines (`account_locked`, `ip_throttled`, `account_unlocked`,
//! `ip_unthrottled`) and metrics.

mod memory;
pub mod redis;
mod window;

use crate::store::{RedisConn, StoreError};
use memory::MemoryLockout;
use redis::SharedLockout;
use ropc_metrics::Exposition;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Most usernames and IPs tracked at once (each map; memory backend).
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

impl LockoutPolicy {
    /// How long a user's or an IP's counters are kept after their last
    /// touch: twice the longer of the window and the longest lock, and at
    /// least a minute. Both backends forget at this age.
    pub fn idle_time(&self) -> u64 {
        self.window.max(self.max_lock_time).saturating_mul(2).max(60)
    }
}

/// The audit line's `why` for an IP throttled by its failed logins (or
/// hang-ups that cost a hash).
pub const FAILED_LOGINS: &str = "too many failed logins from one IP";

/// The audit line's `why` for an IP throttled by its guesses at locked
/// accounts.
pub const REFUSED_GUESSES: &str = "too many refused logins from one IP";

/// The audit line's `why` for an IP throttled by its failed client
/// authentications.
pub const FAILED_CLIENT_AUTHENTICATIONS: &str = "too many failed client authentications";

/// How many times `max_failures` a user with a clean record may have in
/// flight at once (a shared service account logging in concurrently).
pub(crate) const CLEAN_BURST: u32 = 4;

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

/// One password attempt: who, from where, when, and (in Redis) the id its
/// in-flight slot is held under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The account: the username as presented, qualified by its credential
    /// manager (see [`Attempt::of`]), so that a username's failures in one
    /// manager do not lock the same name out of another.
    pub user: String,
    /// The client's IP.
    pub ip: IpAddr,
    /// When it began, seconds since the epoch.
    pub now: u64,
    /// The Redis backend's id for the attempt (0 in memory).
    pub id: u64,
}

impl Attempt {
    /// An attempt for `user` of the default users file from `ip` at `now`.
    pub fn new(user: &str, ip: IpAddr, now: u64) -> Self {
        Self::of(None, user, ip, now)
    }

    /// An attempt for `user` of `manager` (none: the default users file).
    /// The key is one-to-one: a named manager's is `\x01NAME\x00user`
    /// (names hold no NUL); a default user's is the username itself, with
    /// a `\x00` before it if it starts with `\x00` or `\x01`, so that no
    /// typed username can stand for another manager's account. (Default
    /// users keep the keys they had before named managers came.)
    pub fn of(manager: Option<&str>, user: &str, ip: IpAddr, now: u64) -> Self {
        let key = match manager {
            Some(name) => format!("\u{1}{name}\u{0}{user}"),
            None if user.starts_with(['\u{0}', '\u{1}']) => format!("\u{0}{user}"),
            None => user.to_owned(),
        };
        Self { user: key, ip, now, id: 0 }
    }
}

/// The credential manager and the username of an account key made by
/// [`Attempt::of`], for logs.
fn account_of(key: &str) -> (Option<&str>, &str) {
    if let Some(rest) = key.strip_prefix('\u{1}') {
        if let Some((name, user)) = rest.split_once('\u{0}') {
            return (Some(name), user);
        }
    }
    (None, key.strip_prefix('\u{0}').unwrap_or(key))
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No answer: the hash queue was full, the client went away, or the
    /// username was locked meanwhile. Counts nothing.
    NoAnswer,
    /// A wrong password or an unknown user.
    Failed,
    /// The password was right.
    Succeeded,
}

/// A lock a failure started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Locked {
    /// Its length, seconds.
    pub seconds: u64,
    /// The user's consecutive locks, this one included.
    pub consecutive: u32,
}

/// What a gate let in, with the signal of a lock that comes while the
/// attempt waits (memory backend only).
#[derive(Debug)]
pub struct Admission {
    /// The gate.
    pub gate: Gate,
    /// Fired if the username is locked while this attempt is in flight.
    pub signal: Option<Arc<LockSignal>>,
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

    /// Whether it fired.
    pub fn is_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
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

/// The counters and audit lines of both backends: the one place that says
/// an account locked or an IP was throttled.
#[derive(Debug, Default)]
pub(crate) struct Events {
    /// Keys usernames in the log, so that a lock's line and its unlock's
    /// line can be matched without the unlock keeping the name.
    user_hasher: std::collections::hash_map::RandomState,
    locks: AtomicU64,
    refused: AtomicU64,
}

impl Events {
    fn user_key(&self, user: &str) -> u64 {
        self.user_hasher.hash_one(user)
    }

    fn locked(&self, account: &str, locked: Locked) {
        self.locks.fetch_add(1, Ordering::Relaxed);
        let (manager, user) = account_of(account);
        tracing::warn!(
            event = "account_locked",
            user = ?user,
            credential_manager = manager.unwrap_or("-"),
            user_key = format_args!("{:016x}", self.user_key(account)),
            seconds = locked.seconds,
            consecutive = locked.consecutive,
            "too many failed logins; the account is locked"
        );
    }

    fn throttled(&self, ip: IpAddr, seconds: u64, why: &'static str) {
        tracing::warn!(event = "ip_throttled", %ip, seconds, why);
    }

    fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

enum Backend {
    Memory(MemoryLockout),
    Shared(Arc<SharedLockout>),
}

/// Failure counters and locks, in this process or in Redis.
pub struct Lockout {
    /// Swapped by a config commit; counters and locks carry over.
    policy: arc_swap::ArcSwap<LockoutPolicy>,
    events: Arc<Events>,
    backend: Backend,
}

impl std::fmt::Debug for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Shared(_) => "redis",
        };
        write!(f, "Lockout({kind}, {:?})", self.policy())
    }
}

impl Lockout {
    /// Counters under `policy`: in Redis over `shared`, else in memory.
    pub fn new(policy: LockoutPolicy, shared: Option<Arc<RedisConn>>) -> Self {
        let events = Arc::new(Events::default());
        let backend = match shared {
            Some(conn) => Backend::Shared(Arc::new(SharedLockout::new(conn, Arc::clone(&events)))),
            None => Backend::Memory(MemoryLockout::new()),
        };
        Self { policy: arc_swap::ArcSwap::from_pointee(policy), events, backend }
    }

    /// The policy in force.
    pub fn policy(&self) -> LockoutPolicy {
        **self.policy.load()
    }

    /// Puts `policy` in force (a config commit). Counters and running locks
    /// stay; the new thresholds and times apply from the next attempt.
    pub fn set_policy(&self, policy: LockoutPolicy) {
        self.policy.store(Arc::new(policy));
    }

    /// Starts a password attempt: whether it may verify a password. An
    /// `Open` attempt is counted in flight until [`Lockout::finish`] (or
    /// [`Lockout::release_detached`]), so that a burst of concurrent
    /// guesses cannot slip past the threshold while the hashes run.
    /// Fails only when Redis does not answer.
    pub async fn begin(&self, attempt: &mut Attempt) -> Result<Admission, StoreError> {
        let p = self.policy();
        let (gate, signal) = match &self.backend {
            Backend::Memory(m) => m.gate(&p, self.events.user_key(&attempt.user), attempt.ip, attempt.now, true),
            Backend::Shared(s) => (s.begin_detached(&p, attempt).await?, None),
        };
        if gate != Gate::Open {
            self.events.refused();
        }
        Ok(Admission { gate, signal })
    }

    /// Ends an attempt [`Lockout::begin`] let through, and waits until it
    /// is counted. With Redis the count runs in a task of its own, so that
    /// it is made (with its audit lines) even if the request is dropped
    /// meanwhile; a Redis error loses it.
    pub async fn finish(&self, attempt: &Attempt, outcome: Outcome) {
        let p = self.policy();
        match &self.backend {
            Backend::Memory(m) => {
                let (locked, throttled) =
                    m.finish(&p, self.events.user_key(&attempt.user), attempt.ip, attempt.now, outcome);
                self.report(&attempt.user, attempt.ip, locked, throttled);
            }
            Backend::Shared(s) => {
                let (shared, attempt) = (Arc::clone(s), attempt.clone());
                let counted = tokio::spawn(async move {
                    if let Ok(f) = shared.finish(&p, &attempt, outcome).await {
                        shared.events().report_shared(&attempt.user, attempt.ip, f.locked, f.throttled);
                    }
                });
                let _ = counted.await;
            }
        }
    }

    fn report(&self, user: &str, ip: IpAddr, locked: Option<Locked>, throttled: Option<u64>) {
        self.events.report_shared(user, ip, locked, throttled);
    }

    /// Gives up an attempt in flight because its username was locked
    /// meanwhile (its answer is the locked user's): no count, but a refusal.
    pub async fn given_up(&self, attempt: &Attempt) {
        self.finish(attempt, Outcome::NoAnswer).await;
        self.events.refused();
    }

    /// Ends an attempt whose request went away (its client hung up), from a
    /// `Drop`: without waiting. `cost_a_hash`: its hash had started, so it
    /// counts against the IP (not the user).
    pub fn release_detached(&self, attempt: &Attempt, cost_a_hash: bool) {
        let p = self.policy();
        match &self.backend {
            Backend::Memory(m) => {
                m.finish(&p, self.events.user_key(&attempt.user), attempt.ip, attempt.now, Outcome::NoAnswer);
                if cost_a_hash {
                    if let Some(seconds) = m.ip_failure(&p, attempt.ip, attempt.now) {
                        self.events.throttled(attempt.ip, seconds, FAILED_LOGINS);
                    }
                }
            }
            // A slot left behind (a crash, a runtime shutting down) stops
            // counting 60 s after its attempt began (USER_BEGIN).
            Backend::Shared(s) => Arc::clone(s).release_later(p, attempt.clone(), cost_a_hash),
        }
    }

    /// Seconds `ip` is still throttled, if it is (counted as a refusal).
    /// Fails only when Redis does not answer.
    pub async fn ip_throttled(&self, ip: IpAddr, now: u64) -> Result<Option<u64>, StoreError> {
        let left = match &self.backend {
            Backend::Memory(m) => m.ip_throttled(ip, now),
            Backend::Shared(s) => s.ip_throttled(ip, now).await?,
        };
        if left.is_some() {
            self.events.refused();
        }
        Ok(left)
    }

    /// Counts a failure against `ip` only, and waits until it is counted,
    /// so that the client's next request sees it. `why` goes into the
    /// audit line of a throttle it starts.
    pub async fn ip_failure(&self, ip: IpAddr, now: u64, why: &'static str) {
        if let Some(counted) = self.ip_failure_detached(ip, now, why) {
            let _ = counted.await;
        }
    }

    /// Counts a failure against `ip` only: in memory at once, or in Redis
    /// from a task of its own (returned), so that a client hanging up does
    /// not take the count along; a Redis error loses it.
    pub fn ip_failure_detached(&self, ip: IpAddr, now: u64, why: &'static str) -> Option<tokio::task::JoinHandle<()>> {
        let p = self.policy();
        match &self.backend {
            Backend::Memory(m) => {
                if let Some(seconds) = m.ip_failure(&p, ip, now) {
                    self.events.throttled(ip, seconds, why);
                }
                None
            }
            Backend::Shared(s) => Arc::clone(s).ip_failure_later(p, ip, now, why),
        }
    }

    /// Sweeps one shard of the memory backend's maps (Redis expires its
    /// keys itself), logging the locks and throttles that ended.
    pub fn sweep_step(&self, now: u64) {
        let Backend::Memory(m) = &self.backend else { return };
        let swept = m.sweep_step(&self.policy(), now);
        for key in swept.unlocked {
            // The username itself is not kept (only a keyed hash).
            tracing::info!(event = "account_unlocked", user_key = format_args!("{key:016x}"), "the lock expired");
        }
        for ip in swept.unthrottled {
            tracing::info!(event = "ip_unthrottled", %ip, "the IP may try again");
        }
    }

    /// Locks taken since start (by this instance).
    pub fn locks(&self) -> u64 {
        self.events.locks.load(Ordering::Relaxed)
    }

    /// Attempts refused without a hash since start.
    pub fn refused(&self) -> u64 {
        self.events.refused.load(Ordering::Relaxed)
    }

    /// Usernames and IPs tracked in memory.
    pub fn tracked(&self) -> (usize, usize) {
        match &self.backend {
            Backend::Memory(m) => (m.tracked_users(), m.tracked_ips()),
            Backend::Shared(_) => (0, 0),
        }
    }

    /// Appends the lockout's metrics.
    pub fn write_metrics(&self, out: &mut Exposition) {
        let (users, ips) = self.tracked();
        out.counter("ropc_lockout_locks_total", "Accounts locked for failed logins.", self.locks());
        out.counter(
            "ropc_lockout_refused_total",
            "Attempts refused by a lock or IP throttle (with no hash spent, but for a burst's hashes already running at its lock).",
            self.refused(),
        );
        out.gauge("ropc_lockout_tracked_users", "Usernames with failure counters.", users);
        out.gauge("ropc_lockout_tracked_ips", "IPs with failure counters.", ips);
    }
}

impl Events {
    /// The audit lines and counters of what a finished attempt started.
    fn report_shared(&self, user: &str, ip: IpAddr, locked: Option<Locked>, throttled: Option<u64>) {
        if let Some(locked) = locked {
            self.locked(user, locked);
        }
        if let Some(seconds) = throttled {
            self.throttled(ip, seconds, FAILED_LOGINS);
        }
    }
}

/// A password attempt the lockout counts in flight: when dropped armed,
/// which happens only if the request itself is dropped before the attempt
/// ends (its client hung up while the hash waited or ran), the slot is
/// released. Otherwise the slot would stay taken, and a few such hang-ups
/// would lock the username out of every untrusted IP.
///
/// A hang-up after the hash started counts against the IP (not the user):
/// it cost a hash, and uncounted, one IP could keep the workers busy for
/// ever by hanging up just before each answer. A hang-up while the job was
/// still queued (its hash is then skipped) counts nothing: those are mostly
/// legitimate clients timing out while an overloaded server queues their
/// logins, and an office behind one NAT must not be throttled for that. A
/// client that hangs up learns nothing before its guess is counted: the
/// attempt ends, and counts, as soon as its hash answers, before any
/// padding of the answer. (A worker that takes the job in the very instant
/// the request is dropped hashes it uncounted: too narrow to aim at.)
pub struct InFlight<'a> {
    lockout: &'a Lockout,
    attempt: &'a Attempt,
    armed: bool,
    /// Set when the hash starts.
    pub started: Arc<AtomicBool>,
}

impl<'a> InFlight<'a> {
    /// Guards `attempt`, which [`Lockout::begin`] let in.
    pub fn new(lockout: &'a Lockout, attempt: &'a Attempt) -> Self {
        Self { lockout, attempt, armed: true, started: Arc::default() }
    }

    /// Whether its hash started.
    pub fn hash_started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// The attempt ends otherwise (finished, given up): nothing to release.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.lockout.release_detached(self.attempt, self.hash_started());
        }
    }
}

#[cfg(test)]
mod tests;
