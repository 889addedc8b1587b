//! How events are written for a destination: `bitacora` (the API's JSON) or `ocsf`.
//!
//! OCSF mapping (schema 1.1): `Authentication` (3002) for logins and logouts, `Account
//! Change` (3001) for changes to users, accounts and roles, `API Activity` (6003) for
//! everything else. Severity `low|medium|high|critical` → `severity_id` 2..5; outcome →
//! `status_id` 1 (Success) / 2 (Failure); the actor → `actor.user`; the target →
//! `resources[0]` (and `user` for account changes); `context.ip` → `src_endpoint.ip`;
//! `context.user_agent` → `http_request.user_agent`; `metadata.uid` = event id,
//! `metadata.sequence` = seq, `metadata.log_name` = tenant; what OCSF has no place for
//! (action, category, changes, the event's metadata) goes under `unmapped`.

use bitacora_core::Event;
use bitacora_core::event::{Outcome, Severity};
use bitacora_store::StoredEvent;
use serde_json::{Map, Value, json};

use crate::spec::Format;

/// The event's JSON text as `format` writes it. `event` is the parsed stored body; the
/// `bitacora` format does not need it (`None` is enough), the `ocsf` one does (`None` writes
/// `null`, which [`crate::stream`] never asks for).
pub fn render(format: Format, stored: &StoredEvent, event: Option<&Event>) -> String {
    match (format, event) {
        // The stored body carries `tenant`; `to_json` adds `seq` and `leaf_hash`, exactly as
        // `GET /v1/events/{id}` returns it, by splicing the stored (canonical) text: nothing
        // is parsed or serialized again.
        (Format::Bitacora, _) => stored.to_json(),
        (Format::Ocsf, Some(event)) => ocsf(stored.seq, event).to_string(),
        (Format::Ocsf, None) => "null".to_owned(),
    }
}

/// True when writing events in `format` needs them parsed.
pub fn needs_event(format: Format) -> bool {
    format == Format::Ocsf
}

/// The OCSF class an event maps to: `(class_uid, activity_id, class_name, activity_name)`.
fn ocsf_class(e: &Event) -> (u32, u32, &'static str, &'static str) {
    let action = e.action.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| action.contains(w));
    if has(&[
        "login",
        "logon",
        "signin",
        "sign_in",
        "logout",
        "logoff",
        "signout",
        "authenticat",
    ]) || e.category.eq_ignore_ascii_case("auth")
    {
        return if has(&["logout", "logoff", "signout", "sign_out"]) {
            (3002, 2, "Authentication", "Logoff")
        } else if has(&["login", "logon", "signin", "sign_in", "authenticat"]) {
            (3002, 1, "Authentication", "Logon")
        } else {
            (3002, 99, "Authentication", "Other")
        };
    }
    let target_kind = e
        .target
        .as_ref()
        .map(|t| t.kind.to_ascii_lowercase())
        .unwrap_or_default();
    let about_accounts = matches!(target_kind.as_str(), "user" | "account" | "role")
        || matches!(
            e.category.to_ascii_lowercase().as_str(),
            "user" | "users" | "account" | "accounts" | "role" | "roles"
        )
        || has(&["role"]);
    if about_accounts {
        let (id, name) = if has(&["password_reset", "password.reset"]) {
            (4, "Password Reset")
        } else if has(&["password"]) {
            (3, "Password Change")
        } else if has(&["create", "insert", "add", "register", "signup"]) {
            (1, "Create")
        } else if has(&["enable", "unlock", "unban"]) {
            (2, "Enable")
        } else if has(&["disable", "ban", "suspend"]) {
            (5, "Disable")
        } else if has(&["delete", "remove"]) {
            (6, "Delete")
        } else if has(&["lock"]) {
            (9, "Lock")
        } else {
            (99, "Other")
        };
        return (3001, id, "Account Change", name);
    }
    let (id, name) = if has(&["create", "insert", "add"]) {
        (1, "Create")
    } else if has(&["read", "view", "get", "export", "list", "search"]) {
        (2, "Read")
    } else if has(&["update", "change", "edit", "set", "modify"]) {
        (3, "Update")
    } else if has(&["delete", "remove", "truncate", "purge"]) {
        (4, "Delete")
    } else {
        (99, "Other")
    };
    (6003, id, "API Activity", name)
}

fn severity(s: Severity) -> (u32, &'static str) {
    match s {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

fn user_of(actor: Option<&bitacora_core::Actor>) -> Value {
    let mut user = Map::new();
    if let Some(a) = actor {
        if let Some(id) = &a.id {
            user.insert("uid".into(), json!(id));
        }
        if let Some(name) = &a.name {
            user.insert("name".into(), json!(name));
        }
        if let Some(email) = &a.email {
            user.insert("email_addr".into(), json!(email));
        }
        let kind = serde_json::to_value(a.kind).unwrap_or(Value::Null);
        user.insert("type".into(), kind);
    }
    if user.get("name").is_none() && user.get("uid").is_none() {
        user.insert("name".into(), json!("unknown"));
    }
    Value::Object(user)
}

/// The OCSF 1.1 form of an event.
pub fn ocsf(seq: u64, e: &Event) -> Value {
    let (class_uid, activity_id, class_name, activity_name) = ocsf_class(e);
    let (severity_id, severity_name) = severity(e.severity);
    let (status_id, status) = match e.outcome {
        Outcome::Success => (1, "Success"),
        Outcome::Failure => (2, "Failure"),
    };
    let actor_user = user_of(e.actor.as_ref());
    let mut out = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": class_uid / 1000,
        "category_name": if class_uid / 1000 == 3 { "Identity & Access Management" } else { "Application Activity" },
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": format!("{class_name}: {activity_name}"),
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": status_id,
        "status": status,
        "time": e.occurred_at.timestamp_millis(),
        "metadata": {
            "version": "1.1.0",
            "product": {"name": "bitacora", "vendor_name": "bitacora", "version": env!("CARGO_PKG_VERSION")},
            "uid": e.id,
            "sequence": seq,
            "log_name": e.tenant.as_str(),
            "logged_time": e.received_at.timestamp_millis(),
        },
        "actor": {"user": actor_user.clone()},
        "unmapped": {"action": e.action, "category": e.category},
    });
    let o = out.as_object_mut().expect("an object");
    if let Some(d) = &e.description {
        o.insert("message".into(), json!(d));
    }
    let mut endpoint = Map::new();
    if let Some(ip) = &e.context.ip {
        endpoint.insert("ip".into(), json!(ip));
    }
    if let Some(ua) = &e.context.user_agent {
        o.insert("http_request".into(), json!({"user_agent": ua}));
    }
    if let Some(t) = &e.target {
        let mut r = Map::new();
        r.insert("type".into(), json!(t.kind));
        if let Some(id) = &t.id {
            r.insert("uid".into(), json!(id));
        }
        if let Some(name) = &t.name {
            r.insert("name".into(), json!(name));
        }
        o.insert("resources".into(), json!([r]));
    }
    match class_uid {
        3002 => {
            // The user who logged in or out is the event's actor.
            o.insert("user".into(), actor_user);
            o.insert("src_endpoint".into(), Value::Object(endpoint));
        }
        3001 => {
            // The account changed is the target when it is one, else the actor's own.
            let user = match &e.target {
                Some(t) => {
                    let mut u = Map::new();
                    if let Some(id) = &t.id {
                        u.insert("uid".into(), json!(id));
                    }
                    u.insert(
                        "name".into(),
                        json!(
                            t.name
                                .clone()
                                .or(t.id.clone())
                                .unwrap_or_else(|| "unknown".into())
                        ),
                    );
                    Value::Object(u)
                }
                None => actor_user,
            };
            o.insert("user".into(), user);
            o.insert("src_endpoint".into(), Value::Object(endpoint));
        }
        _ => {
            o.insert("api".into(), json!({"operation": e.action}));
            o.insert("src_endpoint".into(), Value::Object(endpoint));
        }
    }
    if let Some(request_id) = &e.context.request_id {
        o["api"]
            .as_object_mut()
            .map(|api| api.insert("request".into(), json!({"uid": request_id})));
    }
    let unmapped = o["unmapped"].as_object_mut().expect("an object");
    if !e.changes.is_empty() {
        unmapped.insert(
            "changes".into(),
            serde_json::to_value(&e.changes).unwrap_or_default(),
        );
    }
    if !e.metadata.is_empty() {
        unmapped.insert("metadata".into(), Value::Object(e.metadata.clone()));
    }
    if let Some(source) = &e.context.source {
        unmapped.insert("source".into(), json!(source));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: Value) -> Event {
        let mut v = v;
        let o = v.as_object_mut().unwrap();
        o.insert("id".into(), json!("ev-1"));
        o.insert("tenant".into(), json!("acme"));
        o.insert("received_at".into(), json!("2026-01-20T10:30:01Z"));
        o.entry("occurred_at")
            .or_insert(json!("2026-01-20T10:30:00Z"));
        o.entry("category").or_insert(json!("user"));
        o.entry("severity").or_insert(json!("low"));
        o.entry("outcome").or_insert(json!("success"));
        serde_json::from_value(v).unwrap()
    }

    /// The fields OCSF 1.1 requires of every event and of each class used.
    fn assert_valid(v: &Value) {
        for field in [
            "activity_id",
            "category_uid",
            "class_uid",
            "severity_id",
            "time",
            "type_uid",
            "metadata",
        ] {
            assert!(!v[field].is_null(), "missing {field}: {v}");
        }
        assert!(v["metadata"]["product"].is_object(), "{v}");
        assert!(v["metadata"]["version"].is_string(), "{v}");
        assert_eq!(
            v["type_uid"].as_u64().unwrap(),
            v["class_uid"].as_u64().unwrap() * 100 + v["activity_id"].as_u64().unwrap()
        );
        match v["class_uid"].as_u64().unwrap() {
            3002 | 3001 => assert!(v["user"].is_object(), "{v}"),
            6003 => {
                assert!(v["actor"].is_object(), "{v}");
                assert!(v["api"]["operation"].is_string(), "{v}");
                assert!(v["src_endpoint"].is_object(), "{v}");
            }
            other => panic!("unexpected class {other}"),
        }
    }

    #[test]
    fn logins_role_changes_and_the_rest_map_to_their_classes() {
        let login = event(json!({
            "action": "user.login", "outcome": "failure", "severity": "medium",
            "actor": {"id": "42", "name": "ana", "email": "ana@example.com"},
            "context": {"ip": "192.168.1.100", "user_agent": "Mozilla/5.0"}
        }));
        let v = ocsf(7, &login);
        assert_valid(&v);
        assert_eq!(v["class_uid"], 3002);
        assert_eq!(v["type_uid"], 300201);
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["severity_id"], 3);
        assert_eq!(v["user"]["uid"], "42");
        assert_eq!(v["src_endpoint"]["ip"], "192.168.1.100");
        assert_eq!(v["http_request"]["user_agent"], "Mozilla/5.0");
        assert_eq!(v["metadata"]["uid"], "ev-1");
        assert_eq!(v["metadata"]["sequence"], 7);

        let role = event(json!({
            "action": "user.role_change", "severity": "critical",
            "actor": {"id": "1", "name": "admin"},
            "target": {"type": "user", "id": "456", "name": "Juan Pérez"},
            "changes": [{"field": "role", "old": "user", "new": "admin"}],
            "metadata": {"reason": "manual"}
        }));
        let v = ocsf(8, &role);
        assert_valid(&v);
        assert_eq!(v["class_uid"], 3001);
        assert_eq!(v["severity_id"], 5);
        assert_eq!(v["user"]["uid"], "456");
        assert_eq!(v["resources"][0]["uid"], "456");
        assert_eq!(v["unmapped"]["changes"][0]["new"], "admin");
        assert_eq!(v["unmapped"]["metadata"]["reason"], "manual");

        let device = event(json!({
            "action": "device.disable", "category": "device",
            "target": {"type": "device", "id": "SW-01"}, "context": {"request_id": "r-1"}
        }));
        let v = ocsf(9, &device);
        assert_valid(&v);
        assert_eq!(v["class_uid"], 6003);
        assert_eq!(v["api"]["operation"], "device.disable");
        assert_eq!(v["api"]["request"]["uid"], "r-1");
        assert_eq!(v["actor"]["user"]["name"], "unknown");
    }
}
