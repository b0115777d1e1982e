//! The memory store's write-ahead log: refresh tokens survive `kill -9`.

use crate::support::{s, standard_config, standard_users, Reply, Server};
use std::time::Duration;

const ALICE: &str = "grant_type=password&username=alice&password=wonderland";

async fn refresh(server: &Server, rt: &str) -> Reply {
    crate::support::refresh(server, "legacy", "legacy-secret", rt).await
}

#[tokio::test]
async fn refresh_tokens_rotations_and_revocations_survive_kill_9() {
    let server = Server::start(&standard_config(""), &standard_users());
    let first = server.token_basic("legacy", "legacy-secret", ALICE).await.json();
    let rotated = refresh(&server, &s(&first, "refresh_token")).await.json();
    let doomed = server.token_basic("legacy", "legacy-secret", ALICE).await.json();
    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    let r = server
        .post("/oauth/v2/oauth-revoke", &format!("token={}", s(&doomed, "refresh_token")), &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, 200);
    let other = server.token_basic("legacy", "legacy-secret", ALICE).await.json();

    let server = Server::start_in(server.kill9());
    assert!(server.log_shows("token log replayed"));
    // The live refresh token works, with its scope.
    let r = refresh(&server, &s(&other, "refresh_token")).await;
    assert_eq!((r.status, r.json()["scope"].as_str()), (200, Some("read")), "{}", r.body);
    // A revoked one stays revoked.
    assert_eq!(refresh(&server, &s(&doomed, "refresh_token")).await.status, 400);
    // The rotation is remembered: replaying the retired token is theft, and
    // kills the family, the token it was rotated into included.
    let replay = refresh(&server, &s(&first, "refresh_token")).await;
    assert_eq!((replay.status, replay.error()), (400, "invalid_grant".to_owned()));
    assert_eq!(refresh(&server, &s(&rotated, "refresh_token")).await.status, 400);
    // Access tokens live in memory only.
    let r = server
        .post(
            "/oauth/v2/oauth-introspect",
            &format!("token={}", s(&other, "access_token")),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.json()["active"], false);
}

#[tokio::test]
async fn every_refresh_token_a_client_received_survives_a_kill_9_under_load() {
    let server = Server::start(&standard_config(""), &standard_users());
    let addr = server.addr;
    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    let mut loops = Vec::new();
    for _ in 0..8 {
        let auth = auth.clone();
        loops.push(tokio::spawn(async move {
            let mut received = Vec::new();
            loop {
                let headers = [("authorization", auth.as_str())];
                let r = tokio::time::timeout(
                    Duration::from_secs(5),
                    crate::support::try_request(addr, http::Method::POST, "/oauth/v2/oauth-token", ALICE, &headers),
                )
                .await;
                match r {
                    Ok(Some(r)) if r.status == 200 => received.push(s(&r.json(), "refresh_token")),
                    Ok(Some(r)) => panic!("{} {}", r.status, r.body),
                    _ => return received, // the server is gone
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let dir = server.kill9();
    let mut received = Vec::new();
    for l in loops {
        received.extend(l.await.unwrap());
    }
    assert!(received.len() > 20, "only {} logins before the kill", received.len());
    let server = Server::start_in(dir);
    for rt in &received {
        let r = refresh(&server, rt).await;
        assert_eq!(r.status, 200, "a refresh token the client received was lost: {}", r.body);
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_log_refuses_to_start() {
    let server = Server::start(&standard_config(""), &standard_users());
    let out = crate::support::ropc()
        .arg("serve")
        .arg("--config")
        .arg(server.dir.path().join("ropc.toml"))
        .current_dir(server.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("another ropc process uses this token log"), "{stderr}");
    // The first one is unharmed.
    assert_eq!(server.token_basic("legacy", "legacy-secret", ALICE).await.status, 200);
}
