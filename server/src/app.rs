//! The running server's state, and the token grant driven through the core:
//! this is where each [`Step`] the engine asks for is answered (secret
//! check, password hash on the pool, record look-up).

use crate::config::TokenStoreConfig;
use crate::config::{Config, JwtKeySource};
use crate::credentials::{ClientSecrets, UserStore};
use crate::delay::Delays;
use crate::hash::{HashJob, HashPool, HashPriority, PasswordVerifier, StoredHash, VerifyError};
use crate::jwt::JwtKeys;
use crate::lockout::{self, Gate, Lockout};
use crate::metrics::{moving_mean, write_histogram, write_value, RequestMetrics};
use crate::store::redis::RedisStore;
use crate::store::wal::{restore_into, snapshot_of, Entry, SnapshotFn, Wal};
use crate::store::{Commit, ShardedTokenMap, StoreError, TokenStore};
use crate::users_file::Replacement;
use arc_swap::ArcSwap;
use ring::rand::SecureRandom as _;
use ropc_core::basic::SCRATCH_LEN;
use ropc_core::response::{self, Metadata};
use ropc_core::{
    Capabilities, ClientIndex, Engine, Issued, JwtIssuer, LostRace, OAuthError, PasswordOutcome, Provider, QueryKind,
    QueryStep, RandomError, SecureRandom, Step, TokenDigest, TokenKey, TokenRecord, UserRef,
};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// The core's [`SecureRandom`] for token minting: the OS random source
/// (getrandom, through ring's `SystemRandom`), drawn in bulk.
///
/// Each thread keeps a buffer of [`RANDOM_BUFFER`] bytes filled by one
/// `getrandom` call and hands them out in order, so that minting a grant
/// (72 random bytes: family id, access and refresh token) makes one system
/// call per ~56 grants instead of three per grant.
///
/// Why this is as safe as asking the kernel each time:
/// - every byte comes straight from the kernel's CSPRNG, with no userspace
///   generator or seed in between, and is handed out exactly once;
/// - a byte is overwritten with zeros as soon as it is copied out, so the
///   buffer holds only bytes not yet used (they become a token later; an
///   attacker who can read this process's memory can read the token store
///   anyway);
/// - buffers are per thread (never shared, so no lock and no duplicate
///   hand-out), and the process never forks;
/// - one caveat is shared by every userspace buffer: a VM snapshot restored
///   twice would replay the unused bytes of the buffers (at most 4 KiB per
///   thread, about 56 grants), where a direct `getrandom` after the restore
///   would not.
#[derive(Debug)]
pub struct BufferedRandom(ring::rand::SystemRandom);

/// The per-thread buffer size of [`BufferedRandom`].
pub const RANDOM_BUFFER: usize = 4096;

struct RandomBuffer {
    bytes: Zeroizing<[u8; RANDOM_BUFFER]>,
    /// Bytes before `next` were handed out (and zeroed).
    next: usize,
}

thread_local! {
    static RANDOM: std::cell::RefCell<RandomBuffer> =
        std::cell::RefCell::new(RandomBuffer { bytes: Zeroizing::new([0; RANDOM_BUFFER]), next: RANDOM_BUFFER });
}

impl Default for BufferedRandom {
    fn default() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl SecureRandom for BufferedRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        if dest.len() > RANDOM_BUFFER / 4 {
            return self.0.fill(dest).map_err(|_| RandomError);
        }
        RANDOM.with(|cell| {
            let mut buf = cell.borrow_mut();
            if RANDOM_BUFFER - buf.next < dest.len() {
                self.0.fill(&mut buf.bytes[..]).map_err(|_| RandomError)?;
                buf.next = 0;
            }
            let range = buf.next..buf.next + dest.len();
            dest.copy_from_slice(&buf.bytes[range.clone()]);
            buf.bytes[range].fill(0);
            buf.next += dest.len();
            Ok(())
        })
    }
}

/// SHA-256 via ring, as the core's [`TokenDigest`].
#[derive(Debug, Default)]
pub struct Sha256Digest;

impl TokenDigest for Sha256Digest {
    fn digest(&self, token: &[u8]) -> TokenKey {
        let d = ring::digest::digest(&ring::digest::SHA256, token);
        let mut key = [0u8; TokenKey::LEN];
        key.copy_from_slice(&d.as_ref()[..TokenKey::LEN]);
        TokenKey(key)
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Everything read from the config file and the users file: one
/// generation of the configuration. A config commit builds the next one
/// and swaps it in whole; a request takes the generation current when it
/// starts and finishes on it.
#[derive(Debug)]
pub struct Live {
    /// 1 at start, +1 per commit.
    pub generation: u64,
    /// The validated configuration.
    pub config: Config,
    /// The core engine (policy, clients, scopes).
    pub engine: Arc<Engine>,
    /// The users.
    pub users: Arc<UserStore>,
    /// The client secrets.
    pub client_secrets: ClientSecrets,
    /// The issuer URL.
    pub issuer: String,
    /// The RFC 8414 metadata document, built once per generation.
    pub metadata: Vec<u8>,
    /// JWT signing keys, when a client uses JWT access tokens.
    pub jwt: Option<JwtKeys>,
    /// Where upgraded hashes go to be written to the users file (none
    /// without a users file).
    upgrades: Option<crossbeam_channel::Sender<Replacement>>,
}

impl Live {
    /// Builds a generation from `config`. With `previous`, the users file
    /// keeps its users' indices and unchanged client secrets stay verified.
    /// `boot` is the configuration the server started with: without an
    /// explicit `issuer`, the issuer derives from its listener and TLS, which
    /// only a restart changes.
    fn build(
        config: Config,
        boot: &Config,
        bound_port: Option<u16>,
        previous: Option<&Live>,
        generation: u64,
    ) -> Result<Self, String> {
        let users = match (&config.users_file, previous) {
            (Some(path), Some(p)) => UserStore::load_after(path, config.argon2, &p.users),
            (Some(path), None) => UserStore::load(path, config.argon2),
            (None, p) => {
                UserStore::parse_after(std::path::Path::new("(none)"), "", config.argon2, p.map(|p| &*p.users))
            }
        }
        .map_err(|e| e.to_string())?;
        let client_secrets = match previous {
            Some(p) => ClientSecrets::after(config.client_secrets.clone(), &p.client_secrets),
            None => ClientSecrets::new(config.client_secrets.clone())
                .map_err(|_| "the system random source failed".to_owned())?,
        };
        let issuer = if config.issuer.is_some() { config.issuer(bound_port) } else { boot.issuer(bound_port) };
        let engine = Arc::clone(&config.engine);
        let jwt = if config.jwt.in_use {
            Some(match &config.jwt.keys {
                JwtKeySource::Managed(dir) => {
                    JwtKeys::managed(dir, config.jwt.algorithm, engine.config.access_token_ttl)?
                }
                JwtKeySource::Files { signing_key, previous_keys } => JwtKeys::from_files(signing_key, previous_keys)?,
            })
        } else {
            None
        };
        let metadata = build_metadata(&engine, &config, &issuer, jwt.is_some());
        // One writer per users file: a commit that keeps the file keeps the
        // writer (and what is queued on it).
        let upgrades = match (&config.users_file, previous) {
            (Some(path), Some(p)) if p.config.users_file.as_ref() == Some(path) => p.upgrades.clone(),
            (Some(path), _) => {
                Some(spawn_users_writer(path.clone()).map_err(|e| format!("cannot start a thread: {e}"))?)
            }
            (None, _) => None,
        };
        Ok(Self { generation, engine, users: Arc::new(users), client_secrets, issuer, metadata, jwt, upgrades, config })
    }

    /// Whether a stored record still belongs to this generation: its client
    /// and its user (if any) were not removed.
    fn owns(&self, record: &TokenRecord) -> bool {
        self.engine.clients.get(record.client).is_some()
            && (record.user == UserRef::NONE || self.users.name(record.user).is_some())
    }
}

/// A password attempt that the lockout counts in flight ([`Lockout::begin`],
/// or the shared counters in Redis): when dropped armed, which happens only
/// if the request itself is dropped before the attempt ends (its client
/// hung up while the hash waited or ran), the slot is released. Otherwise
/// the slot would stay taken, and a few such hang-ups would lock the
/// username out of every untrusted IP.
///
/// A hang-up after the hash started counts against the IP (not the user):
/// it cost a hash, and uncounted, one IP could keep the workers busy for
/// ever by hanging up just before each answer. A hang-up while the job was
/// still queued (its hash is then skipped) counts nothing: those are mostly
/// legitimate clients timing out while an overloaded server queues their
/// logins, and an office behind one NAT must not be throttled for that. A
/// client that hangs up learns nothing before its guess is counted: the
/// attempt ends, and counts, as soon as its hash answers, before any
/// padding of the answer. (A worker that takes the job in the very instant
/// the request is dropped hashes it uncounted: too narrow to aim at.)
struct InFlight<'a> {
    app: &'a App,
    user: &'a str,
    ip: IpAddr,
    now: u64,
    /// The Redis lockout's id for the attempt (0 without Redis).
    attempt: u64,
    armed: bool,
    /// Set when the hash starts.
    started: Arc<AtomicBool>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let cost_a_hash = self.started.load(Ordering::Relaxed);
        let Some(redis) = &self.app.redis else {
            return match cost_a_hash {
                true => self.app.lockout.abandon(self.user, self.ip, self.now),
                false => self.app.lockout.finish(self.user, self.ip, self.now, None),
            };
        };
        // Redis is reached asynchronously: the slot is released from a task
        // of its own. (A slot left behind, by a crash or a runtime shutting
        // down, stops counting 60 s after its attempt began, see
        // USER_BEGIN.)
        Arc::clone(redis).release_later(
            self.app.lockout.policy(),
            self.user.to_owned(),
            self.ip,
            self.now,
            cost_a_hash,
            self.attempt,
        );
    }
}

/// A guess refused by a user's lock (or given up when its username
/// locked), not yet counted against its IP: it counts when its answer is
/// due. Dropped armed, its client having hung up first, it counts only if
/// a guess let through would have had its hash started by then
/// (`hash_due`), as a hung-up guess counts only once its hash started (see
/// [`InFlight`]): so a hang-up does not tell a locked account from another
/// either.
struct RefusedGuess<'a> {
    app: &'a App,
    ip: IpAddr,
    now: u64,
    armed: bool,
    hash_due: std::time::Instant,
    why: &'static str,
}

impl RefusedGuess<'_> {
    /// Counts it now that its answer is due (if armed).
    async fn now(mut self) {
        if std::mem::take(&mut self.armed) {
            self.app.ip_failure(self.ip, self.now, self.why).await;
        }
    }
}

impl Drop for RefusedGuess<'_> {
    fn drop(&mut self) {
        if self.armed && std::time::Instant::now() >= self.hash_due {
            drop(self.app.ip_failure_begun(self.ip, self.now, self.why));
        }
    }
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    /// The configuration in force; swapped by [`App::reload`].
    live: Arc<ArcSwap<Live>>,
    /// The port actually listened on (for the derived issuer).
    bound_port: Option<u16>,
    /// The configuration the server started with: its listeners, limits
    /// and hash pool stay in force until a restart.
    boot: Config,
    /// One commit at a time.
    reloading: parking_lot::Mutex<()>,
    /// Commits refused since the start.
    reloads_failed: AtomicU64,
    /// Where password hashes run.
    pub verifier: Arc<dyn PasswordVerifier>,
    /// The hash pool, when `verifier` is one (for `Retry-After` and metrics).
    pub pool: Option<Arc<HashPool>>,
    /// Token records, when they are kept in this process.
    pub store: Arc<ShardedTokenMap>,
    /// The write-ahead log that keeps `store`'s refresh tokens across
    /// restarts (`[token_store] durable`).
    pub wal: Option<Wal>,
    /// Token records and brute-force counters shared through Redis
    /// (`[token_store] kind = "redis"`); `store` is then unused.
    pub redis: Option<Arc<RedisStore>>,
    /// Randomness for tokens.
    pub random: BufferedRandom,
    /// Token digest.
    pub digest: Sha256Digest,
    /// Set while shutting down: `/healthz` answers 503.
    pub draining: AtomicBool,
    /// Failed-login counters and locks.
    pub lockout: Lockout,
    /// Hashes upgraded to argon2id since the start.
    upgraded: Arc<AtomicU64>,
    /// Moving mean of a password verification's latency, queue included, in
    /// nanoseconds: how long a locked account's answer waits.
    verify_latency_ns: AtomicU64,
    /// Precise waits for locked accounts.
    delays: Delays,
    /// Request counters and latencies.
    pub requests: RequestMetrics,
    /// Connections being served.
    pub open_connections: AtomicUsize,
}

/// What a config commit changed, for the log and the caller.
#[derive(Debug)]
pub struct Committed {
    /// The new generation.
    pub generation: u64,
    /// Client ids added and removed.
    pub clients_added: Vec<String>,
    /// Client ids removed: their tokens stop working.
    pub clients_removed: Vec<String>,
    /// Users in the new users file, and how many were removed.
    pub users: usize,
    /// Users removed: their tokens stop working.
    pub users_removed: usize,
    /// Keys whose new values wait for a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Why a password was not verified.
enum Refused {
    Verify(VerifyError),
    Throttled { retry_after: u64 },
}

/// The outcome of one token request, for the response and the log.
pub struct GrantOutcome {
    /// HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Vec<u8>,
    /// The error, if the request failed.
    pub error: Option<OAuthError>,
    /// `Retry-After` seconds, for 503.
    pub retry_after: Option<u64>,
    /// The presented client id (for the log).
    pub client_id: Option<String>,
    /// The grant type (for the log).
    pub grant_type: Option<&'static str>,
    /// The presented username (for the log).
    pub username: Option<String>,
    /// What happened, for the log, when the request succeeded.
    pub label: &'static str,
}

impl App {
    /// Builds the state for `config`: reads the users file, starts the hash
    /// pool. `bound_port` is the port actually listened on.
    pub fn new(config: Config, bound_port: Option<u16>) -> Result<Self, String> {
        let pool = Arc::new(
            HashPool::new(config.hash_workers, config.hash_queue, config.hash_priority)
                .map_err(|e| format!("cannot start the hash pool: {e}"))?,
        );
        let lockout = Lockout::new(config.lockout);
        let redis = match &config.token_store {
            TokenStoreConfig::Redis(c) => Some(Arc::new(RedisStore::new(c.clone()))),
            TokenStoreConfig::Memory { .. } => None,
        };
        let boot = config.clone();
        let live = Live::build(config, &boot, bound_port, None, 1)?;
        warn_weak_hashes(&live.users);
        // What a verification at the configured cost takes, so that padded
        // answers (locked users, fast legacy hashes) match it from the first
        // request on, before any real verification has been timed.
        let verify_latency_seed = u64::try_from(live.users.time_dummy().as_nanos()).unwrap_or(u64::MAX);
        let live = Arc::new(ArcSwap::from_pointee(live));
        let store = Arc::new(ShardedTokenMap::default());
        let wal = match &boot.token_store {
            TokenStoreConfig::Memory { wal: Some(path), sync_interval_ms } => {
                let mode = match sync_interval_ms {
                    0 => crate::store::wal::Sync::Always,
                    ms => crate::store::wal::Sync::Interval(Duration::from_millis(*ms)),
                };
                let (map, current) = (Arc::clone(&store), Arc::clone(&live));
                let snapshot: SnapshotFn = Box::new(move || snapshot_of(&map, &current.load()));
                let restore = |state| restore_into(&store, &live.load(), state, path);
                let wal = Wal::open(path, restore, snapshot, crate::store::wal::COMPACT_MIN, mode)
                    .map_err(|e| format!("{}: cannot open the token log: {e}", path.display()))?;
                Some(wal)
            }
            _ => None,
        };
        Ok(Self {
            live,
            wal,
            bound_port,
            boot,
            reloading: parking_lot::Mutex::new(()),
            reloads_failed: AtomicU64::new(0),
            verifier: pool.clone(),
            pool: Some(pool),
            store,
            redis,
            random: BufferedRandom::default(),
            digest: Sha256Digest,
            draining: AtomicBool::new(false),
            lockout,
            upgraded: Arc::new(AtomicU64::new(0)),
            verify_latency_ns: AtomicU64::new(verify_latency_seed),
            delays: Delays::new(),
            requests: RequestMetrics::default(),
            open_connections: AtomicUsize::new(0),
        })
    }

    /// The configuration in force now. A request holds on to it until it
    /// ends, so that a commit never changes the rules halfway through one.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Re-reads the config file this server started from and its users
    /// file, validates all of it, and swaps it in at once (a config
    /// commit). Requests already running finish on the old generation. On
    /// any error nothing changes: the old configuration keeps serving, and
    /// the error names the file, key and line.
    ///
    /// Blocking (reads files, hashes a dummy password): call it off the
    /// async workers.
    pub fn reload(&self) -> Result<Committed, String> {
        let _one_at_a_time = self.reloading.lock();
        let result = self.try_reload();
        match &result {
            Ok(c) => tracing::info!(
                event = "config_commit",
                generation = c.generation,
                clients_added = ?c.clients_added,
                clients_removed = ?c.clients_removed,
                users = c.users,
                users_removed = c.users_removed,
                restart_needed = ?c.restart_needed,
                "configuration committed"
            ),
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(event = "config_rejected", error = %e, "configuration not committed; the previous one keeps serving");
            }
        }
        result
    }

    fn try_reload(&self) -> Result<Committed, String> {
        let old = self.live();
        let config = Config::load_after(&old.config.file, &old.config).map_err(|e| e.to_string())?;
        let restart_needed = restart_only_changes(&self.boot, &config);
        let lockout = config.lockout;
        let next = Live::build(config, &self.boot, self.bound_port, Some(&old), old.generation + 1)?;
        let ids = |live: &Live| live.engine.clients.iter().map(|(_, c)| c.id.clone()).collect::<Vec<_>>();
        let (before, after) = (ids(&old), ids(&next));
        let committed = Committed {
            generation: next.generation,
            clients_added: after.iter().filter(|id| !before.contains(id)).cloned().collect(),
            clients_removed: before.iter().filter(|id| !after.contains(id)).cloned().collect(),
            users: next.users.len(),
            users_removed: old.users.names().filter(|n| next.users.find(n).is_none()).count(),
            restart_needed,
        };
        warn_weak_hashes(&next.users);
        self.lockout.set_policy(lockout);
        self.live.store(Arc::new(next));
        Ok(committed)
    }

    /// The configuration the server started with (listeners, connection
    /// limits and timeouts, hash pool: what a commit cannot change).
    pub fn boot(&self) -> &Config {
        &self.boot
    }

    /// Config commits refused since the start.
    pub fn reloads_failed(&self) -> u64 {
        self.reloads_failed.load(Ordering::Relaxed)
    }

    fn provider(&self) -> Provider<'_> {
        Provider { random: &self.random, digest: &self.digest }
    }

    /// Runs one token request through the engine. `authorization` is the
    /// raw `Authorization` header, if any.
    /// `live` is the configuration the request runs on ([`App::live`]).
    pub async fn token(&self, live: &Live, body: &[u8], authorization: Option<&[u8]>, peer: IpAddr) -> GrantOutcome {
        let mut scratch = Zeroizing::new([0u8; SCRATCH_LEN]);
        let mut grant = live.engine.token_grant(self.provider(), body, authorization, &mut scratch);
        let mut out = Vec::with_capacity(256);
        let mut outcome = GrantOutcome {
            status: 200,
            body: Vec::new(),
            error: None,
            retry_after: None,
            client_id: grant.client_id().map(str::to_owned),
            grant_type: grant.grant_type(),
            username: grant.username().map(str::to_owned),
            label: "issued",
        };
        let result = loop {
            let step = grant.step();
            // `Step`'s Debug redacts the secret and the password.
            tracing::trace!(?step, "token grant step");
            match step {
                Step::AuthenticateClient { client, secret } => {
                    match self.authenticate_client(live, client, secret.expose(), peer).await {
                        Ok(ok) => grant.client_authenticated(ok),
                        Err(r) => break Err(self.refused(r, &mut outcome)),
                    }
                }
                Step::VerifyPassword { username, password } => {
                    match self.verify_password(live, username, password.expose(), peer).await {
                        Ok(result) => grant.password_verified(result),
                        Err(r) => break Err(self.refused(r, &mut outcome)),
                    }
                }
                Step::LoadRefreshToken { key } => match self.get_record(live, &key).await {
                    Ok(record) => grant.refresh_token_loaded(record, now()),
                    Err(_) => break Err(OAuthError::STORE_FAILED),
                },
                Step::RevokeFamily { family, until } => match self.revoke_family(family, until).await {
                    Ok(()) => {
                        tracing::warn!(
                            event = "refresh_token_reuse",
                            client = ?outcome.client_id.as_deref().unwrap_or("-"),
                            family = family.0,
                            "a rotated refresh token was replayed; its grant family is revoked"
                        );
                        grant.family_revoked();
                    }
                    Err(_) => break Err(OAuthError::STORE_FAILED),
                },
                Step::Issue if grant.wants_jwt() => {
                    let subject = live.users.name(grant.user()).cloned();
                    // Without keys the core answers server_error (signing_failure).
                    let jwt = live.jwt.as_ref().map(|keys| JwtIssuer {
                        signer: &keys.active,
                        issuer: &live.issuer,
                        audience: live.config.jwt.audience.as_deref().unwrap_or(&live.issuer),
                        subject: subject.as_deref(),
                    });
                    match grant.issue_with(now(), jwt.as_ref(), &mut out) {
                        Ok(issued) => break self.commit(live, &issued).await,
                        Err(e) => break Err(e),
                    }
                }
                Step::Issue => match grant.issue(now(), &mut out) {
                    Ok(issued) => break self.commit(live, &issued).await,
                    Err(e) => break Err(e),
                },
                Step::Reject(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => outcome.body = out,
            Err(e) => {
                // Zero any token already written before the failure.
                zeroize::Zeroize::zeroize(&mut out);
                outcome.status = e.status();
                outcome.error = Some(e);
                live.engine.write_error(&e, &mut outcome.body);
            }
        }
        outcome
    }

    /// Verifies a password under the brute-force policy: a locked username
    /// or a throttled IP spends no hash. A locked username waits as long as
    /// a hash takes, so that its answer cannot be told from a wrong password.
    async fn verify_password(
        &self,
        live: &Live,
        username: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<PasswordOutcome, Refused> {
        let now = now();
        let (gate, lock_signal, attempt) = match &self.redis {
            None => {
                let (gate, signal) = self.lockout.begin_watched(username, peer, now);
                (gate, signal, 0)
            }
            Some(redis) => {
                let (gate, attempt) = redis
                    .begin_detached(&self.lockout.policy(), username, peer, now)
                    .await
                    .map_err(|_| Refused::Verify(VerifyError::Unavailable))?;
                if gate != Gate::Open {
                    self.lockout.note_refused();
                }
                (gate, None, attempt)
            }
        };
        match gate {
            Gate::IpThrottled { retry_after } => return Err(Refused::Throttled { retry_after }),
            Gate::UserLocked | Gate::Crowded => {
                // A refused guess is still a failed login from its IP: an IP
                // that goes on hammering a locked account is throttled (and
                // then answered at once, with 429) like one spraying guesses
                // over many accounts. Counted when its answer is due, as a
                // wrong password's count comes after its hash; if the client
                // hangs up first, only once a guess let through would have
                // had its hash started (see `RefusedGuess`). Not an attempt
                // over a clean record's cap: that is no guess yet.
                let hash_due = std::time::Instant::now() + self.queue_wait();
                let armed = gate == Gate::UserLocked;
                let count = RefusedGuess { app: self, ip: peer, now, armed, hash_due, why: lockout::REFUSED_GUESSES };
                // Take as long as a real verification does right now, queue
                // wait included.
                let typical = Duration::from_nanos(self.verify_latency_ns.load(Ordering::Relaxed));
                self.delays.sleep(typical).await;
                count.now().await;
                return Ok(PasswordOutcome::Locked);
            }
            Gate::Open => {}
        }
        // The lockout counts this attempt in flight until it ends; if the
        // request goes away first (its client disconnected while the hash
        // waited or ran), the guard releases the slot (see `InFlight`).
        let mut in_flight =
            InFlight { app: self, user: username, ip: peer, now, attempt, armed: true, started: Arc::default() };
        // Unknown users are checked against the dummy hash, at the
        // configured cost; only legacy or outdated hashes are not.
        let at_current_cost = live.users.verifies_at_current_cost(username);
        let started = std::time::Instant::now();
        // When this job's hash would start, and its answer come, if it is
        // hashed in turn behind the queue it joins (for an attempt
        // abandoned below: only watched attempts can be).
        let in_turn = lock_signal.as_ref().map(|_| {
            let queued = self.queue_wait();
            (queued, self.pool.as_ref().map(|pool| queued.saturating_add(pool.mean_hash_time())))
        });
        let verified = live.users.verify(&*self.verifier, username, password, Some(Arc::clone(&in_flight.started)));
        let verified = match &lock_signal {
            None => verified.await,
            Some(signal) => tokio::select! {
                biased;
                verified = verified => verified,
                () = signal.fired() => {
                    // The username was locked while this attempt waited
                    // (a burst of guesses): dropping the verification
                    // drops its queued hash, which the pool then skips (a
                    // hash already running finishes unread). The answer is
                    // a locked user's, whatever the password, as it would
                    // be for an attempt arriving now; it still counts
                    // against the IP, as the guess it replaces would have,
                    // when its answer is due (a hang-up before: once its
                    // hash would have started in turn, if it had not).
                    in_flight.armed = false;
                    self.lockout.finish(username, peer, now, None);
                    self.lockout.note_refused();
                    let typical = Duration::from_nanos(self.verify_latency_ns.load(Ordering::Relaxed));
                    let (queued, in_turn) = in_turn.unwrap_or_default();
                    let answer_due = in_turn.unwrap_or(typical);
                    let hash_due = if in_flight.started.load(Ordering::Relaxed) { started } else { started + queued };
                    let count =
                        RefusedGuess { app: self, ip: peer, now, armed: true, hash_due, why: lockout::FAILED_LOGINS };
                    // It comes when the hash would have answered, so that
                    // the rest of a burst is not answered all at once.
                    if let Some(rest) = answer_due.checked_sub(started.elapsed()) {
                        self.delays.sleep(rest).await;
                    }
                    count.now().await;
                    return Ok(PasswordOutcome::Locked);
                }
            },
        };
        let outcome = match verified {
            Ok(outcome) => outcome,
            Err(e) => {
                in_flight.armed = false;
                self.finish_attempt(username, peer, now, None, attempt).await;
                return Err(Refused::Verify(e));
            }
        };
        let elapsed = started.elapsed();
        // Counted before any padding below: a client that hangs up while a
        // wrong password's answer is held back must not take its guess
        // uncounted.
        let failed = !matches!(outcome, PasswordOutcome::Valid(_));
        in_flight.armed = false;
        self.finish_attempt(username, peer, now, Some(failed), attempt).await;
        let typical_ns = self.verify_latency_ns.load(Ordering::Relaxed);
        let typical = Duration::from_nanos(typical_ns);
        if at_current_cost {
            let took = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            self.verify_latency_ns.store(moving_mean(typical_ns, took, 16), Ordering::Relaxed);
        } else if outcome == PasswordOutcome::WrongPassword {
            // A legacy hash (bcrypt at cost 4, {SHA}) can be far faster than
            // the dummy hash an unknown user costs: answer a wrong password
            // no sooner than a verification at the configured cost, so that
            // the timing does not tell that the user exists.
            if let Some(rest) = typical.checked_sub(elapsed) {
                self.delays.sleep(rest).await;
            }
        }
        if let PasswordOutcome::Valid(user) = outcome {
            self.upgrade_later(live, user, password);
        }
        Ok(outcome)
    }

    /// After a successful login against a hash that is not argon2id at the
    /// configured cost, re-hashes the password on the hash pool in the
    /// background (the response does not wait), swaps the new hash in, and
    /// queues the users-file rewrite. Skipped when the pool is full: the
    /// next login tries again.
    fn upgrade_later(&self, live: &Live, user: UserRef, password: &str) {
        let Some(old) = live.users.hash(user) else { return };
        if !live.users.needs_upgrade(&old) || !old.verifies_whole(password.as_bytes()) {
            return;
        }
        let job = HashJob { password: Zeroizing::new(password.as_bytes().to_vec()), params: live.users.params() };
        let Ok(pending) = self.verifier.try_submit_hash(job) else { return };
        let users = Arc::clone(&live.users);
        let writer = live.upgrades.clone();
        let upgraded = Arc::clone(&self.upgraded);
        tokio::spawn(async move {
            let name = users.name(user).map(|n| n.to_string()).unwrap_or_default();
            let phc = match pending.await {
                Ok(Ok(phc)) => phc,
                Ok(Err(e)) => return tracing::warn!(user = %name.escape_debug(), error = %e, "hash upgrade failed"),
                Err(_) => return,
            };
            let Ok(new) = StoredHash::parse(&phc) else { return };
            if !users.replace(user, &old, new) {
                return;
            }
            upgraded.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                event = "password_upgraded",
                user = %name.escape_debug(),
                from = old.scheme_name(),
                "hash upgraded to argon2id"
            );
            let change = Replacement { user: name, old: old.as_phc().to_owned(), new: phc };
            if let Some(writer) = writer {
                if writer.try_send(change).is_err() {
                    tracing::warn!("users-file writer busy: the upgraded hash is kept in memory only for now");
                }
            }
        });
    }

    /// Checks a client secret. An IP over its failure threshold is refused
    /// first, and a wrong secret counts against the IP, so that guessing
    /// secrets (or burning hashes before a client's first success) is
    /// throttled like guessing passwords.
    async fn authenticate_client(
        &self,
        live: &Live,
        client: ClientIndex,
        secret: &str,
        peer: IpAddr,
    ) -> Result<bool, Refused> {
        let now = now();
        let throttled = match &self.redis {
            None => self.lockout.ip_throttled(peer, now),
            Some(redis) => {
                let t = redis.ip_throttled(peer, now).await.map_err(|_| Refused::Verify(VerifyError::Unavailable))?;
                if t.is_some() {
                    self.lockout.note_refused();
                }
                t
            }
        };
        if let Some(retry_after) = throttled {
            return Err(Refused::Throttled { retry_after });
        }
        let ok = live.client_secrets.verify(&*self.verifier, client, secret).await.map_err(Refused::Verify)?;
        if !ok {
            self.ip_failure(peer, now, "too many failed client authentications").await;
        }
        Ok(ok)
    }

    /// How long a hash submitted now would wait for the jobs queued ahead
    /// of it (none without a pool: the inline verifier starts at once).
    fn queue_wait(&self) -> Duration {
        self.pool.as_ref().map_or(Duration::ZERO, |pool| {
            let rounds = pool.queue_len() / pool.workers().max(1);
            pool.mean_hash_time().saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
        })
    }

    /// Counts a failure against `peer` only, in memory or in the shared
    /// Redis, and waits until it is counted, so that the client's next
    /// request sees it. `why` goes into the audit line of a throttle it
    /// starts.
    async fn ip_failure(&self, peer: IpAddr, now: u64, why: &'static str) {
        if let Some(counted) = self.ip_failure_begun(peer, now, why) {
            let _ = counted.await;
        }
    }

    /// Counts a failure against `peer` only: in memory at once, or in Redis
    /// from a task of its own (returned), so that a client hanging up does
    /// not take the count along; a Redis error loses it.
    fn ip_failure_begun(&self, peer: IpAddr, now: u64, why: &'static str) -> Option<tokio::task::JoinHandle<()>> {
        let Some(redis) = &self.redis else {
            self.lockout.ip_failure(peer, now, why);
            return None;
        };
        Arc::clone(redis).ip_failure_later(self.lockout.policy(), peer, now, why)
    }

    /// Runs one revocation (RFC 7009) or introspection (RFC 7662) request.
    pub async fn token_query(
        &self,
        live: &Live,
        kind: QueryKind,
        body: &[u8],
        authorization: Option<&[u8]>,
        peer: IpAddr,
    ) -> GrantOutcome {
        let mut scratch = Zeroizing::new([0u8; SCRATCH_LEN]);
        let provider = self.provider();
        let mut query = match kind {
            QueryKind::Revocation => live.engine.revocation(provider, body, authorization, &mut scratch),
            QueryKind::Introspection => live.engine.introspection(provider, body, authorization, &mut scratch),
        };
        let mut outcome = GrantOutcome {
            status: 200,
            body: Vec::new(),
            error: None,
            retry_after: None,
            client_id: query.client_id().map(str::to_owned),
            grant_type: None,
            username: None,
            label: "",
        };
        let result = loop {
            let step = query.step();
            tracing::trace!(?step, "token query step");
            match step {
                QueryStep::AuthenticateClient { client, secret } => {
                    match self.authenticate_client(live, client, secret.expose(), peer).await {
                        Ok(ok) => query.client_authenticated(ok),
                        Err(r) => break Err(self.refused(r, &mut outcome)),
                    }
                }
                QueryStep::LoadToken { key } => match self.get_record(live, &key).await {
                    Ok(record) => query.token_loaded(record),
                    Err(_) => break Err(OAuthError::STORE_FAILED),
                },
                QueryStep::Done => break Ok(()),
                QueryStep::Reject(e) => break Err(e),
            }
        };
        if let Err(e) = result {
            outcome.status = e.status();
            outcome.error = Some(e);
            live.engine.write_error(&e, &mut outcome.body);
            return outcome;
        }
        let now = now();
        match kind {
            QueryKind::Revocation => {
                let revocation = query.revocation(now);
                let applied = async {
                    if let Some((family, until)) = revocation.revoke_family {
                        self.revoke_family(family, until).await?;
                    }
                    if let Some(key) = revocation.remove {
                        self.remove_record(&key).await?;
                    }
                    Ok::<_, crate::store::StoreError>(())
                };
                if applied.await.is_err() {
                    let e = OAuthError::STORE_FAILED;
                    outcome.status = e.status();
                    outcome.error = Some(e);
                    live.engine.write_error(&e, &mut outcome.body);
                    return outcome;
                }
                outcome.label = match (revocation.remove, revocation.revoke_family) {
                    (_, Some(_)) => "revoked_grant",
                    (Some(_), None) => "revoked_token",
                    // Unknown, or another client's: RFC 7009 §2.2 says 200 all the same.
                    (None, None) => "nothing_revoked",
                };
            }
            QueryKind::Introspection => {
                let users = &live.users;
                let name = |u| users.name(u).map(|n| n.to_string());
                let active = query.write_introspection(now, &live.issuer, &name, &mut outcome.body);
                outcome.label = if active { "active" } else { "inactive" };
            }
        }
        outcome
    }

    /// Ends a password attempt under the brute-force policy (see
    /// [`Lockout::finish`]); with Redis, the counters are shared by every
    /// instance. A Redis error loses this attempt's count (logged by the
    /// store). `attempt` is the id Redis admitted it under (0 without Redis).
    async fn finish_attempt(&self, username: &str, peer: IpAddr, now: u64, failed: Option<bool>, attempt: u64) {
        let Some(redis) = &self.redis else {
            return self.lockout.finish(username, peer, now, failed);
        };
        // In a task of its own, with its audit lines, so that the count
        // and the lines are made even if the request is dropped (its
        // client hung up) while Redis answers.
        let (store, policy, user) = (Arc::clone(redis), self.lockout.policy(), username.to_owned());
        let counted = tokio::spawn(async move {
            let Ok((locked, throttled)) = store.finish(&policy, &user, peer, now, failed, attempt).await else {
                return false;
            };
            if locked > 0 {
                tracing::warn!(
                    event = "account_locked",
                    user = ?user,
                    seconds = locked,
                    "too many failed logins on the instances sharing this Redis; the account is locked"
                );
            }
            if throttled > 0 {
                tracing::warn!(event = "ip_throttled", ip = %peer, seconds = throttled, why = lockout::FAILED_LOGINS);
            }
            locked > 0
        });
        if let Ok(true) = counted.await {
            self.lockout.note_lock();
        }
    }

    /// The record under `key`, unless its family is revoked or its client or
    /// user is no longer configured.
    async fn get_record(&self, live: &Live, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        match &self.redis {
            Some(redis) => redis.get(live, key).await,
            None => Ok(self.store.get(key).await?.filter(|r| live.owns(r))),
        }
    }

    async fn commit_records(&self, live: &Live, issued: &Issued) -> Result<Commit, StoreError> {
        if let Some(redis) = &self.redis {
            return redis.commit(live, issued).await;
        }
        let commit = self.store.commit(issued).await?;
        if commit == Commit::Stored {
            let at = issued.access.1.issued_at.max(1);
            let retire = issued.retire.map(|key| Entry::Retire(key, at));
            if let Err(e) = self.log(live, issued, retire).await {
                // Not durable, so not done: undo it, so that the client's
                // retry with the same refresh token is not taken for a replay.
                if let Some(old) = &issued.retire {
                    self.store.unretire(old, at);
                }
                self.store.remove_now(&issued.access.0);
                if let Some((key, _)) = &issued.refresh {
                    self.store.remove_now(key);
                }
                return Err(e);
            }
        }
        Ok(commit)
    }

    async fn store_records(&self, live: &Live, issued: &Issued) -> Result<(), StoreError> {
        if let Some(redis) = &self.redis {
            return redis.store_only(live, issued).await;
        }
        self.store.store_only(issued).await?;
        self.log(live, issued, None).await
    }

    /// Makes the refresh token of `issued` (and `retire`) durable, when the
    /// memory store keeps a log. Map first, then log: see [`crate::store::wal`].
    async fn log(&self, live: &Live, issued: &Issued, retire: Option<Entry>) -> Result<(), StoreError> {
        let Some(wal) = &self.wal else { return Ok(()) };
        let mut bytes = Vec::with_capacity(256);
        let mut count = 0;
        if let Some(retire) = retire {
            bytes.extend_from_slice(&retire.frame());
            count += 1;
        }
        if let Some((key, record)) = &issued.refresh {
            if !Entry::frame_put(&mut bytes, key, record, live) {
                return Err(StoreError);
            }
            count += 1;
        }
        wal.append_framed(bytes, count).await
    }

    async fn remove_record(&self, key: &TokenKey) -> Result<(), StoreError> {
        if let Some(redis) = &self.redis {
            return redis.remove(key).await;
        }
        if self.store.remove(key).await?.is_some_and(|r| r.kind == ropc_core::TokenKind::Refresh) {
            if let Some(wal) = &self.wal {
                wal.append(&[Entry::Delete(*key)]).await?;
            }
        }
        Ok(())
    }

    async fn revoke_family(&self, family: ropc_core::FamilyId, until: u64) -> Result<(), StoreError> {
        if let Some(redis) = &self.redis {
            return redis.revoke_family(family, until).await;
        }
        // Log the revocation as long as the map keeps it (it may outlast
        // `until`), so that a restart does not end it early.
        let until = self.store.revoke_family_now(family, until);
        match &self.wal {
            Some(wal) => wal.append(&[Entry::RevokeFamily(family.0, until)]).await,
            None => Ok(()),
        }
    }

    /// Whether the token store answers (always, in memory): `/healthz`.
    pub async fn store_up(&self) -> bool {
        match &self.redis {
            Some(redis) => redis.is_up() || redis.ping().await,
            None => true,
        }
    }

    /// Stores a grant's records; settles a lost rotation race as the engine
    /// says (a replay, unless the grace window covers it).
    async fn commit(&self, live: &Live, issued: &Issued) -> Result<(), OAuthError> {
        match self.commit_records(live, issued).await {
            Ok(Commit::Stored) => Ok(()),
            Ok(Commit::LostRace) => match issued.lost_race(&live.engine) {
                LostRace::StoreWithoutRetiring => {
                    self.store_records(live, issued).await.map_err(|_| OAuthError::STORE_FAILED)
                }
                LostRace::RevokeFamily(family, until, error) => {
                    self.revoke_family(family, until).await.map_err(|_| OAuthError::STORE_FAILED)?;
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

    /// The error (and `Retry-After`) for a verification that did not run.
    fn refused(&self, refused: Refused, outcome: &mut GrantOutcome) -> OAuthError {
        match refused {
            Refused::Verify(VerifyError::Overloaded { retry_after }) => {
                outcome.retry_after = Some(retry_after.as_secs_f64().ceil().max(1.0) as u64);
                OAuthError::OVERLOADED
            }
            Refused::Verify(VerifyError::Unavailable) => {
                outcome.retry_after = Some(1);
                OAuthError::OVERLOADED
            }
            Refused::Throttled { retry_after } => {
                outcome.retry_after = Some(retry_after.max(1));
                OAuthError::IP_THROTTLED
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(8192);
        self.requests.write(&mut out);
        if let Some(pool) = &self.pool {
            let w = &mut out;
            write_value(w, "ropc_hash_workers", "gauge", "Hash worker threads.", pool.workers());
            write_value(w, "ropc_hash_busy_workers", "gauge", "Hash workers hashing now.", pool.busy());
            write_value(
                w,
                "ropc_hash_queue_length",
                "gauge",
                "Verifications waiting for a worker.",
                self.verifier.queue_len(),
            );
            write_value(
                w,
                "ropc_hash_queue_capacity",
                "gauge",
                "Verifications that may wait before 503.",
                pool.capacity(),
            );
            write_value(w, "ropc_hash_completed_total", "counter", "Password hashes computed.", pool.completed());
            write_value(
                w,
                "ropc_hash_skipped_total",
                "counter",
                "Queued hashes dropped unhashed: their answer was no longer awaited.",
                pool.skipped(),
            );
            write_value(
                w,
                "ropc_hash_shed_total",
                "counter",
                "Verifications refused with 503: queue full.",
                pool.shed(),
            );
            write_histogram(w, "ropc_hash_duration_seconds", "Time of one password hash.", pool.hash_time());
        }
        let w = &mut out;
        write_value(
            w,
            "ropc_password_upgrades_total",
            "counter",
            "Legacy or outdated password hashes replaced with argon2id after a login.",
            self.upgraded.load(Ordering::Relaxed),
        );
        write_value(
            w,
            "ropc_token_store_records",
            "gauge",
            "Token records held (expired ones until swept).",
            self.store.len(),
        );
        write_value(
            w,
            "ropc_token_store_bytes",
            "gauge",
            "Bytes of the token store's tables (slots and control bytes).",
            self.store.table_bytes(),
        );
        write_value(
            w,
            "ropc_token_store_revoked_families",
            "gauge",
            "Revoked grant families remembered.",
            self.store.revoked_families(),
        );
        if let Some(wal) = &self.wal {
            let st = wal.stats();
            write_value(
                w,
                "ropc_token_log_bytes",
                "gauge",
                "Bytes in the token log.",
                st.bytes.load(Ordering::Relaxed),
            );
            write_value(
                w,
                "ropc_token_log_entries_total",
                "counter",
                "Entries written to the token log.",
                st.entries.load(Ordering::Relaxed),
            );
            write_value(
                w,
                "ropc_token_log_syncs_total",
                "counter",
                "fdatasync calls on the token log (one per group commit).",
                st.syncs.load(Ordering::Relaxed),
            );
            write_value(
                w,
                "ropc_token_log_compactions_total",
                "counter",
                "Rewrites of the token log as a snapshot.",
                st.compactions.load(Ordering::Relaxed),
            );
            write_value(
                w,
                "ropc_token_log_failures_total",
                "counter",
                "Failed writes to the token log.",
                st.failures.load(Ordering::Relaxed),
            );
            write_histogram(
                w,
                "ropc_token_log_write_seconds",
                "Time to write one batch of grants to the token log, the wait for its lock included.",
                &st.write_time,
            );
            write_histogram(w, "ropc_token_log_sync_seconds", "Time of one fdatasync of the token log.", &st.sync_time);
        }
        if let Some(redis) = &self.redis {
            write_value(w, "ropc_token_store_up", "gauge", "1 while Redis answers.", u8::from(redis.is_up()));
            write_value(
                w,
                "ropc_token_store_round_trips_total",
                "counter",
                "Round trips to Redis.",
                redis.round_trips(),
            );
            write_value(
                w,
                "ropc_token_store_errors_total",
                "counter",
                "Redis round trips that failed or timed out.",
                redis.errors(),
            );
        }
        write_value(
            w,
            "ropc_lockout_locks_total",
            "counter",
            "Accounts locked for failed logins.",
            self.lockout.locks(),
        );
        write_value(
            w,
            "ropc_lockout_refused_total",
            "counter",
            "Attempts refused by a lock or IP throttle (with no hash spent, but for a burst's hashes already running at its lock).",
            self.lockout.refused(),
        );
        write_value(
            w,
            "ropc_lockout_tracked_users",
            "gauge",
            "Usernames with failure counters.",
            self.lockout.tracked_users(),
        );
        write_value(w, "ropc_lockout_tracked_ips", "gauge", "IPs with failure counters.", self.lockout.tracked_ips());
        let live = self.live();
        write_value(w, "ropc_config_generation", "gauge", "Config commits since the start, plus one.", live.generation);
        write_value(
            w,
            "ropc_config_reload_failures_total",
            "counter",
            "Config reloads refused (the previous configuration kept serving).",
            self.reloads_failed(),
        );
        write_value(w, "ropc_clients", "gauge", "Configured clients.", live.engine.clients.len());
        write_value(w, "ropc_users", "gauge", "Users in the users file.", live.users.len());
        write_value(
            w,
            "ropc_open_connections",
            "gauge",
            "Connections being served.",
            self.open_connections.load(Ordering::Relaxed),
        );
        write_value(
            w,
            "ropc_draining",
            "gauge",
            "1 while shutting down.",
            u8::from(self.draining.load(Ordering::Relaxed)),
        );
        out
    }

    /// Removes expired records from one shard of the store, and sweeps one
    /// shard of the lockout counters.
    pub fn sweep_step(&self) -> usize {
        let now = now();
        self.lockout.sweep_step(now);
        self.store.sweep_step(now)
    }

    /// How often to sweep one shard so that the whole store is swept about
    /// once per `period`.
    pub fn sweep_interval(&self, period: Duration) -> Duration {
        period / u32::try_from(self.store.shard_count()).unwrap_or(1).max(1)
    }
}

/// Logs each user whose hash is weak, and how many hashes wait for an upgrade.
fn warn_weak_hashes(users: &UserStore) {
    for (name, scheme) in users.weak() {
        tracing::warn!(
            event = "weak_password_hash",
            user = %name.escape_debug(),
            scheme,
            "weak legacy hash; replaced with argon2id at the user's next login"
        );
    }
    let legacy = users.legacy_count();
    if legacy > 0 {
        tracing::info!(users = legacy, "hashes to upgrade to the configured argon2id cost at their next login");
    }
}

/// The keys whose change a commit cannot apply to a running server (its
/// listeners, connection limits and hash pool are built once): compared
/// with the configuration it started with, so that every commit repeats
/// what still waits for a restart.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &'static str| {
        if changed {
            keys.push(key);
        }
    };
    check(old.listen != new.listen, "server.listen");
    check(old.admin_listen != new.admin_listen, "server.admin_listen");
    check(old.tls != new.tls, "server.tls");
    check(old.max_connections != new.max_connections, "server.max_connections");
    check(old.max_header_bytes != new.max_header_bytes, "server.max_header_bytes");
    check(old.header_read_timeout != new.header_read_timeout, "server.header_read_timeout");
    check(old.hash_workers != new.hash_workers, "hash_pool.workers");
    check(old.hash_queue != new.hash_queue, "hash_pool.queue");
    let (was, is) = (old.hash_priority, new.hash_priority);
    check(matches!((was, is), (HashPriority::Nice(a), HashPriority::Nice(b)) if a != b), "hash_pool.nice");
    check(std::mem::discriminant(&was) != std::mem::discriminant(&is), "hash_pool.policy");
    check(old.token_store != new.token_store, "token_store");
    keys
}

fn build_metadata(engine: &Engine, config: &Config, issuer: &str, jwks: bool) -> Vec<u8> {
    let caps = engine.clients.capabilities();
    let grant_types: Vec<&str> =
        Capabilities::NAMES.iter().filter(|(_, c)| caps.contains(*c)).map(|(n, _)| *n).collect();
    let scopes: Vec<&str> = engine.scopes.names().collect();
    let token_endpoint = format!("{issuer}{}", config.endpoints.token);
    let revocation_endpoint = format!("{issuer}{}", config.endpoints.revocation);
    let introspection_endpoint = format!("{issuer}{}", config.endpoints.introspection);
    let jwks_uri = format!("{issuer}{}", config.endpoints.jwks);
    let mut out = Vec::new();
    response::write_metadata(
        &mut out,
        &Metadata {
            issuer,
            token_endpoint: &token_endpoint,
            revocation_endpoint: Some(&revocation_endpoint),
            introspection_endpoint: Some(&introspection_endpoint),
            jwks_uri: jwks.then_some(jwks_uri.as_str()),
            grant_types: &grant_types,
            scopes: &scopes,
        },
    );
    out
}

/// Starts the thread that writes upgraded hashes to the users file: it
/// takes what is queued, applies it in one locked atomic rewrite, and
/// waits for more. Ends when the app (the sender) is dropped.
fn spawn_users_writer(path: std::path::PathBuf) -> std::io::Result<crossbeam_channel::Sender<Replacement>> {
    let (tx, rx) = crossbeam_channel::bounded::<Replacement>(4096);
    std::thread::Builder::new().name("ropc-users-file".into()).spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter().take(4095));
            match crate::users_file::replace_hashes(&path, &batch) {
                Ok(n) => tracing::info!(written = n, queued = batch.len(), "users file updated with upgraded hashes"),
                Err(e) => tracing::error!(error = %e, "cannot write upgraded hashes to the users file"),
            }
        }
    })?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn buffered_random_hands_out_each_byte_once_and_wipes_it() {
        let random = BufferedRandom::default();
        let mut seen = HashSet::new();
        // Several refills' worth of 32-byte draws, crossing buffer ends.
        for _ in 0..(3 * RANDOM_BUFFER / 32 + 7) {
            let mut token = [0u8; 32];
            random.fill(&mut token).unwrap();
            assert!(seen.insert(token), "a draw repeated");
            RANDOM.with(|cell| {
                let buf = cell.borrow();
                assert!(buf.bytes[..buf.next].iter().all(|b| *b == 0), "used bytes are zeroed");
            });
        }
        // Odd sizes that do not divide the buffer.
        for len in [1, 7, 8, 33, RANDOM_BUFFER / 4] {
            let mut a = vec![0u8; len];
            let mut b = vec![0u8; len];
            random.fill(&mut a).unwrap();
            random.fill(&mut b).unwrap();
            assert!(len < 8 || a != b);
        }
        // A draw larger than a quarter buffer goes straight to the OS.
        let mut big = vec![0u8; RANDOM_BUFFER];
        random.fill(&mut big).unwrap();
        assert!(big.iter().any(|b| *b != 0));
    }
}
