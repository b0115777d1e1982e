//! What each kind of credential manager is configured with, as
//! `[credential_managers.NAME]` (checked by `crate::config`) says.

use crate::redact::{Secret, SecretUrl};
use std::path::PathBuf;
use std::time::Duration;

/// A named credential manager, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManagerConfig {
    /// A users file of its own.
    File {
        /// The file, resolved.
        users_file: PathBuf,
    },
    /// A SQL table.
    Sql(SqlConfig),
    /// An LDAP directory.
    Ldap(LdapConfig),
}

impl ManagerConfig {
    /// The kind, as the config names it.
    pub fn kind(&self) -> &'static str {
        match self {
            ManagerConfig::File { .. } => "file",
            ManagerConfig::Sql(_) => "sql",
            ManagerConfig::Ldap(_) => "ldap",
        }
    }
}

/// Which database a SQL manager speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlDriver {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `mysql://` or `mariadb://` (MySQL and MariaDB).
    MySql,
    /// `sqlite:PATH`.
    Sqlite,
}

/// `kind = "sql"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlConfig {
    /// The database; its password never reaches a log. A relative SQLite
    /// path is resolved against the config file's directory.
    pub url: SecretUrl,
    /// The driver the URL names.
    pub driver: SqlDriver,
    /// Looks a user up: `:username` is bound; columns `hash`, `subject`,
    /// `disabled` are read by name.
    pub query: String,
    /// Writes an upgraded hash back: `:hash`, `:subject`, `:username`.
    pub update_query: Option<String>,
    /// Most connections in the pool.
    pub max_connections: u32,
    /// Bound on opening a connection (and on waiting for one from the pool).
    pub connect_timeout: Duration,
    /// Bound on one query.
    pub query_timeout: Duration,
    /// How long a refresh may rely on an earlier look-up of the account.
    pub account_cache_ttl: Duration,
}

/// `kind = "ldap"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapConfig {
    /// `ldap://` or `ldaps://` URLs, tried in order on connect errors and
    /// timeouts.
    pub urls: Vec<String>,
    /// Upgrade `ldap://` with StartTLS.
    pub start_tls: bool,
    /// The CA for `ldaps://` and StartTLS (none: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// How a user's entry is found.
    pub locate: LdapLocate,
    /// The attribute that becomes `sub` (none: the username).
    pub subject_attribute: Option<String>,
    /// Read Active Directory's bind sub-codes and `userAccountControl`.
    pub active_directory: bool,
    /// Most connections, for searches and for binds each.
    pub max_connections: u32,
    /// Bound on connecting (TCP and TLS).
    pub connect_timeout: Duration,
    /// Bound on one operation (bind, search).
    pub operation_timeout: Duration,
    /// How long a refresh may rely on an earlier look-up of the account.
    pub account_cache_ttl: Duration,
}

/// How an LDAP manager finds the entry a user binds as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LdapLocate {
    /// Search with a service account, then bind as the entry found.
    Search {
        /// The service account's DN.
        bind_dn: String,
        /// Its password.
        bind_password: Secret,
        /// Where to search.
        base_dn: String,
        /// The filter; `{username}` is replaced, escaped as RFC 4515 says.
        user_filter: String,
    },
    /// Bind straight to a DN made from the username (escaped as RFC 4514
    /// says); the account's entry is read with the user's own bind.
    Template(String),
}
