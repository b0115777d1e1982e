//! What a run records: a latency histogram, counts by request kind, errors
//! bucketed by HTTP status, OAuth `error` code and transport failure, and a
//! per-second timeline. Virtual users record into a [`Recorder`] shared by a
//! few of them; the run merges the recorders at the end.

use crate::scenario::Kind;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies are recorded in microseconds, up to an hour (larger values are
/// recorded as an hour), with 3 significant digits.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// At most this many distinct OAuth error codes are kept apart; further ones
/// are counted as [`OTHER_ERROR_CODE`], so a misbehaving server cannot grow
/// the report without bound.
const MAX_ERROR_CODES: usize = 32;

/// The bucket for error codes past [`MAX_ERROR_CODES`] or not valid per RFC
/// 6749 §5.2.
pub const OTHER_ERROR_CODE: &str = "(other)";

/// A new latency histogram with `digits` significant digits.
pub fn latency_histogram(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, digits).expect("constant bounds are valid")
}

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The expected answer.
    Success,
    /// An HTTP response that is not a success, with the OAuth `error` code
    /// from its JSON body when it has one (RFC 6749 §5.2, RFC 7662 §2.3).
    Status {
        /// The status code.
        status: u16,
        /// The `error` member of the body, if any.
        oauth_error: Option<String>,
    },
    /// A success status whose body is not what the grant promises (no
    /// `access_token`, or an introspection answer with `active: false`).
    Unexpected {
        /// The status code.
        status: u16,
        /// What was wrong.
        what: &'static str,
    },
    /// No HTTP response: see [`crate::client::TransportError::label`].
    Transport(&'static str),
}

/// Requests and successes of one [`Kind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindCounts {
    /// Requests that completed (with a response or a transport error).
    pub requests: u64,
    /// Of those, successes.
    pub successes: u64,
}

/// One second of the run, by completion time.
#[derive(Clone, Debug)]
pub struct SecondBucket {
    /// Completed requests.
    pub requests: u64,
    /// Of those, successes.
    pub successes: u64,
    /// Latencies of the requests that got a response (2 significant digits).
    pub latency: Histogram<u64>,
}

impl SecondBucket {
    fn new() -> Self {
        SecondBucket { requests: 0, successes: 0, latency: latency_histogram(2) }
    }
}

/// Everything a run counts. Latencies are those of requests that got an
/// HTTP response, successful or not; transport errors have none.
#[derive(Clone, Debug)]
pub struct Recorder {
    /// Latencies in microseconds.
    pub latency: Histogram<u64>,
    /// Counts per [`Kind`], indexed by [`Kind::index`].
    pub kinds: [KindCounts; Kind::ALL.len()],
    /// Error responses by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Error responses by their OAuth `error` code.
    pub by_oauth_error: BTreeMap<String, u64>,
    /// Requests with no response, by [`Outcome::Transport`] label.
    pub by_transport: BTreeMap<&'static str, u64>,
    /// Success statuses with an unexpected body, by what was wrong.
    pub unexpected: BTreeMap<&'static str, u64>,
    /// Requests in flight when the duration ran out: neither counted nor timed.
    pub cancelled: u64,
    /// Connections opened.
    pub connects: u64,
    /// Per-second counts, indexed by seconds since the start.
    pub timeline: Vec<SecondBucket>,
    /// Latencies apart by how the request ended: [`SUCCESS`] or the
    /// HTTP status of an error response (at most [`MAX_STATUSES`] statuses;
    /// further ones are not kept apart).
    pub latency_by_status: BTreeMap<u16, Histogram<u64>>,
    /// Open loop: how late each request was sent, in microseconds after its
    /// intended send time (the load generator's own delay, which the
    /// latencies above include; see [`Recorder::record_send_lag`]).
    pub send_lag: Histogram<u64>,
}

/// The key of successes in [`Recorder::latency_by_status`].
pub const SUCCESS: u16 = 0;
/// At most this many outcomes get a latency histogram of their own.
pub const MAX_STATUSES: usize = 16;

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Recorder {
            latency: latency_histogram(3),
            kinds: [KindCounts::default(); Kind::ALL.len()],
            by_status: BTreeMap::new(),
            by_oauth_error: BTreeMap::new(),
            by_transport: BTreeMap::new(),
            unexpected: BTreeMap::new(),
            cancelled: 0,
            connects: 0,
            timeline: Vec::new(),
            latency_by_status: BTreeMap::new(),
            send_lag: latency_histogram(3),
        }
    }

    /// Records that an open-loop request went out `lag` after its intended
    /// send time. Latencies are measured from the intended time whatever
    /// the lag (no coordinated omission); this tells how much of them the
    /// load generator itself added by waking up late.
    pub fn record_send_lag(&mut self, lag: Duration) {
        self.send_lag.saturating_record(u64::try_from(lag.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one completed request of `kind`, which took `latency` and
    /// completed `at` after the start of the run.
    pub fn record(&mut self, kind: Kind, outcome: &Outcome, latency: Duration, at: Duration) {
        let success = *outcome == Outcome::Success;
        let counts = &mut self.kinds[kind.index()];
        counts.requests += 1;
        counts.successes += u64::from(success);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        let second = usize::try_from(at.as_secs()).unwrap_or(usize::MAX);
        if second >= self.timeline.len() {
            // A run lasts at most a day (checked by the CLI).
            self.timeline.resize_with(second.saturating_add(1), SecondBucket::new);
        }
        let timed = !matches!(outcome, Outcome::Transport(_));
        let bucket = &mut self.timeline[second];
        bucket.requests += 1;
        bucket.successes += u64::from(success);
        if timed {
            bucket.latency.saturating_record(micros);
            self.latency.saturating_record(micros);
            let key = match outcome {
                Outcome::Status { status, .. } | Outcome::Unexpected { status, .. } => *status,
                _ => SUCCESS,
            };
            let known = self.latency_by_status.len();
            if let Some(h) = self.latency_by_status.get_mut(&key) {
                h.saturating_record(micros);
            } else if known < MAX_STATUSES {
                let mut h = latency_histogram(3);
                h.saturating_record(micros);
                self.latency_by_status.insert(key, h);
            }
        }
        match outcome {
            Outcome::Success => {}
            Outcome::Transport(label) => *self.by_transport.entry(label).or_default() += 1,
            Outcome::Status { status, oauth_error } => {
                *self.by_status.entry(*status).or_default() += 1;
                if let Some(code) = oauth_error {
                    self.count_error_code(code);
                }
            }
            Outcome::Unexpected { status, what } => {
                *self.by_status.entry(*status).or_default() += 1;
                *self.unexpected.entry(what).or_default() += 1;
            }
        }
    }

    fn count_error_code(&mut self, code: &str) {
        if let Some(n) = self.by_oauth_error.get_mut(code) {
            *n += 1;
            return;
        }
        let key =
            if is_error_code(code) && self.by_oauth_error.len() < MAX_ERROR_CODES { code } else { OTHER_ERROR_CODE };
        *self.by_oauth_error.entry(key.to_owned()).or_default() += 1;
    }

    /// Adds `other`'s counts to this recorder's.
    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        for (mine, theirs) in self.kinds.iter_mut().zip(other.kinds.iter()) {
            mine.requests += theirs.requests;
            mine.successes += theirs.successes;
        }
        for (k, v) in &other.by_status {
            *self.by_status.entry(*k).or_default() += v;
        }
        for (k, v) in &other.by_oauth_error {
            *self.by_oauth_error.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.by_transport {
            *self.by_transport.entry(k).or_default() += v;
        }
        for (k, v) in &other.unexpected {
            *self.unexpected.entry(k).or_default() += v;
        }
        for (k, h) in &other.latency_by_status {
            let known = self.latency_by_status.len();
            match self.latency_by_status.get_mut(k) {
                Some(mine) => {
                    let _ = mine.add(h);
                }
                None if known < MAX_STATUSES => {
                    self.latency_by_status.insert(*k, h.clone());
                }
                None => {}
            }
        }
        let _ = self.send_lag.add(&other.send_lag);
        self.cancelled += other.cancelled;
        self.connects += other.connects;
        if other.timeline.len() > self.timeline.len() {
            self.timeline.resize_with(other.timeline.len(), SecondBucket::new);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(other.timeline.iter()) {
            mine.merge(theirs);
        }
    }

    /// Completed requests.
    pub fn requests(&self) -> u64 {
        self.kinds.iter().map(|k| k.requests).sum()
    }

    /// Successful requests.
    pub fn successes(&self) -> u64 {
        self.kinds.iter().map(|k| k.successes).sum()
    }
}

impl SecondBucket {
    /// Adds `other`'s counts to this bucket's.
    pub fn merge(&mut self, other: &SecondBucket) {
        self.requests += other.requests;
        self.successes += other.successes;
        let _ = self.latency.add(&other.latency);
    }
}

/// RFC 6749 §5.2: `error` is 1*NQSCHAR (printable ASCII but `"` and `\`); we
/// also cap its length.
fn is_error_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn status(status: u16, code: Option<&str>) -> Outcome {
        Outcome::Status { status, oauth_error: code.map(str::to_owned) }
    }

    #[test]
    fn buckets_errors_by_status_and_code() {
        let mut r = Recorder::new();
        r.record(Kind::Password, &Outcome::Success, ms(1), ms(10));
        r.record(Kind::Password, &status(400, Some("invalid_grant")), ms(1), ms(20));
        r.record(Kind::Refresh, &status(400, Some("invalid_grant")), ms(1), ms(1500));
        r.record(Kind::Refresh, &status(401, Some("invalid_client")), ms(1), ms(1600));
        r.record(Kind::Refresh, &status(503, None), ms(1), ms(1700));
        r.record(Kind::Refresh, &Outcome::Transport("timeout"), ms(1), ms(2100));
        r.record(Kind::Introspect, &Outcome::Unexpected { status: 200, what: "active=false" }, ms(1), ms(2200));
        assert_eq!(r.requests(), 7);
        assert_eq!(r.successes(), 1);
        assert_eq!(
            r.by_status.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            [(200, 1), (400, 2), (401, 1), (503, 1)]
        );
        assert_eq!(r.by_oauth_error["invalid_grant"], 2);
        assert_eq!(r.by_oauth_error["invalid_client"], 1);
        assert_eq!(r.by_transport["timeout"], 1);
        assert_eq!(r.unexpected["active=false"], 1);
        // Latency apart by outcome: the transport error has none.
        let counts: Vec<(u16, u64)> = r.latency_by_status.iter().map(|(k, h)| (*k, h.len())).collect();
        assert_eq!(counts, [(SUCCESS, 1), (200, 1), (400, 2), (401, 1), (503, 1)]);
        assert_eq!(r.kinds[Kind::Password.index()], KindCounts { requests: 2, successes: 1 });
        assert_eq!(r.kinds[Kind::Refresh.index()].requests, 4);
        // Transport errors are counted but have no latency.
        assert_eq!(r.latency.len(), 6);
        assert_eq!(r.timeline.len(), 3);
        assert_eq!(r.timeline.iter().map(|b| b.requests).collect::<Vec<_>>(), [2, 3, 2]);
        assert_eq!(r.timeline[0].successes, 1);
    }

    #[test]
    fn error_codes_are_bounded() {
        let mut r = Recorder::new();
        for i in 0..100 {
            r.record(Kind::Password, &status(400, Some(&format!("code{i}"))), ms(1), ms(1));
        }
        r.record(Kind::Password, &status(400, Some("bad\"quote")), ms(1), ms(1));
        assert_eq!(r.by_oauth_error.len(), MAX_ERROR_CODES + 1);
        assert_eq!(r.by_oauth_error[OTHER_ERROR_CODE], 100 - 32 + 1);
        assert_eq!(r.by_oauth_error.values().sum::<u64>(), 101);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.record(Kind::ClientCredentials, &Outcome::Success, ms(2), ms(100));
        b.record(Kind::ClientCredentials, &Outcome::Success, ms(4), ms(3100));
        b.record(Kind::ClientCredentials, &status(400, Some("invalid_scope")), ms(4), ms(3100));
        b.connects = 2;
        a.merge(&b);
        assert_eq!(a.requests(), 3);
        assert_eq!(a.successes(), 2);
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.timeline.len(), 4);
        assert_eq!(a.timeline[3].requests, 2);
        assert_eq!(a.by_oauth_error["invalid_scope"], 1);
        assert_eq!(a.connects, 2);
    }
}
