//! Drivers for the fuzz targets, kept here so that each target is one line.

use ropc_core::basic::SCRATCH_LEN;
use ropc_core::{
    AccountState, Capabilities, Client, ClientIndex, Engine, FamilyId, Issued, OAuthError, PasswordOutcome, Provider, RandomError,
    ScopeSet, SecureRandom, Step, TokenDigest, TokenKey, TokenKind, TokenRecord, UserRef,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

const NOW: u64 = 1_000_000;

/// A counter: fast and deterministic. NOT a secure random source.
#[derive(Debug)]
struct CounterRandom(AtomicU64);

impl SecureRandom for CounterRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        for chunk in dest.chunks_mut(8) {
            let n = self.0.fetch_add(1, Ordering::Relaxed);
            chunk.copy_from_slice(&n.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// The key is the token's first 16 bytes, so the fuzzer steers which record
/// a refresh token finds. A toy, NOT a digest.
#[derive(Debug)]
struct PrefixDigest;

impl TokenDigest for PrefixDigest {
    fn digest(&self, token: &[u8]) -> TokenKey {
        let mut key = [0u8; TokenKey::LEN];
        let n = token.len().min(TokenKey::LEN);
        key[..n].copy_from_slice(&token[..n]);
        TokenKey(key)
    }
}

static RANDOM: CounterRandom = CounterRandom(AtomicU64::new(0));

/// Seconds a rotated refresh token is still accepted (for retries).
const GRACE: u64 = 3;

/// Scopes read, write, admin; client `a` may do everything, `b` only the
/// password grant, `c` only client credentials.
static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let mut engine = Engine::default();
    engine.config.refresh_reuse_grace = GRACE;
    for name in ["read", "write", "admin"] {
        engine.scopes.register(name).expect("valid scope");
    }
    let all = Capabilities::PASSWORD.union(Capabilities::REFRESH_TOKEN).union(Capabilities::CLIENT_CREDENTIALS);
    let clients = [
        ("a", all, 0b011, 0b001),
        ("b", Capabilities::PASSWORD, 0b001, 0b001),
        ("c", Capabilities::CLIENT_CREDENTIALS, 0b110, 0b100),
    ];
    for (id, capabilities, allowed, default) in clients {
        let client = Client {
            id: id.into(),
            capabilities,
            allowed_scopes: ScopeSet::from_bits(allowed),
            default_scopes: ScopeSet::from_bits(default),
        };
        engine.clients.add(client).expect("valid client");
    }
    engine
});

/// A record derived from the key's bytes: absent, expired, an access token,
/// another client's, with scopes the registry does not define, or rotated
/// away (inside or past the grace window).
fn record_for(key: &TokenKey) -> Option<TokenRecord> {
    let k = key.0;
    (!k[0].is_multiple_of(4)).then(|| TokenRecord {
        expires_at: NOW - 1 + u64::from(k[1] % 3),
        issued_at: NOW - 10,
        scope: ScopeSet::from_bits(u64::from(k[2]) | u64::from(k[3]) << 56),
        family: FamilyId(u64::from(k[4])),
        user: UserRef(u32::from(k[5])),
        client: ClientIndex(u32::from(k[6] % 4)),
        kind: if k[7].is_multiple_of(2) { TokenKind::Refresh } else { TokenKind::Access },
        retired_at: if k[8].is_multiple_of(3) { NOW - u64::from(k[9] % 6) } else { 0 },
    })
}

/// One whole token request through the engine. The first byte splits the
/// rest into `Authorization` header and body (255: no header). The runtime
/// accepts every client secret and password, so the fuzzer reaches `issue`.
/// Checks the engine's promises on the way: it finishes within a few steps,
/// never issues more scope than the client may have, revokes a family only
/// on a replay past the grace window, never retires a token twice, and its
/// error descriptions use only RFC 6749 §5.2 characters.
pub fn token_request(data: &[u8]) -> Result<Issued, OAuthError> {
    let (header, body) = match data.split_first() {
        None => (None, data),
        Some((&u8::MAX, rest)) => (None, rest),
        Some((&n, rest)) => {
            let (header, body) = rest.split_at(usize::from(n).min(rest.len()));
            (Some(header), body)
        }
    };
    let engine = &*ENGINE;
    let provider = Provider { random: &RANDOM, digest: &PrefixDigest };
    let mut scratch = [0u8; SCRATCH_LEN];
    let mut out = Vec::new();
    let mut grant = engine.token_grant(provider, body, header, &mut scratch);
    let mut loaded = None;
    const MOST_STEPS: usize = 6;
    for _ in 0..MOST_STEPS {
        match grant.step() {
            Step::AuthenticateClient { .. } => grant.client_authenticated(true),
            Step::VerifyPassword { .. } => grant.password_verified(PasswordOutcome::Valid(UserRef(7))),
            Step::LoadRefreshToken { key } => {
                loaded = record_for(&key);
                grant.refresh_token_loaded(loaded, NOW);
            }
            Step::CheckAccount { user, .. } => {
                assert!(loaded.is_some_and(|r| r.user == user), "checked an account no record names");
                grant.account_checked(AccountState::Active, NOW);
            }
            Step::RevokeFamily { family, until } => {
                let replay =
                    loaded.is_some_and(|r| r.family == family && r.is_retired() && NOW >= r.retired_at + GRACE);
                assert!(replay, "revoked a family without a replay");
                assert!(until > NOW);
                grant.family_revoked();
            }
            Step::Issue => {
                let client = grant.client().and_then(|c| engine.clients.get(c)).expect("an issued grant has a client");
                let issued = grant.issue(NOW, &mut out).expect("the random source never fails here");
                let scope = issued.access.1.scope;
                assert!(scope.is_subset(client.allowed_scopes), "issued more than the client may have");
                if let Some(record) = loaded {
                    assert!(scope.is_subset(record.scope), "a refresh widened the scope");
                    assert!(!record.is_retired() || issued.retire.is_none(), "a token retired twice");
                }
                assert!(out.starts_with(br#"{"access_token":""#) && out.ends_with(b"}"));
                return Ok(issued);
            }
            Step::Reject(error) => {
                assert!(OAuthError::is_valid_description(error.description), "{error:?}");
                engine.write_error(&error, &mut out);
                return Err(error);
            }
        }
    }
    panic!("the engine did not finish in {MOST_STEPS} steps");
}

#[cfg(test)]
mod tests {
    /// The seed corpus reaches what its file names say, so that fuzzing
    /// starts from every step of the engine.
    #[test]
    fn seeds_reach_their_outcome() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/token_request");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("the seed folder") {
            let path = entry.expect("a seed").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 name").to_owned();
            let outcome = super::token_request(&std::fs::read(&path).expect("a readable seed"));
            assert_eq!(outcome.is_ok(), name.starts_with("issued_"), "{name}: {outcome:?}");
            if name == "rejected_refresh_reuse" {
                assert_eq!(outcome.err().map(|e| e.reason), Some(ropc_core::Reason::RefreshTokenReuse));
            }
            seen += 1;
        }
        assert!(seen >= 9, "only {seen} seeds");
    }
}
