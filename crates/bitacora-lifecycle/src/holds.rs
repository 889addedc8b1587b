//! Legal holds (CONTRACT §9): a hold's filter is a set of the search parameters of CONTRACT §3,
//! stored as a JSON object; the events it covers are those a search with it finds. They are
//! matched with the store's own search, so a hold and a search never disagree (full text, IP
//! blocks, action prefixes, `since`/`until` included).

use bitacora_core::TenantName;
use bitacora_core::query::{EventQuery, Order, Pagination};
use bitacora_store::{LegalHoldRecord, Store, StoreError, StoreResult};
use serde_json::{Map, Value};

use crate::SeqSet;

/// Parameters that are not filters (the tenant is the hold's own).
const NOT_FILTERS: &[&str] = &["tenant", "order", "limit", "cursor", "page", "per_page"];

/// Why a hold's filter is refused, naming the parameter (`field`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub field: String,
    pub message: String,
}

/// Parses a hold's filter object into the query it stands for (in `tenant`). Values are
/// strings (lists comma-separated, as in a URL); an empty filter holds the whole log.
pub fn parse_filter(
    filter: &Map<String, Value>,
    tenant: &TenantName,
) -> Result<EventQuery, FilterError> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (k, v) in filter {
        if NOT_FILTERS.contains(&k.as_str()) {
            return Err(FilterError {
                field: format!("filter.{k}"),
                message: format!("`{k}` is not a filter"),
            });
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(FilterError {
                    field: format!("filter.{k}"),
                    message: "a filter value is a string (lists comma-separated)".into(),
                });
            }
        };
        pairs.push((k.as_str(), text));
    }
    let mut query = EventQuery::parse(pairs.iter().map(|(k, v)| (*k, v.as_str())), tenant)
        .map_err(|e| FilterError {
            field: format!("filter.{}", e.field.as_deref().unwrap_or("")),
            message: e.message,
        })?;
    query.order = Order::Asc;
    Ok(query)
}

/// The tenant's holds in force, with their queries.
pub async fn active(
    store: &dyn Store,
    tenant: &TenantName,
) -> StoreResult<Vec<(LegalHoldRecord, EventQuery)>> {
    let mut out = Vec::new();
    for hold in store.legal_holds(Some(tenant), false).await? {
        let filter: Map<String, Value> = serde_json::from_str(&hold.filter).map_err(|e| {
            StoreError::Corrupt(format!("legal hold {}: filter is not JSON: {e}", hold.id))
        })?;
        // A stored filter was checked when the hold was placed; one that no longer parses
        // holds everything rather than nothing.
        let query = parse_filter(&filter, tenant).unwrap_or_else(|e| {
            tracing::error!(hold = %hold.id, error = %e.message, "a legal hold's filter no longer parses: holding the whole log");
            let mut q = EventQuery::tenant(tenant.clone());
            q.order = Order::Asc;
            q
        });
        out.push((hold, query));
    }
    Ok(out)
}

/// The seqs in `first..=last` that any of `holds` covers.
pub(crate) async fn held_seqs(
    store: &dyn Store,
    tenant: &TenantName,
    holds: &[(LegalHoldRecord, EventQuery)],
    first: u64,
    last: u64,
) -> StoreResult<SeqSet> {
    let mut held = SeqSet::new();
    for (_, query) in holds {
        let mut after = first.checked_sub(1);
        'pages: loop {
            let mut q = query.clone();
            q.tenant = tenant.clone();
            q.page = Pagination::Cursor { limit: 1000, after };
            let page = store.search(&q).await?;
            for e in &page.events {
                if e.seq > last {
                    break 'pages;
                }
                held.insert(e.seq);
            }
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
    }
    Ok(held)
}

/// Whether any of `holds` covers an event in `first..=last` (one search row per hold).
pub(crate) async fn any_held(
    store: &dyn Store,
    tenant: &TenantName,
    holds: &[(LegalHoldRecord, EventQuery)],
    first: u64,
    last: u64,
) -> StoreResult<bool> {
    for (_, query) in holds {
        let mut q = query.clone();
        q.tenant = tenant.clone();
        q.page = Pagination::Cursor {
            limit: 1,
            after: first.checked_sub(1),
        };
        if store
            .search(&q)
            .await?
            .events
            .first()
            .is_some_and(|e| e.seq <= last)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a search finds `seq` under any of `holds` (for the tests and the API).
pub async fn is_held(
    store: &dyn Store,
    tenant: &TenantName,
    holds: &[(LegalHoldRecord, EventQuery)],
    seq: u64,
) -> StoreResult<bool> {
    Ok(held_seqs(store, tenant, holds, seq, seq)
        .await?
        .contains(&seq))
}
