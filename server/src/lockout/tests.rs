//! The memory backend's own behaviour: lock signals, bounded maps, the
//! sweep. The decisions both backends share are held to one table by the
//! parity tests (`server/tests/lockout.rs`).

use super::memory::{MemoryLockout, SHARDS};
use super::*;

const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

fn policy() -> LockoutPolicy {
    LockoutPolicy {
        max_failures: 3,
        window: 60,
        lock_time: 10,
        max_lock_time: 40,
        ip_max_failures: 10,
        ..Default::default()
    }
}

/// A stand-in for the keyed hash of a username.
fn key(user: &str) -> u64 {
    user.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Probes the gate without leaving an attempt in flight.
fn check(l: &MemoryLockout, user: &str, ip: IpAddr, now: u64) -> Gate {
    let p = policy();
    let (gate, _) = l.gate(&p, key(user), ip, now, false);
    if gate == Gate::Open {
        l.finish(&p, key(user), ip, now, Outcome::NoAnswer);
    }
    gate
}

#[test]
fn a_lock_fires_the_signal_of_the_attempts_in_flight_only() {
    let (l, p) = (MemoryLockout::new(), policy());
    let alice = key("alice");
    l.finish(&p, alice, A, 1_000, Outcome::Succeeded);
    let (gate, trusted) = l.gate(&p, alice, A, 1_001, true);
    assert_eq!((gate, trusted.is_some()), (Gate::Open, false), "the user's lock does not apply from A");
    let (gate, first) = l.gate(&p, alice, B, 1_001, true);
    let (_, second) = l.gate(&p, alice, B, 1_001, true);
    assert_eq!(gate, Gate::Open);
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(Arc::ptr_eq(&first, &second), "one signal per username");
    assert!(!first.is_fired());
    // Failures below the threshold fire nothing; the one that locks does.
    l.failure(&p, alice, B, 1_001);
    l.failure(&p, alice, B, 1_001);
    assert!(!first.is_fired());
    let (locked, _) = l.failure(&p, alice, B, 1_001);
    assert_eq!(locked, Some(Locked { seconds: 10, consecutive: 1 }));
    assert!(first.is_fired());
    for ip in [A, B, B] {
        l.finish(&p, alice, ip, 1_001, Outcome::NoAnswer);
    }
    // Once the lock has passed, a new attempt watches a new signal.
    let (gate, next) = l.gate(&p, alice, B, 1_011, true);
    assert_eq!(gate, Gate::Open);
    assert!(!next.unwrap().is_fired());
}

#[tokio::test]
async fn a_signal_fired_before_the_wait_is_not_missed() {
    let signal = LockSignal::default();
    signal.fire();
    tokio::time::timeout(std::time::Duration::from_secs(5), signal.fired()).await.expect("already fired");
    let signal = Arc::new(LockSignal::default());
    let waiter = tokio::spawn({
        let signal = Arc::clone(&signal);
        async move { signal.fired().await }
    });
    tokio::task::yield_now().await;
    signal.fire();
    tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("woken").unwrap();
}

#[test]
fn memory_is_bounded() {
    let l = MemoryLockout::new();
    let p = LockoutPolicy { max_tracked: 100, ..policy() };
    for i in 0..1_000 {
        l.failure(&p, key(&format!("user{i}")), A, 1_000 + 400 + i);
    }
    // A new name whose shard is empty is tracked without an eviction,
    // so the bound is the cap plus one per shard.
    assert!(l.tracked_users() <= 100 + SHARDS, "{}", l.tracked_users());
    // A full map still tracks, and locks, a new name.
    for _ in 0..3 {
        l.failure(&p, key("target"), A, 2_500);
    }
    assert_eq!(check(&l, "target", B, 2_500), Gate::UserLocked);
    let mut unlocked = 0;
    for _ in 0..SHARDS {
        unlocked += l.sweep_step(&p, 1_000_000).unlocked.len();
    }
    assert_eq!((l.tracked_users(), l.tracked_ips()), (0, 0));
    assert_eq!(unlocked, 1, "the sweep reports the lock that expired");
}

#[test]
fn both_backends_forget_at_the_same_idle_age() {
    let p = policy();
    assert_eq!(p.idle_time(), 120, "twice the longer of the window and the longest lock");
    let short = LockoutPolicy { window: 5, lock_time: 5, max_lock_time: 5, ..p };
    assert_eq!(short.idle_time(), 60, "at least a minute");
    // The memory backend keeps an idle user up to that age, and no longer.
    let l = MemoryLockout::new();
    l.failure(&short, key("idle"), A, 1_000);
    let sweep_all = |now| (0..SHARDS).for_each(|_| drop(l.sweep_step(&short, now)));
    sweep_all(1_059);
    assert_eq!(l.tracked_users(), 1);
    sweep_all(1_060);
    assert_eq!(l.tracked_users(), 0);
}

#[test]
fn account_keys_keep_managers_apart_and_read_back() {
    let ip = A;
    let keys = [
        Attempt::of(None, "alice", ip, 0).user,
        Attempt::of(Some("db"), "alice", ip, 0).user,
        Attempt::of(Some("dir"), "alice", ip, 0).user,
        // What a client could type to pass for db's alice, or for an
        // escaped default name.
        Attempt::of(None, "\u{1}db\u{0}alice", ip, 0).user,
        Attempt::of(None, "\u{0}alice", ip, 0).user,
        Attempt::of(Some("db"), "\u{0}alice", ip, 0).user,
    ];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(keys[0], "alice", "default users keep their keys");
    assert_eq!(account_of(&keys[1]), (Some("db"), "alice"));
    assert_eq!(account_of(&keys[3]), (None, "\u{1}db\u{0}alice"));
    assert_eq!(account_of(&keys[4]), (None, "\u{0}alice"));
}
