//! DPoP proofs (RFC 9449 §4.3): a JWT the client signs, for this one
//! request, with the key its tokens are bound to. Checked here: the
//! header (`typ`, an asymmetric `alg`, a public `jwk`), the signature by
//! that `jwk`, the request it names (`htm`, `htu`), its age (`iat`); the
//! caller records its `jti`. Server nonces (`DPoP-Nonce`) are not used.

use super::assertion::replay_id;
use crate::config::ProofLimits;
use crate::jose::{self, Alg, PublicJwk, Refusal};

/// A proof that verified.
#[derive(Debug)]
pub struct Proof {
    /// The JWK SHA-256 thumbprint of its key (RFC 7638): what tokens are
    /// bound to (`cnf.jkt`).
    pub jkt: [u8; 32],
    /// The replay cache's entry for its `jti`.
    pub id: [u8; 16],
    /// Until when a replay must be refused.
    pub until: u64,
}

/// Checks `proof` for a request with `method` to `url` (scheme, host and
/// path: no query or fragment).
pub fn verify(proof: &str, method: &str, url: &str, limits: &ProofLimits, now: u64) -> Result<Proof, Refusal> {
    let jws = jose::decode(proof)?;
    if !jws.header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err("typ is not dpop+jwt");
    }
    if !Alg::ASYMMETRIC.contains(&jws.alg) {
        return Err("the alg is not asymmetric");
    }
    let jwk = jws.header.jwk.as_ref().ok_or("no jwk in the header")?;
    let key = PublicJwk::parse(jwk).map_err(|_| "the jwk is not a usable public key")?;
    key.verify(jws.alg, jws.signing_input.as_bytes(), &jws.signature)?;
    let c = &jws.claims;
    if c.htm.as_deref() != Some(method) {
        return Err("htm is not the request's method");
    }
    if !c.htu.as_deref().is_some_and(|htu| same_url(htu, url)) {
        return Err("htu is not the request's URL");
    }
    let iat = c.iat.and_then(jose::seconds).ok_or("no iat")?;
    let skew = limits.clock_skew;
    if iat > now.saturating_add(skew) {
        return Err("iat is in the future");
    }
    if now > iat.saturating_add(limits.max_proof_age).saturating_add(skew) {
        return Err("the proof is too old");
    }
    let jti = c.jti.as_deref().filter(|j| !j.is_empty() && j.len() <= 256).ok_or("no usable jti")?;
    let jkt = key.thumbprint();
    Ok(Proof { jkt, id: replay_id(b"dpop", &jkt, jti), until: iat.saturating_add(limits.max_proof_age + 2 * skew) })
}

/// RFC 9449 §4.3 item 9: `htu` is compared without its query and fragment,
/// with the scheme and host case-insensitive, the default port dropped and
/// an empty path as `/` (RFC 3986 §6.2.2.1 and §6.2.3). Percent-encoding
/// and dot segments are not normalised: a proof that spells the path
/// otherwise is refused, which is the stricter side.
pub fn same_url(htu: &str, url: &str) -> bool {
    match (normalise(htu), normalise(url)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn normalise(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next()?;
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return None;
    }
    let mut authority = authority.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    if authority.ends_with(default) {
        authority.truncate(authority.len() - default.len());
    }
    Some(format!("{scheme}://{authority}{path}"))
}

#[cfg(test)]
mod tests {
    use super::same_url;

    #[test]
    fn urls_compare_as_rfc_9449_says() {
        let url = "https://as.example.com/oauth/v2/oauth-token";
        for same in [
            url,
            "HTTPS://AS.Example.com/oauth/v2/oauth-token",
            "https://as.example.com:443/oauth/v2/oauth-token",
            "https://as.example.com/oauth/v2/oauth-token?x=1",
            "https://as.example.com/oauth/v2/oauth-token#f",
        ] {
            assert!(same_url(same, url), "{same}");
        }
        for other in [
            "http://as.example.com/oauth/v2/oauth-token",
            "https://as.example.com:8443/oauth/v2/oauth-token",
            "https://as.example.com/oauth/v2/OAUTH-token",
            "https://evil.example/oauth/v2/oauth-token",
            "https://as.example.com@evil.example/oauth/v2/oauth-token",
            "as.example.com/oauth/v2/oauth-token",
        ] {
            assert!(!same_url(other, url), "{other}");
        }
        assert!(same_url("http://localhost:80", "http://localhost/"));
    }
}
