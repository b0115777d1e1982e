//! Offline administration: adding clients, resetting their secrets and
//! adding users. Every file change is validated first and then written
//! atomically, so a failed command leaves the file as it was.

use crate::config::Config;
use crate::credentials::UserStore;
use crate::fsutil::write_atomic;
use ropc_core::scope::is_scope_token;
use ropc_core::Capabilities;
use ropc_hash::{generate_secret, hash_password, HashParams};
use std::path::Path;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn parse_doc(path: &Path, text: &str) -> Result<DocumentMut, String> {
    text.parse::<DocumentMut>().map_err(|e| format!("{}: {e}", path.display()))
}

/// Validates `text` as the new content of `path`, then writes it atomically.
fn commit_config(path: &Path, text: &str) -> Result<(), String> {
    Config::parse(path, text).map_err(|e| format!("the result would be invalid, nothing was written: {e}"))?;
    write_atomic(path, text.as_bytes(), 0o600).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn array(items: &[String]) -> Array {
    items.iter().map(String::as_str).collect()
}

/// `ropc client add`. With `jwks_file` the client authenticates by
/// `private_key_jwt` (RFC 7523) with those keys, and has no secret.
pub fn client_add(
    id: &str,
    scopes: &[String],
    capabilities: &[String],
    jwks_file: Option<&Path>,
    config: Option<&Path>,
) -> Result<(), String> {
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err("the client id must be non-empty and free of control characters".into());
    }
    let capabilities: Vec<String> =
        if capabilities.is_empty() { vec!["password".into(), "refresh_token".into()] } else { capabilities.to_vec() };
    for c in &capabilities {
        if Capabilities::from_name(c).is_none() {
            return Err(format!("unknown capability {c:?} (expected password, refresh_token or client_credentials)"));
        }
    }
    for s in scopes {
        if !is_scope_token(s) {
            return Err(format!("invalid scope {s:?}: printable ASCII without space, '\"' or '\\' (RFC 6749 §3.3)"));
        }
    }
    let loaded = match config {
        Some(path) => {
            let text = read(path)?;
            let c = Config::parse(path, &text).map_err(|e| e.to_string())?;
            if c.engine.clients.find(id).is_some() {
                return Err(format!(
                    "{}: a client {id:?} already exists; use `ropc client reset-secret`",
                    path.display()
                ));
            }
            Some((path, text, c.argon2))
        }
        None => None,
    };
    let params = loaded.as_ref().map_or(HashParams::default(), |(_, _, p)| *p);
    let mut client = Table::new();
    client.insert("id", value(id));
    let secret = match jwks_file {
        Some(file) => {
            // Relative paths in the config are relative to its directory.
            let dir = config.and_then(Path::parent).filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let keys = crate::jose::Jwks::load(&dir.join(file)).map_err(|e| format!("{}: {e}", file.display()))?;
            client.insert("token_endpoint_auth_method", value("private_key_jwt"));
            client.insert("jwks_file", value(file.display().to_string()));
            eprintln!("{id:?} authenticates with private_key_jwt: {} key(s) in {}", keys.keys().len(), file.display());
            None
        }
        None => {
            let secret = zeroize::Zeroizing::new(generate_secret().map_err(|e| e.to_string())?);
            client.insert("secret", value(hash_password(secret.as_bytes(), params).map_err(|e| e.to_string())?));
            Some(secret)
        }
    };
    client.insert("capabilities", value(array(&capabilities)));
    client.insert("scopes", value(array(scopes)));
    // A request that names no scope gets every scope the client may have.
    client.insert("default_scopes", value(array(scopes)));
    let mut block = DocumentMut::new();
    let mut tables = ArrayOfTables::new();
    tables.push(client.clone());
    block.insert("clients", Item::ArrayOfTables(tables));

    if let Some((path, text, _)) = loaded {
        let mut doc = parse_doc(path, &text)?;
        let defined: Vec<String> = doc
            .get("scopes")
            .and_then(Item::as_array_of_tables)
            .map(|t| t.iter().filter_map(|s| s.get("name").and_then(Item::as_str).map(str::to_owned)).collect())
            .unwrap_or_default();
        for s in scopes.iter().filter(|s| !defined.contains(s)) {
            let mut t = Table::new();
            t.insert("name", value(s.as_str()));
            push_table(&mut doc, "scopes", t)?;
            eprintln!("defined new scope {s:?}");
        }
        push_table(&mut doc, "clients", client)?;
        commit_config(path, &doc.to_string())?;
        eprintln!("added client {id:?} to {}", path.display());
    }
    println!("{}", block.to_string().trim_end());
    if let Some(secret) = secret {
        eprintln!("\nclient_secret for {id:?} (shown once, store it now):");
        println!("{}", secret.as_str());
    }
    Ok(())
}

fn push_table(doc: &mut DocumentMut, key: &str, table: Table) -> Result<(), String> {
    let item = doc.entry(key).or_insert(Item::ArrayOfTables(ArrayOfTables::new()));
    item.as_array_of_tables_mut().ok_or_else(|| format!("`{key}` is not an array of tables ([[{key}]])"))?.push(table);
    Ok(())
}

/// `ropc client reset-secret`.
pub fn client_reset_secret(id: &str, path: &Path) -> Result<(), String> {
    let text = read(path)?;
    let config = Config::parse(path, &text).map_err(|e| e.to_string())?;
    let mut doc = parse_doc(path, &text)?;
    let clients = doc
        .get_mut("clients")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| format!("{}: no [[clients]]", path.display()))?;
    let client = clients
        .iter_mut()
        .find(|t| t.get("id").and_then(Item::as_str) == Some(id))
        .ok_or_else(|| format!("{}: no client {id:?}", path.display()))?;
    let secret = zeroize::Zeroizing::new(generate_secret().map_err(|e| e.to_string())?);
    let hash = hash_password(secret.as_bytes(), config.argon2).map_err(|e| e.to_string())?;
    client.insert("secret", value(hash));
    commit_config(path, &doc.to_string())?;
    eprintln!(
        "replaced the secret of {id:?} in {}; the old secret works until the server reloads its config",
        path.display()
    );
    eprintln!("new client_secret (shown once, store it now):");
    println!("{}", secret.as_str());
    Ok(())
}

/// `ropc user add`: adds or replaces `name`'s line, keeping every other
/// line (comments included) as it was.
pub fn user_add(name: &str, password: &str, path: &Path, params: HashParams) -> Result<(), String> {
    if name.is_empty() || name.contains(':') || name.starts_with('#') || name.chars().any(char::is_control) {
        return Err("the username must be non-empty, without ':' or control characters, and not start with '#'".into());
    }
    let hash = hash_password(password.as_bytes(), params).map_err(|e| e.to_string())?;
    let entry = format!("{name}:{hash}");
    let mut replaced = false;
    // Under the users file's lock, so that a running server's upgrades on
    // login and other `user add` runs lose nothing.
    crate::users_file::update(
        path,
        |lines| {
            for line in lines.iter_mut() {
                if crate::users_file::line_user(line) == Some(name) {
                    replaced = true;
                    line.clone_from(&entry);
                }
            }
            if !replaced {
                lines.push(entry.clone());
            }
            true
        },
        |text| {
            UserStore::parse(path, text, HashParams { m_cost: 8, t_cost: 1, p_cost: 1 })
                .map(drop)
                .map_err(|e| format!("the result would be invalid, nothing was written: {e}"))
        },
    )
    .map_err(|e| e.to_string())?;
    eprintln!("{} user {name:?} in {}", if replaced { "replaced" } else { "added" }, path.display());
    Ok(())
}
