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

/// A rustls server configuration from PEM files; with `client_ca`, the
/// handshake asks for a client certificate (RFC 8705 §2) without
/// requiring one.
pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Arc<ClientCa>>) -> Result<Arc<ServerConfig>, String> {
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
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(Arc::new(AskForCertificate(Arc::clone(ca)))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `[server] client_ca_file`: the CA whose certificates `tls_client_auth`
/// accepts (RFC 8705 §2.1), and the verifier that checks a chain against it.
#[derive(Debug)]
pub struct ClientCa {
    webpki: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

/// Reads the CA certificates in `path` (PEM).
pub fn client_ca(path: &Path) -> Result<Arc<ClientCa>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
        let cert = cert.map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
        roots.add(cert).map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Arc::new(ClientCa { webpki }))
}

impl ClientCa {
    /// Whether `chain` (end entity first) is issued by the CA and valid now.
    pub fn verifies(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((end_entity, intermediates)) = chain.split_first() else { return false };
        self.webpki.verify_client_cert(end_entity, intermediates, rustls::pki_types::UnixTime::now()).is_ok()
    }
}

/// The handshake's client certificate policy: ask for one (naming the CA),
/// require none, and accept any that its holder proves the key of. Whether
/// it chains to the CA is decided per connection ([`ClientCa::verifies`]),
/// since `self_signed_tls_client_auth` clients (RFC 8705 §2.2) present
/// certificates no CA issued; only the client's configured method says
/// which kind it must be.
#[derive(Debug)]
struct AskForCertificate(Arc<ClientCa>);

impl rustls::server::danger::ClientCertVerifier for AskForCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.webpki.supported_verify_schemes()
    }
}

/// The certificate a TLS client presented, as client authentication and
/// token binding need it. `Debug` shows only the thumbprint.
pub struct PeerCertificate {
    der: Vec<u8>,
    /// SHA-256 of the DER: `cnf.x5t#S256` (RFC 8705 §3.1).
    pub thumbprint: [u8; 32],
    /// Whether it chains to `[server] client_ca_file` (checked at the
    /// handshake).
    pub ca_verified: bool,
    /// Its validity, seconds since the epoch: checked at every request,
    /// since a keep-alive connection can outlive the certificate.
    not_before: i64,
    not_after: i64,
    /// The subject DN, read once at the handshake (see [`subject_of`]).
    subject: Option<String>,
}

impl std::fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PeerCertificate({:02x}{:02x}.., ca_verified: {})",
            self.thumbprint[0], self.thumbprint[1], self.ca_verified
        )
    }
}

impl PeerCertificate {
    /// The presented chain's end entity, checked against `ca`.
    pub fn new(chain: &[CertificateDer<'_>], ca: &ClientCa) -> Option<Self> {
        let der = chain.first()?.as_ref().to_vec();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        let validity = cert.validity();
        let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
        let subject = subject_of(&cert);
        let digest = ring::digest::digest(&ring::digest::SHA256, &der);
        let mut thumbprint = [0u8; 32];
        thumbprint.copy_from_slice(digest.as_ref());
        Some(PeerCertificate { thumbprint, ca_verified: ca.verifies(chain), not_before, not_after, subject, der })
    }

    /// Whether it is valid at `now` (seconds since the epoch).
    pub fn valid_at(&self, now: u64) -> bool {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        self.not_before <= now && now < self.not_after
    }

    /// The subject DN in the form [`normalise_dn`] gives a configured one;
    /// `None` if an attribute's value is not a string.
    pub fn subject_dn(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Whether the certificate's public key is one of `jwks`
    /// (`self_signed_tls_client_auth`, RFC 8705 §2.2).
    pub fn key_in(&self, jwks: &crate::jose::Jwks) -> bool {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&self.der) else { return false };
        jwks.keys().iter().any(|k| k.matches_spki(cert.public_key()))
    }
}

/// A certificate's subject DN as [`normalise_dn`] writes one; `None` if an
/// attribute's value is not a string.
fn subject_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        let mut avas = Vec::new();
        for ava in rdn.iter() {
            let kind = x509_parser::objects::oid2abbrev(ava.attr_type(), registry)
                .map(str::to_owned)
                .unwrap_or_else(|_| ava.attr_type().to_id_string());
            avas.push((kind, ava.as_str().ok()?.to_owned()));
        }
        rdns.push(avas);
    }
    // RFC 4514 §2.1: the last RDN of the encoding is written first.
    rdns.reverse();
    Some(canonical_dn(&rdns))
}

/// One attribute of a DN: its type and its value, unescaped.
type Ava = (String, String);

/// A distinguished name as it is compared (RFC 8705 §2.1.2 asks for RFC
/// 4517's distinguishedNameMatch): RFC 4514's string form, attribute types
/// upper-cased, each value compared as caseIgnoreMatch does (lower-cased,
/// leading, trailing and repeated spaces insignificant) and escaped again as
/// RFC 4514 §2.4 says. `None` if `dn` is not an RFC 4514 string. Escapes of
/// both kinds are read, so `openssl x509 -subject -nameopt RFC2253` output
/// (`\C3\BC` for ü) matches the certificate.
pub fn normalise_dn(dn: &str) -> Option<String> {
    parse_dn(dn).map(|rdns| canonical_dn(&rdns))
}

fn canonical_dn(rdns: &[Vec<Ava>]) -> String {
    let mut out = String::new();
    for (i, rdn) in rdns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, (kind, value)) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(&kind.trim().to_uppercase());
            out.push('=');
            let folded = value.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            for (k, c) in folded.chars().enumerate() {
                if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || (k == 0 && c == '#') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// RFC 4514 §3: `type=value` pairs, `+` within an RDN, `,` between RDNs;
/// a value's `\c` and `\XX` escapes undone.
fn parse_dn(dn: &str) -> Option<Vec<Vec<Ava>>> {
    let mut rdns = vec![Vec::new()];
    let mut bytes = dn.bytes().peekable();
    loop {
        let mut kind = Vec::new();
        loop {
            match bytes.next()? {
                b'=' => break,
                b',' | b'+' | b'\\' => return None,
                b => kind.push(b),
            }
        }
        let mut value = Vec::new();
        let end = loop {
            match bytes.next() {
                None => break None,
                Some(sep @ (b',' | b'+')) => break Some(sep),
                Some(b'\\') => {
                    let c = bytes.next()?;
                    match (char::from(c).to_digit(16), bytes.peek().and_then(|&d| char::from(d).to_digit(16))) {
                        (Some(hi), Some(lo)) => {
                            bytes.next();
                            value.push((hi * 16 + lo) as u8);
                        }
                        _ => value.push(c),
                    }
                }
                Some(b) => value.push(b),
            }
        };
        let kind = String::from_utf8(kind).ok()?;
        if kind.trim().is_empty() {
            return None;
        }
        rdns.last_mut()?.push((kind, String::from_utf8(value).ok()?));
        match end {
            None => return Some(rdns),
            Some(b',') => rdns.push(Vec::new()),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalise_dn;

    #[test]
    fn distinguished_names_compare_as_distinguished_name_match_does() {
        let n = |dn| normalise_dn(dn).unwrap();
        assert_eq!(n("cn = batch , o=Example"), "CN=batch,O=example");
        assert_eq!(n("CN=Batch,O=Example"), n("cn=batch,o=EXAMPLE"), "caseIgnoreMatch");
        assert_eq!(n("CN=a  b,O=x"), n("CN= a b ,O=x"), "insignificant spaces");
        assert_eq!(n("CN=a\\,b,O=x+ou=y"), "CN=a\\,b,O=x+OU=y");
        assert_eq!(n("CN=a=b"), "CN=a=b", "= needs no escape");
        assert_eq!(n("CN=J\\C3\\BCrg,O=x"), n("CN=Jürg,O=x"), "openssl's escaped UTF-8");
        assert_ne!(n("CN=batch,O=Example"), n("O=Example,CN=batch"), "the order counts");
        assert_ne!(n("CN=a\\,b"), n("CN=a,CN=b"));
        for bad in ["", "batch", "CN", "=x", "CN=a,=b", "CN=a\\", "CN=\\FF"] {
            assert_eq!(normalise_dn(bad), None, "{bad:?}");
        }
    }
}
