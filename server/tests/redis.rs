//! Two ropc instances sharing one Redis: tokens, rotation races, revocation
//! and brute-force counters are shared; Redis going away gives quick 503s
//! and its return brings full service back without a restart.

use crate::support::{
    hash, introspect, redis_cluster_config, redis_config, s, sample, Redis, RedisCluster, Reply, Server,
};
use std::time::{Duration, Instant};

const ALICE: &str = "grant_type=password&username=alice&password=wonderland";

fn users() -> String {
    format!("alice:{}\nbob:{}\n", hash("wonderland"), hash("builder"))
}

async fn refresh(server: &Server, rt: &str) -> Reply {
    crate::support::refresh(server, "legacy", "legacy-secret", rt).await
}

async fn active(server: &Server, token: &str) -> bool {
    introspect(server, token).await["active"].as_bool().unwrap()
}

#[tokio::test]
async fn two_instances_share_tokens_rotation_revocation_and_lockout() {
    let redis = Redis::start();
    // Round trips on one node: see the table in docs/scale-out.md.
    shared_suite(&redis_config(&redis.url(), ""), [4.0, 3.0, 2.0, 4.0]).await;
}

#[tokio::test]
async fn the_same_over_a_redis_cluster() {
    let cluster = RedisCluster::start();
    // On a cluster, a read also checks the family key on its own node, and
    // the commands of a pipeline that span slots go one by one: a grant's
    // writes include its user's and its client's grant index (two more).
    shared_suite(&redis_cluster_config(&cluster), [8.0, 8.0, 3.0, 6.0]).await;
}

/// Two instances on `config`; `trips`: the Redis round trips of a password
/// grant, a refresh, an introspection and a revocation.
async fn shared_suite(config: &str, expected_trips: [f64; 4]) {
    let config = config.to_owned();
    let users = users();
    let a = Server::start(&config, &users);
    let b = Server::start(&config, &users);

    // A password grant on A, a refresh on B, an introspection on A.
    let first = a.token_basic("legacy", "legacy-secret", ALICE).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.json();
    let second = refresh(&b, &s(&first, "refresh_token")).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let second = second.json();
    assert!(active(&a, &s(&second, "access_token")).await);
    let info = {
        let auth = ropc_core::basic::encode("legacy", "legacy-secret");
        a.post(
            "/oauth/v2/oauth-introspect",
            &format!("token={}", s(&second, "access_token")),
            &[("authorization", &auth)],
        )
        .await
        .json()
    };
    assert_eq!((info["username"].as_str(), info["scope"].as_str()), (Some("alice"), Some("read")), "{info}");

    // A revocation on B: A sees it on its next request, well within 100 ms.
    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    let r = b
        .post("/oauth/v2/oauth-revoke", &format!("token={}", s(&second, "refresh_token")), &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, 200);
    let revoked_at = Instant::now();
    assert!(!active(&a, &s(&second, "access_token")).await, "the grant's access token died with it");
    assert!(revoked_at.elapsed() < Duration::from_millis(100), "{:?}", revoked_at.elapsed());
    assert_eq!(refresh(&a, &s(&second, "refresh_token")).await.status, 400);

    // One refresh token sent to A and B at once: one winner, and the loser's
    // replay revokes the family, the winner's new tokens included.
    for round in 0..5 {
        let grant = a.token_basic("legacy", "legacy-secret", ALICE).await.json();
        let rt = s(&grant, "refresh_token");
        let (ra, rb) = tokio::join!(refresh(&a, &rt), refresh(&b, &rt));
        let mut statuses = [ra.status, rb.status];
        statuses.sort();
        assert_eq!(statuses, [200, 400], "round {round}: {} / {}", ra.body, rb.body);
        let (winner, loser) = if ra.status == 200 { (ra, rb) } else { (rb, ra) };
        assert_eq!(loser.error(), "invalid_grant");
        let won = winner.json();
        assert!(!active(&b, &s(&won, "access_token")).await, "round {round}: the family is revoked");
        assert_eq!(refresh(&a, &s(&won, "refresh_token")).await.status, 400);
    }

    // Wrong passwords for bob spread over A and B lock him on both: the
    // fifth failure locks, and then even his right password is refused
    // without a hash.
    let wrong = "grant_type=password&username=bob&password=guess";
    for i in 0..5 {
        let server = if i % 2 == 0 { &a } else { &b };
        let r = server.token_basic("legacy", "legacy-secret", wrong).await;
        assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()));
    }
    let hashes = |m: &str| sample(m, "ropc_hash_completed_total").unwrap_or(0.0);
    let (before_a, before_b) = (hashes(&a.get("/metrics").await.body), hashes(&b.get("/metrics").await.body));
    for server in [&a, &b] {
        let r =
            server.token_basic("legacy", "legacy-secret", "grant_type=password&username=bob&password=builder").await;
        assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()), "locked on every instance");
    }
    let (after_a, after_b) = (hashes(&a.get("/metrics").await.body), hashes(&b.get("/metrics").await.body));
    assert_eq!((after_a, after_b), (before_a, before_b), "a locked account spends no hash");
    let locks = sample(&a.get("/metrics").await.body, "ropc_lockout_locks_total").unwrap()
        + sample(&b.get("/metrics").await.body, "ropc_lockout_locks_total").unwrap();
    assert_eq!(locks, 1.0);
    assert!(a.log_shows("account_locked") || b.log_shows("account_locked"));
    // alice is not affected.
    assert_eq!(b.token_basic("legacy", "legacy-secret", ALICE).await.status, 200);

    // The round trips per operation (BENCHMARKS.md): the client's IP
    // check, the lockout gate and count, the record read, the store.
    let trips = |m: &str| sample(m, "ropc_token_store_round_trips_total").unwrap();
    let rt = s(&a.token_basic("legacy", "legacy-secret", ALICE).await.json(), "refresh_token");
    let at = s(&a.token_basic("legacy", "legacy-secret", ALICE).await.json(), "access_token");
    for (what, path, body, expected) in [
        ("password grant", "/oauth/v2/oauth-token", ALICE.to_owned(), expected_trips[0]),
        (
            "refresh grant",
            "/oauth/v2/oauth-token",
            format!("grant_type=refresh_token&refresh_token={rt}"),
            expected_trips[1],
        ),
        ("introspection", "/oauth/v2/oauth-introspect", format!("token={at}"), expected_trips[2]),
        ("revocation", "/oauth/v2/oauth-revoke", format!("token={rt}"), expected_trips[3]),
    ] {
        let before = trips(&a.get("/metrics").await.body);
        let r = a.post(path, &body, &[("authorization", &auth)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let n = trips(&a.get("/metrics").await.body) - before;
        println!("redis round trips per {what}: {n}");
        assert_eq!(n, expected, "{what}");
    }
}

#[tokio::test]
async fn clients_that_hang_up_release_their_slot_in_the_shared_counters() {
    let redis = Redis::start();
    crate::attacks::hang_ups_leave_no_attempt_in_flight(redis_config(&redis.url(), "")).await;
}

/// Redis runs the user gate of a login whether or not ropc still waits for
/// its answer. A client that hangs up while the check is held up (here by
/// `CLIENT PAUSE`, which holds scripts and lets reads through) must not
/// leave the in-flight slot it took: with `max_failures = 1`, four such
/// slots would shut alice out of every IP she has not logged in from.
#[tokio::test]
async fn hang_ups_while_redis_runs_the_lockout_check_release_their_slot() {
    use crate::attacks::{login, one_slow_worker, send_login, ATTACKER, HOME, LEGACY};
    let redis = Redis::start();
    let config = redis_config(&redis.url(), "") + "command_timeout_ms = 20000\n";
    let config = one_slow_worker(config, "max_failures = 1\nlock_time = 60\nip_max_failures = 100\n");
    let server = Server::start(&config, &crate::support::standard_users());
    // The client's secret is verified (and remembered) first.
    assert_eq!(crate::support::token_from(&server, HOME, &login("nobody", "x"), LEGACY).await.status, 400);
    // One hang-up per pause: the held script holds ropc's connection to
    // Redis, so a second login would wait in client authentication.
    for round in 0..4 {
        let before = redis_info(redis.port).await;
        redis_command(redis.port, &["CLIENT", "PAUSE", "20000", "WRITE"]).await;
        let stream = send_login(server.addr, ATTACKER, &login("alice", "guess")).await;
        // Its two reads (the IP's throttle, then the check's) have run, and
        // the check's script is held.
        wait_for(&redis, "the login to reach the lockout check", |now| {
            stat(now, "cmdstat_hget:calls") >= stat(&before, "cmdstat_hget:calls") + 2.0
                && stat(now, "blocked_clients") == 1.0
        })
        .await;
        drop(stream);
        // The server has dropped the request: its connection is no longer
        // counted (the scrape's own is).
        let deadline = Instant::now() + Duration::from_secs(20);
        while sample(&server.get("/metrics").await.body, "ropc_open_connections") != Some(1.0) {
            assert!(Instant::now() < deadline, "round {round}: the hung-up request was never dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        redis_command(redis.port, &["CLIENT", "UNPAUSE"]).await;
        // The check runs, and its slot is given back (one more script).
        wait_for(&redis, "the check and the release of its slot", |now| {
            stat(now, "cmdstat_evalsha:calls") >= stat(&before, "cmdstat_evalsha:calls") + 2.0
        })
        .await;
    }
    let r = crate::support::token_from(&server, ATTACKER, &login("alice", "wonderland"), LEGACY).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The scripts go by their SHA1 (EVALSHA), not their whole text: Redis
/// runs no EVAL at all. A Redis that lost them (SCRIPT FLUSH) is given them
/// again, and logins go on.
#[tokio::test]
async fn scripts_run_by_sha_and_come_back_after_a_script_flush() {
    let redis = Redis::start();
    let server = Server::start(&redis_config(&redis.url(), ""), &users());
    for _ in 0..3 {
        assert_eq!(server.token_basic("legacy", "legacy-secret", ALICE).await.status, 200);
    }
    let info = redis_info(redis.port).await;
    assert!(stat(&info, "cmdstat_evalsha:calls") >= 6.0, "{info}");
    assert_eq!(stat(&info, "cmdstat_eval:calls"), 0.0, "{info}");
    redis_command(redis.port, &["SCRIPT", "FLUSH"]).await;
    let r = server.token_basic("legacy", "legacy-secret", ALICE).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(server.log_shows("Redis had lost ropc's scripts"));
    let r = server.token_basic("legacy", "legacy-secret", ALICE).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(stat(&redis_info(redis.port).await, "cmdstat_eval:calls"), 0.0);
}

/// Polls the Redis's `INFO` until `done` holds (20 s at most).
async fn wait_for(redis: &Redis, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = redis_info(redis.port).await;
        if done(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {what}:\n{now}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends one command to the Redis on `port`; returns its reply (read until
/// it is whole: a simple reply, or a bulk string of the announced length).
async fn redis_command(port: u16, args: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut command = format!("*{}\r\n", args.len());
    for a in args {
        command += &format!("${}\r\n{a}\r\n", a.len());
    }
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(command.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    loop {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "redis closed: {}", String::from_utf8_lossy(&reply));
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        let Some((head, body)) = text.split_once("\r\n") else { continue };
        match head.strip_prefix('$') {
            Some(len) if body.len() < len.parse::<usize>().unwrap() + 2 => continue,
            Some(_) => return body.to_owned(),
            None => {
                assert!(head.starts_with('+'), "{head}");
                return head.to_owned();
            }
        }
    }
}

async fn redis_info(port: u16) -> String {
    redis_command(port, &["INFO", "all"]).await
}

/// A number from `INFO`: `field` is `name` (`name:value`) or, for command
/// stats, `cmdstat_x:calls` (`cmdstat_x:calls=value,...`); 0 when absent.
fn stat(info: &str, field: &str) -> f64 {
    info.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?;
            let value = rest.strip_prefix(':').or_else(|| rest.strip_prefix('='))?;
            value.split(',').next()?.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn guesses_at_a_locked_account_count_against_the_ip_in_redis() {
    let redis = Redis::start();
    crate::attacks::locked_guesses_count_against_the_ip(redis_config(&redis.url(), "")).await;
}

#[tokio::test]
async fn a_refused_guess_counts_against_the_ip_in_redis_when_its_client_hangs_up() {
    let redis = Redis::start();
    crate::attacks::hung_up_refused_guess_counts(redis_config(&redis.url(), "")).await;
}

#[tokio::test]
async fn a_hang_up_after_the_hash_started_counts_against_the_ip_in_redis() {
    let redis = Redis::start();
    crate::attacks::hang_up_after_the_hash_started(redis_config(&redis.url(), "")).await;
}

#[tokio::test]
async fn redis_down_gives_quick_503s_and_its_return_brings_service_back() {
    let mut redis = Redis::start();
    let server = Server::start(&redis_config(&redis.url(), ""), &users());
    let grant = server.token_basic("legacy", "legacy-secret", ALICE).await;
    assert_eq!(grant.status, 200, "{}", grant.body);
    let grant = grant.json();
    assert_eq!(server.get("/healthz").await.status, 200);

    redis.stop();
    for _ in 0..3 {
        for body in [ALICE.to_owned(), format!("grant_type=refresh_token&refresh_token={}", s(&grant, "refresh_token"))]
        {
            let started = Instant::now();
            let r = server.token_basic("legacy", "legacy-secret", &body).await;
            assert_eq!((r.status, r.error()), (503, "temporarily_unavailable".to_owned()), "{}", r.body);
            assert!(r.header("retry-after").is_some());
            assert!(started.elapsed() < Duration::from_secs(1), "answered in {:?}", started.elapsed());
        }
    }
    let h = server.get("/healthz").await;
    assert_eq!((h.status, h.body.as_str()), (503, "token store unavailable\n"));
    assert_eq!(sample(&server.get("/metrics").await.body, "ropc_token_store_up"), Some(0.0));
    assert!(server.log_shows("token_store_down"));

    // Back (with its append-only file): the same process serves again, and
    // the refresh token issued before the outage still works.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/healthz").await.status != 200 {
        assert!(Instant::now() < deadline, "ropc never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.log_shows("token_store_up"));
    let r = refresh(&server, &s(&grant, "refresh_token")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(server.token_basic("legacy", "legacy-secret", ALICE).await.status, 200);
}
