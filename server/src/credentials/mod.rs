//! Who may log in: the users (a users file today) and the client secrets,
//! both verified through a [`ropc_hash::PasswordVerifier`], so that the
//! runtime decides where the hashes run.

mod secrets;
mod users;

pub use secrets::ClientSecrets;
pub use users::UserStore;
