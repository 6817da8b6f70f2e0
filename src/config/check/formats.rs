//! `[[routes]]`, `[secure_link]`, `[akamai]` and `[media_cdn]`, checked; and the secrets
//! of their keys and of `[[token.keys]]`.

use std::path::Path;
use std::time::Duration;

use super::super::file::{AkamaiFile, KeyFile, MediaCdnFile, RouteFile, SecureLinkFile};
use super::super::foreign::{Format, Formats, SecureLink, DEFAULT_ACCEPT};
use super::super::{AkamaiMint, CarrierKind, Mint, Route};
use super::Problems;
use crate::ticket::edgeauth::{Algorithm, EdgeKey, Options};
use crate::ticket::secure_link::Expression;

fn secret(
    p: &mut Problems,
    key: &str,
    value: Option<String>,
    env: Option<String>,
) -> Option<String> {
    match (value, env) {
        (Some(v), None) => Some(v),
        (None, Some(var)) => std::env::var(&var).ok().or_else(|| {
            p.add(
                &format!("{key}_env"),
                &var,
                "environment variable is not set",
            );
            None
        }),
        _ => {
            p.add(key, "", format!("set exactly one of {key} or {key}_env"));
            None
        }
    }
}

/// The secret of the `[[token.keys]]` entry `key` (id `id`, reported at `at`): exactly one
/// of `secret`, `secret_env` and `secret_file` (relative to `base_dir`, one trailing line
/// end dropped; read again at every reload, so a key can be added without a restart).
pub(super) fn key_secret(
    p: &mut Problems,
    at: &str,
    id: &str,
    key: KeyFile,
    base_dir: &Path,
) -> Option<String> {
    match (key.secret, key.secret_env, key.secret_file) {
        (Some(secret), None, None) => Some(secret),
        (None, Some(var), None) => std::env::var(&var).ok().or_else(|| {
            p.add(
                &format!("{at}.secret_env"),
                &var,
                "environment variable is not set",
            );
            None
        }),
        (None, None, Some(file)) => match std::fs::read_to_string(base_dir.join(&file)) {
            Ok(secret) => Some(secret.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e) => {
                p.add(
                    &format!("{at}.secret_file"),
                    &file,
                    format!("cannot read: {e}"),
                );
                None
            }
        },
        _ => {
            p.add(
                at,
                id,
                "set exactly one of secret, secret_env or secret_file",
            );
            None
        }
    }
}

fn secure_link(p: &mut Problems, file: SecureLinkFile) -> Option<SecureLink> {
    let template = file
        .expression
        .unwrap_or_else(|| "$secure_link_expires$uri $secret".to_owned());
    if !template.contains("$uri")
        || !template.contains("$secure_link_expires")
        || !template.contains("$secret")
    {
        // Without `$secret` the MD5 has no key: anyone could make a link.
        p.add(
            "secure_link.expression",
            &template,
            "must use $uri, $secure_link_expires and $secret",
        );
    }
    let secret = secret(p, "secure_link.secret", file.secret, file.secret_env)?;
    let ttl = p.duration(
        "secure_link.ttl",
        file.ttl.as_deref(),
        "2h",
        Duration::from_secs(1),
    );
    Some(SecureLink {
        expression: Expression::new(&template, &secret),
        ttl,
    })
}

fn akamai(p: &mut Problems, file: AkamaiFile) -> Option<AkamaiMint> {
    let algorithm_text = file.algorithm.unwrap_or_else(|| "sha256".to_owned());
    let algorithm = Algorithm::parse(&algorithm_text).or_else(|| {
        p.add(
            "akamai.algorithm",
            &algorithm_text,
            "use sha256, sha1 or md5",
        );
        None
    });
    let algorithm = algorithm?;
    let transition = match (file.transition_key, file.transition_key_env) {
        (None, None) => None,
        (value, env) => {
            let hex = secret(p, "akamai.transition_key", value, env)?;
            p.take(
                "akamai.transition_key",
                "",
                EdgeKey::from_hex(&hex, algorithm),
            )
        }
    };
    let hex = secret(p, "akamai.key", file.key, file.key_env)?;
    let key = p.take("akamai.key", "", EdgeKey::from_hex(&hex, algorithm))?;
    Some(AkamaiMint {
        verify_keys: std::iter::once(key.clone()).chain(transition).collect(),
        key,
        options: Options {
            salt: file.salt,
            escape_early: file.escape_early.unwrap_or(false),
        },
        token_name: p.param_name(
            "akamai.token_name",
            file.token_name.as_deref().unwrap_or("__token__"),
        ),
        ttl: p.duration(
            "akamai.ttl",
            file.ttl.as_deref(),
            "2h",
            Duration::from_secs(1),
        ),
    })
}

/// The sections themselves, checked once for every route that names them.
pub(super) fn check_formats(
    p: &mut Problems,
    secure_link_file: Option<SecureLinkFile>,
    akamai_file: Option<AkamaiFile>,
    media_cdn_file: Option<MediaCdnFile>,
) -> Formats {
    Formats {
        secure_link: secure_link_file.and_then(|f| secure_link(p, f)),
        akamai: akamai_file.and_then(|f| akamai(p, f)),
        media_cdn: media_cdn_file.and_then(|f| super::media_cdn::check(p, f)),
    }
}

/// What `routes[n].mint` names, with its settings.
fn mint(p: &mut Problems, at: &str, name: &str, formats: &Formats) -> Option<Mint> {
    let key = format!("{at}.mint");
    let missing = |p: &mut Problems, section: &str| {
        p.add(&key, name, format!("needs the [{section}] section"));
        None
    };
    match name {
        "usher" => Some(Mint::Usher),
        "secure_link" => match &formats.secure_link {
            Some(s) => Some(Mint::SecureLink {
                expression: s.expression.clone(),
                ttl: s.ttl,
            }),
            None => missing(p, "secure_link"),
        },
        "akamai" => match &formats.akamai {
            Some(a) => Some(Mint::Akamai(Box::new(a.clone()))),
            None => missing(p, "akamai"),
        },
        "media_cdn" => match &formats.media_cdn {
            Some(m) if m.signer.is_some() => Some(Mint::MediaCdn {
                signer: m.signer.clone()?,
                settings: m.clone(),
            }),
            Some(_) => {
                p.add(
                    &key,
                    name,
                    "needs a [[media_cdn.keys]] entry that can sign (an HMAC secret or an ed25519 secret)",
                );
                None
            }
            None => missing(p, "media_cdn"),
        },
        other => {
            p.add(&key, other, "use usher, secure_link, akamai or media_cdn");
            None
        }
    }
}

/// What `routes[n].accept` lists: each a known format whose section is configured.
fn accept(
    p: &mut Problems,
    at: &str,
    names: Option<Vec<String>>,
    formats: &Formats,
) -> Vec<Format> {
    let Some(names) = names else {
        return DEFAULT_ACCEPT.to_vec();
    };
    let key = format!("{at}.accept");
    if names.is_empty() {
        p.add(
            &key,
            "",
            "must list at least one of usher, akamai, secure_link, media_cdn",
        );
    }
    let mut out = Vec::new();
    for name in names {
        let Some(format) = Format::parse(&name) else {
            p.add(&key, &name, "use usher, akamai, secure_link or media_cdn");
            continue;
        };
        let configured = match format {
            Format::Usher => true,
            Format::Akamai => formats.akamai.is_some(),
            Format::SecureLink => formats.secure_link.is_some(),
            Format::MediaCdn => formats.media_cdn.is_some(),
        };
        if !configured {
            p.add(&key, &name, format!("needs the [{name}] section"));
        } else if !out.contains(&format) {
            out.push(format);
        }
    }
    out
}

pub(super) fn check_routes(
    p: &mut Problems,
    routes: Vec<RouteFile>,
    formats: &Formats,
) -> Vec<Route> {
    let mut out = Vec::new();
    for (n, route) in routes.into_iter().enumerate() {
        let at = format!("routes[{n}]");
        let Some(prefix) = route.prefix else {
            p.add(&format!("{at}.prefix"), "", "required");
            continue;
        };
        let Some(prefix) = p.path_prefix(&format!("{at}.prefix"), &prefix) else {
            continue;
        };
        let mint = mint(p, &at, route.mint.as_deref().unwrap_or("usher"), formats);
        let accept = accept(p, &at, route.accept, formats);
        let carrier = match route.carrier.as_deref().unwrap_or("query") {
            "query" => Some(CarrierKind::Query),
            "path" => Some(CarrierKind::Path),
            "cookie" => Some(CarrierKind::Cookie),
            "variable" => Some(CarrierKind::Variable),
            other => {
                p.add(
                    &format!("{at}.carrier"),
                    other,
                    "use query, variable, path or cookie",
                );
                None
            }
        };
        if let (Some(mint), Some(carrier)) = (mint, carrier) {
            out.push(Route {
                prefix,
                mint,
                carrier,
                upstream: route.upstream,
                accept,
            });
        }
    }
    out
}
