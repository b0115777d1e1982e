//! The grant engine: one token request, stepped from bytes to a decision.
//!
//! [`Engine::token_grant`] parses and validates; then the runtime loops on
//! [`TokenGrant::step`], answering each [`Step`] and feeding the answer
//! back, until the grant is issued or rejected. The engine decides *what*
//! must happen; the runtime decides *where* (the password hash runs on a
//! worker pool, a record look-up may cross the network).
//!
//! Checks run cheapest first: grammar, then client authentication, then
//! capability and scope, and only then the password hash, so that an
//! unauthenticated caller can never make the server spend a hash.

use crate::basic::SCRATCH_LEN;
use crate::client::{Capabilities, ClientIndex, ClientTable, TokenFormat};
pub use crate::client_auth::Proofs;
pub(crate) use crate::client_auth::{credential, invalid_client, NO_CLIENT_AUTH};
use crate::error::{ErrorCode, OAuthError, Reason};
use crate::form::Limits;
use crate::jwt::{self, JwtIssuer};
use crate::request::{GrantRequest, GrantType, TokenRequest};
use crate::response;
use crate::scope::{ScopeRegistry, ScopeSet};
use crate::token::{self, Binding, FamilyId, Provider, RandomError, Token, TokenKey, TokenKind, TokenRecord, UserRef};
use alloc::string::String;
use alloc::vec::Vec;

pub use crate::step::{AccountState, ClientCredential, PasswordOutcome, Secret, Step};

/// Policy the engine applies to every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Access token lifetime in seconds (`expires_in`).
    pub access_token_ttl: u64,
    /// Refresh token lifetime in seconds.
    pub refresh_token_ttl: u64,
    /// Whether error responses carry `error_description`.
    pub detailed_errors: bool,
    /// Whether a refresh grant returns a new refresh token and retires the
    /// presented one (RFC 6749 §6, RFC 9700 §4.14.2).
    pub rotate_refresh_tokens: bool,
    /// Seconds after its rotation during which a retired refresh token is
    /// still accepted (for clients that retry after a lost response). Past
    /// it, a replay revokes the whole grant family.
    pub refresh_reuse_grace: u64,
    /// Request size limits.
    pub limits: Limits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: 300,
            refresh_token_ttl: 86_400,
            detailed_errors: true,
            rotate_refresh_tokens: true,
            refresh_reuse_grace: 0,
            limits: Limits::default(),
        }
    }
}

/// Everything the engine knows: policy, clients and scopes. Build one per
/// configuration and share it read-only.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    /// The policy.
    pub config: EngineConfig,
    /// The clients.
    pub clients: ClientTable,
    /// The scopes.
    pub scopes: ScopeRegistry,
}

/// The records a successful grant produced, for the runtime to store.
#[derive(Debug)]
pub struct Issued {
    /// The access token's key and record.
    pub access: (TokenKey, TokenRecord),
    /// The refresh token's key and record, if one was issued.
    pub refresh: Option<(TokenKey, TokenRecord)>,
    /// A rotated refresh token that must stop working now: the store marks
    /// it retired (at the access token's `issued_at`), and only if it was
    /// not retired already; see [`Issued::lost_race`].
    pub retire: Option<TokenKey>,
}

/// What to do when [`Issued::retire`] was already retired by a concurrent
/// request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostRace {
    /// Inside the reuse grace window: store the new tokens anyway.
    StoreWithoutRetiring,
    /// A replay: revoke the family until the given time and answer with the
    /// error.
    RevokeFamily(FamilyId, u64, OAuthError),
}

impl Issued {
    /// Decides the fate of a refresh whose rotation lost a race: two requests
    /// presented the same refresh token at once and the other one won. That
    /// is a replay, unless a grace window is configured.
    pub fn lost_race(&self, engine: &Engine) -> LostRace {
        let record = &self.access.1;
        if engine.config.refresh_reuse_grace > 0 {
            LostRace::StoreWithoutRetiring
        } else {
            LostRace::RevokeFamily(record.family, family_horizon(engine, record.issued_at), REUSED)
        }
    }
}

const REUSED: OAuthError = OAuthError::new(ErrorCode::InvalidGrant, Reason::RefreshTokenReuse, BAD_REFRESH_TOKEN);

/// When every token a family could hold, issued at or before `now`, has expired.
pub(crate) fn family_horizon(engine: &Engine, now: u64) -> u64 {
    let c = &engine.config;
    now.saturating_add(c.refresh_token_ttl.max(c.access_token_ttl))
}

#[derive(Clone, Copy, Debug)]
enum State {
    IdentifyClient,
    AuthenticateClient,
    VerifyPassword,
    LoadRefreshToken(TokenKey),
    CheckAccount(UserRef, u64),
    RevokeFamily(FamilyId, u64, OAuthError),
    Issue,
    Rejected(OAuthError),
}

/// One token request in flight. Created by [`Engine::token_grant`].
#[derive(Debug)]
pub struct TokenGrant<'a> {
    engine: &'a Engine,
    provider: Provider<'a>,
    request: Option<TokenRequest<'a>>,
    client: Option<ClientIndex>,
    state: State,
    user: UserRef,
    scope: ScopeSet,
    family: Option<FamilyId>,
    retire: Option<TokenKey>,
    /// The scope a rotated refresh token keeps (refresh grants only).
    refresh_scope: Option<ScopeSet>,
    /// What the request proved, for bound tokens.
    proofs: Proofs,
    /// The binding a rotated refresh token keeps (refresh grants only).
    refresh_binding: Binding,
}

const BAD_CREDENTIALS: &str = "The username or password is incorrect.";
const BAD_REFRESH_TOKEN: &str = OAuthError::INVALID_REFRESH_TOKEN.description;

impl Engine {
    /// Starts a token request: parses `body` and the `Authorization` header
    /// (`scratch` holds decoded Basic credentials; zero it afterwards) and
    /// identifies the client. Call this first; then loop on
    /// [`TokenGrant::step`].
    pub fn token_grant<'a>(
        &'a self,
        provider: Provider<'a>,
        body: &'a [u8],
        authorization: Option<&[u8]>,
        scratch: &'a mut [u8; SCRATCH_LEN],
    ) -> TokenGrant<'a> {
        // Decided before the grant is built, so that the parsed request is
        // written into it once rather than moved in afterwards.
        let (request, client, state) = match TokenRequest::parse(body, authorization, scratch, &self.config.limits) {
            Ok(request) => match self.identify(&request.auth) {
                Ok(Some(index)) => (Some(request), Some(index), State::AuthenticateClient),
                Ok(None) => (Some(request), None, State::IdentifyClient),
                Err(e) => (Some(request), None, State::Rejected(e)),
            },
            Err(e) => (None, None, State::Rejected(e)),
        };
        TokenGrant {
            engine: self,
            provider,
            request,
            client,
            state,
            user: UserRef::NONE,
            scope: ScopeSet::EMPTY,
            family: None,
            retire: None,
            refresh_scope: None,
            proofs: Proofs::default(),
            refresh_binding: Binding::None,
        }
    }

    /// Writes the JSON error body for `error`, honouring `detailed_errors`.
    pub fn write_error(&self, error: &OAuthError, out: &mut Vec<u8>) {
        response::write_error(out, error, self.config.detailed_errors);
    }

    /// The `scope` string of `set`.
    pub fn scope_string(&self, set: ScopeSet) -> String {
        self.scopes.to_string(set)
    }
}

fn invalid_grant(reason: Reason, description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, reason, description)
}

impl<'a> TokenGrant<'a> {
    /// What the runtime must do next.
    pub fn step(&self) -> Step<'_> {
        match self.state {
            State::IdentifyClient => match self.request.as_ref().and_then(|r| r.auth.assertion()) {
                Some(assertion) => Step::IdentifyClient { assertion: Secret::new(assertion) },
                None => Step::Reject(NO_CLIENT_AUTH),
            },
            State::AuthenticateClient => match (self.client, &self.request) {
                (Some(client), Some(request)) => Step::AuthenticateClient {
                    client,
                    credential: credential(&request.auth),
                    basic: request.auth.is_basic(),
                },
                _ => Step::Reject(NO_CLIENT_AUTH),
            },
            State::VerifyPassword => match &self.request {
                Some(TokenRequest { grant: GrantRequest::Password { username, password, .. }, .. }) => {
                    Step::VerifyPassword { username, password: Secret::new(password) }
                }
                _ => Step::Reject(server_error()),
            },
            State::LoadRefreshToken(key) => Step::LoadRefreshToken { key },
            State::CheckAccount(user, issued_at) => Step::CheckAccount { user, issued_at },
            State::RevokeFamily(family, until, _) => Step::RevokeFamily { family, until },
            State::Issue => Step::Issue,
            State::Rejected(e) => Step::Reject(e),
        }
    }

    /// The presented client id, for logs.
    pub fn client_id(&self) -> Option<&str> {
        self.request.as_ref().and_then(|r| r.auth.client_id())
    }

    /// The grant type, for logs (`None` if the request did not parse).
    pub fn grant_type(&self) -> Option<GrantType> {
        self.request.as_ref().map(|r| r.grant.grant_type())
    }

    /// The presented username, for logs (password grant only).
    pub fn username(&self) -> Option<&str> {
        match &self.request {
            Some(TokenRequest { grant: GrantRequest::Password { username, .. }, .. }) => Some(username),
            _ => None,
        }
    }

    /// The client, once identified.
    pub fn client(&self) -> Option<ClientIndex> {
        self.client
    }

    fn reject(&mut self, e: OAuthError) {
        self.state = State::Rejected(e);
    }

    /// Answers [`Step::IdentifyClient`] with the assertion's issuer (`None`
    /// if it could not be read).
    pub fn client_identified(&mut self, issuer: Option<&str>) {
        if !matches!(self.state, State::IdentifyClient) {
            return self.misuse();
        }
        match self.engine.identified(issuer) {
            Ok(index) => {
                self.client = Some(index);
                self.state = State::AuthenticateClient;
            }
            Err(e) => self.reject(e),
        }
    }

    /// Gives the grant what the request proved (see [`Proofs`]). Call it
    /// before answering [`Step::AuthenticateClient`]: a refresh compares a
    /// bound token with the proofs then.
    pub fn set_proofs(&mut self, proofs: Proofs) {
        self.proofs = proofs;
    }

    /// Answers [`Step::AuthenticateClient`] with a refusal for `reason`
    /// (`invalid_client`): a bad assertion, a missing certificate, a method
    /// the client may not use.
    pub fn client_rejected(&mut self, reason: Reason) {
        if !matches!(self.state, State::AuthenticateClient) {
            return self.misuse();
        }
        let basic = self.request.as_ref().is_some_and(|r| r.auth.is_basic());
        self.reject(invalid_client(reason, basic));
    }

    /// Answers [`Step::AuthenticateClient`]: whether the secret verified.
    /// On success the grant's capability and scope are checked.
    pub fn client_authenticated(&mut self, ok: bool) {
        if !matches!(self.state, State::AuthenticateClient) {
            return self.misuse();
        }
        let (Some(request), Some(index)) = (&self.request, self.client) else { return self.misuse() };
        let basic = request.auth.is_basic();
        if !ok {
            return self.reject(invalid_client(Reason::BadClientSecret, basic));
        }
        let Some(client) = self.engine.clients.get(index) else {
            return self.reject(invalid_client(Reason::UnknownClient, basic));
        };
        let needed = Capabilities::for_grant(request.grant.grant_type());
        if !client.capabilities.contains(needed) {
            return self.reject(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                Reason::MissingCapability,
                "The client is not authorized to use this grant type.",
            ));
        }
        let scopes = &self.engine.scopes;
        let next = match &request.grant {
            GrantRequest::Password { scope, .. } | GrantRequest::ClientCredentials { scope } => {
                match scopes.grant(scope.as_deref(), client.allowed_scopes, client.default_scopes) {
                    Ok(granted) => {
                        self.scope = granted;
                        if matches!(request.grant, GrantRequest::Password { .. }) {
                            State::VerifyPassword
                        } else {
                            State::Issue
                        }
                    }
                    Err(e) => State::Rejected(e),
                }
            }
            GrantRequest::RefreshToken { refresh_token, .. } => match token::binding_of(refresh_token) {
                // RFC 9449 §5, RFC 8705 §3: a bound token needs its key or
                // certificate. Checked before any look-up, so a stolen copy
                // without the key cannot even trip reuse detection.
                Some(binding) if self.proofs.satisfy(binding) => {
                    self.refresh_binding = binding;
                    State::LoadRefreshToken(self.provider.digest.digest(refresh_token.as_bytes()))
                }
                Some(_) => State::Rejected(invalid_grant(Reason::BindingMismatch, BAD_REFRESH_TOKEN)),
                None => State::Rejected(invalid_grant(Reason::UnknownRefreshToken, BAD_REFRESH_TOKEN)),
            },
        };
        self.state = next;
    }

    /// Answers [`Step::VerifyPassword`].
    pub fn password_verified(&mut self, outcome: PasswordOutcome) {
        if !matches!(self.state, State::VerifyPassword) {
            return self.misuse();
        }
        // Wrong password, unknown user and locked user are told apart only
        // in the log: the client gets the same answer for all three.
        self.state = match outcome {
            PasswordOutcome::Valid(user) => {
                self.user = user;
                State::Issue
            }
            PasswordOutcome::WrongPassword => State::Rejected(invalid_grant(Reason::WrongPassword, BAD_CREDENTIALS)),
            PasswordOutcome::UnknownUser => State::Rejected(invalid_grant(Reason::UnknownUser, BAD_CREDENTIALS)),
            PasswordOutcome::Locked => State::Rejected(invalid_grant(Reason::LockedUser, BAD_CREDENTIALS)),
            PasswordOutcome::Disabled => State::Rejected(invalid_grant(Reason::DisabledAccount, BAD_CREDENTIALS)),
        };
    }

    /// Answers [`Step::LoadRefreshToken`] with the stored record, if any.
    /// Checks the token kind, its expiry at `now`, the client binding and
    /// the requested scope (RFC 6749 §6).
    pub fn refresh_token_loaded(&mut self, record: Option<TokenRecord>, now: u64) {
        let State::LoadRefreshToken(key) = self.state else { return self.misuse() };
        let (Some(request), Some(index)) = (&self.request, self.client) else { return self.misuse() };
        let GrantRequest::RefreshToken { scope, .. } = &request.grant else { return self.misuse() };
        let reject = |reason| State::Rejected(invalid_grant(reason, BAD_REFRESH_TOKEN));
        self.state = match record {
            None => reject(Reason::UnknownRefreshToken),
            Some(r) if r.kind != TokenKind::Refresh => reject(Reason::NotARefreshToken),
            Some(r) if !r.is_active(now) => reject(Reason::ExpiredRefreshToken),
            // RFC 6749 §6: the token must have been issued to this client.
            Some(r) if r.client != index => reject(Reason::RefreshTokenOfAnotherClient),
            // RFC 9700 §4.14.2: a rotated token presented again means two
            // parties hold it; revoke the family so the thief's copy dies too.
            Some(r) if r.is_retired() && now >= r.retired_at.saturating_add(self.engine.config.refresh_reuse_grace) => {
                State::RevokeFamily(r.family, family_horizon(self.engine, now), REUSED)
            }
            Some(r) => {
                let allowed = self.engine.clients.get(index).map_or(ScopeSet::EMPTY, |c| c.allowed_scopes);
                match self.engine.scopes.refresh(scope.as_deref(), r.scope, allowed) {
                    Ok(granted) => {
                        self.scope = granted;
                        // RFC 6749 §6: a new refresh token keeps the scope of
                        // the one presented; only the access token narrows.
                        self.refresh_scope = Some(r.scope.intersection(allowed));
                        self.user = r.user;
                        self.family = Some(r.family);
                        // Inside the grace window a retired token is accepted
                        // again without a second retirement.
                        self.retire = (self.engine.config.rotate_refresh_tokens && !r.is_retired()).then_some(key);
                        // A user's grant goes on only while the account does.
                        if r.user == UserRef::NONE {
                            State::Issue
                        } else {
                            State::CheckAccount(r.user, r.issued_at)
                        }
                    }
                    Err(e) => State::Rejected(e),
                }
            }
        };
    }

    /// Answers [`Step::CheckAccount`]. An account that is gone, disabled
    /// or whose password changed since the token was issued ends the grant
    /// family, with the same `invalid_grant` as an unknown refresh token.
    pub fn account_checked(&mut self, state: AccountState, now: u64) {
        let State::CheckAccount(..) = self.state else { return self.misuse() };
        let Some(family) = self.family else { return self.misuse() };
        let reason = match state {
            AccountState::Active => {
                self.state = State::Issue;
                return;
            }
            AccountState::Removed => Reason::AccountRemoved,
            AccountState::Disabled => Reason::DisabledAccount,
            AccountState::PasswordChanged => Reason::PasswordChanged,
        };
        let error = invalid_grant(reason, BAD_REFRESH_TOKEN);
        self.state = State::RevokeFamily(family, family_horizon(self.engine, now), error);
    }

    /// Answers [`Step::RevokeFamily`], once the family is revoked.
    pub fn family_revoked(&mut self) {
        if let State::RevokeFamily(_, _, error) = self.state {
            self.state = State::Rejected(error);
        } else {
            self.misuse();
        }
    }

    /// An answer to a step the grant did not ask for: a runtime bug. The
    /// grant ends with `server_error` (keeping an earlier rejection), so
    /// that a runtime looping on [`TokenGrant::step`] cannot loop forever.
    fn misuse(&mut self) {
        if !matches!(self.state, State::Rejected(_)) {
            self.state = State::Rejected(server_error());
        }
    }

    /// Answers [`Step::Issue`]: mints the tokens, writes the JSON response
    /// into `out` and returns the records to store. `now` is the issue time.
    pub fn issue(self, now: u64, out: &mut Vec<u8>) -> Result<Issued, OAuthError> {
        self.issue_with(now, None, out)
    }

    /// The resource owner, once known (after [`Step::VerifyPassword`] or
    /// [`Step::LoadRefreshToken`]); [`UserRef::NONE`] for client credentials.
    /// The runtime resolves it to a name for a JWT's `sub`.
    pub fn user(&self) -> UserRef {
        self.user
    }

    /// Whether the client's access tokens are JWTs, so that
    /// [`TokenGrant::issue_with`] needs a [`JwtIssuer`].
    pub fn wants_jwt(&self) -> bool {
        self.client.is_some_and(|c| self.engine.clients.access_token_format(c) == TokenFormat::Jwt)
    }

    /// Like [`TokenGrant::issue`], for clients whose access tokens are JWTs
    /// (RFC 9068): `jwt` signs them. Opaque clients ignore it.
    pub fn issue_with(self, now: u64, jwt: Option<&JwtIssuer<'_>>, out: &mut Vec<u8>) -> Result<Issued, OAuthError> {
        match self.state {
            State::Issue => {}
            State::Rejected(e) => return Err(e),
            _ => return Err(server_error()),
        }
        let (Some(request), Some(client_index)) = (&self.request, self.client) else {
            return Err(server_error());
        };
        let engine = self.engine;
        let client = engine.clients.get(client_index).ok_or_else(server_error)?;
        let random_failed = |_| OAuthError::new(ErrorCode::ServerError, Reason::RandomFailure, "Internal error.");
        let family = match self.family {
            Some(f) => f,
            None => {
                let mut raw = [0u8; 8];
                self.provider.random.fill(&mut raw).map_err(random_failed)?;
                FamilyId(u64::from_le_bytes(raw))
            }
        };
        let refresh_scope = self.refresh_scope.unwrap_or(self.scope);
        let record = |kind, ttl: u64| TokenRecord {
            expires_at: now.saturating_add(ttl),
            issued_at: now,
            scope: if kind == TokenKind::Refresh { refresh_scope } else { self.scope },
            family,
            user: self.user,
            client: client_index,
            kind,
            retired_at: 0,
        };
        let wants_refresh = match request.grant {
            // RFC 6749 §4.3.3: optional; issued to clients allowed to refresh.
            GrantRequest::Password { .. } => client.capabilities.contains(Capabilities::REFRESH_TOKEN),
            GrantRequest::RefreshToken { .. } => engine.config.rotate_refresh_tokens,
            // RFC 6749 §4.4.3: a refresh token SHOULD NOT be included.
            GrantRequest::ClientCredentials { .. } => false,
        };
        let mut scope = String::new();
        engine.scopes.write(self.scope, &mut scope);
        let binding = self.proofs.binding();
        let refresh_binding = match request.grant {
            // A rotated refresh token keeps its binding; an unbound one is
            // bound from now on if this request proved a key or certificate
            // (stricter than RFC 9449 §5 asks of a confidential client).
            GrantRequest::RefreshToken { .. } if self.refresh_binding != Binding::None => self.refresh_binding,
            _ => binding,
        };
        let mut confirmation = String::new();
        if let Some(t) = binding.thumbprint() {
            jwt::push_b64url(&mut confirmation, t);
        }
        let (access, access_key) = if engine.clients.access_token_format(client_index) == TokenFormat::Jwt {
            let signing_failed = OAuthError::new(ErrorCode::ServerError, Reason::SigningFailure, "Internal error.");
            let jwt = jwt.ok_or(signing_failed)?;
            let claims = jwt::Claims {
                subject: jwt.subject.unwrap_or(&client.id),
                client_id: &client.id,
                scope: &scope,
                issued_at: now,
                expires_at: now.saturating_add(engine.config.access_token_ttl),
                confirmation: binding.confirmation_member().map(|member| (member, confirmation.as_str())),
            };
            let token = jwt::encode(jwt, &claims, self.provider.random).map_err(|e| match e {
                jwt::JwtError::Random => random_failed(RandomError),
                jwt::JwtError::Sign => signing_failed,
            })?;
            let key = self.provider.digest.digest(token.as_bytes());
            (AccessToken::Jwt(token), key)
        } else {
            let (token, key) = Token::mint_bound(&self.provider, binding).map_err(random_failed)?;
            (AccessToken::Opaque(token), key)
        };
        let refresh = if wants_refresh {
            Some(Token::mint_bound(&self.provider, refresh_binding).map_err(random_failed)?)
        } else {
            None
        };
        response::write_token_bytes(
            out,
            access.as_bytes(),
            refresh.as_ref().map(|(t, _)| t.as_bytes()),
            &scope,
            // RFC 9449 §5: a DPoP-bound access token is of type DPoP; a
            // certificate-bound one stays a bearer token (RFC 8705 §3).
            if matches!(binding, Binding::Dpop(_)) { "DPoP" } else { "bearer" },
            engine.config.access_token_ttl,
        );
        Ok(Issued {
            access: (access_key, record(TokenKind::Access, engine.config.access_token_ttl)),
            refresh: refresh.map(|(_, key)| (key, record(TokenKind::Refresh, engine.config.refresh_token_ttl))),
            retire: self.retire,
        })
    }
}

/// An access token as sent: opaque, or a JWT.
enum AccessToken {
    Opaque(Token),
    Jwt(String),
}

impl AccessToken {
    fn as_bytes(&self) -> &[u8] {
        match self {
            AccessToken::Opaque(t) => t.as_bytes(),
            AccessToken::Jwt(t) => t.as_bytes(),
        }
    }
}

impl Drop for AccessToken {
    fn drop(&mut self) {
        if let AccessToken::Jwt(t) = self {
            zeroize::Zeroize::zeroize(t);
        }
    }
}

fn server_error() -> OAuthError {
    OAuthError::new(ErrorCode::ServerError, Reason::StoreFailure, "Internal error.")
}
