//! HLS attribute lists (`NAME=VALUE,NAME="quoted, value"`), read only as far as needed to
//! find one attribute's value, by byte range, so the caller can splice around it.

use std::ops::Range;

/// The byte range of `name`'s value in `list` (inside the quotes when quoted), `None` when
/// the list has no such attribute.
///
/// # Errors
/// `Err(())` when the list does not parse: a name without `=`, an unterminated quote, or a
/// quote inside an unquoted value.
pub fn find_attribute(list: &str, name: &str) -> Result<Option<Range<usize>>, ()> {
    let bytes = list.as_bytes();
    let mut pos = 0;
    while pos < bytes.len() {
        while pos < bytes.len() && bytes[pos] == b' ' {
            pos += 1;
        }
        let eq = pos + list[pos..].find('=').ok_or(())?;
        let key = list[pos..eq].trim();
        if key.is_empty() || key.contains(',') {
            return Err(());
        }
        let value_start = eq + 1;
        let (value, next) = if bytes.get(value_start) == Some(&b'"') {
            let close = list[value_start + 1..].find('"').ok_or(())? + value_start + 1;
            (value_start + 1..close, close + 1)
        } else {
            let end = list[value_start..]
                .find(',')
                .map_or(bytes.len(), |c| value_start + c);
            // `A=URI="x,…`: players that look for `URI="` anywhere would find a URI here.
            if list[value_start..end].contains('"') {
                return Err(());
            }
            (value_start..end, end)
        };
        if key == name {
            return Ok(Some(value));
        }
        pos = next;
        while pos < bytes.len() && bytes[pos] == b' ' {
            pos += 1;
        }
        match bytes.get(pos) {
            None => break,
            Some(b',') => pos += 1,
            Some(_) => return Err(()),
        }
    }
    Ok(None)
}

/// The byte ranges of up to two attributes' values in `list`, in the order they stand there
/// (a tag names at most two URI attributes).
///
/// # Errors
/// As [`find_attribute`].
pub fn find_attributes(list: &str, names: &[&str]) -> Result<[Option<Range<usize>>; 2], ()> {
    debug_assert!(names.len() <= 2, "{names:?}");
    let mut values = [None, None];
    for (value, name) in values.iter_mut().zip(names) {
        *value = find_attribute(list, name)?;
    }
    if let [Some(first), Some(second)] = &values {
        if second.start < first.start {
            values.swap(0, 1);
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(list: &'a str, name: &str) -> Option<&'a str> {
        find_attribute(list, name).unwrap().map(|r| &list[r])
    }

    #[test]
    fn finds_quoted_and_plain_values() {
        let list = r#"METHOD=AES-128,URI="https://k/x?a=1,b=2",IV=0x1"#;
        assert_eq!(value(list, "URI"), Some("https://k/x?a=1,b=2"));
        assert_eq!(value(list, "IV"), Some("0x1"));
        assert_eq!(value(list, "METHOD"), Some("AES-128"));
        assert_eq!(value(list, "KEYFORMAT"), None);
    }

    #[test]
    fn does_not_match_inside_other_values_or_name_suffixes() {
        let list = r#"NAME="URI=x",SERVER-URI="s.json",URI="u.m3u8""#;
        assert_eq!(value(list, "URI"), Some("u.m3u8"));
        assert_eq!(value(list, "SERVER-URI"), Some("s.json"));
        assert_eq!(value("METHOD=NONE", "URI"), None);
    }

    #[test]
    fn tolerates_spaces_after_commas() {
        assert_eq!(value(r#"A=1, URI="x.ts""#, "URI"), Some("x.ts"));
    }

    #[test]
    fn refuses_what_does_not_parse() {
        assert!(find_attribute(r#"URI="open"#, "URI").is_err());
        assert!(find_attribute("JUNK", "URI").is_err());
        assert!(find_attribute(r#"A="x"B=2"#, "URI").is_err());
        assert!(find_attribute(r#"A=URI="//evil.example/x,URI="k.key""#, "URI").is_err());
    }
}
