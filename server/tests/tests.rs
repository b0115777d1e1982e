//! Integration tests: the real `ropc` binary, driven over HTTP.

mod support;

mod cli;
mod demo;
mod lifecycle;
mod token;
