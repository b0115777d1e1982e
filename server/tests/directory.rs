//! LDAP credential managers end to end: the real `ropc` binary, clients
//! whose users live in a private slapd (search-then-bind and a DN
//! template), driven over HTTP. Logins, injection, the empty-password
//! pitfall, outages, the account lifecycle at refresh, timing.

use crate::support::ldap::{user_dn, Options, Slapd, SERVICE_DN, SERVICE_PW, SUFFIX};
use crate::support::{
    exclusive, hash, introspect, refresh, ropc, s, sample, standard_config, standard_users, Reply, Server,
};
use std::time::{Duration, Instant};

/// The standard fixture plus two clients of one directory: `corp` finds its
/// users by a search with the service account (manager `dir`), `direct`
/// binds to a DN template (manager `tmpl`). `extra`: keys for both.
/// `secrets`: where the service account's password file goes.
fn ldap_config(slapd: &Slapd, secrets: &std::path::Path, extra: &str) -> String {
    let password_file = secrets.join("bind-password");
    std::fs::write(&password_file, format!("{SERVICE_PW}\n")).unwrap();
    let client = |id: &str, manager: &str| {
        format!(
            "\n[[clients]]\nid = \"{id}\"\nsecret = \"{}\"\ncapabilities = [\"password\", \"refresh_token\"]\n\
             scopes = [\"read\"]\ndefault_scopes = [\"read\"]\ncredential_manager = \"{manager}\"\n",
            hash(&format!("{id}-secret"))
        )
    };
    format!(
        "{}{}{}\n[credential_managers.dir]\nkind = \"ldap\"\nurls = [\"{url}\"]\nbind_dn = \"{SERVICE_DN}\"\n\
         bind_password_file = \"{password_file}\"\nbase_dn = \"{SUFFIX}\"\n\
         user_filter = \"(&(objectClass=inetOrgPerson)(uid={{username}}))\"\nsubject_attribute = \"employeeNumber\"\n{extra}\n\
         [credential_managers.tmpl]\nkind = \"ldap\"\nurls = [\"{url}\"]\nuser_dn_template = \"{template}\"\n{extra}\n",
        standard_config(""),
        client("corp", "dir"),
        client("direct", "tmpl"),
        url = slapd.url(),
        password_file = password_file.display(),
        template = user_dn("{username}"),
    )
}

/// Starts ropc with both managers; the directory holding the service
/// account's password lives as long as the server.
fn start(slapd: &Slapd, extra: &str, env: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let config = ldap_config(slapd, secrets.path(), extra);
    (Server::start_with_env(&config, &standard_users(), env), secrets)
}

async fn login(server: &Server, client: &str, username: &str, password: &str) -> Reply {
    let body =
        ropc_core::form::encode_pairs(&[("grant_type", "password"), ("username", username), ("password", password)]);
    server.token_basic(client, &format!("{client}-secret"), &body).await
}

#[tokio::test]
async fn directory_users_log_in_by_search_and_by_dn_template() {
    // A directory that, like Active Directory, takes a DN with an empty
    // password as an anonymous bind.
    let slapd = Slapd::start(Options { bind_anon_dn: true, ..Options::default() });
    assert!(slapd.whoami(&user_dn("alice"), "").is_ok(), "slapd accepts the unauthenticated bind");
    let binds_before = slapd.binds_as(&user_dn("alice"));
    let (server, _secrets) = start(&slapd, "account_cache_ttl = 1\n", &[("RUST_LOG", "debug")]);

    for client in ["corp", "direct"] {
        let r = login(&server, client, "alice", "wonderland").await;
        assert_eq!(r.status, 200, "{client}: {}", r.body);
        let info = introspect(&server, &s(&r.json(), "access_token")).await;
        let sub = if client == "corp" { "1001" } else { "alice" };
        assert_eq!((info["sub"].as_str(), info["username"].as_str()), (Some(sub), Some("alice")), "{client}: {info}");

        let wrong = login(&server, client, "alice", "Wonderland").await;
        assert_eq!((wrong.status, wrong.error()), (400, "invalid_grant".to_owned()), "{client}");
        for (user, password, what) in [
            ("mallory", "wonderland", "an unknown user"),
            ("locked", "padlock", "a locked account (pwdAccountLockedTime)"),
            ("*", "wonderland", "a wildcard"),
            ("lar*", "lobster", "a prefix of larry"),
            ("x)(uid=*", "lobster", "a filter injection"),
            ("*)(|(uid=*", "wonderland", "another"),
            ("larry,ou=people", "lobster", "a DN injection"),
        ] {
            let r = login(&server, client, user, password).await;
            assert_eq!((r.status, &r.body), (400, &wrong.body), "{client}, {what}");
        }
    }
    // An empty password is no password (the request's own grammar refuses
    // it), and never reaches the directory as a bind: only the two right
    // and the two wrong passwords bound as alice.
    for client in ["corp", "direct"] {
        let r = login(&server, client, "alice", "").await;
        assert_eq!((r.status, r.error()), (400, "invalid_request".to_owned()), "{client}: {}", r.body);
    }
    assert_eq!(slapd.binds_as(&user_dn("alice")) - binds_before, 4, "{}", slapd.log());
    // The users file's clients know no directory user, and the other way.
    let r = server.token_basic("legacy", "legacy-secret", "grant_type=password&username=bob&password=builder").await;
    assert_eq!(r.status, 400);
    assert_eq!(login(&server, "corp", "j\u{f6}rg", "p\u{e4}ssw\u{f6}rd: with space").await.status, 400);

    // The lifecycle: a grant each for bob, larry and alice; bob's entry is
    // deleted and alice's password changed (ppolicy's pwdChangedTime; the
    // second after the logins). Past account_cache_ttl their refreshes
    // fail; larry's goes on.
    let mut grants = Vec::new();
    for (user, password) in [("alice", "wonderland"), ("bob", "builder"), ("larry", "lobster")] {
        let r = login(&server, "corp", user, password).await;
        assert_eq!(r.status, 200, "{user}: {}", r.body);
        grants.push(r.json());
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    slapd.set_password(&user_dn("alice"), "looking-glass");
    slapd.delete(&user_dn("bob"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (i, who) in ["alice", "bob"].iter().enumerate() {
        let r = refresh(&server, "corp", "corp-secret", &s(&grants[i], "refresh_token")).await;
        assert_eq!((r.status, r.error()), (400, "invalid_grant".to_owned()), "{who}: {}", r.body);
        assert_eq!(introspect(&server, &s(&grants[i], "access_token")).await["active"], false, "{who}");
    }
    let r = refresh(&server, "corp", "corp-secret", &s(&grants[2], "refresh_token")).await;
    assert_eq!(r.status, 200, "larry: {}", r.body);
    let larry = r.json();
    assert_eq!(login(&server, "corp", "alice", "looking-glass").await.status, 200);

    // The operator ends larry's sessions.
    let out = ropc()
        .args(["sessions", "revoke", "--user", "larry", "--credential-manager", "dir", "--config"])
        .arg(server.dir.path().join("ropc.toml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("1 grants of user \"larry\" ended"), "{said}");
    assert_eq!(refresh(&server, "corp", "corp-secret", &s(&larry, "refresh_token")).await.status, 400);

    let m = server.get("/metrics").await.body;
    for name in ["dir", "tmpl"] {
        assert_eq!(sample(&m, &format!("ropc_credential_manager_up{{manager=\"{name}\",kind=\"ldap\"}}")), Some(1.0));
    }
    let logs = server.logs();
    assert!(logs.contains("DEBUG") && logs.contains("credential manager manager=dir"), "the log is at debug level");
    for secret in [SERVICE_PW, "wonderland", "Wonderland", "builder", "lobster", "padlock", "looking-glass"] {
        assert!(!logs.contains(secret), "{secret:?} in the log");
    }
}

#[tokio::test]
async fn a_stopped_directory_answers_503_fast_and_comes_back() {
    let mut slapd = Slapd::start(Options::default());
    let (server, _secrets) =
        start(&slapd, "connect_timeout_ms = 1000\noperation_timeout_ms = 1000\naccount_cache_ttl = 0\n", &[]);
    let grant = login(&server, "corp", "alice", "wonderland").await;
    assert_eq!(grant.status, 200, "{}", grant.body);
    let grant = grant.json();

    slapd.stop();
    for i in 0..4 {
        let started = Instant::now();
        let r = if i < 3 {
            login(&server, if i % 2 == 0 { "corp" } else { "direct" }, "alice", "wonderland").await
        } else {
            refresh(&server, "corp", "corp-secret", &s(&grant, "refresh_token")).await
        };
        assert_eq!((r.status, r.error()), (503, "temporarily_unavailable".to_owned()), "try {i}: {}", r.body);
        assert!(r.header("retry-after").is_some(), "try {i}");
        assert!(started.elapsed() < Duration::from_secs(3), "try {i}: {:?}", started.elapsed());
    }
    let r =
        server.token_basic("legacy", "legacy-secret", "grant_type=password&username=alice&password=wonderland").await;
    assert_eq!(r.status, 200, "the users file's clients are not held up: {}", r.body);
    assert!(server.get("/healthz").await.body.contains("credential_manager dir (ldap): down"));

    slapd.restart();
    let deadline = Instant::now() + Duration::from_secs(40);
    while login(&server, "corp", "alice", "wonderland").await.status != 200 {
        assert!(Instant::now() < deadline, "the directory never came back:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = refresh(&server, "corp", "corp-secret", &s(&grant, "refresh_token")).await;
    assert_eq!(r.status, 200, "the grant outlived the outage: {}", r.body);
}

/// An unknown user (the search finds nobody) is answered when a wrong
/// password (a bind that fails) would be: ropc binds its password to a DN
/// nobody has, which costs what a failed bind costs.
#[tokio::test]
#[allow(clippy::await_holding_lock)] // deliberately: no other test's server runs meanwhile
async fn ldap_timing_does_not_tell_which_users_exist() {
    let _cpu = exclusive();
    let slapd = Slapd::start(Options::default());
    let (server, _secrets) = start(&slapd, "", &[]);
    let time = |user: String| {
        let server = &server;
        async move {
            let started = Instant::now();
            assert_eq!(login(server, "corp", &user, "wrong").await.status, 400);
            started.elapsed()
        }
    };
    let known = ["alice", "bob", "larry", "twin1"];
    // Let the server learn the bind time, and its timer's lateness.
    for i in 0..8 {
        time(known[i % known.len()].to_owned()).await;
        time(format!("warm-{i}")).await;
    }
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    // 32 of each, interleaved: a median of a few milliseconds on a shared
    // machine needs that many to be steady (and 80 failures in all stay
    // under the default per-IP limit of 100).
    for i in 0..32 {
        wrong.push(time(known[i % known.len()].to_owned()).await);
        unknown.push(time(format!("nobody-{i}")).await);
    }
    wrong.sort();
    unknown.sort();
    let (w, u) = (wrong[16].as_secs_f64(), unknown[16].as_secs_f64());
    println!("ldap medians: wrong password {w:.5} s, unknown user {u:.5} s, ratio {:.3}", u / w);
    assert!((u / w - 1.0).abs() <= 0.2, "median wrong password {w:.5} s, unknown user {u:.5} s");
}
