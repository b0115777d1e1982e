//! Keeping secrets out of logs and `Debug`: connection URLs carry
//! passwords (`redis://:pw@host`, `postgres://user:pw@host/db`).

/// `url` with any password replaced by `<redacted>`: the user info's, and
/// a `password=` parameter's (PostgreSQL's URLs take one).
pub fn redact_url(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    };
    match url.split_once('?') {
        Some((head, query))
            if query.split('&').any(|p| p.get(..9).is_some_and(|k| k.eq_ignore_ascii_case("password="))) =>
        {
            let pairs: Vec<&str> = query
                .split('&')
                .map(|p| {
                    if p.get(..9).is_some_and(|k| k.eq_ignore_ascii_case("password=")) {
                        "password=<redacted>"
                    } else {
                        p
                    }
                })
                .collect();
            format!("{head}?{}", pairs.join("&"))
        }
        _ => url,
    }
}

/// A secret read from the configuration (a directory's service-account
/// password): zeroed when dropped, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: String) -> Self {
        Self(zeroize::Zeroizing::new(value))
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A connection URL that may carry a password: zeroed when dropped, shown
/// by `Debug` and [`SecretUrl::redacted`] without it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(zeroize::Zeroizing<String>);

impl SecretUrl {
    /// Wraps `url`.
    pub fn new(url: String) -> Self {
        Self(zeroize::Zeroizing::new(url))
    }

    /// The URL, password included. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its password, for logs.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_go_and_the_rest_stays() {
        assert_eq!(redact_url("redis://:hunter2@10.0.0.5:6379/2"), "redis://:<redacted>@10.0.0.5:6379/2");
        assert_eq!(redact_url("postgres://ropc:pw@db:5432/x"), "postgres://ropc:<redacted>@db:5432/x");
        assert_eq!(redact_url("redis://10.0.0.5:6379"), "redis://10.0.0.5:6379");
        assert_eq!(redact_url("sqlite:users.db"), "sqlite:users.db");
        assert_eq!(
            redact_url("postgres://db/x?user=ropc&Password=hunter2&sslmode=require"),
            "postgres://db/x?user=ropc&password=<redacted>&sslmode=require"
        );
        let url = SecretUrl::new("mysql://ropc:hunter2@db/legacy".into());
        assert_eq!(format!("{url:?}"), "\"mysql://ropc:<redacted>@db/legacy\"");
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "<redacted>");
    }
}
