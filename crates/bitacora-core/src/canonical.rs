//! The canonical form of an event and its Merkle leaf hash (CONTRACT §4).
//!
//! `canonical(event)` is the RFC 8785 (JCS) serialization of the event as
//! `GET /v1/events/{id}` returns it, minus `seq` and `leaf_hash`. The leaf hash is
//! `SHA-256(0x00 || canonical(event))`, the RFC 6962 leaf hash. Stores keep the canonical
//! bytes as the event's body, so what is returned is exactly what was hashed.

use sha2::{Digest, Sha256};

use crate::error::FieldError;
use crate::event::{Event, EventInput, IngestContext, IngestPolicy};

/// A SHA-256 digest: a leaf or node of a tenant's Merkle log.
pub type Hash = [u8; 32];

/// RFC 8785 bytes of `event` without `seq` and `leaf_hash`.
pub fn canonical_bytes(event: &Event) -> Vec<u8> {
    let mut value = serde_json::to_value(event).expect("an Event always serializes");
    if let Some(map) = value.as_object_mut() {
        map.remove("seq");
        map.remove("leaf_hash");
    }
    serde_json_canonicalizer::to_vec(&value).expect("a JSON value always canonicalizes")
}

/// RFC 8785 bytes of any JSON text with its `seq` and `leaf_hash` removed: what an
/// independent verifier does with a response from `GET /v1/events/{id}`.
pub fn canonicalize_json(json: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_slice(json)?;
    if let Some(map) = value.as_object_mut() {
        map.remove("seq");
        map.remove("leaf_hash");
    }
    serde_json_canonicalizer::to_vec(&value).map_err(|e| {
        <serde_json::Error as serde::de::Error>::custom(format!("cannot canonicalize: {e}"))
    })
}

/// Lowercase hex, as hashes appear in JSON.
pub fn hex_hash(hash: &Hash) -> String {
    hex::encode(hash)
}

/// Parses a lowercase or uppercase hex SHA-256.
pub fn parse_hex_hash(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// RFC 6962 leaf hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// An event ready to be appended: its canonical body and leaf hash, computed before it
/// reaches the single writer so that hashing runs on every core.
#[derive(Debug, Clone)]
pub struct SealedEvent {
    pub event: Event,
    /// `canonical_bytes(&event)` as UTF-8 (JCS output is always valid UTF-8).
    pub body: String,
    pub leaf_hash: Hash,
    /// Digest of what the client sent, before any server default: a re-sent event with the
    /// same `id` and fingerprint is a duplicate, with another fingerprint a conflict.
    pub fingerprint: Fingerprint,
    /// True when the server generated `id` (a fresh UUIDv7): no stored event can share it,
    /// so the store may skip the duplicate lookup.
    pub id_generated: bool,
}

/// A truncated SHA-256 of a client's input; 128 bits are plenty to tell retries apart.
pub type Fingerprint = [u8; 16];

impl SealedEvent {
    /// Validates and completes `input`, then computes its canonical body and leaf hash.
    pub fn prepare(
        input: EventInput,
        policy: &IngestPolicy,
        ctx: &IngestContext<'_>,
    ) -> Result<Self, FieldError> {
        let fingerprint = fingerprint(&input);
        let id_generated = input.id.is_none();
        let event = input.into_event(policy, ctx)?;
        let mut sealed = Self::seal(event, fingerprint);
        sealed.id_generated = id_generated;
        Ok(sealed)
    }

    pub fn seal(event: Event, fingerprint: Fingerprint) -> Self {
        let bytes = canonical_bytes(&event);
        let leaf_hash = leaf_hash(&bytes);
        let body = String::from_utf8(bytes).expect("JCS output is UTF-8");
        Self {
            event,
            body,
            leaf_hash,
            fingerprint,
            id_generated: false,
        }
    }
}

/// The digest of a client's input as sent (minus the tenant, which is part of the id's key).
pub fn fingerprint(input: &EventInput) -> Fingerprint {
    let mut value = serde_json::to_value(input).expect("an EventInput always serializes");
    if let Some(map) = value.as_object_mut() {
        map.remove("tenant");
    }
    let bytes = serde_json_canonicalizer::to_vec(&value).expect("JSON canonicalizes");
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::timestamp;

    fn event(json: &str) -> Event {
        EventInput::from_json(json.as_bytes())
            .unwrap()
            .into_event(
                &IngestPolicy::default(),
                &IngestContext {
                    pinned_tenant: None,
                    received_at: timestamp::parse("2026-01-20T10:30:01Z").unwrap(),
                    client_ip: None,
                    allow_reserved: false,
                },
            )
            .unwrap()
    }

    #[test]
    fn canonical_form_sorts_keys_and_drops_seq_and_leaf_hash() {
        let mut e = event(
            r#"{"id":"e1","action":"user.login","occurred_at":"2026-01-20T11:30:00+01:00",
                "metadata":{"z":1.0,"a":"ñ"}}"#,
        );
        e.seq = Some(7);
        e.leaf_hash = Some("ab".into());
        let bytes = canonical_bytes(&e);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"action":"user.login","category":"user","id":"e1","metadata":{"a":"ñ","z":1},"occurred_at":"2026-01-20T10:30:00Z","outcome":"success","received_at":"2026-01-20T10:30:01Z","severity":"low","tenant":"default"}"#
        );
    }

    #[test]
    fn what_get_returns_recanonicalizes_to_the_hashed_bytes() {
        let sealed = SealedEvent::seal(
            event(
                r#"{"action":"x","changes":[{"field":"a","old":null,"new":[1,2.5e3]}],
                "actor":{"id":"42","name":"Juan Pérez"},"description":"Rol cambiado"}"#,
            ),
            [0; 16],
        );
        let mut returned = sealed.event.clone();
        returned.seq = Some(0);
        returned.leaf_hash = Some(hex::encode(sealed.leaf_hash));
        let wire = serde_json::to_vec(&returned).unwrap();
        let again = canonicalize_json(&wire).unwrap();
        assert_eq!(again, sealed.body.as_bytes());
        assert_eq!(leaf_hash(&again), sealed.leaf_hash);
    }

    #[test]
    fn rfc6962_empty_leaf_vector() {
        // RFC 6962 test vector: the hash of the empty leaf.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_key_order_and_tenant_but_not_content() {
        let a = EventInput::from_json(
            br#"{"id":"1","action":"x","tenant":"t","metadata":{"a":1,"b":2}}"#,
        )
        .unwrap();
        let b = EventInput::from_json(br#"{"metadata":{"b":2,"a":1.0},"action":"x","id":"1"}"#)
            .unwrap();
        let c = EventInput::from_json(br#"{"id":"1","action":"y"}"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
