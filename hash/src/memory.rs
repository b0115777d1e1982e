//! argon2 memory kept between hashes, in huge pages where the kernel has
//! them.

use argon2::Block;

/// argon2 memory that one verifier keeps between hashes: about half the
/// cost of a verification at OWASP parameters is allocating and faulting
/// in 19 MiB afresh.
///
/// [`HashMemory::huge_pages`] (the hash workers') asks the kernel for
/// transparent huge pages, on Linux. argon2 reads its blocks at random,
/// and with 4 KiB pages a 19 MiB block misses the TLB on most reads: huge
/// pages made verifications 1-2 % faster (docs/operations.md, "Huge
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
    pub(crate) fn blocks(&mut self, blocks: usize) -> &mut [Block] {
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
    use crate::{hash_password, HashParams, StoredHash};

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
}
