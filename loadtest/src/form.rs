//! Request encodings: `application/x-www-form-urlencoded` values and the HTTP
//! Basic client credentials of RFC 6749 §2.3.1, plus [`Secret`], a string that
//! never shows itself in `Debug`.

use std::fmt;

/// A client secret or a token: printed as `<redacted>` by `Debug`, and with
/// no `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for building a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Appends `value` to `out`, form-urlencoded: `*-._` and alphanumerics stay,
/// space becomes `+`, every other byte is `%XX` (the WHATWG URL standard's
/// `application/x-www-form-urlencoded` serializer).
pub fn push_encoded(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

/// `value`, form-urlencoded.
pub fn encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_encoded(&mut out, value);
    out
}

/// The `Authorization` header value for HTTP Basic client authentication.
/// RFC 6749 §2.3.1: the client id and secret are form-urlencoded first, then
/// used as the Basic user-id and password.
pub fn basic_authorization(client_id: &str, secret: &str) -> String {
    let mut pair = encoded(client_id);
    pair.push(':');
    push_encoded(&mut pair, secret);
    let mut out = String::from("Basic ");
    push_base64(&mut out, pair.as_bytes());
    out
}

/// Appends standard base64 with padding (RFC 4648 §4).
fn push_base64(out: &mut String, input: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        for (input, expected) in [
            ("user0", "user0"),
            ("a b", "a+b"),
            ("a+b&c=d", "a%2Bb%26c%3Dd"),
            ("*-._~", "*-._%7E"),
            ("é", "%C3%A9"),
            ("", ""),
        ] {
            assert_eq!(encoded(input), expected, "{input:?}");
        }
    }

    #[test]
    fn base64_padding() {
        for (input, expected) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            let mut out = String::new();
            push_base64(&mut out, input.as_bytes());
            assert_eq!(out, expected, "{input:?}");
        }
    }

    #[test]
    fn basic_encodes_id_and_secret_first() {
        // "s3:cr t" -> "s3%3Acr+t"; "my client" -> "my+client".
        assert_eq!(basic_authorization("my client", "s3:cr t"), "Basic bXkrY2xpZW50OnMzJTNBY3IrdA==");
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
