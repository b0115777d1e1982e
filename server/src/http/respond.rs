//! Responses: the headers each endpoint owes (RFC 6749 §5.1:
//! `Cache-Control: no-store`, `Pragma: no-cache` on everything the token
//! endpoints answer).

use crate::grant::GrantOutcome;
use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

/// Every response body.
pub type Body = Full<Bytes>;

/// A plain-text response.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// A JSON response.
pub fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `405` with the methods allowed; `token_endpoint`: with the no-store
/// headers.
pub fn method_not_allowed(allow: &'static str, token_endpoint: bool) -> Response<Body> {
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

/// The response of a form endpoint: its JSON, the no-store headers, the
/// challenge of a `401`, `Retry-After`, and `Connection: close` when the
/// request's body was not read whole.
pub fn form(outcome: GrantOutcome, close: bool) -> Response<Body> {
    let status = StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let challenge = outcome.result.as_ref().err().and_then(|e| e.www_authenticate());
    let mut r = json(status, outcome.body);
    let headers = r.headers_mut();
    no_store(headers);
    if let Some(challenge) = challenge {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    if let Some(secs) = outcome.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    r
}
