//! The lockout's counters in Redis, shared by every instance: the same
//! decisions as the memory backend ([`super::memory`]), made by Lua scripts
//! so that each check-and-count is one atomic step in Redis. The parity
//! tests run one table of cases on both backends.
//!
//! Keys (under the token store's prefix; usernames only as a SHA-256 digest):
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `lu:{<user hash>}` | failure window, lock and back-off of a username | idle time |
//! | `lt:{<user hash>}:<ip>` | an IP the user logged in from (trusted) | `trusted_ip_days` |
//! | `lp:{<user hash>}` | the user's attempts in flight: ids scored by when they began | idle time (gone with its last member) |
//! | `li:<ip>` | failure window and throttle of an IP | idle time |
//!
//! Redis runs a script whether or not anyone reads its answer, so the
//! attempt's in-flight slot is given back explicitly whenever its request
//! goes away ([`SharedLockout::begin_detached`], [`SharedLockout::release_later`]).

use super::{Attempt, Events, Gate, Locked, LockoutPolicy, Outcome, CLEAN_BURST, FAILED_LOGINS};
use crate::store::redis::{convert, evalsha, hex, Lua, RedisConn, Retry};
use crate::store::StoreError;
use redis::{Cmd, Value};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The sliding window of the memory backend ([`super::window`]), in Lua: `roll` then
/// `estimate` over hash fields ws (start), wc (current), wp (previous);
/// put before each script that uses it, at compile time.
macro_rules! lua_window {
    () => {
        r"
local function window(key, now, len)
  local ws = tonumber(redis.call('HGET', key, 'ws') or '0')
  local wc = tonumber(redis.call('HGET', key, 'wc') or '0')
  local wp = tonumber(redis.call('HGET', key, 'wp') or '0')
  local elapsed = math.max(now - ws, 0)
  if elapsed >= 2 * len then ws = now - now % len; wc = 0; wp = 0
  elseif elapsed >= len then ws = ws + len; wp = wc; wc = 0 end
  return ws, wc, wp
end
local function estimate(ws, wc, wp, now, len)
  local into = math.max(math.min(now - ws, len), 0)
  return wc + math.floor(wp * (len - into) / len + 0.5)
end
"
    };
}

/// Starts a password attempt: 0 open, 1 locked (or at the cap of a record
/// with failures or past locks), 2 at a clean record's cap
/// (`Gate::Crowded`). KEYS: user, trust, in flight. ARGV: now,
/// max_failures, window, clean burst, idle TTL, the attempt's id.
///
/// Attempts in flight are members of a sorted set, scored by when they
/// began: each finish removes its own (a second one, or one for an attempt
/// never admitted, removes nothing), and each stops counting 60 s after it
/// began (ended or not; a login still queued then no longer holds a slot),
/// whatever else happens for the user. So a slot whose finish never comes
/// (an instance that crashed, a check whose answer came too late) is held
/// about 60 s at most. The set lives a second longer than the last
/// member's 60 s, at least.
static USER_BEGIN: Lua = Lua::new(concat!(
    lua_window!(),
    r"
local now, maxf, len, burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - 60))
local pe = redis.call('ZCARD', KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then
  -- a trusted IP passes, counted in flight so that its finish releases its own slot
  redis.call('ZADD', KEYS[3], now, ARGV[6])
  redis.call('EXPIRE', KEYS[3], ttl + 1)
  return 0
end
local lu = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0')
if lu > now then return 1 end
local ws, wc, wp = window(KEYS[1], now, len)
local failures = estimate(ws, wc, wp, now, len)
local cl = tonumber(redis.call('HGET', KEYS[1], 'cl') or '0')
local suspect = failures > 0 or cl > 0
local cap = maxf * burst
if suspect then cap = maxf end
if failures + pe >= cap then
  if suspect then return 1 end
  return 2
end
redis.call('HSET', KEYS[1], 'ws', ws, 'wc', wc, 'wp', wp)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[3], now, ARGV[6])
redis.call('EXPIRE', KEYS[3], ttl + 1)
return 0
"
));

/// Ends an attempt. KEYS: user, trust, in flight. ARGV: now, outcome (0
/// none, 1 failed, 2 success), max_failures, window, lock_time,
/// max_lock_time, idle TTL, trust TTL, the attempt's id. Returns the
/// lock's seconds when this failure locked the user (else 0), and the
/// user's consecutive locks.
static USER_FINISH: Lua = Lua::new(concat!(
    lua_window!(),
    r"
local now, outcome, maxf, len = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lock_time, max_lock, ttl, trust_ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('ZREM', KEYS[3], ARGV[9])
local locked = 0
local lu = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0')
if outcome == 1 and lu <= now then
  local ws, wc, wp = window(KEYS[1], now, len)
  wc = wc + 1
  if estimate(ws, wc, wp, now, len) >= maxf then
    local cl = tonumber(redis.call('HGET', KEYS[1], 'cl') or '0') + 1
    locked = math.min(lock_time * 2 ^ math.min(cl - 1, 20), max_lock)
    redis.call('HSET', KEYS[1], 'cl', cl, 'lu', now + locked, 'ws', now, 'wc', 0, 'wp', 0)
  else
    redis.call('HSET', KEYS[1], 'ws', ws, 'wc', wc, 'wp', wp)
  end
elseif outcome == 2 then
  redis.call('HSET', KEYS[1], 'ws', now, 'wc', 0, 'wp', 0)
  if lu <= now then redis.call('HSET', KEYS[1], 'cl', 0) end
  if trust_ttl > 0 then redis.call('SET', KEYS[2], 1, 'EX', trust_ttl) end
end
redis.call('EXPIRE', KEYS[1], ttl)
return {locked, tonumber(redis.call('HGET', KEYS[1], 'cl') or '0')}
"
));

/// Counts a failure against an IP. KEYS: ip. ARGV: now, ip_max_failures,
/// window, idle TTL. Returns the throttle's seconds when this failure
/// started one, else 0.
static IP_FAILURE: Lua = Lua::new(concat!(
    lua_window!(),
    r"
local now, maxf, len, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ws, wc, wp = window(KEYS[1], now, len)
wc = wc + 1
local tu = tonumber(redis.call('HGET', KEYS[1], 'tu') or '0')
local started = 0
if estimate(ws, wc, wp, now, len) >= maxf and tu <= now then
  redis.call('HSET', KEYS[1], 'tu', now + len)
  started = len
end
redis.call('HSET', KEYS[1], 'ws', ws, 'wc', wc, 'wp', wp)
redis.call('EXPIRE', KEYS[1], ttl)
return started
"
));

/// The lockout's scripts, for [`RedisConn::new`].
pub static SCRIPTS: [&Lua; 3] = [&USER_BEGIN, &USER_FINISH, &IP_FAILURE];

/// What [`SharedLockout::finish`] started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Finished {
    pub(super) locked: Option<Locked>,
    pub(super) throttled: Option<u64>,
}

/// The shared counters.
#[derive(Debug)]
pub struct SharedLockout {
    conn: Arc<RedisConn>,
    events: Arc<Events>,
}

/// An attempt whose in-flight slot is to be given back if nobody reads its
/// gate.
struct Release {
    lockout: Arc<SharedLockout>,
    policy: LockoutPolicy,
    attempt: Attempt,
}

/// The answer of a [`SharedLockout::begin_detached`] not yet read: dropped
/// with an open gate sent but unread, it gives the slot back.
struct UnreadGate {
    rx: tokio::sync::oneshot::Receiver<Result<Gate, StoreError>>,
    release: Option<Release>,
}

impl Drop for UnreadGate {
    fn drop(&mut self) {
        let Some(Release { lockout, policy, attempt }) = self.release.take() else { return };
        // After `close`, the task's send fails (and it gives the slot back
        // itself), or it already succeeded and the gate is read here.
        self.rx.close();
        // A refused guess whose request went away before reading its gate
        // counts nothing, as an open one whose hash had not started.
        if let Ok(Ok(Gate::Open)) = self.rx.try_recv() {
            lockout.release_later(policy, attempt, false);
        }
    }
}

impl SharedLockout {
    pub(super) fn new(conn: Arc<RedisConn>, events: Arc<Events>) -> Self {
        Self { conn, events }
    }

    /// A user's keys: its counters, its trust of `ip`, its attempts in
    /// flight.
    fn user_keys(&self, user: &str, ip: IpAddr) -> [String; 3] {
        let digest = ring::digest::digest(&ring::digest::SHA256, user.as_bytes());
        let tag = hex(&digest.as_ref()[..16]);
        // One hash tag: a user's keys live in one cluster slot.
        [
            self.conn.key("lu", &format!("{{{tag}}}")),
            self.conn.key("lt", &format!("{{{tag}}}:{ip}")),
            self.conn.key("lp", &format!("{{{tag}}}")),
        ]
    }

    fn ip_key(&self, ip: IpAddr) -> String {
        self.conn.key("li", &ip.to_string())
    }

    /// Seconds the IP is still throttled, if it is.
    pub(super) async fn ip_throttled(&self, ip: IpAddr, now: u64) -> Result<Option<u64>, StoreError> {
        let until: Option<u64> =
            self.conn.one(redis::cmd("HGET").arg(self.ip_key(ip)).arg("tu").clone(), Retry::Safe).await?;
        Ok(until.filter(|u| *u > now).map(|u| u - now))
    }

    /// The IP check and the user gate in one pipeline. An open gate holds
    /// a slot in flight under `attempt.id` until [`Self::finish`] with the
    /// same id, or for 60 s.
    async fn begin(&self, p: &LockoutPolicy, attempt: &Attempt) -> Result<Gate, StoreError> {
        let Attempt { user, ip, now, id } = attempt;
        let mut cmds = vec![redis::cmd("HGET").arg(self.ip_key(*ip)).arg("tu").clone()];
        if p.max_failures != 0 {
            let [ukey, tkey, pkey] = self.user_keys(user, *ip);
            let burst = u64::from(CLEAN_BURST);
            cmds.push(evalsha(
                &USER_BEGIN,
                &[&ukey, &tkey, &pkey],
                &[*now, u64::from(p.max_failures), p.window, burst, p.idle_time(), *id],
            ));
        }
        // Safe to send again: the attempt's slot is a set member by its id.
        let values = self.conn.batch(cmds, Retry::Safe).await?;
        let mut values = values.into_iter();
        let until: Option<u64> = convert(values.next().unwrap_or(Value::Nil))?;
        let locked: Option<u64> = convert(values.next().unwrap_or(Value::Nil))?;
        if let Some(until) = until.filter(|u| u > now) {
            // The user gate ran in the same pipeline: an attempt it let in
            // gives its in-flight slot back, or throttled requests would
            // fill the user's slots.
            if p.max_failures != 0 && locked == Some(0) {
                // A failure here leaves the slot taken for 60 s
                // (USER_BEGIN); the answer is still the throttle's.
                let _ = self.finish(p, attempt, Outcome::NoAnswer).await;
            }
            return Ok(Gate::IpThrottled { retry_after: until - now });
        }
        Ok(match locked {
            Some(1) => Gate::UserLocked,
            Some(2) => Gate::Crowded,
            _ => Gate::Open,
        })
    }

    /// [`Self::begin`] under a new attempt id (set in `attempt`), in a
    /// task of its own, for a request that may be dropped while it waits
    /// (its client hung up). Redis runs the user gate whether or not anyone
    /// reads the answer, so an open gate that reaches nobody would keep its
    /// in-flight slot for 60 s; repeated hang-ups could then hold a
    /// username shut. Here an open gate nobody received gives its slot
    /// back, and so does a check that failed: one that outlived
    /// `command_timeout_ms` (answered 503) may still run in Redis. The
    /// release removes this attempt's own slot or nothing; should Redis run
    /// the check after it (the timeout drops the connection, and the
    /// release goes over a new one), the slot stops counting 60 s after the
    /// attempt began.
    pub(super) async fn begin_detached(
        self: &Arc<Self>,
        p: &LockoutPolicy,
        attempt: &mut Attempt,
    ) -> Result<Gate, StoreError> {
        attempt.id = new_attempt();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (lockout, policy, task_attempt) = (Arc::clone(self), *p, attempt.clone());
        tokio::spawn(async move {
            let gate = lockout.begin(&policy, &task_attempt).await;
            let failed = gate.is_err();
            let unread_open = matches!(tx.send(gate), Err(Ok(Gate::Open)));
            if failed || unread_open {
                // Nobody will finish this attempt: the request went away
                // before an open gate reached it, or it was answered 503.
                let _ = lockout.finish(&policy, &task_attempt, Outcome::NoAnswer).await;
            }
        });
        let release = Release { lockout: Arc::clone(self), policy: *p, attempt: attempt.clone() };
        let mut pending = UnreadGate { rx, release: Some(release) };
        let gate = (&mut pending.rx).await.unwrap_or(Err(StoreError));
        pending.release = None;
        gate
    }

    /// Gives back the in-flight slot that [`Self::begin`] took for
    /// `attempt`, whose request went away, from a task of its own (the
    /// caller is a `Drop`); `cost_a_hash` also counts a failure against the
    /// IP. Outside a runtime (a drop at shutdown) the slot is left to the
    /// 60-s rule of USER_BEGIN.
    pub(super) fn release_later(self: Arc<Self>, p: LockoutPolicy, attempt: Attempt, cost_a_hash: bool) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let _ = self.finish(&p, &attempt, Outcome::NoAnswer).await;
            if cost_a_hash {
                self.count_ip(&p, attempt.ip, attempt.now, FAILED_LOGINS).await;
            }
        });
    }

    /// [`Self::ip_failure`], with the audit line of a throttle it starts
    /// (`why`); a Redis error loses the count.
    pub(super) async fn count_ip(&self, p: &LockoutPolicy, ip: IpAddr, now: u64, why: &'static str) {
        if let Ok(seconds @ 1..) = self.ip_failure(p, ip, now).await {
            self.events.throttled(ip, seconds, why);
        }
    }

    /// [`Self::count_ip`] in a task of its own (returned; `None` outside a
    /// runtime), so that a request dropped meanwhile does not take the
    /// count along.
    pub(super) fn ip_failure_later(
        self: Arc<Self>,
        p: LockoutPolicy,
        ip: IpAddr,
        now: u64,
        why: &'static str,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(runtime.spawn(async move { self.count_ip(&p, ip, now, why).await }))
    }

    /// Ends the attempt [`Self::begin`] admitted: what it started.
    pub(super) async fn finish(
        &self,
        p: &LockoutPolicy,
        attempt: &Attempt,
        outcome: Outcome,
    ) -> Result<Finished, StoreError> {
        let Attempt { user, ip, now, id } = attempt;
        let code: u64 = match outcome {
            Outcome::NoAnswer => 0,
            Outcome::Failed => 1,
            Outcome::Succeeded => 2,
        };
        let mut cmds = Vec::with_capacity(2);
        if p.max_failures != 0 {
            let [ukey, tkey, pkey] = self.user_keys(user, *ip);
            let trust_ttl = p.trusted_ip_days.saturating_mul(86_400);
            cmds.push(evalsha(
                &USER_FINISH,
                &[&ukey, &tkey, &pkey],
                &[
                    *now,
                    code,
                    u64::from(p.max_failures),
                    p.window,
                    p.lock_time,
                    p.max_lock_time,
                    p.idle_time(),
                    trust_ttl,
                    *id,
                ],
            ));
        }
        let ip_counted = outcome == Outcome::Failed && p.ip_max_failures != 0;
        if ip_counted {
            cmds.push(self.ip_failure_cmd(p, *ip, *now));
        }
        if cmds.is_empty() {
            return Ok(Finished::default());
        }
        // Never sent twice: a second run would count the failure twice.
        let mut values = self.conn.batch(cmds, Retry::Never).await?.into_iter();
        let mut finished = Finished::default();
        if p.max_failures != 0 {
            let (seconds, consecutive): (u64, u32) = convert(values.next().unwrap_or(Value::Nil))?;
            finished.locked = (seconds > 0).then_some(Locked { seconds, consecutive });
        }
        if ip_counted {
            let seconds: u64 = convert(values.next().unwrap_or(Value::Nil))?;
            finished.throttled = (seconds > 0).then_some(seconds);
        }
        Ok(finished)
    }

    fn ip_failure_cmd(&self, p: &LockoutPolicy, ip: IpAddr, now: u64) -> Cmd {
        evalsha(&IP_FAILURE, &[&self.ip_key(ip)], &[now, u64::from(p.ip_max_failures), p.window, p.idle_time()])
    }

    /// Counts a failure against `ip` alone (a failed client
    /// authentication, a guess refused by a lock, a hang-up that cost a
    /// hash); returns the seconds of a throttle it started.
    pub(super) async fn ip_failure(&self, p: &LockoutPolicy, ip: IpAddr, now: u64) -> Result<u64, StoreError> {
        if p.ip_max_failures == 0 {
            return Ok(0);
        }
        self.conn.one(self.ip_failure_cmd(p, ip, now), Retry::Never).await
    }

    /// The events sink (counters and the audit lines).
    pub(super) fn events(&self) -> &Events {
        &self.events
    }
}

/// A new attempt id: unique among this process's attempts, and (with a
/// random part drawn once) among the instances sharing the Redis.
pub fn new_attempt() -> u64 {
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nonce = *NONCE.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without the system's randomness, the time still tells instances
        // apart in practice.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
            bytes = u64::try_from(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
            )
            .unwrap_or(u64::MAX)
            .to_le_bytes();
        }
        u64::from_le_bytes(bytes)
    });
    nonce ^ NEXT.fetch_add(1, Ordering::Relaxed)
}
