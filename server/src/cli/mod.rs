//! The command line: `ropc serve` and the operator's tools (README's
//! command table; docs/operations.md).
//!
//! | module | owns |
//! |---|---|
//! | this one | the commands and their flags |
//! | `serve` | running the server |
//! | `admin` | offline edits: clients, secrets, users |
//! | `check` | `config check`, `jwt rotate-key` |
//! | `reload` | `config reload`: validate, then signal the running server |
//! | `sessions` | `sessions revoke`, through the admin socket or listener |
//! | `credentials` | `credentials test`: a look-up, never the hash |

mod admin;
mod check;
mod credentials;
mod reload;
mod serve;
mod sessions;

use crate::config::Config;
use crate::logging::LogFormat;
use clap::{Parser, Subcommand};
use ropc_hash::{hash_password, HashParams};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use zeroize::Zeroizing;

#[derive(Parser, Debug)]
#[command(name = "ropc", version, about = "OAuth 2.0 server for the Resource Owner Password Credentials grant")]
struct Cli {
    /// `serve --log-format`, accepted before the command too (as in
    /// `ropc --log-format json serve`); other commands ignore it.
    #[arg(long, value_enum, hide = true)]
    log_format: Option<LogFormat>,
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
        /// Log format: text (default) or json.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
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
    /// End grants on the running server.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Try a credential manager.
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
}

#[derive(Subcommand, Debug)]
enum SessionsCommand {
    /// End every grant of a user (or of a client) on the running server
    /// that FILE configures (every instance, with a shared Redis): refresh
    /// tokens stop working, access tokens introspect inactive. Goes through
    /// the admin socket or the admin listener.
    Revoke {
        /// The user whose grants end.
        #[arg(long, conflicts_with = "client", required_unless_present = "client")]
        user: Option<String>,
        /// The client whose grants end.
        #[arg(long)]
        client: Option<String>,
        /// The user's credential manager (default: the users file).
        #[arg(long, requires = "user")]
        credential_manager: Option<String>,
        /// The config file the server runs with.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CredentialsCommand {
    /// Connect to a credential manager and look up the username read from
    /// stdin: what it found (the hash's format, disabled or not), never the
    /// hash. NAME is a [credential_managers.NAME] table, or `default`.
    Test {
        /// The manager.
        name: String,
        /// The config file.
        #[arg(long)]
        config: PathBuf,
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
        /// Authenticate the client by private_key_jwt (RFC 7523) with the
        /// public keys in this JWK Set (relative to the config file's
        /// directory), instead of a generated secret.
        #[arg(long)]
        jwks_file: Option<PathBuf>,
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
        Command::Serve { config, log_format } => {
            serve::serve(config, log_format.or(cli.log_format).unwrap_or(LogFormat::Text))
        }
        Command::HashPassword { m_cost, t_cost, p_cost } => {
            let d = HashParams::default();
            let params = HashParams {
                m_cost: m_cost.unwrap_or(d.m_cost),
                t_cost: t_cost.unwrap_or(d.t_cost),
                p_cost: p_cost.unwrap_or(d.p_cost),
            };
            read_password(false)
                .and_then(|pw| hash_password(pw.as_bytes(), params).map_err(|e| e.to_string()))
                .map(|phc| println!("{phc}"))
        }
        Command::Client { command: ClientCommand::Add { id, scopes, capabilities, jwks_file, config } } => {
            admin::client_add(&id, &scopes, &capabilities, jwks_file.as_deref(), config.as_deref())
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
        Command::Config { command: ConfigCommand::Check { file } } => check::config_check(&file),
        Command::Config { command: ConfigCommand::Reload { config, pid } } => reload::config_reload(&config, pid),
        Command::Jwt { command: JwtCommand::RotateKey { config } } => check::jwt_rotate_key(&config),
        Command::Sessions { command: SessionsCommand::Revoke { user, client, credential_manager, config } } => {
            sessions::revoke(user.as_deref(), client.as_deref(), credential_manager.as_deref(), &config)
        }
        Command::Credentials { command: CredentialsCommand::Test { name, config } } => {
            read_line().and_then(|username| credentials::test(&name, &username, &config))
        }
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

/// One line of stdin, without its newline (a username).
fn read_line() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read stdin: {e}"))?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    if line.is_empty() {
        return Err("no username on stdin".into());
    }
    Ok(line)
}

fn check_password(p: Zeroizing<String>) -> Result<Zeroizing<String>, String> {
    if p.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(p)
}
