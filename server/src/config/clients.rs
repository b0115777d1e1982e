//! `[[scopes]]` and `[[clients]]`: the core's [`Engine`], its scopes and
//! clients laid out so that a reload keeps every index ([`crate::slots`]).

use super::raw::{AccessTokenFormat, Capability, RawClient, RawScope};
use super::ConfigError;
use crate::slots::carry_over;
use crate::source::Locator;
use ropc_core::client::{Client, ClientError};
use ropc_core::scope::{ScopeError, ScopeRegistry, ScopeSet};
use ropc_core::{Capabilities, ClientIndex, Engine, EngineConfig, GrantType, TokenFormat};
use ropc_hash::StoredHash;
use std::sync::Arc;
use toml::Spanned;

/// The engine, and the clients' secret hashes by index (none for a
/// retired slot).
pub(super) struct Built {
    pub(super) engine: Engine,
    pub(super) secrets: Vec<Option<Arc<StoredHash>>>,
}

/// Builds the engine for `config` from `scopes` and `clients`, keeping the
/// indices of `previous` (a reload).
pub(super) fn build(
    loc: &Locator<'_>,
    config: EngineConfig,
    scopes: Vec<RawScope>,
    clients: Vec<RawClient>,
    previous: Option<&Engine>,
) -> Result<Built, ConfigError> {
    let scopes = scope_registry(loc, scopes, previous)?;
    let mut engine = Engine { config, clients: Default::default(), scopes };
    let mut secrets = Vec::new();
    let previous_ids = previous
        .map(|p| (0..p.clients.slots()).map(|i| p.clients.get(ClientIndex(i as u32)).map(|c| c.id.as_str())))
        .into_iter()
        .flatten();
    for slot in carry_over(previous_ids, clients, |c| c.id.get_ref()) {
        let Some(c) = slot else {
            engine.clients.retire_slot().map_err(|e| loc.at(0..0, "clients", e.to_string()))?;
            secrets.push(None);
            continue;
        };
        let secret = StoredHash::parse(c.secret.get_ref()).map_err(|e| {
            loc.at(
                c.secret.span(),
                "clients.secret",
                format!("{e}; store a hash from `ropc hash-password` or `ropc client add`, never the plain secret"),
            )
        })?;
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
        secrets.push(Some(Arc::new(secret)));
    }
    Ok(Built { engine, secrets })
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
