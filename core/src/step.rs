//! What the runtime answers for the engine: the [`Step`]s of a token
//! request, and the outcomes it feeds back ([`PasswordOutcome`],
//! [`AccountState`]).

use crate::client::ClientIndex;
#[cfg(doc)]
use crate::engine::{Engine, TokenGrant};
use crate::error::OAuthError;
use crate::token::{FamilyId, TokenKey, UserRef};

/// What the runtime found when it verified a password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordOutcome {
    /// The password is right; the user is `UserRef`.
    Valid(UserRef),
    /// The user exists and the password is wrong.
    WrongPassword,
    /// No such user (the runtime still spent a dummy hash, so that the
    /// answer takes as long as a wrong password).
    UnknownUser,
    /// The user is locked out; no hash was spent.
    Locked,
    /// The account is disabled (the runtime still spent its hash, so that
    /// the answer takes as long as a wrong password).
    Disabled,
}

/// What the runtime found when it checked the account behind a refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountState {
    /// It may go on.
    Active,
    /// It is no longer in its credential manager.
    Removed,
    /// It is disabled.
    Disabled,
    /// Its password changed after the presented token was issued: the
    /// grant began with the old one.
    PasswordChanged,
}

/// What the client presented to authenticate itself. The runtime checks it
/// against the method the client is configured for.
#[derive(Clone, Copy, Debug)]
pub enum ClientCredential<'g> {
    /// A secret, by HTTP Basic or in the body (`client_secret_basic`,
    /// `client_secret_post`).
    Secret(Secret<'g>),
    /// A JWT assertion (RFC 7523 §2.2: `client_secret_jwt`,
    /// `private_key_jwt`).
    Assertion(Secret<'g>),
    /// Only a `client_id`: a TLS client certificate may authenticate it
    /// (RFC 8705 §2); any other method refuses it.
    None,
}

/// What the runtime must do next for a [`TokenGrant`].
#[derive(Debug)]
pub enum Step<'g> {
    /// The client sent an assertion without `client_id`: read the
    /// assertion's issuer (RFC 7523 §3: `iss`, equal to `sub`), then call
    /// [`TokenGrant::client_identified`].
    IdentifyClient {
        /// The assertion.
        assertion: Secret<'g>,
    },
    /// Check `credential` for client `client` (a secret against its stored
    /// hash, an assertion against its keys, the TLS certificate), then call
    /// [`TokenGrant::client_authenticated`] or
    /// [`TokenGrant::client_rejected`].
    AuthenticateClient {
        /// The client's index in the engine's table.
        client: ClientIndex,
        /// What it presented.
        credential: ClientCredential<'g>,
        /// Whether it used HTTP Basic (a refusal is then `401`).
        basic: bool,
    },
    /// Verify the user's password (on a hash pool: this is the expensive
    /// step), then call [`TokenGrant::password_verified`].
    VerifyPassword {
        /// The presented username.
        username: &'g str,
        /// The presented password.
        password: Secret<'g>,
    },
    /// Load the record stored under `key`, then call
    /// [`TokenGrant::refresh_token_loaded`].
    LoadRefreshToken {
        /// The digest of the presented refresh token.
        key: TokenKey,
    },
    /// A refresh token of a user's grant checked out: check the account
    /// behind it (still there, not disabled, password unchanged since
    /// `issued_at`), then call [`TokenGrant::account_checked`].
    CheckAccount {
        /// The resource owner.
        user: UserRef,
        /// When the presented refresh token was issued (or rotated).
        issued_at: u64,
    },
    /// The grant family must end (a rotated refresh token was replayed, or
    /// its account changed): revoke every token of this family until
    /// `until`, then call [`TokenGrant::family_revoked`].
    RevokeFamily {
        /// The family to revoke.
        family: FamilyId,
        /// When every token of the family has expired anyway.
        until: u64,
    },
    /// Everything checked: call [`TokenGrant::issue`].
    Issue,
    /// The request fails with this error; write it with
    /// [`Engine::write_error`].
    Reject(OAuthError),
}

/// A secret or password borrowed from the request. `Debug` shows nothing.
#[derive(Clone, Copy)]
pub struct Secret<'a>(&'a str);

impl<'a> Secret<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Secret(s)
    }
}

impl Secret<'_> {
    /// The secret itself. Handle with care: never log it.
    pub fn expose(&self) -> &str {
        self.0
    }
}

impl core::fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("<redacted>")
    }
}
