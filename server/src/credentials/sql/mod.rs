//! The SQL credential manager: PostgreSQL, MySQL/MariaDB and SQLite, each
//! through its own sqlx pool.
//!
//! The configured queries are rewritten once, here, with the driver's
//! placeholders; every value is bound. Every operation goes through the
//! manager's [`Health`]: an answer from the database (a row or none) closes
//! the breaker, a connect error, a timeout or an error from the database
//! counts towards opening it, so that a database that is down costs a
//! login at most `connect_timeout` and then fails fast with
//! [`ManagerError::Unavailable`] until a probe gets through.
//!
//! A row the manager cannot read (no `hash` column, a NULL hash, a column
//! of a type it does not know) is a configuration problem: it is logged
//! once per manager and kind, with the column names and never the values,
//! and the look-up answers `Ok(None)`, so that the login fails as an
//! unknown user's would (no hash is run against it, no wrong answer given).
//! So does a username the database refuses as a value (a data exception):
//! clients choose usernames, and must not be able to open the breaker.

mod pool;
mod query;
mod row;
mod scrub;

pub use query::{parameters, positional};

use super::health::Admitted;
use super::{Health, ManagerError, SqlConfig, SqlDriver};
use pool::{Failure, Pools};
use row::Fetched;
use scrub::Scrubber;
use std::sync::atomic::{AtomicU8, Ordering};

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

/// Which value goes at a position of the update query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Param {
    Hash,
    Subject,
    Username,
}

/// The update query, rewritten, and the value at each of its positions.
#[derive(Debug)]
struct Update {
    sql: String,
    params: Vec<Param>,
}

/// Logged once per manager, besides each kind of unreadable row (the bits
/// of `row::Unfit::bit`): a username refused as a value, an update that
/// matched no row.
const LOGGED_BAD_VALUE: u8 = 64;
const LOGGED_NO_ROW_UPDATED: u8 = 128;

/// A SQL table of users.
pub struct SqlManager {
    health: Health,
    config: SqlConfig,
    pools: Pools,
    /// The look-up, with `$n`/`?`, and how many positions take the username.
    find_sql: String,
    find_binds: usize,
    update: Option<Update>,
    scrubber: Scrubber,
    logged: AtomicU8,
}

impl std::fmt::Debug for SqlManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlManager")
            .field("name", &self.health.name())
            .field("url", &self.scrubber.scrub(&self.config.url.redacted()))
            .field("driver", &self.config.driver)
            .field("query", &self.config.query)
            .field("update_query", &self.config.update_query)
            .field("pool", &self.pools)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl SqlManager {
    /// A manager for `config`, named `name`. Connects lazily: a database
    /// that is down at start makes its logins fail with 503 until it is up.
    /// Needs no runtime: the pool is made at the first operation.
    pub fn new(name: &str, config: SqlConfig) -> Result<Self, String> {
        let scrubber = Scrubber::new(config.url.expose());
        let err = |e: String| format!("credential manager {name}: {e}");
        let (find_sql, order) = positional(&config.query, config.driver).map_err(|e| err(format!("query: {e}")))?;
        if order.is_empty() || order.iter().any(|p| p != "username") {
            return Err(err("the query takes one parameter, :username (it may appear more than once)".into()));
        }
        let update = match &config.update_query {
            None => None,
            Some(q) => {
                let (sql, order) = positional(q, config.driver).map_err(|e| err(format!("update_query: {e}")))?;
                let params = order
                    .iter()
                    .map(|p| match p.as_str() {
                        "hash" => Ok(Param::Hash),
                        "subject" => Ok(Param::Subject),
                        "username" => Ok(Param::Username),
                        other => Err(err(format!("update_query: unknown parameter :{other}"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if !params.contains(&Param::Hash) {
                    return Err(err("update_query: the update query takes :hash".into()));
                }
                Some(Update { sql, params })
            }
        };
        let pools = Pools::new(&config).map_err(|e| {
            err(format!("{}: {}", scrubber.scrub(&config.url.redacted()), scrubber.scrub(&e.to_string())))
        })?;
        Ok(Self {
            health: Health::new(name, "sql", config.max_connections as usize),
            find_binds: order.len(),
            find_sql,
            update,
            pools,
            scrubber,
            config,
            logged: AtomicU8::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SqlConfig {
        &self.config
    }

    /// The breaker, cap and metrics.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Runs the query for `username` (bound, never spliced): the first
    /// row, or `None` when there is none or it cannot be read (logged).
    ///
    /// A username the database cannot take as a value (a NUL in
    /// PostgreSQL's text, a cast of it that fails) is an unknown user, not
    /// a failure: usernames come from clients, and must not open the
    /// breaker for everyone.
    pub async fn find(&self, username: &str) -> Result<Option<Row>, ManagerError> {
        if username.contains('\0') {
            return Ok(None);
        }
        let admitted = self.health.admit()?;
        let binds = vec![username; self.find_binds];
        match self.pools.first_row(&self.find_sql, &binds).await {
            Ok(fetched) => {
                admitted.done();
                Ok(fetched.and_then(|f| self.fit(f)))
            }
            Err(Failure::Sqlx(sqlx::Error::Database(e))) if self.is_data_exception(e.as_ref()) => {
                admitted.done();
                if self.first_time(LOGGED_BAD_VALUE) {
                    tracing::warn!(
                        event = "sql_username_refused",
                        manager = %self.health.name(),
                        code = %e.code().unwrap_or_default(),
                        error = %self.scrubber.scrub(e.message()),
                        "the database refused a username as a value: answered as an unknown user (logged once)"
                    );
                }
                Ok(None)
            }
            Err(failure) => Err(self.failed(admitted, "look-up", &failure)),
        }
    }

    /// SQLSTATE class 22, a data exception: the value bound was refused
    /// (invalid text for a cast, out of range), not the query.
    fn is_data_exception(&self, e: &dyn sqlx::error::DatabaseError) -> bool {
        let sqlstate = matches!(self.config.driver, SqlDriver::Postgres | SqlDriver::MySql);
        sqlstate && e.code().is_some_and(|c| c.len() == 5 && c.starts_with("22"))
    }

    /// Runs the update query: `hash` is the user's new hash. Without an
    /// update query, does nothing.
    pub async fn update_hash(&self, username: &str, subject: &str, hash: &str) -> Result<(), ManagerError> {
        let Some(update) = &self.update else { return Ok(()) };
        let admitted = self.health.admit()?;
        let binds: Vec<&str> = update
            .params
            .iter()
            .map(|p| match p {
                Param::Hash => hash,
                Param::Subject => subject,
                Param::Username => username,
            })
            .collect();
        match self.pools.execute(&update.sql, &binds).await {
            Ok(matched) => {
                admitted.done();
                if matched == 0 && self.first_time(LOGGED_NO_ROW_UPDATED) {
                    tracing::warn!(
                        event = "sql_update_matched_nothing",
                        manager = %self.health.name(),
                        "the update query changed no row: upgraded hashes are not stored (check its WHERE; logged once)"
                    );
                }
                Ok(())
            }
            Err(failure) => Err(self.failed(admitted, "update", &failure)),
        }
    }

    /// Closes the pool's connections (the manager is being replaced).
    pub async fn close(&self) {
        self.pools.close().await;
    }

    /// Whether `bit` is logged for the first time.
    fn first_time(&self, bit: u8) -> bool {
        self.logged.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// The row, or `None` (logged once per kind) when it cannot be read.
    fn fit(&self, fetched: Fetched) -> Option<Row> {
        match fetched.into_row() {
            Ok(row) => Some(row),
            Err(unfit) => {
                if self.first_time(unfit.bit()) {
                    tracing::error!(
                        event = "sql_row_unreadable",
                        manager = %self.health.name(),
                        problem = %unfit,
                        "a configuration problem: such users' logins fail as unknown users (logged once)"
                    );
                }
                None
            }
        }
    }

    /// Reports `failure` to the breaker; what to answer the caller.
    fn failed(&self, admitted: Admitted<'_>, what: &str, failure: &Failure) -> ManagerError {
        let why = self.describe(what, failure);
        let answer = admitted.unavailable();
        admitted.failed(&why);
        answer
    }

    /// Why `failure` happened, without the URL's password. An error from
    /// the database itself is also logged as a configuration problem.
    fn describe(&self, what: &str, failure: &Failure) -> String {
        let ms = |d: std::time::Duration| d.as_millis();
        match failure {
            Failure::QueryTimeout => {
                format!("the {what} query ran past query_timeout_ms ({} ms)", ms(self.config.query_timeout))
            }
            Failure::Sqlx(sqlx::Error::PoolTimedOut) => format!(
                "no connection within connect_timeout_ms ({} ms): the database is down, unreachable or too slow",
                ms(self.config.connect_timeout)
            ),
            Failure::Sqlx(sqlx::Error::Database(e)) => {
                let message = self.scrubber.scrub(e.message());
                let mut code = e.code().map(|c| c.into_owned()).unwrap_or_default();
                if let Some(my) = e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                    // MySQL's manual lists its errors by number.
                    code = format!("{} {code}", my.number());
                }
                tracing::error!(
                    event = "sql_refused",
                    manager = %self.health.name(),
                    operation = what,
                    code = %code,
                    error = %message,
                    "the database refused the {what}: a configuration problem? (check the query, its table, and the URL's user and password)"
                );
                format!("the database refused the {what} ({code}): {message}")
            }
            Failure::Sqlx(e) => self.scrubber.scrub(&e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::SecretUrl;
    use std::time::Duration;

    fn config(url: &str, driver: SqlDriver, query: &str, update: Option<&str>) -> SqlConfig {
        SqlConfig {
            url: SecretUrl::new(url.into()),
            driver,
            query: query.into(),
            update_query: update.map(Into::into),
            max_connections: 2,
            connect_timeout: Duration::from_millis(300),
            query_timeout: Duration::from_millis(300),
            account_cache_ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn queries_are_rewritten_once_and_bad_ones_refused() {
        let q = "SELECT hash FROM u WHERE login = :username OR email = :username";
        let up = "UPDATE u SET hash = :hash WHERE id = :subject::int AND login = :username";
        let m =
            SqlManager::new("db", config("postgres://ropc:hunter2@127.0.0.1:1/x", SqlDriver::Postgres, q, Some(up)))
                .expect("no runtime needed");
        assert_eq!(m.find_sql, "SELECT hash FROM u WHERE login = $1 OR email = $2");
        assert_eq!(m.find_binds, 2);
        let update = m.update.as_ref().unwrap();
        assert_eq!(update.sql, "UPDATE u SET hash = $1 WHERE id = $2::int AND login = $3");
        assert_eq!(update.params, [Param::Hash, Param::Subject, Param::Username]);
        let debug = format!("{m:?}");
        assert!(!debug.contains("hunter2") && debug.contains("ropc:<redacted>@127.0.0.1"), "{debug}");

        let sqlite = |q: &str, u: Option<&str>| SqlManager::new("f", config("sqlite:///x.db", SqlDriver::Sqlite, q, u));
        assert!(sqlite("SELECT hash FROM u", None).unwrap_err().contains(":username"));
        assert!(sqlite("SELECT hash FROM u WHERE a = :user", None).is_err());
        assert!(sqlite("SELECT 'x FROM u WHERE a = :username", None).unwrap_err().contains("quote"));
        assert!(sqlite(q, Some("UPDATE u SET a = 1 WHERE b = :username")).unwrap_err().contains(":hash"));
        assert!(sqlite(q, Some("UPDATE u SET h = :hash WHERE b = :who")).unwrap_err().contains(":who"));
        let e = SqlManager::new("p", config("postgres://ropc:hunter2@db:notaport/x", SqlDriver::Postgres, q, None))
            .unwrap_err();
        assert!(!e.contains("hunter2") && e.starts_with("credential manager p: "), "{e}");
    }

    #[tokio::test]
    async fn a_database_that_is_not_there_answers_unavailable_and_then_fails_fast() {
        // Port 1 on loopback: refused at once; the pool retries until
        // connect_timeout.
        let m = SqlManager::new(
            "gone",
            config(
                "postgres://ropc:hunter2@127.0.0.1:1/x",
                SqlDriver::Postgres,
                "SELECT 1 AS hash WHERE :username = ''",
                None,
            ),
        )
        .unwrap();
        for _ in 0..super::super::health::FAILURES_TO_OPEN {
            let started = std::time::Instant::now();
            assert!(matches!(m.find("alice").await, Err(ManagerError::Unavailable { .. })));
            assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
        }
        assert!(!m.health().is_up());
        assert_eq!(m.find("a\0b").await, Ok(None), "a NUL: no such user, nothing asked");
        let started = std::time::Instant::now();
        assert!(matches!(m.find("alice").await, Err(ManagerError::Unavailable { .. })));
        assert!(started.elapsed() < Duration::from_millis(50), "open: no connect tried");
        m.close().await;
    }
}
