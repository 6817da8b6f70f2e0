//! `[[routes]]`, `[secure_link]` and `[akamai]`, checked.

use std::time::Duration;

use super::super::file::{AkamaiFile, RouteFile, SecureLinkFile};
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

fn secure_link(p: &mut Problems, file: SecureLinkFile) -> Option<Mint> {
    let template = file
        .expression
        .unwrap_or_else(|| "$secure_link_expires$uri $secret".to_owned());
    if !template.contains("$uri") || !template.contains("$secure_link_expires") {
        p.add(
            "secure_link.expression",
            &template,
            "must use $uri and $secure_link_expires",
        );
    }
    let secret = secret(p, "secure_link.secret", file.secret, file.secret_env)?;
    let ttl = p.duration(
        "secure_link.ttl",
        file.ttl.as_deref(),
        "2h",
        Duration::from_secs(1),
    );
    Some(Mint::SecureLink {
        expression: Expression::new(&template, &secret),
        ttl,
    })
}

fn akamai(p: &mut Problems, file: AkamaiFile) -> Option<Mint> {
    let algorithm_text = file.algorithm.unwrap_or_else(|| "sha256".to_owned());
    let algorithm = Algorithm::parse(&algorithm_text).or_else(|| {
        p.add(
            "akamai.algorithm",
            &algorithm_text,
            "use sha256, sha1 or md5",
        );
        None
    });
    let hex = secret(p, "akamai.key", file.key, file.key_env)?;
    let key = p.take("akamai.key", "", EdgeKey::from_hex(&hex, algorithm?))?;
    Some(Mint::Akamai(Box::new(AkamaiMint {
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
    })))
}

pub(super) fn check_routes(
    p: &mut Problems,
    routes: Vec<RouteFile>,
    secure_link_file: Option<SecureLinkFile>,
    akamai_file: Option<AkamaiFile>,
) -> Vec<Route> {
    let secure_link_mint = secure_link_file.map(|f| secure_link(p, f));
    let akamai_mint = akamai_file.map(|f| akamai(p, f));
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
        let mint = match route.mint.as_deref().unwrap_or("usher") {
            "usher" => Some(Mint::Usher),
            "secure_link" => match &secure_link_mint {
                Some(m) => m.clone(),
                None => {
                    p.add(
                        &format!("{at}.mint"),
                        "secure_link",
                        "needs a [secure_link] section",
                    );
                    None
                }
            },
            "akamai" => match &akamai_mint {
                Some(m) => m.clone(),
                None => {
                    p.add(&format!("{at}.mint"), "akamai", "needs an [akamai] section");
                    None
                }
            },
            other => {
                p.add(
                    &format!("{at}.mint"),
                    other,
                    "use usher, secure_link or akamai",
                );
                None
            }
        };
        let carrier = match route.carrier.as_deref().unwrap_or("query") {
            "query" => Some(CarrierKind::Query),
            "path" => Some(CarrierKind::Path),
            "cookie" => Some(CarrierKind::Cookie),
            other => {
                p.add(&format!("{at}.carrier"), other, "use query, path or cookie");
                None
            }
        };
        if let (Some(mint), Some(carrier)) = (mint, carrier) {
            out.push(Route {
                prefix,
                mint,
                carrier,
                upstream: route.upstream,
            });
        }
    }
    out
}
