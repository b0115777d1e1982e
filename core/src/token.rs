//! Tokens: minting through the platform's [`SecureRandom`], storage keys
//! through its [`TokenDigest`], and the small fixed-size [`TokenRecord`] a
//! store keeps for each token. The core holds no crypto of its own; the
//! runtime supplies both traits in a [`Provider`], as rustls's
//! `CryptoProvider` does.

use crate::base64;
use crate::client::ClientIndex;
use crate::scope::ScopeSet;
use core::fmt;
use zeroize::Zeroize;

/// Random bytes per token: 256 bits.
pub const TOKEN_BYTES: usize = 32;
/// Length of a token on the wire: base64url without padding.
pub const TOKEN_LEN: usize = base64::encoded_len_nopad(TOKEN_BYTES);

/// The random source failed; the request gets `server_error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomError;

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the random source failed")
    }
}

/// A cryptographically secure random source, supplied by the platform.
pub trait SecureRandom: Send + Sync + fmt::Debug {
    /// Fills `dest` with random bytes.
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError>;
}

/// The digest that turns a token into its storage key. Stores are keyed by
/// this digest, never by the token, so a leak of the store leaks no usable
/// token. Tokens carry 256 bits of entropy, so an unkeyed SHA-256 suffices.
pub trait TokenDigest: Send + Sync + fmt::Debug {
    /// The storage key of `token` (its wire form).
    fn digest(&self, token: &[u8]) -> TokenKey;
}

/// The platform pieces the engine needs, bundled; change one field at a time.
#[derive(Clone, Copy, Debug)]
pub struct Provider<'p> {
    /// Randomness for tokens and grant families.
    pub random: &'p dyn SecureRandom,
    /// The token-to-key digest.
    pub digest: &'p dyn TokenDigest,
}

/// The storage key of a token: a 128-bit digest of it (for example SHA-256
/// truncated to 16 bytes). Tokens carry 256 random bits, so 128 bits of
/// their digest keep look-ups unambiguous (a collision among a billion live
/// tokens has odds near 2^-68) and a forged token still has to match a
/// stored key by preimage. 16 bytes instead of 32 keep store records small.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey(pub [u8; 16]);

impl TokenKey {
    /// The length of a key in bytes.
    pub const LEN: usize = 16;
}

impl fmt::Debug for TokenKey {
    /// Shows only a short prefix: enough to correlate, useless to an attacker.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenKey({:02x}{:02x}{:02x}{:02x}..)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// What a token is bound to (sender-constrained tokens): nothing, the
/// SHA-256 thumbprint of a DPoP key (RFC 9449 §6, `cnf.jkt`, RFC 7638), or
/// of a TLS client certificate (RFC 8705 §3, `cnf.x5t#S256`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Binding {
    /// A bearer token.
    #[default]
    None,
    /// Bound to the DPoP key with this JWK SHA-256 thumbprint.
    Dpop([u8; 32]),
    /// Bound to the TLS client certificate with this SHA-256 thumbprint.
    Certificate([u8; 32]),
}

/// Bytes a binding adds to an opaque token: `.`, a tag, the thumbprint.
const BINDING_LEN: usize = 2 + base64::encoded_len_nopad(32);
/// The longest opaque token: a bound one.
pub const MAX_TOKEN_LEN: usize = TOKEN_LEN + BINDING_LEN;

impl Binding {
    /// The thumbprint, if bound.
    pub const fn thumbprint(&self) -> Option<&[u8; 32]> {
        match self {
            Binding::None => None,
            Binding::Dpop(t) | Binding::Certificate(t) => Some(t),
        }
    }

    /// The `cnf` member naming the thumbprint: `jkt` or `x5t#S256`.
    pub const fn confirmation_member(&self) -> Option<&'static str> {
        match self {
            Binding::None => None,
            Binding::Dpop(_) => Some("jkt"),
            Binding::Certificate(_) => Some("x5t#S256"),
        }
    }

    const fn tag(&self) -> u8 {
        match self {
            Binding::None => 0,
            Binding::Dpop(_) => b'j',
            Binding::Certificate(_) => b'x',
        }
    }
}

/// A freshly minted token. Zeroed on drop; `Debug` shows nothing.
///
/// A bound token carries its binding in its own text, after the random part:
/// `RANDOM "." TAG THUMBPRINT`, the thumbprint in base64url. The store key is
/// the digest of the whole text, so the binding cannot be stripped or
/// swapped without the token becoming unknown, and no store has to keep it:
/// a refresh compares it with the request's proof before any look-up, and
/// introspection reads `cnf` from it.
pub struct Token {
    text: [u8; MAX_TOKEN_LEN],
    len: usize,
}

impl Token {
    /// Mints a bearer token with 256 random bits and returns it with its key.
    pub fn mint(provider: &Provider<'_>) -> Result<(Token, TokenKey), RandomError> {
        Self::mint_bound(provider, Binding::None)
    }

    /// Mints a token bound to `binding` (see [`Token`]).
    pub fn mint_bound(provider: &Provider<'_>, binding: Binding) -> Result<(Token, TokenKey), RandomError> {
        let mut raw = [0u8; TOKEN_BYTES];
        provider.random.fill(&mut raw)?;
        let mut token = Token { text: [0; MAX_TOKEN_LEN], len: TOKEN_LEN };
        let encoded = base64::encode_url_nopad(&raw, &mut token.text[..TOKEN_LEN]);
        raw.zeroize();
        encoded.ok_or(RandomError)?;
        if let Some(thumbprint) = binding.thumbprint() {
            token.text[TOKEN_LEN] = b'.';
            token.text[TOKEN_LEN + 1] = binding.tag();
            base64::encode_url_nopad(thumbprint, &mut token.text[TOKEN_LEN + 2..]).ok_or(RandomError)?;
            token.len = MAX_TOKEN_LEN;
        }
        let key = provider.digest.digest(token.as_bytes());
        Ok((token, key))
    }

    /// The token as sent to the client.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text[..self.len]
    }

    /// The token as a string.
    pub fn as_str(&self) -> &str {
        // The base64url alphabet is ASCII, so this never fails.
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

fn is_b64url(s: &[u8]) -> bool {
    s.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a presented token could be an opaque token ropc minted, bound
/// or not. A cheap filter before any digest or store look-up.
pub fn is_well_formed(token: &str) -> bool {
    binding_of(token).is_some()
}

/// The binding an opaque token carries (see [`Token`]); `None` when the
/// text is not one ropc could have minted.
pub fn binding_of(token: &str) -> Option<Binding> {
    let t = token.as_bytes();
    if t.len() == TOKEN_LEN {
        return is_b64url(t).then_some(Binding::None);
    }
    if t.len() != MAX_TOKEN_LEN || !is_b64url(&t[..TOKEN_LEN]) || t[TOKEN_LEN] != b'.' {
        return None;
    }
    let mut thumbprint = [0u8; 32];
    let decoded = base64::decode_url_nopad(&t[TOKEN_LEN + 2..], &mut thumbprint)?;
    if decoded != 32 {
        return None;
    }
    match t[TOKEN_LEN + 1] {
        b'j' => Some(Binding::Dpop(thumbprint)),
        b'x' => Some(Binding::Certificate(thumbprint)),
        _ => None,
    }
}

/// Longest JWT access token ropc could have issued (header, claims with a
/// long username and scope list, signature).
pub const MAX_JWT_LEN: usize = 4096;

/// Whether a presented access token could be one ropc issued: opaque, or a
/// JWT (three base64url segments). A cheap filter before any look-up.
pub fn is_plausible_access_token(token: &str) -> bool {
    if is_well_formed(token) {
        return true;
    }
    token.len() <= MAX_JWT_LEN
        && token.split('.').count() == 3
        && token
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Which kind of token a record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A bearer access token.
    Access,
    /// A refresh token.
    Refresh,
}

/// The runtime's reference to a user (for example an index into an interned
/// table of usernames). [`UserRef::NONE`] marks client-credentials tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserRef(pub u32);

impl UserRef {
    /// No user: the token was issued to the client itself.
    pub const NONE: UserRef = UserRef(u32::MAX);
}

/// The login a token descends from. Every access and refresh token of one
/// password grant, including those from later refreshes, share it, so that
/// revoking a family reaches them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FamilyId(pub u64);

/// What a store keeps for one token, under its [`TokenKey`]. Small and fixed
/// in size; no strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// When the token stops working, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// When it was issued, in seconds since the Unix epoch.
    pub issued_at: u64,
    /// The granted scope.
    pub scope: ScopeSet,
    /// The grant family.
    pub family: FamilyId,
    /// The resource owner, or [`UserRef::NONE`].
    pub user: UserRef,
    /// The client the token was issued to.
    pub client: ClientIndex,
    /// Access or refresh.
    pub kind: TokenKind,
    /// When a rotated refresh token was replaced (0: it was not). A retired
    /// refresh token is kept until it expires so that a replay of it is
    /// recognised as theft.
    pub retired_at: u64,
}

impl TokenRecord {
    /// Whether the token still works at `now`: it stops working exactly at
    /// `expires_at`.
    pub const fn is_active(&self, now: u64) -> bool {
        now < self.expires_at
    }

    /// Whether this refresh token was rotated away.
    pub const fn is_retired(&self) -> bool {
        self.retired_at != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Counter(core::sync::atomic::AtomicU8);
    impl SecureRandom for Counter {
        fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
            let start = self.0.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            dest.iter_mut().enumerate().for_each(|(i, b)| *b = start.wrapping_add(i as u8));
            Ok(())
        }
    }
    #[derive(Debug)]
    struct FirstBytes;
    impl TokenDigest for FirstBytes {
        fn digest(&self, token: &[u8]) -> TokenKey {
            let mut k = [0u8; 16];
            k.copy_from_slice(&token[..16]);
            TokenKey(k)
        }
    }

    #[test]
    fn mint_shape() {
        let rng = Counter(0.into());
        let provider = Provider { random: &rng, digest: &FirstBytes };
        let (a, ka) = Token::mint(&provider).unwrap();
        let (b, kb) = Token::mint(&provider).unwrap();
        assert_eq!(a.as_str().len(), 43);
        assert!(is_well_formed(a.as_str()));
        assert_ne!(a.as_str(), b.as_str());
        assert_ne!(ka, kb);
        assert_eq!(alloc::format!("{a:?}"), "Token(<redacted>)");
        assert!(!is_well_formed("short"));
        assert!(!is_well_formed(&"+".repeat(43)));
    }

    #[test]
    fn expiry_is_exact() {
        let r = TokenRecord {
            expires_at: 100,
            issued_at: 0,
            scope: ScopeSet::EMPTY,
            family: FamilyId(1),
            user: UserRef::NONE,
            client: ClientIndex(0),
            kind: TokenKind::Access,
            retired_at: 0,
        };
        assert!(r.is_active(99));
        assert!(!r.is_active(100));
    }
}
