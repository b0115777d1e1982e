//! The command line (contract in DESIGN.md Part 2).

use crate::admin;
use crate::config::Config;
use crate::demo;
use crate::hash::{hash_password, HashParams};
use crate::logging::{self, LogFormat};
use crate::server::{shutdown_signal, Server};
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Parser, Debug)]
#[command(name = "ropc", version, about = "OAuth 2.0 server for the Resource Owner Password Credentials grant")]
struct Cli {
    /// Log format for `serve`.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server. Without --config: demo mode (files under ./ropc-demo/).
    Serve {
        /// The config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Read one line from stdin and print its argon2id PHC hash.
    HashPassword {
        /// Memory cost in KiB (default 19456).
        #[arg(long)]
        m_cost: Option<u32>,
        /// Iterations (default 2).
        #[arg(long)]
        t_cost: Option<u32>,
        /// Parallelism (default 1).
        #[arg(long)]
        p_cost: Option<u32>,
    },
    /// Manage clients.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage JWT signing keys.
    Jwt {
        #[command(subcommand)]
        command: JwtCommand,
    },
}

#[derive(Subcommand, Debug)]
enum JwtCommand {
    /// Add a new signing key to the managed key directory. It signs from the
    /// next config commit (`ropc config reload`, SIGHUP) or start; the
    /// previous key stays published until its tokens expire.
    RotateKey {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ClientCommand {
    /// Create a client with a generated secret, printed once.
    Add {
        /// The client id.
        id: String,
        /// A scope the client may have (repeatable); created if undefined.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A grant the client may use (repeatable): password, refresh_token,
        /// client_credentials. Default: password and refresh_token.
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        /// Append the client to this config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Generate a new secret for a client, printed once.
    ResetSecret {
        /// The client id.
        id: String,
        /// The config file to update.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add or replace a user; the password is read from stdin.
    Add {
        /// The username.
        name: String,
        /// The users file to update.
        #[arg(long)]
        users: PathBuf,
        /// Take the argon2 parameters from this config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a config file and its users file.
    Check {
        /// The config file.
        file: PathBuf,
    },
    /// Validate a config file, then have the running `ropc serve --config
    /// FILE` commit it (SIGHUP). Without --pid, the server is found by its
    /// command line. With `[server] admin_listen` set, waits for the verdict.
    Reload {
        /// The config file the server runs with.
        #[arg(long)]
        config: PathBuf,
        /// The server's process id (default: every `ropc serve` of this
        /// config file).
        #[arg(long)]
        pid: Option<u32>,
    },
}

/// Runs the command line and returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config, cli.log_format),
        Command::HashPassword { m_cost, t_cost, p_cost } => {
            let d = HashParams::default();
            let params = HashParams {
                m_cost: m_cost.unwrap_or(d.m_cost),
                t_cost: t_cost.unwrap_or(d.t_cost),
                p_cost: p_cost.unwrap_or(d.p_cost),
            };
            read_password(false).and_then(|pw| hash_password(pw.as_bytes(), params)).map(|phc| println!("{phc}"))
        }
        Command::Client { command: ClientCommand::Add { id, scopes, capabilities, config } } => {
            admin::client_add(&id, &scopes, &capabilities, config.as_deref())
        }
        Command::Client { command: ClientCommand::ResetSecret { id, config } } => {
            admin::client_reset_secret(&id, &config)
        }
        Command::User { command: UserCommand::Add { name, users, config } } => {
            let params = match config.as_deref().map(Config::load) {
                Some(Ok(c)) => Ok(c.argon2),
                Some(Err(e)) => Err(e.to_string()),
                None => Ok(HashParams::default()),
            };
            params.and_then(|p| read_password(true).and_then(|pw| admin::user_add(&name, &pw, &users, p)))
        }
        Command::Config { command: ConfigCommand::Check { file } } => config_check(&file),
        Command::Config { command: ConfigCommand::Reload { config, pid } } => {
            crate::reload::config_reload(&config, pid)
        }
        Command::Jwt { command: JwtCommand::RotateKey { config } } => jwt_rotate_key(&config),
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("error: {message}");
            2
        }
    }
}

/// Reads a password: a no-echo prompt on a terminal, else one line of stdin
/// without its trailing newline.
fn read_password(confirm: bool) -> Result<Zeroizing<String>, String> {
    if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?);
        if confirm {
            let second = Zeroizing::new(rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?);
            if *first != *second {
                return Err("the passwords differ".into());
            }
        }
        return check_password(first);
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read stdin: {e}"))?;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    check_password(line)
}

fn check_password(p: Zeroizing<String>) -> Result<Zeroizing<String>, String> {
    if p.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(p)
}

fn jwt_rotate_key(file: &Path) -> Result<(), String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    match &config.jwt.keys {
        crate::config::JwtKeySource::Managed(dir) => {
            let path = crate::jwt::generate_key(dir, config.jwt.algorithm)?;
            println!("new signing key: {} (signs from the next config reload or start)", path.display());
            Ok(())
        }
        crate::config::JwtKeySource::Files { .. } => Err(format!(
            "{}: [jwt] signing_key is set, so its keys are yours to rotate: move the old key to previous_keys and set the new one",
            file.display()
        )),
    }
}

pub(crate) fn config_check(file: &Path) -> Result<(), String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    let users = match &config.users_file {
        Some(path) => crate::credentials::UserStore::load(path, HashParams { m_cost: 8, t_cost: 1, p_cost: 1 })
            .map_err(|e| e.to_string())?
            .len(),
        None => 0,
    };
    println!(
        "{}: ok ({} clients, {} scopes, {} users)",
        file.display(),
        config.engine.clients.len(),
        config.engine.scopes.names().count(),
        users
    );
    Ok(())
}

fn serve(config: Option<PathBuf>, log_format: LogFormat) -> Result<(), String> {
    let _log = logging::init(log_format);
    limit_transparent_huge_pages();
    let (path, demo) = match config {
        Some(path) => (path, None),
        None => {
            let d = demo::prepare(Path::new(demo::DEMO_DIR))?;
            (d.config.clone(), Some(d))
        }
    };
    let config = Config::load(&path).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ropc-async")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        #[cfg(unix)]
        let hup = crate::reload::take_sighup();
        let token_path = config.endpoints.token.clone();
        let server = Server::bind(config).await?;
        let issuer = server.app().live().issuer.clone();
        for addr in server.local_addrs() {
            println!("ropc listening on {}://{addr}", server.scheme());
        }
        for addr in server.admin_addrs() {
            println!("ropc admin (metrics, health) on http://{addr}");
        }
        if let Some(ca) = &server.ca_file {
            println!("self-signed certificate: {} (use with curl --cacert)", ca.display());
        }
        if let Some(d) = demo {
            print_demo(&d, server.ca_file.as_deref(), &format!("{issuer}{token_path}"));
        }
        #[cfg(unix)]
        if let Some(hup) = hup {
            tokio::spawn(crate::reload::reload_on_sighup(std::sync::Arc::clone(server.app()), hup));
        }
        tracing::info!(issuer = %issuer, "ready");
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Keeps transparent huge pages off the heap that request threads touch
/// (Linux). The kernel zeroes a whole 2 MiB page inside the fault that
/// first touches it: measured on a 2-vCPU VM, a request thread stalled
/// about 6 ms per such fault while 2,048 fresh connections grew the heap,
/// and every request queued behind it waited as long (BENCHMARKS.md, "Huge
/// pages"). mimalloc is built not to ask for huge pages (its `no_thp`
/// feature), which is enough where the kernel gives them only on request
/// (THP mode `madvise`); the hash workers' argon2 memory still asks for
/// them ([`crate::hash::HashMemory`]). Where the kernel gives them to all
/// memory (mode `always`, the default of some distributions), they are
/// turned off for the process, as Redis does; on Linux 6.18 and later,
/// except for memory that asks (the argon2 memory keeps them), before
/// that for all of it (the hashes then run 1-2 % slower).
fn limit_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        use libc::c_ulong;
        /// `PR_THP_DISABLE_EXCEPT_ADVISED` (Linux 6.18): madvised ranges
        /// keep their huge pages.
        const EXCEPT_ADVISED: c_ulong = 1 << 1;
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if !mode.contains("[always]") {
            return;
        }
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments and only sets
        // a flag on this process's memory map.
        let set = |flags: c_ulong| unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1 as c_ulong, flags, 0 as c_ulong, 0 as c_ulong)
        };
        if set(EXCEPT_ADVISED) == 0 {
            tracing::info!("transparent huge pages are set to `always` on this host: turned off for ropc except its hash memory, so that no request waits while a page fault zeroes 2 MiB");
        } else if set(0) == 0 {
            tracing::info!("transparent huge pages are set to `always` on this host: turned off for ropc (this kernel cannot keep them for the hash memory alone; hashes run 1-2 % slower), so that no request waits while a page fault zeroes 2 MiB");
        } else {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, "transparent huge pages are set to `always` and cannot be turned off for ropc: expect ms-long stalls while the heap grows (set them to `madvise`)");
        }
    }
}

fn print_demo(d: &demo::Demo, ca: Option<&Path>, url: &str) {
    let cacert = ca.map(|p| format!("--cacert {} ", p.display())).unwrap_or_default();
    println!(
        "\nropc demo mode: configuration in {config} (delete {dir}/ to start over)\n\
         \n  client_id      legacy\n  client_secret  {secret}\n  username       demo\n  password       {password}\n\
         \nGet a token (Resource Owner Password Credentials, RFC 6749 section 4.3):\n\
         \n  curl {cacert}-X POST {url} \\\n    -H 'Content-Type: application/x-www-form-urlencoded' \\\n    \
         -d 'grant_type=password&client_id=legacy&client_secret={secret}&username=demo&password={password}&scope=read'\n",
        config = d.config.display(),
        dir = demo::DEMO_DIR,
        secret = d.client_secret,
        password = d.password,
    );
}
