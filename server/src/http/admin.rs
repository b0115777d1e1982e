//! The operator's endpoints, served only on the admin listener and the
//! local admin socket, never on the public listener.
//!
//! `POST /admin/sessions/revoke` with a form body: `user=NAME` (and
//! `credential_manager=M` for a named manager's user), or `client=ID`.
//! Ends every grant of that user or client: its refresh tokens stop working
//! and its access tokens introspect inactive (JWT access tokens run out on
//! their own). Answers `{"grants_ended": N}`.

use super::respond::{json, plain, Body};
use crate::app::App;
use crate::clock;
use crate::live::Live;
use crate::store::{Names, Owner, Whose};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;

/// The path of the sessions revocation.
pub const SESSIONS_REVOKE: &str = "/admin/sessions/revoke";

/// Most bytes of an admin request's body.
const MAX_BODY: usize = 4096;

/// `POST /admin/sessions/revoke`.
pub async fn sessions_revoke(app: &App, live: &Live, body: Incoming) -> Response<Body> {
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large\n"),
    };
    let mut user = None;
    let mut manager = None;
    let mut client = None;
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let Ok(value) = ropc_core::form::decode(value) else {
            return plain(StatusCode::BAD_REQUEST, "a value is not form-encoded UTF-8\n");
        };
        let slot = match name {
            b"user" => &mut user,
            b"credential_manager" => &mut manager,
            b"client" => &mut client,
            _ => return plain(StatusCode::BAD_REQUEST, "expected user (with credential_manager) or client\n"),
        };
        *slot = Some(value.to_string());
    }
    let whose = match (user, manager, client) {
        (Some(user), None, None) => Whose::User(Owner::named(&user)),
        (Some(user), Some(m), None) => {
            if live.managers.get(&m).is_none() {
                return plain(StatusCode::NOT_FOUND, "no such credential manager\n");
            }
            Whose::User(Owner { manager: Some(Arc::from(m.as_str())), ..Owner::named(&user) })
        }
        (None, None, Some(id)) => match live.client(&id) {
            Some(index) => Whose::Client(index),
            None => return plain(StatusCode::NOT_FOUND, "no such client\n"),
        },
        _ => return plain(StatusCode::BAD_REQUEST, "expected user (with credential_manager) or client\n"),
    };
    match app.grants().end_grants(live, whose, clock::now(), "revoked by the operator").await {
        Ok(n) => json(StatusCode::OK, format!("{{\"grants_ended\":{n}}}").into_bytes()),
        Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "the token store is unavailable\n"),
    }
}
