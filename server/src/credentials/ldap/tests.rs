//! The manager without a directory: what it refuses before any connection,
//! what `Debug` shows, what `new` checks.

use super::*;
use crate::credentials::LdapLocate;
use crate::redact::Secret;
use std::time::Duration;

fn config(locate: LdapLocate) -> LdapConfig {
    LdapConfig {
        // Nothing listens on port 1 of the loopback.
        urls: vec!["ldap://127.0.0.1:1".into()],
        start_tls: false,
        ca_file: None,
        locate,
        subject_attribute: None,
        active_directory: false,
        max_connections: 2,
        connect_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_millis(500),
        account_cache_ttl: Duration::from_secs(60),
    }
}

fn search() -> LdapLocate {
    LdapLocate::Search {
        bind_dn: "cn=ropc,dc=example,dc=org".into(),
        bind_password: Secret::new("service-hunter2".into()),
        base_dn: "dc=example,dc=org".into(),
        user_filter: "(uid={username})".into(),
    }
}

#[tokio::test]
async fn an_empty_password_is_wrong_before_any_connection() {
    for locate in [search(), LdapLocate::Template("uid={username},dc=example,dc=org".into())] {
        let m = LdapManager::new("dir", config(locate)).unwrap();
        for _ in 0..5 {
            let outcome = m.authenticate("alice", "").await;
            assert_eq!(outcome, Ok(BindOutcome::WrongPassword { detail: Some("empty_password") }));
        }
        assert_eq!(m.authenticate("", "pw").await, Ok(BindOutcome::UnknownUser));
        assert_eq!(m.find("").await, Ok(None));
        assert!(m.health().is_up(), "nothing was tried, so nothing failed");
        assert_eq!(m.idle_connections(), (0, 0));
    }
}

#[tokio::test]
async fn no_directory_is_unavailable_never_a_wrong_password() {
    let m = LdapManager::new("dir", config(search())).unwrap();
    for _ in 0..crate::credentials::health::FAILURES_TO_OPEN {
        assert!(matches!(m.authenticate("alice", "pw").await, Err(ManagerError::Unavailable { .. })));
    }
    assert!(!m.health().is_up());
    assert!(matches!(m.find("alice").await, Err(ManagerError::Unavailable { .. })), "open: fails fast");
}

#[test]
fn debug_shows_no_password() {
    let mut c = config(search());
    c.subject_attribute = Some("uid".into());
    let m = LdapManager::new("dir", c).unwrap();
    let shown = format!("{m:?} {:#?}", m);
    assert!(!shown.contains("service-hunter2"), "{shown}");
    assert!(shown.contains("cn=ropc,dc=example,dc=org") && shown.contains("<redacted>"), "{shown}");
}

#[test]
fn new_refuses_what_would_fail_every_login() {
    let LdapLocate::Search { bind_dn, bind_password, base_dn, .. } = search() else { unreachable!() };
    let bad = LdapLocate::Search { bind_dn, bind_password, base_dn, user_filter: "(uid={username}".into() };
    assert!(LdapManager::new("dir", config(bad)).unwrap_err().contains("not an LDAP filter"));
    let mut c = config(search());
    c.urls.clear();
    assert!(LdapManager::new("dir", c).is_err());
    let mut c = config(search());
    c.urls = vec!["ldaps://127.0.0.1:1".into()];
    c.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(LdapManager::new("dir", c).unwrap_err().contains("/nonexistent/ca.pem"));
    let empty = std::env::temp_dir().join(format!("ropc-ldap-empty-ca-{}.pem", std::process::id()));
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let mut c = config(search());
    c.start_tls = true;
    c.ca_file = Some(empty.clone());
    let err = LdapManager::new("dir", c).unwrap_err();
    std::fs::remove_file(&empty).unwrap();
    assert!(err.contains("no PEM certificate"), "{err}");
}

/// The login path awaits these inside spawned tasks.
#[test]
fn calls_are_send() {
    fn send<T: Send>(_: &T) {}
    let m = LdapManager::new("dir", config(search())).unwrap();
    let (a, f) = (m.authenticate("a", "b"), m.find("a"));
    send(&a);
    send(&f);
    fn sync<T: Send + Sync>() {}
    sync::<LdapManager>();
}
