//! The refresh grant (RFC 6749 §6) on a virtual clock: rotation, client
//! binding, token kind, exact expiry and scope narrowing.

use crate::harness::{Server, ACCESS_TTL, REFRESH_TTL, START};
use ropc_core::{EngineConfig, LostRace, Reason, TokenKind, UserRef};

#[test]
fn refresh_rotates_the_refresh_token() {
    let mut s = Server::new();
    let login = s.login("&scope=read+write");
    let first = login.refresh_token();
    let family = login.issued.as_ref().unwrap().access.1.family;

    s.now += 10;
    let r = s.refresh("legacy", &first, "");
    let second = r.refresh_token();
    assert_ne!(second, first);
    assert_ne!(r.string("access_token"), login.string("access_token"));
    assert_eq!(r.string("scope").as_deref(), Some("read write"));

    let issued = r.issued.unwrap();
    assert_eq!(issued.retire, Some(s.key(&first)), "the presented token is retired");
    let (key, record) = issued.refresh.unwrap();
    assert_eq!(key, s.key(&second));
    assert_eq!(record.kind, TokenKind::Refresh);
    assert_eq!((record.issued_at, record.expires_at), (START + 10, START + 10 + REFRESH_TTL));
    for record in [issued.access.1, record] {
        assert_eq!(record.family, family, "the family survives refreshes");
        assert_eq!(record.user, UserRef(1));
        assert_eq!(record.client, s.client("legacy"));
        assert_eq!(record.scope, s.scope("read write"));
    }
    assert_eq!(issued.access.1.expires_at, START + 10 + ACCESS_TTL);

    // The new one works, and rotates in turn.
    s.now += 10;
    let third = s.refresh("legacy", &second, "");
    assert_eq!(third.status, 200, "{}", third.body);
    assert_eq!(s.password_checks, 1, "a refresh never hashes a password");
}

#[test]
fn replaying_a_rotated_token_revokes_the_family() {
    let mut s = Server::new();
    let login = s.login("");
    let first = login.refresh_token();
    let stolen_access = s.key(&login.string("access_token").unwrap());
    s.now += 5;
    let second = s.refresh("legacy", &first, "").refresh_token();
    s.now += 5;
    let third = s.refresh("legacy", &second, "").refresh_token();

    // `first` was rotated away: presenting it again is theft.
    s.now += 1;
    let replay = s.refresh("legacy", &first, "");
    assert_eq!((replay.status, replay.error_code().as_str()), (400, "invalid_grant"));
    assert_eq!(replay.error.unwrap().reason, Reason::RefreshTokenReuse);
    // Every descendant died with it, access tokens included.
    let r = s.refresh("legacy", &third, "");
    assert_eq!((r.status, r.error.unwrap().reason), (400, Reason::UnknownRefreshToken));
    assert!(!s.store.contains_key(&stolen_access), "the family's access tokens are revoked");
    assert!(s.store.is_empty(), "nothing of the family is left");
    // Another login is unaffected.
    assert_eq!(s.login("").status, 200);
}

#[test]
fn grace_window_accepts_a_retry() {
    let config = EngineConfig { refresh_reuse_grace: 10, ..EngineConfig::default() };
    let mut s = Server::with_config(config);
    let first = s.login("").refresh_token();
    s.now += 100;
    let second = s.refresh("legacy", &first, "");
    assert_eq!(second.status, 200);
    // The response was lost; the client retries with `first` 9 s later.
    s.now += 9;
    let retry = s.refresh("legacy", &first, "");
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.issued.as_ref().unwrap().retire, None, "a retired token is not retired twice");
    // At exactly 10 s the window is closed: theft.
    s.now += 1;
    let late = s.refresh("legacy", &first, "");
    assert_eq!(late.error.unwrap().reason, Reason::RefreshTokenReuse);
}

#[test]
fn a_lost_rotation_race_is_a_replay_unless_graced() {
    let mut s = Server::new();
    let first = s.login("").refresh_token();
    let won = s.refresh("legacy", &first, "").issued.unwrap();
    match won.lost_race(&s.engine) {
        LostRace::RevokeFamily(family, until, error) => {
            assert_eq!(family, won.access.1.family);
            assert!(until >= won.access.1.expires_at && until >= START + REFRESH_TTL);
            assert_eq!((error.code.as_str(), error.reason), ("invalid_grant", Reason::RefreshTokenReuse));
        }
        other => panic!("{other:?}"),
    }
    let graced = Server::with_config(EngineConfig { refresh_reuse_grace: 5, ..EngineConfig::default() });
    assert_eq!(won.lost_race(&graced.engine), LostRace::StoreWithoutRetiring);
}

#[test]
fn without_rotation_the_refresh_token_is_kept() {
    let config = EngineConfig { rotate_refresh_tokens: false, ..EngineConfig::default() };
    let mut s = Server::with_config(config);
    let first = s.login("").refresh_token();
    let r = s.refresh("legacy", &first, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.json().contains_key("refresh_token"), "{}", r.body);
    let issued = r.issued.unwrap();
    assert_eq!((issued.refresh, issued.retire), (None, None));
    assert_eq!(s.refresh("legacy", &first, "").status, 200);
}

#[test]
fn refresh_token_of_another_client_is_invalid_grant() {
    let mut s = Server::new();
    let token = s.login("").refresh_token();
    let r = s.refresh("other", &token, "");
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_grant"));
    assert_eq!(r.error.unwrap().reason, Reason::RefreshTokenOfAnotherClient);
    // The attempt did not spend the token of its rightful owner.
    assert_eq!(s.refresh("legacy", &token, "").status, 200);
}

#[test]
fn access_token_is_not_a_refresh_token() {
    let mut s = Server::new();
    let access = s.login("").string("access_token").unwrap();
    assert!(s.store.contains_key(&s.key(&access)));
    let r = s.refresh("legacy", &access, "");
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_grant"));
    assert_eq!(r.error.unwrap().reason, Reason::NotARefreshToken);
}

#[test]
fn unknown_and_malformed_refresh_tokens_are_invalid_grant() {
    let mut s = Server::new();
    let well_formed_but_unknown = "A".repeat(ropc_core::token::TOKEN_LEN);
    for token in [well_formed_but_unknown.as_str(), "short", "%2B%2F"] {
        let r = s.refresh("legacy", token, "");
        assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_grant"), "{token}");
        assert_eq!(r.error.unwrap().reason, Reason::UnknownRefreshToken, "{token}");
    }
}

#[test]
fn refresh_token_expires_exactly_at_expires_at() {
    let mut s = Server::new();
    // Two logins at the same instant: one token for each side of the edge.
    let early = s.login("").refresh_token();
    let late = s.login("").refresh_token();
    let expires_at = s.store[&s.key(&late)].expires_at;
    assert_eq!(expires_at, START + REFRESH_TTL);

    s.now = expires_at - 1;
    let r = s.refresh("legacy", &early, "");
    assert_eq!(r.status, 200, "still active one second before: {}", r.body);

    s.now = expires_at;
    let r = s.refresh("legacy", &late, "");
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_grant"));
    assert_eq!(r.error.unwrap().reason, Reason::ExpiredRefreshToken);
}

#[test]
fn refresh_may_narrow_but_never_widen_the_scope() {
    let mut s = Server::new();
    let narrow = s.login("&scope=read").refresh_token();
    for widen in ["&scope=read+write", "&scope=write", "&scope=nosuch", "&scope=read+admin"] {
        let r = s.refresh("legacy", &narrow, widen);
        assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_scope"), "{widen}");
    }
    // Each refused attempt left the token usable.
    let r = s.refresh("legacy", &narrow, "&scope=read");
    assert_eq!(r.string("scope").as_deref(), Some("read"), "{}", r.body);

    let wide = s.login("&scope=read+write").refresh_token();
    let r = s.refresh("legacy", &wide, "&scope=write");
    assert_eq!(r.string("scope").as_deref(), Some("write"), "{}", r.body);
    // RFC 6749 §6: the rotated refresh token keeps the original scope; only
    // the access token was narrowed.
    let rotated = r.refresh_token();
    assert_eq!(s.store[&s.key(&rotated)].scope, s.scope("read write"));
    assert_eq!(s.store[&s.key(&r.string("access_token").unwrap())].scope, s.scope("write"));
    let r = s.refresh("legacy", &rotated, "&scope=read");
    assert_eq!(r.string("scope").as_deref(), Some("read"), "{}", r.body);
    let r = s.refresh("legacy", &r.refresh_token(), "");
    assert_eq!(r.string("scope").as_deref(), Some("read write"), "{}", r.body);
}

/// A refresh checks the account behind it: one removed, disabled, or whose
/// password changed after the presented token was issued ends the whole
/// grant (every token of its family), with the same `invalid_grant` as an
/// unknown refresh token. A password changed before the token was issued
/// (a later login, or an earlier rotation) does not.
#[test]
fn a_refresh_ends_the_grant_of_an_account_that_changed() {
    use ropc_core::AccountState;
    for (state, reason) in [
        (AccountState::Removed, Reason::AccountRemoved),
        (AccountState::Disabled, Reason::DisabledAccount),
        (AccountState::PasswordChanged, Reason::PasswordChanged),
    ] {
        let mut s = Server::new();
        let login = s.login("");
        let first = login.refresh_token();
        s.now += 10;
        let checked = s.account_checks;
        let second = s.refresh("legacy", &first, "").refresh_token();
        assert_eq!(s.account_checks, checked + 1, "every refresh checks its account");
        s.now += 10;
        s.accounts.insert(1, (state, s.now));
        let r = s.refresh("legacy", &second, "");
        assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_grant"), "{state:?}");
        assert_eq!(r.error.as_ref().unwrap().reason, reason);
        assert_eq!(r.body, s.refresh("legacy", "unknown-token", "").body, "the same body as an unknown token");
        assert!(s.store.is_empty(), "{state:?}: the family's tokens are revoked");
    }
    // A change at a time before the token was issued is not this grant's.
    let mut s = Server::new();
    s.accounts.insert(1, (AccountState::PasswordChanged, s.now));
    s.now += 5;
    let login = s.login("");
    s.now += 5;
    let r = s.refresh("legacy", &login.refresh_token(), "");
    assert_eq!(r.status, 200, "{}", r.body);
}
