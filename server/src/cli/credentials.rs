//! `ropc credentials test NAME --config FILE`: connects to a credential
//! manager and looks up one username, to check a table, a query or a
//! directory before pointing clients at it. It says what it found (the
//! subject, the hash's format, disabled or not) and never prints the hash.

use crate::config::Config;
use crate::credentials::{Backend, Managers, UserStore};
use ropc_hash::{HashParams, StoredHash};

/// `ropc credentials test NAME --config FILE`, for `username`.
pub fn test(name: &str, username: &str, file: &std::path::Path) -> Result<(), String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    // A cheap dummy: this look-up verifies no password.
    let params = HashParams { m_cost: 8, t_cost: 1, p_cost: 1 };
    if name == "default" {
        let path = config.users_file.as_ref().ok_or("the config has no [credential_manager] users_file")?;
        let users = UserStore::load(path, params).map_err(|e| e.to_string())?;
        return report_file(&users, username);
    }
    if !config.managers.contains_key(name) {
        let known: Vec<&str> = config.managers.keys().map(String::as_str).collect();
        return Err(format!("no [credential_managers.{name}] (defined: {})", known.join(", ")));
    }
    let only: std::collections::BTreeMap<_, _> =
        config.managers.iter().filter(|(n, _)| *n == name).map(|(n, c)| (n.clone(), c.clone())).collect();
    let managers = Managers::build(&only, params, None, std::time::Duration::ZERO).map_err(|e| e.to_string())?;
    let manager = managers.get(name).ok_or("the manager did not build")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    match &manager.backend {
        Backend::File { users, .. } => report_file(users, username),
        Backend::Sql(sql) => {
            let row = runtime.block_on(sql.find(username)).map_err(|e| format!("{name}: {e}"))?;
            let Some(row) = row else {
                println!("{name}: no row for {username:?}");
                return Ok(());
            };
            let format = StoredHash::parse(&row.hash)
                .map_or_else(|e| format!("unreadable ({e})"), |h| h.scheme_name().to_owned());
            println!(
                "{name}: found {username:?}: subject {:?}, hash format {format}, {}",
                row.subject.as_deref().unwrap_or(username),
                if row.disabled { "disabled" } else { "enabled" }
            );
            Ok(())
        }
        Backend::Ldap(ldap) => {
            let entry = runtime.block_on(ldap.find(username)).map_err(|e| format!("{name}: {e}"))?;
            match entry {
                None => println!("{name}: no entry for {username:?}"),
                Some(e) => println!(
                    "{name}: found {username:?}: subject {:?}, {}",
                    e.subject,
                    if e.disabled { "disabled" } else { "enabled" }
                ),
            }
            Ok(())
        }
    }
}

fn report_file(users: &UserStore, username: &str) -> Result<(), String> {
    match users.find(username).and_then(|u| users.hash(u)) {
        None => println!("no user {username:?}"),
        Some(h) => println!("found {username:?}: hash format {}", h.scheme_name()),
    }
    Ok(())
}
