//! Config parsing and validation, table-driven.
use super::*;
use crate::hash::hash_password;

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
            "unknown capability",
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
