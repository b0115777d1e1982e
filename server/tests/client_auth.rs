//! Client authentication beyond a shared secret, against the real binary:
//! client assertions (RFC 7523), DPoP proofs (RFC 9449) and the config
//! rules around them. The proofs are signed here with ring, independently
//! of the server's code; `tests/interop` does the same with PyJWT and
//! Authlib, and covers mutual TLS.

use crate::support::{hash, standard_config, standard_users, Redis, Reply, Server};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

const ASSERTION_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
const LOGIN: &str = "grant_type=password&username=alice&password=wonderland";

fn b64(bytes: &[u8]) -> String {
    let mut out = vec![0; ropc_core::base64::encoded_len_nopad(bytes.len())];
    ropc_core::base64::encode_url_nopad(bytes, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn jti() -> String {
    let mut raw = [0u8; 12];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut raw).unwrap();
    b64(&raw)
}

/// A signing key of the client's, and its public JWK.
enum Key {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl Key {
    fn es256() -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Key::Es256(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap())
    }

    fn eddsa() -> Key {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Key::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Es256(_) => "ES256",
            Key::EdDsa(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> Value {
        match self {
            Key::Es256(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..])})
            }
            Key::EdDsa(k) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())}),
        }
    }

    /// RFC 7638, computed here from the JWK's members.
    fn thumbprint(&self) -> String {
        let j = self.jwk();
        let canonical = match self {
            Key::Es256(_) => format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, j["x"], j["y"]),
            Key::EdDsa(_) => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#, j["x"]),
        };
        b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = match self {
            Key::Es256(k) => k.sign(&SystemRandom::new(), input.as_bytes()).unwrap().as_ref().to_vec(),
            Key::EdDsa(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }

    /// A client assertion (RFC 7523 §3) by `client` for `aud`.
    fn assertion(&self, kid: &str, client: &str, aud: &str) -> String {
        let claims = json!({"iss": client, "sub": client, "aud": aud, "exp": now() + 60, "iat": now(), "jti": jti()});
        self.sign(&json!({"alg": self.alg(), "kid": kid}), &claims)
    }

    /// A DPoP proof (RFC 9449 §4.2) for POST `htu`.
    fn proof(&self, htu: &str) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()});
        self.sign(&header, &json!({"jti": jti(), "htm": "POST", "htu": htu, "iat": now()}))
    }
}

struct Fixture {
    server: Server,
    es256: Key,
    eddsa: Key,
    config: String,
    _keys: tempfile::TempDir,
}

impl Fixture {
    fn start(extra: &str) -> Fixture {
        let (es256, eddsa) = (Key::es256(), Key::eddsa());
        let keys = tempfile::tempdir().unwrap();
        let mut a = es256.jwk();
        a["kid"] = json!("a");
        let mut b = eddsa.jwk();
        b["kid"] = json!("b");
        let jwks = keys.path().join("batch-jwks.json");
        std::fs::write(&jwks, json!({"keys": [a, b]}).to_string()).unwrap();
        let hmac = keys.path().join("hs.key");
        std::fs::write(&hmac, "0123456789abcdef0123456789abcdef\n").unwrap();
        set_mode(&hmac, 0o600);
        let config = format!(
            r#"{}
[[clients]]
id = "batch"
token_endpoint_auth_method = "private_key_jwt"
jwks_file = "{}"
capabilities = ["password", "refresh_token"]
scopes = ["read"]
default_scopes = ["read"]

[[clients]]
id = "shared"
token_endpoint_auth_method = "client_secret_jwt"
client_secret_jwt_key_file = "{}"
capabilities = ["password"]
scopes = ["read"]
default_scopes = ["read"]

[[clients]]
id = "strict"
secret = "{}"
dpop_bound_access_tokens = true
capabilities = ["password", "refresh_token"]
scopes = ["read"]
default_scopes = ["read"]
{extra}"#,
            standard_config(""),
            jwks.display(),
            hmac.display(),
            hash("strict-secret"),
        );
        Fixture { server: Server::start(&config, &standard_users()), es256, eddsa, config, _keys: keys }
    }

    fn token_url(&self) -> String {
        format!("http://{}/oauth/v2/oauth-token", self.server.addr)
    }

    async fn with_assertion(&self, body: &str, assertion: &str) -> Reply {
        assertion_to(&self.server, body, assertion).await
    }

    async fn with_dpop(&self, body: &str, proof: &str) -> Reply {
        dpop_to(&self.server, body, proof).await
    }
}

async fn assertion_to(server: &Server, body: &str, assertion: &str) -> Reply {
    server.token(&format!("{body}&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}")).await
}

async fn dpop_to(server: &Server, body: &str, proof: &str) -> Reply {
    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    server.post("/oauth/v2/oauth-token", body, &[("authorization", &auth), ("dpop", proof)]).await
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn private_key_jwt_logs_in_and_refreshes_with_es256_and_eddsa() {
    let f = Fixture::start("");
    let url = f.token_url();
    let r = f.with_assertion(LOGIN, &f.es256.assertion("a", "batch", &url)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_owned();
    // The issuer is an audience too (RFC 7523 §3), and a client_id may be sent.
    let issuer = format!("http://{}", f.server.addr);
    let body = format!("grant_type=refresh_token&refresh_token={refresh}&client_id=batch");
    let r = f.with_assertion(&body, &f.eddsa.assertion("b", "batch", &issuer)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["token_type"], "bearer");
}

#[tokio::test]
async fn an_assertion_is_refused_replayed_unsigned_confused_stale_or_misaddressed() {
    let f = Fixture::start("");
    let url = f.token_url();
    let first = f.es256.assertion("a", "batch", &url);
    assert_eq!(f.with_assertion(LOGIN, &first).await.status, 200);
    let replay = f.with_assertion(LOGIN, &first).await;
    assert_eq!((replay.status, replay.error()), (400, "invalid_client".to_owned()), "replayed");
    assert!(f.server.log_shows("client_assertion_replayed"));

    let claims = |exp: u64, aud: &str, iss: &str| json!({"iss": iss, "sub": "batch", "aud": aud, "exp": exp, "iat": now(), "jti": jti()});
    let fresh = claims(now() + 60, &url, "batch");
    // `alg: none`, with and without a signature part.
    let none_header = b64(br#"{"alg":"none"}"#);
    let none = format!("{none_header}.{}.", b64(fresh.to_string().as_bytes()));
    // HS256 with the client's public key as the HMAC secret (alg confusion).
    let input = format!("{}.{}", b64(br#"{"alg":"HS256","kid":"a"}"#), b64(fresh.to_string().as_bytes()));
    let public = f.es256.jwk().to_string();
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public.as_bytes()), input.as_bytes());
    let confused = format!("{input}.{}", b64(tag.as_ref()));
    let header = json!({"alg": "ES256", "kid": "a"});
    let refused = [
        ("alg none", none),
        ("HS256 over the public key", confused),
        ("expired", f.es256.sign(&header, &claims(now() - 120, &url, "batch"))),
        ("exp too far", f.es256.sign(&header, &claims(now() + 7200, &url, "batch"))),
        ("another audience", f.es256.sign(&header, &claims(now() + 60, "https://elsewhere.example/token", "batch"))),
        ("iss is not sub", f.es256.sign(&header, &claims(now() + 60, &url, "legacy"))),
        ("signed by another key", Key::es256().sign(&header, &claims(now() + 60, &url, "batch"))),
        ("the kid of a key of another type", f.es256.sign(&json!({"alg": "ES256", "kid": "b"}), &fresh)),
    ];
    for (why, assertion) in refused {
        let r = f.with_assertion(&format!("{LOGIN}&client_id=batch"), &assertion).await;
        assert_eq!((r.status, r.error()), (400, "invalid_client".to_owned()), "{why}: {}", r.body);
    }
    // A secret for a private_key_jwt client, an assertion for a secret client.
    let r = f.server.token_basic("batch", "anything", LOGIN).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client".to_owned()));
    let r = f.with_assertion(LOGIN, &f.es256.assertion("a", "legacy", &url)).await;
    assert_eq!(r.error(), "invalid_client");
}

#[tokio::test]
async fn client_secret_jwt_verifies_hs256_with_the_shared_key_only() {
    let f = Fixture::start("");
    let claims = json!({"iss": "shared", "sub": "shared", "aud": f.token_url(), "exp": now() + 60, "jti": jti()});
    let sign = |key: &[u8]| {
        let input = format!("{}.{}", b64(br#"{"alg":"HS256"}"#), b64(claims.to_string().as_bytes()));
        let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    };
    let r = f.with_assertion(LOGIN, &sign(b"0123456789abcdef0123456789abcdef")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = f.with_assertion(LOGIN, &sign(b"0123456789abcdef0123456789abcdeX")).await;
    assert_eq!(r.error(), "invalid_client");
}

#[tokio::test]
async fn a_dpop_bound_refresh_needs_a_fresh_proof_by_the_same_key() {
    let f = Fixture::start("");
    let url = f.token_url();
    let r = f.with_dpop(LOGIN, &f.es256.proof(&url)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["token_type"], "DPoP");
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_owned();

    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    let introspection = f
        .server
        .post("/oauth/v2/oauth-introspect", &format!("token={access}"), &[("authorization", &auth)])
        .await
        .json();
    assert_eq!(introspection["cnf"], json!({"jkt": f.es256.thumbprint()}), "RFC 9449 §6.2");
    assert_eq!(introspection["token_type"], "DPoP");

    let body = format!("grant_type=refresh_token&refresh_token={refresh}");
    let r = f.server.token_basic("legacy", "legacy-secret", &body).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()), "no proof");
    let r = f.with_dpop(&body, &Key::es256().proof(&url)).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()), "another key's proof");
    let proof = f.es256.proof(&url);
    let r = f.with_dpop(&body, &proof).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["token_type"], "DPoP");
    // The same proof again is a replay.
    let next = format!("grant_type=refresh_token&refresh_token={}", r.json()["refresh_token"].as_str().unwrap());
    let r = f.with_dpop(&next, &proof).await;
    assert_eq!((r.status, r.error()), (400, "invalid_dpop_proof".to_owned()), "replayed");
}

#[tokio::test]
async fn a_proof_for_another_request_or_time_is_refused() {
    let f = Fixture::start("");
    let url = f.token_url();
    let key = &f.eddsa;
    let claims = |htm: &str, htu: &str, iat: u64| json!({"jti": jti(), "htm": htm, "htu": htu, "iat": iat});
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": key.jwk()});
    let with_private = {
        let mut jwk = key.jwk();
        jwk["d"] = json!("AAAA");
        json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk})
    };
    let cases = [
        ("another URL", key.sign(&header, &claims("POST", "https://elsewhere.example/token", now()))),
        ("another method", key.sign(&header, &claims("GET", &url, now()))),
        ("too old", key.sign(&header, &claims("POST", &url, now() - 600))),
        ("from the future", key.sign(&header, &claims("POST", &url, now() + 600))),
        ("no typ", key.sign(&json!({"alg": "EdDSA", "jwk": key.jwk()}), &claims("POST", &url, now()))),
        ("a private key in the header", key.sign(&with_private, &claims("POST", &url, now()))),
        ("not a JWT", "garbage".to_owned()),
    ];
    for (why, proof) in cases {
        let r = f.with_dpop(LOGIN, &proof).await;
        assert_eq!((r.status, r.error()), (400, "invalid_dpop_proof".to_owned()), "{why}: {}", r.body);
    }
    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    let (a, b) = (key.proof(&url), key.proof(&url));
    let headers = [("authorization", auth.as_str()), ("dpop", a.as_str()), ("dpop", b.as_str())];
    let r = f.server.post("/oauth/v2/oauth-token", LOGIN, &headers).await;
    assert_eq!(r.error(), "invalid_dpop_proof", "two DPoP headers");
}

#[tokio::test]
async fn a_client_that_requires_dpop_is_refused_without_a_proof() {
    let f = Fixture::start("");
    let r = f.server.token_basic("strict", "strict-secret", LOGIN).await;
    assert_eq!((r.status, r.error()), (400, "invalid_request".to_owned()), "{}", r.body);
    let auth = ropc_core::basic::encode("strict", "strict-secret");
    let proof = f.es256.proof(&f.token_url());
    let r = f.server.post("/oauth/v2/oauth-token", LOGIN, &[("authorization", &auth), ("dpop", &proof)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["token_type"], "DPoP");
}

#[test]
fn config_errors_name_the_client_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("k.json");
    std::fs::write(&jwks, json!({"keys": [Key::es256().jwk()]}).to_string()).unwrap();
    let loose = dir.path().join("loose.key");
    std::fs::write(&loose, "0123456789abcdef0123456789abcdef").unwrap();
    set_mode(&loose, 0o644);
    std::fs::write(dir.path().join("users.htpasswd"), standard_users()).unwrap();
    let client = |extra: &str| {
        format!("{}\n[[clients]]\nid = \"x\"\ncapabilities = [\"password\"]\n{extra}\n", standard_config(""))
    };
    let cases = [
        (
            client(&format!(
                "token_endpoint_auth_method = \"private_key_jwt\"\njwks_file = \"{}\"\nsecret = \"{}\"",
                jwks.display(),
                hash("s")
            )),
            "clients.secret",
            "uses no secret",
        ),
        (client("token_endpoint_auth_method = \"private_key_jwt\""), "clients.token_endpoint_auth_method", "jwks_file"),
        (client(""), "clients.secret", "has no secret"),
        (
            client(&format!(
                "token_endpoint_auth_method = \"client_secret_jwt\"\nclient_secret_jwt_key_file = \"{}\"",
                loose.display()
            )),
            "clients.client_secret_jwt_key_file",
            "chmod 600",
        ),
        (
            client("token_endpoint_auth_method = \"tls_client_auth\"\ntls_client_auth_subject_dn = \"CN=x\""),
            "clients.token_endpoint_auth_method",
            "client_ca_file",
        ),
        (
            standard_config("").replace("tls = \"off\"", "tls = \"off\"\nclient_ca_file = \"ca.pem\""),
            "server.client_ca_file",
            "need TLS",
        ),
    ];
    for (config, key, message) in cases {
        let path = dir.path().join("ropc.toml");
        std::fs::write(&path, &config).unwrap();
        let out = crate::support::ropc().args(["config", "check"]).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}: accepted");
        assert!(err.contains(key) && err.contains(message) && err.contains("ropc.toml:"), "{key}: {err}");
    }
}

#[tokio::test]
async fn with_the_redis_store_a_jti_used_at_one_instance_is_refused_at_another() {
    let mut redis = Redis::start();
    let store = format!("\n[token_store]\nkind = \"redis\"\nurl = \"{}\"\n", redis.url());
    let f = Fixture::start(&store);
    let twin = Server::start(&f.config, &standard_users());
    // Both instances derive the same issuer only with an explicit one; here
    // each names its own port, so each proof is made for its instance.
    let url = f.token_url();
    let assertion = f.es256.assertion("a", "batch", &url);
    assert_eq!(f.with_assertion(LOGIN, &assertion).await.status, 200);
    assert_eq!(f.with_assertion(LOGIN, &assertion).await.error(), "invalid_client", "replayed at the same instance");
    // The twin's audience is its own URL: make the assertion for it, with
    // a jti the first instance already saw.
    let twin_url = format!("http://{}/oauth/v2/oauth-token", twin.addr);
    let jti = "shared-jti-1";
    let claims = json!({"iss": "batch", "sub": "batch", "aud": [url.as_str(), twin_url.as_str()], "exp": now() + 60, "jti": jti});
    let both = f.es256.sign(&json!({"alg": "ES256", "kid": "a"}), &claims);
    assert_eq!(f.with_assertion(LOGIN, &both).await.status, 200);
    let r = assertion_to(&twin, LOGIN, &both).await;
    assert_eq!((r.status, r.error()), (400, "invalid_client".to_owned()), "replayed at the other instance: {}", r.body);
    assert!(twin.log_shows("client_assertion_replayed"));

    // Redis down: a proof that cannot be recorded is not accepted
    // unrecorded; the answer is a quick 503.
    redis.stop();
    let started = std::time::Instant::now();
    let r = dpop_to(&twin, LOGIN, &f.eddsa.proof(&twin_url)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}
