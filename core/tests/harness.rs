//! A toy runtime that drives the engine the way a real one must: it answers
//! every `Step`, keeps token records in a map and owns a virtual clock
//! (`now` is a plain number that tests advance), so expiry is tested without
//! sleeping, in the manner of quinn-proto's tests.

use ropc_core::basic::{self, SCRATCH_LEN};
use ropc_core::{
    AccountState, Capabilities, Client, ClientCredential, ClientIndex, Engine, EngineConfig, Issued, OAuthError, Owner,
    PasswordOutcome, Proofs, Provider, QueryStep, RandomError, Reason, ScopeSet, SecureRandom, Step, TokenDigest,
    TokenKey, TokenRecord, UserRef,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Deterministic bytes for tests. NOT a secure random source.
///
/// `fail_at` makes the n-th call to `fill` (counting from 0) fail, so tests
/// can break each draw of a grant in turn.
#[derive(Debug)]
pub struct TestRandom {
    calls: AtomicU64,
    fail_at: AtomicU64,
}

impl TestRandom {
    fn new() -> Self {
        Self { calls: AtomicU64::new(0), fail_at: AtomicU64::new(u64::MAX) }
    }

    /// Makes the `n`-th `fill` from now on fail (0 = the next one).
    pub fn fail_at(&self, n: u64) {
        self.fail_at.store(self.calls.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

impl SecureRandom for TestRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        if call == self.fail_at.load(Ordering::Relaxed) {
            return Err(RandomError);
        }
        // splitmix64 over (call, chunk): distinct output for every draw.
        for (i, chunk) in dest.chunks_mut(8).enumerate() {
            let mut z = (call << 16 | i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// FNV-1a run four times with different offsets. A toy, NOT a cryptographic
/// digest: it only has to be deterministic and spread keys.
#[derive(Debug)]
pub struct ToyDigest;

impl TokenDigest for ToyDigest {
    fn digest(&self, token: &[u8]) -> TokenKey {
        let mut key = [0u8; TokenKey::LEN];
        for (lane, out) in key.chunks_mut(8).enumerate() {
            let mut h = 0xcbf2_9ce4_8422_2325u64 ^ lane as u64;
            for &b in token {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            out.copy_from_slice(&h.to_le_bytes());
        }
        TokenKey(key)
    }
}

/// The scopes every test engine defines, in registry order.
pub const SCOPES: [&str; 3] = ["read", "write", "admin"];

/// The clients every test engine defines: id, secret, capabilities,
/// allowed scopes, default scopes.
pub const CLIENTS: [(&str, &str, &[&str], &str, &str); 5] = [
    ("legacy", "legacy-secret", &["password", "refresh_token"], "read write", "read"),
    ("norefresh", "norefresh-secret", &["password"], "read write", "read"),
    ("service", "service-secret", &["client_credentials"], "read admin", "admin"),
    ("other", "other-secret", &["password", "refresh_token"], "read write", "read"),
    ("refresher", "refresher-secret", &["refresh_token"], "read write", "read"),
];

/// Users: name, password, reference, locked.
const USERS: [(&str, &str, u32, bool); 2] = [("alice", "wonderland", 1, false), ("mallory", "letmein", 2, true)];

pub const ACCESS_TTL: u64 = 120;
pub const REFRESH_TTL: u64 = 3_600;
pub const START: u64 = 1_700_000_000;

/// What the runtime would send back.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub www_authenticate: Option<&'static str>,
    pub body: String,
    /// The error, so that tests can check the operator-facing reason.
    pub error: Option<OAuthError>,
    pub issued: Option<Issued>,
}

impl Response {
    /// The body parsed as a flat JSON object.
    pub fn json(&self) -> BTreeMap<String, Json> {
        parse_object(&self.body)
    }

    /// A string member of the body.
    pub fn string(&self, key: &str) -> Option<String> {
        match self.json().remove(key) {
            Some(Json::Str(s)) => Some(s),
            Some(other) => panic!("{key} is {other:?}, not a string"),
            None => None,
        }
    }

    /// The `error` member; panics on a success.
    pub fn error_code(&self) -> String {
        self.string("error").unwrap_or_else(|| panic!("not an error: {}", self.body))
    }

    /// Asserts a `200` and returns the `refresh_token` member.
    pub fn refresh_token(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.body);
        self.string("refresh_token").expect("a refresh token")
    }
}

/// A toy runtime around one engine.
pub struct Server {
    pub engine: Engine,
    pub random: TestRandom,
    pub digest: ToyDigest,
    secrets: Vec<&'static str>,
    users: BTreeMap<&'static str, (&'static str, UserRef, bool)>,
    /// Token records by key, as a real store keeps them.
    pub store: BTreeMap<TokenKey, TokenRecord>,
    /// The virtual clock, in seconds since the epoch.
    pub now: u64,
    /// How many password hashes the engine asked for.
    pub password_checks: usize,
    /// What an account check finds, by user (unlisted: active); for
    /// `PasswordChanged`, the time of the change.
    pub accounts: BTreeMap<u32, (AccountState, u64)>,
    /// How many account checks the engine asked for.
    pub account_checks: usize,
    /// What the next requests prove (DPoP key, certificate).
    pub proofs: Proofs,
    /// Toy client assertions: each valid assertion and the client it
    /// names (a real runtime verifies a signature).
    pub assertions: BTreeMap<String, String>,
}

impl Server {
    pub fn new() -> Self {
        Self::with_config(EngineConfig {
            access_token_ttl: ACCESS_TTL,
            refresh_token_ttl: REFRESH_TTL,
            ..EngineConfig::default()
        })
    }

    pub fn with_config(config: EngineConfig) -> Self {
        let mut engine = Engine { config, ..Engine::default() };
        for name in SCOPES {
            engine.scopes.register(name).expect("valid scope");
        }
        let mut secrets = Vec::new();
        for (id, secret, capabilities, allowed, default) in CLIENTS {
            let capabilities = capabilities
                .iter()
                .map(|c| Capabilities::from_name(c).expect("known capability"))
                .fold(Capabilities::empty(), Capabilities::union);
            let client = Client {
                id: id.into(),
                capabilities,
                allowed_scopes: scope_set(&engine, allowed),
                default_scopes: scope_set(&engine, default),
            };
            let index = engine.clients.add(client).expect("valid client");
            assert_eq!(index.0 as usize, secrets.len());
            secrets.push(secret);
        }
        let users = USERS.iter().map(|&(name, pw, id, locked)| (name, (pw, UserRef(id), locked))).collect();
        Self {
            engine,
            random: TestRandom::new(),
            digest: ToyDigest,
            secrets,
            users,
            store: BTreeMap::new(),
            now: START,
            password_checks: 0,
            accounts: BTreeMap::new(),
            account_checks: 0,
            proofs: Proofs::default(),
            assertions: BTreeMap::new(),
        }
    }

    pub fn client(&self, id: &str) -> ClientIndex {
        self.engine.clients.find(id).expect("configured client")
    }

    pub fn scope(&self, names: &str) -> ScopeSet {
        scope_set(&self.engine, names)
    }

    pub fn key(&self, token: &str) -> TokenKey {
        self.digest.digest(token.as_bytes())
    }

    /// One token request, driven step by step to a response.
    pub fn token(&mut self, body: &str, authorization: Option<&str>) -> Response {
        let provider = Provider { random: &self.random, digest: &self.digest };
        let mut scratch = [0u8; SCRATCH_LEN];
        let mut out = Vec::new();
        // The grant borrows `scratch`; the block ends the borrow so that the
        // decoded credentials can be wiped.
        let result = {
            let mut grant =
                self.engine.token_grant(provider, body.as_bytes(), authorization.map(str::as_bytes), &mut scratch);
            let mut steps = 0;
            loop {
                steps += 1;
                assert!(steps <= 6, "the engine does not progress");
                match grant.step() {
                    Step::AuthenticateClient { client, credential: ClientCredential::Secret(secret), .. } => {
                        let ok = self.secrets.get(client.0 as usize).is_some_and(|s| *s == secret.expose());
                        grant.set_proofs(self.proofs);
                        grant.client_authenticated(ok);
                    }
                    Step::AuthenticateClient { client, credential: ClientCredential::Assertion(a), .. } => {
                        let ok = self
                            .assertions
                            .get(a.expose())
                            .is_some_and(|id| self.engine.clients.find(id) == Some(client));
                        grant.set_proofs(self.proofs);
                        if ok {
                            grant.client_authenticated(true)
                        } else {
                            grant.client_rejected(Reason::BadAssertion)
                        }
                    }
                    Step::IdentifyClient { assertion } => {
                        grant.client_identified(self.assertions.get(assertion.expose()).map(String::as_str))
                    }
                    Step::VerifyPassword { username, password } => {
                        self.password_checks += 1;
                        let outcome = match self.users.get(username) {
                            None => PasswordOutcome::UnknownUser,
                            Some(&(_, _, true)) => PasswordOutcome::Locked,
                            Some(&(pw, user, false)) if pw == password.expose() => PasswordOutcome::Valid(user),
                            Some(_) => PasswordOutcome::WrongPassword,
                        };
                        grant.password_verified(outcome);
                    }
                    Step::LoadRefreshToken { key } => {
                        let record = self.store.get(&key).copied();
                        grant.refresh_token_loaded(record, self.now);
                    }
                    Step::CheckAccount { user, issued_at } => {
                        self.account_checks += 1;
                        let state = match self.accounts.get(&user.0) {
                            Some(&(AccountState::PasswordChanged, changed)) if issued_at >= changed => {
                                AccountState::Active
                            }
                            Some(&(state, _)) => state,
                            None => AccountState::Active,
                        };
                        grant.account_checked(state, self.now);
                    }
                    Step::RevokeFamily { family, .. } => {
                        self.store.retain(|_, r| r.family != family);
                        grant.family_revoked();
                    }
                    // Only secrets here: a bare client_id, or an assertion, is refused.
                    Step::AuthenticateClient { .. } => grant.client_rejected(Reason::NoClientAuthentication),
                    Step::Issue => break grant.issue(self.now, &mut out),
                    Step::Reject(e) => break Err(e),
                }
            }
        };
        scratch.fill(0);
        match result {
            Ok(issued) => {
                if let Some(old) = issued.retire {
                    let record = self.store.get_mut(&old).expect("the retired token is stored");
                    assert_eq!(record.retired_at, 0, "retired twice");
                    record.retired_at = issued.access.1.issued_at;
                }
                self.store.insert(issued.access.0, issued.access.1);
                if let Some((key, record)) = issued.refresh {
                    self.store.insert(key, record);
                }
                Response { status: 200, www_authenticate: None, body: utf8(out), error: None, issued: Some(issued) }
            }
            Err(e) => {
                assert!(out.is_empty(), "a failed grant wrote a body");
                self.engine.write_error(&e, &mut out);
                Response {
                    status: e.status(),
                    www_authenticate: e.www_authenticate(),
                    body: utf8(out),
                    error: Some(e),
                    issued: None,
                }
            }
        }
    }

    /// An introspection of `token` by `legacy`: the response body.
    pub fn introspect(&mut self, token: &str) -> String {
        let provider = Provider { random: &self.random, digest: &self.digest };
        let mut scratch = [0u8; SCRATCH_LEN];
        let body = format!("token={token}");
        let basic = basic_for("legacy");
        let mut q = self.engine.introspection(provider, body.as_bytes(), Some(basic.as_bytes()), &mut scratch);
        loop {
            match q.step() {
                QueryStep::AuthenticateClient { client, credential: ClientCredential::Secret(secret), .. } => {
                    q.client_authenticated(self.secrets.get(client.0 as usize).is_some_and(|s| *s == secret.expose()))
                }
                QueryStep::AuthenticateClient { .. } => q.client_rejected(Reason::NoClientAuthentication),
                QueryStep::IdentifyClient { .. } => q.client_identified(None),
                QueryStep::LoadToken { key } => q.token_loaded(self.store.get(&key).copied()),
                QueryStep::Done | QueryStep::Reject(_) => break,
            }
        }
        let mut out = Vec::new();
        let owner = |_| Some(Owner { username: "alice".into(), subject: "alice".into() });
        q.write_introspection(self.now, "https://as.example", &owner, &mut out);
        utf8(out)
    }

    /// A password grant for `legacy` with Basic authentication.
    pub fn login(&mut self, extra: &str) -> Response {
        let body = format!("grant_type=password&username=alice&password=wonderland{extra}");
        self.token(&body, Some(&basic_for("legacy")))
    }

    /// A refresh grant for `client` with Basic authentication.
    pub fn refresh(&mut self, client: &str, refresh_token: &str, extra: &str) -> Response {
        let body = format!("grant_type=refresh_token&refresh_token={refresh_token}{extra}");
        self.token(&body, Some(&basic_for(client)))
    }
}

/// The Basic header of a configured client, with its right secret.
pub fn basic_for(client: &str) -> String {
    let (id, secret, ..) = CLIENTS.iter().find(|c| c.0 == client).expect("configured client");
    basic::encode(id, secret)
}

fn scope_set(engine: &Engine, names: &str) -> ScopeSet {
    engine.scopes.parse(names).map(|(set, _)| set).expect("valid scope")
}

fn utf8(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("responses are UTF-8")
}

/// A JSON value as the token and error responses use them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    Str(String),
    Num(u64),
}

/// Parses a flat JSON object of strings and unsigned numbers, panicking on
/// anything else: malformed output from the core fails the test here.
pub fn parse_object(text: &str) -> BTreeMap<String, Json> {
    let mut chars = text.chars().peekable();
    let mut map = BTreeMap::new();
    let expect = |c: char, chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        assert_eq!(chars.next(), Some(c), "in {text}");
    };
    expect('{', &mut chars);
    if chars.peek() == Some(&'}') {
        chars.next();
    } else {
        loop {
            let key = parse_string(&mut chars, text);
            expect(':', &mut chars);
            let value = if chars.peek() == Some(&'"') {
                Json::Str(parse_string(&mut chars, text))
            } else {
                let mut digits = String::new();
                while let Some(c) = chars.next_if(char::is_ascii_digit) {
                    digits.push(c);
                }
                Json::Num(digits.parse().unwrap_or_else(|_| panic!("bad number in {text}")))
            };
            assert!(map.insert(key, value).is_none(), "duplicate member in {text}");
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                other => panic!("unexpected {other:?} in {text}"),
            }
        }
    }
    assert_eq!(chars.next(), None, "trailing bytes in {text}");
    map
}

fn parse_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, text: &str) -> String {
    assert_eq!(chars.next(), Some('"'), "in {text}");
    let mut s = String::new();
    loop {
        match chars.next().unwrap_or_else(|| panic!("unterminated string in {text}")) {
            '"' => return s,
            '\\' => match chars.next() {
                Some('"') => s.push('"'),
                Some('\\') => s.push('\\'),
                Some('n') => s.push('\n'),
                Some('r') => s.push('\r'),
                Some('t') => s.push('\t'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let code = u32::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("bad escape in {text}"));
                    s.push(char::from_u32(code).unwrap_or_else(|| panic!("bad escape in {text}")));
                }
                other => panic!("bad escape {other:?} in {text}"),
            },
            c if (c as u32) < 0x20 => panic!("unescaped control character in {text}"),
            c => s.push(c),
        }
    }
}
