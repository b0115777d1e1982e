//! Token storage: records keyed by the digest of their token, behind one
//! [`TokenStore`] trait with two backends, chosen once at start by
//! `[token_store]`:
//!
//! - [`MemoryStore`] (`memory`, the default): the lock-free
//!   [`ShardedTokenMap`], and the write-ahead log ([`wal`]) that keeps its
//!   refresh tokens across restarts;
//! - [`RedisTokens`] (`redis`): shared by every instance through Redis.
//!
//! [`Tokens`] is the one the server runs; the rest of the server never
//! asks which it is.
//!
//! Records hold indices (client, user, scope bits) that only mean something
//! within one configuration generation. What leaves the process (Redis,
//! the log) goes by name instead ([`portable`]), through the [`Names`] the
//! caller passes: the store never reads the configuration itself.

mod durable;
mod memory;
pub mod portable;
pub mod redis;
mod replay;
pub mod table;
pub mod wal;

pub use durable::MemoryStore;
pub use memory::{pack, unpack, ShardedTokenMap};
pub use redis::{RedisConfig, RedisConn, RedisTokens};
pub use replay::{ReplayCache, ReplayError};

use ropc_core::scope::ScopeRegistry;
use ropc_core::{ClientIndex, FamilyId, Issued, TokenKey, TokenRecord, UserRef};
use ropc_metrics::Exposition;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// The store could not answer (a networked backend is down or timed out,
/// or the token log could not be written).
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

/// A stored hash's fingerprint (the first 16 bytes of its SHA-256), kept
/// with an account's records so that a password changed while the records
/// were away (another instance, a restart) is still noticed.
pub type HashPrint = [u8; 16];

/// Who a user's token belongs to, by name: what leaves the process instead
/// of the record's [`UserRef`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The credential manager (none: the default users file).
    pub manager: Option<Arc<str>>,
    /// The name the user typed.
    pub username: Arc<str>,
    /// The subject the manager gives them (none: the username).
    pub subject: Option<Arc<str>>,
    /// The stored hash's fingerprint when the token was issued, if known.
    pub hash: Option<HashPrint>,
}

impl Owner {
    /// A default-manager user, known by name only.
    pub fn named(username: &str) -> Self {
        Self { manager: None, username: Arc::from(username), subject: None, hash: None }
    }

    /// The subject (`sub`): the manager's, or the username.
    pub fn subject(&self) -> &str {
        self.subject.as_deref().unwrap_or(&self.username)
    }
}

/// How one configuration generation names what records number: clients,
/// users and scopes. Records that leave the process are written and read
/// by name, so that another instance, or this one after a restart or a
/// config commit, reads them right.
pub trait Names: Send + Sync {
    /// The id of the client at `client`, unless that slot is retired.
    fn client_id(&self, client: ClientIndex) -> Option<&str>;
    /// The index of the client called `id`.
    fn client(&self, id: &str) -> Option<ClientIndex>;
    /// Who `user` is, unless this generation no longer knows them.
    fn owner(&self, user: UserRef) -> Option<Owner>;
    /// The number of the user `owner` names (numbering an account of a
    /// named manager if need be), unless this generation does not know them.
    fn user(&self, owner: &Owner) -> Option<UserRef>;
    /// The scopes.
    fn scopes(&self) -> &ScopeRegistry;

    /// Whether a record still belongs to this generation: its client and
    /// its user (if any) were not removed.
    fn owns(&self, record: &TokenRecord) -> bool {
        self.client_id(record.client).is_some() && (record.user == UserRef::NONE || self.owner(record.user).is_some())
    }
}

/// Where token records live. Methods are async so that a remote store
/// (Redis) fits; the memory store answers at once (but for the log).
pub trait TokenStore: Send + Sync {
    /// The record under `key`, if any, unless its grant family is revoked
    /// or `names` no longer knows its client or user (expired records may
    /// still be returned until swept; the engine checks expiry).
    fn get(
        &self,
        names: &dyn Names,
        key: &TokenKey,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Stores what a grant issued. When `issued.retire` is set, that refresh
    /// token is marked retired in the same step, and only if it was not
    /// retired yet; otherwise nothing is stored and [`Commit::LostRace`] is
    /// returned, so that of two concurrent refreshes with one token exactly
    /// one wins.
    fn commit(&self, names: &dyn Names, issued: &Issued) -> impl Future<Output = Result<Commit, StoreError>> + Send;

    /// Stores what a grant issued without retiring anything (the grace
    /// window case of [`Issued::lost_race`]).
    fn store_only(&self, names: &dyn Names, issued: &Issued) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the record under `key`.
    fn remove(&self, key: &TokenKey) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes every token of `family` until `until` (seconds since the
    /// epoch), by which all of them have expired.
    fn revoke_family(&self, family: FamilyId, until: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends every grant of `whose` with a token issued at or before
    /// `before`: their families are revoked until `until`. Returns how many
    /// grants ended (families not revoked already).
    fn end_grants(
        &self,
        names: &dyn Names,
        whose: Whose,
        before: u64,
        until: u64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// Whose grants to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Whose {
    /// One user's (of any client), by name: another instance may have
    /// issued them.
    User(Owner),
    /// One client's (of any user).
    Client(ClientIndex),
}

/// The store the server runs: one of the backends, chosen at start.
#[derive(Debug)]
pub enum Tokens {
    /// In this process (with its log, when durable).
    Memory(MemoryStore),
    /// In Redis, shared by every instance.
    Redis(RedisTokens),
}

impl Tokens {
    /// Whether the store answers now (always, in memory): `/healthz`.
    pub async fn is_up(&self) -> bool {
        match self {
            Tokens::Memory(_) => true,
            Tokens::Redis(r) => r.conn().is_up() || r.conn().ping().await,
        }
    }

    /// Removes expired records from one shard (memory; Redis expires its
    /// keys itself). Returns how many went.
    pub fn sweep_step(&self, now: u64) -> usize {
        match self {
            Tokens::Memory(m) => m.map().sweep_step(now),
            Tokens::Redis(_) => 0,
        }
    }

    /// Shards a full sweep goes through.
    pub fn shard_count(&self) -> usize {
        match self {
            Tokens::Memory(m) => m.map().shard_count(),
            Tokens::Redis(_) => 1,
        }
    }

    /// Appends the store's metrics.
    pub fn write_metrics(&self, out: &mut Exposition) {
        match self {
            Tokens::Memory(m) => m.write_metrics(out),
            Tokens::Redis(r) => r.write_metrics(out),
        }
    }
}

impl TokenStore for Tokens {
    async fn get(&self, names: &dyn Names, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        match self {
            Tokens::Memory(m) => m.get(names, key).await,
            Tokens::Redis(r) => r.get(names, key).await,
        }
    }

    async fn commit(&self, names: &dyn Names, issued: &Issued) -> Result<Commit, StoreError> {
        match self {
            Tokens::Memory(m) => m.commit(names, issued).await,
            Tokens::Redis(r) => r.commit(names, issued).await,
        }
    }

    async fn store_only(&self, names: &dyn Names, issued: &Issued) -> Result<(), StoreError> {
        match self {
            Tokens::Memory(m) => m.store_only(names, issued).await,
            Tokens::Redis(r) => r.store_only(names, issued).await,
        }
    }

    async fn remove(&self, key: &TokenKey) -> Result<(), StoreError> {
        match self {
            Tokens::Memory(m) => m.remove(key).await,
            Tokens::Redis(r) => r.remove(key).await,
        }
    }

    async fn revoke_family(&self, family: FamilyId, until: u64) -> Result<(), StoreError> {
        match self {
            Tokens::Memory(m) => m.revoke_family(family, until).await,
            Tokens::Redis(r) => r.revoke_family(family, until).await,
        }
    }

    async fn end_grants(&self, names: &dyn Names, whose: Whose, before: u64, until: u64) -> Result<usize, StoreError> {
        match self {
            Tokens::Memory(m) => m.end_grants(names, whose, before, until).await,
            Tokens::Redis(r) => r.end_grants(names, whose, before, until).await,
        }
    }
}
