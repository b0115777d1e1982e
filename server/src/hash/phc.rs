//! Stored password hashes: parsing a hash string once at load time into what
//! the hash workers need, verifying against it with caller-owned memory, and
//! creating new hashes.
//!
//! New hashes are argon2id. For users migrated from legacy systems the users
//! file also accepts, and verifies through well-kept crates:
//!
//! | format | example prefix | crate |
//! |---|---|---|
//! | argon2id, argon2i, argon2d (PHC, any parameters) | `$argon2id$` | argon2 |
//! | bcrypt | `$2a$`, `$2b$`, `$2y$` | bcrypt |
//! | PBKDF2 (PHC) | `$pbkdf2-sha256$`, `$pbkdf2-sha512$` | pbkdf2 |
//! | PBKDF2 (Django) | `pbkdf2_sha256$<iterations>$<salt>$<hash>` | pbkdf2, sha2 |
//! | SHA-crypt | `$5$`, `$6$` | sha-crypt |
//! | Apache MD5 (weak) | `$apr1$` | crypt3_rs |
//! | Apache SHA-1 (weak, unsalted) | `{SHA}` | ring |
//!
//! Every comparison is constant-time. A hash that is not argon2id with the
//! configured cost is not [`StoredHash::is_current`]: the server replaces it
//! after the user's next successful login.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// How a stored hash is checked.
#[derive(Clone)]
enum Scheme {
    Argon2 { algorithm: Algorithm, version: Version, params: Params, salt: Vec<u8>, hash: Vec<u8> },
    Bcrypt,
    Pbkdf2,
    Django { iterations: u32, salt: String, hash: Vec<u8> },
    Sha256Crypt,
    Sha512Crypt,
    Apr1,
    Sha1 { digest: Vec<u8> },
}

/// The most PBKDF2 iterations accepted (Django 5 uses 870,000-1,000,000):
/// bounds what one login can make a worker spend.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// The highest bcrypt cost accepted (2^15 rounds, about 2 s; legacy
/// systems use 10-12).
const MAX_BCRYPT_COST: u32 = 15;
/// The most SHA-crypt rounds accepted (the default is 5,000).
const MAX_SHA_CRYPT_ROUNDS: u32 = 10_000_000;
/// bcrypt reads only the first 72 bytes of a password.
const BCRYPT_MAX_PASSWORD: usize = 72;

/// A parsed stored hash, ready to verify against.
#[derive(Clone)]
pub struct StoredHash {
    scheme: Scheme,
    phc: String,
}

impl fmt::Debug for StoredHash {
    /// Shows the scheme and cost, never the salt or the hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheme {
            Scheme::Argon2 { algorithm, params, .. } => write!(
                f,
                "StoredHash({algorithm}, m={}, t={}, p={})",
                params.m_cost(),
                params.t_cost(),
                params.p_cost()
            ),
            Scheme::Django { iterations, .. } => write!(f, "StoredHash(django pbkdf2_sha256, i={iterations})"),
            _ => write!(f, "StoredHash({})", self.scheme_name()),
        }
    }
}

fn is_crypt64(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

/// `$<id>$[rounds=N$]<salt>$<hash>` with a salt of at most `max_salt`
/// characters and a hash of exactly `hash_len`, all in crypt's base64
/// alphabet: the syntax of SHA-crypt and Apache MD5. (The crates check it
/// again when verifying; this names the problem at load time without
/// spending a hash per user.)
fn crypt_syntax(phc: &str, id: &str, rounds: bool, max_salt: usize, hash_len: usize) -> Result<(), String> {
    let rest = phc.strip_prefix(id).ok_or("wrong prefix")?;
    let mut parts: Vec<&str> = rest.split('$').collect();
    if rounds && parts.first().is_some_and(|p| p.starts_with("rounds=")) {
        let n = parts.remove(0)["rounds=".len()..].parse::<u32>().map_err(|_| "bad rounds=")?;
        if !(1_000..=MAX_SHA_CRYPT_ROUNDS).contains(&n) {
            return Err(format!("rounds must be between 1000 and {MAX_SHA_CRYPT_ROUNDS}"));
        }
    }
    match parts.as_slice() {
        [salt, hash] if salt.len() <= max_salt && hash.len() == hash_len && is_crypt64(salt) && is_crypt64(hash) => {
            Ok(())
        }
        _ => Err(format!("malformed {id} hash: expected {id}<salt>${} characters>", hash_len)),
    }
}

impl StoredHash {
    /// Parses a stored hash. The error says what is wrong, for config
    /// messages.
    pub fn parse(phc: &str) -> Result<Self, String> {
        let scheme = if phc.starts_with("$argon2") {
            Self::parse_argon2(phc)?
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| phc.starts_with(p)) {
            let parts = phc.parse::<bcrypt::HashParts>().map_err(|e| format!("malformed bcrypt hash ({e})"))?;
            if parts.get_cost() > MAX_BCRYPT_COST {
                return Err(format!("bcrypt cost {} is above the {MAX_BCRYPT_COST} accepted", parts.get_cost()));
            }
            Scheme::Bcrypt
        } else if phc.starts_with("$pbkdf2-sha256$") || phc.starts_with("$pbkdf2-sha512$") {
            let parsed = PasswordHash::new(phc).map_err(|e| format!("malformed PBKDF2 hash ({e})"))?;
            let params = pbkdf2::Params::try_from(&parsed).map_err(|e| format!("bad PBKDF2 parameters ({e})"))?;
            if params.rounds > MAX_PBKDF2_ITERATIONS {
                return Err(format!("PBKDF2: more than {MAX_PBKDF2_ITERATIONS} iterations"));
            }
            if parsed.salt.is_none() || parsed.hash.is_none() {
                return Err("the PBKDF2 hash has no salt or no output".into());
            }
            Scheme::Pbkdf2
        } else if let Some(rest) = phc.strip_prefix("pbkdf2_sha256$") {
            let mut parts = rest.splitn(3, '$');
            let (Some(iterations), Some(salt), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
                return Err("malformed Django hash: expected pbkdf2_sha256$<iterations>$<salt>$<hash>".into());
            };
            let iterations = iterations
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PBKDF2_ITERATIONS).contains(n))
                .ok_or(format!("Django hash: iterations must be between 1 and {MAX_PBKDF2_ITERATIONS}"))?;
            let mut out = [0u8; 64];
            let n = ropc_core::base64::decode_standard(hash.as_bytes(), &mut out)
                .map_err(|_| "Django hash: the hash is not base64".to_owned())?;
            if n != 32 || salt.is_empty() || salt.contains('$') {
                return Err("Django hash: expected a salt and a 32-byte SHA-256 output".into());
            }
            Scheme::Django { iterations, salt: salt.to_owned(), hash: out[..n].to_vec() }
        } else if phc.starts_with("$5$") {
            crypt_syntax(phc, "$5$", true, 16, 43)?;
            Scheme::Sha256Crypt
        } else if phc.starts_with("$6$") {
            crypt_syntax(phc, "$6$", true, 16, 86)?;
            Scheme::Sha512Crypt
        } else if phc.starts_with("$apr1$") {
            crypt_syntax(phc, "$apr1$", false, 8, 22)?;
            Scheme::Apr1
        } else if let Some(b64) = phc.strip_prefix("{SHA}") {
            let mut out = [0u8; 24];
            let n = ropc_core::base64::decode_standard(b64.as_bytes(), &mut out)
                .map_err(|_| "{SHA} hash: not base64".to_owned())?;
            if n != 20 {
                return Err("{SHA} hash: expected the base64 of a 20-byte SHA-1 digest".into());
            }
            Scheme::Sha1 { digest: out[..n].to_vec() }
        } else {
            return Err("unsupported hash format (expected argon2 ($argon2id$, $argon2i$, $argon2d$), bcrypt ($2a$, \
                 $2b$, $2y$), PBKDF2 ($pbkdf2-sha256$, $pbkdf2-sha512$, Django pbkdf2_sha256$), SHA-crypt ($5$, $6$), \
                 $apr1$ or {SHA})"
                .into());
        };
        Ok(Self { scheme, phc: phc.to_owned() })
    }

    fn parse_argon2(phc: &str) -> Result<Scheme, String> {
        let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string ({e})"))?;
        let algorithm = Algorithm::try_from(parsed.algorithm)
            .map_err(|_| format!("unsupported hash algorithm `{}` (argon2id, argon2i or argon2d)", parsed.algorithm))?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|_| format!("unsupported argon2 version {v}"))?,
            None => Version::V0x13,
        };
        let params = Params::try_from(&parsed).map_err(|e| format!("bad argon2 parameters ({e})"))?;
        let salt = parsed.salt.ok_or("the hash has no salt")?;
        let mut salt_buf = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_buf).map_err(|e| format!("bad salt ({e})"))?.to_vec();
        let hash = parsed.hash.ok_or("the hash has no output")?.as_bytes().to_vec();
        Ok(Scheme::Argon2 { algorithm, version, params, salt, hash })
    }

    /// The stored string, as in the users file.
    pub fn as_phc(&self) -> &str {
        &self.phc
    }

    /// A short name of the scheme, for logs (`argon2id`, `bcrypt`, ...).
    pub fn scheme_name(&self) -> &'static str {
        match &self.scheme {
            Scheme::Argon2 { algorithm: Algorithm::Argon2id, .. } => "argon2id",
            Scheme::Argon2 { algorithm: Algorithm::Argon2i, .. } => "argon2i",
            Scheme::Argon2 { .. } => "argon2d",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Pbkdf2 => "pbkdf2",
            Scheme::Django { .. } => "django_pbkdf2_sha256",
            Scheme::Sha256Crypt => "sha256_crypt",
            Scheme::Sha512Crypt => "sha512_crypt",
            Scheme::Apr1 => "apr1",
            Scheme::Sha1 { .. } => "sha1",
        }
    }

    /// Whether the scheme is weak enough to warn about: Apache's MD5 and the
    /// unsalted SHA-1.
    pub fn is_weak(&self) -> bool {
        matches!(self.scheme, Scheme::Apr1 | Scheme::Sha1 { .. })
    }

    /// Whether verifying checks all of `password`: false for bcrypt with a
    /// password longer than 72 bytes (bcrypt ignores the rest). Such a
    /// password must not become the new hash of an upgrade, or a login
    /// with the right first 72 bytes and anything after would replace the
    /// real password.
    pub fn verifies_whole(&self, password: &[u8]) -> bool {
        !matches!(self.scheme, Scheme::Bcrypt) || password.len() <= BCRYPT_MAX_PASSWORD
    }

    /// Memory blocks one verification needs (0 for non-argon2 schemes).
    pub fn block_count(&self) -> usize {
        match &self.scheme {
            Scheme::Argon2 { params, .. } => params.block_count(),
            _ => 0,
        }
    }

    /// Whether this is argon2id with exactly `params`' costs.
    pub fn is_current(&self, params: &Params) -> bool {
        match &self.scheme {
            Scheme::Argon2 { algorithm, version, params: mine, .. } => {
                *algorithm == Algorithm::Argon2id
                    && *version == Version::V0x13
                    && mine.m_cost() == params.m_cost()
                    && mine.t_cost() == params.t_cost()
                    && mine.p_cost() == params.p_cost()
            }
            _ => false,
        }
    }

    /// Verifies `password`, using (and growing when needed) `memory` for
    /// argon2, so that a worker reuses one allocation across hashes.
    /// Compares in constant time.
    pub fn verify_with_memory(&self, password: &[u8], memory: &mut HashMemory) -> bool {
        if let Scheme::Argon2 { .. } = self.scheme {
            return self.verify_inner(password, memory);
        }
        // The legacy crates are not all hardened against odd input (a
        // SHA-crypt hash with non-zero padding bits makes sha-crypt 0.5
        // unwrap and panic): a panic is a failed verification, and the
        // worker lives on.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.verify_inner(password, memory))).unwrap_or(false)
    }

    fn verify_inner(&self, password: &[u8], memory: &mut HashMemory) -> bool {
        match &self.scheme {
            Scheme::Argon2 { algorithm, version, params, salt, hash } => {
                let blocks = params.block_count();
                let mut out = [0u8; 64];
                let Some(out) = out.get_mut(..hash.len()) else {
                    return false;
                };
                let argon = Argon2::new(*algorithm, *version, params.clone());
                let ok = argon.hash_password_into_with_memory(password, salt, out, memory.blocks(blocks)).is_ok()
                    && bool::from(out.ct_eq(hash));
                out.zeroize();
                ok
            }
            Scheme::Bcrypt => bcrypt::verify(password, &self.phc).unwrap_or(false),
            Scheme::Pbkdf2 => PasswordHash::new(&self.phc)
                .is_ok_and(|parsed| pbkdf2::Pbkdf2.verify_password(password, &parsed).is_ok()),
            Scheme::Django { iterations, salt, hash } => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt.as_bytes(), *iterations, &mut out);
                let ok = bool::from(out.as_slice().ct_eq(hash));
                out.zeroize();
                ok
            }
            Scheme::Sha256Crypt => {
                std::str::from_utf8(password).is_ok_and(|p| sha_crypt::sha256_check(p, &self.phc).is_ok())
            }
            Scheme::Sha512Crypt => {
                std::str::from_utf8(password).is_ok_and(|p| sha_crypt::sha512_check(p, &self.phc).is_ok())
            }
            Scheme::Apr1 => {
                // The crate's own `verify` compares with `==`; recompute and
                // compare in constant time instead.
                #[allow(deprecated)]
                let computed = crypt3_rs::crypt::apr1::hash_with(self.phc.as_str(), password);
                computed.is_ok_and(|h| {
                    let h = h.as_str().as_bytes();
                    h.len() == self.phc.len() && bool::from(h.ct_eq(self.phc.as_bytes()))
                })
            }
            Scheme::Sha1 { digest } => {
                let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password);
                bool::from(d.as_ref().ct_eq(digest))
            }
        }
    }

    /// Verifies `password` with freshly allocated memory.
    pub fn verify(&self, password: &[u8]) -> bool {
        self.verify_with_memory(password, &mut HashMemory::new())
    }
}

/// argon2 cost parameters for new hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for HashParams {
    /// OWASP's recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self { m_cost: Params::DEFAULT_M_COST, t_cost: Params::DEFAULT_T_COST, p_cost: Params::DEFAULT_P_COST }
    }
}

impl HashParams {
    /// The argon2 parameters, or why they are invalid.
    pub fn to_params(self) -> Result<Params, String> {
        Params::new(self.m_cost, self.t_cost, self.p_cost, None).map_err(|e| format!("invalid argon2 parameters: {e}"))
    }
}

/// Hashes `password` with argon2id and a random 128-bit salt; returns the
/// PHC string.
pub fn hash_password(password: &[u8], params: HashParams) -> Result<String, String> {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| "the system random source failed".to_owned())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_params()?);
    argon.hash_password(password, &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Generates a random secret: 32 bytes, base64url without padding (43
/// characters, safe in a URL, a form body and a Basic header unencoded).
pub fn generate_secret() -> Result<String, String> {
    let mut raw = [0u8; 32];
    SystemRandom::new().fill(&mut raw).map_err(|_| "the system random source failed".to_owned())?;
    let mut out = [0u8; 43];
    ropc_core::base64::encode_url_nopad(&raw, &mut out).ok_or("encoding failed")?;
    raw.zeroize();
    Ok(out.iter().map(|&b| char::from(b)).collect())
}

/// argon2 memory that one verifier keeps between hashes: about half the
/// cost of a verification at OWASP parameters is allocating and faulting
/// in 19 MiB afresh.
///
/// [`HashMemory::huge_pages`] (the hash workers') asks the kernel for
/// transparent huge pages, on Linux. argon2 reads its blocks at random,
/// and with 4 KiB pages a 19 MiB block misses the TLB on most reads: huge
/// pages made verifications 1-2 % faster here (BENCHMARKS.md, "Huge
/// pages"). That memory is a mapping of its own, because the advice
/// belongs to the address range and not to a buffer: on the allocator's
/// heap it would outlive the buffer, and request threads reusing that
/// memory would take the 2 MiB page faults the allocator is built to avoid
/// (mimalloc's `no_thp` feature). If the mapping fails, or elsewhere, it is
/// a plain heap buffer, like [`HashMemory::new`]'s.
#[derive(Default)]
pub struct HashMemory {
    heap: Vec<Block>,
    #[cfg(target_os = "linux")]
    mapped: Option<Mapping>,
    huge_pages: bool,
}

impl std::fmt::Debug for HashMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the blocks: they are derived from passwords.
        f.debug_struct("HashMemory").field("huge_pages", &self.huge_pages).finish_non_exhaustive()
    }
}

impl HashMemory {
    /// Heap memory, grown as hashes need it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Memory in huge pages where the kernel has them: for a verifier
    /// that lives long and hashes often (a hash worker).
    pub fn huge_pages() -> Self {
        Self { huge_pages: true, ..Self::default() }
    }

    /// `blocks` blocks, holding whatever earlier hashes left there (argon2
    /// overwrites them all).
    fn blocks(&mut self, blocks: usize) -> &mut [Block] {
        #[cfg(target_os = "linux")]
        if self.huge_pages {
            let fits = self.mapped.as_ref().is_some_and(|m| m.blocks >= blocks);
            // Less than one whole huge page (or a kernel whose huge pages
            // are vast, like arm64's 512 MiB with 64 KiB pages): the heap.
            let worth_it = blocks.saturating_mul(std::mem::size_of::<Block>()) >= huge_page_size();
            if !fits && worth_it {
                // The old mapping goes first: two at once could be twice
                // the memory.
                self.mapped = None;
                self.mapped = Mapping::new(blocks);
                match self.mapped {
                    Some(_) => self.heap = Vec::new(),
                    // Not again for every hash: the heap from now on.
                    None => self.huge_pages = false,
                }
            }
            if let Some(m) = self.mapped.as_mut().filter(|m| m.blocks >= blocks) {
                return m.slice(blocks);
            }
        }
        if self.heap.len() < blocks {
            self.heap.resize(blocks, Block::default());
        }
        &mut self.heap[..blocks]
    }
}

/// The kernel's transparent huge page size (2 MiB on x86-64), read once.
#[cfg(target_os = "linux")]
fn huge_page_size() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|n| n.is_power_of_two())
            .unwrap_or(2 << 20)
    })
}

/// An anonymous mapping for argon2 blocks, its start aligned to a huge
/// page, and advised to use them. Unmapped on drop (the kernel zeroes the
/// pages before anyone else gets them).
#[cfg(target_os = "linux")]
struct Mapping {
    base: *mut libc::c_void,
    len: usize,
    start: *mut Block,
    blocks: usize,
}

#[cfg(target_os = "linux")]
impl Mapping {
    fn new(blocks: usize) -> Option<Mapping> {
        let huge = huge_page_size();
        let bytes = blocks.checked_mul(std::mem::size_of::<Block>())?;
        // Whole huge pages for all the blocks, plus one to align the start.
        let len = bytes.checked_next_multiple_of(huge)?.checked_add(huge)?;
        // SAFETY: a new private anonymous mapping at an address the kernel
        // chooses; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let offset = (base as usize).next_multiple_of(huge) - base as usize;
        // SAFETY: the range is inside the mapping just made. The advice
        // changes how its pages are backed, never their contents; if the
        // kernel has no huge pages it fails, harmlessly.
        let _ = unsafe { libc::madvise(base.cast::<u8>().add(offset).cast(), len - offset, libc::MADV_HUGEPAGE) };
        // SAFETY: `offset` < `huge`, so the start is inside the mapping.
        let start = unsafe { base.cast::<u8>().add(offset) }.cast::<Block>();
        debug_assert!(start.is_aligned());
        Some(Mapping { base, len, start, blocks })
    }

    fn slice(&mut self, blocks: usize) -> &mut [Block] {
        assert!(blocks <= self.blocks);
        // SAFETY: `start` is page-aligned (mmap's base plus a multiple of
        // the page size), so aligned for a Block's 64 bytes, and
        // `self.blocks` blocks fit between it and the end of the mapping. The pages are zero-filled or hold blocks earlier
        // hashes wrote, and a Block is 128 u64s, for which any bytes are
        // valid. `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.start, blocks) }
    }
}

// SAFETY: a Mapping owns its region as a Box owns its allocation; no other
// pointer to it exists, so moving it to another thread is sound.
#[cfg(target_os = "linux")]
unsafe impl Send for Mapping {}

#[cfg(target_os = "linux")]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are this mapping's, unmapped once; no
        // slice of it outlives `&mut self`.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: HashParams = HashParams { m_cost: 64, t_cost: 1, p_cost: 1 };

    #[test]
    fn hash_then_verify() {
        let phc = hash_password(b"correct horse", SMALL).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        let stored = StoredHash::parse(&phc).unwrap();
        assert!(stored.verify(b"correct horse"));
        assert!(!stored.verify(b"correct horsE"));
        let mut memory = HashMemory::huge_pages();
        assert!(stored.verify_with_memory(b"correct horse", &mut memory));
        assert!(!stored.verify_with_memory(b"", &mut memory));
        assert!(stored.is_current(&SMALL.to_params().unwrap()));
        assert!(!stored.is_current(&HashParams::default().to_params().unwrap()));
        assert!(!format!("{stored:?}").contains(&phc[30..]));
    }

    /// A worker's argon2 memory asks for huge pages (the VMA flag `hg`
    /// in /proc/self/smaps) on a kernel built with them (the sysfs file);
    /// and the advice goes with it, leaving no advised range behind once
    /// it is dropped.
    #[cfg(target_os = "linux")]
    #[test]
    fn worker_memory_asks_for_huge_pages_and_takes_the_advice_with_it() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            return;
        }
        let params = HashParams { m_cost: 8192, t_cost: 1, p_cost: 1 };
        let stored = StoredHash::parse(&hash_password(b"pw", params).unwrap()).unwrap();
        let mut memory = HashMemory::huge_pages();
        assert!(stored.verify_with_memory(b"pw", &mut memory));
        assert!(!stored.verify_with_memory(b"px", &mut memory));
        let blocks = memory.blocks(8192);
        let range = (blocks.as_ptr() as usize, blocks.as_ptr() as usize + std::mem::size_of_val(blocks));
        let Some(advised) = advised_bytes(range) else { return };
        assert_eq!(advised, 8 << 20, "the whole 8 MiB asks for huge pages");
        drop(memory);
        // Unmapped with it. (Tests running meanwhile may map and advise
        // memory in the freed range, but none maps more than a few MiB:
        // the whole 8 MiB advised again would be this mapping, still there.)
        let after = advised_bytes(range).unwrap_or(0);
        assert!(after < 8 << 20, "the advised range outlived the memory ({after} bytes)");
    }

    /// Bytes of `range` in mappings flagged `hg`; `None` if this kernel
    /// shows no VmFlags.
    #[cfg(target_os = "linux")]
    fn advised_bytes((start, end): (usize, usize)) -> Option<usize> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        if !smaps.contains("VmFlags:") {
            return None;
        }
        let mut advised = 0usize;
        let mut current: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            let header = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, b)| Some((usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?)));
            if let Some(vma) = header {
                current = Some(vma);
            } else if let (Some(flags), Some((a, b))) = (line.strip_prefix("VmFlags:"), current) {
                if flags.split_whitespace().any(|f| f == "hg") && a < end && b > start {
                    advised += b.min(end) - a.max(start);
                }
            }
        }
        Some(advised)
    }

    #[test]
    fn reference_vector() {
        // Generated by the reference `argon2` CLI (Debian package argon2, 2026-11-25):
        // echo -n password | argon2 somesalt -id -t 2 -m 6 -p 1 -e
        let phc = "$argon2id$v=19$m=64,t=2,p=1$c29tZXNhbHQ$FqGkmHNGCd0BRW2kBt6fPZ2pPmyGwwChL8FGUhTOSSI";
        let stored = StoredHash::parse(phc).unwrap();
        assert!(stored.verify(b"password"));
        assert!(!stored.verify(b"passwore"));
    }

    /// One password in every legacy format, each made by a tool other than
    /// the crate that verifies it (2026-11-25): `openssl passwd -5 / -6 /
    /// -apr1 -salt saltsalt`, Python's `hashlib` (SHA-1, Django and PHC
    /// PBKDF2, built by hand from `pbkdf2_hmac`), Python's `bcrypt` 4 (`$2a$`,
    /// `$2b$`; `$2y$` is the same hash under PHP's prefix).
    pub(crate) const LEGACY: [(&str, &str); 10] = [
        ("sha256_crypt", "$5$saltsalt$x17in3caGsBwDU2ZoGPQIZ66Z/CyU.7rqeq9PpRfo6A"),
        (
            "sha512_crypt",
            "$6$saltsalt$HesR2wpSRtAhqbwNYjqoN1g3hsmpmiDskwrGRbSr4XSs7VmD4BbZeQDBeWx2ae65MfQighTdIAKiA/DtTrU3A/",
        ),
        ("apr1", "$apr1$saltsalt$kt1dLoKx.9Du6IoaufuYk."),
        ("sha1", "{SHA}oLisiXhAYHTMampGuEeXZHN8Y1Y="),
        ("django_pbkdf2_sha256", "pbkdf2_sha256$10000$djangosalt1$8Ju2XUI2/veOATWsTrKj5+jN0357HYJJlllHDUzmY0U="),
        ("pbkdf2", "$pbkdf2-sha256$i=1000,l=32$cGhjc2FsdDEyMzQ1Njc4OQ$M3StOd4cSIFtIdlWilVnzlFxDBWkTKrMGstr+F9ofd0"),
        (
            "pbkdf2",
            "$pbkdf2-sha512$i=1000,l=64$cGhjc2FsdDEyMzQ1Njc4OQ$kkuoXccBRxd04vkFxkwcnTdbm4n0MUwI5CrMp7noVAG7ziYY0YuQiX1hufGDlkF2j/Mm+X3tyDn40V4QhJfNPA",
        ),
        ("bcrypt", "$2a$04$ff2R9m1X/MCH8wpDT1H6m.XVwF7QYDs1qRBu8HHkPi726U60KSgEu"),
        ("bcrypt", "$2b$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu"),
        ("bcrypt", "$2y$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu"),
    ];
    /// The password of every [`LEGACY`] hash.
    pub(crate) const LEGACY_PASSWORD: &str = "pw-legacy";

    #[test]
    fn legacy_formats_verify() {
        let current = HashParams::default().to_params().unwrap();
        for (scheme, phc) in LEGACY {
            let stored = StoredHash::parse(phc).unwrap_or_else(|e| panic!("{phc}: {e}"));
            assert_eq!(stored.scheme_name(), scheme);
            assert!(stored.verify(LEGACY_PASSWORD.as_bytes()), "{phc}");
            assert!(!stored.verify(b"pw-legacY"), "{phc}");
            assert!(!stored.verify(b""), "{phc}");
            assert!(!stored.is_current(&current), "{phc}");
            assert_eq!(stored.is_weak(), matches!(scheme, "apr1" | "sha1"));
            // Debug names the scheme and shows nothing of the hash.
            let debug = format!("{stored:?}");
            assert!(!debug.contains(&phc[phc.len() - 8..]), "{debug}");
        }
    }

    #[test]
    fn odd_legacy_input_fails_without_a_panic() {
        // Non-zero padding bits in the last character: sha-crypt 0.5 panics
        // on it; the verification must just fail.
        let odd = StoredHash::parse("$5$saltsalt$x17in3caGsBwDU2ZoGPQIZ66Z/CyU.7rqeq9PpRfo6z").unwrap();
        assert!(!odd.verify(LEGACY_PASSWORD.as_bytes()));
        assert!(!odd.verify(b"\xff\xfe"), "non-UTF-8 passwords fail too");
    }

    #[test]
    fn bcrypt_long_passwords_are_not_whole() {
        let bcrypt = StoredHash::parse(LEGACY[7].1).unwrap();
        assert!(bcrypt.verifies_whole(&[b'a'; 72]));
        assert!(!bcrypt.verifies_whole(&[b'a'; 73]));
        let sha = StoredHash::parse(LEGACY[0].1).unwrap();
        assert!(sha.verifies_whole(&[b'a'; 500]));
    }

    #[test]
    fn legacy_costs_are_capped() {
        for (bad, why) in [
            ("$2b$16$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5EYu", "bcrypt cost"),
            ("$6$rounds=20000000$saltsalt$HesR2wpSRtAhqbwNYjqoN1g3hsmpmiDskwrGRbSr4XSs7VmD4BbZeQDBeWx2ae65MfQighTdIAKiA/DtTrU3A/", "rounds"),
            ("$pbkdf2-sha256$i=4000000000,l=32$cGhjc2FsdDEyMzQ1Njc4OQ$M3StOd4cSIFtIdlWilVnzlFxDBWkTKrMGstr+F9ofd0", "PBKDF2"),
            ("pbkdf2_sha256$20000000$djangosalt1$8Ju2XUI2/veOATWsTrKj5+jN0357HYJJlllHDUzmY0U=", "iterations"),
        ] {
            let e = StoredHash::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_unrecognised() {
        for bad in [
            "",
            "plain",
            "$2b$12$abcdefghijklmnopqrstuu",
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ",
            "$scrypt$ln=4,r=8,p=1$c2FsdA$aGFzaA",
            "$5$saltsalt$short",
            "$6$rounds=10$saltsalt$HesR2wpSRtAhqbwNYjqoN1g3hsmpmiDskwrGRbSr4XSs7VmD4BbZeQDBeWx2ae65MfQighTdIAKiA/DtTrU3A/",
            "$apr1$saltsalt$kt1dLoKx.9Du6Ioauf!Yk.",
            "{SHA}oLisiXhAYHTMampGuEeXZHN8Y1Y=extra",
            "{SHA}c2hvcnQ=",
            "pbkdf2_sha256$0$salt$8Ju2XUI2/veOATWsTrKj5+jN0357HYJJlllHDUzmY0U=",
            "pbkdf2_sha256$10000$djangosalt1",
            "$pbkdf2-sha256$i=1000,l=32$cGhjc2FsdDEyMzQ1Njc4OQ",
            "$2b$04$b4Nlm6sCYmHVhwj6Rg6cWuw3fm95TqxxIpKj26vIja2QrfiMf5E",
        ] {
            assert!(StoredHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_distinct_and_url_safe() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
