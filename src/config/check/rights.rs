//! `[rights]` and `[rights.external]`, checked.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::super::file::{ExternalFile, RightsFile};
use super::super::{ExternalConfig, RightsConfig, RightsSource};
use super::Problems;
use crate::rights::model::DeviceClass;

/// The longest `rights.first_play_retry`: rentals play uncounted while writes wait.
const MAX_FIRST_PLAY_RETRY: Duration = Duration::from_secs(300);

pub(super) fn check(p: &mut Problems, file: RightsFile) -> RightsConfig {
    let source = match file.source.as_deref().unwrap_or("store") {
        "none" => RightsSource::None,
        "store" => RightsSource::Store,
        "external" => match file.external {
            Some(external) => check_external(p, external),
            None => {
                p.add(
                    "rights.external",
                    "",
                    "required when rights.source = \"external\"",
                );
                RightsSource::None
            }
        },
        other => {
            p.add(
                "rights.source",
                other,
                "use \"store\", \"external\" or \"none\"",
            );
            RightsSource::None
        }
    };
    let header_text = file
        .device_class_header
        .unwrap_or_else(|| "x-device-class".to_owned());
    let device_class_header = HeaderName::try_from(header_text.as_str()).unwrap_or_else(|_| {
        p.add(
            "rights.device_class_header",
            &header_text,
            "not a valid header name",
        );
        HeaderName::from_static("x-device-class")
    });
    let class_text = file
        .default_device_class
        .unwrap_or_else(|| "ott".to_owned());
    let default_device_class = DeviceClass::parse(&class_text).unwrap_or_else(|| {
        p.add(
            "rights.default_device_class",
            &class_text,
            "use ott, iptv or hybrid",
        );
        DeviceClass::Ott
    });
    let cache_capacity = file.cache_capacity.unwrap_or(100_000);
    if cache_capacity == 0 {
        p.add("rights.cache_capacity", "0", "must be at least 1");
    }
    let first_play_retry = p.duration(
        "rights.first_play_retry",
        file.first_play_retry.as_deref(),
        "5s",
        Duration::from_secs(1),
    );
    if first_play_retry > MAX_FIRST_PLAY_RETRY {
        p.add(
            "rights.first_play_retry",
            file.first_play_retry.as_deref().unwrap_or_default(),
            "must be at most 5m: rentals play with their hours not started while first \
             plays wait to be written (up to 8 times this)",
        );
    }
    RightsConfig {
        source,
        positive_ttl: p.duration(
            "rights.positive_ttl",
            file.positive_ttl.as_deref(),
            "30s",
            Duration::ZERO,
        ),
        negative_ttl: p.duration(
            "rights.negative_ttl",
            file.negative_ttl.as_deref(),
            "5s",
            Duration::ZERO,
        ),
        cache_capacity,
        grace: match super::super::duration::parse(file.grace.as_deref().unwrap_or("0s")) {
            Ok(grace) => grace,
            Err(why) => {
                p.0.push(format!("rights.grace = {why}"));
                Duration::ZERO
            }
        },
        first_play_retry,
        device_class_header,
        default_device_class,
    }
}

fn check_external(p: &mut Problems, file: ExternalFile) -> RightsSource {
    let url = file.url.unwrap_or_default();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        // Only where it points: a template's path and query may carry a key.
        p.add(
            "rights.external.url",
            super::webhooks::shown(&url),
            "an http:// or https:// URL template is required",
        );
    } else if url.split_once("://").is_some_and(|(_, rest)| {
        rest.split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .contains('@')
    }) {
        p.add(
            "rights.external.url",
            "",
            "a user or password in the URL is never sent: use headers_env for credentials",
        );
    }
    let method_text = file.method.unwrap_or_else(|| "GET".to_owned());
    let method = match method_text.to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        _ => {
            p.add("rights.external.method", &method_text, "use GET or POST");
            Method::GET
        }
    };
    let success_json = match (file.success_json_pointer, file.success_json_value) {
        (None, None) => None,
        (Some(pointer), Some(value)) => {
            if !pointer.starts_with('/') {
                p.add(
                    "rights.external.success_json_pointer",
                    &pointer,
                    "a JSON pointer starts with /",
                );
            }
            let value = serde_json::to_value(value).unwrap_or_default();
            Some((pointer, value))
        }
        _ => {
            p.add(
                "rights.external.success_json_pointer",
                "",
                "set both success_json_pointer and success_json_value, or neither",
            );
            None
        }
    };
    let grace = match super::super::duration::parse(file.grace.as_deref().unwrap_or("0s")) {
        Ok(d) => d,
        Err(why) => {
            p.0.push(format!("rights.external.grace = {why}"));
            Duration::ZERO
        }
    };
    let headers = check_headers(p, file.headers, file.headers_env);
    RightsSource::External(Box::new(ExternalConfig {
        url,
        method,
        body: file.body,
        content_type: file
            .content_type
            .unwrap_or_else(|| "application/x-www-form-urlencoded".to_owned()),
        timeout: p.duration(
            "rights.external.timeout",
            file.timeout.as_deref(),
            "2s",
            Duration::ZERO,
        ),
        success_status: file.success_status.unwrap_or_else(|| vec![200]),
        success_json,
        success_body_contains: file.success_body_contains,
        grace,
        headers,
    }))
}

/// `rights.external.headers` and `headers_env`: names and values checked, values from the
/// environment read now, every value marked sensitive so no `Debug` or log shows it.
fn check_headers(
    p: &mut Problems,
    plain: Option<BTreeMap<String, String>>,
    from_env: Option<BTreeMap<String, String>>,
) -> Vec<(HeaderName, HeaderValue)> {
    let plain = plain.unwrap_or_default();
    let from_env = from_env.unwrap_or_default();
    let mut headers = Vec::new();
    let entries = plain
        .iter()
        .map(|(name, value)| ("headers", name, Some(value.clone())))
        .chain(from_env.iter().map(|(name, var)| {
            let value = std::env::var(var).ok();
            ("headers_env", name, value)
        }));
    for (table, name, value) in entries {
        let key = format!("rights.external.{table}.{name}");
        let Ok(header) = HeaderName::try_from(name.as_str()) else {
            p.add(&key, "", "not a valid header name");
            continue;
        };
        if headers.iter().any(|(h, _)| *h == header) {
            p.add(&key, "", "set in both headers and headers_env; keep one");
            continue;
        }
        let Some(value) = value else {
            let var = from_env.get(name).map_or("", String::as_str);
            p.add(&key, var, "environment variable is not set");
            continue;
        };
        match HeaderValue::try_from(value) {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.push((header, value));
            }
            // The value may be a secret: never quote it.
            Err(_) => p.add(&key, "", "the value is not a valid header value"),
        }
    }
    headers
}

impl RightsConfig {
    /// Settings that are valid but do not do what they seem to (`usher check-config`
    /// prints them; start-up logs them).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let RightsSource::External(external) = &self.source {
            if !external.grace.is_zero() && external.grace <= self.positive_ttl {
                warnings.push(format!(
                    "rights.external.grace = {:?} is not longer than rights.positive_ttl = {:?}: \
                     a yes is cached for positive_ttl and the grace memory of it ends no later, \
                     so grace never applies; make grace longer than positive_ttl",
                    external.grace, self.positive_ttl
                ));
            }
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{from_str, Overrides};

    #[test]
    fn a_refused_external_url_does_not_repeat_its_password() {
        let config = r#"
listen.http = "127.0.0.1:0"
upstream.origin = "http://127.0.0.1:9"
[token]
signing_key = "k"
keys = [{ id = "k", secret = "0123456789abcdef0123456789abcdef" }]
[rights]
source = "external"
[rights.external]
url = "ftp://bot:hunter2@rights.example.com/{sub}"
"#;
        let bad = from_str(config, Path::new("."), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(bad.contains("rights.external.url"), "{bad}");
        assert!(
            !bad.contains("hunter2"),
            "the password is not repeated: {bad}"
        );
    }
}
