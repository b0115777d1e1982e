//! Prometheus metrics: fixed-size atomic counters and histograms, written
//! in the text exposition format (version 0.0.4). Label values come from
//! closed sets, so the number of series is bounded whatever clients send.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The endpoints counted.
pub const ENDPOINTS: [&str; 3] = ["token", "revocation", "introspection"];
/// The grant label values (`-` for none or unparsed).
pub const GRANTS: [&str; 4] = ["password", "refresh_token", "client_credentials", "-"];
/// The outcome label values: success labels, then OAuth error codes.
pub const OUTCOMES: [&str; 18] = [
    "issued",
    "revoked_grant",
    "revoked_token",
    "nothing_revoked",
    "active",
    "inactive",
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "unsupported_token_type",
    "temporarily_unavailable",
    "server_error",
    "too_large",
    "too_many_failures",
    "other",
];
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

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Request counters and latencies.
#[derive(Debug)]
pub struct RequestMetrics {
    counts: Vec<AtomicU64>,
    latency: [Histogram; ENDPOINTS.len()],
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let n = ENDPOINTS.len() * GRANTS.len() * OUTCOMES.len();
        Self { counts: (0..n).map(|_| AtomicU64::new(0)).collect(), latency: Default::default() }
    }
}

fn index(values: &[&str], v: &str) -> usize {
    values.iter().position(|x| *x == v).unwrap_or(values.len() - 1)
}

impl RequestMetrics {
    /// Counts one request.
    pub fn record(&self, endpoint: &str, grant: &str, outcome: &str, latency: Duration) {
        let e = index(&ENDPOINTS, endpoint);
        let i = (e * GRANTS.len() + index(&GRANTS, grant)) * OUTCOMES.len() + index(&OUTCOMES, outcome);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.latency[e].observe(latency);
    }

    /// Appends the request families.
    pub fn write(&self, out: &mut String) {
        out.push_str("# HELP ropc_requests_total Requests by endpoint, grant type and outcome.\n");
        out.push_str("# TYPE ropc_requests_total counter\n");
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            for (g, grant) in GRANTS.iter().enumerate() {
                for (o, outcome) in OUTCOMES.iter().enumerate() {
                    let n = self.counts[(e * GRANTS.len() + g) * OUTCOMES.len() + o].load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "ropc_requests_total{{endpoint=\"{endpoint}\",grant=\"{grant}\",outcome=\"{outcome}\"}} {n}"
                        );
                    }
                }
            }
        }
        out.push_str("# HELP ropc_request_duration_seconds Request latency by endpoint.\n");
        out.push_str("# TYPE ropc_request_duration_seconds histogram\n");
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            self.latency[e].write(out, "ropc_request_duration_seconds", &format!("endpoint=\"{endpoint}\""));
        }
    }
}

/// An exponentially weighted moving mean: `sample` moves it by 1/`n` of the
/// difference (the first sample, when `old` is 0, sets it). For the hash
/// time, the verification latency and the delays' lateness.
pub fn moving_mean(old: u64, sample: u64, n: u64) -> u64 {
    if old == 0 {
        sample
    } else {
        old - old / n + sample / n
    }
}

/// Appends one gauge or counter with HELP and TYPE lines.
pub fn write_value(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// Appends a histogram with HELP and TYPE lines.
pub fn write_histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    h.write(out, name, "");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let m = RequestMetrics::default();
        m.record("token", "password", "issued", Duration::from_millis(3));
        m.record("token", "password", "invalid_grant", Duration::from_millis(30));
        m.record("token", "bogus", "weird", Duration::from_secs(60));
        let mut out = String::new();
        m.write(&mut out);
        assert!(out.contains("ropc_requests_total{endpoint=\"token\",grant=\"password\",outcome=\"issued\"} 1\n"));
        assert!(out.contains("ropc_requests_total{endpoint=\"token\",grant=\"-\",outcome=\"other\"} 1\n"));
        assert!(out.contains("ropc_request_duration_seconds_bucket{endpoint=\"token\",le=\"0.005\"} 1\n"));
        assert!(out.contains("ropc_request_duration_seconds_bucket{endpoint=\"token\",le=\"0.05\"} 2\n"));
        assert!(out.contains("ropc_request_duration_seconds_bucket{endpoint=\"token\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("ropc_request_duration_seconds_count{endpoint=\"token\"} 3\n"));
    }
}
