//! Password verification cost at the OWASP parameters (argon2id, m = 19456
//! KiB, t = 2, p = 1), the way the server runs it:
//!
//! - `verify_fresh`: `StoredHash::verify`, which allocates the 19 MiB of
//!   argon2 memory for each hash (what a naive server does);
//! - `verify_reused`: `StoredHash::verify_with_memory` with one buffer kept
//!   across hashes, in huge pages where the kernel has them (what each
//!   hash-pool worker does; so it differs from `verify_fresh` in both);
//! - `pool/N_workers`: jobs through `HashPool::try_submit` and back, N
//!   workers, 8 jobs per worker in flight; throughput in verifications/s.
//!
//! Run: `cargo bench -p ropc-benches --bench hash` (figures and machine in
//! BENCHMARKS.md). To compare builds for the CPU:
//! `RUSTFLAGS="-C target-cpu=native" cargo bench -p ropc-benches --bench hash -- verify_reused`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ropc_hash::{
    hash_password, HashMemory, HashParams, HashPool, HashPriority, PasswordVerifier, StoredHash, VerifyJob,
};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PASSWORD: &[u8] = b"correct horse battery staple";

fn bench(c: &mut Criterion) {
    let stored = Arc::new(StoredHash::parse(&hash_password(PASSWORD, HashParams::default()).unwrap()).unwrap());
    let mut g = c.benchmark_group("hash");
    g.sample_size(20).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_fresh", |b| b.iter(|| assert!(stored.verify(PASSWORD))));
    let mut memory = HashMemory::huge_pages();
    g.bench_function("verify_reused", |b| b.iter(|| assert!(stored.verify_with_memory(PASSWORD, &mut memory))));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for workers in (1..=cores).filter(|w| *w == 1 || *w == cores) {
        let in_flight = 8 * workers;
        let pool = HashPool::new(workers, in_flight, HashPriority::Nice(0)).unwrap();
        g.throughput(Throughput::Elements(in_flight as u64));
        g.bench_function(BenchmarkId::new("pool", format!("{workers}_workers")), |b| {
            b.iter(|| {
                let pending: Vec<_> = (0..in_flight)
                    .map(|_| {
                        let job = VerifyJob {
                            password: Zeroizing::new(PASSWORD.to_vec()),
                            hash: Arc::clone(&stored),
                            started: None,
                        };
                        pool.try_submit(job).unwrap()
                    })
                    .collect();
                runtime.block_on(async {
                    for p in pending {
                        assert!(p.await.unwrap());
                    }
                });
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
