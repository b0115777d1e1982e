//! Shared fixtures for the ropc criterion benches.
