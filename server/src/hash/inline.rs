//! A verifier that hashes on the caller's thread: for tests, tools and
//! embedders that bring their own threading. It has no queue, so it never
//! sheds load; do not use it on an async runtime's worker threads.

use super::{PasswordVerifier, Pending, VerifyError, VerifyJob};

/// Runs each verification inline, inside `try_submit`.
#[derive(Debug, Default)]
pub struct InlineVerifier;

impl PasswordVerifier for InlineVerifier {
    fn try_submit(&self, job: VerifyJob) -> Result<Pending, VerifyError> {
        Ok(Pending::ready(job.hash.verify(&job.password)))
    }
}
