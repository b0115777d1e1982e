//! Demo mode: `ropc serve` with no config, as a new user runs it.

use crate::support::{request, ropc, spawn, wait_for};
use http::Method;
use std::time::Duration;

fn value(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in:\n{stdout}"))
        .trim()
        .to_owned()
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // a shared guard: keeps timing tests off while the demo hashes
async fn demo_mode_serves_the_printed_curl() {
    let _cpu = crate::support::shared();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ropc();
    cmd.arg("serve");
    let (mut child, stdout, _logs) = spawn(cmd, dir.path());
    wait_for(&stdout, "Get a token", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(100));
    let out = stdout.lock().unwrap().clone();
    assert!(out.contains("ropc listening on https://127.0.0.1:8443"), "{out}");
    let secret = value(&out, "client_secret");
    let password = value(&out, "password");
    let curl = out.lines().skip_while(|l| !l.trim_start().starts_with("curl ")).take(3).collect::<String>();
    assert!(curl.contains("--cacert ropc-demo/self-signed-cert.pem"), "{curl}");
    assert!(curl.contains("https://localhost:8443/oauth/v2/oauth-token"), "{curl}");
    assert!(curl.contains(&format!("client_secret={secret}")) && curl.contains(&format!("password={password}")));

    let ca = dir.path().join("ropc-demo/self-signed-cert.pem");
    let body = format!(
        "grant_type=password&client_id=legacy&client_secret={secret}&username=demo&password={password}&scope=read"
    );
    let addr = "127.0.0.1:8443".parse().unwrap();
    let r = request(addr, Some((&ca, "localhost")), Method::POST, "/oauth/v2/oauth-token", &body, &[], true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let json = r.json();
    assert_eq!(json["token_type"], "bearer");
    assert_eq!(json["scope"], "read");
    assert!(json["refresh_token"].is_string());
    let r = request(
        addr,
        Some((&ca, "localhost")),
        Method::POST,
        "/oauth/v2/oauth-token",
        &body.replace(&password, "wrong"),
        &[],
        true,
    )
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".into()));
    let _ = child.kill();
    let _ = child.wait();

    // A second start reuses the files: same secret, same certificate.
    let cert_before = std::fs::read(&ca).unwrap();
    let mut cmd = ropc();
    cmd.arg("serve");
    let (mut child, stdout, _logs) = spawn(cmd, dir.path());
    wait_for(&stdout, "Get a token", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(100));
    let out = stdout.lock().unwrap().clone();
    assert_eq!(value(&out, "client_secret"), secret);
    assert_eq!(std::fs::read(&ca).unwrap(), cert_before);
    let r = request(addr, Some((&ca, "localhost")), Method::POST, "/oauth/v2/oauth-token", &body, &[], true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let _ = child.kill();
    let _ = child.wait();
}
