//! Public keys as JWKs (RFC 7517), their RFC 7638 thumbprints, and the
//! client's key set (`jwks_file`). Private members are refused: a client's
//! registered keys and a DPoP proof's `jwk` are public by definition.

use super::{Alg, Refusal};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};
use std::fmt;
use std::path::Path;

/// The key material of one public key.
#[derive(Clone)]
enum Material {
    /// RSA: modulus and exponent, big-endian, no leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// P-256: the affine coordinates, 32 bytes each.
    P256 { x: Vec<u8>, y: Vec<u8> },
    /// Ed25519: the 32-byte public key, and the point it decodes to.
    /// ed25519-dalek verifies: 46.6 µs against ring's 62.9 µs on the same
    /// key and message (BENCHMARKS.md, client authentication).
    Ed25519 { x: Vec<u8>, key: ed25519_dalek::VerifyingKey },
}

/// One public key.
#[derive(Clone)]
pub struct PublicJwk {
    /// `kid`, if the key has one.
    pub kid: Option<String>,
    /// `alg`, if the key is restricted to one.
    alg: Option<Alg>,
    material: Material,
    thumbprint: [u8; 32],
}

impl fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kty = match self.material {
            Material::Rsa { .. } => "RSA",
            Material::P256 { .. } => "EC",
            Material::Ed25519 { .. } => "OKP",
        };
        f.debug_struct("PublicJwk").field("kid", &self.kid).field("kty", &kty).finish()
    }
}

/// Why a JWK or a key file was refused.
pub type KeyError = String;

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, KeyError> {
    jwk.get(name).and_then(Value::as_str).ok_or_else(|| format!("the key has no string member {name:?}"))
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyError> {
    let text = member(jwk, name)?;
    ropc_core::base64::from_url_nopad(text.as_bytes()).ok_or_else(|| format!("member {name:?} is not base64url"))
}

/// RFC 7638 §3: SHA-256 of the required members, in lexicographic order,
/// with no whitespace. The values are base64url or fixed names, which JSON
/// writes without escapes.
fn thumbprint_of(material: &Material) -> [u8; 32] {
    let text = ropc_core::base64::to_url_nopad_string;
    let canonical = match material {
        Material::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, text(e), text(n)),
        Material::P256 { x, y } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, text(x), text(y)),
        Material::Ed25519 { x, .. } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, text(x)),
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl PublicJwk {
    /// Parses one public JWK: `RSA` (2048 bits or more), `EC` on P-256, or
    /// `OKP` Ed25519. Private members, symmetric keys and other curves are
    /// refused.
    pub fn parse(jwk: &Map<String, Value>) -> Result<Self, KeyError> {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            if jwk.contains_key(private) {
                return Err(format!("the key has the private member {private:?}: give the public key only"));
            }
        }
        let material = match member(jwk, "kty")? {
            "RSA" => {
                let n = strip_zeros(b64_member(jwk, "n")?);
                let e = strip_zeros(b64_member(jwk, "e")?);
                if n.len() < 256 {
                    return Err(format!("the RSA key has {} bits; at least 2048 are needed", n.len() * 8));
                }
                Material::Rsa { n, e }
            }
            "EC" => {
                if member(jwk, "crv")? != "P-256" {
                    return Err("only the P-256 curve is supported for EC keys".into());
                }
                let (x, y) = (b64_member(jwk, "x")?, b64_member(jwk, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("a P-256 coordinate is not 32 bytes".into());
                }
                Material::P256 { x, y }
            }
            "OKP" => {
                if member(jwk, "crv")? != "Ed25519" {
                    return Err("only Ed25519 is supported for OKP keys".into());
                }
                let x = b64_member(jwk, "x")?;
                let bytes: &[u8; 32] = x.as_slice().try_into().map_err(|_| "an Ed25519 key is 32 bytes".to_owned())?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|_| "the Ed25519 key is not a point on the curve".to_owned())?;
                Material::Ed25519 { x, key }
            }
            "oct" => return Err("a symmetric key (kty oct) cannot be a public key".into()),
            other => return Err(format!("unsupported kty {other:?}")),
        };
        let alg = match jwk.get("alg").and_then(Value::as_str) {
            None => None,
            Some(name) => {
                let alg = Alg::parse(name).filter(|a| *a != Alg::Hs256);
                Some(alg.ok_or_else(|| format!("unsupported alg {name:?} for a public key"))?)
            }
        };
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        let thumbprint = thumbprint_of(&material);
        let key = PublicJwk { kid, alg, material, thumbprint };
        if let Some(alg) = key.alg {
            if !key.fits(alg) {
                return Err(format!("alg {:?} does not fit the key type", alg.as_str()));
            }
        }
        Ok(key)
    }

    /// Whether the key may verify `alg`: its family, and its own `alg` if
    /// it names one. HMAC never: a public key is no shared secret.
    pub fn fits(&self, alg: Alg) -> bool {
        let family = matches!(
            (&self.material, alg),
            (Material::Rsa { .. }, Alg::Rs256 | Alg::Ps256)
                | (Material::P256 { .. }, Alg::Es256)
                | (Material::Ed25519 { .. }, Alg::EdDsa)
        );
        family && self.alg.is_none_or(|a| a == alg)
    }

    /// Verifies `signature` over `message` with `alg`.
    pub fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> Result<(), Refusal> {
        if !self.fits(alg) {
            return Err("the alg does not fit the key");
        }
        let ok = match (&self.material, alg) {
            (Material::Rsa { n, e }, Alg::Rs256) => {
                RsaPublicKeyComponents { n, e }.verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig).is_ok()
            }
            (Material::Rsa { n, e }, Alg::Ps256) => {
                RsaPublicKeyComponents { n, e }.verify(&signature::RSA_PSS_2048_8192_SHA256, message, sig).is_ok()
            }
            (Material::P256 { x, y }, Alg::Es256) => {
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point).verify(message, sig).is_ok()
            }
            // Strict: no small-order keys, no malleable signatures.
            (Material::Ed25519 { key, .. }, Alg::EdDsa) => {
                ed25519_dalek::Signature::from_slice(sig).is_ok_and(|sig| key.verify_strict(message, &sig).is_ok())
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err("the signature does not verify")
        }
    }

    /// The RFC 7638 SHA-256 thumbprint.
    pub fn thumbprint(&self) -> [u8; 32] {
        self.thumbprint
    }

    /// Whether this key is the public key of a certificate's
    /// SubjectPublicKeyInfo (RFC 8705 §2.2, self-signed certificates).
    pub fn matches_spki(&self, spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> bool {
        use x509_parser::public_key::PublicKey;
        match (spki.parsed(), &self.material) {
            (Ok(PublicKey::RSA(rsa)), Material::Rsa { n, e }) => {
                strip_zeros(rsa.modulus.to_vec()) == *n && strip_zeros(rsa.exponent.to_vec()) == *e
            }
            (Ok(PublicKey::EC(point)), Material::P256 { x, y }) => {
                // prime256v1: the same coordinates on another curve are another key.
                let p256 = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
                let data = point.data();
                p256.as_deref() == Some("1.2.840.10045.3.1.7")
                    && data.len() == 65
                    && data[0] == 4
                    && data[1..33] == x[..]
                    && data[33..] == y[..]
            }
            _ => match &self.material {
                // x509-parser leaves Ed25519 unparsed: the key is the raw bits.
                Material::Ed25519 { x, .. } => {
                    spki.algorithm.algorithm.to_id_string() == "1.3.101.112"
                        && spki.subject_public_key.data[..] == x[..]
                }
                _ => false,
            },
        }
    }
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..zeros);
    v
}

/// A client's public keys (`jwks_file`).
#[derive(Clone, Debug, Default)]
pub struct Jwks {
    pub(super) keys: Vec<PublicJwk>,
}

impl Jwks {
    /// Parses a JWK Set document (`{"keys":[...]}`); a key that is not for
    /// signatures (`use` other than `sig`) is left out.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let keys = doc.get("keys").and_then(Value::as_array).ok_or("not a JWK Set: no \"keys\" array")?;
        let mut out = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let k = k.as_object().ok_or_else(|| format!("key {i} is not an object"))?;
            if k.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
                continue;
            }
            out.push(PublicJwk::parse(k).map_err(|e| format!("key {i}: {e}"))?);
        }
        if out.is_empty() {
            return Err("the set has no signing key".into());
        }
        Ok(Jwks { keys: out })
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    /// The key a JWS names: by `kid` if it has one, else the only key that
    /// fits `alg`.
    pub fn select(&self, kid: Option<&str>, alg: Alg) -> Option<&PublicJwk> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid) && k.fits(alg)),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                let first = fitting.next()?;
                fitting.next().is_none().then_some(first)
            }
        }
    }

    /// Every key.
    pub fn keys(&self) -> &[PublicJwk] {
        &self.keys
    }
}

/// A `client_secret_jwt` client's shared key, kept as HMAC needs it (the
/// one secret ropc cannot store as a hash). `Debug` shows nothing.
pub struct HmacKey(ring::hmac::Key);

impl HmacKey {
    /// The shortest key accepted: RFC 7518 §3.2 wants at least the hash's
    /// size.
    pub const MIN_LEN: usize = 32;

    /// A key from its bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(format!("the key has {} bytes; HS256 needs at least {}", bytes.len(), Self::MIN_LEN));
        }
        Ok(HmacKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes)))
    }

    /// Verifies an HS256 tag in constant time.
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> Result<(), Refusal> {
        ring::hmac::verify(&self.0, message, tag).map_err(|_| "the signature does not verify")
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}
