//! Integration tests of ropc-loadtest: one test binary, one module per concern.

mod end_to_end;
mod fixture_check;
mod token_server;
