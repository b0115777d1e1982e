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
//!       16      kind: 'a' access, 'r' refresh; 'A', 'R': the same, with an owner (below)
//!       17..33  retired_at, 16 hex digits (0: not retired)
//!       33..49  issued_at, 16 hex digits
//!       49..65  expires_at, 16 hex digits
//!       65..69  length of the client id, 4 hex digits; then the client id
//!               then 4 hex digits and the scope (space-separated names)
//!       'a', 'r': then the username, to the end (empty: no user)
//!       'A', 'R': then 4 hex digits and the credential manager's name,
//!               4 hex digits and the username, 4 hex digits and the
//!               subject (empty: the username), and the hash's fingerprint
//!               (32 hex digits, or nothing)
//! ```
//!
//! A default-manager user's record is written as `a`/`r`, as before
//! credential managers were named, so that instances of either version read
//! each other's records during a rolling upgrade.

use super::{Names, Owner};
use ropc_core::{FamilyId, TokenKind, TokenRecord, UserRef};
use std::sync::Arc;

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
    /// Who it belongs to (none for client credentials).
    pub owner: Option<Owner>,
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

/// `s` after its length in 4 hex digits. Lengths are bounded by the config
/// (ids, names) and the credential managers (usernames, subjects); longer
/// ones are cut at 0xffff, which decodes as garbage and is refused there.
fn push_str(out: &mut Vec<u8>, s: &str) {
    push_hex(out, s.len().min(0xffff) as u64, 4);
    out.extend_from_slice(s.as_bytes());
}

fn write_encoded(out: &mut Vec<u8>, f: &Fields, client: &str, scope: &str, owner: Option<&Owner>) {
    push_hex(out, f.family, 16);
    let plain = owner.is_none_or(|o| o.manager.is_none() && o.subject.is_none() && o.hash.is_none());
    out.push(match (f.kind, plain) {
        (TokenKind::Access, true) => b'a',
        (TokenKind::Refresh, true) => b'r',
        (TokenKind::Access, false) => b'A',
        (TokenKind::Refresh, false) => b'R',
    });
    push_hex(out, f.retired_at, 16);
    push_hex(out, f.issued_at, 16);
    push_hex(out, f.expires_at, 16);
    push_str(out, client);
    push_str(out, scope);
    match owner {
        None => {}
        Some(o) if plain => out.extend_from_slice(o.username.as_bytes()),
        Some(o) => {
            push_str(out, o.manager.as_deref().unwrap_or(""));
            push_str(out, &o.username);
            push_str(out, o.subject.as_deref().unwrap_or(""));
            if let Some(hash) = o.hash {
                for b in hash {
                    push_hex(out, u64::from(b), 2);
                }
            }
        }
    }
}

impl Portable {
    /// `record` in names, as `names` numbers them; none if its client or
    /// user is no longer configured.
    pub fn from_record(record: &TokenRecord, names: &dyn Names) -> Option<Self> {
        let client = names.client_id(record.client)?.to_owned();
        let owner = if record.user == UserRef::NONE { None } else { Some(names.owner(record.user)?) };
        Some(Self {
            family: record.family.0,
            kind: record.kind,
            retired_at: record.retired_at,
            issued_at: record.issued_at,
            expires_at: record.expires_at,
            client,
            scope: names.scopes().to_string(record.scope),
            owner,
        })
    }

    /// The record as `names` numbers it; none if its client or user is not
    /// configured there. Scopes `names` does not define are dropped.
    pub fn to_record(&self, names: &dyn Names) -> Option<TokenRecord> {
        let client = names.client(&self.client)?;
        let user = match &self.owner {
            None => UserRef::NONE,
            Some(owner) => names.user(owner)?,
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
        let mut out = Vec::with_capacity(96 + self.client.len() + self.scope.len());
        let fields = Fields {
            family: self.family,
            kind: self.kind,
            retired_at: self.retired_at,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        };
        write_encoded(&mut out, &fields, &self.client, &self.scope, self.owner.as_ref());
        out
    }

    /// [`Portable::from_record`] then [`Portable::encode`], appended to
    /// `out` without building the strings in between (the token log's hot
    /// path); false if the client or user is no longer configured.
    pub fn encode_record(record: &TokenRecord, names: &dyn Names, out: &mut Vec<u8>) -> bool {
        let Some(client) = names.client_id(record.client) else { return false };
        let owner = if record.user == UserRef::NONE {
            None
        } else {
            match names.owner(record.user) {
                Some(owner) => Some(owner),
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
        write_encoded(out, &fields, client, &scope, owner.as_ref());
        true
    }

    /// Reads [`Portable::encode`]'s output; none if it is malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let hex = |at: usize, width: usize| -> Option<u64> {
            let digits = text.get(at..at + width)?;
            digits.bytes().all(|b| b.is_ascii_hexdigit()).then_some(())?;
            u64::from_str_radix(digits, 16).ok()
        };
        // A length-prefixed string at `at`: it and where the next begins.
        let string = |at: usize| -> Option<(&str, usize)> {
            let len = usize::try_from(hex(at, 4)?).ok()?;
            Some((text.get(at + 4..at + 4 + len)?, at + 4 + len))
        };
        let family = hex(0, HEX)?;
        let (kind, with_owner) = match text.as_bytes().get(16)? {
            b'a' => (TokenKind::Access, false),
            b'r' => (TokenKind::Refresh, false),
            b'A' => (TokenKind::Access, true),
            b'R' => (TokenKind::Refresh, true),
            _ => return None,
        };
        let retired_at = hex(RETIRED_AT, HEX)?;
        let issued_at = hex(33, HEX)?;
        let expires_at = hex(49, HEX)?;
        let (client, at) = string(65)?;
        let (scope, at) = string(at)?;
        let owner = if with_owner {
            let (manager, at) = string(at)?;
            let (username, at) = string(at)?;
            let (subject, at) = string(at)?;
            let hash = match text.get(at..)? {
                "" => None,
                h if h.len() == 32 => {
                    let mut out = [0u8; 16];
                    for (i, b) in out.iter_mut().enumerate() {
                        *b = u8::try_from(hex(at + 2 * i, 2)?).ok()?;
                    }
                    Some(out)
                }
                _ => return None,
            };
            Some(Owner {
                manager: (!manager.is_empty()).then(|| Arc::from(manager)),
                username: Arc::from(username),
                subject: (!subject.is_empty()).then(|| Arc::from(subject)),
                hash,
            })
        } else {
            let user = text.get(at..)?;
            (!user.is_empty()).then(|| Owner::named(user))
        };
        Some(Self {
            family,
            kind,
            retired_at,
            issued_at,
            expires_at,
            client: client.to_owned(),
            scope: scope.to_owned(),
            owner,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v1 encoding written with `format!`, as a second opinion on the
    /// hand-written hex.
    fn encode_with_format(p: &Portable) -> Vec<u8> {
        use std::io::Write;
        let user = p.owner.as_ref().map_or("", |o| &*o.username);
        let mut out = Vec::new();
        let kind = match p.kind {
            TokenKind::Access => 'a',
            TokenKind::Refresh => 'r',
        };
        let _ = write!(
            out,
            "{:016x}{kind}{:016x}{:016x}{:016x}{:04x}{}{:04x}{}{user}",
            p.family,
            p.retired_at,
            p.issued_at,
            p.expires_at,
            p.client.len().min(0xffff),
            p.client,
            p.scope.len().min(0xffff),
            p.scope,
        );
        out
    }

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
            owner: Some(Owner::named("jörg: with|bars")),
        };
        let bytes = p.encode();
        assert_eq!(&bytes[RETIRED_AT..RETIRED_AT + HEX], b"0000000000000000");
        assert_eq!(Portable::decode(&bytes), Some(p.clone()));
        assert_eq!(bytes, encode_with_format(&p), "the hand-written hex matches format!'s");
        let cc = Portable { owner: None, scope: String::new(), kind: TokenKind::Access, ..p.clone() };
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

    /// A named manager's user travels with its manager, subject and hash
    /// fingerprint, as `A`/`R` records; the Redis script's offsets hold.
    #[test]
    fn an_owner_of_a_named_manager_round_trips() {
        let owner = Owner {
            manager: Some(Arc::from("legacy_db")),
            username: Arc::from("alice"),
            subject: Some(Arc::from("17")),
            hash: Some([0xab; 16]),
        };
        let p = Portable {
            family: 7,
            kind: TokenKind::Refresh,
            retired_at: 0,
            issued_at: 100,
            expires_at: 200,
            client: "shop".into(),
            scope: "read".into(),
            owner: Some(owner.clone()),
        };
        let bytes = p.encode();
        assert_eq!(bytes[16], b'R');
        assert_eq!(&bytes[RETIRED_AT..RETIRED_AT + HEX], b"0000000000000000");
        assert_eq!(Portable::decode(&bytes), Some(p.clone()));
        let without_hash = Portable { owner: Some(Owner { hash: None, ..owner }), ..p };
        assert_eq!(Portable::decode(&without_hash.encode()), Some(without_hash.clone()));
        let mut bad = without_hash.encode();
        bad.extend_from_slice(b"abc");
        assert_eq!(Portable::decode(&bad), None, "a fingerprint is 32 hex digits or nothing");
    }
}
