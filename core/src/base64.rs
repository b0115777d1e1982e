//! Base64 as the protocol needs it: the standard alphabet for HTTP Basic
//! credentials (RFC 7617) and the URL-safe alphabet without padding for the
//! tokens ropc mints (RFC 4648 §5). Decoding writes into storage the caller
//! owns, so parsing a header allocates nothing (`to_url_nopad_string` and
//! `from_url_nopad` allocate, for JOSE's parts).

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Length of the unpadded encoding of `n` bytes.
pub const fn encoded_len_nopad(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Encodes `input` with the URL-safe alphabet and no padding into `out`,
/// which must hold exactly [`encoded_len_nopad`]`(input.len())` bytes.
/// Returns `None` when `out` has the wrong length.
pub fn encode_url_nopad(input: &[u8], out: &mut [u8]) -> Option<()> {
    encode_with(URL_SAFE, input, out)
}

/// Encodes `input` with the standard alphabet, no padding (see
/// [`encode_url_nopad`] for the contract on `out`).
pub fn encode_standard_nopad(input: &[u8], out: &mut [u8]) -> Option<()> {
    encode_with(STANDARD, input, out)
}

fn encode_with(alphabet: &[u8; 64], input: &[u8], out: &mut [u8]) -> Option<()> {
    if out.len() != encoded_len_nopad(input.len()) {
        return None;
    }
    let mut o = 0;
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out[o] = alphabet[(n >> 18) as usize & 63];
        out[o + 1] = alphabet[(n >> 12) as usize & 63];
        out[o + 2] = alphabet[(n >> 6) as usize & 63];
        out[o + 3] = alphabet[n as usize & 63];
        o += 4;
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out[o] = alphabet[(n >> 18) as usize & 63];
            out[o + 1] = alphabet[(n >> 12) as usize & 63];
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out[o] = alphabet[(n >> 18) as usize & 63];
            out[o + 1] = alphabet[(n >> 12) as usize & 63];
            out[o + 2] = alphabet[(n >> 6) as usize & 63];
        }
        _ => {}
    }
    Some(())
}

/// Why base64 input was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A byte outside the alphabet, misplaced padding or an impossible length.
    Invalid,
    /// The decoded bytes do not fit in the caller's buffer.
    TooLong,
}

/// Marks a byte outside the alphabet in [`STANDARD_VALUES`].
const NOT_BASE64: u8 = 0xff;

/// The 6-bit value of each byte of the standard alphabet: one table look-up
/// per input byte instead of a chain of range checks.
const STANDARD_VALUES: [u8; 256] = {
    let mut table = [NOT_BASE64; 256];
    let mut i = 0;
    while i < 64 {
        table[STANDARD[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// [`STANDARD_VALUES`] shifted into place for each position of a group of
/// four, with bit 31 marking a byte outside the alphabet: a group decodes as
/// four look-ups OR-ed together, and one test. 4 KiB of read-only data, which
/// the `small` feature leaves out (a tenth of the Cortex-M firmware's flash).
#[cfg(not(feature = "small"))]
const GROUP_BITS: [[u32; 256]; 4] = {
    let mut tables = [[0u32; 256]; 4];
    let mut b = 0;
    while b < 256 {
        let v = STANDARD_VALUES[b];
        let mut position = 0;
        while position < 4 {
            tables[position][b] = if v == NOT_BASE64 { 1 << 31 } else { (v as u32) << (18 - 6 * position as u32) };
            position += 1;
        }
        b += 1;
    }
    tables
};

/// The 24 bits of up to four base64 bytes, or `None` if one is outside the
/// alphabet.
fn standard_bits(group: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    let mut invalid = 0u8;
    for &b in group {
        let v = STANDARD_VALUES[usize::from(b)];
        invalid |= v;
        n = (n << 6) | u32::from(v & 63);
    }
    // Only NOT_BASE64 has the top bit set.
    (invalid & 0x80 == 0).then_some(n)
}

/// The 24 bits of a whole group of four, or `None` if a byte is outside the
/// alphabet.
#[cfg(not(feature = "small"))]
#[inline]
fn group_bits(group: &[u8]) -> Option<u32> {
    let &[a, b, c, d] = group else { return None };
    let [t0, t1, t2, t3] = &GROUP_BITS;
    let n = t0[usize::from(a)] | t1[usize::from(b)] | t2[usize::from(c)] | t3[usize::from(d)];
    (n & 1 << 31 == 0).then_some(n)
}

#[cfg(feature = "small")]
#[inline]
fn group_bits(group: &[u8]) -> Option<u32> {
    standard_bits(group)
}

/// Decodes standard-alphabet base64 into `out` and returns the decoded
/// length. Padding is optional (some clients leave it out), but when present
/// it must be correct. Non-zero trailing bits are refused so that every
/// encoding is canonical.
pub fn decode_standard(input: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    let mut data = input;
    if data.len() % 4 == 0 {
        if let [rest @ .., b'=', b'='] = data {
            data = rest;
        } else if let [rest @ .., b'='] = data {
            data = rest;
        }
    }
    if data.len() % 4 == 1 {
        return Err(DecodeError::Invalid);
    }
    let needed = data.len() / 4 * 3 + (data.len() % 4).saturating_sub(1);
    if needed > out.len() {
        return Err(DecodeError::TooLong);
    }
    let mut o = 0;
    let mut chunks = data.chunks_exact(4);
    for (c, dst) in (&mut chunks).zip(out.chunks_exact_mut(3)) {
        let n = group_bits(c).ok_or(DecodeError::Invalid)?;
        dst.copy_from_slice(&n.to_be_bytes()[1..]);
        o += 3;
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let n = standard_bits(rem).ok_or(DecodeError::Invalid)?;
        if rem.len() == 2 {
            if n & 0xf != 0 {
                return Err(DecodeError::Invalid);
            }
            out[o] = (n >> 4) as u8;
            o += 1;
        } else {
            if n & 0x3 != 0 {
                return Err(DecodeError::Invalid);
            }
            out[o] = (n >> 10) as u8;
            out[o + 1] = (n >> 2) as u8;
            o += 2;
        }
    }
    Ok(o)
}

/// The value of one URL-safe base64 byte.
const fn url_value(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    } as u32)
}

/// Decodes URL-safe base64 without padding (RFC 4648 §5, as JOSE uses it)
/// into `out` and returns the decoded length; `None` if a byte is outside
/// the alphabet, the trailing bits are not zero, or `out` is too short.
pub fn decode_url_nopad(input: &[u8], out: &mut [u8]) -> Option<usize> {
    if input.len() % 4 == 1 {
        return None;
    }
    let needed = input.len() / 4 * 3 + (input.len() % 4).saturating_sub(1);
    if needed > out.len() {
        return None;
    }
    let mut o = 0;
    for group in input.chunks(4) {
        let mut n = 0u32;
        for &b in group {
            n = (n << 6) | url_value(b)?;
        }
        match group.len() {
            4 => {
                out[o..o + 3].copy_from_slice(&n.to_be_bytes()[1..]);
                o += 3;
            }
            3 if n & 0x3 == 0 => {
                out[o] = (n >> 10) as u8;
                out[o + 1] = (n >> 2) as u8;
                o += 2;
            }
            2 if n & 0xf == 0 => {
                out[o] = (n >> 4) as u8;
                o += 1;
            }
            _ => return None,
        }
    }
    Some(o)
}

/// The length [`decode_url_nopad`] needs for `n` input bytes.
pub const fn decoded_len_url_nopad(n: usize) -> usize {
    n / 4 * 3 + (n % 4).saturating_sub(1)
}

/// [`encode_url_nopad`] into a new string.
pub fn to_url_nopad_string(input: &[u8]) -> alloc::string::String {
    let mut out = alloc::vec![0u8; encoded_len_nopad(input.len())];
    // The buffer has exactly the length the encoder asks for, and the
    // alphabet is ASCII.
    let _ = encode_url_nopad(input, &mut out);
    out.into_iter().map(char::from).collect()
}

/// [`decode_url_nopad`] into a new vector.
pub fn from_url_nopad(input: &[u8]) -> Option<alloc::vec::Vec<u8>> {
    let mut out = alloc::vec![0u8; decoded_len_url_nopad(input.len())];
    let n = decode_url_nopad(input, &mut out)?;
    out.truncate(n);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(input: &[u8]) -> alloc::string::String {
        let mut out = alloc::vec![0; encoded_len_nopad(input.len())];
        encode_standard_nopad(input, &mut out).unwrap();
        alloc::string::String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc4648_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (raw, encoded) in cases {
            assert_eq!(enc(raw), *encoded);
            let mut buf = [0u8; 16];
            let n = decode_standard(encoded.as_bytes(), &mut buf).unwrap();
            assert_eq!(&buf[..n], *raw, "unpadded {encoded}");
            let mut padded = alloc::string::String::from(*encoded);
            while padded.len() % 4 != 0 {
                padded.push('=');
            }
            let n = decode_standard(padded.as_bytes(), &mut buf).unwrap();
            assert_eq!(&buf[..n], *raw, "padded {padded}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        let mut buf = [0u8; 16];
        for bad in ["Z", "Zm9v!", "Zh==", "Zm9=v", "Z===", "=", "Zm 9v", "Zm-_"] {
            assert_eq!(decode_standard(bad.as_bytes(), &mut buf), Err(DecodeError::Invalid), "{bad}");
        }
        assert_eq!(decode_standard(b"Zm9vYmFyYmF6", &mut [0u8; 4]), Err(DecodeError::TooLong));
    }

    #[test]
    fn url_safe_alphabet() {
        let mut out = [0u8; 4];
        encode_url_nopad(&[0xfb, 0xff, 0xbf], &mut out).unwrap();
        assert_eq!(&out, b"-_-_");
        assert_eq!(encode_url_nopad(&[1, 2], &mut out), None);
    }

    #[test]
    fn url_safe_round_trip_and_refusals() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..70 {
            let input: alloc::vec::Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut text = alloc::vec![0; encoded_len_nopad(len)];
            encode_url_nopad(&input, &mut text).unwrap();
            let mut back = alloc::vec![0; decoded_len_url_nopad(text.len())];
            assert_eq!(decode_url_nopad(&text, &mut back), Some(len));
            assert_eq!(back, input);
        }
        let mut out = [0u8; 8];
        assert_eq!(decode_url_nopad(b"Zm9v+g", &mut out), None, "standard alphabet");
        assert_eq!(decode_url_nopad(b"Zm9vYg==", &mut out), None, "padding");
        assert_eq!(decode_url_nopad(b"Zh", &mut out), None, "non-zero trailing bits");
        assert_eq!(decode_url_nopad(b"Z", &mut out), None, "one stray character");
        assert_eq!(decode_url_nopad(b"Zm9vYmFyYmF6", &mut out[..4]), None, "too short an output");
    }
}
