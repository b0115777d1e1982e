//! The command line: `ropc-loadtest run` and `ropc-loadtest fixture`.

use crate::fixture::{self, FixtureSpec};
use crate::form::Secret;
use crate::report::{duration_from_secs, Report};
use crate::run::{self, Load, Pacer, RunSpec};
use crate::scenario::{ClientAuth, Kind, Scenario, Users, WorkloadSpec};
use crate::svg;
use clap::{Parser, Subcommand, ValueEnum};
use http::Uri;
use ropc_hash::HashParams;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The default target: ropc's token endpoint on loopback.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8443/oauth/v2/oauth-token";

/// Load generator and report for ropc and any other OAuth 2.0 token endpoint.
#[derive(Debug, Parser)]
#[command(name = "ropc-loadtest", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sends load to a token endpoint and reports throughput, latency and errors.
    Run(Box<RunArgs>),
    /// Writes a ropc config, a users file with known passwords and a client,
    /// and prints the commands that run the load against it.
    Fixture(FixtureArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScenarioArg {
    /// Password grants over --users users.
    Password,
    /// Refresh grants, each with the refresh token of the previous answer.
    Refresh,
    /// Client credentials grants.
    ClientCredentials,
    /// RFC 7662 introspection of an access token obtained first.
    Introspect,
    /// --password-percent password grants, the rest refresh grants.
    Mixed,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AuthArg {
    /// HTTP Basic.
    Basic,
    /// client_id and client_secret in the form body.
    Body,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PacerArg {
    Thread,
    Runtime,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GrantArg {
    Password,
    ClientCredentials,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Token endpoint URL (http or https).
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// What the virtual users send.
    #[arg(long, value_enum, default_value_t = ScenarioArg::Password)]
    scenario: ScenarioArg,
    /// Users for the password grant: user{K} .. user{K+N-1}, K = --user-offset.
    #[arg(long, default_value_t = 1000)]
    users: u64,
    /// The number K of the first user.
    #[arg(long, default_value_t = 0)]
    user_offset: u64,
    /// Username before the user's number.
    #[arg(long, default_value = "user")]
    user_prefix: String,
    /// Password before the user's number (the password of user7 is pass-7).
    #[arg(long, default_value = "pass-")]
    password_prefix: String,
    /// mixed: percentage of password grants (the rest are refresh grants).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    password_percent: u32,
    /// Client id.
    #[arg(long, default_value = "loadtest")]
    client_id: String,
    /// Client secret. Visible to other local users in the process list:
    /// prefer --client-secret-file or the environment variable.
    #[arg(long, env = "ROPC_LOADTEST_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// File whose first line is the client secret (takes precedence over
    /// --client-secret and the environment variable).
    #[arg(long)]
    client_secret_file: Option<PathBuf>,
    /// Client authentication (RFC 6749 §2.3.1).
    #[arg(long, value_enum, default_value_t = AuthArg::Basic)]
    auth: AuthArg,
    /// `scope` parameter of every grant.
    #[arg(long)]
    scope: Option<String>,
    /// introspect: the introspection endpoint's path, on the URL's host.
    #[arg(long, default_value = "/oauth/v2/oauth-introspect")]
    introspection_path: String,
    /// introspect: the grant that gets the access tokens to introspect.
    #[arg(long, value_enum, default_value_t = GrantArg::Password)]
    introspect_token_grant: GrantArg,
    /// A DPoP proof (RFC 9449, Ed25519) with every token request, for the
    /// cost of sender-constrained tokens. Proofs name --url as their `htu`,
    /// which must be the server's issuer and path.
    #[arg(long)]
    dpop: bool,
    /// With --dpop: proofs signed before the run starts, so that the
    /// measured load signs none (past them, proofs are signed as requests go,
    /// and the report says how many). They are valid for the server's
    /// max_proof_age (60 s by default) from the start.
    #[arg(long, default_value_t = 300_000, requires = "dpop")]
    dpop_presigned: usize,
    /// Virtual users, each with one connection.
    #[arg(long, short = 'c', default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    connections: u64,
    /// Open loop: requests per second in all, spread over the connections.
    /// Without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: what times the requests. `thread`: a thread on the OS's
    /// high-resolution timer, within tens of microseconds. `runtime`: the
    /// async runtime's timer, about a millisecond late but with no thread
    /// of its own, for load whose own latency does not matter (an attacker
    /// beside the measured load, whose CPU comes off the server's). Needs
    /// --rate.
    #[arg(long, value_enum, requires = "rate")]
    pacer: Option<PacerArg>,
    /// A new connection for each request instead of keep-alive.
    #[arg(long)]
    new_connection: bool,
    /// Local (source) IP address of every connection, such as 127.0.0.2 to
    /// appear as another client of a server on loopback.
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
    /// With --bind: spread the connections over this many consecutive local
    /// addresses from --bind on, each new connection from the next in turn
    /// (127.0.0.2 to 127.0.2.1 for 512): many clients, such as an attack
    /// from many machines.
    #[arg(long, value_name = "N", requires = "bind", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    bind_count: u32,
    /// Length of the run in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Start the measured phase at this wall-clock time, in seconds since
    /// the Unix epoch (such as `$(($(date +%s) + 3))`), once the setup is
    /// done: load generators started together then measure the same span
    /// whatever their setups take. If the setup ends later, the run starts
    /// at once, and the report says how late.
    #[arg(long, value_name = "UNIX_SECONDS")]
    start_at: Option<f64>,
    /// Stop after this many requests (and at the latest after --duration).
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds without an answer before a request counts as a timeout.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Runtime threads (default: the cores this process may run on).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
    /// CA or self-signed certificate (PEM) to trust for https.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// The server's process id, when it runs on this machine: the report
    /// gives its CPU time over the run, requests per server CPU second, and
    /// throughput per core (the CPUs the process may run on).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// The cores the server has (or is pinned to), for throughput per core;
    /// overrides what --server-pid finds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65536))]
    server_cores: Option<u64>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write a chart of latency and throughput over time to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct FixtureArgs {
    /// Directory to write ropc.toml, users.htpasswd and client-secret into.
    #[arg(long)]
    dir: PathBuf,
    /// Number of users.
    #[arg(long, default_value_t = 1000)]
    users: u64,
    /// Username before the user's number.
    #[arg(long, default_value = "user")]
    user_prefix: String,
    /// Password before the user's number.
    #[arg(long, default_value = "pass-")]
    password_prefix: String,
    /// argon2id memory in KiB.
    #[arg(long, default_value_t = 19456)]
    m_cost: u32,
    /// argon2id iterations.
    #[arg(long, default_value_t = 2)]
    t_cost: u32,
    /// argon2id lanes.
    #[arg(long, default_value_t = 1)]
    p_cost: u32,
    /// The server's listen address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: String,
    /// Serve https with ropc's self-signed certificate instead of plain http.
    #[arg(long)]
    self_signed: bool,
    /// The client's id.
    #[arg(long, default_value = "loadtest")]
    client_id: String,
    /// Replace an existing fixture in --dir.
    #[arg(long)]
    force: bool,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl RunArgs {
    fn to_spec(&self) -> Result<RunSpec, String> {
        let url: Uri = self.url.parse().map_err(|e| format!("--url {}: {e}", self.url))?;
        let token_path = url.path_and_query().map_or("/", |p| p.as_str()).parse().map_err(|e| format!("--url: {e}"))?;
        if !self.introspection_path.starts_with('/') {
            return Err("--introspection-path must start with /".into());
        }
        let introspection_path = self.introspection_path.parse().map_err(|e| format!("--introspection-path: {e}"))?;
        let client_secret = match (&self.client_secret_file, &self.client_secret) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Some(Secret::new(text.lines().next().unwrap_or("").to_owned()))
            }
            (None, Some(s)) => Some(Secret::new(s.clone())),
            (None, None) => None,
        };
        let scenario = match self.scenario {
            ScenarioArg::Password => Scenario::Password,
            ScenarioArg::Refresh => Scenario::Refresh,
            ScenarioArg::ClientCredentials => Scenario::ClientCredentials,
            ScenarioArg::Introspect => Scenario::Introspect,
            ScenarioArg::Mixed => Scenario::Mixed { password_percent: self.password_percent },
        };
        if self.users == 0 {
            return Err("--users must be at least 1".into());
        }
        if self.user_offset.checked_add(self.users).is_none() {
            return Err("--user-offset plus --users must be below 2^64".into());
        }
        let load = match self.rate {
            None => Load::Closed,
            Some(rate) if rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0 => Load::Open { rate },
            Some(_) => return Err("--rate must be more than 0 and at most 10000000".into()),
        };
        let threads = self.threads.map_or_else(cores, |t| t as usize);
        Ok(RunSpec {
            url,
            cacert: self.cacert.clone(),
            bind: self.bind,
            bind_count: self.bind_count,
            workload: WorkloadSpec {
                scenario,
                token_path,
                introspection_path,
                client_id: self.client_id.clone(),
                client_secret,
                auth: match self.auth {
                    AuthArg::Basic => ClientAuth::Basic,
                    AuthArg::Body => ClientAuth::Body,
                },
                users: Users {
                    count: self.users,
                    offset: self.user_offset,
                    user_prefix: self.user_prefix.clone(),
                    password_prefix: self.password_prefix.clone(),
                },
                scope: self.scope.clone(),
                introspect_with: match self.introspect_token_grant {
                    GrantArg::Password => Kind::Password,
                    GrantArg::ClientCredentials => Kind::ClientCredentials,
                },
                dpop: None,
            },
            connections: self.connections as usize,
            load,
            pacer: match self.pacer {
                None | Some(PacerArg::Thread) => Pacer::Thread,
                Some(PacerArg::Runtime) => Pacer::Runtime,
            },
            new_connection: self.new_connection,
            duration: duration_from_secs(self.duration, "--duration")?,
            requests: self.requests,
            timeout: duration_from_secs(self.timeout, "--timeout")?,
            progress: !self.quiet,
            shards: threads,
            start_at: match self.start_at {
                None => None,
                Some(t) if (0.0..1e11).contains(&t) => {
                    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t))
                }
                Some(_) => return Err("--start-at must be seconds since the Unix epoch".into()),
            },
            server_pid: match self.server_pid {
                Some(pid) if crate::cpu::pid_cpu_time(pid).is_none() => {
                    return Err(format!("--server-pid {pid}: no such process on this machine (or no /proc)"))
                }
                pid => pid,
            },
            server_cores: self.server_cores.map(|n| n as usize),
        })
    }
}

fn run(args: &RunArgs) -> Result<(), String> {
    let mut spec = args.to_spec()?;
    if args.dpop {
        let htu = args.url.split(['?', '#']).next().unwrap_or_default();
        let proofs = crate::dpop::DpopProofs::new(htu, args.dpop_presigned, cores())?;
        spec.workload.dpop = Some(std::sync::Arc::new(proofs));
    }
    let runtime = if spec.shards == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(spec.shards).enable_all().build()
    }
    .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let finished = runtime.block_on(run::run(&spec))?;
    let report = Report::new(&spec, &finished);
    print!("{}", report.to_text());
    if let Some(dpop) = &spec.workload.dpop {
        println!("DPoP: {} proofs presigned, {} signed during the run", args.dpop_presigned, dpop.signed_during_run());
    }
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json() + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, svg::render(&report)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn fixture(args: &FixtureArgs) -> Result<(), String> {
    let spec = FixtureSpec {
        dir: args.dir.clone(),
        users: args.users,
        user_prefix: args.user_prefix.clone(),
        password_prefix: args.password_prefix.clone(),
        params: HashParams { m_cost: args.m_cost, t_cost: args.t_cost, p_cost: args.p_cost },
        listen: args.listen.clone(),
        self_signed: args.self_signed,
        client_id: args.client_id.clone(),
        threads: cores(),
        force: args.force,
        progress: true,
    };
    let written = fixture::write(&spec)?;
    print!("{}", fixture::summary(&spec, &written));
    Ok(())
}

/// Parses the command line and runs the command. Exit status: 0 on success
/// (whatever the target answered), 1 when the command could not be done, 2
/// for a bad command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => run(args),
        Command::Fixture(args) => fixture(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ropc-loadtest: error: {message}");
            ExitCode::FAILURE
        }
    }
}
