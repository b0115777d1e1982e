//! Keeping secrets out of logs and `Debug`: connection URLs carry
//! passwords (`redis://:pw@host`, `postgres://user:pw@host/db`).

/// `url` with any password replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
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
    }
}
