//! JWT access tokens, RFC 9068: the header and claims are built here, the
//! signature comes from the platform's [`TokenSigner`] (the core holds no
//! crypto). Also the JWKS document (RFC 7517) that publishes the keys.
//!
//! ```text
//! header = {"alg":ALG,"typ":"at+jwt","kid":KID}
//! claims = {"iss","sub","aud","exp","iat","jti","client_id","scope"}
//! token  = b64url(header) "." b64url(claims) "." b64url(signature)
//! ```

use crate::base64;
use crate::response::JsonObject;
use crate::token::{RandomError, SecureRandom};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The signer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignError;

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("signing failed")
    }
}

/// A JWS signing key, supplied by the platform (RFC 7515).
pub trait TokenSigner: Send + Sync + fmt::Debug {
    /// The JWS `alg`, e.g. `EdDSA` or `ES256`.
    fn algorithm(&self) -> &'static str;
    /// The `kid` under which the key is published in the JWKS.
    fn key_id(&self) -> &str;
    /// Appends the JWS signature of `message` (raw bytes, e.g. R || S for
    /// ES256) to `out`.
    fn sign(&self, message: &[u8], out: &mut Vec<u8>) -> Result<(), SignError>;
}

/// What a JWT access token needs beyond the grant: the signer and the
/// names the runtime knows.
#[derive(Clone, Copy, Debug)]
pub struct JwtIssuer<'j> {
    /// The signing key.
    pub signer: &'j dyn TokenSigner,
    /// The `iss` claim.
    pub issuer: &'j str,
    /// The `aud` claim: the resource servers the token is for.
    pub audience: &'j str,
    /// The resource owner's name for `sub`; `None` for client credentials,
    /// whose subject is the client (RFC 9068 §2.2).
    pub subject: Option<&'j str>,
}

/// The claims of one access token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Claims<'c> {
    pub subject: &'c str,
    pub client_id: &'c str,
    pub scope: &'c str,
    pub issued_at: u64,
    pub expires_at: u64,
    /// `cnf` (RFC 7800): the member (`jkt`, `x5t#S256`) and the thumbprint.
    pub confirmation: Option<(&'c str, &'c str)>,
}

/// Why a JWT could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JwtError {
    Random,
    Sign,
}

impl From<RandomError> for JwtError {
    fn from(_: RandomError) -> Self {
        JwtError::Random
    }
}

pub(crate) fn push_b64url(out: &mut String, bytes: &[u8]) {
    out.push_str(&base64::to_url_nopad_string(bytes));
}

/// Builds and signs a JWT access token (RFC 9068 §2).
pub(crate) fn encode(jwt: &JwtIssuer<'_>, claims: &Claims<'_>, random: &dyn SecureRandom) -> Result<String, JwtError> {
    let mut jti = [0u8; 16];
    random.fill(&mut jti)?;
    let mut jti_text = String::new();
    push_b64url(&mut jti_text, &jti);

    let mut header = Vec::with_capacity(64);
    JsonObject::new(&mut header)
        .string("alg", jwt.signer.algorithm())
        .string("typ", "at+jwt")
        .string("kid", jwt.signer.key_id())
        .finish();
    let mut body = Vec::with_capacity(256);
    JsonObject::new(&mut body)
        .string("iss", jwt.issuer)
        .string("sub", claims.subject)
        .string("aud", jwt.audience)
        .number("exp", claims.expires_at)
        .number("iat", claims.issued_at)
        .string("jti", &jti_text)
        .string("client_id", claims.client_id)
        .string("scope", claims.scope);
    if let Some((member, thumbprint)) = claims.confirmation {
        // RFC 9449 §6.1, RFC 8705 §3.1: {"cnf":{"jkt":...}} or {"x5t#S256":...}.
        body.extend_from_slice(b",\"cnf\":");
        JsonObject::new(&mut body).string(member, thumbprint).finish();
    }
    body.push(b'}');

    let mut token = String::with_capacity(512);
    push_b64url(&mut token, &header);
    token.push('.');
    push_b64url(&mut token, &body);
    let mut signature = Vec::with_capacity(64);
    jwt.signer.sign(token.as_bytes(), &mut signature).map_err(|_| JwtError::Sign)?;
    token.push('.');
    push_b64url(&mut token, &signature);
    Ok(token)
}

/// One public key in a JWKS (RFC 7517 §4).
#[derive(Clone, Copy, Debug)]
pub enum Jwk<'k> {
    /// An Ed25519 key (RFC 8037): the 32-byte public key.
    Ed25519 {
        /// The key id.
        kid: &'k str,
        /// The public key.
        x: &'k [u8],
    },
    /// A P-256 key (RFC 7518 §6.2): the affine coordinates.
    P256 {
        /// The key id.
        kid: &'k str,
        /// The x coordinate, 32 bytes.
        x: &'k [u8],
        /// The y coordinate, 32 bytes.
        y: &'k [u8],
    },
}

/// Writes a JWKS document `{"keys":[...]}`.
pub fn write_jwks(out: &mut Vec<u8>, keys: &[Jwk<'_>]) {
    out.extend_from_slice(b"{\"keys\":[");
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut o = JsonObject::new(out);
        let mut b64 = String::new();
        match *key {
            Jwk::Ed25519 { kid, x } => {
                push_b64url(&mut b64, x);
                o.string("kty", "OKP").string("crv", "Ed25519").string("x", &b64);
                o.string("kid", kid).string("use", "sig").string("alg", "EdDSA");
            }
            Jwk::P256 { kid, x, y } => {
                push_b64url(&mut b64, x);
                let mut y64 = String::new();
                push_b64url(&mut y64, y);
                o.string("kty", "EC").string("crv", "P-256").string("x", &b64).string("y", &y64);
                o.string("kid", kid).string("use", "sig").string("alg", "ES256");
            }
        }
        o.finish();
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;
    impl SecureRandom for Fixed {
        fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
            dest.fill(0xab);
            Ok(())
        }
    }
    #[derive(Debug)]
    struct Echo;
    impl TokenSigner for Echo {
        fn algorithm(&self) -> &'static str {
            "EdDSA"
        }
        fn key_id(&self) -> &str {
            "k1"
        }
        fn sign(&self, message: &[u8], out: &mut Vec<u8>) -> Result<(), SignError> {
            out.extend_from_slice(&message[..3]);
            Ok(())
        }
    }

    fn decode(part: &str) -> String {
        // Test-only base64url decoding via the standard decoder.
        let std: String = part
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        let mut buf = alloc::vec![0u8; part.len()];
        let n = base64::decode_standard(std.as_bytes(), &mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn shape_of_a_token() {
        let jwt = JwtIssuer { signer: &Echo, issuer: "https://as", audience: "https://rs", subject: Some("alice") };
        let mut claims = Claims {
            subject: "alice",
            client_id: "legacy",
            scope: "read",
            issued_at: 10,
            expires_at: 310,
            confirmation: None,
        };
        let token = encode(&jwt, &claims, &Fixed).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(decode(parts[0]), r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}"#);
        assert_eq!(
            decode(parts[1]),
            r#"{"iss":"https://as","sub":"alice","aud":"https://rs","exp":310,"iat":10,"jti":"q6urq6urq6urq6urq6urqw","client_id":"legacy","scope":"read"}"#
        );
        assert_eq!(decode(parts[2]), "eyJ", "the signature covers header.claims");
        claims.confirmation = Some(("jkt", "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"));
        let token = encode(&jwt, &claims, &Fixed).unwrap();
        assert!(
            decode(token.split('.').nth(1).unwrap())
                .ends_with(r#","scope":"read","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}"#),
            "RFC 9449 §6.1"
        );
    }

    #[test]
    fn jwks_document() {
        let mut out = Vec::new();
        write_jwks(&mut out, &[Jwk::Ed25519 { kid: "a", x: &[0xff; 2] }, Jwk::P256 { kid: "b", x: &[0], y: &[1] }]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"__8","kid":"a","use":"sig","alg":"EdDSA"},{"kty":"EC","crv":"P-256","x":"AA","y":"AQ","kid":"b","use":"sig","alg":"ES256"}]}"#
        );
    }
}
