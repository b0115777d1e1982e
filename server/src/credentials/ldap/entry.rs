//! An entry as the directory sent it, read without trusting it: ldap3's
//! `SearchEntry::construct` panics on a DN or attribute name that is not
//! UTF-8, or on a malformed entry; this never does. And what ropc reads
//! from an entry: the subject, whether it is disabled, when its password
//! last changed.

use super::{ad, time, Entry};
use ldap3::asn1::StructureTag;

/// The attributes ropc asks for.
pub const USER_ACCOUNT_CONTROL: &str = "userAccountControl";
pub const PWD_LAST_SET: &str = "pwdLastSet";
pub const PWD_ACCOUNT_LOCKED_TIME: &str = "pwdAccountLockedTime";
pub const PWD_CHANGED_TIME: &str = "pwdChangedTime";
/// ppolicy's `pwdAccountLockedTime` of an account locked by an operator
/// until an operator unlocks it (draft-behera-ldap-password-policy §5.3.3).
pub const ADMINISTRATIVE_LOCK: &str = "000001010000Z";

/// A search result entry: its DN and its attributes' values (bytes: an
/// attribute need not be text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Never empty.
    pub dn: String,
    attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl Found {
    /// A `SearchResultEntry` (RFC 4511 §4.5.2), or None if it is not one ropc
    /// can use: malformed, a DN that is empty or not UTF-8.
    pub fn parse(tag: StructureTag) -> Option<Found> {
        let mut parts = tag.match_id(4)?.expect_constructed()?.into_iter();
        let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
        if dn.is_empty() {
            return None;
        }
        let mut attrs = Vec::new();
        for attr in parts.next()?.expect_constructed()? {
            let mut attr = attr.expect_constructed()?.into_iter();
            let name = attr.next()?.expect_primitive()?;
            let Ok(name) = String::from_utf8(name) else { continue };
            let values = attr.next()?.expect_constructed()?;
            attrs.push((name, values.into_iter().filter_map(StructureTag::expect_primitive).collect()));
        }
        Some(Found { dn, attrs })
    }

    /// The values of `name` (matched case-insensitively, options such as
    /// `;binary` aside).
    fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.attrs
            .iter()
            .filter(move |(n, _)| n.split(';').next().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .flat_map(|(_, v)| v.iter().map(Vec::as_slice))
    }

    /// The first value of `name`, if it is text.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.values(name).next().and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The subject: the first value of `attribute`, or (none configured, or
    /// the entry lacks it) the username.
    pub fn subject(&self, attribute: Option<&str>, username: &str, manager: &str) -> String {
        let Some(attribute) = attribute else { return username.to_owned() };
        match self.values(attribute).next().map(std::str::from_utf8) {
            Some(Ok(value)) if !value.is_empty() => value.to_owned(),
            found => {
                tracing::warn!(
                    manager,
                    dn = %self.dn,
                    attribute,
                    why = if found.is_some() { "not text" } else { "absent" },
                    "the subject attribute is not on the entry: the username is the subject"
                );
                username.to_owned()
            }
        }
    }

    /// Disabled: AD's ACCOUNTDISABLE bit, or (not AD) OpenLDAP ppolicy's
    /// administrative lock, `pwdAccountLockedTime: 000001010000Z`. Any
    /// other value is a lockout the directory put on failed binds, which it
    /// enforces (and lifts) itself at the next bind: taken as disabled, it
    /// would let anyone who guesses a password wrong a few times end that
    /// user's sessions.
    pub fn disabled(&self, active_directory: bool) -> bool {
        if active_directory {
            self.text(USER_ACCOUNT_CONTROL).is_some_and(ad::uac_disabled)
        } else {
            self.text(PWD_ACCOUNT_LOCKED_TIME) == Some(ADMINISTRATIVE_LOCK)
        }
    }

    /// When the password last changed: AD's `pwdLastSet`, or (not AD)
    /// ppolicy's `pwdChangedTime`.
    pub fn password_changed_at(&self, active_directory: bool) -> Option<u64> {
        if active_directory {
            self.text(PWD_LAST_SET).and_then(time::filetime)
        } else {
            self.text(PWD_CHANGED_TIME).and_then(time::generalized_time)
        }
    }

    /// The account as a refresh checks it.
    pub fn entry(&self, attribute: Option<&str>, active_directory: bool, username: &str, manager: &str) -> Entry {
        Entry {
            subject: self.subject(attribute, username, manager),
            disabled: self.disabled(active_directory),
            password_changed_at: self.password_changed_at(active_directory),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::{StructureTag, TagClass, PL};

    fn octets(b: &[u8]) -> StructureTag {
        StructureTag { class: TagClass::Universal, id: 4, payload: PL::P(b.to_vec()) }
    }

    fn seq(id: u64, class: TagClass, items: Vec<StructureTag>) -> StructureTag {
        StructureTag { class, id, payload: PL::C(items) }
    }

    fn entry(dn: &[u8], attrs: &[(&[u8], &[&[u8]])]) -> StructureTag {
        let attrs = attrs
            .iter()
            .map(|(name, values)| {
                seq(
                    16,
                    TagClass::Universal,
                    vec![octets(name), seq(17, TagClass::Universal, values.iter().map(|v| octets(v)).collect())],
                )
            })
            .collect();
        seq(4, TagClass::Application, vec![octets(dn), seq(16, TagClass::Universal, attrs)])
    }

    #[test]
    fn entries_are_read_case_insensitively() {
        let found = Found::parse(entry(
            b"uid=alice,ou=people,dc=example,dc=org",
            &[(b"UID", &[b"alice"]), (b"employeeNumber;x-opt", &[b"1001", b"1002"]), (b"jpegPhoto", &[b"\xff\xd8"])],
        ))
        .unwrap();
        assert_eq!(found.dn, "uid=alice,ou=people,dc=example,dc=org");
        assert_eq!(found.text("uid"), Some("alice"));
        assert_eq!(found.text("employeenumber"), Some("1001"));
        assert_eq!(found.subject(Some("employeeNumber"), "alice", "m"), "1001");
        assert_eq!(found.subject(None, "alice", "m"), "alice");
        assert_eq!(found.subject(Some("mail"), "alice", "m"), "alice", "absent: the username");
        assert_eq!(found.subject(Some("jpegPhoto"), "alice", "m"), "alice", "not text: the username");
        assert!(found.values("jpegphoto").next().is_some() && found.text("jpegPhoto").is_none());
    }

    #[test]
    fn odd_entries_never_panic() {
        assert!(Found::parse(entry(b"", &[])).is_none(), "an empty DN");
        assert!(Found::parse(entry(b"uid=\xff,dc=x", &[])).is_none(), "a DN that is not UTF-8");
        let found = Found::parse(entry(b"uid=a,dc=x", &[(b"\xfe", &[b"v"]), (b"cn", &[b"\xff"])])).unwrap();
        assert!(found.text("cn").is_none(), "a value that is not UTF-8");
        assert!(Found::parse(octets(b"uid=a,dc=x")).is_none(), "not an entry");
        assert!(Found::parse(seq(4, TagClass::Application, vec![])).is_none(), "no DN");
        assert!(Found::parse(seq(4, TagClass::Application, vec![octets(b"uid=a,dc=x")])).is_none(), "no attributes");
        let bad_attr = seq(16, TagClass::Universal, vec![octets(b"cn")]);
        let tag = seq(4, TagClass::Application, vec![octets(b"uid=a"), seq(16, TagClass::Universal, vec![bad_attr])]);
        assert!(Found::parse(tag).is_none(), "an attribute without values");
        let tag = seq(4, TagClass::Application, vec![seq(16, TagClass::Universal, vec![]), octets(b"x")]);
        assert!(Found::parse(tag).is_none(), "a DN that is not a string");
    }

    #[test]
    fn accounts_from_ppolicy_and_ad() {
        let ppolicy = Found::parse(entry(
            b"uid=a,dc=x",
            &[(b"pwdChangedTime", &[b"20240102030405Z"]), (b"pwdAccountLockedTime", &[b"000001010000Z"])],
        ))
        .unwrap();
        let e = ppolicy.entry(None, false, "a", "m");
        assert_eq!(e, Entry { subject: "a".into(), disabled: true, password_changed_at: Some(1_704_164_645) });
        // A lockout after failed binds is the directory's to enforce: not
        // a disabled account.
        let guessed_at =
            Found::parse(entry(b"uid=a,dc=x", &[(b"pwdAccountLockedTime", &[b"20261207120000Z"])])).unwrap();
        assert!(!guessed_at.disabled(false));
        assert_eq!(ppolicy.entry(None, true, "a", "m").password_changed_at, None, "AD reads pwdLastSet");
        let ad = Found::parse(entry(
            b"CN=Alice,CN=Users,DC=example,DC=org",
            &[(b"userAccountControl", &[b"514"]), (b"pwdLastSet", &[b"133485408000000000"])],
        ))
        .unwrap();
        assert_eq!(
            ad.entry(None, true, "alice", "m"),
            Entry { subject: "alice".into(), disabled: true, password_changed_at: Some(1_704_067_200) }
        );
        let fine = Found::parse(entry(b"uid=a,dc=x", &[(b"userAccountControl", &[b"512"]), (b"pwdLastSet", &[b"0"])]));
        assert_eq!(
            fine.unwrap().entry(None, true, "a", "m"),
            Entry { subject: "a".into(), disabled: false, password_changed_at: None }
        );
        let odd = Found::parse(entry(b"uid=a,dc=x", &[(b"pwdChangedTime", &[b"yesterday"])])).unwrap();
        assert_eq!(odd.entry(None, false, "a", "m").password_changed_at, None);
    }
}
