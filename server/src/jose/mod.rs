//! JOSE as client authentication needs it: compact JWS (RFC 7515) decoded
//! and verified, public JWKs (RFC 7517) and their thumbprints (RFC 7638).
//! Used by client assertions (RFC 7523, `auth::assertion`) and DPoP proofs
//! (RFC 9449, `auth::dpop`). Signatures are ring's; JSON is serde_json's.
//!
//! Nothing here trusts a token's header for more than naming a key and an
//! algorithm: the caller says which algorithms a key may be used with, a
//! key refuses an algorithm of another family (so an RSA or EC key can never
//! be used as an HMAC secret), and `none` is no algorithm at all.

mod jwk;

pub use jwk::{HmacKey, Jwks, KeyError, PublicJwk};

use serde::Deserialize;

/// The JWS algorithms ropc verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// HMAC with SHA-256: `client_secret_jwt` only.
    Hs256,
}

impl Alg {
    /// The algorithms for keys a client holds privately (`private_key_jwt`,
    /// DPoP).
    pub const ASYMMETRIC: [Alg; 4] = [Alg::Rs256, Alg::Ps256, Alg::Es256, Alg::EdDsa];

    /// The `alg` value; `none` and anything else is not one.
    pub fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "PS256" => Alg::Ps256,
            "ES256" => Alg::Es256,
            "EdDSA" => Alg::EdDsa,
            "HS256" => Alg::Hs256,
            _ => return None,
        })
    }

    /// The `alg` name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
            Alg::Hs256 => "HS256",
        }
    }
}

/// Why a JWS was refused, for the operator's log (the client is told only
/// `invalid_client` or `invalid_dpop_proof`).
pub type Refusal = &'static str;

/// The largest JWS accepted: an RS256 assertion with a 4096-bit key is
/// about 1 KiB.
pub const MAX_JWS_LEN: usize = 8 * 1024;

/// The protected header's members ropc reads.
#[derive(Debug, Deserialize)]
pub struct Header {
    /// `alg`.
    pub alg: String,
    /// `typ`.
    #[serde(default)]
    pub typ: Option<String>,
    /// `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// `jwk` (DPoP: the proof's public key).
    #[serde(default)]
    pub jwk: Option<serde_json::Map<String, serde_json::Value>>,
    /// `crit`: extensions the verifier must understand. ropc understands
    /// none, so any is a refusal (RFC 7515 §4.1.11).
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// `aud`: a string or an array of them (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `value` is one of the audiences.
    pub fn contains(&self, value: &str) -> bool {
        match self {
            Audience::One(a) => a == value,
            Audience::Many(all) => all.iter().any(|a| a == value),
        }
    }
}

/// The claims ropc reads, of an assertion or a DPoP proof. Times are
/// NumericDates: seconds, possibly fractional (RFC 7519 §2).
#[derive(Debug, Default, Deserialize)]
pub struct Claims {
    /// `iss`.
    #[serde(default)]
    pub iss: Option<String>,
    /// `sub`.
    #[serde(default)]
    pub sub: Option<String>,
    /// `aud`.
    #[serde(default)]
    pub aud: Option<Audience>,
    /// `exp`.
    #[serde(default)]
    pub exp: Option<f64>,
    /// `nbf`.
    #[serde(default)]
    pub nbf: Option<f64>,
    /// `iat`.
    #[serde(default)]
    pub iat: Option<f64>,
    /// `jti`.
    #[serde(default)]
    pub jti: Option<String>,
    /// `htm` (DPoP).
    #[serde(default)]
    pub htm: Option<String>,
    /// `htu` (DPoP).
    #[serde(default)]
    pub htu: Option<String>,
}

/// A decoded, not yet verified, compact JWS.
#[derive(Debug)]
pub struct Jws<'a> {
    /// The protected header.
    pub header: Header,
    /// The algorithm the header names.
    pub alg: Alg,
    /// The claims.
    pub claims: Claims,
    /// `header.payload`: what the signature covers.
    pub signing_input: &'a str,
    /// The signature.
    pub signature: Vec<u8>,
}

fn b64(part: &str) -> Result<Vec<u8>, Refusal> {
    ropc_core::base64::from_url_nopad(part.as_bytes()).ok_or("a part is not base64url")
}

/// Decodes a compact JWS: three base64url parts, a JSON header naming a
/// known algorithm and no `crit`, JSON claims. Verifies nothing.
pub fn decode(token: &str) -> Result<Jws<'_>, Refusal> {
    if token.len() > MAX_JWS_LEN {
        return Err("too long");
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("not a compact JWS");
    };
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| "the header is not a JSON object")?;
    if header.crit.is_some() {
        return Err("the header has crit");
    }
    let alg = Alg::parse(&header.alg).ok_or("the alg is none or unsupported")?;
    let claims: Claims = serde_json::from_slice(&b64(p)?).map_err(|_| "the claims are not a JSON object")?;
    let signature = b64(s)?;
    Ok(Jws { header, alg, claims, signing_input: &token[..h.len() + 1 + p.len()], signature })
}

/// A NumericDate as whole seconds, refusing what is not a finite,
/// non-negative number.
pub fn seconds(t: f64) -> Option<u64> {
    (0.0..1e15).contains(&t).then_some(t as u64)
}

#[cfg(test)]
mod tests;
