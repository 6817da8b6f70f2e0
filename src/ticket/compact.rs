//! The packed claims of session token format v2 (`s2.<kid>.<claims>.<mac>`): the same
//! [`Claims`] as v1's JSON, written as bytes, because a session token is repeated on every
//! URI of a rewritten playlist and its length multiplies by the playlist's.
//!
//! ```text
//! flags        one byte: bit 0 nbf, 1 dev, 2 ip, 3 sid, 4 allow, 5–6 device class
//!              (0 none, 1 ott, 2 iptv, 3 hybrid), 7 cap unbounded (u64::MAX)
//! exp          time
//! cap          time, unless flag 7
//! nbf          time, if flag 0
//! sub, scope   string
//! dev          string, if flag 1
//! sid          string, if flag 3
//! ip           if flag 2: family (4 or 6), prefix length, then 4 or 16 address bytes
//! allow        if flag 4: count, then that many strings
//! ```
//!
//! Integers are LEB128 varints. A time is the zigzag of its distance from 2026-01-01, so
//! the instants a session token names take four bytes. A string is a varint of its length
//! shifted left by one, the low bit set when the string is lowercase hex of even length
//! (session ids, device hashes): then its bytes are the decoded hex, half the length.
//! Nothing may follow the last field. Claims that do not fit (a time beyond `i64`) are not
//! packed: [`encode`] says so and the caller signs them as v1 JSON.

use std::net::IpAddr;

use super::Claims;
use crate::net::IpPrefix;
use crate::rights::model::DeviceClass;

/// The instant times are counted from: 2026-01-01T00:00:00Z.
const EPOCH: i128 = 1_767_225_600;

const NBF: u8 = 1;
const DEV: u8 = 1 << 1;
const IP: u8 = 1 << 2;
const SID: u8 = 1 << 3;
const ALLOW: u8 = 1 << 4;
const CLASS_SHIFT: u8 = 5;
const CLASS_MASK: u8 = 0b11 << CLASS_SHIFT;
const UNBOUNDED_CAP: u8 = 1 << 7;

/// Packs `claims`, or `None` when a time lies too far from the epoch to be packed.
pub fn encode(claims: &Claims) -> Option<Vec<u8>> {
    let mut flags = 0;
    let mut set = |bit: u8, on: bool| {
        if on {
            flags |= bit;
        }
    };
    set(NBF, claims.nbf != 0);
    set(DEV, claims.dev.is_some());
    set(IP, claims.ip.is_some());
    set(SID, claims.sid.is_some());
    set(ALLOW, !claims.allow.is_empty());
    set(UNBOUNDED_CAP, claims.cap == u64::MAX);
    flags |= class_code(claims.cls) << CLASS_SHIFT;

    let mut out = Vec::with_capacity(48);
    out.push(flags);
    put_time(&mut out, claims.exp)?;
    if claims.cap != u64::MAX {
        put_time(&mut out, claims.cap)?;
    }
    if claims.nbf != 0 {
        put_time(&mut out, claims.nbf)?;
    }
    put_str(&mut out, &claims.sub);
    put_str(&mut out, &claims.scope);
    if let Some(dev) = &claims.dev {
        put_str(&mut out, dev);
    }
    if let Some(sid) = &claims.sid {
        put_str(&mut out, sid);
    }
    if let Some(prefix) = &claims.ip {
        match prefix.addr() {
            IpAddr::V4(v4) => {
                out.extend_from_slice(&[4, prefix.bits()]);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.extend_from_slice(&[6, prefix.bits()]);
                out.extend_from_slice(&v6.octets());
            }
        }
    }
    if !claims.allow.is_empty() {
        put_varint(&mut out, claims.allow.len() as u64);
        for path in &claims.allow {
            put_str(&mut out, path);
        }
    }
    Some(out)
}

/// Unpacks claims written by [`encode`]; `None` for anything else (a field cut short,
/// bytes left over, text that is not UTF-8).
pub fn decode(bytes: &[u8]) -> Option<Claims> {
    let mut r = Reader { bytes };
    let flags = r.byte()?;
    let exp = r.time()?;
    let cap = if flags & UNBOUNDED_CAP != 0 {
        u64::MAX
    } else {
        r.time()?
    };
    let nbf = if flags & NBF != 0 { r.time()? } else { 0 };
    let sub = r.string()?;
    let scope = r.string()?;
    let dev = if flags & DEV != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let sid = if flags & SID != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let ip = if flags & IP != 0 {
        Some(r.prefix()?)
    } else {
        None
    };
    let mut allow = Vec::new();
    if flags & ALLOW != 0 {
        let count = r.varint()?;
        if count == 0 || count > r.bytes.len() as u64 {
            return None;
        }
        for _ in 0..count {
            allow.push(r.string()?);
        }
    }
    if !r.bytes.is_empty() {
        return None;
    }
    Some(Claims {
        sub,
        scope,
        nbf,
        exp,
        dev,
        ip,
        sid,
        cap,
        allow,
        cls: class_of((flags & CLASS_MASK) >> CLASS_SHIFT),
    })
}

fn class_code(class: Option<DeviceClass>) -> u8 {
    match class {
        None => 0,
        Some(DeviceClass::Ott) => 1,
        Some(DeviceClass::Iptv) => 2,
        Some(DeviceClass::Hybrid) => 3,
    }
}

fn class_of(code: u8) -> Option<DeviceClass> {
    match code {
        1 => Some(DeviceClass::Ott),
        2 => Some(DeviceClass::Iptv),
        3 => Some(DeviceClass::Hybrid),
        _ => None,
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_time(out: &mut Vec<u8>, time: u64) -> Option<()> {
    let delta = i64::try_from(i128::from(time) - EPOCH).ok()?;
    put_varint(out, ((delta << 1) ^ (delta >> 63)) as u64);
    Some(())
}

fn is_packable_hex(text: &str) -> bool {
    !text.is_empty()
        && text.len() % 2 == 0
        && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    if is_packable_hex(text) {
        put_varint(out, ((text.len() / 2) as u64) << 1 | 1);
        out.extend(
            text.as_bytes()
                .chunks(2)
                .map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1])),
        );
    } else {
        put_varint(out, (text.len() as u64) << 1);
        out.extend_from_slice(text.as_bytes());
    }
}

fn nibble(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        _ => digit - b'a' + 10,
    }
}

/// Reads fields off the front of the packed bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn time(&mut self) -> Option<u64> {
        let zigzag = self.varint()?;
        let delta = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        u64::try_from(i128::from(delta) + EPOCH).ok()
    }

    fn string(&mut self) -> Option<String> {
        let head = self.varint()?;
        let len = usize::try_from(head >> 1).ok()?;
        let bytes = self.take(len)?;
        if head & 1 == 1 {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let text: String = bytes
                .iter()
                .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
                .map(char::from)
                .collect();
            // Only what `put_str` would have packed: one way to write each string.
            is_packable_hex(&text).then_some(text)
        } else {
            let text = std::str::from_utf8(bytes).ok()?;
            (!is_packable_hex(text)).then(|| text.to_owned())
        }
    }

    fn prefix(&mut self) -> Option<IpPrefix> {
        let family = self.byte()?;
        let bits = self.byte()?;
        let addr = match family {
            4 => IpAddr::from(<[u8; 4]>::try_from(self.take(4)?).ok()?),
            6 => IpAddr::from(<[u8; 16]>::try_from(self.take(16)?).ok()?),
            _ => return None,
        };
        IpPrefix::new(addr, bits).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Claims {
        Claims {
            sub: "buyer-17".into(),
            scope: "/events/final/".into(),
            nbf: 0,
            exp: 1_800_000_600,
            dev: Some("0123456789abcdef0123456789abcdef".into()),
            ip: Some("203.0.113.0/24".parse().unwrap()),
            sid: Some("89abcdef01234567".into()),
            cap: 1_802_000_000,
            allow: Vec::new(),
            cls: Some(DeviceClass::Iptv),
        }
    }

    #[test]
    fn every_claim_survives_packing() {
        let mut preview = session();
        preview.allow = vec!["/a/1.ts".into(), "/a/2.ts".into()];
        preview.nbf = 1_700_000_000;
        preview.cap = u64::MAX;
        preview.cls = None;
        preview.ip = Some("2001:db8::1/48".parse().unwrap());
        let mut bare = session();
        (bare.dev, bare.ip, bare.sid, bare.cap, bare.exp) = (None, None, None, 0, 5);
        bare.sub = String::new();
        for claims in [session(), preview, bare] {
            let packed = encode(&claims).unwrap();
            assert_eq!(decode(&packed), Some(claims));
        }
    }

    #[test]
    fn hex_ids_and_times_are_packed_small() {
        let packed = encode(&session()).unwrap();
        // flags 1, exp 4, cap 4, sub 9, scope 15, dev 17, sid 9, ip 6.
        assert_eq!(packed.len(), 65);
        let json = serde_json::to_vec(&session()).unwrap();
        assert!(json.len() > 2 * packed.len(), "{} JSON bytes", json.len());
    }

    #[test]
    fn cut_extended_or_garbled_bytes_are_refused() {
        let packed = encode(&session()).unwrap();
        for end in 0..packed.len() {
            assert_eq!(decode(&packed[..end]), None, "cut at {end}");
        }
        let mut longer = packed.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        let mut bad_family = packed.clone();
        let at = packed.len() - 6;
        bad_family[at] = 5;
        assert_eq!(decode(&bad_family), None);
        // A runaway varint.
        assert_eq!(
            decode(&[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            None
        );
    }

    #[test]
    fn a_time_too_far_out_is_not_packed() {
        let mut claims = session();
        claims.exp = u64::MAX - 1;
        assert_eq!(encode(&claims), None);
    }
}
