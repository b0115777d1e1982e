//! The server's own metric families, and their labels as enums. Each part
//! of the server writes its own metrics (`write_metrics(&self, &mut
//! Exposition)`): the hash pool, the lockout, the store and its log, the
//! requests here. The `/metrics` handler strings them together
//! ([`crate::app::App::render_metrics`]).

mod requests;

pub use requests::{Endpoint, Outcome, RequestMetrics, Success};
