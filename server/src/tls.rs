//! TLS with rustls (ring provider): a self-signed certificate for localhost,
//! generated once and kept, or a real certificate chain and key from PEM
//! files. ALPN offers HTTP/2 and HTTP/1.1.

use crate::fsutil::write_atomic;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a self-signed certificate and key for `dir` live.
pub fn self_signed_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("self-signed-cert.pem"), dir.join("self-signed-key.pem"))
}

/// Loads the self-signed certificate kept in `dir`, generating it (for
/// `localhost`, `127.0.0.1` and `::1`) on first use. Returns the
/// certificate's path, for `curl --cacert`.
pub fn ensure_self_signed(dir: &Path) -> Result<PathBuf, String> {
    let (cert_path, key_path) = self_signed_paths(dir);
    if cert_path.exists() && key_path.exists() {
        return Ok(cert_path);
    }
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot generate a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_atomic(&key_path, generated.key_pair.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
    write_atomic(&cert_path, generated.cert.pem().as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    Ok(cert_path)
}

/// A rustls server configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let open = |p: &Path| File::open(p).map(BufReader::new).map_err(|e| format!("cannot open {}: {e}", p.display()));
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| format!("{}: bad PEM: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key found", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
