//! The memory backend: the [`ShardedTokenMap`], and its write-ahead log
//! ([`super::wal`]) when `[token_store] durable` is on.
//!
//! Map first, then log: a change is made in the map before its entry is
//! queued, so that a compaction's snapshot, taken from the map, holds every
//! entry queued before it began (see [`super::wal`]). A grant that the log
//! could not take is undone in the map, so that its client's retry with the
//! same refresh token is not taken for a replay.

use super::wal::{self, Entry, SnapshotFn, Wal};
use super::{Commit, Names, ShardedTokenMap, StoreError, TokenStore, Whose};
use ropc_core::{FamilyId, Issued, TokenKey, TokenKind, TokenRecord};
use ropc_metrics::Exposition;
use std::path::Path;
use std::sync::Arc;

/// Where the names a snapshot needs come from: the configuration current
/// when the compaction runs.
pub type CurrentNames = Arc<dyn Fn() -> Arc<dyn Names> + Send + Sync>;

/// Token records in memory, with refresh tokens logged when durable.
#[derive(Debug)]
pub struct MemoryStore {
    map: Arc<ShardedTokenMap>,
    wal: Option<Wal>,
}

impl MemoryStore {
    /// A store that forgets everything at exit.
    pub fn volatile() -> Self {
        Self { map: Arc::new(ShardedTokenMap::default()), wal: None }
    }

    /// A store whose refresh tokens live in the log at `path`: replays it
    /// (as `names()` numbers clients and users now, `now()` telling what
    /// expired) and compacts it as it grows.
    pub fn durable(path: &Path, mode: wal::Sync, names: CurrentNames, now: fn() -> u64) -> std::io::Result<Self> {
        let map = Arc::new(ShardedTokenMap::default());
        let (snap_map, snap_names) = (Arc::clone(&map), Arc::clone(&names));
        let snapshot: SnapshotFn = Box::new(move || wal::snapshot_of(&snap_map, &*snap_names(), now()));
        let restore = |state| wal::restore_into(&map, &*names(), state, path);
        let wal = Wal::open(path, now(), restore, snapshot, wal::Options::new(mode))?;
        Ok(Self { map, wal: Some(wal) })
    }

    /// The map itself.
    pub fn map(&self) -> &ShardedTokenMap {
        &self.map
    }

    /// Makes the refresh token of `issued` (and `retire`) durable, when the
    /// store keeps a log.
    async fn log(&self, names: &dyn Names, issued: &Issued, retire: Option<Entry>) -> Result<(), StoreError> {
        let Some(wal) = &self.wal else { return Ok(()) };
        let mut bytes = Vec::with_capacity(256);
        let mut count = 0;
        if let Some(retire) = retire {
            bytes.extend_from_slice(&retire.frame());
            count += 1;
        }
        if let Some((key, record)) = &issued.refresh {
            if !Entry::frame_put(&mut bytes, key, record, names) {
                return Err(StoreError);
            }
            count += 1;
        }
        wal.append_framed(bytes, count).await
    }

    /// Appends the map's metrics, and the log's.
    pub fn write_metrics(&self, out: &mut Exposition) {
        out.gauge("ropc_token_store_records", "Token records held (expired ones until swept).", self.map.len());
        out.gauge(
            "ropc_token_store_bytes",
            "Bytes of the token store's tables (slots and control bytes).",
            self.map.table_bytes(),
        );
        out.gauge(
            "ropc_token_store_revoked_families",
            "Revoked grant families remembered.",
            self.map.revoked_families(),
        );
        if let Some(wal) = &self.wal {
            wal.write_metrics(out);
        }
    }
}

impl TokenStore for MemoryStore {
    async fn get(&self, names: &dyn Names, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.map.get_now(key).filter(|r| names.owns(r)))
    }

    async fn commit(&self, names: &dyn Names, issued: &Issued) -> Result<Commit, StoreError> {
        let commit = self.map.commit_now(issued);
        if commit == Commit::Stored {
            let at = issued.access.1.issued_at.max(1);
            let retire = issued.retire.map(|key| Entry::Retire(key, at));
            if let Err(e) = self.log(names, issued, retire).await {
                // Not durable, so not done: undo it, so that the client's
                // retry with the same refresh token is not taken for a replay.
                if let Some(old) = &issued.retire {
                    self.map.unretire(old, at);
                }
                self.map.remove_now(&issued.access.0);
                if let Some((key, _)) = &issued.refresh {
                    self.map.remove_now(key);
                }
                return Err(e);
            }
        }
        Ok(commit)
    }

    async fn store_only(&self, names: &dyn Names, issued: &Issued) -> Result<(), StoreError> {
        self.map.store_only_now(issued);
        self.log(names, issued, None).await
    }

    async fn remove(&self, key: &TokenKey) -> Result<(), StoreError> {
        if self.map.remove_now(key).is_some_and(|r| r.kind == TokenKind::Refresh) {
            if let Some(wal) = &self.wal {
                wal.append(&[Entry::Delete(*key)]).await?;
            }
        }
        Ok(())
    }

    async fn revoke_family(&self, family: FamilyId, until: u64) -> Result<(), StoreError> {
        // Log the revocation as long as the map keeps it (it may outlast
        // `until`), so that a restart does not end it early.
        let until = self.map.revoke_family_now(family, until);
        match &self.wal {
            Some(wal) => wal.append(&[Entry::RevokeFamily(family.0, until)]).await,
            None => Ok(()),
        }
    }

    /// A scan of the whole map, one shard at a time (no shard is held
    /// while the next is read): an operator's action or a password change,
    /// rare enough for that.
    async fn end_grants(&self, names: &dyn Names, whose: Whose, before: u64, until: u64) -> Result<usize, StoreError> {
        let whose = match whose {
            Whose::User(owner) => match names.user(&owner) {
                Some(user) => Ok(user),
                // Nobody this process knows: no record of theirs.
                None => return Ok(0),
            },
            Whose::Client(client) => Err(client),
        };
        // Off the request threads: a million records take tens of ms.
        let map = Arc::clone(&self.map);
        let scan = move || {
            let mut families = std::collections::HashSet::new();
            map.for_each(|_, r| {
                let theirs = match whose {
                    Ok(user) => r.user == user,
                    Err(client) => r.client == client,
                };
                if theirs && r.issued_at <= before {
                    families.insert(r.family);
                }
            });
            families
        };
        let families = tokio::task::spawn_blocking(scan).await.map_err(|_| StoreError)?;
        let mut ended = 0;
        let mut entries = Vec::with_capacity(families.len());
        for family in families {
            if self.map.is_revoked(family) {
                continue;
            }
            let until = self.map.revoke_family_now(family, until);
            entries.push(Entry::RevokeFamily(family.0, until));
            ended += 1;
        }
        if let Some(wal) = &self.wal {
            wal.append(&entries).await?;
        }
        Ok(ended)
    }
}
