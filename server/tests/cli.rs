//! The command line: hash-password, config check, client add,
//! client reset-secret, user add — each checked against a running server.

use crate::support::{ropc, standard_config, standard_users, Server};
use ropc_server::hash::StoredHash;
use std::io::Write;
use std::process::{Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child =
        ropc().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn hash_password_reads_one_line() {
    let _cpu = crate::support::shared();
    let out = run(&["hash-password", "--m-cost", "256", "--t-cost", "1"], "s3cret: with space\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let phc = text(&out.stdout);
    let phc = phc.trim();
    assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
    let stored = StoredHash::parse(phc).unwrap();
    assert!(stored.verify(b"s3cret: with space"));
    assert!(!stored.verify(b"s3cret: with space\n"), "the newline is not part of the password");
    // Default parameters are OWASP's.
    let out = run(&["hash-password"], "x\n");
    assert!(text(&out.stdout).starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
}

#[test]
fn config_check_names_key_and_line() {
    let _cpu = crate::support::shared();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ropc.toml");
    std::fs::write(dir.path().join("users.htpasswd"), standard_users()).unwrap();
    std::fs::write(&path, standard_config("")).unwrap();
    let out = run(&["config", "check", path.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok (4 clients, 3 scopes, 2 users)"), "{}", text(&out.stdout));

    // An unknown key, on line 8.
    let bad = standard_config("acces_token_ttl = 60");
    let line = bad.lines().position(|l| l.starts_with("acces_token_ttl")).unwrap() + 1;
    std::fs::write(&path, &bad).unwrap();
    let out = run(&["config", "check", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("ropc.toml:{line}: `token_service.acces_token_ttl`: unknown field")), "{err}");

    // A scope nobody defined.
    let bad =
        standard_config("").replace("[\"password\"]\nscopes = [\"read\"]", "[\"password\"]\nscopes = [\"reports\"]");
    std::fs::write(&path, &bad).unwrap();
    let out = run(&["config", "check", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`clients.scopes`: scope \"reports\" is not defined"), "{}", text(&out.stderr));

    // `ropc serve` refuses it the same way.
    let out = run(&["serve", "--config", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not defined"), "{}", text(&out.stderr));

    // A bad users file names its line.
    std::fs::write(&path, standard_config("")).unwrap();
    std::fs::write(dir.path().join("users.htpasswd"), "# users\nalice:plain-text-password\n").unwrap();
    let out = run(&["config", "check", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("users.htpasswd:2:"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn client_add_then_reset_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ropc.toml");
    std::fs::write(&config, standard_config("")).unwrap();
    std::fs::write(dir.path().join("users.htpasswd"), standard_users()).unwrap();
    let cfg = config.to_str().unwrap();

    let out = run(
        &[
            "client",
            "add",
            "portal",
            "--scope",
            "read",
            "--scope",
            "reports",
            "--capability",
            "password",
            "--config",
            cfg,
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let secret = stdout.lines().last().unwrap().trim().to_owned();
    assert_eq!(secret.len(), 43, "{stdout}");
    assert!(stdout.contains("[[clients]]") && stdout.contains("id = \"portal\""), "{stdout}");
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(!saved.contains(&secret), "only the hash is stored");
    assert!(saved.contains("name = \"reports\""), "the new scope was defined");
    assert!(text(&out.stderr).contains("shown once"));

    // Adding the same id again is refused and changes nothing.
    let out = run(&["client", "add", "portal", "--config", cfg], "");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), saved);

    let users = std::fs::read_to_string(config.with_file_name("users.htpasswd")).unwrap();
    let server = Server::start(&saved, &users);
    let login = "grant_type=password&username=alice&password=wonderland&scope=reports";
    let r = server.token_basic("portal", &secret, login).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"], "reports");
    drop(server);

    let out = run(&["client", "reset-secret", "portal", "--config", cfg], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new_secret = text(&out.stdout).trim().to_owned();
    assert_eq!(new_secret.len(), 43);
    assert_ne!(new_secret, secret);
    let saved = std::fs::read_to_string(&config).unwrap();
    let server = Server::start(&saved, &users);
    assert_eq!(server.token_basic("portal", &new_secret, login).await.status, 200);
    assert_eq!(server.token_basic("portal", &secret, login).await.status, 401);

    let out = run(&["client", "reset-secret", "ghost", "--config", cfg], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no client \"ghost\""));
}

#[tokio::test]
async fn user_add_replaces_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    std::fs::write(&users, standard_users()).unwrap();
    let config = dir.path().join("ropc.toml");
    std::fs::write(&config, standard_config("")).unwrap();
    let (u, c) = (users.to_str().unwrap(), config.to_str().unwrap());

    let out = run(&["user", "add", "bob", "--users", u, "--config", c], "builder\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["user", "add", "alice", "--users", u, "--config", c], "new-alice\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["user", "add", "bad:name", "--users", u], "x\n");
    assert_eq!(out.status.code(), Some(2));

    let text_now = std::fs::read_to_string(&users).unwrap();
    assert!(text_now.starts_with("# test users\n"), "comments are kept: {text_now}");
    assert_eq!(text_now.lines().filter(|l| l.starts_with("alice:")).count(), 1);
    assert!(text_now.contains("$m=256,t=1,p=1$"), "the config's argon2 parameters were used");

    let server = Server::start(&standard_config(""), &text_now);
    let login = |user: &str, pw: &str| format!("grant_type=password&username={user}&password={pw}");
    assert_eq!(server.token_basic("legacy", "legacy-secret", &login("bob", "builder")).await.status, 200);
    assert_eq!(server.token_basic("legacy", "legacy-secret", &login("alice", "new-alice")).await.status, 200);
    assert_eq!(server.token_basic("legacy", "legacy-secret", &login("alice", "wonderland")).await.status, 400);
}
