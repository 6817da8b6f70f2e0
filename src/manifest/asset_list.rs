//! HLS interstitials asset lists: the JSON document the `X-ASSET-LIST` attribute of an
//! `EXT-X-DATERANGE` names, `{"ASSETS": [{"URI": "…", "DURATION": 30}, …]}`.
//!
//! Each asset's `URI` is written by the playlist rewriter (the same [`Rewriter`], so
//! relative and origin URIs get the token or are rerouted, foreign ones are left alone; a
//! relative URI resolves against the asset list's path); every other byte is copied as it
//! came: the other members, their order, numbers, white space, and a URI left alone, escapes
//! and all. Only the document's last `ASSETS` member and an asset's last `URI` count, as
//! in a player's `JSON.parse`.
//!
//! A document that is not JSON, or whose `ASSETS` is not a list of objects each with a
//! string `URI`, is refused ([`AssetListError`]): players would fail on it, and it is never
//! passed on with an asset left untokenized. A JSON document without `ASSETS` names no
//! asset (another JSON object under a protected path) and is copied unchanged.
//!
//! A content steering manifest (`{"VERSION": 1, "TTL": 300, "RELOAD-URI": "…", …}`, what
//! `EXT-X-CONTENT-STEERING:SERVER-URI` names) is JSON served the same way: its top-level
//! `RELOAD-URI` string, where the player fetches the next one, is written as an asset URI.

use std::collections::HashMap;
use std::ops::Range;

use serde_json::value::RawValue;

use super::timeline::Timeline;
use super::variables::Variables;
use super::{ManifestError, PlaylistKind, Rewrite, Rewriter, Rewritten, Role};

/// Why an asset list cannot be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetListError {
    /// Not JSON at all (serde_json's reason, with line and column).
    #[error("not JSON: {0}")]
    NotJson(String),
    /// `ASSETS`, or one asset in it, is not what the interstitials spec makes it.
    #[error("{0}")]
    BadAssets(String),
}

/// Rewrites the asset list `body` for one response, as [`super::rewrite`] rewrites a
/// playlist; [`Rewritten::kind`] is [`PlaylistKind::AssetList`].
///
/// # Errors
/// [`ManifestError::AssetList`] for a document that is not an asset list usher can account
/// for; [`ManifestError::OutputTooLarge`] past `max_output`.
pub fn rewrite_asset_list(body: &[u8], ctx: &Rewrite<'_>) -> Result<Rewritten, ManifestError> {
    // JSON exchanged between systems is UTF-8 (RFC 8259 8.1): other bytes are no JSON.
    let text = std::str::from_utf8(body)
        .map_err(|e| AssetListError::NotJson(format!("not UTF-8: {e}")))?;
    // A byte-order mark, which players' JSON decoding drops, is copied as it is.
    let json = text.strip_prefix('\u{feff}').unwrap_or(text);
    let uris = asset_uris(json)?;
    let mut rewriter = Rewriter {
        ctx,
        // No variables in JSON: the variable carrier writes the token itself.
        token: ctx.token,
        text: String::new(),
        vars: Variables::default(),
        counts: [0; 4],
        // Every asset is a playlist the player loads whole, as a master's variants are.
        role: Role::Playlist,
        timeline: Timeline::default(),
        withheld: 0,
        allowed: Vec::new(),
        bare: false,
    };
    let offset = text.len() - json.len();
    let estimate = text.len() + uris.len() * (ctx.token.len() + 16);
    let mut out = String::with_capacity(estimate.min(ctx.max_output));
    let mut copied = 0;
    for (span, uri) in uris {
        let span = offset + span.start..offset + span.end;
        out.push_str(&text[copied..span.start]);
        rewriter.text.clear();
        rewriter.uri(&uri);
        if rewriter.text == uri {
            out.push_str(&text[span.clone()]);
        } else {
            out.push_str(&serde_json::Value::from(rewriter.text.as_str()).to_string());
        }
        copied = span.end;
        if out.len() > ctx.max_output {
            break;
        }
    }
    out.push_str(&text[copied..]);
    if out.len() > ctx.max_output {
        return Err(ManifestError::OutputTooLarge {
            limit: ctx.max_output,
        });
    }
    let [tokenized, rerouted, foreign, unresolved] = rewriter.counts;
    Ok(Rewritten {
        text: out,
        kind: PlaylistKind::AssetList,
        tokenized,
        rerouted,
        foreign,
        unresolved,
        withheld: rewriter.withheld,
        allowed: rewriter.allowed,
    })
}

/// Where in `json` each asset's `URI` string (and a steering manifest's `RELOAD-URI`) is,
/// quotes included, and its value, in document order.
fn asset_uris(json: &str) -> Result<Vec<(Range<usize>, String)>, AssetListError> {
    let not_json = |e: serde_json::Error| AssetListError::NotJson(e.to_string());
    let bad = |why: String| AssetListError::BadAssets(why);
    let document: &RawValue = serde_json::from_str(json).map_err(not_json)?;
    if !document.get().starts_with('{') {
        return Ok(Vec::new());
    }
    let members: HashMap<String, &RawValue> =
        serde_json::from_str(document.get()).map_err(not_json)?;
    let mut uris = Vec::new();
    // A content steering manifest (the JSON `EXT-X-CONTENT-STEERING` names): the player
    // reloads it from `RELOAD-URI`, resolved against the manifest, instead of `SERVER-URI`.
    if let Some(raw) = members.get("RELOAD-URI") {
        if let Ok(uri) = serde_json::from_str::<String>(raw.get()) {
            uris.push((span(json, raw.get()), uri));
        }
    }
    let Some(assets) = members.get("ASSETS") else {
        return Ok(uris);
    };
    let assets: Vec<HashMap<String, &RawValue>> = serde_json::from_str(assets.get())
        .map_err(|_| bad("ASSETS is not a list of objects".to_owned()))?;
    for (i, asset) in assets.iter().enumerate() {
        let raw = asset
            .get("URI")
            .ok_or_else(|| bad(format!("ASSETS[{i}] has no URI")))?;
        let uri: String = serde_json::from_str(raw.get())
            .map_err(|_| bad(format!("ASSETS[{i}].URI is not a string")))?;
        uris.push((span(json, raw.get()), uri));
    }
    uris.sort_by_key(|(span, _)| span.start);
    Ok(uris)
}

/// The byte range of `inner`, a slice of `outer`, within `outer`.
fn span(outer: &str, inner: &str) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}
