//! Criterion benches for ropc-core: the two halves of a password grant that
//! the core does itself, with the runtime's steps answered for free.
//!
//! - `parse_validate`: body + Basic header to the first `Step` (form, Basic,
//!   grammar, client look-up). Goal: <= 300 ns.
//! - `issue/*`: from a grant in `Step::Issue`, mint both tokens, write the
//!   JSON into a reused `Vec`. Goal: <= 500 ns with the random source's own
//!   cost excluded (`counter_rng`); `system_rng` shows the figure with one
//!   `getrandom` per draw, `buffered_rng` with the server's `BufferedRandom`
//!   (one `getrandom` per 4 KiB).
//!
//! Run: `cargo bench -p ropc-benches --bench core` (figures and machine in
//! BENCHMARKS.md).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ring::rand::SecureRandom as _;
use ropc_core::basic::SCRATCH_LEN;
use ropc_core::{
    Capabilities, Client, Engine, PasswordOutcome, Provider, RandomError, ScopeSet, SecureRandom, Step, TokenDigest,
    TokenGrant, TokenKey, UserRef,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The allocator of the `ropc` binary: the core allocates for percent-decoded
// values, so the bench runs it on the allocator it runs on in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A typical legacy login: 151 bytes, with escapes and four scopes.
const BODY: &[u8] = b"grant_type=password&username=alice.smith%40example.com&password=correct+horse+battery+staple%21\
&scope=openid+profile+read+write&client_id=legacy-portal";
/// `legacy-portal` : `9f86d081884c7d659a2feaa0c55ad015`.
const AUTHORIZATION: &[u8] = b"Basic bGVnYWN5LXBvcnRhbDo5Zjg2ZDA4MTg4NGM3ZDY1OWEyZmVhYTBjNTVhZDAxNQ==";
const NOW: u64 = 1_700_000_000;

/// A deterministic counter, so that the random source costs (almost)
/// nothing and the bench measures the core. NOT a secure random source.
#[derive(Debug)]
struct CounterRandom(AtomicU64);

impl SecureRandom for CounterRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        for (i, chunk) in dest.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&(n ^ (i as u64) << 56).to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// The operating system's random source, through ring.
#[derive(Debug)]
struct SystemRandom(ring::rand::SystemRandom);

impl SecureRandom for SystemRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        self.0.fill(dest).map_err(|_| RandomError)
    }
}

/// SHA-256 through ring: what a real runtime keys its store with.
#[derive(Debug)]
struct Sha256;

impl TokenDigest for Sha256 {
    fn digest(&self, token: &[u8]) -> TokenKey {
        let mut key = [0u8; TokenKey::LEN];
        key.copy_from_slice(&ring::digest::digest(&ring::digest::SHA256, token).as_ref()[..TokenKey::LEN]);
        TokenKey(key)
    }
}

/// No digest at all, to show the core's own share of `issue`.
#[derive(Debug)]
struct NoDigest;

impl TokenDigest for NoDigest {
    fn digest(&self, _: &[u8]) -> TokenKey {
        TokenKey([0; TokenKey::LEN])
    }
}

fn engine() -> Engine {
    let mut engine = Engine::default();
    let mut all = ScopeSet::EMPTY;
    for name in ["openid", "profile", "read", "write", "admin"] {
        let index = engine.scopes.register(name).expect("valid scope");
        all = all.union(ScopeSet::single(index));
    }
    for id in ["other-client", "legacy-portal", "service"] {
        let client = Client {
            id: id.into(),
            capabilities: Capabilities::PASSWORD.union(Capabilities::REFRESH_TOKEN),
            allowed_scopes: all,
            default_scopes: ScopeSet::single(2),
        };
        engine.clients.add(client).expect("valid client");
    }
    engine
}

fn parse_validate(c: &mut Criterion) {
    let engine = engine();
    let random = CounterRandom(AtomicU64::new(0));
    let provider = Provider { random: &random, digest: &Sha256 };
    let mut scratch = [0u8; SCRATCH_LEN];
    // Check once that the bench measures what it says.
    let grant = engine.token_grant(provider, BODY, Some(AUTHORIZATION), &mut scratch);
    assert!(matches!(grant.step(), Step::AuthenticateClient { .. }), "{:?}", grant.step());
    drop(grant);

    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Bytes((BODY.len() + AUTHORIZATION.len()) as u64));
    group.bench_function("parse_validate", |b| {
        b.iter(|| {
            let grant = engine.token_grant(provider, black_box(BODY), Some(black_box(AUTHORIZATION)), &mut scratch);
            black_box(grant.step());
        })
    });
    group.finish();
}

/// A grant stepped to `Step::Issue`, the runtime's answers all positive.
fn ready<'a>(engine: &'a Engine, provider: Provider<'a>, scratch: &'a mut [u8; SCRATCH_LEN]) -> TokenGrant<'a> {
    let mut grant = engine.token_grant(provider, BODY, Some(AUTHORIZATION), scratch);
    grant.client_authenticated(true);
    grant.password_verified(PasswordOutcome::Valid(UserRef(1)));
    grant
}

fn issue(c: &mut Criterion) {
    let engine = engine();
    let counter = CounterRandom(AtomicU64::new(0));
    let system = SystemRandom(ring::rand::SystemRandom::new());
    let buffered = ropc_server::provider::BufferedRandom::default();
    let providers: [(&str, Provider<'_>); 4] = [
        ("counter_rng+sha256", Provider { random: &counter, digest: &Sha256 }),
        ("system_rng+sha256", Provider { random: &system, digest: &Sha256 }),
        ("buffered_rng+sha256", Provider { random: &buffered, digest: &Sha256 }),
        ("counter_rng+no_digest", Provider { random: &counter, digest: &NoDigest }),
    ];
    let mut out = Vec::with_capacity(512);
    {
        let mut scratch = [0u8; SCRATCH_LEN];
        let grant = ready(&engine, providers[0].1, &mut scratch);
        assert!(matches!(grant.step(), Step::Issue), "{:?}", grant.step());
        let issued = grant.issue(NOW, &mut out).expect("issued");
        assert!(issued.refresh.is_some());
    }

    let mut group = c.benchmark_group("core/issue");
    for (name, provider) in providers {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            // `issue` consumes its grant, and each grant borrows a scratch
            // buffer: prepare a batch of grants untimed, then time only
            // their `issue` calls.
            const BATCH: usize = 128;
            let mut scratches = vec![[0u8; SCRATCH_LEN]; BATCH];
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BATCH as u64) as usize;
                    let grants: Vec<TokenGrant<'_>> =
                        scratches[..n].iter_mut().map(|s| ready(&engine, provider, s)).collect();
                    let start = Instant::now();
                    for grant in grants {
                        out.clear();
                        let _ = black_box(grant.issue(NOW, &mut out));
                    }
                    total += start.elapsed();
                    left -= n as u64;
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse_validate, issue);
criterion_main!(benches);
