//! Scopes, RFC 6749 §3.3: the grammar, a registry that maps the configured
//! scope names to bits, and the rules for what a request is granted.
//!
//! ```text
//! scope       = scope-token *( SP scope-token )
//! scope-token = 1*NQCHAR
//! NQCHAR      = %x21 / %x23-5B / %x5D-7E
//! ```

use crate::error::{ErrorCode, OAuthError, Reason};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Most scopes one registry holds: a [`ScopeSet`] is one 64-bit word, which
/// keeps every token record small and fixed in size.
pub const MAX_SCOPES: usize = 64;

/// A set of registered scopes, one bit per [`ScopeRegistry`] entry.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u64);

impl ScopeSet {
    /// The empty set.
    pub const EMPTY: ScopeSet = ScopeSet(0);

    /// A set from its raw bits.
    pub const fn from_bits(bits: u64) -> Self {
        ScopeSet(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The set holding only scope `index`, or the empty set past [`MAX_SCOPES`].
    pub const fn single(index: usize) -> Self {
        if index < MAX_SCOPES {
            ScopeSet(1 << index)
        } else {
            ScopeSet(0)
        }
    }

    /// Whether the set holds scope `index`.
    pub const fn contains(self, index: usize) -> bool {
        index < MAX_SCOPES && self.0 & (1 << index) != 0
    }

    /// Both sets together.
    pub const fn union(self, other: Self) -> Self {
        ScopeSet(self.0 | other.0)
    }

    /// What both sets hold.
    pub const fn intersection(self, other: Self) -> Self {
        ScopeSet(self.0 & other.0)
    }

    /// Whether every scope of `self` is in `other`.
    pub const fn is_subset(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The indices in the set, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        // One step per member, not per possible scope.
        let mut bits = self.0;
        core::iter::from_fn(move || {
            let index = bits.trailing_zeros() as usize;
            bits &= bits.wrapping_sub(1);
            (index < MAX_SCOPES).then_some(index)
        })
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeSet({:#x})", self.0)
    }
}

/// Whether `token` is a valid §3.3 scope-token.
pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// Why a scope name could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// Not a §3.3 scope-token (empty, or a space, `"`, `\` or non-ASCII).
    Invalid,
    /// Registered twice.
    Duplicate,
    /// More than [`MAX_SCOPES`] scopes.
    TooMany,
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScopeError::Invalid => "a scope name must be 1 or more printable ASCII characters other than space, '\"' and '\\' (RFC 6749 §3.3)",
            ScopeError::Duplicate => "the scope is defined twice",
            ScopeError::TooMany => "at most 64 scopes can be defined",
        })
    }
}

/// The configured scopes, in configuration order.
///
/// A scope's index is its bit in every [`ScopeSet`] already stored in token
/// records, so a runtime that reloads its configuration keeps each index
/// for the same name and leaves a *retired* slot (an empty name) where a
/// scope was removed: see [`ScopeRegistry::retire_slot`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeRegistry {
    /// By index; an empty name is a retired slot (valid names are never
    /// empty).
    names: Vec<String>,
}

const INVALID_SCOPE: OAuthError = OAuthError::new(
    ErrorCode::InvalidScope,
    Reason::ScopeRefused,
    "The requested scope is invalid, unknown, or malformed.",
);

impl ScopeRegistry {
    /// An empty registry.
    pub const fn new() -> Self {
        Self { names: Vec::new() }
    }

    /// Registers `name` and returns its index.
    pub fn register(&mut self, name: &str) -> Result<usize, ScopeError> {
        if !is_scope_token(name) {
            return Err(ScopeError::Invalid);
        }
        if self.index_of(name).is_some() {
            return Err(ScopeError::Duplicate);
        }
        if self.names.len() >= MAX_SCOPES {
            return Err(ScopeError::TooMany);
        }
        self.names.push(name.into());
        Ok(self.names.len() - 1)
    }

    /// Takes the next index without a name: a scope that was removed while
    /// records granted it may still exist. No name finds it, no grant
    /// includes it, and [`ScopeRegistry::write`] leaves it out.
    pub fn retire_slot(&mut self) -> Result<usize, ScopeError> {
        if self.names.len() >= MAX_SCOPES {
            return Err(ScopeError::TooMany);
        }
        self.names.push(String::new());
        Ok(self.names.len() - 1)
    }

    /// Slots taken, retired ones included: the next registered scope's index.
    pub fn slots(&self) -> usize {
        self.names.len()
    }

    /// The index of `name`, if it is registered.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return None;
        }
        self.names.iter().position(|n| n == name)
    }

    /// The name at `index` (none for a retired slot).
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str).filter(|n| !n.is_empty())
    }

    /// Every registered name, in index order (retired slots left out).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str).filter(|n| !n.is_empty())
    }

    /// The set of every registered scope.
    pub fn all(&self) -> ScopeSet {
        ScopeSet(self.names.iter().enumerate().filter(|(_, n)| !n.is_empty()).fold(0, |acc, (i, _)| acc | (1 << i)))
    }

    /// Parses a §3.3 scope string. Returns the registered scopes it names
    /// and whether it also named scopes this registry does not know.
    /// Malformed strings (empty tokens from doubled or edge spaces, or
    /// characters outside NQCHAR) are `invalid_scope`.
    pub fn parse(&self, scope: &str) -> Result<(ScopeSet, bool), OAuthError> {
        let mut set = ScopeSet::EMPTY;
        let mut unknown = false;
        for token in scope.split(' ') {
            if !is_scope_token(token) {
                return Err(INVALID_SCOPE);
            }
            match self.index_of(token) {
                Some(i) => set = set.union(ScopeSet::single(i)),
                None => unknown = true,
            }
        }
        Ok((set, unknown))
    }

    /// The scope granted to a new grant (password, client credentials).
    ///
    /// With no `scope` parameter the client's default scopes apply. With one,
    /// the request is narrowed to what the client may have: scopes it may not
    /// have, or that nobody defined, are dropped (RFC 6749 §3.3 lets the
    /// server grant less than asked, and the response's `scope` says so). If
    /// nothing asked for can be granted, the request fails with
    /// `invalid_scope`.
    pub fn grant(&self, requested: Option<&str>, allowed: ScopeSet, default: ScopeSet) -> Result<ScopeSet, OAuthError> {
        let Some(requested) = requested else {
            return Ok(default.intersection(allowed));
        };
        let (set, _) = self.parse(requested)?;
        let granted = set.intersection(allowed);
        if granted.is_empty() {
            return Err(INVALID_SCOPE);
        }
        Ok(granted)
    }

    /// The scope of a refresh grant, RFC 6749 §6: the original scope, or a
    /// subset of it when the request names one. Naming any scope outside the
    /// original grant is `invalid_scope`: a refresh may narrow, never widen.
    /// `allowed` is what the client may have now, in case its configuration
    /// shrank since the original grant.
    pub fn refresh(
        &self,
        requested: Option<&str>,
        original: ScopeSet,
        allowed: ScopeSet,
    ) -> Result<ScopeSet, OAuthError> {
        let current = original.intersection(allowed);
        let Some(requested) = requested else {
            return Ok(current);
        };
        let (set, unknown) = self.parse(requested)?;
        if unknown || !set.is_subset(original) {
            return Err(INVALID_SCOPE);
        }
        Ok(set.intersection(allowed))
    }

    /// Appends the space-delimited names of `set` to `out`, in registry order.
    pub fn write(&self, set: ScopeSet, out: &mut String) {
        out.reserve(set.iter().filter_map(|i| self.name(i)).map(|name| name.len() + 1).sum());
        let mut first = true;
        for i in set.iter() {
            if let Some(name) = self.name(i) {
                if !first {
                    out.push(' ');
                }
                first = false;
                out.push_str(name);
            }
        }
    }

    /// The space-delimited names of `set`.
    pub fn to_string(&self, set: ScopeSet) -> String {
        let mut s = String::new();
        self.write(set, &mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_slots_keep_later_indices_and_are_never_named() {
        let mut r = ScopeRegistry::new();
        r.register("read").unwrap();
        assert_eq!(r.retire_slot(), Ok(1));
        assert_eq!(r.register("write"), Ok(2));
        assert_eq!(r.index_of(""), None);
        assert_eq!(r.name(1), None);
        assert_eq!(r.names().collect::<Vec<_>>(), ["read", "write"]);
        assert_eq!(r.all(), ScopeSet::from_bits(0b101));
        assert_eq!(r.slots(), 3);
        // A stored set that still holds the retired bit prints without it...
        assert_eq!(r.to_string(ScopeSet::from_bits(0b111)), "read write");
        // ...and a refresh drops it, since no client is allowed it.
        assert_eq!(r.refresh(None, ScopeSet::from_bits(0b111), r.all()), Ok(ScopeSet::from_bits(0b101)));
        assert_eq!(r.parse("read write"), Ok((ScopeSet::from_bits(0b101), false)));
        for _ in 3..MAX_SCOPES {
            r.retire_slot().unwrap();
        }
        assert_eq!(r.retire_slot(), Err(ScopeError::TooMany));
    }

    fn registry() -> ScopeRegistry {
        let mut r = ScopeRegistry::new();
        for name in ["read", "write", "admin", "openid"] {
            r.register(name).unwrap();
        }
        r
    }

    fn set(r: &ScopeRegistry, names: &str) -> ScopeSet {
        r.parse(names).unwrap().0
    }

    #[test]
    fn grammar() {
        for ok in ["read", "a", "urn:x:y", "!#[]~", "read/write"] {
            assert!(is_scope_token(ok), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a\\b", "é", "a\tb", "\u{7f}"] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
        let r = registry();
        for bad in ["read  write", " read", "read ", "", "re\"ad"] {
            assert_eq!(r.parse(bad).unwrap_err().code, ErrorCode::InvalidScope, "{bad:?}");
        }
    }

    #[test]
    fn register_rules() {
        let mut r = registry();
        assert_eq!(r.register("read"), Err(ScopeError::Duplicate));
        assert_eq!(r.register("no space"), Err(ScopeError::Invalid));
        for i in 4..MAX_SCOPES {
            r.register(&alloc::format!("s{i}")).unwrap();
        }
        assert_eq!(r.register("one-too-many"), Err(ScopeError::TooMany));
        assert_eq!(r.all(), ScopeSet::from_bits(u64::MAX));
    }

    #[test]
    fn grant_table() {
        let r = registry();
        let allowed = set(&r, "read write");
        let default = set(&r, "read");
        // (requested, granted or None for invalid_scope)
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (None, Some("read")),
            (Some("write"), Some("write")),
            (Some("write read"), Some("read write")),
            (Some("read admin"), Some("read")),
            (Some("read nosuch"), Some("read")),
            (Some("admin"), None),
            (Some("nosuch"), None),
            (Some("read  write"), None),
        ];
        for &(requested, expected) in cases {
            let got = r.grant(requested, allowed, default).ok().map(|s| r.to_string(s));
            assert_eq!(got.as_deref(), expected, "requested {requested:?}");
        }
        // Defaults are clipped to what the client may have.
        assert_eq!(r.grant(None, set(&r, "write"), set(&r, "read write")).unwrap(), set(&r, "write"));
    }

    #[test]
    fn refresh_table() {
        let r = registry();
        let original = set(&r, "read write");
        let allowed = set(&r, "read write admin");
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (None, Some("read write")),
            (Some("read"), Some("read")),
            (Some("write read"), Some("read write")),
            (Some("read admin"), None),
            (Some("nosuch"), None),
        ];
        for &(requested, expected) in cases {
            let got = r.refresh(requested, original, allowed).ok().map(|s| r.to_string(s));
            assert_eq!(got.as_deref(), expected, "requested {requested:?}");
        }
        // The client lost `write` since the original grant.
        assert_eq!(r.to_string(r.refresh(None, original, set(&r, "read")).unwrap()), "read");
    }
}
