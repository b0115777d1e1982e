//! The report of a run: totals, throughput, latency percentiles, errors by
//! HTTP status, OAuth `error` code and transport failure, and the per-second
//! timeline. Rendered as text for the terminal, and as JSON (`--json`).

use crate::run::{Finished, Load, Pacer, RunSpec};
use crate::scenario::{ClientAuth, Kind};
use crate::stats::{KindCounts, Recorder};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Latency summary in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Requests timed.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Largest.
    pub max: u64,
}

impl Latency {
    /// The summary of `h` (all zero when it is empty). Each percentile is
    /// the histogram's value at that quantile: the highest value equivalent,
    /// within the histogram's precision, to the recorded one.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// How the load was applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadReport {
    /// `closed` or `open`.
    pub model: &'static str,
    /// Requests per second asked for (open loop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// What timed the requests (open loop): `thread` or `runtime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pacer: Option<&'static str>,
    /// Virtual users, each with one connection.
    pub connections: usize,
    /// Whether each request had a new connection.
    pub new_connection: bool,
    /// The local address connections were made from (`--bind`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// `--bind-count`, when the connections came from more than one
    /// address (`bind` is the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_count: Option<u32>,
    /// `--start-at`: when the measured phase was to start, seconds since
    /// the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<f64>,
    /// With `--start-at`: how many seconds late it started (its setup ended
    /// after that time), else 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_start_s: Option<f64>,
    /// `basic` or `body`.
    pub client_auth: &'static str,
    /// Duration asked for, in seconds.
    pub duration_secs: f64,
    /// Request budget, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_budget: Option<u64>,
}

/// CPU time the load generator used during the measured phase.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GeneratorCpu {
    /// CPU seconds, all threads.
    pub cpu_secs: f64,
    /// CPU seconds per second of the run: 1.0 is one core kept busy.
    pub cores_used: f64,
    /// Runtime threads it had.
    pub threads: usize,
    /// Completed requests per CPU second: about what one core of this load
    /// generator could drive against this target.
    pub requests_per_cpu_sec: f64,
}

/// The server under test, per core and per CPU second: what lets runs on
/// machines with other core counts compare.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerCpu {
    /// The cores it had: `--server-cores`, or the CPUs `--server-pid` may
    /// run on.
    pub cores: usize,
    /// Where `cores` came from: `"given"` or `"affinity"`.
    pub cores_from: &'static str,
    /// Completed requests per second per core.
    pub throughput_per_core_rps: f64,
    /// Successful requests per second per core.
    pub success_per_core_rps: f64,
    /// With `--server-pid`: the CPU seconds the server used in the
    /// measured phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_secs: Option<f64>,
    /// With `--server-pid`: its CPU seconds per second (1.0 is one core
    /// kept busy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores_used: Option<f64>,
    /// With `--server-pid`: completed requests per server CPU second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_cpu_sec: Option<f64>,
}

/// One second of the timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the start of the measured phase.
    pub second: u64,
    /// Length of this bucket in seconds (less than 1 for the last one when
    /// the run ended mid-second).
    pub length_secs: f64,
    /// Requests completed in this second.
    pub requests: u64,
    /// Of those, successes.
    pub successes: u64,
    /// Of those, errors.
    pub errors: u64,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Latency of the requests that got a response.
    pub latency_us: Latency,
}

/// The whole report. Its JSON form is `--json`'s output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The tool that made it.
    pub tool: &'static str,
    /// Target URL.
    pub url: String,
    /// Scenario name.
    pub scenario: &'static str,
    /// Load model.
    pub load: LoadReport,
    /// Length of the measured phase.
    pub elapsed_secs: f64,
    /// Completed requests: successes + errors.
    pub requests: u64,
    /// Successful requests.
    pub successes: u64,
    /// Failed requests: error responses plus requests with no response.
    pub errors: u64,
    /// In flight when the duration ran out: not counted above.
    pub cancelled_at_deadline: u64,
    /// Open loop: requests due before the end that were never sent, because
    /// the virtual users fell behind the schedule.
    pub unsent: u64,
    /// Connections opened during the measured phase.
    pub connections_opened: u64,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Successful requests per second.
    pub success_rps: f64,
    /// `throughput_rps` per server core, when the server's cores are known
    /// (`--server-cores` or `--server-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput_per_core_rps: Option<f64>,
    /// Latency of the requests that got a response.
    pub latency_us: Latency,
    /// The server's cores and CPU use, when known (see
    /// `throughput_per_core_rps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerCpu>,
    /// The load generator's own CPU use, to tell whether it was the
    /// bottleneck (absent where `/proc` cannot tell).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_generator: Option<GeneratorCpu>,
    /// Counts by request kind (only kinds that were sent).
    pub by_kind: BTreeMap<&'static str, KindCounts>,
    /// Error responses by HTTP status.
    pub errors_by_status: BTreeMap<String, u64>,
    /// Error responses by their OAuth `error` code.
    pub errors_by_oauth_error: BTreeMap<String, u64>,
    /// Requests with no response, by cause.
    pub errors_by_transport: BTreeMap<&'static str, u64>,
    /// Success statuses whose body was not as expected, by problem.
    pub unexpected_responses: BTreeMap<&'static str, u64>,
    /// Latency apart by outcome: `success`, or the HTTP status of the
    /// error responses (for example how fast a `503` came back).
    pub latency_by_outcome_us: BTreeMap<String, Latency>,
    /// Open loop: how late the load generator sent each request after its
    /// intended time (included in the latencies above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lag_us: Option<Latency>,
    /// Per-second timeline.
    pub timeline: Vec<Second>,
}

fn per_second(count: u64, secs: f64) -> f64 {
    ratio(count as f64, secs)
}

/// `amount / secs`, or 0 for an empty interval.
fn ratio(amount: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        amount / secs
    } else {
        0.0
    }
}

impl Report {
    /// Builds the report of `finished`, a run of `spec`.
    pub fn new(spec: &RunSpec, finished: &Finished) -> Self {
        let r: &Recorder = &finished.recorder;
        let elapsed = finished.elapsed.as_secs_f64();
        let requests = r.requests();
        let successes = r.successes();
        let (model, rate) = match spec.load {
            Load::Closed => ("closed", None),
            Load::Open { rate } => ("open", Some(rate)),
        };
        let unsent = match rate {
            Some(rate) => {
                let due = (rate * spec.duration.as_secs_f64()).floor() as u64;
                spec.requests.map_or(due, |b| due.min(b)).saturating_sub(finished.started)
            }
            None => 0,
        };
        let cores = match (spec.server_cores, spec.server_pid.and_then(crate::cpu::pid_allowed_cpus)) {
            (Some(n), _) => Some((n, "given")),
            (None, Some(n)) => Some((n, "affinity")),
            (None, None) => None,
        };
        let server_cpu = finished.server_cpu.filter(|_| elapsed >= 0.1).map(|c| c.as_secs_f64());
        let server = cores.map(|(cores, cores_from)| ServerCpu {
            cores,
            cores_from,
            throughput_per_core_rps: per_second(requests, elapsed) / cores as f64,
            success_per_core_rps: per_second(successes, elapsed) / cores as f64,
            cpu_secs: server_cpu,
            cores_used: server_cpu.map(|cpu| ratio(cpu, elapsed)),
            requests_per_cpu_sec: server_cpu.map(|cpu| ratio(requests as f64, cpu)),
        });
        let timeline = r
            .timeline
            .iter()
            .enumerate()
            .map(|(s, b)| {
                let length = (elapsed - s as f64).clamp(0.0, 1.0);
                Second {
                    second: s as u64,
                    length_secs: length,
                    requests: b.requests,
                    successes: b.successes,
                    errors: b.requests - b.successes,
                    throughput_rps: per_second(b.requests, length),
                    latency_us: Latency::from_histogram(&b.latency),
                }
            })
            .collect();
        Report {
            tool: concat!("ropc-loadtest ", env!("CARGO_PKG_VERSION")),
            url: spec.url.to_string(),
            scenario: spec.workload.scenario.name(),
            load: LoadReport {
                model,
                rate,
                pacer: rate.map(|_| match spec.pacer {
                    Pacer::Thread => "thread",
                    Pacer::Runtime => "runtime",
                }),
                connections: spec.connections,
                new_connection: spec.new_connection,
                bind: spec.bind.map(|ip| ip.to_string()),
                bind_count: (spec.bind.is_some() && spec.bind_count > 1).then_some(spec.bind_count),
                start_at: spec
                    .start_at
                    .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64()),
                late_start_s: spec.start_at.map(|_| finished.late_start.as_secs_f64()),
                client_auth: match spec.workload.auth {
                    ClientAuth::Basic => "basic",
                    ClientAuth::Body => "body",
                },
                duration_secs: spec.duration.as_secs_f64(),
                request_budget: spec.requests,
            },
            elapsed_secs: elapsed,
            requests,
            successes,
            errors: requests - successes,
            cancelled_at_deadline: r.cancelled,
            unsent,
            connections_opened: r.connects,
            throughput_rps: per_second(requests, elapsed),
            success_rps: per_second(successes, elapsed),
            throughput_per_core_rps: server.as_ref().map(|s| s.throughput_per_core_rps),
            latency_us: Latency::from_histogram(&r.latency),
            server,
            // Over a very short run the ratios would mean nothing.
            load_generator: finished.cpu.filter(|_| elapsed >= 0.1).map(|cpu| GeneratorCpu {
                cpu_secs: cpu.as_secs_f64(),
                cores_used: ratio(cpu.as_secs_f64(), elapsed),
                threads: spec.shards,
                requests_per_cpu_sec: ratio(requests as f64, cpu.as_secs_f64()),
            }),
            by_kind: Kind::ALL.iter().map(|k| (k.name(), r.kinds[k.index()])).filter(|(_, c)| c.requests > 0).collect(),
            errors_by_status: r.by_status.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            errors_by_oauth_error: r.by_oauth_error.clone(),
            errors_by_transport: r.by_transport.clone(),
            unexpected_responses: r.unexpected.clone(),
            latency_by_outcome_us: r
                .latency_by_status
                .iter()
                .map(|(k, h)| {
                    let key = if *k == crate::stats::SUCCESS { "success".to_owned() } else { k.to_string() };
                    (key, Latency::from_histogram(h))
                })
                .collect(),
            send_lag_us: (!r.send_lag.is_empty()).then(|| Latency::from_histogram(&r.send_lag)),
            timeline,
        }
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain structs and string-keyed maps cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The report for the terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let load = &self.load;
        let model = match load.rate {
            Some(rate) => match load.pacer {
                Some("runtime") => format!("open loop at {rate} requests/s (runtime timer)"),
                _ => format!("open loop at {rate} requests/s"),
            },
            None => "closed loop".to_owned(),
        };
        let connection = if load.new_connection { "a new connection per request" } else { "keep-alive" };
        let from = match (&load.bind, load.bind_count) {
            (Some(ip), Some(n)) => format!(" from {n} addresses, {ip} on"),
            (Some(ip), None) => format!(" from {ip}"),
            (None, _) => String::new(),
        };
        let _ = writeln!(out, "{} {} against {}", self.tool, self.scenario, self.url);
        let _ = writeln!(
            out,
            "  {model}, {} connections{from} ({connection}), client auth {}, {:.2} s",
            load.connections, load.client_auth, self.elapsed_secs
        );
        if let Some(late) = load.late_start_s.filter(|l| *l > 0.0) {
            let _ = writeln!(out, "  started {late:.3} s after --start-at (the setup ended late)");
        }
        let _ = writeln!(out, "  requests    {:>10}  {:>10.1}/s", self.requests, self.throughput_rps);
        let _ = writeln!(out, "  successes   {:>10}  {:>10.1}/s", self.successes, self.success_rps);
        let _ = writeln!(out, "  errors      {:>10}", self.errors);
        if self.cancelled_at_deadline > 0 {
            let _ = writeln!(out, "  cancelled at the deadline (not counted): {}", self.cancelled_at_deadline);
        }
        if self.unsent > 0 {
            let _ = writeln!(out, "  due but never sent (behind schedule): {}", self.unsent);
        }
        let l = &self.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let _ = writeln!(
            out,
            "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3})",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p99_9),
            ms(l.max),
            l.mean / 1000.0
        );
        if let Some(l) = &self.send_lag_us {
            let _ = writeln!(
                out,
                "  send lag ms  p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (after the intended time; in the latencies)",
                ms(l.p50),
                ms(l.p99),
                ms(l.p99_9),
                ms(l.max)
            );
        }
        if let Some(s) = &self.server {
            let from = if s.cores_from == "given" { "given" } else { "its CPU affinity" };
            let _ = write!(
                out,
                "  server: {} core{} ({from}): {:.1} requests/s per core",
                s.cores,
                if s.cores == 1 { "" } else { "s" },
                s.throughput_per_core_rps
            );
            match (s.cores_used, s.requests_per_cpu_sec) {
                (Some(used), Some(per_cpu)) => {
                    let _ = writeln!(out, "; {used:.2} CPU s/s, {per_cpu:.0} requests per CPU second");
                }
                _ => {
                    let _ = writeln!(out);
                }
            }
        }
        if let Some(g) = &self.load_generator {
            let _ = writeln!(
                out,
                "  load generator: {:.2} CPU s/s on {} thread{} ({:.0} requests per CPU second){}",
                g.cores_used,
                g.threads,
                if g.threads == 1 { "" } else { "s" },
                g.requests_per_cpu_sec,
                // Busy on every thread: the target may have had more to give.
                if g.cores_used >= 0.9 * g.threads as f64 { ": it may be the bottleneck" } else { "" }
            );
        }
        if self.by_kind.len() > 1 {
            for (kind, c) in &self.by_kind {
                let _ = writeln!(out, "  {kind:<19} {} requests, {} successes", c.requests, c.successes);
            }
        }
        let mut section = |title: &str, items: Vec<(String, u64)>| {
            if !items.is_empty() {
                let list: Vec<String> = items.iter().map(|(k, v)| format!("{k} × {v}")).collect();
                let _ = writeln!(out, "  {title}: {}", list.join(", "));
            }
        };
        section("errors by HTTP status", owned(&self.errors_by_status));
        section("errors by OAuth error", owned(&self.errors_by_oauth_error));
        section("no response", owned(&self.errors_by_transport));
        section("unexpected responses", owned(&self.unexpected_responses));
        if self.latency_by_outcome_us.len() > 1 {
            for (outcome, l) in &self.latency_by_outcome_us {
                let _ = writeln!(
                    out,
                    "  latency ms of {outcome:<8} p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  ({} requests)",
                    ms(l.p50),
                    ms(l.p99),
                    ms(l.p99_9),
                    ms(l.max),
                    l.count
                );
            }
        }
        out
    }
}

fn owned<K: ToString>(map: &BTreeMap<K, u64>) -> Vec<(String, u64)> {
    map.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// `secs` as a `Duration`, rejecting what is not positive and finite, or
/// longer than a day.
pub fn duration_from_secs(secs: f64, what: &str) -> Result<Duration, String> {
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("{what} must be more than 0 and at most 86400 seconds"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::form::Secret;
    use crate::scenario::{Scenario, Users, WorkloadSpec};
    use crate::stats::{latency_histogram, Outcome};
    use http::Uri;

    pub(crate) fn spec() -> RunSpec {
        RunSpec {
            url: Uri::from_static("http://127.0.0.1:8443/oauth/v2/oauth-token"),
            cacert: None,
            bind: None,
            bind_count: 1,
            workload: WorkloadSpec {
                scenario: Scenario::Refresh,
                token_path: Uri::from_static("/oauth/v2/oauth-token"),
                introspection_path: Uri::from_static("/oauth/v2/oauth-introspect"),
                client_id: "loadtest".into(),
                client_secret: Some(Secret::new("never-printed".into())),
                auth: ClientAuth::Basic,
                users: Users { count: 10, offset: 0, user_prefix: "user".into(), password_prefix: "pass-".into() },
                scope: None,
                introspect_with: Kind::Password,
                dpop: None,
            },
            connections: 4,
            load: Load::Closed,
            pacer: Pacer::Thread,
            new_connection: false,
            duration: Duration::from_secs(2),
            requests: None,
            timeout: Duration::from_secs(5),
            progress: false,
            shards: 1,
            start_at: None,
            server_pid: None,
            server_cores: None,
        }
    }

    /// 1000 requests: latencies 1..=1000 µs, one per 2 ms over 2 s; every
    /// 10th a 400 invalid_grant, and 3 transport errors.
    pub(crate) fn finished() -> Finished {
        let mut r = Recorder::new();
        for i in 1..=1000u64 {
            let outcome = if i % 10 == 0 {
                Outcome::Status { status: 400, oauth_error: Some("invalid_grant".into()) }
            } else {
                Outcome::Success
            };
            let at = Duration::from_millis(i * 2 - 1);
            r.record(Kind::Refresh, &outcome, Duration::from_micros(i), at);
        }
        for _ in 0..3 {
            r.record(Kind::Password, &Outcome::Transport("connect"), Duration::ZERO, Duration::from_millis(1999));
        }
        Finished {
            recorder: r,
            elapsed: Duration::from_secs(2),
            started: 1003,
            cpu: Some(Duration::from_millis(500)),
            server_cpu: None,
            late_start: Duration::ZERO,
        }
    }

    #[test]
    fn percentiles_of_a_known_histogram() {
        let mut h = latency_histogram(3);
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let l = Latency::from_histogram(&h);
        assert_eq!((l.count, l.min, l.max), (1000, 1, 1000));
        assert_eq!((l.p50, l.p90, l.p99, l.p99_9), (500, 900, 990, 999));
        assert!((l.mean - 500.5).abs() < 1e-9);
        // Above 2048 the histogram keeps 3 significant digits.
        let mut h = latency_histogram(3);
        h.record(123_456).unwrap();
        let l = Latency::from_histogram(&h);
        assert!((123_400..=123_600).contains(&l.p50), "{}", l.p50);
        assert_eq!(Latency::from_histogram(&latency_histogram(3)), Latency::default());
    }

    #[test]
    fn totals_and_error_buckets_add_up() {
        let report = Report::new(&spec(), &finished());
        assert_eq!(report.requests, 1003);
        assert_eq!(report.successes, 900);
        assert_eq!(report.errors, 103);
        assert_eq!(report.errors_by_status["400"], 100);
        assert_eq!(report.errors_by_oauth_error["invalid_grant"], 100);
        assert_eq!(report.errors_by_transport["connect"], 3);
        let bucketed: u64 =
            report.errors_by_status.values().sum::<u64>() + report.errors_by_transport.values().sum::<u64>();
        assert_eq!(bucketed, report.errors);
        assert!((report.throughput_rps - 501.5).abs() < 1e-9);
        assert!((report.success_rps - 450.0).abs() < 1e-9);
        assert_eq!(report.latency_us.count, 1000);
        assert_eq!(report.latency_us.p99, 990);
        let generator = report.load_generator.unwrap();
        assert!((generator.cores_used - 0.25).abs() < 1e-9);
        assert!((generator.requests_per_cpu_sec - 2006.0).abs() < 1e-9);
        assert_eq!(report.by_kind["refresh_token"].requests, 1000);
        assert_eq!(report.by_kind["password"].successes, 0);
        assert!(!report.by_kind.contains_key("introspect"));
        assert_eq!(report.timeline.len(), 2);
        assert_eq!(report.timeline[0].requests, 500);
        assert_eq!(report.timeline[1].requests, 503);
        assert_eq!(report.timeline[1].errors, 53);
        assert_eq!(report.timeline.iter().map(|s| s.requests).sum::<u64>(), report.requests);
    }

    #[test]
    fn json_shape() {
        let report = Report::new(&spec(), &finished());
        let json = report.to_json();
        assert!(!json.contains("never-printed"));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in [
            "tool",
            "url",
            "scenario",
            "load",
            "elapsed_secs",
            "requests",
            "successes",
            "errors",
            "cancelled_at_deadline",
            "unsent",
            "connections_opened",
            "throughput_rps",
            "success_rps",
            "load_generator",
            "latency_us",
            "by_kind",
            "errors_by_status",
            "errors_by_oauth_error",
            "errors_by_transport",
            "unexpected_responses",
            "timeline",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["requests"], 1003);
        assert_eq!(v["scenario"], "refresh");
        assert_eq!(v["load"]["model"], "closed");
        assert!(v["load"].get("rate").is_none());
        assert_eq!(v["errors_by_status"]["400"], 100);
        assert_eq!(v["errors_by_oauth_error"]["invalid_grant"], 100);
        for key in ["count", "min", "mean", "p50", "p90", "p99", "p99_9", "max"] {
            assert!(v["latency_us"][key].is_number(), "latency_us.{key}");
        }
        assert_eq!(v["latency_us"]["p99_9"], 999);
        assert_eq!(v["load_generator"]["threads"], 1);
        let second = &v["timeline"][1];
        assert_eq!(second["second"], 1);
        assert_eq!(second["requests"], 503);
        assert!(second["latency_us"]["p50"].is_number());
    }

    #[test]
    fn throughput_per_core_when_the_servers_cores_are_known() {
        let plain = Report::new(&spec(), &finished());
        assert_eq!((plain.throughput_per_core_rps, plain.server.is_none()), (None, true), "unknown: left out");
        let v: serde_json::Value = serde_json::from_str(&plain.to_json()).unwrap();
        assert!(v.get("throughput_per_core_rps").is_none() && v.get("server").is_none());

        // 1003 requests in 2 s on 4 given cores, the server busy 3 CPU s.
        let given = RunSpec { server_cores: Some(4), ..spec() };
        let done = Finished { server_cpu: Some(Duration::from_secs(3)), ..finished() };
        let report = Report::new(&given, &done);
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(v["throughput_per_core_rps"], 1003.0 / 2.0 / 4.0);
        assert_eq!(v["server"]["cores"], 4);
        assert_eq!(v["server"]["cores_from"], "given");
        assert_eq!(v["server"]["success_per_core_rps"], 900.0 / 2.0 / 4.0);
        assert_eq!(v["server"]["cores_used"], 1.5);
        assert!((v["server"]["requests_per_cpu_sec"].as_f64().unwrap() - 1003.0 / 3.0).abs() < 1e-9);
        let text = report.to_text();
        assert!(
            text.contains("server: 4 cores (given): 125.4 requests/s per core; 1.50 CPU s/s, 334 requests"),
            "{text}"
        );

        // This process as the server: its affinity gives the cores.
        if !cfg!(target_os = "linux") {
            return;
        }
        let by_pid = RunSpec { server_pid: Some(std::process::id()), ..spec() };
        let report = Report::new(&by_pid, &finished());
        let server = report.server.expect("this process's CPUs");
        assert_eq!(server.cores_from, "affinity");
        assert_eq!(Some(server.cores), crate::cpu::pid_allowed_cpus(std::process::id()));
    }

    #[test]
    fn text_names_the_buckets_and_no_secret() {
        let text = Report::new(&spec(), &finished()).to_text();
        assert!(text.contains("400 × 100"), "{text}");
        assert!(text.contains("invalid_grant × 100"), "{text}");
        assert!(text.contains("connect × 3"), "{text}");
        assert!(text.contains("p99 0.990"), "{text}");
        assert!(text.contains("load generator: 0.25 CPU s/s on 1 thread (2006 requests per CPU second)\n"), "{text}");
        assert!(!text.contains("never-printed"));
    }

    #[test]
    fn open_loop_counts_unsent() {
        let mut spec = spec();
        spec.load = Load::Open { rate: 600.0 };
        let report = Report::new(&spec, &finished());
        assert_eq!(report.load.rate, Some(600.0));
        assert_eq!(report.unsent, 1200 - 1003);
    }
}
