//! Client authentication (RFC 6749 §2.3.1, RFC 7523, RFC 8705): what the
//! client presented, checked against the one method it is configured for,
//! behind the IP throttle, so that guessing secrets or forging assertions
//! is throttled like guessing passwords. Then what the request proves for
//! bound tokens: its DPoP proof (RFC 9449) and its TLS certificate.

use super::{assertion, dpop, Auth, Refused, UNAVAILABLE};
use crate::config::{AuthMethod, ClientAuthPolicy};
use crate::live::Live;
use crate::lockout::FAILED_CLIENT_AUTHENTICATIONS;
use crate::store::Names;
use crate::tls::PeerCertificate;
use ropc_core::{ClientCredential, ClientIndex, OAuthError, Proofs, Reason};
use std::net::IpAddr;

/// The `DPoP` header of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DpopHeader<'a> {
    /// None sent.
    #[default]
    None,
    /// Exactly one.
    One(&'a str),
    /// More than one, or one that is not visible ASCII: refused (RFC 9449
    /// §4.3 item 1).
    Invalid,
}

/// What a request brings beside its body, for client authentication and
/// bound tokens.
#[derive(Clone, Copy, Debug)]
pub struct RequestContext<'a> {
    /// The client's IP address, for the throttle.
    pub peer: IpAddr,
    /// The `DPoP` header.
    pub dpop: DpopHeader<'a>,
    /// The connection's TLS client certificate, if it sent one.
    pub certificate: Option<&'a PeerCertificate>,
    /// The URL the request was sent to (the issuer and the path): DPoP's
    /// `htu`, and an audience an assertion may name.
    pub url: &'a str,
}

impl Auth {
    /// Checks what client `client` presented. `Ok(Err(reason))` is a
    /// refusal (`invalid_client`); an IP over its failure threshold is
    /// refused first, and each refusal counts against the IP.
    pub async fn authenticate_client(
        &self,
        live: &Live,
        client: ClientIndex,
        credential: ClientCredential<'_>,
        basic: bool,
        ctx: &RequestContext<'_>,
        now: u64,
    ) -> Result<Result<(), Reason>, Refused> {
        let peer = ctx.peer;
        // A certificate counts only while it is valid: a keep-alive
        // connection can outlive it.
        let ctx = &RequestContext { certificate: ctx.certificate.filter(|c| c.valid_at(now)), ..*ctx };
        if let Some(retry_after) = self.lockout.ip_throttled(peer, now).await.map_err(|_| UNAVAILABLE)? {
            return Err(Refused::Throttled { retry_after });
        }
        let policy = live.client_auth(client);
        let verdict = self.check(live, client, &policy, credential, basic, ctx, now).await?;
        if verdict.is_err() {
            self.lockout.ip_failure(peer, now, FAILED_CLIENT_AUTHENTICATIONS).await;
        }
        Ok(verdict)
    }

    #[allow(clippy::too_many_arguments)]
    async fn check(
        &self,
        live: &Live,
        client: ClientIndex,
        policy: &ClientAuthPolicy,
        credential: ClientCredential<'_>,
        basic: bool,
        ctx: &RequestContext<'_>,
        now: u64,
    ) -> Result<Result<(), Reason>, Refused> {
        use AuthMethod::*;
        let method = policy.method;
        Ok(match (method, credential) {
            (None | Some(ClientSecretBasic | ClientSecretPost), ClientCredential::Secret(secret)) => {
                if method == Some(ClientSecretBasic) && !basic || method == Some(ClientSecretPost) && basic {
                    return Ok(Err(Reason::WrongAuthMethod));
                }
                let ok = live.client_secrets.verify(&*self.verifier, client, secret.expose()).await;
                if ok.map_err(Refused::Verify)? {
                    Ok(())
                } else {
                    Err(Reason::BadClientSecret)
                }
            }
            (Some(PrivateKeyJwt | ClientSecretJwt), ClientCredential::Assertion(jwt)) => {
                let id = live.client_id(client).unwrap_or_default();
                let audiences = [ctx.url, live.token_endpoint_url(), live.issuer.as_str()];
                match assertion::verify(jwt.expose(), id, policy, &audiences, &self.limits, now) {
                    Err(why) => {
                        tracing::info!(event = "client_assertion_refused", client = ?id, why, "client assertion refused");
                        Err(Reason::BadAssertion)
                    }
                    Ok(v) => match self.replay.first_use(&v.id, client.0, v.until, now).await {
                        Ok(true) => Ok(()),
                        Ok(false) => {
                            tracing::warn!(event = "client_assertion_replayed", client = ?id, "a client assertion was replayed");
                            Err(Reason::AssertionReplayed)
                        }
                        Err(_) => return Err(Refused::ReplayCache),
                    },
                }
            }
            (Some(TlsClientAuth), ClientCredential::None) => match ctx.certificate {
                Some(cert)
                    if cert.ca_verified
                        && cert.subject_dn().is_some_and(|dn| policy.subject_dn.as_deref() == Some(dn)) =>
                {
                    Ok(())
                }
                _ => Err(Reason::BadClientCertificate),
            },
            (Some(SelfSignedTlsClientAuth), ClientCredential::None) => {
                match (ctx.certificate, policy.jwks.as_deref()) {
                    (Some(cert), Some(jwks)) if cert.key_in(jwks) => Ok(()),
                    _ => Err(Reason::BadClientCertificate),
                }
            }
            (_, ClientCredential::None) => Err(Reason::NoClientAuthentication),
            _ => Err(Reason::WrongAuthMethod),
        })
    }

    /// What a token request of client `client` proves for bound tokens:
    /// its DPoP proof, checked and recorded, and its certificate.
    /// `Ok(Err(_))` refuses the request.
    pub async fn proofs(
        &self,
        live: &Live,
        client: ClientIndex,
        ctx: &RequestContext<'_>,
        now: u64,
    ) -> Result<Result<Proofs, OAuthError>, Refused> {
        let policy = live.client_auth(client);
        let certificate = ctx.certificate.filter(|c| c.valid_at(now));
        let dpop = match ctx.dpop {
            DpopHeader::None if policy.require_dpop => return Ok(Err(OAuthError::DPOP_PROOF_REQUIRED)),
            DpopHeader::None => None,
            DpopHeader::Invalid => return Ok(Err(OAuthError::DPOP_PROOF_INVALID)),
            DpopHeader::One(proof) => match dpop::verify(proof, "POST", ctx.url, &self.limits, now) {
                Err(why) => {
                    tracing::info!(event = "dpop_proof_refused", client = ?live.client_id(client).unwrap_or("-"), why, "DPoP proof refused");
                    return Ok(Err(OAuthError::DPOP_PROOF_INVALID));
                }
                Ok(proof) => match self.replay.first_use(&proof.id, client.0, proof.until, now).await {
                    Ok(true) => Some(proof.jkt),
                    Ok(false) => {
                        tracing::warn!(event = "dpop_proof_replayed", client = ?live.client_id(client).unwrap_or("-"), "a DPoP proof was replayed");
                        return Ok(Err(OAuthError::DPOP_PROOF_INVALID));
                    }
                    Err(_) => return Err(Refused::ReplayCache),
                },
            },
        };
        // A client whose tokens are bound to its certificate gets no bearer
        // tokens for want of one (a DPoP proof binds them instead).
        if policy.bind_certificate && certificate.is_none() && dpop.is_none() {
            return Ok(Err(OAuthError::CERTIFICATE_REQUIRED));
        }
        Ok(Ok(Proofs {
            dpop,
            certificate: certificate.map(|c| c.thumbprint),
            bind_certificate: policy.bind_certificate,
        }))
    }
}
