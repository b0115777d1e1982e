//! Token storage: records keyed by the digest of their token, behind the
//! [`TokenStore`] trait so that a networked, async backend can stand in for
//! the in-memory [`ShardedTokenMap`].

mod memory;
pub mod portable;
pub mod redis;
pub mod table;
pub mod wal;

pub use memory::{pack, unpack, ShardedTokenMap, MAX_CLIENTS};

use ropc_core::{FamilyId, Issued, TokenKey, TokenRecord};
use std::fmt;
use std::future::Future;

/// The store could not answer (a networked backend is down or timed out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreError;

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the token store is unavailable")
    }
}

impl std::error::Error for StoreError {}

/// How a commit of issued tokens ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Stored.
    Stored,
    /// The refresh token to retire was already retired (or gone): a
    /// concurrent request rotated it first. Nothing was stored; ask
    /// [`Issued::lost_race`] what to do.
    LostRace,
}

/// Where token records live. Methods are async so that a remote store
/// (Redis) fits; the in-memory store answers at once.
pub trait TokenStore: Send + Sync + 'static {
    /// The record under `key`, if any, unless its grant family is revoked
    /// (expired records may still be returned until swept; the engine checks
    /// expiry).
    fn get(&self, key: &TokenKey) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Stores what a grant issued. When `issued.retire` is set, that refresh
    /// token is marked retired in the same step, and only if it was not
    /// retired yet; otherwise nothing is stored and [`Commit::LostRace`] is
    /// returned, so that of two concurrent refreshes with one token exactly
    /// one wins.
    fn commit(&self, issued: &Issued) -> impl Future<Output = Result<Commit, StoreError>> + Send;

    /// Stores what a grant issued without retiring anything (the grace
    /// window case of [`Issued::lost_race`]).
    fn store_only(&self, issued: &Issued) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the record under `key`; returns it if it was present.
    fn remove(&self, key: &TokenKey) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Revokes every token of `family` until `until` (seconds since the
    /// epoch), by which all of them have expired.
    fn revoke_family(&self, family: FamilyId, until: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
}
