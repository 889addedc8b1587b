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
    let mut out = Vec::with_capacity(512);
    write_canonical(&mut out, event, Omit::NOTHING);
    out
}

/// Fields [`write_canonical`] leaves out: the server's defaults, for the fingerprint.
#[derive(Debug, Clone, Copy, Default)]
pub struct Omit {
    pub received_at: bool,
    pub occurred_at: bool,
    pub ip: bool,
}

impl Omit {
    pub const NOTHING: Omit = Omit {
        received_at: false,
        occurred_at: false,
        ip: false,
    };
}

/// Writes the RFC 8785 form of `event` (without `seq` and `leaf_hash`) directly, with the
/// keys of the known objects in their canonical order, instead of building a generic JSON
/// value and sorting it: this runs for every ingested event, twice.
///
/// RFC 8785 serializes strings as ECMAScript's `JSON.stringify` does, which is exactly
/// serde_json's escaping (`"`, `\`, and U+0000-U+001F, with lowercase `\u00xx`). The
/// client-supplied free-form values (`metadata`, `changes[].old/new`) go through the generic
/// canonicalizer, which sorts their keys and formats their numbers. A property test holds
/// this function byte-identical to the generic path.
pub fn write_canonical(out: &mut Vec<u8>, e: &Event, omit: Omit) {
    let mut obj = Obj::new(out);
    obj.str("action", &e.action);
    if let Some(a) = &e.actor {
        let mut o = obj.object("actor");
        o.opt_str("email", a.email.as_deref());
        o.opt_str("id", a.id.as_deref());
        o.opt_str("name", a.name.as_deref());
        o.str("type", a.kind.as_str());
        o.end();
    }
    obj.str("category", &e.category);
    if !e.changes.is_empty() {
        obj.key("changes");
        obj.out.push(b'[');
        for (i, c) in e.changes.iter().enumerate() {
            if i > 0 {
                obj.out.push(b',');
            }
            let mut o = Obj::new(obj.out);
            o.str("field", &c.field);
            o.opt_str("label", c.label.as_deref());
            if let Some(v) = &c.new {
                o.value("new", v);
            }
            if let Some(v) = &c.old {
                o.value("old", v);
            }
            o.end();
        }
        obj.out.push(b']');
    }
    let ctx = &e.context;
    let ip = if omit.ip { None } else { ctx.ip.as_deref() };
    if ip.is_some() || ctx.request_id.is_some() || ctx.source.is_some() || ctx.user_agent.is_some()
    {
        let mut o = obj.object("context");
        o.opt_str("ip", ip);
        o.opt_str("request_id", ctx.request_id.as_deref());
        o.opt_str("source", ctx.source.as_deref());
        o.opt_str("user_agent", ctx.user_agent.as_deref());
        o.end();
    }
    obj.opt_str("description", e.description.as_deref());
    obj.str("id", &e.id);
    if !e.metadata.is_empty() {
        obj.key("metadata");
        serde_json_canonicalizer::to_writer(&e.metadata, &mut *obj.out)
            .expect("a JSON map always canonicalizes");
    }
    if !omit.occurred_at {
        obj.str(
            "occurred_at",
            &crate::event::timestamp::format(&e.occurred_at),
        );
    }
    obj.str("outcome", e.outcome.as_str());
    if !omit.received_at {
        obj.str(
            "received_at",
            &crate::event::timestamp::format(&e.received_at),
        );
    }
    obj.str("severity", e.severity.as_str());
    if let Some(t) = &e.target {
        let mut o = obj.object("target");
        o.opt_str("id", t.id.as_deref());
        o.opt_str("name", t.name.as_deref());
        o.str("type", &t.kind);
        o.end();
    }
    obj.str("tenant", e.tenant.as_str());
    obj.end();
}

/// A JSON object being written; members must be added in canonical key order.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        serde_json::to_writer(&mut *self.out, value).expect("writing to a Vec cannot fail");
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    fn value(&mut self, key: &str, value: &serde_json::Value) {
        self.key(key);
        serde_json_canonicalizer::to_writer(value, &mut *self.out)
            .expect("a JSON value always canonicalizes");
    }

    fn object(&mut self, key: &str) -> Obj<'_> {
        self.key(key);
        Obj::new(self.out)
    }

    fn end(self) {
        self.out.push(b'}');
    }
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
    /// Validates and completes `input`, then computes its canonical body, leaf hash and
    /// fingerprint.
    pub fn prepare(
        input: EventInput,
        policy: &IngestPolicy,
        ctx: &IngestContext<'_>,
    ) -> Result<Self, FieldError> {
        let id_generated = input.id.is_none();
        // What the server fills in is left out of the fingerprint, so that a retry received
        // later, or from another address, is still recognised as the same event.
        let omit = Omit {
            received_at: true,
            occurred_at: input.occurred_at.is_none(),
            ip: input.context.as_ref().is_none_or(|c| c.ip.is_none()),
        };
        let event = input.into_event(policy, ctx)?;
        let mut buf = Vec::with_capacity(512);
        write_canonical(&mut buf, &event, omit);
        let digest: [u8; 32] = Sha256::digest(&buf).into();
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&digest[..16]);
        let mut sealed = Self::seal(event, fingerprint);
        // Each entry of a C2SP entry bundle (CONTRACT §11) is prefixed with its length as a
        // `u16`, so a canonical form longer than that could be stored but never served.
        if sealed.body.len() > crate::tlog::MAX_ENTRY_BYTES {
            return Err(FieldError::whole(
                "too_large",
                format!(
                    "the event's canonical form is {} bytes; at most {} are accepted \
                     (an entry of the log's tlog-tiles entry bundles)",
                    sealed.body.len(),
                    crate::tlog::MAX_ENTRY_BYTES
                ),
            ));
        }
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
    use crate::event::timestamp;

    fn prepare(json: &str, received_at: &str, ip: &str) -> SealedEvent {
        SealedEvent::prepare(
            EventInput::from_json(json.as_bytes()).unwrap(),
            &IngestPolicy::default(),
            &IngestContext {
                pinned_tenant: None,
                received_at: timestamp::parse(received_at).unwrap(),
                client_ip: Some(ip.parse().unwrap()),
                allow_reserved: false,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_retry_later_and_from_elsewhere_has_the_same_fingerprint() {
        let a = prepare(
            r#"{"id":"1","action":"x","metadata":{"a":1,"b":2}}"#,
            "2026-01-20T10:00:00Z",
            "10.0.0.1",
        );
        let b = prepare(
            r#"{"metadata":{"b":2,"a":1.0},"action":"x","id":"1"}"#,
            "2026-01-20T10:05:00Z",
            "10.0.0.2",
        );
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.body, b.body, "the bodies differ in received_at");
    }

    #[test]
    fn content_changes_change_the_fingerprint() {
        let base = prepare(
            r#"{"id":"1","action":"x"}"#,
            "2026-01-20T10:00:00Z",
            "10.0.0.1",
        );
        for other in [
            r#"{"id":"1","action":"y"}"#,
            r#"{"id":"1","action":"x","occurred_at":"2026-01-20T10:00:00Z"}"#,
            r#"{"id":"1","action":"x","context":{"ip":"10.0.0.1"}}"#,
            r#"{"id":"1","action":"x","severity":"low"}"#,
        ] {
            let o = prepare(other, "2026-01-20T10:00:00Z", "10.0.0.1");
            // An explicit value equal to the default still differs from "not sent", except
            // for severity/outcome/category, which are part of the completed event either way.
            if other.contains("severity") {
                assert_eq!(base.fingerprint, o.fingerprint, "{other}");
            } else {
                assert_ne!(base.fingerprint, o.fingerprint, "{other}");
            }
        }
    }
}

#[cfg(test)]
mod writer_equivalence {
    //! The direct writer must produce exactly what the generic RFC 8785 path produces.
    use super::*;
    use crate::event::{Actor, ActorType, Change, Context, Outcome, Severity, Target, TenantName};
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn generic(event: &Event) -> Vec<u8> {
        let mut value = serde_json::to_value(event).unwrap();
        let map = value.as_object_mut().unwrap();
        map.remove("seq");
        map.remove("leaf_hash");
        serde_json_canonicalizer::to_vec(&value).unwrap()
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 _.-]{0,12}",
            any::<String>(),
            Just("\u{0}\u{1f}\"\\\u{7f}\u{2028}é𝄞".to_owned()),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e21f64..1e21).prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(text(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn event()(
            id in "[a-z0-9-]{1,20}",
            action in "[a-z._]{1,20}",
            category in text(),
            actor in prop::option::of((
                prop::option::of(text()), prop::option::of(text()), prop::option::of(text()),
                prop::sample::select(ActorType::ALL.to_vec()))),
            target in prop::option::of((text(), prop::option::of(text()), prop::option::of(text()))),
            changes in prop::collection::vec(
                (text(), prop::option::of(text()), prop::option::of(json_value()),
                 prop::option::of(json_value())), 0..3),
            description in prop::option::of(text()),
            ctx in (prop::option::of(text()), prop::option::of(text()),
                    prop::option::of(text()), prop::option::of(text())),
            metadata in prop::collection::btree_map(text(), json_value(), 0..4),
            micros in 0i64..4_000_000_000_000_000,
            severity in prop::sample::select(Severity::ALL.to_vec()),
            outcome in prop::sample::select(Outcome::ALL.to_vec()),
        ) -> Event {
            let at = Utc.timestamp_micros(micros).unwrap();
            Event {
                id,
                seq: Some(3),
                tenant: TenantName::parse("acme").unwrap(),
                occurred_at: at,
                received_at: at,
                action,
                category,
                severity,
                outcome,
                actor: actor.map(|(id, name, email, kind)| Actor { id, name, email, kind }),
                target: target.map(|(kind, id, name)| Target { kind, id, name }),
                changes: changes
                    .into_iter()
                    .map(|(field, label, old, new)| Change { field, label, old, new })
                    .collect(),
                description,
                context: Context { ip: ctx.0, user_agent: ctx.1, request_id: ctx.2, source: ctx.3 },
                metadata: metadata.into_iter().collect::<Map<String, Value>>(),
                leaf_hash: Some("ff".into()),
            }
        }
    }

    proptest! {
        #[test]
        fn direct_writer_equals_generic_canonicalizer(e in event()) {
            prop_assert_eq!(
                String::from_utf8(canonical_bytes(&e)).unwrap(),
                String::from_utf8(generic(&e)).unwrap()
            );
        }
    }
}

#[cfg(test)]
mod hostile_numbers {
    use super::*;
    use crate::event::timestamp;

    /// Client-supplied numbers RFC 8785 cannot represent exactly (beyond 2^53, or
    /// subnormal) must not panic the canonicalizer: they are rejected or serialized.
    #[test]
    fn extreme_numbers_never_panic() {
        for n in [
            "12345678901234567890",
            "-9223372036854775808",
            "18446744073709551615",
            "1e308",
            "-1e-320",
            "0.1e-5",
            "-0",
        ] {
            let json = format!(
                r#"{{"action":"x","metadata":{{"n":{n}}},"changes":[{{"field":"f","new":{n}}}]}}"#
            );
            let input = EventInput::from_json(json.as_bytes()).unwrap();
            let ctx = IngestContext {
                pinned_tenant: None,
                received_at: timestamp::parse("2026-01-20T10:30:00Z").unwrap(),
                client_ip: None,
                allow_reserved: false,
            };
            let _ = SealedEvent::prepare(input, &IngestPolicy::default(), &ctx);
        }
    }
}
