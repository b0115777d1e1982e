//! Token maps under the same load, in the same run: ropc's
//! `ShardedTokenMap` (lock-free look-ups, per-shard writer locks, 48-byte
//! packed slots) against the usual alternatives:
//!
//! - `mutex_hashmap`: one `std::sync::Mutex<HashMap>`;
//! - `sharded_rwlock`: 64 `parking_lot::RwLock<HashMap>` shards (ropc's
//!   previous store);
//! - `dashmap`: `DashMap` with its default shard count.
//!
//! Every map holds `TokenKey -> TokenRecord` and hashes keys the same cheap
//! way (the key is already a digest), so only the map differs. Each map is
//! pre-filled with 200,000 records. Benches, each with 1 and 2 threads
//! (criterion's throughput is in operations per second over all threads):
//!
//! - `lookup`: random present keys;
//! - `insert`: fresh keys (removed again outside the timing);
//! - `remove`: keys inserted outside the timing;
//! - `mixed`: 90 % look-ups of present keys, 10 % an insert of a fresh key
//!   together with the removal of an old one (so the size stays put).
//!
//! Run: `cargo bench -p ropc-benches --bench token_map` (figures and
//! machine in BENCHMARKS.md).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use parking_lot::RwLock;
use ropc_core::{TokenKey, TokenKind, TokenRecord};
use ropc_server::store::ShardedTokenMap;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PREFILL: u64 = 200_000;

/// Hashes a key by reading 8 of its (already uniform) bytes.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        if let Some(b) = bytes.get(..8) {
            self.0 = u64::from_le_bytes(b.try_into().unwrap());
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type Build = BuildHasherDefault<KeyHasher>;

/// What the benches need of a map.
trait Map: Sync {
    fn name(&self) -> &'static str;
    fn get(&self, key: &TokenKey) -> Option<TokenRecord>;
    fn insert(&self, key: TokenKey, record: TokenRecord);
    fn remove(&self, key: &TokenKey) -> Option<TokenRecord>;
}

impl Map for ShardedTokenMap {
    fn name(&self) -> &'static str {
        "ropc"
    }
    fn get(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.get_now(key)
    }
    fn insert(&self, key: TokenKey, record: TokenRecord) {
        ShardedTokenMap::insert(self, key, record);
    }
    fn remove(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.remove_now(key)
    }
}

struct MutexMap(Mutex<HashMap<TokenKey, TokenRecord, Build>>);

impl Map for MutexMap {
    fn name(&self) -> &'static str {
        "mutex_hashmap"
    }
    fn get(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.0.lock().unwrap().get(key).copied()
    }
    fn insert(&self, key: TokenKey, record: TokenRecord) {
        self.0.lock().unwrap().insert(key, record);
    }
    fn remove(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.0.lock().unwrap().remove(key)
    }
}

struct ShardedRwLock(Box<[RwLock<HashMap<TokenKey, TokenRecord, Build>>]>);

impl ShardedRwLock {
    fn shard(&self, key: &TokenKey) -> &RwLock<HashMap<TokenKey, TokenRecord, Build>> {
        &self.0[usize::from(key.0[8]) & (self.0.len() - 1)]
    }
}

impl Map for ShardedRwLock {
    fn name(&self) -> &'static str {
        "sharded_rwlock"
    }
    fn get(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.shard(key).read().get(key).copied()
    }
    fn insert(&self, key: TokenKey, record: TokenRecord) {
        self.shard(&key).write().insert(key, record);
    }
    fn remove(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.shard(key).write().remove(key)
    }
}

struct Dash(DashMap<TokenKey, TokenRecord, Build>);

impl Map for Dash {
    fn name(&self) -> &'static str {
        "dashmap"
    }
    fn get(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.0.get(key).map(|r| *r)
    }
    fn insert(&self, key: TokenKey, record: TokenRecord) {
        self.0.insert(key, record);
    }
    fn remove(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.0.remove(key).map(|(_, r)| r)
    }
}

/// The n-th key: a SplitMix64-spread 16-byte value, like a digest.
fn key(n: u64) -> TokenKey {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let b = mix(a ^ 0x1234_5678);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_le_bytes());
    k[8..].copy_from_slice(&b.to_le_bytes());
    TokenKey(k)
}

fn record(n: u64) -> TokenRecord {
    ropc_benches::record(n, TokenKind::Access)
}

fn maps() -> Vec<Box<dyn Map>> {
    let maps: Vec<Box<dyn Map>> = vec![
        Box::new(ShardedTokenMap::default()),
        Box::new(MutexMap(Mutex::default())),
        Box::new(ShardedRwLock((0..64).map(|_| RwLock::default()).collect())),
        Box::new(Dash(DashMap::default())),
    ];
    for map in &maps {
        for n in 0..PREFILL {
            map.insert(key(n), record(n));
        }
    }
    maps
}

/// Runs `op(thread, i)` for i in 0..iters on each of `threads` threads at
/// once; returns the wall time of the slowest.
fn run(threads: usize, iters: u64, op: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters {
                        op(t, i);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).max().unwrap()
    })
}

/// A key no other thread or iteration uses: thread t's i-th fresh key.
fn fresh(t: usize, i: u64) -> TokenKey {
    key(PREFILL + (t as u64) * (1 << 40) + i)
}

fn bench(c: &mut Criterion) {
    let maps = maps();
    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("token_map/{threads}_threads"));
        g.throughput(Throughput::Elements(threads as u64));
        g.measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
        for map in &maps {
            let map = map.as_ref();
            g.bench_function(BenchmarkId::new("lookup", map.name()), |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, &|t, i| {
                        let n = (i.wrapping_mul(0x9e37_79b9) + t as u64 * 7919) % PREFILL;
                        black_box(map.get(&key(n)));
                    })
                })
            });
            g.bench_function(BenchmarkId::new("insert", map.name()), |b| {
                b.iter_custom(|iters| {
                    let took = run(threads, iters, &|t, i| map.insert(fresh(t, i), record(i)));
                    run(threads, iters, &|t, i| {
                        map.remove(&fresh(t, i));
                    });
                    took
                })
            });
            g.bench_function(BenchmarkId::new("remove", map.name()), |b| {
                b.iter_custom(|iters| {
                    run(threads, iters, &|t, i| map.insert(fresh(t, i), record(i)));
                    run(threads, iters, &|t, i| {
                        black_box(map.remove(&fresh(t, i)));
                    })
                })
            });
            g.bench_function(BenchmarkId::new("mixed_90_10", map.name()), |b| {
                b.iter_custom(|iters| {
                    let took = run(threads, iters, &|t, i| {
                        if i % 10 == 9 {
                            // Insert a fresh key and remove the one inserted
                            // ten operations (one write) earlier.
                            map.insert(fresh(t, i), record(i));
                            if i >= 10 {
                                map.remove(&fresh(t, i - 10));
                            }
                        } else {
                            let n = (i.wrapping_mul(0x9e37_79b9) + t as u64 * 7919) % PREFILL;
                            black_box(map.get(&key(n)));
                        }
                    });
                    // Leave the map as it was: remove the last fresh key.
                    if iters >= 10 {
                        let last = (iters - 10) / 10 * 10 + 9;
                        for t in 0..threads {
                            map.remove(&fresh(t, last));
                        }
                    }
                    took
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
