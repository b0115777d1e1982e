//! Upgrade on login: a hash that is not argon2id at the configured cost is
//! replaced after its user's next successful login, off the answer's path:
//! in a users file (in memory at once, then by the file's writer), or in a
//! SQL table through `update_query`. A failed write is logged, and the next
//! login tries again. The account remembers both hashes, so that neither
//! reads as a password change while the write is pending.

use super::backends::Upgrade;
use super::Auth;
use crate::credentials::accounts::fingerprint;
use crate::credentials::Backend;
use crate::live::Live;
use crate::users_file::Replacement;
use ropc_hash::{HashJob, StoredHash};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use zeroize::Zeroizing;

impl Auth {
    /// After a successful login against a hash that is not argon2id at the
    /// configured cost, re-hashes the password on the hash pool in the
    /// background (the response does not wait) and writes it where the
    /// user lives. Skipped when the pool is full: the next login tries
    /// again.
    pub(super) fn upgrade_later(&self, live: &Live, upgrade: Upgrade, password: &str) {
        match upgrade {
            Upgrade::File { users, slot, writer, account } => {
                let Some(old) = users.hash(slot) else { return };
                if !users.needs_upgrade(&old) || !old.verifies_whole(password.as_bytes()) {
                    return;
                }
                let job = HashJob { password: Zeroizing::new(password.as_bytes().to_vec()), params: users.params() };
                let Ok(pending) = self.verifier.try_submit_hash(job) else { return };
                let upgraded = Arc::clone(&self.upgraded);
                tokio::spawn(async move {
                    let name = users.name(slot).map(|n| n.to_string()).unwrap_or_default();
                    let phc = match pending.await {
                        Ok(Ok(phc)) => phc,
                        Ok(Err(e)) => {
                            return tracing::warn!(user = %name.escape_debug(), error = %e, "hash upgrade failed")
                        }
                        Err(_) => return,
                    };
                    let Ok(new) = StoredHash::parse(&phc) else { return };
                    if !users.replace(slot, &old, new) {
                        return;
                    }
                    if let Some(account) = account {
                        account.upgraded(fingerprint(old.as_phc()), fingerprint(&phc));
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
            Upgrade::Sql { manager, username, subject, account, old } => {
                let Backend::Sql(_) = &manager.backend else { return };
                let has_update =
                    matches!(&manager.config, crate::credentials::ManagerConfig::Sql(c) if c.update_query.is_some());
                let Ok(stored) = StoredHash::parse(&old) else { return };
                if !has_update || !stored.verifies_whole(password.as_bytes()) {
                    return;
                }
                let job =
                    HashJob { password: Zeroizing::new(password.as_bytes().to_vec()), params: live.users.params() };
                let Ok(pending) = self.verifier.try_submit_hash(job) else { return };
                let upgraded = Arc::clone(&self.upgraded);
                tokio::spawn(async move {
                    let phc = match pending.await {
                        Ok(Ok(phc)) => phc,
                        Ok(Err(e)) => return tracing::warn!(user = ?username, error = %e, "hash upgrade failed"),
                        Err(_) => return,
                    };
                    let Backend::Sql(sql) = &manager.backend else { return };
                    // Remembered first: a refresh that reads the table
                    // after the write must not take it for a change.
                    account.upgraded(fingerprint(&old), fingerprint(&phc));
                    match sql.update_hash(&username, &subject, &phc).await {
                        Ok(()) => {
                            upgraded.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(
                                event = "password_upgraded",
                                manager = %manager.name,
                                user = ?username,
                                from = stored.scheme_name(),
                                "hash upgraded to argon2id and written back"
                            );
                        }
                        Err(e) => tracing::warn!(
                            event = "password_upgrade_failed",
                            manager = %manager.name,
                            user = ?username,
                            error = %e,
                            "cannot write the upgraded hash back; the next login tries again"
                        ),
                    }
                });
            }
        }
    }
}
