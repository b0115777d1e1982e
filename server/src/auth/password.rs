//! One password attempt under the brute-force policy: the lockout's gate
//! first (a locked username or a throttled IP spends no hash), then the
//! hash on the pool, then the count, then the answer padded so that a
//! locked account, an unknown user and a fast legacy hash all take as long
//! as a verification at the configured cost.

use super::{Auth, Refused, UNAVAILABLE};
use crate::credentials::{Backend, NamedManager};
use crate::live::Live;
use crate::lockout::{Attempt, Gate, InFlight, Lockout, Outcome, FAILED_LOGINS, REFUSED_GUESSES};
use ropc_core::{PasswordOutcome, UserRef};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The least a directory's refused answers are held past its typical bind.
const DIRECTORY_MARGIN: Duration = Duration::from_millis(1);

/// Whether `manager` is an LDAP directory, whose refused answers are held
/// past its typical bind.
fn is_directory(manager: Option<&Arc<NamedManager>>) -> bool {
    manager.is_some_and(|m| matches!(m.backend, Backend::Ldap(_)))
}

/// What a password attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The answer for the core.
    pub outcome: PasswordOutcome,
    /// A valid login whose stored hash changed in its backend since it was
    /// last seen: this user's earlier grants end.
    pub ends_earlier_grants: Option<UserRef>,
}

/// A guess refused by a user's lock (or given up when its username
/// locked), not yet counted against its IP: it counts when its answer is
/// due. Dropped armed, its client having hung up first, it counts only if
/// a guess let through would have had its hash started by then
/// (`hash_due`), as a hung-up guess counts only once its hash started (see
/// [`InFlight`]): so a hang-up does not tell a locked account from another
/// either.
struct RefusedGuess<'a> {
    lockout: &'a Lockout,
    ip: IpAddr,
    now: u64,
    armed: bool,
    hash_due: Instant,
    why: &'static str,
}

impl RefusedGuess<'_> {
    /// Counts it now that its answer is due (if armed).
    async fn now(mut self) {
        if std::mem::take(&mut self.armed) {
            self.lockout.ip_failure(self.ip, self.now, self.why).await;
        }
    }
}

impl Drop for RefusedGuess<'_> {
    fn drop(&mut self) {
        if self.armed && Instant::now() >= self.hash_due {
            drop(self.lockout.ip_failure_detached(self.ip, self.now, self.why));
        }
    }
}

impl Auth {
    /// What a verification by `manager` (none: the default users file)
    /// takes right now.
    fn typical(&self, manager: Option<&Arc<NamedManager>>) -> Duration {
        match manager {
            Some(m) if !m.typical().is_zero() => m.typical(),
            _ => self.pacing.typical(),
        }
    }

    /// How long a refused answer by `manager` takes: a verification's
    /// typical time, and for a directory a margin above it. A directory does
    /// a little less for an unknown user (an empty search result, a bind to
    /// a DN it does not have) than for a wrong password, a tenth of a 2-ms
    /// bind, which padding to the mean cannot hide: each is as often above
    /// it as below. Held past both, every refused answer ends on the same
    /// timer tick.
    fn refused_time(&self, manager: Option<&Arc<NamedManager>>) -> Duration {
        let typical = self.typical(manager);
        if is_directory(manager) {
            typical + (typical / 4).max(DIRECTORY_MARGIN)
        } else {
            typical
        }
    }

    /// Verifies a password with `manager` (the client's; none: the default
    /// users file) under the brute-force policy: a locked username or a
    /// throttled IP spends no hash and asks no backend. A locked username
    /// waits as long as a verification takes, so that its answer cannot be
    /// told from a wrong password.
    pub async fn verify_password(
        &self,
        live: &Live,
        manager: Option<&Arc<NamedManager>>,
        username: &str,
        password: &str,
        peer: IpAddr,
        now: u64,
    ) -> Result<Verified, Refused> {
        let locked = Verified { outcome: PasswordOutcome::Locked, ends_earlier_grants: None };
        // A database's collation or a directory's matching rule may ignore
        // case (MySQL's default, LDAP's caseIgnoreMatch on uid): `ALICE`
        // is then alice, and must not be a fresh lockout count. A users
        // file matches exactly.
        let folded;
        let counted_as = match manager {
            Some(m) if !matches!(m.backend, Backend::File { .. }) => {
                folded = username.to_lowercase();
                folded.as_str()
            }
            _ => username,
        };
        let mut attempt = Attempt::of(manager.map(|m| &*m.name), counted_as, peer, now);
        let admission = self.lockout.begin(&mut attempt).await.map_err(|_| UNAVAILABLE)?;
        match admission.gate {
            Gate::IpThrottled { retry_after } => return Err(Refused::Throttled { retry_after }),
            Gate::UserLocked | Gate::Crowded => {
                // A refused guess is still a failed login from its IP: an IP
                // that goes on hammering a locked account is throttled (and
                // then answered at once, with 429) like one spraying guesses
                // over many accounts. Counted when its answer is due, as a
                // wrong password's count comes after its hash; if the client
                // hangs up first, only once a guess let through would have
                // had its hash started (see `RefusedGuess`). Not an attempt
                // over a clean record's cap: that is no guess yet.
                let count = RefusedGuess {
                    lockout: &self.lockout,
                    ip: peer,
                    now,
                    armed: admission.gate == Gate::UserLocked,
                    hash_due: Instant::now() + self.pacing.queue_wait(),
                    why: REFUSED_GUESSES,
                };
                // Take as long as a real verification does right now, queue
                // wait included.
                self.pacing.sleep(self.refused_time(manager)).await;
                count.now().await;
                return Ok(locked);
            }
            Gate::Open => {}
        }
        // The lockout counts this attempt in flight until it ends; if the
        // request goes away first (its client disconnected while the hash
        // waited or ran), the guard releases the slot (see `InFlight`).
        let mut in_flight = InFlight::new(&self.lockout, &attempt);
        let started = Instant::now();
        // When this job's hash would start, if it is hashed in turn behind
        // the queue it joins, and when its answer would come (for an
        // attempt abandoned below: only watched attempts can be).
        let queued = self.pacing.queue_wait();
        let answer_in_turn = self.pacing.mean_hash_time().map(|hash| queued.saturating_add(hash));
        let verified = self.check_login(live, manager, username, password, Arc::clone(&in_flight.started), now);
        let verified = match &admission.signal {
            None => verified.await,
            Some(signal) => tokio::select! {
                biased;
                verified = verified => verified,
                () = signal.fired() => {
                    // The username was locked while this attempt waited
                    // (a burst of guesses): dropping the verification
                    // drops its queued hash, which the pool then skips (a
                    // hash already running finishes unread). The answer is
                    // a locked user's, whatever the password, as it would
                    // be for an attempt arriving now; it still counts
                    // against the IP, as the guess it replaces would have,
                    // when its answer is due (a hang-up before: once its
                    // hash would have started in turn, if it had not).
                    in_flight.disarm();
                    self.lockout.given_up(&attempt).await;
                    let hash_due = if in_flight.hash_started() { started } else { started + queued };
                    let count = RefusedGuess { lockout: &self.lockout, ip: peer, now, armed: true, hash_due, why: FAILED_LOGINS };
                    // It comes when the hash would have answered, so that
                    // the rest of a burst is not answered all at once.
                    self.pacing.pad(started, answer_in_turn.unwrap_or_else(|| self.refused_time(manager))).await;
                    count.now().await;
                    return Ok(locked);
                }
            },
        };
        let checked = match verified {
            Ok(checked) => checked,
            Err(e) => {
                // No answer (a full queue, a backend that is down): no count.
                in_flight.disarm();
                self.lockout.finish(&attempt, Outcome::NoAnswer).await;
                return Err(e);
            }
        };
        let outcome = checked.outcome;
        let elapsed = started.elapsed();
        // Counted before any padding below: a client that hangs up while a
        // wrong password's answer is held back must not take its guess
        // uncounted.
        in_flight.disarm();
        let counted = if matches!(outcome, PasswordOutcome::Valid(_)) { Outcome::Succeeded } else { Outcome::Failed };
        self.lockout.finish(&attempt, counted).await;
        if checked.typical {
            match manager {
                Some(m) => m.observe(elapsed),
                None => self.pacing.observe(elapsed),
            }
        }
        if !matches!(outcome, PasswordOutcome::Valid(_)) && (!checked.typical || is_directory(manager)) {
            // A legacy hash (bcrypt at cost 4, {SHA}) can be far faster than
            // the dummy hash an unknown user costs, and a directory's work
            // differs a little with the user: answer no sooner than a
            // verification at the configured cost (with a directory, a
            // margin past it), so that the timing does not tell that the
            // user exists.
            self.pacing.pad(started, self.refused_time(manager)).await;
        }
        let ends_earlier_grants = match outcome {
            PasswordOutcome::Valid(user) => {
                if let Some(upgrade) = checked.upgrade {
                    self.upgrade_later(live, upgrade, password);
                }
                checked.changed.then_some(user)
            }
            _ => None,
        };
        Ok(Verified { outcome, ends_earlier_grants })
    }
}
