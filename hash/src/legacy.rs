//! The legacy formats a users file may hold for users migrated from other
//! systems, each verified through a well-kept crate (or, where none fits,
//! a primitive of one), comparing in constant time.
//!
//! | format | example prefix | crate |
//! |---|---|---|
//! | bcrypt | `$2a$`, `$2b$`, `$2y$` | bcrypt |
//! | PBKDF2 (PHC) | `$pbkdf2-sha256$`, `$pbkdf2-sha512$` | pbkdf2 |
//! | PBKDF2 (Django) | `pbkdf2_sha256$<iterations>$<salt>$<hash>` | pbkdf2, sha2 |
//! | SHA-crypt | `$5$`, `$6$` (also as LDAP's `{CRYPT}$6$…`) | sha-crypt |
//! | Apache MD5 (weak) | `$apr1$` | crypt3_rs |
//! | Apache SHA-1 (weak, unsalted) | `{SHA}` | ring |
//! | phpass (WordPress, phpBB; weak) | `$P$`, `$H$` | md-5 |
//! | ASP.NET Identity v2 and v3 | base64 of a format byte `0x00` or `0x01`, then the PBKDF2 parameters | pbkdf2, sha2 |
//! | LDAP salted SHA (weak) | `{SSHA}`, `{SSHA256}`, `{SSHA512}` | ring, sha2 |
//!
//! phpass and ASP.NET Identity have no well-kept crate of their own: they
//! are written here on the crates' primitives (MD5, PBKDF2), and checked
//! against hashes made by the real tools (passlib's phpass, the ASP.NET
//! Core Identity tests' vectors, slappasswd).

use crate::error::malformed;
use crate::HashError;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// The most PBKDF2 iterations accepted (Django 5 uses 870,000-1,000,000):
/// bounds what one login can make a worker spend.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// The highest bcrypt cost accepted (2^15 rounds, about 2 s; legacy
/// systems use 10-12).
const MAX_BCRYPT_COST: u32 = 15;
/// The most SHA-crypt rounds accepted (the default is 5,000).
const MAX_SHA_CRYPT_ROUNDS: u32 = 10_000_000;
/// bcrypt reads only the first 72 bytes of a password.
pub(crate) const BCRYPT_MAX_PASSWORD: usize = 72;
/// The most phpass rounds accepted, as a power of two (WordPress uses 13).
const MAX_PHPASS_LOG2: u32 = 20;

/// The digest of an LDAP salted SHA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sha {
    Sha1,
    Sha256,
    Sha512,
}

impl Sha {
    fn len(self) -> usize {
        match self {
            Sha::Sha1 => 20,
            Sha::Sha256 => 32,
            Sha::Sha512 => 64,
        }
    }

    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Sha::Sha1 => {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
                parts.iter().for_each(|p| ctx.update(p));
                ctx.finish().as_ref().to_vec()
            }
            Sha::Sha256 => {
                let mut h = sha2::Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
            Sha::Sha512 => {
                let mut h = sha2::Sha512::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
        }
    }
}

/// The PRF of an ASP.NET Identity v3 hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prf {
    Sha1,
    Sha256,
    Sha512,
}

/// A legacy scheme, with what its verification needs beyond the stored
/// string itself.
#[derive(Clone)]
pub(crate) enum Legacy {
    Bcrypt,
    Pbkdf2,
    Django { iterations: u32, salt: String, hash: Vec<u8> },
    Sha256Crypt,
    Sha512Crypt,
    Apr1,
    Sha1 { digest: Vec<u8> },
    Phpass { log2: u32, salt: [u8; 8], hash: Vec<u8> },
    AspNet { v3: bool, prf: Prf, iterations: u32, salt: Vec<u8>, subkey: Vec<u8> },
    Ssha { sha: Sha, digest: Vec<u8>, salt: Vec<u8> },
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// phpass's base64: little-endian groups of three bytes, `ITOA64`'s order.
fn phpass_encode64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let value = chunk.iter().enumerate().fold(0u32, |v, (i, b)| v | u32::from(*b) << (8 * i));
        for i in 0..=chunk.len() {
            out.push(ITOA64[((value >> (6 * i)) & 0x3f) as usize]);
        }
    }
    out
}

/// LDAP exports wrap crypt(3) hashes: `{CRYPT}$6$…` is `$6$…`.
fn unwrap_crypt(phc: &str) -> &str {
    phc.strip_prefix("{CRYPT}").or_else(|| phc.strip_prefix("{crypt}")).unwrap_or(phc)
}

fn is_crypt64(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

/// `$<id>$[rounds=N$]<salt>$<hash>` with a salt of at most `max_salt`
/// characters and a hash of exactly `hash_len`, all in crypt's base64
/// alphabet: the syntax of SHA-crypt and Apache MD5. (The crates check it
/// again when verifying; this names the problem at load time without
/// spending a hash per user.)
fn crypt_syntax(phc: &str, id: &str, rounds: bool, max_salt: usize, hash_len: usize) -> Result<(), HashError> {
    let rest = phc.strip_prefix(id).ok_or_else(|| malformed("wrong prefix"))?;
    let mut parts: Vec<&str> = rest.split('$').collect();
    if rounds && parts.first().is_some_and(|p| p.starts_with("rounds=")) {
        let n = parts.remove(0)["rounds=".len()..].parse::<u32>().map_err(|_| malformed("bad rounds="))?;
        if !(1_000..=MAX_SHA_CRYPT_ROUNDS).contains(&n) {
            return Err(HashError::CostTooHigh(format!("rounds must be between 1000 and {MAX_SHA_CRYPT_ROUNDS}")));
        }
    }
    match parts.as_slice() {
        [salt, hash] if salt.len() <= max_salt && hash.len() == hash_len && is_crypt64(salt) && is_crypt64(hash) => {
            Ok(())
        }
        _ => Err(malformed(format!("malformed {id} hash: expected {id}<salt>${hash_len} characters>"))),
    }
}

impl Legacy {
    /// The legacy scheme of `phc`: `None` if no legacy format matches.
    pub(crate) fn parse(phc: &str) -> Option<Result<Legacy, HashError>> {
        let phc = unwrap_crypt(phc);
        let parsed = if ["$2a$", "$2b$", "$2y$"].iter().any(|p| phc.starts_with(p)) {
            Self::bcrypt(phc)
        } else if phc.starts_with("$pbkdf2-sha256$") || phc.starts_with("$pbkdf2-sha512$") {
            Self::pbkdf2(phc)
        } else if let Some(rest) = phc.strip_prefix("pbkdf2_sha256$") {
            Self::django(rest)
        } else if phc.starts_with("$5$") {
            crypt_syntax(phc, "$5$", true, 16, 43).map(|()| Legacy::Sha256Crypt)
        } else if phc.starts_with("$6$") {
            crypt_syntax(phc, "$6$", true, 16, 86).map(|()| Legacy::Sha512Crypt)
        } else if phc.starts_with("$apr1$") {
            crypt_syntax(phc, "$apr1$", false, 8, 22).map(|()| Legacy::Apr1)
        } else if let Some(b64) = phc.strip_prefix("{SHA}") {
            Self::sha1(b64)
        } else if phc.starts_with("$P$") || phc.starts_with("$H$") {
            Self::phpass(phc)
        } else if let Some(b64) = phc.strip_prefix("{SSHA}") {
            Self::ssha(Sha::Sha1, b64)
        } else if let Some(b64) = phc.strip_prefix("{SSHA256}") {
            Self::ssha(Sha::Sha256, b64)
        } else if let Some(b64) = phc.strip_prefix("{SSHA512}") {
            Self::ssha(Sha::Sha512, b64)
        } else {
            // ASP.NET Identity: bare base64, told apart by its format byte.
            return Self::aspnet(phc);
        };
        Some(parsed)
    }

    fn phpass(phc: &str) -> Result<Legacy, HashError> {
        let b = phc.as_bytes();
        if b.len() != 34 || !b[3..].iter().all(|c| ITOA64.contains(c)) {
            return Err(malformed("malformed phpass hash: expected $P$ and 31 characters of ./0-9A-Za-z"));
        }
        let log2 = ITOA64.iter().position(|c| *c == b[3]).unwrap_or(0) as u32;
        if !(7..=MAX_PHPASS_LOG2).contains(&log2) {
            return Err(HashError::CostTooHigh(format!(
                "phpass: 2^{log2} rounds; between 2^7 and 2^{MAX_PHPASS_LOG2} are accepted"
            )));
        }
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&b[4..12]);
        Ok(Legacy::Phpass { log2, salt, hash: b[12..].to_vec() })
    }

    fn ssha(sha: Sha, b64: &str) -> Result<Legacy, HashError> {
        let mut out = [0u8; 192];
        let n = ropc_core::base64::decode_standard(b64.as_bytes(), &mut out)
            .map_err(|_| malformed("salted SHA hash: not base64"))?;
        if n <= sha.len() {
            return Err(malformed("salted SHA hash: expected the digest followed by a salt"));
        }
        Ok(Legacy::Ssha { sha, digest: out[..sha.len()].to_vec(), salt: out[sha.len()..n].to_vec() })
    }

    /// ASP.NET Identity's `PasswordHasher` output: v2 is `0x00`, a 16-byte
    /// salt and a 32-byte PBKDF2-HMAC-SHA1 subkey at 1,000 iterations; v3
    /// is `0x01`, the PRF, the iteration count and the salt's length (each
    /// a big-endian u32), the salt and the subkey. `None` if it is not one
    /// (nothing else is bare base64 of such bytes).
    fn aspnet(phc: &str) -> Option<Result<Legacy, HashError>> {
        if phc.len() < 60 || !phc.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
            return None;
        }
        let mut out = [0u8; 512];
        let n = ropc_core::base64::decode_standard(phc.as_bytes(), &mut out).ok()?;
        let b = &out[..n];
        let word = |at: usize| -> Option<u32> { Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?)) };
        Some(match b.first() {
            Some(0x00) if n == 49 => Ok(Legacy::AspNet {
                v3: false,
                prf: Prf::Sha1,
                iterations: 1000,
                salt: b[1..17].to_vec(),
                subkey: b[17..].to_vec(),
            }),
            Some(0x00) => Err(malformed("ASP.NET Identity v2 hash: expected 49 bytes")),
            Some(0x01) => (|| {
                let prf = match word(1)? {
                    0 => Prf::Sha1,
                    1 => Prf::Sha256,
                    2 => Prf::Sha512,
                    _ => return None,
                };
                let (iterations, salt_len) = (word(5)?, word(9)? as usize);
                let salt = b.get(13..13 + salt_len)?.to_vec();
                let subkey = b.get(13 + salt_len..)?.to_vec();
                (salt.len() >= 16 && subkey.len() >= 16 && iterations >= 1).then_some((prf, iterations, salt, subkey))
            })()
            .ok_or_else(|| malformed("malformed ASP.NET Identity v3 hash"))
            .and_then(|(prf, iterations, salt, subkey)| {
                if iterations > MAX_PBKDF2_ITERATIONS {
                    return Err(HashError::CostTooHigh(format!(
                        "ASP.NET Identity: more than {MAX_PBKDF2_ITERATIONS} iterations"
                    )));
                }
                Ok(Legacy::AspNet { v3: true, prf, iterations, salt, subkey })
            }),
            _ => return None,
        })
    }

    fn bcrypt(phc: &str) -> Result<Legacy, HashError> {
        // Not the crate's message: its InvalidHash quotes the whole hash,
        // which must not reach a config error or a log.
        let parts = phc.parse::<bcrypt::HashParts>().map_err(|e| {
            malformed(match e {
                bcrypt::BcryptError::InvalidCost(_) => "malformed bcrypt hash (its cost)",
                bcrypt::BcryptError::InvalidPrefix(_) => "malformed bcrypt hash (its prefix)",
                _ => "malformed bcrypt hash: expected $2b$<cost>$ and 53 characters of bcrypt's base64",
            })
        })?;
        if parts.get_cost() > MAX_BCRYPT_COST {
            return Err(HashError::CostTooHigh(format!(
                "bcrypt cost {} is above the {MAX_BCRYPT_COST} accepted",
                parts.get_cost()
            )));
        }
        Ok(Legacy::Bcrypt)
    }

    fn pbkdf2(phc: &str) -> Result<Legacy, HashError> {
        let parsed = PasswordHash::new(phc).map_err(|e| malformed(format!("malformed PBKDF2 hash ({e})")))?;
        let params =
            pbkdf2::Params::try_from(&parsed).map_err(|e| malformed(format!("bad PBKDF2 parameters ({e})")))?;
        if params.rounds > MAX_PBKDF2_ITERATIONS {
            return Err(HashError::CostTooHigh(format!("PBKDF2: more than {MAX_PBKDF2_ITERATIONS} iterations")));
        }
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err(malformed("the PBKDF2 hash has no salt or no output"));
        }
        Ok(Legacy::Pbkdf2)
    }

    fn django(rest: &str) -> Result<Legacy, HashError> {
        let mut parts = rest.splitn(3, '$');
        let (Some(iterations), Some(salt), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed("malformed Django hash: expected pbkdf2_sha256$<iterations>$<salt>$<hash>"));
        };
        let iterations =
            iterations.parse::<u32>().ok().filter(|n| (1..=MAX_PBKDF2_ITERATIONS).contains(n)).ok_or_else(|| {
                HashError::CostTooHigh(format!("Django hash: iterations must be between 1 and {MAX_PBKDF2_ITERATIONS}"))
            })?;
        let mut out = [0u8; 64];
        let n = ropc_core::base64::decode_standard(hash.as_bytes(), &mut out)
            .map_err(|_| malformed("Django hash: the hash is not base64"))?;
        if n != 32 || salt.is_empty() || salt.contains('$') {
            return Err(malformed("Django hash: expected a salt and a 32-byte SHA-256 output"));
        }
        Ok(Legacy::Django { iterations, salt: salt.to_owned(), hash: out[..n].to_vec() })
    }

    fn sha1(b64: &str) -> Result<Legacy, HashError> {
        let mut out = [0u8; 24];
        let n = ropc_core::base64::decode_standard(b64.as_bytes(), &mut out)
            .map_err(|_| malformed("{SHA} hash: not base64"))?;
        if n != 20 {
            return Err(malformed("{SHA} hash: expected the base64 of a 20-byte SHA-1 digest"));
        }
        Ok(Legacy::Sha1 { digest: out[..n].to_vec() })
    }

    /// The scheme's short name, for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Legacy::Bcrypt => "bcrypt",
            Legacy::Pbkdf2 => "pbkdf2",
            Legacy::Django { .. } => "django_pbkdf2_sha256",
            Legacy::Sha256Crypt => "sha256_crypt",
            Legacy::Sha512Crypt => "sha512_crypt",
            Legacy::Apr1 => "apr1",
            Legacy::Sha1 { .. } => "sha1",
            Legacy::Phpass { .. } => "phpass",
            Legacy::AspNet { v3: false, .. } => "aspnet_identity_v2",
            Legacy::AspNet { v3: true, .. } => "aspnet_identity_v3",
            Legacy::Ssha { sha: Sha::Sha1, .. } => "ssha",
            Legacy::Ssha { sha: Sha::Sha256, .. } => "ssha256",
            Legacy::Ssha { sha: Sha::Sha512, .. } => "ssha512",
        }
    }

    /// Whether the scheme is weak enough to warn about: a fast digest, or
    /// MD5.
    pub(crate) fn is_weak(&self) -> bool {
        matches!(self, Legacy::Apr1 | Legacy::Sha1 { .. } | Legacy::Phpass { .. } | Legacy::Ssha { .. })
    }

    /// Verifies `password` against `phc`, this scheme's stored string.
    pub(crate) fn verify(&self, phc: &str, password: &[u8]) -> bool {
        let phc = unwrap_crypt(phc);
        match self {
            Legacy::Bcrypt => bcrypt::verify(password, phc).unwrap_or(false),
            Legacy::Pbkdf2 => {
                PasswordHash::new(phc).is_ok_and(|parsed| pbkdf2::Pbkdf2.verify_password(password, &parsed).is_ok())
            }
            Legacy::Django { iterations, salt, hash } => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt.as_bytes(), *iterations, &mut out);
                let ok = bool::from(out.as_slice().ct_eq(hash));
                out.zeroize();
                ok
            }
            Legacy::Sha256Crypt => std::str::from_utf8(password).is_ok_and(|p| sha_crypt::sha256_check(p, phc).is_ok()),
            Legacy::Sha512Crypt => std::str::from_utf8(password).is_ok_and(|p| sha_crypt::sha512_check(p, phc).is_ok()),
            Legacy::Apr1 => {
                // The crate's own `verify` compares with `==`; recompute and
                // compare in constant time instead.
                #[allow(deprecated)]
                let computed = crypt3_rs::crypt::apr1::hash_with(phc, password);
                computed.is_ok_and(|h| {
                    let h = h.as_str().as_bytes();
                    h.len() == phc.len() && bool::from(h.ct_eq(phc.as_bytes()))
                })
            }
            Legacy::Sha1 { digest } => {
                let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password);
                bool::from(d.as_ref().ct_eq(digest))
            }
            Legacy::Phpass { log2, salt, hash } => {
                use md5::Digest;
                let mut h = md5::Md5::new().chain_update(salt).chain_update(password).finalize();
                for _ in 0..(1u32 << log2) {
                    h = md5::Md5::new().chain_update(h).chain_update(password).finalize();
                }
                let ok = bool::from(phpass_encode64(&h).ct_eq(hash));
                h.zeroize();
                ok
            }
            Legacy::AspNet { prf, iterations, salt, subkey, .. } => {
                let mut out = vec![0u8; subkey.len()];
                match prf {
                    Prf::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, *iterations, &mut out),
                    Prf::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, *iterations, &mut out),
                    Prf::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, *iterations, &mut out),
                }
                let ok = bool::from(out.ct_eq(subkey));
                out.zeroize();
                ok
            }
            Legacy::Ssha { sha, digest, salt } => {
                let mut d = sha.digest(&[password, salt]);
                let ok = bool::from(d.ct_eq(digest));
                d.zeroize();
                ok
            }
        }
    }
}
