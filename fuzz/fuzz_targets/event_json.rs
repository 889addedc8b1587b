//! Event JSON parsing and validation: any bytes a client can POST.
//!
//! Never panics; an accepted event seals into a canonical body that (a) is a fixed point of
//! the generic RFC 8785 canonicalizer, (b) is what the event's API JSON re-canonicalizes to
//! after the `seq`/`leaf_hash` splice, and (c) re-reads as the same event.
#![no_main]

use bitacora_core::canonical::{canonical_bytes, canonicalize_json, leaf_hash};
use bitacora_core::event::{IngestContext, IngestPolicy};
use bitacora_core::{Event, EventInput, SealedEvent, TenantName};
use bitacora_store::StoredEvent;
use chrono::TimeZone as _;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = EventInput::from_json(data) else {
        return;
    };
    let pinned = TenantName::default_tenant();
    let policy = IngestPolicy::default();
    let received_at = chrono::Utc
        .timestamp_opt(1_768_000_000, 123_456_000)
        .unwrap();
    for pinned_tenant in [None, Some(&pinned)] {
        let ctx = IngestContext {
            pinned_tenant,
            received_at,
            client_ip: Some("::ffff:10.1.2.3".parse().unwrap()),
            allow_reserved: false,
        };
        let Ok(sealed) = SealedEvent::prepare(input.clone(), &policy, &ctx) else {
            continue;
        };
        let body = sealed.body.as_bytes();
        assert_eq!(sealed.leaf_hash, leaf_hash(body));
        assert_eq!(
            canonicalize_json(body).expect("a body is JSON"),
            body,
            "the body is not in canonical form"
        );
        let api = StoredEvent {
            seq: 7,
            leaf_hash: sealed.leaf_hash,
            body: sealed.body.clone(),
        }
        .to_json();
        assert_eq!(
            canonicalize_json(api.as_bytes()).expect("the API JSON parses"),
            body,
            "the API JSON does not re-canonicalize to the hashed bytes"
        );
        let reread: Event = serde_json::from_str(&api).expect("the API JSON reads as an Event");
        assert_eq!(reread.seq, Some(7));
        assert_eq!(
            canonical_bytes(&reread),
            body,
            "re-reading changed the event"
        );
    }
});
