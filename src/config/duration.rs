//! Durations as operators write them: `"500ms"`, `"30s"`, `"10m"`, `"2h"`, `"7d"`.

use std::time::Duration;

/// Parses one number followed by one unit (`ms`, `s`, `m`, `h`, `d`).
///
/// # Errors
/// A message that says what was expected, for the caller to prefix with the key.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("\"{text}\": missing unit (ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("\"{text}\": expected a whole number followed by ms, s, m, h or d"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "\"{text}\": unknown unit \"{unit}\" (use ms, s, m, h or d)"
            ))
        }
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("\"{text}\": too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86400)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert!(parse("30").unwrap_err().contains("missing unit"));
        assert!(parse("h").is_err());
        assert!(parse("3 weeks").is_err());
        assert!(parse("2y").unwrap_err().contains("unknown unit"));
        assert!(parse("99999999999999999999d").is_err());
    }
}
