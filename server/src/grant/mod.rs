//! The Step loops: one token request driven through the core
//! ([`ropc_core::TokenGrant`]), and one revocation or introspection
//! ([`ropc_core::TokenQueryGrant`]) in `query`. Each [`ropc_core::Step`]
//! the engine asks for is answered here, by [`Auth`] (secrets, passwords)
//! or by the [`Tokens`] store (records); the engine decides, this module
//! only carries the answers back.

mod query;

use crate::auth::{assertion_issuer, Auth, Refused};
pub use crate::auth::{DpopHeader, RequestContext};
use crate::clock;
use crate::live::Live;
use crate::metrics::Success;
use crate::provider::Platform;
use crate::store::{Commit, Names, TokenStore, Tokens, Whose};
use ropc_core::basic::SCRATCH_LEN;
use ropc_core::{AccountState, GrantType, Issued, JwtIssuer, LostRace, OAuthError, Step};
use zeroize::Zeroizing;

/// What a grant needs of the running server.
#[derive(Clone, Copy, Debug)]
pub struct Grants<'a> {
    /// Secrets, passwords and the lockout.
    pub auth: &'a Auth,
    /// Token records.
    pub tokens: &'a Tokens,
    /// Randomness and the digest, for the core.
    pub platform: &'a Platform,
}

/// The outcome of one request to a form endpoint, for the response and
/// the log.
#[derive(Debug)]
pub struct GrantOutcome {
    /// The JSON body.
    pub body: Vec<u8>,
    /// What succeeded, or the error.
    pub result: Result<Success, OAuthError>,
    /// `Retry-After` seconds, for 503 and 429.
    pub retry_after: Option<u64>,
    /// The presented client id (for the log).
    pub client_id: Option<String>,
    /// The grant type (for the log).
    pub grant_type: Option<GrantType>,
    /// The presented username (for the log).
    pub username: Option<String>,
}

impl GrantOutcome {
    /// The HTTP status (RFC 6749 §5.1, §5.2).
    pub fn status(&self) -> u16 {
        match &self.result {
            Ok(_) => 200,
            Err(e) => e.status(),
        }
    }

    /// Ends the request with `error` (its body written as the engine says).
    fn fail(&mut self, live: &Live, error: OAuthError) {
        self.body.clear();
        live.engine.write_error(&error, &mut self.body);
        self.result = Err(error);
    }

    /// The client an assertion names ([`ropc_core::Step::IdentifyClient`]),
    /// also kept as the presented client id for the log.
    fn assertion_issuer(&mut self, assertion: &str) -> Option<String> {
        let issuer = assertion_issuer(assertion);
        if self.client_id.is_none() {
            self.client_id.clone_from(&issuer);
        }
        issuer
    }

    /// Ends the request with a check that did not run.
    fn refused(&mut self, live: &Live, refused: Refused) {
        let (error, retry_after) = refused.error();
        self.retry_after = Some(retry_after);
        self.fail(live, error);
    }
}

impl Grants<'_> {
    /// Runs one token request through the engine. `authorization` is the
    /// raw `Authorization` header, if any; `live` is the configuration the
    /// request runs on.
    pub async fn token(
        &self,
        live: &Live,
        body: &[u8],
        authorization: Option<&[u8]>,
        ctx: &RequestContext<'_>,
    ) -> GrantOutcome {
        let peer = ctx.peer;
        let mut scratch = Zeroizing::new([0u8; SCRATCH_LEN]);
        let mut grant = live.engine.token_grant(self.platform.provider(), body, authorization, &mut scratch);
        let mut out = Vec::with_capacity(256);
        let mut outcome = GrantOutcome {
            body: Vec::new(),
            result: Ok(Success::Issued),
            retry_after: None,
            client_id: grant.client_id().map(str::to_owned),
            grant_type: grant.grant_type(),
            username: grant.username().map(str::to_owned),
        };
        let result = loop {
            let step = grant.step();
            // `Step`'s Debug redacts the secret and the password.
            tracing::trace!(?step, "token grant step");
            match step {
                Step::IdentifyClient { assertion } => {
                    grant.client_identified(outcome.assertion_issuer(assertion.expose()).as_deref())
                }
                Step::AuthenticateClient { client, credential, basic } => {
                    let now = clock::now();
                    match self.auth.authenticate_client(live, client, credential, basic, ctx, now).await {
                        Ok(Ok(())) => {}
                        Ok(Err(reason)) => {
                            grant.client_rejected(reason);
                            continue;
                        }
                        Err(r) => break Err(r),
                    }
                    // Only an authenticated client's proofs are checked, so
                    // that nobody else can fill the replay cache.
                    match self.auth.proofs(live, client, ctx, now).await {
                        Ok(Ok(proofs)) => {
                            grant.set_proofs(proofs);
                            grant.client_authenticated(true);
                        }
                        Ok(Err(e)) => break Ok(Err(e)),
                        Err(r) => break Err(r),
                    }
                }
                Step::VerifyPassword { username, password } => {
                    let manager = grant.client().and_then(|c| live.manager_of(c));
                    let now = clock::now();
                    let checked = self.auth.verify_password(live, manager, username, password.expose(), peer, now);
                    match checked.await {
                        Ok(verified) => {
                            if let Some(user) = verified.ends_earlier_grants {
                                // Before this grant is stored: it is not one of them.
                                if self.end_user_grants(live, user, now).await.is_err() {
                                    break Ok(Err(OAuthError::STORE_FAILED));
                                }
                            }
                            grant.password_verified(verified.outcome)
                        }
                        Err(r) => break Err(r),
                    }
                }
                Step::LoadRefreshToken { key } => match self.tokens.get(live, &key).await {
                    Ok(record) => grant.refresh_token_loaded(record, clock::now()),
                    Err(_) => break Ok(Err(OAuthError::STORE_FAILED)),
                },
                Step::CheckAccount { user, issued_at } => {
                    let now = clock::now();
                    match self.auth.account_state(live, user, issued_at, now).await {
                        Ok((state, ends_earlier)) => {
                            if ends_earlier && self.end_user_grants(live, user, now).await.is_err() {
                                break Ok(Err(OAuthError::STORE_FAILED));
                            }
                            if state != AccountState::Active {
                                tracing::info!(
                                    event = "grant_ended",
                                    client = ?outcome.client_id.as_deref().unwrap_or("-"),
                                    user = ?live.owner(user).map(|o| o.username.to_string()).unwrap_or_default(),
                                    why = ?state,
                                    "the account changed: the grant ends at its refresh"
                                );
                            }
                            grant.account_checked(state, now);
                        }
                        Err(r) => break Err(r),
                    }
                }
                Step::RevokeFamily { family, until } => match self.tokens.revoke_family(family, until).await {
                    Ok(()) => {
                        tracing::warn!(
                            event = "refresh_token_reuse",
                            client = ?outcome.client_id.as_deref().unwrap_or("-"),
                            family = family.0,
                            "a rotated refresh token was replayed; its grant family is revoked"
                        );
                        grant.family_revoked();
                    }
                    Err(_) => break Ok(Err(OAuthError::STORE_FAILED)),
                },
                Step::Issue => {
                    let owner = grant.wants_jwt().then(|| live.owner(grant.user())).flatten();
                    let subject = owner.as_ref().map(|o| o.subject().to_owned());
                    // Without keys the core answers server_error (signing_failure).
                    let jwt = live.jwt.as_ref().filter(|_| grant.wants_jwt()).map(|keys| JwtIssuer {
                        signer: &keys.active,
                        issuer: &live.issuer,
                        audience: live.config.jwt.audience.as_deref().unwrap_or(&live.issuer),
                        subject: subject.as_deref(),
                    });
                    break Ok(match grant.issue_with(clock::now(), jwt.as_ref(), &mut out) {
                        Ok(issued) => self.commit(live, &issued).await,
                        Err(e) => Err(e),
                    });
                }
                Step::Reject(e) => break Ok(Err(e)),
            }
        };
        match result {
            Ok(Ok(())) => outcome.body = out,
            Ok(Err(e)) => {
                // Zero any token already written before the failure.
                zeroize::Zeroize::zeroize(&mut out);
                outcome.fail(live, e);
            }
            Err(refused) => outcome.refused(live, refused),
        }
        outcome
    }

    /// Ends every grant of `whose` with a token issued up to `now` (a
    /// password changed in the backend, an operator's revocation); returns
    /// how many ended.
    pub async fn end_grants(
        &self,
        live: &Live,
        whose: Whose,
        now: u64,
        why: &'static str,
    ) -> Result<usize, crate::store::StoreError> {
        let horizon = now.saturating_add(live.engine.config.refresh_token_ttl.max(live.engine.config.access_token_ttl));
        let (user, client) = match &whose {
            Whose::User(o) => (Some(o.username.to_string()), None),
            Whose::Client(c) => (None, live.client_id(*c).map(str::to_owned)),
        };
        let ended = self.tokens.end_grants(live, whose, now, horizon).await?;
        if ended > 0 {
            tracing::warn!(event = "grants_ended", user = ?user, client = ?client, grants = ended, why, "grants ended");
        }
        Ok(ended)
    }

    /// Ends `user`'s grants issued up to `now`: their password changed in
    /// their backend.
    async fn end_user_grants(
        &self,
        live: &Live,
        user: ropc_core::UserRef,
        now: u64,
    ) -> Result<usize, crate::store::StoreError> {
        match live.owner(user) {
            Some(owner) => self.end_grants(live, Whose::User(owner), now, "password changed").await,
            None => Ok(0),
        }
    }

    /// Stores a grant's records; settles a lost rotation race as the engine
    /// says (a replay, unless the grace window covers it).
    async fn commit(&self, live: &Live, issued: &Issued) -> Result<(), OAuthError> {
        match self.tokens.commit(live, issued).await {
            Ok(Commit::Stored) => Ok(()),
            Ok(Commit::LostRace) => match issued.lost_race(&live.engine) {
                LostRace::StoreWithoutRetiring => {
                    self.tokens.store_only(live, issued).await.map_err(|_| OAuthError::STORE_FAILED)
                }
                LostRace::RevokeFamily(family, until, error) => {
                    self.tokens.revoke_family(family, until).await.map_err(|_| OAuthError::STORE_FAILED)?;
                    tracing::warn!(
                        event = "refresh_token_reuse",
                        family = family.0,
                        "two requests presented one refresh token at once; its grant family is revoked"
                    );
                    Err(error)
                }
            },
            Err(_) => Err(OAuthError::STORE_FAILED),
        }
    }
}
