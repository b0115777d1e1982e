//! Signing keys for JWT access tokens (RFC 9068) and the JWKS that
//! publishes them.
//!
//! Two ways to hold keys:
//! - `[jwt] signing_key = "key.pem"`: the operator's PKCS#8 key (Ed25519 or
//!   P-256), plus `previous_keys` still published while their tokens live.
//! - Otherwise ropc manages `[jwt] keys_dir` (default `jwt-keys/` beside the
//!   config): it generates a key on first start, and `ropc jwt rotate-key`
//!   adds a newer one. The newest key signs; an older key stays published
//!   until `access_token_ttl` after its successor appeared, so every token it
//!   signed can still be verified, and then drops out of the JWKS.

use crate::clock::now;
use crate::fsutil::write_atomic;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use ropc_core::jwt::{write_jwks, Jwk, SignError, TokenSigner};
use std::fmt;
use std::path::{Path, PathBuf};

/// The JWS algorithm of new keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// ECDSA P-256 with SHA-256 (RFC 7518 §3.4).
    Es256,
}

enum Pair {
    /// Signed by ed25519-dalek, which is faster than ring here (21.7 µs
    /// against 29.0 µs a signature, BENCHMARKS.md). Ed25519 signatures are
    /// deterministic: both make the same bytes.
    Ed25519 {
        signer: ed25519_dalek::SigningKey,
        public: [u8; 32],
    },
    Es256(EcdsaKeyPair, SystemRandom),
}

/// One key pair with its `kid`.
pub struct SigningKey {
    kid: String,
    pair: Pair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, {})", self.kid, self.algorithm())
    }
}

impl TokenSigner for SigningKey {
    fn algorithm(&self) -> &'static str {
        match self.pair {
            Pair::Ed25519 { .. } => "EdDSA",
            Pair::Es256(..) => "ES256",
        }
    }

    fn key_id(&self) -> &str {
        &self.kid
    }

    fn sign(&self, message: &[u8], out: &mut Vec<u8>) -> Result<(), SignError> {
        match &self.pair {
            Pair::Ed25519 { signer, .. } => {
                out.extend_from_slice(&ed25519_dalek::Signer::sign(signer, message).to_bytes());
            }
            Pair::Es256(pair, rng) => out.extend_from_slice(pair.sign(rng, message).map_err(|_| SignError)?.as_ref()),
        }
        Ok(())
    }
}

impl SigningKey {
    /// Parses a PKCS#8 DER key, Ed25519 or P-256.
    fn from_pkcs8(kid: String, der: &[u8]) -> Result<Self, String> {
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            // ring decides what is an Ed25519 key, as before; dalek signs.
            // It refuses a PKCS#8 v2 key whose public key is not the
            // private key's.
            use ed25519_dalek::pkcs8::DecodePrivateKey;
            let signer = ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map_err(|_| "an Ed25519 PKCS#8 key whose public key does not match its private key")?;
            let public = signer.verifying_key().to_bytes();
            if public.as_slice() != pair.public_key().as_ref() {
                return Err("an Ed25519 key read two ways gave two public keys".into());
            }
            return Ok(Self { kid, pair: Pair::Ed25519 { signer, public } });
        }
        let rng = SystemRandom::new();
        match EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng) {
            Ok(pair) => Ok(Self { kid, pair: Pair::Es256(pair, rng) }),
            Err(_) => Err("not an Ed25519 or P-256 PKCS#8 private key".into()),
        }
    }

    /// A fresh in-memory key (benches, tests).
    pub fn generate(algorithm: Algorithm, kid: &str) -> Result<Self, String> {
        Self::from_pkcs8(kid.to_owned(), &generate_pkcs8(algorithm)?)
    }

    /// Reads a PEM private key; `kid` defaults to a digest of the public key.
    pub fn load(path: &Path, kid: Option<String>) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let der = match rustls_pemfile::private_key(&mut pem.as_slice()) {
            Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k))) => k.secret_pkcs8_der().to_vec(),
            Ok(Some(_)) => return Err(format!("{}: the key must be PKCS#8 (BEGIN PRIVATE KEY)", path.display())),
            _ => return Err(format!("{}: no PEM private key found", path.display())),
        };
        let key = Self::from_pkcs8(String::new(), &der).map_err(|e| format!("{}: {e}", path.display()))?;
        let kid = kid.unwrap_or_else(|| thumbprint(key.public_key()));
        Ok(Self { kid, ..key })
    }

    fn public_key(&self) -> &[u8] {
        match &self.pair {
            Pair::Ed25519 { public, .. } => public,
            Pair::Es256(p, _) => p.public_key().as_ref(),
        }
    }

    fn jwk(&self) -> Jwk<'_> {
        match &self.pair {
            Pair::Ed25519 { public, .. } => Jwk::Ed25519 { kid: &self.kid, x: public },
            // An uncompressed point: 0x04 || x || y.
            Pair::Es256(p, _) => {
                let point = p.public_key().as_ref();
                Jwk::P256 { kid: &self.kid, x: &point[1..33], y: &point[33..65] }
            }
        }
    }
}

fn thumbprint(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    ropc_core::base64::to_url_nopad_string(&digest.as_ref()[..16])
}

/// The active signing key and every key still published.
#[derive(Debug)]
pub struct JwtKeys {
    /// The key that signs new tokens.
    pub active: SigningKey,
    /// The JWKS document (RFC 7517), built once.
    pub jwks: Vec<u8>,
}

/// PEM-encodes a PKCS#8 private key.
fn pem(der: &[u8]) -> String {
    let mut b64 = vec![0u8; ropc_core::base64::encoded_len_nopad(der.len())];
    let _ = ropc_core::base64::encode_standard_nopad(der, &mut b64);
    while b64.len() % 4 != 0 {
        b64.push(b'=');
    }
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.chunks(64) {
        out.extend(line.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// A new PKCS#8 key pair.
fn generate_pkcs8(algorithm: Algorithm) -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    let der = match algorithm {
        Algorithm::EdDsa => {
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "key generation failed")?.as_ref().to_vec()
        }
        Algorithm::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "key generation failed")?
            .as_ref()
            .to_vec(),
    };
    Ok(der)
}

/// Generates a new key in `dir`, named `<unix time>-<random>.pem` (mode
/// 0600); returns its path.
pub fn generate_key(dir: &Path, algorithm: Algorithm) -> Result<PathBuf, String> {
    let rng = SystemRandom::new();
    let der = generate_pkcs8(algorithm)?;
    let mut tag = [0u8; 4];
    ring::rand::SecureRandom::fill(&rng, &mut tag).map_err(|_| "the system random source failed")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = format!("{}-{:02x}{:02x}{:02x}{:02x}.pem", now(), tag[0], tag[1], tag[2], tag[3]);
    let path = dir.join(name);
    write_atomic(&path, pem(&der).as_bytes(), 0o600).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The keys of a managed directory, oldest first, with their creation time.
fn managed_keys(dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let mut keys = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let created = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".pem") && !n.starts_with('.'))
            .and_then(|n| n.split('-').next())
            .and_then(|t| t.parse::<u64>().ok());
        if let Some(created) = created {
            keys.push((created, path));
        }
    }
    keys.sort();
    Ok(keys)
}

impl JwtKeys {
    /// Loads the operator's key and its predecessors.
    pub fn from_files(signing_key: &Path, previous: &[PathBuf]) -> Result<Self, String> {
        let active = SigningKey::load(signing_key, None)?;
        let previous: Vec<SigningKey> = previous.iter().map(|p| SigningKey::load(p, None)).collect::<Result<_, _>>()?;
        let mut jwks = Vec::new();
        let keys: Vec<Jwk<'_>> = std::iter::once(&active).chain(&previous).map(SigningKey::jwk).collect();
        write_jwks(&mut jwks, &keys);
        Ok(Self { active, jwks })
    }

    /// Loads a managed key directory, generating the first key if it is
    /// empty. Keys retired more than `access_token_ttl` ago are not published.
    pub fn managed(dir: &Path, algorithm: Algorithm, access_token_ttl: u64) -> Result<Self, String> {
        let mut keys = managed_keys(dir)?;
        if keys.is_empty() {
            generate_key(dir, algorithm)?;
            keys = managed_keys(dir)?;
        }
        let now = now();
        let mut published = Vec::new();
        for (i, (_, path)) in keys.iter().enumerate() {
            // A key retires when its successor appears. The key just before
            // the active one is always published: the successor only signs
            // from the start after it was created, so tokens of the old key
            // may be younger than the successor's file.
            let retired_at = keys.get(i + 1).map(|(created, _)| *created);
            let recent = retired_at.is_none_or(|r| r.saturating_add(access_token_ttl) > now);
            if recent || i + 2 == keys.len() {
                let kid = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned);
                published.push(SigningKey::load(path, kid)?);
            }
        }
        let active = published.pop().ok_or("no signing key")?;
        let mut jwks = Vec::new();
        let jwk: Vec<Jwk<'_>> = std::iter::once(&active).chain(published.iter().rev()).map(SigningKey::jwk).collect();
        write_jwks(&mut jwks, &jwk);
        Ok(Self { active, jwks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};

    #[test]
    fn both_algorithms_sign_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        for (alg, verify) in [
            (Algorithm::EdDsa, &ED25519 as &dyn ring::signature::VerificationAlgorithm),
            (Algorithm::Es256, &ECDSA_P256_SHA256_FIXED),
        ] {
            let path = generate_key(dir.path(), alg).unwrap();
            let key = SigningKey::load(&path, None).unwrap();
            let mut sig = Vec::new();
            key.sign(b"header.claims", &mut sig).unwrap();
            UnparsedPublicKey::new(verify, key.public_key()).verify(b"header.claims", &sig).unwrap();
            assert!(UnparsedPublicKey::new(verify, key.public_key()).verify(b"header.claimz", &sig).is_err());
        }
    }

    /// The signer is dalek's; the bytes are those ring makes with the key.
    #[test]
    fn ed25519_signatures_are_the_ones_ring_makes() {
        let der = generate_pkcs8(Algorithm::EdDsa).unwrap();
        let key = SigningKey::from_pkcs8("k".into(), &der).unwrap();
        let ring_pair = Ed25519KeyPair::from_pkcs8(&der).unwrap();
        for message in [&b""[..], b"header.claims", &[0xa5; 1000]] {
            let mut sig = Vec::new();
            key.sign(message, &mut sig).unwrap();
            assert_eq!(sig, ring_pair.sign(message).as_ref());
        }
        assert_eq!(key.public_key(), ring_pair.public_key().as_ref());
    }

    #[test]
    fn managed_directory_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let first = JwtKeys::managed(dir.path(), Algorithm::EdDsa, 300).unwrap();
        let first_kid = first.active.key_id().to_owned();
        // A restart keeps the key.
        assert_eq!(JwtKeys::managed(dir.path(), Algorithm::EdDsa, 300).unwrap().active.key_id(), first_kid);
        // A newer key takes over; the old one stays published for the TTL.
        std::fs::rename(
            dir.path().join(format!("{first_kid}.pem")),
            dir.path().join(format!("{}-old.pem", now() - 100)),
        )
        .unwrap();
        generate_key(dir.path(), Algorithm::EdDsa).unwrap();
        let keys = JwtKeys::managed(dir.path(), Algorithm::EdDsa, 300).unwrap();
        assert_ne!(keys.active.key_id(), first_kid);
        let jwks = String::from_utf8(keys.jwks.clone()).unwrap();
        assert_eq!(jwks.matches("\"kid\"").count(), 2, "{jwks}");
        // With a TTL shorter than the time since rotation, the old key is gone.
        let mut old = managed_keys(dir.path()).unwrap();
        let (_, newest) = old.pop().unwrap();
        std::fs::rename(&newest, dir.path().join(format!("{}-new.pem", now() - 50))).unwrap();
        let keys = JwtKeys::managed(dir.path(), Algorithm::EdDsa, 10).unwrap();
        assert_eq!(String::from_utf8(keys.jwks).unwrap().matches("\"kid\"").count(), 2, "the predecessor stays");
        // A third key: the first one, long retired, drops out.
        generate_key(dir.path(), Algorithm::EdDsa).unwrap();
        let keys = JwtKeys::managed(dir.path(), Algorithm::EdDsa, 10).unwrap();
        let jwks = String::from_utf8(keys.jwks).unwrap();
        assert_eq!(jwks.matches("\"kid\"").count(), 2, "{jwks}");
        assert!(!jwks.contains(&first_kid), "{jwks}");
    }
}
