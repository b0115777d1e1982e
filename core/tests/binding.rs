//! Sender-constrained tokens (RFC 9449 DPoP, RFC 8705 certificates) and
//! client assertions (RFC 7523) as the engine sees them: the runtime has
//! checked the proofs and hands over thumbprints; the engine binds, refuses
//! and reports.

use crate::harness::{basic_for, Server};
use ropc_core::token::binding_of;
use ropc_core::{Binding, ErrorCode, Proofs, Reason};

const KEY_A: [u8; 32] = [0xA1; 32];
const KEY_B: [u8; 32] = [0xB2; 32];
const CERT: [u8; 32] = [0xC3; 32];

fn dpop(key: [u8; 32]) -> Proofs {
    Proofs { dpop: Some(key), ..Proofs::default() }
}

#[test]
fn a_dpop_login_binds_both_tokens_and_a_refresh_needs_the_same_key() {
    let mut s = Server::new();
    s.proofs = dpop(KEY_A);
    let login = s.login("");
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.string("token_type").as_deref(), Some("DPoP"), "RFC 9449 §5");
    let access = login.string("access_token").unwrap();
    let refresh = login.refresh_token();
    assert_eq!(binding_of(&access), Some(Binding::Dpop(KEY_A)));
    assert_eq!(binding_of(&refresh), Some(Binding::Dpop(KEY_A)));

    for (proofs, why) in [(Proofs::default(), "no proof"), (dpop(KEY_B), "another key's proof")] {
        s.proofs = proofs;
        let r = s.refresh("legacy", &refresh, "");
        assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_grant"), "{why}: {}", r.body);
        assert_eq!(r.error.unwrap().reason, Reason::BindingMismatch, "{why}");
    }
    // The certificate's thumbprint is no DPoP key, even with the same bytes.
    s.proofs = Proofs { certificate: Some(KEY_A), bind_certificate: true, ..Proofs::default() };
    assert_eq!(s.refresh("legacy", &refresh, "").status, 400);

    s.proofs = dpop(KEY_A);
    let r = s.refresh("legacy", &refresh, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(binding_of(&r.refresh_token()), Some(Binding::Dpop(KEY_A)), "the rotated token keeps its key");
    assert_eq!(r.string("token_type").as_deref(), Some("DPoP"));
}

#[test]
fn the_binding_cannot_be_stripped_or_swapped() {
    let mut s = Server::new();
    s.proofs = dpop(KEY_A);
    let refresh = s.login("").refresh_token();
    // The random part alone is a well-formed bearer token, but its digest
    // differs: it is unknown.
    s.proofs = Proofs::default();
    let stripped = &refresh[..ropc_core::token::TOKEN_LEN];
    let r = s.refresh("legacy", stripped, "");
    assert_eq!(r.error.unwrap().reason, Reason::UnknownRefreshToken);
    // Rebound to the attacker's key: the proof matches, the token does not.
    let mut swapped = refresh[..ropc_core::token::TOKEN_LEN + 2].to_owned();
    swapped.push_str("srKysrKysrKysrKysrKysrKysrKysrKysrKysrKysrI");
    assert_eq!(binding_of(&swapped), Some(Binding::Dpop(KEY_B)));
    s.proofs = dpop(KEY_B);
    let r = s.refresh("legacy", &swapped, "");
    assert_eq!(r.error.unwrap().reason, Reason::UnknownRefreshToken);
}

#[test]
fn an_unbound_refresh_with_a_proof_binds_the_new_tokens_from_then_on() {
    let mut s = Server::new();
    let login = s.login("");
    assert_eq!(login.string("token_type").as_deref(), Some("bearer"));
    s.proofs = dpop(KEY_A);
    let r = s.refresh("legacy", &login.refresh_token(), "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.string("token_type").as_deref(), Some("DPoP"));
    assert_eq!(binding_of(&r.string("access_token").unwrap()), Some(Binding::Dpop(KEY_A)));
    let rotated = r.refresh_token();
    assert_eq!(binding_of(&rotated), Some(Binding::Dpop(KEY_A)), "bound from now on");
    s.proofs = Proofs::default();
    assert_eq!(s.refresh("legacy", &rotated, "").error.unwrap().reason, Reason::BindingMismatch);
}

#[test]
fn certificate_bound_tokens_stay_bearer_and_need_the_certificate() {
    let mut s = Server::new();
    let bound = Proofs { certificate: Some(CERT), bind_certificate: true, ..Proofs::default() };
    // A certificate alone binds nothing unless the client asks for it.
    s.proofs = Proofs { bind_certificate: false, ..bound };
    assert_eq!(binding_of(&s.login("").refresh_token()), Some(Binding::None));

    s.proofs = bound;
    let login = s.login("");
    assert_eq!(login.string("token_type").as_deref(), Some("bearer"), "RFC 8705 §3");
    let access = login.string("access_token").unwrap();
    assert_eq!(binding_of(&access), Some(Binding::Certificate(CERT)));
    let introspection = s.introspect(&access);
    assert!(
        introspection.ends_with(r#","cnf":{"x5t#S256":"w8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8M"}}"#),
        "{introspection}"
    );
    s.proofs = Proofs::default();
    assert_eq!(s.refresh("legacy", &login.refresh_token(), "").error.unwrap().reason, Reason::BindingMismatch);
    s.proofs = bound;
    assert_eq!(s.refresh("legacy", &login.refresh_token(), "").status, 200);
}

#[test]
fn introspection_shows_the_dpop_thumbprint_and_nothing_for_a_bearer_token() {
    let mut s = Server::new();
    let bearer = s.login("").string("access_token").unwrap();
    let plain = s.introspect(&bearer);
    assert!(plain.contains(r#""active":true"#) && !plain.contains("cnf"), "{plain}");
    s.proofs = dpop(KEY_A);
    let bound = s.login("").string("access_token").unwrap();
    let shown = s.introspect(&bound);
    assert!(shown.ends_with(r#""cnf":{"jkt":"oaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaE"}}"#), "{shown}");
    assert!(shown.contains(r#""token_type":"DPoP""#), "RFC 9449 §6.2: {shown}");
    assert!(plain.contains(r#""token_type":"bearer""#), "{plain}");
}

fn assertion_body(extra: &str) -> String {
    format!(
        "grant_type=password&username=alice&password=wonderland\
         &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer{extra}"
    )
}

#[test]
fn a_client_assertion_identifies_and_authenticates_the_client() {
    let mut s = Server::new();
    s.assertions.insert("eyJ.legacy.sig".into(), "legacy".into());
    // Without client_id the runtime names the issuer.
    let r = s.token(&assertion_body("&client_assertion=eyJ.legacy.sig"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    // With a client_id it must be the same client.
    let r = s.token(&assertion_body("&client_assertion=eyJ.legacy.sig&client_id=legacy"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.token(&assertion_body("&client_assertion=eyJ.legacy.sig&client_id=other"), None);
    assert_eq!((r.error_code().as_str(), r.error.unwrap().reason), ("invalid_client", Reason::BadAssertion));
    // An assertion nobody issued.
    let r = s.token(&assertion_body("&client_assertion=eyJ.forged.sig"), None);
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_client"));
    assert_eq!(s.password_checks, 2, "no hash is spent before the client is authenticated");
}

#[test]
fn assertion_parameters_are_checked_before_anything_else() {
    let mut s = Server::new();
    let basic = basic_for("legacy");
    let cases = [
        (assertion_body("&client_assertion=a.b.c"), Some(basic.as_str()), ErrorCode::InvalidRequest),
        (assertion_body("&client_assertion=a.b.c&client_secret=x&client_id=legacy"), None, ErrorCode::InvalidRequest),
        (assertion_body(""), None, ErrorCode::InvalidRequest),
        (
            "grant_type=password&username=alice&password=w&client_assertion=a.b.c".to_owned(),
            None,
            ErrorCode::InvalidRequest,
        ),
        (
            "grant_type=password&username=alice&password=w&client_assertion=a.b.c&client_assertion_type=saml"
                .to_owned(),
            None,
            ErrorCode::InvalidClient,
        ),
    ];
    for (body, auth, code) in cases {
        let r = s.token(&body, auth);
        assert_eq!(r.error.map(|e| e.code), Some(code), "{body}: {}", r.body);
    }
    assert_eq!(s.password_checks, 0);
}
