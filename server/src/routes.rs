//! The fixed paths, which no configured endpoint may take. The RFC 8414
//! metadata path is the core's ([`ropc_core::response::METADATA_PATH`]).

/// Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// The health check: `200` while serving.
pub const HEALTHZ: &str = "/healthz";
/// RFC 8414 authorization server metadata.
pub const METADATA: &str = ropc_core::response::METADATA_PATH;

/// Paths a configured endpoint may not use.
pub const RESERVED: [&str; 3] = [METRICS, HEALTHZ, METADATA];
