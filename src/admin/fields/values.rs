//! The values of fields that are more than text: times (a date text or Unix seconds, in
//! the range a date text has) and amounts (`cost`).

use super::{invalid, Invalid};
use crate::rights::date::{self, Edge};

/// The latest time a date field takes: 9999-12-31 23:59:59 UTC, the last second a date
/// text can name, so Unix seconds cannot name a later one either.
pub const LATEST: u64 = 253_402_300_799;

/// A date text, or Unix seconds from 1970 to `latest` ([`LATEST`], the range a date text
/// has, for any time that is stored).
pub(super) fn time(v: &str, edge: Edge, latest: u64) -> Result<u64, String> {
    // `+1700000000` is Unix seconds too, as `u64::from_str` has always read it.
    let unsigned = v.strip_prefix('+').unwrap_or(v);
    let digits = unsigned.strip_prefix('-').unwrap_or(unsigned);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return date::parse(v, edge);
    }
    if digits.len() != unsigned.len() {
        return Err(format!(
            "\"{v}\": Unix seconds cannot be negative (before 1970-01-01)"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .filter(|t| *t <= latest)
        .ok_or_else(|| match latest {
            LATEST => format!(
                "\"{v}\": Unix seconds past 9999-12-31 23:59:59 ({LATEST}), the latest date"
            ),
            _ => format!("\"{v}\": Unix seconds past {latest}"),
        })
}

/// The largest `cost` taken: an amount above it is a slip (an exponent, a pasted number),
/// not a price.
pub const MAX_COST: f64 = 1e12;

/// The most decimals a `cost` has: more is a slip, not a price.
const COST_DECIMALS: usize = 6;

/// A `cost`: an amount from 0 to [`MAX_COST`] with at most [`COST_DECIMALS`] decimals,
/// kept as written (`100.00` stays so) but for a sign (`-0`, `+5`) or an exponent (`1e3`),
/// which are written as the plain amount.
pub(super) fn cost(text: &str) -> Result<String, Invalid> {
    let refused = || {
        invalid(
            "cost",
            format!(
                "\"{text}\": expected an amount from 0 to {MAX_COST} with at most \
                 {COST_DECIMALS} decimals, such as 100.00"
            ),
        )
    };
    let Ok(c) = text.parse::<f64>() else {
        return refused();
    };
    if !c.is_finite() || !(0.0..=MAX_COST).contains(&c) {
        return refused();
    }
    let plain = text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if plain {
        let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
        return match decimals <= COST_DECIMALS {
            true => Ok(text.to_owned()),
            false => refused(),
        };
    }
    // Written out with the decimals allowed, without trailing zeros; `+ 0.0` turns -0
    // into 0, which would print as "-0".
    let written = format!("{:.COST_DECIMALS$}", c + 0.0);
    let written = written.trim_end_matches('0').trim_end_matches('.');
    match written.parse::<f64>() {
        // More decimals than allowed (`1e-7`, `1.0000001e0`) change in the writing.
        Ok(rounded) if (rounded - c).abs() <= c.abs() * 1e-12 => Ok(written.to_owned()),
        _ => refused(),
    }
}
