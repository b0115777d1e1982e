//! JWT access tokens (RFC 9068), verified with nothing but the JWKS the
//! server publishes.

use crate::support::{standard_config, standard_users, Server};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};
use serde_json::Value;

fn b64url(s: &str) -> Vec<u8> {
    let std: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let mut out = vec![0u8; s.len()];
    let n = ropc_core::base64::decode_standard(std.as_bytes(), &mut out).expect("base64url");
    out.truncate(n);
    out
}

fn jwt_config(extra: &str) -> String {
    let config = standard_config("").replace("id = \"other\"", "id = \"other\"\naccess_token_format = \"jwt\"");
    format!("{config}\n[jwt]\n{extra}\n")
}

/// Verifies `token` against the server's JWKS and returns its header and
/// claims; panics on anything invalid.
async fn verify(server: &Server, token: &str) -> (Value, Value) {
    check(server, token).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn check(server: &Server, token: &str) -> Result<(Value, Value), String> {
    let metadata = server.get("/.well-known/oauth-authorization-server").await.json();
    let jwks_uri = metadata["jwks_uri"].as_str().expect("jwks_uri in the metadata");
    let path = jwks_uri.split_once(&server.addr.to_string()).expect("jwks_uri on this server").1;
    let jwks = server.get(path).await.json();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value = serde_json::from_slice(&b64url(parts[0])).unwrap();
    let claims: Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
    assert_eq!(header["typ"], "at+jwt", "RFC 9068 §2.1");
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("kid in the JWKS");
    let message = format!("{}.{}", parts[0], parts[1]);
    let signature = b64url(parts[2]);
    match header["alg"].as_str().unwrap() {
        "EdDSA" => {
            assert_eq!((key["kty"].as_str(), key["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
            let x = b64url(key["x"].as_str().unwrap());
            UnparsedPublicKey::new(&ED25519, x).verify(message.as_bytes(), &signature).map_err(|_| "bad signature")?;
        }
        "ES256" => {
            assert_eq!((key["kty"].as_str(), key["crv"].as_str()), (Some("EC"), Some("P-256")));
            let mut point = vec![4u8];
            point.extend(b64url(key["x"].as_str().unwrap()));
            point.extend(b64url(key["y"].as_str().unwrap()));
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(message.as_bytes(), &signature)
                .map_err(|_| "bad signature")?;
        }
        other => return Err(format!("unexpected alg {other}")),
    }
    Ok((header, claims))
}

#[tokio::test]
async fn jwt_access_tokens_verify_with_the_jwks() {
    let server = Server::start(&jwt_config(""), &standard_users());
    let r = server.token_basic("other", "other-secret", "grant_type=password&username=alice&password=wonderland").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens = r.json();
    let at = tokens["access_token"].as_str().unwrap();
    let (header, claims) = verify(&server, at).await;
    assert_eq!(header["alg"], "EdDSA");
    let issuer = format!("http://{}", server.addr);
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], issuer, "the audience defaults to the issuer");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "other");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 300);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 22));

    // A tampered token fails verification.
    let mut parts: Vec<String> = at.split('.').map(str::to_owned).collect();
    let forged = String::from_utf8(b64url(&parts[1])).unwrap().replace("\"alice\"", "\"mallory\"");
    let mut encoded = vec![0u8; ropc_core::base64::encoded_len_nopad(forged.len())];
    ropc_core::base64::encode_url_nopad(forged.as_bytes(), &mut encoded).unwrap();
    parts[1] = String::from_utf8(encoded).unwrap();
    let tampered = parts.join(".");
    assert_eq!(check(&server, &tampered).await.err().as_deref(), Some("bad signature"));

    // JWTs are still introspectable and revocable, and refresh works.
    let auth = ropc_core::basic::encode("machine", "machine-secret");
    let v = server.post("/oauth/v2/oauth-introspect", &format!("token={at}"), &[("authorization", &auth)]).await.json();
    assert_eq!((v["active"].as_bool(), v["sub"].as_str()), (Some(true), Some("alice")));
    let rt = tokens["refresh_token"].as_str().unwrap();
    let r = server.token_basic("other", "other-secret", &format!("grant_type=refresh_token&refresh_token={rt}")).await;
    let (_, claims) = verify(&server, r.json()["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], "alice", "the subject survives a refresh");

    // Opaque clients are unaffected.
    let r =
        server.token_basic("legacy", "legacy-secret", "grant_type=password&username=alice&password=wonderland").await;
    assert_eq!(r.json()["access_token"].as_str().unwrap().len(), 43);

    // The generated key is kept beside the config (mode 0600).
    let keys: Vec<_> = server.dir.path().join("jwt-keys").read_dir().unwrap().flatten().collect();
    assert_eq!(keys.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(keys[0].metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[tokio::test]
async fn es256_with_a_configured_audience() {
    let server =
        Server::start(&jwt_config("algorithm = \"ES256\"\naudience = \"https://api.example\""), &standard_users());
    let r = server.token_basic("other", "other-secret", "grant_type=password&username=alice&password=wonderland").await;
    let (header, claims) = verify(&server, r.json()["access_token"].as_str().unwrap()).await;
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["aud"], "https://api.example");
}
