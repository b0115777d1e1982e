//! A username spliced into a search filter or a DN, escaped so that it is
//! only ever a value: RFC 4515 for filters, RFC 4514 for DNs.

/// `value` as an RFC 4515 assertion value: `*`, `(`, `)`, `\`, NUL and every
/// byte that is not ASCII become `\xx`, so the filter ropc sends is ASCII
/// and `{username}` can only ever match itself.
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if matches!(b, b'*' | b'(' | b')' | b'\\' | 0) || !b.is_ascii() {
            out.push('\\');
            out.push(hex(b >> 4));
            out.push(hex(b & 0xf));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// `value` as an RFC 4514 attribute value in a DN: `,`, `+`, `"`, `\`, `<`,
/// `>`, `;`, `=` are escaped with a backslash, NUL as `\00`, and so are a
/// leading `#` or space and a trailing space, so that a username can never
/// add an RDN or a level to the DN.
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '\0' => out.push_str("\\00"),
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

/// `template` with every `{username}` replaced by `escaped`.
pub fn fill(template: &str, escaped: &str) -> String {
    template.replace("{username}", escaped)
}

fn hex(nibble: u8) -> char {
    char::from(if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_rfc_4515() {
        for (raw, escaped) in [
            ("alice", "alice"),
            ("*", "\\2a"),
            ("lar*", "lar\\2a"),
            ("(", "\\28"),
            (")", "\\29"),
            ("\\", "\\5c"),
            ("\\2a", "\\5c2a"),
            ("\0", "\\00"),
            ("x)(uid=*", "x\\29\\28uid=\\2a"),
            ("*)(|(uid=*", "\\2a\\29\\28|\\28uid=\\2a"),
            ("josé", "jos\\c3\\a9"),
            ("ü", "\\c3\\bc"),
            ("a b=c,d+e\"f<g>h;i#", "a b=c,d+e\"f<g>h;i#"),
            ("", ""),
        ] {
            assert_eq!(filter_value(raw), escaped, "{raw:?}");
            assert!(filter_value(raw).is_ascii());
        }
    }

    #[test]
    fn filter_values_parse_as_one_equality_match() {
        for raw in ["*", "lar*", "x)(uid=*", "*)(|(uid=*", "\\2a", "a\0b", "josé", ")(", "\\"] {
            let filter = fill("(uid={username})", &filter_value(raw));
            assert!(ldap3::parse_filter(&filter).is_ok(), "{filter}");
            let twice = fill("(&(objectClass=person)(uid={username}))", &filter_value(raw));
            assert!(ldap3::parse_filter(&twice).is_ok(), "{twice}");
        }
    }

    #[test]
    fn dn_values_rfc_4514() {
        for (raw, escaped) in [
            ("alice", "alice"),
            ("alice,ou=admins", "alice\\,ou\\=admins"),
            ("a+cn=b", "a\\+cn\\=b"),
            ("\"q\"", "\\\"q\\\""),
            ("back\\slash", "back\\\\slash"),
            ("<x>", "\\<x\\>"),
            ("a;b", "a\\;b"),
            ("a=b", "a\\=b"),
            ("nul\0", "nul\\00"),
            ("#hash", "\\#hash"),
            ("mid#hash", "mid#hash"),
            (" lead", "\\ lead"),
            ("trail ", "trail\\ "),
            (" ", "\\ "),
            ("in side", "in side"),
            ("josé", "josé"),
            ("*(uid)", "*(uid)"),
            ("", ""),
        ] {
            assert_eq!(dn_value(raw), escaped, "{raw:?}");
        }
    }

    #[test]
    fn templates_take_every_placeholder() {
        assert_eq!(fill("(|(uid={username})(mail={username}))", "a\\2a"), "(|(uid=a\\2a)(mail=a\\2a))");
        assert_eq!(
            fill("uid={username},ou=people,dc=example,dc=org", "a\\,b"),
            "uid=a\\,b,ou=people,dc=example,dc=org"
        );
    }
}
