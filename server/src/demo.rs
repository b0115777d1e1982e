//! Demo mode: `ropc serve` with no `--config`. Writes a real configuration
//! under `./ropc-demo/` on first start (one client `legacy`, one user
//! `demo`, self-signed HTTPS on localhost:8443) and reuses it afterwards, so
//! the secret, password and certificate stay the same between starts.

use crate::fsutil::write_atomic;
use ropc_hash::{generate_secret, hash_password, HashParams};
use std::path::{Path, PathBuf};

/// The demo's folder, relative to the working directory.
pub const DEMO_DIR: &str = "ropc-demo";

/// What a demo start needs to print.
pub struct Demo {
    /// The generated config file.
    pub config: PathBuf,
    /// The client secret of `legacy`.
    pub client_secret: String,
    /// The password of `demo`.
    pub password: String,
}

const CREDENTIALS: &str = "demo-credentials.txt";

/// Creates the demo files in `dir` unless they exist, and returns them.
pub fn prepare(dir: &Path) -> Result<Demo, String> {
    let config = dir.join("ropc.toml");
    let credentials = dir.join(CREDENTIALS);
    if config.exists() && credentials.exists() {
        let text =
            std::fs::read_to_string(&credentials).map_err(|e| format!("cannot read {}: {e}", credentials.display()))?;
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .map(str::to_owned)
                .ok_or_else(|| {
                    format!("{}: no `{key}=` line; delete {} to start over", credentials.display(), dir.display())
                })
        };
        return Ok(Demo { config, client_secret: value("client_secret")?, password: value("password")? });
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let client_secret = generate_secret().map_err(|e| e.to_string())?;
    let password = generate_secret().map_err(|e| e.to_string())?[..22].to_owned();
    let params = HashParams::default();
    let secret_hash = hash_password(client_secret.as_bytes(), params).map_err(|e| e.to_string())?;
    let password_hash = hash_password(password.as_bytes(), params).map_err(|e| e.to_string())?;
    let write = |name: &str, body: String, mode| {
        let path = dir.join(name);
        write_atomic(&path, body.as_bytes(), mode).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write("users.htpasswd", format!("# ropc demo users: `username:hash`\ndemo:{password_hash}\n"), 0o600)?;
    write(
        CREDENTIALS,
        format!("# Plain demo credentials, kept only so that demo mode can print them again.\nclient_secret={client_secret}\npassword={password}\n"),
        0o600,
    )?;
    write(
        "ropc.toml",
        format!(
            r#"# ropc demo configuration, written by `ropc serve` without --config.
# Serve it again with: ropc serve --config {dir}/ropc.toml
[server]
listen = "localhost:8443"
tls = "self-signed"

[token_service]
issuer = "https://localhost:8443"
access_token_ttl = 300
refresh_token_ttl = 86400

[credential_manager]
users_file = "users.htpasswd"

[[scopes]]
name = "read"

[[scopes]]
name = "write"

[[clients]]
id = "legacy"
secret = "{secret_hash}"
capabilities = ["password", "refresh_token"]
scopes = ["read", "write"]
default_scopes = ["read"]
"#,
            dir = dir.display()
        ),
        0o600,
    )?;
    Ok(Demo { config, client_secret, password })
}
