//! The client table: who may use which grant and which scopes. Secrets are
//! not here: the runtime keeps their hashes and answers
//! [`crate::Step::AuthenticateClient`] by [`ClientIndex`].

use crate::request::GrantType;
use crate::scope::ScopeSet;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A client's position in its [`ClientTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientIndex(pub u32);

/// The grants a client may use.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(u8);

impl Capabilities {
    /// The `password` grant, RFC 6749 §4.3.
    pub const PASSWORD: Capabilities = Capabilities(1);
    /// The `refresh_token` grant, §6. Also decides whether a password grant
    /// issues a refresh token.
    pub const REFRESH_TOKEN: Capabilities = Capabilities(2);
    /// The `client_credentials` grant, §4.4.
    pub const CLIENT_CREDENTIALS: Capabilities = Capabilities(4);

    /// Every capability with its configuration name.
    pub const NAMES: [(&'static str, Capabilities); 3] = [
        ("password", Self::PASSWORD),
        ("refresh_token", Self::REFRESH_TOKEN),
        ("client_credentials", Self::CLIENT_CREDENTIALS),
    ];

    /// No capability.
    pub const fn empty() -> Self {
        Capabilities(0)
    }

    /// The capability a grant needs (its configuration name is the grant
    /// type's).
    pub const fn for_grant(grant: GrantType) -> Self {
        match grant {
            GrantType::Password => Self::PASSWORD,
            GrantType::RefreshToken => Self::REFRESH_TOKEN,
            GrantType::ClientCredentials => Self::CLIENT_CREDENTIALS,
        }
    }

    /// The capability called `name` in the configuration.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|&(_, c)| c)
    }

    /// Whether every capability in `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets together.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Capabilities(self.0 | other.0)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = Self::NAMES.iter().filter(|(_, c)| self.contains(*c)).map(|(n, _)| n);
        f.debug_list().entries(names).finish()
    }
}

/// A configured client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The `client_id`.
    pub id: String,
    /// The grants it may use.
    pub capabilities: Capabilities,
    /// The scopes it may be granted.
    pub allowed_scopes: ScopeSet,
    /// The scopes granted when a request names none.
    pub default_scopes: ScopeSet,
}

/// Why a client could not be added to a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Another client has the same id.
    DuplicateId,
    /// The id is empty.
    EmptyId,
    /// `default_scopes` names a scope that `scopes` does not allow.
    DefaultNotAllowed,
    /// The table holds [`ClientTable::CAPACITY`] slots already.
    Full,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientError::DuplicateId => "another client has the same id",
            ClientError::EmptyId => "the client id is empty",
            ClientError::DefaultNotAllowed => "default_scopes must be a subset of scopes",
            ClientError::Full => "too many clients: at most 16777216 fit a token record",
        })
    }
}

/// How a client's access tokens look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TokenFormat {
    /// 256 random bits, meaningful only to this server (introspect them).
    #[default]
    Opaque,
    /// A signed JWT (RFC 9068) that resource servers verify on their own.
    Jwt,
}

/// Every configured client, looked up by id.
///
/// A client's index is stored in its token records, so a runtime that
/// reloads its configuration keeps each index for the same id and leaves a
/// *retired* slot where a client was removed (see
/// [`ClientTable::retire_slot`]): its records then name no client, and the
/// runtime treats them as unknown tokens.
#[derive(Clone, Debug, Default)]
pub struct ClientTable {
    clients: Vec<Client>,
    formats: Vec<TokenFormat>,
    by_id: BTreeMap<String, ClientIndex>,
}

impl ClientTable {
    /// The most slots a table holds, retired ones included: a packed token
    /// record keeps the client's index in 24 bits.
    pub const CAPACITY: usize = 1 << 24;

    /// The next slot's index, unless the table is full.
    fn next_index(&self) -> Result<ClientIndex, ClientError> {
        match u32::try_from(self.clients.len()) {
            Ok(n) if (n as usize) < Self::CAPACITY => Ok(ClientIndex(n)),
            _ => Err(ClientError::Full),
        }
    }

    /// An empty table.
    pub const fn new() -> Self {
        Self { clients: Vec::new(), formats: Vec::new(), by_id: BTreeMap::new() }
    }

    /// Adds a client and returns its index.
    pub fn add(&mut self, client: Client) -> Result<ClientIndex, ClientError> {
        if client.id.is_empty() {
            return Err(ClientError::EmptyId);
        }
        if self.by_id.contains_key(&client.id) {
            return Err(ClientError::DuplicateId);
        }
        if !client.default_scopes.is_subset(client.allowed_scopes) {
            return Err(ClientError::DefaultNotAllowed);
        }
        let index = self.next_index()?;
        self.by_id.insert(client.id.clone(), index);
        self.clients.push(client);
        self.formats.push(TokenFormat::Opaque);
        Ok(index)
    }

    /// Takes the next index for no client: [`ClientTable::get`] and
    /// [`ClientTable::find`] never return it, and [`ClientTable::iter`]
    /// skips it. The slot is never reused, so records issued to a removed
    /// client stay unusable even if a client with its id is added again.
    pub fn retire_slot(&mut self) -> Result<ClientIndex, ClientError> {
        let index = self.next_index()?;
        self.clients.push(Client {
            id: String::new(),
            capabilities: Capabilities::empty(),
            allowed_scopes: ScopeSet::EMPTY,
            default_scopes: ScopeSet::EMPTY,
        });
        self.formats.push(TokenFormat::Opaque);
        Ok(index)
    }

    /// Slots taken, retired ones included: the next added client's index.
    pub fn slots(&self) -> usize {
        self.clients.len()
    }

    /// Sets the access token format of a client (default: opaque).
    pub fn set_access_token_format(&mut self, index: ClientIndex, format: TokenFormat) {
        if let Some(f) = self.formats.get_mut(index.0 as usize) {
            *f = format;
        }
    }

    /// The access token format of a client.
    pub fn access_token_format(&self, index: ClientIndex) -> TokenFormat {
        self.formats.get(index.0 as usize).copied().unwrap_or_default()
    }

    /// The index of the client with `id`.
    pub fn find(&self, id: &str) -> Option<ClientIndex> {
        self.by_id.get(id).copied()
    }

    /// The client at `index` (none for a retired slot).
    pub fn get(&self, index: ClientIndex) -> Option<&Client> {
        self.clients.get(index.0 as usize).filter(|c| !c.id.is_empty())
    }

    /// Every client with its index (retired slots left out).
    pub fn iter(&self) -> impl Iterator<Item = (ClientIndex, &Client)> {
        self.clients.iter().enumerate().filter(|(_, c)| !c.id.is_empty()).map(|(i, c)| (ClientIndex(i as u32), c))
    }

    /// How many clients there are (retired slots not counted).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the table has no client.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The union of every client's capabilities (for RFC 8414 metadata).
    pub fn capabilities(&self) -> Capabilities {
        self.clients.iter().fold(Capabilities::empty(), |acc, c| acc.union(c.capabilities))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str) -> Client {
        Client {
            id: id.into(),
            capabilities: Capabilities::PASSWORD,
            allowed_scopes: ScopeSet::EMPTY,
            default_scopes: ScopeSet::EMPTY,
        }
    }

    #[test]
    fn retired_slots_hold_their_index_and_name_no_client() {
        let mut t = ClientTable::new();
        assert_eq!(t.add(client("a")), Ok(ClientIndex(0)));
        assert_eq!(t.retire_slot(), Ok(ClientIndex(1)));
        assert_eq!(t.add(client("c")), Ok(ClientIndex(2)));
        assert!(t.get(ClientIndex(1)).is_none());
        assert_eq!(t.get(ClientIndex(2)).map(|c| c.id.as_str()), Some("c"));
        assert_eq!(t.find(""), None);
        assert_eq!(t.iter().map(|(i, _)| i.0).collect::<alloc::vec::Vec<_>>(), [0, 2]);
        assert_eq!((t.len(), t.slots()), (2, 3));
        assert_eq!(t.capabilities(), Capabilities::PASSWORD);
    }
}
