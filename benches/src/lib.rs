//! Shared fixtures for the ropc criterion benches.

use ropc_core::{ClientIndex, FamilyId, ScopeSet, TokenKind, TokenRecord, UserRef};

/// The `n`-th token record of the token-map benches and the memory
/// example: a 5-minute token of client 1, user and family `n`.
pub fn record(n: u64, kind: TokenKind) -> TokenRecord {
    TokenRecord {
        expires_at: 1_700_000_300,
        issued_at: 1_700_000_000,
        scope: ScopeSet::from_bits(0b101),
        family: FamilyId(n),
        user: UserRef(n as u32),
        client: ClientIndex(1),
        kind,
        retired_at: 0,
    }
}
