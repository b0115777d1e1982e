//! Why a hash could not be read or made.

use std::fmt;

/// A stored hash that cannot be used, or a hash that could not be made. The
/// message says what is wrong, for config and users-file errors; it never
/// holds the hash or the password.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashError {
    /// The string is in none of the formats ropc reads.
    UnsupportedFormat,
    /// A format ropc reads, but not well formed: what is wrong.
    Malformed(String),
    /// A cost above what one login may make a worker spend: which.
    CostTooHigh(String),
    /// Invalid argon2 parameters: why.
    InvalidParams(String),
    /// The system random source failed.
    RandomFailed,
    /// argon2 refused to hash: why.
    HashFailed(String),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::UnsupportedFormat => f.write_str(
                "unsupported hash format (expected argon2 ($argon2id$, $argon2i$, $argon2d$), bcrypt ($2a$, $2b$, \
                 $2y$), PBKDF2 ($pbkdf2-sha256$, $pbkdf2-sha512$, Django pbkdf2_sha256$), SHA-crypt ($5$, $6$, also \
                 as {CRYPT}$6$), phpass ($P$, $H$), ASP.NET Identity v2/v3 (base64), $apr1$, {SHA}, {SSHA}, \
                 {SSHA256} or {SSHA512})",
            ),
            HashError::Malformed(why) | HashError::CostTooHigh(why) | HashError::HashFailed(why) => f.write_str(why),
            HashError::InvalidParams(why) => write!(f, "invalid argon2 parameters: {why}"),
            HashError::RandomFailed => f.write_str("the system random source failed"),
        }
    }
}

impl std::error::Error for HashError {}

/// `HashError::Malformed` from anything printable.
pub(crate) fn malformed(why: impl Into<String>) -> HashError {
    HashError::Malformed(why.into())
}
