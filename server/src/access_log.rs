//! The request log's line, written without tracing's formatter: one line
//! per request is the log's whole volume under load, and tracing's
//! formatter (its field visitors, its clock, its writer per event) cost a
//! tenth of a cheap grant's CPU. The line is byte for byte the one
//! tracing-subscriber writes for the same event, as text or as JSON (a test
//! holds the two together), so nothing that reads the log can tell.
//!
//! It is taken only where tracing would write plain lines (no ANSI colour,
//! that is not to a terminal), and only for an event the filter lets
//! through (`tracing::enabled!` at the call site): `RUST_LOG` keeps its
//! meaning.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The line format, as `--log-format` chose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// tracing-subscriber's default text line.
    Text,
    /// tracing-subscriber's JSON line, with the event's fields flattened.
    Json,
}

/// Where a finished line goes: the log's batch writer.
pub type Sink = Box<dyn Fn(&[u8]) + Send + Sync>;

struct Installed {
    format: Format,
    sink: Sink,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Routes request lines to `sink` from now on (once per process).
pub fn install(format: Format, sink: Sink) {
    let _ = INSTALLED.set(Installed { format, sink });
}

/// tracing's target for the request line: the module that writes it, as
/// before this writer, so that `RUST_LOG` directives naming it still apply.
pub const TARGET: &str = "ropc_server::http::observe";

/// One request's line.
#[derive(Debug)]
pub struct Fields<'a> {
    /// The audit event: `request`, `login_success`, ...
    pub event: &'static str,
    /// The endpoint's name.
    pub endpoint: &'static str,
    /// The client id, as sent (Debug-quoted in the line).
    pub client: &'a str,
    /// The grant type.
    pub grant: &'static str,
    /// The username, as sent (Debug-quoted in the line).
    pub user: &'a str,
    /// The HTTP status.
    pub status: u16,
    /// `issued`, `revoked`, or the OAuth error code.
    pub outcome: &'static str,
    /// The reason of an error, for the operator.
    pub reason: Option<&'static str>,
    /// The request's latency.
    pub latency_us: u64,
}

/// Writes the request's line: by the writer here, or as a tracing event
/// where none is installed (a terminal, whose lines tracing colours).
pub fn log(fields: &Fields<'_>) {
    if !write(fields) {
        emit(fields);
    }
}

/// The line as a tracing event: what [`format_line`] writes byte for byte.
/// (`reason`, an `Option`, is left out when `None`, as tracing records it.)
pub fn emit(f: &Fields<'_>) {
    tracing::info!(
        target: TARGET,
        event = f.event,
        endpoint = f.endpoint,
        client = ?f.client,
        grant = f.grant,
        user = ?f.user,
        status = f.status,
        outcome = f.outcome,
        reason = f.reason,
        latency_us = f.latency_us
    );
}

/// Writes the line and returns true; false when no sink is installed.
fn write(fields: &Fields<'_>) -> bool {
    let Some(installed) = INSTALLED.get() else { return false };
    thread_local! {
        static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
    }
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        line.clear();
        format_line(&mut line, installed.format, SystemTime::now(), fields);
        (installed.sink)(line.as_bytes());
    });
    true
}

/// The line for `fields` at `now`, newline included.
pub fn format_line(out: &mut String, format: Format, now: SystemTime, f: &Fields<'_>) {
    match format {
        Format::Text => {
            timestamp(out, now);
            out.push_str("  INFO ");
            out.push_str(TARGET);
            out.push_str(": event=");
            debug(out, f.event);
            out.push_str(" endpoint=");
            debug(out, f.endpoint);
            out.push_str(" client=");
            debug(out, f.client);
            out.push_str(" grant=");
            debug(out, f.grant);
            out.push_str(" user=");
            debug(out, f.user);
            out.push_str(" status=");
            number(out, u64::from(f.status));
            out.push_str(" outcome=");
            debug(out, f.outcome);
            if let Some(reason) = f.reason {
                out.push_str(" reason=");
                debug(out, reason);
            }
            out.push_str(" latency_us=");
            number(out, f.latency_us);
            out.push('\n');
        }
        Format::Json => {
            out.push_str("{\"timestamp\":\"");
            timestamp(out, now);
            out.push_str("\",\"level\":\"INFO\"");
            member(out, "event", f.event);
            member(out, "endpoint", f.endpoint);
            // `client = ?client`: tracing records the Debug form.
            let mut quoted = String::with_capacity(f.client.len().max(f.user.len()) + 2);
            debug(&mut quoted, f.client);
            member(out, "client", &quoted);
            member(out, "grant", f.grant);
            quoted.clear();
            debug(&mut quoted, f.user);
            member(out, "user", &quoted);
            out.push_str(",\"status\":");
            number(out, u64::from(f.status));
            member(out, "outcome", f.outcome);
            if let Some(reason) = f.reason {
                member(out, "reason", reason);
            }
            out.push_str(",\"latency_us\":");
            number(out, f.latency_us);
            member(out, "target", TARGET);
            out.push_str("}\n");
        }
    }
}

/// `s` as `{:?}` writes it: quoted, with Rust's escapes. Plain ASCII (ids,
/// codes, most usernames) is copied; anything else goes through `Debug`.
fn debug(out: &mut String, s: &str) {
    if s.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\' && b != b'\'') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// A decimal number, without the formatter.
fn number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits.
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// `,"key":"value"`, the value escaped as serde_json escapes it.
fn member(out: &mut String, key: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's default
/// timer writes it: `2026-12-08T03:23:45.787109Z`.
/// The date and time to the second is formatted once a second per thread.
fn timestamp(out: &mut String, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let (days, rem) = (secs / 86_400, secs % 86_400);
            let (year, month, day) = civil_from_days(days);
            cached.1.clear();
            let _ = write!(
                cached.1,
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            );
            cached.0 = secs;
        }
        out.push_str(&cached.1);
    });
    let mut micros = since.subsec_micros();
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.extend(digits.iter().map(|&d| char::from(d)));
    out.push('Z');
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc_3339_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let mut s = String::new();
            timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros));
            s
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_765_164_225, 787_109), "2025-12-08T03:23:45.787109Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        // The same second again, from the cache.
        assert_eq!(at(4_107_542_400, 10), "2100-03-01T00:00:00.000010Z");
    }

    /// What tracing-subscriber writes for the same event.
    fn by_tracing(json: bool, f: &Fields<'_>) -> String {
        let buf = crate::test_log::Capture::default();
        let writer = buf.clone();
        let builder = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone());
        let by_the_server = || emit(f);
        if json {
            tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), by_the_server);
        } else {
            tracing::subscriber::with_default(builder.finish(), by_the_server);
        }
        buf.text()
    }

    /// The line with its timestamp cut out.
    fn untimed(line: &str) -> String {
        match line.find("\"timestamp\":\"") {
            Some(at) => format!("{}{}", &line[..at], &line[at + 13 + 27..]),
            None => line[27..].to_owned(),
        }
    }

    #[test]
    fn lines_are_the_ones_tracing_writes() {
        let users = [
            "alice",
            "-",
            "o'neil ~x",
            "a\"b\\c",
            "new\nline\r\t",
            "nul\u{0}bell\u{7}",
            "émile 名前",
            "zw\u{200b}j\u{301}",
        ];
        for (i, user) in users.iter().enumerate() {
            let fields = Fields {
                event: if i % 2 == 0 { "login_failure" } else { "request" },
                endpoint: "token",
                client: if i % 3 == 0 { "legacy" } else { "cli\"ent\u{1b}[31m" },
                grant: "password",
                user,
                status: if i % 2 == 0 { 400 } else { 200 },
                outcome: if i % 2 == 0 { "invalid_grant" } else { "issued" },
                reason: (i % 2 == 0).then_some("wrong_password"),
                latency_us: 17 * i as u64,
            };
            for (json, format) in [(false, Format::Text), (true, Format::Json)] {
                let mut ours = String::new();
                format_line(&mut ours, format, SystemTime::now(), &fields);
                let theirs = by_tracing(json, &fields);
                assert_eq!(untimed(&ours), untimed(&theirs), "{format:?} for {user:?}");
                assert!(ours.ends_with('\n') && ours.matches('\n').count() == 1, "one line: {ours:?}");
            }
        }
    }
}
