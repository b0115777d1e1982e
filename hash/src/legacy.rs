//! The legacy formats a users file may hold for users migrated from other
//! systems, each verified through a well-kept crate (or, where none fits,
//! a primitive of one), comparing in constant time.
//!
//! | format | example prefix | crate |
//! |---|---|---|
//! | bcrypt | `$2a$`, `$2b$`, `$2y$` | bcrypt |
//! | PBKDF2 (PHC) | `$pbkdf2-sha256$`, `$pbkdf2-sha512$` | pbkdf2 |
//! | PBKDF2 (Django) | `pbkdf2_sha256$<iterations>$<salt>$<hash>` | pbkdf2, sha2 |
//! | SHA-crypt | `$5$`, `$6$` | sha-crypt |
//! | Apache MD5 (weak) | `$apr1$` | crypt3_rs |
//! | Apache SHA-1 (weak, unsalted) | `{SHA}` | ring |

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
    /// The legacy scheme of `phc`: `None` if no legacy prefix matches.
    pub(crate) fn parse(phc: &str) -> Option<Result<Legacy, HashError>> {
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
        } else {
            return None;
        };
        Some(parsed)
    }

    fn bcrypt(phc: &str) -> Result<Legacy, HashError> {
        let parts = phc.parse::<bcrypt::HashParts>().map_err(|e| malformed(format!("malformed bcrypt hash ({e})")))?;
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
        }
    }

    /// Whether the scheme is weak enough to warn about.
    pub(crate) fn is_weak(&self) -> bool {
        matches!(self, Legacy::Apr1 | Legacy::Sha1 { .. })
    }

    /// Verifies `password` against `phc`, this scheme's stored string.
    pub(crate) fn verify(&self, phc: &str, password: &[u8]) -> bool {
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
        }
    }
}
