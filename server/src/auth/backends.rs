//! What each kind of credential manager does for a login and for a
//! refresh's account check. The lockout, the pacing and the counting around
//! them are `password`'s; here only the look-up, the hash or the bind.
//!
//! Whatever the manager, an unknown user, a wrong password and a disabled
//! account give the same answer in the same time: the users file and SQL
//! check an unknown user against the dummy hash and a disabled one against
//! its own; LDAP binds an unknown user's password to a DN nobody has.

use super::{Auth, Refused};
use crate::credentials::accounts::{fingerprint, HashSeen, Looked};
use crate::credentials::ldap::BindOutcome;
use crate::credentials::{Account, Accounts, Backend, ManagerError, NamedManager, UserStore};
use crate::live::Live;
use ropc_core::{AccountState, PasswordOutcome, UserRef};
use ropc_hash::{StoredHash, VerifyJob};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use zeroize::Zeroizing;

/// What a login's check found.
pub(super) struct Checked {
    /// The answer for the core.
    pub(super) outcome: PasswordOutcome,
    /// The check cost what a verification at the configured cost does (a
    /// hash at that cost, or a bind): its time is the manager's typical
    /// one. Otherwise (a faster legacy hash, an unknown LDAP user) a
    /// refused answer is padded to it.
    pub(super) typical: bool,
    /// A valid login whose stored hash is to be replaced.
    pub(super) upgrade: Option<Upgrade>,
    /// The stored hash is not the one seen before for this account: the
    /// password changed in the backend, and the user's earlier grants end.
    pub(super) changed: bool,
}

/// Where an upgraded hash goes.
pub(super) enum Upgrade {
    /// A users file: replaced in memory, then written by its writer.
    File {
        users: Arc<UserStore>,
        slot: UserRef,
        writer: Option<crossbeam_channel::Sender<crate::users_file::Replacement>>,
        account: Option<Arc<Account>>,
    },
    /// A SQL table, through `update_query`.
    Sql { manager: Arc<NamedManager>, username: String, subject: String, account: Arc<Account>, old: String },
}

fn backend(e: ManagerError) -> Refused {
    Refused::Backend(e)
}

impl Auth {
    /// Checks `password` for `username` with `manager` (none: the default
    /// users file). `started` is set when the hash (or the bind) starts.
    pub(super) async fn check_login(
        &self,
        live: &Live,
        manager: Option<&Arc<NamedManager>>,
        username: &str,
        password: &str,
        started: Arc<AtomicBool>,
        now: u64,
    ) -> Result<Checked, Refused> {
        let Some(manager) = manager else {
            let typical = live.users.verifies_at_current_cost(username);
            let outcome = live.users.verify(&*self.verifier, username, password, Some(started)).await;
            let outcome = outcome.map_err(Refused::Verify)?;
            let upgrade = match outcome {
                PasswordOutcome::Valid(slot) => Some(Upgrade::File {
                    users: Arc::clone(&live.users),
                    slot,
                    writer: live.upgrades.clone(),
                    account: None,
                }),
                _ => None,
            };
            return Ok(Checked { outcome, typical, upgrade, changed: false });
        };
        let accounts = live.accounts();
        match &manager.backend {
            Backend::File { users, writer } => {
                let typical = users.verifies_at_current_cost(username);
                let outcome = users.verify(&*self.verifier, username, password, Some(started)).await;
                let outcome = outcome.map_err(Refused::Verify)?;
                let PasswordOutcome::Valid(slot) = outcome else {
                    return Ok(Checked { outcome, typical, upgrade: None, changed: false });
                };
                let hash = users.hash(slot).map(|h| fingerprint(h.as_phc()));
                let (user, account) = intern(accounts, manager, username, username, now)?;
                let changed = hash.is_some_and(|h| account.saw_hash(h) == HashSeen::Changed);
                let upgrade = Some(Upgrade::File {
                    users: Arc::clone(users),
                    slot,
                    writer: writer.clone(),
                    account: Some(account),
                });
                Ok(Checked { outcome: PasswordOutcome::Valid(user), typical, upgrade, changed })
            }
            Backend::Sql(sql) => {
                let row = sql.find(username).await.map_err(backend)?;
                let stored = row.as_ref().and_then(|r| match StoredHash::parse(&r.hash) {
                    Ok(h) => Some(Arc::new(h)),
                    Err(e) => {
                        tracing::error!(manager = %manager.name, user = ?username, error = %e, "the stored hash is in no format ropc reads; the login fails as an unknown user's");
                        None
                    }
                });
                let typical = stored.as_ref().is_none_or(|h| !live.users.needs_upgrade(h));
                let hash = stored.clone().unwrap_or_else(|| live.users.dummy());
                let job =
                    VerifyJob { password: Zeroizing::new(password.as_bytes().to_vec()), hash, started: Some(started) };
                let matched = ropc_hash::verify(&*self.verifier, job).await.map_err(Refused::Verify)?;
                let (Some(row), Some(stored)) = (row, stored) else {
                    return Ok(Checked {
                        outcome: PasswordOutcome::UnknownUser,
                        typical,
                        upgrade: None,
                        changed: false,
                    });
                };
                if row.disabled {
                    return Ok(Checked { outcome: PasswordOutcome::Disabled, typical, upgrade: None, changed: false });
                }
                if !matched {
                    return Ok(Checked {
                        outcome: PasswordOutcome::WrongPassword,
                        typical,
                        upgrade: None,
                        changed: false,
                    });
                }
                let subject = row.subject.clone().unwrap_or_else(|| username.to_owned());
                let (user, account) = intern(accounts, manager, username, &subject, now)?;
                let changed = account.saw_hash(fingerprint(&row.hash)) == HashSeen::Changed;
                account.looked(Looked { at: now, exists: true, disabled: false });
                let upgrade = live.users.needs_upgrade(&stored).then(|| Upgrade::Sql {
                    manager: Arc::clone(manager),
                    username: username.to_owned(),
                    subject,
                    account,
                    old: row.hash.clone(),
                });
                Ok(Checked { outcome: PasswordOutcome::Valid(user), typical, upgrade, changed })
            }
            Backend::Ldap(ldap) => {
                // The directory does the work: the bind is this login's
                // "hash", as far as hang-ups are counted.
                started.store(true, std::sync::atomic::Ordering::Relaxed);
                let outcome = ldap.authenticate(username, password).await.map_err(backend)?;
                let (outcome, typical) = match outcome {
                    BindOutcome::Valid { subject } => {
                        let (user, account) = intern(accounts, manager, username, &subject, now)?;
                        account.looked(Looked { at: now, exists: true, disabled: false });
                        (PasswordOutcome::Valid(user), true)
                    }
                    // The manager bound the password to a DN nobody has
                    // (or, with a DN template, to the one that does not
                    // exist): a bind like a wrong password's, no padding.
                    BindOutcome::UnknownUser => (PasswordOutcome::UnknownUser, true),
                    BindOutcome::WrongPassword { detail } => {
                        if let Some(detail) = detail {
                            tracing::info!(manager = %manager.name, user = ?username, detail, "the directory refused the bind");
                        }
                        (PasswordOutcome::WrongPassword, !password.is_empty())
                    }
                    BindOutcome::Disabled { detail } => {
                        tracing::info!(manager = %manager.name, user = ?username, detail = detail.unwrap_or("-"), "the directory's account cannot log in");
                        (PasswordOutcome::Disabled, true)
                    }
                };
                Ok(Checked { outcome, typical, upgrade: None, changed: false })
            }
        }
    }

    /// The account behind a refresh of `user`'s grant whose token was
    /// issued at `issued_at`. Reuses a look-up up to `account_cache_ttl`
    /// old, and never an older one: a backend that does not answer gets
    /// the refresh a 503, never an ended grant. Also says
    /// whether the user's earlier grants end (a password changed in the
    /// backend since it was last seen).
    pub async fn account_state(
        &self,
        live: &Live,
        user: UserRef,
        issued_at: u64,
        now: u64,
    ) -> Result<(AccountState, bool), Refused> {
        if !Accounts::is_interned(user) {
            // A default-file user is still in the file (the store checked
            // its slot); a change of their password in it ended their
            // earlier grants at the commit that read it.
            return Ok((AccountState::Active, false));
        }
        let Some(account) = live.accounts().get(user) else { return Ok((AccountState::Removed, false)) };
        let Some(manager) = live.managers.get(&account.manager) else { return Ok((AccountState::Removed, false)) };
        account.touch(now);
        let ttl = manager.account_cache_ttl();
        if ttl > 0 {
            if let Some(looked) = account.looked_within(now, ttl) {
                return Ok((from_look(looked), false));
            }
        }
        let looked = match &manager.backend {
            Backend::File { users, .. } => {
                let Some(slot) = users.find(&account.username) else { return Ok((AccountState::Removed, false)) };
                let changed =
                    users.hash(slot).is_some_and(|h| account.saw_hash(fingerprint(h.as_phc())) == HashSeen::Changed);
                return Ok(if changed { (AccountState::PasswordChanged, true) } else { (AccountState::Active, false) });
            }
            Backend::Sql(sql) => match sql.find(&account.username).await {
                Ok(None) => Looked { at: now, exists: false, disabled: false },
                Ok(Some(row)) => {
                    if let Some(subject) = &row.subject {
                        account.set_subject(subject);
                    }
                    let looked = Looked { at: now, exists: true, disabled: row.disabled };
                    account.looked(looked);
                    if !row.disabled && account.saw_hash(fingerprint(&row.hash)) == HashSeen::Changed {
                        return Ok((AccountState::PasswordChanged, true));
                    }
                    looked
                }
                Err(e) => return Err(Refused::Backend(e)),
            },
            Backend::Ldap(ldap) => match ldap.find(&account.username).await {
                Ok(None) => Looked { at: now, exists: false, disabled: false },
                Ok(Some(entry)) => {
                    account.set_subject(&entry.subject);
                    let looked = Looked { at: now, exists: true, disabled: entry.disabled };
                    account.looked(looked);
                    if !entry.disabled && entry.password_changed_at.is_some_and(|at| at > issued_at) {
                        return Ok((AccountState::PasswordChanged, true));
                    }
                    looked
                }
                Err(e) => return Err(Refused::Backend(e)),
            },
        };
        account.looked(looked);
        Ok((from_look(looked), false))
    }
}

/// The account's number, or 503 if every number is taken.
fn intern(
    accounts: &Accounts,
    manager: &NamedManager,
    username: &str,
    subject: &str,
    now: u64,
) -> Result<(UserRef, Arc<Account>), Refused> {
    accounts.intern(&manager.name, username, subject, now).ok_or_else(|| {
        tracing::error!(manager = %manager.name, "every account number is taken: restart ropc");
        Refused::Backend(ManagerError::Busy)
    })
}

fn from_look(looked: Looked) -> AccountState {
    match (looked.exists, looked.disabled) {
        (false, _) => AccountState::Removed,
        (true, true) => AccountState::Disabled,
        (true, false) => AccountState::Active,
    }
}
