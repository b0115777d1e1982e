//! `[[scopes]]` and `[[clients]]`: the core's [`Engine`], its scopes and
//! clients laid out so that a reload keeps every index ([`crate::slots`]).

use super::client_auth::{self, ClientAuthPolicy};
use super::raw::{AccessTokenFormat, Capability, RawClient, RawScope};
use super::ConfigError;
use crate::credentials::ManagerConfig;
use crate::slots::carry_over;
use crate::source::Locator;
use ropc_core::client::{Client, ClientError};
use ropc_core::scope::{ScopeError, ScopeRegistry, ScopeSet};
use ropc_core::{Capabilities, ClientIndex, Engine, EngineConfig, GrantType, TokenFormat};
use ropc_hash::StoredHash;
use std::collections::BTreeMap;
use std::sync::Arc;
use toml::Spanned;

/// The engine, and by client index (none for a retired slot) the clients'
/// secret hashes and the credential manager each names (none: the
/// default, `[credential_manager]`).
pub(super) struct Built {
    pub(super) engine: Engine,
    pub(super) secrets: Vec<Option<Arc<StoredHash>>>,
    pub(super) auth: Vec<Option<Arc<ClientAuthPolicy>>>,
    pub(super) managers: Vec<Option<String>>,
}

/// Builds the engine for `config` from `scopes` and `clients`, keeping the
/// indices of `previous` (a reload).
#[allow(clippy::too_many_arguments)]
pub(super) fn build(
    loc: &Locator<'_>,
    dir: &std::path::Path,
    config: EngineConfig,
    scopes: Vec<RawScope>,
    clients: Vec<RawClient>,
    previous: Option<&Engine>,
    managers: &BTreeMap<String, ManagerConfig>,
    client_ca: bool,
) -> Result<Built, ConfigError> {
    let scopes = scope_registry(loc, scopes, previous)?;
    let mut engine = Engine { config, clients: Default::default(), scopes };
    let mut secrets = Vec::new();
    let mut auth = Vec::new();
    let mut client_managers = Vec::new();
    let previous_ids = previous
        .map(|p| (0..p.clients.slots()).map(|i| p.clients.get(ClientIndex(i as u32)).map(|c| c.id.as_str())))
        .into_iter()
        .flatten();
    for slot in carry_over(previous_ids, clients, |c| c.id.get_ref()) {
        let Some(c) = slot else {
            engine.clients.retire_slot().map_err(|e| loc.at(0..0, "clients", e.to_string()))?;
            secrets.push(None);
            auth.push(None);
            client_managers.push(None);
            continue;
        };
        let manager = match &c.credential_manager {
            Some(name) if !managers.contains_key(name.get_ref()) => {
                let known: Vec<&str> = managers.keys().map(String::as_str).collect();
                return Err(loc.at(
                    name.span(),
                    "clients.credential_manager",
                    format!(
                        "no [credential_managers.{}] table (defined: {})",
                        name.get_ref(),
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                ));
            }
            Some(name) => Some(name.get_ref().clone()),
            None => None,
        };
        let policy = client_auth::policy(loc, dir, &c, client_ca)?;
        let secret = match &c.secret {
            Some(secret) => Some(Arc::new(StoredHash::parse(secret.get_ref()).map_err(|e| {
                loc.at(
                    secret.span(),
                    "clients.secret",
                    format!("{e}; store a hash from `ropc hash-password` or `ropc client add`, never the plain secret"),
                )
            })?)),
            None => None,
        };
        let capabilities = c
            .capabilities
            .iter()
            .map(|cap| Capabilities::for_grant(grant_of(*cap)))
            .fold(Capabilities::empty(), Capabilities::union);
        let scope_set = |key: &str, names: &[Spanned<String>]| -> Result<ScopeSet, ConfigError> {
            let mut set = ScopeSet::EMPTY;
            for n in names {
                let i = engine.scopes.index_of(n.get_ref()).ok_or_else(|| {
                    loc.at(n.span(), key, format!("scope {:?} is not defined by any [[scopes]] entry", n.get_ref()))
                })?;
                set = set.union(ScopeSet::single(i));
            }
            Ok(set)
        };
        let allowed_scopes = scope_set("clients.scopes", &c.scopes)?;
        let default_scopes = scope_set("clients.default_scopes", &c.default_scopes)?;
        let client = Client { id: c.id.get_ref().clone(), capabilities, allowed_scopes, default_scopes };
        let index = engine.clients.add(client).map_err(|e| {
            let key = match e {
                ClientError::DefaultNotAllowed => "clients.default_scopes",
                ClientError::Full => "clients",
                _ => "clients.id",
            };
            loc.at(c.id.span(), key, format!("client {:?}: {e}", c.id.get_ref()))
        })?;
        let format = match c.access_token_format {
            AccessTokenFormat::Opaque => TokenFormat::Opaque,
            AccessTokenFormat::Jwt => TokenFormat::Jwt,
        };
        engine.clients.set_access_token_format(index, format);
        secrets.push(secret);
        auth.push(Some(Arc::new(policy)));
        client_managers.push(manager);
    }
    Ok(Built { engine, secrets, auth, managers: client_managers })
}

/// The capabilities are named after the grants they allow.
fn grant_of(cap: Capability) -> GrantType {
    match cap {
        Capability::Password => GrantType::Password,
        Capability::RefreshToken => GrantType::RefreshToken,
        Capability::ClientCredentials => GrantType::ClientCredentials,
    }
}

/// The scopes, each previous one at its old bit; a removed scope's bit is
/// retired until a restart.
fn scope_registry(
    loc: &Locator<'_>,
    scopes: Vec<RawScope>,
    previous: Option<&Engine>,
) -> Result<ScopeRegistry, ConfigError> {
    let mut registry = ScopeRegistry::new();
    let previous_names = previous.map(|p| (0..p.scopes.slots()).map(|i| p.scopes.name(i))).into_iter().flatten();
    for slot in carry_over(previous_names, scopes, |s| s.name.get_ref()) {
        let Some(s) = slot else {
            registry.retire_slot().map_err(|e| loc.at(0..0, "scopes", e.to_string()))?;
            continue;
        };
        registry.register(s.name.get_ref()).map_err(|e| {
            let retired = registry.slots() - registry.names().count();
            let message = match e {
                ScopeError::TooMany if retired > 0 => format!(
                    "{e}, and {retired} of them are scopes removed since the server started (their tokens may \
                     still be live); restart the server to free them"
                ),
                _ => e.to_string(),
            };
            loc.at(s.name.span(), "scopes.name", message)
        })?;
    }
    Ok(registry)
}
