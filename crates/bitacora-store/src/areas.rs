//! Address areas: a 256-bit summary of which networks a set of events came from.
//!
//! The faceted columns (action, category, severity, outcome, source) are summarized per block
//! and per log, and the client address per block and address, but nothing said which
//! addresses occur *with* which combination: `ip=10.1.0.0/16&severity=critical`, on a log
//! where that network never raised a critical event, read every event of the network (or of
//! the severity) to return nothing — 4-23 s at 10M events (BENCHMARKS.md). So each facet row
//! also keeps the [`Areas`] of its events: one bit per address *area* (the /16 of an IPv4
//! address, the /32 of an IPv6 one), hashed into 256 bits, OR-ed in as events are appended.
//! A search with an `ip=` filter drops every combination, and every block of a combination,
//! whose bits miss the areas its network touches.
//!
//! The bits are a filter, never an answer: a bit may be set by another area that hashes to
//! it, and a purge leaves the bits of the events it removed (bits cannot be subtracted), so
//! a set bit only says "maybe". A clear bit is a proof of absence, which is what the writer
//! must keep true and `verify` checks (stored ⊇ derived). This module is hand-written: it is
//! persisted, so its hash is part of the stored format and must never change.

/// One hashed bit per area of 256, as four 64-bit words (the stores keep them in four
/// integer columns, which SQL can OR without reading the row first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Areas(pub [u64; 4]);

/// Networks touching more areas than this are not summarized ([`Areas::ALL`]): a /8 is the
/// widest IPv4 network whose areas are enumerated.
const MAX_AREAS: u64 = 256;

/// `::ffff:0:0/96`, where IPv4 addresses live in the 16-byte form (`derive::ip_blob`).
const MAPPED_LO: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
const MAPPED_HI: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

fn is_mapped(ip: &[u8; 16]) -> bool {
    ip[..12] == MAPPED_LO[..12]
}

/// The area keys of an IPv4 /16 and an IPv6 /32 never collide: the IPv4 ones carry bit 32.
fn v4_area(ip: &[u8; 16]) -> u64 {
    1 << 32 | u64::from(u16::from_be_bytes([ip[12], ip[13]]))
}

fn v6_area(ip: &[u8; 16]) -> u64 {
    u64::from(u32::from_be_bytes([ip[0], ip[1], ip[2], ip[3]]))
}

/// The bit of an area: the top byte of a multiplicative (Fibonacci) hash. Persisted: never
/// change it (a test pins values).
fn bit_of(area: u64) -> u8 {
    (area.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

impl Areas {
    /// Every bit: the summary of a network too wide to enumerate, which admits everything.
    pub const ALL: Areas = Areas([u64::MAX; 4]);

    /// The area bit of one address (16-byte form).
    pub fn of(ip: &[u8; 16]) -> Areas {
        let mut a = Areas::default();
        a.insert(ip);
        a
    }

    pub fn insert(&mut self, ip: &[u8; 16]) {
        self.set(Areas::bit(ip));
    }

    /// The bit (0-255) of an address's area; the PostgreSQL store's `bitacora_area_bit` SQL
    /// function computes the same (a test there compares them).
    pub fn bit(ip: &[u8; 16]) -> u8 {
        bit_of(if is_mapped(ip) {
            v4_area(ip)
        } else {
            v6_area(ip)
        })
    }

    /// The areas with exactly `bit` set.
    pub fn with_bit(bit: u8) -> Areas {
        let mut a = Areas::default();
        a.set(bit);
        a
    }

    fn set(&mut self, bit: u8) {
        self.0[usize::from(bit >> 6)] |= 1 << (bit & 63);
    }

    /// The bits of every area the addresses `lo..=hi` (16-byte forms, as `derive::ip_range`
    /// gives a network's) touch: [`Areas::ALL`] past [`MAX_AREAS`] areas, or when the range
    /// straddles the boundary of the IPv4-mapped space.
    pub fn covering(lo: &[u8; 16], hi: &[u8; 16]) -> Areas {
        let keys = if is_mapped(lo) && is_mapped(hi) {
            v4_area(lo)..=v4_area(hi)
        } else if hi < &MAPPED_LO || lo > &MAPPED_HI {
            v6_area(lo)..=v6_area(hi)
        } else {
            return Areas::ALL;
        };
        if keys.end().saturating_sub(*keys.start()) >= MAX_AREAS {
            return Areas::ALL;
        }
        let mut a = Areas::default();
        for k in keys {
            a.set(bit_of(k));
        }
        a
    }

    /// The areas of an `ip=` network, or `None` when it is too wide to narrow anything.
    pub fn of_network(net: &ipnet::IpNet) -> Option<Areas> {
        let (lo, hi) = crate::derive::ip_range(net);
        Some(Areas::covering(&lo, &hi)).filter(|a| *a != Areas::ALL)
    }

    pub fn union(self, other: Areas) -> Areas {
        Areas(std::array::from_fn(|i| self.0[i] | other.0[i]))
    }

    /// True when the two share a bit: an event summarized by `self` may be in `other`.
    pub fn meets(&self, other: &Areas) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }

    /// True when every bit of `other` is set in `self`.
    pub fn contains(&self, other: &Areas) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & b == *b)
    }

    /// As the stores' four integer columns (SQL integers are signed).
    pub fn columns(&self) -> [i64; 4] {
        self.0.map(|w| w as i64)
    }

    pub fn from_columns(c: [i64; 4]) -> Areas {
        Areas(c.map(|w| w as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::{ip_blob, ip_range};

    fn ip(s: &str) -> [u8; 16] {
        ip_blob(s.parse().unwrap())
    }

    fn net(s: &str) -> Areas {
        let (lo, hi) = ip_range(&s.parse().unwrap());
        Areas::covering(&lo, &hi)
    }

    #[test]
    fn the_hash_is_the_stored_format() {
        // Changing these changes what every stored facet row means: a migration, not an edit.
        assert_eq!(bit_of(v4_area(&ip("10.1.2.3"))), 72);
        assert_eq!(bit_of(v6_area(&ip("2001:db8::1"))), 50);
        assert_eq!(Areas::of(&ip("10.1.2.3")), Areas::of(&ip("10.1.200.9")));
    }

    #[test]
    fn a_network_covers_the_areas_of_its_addresses() {
        for (network, inside, outside) in [
            ("10.1.0.0/16", "10.1.77.3", "10.2.0.1"),
            ("10.1.64.7/32", "10.1.64.7", "10.3.0.1"),
            ("10.0.0.0/8", "10.200.1.1", "25.0.0.1"),
            ("2001:db8::/32", "2001:db8:ffff::1", "2001:db9::1"),
            ("2001:db8:1::/48", "2001:db8:1::5", "2001:db7::1"),
        ] {
            let covered = net(network);
            assert!(covered.meets(&Areas::of(&ip(inside))), "{network} {inside}");
            assert!(covered.contains(&Areas::of(&ip(inside))), "{network} {inside}");
            // Another area may share a bit; these do not.
            assert!(!covered.meets(&Areas::of(&ip(outside))), "{network} {outside}");
        }
    }

    #[test]
    fn networks_too_wide_or_straddling_admit_everything() {
        assert_eq!(net("10.0.0.0/7"), Areas::ALL);
        assert_eq!(net("::/0"), Areas::ALL);
        assert_eq!(net("::/64"), Areas::ALL, "holds ::ffff:0:0/96 and more");
        assert_eq!(net("0.0.0.0/0"), Areas::ALL);
        assert_ne!(net("10.0.0.0/8"), Areas::ALL);
    }

    #[test]
    fn columns_round_trip_through_signed_integers() {
        let a = Areas::ALL.union(Areas::of(&ip("10.1.2.3")));
        assert_eq!(Areas::from_columns(a.columns()), a);
        assert_eq!(Areas::ALL.columns(), [-1; 4]);
    }
}
