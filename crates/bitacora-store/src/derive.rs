//! Values both stores derive from an event for its row: the full-text document, the
//! lowercased actor search string and the IP as a sortable blob. One definition, so the
//! embedded and the PostgreSQL store answer `actor=`, `ip=` and `q=` alike (the conformance
//! suite checks it).
//!
//! They run on the caller's task before an event reaches a store's writer, so the single
//! writer only inserts.

use std::net::{IpAddr, Ipv6Addr};

use bitacora_core::Event;
use ipnet::IpNet;
use serde_json::Value;

/// IPv6, with IPv4 mapped (`::ffff:a.b.c.d`): one byte order for both families, so a CIDR
/// block is a contiguous range of blobs.
pub fn ip_blob(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

pub fn ip_from_blob(blob: &[u8]) -> Option<IpAddr> {
    let octets: [u8; 16] = blob.try_into().ok()?;
    let v6 = Ipv6Addr::from(octets);
    Some(match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    })
}

/// The lowest and highest blob of a block.
pub fn ip_range(net: &IpNet) -> ([u8; 16], [u8; 16]) {
    (ip_blob(net.network()), ip_blob(net.broadcast()))
}

/// Whether `ip=NET` is read through the stores' address postings (per block of the log, the
/// positions of each address's events): an address, or a network of /24 or narrower (/64 for
/// IPv6). A wider one holds so many events per block that fetching them one by one costs
/// more than reading the events in order: measured at 1M events, a /16 holding a quarter of
/// the log went from 17 to 449 ms with `actor_id` and from 44 to 1,682 ms with `q` on a
/// numbered page through the postings (BENCHMARKS.md), while single addresses went from
/// 300-700 ms to 10-30 ms.
pub fn narrow_network(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => n.prefix_len() >= 24,
        IpNet::V6(n) => n.prefix_len() >= 64,
    }
}

/// `actor=` matches a case-insensitive part of the name or email.
pub fn actor_search(event: &Event) -> Option<String> {
    let actor = event.actor.as_ref()?;
    let mut s = String::new();
    for part in [&actor.name, &actor.email].into_iter().flatten() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(&part.to_lowercase());
    }
    (!s.is_empty()).then_some(s)
}

/// The text `q=` searches: action, description, actor and target names, changes and
/// metadata (keys and values).
pub fn fts_text(event: &Event) -> String {
    let mut out = String::with_capacity(256);
    let mut push = |s: &str| {
        if !s.is_empty() {
            out.push_str(s);
            out.push('\n');
        }
    };
    push(&event.action);
    if let Some(d) = &event.description {
        push(d);
    }
    if let Some(a) = &event.actor {
        for s in [&a.id, &a.name, &a.email].into_iter().flatten() {
            push(s);
        }
    }
    if let Some(t) = &event.target {
        push(&t.kind);
        for s in [&t.id, &t.name].into_iter().flatten() {
            push(s);
        }
    }
    for change in &event.changes {
        push(&change.field);
        if let Some(l) = &change.label {
            push(l);
        }
        for v in [&change.old, &change.new].into_iter().flatten() {
            push_value(v, &mut push);
        }
    }
    for (k, v) in &event.metadata {
        push(k);
        push_value(v, &mut push);
    }
    out
}

fn push_value(v: &Value, push: &mut impl FnMut(&str)) {
    match v {
        Value::Null => {}
        Value::Bool(b) => push(if *b { "true" } else { "false" }),
        Value::Number(n) => push(&n.to_string()),
        Value::String(s) => push(s),
        Value::Array(items) => items.iter().for_each(|i| push_value(i, push)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            push(k);
            push_value(v, push);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_narrow_networks_take_the_address_postings() {
        let narrow = |n: &str| narrow_network(&n.parse().unwrap());
        assert!(narrow("10.1.64.7/32"));
        assert!(narrow("10.1.64.0/24"));
        assert!(!narrow("10.1.0.0/16"));
        assert!(narrow("2001:db8::1/128"));
        assert!(narrow("2001:db8:0:1::/64"));
        assert!(!narrow("2001:db8::/48"));
    }

    #[test]
    fn ipv4_blocks_are_contiguous_blob_ranges() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        let (lo, hi) = ip_range(&net);
        let inside = ip_blob("10.1.200.3".parse().unwrap());
        let outside = ip_blob("10.2.0.0".parse().unwrap());
        assert!(lo <= inside && inside <= hi);
        assert!(outside > hi);
        assert_eq!(ip_from_blob(&inside), Some("10.1.200.3".parse().unwrap()));
    }
}
