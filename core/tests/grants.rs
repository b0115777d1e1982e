//! Password and client-credentials grants end to end: response shape, client
//! authentication, capabilities, scopes and error bodies.

use crate::harness::{basic_for, Json, Server, ACCESS_TTL, REFRESH_TTL, START};
use ropc_core::basic;
use ropc_core::error::BASIC_CHALLENGE;
use ropc_core::token::is_well_formed;
use ropc_core::{EngineConfig, ErrorCode, Reason, TokenKind, UserRef};

const PASSWORD: &str = "grant_type=password&username=alice&password=wonderland";

#[test]
fn password_grant_issues_access_and_refresh_token() {
    let mut s = Server::new();
    let r = s.token(PASSWORD, Some(&basic_for("legacy")));
    assert_eq!((r.status, r.www_authenticate), (200, None), "{}", r.body);

    let json = r.json();
    let members: Vec<&str> = json.keys().map(String::as_str).collect();
    assert_eq!(members, ["access_token", "expires_in", "refresh_token", "scope", "token_type"]);
    assert_eq!(json["token_type"], Json::Str("bearer".into()));
    assert_eq!(json["expires_in"], Json::Num(ACCESS_TTL));
    assert_eq!(json["scope"], Json::Str("read".into()));
    // The members come in the documented order.
    assert!(r.body.starts_with(r#"{"access_token":""#), "{}", r.body);

    let access = r.string("access_token").unwrap();
    let refresh = r.string("refresh_token").unwrap();
    assert!(is_well_formed(&access) && is_well_formed(&refresh), "{access} {refresh}");
    assert_ne!(access, refresh);

    let issued = r.issued.unwrap();
    let (access_key, access_record) = issued.access;
    let (refresh_key, refresh_record) = issued.refresh.unwrap();
    assert_eq!(access_key, s.key(&access));
    assert_eq!(refresh_key, s.key(&refresh));
    assert_eq!(issued.retire, None);
    assert_eq!(access_record.kind, TokenKind::Access);
    assert_eq!(refresh_record.kind, TokenKind::Refresh);
    assert_eq!((access_record.issued_at, access_record.expires_at), (START, START + ACCESS_TTL));
    assert_eq!((refresh_record.issued_at, refresh_record.expires_at), (START, START + REFRESH_TTL));
    assert_eq!(access_record.family, refresh_record.family);
    for record in [access_record, refresh_record] {
        assert_eq!(record.user, UserRef(1));
        assert_eq!(record.client, s.client("legacy"));
        assert_eq!(record.scope, s.scope("read"));
    }
    assert_eq!(s.password_checks, 1);
}

#[test]
fn credentials_in_the_body_work_too() {
    let mut s = Server::new();
    let r = s.token(&format!("{PASSWORD}&client_id=legacy&client_secret=legacy-secret"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.string("refresh_token").is_some());
}

#[test]
fn every_login_gets_its_own_tokens_and_family() {
    let mut s = Server::new();
    let a = s.login("").issued.unwrap();
    let b = s.login("").issued.unwrap();
    assert_ne!(a.access.0, b.access.0);
    assert_ne!(a.access.1.family, b.access.1.family);
}

#[test]
fn client_without_refresh_capability_gets_no_refresh_token() {
    let mut s = Server::new();
    let r = s.token(PASSWORD, Some(&basic_for("norefresh")));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.json().contains_key("refresh_token"), "{}", r.body);
    assert!(r.json().contains_key("access_token"), "{}", r.body);
    assert!(r.issued.unwrap().refresh.is_none());
}

#[test]
fn client_credentials_issues_no_refresh_token() {
    let mut s = Server::new();
    let r = s.token("grant_type=client_credentials", Some(&basic_for("service")));
    assert_eq!(r.status, 200, "{}", r.body);
    let members: Vec<String> = r.json().into_keys().collect();
    assert_eq!(members, ["access_token", "expires_in", "scope", "token_type"]);
    assert_eq!(r.string("scope").as_deref(), Some("admin"));
    let issued = r.issued.unwrap();
    assert!(issued.refresh.is_none());
    assert_eq!(issued.access.1.user, UserRef::NONE);
    assert_eq!(s.password_checks, 0);
}

#[test]
fn missing_capability_is_unauthorized_client() {
    let mut s = Server::new();
    let cases = [
        ("service", PASSWORD),
        ("legacy", "grant_type=client_credentials"),
        ("norefresh", "grant_type=refresh_token&refresh_token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ("refresher", PASSWORD),
    ];
    for (client, body) in cases {
        let r = s.token(body, Some(&basic_for(client)));
        assert_eq!((r.status, r.error_code().as_str()), (400, "unauthorized_client"), "{client}: {body}");
        assert_eq!(r.error.unwrap().reason, Reason::MissingCapability);
    }
    // The capability is checked before any password hash is spent.
    assert_eq!(s.password_checks, 0);
}

#[test]
fn invalid_client_challenges_only_after_basic() {
    let mut s = Server::new();
    let unknown_basic = basic::encode("nobody", "x");
    let wrong_basic = basic::encode("legacy", "wrong");
    let body_auth = |id: &str, secret: &str| format!("{PASSWORD}&client_id={id}&client_secret={secret}");
    // (body, Authorization, status, challenge, reason)
    type Case<'a> = (String, Option<&'a str>, u16, Option<&'a str>, Reason);
    let cases: [Case<'_>; 7] = [
        (body_auth("nobody", "x"), None, 400, None, Reason::UnknownClient),
        (PASSWORD.into(), Some(&unknown_basic), 401, Some(BASIC_CHALLENGE), Reason::UnknownClient),
        (body_auth("legacy", "wrong"), None, 400, None, Reason::BadClientSecret),
        (PASSWORD.into(), Some(&wrong_basic), 401, Some(BASIC_CHALLENGE), Reason::BadClientSecret),
        (PASSWORD.into(), None, 400, None, Reason::NoClientAuthentication),
        (format!("{PASSWORD}&client_id=legacy"), None, 400, None, Reason::NoClientAuthentication),
        (PASSWORD.into(), Some("Basic !!!"), 401, Some(BASIC_CHALLENGE), Reason::BadAuthorizationHeader),
    ];
    for (body, auth, status, challenge, reason) in cases {
        let r = s.token(&body, auth);
        let what = format!("{body} / {auth:?}");
        assert_eq!(r.error_code(), "invalid_client", "{what}");
        assert_eq!((r.status, r.www_authenticate), (status, challenge), "{what}");
        assert_eq!(r.error.unwrap().reason, reason, "{what}");
    }
    assert_eq!(s.password_checks, 0, "no hash for an unauthenticated client");
}

#[test]
fn user_failures_are_indistinguishable() {
    let mut s = Server::new();
    let auth = basic_for("legacy");
    let wrong = s.token("grant_type=password&username=alice&password=guess", Some(&auth));
    let unknown = s.token("grant_type=password&username=nobody&password=guess", Some(&auth));
    let locked = s.token("grant_type=password&username=mallory&password=letmein", Some(&auth));
    // The three really took different paths...
    let reasons: Vec<Reason> = [&wrong, &unknown, &locked].map(|r| r.error.unwrap().reason).to_vec();
    assert_eq!(reasons, [Reason::WrongPassword, Reason::UnknownUser, Reason::LockedUser]);
    // ...and the client cannot tell them apart.
    assert_eq!(wrong.error_code(), "invalid_grant");
    for other in [&unknown, &locked] {
        assert_eq!(other.body.as_bytes(), wrong.body.as_bytes());
        assert_eq!((other.status, other.www_authenticate), (wrong.status, wrong.www_authenticate));
    }
    assert_eq!(wrong.status, 400);
    assert!(s.store.is_empty());
}

#[test]
fn scope_rules() {
    let mut s = Server::new();
    // (scope parameter, granted scope or the error code)
    let cases: [(&str, Result<&str, &str>); 8] = [
        ("", Ok("read")),
        ("&scope=write", Ok("write")),
        ("&scope=write+read", Ok("read write")),
        // Narrowed: admin is not allowed to `legacy`, nosuch is not defined.
        ("&scope=read+write+admin+nosuch", Ok("read write")),
        ("&scope=admin", Err("invalid_scope")),
        ("&scope=nosuch", Err("invalid_scope")),
        ("&scope=read++write", Err("invalid_scope")),
        ("&scope=%22read%22", Err("invalid_scope")),
    ];
    for (extra, expected) in cases {
        let r = s.login(extra);
        match expected {
            Ok(scope) => {
                assert_eq!(r.string("scope").as_deref(), Some(scope), "{extra}");
                assert_eq!(r.issued.unwrap().access.1.scope, s.scope(scope), "{extra}");
            }
            Err(code) => {
                assert_eq!((r.status, r.error_code().as_str()), (400, code), "{extra}");
            }
        }
    }
}

#[test]
fn scope_is_checked_before_the_password() {
    let mut s = Server::new();
    let r = s.login("&scope=admin");
    assert_eq!(r.error_code(), "invalid_scope");
    assert_eq!(s.password_checks, 0);
}

#[test]
fn detailed_errors_off_omits_descriptions() {
    let mut quiet = Server::with_config(EngineConfig { detailed_errors: false, ..EngineConfig::default() });
    let mut loud = Server::new();
    let wrong_password = "grant_type=password&username=alice&password=guess";
    let wrong_basic = basic::encode("legacy", "wrong");
    for (body, auth) in [(wrong_password, basic_for("legacy")), (PASSWORD, wrong_basic)] {
        let q = quiet.token(body, Some(&auth));
        let l = loud.token(body, Some(&auth));
        assert_eq!(q.json().len(), 1, "{}", q.body);
        assert_eq!(q.body, format!(r#"{{"error":"{}"}}"#, l.error_code()));
        let description = l.string("error_description").expect("a description when detailed");
        assert!(ropc_core::OAuthError::is_valid_description(&description), "{description}");
        // Status and challenge do not depend on the setting.
        assert_eq!((q.status, q.www_authenticate), (l.status, l.www_authenticate));
    }
}

#[test]
fn random_failure_is_server_error() {
    // A password grant for `legacy` draws three times: family, access token,
    // refresh token. Breaking any of them fails the whole grant.
    for n in 0..3 {
        let mut s = Server::new();
        s.random.fail_at(n);
        let r = s.login("");
        assert_eq!((r.status, r.error_code().as_str()), (500, "server_error"), "draw {n}");
        assert_eq!(r.error.unwrap().reason, Reason::RandomFailure, "draw {n}");
        assert!(s.store.is_empty(), "draw {n}");
    }
    // A fourth draw is not needed, so breaking it changes nothing.
    let mut s = Server::new();
    s.random.fail_at(3);
    assert_eq!(s.login("").status, 200);
}

#[test]
fn malformed_requests_never_reach_the_client_check() {
    let mut s = Server::new();
    let auth = basic_for("legacy");
    let cases = [
        ("grant_type=password&username=alice", "invalid_request"),
        ("grant_type=password&username=a&username=b&password=p", "invalid_request"),
        ("grant_type=authorization_code&code=x", "unsupported_grant_type"),
        ("grant_type=password&username=alice&password=%zz", "invalid_request"),
    ];
    for (body, code) in cases {
        let r = s.token(body, Some(&auth));
        assert_eq!((r.status, r.error_code().as_str(), r.www_authenticate), (400, code, None), "{body}");
    }
    let r = s.token(&format!("{PASSWORD}&client_secret=legacy-secret"), Some(&auth));
    assert_eq!(r.error.unwrap().code, ErrorCode::InvalidRequest);
    assert_eq!(s.password_checks, 0);
}

#[test]
fn answering_a_step_that_was_not_asked_ends_the_grant() {
    use ropc_core::basic::SCRATCH_LEN;
    use ropc_core::{PasswordOutcome, Provider, Step, UserRef};
    let s = crate::harness::Server::new();
    let provider = Provider { random: &s.random, digest: &s.digest };
    let header = crate::harness::basic_for("legacy");
    let body = b"grant_type=password&username=alice&password=wonderland";
    let mut scratch = [0u8; SCRATCH_LEN];
    let mut grant = s.engine.token_grant(provider, body, Some(header.as_bytes()), &mut scratch);
    // The engine asks for the client secret; a password answer is a bug.
    grant.password_verified(PasswordOutcome::Valid(UserRef(1)));
    match grant.step() {
        Step::Reject(e) => assert_eq!(e.code.as_str(), "server_error"),
        other => panic!("{other:?}"),
    }
    // An earlier rejection is kept.
    let mut scratch = [0u8; SCRATCH_LEN];
    let mut grant = s.engine.token_grant(provider, b"grant_type=nope", None, &mut scratch);
    grant.client_authenticated(true);
    assert!(matches!(grant.step(), Step::Reject(e) if e.code.as_str() == "unsupported_grant_type"));
}
