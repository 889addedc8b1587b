//! Sketches: which client addresses and which actors a set of events came from, in 256 bits.
//!
//! The faceted columns (action, category, severity, outcome, source) are summarized per block
//! and per log, but nothing said which addresses or actors occur *with* which combination:
//! `ip=10.1.0.0/16&severity=critical`, on a log where that network never raised a critical
//! event, read every event of the network (or of the severity) to return nothing — 4-23 s at
//! 10M events (BENCHMARKS.md) — and `actor_id=42&action=user.role_change`, where that actor
//! never changed a role, read the actor's 50,000 events (170-340 ms). So each facet row also
//! keeps two [`Sketch`]es of its events, OR-ed in as they are appended:
//! - the **address areas** ([`areas`]): one bit per area (the /16 of an IPv4 address, the /32
//!   of an IPv6 one), hashed, so a network is a handful of bits;
//! - the **actors** ([`actors`]): one bit per actor id, hashed.
//!
//! A search with `ip=` or `actor_id=` drops every combination, and every block of a
//! combination, whose bits miss the filter's. The bits are a filter, never an answer: a bit
//! may be set by another key that hashes to it, and a purge leaves the bits of the events it
//! removed (bits cannot be subtracted), so a set bit only says "maybe". A clear bit is a proof
//! of absence, which is what the writer must keep true and `verify` checks (stored ⊇
//! derived). Hand-written: the hashes are part of the stored format and must never change
//! (tests pin them; the PostgreSQL store computes the same in SQL, and a test compares them).

use sha2::{Digest, Sha256};

/// 256 bits, as four 64-bit words (the stores keep them in four integer columns, which SQL can
/// OR without reading the row first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sketch(pub [u64; 4]);

impl Sketch {
    /// Every bit: what a key too wide to enumerate admits (everything).
    pub const ALL: Sketch = Sketch([u64::MAX; 4]);

    /// The sketch with only `bit` set.
    pub fn with_bit(bit: u8) -> Sketch {
        let mut s = Sketch::default();
        s.set(bit);
        s
    }

    pub fn set(&mut self, bit: u8) {
        self.0[usize::from(bit >> 6)] |= 1 << (bit & 63);
    }

    pub fn union(self, other: Sketch) -> Sketch {
        Sketch(std::array::from_fn(|i| self.0[i] | other.0[i]))
    }

    /// True when the two share a bit: an event summarized by `self` may be one of `other`'s.
    pub fn meets(&self, other: &Sketch) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }

    /// True when every bit of `other` is set in `self`.
    pub fn contains(&self, other: &Sketch) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & b == *b)
    }

    /// As the stores' four integer columns (SQL integers are signed).
    pub fn columns(&self) -> [i64; 4] {
        self.0.map(|w| w as i64)
    }

    pub fn from_columns(c: [i64; 4]) -> Sketch {
        Sketch(c.map(|w| w as u64))
    }
}

/// What a search asks of the sketches: the bits its `ip=` and `actor_id=` may have set, when
/// it has such a filter narrow enough to summarize.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    pub areas: Option<Sketch>,
    pub actors: Option<Sketch>,
}

impl Wanted {
    pub fn new(ip: Option<&ipnet::IpNet>, actor_id: Option<&str>) -> Wanted {
        Wanted {
            areas: ip.and_then(areas::of_network),
            actors: actor_id.map(actors::of),
        }
    }

    pub fn is_none(&self) -> bool {
        self.areas.is_none() && self.actors.is_none()
    }

    /// Whether a row with these sketches may hold an event the search wants.
    pub fn admits(&self, areas: &Sketch, actors: &Sketch) -> bool {
        self.areas.is_none_or(|w| w.meets(areas)) && self.actors.is_none_or(|w| w.meets(actors))
    }
}

/// The sketch columns of a facet row in both stores, in [`Sketches::columns`]'s order.
pub const COLUMNS: &str =
    "areas_0, areas_1, areas_2, areas_3, actors_0, actors_1, actors_2, actors_3";

/// A facet row's sketches: the areas of its events' addresses and their actor ids.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sketches {
    pub areas: Sketch,
    pub actors: Sketch,
}

/// The bits of an event's address area and actor id (16-byte address form), hashed once for
/// every row they go to.
pub fn bits(ip: Option<&[u8; 16]>, actor_id: Option<&str>) -> (Option<u8>, Option<u8>) {
    (ip.map(areas::bit), actor_id.map(actors::bit))
}

impl Sketches {
    /// Sets an event's bits, as [`bits`] gives them.
    pub fn set(&mut self, (area, actor): (Option<u8>, Option<u8>)) {
        if let Some(b) = area {
            self.areas.set(b);
        }
        if let Some(b) = actor {
            self.actors.set(b);
        }
    }

    /// True when every bit of `other` is set in `self` (what `verify` asks of a stored row).
    pub fn contains(&self, other: &Sketches) -> bool {
        self.areas.contains(&other.areas) && self.actors.contains(&other.actors)
    }

    pub fn admitted_by(&self, wanted: &Wanted) -> bool {
        wanted.admits(&self.areas, &self.actors)
    }

    /// The eight integer columns of [`COLUMNS`].
    pub fn columns(&self) -> [i64; 8] {
        let (a, b) = (self.areas.columns(), self.actors.columns());
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
    }

    pub fn from_columns(c: [i64; 8]) -> Sketches {
        Sketches {
            areas: Sketch::from_columns([c[0], c[1], c[2], c[3]]),
            actors: Sketch::from_columns([c[4], c[5], c[6], c[7]]),
        }
    }
}

/// Client addresses, by area.
pub mod areas {
    use super::Sketch;

    /// Networks touching more areas than this are not summarized: a /8 is the widest IPv4
    /// network whose areas are enumerated.
    const MAX_AREAS: u64 = 256;

    /// `::ffff:0:0/96`, where IPv4 addresses live in the 16-byte form (`derive::ip_blob`).
    const MAPPED_LO: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
    const MAPPED_HI: [u8; 16] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];

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

    /// The bit of an area: the top byte of a multiplicative (Fibonacci) hash.
    fn bit_of(area: u64) -> u8 {
        (area.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
    }

    /// The bit (0-255) of an address's area; the PostgreSQL store's `bitacora_area_bit` SQL
    /// function computes the same.
    pub fn bit(ip: &[u8; 16]) -> u8 {
        bit_of(if is_mapped(ip) {
            v4_area(ip)
        } else {
            v6_area(ip)
        })
    }

    pub fn of(ip: &[u8; 16]) -> Sketch {
        Sketch::with_bit(bit(ip))
    }

    /// The bits of every area the addresses `lo..=hi` (16-byte forms, as `derive::ip_range`
    /// gives a network's) touch: [`Sketch::ALL`] past [`MAX_AREAS`] areas, or when the range
    /// straddles the boundary of the IPv4-mapped space.
    pub fn covering(lo: &[u8; 16], hi: &[u8; 16]) -> Sketch {
        let keys = if is_mapped(lo) && is_mapped(hi) {
            v4_area(lo)..=v4_area(hi)
        } else if hi < &MAPPED_LO || lo > &MAPPED_HI {
            v6_area(lo)..=v6_area(hi)
        } else {
            return Sketch::ALL;
        };
        if keys.end().saturating_sub(*keys.start()) >= MAX_AREAS {
            return Sketch::ALL;
        }
        let mut s = Sketch::default();
        for k in keys {
            s.set(bit_of(k));
        }
        s
    }

    /// The areas of an `ip=` network, or `None` when it is too wide to narrow anything.
    pub fn of_network(net: &ipnet::IpNet) -> Option<Sketch> {
        let (lo, hi) = crate::derive::ip_range(net);
        Some(covering(&lo, &hi)).filter(|s| *s != Sketch::ALL)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::derive::{ip_blob, ip_range};

        fn ip(s: &str) -> [u8; 16] {
            ip_blob(s.parse().unwrap())
        }

        fn net(s: &str) -> Sketch {
            let (lo, hi) = ip_range(&s.parse().unwrap());
            covering(&lo, &hi)
        }

        #[test]
        fn the_hash_is_the_stored_format() {
            // Changing these changes what every stored facet row means: a migration, not an
            // edit.
            assert_eq!(bit(&ip("10.1.2.3")), 72);
            assert_eq!(bit(&ip("2001:db8::1")), 50);
            assert_eq!(of(&ip("10.1.2.3")), of(&ip("10.1.200.9")));
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
                assert!(covered.contains(&of(&ip(inside))), "{network} {inside}");
                // Another area may share a bit; these do not.
                assert!(!covered.meets(&of(&ip(outside))), "{network} {outside}");
            }
        }

        #[test]
        fn networks_too_wide_or_straddling_admit_everything() {
            assert_eq!(net("10.0.0.0/7"), Sketch::ALL);
            assert_eq!(net("::/0"), Sketch::ALL);
            assert_eq!(net("::/64"), Sketch::ALL, "holds ::ffff:0:0/96 and more");
            assert_eq!(net("0.0.0.0/0"), Sketch::ALL);
            assert_ne!(net("10.0.0.0/8"), Sketch::ALL);
        }
    }
}

/// Actor ids.
pub mod actors {
    use super::{Digest, Sha256, Sketch};

    /// The bit (0-255) of an actor id: the first byte of its SHA-256. The PostgreSQL store's
    /// `bitacora_actor_bit` SQL function computes the same.
    pub fn bit(actor_id: &str) -> u8 {
        Sha256::digest(actor_id.as_bytes())[0]
    }

    pub fn of(actor_id: &str) -> Sketch {
        Sketch::with_bit(bit(actor_id))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_hash_is_the_stored_format() {
            // sha256("42") = 73475cb4…, sha256("") = e3b0c442…: changing these is a migration.
            assert_eq!(super::bit("42"), 0x73);
            assert_eq!(super::bit(""), 0xe3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_through_signed_integers() {
        let s = Sketch::ALL.union(Sketch::with_bit(3));
        assert_eq!(Sketch::from_columns(s.columns()), s);
        assert_eq!(Sketch::ALL.columns(), [-1; 4]);
        assert_eq!(Sketch::with_bit(63).columns(), [i64::MIN, 0, 0, 0]);
    }

    #[test]
    fn sketches_round_trip_through_their_columns() {
        let mut s = Sketches::default();
        s.set(bits(Some(&[7; 16]), Some("u1")));
        assert_eq!(Sketches::from_columns(s.columns()), s);
        assert!(s.contains(&Sketches::default()) && !Sketches::default().contains(&s));
    }

    #[test]
    fn a_search_wants_every_sketch_it_filters_on() {
        let net: ipnet::IpNet = "10.1.0.0/16".parse().unwrap();
        let w = Wanted::new(Some(&net), Some("42"));
        let ip = crate::derive::ip_blob("10.1.2.3".parse().unwrap());
        assert!(w.admits(&areas::of(&ip), &actors::of("42")));
        assert!(!w.admits(&areas::of(&ip), &Sketch::default()));
        assert!(!w.admits(&Sketch::default(), &actors::of("42")));
        assert!(Wanted::new(None, None).admits(&Sketch::default(), &Sketch::default()));
    }
}
