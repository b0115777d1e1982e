//! Revocation (RFC 7009) and introspection (RFC 7662): the same client
//! authentication as the token endpoint, then one record looked up.

use super::{GrantOutcome, Grants};
use crate::auth::RequestContext;
use crate::clock;
use crate::live::Live;
use crate::metrics::Success;
use crate::store::{Names, StoreError, TokenStore};
use ropc_core::basic::SCRATCH_LEN;
use ropc_core::{OAuthError, QueryKind, QueryStep};
use zeroize::Zeroizing;

impl Grants<'_> {
    /// Runs one revocation or introspection request.
    pub async fn token_query(
        &self,
        live: &Live,
        kind: QueryKind,
        body: &[u8],
        authorization: Option<&[u8]>,
        ctx: &RequestContext<'_>,
    ) -> GrantOutcome {
        let mut scratch = Zeroizing::new([0u8; SCRATCH_LEN]);
        let provider = self.platform.provider();
        let mut query = match kind {
            QueryKind::Revocation => live.engine.revocation(provider, body, authorization, &mut scratch),
            QueryKind::Introspection => live.engine.introspection(provider, body, authorization, &mut scratch),
        };
        let mut outcome = GrantOutcome {
            body: Vec::new(),
            result: Ok(Success::Active),
            retry_after: None,
            client_id: query.client_id().map(str::to_owned),
            grant_type: None,
            username: None,
        };
        let result = loop {
            let step = query.step();
            tracing::trace!(?step, "token query step");
            match step {
                QueryStep::IdentifyClient { assertion } => {
                    query.client_identified(outcome.assertion_issuer(assertion.expose()).as_deref())
                }
                QueryStep::AuthenticateClient { client, credential, basic } => {
                    let checked = self.auth.authenticate_client(live, client, credential, basic, ctx, clock::now());
                    match checked.await {
                        Ok(Ok(())) => query.client_authenticated(true),
                        Ok(Err(reason)) => query.client_rejected(reason),
                        Err(r) => break Err(r),
                    }
                }
                QueryStep::LoadToken { key } => match self.tokens.get(live, &key).await {
                    Ok(record) => query.token_loaded(record),
                    Err(_) => break Ok(Err(OAuthError::STORE_FAILED)),
                },
                QueryStep::Done => break Ok(Ok(())),
                QueryStep::Reject(e) => break Ok(Err(e)),
            }
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                outcome.fail(live, e);
                return outcome;
            }
            Err(refused) => {
                outcome.refused(live, refused);
                return outcome;
            }
        }
        let now = clock::now();
        match kind {
            QueryKind::Revocation => {
                let revocation = query.revocation(now);
                let applied = async {
                    if let Some((family, until)) = revocation.revoke_family {
                        self.tokens.revoke_family(family, until).await?;
                    }
                    if let Some(key) = revocation.remove {
                        self.tokens.remove(&key).await?;
                    }
                    Ok::<_, StoreError>(())
                };
                if applied.await.is_err() {
                    outcome.fail(live, OAuthError::STORE_FAILED);
                    return outcome;
                }
                outcome.result = Ok(match (revocation.remove, revocation.revoke_family) {
                    (_, Some(_)) => Success::RevokedGrant,
                    (Some(_), None) => Success::RevokedToken,
                    // Unknown, or another client's: RFC 7009 §2.2 says 200 all the same.
                    (None, None) => Success::NothingRevoked,
                });
            }
            QueryKind::Introspection => {
                let name = |u| {
                    live.owner(u)
                        .map(|o| ropc_core::Owner { username: o.username.to_string(), subject: o.subject().to_owned() })
                };
                let active = query.write_introspection(now, &live.issuer, &name, &mut outcome.body);
                outcome.result = Ok(if active { Success::Active } else { Success::Inactive });
            }
        }
        outcome
    }
}
