//! `[media_cdn]`, checked: keys by id (HMAC secrets, Ed25519 private seeds or public
//! keys), the signing key, the token's parameter and cookie names, and the lifetime.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::super::file::{MediaCdnFile, MediaCdnKeyFile};
use super::super::foreign::MediaCdn;
use super::Problems;
use crate::ticket::media_cdn::{Algorithm, MediaKey};

/// Shortest HMAC secret accepted, in bytes (Google's keysets make 32).
const MIN_HMAC_SECRET: usize = 16;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes key text written as `encoding`: base64 (standard or URL-safe alphabet, padded
/// or not) or hex.
fn decode(text: &str, encoding: &str) -> Result<Vec<u8>, String> {
    match encoding {
        "base64" => LENIENT
            .decode(text.trim().replace('+', "-").replace('/', "_"))
            .map_err(|_| "not base64".to_owned()),
        "hex" if text.len() % 2 == 0 => (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap_or("x"), 16))
            .collect::<Result<_, _>>()
            .map_err(|_| "not hex".to_owned()),
        "hex" => Err("not an even number of hex digits".to_owned()),
        _ => Err("use base64 or hex".to_owned()),
    }
}

fn key(p: &mut Problems, at: &str, file: MediaCdnKeyFile) -> Option<MediaKey> {
    let Some(id) = file.id.filter(|id| !id.is_empty()) else {
        p.add(&format!("{at}.id"), "", "required");
        return None;
    };
    let algorithm_text = file.algorithm.unwrap_or_else(|| "sha256".to_owned());
    let Some(algorithm) = Algorithm::parse(&algorithm_text) else {
        p.add(
            &format!("{at}.algorithm"),
            &algorithm_text,
            "use sha256, sha1 or ed25519",
        );
        return None;
    };
    let encoding = file.encoding.unwrap_or_else(|| "base64".to_owned());
    let (text, public, field) = match (file.secret, file.secret_env, file.public_key) {
        (Some(secret), None, None) => (secret, false, "secret"),
        (None, Some(var), None) => match std::env::var(&var) {
            Ok(secret) => (secret, false, "secret"),
            Err(_) => {
                p.add(
                    &format!("{at}.secret_env"),
                    &var,
                    "environment variable is not set",
                );
                return None;
            }
        },
        (None, None, Some(public)) if algorithm == Algorithm::Ed25519 => {
            (public, true, "public_key")
        }
        (None, None, Some(_)) => {
            p.add(
                &format!("{at}.public_key"),
                "",
                "only ed25519 keys have a public key; HMAC keys need secret or secret_env",
            );
            return None;
        }
        _ => {
            p.add(
                at,
                &id,
                "set exactly one of secret, secret_env or (ed25519) public_key",
            );
            return None;
        }
    };
    let field = format!("{at}.{field}");
    let bytes = match decode(&text, &encoding) {
        Ok(bytes) => bytes,
        Err(why) if why == "use base64 or hex" => {
            p.add(&format!("{at}.encoding"), &encoding, why);
            return None;
        }
        Err(why) => {
            p.add(&field, "", format!("{why} (encoding = \"{encoding}\")"));
            return None;
        }
    };
    let made = match (algorithm, public) {
        (Algorithm::Ed25519, true) => MediaKey::ed25519_public(&id, &bytes),
        (Algorithm::Ed25519, false) => MediaKey::ed25519_private(&id, &bytes),
        (hmac, _) if bytes.len() < MIN_HMAC_SECRET => Err(format!(
            "{} bytes: an {} secret needs at least {MIN_HMAC_SECRET}",
            bytes.len(),
            hmac.as_str()
        )),
        (hmac, _) => MediaKey::hmac(&id, hmac, &bytes),
    };
    p.take(&field, "", made)
}

pub(super) fn check(p: &mut Problems, file: MediaCdnFile) -> Option<Arc<MediaCdn>> {
    if file.keys.is_empty() {
        p.add(
            "media_cdn.keys",
            "",
            "at least one [[media_cdn.keys]] entry is required",
        );
    }
    let mut keys: Vec<MediaKey> = Vec::new();
    for (n, entry) in file.keys.into_iter().enumerate() {
        let at = format!("media_cdn.keys[{n}]");
        if let Some(key) = key(p, &at, entry) {
            if keys.iter().any(|k| k.id() == key.id()) {
                p.add(&format!("{at}.id"), key.id(), "appears twice");
            } else {
                keys.push(key);
            }
        }
    }
    let signer = match &file.signing_key {
        Some(id) => match keys.iter().find(|k| k.id() == id) {
            Some(key) => {
                let signer = key.clone().signing().ok();
                if signer.is_none() {
                    p.add(
                        "media_cdn.signing_key",
                        id,
                        "is an ed25519 public key, which cannot sign",
                    );
                }
                signer
            }
            None => {
                p.add("media_cdn.signing_key", id, "is not among media_cdn.keys");
                None
            }
        },
        None => keys.iter().find_map(|k| k.clone().signing().ok()),
    };
    let token_name = p.param_name(
        "media_cdn.token_name",
        file.token_name.as_deref().unwrap_or("edge-cache-token"),
    );
    let cookie_name = p.param_name(
        "media_cdn.cookie_name",
        file.cookie_name.as_deref().unwrap_or("Edge-Cache-Cookie"),
    );
    let ttl = p.duration(
        "media_cdn.ttl",
        file.ttl.as_deref(),
        "2h",
        Duration::from_secs(1),
    );
    (!keys.is_empty()).then(|| {
        Arc::new(MediaCdn {
            keys,
            signer,
            token_name,
            cookie_name,
            ttl,
        })
    })
}
