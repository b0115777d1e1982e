//! Keeping the URL's password out of what is logged: sqlx's errors may
//! quote the URL, or the password alone. Every text from sqlx goes through
//! [`Scrubber::scrub`] before a log or an error message.

use crate::redact::redact_url;
use zeroize::Zeroizing;

/// The URL's password in each form it may be quoted in (as written, and
/// percent-decoded), zeroed on drop.
pub(super) struct Scrubber {
    secrets: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber(<redacted>)")
    }
}

/// `%XX` decoded (and `+` kept): the password as sqlx sends it.
fn percent_decoded(s: &str) -> Zeroizing<String> {
    let b = s.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(b.len()));
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Zeroizing::new(String::from_utf8_lossy(&out).into_owned())
}

impl Scrubber {
    /// Finds the password of `url`: in its user info (`user:pw@`) and in a
    /// `password=` parameter (PostgreSQL's URLs take one).
    pub(super) fn new(url: &str) -> Self {
        let mut raw: Vec<&str> = Vec::new();
        if let (Some(scheme), Some(at)) = (url.find("://"), url.rfind('@')) {
            if at > scheme {
                if let Some((_, pw)) = url[scheme + 3..at].split_once(':') {
                    raw.push(pw);
                }
            }
        }
        if let Some((_, query)) = url.split_once('?') {
            for pair in query.split('&') {
                if let Some((key, value)) = pair.split_once('=') {
                    if key.eq_ignore_ascii_case("password") {
                        raw.push(value);
                    }
                }
            }
        }
        let mut secrets: Vec<Zeroizing<String>> = Vec::new();
        for pw in raw.into_iter().filter(|pw| !pw.is_empty()) {
            for form in [Zeroizing::new(pw.to_owned()), percent_decoded(pw)] {
                if !form.is_empty() && !secrets.iter().any(|s| **s == *form) {
                    secrets.push(form);
                }
            }
        }
        // The longest first, so that a form inside another goes too.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// `text` without the password, and each URL in it (a word with
    /// `://`) without its user info's password.
    pub(super) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        if !out.contains("://") {
            return out;
        }
        let mut words = String::with_capacity(out.len());
        for (i, word) in out.split(' ').enumerate() {
            if i > 0 {
                words.push(' ');
            }
            words.push_str(&if word.contains("://") { redact_url(word) } else { word.to_owned() });
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_goes_in_every_form() {
        let s = Scrubber::new("postgres://ropc:p%40ss%2Fw0rd@db:5432/legacy?sslmode=require");
        let said = "error with configuration: postgres://ropc:p%40ss%2Fw0rd@db:5432/legacy; then p@ss/w0rd alone";
        let clean = s.scrub(said);
        assert!(!clean.contains("w0rd"), "{clean}");
        assert!(clean.contains("ropc:<redacted>@db:5432/legacy") && clean.contains("then <redacted> alone"), "{clean}");
        let s = Scrubber::new("postgres://db/legacy?user=ropc&password=hunter2&sslmode=disable");
        assert_eq!(s.scrub("auth as ropc with hunter2 failed"), "auth as ropc with <redacted> failed");
        assert_eq!(format!("{s:?}"), "Scrubber(<redacted>)");
        let none = Scrubber::new("sqlite:///var/lib/users.db");
        assert_eq!(none.scrub("unable to open database file"), "unable to open database file");
        assert_eq!(Scrubber::new("mysql://ropc@db/x").scrub("ropc@db"), "ropc@db", "no password: nothing to hide");
        // A URL that is not the manager's loses its password too.
        let other = Scrubber::new("mysql://ropc:a@db/x").scrub("see mysql://root:toor@h/y for root@h");
        assert_eq!(other, "see mysql://root:<redacted>@h/y for root@h");
    }
}
