//! Users migrated from legacy systems: every legacy hash format in the
//! users file logs in, and after its first successful login each is
//! replaced with argon2id at the configured cost, in memory and in the file.

use crate::support::sample;
use crate::support::*;
use std::time::{Duration, Instant};

/// One hash per legacy format, all of the password `pw-legacy`, made by tools
/// other than the crates that verify them (see `hash/src/legacy.rs`).
const LEGACY: [&str; 16] = [
    "$5$saltsalt$x17in3caGsBwDU2ZoGPQIZ66Z/CyU.7rqeq9PpRfo6A",
    "$6$saltsalt$HesR2wpSRtAhqbwNYjqoN1g3hsmpmiDskwrGRbSr4XSs7VmD4BbZeQDBeWx2ae65MfQighTdIAKiA/DtTrU3A/",
    "$apr1$saltsalt$kt1dLoKx.9Du6IoaufuYk.",
    "{SHA}oLisiXhAYHTMampGuEeXZHN8Y1Y=",
    "pbkdf2_sha256$10000$djangosalt1$8Ju2XUI2/veOATWsTrKj5+jN0357HYJJlllHDUzmY0U=",
    "$pbkdf2-sha256$i=1000,l=32$cGhjc2FsdDEyMzQ1Njc4OQ$M3StOd4cSIFtIdlWilVnzlFxDBWkTKrMGstr+F9ofd0",
    "$pbkdf2-sha512$i=1000,l=64$cGhjc2FsdDEyMzQ1Njc4OQ$kkuoXccBRxd04vkFxkwcnTdbm4n0MUwI5CrMp7noVAG7ziYY0YuQiX1hufGDlkF2j/Mm+X3tyDn40V4QhJfNPA",
    "$2a$04$ff2R9m1X/MCH8wpDT1H6m.XVwF7QYDs1qRBu8HHkPi726U60KSgEu",
    "$2b$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu",
    "$2y$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu",
    "$P$6saltsaltOCbaLt38M9Aa19y.EtopW/",
    "$H$9abcdefghjzkkI/FAxkmSNYcK994au/",
    "{SSHA}82tXlg5yQ4YnYZXfT74VbhuQZxcoYK0v",
    "{SSHA256}R3EJeUFSymYIZBj/ZybTCqFtE0UuXLKb+y1g7wv2BfM7UT4nx/4NXw==",
    "{SSHA512}b/ckDGHOr8yeYvniMrbfrnKb2p6lFJjPRVYCBbAQLtwHRw/HL0rsmLLhRJpKaRqp/MB+MD2zILR1SC7tKCn/thj+unPhQqEC",
    "{CRYPT}$6$4oxyD9Ul$QwjR8CMDdm2LHgb.qM/.NaPZBMry2X.M1mJ9IOJ.P8j/UEnR2Ulin4M/QO5qfQZ/UrI0wVrZ7d8oUzzmm5HRi0",
];

/// The configured cost of new hashes in the standard fixture.
const CURRENT: &str = "$argon2id$v=19$m=256,t=1,p=1$";

async fn login(server: &Server, user: &str, password: &str) -> u16 {
    let body = format!("grant_type=password&username={user}&password={password}");
    server.token_basic("legacy", "legacy-secret", &body).await.status
}

#[tokio::test]
async fn every_legacy_format_logs_in_then_is_argon2id() {
    let mut users: String = "# migrated from the old portal\n".into();
    for (i, h) in LEGACY.iter().enumerate() {
        users.push_str(&format!("u{i}:{h}\n"));
    }
    users.push_str(&format!("current:{}\n", hash("already-argon2id")));
    let server = Server::start(&standard_config(""), &users);
    let path = server.dir.path().join("users.htpasswd");
    assert!(server.log_shows("weak_password_hash"), "{}", server.logs());

    for (i, phc) in LEGACY.iter().enumerate() {
        assert_eq!(login(&server, &format!("u{i}"), "pw-legacY").await, 400, "u{i}: wrong password");
        assert_eq!(login(&server, &format!("u{i}"), "pw-legacy").await, 200, "u{i}: {phc}");
    }
    assert_eq!(login(&server, "current", "already-argon2id").await, 200);

    // The upgrades run after the responses: wait for the file to show them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&path).unwrap();
        let hashes: Vec<&str> =
            text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once(':')).map(|(_, h)| h).collect();
        if hashes.len() == LEGACY.len() + 1 && hashes.iter().all(|h| h.starts_with(CURRENT)) {
            break text;
        }
        assert!(Instant::now() < deadline, "not every hash was upgraded:\n{text}\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(text.starts_with("# migrated from the old portal\n"), "comments are kept");
    assert!(
        text.contains(&format!("current:{}", users.lines().last().unwrap().split_once(':').unwrap().1)),
        "the current hash was left alone"
    );

    // Every user still logs in, with the new hash, and only with the password.
    for i in 0..LEGACY.len() {
        assert_eq!(login(&server, &format!("u{i}"), "pw-legacy").await, 200, "u{i} after the upgrade");
    }
    assert_eq!(login(&server, "u0", "pw-legacY").await, 400);
    let m = server.get("/metrics").await.body;
    assert_eq!(sample(&m, "ropc_password_upgrades_total"), Some(LEGACY.len() as f64), "{m}");
    let logs = server.logs();
    assert_eq!(logs.matches("event=\"password_upgraded\"").count(), LEGACY.len(), "{logs}");
    assert!(!logs.contains("pw-legacy"), "a password in the logs");

    // A fresh server reads the rewritten file: nothing left to upgrade, and
    // everyone logs in.
    let again = Server::start(&standard_config(""), &text);
    for i in 0..LEGACY.len() {
        assert_eq!(login(&again, &format!("u{i}"), "pw-legacy").await, 200, "u{i} after a restart");
    }
    assert!(!again.logs().contains("weak_password_hash"), "{}", again.logs());
}

/// A wrong password for a user with a fast legacy hash (bcrypt at cost 4,
/// about a millisecond) is answered no sooner than one for an unknown user,
/// whose dummy hash has the configured argon2id cost: the timing must not
/// tell that the user exists.
#[tokio::test]
#[allow(clippy::await_holding_lock)] // deliberately: no other test's server runs meanwhile
async fn a_fast_legacy_hash_does_not_reveal_the_user() {
    let _cpu = exclusive();
    // argon2id at m=16384, t=3: several times bcrypt at cost 4.
    let config = standard_config("").replace("m_cost = 256\nt_cost = 1", "m_cost = 16384\nt_cost = 3");
    let users: String = (0..12).map(|i| format!("b{i}:{}\n", LEGACY[7])).collect();
    let server = Server::start_unshared(&config, &users);
    let time = |user: String| {
        let server = &server;
        async move {
            let started = Instant::now();
            assert_eq!(login(server, &user, "wrong").await, 400);
            started.elapsed()
        }
    };
    // Let the server learn how long a verification at the configured cost takes.
    for i in 0..6 {
        time(format!("nobody-warm-{i}")).await;
    }
    let (mut legacy, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..12 {
        legacy.push(time(format!("b{i}")).await);
        unknown.push(time(format!("nobody-{i}")).await);
    }
    legacy.sort();
    unknown.sort();
    let (l, u) = (legacy[6], unknown[6]);
    assert!(l.as_secs_f64() >= 0.8 * u.as_secs_f64(), "median wrong password: legacy user {l:?}, unknown user {u:?}");
}
