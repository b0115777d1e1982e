//! The users file: `username:hash` lines, one generation per config
//! commit. An unknown user is verified against a dummy hash with the
//! configured parameters, so that it costs as much time as a wrong password.

use crate::source::{read_file, SourceError};
use parking_lot::{Mutex, RwLock};
use ropc_core::{PasswordOutcome, UserRef};
use ropc_hash::{self as hash, HashParams, PasswordVerifier, StoredHash, VerifyError, VerifyJob};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The users of one users file.
///
/// A user's [`UserRef`] is stored in token records, so a reload keeps each
/// name's index (see [`UserStore::parse_after`]); a removed user leaves a
/// retired slot (an empty name, with the dummy hash) that no name finds.
pub struct UserStore {
    by_name: HashMap<String, UserRef>,
    /// By index; empty for a retired slot.
    names: Vec<Arc<str>>,
    /// Users that are not retired slots.
    live: usize,
    /// Each user's hash, replaced in place by an upgrade on login.
    hashes: Vec<RwLock<Arc<StoredHash>>>,
    /// The hash an upgrade on login replaced, by index: the file may still
    /// hold it (its rewrite is queued, or failed), which is no password
    /// change.
    upgraded_from: Vec<Mutex<Option<String>>>,
    /// Users whose hash changed in the file since the previous generation
    /// (not by ropc's own upgrade): their earlier grants end.
    changed: Vec<UserRef>,
    dummy: Arc<StoredHash>,
    params: HashParams,
}

impl fmt::Debug for UserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserStore({} users)", self.live)
    }
}

impl UserStore {
    /// Reads a users file. Errors name the line.
    pub fn load(path: &Path, params: HashParams) -> Result<Self, SourceError> {
        Self::parse(path, &read_file(path, "cannot read the users file")?, params)
    }

    /// Reads a users file as the successor of `previous` (a live reload):
    /// see [`UserStore::parse_after`].
    pub fn load_after(path: &Path, params: HashParams, previous: &UserStore) -> Result<Self, SourceError> {
        Self::parse_after(path, &read_file(path, "cannot read the users file")?, params, Some(previous))
    }

    /// Parses users-file text (see [`UserStore::load`]).
    pub fn parse(path: &Path, text: &str, params: HashParams) -> Result<Self, SourceError> {
        Self::parse_after(path, text, params, None)
    }

    /// Parses users-file text as the successor of `previous`: every user of
    /// `previous` who is still in the file keeps their [`UserRef`], a
    /// removed user's slot is retired for good (their tokens name nobody),
    /// and new users are added after the last slot.
    pub fn parse_after(
        path: &Path,
        text: &str,
        params: HashParams,
        previous: Option<&UserStore>,
    ) -> Result<Self, SourceError> {
        let dummy = Arc::new(dummy_hash(params)?);
        let mut by_name = HashMap::new();
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut hashes = Vec::new();
        let mut fresh = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let err = |message: String| SourceError::line(path, i + 1, message);
            let Some((name, phc)) = line.split_once(':') else {
                return Err(err("expected `username:hash`".into()));
            };
            if name.is_empty() {
                return Err(err("the username is empty".into()));
            }
            let stored = StoredHash::parse(phc.trim()).map_err(|e| err(format!("user {name:?}: {e}")))?;
            if by_name.insert(name.to_owned(), UserRef::NONE).is_some() {
                return Err(err(format!("user {name:?} appears twice")));
            }
            fresh.push((Arc::<str>::from(name), Arc::new(stored)));
        }
        let too_many = || SourceError::file(path, "too many users (counting those removed since the server started)");
        // The previous users first, each at its old index (retired slots,
        // with an empty name, stay retired).
        let previous_names = previous.map_or(&[][..], |p| &p.names[..]);
        let laid =
            crate::slots::carry_over(previous_names.iter().map(|n| (!n.is_empty()).then_some(&**n)), fresh, |(n, _)| n);
        let mut changed = Vec::new();
        let mut upgraded_from = Vec::new();
        for slot in laid {
            let user = UserRef(u32::try_from(names.len()).ok().filter(|u| *u != UserRef::NONE.0).ok_or_else(too_many)?);
            match slot {
                Some((name, hash)) => {
                    let (hash, from) = match previous {
                        Some(p) if p.changed_to(user, hash.as_phc()) => {
                            changed.push(user);
                            (hash, None)
                        }
                        // The file still holds what ropc's upgrade replaced:
                        // keep the upgraded hash until its rewrite lands.
                        Some(p) if p.upgrade_pending(user, hash.as_phc()) => {
                            let from = hash.as_phc().to_owned();
                            (p.hash(user).unwrap_or(hash), Some(from))
                        }
                        _ => (hash, None),
                    };
                    by_name.insert(name.to_string(), user);
                    names.push(name);
                    hashes.push(RwLock::new(hash));
                    upgraded_from.push(Mutex::new(from));
                }
                None => {
                    names.push(Arc::from(""));
                    hashes.push(RwLock::new(Arc::clone(&dummy)));
                    upgraded_from.push(Mutex::new(None));
                }
            }
        }
        Ok(Self { live: by_name.len(), by_name, names, hashes, upgraded_from, changed, dummy, params })
    }

    /// Whether `phc`, the hash the file now holds for `user` (a slot of
    /// this generation too), is a password change: neither the hash `user`
    /// has here nor the one ropc's upgrade replaced.
    fn changed_to(&self, user: UserRef, phc: &str) -> bool {
        let i = user.0 as usize;
        let Some(current) = self.hashes.get(i) else { return false };
        if current.read().as_phc() == phc {
            return false;
        }
        self.upgraded_from.get(i).is_none_or(|u| u.lock().as_deref() != Some(phc))
    }

    /// Whether `phc` is the hash ropc's upgrade replaced for `user`: its
    /// rewrite of the file has not landed yet.
    fn upgrade_pending(&self, user: UserRef, phc: &str) -> bool {
        self.upgraded_from.get(user.0 as usize).is_some_and(|u| u.lock().as_deref() == Some(phc))
    }

    /// Users whose hash changed in the file since the previous generation,
    /// other than by ropc's own upgrade: their earlier grants end.
    pub fn changed(&self) -> &[UserRef] {
        &self.changed
    }

    /// The hash unknown users are checked against, at the configured cost.
    pub fn dummy(&self) -> Arc<StoredHash> {
        Arc::clone(&self.dummy)
    }

    /// How many users there are (retired slots not counted).
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The name of `user` (none for a retired slot).
    pub fn name(&self, user: UserRef) -> Option<&Arc<str>> {
        self.names.get(user.0 as usize).filter(|n| !n.is_empty())
    }

    /// The user called `name`.
    pub fn find(&self, name: &str) -> Option<UserRef> {
        self.by_name.get(name).copied()
    }

    /// Every user's name (retired slots left out), in index order.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.names.iter().filter(|n| !n.is_empty())
    }

    /// The hash `user` has now.
    pub fn hash(&self, user: UserRef) -> Option<Arc<StoredHash>> {
        self.hashes.get(user.0 as usize).map(|h| Arc::clone(&h.read()))
    }

    /// The cost of new hashes.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Whether `hash` is replaced after its user's next successful login:
    /// it is not argon2id at the configured cost.
    pub fn needs_upgrade(&self, hash: &StoredHash) -> bool {
        !hash.is_current(&self.params)
    }

    /// Whether verifying `username` runs a hash at the configured cost:
    /// true for unknown users (they get the dummy hash) and for current
    /// hashes, false for legacy or outdated ones.
    pub fn verifies_at_current_cost(&self, username: &str) -> bool {
        self.by_name.get(username).and_then(|u| self.hash(*u)).is_none_or(|h| !self.needs_upgrade(&h))
    }

    /// Times one verification of a random password against the dummy hash,
    /// on this thread: what a verification at the configured cost takes.
    pub fn time_dummy(&self) -> std::time::Duration {
        let started = std::time::Instant::now();
        let _ = self.dummy.verify(b"not the password");
        started.elapsed()
    }

    /// Users whose hashes are weak (`$apr1$`, `{SHA}`), by scheme name.
    pub fn weak(&self) -> Vec<(&Arc<str>, &'static str)> {
        self.names
            .iter()
            .zip(&self.hashes)
            .filter(|(name, _)| !name.is_empty())
            .filter_map(|(name, h)| {
                let h = h.read();
                h.is_weak().then(|| (name, h.scheme_name()))
            })
            .collect()
    }

    /// Users whose hashes will be upgraded at their next login.
    pub fn legacy_count(&self) -> usize {
        self.names.iter().zip(&self.hashes).filter(|(n, h)| !n.is_empty() && self.needs_upgrade(&h.read())).count()
    }

    /// Replaces `user`'s hash with `new` if it is still `old`; returns whether
    /// it did (a concurrent upgrade of the same user may have come first).
    pub fn replace(&self, user: UserRef, old: &Arc<StoredHash>, new: StoredHash) -> bool {
        let Some(slot) = self.hashes.get(user.0 as usize) else { return false };
        let mut slot = slot.write();
        if !Arc::ptr_eq(&slot, old) {
            return false;
        }
        *slot = Arc::new(new);
        if let Some(from) = self.upgraded_from.get(user.0 as usize) {
            *from.lock() = Some(old.as_phc().to_owned());
        }
        true
    }

    /// Verifies `password` for `username` through `verifier`. An unknown
    /// user costs one dummy hash, like a wrong password. `started`, if
    /// given, is set when the hash starts ([`VerifyJob::started`]).
    pub async fn verify(
        &self,
        verifier: &dyn PasswordVerifier,
        username: &str,
        password: &str,
        started: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<PasswordOutcome, VerifyError> {
        let user = self.by_name.get(username).copied();
        let hash = match user.and_then(|u| self.hash(u)) {
            Some(hash) => hash,
            None => Arc::clone(&self.dummy),
        };
        let job = VerifyJob { password: Zeroizing::new(password.as_bytes().to_vec()), hash, started };
        let matched = hash::verify(verifier, job).await?;
        Ok(match (user, matched) {
            (Some(user), true) => PasswordOutcome::Valid(user),
            (Some(_), false) => PasswordOutcome::WrongPassword,
            (None, _) => PasswordOutcome::UnknownUser,
        })
    }
}

/// A hash of a random password nobody knows, with the configured cost.
fn dummy_hash(params: HashParams) -> Result<StoredHash, SourceError> {
    let err = |e: ropc_hash::HashError| SourceError {
        file: Default::default(),
        line: None,
        key: "credential_manager.argon2".into(),
        message: e.to_string(),
    };
    let password = Zeroizing::new(hash::generate_secret().map_err(err)?);
    let phc = hash::hash_password(password.as_bytes(), params).map_err(err)?;
    StoredHash::parse(&phc).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ropc_hash::InlineVerifier;

    const SMALL: HashParams = HashParams { m_cost: 64, t_cost: 1, p_cost: 1 };

    #[tokio::test]
    async fn users_file() {
        let alice = hash::hash_password(b"wonderland", SMALL).unwrap();
        let text = format!("# comment\n\nalice:{alice}\r\nbob:{alice}\n");
        let users = UserStore::parse(Path::new("users"), &text, SMALL).unwrap();
        assert_eq!(users.len(), 2);
        let v = InlineVerifier;
        assert_eq!(users.verify(&v, "alice", "wonderland", None).await, Ok(PasswordOutcome::Valid(UserRef(0))));
        assert_eq!(users.verify(&v, "alice", "nope", None).await, Ok(PasswordOutcome::WrongPassword));
        assert_eq!(users.verify(&v, "carol", "wonderland", None).await, Ok(PasswordOutcome::UnknownUser));
        assert_eq!(users.name(UserRef(1)).map(|s| &**s), Some("bob"));
    }

    #[tokio::test]
    async fn a_reload_keeps_each_users_index_and_retires_removed_ones() {
        let h = hash::hash_password(b"pw", SMALL).unwrap();
        let first = UserStore::parse(Path::new("users"), &format!("alice:{h}\nbob:{h}\ncarol:{h}\n"), SMALL).unwrap();
        let second = UserStore::parse_after(
            Path::new("users"),
            &format!("dave:{h}\ncarol:{h}\nalice:{h}\n"),
            SMALL,
            Some(&first),
        )
        .unwrap();
        assert_eq!(
            (second.find("alice"), second.find("carol"), second.find("dave")),
            (Some(UserRef(0)), Some(UserRef(2)), Some(UserRef(3)))
        );
        assert_eq!((second.find("bob"), second.name(UserRef(1))), (None, None));
        assert_eq!(second.len(), 3);
        assert_eq!(second.names().map(|n| &**n).collect::<Vec<_>>(), ["alice", "carol", "dave"]);
        let v = InlineVerifier;
        assert_eq!(second.verify(&v, "bob", "pw", None).await, Ok(PasswordOutcome::UnknownUser));
        assert_eq!(second.verify(&v, "dave", "pw", None).await, Ok(PasswordOutcome::Valid(UserRef(3))));
        // bob again: a new index, so his old tokens stay dead.
        let third = UserStore::parse_after(Path::new("users"), &format!("bob:{h}\n"), SMALL, Some(&second)).unwrap();
        assert_eq!(third.find("bob"), Some(UserRef(4)));
        assert_eq!(third.len(), 1);
    }

    #[test]
    fn a_reload_tells_a_changed_password_from_ropcs_own_upgrade() {
        let (a, b, c) = (
            hash::hash_password(b"a", SMALL).unwrap(),
            hash::hash_password(b"b", SMALL).unwrap(),
            hash::hash_password(b"c", SMALL).unwrap(),
        );
        let first = UserStore::parse(Path::new("users"), &format!("alice:{a}\nbob:{a}\ncarol:{a}\n"), SMALL).unwrap();
        assert!(first.changed().is_empty());
        // bob's hash is upgraded by ropc (in memory; the file still says a).
        let bob = first.find("bob").unwrap();
        assert!(first.replace(bob, &first.hash(bob).unwrap(), StoredHash::parse(&b).unwrap()));
        // The file: alice changed, bob still the old one, carol unchanged.
        let text = format!("alice:{c}\nbob:{a}\ncarol:{a}\n");
        let second = UserStore::parse_after(Path::new("users"), &text, SMALL, Some(&first)).unwrap();
        assert_eq!(second.changed(), [first.find("alice").unwrap()]);
        assert_eq!(second.hash(bob).unwrap().as_phc(), b, "the upgrade is kept until the file has it");
        // Then the upgrade reaches the file: no change either.
        let text = format!("alice:{c}\nbob:{b}\ncarol:{a}\n");
        let third = UserStore::parse_after(Path::new("users"), &text, SMALL, Some(&second)).unwrap();
        assert!(third.changed().is_empty(), "{:?}", third.changed());
    }

    #[test]
    fn users_file_errors_name_the_line() {
        let alice = hash::hash_password(b"x", SMALL).unwrap();
        for (text, line, msg) in [
            (format!("alice:{alice}\nbob\n"), 2, "username:hash"),
            (format!("alice:{alice}\n\n:{alice}\n"), 3, "empty"),
            (format!("alice:{alice}\nalice:{alice}\n"), 2, "twice"),
            ("# x\nalice:plaintext\n".to_owned(), 2, "unsupported hash format"),
        ] {
            let e = UserStore::parse(Path::new("users"), &text, SMALL).unwrap_err();
            assert_eq!(e.line, Some(line), "{e}");
            assert!(e.message.contains(msg), "{e}");
        }
    }
}
