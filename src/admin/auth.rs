//! Who is calling the admin API: named credentials compared in constant time, and a limit
//! on wrong ones per client address.
//!
//! A client (by socket address: the admin listener is meant for loopback and the
//! operator's network, not for proxies) that presents `admin.max_failed_auth_per_minute`
//! wrong credentials within a minute of its first failure is answered 429 with
//! `Retry-After` until that minute is over, **even with a correct credential**, so a
//! guesser learns nothing from the rest of the window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The window failures are counted in.
const WINDOW_SECS: u64 = 60;
/// Clients tracked at once before windows that are over are dropped.
const TRACKED: usize = 10_000;

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Missing or wrong (401).
    Unauthorized,
    /// Too many wrong ones from this client (429); try again in `retry_after` seconds.
    Limited {
        /// Seconds until the window is over.
        retry_after: u64,
    },
}

/// The admin credentials and the failure counts.
pub struct Guard {
    /// Name → token; the first is the main credential, named `admin`.
    credentials: Vec<(String, String)>,
    /// Failures allowed per client per window; 0 = no limit.
    limit: u32,
    /// Client → (start of its window, failures in it).
    failures: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl Guard {
    /// A guard over `credentials` (name, token), allowing `limit` failures per minute.
    pub fn new(credentials: Vec<(String, String)>, limit: u32) -> Self {
        Self {
            credentials,
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The name of the credential `given` is, or why not, for a call from `client` at `now`.
    ///
    /// # Errors
    /// [`Refused::Limited`] while `client` is over the limit (whatever it presents), else
    /// [`Refused::Unauthorized`] for a missing or wrong credential (counted).
    pub fn check(&self, client: IpAddr, given: Option<&str>, now: u64) -> Result<&str, Refused> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let window = failures
            .get(&client)
            .copied()
            .filter(|(start, _)| now < start + WINDOW_SECS);
        if let Some((start, count)) = window {
            if self.limit > 0 && count >= self.limit {
                return Err(Refused::Limited {
                    retry_after: (start + WINDOW_SECS - now).max(1),
                });
            }
        }
        // Every credential is compared, as digests of equal length, so the time taken says
        // nothing about which matched nor about a credential's length.
        let mut found = None;
        if let Some(given) = given {
            let given = Sha256::digest(given.as_bytes());
            for (name, token) in &self.credentials {
                let token = Sha256::digest(token.as_bytes());
                if bool::from(given.ct_eq(&token)) && found.is_none() {
                    found = Some(name.as_str());
                }
            }
        }
        if let Some(name) = found {
            return Ok(name);
        }
        if self.limit > 0 {
            if failures.len() >= TRACKED {
                failures.retain(|_, (start, _)| now < *start + WINDOW_SECS);
            }
            // Bounded: past TRACKED clients inside their minute, new ones are not tracked.
            if failures.len() < TRACKED || failures.contains_key(&client) {
                let (start, count) = window.unwrap_or((now, 0));
                failures.insert(client, (start, count + 1));
            }
        }
        Err(Refused::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(limit: u32) -> Guard {
        Guard::new(
            vec![
                ("admin".into(), "main-token-0123456789".into()),
                ("billing".into(), "billing-token-0123456789".into()),
            ],
            limit,
        )
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn each_credential_has_its_name() {
        let g = guard(3);
        assert_eq!(g.check(HOME, Some("main-token-0123456789"), 0), Ok("admin"));
        assert_eq!(
            g.check(HOME, Some("billing-token-0123456789"), 0),
            Ok("billing")
        );
        assert_eq!(g.check(HOME, None, 0), Err(Refused::Unauthorized));
    }

    #[test]
    fn a_client_over_the_limit_is_refused_until_its_minute_is_over() {
        let g = guard(2);
        let other: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(
                g.check(HOME, Some("guess"), 100),
                Err(Refused::Unauthorized)
            );
        }
        assert_eq!(
            g.check(HOME, Some("main-token-0123456789"), 130),
            Err(Refused::Limited { retry_after: 30 })
        );
        assert_eq!(
            g.check(other, Some("main-token-0123456789"), 130),
            Ok("admin")
        );
        assert_eq!(
            g.check(HOME, Some("main-token-0123456789"), 160),
            Ok("admin")
        );
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let g = guard(0);
        for _ in 0..50 {
            assert_eq!(g.check(HOME, Some("guess"), 0), Err(Refused::Unauthorized));
        }
        assert_eq!(g.check(HOME, Some("main-token-0123456789"), 0), Ok("admin"));
    }
}
