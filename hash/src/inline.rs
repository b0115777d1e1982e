//! A verifier that hashes on the caller's thread: for tests, tools and
//! embedders that bring their own threading. It has no queue, so it never
//! sheds load; do not use it on an async runtime's worker threads.

use super::{hash_password, HashJob, PasswordVerifier, Pending, PendingHash, VerifyError, VerifyJob};

/// Runs each verification inline, inside `try_submit`.
#[derive(Debug, Default)]
pub struct InlineVerifier;

impl PasswordVerifier for InlineVerifier {
    fn try_submit(&self, job: VerifyJob) -> Result<Pending, VerifyError> {
        if let Some(started) = &job.started {
            started.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Pending::ready(job.hash.verify(&job.password)))
    }

    fn try_submit_hash(&self, job: HashJob) -> Result<PendingHash, VerifyError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(hash_password(&job.password, job.params));
        Ok(rx)
    }
}
