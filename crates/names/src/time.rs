//! RFC 3339 timestamps as IPNS writes them (`2123-01-01T00:00:00.000000000Z`; kubo drops
//! trailing zeros of the fraction, others write offsets): parsed to nanoseconds since the
//! Unix epoch, written back in UTC with nine digits, as kubo and Helia do.

/// Nanoseconds since 1970-01-01T00:00:00Z (negative before).
pub type Nanos = i128;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses an RFC 3339 date-time; `None` if it is not one (the input is at most a few dozen
/// bytes: a record's validity is checked against the record's size first).
pub fn parse(s: &str) -> Option<Nanos> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, month, day) = (num(0..4)? as i64, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // 60: a leap second, read as the next second's start.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + (b[i] - b'0') as i128;
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = (h * 3600 + m * 60) as i64;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400
        + (hour * 3600 + minute * 60 + second) as i64
        - offset;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

/// `t` in UTC, nine digits of fraction, `Z`: what kubo and Helia write.
pub fn format(t: Nanos) -> String {
    let secs = t.div_euclid(1_000_000_000) as i64;
    let nanos = t.rem_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_that_ipns_writers_use() {
        let whole = parse("2123-01-01T00:00:00Z").unwrap();
        for s in [
            "2123-01-01T00:00:00.000000000Z",
            "2123-01-01T00:00:00.0Z",
            "2123-01-01T01:00:00+01:00",
            "2122-12-31T23:00:00-01:00",
            "2123-01-01t00:00:00z",
        ] {
            assert_eq!(parse(s), Some(whole), "{s}");
        }
        assert_eq!(parse("1970-01-01T00:00:00.5Z"), Some(500_000_000));
        assert_eq!(
            parse("1970-01-01T00:00:01.123456789123Z"),
            Some(1_123_456_789)
        );
        assert_eq!(parse("2000-02-29T12:00:00Z"), Some(951_825_600_000_000_000));
        assert_eq!(format(whole), "2123-01-01T00:00:00.000000000Z");
        assert_eq!(format(1_123_456_789), "1970-01-01T00:00:01.123456789Z");
    }

    #[test]
    fn what_is_not_a_date_time() {
        for s in [
            "",
            "2123-01-01",
            "2123-13-01T00:00:00Z",
            "2123-02-29T00:00:00Z",
            "2123-01-01T24:00:00Z",
            "2123-01-01T00:00:00",
            "2123-01-01T00:00:00.Z",
            "2123-01-01T00:00:00+0100",
            "2123-01-01T00:00:00Zjunk",
            "+123-01-01T00:00:00Z",
            "２１２３-01-01T00:00:00Z",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }

    /// Every day of four centuries goes out and comes back.
    #[test]
    fn dates_round_trip() {
        for day in (-719_162..=100_000i64).step_by(7) {
            let t = day as i128 * 86_400 * 1_000_000_000 + 3_723_000_000_042;
            assert_eq!(parse(&format(t)), Some(t), "{}", format(t));
        }
    }
}
