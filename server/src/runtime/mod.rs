//! The runtime: bind, accept, hand each connection to hyper (HTTP/1.1 with
//! keep-alive, HTTP/2 when ALPN or the preface asks for it), optionally
//! behind TLS, and drain gracefully on shutdown. Also the threads and
//! signals around it: the sweeper, SIGTERM and SIGHUP.

mod signals;
mod socket;
mod sweeper;

pub use signals::{reload_on_sighup, shutdown_signal, take_sighup};
pub use socket::AdminSocket;
use sweeper::Sweeper;

use crate::app::{App, StartError};
use crate::config::{Config, TlsMode};
use crate::http::{handle, Listener};
use crate::idle::IdleTimeout;
use crate::store::Tokens;
use crate::tls;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server bound to its addresses, ready to run.
pub struct Server {
    app: Arc<App>,
    listeners: Vec<TcpListener>,
    admin: Vec<TcpListener>,
    socket: Option<AdminSocket>,
    tls: Option<TlsAcceptor>,
    /// `[server] client_ca_file`, loaded.
    client_ca: Option<Arc<tls::ClientCa>>,
    /// The certificate clients should trust, for self-signed TLS.
    pub ca_file: Option<PathBuf>,
}

impl Server {
    /// Builds the state and binds every address `listen` resolves to.
    pub async fn bind(config: Config) -> Result<Self, BindError> {
        let client_ca = match &config.client_ca_file {
            Some(path) => Some(tls::client_ca(path).map_err(BindError::Tls)?),
            None => None,
        };
        let ca = client_ca.as_ref();
        let (tls, ca_file) = match &config.tls {
            TlsMode::Off => (None, None),
            TlsMode::SelfSigned => {
                let cert = tls::ensure_self_signed(&config.dir).map_err(BindError::Tls)?;
                let (_, key) = tls::self_signed_paths(&config.dir);
                (Some(tls::server_config(&cert, &key, ca).map_err(BindError::Tls)?), Some(cert))
            }
            TlsMode::Files { cert, key } => (Some(tls::server_config(cert, key, ca).map_err(BindError::Tls)?), None),
        };
        let listeners = bind_all(&config.listen).await?;
        let admin = match &config.admin_listen {
            Some(addr) => bind_all(addr).await?,
            None => Vec::new(),
        };
        let port = listeners.first().and_then(|l| l.local_addr().ok()).map(|a| a.port());
        let app = Arc::new(App::new(config, port).map_err(BindError::Start)?);
        if let Tokens::Redis(redis) = &app.tokens {
            // Connect now, so that the log says at once whether Redis answers;
            // if it does not, requests get 503 until it does.
            if !redis.conn().ping().await {
                tracing::warn!("Redis does not answer at start: token requests get 503 until it does");
            }
        }
        let socket = match &app.boot().admin_socket {
            None => None,
            Some(path) => match AdminSocket::bind(path) {
                Ok(socket) => Some(socket),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot serve the admin socket: the operator's tools need admin_listen");
                    None
                }
            },
        };
        Ok(Self { app, listeners, admin, socket, tls: tls.map(TlsAcceptor::from), client_ca, ca_file })
    }

    /// The admin socket's path, if it is served.
    pub fn admin_socket(&self) -> Option<&std::path::Path> {
        self.socket.as_ref().map(AdminSocket::path)
    }

    /// The bound admin addresses (`/metrics`, `/healthz`).
    pub fn admin_addrs(&self) -> Vec<SocketAddr> {
        self.admin.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// The shared state.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The bound addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { app, listeners, admin, socket, tls, client_ca, .. } = self;
        // Listeners, limits and timeouts of the connection layer are set
        // once, from the configuration the server started with.
        let config = app.boot().clone();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            // Bounds the request head and, with it, how many pipelined
            // requests one connection can queue.
            .max_buf_size(config.max_header_bytes)
            .max_headers(100)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        let connections = Arc::new(Semaphore::new(config.max_connections));
        // The admin listener has its own slots, so that health and metrics
        // still answer when the main listener is full.
        let admin_connections = Arc::new(Semaphore::new(ADMIN_CONNECTIONS));
        let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
        let builder = Arc::new(builder);
        let graceful = Arc::new(GracefulShutdown::new());

        let sweeper = Sweeper::start(Arc::clone(&app));
        let mut accept_loops = Vec::new();
        let all = listeners
            .into_iter()
            .map(|l| (l, Listener::Main, tls.clone()))
            .chain(admin.into_iter().map(|l| (l, Listener::Admin, None)));
        for (socket, role, tls) in all {
            let app = Arc::clone(&app);
            let builder = Arc::clone(&builder);
            let graceful = Arc::clone(&graceful);
            let connections = Arc::clone(if role == Listener::Admin { &admin_connections } else { &connections });
            let refusals = Arc::clone(&refusals);
            let client_ca = if role == Listener::Main { client_ca.clone() } else { None };
            accept_loops.push(tokio::spawn(async move {
                loop {
                    let (stream, peer) = match socket.accept().await {
                        Ok(conn) => conn,
                        Err(e) => {
                            // Usually EMFILE: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    match Arc::clone(&connections).try_acquire_owned() {
                        Ok(permit) => {
                            let conn = Connection { stream, peer, permit };
                            let tls = tls.clone().map(|acceptor| (acceptor, client_ca.clone()));
                            serve(Arc::clone(&app), Arc::clone(&builder), &graceful, tls, conn, role)
                        }
                        Err(_) => refuse(stream, peer, tls.is_some(), &refusals),
                    }
                }
            }));
        }

        if let Some(socket) = socket {
            accept_loops.push(tokio::spawn(socket.serve(Arc::clone(&app))));
        }

        shutdown.await;
        app.start_draining();
        let delay = app.live().config.shutdown_delay;
        if !delay.is_zero() {
            tracing::info!(?delay, "shutting down: /healthz answers 503; still serving");
            tokio::time::sleep(delay).await;
        }
        tracing::info!("shutting down: no new connections, draining requests in flight");
        for l in &accept_loops {
            l.abort();
        }
        // Wait until the aborted loops are dropped, so that they release
        // their listeners and their share of the shutdown watcher.
        for l in accept_loops {
            let _ = l.await;
        }
        drop(sweeper);
        drop(builder);
        match Arc::try_unwrap(graceful) {
            Ok(graceful) => {
                if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
                    tracing::warn!("drain timed out after {DRAIN_TIMEOUT:?}; closing remaining connections");
                }
            }
            Err(_) => tracing::warn!("accept loops still hold the shutdown watcher"),
        }
    }
}

/// Connections the admin listener serves at once.
const ADMIN_CONNECTIONS: usize = 16;

/// How many refusals (over `max_connections`) may be written at once; past
/// that, extra connections are closed without a word.
const REFUSALS_IN_FLIGHT: usize = 64;

/// An accepted connection and its slot under `max_connections`.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// Refuses a connection over the limit: plain HTTP gets a `503` with
/// `Retry-After`; TLS connections are closed (answering would cost a
/// handshake, which is what the limit protects).
fn refuse(mut stream: TcpStream, peer: SocketAddr, tls: bool, refusals: &Arc<Semaphore>) {
    tracing::warn!(%peer, "connection refused: max_connections reached");
    if tls {
        return;
    }
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else { return };
    tokio::spawn(async move {
        const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 28\r\nConnection: close\r\n\r\ntoo many connections, retry\n";
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
        drop(permit);
    });
}

fn serve(
    app: Arc<App>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: &GracefulShutdown,
    tls: Option<(TlsAcceptor, Option<Arc<tls::ClientCa>>)>,
    conn: Connection,
    listener: Listener,
) {
    let watcher = graceful.watcher();
    let Connection { stream, peer, permit } = conn;
    tracing::trace!(%peer, "connection accepted");
    let stream = IdleTimeout::new(stream, app.live().config.idle_timeout);
    tokio::spawn(async move {
        let _permit = permit;
        let ip = peer.ip().to_canonical();
        let _open = app.connection_opened();
        let result = match tls {
            None => {
                let service = service_fn(move |req| handle(Arc::clone(&app), req, ip, listener, None));
                watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned()).await
            }
            Some((acceptor, client_ca)) => {
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                // RFC 8705: the certificate, if the client sent one, for
                // every request on this connection.
                let certificate = match (&client_ca, stream.get_ref().1.peer_certificates()) {
                    (Some(ca), Some(chain)) => tls::PeerCertificate::new(chain, ca).map(Arc::new),
                    _ => None,
                };
                let service = service_fn(move |req| handle(Arc::clone(&app), req, ip, listener, certificate.clone()));
                watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned()).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    });
}

/// Why the server could not start serving.
#[derive(Debug)]
pub enum BindError {
    /// The listen address does not resolve.
    Resolve(String, std::io::Error),
    /// No address it resolves to could be bound (the last error).
    Listen(SocketAddr, std::io::Error),
    /// It resolves to no address at all.
    NoAddress(String),
    /// The TLS certificate or key.
    Tls(String),
    /// The state behind the listeners.
    Start(StartError),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::Resolve(listen, e) => write!(f, "cannot resolve listen address {listen:?}: {e}"),
            BindError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            BindError::NoAddress(listen) => write!(f, "{listen:?} resolves to no address"),
            BindError::Tls(e) => f.write_str(e),
            BindError::Start(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BindError {}

/// Binds every address `listen` resolves to; fails only if none binds.
async fn bind_all(listen: &str) -> Result<Vec<TcpListener>, BindError> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host(listen).await.map_err(|e| BindError::Resolve(listen.to_owned(), e))?.collect();
    let mut listeners = Vec::new();
    let mut last_error = None;
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            Err(e) => last_error = Some(BindError::Listen(addr, e)),
        }
    }
    if listeners.is_empty() {
        return Err(last_error.unwrap_or_else(|| BindError::NoAddress(listen.to_owned())));
    }
    Ok(listeners)
}
