//! IP prefixes for binding credentials to a client address.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address with a prefix length, `203.0.113.0/24` or `2001:db8::/48`; a bare address is
/// a full-length prefix. IPv4-mapped IPv6 clients match IPv4 prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// The prefix of `len` bits that contains `addr`.
    ///
    /// # Errors
    /// When `len` is longer than the address family allows.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("prefix length {len} is longer than {max}"));
        }
        Ok(Self { addr, len })
    }

    /// The address as written (not masked to the prefix).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn bits(&self) -> u8 {
        self.len
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.len, 32)
                    == masked(u32::from(ip).into(), self.len, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.len, 128) == masked(u128::from(ip), self.len, 128)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, len: u8, width: u32) -> u128 {
    if len == 0 {
        0
    } else {
        bits >> (width - u32::from(len))
    }
}

impl FromStr for IpPrefix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{text}\" is not an IP address or prefix"))?;
        let len = match len {
            Some(len) => len
                .parse()
                .map_err(|_| format!("\"{text}\": prefix length must be a number"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, len)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_prefix_contains_its_addresses_only() {
        let net: IpPrefix = "203.0.113.0/24".parse().unwrap();
        assert!(net.contains(ip("203.0.113.77")));
        assert!(!net.contains(ip("203.0.114.1")));
        assert!(net.contains(ip("::ffff:203.0.113.9")));
        assert!(!net.contains(ip("2001:db8::1")));
    }

    #[test]
    fn bare_address_is_exact_and_zero_length_is_everything() {
        let one: IpPrefix = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let all: IpPrefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
    }

    #[test]
    fn v6_prefix() {
        let net: IpPrefix = "2001:db8:1::/48".parse().unwrap();
        assert!(net.contains(ip("2001:db8:1:ffff::1")));
        assert!(!net.contains(ip("2001:db8:2::1")));
        assert_eq!(net.to_string(), "2001:db8:1::/48");
    }

    #[test]
    fn rejects_bad_prefixes() {
        assert!("10.0.0.0/33".parse::<IpPrefix>().is_err());
        assert!("10.0.0/8".parse::<IpPrefix>().is_err());
        assert!("10.0.0.0/x".parse::<IpPrefix>().is_err());
    }
}
