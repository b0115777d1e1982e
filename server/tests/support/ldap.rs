//! A private OpenLDAP for the LDAP backend's tests: `Slapd::start` writes a
//! slapd.conf into a temporary directory (mdb, the ppolicy overlay, ACLs that
//! let users bind and the service account search), runs `slapd -d 256` in
//! the foreground on a free loopback port (and an ldaps one, with a CA and
//! certificate made here, when asked), waits until it answers, and loads the
//! users with `ldapadd`. `stop`, `restart` (same ports, same data), `pause`
//! (SIGSTOP) and `resume` make outages; the process is killed on drop.
//!
//! Besides inetOrgPerson users, a few entries have Active Directory's
//! attributes (msuser.schema), for `active_directory = true`.
//!
//! slapd's stats log (`-d 256`) is kept in the directory, so a test can
//! count the binds it received. Needs the Debian packages slapd and
//! ldap-utils: without them the tests fail and say so.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=org";
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
pub const ROOT_PW: &str = "root-secret";
pub const SERVICE_DN: &str = "cn=ropc,ou=services,dc=example,dc=org";
pub const SERVICE_PW: &str = "service-secret";
/// Users under `ou=people`: uid, password, employeeNumber.
pub const USERS: &[(&str, &str, &str)] = &[
    ("alice", "wonderland", "1001"),
    ("bob", "builder", "1002"),
    ("larry", "lobster", "1003"),
    ("josé", "jalapeño", "1004"),
    ("twin1", "gemini", "1005"),
    ("twin2", "gemini", "1006"),
    ("locked", "padlock", "1007"),
];
/// Entries shaped as Active Directory's (msuser.schema): uid, password,
/// userAccountControl, pwdLastSet.
pub const AD_USERS: &[(&str, &str, &str, &str)] = &[
    ("adam", "adam-pw", "512", "0"),
    // ACCOUNTDISABLE, and a password set at 2024-01-01T00:00:00Z.
    ("dee", "dee-pw", "514", "133485408000000000"),
];
/// An entry one level below `ou=people`, that a DN injection would reach:
/// `uid=root,ou=admins,ou=people,dc=example,dc=org`.
pub const ROOT_USER: (&str, &str) = ("root", "toor");

/// What the directory allows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `allow bind_anon_dn`: a DN with an empty password binds (as
    /// anonymous) instead of failing.
    pub bind_anon_dn: bool,
    /// What anonymous clients may do with entries.
    pub anonymous: Anonymous,
    /// An ldaps:// listener too, and StartTLS, with a certificate for
    /// 127.0.0.1 from a CA of the test's.
    pub tls: bool,
}

/// What anonymous clients may do with entries (they may always bind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Anonymous {
    /// Read them.
    Read,
    /// Only `auth`, which includes `disclose`: a base read of an entry
    /// that exists gets 50 (insufficientAccessRights), of one that does
    /// not 32 with its parent as the matched DN.
    #[default]
    Auth,
    /// Nothing: every base read gets 32, with no matched DN.
    Nothing,
}

/// A running slapd of the test's own.
pub struct Slapd {
    dir: tempfile::TempDir,
    port: u16,
    tls_port: Option<u16>,
    child: Option<Child>,
    paused: bool,
}

/// The DN of a user under `ou=people`.
pub fn user_dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tool of the slapd or ldap-utils packages, or a panic that says what to
/// install.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()]);
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} not found: the LDAP tests need OpenLDAP's server and tools (apt-get install slapd ldap-utils)");
}

fn ssha(password: &str) -> String {
    let out = Command::new(tool("slappasswd")).args(["-h", "{SSHA}", "-s", password]).output().unwrap();
    assert!(out.status.success(), "slappasswd: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An LDIF line `attr: value`, base64 (`attr:: …`) when the value is not
/// plain ASCII.
fn ldif_line(attr: &str, value: &str) -> String {
    if value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        format!("{attr}: {value}\n")
    } else {
        format!("{attr}:: {}\n", base64(value.as_bytes()))
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn user_ldif(uid: &str, password: &str, number: &str, parent: &str) -> String {
    let mut ldif = String::new();
    ldif += &ldif_line("dn", &format!("uid={uid},{parent}"));
    ldif += "objectClass: inetOrgPerson\n";
    ldif += &ldif_line("uid", uid);
    let cn = if uid.starts_with("twin") { "twin" } else { uid };
    ldif += &ldif_line("cn", cn);
    ldif += &ldif_line("sn", uid);
    ldif += &ldif_line("employeeNumber", number);
    ldif += &format!("userPassword: {}\n", ssha(password));
    if uid == "locked" {
        ldif += "pwdAccountLockedTime: 000001010000Z\n";
    }
    ldif + "\n"
}

fn base_ldif() -> String {
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=policies,{SUFFIX}\nobjectClass: organizationalUnit\nou: policies\n\n\
         dn: cn=default,ou=policies,{SUFFIX}\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\n\
         cn: default\npwdAttribute: userPassword\npwdLockout: TRUE\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: ropc\n\
         userPassword: {}\n\n\
         dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=admins,{PEOPLE}\nobjectClass: organizationalUnit\nou: admins\n\n",
        ssha(SERVICE_PW)
    );
    for (uid, password, number) in USERS {
        ldif += &user_ldif(uid, password, number, PEOPLE);
    }
    for (uid, password, uac, pwd_last_set) in AD_USERS {
        ldif += &format!(
            "dn: uid={uid},{PEOPLE}\nobjectClass: user\nobjectClass: uidObject\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             instanceType: 4\nnTSecurityDescriptor: -\nobjectCategory: cn=Person,cn=Schema,cn=Configuration,{SUFFIX}\n\
             userAccountControl: {uac}\npwdLastSet: {pwd_last_set}\nuserPassword: {}\n\n",
            ssha(password)
        );
    }
    ldif + &user_ldif(ROOT_USER.0, ROOT_USER.1, "0", &format!("ou=admins,{PEOPLE}"))
}

/// A CA, and a certificate for 127.0.0.1 and localhost it signed: (CA PEM,
/// certificate PEM, key PEM).
pub fn test_ca(name: &str) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, name);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

impl Slapd {
    /// Starts a slapd with `options` and the users loaded.
    pub fn start(options: Options) -> Slapd {
        tool("slapd");
        tool("ldapadd");
        let mut dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        if options.tls {
            let (ca, cert, key) = test_ca("ropc test CA");
            std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
            std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
            std::fs::write(dir.path().join("key.pem"), key).unwrap();
            std::fs::write(dir.path().join("other-ca.pem"), test_ca("another CA").0).unwrap();
        }
        std::fs::write(dir.path().join("slapd.conf"), conf(dir.path(), options)).unwrap();
        let test = Command::new(tool("slaptest")).arg("-u").arg("-f").arg(dir.path().join("slapd.conf")).output();
        let test = test.unwrap();
        assert!(test.status.success(), "slaptest: {}", String::from_utf8_lossy(&test.stderr));
        // A port another test took between our look and slapd's bind: try
        // another.
        for attempt in 0.. {
            let mut s =
                Slapd { port: free_port(), tls_port: options.tls.then(free_port), dir, child: None, paused: false };
            match s.spawn() {
                Ok(()) => {
                    s.ldap_tool("ldapadd", &[], Some(&base_ldif()));
                    return s;
                }
                Err(log) if attempt < 3 && log.contains("Address already in use") => dir = s.take_dir(),
                Err(log) => panic!("slapd did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT` (with `tls`).
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port.expect("started with tls"))
    }

    /// The CA that signed slapd's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that did not.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    /// slapd's stats log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// How many simple binds as `dn` slapd received (successful or not).
    pub fn binds_as(&self, dn: &str) -> usize {
        let needle = format!("BIND dn=\"{dn}\" method=128");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Every simple bind's DN, in order.
    pub fn bind_dns(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.ends_with("method=128"))
            .filter_map(|l| l.split("BIND dn=\"").nth(1)?.rsplit_once("\" method=").map(|(dn, _)| dn.to_owned()))
            .collect()
    }

    /// The DNs bound as on each connection, by slapd's connection number.
    pub fn binds_by_connection(&self) -> std::collections::BTreeMap<u64, Vec<String>> {
        let mut by = std::collections::BTreeMap::<u64, Vec<String>>::new();
        for line in self.log().lines().filter(|l| l.ends_with("method=128")) {
            let conn = line.split("conn=").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok());
            let dn = line.split("BIND dn=\"").nth(1).and_then(|r| r.rsplit_once("\" method=")).map(|(dn, _)| dn);
            if let (Some(conn), Some(dn)) = (conn, dn) {
                by.entry(conn).or_default().push(dn.to_owned());
            }
        }
        by
    }

    /// `ldapwhoami` bound as `dn` with `password`: who slapd says we are,
    /// or its error.
    pub fn whoami(&self, dn: &str, password: &str) -> Result<String, String> {
        let out = Command::new(tool("ldapwhoami"))
            .args(["-x", "-H", &self.url(), "-D", dn, "-w", password])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// How many connections slapd accepted.
    pub fn connections(&self) -> usize {
        self.log().lines().filter(|l| l.contains(" ACCEPT from ")).count()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut listeners = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(tls) = self.tls_port {
            listeners += &format!(" ldaps://127.0.0.1:{tls}/");
        }
        let log = OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(tool("slapd"))
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-h", &listeners, "-d", "256"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run slapd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        let ports: Vec<u16> = std::iter::once(self.port).chain(self.tls_port).collect();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("slapd exited ({status}):\n{}", self.log()));
            }
            let up = ports
                .iter()
                .all(|p| TcpStream::connect_timeout(&([127, 0, 0, 1], *p).into(), Duration::from_millis(200)).is_ok());
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("slapd did not listen within 15 s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Runs an ldap-utils tool as the rootdn, with `input` on stdin.
    pub fn ldap_tool(&self, name: &str, args: &[&str], input: Option<&str>) -> String {
        let mut child = Command::new(tool(name))
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.unwrap_or("").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sets `dn`'s password (ppolicy sets its `pwdChangedTime`).
    pub fn set_password(&self, dn: &str, password: &str) {
        self.ldap_tool("ldappasswd", &["-s", password, dn], None);
    }

    /// Deletes `dn`.
    pub fn delete(&self, dn: &str) {
        self.ldap_tool("ldapdelete", &[dn], None);
    }

    /// Stops slapd (its connections close); the data stays.
    pub fn stop(&mut self) {
        self.resume();
        if let Some(child) = &self.child {
            signal(child, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(child) = self.child.as_mut() {
            if child.try_wait().unwrap().is_some() {
                self.child = None;
            } else if Instant::now() > deadline {
                self.kill();
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Stops slapd if it runs, and starts it again on the same ports with
    /// the same data.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The old listener's port may linger a moment.
                Err(log) if Instant::now() < deadline && log.contains("Address already in use") => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("slapd did not restart:\n{log}"),
            }
        }
    }

    /// Freezes slapd (SIGSTOP): the kernel still accepts connections, and
    /// nothing answers.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            signal(child, libc::SIGSTOP);
            self.paused = true;
        }
    }

    /// Lets a paused slapd go on (SIGCONT).
    pub fn resume(&mut self) {
        if let (Some(child), true) = (&self.child, self.paused) {
            signal(child, libc::SIGCONT);
        }
        self.paused = false;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                signal(&child, libc::SIGCONT);
                self.paused = false;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid, which has not been waited for.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}

fn conf(dir: &Path, options: Options) -> String {
    let d = dir.display();
    let mut conf = String::new();
    for schema in ["core", "cosine", "inetorgperson", "nis", "msuser"] {
        conf += &format!("include /etc/ldap/schema/{schema}.schema\n");
    }
    conf += &format!("modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload ppolicy\npidfile {d}/slapd.pid\n");
    if options.bind_anon_dn {
        conf += "allow bind_anon_dn\n";
    }
    if options.tls {
        conf += &format!(
            "TLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/cert.pem\nTLSCertificateKeyFile {d}/key.pem\n"
        );
    }
    let anonymous = match options.anonymous {
        Anonymous::Read => "read",
        Anonymous::Auth => "auth",
        Anonymous::Nothing => "none",
    };
    conf += &format!(
        "database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {}\ndirectory {d}/data\nmaxsize 104857600\n\
         overlay ppolicy\nppolicy_default \"cn=default,ou=policies,{SUFFIX}\"\n\
         access to attrs=userPassword by self =xw by anonymous auth by * none\n\
         access to * by dn.exact=\"{SERVICE_DN}\" read by self read by users read by anonymous {anonymous} by * none\n",
        ssha(ROOT_PW)
    );
    conf
}
