//! Client assertions (RFC 7523 §2.2 and §3; OpenID Connect Core §9's
//! `client_secret_jwt` and `private_key_jwt`): a JWT the client signs with
//! its private key (or an HS256 shared key), checked claim by claim and
//! then by signature, its `jti` recorded until it expires.

use crate::config::{AuthMethod, ClientAuthPolicy, ProofLimits};
use crate::jose::{self, Alg, Refusal};

/// An assertion that verified: the replay cache's entry for its `jti`.
#[derive(Debug)]
pub struct Verified {
    /// Names the client and the `jti`.
    pub id: [u8; 16],
    /// Until when a replay must be refused: the assertion's `exp` plus the
    /// skew.
    pub until: u64,
}

/// The client an assertion names (`iss`, RFC 7523 §3 item 1), unverified:
/// only to find whose keys verify it.
pub fn issuer(assertion: &str) -> Option<String> {
    jose::decode(assertion).ok()?.claims.iss
}

/// Checks `assertion` for the client `client_id` under `policy`. `audiences`
/// are the values `aud` may hold: the endpoint's URL, the token endpoint's,
/// and the issuer (RFC 7523 §3 item 3).
pub fn verify(
    assertion: &str,
    client_id: &str,
    policy: &ClientAuthPolicy,
    audiences: &[&str],
    limits: &ProofLimits,
    now: u64,
) -> Result<Verified, Refusal> {
    let jws = jose::decode(assertion)?;
    let c = &jws.claims;
    // RFC 7523 §3: iss and sub are the client; aud is this server.
    if c.iss.as_deref() != Some(client_id) || c.sub.as_deref() != Some(client_id) {
        return Err("iss and sub must both be the client_id");
    }
    let aud = c.aud.as_ref().ok_or("no aud")?;
    if !audiences.iter().any(|a| aud.contains(a)) {
        return Err("aud names neither the token endpoint nor the issuer");
    }
    let skew = limits.clock_skew;
    let exp = c.exp.and_then(jose::seconds).ok_or("no exp")?;
    if now >= exp.saturating_add(skew) {
        return Err("expired");
    }
    if exp > now.saturating_add(limits.max_assertion_lifetime).saturating_add(skew) {
        return Err("exp is further away than max_assertion_lifetime");
    }
    if c.nbf.and_then(jose::seconds).is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err("not valid yet (nbf)");
    }
    if c.iat.and_then(jose::seconds).is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err("issued in the future (iat)");
    }
    let jti = c.jti.as_deref().filter(|j| !j.is_empty() && j.len() <= 256).ok_or("no usable jti")?;
    // The method fixes the family: a public key never verifies HS256 and
    // the shared key never RS256 (no algorithm confusion).
    let message = jws.signing_input.as_bytes();
    match (policy.method, jws.alg) {
        (Some(AuthMethod::PrivateKeyJwt), alg) if Alg::ASYMMETRIC.contains(&alg) => {
            let keys = policy.jwks.as_ref().ok_or("the client has no keys")?;
            let key = keys.select(jws.header.kid.as_deref(), alg).ok_or("no key of the client fits the kid and alg")?;
            key.verify(alg, message, &jws.signature)?;
        }
        (Some(AuthMethod::ClientSecretJwt), Alg::Hs256) => {
            policy.hmac.as_ref().ok_or("the client has no shared key")?.verify(message, &jws.signature)?;
        }
        _ => return Err("the alg is not one the client's method allows"),
    }
    Ok(Verified { id: replay_id(b"assertion", client_id.as_bytes(), jti), until: exp.saturating_add(skew) })
}

/// The replay cache's key for `jti` of `owner` (a client id, or a DPoP
/// key's thumbprint): a digest, so that `jti`s chosen by anyone cannot
/// crowd one shard.
pub fn replay_id(kind: &[u8], owner: &[u8], jti: &str) -> [u8; 16] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [kind, owner, jti.as_bytes()] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&ctx.finish().as_ref()[..16]);
    id
}
