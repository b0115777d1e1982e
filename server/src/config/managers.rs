//! `[credential_managers.NAME]`: where users and their password hashes
//! live besides the default users file: another users file, a SQL table,
//! or an LDAP directory. Each key is checked against the table's `kind`, so
//! that a key of another kind is refused with its line.

use super::raw::{ManagerKind, RawManager};
use super::server::bounded;
use super::ConfigError;
use crate::credentials::{LdapConfig, LdapLocate, ManagerConfig, SqlConfig, SqlDriver};
use crate::redact::{Secret, SecretUrl};
use crate::source::{read_file, Locator};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// The defaults of the SQL and LDAP keys.
const MAX_CONNECTIONS: u64 = 16;
const CONNECT_TIMEOUT_MS: u64 = 2000;
const OPERATION_TIMEOUT_MS: u64 = 2000;
const ACCOUNT_CACHE_TTL: u64 = 60;

/// Validates every `[credential_managers.NAME]` table.
pub(super) fn parse(
    loc: &Locator<'_>,
    dir: &Path,
    raw: BTreeMap<String, Spanned<RawManager>>,
) -> Result<BTreeMap<String, ManagerConfig>, ConfigError> {
    let mut managers = BTreeMap::new();
    for (name, table) in raw {
        let span = table.span();
        let m = table.into_inner();
        let prefix = format!("credential_managers.{name}");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(loc.at(span, &prefix, "a manager's name is letters, digits, `_` and `-`"));
        }
        let parsed = match *m.kind.get_ref() {
            ManagerKind::File => file(loc, dir, &prefix, &m)?,
            ManagerKind::Sql => ManagerConfig::Sql(sql(loc, dir, &prefix, &m)?),
            ManagerKind::Ldap => ManagerConfig::Ldap(ldap(loc, dir, &prefix, &m)?),
        };
        managers.insert(name, parsed);
    }
    Ok(managers)
}

/// Refuses any of `keys` that is set: they belong to another kind.
fn not_for(
    loc: &Locator<'_>,
    prefix: &str,
    kind: &str,
    keys: &[(&str, Option<std::ops::Range<usize>>)],
) -> Result<(), ConfigError> {
    for (key, span) in keys {
        if let Some(span) = span {
            return Err(loc.at(span.clone(), &format!("{prefix}.{key}"), format!("not a key of kind = \"{kind}\"")));
        }
    }
    Ok(())
}

fn span<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
    v.as_ref().map(Spanned::span)
}

fn file(loc: &Locator<'_>, dir: &Path, prefix: &str, m: &RawManager) -> Result<ManagerConfig, ConfigError> {
    not_for(loc, prefix, "file", &sql_keys(m))?;
    not_for(loc, prefix, "file", &ldap_keys(m))?;
    not_for(loc, prefix, "file", &common_keys(m))?;
    let users_file = m
        .users_file
        .as_ref()
        .ok_or_else(|| loc.at(m.kind.span(), &format!("{prefix}.users_file"), "kind = \"file\" needs users_file"))?;
    Ok(ManagerConfig::File { users_file: dir.join(users_file.get_ref()) })
}

fn sql_keys(m: &RawManager) -> Vec<(&'static str, Option<std::ops::Range<usize>>)> {
    vec![
        ("url", span(&m.url)),
        ("url_file", span(&m.url_file)),
        ("query", span(&m.query)),
        ("update_query", span(&m.update_query)),
        ("query_timeout_ms", span(&m.query_timeout_ms)),
    ]
}

fn ldap_keys(m: &RawManager) -> Vec<(&'static str, Option<std::ops::Range<usize>>)> {
    vec![
        ("urls", span(&m.urls)),
        ("start_tls", span(&m.start_tls)),
        ("ca_file", span(&m.ca_file)),
        ("bind_dn", span(&m.bind_dn)),
        ("bind_password_file", span(&m.bind_password_file)),
        ("base_dn", span(&m.base_dn)),
        ("user_filter", span(&m.user_filter)),
        ("user_dn_template", span(&m.user_dn_template)),
        ("subject_attribute", span(&m.subject_attribute)),
        ("active_directory", span(&m.active_directory)),
        ("operation_timeout_ms", span(&m.operation_timeout_ms)),
    ]
}

fn common_keys(m: &RawManager) -> Vec<(&'static str, Option<std::ops::Range<usize>>)> {
    vec![
        ("max_connections", span(&m.max_connections)),
        ("connect_timeout_ms", span(&m.connect_timeout_ms)),
        ("account_cache_ttl", span(&m.account_cache_ttl)),
    ]
}

/// The keys SQL and LDAP share, with their defaults.
struct Common {
    max_connections: u32,
    connect_timeout: Duration,
    account_cache_ttl: Duration,
}

fn common(loc: &Locator<'_>, prefix: &str, m: &RawManager) -> Result<Common, ConfigError> {
    let or = |v: &Option<Spanned<u64>>, default: u64| v.clone().unwrap_or_else(|| Spanned::new(0..0, default));
    let key = |k: &str| format!("{prefix}.{k}");
    let max = bounded(loc, &or(&m.max_connections, MAX_CONNECTIONS), &key("max_connections"), 1..=1024, "")?;
    let connect =
        bounded(loc, &or(&m.connect_timeout_ms, CONNECT_TIMEOUT_MS), &key("connect_timeout_ms"), 1..=60_000, " ms")?;
    let ttl = bounded(loc, &or(&m.account_cache_ttl, ACCOUNT_CACHE_TTL), &key("account_cache_ttl"), 0..=86_400, " s")?;
    Ok(Common {
        max_connections: u32::try_from(max).unwrap_or(1024),
        connect_timeout: Duration::from_millis(connect),
        account_cache_ttl: Duration::from_secs(ttl),
    })
}

/// The first line of `path` (relative to the config's directory), for a
/// secret kept out of the config file.
fn first_line(loc: &Locator<'_>, dir: &Path, key: &str, path: &Spanned<String>) -> Result<String, ConfigError> {
    let file = dir.join(path.get_ref());
    let text = read_file(&file, "cannot read the file").map_err(|e| loc.at(path.span(), key, e.to_string()))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r').to_owned();
    if line.is_empty() {
        return Err(loc.at(path.span(), key, format!("{}: the first line is empty", file.display())));
    }
    Ok(line)
}

fn sql(loc: &Locator<'_>, dir: &Path, prefix: &str, m: &RawManager) -> Result<SqlConfig, ConfigError> {
    not_for(loc, prefix, "sql", &ldap_keys(m))?;
    not_for(loc, prefix, "sql", &[("users_file", span(&m.users_file))])?;
    let key = |k: &str| format!("{prefix}.{k}");
    let url = match (&m.url, &m.url_file) {
        (Some(url), None) => (url.get_ref().clone(), url.span(), key("url")),
        (None, Some(file)) => (first_line(loc, dir, &key("url_file"), file)?, file.span(), key("url_file")),
        (Some(url), Some(_)) => return Err(loc.at(url.span(), &key("url"), "set url or url_file, not both")),
        (None, None) => {
            return Err(loc.at(m.kind.span(), &key("url"), "kind = \"sql\" needs url (or url_file)"));
        }
    };
    let (url, url_span, url_key) = url;
    let (driver, url) = if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        let (file, options) = path.split_once('?').map_or((path, ""), |(f, o)| (f, o));
        if file.is_empty() {
            return Err(loc.at(url_span, &url_key, "sqlite: needs a file, as in sqlite:users.db"));
        }
        let resolved = dir.join(file);
        let options = if options.is_empty() { String::new() } else { format!("?{options}") };
        (SqlDriver::Sqlite, format!("sqlite://{}{options}", resolved.display()))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        (SqlDriver::Postgres, url)
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        (SqlDriver::MySql, url.replacen("mariadb://", "mysql://", 1))
    } else {
        let shown = crate::redact::redact_url(&url);
        return Err(loc.at(
            url_span,
            &url_key,
            format!("{shown:?} is not a database URL: postgres://…, mysql://… (MySQL, MariaDB) or sqlite:PATH"),
        ));
    };
    let query = m.query.as_ref().ok_or_else(|| loc.at(m.kind.span(), &key("query"), "kind = \"sql\" needs a query"))?;
    let params =
        crate::credentials::sql::parameters(query.get_ref()).map_err(|e| loc.at(query.span(), &key("query"), e))?;
    if params.iter().any(|p| p != "username") || params.is_empty() {
        return Err(loc.at(
            query.span(),
            &key("query"),
            "the query takes one parameter, :username (it may appear more than once)",
        ));
    }
    let update_query = match &m.update_query {
        None => None,
        Some(u) => {
            let params = crate::credentials::sql::parameters(u.get_ref())
                .map_err(|e| loc.at(u.span(), &key("update_query"), e))?;
            if !params.iter().any(|p| p == "hash")
                || params.iter().any(|p| !["hash", "subject", "username"].contains(&p.as_str()))
            {
                return Err(loc.at(
                    u.span(),
                    &key("update_query"),
                    "the update query takes :hash, and may take :subject and :username",
                ));
            }
            Some(u.get_ref().clone())
        }
    };
    let c = common(loc, prefix, m)?;
    let timeout = m.query_timeout_ms.clone().unwrap_or_else(|| Spanned::new(0..0, OPERATION_TIMEOUT_MS));
    let query_timeout = bounded(loc, &timeout, &key("query_timeout_ms"), 1..=60_000, " ms")?;
    Ok(SqlConfig {
        url: SecretUrl::new(url),
        driver,
        query: query.get_ref().clone(),
        update_query,
        max_connections: c.max_connections,
        connect_timeout: c.connect_timeout,
        query_timeout: Duration::from_millis(query_timeout),
        account_cache_ttl: c.account_cache_ttl,
    })
}

fn ldap(loc: &Locator<'_>, dir: &Path, prefix: &str, m: &RawManager) -> Result<LdapConfig, ConfigError> {
    not_for(loc, prefix, "ldap", &sql_keys(m))?;
    not_for(loc, prefix, "ldap", &[("users_file", span(&m.users_file))])?;
    let key = |k: &str| format!("{prefix}.{k}");
    let urls =
        m.urls.as_ref().filter(|u| !u.get_ref().is_empty()).ok_or_else(|| {
            loc.at(m.kind.span(), &key("urls"), "kind = \"ldap\" needs urls = [\"ldaps://host:636\"]")
        })?;
    let start_tls = m.start_tls.as_ref().is_some_and(|s| *s.get_ref());
    for url in urls.get_ref() {
        let u = url.get_ref();
        let ldaps = u.starts_with("ldaps://");
        if !(ldaps || u.starts_with("ldap://")) || u.len() <= "ldaps://".len() {
            return Err(loc.at(url.span(), &key("urls"), format!("{u:?} is not an ldap:// or ldaps:// URL")));
        }
        if ldaps && start_tls {
            return Err(loc.at(url.span(), &key("urls"), "start_tls upgrades ldap://; ldaps:// is TLS already"));
        }
    }
    let ca_file = match &m.ca_file {
        None => None,
        Some(f) => {
            let path = dir.join(f.get_ref());
            if !path.is_file() {
                return Err(loc.at(f.span(), &key("ca_file"), format!("{}: no such file", path.display())));
            }
            Some(path)
        }
    };
    let locate = match (&m.user_dn_template, &m.bind_dn) {
        (Some(t), None) => {
            if !t.get_ref().contains("{username}") {
                return Err(loc.at(t.span(), &key("user_dn_template"), "the template needs {username}"));
            }
            for (k, v) in [("base_dn", span(&m.base_dn)), ("user_filter", span(&m.user_filter))] {
                if let Some(v) = v {
                    return Err(loc.at(v, &key(k), "only used to search (with bind_dn), not with user_dn_template"));
                }
            }
            LdapLocate::Template(t.get_ref().clone())
        }
        (None, Some(bind_dn)) => {
            let password = m.bind_password_file.as_ref().ok_or_else(|| {
                loc.at(bind_dn.span(), &key("bind_password_file"), "bind_dn needs bind_password_file")
            })?;
            let bind_password = Secret::new(first_line(loc, dir, &key("bind_password_file"), password)?);
            let base_dn =
                m.base_dn.as_ref().ok_or_else(|| loc.at(bind_dn.span(), &key("base_dn"), "searching needs base_dn"))?;
            let filter =
                m.user_filter.as_ref().map_or_else(|| Spanned::new(0..0, "(uid={username})".to_owned()), Clone::clone);
            if !filter.get_ref().contains("{username}") {
                return Err(loc.at(filter.span(), &key("user_filter"), "the filter needs {username}"));
            }
            if !(filter.get_ref().starts_with('(') && filter.get_ref().ends_with(')')) {
                return Err(loc.at(filter.span(), &key("user_filter"), "a filter is in parentheses (RFC 4515)"));
            }
            LdapLocate::Search {
                bind_dn: bind_dn.get_ref().clone(),
                bind_password,
                base_dn: base_dn.get_ref().clone(),
                user_filter: filter.get_ref().clone(),
            }
        }
        (Some(t), Some(_)) => {
            return Err(loc.at(t.span(), &key("user_dn_template"), "set user_dn_template or bind_dn, not both"))
        }
        (None, None) => {
            return Err(loc.at(
                m.kind.span(),
                &key("bind_dn"),
                "kind = \"ldap\" needs bind_dn (search, then bind) or user_dn_template (bind directly)",
            ))
        }
    };
    if let (LdapLocate::Template(_), Some(f)) = (&locate, &m.bind_password_file) {
        return Err(loc.at(f.span(), &key("bind_password_file"), "only used with bind_dn"));
    }
    let c = common(loc, prefix, m)?;
    let timeout = m.operation_timeout_ms.clone().unwrap_or_else(|| Spanned::new(0..0, OPERATION_TIMEOUT_MS));
    let operation_timeout = bounded(loc, &timeout, &key("operation_timeout_ms"), 1..=60_000, " ms")?;
    Ok(LdapConfig {
        urls: urls.get_ref().iter().map(|u| u.get_ref().clone()).collect(),
        start_tls,
        ca_file,
        locate,
        subject_attribute: m.subject_attribute.as_ref().map(|s| s.get_ref().clone()),
        active_directory: m.active_directory.as_ref().is_some_and(|a| *a.get_ref()),
        max_connections: c.max_connections,
        connect_timeout: c.connect_timeout,
        operation_timeout: Duration::from_millis(operation_timeout),
        account_cache_ttl: c.account_cache_ttl,
    })
}
