//! The export walk, shared by `GET /v1/export` and `bitacora export`: every event a query
//! matches, read in cursor pages of [`EXPORT_PAGE`], in constant memory.
//!
//! An export is bounded by the tenant's log size when it starts, so exporting under heavy
//! ingest ends, and it holds exactly the events that existed when it began.
//!
//! CSV cells that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab
//! or carriage return) are prefixed with `'` (OWASP's advice against CSV injection): event
//! content is attacker-controlled. NDJSON is exported exactly as stored.

use std::sync::Arc;

use bitacora_core::query::{EventQuery, Order, Pagination};
use bitacora_core::{Event, event::timestamp};
use bitacora_store::{Store, StoreError, StoreResult, StoredEvent};
use futures::{Stream, StreamExt as _, stream};

/// Events per store read.
pub const EXPORT_PAGE: u32 = 1000;

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "seq",
    "id",
    "tenant",
    "occurred_at",
    "received_at",
    "action",
    "category",
    "severity",
    "outcome",
    "actor_id",
    "actor_name",
    "actor_email",
    "actor_type",
    "target_type",
    "target_id",
    "target_name",
    "ip",
    "user_agent",
    "request_id",
    "source",
    "description",
    "changes",
    "metadata",
    "leaf_hash",
];

/// Every event `query` matches, in its order; the query's own pagination is ignored.
pub fn export_stream(
    store: Arc<dyn Store>,
    query: EventQuery,
) -> impl Stream<Item = Result<StoredEvent, StoreError>> + Send + 'static {
    export_pages(store, query, None).flat_map(|page| {
        stream::iter(match page {
            Ok(events) => events.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    })
}

/// The same walk, a page at a time. `bound` is the log size to stop at (read from the store
/// when `None`). After an error the stream ends.
pub fn export_pages(
    store: Arc<dyn Store>,
    query: EventQuery,
    bound: Option<u64>,
) -> impl Stream<Item = StoreResult<Vec<StoredEvent>>> + Send + 'static {
    struct Walk {
        store: Arc<dyn Store>,
        query: EventQuery,
        bound: Option<u64>,
        after: Option<u64>,
        started: bool,
        done: bool,
    }
    let walk = Walk {
        store,
        query,
        bound,
        after: None,
        started: false,
        done: false,
    };
    stream::unfold(walk, |mut w| async move {
        if w.done {
            return None;
        }
        if !w.started {
            w.started = true;
            let bound = match w.bound {
                Some(b) => b,
                None => match w.store.log_size(&w.query.tenant).await {
                    Ok(b) => b,
                    Err(e) => {
                        w.done = true;
                        return Some((Err(e), w));
                    }
                },
            };
            w.bound = Some(bound);
            if bound == 0 {
                return None;
            }
            // Newest first starts just below the bound; oldest first stops at it.
            if w.query.order == Order::Desc {
                w.after = Some(bound);
            }
        }
        let bound = w.bound.unwrap_or(0);
        let mut page_query = w.query.clone();
        page_query.page = Pagination::Cursor {
            limit: EXPORT_PAGE,
            after: w.after,
        };
        match w.store.search(&page_query).await {
            Ok(page) => {
                let next = page.next_after;
                let mut events = page.events;
                if w.query.order == Order::Asc {
                    let before = events.len();
                    events.retain(|e| e.seq < bound);
                    if events.len() < before {
                        w.done = true;
                    }
                }
                // An empty page ends the walk even if the store hints at more: no endless loop.
                match next {
                    Some(next) if !w.done && !events.is_empty() => w.after = Some(next),
                    _ => w.done = true,
                }
                Some((Ok(events), w))
            }
            Err(e) => {
                w.done = true;
                Some((Err(e), w))
            }
        }
    })
}

/// The CSV header row.
pub fn csv_header() -> &'static [&'static str] {
    CSV_COLUMNS
}

/// One CSV row for `stored`, with the formula guard applied to every text cell.
pub fn csv_record(stored: &StoredEvent) -> Result<Vec<String>, serde_json::Error> {
    let e: Event = serde_json::from_str(&stored.body)?;
    let actor = e.actor.as_ref();
    let target = e.target.as_ref();
    let opt = |v: Option<&String>| v.cloned().unwrap_or_default();
    let changes = if e.changes.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&e.changes)?
    };
    let metadata = if e.metadata.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&e.metadata)?
    };
    let cells = vec![
        stored.seq.to_string(),
        e.id.clone(),
        e.tenant.to_string(),
        timestamp::format(&e.occurred_at),
        timestamp::format(&e.received_at),
        e.action.clone(),
        e.category.clone(),
        e.severity.to_string(),
        e.outcome.to_string(),
        opt(actor.and_then(|a| a.id.as_ref())),
        opt(actor.and_then(|a| a.name.as_ref())),
        opt(actor.and_then(|a| a.email.as_ref())),
        actor.map(|a| a.kind.to_string()).unwrap_or_default(),
        target.map(|t| t.kind.clone()).unwrap_or_default(),
        opt(target.and_then(|t| t.id.as_ref())),
        opt(target.and_then(|t| t.name.as_ref())),
        opt(e.context.ip.as_ref()),
        opt(e.context.user_agent.as_ref()),
        opt(e.context.request_id.as_ref()),
        opt(e.context.source.as_ref()),
        opt(e.description.as_ref()),
        changes,
        metadata,
        bitacora_core::canonical::hex_hash(&stored.leaf_hash),
    ];
    Ok(cells.into_iter().map(guard_formula).collect())
}

/// CSV bytes for a page of events, optionally preceded by the header row.
pub fn csv_chunk(events: &[StoredEvent], header: bool) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(events.len() * 400 + 300));
    if header {
        w.write_record(csv_header())?;
    }
    for event in events {
        let record = csv_record(event).map_err(|e| csv::Error::from(std::io::Error::other(e)))?;
        w.write_record(&record)?;
    }
    w.into_inner()
        .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))
}

/// NDJSON bytes for a page of events: each exactly as `GET /v1/events/{id}` returns it.
pub fn ndjson_chunk(events: &[StoredEvent]) -> Vec<u8> {
    let mut out = String::with_capacity(events.iter().map(|e| e.body.len() + 100).sum());
    for event in events {
        event.write_json(&mut out);
        out.push('\n');
    }
    out.into_bytes()
}

/// Defuses a cell a spreadsheet would evaluate.
fn guard_formula(cell: String) -> String {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}"),
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitacora_core::{EventInput, IngestContext, IngestPolicy, SealedEvent};

    fn stored(json: &str, seq: u64) -> StoredEvent {
        let sealed = SealedEvent::prepare(
            EventInput::from_json(json.as_bytes()).unwrap(),
            &IngestPolicy::default(),
            &IngestContext {
                pinned_tenant: None,
                received_at: timestamp::parse("2026-01-20T10:30:01Z").unwrap(),
                client_ip: None,
                allow_reserved: false,
            },
        )
        .unwrap();
        StoredEvent {
            seq,
            leaf_hash: sealed.leaf_hash,
            body: sealed.body,
        }
    }

    #[test]
    fn csv_rows_follow_the_columns_and_defuse_formulas() {
        let e = stored(
            r#"{"id":"e1","action":"user.update","actor":{"id":"42","name":"=HYPERLINK(\"x\")"},
                "target":{"type":"user","id":"7"},"description":"-1+1","changes":[{"field":"role","old":"a","new":"b"}],
                "metadata":{"k":1},"context":{"ip":"10.0.0.1"}}"#,
            3,
        );
        let row = csv_record(&e).unwrap();
        assert_eq!(row.len(), CSV_COLUMNS.len());
        let cell = |name: &str| row[CSV_COLUMNS.iter().position(|c| *c == name).unwrap()].as_str();
        assert_eq!(cell("seq"), "3");
        assert_eq!(cell("id"), "e1");
        assert_eq!(cell("actor_name"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("description"), "'-1+1");
        assert_eq!(cell("actor_type"), "user");
        assert_eq!(cell("ip"), "10.0.0.1");
        assert_eq!(cell("changes"), r#"[{"field":"role","old":"a","new":"b"}]"#);
        assert_eq!(cell("metadata"), r#"{"k":1}"#);
        assert_eq!(cell("leaf_hash").len(), 64);

        let bytes = csv_chunk(&[e], true).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("seq,id,tenant,occurred_at,"));
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn ndjson_lines_are_the_stored_json() {
        let events = [
            stored(r#"{"action":"a"}"#, 0),
            stored(r#"{"action":"b"}"#, 1),
        ];
        let text = String::from_utf8(ndjson_chunk(&events)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], events[1].to_json());
    }
}
