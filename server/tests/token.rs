//! The token endpoint end to end: every grant, both client authentication
//! methods, every RFC 6749 §5.2 error, scopes, refresh binding.

use crate::support::{standard_config, standard_users, Server};
use serde_json::Value;

const PW: &str = "grant_type=password&username=alice&password=wonderland";

fn assert_token_headers(r: &crate::support::Reply) {
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    assert_eq!(r.header("pragma"), Some("no-cache"), "{r:?}");
    assert!(r.header("content-type").unwrap_or("").starts_with("application/json"), "{r:?}");
}

fn assert_tokens(json: &Value, scope: &str, refresh: bool) {
    let at = json["access_token"].as_str().expect("access_token");
    assert_eq!(at.len(), 43, "256-bit base64url token");
    assert_eq!(json["token_type"], "bearer");
    assert_eq!(json["expires_in"], 300);
    assert_eq!(json["scope"], scope);
    assert_eq!(json.get("refresh_token").is_some(), refresh, "{json}");
}

#[tokio::test]
async fn token_endpoint_contract() {
    let server = Server::start(&standard_config(""), &standard_users());

    // Password grant, secret in the body, default scope.
    let r = server.token(&format!("{PW}&client_id=legacy&client_secret=legacy-secret")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_token_headers(&r);
    let first = r.json();
    assert_tokens(&first, "read", true);

    // Password grant with HTTP Basic; scope narrowed to what the client may have.
    let r = server.token_basic("legacy", "legacy-secret", &format!("{PW}&scope=write+admin")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_tokens(&r.json(), "write", true);
    let r = server.token_basic("legacy", "legacy-secret", &format!("{PW}&scope=write%20read")).await;
    assert_tokens(&r.json(), "read write", true);

    // A non-ASCII username and a password with a colon and a space.
    let r = server
        .token_basic(
            "legacy",
            "legacy-secret",
            "grant_type=password&username=j%C3%B6rg&password=p%C3%A4ssw%C3%B6rd%3A+with+space",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A client without refresh_token gets no refresh token.
    let r = server.token_basic("norefresh", "norefresh-secret", PW).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_tokens(&r.json(), "read", false);

    // Client credentials: no refresh token (RFC 6749 §4.4.3).
    let r = server.token_basic("machine", "machine-secret", "grant_type=client_credentials&scope=admin").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_tokens(&r.json(), "admin", false);
    let r = server.token("grant_type=client_credentials&client_id=machine&client_secret=machine-secret").await;
    assert_tokens(&r.json(), "read", false);

    // Refresh: rotation returns a new refresh token and retires the old one.
    let rt = first["refresh_token"].as_str().unwrap().to_owned();
    let r =
        server.token_basic("legacy", "legacy-secret", &format!("grant_type=refresh_token&refresh_token={rt}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_token_headers(&r);
    let refreshed = r.json();
    assert_tokens(&refreshed, "read", true);
    assert_ne!(refreshed["refresh_token"], first["refresh_token"]);
    // Presenting the rotated token again is a replay (see lifecycle.rs).
    let r =
        server.token_basic("legacy", "legacy-secret", &format!("grant_type=refresh_token&refresh_token={rt}")).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".into()));
    assert!(server.log_shows("reason=\"refresh_token_reuse\""));

    // Refresh may narrow the scope, never widen it.
    let r = server.token_basic("other", "other-secret", PW).await;
    let wide = r.json();
    assert_tokens(&wide, "read write", true);
    let rt = wide["refresh_token"].as_str().unwrap().to_owned();
    let r = server
        .token_basic("other", "other-secret", &format!("grant_type=refresh_token&refresh_token={rt}&scope=admin"))
        .await;
    assert_eq!((r.status, r.error()), (400, "invalid_scope".into()));
    let r = server
        .token_basic("other", "other-secret", &format!("grant_type=refresh_token&refresh_token={rt}&scope=write"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let narrowed = r.json();
    assert_tokens(&narrowed, "write", true);

    // Another client's refresh token is invalid_grant (RFC 6749 §6).
    let rt = narrowed["refresh_token"].as_str().unwrap();
    let r =
        server.token_basic("legacy", "legacy-secret", &format!("grant_type=refresh_token&refresh_token={rt}")).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".into()));
    // ...and it still works for its own client afterwards.
    let r = server.token_basic("other", "other-secret", &format!("grant_type=refresh_token&refresh_token={rt}")).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // An access token is not a refresh token. (`first`'s family was revoked
    // by the replay above, so take a live one.)
    let at = narrowed["access_token"].as_str().unwrap();
    let r =
        server.token_basic("legacy", "legacy-secret", &format!("grant_type=refresh_token&refresh_token={at}")).await;
    assert_eq!(r.error(), "invalid_grant");

    // Logs say what happened and never carry a secret.
    assert!(server.log_shows("reason=\"not_a_refresh_token\""), "{}", server.logs());
    let logs = server.logs();
    for secret in ["legacy-secret", "wonderland", at, rt] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}

#[tokio::test]
async fn every_error_code() {
    let server = Server::start(&standard_config(""), &standard_users());
    let body = |rest: &str| format!("{rest}&client_id=legacy&client_secret=legacy-secret");
    // (request body, Basic credentials, status, error, reason in the log)
    type Case<'a> = (String, Option<(&'a str, &'a str)>, u16, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (body("grant_type=password&username=alice"), None, 400, "invalid_request", "malformed_request"),
        (
            body("grant_type=password&username=alice&username=bob&password=x"),
            None,
            400,
            "invalid_request",
            "duplicate_parameter",
        ),
        (body("grant_type=password&username=alice&password=%zz"), None, 400, "invalid_request", "malformed_request"),
        (
            format!("{PW}&client_secret=x"),
            Some(("legacy", "legacy-secret")),
            400,
            "invalid_request",
            "multiple_client_authentication",
        ),
        (PW.into(), None, 400, "invalid_client", "no_client_authentication"),
        (format!("{PW}&client_id=legacy&client_secret=wrong"), None, 400, "invalid_client", "bad_client_secret"),
        (format!("{PW}&client_id=nobody&client_secret=x"), None, 400, "invalid_client", "unknown_client"),
        (PW.into(), Some(("legacy", "wrong")), 401, "invalid_client", "bad_client_secret"),
        (PW.into(), Some(("nobody", "x")), 401, "invalid_client", "unknown_client"),
        (body("grant_type=password&username=alice&password=nope"), None, 400, "invalid_grant", "wrong_password"),
        (body("grant_type=password&username=mallory&password=nope"), None, 400, "invalid_grant", "unknown_user"),
        (
            body("grant_type=refresh_token&refresh_token=not-a-token"),
            None,
            400,
            "invalid_grant",
            "unknown_refresh_token",
        ),
        (body("grant_type=client_credentials"), None, 400, "unauthorized_client", "missing_capability"),
        (PW.into(), Some(("machine", "machine-secret")), 400, "unauthorized_client", "missing_capability"),
        (body("grant_type=authorization_code&code=x"), None, 400, "unsupported_grant_type", "unsupported_grant_type"),
        (body(&format!("{PW}&scope=admin")), None, 400, "invalid_scope", "scope_refused"),
        (body(&format!("{PW}&scope=read++write")), None, 400, "invalid_scope", "scope_refused"),
    ];
    for (body, basic, status, error, reason) in &cases {
        let r = match basic {
            Some((id, secret)) => server.token_basic(id, secret, body).await,
            None => server.token(body).await,
        };
        assert_eq!((r.status, r.error().as_str()), (*status, *error), "{body} {basic:?}: {}", r.body);
        let description = r.json()["error_description"].as_str().map(str::to_owned);
        assert!(description.is_some(), "detailed errors are on by default");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let challenge = r.header("www-authenticate");
        assert_eq!(challenge.is_some(), *status == 401, "{body}: {challenge:?}");
        if let Some(c) = challenge {
            assert!(c.starts_with("Basic realm="), "{c}");
        }
        assert!(server.log_shows(&format!("reason=\"{reason}\"")), "no {reason} in logs:\n{}", server.logs());
    }

    // Wrong password and unknown user answer with the same bytes.
    let wrong = server.token(&body("grant_type=password&username=alice&password=nope")).await;
    let unknown = server.token(&body("grant_type=password&username=mallory&password=nope")).await;
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));

    // HTTP-level refusals.
    let r = server.post("/oauth/v2/oauth-token", PW, &[("content-type", "application/json")]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_request".into()));
    let r = server.get("/oauth/v2/oauth-token").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let big = format!("{PW}&junk={}", "x".repeat(9000));
    let r = server.token(&big).await;
    assert_eq!((r.status, r.error()), (413, "invalid_request".into()));
    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    let r = server.post("/oauth/v2/oauth-token", PW, &[("authorization", &auth), ("authorization", &auth)]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_request".into()));
    assert_eq!(server.get("/nowhere").await.status, 404);
    assert_eq!(server.get("/healthz").await.status, 200);
    let meta = server.get("/.well-known/oauth-authorization-server").await.json();
    assert_eq!(meta["token_endpoint"], format!("http://{}/oauth/v2/oauth-token", server.addr));
    assert_eq!(meta["grant_types_supported"], serde_json::json!(["password", "refresh_token", "client_credentials"]));
    assert_eq!(meta["scopes_supported"], serde_json::json!(["read", "write", "admin"]));
}

#[tokio::test]
async fn detailed_errors_switch() {
    let server = Server::start(&standard_config("detailed_errors = false"), &standard_users());
    let r = server.token_basic("legacy", "legacy-secret", "grant_type=password&username=alice&password=nope").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, r#"{"error":"invalid_grant"}"#);
    let r = server.token_basic("legacy", "wrong", PW).await;
    assert_eq!((r.status, r.body.as_str()), (401, r#"{"error":"invalid_client"}"#));
    // The operator still learns the reason from the log.
    assert!(server.log_shows("reason=\"wrong_password\""));
}

#[tokio::test]
async fn graceful_shutdown_exits_zero() {
    let server = Server::start(&standard_config(""), &standard_users());
    assert_eq!(server.get("/healthz").await.status, 200);
    let logs = std::sync::Arc::clone(&server.logs);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    // The log pipe may still be draining into the reader thread.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !logs.lock().unwrap().contains("stopped") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let logs = logs.lock().unwrap().clone();
    assert!(logs.contains("shutting down") && logs.contains("stopped"), "{logs}");
    assert!(!logs.contains("WARN"), "the drain was not clean: {logs}");
}

/// A server on the standard config with TLS from certificate files in
/// `dir` (any PEM chain and key will do: the self-signed generator's);
/// returns it and the certificate, for the client to trust.
fn tls_server(dir: &std::path::Path) -> (Server, std::path::PathBuf) {
    let cert = ropc_server::tls::ensure_self_signed(dir).unwrap();
    let config = standard_config("").replace(
        "tls = \"off\"",
        &format!("tls = {{ cert = \"{}\", key = \"{}\" }}", cert.display(), dir.join("self-signed-key.pem").display()),
    );
    (Server::start_with_listen_prefix(&config, &standard_users(), "ropc listening on https://"), cert)
}

#[tokio::test]
async fn tls_with_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = tls_server(dir.path());
    let body = format!("{PW}&client_id=legacy&client_secret=legacy-secret");
    let r = crate::support::request(
        server.addr,
        Some((&cert, "localhost")),
        http::Method::POST,
        "/oauth/v2/oauth-token",
        &body,
        &[],
        true,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_tokens(&r.json(), "read", true);
}

/// A connection whose TLS handshake fails (here: plain HTTP on the TLS
/// port) leaves `ropc_open_connections` as it found it.
#[tokio::test]
async fn a_failed_tls_handshake_leaves_no_open_connection_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = tls_server(dir.path());
    for _ in 0..3 {
        let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        plain.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        // The server gives up on the handshake and closes.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), plain.read_to_end(&mut rest)).await;
    }
    // Only the scrape's own connection is open (the closed ones are
    // uncounted as soon as the server sees them end).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = crate::support::request(
            server.addr,
            Some((&cert, "localhost")),
            http::Method::GET,
            "/metrics",
            "",
            &[],
            false,
        )
        .await;
        let open = crate::support::sample(&m.body, "ropc_open_connections");
        if open == Some(1.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ropc_open_connections {open:?} after 3 failed handshakes");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = standard_config("").replace("tls = \"off\"", "tls = \"off\"\nheader_read_timeout = 1");
    let server = Server::start(&config, &standard_users());
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"POST /oauth/v2/oauth-token HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // The server must close the connection by itself, well before 10 s.
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 10 s");
    let waited = started.elapsed();
    assert!(waited >= std::time::Duration::from_millis(900), "closed too early: {waited:?}");
    // Still serving others.
    assert_eq!(server.get("/healthz").await.status, 200);
}

/// A client that writes a whole oversized body before it reads (as
/// Python's http.client and curl do) reads the `413`: the server reads
/// and throws away the rest of the body before it closes, instead of
/// resetting the connection under the answer. 1 MiB, Content-Length and
/// chunked, 20 times each; and a client that asked `Expect: 100-continue`
/// gets the `413` without sending its body at all.
#[test]
fn a_client_that_sends_a_1_mib_body_reads_the_413() {
    use std::io::{Read, Write};
    let server = Server::start(&standard_config(""), &standard_users());
    let body = format!("grant_type=password&username=alice&password={}", "x".repeat(1 << 20));
    let send = |head: &str, body: &[u8]| -> String {
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let form = "Content-Type: application/x-www-form-urlencoded\r\nAuthorization: Basic bGVnYWN5OmxlZ2FjeS1zZWNyZXQ=";
    for round in 0..20 {
        let head = format!(
            "POST /oauth/v2/oauth-token HTTP/1.1\r\nHost: x\r\n{form}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let answer = send(&head, body.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 413"), "round {round}: {answer:.200}");
        assert!(answer.contains("invalid_request") && answer.contains("connection: close"), "{answer}");
        let head =
            format!("POST /oauth/v2/oauth-token HTTP/1.1\r\nHost: x\r\n{form}\r\nTransfer-Encoding: chunked\r\n\r\n");
        let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
        let answer = send(&head, chunked.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 413"), "round {round}, chunked: {answer:.200}");
    }
    let head = format!(
        "POST /oauth/v2/oauth-token HTTP/1.1\r\nHost: x\r\n{form}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    let answer = send(&head, b"");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "the body was never asked for: {answer}");
}
