//! Four whole token requests through `ropc-core`, with providers a
//! microcontroller can have: no std, no operating system, a fixed-size token
//! store and deterministic stand-ins for the RNG and the clock.
//!
//! One file, compiled twice: into the firmware (`src/main.rs`, run under QEMU
//! on a Cortex-M4F) and into a host test of ropc-core
//! (`core/tests/embedded.rs`). The host test checks that the answers are the
//! bytes in `embedded/expected.txt`; the firmware checks its answers against
//! the same file, so the device and the host cannot drift apart.
//!
//! Only `core` and `alloc` are used here, and the formatting machinery
//! (`core::fmt`) is not: the answers are bytes, compared as bytes.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use ropc_core::{
    AccountState, Capabilities, Client, ClientCredential, ClientIndex, Engine, EngineConfig, OAuthError,
    PasswordOutcome, Provider, RandomError, Reason, ScopeSet, SecureRandom, Step, TokenDigest, TokenKey, TokenRecord,
    UserRef,
};
use sha2::{Digest, Sha256};

/// A STAND-IN for a hardware random number generator, NOT a random source:
/// xorshift32 from a fixed seed, so that the device and the host mint the
/// same tokens and their answers can be compared byte for byte. A real
/// device reads its TRNG peripheral here (the STM32 `RNG`, the nRF `RNG`,
/// the RP2040's ring oscillator), or a CSPRNG seeded from it.
pub struct TrngStandIn(AtomicU32);

// The providers' traits ask for `Debug`. Written out, not derived: a derived
// one formats the state (an integer), and would link the integer formatter
// into the firmware through the trait object's vtable.
impl core::fmt::Debug for TrngStandIn {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TrngStandIn")
    }
}

impl TrngStandIn {
    /// A generator at `seed` (not 0: xorshift32 stays at 0).
    pub const fn new(seed: u32) -> Self {
        TrngStandIn(AtomicU32::new(seed))
    }
}

impl SecureRandom for TrngStandIn {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        let mut x = self.0.load(Ordering::Relaxed);
        if x == 0 {
            // A TRNG that reads all zeros has failed; so has this one.
            return Err(RandomError);
        }
        for chunk in dest.chunks_mut(4) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        self.0.store(x, Ordering::Relaxed);
        Ok(())
    }
}

/// SHA-256, truncated to the key length: the digest the server uses (there
/// through ring), here in portable Rust. A device with a hash accelerator
/// puts it behind this trait.
pub struct Sha256Digest;

impl core::fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sha256Digest")
    }
}

impl TokenDigest for Sha256Digest {
    fn digest(&self, token: &[u8]) -> TokenKey {
        let full = Sha256::digest(token);
        let mut key = [0u8; TokenKey::LEN];
        key.copy_from_slice(&full[..TokenKey::LEN]);
        TokenKey(key)
    }
}

/// Token records in a fixed number of slots: no map, no growth. Expired
/// records are dropped to make room; a grant that finds no room is refused
/// with `temporarily_unavailable` rather than evicting a live token.
pub struct SlotStore<const N: usize> {
    slots: [Option<(TokenKey, TokenRecord)>; N],
}

impl<const N: usize> SlotStore<N> {
    /// An empty store.
    pub const fn new() -> Self {
        SlotStore { slots: [None; N] }
    }

    fn get(&self, key: &TokenKey) -> Option<TokenRecord> {
        self.slots.iter().flatten().find(|(k, _)| k == key).map(|&(_, r)| r)
    }

    /// Frees expired slots and says whether `needed` are free.
    fn make_room(&mut self, needed: usize, now: u64) -> bool {
        for slot in &mut self.slots {
            if slot.is_some_and(|(_, r)| !r.is_active(now)) {
                *slot = None;
            }
        }
        self.slots.iter().filter(|s| s.is_none()).count() >= needed
    }

    fn insert(&mut self, key: TokenKey, record: TokenRecord) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.is_none()) {
            *slot = Some((key, record));
        }
    }

    fn retire(&mut self, key: &TokenKey, at: u64) {
        for (k, r) in self.slots.iter_mut().flatten() {
            if k == key {
                r.retired_at = at;
            }
        }
    }

    fn revoke_family(&mut self, family: ropc_core::FamilyId) {
        for slot in &mut self.slots {
            if slot.is_some_and(|(_, r)| r.family == family) {
                *slot = None;
            }
        }
    }

    /// Slots in use.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

impl<const N: usize> Default for SlotStore<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A credential: a salt and SHA-256(salt ‖ password). A STAND-IN for a
/// password hash, to keep the scenario small and fast under emulation: a
/// device that stores real users' passwords uses PBKDF2 or argon2 here,
/// as the server does.
struct Credential {
    salt: &'static [u8],
    digest: [u8; 32],
}

impl Credential {
    fn new(salt: &'static [u8], password: &str) -> Self {
        Credential { salt, digest: salted(salt, password) }
    }

    /// Constant time in the password's bytes: every byte of the digest is
    /// compared, whatever the first difference.
    fn verify(&self, password: &str) -> bool {
        let candidate = salted(self.salt, password);
        candidate.iter().zip(&self.digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

fn salted(salt: &[u8], password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    h.finalize().into()
}

/// The client and the user of the scenario.
pub const CLIENT_ID: &str = "meter-gateway";
/// The client's secret (the scenario's own, not a real one).
pub const CLIENT_SECRET: &str = "gateway-secret";
/// The user's name.
pub const USERNAME: &str = "technician";
/// The user's password.
pub const PASSWORD: &str = "correct horse";
/// `Authorization: Basic base64(CLIENT_ID:CLIENT_SECRET)`, written out so
/// that the device does not build it.
pub const AUTHORIZATION: &str = "Basic bWV0ZXItZ2F0ZXdheTpnYXRld2F5LXNlY3JldA==";
/// The seed of the RNG stand-in.
pub const SEED: u32 = 0x2545_f491;
/// The clock stand-in: the time of the first request, in Unix seconds. A
/// device reads its RTC (or a time its network gave it) here.
pub const START: u64 = 1_765_000_000;

/// Everything on the device besides the engine: its credentials and tokens.
pub struct Device {
    client: ClientIndex,
    client_secret: Credential,
    user: Credential,
    /// Used for an unknown user, so that it costs what a known one costs.
    nobody: Credential,
    /// The token records.
    pub store: SlotStore<8>,
}

/// One answer: what the HTTP layer would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The grant, as named in `expected.txt`.
    pub name: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// The engine of the scenario: one client allowed the password and refresh
/// grants, with scopes `read` (the default) and `write`.
pub fn engine() -> Result<(Engine, ClientIndex), &'static str> {
    let mut engine = Engine {
        config: EngineConfig { access_token_ttl: 600, refresh_token_ttl: 86_400, ..EngineConfig::default() },
        ..Engine::default()
    };
    let read = engine.scopes.register("read").map_err(|_| "scope read")?;
    let write = engine.scopes.register("write").map_err(|_| "scope write")?;
    let client = engine
        .clients
        .add(Client {
            id: CLIENT_ID.into(),
            capabilities: Capabilities::PASSWORD.union(Capabilities::REFRESH_TOKEN),
            allowed_scopes: ScopeSet::single(read).union(ScopeSet::single(write)),
            default_scopes: ScopeSet::single(read),
        })
        .map_err(|_| "client")?;
    Ok((engine, client))
}

impl Device {
    /// The device's credentials for `client`, and an empty store.
    pub fn new(client: ClientIndex) -> Self {
        Device {
            client,
            client_secret: Credential::new(b"client-salt", CLIENT_SECRET),
            user: Credential::new(b"user-salt", PASSWORD),
            nobody: Credential::new(b"nobody-salt", "\u{0}"),
            store: SlotStore::new(),
        }
    }

    /// Serves one token request, `body` with an optional Authorization
    /// header, at `now`: the whole `Step` loop an embedder writes.
    pub fn token_request(
        &mut self,
        engine: &Engine,
        provider: Provider<'_>,
        body: &[u8],
        authorization: Option<&str>,
        now: u64,
    ) -> (u16, Vec<u8>) {
        let mut scratch = [0u8; ropc_core::basic::SCRATCH_LEN];
        let mut out = Vec::new();
        let result = {
            let mut grant = engine.token_grant(provider, body, authorization.map(str::as_bytes), &mut scratch);
            loop {
                match grant.step() {
                    Step::AuthenticateClient { client, credential: ClientCredential::Secret(secret), .. } => {
                        let ok = self.client_secret.verify(secret.expose());
                        grant.client_authenticated(ok && client == self.client);
                    }
                    Step::VerifyPassword { username, password } => {
                        let outcome = if username == USERNAME {
                            if self.user.verify(password.expose()) {
                                PasswordOutcome::Valid(UserRef(1))
                            } else {
                                PasswordOutcome::WrongPassword
                            }
                        } else {
                            self.nobody.verify(password.expose());
                            PasswordOutcome::UnknownUser
                        };
                        grant.password_verified(outcome);
                    }
                    Step::LoadRefreshToken { key } => {
                        let record = self.store.get(&key);
                        grant.refresh_token_loaded(record, now);
                    }
                    Step::CheckAccount { user, .. } => {
                        let state = if user == UserRef(1) { AccountState::Active } else { AccountState::Removed };
                        grant.account_checked(state, now);
                    }
                    Step::RevokeFamily { family, .. } => {
                        self.store.revoke_family(family);
                        grant.family_revoked();
                    }
                    // An access and a refresh token need two slots: refuse
                    // before minting rather than drop a live token.
                    Step::Issue if !self.store.make_room(2, now) => break Err(OAuthError::STORE_FAILED),
                    // Only secrets here: a bare client_id, or an assertion, is refused.
                    Step::AuthenticateClient { .. } => grant.client_rejected(Reason::NoClientAuthentication),
                    Step::IdentifyClient { .. } => grant.client_identified(None),
                    Step::Issue => break grant.issue(now, &mut out),
                    Step::Reject(error) => break Err(error),
                }
            }
        };
        // The decoded Basic credentials were in here.
        scratch.fill(0);
        match result {
            Ok(issued) => {
                if let Some(old) = issued.retire {
                    self.store.retire(&old, issued.access.1.issued_at);
                }
                self.store.insert(issued.access.0, issued.access.1);
                if let Some((key, record)) = issued.refresh {
                    self.store.insert(key, record);
                }
                (200, out)
            }
            Err(error) => {
                engine.write_error(&error, &mut out);
                (error.status(), out)
            }
        }
    }
}

/// The value of a JSON string member `"key":"..."` in `body` (token bodies
/// only: tokens need no escapes).
pub fn member<'b>(body: &'b [u8], key: &[u8]) -> Option<&'b [u8]> {
    let at = body
        .windows(key.len() + 4)
        .position(|w| w[0] == b'"' && &w[1..=key.len()] == key && &w[key.len() + 1..] == b"\":\"")?;
    let rest = &body[at + key.len() + 4..];
    let end = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..end])
}

/// The four grants, one at a time, so that a device can measure each: a
/// password grant with Basic auth, the same user with a wrong password, a
/// refresh of the token issued first, and a malformed body.
pub struct Scenario {
    engine: Engine,
    random: TrngStandIn,
    /// The device's credentials and token store.
    pub device: Device,
    /// The refresh grant's body, made from the login's answer.
    refresh_body: Vec<u8>,
    next: usize,
}

/// The grants' names, in order, as in `expected.txt`.
pub const GRANTS: [&str; 4] = ["password", "wrong_password", "refresh", "malformed"];

impl Scenario {
    /// The engine, the device and the RNG stand-in at its seed.
    pub fn new() -> Result<Self, &'static str> {
        let (engine, client) = engine()?;
        Ok(Scenario {
            engine,
            random: TrngStandIn::new(SEED),
            device: Device::new(client),
            refresh_body: Vec::new(),
            next: 0,
        })
    }

    /// Runs the next grant; `None` after the fourth.
    pub fn next_answer(&mut self) -> Option<Result<Answer, &'static str>> {
        let name = *GRANTS.get(self.next)?;
        self.next += 1;
        let provider = Provider { random: &self.random, digest: &Sha256Digest };
        let auth = Some(AUTHORIZATION);
        let (body, now): (&[u8], u64) = match name {
            "password" => (b"grant_type=password&username=technician&password=correct+horse&scope=read+write", START),
            "wrong_password" => (b"grant_type=password&username=technician&password=correct+horsf", START + 5),
            // Narrowed to `read`, a minute later.
            "refresh" => (&self.refresh_body, START + 60),
            // A parameter given twice (RFC 6749 §3.2).
            _ => (b"grant_type=password&username=technician&username=admin&password=x", START + 61),
        };
        let (status, body) = self.device.token_request(&self.engine, provider, body, auth, now);
        if name == "password" {
            let Some(token) = member(&body, b"refresh_token") else {
                return Some(Err("no refresh token in the login's answer"));
            };
            self.refresh_body = Vec::from(&b"grant_type=refresh_token&scope=read&refresh_token="[..]);
            self.refresh_body.extend_from_slice(token);
        }
        Some(Ok(Answer { name, status, body }))
    }
}

/// Checks `answer` against its line of `expected.txt`, `name status body`.
pub fn matches(expected: &str, answer: &Answer) -> bool {
    let mut parts = expected.splitn(3, ' ');
    let (Some(name), Some(status), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    name == answer.name && status.parse::<u16>() == Ok(answer.status) && body.as_bytes() == answer.body.as_slice()
}
