//! `[credential_manager]`: the users file, the cost of new hashes, and the
//! brute-force policy.

use super::raw::RawCredentialManager;
use super::ConfigError;
use crate::lockout::LockoutPolicy;
use crate::source::Locator;
use ropc_core::{Capabilities, Engine};
use ropc_hash::HashParams;
use std::path::{Path, PathBuf};

/// `[credential_manager.argon2]`: the cost of new hashes.
pub(super) fn argon2(loc: &Locator<'_>, cm: &RawCredentialManager) -> Result<HashParams, ConfigError> {
    Ok(match &cm.argon2 {
        None => HashParams::default(),
        Some(a) => {
            let r = a.get_ref();
            let params = HashParams { m_cost: r.m_cost, t_cost: r.t_cost, p_cost: r.p_cost };
            params.to_params().map_err(|e| loc.at(a.span(), "credential_manager.argon2", e.to_string()))?;
            params
        }
    })
}

/// `[credential_manager.lockout]`.
pub(super) fn lockout(loc: &Locator<'_>, cm: &RawCredentialManager) -> Result<LockoutPolicy, ConfigError> {
    let Some(l) = &cm.lockout else { return Ok(LockoutPolicy::default()) };
    let r = l.get_ref();
    let d = LockoutPolicy::default();
    let p = LockoutPolicy {
        max_failures: r.max_failures.unwrap_or(d.max_failures),
        window: r.window.unwrap_or(d.window),
        lock_time: r.lock_time.unwrap_or(d.lock_time),
        max_lock_time: r.max_lock_time.unwrap_or(d.max_lock_time),
        ip_max_failures: r.ip_max_failures.unwrap_or(d.ip_max_failures),
        trusted_ip_days: r.trusted_ip_days.unwrap_or(d.trusted_ip_days),
        max_tracked: r.max_tracked.unwrap_or(d.max_tracked),
    };
    const DAY: u64 = 86_400;
    let problem = if p.window == 0 || p.lock_time == 0 {
        Some("window and lock_time must be at least 1 second")
    } else if p.window > DAY || p.max_lock_time > DAY {
        Some("window and max_lock_time must be at most 86400 seconds")
    } else if p.trusted_ip_days > 365 {
        Some("trusted_ip_days must be at most 365")
    } else if p.max_lock_time < p.lock_time {
        Some("max_lock_time must be at least lock_time")
    } else if p.ip_max_failures != 0 && p.ip_max_failures < p.max_failures {
        Some("ip_max_failures must be well above max_failures, or one NAT'd office locks its colleagues out")
    } else if p.max_tracked < 100 {
        Some("max_tracked must be at least 100")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(loc.at(l.span(), "credential_manager.lockout", problem)),
        None => Ok(p),
    }
}

/// `[credential_manager] users_file`, resolved: needed once a client of
/// the default manager may use the password grant.
pub(super) fn users_file(
    loc: &Locator<'_>,
    dir: &Path,
    cm: &RawCredentialManager,
    engine: &Engine,
    client_managers: &[Option<String>],
) -> Result<Option<PathBuf>, ConfigError> {
    let needs_users = engine.clients.iter().any(|(index, client)| {
        client.capabilities.contains(Capabilities::PASSWORD)
            && client_managers.get(index.0 as usize).is_some_and(Option::is_none)
    });
    match &cm.users_file {
        Some(f) => Ok(Some(dir.join(f.get_ref()))),
        None if needs_users => Err(loc.at(
            0..0,
            "credential_manager.users_file",
            "a client of the default credential manager has the `password` capability, so [credential_manager] \
             users_file must be set",
        )),
        None => Ok(None),
    }
}
