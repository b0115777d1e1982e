//! Attack resistance over HTTP: brute force, enumeration, slow and greedy
//! clients, hostile bodies, and secrets kept out of the logs.

use crate::support::{connect_from, parse_reply, raw, standard_config, standard_users, token_from, Server};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const LOCKOUT: &str = "\n[credential_manager.lockout]\nmax_failures = 3\nwindow = 60\nlock_time = 2\nmax_lock_time = 8\nip_max_failures = 8\n";
pub(crate) const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
pub(crate) const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const BOTNET: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
pub(crate) const LEGACY: (&str, &str) = ("legacy", "legacy-secret");

pub(crate) fn login(user: &str, password: &str) -> String {
    format!("grant_type=password&username={user}&password={password}")
}

/// The value of `series` in a `/metrics` text.
fn metric(text: &str, series: &str) -> f64 {
    crate::support::sample(text, series).unwrap()
}

/// `config` with argon2id at m=16384, t=6 for new hashes and the dummy hash
/// (tens of milliseconds): unknown users' guesses wait in the queue long
/// enough for a test to act meanwhile.
fn slow_dummy_hash(config: String) -> String {
    config.replace("m_cost = 256", "m_cost = 16384").replace("t_cost = 1", "t_cost = 6")
}

/// [`slow_dummy_hash`] with one hash worker and the `[credential_manager.lockout]`
/// lines `lockout`. The queue is bounded by its length only: these tests
/// queue bursts on purpose, longer than `max_queue_wait_ms` would let wait.
pub(crate) fn one_slow_worker(config: String, lockout: &str) -> String {
    slow_dummy_hash(config)
        + "\n[hash_pool]\nworkers = 1\nmax_queue_wait_ms = 0\n\n[credential_manager.lockout]\n"
        + lockout
}

/// Sends a keep-alive login with the `legacy` client's Basic header from
/// `from` and returns the connection unread, for the test to hang up.
pub(crate) async fn send_login(addr: std::net::SocketAddr, from: IpAddr, body: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let auth = ropc_core::basic::encode(LEGACY.0, LEGACY.1);
    let request = format!(
        "POST /oauth/v2/oauth-token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = connect_from(addr, Some(from)).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Waits until no hash runs or waits (at most `limit`).
async fn wait_for_an_idle_pool(server: &Server, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let m = server.get("/metrics").await.body;
        if metric(&m, "ropc_hash_busy_workers") == 0.0 && metric(&m, "ropc_hash_queue_length") == 0.0 {
            return;
        }
        assert!(Instant::now() < deadline, "the pool never went idle:\n{m}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn brute_force_locks_the_account_then_releases_it() {
    let server = Server::start(&format!("{}{LOCKOUT}", standard_config("")), &standard_users());
    let wrong = token_from(&server, ATTACKER, &login("alice", "guess"), LEGACY).await;
    assert_eq!((wrong.status, wrong.error()), (400, "invalid_grant".into()));
    for _ in 0..2 {
        token_from(&server, ATTACKER, &login("alice", "guess"), LEGACY).await;
    }
    assert!(server.log_shows("event=\"account_locked\""), "{}", server.logs());
    // Locked: even the right password gets the wrong-password answer, byte
    // for byte, and no hash is spent on it.
    let before = server.get("/metrics").await.body;
    let locked = token_from(&server, ATTACKER, &login("alice", "wonderland"), LEGACY).await;
    assert_eq!((locked.status, &locked.body), (wrong.status, &wrong.body));
    for _ in 0..3 {
        token_from(&server, ATTACKER, &login("alice", "guess"), LEGACY).await;
    }
    let after = server.get("/metrics").await.body;
    assert_eq!(metric(&after, "ropc_hash_completed_total"), metric(&before, "ropc_hash_completed_total"));
    assert_eq!(metric(&after, "ropc_lockout_refused_total") - metric(&before, "ropc_lockout_refused_total"), 4.0);
    assert_eq!(metric(&after, "ropc_lockout_locks_total"), 1.0);
    assert!(server.log_shows("reason=\"locked_user\""));
    // Other users are not affected (from another IP: the attacker's 3
    // failures and 4 refused guesses are one short of its IP's 8).
    assert_eq!(
        token_from(&server, BOTNET, &login("j%C3%B6rg", "p%C3%A4ssw%C3%B6rd%3A+with+space"), LEGACY).await.status,
        200
    );
    // The lock expires by itself (2 s, in whole seconds). Polled from an
    // IP of its own, few enough times that its refused guesses do not
    // throttle it.
    const POLLER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = token_from(&server, POLLER, &login("alice", "wonderland"), LEGACY).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(Instant::now() < deadline, "the lock never expired");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(server.log_shows("event=\"account_unlocked\"") || server.log_shows("status=200"));

    // Unknown usernames lock the same way, so a lock reveals nothing.
    let first = token_from(&server, BOTNET, &login("ghost", "x"), LEGACY).await;
    for _ in 0..3 {
        token_from(&server, BOTNET, &login("ghost", "x"), LEGACY).await;
    }
    let after = token_from(&server, BOTNET, &login("ghost", "x"), LEGACY).await;
    assert_eq!((after.status, &after.body), (first.status, &first.body));
}

#[tokio::test]
async fn a_burst_of_guesses_spends_no_hash_once_the_account_locks() {
    // One worker and a dummy hash (an unknown user) of tens of milliseconds,
    // so that the burst waits in the queue behind the hashes that lock it.
    let config = one_slow_worker(standard_config(""), "max_failures = 3\nlock_time = 60\nip_max_failures = 1000\n");
    let server = Server::start(&config, &standard_users());
    // The client's secret is verified (and remembered) before the burst.
    let wrong = token_from(&server, ATTACKER, &login("nobody", "guess"), LEGACY).await;
    assert_eq!((wrong.status, wrong.error()), (400, "invalid_grant".into()));
    let before = server.get("/metrics").await.body;
    // A clean record admits 4 x max_failures = 12 attempts at once.
    let burst: Vec<_> = (0..12)
        .map(|_| {
            let (addr, body) = (server.addr, login("ghost", "guess"));
            tokio::spawn(async move { crate::support::token_to(addr, ATTACKER, &body, LEGACY).await })
        })
        .collect();
    let mut replies = Vec::new();
    for r in burst {
        replies.push(r.await.unwrap());
    }
    for r in &replies {
        assert_eq!((r.status, &r.body), (wrong.status, &wrong.body), "every answer is the wrong password's");
    }
    // The job taken before the lock may still be hashing, and the skipped
    // ones are counted as the worker reaches them: wait for an idle pool.
    wait_for_an_idle_pool(&server, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = server.get("/metrics").await.body;
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    assert_eq!(metric(&after, "ropc_lockout_locks_total"), 1.0);
    // Three failures lock the account, and the worker has taken the fourth
    // job by then. Without the lock signal all twelve would be hashed.
    let (hashed, skipped) = (delta("ropc_hash_completed_total"), delta("ropc_hash_skipped_total"));
    assert!((3.0..=5.0).contains(&hashed), "{hashed} hashes for a burst that locked after 3");
    assert!(skipped >= 6.0, "{skipped} queued hashes skipped");
    assert!(hashed + skipped <= 12.0, "{hashed} + {skipped}: a job counted twice");
    assert!(delta("ropc_lockout_refused_total") >= skipped, "the abandoned attempts count as refused");
}

#[tokio::test]
async fn clients_that_hang_up_while_their_hash_waits_do_not_lock_the_user() {
    hang_ups_leave_no_attempt_in_flight(standard_config("")).await;
}

/// Four clients that hang up while their hashes wait must not keep their
/// in-flight slots (with `max_failures = 1` a clean record admits 4 at
/// once; if the slots stayed taken, every later attempt from an untrusted
/// IP would be refused). `config` is a standard config with any store.
pub(crate) async fn hang_ups_leave_no_attempt_in_flight(config: String) {
    let config = one_slow_worker(config, "max_failures = 1\nlock_time = 60\nip_max_failures = 3\n");
    let server = Server::start(&config, &standard_users());
    // The client's secret is verified (and remembered) first.
    assert_eq!(token_from(&server, HOME, &login("nobody", "x"), LEGACY).await.status, 400);
    let hashed = metric(&server.get("/metrics").await.body, "ropc_hash_completed_total");
    // Three slow guesses at an unknown user keep the one worker busy, so
    // that alice's four (her hash is fast) wait in the queue.
    let blockers: Vec<_> = (0..3)
        .map(|_| {
            let (addr, body) = (server.addr, login("ghost", "x"));
            tokio::spawn(async move { crate::support::token_to(addr, HOME, &body, LEGACY).await })
        })
        .collect();
    crate::support::wait_until_hashes_submitted(&server, hashed + 3.0).await;
    let mut hung_up = Vec::new();
    for _ in 0..4 {
        hung_up.push(send_login(server.addr, ATTACKER, &login("alice", "guess")).await);
    }
    crate::support::wait_until_hashes_submitted(&server, hashed + 7.0).await;
    drop(hung_up);
    for b in blockers {
        assert_eq!(b.await.unwrap().status, 400);
    }
    // Wait until the pool has dealt with all four (hashed or skipped).
    wait_for_an_idle_pool(&server, Duration::from_secs(20)).await;
    // alice has no failures and nothing in flight, and hanging up counted
    // nothing against the IP (4 would pass ip_max_failures): her password
    // works from the IP that hung up, which she never logged in from.
    let m = server.get("/metrics").await.body;
    assert!(metric(&m, "ropc_hash_skipped_total") >= 4.0, "the hung-up clients' hashes were skipped:\n{m}");
    assert!(!server.log_shows("event=\"account_locked\" user=\"alice\""), "{}", server.logs());
    let r = token_from(&server, ATTACKER, &login("alice", "wonderland"), LEGACY).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_hang_up_after_the_hash_started_counts_against_the_ip() {
    hang_up_after_the_hash_started(standard_config("")).await;
}

/// A client that hangs up once its hash is running has cost a hash: that
/// counts against its IP (with `ip_max_failures = 1`, it is throttled), not
/// against the user (ghost, `max_failures = 1`, is not locked).
pub(crate) async fn hang_up_after_the_hash_started(config: String) {
    let config = one_slow_worker(config, "max_failures = 1\nip_max_failures = 1\n");
    let server = Server::start(&config, &standard_users());
    // The client's secret is verified first (a login that succeeded would
    // queue a hash upgrade, which the wait below could take for the guess).
    assert_eq!(token_from(&server, HOME, &login("nobody", "x"), LEGACY).await.status, 400);
    let stream = send_login(server.addr, ATTACKER, &login("ghost", "guess")).await;
    // Hang up once the (slow, dummy) hash is running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server.get("/metrics").await.body, "ropc_hash_busy_workers") < 1.0 {
        assert!(Instant::now() < deadline, "the hash never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(stream);
    // A right password from that IP (a success counts nothing) is soon
    // refused with 429: the hang-up was counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = token_from(&server, ATTACKER, &login("alice", "wonderland"), LEGACY).await;
        if r.status == 429 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(Instant::now() < deadline, "the hang-up was never counted against the IP:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Counted by the hang-up, not by an answered failure (which would also
    // have locked ghost).
    assert!(!server.log_shows("event=\"account_locked\" user=\"ghost\""), "{}", server.logs());
}

/// A wrong password against a fast legacy hash is held back until a hash at
/// the configured cost would have answered; a client that hangs up in that
/// time must not take its guess uncounted.
#[tokio::test]
async fn hanging_up_during_a_padded_answer_still_counts_the_guess() {
    let config = slow_dummy_hash(standard_config(""))
        + "\n[credential_manager.lockout]\nmax_failures = 2\nlock_time = 60\nip_max_failures = 1000\n";
    // {SHA} of "pw-legacy": verified in microseconds.
    let users = format!("{}sha:{{SHA}}oLisiXhAYHTMampGuEeXZHN8Y1Y=\n", standard_users());
    let server = Server::start(&config, &users);
    assert_eq!(token_from(&server, HOME, &login("nobody", "x"), LEGACY).await.status, 400);
    for _ in 0..3 {
        let stream = send_login(server.addr, ATTACKER, &login("sha", "guess")).await;
        // The {SHA} check is done; the answer waits for the padding.
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(stream);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The guesses counted (two lock): even the right password from an IP
    // the user never logged in from gets the wrong-password answer.
    let r = token_from(&server, BOTNET, &login("sha", "pw-legacy"), LEGACY).await;
    assert_eq!(r.status, 400, "the guesses were not counted: {}", r.body);
    assert_eq!(r.error(), "invalid_grant");
    assert!(server.log_shows("event=\"account_locked\" user=\"sha\""), "{}", server.logs());
}

#[tokio::test]
async fn the_owners_usual_ip_gets_through_a_lock() {
    let server = Server::start(&format!("{}{LOCKOUT}", standard_config("")), &standard_users());
    assert_eq!(token_from(&server, HOME, &login("alice", "wonderland"), LEGACY).await.status, 200);
    for _ in 0..3 {
        token_from(&server, ATTACKER, &login("alice", "guess"), LEGACY).await;
    }
    assert_eq!(token_from(&server, ATTACKER, &login("alice", "wonderland"), LEGACY).await.status, 400);
    assert_eq!(token_from(&server, HOME, &login("alice", "wonderland"), LEGACY).await.status, 200);
}

#[tokio::test]
async fn one_ip_failing_too_often_gets_429() {
    let server = Server::start(&format!("{}{LOCKOUT}", standard_config("")), &standard_users());
    for i in 0..8 {
        let r = token_from(&server, BOTNET, &login(&format!("user{i}"), "x"), LEGACY).await;
        assert_eq!(r.status, 400);
    }
    let r = token_from(&server, BOTNET, &login("alice", "wonderland"), LEGACY).await;
    assert_eq!((r.status, r.error()), (429, "temporarily_unavailable".into()), "{}", r.body);
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(server.log_shows("event=\"ip_throttled\""));
    // Another IP is unaffected.
    assert_eq!(token_from(&server, HOME, &login("alice", "wonderland"), LEGACY).await.status, 200);
}

#[tokio::test]
async fn guesses_at_a_locked_account_count_against_the_ip() {
    locked_guesses_count_against_the_ip(standard_config("")).await;
}

/// A guess refused by a user's lock spends no hash, but it is a failed
/// login from its IP all the same: an IP that goes on hammering a locked
/// account is throttled, and then answered at once with `429`, like one
/// that sprays guesses over many accounts. `config` is a standard config
/// with any store.
pub(crate) async fn locked_guesses_count_against_the_ip(config: String) {
    let config = config + "\n[credential_manager.lockout]\nmax_failures = 1\nlock_time = 60\nip_max_failures = 4\n";
    let server = Server::start(&config, &standard_users());
    // One failure locks alice (and is the IP's first).
    let wrong = token_from(&server, ATTACKER, &login("alice", "guess"), LEGACY).await;
    assert_eq!((wrong.status, wrong.error()), (400, "invalid_grant".into()), "{}", wrong.body);
    // Three refused guesses: the wrong password's answer, the IP's second
    // to fourth failures; the fourth throttles it.
    for _ in 0..3 {
        let r = token_from(&server, ATTACKER, &login("alice", "guess"), LEGACY).await;
        assert_eq!((r.status, &r.body), (wrong.status, &wrong.body));
    }
    assert!(server.log_shows("event=\"ip_throttled\""), "{}", server.logs());
    assert!(server.log_shows("too many refused logins from one IP"), "{}", server.logs());
    // Throttled: anything from that IP now gets 429, a right password for
    // another user too.
    let r = token_from(&server, ATTACKER, &login("j%C3%B6rg", "p%C3%A4ssw%C3%B6rd%3A+with+space"), LEGACY).await;
    assert_eq!((r.status, r.error()), (429, "temporarily_unavailable".into()), "{}", r.body);
    assert!(r.header("retry-after").is_some(), "{}", r.body);
    // Only that IP: the same login from another one works.
    let r = token_from(&server, BOTNET, &login("j%C3%B6rg", "p%C3%A4ssw%C3%B6rd%3A+with+space"), LEGACY).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Logins over a clean record's cap of attempts in flight (a burst to a
/// shared account) get the wrong-password answer without a hash, but are
/// no guesses: they count against no IP.
#[tokio::test]
async fn logins_over_a_clean_records_cap_count_against_no_ip() {
    // One failure locks, so a clean record admits 4 at once; one failure
    // from an IP throttles it.
    let config = one_slow_worker(standard_config(""), "max_failures = 1\nlock_time = 60\nip_max_failures = 1\n");
    let server = Server::start(&config, &standard_users());
    // The client's secret is verified (and remembered) first, from HOME.
    assert_eq!(token_from(&server, HOME, &login("nobody", "x"), LEGACY).await.status, 400);
    let hashed = metric(&server.get("/metrics").await.body, "ropc_hash_completed_total");
    // A slow guess (unknown user, from a third IP: HOME is throttled now)
    // keeps the one worker busy...
    let blocker = {
        let (addr, body) = (server.addr, login("ghost", "x"));
        tokio::spawn(async move { crate::support::token_to(addr, BOTNET, &body, LEGACY).await })
    };
    crate::support::wait_until_hashes_submitted(&server, hashed + 1.0).await;
    // ...so that alice's four right-password logins from ATTACKER wait in
    // the queue, and a fifth is over her clean record's cap.
    let logins: Vec<_> = (0..4)
        .map(|_| {
            let (addr, body) = (server.addr, login("alice", "wonderland"));
            tokio::spawn(async move { crate::support::token_to(addr, ATTACKER, &body, LEGACY).await })
        })
        .collect();
    crate::support::wait_until_hashes_submitted(&server, hashed + 5.0).await;
    let over = token_from(&server, ATTACKER, &login("alice", "wonderland"), LEGACY).await;
    assert_eq!((over.status, over.error()), (400, "invalid_grant".into()), "{}", over.body);
    assert_eq!(blocker.await.unwrap().status, 400);
    for l in logins {
        assert_eq!(l.await.unwrap().status, 200);
    }
    // Nothing counted against ATTACKER: it is not throttled.
    let r = token_from(&server, ATTACKER, &login("j%C3%B6rg", "p%C3%A4ssw%C3%B6rd%3A+with+space"), LEGACY).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!server.log_shows("event=\"ip_throttled\" ip=127.0.0.2"), "{}", server.logs());
}

/// Sends a guess at the locked `ghost` from ATTACKER and returns its
/// connection, unread, once the lockout has refused it.
async fn refused_guess_at_ghost(server: &Server) -> tokio::net::TcpStream {
    let refused = metric(&server.get("/metrics").await.body, "ropc_lockout_refused_total");
    let stream = send_login(server.addr, ATTACKER, &login("ghost", "x")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server.get("/metrics").await.body, "ropc_lockout_refused_total") == refused {
        assert!(Instant::now() < deadline, "the guess was never refused");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stream
}

#[tokio::test]
async fn a_refused_guess_counts_against_the_ip_when_its_client_hangs_up() {
    hung_up_refused_guess_counts(standard_config("")).await;
}

/// A guess refused by a lock whose client hangs up before the (padded)
/// answer is due still counts against its IP. `config` is a standard
/// config with any store.
pub(crate) async fn hung_up_refused_guess_counts(config: String) {
    // A dummy hash of some 0.3 s: the refused answer is held that long, so
    // that the hang-up comes well before it even on a busy machine.
    let config = one_slow_worker(config, "max_failures = 1\nlock_time = 60\nip_max_failures = 2\n")
        .replace("t_cost = 6", "t_cost = 40");
    let server = Server::start(&config, &standard_users());
    // One slow guess locks ghost (the IP's first failure) and sets the
    // typical verification time, which a refused answer is held for, to
    // the slow dummy hash's.
    let wrong = token_from(&server, ATTACKER, &login("ghost", "x"), LEGACY).await;
    assert_eq!(wrong.status, 400);
    // Hang up once the guess is refused, long before its answer is due.
    let stream = refused_guess_at_ghost(&server).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let hung_up = Instant::now();
    drop(stream);
    // The IP's second failure throttles it: a right password is refused.
    loop {
        let r = token_from(&server, ATTACKER, &login("alice", "wonderland"), LEGACY).await;
        if r.status == 429 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(Instant::now() < deadline, "the hung-up guess was never counted:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!("counted {:?} after the hang-up", hung_up.elapsed());
    // The hung-up guess was never answered (so its request went away, and
    // it was the hang-up that counted it): ghost's one answered failure is
    // the first guess's.
    // (The log is read from the server's output by another thread: wait
    // for the first answer's line, and past when the second's would be.)
    assert!(server.log_shows("user=\"ghost\" status=400"), "{}", server.logs());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let logs = server.logs();
    let answered =
        logs.lines().filter(|l| l.contains("event=\"login_failure\"") && l.contains("user=\"ghost\"")).count();
    assert_eq!(answered, 1, "{logs}");
}

/// A refused guess whose client hangs up before a guess let through would
/// have had its hash started (the queue is busy) counts nothing, as such a
/// guess would count nothing: a hang-up does not tell a locked account.
#[tokio::test]
async fn a_refused_guess_hung_up_before_a_hash_would_start_counts_nothing() {
    let config = one_slow_worker(standard_config(""), "max_failures = 1\nlock_time = 60\nip_max_failures = 2\n");
    let server = Server::start(&config, &standard_users());
    // One failure locks ghost: ATTACKER's first.
    assert_eq!(token_from(&server, ATTACKER, &login("ghost", "x"), LEGACY).await.status, 400);
    let hashed = metric(&server.get("/metrics").await.body, "ropc_hash_completed_total");
    // Three slow guesses from three other IPs: one hashing, two queued.
    let blockers: Vec<_> = (5..8)
        .map(|i| {
            let (addr, body) = (server.addr, login(&format!("nobody{i}"), "x"));
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, i));
            tokio::spawn(async move { crate::support::token_to(addr, from, &body, LEGACY).await })
        })
        .collect();
    crate::support::wait_until_hashes_submitted(&server, hashed + 3.0).await;
    // A guess at ghost, refused, and hung up at once: a guess let through
    // would still wait two hashes for its turn.
    let stream = refused_guess_at_ghost(&server).await;
    drop(stream);
    for b in blockers {
        assert_eq!(b.await.unwrap().status, 400);
    }
    // Counted, it would have been ATTACKER's second failure (429 now).
    let r = token_from(&server, ATTACKER, &login("alice", "wonderland"), LEGACY).await;
    assert_eq!(r.status, 200, "{}\n{}", r.body, server.logs());
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // deliberately: no other test's server runs meanwhile
async fn wrong_password_unknown_user_and_locked_user_look_alike() {
    // A real hash cost, so that the hash and not the noise sets the time.
    // Timing is compared within this server; keep the other tests' servers
    // off the CPU meanwhile.
    let _alone = crate::support::exclusive();
    let config = standard_config("").replace("m_cost = 256", "m_cost = 8192")
        + "\n[credential_manager.lockout]\nmax_failures = 3\nlock_time = 600\nmax_lock_time = 600\nip_max_failures = 100000\n";
    let params = ropc_hash::HashParams { m_cost: 8192, t_cost: 1, p_cost: 1 };
    let users = format!("alice:{}\n", ropc_hash::hash_password(b"wonderland", params).unwrap());
    let server = Server::start_unshared(&config, &users);
    // alice trusts HOME; the attacker locks her for everyone else.
    assert_eq!(token_from(&server, HOME, &login("alice", "wonderland"), LEGACY).await.status, 200);
    for _ in 0..3 {
        token_from(&server, ATTACKER, &login("alice", "guess"), LEGACY).await;
    }
    let time = |from, body: String| {
        let server = &server;
        async move {
            let start = Instant::now();
            let r = token_from(server, from, &body, LEGACY).await;
            (start.elapsed(), r)
        }
    };
    let (mut wrong, mut unknown, mut locked) = (Vec::new(), Vec::new(), Vec::new());
    let mut bodies = std::collections::BTreeSet::new();
    for i in 0..200 {
        // From the trusted IP alice is not locked: a real hash, wrong password.
        let (t, r) = time(HOME, login("alice", "nope")).await;
        wrong.push(t);
        bodies.insert((r.status, r.body));
        // Each unknown name is fresh, so none of them gets locked.
        let (t, r) = time(HOME, login(&format!("nobody{i}"), "nope")).await;
        unknown.push(t);
        bodies.insert((r.status, r.body));
        let (t, r) = time(ATTACKER, login("alice", "nope")).await;
        locked.push(t);
        bodies.insert((r.status, r.body));
    }
    assert_eq!(bodies.len(), 1, "the three answers differ: {bodies:?}");
    // Each round times the three answers back to back, so the ratio within
    // a round cancels slow drifts in machine load; the medians of those
    // ratios must be within 20% of 1.
    let ratio = |other: &[Duration]| {
        let mut r: Vec<f64> = other.iter().zip(&wrong).map(|(o, w)| o.as_secs_f64() / w.as_secs_f64()).collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    let (ru, rl) = (ratio(&unknown), ratio(&locked));
    let (w, u, l) = (median(wrong.clone()), median(unknown.clone()), median(locked.clone()));
    eprintln!("medians: wrong password {w:?}, unknown user {u:?}, locked user {l:?}; ratios {ru:.3} {rl:.3}");
    for (name, r) in [("unknown user", ru), ("locked user", rl)] {
        assert!(
            (0.8..=1.2).contains(&r),
            "{name}: median ratio to a wrong password {r:.2} (medians {w:?} {u:?} {l:?})"
        );
    }
}

#[tokio::test]
async fn connection_limits_and_timeouts() {
    let config = standard_config("").replace(
        "tls = \"off\"",
        "tls = \"off\"\nmax_connections = 2\nidle_timeout = 1\nmax_header_bytes = 8192\nheader_read_timeout = 1",
    );
    let server = Server::start(&config, &standard_users());
    // Two idle connections take both slots; a third is refused clearly.
    let a = connect_from(server.addr, None).await;
    let b = connect_from(server.addr, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = raw(server.addr, None, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5)).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("Retry-After: 1"), "{refused}");
    // The idle ones are closed after idle_timeout, freeing the slots.
    let started = Instant::now();
    for mut s in [a, b] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf));
        assert!(read.await.is_ok(), "an idle connection stayed open");
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(server.log_shows("max_connections reached"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.get("/healthz").await.status, 200);

    // An oversized request head is refused (431).
    let big = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n", "a".repeat(10_000));
    let reply = raw(server.addr, None, big.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");

    // Pipelined requests are answered in order.
    let three = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let reply = raw(server.addr, None, three, Duration::from_secs(5)).await;
    assert_eq!(reply.matches("HTTP/1.1 200").count(), 3, "{reply}");
}

#[tokio::test]
async fn hostile_requests_get_4xx_and_the_server_keeps_serving() {
    let config = standard_config("").replace("tls = \"off\"", "tls = \"off\"\nheader_read_timeout = 1");
    let server = Server::start(&config, &standard_users());
    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    let post = |extra_headers: &str, body: &[u8]| {
        let mut r = format!(
            "POST /oauth/v2/oauth-token HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n{extra_headers}Connection: close\r\n\r\n"
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let sized = |body: &[u8]| post(&format!("{form}Content-Length: {}\r\n", body.len()), body);
    let mut many = String::from("grant_type=password&username=alice&password=wonderland");
    for i in 0..10_000 {
        many.push_str(&format!("&p{i}=v"));
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad percent-encoding", sized(b"grant_type=password&username=alice&password=%zz")),
        ("invalid UTF-8, encoded", sized(b"grant_type=password&username=%FF%FE&password=x")),
        ("invalid UTF-8, raw", sized(b"grant_type=password&username=\xff\xfe&password=x")),
        ("1 MB field", sized(format!("grant_type=password&username={}&password=x", "a".repeat(1 << 20)).as_bytes())),
        ("10,000 parameters", sized(many.as_bytes())),
        ("100 parameters within the size limit", sized("a=b&".repeat(100).as_bytes())),
        ("NUL in a value", sized(b"grant_type=password&username=alice&password=wonder%00land")),
        ("raw NUL in the body", sized(b"grant_type=password&username=al\0ice&password=x")),
        ("NUL in a header", post(&format!("{form}X-Nul: a\0b\r\nContent-Length: 0\r\n"), b"")),
        ("two Content-Length", post(&format!("{form}Content-Length: 5\r\nContent-Length: 6\r\n"), b"abcdef")),
        ("two Content-Type", post(&format!("{form}{form}Content-Length: 3\r\n"), b"a=b")),
        ("two Authorization", post(&format!("{form}Authorization: Basic eDp5\r\nContent-Length: 3\r\n"), b"a=b")),
        ("Content-Length too large", post(&format!("{form}Content-Length: 500\r\n"), b"grant_type=password")),
        (
            "Content-Length too small",
            post(&format!("{form}Content-Length: 15\r\n"), b"grant_type=password&username=alice&password=wonderland"),
        ),
        ("Content-Length not a number", post(&format!("{form}Content-Length: lots\r\n"), b"a=b")),
        ("chunked body that never ends", post(&format!("{form}Transfer-Encoding: chunked\r\n"), b"5\r\nhello\r\n")),
        ("no body at all", post(form, b"")),
    ];
    for (name, request) in cases {
        let started = Instant::now();
        let text = raw(server.addr, None, &request, Duration::from_secs(10)).await;
        let reply = parse_reply(&text);
        assert!((400..500).contains(&reply.status), "{name}: got {:?}", text.lines().next());
        assert!(started.elapsed() < Duration::from_secs(5), "{name} took {:?}", started.elapsed());
    }
    // Still serving valid logins.
    let r = server.token_basic("legacy", "legacy-secret", &login("alice", "wonderland")).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn trace_logs_carry_no_secrets() {
    let server = Server::start_with_env(&standard_config(""), &standard_users(), &[("RUST_LOG", "trace")]);
    // Debug output of the request (with its secrets redacted) is there to see.
    let r = server
        .token("grant_type=password&username=alice&password=wonderland&client_id=legacy&client_secret=legacy-secret")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = r.json();
    let rt = first["refresh_token"].as_str().unwrap().to_owned();
    let r =
        server.token_basic("legacy", "legacy-secret", &format!("grant_type=refresh_token&refresh_token={rt}")).await;
    let second = r.json();
    let auth = ropc_core::basic::encode("machine", "machine-secret");
    let at = second["access_token"].as_str().unwrap().to_owned();
    server.post("/oauth/v2/oauth-introspect", &format!("token={at}"), &[("authorization", &auth)]).await;
    assert!(server.log_shows("endpoint=\"introspection\""));
    let logs = server.logs();
    assert!(logs.contains("TRACE") && logs.contains("token grant step"), "trace logging is on: {logs}");
    assert!(logs.contains("<redacted>"), "the secrets went through a redacting Debug");
    let encoded_basic = ropc_core::basic::encode("legacy", "legacy-secret");
    let secrets = [
        "wonderland",
        "legacy-secret",
        "machine-secret",
        &encoded_basic["Basic ".len()..],
        first["access_token"].as_str().unwrap(),
        &rt,
        &at,
        second["refresh_token"].as_str().unwrap(),
    ];
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret:?} appears in the trace logs");
    }
}
