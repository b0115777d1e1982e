//! Replay: the state a log's entries leave, put back into the map at
//! start; and the snapshot of the map that a compaction writes.

use super::frame::Entry;
use crate::store::portable::Portable;
use crate::store::{Names, ShardedTokenMap};
use ropc_core::{FamilyId, TokenKey, TokenKind};
use std::collections::HashMap;
use std::path::Path;

/// The state a sequence of entries leaves, with what expired by `now`
/// dropped.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Refresh-token records by key.
    pub records: HashMap<[u8; 16], Portable>,
    /// Revoked families and until when.
    pub families: HashMap<u64, u64>,
}

impl Replayed {
    /// Applies `entries` in order.
    pub fn apply(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            match e {
                Entry::Put(key, record) => {
                    self.records.insert(key.0, record);
                }
                Entry::Retire(key, at) => {
                    if let Some(r) = self.records.get_mut(&key.0) {
                        if r.retired_at == 0 {
                            r.retired_at = at;
                        }
                    }
                }
                Entry::Delete(key) => {
                    self.records.remove(&key.0);
                }
                Entry::RevokeFamily(family, until) => {
                    let e = self.families.entry(family).or_insert(until);
                    *e = (*e).max(until);
                }
            }
        }
    }

    /// Drops records and revocations that ended by `now`.
    pub fn expire(&mut self, now: u64) {
        self.records.retain(|_, r| r.expires_at > now);
        self.families.retain(|_, until| *until > now);
    }
}

/// Puts replayed records into `map`, as `names` numbers clients, users and
/// scopes (records of ones no longer configured are dropped), and logs what
/// came back.
pub fn restore_into(map: &ShardedTokenMap, names: &dyn Names, state: Replayed, path: &Path) {
    let (mut restored, mut dropped) = (0usize, 0usize);
    for (key, record) in &state.records {
        match record.to_record(names) {
            Some(r) => {
                map.insert(TokenKey(*key), r);
                restored += 1;
            }
            None => dropped += 1,
        }
    }
    for (family, until) in &state.families {
        map.revoke_family_now(FamilyId(*family), *until);
    }
    tracing::info!(
        file = %path.display(),
        refresh_tokens = restored,
        dropped_for_removed_clients_or_users = dropped,
        revoked_families = state.families.len(),
        "token log replayed"
    );
}

/// The snapshot of `map` at `now` as framed entries: every live refresh
/// record (with its retirement) and every family revocation, named as
/// `names` names them.
pub fn snapshot_of(map: &ShardedTokenMap, names: &dyn Names, now: u64) -> Vec<u8> {
    let mut out = Vec::new();
    map.for_each(|key, record| {
        if record.kind == TokenKind::Refresh && record.expires_at > now {
            if let Some(p) = Portable::from_record(&record, names) {
                out.extend_from_slice(&Entry::Put(key, p).frame());
            }
        }
    });
    for (family, until) in map.revoked_list() {
        if until > now {
            out.extend_from_slice(&Entry::RevokeFamily(family.0, until).frame());
        }
    }
    out
}
