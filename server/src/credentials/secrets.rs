//! Client secrets, verified once per client and process: after the first
//! successful hash verification, the runtime remembers an HMAC-SHA256 of
//! the secret under a random per-process key and compares later requests
//! against it in constant time (docs/security.md says why this is safe).

use parking_lot::Mutex;
use ring::hmac;
use ring::rand::SystemRandom;
use ropc_core::ClientIndex;
use ropc_hash::{self as hash, PasswordVerifier, StoredHash, VerifyError, VerifyJob};
use std::fmt;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Client secret hashes with a per-client memo of the last secret that
/// verified.
pub struct ClientSecrets {
    /// By client index; none for a retired slot.
    hashes: Vec<Option<Arc<StoredHash>>>,
    verified: Vec<Mutex<Option<[u8; 32]>>>,
    /// One argon2 verification per client at a time while nothing is
    /// memoised: after a restart, a burst of requests waits for the first
    /// verification instead of each spending a hash.
    first: Vec<tokio::sync::Mutex<()>>,
    key: hmac::Key,
}

impl fmt::Debug for ClientSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientSecrets({} clients)", self.hashes.len())
    }
}

impl ClientSecrets {
    /// Secrets for the clients, by index.
    pub fn new(hashes: Vec<Option<Arc<StoredHash>>>) -> Result<Self, ring::error::Unspecified> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())?;
        let verified = hashes.iter().map(|_| Mutex::new(None)).collect();
        let first = hashes.iter().map(|_| tokio::sync::Mutex::new(())).collect();
        Ok(Self { hashes, verified, first, key })
    }

    /// Secrets for the clients after a reload: a client whose index and
    /// stored hash did not change keeps its memo, so that a reload costs no
    /// hash for it; a new or reset secret starts unverified.
    pub fn after(hashes: Vec<Option<Arc<StoredHash>>>, previous: &ClientSecrets) -> Self {
        let verified = hashes
            .iter()
            .enumerate()
            .map(|(i, new)| {
                let old = previous.hashes.get(i).and_then(Option::as_ref);
                let same = matches!((old, new), (Some(old), Some(new)) if old.as_phc() == new.as_phc());
                Mutex::new(if same { *previous.verified[i].lock() } else { None })
            })
            .collect();
        let first = hashes.iter().map(|_| tokio::sync::Mutex::new(())).collect();
        Self { hashes, verified, first, key: previous.key.clone() }
    }

    fn tag(&self, client: ClientIndex, secret: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&client.0.to_le_bytes());
        ctx.update(secret.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Whether `secret` is the secret of `client`. Cheap (one HMAC) after
    /// the first success, right or wrong; before it, one hash through
    /// `verifier`.
    pub async fn verify(
        &self,
        verifier: &dyn PasswordVerifier,
        client: ClientIndex,
        secret: &str,
    ) -> Result<bool, VerifyError> {
        let (Some(Some(hash)), Some(memo)) = (self.hashes.get(client.0 as usize), self.verified.get(client.0 as usize))
        else {
            return Ok(false);
        };
        let tag = self.tag(client, secret);
        if let Some(known) = *memo.lock() {
            return Ok(bool::from(known.ct_eq(&tag)));
        }
        let Some(first) = self.first.get(client.0 as usize) else { return Ok(false) };
        let _only_one = first.lock().await;
        if let Some(known) = *memo.lock() {
            // The stored hash cannot change while this process runs, and the
            // memo holds the HMAC of the one secret that matched it: any
            // other tag is a wrong secret. Refusing it here keeps a caller
            // who knows a client id from making the server spend hashes.
            return Ok(bool::from(known.ct_eq(&tag)));
        }
        let job =
            VerifyJob { password: Zeroizing::new(secret.as_bytes().to_vec()), hash: Arc::clone(hash), started: None };
        let ok = hash::verify(verifier, job).await?;
        if ok {
            *memo.lock() = Some(tag);
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ropc_hash::{HashParams, InlineVerifier};

    const SMALL: HashParams = HashParams { m_cost: 64, t_cost: 1, p_cost: 1 };

    /// A verifier that says yes to anything: a test that passes with it
    /// shows that no hash was asked for.
    #[derive(Debug)]
    struct Yes;
    impl PasswordVerifier for Yes {
        fn try_submit(&self, _: VerifyJob) -> Result<ropc_hash::Pending, VerifyError> {
            Ok(ropc_hash::Pending::ready(true))
        }
    }

    #[tokio::test]
    async fn a_reload_keeps_the_memo_of_unchanged_client_secrets_only() {
        let a = Arc::new(StoredHash::parse(&hash::hash_password(b"a-secret", SMALL).unwrap()).unwrap());
        let b = Arc::new(StoredHash::parse(&hash::hash_password(b"b-secret", SMALL).unwrap()).unwrap());
        let first = ClientSecrets::new(vec![Some(Arc::clone(&a)), Some(Arc::clone(&b))]).unwrap();
        let v = InlineVerifier;
        assert_eq!(first.verify(&v, ClientIndex(0), "a-secret").await, Ok(true));
        assert_eq!(first.verify(&v, ClientIndex(1), "b-secret").await, Ok(true));
        // b's secret is reset; a is unchanged.
        let b2 = Arc::new(StoredHash::parse(&hash::hash_password(b"b-new", SMALL).unwrap()).unwrap());
        let second = ClientSecrets::after(vec![Some(a), Some(b2)], &first);
        // a: still memoised, so no hash is asked for and a wrong secret fails.
        assert_eq!(second.verify(&Yes, ClientIndex(0), "wrong").await, Ok(false));
        assert_eq!(second.verify(&v, ClientIndex(0), "a-secret").await, Ok(true));
        // b: the old secret no longer works, the new one does.
        assert_eq!(second.verify(&v, ClientIndex(1), "b-secret").await, Ok(false));
        assert_eq!(second.verify(&v, ClientIndex(1), "b-new").await, Ok(true));
    }

    #[tokio::test]
    async fn client_secret_memo() {
        let phc = hash::hash_password(b"s3cret", SMALL).unwrap();
        let secrets = ClientSecrets::new(vec![Some(Arc::new(StoredHash::parse(&phc).unwrap()))]).unwrap();
        let v = InlineVerifier;
        assert_eq!(secrets.verify(&v, ClientIndex(0), "wrong").await, Ok(false));
        assert_eq!(secrets.verify(&v, ClientIndex(0), "s3cret").await, Ok(true));
        // Memoised now; a wrong secret must still fail.
        assert_eq!(secrets.verify(&v, ClientIndex(0), "s3cret").await, Ok(true));
        assert_eq!(secrets.verify(&v, ClientIndex(0), "s3cres").await, Ok(false));
        // ...and costs no hash: a verifier that would say yes is not asked.
        assert_eq!(secrets.verify(&Yes, ClientIndex(0), "anything").await, Ok(false));
        assert_eq!(secrets.verify(&v, ClientIndex(1), "s3cret").await, Ok(false));
    }
}
