//! Token lifecycle over HTTP: rotation with reuse detection, revocation
//! (RFC 7009), introspection (RFC 7662), metadata (RFC 8414), expiry.

use crate::support::{refresh, s, standard_config, standard_users, Reply, Server};
use serde_json::Value;

const LOGIN: &str = "grant_type=password&username=alice&password=wonderland&scope=read+write";

async fn login(server: &Server, client: &str, secret: &str) -> Value {
    let r = server.token_basic(client, secret, LOGIN).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

async fn introspect(server: &Server, token: &str) -> Value {
    let auth = ropc_core::basic::encode("machine", "machine-secret");
    let r = server.post("/oauth/v2/oauth-introspect", &format!("token={token}"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()
}

async fn revoke(server: &Server, client: &str, secret: &str, body: &str) -> Reply {
    let auth = ropc_core::basic::encode(client, secret);
    server.post("/oauth/v2/oauth-revoke", body, &[("authorization", &auth)]).await
}

#[tokio::test]
async fn replaying_a_rotated_refresh_token_kills_its_descendants() {
    let server = Server::start(&standard_config(""), &standard_users());
    let first = login(&server, "legacy", "legacy-secret").await;
    let r = refresh(&server, "legacy", "legacy-secret", &s(&first, "refresh_token")).await;
    let second = r.json();
    let r = refresh(&server, "legacy", "legacy-secret", &s(&second, "refresh_token")).await;
    let third = r.json();
    assert_eq!(introspect(&server, &s(&third, "access_token")).await["active"], true);

    // The thief replays the first refresh token.
    let r = refresh(&server, "legacy", "legacy-secret", &s(&first, "refresh_token")).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".into()));
    assert!(server.log_shows("reason=\"refresh_token_reuse\""), "{}", server.logs());
    assert!(server.log_shows("event=\"refresh_token_reuse\""), "an audit line is written");

    // Every token of that login is dead now, the newest included.
    let r = refresh(&server, "legacy", "legacy-secret", &s(&third, "refresh_token")).await;
    assert_eq!(r.error(), "invalid_grant");
    for t in [&first, &second, &third] {
        assert_eq!(introspect(&server, &s(t, "access_token")).await, serde_json::json!({"active": false}));
    }
    // Another login of the same user is untouched.
    let other = login(&server, "legacy", "legacy-secret").await;
    assert_eq!(refresh(&server, "legacy", "legacy-secret", &s(&other, "refresh_token")).await.status, 200);
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_yield_one_winner() {
    let server = Server::start(&standard_config(""), &standard_users());
    for _ in 0..5 {
        let tokens = login(&server, "legacy", "legacy-secret").await;
        let rt = s(&tokens, "refresh_token");
        let (a, b) = tokio::join!(
            refresh(&server, "legacy", "legacy-secret", &rt),
            refresh(&server, "legacy", "legacy-secret", &rt)
        );
        let winners: Vec<&Reply> = [&a, &b].into_iter().filter(|r| r.status == 200).collect();
        assert_eq!(winners.len(), 1, "{} / {}", a.body, b.body);
        let loser = if a.status == 200 { &b } else { &a };
        assert_eq!(loser.error(), "invalid_grant");
        // The loser was a replay: the family, the winner's tokens included, is revoked.
        let new_rt = s(&winners[0].json(), "refresh_token");
        assert_eq!(refresh(&server, "legacy", "legacy-secret", &new_rt).await.error(), "invalid_grant");
    }
}

#[tokio::test]
async fn grace_window_accepts_a_lost_response_retry() {
    let server = Server::start(&standard_config("refresh_reuse_grace = 30"), &standard_users());
    let first = login(&server, "legacy", "legacy-secret").await;
    let rt = s(&first, "refresh_token");
    assert_eq!(refresh(&server, "legacy", "legacy-secret", &rt).await.status, 200);
    let retry = refresh(&server, "legacy", "legacy-secret", &rt).await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(refresh(&server, "legacy", "legacy-secret", &s(&retry.json(), "refresh_token")).await.status, 200);
}

#[tokio::test]
async fn revocation_rules() {
    let server = Server::start(&standard_config(""), &standard_users());
    let tokens = login(&server, "legacy", "legacy-secret").await;
    let (at, rt) = (s(&tokens, "access_token"), s(&tokens, "refresh_token"));

    // Another client cannot revoke it: 200, and nothing happens (RFC 7009 §2.2).
    let r = revoke(&server, "other", "other-secret", &format!("token={rt}&token_type_hint=refresh_token")).await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(introspect(&server, &at).await["active"], true);
    assert!(server.log_shows("outcome=\"nothing_revoked\""));

    // Client authentication is required; a wrong secret is 401 with Basic.
    let r = server.post("/oauth/v2/oauth-revoke", &format!("token={at}"), &[]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_client".into()));
    let r = revoke(&server, "legacy", "wrong", &format!("token={at}")).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client".into()));
    assert!(r.header("www-authenticate").is_some());
    let r = revoke(&server, "legacy", "legacy-secret", "token_type_hint=access_token").await;
    assert_eq!((r.status, r.error()), (400, "invalid_request".into()));
    assert_eq!(server.get("/oauth/v2/oauth-revoke").await.status, 405);

    // Unknown and malformed tokens: 200.
    assert_eq!(revoke(&server, "legacy", "legacy-secret", "token=nonsense").await.status, 200);
    let unknown = "A".repeat(43);
    assert_eq!(revoke(&server, "legacy", "legacy-secret", &format!("token={unknown}")).await.status, 200);

    // Revoking an access token kills only it; the hint is not trusted.
    let r = revoke(&server, "legacy", "legacy-secret", &format!("token={at}&token_type_hint=refresh_token")).await;
    assert_eq!(r.status, 200);
    assert_eq!(introspect(&server, &at).await["active"], false);
    let r = refresh(&server, "legacy", "legacy-secret", &rt).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let refreshed = r.json();

    // Revoking the refresh token revokes the grant: its access tokens too.
    let rt2 = s(&refreshed, "refresh_token");
    let at2 = s(&refreshed, "access_token");
    assert_eq!(introspect(&server, &at2).await["active"], true);
    let r = revoke(&server, "legacy", "legacy-secret", &format!("token={rt2}&token_type_hint=access_token")).await;
    assert_eq!(r.status, 200);
    assert_eq!(introspect(&server, &at2).await["active"], false);
    assert_eq!(refresh(&server, "legacy", "legacy-secret", &rt2).await.error(), "invalid_grant");
    // Revoking again is still 200.
    assert_eq!(revoke(&server, "legacy", "legacy-secret", &format!("token={rt2}")).await.status, 200);
    assert!(server.log_shows("outcome=\"revoked_grant\""));
}

#[tokio::test]
async fn introspection_response() {
    let server = Server::start(&standard_config(""), &standard_users());
    let tokens = login(&server, "legacy", "legacy-secret").await;
    let at = s(&tokens, "access_token");
    let v = introspect(&server, &at).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "read write");
    assert_eq!(v["client_id"], "legacy");
    assert_eq!(v["username"], "alice");
    assert_eq!(v["sub"], "alice");
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["iss"], format!("http://{}", server.addr));
    let (iat, exp) = (v["iat"].as_u64().unwrap(), v["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, 300);

    // Client credentials tokens have the client as subject and no username.
    let r = server.token_basic("machine", "machine-secret", "grant_type=client_credentials").await;
    let v = introspect(&server, &s(&r.json(), "access_token")).await;
    assert_eq!((v["sub"].as_str(), v.get("username")), (Some("machine"), None));

    // A refresh token is active only to the client it was issued to.
    let rt = s(&tokens, "refresh_token");
    assert_eq!(introspect(&server, &rt).await, serde_json::json!({"active": false}));
    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    let r = server.post("/oauth/v2/oauth-introspect", &format!("token={rt}"), &[("authorization", &auth)]).await;
    assert_eq!((r.json()["active"].as_bool(), r.json()["token_type"].as_str()), (Some(true), Some("refresh_token")));

    // Unknown tokens are inactive; client authentication is required.
    assert_eq!(introspect(&server, "garbage").await, serde_json::json!({"active": false}));
    let r = server.post("/oauth/v2/oauth-introspect", &format!("token={at}"), &[]).await;
    assert_eq!(r.error(), "invalid_client");
}

#[tokio::test]
async fn metadata_lists_every_endpoint() {
    let server = Server::start(&standard_config(""), &standard_users());
    let m = server.get("/.well-known/oauth-authorization-server").await.json();
    let base = format!("http://{}", server.addr);
    assert_eq!(m["issuer"], base);
    assert_eq!(m["token_endpoint"], format!("{base}/oauth/v2/oauth-token"));
    assert_eq!(m["revocation_endpoint"], format!("{base}/oauth/v2/oauth-revoke"));
    assert_eq!(m["introspection_endpoint"], format!("{base}/oauth/v2/oauth-introspect"));
    // Without [server] client_ca_file the TLS methods cannot work: not listed.
    let methods =
        serde_json::json!(["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"]);
    for k in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ] {
        assert_eq!(m[k], methods, "{k}");
    }
    assert_eq!(m["grant_types_supported"], serde_json::json!(["password", "refresh_token", "client_credentials"]));
    assert_eq!(
        m["token_endpoint_auth_signing_alg_values_supported"],
        serde_json::json!(["RS256", "PS256", "ES256", "EdDSA", "HS256"])
    );
    assert_eq!(m["dpop_signing_alg_values_supported"], serde_json::json!(["ES256", "RS256", "PS256", "EdDSA"]));
    assert_eq!(m["tls_client_certificate_bound_access_tokens"], false);
}

#[tokio::test]
async fn tokens_stop_working_at_expiry() {
    let config = standard_config("")
        .replace("access_token_ttl = 300", "access_token_ttl = 2")
        .replace("refresh_token_ttl = 3600", "refresh_token_ttl = 2");
    let server = Server::start(&config, &standard_users());
    let tokens = login(&server, "legacy", "legacy-secret").await;
    assert_eq!(tokens["expires_in"], 2);
    let at = s(&tokens, "access_token");
    let v = introspect(&server, &at).await;
    assert_eq!(v["active"], true);
    let exp = v["exp"].as_u64().unwrap();
    // Wait until the wall clock reaches `exp`: from then on nothing works.
    loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        if now >= exp {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(introspect(&server, &at).await["active"], false);
    let r = refresh(&server, "legacy", "legacy-secret", &s(&tokens, "refresh_token")).await;
    assert_eq!(r.error(), "invalid_grant");
    assert!(server.log_shows("reason=\"expired_refresh_token\""), "{}", server.logs());
}
