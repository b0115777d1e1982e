//! `application/x-www-form-urlencoded` bodies, as RFC 6749 Appendix B uses
//! them.
//!
//! - `+` is a space and `%XX` a byte; the decoded value must be UTF-8.
//! - A parameter without a value counts as omitted (RFC 6749 §3.2).
//! - Parameters ropc does not know are ignored (§3.2, §4.3.2).
//! - A parameter the RFC defines may not appear twice (§3.2): `invalid_request`.
//! - Values borrow from the body unless decoding changed them.
//!
//! The body is checked against [`Limits`] before anything proportional to its
//! size is done, and the parse is one linear pass with no recursion.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Deref;
use zeroize::Zeroize;

/// Bounds on what a client may send. Input over a limit is refused with
/// `invalid_request` before any work in proportion to its size is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body, in bytes.
    pub max_body_len: usize,
    /// Most `&`-separated parameters accepted in one body, known or not.
    pub max_params: usize,
    /// Largest accepted `Authorization` header value, in bytes.
    pub max_authorization_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body_len: 8 * 1024, max_params: 64, max_authorization_len: 1024 }
    }
}

/// The parameters ropc reads from a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Param {
    /// `grant_type`, RFC 6749 §4.3.2.
    GrantType,
    /// `username`, §4.3.2.
    Username,
    /// `password`, §4.3.2.
    Password,
    /// `scope`, §3.3.
    Scope,
    /// `refresh_token`, §6.
    RefreshToken,
    /// `client_id`, §2.3.1.
    ClientId,
    /// `client_secret`, §2.3.1.
    ClientSecret,
    /// `token`, RFC 7009 §2.1 and RFC 7662 §2.1.
    Token,
    /// `token_type_hint`, RFC 7009 §2.1 and RFC 7662 §2.1.
    TokenTypeHint,
    /// `client_assertion_type`, RFC 7521 §4.2.
    ClientAssertionType,
    /// `client_assertion`, RFC 7521 §4.2 (a JWT: RFC 7523 §2.2).
    ClientAssertion,
}

const PARAM_COUNT: usize = 11;

impl Param {
    /// Every parameter, in index order.
    pub const ALL: [Param; PARAM_COUNT] = [
        Param::GrantType,
        Param::Username,
        Param::Password,
        Param::Scope,
        Param::RefreshToken,
        Param::ClientId,
        Param::ClientSecret,
        Param::Token,
        Param::TokenTypeHint,
        Param::ClientAssertionType,
        Param::ClientAssertion,
    ];

    /// The parameter's name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Param::GrantType => "grant_type",
            Param::Username => "username",
            Param::Password => "password",
            Param::Scope => "scope",
            Param::RefreshToken => "refresh_token",
            Param::ClientId => "client_id",
            Param::ClientSecret => "client_secret",
            Param::Token => "token",
            Param::TokenTypeHint => "token_type_hint",
            Param::ClientAssertionType => "client_assertion_type",
            Param::ClientAssertion => "client_assertion",
        }
    }

    fn from_name(name: &[u8]) -> Option<Param> {
        // By length, then as a fixed-size array: each comparison is a word
        // compare or two, not a call to memcmp.
        fn is<const N: usize>(name: &[u8], known: &[u8; N]) -> bool {
            <&[u8; N]>::try_from(name).is_ok_and(|name| name == known)
        }
        Some(match name.len() {
            5 if is(name, b"scope") => Param::Scope,
            5 if is(name, b"token") => Param::Token,
            8 if is(name, b"username") => Param::Username,
            8 if is(name, b"password") => Param::Password,
            9 if is(name, b"client_id") => Param::ClientId,
            10 if is(name, b"grant_type") => Param::GrantType,
            13 if is(name, b"refresh_token") => Param::RefreshToken,
            13 if is(name, b"client_secret") => Param::ClientSecret,
            15 if is(name, b"token_type_hint") => Param::TokenTypeHint,
            16 if is(name, b"client_assertion") => Param::ClientAssertion,
            21 if is(name, b"client_assertion_type") => Param::ClientAssertionType,
            _ => return None,
        })
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// A decoded parameter value: borrowed from the body when decoding changed
/// nothing, owned otherwise. Owned copies are zeroed when dropped, because a
/// value may be a password or a secret. `Debug` never shows the content.
#[derive(Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// The value exactly as it appeared in the input.
    Borrowed(&'a str),
    /// The value after `+` and `%XX` decoding.
    Owned(String),
}

impl Deref for Value<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Value::Borrowed(s) => s,
            Value::Owned(s) => s,
        }
    }
}

impl Drop for Value<'_> {
    fn drop(&mut self) {
        if let Value::Owned(s) = self {
            s.zeroize();
        }
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value(<{} bytes>)", self.len())
    }
}

/// Why a form body was refused. Each maps to `invalid_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormError {
    /// The body is longer than [`Limits::max_body_len`].
    TooLarge,
    /// More parameters than [`Limits::max_params`].
    TooManyParameters,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// The decoded value is not UTF-8.
    InvalidUtf8,
    /// A parameter RFC 6749 defines was sent twice (§3.2).
    Duplicate(Param),
}

impl FormError {
    /// A description fit for `error_description` (§5.2 characters only).
    pub const fn description(self) -> &'static str {
        match self {
            FormError::TooLarge => "The request body is too large.",
            FormError::TooManyParameters => "The request has too many parameters.",
            FormError::BadPercentEncoding => "The request body has invalid percent-encoding.",
            FormError::InvalidUtf8 => "A request parameter is not valid UTF-8.",
            FormError::Duplicate(p) => match p {
                Param::GrantType => "The grant_type parameter is repeated.",
                Param::Username => "The username parameter is repeated.",
                Param::Password => "The password parameter is repeated.",
                Param::Scope => "The scope parameter is repeated.",
                Param::RefreshToken => "The refresh_token parameter is repeated.",
                Param::ClientId => "The client_id parameter is repeated.",
                Param::ClientSecret => "The client_secret parameter is repeated.",
                Param::Token => "The token parameter is repeated.",
                Param::TokenTypeHint => "The token_type_hint parameter is repeated.",
                Param::ClientAssertionType => "The client_assertion_type parameter is repeated.",
                Param::ClientAssertion => "The client_assertion parameter is repeated.",
            },
        }
    }
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// The known parameters of one body. Absent and empty parameters are `None`.
#[derive(Debug, Default)]
pub struct Form<'a> {
    values: [Option<Value<'a>>; PARAM_COUNT],
}

impl<'a> Form<'a> {
    /// The value of `param`, if it was sent with a non-empty value.
    pub fn get(&self, param: Param) -> Option<&str> {
        self.values[param.index()].as_deref()
    }

    /// Moves the value of `param` out of the form.
    pub fn take(&mut self, param: Param) -> Option<Value<'a>> {
        self.values[param.index()].take()
    }

    /// Parses a whole body. See the module documentation for the rules.
    pub fn parse(body: &'a [u8], limits: &Limits) -> Result<Self, FormError> {
        let mut form = Form::default();
        form.parse_into(body, limits)?;
        Ok(form)
    }

    /// [`Form::parse`] into an empty form the caller holds, which spares
    /// moving the whole form on return (it is a hot path's largest value).
    pub(crate) fn parse_into(&mut self, body: &'a [u8], limits: &Limits) -> Result<(), FormError> {
        if body.len() > limits.max_body_len {
            return Err(FormError::TooLarge);
        }
        // Nearly every body is UTF-8: one check of the whole body is cheaper
        // than one per value that needs no decoding.
        let text = core::str::from_utf8(body).ok();
        let form = self;
        let mut count = 0usize;
        let mut start = 0;
        while start <= body.len() {
            let len = crate::swar::find(b'&', &body[start..]).unwrap_or(body.len() - start);
            let pair = start..start + len;
            start = pair.end + 1;
            if pair.is_empty() {
                continue;
            }
            count += 1;
            if count > limits.max_params {
                return Err(FormError::TooManyParameters);
            }
            let (name, value) = match crate::swar::find(b'=', &body[pair.clone()]) {
                Some(i) => (pair.start..pair.start + i, pair.start + i + 1..pair.end),
                None => (pair.clone(), pair.end..pair.end),
            };
            let Some(param) = decode_name(&body[name]) else { continue };
            // RFC 6749 §3.2: sent without a value = omitted.
            if value.is_empty() {
                continue;
            }
            let slot = &mut form.values[param.index()];
            if slot.is_some() {
                return Err(FormError::Duplicate(param));
            }
            let raw = &body[value.clone()];
            let value = if needs_decoding(raw) {
                decode_owned(raw)?
            } else {
                match text.and_then(|t| t.get(value)) {
                    Some(unchanged) => Value::Borrowed(unchanged),
                    None => decode(raw)?,
                }
            };
            if !value.is_empty() {
                *slot = Some(value);
            }
        }
        Ok(())
    }
}

/// Names are matched after decoding, but a name longer than any known one
/// cannot match, so it is skipped without allocating.
fn decode_name(raw: &[u8]) -> Option<Param> {
    // Known names hold no `%` or `+`, so an exact match needs no scan.
    if let Some(param) = Param::from_name(raw) {
        return Some(param);
    }
    let mut buf = [0u8; 48];
    if raw.len() > buf.len() || !needs_decoding(raw) {
        return None;
    }
    let n = decode_into(raw, &mut buf).ok()?;
    Param::from_name(&buf[..n])
}

/// Whether `raw` holds a `+` or a `%`, i.e. decoding would change it.
pub(crate) fn needs_decoding(raw: &[u8]) -> bool {
    crate::swar::contains_either(b'%', b'+', raw)
}

/// The value of one hex digit.
pub(crate) const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `+` and `%XX` from `raw` into `out` (at least `raw.len()` long)
/// and returns the decoded length. Decoding never grows the input.
pub fn decode_into(raw: &[u8], out: &mut [u8]) -> Result<usize, FormError> {
    let mut i = 0;
    let mut o = 0;
    while i < raw.len() {
        let b = raw[i];
        let decoded = match b {
            b'+' => b' ',
            b'%' => {
                let hi = raw.get(i + 1).copied().and_then(hex_value);
                let lo = raw.get(i + 2).copied().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        i += 2;
                        (hi << 4) | lo
                    }
                    _ => return Err(FormError::BadPercentEncoding),
                }
            }
            other => other,
        };
        *out.get_mut(o).ok_or(FormError::TooLarge)? = decoded;
        o += 1;
        i += 1;
    }
    Ok(o)
}

/// Decodes one form-encoded value. Borrows when no `+` or `%` occurs.
pub fn decode(raw: &[u8]) -> Result<Value<'_>, FormError> {
    if !needs_decoding(raw) {
        return core::str::from_utf8(raw).map(Value::Borrowed).map_err(|_| FormError::InvalidUtf8);
    }
    decode_owned(raw)
}

/// Decodes a value that holds a `+` or `%` into a new string. Runs between
/// escapes are copied with `+` mapped to space (a loop without branches);
/// only each `%XX` is handled on its own.
fn decode_owned(raw: &[u8]) -> Result<Value<'static>, FormError> {
    let mut buf = Vec::with_capacity(raw.len());
    let mut rest = raw;
    loop {
        let run = crate::swar::find(b'%', rest).unwrap_or(rest.len());
        buf.extend(rest[..run].iter().map(|&b| if b == b'+' { b' ' } else { b }));
        rest = &rest[run..];
        let byte = match rest {
            [] => break,
            [_, hi, lo, ..] => hex_value(*hi).zip(hex_value(*lo)).map(|(hi, lo)| (hi << 4) | lo),
            _ => None,
        };
        let Some(byte) = byte else {
            buf.zeroize();
            return Err(FormError::BadPercentEncoding);
        };
        buf.push(byte);
        rest = &rest[3..];
    }
    match String::from_utf8(buf) {
        Ok(s) => Ok(Value::Owned(s)),
        Err(e) => {
            let mut bytes = e.into_bytes();
            bytes.zeroize();
            Err(FormError::InvalidUtf8)
        }
    }
}

/// Appends `value` to `out` form-urlencoded (the inverse of [`decode`]):
/// unreserved characters stay, space becomes `+`, everything else is `%XX`.
pub fn encode(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'*' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
}

/// Encodes name/value pairs as a form body (for clients, tests and benches).
pub fn encode_pairs(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(name, &mut out);
        out.push('=');
        encode(value, &mut out);
    }
    out
}

/// Collects the known parameters as `(name, value)` pairs (tests, fuzzing).
pub fn known_pairs<'f>(form: &'f Form<'_>) -> Vec<(Param, &'f str)> {
    Param::ALL.iter().filter_map(|&p| form.get(p).map(|v| (p, v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<(Param, alloc::string::String)>, FormError> {
        let form = Form::parse(body.as_bytes(), &Limits::default())?;
        Ok(known_pairs(&form).into_iter().map(|(p, v)| (p, v.into())).collect())
    }

    macro_rules! case {
        ($body:expr => Err($e:expr)) => {
            assert_eq!(parse($body), Err($e), "body {:?}", $body)
        };
        ($body:expr => [$(($p:ident, $v:expr)),*]) => {
            assert_eq!(parse($body), Ok(alloc::vec![$((Param::$p, alloc::string::String::from($v))),*]), "body {:?}", $body)
        };
    }

    #[test]
    fn table() {
        case!("" => []);
        case!("grant_type=password" => [(GrantType, "password")]);
        case!("username=a+b&password=p%40ss%3Aw%2Bord" => [(Username, "a b"), (Password, "p@ss:w+ord")]);
        case!("username=J%C3%B6rg" => [(Username, "Jörg")]);
        case!("username=Jörg" => [(Username, "Jörg")]);
        case!("scope=&scope=read" => [(Scope, "read")]);
        case!("scope&scope=read" => [(Scope, "read")]);
        case!("scope=read&scope=" => [(Scope, "read")]);
        case!("&&grant_type=password&&" => [(GrantType, "password")]);
        case!("foo=bar&foo=baz&grant_type=x" => [(GrantType, "x")]);
        case!("grant%5Ftype=password" => [(GrantType, "password")]);
        case!("password==x=" => [(Password, "=x=")]);
        case!("scope=a&scope=b" => Err(FormError::Duplicate(Param::Scope)));
        case!("client_id=a&client_id=a" => Err(FormError::Duplicate(Param::ClientId)));
        case!("password=%" => Err(FormError::BadPercentEncoding));
        case!("password=%4" => Err(FormError::BadPercentEncoding));
        case!("password=%zz" => Err(FormError::BadPercentEncoding));
        case!("password=%FF" => Err(FormError::InvalidUtf8));
        case!("password=%C3" => Err(FormError::InvalidUtf8));
        case!("password=a%00b" => [(Password, "a\0b")]);
        // Unknown parameters are ignored, even when malformed.
        case!("junk=%zz&grant_type=password" => [(GrantType, "password")]);
        case!("username=%2B" => [(Username, "+")]);
        case!("username=" => []);
        case!("username=%20" => [(Username, " ")]);
    }

    #[test]
    fn limits() {
        let limits = Limits { max_body_len: 16, max_params: 3, max_authorization_len: 64 };
        assert!(Form::parse(b"a=1&b=2&c=3", &limits).is_ok());
        assert_eq!(Form::parse(b"a=1&b=2&c=3&d=4", &limits).unwrap_err(), FormError::TooManyParameters);
        assert_eq!(Form::parse(&[b'a'; 17], &limits).unwrap_err(), FormError::TooLarge);
    }

    #[test]
    fn borrows_when_unencoded() {
        let form = Form::parse(b"username=alice&password=p%21", &Limits::default()).unwrap();
        assert!(matches!(form.values[Param::Username.index()], Some(Value::Borrowed("alice"))));
        assert!(matches!(form.values[Param::Password.index()], Some(Value::Owned(_))));
    }

    #[test]
    fn debug_redacts() {
        let form = Form::parse(b"password=hunter2", &Limits::default()).unwrap();
        let shown = alloc::format!("{form:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn descriptions_are_rfc_clean() {
        let all =
            [FormError::TooLarge, FormError::TooManyParameters, FormError::BadPercentEncoding, FormError::InvalidUtf8];
        for e in all.into_iter().chain(Param::ALL.map(FormError::Duplicate)) {
            assert!(crate::OAuthError::is_valid_description(e.description()), "{e:?}");
        }
    }
}
