//! `ropc-loadtest fixture`: a ropc configuration for load tests. It writes
//! `ropc.toml` (format: docs/configuration.md), a users file whose user K has the
//! known password `pass-K`, hashed with argon2id on every core, and a client
//! with a freshly generated secret and the `password`, `refresh_token` and
//! `client_credentials` capabilities. So a run can be reproduced with
//! `ropc serve --config DIR/ropc.toml` and the `ropc-loadtest run` command
//! that the fixture prints.
//!
//! The users' passwords are public by design: such a configuration is for
//! load tests only.

use crate::form::Secret;
use ropc_hash::{generate_secret, hash_password, HashParams};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The configuration file's name in the fixture directory.
pub const CONFIG_FILE: &str = "ropc.toml";
/// The users file's name.
pub const USERS_FILE: &str = "users.htpasswd";
/// The file that keeps the client secret (mode 0600).
pub const SECRET_FILE: &str = "client-secret";
/// The token endpoint path of the configuration.
pub const TOKEN_PATH: &str = "/oauth/v2/oauth-token";

/// What to write.
#[derive(Clone, Debug)]
pub struct FixtureSpec {
    /// Directory (created if missing).
    pub dir: PathBuf,
    /// Number of users.
    pub users: u64,
    /// Username before the number.
    pub user_prefix: String,
    /// Password before the number.
    pub password_prefix: String,
    /// argon2id cost of every hash, and of the server's new hashes.
    pub params: HashParams,
    /// `[server] listen`.
    pub listen: String,
    /// `tls = "self-signed"` instead of `"off"`.
    pub self_signed: bool,
    /// The client's id.
    pub client_id: String,
    /// Hashing threads.
    pub threads: usize,
    /// Replace an existing fixture.
    pub force: bool,
    /// Print hashing progress to stderr.
    pub progress: bool,
}

/// What was written.
#[derive(Debug)]
pub struct Fixture {
    /// The configuration file.
    pub config: PathBuf,
    /// The users file.
    pub users_file: PathBuf,
    /// The file holding the client secret.
    pub secret_file: PathBuf,
    /// The client secret.
    pub secret: Secret,
    /// The token endpoint URL the server will serve.
    pub url: String,
    /// The certificate to trust, with `self_signed`: ropc generates it at
    /// its first start.
    pub cacert: Option<PathBuf>,
}

/// Usernames and client ids are kept to characters that need no quoting in
/// a users file, a TOML string or a shell command.
fn check_name(what: &str, value: &str, allow_empty: bool) -> Result<(), String> {
    let ok = value.len() <= 64
        && (allow_empty || !value.is_empty())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} must be at most 64 characters of A-Z a-z 0-9 . _ - @"))
    }
}

/// The URL to reach `listen`: a wildcard address becomes loopback.
fn url_for(listen: &str, https: bool) -> String {
    let authority = if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_owned()
    };
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{authority}{TOKEN_PATH}")
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::from('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Hashes the password of every user on `threads` threads; returns the
/// users file's lines in order.
fn hash_users(spec: &FixtureSpec) -> Result<Vec<String>, String> {
    let threads = spec.threads.max(1) as u64;
    let done = AtomicU64::new(0);
    let lines = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let done = &done;
                scope.spawn(move || -> Result<Vec<(u64, String)>, String> {
                    let mut out = Vec::new();
                    let mut k = t;
                    while k < spec.users {
                        let password = format!("{}{k}", spec.password_prefix);
                        let hash = hash_password(password.as_bytes(), spec.params).map_err(|e| e.to_string())?;
                        out.push((k, format!("{}{k}:{hash}", spec.user_prefix)));
                        done.fetch_add(1, Ordering::Relaxed);
                        k += threads;
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut last = 0;
        while !workers.iter().all(|w| w.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            let now = done.load(Ordering::Relaxed);
            if spec.progress && now >= last + spec.users.div_ceil(10).max(1) {
                eprintln!("fixture: hashed {now} of {} passwords", spec.users);
                last = now;
            }
        }
        let mut lines = vec![String::new(); usize::try_from(spec.users).unwrap_or(0)];
        for worker in workers {
            let hashed = worker.join().map_err(|_| "a hashing thread panicked".to_owned())??;
            for (k, line) in hashed {
                if let Some(slot) = usize::try_from(k).ok().and_then(|k| lines.get_mut(k)) {
                    *slot = line;
                }
            }
        }
        Ok::<_, String>(lines)
    })?;
    Ok(lines)
}

/// Writes `contents` to `path` with `mode` (on Unix).
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes the fixture described by `spec`.
pub fn write(spec: &FixtureSpec) -> Result<Fixture, String> {
    check_name("--client-id", &spec.client_id, false)?;
    check_name("--user-prefix", &spec.user_prefix, true)?;
    if spec.password_prefix.chars().any(char::is_control) {
        return Err("--password-prefix must not hold control characters".into());
    }
    if spec.users == 0 || spec.users > 10_000_000 {
        return Err("--users must be 1 ..= 10000000".into());
    }
    spec.params.to_params().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&spec.dir).map_err(|e| format!("cannot create {}: {e}", spec.dir.display()))?;
    let config = spec.dir.join(CONFIG_FILE);
    let users_file = spec.dir.join(USERS_FILE);
    let secret_file = spec.dir.join(SECRET_FILE);
    if !spec.force {
        for path in [&config, &users_file, &secret_file] {
            if path.exists() {
                return Err(format!("{} exists: use --force to replace the fixture", path.display()));
            }
        }
    }

    let secret = Secret::new(generate_secret().map_err(|e| e.to_string())?);
    let secret_hash = hash_password(secret.expose().as_bytes(), spec.params).map_err(|e| e.to_string())?;
    let lines = hash_users(spec)?;
    let mut users = format!(
        "# ropc-loadtest fixture: {n} users {u}0..{u}{last}; the password of {u}K is {p}K.\n\
         # These passwords are public: for load tests only.\n",
        n = spec.users,
        u = spec.user_prefix,
        last = spec.users - 1,
        p = spec.password_prefix
    );
    for line in lines {
        users.push_str(&line);
        users.push('\n');
    }

    let p = spec.params;
    let toml = format!(
        r#"# Written by `ropc-loadtest fixture`: {n} users with public passwords, for
# load tests only. Client `{id}`: its secret is in {secret_name} (mode 0600).
[server]
listen = {listen}
tls = "{tls}"

[token_service]
token_endpoint = "{TOKEN_PATH}"

[credential_manager]
users_file = "{USERS_FILE}"

[credential_manager.argon2]
m_cost = {m}
t_cost = {t}
p_cost = {pc}

[[scopes]]
name = "read"

[[scopes]]
name = "write"

[[clients]]
id = "{id}"
secret = {secret_hash}
capabilities = ["password", "refresh_token", "client_credentials"]
scopes = ["read", "write"]
default_scopes = ["read"]
"#,
        n = spec.users,
        id = spec.client_id,
        secret_name = SECRET_FILE,
        listen = toml_string(&spec.listen),
        tls = if spec.self_signed { "self-signed" } else { "off" },
        m = p.m_cost,
        t = p.t_cost,
        pc = p.p_cost,
        secret_hash = toml_string(&secret_hash),
    );

    write_file(&users_file, &users, 0o644)?;
    write_file(&secret_file, &format!("{}\n", secret.expose()), 0o600)?;
    write_file(&config, &toml, 0o644)?;
    Ok(Fixture {
        config,
        users_file,
        secret_file,
        secret,
        url: url_for(&spec.listen, spec.self_signed),
        cacert: spec.self_signed.then(|| spec.dir.join("self-signed-cert.pem")),
    })
}

/// `path` for a shell command line: quoted when it holds anything but
/// plain characters.
fn shell_word(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,=".contains(&b)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `ropc-loadtest run` command that matches `fixture`.
pub fn run_command(spec: &FixtureSpec, fixture: &Fixture, scenario: &str) -> String {
    let mut cmd = format!(
        "ropc-loadtest run --url {} --client-id {} --client-secret-file {} --users {}",
        fixture.url,
        spec.client_id,
        shell_word(&fixture.secret_file),
        spec.users
    );
    if spec.user_prefix != "user" {
        let _ = write!(cmd, " --user-prefix {}", spec.user_prefix);
    }
    if spec.password_prefix != "pass-" {
        let _ = write!(cmd, " --password-prefix {}", shell_word(Path::new(&spec.password_prefix)));
    }
    if let Some(cacert) = &fixture.cacert {
        let _ = write!(cmd, " --cacert {}", shell_word(cacert));
    }
    let _ = write!(cmd, " --scenario {scenario}");
    cmd
}

/// What the `fixture` command prints: the deliberate, one-time display of
/// the client secret, and the commands that reproduce a run.
pub fn summary(spec: &FixtureSpec, fixture: &Fixture) -> String {
    let mut out = String::new();
    let u = &spec.user_prefix;
    let _ = writeln!(
        out,
        "ropc-loadtest fixture in {}: {} users {u}0..{u}{} (the password of {u}K is {}K)",
        spec.dir.display(),
        spec.users,
        spec.users - 1,
        spec.password_prefix
    );
    let _ = writeln!(out, "  config         {}", fixture.config.display());
    let _ = writeln!(out, "  users file     {}", fixture.users_file.display());
    let _ =
        writeln!(out, "  argon2id       m={} t={} p={}", spec.params.m_cost, spec.params.t_cost, spec.params.p_cost);
    let _ = writeln!(out, "  client_id      {}", spec.client_id);
    let _ = writeln!(
        out,
        "  client_secret  {}   (printed only now; kept in {}, mode 0600)",
        fixture.secret.expose(),
        fixture.secret_file.display()
    );
    let _ = writeln!(out, "\nStart the server:\n  ropc serve --config {}", shell_word(&fixture.config));
    let _ = writeln!(out, "\nThen run the load:\n  {}", run_command(spec, fixture, "password"));
    let _ = writeln!(out, "\nOther scenarios: --scenario refresh, client-credentials, or mixed --password-percent 10");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> FixtureSpec {
        FixtureSpec {
            dir: dir.to_owned(),
            users: 5,
            user_prefix: "user".into(),
            password_prefix: "pass-".into(),
            params: HashParams { m_cost: 64, t_cost: 1, p_cost: 1 },
            listen: "127.0.0.1:8443".into(),
            self_signed: false,
            client_id: "loadtest".into(),
            threads: 2,
            force: false,
            progress: false,
        }
    }

    #[test]
    fn writes_users_in_order_with_known_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path());
        let fixture = write(&spec).unwrap();
        let users = std::fs::read_to_string(&fixture.users_file).unwrap();
        let lines: Vec<&str> = users.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 5);
        for (k, line) in lines.iter().enumerate() {
            let (name, phc) = line.split_once(':').unwrap();
            assert_eq!(name, format!("user{k}"));
            let stored = ropc_hash::StoredHash::parse(phc).unwrap();
            assert!(stored.verify(format!("pass-{k}").as_bytes()));
        }
        let saved = std::fs::read_to_string(&fixture.secret_file).unwrap();
        assert_eq!(saved.trim_end(), fixture.secret.expose());
        let toml = std::fs::read_to_string(&fixture.config).unwrap();
        assert!(!toml.contains(fixture.secret.expose()));
        assert_eq!(fixture.url, "http://127.0.0.1:8443/oauth/v2/oauth-token");
        // A second fixture in the same place needs --force.
        assert!(write(&spec).unwrap_err().contains("--force"));
    }

    #[test]
    fn printed_command_matches_the_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(&dir.path().join("my fixture"));
        spec.self_signed = true;
        spec.listen = "0.0.0.0:9000".into();
        let fixture = write(&spec).unwrap();
        let cmd = run_command(&spec, &fixture, "refresh");
        assert!(cmd.starts_with("ropc-loadtest run --url https://127.0.0.1:9000/oauth/v2/oauth-token --client-id loadtest --client-secret-file '"), "{cmd}");
        assert!(cmd.contains("my fixture/client-secret'"), "{cmd}");
        assert!(cmd.ends_with("self-signed-cert.pem' --scenario refresh"), "{cmd}");
        let summary = summary(&spec, &fixture);
        assert!(summary.contains(fixture.secret.expose()));
    }

    #[test]
    fn rejects_awkward_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path());
        s.client_id = "a\"b".into();
        assert!(write(&s).is_err());
        let mut s = spec(dir.path());
        s.user_prefix = "a:b".into();
        assert!(write(&s).is_err());
        assert_eq!(toml_string("a\"\\\n"), r#""a\"\\\u000A""#);
    }
}
