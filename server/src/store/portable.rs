//! Token records as they leave the process (Redis, the write-ahead log):
//! with the client id, username and scope names instead of this process's
//! indices, which another instance, or this one after a restart or a config
//! commit, numbers differently.
//!
//! The encoding is text with a fixed-width header, so that a Redis script
//! can read the family and rewrite the retired time in place:
//!
//! ```text
//! bytes  0..16  family id, 16 lowercase hex digits
//!       16      kind: 'a' access, 'r' refresh
//!       17..33  retired_at, 16 hex digits (0: not retired)
//!       33..49  issued_at, 16 hex digits
//!       49..65  expires_at, 16 hex digits
//!       65..69  length of the client id, 4 hex digits; then the client id
//!               then 4 hex digits and the scope (space-separated names)
//!               then the username, to the end (empty: no user)
//! ```

use super::Names;
use ropc_core::{FamilyId, TokenKind, TokenRecord, UserRef};

/// Offset of the retired time in an encoded record.
pub const RETIRED_AT: usize = 17;
/// Width of each hex number in the header.
pub const HEX: usize = 16;

/// A record with names instead of indices.
#[derive(Clone, PartialEq, Eq)]
pub struct Portable {
    /// The grant family.
    pub family: u64,
    /// Access or refresh.
    pub kind: TokenKind,
    /// When it was retired by a rotation (0: not).
    pub retired_at: u64,
    /// When it was issued.
    pub issued_at: u64,
    /// When it stops working.
    pub expires_at: u64,
    /// The client id.
    pub client: String,
    /// The granted scope, space-separated.
    pub scope: String,
    /// The username (none for client credentials).
    pub user: Option<String>,
}

impl std::fmt::Debug for Portable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No secrets in here (the key is elsewhere), but keep the log terse.
        write!(f, "Portable({:?}, family {:x}, client {:?})", self.kind, self.family, self.client)
    }
}

/// The fixed-width numbers of an encoded record.
struct Fields {
    family: u64,
    kind: TokenKind,
    retired_at: u64,
    issued_at: u64,
    expires_at: u64,
}

/// `v` as `digits` lowercase hex digits (its low bits).
fn push_hex(out: &mut Vec<u8>, v: u64, digits: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..digits).rev() {
        out.push(DIGITS[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

/// Lengths are bounded by the config (ids) and the users file (names);
/// longer ones are cut at 0xffff, which decodes as garbage and is refused
/// there.
fn write_encoded(out: &mut Vec<u8>, f: &Fields, client: &str, scope: &str, user: &str) {
    push_hex(out, f.family, 16);
    out.push(match f.kind {
        TokenKind::Access => b'a',
        TokenKind::Refresh => b'r',
    });
    push_hex(out, f.retired_at, 16);
    push_hex(out, f.issued_at, 16);
    push_hex(out, f.expires_at, 16);
    push_hex(out, client.len().min(0xffff) as u64, 4);
    out.extend_from_slice(client.as_bytes());
    push_hex(out, scope.len().min(0xffff) as u64, 4);
    out.extend_from_slice(scope.as_bytes());
    out.extend_from_slice(user.as_bytes());
}

impl Portable {
    /// `record` in names, as `names` numbers them; none if its client or
    /// user is no longer configured.
    pub fn from_record(record: &TokenRecord, names: &dyn Names) -> Option<Self> {
        let client = names.client_id(record.client)?.to_owned();
        let user = if record.user == UserRef::NONE { None } else { Some(names.user_name(record.user)?.to_owned()) };
        Some(Self {
            family: record.family.0,
            kind: record.kind,
            retired_at: record.retired_at,
            issued_at: record.issued_at,
            expires_at: record.expires_at,
            client,
            scope: names.scopes().to_string(record.scope),
            user,
        })
    }

    /// The record as `names` numbers it; none if its client or user is not
    /// configured there. Scopes `names` does not define are dropped.
    pub fn to_record(&self, names: &dyn Names) -> Option<TokenRecord> {
        let client = names.client(&self.client)?;
        let user = match &self.user {
            None => UserRef::NONE,
            Some(name) => names.user(name)?,
        };
        let scope = if self.scope.is_empty() {
            ropc_core::scope::ScopeSet::EMPTY
        } else {
            names.scopes().parse(&self.scope).map(|(set, _)| set).ok()?
        };
        Some(TokenRecord {
            expires_at: self.expires_at,
            issued_at: self.issued_at,
            scope,
            family: FamilyId(self.family),
            user,
            client,
            kind: self.kind,
            retired_at: self.retired_at,
        })
    }

    /// The encoding described in the module documentation.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80 + self.client.len() + self.scope.len());
        let fields = Fields {
            family: self.family,
            kind: self.kind,
            retired_at: self.retired_at,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        };
        write_encoded(&mut out, &fields, &self.client, &self.scope, self.user.as_deref().unwrap_or(""));
        out
    }

    /// [`Portable::from_record`] then [`Portable::encode`], appended to
    /// `out` without building the strings in between (the token log's hot
    /// path); false if the client or user is no longer configured.
    pub fn encode_record(record: &TokenRecord, names: &dyn Names, out: &mut Vec<u8>) -> bool {
        let Some(client) = names.client_id(record.client) else { return false };
        let user = if record.user == UserRef::NONE {
            None
        } else {
            match names.user_name(record.user) {
                Some(name) => Some(name),
                None => return false,
            }
        };
        let mut scope = String::new();
        names.scopes().write(record.scope, &mut scope);
        let fields = Fields {
            family: record.family.0,
            kind: record.kind,
            retired_at: record.retired_at,
            issued_at: record.issued_at,
            expires_at: record.expires_at,
        };
        write_encoded(out, &fields, client, &scope, user.unwrap_or(""));
        true
    }

    #[cfg(test)]
    fn encode_with_format(&self) -> Vec<u8> {
        use std::io::Write;
        let user = self.user.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(80 + self.client.len() + self.scope.len() + user.len());
        let kind = match self.kind {
            TokenKind::Access => 'a',
            TokenKind::Refresh => 'r',
        };
        // Lengths are bounded by the config (ids) and the users file
        // (names); longer ones are cut at 0xffff, which decodes as garbage
        // and is refused there.
        let _ = write!(
            out,
            "{:016x}{kind}{:016x}{:016x}{:016x}{:04x}{}{:04x}{}{user}",
            self.family,
            self.retired_at,
            self.issued_at,
            self.expires_at,
            self.client.len().min(0xffff),
            self.client,
            self.scope.len().min(0xffff),
            self.scope,
        );
        out
    }

    /// Reads [`Portable::encode`]'s output; none if it is malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let hex = |at: usize, width: usize| -> Option<u64> {
            let digits = text.get(at..at + width)?;
            digits.bytes().all(|b| b.is_ascii_hexdigit()).then_some(())?;
            u64::from_str_radix(digits, 16).ok()
        };
        let family = hex(0, HEX)?;
        let kind = match text.as_bytes().get(16)? {
            b'a' => TokenKind::Access,
            b'r' => TokenKind::Refresh,
            _ => return None,
        };
        let retired_at = hex(RETIRED_AT, HEX)?;
        let issued_at = hex(33, HEX)?;
        let expires_at = hex(49, HEX)?;
        let client_len = usize::try_from(hex(65, 4)?).ok()?;
        let client = text.get(69..69 + client_len)?;
        let at = 69 + client_len;
        let scope_len = usize::try_from(hex(at, 4)?).ok()?;
        let scope = text.get(at + 4..at + 4 + scope_len)?;
        let user = text.get(at + 4 + scope_len..)?;
        Some(Self {
            family,
            kind,
            retired_at,
            issued_at,
            expires_at,
            client: client.to_owned(),
            scope: scope.to_owned(),
            user: (!user.is_empty()).then(|| user.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let p = Portable {
            family: 0xdead_beef_0123_4567,
            kind: TokenKind::Refresh,
            retired_at: 0,
            issued_at: 1_700_000_000,
            expires_at: 1_700_086_400,
            client: "legacy|app".into(),
            scope: "read write".into(),
            user: Some("jörg: with|bars".into()),
        };
        let bytes = p.encode();
        assert_eq!(&bytes[RETIRED_AT..RETIRED_AT + HEX], b"0000000000000000");
        assert_eq!(Portable::decode(&bytes), Some(p.clone()));
        assert_eq!(bytes, p.encode_with_format(), "the hand-written hex matches format!'s");
        let cc = Portable { user: None, scope: String::new(), kind: TokenKind::Access, ..p.clone() };
        assert_eq!(Portable::decode(&cc.encode()), Some(cc));
        // A retired time written in place, as the Redis script does.
        let mut retired = bytes.clone();
        retired[RETIRED_AT..RETIRED_AT + HEX].copy_from_slice(b"0000000065536000");
        assert_eq!(Portable::decode(&retired).map(|r| r.retired_at), Some(0x6553_6000));
        for bad in [&b""[..], b"zz", &bytes[..60], &bytes[..75]] {
            assert_eq!(Portable::decode(bad), None);
        }
        let mut wrong_kind = bytes.clone();
        wrong_kind[16] = b'x';
        assert_eq!(Portable::decode(&wrong_kind), None);
        let mut too_long = bytes;
        too_long[65..69].copy_from_slice(b"ffff");
        assert_eq!(Portable::decode(&too_long), None);
    }
}
