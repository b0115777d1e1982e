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
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let event = event(endpoint, outcome);
    let client = outcome.client_id.as_deref().unwrap_or("-");
    let grant = outcome.grant_type.map_or("-", GrantType::as_str);
    let user = outcome.username.as_deref().unwrap_or("-");
    let status = outcome.status();
    let latency_us = latency.as_micros() as u64;
    let endpoint = endpoint.as_str();
    let (done, reason) = match &outcome.result {
        Ok(done) => (done.as_str(), None),
        Err(e) => (e.code.as_str(), Some(e.reason.as_str())),
    };
    let fields = crate::access_log::Fields {
        target: module_path!(),
        event,
        endpoint,
        client,
        grant,
        user,
        status,
        outcome: done,
        reason,
        latency_us,
    };
    if crate::access_log::write(&fields) {
        return;
    }
    match &outcome.result {
        Ok(done) => tracing::info!(
            event,
            endpoint,
            client = ?client,
            grant,
            user = ?user,
            status,
            outcome = done.as_str(),
            latency_us
        ),
        Err(e) => tracing::info!(
            event,
            endpoint,
            client = ?client,
            grant,
            user = ?user,
            status,
            outcome = e.code.as_str(),
            reason = e.reason.as_str(),
            latency_us
        ),
    }
}
