//! Revocation (RFC 7009) and introspection (RFC 7662), stepped like a token
//! grant: the runtime verifies the client's secret and loads the record of
//! the presented token; the engine decides what is revoked or what the
//! introspection response says.
//!
//! Rules:
//! - Client authentication is required for both (RFC 7009 §2.1, RFC 7662 §2.1).
//! - `token_type_hint` is only a hint: every token lives in one keyspace (its
//!   digest), so the look-up never depends on it.
//! - Revoking a token of another client, or an unknown token, is `200` with
//!   nothing done (RFC 7009 §2.2). Revoking a refresh token revokes its whole
//!   grant family, access tokens included.
//! - Any authenticated client may introspect an access token (resource
//!   servers are clients too); a refresh token is active only to the client it
//!   was issued to, since nobody else has a use for it.

use crate::basic::SCRATCH_LEN;
use crate::client::ClientIndex;
use crate::engine::{credential, family_horizon, invalid_client, ClientCredential, Engine, Secret, NO_CLIENT_AUTH};
use crate::error::{OAuthError, Reason};
use crate::request::TokenQuery;
use crate::response::{self, Introspection};
use crate::token::{self, Binding, FamilyId, Provider, TokenKey, TokenKind, TokenRecord, UserRef};
use alloc::string::String;
use alloc::vec::Vec;

/// Who a user's token belongs to, as introspection tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The name the user typed.
    pub username: String,
    /// The subject their credential manager gives them (`sub`).
    pub subject: String,
}

/// Which endpoint a [`TokenQueryGrant`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKind {
    /// RFC 7009 revocation.
    Revocation,
    /// RFC 7662 introspection.
    Introspection,
}

/// What the runtime must do next for a [`TokenQueryGrant`].
#[derive(Debug)]
pub enum QueryStep<'g> {
    /// As [`crate::Step::IdentifyClient`]: then call
    /// [`TokenQueryGrant::client_identified`].
    IdentifyClient {
        /// The assertion.
        assertion: Secret<'g>,
    },
    /// Check `credential` for `client`, then call
    /// [`TokenQueryGrant::client_authenticated`] or
    /// [`TokenQueryGrant::client_rejected`].
    AuthenticateClient {
        /// The client.
        client: ClientIndex,
        /// What it presented.
        credential: ClientCredential<'g>,
        /// Whether it used HTTP Basic.
        basic: bool,
    },
    /// Load the record under `key`, then call [`TokenQueryGrant::token_loaded`].
    LoadToken {
        /// The digest of the presented token.
        key: TokenKey,
    },
    /// Done: call [`TokenQueryGrant::revocation`] or
    /// [`TokenQueryGrant::write_introspection`].
    Done,
    /// The request fails with this error.
    Reject(OAuthError),
}

/// What a revocation request changes in the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Revocation {
    /// Remove this record (a revoked access token).
    pub remove: Option<TokenKey>,
    /// Revoke this grant family until this time (seconds since the epoch),
    /// by which every token of the family has expired anyway.
    pub revoke_family: Option<(FamilyId, u64)>,
}

#[derive(Clone, Copy, Debug)]
enum State {
    IdentifyClient,
    AuthenticateClient,
    LoadToken(TokenKey),
    Done,
    Rejected(OAuthError),
}

/// One revocation or introspection request in flight.
#[derive(Debug)]
pub struct TokenQueryGrant<'a> {
    engine: &'a Engine,
    provider: Provider<'a>,
    kind: QueryKind,
    query: Option<TokenQuery<'a>>,
    client: Option<ClientIndex>,
    state: State,
    record: Option<(TokenKey, TokenRecord)>,
}

impl Engine {
    /// Starts a revocation request (RFC 7009). Loop on
    /// [`TokenQueryGrant::step`] as for a token grant.
    pub fn revocation<'a>(
        &'a self,
        provider: Provider<'a>,
        body: &'a [u8],
        authorization: Option<&[u8]>,
        scratch: &'a mut [u8; SCRATCH_LEN],
    ) -> TokenQueryGrant<'a> {
        TokenQueryGrant::new(self, provider, QueryKind::Revocation, body, authorization, scratch)
    }

    /// Starts an introspection request (RFC 7662).
    pub fn introspection<'a>(
        &'a self,
        provider: Provider<'a>,
        body: &'a [u8],
        authorization: Option<&[u8]>,
        scratch: &'a mut [u8; SCRATCH_LEN],
    ) -> TokenQueryGrant<'a> {
        TokenQueryGrant::new(self, provider, QueryKind::Introspection, body, authorization, scratch)
    }
}

impl<'a> TokenQueryGrant<'a> {
    fn new(
        engine: &'a Engine,
        provider: Provider<'a>,
        kind: QueryKind,
        body: &'a [u8],
        authorization: Option<&[u8]>,
        scratch: &'a mut [u8; SCRATCH_LEN],
    ) -> Self {
        let mut q = Self { engine, provider, kind, query: None, client: None, state: State::Done, record: None };
        match TokenQuery::parse(body, authorization, scratch, &engine.config.limits) {
            Ok(query) => {
                q.state = match engine.identify(&query.auth) {
                    Ok(Some(client)) => {
                        q.client = Some(client);
                        State::AuthenticateClient
                    }
                    Ok(None) => State::IdentifyClient,
                    Err(e) => State::Rejected(e),
                };
                q.query = Some(query);
            }
            Err(e) => q.state = State::Rejected(e),
        }
        q
    }

    /// Which endpoint this request is for.
    pub fn kind(&self) -> QueryKind {
        self.kind
    }

    /// The presented client id, for logs.
    pub fn client_id(&self) -> Option<&str> {
        self.query.as_ref().and_then(|q| q.auth.client_id())
    }

    /// What the runtime must do next.
    pub fn step(&self) -> QueryStep<'_> {
        match self.state {
            State::IdentifyClient => match self.query.as_ref().and_then(|q| q.auth.assertion()) {
                Some(assertion) => QueryStep::IdentifyClient { assertion: Secret::new(assertion) },
                None => QueryStep::Reject(NO_CLIENT_AUTH),
            },
            State::AuthenticateClient => match (self.client, &self.query) {
                (Some(client), Some(q)) => {
                    QueryStep::AuthenticateClient { client, credential: credential(&q.auth), basic: q.auth.is_basic() }
                }
                _ => QueryStep::Reject(NO_CLIENT_AUTH),
            },
            State::LoadToken(key) => QueryStep::LoadToken { key },
            State::Done => QueryStep::Done,
            State::Rejected(e) => QueryStep::Reject(e),
        }
    }

    /// Answers [`QueryStep::IdentifyClient`] with the assertion's issuer.
    pub fn client_identified(&mut self, issuer: Option<&str>) {
        if matches!(self.state, State::IdentifyClient) {
            self.state = match self.engine.identified(issuer) {
                Ok(client) => {
                    self.client = Some(client);
                    State::AuthenticateClient
                }
                Err(e) => State::Rejected(e),
            };
        }
    }

    /// Answers [`QueryStep::AuthenticateClient`] with a refusal for `reason`.
    pub fn client_rejected(&mut self, reason: Reason) {
        if let (State::AuthenticateClient, Some(q)) = (self.state, &self.query) {
            self.state = State::Rejected(invalid_client(reason, q.auth.is_basic()));
        }
    }

    /// Answers [`QueryStep::AuthenticateClient`].
    pub fn client_authenticated(&mut self, ok: bool) {
        let Some(query) = &self.query else { return };
        if !matches!(self.state, State::AuthenticateClient) {
            return;
        }
        if !ok {
            self.state = State::Rejected(invalid_client(Reason::BadClientSecret, query.auth.is_basic()));
            return;
        }
        // A token ropc could not have minted is simply unknown: no look-up.
        self.state = if token::is_plausible_access_token(&query.token) {
            State::LoadToken(self.provider.digest.digest(query.token.as_bytes()))
        } else {
            State::Done
        };
    }

    /// Answers [`QueryStep::LoadToken`] with the stored record, if any.
    pub fn token_loaded(&mut self, record: Option<TokenRecord>) {
        if let State::LoadToken(key) = self.state {
            self.record = record.map(|r| (key, r));
            self.state = State::Done;
        }
    }

    fn own_record(&self) -> Option<&(TokenKey, TokenRecord)> {
        let client = self.client?;
        self.record.as_ref().filter(|(_, r)| r.client == client)
    }

    /// The changes a revocation makes, once [`QueryStep::Done`]. Empty when
    /// the token is unknown or belongs to another client (RFC 7009 §2.2).
    pub fn revocation(&self, now: u64) -> Revocation {
        if self.kind != QueryKind::Revocation || !matches!(self.state, State::Done) {
            return Revocation::default();
        }
        let Some((key, record)) = self.own_record() else { return Revocation::default() };
        match record.kind {
            TokenKind::Access => Revocation { remove: Some(*key), revoke_family: None },
            // Every token of the family was issued by `now`, so all of them
            // have expired by the horizon.
            TokenKind::Refresh => Revocation {
                remove: Some(*key),
                revoke_family: Some((record.family, family_horizon(self.engine, now))),
            },
        }
    }

    /// Writes the introspection response, once [`QueryStep::Done`], and
    /// returns whether the token is active. `user_name` resolves the
    /// runtime's user references; `issuer` is the `iss` value.
    pub fn write_introspection(
        &self,
        now: u64,
        issuer: &str,
        owner: &dyn Fn(UserRef) -> Option<Owner>,
        out: &mut Vec<u8>,
    ) -> bool {
        let inactive = |out: &mut Vec<u8>| {
            response::write_introspection(out, None);
            false
        };
        let Some(client) = self.client else { return inactive(out) };
        let active = self.record.as_ref().filter(|(_, r)| {
            r.is_active(now) && !r.is_retired() && (r.kind == TokenKind::Access || r.client == client)
        });
        let Some((_, r)) = active else { return inactive(out) };
        let user = if r.user == UserRef::NONE { None } else { owner(r.user) };
        let client_id = self.engine.clients.get(r.client).map_or("", |c| c.id.as_str());
        let scope = self.engine.scopes.to_string(r.scope);
        // RFC 7662 §2.2: `sub` is the resource owner's subject (the
        // client's id for client credentials), `username` what they typed.
        let sub = user.as_ref().map_or(client_id, |u| u.subject.as_str());
        // A bound token says what it is bound to (RFC 9449 §6.2, RFC 8705
        // §3.2); the binding is in the token's own text.
        let token_text = self.query.as_ref().map_or("", |q| &*q.token);
        let binding = token::binding_of(token_text).unwrap_or_else(|| jwt_binding(token_text));
        let mut thumbprint = String::new();
        if let Some(t) = binding.thumbprint() {
            crate::jwt::push_b64url(&mut thumbprint, t);
        }
        let token_type = match (r.kind, binding) {
            // RFC 9449 §6.2.
            (TokenKind::Access, Binding::Dpop(_)) => "DPoP",
            (TokenKind::Access, _) => "bearer",
            (TokenKind::Refresh, _) => "refresh_token",
        };
        response::write_introspection(
            out,
            Some(&Introspection {
                scope: &scope,
                client_id,
                username: user.as_ref().map(|u| u.username.as_str()),
                token_type,
                exp: r.expires_at,
                iat: r.issued_at,
                iss: issuer,
                sub,
                cnf: binding.confirmation_member().map(|m| (m, thumbprint.as_str())),
            }),
        );
        true
    }
}

/// The binding in a JWT access token's `cnf`. The token is one this server
/// signed (its record was found), so its claims have the layout
/// [`crate::jwt`] writes: the `cnf` object is the last member.
fn jwt_binding(token: &str) -> Binding {
    let mut parts = token.split('.');
    let (Some(_), Some(claims), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Binding::None;
    };
    let Some(json) = crate::base64::from_url_nopad(claims.as_bytes()) else { return Binding::None };
    let json = json.as_slice();
    let find = |prefix: &[u8]| -> Option<[u8; 32]> {
        let at = json.windows(prefix.len()).position(|w| w == prefix)? + prefix.len();
        let end = at + json[at..].iter().position(|&b| b == b'"')?;
        let mut t = [0u8; 32];
        (crate::base64::decode_url_nopad(&json[at..end], &mut t) == Some(32)).then_some(t)
    };
    if let Some(t) = find(br#","cnf":{"jkt":""#) {
        Binding::Dpop(t)
    } else if let Some(t) = find(br#","cnf":{"x5t#S256":""#) {
        Binding::Certificate(t)
    } else {
        Binding::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::base64::to_url_nopad_string as b64;

    #[test]
    fn a_jwt_access_tokens_binding_is_read_from_its_cnf() {
        let thumb = b64(&[0xA1; 32]);
        let token = |claims: &str| alloc::format!("eyJhbGciOiJFZERTQSJ9.{}.c2ln", b64(claims.as_bytes()));
        let bound = token(&alloc::format!(r#"{{"sub":"a","scope":"read","cnf":{{"jkt":"{thumb}"}}}}"#));
        assert_eq!(jwt_binding(&bound), Binding::Dpop([0xA1; 32]));
        let cert = token(&alloc::format!(r#"{{"sub":"a","scope":"read","cnf":{{"x5t#S256":"{thumb}"}}}}"#));
        assert_eq!(jwt_binding(&cert), Binding::Certificate([0xA1; 32]));
        // A username that looks like the member is escaped in the JSON ropc writes.
        let sneaky = token(&alloc::format!(r#"{{"sub":"\",\"cnf\":{{\"jkt\":\"{thumb}","scope":"read"}}"#));
        assert_eq!(jwt_binding(&sneaky), Binding::None);
        for bad in ["", "a.b", "a.!!.c", &token(r#"{"scope":"read"}"#)] {
            assert_eq!(jwt_binding(bad), Binding::None, "{bad}");
        }
    }
}
