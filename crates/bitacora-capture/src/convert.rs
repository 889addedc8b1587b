//! One outbox row → one event (CONTRACT §5). Pure: no I/O, so every rule is unit-tested.
//!
//! - `id` = `capture:<install id>:<outbox id>`: deterministic, so re-sending a row after a
//!   crash is recognised by the store as the same event (exactly once).
//! - `action` = `<table>.<op>`, where `<table>` is the table's name, prefixed by its schema
//!   unless that is `public` (`users.update`, `billing.invoices.insert`); characters an action
//!   cannot hold become `_`. `category` = `db`; `context.source` = `db_trigger`.
//! - `target` = `{type: <table as above>, id: <primary key>}`. A one-column key is its value
//!   as text (`42`, `ana@example.com`); a composite key is the JSON array of its values in the
//!   key's column order (`[7,"es"]`). A key that would not fit (over 512 characters) or holds
//!   control characters is written `sha256:<hex of that text>`... see [`target_id`].
//! - `changes`: one per recorded column, sorted by column name: an insert lists `new` values,
//!   a delete `old` ones, an update the changed columns with both.
//! - `actor` from `bitacora.actor_id|actor_name|actor_email|actor_type`; none set → no actor.
//! - `metadata.txid` (the PostgreSQL transaction id: changes of one transaction share it);
//!   with full rows, `metadata.before`/`metadata.after`.
//! - Bounds: values too large for one event (64 KiB) are replaced, largest first, by
//!   `"[truncated: N bytes, sha256:<hex>]"`, and `metadata.truncated` names them.
//!   Text the event model refuses (control characters in names, an `ip` that is not an
//!   address) is cleaned, never a reason to lose the row.

use bitacora_core::event::{MAX_EVENT_BYTES, MAX_SHORT_CHARS, MAX_TEXT_CHARS};
use bitacora_core::{
    Actor, ActorType, Change, Context, EventInput, FieldError, IngestContext, IngestPolicy,
    SealedEvent, Target, TenantName,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::Digest as _;

/// An outbox row, as the drain reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub txid: i64,
    pub schema: String,
    pub table: String,
    /// `insert`, `update`, `delete` or `truncate`.
    pub op: String,
    /// `[[column, value], ...]` in key order; absent for `truncate`.
    pub pk: Option<Value>,
    pub old_values: Option<Value>,
    pub new_values: Option<Value>,
    /// The events carry the whole rows (`--full-rows`) in `metadata.before`/`after`.
    pub full_rows: bool,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_email: Option<String>,
    pub actor_type: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// Events stay under this size with room for what the server adds (`seq`, hashes).
const EVENT_BUDGET: usize = MAX_EVENT_BYTES - 2048;

/// The event id of outbox row `outbox_id` of the install `install_id`.
pub fn event_id(install_id: &str, outbox_id: i64) -> String {
    format!("capture:{install_id}:{outbox_id}")
}

/// `users` for `public.users`, `billing.invoices` otherwise.
pub fn table_label(schema: &str, table: &str) -> String {
    if schema == "public" {
        table.to_owned()
    } else {
        format!("{schema}.{table}")
    }
}

/// The event for `row`, as a client would have sent it.
pub fn to_input(row: &OutboxRow, install_id: &str, tenant: &TenantName) -> EventInput {
    let label = table_label(&row.schema, &row.table);
    let mut metadata = Map::new();
    metadata.insert("txid".into(), json!(row.txid));

    let actor = actor(row);
    let mut context = Context {
        source: Some(crate::SOURCE.to_owned()),
        user_agent: row
            .user_agent
            .as_deref()
            .and_then(|s| clean(s, MAX_TEXT_CHARS)),
        request_id: row
            .request_id
            .as_deref()
            .and_then(|s| clean(s, MAX_SHORT_CHARS)),
        ip: None,
    };
    if let Some(ip) = row.ip.as_deref() {
        match ip.trim().parse::<std::net::IpAddr>() {
            Ok(addr) => context.ip = Some(addr.to_string()),
            // Kept where an auditor can see it, out of the field that must be an address.
            Err(_) => {
                if let Some(raw) = clean(ip, MAX_SHORT_CHARS) {
                    metadata.insert("invalid_ip".into(), Value::String(raw));
                }
            }
        }
    }

    let target = Target {
        kind: clean(&label, MAX_SHORT_CHARS).unwrap_or_else(|| "table".to_owned()),
        id: row.pk.as_ref().and_then(target_id),
        name: None,
    };

    let old = row.old_values.as_ref().and_then(Value::as_object);
    let new = row.new_values.as_ref().and_then(Value::as_object);
    let mut changes = Vec::new();
    match row.op.as_str() {
        "insert" => {
            for (k, v) in new.into_iter().flatten() {
                changes.push(change(k, None, Some(v)));
            }
        }
        "delete" => {
            for (k, v) in old.into_iter().flatten() {
                changes.push(change(k, Some(v), None));
            }
        }
        "update" => {
            if let (Some(old), Some(new)) = (old, new) {
                // The outbox holds whole rows; changes list only the changed columns.
                for (k, v) in new {
                    let before = old.get(k).unwrap_or(&Value::Null);
                    if before != v {
                        changes.push(change(k, Some(before), Some(v)));
                    }
                }
            }
        }
        _ => {}
    }
    changes.sort_by(|a, b| a.field.cmp(&b.field));
    if row.full_rows {
        if let Some(old) = &row.old_values {
            metadata.insert("before".into(), old.clone());
        }
        if let Some(new) = &row.new_values {
            metadata.insert("after".into(), new.clone());
        }
    }

    let mut input = EventInput {
        id: Some(event_id(install_id, row.id)),
        occurred_at: Some(bitacora_core::event::timestamp::format(&row.occurred_at)),
        tenant: Some(tenant.clone()),
        action: action(&label, &row.op),
        category: Some(crate::CATEGORY.to_owned()),
        severity: None,
        outcome: None,
        actor,
        target: Some(target),
        changes,
        description: None,
        context: Some(context),
        metadata: Some(metadata),
    };
    fit(&mut input);
    input
}

/// Validates and seals the event for `row` exactly as an HTTP ingest would.
pub fn seal(
    row: &OutboxRow,
    install_id: &str,
    tenant: &TenantName,
    policy: &IngestPolicy,
    received_at: DateTime<Utc>,
) -> Result<SealedEvent, FieldError> {
    SealedEvent::prepare(
        to_input(row, install_id, tenant),
        policy,
        &IngestContext {
            pinned_tenant: None,
            received_at,
            client_ip: None,
            allow_reserved: false,
        },
    )
}

/// The event for a row whose values the event model refused even after cleaning (a bug):
/// the row is still recorded, by table, key, operation and time, with the reason.
pub fn seal_fallback(
    row: &OutboxRow,
    install_id: &str,
    tenant: &TenantName,
    policy: &IngestPolicy,
    received_at: DateTime<Utc>,
    error: &str,
) -> SealedEvent {
    let label = table_label(&row.schema, &row.table);
    let mut metadata = Map::new();
    metadata.insert("txid".into(), json!(row.txid));
    metadata.insert(
        "capture_error".into(),
        Value::String(clean(error, MAX_SHORT_CHARS).unwrap_or_default()),
    );
    let input = EventInput {
        id: Some(event_id(install_id, row.id)),
        occurred_at: Some(bitacora_core::event::timestamp::format(&row.occurred_at)),
        tenant: Some(tenant.clone()),
        action: action(&label, &row.op),
        category: Some(crate::CATEGORY.to_owned()),
        target: Some(Target {
            kind: clean(&label, MAX_SHORT_CHARS).unwrap_or_else(|| "table".to_owned()),
            id: row.pk.as_ref().and_then(target_id),
            name: None,
        }),
        context: Some(Context {
            source: Some(crate::SOURCE.to_owned()),
            ..Context::default()
        }),
        metadata: Some(metadata),
        ..EventInput::default()
    };
    SealedEvent::prepare(
        input,
        policy,
        &IngestContext {
            pinned_tenant: None,
            received_at,
            client_ip: None,
            allow_reserved: false,
        },
    )
    .expect("the fallback event holds only values the event model accepts")
}

fn action(label: &str, op: &str) -> String {
    let mut table: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let room = bitacora_core::event::MAX_ACTION_LEN - op.len() - 1;
    table.truncate(room);
    format!("{table}.{op}")
}

fn actor(row: &OutboxRow) -> Option<Actor> {
    let id = row
        .actor_id
        .as_deref()
        .and_then(|s| clean(s, MAX_SHORT_CHARS));
    let name = row
        .actor_name
        .as_deref()
        .and_then(|s| clean(s, MAX_SHORT_CHARS));
    let email = row
        .actor_email
        .as_deref()
        .and_then(|s| clean(s, MAX_SHORT_CHARS));
    let kind = row
        .actor_type
        .as_deref()
        .and_then(|t| t.trim().parse::<ActorType>().ok());
    if id.is_none() && name.is_none() && email.is_none() && kind.is_none() {
        return None;
    }
    Some(Actor {
        id,
        name,
        email,
        kind: kind.unwrap_or_default(),
    })
}

fn change(field: &str, old: Option<&Value>, new: Option<&Value>) -> Change {
    Change {
        field: clean(field, MAX_SHORT_CHARS).unwrap_or_else(|| "?".to_owned()),
        label: None,
        old: old.cloned(),
        new: new.cloned(),
    }
}

/// The target id of a primary key given as `[[column, value], ...]`.
pub fn target_id(pk: &Value) -> Option<String> {
    let values: Vec<&Value> = pk
        .as_array()?
        .iter()
        .filter_map(|pair| pair.as_array().and_then(|p| p.get(1)))
        .collect();
    let text = match values.as_slice() {
        [] => return None,
        [Value::String(s)] => s.clone(),
        [one] => one.to_string(),
        many => Value::Array(many.iter().map(|v| (*v).clone()).collect()).to_string(),
    };
    if text.is_empty()
        || text.chars().count() > MAX_SHORT_CHARS
        || text.chars().any(char::is_control)
    {
        return Some(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(text.as_bytes()))
        ));
    }
    Some(text)
}

/// `s` without control characters, at most `max` characters; `None` when nothing is left.
fn clean(s: &str, max: usize) -> Option<String> {
    let out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    (!out.trim().is_empty()).then_some(out)
}

/// Shrinks `input` under [`EVENT_BUDGET`] by replacing its largest values.
fn fit(input: &mut EventInput) {
    let size = |input: &EventInput| serde_json::to_vec(input).map(|v| v.len()).unwrap_or(0);
    if size(input) <= EVENT_BUDGET {
        return;
    }
    // Every replaceable value: (its JSON size, where it is).
    #[derive(Clone, Copy)]
    enum Slot {
        Old(usize),
        New(usize),
        Before,
        After,
    }
    let mut slots: Vec<(usize, Slot, String)> = Vec::new();
    let len = |v: &Value| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0);
    for (i, c) in input.changes.iter().enumerate() {
        if let Some(v) = &c.old {
            slots.push((len(v), Slot::Old(i), format!("changes.{}.old", c.field)));
        }
        if let Some(v) = &c.new {
            slots.push((len(v), Slot::New(i), format!("changes.{}.new", c.field)));
        }
    }
    if let Some(meta) = &input.metadata {
        if let Some(v) = meta.get("before") {
            slots.push((len(v), Slot::Before, "metadata.before".into()));
        }
        if let Some(v) = meta.get("after") {
            slots.push((len(v), Slot::After, "metadata.after".into()));
        }
    }
    // Largest first; at equal size a whole-row snapshot, which duplicates the changes.
    slots.sort_by(|a, b| {
        let snapshot = |s: &Slot| matches!(s, Slot::Before | Slot::After);
        b.0.cmp(&a.0)
            .then(snapshot(&b.1).cmp(&snapshot(&a.1)))
            .then(a.2.cmp(&b.2))
    });
    let mut truncated = Vec::new();
    for (_, slot, name) in slots {
        if size(input) <= EVENT_BUDGET {
            break;
        }
        let value = match slot {
            Slot::Old(i) => input.changes[i].old.as_mut(),
            Slot::New(i) => input.changes[i].new.as_mut(),
            Slot::Before => input.metadata.as_mut().and_then(|m| m.get_mut("before")),
            Slot::After => input.metadata.as_mut().and_then(|m| m.get_mut("after")),
        };
        if let Some(value) = value {
            let bytes = serde_json::to_vec(value).unwrap_or_default();
            *value = Value::String(format!(
                "[truncated: {} bytes, sha256:{}]",
                bytes.len(),
                hex::encode(sha2::Sha256::digest(&bytes))
            ));
            truncated.push(Value::String(name));
        }
    }
    if !truncated.is_empty()
        && let Some(meta) = input.metadata.as_mut()
    {
        meta.insert("truncated".into(), Value::Array(truncated));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(op: &str) -> OutboxRow {
        OutboxRow {
            id: 7,
            txid: 900,
            schema: "public".into(),
            table: "users".into(),
            op: op.into(),
            pk: Some(json!([["id", 42]])),
            occurred_at: "2026-01-20T10:30:00.123456Z".parse().unwrap(),
            ..OutboxRow::default()
        }
    }

    fn tenant() -> TenantName {
        TenantName::default_tenant()
    }

    #[test]
    fn an_update_becomes_the_contract_event() {
        let mut r = row("update");
        r.old_values = Some(json!({"role": "user", "name": "Juan"}));
        r.new_values = Some(json!({"role": "admin", "name": "Juan Pérez"}));
        r.actor_id = Some("42".into());
        r.actor_name = Some("ana".into());
        r.ip = Some("192.168.1.100".into());
        r.user_agent = Some("Mozilla/5.0".into());
        r.request_id = Some("r-1".into());
        let e = seal(&r, "abc", &tenant(), &IngestPolicy::default(), Utc::now())
            .unwrap()
            .event;
        assert_eq!(e.id, "capture:abc:7");
        assert_eq!(e.action, "users.update");
        assert_eq!(e.category, "db");
        let target = e.target.unwrap();
        assert_eq!(
            (target.kind.as_str(), target.id.as_deref()),
            ("users", Some("42"))
        );
        let fields: Vec<_> = e.changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["name", "role"]);
        assert_eq!(e.changes[1].old, Some(json!("user")));
        assert_eq!(e.changes[1].new, Some(json!("admin")));
        let actor = e.actor.unwrap();
        assert_eq!(actor.id.as_deref(), Some("42"));
        assert_eq!(actor.kind, ActorType::User);
        assert_eq!(e.context.source.as_deref(), Some("db_trigger"));
        assert_eq!(e.context.ip.as_deref(), Some("192.168.1.100"));
        assert_eq!(e.metadata["txid"], json!(900));
        assert_eq!(
            bitacora_core::event::timestamp::format(&e.occurred_at),
            "2026-01-20T10:30:00.123456Z"
        );
    }

    #[test]
    fn the_same_row_seals_to_the_same_fingerprint_at_any_time() {
        let mut r = row("insert");
        r.new_values = Some(json!({"id": 42, "name": "ana"}));
        let a = seal(&r, "i", &tenant(), &IngestPolicy::default(), Utc::now()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = seal(&r, "i", &tenant(), &IngestPolicy::default(), Utc::now()).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.event.id, b.event.id);
    }

    #[test]
    fn inserts_list_new_values_and_deletes_old_ones() {
        let mut r = row("insert");
        r.new_values = Some(json!({"id": 42, "b": null}));
        let e = to_input(&r, "i", &tenant());
        assert_eq!(e.changes.len(), 2);
        assert!(e.changes.iter().all(|c| c.old.is_none() && c.new.is_some()));
        assert!(e.actor.is_none());
        let mut r = row("delete");
        r.old_values = Some(json!({"id": 42, "b": 1}));
        let e = to_input(&r, "i", &tenant());
        assert!(e.changes.iter().all(|c| c.new.is_none() && c.old.is_some()));
    }

    #[test]
    fn full_rows_keep_snapshots_and_list_only_changed_columns() {
        let mut r = row("update");
        r.full_rows = true;
        r.old_values = Some(json!({"id": 42, "a": 1, "b": 2}));
        r.new_values = Some(json!({"id": 42, "a": 1, "b": 3}));
        let e = to_input(&r, "i", &tenant());
        assert_eq!(e.changes.len(), 1);
        assert_eq!(e.changes[0].field, "b");
        let m = e.metadata.unwrap();
        assert_eq!(m["before"]["b"], json!(2));
        assert_eq!(m["after"]["b"], json!(3));
    }

    #[test]
    fn keys_and_tables_have_stable_names() {
        assert_eq!(target_id(&json!([["id", 42]])).as_deref(), Some("42"));
        assert_eq!(
            target_id(&json!([["email", "a@b"]])).as_deref(),
            Some("a@b")
        );
        assert_eq!(
            target_id(&json!([["org", 7], ["lang", "es"]])).as_deref(),
            Some(r#"[7,"es"]"#)
        );
        let long = "x".repeat(600);
        assert!(
            target_id(&json!([["k", long]]))
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(
            target_id(&json!([["k", "a\nb"]]))
                .unwrap()
                .starts_with("sha256:")
        );
        assert_eq!(action("users", "insert"), "users.insert");
        assert_eq!(
            action(&table_label("billing", "Фактуры"), "update"),
            "billing._______.update"
        );
        assert_eq!(table_label("public", "users"), "users");
    }

    #[test]
    fn unusable_context_is_cleaned_not_fatal() {
        let mut r = row("truncate");
        r.pk = None;
        r.ip = Some("not-an-ip".into());
        r.actor_name = Some("ana\u{0}\n".into());
        r.actor_type = Some("service".into());
        r.user_agent = Some("\u{7}".into());
        let e = seal(&r, "i", &tenant(), &IngestPolicy::default(), Utc::now())
            .unwrap()
            .event;
        assert_eq!(e.action, "users.truncate");
        assert_eq!(e.target.unwrap().id, None);
        assert_eq!(e.context.ip, None);
        assert_eq!(e.context.user_agent, None);
        assert_eq!(e.metadata["invalid_ip"], json!("not-an-ip"));
        let actor = e.actor.unwrap();
        assert_eq!(actor.name.as_deref(), Some("ana"));
        assert_eq!(actor.kind, ActorType::Service);
    }

    #[test]
    fn large_rows_fit_in_one_event() {
        let mut r = row("update");
        r.full_rows = true;
        let big = "é".repeat(200_000);
        r.old_values = Some(json!({"id": 42, "body": "short", "n": 1}));
        r.new_values = Some(json!({"id": 42, "body": big, "n": 2}));
        let sealed = seal(&r, "i", &tenant(), &IngestPolicy::default(), Utc::now()).unwrap();
        assert!(sealed.body.len() < MAX_EVENT_BYTES, "{}", sealed.body.len());
        let e = sealed.event;
        let body = e.changes.iter().find(|c| c.field == "body").unwrap();
        assert!(
            body.new
                .as_ref()
                .unwrap()
                .as_str()
                .unwrap()
                .starts_with("[truncated: 400002 bytes")
        );
        assert_eq!(body.old, Some(json!("short")));
        let n = e.changes.iter().find(|c| c.field == "n").unwrap();
        assert_eq!(n.new, Some(json!(2)));
        let truncated = e.metadata["truncated"].as_array().unwrap();
        assert!(truncated.contains(&json!("metadata.after")));
        assert!(truncated.contains(&json!("changes.body.new")));
    }
}
