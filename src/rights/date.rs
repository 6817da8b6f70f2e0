//! Dates as the PPV API writes them, in UTC: `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`
//! (`T` accepted in place of the space). A date alone means 00:00:01 when it starts a
//! window and 23:59:59 when it ends one, as the PPV API document says.

/// Which end of a window a date alone stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// A start: a date alone is 00:00:01.
    Start,
    /// An end: a date alone is 23:59:59.
    End,
}

/// Parses a date or date-time into Unix seconds (UTC).
///
/// # Errors
/// A message saying which form was expected.
pub fn parse(text: &str, edge: Edge) -> Result<u64, String> {
    let text = text.trim();
    let bad = || format!("\"{text}\": expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS");
    let (date, time) = match text.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad());
    }
    let seconds_of_day = match time {
        None => match edge {
            Edge::Start => 1,
            Edge::End => 86_399,
        },
        Some(t) => {
            let mut hms = t.split(':');
            let h: u64 = hms.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let mi: u64 = hms.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let s: u64 = hms
                .next()
                .map_or(Some(0), |v| v.parse().ok())
                .ok_or_else(bad)?;
            if h > 23 || mi > 59 || s > 59 || hms.next().is_some() {
                return Err(bad());
            }
            h * 3600 + mi * 60 + s
        }
    };
    let days = days_from_civil(y, m, d);
    Ok(days as u64 * 86_400 + seconds_of_day)
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC), the PPV API's output form.
pub fn format(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_alone_means_one_second_past_midnight_or_one_before() {
        assert_eq!(parse("2018-12-31", Edge::Start), Ok(1_546_214_401));
        assert_eq!(parse("2018-12-31", Edge::End), Ok(1_546_300_799));
        assert_eq!(format(1_546_214_401), "2018-12-31 00:00:01");
        assert_eq!(format(1_546_300_799), "2018-12-31 23:59:59");
    }

    #[test]
    fn exact_times_and_round_trips() {
        let t = parse("2018-12-31 14:01:55", Edge::End).unwrap();
        assert_eq!(format(t), "2018-12-31 14:01:55");
        assert_eq!(parse("2018-12-31T14:01:55Z", Edge::Start), Ok(t));
        assert_eq!(format(0), "1970-01-01 00:00:00");
        assert_eq!(
            format(parse("2024-02-29 12:00:00", Edge::Start).unwrap()),
            "2024-02-29 12:00:00"
        );
    }

    #[test]
    fn impossible_dates_are_refused() {
        for bad in [
            "2018-13-01",
            "2019-02-29",
            "2018-12-31 24:00:00",
            "31.12.2018",
            "2018-12",
            "",
            "1969-12-31",
        ] {
            assert!(parse(bad, Edge::Start).is_err(), "{bad}");
        }
    }
}
