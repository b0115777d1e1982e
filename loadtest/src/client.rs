//! Connections to the target: TCP or TLS (rustls, ring provider), HTTP/1.1
//! through hyper's low-level client (`hyper::client::conn::http1`).
//!
//! A [`Conn`] is driven by the task that sends on it: the connection future
//! is polled together with each exchange instead of running in a task of its
//! own, so a virtual user costs one task and a request costs no cross-task
//! wake-up. Between two requests nothing polls the connection; [`Conn::send`]
//! first lets it notice a close by the server, so an idle connection that the
//! server dropped is replaced without counting an error.

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::{Scheme, Uri};
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Response bodies larger than this are an error: token endpoint answers are
/// a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Where requests go: one resolved address, the `Host` header, the local
/// address to connect from, if one was chosen, and TLS settings when the
/// URL's scheme is `https`.
pub struct Target {
    /// The address connections are made to (resolved once, at start).
    pub addr: SocketAddr,
    /// The local (source) address of every connection, or the first of
    /// `bind_count` consecutive ones; `None`: the system chooses.
    pub bind: Option<IpAddr>,
    /// How many consecutive local addresses from `bind` on the connections
    /// are spread over, each new connection from the next in turn (1: all
    /// from `bind`).
    pub bind_count: u32,
    /// The `Host` header: the URL's authority.
    pub host: HeaderValue,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Connections opened so far: picks the next one's local address.
    opened: AtomicU32,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("bind", &self.bind)
            .field("bind_count", &self.bind_count)
            .field("host", &self.host)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Target {
    /// Resolves `url`'s host and prepares TLS for `https` URLs, which need
    /// `cacert` (a PEM file with the server's CA or self-signed certificate).
    /// With `bind`, every connection is made from that local address (bound
    /// before connecting, on a port the system picks), and only the host's
    /// addresses of the same family are used; an address that this machine
    /// cannot bind is an error here, not one `connect` error per request.
    /// `bind_count` (1 or more) spreads the connections over that many
    /// consecutive addresses from `bind` on (such as 127.0.0.2 to
    /// 127.0.2.1 for 512): many clients, each with an address of its own.
    pub async fn new(
        url: &Uri,
        cacert: Option<&Path>,
        bind: Option<IpAddr>,
        bind_count: u32,
    ) -> Result<Target, String> {
        let authority = url.authority().ok_or_else(|| format!("{url}: the URL has no host"))?;
        let https = match url.scheme() {
            Some(s) if *s == Scheme::HTTP => false,
            Some(s) if *s == Scheme::HTTPS => true,
            _ => return Err(format!("{url}: the URL's scheme must be http or https")),
        };
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        // `[::1]` in a URL is `::1` to the resolver and to TLS.
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare_host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if let Some(ip) = bind {
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no address"));
            }
            addrs.retain(|a| a.is_ipv4() == ip.is_ipv4());
            if addrs.is_empty() {
                let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(format!("--bind {ip}: {host} has no {family} address"));
            }
            local_socket(SocketAddr::new(ip, 0)).map_err(|e| format!("--bind {ip}: cannot bind that address: {e}"))?;
            let count = bind_count.max(1);
            let last = nth_address(ip, count - 1)
                .ok_or_else(|| format!("--bind {ip} --bind-count {count}: the range runs past the last address"))?;
            local_socket(SocketAddr::new(last, 0))
                .map_err(|e| format!("--bind-count {count}: cannot bind {last}, the range's last address: {e}"))?;
        }
        let addr = first_listening(&addrs, bind).await.ok_or_else(|| format!("{host} resolves to no address"))?;
        let tls = if https {
            let cacert = cacert.ok_or_else(|| {
                format!("{url}: https needs --cacert FILE (the server's CA or self-signed certificate)")
            })?;
            let server_name = ServerName::try_from(bare_host.to_owned())
                .map_err(|e| format!("{host}: not a valid TLS server name: {e}"))?;
            Some((tls_connector(cacert)?, server_name))
        } else {
            if cacert.is_some() {
                return Err(format!("{url}: --cacert needs an https URL"));
            }
            None
        };
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("{authority}: not a valid Host header: {e}"))?;
        Ok(Target { addr, bind, bind_count: bind_count.max(1), host, tls, opened: AtomicU32::new(0) })
    }

    /// Opens a connection: TCP (with `TCP_NODELAY`, from the `bind` address
    /// if there is one), the TLS handshake when the target is https, then
    /// the HTTP/1.1 handshake.
    pub async fn connect(&self) -> Result<Conn, TransportError> {
        let bind = self.bind.map(|first| {
            let n = self.opened.fetch_add(1, Ordering::Relaxed) % self.bind_count;
            // Checked in `new`: every address of the range exists.
            nth_address(first, n).unwrap_or(first)
        });
        let tcp = tcp_connect(self.addr, bind).await.map_err(|_| TransportError::Connect)?;
        tcp.set_nodelay(true).map_err(|_| TransportError::Connect)?;
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => {
                Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await.map_err(|_| TransportError::Tls)?))
            }
        };
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| TransportError::from_hyper(&e))?;
        Ok(Conn { sender, driver: Box::pin(driver), closed: false })
    }
}

/// The address `n` after `first` (`n = 0`: `first`), if there is one.
fn nth_address(first: IpAddr, n: u32) -> Option<IpAddr> {
    match first {
        IpAddr::V4(ip) => u32::from(ip).checked_add(n).map(|a| IpAddr::V4(a.into())),
        IpAddr::V6(ip) => u128::from(ip).checked_add(u128::from(n)).map(|a| IpAddr::V6(a.into())),
    }
}

/// A TCP connection to `addr`, from `bind` (any port) if given: tokio's
/// bind-before-connect.
async fn tcp_connect(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
    match bind {
        None => TcpStream::connect(addr).await,
        Some(ip) => local_socket(SocketAddr::new(ip, 0))?.connect(addr).await,
    }
}

/// A TCP socket bound to `local`.
fn local_socket(local: SocketAddr) -> io::Result<TcpSocket> {
    let socket = if local.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(local)?;
    Ok(socket)
}

/// The first of `addrs` (the addresses of the URL's host, such as `::1`
/// and `127.0.0.1` for `localhost`) that accepts a connection from `bind`,
/// else the first one: a server that is down shows as `connect` errors in
/// the report.
async fn first_listening(addrs: &[SocketAddr], bind: Option<IpAddr>) -> Option<SocketAddr> {
    for addr in addrs {
        let probe = tokio::time::timeout(Duration::from_secs(1), tcp_connect(*addr, bind)).await;
        if matches!(probe, Ok(Ok(_))) {
            return Some(*addr);
        }
    }
    addrs.first().copied()
}

/// A rustls client configuration that trusts the certificates in `cacert`
/// and offers only HTTP/1.1 by ALPN.
fn tls_connector(cacert: &Path) -> Result<TlsConnector, String> {
    let pem = std::fs::read(cacert).map_err(|e| format!("cannot read {}: {e}", cacert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: bad PEM: {e}", cacert.display()))?;
        roots.add(cert).map_err(|e| format!("{}: unusable certificate: {e}", cacert.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate found", cacert.display()));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Why a request got no HTTP response. [`TransportError::label`] names the
/// report's bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// The TCP connection could not be opened.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// No answer within `--timeout`.
    Timeout,
    /// The server closed the connection before the response was complete.
    Closed,
    /// The response was not valid HTTP/1.1.
    Parse,
    /// The response body was larger than [`MAX_BODY_BYTES`].
    BodyTooLarge,
    /// Another I/O or protocol error.
    Other,
}

impl TransportError {
    /// The report's name for this error.
    pub fn label(self) -> &'static str {
        match self {
            TransportError::Connect => "connect",
            TransportError::Tls => "tls",
            TransportError::Timeout => "timeout",
            TransportError::Closed => "connection_closed",
            TransportError::Parse => "bad_http",
            TransportError::BodyTooLarge => "body_too_large",
            TransportError::Other => "io",
        }
    }

    fn from_hyper(e: &hyper::Error) -> Self {
        if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
            TransportError::Parse
        } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
            TransportError::Closed
        } else if e.is_timeout() {
            TransportError::Timeout
        } else {
            TransportError::Other
        }
    }
}

/// An HTTP response, its body read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body (at most [`MAX_BODY_BYTES`]).
    pub body: Bytes,
}

/// One HTTP/1.1 connection with keep-alive.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Pin<Box<Connection<TokioIo<Stream>, Full<Bytes>>>>,
    closed: bool,
}

impl Conn {
    /// Whether a request can be sent: polls the connection once, without
    /// waiting, so that a close by the server since the last exchange is seen.
    pub async fn is_open(&mut self) -> bool {
        if self.closed || self.sender.is_closed() {
            return false;
        }
        let driver = &mut self.driver;
        let finished = poll_fn(|cx| Poll::Ready(driver.as_mut().poll(cx).is_ready())).await;
        if finished {
            self.closed = true;
        }
        !self.closed && !self.sender.is_closed()
    }

    /// Sends `request` and reads the whole response. After an error the
    /// connection may be unusable: check [`Conn::is_open`] before reusing it.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Reply, TransportError> {
        let Conn { sender, driver, closed } = self;
        let exchange = async {
            sender.ready().await.map_err(|e| TransportError::from_hyper(&e))?;
            let response = sender.send_request(request).await.map_err(|e| TransportError::from_hyper(&e))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| match e.downcast_ref::<hyper::Error>() {
                    Some(e) => TransportError::from_hyper(e),
                    None => TransportError::BodyTooLarge,
                })?
                .to_bytes();
            Ok(Reply { status, body })
        };
        let mut exchange = pin!(exchange);
        if !*closed {
            tokio::select! {
                biased;
                reply = &mut exchange => return reply,
                _ = driver.as_mut() => *closed = true,
            }
        }
        // The connection has finished (a `Connection: close` answer, or an
        // error): whatever it delivered is in the exchange's channels.
        exchange.await
    }
}

/// A plain or TLS stream, so that [`Conn`] has one type for both.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::nth_address;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_count_on_across_octets_and_stop_at_the_last() {
        assert_eq!(nth_address(ip("127.0.0.2"), 0), Some(ip("127.0.0.2")));
        assert_eq!(nth_address(ip("127.0.0.2"), 511), Some(ip("127.0.2.1")));
        assert_eq!(nth_address(ip("255.255.255.254"), 1), Some(ip("255.255.255.255")));
        assert_eq!(nth_address(ip("255.255.255.254"), 2), None);
        assert_eq!(nth_address(ip("::1"), 0xffff), Some(ip("::1:0")));
        assert_eq!(nth_address(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), 2), None);
    }
}
