//! Logs through `tracing`, filtered by `RUST_LOG` (default `info`), as text
//! or JSON lines, on stderr. No secret, password or token is ever a field:
//! the types that hold them have redacting `Debug` impls, and the request log
//! records only client id, grant, username, outcome and latency.

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Safe to call once per process. Keep the
/// returned guard until the process ends: dropping it flushes the lines not
/// yet written.
///
/// Lines are written by a background thread (tracing-appender), in batches
/// through a buffer: a request thread formats its line and queues it, and
/// the writer flushes whenever the queue runs dry, so a busy server makes
/// one `write` per batch instead of one per request. The queue is bounded
/// (128,000 lines) and never drops a line: when it is full, request threads
/// wait for the writer (audit lines matter more than latency then).
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("ropc-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}
