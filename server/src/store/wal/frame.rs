//! The log's entries and their framing: `len (u32 LE) · crc32 (u32 LE) ·
//! payload`, so that a torn tail (the process died mid-write) fails its
//! check and is cut off with everything after it.

use crate::store::portable::Portable;
use crate::store::Names;
use ropc_core::TokenKey;

/// Largest entry accepted on replay (a corrupt length cannot make us
/// allocate gigabytes).
pub(super) const MAX_ENTRY: usize = 1 << 20;

const PUT: u8 = b'P';
const RETIRE: u8 = b'R';
const DELETE: u8 = b'D';
const FAMILY: u8 = b'F';

/// One change to the durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A refresh-token record under its key.
    Put(TokenKey, Portable),
    /// A refresh token retired by a rotation at this time.
    Retire(TokenKey, u64),
    /// A token removed (revoked).
    Delete(TokenKey),
    /// A family revoked until this time.
    RevokeFamily(u64, u64),
}

impl Entry {
    fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        match self {
            Entry::Put(key, record) => {
                out.push(PUT);
                out.extend_from_slice(&key.0);
                out.extend_from_slice(&record.encode());
            }
            Entry::Retire(key, at) => {
                out.push(RETIRE);
                out.extend_from_slice(&key.0);
                out.extend_from_slice(&at.to_le_bytes());
            }
            Entry::Delete(key) => {
                out.push(DELETE);
                out.extend_from_slice(&key.0);
            }
            Entry::RevokeFamily(family, until) => {
                out.push(FAMILY);
                out.extend_from_slice(&family.to_le_bytes());
                out.extend_from_slice(&until.to_le_bytes());
            }
        }
        out
    }

    /// The framed bytes: length, checksum, payload.
    pub fn frame(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        frame_into(&mut out, |o| o.extend_from_slice(&self.payload()));
        out
    }

    /// The framed `Put` of `record` under `key`, appended to `out`, straight
    /// from the record (see [`Portable::encode_record`]); false if its
    /// client or user is no longer configured.
    pub fn frame_put(out: &mut Vec<u8>, key: &TokenKey, record: &ropc_core::TokenRecord, names: &dyn Names) -> bool {
        let mut ok = true;
        frame_into(out, |o| {
            o.push(PUT);
            o.extend_from_slice(&key.0);
            ok = Portable::encode_record(record, names, o);
        });
        ok
    }

    fn parse(payload: &[u8]) -> Option<Entry> {
        let (&tag, rest) = payload.split_first()?;
        let key = |b: &[u8]| -> Option<TokenKey> { Some(TokenKey(b.get(..TokenKey::LEN)?.try_into().ok()?)) };
        let u64_at =
            |b: &[u8], at: usize| -> Option<u64> { Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)) };
        match tag {
            PUT => Some(Entry::Put(key(rest)?, Portable::decode(rest.get(TokenKey::LEN..)?)?)),
            RETIRE if rest.len() == TokenKey::LEN + 8 => Some(Entry::Retire(key(rest)?, u64_at(rest, TokenKey::LEN)?)),
            DELETE if rest.len() == TokenKey::LEN => Some(Entry::Delete(key(rest)?)),
            FAMILY if rest.len() == 16 => Some(Entry::RevokeFamily(u64_at(rest, 0)?, u64_at(rest, 8)?)),
            _ => None,
        }
    }
}

/// Appends one frame: `payload` writes the payload, then its length and
/// checksum are filled in before it.
fn frame_into(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    payload(out);
    let len = u32::try_from(out.len() - start - 8).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads framed entries until the end or the first torn or corrupt frame
/// (whole frames of an unknown kind are skipped). Returns them and how many
/// bytes were valid.
pub fn read_entries(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        // No entry is empty (each has its kind's tag), and an empty payload
        // passes its check (crc32 of nothing is 0): zeros, as a file grown
        // but never written leaves, end the log here like any torn tail.
        if len == 0 || len > MAX_ENTRY {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        // A whole frame this version cannot read (a newer kind of entry) is
        // skipped; the ones after it still count.
        if let Some(entry) = Entry::parse(payload) {
            entries.push(entry);
        }
        at += 8 + len;
    }
    (entries, at)
}
