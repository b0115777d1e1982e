//! The error model of RFC 6749 §5.2 (plus RFC 7009 §2.2.1), the HTTP status
//! each code maps to, and the operator-facing reason kept apart from what the
//! client is told.
//!
//! Descriptions are `&'static str` on purpose: a description can never carry
//! client input (so it cannot leak a username or echo an injection), and a
//! unit test checks every one of them against the §5.2 character set.

use core::fmt;

/// An OAuth error code, RFC 6749 §5.2 and RFC 7009 §2.2.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is missing a parameter, repeats one, or is malformed.
    InvalidRequest,
    /// Client authentication failed.
    InvalidClient,
    /// The grant (password, refresh token) is invalid, expired or revoked.
    InvalidGrant,
    /// The client may not use this grant type.
    UnauthorizedClient,
    /// The grant type is not supported by the server.
    UnsupportedGrantType,
    /// The requested scope is invalid, unknown or malformed.
    InvalidScope,
    /// RFC 7009 §2.2.1: revocation of this token type is not supported.
    UnsupportedTokenType,
    /// The server is overloaded; try again later (sent with `503`).
    TemporarilyUnavailable,
    /// An internal failure, e.g. the random source failed.
    ServerError,
    /// RFC 9449 §5: the DPoP proof is missing where required, or invalid.
    InvalidDpopProof,
}

impl ErrorCode {
    /// Every code, in the order of [`ErrorCode::index`].
    pub const ALL: [ErrorCode; 10] = [
        Self::InvalidRequest,
        Self::InvalidClient,
        Self::InvalidGrant,
        Self::UnauthorizedClient,
        Self::UnsupportedGrantType,
        Self::InvalidScope,
        Self::UnsupportedTokenType,
        Self::TemporarilyUnavailable,
        Self::ServerError,
        Self::InvalidDpopProof,
    ];

    /// A dense index, for tables keyed by error code (metrics).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The code as it appears in the `error` member.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
            Self::InvalidDpopProof => "invalid_dpop_proof",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request failed, for the operator's log. The client never sees this:
/// it gets only the [`ErrorCode`] (and a generic description), so that, for
/// example, an unknown user and a wrong password look the same from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The request could not be parsed or violates the protocol grammar.
    Malformed,
    /// A parameter the RFC defines was sent twice.
    DuplicateParameter,
    /// A header, or the number of parameters, exceeds a configured limit.
    TooLarge,
    /// The body exceeds `max_body_bytes` (answered `413`).
    BodyTooLarge,
    /// The request carried no client authentication.
    NoClientAuthentication,
    /// The request used two client authentication methods at once.
    MultipleClientAuthentication,
    /// The Authorization header is not usable Basic credentials.
    BadAuthorizationHeader,
    /// No client with the presented id is configured.
    UnknownClient,
    /// The client secret did not verify.
    BadClientSecret,
    /// The client lacks the capability for this grant.
    MissingCapability,
    /// The grant type is not one ropc implements.
    UnsupportedGrantType,
    /// The requested scope is malformed, or nothing requested may be granted.
    ScopeRefused,
    /// No user with that name exists (the client is told `invalid_grant`).
    UnknownUser,
    /// The user exists but the password is wrong.
    WrongPassword,
    /// The user is temporarily locked out.
    LockedUser,
    /// The account is disabled in its credential manager.
    DisabledAccount,
    /// At a refresh, the account was gone from its credential manager.
    AccountRemoved,
    /// At a refresh, the account's password had changed since the grant.
    PasswordChanged,
    /// The refresh token is unknown or was revoked.
    UnknownRefreshToken,
    /// The refresh token has expired.
    ExpiredRefreshToken,
    /// The refresh token was issued to a different client.
    RefreshTokenOfAnotherClient,
    /// The presented token is not a refresh token.
    NotARefreshToken,
    /// A refresh token that was already rotated was presented again: its
    /// grant family is revoked (RFC 9700 §4.14.2).
    RefreshTokenReuse,
    /// The password hashing queue is full.
    Overloaded,
    /// Too many failed logins from the client's IP (answered `429`).
    IpThrottled,
    /// The random source failed.
    RandomFailure,
    /// A JWT access token could not be signed (or no signer is set up).
    SigningFailure,
    /// The token store failed.
    StoreFailure,
    /// The credential manager (a database, a directory) did not answer.
    BackendUnavailable,
    /// The client used a method its configuration does not allow (a secret
    /// for a `private_key_jwt` client, say).
    WrongAuthMethod,
    /// The client assertion (RFC 7523) is malformed, badly signed, expired,
    /// or for another audience.
    BadAssertion,
    /// The client assertion's `jti` was seen before.
    AssertionReplayed,
    /// The TLS client certificate is missing or does not match the client
    /// (RFC 8705 §2).
    BadClientCertificate,
    /// The DPoP proof is malformed, badly signed, stale, replayed or for
    /// another request (RFC 9449 §4.3).
    BadDpopProof,
    /// The client requires DPoP and the request carried no proof.
    DpopRequired,
    /// A refresh token bound to a key or certificate was presented without
    /// it, or with another one (RFC 9449 §5, RFC 8705 §3).
    BindingMismatch,
}

impl Reason {
    /// A short snake_case name for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed_request",
            Self::DuplicateParameter => "duplicate_parameter",
            Self::TooLarge => "too_large",
            Self::BodyTooLarge => "body_too_large",
            Self::NoClientAuthentication => "no_client_authentication",
            Self::MultipleClientAuthentication => "multiple_client_authentication",
            Self::BadAuthorizationHeader => "bad_authorization_header",
            Self::UnknownClient => "unknown_client",
            Self::BadClientSecret => "bad_client_secret",
            Self::MissingCapability => "missing_capability",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::ScopeRefused => "scope_refused",
            Self::UnknownUser => "unknown_user",
            Self::WrongPassword => "wrong_password",
            Self::LockedUser => "locked_user",
            Self::DisabledAccount => "disabled_account",
            Self::AccountRemoved => "account_removed",
            Self::PasswordChanged => "password_changed",
            Self::UnknownRefreshToken => "unknown_refresh_token",
            Self::ExpiredRefreshToken => "expired_refresh_token",
            Self::RefreshTokenOfAnotherClient => "refresh_token_of_another_client",
            Self::NotARefreshToken => "not_a_refresh_token",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::Overloaded => "overloaded",
            Self::IpThrottled => "ip_throttled",
            Self::RandomFailure => "random_failure",
            Self::SigningFailure => "signing_failure",
            Self::StoreFailure => "store_failure",
            Self::BackendUnavailable => "backend_unavailable",
            Self::WrongAuthMethod => "wrong_auth_method",
            Self::BadAssertion => "bad_assertion",
            Self::AssertionReplayed => "assertion_replayed",
            Self::BadClientCertificate => "bad_client_certificate",
            Self::BadDpopProof => "bad_dpop_proof",
            Self::DpopRequired => "dpop_required",
            Self::BindingMismatch => "binding_mismatch",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol error: what the client is told, plus why, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OAuthError {
    /// The RFC error code.
    pub code: ErrorCode,
    /// The `error_description`; omitted from responses when detailed errors
    /// are switched off. Only characters RFC 6749 §5.2 allows.
    pub description: &'static str,
    /// The operator-facing cause.
    pub reason: Reason,
    /// The client tried HTTP Basic authentication, so an `invalid_client`
    /// answer must be `401` with a `WWW-Authenticate: Basic` challenge.
    pub basic_challenge: bool,
}

/// The challenge sent with `401 invalid_client` (RFC 6749 §5.2, RFC 7617).
pub const BASIC_CHALLENGE: &str = "Basic realm=\"ropc\", charset=\"UTF-8\"";

impl OAuthError {
    /// A new error; `basic_challenge` starts false.
    pub const fn new(code: ErrorCode, reason: Reason, description: &'static str) -> Self {
        Self { code, description, reason, basic_challenge: false }
    }

    /// `invalid_request` for a malformed request.
    pub const fn invalid_request(description: &'static str) -> Self {
        Self::new(ErrorCode::InvalidRequest, Reason::Malformed, description)
    }

    /// The body is not `application/x-www-form-urlencoded` (RFC 6749 §4.3.2).
    pub const UNSUPPORTED_CONTENT_TYPE: OAuthError =
        OAuthError::invalid_request("The request body must be application/x-www-form-urlencoded.");
    /// The body exceeds the size limit (answered `413`, RFC 9110 §15.5.14).
    pub const BODY_TOO_LARGE: OAuthError =
        OAuthError::new(ErrorCode::InvalidRequest, Reason::BodyTooLarge, "The request body is too large.");
    /// The body could not be read in time or was cut short.
    pub const BODY_UNREADABLE: OAuthError = OAuthError::invalid_request("The request body could not be read.");
    /// A header the request needs appears more than once.
    pub const DUPLICATE_HEADER: OAuthError =
        OAuthError::new(ErrorCode::InvalidRequest, Reason::DuplicateParameter, "A request header is repeated.");
    /// The password hashing queue is full (sent with `503` and `Retry-After`).
    pub const OVERLOADED: OAuthError = OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        Reason::Overloaded,
        "The server is busy. Retry after the time in Retry-After.",
    );
    /// Too many failed logins from this IP (sent with `429` and `Retry-After`).
    pub const IP_THROTTLED: OAuthError = OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        Reason::IpThrottled,
        "Too many failed attempts. Retry after the time in Retry-After.",
    );
    /// The credential manager did not answer (sent with `503` and
    /// `Retry-After`); never `invalid_grant`, and never a failed login.
    pub const BACKEND_UNAVAILABLE: OAuthError = OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        Reason::BackendUnavailable,
        "The user directory is unavailable. Retry after the time in Retry-After.",
    );
    /// The token store failed.
    pub const STORE_FAILED: OAuthError =
        OAuthError::new(ErrorCode::TemporarilyUnavailable, Reason::StoreFailure, "The token store is unavailable.");
    /// The DPoP proof is malformed, badly signed, stale, replayed or for
    /// another request (RFC 9449 §4.3, §5).
    pub const DPOP_PROOF_INVALID: OAuthError =
        OAuthError::new(ErrorCode::InvalidDpopProof, Reason::BadDpopProof, "The DPoP proof is invalid.");
    /// The client requires DPoP (`dpop_bound_access_tokens`) and sent no proof.
    pub const DPOP_PROOF_REQUIRED: OAuthError =
        OAuthError::new(ErrorCode::InvalidRequest, Reason::DpopRequired, "A DPoP proof is required for this client.");
    /// The client's tokens are bound to its certificate
    /// (`certificate_bound_access_tokens`) and the connection has none.
    pub const CERTIFICATE_REQUIRED: OAuthError = OAuthError::new(
        ErrorCode::InvalidRequest,
        Reason::BadClientCertificate,
        "A TLS client certificate is required for this client.",
    );
    /// The refresh token is invalid, expired or revoked (also sent when a
    /// concurrent request rotated it first).
    pub const INVALID_REFRESH_TOKEN: OAuthError = OAuthError::new(
        ErrorCode::InvalidGrant,
        Reason::UnknownRefreshToken,
        "The refresh token is invalid, expired or revoked.",
    );

    /// The HTTP status code (RFC 6749 §5.2).
    pub const fn status(&self) -> u16 {
        match self.code {
            // RFC 6749 §5.2: 401 when the client tried the Authorization
            // header; 400 otherwise, since a 401 must carry a challenge.
            ErrorCode::InvalidClient if self.basic_challenge => 401,
            // RFC 9110 §15.5.14: the body is larger than the server accepts.
            ErrorCode::InvalidRequest if matches!(self.reason, Reason::BodyTooLarge) => 413,
            // RFC 6585 §4: this client is sending too many requests.
            ErrorCode::TemporarilyUnavailable if matches!(self.reason, Reason::IpThrottled) => 429,
            ErrorCode::TemporarilyUnavailable => 503,
            ErrorCode::ServerError => 500,
            _ => 400,
        }
    }

    /// The `WWW-Authenticate` header value this error must carry, if any.
    pub const fn www_authenticate(&self) -> Option<&'static str> {
        match (self.code, self.basic_challenge) {
            (ErrorCode::InvalidClient, true) => Some(BASIC_CHALLENGE),
            _ => None,
        }
    }

    /// Whether `s` uses only the characters RFC 6749 §5.2 allows in
    /// `error_description`: `%x20-21 / %x23-5B / %x5D-7E`.
    pub fn is_valid_description(s: &str) -> bool {
        s.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.code, self.description, self.reason)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_at_its_index() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{code}");
        }
    }

    #[test]
    fn status_mapping() {
        let mut e = OAuthError::new(ErrorCode::InvalidClient, Reason::UnknownClient, "x");
        assert_eq!((e.status(), e.www_authenticate()), (400, None));
        e.basic_challenge = true;
        assert_eq!((e.status(), e.www_authenticate()), (401, Some(BASIC_CHALLENGE)));
        let grant = OAuthError { basic_challenge: true, ..OAuthError::invalid_request("x") };
        assert_eq!((grant.status(), grant.www_authenticate()), (400, None));
        let busy = OAuthError::new(ErrorCode::TemporarilyUnavailable, Reason::Overloaded, "x");
        assert_eq!(busy.status(), 503);
        assert_eq!(OAuthError::IP_THROTTLED.status(), 429);
        assert_eq!(OAuthError::BODY_TOO_LARGE.status(), 413);
        assert_eq!(OAuthError::BODY_UNREADABLE.status(), 400);
    }

    #[test]
    fn constant_descriptions_are_rfc_clean() {
        for e in [
            OAuthError::UNSUPPORTED_CONTENT_TYPE,
            OAuthError::BODY_TOO_LARGE,
            OAuthError::BODY_UNREADABLE,
            OAuthError::DUPLICATE_HEADER,
            OAuthError::DPOP_PROOF_INVALID,
            OAuthError::DPOP_PROOF_REQUIRED,
            OAuthError::CERTIFICATE_REQUIRED,
            OAuthError::OVERLOADED,
            OAuthError::IP_THROTTLED,
            OAuthError::STORE_FAILED,
            OAuthError::BACKEND_UNAVAILABLE,
            OAuthError::INVALID_REFRESH_TOKEN,
        ] {
            assert!(OAuthError::is_valid_description(e.description), "{e}");
        }
    }

    #[test]
    fn description_charset() {
        assert!(OAuthError::is_valid_description("The client may not use this grant!"));
        assert!(!OAuthError::is_valid_description("quote \" here"));
        assert!(!OAuthError::is_valid_description("back\\slash"));
        assert!(!OAuthError::is_valid_description("new\nline"));
        assert!(!OAuthError::is_valid_description("caf\u{e9}"));
    }
}
