//! ropc-hash: password hashes for ropc.
//!
//! | module | owns |
//! |---|---|
//! | [`StoredHash`] (`stored`) | a stored hash, parsed once, verified with caller-owned memory |
//! | `legacy` | the formats of users migrated from other systems (bcrypt, PBKDF2, SHA-crypt, ...) |
//! | `argon` | new argon2id hashes, [`HashParams`], generated secrets |
//! | [`HashMemory`] (`memory`) | argon2 memory kept between hashes, in huge pages |
//! | [`HashPool`] (`pool`) | the bounded pool of hash worker threads |
//! | [`InlineVerifier`] (`inline`) | hashing on the caller's thread |
//!
//! Verification sits behind the [`PasswordVerifier`] trait so that the
//! runtime decides where hashes run: a bounded pool of worker threads
//! ([`HashPool`]), inline on the caller's thread ([`InlineVerifier`], for
//! tests and embedders), or elsewhere entirely (another process or machine:
//! implement `try_submit` to send the job and complete the [`Pending`] when
//! the answer comes back).
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod argon;
mod error;
mod inline;
mod legacy;
mod memory;
mod pool;
mod stored;

pub use argon::{generate_secret, hash_password, HashParams};
pub use error::HashError;
pub use inline::InlineVerifier;
pub use memory::HashMemory;
pub use pool::{lower_priority, HashPool};
pub use stored::StoredHash;

/// The hash workers' default nice value (`[hash_pool] nice`); see
/// [`lower_priority`] and docs/operations.md for the measurement behind it.
pub const DEFAULT_NICE: i32 = 19;

/// How the OS schedules the hash workers against the request threads
/// (`[hash_pool] policy` and `nice`); see [`lower_priority`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashPriority {
    /// The normal policy at this nice value (0 leaves the threads alone).
    Nice(i32),
    /// `SCHED_IDLE`: the workers run on the cycles no other thread wants,
    /// and a waking request thread always preempts them at once.
    Idle,
}

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

/// One verification: a password and the stored hash to check it against.
pub struct VerifyJob {
    /// The presented password; zeroed when the job is dropped.
    pub password: Zeroizing<Vec<u8>>,
    /// The stored hash.
    pub hash: Arc<StoredHash>,
    /// Set by the verifier when the hash starts (or the job leaves for a
    /// remote worker), if the caller wants to know: a login whose client
    /// hangs up after that has cost a hash, and counts against its IP.
    pub started: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl fmt::Debug for VerifyJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyJob")
            .field("password", &"<redacted>")
            .field("hash", &self.hash)
            .field("started", &self.started)
            .finish()
    }
}

/// Why a verification did not produce an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// The queue is full: answer `503` with this `Retry-After`.
    Overloaded {
        /// Estimated time until the queue drains.
        retry_after: Duration,
    },
    /// The verifier went away (shutdown, a remote worker failed).
    Unavailable,
}

/// The answer to a submitted job: a future that resolves to whether the
/// password matched.
pub struct Pending {
    inner: PendingInner,
}

enum PendingInner {
    Ready(Option<bool>),
    Waiting(oneshot::Receiver<bool>),
}

impl Pending {
    /// An answer known at once.
    pub fn ready(matched: bool) -> Self {
        Self { inner: PendingInner::Ready(Some(matched)) }
    }

    /// An answer that arrives later through `sender`.
    pub fn channel() -> (oneshot::Sender<bool>, Self) {
        let (tx, rx) = oneshot::channel();
        (tx, Self { inner: PendingInner::Waiting(rx) })
    }
}

impl Future for Pending {
    type Output = Result<bool, VerifyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            PendingInner::Ready(answer) => Poll::Ready(answer.take().ok_or(VerifyError::Unavailable)),
            PendingInner::Waiting(rx) => Pin::new(rx).poll(cx).map(|r| r.map_err(|_| VerifyError::Unavailable)),
        }
    }
}

/// A new hash to make: a password to re-hash with argon2id at `params`
/// (the upgrade of a legacy hash after a successful login).
pub struct HashJob {
    /// The password; zeroed when the job is dropped.
    pub password: Zeroizing<Vec<u8>>,
    /// The cost of the new hash.
    pub params: HashParams,
}

impl fmt::Debug for HashJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashJob").field("password", &"<redacted>").field("params", &self.params).finish()
    }
}

/// The answer to a [`HashJob`]: the PHC string, or why hashing failed.
pub type PendingHash = oneshot::Receiver<Result<String, HashError>>;

/// Where password hashes run.
pub trait PasswordVerifier: Send + Sync + fmt::Debug {
    /// Queues `job` and returns its pending answer, or fails at once with
    /// [`VerifyError::Overloaded`] when the queue is full. Never blocks.
    fn try_submit(&self, job: VerifyJob) -> Result<Pending, VerifyError>;

    /// Queues a new hash (for upgrades on login) like [`try_submit`]. The
    /// default makes none ([`VerifyError::Unavailable`]): a verifier that
    /// cannot hash leaves legacy hashes as they are.
    ///
    /// [`try_submit`]: PasswordVerifier::try_submit
    fn try_submit_hash(&self, job: HashJob) -> Result<PendingHash, VerifyError> {
        drop(job);
        Err(VerifyError::Unavailable)
    }

    /// Jobs waiting to start (for metrics and `Retry-After`).
    fn queue_len(&self) -> usize {
        0
    }
}

/// Submits `job` and waits for the answer.
pub async fn verify(verifier: &dyn PasswordVerifier, job: VerifyJob) -> Result<bool, VerifyError> {
    verifier.try_submit(job)?.await
}
