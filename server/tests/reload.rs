//! Live config commits: `ropc config reload` and SIGHUP re-read the config
//! and the users file, validate them, and swap them in; a broken config
//! keeps the old one serving.

use crate::support::{
    hash, introspect, refresh, ropc, s, sample, standard_config, standard_users, wait_until_hashes_submitted, Server,
};
use std::time::{Duration, Instant};

const LOGIN: &str = "grant_type=password&username=alice&password=wonderland";

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn hup(server: &Server) {
    let status = std::process::Command::new("kill").arg("-HUP").arg(server.pid().to_string()).status().unwrap();
    assert!(status.success());
}

/// Waits until `/metrics` shows `series` at `value`.
async fn wait_metric(server: &Server, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = server.get("/metrics").await.body;
        if sample(&m, series) == Some(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} never reached {value}:\n{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The client block of `id` in `config`: from its `[[clients]]` line to the
/// next blank line.
fn client_block<'a>(config: &'a str, id: &str) -> &'a str {
    let start = config.find(&format!("[[clients]]\nid = \"{id}\"")).unwrap();
    let len = config[start..].find("\n\n").map_or(config.len() - start, |n| n + 2);
    &config[start..start + len]
}

#[tokio::test]
async fn a_commit_applies_clients_scopes_and_users_and_keeps_tokens() {
    let old = standard_config("");
    let users = standard_users();
    let server = Server::start(&old, &users);
    let legacy = server.token_basic("legacy", "legacy-secret", &format!("{LOGIN}&scope=write")).await.json();
    let other = server.token_basic("other", "other-secret", LOGIN).await.json();
    let jorg = server
        .token_basic(
            "legacy",
            "legacy-secret",
            "grant_type=password&username=j%C3%B6rg&password=p%C3%A4ssw%C3%B6rd%3A+with+space",
        )
        .await
        .json();
    for t in [&legacy, &other, &jorg] {
        assert_eq!(introspect(&server, &s(t, "access_token")).await["active"], true);
    }

    // The new config: a scope inserted first and one removed (every other
    // scope's position moves in the file), a client removed and one added.
    // The users file: jörg removed, bob added, alice's line kept as it was
    // (a changed hash would be a changed password, which ends her grants).
    let new = old
        .replace("[[scopes]]\nname = \"read\"", "[[scopes]]\nname = \"profile\"\n\n[[scopes]]\nname = \"read\"")
        .replace("[[scopes]]\nname = \"admin\"\n\n", "")
        .replace("scopes = [\"read\", \"write\", \"admin\"]", "scopes = [\"read\", \"write\"]")
        .replace(client_block(&old, "other"), "")
        .replace(client_block(&old, "norefresh"), "")
        + &format!(
            "\n[[clients]]\nid = \"newcomer\"\nsecret = \"{}\"\ncapabilities = [\"password\"]\nscopes = [\"profile\", \"read\"]\ndefault_scopes = [\"profile\"]\n\n{}",
            hash("newcomer-secret"),
            client_block(&old, "norefresh"),
        );
    let admin_port = free_port();
    let new = new.replace("tls = \"off\"", &format!("tls = \"off\"\nadmin_listen = \"127.0.0.1:{admin_port}\""));
    std::fs::write(server.dir.path().join("ropc.toml"), &new).unwrap();
    std::fs::write(
        server.dir.path().join("users.htpasswd"),
        format!("{}\nbob:{}\n", users.lines().find(|l| l.starts_with("alice:")).unwrap(), hash("builder")),
    )
    .unwrap();

    // The command validates, finds the server by its command line and
    // signals it. (admin_listen needs a restart, so it cannot confirm here.)
    let out =
        ropc().arg("config").arg("reload").arg("--config").arg(server.dir.path().join("ropc.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("sent SIGHUP to ropc process {}", server.pid())), "{stdout}");
    wait_metric(&server, "ropc_config_generation", 2.0).await;
    assert!(server.log_shows("config_commit"));
    let logs = server.logs();
    assert!(logs.contains("server.admin_listen"), "the log says which change waits for a restart:\n{logs}");
    assert!(logs.contains("clients_added=[\"newcomer\"] clients_removed=[\"other\"]"), "{logs}");

    // Tokens of kept clients and users still work, with their scope intact
    // although the scopes moved in the file.
    let info = introspect(&server, &s(&legacy, "access_token")).await;
    assert_eq!((info["active"].as_bool(), info["scope"].as_str()), (Some(true), Some("write")), "{info}");
    assert_eq!(info["username"], "alice");
    let refreshed = refresh(&server, "legacy", "legacy-secret", &s(&legacy, "refresh_token")).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.json()["scope"], "write");

    // A removed client: its tokens are dead and it cannot authenticate.
    assert_eq!(introspect(&server, &s(&other, "access_token")).await, serde_json::json!({"active": false}));
    let r = refresh(&server, "other", "other-secret", &s(&other, "refresh_token")).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client".to_owned()));

    // A removed user: their tokens are dead and they cannot log in.
    assert_eq!(introspect(&server, &s(&jorg, "access_token")).await, serde_json::json!({"active": false}));
    let r = refresh(&server, "legacy", "legacy-secret", &s(&jorg, "refresh_token")).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()));

    // New users, clients and scopes work.
    let r = server.token_basic("legacy", "legacy-secret", "grant_type=password&username=bob&password=builder").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server.token_basic("newcomer", "newcomer-secret", LOGIN).await;
    assert_eq!((r.status, r.json()["scope"].as_str()), (200, Some("profile")), "{}", r.body);
    let r = server.token_basic("norefresh", "norefresh-secret", LOGIN).await;
    assert_eq!(r.status, 200, "a client that moved in the file keeps working: {}", r.body);
    let meta = server.get("/.well-known/oauth-authorization-server").await.json();
    assert_eq!(meta["scopes_supported"], serde_json::json!(["read", "write", "profile"]));
    let m = server.get("/metrics").await.body;
    assert_eq!((sample(&m, "ropc_clients"), sample(&m, "ropc_users")), (Some(4.0), Some(2.0)), "{m}");

    // A second commit of the same files changes nothing.
    hup(&server);
    wait_metric(&server, "ropc_config_generation", 3.0).await;
    assert_eq!(introspect(&server, &s(&refreshed.json(), "access_token")).await["active"], true);
}

#[tokio::test]
async fn a_broken_config_or_users_file_is_refused_and_the_old_one_keeps_serving() {
    let good = standard_config("");
    let server = Server::start(&good, &standard_users());
    let config = server.dir.path().join("ropc.toml");
    let before = server.token_basic("legacy", "legacy-secret", LOGIN).await.json();

    // The command refuses a bad config before signalling anything, naming
    // the key and the line.
    std::fs::write(&config, good.replace("access_token_ttl = 300", "access_token_ttl = 0")).unwrap();
    let out = ropc().arg("config").arg("reload").arg("--config").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("token_service.access_token_ttl") && stderr.contains("ropc.toml:6:"), "{stderr}");

    // A SIGHUP anyway: the server refuses it and keeps the old config.
    hup(&server);
    wait_metric(&server, "ropc_config_reload_failures_total", 1.0).await;
    assert!(server.log_shows("config_rejected"));
    assert!(server.logs().contains("token_service.access_token_ttl"), "the log names the key");
    let r = server.token_basic("legacy", "legacy-secret", LOGIN).await;
    assert_eq!((r.status, r.json()["expires_in"].as_u64()), (200, Some(300)), "{}", r.body);
    assert_eq!(introspect(&server, &s(&before, "access_token")).await["active"], true);

    // A good config with a broken users file is refused as a whole too.
    std::fs::write(&config, &good).unwrap();
    std::fs::write(server.dir.path().join("users.htpasswd"), "alice:not-a-hash\n").unwrap();
    hup(&server);
    wait_metric(&server, "ropc_config_reload_failures_total", 2.0).await;
    assert!(server.log_shows("users.htpasswd"));
    let r = server.token_basic("legacy", "legacy-secret", LOGIN).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = server.get("/metrics").await.body;
    assert_eq!(sample(&m, "ropc_config_generation"), Some(1.0));

    // Fixed: the next commit goes through.
    std::fs::write(server.dir.path().join("users.htpasswd"), standard_users()).unwrap();
    std::fs::write(&config, good.replace("access_token_ttl = 300", "access_token_ttl = 120")).unwrap();
    hup(&server);
    wait_metric(&server, "ropc_config_generation", 2.0).await;
    let r = server.token_basic("legacy", "legacy-secret", LOGIN).await;
    assert_eq!(r.json()["expires_in"], 120);
}

#[tokio::test]
async fn requests_in_flight_finish_on_the_old_config() {
    // Costlier hashes, so that logins are still queued when the commit lands
    // (all twelve: they would wait past the default max_queue_wait_ms).
    let config = standard_config("").replace("m_cost = 256\nt_cost = 1", "m_cost = 16384\nt_cost = 3")
        + "\n[hash_pool]\nmax_queue_wait_ms = 0\n";
    let params = ropc_hash::HashParams { m_cost: 16384, t_cost: 3, p_cost: 1 };
    let users = format!("alice:{}\n", ropc_hash::hash_password(b"wonderland", params).unwrap());
    let server = Server::start(&config, &users);
    // Warm the client secret memo, so that every later hash is a login.
    assert_eq!(server.token_basic("legacy", "legacy-secret", LOGIN).await.status, 200);
    let in_flight = crate::support::spawn_logins(&server, 12, LOGIN);
    // Wait until the server has read all 12: each is then queued, being
    // hashed or hashed (2 hashes before: the warm-up's secret and password).
    wait_until_hashes_submitted(&server, 14.0).await;
    // alice leaves, and access tokens now last 60 s: requests already
    // running still see her and the old lifetime.
    std::fs::write(server.dir.path().join("users.htpasswd"), "").unwrap();
    std::fs::write(
        server.dir.path().join("ropc.toml"),
        config.replace("access_token_ttl = 300", "access_token_ttl = 60"),
    )
    .unwrap();
    hup(&server);
    wait_metric(&server, "ropc_config_generation", 2.0).await;
    let m = server.get("/metrics").await.body;
    let unfinished =
        sample(&m, "ropc_hash_queue_length").unwrap_or(0.0) + sample(&m, "ropc_hash_busy_workers").unwrap_or(0.0);
    assert!(unfinished > 0.0, "the commit landed after the server had finished every request: the test proves nothing");
    for r in in_flight {
        let r = r.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["expires_in"], 300);
    }
    let r = server.token_basic("legacy", "legacy-secret", LOGIN).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()), "new requests see the new users file");
}

#[tokio::test]
async fn the_reload_command_reports_the_servers_verdict_through_the_admin_listener() {
    let port = free_port();
    let config =
        standard_config("").replace("tls = \"off\"", &format!("tls = \"off\"\nadmin_listen = \"127.0.0.1:{port}\""));
    let server = Server::start(&config, &standard_users());
    let path = server.dir.path().join("ropc.toml");
    std::fs::write(&path, config.replace("access_token_ttl = 300", "access_token_ttl = 90")).unwrap();
    let mut cmd = ropc();
    cmd.arg("config").arg("reload").arg("--config").arg(&path).arg("--pid").arg(server.pid().to_string());
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("committed: configuration generation 2"), "{stdout}");
    let r = server.token_basic("legacy", "legacy-secret", LOGIN).await;
    assert_eq!(r.json()["expires_in"], 90);
}
