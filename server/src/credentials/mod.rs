//! Who may log in: the users (a users file today) and the client secrets,
//! both verified through a [`ropc_hash::PasswordVerifier`], so that the
//! runtime decides where the hashes run.

pub mod accounts;
pub mod health;
pub mod ldap;
mod manager;
mod secrets;
mod settings;
pub mod sql;
mod users;

pub use accounts::{Account, Accounts};
pub use health::{Health, ManagerError};
pub use manager::{Backend, Managers, ManagersError, NamedManager};
pub use secrets::ClientSecrets;
pub use settings::{LdapConfig, LdapLocate, ManagerConfig, SqlConfig, SqlDriver};
pub use users::UserStore;
