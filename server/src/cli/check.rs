//! `ropc config check` and `ropc jwt rotate-key`.

use crate::config::{Config, JwtKeySource};
use crate::credentials::UserStore;
use ropc_hash::HashParams;
use std::path::Path;

/// `ropc config check FILE`: the config and its users file, validated;
/// prints what they hold.
pub fn config_check(file: &Path) -> Result<(), String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    let users = match &config.users_file {
        Some(path) => {
            UserStore::load(path, HashParams { m_cost: 8, t_cost: 1, p_cost: 1 }).map_err(|e| e.to_string())?.len()
        }
        None => 0,
    };
    println!(
        "{}: ok ({} clients, {} scopes, {} users)",
        file.display(),
        config.engine.clients.len(),
        config.engine.scopes.names().count(),
        users
    );
    Ok(())
}

/// `ropc jwt rotate-key --config FILE`.
pub fn jwt_rotate_key(file: &Path) -> Result<(), String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    match &config.jwt.keys {
        JwtKeySource::Managed(dir) => {
            let path = crate::jwt::generate_key(dir, config.jwt.algorithm)?;
            println!("new signing key: {} (signs from the next config reload or start)", path.display());
            Ok(())
        }
        JwtKeySource::Files { .. } => Err(format!(
            "{}: [jwt] signing_key is set, so its keys are yours to rotate: move the old key to previous_keys and set the new one",
            file.display()
        )),
    }
}
