//! `[webhooks]` and `[[webhooks.endpoints]]`, checked.

use std::sync::Arc;
use std::time::Duration;

use super::super::file::{WebhookEndpointFile, WebhooksFile};
use super::super::webhooks::{Endpoint, EventKind, WebhooksConfig};
use super::Problems;
use crate::webhooks::{receiver, MAX_IN_FLIGHT};

pub(super) fn check(p: &mut Problems, file: WebhooksFile) -> WebhooksConfig {
    let defaults = WebhooksConfig::default();
    let allowed = file.allowed_hosts.unwrap_or_default();
    let endpoints = file
        .endpoints
        .into_iter()
        .enumerate()
        .filter_map(|(n, e)| endpoint(p, &format!("webhooks.endpoints[{n}]"), e, &allowed))
        .collect::<Vec<_>>();
    for (n, e) in endpoints.iter().enumerate() {
        if endpoints[..n].iter().any(|other| other.url == e.url) {
            p.add("webhooks.endpoints", shown(&e.url), "listed twice");
        }
    }
    let queue_limit = file.queue_limit.unwrap_or(defaults.queue_limit);
    if queue_limit == 0 {
        p.add("webhooks.queue_limit", "0", "must be at least 1");
    }
    let max_attempts = file.max_attempts.unwrap_or(defaults.max_attempts);
    if max_attempts == 0 {
        p.add("webhooks.max_attempts", "0", "must be at least 1");
    }
    let max_in_flight_per_endpoint = file
        .max_in_flight_per_endpoint
        .unwrap_or(defaults.max_in_flight_per_endpoint);
    if !(1..=MAX_IN_FLIGHT).contains(&max_in_flight_per_endpoint) {
        p.add(
            "webhooks.max_in_flight_per_endpoint",
            &max_in_flight_per_endpoint.to_string(),
            format!("must be between 1 and {MAX_IN_FLIGHT}, the deliveries in flight at once to all receivers"),
        );
    }
    WebhooksConfig {
        endpoints,
        queue_limit,
        timeout: p.duration(
            "webhooks.timeout",
            file.timeout.as_deref(),
            "5s",
            Duration::ZERO,
        ),
        retry_initial: p.duration(
            "webhooks.retry_initial",
            file.retry_initial.as_deref(),
            "1s",
            Duration::from_secs(1),
        ),
        retry_max: p.duration(
            "webhooks.retry_max",
            file.retry_max.as_deref(),
            "10m",
            Duration::from_secs(1),
        ),
        max_attempts,
        max_in_flight_per_endpoint,
    }
}

/// Loopback, by name or address.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A URL as config problems may name it: by scheme, host and port, and not at all when an
/// `@` may mean a user or password that cannot be told apart from them (one with a `/` in
/// it reads as `http://user:pass` with the rest in the path).
pub(super) fn shown(url: &str) -> &str {
    if url.contains('@') {
        ""
    } else {
        receiver(url)
    }
}

fn endpoint(
    p: &mut Problems,
    at: &str,
    file: WebhookEndpointFile,
    allowed: &[String],
) -> Option<Endpoint> {
    let url = file.url.unwrap_or_default();
    let key = format!("{at}.url");
    let shown = shown(&url);
    let uri = match url.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) => uri,
        _ => {
            p.add(&key, shown, "an http:// or https:// URL is required");
            return None;
        }
    };
    let authority = uri.authority().map_or("", |a| a.as_str());
    if authority.contains('@') {
        // Never sent (hyper drops it), and it would show in every log line that names the
        // receiver: credentials go in the signature's secret or the path.
        p.add(
            &key,
            "",
            "a user or password in the URL is never sent; remove it",
        );
        return None;
    }
    // An empty port (`host:`) is the scheme's own, as RFC 3986 has it.
    let port = authority
        .rsplit_once(':')
        .map(|(_, port)| port)
        .filter(|port| !port.ends_with(']') && !port.is_empty());
    if port.is_some() && uri.port_u16().is_none_or(|port| port == 0) {
        p.add(&key, shown, "the port must be a number (1-65535)");
        return None;
    }
    let host = uri.host().unwrap_or("");
    if !is_loopback(host) && !allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
        let named = if shown.is_empty() { "its host" } else { host };
        p.add(
            &key,
            shown,
            format!("{named} is neither loopback nor in webhooks.allowed_hosts"),
        );
    }
    let secret = match (file.secret, file.secret_env) {
        (Some(secret), None) => Some(secret),
        (None, Some(var)) => match std::env::var(&var) {
            Ok(secret) => Some(secret),
            Err(_) => {
                p.add(
                    &format!("{at}.secret_env"),
                    &var,
                    "environment variable is not set",
                );
                None
            }
        },
        _ => {
            p.add(at, shown, "set exactly one of secret or secret_env");
            None
        }
    };
    if secret.as_ref().is_some_and(|s| s.len() < 16) {
        p.add(&format!("{at}.secret"), "", "must be at least 16 bytes");
    }
    let events = match file.events {
        None => EventKind::ALL.to_vec(),
        Some(names) => names
            .iter()
            .filter_map(|name| {
                let kind = EventKind::parse(name);
                if kind.is_none() {
                    p.add(
                        &format!("{at}.events"),
                        name,
                        "use purchase, revoke, first_play, activation_refused or session_replaced",
                    );
                }
                kind
            })
            .collect(),
    };
    Some(Endpoint {
        url,
        secret: Arc::from(secret?.into_bytes()),
        events,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::webhooks::EventKind;
    use crate::config::{from_str, Overrides};

    const MINIMAL: &str = r#"
listen.http = "127.0.0.1:0"
upstream.origin = "http://127.0.0.1:9"
[token]
signing_key = "k"
keys = [{ id = "k", secret = "0123456789abcdef0123456789abcdef" }]
"#;

    fn parse(hooks: &str) -> Result<crate::config::Config, String> {
        from_str(
            &format!("{MINIMAL}{hooks}"),
            Path::new("."),
            &Overrides::default(),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn endpoints_are_loopback_or_allowed_with_a_secret_and_known_events() {
        let ok = parse(
            "[webhooks]\nallowed_hosts = [\"hooks.example.com\"]\n\
             [[webhooks.endpoints]]\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"0123456789abcdef\"\n\
             [[webhooks.endpoints]]\nurl = \"https://hooks.example.com/h\"\n\
             secret = \"0123456789abcdef\"\nevents = [\"revoke\"]\n",
        )
        .unwrap();
        let hooks = &ok.webhooks;
        assert_eq!(hooks.endpoints.len(), 2);
        assert_eq!(hooks.endpoints[0].events, EventKind::ALL.to_vec());
        assert_eq!(hooks.subscribed(EventKind::Purchase).count(), 1);
        assert!(
            !format!("{hooks:?}").contains("0123456789abcdef"),
            "secret hidden"
        );
        let bad = parse(
            "[webhooks]\nqueue_limit = 0\n[[webhooks.endpoints]]\nurl = \"http://10.0.0.1/h\"\n\
             secret = \"short\"\nevents = [\"purchased\"]\n",
        )
        .unwrap_err();
        for expected in [
            "webhooks.endpoints[0].url = \"http://10.0.0.1\": 10.0.0.1 is neither loopback",
            "webhooks.endpoints[0].secret: must be at least 16 bytes",
            "webhooks.endpoints[0].events = \"purchased\"",
            "webhooks.queue_limit = \"0\"",
        ] {
            assert!(bad.contains(expected), "{expected} in {bad}");
        }
        assert!(
            !bad.contains("/h"),
            "no path, where receivers keep secrets: {bad}"
        );
    }

    #[test]
    fn a_user_or_password_in_a_url_is_refused() {
        let bad = parse(
            "[[webhooks.endpoints]]\nurl = \"http://bot:hunter2@127.0.0.1:9/h\"\n\
             secret = \"0123456789abcdef\"\n",
        )
        .unwrap_err();
        assert!(
            bad.contains("a user or password in the URL is never sent"),
            "{bad}"
        );
        assert!(
            !bad.contains("hunter2"),
            "the password is not repeated: {bad}"
        );
        // Nor when the URL is refused for another reason first (a password with a `/`
        // reads as the port of `http://bot:hun`).
        for url in [
            "ftp://bot:hunter2@127.0.0.1:9/h",
            "http://bot:hunter2@127.0.0.1:9/h h",
            "http://bot:hun/ter2@127.0.0.1:9/h",
        ] {
            let bad = parse(&format!(
                "[[webhooks.endpoints]]\nurl = \"{url}\"\nsecret = \"0123456789abcdef\"\n"
            ))
            .unwrap_err();
            assert!(bad.contains("webhooks.endpoints[0].url"), "refused: {bad}");
            assert!(!bad.contains("hun"), "the password is not repeated: {bad}");
        }
    }

    #[test]
    fn a_receiver_listed_twice_is_named_without_its_path() {
        let endpoint = "[[webhooks.endpoints]]\nurl = \"http://127.0.0.1:9/hook/s3cr3t\"\n\
                        secret = \"0123456789abcdef\"\n";
        let bad = parse(&format!("{endpoint}{endpoint}")).unwrap_err();
        assert!(
            bad.contains("webhooks.endpoints = \"http://127.0.0.1:9\": listed twice"),
            "{bad}"
        );
        assert!(!bad.contains("s3cr3t"), "the path is not repeated: {bad}");
        // Not named at all where an `@` may end a user and password (`bot:8080` parses as
        // a host and port).
        let endpoint = "[[webhooks.endpoints]]\nurl = \"http://bot:8080/x@127.0.0.1/h\"\n\
                        secret = \"0123456789abcdef\"\n";
        let bad = parse(&format!(
            "[webhooks]\nallowed_hosts = [\"bot\"]\n{endpoint}{endpoint}"
        ))
        .unwrap_err();
        assert!(bad.contains("listed twice"), "{bad}");
        assert!(!bad.contains("bot:8080"), "not named: {bad}");
    }

    #[test]
    fn a_port_is_a_number_from_1_an_empty_one_the_schemes() {
        let with = |url: &str| {
            parse(&format!(
                "[[webhooks.endpoints]]\nurl = \"{url}\"\nsecret = \"0123456789abcdef\"\n"
            ))
        };
        for good in [
            "http://127.0.0.1:/hook",
            "http://[::1]/hook",
            "http://[::1]:8080/hook",
            "http://[::1]:/hook",
        ] {
            assert!(with(good).is_ok(), "{good}: {:?}", with(good).err());
        }
        for bad in [
            "http://127.0.0.1:0/hook",
            "http://127.0.0.1:99999/hook",
            "http://127.0.0.1:x/h",
        ] {
            let error = with(bad).unwrap_err();
            assert!(
                error.contains("the port must be a number (1-65535)"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn deliveries_in_flight_per_endpoint_are_bounded() {
        let config = parse("").unwrap().webhooks;
        assert_eq!(config.max_in_flight_per_endpoint, 8, "the default");
        let config = parse("[webhooks]\nmax_in_flight_per_endpoint = 32\n")
            .unwrap()
            .webhooks;
        assert_eq!(config.max_in_flight_per_endpoint, 32);
        for bad in [0, 33] {
            let error =
                parse(&format!("[webhooks]\nmax_in_flight_per_endpoint = {bad}\n")).unwrap_err();
            let expected = format!(
                "webhooks.max_in_flight_per_endpoint = \"{bad}\": must be between 1 and 32"
            );
            assert!(error.contains(&expected), "{expected} in {error}");
        }
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let config = parse("[webhooks]\nretry_initial = \"2s\"\nretry_max = \"30s\"\n")
            .unwrap()
            .webhooks;
        let waits: Vec<u64> = (1..=6).map(|n| config.backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 30, 30]);
    }
}
