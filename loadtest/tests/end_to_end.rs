//! Short runs against the in-process token server: the counts add up, and
//! every scenario speaks the protocol the server checks.

use crate::token_server::{self, CLIENT_ID, CLIENT_SECRET};
use http::Uri;
use ropc_loadtest::form::Secret;
use ropc_loadtest::report::Report;
use ropc_loadtest::run::{run, Load, Pacer, RunSpec};
use ropc_loadtest::scenario::{ClientAuth, Kind, Scenario, Users, WorkloadSpec};
use std::net::SocketAddr;
use std::time::Duration;

fn spec(addr: SocketAddr, scenario: Scenario, connections: usize, requests: u64) -> RunSpec {
    RunSpec {
        url: format!("http://{addr}/token").parse().unwrap(),
        cacert: None,
        bind: None,
        bind_count: 1,
        workload: WorkloadSpec {
            scenario,
            token_path: Uri::from_static("/token"),
            introspection_path: Uri::from_static("/introspect"),
            client_id: CLIENT_ID.into(),
            client_secret: Some(Secret::new(CLIENT_SECRET.into())),
            auth: ClientAuth::Basic,
            users: Users { count: 4, offset: 0, user_prefix: "user".into(), password_prefix: "pass-".into() },
            scope: None,
            introspect_with: Kind::ClientCredentials,
            dpop: None,
        },
        connections,
        load: Load::Closed,
        pacer: Pacer::Thread,
        new_connection: false,
        // Generous: these runs end by their request budget.
        duration: Duration::from_secs(60),
        requests: Some(requests),
        timeout: Duration::from_secs(10),
        progress: false,
        shards: 1,
        start_at: None,
        server_pid: None,
        server_cores: None,
    }
}

async fn run_and_check(spec: &RunSpec) -> Report {
    let finished = run(spec).await.expect("run");
    let report = Report::new(spec, &finished);
    // Whatever happened, the counts add up.
    assert_eq!(report.requests, report.successes + report.errors);
    let bucketed: u64 =
        report.errors_by_status.values().sum::<u64>() + report.errors_by_transport.values().sum::<u64>();
    assert_eq!(bucketed, report.errors);
    let by_kind: u64 = report.by_kind.values().map(|k| k.requests).sum();
    assert_eq!(by_kind, report.requests);
    let timeline: u64 = report.timeline.iter().map(|s| s.requests).sum();
    assert_eq!(timeline, report.requests);
    assert!(report.timeline.len() as f64 <= report.elapsed_secs.ceil());
    assert!(report.timeline.iter().all(|s| s.length_secs > 0.0), "{:?}", report.timeline);
    report
}

#[tokio::test]
async fn closed_loop_keep_alive_300_requests() {
    let addr = token_server::start().await;
    let spec = spec(addr, Scenario::ClientCredentials, 8, 300);
    let report = run_and_check(&spec).await;
    assert_eq!(report.requests, 300);
    assert_eq!(report.successes, 300);
    assert_eq!(report.errors, 0);
    assert_eq!(report.cancelled_at_deadline, 0);
    assert_eq!(report.latency_us.count, 300);
    assert!(report.latency_us.p50 <= report.latency_us.p99);
    assert!(report.latency_us.p99 <= report.latency_us.max);
    // Keep-alive: each virtual user's connection was opened before the
    // clock started and served the whole run.
    assert_eq!(report.connections_opened, 0);
    assert_eq!(report.by_kind["client_credentials"].successes, 300);
    // A closed loop has no intended send times.
    assert_eq!(report.send_lag_us, None);
}

#[tokio::test]
async fn password_errors_are_bucketed() {
    let addr = token_server::start().await;
    // One virtual user walks user0, user1, user2, user3, user0, ...; the
    // server refuses user3.
    let spec = spec(addr, Scenario::Password, 1, 400);
    let report = run_and_check(&spec).await;
    assert_eq!(report.requests, 400);
    assert_eq!(report.successes, 300);
    assert_eq!(report.errors_by_status["400"], 100);
    assert_eq!(report.errors_by_oauth_error["invalid_grant"], 100);
    assert!(report.errors_by_transport.is_empty());
}

#[tokio::test]
async fn refresh_follows_rotation_with_body_auth() {
    let addr = token_server::start().await;
    let mut spec = spec(addr, Scenario::Refresh, 3, 200);
    spec.workload.auth = ClientAuth::Body;
    let report = run_and_check(&spec).await;
    // A reused refresh token would be refused by the server.
    assert_eq!(report.successes, 200, "{}", report.to_text());
    // The setup's password grants are not counted.
    assert_eq!(report.by_kind.keys().copied().collect::<Vec<_>>(), ["refresh_token"]);
}

#[tokio::test]
async fn mixed_and_introspect() {
    let addr = token_server::start().await;
    let mut spec = spec(addr, Scenario::Mixed { password_percent: 20 }, 1, 100);
    spec.workload.users.count = 3;
    let report = run_and_check(&spec).await;
    assert_eq!(report.successes, 100, "{}", report.to_text());
    assert_eq!(report.by_kind["password"].requests, 20);
    assert_eq!(report.by_kind["refresh_token"].requests, 80);

    let spec = spec_introspect(addr);
    let report = run_and_check(&spec).await;
    assert_eq!(report.successes, 50, "{}", report.to_text());
    assert_eq!(report.by_kind["introspect"].requests, 50);
}

fn spec_introspect(addr: SocketAddr) -> RunSpec {
    spec(addr, Scenario::Introspect, 2, 50)
}

#[tokio::test]
async fn new_connection_per_request() {
    let addr = token_server::start().await;
    let mut spec = spec(addr, Scenario::ClientCredentials, 2, 50);
    spec.new_connection = true;
    let report = run_and_check(&spec).await;
    assert_eq!(report.successes, 50);
    assert_eq!(report.connections_opened, 50);
}

#[tokio::test]
async fn start_at_waits_for_its_time_and_reports_a_late_start() {
    let addr = token_server::start().await;
    let mut spec = spec(addr, Scenario::ClientCredentials, 2, 20);
    let asked = std::time::SystemTime::now();
    spec.start_at = Some(asked + Duration::from_millis(600));
    let report = run_and_check(&spec).await;
    assert!(asked.elapsed().unwrap() >= Duration::from_millis(600), "the run did not wait");
    assert_eq!(report.successes, 20);
    assert_eq!(report.load.late_start_s, Some(0.0));
    let at = report.load.start_at.unwrap();
    let expected = (asked + Duration::from_millis(600)).duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!((at - expected.as_secs_f64()).abs() < 1e-3, "{at}");
    // A time already past: the run starts at once and says how late.
    spec.start_at = Some(std::time::SystemTime::now() - Duration::from_secs(2));
    let report = run_and_check(&spec).await;
    assert_eq!(report.successes, 20);
    assert!(report.load.late_start_s.unwrap() >= 2.0, "{:?}", report.load.late_start_s);
    assert!(report.to_text().contains("after --start-at (the setup ended late)"), "{}", report.to_text());
    // Without --start-at neither field is reported.
    spec.start_at = None;
    let report = run_and_check(&spec).await;
    assert_eq!((report.load.start_at, report.load.late_start_s), (None, None));
}

#[tokio::test]
async fn open_loop_accounts_for_every_due_request() {
    for pacer in [Pacer::Thread, Pacer::Runtime] {
        open_loop_accounts_for_every_due_request_with(pacer).await;
    }
}

async fn open_loop_accounts_for_every_due_request_with(pacer: Pacer) {
    let addr = token_server::start().await;
    let mut spec = spec(addr, Scenario::ClientCredentials, 4, 1_000_000);
    spec.requests = None;
    spec.load = Load::Open { rate: 200.0 };
    spec.pacer = pacer;
    spec.duration = Duration::from_millis(500);
    let report = run_and_check(&spec).await;
    let expected = if pacer == Pacer::Thread { "thread" } else { "runtime" };
    assert_eq!(report.load.pacer, Some(expected));
    // 100 requests are due in 0.5 s: each was answered, cut off at the
    // deadline, or never sent.
    assert_eq!(report.requests + report.cancelled_at_deadline + report.unsent, 100);
    assert_eq!(report.errors, 0);
    assert!(report.requests > 0);
    // Every request that went out was released (by the pacer, or by its
    // virtual user's timer), and its lag behind its intended time was
    // recorded.
    let lag = report.send_lag_us.expect("an open loop records its send lag");
    assert_eq!(lag.count, report.requests + report.cancelled_at_deadline);
}

/// `--bind`: every connection comes from the chosen address (any address
/// of 127/8 is local on Linux), the probe of the target's addresses too.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn connections_come_from_the_bind_address() {
    let (addr, peers) = token_server::start_recording_peers().await;
    let ip: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut spec = spec(addr, Scenario::ClientCredentials, 3, 60);
    spec.bind = Some(ip);
    let report = run_and_check(&spec).await;
    assert_eq!(report.successes, 60, "{}", report.to_text());
    assert_eq!(report.load.bind.as_deref(), Some("127.0.0.2"));
    assert!(report.to_text().contains("3 connections from 127.0.0.2 (keep-alive)"), "{}", report.to_text());
    let peers = peers.lock().unwrap().clone();
    // The probe, then one connection per virtual user.
    assert_eq!(peers.len(), 4, "{peers:?}");
    assert!(peers.iter().all(|p| p.ip() == ip), "{peers:?}");
}

/// `--bind-count`: the connections are spread over consecutive addresses,
/// each new one from the next in turn (the probe takes none of them).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn connections_are_spread_over_bind_count_addresses() {
    let (addr, peers) = token_server::start_recording_peers().await;
    let mut spec = spec(addr, Scenario::ClientCredentials, 6, 60);
    spec.bind = Some("127.0.0.255".parse().unwrap());
    spec.bind_count = 3;
    let report = run_and_check(&spec).await;
    assert_eq!(report.successes, 60, "{}", report.to_text());
    assert_eq!((report.load.bind.as_deref(), report.load.bind_count), (Some("127.0.0.255"), Some(3)));
    assert!(report.to_text().contains("6 connections from 3 addresses, 127.0.0.255 on"), "{}", report.to_text());
    let mut peers: Vec<String> = peers.lock().unwrap().iter().map(|p| p.ip().to_string()).collect();
    // The probe from the first address, then two connections from each
    // (counting on across the .255 to .0 carry).
    peers.sort();
    assert_eq!(
        peers,
        ["127.0.0.255", "127.0.0.255", "127.0.0.255", "127.0.1.0", "127.0.1.0", "127.0.1.1", "127.0.1.1"]
    );
}

#[tokio::test]
async fn a_bind_address_that_cannot_be_used_is_refused_before_the_run() {
    let addr = token_server::start().await;
    let mut spec = spec(addr, Scenario::ClientCredentials, 1, 10);
    // TEST-NET-1 (RFC 5737): on no interface of this machine.
    spec.bind = Some("192.0.2.1".parse().unwrap());
    let message = run(&spec).await.expect_err("not a local address");
    assert!(message.starts_with("--bind 192.0.2.1: cannot bind"), "{message}");
    // An IPv6 source for an IPv4-only target.
    spec.bind = Some("::1".parse().unwrap());
    let message = run(&spec).await.expect_err("no address of that family");
    assert_eq!(message, "--bind ::1: 127.0.0.1 has no IPv6 address");
}

#[tokio::test]
async fn refused_connections_are_transport_errors() {
    // A port that was free a moment ago.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let spec = spec(addr, Scenario::ClientCredentials, 2, 20);
    let report = run_and_check(&spec).await;
    assert_eq!(report.requests, 20);
    assert_eq!(report.errors_by_transport["connect"], 20);
    assert_eq!(report.latency_us.count, 0);
}

#[tokio::test]
async fn setup_failure_is_an_error_before_the_run() {
    let addr = token_server::start().await;
    let mut spec = spec(addr, Scenario::Refresh, 1, 10);
    spec.workload.client_secret = Some(Secret::new("wrong".into()));
    let message = run(&spec).await.expect_err("setup must fail");
    assert!(message.contains("401 invalid_client"), "{message}");
    assert!(!message.contains("wrong"), "{message}");
}

/// `ropc-loadtest run` against the token server at `addr`, with the client's
/// id and (by environment variable) secret.
fn loadtest_run(addr: SocketAddr) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ropc-loadtest"));
    command.args(["run", "--url", &format!("http://{addr}/token"), "--client-id", CLIENT_ID]);
    command.env("ROPC_LOADTEST_CLIENT_SECRET", CLIENT_SECRET);
    command
}

/// The binary: report on stdout, JSON and SVG files, and the secret (given
/// by environment variable) nowhere in them.
#[test]
fn command_line_writes_json_and_svg() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = runtime.block_on(token_server::start());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let svg = dir.path().join("report.svg");
    let output = loadtest_run(addr)
        .args(["--scenario", "client-credentials", "--connections", "4", "--requests", "100"])
        .args(["--threads", "2", "--auth", "body", "--bind", "127.0.0.1"])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let requests_line = stdout.lines().find(|l| l.trim_start().starts_with("requests"));
    assert_eq!(requests_line.and_then(|l| l.split_whitespace().nth(1)), Some("100"), "{stdout}");
    let json = std::fs::read_to_string(&json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["requests"], 100);
    assert_eq!(v["successes"], 100);
    let svg = std::fs::read_to_string(&svg).unwrap();
    roxmltree::Document::parse(&svg).expect("well-formed SVG");
    for text in [&*stdout, &*stderr, &json, &svg] {
        assert!(!text.contains(CLIENT_SECRET));
    }
}

/// `--start-at` reaches the JSON report; a value that is not a time since
/// the Unix epoch is refused before anything runs.
#[test]
fn command_line_start_at() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = runtime.block_on(token_server::start());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let run = |start_at: &str| {
        loadtest_run(addr)
            .args(["--quiet", "--scenario", "client-credentials", "--connections", "2", "--requests", "10"])
            .arg(format!("--start-at={start_at}"))
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap()
    };
    let output = run("1");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("after --start-at: the run starts now"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["load"]["start_at"], 1.0);
    assert!(v["load"]["late_start_s"].as_f64().unwrap() > 1e9);
    for bad in ["-1", "nan", "1e12"] {
        let output = run(bad);
        assert!(!output.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("--start-at"), "{bad}");
    }
}
