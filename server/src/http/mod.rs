//! HTTP: routing, and the three form endpoints' path through a request.
//!
//! | module | owns |
//! |---|---|
//! | this one | which handler a path and method go to |
//! | `body` | reading a body within its limits (and draining an oversized one) |
//! | `respond` | the responses and the headers each one owes |
//! | `observe` | the metrics and the log line of each request |

pub mod admin;
mod body;
mod observe;
mod respond;

pub use respond::Body;

use crate::app::App;
use crate::grant::{DpopHeader, GrantOutcome, RequestContext};
use crate::live::Live;
use crate::metrics::Endpoint;
use crate::routes;
use crate::tls::PeerCertificate;
use body::BodyError;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use respond::{json, method_not_allowed, plain};
use ropc_core::{OAuthError, QueryKind};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

/// Which listener a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The main listener: every endpoint (and `/metrics` unless an admin
    /// listener is configured).
    Main,
    /// `[server] admin_listen`: `/metrics`, `/healthz` and the operator's
    /// `/admin/` endpoints.
    Admin,
    /// The local admin socket (`[server] admin_socket`): the same.
    Socket,
}

/// Routes one request.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: IpAddr,
    listener: Listener,
    certificate: Option<Arc<PeerCertificate>>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let method = req.method().clone();
    // The configuration this request runs on to the end, whatever commits
    // meanwhile.
    let live = app.live();
    let metrics_here = match listener {
        // Listeners are set at start: the start-up config says.
        Listener::Main => app.boot().admin_listen.is_none(),
        Listener::Admin | Listener::Socket => true,
    };
    if path == routes::METRICS && metrics_here {
        return Ok(match method {
            Method::GET | Method::HEAD => {
                let mut r = Response::new(Body::from(app.render_metrics()));
                r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
                r
            }
            _ => method_not_allowed("GET, HEAD", false),
        });
    }
    if listener != Listener::Main {
        return Ok(match (path, &method) {
            (routes::HEALTHZ, &Method::GET | &Method::HEAD) => healthz(&app, &live).await,
            (routes::HEALTHZ, _) => method_not_allowed("GET, HEAD", false),
            (admin::SESSIONS_REVOKE, &Method::POST) => admin::sessions_revoke(&app, &live, req.into_body()).await,
            (admin::SESSIONS_REVOKE, _) => method_not_allowed("POST", false),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        });
    }
    let endpoints = &live.config.endpoints;
    let form = if path == endpoints.token {
        Some(Endpoint::Token)
    } else if path == endpoints.revocation {
        Some(Endpoint::Revocation)
    } else if path == endpoints.introspection {
        Some(Endpoint::Introspection)
    } else {
        None
    };
    let get = matches!(method, Method::GET | Method::HEAD);
    let response = if let Some(endpoint) = form {
        if method == Method::POST {
            form_endpoint(&app, &live, req, endpoint, peer, certificate.as_deref()).await
        } else {
            method_not_allowed("POST", true)
        }
    } else if path == routes::HEALTHZ {
        if get {
            healthz(&app, &live).await
        } else {
            method_not_allowed("GET, HEAD", false)
        }
    } else if path == endpoints.jwks && live.jwt.is_some() {
        match (get, &live.jwt) {
            (true, Some(keys)) => json(StatusCode::OK, keys.jwks.clone()),
            _ => method_not_allowed("GET, HEAD", false),
        }
    } else if path == routes::METADATA {
        if get {
            json(StatusCode::OK, live.metadata.clone())
        } else {
            method_not_allowed("GET, HEAD", false)
        }
    } else {
        plain(StatusCode::NOT_FOUND, "not found\n")
    };
    Ok(response)
}

/// `200` while serving; `503` while draining or while the token store is
/// down. One line more per named credential manager says whether it
/// answers: a manager that is down fails its own clients' logins (503),
/// not the server's other work, so it does not fail the check.
async fn healthz(app: &App, live: &Live) -> Response<Body> {
    let (status, first) = if app.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if !app.tokens.is_up().await {
        (StatusCode::SERVICE_UNAVAILABLE, "token store unavailable\n")
    } else {
        (StatusCode::OK, "ok\n")
    };
    let managers = live.managers.health_lines();
    if managers.is_empty() {
        return plain(status, first);
    }
    let mut r = Response::new(Body::from(format!("{first}{managers}")));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// `application/x-www-form-urlencoded`, parameters (e.g. charset) allowed.
fn is_form(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(v) = v.to_str() else { return false };
    let media = v.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

async fn form_endpoint(
    app: &App,
    live: &Live,
    req: Request<Incoming>,
    endpoint: Endpoint,
    peer: IpAddr,
    certificate: Option<&PeerCertificate>,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let early = if !is_form(&parts.headers) {
        Some(OAuthError::UNSUPPORTED_CONTENT_TYPE)
    } else if parts.headers.get_all(AUTHORIZATION).iter().count() > 1 {
        Some(OAuthError::DUPLICATE_HEADER)
    } else {
        None
    };
    // Like the head's timeout, set at start.
    let timeout = app.boot().header_read_timeout;
    let body = match early {
        Some(e) => Err(e),
        None => body::read(&parts.headers, body, live.config.max_body_bytes, timeout).await.map_err(|e| match e {
            BodyError::TooLarge => OAuthError::BODY_TOO_LARGE,
            BodyError::Unreadable => OAuthError::BODY_UNREADABLE,
        }),
    };
    let (outcome, close) = match body {
        Err(error) => {
            let mut outcome = GrantOutcome {
                body: Vec::new(),
                result: Err(error),
                retry_after: None,
                client_id: None,
                grant_type: None,
                username: None,
            };
            live.engine.write_error(&error, &mut outcome.body);
            // The rest of an oversized body was not read (or only thrown
            // away): do not reuse the connection.
            (outcome, error == OAuthError::BODY_TOO_LARGE)
        }
        Ok(body) => {
            let url = match endpoint {
                Endpoint::Token => &live.endpoint_urls[0],
                Endpoint::Revocation => &live.endpoint_urls[1],
                Endpoint::Introspection => &live.endpoint_urls[2],
            };
            let ctx = RequestContext { peer, dpop: dpop_header(&parts.headers), certificate, url };
            let outcome = run(app, live, endpoint, &body, parts.headers.get(AUTHORIZATION), &ctx).await;
            drop::<Zeroizing<Vec<u8>>>(body);
            (outcome, false)
        }
    };
    observe::request(&app.requests, endpoint, &outcome, started.elapsed());
    respond::form(outcome, close)
}

/// The `DPoP` header (RFC 9449 §4.3 item 1: exactly one).
fn dpop_header(headers: &HeaderMap) -> DpopHeader<'_> {
    let mut values = headers.get_all("dpop").iter();
    match (values.next(), values.next()) {
        (None, _) => DpopHeader::None,
        (Some(v), None) => v.to_str().map_or(DpopHeader::Invalid, DpopHeader::One),
        (Some(_), Some(_)) => DpopHeader::Invalid,
    }
}

async fn run(
    app: &App,
    live: &Live,
    endpoint: Endpoint,
    body: &[u8],
    authorization: Option<&HeaderValue>,
    ctx: &RequestContext<'_>,
) -> GrantOutcome {
    let authorization = authorization.map(HeaderValue::as_bytes);
    let grants = app.grants();
    let query = |kind| grants.token_query(live, kind, body, authorization, ctx);
    match endpoint {
        Endpoint::Token => grants.token(live, body, authorization, ctx).await,
        Endpoint::Revocation => query(QueryKind::Revocation).await,
        Endpoint::Introspection => query(QueryKind::Introspection).await,
    }
}
