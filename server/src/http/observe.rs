//! What every form request leaves behind, written in one place: its count
//! and latency in the metrics, and its line in the log (an audit event for
//! logins and revocations).

use crate::grant::GrantOutcome;
use crate::metrics::{Endpoint, Outcome, RequestMetrics};
use ropc_core::GrantType;
use std::time::Duration;

/// The audit event of a request: logins (password grants) and revocations.
fn event(endpoint: Endpoint, outcome: &GrantOutcome) -> &'static str {
    match (endpoint, outcome.grant_type, &outcome.result) {
        (Endpoint::Token, Some(GrantType::Password), Ok(_)) => "login_success",
        (Endpoint::Token, Some(GrantType::Password), Err(_)) => "login_failure",
        (Endpoint::Revocation, _, Ok(_)) => "revocation",
        _ => "request",
    }
}

/// Counts the request and writes its log line.
pub fn request(metrics: &RequestMetrics, endpoint: Endpoint, outcome: &GrantOutcome, latency: Duration) {
    let label = Outcome::of(&outcome.result);
    metrics.record(endpoint, outcome.grant_type, label, latency);
    if !tracing::enabled!(target: crate::access_log::TARGET, tracing::Level::INFO) {
        return;
    }
    let (done, reason) = match &outcome.result {
        Ok(done) => (done.as_str(), None),
        Err(e) => (e.code.as_str(), Some(e.reason.as_str())),
    };
    crate::access_log::log(&crate::access_log::Fields {
        event: event(endpoint, outcome),
        endpoint: endpoint.as_str(),
        client: outcome.client_id.as_deref().unwrap_or("-"),
        grant: outcome.grant_type.map_or("-", GrantType::as_str),
        user: outcome.username.as_deref().unwrap_or("-"),
        status: outcome.status(),
        outcome: done,
        reason,
        latency_us: latency.as_micros() as u64,
    });
}

#[cfg(test)]
mod tests {
    /// The request line keeps this module as its tracing target.
    #[test]
    fn the_request_lines_target_is_this_module() {
        assert_eq!(crate::access_log::TARGET, module_path!().trim_end_matches("::tests"));
    }
}
