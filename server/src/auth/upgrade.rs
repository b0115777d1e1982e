//! Upgrade on login: a hash that is not argon2id at the configured cost is
//! replaced after its user's next successful login, off the answer's path.

use super::Auth;
use crate::live::Live;
use crate::users_file::Replacement;
use ropc_core::UserRef;
use ropc_hash::{HashJob, StoredHash};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use zeroize::Zeroizing;

impl Auth {
    /// After a successful login against a hash that is not argon2id at the
    /// configured cost, re-hashes the password on the hash pool in the
    /// background (the response does not wait), swaps the new hash in, and
    /// queues the users-file rewrite. Skipped when the pool is full: the
    /// next login tries again.
    pub(super) fn upgrade_later(&self, live: &Live, user: UserRef, password: &str) {
        let Some(old) = live.users.hash(user) else { return };
        if !live.users.needs_upgrade(&old) || !old.verifies_whole(password.as_bytes()) {
            return;
        }
        let job = HashJob { password: Zeroizing::new(password.as_bytes().to_vec()), params: live.users.params() };
        let Ok(pending) = self.verifier.try_submit_hash(job) else { return };
        let users = Arc::clone(&live.users);
        let writer = live.upgrades.clone();
        let upgraded = Arc::clone(&self.upgraded);
        tokio::spawn(async move {
            let name = users.name(user).map(|n| n.to_string()).unwrap_or_default();
            let phc = match pending.await {
                Ok(Ok(phc)) => phc,
                Ok(Err(e)) => return tracing::warn!(user = %name.escape_debug(), error = %e, "hash upgrade failed"),
                Err(_) => return,
            };
            let Ok(new) = StoredHash::parse(&phc) else { return };
            if !users.replace(user, &old, new) {
                return;
            }
            upgraded.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                event = "password_upgraded",
                user = %name.escape_debug(),
                from = old.scheme_name(),
                "hash upgraded to argon2id"
            );
            let change = Replacement { user: name, old: old.as_phc().to_owned(), new: phc };
            if let Some(writer) = writer {
                if writer.try_send(change).is_err() {
                    tracing::warn!("users-file writer busy: the upgraded hash is kept in memory only for now");
                }
            }
        });
    }
}
