//! The platform pieces the core asks for ([`ropc_core::Provider`]): the
//! random source that mints tokens and the digest that keys their records.

use ring::rand::SecureRandom as _;
use ropc_core::{Provider, RandomError, SecureRandom, TokenDigest, TokenKey};
use zeroize::Zeroizing;

/// The core's [`SecureRandom`] for token minting: the OS random source
/// (getrandom, through ring's `SystemRandom`), drawn in bulk.
///
/// Each thread keeps a buffer of [`RANDOM_BUFFER`] bytes filled by one
/// `getrandom` call and hands them out in order, so that minting a grant
/// (72 random bytes: family id, access and refresh token) makes one system
/// call per ~56 grants instead of three per grant.
///
/// Why this is as safe as asking the kernel each time:
/// - every byte comes straight from the kernel's CSPRNG, with no userspace
///   generator or seed in between, and is handed out exactly once;
/// - a byte is overwritten with zeros as soon as it is copied out, so the
///   buffer holds only bytes not yet used (they become a token later; an
///   attacker who can read this process's memory can read the token store
///   anyway);
/// - buffers are per thread (never shared, so no lock and no duplicate
///   hand-out), and the process never forks;
/// - one caveat is shared by every userspace buffer: a VM snapshot restored
///   twice would replay the unused bytes of the buffers (at most 4 KiB per
///   thread, about 56 grants), where a direct `getrandom` after the restore
///   would not.
#[derive(Debug)]
pub struct BufferedRandom(ring::rand::SystemRandom);

/// The per-thread buffer size of [`BufferedRandom`].
pub const RANDOM_BUFFER: usize = 4096;

struct RandomBuffer {
    bytes: Zeroizing<[u8; RANDOM_BUFFER]>,
    /// Bytes before `next` were handed out (and zeroed).
    next: usize,
}

thread_local! {
    static RANDOM: std::cell::RefCell<RandomBuffer> =
        std::cell::RefCell::new(RandomBuffer { bytes: Zeroizing::new([0; RANDOM_BUFFER]), next: RANDOM_BUFFER });
}

impl Default for BufferedRandom {
    fn default() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl SecureRandom for BufferedRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        if dest.len() > RANDOM_BUFFER / 4 {
            return self.0.fill(dest).map_err(|_| RandomError);
        }
        RANDOM.with(|cell| {
            let mut buf = cell.borrow_mut();
            if RANDOM_BUFFER - buf.next < dest.len() {
                self.0.fill(&mut buf.bytes[..]).map_err(|_| RandomError)?;
                buf.next = 0;
            }
            let range = buf.next..buf.next + dest.len();
            dest.copy_from_slice(&buf.bytes[range.clone()]);
            buf.bytes[range].fill(0);
            buf.next += dest.len();
            Ok(())
        })
    }
}

/// SHA-256 via ring, as the core's [`TokenDigest`].
#[derive(Debug, Default)]
pub struct Sha256Digest;

impl TokenDigest for Sha256Digest {
    fn digest(&self, token: &[u8]) -> TokenKey {
        let d = ring::digest::digest(&ring::digest::SHA256, token);
        let mut key = [0u8; TokenKey::LEN];
        key.copy_from_slice(&d.as_ref()[..TokenKey::LEN]);
        TokenKey(key)
    }
}

/// The random source and the digest, bundled for the core.
#[derive(Debug, Default)]
pub struct Platform {
    /// Randomness for tokens.
    pub random: BufferedRandom,
    /// Token digest.
    pub digest: Sha256Digest,
}

impl Platform {
    /// The core's view of it.
    pub fn provider(&self) -> Provider<'_> {
        Provider { random: &self.random, digest: &self.digest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn buffered_random_hands_out_each_byte_once_and_wipes_it() {
        let random = BufferedRandom::default();
        let mut seen = HashSet::new();
        // Several refills' worth of 32-byte draws, crossing buffer ends.
        for _ in 0..(3 * RANDOM_BUFFER / 32 + 7) {
            let mut token = [0u8; 32];
            random.fill(&mut token).unwrap();
            assert!(seen.insert(token), "a draw repeated");
            RANDOM.with(|cell| {
                let buf = cell.borrow();
                assert!(buf.bytes[..buf.next].iter().all(|b| *b == 0), "used bytes are zeroed");
            });
        }
        // Odd sizes that do not divide the buffer.
        for len in [1, 7, 8, 33, RANDOM_BUFFER / 4] {
            let mut a = vec![0u8; len];
            let mut b = vec![0u8; len];
            random.fill(&mut a).unwrap();
            random.fill(&mut b).unwrap();
            assert!(len < 8 || a != b);
        }
        // A draw larger than a quarter buffer goes straight to the OS.
        let mut big = vec![0u8; RANDOM_BUFFER];
        random.fill(&mut big).unwrap();
        assert!(big.iter().any(|b| *b != 0));
    }
}
