//! ropc-core's integration tests, in one binary (as ripgrep keeps them):
//! the engine driven end to end by a toy runtime on a virtual clock, and
//! property tests of the parsers.

mod harness;

mod grants;
mod properties;
mod refresh;
