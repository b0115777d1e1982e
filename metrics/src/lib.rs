//! ropc-metrics: the pieces every part of ropc writes its metrics with, in
//! the Prometheus text exposition format (version 0.0.4).
//!
//! - [`Histogram`]: fixed buckets of atomic counters, observed from any
//!   thread without a lock.
//! - [`Exposition`]: the text being written. Each part of the server owns
//!   its metrics and writes them itself (`write_metrics(&self, &mut
//!   Exposition)`); the `/metrics` handler only strings the parts together.
//! - [`moving_mean`]: the exponentially weighted mean the hash pool, the
//!   answer pacing and the delays use.
//!
//! Label values come from closed sets chosen by the caller, so the number
//! of series stays bounded whatever clients send.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency histogram bucket bounds, seconds.
pub const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A histogram over [`BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// A metric's type, as the `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A count that only goes up.
    Counter,
    /// Bucketed observations.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// The exposition text being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition with room for a typical scrape.
    pub fn new() -> Self {
        Self { out: String::with_capacity(8192) }
    }

    /// The `# HELP` and `# TYPE` lines of a family; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the current family; `labels` is `key="value",...`
    /// (empty for none).
    pub fn sample(&mut self, name: &str, labels: &str, value: impl Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, "", value);
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, Kind::Counter, help);
        self.sample(name, "", value);
    }

    /// A histogram without labels.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, Kind::Histogram, help);
        self.histogram_samples(name, "", h);
    }

    /// The samples of one labelled histogram of the current family.
    pub fn histogram_samples(&mut self, name: &str, labels: &str, h: &Histogram) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(self.out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(self.out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// An exponentially weighted moving mean: `sample` moves it by 1/`n` of the
/// difference (the first sample, when `old` is 0, sets it).
pub fn moving_mean(old: u64, sample: u64, n: u64) -> u64 {
    if old == 0 {
        sample
    } else {
        old - old / n + sample / n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_exposition_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let mut e = Exposition::new();
        e.family("d", Kind::Histogram, "help");
        e.histogram_samples("d", "endpoint=\"token\"", &h);
        let out = e.finish();
        assert!(out.starts_with("# HELP d help\n# TYPE d histogram\n"), "{out}");
        assert!(out.contains("d_bucket{endpoint=\"token\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("d_bucket{endpoint=\"token\",le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("d_bucket{endpoint=\"token\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("d_count{endpoint=\"token\"} 3\n"), "{out}");
        let mut e = Exposition::new();
        e.gauge("g", "a gauge", 7);
        assert_eq!(e.finish(), "# HELP g a gauge\n# TYPE g gauge\ng 7\n");
    }

    #[test]
    fn moving_mean_starts_at_the_first_sample() {
        assert_eq!(moving_mean(0, 800, 8), 800);
        assert_eq!(moving_mean(800, 1600, 8), 900);
    }
}
