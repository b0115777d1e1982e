//! ropc-core: the OAuth 2.0 Resource Owner Password Credentials engine.
//!
//! This crate owns every OAuth rule in ropc and does no I/O: it never reads a
//! clock, never draws randomness of its own and never touches a socket or a
//! file. Bytes and `now` go in, a decision comes out, in the manner of
//! `rustls` and `quinn-proto`. Whatever needs the platform (randomness, a
//! digest, password hashing, token storage) reaches it through the small
//! traits in [`token`] or as a [`engine::Step`] the runtime answers.
//!
//! A token request is driven like this (see `examples/embed.rs` for a whole
//! runnable program):
//!
//! ```text
//! body + Authorization header + now
//!    -> Engine::token_grant          parse + validate (form, Basic, grammar)
//!    -> Step::AuthenticateClient     runtime checks the client secret
//!    -> Step::VerifyPassword         runtime runs the password hash
//!    -> Step::LoadRefreshToken       runtime looks the record up (refresh grant)
//!    -> Step::CheckAccount           runtime checks the account behind it
//!    -> Step::Issue -> TokenGrant::issue   tokens minted, JSON written
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod base64;
pub mod basic;
pub mod client;
mod client_auth;
pub mod engine;
pub mod error;
pub mod form;
pub mod jwt;
pub mod query;
pub mod request;
pub mod response;
pub mod scope;
pub mod step;
mod swar;
pub mod token;

pub use client::{Capabilities, Client, ClientIndex, ClientTable, TokenFormat};
pub use engine::{
    AccountState, ClientCredential, Engine, EngineConfig, Issued, LostRace, PasswordOutcome, Proofs, Secret, Step,
    TokenGrant,
};
pub use error::{ErrorCode, OAuthError, Reason};
pub use form::Limits;
pub use jwt::{JwtIssuer, SignError, TokenSigner};
pub use query::{Owner, QueryKind, QueryStep, Revocation, TokenQueryGrant};
pub use request::GrantType;
pub use scope::{ScopeRegistry, ScopeSet};
pub use token::{
    Binding, FamilyId, Provider, RandomError, SecureRandom, Token, TokenDigest, TokenKey, TokenKind, TokenRecord,
    UserRef,
};
