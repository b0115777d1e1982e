//! Sessions that end: a password changed outside ropc ends the grants made
//! before it, ropc's own upgrade of a hash does not, and the operator's
//! `ropc sessions revoke` ends a user's or a client's grants at once.

use crate::support::{hash, introspect, refresh, ropc, s, sample, standard_config, standard_users, Server};
use std::time::{Duration, Instant};

const ALICE: &str = "grant_type=password&username=alice&password=wonderland";
const JORG: &str = "grant_type=password&username=j%C3%B6rg&password=p%C3%A4ssw%C3%B6rd%3A+with+space";

async fn login(server: &Server, client: &str, body: &str) -> serde_json::Value {
    let r = server.token_basic(client, &format!("{client}-secret"), body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Sends SIGHUP and waits for the commit of config generation `generation`.
async fn reload(server: &Server, generation: f64) {
    let status = std::process::Command::new("kill").arg("-HUP").arg(server.pid().to_string()).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while sample(&server.get("/metrics").await.body, "ropc_config_generation") != Some(generation) {
        assert!(Instant::now() < deadline, "no commit of generation {generation}:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the grant of `tokens` still lives: its access token introspects
/// active and its refresh token refreshes (`tokens` then holds the new
/// ones, as rotation retired the old).
async fn alive(server: &Server, client: &str, tokens: &mut serde_json::Value) -> (bool, u16) {
    let active = introspect(server, &s(tokens, "access_token")).await["active"] == true;
    let r = refresh(server, client, &format!("{client}-secret"), &s(tokens, "refresh_token")).await;
    if r.status == 200 {
        *tokens = r.json();
    } else {
        assert_eq!(r.error(), "invalid_grant", "{}", r.body);
    }
    (active, r.status)
}

#[tokio::test]
async fn a_password_changed_in_the_users_file_ends_the_grants_before_it() {
    let users = standard_users();
    let server = Server::start(&standard_config(""), &users);
    let mut alice = login(&server, "legacy", ALICE).await;
    let mut jorg = login(&server, "legacy", JORG).await;

    // alice's password changes in the file (as `ropc user add` or an editor
    // would write it); jörg's line stays.
    let jorg_line = users.lines().find(|l| l.starts_with("j\u{f6}rg:")).unwrap().to_owned();
    let users = format!("alice:{}\n{jorg_line}\n", hash("looking-glass"));
    std::fs::write(server.dir.path().join("users.htpasswd"), users).unwrap();
    reload(&server, 2.0).await;

    // Her grant ends right after the commit (no refresh needed for the
    // access token to go inactive), and the old password no longer works.
    assert!(server.log_shows("grants_ended"), "{}", server.logs());
    assert_eq!(alive(&server, "legacy", &mut alice).await, (false, 400));
    let r = server.token_basic("legacy", "legacy-secret", ALICE).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()));
    // A grant with the new password lives; jörg's was never touched. (Grants
    // are timed to the second, and one issued in the second of the change
    // ends with the older ones, the safe side: log in in the next second.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut again = login(&server, "legacy", "grant_type=password&username=alice&password=looking-glass").await;
    assert_eq!(alive(&server, "legacy", &mut again).await, (true, 200), "{}", server.logs());
    assert_eq!(alive(&server, "legacy", &mut jorg).await, (true, 200));
    assert!(!server.logs().contains("looking-glass"), "a password in the logs");
}

#[tokio::test]
async fn ropcs_own_upgrade_of_a_hash_keeps_the_grant() {
    // alice's hash is bcrypt: her first login replaces it with argon2id in
    // the file. That is ropc's doing, not a password change.
    let bcrypt = "$2b$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu";
    let server = Server::start(&standard_config(""), &format!("alice:{bcrypt}\n"));
    let path = server.dir.path().join("users.htpasswd");
    let mut tokens = login(&server, "legacy", "grant_type=password&username=alice&password=pw-legacy").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&path).unwrap().contains("$argon2id$") {
        assert!(Instant::now() < deadline, "no upgrade:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A reload reads the upgraded file: the grant goes on.
    reload(&server, 2.0).await;
    let (active, status) = alive(&server, "legacy", &mut tokens).await;
    assert_eq!((active, status), (true, 200), "{}", server.logs());
    assert!(!server.log_shows("grants_ended"), "{}", server.logs());
    // And a restart on the upgraded file too (the durable log keeps the
    // grant; the hash read at start is the one ropc wrote).
    let dir = server.kill9();
    let server = Server::start_in(dir);
    let r =
        server.token_basic("legacy", "legacy-secret", "grant_type=password&username=alice&password=pw-legacy").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn revoke(server: &Server, args: &[&str]) -> (bool, String) {
    let out = ropc()
        .args(["sessions", "revoke"])
        .args(args)
        .arg("--config")
        .arg(server.dir.path().join("ropc.toml"))
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn sessions_revoke_ends_a_users_or_a_clients_grants_at_once() {
    let server = Server::start(&standard_config(""), &standard_users());
    let mut alice = [login(&server, "legacy", ALICE).await, login(&server, "other", ALICE).await];
    let mut jorg = login(&server, "legacy", JORG).await;
    let mut jorg_other = login(&server, "other", JORG).await;

    let (ok, out) = revoke(&server, &["--user", "alice"]);
    assert!(ok, "{out}");
    assert!(out.contains("2 grants of user \"alice\" ended"), "{out}");
    assert_eq!(alive(&server, "legacy", &mut alice[0]).await, (false, 400));
    assert_eq!(alive(&server, "other", &mut alice[1]).await, (false, 400));
    assert_eq!(alive(&server, "legacy", &mut jorg).await, (true, 200));
    // She may log in again: a revocation ends sessions, it is not a lock.
    let mut fresh = login(&server, "legacy", ALICE).await;
    assert_eq!(alive(&server, "legacy", &mut fresh).await, (true, 200));

    let (ok, out) = revoke(&server, &["--client", "other"]);
    assert!(ok, "{out}");
    assert!(out.contains("1 grants of client \"other\" ended"), "{out}");
    assert_eq!(alive(&server, "other", &mut jorg_other).await, (false, 400));
    assert_eq!(alive(&server, "legacy", &mut fresh).await, (true, 200));

    // Nobody to end is no error; a client or manager that does not exist is.
    let (ok, out) = revoke(&server, &["--user", "nobody"]);
    assert!(ok && out.contains("0 grants"), "{out}");
    let (ok, out) = revoke(&server, &["--client", "ghost"]);
    assert!(!ok && out.contains("no client \"ghost\""), "{out}");
    let (ok, out) = revoke(&server, &["--user", "alice", "--credential-manager", "ghost"]);
    assert!(!ok && out.contains("credential_managers.ghost"), "{out}");

    // The public listener does not serve the operator's endpoint.
    let r = server.post("/admin/sessions/revoke", "user=j%C3%B6rg", &[]).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(alive(&server, "legacy", &mut jorg).await, (true, 200));
}

#[tokio::test]
async fn sessions_revoke_says_when_no_server_runs() {
    let server = Server::start(&standard_config(""), &standard_users());
    let dir = server.kill9();
    let server_config = dir.path().join("ropc.toml");
    let out = ropc().args(["sessions", "revoke", "--user", "alice", "--config"]).arg(&server_config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot reach the server") || err.contains("is not running"), "{err}");
}

#[tokio::test]
async fn a_named_file_manager_keeps_its_users_apart() {
    // "partners" logs its users in against partners.htpasswd; the same
    // username in the default users file is another person.
    let config = standard_config("")
        .replace("[[clients]]\nid = \"other\"", "[[clients]]\nid = \"other\"\ncredential_manager = \"partners\"")
        + "\n[credential_managers.partners]\nkind = \"file\"\nusers_file = \"partners.htpasswd\"\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("partners.htpasswd"), format!("alice:{}\n", hash("partner-pass"))).unwrap();
    std::fs::write(dir.path().join("ropc.toml"), &config).unwrap();
    std::fs::write(dir.path().join("users.htpasswd"), standard_users()).unwrap();
    let server = Server::start_in(dir);

    let partner = "grant_type=password&username=alice&password=partner-pass";
    let r = server.token_basic("other", "other-secret", ALICE).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()), "the default file's password");
    let r = server.token_basic("legacy", "legacy-secret", partner).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()), "the partners file's password");
    let mut theirs = login(&server, "other", partner).await;
    let mut ours = login(&server, "legacy", ALICE).await;

    // Revoking the default file's alice leaves the partners' alice alone.
    let (ok, out) = revoke(&server, &["--user", "alice"]);
    assert!(ok && out.contains("1 grants"), "{out}");
    assert_eq!(alive(&server, "legacy", &mut ours).await, (false, 400));
    assert_eq!(alive(&server, "other", &mut theirs).await, (true, 200));
    let (ok, out) = revoke(&server, &["--user", "alice", "--credential-manager", "partners"]);
    assert!(ok && out.contains("1 grants"), "{out}");
    assert_eq!(alive(&server, "other", &mut theirs).await, (false, 400));

    // A password changed in the named manager's file ends the grants made
    // with the old one at their next refresh; ropc's reload of an unchanged
    // file does not.
    let mut before = login(&server, "other", partner).await;
    reload(&server, 2.0).await;
    assert_eq!(alive(&server, "other", &mut before).await, (true, 200), "{}", server.logs());
    std::fs::write(server.dir.path().join("partners.htpasswd"), format!("alice:{}\n", hash("new-partner-pass")))
        .unwrap();
    reload(&server, 3.0).await;
    let (_, status) = alive(&server, "other", &mut before).await;
    assert_eq!(status, 400, "{}", server.logs());
    assert!(server.log_shows("PasswordChanged"), "{}", server.logs());
    assert_eq!(introspect(&server, &s(&before, "access_token")).await["active"], false, "the refresh ended the grant");
    let r = server.token_basic("other", "other-secret", partner).await;
    assert_eq!(r.status, 400, "{}", r.body);
    login(&server, "other", "grant_type=password&username=alice&password=new-partner-pass").await;

    let m = server.get("/metrics").await.body;
    assert_eq!(sample(&m, "ropc_credential_manager_up{manager=\"partners\",kind=\"file\"}"), Some(1.0), "{m}");
    assert!(server.get("/healthz").await.body.contains("credential_manager partners (file): up"));
}
