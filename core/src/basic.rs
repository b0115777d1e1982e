//! HTTP Basic client authentication, RFC 6749 §2.3.1 over RFC 7617.
//!
//! The header value is `Basic <base64(urlencode(id) ":" urlencode(secret))>`.
//! The scheme name is case-insensitive, the id may not hold a colon (it is
//! form-encoded), and everything after the first colon is the secret, colons
//! included. Decoding happens in a scratch buffer the caller owns (and should
//! zero afterwards), so parsing allocates nothing.

use crate::base64;
use crate::form::hex_value;
use core::fmt;

/// Size of the scratch buffer [`parse`] needs for the largest header it
/// accepts (see [`crate::Limits::max_authorization_len`]).
pub const SCRATCH_LEN: usize = 1024;

/// Client credentials taken from a Basic `Authorization` header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BasicCredentials<'a> {
    /// The client id, decoded.
    pub client_id: &'a str,
    /// The client secret, decoded. Never shown by `Debug`.
    pub client_secret: &'a str,
}

impl fmt::Debug for BasicCredentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// Why an `Authorization` header was not usable Basic credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasicError {
    /// The scheme is not `Basic` (another scheme, or no credentials at all).
    NotBasic,
    /// The header is longer than the scratch buffer or the configured limit.
    TooLong,
    /// The credentials are not valid base64.
    BadBase64,
    /// The decoded credentials have no `:` between id and secret.
    MissingColon,
    /// The id or secret has invalid percent-encoding.
    BadPercentEncoding,
    /// The decoded id or secret is not UTF-8.
    InvalidUtf8,
    /// The client id is empty.
    EmptyClientId,
}

impl BasicError {
    /// A description fit for `error_description` (§5.2 characters only).
    pub const fn description(self) -> &'static str {
        match self {
            BasicError::NotBasic => "The Authorization header must use the Basic scheme.",
            BasicError::TooLong => "The Authorization header is too long.",
            BasicError::BadBase64 => "The Basic credentials are not valid base64.",
            BasicError::MissingColon => "The Basic credentials have no colon separator.",
            BasicError::BadPercentEncoding => "The Basic credentials have invalid percent-encoding.",
            BasicError::InvalidUtf8 => "The Basic credentials are not valid UTF-8.",
            BasicError::EmptyClientId => "The Basic credentials have an empty client id.",
        }
    }
}

impl fmt::Display for BasicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Parses an `Authorization` header value as Basic client credentials,
/// decoding into `scratch`. The header should already be checked against the
/// configured length limit; a header that does not fit `scratch` is refused.
pub fn parse<'s>(header: &[u8], scratch: &'s mut [u8]) -> Result<BasicCredentials<'s>, BasicError> {
    let header = trim(header);
    let Some((scheme, rest)) = header.split_at_checked(5) else {
        return Err(BasicError::NotBasic);
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(BasicError::NotBasic);
    }
    // RFC 7235: one or more spaces between scheme and credentials.
    let credentials = match rest.first() {
        Some(b' ') => trim(rest),
        None => return Err(BasicError::BadBase64),
        Some(_) => return Err(BasicError::NotBasic),
    };
    if credentials.is_empty() {
        return Err(BasicError::BadBase64);
    }
    if credentials.len() > scratch.len() {
        return Err(BasicError::TooLong);
    }
    let n = base64::decode_standard(credentials, scratch).map_err(|e| match e {
        base64::DecodeError::Invalid => BasicError::BadBase64,
        base64::DecodeError::TooLong => BasicError::TooLong,
    })?;
    let decoded = &mut scratch[..n];
    let colon = decoded.iter().position(|&b| b == b':').ok_or(BasicError::MissingColon)?;
    // The usual case, nothing percent-encoded: one UTF-8 check for both.
    if !crate::form::needs_decoding(decoded) {
        let text = core::str::from_utf8(decoded).map_err(|_| BasicError::InvalidUtf8)?;
        let (id, secret) = (text.get(..colon).unwrap_or_default(), text.get(colon + 1..).unwrap_or_default());
        if id.is_empty() {
            return Err(BasicError::EmptyClientId);
        }
        return Ok(BasicCredentials { client_id: id, client_secret: secret });
    }
    let (id_raw, rest) = decoded.split_at_mut(colon);
    let secret_raw = &mut rest[1..];
    let id = decode_in_place(id_raw)?;
    let secret = decode_in_place(secret_raw)?;
    if id.is_empty() {
        return Err(BasicError::EmptyClientId);
    }
    Ok(BasicCredentials { client_id: id, client_secret: secret })
}

/// Form-urldecodes `buf` in place (decoding never grows) and returns the
/// decoded prefix as UTF-8.
fn decode_in_place(buf: &mut [u8]) -> Result<&str, BasicError> {
    if !crate::form::needs_decoding(buf) {
        return core::str::from_utf8(buf).map_err(|_| BasicError::InvalidUtf8);
    }
    let (mut i, mut o) = (0, 0);
    while i < buf.len() {
        let decoded = match buf[i] {
            b'+' => b' ',
            b'%' => {
                let hi = buf.get(i + 1).copied().and_then(hex_value);
                let lo = buf.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(BasicError::BadPercentEncoding);
                };
                i += 2;
                (hi << 4) | lo
            }
            other => other,
        };
        // o <= i always holds: decoding never grows the input.
        buf[o] = decoded;
        o += 1;
        i += 1;
    }
    core::str::from_utf8(&buf[..o]).map_err(|_| BasicError::InvalidUtf8)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Builds a Basic header value for `client_id` and `client_secret`, encoding
/// both as §2.3.1 requires. For clients, tests and benches.
pub fn encode(client_id: &str, client_secret: &str) -> alloc::string::String {
    use alloc::string::String;
    let mut plain = String::new();
    crate::form::encode(client_id, &mut plain);
    plain.push(':');
    crate::form::encode(client_secret, &mut plain);
    let mut b64 = alloc::vec![0u8; base64::encoded_len_nopad(plain.len())];
    // The buffer has exactly the length the encoder asks for.
    let _ = base64::encode_standard_nopad(plain.as_bytes(), &mut b64);
    let mut out = String::from("Basic ");
    out.extend(b64.iter().map(|&b| char::from(b)));
    while (out.len() - 6) % 4 != 0 {
        out.push('=');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn b64(s: &str) -> String {
        let mut out = alloc::vec![0u8; base64::encoded_len_nopad(s.len())];
        base64::encode_standard_nopad(s.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn check(header: &str) -> Result<(String, String), BasicError> {
        let mut scratch = [0u8; SCRATCH_LEN];
        parse(header.as_bytes(), &mut scratch).map(|c| (c.client_id.into(), c.client_secret.into()))
    }

    macro_rules! case {
        ($h:expr => Err($e:ident)) => {
            assert_eq!(check(&$h), Err(BasicError::$e), "header {:?}", $h)
        };
        ($h:expr => ($id:expr, $secret:expr)) => {
            assert_eq!(check(&$h), Ok(($id.into(), $secret.into())), "header {:?}", $h)
        };
    }

    #[test]
    fn table() {
        case!(alloc::format!("Basic {}", b64("legacy:s3cret")) => ("legacy", "s3cret"));
        case!(alloc::format!("basic {}", b64("legacy:s3cret")) => ("legacy", "s3cret"));
        case!(alloc::format!("BASIC   {}  ", b64("legacy:s3cret")) => ("legacy", "s3cret"));
        case!(alloc::format!("bAsIc {}", b64("a:b:c:d")) => ("a", "b:c:d"));
        case!(alloc::format!("Basic {}", b64("a%3Ab:x%3Ay")) => ("a:b", "x:y"));
        case!(alloc::format!("Basic {}", b64("cli+ent:p%C3%A4ss")) => ("cli ent", "päss"));
        case!(alloc::format!("Basic {}", b64("clïent:sëcret")) => ("clïent", "sëcret"));
        case!(alloc::format!("Basic {}", b64("legacy:")) => ("legacy", ""));
        case!(alloc::format!("Basic {}", b64("legacy")) => Err(MissingColon));
        case!(alloc::format!("Basic {}", b64(":secret")) => Err(EmptyClientId));
        case!(alloc::format!("Basic {}", b64("a%zz:b")) => Err(BadPercentEncoding));
        case!(alloc::format!("Basic {}", b64("a:%FF")) => Err(InvalidUtf8));
        case!("Basic !!!!" => Err(BadBase64));
        case!("Basic a" => Err(BadBase64));
        case!("Basic " => Err(BadBase64));
        case!("Basic" => Err(BadBase64));
        case!("Bearer abc" => Err(NotBasic));
        case!("Basicabc" => Err(NotBasic));
        case!("" => Err(NotBasic));
        case!(alloc::format!("Basic {}", "QUJD".repeat(300)) => Err(TooLong));
    }

    #[test]
    fn encode_round_trips() {
        for (id, secret) in [("legacy", "s3cret"), ("a:b", "p a+s%s:"), ("ü", "")] {
            let header = encode(id, secret);
            assert_eq!(check(&header), Ok((id.into(), secret.into())));
        }
    }

    #[test]
    fn debug_redacts() {
        let mut scratch = [0u8; SCRATCH_LEN];
        let c = parse(encode("legacy", "hunter2").as_bytes(), &mut scratch).unwrap();
        assert!(!alloc::format!("{c:?}").contains("hunter2"));
    }
}
