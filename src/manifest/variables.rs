//! `EXT-X-DEFINE` as the rewriter reads it: the variables it can resolve (`NAME`/`VALUE`,
//! and `QUERYPARAM` from the playlist request's query), to decide where a URI points, and
//! every name declared, so that a playlist players would read differently is refused.

use std::collections::HashMap;

use super::attributes::find_attribute;
use super::ManifestError;

/// The variables of one playlist, as its definitions are read.
#[derive(Debug, Default)]
pub(super) struct Variables {
    /// The values known here.
    known: HashMap<String, String>,
    /// Every name defined so far, resolved or not (`IMPORT`s included).
    declared: Vec<String>,
}

impl Variables {
    /// The values known so far.
    pub(super) fn known(&self) -> &HashMap<String, String> {
        &self.known
    }

    /// Reads the `EXT-X-DEFINE` tag `line` (line number `line_no`) of a playlist requested
    /// with `request_query` (credentials removed).
    ///
    /// # Errors
    /// An attribute list that does not parse; a name defined twice (hls.js keeps the first
    /// value, so the rewriter would judge URIs by another value than the player); a
    /// `QUERYPARAM` the query does not carry (players must refuse the playlist, RFC 8216bis
    /// 4.4.2.3, and a credential is never there to be handed to another host).
    pub(super) fn define(
        &mut self,
        line: &str,
        line_no: usize,
        request_query: Option<&str>,
    ) -> Result<(), ManifestError> {
        let attrs = line.split_once(':').map_or("", |(_, a)| a);
        let value_of = |name| {
            find_attribute(attrs, name)
                .map(|range| range.map(|r| &attrs[r]))
                .map_err(|()| ManifestError::BadAttributes { line: line_no })
        };
        let bad = |name: &str, why| ManifestError::BadDefine {
            line: line_no,
            name: name.to_owned(),
            why,
        };
        let (name, value) = match (value_of("NAME")?, value_of("VALUE")?) {
            (Some(name), Some(value)) => (name, Some(value.to_owned())),
            _ => match (value_of("QUERYPARAM")?, value_of("IMPORT")?) {
                (Some(param), _) => {
                    let value = query_value(request_query, param)
                        .ok_or_else(|| bad(param, "not in the playlist request's query"))?;
                    (param, Some(value))
                }
                // Imported from the master: not known here.
                (None, Some(name)) => (name, None),
                (None, None) => return Ok(()),
            },
        };
        if self.declared.iter().any(|known| known == name) {
            return Err(bad(name, "defined twice"));
        }
        self.declared.push(name.to_owned());
        if let Some(value) = value {
            self.known.insert(name.to_owned(), value);
        }
        Ok(())
    }
}

/// The value of the first `name` parameter of `query`, percent-decoded (and `+` read as a
/// space) as players decode it before substituting it (`URLSearchParams` in hls.js, which
/// reads a name without `=` as an empty value).
pub(super) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| crate::form::decode(key) == name)
        .map(|(_, value)| crate::form::decode(value))
}
