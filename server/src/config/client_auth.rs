//! `[[clients]]`' authentication methods beyond a shared secret (RFC 7523,
//! RFC 8705, RFC 9449) and `[client_auth]`: each client's [`ClientAuthPolicy`],
//! its keys read from `jwks_file`, and the windows proofs are checked in.

use super::raw::{AuthMethod, RawClient, RawClientAuth};
use super::server::bounded;
use super::ConfigError;
use crate::jose::{HmacKey, Jwks};
use crate::source::Locator;
use crate::tls::normalise_dn;
use std::path::Path;
use std::sync::Arc;

/// How one client authenticates, and what its tokens are bound to.
#[derive(Debug, Clone, Default)]
pub struct ClientAuthPolicy {
    /// The one method it may use; `None`: `client_secret_basic` and
    /// `client_secret_post` both (the default).
    pub method: Option<AuthMethod>,
    /// Its public keys (`private_key_jwt`, `self_signed_tls_client_auth`).
    pub jwks: Option<Arc<Jwks>>,
    /// Its HS256 key (`client_secret_jwt`).
    pub hmac: Option<Arc<HmacKey>>,
    /// The certificate subject it must present (`tls_client_auth`), in the
    /// form [`normalise_dn`] compares.
    pub subject_dn: Option<String>,
    /// `certificate_bound_access_tokens`.
    pub bind_certificate: bool,
    /// `dpop_bound_access_tokens`: every token request needs a DPoP proof.
    pub require_dpop: bool,
}

impl ClientAuthPolicy {
    /// Whether the client authenticates by a secret (so `secret` is needed).
    pub fn uses_secret(&self) -> bool {
        matches!(self.method, None | Some(AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost))
    }
}

/// `[client_auth]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofLimits {
    /// The longest an assertion may live, `exp` past now, seconds.
    pub max_assertion_lifetime: u64,
    /// The oldest a DPoP proof's `iat` may be, seconds.
    pub max_proof_age: u64,
    /// Clock difference tolerated either way, seconds.
    pub clock_skew: u64,
    /// Most `jti`s the in-memory replay cache holds.
    pub replay_cache_entries: usize,
}

impl Default for ProofLimits {
    fn default() -> Self {
        Self { max_assertion_lifetime: 3600, max_proof_age: 60, clock_skew: 30, replay_cache_entries: 1_000_000 }
    }
}

pub(super) fn limits(loc: &Locator<'_>, raw: &RawClientAuth) -> Result<ProofLimits, ConfigError> {
    let d = ProofLimits::default();
    let get = |v: &Option<toml::Spanned<u64>>, key, range, default: u64, unit| match v {
        Some(v) => bounded(loc, v, key, range, unit),
        None => Ok(default),
    };
    Ok(ProofLimits {
        max_assertion_lifetime: get(
            &raw.max_assertion_lifetime,
            "client_auth.max_assertion_lifetime",
            10..=86_400,
            d.max_assertion_lifetime,
            " seconds",
        )?,
        max_proof_age: get(&raw.max_proof_age, "client_auth.max_proof_age", 5..=600, d.max_proof_age, " seconds")?,
        clock_skew: get(&raw.clock_skew, "client_auth.clock_skew", 0..=300, d.clock_skew, " seconds")?,
        replay_cache_entries: get(
            &raw.replay_cache_entries,
            "client_auth.replay_cache_entries",
            1_000..=100_000_000,
            d.replay_cache_entries as u64,
            "",
        )? as usize,
    })
}

/// The policy of client `c`. `client_ca` says whether `[server]
/// client_ca_file` is set (the TLS methods and certificate binding need it).
pub(super) fn policy(
    loc: &Locator<'_>,
    dir: &Path,
    c: &RawClient,
    client_ca: bool,
) -> Result<ClientAuthPolicy, ConfigError> {
    let method = c.token_endpoint_auth_method.as_ref().map(|m| *m.get_ref());
    let method_span = c.token_endpoint_auth_method.as_ref().map_or(c.id.span(), |m| m.span());
    let id = c.id.get_ref();
    let mut p = ClientAuthPolicy {
        method,
        bind_certificate: c.certificate_bound_access_tokens,
        require_dpop: c.dpop_bound_access_tokens,
        ..ClientAuthPolicy::default()
    };
    let needs = |what: &str| {
        loc.at(
            method_span.clone(),
            "clients.token_endpoint_auth_method",
            format!("client {id:?}: {} needs {what}", method.map_or("this method", AuthMethod::as_str)),
        )
    };
    match (&c.secret, p.uses_secret()) {
        (None, true) => {
            return Err(loc.at(
                c.id.span(),
                "clients.secret",
                format!(
                    "client {id:?} has no secret; add one from `ropc client add`, or set token_endpoint_auth_method"
                ),
            ))
        }
        (Some(s), false) => {
            return Err(loc.at(
                s.span(),
                "clients.secret",
                format!(
                    "client {id:?} authenticates by {}, which uses no secret: remove it",
                    method.map_or("", AuthMethod::as_str)
                ),
            ))
        }
        _ => {}
    }
    if let Some(file) = &c.jwks_file {
        let jwks = Jwks::load(&dir.join(file.get_ref())).map_err(|e| loc.at(file.span(), "clients.jwks_file", e))?;
        p.jwks = Some(Arc::new(jwks));
    }
    if let Some(file) = &c.client_secret_jwt_key_file {
        p.hmac = Some(Arc::new(
            hmac_key(&dir.join(file.get_ref()))
                .map_err(|e| loc.at(file.span(), "clients.client_secret_jwt_key_file", e))?,
        ));
    }
    if let Some(dn) = &c.tls_client_auth_subject_dn {
        if dn.get_ref().trim().is_empty() {
            return Err(loc.at(dn.span(), "clients.tls_client_auth_subject_dn", "the subject DN is empty"));
        }
        let normal = normalise_dn(dn.get_ref()).ok_or_else(|| {
            loc.at(
                dn.span(),
                "clients.tls_client_auth_subject_dn",
                "not a DN as RFC 4514 writes it, e.g. \"CN=batch,O=Example\"",
            )
        })?;
        p.subject_dn = Some(normal);
    }
    match method {
        Some(AuthMethod::PrivateKeyJwt | AuthMethod::SelfSignedTlsClientAuth) if p.jwks.is_none() => {
            return Err(needs("jwks_file, the client's public keys"))
        }
        Some(AuthMethod::ClientSecretJwt) if p.hmac.is_none() => {
            return Err(needs(
                "client_secret_jwt_key_file: HS256 needs the shared key itself, which ropc then holds unhashed \
                 (prefer private_key_jwt)",
            ))
        }
        Some(AuthMethod::TlsClientAuth) if p.subject_dn.is_none() => {
            return Err(needs("tls_client_auth_subject_dn, e.g. \"CN=batch,O=Example\""))
        }
        _ => {}
    }
    let tls_method = matches!(method, Some(AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth));
    if (tls_method || p.bind_certificate) && !client_ca {
        let key =
            if tls_method { "clients.token_endpoint_auth_method" } else { "clients.certificate_bound_access_tokens" };
        return Err(loc.at(
            method_span,
            key,
            format!("client {id:?} needs TLS client certificates: set [server] client_ca_file"),
        ));
    }
    Ok(p)
}

/// Reads a `client_secret_jwt` key: the file's bytes, less one trailing
/// newline. A file others can read is refused: it is a plain secret.
fn hmac_key(path: &Path) -> Result<HmacKey, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{} is readable by others (mode {:o}); it holds a plain secret: chmod 600 it",
                path.display(),
                meta.mode() & 0o777
            ));
        }
    }
    let bytes =
        zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?);
    let key = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    HmacKey::new(key.strip_suffix(b"\r").unwrap_or(key))
}
