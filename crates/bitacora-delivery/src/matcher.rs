//! Whether one event matches a search filter, evaluated in memory on the event itself.
//!
//! Streams and alert rules read the log in `seq` order and test each event here, rather than
//! asking the store to search: the store's full-text index may trail appends by a second,
//! and a position that skipped an event not yet indexed would lose it for good. The meaning
//! of each filter is the store's (the conformance suite's full-scan oracle, which this
//! follows), so a rule matches what the same search in the viewer shows.

use bitacora_core::Event;
use bitacora_core::event::normalize_ip;
use bitacora_core::query::EventFilter;
use bitacora_store::derive::{actor_search, fts_text};
use serde_json::Value;

use crate::spec::ChangeMatch;

/// True when `event` passes every part of `filter`.
pub fn matches(filter: &EventFilter, e: &Event) -> bool {
    let actor = e.actor.as_ref();
    let target = e.target.as_ref();
    (filter.actions.is_empty() || filter.actions.iter().any(|a| a.matches(&e.action)))
        && (filter.categories.is_empty() || filter.categories.contains(&e.category))
        && (filter.severities.is_empty() || filter.severities.contains(&e.severity))
        && filter.outcome.is_none_or(|o| o == e.outcome)
        && filter
            .actor_id
            .as_ref()
            .is_none_or(|a| actor.and_then(|x| x.id.as_ref()) == Some(a))
        && filter
            .actor
            .as_ref()
            .is_none_or(|a| actor_search(e).is_some_and(|s| s.contains(&a.to_lowercase())))
        && filter
            .target_type
            .as_ref()
            .is_none_or(|t| target.map(|x| &x.kind) == Some(t))
        && filter
            .target_id
            .as_ref()
            .is_none_or(|t| target.and_then(|x| x.id.as_ref()) == Some(t))
        && filter.ip.as_ref().is_none_or(|net| {
            e.context
                .ip_addr()
                .is_some_and(|ip| net.contains(&normalize_ip(ip)))
        })
        && filter
            .source
            .as_ref()
            .is_none_or(|s| e.context.source.as_ref() == Some(s))
        && filter.since.is_none_or(|t| e.occurred_at >= t)
        && filter.until.is_none_or(|t| e.occurred_at < t)
        && (filter.text.is_empty() || {
            let words: Vec<String> = fold(&fts_text(e))
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect();
            filter
                .text
                .iter()
                .all(|term| words.iter().any(|w| *w == fold(term)))
        })
}

/// True when the event changed `m.field` (to `m.to`, when given).
pub fn changed(m: &ChangeMatch, e: &Event) -> bool {
    e.changes.iter().any(|c| {
        c.field == m.field
            && m.to
                .as_ref()
                .is_none_or(|to| c.new.as_ref().is_some_and(|new| values_equal(new, to)))
    })
}

/// `"admin"` matches `"admin"`; `5` matches `5` and `"5"` (a rule written by hand should not
/// depend on how the application typed the value).
fn values_equal(a: &Value, b: &Value) -> bool {
    a == b || text(a) == text(b)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value at a dotted JSON path of the event (`actor.id`, `context.ip`, `metadata.reason`)
/// as text, or `None` when it is absent or null.
pub fn path_value(event: &Value, path: &str) -> Option<String> {
    let mut v = event;
    for part in path.split('.') {
        v = match v {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!v.is_null()).then(|| text(v))
}

/// Lowercase without the diacritics of Latin scripts, as the stores' full-text index folds
/// (SQLite FTS5 `remove_diacritics`, PostgreSQL `unaccent`). Written by hand: the workspace
/// has no Unicode normalization crate, and audit text is overwhelmingly Latin.
fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
            'ç' | 'ć' | 'č' => 'c',
            'é' | 'è' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => 'e',
            'í' | 'ì' | 'î' | 'ï' | 'ī' => 'i',
            'ñ' | 'ń' | 'ň' => 'n',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' | 'ō' => 'o',
            'ú' | 'ù' | 'û' | 'ü' | 'ū' | 'ů' => 'u',
            'ý' | 'ÿ' => 'y',
            'š' | 'ś' => 's',
            'ž' | 'ź' | 'ż' => 'z',
            'ł' => 'l',
            'ř' => 'r',
            'ď' => 'd',
            'ť' => 't',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitacora_core::TenantName;
    use bitacora_core::query::EventQuery;
    use serde_json::json;

    fn event(v: Value) -> Event {
        let mut v = v;
        v["id"] = json!("e");
        v["tenant"] = json!("default");
        v["received_at"] = json!("2026-01-20T10:30:00Z");
        v.as_object_mut()
            .unwrap()
            .entry("occurred_at")
            .or_insert(json!("2026-01-20T10:30:00Z"));
        v.as_object_mut()
            .unwrap()
            .entry("category")
            .or_insert(json!("user"));
        v.as_object_mut()
            .unwrap()
            .entry("severity")
            .or_insert(json!("low"));
        v.as_object_mut()
            .unwrap()
            .entry("outcome")
            .or_insert(json!("success"));
        serde_json::from_value(v).unwrap()
    }

    fn filter(q: &str) -> EventFilter {
        let pairs: Vec<(&str, &str)> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap())
            .collect();
        EventQuery::parse(pairs, &TenantName::default_tenant())
            .unwrap()
            .filter
    }

    #[test]
    fn filters_mean_what_the_search_means() {
        let e = event(json!({
            "action": "user.login", "outcome": "failure", "severity": "high",
            "actor": {"id": "42", "name": "Ana Gómez", "email": "ana@example.com"},
            "context": {"ip": "10.0.3.7", "source": "web"},
            "description": "Intento de auditoría fallido"
        }));
        for yes in [
            "",
            "action=user.*",
            "action=user.login,user.logout",
            "outcome=failure&min_severity=medium",
            "actor_id=42",
            "actor=GÓMEZ",
            "ip=10.0.0.0/16",
            "source=web",
            "q=auditoria",
            "q=INTENTO fallido",
            "since=2026-01-20&until=2026-01-20",
        ] {
            assert!(matches(&filter(yes), &e), "{yes}");
        }
        for no in [
            "action=user.logout",
            "outcome=success",
            "severity=critical",
            "actor_id=4",
            "ip=10.1.0.0/16",
            "target_type=user",
            "q=audit",
            "since=2026-01-21",
        ] {
            assert!(!matches(&filter(no), &e), "{no}");
        }
    }

    #[test]
    fn changes_and_paths() {
        let e = event(json!({
            "action": "user.role_change",
            "changes": [{"field": "role", "old": "user", "new": "admin"}, {"field": "level", "new": 5}]
        }));
        let m = |field: &str, to: Option<Value>| ChangeMatch {
            field: field.into(),
            to,
        };
        assert!(changed(&m("role", None), &e));
        assert!(changed(&m("role", Some(json!("admin"))), &e));
        assert!(!changed(&m("role", Some(json!("user"))), &e));
        assert!(changed(&m("level", Some(json!("5"))), &e));
        assert!(!changed(&m("email", None), &e));

        let v = json!({"actor": {"id": "42"}, "context": {"ip": null}, "metadata": {"n": 3}});
        assert_eq!(path_value(&v, "actor.id").as_deref(), Some("42"));
        assert_eq!(path_value(&v, "metadata.n").as_deref(), Some("3"));
        assert_eq!(path_value(&v, "context.ip"), None);
        assert_eq!(path_value(&v, "target.id"), None);
    }
}
