//! One sqlx pool per driver (not `Any`): PostgreSQL, MySQL/MariaDB, SQLite.
//!
//! The pool connects lazily: a database that is down when ropc starts does
//! not stop it. Waiting for a connection, opening one included, is bounded
//! by `connect_timeout` (the pool's acquire timeout: sqlx 0.8's PostgreSQL
//! and MySQL options have no connect timeout of their own, and the pool
//! bounds the connect with what is left of it); running the query by
//! `query_timeout`. A connection whose query timed out is closed, not
//! given back half-read.

use super::row::{self, Fetched};
use crate::credentials::{SqlConfig, SqlDriver};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

/// Idle connections are closed after this (the database's side of them
/// too), and any connection after [`MAX_LIFETIME`].
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_LIFETIME: Duration = Duration::from_secs(1800);

/// Why an operation got no answer from the database.
#[derive(Debug)]
pub(super) enum Failure {
    /// The query ran longer than `query_timeout`.
    QueryTimeout,
    /// sqlx's error: connecting, the pool's timeout, or the database's.
    Sqlx(sqlx::Error),
}

/// How to connect, parsed once from the URL.
enum Connect {
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
    Sqlite(SqliteConnectOptions),
}

enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// The pool, made at its first use: sqlx starts its maintenance task on
/// the runtime that makes it, and a manager may be built (a config checked)
/// outside of one.
pub(super) struct Pools {
    connect: Connect,
    max_connections: u32,
    connect_timeout: Duration,
    query_timeout: Duration,
    pool: OnceLock<Pool>,
}

impl std::fmt::Debug for Pools {
    /// The connect options hold the password: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (driver, size, idle) = match self.pool.get() {
            None => (self.driver_name(), 0, 0),
            Some(Pool::Postgres(p)) => ("postgres", p.size(), p.num_idle()),
            Some(Pool::MySql(p)) => ("mysql", p.size(), p.num_idle()),
            Some(Pool::Sqlite(p)) => ("sqlite", p.size(), p.num_idle()),
        };
        f.debug_struct("Pools")
            .field("driver", &driver)
            .field("max_connections", &self.max_connections)
            .field("size", &size)
            .field("idle", &idle)
            .finish_non_exhaustive()
    }
}

fn pool_options<DB: sqlx::Database>(max_connections: u32, connect_timeout: Duration) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(connect_timeout)
        .idle_timeout(IDLE_TIMEOUT)
        .max_lifetime(MAX_LIFETIME)
        // No ping before each use: it put a round trip on every login's
        // path. sqlx still pings a connection as it goes back to the pool
        // (after the answer, off the request's path), which finds most
        // dropped connections; one that dies in between fails its query at
        // once, and the query is sent once more on a fresh one (`run!`).
        .test_before_acquire(false)
}

/// Whether `e` says that the connection itself is gone (a restart, an idle
/// connection the server or a proxy closed), before any answer: worth one
/// more try on a fresh connection. PostgreSQL's 57P01-57P03 are its
/// administrator, crash and startup shutdowns.
fn connection_gone(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Runs `$sql` with `$binds` on a connection of `$pool`, bounded by
/// `$timeout`, and hands the result to `$then`. A pooled connection found
/// gone is closed and the statement sent once more on a new one (a look-up
/// reads; an upgrade writes the same hash again).
macro_rules! run {
    ($self:expr, $pool:expr, $sql:expr, $binds:expr, $method:ident, $then:expr) => {{
        let mut tries = 0;
        loop {
            tries += 1;
            let mut conn = $pool.acquire().await.map_err(Failure::Sqlx)?;
            let mut query = sqlx::query($sql);
            for value in $binds {
                query = query.bind(*value);
            }
            match tokio::time::timeout($self.query_timeout, query.$method(&mut *conn)).await {
                Ok(Ok(answer)) => break Ok($then(answer)),
                Ok(Err(e)) if tries == 1 && connection_gone(&e) => {
                    conn.close_on_drop();
                    // (Not the error's text: it may quote the URL.)
                    tracing::debug!("a pooled SQL connection was gone: once more on a new one");
                }
                Ok(Err(e)) => break Err(Failure::Sqlx(e)),
                Err(_) => break Err(abandon(conn)),
            }
        }
    }};
}

/// A connection whose query was cut short: closed when dropped.
fn abandon<DB: sqlx::Database>(mut conn: PoolConnection<DB>) -> Failure {
    conn.close_on_drop();
    Failure::QueryTimeout
}

impl Pools {
    /// Parses the URL; connects nothing yet.
    pub(super) fn new(config: &SqlConfig) -> Result<Self, sqlx::Error> {
        let url = config.url.expose();
        let connect = match config.driver {
            SqlDriver::Postgres => {
                let options = PgConnectOptions::from_str(url)?;
                let named = options.get_application_name().is_some();
                Connect::Postgres(if named { options } else { options.application_name("ropc") })
            }
            // The session keeps the server's sql_mode and time zone: a
            // query behaves as it does in the DBA's client (`||` stays OR
            // unless the server says otherwise; NOW() stays local time).
            SqlDriver::MySql => {
                Connect::MySql(MySqlConnectOptions::from_str(url)?.pipes_as_concat(false).timezone(None))
            }
            // The file must exist (no create_if_missing): a wrong path is
            // a configuration error, not an empty table. A writer that
            // holds the lock is waited for up to the query's timeout.
            SqlDriver::Sqlite => {
                Connect::Sqlite(SqliteConnectOptions::from_str(url)?.busy_timeout(config.query_timeout))
            }
        };
        Ok(Self {
            connect,
            max_connections: config.max_connections,
            connect_timeout: config.connect_timeout,
            query_timeout: config.query_timeout,
            pool: OnceLock::new(),
        })
    }

    fn driver_name(&self) -> &'static str {
        match self.connect {
            Connect::Postgres(_) => "postgres",
            Connect::MySql(_) => "mysql",
            Connect::Sqlite(_) => "sqlite",
        }
    }

    fn pool(&self) -> &Pool {
        self.pool.get_or_init(|| {
            let (max, timeout) = (self.max_connections, self.connect_timeout);
            match &self.connect {
                Connect::Postgres(o) => Pool::Postgres(pool_options(max, timeout).connect_lazy_with(o.clone())),
                Connect::MySql(o) => Pool::MySql(pool_options(max, timeout).connect_lazy_with(o.clone())),
                Connect::Sqlite(o) => Pool::Sqlite(pool_options(max, timeout).connect_lazy_with(o.clone())),
            }
        })
    }

    /// The first row of `sql` with `binds` at its positions, if any.
    pub(super) async fn first_row(&self, sql: &str, binds: &[&str]) -> Result<Option<Fetched>, Failure> {
        match self.pool() {
            Pool::Postgres(p) => run!(self, p, sql, binds, fetch_optional, |r: Option<sqlx::postgres::PgRow>| r
                .map(|r| Fetched::from_row(&r, row::postgres))),
            Pool::MySql(p) => run!(self, p, sql, binds, fetch_optional, |r: Option<sqlx::mysql::MySqlRow>| r
                .map(|r| Fetched::from_row(&r, row::mysql))),
            Pool::Sqlite(p) => run!(self, p, sql, binds, fetch_optional, |r: Option<sqlx::sqlite::SqliteRow>| r
                .map(|r| Fetched::from_row(&r, row::sqlite))),
        }
    }

    /// Runs a statement; the rows it matched.
    pub(super) async fn execute(&self, sql: &str, binds: &[&str]) -> Result<u64, Failure> {
        match self.pool() {
            Pool::Postgres(p) => {
                run!(self, p, sql, binds, execute, |r: sqlx::postgres::PgQueryResult| r.rows_affected())
            }
            Pool::MySql(p) => run!(self, p, sql, binds, execute, |r: sqlx::mysql::MySqlQueryResult| r.rows_affected()),
            Pool::Sqlite(p) => {
                run!(self, p, sql, binds, execute, |r: sqlx::sqlite::SqliteQueryResult| r.rows_affected())
            }
        }
    }

    /// Closes every connection (a manager being replaced).
    pub(super) async fn close(&self) {
        match self.pool.get() {
            None => {}
            Some(Pool::Postgres(p)) => p.close().await,
            Some(Pool::MySql(p)) => p.close().await,
            Some(Pool::Sqlite(p)) => p.close().await,
        }
    }
}
