//! ropc-core's integration tests, in one binary (as ripgrep keeps them):
//! the engine driven end to end by a toy runtime on a virtual clock, and
//! property tests of the parsers.

// `embedded/src/scenario.rs`, shared with the firmware, names `alloc` as a
// no_std crate does.
extern crate alloc;

mod harness;

mod embedded;

mod binding;
mod grants;
mod properties;
mod refresh;
