//! Who the client is and what the request proves: identifying the client
//! from its authentication (a `client_id`, or an assertion's issuer), what
//! it presented for the runtime to check ([`ClientCredential`]), and the
//! [`Proofs`] sender-constrained tokens are bound to.

use crate::client::ClientIndex;
use crate::engine::Engine;
use crate::error::{ErrorCode, OAuthError, Reason};
use crate::request::ClientAuth;
use crate::step::{ClientCredential, Secret};
use crate::token::Binding;

pub(crate) const NO_CLIENT_AUTH: OAuthError =
    OAuthError::new(ErrorCode::InvalidClient, Reason::NoClientAuthentication, "Client authentication is required.");
const CLIENT_AUTH_FAILED: &str = "Client authentication failed.";

/// What the request proved beyond client authentication, for
/// sender-constrained tokens. The runtime checks each proof (a DPoP proof's
/// signature and claims, the TLS handshake) and gives the core the
/// thumbprints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Proofs {
    /// The JWK SHA-256 thumbprint (RFC 7638) of a valid DPoP proof's key.
    pub dpop: Option<[u8; 32]>,
    /// The SHA-256 thumbprint of the TLS client certificate, if one was
    /// presented and accepted.
    pub certificate: Option<[u8; 32]>,
    /// Whether the client's tokens are bound to its certificate (RFC 8705
    /// §3, `certificate_bound_access_tokens`).
    pub bind_certificate: bool,
}

impl Proofs {
    /// What new tokens are bound to: the DPoP key if a proof came, else the
    /// certificate if the client binds to it, else nothing.
    pub fn binding(&self) -> Binding {
        match (self.dpop, self.certificate) {
            (Some(jkt), _) => Binding::Dpop(jkt),
            (None, Some(x5t)) if self.bind_certificate => Binding::Certificate(x5t),
            _ => Binding::None,
        }
    }

    /// Whether a token bound to `binding` may be used by this request.
    pub fn satisfy(&self, binding: Binding) -> bool {
        match binding {
            Binding::None => true,
            Binding::Dpop(t) => self.dpop == Some(t),
            Binding::Certificate(t) => self.certificate == Some(t),
        }
    }
}

impl Engine {
    /// Identifies the client of a request: its index, or `None` when it
    /// sent an assertion without `client_id` (the runtime reads the
    /// assertion's issuer: [`Step::IdentifyClient`]). A request with no
    /// client authentication at all is refused here.
    pub fn identify(&self, auth: &ClientAuth<'_>) -> Result<Option<ClientIndex>, OAuthError> {
        let basic = auth.is_basic();
        let Some(id) = auth.client_id() else {
            return match auth {
                ClientAuth::Assertion { .. } => Ok(None),
                _ => Err(NO_CLIENT_AUTH),
            };
        };
        match self.clients.find(id) {
            Some(index) => Ok(Some(index)),
            None => Err(invalid_client(Reason::UnknownClient, basic)),
        }
    }

    /// The client named by an assertion's issuer ([`Step::IdentifyClient`]).
    pub(crate) fn identified(&self, issuer: Option<&str>) -> Result<ClientIndex, OAuthError> {
        let unknown = || invalid_client(Reason::UnknownClient, false);
        issuer.and_then(|id| self.clients.find(id)).ok_or_else(unknown)
    }
}

pub(crate) fn invalid_client(reason: Reason, basic: bool) -> OAuthError {
    let mut e = OAuthError::new(ErrorCode::InvalidClient, reason, CLIENT_AUTH_FAILED);
    e.basic_challenge = basic;
    e
}

/// What a request's authentication presented.
pub(crate) fn credential<'a>(auth: &'a ClientAuth<'_>) -> ClientCredential<'a> {
    match (auth.client_secret(), auth.assertion()) {
        (Some(secret), _) => ClientCredential::Secret(Secret::new(secret)),
        (None, Some(assertion)) => ClientCredential::Assertion(Secret::new(assertion)),
        (None, None) => ClientCredential::None,
    }
}
