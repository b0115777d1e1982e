//! DPoP proofs (RFC 9449) for `--dpop`: one Ed25519 key per run, and a
//! proof per token request, each with its own `jti`. Proofs are signed
//! before the run (`--dpop-presigned`), so that the measured load spends
//! no client CPU on signatures beside the server's verifications; past the
//! pool, proofs are signed as requests go, and the report says how many.

use http::HeaderValue;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// Signs DPoP proofs for one `htu`.
pub struct DpopProofs {
    key: Ed25519KeyPair,
    /// `b64(header) "."` and the start of the claims, up to the `jti`.
    header: String,
    htu: String,
    prefix: String,
    presigned: Vec<HeaderValue>,
    next: AtomicUsize,
    counter: AtomicUsize,
}

impl std::fmt::Debug for DpopProofs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopProofs").field("htu", &self.htu).field("presigned", &self.presigned.len()).finish()
    }
}

impl DpopProofs {
    /// A new key, and `presigned` proofs for POST `htu` signed now on
    /// `threads` threads.
    pub fn new(htu: &str, presigned: usize, threads: usize) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "cannot make a DPoP key")?;
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "cannot make a DPoP key")?;
        let jwk = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, b64(key.public_key().as_ref()));
        let header = b64(format!(r#"{{"typ":"dpop+jwt","alg":"EdDSA","jwk":{jwk}}}"#).as_bytes());
        let mut raw = [0u8; 9];
        rng.fill(&mut raw).map_err(|_| "the random source failed")?;
        let mut proofs = DpopProofs {
            key,
            header,
            htu: htu.to_owned(),
            prefix: b64(&raw),
            presigned: Vec::new(),
            next: AtomicUsize::new(0),
            counter: AtomicUsize::new(0),
        };
        let threads = threads.max(1);
        let per = presigned.div_ceil(threads);
        let signer = &proofs;
        let signed: Vec<Vec<HeaderValue>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let count = per.min(presigned.saturating_sub(t * per));
                    s.spawn(move || (0..count).map(|_| signer.sign()).collect())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        proofs.presigned = signed.into_iter().flatten().collect();
        Ok(proofs)
    }

    fn sign(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let iat = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = format!(r#"{{"jti":"{}-{n}","htm":"POST","htu":"{}","iat":{iat}}}"#, self.prefix, self.htu);
        let input = format!("{}.{}", self.header, b64(claims.as_bytes()));
        let sig = self.key.sign(input.as_bytes());
        let proof = format!("{input}.{}", b64(sig.as_ref()));
        HeaderValue::from_str(&proof).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The next proof: presigned while they last, else signed now.
    pub fn take(&self) -> HeaderValue {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.presigned.get(i) {
            Some(p) => p.clone(),
            None => self.sign(),
        }
    }

    /// Proofs signed during the run (the pool ran out).
    pub fn signed_during_run(&self) -> usize {
        self.next.load(Ordering::Relaxed).saturating_sub(self.presigned.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_are_distinct_and_shaped_as_rfc_9449_says() {
        let p = DpopProofs::new("http://127.0.0.1:1/oauth/v2/oauth-token", 3, 2).unwrap();
        let proofs: Vec<String> = (0..5).map(|_| p.take().to_str().unwrap().to_owned()).collect();
        assert_eq!(p.signed_during_run(), 2);
        let distinct: std::collections::BTreeSet<&String> = proofs.iter().collect();
        assert_eq!(distinct.len(), 5);
        for proof in &proofs {
            assert_eq!(proof.split('.').count(), 3);
        }
        assert_eq!(b64(b"foob"), "Zm9vYg");
    }
}
