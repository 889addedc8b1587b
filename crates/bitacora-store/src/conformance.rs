//! The behavioural suite every [`Store`] runs in its own tests, so that the embedded and the
//! PostgreSQL store answer every query the same way.
//!
//! A store crate instantiates it with [`suite!`], passing an expression that yields a fresh,
//! empty store and a guard that keeps its resources alive:
//!
//! ```ignore
//! bitacora_store::conformance::suite!({
//!     let dir = tempfile::tempdir().unwrap();
//!     (Arc::new(MyStore::open(dir.path())) as Arc<dyn Store>, dir)
//! });
//! ```

use std::time::Duration;

use bitacora_core::canonical::{SealedEvent, leaf_hash};
use bitacora_core::event::{IngestContext, IngestPolicy, timestamp};
use bitacora_core::query::{Cursor, EventQuery, Order, Pagination};
use bitacora_core::{Event, EventInput, TenantName};
use serde_json::json;

use crate::{
    ApiKeyRecord, AppendOutcome, LegalHoldRecord, PurgeRecord, Scope, Store, StoreError,
    StoredCheckpoint, StoredCosignature, ViewerTokenRecord,
};
use bitacora_core::merkle;

/// Generates one `#[tokio::test]` per conformance check.
#[macro_export]
macro_rules! suite {
    ($make:expr) => {
        $crate::suite!(@tests $make;
            appends_are_gapless_per_tenant,
            duplicates_and_conflicts,
            lookups_by_id_and_seq,
            bodies_hash_to_their_leaf,
            filters,
            cursor_pages_cover_everything_once,
            numbered_pages_have_exact_totals,
            full_text_folds_case_and_diacritics,
            aggregates,
            stats_window,
            tenants_are_isolated,
            api_keys,
            viewer_tokens,
            merkle_tree_matches_the_leaves,
            level_runs_match_the_leaves,
            checkpoints_are_kept,
            close_drains_and_refuses_writes,
            random_searches_match_a_full_scan,
            random_stats_match_a_full_scan,
            delivery_records,
            purge_keeps_the_tree_and_the_summaries,
            purge_refuses_what_it_cannot_prove,
            purge_many_purges_each_record,
            purge_keeps_actor_names_to_what_remains,
            address_searches_follow_appends_and_purges,
            legal_holds_and_rule_sets,
        );
    };
    (@tests $make:expr; $($name:ident),+ $(,)?) => {
        mod conformance_suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _guard) = $make;
                    $crate::conformance::$name(store.as_ref()).await;
                }
            )+
        }
    };
}
pub use suite;

/// One event, sealed as the server seals it when it receives it at `received_at` (RFC 3339).
pub fn seal(value: serde_json::Value, received_at: &str) -> SealedEvent {
    let input = EventInput::from_json(value.to_string().as_bytes()).expect("test event parses");
    SealedEvent::prepare(
        input,
        &IngestPolicy::default(),
        &IngestContext {
            pinned_tenant: None,
            received_at: timestamp::parse(received_at).expect("test timestamp"),
            client_ip: None,
            allow_reserved: false,
        },
    )
    .expect("test event is valid")
}

/// Simple events with the given ids, in the default tenant, whose description contains
/// "auditoría".
pub fn sample_events(ids: &[&str]) -> Vec<SealedEvent> {
    sample_events_in("default", ids)
}

/// Like [`sample_events`], in `tenant`.
pub fn sample_events_in(tenant: &str, ids: &[&str]) -> Vec<SealedEvent> {
    ids.iter()
        .map(|id| {
            seal(
                json!({"id": id, "tenant": tenant, "action": "user.login",
                       "description": format!("auditoría {id}")}),
                "2026-01-20T10:30:00Z",
            )
        })
        .collect()
}

/// `n` varied events in `tenant`, one every `step_secs` seconds of `occurred_at` from
/// `start` (RFC 3339): four actions in two categories, 50 actors, 200 addresses, two
/// sources, every seventh a failure. For tests that need a log of some size with realistic
/// spread (query plans, windows).
pub fn timed_events(tenant: &str, n: u64, start: &str, step_secs: i64) -> Vec<SealedEvent> {
    let start = timestamp::parse(start).expect("test timestamp");
    let actions = [
        "user.login",
        "user.logout",
        "device.create",
        "user.role_change",
    ];
    (0..n)
        .map(|i| {
            let at = start + chrono::Duration::seconds(i as i64 * step_secs);
            let mut v = json!({
                "tenant": tenant,
                "occurred_at": timestamp::format(&at),
                "action": actions[(i % 4) as usize],
                "outcome": if i % 7 == 0 { "failure" } else { "success" },
                "actor": {"id": format!("u{}", i % 50), "name": format!("User {}", i % 50)},
                "context": {"ip": format!("10.0.{}.{}", (i / 200) % 4, i % 200),
                            "source": if i % 2 == 0 { "web" } else { "api" }},
                "description": format!("evento {i}"),
            });
            if i % 3 == 0 {
                v["target"] = json!({"type": "device", "id": format!("d{}", i % 30)});
            }
            seal(v, &timestamp::format(&(at + chrono::Duration::seconds(2))))
        })
        .collect()
}

/// The seeds' scenarios, spread over January 2026 and two tenants.
fn scenario() -> Vec<SealedEvent> {
    let rows = vec![
        json!({"id": "e0", "occurred_at": "2026-01-10T08:00:00Z", "action": "user.login",
               "actor": {"id": "42", "name": "Ana Gómez", "email": "ana@example.com"},
               "context": {"ip": "192.168.1.100", "source": "web"}}),
        json!({"id": "e1", "occurred_at": "2026-01-10T08:05:00Z", "action": "user.login",
               "outcome": "failure", "severity": "medium",
               "actor": {"id": "77", "name": "mallory", "email": "m@evil.test"},
               "context": {"ip": "10.0.0.7"}}),
        json!({"id": "e2", "occurred_at": "2026-01-15T12:00:00Z", "action": "user.role_change",
               "severity": "critical",
               "actor": {"id": "42", "name": "Ana Gómez", "email": "ana@example.com"},
               "target": {"type": "user", "id": "456", "name": "Juan Pérez"},
               "changes": [{"field": "role", "label": "Rol", "old": "user", "new": "admin"}],
               "description": "Rol cambiado de user a admin",
               "context": {"ip": "192.168.1.100", "source": "admin_panel"},
               "metadata": {"reason": "Solicitud administrativa manual"}}),
        json!({"id": "e3", "occurred_at": "2026-01-20T09:00:00Z", "action": "device.create",
               "severity": "high", "actor": {"id": "9", "name": "Ops Bot", "type": "service"},
               "target": {"type": "device", "id": "d-1"},
               "context": {"ip": "2001:db8::1"}}),
        json!({"id": "e4", "occurred_at": "2026-01-20T23:59:59Z", "action": "device.disable",
               "target": {"type": "device", "id": "d-1"},
               "description": "Dispositivo deshabilitado por auditoría",
               "metadata": {"motivo": "robo"}}),
        json!({"id": "e5", "occurred_at": "2026-01-21T00:00:00Z", "action": "BAN_USER",
               "severity": "critical", "actor": {"id": "42", "name": "Ana Gómez"},
               "target": {"type": "user", "id": "456"}}),
        json!({"id": "x0", "tenant": "acme", "occurred_at": "2026-01-15T12:00:00Z",
               "action": "user.login", "actor": {"id": "42", "name": "Other Ana"}}),
    ];
    rows.into_iter()
        .map(|v| seal(v, "2026-01-22T00:00:00Z"))
        .collect()
}

async fn load(store: &dyn Store) -> Vec<AppendOutcome> {
    store.append(scenario()).await.expect("append")
}

fn query(params: &str) -> EventQuery {
    let pairs: Vec<(&str, &str)> = params
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').expect("name=value"))
        .collect();
    // The caller resolves the tenant (on the server, the credential does); here, as the
    // operator's CLI does, from the `tenant` parameter or the default.
    let tenant = pairs
        .iter()
        .find(|(k, _)| *k == "tenant")
        .map(|(_, t)| TenantName::parse(t).expect("a tenant name"))
        .unwrap_or_else(TenantName::default_tenant);
    EventQuery::parse(pairs, &tenant).expect("valid query")
}

async fn ids(store: &dyn Store, params: &str) -> Vec<String> {
    let result = store.search(&query(params)).await.expect("search");
    result
        .events
        .iter()
        .map(|e| {
            let event: Event = serde_json::from_str(&e.body).expect("body is an event");
            event.id
        })
        .collect()
}

fn default_tenant() -> TenantName {
    TenantName::default_tenant()
}

pub async fn appends_are_gapless_per_tenant(store: &dyn Store) {
    let outcomes = load(store).await;
    let seqs: Vec<u64> = outcomes
        .iter()
        .map(|o| match o {
            AppendOutcome::Stored { seq, .. } => *seq,
            other => panic!("expected stored, got {other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5, 0]);
    let more = store.append(sample_events(&["s1", "s2"])).await.unwrap();
    assert!(matches!(more[0], AppendOutcome::Stored { seq: 6, .. }));
    assert!(matches!(more[1], AppendOutcome::Stored { seq: 7, .. }));
    assert_eq!(store.log_size(&default_tenant()).await.unwrap(), 8);
    assert_eq!(
        store
            .log_size(&TenantName::parse("acme").unwrap())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .log_size(&TenantName::parse("nobody").unwrap())
            .await
            .unwrap(),
        0
    );
}

pub async fn duplicates_and_conflicts(store: &dyn Store) {
    let first = store.append(sample_events(&["d1"])).await.unwrap();
    let AppendOutcome::Stored { seq, leaf_hash, .. } = first[0].clone() else {
        panic!("{first:?}")
    };
    // The same event again, even received later: a duplicate with the original position.
    let mut again = sample_events(&["d1"]);
    again.extend(sample_events(&["d2", "d2"]));
    let changed = seal(
        json!({"id": "d1", "action": "user.login", "description": "something else"}),
        "2026-01-20T10:30:00Z",
    );
    again.push(changed);
    let out = store.append(again).await.unwrap();
    assert_eq!(
        out[0],
        AppendOutcome::Duplicate {
            id: "d1".into(),
            seq,
            leaf_hash
        }
    );
    assert!(matches!(out[1], AppendOutcome::Stored { seq: 1, .. }));
    assert!(
        matches!(out[2], AppendOutcome::Duplicate { seq: 1, .. }),
        "{:?}",
        out[2]
    );
    assert_eq!(out[3], AppendOutcome::Conflict { id: "d1".into() });
    assert_eq!(store.log_size(&default_tenant()).await.unwrap(), 2);
    // The same id in another tenant is another event.
    let other = seal(
        json!({"id": "d1", "tenant": "acme", "action": "user.login"}),
        "2026-01-20T10:30:00Z",
    );
    let out = store.append(vec![other]).await.unwrap();
    assert!(matches!(out[0], AppendOutcome::Stored { seq: 0, .. }));
}

pub async fn lookups_by_id_and_seq(store: &dyn Store) {
    load(store).await;
    let t = default_tenant();
    let e = store
        .event_by_id(&t, "e2")
        .await
        .unwrap()
        .expect("e2 stored");
    assert_eq!(e.seq, 2);
    let by_seq = store.event_by_seq(&t, 2).await.unwrap().expect("seq 2");
    assert_eq!(e, by_seq);
    assert!(
        store.event_by_id(&t, "x0").await.unwrap().is_none(),
        "x0 is acme's"
    );
    assert!(store.event_by_id(&t, "nope").await.unwrap().is_none());
    assert!(store.event_by_seq(&t, 99).await.unwrap().is_none());
    let acme = TenantName::parse("acme").unwrap();
    assert!(store.event_by_id(&acme, "x0").await.unwrap().is_some());
}

pub async fn bodies_hash_to_their_leaf(store: &dyn Store) {
    let sealed = scenario();
    load(store).await;
    let stored = store
        .event_by_id(&default_tenant(), "e2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.body, sealed[2].body);
    assert_eq!(stored.leaf_hash, leaf_hash(stored.body.as_bytes()));
    // What the API returns re-canonicalizes to the hashed bytes.
    let json = stored.to_json();
    let again = bitacora_core::canonical::canonicalize_json(json.as_bytes()).unwrap();
    assert_eq!(again, stored.body.as_bytes());
}

pub async fn filters(store: &dyn Store) {
    load(store).await;
    let cases: &[(&str, &[&str])] = &[
        ("", &["e5", "e4", "e3", "e2", "e1", "e0"]),
        ("action=user.login", &["e1", "e0"]),
        ("action=user.*", &["e2", "e1", "e0"]),
        ("action=user.*,BAN_USER", &["e5", "e2", "e1", "e0"]),
        ("action=nothing.here", &[]),
        ("category=device", &["e4", "e3"]),
        ("category=BAN", &["e5"]),
        ("severity=critical", &["e5", "e2"]),
        ("min_severity=high", &["e5", "e3", "e2"]),
        ("outcome=failure", &["e1"]),
        ("actor_id=42", &["e5", "e2", "e0"]),
        ("actor=gÓmez", &["e5", "e2", "e0"]),
        ("actor=EXAMPLE.com", &["e2", "e0"]),
        ("target_type=device", &["e4", "e3"]),
        ("target_type=user&target_id=456", &["e5", "e2"]),
        ("target_id=d-1", &["e4", "e3"]),
        ("ip=192.168.1.100", &["e2", "e0"]),
        ("ip=192.168.0.0/16", &["e2", "e0"]),
        ("ip=10.0.0.0/8", &["e1"]),
        ("ip=2001:db8::/32", &["e3"]),
        ("ip=::ffff:10.0.0.7", &["e1"]),
        ("source=admin_panel", &["e2"]),
        ("source=nowhere", &[]),
        ("since=2026-01-15", &["e5", "e4", "e3", "e2"]),
        ("until=2026-01-20", &["e4", "e3", "e2", "e1", "e0"]),
        (
            "since=2026-01-15T12:00:00Z&until=2026-01-20T09:00:00Z",
            &["e3", "e2"],
        ),
        ("action=user.*&actor_id=42&since=2026-01-11", &["e2"]),
        ("order=asc&limit=3", &["e0", "e1", "e2"]),
    ];
    for (params, expected) in cases {
        assert_eq!(ids(store, params).await, *expected, "filter {params:?}");
    }
}

pub async fn cursor_pages_cover_everything_once(store: &dyn Store) {
    let names: Vec<String> = (0..53).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    store.append(sample_events(&refs)).await.unwrap();
    for order in [Order::Desc, Order::Asc] {
        let mut q = EventQuery::tenant(default_tenant());
        q.order = order;
        let mut seen = Vec::new();
        loop {
            q.page = Pagination::Cursor {
                limit: 10,
                after: match q.page {
                    Pagination::Cursor { after, .. } => after,
                    _ => None,
                },
            };
            let page = store.search(&q).await.unwrap();
            seen.extend(page.events.iter().map(|e| e.seq));
            match page.next_after {
                Some(after) => {
                    // The cursor a client would get round-trips.
                    let c = Cursor { seq: after, order };
                    assert_eq!(Cursor::decode(&c.encode()), Some(c));
                    q.page = Pagination::Cursor {
                        limit: 10,
                        after: Some(after),
                    };
                }
                None => break,
            }
        }
        let mut expected: Vec<u64> = (0..53).collect();
        if order == Order::Desc {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order:?}");
    }
}

pub async fn numbered_pages_have_exact_totals(store: &dyn Store) {
    load(store).await;
    let r = store.search(&query("page=2&per_page=4")).await.unwrap();
    assert_eq!(r.total, Some(6));
    assert_eq!(
        r.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 0]
    );
    let r = store
        .search(&query("actor_id=42&page=1&per_page=2"))
        .await
        .unwrap();
    assert_eq!(r.total, Some(3));
    assert_eq!(r.events.len(), 2);
    let r = store.search(&query("page=9&per_page=4")).await.unwrap();
    assert_eq!(r.total, Some(6));
    assert!(r.events.is_empty());
    let r = store.search(&query("tenant=nobody&page=1")).await.unwrap();
    assert_eq!(r.total, Some(0));
}

/// For a store opened with a **zero** total budget (not part of [`suite!`]): totals that
/// need counting are estimated and flagged, totals the store keeps are exact, the pages
/// themselves are exact whatever the total, and the last page makes its total exact.
pub async fn totals_past_the_budget_are_estimated(store: &dyn Store) {
    const N: u64 = 30_000;
    // One event a minute from January 1st; every seventh a failure.
    for chunk in timed_events("default", N, "2026-01-01T00:00:00Z", 60).chunks(10_000) {
        store.append(chunk.to_vec()).await.expect("append");
    }
    let failures = |from: u64, to: u64| (from..to).filter(|i| i % 7 == 0).count() as u64;
    // Every third event names a device as its target.
    let targeted = |from: u64, to: u64| (from..to).filter(|i| i % 3 == 0).count() as u64;
    let seqs = |r: &crate::SearchResult| r.events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let close = |got: u64, want: u64| got.abs_diff(want) * 10 <= want * 3;

    // Counted by the store's own counters: exact.
    let r = store.search(&query("page=1&per_page=5")).await.unwrap();
    assert_eq!((r.total, r.estimated), (Some(N), false));
    let r = store
        .search(&query("action=user.login&page=1&per_page=5"))
        .await
        .unwrap();
    assert_eq!((r.total, r.estimated), (Some(N / 4), false));
    let r = store
        .search(&query("outcome=failure&source=web&page=2&per_page=5"))
        .await
        .unwrap();
    let want = (0..N).filter(|i| i % 14 == 0).count() as u64;
    assert_eq!((r.total, r.estimated), (Some(want), false));

    // A filter with no counter over the whole log: estimated, close, never below the page.
    for page in [1, 3] {
        let r = store
            .search(&query(&format!(
                "target_type=device&page={page}&per_page=10"
            )))
            .await
            .unwrap();
        assert!(
            r.estimated,
            "page {page}: the total is flagged as an estimate"
        );
        let total = r.total.unwrap();
        assert!(
            close(total, targeted(0, N)),
            "estimate {total} of {}",
            targeted(0, N)
        );
        // The page is exact: the same events as a cursor walk.
        let walk = store
            .search(&query(&format!("target_type=device&limit={}", page * 10)))
            .await
            .unwrap();
        assert_eq!(seqs(&r), seqs(&walk)[(page as usize - 1) * 10..]);
    }
    // The last page (a short one) knows the exact total.
    let per_page = 900;
    let last = targeted(0, N).div_ceil(per_page);
    let r = store
        .search(&query(&format!(
            "target_type=device&page={last}&per_page={per_page}&order=asc"
        )))
        .await
        .unwrap();
    assert_eq!((r.total, r.estimated), (Some(targeted(0, N)), false));
    assert_eq!(
        r.events.len() as u64,
        targeted(0, N) - (last - 1) * per_page
    );

    // Full text: a term of every event is estimated like any filter (on PostgreSQL counted
    // row by row: through the GIN index a range's count reads the term's every match), and
    // the page is exact; a term of one event is proved by its short page.
    eventually_found(store, &(N - 1).to_string(), 1).await;
    let r = store
        .search(&query("q=evento&source=web&page=2&per_page=10"))
        .await
        .unwrap();
    let total = r.total.unwrap();
    assert!(r.estimated, "a full-text total past the budget is flagged");
    assert!(
        close(total, N / 2),
        "full-text estimate {total} of {}",
        N / 2
    );
    let walk = store
        .search(&query("q=evento&source=web&limit=20"))
        .await
        .unwrap();
    assert_eq!(seqs(&r), seqs(&walk)[10..]);
    let r = store
        .search(&query("q=12345&page=1&per_page=10"))
        .await
        .unwrap();
    assert_eq!((r.total, r.estimated), (Some(1), false));
    assert_eq!(r.events.len(), 1);

    // A window with a filter: exact or a close estimate, and the page exact.
    let r = store
        .search(&query(
            "since=2026-01-05&until=2026-01-15&outcome=failure&page=2&per_page=20",
        ))
        .await
        .unwrap();
    // A bare `until` date includes that day.
    let want = failures(4 * 1440, 15 * 1440);
    let total = r.total.unwrap();
    if r.estimated {
        assert!(close(total, want), "window estimate {total} of {want}");
    } else {
        assert_eq!(total, want);
    }
    let walk = store
        .search(&query(
            "since=2026-01-05&until=2026-01-15&outcome=failure&limit=40",
        ))
        .await
        .unwrap();
    assert_eq!(seqs(&r), seqs(&walk)[20..]);
}

/// Waits (up to 5 s) until full-text search for `q` finds `n` events.
pub async fn eventually_found(store: &dyn Store, q: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = store
            .search(&query(&format!("q={q}")))
            .await
            .unwrap()
            .events
            .len();
        if found == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "q={q}: found {found} events, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn full_text_folds_case_and_diacritics(store: &dyn Store) {
    load(store).await;
    eventually_found(store, "auditoria", 1).await;
    eventually_found(store, "AUDITORÍA", 1).await;
    eventually_found(store, "perez", 1).await; // target name
    eventually_found(store, "rol admin", 1).await; // description and changes
    eventually_found(store, "solicitud", 1).await; // metadata value
    eventually_found(store, "robo", 1).await;
    eventually_found(store, "gomez", 3).await; // actor name
    eventually_found(store, "\"OR\" NEAR(*", 0).await; // syntax is not syntax
    assert_eq!(ids(store, "q=gomez&action=BAN_USER").await, vec!["e5"]);
    assert_eq!(
        ids(store, "q=gomez&order=asc&limit=2").await,
        vec!["e0", "e2"]
    );
}

pub async fn aggregates(store: &dyn Store) {
    load(store).await;
    let t = default_tenant();
    let actions = store.actions(&t).await.unwrap();
    let login = actions.iter().find(|a| a.action == "user.login").unwrap();
    assert_eq!((login.category.as_str(), login.count), ("user", 2));
    assert_eq!(actions.len(), 5);
    assert_eq!(actions[0].action, "user.login", "most frequent first");

    let actors = store.actors(&t, 100).await.unwrap();
    let ana = actors.iter().find(|a| a.id == "42").unwrap();
    assert_eq!(ana.count, 3);
    assert_eq!(ana.last_seen, "2026-01-21T00:00:00Z");
    assert_eq!(ana.name.as_deref(), Some("Ana Gómez"));
    assert_eq!(
        ana.email.as_deref(),
        Some("ana@example.com"),
        "kept from an earlier event"
    );
    assert_eq!(actors[0].id, "42", "most recently seen first");
    assert_eq!(store.actors(&t, 1).await.unwrap().len(), 1);
}

pub async fn stats_window(store: &dyn Store) {
    load(store).await;
    let us = |s: &str| timestamp::parse(s).unwrap().timestamp_micros();
    let stats = store
        .stats(
            &default_tenant(),
            us("2026-01-01T00:00:00Z"),
            us("2026-02-01T00:00:00Z"),
            10,
        )
        .await
        .unwrap();
    assert_eq!(stats.total, 6);
    assert_eq!(stats.without_actor, 1);
    let days: Vec<(&str, u64)> = stats
        .per_day
        .iter()
        .map(|d| (d.day.as_str(), d.count))
        .collect();
    assert_eq!(
        days,
        vec![
            ("2026-01-10", 2),
            ("2026-01-15", 1),
            ("2026-01-20", 2),
            ("2026-01-21", 1)
        ]
    );
    assert_eq!(stats.top_actors[0].id, "42");
    assert_eq!(stats.top_actors[0].count, 3);
    assert_eq!(stats.top_ips[0].key, "192.168.1.100");
    assert_eq!(stats.top_ips[0].count, 2);
    let critical = stats
        .per_severity
        .iter()
        .find(|s| s.severity.as_str() == "critical");
    assert_eq!(critical.unwrap().count, 2);
    assert_eq!(stats.per_category[0].key, "user");
    let failures = stats
        .per_outcome
        .iter()
        .find(|o| o.key == "failure")
        .unwrap();
    assert_eq!(failures.count, 1);

    let narrow = store
        .stats(
            &default_tenant(),
            us("2026-01-20T00:00:00Z"),
            us("2026-01-21T00:00:00Z"),
            10,
        )
        .await
        .unwrap();
    assert_eq!(narrow.total, 2);
}

pub async fn tenants_are_isolated(store: &dyn Store) {
    load(store).await;
    assert_eq!(ids(store, "tenant=acme").await, vec!["x0"]);
    assert_eq!(ids(store, "tenant=acme&actor_id=42").await, vec!["x0"]);
    assert!(ids(store, "tenant=nobody").await.is_empty());
    let acme = TenantName::parse("acme").unwrap();
    assert_eq!(store.actions(&acme).await.unwrap().len(), 1);
    assert_eq!(
        store.actors(&acme, 10).await.unwrap()[0].name.as_deref(),
        Some("Other Ana")
    );
    let tenants = store.tenants().await.unwrap();
    assert_eq!(tenants, vec![acme, default_tenant()]);
}

pub async fn api_keys(store: &dyn Store) {
    let key = ApiKeyRecord {
        id: "k1".into(),
        name: "ci".into(),
        scope: Scope::Read,
        tenant: Some(TenantName::parse("acme").unwrap()),
        secret_hash: [7; 32],
        created_at: 1_700_000_000_000_000,
        last_used_at: None,
        revoked: false,
    };
    store.insert_api_key(&key).await.unwrap();
    assert_eq!(
        store.api_key_by_hash(&[7; 32]).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.api_key_by_hash(&[8; 32]).await.unwrap(), None);
    store
        .touch_api_keys(&[("k1".into(), 1_700_000_000_000_123)])
        .await
        .unwrap();
    assert!(store.revoke_api_key("k1").await.unwrap());
    assert!(!store.revoke_api_key("nope").await.unwrap());
    let keys = store.api_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].revoked);
    assert_eq!(keys[0].last_used_at, Some(1_700_000_000_000_123));
}

pub async fn viewer_tokens(store: &dyn Store) {
    let acme = TenantName::parse("acme").unwrap();
    let token = |id: &str, tenant: &TenantName, hash: u8, expires_at: i64| ViewerTokenRecord {
        id: id.into(),
        tenant: tenant.clone(),
        secret_hash: [hash; 32],
        created_at: 1_700_000_000_000_000 + i64::from(hash),
        expires_at,
        created_by: "k1".into(),
        revoked: false,
    };
    let live = token("v1", &acme, 1, 2_000_000_000_000_000);
    let other = token("v2", &default_tenant(), 2, 2_000_000_000_000_000);
    let expired = token("v3", &acme, 3, 1_000);
    for t in [&live, &other, &expired] {
        store.insert_viewer_token(t).await.unwrap();
    }
    assert_eq!(
        store.viewer_token_by_hash(&[1; 32]).await.unwrap(),
        Some(live.clone())
    );
    assert_eq!(store.viewer_token_by_hash(&[9; 32]).await.unwrap(), None);
    // Listing leaves out what expired, and filters by tenant; newest first.
    let all = store.viewer_tokens(None, 1_000_000).await.unwrap();
    assert_eq!(all, vec![other.clone(), live.clone()]);
    let of_acme = store.viewer_tokens(Some(&acme), 1_000_000).await.unwrap();
    assert_eq!(of_acme, vec![live.clone()]);
    assert_eq!(store.viewer_tokens(Some(&acme), 0).await.unwrap().len(), 2);

    // Not in this tenant: untouched.
    let other_tenant = TenantName::parse("other").unwrap();
    assert_eq!(
        store
            .revoke_viewer_token("v1", Some(&other_tenant))
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .viewer_token_by_hash(&[1; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert_eq!(
        store.revoke_viewer_token("v1", Some(&acme)).await.unwrap(),
        Some(live)
    );
    assert_eq!(store.revoke_viewer_token("nope", None).await.unwrap(), None);
    assert!(
        store
            .viewer_token_by_hash(&[1; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}

pub async fn close_drains_and_refuses_writes(store: &dyn Store) {
    store.append(sample_events(&["c1"])).await.unwrap();
    store.close().await.unwrap();
    let err = store.append(sample_events(&["c2"])).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// The stored tree answers roots and proofs that agree with a naive rehash of the leaves, at
/// every size, across several appends (so frontiers are reloaded and extended).
pub async fn merkle_tree_matches_the_leaves(store: &dyn Store) {
    let t = default_tenant();
    let names: Vec<String> = (0..70).map(|i| format!("m{i}")).collect();
    for chunk in names.chunks(23) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        store.append(sample_events(&refs)).await.unwrap();
    }
    let mut leaves = Vec::new();
    for seq in 0..70 {
        leaves.push(
            store
                .event_by_seq(&t, seq)
                .await
                .unwrap()
                .unwrap()
                .leaf_hash,
        );
    }
    for size in [1u64, 2, 15, 16, 17, 33, 64, 69, 70] {
        let want = merkle::root_from_leaves(&leaves[..size as usize]);
        let ids = merkle::root_nodes(size);
        let hashes = store.tree_nodes(&t, &ids).await.unwrap();
        let map: std::collections::HashMap<_, _> = ids.into_iter().zip(hashes).collect();
        let root = merkle::root_from_nodes(size, |id| Ok::<_, ()>(map[&id])).unwrap();
        assert_eq!(root, want, "root of size {size}");
        for index in [0, size / 2, size - 1] {
            let refs = merkle::inclusion_proof_nodes(index, size).unwrap();
            let ids = merkle::required_nodes(&refs);
            let hashes = store.tree_nodes(&t, &ids).await.unwrap();
            let map: std::collections::HashMap<_, _> = ids.into_iter().zip(hashes).collect();
            let proof = merkle::resolve_proof(&refs, |id| Ok::<_, ()>(map[&id])).unwrap();
            merkle::verify_inclusion(&leaves[index as usize], index, size, &proof, &root)
                .unwrap_or_else(|e| panic!("inclusion of {index} in {size}: {e}"));
        }
    }
    // A node that is not complete yet is refused, not invented.
    let err = store
        .tree_nodes(&t, &[merkle::NodeId::new(7, 0)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

/// A run of nodes at one level (what a tlog-tiles hash tile lists) equals the same nodes
/// asked one by one and the fold of the leaves they cover: full 256-wide level-0 runs, one that
/// completes inside an append and one whose leaves came in two appends, partial runs, runs of
/// stored levels; also after a purge removed events from both full and partial runs.
pub async fn level_runs_match_the_leaves(store: &dyn Store) {
    let t = default_tenant();
    let events = timed_events("default", 600, "2026-01-01T00:00:00Z", 60);
    let mut rest = events.as_slice();
    for n in [100usize, 200, 300] {
        let (now, later) = rest.split_at(n);
        store.append(now.to_vec()).await.unwrap();
        rest = later;
    }
    let leaves = leaves_of(store, &t, 600).await;
    check_level_runs(store, &t, &leaves).await;
    // Purged events keep their leaf hashes, in full tiles and in partial ones.
    let record = purge_record(&leaves, &[3, 255, 300, 520, 598], 599);
    store.purge(&t, &record).await.unwrap();
    check_level_runs(store, &t, &leaves).await;
}

/// The runs [`level_runs_match_the_leaves`] checks, on a log of these 600 `leaves`.
async fn check_level_runs(
    store: &dyn Store,
    t: &TenantName,
    leaves: &[bitacora_core::canonical::Hash],
) {
    for (level, first, count) in [
        (0u8, 0u64, 256u64),
        (0, 256, 256),
        (0, 512, 88),
        (0, 300, 10),
        (0, 599, 1),
        (4, 0, 37),
        (4, 16, 16),
        (8, 0, 2),
        (8, 1, 1),
        (9, 0, 1),
    ] {
        let run = store.level_nodes(t, level, first, count).await.unwrap();
        let ids: Vec<_> = (first..first + count)
            .map(|i| merkle::NodeId::new(level, i))
            .collect();
        assert_eq!(
            run,
            store.tree_nodes(t, &ids).await.unwrap(),
            "level {level}, {count} nodes from {first}: as a run and one by one"
        );
        let folded: Vec<_> = (first..first + count)
            .map(|i| {
                let (a, b) = ((i << level) as usize, ((i + 1) << level) as usize);
                merkle::root_from_leaves(&leaves[a..b])
            })
            .collect();
        assert_eq!(
            run, folded,
            "level {level}, {count} nodes from {first}: folded from the leaves"
        );
    }
    // A run that reaches past the log is refused, not invented.
    for (level, first, count) in [(0u8, 512u64, 89u64), (0, 600, 1), (8, 2, 1), (10, 0, 1)] {
        let err = store.level_nodes(t, level, first, count).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }
}

pub async fn checkpoints_are_kept(store: &dyn Store) {
    let t = default_tenant();
    store.append(sample_events(&["k1", "k2"])).await.unwrap();
    assert_eq!(store.latest_checkpoint(&t).await.unwrap(), None);
    let cp = |size: u64| StoredCheckpoint {
        size,
        root: [size as u8; 32],
        note: format!("bitacora/default\n{size}\n...\n"),
        created_at: 1_700_000_000_000_000 + size as i64,
    };
    store.add_checkpoint(&t, &cp(1)).await.unwrap();
    store.add_checkpoint(&t, &cp(2)).await.unwrap();
    store.add_checkpoint(&t, &cp(2)).await.unwrap();
    assert_eq!(store.latest_checkpoint(&t).await.unwrap(), Some(cp(2)));
    assert_eq!(
        store.checkpoints(&t, 0, 10).await.unwrap(),
        vec![cp(1), cp(2)]
    );
    assert_eq!(store.checkpoints(&t, 1, 10).await.unwrap(), vec![cp(2)]);
    assert_eq!(store.checkpoints(&t, 0, 1).await.unwrap(), vec![cp(1)]);

    // Witness cosignatures, per checkpoint size and witness key.
    let co = |size: u64, witness: &str, key_id: u32| StoredCosignature {
        size,
        witness: witness.to_owned(),
        key_id,
        time: 1_700_000_000 + size,
        line: format!("\u{2014} {witness} {size}{key_id}"),
        received_at: 1_700_000_000_000_000 + size as i64,
    };
    assert!(store.cosignatures(&t, 1).await.unwrap().is_empty());
    assert!(store.latest_cosignatures(&t).await.unwrap().is_empty());
    store.add_cosignature(&t, &co(1, "w1", 7)).await.unwrap();
    store
        .add_cosignature(&t, &co(1, "w2", 0xffff_fff0))
        .await
        .unwrap();
    store.add_cosignature(&t, &co(2, "w1", 7)).await.unwrap();
    // The first one a witness key gave for a size is kept.
    let mut again = co(2, "w1", 7);
    again.line.push('x');
    store.add_cosignature(&t, &again).await.unwrap();
    assert_eq!(
        store.cosignatures(&t, 1).await.unwrap(),
        vec![co(1, "w1", 7), co(1, "w2", 0xffff_fff0)]
    );
    assert_eq!(
        store.cosignatures(&t, 2).await.unwrap(),
        vec![co(2, "w1", 7)]
    );
    assert_eq!(
        store.latest_cosignatures(&t).await.unwrap(),
        vec![co(2, "w1", 7), co(1, "w2", 0xffff_fff0)]
    );
    // Another tenant sees none of them.
    let other = TenantName::parse("other").unwrap();
    assert!(store.latest_cosignatures(&other).await.unwrap().is_empty());

    // A log's origin is fixed by the first call.
    assert_eq!(store.log_origin(&t).await.unwrap(), None);
    assert_eq!(
        store
            .fix_log_origin(&t, "audit.example/default")
            .await
            .unwrap(),
        "audit.example/default"
    );
    assert_eq!(
        store.fix_log_origin(&t, "bitacora/default").await.unwrap(),
        "audit.example/default"
    );
    assert_eq!(
        store.log_origin(&t).await.unwrap().as_deref(),
        Some("audit.example/default")
    );
    assert_eq!(store.log_origin(&other).await.unwrap(), None);
}

/// A small deterministic generator (SplitMix64), so a failing case is reproducible from the
/// seed printed in its message without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const PROP_ACTIONS: &[&str] = &[
    "user.login",
    "user.logout",
    "user.role_change",
    "device.create",
    "device.disable",
    "BAN_USER",
];
const PROP_WORDS: &[&str] = &["alfa", "bravo", "charlie", "delta", "eco"];
const PROP_IPS: &[&str] = &[
    "10.0.0.1",
    "10.0.3.7",
    "10.1.0.9",
    "192.168.1.100",
    "2001:db8::1",
    "2001:db8:1::5",
];
const PROP_SOURCES: &[&str] = &["web", "api", "admin_panel"];
const PROP_ACTORS: &[(&str, &str, &str)] = &[
    ("1", "Ana Gómez", "ana@example.com"),
    ("2", "Bruno Díaz", "bruno@example.com"),
    ("3", "Carla Ruiz", "carla@corp.test"),
    ("42", "Ops Bot", "ops@corp.test"),
];

/// 2026-01-01T00:00:00Z in seconds: the generated log starts here and advances about a minute
/// per event.
const PROP_START: i64 = 1_767_225_600;

fn rfc3339(secs: i64) -> String {
    timestamp::format(&chrono::DateTime::from_timestamp(secs, 0).expect("in range"))
}

/// One random event of the generated log, the `i`-th appended. Most arrive in time order;
/// some carry history from decades ago or timestamps from the next century, and some come in
/// runs of imported history, so the log is only *nearly* ordered by `occurred_at`.
fn prop_event(rng: &mut Rng, i: u64, import_run: &mut u64, tenant: &str) -> SealedEvent {
    let now = PROP_START + i as i64 * 60 + rng.below(600) as i64 - 300;
    let at = if *import_run > 0 {
        *import_run -= 1;
        // Imported history, in order, from years before the log.
        PROP_START - 3 * 365 * 86_400 + i as i64 * 3600
    } else {
        match rng.below(1000) {
            0..=9 => PROP_START - rng.below(80 * 365 * 86_400) as i64, // far past
            10..=14 => PROP_START + (100 * 365 * 86_400) + rng.below(86_400 * 365) as i64, // far future
            15 => {
                *import_run = 100 + rng.below(300);
                now
            }
            _ => now,
        }
    };
    let action = *rng.pick(PROP_ACTIONS);
    let mut e = json!({
        "tenant": tenant,
        "occurred_at": rfc3339(at),
        "action": action,
        "severity": *rng.pick(&["low", "medium", "high", "critical"]),
        "outcome": if rng.chance(20) { "failure" } else { "success" },
        "description": format!("evento {} {}", rng.pick(PROP_WORDS), rng.pick(PROP_WORDS)),
    });
    if rng.chance(10) {
        e["category"] = json!(*rng.pick(&["security", "admin"]));
    }
    if rng.chance(80) {
        let (id, name, email) = *rng.pick(PROP_ACTORS);
        e["actor"] = match rng.below(3) {
            0 => json!({"id": id, "name": name}),
            1 => json!({"id": id, "name": name, "email": email}),
            _ => json!({"name": name}),
        };
    }
    if rng.chance(70) {
        let kind = *rng.pick(&["user", "device"]);
        e["target"] = json!({"type": kind, "id": rng.below(12).to_string()});
    }
    let mut context = serde_json::Map::new();
    if rng.chance(85) {
        context.insert("ip".into(), json!(*rng.pick(PROP_IPS)));
    }
    if rng.chance(60) {
        context.insert("source".into(), json!(*rng.pick(PROP_SOURCES)));
    }
    if !context.is_empty() {
        e["context"] = serde_json::Value::Object(context);
    }
    if rng.chance(50) {
        e["id"] = json!(format!("{tenant}-{i}"));
    }
    seal(e, &rfc3339(PROP_START + i as i64 * 60))
}

/// A random query string: up to three filters besides an optional time window, with windows
/// placed anywhere (before the log, inside it, around the imported history, in the future).
fn prop_query(rng: &mut Rng, span_secs: i64, times: &[i64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    // Distinct filters (one parameter is never given twice).
    let mut dims: Vec<u64> = Vec::new();
    for _ in 0..rng.below(4) {
        let d = rng.below(12);
        // 0/1 are both `action`, 7/8 both `target_type`.
        let key = match d {
            1 => 0,
            8 => 7,
            d => d,
        };
        if dims.iter().all(|k| *k != key) {
            dims.push(key);
            dims.push(100 + d);
        }
    }
    for d in dims.into_iter().filter(|d| *d >= 100).map(|d| d - 100) {
        parts.push(match d {
            0 => format!("action={}", rng.pick(PROP_ACTIONS)),
            1 => format!(
                "action={},{}",
                rng.pick(&["user.*", "device.*", "BAN_USER"]),
                rng.pick(PROP_ACTIONS)
            ),
            2 => format!(
                "category={}",
                rng.pick(&["user", "device", "security", "BAN"])
            ),
            3 => match rng.below(2) {
                0 => format!("severity={}", rng.pick(&["low", "critical", "medium,high"])),
                _ => format!("min_severity={}", rng.pick(&["medium", "high"])),
            },
            4 => format!("outcome={}", rng.pick(&["success", "failure"])),
            5 => format!("actor_id={}", rng.pick(PROP_ACTORS).0),
            6 => format!("actor={}", rng.pick(&["ana", "DÍAZ", "corp.test", "o"])),
            7 => format!("target_type={}", rng.pick(&["user", "device"])),
            8 => format!("target_type=user&target_id={}", rng.below(12)),
            9 => format!(
                "ip={}",
                rng.pick(&[
                    "10.0.0.0/16",
                    "10.0.3.7",
                    "10.0.3.0/24",
                    "2001:db8::/32",
                    "2001:db8::/64",
                    "192.168.0.0/16",
                    // Several areas; and one no event came from (`areas.rs`).
                    "10.0.0.0/8",
                    "203.0.113.0/24"
                ])
            ),
            10 => format!("source={}", rng.pick(PROP_SOURCES)),
            _ => format!("q={}", rng.pick(PROP_WORDS)),
        });
    }
    // Times anywhere from a century before the log to a century after it.
    // Some bounds fall exactly on an event's time, where `since` includes and `until` excludes.
    let instant = |rng: &mut Rng| -> i64 {
        match rng.below(13) {
            10..=12 => *rng.pick(times),
            0 => PROP_START - rng.below(90 * 365 * 86_400) as i64,
            1 => PROP_START + 100 * 365 * 86_400 + rng.below(2 * 365 * 86_400) as i64,
            2 => PROP_START - 3 * 365 * 86_400 + rng.below(400 * 3600) as i64,
            _ => PROP_START + rng.below(span_secs as u64 + 1) as i64,
        }
    };
    match rng.below(4) {
        0 => {}
        1 => parts.push(format!("since={}", rfc3339(instant(rng)))),
        2 => parts.push(format!("until={}", rfc3339(instant(rng)))),
        _ => {
            let (a, b) = (instant(rng), instant(rng));
            let widen = if rng.chance(50) {
                0
            } else {
                rng.below(3 * 86_400) as i64
            };
            let (a, b) = (a.min(b), a.max(b) + widen);
            parts.push(format!("since={}&until={}", rfc3339(a), rfc3339(b)));
        }
    }
    if rng.chance(50) {
        parts.push("order=asc".into());
    }
    parts.join("&")
}

/// What a full scan says about one event and one filter.
fn brute_matches(f: &bitacora_core::query::EventFilter, e: &Event) -> bool {
    let actor = e.actor.as_ref();
    let target = e.target.as_ref();
    (f.actions.is_empty() || f.actions.iter().any(|a| a.matches(&e.action)))
        && (f.categories.is_empty() || f.categories.contains(&e.category))
        && (f.severities.is_empty() || f.severities.contains(&e.severity))
        && f.outcome.is_none_or(|o| o == e.outcome)
        && f.actor_id
            .as_ref()
            .is_none_or(|a| actor.and_then(|x| x.id.as_ref()) == Some(a))
        && f.actor.as_ref().is_none_or(|a| {
            crate::derive::actor_search(e).is_some_and(|s| s.contains(&a.to_lowercase()))
        })
        && f.target_type
            .as_ref()
            .is_none_or(|t| target.map(|x| &x.kind) == Some(t))
        && f.target_id
            .as_ref()
            .is_none_or(|t| target.and_then(|x| x.id.as_ref()) == Some(t))
        && f.ip.as_ref().is_none_or(|net| {
            e.context.ip_addr().is_some_and(|ip| {
                let (lo, hi) = crate::derive::ip_range(net);
                let b = crate::derive::ip_blob(ip);
                lo <= b && b <= hi
            })
        })
        && f.source
            .as_ref()
            .is_none_or(|s| e.context.source.as_ref() == Some(s))
        && f.since.is_none_or(|t| e.occurred_at >= t)
        && f.until.is_none_or(|t| e.occurred_at < t)
        && f.text.iter().all(|term| {
            e.description
                .as_deref()
                .is_some_and(|d| d.split_whitespace().any(|w| w == term))
        })
}

/// Random logs (nearly but not quite in time order, with far past and far future events and
/// runs of imported history) and random filter combinations, time windows included: every
/// cursor walk, in both orders, and every numbered page and total equal a brute-force
/// evaluation over all events. The log is larger than a few thousand events so that stores
/// that summarize blocks of the log (the embedded store's zone map) see many blocks.
pub async fn random_searches_match_a_full_scan(store: &dyn Store) {
    let seed = std::env::var("BITACORA_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_u64);
    let mut rng = Rng(seed);
    let events_n = 9_000u64;
    let mut log: Vec<Event> = Vec::new();
    let mut import_run = 0;
    let mut i = 0;
    while i < events_n {
        // Group commits of random sizes; a second tenant interleaved, to be ignored.
        let n = (1 + rng.below(1_500)).min(events_n - i);
        let mut batch = Vec::new();
        for k in 0..n {
            batch.push(prop_event(&mut rng, i + k, &mut import_run, "default"));
        }
        let expected: Vec<Event> = batch.iter().map(|s| s.event.clone()).collect();
        batch.push(prop_event(&mut rng, i, &mut 0, "acme"));
        let outcomes = store.append(batch).await.expect("append");
        for (k, o) in outcomes.iter().take(n as usize).enumerate() {
            match o {
                AppendOutcome::Stored { seq, .. } => assert_eq!(*seq, i + k as u64),
                other => panic!("seed {seed}: unexpected {other:?}"),
            }
        }
        log.extend(expected);
        i += n;
    }
    // Every event's description has "evento": once all are found the full-text index is
    // complete (the embedded store indexes shortly after the commit).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store
        .search(&query("q=evento&page=1&per_page=1"))
        .await
        .unwrap()
        .total
        != Some(events_n)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "full text never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let span_secs = events_n as i64 * 60;
    let times: Vec<i64> = log.iter().map(|e| e.occurred_at.timestamp()).collect();
    for case in 0..120 {
        let params = prop_query(&mut rng, span_secs, &times);
        let base = query(&params);
        let mut expected: Vec<u64> = log
            .iter()
            .enumerate()
            .filter(|(_, e)| brute_matches(&base.filter, e))
            .map(|(s, _)| s as u64)
            .collect();
        if base.order == Order::Desc {
            expected.reverse();
        }
        let why = format!("seed {seed} case {case}: {params}");

        // A cursor walk, with a page size that keeps it to a few dozen pages.
        let limit = (expected.len() as u32 / 25).clamp(1 + rng.below(60) as u32, 1000);
        let mut q = base.clone();
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            q.page = Pagination::Cursor { limit, after };
            let page = store.search(&q).await.expect("search");
            assert!(page.events.len() <= limit as usize, "{why}");
            seen.extend(page.events.iter().map(|e| e.seq));
            match page.next_after {
                Some(a) => {
                    assert_eq!(page.events.len(), limit as usize, "{why}: short page");
                    after = Some(a);
                }
                None => break,
            }
        }
        assert_eq!(seen, expected, "{why}: cursor walk (limit {limit})");

        // Numbered pages: the first, one in the middle, the last and one past the end.
        let per_page = 1 + rng.below(200) as u32;
        let pages = (expected.len() as u32).div_ceil(per_page).max(1);
        for page in [1, 1 + rng.below(u64::from(pages)) as u32, pages, pages + 1] {
            let mut q = base.clone();
            q.page = Pagination::Numbered { page, per_page };
            let r = store.search(&q).await.expect("search");
            assert_eq!(r.total, Some(expected.len() as u64), "{why}: total");
            let from = ((page - 1) * per_page) as usize;
            let want: Vec<u64> = expected
                .iter()
                .skip(from)
                .take(per_page as usize)
                .copied()
                .collect();
            let got: Vec<u64> = r.events.iter().map(|e| e.seq).collect();
            assert_eq!(got, want, "{why}: page {page} of {per_page}");
        }
    }
}

/// `stats` over random windows (whole days, whole hours, partial days, shorter than a day or
/// an hour, before and after the log) of a random log equals counting the events one by one: totals, days, categories,
/// severities, outcomes, events without an actor, and the top actors and addresses (ties by
/// key). Stores that answer from rollups must agree with the scan exactly.
pub async fn random_stats_match_a_full_scan(store: &dyn Store) {
    use std::collections::BTreeMap;
    let seed = std::env::var("BITACORA_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x57A7_u64);
    let mut rng = Rng(seed);
    let events_n = 3_000u64;
    let mut log: Vec<Event> = Vec::new();
    let mut import_run = 0;
    let mut i = 0;
    while i < events_n {
        let n = (1 + rng.below(400)).min(events_n - i);
        let batch: Vec<SealedEvent> = (0..n)
            .map(|k| prop_event(&mut rng, i + k, &mut import_run, "default"))
            .collect();
        log.extend(batch.iter().map(|s| s.event.clone()));
        store.append(batch).await.expect("append");
        i += n;
    }
    // The generated log covers about two days (a minute per event) from PROP_START.
    let day = 86_400i64;
    let times: Vec<i64> = log.iter().map(|e| e.occurred_at.timestamp()).collect();
    for case in 0..60 {
        let (since, until) = match rng.below(7) {
            // Whole days around the log.
            0 => {
                let a = PROP_START - day * rng.below(3) as i64;
                (a, a + day * (1 + rng.below(4)) as i64)
            }
            // Ends at any second.
            1 | 2 => {
                let a = PROP_START - day + rng.below(4 * day as u64) as i64;
                (a, a + 1 + rng.below(3 * day as u64) as i64)
            }
            // Shorter than a day, at an event's time.
            3 => {
                let a = *rng.pick(&times);
                (a, a + 1 + rng.below(20_000) as i64)
            }
            // Whole hours, within a day or across days.
            4 => {
                let a = PROP_START - day + 3_600 * rng.below(96) as i64;
                (a, a + 3_600 * (1 + rng.below(60)) as i64)
            }
            // Decades, catching the far past and the imported history.
            5 => (PROP_START - 90 * 365 * day, PROP_START + 3 * day),
            _ => (PROP_START - 4 * 365 * day, PROP_START + 200 * 365 * day),
        };
        let top = 1 + rng.below(8) as u32;
        let why = format!("seed {seed} case {case}: {since}..{until} top {top}");
        let got = store
            .stats(&default_tenant(), since * 1_000_000, until * 1_000_000, top)
            .await
            .expect("stats");
        let inside: Vec<&Event> = log
            .iter()
            .filter(|e| (since..until).contains(&e.occurred_at.timestamp()))
            .collect();
        assert_eq!(got.total, inside.len() as u64, "{why}: total");
        assert_eq!(
            got.without_actor,
            inside
                .iter()
                .filter(|e| e.actor.as_ref().and_then(|a| a.id.as_ref()).is_none())
                .count() as u64,
            "{why}: without actor"
        );
        let mut days: BTreeMap<String, u64> = BTreeMap::new();
        let mut categories: BTreeMap<String, u64> = BTreeMap::new();
        let mut severities: BTreeMap<String, u64> = BTreeMap::new();
        let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
        let mut actors: BTreeMap<String, u64> = BTreeMap::new();
        let mut ips: BTreeMap<String, u64> = BTreeMap::new();
        for e in &inside {
            *days
                .entry(e.occurred_at.format("%Y-%m-%d").to_string())
                .or_default() += 1;
            *categories.entry(e.category.clone()).or_default() += 1;
            *severities.entry(e.severity.to_string()).or_default() += 1;
            *outcomes.entry(e.outcome.to_string()).or_default() += 1;
            if let Some(id) = e.actor.as_ref().and_then(|a| a.id.clone()) {
                *actors.entry(id).or_default() += 1;
            }
            if let Some(ip) = e.context.ip_addr() {
                *ips.entry(ip.to_string()).or_default() += 1;
            }
        }
        let got_days: BTreeMap<String, u64> = got
            .per_day
            .iter()
            .map(|d| (d.day.clone(), d.count))
            .collect();
        assert_eq!(got_days, days, "{why}: per day");
        let got_categories: BTreeMap<String, u64> = got
            .per_category
            .iter()
            .map(|k| (k.key.clone(), k.count))
            .collect();
        assert_eq!(got_categories, categories, "{why}: per category");
        let got_severities: BTreeMap<String, u64> = got
            .per_severity
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| (s.severity.to_string(), s.count))
            .collect();
        assert_eq!(got_severities, severities, "{why}: per severity");
        let got_outcomes: BTreeMap<String, u64> = got
            .per_outcome
            .iter()
            .filter(|o| o.count > 0)
            .map(|o| (o.key.clone(), o.count))
            .collect();
        assert_eq!(got_outcomes, outcomes, "{why}: per outcome");
        // The top lists: the counts of the first `top` by count, and every listed key's count.
        let ranked = |m: &BTreeMap<String, u64>| -> Vec<u64> {
            let mut v: Vec<u64> = m.values().copied().collect();
            v.sort_unstable_by(|a, b| b.cmp(a));
            v.truncate(top as usize);
            v
        };
        let got_actor_counts: Vec<u64> = got.top_actors.iter().map(|a| a.count).collect();
        assert_eq!(got_actor_counts, ranked(&actors), "{why}: top actors");
        for a in &got.top_actors {
            assert_eq!(Some(&a.count), actors.get(&a.id), "{why}: actor {}", a.id);
        }
        let got_ip_counts: Vec<u64> = got.top_ips.iter().map(|k| k.count).collect();
        assert_eq!(got_ip_counts, ranked(&ips), "{why}: top addresses");
        for k in &got.top_ips {
            assert_eq!(Some(&k.count), ips.get(&k.key), "{why}: address {}", k.key);
        }
    }
}

/// Destinations, positions, alert rules and states, and leases (CONTRACT §10).
pub async fn delivery_records(store: &dyn Store) {
    use crate::{AlertRuleRecord, DeliveryPosition, DestinationRecord};
    let acme = TenantName::parse("acme").expect("tenant");
    let d1 = DestinationRecord {
        id: "d1".into(),
        name: "siem".into(),
        tenant: None,
        spec: r#"{"kind":"webhook"}"#.into(),
        created_at: 1,
        disabled: None,
    };
    let d2 = DestinationRecord {
        id: "d2".into(),
        name: "acme only".into(),
        tenant: Some(acme.clone()),
        spec: "{}".into(),
        created_at: 2,
        disabled: None,
    };
    store.insert_destination(&d1).await.expect("insert");
    store.insert_destination(&d2).await.expect("insert");
    assert_eq!(
        store.destinations().await.expect("list"),
        vec![d1.clone(), d2.clone()]
    );
    assert!(
        store
            .disable_destination("d1", "410 Gone")
            .await
            .expect("disable")
    );
    assert!(
        !store
            .disable_destination("nope", "x")
            .await
            .expect("disable")
    );
    let listed = store.destinations().await.expect("list");
    assert_eq!(listed[0].disabled.as_deref(), Some("410 Gone"));
    // Settings are replaced whole (a secret rotation); nothing else changes.
    assert!(
        store
            .update_destination_spec("d2", r#"{"kind":"syslog"}"#)
            .await
            .expect("update")
    );
    assert!(
        !store
            .update_destination_spec("nope", "{}")
            .await
            .expect("update")
    );
    let listed = store.destinations().await.expect("list");
    assert_eq!(listed[1].spec, r#"{"kind":"syslog"}"#);
    assert_eq!(listed[1].name, "acme only");
    store
        .update_destination_spec("d2", "{}")
        .await
        .expect("update");

    let mut p = DeliveryPosition {
        destination_id: "d1".into(),
        tenant: acme.clone(),
        next_seq: 10,
        last_success_at: Some(5),
        last_error: None,
        last_error_at: None,
    };
    store.save_delivery_position(&p).await.expect("save");
    // A position never moves backwards; the other columns are replaced.
    p.next_seq = 4;
    p.last_error = Some("502".into());
    p.last_error_at = Some(6);
    store.save_delivery_position(&p).await.expect("save");
    let positions = store.delivery_positions("d1").await.expect("positions");
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].next_seq, 10);
    assert_eq!(positions[0].last_error.as_deref(), Some("502"));
    assert_eq!(positions[0].last_success_at, Some(5));
    assert!(
        store
            .delivery_positions("d2")
            .await
            .expect("positions")
            .is_empty()
    );
    assert!(store.delete_destination("d1").await.expect("delete"));
    assert!(!store.delete_destination("d1").await.expect("delete"));
    assert!(
        store
            .delivery_positions("d1")
            .await
            .expect("positions")
            .is_empty()
    );
    assert_eq!(store.destinations().await.expect("list"), vec![d2]);

    let rule = AlertRuleRecord {
        id: "r1".into(),
        name: "brute force".into(),
        tenant: Some(acme.clone()),
        spec: r#"{"match":{}}"#.into(),
        created_at: 3,
    };
    store.insert_alert_rule(&rule).await.expect("insert rule");
    assert_eq!(
        store.alert_rules().await.expect("rules"),
        vec![rule.clone()]
    );
    assert!(
        store
            .update_alert_rule_spec("r1", r#"{"match":{},"disabled":true}"#)
            .await
            .expect("update")
    );
    assert!(
        !store
            .update_alert_rule_spec("nope", "{}")
            .await
            .expect("update")
    );
    assert_eq!(
        store.alert_rules().await.expect("rules")[0].spec,
        r#"{"match":{},"disabled":true}"#
    );
    assert_eq!(store.alert_state("r1", &acme).await.expect("state"), None);
    store
        .save_alert_state("r1", &acme, "{\"next_seq\":1}")
        .await
        .expect("save");
    store
        .save_alert_state("r1", &acme, "{\"next_seq\":2}")
        .await
        .expect("save");
    assert_eq!(
        store
            .alert_state("r1", &acme)
            .await
            .expect("state")
            .as_deref(),
        Some("{\"next_seq\":2}")
    );
    assert_eq!(
        store
            .alert_state("r1", &default_tenant())
            .await
            .expect("state"),
        None
    );
    // Several states at once.
    store
        .save_alert_states(
            &acme,
            &[
                ("r1".into(), "{\"next_seq\":3}".into()),
                ("r2".into(), "{\"next_seq\":4}".into()),
            ],
        )
        .await
        .expect("save several");
    assert_eq!(
        store
            .alert_state("r1", &acme)
            .await
            .expect("state")
            .as_deref(),
        Some("{\"next_seq\":3}")
    );
    assert_eq!(
        store
            .alert_state("r2", &acme)
            .await
            .expect("state")
            .as_deref(),
        Some("{\"next_seq\":4}")
    );
    store
        .save_alert_states(&acme, &[])
        .await
        .expect("nothing to save");
    assert!(store.delete_alert_rule("r1").await.expect("delete"));
    assert!(!store.delete_alert_rule("r1").await.expect("delete"));
    assert_eq!(store.alert_state("r1", &acme).await.expect("state"), None);

    // Leases: one holder at a time; renewal by the holder; takeover after expiry.
    assert!(
        store
            .acquire_lease("dest:d2", "a", 100, 50)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .acquire_lease("dest:d2", "b", 120, 50)
            .await
            .expect("lease")
    );
    assert!(
        store
            .acquire_lease("dest:d2", "a", 140, 50)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .acquire_lease("dest:d2", "b", 180, 50)
            .await
            .expect("lease")
    );
    assert!(
        store
            .acquire_lease("dest:d2", "b", 191, 50)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .acquire_lease("dest:d2", "a", 200, 50)
            .await
            .expect("lease")
    );
    assert!(
        store
            .acquire_lease("other", "a", 200, 50)
            .await
            .expect("lease")
    );
}

/// The leaf hashes of the tenant's log `0..n`, read before anything is purged.
async fn leaves_of(
    store: &dyn Store,
    t: &TenantName,
    n: u64,
) -> Vec<bitacora_core::canonical::Hash> {
    let mut out = Vec::new();
    for seq in 0..n {
        out.push(store.event_by_seq(t, seq).await.unwrap().unwrap().leaf_hash);
    }
    out
}

/// A purge record for `seqs` of a log whose leaves are `leaves`, announced at `event_seq`.
fn purge_record(
    leaves: &[bitacora_core::canonical::Hash],
    seqs: &[u64],
    event_seq: u64,
) -> PurgeRecord {
    let purged: Vec<_> = seqs.iter().map(|&s| leaves[s as usize]).collect();
    PurgeRecord {
        event_seq,
        ranges: PurgeRecord::ranges_of(seqs),
        count: seqs.len() as u64,
        root: merkle::root_from_leaves(&purged),
        archive: "file:///archive/default/test.bundle.zst".into(),
        created_at: 1_700_000_000_000_000,
    }
}

/// An actor's stored name and email are ones its remaining events carry after a purge, also
/// when the purged events were the only ones carrying them while the actor's latest event
/// survives (it had no email: the stored one came from older events): `verify` used to
/// report such a store as tampered with after a legitimate purge.
pub async fn purge_keeps_actor_names_to_what_remains(store: &dyn Store) {
    let t = default_tenant();
    let ev = |id: &str, day: u32, actor: serde_json::Value| {
        seal(
            json!({"id": id, "action": "user.login", "actor": actor,
                   "occurred_at": format!("2026-01-{day:02}T10:00:00Z")}),
            "2026-01-20T10:30:00Z",
        )
    };
    store
        .append(vec![
            // seq 0-2, ann: the email only on the two oldest, which are purged.
            ev(
                "a0",
                1,
                json!({"id": "ann", "name": "Ann", "email": "ann@old.example"}),
            ),
            ev(
                "a1",
                2,
                json!({"id": "ann", "name": "Ann", "email": "ann@old.example"}),
            ),
            ev("a2", 3, json!({"id": "ann", "name": "Ann B"})),
            // seq 3-4, bob: the name only on the purged one.
            ev("b0", 1, json!({"id": "bob", "name": "Bob"})),
            ev("b1", 2, json!({"id": "bob"})),
            // seq 5-7, cy: one of the two events with the email survives.
            ev("c0", 1, json!({"id": "cy", "email": "cy@example"})),
            ev("c1", 2, json!({"id": "cy", "email": "cy@example"})),
            ev("c2", 3, json!({"id": "cy"})),
            // seq 8-10, dee: the stored email is d0's (the newest with one); d1, older,
            // carries another, which is what remains.
            ev("d0", 5, json!({"id": "dee", "email": "dee@new.example"})),
            ev("d1", 1, json!({"id": "dee", "email": "dee@mid.example"})),
            ev("d2", 6, json!({"id": "dee"})),
        ])
        .await
        .unwrap();
    store.append(sample_events(&["announce"])).await.unwrap();
    let emails = |actors: &[bitacora_core::api::ActorSummary]| {
        let mut v: Vec<(String, Option<String>, Option<String>, u64)> = actors
            .iter()
            .map(|a| (a.id.clone(), a.name.clone(), a.email.clone(), a.count))
            .collect();
        v.sort();
        v
    };
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        emails(&store.actors(&t, 10).await.unwrap()),
        [
            ("ann".into(), s("Ann B"), s("ann@old.example"), 3),
            ("bob".into(), s("Bob"), None, 2),
            ("cy".into(), None, s("cy@example"), 3),
            ("dee".into(), None, s("dee@new.example"), 3),
        ]
    );
    let leaves = leaves_of(store, &t, 12).await;
    store
        .purge(&t, &purge_record(&leaves, &[0, 1, 3, 5, 8], 11))
        .await
        .unwrap();
    assert_eq!(store.check_summaries(&t).await.unwrap(), None);
    assert_eq!(
        emails(&store.actors(&t, 10).await.unwrap()),
        [
            ("ann".into(), s("Ann B"), None, 1),
            ("bob".into(), None, None, 1),
            ("cy".into(), None, s("cy@example"), 2),
            ("dee".into(), None, s("dee@mid.example"), 2),
        ]
    );
}

/// Searches by client address (read through the stores' address postings) find what a scan
/// finds, with exact totals, across blocks of the log, and still after a purge that spares
/// one of the address's events (a legal hold, say); the postings check stays clean.
pub async fn address_searches_follow_appends_and_purges(store: &dyn Store) {
    const N: u64 = 3_000;
    let t = default_tenant();
    for chunk in timed_events("default", N, "2026-01-01T00:00:00Z", 60).chunks(700) {
        store.append(chunk.to_vec()).await.expect("append");
    }
    // `timed_events`: event i comes from 10.0.{(i / 200) % 4}.{i % 200}, every seventh fails.
    let seqs = |r: &crate::SearchResult| r.events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let one = |i: u64| (i / 200) % 4 == 1 && i % 200 == 7;
    let want: Vec<u64> = (0..N).rev().filter(|&i| one(i)).collect();
    assert_eq!(want.len(), 4);
    let r = store.search(&query("ip=10.0.1.7&limit=100")).await.unwrap();
    assert_eq!(seqs(&r), want);
    let r = store.search(&query("ip=10.0.1.7&limit=3")).await.unwrap();
    assert_eq!(seqs(&r), want[..3]);
    let r = store
        .search(&query(&format!(
            "ip=10.0.1.7&limit=3&cursor={}",
            Cursor {
                seq: want[2],
                order: Order::Desc
            }
            .encode()
        )))
        .await
        .unwrap();
    assert_eq!(seqs(&r), want[3..]);
    let r = store
        .search(&query("ip=10.0.1.7&page=1&per_page=2"))
        .await
        .unwrap();
    assert_eq!(
        (seqs(&r), r.total, r.estimated),
        (want[..2].to_vec(), Some(4), false)
    );
    let r = store
        .search(&query("ip=10.0.1.7&page=2&per_page=3&order=asc"))
        .await
        .unwrap();
    assert_eq!(seqs(&r), vec![want[0]]);
    // A network with other filters and a window.
    let scan =
        |keep: &dyn Fn(u64) -> bool| -> Vec<u64> { (0..N).rev().filter(|&i| keep(i)).collect() };
    let net_failures = scan(&|i| (i / 200) % 4 == 1 && i % 7 == 0);
    let r = store
        .search(&query("ip=10.0.1.0/24&outcome=failure&page=1&per_page=500"))
        .await
        .unwrap();
    assert_eq!(
        (seqs(&r), r.total),
        (net_failures.clone(), Some(net_failures.len() as u64))
    );
    // Events 1,000-1,999 occurred from 2026-01-01T16:40 to 2026-01-02T09:19.
    let windowed = scan(&|i| (i / 200) % 4 == 1 && (1_000..2_000).contains(&i));
    let r = store
        .search(&query(
            "ip=10.0.1.0/24&since=2026-01-01T16:40:00Z&until=2026-01-02T09:20:00Z&page=1&per_page=500",
        ))
        .await
        .unwrap();
    assert_eq!(
        (seqs(&r), r.total),
        (windowed.clone(), Some(windowed.len() as u64))
    );
    assert_eq!(store.check_summaries(&t).await.unwrap(), None);

    // Purge the first 1,500 events but one of the address's.
    let leaves = leaves_of(store, &t, N).await;
    let kept = want[3];
    assert!(kept < 1_500);
    let gone: Vec<u64> = (0..1_500).filter(|&s| s != kept).collect();
    store
        .purge(&t, &purge_record(&leaves, &gone, N - 1))
        .await
        .unwrap();
    let left: Vec<u64> = want
        .iter()
        .copied()
        .filter(|&s| s >= 1_500 || s == kept)
        .collect();
    let r = store
        .search(&query("ip=10.0.1.7&page=1&per_page=10"))
        .await
        .unwrap();
    assert_eq!(
        (seqs(&r), r.total, r.estimated),
        (left.clone(), Some(left.len() as u64), false)
    );
    let r = store
        .search(&query("ip=10.0.1.0/24&outcome=failure&limit=500"))
        .await
        .unwrap();
    let after: Vec<u64> = net_failures
        .iter()
        .copied()
        .filter(|&s| s >= 1_500 || s == kept)
        .collect();
    assert_eq!(seqs(&r), after);
    assert_eq!(store.check_summaries(&t).await.unwrap(), None);
}

/// The root the store's nodes give for a log of `size`.
async fn stored_root(
    store: &dyn Store,
    t: &TenantName,
    size: u64,
) -> bitacora_core::canonical::Hash {
    let ids = merkle::root_nodes(size);
    let hashes = store.tree_nodes(t, &ids).await.unwrap();
    let map: std::collections::HashMap<_, _> = ids.into_iter().zip(hashes).collect();
    merkle::root_from_nodes(size, |id| Ok::<_, ()>(map[&id])).unwrap()
}

pub async fn purge_keeps_the_tree_and_the_summaries(store: &dyn Store) {
    let t = default_tenant();
    load(store).await;
    // The purge's own announcement (the lifecycle crate appends a `bitacora.retention.purge`
    // event; any event stands in for it here).
    store.append(sample_events(&["announce"])).await.unwrap();
    let leaves = leaves_of(store, &t, 7).await;
    let root_before = merkle::root_from_leaves(&leaves);
    // e0 and e1 (user.login; actors 42 and 77) and e3 (device.create; actor 9).
    let record = purge_record(&leaves, &[0, 1, 3], 6);
    store.purge(&t, &record).await.unwrap();

    // The content is gone from every read path...
    assert_eq!(store.event_by_seq(&t, 0).await.unwrap(), None);
    assert_eq!(store.event_by_id(&t, "e3").await.unwrap(), None);
    assert_eq!(
        ids(store, "order=asc").await,
        ["e2", "e4", "e5", "announce"]
    );
    assert_eq!(ids(store, "actor_id=77").await, Vec::<String>::new());
    assert_eq!(ids(store, "target_id=d-1").await, ["e4"]);
    assert_eq!(ids(store, "ip=10.0.0.0/8").await, Vec::<String>::new());
    // ...but a purged event is still known by id, with its seq and leaf hash.
    assert_eq!(
        store.purged_event(&t, "e1").await.unwrap(),
        Some((1, leaves[1]))
    );
    assert_eq!(store.purged_event(&t, "e2").await.unwrap(), None);
    assert_eq!(store.purges(&t).await.unwrap(), vec![record.clone()]);
    assert_eq!(
        store.purged_leaves(&t, 6).await.unwrap(),
        vec![(0, leaves[0]), (1, leaves[1]), (3, leaves[3])]
    );

    // The tree is the same tree: the root, and proofs on both sides of the purge.
    assert_eq!(store.log_size(&t).await.unwrap(), 7);
    assert_eq!(stored_root(store, &t, 7).await, root_before);
    for index in [0u64, 2, 3, 6] {
        let refs = merkle::inclusion_proof_nodes(index, 7).unwrap();
        let ids = merkle::required_nodes(&refs);
        let hashes = store.tree_nodes(&t, &ids).await.unwrap();
        let map: std::collections::HashMap<_, _> = ids.into_iter().zip(hashes).collect();
        let proof = merkle::resolve_proof(&refs, |id| Ok::<_, ()>(map[&id])).unwrap();
        merkle::verify_inclusion(&leaves[index as usize], index, 7, &proof, &root_before)
            .unwrap_or_else(|e| panic!("inclusion of {index} after the purge: {e}"));
    }
    // Appending after a purge extends the same tree.
    store.append(sample_events(&["after"])).await.unwrap();
    let mut all = leaves.clone();
    all.push(store.event_by_seq(&t, 7).await.unwrap().unwrap().leaf_hash);
    assert_eq!(
        stored_root(store, &t, 8).await,
        merkle::root_from_leaves(&all)
    );

    // The walk sees every seq, the purged ones by their leaf hash alone.
    let checks = store.check_leaves(&t, 0, 100).await.unwrap();
    let seqs: Vec<(u64, bool)> = checks.iter().map(|c| (c.seq, c.purged)).collect();
    assert_eq!(
        seqs,
        [0, 1, 2, 3, 4, 5, 6, 7].map(|s| (s, [0, 1, 3].contains(&s)))
    );
    assert!(
        checks
            .iter()
            .all(|c| c.recomputed == c.stored && c.index.is_none())
    );
    let page = store.check_leaves(&t, 1, 2).await.unwrap();
    assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);

    // The summaries are what remains.
    assert_eq!(store.check_summaries(&t).await.unwrap(), None);
    let actions = store.actions(&t).await.unwrap();
    let count = |a: &str| actions.iter().find(|s| s.action == a).map(|s| s.count);
    assert_eq!(count("user.login"), Some(2), "{actions:?}");
    assert_eq!(count("device.create"), None, "{actions:?}");
    let actors = store.actors(&t, 10).await.unwrap();
    let mut actor_ids: Vec<&str> = actors.iter().map(|a| a.id.as_str()).collect();
    actor_ids.sort_unstable();
    assert_eq!(actor_ids, ["42"]);
    let stats = store
        .stats(
            &t,
            timestamp::parse("2026-01-01T00:00:00Z")
                .unwrap()
                .timestamp_micros(),
            timestamp::parse("2026-02-01T00:00:00Z")
                .unwrap()
                .timestamp_micros(),
            10,
        )
        .await
        .unwrap();
    // e2, e4, e5, and the two sample events (which occurred when they were sent).
    let in_january = ids(store, "since=2026-01-01&until=2026-01-31").await.len() as u64;
    assert_eq!(stats.total, in_january);
    assert!(
        stats.top_ips.iter().all(|ip| ip.key != "10.0.0.7"),
        "{stats:?}"
    );
    eventually_found(store, "robo", 1).await;
    // The other tenant is untouched.
    assert_eq!(ids(store, "tenant=acme").await, ["x0"]);
}

pub async fn purge_refuses_what_it_cannot_prove(store: &dyn Store) {
    let t = default_tenant();
    load(store).await;
    let leaves = leaves_of(store, &t, 6).await;
    // A root that is not the purged leaves' root.
    let mut forged = purge_record(&leaves, &[0, 1], 5);
    forged.root = leaves[0];
    assert!(store.purge(&t, &forged).await.is_err());
    // A count that does not add up.
    let mut short = purge_record(&leaves, &[0, 1], 5);
    short.count = 1;
    assert!(store.purge(&t, &short).await.is_err());
    // A seq past the end.
    assert!(
        store
            .purge(&t, &purge_record(&leaves, &[5], 9))
            .await
            .is_err()
    );
    assert!(store.purges(&t).await.unwrap().is_empty());
    assert!(store.event_by_seq(&t, 0).await.unwrap().is_some());

    store
        .purge(&t, &purge_record(&leaves, &[1], 5))
        .await
        .unwrap();
    // Purging it again (or along with others) changes nothing.
    assert!(
        store
            .purge(&t, &purge_record(&leaves, &[0, 1], 5))
            .await
            .is_err()
    );
    assert!(store.event_by_seq(&t, 0).await.unwrap().is_some());
    assert_eq!(store.purges(&t).await.unwrap().len(), 1);
    assert_eq!(store.check_summaries(&t).await.unwrap(), None);
}

/// Several purges at once (`Store::purge_many`, one transaction on the embedded store): each
/// record is stored with its own leaves, the rows are gone, the summaries equal what remains.
pub async fn purge_many_purges_each_record(store: &dyn Store) {
    let t = default_tenant();
    load(store).await;
    let leaves = leaves_of(store, &t, 6).await;
    // e1 (actor 77's only event), then e3 and e4.
    let records = [
        purge_record(&leaves, &[1], 5),
        purge_record(&leaves, &[3, 4], 2),
    ];
    store.purge_many(&t, &records).await.unwrap();
    let stored = store.purges(&t).await.unwrap();
    assert_eq!(
        stored.iter().map(|p| p.event_seq).collect::<Vec<_>>(),
        [2, 5]
    );
    assert_eq!(
        store.purged_leaves(&t, 5).await.unwrap(),
        vec![(1, leaves[1])]
    );
    assert_eq!(
        store.purged_leaves(&t, 2).await.unwrap(),
        vec![(3, leaves[3]), (4, leaves[4])]
    );
    for seq in [1, 3, 4] {
        assert!(
            store.event_by_seq(&t, seq).await.unwrap().is_none(),
            "{seq}"
        );
    }
    for seq in [0, 2, 5] {
        assert!(
            store.event_by_seq(&t, seq).await.unwrap().is_some(),
            "{seq}"
        );
    }
    assert_eq!(store.check_summaries(&t).await.unwrap(), None);
    // Nothing to purge: nothing happens.
    store.purge_many(&t, &[]).await.unwrap();
    assert_eq!(store.purges(&t).await.unwrap().len(), 2);
}

pub async fn legal_holds_and_rule_sets(store: &dyn Store) {
    let hold = |id: &str, tenant: &str, at: i64| LegalHoldRecord {
        id: id.into(),
        tenant: TenantName::parse(tenant).unwrap(),
        name: format!("case {id}"),
        reason: "litigation".into(),
        filter: r#"{"actor_id":"42"}"#.into(),
        created_at: at,
        created_by: "k1".into(),
        released_at: None,
        released_by: None,
    };
    store
        .insert_legal_hold(&hold("h1", "default", 1))
        .await
        .unwrap();
    store
        .insert_legal_hold(&hold("h2", "acme", 2))
        .await
        .unwrap();
    assert!(
        store
            .insert_legal_hold(&hold("h1", "acme", 3))
            .await
            .is_err()
    );
    let all = store.legal_holds(None, false).await.unwrap();
    assert_eq!(all, vec![hold("h1", "default", 1), hold("h2", "acme", 2)]);
    let acme = TenantName::parse("acme").unwrap();
    assert_eq!(
        store.legal_holds(Some(&acme), false).await.unwrap(),
        vec![hold("h2", "acme", 2)]
    );
    // Releasing is pinned to the tenant when one is given, and happens once.
    assert_eq!(
        store
            .release_legal_hold("h1", Some(&acme), 5, "k2")
            .await
            .unwrap(),
        None
    );
    let released = store
        .release_legal_hold("h1", None, 5, "k2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(released.released_at, Some(5));
    assert_eq!(released.released_by.as_deref(), Some("k2"));
    assert_eq!(
        store.release_legal_hold("h1", None, 6, "k2").await.unwrap(),
        None
    );
    assert_eq!(
        store.legal_holds(None, false).await.unwrap(),
        vec![hold("h2", "acme", 2)]
    );
    assert_eq!(store.legal_holds(None, true).await.unwrap().len(), 2);

    assert_eq!(store.rules_first_seen("abc", 100).await.unwrap(), 100);
    assert_eq!(store.rules_first_seen("abc", 200).await.unwrap(), 100);
    assert_eq!(store.rules_first_seen("def", 300).await.unwrap(), 300);
}
