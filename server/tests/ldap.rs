//! The LDAP credential manager against a real OpenLDAP that each test starts
//! for itself (see `support::ldap`): search-then-bind and direct binds,
//! injections through the username, the empty password, failover, outages
//! and recovery, dropped pooled connections, the in-flight cap, TLS, and
//! the account checks of a refresh.
//!
//! Each test holds the CPU guard (shared, or exclusive for those that
//! measure time) across its awaits, deliberately: it is a std lock on the
//! test's own thread, which runs nothing else.

#![allow(clippy::await_holding_lock)]

use crate::support::ldap::{
    user_dn, Anonymous, Options, Slapd, PEOPLE, ROOT_USER, SERVICE_DN, SERVICE_PW, SUFFIX, USERS,
};
use crate::support::{exclusive, shared};
use ropc_server::credentials::health::{FAILURES_TO_OPEN, FIRST_BACKOFF};
use ropc_server::credentials::ldap::{BindOutcome, Entry, LdapManager};
use ropc_server::credentials::{LdapConfig, LdapLocate, ManagerError};
use ropc_server::redact::Secret;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Outcome = Result<BindOutcome, ManagerError>;

const WRONG: Outcome = Ok(BindOutcome::WrongPassword { detail: None });
const UNKNOWN: Outcome = Ok(BindOutcome::UnknownUser);

fn valid(subject: &str) -> Outcome {
    Ok(BindOutcome::Valid { subject: subject.into() })
}

/// Search-then-bind as the fixture's service account.
fn search(urls: Vec<String>) -> LdapConfig {
    LdapConfig {
        urls,
        start_tls: false,
        ca_file: None,
        locate: LdapLocate::Search {
            bind_dn: SERVICE_DN.into(),
            bind_password: Secret::new(SERVICE_PW.into()),
            base_dn: SUFFIX.into(),
            user_filter: "(uid={username})".into(),
        },
        subject_attribute: None,
        active_directory: false,
        max_connections: 4,
        connect_timeout: Duration::from_millis(1000),
        operation_timeout: Duration::from_millis(2000),
        account_cache_ttl: Duration::from_secs(60),
    }
}

/// A direct bind to `uid={username},ou=people,…`.
fn template(urls: Vec<String>) -> LdapConfig {
    LdapConfig { locate: LdapLocate::Template(format!("uid={{username}},{PEOPLE}")), ..search(urls) }
}

fn with_subject(config: LdapConfig, attribute: &str) -> LdapConfig {
    LdapConfig { subject_attribute: Some(attribute.into()), ..config }
}

fn manager(config: LdapConfig) -> LdapManager {
    LdapManager::new("directory", config).unwrap()
}

fn unavailable(outcome: &Outcome) -> bool {
    matches!(outcome, Err(ManagerError::Unavailable { .. }))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn search_then_bind_right_wrong_and_unknown() {
    let _cpu = shared();
    let slapd = Slapd::start(Options::default());
    for (attribute, subject) in
        [(None, "alice"), (Some("uid"), "alice"), (Some("employeeNumber"), "1001"), (Some("mail"), "alice")]
    {
        let config = LdapConfig { subject_attribute: attribute.map(Into::into), ..search(vec![slapd.url()]) };
        let m = manager(config);
        assert_eq!(m.authenticate("alice", "wonderland").await, valid(subject), "subject_attribute {attribute:?}");
        assert_eq!(m.authenticate("alice", "Wonderland").await, WRONG);
        assert_eq!(m.authenticate("mallory", "wonderland").await, UNKNOWN);
        assert!(m.health().is_up());
    }
    let m = manager(with_subject(search(vec![slapd.url()]), "employeeNumber"));
    assert_eq!(
        m.authenticate("josé", "jalapeño").await,
        valid("1004"),
        "a username that is not ASCII, escaped as \\xx"
    );
    assert_eq!(m.authenticate("bob", "builder").await, valid("1002"));
    assert_eq!(slapd.binds_as(&user_dn("alice")), 8, "one bind per password tried, none for the unknown user");
    // Matching is the directory's: uid's equality is caseIgnoreMatch, so
    // ALICE is alice's entry. The subject is what was typed, unless
    // subject_attribute names the entry's own.
    assert_eq!(manager(search(vec![slapd.url()])).authenticate("ALICE", "wonderland").await, valid("ALICE"));
    let by_uid = manager(with_subject(search(vec![slapd.url()]), "uid"));
    assert_eq!(by_uid.authenticate("ALICE", "wonderland").await, valid("alice"));
}

#[tokio::test]
async fn connections_are_reused_and_the_service_account_is_never_rebound() {
    let _cpu = shared();
    let slapd = Slapd::start(Options::default());
    let m = manager(search(vec![slapd.url()]));
    let (connections, service_binds) = (slapd.connections(), slapd.binds_as(SERVICE_DN));
    for i in 0..10 {
        let (uid, pw) = if i % 2 == 0 { ("alice", "wonderland") } else { ("bob", "nope") };
        let expected = if i % 2 == 0 { valid("alice") } else { WRONG };
        assert_eq!(m.authenticate(uid, pw).await, expected);
    }
    assert_eq!(m.find("alice").await.unwrap().unwrap().subject, "alice");
    assert_eq!(slapd.connections() - connections, 2, "one service-account connection and one for binds, reused");
    assert_eq!(slapd.binds_as(SERVICE_DN) - service_binds, 1, "the service account bound once");
    assert_eq!(m.idle_connections(), (1, 1));
    for (conn, dns) in slapd.binds_by_connection() {
        if dns.iter().any(|dn| dn == SERVICE_DN) {
            assert!(
                dns.iter().all(|dn| dn == SERVICE_DN),
                "connection {conn} bound as the service account and then {dns:?}"
            );
        }
    }
    // Ten at once with max_connections = 4: never more than 4 of each.
    let m = Arc::new(manager(search(vec![slapd.url()])));
    let before = slapd.connections();
    let logins: Vec<_> = (0..10)
        .map(|_| {
            let m = Arc::clone(&m);
            tokio::spawn(async move { m.authenticate("alice", "wonderland").await })
        })
        .collect();
    for login in logins {
        let outcome = login.await.unwrap();
        assert!(outcome == valid("alice") || outcome == Err(ManagerError::Busy), "{outcome:?}");
    }
    assert!(slapd.connections() - before <= 8, "{} connections", slapd.connections() - before);
    let (service, binds) = m.idle_connections();
    assert!(service <= 4 && binds <= 4);
}

#[tokio::test]
async fn direct_bind_right_wrong_and_unknown() {
    let _cpu = shared();
    let slapd = Slapd::start(Options::default());
    for (attribute, subject) in [(None, "alice"), (Some("employeeNumber"), "1001"), (Some("mail"), "alice")] {
        let m = manager(LdapConfig { subject_attribute: attribute.map(Into::into), ..template(vec![slapd.url()]) });
        assert_eq!(m.authenticate("alice", "wonderland").await, valid(subject), "subject_attribute {attribute:?}");
        assert_eq!(m.authenticate("alice", "Wonderland").await, WRONG);
        // slapd answers a bind to a DN it does not have with 49, as for a
        // wrong password: a direct bind cannot tell an unknown user.
        assert_eq!(m.authenticate("mallory", "wonderland").await, WRONG);
        assert!(m.health().is_up());
    }
    let m = manager(with_subject(template(vec![slapd.url()]), "employeeNumber"));
    assert_eq!(m.authenticate("josé", "jalapeño").await, valid("1004"));
}

#[tokio::test]
async fn filter_injection_never_matches_another_user() {
    let _cpu = shared();
    let slapd = Slapd::start(Options::default());
    // Unescaped, `lar*` would have found larry, and his password let us in.
    let out = slapd.ldap_tool("ldapsearch", &["-LLL", "-b", SUFFIX, "(uid=lar*)", "1.1"], None);
    assert!(out.contains(&user_dn("larry")), "{out}");
    let m = manager(with_subject(search(vec![slapd.url()]), "uid"));
    let binds_before = slapd.bind_dns().len();
    for username in [
        "*",
        "lar*",
        "x)(uid=*",
        "*)(|(uid=*",
        "\\2a",
        "*)(uid=alice",
        "alice)(|(uid=*",
        "al*",
        "(uid=alice)",
        "alice\0",
    ] {
        for (_, pw, _) in USERS {
            assert_eq!(m.authenticate(username, pw).await, UNKNOWN, "{username:?} with {pw:?}");
        }
        assert_eq!(m.find(username).await, Ok(None), "{username:?}");
    }
    let binds: Vec<String> = slapd.bind_dns().split_off(binds_before);
    // The service account, and the DN nobody has that an unknown user's
    // password is bound to (so that it costs a wrong password's time):
    // never a user's entry.
    assert!(
        binds.iter().all(|dn| dn == SERVICE_DN || dn.starts_with("cn=ropc-no-such-user-")),
        "only the service account and the no-such-user DN bound: {binds:?}"
    );
    let log = slapd.log();
    for filter in [r#"filter="(uid=lar\2A)""#, r#"filter="(uid=x\29\28uid=\2A)""#, r#"filter="(uid=\5C2a)""#] {
        assert!(log.contains(filter), "slapd got one equality match: {filter} not in the log");
    }
    // Two entries for one name: ambiguous, so nobody.
    let LdapLocate::Search { bind_dn, bind_password, base_dn, .. } = search(vec![]).locate else { unreachable!() };
    let by_cn = LdapLocate::Search { bind_dn, bind_password, base_dn, user_filter: "(cn={username})".into() };
    let m = manager(LdapConfig { locate: by_cn, ..search(vec![slapd.url()]) });
    assert_eq!(m.authenticate("twin", "gemini").await, UNKNOWN, "two entries match");
    assert_eq!(m.find("twin").await, Ok(None));
    assert_eq!(m.authenticate("alice", "wonderland").await, valid("alice"), "one entry matches");
    assert_eq!(slapd.binds_as(&user_dn("twin1")) + slapd.binds_as(&user_dn("twin2")), 0);
}

#[tokio::test]
async fn dn_injection_never_binds_as_someone_else() {
    let _cpu = shared();
    let slapd = Slapd::start(Options::default());
    let root_dn = format!("uid={},ou=admins,{PEOPLE}", ROOT_USER.0);
    let m = manager(with_subject(template(vec![slapd.url()]), "uid"));
    for username in [
        "root,ou=admins",
        "root,ou=admins,",
        "root+cn=root,ou=admins",
        "root;ou=admins",
        "root\\,ou=admins",
        " root,ou=admins",
        "root,ou=admins ",
        "#root,ou=admins",
        "root\0,ou=admins",
        "root\",ou=admins",
        "<root>,ou=admins",
        "alice,ou=admins",
    ] {
        let outcome = m.authenticate(username, ROOT_USER.1).await;
        assert!(outcome == WRONG || outcome == UNKNOWN, "{username:?}: {outcome:?}");
    }
    assert_eq!(slapd.binds_as(&root_dn), 0, "nothing bound as {root_dn}");
    let escaped = r#"BIND dn="uid=root\2Cou\3Dadmins,ou=people,dc=example,dc=org" method=128"#;
    assert!(slapd.log().contains(escaped), "one RDN, its value escaped (as slapd logs it): {escaped}");
    // The account is there, and its password is right.
    let admins = LdapConfig {
        locate: LdapLocate::Template(format!("uid={{username}},ou=admins,{PEOPLE}")),
        ..template(vec![slapd.url()])
    };
    assert_eq!(manager(admins).authenticate("root", ROOT_USER.1).await, valid("root"));
    assert_eq!(slapd.binds_as(&root_dn), 1);
}

#[tokio::test]
async fn an_empty_password_is_wrong_and_never_sent() {
    let _cpu = shared();
    let slapd = Slapd::start(Options { bind_anon_dn: true, ..Options::default() });
    let connections = slapd.connections();
    for config in [search(vec![slapd.url()]), template(vec![slapd.url()])] {
        let m = manager(config);
        assert_eq!(
            m.authenticate("alice", "").await,
            Ok(BindOutcome::WrongPassword { detail: Some("empty_password") })
        );
        assert_eq!(
            m.authenticate("mallory", "").await,
            Ok(BindOutcome::WrongPassword { detail: Some("empty_password") })
        );
    }
    assert_eq!(slapd.binds_as(&user_dn("alice")), 0);
    assert_eq!(slapd.connections(), connections, "not even a connection");
    // What it would have got: with bind_anon_dn, a DN and an empty password
    // bind (as anonymous), where a client takes success as a right password.
    assert_eq!(slapd.whoami(&user_dn("alice"), ""), Ok("anonymous".to_owned()));
    assert_eq!(slapd.binds_as(&user_dn("alice")), 1, "the log counts that bind");
}

/// A loopback listener whose accept queue is full: the kernel drops SYNs to
/// it, so a connection hangs as to a host that does not answer.
struct Blackhole {
    url: String,
    _listener: tokio::net::TcpListener,
    _queued: Vec<std::net::TcpStream>,
}

impl Blackhole {
    fn new() -> Blackhole {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = socket.local_addr().unwrap();
        let listener = socket.listen(0).unwrap();
        let mut queued = Vec::new();
        while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            queued.push(s);
            assert!(queued.len() < 8, "the accept queue does not fill");
        }
        Blackhole { url: format!("ldap://{addr}"), _listener: listener, _queued: queued }
    }
}

#[tokio::test]
async fn failover_to_the_next_url_on_a_refused_or_hanging_connect() {
    let _cpu = exclusive();
    let slapd = Slapd::start(Options::default());
    let closed = format!(
        "ldap://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let m = manager(search(vec![closed, slapd.url()]));
    let t = Instant::now();
    assert_eq!(m.authenticate("alice", "wonderland").await, valid("alice"));
    assert!(t.elapsed() < Duration::from_millis(500), "a refused connect fails over at once: {:?}", t.elapsed());

    let hole = Blackhole::new();
    let m = manager(search(vec![hole.url.clone(), slapd.url()]));
    let t = Instant::now();
    assert_eq!(m.authenticate("alice", "wonderland").await, valid("alice"));
    let first = t.elapsed();
    eprintln!("failover past a hanging URL: {first:?}");
    assert!(first >= Duration::from_millis(950), "waited connect_timeout for the first URL: {first:?}");
    assert!(
        first < Duration::from_millis(1800),
        "then the second (and the bind connection went there first): {first:?}"
    );
    // New connections meanwhile try the URL that failed last.
    let t = Instant::now();
    let (a, b, c) = tokio::join!(
        m.authenticate("alice", "wonderland"),
        m.authenticate("bob", "builder"),
        m.authenticate("larry", "lobster")
    );
    assert_eq!((a, b, c), (valid("alice"), valid("bob"), valid("larry")));
    assert!(t.elapsed() < Duration::from_millis(700), "{:?}", t.elapsed());

    // A single URL that hangs: unavailable within connect_timeout.
    let m = manager(search(vec![hole.url.clone()]));
    let t = Instant::now();
    let outcome = m.authenticate("alice", "wonderland").await;
    assert!(unavailable(&outcome), "{outcome:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(950) && t.elapsed() < Duration::from_millis(1800),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn an_outage_is_unavailable_within_connect_timeout_and_recovers() {
    let _cpu = exclusive();
    let mut slapd = Slapd::start(Options::default());
    for config in [search(vec![slapd.url()]), template(vec![slapd.url()])] {
        let m = manager(config);
        assert_eq!(m.authenticate("alice", "wonderland").await, valid("alice"));
        slapd.stop();
        for i in 0..FAILURES_TO_OPEN {
            let t = Instant::now();
            let outcome = m.authenticate("alice", "wonderland").await;
            eprintln!("directory down, answer {i}: {:?} after {:?}", outcome, t.elapsed());
            assert!(unavailable(&outcome), "never a wrong password: {outcome:?}");
            assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        }
        assert!(!m.health().is_up(), "the breaker opened");
        let t = Instant::now();
        assert!(unavailable(&m.authenticate("alice", "wonderland").await));
        assert!(matches!(m.find("alice").await, Err(ManagerError::Unavailable { .. })));
        assert!(t.elapsed() < Duration::from_millis(100), "open: fails fast ({:?})", t.elapsed());
        slapd.restart();
        tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(100)).await;
        let t = Instant::now();
        assert_eq!(m.authenticate("alice", "wonderland").await, valid("alice"), "the probe, on the same manager");
        eprintln!("first answer after the restart: {:?}", t.elapsed());
        assert!(m.health().is_up());
        assert_eq!(m.authenticate("alice", "wrong").await, WRONG);
    }
}

/// The current-thread runtime does not run the pooled connections' drivers
/// while slapd restarts, so the next login takes a connection that looks
/// open and is not: its operation breaks before any answer, and runs again
/// on a new connection.
#[tokio::test]
async fn a_pooled_connection_the_directory_dropped_is_not_a_wrong_answer() {
    let _cpu = shared();
    let mut slapd = Slapd::start(Options { anonymous: Anonymous::Read, ..Options::default() });
    for config in [search(vec![slapd.url()]), with_subject(template(vec![slapd.url()]), "employeeNumber")] {
        let subject = if config.subject_attribute.is_some() { "1001" } else { "alice" };
        let m = manager(config);
        assert_eq!(m.authenticate("alice", "wonderland").await, valid(subject));
        assert_eq!(m.find("alice").await.unwrap().unwrap().subject, subject);
        assert!(m.idle_connections().1 == 1);
        let connections = slapd.connections();
        slapd.restart();
        assert_eq!(m.authenticate("alice", "wonderland").await, valid(subject), "a dropped connection is replaced");
        assert_eq!(m.authenticate("bob", "nope").await, WRONG);
        slapd.restart();
        assert_eq!(m.find("alice").await.unwrap().unwrap().subject, subject);
        assert!(m.health().is_up(), "no failure was counted");
        assert!(slapd.connections() > connections);
    }
}

#[tokio::test]
async fn the_in_flight_cap_and_the_operation_timeout() {
    let _cpu = exclusive();
    let mut slapd = Slapd::start(Options::default());
    let config =
        LdapConfig { max_connections: 1, operation_timeout: Duration::from_millis(1500), ..search(vec![slapd.url()]) };
    let m = Arc::new(manager(config));
    assert_eq!(m.authenticate("alice", "wonderland").await, valid("alice"));
    slapd.pause();
    let held = tokio::spawn({
        let m = Arc::clone(&m);
        async move {
            let t = Instant::now();
            (m.authenticate("alice", "wonderland").await, t.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(m.authenticate("bob", "builder").await, Err(ManagerError::Busy), "one in flight already");
    assert_eq!(m.find("bob").await, Err(ManagerError::Busy));
    let (outcome, took) = held.await.unwrap();
    eprintln!("a directory that accepts and never answers: {outcome:?} after {took:?}");
    assert!(unavailable(&outcome), "{outcome:?}");
    assert!(took >= Duration::from_millis(1450) && took < Duration::from_millis(2500), "operation_timeout: {took:?}");
    slapd.resume();
    assert_eq!(m.authenticate("bob", "builder").await, valid("bob"), "the timed-out connection was replaced");
    assert!(m.health().is_up());
}

#[tokio::test]
async fn tls_trusts_ca_file_and_nothing_else() {
    let _cpu = shared();
    let slapd = Slapd::start(Options { tls: true, ..Options::default() });
    let ldaps = LdapConfig { ca_file: Some(slapd.ca_file()), ..search(vec![slapd.ldaps_url()]) };
    let starttls = LdapConfig { start_tls: true, ca_file: Some(slapd.ca_file()), ..template(vec![slapd.url()]) };
    for config in [ldaps.clone(), starttls.clone()] {
        let m = manager(config);
        assert_eq!(m.authenticate("alice", "wonderland").await, valid("alice"));
        assert_eq!(m.authenticate("alice", "wrong").await, WRONG);
    }
    assert!(slapd.log().contains("STARTTLS"), "StartTLS was used");
    for config in [
        LdapConfig { ca_file: Some(slapd.other_ca_file()), ..ldaps.clone() },
        LdapConfig { ca_file: Some(slapd.other_ca_file()), ..starttls.clone() },
        LdapConfig { ca_file: None, ..ldaps },
        LdapConfig { ca_file: None, ..starttls },
    ] {
        let shown = format!("{:?} {:?}", config.urls, config.ca_file);
        match LdapManager::new("directory", config) {
            Ok(m) => {
                let outcome = m.authenticate("alice", "wonderland").await;
                assert!(unavailable(&outcome), "{shown}: {outcome:?}");
            }
            // No system roots on this machine: refused at the start instead.
            Err(e) => assert!(e.contains("no CA certificates"), "{shown}: {e}"),
        }
    }
}

#[tokio::test]
async fn find_sees_removals_locks_and_password_changes() {
    let _cpu = shared();
    let slapd = Slapd::start(Options { anonymous: Anonymous::Read, ..Options::default() });
    let by_search = manager(with_subject(search(vec![slapd.url()]), "employeeNumber"));
    let by_template = manager(with_subject(template(vec![slapd.url()]), "employeeNumber"));
    for m in [&by_search, &by_template] {
        let alice = Entry { subject: "1001".into(), disabled: false, password_changed_at: None };
        assert_eq!(m.find("alice").await, Ok(Some(alice)));
        assert!(m.find("locked").await.unwrap().unwrap().disabled, "pwdAccountLockedTime");
        assert_eq!(m.find("mallory").await, Ok(None));
    }
    slapd.set_password(&user_dn("alice"), "new-wonderland");
    slapd.delete(&user_dn("bob"));
    for m in [&by_search, &by_template] {
        let alice = m.find("alice").await.unwrap().unwrap();
        let changed = alice.password_changed_at.expect("pwdChangedTime");
        assert!(changed.abs_diff(now()) < 30, "{changed} vs {}", now());
        assert_eq!(m.find("bob").await, Ok(None), "removed");
    }
    assert_eq!(by_search.authenticate("alice", "new-wonderland").await, valid("1001"));

    // Template mode, no anonymous reads. Anonymous clients with `auth` on
    // entries are told that one is missing (32 with its parent matched), and
    // refused the rest (50): a removal is seen, the rest is taken as it was.
    let unseen =
        |subject: &str| Ok(Some(Entry { subject: subject.into(), disabled: false, password_changed_at: None }));
    let auth_only = Slapd::start(Options::default());
    let m = manager(template(vec![auth_only.url()]));
    auth_only.delete(&user_dn("bob"));
    assert_eq!(m.find("bob").await, Ok(None), "the directory discloses the removal");
    assert_eq!(m.find("locked").await, unseen("locked"), "no verdict on what it does not show");
    // Anonymous clients that see nothing get 32 for every entry, with no
    // matched DN: no verdict at all, so the template mode cannot see a
    // removal there.
    let hidden = Slapd::start(Options { anonymous: Anonymous::Nothing, ..Options::default() });
    let m = manager(template(vec![hidden.url()]));
    assert_eq!(m.authenticate("alice", "wonderland").await, valid("alice"), "binds still work");
    hidden.delete(&user_dn("bob"));
    assert_eq!(m.find("bob").await, unseen("bob"));
    assert_eq!(m.find("alice").await, unseen("alice"));
    assert!(m.health().is_up());
}

#[tokio::test]
async fn a_wrong_service_password_is_unavailable_not_a_wrong_user_password() {
    let _cpu = shared();
    let slapd = Slapd::start(Options::default());
    let LdapLocate::Search { bind_dn, base_dn, user_filter, .. } = search(vec![]).locate else { unreachable!() };
    let locate = LdapLocate::Search { bind_dn, bind_password: Secret::new("not-it".into()), base_dn, user_filter };
    let m = manager(LdapConfig { locate, ..search(vec![slapd.url()]) });
    for _ in 0..FAILURES_TO_OPEN {
        let outcome = m.authenticate("alice", "wonderland").await;
        assert!(unavailable(&outcome), "{outcome:?}");
    }
    assert!(!m.health().is_up(), "the breaker holds back binds that would lock the service account");
    assert!(unavailable(&m.authenticate("alice", "wonderland").await));
    assert_eq!(slapd.binds_as(SERVICE_DN), FAILURES_TO_OPEN as usize);
    assert_eq!(slapd.binds_as(&user_dn("alice")), 0);
}

#[tokio::test]
async fn active_directory_reads_user_account_control_and_pwd_last_set() {
    let _cpu = shared();
    let slapd = Slapd::start(Options::default());
    for config in [search(vec![slapd.url()]), template(vec![slapd.url()])] {
        let m = manager(LdapConfig { active_directory: true, ..config });
        assert_eq!(m.authenticate("adam", "adam-pw").await, valid("adam"));
        // slapd's 49 has no AD sub-code: a wrong password with no detail.
        assert_eq!(m.authenticate("adam", "nope").await, WRONG);
        // AD itself refuses a disabled account's bind (533); a bind that
        // succeeds on an entry with ACCOUNTDISABLE is refused all the same.
        assert_eq!(
            m.authenticate("dee", "dee-pw").await,
            Ok(BindOutcome::Disabled { detail: Some("account_disabled") })
        );
    }
    let m = manager(LdapConfig { active_directory: true, ..search(vec![slapd.url()]) });
    assert_eq!(
        m.find("adam").await,
        Ok(Some(Entry { subject: "adam".into(), disabled: false, password_changed_at: None }))
    );
    let dee = Entry { subject: "dee".into(), disabled: true, password_changed_at: Some(1_704_067_200) };
    assert_eq!(m.find("dee").await, Ok(Some(dee)));
    // Without active_directory, neither attribute means anything.
    let m = manager(search(vec![slapd.url()]));
    assert_eq!(m.authenticate("dee", "dee-pw").await, valid("dee"));
    assert!(!m.find("dee").await.unwrap().unwrap().disabled);
}

/// What a fake directory sends: what slapd never would.
#[derive(Clone, Copy, Debug)]
enum Odd {
    /// A bind result whose diagnostic message is not UTF-8 (ldap3's parser
    /// panics on it, in the caller's task).
    BindText,
    /// Search entries whose DN, attribute name and value are not UTF-8, or
    /// whose DN is empty.
    Entries,
    /// An LDAPMessage with no protocolOp (ldap3's decoder panics on it, in
    /// the connection's task).
    NoOp,
}

fn ber(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend(content);
    out
}

fn ldap_result(tag: u8, rc: u8, text: &[u8]) -> Vec<u8> {
    ber(tag, &[ber(0x0a, &[rc]), ber(0x04, b""), ber(0x04, text)].concat())
}

fn search_entry(dn: &[u8], attr: &[u8], value: &[u8]) -> Vec<u8> {
    let attribute = ber(0x30, &[ber(0x04, attr), ber(0x31, &ber(0x04, value))].concat());
    ber(0x64, &[ber(0x04, dn), ber(0x30, &attribute)].concat())
}

/// One LDAPMessage: its message id (as encoded) and protocolOp tag.
async fn read_message(stream: &mut tokio::net::TcpStream) -> Option<(Vec<u8>, u8)> {
    use tokio::io::AsyncReadExt;
    if stream.read_u8().await.ok()? != 0x30 {
        return None;
    }
    let mut len = usize::from(stream.read_u8().await.ok()?);
    if len >= 0x80 {
        let mut n = 0;
        for _ in 0..len & 0x7f {
            n = n << 8 | usize::from(stream.read_u8().await.ok()?);
        }
        len = n;
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    let id_len = usize::from(*body.get(1)?);
    Some((body.get(2..2 + id_len)?.to_vec(), *body.get(2 + id_len)?))
}

/// A loopback "directory" that answers every bind and search as `odd` says.
async fn odd_directory(odd: Odd) -> String {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                while let Some((id, op)) = read_message(&mut stream).await {
                    let replies = match (odd, op) {
                        (_, 0x42) => break,
                        (Odd::BindText, 0x60) => vec![ldap_result(0x61, 49, b"80090308: \xff\xfe, data 52e, v2580")],
                        (Odd::Entries | Odd::NoOp, 0x60) => vec![ldap_result(0x61, 0, b"")],
                        (Odd::Entries, 0x63) => vec![
                            search_entry(b"uid=\xff,ou=people,dc=example,dc=org", b"\xfeuid", b"\xff"),
                            ldap_result(0x65, 0, b""),
                        ],
                        (Odd::NoOp, 0x63) => vec![],
                        _ => vec![ldap_result(op + 1, 2, b"")],
                    };
                    let mut out: Vec<u8> =
                        replies.iter().flat_map(|r| ber(0x30, &[ber(0x02, &id), r.clone()].concat())).collect();
                    if let (Odd::NoOp, 0x63) = (odd, op) {
                        out = ber(0x30, &ber(0x02, &id));
                    }
                    if stream.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn what_slapd_never_sends_is_never_a_panic_nor_a_login() {
    let _cpu = shared();
    for (odd, config) in [
        (Odd::BindText, search(vec![])),
        (Odd::BindText, LdapConfig { active_directory: true, ..template(vec![]) }),
        (Odd::Entries, search(vec![])),
        (Odd::NoOp, search(vec![])),
    ] {
        let url = odd_directory(odd).await;
        let m = manager(LdapConfig { urls: vec![url], ..config });
        let t = Instant::now();
        let outcome = m.authenticate("alice", "wonderland").await;
        match odd {
            // Nothing ropc can read: no entry, so nobody (and no bind).
            Odd::Entries => assert_eq!(outcome, UNKNOWN),
            _ => assert!(unavailable(&outcome), "{odd:?}: {outcome:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{odd:?}: answered at once, not at a timeout");
        let found = m.find("alice").await;
        assert!(matches!(found, Ok(None) | Err(ManagerError::Unavailable { .. })), "{odd:?}: {found:?}");
    }
}

/// Everything logged on this thread (the test's current-thread runtime
/// runs every task of it here).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn no_password_reaches_a_log() {
    let _cpu = shared();
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);
    let mut slapd = Slapd::start(Options::default());
    let LdapLocate::Search { bind_dn, base_dn, user_filter, .. } = search(vec![]).locate else { unreachable!() };
    let locate =
        LdapLocate::Search { bind_dn, bind_password: Secret::new("svc-pw-5f3a9".into()), base_dn, user_filter };
    let refused = manager(LdapConfig { locate, ..search(vec![slapd.url()]) });
    for _ in 0..FAILURES_TO_OPEN {
        assert!(unavailable(&refused.authenticate("alice", "user-pw-71c2e").await));
    }
    let m = manager(with_subject(search(vec![slapd.url()]), "mail"));
    assert_eq!(m.authenticate("alice", "user-pw-71c2e").await, WRONG);
    assert_eq!(m.authenticate("alice", "wonderland").await, valid("alice"), "and a warning: no mail");
    let by_cn = LdapLocate::Search {
        bind_dn: SERVICE_DN.into(),
        bind_password: Secret::new(SERVICE_PW.into()),
        base_dn: SUFFIX.into(),
        user_filter: "(cn={username})".into(),
    };
    assert_eq!(
        manager(LdapConfig { locate: by_cn, ..search(vec![slapd.url()]) }).authenticate("twin", "gemini").await,
        UNKNOWN
    );
    slapd.stop();
    for _ in 0..FAILURES_TO_OPEN {
        assert!(unavailable(&m.authenticate("alice", "wonderland").await));
    }
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    for said in [
        "the service account's bind was refused",
        "credential_manager_down",
        "the subject attribute is not on the entry",
        "more than one entry",
    ] {
        assert!(logs.contains(said), "the log says {said:?}:\n{logs}");
    }
    for secret in ["svc-pw-5f3a9", "user-pw-71c2e", "wonderland", "gemini", SERVICE_PW] {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
    }
}
