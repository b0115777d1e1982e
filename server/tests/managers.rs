//! SQL credential managers end to end: the real `ropc` binary, a client
//! whose users live in a private PostgreSQL, MariaDB or SQLite, driven over
//! HTTP. Logins, upgrades written back, disabled accounts, injection, the
//! lockout, outages, and the account lifecycle at refresh.

use crate::support::db::{Mariadb, Postgres, Sqlite, PASSWORD, PASSWORD_IN_URL};
use crate::support::{exclusive, hash, introspect, refresh, ropc, s, sample, standard_config, standard_users, Server};
use std::time::{Duration, Instant};

/// bcrypt (cost 4) and PBKDF2 hashes of `pw-legacy`, made by other tools
/// (see `hash/src/stored.rs`).
const BCRYPT: &str = "$2b$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu";
const PBKDF2: &str = "$pbkdf2-sha256$i=1000,l=32$cGhjc2FsdDEyMzQ1Njc4OQ$M3StOd4cSIFtIdlWilVnzlFxDBWkTKrMGstr+F9ofd0";
const SHA512_CRYPT: &str =
    "$6$saltsalt$HesR2wpSRtAhqbwNYjqoN1g3hsmpmiDskwrGRbSr4XSs7VmD4BbZeQDBeWx2ae65MfQighTdIAKiA/DtTrU3A/";
const LEGACY_PASSWORD: &str = "pw-legacy";

/// Usernames that would log someone in if they were spliced into the SQL.
const INJECTIONS: [&str; 6] =
    ["' OR '1'='1", "alice' --", "alice'; DROP TABLE users; --", "x' UNION SELECT 1, 'x', false --", "%", "alice\\"];

/// The standard fixture plus a client `shop` (password and refresh) whose
/// users live in the SQL manager `db`, configured by `manager` (its keys
/// after `kind = "sql"`).
fn sql_config(manager: &str, token_service: &str) -> String {
    format!(
        "{}\n[[clients]]\nid = \"shop\"\nsecret = \"{}\"\ncapabilities = [\"password\", \"refresh_token\"]\n\
         scopes = [\"read\"]\ndefault_scopes = [\"read\"]\ncredential_manager = \"db\"\n\n\
         [credential_managers.db]\nkind = \"sql\"\n{manager}\n",
        standard_config(token_service),
        hash("shop-secret")
    )
}

fn form(username: &str, password: &str) -> String {
    ropc_core::form::encode_pairs(&[("grant_type", "password"), ("username", username), ("password", password)])
}

async fn shop(server: &Server, username: &str, password: &str) -> crate::support::Reply {
    server.token_basic("shop", "shop-secret", &form(username, password)).await
}

/// Waits until `check` holds, for at most `secs` seconds.
async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn postgres_users_log_in_are_upgraded_and_lose_their_sessions_when_the_table_changes() {
    let pg = Postgres::start();
    pg.sql(
        "CREATE TABLE users (id serial PRIMARY KEY, login text UNIQUE NOT NULL, password text NOT NULL, \
         active boolean NOT NULL DEFAULT true)",
    );
    let argon = hash("wonderland");
    pg.sql(&format!(
        "INSERT INTO users (login, password) VALUES ('alice', '{argon}'), ('bob', '{BCRYPT}'), ('carol', '{PBKDF2}'); \
         INSERT INTO users (login, password, active) VALUES ('dave', '{argon}', false)"
    ));
    let manager = format!(
        "url = \"{}\"\nquery = \"SELECT id AS subject, password AS hash, NOT active AS disabled FROM users WHERE login = :username\"\n\
         update_query = \"UPDATE users SET password = :hash WHERE id = CAST(:subject AS integer)\"\naccount_cache_ttl = 1\n",
        pg.url()
    );
    let server = Server::start_with_env(&sql_config(&manager, ""), &standard_users(), &[("RUST_LOG", "debug")]);

    // Each format logs in; `sub` is the row's id, `username` what was typed.
    let mut tokens = Vec::new();
    for (user, password, id) in
        [("alice", "wonderland", "1"), ("bob", LEGACY_PASSWORD, "2"), ("carol", LEGACY_PASSWORD, "3")]
    {
        let r = shop(&server, user, password).await;
        assert_eq!(r.status, 200, "{user}: {}", r.body);
        let info = introspect(&server, &s(&r.json(), "access_token")).await;
        assert_eq!((info["sub"].as_str(), info["username"].as_str()), (Some(id), Some(user)), "{info}");
        tokens.push(r.json());
    }
    let [mut alice, mut bob, mut carol] = <[serde_json::Value; 3]>::try_from(tokens).unwrap();

    // A wrong password, an unknown user and a disabled account (dave's
    // password is right) get the same body.
    let wrong = shop(&server, "alice", "wonderlanD").await;
    let unknown = shop(&server, "nobody", "wonderland").await;
    let disabled = shop(&server, "dave", "wonderland").await;
    assert_eq!((wrong.status, wrong.error()), (400, "invalid_grant".to_owned()));
    assert_eq!((unknown.status, &unknown.body), (400, &wrong.body));
    assert_eq!((disabled.status, &disabled.body), (400, &wrong.body));
    // The default file's users are not the shop's, nor the other way round.
    assert_eq!(shop(&server, "j\u{f6}rg", "p\u{e4}ssw\u{f6}rd: with space").await.status, 400);
    let r = server.token_basic("legacy", "legacy-secret", &form("bob", LEGACY_PASSWORD)).await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Injection in the username logs nobody in and leaves the table as it was.
    for username in INJECTIONS {
        let r = shop(&server, username, "wonderland").await;
        assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()), "{username}: {}", r.body);
    }
    assert_eq!(pg.sql("SELECT count(*) FROM users"), "4", "the table is intact");

    // bob's and carol's legacy hashes are written back as argon2id, in the
    // background; alice's is current and stays.
    eventually(20, "no upgrade written back", || {
        let rows = pg.sql("SELECT login || ' ' || left(password, 10) FROM users ORDER BY id");
        rows.lines().filter(|l| l.ends_with("$argon2id$")).count() == 4
    })
    .await;
    assert_eq!(pg.sql("SELECT password FROM users WHERE login = 'alice'"), argon);
    assert_eq!(shop(&server, "bob", LEGACY_PASSWORD).await.status, 200, "bob logs in with the new hash");

    // Past account_cache_ttl, a refresh looks the account up again. ropc's
    // own upgrade is no password change: bob's and carol's grants go on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (who, t) in [("bob", &mut bob), ("carol", &mut carol), ("alice", &mut alice)] {
        let r = refresh(&server, "shop", "shop-secret", &s(t, "refresh_token")).await;
        assert_eq!(r.status, 200, "{who}: {}\n{}", r.body, server.logs());
        *t = r.json();
    }

    // alice is disabled and carol's password changes in the table: their
    // refreshes fail within account_cache_ttl, and the grants are over.
    pg.sql("UPDATE users SET active = false WHERE login = 'alice'");
    pg.sql(&format!("UPDATE users SET password = '{}' WHERE login = 'carol'", hash("new-password")));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (who, t) in [("alice", &alice), ("carol", &carol)] {
        let r = refresh(&server, "shop", "shop-secret", &s(t, "refresh_token")).await;
        assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()), "{who}: {}", r.body);
        assert_eq!(introspect(&server, &s(t, "access_token")).await["active"], false, "{who}");
    }
    assert_eq!(shop(&server, "alice", "wonderland").await.status, 400, "disabled");
    assert_eq!(shop(&server, "carol", "new-password").await.status, 200, "carol's new password");
    let r = refresh(&server, "shop", "shop-secret", &s(&bob, "refresh_token")).await;
    assert_eq!(r.status, 200, "bob is untouched: {}", r.body);
    bob = r.json();

    // The operator ends bob's sessions: that manager's bob, at once.
    let out = ropc()
        .args(["sessions", "revoke", "--user", "bob", "--credential-manager", "db", "--config"])
        .arg(server.dir.path().join("ropc.toml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("2 grants of user \"bob\" ended"), "{said}");
    assert_eq!(introspect(&server, &s(&bob, "access_token")).await["active"], false);
    let r = refresh(&server, "shop", "shop-secret", &s(&bob, "refresh_token")).await;
    assert_eq!(r.status, 400, "{}", r.body);

    // The metrics and /healthz name the manager; a debug log holds no
    // password: the database's (as written and URL-encoded) or a user's.
    let m = server.get("/metrics").await.body;
    assert_eq!(sample(&m, "ropc_credential_manager_up{manager=\"db\",kind=\"sql\"}"), Some(1.0), "{m}");
    assert!(server.get("/healthz").await.body.contains("credential_manager db (sql): up"));
    let logs = server.logs();
    assert!(logs.contains("DEBUG") && logs.contains("credential manager manager=db"), "the log is at debug level");
    for secret in [PASSWORD, PASSWORD_IN_URL, "wonderland", LEGACY_PASSWORD, "new-password", &argon] {
        assert!(!logs.contains(secret), "{secret:?} in the log");
    }
}

#[tokio::test]
async fn a_stopped_database_answers_503_fast_other_clients_log_in_and_it_comes_back() {
    let mut pg = Postgres::start();
    pg.sql("CREATE TABLE users (login text PRIMARY KEY, hash text NOT NULL)");
    pg.sql(&format!("INSERT INTO users VALUES ('alice', '{}')", hash("wonderland")));
    let url_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(url_file.path(), format!("{}\n", pg.url())).unwrap();
    let manager = format!(
        "url_file = \"{}\"\nquery = \"SELECT hash FROM users WHERE login = :username\"\nconnect_timeout_ms = 1000\n\
         query_timeout_ms = 1000\naccount_cache_ttl = 2\n",
        url_file.path().display()
    );
    let server = Server::start(&sql_config(&manager, ""), &standard_users());
    let grant = shop(&server, "alice", "wonderland").await;
    assert_eq!(grant.status, 200, "{}", grant.body);
    let mut grant = grant.json();

    pg.stop();
    let stopped = Instant::now();
    // Within account_cache_ttl of the login's look-up, a refresh relies on
    // it: 200 while the database is down.
    let r = refresh(&server, "shop", "shop-secret", &s(&grant, "refresh_token")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    grant = r.json();
    // Logins get 503 with Retry-After within the connect timeout, then at
    // once while the circuit is open; never invalid_grant, and no lockout
    // count. Past the cache's time, so does a refresh, and its grant lives.
    for i in 0..5 {
        let started = Instant::now();
        let r = if i < 4 {
            shop(&server, "alice", "wonderland").await
        } else {
            if let Some(wait) = Duration::from_millis(3100).checked_sub(stopped.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            refresh(&server, "shop", "shop-secret", &s(&grant, "refresh_token")).await
        };
        let took = started.elapsed();
        assert_eq!((r.status, r.error()), (503, "temporarily_unavailable".to_owned()), "try {i}: {}", r.body);
        assert!(r.header("retry-after").is_some(), "try {i}");
        assert!(took < Duration::from_secs(3), "try {i} took {took:?}");
    }
    // Other managers' clients are not held up.
    let started = Instant::now();
    let r =
        server.token_basic("legacy", "legacy-secret", "grant_type=password&username=alice&password=wonderland").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    let health = server.get("/healthz").await.body;
    assert!(health.contains("credential_manager db (sql): down"), "{health}");
    assert_eq!(
        sample(&server.get("/metrics").await.body, "ropc_credential_manager_up{manager=\"db\",kind=\"sql\"}"),
        Some(0.0)
    );

    // Started again, it is found again without a restart of ropc: the
    // grant was never revoked for the fault, and more than max_failures
    // 503s locked nobody out.
    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let r = shop(&server, "alice", "wonderland").await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(Instant::now() < deadline, "the manager never came back:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = refresh(&server, "shop", "shop-secret", &s(&grant, "refresh_token")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(server.get("/healthz").await.body.contains("credential_manager db (sql): up"));
    assert!(!server.logs().contains(PASSWORD), "the database password in the log");
}

#[tokio::test]
async fn the_lockout_applies_to_database_users_before_the_database_is_asked() {
    let pg = Postgres::start();
    pg.sql("CREATE TABLE users (login text PRIMARY KEY, hash text NOT NULL)");
    pg.sql(&format!("INSERT INTO users VALUES ('alice', '{}')", hash("wonderland")));
    let manager = format!("url = \"{}\"\nquery = \"SELECT hash FROM users WHERE login = :username\"\n", pg.url());
    let config = sql_config(&manager, "").replace(
        "[credential_manager.argon2]",
        "[credential_manager.lockout]\nmax_failures = 3\nlock_time = 60\n\n[credential_manager.argon2]",
    );
    let server = Server::start(&config, &standard_users());
    // Guesses in another case count for the same account: a database's
    // collation may ignore case, and ALICE must not be a fresh count.
    for user in ["alice", "ALICE", "Alice"] {
        assert_eq!(shop(&server, user, "guess").await.status, 400);
    }
    let m = server.get("/metrics").await.body;
    let asked = sample(&m, "ropc_credential_manager_operations_total{manager=\"db\",kind=\"sql\"}").unwrap();
    // Locked: even the right password is refused, and the database is not
    // asked again.
    let r = shop(&server, "alice", "wonderland").await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()), "{}", r.body);
    assert!(server.log_shows("account_locked"), "{}", server.logs());
    let m = server.get("/metrics").await.body;
    assert_eq!(sample(&m, "ropc_credential_manager_operations_total{manager=\"db\",kind=\"sql\"}"), Some(asked));
    // alice of the default users file is another account, not locked.
    let r =
        server.token_basic("legacy", "legacy-secret", "grant_type=password&username=alice&password=wonderland").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn mariadb_and_sqlite_users_log_in() {
    let db = Mariadb::start();
    db.sql(
        "CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(255) UNIQUE, password VARCHAR(255), \
         status VARCHAR(16) NOT NULL DEFAULT 'active')",
    );
    let argon = hash("wonderland");
    db.sql(&format!(
        "INSERT INTO users (email, password) VALUES ('alice@example.com', '{argon}'), ('bob@example.com', '{BCRYPT}'); \
         INSERT INTO users (email, password, status) VALUES ('dave@example.com', '{argon}', 'banned')"
    ));
    let manager = format!(
        "url = \"{}\"\nquery = \"SELECT id AS subject, password AS hash, (status <> 'active') AS disabled FROM users WHERE email = :username\"\n\
         update_query = \"UPDATE users SET password = :hash WHERE id = :subject\"\n",
        db.url()
    );
    let server = Server::start(&sql_config(&manager, ""), &standard_users());
    assert_eq!(shop(&server, "alice@example.com", "wonderland").await.status, 200);
    assert_eq!(shop(&server, "bob@example.com", LEGACY_PASSWORD).await.status, 200);
    let wrong = shop(&server, "alice@example.com", "x").await;
    assert_eq!(shop(&server, "dave@example.com", "wonderland").await.body, wrong.body, "disabled");
    for username in INJECTIONS {
        assert_eq!(shop(&server, username, "wonderland").await.status, 400, "{username}");
    }
    assert_eq!(db.sql("SELECT count(*) FROM users"), "3");
    eventually(20, "bob's hash was not written back", || {
        db.sql("SELECT password FROM users WHERE email = 'bob@example.com'").starts_with("$argon2id$")
    })
    .await;
    drop(server);

    let lite = Sqlite::new();
    lite.exec(&format!(
        "CREATE TABLE accounts (name TEXT PRIMARY KEY, pw TEXT, locked TEXT); \
         INSERT INTO accounts VALUES ('carol', '{SHA512_CRYPT}', 'no'), ('erin', '{SHA512_CRYPT}', 'yes');"
    ))
    .await;
    let manager = format!(
        "url = \"sqlite:{}\"\nquery = \"SELECT pw AS hash, locked AS disabled FROM accounts WHERE name = :username\"\n",
        lite.path.display()
    );
    let server = Server::start(&sql_config(&manager, ""), &standard_users());
    let r = shop(&server, "carol", LEGACY_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let wrong = shop(&server, "carol", "pw-legacY").await;
    assert_eq!(shop(&server, "erin", LEGACY_PASSWORD).await.body, wrong.body, "disabled");
    for username in INJECTIONS {
        assert_eq!(shop(&server, username, LEGACY_PASSWORD).await.status, 400, "{username}");
    }
    assert_eq!(lite.text("SELECT CAST(count(*) AS TEXT) FROM accounts").await, "2");
    // Without update_query nothing is written back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lite.text("SELECT pw FROM accounts WHERE name = 'carol'").await, SHA512_CRYPT);
}

#[tokio::test]
async fn config_check_names_an_unknown_manager_and_a_broken_sql_table() {
    let dir = tempfile::tempdir().unwrap();
    let config = sql_config("url = \"sqlite:users.db\"\nquery = \"SELECT hash FROM u WHERE name = :username\"\n", "")
        .replace("credential_manager = \"db\"", "credential_manager = \"nope\"");
    std::fs::write(dir.path().join("ropc.toml"), &config).unwrap();
    std::fs::write(dir.path().join("users.htpasswd"), standard_users()).unwrap();
    let out = ropc().args(["config", "check"]).arg(dir.path().join("ropc.toml")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let line = config.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("ropc.toml:{line}")) && err.contains("credential_manager"), "{err}");

    // A query without :username, and one of another kind's keys.
    for (bad, says) in [
        ("url = \"sqlite:users.db\"\nquery = \"SELECT hash FROM u\"\n", ":username"),
        (
            "url = \"sqlite:users.db\"\nquery = \"SELECT hash FROM u WHERE n = :username\"\nbase_dn = \"dc=x\"\n",
            "base_dn",
        ),
    ] {
        std::fs::write(dir.path().join("ropc.toml"), sql_config(bad, "")).unwrap();
        let out = ropc().args(["config", "check"]).arg(dir.path().join("ropc.toml")).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("ropc.toml:") && err.contains(says), "{bad}: {err}");
    }
}

/// An unknown user and a wrong password take the same time with the SQL
/// manager: the unknown user's dummy hash costs what a real one does, and
/// both pay the look-up.
#[tokio::test]
#[allow(clippy::await_holding_lock)] // deliberately: no other test's server runs meanwhile
async fn sql_timing_does_not_tell_which_users_exist() {
    let _cpu = exclusive();
    let pg = Postgres::start_unshared();
    pg.sql("CREATE TABLE users (login text PRIMARY KEY, hash text NOT NULL)");
    let config = |c: String| c.replace("m_cost = 256\nt_cost = 1", "m_cost = 8192\nt_cost = 2");
    let values: Vec<String> = (0..12).map(|i| format!("('u{i}', '{}')", hash("right"))).collect();
    pg.sql(&format!("INSERT INTO users VALUES {}", values.join(", ")));
    let manager = format!("url = \"{}\"\nquery = \"SELECT hash FROM users WHERE login = :username\"\n", pg.url());
    let server = Server::start_unshared(&config(sql_config(&manager, "")), &standard_users());
    // The stored hashes are the test's cost (m=256): the server upgrades
    // each at its first valid login; wrong passwords do not. Time users at
    // the configured cost: re-hash them first.
    let values: Vec<String> = (0..12)
        .map(|i| {
            let h = ropc_hash::hash_password(b"right", ropc_hash::HashParams { m_cost: 8192, t_cost: 2, p_cost: 1 })
                .unwrap();
            format!("UPDATE users SET hash = '{h}' WHERE login = 'u{i}';")
        })
        .collect();
    pg.sql(&values.concat());
    let time = |user: String| {
        let server = &server;
        async move {
            let started = Instant::now();
            assert_eq!(shop(server, &user, "wrong").await.status, 400);
            started.elapsed()
        }
    };
    for i in 0..6 {
        time(format!("warm-{i}")).await;
    }
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..12 {
        known.push(time(format!("u{i}")).await);
        unknown.push(time(format!("nobody-{i}")).await);
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[6].as_secs_f64(), unknown[6].as_secs_f64());
    println!("sql medians: wrong password {k:.4} s, unknown user {u:.4} s, ratio {:.3}", k / u);
    assert!((k / u - 1.0).abs() <= 0.2, "median wrong password {k:.4} s, unknown user {u:.4} s");
}
