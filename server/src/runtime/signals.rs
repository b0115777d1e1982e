//! The signals a running server answers: SIGTERM and SIGINT drain and
//! stop it; SIGHUP commits its config file again.

use crate::app::App;
use std::sync::Arc;

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Takes over `SIGHUP` (whose default action ends the process). Call it
/// first thing in `serve`, before the slow start (users file, dummy hash),
/// so that a reload sent meanwhile is queued instead of killing the server.
#[cfg(unix)]
pub fn take_sighup() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: config reloads need a restart");
            None
        }
    }
}

/// Commits the config file again at each `SIGHUP` until the process ends.
/// The reload runs on a blocking thread (it reads files and hashes one
/// dummy password); signals that arrive meanwhile queue one more.
#[cfg(unix)]
pub async fn reload_on_sighup(app: Arc<App>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        let blocking = Arc::clone(&app);
        // The outcome is logged (config_commit or config_rejected).
        if let Ok(Ok(committed)) = tokio::task::spawn_blocking(move || blocking.reload()).await {
            app.after_commit(&committed).await;
        }
    }
}
