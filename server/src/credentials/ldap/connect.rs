//! Opening a connection: the URLs in order, each bounded by
//! `connect_timeout` (TCP, StartTLS and the TLS handshake together), TLS
//! verified against `ca_file` or the system's roots.
//!
//! Failover: each new connection tries the URLs in the configured order,
//! but a URL that failed to connect in the last [`URL_RETRY`] goes after
//! the others (and is still tried when all have failed), so a dead first
//! server does not cost every new connection its `connect_timeout`, and
//! the first server gets the new connections again once it is back.
//! Connections already open stay where they are.

use crate::credentials::LdapConfig;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use parking_lot::Mutex;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a URL that failed to connect goes last.
pub const URL_RETRY: Duration = Duration::from_secs(30);

/// An open connection: the handle, and the task that drives it (which
/// ends when the directory closes the connection).
pub struct Conn {
    /// The handle operations go through.
    pub ldap: Ldap,
    driver: tokio::task::JoinHandle<()>,
    /// Taken from a pool (it may have been dropped by the directory since).
    pub reused: bool,
}

impl Conn {
    fn new(ldap: Ldap, driver: tokio::task::JoinHandle<()>) -> Self {
        Self { ldap, driver, reused: false }
    }

    /// The directory closed it (or it broke).
    pub fn closed(&self) -> bool {
        self.driver.is_finished()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Opens connections to the directory.
pub struct Connector {
    urls: Vec<String>,
    settings: LdapConnSettings,
    /// Per URL: until when it goes last.
    failed_until: Mutex<Vec<Option<Instant>>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("urls", &self.urls).finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector for `config`; reads `ca_file` (or the system's roots)
    /// now if any URL needs TLS.
    pub fn new(config: &LdapConfig) -> Result<Self, String> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(config.connect_timeout);
        let tls = config.start_tls || config.urls.iter().any(|u| u.starts_with("ldaps://"));
        if tls {
            settings = settings.set_config(tls_config(config.ca_file.as_deref())?).set_starttls(config.start_tls);
        }
        Ok(Self { urls: config.urls.clone(), settings, failed_until: Mutex::new(vec![None; config.urls.len()]) })
    }

    /// The order to try the URLs in now: those that have not failed
    /// lately, then those that have, each in the configured order.
    fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let failed = self.failed_until.lock();
        let recent = |i: &usize| failed[*i].is_some_and(|until| until > now);
        let (mut first, last): (Vec<usize>, Vec<usize>) = (0..self.urls.len()).partition(|i| !recent(i));
        first.extend(last);
        first
    }

    /// A new connection, anonymous, to the first URL that answers.
    pub async fn connect(&self) -> Result<Conn, String> {
        let mut errors = Vec::new();
        for i in self.order() {
            let url = &self.urls[i];
            match LdapConnAsync::with_settings(self.settings.clone(), url).await {
                Ok((conn, ldap)) => {
                    self.failed_until.lock()[i] = None;
                    if !errors.is_empty() {
                        tracing::warn!(url = %url, failed = %errors.join("; "), "LDAP failover: connected to a later URL");
                    }
                    let driver = tokio::spawn(async move {
                        if let Err(e) = conn.drive().await {
                            tracing::debug!(error = %e, "an LDAP connection ended");
                        }
                    });
                    return Ok(Conn::new(ldap, driver));
                }
                Err(e) => {
                    self.failed_until.lock()[i] = Some(Instant::now() + URL_RETRY);
                    errors.push(format!("{url}: {e}"));
                }
            }
        }
        Err(format!("cannot connect: {}", errors.join("; ")))
    }
}

/// TLS that trusts the CAs in `ca_file`, or (none) the system's roots.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no PEM certificate in the CA file", path.display()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!(error = %e, "reading the system's CA certificates");
            }
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err("no CA certificates on this system: set ca_file".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
