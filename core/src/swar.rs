//! Word-at-a-time byte scans ("SIMD within a register") for the hot loops of
//! the form parser and the JSON writer: eight bytes per step, in safe,
//! portable code. Request values are short and separators rare, so most
//! words are passed over whole.
//!
//! The trick: in `x - 0x0101..01 & !x & 0x8080..80`, the high bit of a byte
//! is set if that byte of `x` is zero. Borrows can set flags above a zero
//! byte too, so the lowest flag marks the first zero byte exactly, and "any
//! flag" means "some byte is zero"; nothing else is read from the flags.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = ONES << 7;

/// `byte` in every byte of a word.
const fn splat(byte: u8) -> u64 {
    ONES * byte as u64
}

/// Eight bytes as one little-endian word (`bytes` holds exactly eight).
fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// Flags the zero bytes of `x` (see the module documentation).
const fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Flags bytes of `x` below `n` (`n` at most 128), exact as a whole.
const fn bytes_below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(splat(n)) & !x & HIGHS
}

/// The index of the first `needle` in `haystack`.
pub(crate) fn find(needle: u8, haystack: &[u8]) -> Option<usize> {
    let pattern = splat(needle);
    let mut words = haystack.chunks_exact(8);
    let mut offset = 0;
    for w in &mut words {
        let zeros = zero_bytes(word(w) ^ pattern);
        if zeros != 0 {
            return Some(offset + zeros.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    words.remainder().iter().position(|&b| b == needle).map(|i| offset + i)
}

/// Whether `haystack` holds `a` or `b`.
pub(crate) fn contains_either(a: u8, b: u8, haystack: &[u8]) -> bool {
    let (a_pattern, b_pattern) = (splat(a), splat(b));
    let mut words = haystack.chunks_exact(8);
    let mut found = 0;
    for w in &mut words {
        let x = word(w);
        found |= zero_bytes(x ^ a_pattern) | zero_bytes(x ^ b_pattern);
    }
    found != 0 || words.remainder().iter().any(|&c| c == a || c == b)
}

/// Whether `s` can go into a JSON string as it is: no control character,
/// `"`, `\` or DEL (RFC 8259 §7; DEL is escaped too, to be safe in logs).
pub(crate) fn is_json_plain(s: &[u8]) -> bool {
    let (quotes, backslashes, dels) = (splat(b'"'), splat(b'\\'), splat(0x7f));
    let mut words = s.chunks_exact(8);
    let mut found = 0;
    for w in &mut words {
        let x = word(w);
        found |= bytes_below(x, 0x20) | zero_bytes(x ^ quotes) | zero_bytes(x ^ backslashes) | zero_bytes(x ^ dels);
    }
    found == 0 && words.remainder().iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_matches_position() {
        let hay = b"grant_type=password&username=a%40b&x=\x80\xff&&=";
        for needle in [b'&', b'=', b'%', b'@', 0x80, 0xff, b'z', 0] {
            for start in 0..hay.len() {
                let h = &hay[start..];
                assert_eq!(find(needle, h), h.iter().position(|&b| b == needle), "{needle} from {start}");
            }
        }
    }

    #[test]
    fn contains_either_matches_any() {
        let hay = b"correct+horse battery staple%21 and then some more bytes";
        for end in 0..hay.len() {
            let h = &hay[..end];
            assert_eq!(contains_either(b'%', b'+', h), h.iter().any(|&b| b == b'%' || b == b'+'), "{end}");
        }
    }

    #[test]
    fn json_plain_matches_bytewise() {
        let slow = |s: &[u8]| s.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f);
        let mut s = *b"abcdefghijklmnopqrstuvwxyz0123456789-_";
        assert!(is_json_plain(&s));
        for i in 0..s.len() {
            for bad in [0u8, 0x1f, b'"', b'\\', 0x7f, 0x80, 0xff, b' ', 0x20 + 0x80] {
                let keep = s[i];
                s[i] = bad;
                for end in i..=s.len() {
                    assert_eq!(is_json_plain(&s[..end]), slow(&s[..end]), "{bad:#x} at {i}, len {end}");
                }
                s[i] = keep;
            }
        }
    }
}
