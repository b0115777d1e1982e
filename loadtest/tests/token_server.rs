//! A tiny token endpoint on hyper, in the test process, on an ephemeral
//! port: enough OAuth to check what the load generator sends.
//!
//! - `client_credentials`: a token;
//! - `password`: `userK` with password `pass-K`; user3 (and every user K
//!   with K % 4 == 3) is refused with `invalid_grant`;
//! - `refresh_token`: rotation, strictly: each refresh token works once, so
//!   a load generator that reuses an old one gets `invalid_grant`;
//! - `/introspect`: `{"active": true}` for a token it issued.
//!
//! Every request must authenticate the client `lt` / `secret-lt`, by Basic or
//! in the body.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

pub const CLIENT_ID: &str = "lt";
pub const CLIENT_SECRET: &str = "secret-lt";
/// `Basic base64("lt:secret-lt")`.
const BASIC: &str = "Basic bHQ6c2VjcmV0LWx0";

#[derive(Default)]
struct State {
    next: AtomicU64,
    live_refresh: Mutex<HashSet<String>>,
    issued_access: Mutex<HashSet<String>>,
}

/// Starts the server; returns its address.
pub async fn start() -> SocketAddr {
    start_recording_peers().await.0
}

/// Starts the server; returns its address and the list of the peer
/// addresses of the connections it accepted, which it keeps up to date.
pub async fn start_recording_peers() -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let state = Arc::new(State::default());
    let peers = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&peers);
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            recorded.lock().expect("lock").push(peer);
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(Arc::clone(&state), req));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, peers)
}

fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace('+', " ").replace("%2B", "+")))
        .collect()
}

fn json(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
    response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
    response
}

fn error(status: u16, code: &str) -> Response<Full<Bytes>> {
    json(status, format!(r#"{{"error":"{code}","error_description":"test"}}"#))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let basic = req.headers().get("authorization").map(|v| v.as_bytes().to_vec());
    let path = req.uri().path().to_owned();
    let Ok(body) = req.into_body().collect().await else {
        return Ok(error(400, "invalid_request"));
    };
    let f = form(&body.to_bytes());
    let authenticated = match basic {
        Some(value) => value == BASIC.as_bytes() && !f.contains_key("client_id"),
        None => {
            f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
                && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
        }
    };
    if !authenticated {
        return Ok(error(401, "invalid_client"));
    }
    let n = state.next.fetch_add(1, Ordering::Relaxed);
    if path == "/introspect" {
        let known = f.get("token").is_some_and(|t| state.issued_access.lock().expect("lock").contains(t));
        return Ok(json(200, format!(r#"{{"active":{known}}}"#)));
    }
    let access = format!("a{n}");
    state.issued_access.lock().expect("lock").insert(access.clone());
    let with_refresh = |refresh: String| {
        state.live_refresh.lock().expect("lock").insert(refresh.clone());
        json(
            200,
            format!(
                r#"{{"access_token":"{access}","token_type":"bearer","expires_in":300,"refresh_token":"{refresh}"}}"#
            ),
        )
    };
    let response = match f.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            json(200, format!(r#"{{"access_token":"{access}","token_type":"bearer","expires_in":300}}"#))
        }
        Some("password") => {
            let user = f.get("username").and_then(|u| u.strip_prefix("user"));
            let password = f.get("password").and_then(|p| p.strip_prefix("pass-"));
            match (user.and_then(|u| u.parse::<u64>().ok()), password) {
                (Some(k), Some(p)) if p == k.to_string() && k % 4 != 3 => with_refresh(format!("r{n}")),
                _ => error(400, "invalid_grant"),
            }
        }
        Some("refresh_token") => {
            let presented = f.get("refresh_token").cloned().unwrap_or_default();
            if state.live_refresh.lock().expect("lock").remove(&presented) {
                with_refresh(format!("r{n}"))
            } else {
                error(400, "invalid_grant")
            }
        }
        _ => error(400, "unsupported_grant_type"),
    };
    Ok(response)
}
