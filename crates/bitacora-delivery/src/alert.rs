//! The alert evaluator: every rule, over every tenant it watches, incrementally by `seq`.
//!
//! **Semantics** (tested below and in `tests/`):
//! - An event *matches* a rule when it passes the rule's search filter and, if given, its
//!   `changes` clause. `bitacora.alert.*` events never match (an alert cannot feed itself).
//! - Without `threshold`, every match fires (subject to `suppress_for`, per group).
//! - With `threshold {count, window, group_by}`, matches are grouped by the value at the
//!   `group_by` path (text; an event without it, or with `null`, is in group `"none"` —
//!   counted, never ignored). A group fires when `count` of its matches fall within `window`
//!   (by `received_at`, the server's clock, so a client cannot backdate events out of a
//!   window). Firing consumes those matches: the next firing needs `count` new ones, so a
//!   rule fires once per crossing, not on every later event.
//! - After a firing, the group stays silent until `suppress_for` has passed (matches are
//!   still counted, so the first match after suppression that completes a window fires).
//! - Rules are independent: each has its own state per tenant.
//!
//! **Resumable without loss or repetition.** A rule's state (`next_seq` and the open groups)
//! is saved after the firings of a batch are appended. Each firing is an event whose id is
//! derived from the rule and the `seq` that completed it, so after a crash between the two,
//! the batch is evaluated again from the saved state, the same firings come out with the
//! same ids, and the store acknowledges them as duplicates: none is lost, none stored twice.
//! A new rule starts at the head of each log (it does not fire on history).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bitacora_core::event::Severity;
use bitacora_core::query::{EventFilter, EventQuery, Order, Pagination};
use bitacora_core::{Event, EventInput, IngestContext, IngestPolicy, SealedEvent, TenantName};
use bitacora_store::{AlertRuleRecord, AppendOutcome, Store, StoreError, StoredEvent};
use chrono::{SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::matcher::{changed, matches, path_value};
use crate::spec::{RuleSpec, parse_duration, parse_filter};
use crate::{Shared, sleep_or_cancel};

/// The action of every firing.
pub const ALERT_FIRED: &str = "bitacora.alert.fired";
/// The group of events that lack the `group_by` field.
pub const NO_GROUP: &str = "none";
/// Seqs listed in one firing at most (a firing is an event, bounded at 64 KiB).
const MAX_LISTED: usize = 1000;

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub id: String,
    pub name: String,
    pub tenant: Option<TenantName>,
    pub spec: RuleSpec,
    filter: EventFilter,
    count: usize,
    window: Option<i64>,
    suppress: Option<i64>,
    /// When the rule was created or last enabled again (µs): it evaluates the events
    /// received since.
    created_at: i64,
    /// `enabled_at` of its settings (0: never disabled and enabled again); a state begun
    /// before it belongs to an earlier life of the rule and is started afresh.
    epoch: i64,
}

impl Compiled {
    pub fn new(record: &AlertRuleRecord) -> Result<Self, String> {
        let spec: RuleSpec =
            serde_json::from_str(&record.spec).map_err(|e| format!("stored rule: {e}"))?;
        let filter = parse_filter(&spec.matcher.filter, "match").map_err(|e| e.to_string())?;
        let (count, window) = match &spec.threshold {
            Some(t) => (t.count.max(1) as usize, Some(parse_duration(&t.window)?)),
            None => (1, None),
        };
        let suppress = spec
            .suppress_for
            .as_deref()
            .map(parse_duration)
            .transpose()?;
        Ok(Self {
            id: record.id.clone(),
            name: record.name.clone(),
            tenant: record.tenant.clone(),
            filter,
            count,
            window,
            suppress,
            created_at: spec.enabled_at.unwrap_or(record.created_at),
            epoch: spec.enabled_at.unwrap_or(0),
            spec,
        })
    }

    /// Whether a firing this rule (as the evaluator read it) completed with an event received
    /// at `at` still stands, the rule being `now` in the store (`None`: deleted since). An
    /// admin's disable takes effect at once: the evaluator may have read the rule just
    /// before it, so the firings of a pass are checked against the store before they are
    /// appended, and one completed by an event received after the disable is dropped.
    fn still_fires(&self, now: Option<&Compiled>, at: i64) -> bool {
        match now {
            None => false,
            Some(n) if !n.spec.disabled && n.epoch == self.epoch => true,
            // Disabled since (and maybe enabled again: the new life evaluates its own events).
            Some(n) => n.spec.disabled_at.is_some_and(|d| at < d),
        }
    }

    fn watches(&self, tenant: &TenantName) -> bool {
        !self.spec.disabled && self.tenant.as_ref().is_none_or(|t| t == tenant)
    }

    /// The part of the match a store's search can narrow events by (everything but the
    /// full-text words, which the store may index late): a superset of the matches.
    pub fn prefilter(&self) -> EventFilter {
        let mut f = self.filter.clone();
        f.text.clear();
        f
    }

    /// Whether the event is one this rule counts.
    pub fn matches(&self, event: &Event) -> bool {
        !event.action.starts_with("bitacora.alert.")
            && matches(&self.filter, event)
            && self
                .spec
                .matcher
                .changes
                .as_ref()
                .is_none_or(|c| changed(c, event))
    }

    /// Feeds one event (at `seq`, received at `at` µs) to the rule; a firing when it fires.
    pub fn evaluate(
        &self,
        state: &mut RuleState,
        seq: u64,
        at: i64,
        event: &Event,
        json: &LazyJson<'_>,
    ) -> Option<Firing> {
        if seq < state.next_seq || !self.matches(event) {
            return None;
        }
        let group = match self
            .spec
            .threshold
            .as_ref()
            .and_then(|t| t.group_by.as_ref())
        {
            Some(path) => path_value(json.get(), path)
                .map(|v| v.chars().take(256).collect())
                .unwrap_or_else(|| NO_GROUP.to_owned()),
            None => NO_GROUP.to_owned(),
        };
        let g = state.groups.entry(group.clone()).or_default();
        if let Some(window) = self.window {
            while g.hits.front().is_some_and(|(_, t)| *t <= at - window) {
                g.hits.pop_front();
            }
        }
        g.hits.push_back((seq, at));
        while g.hits.len() > self.count {
            g.hits.pop_front();
        }
        if g.suppressed_until.is_some_and(|until| at < until) || g.hits.len() < self.count {
            return None;
        }
        let seqs: Vec<u64> = g.hits.drain(..).map(|(s, _)| s).collect();
        g.suppressed_until = self.suppress.map(|s| at + s);
        Some(Firing {
            trigger_seq: seq,
            group,
            seqs,
        })
    }

    /// Drops groups with nothing left to remember at time `at`, so state stays small.
    fn prune(&self, state: &mut RuleState, at: i64) {
        let window = self.window.unwrap_or(0);
        state.groups.retain(|_, g| {
            g.hits.back().is_some_and(|(_, t)| *t > at - window)
                || g.suppressed_until.is_some_and(|u| u > at)
        });
    }

    /// The firing as the event stored in the tenant's log.
    pub fn firing_event(&self, tenant: &TenantName, firing: &Firing) -> Value {
        let listed: Vec<u64> = firing.seqs.iter().copied().take(MAX_LISTED).collect();
        json!({
            "id": format!("alert-{}-{}", self.id, firing.trigger_seq),
            "tenant": tenant.as_str(),
            "action": ALERT_FIRED,
            "category": "bitacora",
            "severity": self.spec.severity.unwrap_or(Severity::High),
            "actor": {"id": "bitacora.alerts", "name": "bitacora alert rules", "type": "system"},
            "target": {"type": "alert_rule", "id": self.id, "name": self.name},
            "description": format!("Alert rule fired: {}", self.name),
            "context": {"source": "bitacora"},
            "metadata": {
                "rule_id": self.id,
                "rule_name": self.name,
                "group_by": self.spec.threshold.as_ref().and_then(|t| t.group_by.clone()),
                "group": firing.group,
                "count": firing.seqs.len(),
                "seqs": listed,
                "destinations": self.spec.destinations,
            },
        })
    }
}

/// An event's untyped JSON, parsed on first use: only a rule that matched and groups by a
/// path needs it.
pub struct LazyJson<'a> {
    body: &'a str,
    parsed: std::cell::OnceCell<Value>,
}

impl<'a> LazyJson<'a> {
    pub fn new(body: &'a str) -> Self {
        Self {
            body,
            parsed: std::cell::OnceCell::new(),
        }
    }

    /// The parsed body (`null` if it does not parse: the typed parse already succeeded, so
    /// that cannot happen for a stored event).
    pub fn get(&self) -> &Value {
        self.parsed
            .get_or_init(|| serde_json::from_str(self.body).unwrap_or(Value::Null))
    }
}

/// What a rule remembers per tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Every event before this was evaluated.
    pub next_seq: u64,
    pub groups: BTreeMap<String, Group>,
    /// The rule's `enabled_at` when this state began (0: since its creation).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One group's open matches and suppression.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// `(seq, received_at µs)` of the matches not yet consumed by a firing, in the window.
    pub hits: VecDeque<(u64, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_until: Option<i64>,
}

/// One firing of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The match that completed it (its id is derived from this).
    pub trigger_seq: u64,
    pub group: String,
    /// The matches it covers, oldest first.
    pub seqs: Vec<u64>,
}

/// Seals a firing for the store, as the server's self-audit events are sealed.
pub fn seal_firing(policy: &IngestPolicy, body: &Value) -> Result<SealedEvent, StoreError> {
    let bad = |e: bitacora_core::FieldError| {
        StoreError::Internal(format!("invalid alert event: {}", e.message))
    };
    let input = EventInput::from_json(body.to_string().as_bytes()).map_err(bad)?;
    SealedEvent::prepare(
        input,
        policy,
        &IngestContext {
            pinned_tenant: None,
            received_at: Utc::now().trunc_subsecs(6),
            client_ip: None,
            allow_reserved: true,
        },
    )
    .map_err(bad)
}

/// Reads `limit` events of `tenant` from `from` on, in `seq` order.
pub(crate) async fn read_from(
    store: &dyn Store,
    tenant: &TenantName,
    from: u64,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    Ok(store
        .search(&EventQuery {
            tenant: tenant.clone(),
            filter: EventFilter::default(),
            order: Order::Asc,
            page: Pagination::Cursor {
                limit,
                after: from.checked_sub(1),
            },
        })
        .await?
        .events)
}

/// What a rule would have done over a tenant's past events (`POST /v1/alert-rules/test`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Backtest {
    /// The first `seq` received within the window (the log's size when none was).
    pub from_seq: u64,
    /// The log's size when the test began: events at `from_seq..to_seq` were considered.
    pub to_seq: u64,
    /// Events the rule matched.
    pub matched: u64,
    /// Times it would have fired (thresholds and suppression applied, as the evaluator does).
    pub firings: u64,
    /// The first firings, at most [`BACKTEST_EXAMPLES`].
    pub examples: Vec<BacktestFiring>,
    /// True when the test stopped after [`BACKTEST_MAX_MATCHES`] matches (the counts cover
    /// the events up to there).
    pub truncated: bool,
}

/// One firing a test found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestFiring {
    pub trigger_seq: u64,
    pub group: String,
    pub seqs: Vec<u64>,
    /// When the event that completed it was received (µs).
    pub at: i64,
}

/// Firings a test lists at most.
pub const BACKTEST_EXAMPLES: usize = 20;
/// Matches a test evaluates at most.
pub const BACKTEST_MAX_MATCHES: u64 = 1_000_000;

/// The first `seq` of the tenant's log received at or after `since` (µs), by bisection
/// (`received_at` follows `seq`; a purged event counts as older).
async fn first_received_since(
    store: &dyn Store,
    tenant: &TenantName,
    size: u64,
    since: i64,
) -> Result<u64, StoreError> {
    let (mut lo, mut hi) = (0, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let older = match store.event_by_seq(tenant, mid).await? {
            Some(e) => serde_json::from_str::<Event>(&e.body)
                .map(|e| e.received_at.timestamp_micros() < since)
                .unwrap_or(true),
            None => true,
        };
        if older {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Evaluates `rule` afresh over the events of `tenant` received since `since` (µs), with the
/// evaluator's own semantics (a fresh state: no earlier match counts). The store narrows the
/// events by the rule's filters first; each candidate is then matched as the evaluator does.
pub async fn backtest(
    store: &dyn Store,
    rule: &Compiled,
    tenant: &TenantName,
    since: i64,
) -> Result<Backtest, StoreError> {
    let size = store.log_size(tenant).await?;
    let from = first_received_since(store, tenant, size, since).await?;
    let mut out = Backtest {
        from_seq: from,
        to_seq: size,
        ..Backtest::default()
    };
    let mut state = RuleState::default();
    let mut after = from.checked_sub(1);
    let filter = rule.prefilter();
    'pages: loop {
        let page = store
            .search(&EventQuery {
                tenant: tenant.clone(),
                filter: filter.clone(),
                order: Order::Asc,
                page: Pagination::Cursor { limit: 1000, after },
            })
            .await?;
        for stored in &page.events {
            if stored.seq >= size {
                break 'pages;
            }
            let Ok(event) = serde_json::from_str::<Event>(&stored.body) else {
                continue;
            };
            if !rule.matches(&event) {
                continue;
            }
            out.matched += 1;
            let json = LazyJson::new(&stored.body);
            let at = event.received_at.timestamp_micros();
            if let Some(f) = rule.evaluate(&mut state, stored.seq, at, &event, &json) {
                out.firings += 1;
                if out.examples.len() < BACKTEST_EXAMPLES {
                    out.examples.push(BacktestFiring {
                        trigger_seq: f.trigger_seq,
                        group: f.group,
                        seqs: f.seqs,
                        at,
                    });
                }
            }
            if out.matched >= BACKTEST_MAX_MATCHES {
                out.truncated = true;
                break 'pages;
            }
        }
        match page.next_after {
            Some(seq) if seq + 1 < size => after = Some(seq),
            _ => break,
        }
    }
    Ok(out)
}

/// The evaluator task: one pass over every tenant per poll interval, under the `alerts`
/// lease (one server evaluates at a time).
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut states: HashMap<(String, TenantName), RuleState> = HashMap::new();
    let mut leader = false;
    loop {
        if shared.cancel.is_cancelled() {
            return;
        }
        // No rule, no lease: servers without rules write nothing to the store.
        let no_rules = match shared.store.alert_rules().await {
            Ok(rules) => rules.is_empty(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read alert rules");
                true
            }
        };
        if no_rules {
            shared.status.set_rules(&[]);
            states.clear();
            leader = false;
        } else {
            evaluate_as_leader(&shared, &mut states, &mut leader).await;
        }
        if !sleep_or_cancel(&shared.cancel, shared.config.poll_interval()).await {
            return;
        }
    }
}

async fn evaluate_as_leader(
    shared: &Shared,
    states: &mut HashMap<(String, TenantName), RuleState>,
    leader: &mut bool,
) {
    {
        match shared.lease("alerts").await {
            Ok(true) => {
                if !*leader {
                    // Another server may have evaluated meanwhile: trust the store.
                    states.clear();
                    *leader = true;
                }
                if let Err(e) = pass(shared, states).await {
                    tracing::warn!(error = %e, "alert evaluation failed; retrying");
                    states.clear();
                }
            }
            Ok(false) => *leader = false,
            Err(e) => {
                *leader = false;
                tracing::warn!(error = %e, "cannot take the alert lease");
            }
        }
    }
}

async fn pass(
    shared: &Shared,
    states: &mut HashMap<(String, TenantName), RuleState>,
) -> Result<(), StoreError> {
    let store = &*shared.store;
    let mut rules = Vec::new();
    for record in store.alert_rules().await? {
        match Compiled::new(&record) {
            Ok(r) => rules.push(r),
            Err(e) => tracing::warn!(rule = %record.id, error = %e, "skipping an unreadable rule"),
        }
    }
    states.retain(|(id, _), _| rules.iter().any(|r| r.id == *id && !r.spec.disabled));
    shared.status.set_rules(&rules);
    if rules.is_empty() {
        return Ok(());
    }
    for tenant in store.tenants().await? {
        let watching: Vec<&Compiled> = rules.iter().filter(|r| r.watches(&tenant)).collect();
        if watching.is_empty() {
            continue;
        }
        let size = store.log_size(&tenant).await?;
        for rule in &watching {
            let key = (rule.id.clone(), tenant.clone());
            if states.get(&key).is_some_and(|s| s.epoch == rule.epoch) {
                continue;
            }
            let stored: Option<RuleState> = match states.remove(&key) {
                Some(s) => Some(s),
                None => match store.alert_state(&rule.id, &tenant).await? {
                    Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
                        StoreError::Corrupt(format!("alert state of {}: {e}", rule.id))
                    })?),
                    None => None,
                },
            };
            let state = match stored {
                Some(s) if s.epoch == rule.epoch => s,
                // New, or enabled again since the state was saved: start after the events
                // received before then (nothing of the disabled time is evaluated).
                _ => {
                    let fresh = RuleState {
                        next_seq: start_of(store, &tenant, size, rule.created_at).await?,
                        groups: BTreeMap::new(),
                        epoch: rule.epoch,
                    };
                    save(store, &rule.id, &tenant, &fresh).await?;
                    fresh
                }
            };
            states.insert(key, state);
        }
        // The watching rules' states, by position, for the walk (no map lookup per event);
        // on an error they are dropped, and the caller reloads every state from the store.
        let mut local: Vec<RuleState> = watching
            .iter()
            .map(|r| {
                states
                    .remove(&(r.id.clone(), tenant.clone()))
                    .expect("loaded above")
            })
            .collect();
        loop {
            let from = local.iter().map(|s| s.next_seq).min().unwrap_or(size);
            if from >= size || shared.cancel.is_cancelled() {
                break;
            }
            let events = read_from(store, &tenant, from, 1000).await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            let mut firings = Vec::new();
            let mut fired: Vec<(usize, i64)> = Vec::new();
            let mut evaluated = vec![0u64; watching.len()];
            for stored in &events {
                let corrupt = |e: serde_json::Error| {
                    StoreError::Corrupt(format!("event {}: {e}", stored.seq))
                };
                let event: Event = serde_json::from_str(&stored.body).map_err(corrupt)?;
                // The untyped form only when a matching rule reads a `group_by` path (parsing
                // is most of the cost).
                let json = LazyJson::new(&stored.body);
                let at = event.received_at.timestamp_micros();
                for (i, rule) in watching.iter().enumerate() {
                    let state = &mut local[i];
                    if stored.seq < state.next_seq {
                        continue;
                    }
                    evaluated[i] += 1;
                    if let Some(f) = rule.evaluate(state, stored.seq, at, &event, &json) {
                        firings.push(seal_firing(
                            &shared.policy,
                            &rule.firing_event(&tenant, &f),
                        )?);
                        fired.push((i, at));
                    }
                }
            }
            // Counted once per batch: a lock and a metric per rule per event cost ingest
            // throughput (issue 17's overhead target).
            for (rule, n) in watching.iter().zip(&evaluated) {
                shared.status.evaluated(&rule.id, *n);
            }
            if !firings.is_empty() {
                // Firings are rare: one read of the rules each time some are due.
                let now = store.alert_rules().await?;
                let mut kept = Vec::with_capacity(firings.len());
                for (firing, (i, at)) in firings.into_iter().zip(fired) {
                    let rule = watching[i];
                    let current = now
                        .iter()
                        .find(|r| r.id == rule.id)
                        .and_then(|r| Compiled::new(r).ok());
                    if rule.still_fires(current.as_ref(), at) {
                        shared.status.fired(&rule.id);
                        kept.push(firing);
                    }
                }
                firings = kept;
            }
            if !firings.is_empty() {
                for outcome in store.append(firings).await? {
                    if let AppendOutcome::Conflict { id } = outcome {
                        return Err(StoreError::Internal(format!(
                            "alert event id `{id}` conflicts with a stored event"
                        )));
                    }
                }
            }
            let newest_at = events
                .last()
                .and_then(|e| serde_json::from_str::<Event>(&e.body).ok())
                .map(|e| e.received_at.timestamp_micros())
                .unwrap_or(0);
            let mut changed = Vec::new();
            for (rule, state) in watching.iter().zip(local.iter_mut()) {
                if state.next_seq <= last {
                    state.next_seq = last + 1;
                    rule.prune(state, newest_at);
                    changed.push((
                        rule.id.clone(),
                        serde_json::to_string(&*state).expect("state serializes"),
                    ));
                }
            }
            // One write for every rule of the batch: the writes of the evaluator share the
            // store's write lock with ingest.
            store.save_alert_states(&tenant, &changed).await?;
        }
        for (rule, state) in watching.iter().zip(local) {
            states.insert((rule.id.clone(), tenant.clone()), state);
        }
    }
    Ok(())
}

/// Where a new rule starts in a log of `size` events: after the last event received before
/// the rule was created, found by walking back from the head (a few events at most: the
/// evaluator picks a rule up within a poll interval of its creation). Events appended
/// between the creation and the evaluator's first pass are therefore evaluated too.
async fn start_of(
    store: &dyn Store,
    tenant: &TenantName,
    size: u64,
    created_at: i64,
) -> Result<u64, StoreError> {
    let mut start = size;
    // Bounded: a rule picked up very late starts at most this far back.
    for _ in 0..100_000 {
        let Some(prev) = start.checked_sub(1) else {
            break;
        };
        let Some(stored) = store.event_by_seq(tenant, prev).await? else {
            break;
        };
        let received = serde_json::from_str::<Event>(&stored.body)
            .map(|e| e.received_at.timestamp_micros())
            .unwrap_or(i64::MIN);
        if received < created_at {
            break;
        }
        start = prev;
    }
    Ok(start)
}

async fn save(
    store: &dyn Store,
    rule: &str,
    tenant: &TenantName,
    state: &RuleState,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(state).expect("state serializes");
    store.save_alert_state(rule, tenant, &json).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(spec: Value) -> Compiled {
        Compiled::new(&AlertRuleRecord {
            id: "r1".into(),
            name: "rule".into(),
            tenant: None,
            spec: spec.to_string(),
            created_at: 0,
        })
        .unwrap()
    }

    #[test]
    fn a_disabled_rule_watches_nothing_and_an_enabled_one_starts_a_new_epoch() {
        let mut spec = json!({"match": {}, "disabled": true});
        let tenant = TenantName::default_tenant();
        assert!(!rule(spec.clone()).watches(&tenant));
        spec["disabled"] = json!(false);
        spec["enabled_at"] = json!(500);
        let r = rule(spec);
        assert!(r.watches(&tenant));
        assert_eq!((r.epoch, r.created_at), (500, 500));
        // A state saved before the rule was enabled again is not this life's.
        assert_ne!(RuleState::default().epoch, r.epoch);
    }

    #[test]
    fn a_firing_completed_after_a_disable_is_dropped() {
        let read = rule(json!({"match": {}}));
        // Unchanged: it fires.
        assert!(read.still_fires(Some(&rule(json!({"match": {}}))), 2_000));
        // Deleted since: nothing.
        assert!(!read.still_fires(None, 2_000));
        // Disabled at 1000: an event received before the disable still fires, not one after.
        let disabled = rule(json!({"match": {}, "disabled": true, "disabled_at": 1_000}));
        assert!(read.still_fires(Some(&disabled), 999));
        assert!(!read.still_fires(Some(&disabled), 1_000));
        // Disabled at 1000 and enabled again at 1500: the old life ended at the disable.
        let again = rule(json!({"match": {}, "disabled_at": 1_000, "enabled_at": 1_500}));
        assert!(read.still_fires(Some(&again), 999));
        assert!(!read.still_fires(Some(&again), 1_200));
        assert!(!read.still_fires(Some(&again), 2_000));
        // Disabled by a version that did not record when: nothing more fires.
        assert!(!read.still_fires(Some(&rule(json!({"match": {}, "disabled": true}))), 0));
    }

    fn event(v: Value) -> (Event, String) {
        let mut v = v;
        let o = v.as_object_mut().unwrap();
        o.insert("id".into(), json!("e"));
        o.insert("tenant".into(), json!("default"));
        o.insert("received_at".into(), json!("2026-01-20T10:30:00Z"));
        o.insert("occurred_at".into(), json!("2026-01-20T10:30:00Z"));
        o.entry("category").or_insert(json!("user"));
        o.entry("severity").or_insert(json!("low"));
        o.entry("outcome").or_insert(json!("success"));
        (serde_json::from_value(v.clone()).unwrap(), v.to_string())
    }

    const MIN: i64 = 60_000_000;

    /// Feeds `(seq, minute, event)` and returns the seqs that fired.
    fn run(rule: &Compiled, feed: &[(u64, i64, Value)]) -> Vec<Firing> {
        let mut state = RuleState::default();
        feed.iter()
            .filter_map(|(seq, minute, v)| {
                let (e, j) = event(v.clone());
                rule.evaluate(&mut state, *seq, minute * MIN, &e, &LazyJson::new(&j))
            })
            .collect()
    }

    fn failed_login(ip: Option<&str>) -> Value {
        match ip {
            Some(ip) => {
                json!({"action": "user.login", "outcome": "failure", "context": {"ip": ip}})
            }
            None => json!({"action": "user.login", "outcome": "failure"}),
        }
    }

    fn brute_force() -> Compiled {
        rule(json!({
            "match": {"action": "user.login", "outcome": "failure"},
            "threshold": {"count": 3, "window": "10m", "group_by": "context.ip"}
        }))
    }

    #[test]
    fn a_threshold_fires_once_when_crossed_not_on_every_later_event() {
        // The Wazuh failure: firing on the Nth event and every one after it.
        let feed: Vec<_> = (0..5)
            .map(|i| (i, i as i64, failed_login(Some("10.0.0.1"))))
            .collect();
        let fired = run(&brute_force(), &feed);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].seqs, vec![0, 1, 2]);
        assert_eq!(fired[0].group, "10.0.0.1");
        // A second full set of matches is a second crossing.
        let feed: Vec<_> = (0..6)
            .map(|i| (i, i as i64, failed_login(Some("10.0.0.1"))))
            .collect();
        let fired = run(&brute_force(), &feed);
        assert_eq!(
            fired.iter().map(|f| f.trigger_seq).collect::<Vec<_>>(),
            vec![2, 5]
        );
    }

    #[test]
    fn events_without_the_group_field_are_grouped_under_none() {
        // The other Wazuh failure: never firing when the group-by field is missing.
        let feed: Vec<_> = (0..3).map(|i| (i, 0, failed_login(None))).collect();
        let fired = run(&brute_force(), &feed);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].group, NO_GROUP);
    }

    #[test]
    fn groups_and_windows_are_separate() {
        let feed = vec![
            (0, 0, failed_login(Some("10.0.0.1"))),
            (1, 1, failed_login(Some("10.0.0.2"))),
            (2, 2, failed_login(Some("10.0.0.1"))),
            (3, 3, failed_login(Some("10.0.0.2"))),
            // 10.0.0.1's first match has left the window (0 + 10 minutes <= 10).
            (4, 10, failed_login(Some("10.0.0.1"))),
            (
                5,
                11,
                json!({"action": "user.login", "context": {"ip": "10.0.0.1"}}),
            ),
            (6, 11, failed_login(Some("10.0.0.1"))),
            // At minute 21 only seq 6 is within the window: nothing fires.
            (7, 21, failed_login(Some("10.0.0.1"))),
            (8, 22, failed_login(Some("10.0.0.2"))),
        ];
        let fired = run(&brute_force(), &feed);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].seqs, vec![2, 4, 6]);
    }

    #[test]
    fn suppression_silences_a_group_then_lets_it_fire_again() {
        let r = rule(json!({
            "match": {"action": "user.role_change", "changes": {"field": "role", "to": "admin"}},
            "suppress_for": "30m"
        }));
        let promo = json!({"action": "user.role_change",
                           "changes": [{"field": "role", "old": "user", "new": "admin"}]});
        let demo = json!({"action": "user.role_change",
                          "changes": [{"field": "role", "old": "admin", "new": "user"}]});
        let feed = vec![
            (0, 0, promo.clone()),
            (1, 1, demo),
            (2, 10, promo.clone()),
            (3, 29, promo.clone()),
            (4, 30, promo),
        ];
        let fired: Vec<u64> = run(&r, &feed).iter().map(|f| f.trigger_seq).collect();
        assert_eq!(fired, vec![0, 4]);
    }

    #[test]
    fn alerts_never_match_rules_and_state_resumes_where_it_stopped() {
        let r = rule(json!({"match": {}}));
        let (e, j) = event(json!({"action": ALERT_FIRED}));
        let mut state = RuleState::default();
        assert_eq!(r.evaluate(&mut state, 0, 0, &e, &LazyJson::new(&j)), None);
        let (e, j) = event(json!({"action": "user.login"}));
        state.next_seq = 5;
        assert_eq!(r.evaluate(&mut state, 4, 0, &e, &LazyJson::new(&j)), None);
        assert!(
            r.evaluate(&mut state, 5, 0, &e, &LazyJson::new(&j))
                .is_some()
        );
        // The state round-trips through its stored JSON.
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<RuleState>(&json).unwrap(), state);
    }

    #[test]
    fn firings_are_valid_events_with_ids_derived_from_the_rule_and_seq() {
        let r = brute_force();
        let f = Firing {
            trigger_seq: 42,
            group: "10.0.0.1".into(),
            seqs: vec![40, 41, 42],
        };
        let body = r.firing_event(&TenantName::default_tenant(), &f);
        assert_eq!(body["id"], "alert-r1-42");
        let sealed = seal_firing(&IngestPolicy::default(), &body).unwrap();
        // Workers of alert-only destinations find firings by this text (stream.rs).
        assert!(
            sealed.body.contains("\"action\":\"bitacora.alert.fired\""),
            "{}",
            sealed.body
        );
    }
}
