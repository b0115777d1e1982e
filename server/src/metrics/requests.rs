//! Request counters and latencies, by endpoint, grant type and outcome.
//! Every label is an enum, so a request is counted by arithmetic on
//! indices, and the number of series is bounded whatever clients send.

use ropc_core::{ErrorCode, GrantType, OAuthError, Reason};
use ropc_metrics::{Exposition, Histogram, Kind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The endpoints counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The token endpoint.
    Token,
    /// RFC 7009.
    Revocation,
    /// RFC 7662.
    Introspection,
}

impl Endpoint {
    const ALL: [Endpoint; 3] = [Endpoint::Token, Endpoint::Revocation, Endpoint::Introspection];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Revocation => "revocation",
            Endpoint::Introspection => "introspection",
        }
    }
}

/// What a request that succeeded did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Success {
    /// Tokens issued.
    Issued,
    /// A refresh token's whole grant revoked.
    RevokedGrant,
    /// An access token revoked.
    RevokedToken,
    /// Nothing to revoke (RFC 7009 §2.2 answers 200 all the same).
    NothingRevoked,
    /// Introspection: the token is active.
    Active,
    /// Introspection: it is not.
    Inactive,
}

impl Success {
    const ALL: [Success; 6] = [
        Success::Issued,
        Success::RevokedGrant,
        Success::RevokedToken,
        Success::NothingRevoked,
        Success::Active,
        Success::Inactive,
    ];

    /// The label value, also the log's `outcome`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Success::Issued => "issued",
            Success::RevokedGrant => "revoked_grant",
            Success::RevokedToken => "revoked_token",
            Success::NothingRevoked => "nothing_revoked",
            Success::Active => "active",
            Success::Inactive => "inactive",
        }
    }
}

/// The `outcome` label of a request: what it did, or its error code, with
/// two errors told apart from the rest of their code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Done(Success),
    /// It failed with this code.
    Failed(ErrorCode),
    /// Its body was over `max_body_bytes` (`413`).
    TooLarge,
    /// Its IP is throttled (`429`).
    TooManyFailures,
}

impl Outcome {
    /// Label values in exposition order.
    const COUNT: usize = Success::ALL.len() + ErrorCode::ALL.len() + 2;

    /// The label of a request's result.
    pub fn of(result: &Result<Success, OAuthError>) -> Self {
        match result {
            Ok(done) => Outcome::Done(*done),
            Err(e) if e.reason == Reason::BodyTooLarge => Outcome::TooLarge,
            Err(e) if e.reason == Reason::IpThrottled => Outcome::TooManyFailures,
            Err(e) => Outcome::Failed(e.code),
        }
    }

    fn index(self) -> usize {
        match self {
            Outcome::Done(s) => s as usize,
            Outcome::Failed(code) => Success::ALL.len() + code.index(),
            Outcome::TooLarge => Self::COUNT - 2,
            Outcome::TooManyFailures => Self::COUNT - 1,
        }
    }

    fn at(index: usize) -> Self {
        match index.checked_sub(Success::ALL.len()) {
            None => Outcome::Done(Success::ALL[index]),
            Some(i) if i < ErrorCode::ALL.len() => Outcome::Failed(ErrorCode::ALL[i]),
            Some(i) if i == ErrorCode::ALL.len() => Outcome::TooLarge,
            Some(_) => Outcome::TooManyFailures,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done(s) => s.as_str(),
            Outcome::Failed(code) => code.as_str(),
            Outcome::TooLarge => "too_large",
            Outcome::TooManyFailures => "too_many_failures",
        }
    }
}

/// The grant label: a grant type, or `-` for none (or unparsed).
const GRANTS: usize = GrantType::ALL.len() + 1;

fn grant_index(grant: Option<GrantType>) -> usize {
    grant.map_or(GrantType::ALL.len(), GrantType::index)
}

fn grant_label(index: usize) -> &'static str {
    GrantType::ALL.get(index).map_or("-", |g| g.as_str())
}

/// Request counters and latencies.
#[derive(Debug)]
pub struct RequestMetrics {
    counts: Vec<AtomicU64>,
    latency: [Histogram; Endpoint::ALL.len()],
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let n = Endpoint::ALL.len() * GRANTS * Outcome::COUNT;
        Self { counts: (0..n).map(|_| AtomicU64::new(0)).collect(), latency: Default::default() }
    }
}

impl RequestMetrics {
    /// Counts one request.
    pub fn record(&self, endpoint: Endpoint, grant: Option<GrantType>, outcome: Outcome, latency: Duration) {
        let e = endpoint as usize;
        let i = (e * GRANTS + grant_index(grant)) * Outcome::COUNT + outcome.index();
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.latency[e].observe(latency);
    }

    /// Appends the request families.
    pub fn write_metrics(&self, out: &mut Exposition) {
        out.family("ropc_requests_total", Kind::Counter, "Requests by endpoint, grant type and outcome.");
        for (e, endpoint) in Endpoint::ALL.iter().enumerate() {
            for g in 0..GRANTS {
                for o in 0..Outcome::COUNT {
                    let n = self.counts[(e * GRANTS + g) * Outcome::COUNT + o].load(Ordering::Relaxed);
                    if n > 0 {
                        let labels = format!(
                            "endpoint=\"{}\",grant=\"{}\",outcome=\"{}\"",
                            endpoint.as_str(),
                            grant_label(g),
                            Outcome::at(o).as_str()
                        );
                        out.sample("ropc_requests_total", &labels, n);
                    }
                }
            }
        }
        out.family("ropc_request_duration_seconds", Kind::Histogram, "Request latency by endpoint.");
        for (e, endpoint) in Endpoint::ALL.iter().enumerate() {
            let labels = format!("endpoint=\"{}\"", endpoint.as_str());
            out.histogram_samples("ropc_request_duration_seconds", &labels, &self.latency[e]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_its_own_index() {
        for i in 0..Outcome::COUNT {
            assert_eq!(Outcome::at(i).index(), i);
        }
        assert_eq!(Outcome::at(0).as_str(), "issued");
        assert_eq!(Outcome::at(Outcome::COUNT - 1).as_str(), "too_many_failures");
    }

    #[test]
    fn exposition_format() {
        let m = RequestMetrics::default();
        let grant = Some(GrantType::Password);
        m.record(Endpoint::Token, grant, Outcome::Done(Success::Issued), Duration::from_millis(3));
        m.record(Endpoint::Token, grant, Outcome::Failed(ErrorCode::InvalidGrant), Duration::from_millis(30));
        m.record(Endpoint::Token, None, Outcome::of(&Err(OAuthError::BODY_TOO_LARGE)), Duration::from_secs(60));
        m.record(Endpoint::Token, grant, Outcome::of(&Err(OAuthError::IP_THROTTLED)), Duration::from_millis(1));
        let mut e = Exposition::new();
        m.write_metrics(&mut e);
        let out = e.finish();
        assert!(out.contains("ropc_requests_total{endpoint=\"token\",grant=\"password\",outcome=\"issued\"} 1\n"));
        assert!(
            out.contains("ropc_requests_total{endpoint=\"token\",grant=\"password\",outcome=\"invalid_grant\"} 1\n")
        );
        assert!(out.contains("ropc_requests_total{endpoint=\"token\",grant=\"-\",outcome=\"too_large\"} 1\n"));
        assert!(out
            .contains("ropc_requests_total{endpoint=\"token\",grant=\"password\",outcome=\"too_many_failures\"} 1\n"));
        assert!(out.contains("ropc_request_duration_seconds_bucket{endpoint=\"token\",le=\"0.005\"} 2\n"));
        assert!(out.contains("ropc_request_duration_seconds_bucket{endpoint=\"token\",le=\"+Inf\"} 4\n"));
        assert!(out.contains("ropc_request_duration_seconds_count{endpoint=\"token\"} 4\n"));
    }
}
