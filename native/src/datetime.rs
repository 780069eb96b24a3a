//! `occurred_at` as the reference reads it (events/model.py): an RFC 3339 date-time with a
//! mandatory offset (`Z`/`z`/±HH:MM, `T`/`t`/space, 1–9 fraction digits of which 6 are kept),
//! checked like Python's `datetime.fromisoformat`, inside [1970-01-01, 2200-01-01) UTC.
//! Every refusal is the text pydantic prints for the reference's ValueError ("Value error, ...").

const MICROS: i64 = 1_000_000;
const DAY_SECONDS: i64 = 86_400;
/// 2200-01-01T00:00:00Z in microseconds since the epoch: the first instant refused.
pub const LATEST_MICROS: i64 = 7_258_118_400 * MICROS;
pub const RANGE_TEXT: &str = "1970-01-01T00:00:00Z up to (not including) 2200-01-01T00:00:00Z";
pub const SHAPE_ERROR: &str = "Value error, must be an RFC 3339 date-time with an offset, \
                               e.g. 2026-03-02T09:00:00Z or ...T10:00:00+01:00";

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

/// The fields of a text that has the reference's RFC 3339 shape (its regular expression
/// `^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$`, ASCII digits).
struct Fields {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    micros: i64,
    /// Signed offset in seconds; minutes beyond 59 count as such ("+01:75" is 2 h 15 min).
    offset: i64,
}

fn shape(bytes: &[u8]) -> Option<Fields> {
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = bytes.get(from..from + len)?;
        part.iter().try_fold(0, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0')))
    };
    let at = |i: usize, allowed: &[u8]| bytes.get(i).is_some_and(|b| allowed.contains(b));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let mut fields = Fields {
        year: num(0, 4)?,
        month: num(5, 2)?,
        day: num(8, 2)?,
        hour: num(11, 2)?,
        minute: num(14, 2)?,
        second: num(17, 2)?,
        micros: 0,
        offset: 0,
    };
    let mut pos = 19;
    if at(pos, b".") {
        let digits = bytes[pos + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        // The reference keeps the first 6 digits (microseconds), right-padded with zeros.
        let kept = digits.min(6);
        fields.micros = num(pos + 1, kept)? * 10_i64.pow(6 - kept as u32);
        pos += 1 + digits;
    }
    match bytes.get(pos) {
        Some(b'Z' | b'z') => pos += 1,
        Some(&sign @ (b'+' | b'-')) => {
            if !at(pos + 3, b":") {
                return None;
            }
            let seconds = num(pos + 1, 2)? * 3600 + num(pos + 4, 2)? * 60;
            fields.offset = if sign == b'-' { -seconds } else { seconds };
            pos += 6;
        }
        _ => return None,
    }
    (pos == bytes.len()).then_some(fields)
}

/// Python's repr of `timedelta(seconds=s)`: normalised to days and 0 <= seconds < 86400.
fn timedelta_repr(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(DAY_SECONDS), seconds.rem_euclid(DAY_SECONDS));
    match (days, rest) {
        (0, 0) => "datetime.timedelta(0)".into(),
        (0, s) => format!("datetime.timedelta(seconds={s})"),
        (d, 0) => format!("datetime.timedelta(days={d})"),
        (d, s) => format!("datetime.timedelta(days={d}, seconds={s})"),
    }
}

/// What `datetime.fromisoformat` refuses in a well-shaped text, in its order: the offset (the
/// timezone is built first), then year, month, day, hour, minute, second.
fn invalid(f: &Fields) -> Option<String> {
    if f.offset.abs() >= DAY_SECONDS {
        return Some(format!(
            "offset must be a timedelta strictly between -timedelta(hours=24) and timedelta(hours=24), not {}.",
            timedelta_repr(f.offset)
        ));
    }
    let problem = if f.year == 0 {
        "year 0 is out of range"
    } else if !(1..=12).contains(&f.month) {
        "month must be in 1..12"
    } else if f.day < 1 || f.day > days_in_month(f.year, f.month) {
        "day is out of range for month"
    } else if f.hour > 23 {
        "hour must be in 0..23"
    } else if f.minute > 59 {
        "minute must be in 0..59"
    } else if f.second > 59 {
        "second must be in 0..59"
    } else {
        return None;
    };
    Some(problem.into())
}

/// `datetime.isoformat()` of the local time with its offset, as the reference prints it.
fn isoformat(f: &Fields) -> String {
    let mut text =
        format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", f.year, f.month, f.day, f.hour, f.minute, f.second);
    if f.micros != 0 {
        text += &format!(".{:06}", f.micros);
    }
    let sign = if f.offset < 0 { '-' } else { '+' };
    let offset = f.offset.abs();
    text + &format!("{sign}{:02}:{:02}", offset / 3600, offset % 3600 / 60)
}

/// Parse the text of `occurred_at` to microseconds since the epoch in UTC; Err is the detail
/// pydantic gives for the reference's refusal.
pub fn parse(text: &str) -> Result<i64, String> {
    let fields = shape(text.as_bytes()).ok_or(SHAPE_ERROR)?;
    if let Some(problem) = invalid(&fields) {
        // The text matched the ASCII shape, so it is at most 35 characters: shown whole.
        return Err(format!("Value error, {text} is not a valid date-time: {problem}"));
    }
    let local = days_from_civil(fields.year, fields.month, fields.day) * DAY_SECONDS
        + fields.hour * 3600
        + fields.minute * 60
        + fields.second;
    let micros = (local - fields.offset) * MICROS + fields.micros;
    // Also covers what overflows Python's datetime (year 1 or 9999 shifted by the offset).
    if !(0..LATEST_MICROS).contains(&micros) {
        return Err(format!(
            "Value error, {} is outside the accepted range {RANGE_TEXT}",
            isoformat(&fields)
        ));
    }
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn reads_rfc3339_with_an_offset() {
        assert_eq!(micros("1970-01-01T00:00:00Z"), 0);
        assert_eq!(micros("2024-01-01T00:00:00+01:30"), micros("2023-12-31T22:30:00Z"));
        assert_eq!(micros("2024-01-01t00:00:00z"), micros("2024-01-01 00:00:00-00:00"));
        assert_eq!(micros("2024-01-01T00:00:00.123456789Z") % MICROS, 123_456);
        assert_eq!(micros("2024-01-01T00:00:00.5Z") % MICROS, 500_000);
        assert_eq!(micros("2024-01-01T01:00:00+00:60"), micros("2024-01-01T00:00:00Z"));
        assert_eq!(micros("2199-12-31T23:59:59.999999Z"), LATEST_MICROS - 1);
    }

    #[test]
    fn refuses_other_shapes() {
        for text in
            ["1772438400", ".5", "1.5e3", "2024-01-01T00:00Z", "2024-01-01T00:00:00", "2024-01-01_00:00:00Z"]
        {
            assert_eq!(parse(text), Err(SHAPE_ERROR.into()), "{text}");
        }
        for text in ["2024-01-01T00:00:00.Z", "2024-01-01T00:00:00.1234567890Z", "2024-01-01T00:00:00+0100"] {
            assert_eq!(parse(text), Err(SHAPE_ERROR.into()), "{text}");
        }
        assert_eq!(parse("2024-01-01T00:00:00Z\n"), Err(SHAPE_ERROR.into()));
        assert_eq!(parse("２０２４-01-01T00:00:00Z"), Err(SHAPE_ERROR.into()));
    }

    #[test]
    fn names_what_is_wrong_like_fromisoformat() {
        let error = |text: &str| parse(text).unwrap_err();
        assert_eq!(
            error("2024-02-30T00:00:00Z"),
            "Value error, 2024-02-30T00:00:00Z is not a valid date-time: day is out of range for month"
        );
        assert!(error("0000-01-01T00:00:00Z").ends_with("year 0 is out of range"));
        assert!(error("2024-01-01T24:00:00Z").ends_with("hour must be in 0..23"));
        assert!(
            error("2024-02-30T25:00:00-24:01").ends_with("not datetime.timedelta(days=-2, seconds=86340).")
        );
        assert!(error("2024-01-01T00:00:00+24:00").ends_with("not datetime.timedelta(days=1)."));
    }

    #[test]
    fn refuses_times_outside_the_range() {
        let out = |text: &str, shown: &str| {
            assert_eq!(
                parse(text),
                Err(format!("Value error, {shown} is outside the accepted range {RANGE_TEXT}"))
            );
        };
        out("2200-01-01T00:00:00Z", "2200-01-01T00:00:00+00:00");
        out("1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999+00:00");
        out("1970-01-01T00:29:00+00:30", "1970-01-01T00:29:00+00:30");
        out("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+01:00");
        out("9999-12-31T23:00:00-01:75", "9999-12-31T23:00:00-02:15");
    }
}
