//! Stored password hashes: parsing a PHC string once at load time into what
//! the hash workers need, verifying against it with caller-owned memory, and
//! creating new hashes.
//!
//! Only the argon2 family is recognised for now (argon2id, argon2i,
//! argon2d, any parameters).

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// A parsed PHC string, ready to verify against.
#[derive(Clone)]
pub struct StoredHash {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
    phc: String,
}

impl fmt::Debug for StoredHash {
    /// Shows the algorithm and cost, never the salt or the hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StoredHash({}, m={}, t={}, p={})",
            self.algorithm,
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost()
        )
    }
}

impl StoredHash {
    /// Parses a PHC string. The error says what is wrong, for config messages.
    pub fn parse(phc: &str) -> Result<Self, String> {
        let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string ({e})"))?;
        let algorithm = Algorithm::try_from(parsed.algorithm)
            .map_err(|_| format!("unsupported hash algorithm `{}` (argon2id, argon2i or argon2d)", parsed.algorithm))?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|_| format!("unsupported argon2 version {v}"))?,
            None => Version::V0x13,
        };
        let params = Params::try_from(&parsed).map_err(|e| format!("bad argon2 parameters ({e})"))?;
        let salt = parsed.salt.ok_or("the hash has no salt")?;
        let mut salt_buf = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_buf).map_err(|e| format!("bad salt ({e})"))?.to_vec();
        let hash = parsed.hash.ok_or("the hash has no output")?.as_bytes().to_vec();
        Ok(Self { algorithm, version, params, salt, hash, phc: phc.to_owned() })
    }

    /// The PHC string.
    pub fn as_phc(&self) -> &str {
        &self.phc
    }

    /// Memory blocks one verification needs.
    pub fn block_count(&self) -> usize {
        self.params.block_count()
    }

    /// Whether this is argon2id with exactly `params`' costs.
    pub fn is_current(&self, params: &Params) -> bool {
        self.algorithm == Algorithm::Argon2id
            && self.version == Version::V0x13
            && self.params.m_cost() == params.m_cost()
            && self.params.t_cost() == params.t_cost()
            && self.params.p_cost() == params.p_cost()
    }

    /// Verifies `password`, using (and growing when needed) `memory`, so that
    /// a worker reuses one allocation across hashes. Compares in constant
    /// time.
    pub fn verify_with_memory(&self, password: &[u8], memory: &mut Vec<Block>) -> bool {
        let blocks = self.params.block_count();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let mut out = [0u8; 64];
        let Some(out) = out.get_mut(..self.hash.len()) else {
            return false;
        };
        let argon = Argon2::new(self.algorithm, self.version, self.params.clone());
        let ok = argon.hash_password_into_with_memory(password, &self.salt, out, &mut memory[..blocks]).is_ok()
            && bool::from(out.ct_eq(&self.hash));
        out.zeroize();
        ok
    }

    /// Verifies `password` with freshly allocated memory.
    pub fn verify(&self, password: &[u8]) -> bool {
        self.verify_with_memory(password, &mut Vec::new())
    }
}

/// argon2 cost parameters for new hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for HashParams {
    /// OWASP's recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self { m_cost: Params::DEFAULT_M_COST, t_cost: Params::DEFAULT_T_COST, p_cost: Params::DEFAULT_P_COST }
    }
}

impl HashParams {
    /// The argon2 parameters, or why they are invalid.
    pub fn to_params(self) -> Result<Params, String> {
        Params::new(self.m_cost, self.t_cost, self.p_cost, None).map_err(|e| format!("invalid argon2 parameters: {e}"))
    }
}

/// Hashes `password` with argon2id and a random 128-bit salt; returns the
/// PHC string.
pub fn hash_password(password: &[u8], params: HashParams) -> Result<String, String> {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| "the system random source failed".to_owned())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_params()?);
    argon.hash_password(password, &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Generates a random secret: 32 bytes, base64url without padding (43
/// characters, safe in a URL, a form body and a Basic header unencoded).
pub fn generate_secret() -> Result<String, String> {
    let mut raw = [0u8; 32];
    SystemRandom::new().fill(&mut raw).map_err(|_| "the system random source failed".to_owned())?;
    let mut out = [0u8; 43];
    ropc_core::base64::encode_url_nopad(&raw, &mut out).ok_or("encoding failed")?;
    raw.zeroize();
    Ok(out.iter().map(|&b| char::from(b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: HashParams = HashParams { m_cost: 64, t_cost: 1, p_cost: 1 };

    #[test]
    fn hash_then_verify() {
        let phc = hash_password(b"correct horse", SMALL).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        let stored = StoredHash::parse(&phc).unwrap();
        assert!(stored.verify(b"correct horse"));
        assert!(!stored.verify(b"correct horsE"));
        let mut memory = Vec::new();
        assert!(stored.verify_with_memory(b"correct horse", &mut memory));
        assert!(!stored.verify_with_memory(b"", &mut memory));
        assert!(stored.is_current(&SMALL.to_params().unwrap()));
        assert!(!stored.is_current(&HashParams::default().to_params().unwrap()));
        assert!(!format!("{stored:?}").contains(&phc[30..]));
    }

    #[test]
    fn reference_vector() {
        // Generated by the reference `argon2` CLI (Debian package argon2, 2026-11-25):
        // echo -n password | argon2 somesalt -id -t 2 -m 6 -p 1 -e
        let phc = "$argon2id$v=19$m=64,t=2,p=1$c29tZXNhbHQ$FqGkmHNGCd0BRW2kBt6fPZ2pPmyGwwChL8FGUhTOSSI";
        let stored = StoredHash::parse(phc).unwrap();
        assert!(stored.verify(b"password"));
        assert!(!stored.verify(b"passwore"));
    }

    #[test]
    fn rejects_unrecognised() {
        for bad in [
            "",
            "plain",
            "$2b$12$abcdefghijklmnopqrstuu",
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ",
            "$scrypt$ln=4,r=8,p=1$c2FsdA$aGFzaA",
        ] {
            assert!(StoredHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_distinct_and_url_safe() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
