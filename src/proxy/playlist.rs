//! Serving a protected playlist: read it whole (bounded), mint one session token, rewrite,
//! answer privately. A playlist that cannot be rewritten is a 502, never a pass-through.
//! An interstitials asset list (JSON) is served the same way, by its own rewriter.

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, EXPIRES, LAST_MODIFIED,
};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;

use super::authorize::PREVIEW_SUBJECT;
use super::respond::{full, ProxyError};
use super::{Body, State};
use crate::access::foreign::UNNAMED_SUBJECT;
use crate::access::{self, Grant};
use crate::config::{CarrierKind, Mint, PlaylistsConfig};
use crate::manifest::{
    self, Carrier, ManifestError, PerPath, Preview, Rewrite, Rewritten, UpstreamFor,
};
use crate::path::ObjectKind;
use crate::ticket::edgeauth::{self, EdgeToken};
use crate::ticket::media_cdn::{self, MediaToken, Scope};
use crate::ticket::{self, Claims, Kind};

/// The parts of the request a playlist response depends on.
pub struct PlaylistRequest<'a> {
    /// The config snapshot the request is served under.
    pub config: &'a crate::config::Config,
    /// The normalised request path.
    pub path: &'a str,
    /// What the access check granted.
    pub grant: &'a Grant,
    /// The device the request named (hashed).
    pub device: Option<&'a str>,
    /// The client's address.
    pub client_ip: std::net::IpAddr,
    /// Whether the client connected over TLS (cookies get `Secure`).
    pub https: bool,
    /// The request's query without usher's and the foreign formats' credentials (for
    /// `EXT-X-DEFINE:QUERYPARAM`, which then cannot hand a credential to a player).
    pub query: Option<&'a str>,
    /// A HEAD request: headers only.
    pub head_only: bool,
    /// The session token the request carried as its first path segment, when that is the
    /// credential it was granted by.
    pub path_token: Option<&'a str>,
    /// The request's headers (`Accept-Encoding`, `Range`).
    pub headers: &'a http::HeaderMap,
    /// What the answer is rewritten as.
    pub document: Document,
}

/// What a protected answer is rewritten as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// An HLS playlist ([`manifest::rewrite`]).
    Playlist,
    /// An interstitials asset list, JSON ([`manifest::rewrite_asset_list`]).
    AssetList,
}

impl Document {
    /// What the path names: a playlist (`.m3u8`), or an asset list (another object whose
    /// extension is in `playlists.asset_list_extensions`).
    pub fn by_path(settings: &PlaylistsConfig, kind: ObjectKind, path: &str) -> Option<Self> {
        match kind {
            ObjectKind::Playlist => Some(Document::Playlist),
            // Only an object of no known kind is looked at further (segments, the hot
            // path, are not).
            ObjectKind::Other => {
                let name = path.rsplit('/').next().unwrap_or(path);
                let (_, ext) = name.rsplit_once('.')?;
                settings
                    .asset_list_extensions
                    .iter()
                    .any(|listed| listed.eq_ignore_ascii_case(ext))
                    .then_some(Document::AssetList)
            }
            _ => None,
        }
    }

    /// What the upstream's answer says, whatever the path looked like: a playlist by its
    /// content type; an asset list by `application/json`, for an object the path names
    /// no other kind of, in an answer that is not an error (which goes out as it came).
    pub fn by_answer(kind: ObjectKind, response: &Response<Body>) -> Option<Self> {
        let headers = response.headers();
        if is_playlist_type(headers) {
            return Some(Document::Playlist);
        }
        // Segments, keys and init sections (the hot path) are never asked about JSON.
        if kind != ObjectKind::Other {
            return None;
        }
        let status = response.status();
        let json = headers.get(CONTENT_TYPE).is_some_and(|v| {
            let media_type = v.as_bytes().split(|&b| b == b';').next().unwrap_or(b"");
            media_type
                .trim_ascii()
                .eq_ignore_ascii_case(b"application/json")
        });
        (json && (status.is_success() || status == StatusCode::NOT_MODIFIED))
            .then_some(Document::AssetList)
    }
}

/// Whether `headers` name a playlist's content type (`…mpegurl`, any case).
pub fn is_playlist_type(headers: &http::HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        // Windows are compared only where an `m` starts one: most types hold none or one.
        v.as_bytes()
            .windows(b"mpegurl".len())
            .any(|w| w[0] | 0x20 == b'm' && w.eq_ignore_ascii_case(b"mpegurl"))
    })
}

/// Whether `response` holds a whole playlist to rewrite: a 200 with a body (`head_only`:
/// the request was a HEAD, whose answer has none) in a coding the rewriter reads.
pub fn is_whole(response: &Response<Body>, head_only: bool) -> bool {
    response.status() == StatusCode::OK && !head_only && gzipped(response).is_ok()
}

/// Whether a playlist answer is gzipped (`Ok(false)`: identity).
///
/// # Errors
/// Another coding, by name: the rewriter cannot read it.
fn gzipped(response: &Response<Body>) -> Result<bool, String> {
    match response
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.as_bytes())
    {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case(b"identity") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip") => Ok(true),
        Some(other) => Err(String::from_utf8_lossy(other).into_owned()),
    }
}

/// Rewrites the upstream's playlist response for one viewer.
///
/// An upstream that gzips the playlist anyway (usher asks for identity) is decoded first;
/// the response is compressed again per viewer, after rewriting (see [`super::compress`]).
///
/// # Errors
/// 502-class [`ProxyError`]s when the playlist is in another coding, too large, broken off
/// or does not parse.
pub async fn serve(
    state: &State,
    req: PlaylistRequest<'_>,
    upstream: Response<Body>,
) -> Result<Response<Body>, ProxyError> {
    let status = upstream.status();
    if status != StatusCode::OK {
        // An ad server with no ad to give answers 204: nothing to rewrite, passed on.
        let no_ads = status == StatusCode::NO_CONTENT && req.document == Document::AssetList;
        if status.is_success() && !no_ads {
            return Err(ProxyError::PlaylistBody(format!(
                "unexpected status {status}"
            )));
        }
        return Ok(upstream);
    }
    let gzipped = gzipped(&upstream).map_err(ProxyError::EncodedPlaylist)?;
    let (mut parts, body) = upstream.into_parts();
    let limit = req.config.upstream.max_playlist_bytes;
    let mut bytes = read_bounded(body, limit).await?;
    if gzipped {
        bytes = super::compress::gunzip(&bytes, limit)
            .map_err(|e| ProxyError::PlaylistBody(format!("upstream gzip: {e}")))?
            .into();
    }

    let (rewritten, cookie) = rewrite_for(state, &req, &bytes).inspect_err(|e| {
        let label = match req.document {
            Document::Playlist => "unknown",
            Document::AssetList => "asset_list",
        };
        state
            .metrics
            .rewrites
            .with_label_values(&[label, "error"])
            .inc();
        tracing::warn!(error = %e, "playlist cannot be rewritten");
    })?;
    let m = &state.metrics;
    m.rewrites
        .with_label_values(&[rewritten.kind.as_str(), "ok"])
        .inc();
    for (disposition, count) in [
        ("tokenized", rewritten.tokenized),
        ("rerouted", rewritten.rerouted),
        ("foreign", rewritten.foreign),
        ("unresolved", rewritten.unresolved),
        ("withheld", rewritten.withheld),
    ] {
        if count > 0 {
            m.rewritten_uris
                .with_label_values(&[disposition])
                .inc_by(count as u64);
        }
    }

    for name in [
        ETAG,
        LAST_MODIFIED,
        EXPIRES,
        ACCEPT_RANGES,
        CONTENT_ENCODING,
    ] {
        parts.headers.remove(name);
    }
    parts
        .headers
        .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    // Nor may a header that instructs shared caches over it (`CDN-Cache-Control`…) let
    // one keep the viewer's tokens: the shield's copy still has the origin's.
    super::cache_control::drop_targeted(&mut parts.headers);
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        parts.headers.append(http::header::SET_COOKIE, cookie);
    }
    parts
        .headers
        .entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static(match req.document {
            Document::Playlist => "application/vnd.apple.mpegurl",
            Document::AssetList => "application/json",
        }));
    // HEAD encodes too, so its Content-Length and Content-Encoding are GET's.
    let text = super::compress::encode(
        &req.config.playlists,
        &state.metrics,
        req.headers,
        &mut parts.headers,
        rewritten.text.into(),
    );
    let body = if req.head_only {
        full(bytes::Bytes::new())
    } else {
        full(text)
    };
    Ok(Response::from_parts(parts, body))
}

/// A playlist usher does not rewrite (a public route): gzip-encoded like a rewritten one
/// when the upstream sent it whole and uncompressed with a known length within
/// `max_playlist_bytes`; otherwise it goes out as it came. Either way it says
/// `Vary: Accept-Encoding`. A HEAD answer keeps the upstream's identity headers.
///
/// # Errors
/// A 502-class [`ProxyError`] when the body breaks off.
pub async fn pass_through(
    state: &State,
    config: &crate::config::Config,
    request: &http::HeaderMap,
    head_only: bool,
    upstream: Response<Body>,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = upstream.into_parts();
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let whole = parts.status == StatusCode::OK
        && !head_only
        && !parts.headers.contains_key(CONTENT_ENCODING)
        && length.is_some_and(|n| {
            n <= config.upstream.max_playlist_bytes
                && super::compress::wants_gzip(&config.playlists, request, n)
        });
    if !whole {
        super::compress::vary(&mut parts.headers);
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = read_bounded(body, config.upstream.max_playlist_bytes).await?;
    parts.headers.remove(ETAG);
    parts.headers.remove(ACCEPT_RANGES);
    let text = super::compress::encode(
        &config.playlists,
        &state.metrics,
        request,
        &mut parts.headers,
        bytes,
    );
    Ok(Response::from_parts(parts, full(text)))
}

/// How many times `upstream.max_playlist_bytes` a rewritten playlist may reach. Tokens
/// grow a playlist of short segment lines about 4 to 12 times; a playlist of bare one-byte
/// lines would grow 50 times and more, per viewer and reload.
const MAX_OUTPUT_GROWTH: usize = 8;

/// Most paths a preview token names.
const MAX_PREVIEW_PATHS: usize = 512;

/// Mints the token for this response and rewrites the playlist with it: one session token
/// for a viewer with a right, or, in preview mode, a preview token naming exactly the
/// paths the rewrite let through (found by a first pass).
fn rewrite_for(
    state: &State,
    req: &PlaylistRequest<'_>,
    bytes: &[u8],
) -> Result<(Rewritten, Option<String>), ManifestError> {
    let config = req.config;
    let settings = &config.token;
    let now = (state.clock)();
    let rewrite = match req.document {
        Document::Playlist => manifest::rewrite,
        Document::AssetList => manifest::rewrite_asset_list,
    };
    // With named groups, a URI under a group's base is rerouted only to a path that group
    // serves; the routes come from the config this request took.
    let group_of = |path: &str| config.upstream_for(path);
    let mut ctx = Rewrite {
        origin_bases: &state.origin_bases,
        upstream_for: (!config.upstream_groups.is_empty()).then_some(UpstreamFor(&group_of)),
        param: &settings.session_param,
        usher_param: &settings.session_param,
        token: "",
        request_query: req.query,
        preview: None,
        per_path: None,
        carrier: match config.carrier_for(req.path) {
            CarrierKind::Query => Carrier::Query,
            CarrierKind::Variable => Carrier::Variable,
            CarrierKind::Path => Carrier::Path(req.path),
            CarrierKind::Cookie => Carrier::Cookie,
        },
        max_output: config
            .upstream
            .max_playlist_bytes
            .saturating_mul(MAX_OUTPUT_GROWTH),
    };
    let preview_seconds = req
        .grant
        .claims
        .is_preview()
        .then(|| state.rights.as_ref()?.media_for(req.path))
        .flatten()
        .map(|media| media.preview_seconds)
        .filter(|seconds| *seconds > 0);
    let claims = match preview_seconds {
        None => access::session_claims(
            req.grant,
            req.device,
            config
                .sessions
                .bind_ip
                .then(|| config.sessions.network(req.client_ip)),
            now,
            settings.session_ttl.as_secs(),
            crate::sessions::new_id,
        ),
        Some(seconds) => {
            ctx.preview = Some(Preview {
                seconds,
                playlist_path: req.path,
            });
            let mut allow = rewrite(bytes, &ctx)?.allowed;
            allow.truncate(MAX_PREVIEW_PATHS);
            if allow.is_empty() {
                // An empty list would not mark a preview token: name the playlist itself.
                allow.push(req.path.to_owned());
            }
            Claims {
                sub: PREVIEW_SUBJECT.to_owned(),
                scope: req.grant.claims.scope.clone(),
                nbf: 0,
                exp: now + settings.session_ttl.as_secs(),
                dev: None,
                ip: None,
                sid: None,
                cap: 0,
                allow,
                cls: None,
            }
        }
    };
    // Preview tokens are always usher's own: only usher knows which paths they open.
    let mint = match preview_seconds {
        Some(_) => &Mint::Usher,
        None => config.mint_for(req.path),
    };
    match mint {
        Mint::Usher => {
            // The path carrier hands a playlist requested under a session token the same
            // token again: every reload of a live playlist then names each segment by the
            // same URI, which players require (hls.js refuses a reload whose known segments
            // changed anywhere but in their query). The session keeps the token alive past
            // its expiry, and the rights check still runs on every request.
            let reused = match (ctx.carrier, req.path_token) {
                (Carrier::Path(_), Some(token))
                    if req.grant.kind == Kind::Session && preview_seconds.is_none() =>
                {
                    Some(token.to_owned())
                }
                _ => None,
            };
            if reused.is_some() {
                ctx.carrier = Carrier::Inherited(req.path);
            }
            let token =
                reused.unwrap_or_else(|| ticket::sign(&settings.keys, Kind::Session, &claims));
            ctx.token = &token;
            let rewritten = rewrite(bytes, &ctx)?;
            // The cookie carrier: the token rides in a cookie scoped to the content.
            let cookie = (ctx.carrier == Carrier::Cookie).then(|| {
                let secure = if req.https { "; Secure" } else { "" };
                format!(
                    "{}={token}; Path={}; HttpOnly; SameSite=Lax{secure}",
                    settings.session_cookie, claims.scope
                )
            });
            Ok((rewritten, cookie))
        }
        Mint::SecureLink { expression, ttl } => {
            // Playlists keep coming to usher with its own session token; media, keys and
            // init sections go to the CDN (or nginx) that checks the secure link.
            let expires = now + ttl.as_secs();
            let client = req.client_ip;
            let session = ticket::sign(&settings.keys, Kind::Session, &claims);
            let param = settings.session_param.as_str();
            let sign = |path: &str| match ObjectKind::of(path) {
                ObjectKind::Playlist => format!("{param}={session}"),
                _ => expression.query(path, expires, Some(client)),
            };
            ctx.per_path = Some(PerPath {
                playlist_path: req.path,
                mint: &sign,
            });
            Ok((rewrite(bytes, &ctx)?, None))
        }
        Mint::Akamai(akamai) => {
            let token = EdgeToken {
                exp: now + akamai.ttl.as_secs(),
                acl: Some(scope_globs(&claims.scope)),
                id: named(&claims),
                ..EdgeToken::default()
            };
            let token = edgeauth::mint(&token, None, &akamai.key, &akamai.options);
            ctx.param = &akamai.token_name;
            ctx.token = &token;
            Ok((rewrite(bytes, &ctx)?, None))
        }
        Mint::MediaCdn { signer, settings } => {
            let mut token = MediaToken::new(
                Scope::PathGlobs(scope_globs(&claims.scope)),
                now + settings.ttl.as_secs(),
            );
            token.session_id = named(&claims);
            let token = media_cdn::mint(&token, signer);
            ctx.param = &settings.token_name;
            ctx.token = &token;
            Ok((rewrite(bytes, &ctx)?, None))
        }
    }
}

/// The globs that open what a credential's `scope` opens, and no more: `/vod/a/*` for
/// `/vod/a/`; `/vod/a` and `/vod/a/*` for `/vod/a` (`/vod/a*` would also open `/vod/ab/`).
fn scope_globs(scope: &str) -> Vec<String> {
    if scope.ends_with('/') {
        vec![format!("{scope}*")]
    } else {
        vec![scope.to_owned(), format!("{scope}/*")]
    }
}

/// The subject to write into a foreign token (Akamai `id`, Media CDN `SessionID`), so the
/// rights check follows it when the token comes back; none for a grant that names no one.
fn named(claims: &Claims) -> Option<String> {
    (claims.sub != UNNAMED_SUBJECT).then(|| claims.sub.clone())
}

/// The whole body, refusing more than `limit` bytes.
async fn read_bounded(mut body: Body, limit: usize) -> Result<bytes::Bytes, ProxyError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ProxyError::PlaylistBody(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ProxyError::PlaylistTooLarge(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::scope_globs;
    use crate::ticket::edgeauth::acl_matches;
    use crate::ticket::media_cdn::glob_matches;
    use crate::ticket::scope_covers;

    #[test]
    fn minted_globs_open_what_the_scope_opens_and_no_more() {
        for (scope, opened, closed) in [
            (
                "/vod/a",
                ["/vod/a", "/vod/a/v/s1.ts"],
                ["/vod/ab/v/s1.ts", "/vod/a-premium/x.ts"],
            ),
            (
                "/vod/a/",
                ["/vod/a/", "/vod/a/v/s1.ts"],
                ["/vod/ab/v/s1.ts", "/vod/a"],
            ),
        ] {
            let globs = scope_globs(scope);
            for path in opened {
                assert!(scope_covers(scope, path), "{path}");
                assert!(
                    globs.iter().any(|g| acl_matches(g, path)),
                    "akamai {scope}: {path}"
                );
                assert!(
                    globs.iter().any(|g| glob_matches(g, path)),
                    "media cdn {scope}: {path}"
                );
            }
            for path in closed {
                assert!(!scope_covers(scope, path), "{path}");
                assert!(
                    !globs.iter().any(|g| acl_matches(g, path)),
                    "akamai {scope}: {path}"
                );
                assert!(
                    !globs.iter().any(|g| glob_matches(g, path)),
                    "media cdn {scope}: {path}"
                );
            }
        }
    }
}
