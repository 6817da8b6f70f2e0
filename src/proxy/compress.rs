//! Playlist compression: `Accept-Encoding` negotiation and gzip of the bytes a playlist
//! response sends, after rewriting (each tokenized response is its own). Segments, keys,
//! init sections and other media objects are never compressed: they are compressed
//! already, and their byte ranges must stay the origin's.
//!
//! The rule: gzip when `[playlists] compress = "gzip"`, the client accepts gzip (RFC 9110
//! §12.5.3: q-values, `*`, `identity`), the request has no `Range` other than `bytes=0-`,
//! and the identity body
//! is at least `compress_min_bytes` long (unless the client refused identity). Every
//! playlist response says `Vary: Accept-Encoding`, compressed or not.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, RANGE, VARY};
use http::{HeaderMap, HeaderValue};

use crate::config::{Compress, PlaylistsConfig};
use crate::metrics::Metrics;

/// What the client's `Accept-Encoding` allows, for the one coding usher offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// gzip is acceptable and preferred to identity.
    pub gzip: bool,
    /// The client said identity is not acceptable (`identity;q=0`, or `*;q=0` without an
    /// `identity` entry).
    pub identity_refused: bool,
}

/// Reads every `Accept-Encoding` field of a request. No field: identity only.
pub fn accepted(headers: &HeaderMap) -> Accepted {
    let mut gzip: Option<f32> = None;
    let mut identity: Option<f32> = None;
    let mut star: Option<f32> = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            if coding.is_empty() {
                continue;
            }
            let mut q = 1.0_f32;
            for param in parts {
                if let Some((name, v)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        // A malformed weight counts as 0: never send what was not asked for.
                        q = v
                            .trim()
                            .parse()
                            .ok()
                            .filter(|q: &f32| (0.0..=1.0).contains(q))
                            .unwrap_or(0.0);
                    }
                }
            }
            let slot =
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if coding.eq_ignore_ascii_case("identity") {
                    &mut identity
                } else if coding == "*" {
                    &mut star
                } else {
                    continue;
                };
            // Repeated entries: the most favourable one stands.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    let gzip_q = gzip.or(star).unwrap_or(0.0);
    let identity_q = identity.or(star).unwrap_or(1.0);
    Accepted {
        // An explicit identity weight above gzip's wins; otherwise gzip, when acceptable.
        gzip: gzip_q > 0.0 && identity.is_none_or(|q| gzip_q >= q),
        identity_refused: identity_q <= 0.0,
    }
}

/// Whether a `Range` field asks for part of the playlist. `bytes=0-` (ffmpeg sends it on
/// every request) asks for all of it, like no field.
fn asks_part(request: &HeaderMap) -> bool {
    request
        .get_all(RANGE)
        .iter()
        .any(|v| v.as_bytes().trim_ascii() != b"bytes=0-")
}

/// Whether this response's body goes out gzip-encoded. A playlist is always answered
/// 200 whole; a request for part of it still gets identity bytes, so any offsets it holds
/// stay meaningful.
pub fn wants_gzip(settings: &PlaylistsConfig, request: &HeaderMap, identity_len: usize) -> bool {
    if settings.compress != Compress::Gzip || asks_part(request) {
        return false;
    }
    let accepted = accepted(request);
    accepted.gzip && (identity_len >= settings.compress_min_bytes || accepted.identity_refused)
}

/// `body` gzip-encoded at `level` (0–9).
pub fn gzip(body: &[u8], level: u32) -> Vec<u8> {
    // A playlist compresses to well under half; one allocation covers nearly all.
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(body.len() / 3 + 64),
        Compression::new(level),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

/// A gzip-encoded upstream body decoded, refusing more than `limit` decoded bytes.
///
/// # Errors
/// A message when the data is not gzip or decodes past `limit`.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let read = GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip: {e}"))?;
    if read > limit {
        return Err(format!("decodes past {limit} bytes"));
    }
    Ok(out)
}

/// Says `Vary: Accept-Encoding` (once) on a playlist response.
pub fn vary(headers: &mut HeaderMap) {
    let already = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| {
            let name = name.trim();
            name == "*" || name.eq_ignore_ascii_case("accept-encoding")
        });
    if !already {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// Encodes a playlist body for the response whose headers are `headers` (the upstream's
/// `Content-Encoding` already removed): sets `Vary`, `Content-Encoding` and
/// `Content-Length`, counts the bytes, and returns the body to send.
pub fn encode(
    settings: &PlaylistsConfig,
    metrics: &Metrics,
    request: &HeaderMap,
    headers: &mut HeaderMap,
    body: bytes::Bytes,
) -> bytes::Bytes {
    vary(headers);
    let body = if wants_gzip(settings, request, body.len()) {
        let encoded = gzip(&body, settings.compress_level);
        metrics.playlist_gzip_input_bytes.inc_by(body.len() as u64);
        metrics.playlist_bytes_gzip.inc_by(encoded.len() as u64);
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        bytes::Bytes::from(encoded)
    } else {
        metrics.playlist_bytes_identity.inc_by(body.len() as u64);
        body
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Accepted {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, value.parse().unwrap());
        accepted(&h)
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(!accepted(&HeaderMap::new()).gzip, "no field: identity");
        assert!(parse("gzip").gzip);
        assert!(parse("gzip, deflate, br").gzip);
        assert!(parse("GZIP;Q=0.5").gzip);
        assert!(parse("x-gzip").gzip);
        assert!(parse("*").gzip);
        assert!(parse("br;q=1, *;q=0.1").gzip);
        assert!(!parse("gzip;q=0").gzip);
        assert!(!parse("gzip;q=0.000").gzip);
        assert!(!parse("gzip;q=0, *").gzip, "an explicit gzip entry beats *");
        assert!(!parse("br, deflate").gzip);
        assert!(!parse("identity").gzip);
        assert!(
            !parse("gzip;q=0.5, identity").gzip,
            "identity weighed higher"
        );
        assert!(parse("gzip, identity;q=0.5").gzip);
        assert!(!parse("gzip;q=bogus").gzip, "a malformed weight is 0");
        assert!(!parse("gzip;q=0").identity_refused);
        assert!(parse("gzip, identity;q=0").identity_refused);
        assert!(parse("gzip, *;q=0").identity_refused);
        assert!(!parse("gzip, identity, *;q=0").identity_refused);
    }

    #[test]
    fn small_bodies_and_range_requests_stay_identity() {
        let settings = PlaylistsConfig {
            compress: Compress::Gzip,
            compress_min_bytes: 100,
            compress_level: 1,
            ..PlaylistsConfig::default()
        };
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, "gzip".parse().unwrap());
        assert!(wants_gzip(&settings, &h, 100));
        assert!(!wants_gzip(&settings, &h, 99));
        let off = PlaylistsConfig {
            compress: Compress::Off,
            ..settings.clone()
        };
        assert!(!wants_gzip(&off, &h, 100_000));
        h.insert(ACCEPT_ENCODING, "gzip, identity;q=0".parse().unwrap());
        assert!(wants_gzip(&settings, &h, 10), "identity refused: any size");
        h.insert(RANGE, "bytes=0-".parse().unwrap());
        assert!(
            wants_gzip(&settings, &h, 10),
            "bytes=0- is the whole playlist"
        );
        h.insert(RANGE, "bytes=0-10".parse().unwrap());
        assert!(!wants_gzip(&settings, &h, 100_000));
    }

    #[test]
    fn gzip_round_trips_and_decoding_is_bounded() {
        let text = "#EXTM3U\n".to_owned() + &"#EXTINF:2,\nseg.ts?s=token\n".repeat(100);
        let packed = gzip(text.as_bytes(), 1);
        assert!(packed.len() < text.len() / 4);
        assert_eq!(gunzip(&packed, text.len()).unwrap(), text.as_bytes());
        assert!(gunzip(&packed, text.len() - 1).is_err());
        assert!(gunzip(b"not gzip", 100).is_err());
    }

    #[test]
    fn vary_is_said_once() {
        let mut h = HeaderMap::new();
        h.insert(VARY, "Origin".parse().unwrap());
        vary(&mut h);
        vary(&mut h);
        let all: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(all, ["Origin", "Accept-Encoding"]);
    }
}
