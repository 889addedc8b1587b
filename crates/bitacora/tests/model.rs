//! Property tests for the event model: serde round-trips of `EventInput` and `Event` for
//! generated events, and validation that never panics, whatever JSON it is given.

use bitacora_core::canonical::canonical_bytes;
use bitacora_core::event::timestamp;
use bitacora_core::query::EventQuery;
use bitacora_core::{
    Actor, ActorType, Change, Context, Event, EventInput, IngestContext, IngestPolicy, Outcome,
    Severity, Target, TenantName,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn short_text() -> impl Strategy<Value = String> {
    // Letters with accents, digits, punctuation, spaces: no control characters.
    "[a-zA-Z0-9áéíóúñÑ .,@:_/-]{1,24}"
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        // Integers JSON and JCS carry exactly (|n| <= 2^53); floats are left out because
        // serde_json's default parser may differ from the shortest form in the last bit.
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(Value::from),
        "[^\u{0}-\u{1f}]{0,16}".prop_map(Value::String),
    ]
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn severity() -> impl Strategy<Value = Severity> {
    prop::sample::select(Severity::ALL)
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop::sample::select(Outcome::ALL)
}

fn actor_type() -> impl Strategy<Value = ActorType> {
    prop::sample::select(ActorType::ALL)
}

fn actor() -> impl Strategy<Value = Actor> {
    (
        option::of(short_text()),
        option::of(short_text()),
        option::of(short_text()),
        actor_type(),
    )
        .prop_map(|(id, name, email, kind)| Actor {
            id,
            name,
            email,
            kind,
        })
}

fn target() -> impl Strategy<Value = Target> {
    (
        short_text(),
        option::of(short_text()),
        option::of(short_text()),
    )
        .prop_map(|(kind, id, name)| Target { kind, id, name })
}

fn change() -> impl Strategy<Value = Change> {
    (
        short_text(),
        option::of(short_text()),
        option::of(any_json()),
        option::of(any_json()),
    )
        .prop_map(|(field, label, old, new)| Change {
            field,
            label,
            old,
            new,
        })
}

fn ip() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
        any::<[u8; 16]>().prop_map(|b| std::net::Ipv6Addr::from(b).to_string()),
    ]
}

fn context() -> impl Strategy<Value = Context> {
    (
        option::of(ip()),
        option::of(short_text()),
        option::of(short_text()),
        option::of(short_text()),
    )
        .prop_map(|(ip, user_agent, request_id, source)| Context {
            ip,
            user_agent,
            request_id,
            source,
        })
}

/// RFC 3339 timestamps between 1970 and 2100, at microsecond precision.
fn occurred_at() -> impl Strategy<Value = String> {
    (0i64..4_102_444_800_000_000)
        .prop_map(|us| timestamp::format(&chrono::DateTime::from_timestamp_micros(us).unwrap()))
}

/// A valid event input: every field may be present or absent.
fn event_input() -> impl Strategy<Value = EventInput> {
    let head = (
        option::of("[A-Za-z0-9_.:-]{1,32}"),
        option::of(occurred_at()),
        option::of("[a-z0-9_.-]{1,16}".prop_map(|t| TenantName::parse(&t).unwrap())),
        "[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,40}",
        option::of(short_text()),
        option::of(severity()),
        option::of(outcome()),
    );
    let tail = (
        option::of(actor()),
        option::of(target()),
        vec(change(), 0..3),
        option::of("[^\u{0}]{0,40}"),
        option::of(context()),
        option::of(
            btree_map("[a-z_]{1,8}", any_json(), 0..4)
                .prop_map(|m| m.into_iter().collect::<Map<_, _>>()),
        ),
    );
    (head, tail).prop_map(
        |(
            (id, occurred_at, tenant, action, category, severity, outcome),
            (actor, target, changes, description, context, metadata),
        )| EventInput {
            id,
            occurred_at,
            tenant,
            action,
            category,
            severity,
            outcome,
            actor,
            target,
            changes,
            description,
            context,
            metadata,
        },
    )
}

fn ingest_ctx() -> IngestContext<'static> {
    IngestContext {
        pinned_tenant: None,
        received_at: timestamp::parse("2026-01-20T10:30:00.123456Z").unwrap(),
        client_ip: Some("127.0.0.1".parse().unwrap()),
        allow_reserved: false,
    }
}

fn complete(input: EventInput) -> Result<Event, bitacora_core::FieldError> {
    input.into_event(&IngestPolicy::default(), &ingest_ctx())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn event_input_round_trips_through_json(input in event_input()) {
        let json = serde_json::to_vec(&input).unwrap();
        let parsed = EventInput::from_json(&json).unwrap();
        prop_assert_eq!(parsed, input);
    }

    #[test]
    fn a_valid_input_completes_and_the_event_round_trips(input in event_input()) {
        let event = complete(input.clone()).unwrap();
        // What the client chose is kept.
        prop_assert_eq!(&event.action, &input.action);
        if let Some(id) = &input.id {
            prop_assert_eq!(&event.id, id);
        }
        let json = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &event);
        // Re-reading and re-serializing never changes the hashed bytes.
        prop_assert_eq!(canonical_bytes(&back), canonical_bytes(&event));
        // The canonical form is what canonicalizing the JSON gives.
        let via_json = bitacora_core::canonical::canonicalize_json(json.as_bytes()).unwrap();
        prop_assert_eq!(via_json, canonical_bytes(&event));
    }

    #[test]
    fn an_event_with_seq_and_leaf_hash_round_trips(input in event_input(), seq in any::<u64>(), hash in any::<[u8; 32]>()) {
        let mut event = complete(input).unwrap();
        event.seq = Some(seq);
        event.leaf_hash = Some(hex_lower(&hash));
        let back: Event = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        prop_assert_eq!(back, event);
    }

    #[test]
    fn validation_never_panics_on_arbitrary_json(value in any_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if let Ok(input) = EventInput::from_json(&bytes) {
            let _ = complete(input);
        }
    }

    #[test]
    fn validation_never_panics_on_event_shaped_json(
        fields in btree_map(
            prop::sample::select(vec![
                "id", "occurred_at", "tenant", "action", "category", "severity", "outcome",
                "actor", "target", "changes", "description", "context", "metadata", "extra",
            ]),
            any_json(),
            0..8,
        ),
        action in option::of("[^\u{0}]{0,140}"),
    ) {
        let mut map: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Some(a) = action {
            map.insert("action".into(), Value::String(a));
        }
        let bytes = serde_json::to_vec(&Value::Object(map)).unwrap();
        match EventInput::from_json(&bytes) {
            Ok(input) => {
                if let Err(e) = complete(input) {
                    prop_assert!(e.field.is_some(), "a semantic error names its field: {e}");
                }
            }
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }

    #[test]
    fn parsing_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..256)) {
        if let Ok(input) = EventInput::from_json(&bytes) {
            let _ = complete(input);
        }
    }

    #[test]
    fn query_parsing_never_panics(
        params in vec((
            prop::sample::select(bitacora_core::query::PARAMETERS.to_vec()),
            "[^\u{0}]{0,40}",
        ), 0..6)
    ) {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Err(e) = EventQuery::parse(pairs, &TenantName::default_tenant()) {
            prop_assert!(e.field.is_some(), "a query error names its parameter: {e}");
        }
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
