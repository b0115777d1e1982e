//! Who is asking: the client's secret, and the user's password under the
//! brute-force policy, with the answer paced so that its timing tells
//! nothing. Hashes run where the [`PasswordVerifier`] puts them (the hash
//! pool), counts go to the [`Lockout`], and upgraded hashes are written
//! back after the answer.
//!
//! | module | owns |
//! |---|---|
//! | `client` | client authentication by the client's method, the IP throttle in front of it, and the proofs for bound tokens |
//! | `assertion` | client assertions (RFC 7523): claims, signature, `jti` |
//! | `dpop` | DPoP proofs (RFC 9449): header, signature, `htm`/`htu`, age |
//! | `password` | a password attempt: gate, hash, count, pad |
//! | `pacing` | how long answers take: the typical verification, the delays |
//! | `upgrade` | re-hashing a legacy hash after a login, off the answer's path |

pub mod assertion;
mod backends;
mod client;
pub mod dpop;
mod pacing;
mod password;
mod upgrade;

pub use assertion::issuer as assertion_issuer;
pub use client::{DpopHeader, RequestContext};
pub use pacing::{Delays, Pacing};
pub use password::Verified;

use crate::config::Config;
use crate::credentials::ManagerError;
use crate::lockout::Lockout;
use crate::store::{RedisConn, ReplayCache};
use ropc_core::OAuthError;
use ropc_hash::{HashPool, PasswordVerifier, VerifyError};
use ropc_metrics::Exposition;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why a client or a password was not checked: the request fails with
/// `503` or `429`, and `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The verifier could not take the job: its queue is full, or it (or
    /// the shared lockout) is unavailable.
    Verify(VerifyError),
    /// The client's IP is throttled for its failures.
    Throttled {
        /// Seconds until it may try again.
        retry_after: u64,
    },
    /// The credential manager did not answer.
    Backend(ManagerError),
    /// The replay cache could not record a proof's `jti` (full, or Redis
    /// down): the proof is not accepted unrecorded.
    ReplayCache,
}

impl Refused {
    /// The OAuth error, and the `Retry-After` seconds to send with it.
    pub fn error(self) -> (OAuthError, u64) {
        match self {
            Refused::Verify(VerifyError::Overloaded { retry_after }) => {
                (OAuthError::OVERLOADED, retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            Refused::Verify(VerifyError::Unavailable) => (OAuthError::OVERLOADED, 1),
            Refused::Throttled { retry_after } => (OAuthError::IP_THROTTLED, retry_after.max(1)),
            Refused::Backend(e) => (OAuthError::BACKEND_UNAVAILABLE, e.retry_after()),
            Refused::ReplayCache => (OAuthError::STORE_FAILED, 1),
        }
    }
}

/// The shared lockout did not answer: as a verifier that is unavailable.
const UNAVAILABLE: Refused = Refused::Verify(VerifyError::Unavailable);

/// Authentication of clients and users.
#[derive(Debug)]
pub struct Auth {
    /// Where password hashes run.
    pub verifier: Arc<dyn PasswordVerifier>,
    /// The hash pool, when `verifier` is one (for `Retry-After` and metrics).
    pub pool: Option<Arc<HashPool>>,
    /// Failed-login counters and locks.
    pub lockout: Lockout,
    pacing: Pacing,
    /// Seen assertion and DPoP `jti`s.
    pub replay: ReplayCache,
    /// `[client_auth]` as the server started: the replay cache's entries
    /// last as long as these windows said when they were recorded, so a
    /// commit cannot widen them.
    limits: crate::config::ProofLimits,
    /// Hashes upgraded to argon2id since the start.
    upgraded: Arc<AtomicU64>,
}

/// Why [`Auth`] could not start.
#[derive(Debug)]
pub struct PoolError(pub std::io::Error);

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot start the hash pool: {}", self.0)
    }
}

impl std::error::Error for PoolError {}

impl Auth {
    /// Starts the hash pool `config` asks for; the lockout counts in
    /// Redis over `shared`, if given. `typical` is what one verification at
    /// the configured cost takes (timed at start), so that padded answers
    /// match it from the first request on.
    pub fn new(config: &Config, shared: Option<Arc<RedisConn>>, typical: Duration) -> Result<Self, PoolError> {
        let p = &config.hash_pool;
        let pool = HashPool::new(p.workers, p.queue, p.priority()).map_err(PoolError)?;
        let pool = Arc::new(pool.with_max_queue_wait(p.max_queue_wait));
        Ok(Self {
            verifier: pool.clone(),
            pacing: Pacing::new(typical, Some(Arc::clone(&pool))),
            pool: Some(pool),
            limits: config.proof_limits,
            replay: match &shared {
                Some(conn) => ReplayCache::Redis(Arc::clone(conn)),
                None => ReplayCache::memory(config.proof_limits.replay_cache_entries),
            },
            lockout: Lockout::new(config.lockout, shared),
            upgraded: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Appends the hash pool's, the upgrades' and the lockout's metrics.
    pub fn write_metrics(&self, out: &mut Exposition) {
        if let Some(pool) = &self.pool {
            pool.write_metrics(out);
        }
        out.counter(
            "ropc_password_upgrades_total",
            "Legacy or outdated password hashes replaced with argon2id after a login.",
            self.upgraded.load(Ordering::Relaxed),
        );
        self.lockout.write_metrics(out);
        out.gauge(
            "ropc_replay_cache_entries",
            "Client assertion and DPoP proof jtis held in memory until they expire.",
            self.replay.len() as u64,
        );
    }
}
