//! Bytes per live token record: inserts N records (default 1,000,000) into a
//! token map and reports what the heap grew by, per record, counted by a
//! wrapper around the allocator (live bytes: allocations minus frees), and
//! the growth of the process's resident set (VmRSS) beside it.
//!
//! ```sh
//! cargo run --release -p ropc-benches --example token_memory -- [ropc|sharded_rwlock|dashmap] [N]
//! ```
//!
//! `ropc` is the server's `ShardedTokenMap` (the default); the other two are
//! the alternatives of the `token_map` bench, for comparison. Keys are
//! SHA-256 digests of random 256-bit tokens, as in the server.

use dashmap::DashMap;
use parking_lot::RwLock;
use ring::rand::SecureRandom as _;
use ropc_core::{TokenKey, TokenKind, TokenRecord};
use ropc_server::store::ShardedTokenMap;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};

/// mimalloc (the server's allocator), counting live bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to mimalloc unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn record(n: u64) -> TokenRecord {
    ropc_benches::record(n, if n % 2 == 0 { TokenKind::Access } else { TokenKind::Refresh })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "ropc".into());
    let n: u64 = args.next().map_or(1_000_000, |v| v.parse().expect("N must be a number"));

    // The keys first, so that their own memory is not counted.
    let rng = ring::rand::SystemRandom::new();
    let keys: Vec<TokenKey> = (0..n)
        .map(|_| {
            let mut token = [0u8; 32];
            rng.fill(&mut token).expect("random");
            let d = ring::digest::digest(&ring::digest::SHA256, &token);
            let mut k = [0u8; TokenKey::LEN];
            k.copy_from_slice(&d.as_ref()[..TokenKey::LEN]);
            TokenKey(k)
        })
        .collect();

    let (live0, rss0) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    let report = |extra: String| {
        let live = LIVE.load(Ordering::Relaxed) - live0;
        let rss = rss_bytes() as isize - rss0 as isize;
        println!(
            "{which}: {n} records; heap +{live} bytes = {:.1} bytes/record; RSS +{rss} bytes = {:.1} bytes/record{extra}",
            live as f64 / n as f64,
            rss as f64 / n as f64
        );
    };
    match which.as_str() {
        "ropc" => {
            let map = ShardedTokenMap::default();
            for (i, k) in keys.iter().enumerate() {
                map.insert(*k, record(i as u64));
            }
            assert_eq!(map.len() as u64, n);
            assert!(keys.iter().step_by(1000).all(|k| map.get_now(k).is_some()));
            // Let the epoch collector free the tables that growth replaced.
            for _ in 0..256 {
                drop(crossbeam_epoch::pin());
                crossbeam_epoch::pin().flush();
            }
            report(format!(
                "; tables {} bytes = {:.1} bytes/record",
                map.table_bytes(),
                map.table_bytes() as f64 / n as f64
            ));
            std::hint::black_box(&map);
        }
        "sharded_rwlock" => {
            let shards: Vec<RwLock<HashMap<TokenKey, TokenRecord>>> = (0..64).map(|_| RwLock::default()).collect();
            for (i, k) in keys.iter().enumerate() {
                shards[usize::from(k.0[8]) & 63].write().insert(*k, record(i as u64));
            }
            report(String::new());
            std::hint::black_box(&shards);
        }
        "dashmap" => {
            let map: DashMap<TokenKey, TokenRecord> = DashMap::new();
            for (i, k) in keys.iter().enumerate() {
                map.insert(*k, record(i as u64));
            }
            report(String::new());
            std::hint::black_box(&map);
        }
        other => panic!("unknown map {other:?}: ropc, sharded_rwlock or dashmap"),
    }
}
