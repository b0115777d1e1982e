//! HTTP: routing, body reading with limits, and the response headers each
//! endpoint owes (RFC 6749 §5.1: `Cache-Control: no-store`, `Pragma: no-cache`).

use crate::app::{App, Live};
use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, PRAGMA, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use ropc_core::{OAuthError, QueryKind};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

/// The well-known path of RFC 8414 metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

type Body = Full<Bytes>;

/// Routes one request.
/// Which listener a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The main listener: every endpoint (and `/metrics` unless an admin
    /// listener is configured).
    Main,
    /// `[server] admin_listen`: only `/metrics` and `/healthz`.
    Admin,
}

/// Routes one request.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: IpAddr,
    listener: Listener,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let method = req.method().clone();
    // The configuration this request runs on to the end, whatever commits
    // meanwhile.
    let live = app.live();
    let metrics_here = match listener {
        // Listeners are set at start: the start-up config says.
        Listener::Main => app.boot().admin_listen.is_none(),
        Listener::Admin => true,
    };
    if path == "/metrics" && metrics_here {
        return Ok(match method {
            Method::GET | Method::HEAD => {
                let mut r = Response::new(Full::new(Bytes::from(app.render_metrics())));
                r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
                r
            }
            _ => method_not_allowed("GET, HEAD", false),
        });
    }
    if listener == Listener::Admin && path != "/healthz" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found\n"));
    }
    let endpoints = &live.config.endpoints;
    let form = if path == endpoints.token {
        Some(FormEndpoint::Token)
    } else if path == endpoints.revocation {
        Some(FormEndpoint::Revocation)
    } else if path == endpoints.introspection {
        Some(FormEndpoint::Introspection)
    } else {
        None
    };
    let response = if let Some(endpoint) = form {
        if method == Method::POST {
            form_endpoint(&app, &live, req, endpoint, peer).await
        } else {
            method_not_allowed("POST", true)
        }
    } else if path == "/healthz" {
        match method {
            Method::GET | Method::HEAD => healthz(&app).await,
            _ => method_not_allowed("GET, HEAD", false),
        }
    } else if path == live.config.endpoints.jwks && live.jwt.is_some() {
        match (method, &live.jwt) {
            (Method::GET | Method::HEAD, Some(keys)) => json(StatusCode::OK, keys.jwks.clone()),
            _ => method_not_allowed("GET, HEAD", false),
        }
    } else if path == METADATA_PATH {
        match method {
            Method::GET | Method::HEAD => json(StatusCode::OK, live.metadata.clone()),
            _ => method_not_allowed("GET, HEAD", false),
        }
    } else {
        plain(StatusCode::NOT_FOUND, "not found\n")
    };
    Ok(response)
}

async fn healthz(app: &App) -> Response<Body> {
    if app.draining.load(Ordering::Relaxed) {
        plain(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if !app.store_up().await {
        plain(StatusCode::SERVICE_UNAVAILABLE, "token store unavailable\n")
    } else {
        plain(StatusCode::OK, "ok\n")
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn method_not_allowed(allow: &'static str, token_endpoint: bool) -> Response<Body> {
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    if token_endpoint {
        no_store(r.headers_mut());
    }
    r
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
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

enum BodyError {
    TooLarge,
    Unreadable,
}

/// Reads the body, refusing it as soon as it passes `limit` and giving up
/// after the timeout. The buffer is zeroed when dropped: it holds passwords.
async fn read_body(
    app: &App,
    live: &Live,
    headers: &HeaderMap,
    mut body: Incoming,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let limit = live.config.max_body_bytes;
    // Like the head's timeout, set at start.
    let timeout = app.boot().header_read_timeout;
    if let Some(len) = headers.get(CONTENT_LENGTH) {
        let len: u64 = len.to_str().ok().and_then(|s| s.parse().ok()).ok_or(BodyError::Unreadable)?;
        if len > limit as u64 {
            return Err(BodyError::TooLarge);
        }
    }
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Unreadable)?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| BodyError::Unreadable)??;
    Ok(out)
}

/// The three form endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FormEndpoint {
    Token,
    Revocation,
    Introspection,
}

impl FormEndpoint {
    fn name(self) -> &'static str {
        match self {
            FormEndpoint::Token => "token",
            FormEndpoint::Revocation => "revocation",
            FormEndpoint::Introspection => "introspection",
        }
    }
}

async fn form_endpoint(
    app: &App,
    live: &Live,
    req: Request<Incoming>,
    endpoint: FormEndpoint,
    peer: IpAddr,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let early = if !is_form(&parts.headers) {
        Some((StatusCode::BAD_REQUEST, OAuthError::UNSUPPORTED_CONTENT_TYPE))
    } else if parts.headers.get_all(AUTHORIZATION).iter().count() > 1 {
        Some((StatusCode::BAD_REQUEST, OAuthError::DUPLICATE_HEADER))
    } else {
        None
    };
    let (body, early) = match early {
        Some(e) => (Zeroizing::new(Vec::new()), Some(e)),
        None => match read_body(app, live, &parts.headers, body).await {
            Ok(b) => (b, None),
            Err(BodyError::TooLarge) => {
                (Zeroizing::new(Vec::new()), Some((StatusCode::PAYLOAD_TOO_LARGE, OAuthError::BODY_TOO_LARGE)))
            }
            Err(BodyError::Unreadable) => {
                (Zeroizing::new(Vec::new()), Some((StatusCode::BAD_REQUEST, OAuthError::BODY_UNREADABLE)))
            }
        },
    };
    if let Some((status, error)) = early {
        let mut out = Vec::new();
        live.engine.write_error(&error, &mut out);
        let mut r = json(status, out);
        no_store(r.headers_mut());
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read; do not reuse the connection.
            r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let latency = started.elapsed();
        let outcome = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { error.code.as_str() };
        app.requests.record(endpoint.name(), "-", outcome, latency);
        tracing::info!(
            endpoint = endpoint.name(),
            status = status.as_u16(),
            outcome = error.code.as_str(),
            reason = error.reason.as_str(),
            latency_us = latency.as_micros() as u64,
            "request refused before parsing"
        );
        return r;
    }
    let authorization = parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
    let outcome = match endpoint {
        FormEndpoint::Token => app.token(live, &body, authorization, peer).await,
        FormEndpoint::Revocation => app.token_query(live, QueryKind::Revocation, &body, authorization, peer).await,
        FormEndpoint::Introspection => {
            app.token_query(live, QueryKind::Introspection, &body, authorization, peer).await
        }
    };
    drop(body);
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json(status, outcome.body);
    no_store(r.headers_mut());
    if let Some(e) = &outcome.error {
        if let Some(challenge) = e.www_authenticate() {
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
    }
    if let Some(secs) = outcome.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    let latency = started.elapsed();
    let latency_us = latency.as_micros() as u64;
    let label = match &outcome.error {
        None => outcome.label,
        Some(e) if e.status() == 429 => "too_many_failures",
        Some(e) => e.code.as_str(),
    };
    app.requests.record(endpoint.name(), outcome.grant_type.unwrap_or("-"), label, latency);
    let client = outcome.client_id.as_deref().unwrap_or("-");
    let grant = outcome.grant_type.unwrap_or("-");
    let user = outcome.username.as_deref().unwrap_or("-");
    // Audit events: logins (password grants) and revocations.
    let event = match (endpoint, grant, &outcome.error) {
        (FormEndpoint::Token, "password", None) => "login_success",
        (FormEndpoint::Token, "password", Some(_)) => "login_failure",
        (FormEndpoint::Revocation, _, None) => "revocation",
        _ => "request",
    };
    let endpoint = endpoint.name();
    match &outcome.error {
        None => tracing::info!(
            event,
            endpoint,
            client = ?client,
            grant,
            user = ?user,
            status = status.as_u16(),
            outcome = outcome.label,
            latency_us
        ),
        Some(e) => tracing::info!(
            event,
            endpoint,
            client = ?client,
            grant,
            user = ?user,
            status = status.as_u16(),
            outcome = e.code.as_str(),
            reason = e.reason.as_str(),
            latency_us
        ),
    }
    r
}
