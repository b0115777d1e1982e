//! Active Directory: the sub-code of a refused bind ("…, data 52e, v2580")
//! and `userAccountControl`.

use super::BindOutcome;

/// `userAccountControl`'s ACCOUNTDISABLE bit.
const ACCOUNTDISABLE: i64 = 0x2;

/// The sub-code in the diagnostic message of a result 49, as AD (and Samba
/// AD) write it: `80090308: LdapErr: DSID-0C09044E, comment:
/// AcceptSecurityContext error, data 52e, v2580` (often with a NUL at the
/// end). None when there is none.
pub fn sub_code(message: &str) -> Option<u32> {
    message.match_indices("data ").find_map(|(at, _)| {
        let before = message[..at].chars().next_back();
        if before.is_some_and(char::is_alphanumeric) {
            return None;
        }
        let rest = &message[at + "data ".len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        let after = rest[digits..].chars().next();
        if digits == 0 || digits > 8 || after.is_some_and(char::is_alphanumeric) {
            return None;
        }
        u32::from_str_radix(&rest[..digits], 16).ok()
    })
}

/// What a result 49 with `sub_code` means.
pub fn outcome(sub_code: Option<u32>) -> BindOutcome {
    let disabled = |detail| BindOutcome::Disabled { detail: Some(detail) };
    match sub_code {
        Some(0x52e) => BindOutcome::WrongPassword { detail: Some("bad_password") },
        Some(0x525) => BindOutcome::WrongPassword { detail: Some("no_such_user") },
        Some(0x530) => disabled("not_permitted_at_this_time"),
        Some(0x531) => disabled("not_permitted_at_this_workstation"),
        Some(0x532) => disabled("password_expired"),
        Some(0x533) => disabled("account_disabled"),
        Some(0x701) => disabled("account_expired"),
        Some(0x773) => disabled("must_reset_password"),
        Some(0x775) => disabled("account_locked"),
        _ => BindOutcome::WrongPassword { detail: None },
    }
}

/// Whether a `userAccountControl` value has ACCOUNTDISABLE set (AD writes
/// it as a signed 32-bit integer). Not a number: not disabled.
pub fn uac_disabled(value: &str) -> bool {
    value.trim().parse::<i64>().is_ok_and(|v| v & ACCOUNTDISABLE != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Diagnostic messages as AD and Samba AD send them with result 49.
    #[test]
    fn sub_codes_from_real_messages() {
        for (message, code) in [
            ("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v2580\0", 0x52e),
            ("80090308: LdapErr: DSID-0C090446, comment: AcceptSecurityContext error, data 52e, v2580", 0x52e),
            ("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1\0", 0x52e),
            ("80090308: LdapErr: DSID-0C09042F, comment: AcceptSecurityContext error, data 525, v4563\0", 0x525),
            ("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 530, v1db1", 0x530),
            ("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 531, v1db1", 0x531),
            ("80090308: LdapErr: DSID-0C09030B, comment: AcceptSecurityContext error, data 532, v893", 0x532),
            ("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 533, v1db1\0", 0x533),
            ("80090308: LdapErr: DSID-0C090334, comment: AcceptSecurityContext error, data 701, vece", 0x701),
            ("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 773, v2580", 0x773),
            ("80090308: LdapErr: DSID-0C090334, comment: AcceptSecurityContext error, data 775, vece\0", 0x775),
            ("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52E, v4f7c", 0x52e),
        ] {
            assert_eq!(sub_code(message), Some(code), "{message:?}");
        }
        for message in [
            "",
            "Invalid credentials",
            "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, v2580",
            "metadata 52e",
            "data , v2580",
            "data 52ex",
            "data 123456789",
            "ppolicy: data 52é",
        ] {
            assert_eq!(sub_code(message), None, "{message:?}");
        }
    }

    #[test]
    fn sub_codes_mean_what_ad_says() {
        let m = |code: &str| {
            outcome(sub_code(&format!(
                "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code}, v2580\0"
            )))
        };
        assert_eq!(m("52e"), BindOutcome::WrongPassword { detail: Some("bad_password") });
        assert_eq!(m("525"), BindOutcome::WrongPassword { detail: Some("no_such_user") });
        for (code, detail) in [
            ("530", "not_permitted_at_this_time"),
            ("531", "not_permitted_at_this_workstation"),
            ("532", "password_expired"),
            ("533", "account_disabled"),
            ("701", "account_expired"),
            ("773", "must_reset_password"),
            ("775", "account_locked"),
        ] {
            assert_eq!(m(code), BindOutcome::Disabled { detail: Some(detail) }, "{code}");
        }
        assert_eq!(m("568"), BindOutcome::WrongPassword { detail: None }, "an unknown sub-code");
        assert_eq!(outcome(None), BindOutcome::WrongPassword { detail: None });
    }

    #[test]
    fn user_account_control() {
        assert!(!uac_disabled("512"), "NORMAL_ACCOUNT");
        assert!(uac_disabled("514"), "NORMAL_ACCOUNT | ACCOUNTDISABLE");
        assert!(uac_disabled("66050"), "| DONT_EXPIRE_PASSWORD");
        assert!(!uac_disabled("66048"));
        assert!(uac_disabled("-2147483646"), "signed, high bit set");
        assert!(!uac_disabled(""));
        assert!(!uac_disabled("disabled"));
    }
}
