//! The LDAP credential manager: search-then-bind with a service account, or
//! a direct bind to a DN template; Active Directory's bind sub-codes.
//!
//! - **Search, then bind** (`bind_dn`): the service account searches
//!   `base_dn` with `user_filter` (the username escaped as RFC 4515 says);
//!   no entry is [`BindOutcome::UnknownUser`], and so are two or more (an
//!   ambiguous filter, logged). Then ropc binds as the entry's DN with the
//!   password, on a connection of the bind pool: the service account's
//!   connections are never rebound.
//! - **Direct bind** (`user_dn_template`): the DN is the template with the
//!   username escaped as RFC 4514 says; after a successful bind, the entry
//!   is read with that bind if an attribute of it is needed.
//! - An empty password is [`BindOutcome::WrongPassword`] without a bind: a
//!   DN with an empty password is an "unauthenticated" bind (RFC 4513
//!   §5.1.2), which AD and OpenLDAP with `allow bind_anon_dn` let succeed.
//! - Result 49 is a wrong password; nothing is retried after it (another
//!   try would add to the directory's own lockout count). With
//!   `active_directory`, its sub-code says which (see [`ad`]).
//! - Every call goes through [`Health::admit`] (the circuit breaker, and
//!   the cap of `max_connections` calls in flight): an answer from the
//!   directory, whatever it says of the user, is `done`; no connection,
//!   a timeout, a TLS failure, a refused service account are `failed`, and
//!   the caller gets [`ManagerError::Unavailable`], never a wrong password.
//! - Connections: see [`pool`] (reuse, replacement, one retry after a
//!   dropped pooled connection) and [`connect`] (the URLs in order,
//!   timeouts, TLS).

mod ad;
mod connect;
mod entry;
mod escape;
mod pool;
mod time;

use super::health::Admitted;
use super::{Health, LdapConfig, LdapLocate, ManagerError};
use connect::Connector;
use entry::{Found, PWD_ACCOUNT_LOCKED_TIME, PWD_CHANGED_TIME, PWD_LAST_SET, USER_ACCOUNT_CONTROL};
use ldap3::{LdapResult, Scope, SearchResult};
use pool::{describe, Fault, Identity, Op, Pool};

/// How a bind as the user ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// The password is right.
    Valid {
        /// The subject (`subject_attribute`, or the username).
        subject: String,
    },
    /// No entry for the username (no bind was tried).
    UnknownUser,
    /// The directory refused the password (result 49).
    WrongPassword {
        /// Why, when the directory says (Active Directory's sub-code).
        detail: Option<&'static str>,
    },
    /// The account is disabled, locked or expired in the directory.
    Disabled {
        /// Which, when the directory says.
        detail: Option<&'static str>,
    },
}

/// An account as a refresh checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The subject.
    pub subject: String,
    /// Disabled in the directory.
    pub disabled: bool,
    /// When its password last changed, if the directory says
    /// (`pwdChangedTime`, AD's `pwdLastSet`), seconds since the epoch.
    pub password_changed_at: Option<u64>,
}

/// An LDAP directory of users. `Debug` shows no password.
#[derive(Debug)]
pub struct LdapManager {
    health: Health,
    config: LdapConfig,
    connector: Connector,
    /// The service account's connections (search mode only).
    service: Option<Pool>,
    /// The connections users bind on.
    binds: Pool,
    /// A DN no entry has (a random RDN under the search base), that an
    /// unknown user's password is bound to: see `search_then_bind`.
    nobody: String,
}

/// Result codes that mean the directory cannot answer now, or is
/// configured so that it never will (not a verdict on the user):
/// operationsError, protocolError, timeLimitExceeded, strongerAuthRequired
/// (AD's LDAP signing), adminLimitExceeded, confidentialityRequired, busy,
/// unavailable, other.
const NO_ANSWER: [u32; 9] = [1, 2, 3, 8, 11, 13, 51, 52, 80];

impl LdapManager {
    /// A manager for `config`, named `name`. Connects lazily; reads the CA
    /// file now.
    pub fn new(name: &str, config: LdapConfig) -> Result<Self, String> {
        if config.urls.is_empty() {
            return Err("no LDAP URL".into());
        }
        if let LdapLocate::Search { user_filter, .. } = &config.locate {
            let sample = escape::fill(user_filter, &escape::filter_value("x"));
            ldap3::parse_filter(&sample)
                .map_err(|()| format!("user_filter {user_filter:?} is not an LDAP filter (RFC 4515)"))?;
        }
        let max = config.max_connections.max(1) as usize;
        let connector = Connector::new(&config)?;
        let service = match &config.locate {
            LdapLocate::Search { bind_dn, bind_password, .. } => Some(Pool::new(
                "the service account's connection",
                Identity::Service { dn: bind_dn.clone(), password: bind_password.clone() },
                max,
                config.operation_timeout,
            )),
            LdapLocate::Template(_) => None,
        };
        let binds = Pool::new("the bind connection", Identity::Binds, max, config.operation_timeout);
        let nobody = match &config.locate {
            LdapLocate::Search { base_dn, .. } => {
                let mut tag = [0u8; 8];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut tag)
                    .map_err(|_| "the system random source failed".to_owned())?;
                let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
                format!("cn=ropc-no-such-user-{tag},{base_dn}")
            }
            LdapLocate::Template(_) => String::new(),
        };
        Ok(Self { health: Health::new(name, "ldap", max), config, connector, service, binds, nobody })
    }

    /// The configuration.
    pub fn config(&self) -> &LdapConfig {
        &self.config
    }

    /// The breaker, cap and metrics.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Connections idle now: the service account's and the binds'.
    pub fn idle_connections(&self) -> (usize, usize) {
        (self.service.as_ref().map_or(0, Pool::idle), self.binds.idle())
    }

    /// Verifies `password` by a bind as the user's entry. An empty password
    /// is refused before any bind.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<BindOutcome, ManagerError> {
        if password.is_empty() {
            return Ok(BindOutcome::WrongPassword { detail: Some("empty_password") });
        }
        if username.is_empty() {
            return Ok(BindOutcome::UnknownUser);
        }
        let admitted = self.health.admit()?;
        let outcome = match &self.config.locate {
            LdapLocate::Search { base_dn, user_filter, .. } => {
                self.search_then_bind(base_dn, user_filter, username, password).await
            }
            LdapLocate::Template(template) => self.direct_bind(template, username, password).await,
        };
        self.settle(admitted, outcome)
    }

    /// The user's entry, for a refresh's account check: None when the
    /// directory no longer has it.
    ///
    /// With a DN template there is no service account: the entry is read
    /// after an anonymous bind. It is removed if the directory says so to
    /// an anonymous client (noSuchObject with its parent as the matched DN,
    /// as OpenLDAP answers where anonymous has `auth`, which includes
    /// `disclose`). Where the directory refuses anonymous binds or reads,
    /// or hides everything (noSuchObject with no matched DN), there is no
    /// verdict and the account is taken as it was (`disabled: false`, no
    /// password change): the template mode cannot see removals there.
    pub async fn find(&self, username: &str) -> Result<Option<Entry>, ManagerError> {
        if username.is_empty() {
            return Ok(None);
        }
        let admitted = self.health.admit()?;
        let attrs = self.attrs(true);
        let entry = match &self.config.locate {
            LdapLocate::Search { base_dn, user_filter, .. } => self
                .search(base_dn, user_filter, username, &attrs)
                .await
                .map(|found| found.map(|f| self.entry(&f, username))),
            LdapLocate::Template(template) => self.read_anonymously(template, username, &attrs).await,
        };
        self.settle(admitted, entry)
    }

    /// Reports to the breaker how the call ended.
    fn settle<T>(&self, admitted: Admitted<'_>, result: Result<T, Fault>) -> Result<T, ManagerError> {
        match result {
            Ok(v) => {
                admitted.done();
                Ok(v)
            }
            Err(Fault(why)) => {
                let unavailable = admitted.unavailable();
                admitted.failed(&why);
                Err(unavailable)
            }
        }
    }

    /// The attributes to ask for at a login, or (`for_find`) at a refresh.
    fn attrs(&self, for_find: bool) -> Vec<&str> {
        let mut attrs: Vec<&str> = self.config.subject_attribute.iter().map(String::as_str).collect();
        match (self.config.active_directory, for_find) {
            (true, false) => attrs.push(USER_ACCOUNT_CONTROL),
            (true, true) => attrs.extend([USER_ACCOUNT_CONTROL, PWD_LAST_SET]),
            (false, true) => attrs.extend([PWD_ACCOUNT_LOCKED_TIME, PWD_CHANGED_TIME]),
            (false, false) => {}
        }
        attrs
    }

    fn entry(&self, found: &Found, username: &str) -> Entry {
        let attribute = self.config.subject_attribute.as_deref();
        found.entry(attribute, self.config.active_directory, username, self.health.name())
    }

    async fn search_then_bind(
        &self,
        base_dn: &str,
        user_filter: &str,
        username: &str,
        password: &str,
    ) -> Result<BindOutcome, Fault> {
        // The service account reads the entry's own lock too: the user's
        // bind is not enough where the directory does not enforce it.
        let mut attrs = self.attrs(false);
        if !self.config.active_directory {
            attrs.push(PWD_ACCOUNT_LOCKED_TIME);
        }
        let Some(found) = self.search(base_dn, user_filter, username, &attrs).await? else {
            // Nobody to bind as. A bind all the same, to a DN nobody has
            // (the directory answers 49 as for a wrong password, and no
            // account's lockout counts it), costs the round trip and the
            // directory's work a wrong password costs: the answer comes
            // when a wrong password's would, where padding alone (on a
            // millisecond timer) ran late by a good part of a fast bind.
            // The padding to the typical bind still follows.
            self.binds.run(&self.connector, &Op::Bind { dn: &self.nobody, password }).await?.bind()?;
            return Ok(BindOutcome::UnknownUser);
        };
        let bind = self.binds.run(&self.connector, &Op::Bind { dn: &found.dn, password }).await?.bind()?;
        self.bind_outcome(&bind, username, Some(&found))
    }

    async fn direct_bind(&self, template: &str, username: &str, password: &str) -> Result<BindOutcome, Fault> {
        let dn = escape::fill(template, &escape::dn_value(username));
        let attrs = self.attrs(false);
        if attrs.is_empty() {
            let bind = self.binds.run(&self.connector, &Op::Bind { dn: &dn, password }).await?.bind()?;
            return self.bind_outcome(&bind, username, None);
        }
        let op = Op::BindThenRead { bind_dn: &dn, password, dn: &dn, attrs: &attrs };
        let (bind, read) = self.binds.run(&self.connector, &op).await?.bind_then_read()?;
        let found = read.and_then(|read| {
            let found = one_entry(&read);
            if found.is_none() {
                tracing::warn!(
                    manager = self.health.name(),
                    dn = %dn,
                    result = %describe(&read.1),
                    "cannot read the entry with the user's own bind: its attributes are not used"
                );
            }
            found
        });
        self.bind_outcome(&bind, username, found.as_ref())
    }

    /// The one entry `user_filter` finds for `username` (with `attrs`), by
    /// the service account: None if none, or more than one.
    async fn search(
        &self,
        base_dn: &str,
        user_filter: &str,
        username: &str,
        attrs: &[&str],
    ) -> Result<Option<Found>, Fault> {
        let Some(service) = &self.service else { return Err(Fault("no service account to search with".into())) };
        let filter = escape::fill(user_filter, &escape::filter_value(username));
        let attrs = if attrs.is_empty() { &["1.1"][..] } else { attrs };
        let op = Op::Search { base: base_dn, scope: Scope::Subtree, filter: &filter, attrs };
        let SearchResult(entries, done) = service.run(&self.connector, &op).await?.search()?;
        let manager = self.health.name();
        match done.rc {
            // 4, sizeLimitExceeded: more than the two asked for.
            0 | 4 => {}
            32 => {
                tracing::warn!(manager, base_dn, "the search base does not exist (result 32): nobody is found");
                return Ok(None);
            }
            _ => return Err(Fault(format!("the search for a user: {}", describe(&done)))),
        }
        if entries.len() > 1 || done.rc == 4 {
            let dns: Vec<String> = entries.into_iter().filter_map(|e| Found::parse(e.0)).map(|f| f.dn).collect();
            tracing::warn!(
                manager,
                filter = %filter,
                entries = ?dns,
                "the user filter matched more than one entry: taken as an unknown user"
            );
            return Ok(None);
        }
        let Some(entry) = entries.into_iter().next() else { return Ok(None) };
        let found = Found::parse(entry.0);
        if found.is_none() {
            tracing::warn!(manager, filter = %filter, "the directory sent an entry ropc cannot read (its DN): taken as an unknown user");
        }
        Ok(found)
    }

    /// What a user's bind answered.
    fn bind_outcome(&self, bind: &LdapResult, username: &str, found: Option<&Found>) -> Result<BindOutcome, Fault> {
        let manager = self.health.name();
        match bind.rc {
            0 => {
                if found.is_some_and(|f| f.disabled(self.config.active_directory)) {
                    return Ok(BindOutcome::Disabled { detail: Some("account_disabled") });
                }
                let attribute = self.config.subject_attribute.as_deref();
                let subject = match found {
                    Some(found) => found.subject(attribute, username, manager),
                    None => username.to_owned(),
                };
                Ok(BindOutcome::Valid { subject })
            }
            49 if self.config.active_directory => Ok(ad::outcome(ad::sub_code(&bind.text))),
            49 => Ok(BindOutcome::WrongPassword { detail: None }),
            // noSuchObject, invalidDNSyntax: no entry was bound to.
            32 | 34 => Ok(BindOutcome::UnknownUser),
            rc if NO_ANSWER.contains(&rc) => Err(Fault(format!("a user's bind: {}", describe(bind)))),
            _ => {
                tracing::warn!(manager, result = %describe(bind), "the directory refused a user's bind");
                Ok(BindOutcome::WrongPassword { detail: Some("bind_refused") })
            }
        }
    }

    /// Template mode's `find`: an anonymous bind, and a base read of the DN.
    async fn read_anonymously(&self, template: &str, username: &str, attrs: &[&str]) -> Result<Option<Entry>, Fault> {
        let dn = escape::fill(template, &escape::dn_value(username));
        let op = Op::BindThenRead { bind_dn: "", password: "", dn: &dn, attrs };
        let (bind, read) = self.binds.run(&self.connector, &op).await?.bind_then_read()?;
        let unseen = || Some(Entry { subject: username.to_owned(), disabled: false, password_changed_at: None });
        let manager = self.health.name();
        let Some(read) = read else {
            if NO_ANSWER.contains(&bind.rc) {
                return Err(Fault(format!("an anonymous bind: {}", describe(&bind))));
            }
            tracing::debug!(manager, result = %describe(&bind), "anonymous binds are refused: the account is taken as it was");
            return Ok(unseen());
        };
        match read.1.rc {
            0 => match one_entry(&read) {
                Some(found) => Ok(Some(self.entry(&found, username))),
                None => Ok(unseen()),
            },
            // The entry is not there, and its parent is visible.
            32 if !read.1.matched.is_empty() => Ok(None),
            rc if NO_ANSWER.contains(&rc) => Err(Fault(format!("an anonymous read: {}", describe(&read.1)))),
            _ => {
                tracing::debug!(manager, result = %describe(&read.1), "the entry is hidden from anonymous reads: the account is taken as it was");
                Ok(unseen())
            }
        }
    }
}

/// The entry of a successful base read, if it is one ropc can read.
fn one_entry(read: &SearchResult) -> Option<Found> {
    if read.1.rc != 0 {
        return None;
    }
    read.0.first().and_then(|e| Found::parse(e.0.clone()))
}

#[cfg(test)]
mod tests;
