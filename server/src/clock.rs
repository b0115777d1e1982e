//! The one clock: seconds since the Unix epoch, read at the edge of a
//! request and passed down as `now`, as quinn-proto does. The core, the
//! stores and the lockout never read a clock themselves, so that tests can
//! drive them at any time they like.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the system clock is before it).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
