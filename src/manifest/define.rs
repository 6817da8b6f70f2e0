//! The variable carrier ([`Carrier::Variable`]): the shared token is written once, as an
//! `EXT-X-DEFINE` variable at the top of the playlist, and every URI carries a reference to
//! it (`?token={$t}`), which the player substitutes before it requests the URI. On the
//! wire the requests are the query carrier's; only the playlist is smaller, by the token's
//! length on every URI line but one.
//!
//! Variable substitution needs `EXT-X-VERSION` 8 (RFC 8216bis 4.3.1.1 and 7): a lower
//! version is raised to 8, and a playlist that names none gets `#EXT-X-VERSION:8` after
//! `#EXTM3U`. Nothing else changes.

use std::borrow::Cow;
use std::fmt::Write;

use super::attributes::find_attribute;
use super::{Carrier, Rewrite};

/// The first `EXT-X-VERSION` that has variable substitution.
const VERSION: u32 = 8;

/// The variable's name: one letter, since every URI line carries a reference to it.
const NAME: &str = "t";

/// A reference to it, as URIs carry it instead of the token.
pub(super) const REFERENCE: &str = "{$t}";

/// What the variable carrier adds to one playlist.
#[derive(Debug)]
pub(super) struct Definition<'a> {
    /// The token, the variable's value.
    value: &'a str,
    /// The playlist names no version: `#EXT-X-VERSION:8` goes before the definition.
    add_version: bool,
}

impl<'a> Definition<'a> {
    /// Whether the rewrite of `text` writes the token as a variable, and how: only for the
    /// variable carrier with one token for every URI (not per-URI credentials), a token
    /// that fits in a quoted string, and a playlist that neither defines a variable of that
    /// name itself (which would be a duplicate definition) nor refers to one anywhere
    /// (`{$t}` in a URI usher leaves alone, another host's, would be handed the token by
    /// the player); otherwise `None`, and the playlist is written as the query carrier
    /// writes it.
    pub(super) fn plan(text: &str, ctx: &Rewrite<'a>) -> Option<Self> {
        if ctx.carrier != Carrier::Variable
            || ctx.per_path.is_some()
            || ctx.token.is_empty()
            || ctx.token.contains(['"', '\r', '\n'])
            || text.contains(REFERENCE)
            || defines(text, NAME)
        {
            return None;
        }
        Some(Self {
            value: ctx.token,
            // The first line is `#EXTM3U`, so a version tag always follows a line end.
            add_version: !text.contains("\n#EXT-X-VERSION:"),
        })
    }

    /// Writes the added lines, each ended by `eol` (the `#EXTM3U` line's own line end).
    pub(super) fn write_header(&self, out: &mut String, eol: &str) {
        if self.add_version {
            // Writing into a String cannot fail.
            let _ = write!(out, "#EXT-X-VERSION:{VERSION}{eol}");
        }
        out.push_str("#EXT-X-DEFINE:NAME=\"");
        out.push_str(NAME);
        out.push_str("\",VALUE=\"");
        out.push_str(self.value);
        out.push('"');
        out.push_str(eol);
    }
}

/// An `EXT-X-VERSION` line raised to the version variables need, or as it is when it
/// already has it.
pub(super) fn version_line(line: &str) -> Cow<'_, str> {
    let number = line.split_once(':').map_or("", |(_, n)| n.trim());
    match number.parse::<u32>() {
        Ok(n) if n >= VERSION => Cow::Borrowed(line),
        _ => Cow::Owned(format!("#EXT-X-VERSION:{VERSION}")),
    }
}

/// Whether the playlist defines (`NAME`), imports (`IMPORT`) or takes from its query
/// (`QUERYPARAM`) a variable called `name`, or has a definition that does not parse.
fn defines(text: &str, name: &str) -> bool {
    if !text.contains("#EXT-X-DEFINE") {
        return false;
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("#EXT-X-DEFINE:"))
        .any(|attrs| {
            ["NAME", "IMPORT", "QUERYPARAM"].iter().any(|attr| {
                match find_attribute(attrs.trim_end(), attr) {
                    Ok(Some(range)) => &attrs[range] == name,
                    Ok(None) => false,
                    Err(()) => true,
                }
            })
        })
}
