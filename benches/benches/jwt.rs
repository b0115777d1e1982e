//! JWT access tokens (RFC 9068): the cost of signing one, alone and as part
//! of a whole grant's `issue`, against an opaque token's `issue` in the same
//! run. Goal: signing ≤ 30 µs with Ed25519.
//!
//! `cargo bench -p ropc-benches --bench jwt`

use criterion::{criterion_group, criterion_main, Criterion};
use ropc_core::basic::{self, SCRATCH_LEN};
use ropc_core::client::TokenFormat;
use ropc_core::{
    Capabilities, Client, Engine, JwtIssuer, PasswordOutcome, Provider, RandomError, ScopeSet, SecureRandom, Step,
    TokenDigest, TokenKey, TokenSigner, UserRef,
};
use ropc_server::jwt::{Algorithm, SigningKey};
use std::hint::black_box;

/// A cheap counter "RNG": the bench measures signing, not the OS random source.
#[derive(Debug, Default)]
struct Counter(std::sync::atomic::AtomicU64);
impl SecureRandom for Counter {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (i, b) in dest.iter_mut().enumerate() {
            *b = (n >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Sha256;
impl TokenDigest for Sha256 {
    fn digest(&self, token: &[u8]) -> TokenKey {
        let mut k = [0u8; TokenKey::LEN];
        k.copy_from_slice(&ring::digest::digest(&ring::digest::SHA256, token).as_ref()[..TokenKey::LEN]);
        TokenKey(k)
    }
}

fn engine() -> Engine {
    let mut e = Engine::default();
    e.scopes.register("read").unwrap();
    e.scopes.register("write").unwrap();
    for id in ["opaque", "jwt"] {
        let client = Client {
            id: id.into(),
            capabilities: Capabilities::PASSWORD.union(Capabilities::REFRESH_TOKEN),
            allowed_scopes: ScopeSet::from_bits(0b11),
            default_scopes: ScopeSet::from_bits(0b11),
        };
        let index = e.clients.add(client).unwrap();
        if id == "jwt" {
            e.clients.set_access_token_format(index, TokenFormat::Jwt);
        }
    }
    e
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let random = Counter::default();
    let provider = Provider { random: &random, digest: &Sha256 };
    let mut group = c.benchmark_group("jwt");
    for (name, alg) in [("ed25519", Algorithm::EdDsa), ("es256", Algorithm::Es256)] {
        let key = SigningKey::generate(alg, "bench-key").unwrap();
        let message = [b'x'; 300];
        let mut sig = Vec::with_capacity(64);
        group.bench_function(format!("sign_{name}"), |b| {
            b.iter(|| {
                sig.clear();
                key.sign(black_box(&message), &mut sig).unwrap();
            })
        });
    }
    // The same Ed25519 key in ring and in ed25519-dalek: Ed25519 is
    // deterministic, so both make the same signature, and only speed differs.
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let by_ring = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let by_dalek =
        <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_der(pkcs8.as_ref()).unwrap();
    let message = [b'x'; 300];
    let dalek_sig = ed25519_dalek::Signer::sign(&by_dalek, &message).to_bytes();
    assert_eq!(by_ring.sign(&message).as_ref(), dalek_sig.as_slice());
    group.bench_function("sign_ed25519_ring", |b| b.iter(|| black_box(by_ring.sign(black_box(&message)))));
    group.bench_function("sign_ed25519_dalek", |b| {
        b.iter(|| black_box(ed25519_dalek::Signer::sign(&by_dalek, black_box(&message))))
    });
    let key = SigningKey::generate(Algorithm::EdDsa, "bench-key").unwrap();
    let jwt = JwtIssuer {
        signer: &key,
        issuer: "https://login.example.com",
        audience: "https://api.example.com",
        subject: Some("alice"),
    };
    let mut out = Vec::with_capacity(1024);
    for client in ["opaque", "jwt"] {
        let body = "grant_type=password&username=alice&password=wonderland";
        let header = basic::encode(client, "secret");
        group.bench_function(format!("issue_{client}"), |b| {
            b.iter(|| {
                let mut scratch = [0u8; SCRATCH_LEN];
                let mut grant = engine.token_grant(provider, body.as_bytes(), Some(header.as_bytes()), &mut scratch);
                grant.client_authenticated(true);
                grant.password_verified(PasswordOutcome::Valid(UserRef(1)));
                assert!(matches!(grant.step(), Step::Issue));
                out.clear();
                black_box(grant.issue_with(1_700_000_000, Some(&jwt), &mut out).unwrap());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
