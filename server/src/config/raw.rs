//! The raw shape of the config file as serde reads it: unknown keys are
//! refused, closed sets of words are enums (so a wrong one is refused with
//! the words it could be), and values that need a line number in errors
//! keep their span. Meaning is checked by each section's module.

use ropc_hash::HashParams;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) token_service: RawTokenService,
    #[serde(default)]
    pub(super) credential_manager: RawCredentialManager,
    #[serde(default)]
    pub(super) hash_pool: RawHashPool,
    #[serde(default)]
    pub(super) scopes: Vec<RawScope>,
    #[serde(default)]
    pub(super) clients: Vec<RawClient>,
    #[serde(default)]
    pub(super) jwt: RawJwt,
    #[serde(default)]
    pub(super) token_store: RawTokenStore,
    #[serde(default)]
    pub(super) credential_managers: std::collections::BTreeMap<String, Spanned<RawManager>>,
    #[serde(default)]
    pub(super) client_auth: RawClientAuth,
}

/// `[client_auth]`: the windows client assertions and DPoP proofs are
/// checked in, and the replay cache's bound.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientAuth {
    pub(super) max_assertion_lifetime: Option<Spanned<u64>>,
    pub(super) max_proof_age: Option<Spanned<u64>>,
    pub(super) clock_skew: Option<Spanned<u64>>,
    pub(super) replay_cache_entries: Option<Spanned<u64>>,
}

/// `[credential_managers.NAME]`: the keys of every kind in one table, each
/// checked against `kind` by `managers`, so that an error keeps its line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManager {
    pub(super) kind: Spanned<ManagerKind>,
    pub(super) users_file: Option<Spanned<String>>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) url_file: Option<Spanned<String>>,
    pub(super) query: Option<Spanned<String>>,
    pub(super) update_query: Option<Spanned<String>>,
    pub(super) query_timeout_ms: Option<Spanned<u64>>,
    pub(super) urls: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) start_tls: Option<Spanned<bool>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) bind_dn: Option<Spanned<String>>,
    pub(super) bind_password_file: Option<Spanned<String>>,
    pub(super) base_dn: Option<Spanned<String>>,
    pub(super) user_filter: Option<Spanned<String>>,
    pub(super) user_dn_template: Option<Spanned<String>>,
    pub(super) subject_attribute: Option<Spanned<String>>,
    pub(super) active_directory: Option<Spanned<bool>>,
    pub(super) operation_timeout_ms: Option<Spanned<u64>>,
    pub(super) max_connections: Option<Spanned<u64>>,
    pub(super) connect_timeout_ms: Option<Spanned<u64>>,
    pub(super) account_cache_ttl: Option<Spanned<u64>>,
}

/// `[credential_managers.NAME] kind`.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum ManagerKind {
    File,
    Sql,
    Ldap,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenStore {
    pub(super) kind: Option<Spanned<StoreKind>>,
    pub(super) durable: Option<bool>,
    pub(super) file: Option<String>,
    pub(super) sync_interval_ms: Option<Spanned<u64>>,
    pub(super) url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) cluster_nodes: Vec<Spanned<String>>,
    pub(super) prefix: Option<Spanned<String>>,
    pub(super) connect_timeout_ms: Option<Spanned<u64>>,
    pub(super) command_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    #[serde(default)]
    pub(super) algorithm: JwtAlgorithm,
    pub(super) signing_key: Option<String>,
    #[serde(default)]
    pub(super) previous_keys: Vec<String>,
    pub(super) keys_dir: Option<String>,
    pub(super) audience: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    #[serde(default = "default_listen")]
    pub(super) listen: Spanned<String>,
    pub(super) admin_listen: Option<Spanned<String>>,
    pub(super) admin_socket: Option<Spanned<String>>,
    pub(super) tls: Option<Spanned<RawTls>>,
    pub(super) client_ca_file: Option<Spanned<String>>,
    #[serde(default = "default_max_body")]
    pub(super) max_body_bytes: Spanned<u64>,
    #[serde(default = "default_header_timeout")]
    pub(super) header_read_timeout: Spanned<u64>,
    #[serde(default = "default_idle_timeout")]
    pub(super) idle_timeout: Spanned<u64>,
    #[serde(default = "default_max_header_bytes")]
    pub(super) max_header_bytes: Spanned<u64>,
    #[serde(default = "default_max_connections")]
    pub(super) max_connections: Spanned<u64>,
    #[serde(default = "default_shutdown_delay")]
    pub(super) shutdown_delay: Spanned<u64>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_listen: None,
            admin_socket: None,
            tls: None,
            client_ca_file: None,
            max_body_bytes: default_max_body(),
            header_read_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_connections: default_max_connections(),
            shutdown_delay: default_shutdown_delay(),
        }
    }
}

pub(super) fn default_idle_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}
pub(super) fn default_max_header_bytes() -> Spanned<u64> {
    Spanned::new(0..0, 16 * 1024)
}
pub(super) fn default_shutdown_delay() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}
pub(super) fn default_max_connections() -> Spanned<u64> {
    Spanned::new(0..0, 10_000)
}

pub(super) fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:8443".into())
}
pub(super) fn default_max_body() -> Spanned<u64> {
    Spanned::new(0..0, 8192)
}
pub(super) fn default_header_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenService {
    #[serde(default = "default_token_endpoint")]
    pub(super) token_endpoint: Spanned<String>,
    #[serde(default = "default_revocation_endpoint")]
    pub(super) revocation_endpoint: Spanned<String>,
    #[serde(default = "default_introspection_endpoint")]
    pub(super) introspection_endpoint: Spanned<String>,
    #[serde(default = "default_jwks_endpoint")]
    pub(super) jwks_endpoint: Spanned<String>,
    pub(super) issuer: Option<Spanned<String>>,
    #[serde(default = "default_access_ttl")]
    pub(super) access_token_ttl: Spanned<u64>,
    #[serde(default = "default_refresh_ttl")]
    pub(super) refresh_token_ttl: Spanned<u64>,
    #[serde(default = "default_true")]
    pub(super) detailed_errors: bool,
    #[serde(default = "default_true")]
    pub(super) rotate_refresh_tokens: bool,
    #[serde(default = "default_zero")]
    pub(super) refresh_reuse_grace: Spanned<u64>,
}

impl Default for RawTokenService {
    fn default() -> Self {
        Self {
            token_endpoint: default_token_endpoint(),
            revocation_endpoint: default_revocation_endpoint(),
            introspection_endpoint: default_introspection_endpoint(),
            jwks_endpoint: default_jwks_endpoint(),
            issuer: None,
            access_token_ttl: default_access_ttl(),
            refresh_token_ttl: default_refresh_ttl(),
            detailed_errors: true,
            rotate_refresh_tokens: true,
            refresh_reuse_grace: default_zero(),
        }
    }
}

pub(super) fn default_token_endpoint() -> Spanned<String> {
    Spanned::new(0..0, "/oauth/v2/oauth-token".into())
}
pub(super) fn default_revocation_endpoint() -> Spanned<String> {
    Spanned::new(0..0, "/oauth/v2/oauth-revoke".into())
}
pub(super) fn default_introspection_endpoint() -> Spanned<String> {
    Spanned::new(0..0, "/oauth/v2/oauth-introspect".into())
}
pub(super) fn default_jwks_endpoint() -> Spanned<String> {
    Spanned::new(0..0, "/oauth/v2/oauth-jwks".into())
}
pub(super) fn default_access_ttl() -> Spanned<u64> {
    Spanned::new(0..0, 300)
}
pub(super) fn default_refresh_ttl() -> Spanned<u64> {
    Spanned::new(0..0, 86_400)
}
pub(super) fn default_zero() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}
pub(super) fn default_true() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredentialManager {
    pub(super) users_file: Option<Spanned<String>>,
    pub(super) argon2: Option<Spanned<RawArgon2>>,
    pub(super) lockout: Option<Spanned<RawLockout>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLockout {
    pub(super) max_failures: Option<u32>,
    pub(super) window: Option<u64>,
    pub(super) lock_time: Option<u64>,
    pub(super) max_lock_time: Option<u64>,
    pub(super) ip_max_failures: Option<u32>,
    pub(super) trusted_ip_days: Option<u64>,
    pub(super) max_tracked: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArgon2 {
    #[serde(default = "default_m_cost")]
    pub(super) m_cost: u32,
    #[serde(default = "default_t_cost")]
    pub(super) t_cost: u32,
    #[serde(default = "default_p_cost")]
    pub(super) p_cost: u32,
}

pub(super) fn default_m_cost() -> u32 {
    HashParams::default().m_cost
}
pub(super) fn default_t_cost() -> u32 {
    HashParams::default().t_cost
}
pub(super) fn default_p_cost() -> u32 {
    HashParams::default().p_cost
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHashPool {
    #[serde(default)]
    pub(super) workers: usize,
    #[serde(default)]
    pub(super) queue: usize,
    pub(super) nice: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) policy: HashPolicy,
    pub(super) max_queue_wait_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScope {
    pub(super) name: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) id: Spanned<String>,
    pub(super) secret: Option<Spanned<String>>,
    pub(super) token_endpoint_auth_method: Option<Spanned<AuthMethod>>,
    pub(super) jwks_file: Option<Spanned<String>>,
    pub(super) client_secret_jwt_key_file: Option<Spanned<String>>,
    pub(super) tls_client_auth_subject_dn: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) certificate_bound_access_tokens: bool,
    #[serde(default)]
    pub(super) dpop_bound_access_tokens: bool,
    pub(super) capabilities: Vec<Capability>,
    #[serde(default)]
    pub(super) scopes: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) default_scopes: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) access_token_format: AccessTokenFormat,
    pub(super) credential_manager: Option<Spanned<String>>,
}

/// `[token_store] kind`.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum StoreKind {
    #[default]
    Memory,
    Redis,
}

/// `[jwt] algorithm`.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum JwtAlgorithm {
    #[default]
    EdDSA,
    ES256,
}

/// `[hash_pool] policy`.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HashPolicy {
    /// The normal scheduling policy, at `nice`.
    #[default]
    Normal,
    /// `SCHED_IDLE`.
    Idle,
}

/// `[[clients]] capabilities`.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum Capability {
    Password,
    RefreshToken,
    ClientCredentials,
}

/// `[[clients]] token_endpoint_auth_method`: the names of RFC 7591 §2 and
/// OpenID Connect Core §9.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// The secret by HTTP Basic.
    ClientSecretBasic,
    /// The secret in the body.
    ClientSecretPost,
    /// An HS256 assertion with a shared key.
    ClientSecretJwt,
    /// An assertion signed by a key in the client's `jwks_file`.
    PrivateKeyJwt,
    /// A TLS certificate from the configured CA with a given subject.
    TlsClientAuth,
    /// A TLS certificate whose key is in the client's `jwks_file`.
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    /// The method's name, as metadata lists it.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }
}

/// `[[clients]] access_token_format`.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum AccessTokenFormat {
    #[default]
    Opaque,
    Jwt,
}

/// `[server] tls`: `"self-signed"`, `"off"`, or `{ cert = "…", key = "…" }`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RawTls {
    SelfSigned,
    Off,
    Files { cert: String, key: String },
}

const TLS_EXPECTED: &str = "\"self-signed\", \"off\" or { cert = \"cert.pem\", key = \"key.pem\" }";

impl<'de> Deserialize<'de> for RawTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Tls;
        impl<'de> Visitor<'de> for Tls {
            type Value = RawTls;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(TLS_EXPECTED)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTls, E> {
                match v {
                    "self-signed" => Ok(RawTls::SelfSigned),
                    "off" => Ok(RawTls::Off),
                    other => Err(E::custom(format!("unknown TLS mode {other:?}: expected {TLS_EXPECTED}"))),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTls, A::Error> {
                let (mut cert, mut key) = (None, None);
                while let Some(name) = map.next_key::<String>()? {
                    match name.as_str() {
                        "cert" => cert = Some(map.next_value::<String>()?),
                        "key" => key = Some(map.next_value::<String>()?),
                        other => {
                            return Err(de::Error::custom(format!("unknown key `{other}`: expected {TLS_EXPECTED}")))
                        }
                    }
                }
                match (cert, key) {
                    (Some(cert), Some(key)) => Ok(RawTls::Files { cert, key }),
                    _ => Err(de::Error::custom(format!("both cert and key are needed: expected {TLS_EXPECTED}"))),
                }
            }
        }
        d.deserialize_any(Tls)
    }
}
