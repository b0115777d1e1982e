//! Stored password hashes: a hash string parsed once, at load time, into
//! what the hash workers need, and verified with caller-owned memory.
//!
//! argon2 (id, i and d, any parameters, in the PHC string format) is the
//! scheme of new hashes; [`crate::legacy`] lists the formats accepted for
//! users migrated from other systems. Every comparison is constant-time. A
//! hash that is not argon2id with the configured cost is not
//! [`StoredHash::is_current`]: the server replaces it after the user's next
//! successful login.

use crate::error::malformed;
use crate::legacy::{Legacy, BCRYPT_MAX_PASSWORD};
use crate::{HashError, HashMemory};
use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// How a stored hash is checked.
#[derive(Clone)]
enum Scheme {
    Argon2 { algorithm: Algorithm, version: Version, params: Params, salt: Vec<u8>, hash: Vec<u8> },
    Legacy(Legacy),
}

/// A parsed stored hash, ready to verify against.
#[derive(Clone)]
pub struct StoredHash {
    scheme: Scheme,
    phc: String,
}

impl fmt::Debug for StoredHash {
    /// Shows the scheme and cost, never the salt or the hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheme {
            Scheme::Argon2 { algorithm, params, .. } => write!(
                f,
                "StoredHash({algorithm}, m={}, t={}, p={})",
                params.m_cost(),
                params.t_cost(),
                params.p_cost()
            ),
            Scheme::Legacy(Legacy::Django { iterations, .. }) => {
                write!(f, "StoredHash(django pbkdf2_sha256, i={iterations})")
            }
            Scheme::Legacy(_) => write!(f, "StoredHash({})", self.scheme_name()),
        }
    }
}

impl StoredHash {
    /// Parses a stored hash. The error says what is wrong, for config
    /// messages.
    pub fn parse(phc: &str) -> Result<Self, HashError> {
        let scheme = if phc.starts_with("$argon2") {
            Self::parse_argon2(phc)?
        } else {
            Scheme::Legacy(Legacy::parse(phc).ok_or(HashError::UnsupportedFormat)??)
        };
        Ok(Self { scheme, phc: phc.to_owned() })
    }

    fn parse_argon2(phc: &str) -> Result<Scheme, HashError> {
        let parsed = PasswordHash::new(phc).map_err(|e| malformed(format!("not a PHC hash string ({e})")))?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|_| {
            malformed(format!("unsupported hash algorithm `{}` (argon2id, argon2i or argon2d)", parsed.algorithm))
        })?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|_| malformed(format!("unsupported argon2 version {v}")))?,
            None => Version::V0x13,
        };
        let params = Params::try_from(&parsed).map_err(|e| malformed(format!("bad argon2 parameters ({e})")))?;
        let salt = parsed.salt.ok_or_else(|| malformed("the hash has no salt"))?;
        let mut salt_buf = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_buf).map_err(|e| malformed(format!("bad salt ({e})")))?.to_vec();
        let hash = parsed.hash.ok_or_else(|| malformed("the hash has no output"))?.as_bytes().to_vec();
        Ok(Scheme::Argon2 { algorithm, version, params, salt, hash })
    }

    /// The stored string, as in the users file.
    pub fn as_phc(&self) -> &str {
        &self.phc
    }

    /// A short name of the scheme, for logs (`argon2id`, `bcrypt`, ...).
    pub fn scheme_name(&self) -> &'static str {
        match &self.scheme {
            Scheme::Argon2 { algorithm: Algorithm::Argon2id, .. } => "argon2id",
            Scheme::Argon2 { algorithm: Algorithm::Argon2i, .. } => "argon2i",
            Scheme::Argon2 { .. } => "argon2d",
            Scheme::Legacy(legacy) => legacy.name(),
        }
    }

    /// Whether the scheme is weak enough to warn about: Apache's MD5 and the
    /// unsalted SHA-1.
    pub fn is_weak(&self) -> bool {
        matches!(&self.scheme, Scheme::Legacy(legacy) if legacy.is_weak())
    }

    /// Whether verifying checks all of `password`: false for bcrypt with a
    /// password longer than 72 bytes (bcrypt ignores the rest). Such a
    /// password must not become the new hash of an upgrade, or a login
    /// with the right first 72 bytes and anything after would replace the
    /// real password.
    pub fn verifies_whole(&self, password: &[u8]) -> bool {
        !matches!(self.scheme, Scheme::Legacy(Legacy::Bcrypt)) || password.len() <= BCRYPT_MAX_PASSWORD
    }

    /// Memory blocks one verification needs (0 for non-argon2 schemes).
    pub fn block_count(&self) -> usize {
        match &self.scheme {
            Scheme::Argon2 { params, .. } => params.block_count(),
            Scheme::Legacy(_) => 0,
        }
    }

    /// Whether this is argon2id with exactly `params`' costs.
    pub fn is_current(&self, params: &crate::HashParams) -> bool {
        match &self.scheme {
            Scheme::Argon2 { algorithm, version, params: mine, .. } => {
                *algorithm == Algorithm::Argon2id
                    && *version == Version::V0x13
                    && mine.m_cost() == params.m_cost
                    && mine.t_cost() == params.t_cost
                    && mine.p_cost() == params.p_cost
            }
            Scheme::Legacy(_) => false,
        }
    }

    /// Verifies `password`, using (and growing when needed) `memory` for
    /// argon2, so that a worker reuses one allocation across hashes.
    /// Compares in constant time.
    pub fn verify_with_memory(&self, password: &[u8], memory: &mut HashMemory) -> bool {
        match &self.scheme {
            Scheme::Argon2 { algorithm, version, params, salt, hash } => {
                let blocks = params.block_count();
                let mut out = [0u8; 64];
                let Some(out) = out.get_mut(..hash.len()) else {
                    return false;
                };
                let argon = Argon2::new(*algorithm, *version, params.clone());
                let ok = argon.hash_password_into_with_memory(password, salt, out, memory.blocks(blocks)).is_ok()
                    && bool::from(out.ct_eq(hash));
                out.zeroize();
                ok
            }
            // The legacy crates are not all hardened against odd input (a
            // SHA-crypt hash with non-zero padding bits makes sha-crypt 0.5
            // unwrap and panic): a panic is a failed verification, and the
            // worker lives on.
            Scheme::Legacy(legacy) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| legacy.verify(&self.phc, password)))
                    .unwrap_or(false)
            }
        }
    }

    /// Verifies `password` with freshly allocated memory.
    pub fn verify(&self, password: &[u8]) -> bool {
        self.verify_with_memory(password, &mut HashMemory::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HashParams;

    #[test]
    fn reference_vector() {
        // Generated by the reference `argon2` CLI (Debian package argon2, 2026-11-25):
        // echo -n password | argon2 somesalt -id -t 2 -m 6 -p 1 -e
        let phc = "$argon2id$v=19$m=64,t=2,p=1$c29tZXNhbHQ$FqGkmHNGCd0BRW2kBt6fPZ2pPmyGwwChL8FGUhTOSSI";
        let stored = StoredHash::parse(phc).unwrap();
        assert!(stored.verify(b"password"));
        assert!(!stored.verify(b"passwore"));
    }

    /// One password in every legacy format, each made by a tool other than
    /// the crate that verifies it (2026-11-25): `openssl passwd -5 / -6 /
    /// -apr1 -salt saltsalt`, Python's `hashlib` (SHA-1, Django and PHC
    /// PBKDF2, built by hand from `pbkdf2_hmac`), Python's `bcrypt` 4 (`$2a$`,
    /// `$2b$`; `$2y$` is the same hash under PHP's prefix).
    pub(crate) const LEGACY: [(&str, &str); 17] = [
        ("sha256_crypt", "$5$saltsalt$x17in3caGsBwDU2ZoGPQIZ66Z/CyU.7rqeq9PpRfo6A"),
        (
            "sha512_crypt",
            "$6$saltsalt$HesR2wpSRtAhqbwNYjqoN1g3hsmpmiDskwrGRbSr4XSs7VmD4BbZeQDBeWx2ae65MfQighTdIAKiA/DtTrU3A/",
        ),
        ("apr1", "$apr1$saltsalt$kt1dLoKx.9Du6IoaufuYk."),
        ("sha1", "{SHA}oLisiXhAYHTMampGuEeXZHN8Y1Y="),
        ("django_pbkdf2_sha256", "pbkdf2_sha256$10000$djangosalt1$8Ju2XUI2/veOATWsTrKj5+jN0357HYJJlllHDUzmY0U="),
        ("pbkdf2", "$pbkdf2-sha256$i=1000,l=32$cGhjc2FsdDEyMzQ1Njc4OQ$M3StOd4cSIFtIdlWilVnzlFxDBWkTKrMGstr+F9ofd0"),
        (
            "pbkdf2",
            "$pbkdf2-sha512$i=1000,l=64$cGhjc2FsdDEyMzQ1Njc4OQ$kkuoXccBRxd04vkFxkwcnTdbm4n0MUwI5CrMp7noVAG7ziYY0YuQiX1hufGDlkF2j/Mm+X3tyDn40V4QhJfNPA",
        ),
        ("bcrypt", "$2a$04$ff2R9m1X/MCH8wpDT1H6m.XVwF7QYDs1qRBu8HHkPi726U60KSgEu"),
        ("bcrypt", "$2b$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu"),
        ("bcrypt", "$2y$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu"),
        // phpass: passlib 1.7.4 (`phpass.using(rounds=…, salt=…).hash`) and
        // phpBB's `$H$` spelling of the same scheme.
        ("phpass", "$P$6saltsaltOCbaLt38M9Aa19y.EtopW/"),
        ("phpass", "$H$9abcdefghjzkkI/FAxkmSNYcK994au/"),
        ("phpass", "$P$Bwpsalt125QXBN2AXHWaOQo0QlDxQh0"),
        // slappasswd 2.5 (`-h {SSHA}`, and the pw-sha2 module's schemes).
        ("ssha", "{SSHA}82tXlg5yQ4YnYZXfT74VbhuQZxcoYK0v"),
        ("ssha256", "{SSHA256}R3EJeUFSymYIZBj/ZybTCqFtE0UuXLKb+y1g7wv2BfM7UT4nx/4NXw=="),
        (
            "ssha512",
            "{SSHA512}b/ckDGHOr8yeYvniMrbfrnKb2p6lFJjPRVYCBbAQLtwHRw/HL0rsmLLhRJpKaRqp/MB+MD2zILR1SC7tKCn/thj+unPhQqEC",
        ),
        (
            "sha512_crypt",
            "{CRYPT}$6$4oxyD9Ul$QwjR8CMDdm2LHgb.qM/.NaPZBMry2X.M1mJ9IOJ.P8j/UEnR2Ulin4M/QO5qfQZ/UrI0wVrZ7d8oUzzmm5HRi0",
        ),
    ];
    /// ASP.NET Core Identity's own `PasswordHasherTest` vectors, whose
    /// password is "my password": v2 (PBKDF2-HMAC-SHA1, 1,000 iterations)
    /// and v3 with each PRF.
    const ASPNET: &[(&str, &str)] = &[
        ("aspnet_identity_v2", "AAABAgMEBQYHCAkKCwwNDg+ukCEMDf0yyQ29NYubggHIVY0sdEUfdyeM+E1LtH1uJg=="),
        ("aspnet_identity_v2", "ANXrDknc7fGPpigibZXXZFMX4aoqz44JveK6jQuwY3eH/UyPhvr5xTPeGYEckLxz9A=="),
        ("aspnet_identity_v3", "AQAAAAEAACcQAAAAEAABAgMEBQYHCAkKCwwNDg+yWU7rLgUwPZb1Itsmra7cbxw2EFpwpVFIEtP+JIuUEw=="),
        ("aspnet_identity_v3", "AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4B6pZWND6zgESBuWiHw"),
        ("aspnet_identity_v3", "AQAAAAAAAAD6AAAAEAhftMyfTJylOlZT+eEotFXd1elee8ih5WsjXaR3PA9M"),
        (
            "aspnet_identity_v3",
            "AQAAAAEAA9CQAAAAIESkQuj2Du8Y+kbc5lcN/W/3NiAZFEm11P27nrSN5/tId+bR1SwV8CO1Jd72r4C08OLvplNlCDc3oQZ8efcW+jQ=",
        ),
    ];
    /// The password of every [`LEGACY`] hash.
    pub(crate) const LEGACY_PASSWORD: &str = "pw-legacy";

    #[test]
    fn legacy_formats_verify() {
        let current = HashParams::default();
        for (scheme, phc) in LEGACY {
            let stored = StoredHash::parse(phc).unwrap_or_else(|e| panic!("{phc}: {e}"));
            assert_eq!(stored.scheme_name(), scheme);
            assert!(stored.verify(LEGACY_PASSWORD.as_bytes()), "{phc}");
            assert!(!stored.verify(b"pw-legacY"), "{phc}");
            assert!(!stored.verify(b""), "{phc}");
            assert!(!stored.is_current(&current), "{phc}");
            assert_eq!(stored.is_weak(), matches!(scheme, "apr1" | "sha1" | "phpass" | "ssha" | "ssha256" | "ssha512"));
            // Debug names the scheme and shows nothing of the hash.
            let debug = format!("{stored:?}");
            assert!(!debug.contains(&phc[phc.len() - 8..]), "{debug}");
        }
    }

    #[test]
    fn aspnet_identity_verifies() {
        for (scheme, phc) in ASPNET {
            let stored = StoredHash::parse(phc).unwrap_or_else(|e| panic!("{phc}: {e}"));
            assert_eq!(stored.scheme_name(), *scheme);
            assert!(stored.verify(b"my password"), "{phc}");
            assert!(!stored.verify(b"my passwore"), "{phc}");
            assert!(!stored.verify(b""), "{phc}");
        }
        // The failure cases of the same test file: a changed subkey byte, a
        // truncated subkey, and data past the end of the v2 layout.
        for (phc, parses) in [
            ("AAABAgMEBQYHCAkKCwwNDg+uAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", true),
            ("AQAAAAAAAAD6AAAAEAhftMyfTJyAAAAAAAAAAAAAAAAAAAih5WsjXaR3PA9M", true),
            ("AAABAgMEBQYHCAkKCwwNDg+ukCEMDf0yyQ29NYubggHIVY0sdEUfdyeM+E1LtH1uJgAAAA==", false),
            ("AQAAAAEAACcQAAAAEAABAgMEBQYHCAkKCwwNDg+y", false),
        ] {
            match StoredHash::parse(phc) {
                Ok(stored) => {
                    assert!(parses, "{phc} should not parse");
                    assert!(!stored.verify(b"my password"), "{phc}");
                }
                Err(e) => assert!(!parses, "{phc}: {e}"),
            }
        }
    }

    #[test]
    fn odd_legacy_input_fails_without_a_panic() {
        // Non-zero padding bits in the last character: sha-crypt 0.5 panics
        // on it; the verification must just fail.
        let odd = StoredHash::parse("$5$saltsalt$x17in3caGsBwDU2ZoGPQIZ66Z/CyU.7rqeq9PpRfo6z").unwrap();
        assert!(!odd.verify(LEGACY_PASSWORD.as_bytes()));
        assert!(!odd.verify(b"\xff\xfe"), "non-UTF-8 passwords fail too");
    }

    #[test]
    fn bcrypt_long_passwords_are_not_whole() {
        let bcrypt = StoredHash::parse(LEGACY[7].1).unwrap();
        assert!(bcrypt.verifies_whole(&[b'a'; 72]));
        assert!(!bcrypt.verifies_whole(&[b'a'; 73]));
        let sha = StoredHash::parse(LEGACY[0].1).unwrap();
        assert!(sha.verifies_whole(&[b'a'; 500]));
    }

    #[test]
    fn legacy_costs_are_capped() {
        for (bad, why) in [
            ("$2b$16$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu", "bcrypt cost"),
            ("$6$rounds=20000000$saltsalt$HesR2wpSRtAhqbwNYjqoN1g3hsmpmiDskwrGRbSr4XSs7VmD4BbZeQDBeWx2ae65MfQighTdIAKiA/DtTrU3A/", "rounds"),
            ("$pbkdf2-sha256$i=4000000000,l=32$cGhjc2FsdDEyMzQ1Njc4OQ$M3StOd4cSIFtIdlWilVnzlFxDBWkTKrMGstr+F9ofd0", "PBKDF2"),
            ("pbkdf2_sha256$20000000$djangosalt1$8Ju2XUI2/veOATWsTrKj5+jN0357HYJJlllHDUzmY0U=", "iterations"),
            ("$P$ksaltsaltOCbaLt38M9Aa19y.EtopW/", "phpass"),
            ("AQAAAAH/////AAAAEAABAgMEBQYHCAkKCwwNDg+yWU7rLgUwPZb1Itsmra7cbxw2EFpwpVFIEtP+JIuUEw==", "ASP.NET"),
        ] {
            let e = StoredHash::parse(bad).unwrap_err();
            assert!(matches!(e, HashError::CostTooHigh(_)), "{bad}: {e:?}");
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_unrecognised() {
        for bad in [
            "",
            "plain",
            "$2b$12$abcdefghijklmnopqrstuu",
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ",
            "$scrypt$ln=4,r=8,p=1$c2FsdA$aGFzaA",
            "$5$saltsalt$short",
            "$6$rounds=10$saltsalt$HesR2wpSRtAhqbwNYjqoN1g3hsmpmiDskwrGRbSr4XSs7VmD4BbZeQDBeWx2ae65MfQighTdIAKiA/DtTrU3A/",
            "$apr1$saltsalt$kt1dLoKx.9Du6Ioauf!Yk.",
            "{SHA}oLisiXhAYHTMampGuEeXZHN8Y1Y=extra",
            "{SHA}c2hvcnQ=",
            "pbkdf2_sha256$0$salt$8Ju2XUI2/veOATWsTrKj5+jN0357HYJJlllHDUzmY0U=",
            "pbkdf2_sha256$10000$djangosalt1",
            "$pbkdf2-sha256$i=1000,l=32$cGhjc2FsdDEyMzQ1Njc4OQ",
            "$2b$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5E",
            "$P$6saltsaltOCbaLt38M9Aa19y.EtopW",
            "$P$6saltsalt!CbaLt38M9Aa19y.EtopW/",
            "{SSHA}82tXlg5yQ4YnYZXfT74VbhuQ",
            "{SSHA}not base64!",
            "{CRYPT}$6$short",
        ] {
            let e = StoredHash::parse(bad).unwrap_err().to_string();
            // The message names the problem, never the stored string.
            assert!(bad.len() < 12 || !e.contains(&bad[bad.len() - 8..]), "{bad}: {e}");
        }
    }
}
