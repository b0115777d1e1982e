//! One generation of the configuration: everything read from the config
//! file and the users file, validated, and swapped in whole by a config
//! commit. A request takes the generation current when it starts and
//! finishes on it, so that a commit never changes the rules halfway
//! through one.

use crate::config::{ClientAuthPolicy, Config, JwtKeySource};
use crate::credentials::{Accounts, ClientSecrets, Managers, ManagersError, NamedManager, UserStore};
use crate::jwt::JwtKeys;
use crate::source::SourceError;
use crate::store::{Names, Owner};
use crate::users_file::Replacement;
use arc_swap::ArcSwap;
use ropc_core::response::{self, Metadata};
use ropc_core::scope::ScopeRegistry;
use ropc_core::{Capabilities, ClientIndex, Engine, GrantType, UserRef};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why a generation could not be built: nothing changes, and the error
/// says what to fix.
#[derive(Debug)]
pub enum BuildError {
    /// The config file or the users file is wrong.
    Source(SourceError),
    /// The system random source failed.
    Random,
    /// The JWT signing keys could not be loaded or made.
    JwtKeys(String),
    /// A thread (the users-file writer) could not start.
    Thread(std::io::Error),
    /// A named credential manager.
    Managers(ManagersError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Source(e) => e.fmt(f),
            BuildError::Random => f.write_str("the system random source failed"),
            BuildError::JwtKeys(e) => f.write_str(e),
            BuildError::Thread(e) => write!(f, "cannot start a thread: {e}"),
            BuildError::Managers(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<SourceError> for BuildError {
    fn from(e: SourceError) -> Self {
        BuildError::Source(e)
    }
}

/// One generation of the configuration.
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
    /// The token, revocation and introspection endpoints' absolute URLs
    /// (DPoP's `htu`, an assertion's `aud`), made once per generation so
    /// that no request allocates them.
    pub endpoint_urls: [String; 3],
    /// JWT signing keys, when a client uses JWT access tokens.
    pub jwt: Option<JwtKeys>,
    /// Where upgraded hashes go to be written to the users file (none
    /// without a users file).
    pub upgrades: Option<crossbeam_channel::Sender<Replacement>>,
    /// `[credential_managers.NAME]`, and their accounts.
    pub managers: Managers,
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
    ) -> Result<Self, BuildError> {
        let users = match (&config.users_file, previous) {
            (Some(path), Some(p)) => UserStore::load_after(path, config.argon2, &p.users),
            (Some(path), None) => UserStore::load(path, config.argon2),
            (None, p) => {
                UserStore::parse_after(std::path::Path::new("(none)"), "", config.argon2, p.map(|p| &*p.users))
            }
        }?;
        let client_secrets = match previous {
            Some(p) => ClientSecrets::after(config.client_secrets.clone(), &p.client_secrets),
            None => ClientSecrets::new(config.client_secrets.clone()).map_err(|_| BuildError::Random)?,
        };
        let issuer = if config.issuer.is_some() { config.issuer(bound_port) } else { boot.issuer(bound_port) };
        let engine = Arc::clone(&config.engine);
        let jwt = if config.jwt.in_use {
            let keys = match &config.jwt.keys {
                JwtKeySource::Managed(dir) => {
                    JwtKeys::managed(dir, config.jwt.algorithm, engine.config.access_token_ttl)
                }
                JwtKeySource::Files { signing_key, previous_keys } => JwtKeys::from_files(signing_key, previous_keys),
            };
            Some(keys.map_err(BuildError::JwtKeys)?)
        } else {
            None
        };
        let metadata = build_metadata(&engine, &config, &issuer, jwt.is_some(), boot.client_ca_file.is_some());
        let managers = if config.managers.is_empty() && previous.is_none_or(|p| p.managers.iter().next().is_none()) {
            Managers::build(&config.managers, config.argon2, previous.map(|p| &p.managers), std::time::Duration::ZERO)
        } else {
            Managers::build(&config.managers, config.argon2, previous.map(|p| &p.managers), users.time_dummy())
        }
        .map_err(BuildError::Managers)?;
        // One writer per users file: a commit that keeps the file keeps the
        // writer (and what is queued on it).
        let upgrades = match (&config.users_file, previous) {
            (Some(path), Some(p)) if p.config.users_file.as_ref() == Some(path) => p.upgrades.clone(),
            (Some(path), _) => Some(crate::users_file::spawn_writer(path.clone()).map_err(BuildError::Thread)?),
            (None, _) => None,
        };
        Ok(Self {
            generation,
            engine,
            users: Arc::new(users),
            client_secrets,
            endpoint_urls: [&config.endpoints.token, &config.endpoints.revocation, &config.endpoints.introspection]
                .map(|path| format!("{issuer}{path}")),
            issuer,
            metadata,
            jwt,
            upgrades,
            managers,
            config,
        })
    }

    /// How client `client` authenticates (the default policy for a retired
    /// slot).
    pub fn client_auth(&self, client: ropc_core::ClientIndex) -> Arc<ClientAuthPolicy> {
        self.config.client_auth.get(client.0 as usize).cloned().flatten().unwrap_or_default()
    }

    /// The token endpoint's absolute URL: DPoP's `htu` and an assertion's
    /// `aud` (RFC 7523 §3).
    pub fn token_endpoint_url(&self) -> &str {
        &self.endpoint_urls[0]
    }

    /// The named manager `client` logs its users in with (none: the
    /// default users file).
    pub fn manager_of(&self, client: ropc_core::ClientIndex) -> Option<&Arc<NamedManager>> {
        let name = self.config.client_managers.get(client.0 as usize)?.as_deref()?;
        self.managers.get(name)
    }

    /// The accounts of the named managers.
    pub fn accounts(&self) -> &Arc<Accounts> {
        self.managers.accounts()
    }
}

impl Names for Live {
    fn client_id(&self, client: ClientIndex) -> Option<&str> {
        self.engine.clients.get(client).map(|c| c.id.as_str())
    }

    fn client(&self, id: &str) -> Option<ClientIndex> {
        self.engine.clients.find(id)
    }

    fn owner(&self, user: UserRef) -> Option<Owner> {
        if !Accounts::is_interned(user) {
            return self.users.name(user).map(|n| Owner::named(n));
        }
        let account = self.accounts().get(user)?;
        // A manager removed by a commit takes its users' tokens with it.
        self.managers.get(&account.manager)?;
        Some(Owner {
            manager: Some(Arc::clone(&account.manager)),
            username: Arc::clone(&account.username),
            subject: Some(account.subject()),
            hash: account.hash_fingerprint(),
        })
    }

    fn user(&self, owner: &Owner) -> Option<UserRef> {
        let Some(manager) = &owner.manager else { return self.users.find(&owner.username) };
        self.managers.get(manager)?;
        let (user, account) = self.accounts().intern(manager, &owner.username, owner.subject(), crate::clock::now())?;
        if let Some(hash) = owner.hash {
            account.seed_hash(hash);
        }
        Some(user)
    }

    fn scopes(&self) -> &ScopeRegistry {
        &self.engine.scopes
    }
}

/// What a config commit changed, for the log and the caller.
#[derive(Debug)]
pub struct Committed {
    /// The new generation.
    pub generation: u64,
    /// Client ids added.
    pub clients_added: Vec<String>,
    /// Client ids removed: their tokens stop working.
    pub clients_removed: Vec<String>,
    /// Users in the new users file.
    pub users: usize,
    /// Users removed: their tokens stop working.
    pub users_removed: usize,
    /// Users of the default users file whose password changed in it (not
    /// by ropc's own upgrade): their earlier grants end.
    pub users_changed: Vec<UserRef>,
    /// Keys whose new values wait for a restart.
    pub restart_needed: Vec<&'static str>,
}

/// The generation in force, the configuration the server started with, and
/// commits.
#[derive(Debug)]
pub struct LiveConfig {
    current: Arc<ArcSwap<Live>>,
    /// The port actually listened on (for the derived issuer).
    bound_port: Option<u16>,
    /// The configuration the server started with: its listeners, limits
    /// and hash pool stay in force until a restart.
    boot: Config,
    /// One commit at a time.
    committing: parking_lot::Mutex<()>,
    /// Commits refused since the start.
    refused: AtomicU64,
}

impl LiveConfig {
    /// The first generation, from `config`. `bound_port` is the port
    /// actually listened on.
    pub fn start(config: Config, bound_port: Option<u16>) -> Result<Self, BuildError> {
        let boot = config.clone();
        let live = Live::build(config, &boot, bound_port, None, 1)?;
        warn_weak_hashes(&live.users);
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(live)),
            bound_port,
            boot,
            committing: parking_lot::Mutex::new(()),
            refused: AtomicU64::new(0),
        })
    }

    /// The generation in force now. A request holds on to it until it
    /// ends.
    pub fn load(&self) -> Arc<Live> {
        self.current.load_full()
    }

    /// The names of the generation in force whenever it is called (for a
    /// compaction of the token log, which may run across commits).
    pub fn names(&self) -> Arc<dyn Fn() -> Arc<dyn Names> + Send + Sync> {
        let current = Arc::clone(&self.current);
        Arc::new(move || current.load_full() as Arc<dyn Names>)
    }

    /// The configuration the server started with (listeners, connection
    /// limits and timeouts, hash pool: what a commit cannot change).
    pub fn boot(&self) -> &Config {
        &self.boot
    }

    /// Config commits refused since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Re-reads the config file this server started from and its users
    /// file, validates all of it, and swaps it in at once (a config
    /// commit); `apply` puts the new generation's settings into the parts
    /// that keep their own (the lockout policy) just before. Requests
    /// already running finish on the old generation. On any error nothing
    /// changes: the old configuration keeps serving, and the error names
    /// the file, key and line.
    ///
    /// Blocking (reads files, hashes a dummy password): call it off the
    /// async workers.
    pub fn commit(&self, apply: impl FnOnce(&Live)) -> Result<Committed, BuildError> {
        let _one_at_a_time = self.committing.lock();
        let result = self.try_commit(apply);
        match &result {
            Ok(c) => tracing::info!(
                event = "config_commit",
                generation = c.generation,
                clients_added = ?c.clients_added,
                clients_removed = ?c.clients_removed,
                users = c.users,
                users_removed = c.users_removed,
                passwords_changed = c.users_changed.len(),
                restart_needed = ?c.restart_needed,
                "configuration committed"
            ),
            Err(e) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(event = "config_rejected", error = %e, "configuration not committed; the previous one keeps serving");
            }
        }
        result
    }

    fn try_commit(&self, apply: impl FnOnce(&Live)) -> Result<Committed, BuildError> {
        let old = self.load();
        let config = Config::load_after(&old.config.file, &old.config)?;
        let restart_needed = restart_only_changes(&self.boot, &config);
        let next = Live::build(config, &self.boot, self.bound_port, Some(&old), old.generation + 1)?;
        let ids = |live: &Live| live.engine.clients.iter().map(|(_, c)| c.id.clone()).collect::<Vec<_>>();
        let (before, after) = (ids(&old), ids(&next));
        let committed = Committed {
            generation: next.generation,
            clients_added: after.iter().filter(|id| !before.contains(id)).cloned().collect(),
            clients_removed: before.iter().filter(|id| !after.contains(id)).cloned().collect(),
            users: next.users.len(),
            users_removed: old.users.names().filter(|n| next.users.find(n).is_none()).count(),
            users_changed: next.users.changed().to_vec(),
            restart_needed,
        };
        warn_weak_hashes(&next.users);
        apply(&next);
        self.current.store(Arc::new(next));
        Ok(committed)
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
    [
        (old.listen != new.listen, "server.listen"),
        (old.admin_listen != new.admin_listen, "server.admin_listen"),
        (old.tls != new.tls, "server.tls"),
        (old.client_ca_file != new.client_ca_file, "server.client_ca_file"),
        (old.max_connections != new.max_connections, "server.max_connections"),
        (old.max_header_bytes != new.max_header_bytes, "server.max_header_bytes"),
        (old.header_read_timeout != new.header_read_timeout, "server.header_read_timeout"),
        (old.hash_pool.workers != new.hash_pool.workers, "hash_pool.workers"),
        (old.hash_pool.queue != new.hash_pool.queue, "hash_pool.queue"),
        (old.hash_pool.max_queue_wait != new.hash_pool.max_queue_wait, "hash_pool.max_queue_wait_ms"),
        // A new nice value matters only under the same (normal) policy.
        (
            old.hash_pool.policy == new.hash_pool.policy && old.hash_pool.priority() != new.hash_pool.priority(),
            "hash_pool.nice",
        ),
        (old.hash_pool.policy != new.hash_pool.policy, "hash_pool.policy"),
        (old.token_store != new.token_store, "token_store"),
        // The replay cache's entries were kept for the windows in force.
        (
            old.proof_limits.max_assertion_lifetime != new.proof_limits.max_assertion_lifetime,
            "client_auth.max_assertion_lifetime",
        ),
        (old.proof_limits.max_proof_age != new.proof_limits.max_proof_age, "client_auth.max_proof_age"),
        (old.proof_limits.clock_skew != new.proof_limits.clock_skew, "client_auth.clock_skew"),
        (
            old.proof_limits.replay_cache_entries != new.proof_limits.replay_cache_entries,
            "client_auth.replay_cache_entries",
        ),
    ]
    .into_iter()
    .filter_map(|(changed, key)| changed.then_some(key))
    .collect()
}

/// `tls`: whether the listeners (built at start) ask for client certificates.
fn build_metadata(engine: &Engine, config: &Config, issuer: &str, jwks: bool, tls: bool) -> Vec<u8> {
    let caps = engine.clients.capabilities();
    let grant_types: Vec<&str> =
        GrantType::ALL.iter().filter(|g| caps.contains(Capabilities::for_grant(**g))).map(|g| g.as_str()).collect();
    let scopes: Vec<&str> = engine.scopes.names().collect();
    let absolute = |path: &str| format!("{issuer}{path}");
    let (token, revocation, introspection, jwks_uri) = (
        absolute(&config.endpoints.token),
        absolute(&config.endpoints.revocation),
        absolute(&config.endpoints.introspection),
        absolute(&config.endpoints.jwks),
    );
    // Every method ropc verifies; the TLS ones only where TLS clients are
    // asked for a certificate.
    let mut auth_methods = vec!["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"];
    if tls {
        auth_methods.extend(["tls_client_auth", "self_signed_tls_client_auth"]);
    }
    let assertion_algs = ["RS256", "PS256", "ES256", "EdDSA", "HS256"];
    let dpop_algs = ["ES256", "RS256", "PS256", "EdDSA"];
    let mut out = Vec::new();
    response::write_metadata(
        &mut out,
        &Metadata {
            issuer,
            token_endpoint: &token,
            revocation_endpoint: Some(&revocation),
            introspection_endpoint: Some(&introspection),
            jwks_uri: jwks.then_some(jwks_uri.as_str()),
            grant_types: &grant_types,
            scopes: &scopes,
            auth_methods: &auth_methods,
            assertion_algs: &assertion_algs,
            dpop_algs: &dpop_algs,
            certificate_bound_tokens: tls,
        },
    );
    out
}
