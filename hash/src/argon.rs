//! New hashes: argon2id at configured costs, and generated secrets.

use crate::HashError;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroize;

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
    pub fn to_params(self) -> Result<Params, HashError> {
        Params::new(self.m_cost, self.t_cost, self.p_cost, None).map_err(|e| HashError::InvalidParams(e.to_string()))
    }
}

/// Hashes `password` with argon2id and a random 128-bit salt; returns the
/// PHC string.
pub fn hash_password(password: &[u8], params: HashParams) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| HashError::RandomFailed)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::HashFailed(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_params()?);
    argon.hash_password(password, &salt).map(|h| h.to_string()).map_err(|e| HashError::HashFailed(e.to_string()))
}

/// Generates a random secret: 32 bytes, base64url without padding (43
/// characters, safe in a URL, a form body and a Basic header unencoded).
pub fn generate_secret() -> Result<String, HashError> {
    let mut raw = [0u8; 32];
    SystemRandom::new().fill(&mut raw).map_err(|_| HashError::RandomFailed)?;
    let mut out = [0u8; 43];
    let encoded = ropc_core::base64::encode_url_nopad(&raw, &mut out);
    raw.zeroize();
    encoded.ok_or(HashError::RandomFailed)?;
    Ok(out.iter().map(|&b| char::from(b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoredHash;

    const SMALL: HashParams = HashParams { m_cost: 64, t_cost: 1, p_cost: 1 };

    #[test]
    fn hash_then_verify() {
        let phc = hash_password(b"correct horse", SMALL).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        let stored = StoredHash::parse(&phc).unwrap();
        assert!(stored.verify(b"correct horse"));
        assert!(!stored.verify(b"correct horsE"));
        let mut memory = crate::HashMemory::huge_pages();
        assert!(stored.verify_with_memory(b"correct horse", &mut memory));
        assert!(!stored.verify_with_memory(b"", &mut memory));
        assert!(stored.is_current(&SMALL));
        assert!(!stored.is_current(&HashParams::default()));
        assert!(!format!("{stored:?}").contains(&phc[30..]));
    }

    #[test]
    fn bad_params_say_why() {
        let e = HashParams { m_cost: 1, t_cost: 1, p_cost: 1 }.to_params().unwrap_err();
        assert!(e.to_string().starts_with("invalid argon2 parameters: "), "{e}");
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
