//! The lockout's two backends, in memory and in Redis, held against each
//! other: one table of cases, run on both, expecting the same decisions.

use crate::support::Redis;
use ropc_server::lockout::{Attempt, Gate, Lockout, LockoutPolicy, Outcome};
use ropc_server::store::{RedisConfig, RedisConn};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const A: &str = "192.0.2.1";
const B: &str = "198.51.100.7";

/// One step of a case, at a time of its own.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// An attempt begins, stays in flight under this label, and its gate is as given.
    Begin(&'static str, &'static str, &'static str, u64, Gate),
    /// The attempt under the label ends so.
    Finish(&'static str, Outcome),
    /// A whole wrong password (let in, then failed).
    Fail(&'static str, &'static str, u64),
    /// A whole login (let in, then succeeded).
    Succeed(&'static str, &'static str, u64),
    /// The gate of an attempt, which then ends without an answer.
    Check(&'static str, &'static str, u64, Gate),
    /// A failure against the IP alone.
    IpFailure(&'static str, u64),
}

use Op::*;

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

const OPEN: Gate = Gate::Open;
const LOCKED: Gate = Gate::UserLocked;

fn throttled(retry_after: u64) -> Gate {
    Gate::IpThrottled { retry_after }
}

/// The cases: what the README and docs/security.md promise of the lockout.
fn cases() -> Vec<(&'static str, Vec<Op>)> {
    let mut backoff = vec![
        Fail("alice", A, 1_000),
        Fail("alice", A, 1_000),
        Check("alice", A, 1_000, OPEN),
        Fail("alice", A, 1_000),
        Check("alice", A, 1_000, LOCKED),
        Check("alice", B, 1_000, LOCKED),
        Check("bob", A, 1_000, OPEN),
        Check("alice", A, 1_009, LOCKED),
        Check("alice", A, 1_010, OPEN),
    ];
    // Each further lock doubles (20, then 40), then stays at the cap (40).
    let mut now = 1_010;
    for len in [20, 40, 40] {
        backoff.extend([Fail("alice", A, now), Fail("alice", A, now), Fail("alice", A, now)]);
        backoff.push(Check("alice", A, now + len - 1, LOCKED));
        now += len;
        backoff.push(Check("alice", A, now, OPEN));
    }
    let mut ip = Vec::new();
    for user in ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"] {
        ip.push(Fail(user, A, 1_000));
    }
    ip.extend([
        Check("someone", A, 1_000, OPEN),
        Fail("u9", A, 1_000),
        Check("someone", A, 1_000, throttled(60)),
        Check("someone", B, 1_000, OPEN),
        Check("someone", A, 1_059, throttled(1)),
        Check("someone", A, 1_060, OPEN),
    ]);
    let mut clean = Vec::new();
    for i in 0..12 {
        clean.push(Begin(
            ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11"][i],
            "svc",
            A,
            1_000,
            OPEN,
        ));
    }
    clean.push(Check("svc", A, 1_000, Gate::Crowded));
    clean.push(Finish("s0", Outcome::Succeeded));
    clean.push(Check("svc", A, 1_000, OPEN));
    vec![
        ("locks after the threshold, and expires with back-off", backoff),
        (
            "a trusted IP passes the user's lock",
            vec![
                Succeed("alice", A, 1_000),
                Fail("alice", B, 1_001),
                Fail("alice", B, 1_001),
                Fail("alice", B, 1_001),
                Check("alice", B, 1_002, LOCKED),
                Check("alice", A, 1_002, OPEN),
                // Its failures during the lock do not extend it.
                Fail("alice", A, 1_003),
                Check("alice", B, 1_011, OPEN),
            ],
        ),
        (
            "a trusted login releases only its own slot",
            vec![
                Succeed("alice", A, 1_000),
                Fail("alice", B, 1_001),
                Begin("g1", "alice", B, 1_002, OPEN),
                Begin("g2", "alice", B, 1_002, OPEN),
                Check("alice", B, 1_002, LOCKED),
                Begin("owner", "alice", A, 1_002, OPEN),
                Finish("owner", Outcome::NoAnswer),
                Check("alice", B, 1_002, LOCKED),
            ],
        ),
        ("an IP is throttled well above the user threshold", ip),
        (
            "the sliding window forgets old failures",
            vec![
                Fail("alice", A, 1_000),
                Fail("alice", A, 1_000),
                Fail("alice", A, 1_200),
                Check("alice", A, 1_200, OPEN),
                // Half a window on, the previous window still weighs half.
                Fail("alice", A, 1_230),
                Check("alice", A, 1_230, OPEN),
                Fail("alice", A, 1_231),
                Check("alice", A, 1_231, LOCKED),
            ],
        ),
        (
            "concurrent guesses cannot outrun the threshold",
            vec![
                Fail("alice", A, 1_000),
                Begin("g1", "alice", A, 1_000, OPEN),
                Begin("g2", "alice", A, 1_000, OPEN),
                Check("alice", A, 1_000, LOCKED),
                Finish("g1", Outcome::Failed),
                Finish("g2", Outcome::Failed),
                Check("alice", A, 1_001, LOCKED),
                Begin("b", "bob", A, 1_000, OPEN),
                Finish("b", Outcome::Succeeded),
                Check("bob", A, 1_000, OPEN),
            ],
        ),
        ("a clean record caps its logins in flight at four times the threshold", clean),
        (
            "an IP failure alone throttles, and locks nobody",
            vec![
                IpFailure(A, 1_000),
                IpFailure(A, 1_000),
                IpFailure(A, 1_000),
                IpFailure(A, 1_000),
                Check("carol", A, 1_000, OPEN),
                IpFailure(A, 1_000),
                IpFailure(A, 1_000),
                IpFailure(A, 1_000),
                IpFailure(A, 1_000),
                IpFailure(A, 1_000),
                IpFailure(A, 1_000),
                Check("carol", A, 1_000, throttled(60)),
                Check("carol", B, 1_000, OPEN),
            ],
        ),
    ]
}

/// Runs `ops` on `lockout`; returns every gate seen, with where.
async fn run(lockout: &Lockout, ops: &[Op]) -> Vec<(usize, Gate)> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut in_flight: HashMap<&str, Attempt> = HashMap::new();
    let mut gates = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Begin(label, user, from, now, expected) => {
                let mut attempt = Attempt::new(user, ip(from), now);
                let gate = lockout.begin(&mut attempt).await.unwrap().gate;
                assert_eq!(gate, expected, "step {step}: {op:?}");
                gates.push((step, gate));
                in_flight.insert(label, attempt);
            }
            Finish(label, outcome) => {
                let attempt = in_flight.remove(label).unwrap();
                lockout.finish(&attempt, outcome).await;
            }
            Fail(user, from, now) | Succeed(user, from, now) => {
                let mut attempt = Attempt::new(user, ip(from), now);
                let gate = lockout.begin(&mut attempt).await.unwrap().gate;
                assert_eq!(gate, OPEN, "step {step}: {op:?}");
                let outcome = if matches!(op, Fail(..)) { Outcome::Failed } else { Outcome::Succeeded };
                lockout.finish(&attempt, outcome).await;
            }
            Check(user, from, now, expected) => {
                let mut attempt = Attempt::new(user, ip(from), now);
                let gate = lockout.begin(&mut attempt).await.unwrap().gate;
                if gate == OPEN {
                    lockout.finish(&attempt, Outcome::NoAnswer).await;
                }
                assert_eq!(gate, expected, "step {step}: {op:?}");
                gates.push((step, gate));
            }
            IpFailure(from, now) => lockout.ip_failure(ip(from), now, "test").await,
        }
    }
    gates
}

fn shared(redis: &Redis, prefix: &str) -> Arc<RedisConn> {
    let config = RedisConfig {
        nodes: vec![redis.url()],
        cluster: false,
        prefix: prefix.to_owned(),
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
    };
    let scripts = ropc_server::store::redis::SCRIPTS.iter().chain(&ropc_server::lockout::redis::SCRIPTS).copied();
    Arc::new(RedisConn::new(config, scripts.collect()))
}

#[tokio::test]
async fn memory_and_redis_make_the_same_decisions() {
    let redis = Redis::start();
    for (n, (name, ops)) in cases().into_iter().enumerate() {
        let memory = run(&Lockout::new(policy(), None), &ops).await;
        let in_redis = run(&Lockout::new(policy(), Some(shared(&redis, &format!("case{n}:")))), &ops).await;
        assert_eq!(memory, in_redis, "{name}");
        assert!(!memory.is_empty(), "{name}: the case checks something");
    }
}

/// A changed decision in either backend fails the table: the table is not
/// a tautology of the code it runs.
#[tokio::test]
async fn a_different_threshold_fails_the_table() {
    let lockout = Lockout::new(LockoutPolicy { max_failures: 4, ..policy() }, None);
    let (_, ops) = cases().into_iter().next().unwrap();
    let failed = tokio::spawn(async move { run(&lockout, &ops).await }).await;
    assert!(failed.is_err(), "the back-off case passed with another threshold");
}

/// With the shared lockout each attempt in flight is a slot of its own:
/// its finish frees that slot and no other (a finish for an id never
/// admitted, or a second one, frees nothing), and a slot whose finish never
/// comes stops counting 60 s after its own attempt began, even while the
/// user's other attempts keep being admitted.
#[tokio::test]
async fn a_slot_in_flight_is_the_attempts_own_and_ends_60_s_after_it_began() {
    let redis = Redis::start();
    // One failure locks; a clean user may have 4 attempts in flight.
    let p = LockoutPolicy { max_failures: 1, ip_max_failures: 0, ..LockoutPolicy::default() };
    let lockout = Lockout::new(p, Some(shared(&redis, "slots:")));
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let begin = |now: u64| {
        let lockout = &lockout;
        async move {
            let mut attempt = Attempt::new("alice", ip, now);
            let gate = lockout.begin(&mut attempt).await.unwrap().gate;
            (gate, attempt)
        }
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        let (gate, attempt) = begin(1_000).await;
        assert_eq!(gate, Gate::Open);
        held.push(attempt);
    }
    let (gate, never) = begin(1_000).await;
    assert_eq!(gate, Gate::Crowded, "4 in flight fill a clean user's slots");
    // A finish for an attempt never admitted frees nothing.
    lockout.finish(&Attempt { now: 1_001, ..never }, Outcome::NoAnswer).await;
    assert_eq!(begin(1_001).await.0, Gate::Crowded);
    // The first attempt ends (twice: the second frees nothing more).
    lockout.finish(&held[0], Outcome::NoAnswer).await;
    lockout.finish(&held[0], Outcome::NoAnswer).await;
    let (gate, late) = begin(1_030).await;
    assert_eq!(gate, Gate::Open, "its slot, and only its, came back");
    assert_eq!(begin(1_030).await.0, Gate::Crowded);
    // The three attempts of 1,000 never end. At 1,061 their slots stop
    // counting, though an attempt was admitted at 1,030; that one's slot
    // still counts, up to 1,090.
    drop(late);
    for (now, free) in [(1_060, 0), (1_061, 3), (1_090, 3), (1_091, 4)] {
        let mut admitted = Vec::new();
        loop {
            let (gate, attempt) = begin(now).await;
            if gate != Gate::Open {
                break;
            }
            admitted.push(attempt);
        }
        assert_eq!(admitted.len(), free, "slots free at {now}");
        for attempt in admitted {
            lockout.finish(&attempt, Outcome::NoAnswer).await;
        }
    }
    // With a failure on record, the cap is the threshold's and a refusal
    // is a guess (`UserLocked`, counted against the IP), not `Crowded`.
    lockout.set_policy(LockoutPolicy { max_failures: 2, ..p });
    let mut first = Attempt::new("bob", ip, 2_000);
    assert_eq!(lockout.begin(&mut first).await.unwrap().gate, Gate::Open);
    lockout.finish(&first, Outcome::Failed).await;
    let mut second = Attempt::new("bob", ip, 2_000);
    assert_eq!(lockout.begin(&mut second).await.unwrap().gate, Gate::Open);
    assert_eq!(lockout.begin(&mut Attempt::new("bob", ip, 2_000)).await.unwrap().gate, Gate::UserLocked);
}
