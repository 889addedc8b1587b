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
//! - A row that cannot be read as a captured change at all ([`parse_row`] fails: a key that is
//!   not an array, an unknown operation, values that are not rows) is quarantined: it becomes a
//!   `bitacora.capture.rejected` event (category `bitacora`) under the same id, holding the raw
//!   row (bounded, [`seal_rejected`]), and is deleted like any drained row, so one bad row never
//!   stops the changes after it.

use bitacora_core::event::{MAX_EVENT_BYTES, MAX_SHORT_CHARS, MAX_TEXT_CHARS};
use bitacora_core::{
    Actor, ActorType, Change, Context, EventInput, FieldError, IngestContext, IngestPolicy,
    Outcome, SealedEvent, Severity, Target, TenantName,
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
/// the row is still recorded, by table, key, operation and time, with the reason. When even
/// that is refused, the caller quarantines the row ([`seal_rejected`]).
pub fn seal_fallback(
    row: &OutboxRow,
    install_id: &str,
    tenant: &TenantName,
    policy: &IngestPolicy,
    received_at: DateTime<Utc>,
    error: &str,
) -> Result<SealedEvent, FieldError> {
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
}

/// The action of the event that quarantines an outbox row the drain cannot convert.
pub const REJECTED_ACTION: &str = "bitacora.capture.rejected";
/// The raw row kept in a rejected row's event, at most (its JSON text, bytes).
pub const REJECTED_ROW_BYTES: usize = 16 * 1024;

/// Reads outbox row `id` from its JSON (`to_jsonb(outbox_row)::text`): the columns of every
/// schema version, checked. Whatever does not hold a captured change is an error naming the
/// column at fault, and the row is quarantined ([`seal_rejected`]) instead of drained.
///
/// The primary key comes from `pk` (rows written by schema version 1 triggers) or from
/// `key_columns` (a `text[]` literal, version 2 on) and the row's values: new for insert and
/// update, old for delete.
pub fn parse_row(id: i64, raw: &str) -> Result<OutboxRow, String> {
    let doc: Value =
        serde_json::from_str(raw).map_err(|e| format!("the row is not readable JSON: {e}"))?;
    let doc = doc.as_object().ok_or("the row is not a JSON object")?;
    let text = |column: &str| -> Result<Option<String>, String> {
        match doc.get(column) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{column}` is not text")),
        }
    };
    let required = |column: &str| -> Result<String, String> {
        text(column)?.ok_or_else(|| format!("`{column}` is missing"))
    };
    let values = |column: &str| -> Result<Option<Value>, String> {
        match doc.get(column) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(_) => Err(format!("`{column}` is not a row (a JSON object)")),
        }
    };

    let txid = doc
        .get("txid")
        .and_then(Value::as_i64)
        .ok_or("`txid` is not a transaction id")?;
    let schema = required("schema_name")?;
    let table = required("table_name")?;
    let op = required("op")?.to_ascii_lowercase();
    let old_values = values("old_values")?;
    let new_values = values("new_values")?;
    match (op.as_str(), &old_values, &new_values) {
        ("insert", _, Some(_)) | ("delete", Some(_), _) | ("update", Some(_), Some(_)) => {}
        ("truncate", _, _) => {}
        ("insert" | "delete" | "update", _, _) => {
            return Err(format!("an {op} without the row it changed"));
        }
        _ => {
            return Err(format!(
                "`op` {op:?} is not insert, update, delete or truncate"
            ));
        }
    }
    let full_rows = match doc.get("full_rows") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("`full_rows` is not a boolean".into()),
    };
    let occurred_at = doc
        .get("occurred_at")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or("`occurred_at` is not a time")?
        .with_timezone(&Utc);

    let pk = if op == "truncate" {
        None
    } else if let Some(pk) = doc.get("pk").filter(|v| !v.is_null()) {
        // Written by a version 1 trigger: [[column, value], ...].
        let pairs = pk
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or("`pk` is not a key")?;
        if !pairs.iter().all(|p| {
            p.as_array()
                .is_some_and(|p| p.len() == 2 && p[0].is_string() && !p[1].is_null())
        }) {
            return Err("`pk` is not a key".into());
        }
        Some(pk.clone())
    } else {
        let literal = required("key_columns")?;
        let columns = parse_text_array(&literal)
            .map_err(|e| format!("`key_columns` is not an array of column names: {e}"))?;
        if columns.is_empty() {
            return Err("`key_columns` names no column".into());
        }
        let row = new_values
            .as_ref()
            .or(old_values.as_ref())
            .and_then(Value::as_object)
            .ok_or("no row to read the key from")?;
        let mut pairs = Vec::with_capacity(columns.len());
        for column in columns {
            match row.get(&column) {
                Some(v) if !v.is_null() => pairs.push(json!([column, v])),
                _ => return Err(format!("key column `{column}` is not in the row")),
            }
        }
        Some(Value::Array(pairs))
    };

    Ok(OutboxRow {
        id,
        txid,
        schema,
        table,
        op,
        pk,
        old_values,
        new_values,
        full_rows,
        actor_id: text("actor_id")?,
        actor_name: text("actor_name")?,
        actor_email: text("actor_email")?,
        actor_type: text("actor_type")?,
        ip: text("ip")?,
        user_agent: text("user_agent")?,
        request_id: text("request_id")?,
        occurred_at,
    })
}

/// The elements of a one-dimensional `text[]` literal as PostgreSQL writes it (`{id}`,
/// `{org,lang}`, `{"a b","x\"y"}`). NULL elements, nested arrays and dimension prefixes are
/// refused: a key names columns.
pub fn parse_text_array(literal: &str) -> Result<Vec<String>, String> {
    let inner = literal
        .trim()
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| "not `{...}`".to_owned())?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut item = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err("an unterminated quoted element".into()),
                    Some('\\') => item.push(chars.next().ok_or("a dangling escape")?),
                    Some('"') => break,
                    Some(c) => item.push(c),
                }
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                match c {
                    '{' | '}' | '"' => return Err(format!("an unexpected `{c}`")),
                    '\\' => item.push(chars.next().ok_or("a dangling escape")?),
                    c => item.push(c),
                }
            }
            let trimmed = item.trim_end();
            if trimmed.is_empty() {
                return Err("an empty element".into());
            }
            if trimmed.eq_ignore_ascii_case("null") {
                return Err("a NULL element".into());
            }
            item.truncate(trimmed.len());
        }
        out.push(item);
        match chars.next() {
            None => return Ok(out),
            Some(',') => {}
            Some(c) => return Err(format!("an unexpected `{c}`")),
        }
    }
}

/// The event that quarantines outbox row `outbox_id`, which cannot become the event of a
/// change (`reason`): action `bitacora.capture.rejected`, category `bitacora`, severity high,
/// outcome failure, under the id the change's event would have had (so a re-sent pass is a
/// duplicate, as for any row), with the raw row (`raw`, the outbox row's JSON) in
/// `metadata.row` — as JSON up to [`REJECTED_ROW_BYTES`], else as its first
/// [`REJECTED_ROW_BYTES`] as text — with its size and SHA-256. Never fails: when the row's
/// JSON is refused by the event model, it is kept as text; when that is refused too, only its
/// size and hash are kept.
pub fn seal_rejected(
    outbox_id: i64,
    raw: &str,
    reason: &str,
    install_id: &str,
    tenant: &TenantName,
    policy: &IngestPolicy,
    received_at: DateTime<Utc>,
) -> SealedEvent {
    let parsed: Option<Value> = serde_json::from_str(raw).ok();
    let occurred_at = parsed
        .as_ref()
        .and_then(|v| v.get("occurred_at"))
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| bitacora_core::event::timestamp::format(&t.with_timezone(&Utc)));
    let as_json = parsed.filter(|v| v.is_object() && raw.len() <= REJECTED_ROW_BYTES);
    let mut cut = raw.len().min(REJECTED_ROW_BYTES);
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    let as_text = Value::String(raw[..cut].chars().filter(|c| !c.is_control()).collect());
    // The row as JSON, else as text, else only its size and hash.
    let mut attempts: Vec<Option<Value>> = as_json.into_iter().map(Some).collect();
    attempts.push(Some(as_text));
    attempts.push(None);
    for row in attempts {
        let mut metadata = Map::new();
        metadata.insert("outbox_id".into(), json!(outbox_id));
        metadata.insert(
            "reason".into(),
            Value::String(clean(reason, MAX_SHORT_CHARS).unwrap_or_else(|| "unknown".into())),
        );
        if let Some(row) = row {
            metadata.insert("row".into(), row);
        }
        metadata.insert("row_bytes".into(), json!(raw.len()));
        metadata.insert(
            "row_sha256".into(),
            Value::String(hex::encode(sha2::Sha256::digest(raw.as_bytes()))),
        );
        let input = EventInput {
            id: Some(event_id(install_id, outbox_id)),
            occurred_at: occurred_at.clone(),
            tenant: Some(tenant.clone()),
            action: REJECTED_ACTION.to_owned(),
            category: Some("bitacora".to_owned()),
            severity: Some(Severity::High),
            outcome: Some(Outcome::Failure),
            target: Some(Target {
                kind: "bitacora_capture.outbox".to_owned(),
                id: Some(outbox_id.to_string()),
                name: None,
            }),
            description: Some(
                "A captured change could not be converted into an event; its outbox row was \
                 quarantined here and skipped"
                    .to_owned(),
            ),
            context: Some(Context {
                source: Some("bitacora".to_owned()),
                ..Context::default()
            }),
            metadata: Some(metadata),
            ..EventInput::default()
        };
        let sealed = SealedEvent::prepare(
            input,
            policy,
            &IngestContext {
                pinned_tenant: None,
                received_at,
                client_ip: None,
                allow_reserved: true,
            },
        );
        if let Ok(sealed) = sealed {
            return sealed;
        }
    }
    unreachable!("the last attempt holds only constants, the install id and numbers")
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

    #[test]
    fn text_array_literals_read_as_postgresql_writes_them() {
        assert_eq!(parse_text_array("{id}").unwrap(), ["id"]);
        assert_eq!(parse_text_array("{org,lang}").unwrap(), ["org", "lang"]);
        assert_eq!(
            parse_text_array(r#"{"a b","x\"y",c\,d, e }"#).unwrap(),
            ["a b", "x\"y", "c,d", "e"]
        );
        assert_eq!(parse_text_array(r#"{"NULL",""}"#).unwrap(), ["NULL", ""]);
        assert!(parse_text_array("{}").unwrap().is_empty());
        for bad in [
            "not an array",
            "{a,}",
            "{,a}",
            "{NULL}",
            "{a,{b}}",
            "[1:1]={a}",
            r#"{"open}"#,
            r#"{a"b}"#,
            "{a\\",
        ] {
            assert!(parse_text_array(bad).is_err(), "{bad}");
        }
    }

    fn raw(overrides: Value) -> String {
        let mut doc = json!({
            "id": 7, "txid": 900, "schema_name": "public", "table_name": "users", "op": "UPDATE",
            "key_columns": "{id}", "pk": null, "full_rows": false,
            "old_values": {"id": 42, "role": "user"}, "new_values": {"id": 42, "role": "admin"},
            "actor_id": "42", "actor_name": "", "actor_email": null, "actor_type": null,
            "ip": null, "user_agent": null, "request_id": null,
            "occurred_at": "2026-01-20T11:30:00.123456+01:00"
        });
        for (k, v) in overrides.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc.to_string()
    }

    #[test]
    fn outbox_rows_of_every_version_parse_and_bad_ones_name_the_column() {
        let r = parse_row(7, &raw(json!({}))).unwrap();
        assert_eq!(r.op, "update");
        assert_eq!(r.pk, Some(json!([["id", 42]])));
        assert_eq!(r.actor_id.as_deref(), Some("42"));
        assert_eq!(r.actor_name, None);
        assert_eq!(
            bitacora_core::event::timestamp::format(&r.occurred_at),
            "2026-01-20T10:30:00.123456Z"
        );
        // Version 1: lower-case op, the key as pairs, no key_columns.
        let v1 = parse_row(
            7,
            &raw(
                json!({"op": "delete", "key_columns": null, "pk": [["b", "es"], ["a", 7]],
                        "new_values": null}),
            ),
        )
        .unwrap();
        assert_eq!(v1.pk, Some(json!([["b", "es"], ["a", 7]])));
        let t = parse_row(
            7,
            &raw(json!({"op": "TRUNCATE", "key_columns": null,
                                          "old_values": null, "new_values": null})),
        )
        .unwrap();
        assert_eq!(t.pk, None);
        for (overrides, column) in [
            (json!({"key_columns": "not an array"}), "key_columns"),
            (json!({"key_columns": "{}"}), "key_columns"),
            (json!({"key_columns": "{nope}"}), "key column `nope`"),
            (json!({"op": "explode"}), "op"),
            (json!({"op": 3}), "op"),
            (json!({"old_values": "a scalar"}), "old_values"),
            (json!({"new_values": null}), "without the row"),
            (json!({"txid": "x"}), "txid"),
            (json!({"table_name": null}), "table_name"),
            (json!({"full_rows": "yes"}), "full_rows"),
            (json!({"actor_id": 42}), "actor_id"),
            (json!({"occurred_at": "infinity"}), "occurred_at"),
            (json!({"key_columns": null, "pk": "7"}), "pk"),
            (json!({"key_columns": null, "pk": [["id", null]]}), "pk"),
        ] {
            let err = parse_row(7, &raw(overrides.clone())).unwrap_err();
            assert!(err.contains(column), "{overrides}: {err}");
        }
        assert!(parse_row(7, "[1]").is_err());
        assert!(
            parse_row(7, r#"{"n": 1e400}"#)
                .unwrap_err()
                .contains("JSON")
        );
    }

    #[test]
    fn a_rejected_row_becomes_a_bounded_bitacora_event_under_its_own_id() {
        let policy = IngestPolicy::default();
        let small = raw(json!({"key_columns": "not an array"}));
        let a = seal_rejected(7, &small, "bad key", "abc", &tenant(), &policy, Utc::now());
        let b = seal_rejected(7, &small, "bad key", "abc", &tenant(), &policy, Utc::now());
        assert_eq!(
            a.fingerprint, b.fingerprint,
            "a re-sent pass is a duplicate"
        );
        let e = a.event;
        assert_eq!(e.id, "capture:abc:7");
        assert_eq!(e.action, REJECTED_ACTION);
        assert_eq!(e.category, "bitacora");
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.outcome, Outcome::Failure);
        assert_eq!(e.metadata["row"]["key_columns"], "not an array");
        assert_eq!(e.metadata["reason"], "bad key");
        assert_eq!(
            bitacora_core::event::timestamp::format(&e.occurred_at),
            "2026-01-20T10:30:00.123456Z"
        );
        // Too large, unreadable, or hostile: kept as bounded text, never a failure.
        let huge = raw(json!({"new_values": {"id": 1, "body": "é".repeat(100_000)}}));
        let unreadable = format!(
            "{{\"n\": 1e400, \"junk\": \"{}\"}}",
            "\\u0001".repeat(50_000)
        );
        for raw in [huge.as_str(), unreadable.as_str(), "", "\u{0}"] {
            let sealed = seal_rejected(
                9,
                raw,
                &"r".repeat(10_000),
                "abc",
                &tenant(),
                &policy,
                Utc::now(),
            );
            assert!(sealed.body.len() < 20 * 1024, "{}", sealed.body.len());
            assert_eq!(sealed.event.metadata["row_bytes"], json!(raw.len()));
        }
    }
}
