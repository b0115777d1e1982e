//! Typed requests for the token (RFC 6749 §4.3, §4.4, §6), revocation
//! (RFC 7009) and introspection (RFC 7662) endpoints, each with the client
//! authentication it carried (§2.3.1: HTTP Basic, the body, or none).
//!
//! Parsing checks the grammar only; whether the client exists, may use the
//! grant or may have the scope is the [`crate::engine`]'s business.

use crate::basic::{self, BasicError};
use crate::error::{ErrorCode, OAuthError, Reason};
use crate::form::{Form, FormError, Limits, Param, Value};
use core::fmt;

/// How the client authenticated, RFC 6749 §2.3.1.
pub enum ClientAuth<'a> {
    /// HTTP Basic: decoded from the `Authorization` header.
    Basic {
        /// The client id.
        client_id: &'a str,
        /// The client secret.
        client_secret: &'a str,
    },
    /// `client_id` and `client_secret` in the body.
    Body {
        /// The client id.
        client_id: Value<'a>,
        /// The client secret; `None` when only `client_id` was sent.
        client_secret: Option<Value<'a>>,
    },
    /// A JWT in `client_assertion` (RFC 7523 §2.2): `client_secret_jwt` or
    /// `private_key_jwt`. `client_id` is optional (RFC 7521 §4.2); without
    /// it the client is the assertion's issuer.
    Assertion {
        /// The client id, if sent.
        client_id: Option<Value<'a>>,
        /// The assertion.
        assertion: Value<'a>,
    },
    /// No client authentication at all.
    None,
}

/// `client_assertion_type` for a JWT (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

impl ClientAuth<'_> {
    /// The presented client id, if any.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            ClientAuth::Basic { client_id, .. } => Some(client_id),
            ClientAuth::Body { client_id, .. } => Some(client_id),
            ClientAuth::Assertion { client_id, .. } => client_id.as_deref(),
            ClientAuth::None => None,
        }
    }

    /// The presented client assertion, if any.
    pub fn assertion(&self) -> Option<&str> {
        match self {
            ClientAuth::Assertion { assertion, .. } => Some(assertion),
            _ => None,
        }
    }

    /// The presented client secret, if any.
    pub fn client_secret(&self) -> Option<&str> {
        match self {
            ClientAuth::Basic { client_secret, .. } => Some(client_secret),
            ClientAuth::Body { client_secret, .. } => client_secret.as_deref(),
            ClientAuth::Assertion { .. } | ClientAuth::None => None,
        }
    }

    /// Whether the client used HTTP Basic (so a failure is `401`).
    pub fn is_basic(&self) -> bool {
        matches!(self, ClientAuth::Basic { .. })
    }
}

impl fmt::Debug for ClientAuth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Basic { client_id, .. } => write!(f, "Basic({client_id:?}, <redacted>)"),
            ClientAuth::Body { client_id, client_secret } => {
                let secret = if client_secret.is_some() { "<redacted>" } else { "none" };
                write!(f, "Body({:?}, {secret})", &**client_id)
            }
            ClientAuth::Assertion { client_id, .. } => write!(f, "Assertion({:?}, <redacted>)", client_id.as_deref()),
            ClientAuth::None => f.write_str("None"),
        }
    }
}

/// The grant a token request asks for.
#[derive(Debug)]
pub enum GrantRequest<'a> {
    /// `grant_type=password`, RFC 6749 §4.3.2.
    Password {
        /// The resource owner's username.
        username: Value<'a>,
        /// The resource owner's password.
        password: Value<'a>,
        /// The requested scope, if any.
        scope: Option<Value<'a>>,
    },
    /// `grant_type=refresh_token`, §6.
    RefreshToken {
        /// The presented refresh token.
        refresh_token: Value<'a>,
        /// The requested (narrower) scope, if any.
        scope: Option<Value<'a>>,
    },
    /// `grant_type=client_credentials`, §4.4.2.
    ClientCredentials {
        /// The requested scope, if any.
        scope: Option<Value<'a>>,
    },
}

impl GrantRequest<'_> {
    /// The `grant_type` value.
    pub fn grant_type(&self) -> GrantType {
        match self {
            GrantRequest::Password { .. } => GrantType::Password,
            GrantRequest::RefreshToken { .. } => GrantType::RefreshToken,
            GrantRequest::ClientCredentials { .. } => GrantType::ClientCredentials,
        }
    }
}

/// The grant types ropc implements (RFC 6749 §4.3, §6, §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantType {
    /// `password`: the resource owner's username and password.
    Password,
    /// `refresh_token`.
    RefreshToken,
    /// `client_credentials`.
    ClientCredentials,
}

impl GrantType {
    /// Every grant type, in the order of [`GrantType::index`].
    pub const ALL: [GrantType; 3] = [GrantType::Password, GrantType::RefreshToken, GrantType::ClientCredentials];

    /// The `grant_type` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            GrantType::Password => "password",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    /// A dense index, for tables keyed by grant type.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// A parsed token endpoint request.
#[derive(Debug)]
pub struct TokenRequest<'a> {
    /// The client's authentication.
    pub auth: ClientAuth<'a>,
    /// The grant.
    pub grant: GrantRequest<'a>,
}

/// `token_type_hint`, RFC 7009 §2.1 / RFC 7662 §2.1. A hint is only a hint:
/// the server searches every token type when it does not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
    /// Any other value, which the server ignores (RFC 7009 §2.1).
    Unknown,
}

/// A parsed revocation (RFC 7009) or introspection (RFC 7662) request.
#[derive(Debug)]
pub struct TokenQuery<'a> {
    /// The client's authentication.
    pub auth: ClientAuth<'a>,
    /// The token to revoke or introspect.
    pub token: Value<'a>,
    /// The hint, if sent.
    pub token_type_hint: Option<TokenTypeHint>,
}

pub(crate) fn form_error(e: FormError) -> OAuthError {
    let reason = match e {
        FormError::Duplicate(_) => Reason::DuplicateParameter,
        FormError::TooLarge => Reason::BodyTooLarge,
        FormError::TooManyParameters => Reason::TooLarge,
        FormError::BadPercentEncoding | FormError::InvalidUtf8 => Reason::Malformed,
    };
    OAuthError::new(ErrorCode::InvalidRequest, reason, e.description())
}

fn basic_error(e: BasicError) -> OAuthError {
    let mut err = OAuthError::new(ErrorCode::InvalidClient, Reason::BadAuthorizationHeader, e.description());
    err.basic_challenge = true;
    err
}

fn required<'a>(form: &mut Form<'a>, param: Param, description: &'static str) -> Result<Value<'a>, OAuthError> {
    form.take(param).ok_or(OAuthError::invalid_request(description))
}

/// Takes the client authentication out of `form` and the header.
fn client_auth<'a>(
    form: &mut Form<'a>,
    authorization: Option<&[u8]>,
    scratch: &'a mut [u8],
    limits: &Limits,
) -> Result<ClientAuth<'a>, OAuthError> {
    let body_id = form.take(Param::ClientId);
    let body_secret = form.take(Param::ClientSecret);
    let assertion_type = form.take(Param::ClientAssertionType);
    let assertion = form.take(Param::ClientAssertion);
    match (assertion_type, assertion) {
        (None, None) => {}
        (Some(kind), Some(assertion)) => {
            // RFC 6749 §2.3: one authentication method per request.
            if authorization.is_some() || body_secret.is_some() {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    Reason::MultipleClientAuthentication,
                    "The client sent a client_assertion and another authentication method.",
                ));
            }
            if &*kind != JWT_BEARER {
                return Err(OAuthError::new(
                    ErrorCode::InvalidClient,
                    Reason::BadAssertion,
                    "The client_assertion_type is not supported.",
                ));
            }
            return Ok(ClientAuth::Assertion { client_id: body_id, assertion });
        }
        (Some(_), None) => return Err(OAuthError::invalid_request("The client_assertion parameter is missing.")),
        (None, Some(_)) => return Err(OAuthError::invalid_request("The client_assertion_type parameter is missing.")),
    }
    let Some(header) = authorization else {
        return match (body_id, body_secret) {
            (Some(client_id), client_secret) => Ok(ClientAuth::Body { client_id, client_secret }),
            (None, Some(_)) => Err(OAuthError::invalid_request("client_secret was sent without client_id.")),
            (None, None) => Ok(ClientAuth::None),
        };
    };
    if header.len() > limits.max_authorization_len {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Reason::TooLarge,
            "The Authorization header is too long.",
        ));
    }
    let creds = basic::parse(header, scratch).map_err(basic_error)?;
    // RFC 6749 §2.3: one authentication method per request.
    if body_secret.is_some() {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Reason::MultipleClientAuthentication,
            "The client authenticated with both HTTP Basic and client_secret.",
        ));
    }
    // Some libraries repeat client_id in the body next to Basic; that is not
    // a second method, but it must name the same client.
    if body_id.as_deref().is_some_and(|id| id != creds.client_id) {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Reason::MultipleClientAuthentication,
            "The client_id in the body does not match the Basic credentials.",
        ));
    }
    Ok(ClientAuth::Basic { client_id: creds.client_id, client_secret: creds.client_secret })
}

impl<'a> TokenRequest<'a> {
    /// Parses a token request from its body and `Authorization` header.
    /// `scratch` (see [`basic::SCRATCH_LEN`]) holds decoded Basic
    /// credentials; the caller should zero it when done.
    pub fn parse(
        body: &'a [u8],
        authorization: Option<&[u8]>,
        scratch: &'a mut [u8],
        limits: &Limits,
    ) -> Result<Self, OAuthError> {
        let mut form = Form::default();
        form.parse_into(body, limits).map_err(form_error)?;
        let grant_type = required(&mut form, Param::GrantType, "The grant_type parameter is missing.")?;
        let scope = form.take(Param::Scope);
        // Compared as fixed-size arrays: word compares, not calls to memcmp.
        fn is<const N: usize>(value: &str, known: &[u8; N]) -> bool {
            <&[u8; N]>::try_from(value.as_bytes()).is_ok_and(|value| value == known)
        }
        let grant = match &*grant_type {
            g if is(g, b"password") => GrantRequest::Password {
                username: required(&mut form, Param::Username, "The username parameter is missing.")?,
                password: required(&mut form, Param::Password, "The password parameter is missing.")?,
                scope,
            },
            g if is(g, b"refresh_token") => GrantRequest::RefreshToken {
                refresh_token: required(&mut form, Param::RefreshToken, "The refresh_token parameter is missing.")?,
                scope,
            },
            g if is(g, b"client_credentials") => GrantRequest::ClientCredentials { scope },
            _ => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    Reason::UnsupportedGrantType,
                    "The grant type is not supported.",
                ))
            }
        };
        let auth = client_auth(&mut form, authorization, scratch, limits)?;
        Ok(TokenRequest { auth, grant })
    }
}

impl<'a> TokenQuery<'a> {
    /// Parses a revocation or introspection request (the two share a shape:
    /// RFC 7009 §2.1, RFC 7662 §2.1).
    pub fn parse(
        body: &'a [u8],
        authorization: Option<&[u8]>,
        scratch: &'a mut [u8],
        limits: &Limits,
    ) -> Result<Self, OAuthError> {
        let mut form = Form::default();
        form.parse_into(body, limits).map_err(form_error)?;
        let token = required(&mut form, Param::Token, "The token parameter is missing.")?;
        let token_type_hint = form.take(Param::TokenTypeHint).map(|h| match &*h {
            "access_token" => TokenTypeHint::AccessToken,
            "refresh_token" => TokenTypeHint::RefreshToken,
            _ => TokenTypeHint::Unknown,
        });
        let auth = client_auth(&mut form, authorization, scratch, limits)?;
        Ok(TokenQuery { auth, token, token_type_hint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn token(body: &str, auth: Option<&str>) -> Result<(String, &'static str), OAuthError> {
        let mut scratch = [0u8; basic::SCRATCH_LEN];
        let req = TokenRequest::parse(body.as_bytes(), auth.map(str::as_bytes), &mut scratch, &Limits::default())?;
        let auth = alloc::format!("{:?}", req.auth);
        Ok((auth, req.grant.grant_type().as_str()))
    }

    fn code(body: &str, auth: Option<&str>) -> ErrorCode {
        token(body, auth).unwrap_err().code
    }

    #[test]
    fn grants() {
        let basic = basic::encode("legacy", "s");
        let basic = Some(basic.as_str());
        assert_eq!(
            token("grant_type=password&username=u&password=p", basic).unwrap(),
            ("Basic(\"legacy\", <redacted>)".into(), "password")
        );
        assert_eq!(
            token("grant_type=refresh_token&refresh_token=r&client_id=c&client_secret=s", None).unwrap(),
            ("Body(\"c\", <redacted>)".into(), "refresh_token")
        );
        assert_eq!(
            token("grant_type=client_credentials&client_id=c", None).unwrap(),
            ("Body(\"c\", none)".into(), "client_credentials")
        );
        assert_eq!(token("grant_type=client_credentials", None).unwrap(), ("None".into(), "client_credentials"));
        // client_id repeated beside Basic is tolerated when it matches.
        assert!(token("grant_type=client_credentials&client_id=legacy", basic).is_ok());
    }

    #[test]
    fn errors() {
        let basic = basic::encode("legacy", "s");
        let basic = Some(basic.as_str());
        let cases: &[(&str, Option<&str>, ErrorCode)] = &[
            ("", None, ErrorCode::InvalidRequest),
            ("grant_type=authorization_code&code=x", None, ErrorCode::UnsupportedGrantType),
            ("grant_type=PASSWORD&username=u&password=p", None, ErrorCode::UnsupportedGrantType),
            ("grant_type=password&password=p", None, ErrorCode::InvalidRequest),
            ("grant_type=password&username=u", None, ErrorCode::InvalidRequest),
            ("grant_type=password&username=u&password=", None, ErrorCode::InvalidRequest),
            ("grant_type=password&username=u&username=v&password=p", None, ErrorCode::InvalidRequest),
            ("grant_type=refresh_token", None, ErrorCode::InvalidRequest),
            ("grant_type=client_credentials&client_secret=s", None, ErrorCode::InvalidRequest),
            ("grant_type=client_credentials&client_secret=s", basic, ErrorCode::InvalidRequest),
            ("grant_type=client_credentials&client_id=other", basic, ErrorCode::InvalidRequest),
            ("grant_type=client_credentials", Some("Basic !!"), ErrorCode::InvalidClient),
            ("grant_type=client_credentials", Some("Bearer x"), ErrorCode::InvalidClient),
        ];
        for &(body, auth, expected) in cases {
            assert_eq!(code(body, auth), expected, "{body} / {auth:?}");
        }
        let e = token("grant_type=client_credentials", Some("Basic !!")).unwrap_err();
        assert_eq!((e.status(), e.reason), (401, Reason::BadAuthorizationHeader));
        let e = token("grant_type=password&username=u&password=p&client_id=a&client_id=b", None).unwrap_err();
        assert_eq!(e.reason, Reason::DuplicateParameter);
    }

    #[test]
    fn queries() {
        let parse = |body: &str| {
            let mut scratch = [0u8; basic::SCRATCH_LEN];
            TokenQuery::parse(body.as_bytes(), None, &mut scratch, &Limits::default())
                .map(|q| (String::from(&*q.token), q.token_type_hint))
        };
        let q = parse("token=abc&token_type_hint=refresh_token&client_id=c&client_secret=s").unwrap();
        assert_eq!(q, ("abc".into(), Some(TokenTypeHint::RefreshToken)));
        assert_eq!(parse("token=abc&token_type_hint=jwt").unwrap().1, Some(TokenTypeHint::Unknown));
        assert_eq!(parse("token_type_hint=jwt").unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut scratch = [0u8; basic::SCRATCH_LEN];
        let req = TokenRequest::parse(
            b"grant_type=password&username=alice&password=hunter2&client_id=c&client_secret=topsecret",
            None,
            &mut scratch,
            &Limits::default(),
        )
        .unwrap();
        let shown = alloc::format!("{req:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("topsecret"), "{shown}");
    }
}
