//! Canonicalization: bitacora's direct RFC 8785 writer (`write_canonical`) against the
//! generic `serde_json_canonicalizer` over the same event, for events whose free-form parts
//! (`metadata`, `changes[].old/new`) and strings come from the fuzzer.
#![no_main]

use arbitrary::Arbitrary;
use bitacora_core::canonical::canonical_bytes;
use bitacora_core::event::{IngestContext, IngestPolicy};
use bitacora_core::{EventInput, TenantName};
use chrono::TimeZone as _;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Any JSON text: used as `metadata` when it is an object, else as a change's value.
    free: &'a str,
    old: Option<&'a str>,
    description: Option<String>,
    actor_name: Option<String>,
    target_id: Option<String>,
    user_agent: Option<String>,
    field: String,
    micros: u32,
}

fuzz_target!(|input: Input<'_>| {
    let Ok(free) = serde_json::from_str::<Value>(input.free) else {
        return;
    };
    let old = input
        .old
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let mut event = json!({
        "id": "fuzz-1",
        "action": "fuzz.canonical",
        "occurred_at": format!("2026-01-20T10:30:00.{:06}Z", input.micros % 1_000_000),
        "changes": [{"field": input.field, "new": free.clone(), "old": old}],
    });
    let obj = event.as_object_mut().unwrap();
    if let Value::Object(m) = &free {
        obj.insert("metadata".into(), Value::Object(m.clone()));
    }
    let mut put = |k: &str, v: Option<String>, parent: Option<&str>| {
        let Some(v) = v else { return };
        match parent {
            None => {
                obj.insert(k.into(), Value::String(v));
            }
            Some(p) => {
                let entry = obj.entry(p).or_insert_with(|| Value::Object(Map::new()));
                entry
                    .as_object_mut()
                    .unwrap()
                    .insert(k.into(), Value::String(v));
            }
        }
    };
    put("description", input.description, None);
    put("name", input.actor_name, Some("actor"));
    put("user_agent", input.user_agent, Some("context"));
    if let Some(id) = input.target_id {
        put("type", Some("record".into()), Some("target"));
        put("id", Some(id), Some("target"));
    }

    let Ok(parsed) = EventInput::from_json(event.to_string().as_bytes()) else {
        return;
    };
    let ctx = IngestContext {
        pinned_tenant: None,
        received_at: chrono::Utc.timestamp_opt(1_768_000_000, 0).unwrap(),
        client_ip: None,
        allow_reserved: false,
    };
    let default_tenant = TenantName::default_tenant();
    let _ = &default_tenant;
    let Ok(event) = parsed.into_event(&IngestPolicy::default(), &ctx) else {
        return;
    };
    let direct = canonical_bytes(&event);
    let mut generic = serde_json::to_value(&event).expect("an event serializes");
    let map = generic.as_object_mut().unwrap();
    map.remove("seq");
    map.remove("leaf_hash");
    let generic = serde_json_canonicalizer::to_vec(&generic).expect("canonicalizes");
    assert_eq!(
        String::from_utf8_lossy(&direct),
        String::from_utf8_lossy(&generic),
        "the direct writer and the generic canonicalizer disagree"
    );
});
