//! JSON response bodies, written into a buffer the caller owns: the token
//! response (RFC 6749 §5.1), the error response (§5.2), introspection
//! (RFC 7662 §2.2) and server metadata (RFC 8414 §2). Strings are escaped per
//! RFC 8259 §7, so no value can break out of its string.

use crate::error::OAuthError;
use alloc::vec::Vec;

/// Appends `s` as a JSON string literal, quotes included.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    write_escaped(out, s.as_bytes());
}

/// [`write_string`] on the bytes of a string. The escapes touch only ASCII
/// bytes, so UTF-8 in gives UTF-8 out.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    // Tokens, scopes and codes never need escaping: check eight bytes at a
    // time and copy them in one go.
    if crate::swar::is_json_plain(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    // Only 32-bit divisions: a 32-bit core does one in an instruction, and a
    // 64-bit one is a library routine (888 bytes of a Cortex-M4's flash).
    // Lifetimes fit in 32 bits; a larger value is taken down four digits at
    // a time by long division in 16-bit limbs.
    let mut wide = n;
    while wide > u64::from(u32::MAX) {
        let mut rem = 0u32;
        let mut quotient = 0u64;
        for shift in [48u32, 32, 16, 0] {
            // rem < 10_000, so this stays below 10_000 << 16 < 2^32.
            let cur = (rem << 16) | ((wide >> shift) as u32 & 0xffff);
            quotient |= u64::from(cur / 10_000) << shift;
            rem = cur % 10_000;
        }
        for _ in 0..4 {
            i -= 1;
            buf[i] = b'0' + (rem % 10) as u8;
            rem /= 10;
        }
        wide = quotient;
    }
    let mut m = wide as u32;
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes one JSON object member by member.
pub struct JsonObject<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> JsonObject<'o> {
    /// Opens an object at the end of `out`.
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_string(self.out, key);
        self.out.push(b':');
    }

    /// A string member.
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        write_string(self.out, value);
        self
    }

    /// A number member.
    pub fn number(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        write_u64(self.out, value);
        self
    }

    /// A boolean member.
    pub fn boolean(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// An array-of-strings member.
    pub fn strings<'s>(&mut self, key: &str, values: impl IntoIterator<Item = &'s str>) -> &mut Self {
        self.key(key);
        self.out.push(b'[');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_string(self.out, v);
        }
        self.out.push(b']');
        self
    }

    /// Closes the object.
    pub fn finish(&mut self) {
        self.out.push(b'}');
    }
}

/// The successful token response, RFC 6749 §5.1.
pub fn write_token(out: &mut Vec<u8>, access_token: &str, refresh_token: Option<&str>, scope: &str, expires_in: u64) {
    write_token_bytes(out, access_token.as_bytes(), refresh_token.map(str::as_bytes), scope, "bearer", expires_in);
}

/// [`write_token`] with the tokens as bytes (UTF-8, as minted tokens are).
/// Every grant writes one of these, so the constant members go out whole.
pub(crate) fn write_token_bytes(
    out: &mut Vec<u8>,
    access_token: &[u8],
    refresh_token: Option<&[u8]>,
    scope: &str,
    token_type: &str,
    expires_in: u64,
) {
    out.extend_from_slice(br#"{"access_token":"#);
    write_escaped(out, access_token);
    if let Some(refresh) = refresh_token {
        out.extend_from_slice(br#","refresh_token":"#);
        write_escaped(out, refresh);
    }
    out.extend_from_slice(br#","scope":"#);
    write_string(out, scope);
    out.extend_from_slice(br#","token_type":"#);
    write_string(out, token_type);
    out.extend_from_slice(br#","expires_in":"#);
    write_u64(out, expires_in);
    out.push(b'}');
}

/// The error response, RFC 6749 §5.2. With `detailed` false the
/// `error_description` is left out.
pub fn write_error(out: &mut Vec<u8>, error: &OAuthError, detailed: bool) {
    let mut o = JsonObject::new(out);
    o.string("error", error.code.as_str());
    if detailed && !error.description.is_empty() {
        o.string("error_description", error.description);
    }
    o.finish();
}

/// An active token's introspection data, RFC 7662 §2.2.
#[derive(Clone, Copy, Debug)]
pub struct Introspection<'i> {
    /// Space-delimited granted scope.
    pub scope: &'i str,
    /// The client the token was issued to.
    pub client_id: &'i str,
    /// The resource owner, if any.
    pub username: Option<&'i str>,
    /// `access_token` or `refresh_token`.
    pub token_type: &'i str,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issue time, seconds since the epoch.
    pub iat: u64,
    /// The issuer.
    pub iss: &'i str,
    /// The subject: the username, or the client id for client credentials.
    pub sub: &'i str,
    /// `cnf` (RFC 7800) of a bound token: the member (`jkt`, `x5t#S256`)
    /// and the base64url thumbprint.
    pub cnf: Option<(&'i str, &'i str)>,
}

/// The introspection response; `None` is `{"active":false}` (RFC 7662 §2.2:
/// nothing else is said about an inactive token).
pub fn write_introspection(out: &mut Vec<u8>, token: Option<&Introspection<'_>>) {
    let mut o = JsonObject::new(out);
    o.boolean("active", token.is_some());
    if let Some(t) = token {
        o.string("scope", t.scope).string("client_id", t.client_id);
        if let Some(u) = t.username {
            o.string("username", u);
        }
        o.string("token_type", t.token_type)
            .number("exp", t.exp)
            .number("iat", t.iat)
            .string("iss", t.iss)
            .string("sub", t.sub);
    }
    o.finish();
    if let Some((member, thumbprint)) = token.and_then(|t| t.cnf) {
        // Reopen the object for the nested member (RFC 9449 §6.2, RFC 8705 §3.2).
        out.pop();
        out.extend_from_slice(br#","cnf":"#);
        JsonObject::new(out).string(member, thumbprint).finish();
        out.push(b'}');
    }
}

/// Where the metadata document is served: RFC 8414 §3's well-known URI for
/// an issuer without a path.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// Authorization server metadata, RFC 8414 §2.
#[derive(Clone, Copy, Debug)]
pub struct Metadata<'m> {
    /// `issuer`.
    pub issuer: &'m str,
    /// `token_endpoint`, absolute.
    pub token_endpoint: &'m str,
    /// `revocation_endpoint` (RFC 7009), if served.
    pub revocation_endpoint: Option<&'m str>,
    /// `introspection_endpoint` (RFC 7662), if served.
    pub introspection_endpoint: Option<&'m str>,
    /// `jwks_uri`, if JWT access tokens are enabled.
    pub jwks_uri: Option<&'m str>,
    /// The grants enabled on at least one client.
    pub grant_types: &'m [&'m str],
    /// Every configured scope.
    pub scopes: &'m [&'m str],
    /// The client authentication methods clients may be configured for
    /// (`token_endpoint_auth_methods_supported`, and the same at the
    /// revocation and introspection endpoints).
    pub auth_methods: &'m [&'m str],
    /// The JWS algorithms accepted in client assertions.
    pub assertion_algs: &'m [&'m str],
    /// The JWS algorithms accepted in DPoP proofs (RFC 9449 §5.1).
    pub dpop_algs: &'m [&'m str],
    /// Whether certificate-bound access tokens are offered (RFC 8705 §3.3).
    pub certificate_bound_tokens: bool,
}

/// The client authentication methods ropc accepts with no other
/// configuration.
pub const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// Writes the RFC 8414 metadata document.
pub fn write_metadata(out: &mut Vec<u8>, m: &Metadata<'_>) {
    let mut o = JsonObject::new(out);
    o.string("issuer", m.issuer).string("token_endpoint", m.token_endpoint);
    let methods = m.auth_methods.iter().copied();
    o.strings("token_endpoint_auth_methods_supported", methods.clone());
    if !m.assertion_algs.is_empty() {
        o.strings("token_endpoint_auth_signing_alg_values_supported", m.assertion_algs.iter().copied());
    }
    o.strings("dpop_signing_alg_values_supported", m.dpop_algs.iter().copied());
    o.boolean("tls_client_certificate_bound_access_tokens", m.certificate_bound_tokens);
    if let Some(jwks) = m.jwks_uri {
        o.string("jwks_uri", jwks);
    }
    o.strings("grant_types_supported", m.grant_types.iter().copied());
    // RFC 8414 §2 requires this member; ropc has no authorization endpoint.
    o.strings("response_types_supported", []);
    o.strings("scopes_supported", m.scopes.iter().copied());
    if let Some(revocation) = m.revocation_endpoint {
        o.string("revocation_endpoint", revocation);
        o.strings("revocation_endpoint_auth_methods_supported", methods.clone());
    }
    if let Some(introspection) = m.introspection_endpoint {
        o.string("introspection_endpoint", introspection);
        o.strings("introspection_endpoint_auth_methods_supported", methods.clone());
    }
    o.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorCode, Reason};

    #[test]
    fn numbers_are_written_as_decimal_across_the_whole_u64_range() {
        let mut values = alloc::vec![0, 9, 10, 600, 86_400, 4_294_967_295, 4_294_967_296, 10_000_000_000, u64::MAX];
        values.extend([9_999_999_999_999, 42_949_672_960_000, 1_844_674_407_370_955_161]);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for n in values {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, alloc::format!("{n}").into_bytes(), "{n}");
        }
    }

    fn string(s: &str) -> alloc::string::String {
        let mut out = Vec::new();
        write_string(&mut out, s);
        alloc::string::String::from_utf8(out).unwrap()
    }

    #[test]
    fn escaping() {
        let cases = [
            ("plain", "\"plain\""),
            ("q\"uote", "\"q\\\"uote\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("line\nfeed\r\t", "\"line\\nfeed\\r\\t\""),
            ("nul\0bell\u{7}del\u{7f}", "\"nul\\u0000bell\\u0007del\\u007f\""),
            ("ünï😀", "\"ünï😀\""),
            ("", "\"\""),
        ];
        for (input, expected) in cases {
            assert_eq!(string(input), expected);
        }
    }

    #[test]
    fn token_response() {
        let mut out = Vec::new();
        write_token(&mut out, "AT", Some("RT"), "read write", 300);
        assert_eq!(
            out,
            br#"{"access_token":"AT","refresh_token":"RT","scope":"read write","token_type":"bearer","expires_in":300}"#
        );
        out.clear();
        write_token(&mut out, "AT", None, "", 0);
        assert_eq!(out, br#"{"access_token":"AT","scope":"","token_type":"bearer","expires_in":0}"#);
    }

    #[test]
    fn error_response() {
        let e = OAuthError::new(ErrorCode::InvalidGrant, Reason::WrongPassword, "Bad.");
        let mut out = Vec::new();
        write_error(&mut out, &e, true);
        assert_eq!(out, br#"{"error":"invalid_grant","error_description":"Bad."}"#);
        out.clear();
        write_error(&mut out, &e, false);
        assert_eq!(out, br#"{"error":"invalid_grant"}"#);
    }

    #[test]
    fn introspection() {
        let mut out = Vec::new();
        write_introspection(&mut out, None);
        assert_eq!(out, br#"{"active":false}"#);
        out.clear();
        let t = Introspection {
            scope: "read",
            client_id: "c",
            username: Some("al\"ice"),
            token_type: "access_token",
            exp: 20,
            iat: 10,
            iss: "https://x",
            sub: "al\"ice",
            cnf: None,
        };
        write_introspection(&mut out, Some(&t));
        assert_eq!(
            alloc::string::String::from_utf8(out.clone()).unwrap(),
            r#"{"active":true,"scope":"read","client_id":"c","username":"al\"ice","token_type":"access_token","exp":20,"iat":10,"iss":"https://x","sub":"al\"ice"}"#
        );
        out.clear();
        write_introspection(&mut out, Some(&Introspection { cnf: Some(("x5t#S256", "bwcK")), username: None, ..t }));
        assert_eq!(
            alloc::string::String::from_utf8(out).unwrap(),
            r#"{"active":true,"scope":"read","client_id":"c","token_type":"access_token","exp":20,"iat":10,"iss":"https://x","sub":"al\"ice","cnf":{"x5t#S256":"bwcK"}}"#
        );
    }
}
