//! The command line: hash-password, config check, client add,
//! client reset-secret, user add — each checked against a running server.

use crate::support::{ropc, standard_config, standard_users, Server};
use ropc_hash::StoredHash;
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

/// `ropc user add` killed with SIGKILL at random points of its rewrite of a
/// large users file: afterwards the file is always one whole version, the
/// old one or the new one, and the server's parser accepts it.
#[test]
fn kill_9_during_a_rewrite_leaves_the_old_or_the_new_file() {
    let _cpu = crate::support::shared();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    // About 1 MB, so that writing and syncing it takes a while.
    let line = format!("{}\n", crate::support::hash("pw"));
    let mut many = String::from("# many users\n");
    for i in 0..10_000 {
        many.push_str(&format!("user{i}:{line}"));
    }
    std::fs::write(&users, &many).unwrap();
    let config = dir.path().join("ropc.toml");
    std::fs::write(&config, standard_config("")).unwrap();
    let (u, c) = (users.to_str().unwrap(), config.to_str().unwrap());
    let params = ropc_hash::HashParams { m_cost: 256, t_cost: 1, p_cost: 1 };
    // How long one whole run takes here (debug or release, loaded or not),
    // to spread the kills over it.
    let started = std::time::Instant::now();
    let out = run(&["user", "add", "first", "--users", u, "--config", c], "secret\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let whole = started.elapsed().as_micros() as u64;
    let (mut old, mut new, mut mid_write) = (0, 0, 0);
    let mut expected = 10_001;
    for round in 0..24u64 {
        let name = format!("added{round}");
        let mut child = ropc()
            .args(["user", "add", &name, "--users", u, "--config", c])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"secret\n").unwrap();
        if round % 2 == 0 {
            // Spread the kills over start-up, hashing, writing and renaming.
            std::thread::sleep(std::time::Duration::from_micros(whole * (round * 7 % 24) / 12));
        } else {
            // Kill while the new version is being written: once its
            // temporary file appears beside the users file.
            let deadline = std::time::Instant::now() + std::time::Duration::from_micros(2 * whole);
            while !staging(dir.path()) && child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            std::thread::sleep(std::time::Duration::from_micros(round * 131 % 1_000));
        }
        let _ = child.kill();
        let _ = child.wait();
        if staging(dir.path()) {
            // Killed mid-rewrite: the temporary file is left behind.
            mid_write += 1;
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let e = e.unwrap();
                if e.file_name().to_string_lossy().starts_with(".users.htpasswd.tmp") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
        let now = std::fs::read_to_string(&users).unwrap();
        let store = ropc_server::credentials::UserStore::parse(&users, &now, params)
            .unwrap_or_else(|e| panic!("round {round}: the users file does not parse: {e}"));
        if store.len() == expected + 1 {
            assert!(now.contains(&format!("\n{name}:$argon2id$")), "round {round}: the new user is whole");
            new += 1;
            expected += 1;
        } else {
            assert_eq!(store.len(), expected, "round {round}: neither the old nor the new file");
            old += 1;
        }
    }
    // Kills landed both before and after the new version was in place.
    eprintln!("kills that left the old file: {old}, the new one: {new}; killed while writing: {mid_write}");
    assert!(old > 0 && new > 0, "old {old}, new {new}: the kills did not spread");
    assert!(mid_write > 0, "no kill landed while the new version was being written");
}

/// Whether a temporary users file (a rewrite in progress) is in `dir`.
fn staging(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".users.htpasswd.tmp"))
}

/// `--log-format` is `serve`'s: only its help lists it; it is still taken
/// before the command, as scripts wrote it.
#[test]
fn only_serve_lists_log_format() {
    for args in
        [&["hash-password", "--help"][..], &["config", "check", "--help"], &["client", "add", "--help"], &["--help"]]
    {
        let out = run(args, "");
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(!text(&out.stdout).contains("--log-format"), "{args:?}:\n{}", text(&out.stdout));
    }
    let out = run(&["serve", "--help"], "");
    assert!(text(&out.stdout).contains("--log-format"), "{}", text(&out.stdout));
    // Both places parse (an unknown config path fails after parsing).
    for args in [
        &["serve", "--log-format", "json", "--config", "/nonexistent.toml"][..],
        &["--log-format", "json", "serve", "--config", "/nonexistent.toml"],
    ] {
        let out = run(args, "");
        assert!(text(&out.stderr).contains("/nonexistent.toml"), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn client_add_with_a_jwks_file_makes_a_private_key_jwt_client_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ropc.toml");
    std::fs::write(&config, standard_config("")).unwrap();
    std::fs::write(dir.path().join("users.htpasswd"), standard_users()).unwrap();
    let cfg = config.to_str().unwrap();
    let jwk =
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}]}"#;
    std::fs::write(dir.path().join("batch-jwks.json"), jwk).unwrap();
    std::fs::write(
        dir.path().join("private.json"),
        jwk.replace(r#""kid""#, r#""d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kid""#),
    )
    .unwrap();

    // A key set with a private key is refused, and the file is left alone.
    let before = std::fs::read_to_string(&config).unwrap();
    let out = run(&["client", "add", "batch", "--jwks-file", "private.json", "--config", cfg], "");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("private member"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);

    let out =
        run(&["client", "add", "batch", "--scope", "read", "--jwks-file", "batch-jwks.json", "--config", cfg], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains("token_endpoint_auth_method = \"private_key_jwt\""), "{saved}");
    assert!(saved.contains("jwks_file = \"batch-jwks.json\""), "{saved}");
    let block = &saved[saved.find("id = \"batch\"").unwrap()..];
    assert!(!block.contains("secret"), "no secret: {block}");
    assert!(!text(&out.stderr).contains("shown once"));
    let check = run(&["config", "check", cfg], "");
    assert!(check.status.success(), "{}", text(&check.stderr));
}
