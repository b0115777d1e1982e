//! Integration tests: the real `ropc` binary, driven over HTTP.

mod support;

mod attacks;

mod cli;
mod demo;
mod durable;
mod jwt;
mod lifecycle;
mod migration;
mod operations;
mod redis;
mod reload;
mod token;
