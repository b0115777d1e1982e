//! Client authentication beyond a secret: what one client assertion (RFC
//! 7523) and one DPoP proof (RFC 9449) cost to verify, whole (decoding,
//! claims, signature), per algorithm, and one replay-cache use. These run
//! on the request threads, inline: the figures say what that costs.
//!
//! `cargo bench -p ropc-benches --bench client_auth`

use criterion::{criterion_group, criterion_main, Criterion};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use ropc_server::auth::{assertion, dpop};
use ropc_server::config::{AuthMethod, ClientAuthPolicy, ProofLimits};
use ropc_server::jose::{HmacKey, Jwks};
use ropc_server::store::ReplayCache;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const AUD: &str = "https://as.example.com/oauth/v2/oauth-token";
const RSA_PKCS8: &[u8] = include_bytes!("../fixtures/rsa2048-test-only.pk8");

fn b64(bytes: &[u8]) -> String {
    let mut out = vec![0; ropc_core::base64::encoded_len_nopad(bytes.len())];
    ropc_core::base64::encode_url_nopad(bytes, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Hs256(ring::hmac::Key),
}

impl Signer {
    fn all() -> Vec<(&'static str, Signer)> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let ec = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        vec![
            ("ES256", Signer::Es256(EcdsaKeyPair::from_pkcs8(alg, ec.as_ref(), &rng).unwrap())),
            ("RS256", Signer::Rs256(RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap())),
            ("EdDSA", Signer::EdDsa(Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap())),
            ("HS256", Signer::Hs256(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7; 32]))),
        ]
    }

    fn jwk(&self) -> Option<String> {
        Some(match self {
            Signer::Es256(k) => {
                let p = k.public_key().as_ref();
                format!(r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#, b64(&p[1..33]), b64(&p[33..]))
            }
            Signer::Rs256(k) => {
                let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                format!(r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#, b64(&c.n), b64(&c.e))
            }
            Signer::EdDsa(k) => format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, b64(k.public_key().as_ref())),
            Signer::Hs256(_) => return None,
        })
    }

    fn sign(&self, alg: &str, header_extra: &str, claims: &str) -> String {
        let header = format!(r#"{{"alg":"{alg}"{header_extra}}}"#);
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let rng = SystemRandom::new();
        let sig = match self {
            Signer::Es256(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig).unwrap();
                sig
            }
            Signer::EdDsa(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            Signer::Hs256(k) => ring::hmac::sign(k, input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn bench(c: &mut Criterion) {
    let limits = ProofLimits::default();
    let mut group = c.benchmark_group("client_auth");
    for (alg, signer) in Signer::all() {
        let policy = match signer.jwk() {
            Some(jwk) => ClientAuthPolicy {
                method: Some(AuthMethod::PrivateKeyJwt),
                jwks: Some(Arc::new(Jwks::parse(&format!(r#"{{"keys":[{jwk}]}}"#)).unwrap())),
                ..ClientAuthPolicy::default()
            },
            None => ClientAuthPolicy {
                method: Some(AuthMethod::ClientSecretJwt),
                hmac: Some(Arc::new(HmacKey::new(&[7; 32]).unwrap())),
                ..ClientAuthPolicy::default()
            },
        };
        let t = now();
        let claims =
            format!(r#"{{"iss":"batch","sub":"batch","aud":"{AUD}","exp":{},"iat":{t},"jti":"j-1"}}"#, t + 600);
        let token = signer.sign(alg, "", &claims);
        assertion::verify(&token, "batch", &policy, &[AUD], &limits, t).expect("a valid assertion");
        group.bench_function(format!("assertion_verify_{alg}"), |b| {
            b.iter(|| assertion::verify(black_box(&token), "batch", &policy, &[AUD], &limits, t).unwrap())
        });
        if let Some(jwk) = signer.jwk() {
            let proof_claims = format!(r#"{{"jti":"p-1","htm":"POST","htu":"{AUD}","iat":{t}}}"#);
            let proof = signer.sign(alg, &format!(r#","typ":"dpop+jwt","jwk":{jwk}"#), &proof_claims);
            dpop::verify(&proof, "POST", AUD, &limits, t).expect("a valid proof");
            group.bench_function(format!("dpop_verify_{alg}"), |b| {
                b.iter(|| dpop::verify(black_box(&proof), "POST", AUD, &limits, t).unwrap())
            });
        }
    }
    // The Ed25519 verification alone, by ring and by ed25519-dalek, on the
    // same key and message: the faster one verifies EdDSA proofs.
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let message = [0x5au8; 200];
    let sig = pair.sign(&message);
    let public = pair.public_key().as_ref().to_vec();
    group.bench_function("ed25519_verify_ring", |b| {
        let key = signature::UnparsedPublicKey::new(&signature::ED25519, &public);
        b.iter(|| key.verify(black_box(&message), sig.as_ref()).unwrap())
    });
    group.bench_function("ed25519_verify_dalek", |b| {
        let key = ed25519_dalek::VerifyingKey::from_bytes(public.as_slice().try_into().unwrap()).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(sig.as_ref()).unwrap();
        b.iter(|| key.verify_strict(black_box(&message), &sig).unwrap())
    });
    // One first use of a jti (the insert) and one replay (the lock-free hit).
    let cache = ReplayCache::memory(100_000_000);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut n = 0u64;
    group.bench_function("replay_cache_first_use", |b| {
        b.iter(|| {
            n += 1;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
            id[8..].copy_from_slice(&n.to_le_bytes());
            assert_eq!(rt.block_on(cache.first_use(&id, 0, 2_000_000_000, 1)), Ok(true));
        })
    });
    let seen = [42u8; 16];
    let _ = rt.block_on(cache.first_use(&seen, 0, 2_000_000_000, 1));
    group.bench_function("replay_cache_replay", |b| {
        b.iter(|| assert_eq!(rt.block_on(cache.first_use(black_box(&seen), 0, 2_000_000_000, 1)), Ok(false)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
