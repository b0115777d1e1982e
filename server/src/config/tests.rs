//! Config parsing and validation, table-driven.
use super::*;
use ropc_core::ClientIndex;
use ropc_hash::hash_password;

fn hash() -> String {
    hash_password(b"s", HashParams { m_cost: 64, t_cost: 1, p_cost: 1 }).unwrap()
}

fn config(body: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/ropc/ropc.toml"), body)
}

fn good() -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
tls = "off"

[credential_manager]
users_file = "users.htpasswd"

[[scopes]]
name = "read"

[[scopes]]
name = "write"

[[clients]]
id = "legacy"
secret = "{}"
capabilities = ["password", "refresh_token"]
scopes = ["read", "write"]
default_scopes = ["read"]
"#,
        hash()
    )
}

#[test]
fn hash_pool_policy_and_nice() {
    use ropc_hash::{HashPriority, DEFAULT_NICE};
    let with = |pool: &str| config(&good().replacen("[server]", &format!("[hash_pool]\n{pool}\n[server]"), 1));
    assert_eq!(config(&good()).unwrap().hash_pool.priority(), HashPriority::Nice(DEFAULT_NICE));
    assert_eq!(with("nice = 5").unwrap().hash_pool.priority(), HashPriority::Nice(5));
    assert_eq!(with("policy = \"normal\"\nnice = 0").unwrap().hash_pool.priority(), HashPriority::Nice(0));
    assert_eq!(with("policy = \"idle\"").unwrap().hash_pool.priority(), HashPriority::Idle);
    assert_eq!(config(&good()).unwrap().hash_pool.max_queue_wait, Duration::from_millis(250));
    assert_eq!(with("max_queue_wait_ms = 0").unwrap().hash_pool.max_queue_wait, Duration::ZERO);
    assert_eq!(with("max_queue_wait_ms = 1000").unwrap().hash_pool.max_queue_wait, Duration::from_secs(1));
}

#[test]
fn accepts_the_contract_example() {
    let c = config(&good()).unwrap();
    assert_eq!(c.users_file.as_deref(), Some(Path::new("/etc/ropc/users.htpasswd")));
    assert_eq!(c.engine.config.access_token_ttl, 300);
    assert_eq!(c.engine.clients.len(), 1);
    assert_eq!(c.endpoints.token, "/oauth/v2/oauth-token");
    assert_eq!(c.issuer(None), "http://127.0.0.1:0");
    assert_eq!(c.issuer(Some(8080)), "http://127.0.0.1:8080");
}

/// (edit to the good config, expected line, expected key, part of message)
#[test]
fn errors_name_line_and_key() {
    let cases: &[(&str, &str, Option<usize>, &str, &str)] = &[
        ("tls = \"off\"", "tls = \"of\"", Some(3), "server.tls", "expected"),
        ("listen = \"127.0.0.1:0\"", "listen = \"nope\"", Some(2), "server.listen", "host:port"),
        ("[server]", "[server]\nbogus = 1", Some(2), "server.bogus", "unknown field `bogus`"),
        (
            "scopes = [\"read\", \"write\"]",
            "scopes = [\"read\", \"admin\"]",
            Some(18),
            "clients.scopes",
            "\"admin\" is not defined",
        ),
        (
            "default_scopes = [\"read\"]",
            "default_scopes = [\"nope\"]",
            Some(19),
            "clients.default_scopes",
            "not defined",
        ),
        (
            "capabilities = [\"password\", \"refresh_token\"]",
            "capabilities = [\"password\", \"implicit\"]",
            Some(17),
            "clients.capabilities",
            "unknown variant `implicit`, expected one of `password`, `refresh_token`, `client_credentials`",
        ),
        ("name = \"write\"", "name = \"has space\"", Some(12), "scopes.name", "RFC 6749"),
        ("name = \"write\"", "name = \"read\"", Some(12), "scopes.name", "defined twice"),
        (
            "[credential_manager]\nusers_file = \"users.htpasswd\"",
            "",
            None,
            "credential_manager.users_file",
            "must be set",
        ),
        (
            "[server]",
            "[token_service]\naccess_token_ttl = 0\n[server]",
            Some(2),
            "token_service.access_token_ttl",
            "between 1",
        ),
        (
            "[server]",
            "[token_service]\naccess_token_ttl = \"5m\"\n[server]",
            Some(2),
            "token_service.access_token_ttl",
            "invalid type",
        ),
        (
            "[server]",
            "[hash_pool]\npolicy = \"batch\"\n[server]",
            Some(2),
            "hash_pool.policy",
            "expected `normal` or `idle`",
        ),
        ("[server]", "[hash_pool]\nnice = 20\n[server]", Some(2), "hash_pool.nice", "between 0"),
        (
            "[server]",
            "[hash_pool]\nmax_queue_wait_ms = 60001\n[server]",
            Some(2),
            "hash_pool.max_queue_wait_ms",
            "between 0 and 60000 ms",
        ),
    ];
    for &(from, to, line, key, message) in cases {
        let body = good().replacen(from, to, 1);
        let e = config(&body).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (line, key), "{to}: {e}");
        assert!(e.message.contains(message), "{to}: {e}");
    }
}

#[test]
fn secret_must_be_a_hash() {
    let body = good().replace(&hash(), "plain-secret");
    let body = regex_free_replace_secret(&body);
    let e = config(&body).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (Some(16), "clients.secret"));
    assert!(e.to_string().starts_with("/etc/ropc/ropc.toml:16: `clients.secret`: "), "{e}");
}

fn regex_free_replace_secret(body: &str) -> String {
    body.lines()
        .map(|l| if l.starts_with("secret = ") { "secret = \"plain-secret\"".to_owned() } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn tls_files_are_relative_to_the_config() {
    let body = good().replace("tls = \"off\"", "tls = { cert = \"c.pem\", key = \"k.pem\" }");
    let c = config(&body).unwrap();
    assert_eq!(c.tls, TlsMode::Files { cert: "/etc/ropc/c.pem".into(), key: "/etc/ropc/k.pem".into() });
}

#[test]
fn a_reload_keeps_every_scope_and_client_index_and_never_reuses_a_removed_one() {
    let first = config(&good()).unwrap();
    // "write" and "legacy" stay; "read" goes; "admin", "profile" and two
    // clients come, listed before the old ones.
    let text = good()
        .replace("[[scopes]]\nname = \"read\"\n", "[[scopes]]\nname = \"admin\"\n\n[[scopes]]\nname = \"profile\"\n")
        .replace(
            "scopes = [\"read\", \"write\"]\ndefault_scopes = [\"read\"]",
            "scopes = [\"write\"]\ndefault_scopes = []",
        )
        .replace(
            "[[clients]]\nid = \"legacy\"",
            &format!(
                "[[clients]]\nid = \"a\"\nsecret = \"{h}\"\ncapabilities = [\"password\"]\nscopes = [\"admin\"]\n\n\
                 [[clients]]\nid = \"b\"\nsecret = \"{h}\"\ncapabilities = [\"password\"]\nscopes = []\n\n\
                 [[clients]]\nid = \"legacy\"",
                h = hash()
            ),
        );
    let second = Config::parse_after(Path::new("/etc/ropc/ropc.toml"), &text, Some(&first.engine)).unwrap();
    let scopes = &second.engine.scopes;
    assert_eq!((scopes.index_of("write"), scopes.name(0)), (Some(1), None), "write keeps bit 1; read's bit retires");
    assert_eq!((scopes.index_of("admin"), scopes.index_of("profile")), (Some(2), Some(3)));
    let clients = &second.engine.clients;
    assert_eq!(clients.find("legacy"), Some(ClientIndex(0)));
    assert_eq!((clients.find("a"), clients.find("b")), (Some(ClientIndex(1)), Some(ClientIndex(2))));
    assert_eq!(second.client_secrets.len(), 3);

    // Then "legacy" goes, and comes back: it gets a new index, so tokens of
    // the removed client stay dead.
    let without = text.replace("[[clients]]\nid = \"legacy\"", "[[clients]]\nid = \"c\"");
    let third = Config::parse_after(Path::new("/etc/ropc/ropc.toml"), &without, Some(&second.engine)).unwrap();
    assert!(third.engine.clients.get(ClientIndex(0)).is_none());
    assert!(third.client_secrets[0].is_none());
    assert_eq!(third.engine.clients.find("c"), Some(ClientIndex(3)));
    let fourth = Config::parse_after(Path::new("/etc/ropc/ropc.toml"), &text, Some(&third.engine)).unwrap();
    assert_eq!(fourth.engine.clients.find("legacy"), Some(ClientIndex(4)));
    assert_eq!(fourth.engine.clients.len(), 3);
}

#[test]
fn a_reload_that_would_need_a_65th_scope_bit_says_to_restart() {
    let many = |prefix: &str| (0..60).map(|i| format!("[[scopes]]\nname = \"{prefix}{i}\"\n\n")).collect::<String>();
    let first = config(&format!("{}{}", many("a"), good())).unwrap();
    let e =
        Config::parse_after(Path::new("/etc/ropc/ropc.toml"), &format!("{}{}", many("b"), good()), Some(&first.engine))
            .unwrap_err();
    assert_eq!(e.key, "scopes.name");
    assert_eq!(e.line, Some(8), "{e}: b0 and b1 fit, b2 (line 8) does not");
    assert!(e.message.contains("restart the server"), "{e}");
}

#[test]
fn token_store_section() {
    let c = config(&good()).unwrap();
    let wal = Some(PathBuf::from("/etc/ropc/ropc-tokens.wal"));
    assert_eq!(
        c.token_store,
        TokenStoreConfig::Memory { wal: wal.clone(), sync_interval_ms: DEFAULT_SYNC_INTERVAL_MS }
    );
    let c = config(&format!("{}\n[token_store]\ndurable = false\n", good())).unwrap();
    assert!(matches!(c.token_store, TokenStoreConfig::Memory { wal: None, .. }));
    let c = config(&format!("{}\n[token_store]\nsync_interval_ms = 0\n", good())).unwrap();
    assert_eq!(c.token_store, TokenStoreConfig::Memory { wal, sync_interval_ms: 0 });
    let c =
        config(&format!("{}\n[token_store]\nkind = \"redis\"\nurl = \"redis://:hunter2@10.0.0.5:6379/2\"\n", good()))
            .unwrap();
    let TokenStoreConfig::Redis(r) = &c.token_store else { panic!("{:?}", c.token_store) };
    assert_eq!((r.nodes.len(), r.cluster, r.prefix.as_str()), (1, false, "ropc:"));
    let debug = format!("{:?}", c.token_store);
    assert!(!debug.contains("hunter2") && debug.contains("<redacted>@10.0.0.5"), "{debug}");
    let c = config(&format!(
        "{}\n[token_store]\nkind = \"redis\"\ncluster_nodes = [\"redis://a:7000\", \"redis://b:7001\"]\n",
        good()
    ))
    .unwrap();
    assert!(matches!(&c.token_store, TokenStoreConfig::Redis(r) if r.cluster && r.nodes.len() == 2));
    let base = good().lines().count();
    for (extra, line, key, msg) in [
        ("kind = \"etcd\"", 2, "token_store.kind", "unknown variant `etcd`, expected `memory` or `redis`"),
        ("kind = \"redis\"", 2, "token_store.url", "needs url"),
        ("kind = \"redis\"\nurl = \"http://x\"", 3, "token_store.url", "not a Redis URL"),
        ("url = \"redis://x\"", 2, "token_store.url", "only used with kind"),
        (
            "kind = \"redis\"\nurl = \"redis://x\"\ncommand_timeout_ms = 0",
            4,
            "token_store.command_timeout_ms",
            "between",
        ),
        ("kind = \"redis\"\nurl = \"redis://x\"\ndurable = true", 2, "token_store.durable", "memory"),
        ("sync_interval_ms = 60000", 2, "token_store.sync_interval_ms", "at most"),
    ] {
        let e = config(&format!("{}\n[token_store]\n{extra}\n", good())).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), (key, Some(base + 1 + line)), "{e}");
        assert!(e.message.contains(msg), "{e}");
    }
}

/// docs/configuration.md lists every key of every table, and no key that
/// is not one. The keys come from the config types themselves: an unknown
/// key in a table is refused with the list of the keys it has.
#[test]
fn the_configuration_reference_lists_exactly_the_keys() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    check_reference(&doc).unwrap_or_else(|e| panic!("docs/configuration.md: {e}"));
    // The check fails when a key goes missing from the reference.
    let without = doc.replacen("| `max_connections` |", "| `max_connexions` |", 1);
    assert!(check_reference(&without).unwrap_err().contains("max_connections"));
}

/// The keys of the table `header` (`[server]`, `[[clients]]`), as serde
/// lists them when refusing an unknown one.
fn keys_of(header: &str) -> Vec<String> {
    let body = if header.is_empty() { "zz_unknown = 1\n".to_owned() } else { format!("{header}\nzz_unknown = 1\n") };
    let e = config(&body).expect_err(header);
    assert!(e.message.contains("unknown field `zz_unknown`"), "{header}: {e}");
    let expected = e.message.split_once("expected").map_or("", |(_, list)| list);
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Checks `doc` against the config types; the error says what differs.
fn check_reference(doc: &str) -> Result<(), String> {
    // The tables the reference documents, and the keys of each.
    let mut documented: Vec<(String, Vec<String>)> = Vec::new();
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("### `").and_then(|h| h.strip_suffix('`')) {
            documented.push((h.to_owned(), Vec::new()));
        } else if let (Some(row), Some((_, keys))) = (line.strip_prefix("| `"), documented.last_mut()) {
            keys.push(row.split('`').next().unwrap_or("").to_owned());
        }
    }
    // A table of named tables (`[credential_managers.NAME]`) is written with
    // its placeholder name.
    let name = |header: &str| header.trim_matches(|c| c == '[' || c == ']').trim_end_matches(".NAME").to_owned();
    let tables: Vec<String> = documented.iter().map(|(h, _)| name(h)).collect();
    // Every top-level key is a documented table.
    for key in keys_of("") {
        if !tables.contains(&key) {
            return Err(format!("no section for the table `{key}`"));
        }
    }
    for (header, keys) in &documented {
        let table = name(header);
        let actual = keys_of(header);
        for key in &actual {
            // A sub-table has a section of its own instead of a row.
            if !keys.contains(key) && !tables.contains(&format!("{table}.{key}")) {
                return Err(format!("{header} does not list `{key}`"));
            }
        }
        for key in keys {
            if !actual.contains(key) {
                return Err(format!("{header} lists `{key}`, which is no key of it"));
            }
        }
    }
    Ok(())
}
