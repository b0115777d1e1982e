//! The named credential managers of one generation
//! (`[credential_managers.NAME]`), each a users file, a SQL table or an
//! LDAP directory. A commit that keeps a manager's configuration keeps the
//! manager (its pool, its connections, its breaker); a users file is read
//! again.

use super::accounts::Accounts;
use super::health::{self, Health};
use super::ldap::LdapManager;
use super::sql::SqlManager;
use super::{ManagerConfig, UserStore};
use crate::source::SourceError;
use crate::users_file::Replacement;
use ropc_hash::HashParams;
use ropc_metrics::Exposition;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a named manager keeps its users in.
#[derive(Debug)]
pub enum Backend {
    /// A users file of its own, and the thread that writes its upgrades.
    File {
        /// Its users.
        users: Arc<UserStore>,
        /// Where upgraded hashes go to be written.
        writer: Option<crossbeam_channel::Sender<Replacement>>,
    },
    /// A SQL table.
    Sql(Box<SqlManager>),
    /// An LDAP directory.
    Ldap(Box<LdapManager>),
}

/// One named manager.
#[derive(Debug)]
pub struct NamedManager {
    /// Its name.
    pub name: Arc<str>,
    /// Its configuration.
    pub config: ManagerConfig,
    /// Where its users live.
    pub backend: Backend,
    /// Moving mean of one of its verifications, in nanoseconds (look-up and
    /// hash, or bind): how long its refused attempts are held.
    typical_ns: AtomicU64,
    /// Verifications taken into that mean (up to its window).
    observed: AtomicU64,
    /// A file manager's health (the others' is their backend's).
    file_health: Health,
}

impl NamedManager {
    /// What one of its verifications takes.
    pub fn typical(&self) -> Duration {
        Duration::from_nanos(self.typical_ns.load(Ordering::Relaxed))
    }

    /// Takes a verification that took `took` into the mean: the plain mean
    /// of the first 16, then a moving mean over about 16. (A moving mean
    /// from the first sample alone would carry a cold start, such as a
    /// directory's first bind on a new connection, for dozens of requests,
    /// and pad unknown users' answers past the wrong passwords'.)
    pub fn observe(&self, took: Duration) {
        const WINDOW: u64 = 16;
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let n = self.observed.fetch_add(1, Ordering::Relaxed).saturating_add(1).min(WINDOW);
        let old = self.typical_ns.load(Ordering::Relaxed);
        let mean = if n == 1 { took } else { ropc_metrics::moving_mean(old, took, n) };
        self.typical_ns.store(mean, Ordering::Relaxed);
    }

    /// Its health (breaker, operations, errors).
    pub fn health(&self) -> &Health {
        match &self.backend {
            Backend::File { .. } => &self.file_health,
            Backend::Sql(sql) => sql.health(),
            Backend::Ldap(ldap) => ldap.health(),
        }
    }

    /// How long a refresh may rely on an earlier look-up, seconds.
    pub fn account_cache_ttl(&self) -> u64 {
        match &self.config {
            ManagerConfig::File { .. } => 0,
            ManagerConfig::Sql(c) => c.account_cache_ttl.as_secs(),
            ManagerConfig::Ldap(c) => c.account_cache_ttl.as_secs(),
        }
    }
}

/// Why a generation's managers could not be built.
#[derive(Debug)]
pub enum ManagersError {
    /// A users file is wrong.
    Source(SourceError),
    /// A SQL or LDAP manager could not be set up: which, and why.
    Backend(String, String),
    /// The users-file writer's thread could not start.
    Thread(std::io::Error),
}

impl std::fmt::Display for ManagersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManagersError::Source(e) => e.fmt(f),
            ManagersError::Backend(name, why) => write!(f, "credential manager {name:?}: {why}"),
            ManagersError::Thread(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for ManagersError {}

/// The named managers of one generation, and the accounts of all of them
/// (which outlive generations).
#[derive(Debug, Default)]
pub struct Managers {
    named: BTreeMap<String, Arc<NamedManager>>,
    accounts: Arc<Accounts>,
}

impl Managers {
    /// Builds the managers `configs` names. With `previous`, a manager
    /// whose configuration did not change is kept as it was (a users file
    /// is read again); `typical` seeds a new manager's mean verification.
    pub fn build(
        configs: &BTreeMap<String, ManagerConfig>,
        params: HashParams,
        previous: Option<&Managers>,
        typical: Duration,
    ) -> Result<Self, ManagersError> {
        let mut named = BTreeMap::new();
        for (name, config) in configs {
            let old = previous.and_then(|p| p.named.get(name)).filter(|m| m.config == *config);
            let manager = match (old, config) {
                (Some(old), ManagerConfig::File { users_file }) => match &old.backend {
                    Backend::File { users, writer } => {
                        let users = UserStore::load_after(users_file, params, users).map_err(ManagersError::Source)?;
                        Arc::new(NamedManager {
                            name: Arc::clone(&old.name),
                            config: config.clone(),
                            backend: Backend::File { users: Arc::new(users), writer: writer.clone() },
                            typical_ns: AtomicU64::new(old.typical_ns.load(Ordering::Relaxed)),
                            observed: AtomicU64::new(old.observed.load(Ordering::Relaxed)),
                            file_health: Health::new(name, "file", FILE_CAP),
                        })
                    }
                    _ => Arc::new(new_manager(name, config, params, typical)?),
                },
                (Some(old), _) => Arc::clone(old),
                (None, config) => Arc::new(new_manager(name, config, params, typical)?),
            };
            named.insert(name.clone(), manager);
        }
        let accounts = previous.map_or_else(Arc::default, |p| Arc::clone(&p.accounts));
        Ok(Self { named, accounts })
    }

    /// The manager called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<NamedManager>> {
        self.named.get(name)
    }

    /// Every named manager.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<NamedManager>> + Clone {
        self.named.values()
    }

    /// The accounts of every named manager.
    pub fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }

    /// Appends every manager's metrics, labelled by name.
    pub fn write_metrics(&self, out: &mut Exposition) {
        if !self.named.is_empty() {
            health::write_families(out, self.named.values().map(|m| m.health()));
        }
        out.gauge(
            "ropc_credential_accounts",
            "Accounts of named credential managers with a number in token records.",
            self.accounts.len(),
        );
    }

    /// One line per manager for `/healthz`: its name, kind and state.
    pub fn health_lines(&self) -> String {
        self.named
            .values()
            .map(|m| {
                let state = if m.health().is_up() { "up" } else { "down" };
                format!("credential_manager {} ({}): {state}\n", m.name, m.config.kind())
            })
            .collect()
    }
}

/// A users file answers from memory: no cap on its operations in flight.
const FILE_CAP: usize = 1 << 20;

fn new_manager(
    name: &str,
    config: &ManagerConfig,
    params: HashParams,
    typical: Duration,
) -> Result<NamedManager, ManagersError> {
    let backend = match config {
        ManagerConfig::File { users_file } => {
            let users = UserStore::load(users_file, params).map_err(ManagersError::Source)?;
            let writer = crate::users_file::spawn_writer(users_file.clone()).map_err(ManagersError::Thread)?;
            Backend::File { users: Arc::new(users), writer: Some(writer) }
        }
        ManagerConfig::Sql(c) => Backend::Sql(Box::new(
            SqlManager::new(name, c.clone()).map_err(|e| ManagersError::Backend(name.to_owned(), e))?,
        )),
        ManagerConfig::Ldap(c) => Backend::Ldap(Box::new(
            LdapManager::new(name, c.clone()).map_err(|e| ManagersError::Backend(name.to_owned(), e))?,
        )),
    };
    Ok(NamedManager {
        name: Arc::from(name),
        config: config.clone(),
        backend,
        // A bind costs what the directory takes, nothing like a hash: its
        // mean starts at the first bind (until then, padding uses the hash's).
        typical_ns: AtomicU64::new(match config {
            ManagerConfig::Ldap(_) => 0,
            _ => u64::try_from(typical.as_nanos()).unwrap_or(u64::MAX),
        }),
        // A seed (the hash's time) counts as one verification; an LDAP
        // manager has none.
        observed: AtomicU64::new(u64::from(!matches!(config, ManagerConfig::Ldap(_)))),
        file_health: Health::new(name, "file", FILE_CAP),
    })
}
