//! `[token_service]` and `[jwt]`: the endpoints, token lifetimes, error
//! detail, rotation, and the JWT access tokens' keys.

use super::raw::{JwtAlgorithm, RawJwt, RawTokenService};
use super::server::bounded;
use super::{ConfigError, Endpoints, JwtConfig, JwtKeySource};
use crate::source::Locator;
use ropc_core::{Engine, EngineConfig, Limits, TokenFormat};
use std::path::Path;

/// `[token_service]`, validated: the engine's policy, its paths and the
/// issuer.
pub(super) struct TokenService {
    /// The engine's policy (no clients or scopes yet).
    pub(super) engine: EngineConfig,
    pub(super) endpoints: Endpoints,
    pub(super) issuer: Option<String>,
}

pub(super) fn parse(
    loc: &Locator<'_>,
    ts: RawTokenService,
    max_body_bytes: usize,
) -> Result<TokenService, ConfigError> {
    let paths = [
        ("token_service.token_endpoint", &ts.token_endpoint),
        ("token_service.revocation_endpoint", &ts.revocation_endpoint),
        ("token_service.introspection_endpoint", &ts.introspection_endpoint),
        ("token_service.jwks_endpoint", &ts.jwks_endpoint),
    ];
    for (key, path) in paths {
        if !path.get_ref().starts_with('/') || path.get_ref().contains(['?', '#', ' ']) {
            return Err(loc.at(path.span(), key, "must be a path starting with `/`, without query or fragment"));
        }
    }
    let values: Vec<&String> = paths.iter().map(|(_, p)| p.get_ref()).collect();
    if (0..values.len()).any(|i| values[i + 1..].contains(&values[i])) {
        return Err(loc.at(ts.revocation_endpoint.span(), "token_service", "the endpoint paths must all differ"));
    }
    for (key, path) in paths {
        if crate::routes::RESERVED.contains(&path.get_ref().as_str()) {
            return Err(loc.at(path.span(), key, format!("{:?} is reserved", path.get_ref())));
        }
    }
    for (key, ttl) in [
        ("token_service.access_token_ttl", &ts.access_token_ttl),
        ("token_service.refresh_token_ttl", &ts.refresh_token_ttl),
    ] {
        bounded(loc, ttl, key, 1..=10 * 365 * 86_400, " seconds")?;
    }
    if *ts.refresh_reuse_grace.get_ref() > 300 {
        return Err(loc.at(
            ts.refresh_reuse_grace.span(),
            "token_service.refresh_reuse_grace",
            "must be at most 300 seconds: a longer window lets a stolen refresh token go unnoticed",
        ));
    }
    if let Some(issuer) = &ts.issuer {
        let i = issuer.get_ref();
        if !(i.starts_with("https://") || i.starts_with("http://")) || i.contains(['?', '#']) {
            return Err(loc.at(
                issuer.span(),
                "token_service.issuer",
                "must be an http(s) URL without query or fragment",
            ));
        }
    }
    Ok(TokenService {
        engine: EngineConfig {
            access_token_ttl: *ts.access_token_ttl.get_ref(),
            refresh_token_ttl: *ts.refresh_token_ttl.get_ref(),
            detailed_errors: ts.detailed_errors,
            rotate_refresh_tokens: ts.rotate_refresh_tokens,
            refresh_reuse_grace: *ts.refresh_reuse_grace.get_ref(),
            limits: Limits { max_body_len: max_body_bytes, ..Limits::default() },
        },
        endpoints: Endpoints {
            token: ts.token_endpoint.into_inner(),
            revocation: ts.revocation_endpoint.into_inner(),
            introspection: ts.introspection_endpoint.into_inner(),
            jwks: ts.jwks_endpoint.into_inner(),
        },
        issuer: ts.issuer.map(|i| i.into_inner().trim_end_matches('/').to_owned()),
    })
}

/// `[jwt]`: where the keys are, and whether any client uses them.
pub(super) fn jwt(dir: &Path, raw: RawJwt, engine: &Engine) -> JwtConfig {
    let algorithm = match raw.algorithm {
        JwtAlgorithm::EdDSA => crate::jwt::Algorithm::EdDsa,
        JwtAlgorithm::ES256 => crate::jwt::Algorithm::Es256,
    };
    let keys = match raw.signing_key {
        Some(key) => JwtKeySource::Files {
            signing_key: dir.join(key),
            previous_keys: raw.previous_keys.iter().map(|p| dir.join(p)).collect(),
        },
        None => JwtKeySource::Managed(dir.join(raw.keys_dir.as_deref().unwrap_or("jwt-keys"))),
    };
    let in_use = engine.clients.iter().any(|(i, _)| engine.clients.access_token_format(i) == TokenFormat::Jwt);
    JwtConfig { algorithm, keys, audience: raw.audience, in_use }
}
