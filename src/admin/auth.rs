//! Who is calling the admin API: named credentials compared in constant time, and a limit
//! on wrong ones per client address.
//!
//! A client (by socket address: the admin listener is meant for loopback and the
//! operator's network, not for proxies) that presents `admin.max_failed_auth_per_minute`
//! wrong credentials within a minute of its first failure is answered 429 with
//! `Retry-After` until that minute is over, **even with a correct credential**, so a
//! guesser learns nothing from the rest of the window. A call with no credential is
//! refused but not counted. Clients count per host: every loopback address is one, an IPv6
//! client counts by its /64, and when 10,000 clients are inside their minute the rest
//! share one count.

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
    /// [`Refused::Unauthorized`] for a missing (not counted) or wrong (counted) credential.
    pub fn check(&self, client: IpAddr, given: Option<&str>, now: u64) -> Result<&str, Refused> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut client = counted_as(client);
        if failures.len() >= TRACKED && !failures.contains_key(&client) {
            failures.retain(|_, (start, _)| now < *start + WINDOW_SECS);
            if failures.len() >= TRACKED {
                // Full of clients inside their minute: the ones not tracked share one count,
                // so many addresses buy a guesser no more tries than one.
                client = OVERFLOW;
            }
        }
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
        let given = given.filter(|g| !g.is_empty());
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
        // A call without a credential guesses nothing (a probe, a browser, a typo in a
        // script): it is refused but not counted, so it cannot lock the operator out.
        if self.limit > 0 && given.is_some() {
            let (start, count) = window.unwrap_or((now, 0));
            failures.insert(client, (start, count + 1));
        }
        Err(Refused::Unauthorized)
    }
}

/// Where the count of failures shared by clients not tracked is kept (an address no client
/// has).
const OVERFLOW: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

/// The address a client's failures count under: one per host, so a host with many
/// addresses gets no more tries than one. Every loopback address is this host; an IPv6
/// client counts by its /64 (what one subscriber or machine is usually given), an IPv4 one
/// written as IPv6 as the IPv4 address.
fn counted_as(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => counted_as(IpAddr::V4(v4)),
            None if v6.is_loopback() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
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

    #[test]
    fn a_call_without_a_credential_does_not_lock_the_operator_out() {
        let g = guard(2);
        for _ in 0..20 {
            assert_eq!(g.check(HOME, None, 100), Err(Refused::Unauthorized));
            assert_eq!(g.check(HOME, Some(""), 100), Err(Refused::Unauthorized));
        }
        assert_eq!(
            g.check(HOME, Some("main-token-0123456789"), 100),
            Ok("admin")
        );
    }

    #[test]
    fn the_addresses_of_one_host_share_one_count() {
        let g = guard(2);
        let other_loopback: IpAddr = "127.0.0.2".parse().unwrap();
        let v6_loopback: IpAddr = "::1".parse().unwrap();
        assert_eq!(
            g.check(other_loopback, Some("guess"), 100),
            Err(Refused::Unauthorized)
        );
        assert_eq!(
            g.check(v6_loopback, Some("guess"), 100),
            Err(Refused::Unauthorized)
        );
        assert!(matches!(
            g.check(HOME, Some("guess"), 100),
            Err(Refused::Limited { .. })
        ));
        let a: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::10".parse().unwrap();
        assert_eq!(g.check(a, Some("guess"), 100), Err(Refused::Unauthorized));
        assert_eq!(g.check(b, Some("guess"), 100), Err(Refused::Unauthorized));
        assert!(matches!(
            g.check(a, Some("guess"), 100),
            Err(Refused::Limited { .. })
        ));
        assert_eq!(
            g.check(elsewhere, Some("guess"), 100),
            Err(Refused::Unauthorized)
        );
    }

    #[test]
    fn clients_past_the_tracked_number_share_one_count() {
        let g = guard(2);
        for n in 0..TRACKED as u32 {
            let client = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            assert_eq!(
                g.check(client, Some("guess"), 100),
                Err(Refused::Unauthorized)
            );
        }
        let late = |n: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + n));
        assert_eq!(
            g.check(late(1), Some("guess"), 100),
            Err(Refused::Unauthorized)
        );
        assert_eq!(
            g.check(late(2), Some("guess"), 100),
            Err(Refused::Unauthorized)
        );
        assert!(matches!(
            g.check(late(3), Some("guess"), 100),
            Err(Refused::Limited { .. })
        ));
        // Once the minute is over, the table makes room again.
        assert_eq!(
            g.check(late(4), Some("guess"), 200),
            Err(Refused::Unauthorized)
        );
    }
}
