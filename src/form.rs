//! `application/x-www-form-urlencoded`: query strings and form bodies, decoded as browsers
//! and players decode them.

use std::collections::HashMap;

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; a `%` not
/// followed by two hex digits stays as it is.
pub fn decode(text: &str) -> String {
    decode_bytes(text, true)
}

/// Percent-decoding alone (a path as a server decodes it): `%XX` is a byte, `+` stays; a
/// `%` not followed by two hex digits stays as it is. Bytes that are not UTF-8 become
/// U+FFFD.
pub fn unescape(text: &str) -> String {
    decode_bytes(text, false)
}

/// Percent-decoding of bytes, once: `%XX` is a byte, `+` stays; a `%` not followed by two
/// hex digits stays as it is. The bytes need not be UTF-8, before or after.
pub fn unescape_bytes(bytes: &[u8]) -> Vec<u8> {
    percent_decode(bytes, false)
}

fn decode_bytes(text: &str, plus_is_space: bool) -> String {
    String::from_utf8_lossy(&percent_decode(text.as_bytes(), plus_is_space)).into_owned()
}

fn percent_decode(bytes: &[u8], plus_is_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Every `name=value` pair of a query string or form body, decoded; a later pair with the
/// same name wins.
pub fn pairs(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let p = pairs("apikey=k&name=Alex&phone=%2B0+000&flag&x=%zz");
        assert_eq!(p["phone"], "+0 000");
        assert_eq!(p["flag"], "");
        assert_eq!(p["x"], "%zz");
        assert_eq!(decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }
}
