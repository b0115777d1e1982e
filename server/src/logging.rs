//! Logs through `tracing`, filtered by `RUST_LOG` (default `info`), as text
//! or JSON lines, on stderr. No secret, password or token is ever a field:
//! the types that hold them have redacting `Debug` impls, and the request log
//! records only client id, grant, username, outcome and latency.
//!
//! Lines are written by one background thread, in batches. A request thread
//! formats its line and appends it to a shared buffer under a short lock; it
//! wakes the writer only when the writer sleeps with nothing to do, or when
//! the buffer holds [`FLUSH_BYTES`]. Otherwise the writer comes back on its
//! own every [`FLUSH_INTERVAL`]. Under a flood of audit lines (1,000 locked
//! attempts a second) that is 100 wake-ups a second instead of 1,000, each
//! of which would have taken a core from a hash worker. A line after a quiet
//! spell is written at once. No line is dropped: past [`MAX_BYTES`] request
//! threads wait for the writer (audit lines matter more than latency then).

use parking_lot::{Condvar, Mutex};
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// How long a line may wait in the buffer while lines keep coming.
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// A buffer this full is written without waiting for the interval.
const FLUSH_BYTES: usize = 64 * 1024;
/// A buffer this full makes request threads wait for the writer.
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// How long dropping the guard waits for the last lines to be written
/// (stderr may be a pipe that nobody reads).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Installs the global subscriber. Safe to call once per process. Keep the
/// returned guard until the process ends: dropping it writes the lines not
/// yet written.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = BatchWriter::start(std::io::stderr(), MAX_BYTES);
    if !ansi {
        // Request lines skip tracing's formatter; the same bytes come out.
        let format = match format {
            LogFormat::Text => crate::access_log::Format::Text,
            LogFormat::Json => crate::access_log::Format::Json,
        };
        let lines = writer.clone();
        crate::access_log::install(format, Box::new(move |line| lines.append(line)));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}

/// The request threads' side: a `MakeWriter` whose writes append to the
/// shared buffer.
#[derive(Clone, Debug)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread once everything buffered is written.
#[derive(Debug)]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when the writer empties the buffer, and when it stops.
    space: Condvar,
    /// The writer thread, set by the thread itself before it first sleeps.
    writer: OnceLock<Thread>,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    buf: Vec<u8>,
    /// The writer sleeps until woken (it found the buffer empty).
    idle: bool,
    /// The writer was already woken for a full buffer.
    kicked: bool,
    /// The guard was dropped: write what is left, then stop.
    closed: bool,
    /// No writer thread (it could not start, or it stopped): write in
    /// place. Set by the thread once the buffer is empty after `closed`,
    /// so a line never overtakes one buffered before it.
    direct: bool,
}

impl BatchWriter {
    /// Starts the writer thread over `sink`. Returns the writer for the
    /// subscriber and the guard that stops the thread.
    fn start(sink: impl Write + Send + 'static, max_bytes: usize) -> (Self, LogGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            space: Condvar::new(),
            writer: OnceLock::new(),
            max_bytes,
        });
        let for_thread = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name("ropc-log".into()).spawn(move || write_batches(&for_thread, sink));
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                shared.state.lock().direct = true;
                eprintln!("ropc: cannot start the log thread ({e}); writing log lines in place");
                None
            }
        };
        (Self { shared: Arc::clone(&shared) }, LogGuard { shared, thread })
    }

    fn append(&self, line: &[u8]) {
        let mut state = self.shared.state.lock();
        while state.buf.len() >= self.shared.max_bytes && !state.direct {
            self.shared.space.wait(&mut state);
        }
        if state.direct {
            // No writer any more: the line goes straight out (stderr is
            // unbuffered).
            drop(state);
            let _ = std::io::stderr().write_all(line);
            return;
        }
        state.buf.extend_from_slice(line);
        let wake = if state.idle {
            state.idle = false;
            true
        } else if !state.kicked && state.buf.len() >= FLUSH_BYTES {
            state.kicked = true;
            true
        } else {
            false
        };
        drop(state);
        if wake {
            if let Some(writer) = self.shared.writer.get() {
                writer.unpark();
            }
        }
    }
}

/// One formatted event; tracing-subscriber writes each event in one call.
#[derive(Debug)]
pub struct LineWriter<'a> {
    writer: &'a BatchWriter,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { writer: self }
    }
}

/// The writer thread: takes the whole buffer, writes it outside the lock,
/// then sleeps for the interval (lines keep coming) or until woken (the
/// buffer was empty).
fn write_batches(shared: &Shared, mut sink: impl Write) {
    let _ = shared.writer.set(std::thread::current());
    // However this thread ends (a panic included), request threads must
    // not wait for it any more.
    let _stopped = Stopped(shared);
    let mut out = Vec::new();
    loop {
        let closed = {
            let mut state = shared.state.lock();
            if state.buf.is_empty() {
                if state.closed {
                    // Under the lock: a line appended after this goes
                    // straight out instead of into a buffer nobody reads.
                    state.direct = true;
                    return;
                }
                state.idle = true;
                drop(state);
                std::thread::park();
                continue;
            }
            std::mem::swap(&mut state.buf, &mut out);
            state.kicked = false;
            state.closed
        };
        shared.space.notify_all();
        if sink.write_all(&out).and_then(|()| sink.flush()).is_err() {
            // stderr is gone (a closed pipe): nothing better to do with
            // the lines than drop them, as a direct write would.
        }
        out.clear();
        if out.capacity() > 16 * FLUSH_BYTES {
            // After a burst: do not keep a burst-sized buffer for good.
            out.shrink_to(FLUSH_BYTES);
        }
        if !closed {
            std::thread::park_timeout(FLUSH_INTERVAL);
        }
    }
}

/// Switches request threads to writing in place when the writer stops,
/// after writing what is still buffered (if the writer died with lines in
/// it), under the lock so that no line overtakes them.
struct Stopped<'a>(&'a Shared);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        if !state.buf.is_empty() {
            let _ = std::io::stderr().write_all(&state.buf);
            state.buf = Vec::new();
        }
        state.direct = true;
        drop(state);
        self.0.space.notify_all();
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // Wait for the last lines, but not forever: a stalled stderr
            // must not keep the process from exiting.
            let deadline = std::time::Instant::now() + SHUTDOWN_WAIT;
            let mut state = self.shared.state.lock();
            while !state.direct {
                if self.shared.space.wait_until(&mut state, deadline).timed_out() {
                    return;
                }
            }
            drop(state);
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read, slow enough to make writers wait.
    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_micros(200));
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_once_in_order_per_thread_even_when_the_buffer_fills() {
        let sink = Sink::default();
        // A 4 KiB limit: the four threads below wait for the writer often.
        let (writer, guard) = BatchWriter::start(sink.clone(), 4096);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&writer);
                        w.write_all(format!("t{t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        let mut lines = 0;
        for line in text.lines() {
            let (t, i) = line.split_once(" line ").unwrap();
            let t: usize = t[1..].parse().unwrap();
            let i: usize = i.parse().unwrap();
            assert_eq!(i, next[t], "thread {t}: line {i} out of order");
            next[t] += 1;
            lines += 1;
        }
        assert_eq!(lines, 80_000);
    }

    /// A sink whose first write panics, as a bug in the writer would.
    struct Panics;

    impl Write for Panics {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            panic!("the log sink fails (on purpose, in a test)");
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_writer_that_dies_does_not_leave_request_threads_waiting() {
        // 64 bytes fill the buffer: without the writer's stop guard, the
        // second batch of lines would wait for a writer that is gone.
        let (writer, guard) = BatchWriter::start(Panics, 64);
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for i in 0..12 {
                let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&writer);
                w.write_all(format!("ropc test {i:02}\n").as_bytes()).unwrap();
            }
            done.send(()).unwrap();
        });
        finished.recv_timeout(Duration::from_secs(30)).expect("a request thread is stuck");
        drop(guard);
    }

    #[test]
    fn a_line_after_a_quiet_spell_is_written_at_once() {
        let sink = Sink::default();
        let (writer, _guard) = BatchWriter::start(sink.clone(), MAX_BYTES);
        // Let the writer find the buffer empty and go to sleep.
        std::thread::sleep(Duration::from_millis(50));
        let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&writer);
        w.write_all(b"hello\n").unwrap();
        // Not at once in a timing sense (no timed test): the writer must
        // have been woken, since without a wake it would sleep forever.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().as_slice() != b"hello\n" {
            assert!(std::time::Instant::now() < deadline, "the sleeping writer was not woken");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
