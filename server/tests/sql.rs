//! The SQL credential manager against real databases the tests start:
//! PostgreSQL, MariaDB and SQLite. Rows are read by column name whatever
//! their types, values are bound (injection finds nothing and harms
//! nothing), upgraded hashes are written back, an outage answers
//! `Unavailable` within the connect timeout and then fails fast, and the
//! database's return brings the manager back without recreating it. The
//! URL's password shows in no log and no `Debug`.

use crate::support::db::{Mariadb, Postgres, Sqlite, PASSWORD, PASSWORD_IN_URL};
use crate::support::hash;
use ropc_hash::StoredHash;
use ropc_server::credentials::health::FAILURES_TO_OPEN;
use ropc_server::credentials::sql::{Row, SqlManager};
use ropc_server::credentials::{ManagerError, SqlConfig, SqlDriver};
use ropc_server::redact::SecretUrl;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The password of the legacy test vectors (hash/src/stored.rs).
const LEGACY_PASSWORD: &str = "pw-legacy";
const BCRYPT: &str = "$2b$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu";
const PBKDF2: &str = "$pbkdf2-sha256$i=1000,l=32$cGhjc2FsdDEyMzQ1Njc4OQ$M3StOd4cSIFtIdlWilVnzlFxDBWkTKrMGstr+F9ofd0";
const SHA512_CRYPT: &str =
    "$6$saltsalt$HesR2wpSRtAhqbwNYjqoN1g3hsmpmiDskwrGRbSr4XSs7VmD4BbZeQDBeWx2ae65MfQighTdIAKiA/DtTrU3A/";

/// Usernames that would find or break something if they were spliced.
const INJECTIONS: [&str; 7] =
    ["' OR '1'='1", "alice'--", "x'; DROP TABLE users;--", "%", "_", "alice\\' OR 1=1 -- ", "alice\" OR \"1\"=\"1"];

fn config(url: &str, driver: SqlDriver, query: &str, update: Option<&str>) -> SqlConfig {
    SqlConfig {
        url: SecretUrl::new(url.into()),
        driver,
        query: query.into(),
        update_query: update.map(Into::into),
        max_connections: 4,
        connect_timeout: Duration::from_millis(1000),
        query_timeout: Duration::from_millis(1000),
        account_cache_ttl: Duration::from_secs(60),
    }
}

fn manager(url: &str, driver: SqlDriver, query: &str, update: Option<&str>) -> SqlManager {
    SqlManager::new("legacy", config(url, driver, query, update)).unwrap()
}

/// What the code under test logs on this thread (the test's runtime is
/// current-thread, so sqlx's tasks log here too), at debug and above.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The logs so far, checked to hold no form of a password.
    fn clean(&self, also: &[&str]) -> String {
        let text = self.text();
        for secret in [PASSWORD, PASSWORD_IN_URL].iter().chain(also) {
            assert!(!text.contains(secret), "a password in the logs ({secret}):\n{text}");
        }
        text
    }
}

fn assert_debug_clean(m: &SqlManager, also: &[&str]) {
    let debug = format!("{m:?}");
    for secret in [PASSWORD, PASSWORD_IN_URL].iter().chain(also) {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(debug.contains("ropc:<redacted>@"), "{debug}");
}

async fn found(m: &SqlManager, username: &str) -> Row {
    m.find(username).await.unwrap_or_else(|e| panic!("{username}: {e}")).unwrap_or_else(|| panic!("{username}: no row"))
}

fn verifies(row: &Row, password: &str) -> bool {
    StoredHash::parse(&row.hash).unwrap_or_else(|e| panic!("{row:?}: {e}")).verify(password.as_bytes())
}

/// Each injection finds nothing (the username is bound, never spliced).
async fn injections_find_nothing(m: &SqlManager) {
    for evil in INJECTIONS {
        assert_eq!(m.find(evil).await, Ok(None), "{evil:?}");
    }
}

/// A database that went away: each look-up answers `Unavailable` within
/// the connect timeout and a margin, until the breaker opens and answers at
/// once. The longest of those answers.
async fn outage_answers(m: &SqlManager, who: &str) -> Duration {
    let mut longest = Duration::ZERO;
    for i in 0..FAILURES_TO_OPEN {
        let started = Instant::now();
        let answer = m.find(who).await;
        let took = started.elapsed();
        assert!(matches!(answer, Err(ManagerError::Unavailable { .. })), "look-up {i}: {answer:?}");
        assert!(took < Duration::from_secs(3), "look-up {i} took {took:?}");
        longest = longest.max(took);
    }
    assert!(!m.health().is_up(), "{FAILURES_TO_OPEN} failures open the breaker");
    let started = Instant::now();
    assert!(matches!(m.find(who).await, Err(ManagerError::Unavailable { retry_after: 1.. })));
    assert!(started.elapsed() < Duration::from_millis(50), "open: fails fast ({:?})", started.elapsed());
    longest
}

/// After the database is back: the manager answers again once the backoff
/// is over (no new manager). How long that took.
async fn recovers(m: &SqlManager, who: &str) -> Duration {
    let started = Instant::now();
    loop {
        match m.find(who).await {
            Ok(Some(_)) => break,
            Ok(None) => panic!("{who} is there"),
            Err(e) => assert!(started.elapsed() < Duration::from_secs(20), "not back after 20 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(m.health().is_up());
    started.elapsed()
}

/// A port that accepts connections and never says a word: the look-up
/// answers `Unavailable` within the connect timeout, never hangs.
async fn a_silent_server_times_out(driver: SqlDriver, scheme: &str) {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("{scheme}://ropc:{PASSWORD_IN_URL}@{}/legacy", silent.local_addr().unwrap());
    let m = manager(&url, driver, "SELECT hash FROM users WHERE login = :username", None);
    let started = Instant::now();
    assert!(matches!(m.find("alice").await, Err(ManagerError::Unavailable { .. })));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn postgres_reads_argon2_bcrypt_and_pbkdf2_users_by_column_name() {
    let (logs, _guard) = Logs::capture();
    let pg = Postgres::start();
    pg.sql(
        "CREATE TABLE users (id serial PRIMARY KEY, login text UNIQUE NOT NULL, password varchar(255), \
         active boolean NOT NULL DEFAULT true, disabled boolean, note text)",
    );
    let argon = hash("wonderland");
    pg.sql(&format!(
        "INSERT INTO users (login, password, disabled) VALUES ('alice', '{argon}', false), ('bob', '{BCRYPT}', NULL), \
         ('carol', '{PBKDF2}', true); INSERT INTO users (login, password, active) VALUES ('dave', NULL, false)"
    ));
    let update = "UPDATE users SET password = :hash WHERE id = CAST(:subject AS integer) AND login = :username";
    let m = manager(
        &pg.url(),
        SqlDriver::Postgres,
        "SELECT id AS subject, password AS hash, disabled FROM users WHERE login = :username",
        Some(update),
    );

    let alice = found(&m, "alice").await;
    assert_eq!((alice.subject.as_deref(), alice.disabled), (Some("1"), false), "an integer id becomes the subject");
    assert!(verifies(&alice, "wonderland") && !verifies(&alice, "wonderlanD"));
    let bob = found(&m, "bob").await;
    assert_eq!((bob.subject.as_deref(), bob.disabled), (Some("2"), false), "a NULL disabled is enabled");
    assert!(verifies(&bob, LEGACY_PASSWORD), "bcrypt");
    let carol = found(&m, "carol").await;
    assert!(carol.disabled && verifies(&carol, LEGACY_PASSWORD), "PBKDF2, disabled");
    assert_eq!(m.find("nobody").await, Ok(None));
    assert_eq!(m.find("Alice").await, Ok(None), "an exact match only");
    assert_eq!(m.find("dave").await, Ok(None), "a NULL hash: as an unknown user");

    injections_find_nothing(&m).await;
    assert_eq!(pg.sql("SELECT count(*) FROM users"), "4", "the table is intact");

    // Other column names, in another order, the subject cast to text and
    // `disabled` computed: read by name, not by position.
    let renamed = manager(
        &pg.url(),
        SqlDriver::Postgres,
        "SELECT NOT active AS disabled, login, password AS hash, id::text AS subject FROM users \
         WHERE login = :username OR note = :username",
        None,
    );
    let row = found(&renamed, "bob").await;
    assert_eq!((row.subject.as_deref(), row.disabled, row.hash.as_str()), (Some("2"), false, BCRYPT));
    pg.sql("UPDATE users SET active = false WHERE login = 'bob'");
    assert!(found(&renamed, "bob").await.disabled);

    // The upgrade writes the new hash, bound at every position it names.
    let upgraded = hash(LEGACY_PASSWORD);
    m.update_hash("bob", "2", &upgraded).await.unwrap();
    assert_eq!(pg.sql("SELECT password FROM users WHERE login = 'bob'"), upgraded);
    assert_eq!(found(&m, "bob").await.hash, upgraded);
    m.update_hash("bob", "999", "$not-written$").await.unwrap();
    assert_eq!(pg.sql("SELECT password FROM users WHERE login = 'bob'"), upgraded, "another subject: no row");

    // A query longer than query_timeout answers Unavailable within it, and
    // the next look-up works (the cut connection was not reused).
    let slow = manager(
        &pg.url(),
        SqlDriver::Postgres,
        "SELECT password AS hash FROM users WHERE login = :username AND (SELECT true FROM pg_sleep(CASE WHEN \
         :username = 'alice' THEN 5 ELSE 0 END))",
        None,
    );
    let started = Instant::now();
    assert!(matches!(slow.find("alice").await, Err(ManagerError::Unavailable { .. })));
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    assert_eq!(found(&slow, "carol").await.hash, PBKDF2, "the next look-up works");

    assert_debug_clean(&m, &[]);
    let text = logs.clean(&[&argon, BCRYPT, &upgraded]);
    assert!(text.contains("query_timeout_ms (1000 ms)"), "{text}");
    assert!(text.contains("sql_row_unreadable"), "the NULL hash is logged: {text}");
}

#[tokio::test]
async fn postgres_configuration_mistakes_are_logged_without_the_password() {
    let (logs, _guard) = Logs::capture();
    let pg = Postgres::start();
    pg.sql(&format!("CREATE TABLE users (login text, pw text); INSERT INTO users VALUES ('alice', '{BCRYPT}')"));
    let url = pg.url();

    // No `hash` column: logged once, with the column names, no values;
    // the look-up answers as for an unknown user, and the database did
    // answer (the breaker stays closed).
    let unnamed = manager(&url, SqlDriver::Postgres, "SELECT login, pw FROM users WHERE login = :username", None);
    for _ in 0..5 {
        assert_eq!(unnamed.find("alice").await, Ok(None));
    }
    assert!(unnamed.health().is_up());
    let text = logs.text();
    assert_eq!(text.matches("sql_row_unreadable").count(), 1, "once per manager: {text}");
    assert!(text.contains(r#"[\"login\", \"pw\"]"#) || text.contains(r#"["login", "pw"]"#), "{text}");

    // A username the database refuses as a value (not an integer, a NUL)
    // is an unknown user: clients choose usernames, and must not be able
    // to open the breaker.
    let by_id =
        manager(&url, SqlDriver::Postgres, "SELECT pw AS hash FROM users WHERE 1 = CAST(:username AS integer)", None);
    for evil in ["abc", "99999999999", "al\0ice"] {
        for _ in 0..FAILURES_TO_OPEN {
            assert_eq!(by_id.find(evil).await, Ok(None), "{evil:?}");
        }
    }
    assert!(by_id.health().is_up());
    assert_eq!(found(&by_id, "1").await.hash, BCRYPT);
    assert!(logs.text().contains("sql_username_refused"));

    // A table that is not there: the database's error, as a configuration
    // problem, and Unavailable.
    let missing = manager(&url, SqlDriver::Postgres, "SELECT pw AS hash FROM nosuch WHERE login = :username", None);
    assert!(matches!(missing.find("alice").await, Err(ManagerError::Unavailable { .. })));
    let text = logs.text();
    assert!(text.contains("sql_refused") && text.contains("42P01") && text.contains("nosuch"), "{text}");

    // A wrong password in the URL: refused at once, its password hidden.
    let wrong = url.replace(PASSWORD_IN_URL, "Wr0ng%2Fpw");
    let refused = manager(&wrong, SqlDriver::Postgres, "SELECT pw AS hash FROM users WHERE login = :username", None);
    let started = Instant::now();
    assert!(matches!(refused.find("alice").await, Err(ManagerError::Unavailable { .. })));
    assert!(started.elapsed() < Duration::from_secs(1), "an authentication error is not waited out");
    assert_debug_clean(&refused, &["Wr0ng"]);
    let text = logs.clean(&["Wr0ng", BCRYPT]);
    assert!(text.contains("28P01") && text.contains("password authentication failed"), "{text}");

    a_silent_server_times_out(SqlDriver::Postgres, "postgres").await;
    logs.clean(&[]);
}

#[tokio::test]
async fn postgres_outage_answers_unavailable_fast_and_the_manager_recovers() {
    let (logs, _guard) = Logs::capture();
    let mut pg = Postgres::start();
    pg.sql(&format!("CREATE TABLE users (login text, hash text); INSERT INTO users VALUES ('alice', '{BCRYPT}')"));
    let m = manager(&pg.url(), SqlDriver::Postgres, "SELECT hash FROM users WHERE login = :username", None);
    assert!(verifies(&found(&m, "alice").await, LEGACY_PASSWORD));

    pg.stop();
    let longest = outage_answers(&m, "alice").await;
    pg.start_again();
    let back = recovers(&m, "alice").await;
    eprintln!("PostgreSQL outage: longest Unavailable answer {longest:?}; back {back:?} after the restart");

    let text = logs.clean(&[]);
    assert!(text.contains("credential_manager_down") && text.contains("credential_manager_up"), "{text}");
    assert_debug_clean(&m, &[]);
}

fn mariadb_table(db: &Mariadb) -> String {
    db.sql(
        "CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, login VARCHAR(64) NOT NULL UNIQUE, \
         password VARCHAR(255), disabled TINYINT NOT NULL DEFAULT 0, active TINYINT(1) NOT NULL DEFAULT 1)",
    );
    let argon = hash("wonderland");
    db.sql(&format!(
        "INSERT INTO users (login, password, disabled) VALUES ('alice', '{argon}', 0), ('bob', '{BCRYPT}', 1), \
         ('carol', '{PBKDF2}', 2)"
    ));
    argon
}

#[tokio::test]
async fn mariadb_reads_argon2_and_bcrypt_users_with_tinyint_and_int_columns() {
    let (logs, _guard) = Logs::capture();
    let db = Mariadb::start();
    let argon = mariadb_table(&db);
    let m = manager(
        &db.url(),
        SqlDriver::MySql,
        "SELECT id AS subject, password AS hash, disabled FROM users WHERE login = :username",
        Some("UPDATE users SET password = :hash WHERE id = :subject"),
    );

    let alice = found(&m, "alice").await;
    assert_eq!((alice.subject.as_deref(), alice.disabled), (Some("1"), false));
    assert!(verifies(&alice, "wonderland"), "argon2id");
    let bob = found(&m, "bob").await;
    assert_eq!((bob.subject.as_deref(), bob.disabled), (Some("2"), true), "TINYINT 1: disabled");
    assert!(verifies(&bob, LEGACY_PASSWORD), "bcrypt");
    assert!(found(&m, "carol").await.disabled, "any non-zero TINYINT");
    assert_eq!(m.find("nobody").await, Ok(None));

    injections_find_nothing(&m).await;
    assert_eq!(db.sql("SELECT COUNT(*) FROM users"), "3", "the table is intact");

    // Renamed and reordered columns, a binary hash, a computed disabled;
    // `||` is OR, as in the server's own sql_mode (sqlx would make it a
    // concatenation).
    let renamed = manager(
        &db.url(),
        SqlDriver::MySql,
        "SELECT NOT active AS Disabled, CAST(password AS BINARY) AS HASH, login, id AS subject FROM users \
         WHERE login = :username || CONCAT('x', login) = :username",
        None,
    );
    let row = found(&renamed, "xbob").await;
    assert_eq!((row.subject.as_deref(), row.disabled, row.hash.as_str()), (Some("2"), false, BCRYPT));

    let upgraded = hash(LEGACY_PASSWORD);
    m.update_hash("bob", "2", &upgraded).await.unwrap();
    assert_eq!(db.sql("SELECT password FROM users WHERE id = 2"), upgraded);
    assert_eq!(found(&m, "bob").await.hash, upgraded);

    let missing = manager(&db.url(), SqlDriver::MySql, "SELECT pw AS hash FROM nosuch WHERE a = :username", None);
    assert!(matches!(missing.find("alice").await, Err(ManagerError::Unavailable { .. })));
    let wrong = db.url().replace(PASSWORD_IN_URL, "Wr0ng%2Fpw");
    let refused = manager(&wrong, SqlDriver::MySql, "SELECT password AS hash FROM users WHERE login = :username", None);
    assert!(matches!(refused.find("alice").await, Err(ManagerError::Unavailable { .. })));
    assert_debug_clean(&refused, &["Wr0ng"]);
    a_silent_server_times_out(SqlDriver::MySql, "mysql").await;

    assert_debug_clean(&m, &[]);
    let text = logs.clean(&["Wr0ng", &argon, BCRYPT, &upgraded]);
    assert!(text.contains("1146") && text.contains("nosuch"), "no such table: {text}");
    assert!(text.contains("1045") && text.contains("Access denied"), "wrong password: {text}");
}

#[tokio::test]
async fn mariadb_outage_answers_unavailable_fast_and_the_manager_recovers() {
    let (logs, _guard) = Logs::capture();
    let mut db = Mariadb::start();
    mariadb_table(&db);
    let m = manager(&db.url(), SqlDriver::MySql, "SELECT password AS hash FROM users WHERE login = :username", None);
    assert!(verifies(&found(&m, "bob").await, LEGACY_PASSWORD));

    db.stop();
    let longest = outage_answers(&m, "bob").await;
    db.start_again();
    let back = recovers(&m, "bob").await;
    eprintln!("MariaDB outage: longest Unavailable answer {longest:?}; back {back:?} after the restart");

    let text = logs.clean(&[]);
    assert!(text.contains("credential_manager_down") && text.contains("credential_manager_up"), "{text}");
}

#[tokio::test]
async fn sqlite_reads_a_sha512_crypt_user_and_writes_upgrades_back() {
    let (logs, _guard) = Logs::capture();
    let db = Sqlite::new();
    db.exec(&format!(
        "CREATE TABLE users (login TEXT PRIMARY KEY, hash TEXT, uid INTEGER, locked TEXT); \
         INSERT INTO users VALUES ('alice', '{SHA512_CRYPT}', 1000, 'no'), ('bob', X'FFFE', 1001, NULL), \
         ('carol', '{BCRYPT}', 1002, 'yes');"
    ))
    .await;
    let m = manager(
        &db.url(),
        SqlDriver::Sqlite,
        "SELECT uid AS subject, hash, locked AS disabled FROM users WHERE login = :username",
        Some("UPDATE users SET hash = :hash WHERE login = :username"),
    );
    let alice = found(&m, "alice").await;
    assert_eq!((alice.subject.as_deref(), alice.disabled), (Some("1000"), false), "'no': enabled");
    assert!(verifies(&alice, LEGACY_PASSWORD), "sha512-crypt");
    assert!(found(&m, "carol").await.disabled, "'yes': disabled");
    assert_eq!(m.find("bob").await, Ok(None), "bytes that are not UTF-8: not a hash");
    assert_eq!(m.find("nobody").await, Ok(None));

    injections_find_nothing(&m).await;
    assert_eq!(db.text("SELECT CAST(count(*) AS TEXT) FROM users").await, "3", "the table is intact");

    let upgraded = hash(LEGACY_PASSWORD);
    m.update_hash("alice", "1000", &upgraded).await.unwrap();
    assert_eq!(db.text("SELECT hash FROM users WHERE login = 'alice'").await, upgraded);
    assert_eq!(found(&m, "alice").await.hash, upgraded);

    // A file that is not there is not created: Unavailable, and logged.
    let gone = db.path.with_file_name("missing.db");
    let missing = manager(
        &format!("sqlite://{}", gone.display()),
        SqlDriver::Sqlite,
        "SELECT hash FROM users WHERE login = :username",
        None,
    );
    assert!(matches!(missing.find("alice").await, Err(ManagerError::Unavailable { .. })));
    assert!(!gone.exists());
    let text = logs.text();
    assert!(text.contains("sql_refused") && text.contains("unable to open"), "{text}");
    assert!(text.contains("sql_row_unreadable") && !text.contains(&upgraded), "{text}");
}

/// The database ends ropc's pooled connection between two logins (as a
/// failover or a proxy's idle timeout would): the next look-up finds the
/// user at the first try, on a fresh connection, although no ping tested
/// the old one beforehand.
#[tokio::test]
async fn a_pooled_connection_the_database_dropped_is_replaced_at_once() {
    for driver in [SqlDriver::Postgres, SqlDriver::MySql] {
        let (url, mut end_sessions): (String, Box<dyn FnMut()>) = match driver {
            SqlDriver::Postgres => {
                let pg = Postgres::start();
                pg.sql("CREATE TABLE users (login text PRIMARY KEY, hash text NOT NULL)");
                pg.sql(&format!("INSERT INTO users VALUES ('alice', '{}')", hash("wonderland")));
                (
                    pg.url(),
                    Box::new(move || {
                        // The server ends ropc's sessions, as a failover
                        // or a proxy's idle timeout would.
                        pg.sql(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                             WHERE application_name = 'ropc'",
                        );
                    }),
                )
            }
            _ => {
                let db = Mariadb::start();
                db.sql("CREATE TABLE users (login VARCHAR(64) PRIMARY KEY, hash VARCHAR(255) NOT NULL)");
                db.sql(&format!("INSERT INTO users VALUES ('alice', '{}')", hash("wonderland")));
                (
                    db.url(),
                    Box::new(move || {
                        for id in db.sql("SELECT id FROM information_schema.processlist WHERE user = 'ropc'").lines() {
                            db.sql(&format!("KILL {id}"));
                        }
                    }),
                )
            }
        };
        let m = manager(&url, driver, "SELECT hash FROM users WHERE login = :username", None);
        found(&m, "alice").await;
        end_sessions();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let r = m.find("alice").await;
        assert!(r.as_ref().is_ok_and(|r| r.is_some()), "{driver:?}: the first look-up after: {r:?}");
        assert!(m.health().is_up(), "{driver:?}");
    }
}
