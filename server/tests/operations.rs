//! Operations: the metrics endpoint and the admin listener.

use crate::support::{sample, standard_config, standard_users, wait_for, wait_until_hashes_submitted, Server};
use std::time::Duration;

#[tokio::test]
async fn metrics_count_requests_hashes_and_tokens() {
    let server = Server::start(&standard_config(""), &standard_users());
    let before = server.get("/metrics").await;
    assert_eq!(before.status, 200);
    assert!(before.header("content-type").unwrap_or("").starts_with("text/plain; version=0.0.4"));
    let hashes_before = sample(&before.body, "ropc_hash_completed_total").unwrap();

    let login = "grant_type=password&username=alice&password=wonderland";
    assert_eq!(server.token_basic("legacy", "legacy-secret", login).await.status, 200);
    assert_eq!(
        server.token_basic("legacy", "legacy-secret", "grant_type=password&username=alice&password=no").await.status,
        400
    );
    let m = server.get("/metrics").await.body;
    let issued = "ropc_requests_total{endpoint=\"token\",grant=\"password\",outcome=\"issued\"}";
    let refused = "ropc_requests_total{endpoint=\"token\",grant=\"password\",outcome=\"invalid_grant\"}";
    assert_eq!((sample(&m, issued), sample(&m, refused)), (Some(1.0), Some(1.0)), "{m}");
    // The client secret once (then memoised) and two passwords.
    assert_eq!(sample(&m, "ropc_hash_completed_total").unwrap() - hashes_before, 3.0, "{m}");
    assert_eq!(sample(&m, "ropc_token_store_records"), Some(2.0), "one access and one refresh token");
    // 64 shards of the smallest table (16 slots of 49 bytes).
    assert_eq!(sample(&m, "ropc_token_store_bytes"), Some((64 * 16 * 49) as f64));
    assert_eq!(sample(&m, "ropc_hash_duration_seconds_count"), sample(&m, "ropc_hash_completed_total"));
    assert_eq!(sample(&m, "ropc_request_duration_seconds_count{endpoint=\"token\"}"), Some(2.0));
    assert!(sample(&m, "ropc_hash_workers").unwrap() >= 1.0);
    assert_eq!(sample(&m, "ropc_hash_shed_total"), Some(0.0));
    // The refresh token went to the token log: at least one batch written.
    assert!(sample(&m, "ropc_token_log_write_seconds_count").unwrap() >= 1.0, "{m}");
    for family in [
        "ropc_hash_queue_length",
        "ropc_hash_busy_workers",
        "ropc_lockout_locks_total",
        "ropc_open_connections",
        "ropc_token_log_sync_seconds",
    ] {
        assert!(m.contains(&format!("# TYPE {family} ")), "{family} missing");
    }
}

#[tokio::test]
async fn admin_listener_serves_metrics_apart() {
    let config = standard_config("").replace("tls = \"off\"", "tls = \"off\"\nadmin_listen = \"127.0.0.1:0\"");
    let server = Server::start(&config, &standard_users());
    let admin: std::net::SocketAddr =
        wait_for(&server.stdout, "ropc admin (metrics, health) on http://", Duration::from_secs(10))
            .trim()
            .parse()
            .unwrap();
    assert_eq!(server.get("/metrics").await.status, 404, "not on the main listener");
    let get = |path: &'static str| crate::support::request(admin, None, http::Method::GET, path, "", &[], false);
    let r = get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("ropc_hash_workers"));
    assert_eq!(get("/healthz").await.status, 200);
    assert_eq!(get("/.well-known/oauth-authorization-server").await.status, 404, "only metrics and health");
}

#[tokio::test]
async fn sigterm_with_requests_in_flight_loses_none() {
    // Costlier hashes, so that logins are still queued when the signal lands
    // (all of them: on a slow machine, twenty might wait past the default
    // max_queue_wait_ms).
    let config = standard_config("").replace("m_cost = 256\nt_cost = 1", "m_cost = 8192\nt_cost = 2")
        + "\n[hash_pool]\nmax_queue_wait_ms = 0\n";
    let params = ropc_hash::HashParams { m_cost: 8192, t_cost: 2, p_cost: 1 };
    let users = format!("alice:{}\n", ropc_hash::hash_password(b"wonderland", params).unwrap());
    let server = Server::start(&config, &users);
    let login = "grant_type=password&username=alice&password=wonderland";
    let in_flight = crate::support::spawn_logins(&server, 20, login);
    // Wait until the server has read every request: each one's password is
    // then queued, being hashed, or hashed (one more hash: the client
    // secret's first verification). A connection whose request the server
    // has not read yet is not in flight: a graceful shutdown closes it.
    wait_until_hashes_submitted(&server, 21.0).await;
    server.signal_term();
    let mut statuses = Vec::new();
    for r in in_flight {
        statuses.push(r.await.unwrap().status);
    }
    assert_eq!(statuses, vec![200; 20], "every request in flight finished");
    assert!(server.log_shows("shutting down"));
    assert!(server.terminate().success(), "exit 0 after draining");
}

#[tokio::test]
async fn healthz_reports_draining_during_the_shutdown_delay() {
    let config = standard_config("").replace("tls = \"off\"", "tls = \"off\"\nshutdown_delay = 2");
    let server = Server::start(&config, &standard_users());
    assert_eq!(server.get("/healthz").await.status, 200);
    server.signal_term();
    assert!(server.log_shows("/healthz answers 503"));
    let r = server.get("/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (503, "draining\n"));
    assert_eq!(sample(&server.get("/metrics").await.body, "ropc_draining"), Some(1.0));
    // Requests are still served meanwhile.
    let r =
        server.token_basic("legacy", "legacy-secret", "grant_type=password&username=alice&password=wonderland").await;
    assert_eq!(r.status, 200);
    assert!(server.terminate().success());
}

/// A login that would wait longer than `max_queue_wait_ms` for a hash worker
/// is answered `503` with `Retry-After` at once, though the queue has room.
#[tokio::test]
#[allow(clippy::await_holding_lock)] // deliberately: no other test's server runs meanwhile
async fn a_login_that_would_wait_too_long_gets_503_at_once() {
    // Alone on the CPU, so that the burst arrives faster than hashes end.
    let _cpu = crate::support::exclusive();
    let config = standard_config("").replace("m_cost = 256\nt_cost = 1", "m_cost = 16384\nt_cost = 3")
        + "\n[hash_pool]\nworkers = 1\nqueue = 1000\nmax_queue_wait_ms = 50\n";
    let params = ropc_hash::HashParams { m_cost: 16384, t_cost: 3, p_cost: 1 };
    let users = format!("alice:{}\n", ropc_hash::hash_password(b"wonderland", params).unwrap());
    let server = Server::start(&config, &users);
    let login = "grant_type=password&username=alice&password=wonderland";
    // Times the hash (and memoises the client secret's verification).
    assert_eq!(server.token_basic("legacy", "legacy-secret", login).await.status, 200);
    let burst = crate::support::spawn_logins(&server, 16, login);
    let (mut ok, mut shed) = (0, 0);
    for r in burst {
        let r = r.await.unwrap();
        match r.status {
            200 => ok += 1,
            503 => {
                assert_eq!(r.error(), "temporarily_unavailable");
                assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
                shed += 1;
            }
            other => panic!("{other}: {}", r.body),
        }
    }
    // A hash takes tens of milliseconds: one or two fit in 50 ms of queue,
    // never sixteen, and never none.
    assert!(ok >= 1 && shed >= 1, "{ok} issued, {shed} shed");
    let m = server.get("/metrics").await.body;
    assert_eq!(crate::support::sample(&m, "ropc_hash_shed_wait_total"), Some(f64::from(shed)), "{m}");
    assert_eq!(crate::support::sample(&m, "ropc_hash_shed_total"), Some(f64::from(shed)));
}
