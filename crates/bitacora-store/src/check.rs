//! What `bitacora verify` re-derives from an event's body to check the values a store keeps
//! beside it: the indexed columns, the fingerprint, and the full-text document.
//!
//! Every searchable column of a row is a function of its body, and the body is covered by
//! the signed Merkle tree. A column changed behind the server's back (an `action` term id, an
//! `occurred_at`, a deleted full-text entry) does not touch the tree, but it makes the event
//! vanish from filtered searches and exports: so the walk re-derives each column from the
//! body and compares. The store-specific encodings (term ids, timestamps, blobs) are
//! compared by each store; this module holds what both share.

use bitacora_core::Event;
use bitacora_core::canonical::{Fingerprint, Omit, write_canonical};
use sha2::{Digest, Sha256};

/// The column named when a stored full-text entry does not find its event.
pub const FULL_TEXT: &str = "full-text index";

/// Parses a stored body into the event it is (the writer derived every column from it).
pub fn parse_body(body: &[u8]) -> Option<Event> {
    serde_json::from_slice(body).ok()
}

/// Whether `stored` is the fingerprint the writer could have computed for `event`.
///
/// The fingerprint is a digest of the client's input before server defaults
/// ([`bitacora_core::SealedEvent::prepare`]): `received_at` always left out, and `occurred_at`
/// and `context.ip` left out when the server filled them in. The body does not say which the
/// server filled in, so the fingerprint is one of at most four candidates, and a stored
/// fingerprint must be one of them.
pub fn fingerprint_matches(event: &Event, stored: &[u8]) -> bool {
    let mut buf = Vec::with_capacity(512);
    let ip_choices: &[bool] = if event.context.ip.is_some() {
        &[false, true]
    } else {
        &[false]
    };
    for occurred_at in [false, true] {
        for &ip in ip_choices {
            if stored == candidate(&mut buf, event, occurred_at, ip) {
                return true;
            }
        }
    }
    false
}

/// The fingerprint of `event` as a client that gave every field sent it (one of the
/// candidates [`fingerprint_matches`] accepts): what a writer stores for it, and what a test
/// that forges a row the way an insider would must store too.
pub fn fingerprint_of(event: &Event) -> Fingerprint {
    candidate(&mut Vec::with_capacity(512), event, false, false)
}

fn candidate(buf: &mut Vec<u8>, event: &Event, occurred_at: bool, ip: bool) -> Fingerprint {
    buf.clear();
    write_canonical(
        buf,
        event,
        Omit {
            received_at: true,
            occurred_at,
            ip,
        },
    );
    let digest: [u8; 32] = Sha256::digest(&buf[..]).into();
    digest[..16].try_into().expect("16 bytes")
}

/// A summary that disagrees with the events it summarizes (`action_counts`, `actor_stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryMismatch {
    /// The summary's name (its table).
    pub summary: &'static str,
    /// The key within it (`action=user.login category=auth`, `actor_id=u1`).
    pub key: String,
    /// What disagrees, e.g. `count is 99, the events give 100`.
    pub reason: String,
}

impl SummaryMismatch {
    /// The address postings (`event_addresses`) of block `block` and address `ip` (a 16-byte
    /// blob) hold `stored` offsets where the events give `derived` (or other ones).
    pub fn addresses(block: i64, ip: &[u8], stored: usize, derived: usize) -> Self {
        let addr = crate::derive::ip_from_blob(ip)
            .map_or_else(|| "(not an address)".to_owned(), |a| a.to_string());
        SummaryMismatch {
            summary: "event_addresses",
            key: format!("block={block} ip={addr}"),
            reason: if stored == derived {
                format!("the {stored} stored offsets are not those of the events")
            } else {
                format!("{stored} offsets are stored, the events give {derived}")
            },
        }
    }
}
