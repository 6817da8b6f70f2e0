//! Playlist rewriting: pure text in, text out, no I/O.
//!
//! The rewriter copies the playlist byte for byte and splices a session token into each
//! URI-bearing place, nothing else: the URI line after `EXT-X-STREAM-INF` and every segment
//! line, and the `URI` attribute of `EXT-X-MEDIA`, `EXT-X-I-FRAME-STREAM-INF`, `EXT-X-KEY`,
//! `EXT-X-SESSION-KEY`, `EXT-X-MAP`, `EXT-X-PART`, `EXT-X-PRELOAD-HINT` and
//! `EXT-X-SESSION-DATA` and `EXT-X-IMAGE-STREAM-INF`, `SERVER-URI` of
//! `EXT-X-CONTENT-STEERING`, and `X-ASSET-URI`/`X-ASSET-LIST` of `EXT-X-DATERANGE`
//! (interstitials). The asset list an `X-ASSET-LIST` names is JSON, whose asset URIs
//! [`rewrite_asset_list`] writes by the same rules.
//! `EXT-X-RENDITION-REPORT` URIs name a rendition and are never fetched: they get no query
//! token (origin URIs are still rerouted; the path carriers write them as any URI), so
//! players such as hls.js match them to the renditions they know. Line endings, attribute
//! order, numbers, comments and unknown tags come out exactly as they came in (a
//! parse-then-serialise library cannot promise that; see issue 2 on m3u8-rs, which the
//! tests use only as an oracle).
//!
//! Each URI is one of:
//! - *relative or path-absolute* (`seg1.ts`, `../a/b.ts`, `/x/y.m3u8`): the token is added
//!   to its query (`?`, or `&` after an existing query), before any fragment;
//! - *absolute under the origin or an alias* (`http://origin/hls/a.ts`): made
//!   path-absolute so the player comes back through usher, then tokenized; only when the
//!   route of that path fetches from the group the base is of (else foreign);
//! - *foreign* (another host, `skd://`, `data:`): left alone, so the token never leaks.
//!
//! `EXT-X-DEFINE` variables (`{$name}`) stay in the text for the player to substitute; the
//! rewriter resolves the ones it can see (`NAME`/`VALUE`, and `QUERYPARAM` from the playlist
//! request's own query, decoded as players decode it) to decide which case a URI is. Only a
//! rerouted URI is written with its known variables substituted (the origin part has to go);
//! unknown ones stay for the player. A URI that *starts* with a variable it cannot resolve
//! (an `IMPORT` from the master) may name any host, so it is left alone and counted as
//! unresolved; so is one where such a variable further in could still make it name
//! another host (`/{$x}/a.ts`).
//!
//! What players would read differently from the rewriter is refused
//! ([`ManifestError`]): a carriage return inside a line, an unquoted `URI`, a variable
//! defined twice, a `QUERYPARAM` the request does not carry.

mod asset_list;
mod attributes;
mod define;
mod error;
mod modes;
mod timeline;
mod uri;
mod variables;

use crate::origin::OriginBase;
pub use asset_list::{rewrite_asset_list, AssetListError};
use attributes::find_attributes;
use define::Definition;
pub use error::ManifestError;
pub use modes::{PerPath, Preview};
use timeline::Timeline;
pub use uri::UpstreamFor;
use uri::{resolve_path, Disposition};
use variables::Variables;

/// What the rewriter needs for one response.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite<'a> {
    /// Bases under which absolute URIs are the origin's own (every group's servers and
    /// aliases, each knowing its group).
    pub origin_bases: &'a [OriginBase],
    /// Which group serves a path, by the routes: a URI under a group's base is rerouted
    /// only to a path that group serves, else left alone. `None`: `[upstream]` serves all.
    pub upstream_for: Option<UpstreamFor<'a>>,
    /// Query parameter name for the token.
    pub param: &'a str,
    /// usher's own session-token parameter (`token.session_param`): a pair of it that the
    /// origin wrote is dropped too when `param` is another format's (a minted Akamai or
    /// Media CDN token), as usher would read the stale token before the minted one.
    pub usher_param: &'a str,
    /// The session token, already URL-safe.
    pub token: &'a str,
    /// Query string of the playlist request, for `EXT-X-DEFINE:QUERYPARAM`.
    pub request_query: Option<&'a str>,
    /// Preview mode: only the first seconds are tokenized (see [`Preview`]).
    pub preview: Option<Preview<'a>>,
    /// Per-URI credentials instead of `param=token` (see [`PerPath`]).
    pub per_path: Option<PerPath<'a>>,
    /// How the shared token travels in URIs.
    pub carrier: Carrier<'a>,
    /// Most bytes the rewritten playlist may have ([`ManifestError::OutputTooLarge`]).
    pub max_output: usize,
}

impl Rewrite<'_> {
    /// Whether a query parameter named `name` is one of usher's credentials, which an
    /// origin's URI may hold, stale.
    fn is_stale(&self, name: &str) -> bool {
        name == self.param || name == self.usher_param
    }
}

/// How the session token travels in rewritten URIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier<'a> {
    /// `?param=token` (or `&`), on every URI.
    Query,
    /// The query carrier with the token written once: `#EXT-X-DEFINE:NAME="t",
    /// VALUE="token"` after `#EXTM3U`, and `?param={$t}` on every URI for the player to
    /// substitute (HLS variable substitution, `EXT-X-VERSION` 8, see [`define`]). A playlist
    /// that uses a variable named `t` itself is written as [`Carrier::Query`] writes it.
    Variable,
    /// As the first path segment: every URI is written path-absolute as
    /// `/<token>/<path>`, so relative URIs inside the playlists it leads to inherit the
    /// token, and players that drop query strings still carry it. The value is the
    /// normalised path of the playlist being rewritten.
    Path(&'a str),
    /// The path carrier for a playlist that was itself requested as `/<token>/<path>` with
    /// the token it hands on: relative URIs are written as they are, since the player
    /// resolves them under the token the playlist came by; path-absolute and origin URIs
    /// are written as [`Carrier::Path`] writes them. The value is the playlist's path.
    Inherited(&'a str),
    /// Not in URIs at all: the token goes in a cookie; only origin URIs are rerouted.
    Cookie,
}

/// What a URI in a playlist points at, for preview mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Another playlist (variants, renditions, rendition reports).
    Playlist,
    /// Media at the current point of the timeline (segments, parts, maps, keys).
    Timeline,
}

/// Master or media playlist, or an interstitials asset list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistKind {
    /// Has variant streams or renditions.
    Master,
    /// Has segments.
    Media,
    /// The JSON list of an interstitial's assets.
    AssetList,
}

impl PlaylistKind {
    /// Label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PlaylistKind::Master => "master",
            PlaylistKind::Media => "media",
            PlaylistKind::AssetList => "asset_list",
        }
    }
}

/// A rewritten playlist and what was done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The playlist to serve.
    pub text: String,
    /// Master or media.
    pub kind: PlaylistKind,
    /// URIs given the token in place.
    pub tokenized: usize,
    /// Absolute origin URIs routed back through usher (and tokenized).
    pub rerouted: usize,
    /// Foreign URIs left alone.
    pub foreign: usize,
    /// URIs starting with a variable the rewriter could not resolve, left alone.
    pub unresolved: usize,
    /// Preview mode: URIs past the preview, left without a token.
    pub withheld: usize,
    /// Preview mode: the normalised paths that got the token.
    pub allowed: Vec<String>,
}

/// Tags whose attribute list names URIs, and those attributes.
const URI_TAGS: &[(&str, &[&str])] = &[
    ("EXT-X-MEDIA", &["URI"]),
    ("EXT-X-I-FRAME-STREAM-INF", &["URI"]),
    ("EXT-X-IMAGE-STREAM-INF", &["URI"]),
    ("EXT-X-KEY", &["URI"]),
    ("EXT-X-SESSION-KEY", &["URI"]),
    ("EXT-X-MAP", &["URI"]),
    ("EXT-X-PART", &["URI"]),
    ("EXT-X-PRELOAD-HINT", &["URI"]),
    ("EXT-X-RENDITION-REPORT", &["URI"]),
    ("EXT-X-SESSION-DATA", &["URI"]),
    ("EXT-X-CONTENT-STEERING", &["SERVER-URI"]),
    // HLS interstitials: the asset's playlist, or a JSON list of assets.
    ("EXT-X-DATERANGE", &["X-ASSET-URI", "X-ASSET-LIST"]),
];

/// Rewrites `body` for one response.
///
/// # Errors
/// [`ManifestError`] when the text is not a playlist the rewriter can account for.
pub fn rewrite(body: &[u8], ctx: &Rewrite<'_>) -> Result<Rewritten, ManifestError> {
    let text = std::str::from_utf8(body).map_err(|_| ManifestError::NotUtf8)?;
    let header = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first_line = header.lines().next().unwrap_or("");
    if first_line.trim_end() != "#EXTM3U" {
        return Err(ManifestError::NoHeader);
    }
    let definition = Definition::plan(header, ctx);
    let mut out = Rewriter {
        ctx,
        token: if definition.is_some() {
            define::REFERENCE
        } else {
            ctx.token
        },
        text: String::with_capacity(
            output_estimate(text, ctx, definition.is_some()).min(ctx.max_output),
        ),
        vars: Variables::default(),
        counts: [0; 4],
        role: Role::Timeline,
        timeline: Timeline::default(),
        withheld: 0,
        allowed: Vec::new(),
        bare: false,
    };
    // A byte-order mark is copied as it is; the first line is read without it, or the
    // header would be taken for a URI line.
    out.text.push_str(&text[..text.len() - header.len()]);
    let mut kind = PlaylistKind::Media;
    let mut variant_tag_line = None;
    // One pass over the text; most playlists end their lines with `\n` alone.
    let carriage_returns = header.contains('\r');
    for (n, raw_line) in header.split_inclusive('\n').enumerate() {
        let line_no = n + 1;
        if out.text.len() > ctx.max_output {
            return Err(ManifestError::OutputTooLarge {
                limit: ctx.max_output,
            });
        }
        let (line, eol) = split_eol(raw_line);
        if carriage_returns && (line.contains('\r') || eol.len() > 2) {
            return Err(ManifestError::LoneCarriageReturn { line: line_no });
        }
        if line.trim().is_empty() {
            out.text.push_str(raw_line);
            continue;
        }
        if let Some(tag) = line.strip_prefix('#') {
            let name = tag.split(':').next().unwrap_or(tag);
            if let Some(definition) = &definition {
                if line_no == 1 {
                    // `#EXTM3U`: the definition follows it, in its line ending.
                    out.text.push_str(line);
                    let eol = if eol.is_empty() { "\n" } else { eol };
                    out.text.push_str(eol);
                    definition.write_header(&mut out.text, eol);
                    continue;
                }
                if name == "EXT-X-VERSION" {
                    out.text.push_str(&define::version_line(line));
                    out.text.push_str(eol);
                    continue;
                }
            }
            match name {
                "EXT-X-STREAM-INF" => {
                    if let Some(line) = variant_tag_line {
                        return Err(ManifestError::MissingVariantUri { line });
                    }
                    kind = PlaylistKind::Master;
                    variant_tag_line = Some(line_no);
                }
                "EXT-X-MEDIA" | "EXT-X-I-FRAME-STREAM-INF" | "EXT-X-IMAGE-STREAM-INF" => {
                    kind = PlaylistKind::Master
                }
                "EXT-X-DEFINE" => out.vars.define(line, line_no, ctx.request_query)?,
                // Durations and the window matter only in preview mode: no parsing otherwise.
                _ if ctx.preview.is_some() => out.timeline.tag(name, tag),
                _ => {}
            }
            match URI_TAGS.iter().find(|(tag_name, _)| *tag_name == name) {
                Some((_, attributes)) => {
                    out.bare = name == "EXT-X-RENDITION-REPORT";
                    out.role = match name {
                        "EXT-X-MAP" | "EXT-X-KEY" | "EXT-X-PART" | "EXT-X-PRELOAD-HINT" => {
                            Role::Timeline
                        }
                        _ => Role::Playlist,
                    };
                    out.tag(line, attributes, line_no)?;
                    out.bare = false;
                }
                None => out.text.push_str(line),
            }
        } else {
            out.role = if variant_tag_line.is_some() {
                Role::Playlist
            } else {
                Role::Timeline
            };
            variant_tag_line = None;
            out.uri(line);
            if out.role == Role::Timeline {
                out.timeline.segment_done();
            }
        }
        out.text.push_str(eol);
    }
    if let Some(line) = variant_tag_line {
        return Err(ManifestError::MissingVariantUri { line });
    }
    if out.text.len() > ctx.max_output {
        return Err(ManifestError::OutputTooLarge {
            limit: ctx.max_output,
        });
    }
    let [tokenized, rerouted, foreign, unresolved] = out.counts;
    Ok(Rewritten {
        text: out.text,
        kind,
        tokenized,
        rerouted,
        foreign,
        unresolved,
        withheld: out.withheld,
        allowed: out.allowed,
    })
}

/// Bytes to reserve for the rewritten text: the input plus a token for about every other
/// line (a media playlist's segment lines), so a large playlist is written without
/// reallocating and copying what is already written.
fn output_estimate(text: &str, ctx: &Rewrite<'_>, defined: bool) -> usize {
    let (per_uri, once) = match (ctx.carrier, ctx.per_path) {
        (Carrier::Inherited(_) | Carrier::Cookie, _) => return text.len(),
        (_, Some(_)) => (64, 0),
        // `?token={$t}` on each URI, and the definition (and a version line) once.
        (Carrier::Variable, None) if defined => (ctx.param.len() + 6, ctx.token.len() + 64),
        (Carrier::Query | Carrier::Variable, None) => (ctx.param.len() + ctx.token.len() + 2, 0),
        // `/<token>` plus the playlist's directory, which a relative URI gains (a guess).
        (Carrier::Path(_), None) => (ctx.token.len() + 2 + 32, 0),
    };
    let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
    text.len() + once + (lines / 2 + 1) * per_uri
}

fn split_eol(line: &str) -> (&str, &str) {
    let body = line.trim_end_matches(['\n', '\r']);
    (body, &line[body.len()..])
}

struct Rewriter<'a, 'c> {
    ctx: &'c Rewrite<'a>,
    /// What a URI carries as the token: the token itself, or the variable carrier's
    /// reference to it.
    token: &'c str,
    text: String,
    vars: Variables,
    /// tokenized, rerouted, foreign, unresolved
    counts: [usize; 4],
    /// Where the current URI points, for preview mode.
    role: Role,
    timeline: Timeline,
    withheld: usize,
    allowed: Vec<String>,
    /// The URI names a rendition rather than something to fetch (`EXT-X-RENDITION-REPORT`):
    /// written without a query credential, so that it resolves to a prefix of the URI the
    /// player has for that rendition (the path carriers, which put the token in every path,
    /// write it as any URI: exactly that URI), as players match reports to renditions.
    bare: bool,
}

impl Rewriter<'_, '_> {
    /// Copies a tag line, splicing the rewritten values of `attributes` into it.
    ///
    /// A line that does not even contain an attribute's name holds no URI by any player's
    /// reading, and is copied without being parsed.
    fn tag(
        &mut self,
        line: &str,
        attributes: &[&str],
        line_no: usize,
    ) -> Result<(), ManifestError> {
        let colon = match line.find(':') {
            Some(colon) if attributes.iter().any(|name| line.contains(name)) => colon,
            _ => {
                self.text.push_str(line);
                return Ok(());
            }
        };
        let values = find_attributes(&line[colon + 1..], attributes)
            .map_err(|()| ManifestError::BadAttributes { line: line_no })?;
        let mut copied = 0;
        for range in values.into_iter().flatten() {
            let range = colon + 1 + range.start..colon + 1 + range.end;
            // A URI is a quoted string; some players find it by `URI="…"` anywhere.
            if line.as_bytes()[range.start - 1] != b'"' {
                return Err(ManifestError::BadAttributes { line: line_no });
            }
            self.text.push_str(&line[copied..range.start]);
            self.uri(&line[range.clone()]);
            copied = range.end;
        }
        self.text.push_str(&line[copied..]);
        Ok(())
    }

    /// Writes `uri`, rewritten as its disposition says.
    ///
    /// Players strip leading and trailing spaces and control characters from a URI before
    /// resolving it (WHATWG URL), so only what lies between is classified and tokenized;
    /// the surroundings are copied as they are.
    fn uri(&mut self, raw: &str) {
        let is_padding = |c: char| c <= ' ';
        let uri = raw.trim_matches(is_padding);
        let lead = raw.len() - raw.trim_start_matches(is_padding).len();
        self.text.push_str(&raw[..lead]);
        self.classified_uri(uri);
        self.text.push_str(&raw[lead + uri.len()..]);
    }

    fn classified_uri(&mut self, uri: &str) {
        let disposition = uri::classify(
            uri,
            self.ctx.origin_bases,
            self.ctx.upstream_for,
            self.vars.known(),
        );
        if self.bare && !matches!(self.ctx.carrier, Carrier::Path(_) | Carrier::Inherited(_)) {
            // Without the origin's stale pair, as the rendition's own URI is written.
            match disposition {
                Disposition::Reroute { path, .. } => self
                    .text
                    .push_str(&uri::without_params(&path, |name| self.ctx.is_stale(name))),
                Disposition::Tokenize { .. } => self
                    .text
                    .push_str(&uri::without_params(uri, |name| self.ctx.is_stale(name))),
                _ => self.text.push_str(uri),
            }
            return;
        }
        match disposition {
            Disposition::Tokenize { has_query } => {
                if self.withhold(uri) {
                    self.text.push_str(uri);
                    return;
                }
                self.counts[0] += 1;
                self.push_tokenized(uri, has_query);
            }
            Disposition::Reroute { path, has_query } => {
                if self.withhold(&path) {
                    self.text.push_str(uri);
                    return;
                }
                self.counts[1] += 1;
                self.push_tokenized(&path, has_query);
            }
            Disposition::Foreign => {
                self.counts[2] += 1;
                self.text.push_str(uri);
            }
            Disposition::Unresolved => {
                self.counts[3] += 1;
                self.text.push_str(uri);
            }
        }
    }

    /// Preview mode: whether `target` (the URI as it will be written) lies past the preview,
    /// to be written without a token (counted here); if not, its path joins the allowed list.
    fn withhold(&mut self, target: &str) -> bool {
        let Some(preview) = self.ctx.preview else {
            return false;
        };
        let inside =
            self.role == Role::Playlist || self.timeline.now() < f64::from(preview.seconds);
        let path = inside
            .then(|| resolve_path(preview.playlist_path, target))
            .flatten();
        match path {
            Some(path) => {
                self.allowed.push(path);
                false
            }
            None => {
                self.withheld += 1;
                true
            }
        }
    }

    fn push_tokenized(&mut self, uri: &str, has_query: bool) {
        // Per-URI credentials, for the URI's path (the same with the origin's pairs or
        // without: a path holds no query).
        let minted = match (self.ctx.carrier, self.ctx.per_path) {
            (Carrier::Query | Carrier::Variable, Some(per_path)) => {
                match resolve_path(per_path.playlist_path, uri) {
                    Some(path) => Some((per_path.mint)(&path)),
                    None => {
                        // No path to sign: written without a stale pair, as it is otherwise
                        // (the player will be refused).
                        let stale = |name: &str| self.ctx.is_stale(name);
                        self.text.push_str(&uri::without_params(uri, stale));
                        return;
                    }
                }
            }
            _ => None,
        };
        // The origin's own pairs of usher's names, and of the names the minted query sets,
        // are stale and read before the token: dropped. nginx reads `$arg_md5` and
        // `$arg_expires` whatever their case, so those go whatever theirs.
        let minted_sets = |name: &str| {
            minted.as_deref().is_some_and(|query| {
                query.split('&').any(|pair| {
                    // usher's own name (a playlist's token) goes as usher reads it: exactly.
                    let set = pair.split_once('=').map_or(pair, |(set, _)| set);
                    !self.ctx.is_stale(set) && set.eq_ignore_ascii_case(name)
                })
            })
        };
        let clean = uri::without_params(uri, |name| self.ctx.is_stale(name) || minted_sets(name));
        let has_query = has_query && (clean.len() == uri.len() || uri::has_query(&clean));
        let uri = &*clean;
        match self.ctx.carrier {
            Carrier::Query | Carrier::Variable => {}
            Carrier::Cookie => {
                self.text.push_str(uri);
                return;
            }
            Carrier::Inherited(_) if !uri.starts_with('/') => {
                self.text.push_str(uri);
                return;
            }
            Carrier::Path(playlist_path) | Carrier::Inherited(playlist_path) => {
                match resolve_path(playlist_path, uri) {
                    Some(path) => {
                        let rest = &uri[uri.find(['?', '#']).unwrap_or(uri.len())..];
                        self.text.push('/');
                        self.text.push_str(self.ctx.token);
                        self.text.push_str(&path);
                        self.text.push_str(rest);
                    }
                    None => self.text.push_str(uri),
                }
                return;
            }
        }
        let (main, fragment) = uri.split_at(uri.find('#').unwrap_or(uri.len()));
        self.text.push_str(main);
        if !(main.ends_with('?') || (has_query && main.ends_with('&'))) {
            self.text.push(if has_query { '&' } else { '?' });
        }
        match minted {
            Some(query) => self.text.push_str(&query),
            None => {
                self.text.push_str(self.ctx.param);
                self.text.push('=');
                self.text.push_str(self.token);
            }
        }
        self.text.push_str(fragment);
    }
}

#[cfg(test)]
mod tests;
