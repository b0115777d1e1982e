//! The directory's timestamps as seconds since the epoch: RFC 4517's
//! generalized time (OpenLDAP's `pwdChangedTime`) and Windows FILETIME
//! (AD's `pwdLastSet`). Anything else, or a time before 1970, is None.

/// 100-ns intervals per second.
const FILETIME_PER_SEC: u64 = 10_000_000;
/// Seconds from 1601-01-01 to 1970-01-01.
const FILETIME_EPOCH_OFFSET: u64 = 11_644_473_600;

/// `YYYYMMDDHH[MM[SS]][(.|,)fraction](Z|(+|-)HH[MM])`, RFC 4517 §3.3.13.
pub fn generalized_time(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let mut i = 0;
    let (year, month, day, hour) =
        (digits(b, &mut i, 4)?, digits(b, &mut i, 2)?, digits(b, &mut i, 2)?, digits(b, &mut i, 2)?);
    let (mut minute, mut second, mut unit) = (0, 0, 3600);
    if let Some(m) = digits(b, &mut i, 2) {
        (minute, unit) = (m, 60);
        if let Some(s) = digits(b, &mut i, 2) {
            (second, unit) = (s, 1);
        }
    }
    let mut fraction = 0;
    if matches!(b.get(i), Some(b'.' | b',')) {
        let start = i + 1;
        let len = b[start..].iter().take_while(|d| d.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        // The fraction of the last unit given, in whole seconds.
        let (mut num, mut den) = (0i64, 1i64);
        for d in &b[start..start + len.min(9)] {
            num = num * 10 + i64::from(d - b'0');
            den *= 10;
        }
        fraction = num * unit / den;
        i = start + len;
    }
    let offset = match b.get(i) {
        Some(b'Z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            i += 1;
            let hours = digits(b, &mut i, 2)?;
            let minutes = if i < b.len() { digits(b, &mut i, 2)? } else { 0 };
            if i != b.len() || hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second + fraction - offset;
    u64::try_from(secs).ok()
}

/// The `n` ASCII digits at `b[*i..]` as a number (and `*i` past them), or
/// None (and `*i` as it was).
fn digits(b: &[u8], i: &mut usize, n: usize) -> Option<i64> {
    let part = b.get(*i..*i + n)?;
    if !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    *i += n;
    Some(part.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
}

/// A FILETIME in decimal (100-ns intervals since 1601): 0 ("must change
/// at next logon") and the "never" value are None.
pub fn filetime(s: &str) -> Option<u64> {
    let ft: u64 = s.trim().parse().ok()?;
    if ft == 0 || ft >= i64::MAX as u64 {
        return None;
    }
    (ft / FILETIME_PER_SEC).checked_sub(FILETIME_EPOCH_OFFSET)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_times() {
        for (s, secs) in [
            ("19700101000000Z", Some(0)),
            ("20240102030405Z", Some(1_704_164_645)),
            ("20261207234647Z", Some(1_796_687_207)),
            ("20240229120000Z", Some(1_709_208_000)),
            ("20240102030405.123Z", Some(1_704_164_645)),
            ("20240102030405,999999Z", Some(1_704_164_645)),
            ("202401020304Z", Some(1_704_164_640)),
            ("2024010203Z", Some(1_704_164_400)),
            ("2024010203.5Z", Some(1_704_166_200)),
            ("202401020304.5Z", Some(1_704_164_670)),
            ("20240102030405+0100", Some(1_704_161_045)),
            ("20240102030405-0130", Some(1_704_170_045)),
            ("20240102030405+01", Some(1_704_161_045)),
            ("20161231235960Z", Some(1_483_228_800)),
            ("21000301000000Z", Some(4_107_542_400)),
        ] {
            assert_eq!(generalized_time(s), secs, "{s}");
        }
        for s in [
            "",
            "000001010000Z",
            "19691231235959Z",
            "20240102030405",
            "20240102030405z",
            "20240102030405ZZ",
            "20241302030405Z",
            "20240230030405Z",
            "20230229030405Z",
            "20240102240405Z",
            "20240102036005Z",
            "20240102030461Z",
            "2024010203040Z",
            "20240102030405.Z",
            "20240102030405+2400",
            "20240102030405+01000",
            "2024-01-02T03:04:05Z",
            "２０２４0102030405Z",
            "99999999999999999999999Z",
        ] {
            assert_eq!(generalized_time(s), None, "{s}");
        }
    }

    #[test]
    fn filetimes() {
        assert_eq!(filetime("116444736000000000"), Some(0), "the epoch");
        assert_eq!(filetime("133485408000000000"), Some(1_704_067_200), "2024-01-01");
        assert_eq!(filetime("133485408009999999"), Some(1_704_067_200));
        assert_eq!(filetime(" 133485408000000000 "), Some(1_704_067_200));
        assert_eq!(filetime("0"), None, "must change at next logon");
        assert_eq!(filetime("9223372036854775807"), None, "never");
        assert_eq!(filetime("116444735990000000"), None, "before 1970");
        assert_eq!(filetime("-1"), None);
        assert_eq!(filetime("18446744073709551616"), None);
        assert_eq!(filetime("1e9"), None);
        assert_eq!(filetime(""), None);
    }
}
