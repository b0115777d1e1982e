//! A backend's health: a circuit breaker that fails fast while the backend
//! is down and probes until it is back, a cap on operations in flight, and
//! the metrics of each manager, labelled by its name.
//!
//! - **Closed** (up): every operation runs. [`FAILURES_TO_OPEN`] failures in
//!   a row (connect errors, timeouts) open the circuit.
//! - **Open** (down): operations fail at once with [`ManagerError::Unavailable`]
//!   and a `Retry-After` of the time left, for a backoff that starts at
//!   [`FIRST_BACKOFF`] and doubles with each failed probe, up to
//!   [`MAX_BACKOFF`].
//! - **Half-open**: once the backoff is over, one operation at a time runs
//!   as a probe; its success closes the circuit, its failure opens it again.
//!
//! So a directory that is down costs each login at most its connect
//! timeout, and only while probing; ropc recovers without a restart.

use ropc_metrics::{Exposition, Histogram, Kind};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Failures in a row that open the circuit.
pub const FAILURES_TO_OPEN: u32 = 3;
/// The first time the circuit stays open.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest time it stays open before a probe.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a credential manager could not answer. The client gets `503
/// temporarily_unavailable` with `Retry-After`; it never counts as a failed
/// login, and never ends a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagerError {
    /// The backend is unreachable, timed out, or its circuit is open.
    Unavailable {
        /// Seconds until it is worth trying again (at least 1).
        retry_after: u64,
    },
    /// Too many operations in flight on it already.
    Busy,
}

impl ManagerError {
    /// The `Retry-After` seconds to send.
    pub fn retry_after(self) -> u64 {
        match self {
            ManagerError::Unavailable { retry_after } => retry_after.max(1),
            ManagerError::Busy => 1,
        }
    }
}

impl std::fmt::Display for ManagerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManagerError::Unavailable { retry_after } => {
                write!(f, "the credential manager is unavailable (retry after {retry_after} s)")
            }
            ManagerError::Busy => f.write_str("the credential manager has too many operations in flight"),
        }
    }
}

impl std::error::Error for ManagerError {}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Whole seconds, rounded up, at least 1: a `Retry-After`.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)).max(1)
}

fn nanos_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// One manager's breaker, cap and metrics.
#[derive(Debug)]
pub struct Health {
    name: String,
    kind: &'static str,
    failures: AtomicU32,
    /// While open: until when (nanoseconds since [`epoch`]); 0 when closed.
    open_until: AtomicU64,
    /// The current backoff, nanoseconds.
    backoff: AtomicU64,
    /// A probe is running (half-open).
    probing: AtomicBool,
    /// Operations in flight, and their cap.
    in_flight: Arc<tokio::sync::Semaphore>,
    cap: usize,
    operations: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
}

/// An admitted operation: report how it ended with [`Admitted::done`] or
/// [`Admitted::failed`]; dropped unreported (its request went away), it
/// counts as neither.
#[derive(Debug)]
pub struct Admitted<'h> {
    health: &'h Health,
    started: Instant,
    probe: bool,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Health {
    /// The health of manager `name` of `kind`, with at most `cap`
    /// operations in flight.
    pub fn new(name: &str, kind: &'static str, cap: usize) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            backoff: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            in_flight: Arc::new(tokio::sync::Semaphore::new(cap)),
            cap,
            operations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Histogram::default(),
        }
    }

    /// The manager's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the circuit is closed (the backend answered last time).
    pub fn is_up(&self) -> bool {
        self.open_until.load(Ordering::Acquire) == 0
    }

    /// Lets one operation run, or fails at once: the circuit is open (and
    /// not ready for a probe, or another probe runs), or `cap` operations
    /// are in flight already.
    pub fn admit(&self) -> Result<Admitted<'_>, ManagerError> {
        let mut probe = false;
        let open_until = self.open_until.load(Ordering::Acquire);
        if open_until != 0 {
            let now = nanos_since_epoch(Instant::now());
            if now < open_until || self.probing.swap(true, Ordering::AcqRel) {
                let left = Duration::from_nanos(open_until.saturating_sub(now));
                return Err(ManagerError::Unavailable { retry_after: ceil_secs(left) });
            }
            probe = true;
        }
        let slot = match Arc::clone(&self.in_flight).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if probe {
                    self.probing.store(false, Ordering::Release);
                }
                return Err(ManagerError::Busy);
            }
        };
        Ok(Admitted { health: self, started: Instant::now(), probe, _slot: slot })
    }

    fn opened(&self, why: &str) {
        let previous = self.backoff.load(Ordering::Relaxed);
        let first = u64::try_from(FIRST_BACKOFF.as_nanos()).unwrap_or(u64::MAX);
        let max = u64::try_from(MAX_BACKOFF.as_nanos()).unwrap_or(u64::MAX);
        let backoff = if previous == 0 { first } else { previous.saturating_mul(2).min(max) };
        self.backoff.store(backoff, Ordering::Relaxed);
        let was_open =
            self.open_until.swap(nanos_since_epoch(Instant::now()).saturating_add(backoff), Ordering::AcqRel);
        if was_open == 0 {
            tracing::error!(
                event = "credential_manager_down",
                manager = %self.name,
                kind = self.kind,
                error = why,
                "the credential manager does not answer: its logins get 503 until it does"
            );
        }
    }

    fn closed(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.backoff.store(0, Ordering::Relaxed);
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!(event = "credential_manager_up", manager = %self.name, kind = self.kind, "the credential manager answers again");
        }
    }

    /// Appends this manager's samples to the families [`write_families`]
    /// opened (call once per family, in its order).
    fn sample(&self, out: &mut Exposition, family: usize) {
        let labels = format!("manager=\"{}\",kind=\"{}\"", self.name, self.kind);
        match family {
            0 => out.sample("ropc_credential_manager_up", &labels, u8::from(self.is_up())),
            1 => {
                out.sample("ropc_credential_manager_operations_total", &labels, self.operations.load(Ordering::Relaxed))
            }
            2 => out.sample("ropc_credential_manager_errors_total", &labels, self.errors.load(Ordering::Relaxed)),
            3 => out.sample(
                "ropc_credential_manager_in_flight",
                &labels,
                self.cap.saturating_sub(self.in_flight.available_permits()),
            ),
            _ => out.histogram_samples("ropc_credential_manager_duration_seconds", &labels, &self.latency),
        }
    }
}

impl Admitted<'_> {
    /// The backend answered (whatever it said about the user).
    pub fn done(self) {
        let h = self.health;
        h.operations.fetch_add(1, Ordering::Relaxed);
        h.latency.observe(self.started.elapsed());
        h.closed();
        if self.probe {
            h.probing.store(false, Ordering::Release);
        }
    }

    /// The backend did not answer (a connect error, a timeout): counted
    /// towards opening the circuit; a failed probe opens it again.
    pub fn failed(self, why: &str) {
        let h = self.health;
        h.operations.fetch_add(1, Ordering::Relaxed);
        h.errors.fetch_add(1, Ordering::Relaxed);
        h.latency.observe(self.started.elapsed());
        let failures = h.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.probe || failures >= FAILURES_TO_OPEN {
            h.opened(why);
        } else {
            tracing::warn!(manager = %h.name, kind = h.kind, error = why, "the credential manager did not answer");
        }
        if self.probe {
            h.probing.store(false, Ordering::Release);
        }
    }

    /// What to answer the caller for a failure: the backend is unavailable.
    pub fn unavailable(&self) -> ManagerError {
        let h = self.health;
        let open_until = h.open_until.load(Ordering::Acquire);
        let left = Duration::from_nanos(open_until.saturating_sub(nanos_since_epoch(Instant::now())));
        ManagerError::Unavailable { retry_after: ceil_secs(left) }
    }
}

/// Writes the families of every manager's health, labelled by name.
pub fn write_families<'a>(out: &mut Exposition, managers: impl Iterator<Item = &'a Health> + Clone) {
    let families: [(&str, Kind, &str); 5] = [
        ("ropc_credential_manager_up", Kind::Gauge, "1 while the credential manager answers (its circuit is closed)."),
        (
            "ropc_credential_manager_operations_total",
            Kind::Counter,
            "Look-ups, binds and writes sent to the credential manager.",
        ),
        (
            "ropc_credential_manager_errors_total",
            Kind::Counter,
            "Operations the credential manager did not answer (connect errors, timeouts).",
        ),
        ("ropc_credential_manager_in_flight", Kind::Gauge, "Operations on the credential manager now."),
        (
            "ropc_credential_manager_duration_seconds",
            Kind::Histogram,
            "Time of one operation on the credential manager.",
        ),
    ];
    for (i, (name, kind, help)) in families.iter().enumerate() {
        out.family(name, *kind, help);
        for health in managers.clone() {
            health.sample(out, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_circuit_opens_after_failures_fails_fast_and_a_probe_closes_it() {
        let h = Health::new("db", "sql", 4);
        for _ in 0..FAILURES_TO_OPEN - 1 {
            h.admit().unwrap().failed("refused");
            assert!(h.is_up(), "a failure or two do not open it");
        }
        h.admit().unwrap().failed("refused");
        assert!(!h.is_up());
        assert!(matches!(h.admit(), Err(ManagerError::Unavailable { retry_after: 1 })), "open: fails at once");
        tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(50)).await;
        let probe = h.admit().expect("a probe once the backoff is over");
        assert!(matches!(h.admit(), Err(ManagerError::Unavailable { .. })), "one probe at a time");
        probe.done();
        assert!(h.is_up() && h.admit().is_ok(), "the probe's success closes it");
    }

    #[tokio::test]
    async fn a_failed_probe_doubles_the_backoff_and_the_cap_refuses_the_rest() {
        let h = Health::new("dc", "ldap", 2);
        for _ in 0..FAILURES_TO_OPEN {
            h.admit().unwrap().failed("timeout");
        }
        tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(50)).await;
        h.admit().unwrap().failed("timeout");
        let Err(ManagerError::Unavailable { retry_after }) = h.admit() else { panic!("open again") };
        assert_eq!(retry_after, 2, "the backoff doubled");
        let h = Health::new("dc", "ldap", 2);
        let (a, b) = (h.admit().unwrap(), h.admit().unwrap());
        assert_eq!(h.admit().unwrap_err(), ManagerError::Busy);
        drop(a);
        assert!(h.admit().is_ok(), "a slot came back");
        drop(b);
        let mut out = Exposition::new();
        write_families(&mut out, [&h].into_iter());
        let text = out.finish();
        assert!(text.contains("ropc_credential_manager_up{manager=\"dc\",kind=\"ldap\"} 1"), "{text}");
    }
}
