//! The users of named credential managers, as token records number them.
//!
//! A token record keeps a 32-bit [`UserRef`]. The default users file gives
//! its users their slot numbers (below [`INTERNED`]); the users of a named
//! manager (a SQL table, a directory, another users file) are numbered here
//! when they first log in, or when one of their records comes back from the
//! token log or Redis. An account keeps its number for as long as it may
//! have a live token: [`Accounts::sweep`] forgets one idle for longer than
//! the longest token lifetime, and a number is never given to anyone else.
//!
//! Each account also keeps what the refresh checks need:
//! - a fingerprint of the stored hash seen last, so that a password changed
//!   in the backend (not by ropc's own upgrade) is noticed, and ends the
//!   grants issued before it;
//! - the last look-up of the account, reused for `account_cache_ttl`.

use parking_lot::{Mutex, RwLock};
use ropc_core::UserRef;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The first number of an interned account: the numbers below are the
/// default users file's slots.
pub const INTERNED: u32 = 1 << 31;

/// A stored hash's fingerprint: the first 16 bytes of its SHA-256. It tells
/// one stored hash from another without keeping the hash.
pub type Fingerprint = [u8; 16];

/// The fingerprint of `stored` (a PHC or legacy string).
pub fn fingerprint(stored: &str) -> Fingerprint {
    let digest = ring::digest::digest(&ring::digest::SHA256, stored.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out
}

/// What a look-up of an account found, kept for `account_cache_ttl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Looked {
    /// When (seconds since the epoch).
    pub at: u64,
    /// Whether the account was there.
    pub exists: bool,
    /// Whether it was disabled.
    pub disabled: bool,
}

#[derive(Debug, Default)]
struct State {
    /// The stored hash's fingerprint as last seen.
    fingerprint: Option<Fingerprint>,
    /// The fingerprint before ropc's own upgrade, still accepted while the
    /// backend may hold the old hash (the write-back is pending or failed).
    upgraded_from: Option<Fingerprint>,
    /// The last look-up.
    looked: Option<Looked>,
}

/// One account of a named manager.
#[derive(Debug)]
pub struct Account {
    /// The manager's name.
    pub manager: Arc<str>,
    /// The name the user types.
    pub username: Arc<str>,
    subject: RwLock<Arc<str>>,
    last_used: AtomicU64,
    state: Mutex<State>,
}

/// How a newly seen stored hash compares with the one seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashSeen {
    /// The first one seen for this account (nothing to compare with).
    First,
    /// The same (or the one ropc replaced by its own upgrade).
    Same,
    /// Another: the password changed in the backend.
    Changed,
}

impl Account {
    /// The subject its manager gives it (the token's `sub`).
    pub fn subject(&self) -> Arc<str> {
        Arc::clone(&self.subject.read())
    }

    /// Marks it used at `now` (a login, a refresh, a restored record).
    pub fn touch(&self, now: u64) {
        self.last_used.fetch_max(now, Ordering::Relaxed);
    }

    /// Notes the subject a look-up gave.
    pub fn set_subject(&self, subject: &str) {
        if *self.subject.read().as_ref() != *subject {
            *self.subject.write() = Arc::from(subject);
        }
    }

    /// Notes the stored hash a look-up found, and how it compares.
    pub fn saw_hash(&self, seen: Fingerprint) -> HashSeen {
        let mut state = self.state.lock();
        match state.fingerprint {
            None => {
                state.fingerprint = Some(seen);
                HashSeen::First
            }
            Some(f) if f == seen || state.upgraded_from == Some(seen) => HashSeen::Same,
            Some(_) => {
                state.fingerprint = Some(seen);
                state.upgraded_from = None;
                HashSeen::Changed
            }
        }
    }

    /// Seeds the fingerprint from a restored record (the hash at its
    /// login), unless one is known already.
    pub fn seed_hash(&self, seen: Fingerprint) {
        self.state.lock().fingerprint.get_or_insert(seen);
    }

    /// The fingerprint seen last.
    pub fn hash_fingerprint(&self) -> Option<Fingerprint> {
        self.state.lock().fingerprint
    }

    /// ropc replaced the stored hash `from` with `to` (an upgrade on login):
    /// neither means a password change, whichever the backend holds.
    pub fn upgraded(&self, from: Fingerprint, to: Fingerprint) {
        let mut state = self.state.lock();
        state.fingerprint = Some(to);
        state.upgraded_from = Some(from);
    }

    /// The last look-up, if it is less than `ttl` seconds old at `now`
    /// (clock seconds: so never relied on for more than `ttl` seconds).
    pub fn looked_within(&self, now: u64, ttl: u64) -> Option<Looked> {
        self.state.lock().looked.filter(|l| now.saturating_sub(l.at) < ttl)
    }

    /// Keeps a look-up.
    pub fn looked(&self, looked: Looked) {
        self.state.lock().looked = Some(looked);
    }
}

#[derive(Debug, Default)]
struct Table {
    by_name: HashMap<(Arc<str>, Arc<str>), u32>,
    /// By number minus [`INTERNED`]; none once forgotten.
    slots: Vec<Option<Arc<Account>>>,
}

/// Every interned account.
#[derive(Debug, Default)]
pub struct Accounts {
    table: RwLock<Table>,
}

impl Accounts {
    /// The account `username` of `manager`, numbered now if it is new;
    /// `subject` is its subject as last looked up. `None` when every
    /// number is used (two billion accounts since the start).
    pub fn intern(&self, manager: &str, username: &str, subject: &str, now: u64) -> Option<(UserRef, Arc<Account>)> {
        if let Some((user, account)) = self.find(manager, username) {
            account.set_subject(subject);
            account.touch(now);
            return Some((user, account));
        }
        let mut table = self.table.write();
        let key: (Arc<str>, Arc<str>) = (Arc::from(manager), Arc::from(username));
        if let Some(&n) = table.by_name.get(&key) {
            let account = table.slots[(n - INTERNED) as usize].clone()?;
            account.touch(now);
            return Some((UserRef(n), account));
        }
        let n = u32::try_from(table.slots.len()).ok().and_then(|i| INTERNED.checked_add(i))?;
        if n == UserRef::NONE.0 {
            return None;
        }
        let account = Arc::new(Account {
            manager: Arc::clone(&key.0),
            username: Arc::clone(&key.1),
            subject: RwLock::new(Arc::from(subject)),
            last_used: AtomicU64::new(now),
            state: Mutex::default(),
        });
        table.slots.push(Some(Arc::clone(&account)));
        table.by_name.insert(key, n);
        Some((UserRef(n), account))
    }

    /// The account `username` of `manager`, if numbered.
    pub fn find(&self, manager: &str, username: &str) -> Option<(UserRef, Arc<Account>)> {
        let table = self.table.read();
        let key: (Arc<str>, Arc<str>) = (Arc::from(manager), Arc::from(username));
        let n = *table.by_name.get(&key)?;
        Some((UserRef(n), table.slots[(n - INTERNED) as usize].clone()?))
    }

    /// The account numbered `user`.
    pub fn get(&self, user: UserRef) -> Option<Arc<Account>> {
        let i = user.0.checked_sub(INTERNED)?;
        self.table.read().slots.get(i as usize)?.clone()
    }

    /// Whether `user` is an interned number (not a users-file slot).
    pub fn is_interned(user: UserRef) -> bool {
        user != UserRef::NONE && user.0 >= INTERNED
    }

    /// Forgets the accounts not used since `idle_before`: none of their
    /// tokens can still be live. Returns how many went.
    pub fn sweep(&self, idle_before: u64) -> usize {
        let mut table = self.table.write();
        let Table { by_name, slots } = &mut *table;
        let mut gone = 0;
        for slot in slots.iter_mut() {
            if slot.as_ref().is_some_and(|a| a.last_used.load(Ordering::Relaxed) < idle_before) {
                if let Some(a) = slot.take() {
                    by_name.remove(&(Arc::clone(&a.manager), Arc::clone(&a.username)));
                    gone += 1;
                }
            }
        }
        gone
    }

    /// Accounts numbered now.
    pub fn len(&self) -> usize {
        self.table.read().by_name.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_keep_their_number_until_idle_and_numbers_are_never_reused() {
        let accounts = Accounts::default();
        let (alice, a) = accounts.intern("db", "alice", "17", 100).unwrap();
        let (bob, _) = accounts.intern("db", "bob", "18", 100).unwrap();
        let (other_alice, _) = accounts.intern("ldap", "alice", "uid=alice", 100).unwrap();
        assert!(Accounts::is_interned(alice) && alice.0 >= INTERNED);
        assert_ne!(alice, other_alice, "one username in two managers is two accounts");
        assert_eq!(accounts.intern("db", "alice", "17", 150).unwrap().0, alice, "the same account again");
        assert_eq!(&*accounts.get(alice).unwrap().subject(), "17");
        assert!(Arc::ptr_eq(&a, &accounts.get(alice).unwrap()));
        // bob and ldap's alice were not used since 100; db's alice at 150.
        assert_eq!(accounts.sweep(120), 2);
        assert!(accounts.get(bob).is_none() && accounts.find("db", "bob").is_none());
        assert!(accounts.get(alice).is_some());
        let (bob_again, _) = accounts.intern("db", "bob", "18", 200).unwrap();
        assert_ne!(bob_again, bob, "a forgotten number stays unused");
        assert!(!Accounts::is_interned(UserRef(5)) && !Accounts::is_interned(UserRef::NONE));
    }

    #[test]
    fn a_changed_hash_is_told_from_ropcs_own_upgrade() {
        let accounts = Accounts::default();
        let (_, a) = accounts.intern("db", "alice", "alice", 1).unwrap();
        let (old, new, other) = (fingerprint("$2b$old"), fingerprint("$argon2id$new"), fingerprint("$2b$other"));
        assert_eq!(a.saw_hash(old), HashSeen::First);
        assert_eq!(a.saw_hash(old), HashSeen::Same);
        // ropc upgrades: the backend may still hold the old hash, or the new.
        a.upgraded(old, new);
        assert_eq!(a.saw_hash(old), HashSeen::Same);
        assert_eq!(a.saw_hash(new), HashSeen::Same);
        // Someone sets another password in the backend.
        assert_eq!(a.saw_hash(other), HashSeen::Changed);
        assert_eq!(a.saw_hash(old), HashSeen::Changed, "the pre-upgrade hash no longer passes");
    }
}
