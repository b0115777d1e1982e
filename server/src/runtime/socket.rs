//! The local admin socket (`[server] admin_socket`): a Unix socket of mode
//! 0600 beside the config, on which the operator's tools reach the running
//! server (`ropc sessions revoke`) whether or not an admin listener is
//! configured, and which nobody but the server's own user can open.

use crate::app::App;
use crate::http::{handle, Listener};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;

/// A bound admin socket; its file goes when it is dropped.
#[derive(Debug)]
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl AdminSocket {
    /// Binds `path` (replacing a socket file nobody listens on any more)
    /// and makes it readable and writable by this user only.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is served by another ropc", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self { listener, path: path.to_owned() })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves it until the task is aborted: HTTP/1.1, one connection at a
    /// time per accept, for the operator's tools.
    pub async fn serve(self, app: Arc<App>) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
                let service = service_fn(move |req| handle(Arc::clone(&app), req, local, Listener::Socket, None));
                let served = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                if let Err(e) = tokio::time::timeout(Duration::from_secs(60), served).await.unwrap_or(Ok(())) {
                    tracing::debug!(error = %e, "admin socket connection ended with an error");
                }
            });
        }
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
