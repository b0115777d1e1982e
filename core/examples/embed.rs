//! Embedding ropc-core: everything a runtime must supply, in one program.
//!
//! The core does no I/O. To serve a token request, a runtime supplies:
//!
//! 1. a [`SecureRandom`] (tokens and grant families),
//! 2. a [`TokenDigest`] (the key a token is stored under),
//! 3. a check of client secrets and of user passwords,
//! 4. a store of [`TokenRecord`]s by [`TokenKey`],
//! 5. the current time, `now`, in seconds since the Unix epoch,
//!
//! and then drives each request through [`Engine::token_grant`] and
//! [`TokenGrant::step`] until the grant is issued or rejected.
//!
//! The providers below are TOYS, chosen so that the example has no
//! dependencies. A real runtime uses the operating system's random source
//! (e.g. `ring::rand::SystemRandom`), SHA-256 for the digest, argon2 on a
//! worker pool for passwords and client secrets, and a sharded token map.
//!
//! Run it with `cargo run -p ropc-core --example embed`.

use ropc_core::basic::{self, SCRATCH_LEN};
use ropc_core::{
    AccountState, Capabilities, Client, ClientCredential, ClientIndex, Engine, EngineConfig, PasswordOutcome, Provider,
    RandomError, Reason, SecureRandom, Step, TokenDigest, TokenGrant, TokenKey, TokenRecord, UserRef,
};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// xorshift64*. NOT SECURE: predictable from a few outputs. It stands in
/// for the platform's CSPRNG only so that this example runs anywhere.
#[derive(Debug)]
struct ToyXorshiftRandom(Mutex<u64>);

impl SecureRandom for ToyXorshiftRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        let mut x = self.0.lock().map_err(|_| RandomError)?;
        for chunk in dest.chunks_mut(8) {
            *x ^= *x >> 12;
            *x ^= *x << 25;
            *x ^= *x >> 27;
            chunk.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// FNV-1a, four lanes. A TOY, NOT a cryptographic digest: a real runtime
/// uses SHA-256, so that a leaked store does not yield usable tokens.
#[derive(Debug)]
struct ToyFnvDigest;

impl TokenDigest for ToyFnvDigest {
    fn digest(&self, token: &[u8]) -> TokenKey {
        let mut key = [0u8; TokenKey::LEN];
        for (lane, out) in key.chunks_mut(8).enumerate() {
            let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ lane as u64;
            for &b in token {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            out.copy_from_slice(&hash.to_le_bytes());
        }
        TokenKey(key)
    }
}

/// What the runtime owns besides the engine: credentials and token records.
struct Runtime {
    /// Client secrets by client index. (Real runtime: argon2 hashes.)
    client_secrets: BTreeMap<ClientIndex, &'static str>,
    /// Users: name -> (password, reference). (Real runtime: argon2 hashes,
    /// verified on a hash pool, since this is the expensive step.)
    users: BTreeMap<&'static str, (&'static str, UserRef)>,
    /// Token records by the digest of the token.
    store: BTreeMap<TokenKey, TokenRecord>,
}

/// An HTTP response, minus the transport.
struct Response {
    status: u16,
    www_authenticate: Option<&'static str>,
    body: Vec<u8>,
}

impl Runtime {
    /// Serves one token request: answers each `Step` until there is a
    /// response. This loop is all an embedder has to write.
    fn token_request(
        &mut self,
        engine: &Engine,
        provider: Provider<'_>,
        body: &[u8],
        authorization: Option<&str>,
        now: u64,
    ) -> Response {
        // Basic credentials are decoded into this buffer; wipe it afterwards.
        let mut scratch = [0u8; SCRATCH_LEN];
        let mut out = Vec::new();
        let result = {
            let mut grant: TokenGrant<'_> =
                engine.token_grant(provider, body, authorization.map(str::as_bytes), &mut scratch);
            loop {
                match grant.step() {
                    // Cheap checks (grammar, client id) are done: verify the secret.
                    Step::AuthenticateClient { client, credential: ClientCredential::Secret(secret), .. } => {
                        let ok = self.client_secrets.get(&client) == Some(&secret.expose());
                        grant.client_authenticated(ok);
                    }
                    // Capability and scope are fine: now spend the password hash.
                    Step::VerifyPassword { username, password } => {
                        let outcome = match self.users.get(username) {
                            Some(&(stored, user)) if stored == password.expose() => PasswordOutcome::Valid(user),
                            Some(_) => PasswordOutcome::WrongPassword,
                            None => PasswordOutcome::UnknownUser,
                        };
                        grant.password_verified(outcome);
                    }
                    // Refresh grant: look the presented token up by its digest.
                    Step::LoadRefreshToken { key } => {
                        let record = self.store.get(&key).copied();
                        grant.refresh_token_loaded(record, now);
                    }
                    // The grant's user is still in this device's fixed table.
                    Step::CheckAccount { .. } => grant.account_checked(AccountState::Active, now),
                    // A grant that must end: revoke every token of its family.
                    Step::RevokeFamily { family, .. } => {
                        // A rotated refresh token came back: every token of
                        // its login dies, the thief's and the owner's.
                        self.store.retain(|_, r| r.family != family);
                        grant.family_revoked();
                    }
                    // Everything checked: mint the tokens and write the JSON.
                    // Only secrets here: a bare client_id, or an assertion, is refused.
                    Step::AuthenticateClient { .. } => grant.client_rejected(Reason::NoClientAuthentication),
                    Step::IdentifyClient { .. } => grant.client_identified(None),
                    Step::Issue => break grant.issue(now, &mut out),
                    Step::Reject(error) => break Err(error),
                }
            }
        };
        scratch.fill(0);
        match result {
            Ok(issued) => {
                // Store the new records; keep a rotated refresh token as
                // retired, so that a replay of it is recognised. (One thread
                // here: a concurrent runtime must retire atomically and ask
                // `Issued::lost_race` when another request retired it first.)
                if let Some(old) = issued.retire {
                    if let Some(r) = self.store.get_mut(&old) {
                        r.retired_at = issued.access.1.issued_at;
                    }
                }
                self.store.insert(issued.access.0, issued.access.1);
                if let Some((key, record)) = issued.refresh {
                    self.store.insert(key, record);
                }
                Response { status: 200, www_authenticate: None, body: out }
            }
            Err(error) => {
                // `error.reason` is for the operator's log only.
                println!("  (log: rejected, reason {})", error.reason);
                engine.write_error(&error, &mut out);
                Response { status: error.status(), www_authenticate: error.www_authenticate(), body: out }
            }
        }
    }
}

fn main() {
    // The engine: policy, scopes and clients, usually built from a config.
    let mut engine = Engine {
        config: EngineConfig { access_token_ttl: 300, refresh_token_ttl: 86_400, ..EngineConfig::default() },
        ..Engine::default()
    };
    let read = engine.scopes.register("read").expect("a valid scope name");
    let write = engine.scopes.register("write").expect("a valid scope name");
    let legacy = engine
        .clients
        .add(Client {
            id: "legacy".into(),
            capabilities: Capabilities::PASSWORD.union(Capabilities::REFRESH_TOKEN),
            allowed_scopes: ropc_core::ScopeSet::single(read).union(ropc_core::ScopeSet::single(write)),
            default_scopes: ropc_core::ScopeSet::single(read),
        })
        .expect("a valid client");

    // The platform pieces, bundled the way rustls bundles a CryptoProvider.
    let random = ToyXorshiftRandom(Mutex::new(0x9e37_79b9_7f4a_7c15));
    let provider = Provider { random: &random, digest: &ToyFnvDigest };

    let mut runtime = Runtime {
        client_secrets: BTreeMap::from([(legacy, "s3cret")]),
        users: BTreeMap::from([("alice", ("wonderland", UserRef(1)))]),
        store: BTreeMap::new(),
    };
    let authorization = basic::encode("legacy", "s3cret");
    // The clock belongs to the runtime; the core only ever sees `now`.
    let mut now = 1_700_000_000;

    let body = "grant_type=password&username=alice&password=wonderland&scope=read+write";
    let login = show(&mut runtime, &engine, provider, body, &authorization, now);
    let refresh_token = json_string(&login.body, "refresh_token").expect("a refresh token");

    now += 60;
    let body = format!("grant_type=refresh_token&refresh_token={refresh_token}&scope=read");
    show(&mut runtime, &engine, provider, &body, &authorization, now);

    // The first refresh token was rotated out: presenting it again fails.
    show(&mut runtime, &engine, provider, &body, &authorization, now);
}

fn show(runtime: &mut Runtime, engine: &Engine, provider: Provider<'_>, body: &str, auth: &str, now: u64) -> Response {
    // Never print or log the Authorization header: it carries the secret.
    println!("POST /token  (now = {now})\n  Authorization: Basic <client credentials>\n  {body}");
    let response = runtime.token_request(engine, provider, body.as_bytes(), Some(auth), now);
    println!("-> {}", response.status);
    if let Some(challenge) = response.www_authenticate {
        println!("   WWW-Authenticate: {challenge}");
    }
    println!("   {}\n", String::from_utf8_lossy(&response.body));
    response
}

/// Pulls a string member out of a response (enough for this example; a real
/// client uses a JSON parser).
fn json_string(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = text[start..].find('"')?;
    Some(text[start..start + end].to_owned())
}
