//! Integration tests: the real `ropc` binary, driven over HTTP.

mod support;

mod architecture;
mod attacks;

mod cli;
mod client_auth;
mod demo;
mod directory;
mod durable;
mod jwt;
mod ldap;
mod lifecycle;
mod lockout;
mod managers;
mod migration;
mod operations;
mod redis;
mod reload;
mod sessions;
mod sql;
mod token;
