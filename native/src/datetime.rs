//! Timestamps as the reference decoder reads them (pydantic-core's speedate in strict mode):
//! RFC 3339 with `T`/`t`/`_`/space, optional seconds and fraction (digits past 6 are dropped),
//! `Z`/`z`/±HH:MM/±HHMM offsets, or a bare number of seconds (milliseconds beyond 2e10).

/// A parsed instant: microseconds since the epoch in UTC, or a naive local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Aware(i64),
    Naive,
}

const MS_WATERSHED: i64 = 20_000_000_000;
const MICROS: i64 = 1_000_000;
// Python's datetime covers years 1..=9999; microseconds of 0001-01-01 and 10000-01-01 UTC.
const MIN_MICROS: i64 = -62_135_596_800 * MICROS;
const MAX_MICROS: i64 = 253_402_300_800 * MICROS;

fn digit(bytes: &[u8], i: usize, error: &'static str) -> Result<i64, &'static str> {
    match bytes.get(i) {
        Some(b @ b'0'..=b'9') => Ok(i64::from(b - b'0')),
        _ => Err(error),
    }
}

fn two(bytes: &[u8], i: usize, error: &'static str) -> Result<i64, &'static str> {
    Ok(digit(bytes, i, error)? * 10 + digit(bytes, i + 1, error)?)
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

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn rfc3339(bytes: &[u8]) -> Result<Parsed, &'static str> {
    if bytes.len() < 10 {
        return Err("input is too short");
    }
    let year_error = "invalid character in year";
    let year = (0..4).try_fold(0, |acc, i| Ok(acc * 10 + digit(bytes, i, year_error)?))?;
    if bytes[4] != b'-' {
        return Err("invalid date separator, expected `-`");
    }
    let month = two(bytes, 5, "invalid character in month")?;
    if bytes[7] != b'-' {
        return Err("invalid date separator, expected `-`");
    }
    let day = two(bytes, 8, "invalid character in day")?;
    if !(1..=12).contains(&month) {
        return Err("month value is outside expected range of 1-12");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day value is outside expected range");
    }
    if !matches!(bytes.get(10), Some(b'T' | b't' | b'_' | b' ')) {
        return Err("invalid datetime separator, expected `T`, `t`, `_` or space");
    }
    let t = 11;
    if bytes.len() < t + 5 {
        return Err("input is too short");
    }
    let hour = two(bytes, t, "invalid character in hour")?;
    if hour > 23 {
        return Err("hour value is outside expected range of 0-23");
    }
    if bytes[t + 2] != b':' {
        return Err("invalid time separator, expected `:`");
    }
    let minute = two(bytes, t + 3, "invalid character in minute")?;
    if minute > 59 {
        return Err("minute value is outside expected range of 0-59");
    }
    let mut pos = t + 5;
    let mut second = 0;
    let mut micros = 0;
    if bytes.get(pos) == Some(&b':') {
        second = two(bytes, pos + 1, "invalid character in second")?;
        if second > 59 {
            return Err("second value is outside expected range of 0-59");
        }
        pos += 3;
        if matches!(bytes.get(pos), Some(b'.' | b',')) {
            pos += 1;
            let start = pos;
            while let Some(b @ b'0'..=b'9') = bytes.get(pos) {
                if pos - start < 6 {
                    micros = micros * 10 + i64::from(b - b'0');
                }
                pos += 1;
            }
            let digits = pos - start;
            if digits == 0 {
                return Err("second fraction digits missing after `.`");
            }
            for _ in digits..6 {
                micros *= 10;
            }
        }
    }
    let offset = match bytes.get(pos) {
        None => None,
        Some(b'Z' | b'z') => {
            pos += 1;
            Some(0)
        }
        Some(sign @ (b'+' | b'-')) => {
            let sign = if *sign == b'-' { -1 } else { 1 };
            let tz_hour = two(bytes, pos + 1, "invalid timezone hour")?;
            pos += 3;
            if bytes.get(pos) == Some(&b':') {
                pos += 1;
            }
            let tz_minute = two(bytes, pos, "invalid timezone minute")?;
            pos += 2;
            if tz_minute > 59 {
                return Err("timezone minute value is outside expected range of 0-59");
            }
            let seconds = tz_hour * 3600 + tz_minute * 60;
            if seconds >= 86_400 {
                return Err("timezone offset must be less than 24 hours");
            }
            Some(sign * seconds)
        }
        Some(_) => return Err("invalid timezone sign"),
    };
    if pos < bytes.len() {
        return Err("unexpected extra characters at the end of the input");
    }
    if year == 0 {
        return Err("year 0 is out of range");
    }
    let Some(offset) = offset else { return Ok(Parsed::Naive) };
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(Parsed::Aware((local - offset) * MICROS + micros))
}

// Unix seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the reference's numeric range.
const MIN_SECONDS: i64 = -62_167_219_200;
const MAX_SECONDS: i64 = 253_402_300_799;
// Seconds before 0001-01-01 parse, but Python's datetime has no year 0.
const YEAR_ONE_SECONDS: i64 = -62_135_596_800;

/// A bare number of seconds (or milliseconds past the watershed) as microseconds; None when the
/// text is not a number the reference reads (then its RFC 3339 error stands).
fn timestamp(bytes: &[u8]) -> Option<Result<i64, &'static str>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (seconds, micros) = if text.contains('.') {
        // With a decimal point the whole text is read as a float (an exponent is allowed then).
        let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
        if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return None;
        }
        // The whole part must fit 64 bits, else the reference does not read a number at all.
        let whole_part = unsigned.split('.').next().unwrap_or("");
        if !whole_part.is_empty() && whole_part.parse::<i64>().is_err() {
            return None;
        }
        let value: f64 = text.parse().ok()?;
        // A decimal number past the watershed is milliseconds, and past it again microseconds.
        // (Beyond 2e10 the reference's float arithmetic can differ in the last microseconds.)
        let mut value = value;
        for _ in 0..2 {
            if value.abs() > MS_WATERSHED as f64 {
                value /= 1000.0;
                if value >= i64::MAX as f64 {
                    // The reference then reads it as a time of day, and refuses it as such.
                    return Some(Err("numeric times may not exceed 86,399 seconds"));
                }
            }
        }
        let whole = value.floor();
        let micros = ((value - whole) * 1e6).round() as i64;
        (whole as i64, micros)
    } else {
        let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: i64 = text.parse().ok()?;
        let magnitude = value.checked_abs()?;
        if magnitude <= MS_WATERSHED {
            (value, 0)
        } else {
            (value.div_euclid(1000), value.rem_euclid(1000) * 1000)
        }
    };
    if seconds < MIN_SECONDS {
        return Some(Err("dates before 0000 are not supported as unix timestamps"));
    }
    if seconds > MAX_SECONDS {
        return Some(Err("dates after 9999 are not supported as unix timestamps"));
    }
    if seconds < YEAR_ONE_SECONDS {
        return Some(Err("year 0 is out of range"));
    }
    Some(Ok(seconds * MICROS + micros))
}

/// Parse the text of `occurred_at`; Err is the reason pydantic appends to
/// "Input should be a valid datetime, ".
pub fn parse(text: &str) -> Result<Parsed, &'static str> {
    let bytes = text.as_bytes();
    let parsed = match rfc3339(bytes) {
        Ok(parsed) => parsed,
        Err(error) => match timestamp(bytes) {
            Some(Ok(micros)) => Parsed::Aware(micros),
            Some(Err(range)) => return Err(range),
            None => return Err(error),
        },
    };
    if let Parsed::Aware(micros) = parsed {
        if !(MIN_MICROS..MAX_MICROS).contains(&micros) {
            // The reference raises OverflowError here (outside the contract); refuse clearly.
            return Err("date value out of range");
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        match parse(text) {
            Ok(Parsed::Aware(v)) => v,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn reads_rfc3339_and_timestamps() {
        assert_eq!(micros("1970-01-01T00:00:00Z"), 0);
        assert_eq!(micros("2024-01-01T00:00:00+01:30"), micros("2023-12-31T22:30:00Z"));
        assert_eq!(micros("2024-01-01t00:00z"), micros("2024-01-01T00:00:00Z"));
        assert_eq!(micros("2024-01-01T00:00:00.123456789Z") % MICROS, 123_456);
        assert_eq!(micros("1700000000"), 1_700_000_000 * MICROS);
        assert_eq!(micros("20000000001"), 20_000_000_001 * 1000);
        assert_eq!(micros(".5"), 500_000);
        assert_eq!(micros("-1.5"), -1_500_000);
        assert_eq!(micros("1.5e3"), 1_500 * MICROS);
        assert_eq!(parse("1e3"), Err("input is too short"));
        assert_eq!(
            parse("9223372036854775807"),
            Err("dates after 9999 are not supported as unix timestamps")
        );
        assert_eq!(parse("-99999999999999"), Err("dates before 0000 are not supported as unix timestamps"));
        assert_eq!(parse("2024-01-01T00:00"), Ok(Parsed::Naive));
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(parse("2024-01-01T24:00:00Z"), Err("hour value is outside expected range of 0-23"));
        assert_eq!(parse("2024-02-30T00:00:00Z"), Err("day value is outside expected range"));
        assert_eq!(parse("2024-01-01T00:00:00+01"), Err("invalid timezone minute"));
        assert_eq!(
            parse("2024-01-01T00:00:00Zx"),
            Err("unexpected extra characters at the end of the input")
        );
        assert_eq!(parse("1e9"), Err("input is too short"));
    }
}
