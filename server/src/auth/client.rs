//! Client authentication (RFC 6749 §2.3.1): the secret, checked behind the
//! IP throttle, so that guessing secrets (or burning hashes before a
//! client's first success) is throttled like guessing passwords.

use super::{Auth, Refused, UNAVAILABLE};
use crate::live::Live;
use crate::lockout::FAILED_CLIENT_AUTHENTICATIONS;
use ropc_core::ClientIndex;
use std::net::IpAddr;

impl Auth {
    /// Checks a client secret. An IP over its failure threshold is refused
    /// first, and a wrong secret counts against the IP.
    pub async fn authenticate_client(
        &self,
        live: &Live,
        client: ClientIndex,
        secret: &str,
        peer: IpAddr,
        now: u64,
    ) -> Result<bool, Refused> {
        if let Some(retry_after) = self.lockout.ip_throttled(peer, now).await.map_err(|_| UNAVAILABLE)? {
            return Err(Refused::Throttled { retry_after });
        }
        let ok = live.client_secrets.verify(&*self.verifier, client, secret).await.map_err(Refused::Verify)?;
        if !ok {
            self.lockout.ip_failure(peer, now, FAILED_CLIENT_AUTHENTICATIONS).await;
        }
        Ok(ok)
    }
}
