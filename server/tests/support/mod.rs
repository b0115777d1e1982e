//! Test support: start the real `ropc` binary on an ephemeral port with a
//! config written here, and talk HTTP(S) to it with hyper's client.

#![allow(dead_code)]

pub mod db;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use ropc_hash::{hash_password, HashParams};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

pub mod ldap;

/// Small argon2 costs keep the suite fast; the dummy hash uses the same.
pub const TEST_PARAMS: HashParams = HashParams { m_cost: 256, t_cost: 1, p_cost: 1 };

pub fn hash(secret: &str) -> String {
    hash_password(secret.as_bytes(), TEST_PARAMS).unwrap()
}

pub fn ropc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ropc"))
}

/// The standard fixture: three scopes, four clients, two users.
pub fn standard_config(extra_token_service: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
tls = "off"

[token_service]
access_token_ttl = 300
refresh_token_ttl = 3600
{extra_token_service}

[credential_manager]
users_file = "users.htpasswd"

[credential_manager.argon2]
m_cost = 256
t_cost = 1
p_cost = 1

[[scopes]]
name = "read"

[[scopes]]
name = "write"

[[scopes]]
name = "admin"

[[clients]]
id = "legacy"
secret = "{legacy}"
capabilities = ["password", "refresh_token"]
scopes = ["read", "write"]
default_scopes = ["read"]

[[clients]]
id = "norefresh"
secret = "{norefresh}"
capabilities = ["password"]
scopes = ["read"]
default_scopes = ["read"]

[[clients]]
id = "machine"
secret = "{machine}"
capabilities = ["client_credentials"]
scopes = ["read", "write", "admin"]
default_scopes = ["read"]

[[clients]]
id = "other"
secret = "{other}"
capabilities = ["password", "refresh_token"]
scopes = ["read", "write"]
default_scopes = ["read", "write"]
"#,
        legacy = hash("legacy-secret"),
        norefresh = hash("norefresh-secret"),
        machine = hash("machine-secret"),
        other = hash("other-secret"),
    )
}

pub fn standard_users() -> String {
    format!("# test users\nalice:{}\nj\u{f6}rg:{}\n", hash("wonderland"), hash("p\u{e4}ssw\u{f6}rd: with space"))
}

/// Tests that measure time take this exclusively; every other server holds
/// it shared, so no other test's server competes for the CPU meanwhile.
static CPU: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Exclusive use of the machine for a timing-sensitive test; the
/// [`shared`] guards its own fixtures and servers take meanwhile are no-ops.
pub fn exclusive() -> Exclusive {
    let guard = CPU.write().unwrap_or_else(|e| e.into_inner());
    HELD.with(|h| h.set(h.get() + 1));
    Exclusive(guard)
}

/// See [`exclusive`].
pub struct Exclusive(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>);

impl Drop for Exclusive {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get() - 1));
    }
}

thread_local! {
    /// Shared guards this thread holds (a test runs on one thread).
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Shared use of the machine: held by every [`Server`] and by fixtures
/// that burn CPU. Reentrant within a thread: a test that holds one (a
/// database fixture) and takes another (its server) must not queue behind
/// an [`exclusive`] waiter that waits for its first, which would deadlock.
pub struct Shared(Option<std::sync::RwLockReadGuard<'static, ()>>);

impl Drop for Shared {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get() - 1));
    }
}

/// Shared use of the machine, for tests that burn CPU without a [`Server`].
pub fn shared() -> Shared {
    let nested = HELD.with(|h| {
        h.set(h.get() + 1);
        h.get() > 1
    });
    Shared((!nested).then(|| CPU.read().unwrap_or_else(|e| e.into_inner())))
}

/// A running `ropc serve`, killed on drop.
pub struct Server {
    _cpu: Option<Shared>,
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub logs: Arc<Mutex<String>>,
    pub stdout: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(config: &str, users: &str) -> Server {
        Self::start_with_env(config, users, &[])
    }

    /// Starts a server without taking the shared CPU guard (for a test that
    /// holds [`exclusive`]).
    pub fn start_unshared(config: &str, users: &str) -> Server {
        let mut s = Self::start_inner_guarded(config, users, &[], "ropc listening on http://", None);
        s._cpu = None;
        s
    }

    /// Starts a server whose "listening" line has another scheme prefix.
    pub fn start_with_listen_prefix(config: &str, users: &str, prefix: &str) -> Server {
        Self::start_inner(config, users, &[], prefix)
    }

    pub fn start_with_env(config: &str, users: &str, env: &[(&str, &str)]) -> Server {
        Self::start_inner(config, users, env, "ropc listening on http://")
    }

    fn start_inner(config: &str, users: &str, env: &[(&str, &str)], prefix: &str) -> Server {
        let guard = shared();
        Self::start_inner_guarded(config, users, env, prefix, Some(guard))
    }

    fn start_inner_guarded(
        config: &str,
        users: &str,
        env: &[(&str, &str)],
        prefix: &str,
        cpu: Option<Shared>,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ropc.toml"), config).unwrap();
        std::fs::write(dir.path().join("users.htpasswd"), users).unwrap();
        let mut cmd = ropc();
        cmd.arg("serve").arg("--config").arg(dir.path().join("ropc.toml"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, stdout, logs) = spawn(cmd, dir.path());
        let addr = wait_for(&stdout, prefix, Duration::from_secs(30)).trim().parse().expect("listen address");
        Server { _cpu: cpu, child, addr, dir, logs, stdout }
    }

    pub async fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.addr, None, Method::POST, path, body, headers, true).await
    }

    /// POST to the token endpoint as a form.
    pub async fn token(&self, body: &str) -> Reply {
        self.post("/oauth/v2/oauth-token", body, &[]).await
    }

    /// POST to the token endpoint with HTTP Basic client authentication.
    pub async fn token_basic(&self, id: &str, secret: &str, body: &str) -> Reply {
        let auth = ropc_core::basic::encode(id, secret);
        self.post("/oauth/v2/oauth-token", body, &[("authorization", &auth)]).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, None, Method::GET, path, "", &[], false).await
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Whether the log gets a line containing `needle` within a few seconds
    /// (the log is written by another process and read by another thread).
    pub fn log_shows(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.logs.lock().unwrap().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Kills the server with SIGKILL (no chance to flush or clean up) and
    /// hands back its directory.
    pub fn kill9(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Starts `ropc serve` again on the files in `dir` (a new port).
    pub fn start_in(dir: tempfile::TempDir) -> Server {
        let guard = shared();
        let mut cmd = ropc();
        cmd.arg("serve").arg("--config").arg(dir.path().join("ropc.toml"));
        let (child, stdout, logs) = spawn(cmd, dir.path());
        let addr = wait_for(&stdout, "ropc listening on http://", Duration::from_secs(30)).trim().parse().unwrap();
        Server { _cpu: Some(guard), child, addr, dir, logs, stdout }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` in `cwd`, collecting stdout and stderr in the background.
pub fn spawn(mut cmd: Command, cwd: &Path) -> (Child, Arc<Mutex<String>>, Arc<Mutex<String>>) {
    cmd.current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let set_here = cmd.get_envs().any(|(k, _)| k == "RUST_LOG");
    if !set_here && std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let mut child = cmd.spawn().expect("spawn ropc");
    let collect = |pipe: Box<dyn std::io::Read + Send>| {
        let buf = Arc::new(Mutex::new(String::new()));
        let b = Arc::clone(&buf);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut b = b.lock().unwrap();
                b.push_str(&line);
                b.push('\n');
            }
        });
        buf
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    (child, stdout, stderr)
}

/// Waits until a line of `buf` starts with `prefix`; returns the rest.
pub fn wait_for(buf: &Arc<Mutex<String>>, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(rest) = buf.lock().unwrap().lines().find_map(|l| l.strip_prefix(prefix)) {
            return rest.to_owned();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {prefix:?}; output so far:\n{}", buf.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error member: {}", self.body)).to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request on a new connection (HTTPS when `ca` is given).
pub async fn request(
    addr: SocketAddr,
    ca: Option<(&Path, &str)>,
    method: Method,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
    form: bool,
) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let host = ca.map_or_else(|| addr.to_string(), |(_, name)| format!("{name}:{}", addr.port()));
    let mut builder = Request::builder().method(method).uri(path).header("host", host);
    if form {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let response = match ca {
        None => send(TokioIo::new(stream), req).await,
        Some((ca, name)) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(ca).unwrap();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
            let tls = connector.connect(server_name, stream).await.expect("TLS handshake");
            send(TokioIo::new(tls), req).await
        }
    };
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Reply { status: parts.status.as_u16(), headers: parts.headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

async fn send<T>(io: TokioIo<T>, req: Request<Full<Bytes>>) -> http::Response<hyper::body::Incoming>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("handshake");
    tokio::spawn(conn);
    sender.send_request(req).await.expect("send")
}

/// A directory path as a string, for messages.
pub fn display(p: &Path) -> String {
    p.display().to_string()
}

pub fn path_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// Sends raw bytes on a new connection (from `from`, a loopback address, when
/// given) and reads until the server closes or `wait` passes.
pub async fn raw(addr: SocketAddr, from: Option<std::net::IpAddr>, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect_from(addr, from).await;
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects to `addr`, optionally from another loopback address.
pub async fn connect_from(addr: SocketAddr, from: Option<std::net::IpAddr>) -> TcpStream {
    match from {
        None => TcpStream::connect(addr).await.expect("connect"),
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
            socket.connect(addr).await.expect("connect")
        }
    }
}

/// A form POST to the token endpoint from another loopback address.
pub async fn token_from(server: &Server, from: std::net::IpAddr, body: &str, basic: (&str, &str)) -> Reply {
    token_to(server.addr, from, body, basic).await
}

/// [`token_from`] for a task that does not hold the server.
pub async fn token_to(addr: SocketAddr, from: std::net::IpAddr, body: &str, basic: (&str, &str)) -> Reply {
    let auth = ropc_core::basic::encode(basic.0, basic.1);
    let request = format!(
        "POST /oauth/v2/oauth-token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let text = raw(addr, Some(from), request.as_bytes(), Duration::from_secs(10)).await;
    parse_reply(&text)
}

/// Parses a whole HTTP/1.1 response (no chunked bodies).
pub fn parse_reply(text: &str) -> Reply {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.trim().as_bytes()), v.trim().parse()) {
                headers.append(k, v);
            }
        }
    }
    Reply { status, headers, body: body.to_owned() }
}

/// A `redis-server` of the test's own on a free loopback port, with an
/// append-only file fsynced at every write in its own directory, so that a
/// restart keeps what was stored. Killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = Redis { child: None, port, dir };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again, on the same port and files) and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); the Redis tests need it on PATH (Debian: apt-get install redis-server)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills it (SIGKILL) and waits until the port is closed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The standard config with its tokens in Redis at `url`.
pub fn redis_config(url: &str, extra_token_service: &str) -> String {
    format!("{}\n[token_store]\nkind = \"redis\"\nurl = \"{url}\"\n", standard_config(extra_token_service))
}

/// Sends one form request on a new plain connection; `None` if the
/// connection fails at any point (the server died).
pub async fn try_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Option<Reply> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder.body(Full::new(Bytes::from(body.to_owned()))).ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let response = sender.send_request(req).await.ok()?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.ok()?.to_bytes();
    Some(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// A Redis Cluster of three primaries of the test's own (no replicas, no
/// persistence), on free loopback ports. Killed on drop.
pub struct RedisCluster {
    nodes: Vec<Redis>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--dir"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server");
            nodes.push(Redis { child: Some(child), port, dir });
        }
        for n in &nodes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", n.port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = nodes.iter().all(|n| {
                let info = Command::new("redis-cli").args(["-p", &n.port.to_string(), "cluster", "info"]).output();
                info.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    /// The `cluster_nodes` value for the config.
    pub fn nodes_toml(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(|n| format!("\"redis://127.0.0.1:{}\"", n.port)).collect();
        format!("[{}]", urls.join(", "))
    }
}

/// The standard config with its tokens in the Redis Cluster `cluster`.
pub fn redis_cluster_config(cluster: &RedisCluster) -> String {
    format!("{}\n[token_store]\nkind = \"redis\"\ncluster_nodes = {}\n", standard_config(""), cluster.nodes_toml())
}

/// The value of an unlabelled (or fully labelled) sample in a scrape.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// Sends `n` token requests with `body` at once, the `legacy` client
/// authenticated by Basic, each on its own connection; returns their tasks.
pub fn spawn_logins(server: &Server, n: usize, body: &'static str) -> Vec<tokio::task::JoinHandle<Reply>> {
    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    (0..n)
        .map(|_| {
            let (addr, auth) = (server.addr, auth.clone());
            tokio::spawn(async move {
                let headers = [("authorization", auth.as_str())];
                request(addr, None, Method::POST, "/oauth/v2/oauth-token", body, &headers, true).await
            })
        })
        .collect()
}

/// Waits until the server has handed at least `n` password hashes to its
/// pool (queued, being hashed or hashed): every request counted is read and
/// in flight.
pub async fn wait_until_hashes_submitted(server: &Server, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = server.get("/metrics").await.body;
        let submitted = ["ropc_hash_completed_total", "ropc_hash_queue_length", "ropc_hash_busy_workers"]
            .iter()
            .map(|s| sample(&m, s).unwrap_or(0.0))
            .sum::<f64>();
        if submitted >= n {
            return;
        }
        assert!(Instant::now() < deadline, "the requests never arrived:\n{m}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The string member `k` of a JSON answer.
pub fn s(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("no {k} in {v}")).to_owned()
}

/// A refresh grant with HTTP Basic client authentication.
pub async fn refresh(server: &Server, client: &str, secret: &str, rt: &str) -> Reply {
    server.token_basic(client, secret, &format!("grant_type=refresh_token&refresh_token={rt}")).await
}

/// Introspects `token` as the client `legacy`; the answer must be 200.
pub async fn introspect(server: &Server, token: &str) -> serde_json::Value {
    let auth = ropc_core::basic::encode("legacy", "legacy-secret");
    let r = server.post("/oauth/v2/oauth-introspect", &format!("token={token}"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}
