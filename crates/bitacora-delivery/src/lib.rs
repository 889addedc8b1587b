//! Alerts and streaming (CONTRACT §10): destinations, streams and alert rules.
//!
//! The server calls [`spawn_delivery`] once with its store; everything else happens here:
//!
//! - a **supervisor** reloads destinations and rules from the store every second (so every
//!   server sharing a store sees an admin's change) and runs one [`stream`] worker per
//!   enabled destination, restarting it when its settings or the rules naming it change;
//! - the **alert evaluator** ([`alert`]) feeds every rule the events of each tenant it
//!   watches, in `seq` order, and appends each firing to that tenant's log as a
//!   `bitacora.alert.fired` event;
//! - the workers deliver a stream's matching events *and* the firings of the rules naming
//!   the destination, both with the same guarantee: a stored position per (destination,
//!   tenant) that advances only after the receiver accepted the batch.
//!
//! [`send`] holds the senders (signed webhooks, Slack, Splunk HEC, NATS JetStream),
//! [`format`] the `bitacora` and `ocsf` forms, [`matcher`] the in-memory filter, [`ssrf`] the
//! address guard, and [`spec`] what an admin may ask for. The user-facing description is `docs/DELIVERY.md`.
//!
//! **Architecture invariant:** delivery never writes an event except a firing, which is
//! sealed and appended like any other event; it knows no SQL (positions, rules and states go
//! through the `Store` trait) and no HTTP status codes of its own API.

pub mod alert;
pub mod email;
pub mod format;
pub mod matcher;
pub mod send;
pub mod spec;
pub mod ssrf;
pub mod stream;
pub mod syslog;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitacora_core::{IngestPolicy, TenantName};
use bitacora_store::{DestinationRecord, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `[delivery]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Run the workers and the evaluator (the API manages destinations and rules either way).
    pub enabled: bool,
    /// Allow destinations on loopback, private and link-local addresses (tests, on-premise
    /// receivers). Off by default: such a URL is refused with `422` when created, and refused
    /// again at every connection.
    pub allow_private_destinations: bool,
    /// How often an idle worker or the evaluator looks for new events.
    pub poll_interval_ms: u64,
    /// Time allowed for one delivery request (connect + answer).
    pub timeout_secs: u64,
    /// Events read per batch (a batch sent holds those of them that match).
    pub max_batch: u32,
    /// Longest wait between retries of a failing destination.
    pub max_backoff_secs: u64,
    /// How long a server holds a destination (or the evaluator) before another server may
    /// take over, when it stops renewing (it renews every pass).
    pub lease_secs: u64,
    /// `[delivery.smtp]`: the relay `email` destinations send through (none: such
    /// destinations are refused with `422`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<email::SmtpConfig>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_private_destinations: false,
            poll_interval_ms: 200,
            timeout_secs: 10,
            max_batch: 500,
            max_backoff_secs: 60,
            lease_secs: 15,
            smtp: None,
        }
    }
}

impl DeliveryConfig {
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.clamp(10, 60_000))
    }

    fn max_backoff(&self) -> Duration {
        Duration::from_secs(self.max_backoff_secs.max(1))
    }
}

/// What `/readyz`, `/metrics` and the API show of delivery in this process.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub destinations: BTreeMap<String, DestinationStatus>,
    pub rules: BTreeMap<String, RuleStatus>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DestinationStatus {
    pub name: String,
    /// `starting`, `running`, `retrying`, `standby` (another server delivers) or `disabled`.
    pub state: String,
    /// Events accepted by the receiver since this server started.
    pub delivered: u64,
    /// Failed delivery attempts since this server started.
    pub failed: u64,
    pub last_error: Option<String>,
    /// Events not yet examined, per tenant.
    pub lag: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleStatus {
    pub name: String,
    /// Events evaluated since this server started.
    pub evaluated: u64,
    /// Firings since this server started.
    pub fired: u64,
}

/// A cheap, cloneable view of the delivery status.
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<Status>>);

impl StatusHandle {
    pub fn snapshot(&self) -> Status {
        self.0.lock().expect("status lock").clone()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Status) -> T) -> T {
        f(&mut self.0.lock().expect("status lock"))
    }

    fn destination(&self, id: &str, f: impl FnOnce(&mut DestinationStatus)) {
        self.with(|s| f(s.destinations.entry(id.to_owned()).or_default()));
    }

    fn destination_state(&self, id: &str, state: &str) {
        self.destination(id, |d| d.state = state.to_owned());
    }

    fn destination_error(&self, id: &str, error: &str) {
        self.destination(id, |d| d.last_error = Some(error.to_owned()));
    }

    fn delivered(&self, id: &str, n: u64) {
        self.destination(id, |d| {
            d.delivered += n;
            d.state = "running".into();
        });
        metrics::counter!("bitacora_delivery_delivered_total", "destination" => id.to_owned())
            .increment(n);
    }

    fn failed(&self, id: &str, error: &str) {
        self.destination(id, |d| {
            d.failed += 1;
            d.state = "retrying".into();
            d.last_error = Some(error.to_owned());
        });
        metrics::counter!("bitacora_delivery_failed_total", "destination" => id.to_owned())
            .increment(1);
    }

    fn lag(&self, id: &str, tenant: &TenantName, lag: u64) {
        self.destination(id, |d| {
            d.lag.insert(tenant.as_str().to_owned(), lag);
        });
        metrics::gauge!("bitacora_delivery_lag_events", "destination" => id.to_owned(),
                        "tenant" => tenant.as_str().to_owned())
        .set(lag as f64);
    }

    fn set_rules(&self, rules: &[alert::Compiled]) {
        self.with(|s| {
            s.rules.retain(|id, _| rules.iter().any(|r| r.id == *id));
            for r in rules {
                s.rules.entry(r.id.clone()).or_default().name = r.name.clone();
            }
        });
    }

    fn evaluated(&self, rule: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.with(|s| {
            if let Some(r) = s.rules.get_mut(rule) {
                r.evaluated += n;
            }
        });
        metrics::counter!("bitacora_alert_rule_evaluated_total", "rule" => rule.to_owned())
            .increment(n);
    }

    fn fired(&self, rule: &str) {
        self.with(|s| {
            if let Some(r) = s.rules.get_mut(rule) {
                r.fired += 1;
            }
        });
        metrics::counter!("bitacora_alert_rule_fired_total", "rule" => rule.to_owned())
            .increment(1);
    }
}

/// Registers the metrics' descriptions (call once, before serving `/metrics`).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "bitacora_delivery_delivered_total",
        "Events accepted by a destination's receiver"
    );
    metrics::describe_counter!(
        "bitacora_delivery_failed_total",
        "Failed delivery attempts to a destination (each is retried)"
    );
    metrics::describe_gauge!(
        "bitacora_delivery_lag_events",
        "Events of a tenant's log a destination has not examined yet"
    );
    metrics::describe_counter!(
        "bitacora_alert_rule_evaluated_total",
        "Events an alert rule evaluated"
    );
    metrics::describe_counter!(
        "bitacora_alert_rule_fired_total",
        "Firings of an alert rule"
    );
}

/// What every task shares.
pub(crate) struct Shared {
    store: Arc<dyn Store>,
    policy: Arc<IngestPolicy>,
    config: DeliveryConfig,
    status: StatusHandle,
    client: reqwest::Client,
    /// This process's lease holder name.
    holder: String,
    /// The HOSTNAME of syslog messages.
    hostname: String,
    /// The SMTP relay of `email` destinations, or why there is none.
    mailer: Result<email::Mailer, String>,
    /// When each lease this server holds was last written (see [`Shared::lease`]).
    renewed: Mutex<HashMap<String, std::time::Instant>>,
    /// Per (destination, tenant): where the batches passed over since the last delivery
    /// began (see [`stream`]).
    unsent_from: Mutex<HashMap<(String, TenantName), u64>>,
    cancel: CancellationToken,
}

impl Shared {
    fn new(
        store: Arc<dyn Store>,
        policy: Arc<IngestPolicy>,
        config: DeliveryConfig,
        status: StatusHandle,
        cancel: CancellationToken,
    ) -> Self {
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        Self {
            client: ssrf::http_client(config.allow_private_destinations, timeout),
            store,
            policy,
            status,
            holder: uuid::Uuid::new_v4().to_string(),
            hostname: syslog::local_hostname(),
            mailer: match &config.smtp {
                Some(smtp) => email::Mailer::new(smtp, timeout),
                None => Err("this server has no [delivery.smtp] to send email with".into()),
            },
            renewed: Mutex::new(HashMap::new()),
            unsent_from: Mutex::new(HashMap::new()),
            config,
            cancel,
        }
    }

    /// Takes or renews the lease `name`. A lease renewed less than a third of its time ago
    /// is still this server's (no other holder can take an unexpired lease), so it is not
    /// written again: every pass of every worker would otherwise be a store write competing
    /// with ingest for the write lock.
    async fn lease(&self, name: &str) -> Result<bool, StoreError> {
        let ttl = Duration::from_secs(self.config.lease_secs.max(1));
        let now = std::time::Instant::now();
        if let Some(at) = self.renewed.lock().expect("lease cache").get(name)
            && now.duration_since(*at) < ttl / 3
        {
            return Ok(true);
        }
        let held = self
            .store
            .acquire_lease(name, &self.holder, now_micros(), ttl.as_micros() as i64)
            .await;
        let mut renewed = self.renewed.lock().expect("lease cache");
        match held {
            Ok(true) => {
                renewed.insert(name.to_owned(), now);
            }
            _ => {
                renewed.remove(name);
            }
        }
        held
    }
}

pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Sleeps `d`; false when cancelled first.
pub(crate) async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// Starts the supervisor (destination workers) and the alert evaluator; both stop when
/// `cancel` is cancelled. A disabled `[delivery]` starts nothing.
pub fn spawn_delivery(
    store: Arc<dyn Store>,
    policy: Arc<IngestPolicy>,
    config: DeliveryConfig,
    cancel: CancellationToken,
) -> (JoinHandle<()>, StatusHandle) {
    let status = StatusHandle::default();
    let shared = Arc::new(Shared::new(store, policy, config, status.clone(), cancel));
    let task = tokio::spawn(async move {
        if !shared.config.enabled {
            return;
        }
        let evaluator = tokio::spawn(alert::run(shared.clone()));
        supervise(&shared).await;
        let _ = evaluator.await;
    });
    (task, status)
}

async fn supervise(shared: &Arc<Shared>) {
    let mut workers: HashMap<String, (stream::Plan, JoinHandle<()>)> = HashMap::new();
    loop {
        match plans(&*shared.store).await {
            Ok(plans) => {
                workers.retain(|id, (plan, task)| {
                    let keep = !task.is_finished() && plans.get(id) == Some(plan);
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                shared.status.with(|s| {
                    s.destinations.retain(|id, _| plans.contains_key(id));
                });
                for (id, plan) in plans {
                    if plan.record.disabled.is_some() {
                        shared.status.destination(&id, |d| {
                            d.name = plan.record.name.clone();
                            d.state = "disabled".into();
                        });
                        continue;
                    }
                    if workers.contains_key(&id) {
                        continue;
                    }
                    shared.status.destination(&id, |d| {
                        d.name = plan.record.name.clone();
                        d.state = "starting".into();
                    });
                    let task = tokio::spawn(stream::run(shared.clone(), plan.clone()));
                    workers.insert(id, (plan, task));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read destinations"),
        }
        if !sleep_or_cancel(&shared.cancel, Duration::from_secs(1)).await {
            break;
        }
    }
    // A worker may be waiting on a receiver (up to `timeout_secs`): stop it where it is. Its
    // batch was not recorded as delivered, so it is sent again after the restart.
    for (_, (_, task)) in workers {
        task.abort();
        let _ = task.await;
    }
}

/// Every destination with the rules that name it.
async fn plans(store: &dyn Store) -> Result<HashMap<String, stream::Plan>, StoreError> {
    let mut by_destination: HashMap<String, HashSet<String>> = HashMap::new();
    for rule in store.alert_rules().await? {
        if let Ok(spec) = serde_json::from_str::<spec::RuleSpec>(&rule.spec) {
            for d in spec.destinations {
                by_destination.entry(d).or_default().insert(rule.id.clone());
            }
        }
    }
    Ok(store
        .destinations()
        .await?
        .into_iter()
        .map(|record: DestinationRecord| {
            let rules = by_destination.remove(&record.id).unwrap_or_default();
            (record.id.clone(), stream::Plan { record, rules })
        })
        .collect())
}

/// The action of the event a test delivery carries.
pub const TEST_ACTION: &str = "bitacora.destination.test";

/// Sends one test event to a destination now, as its worker would (same sender, format,
/// signature and address guard), and says whether the receiver accepted it. The event is
/// not in any log: its `seq` is 0, and a webhook's body has `"type": "bitacora.test"`.
pub async fn send_test(
    store: Arc<dyn Store>,
    config: &DeliveryConfig,
    record: &DestinationRecord,
    requested_by: &str,
) -> Result<(), String> {
    let spec: spec::DestinationSpec =
        serde_json::from_str(&record.spec).map_err(|e| format!("unreadable settings: {e}"))?;
    let policy = Arc::new(IngestPolicy::default());
    let shared = Shared::new(
        store,
        policy.clone(),
        config.clone(),
        StatusHandle::default(),
        CancellationToken::new(),
    );
    let tenant = record
        .tenant
        .clone()
        .unwrap_or_else(TenantName::default_tenant);
    let body = serde_json::json!({
        "id": format!("test-{}", uuid::Uuid::now_v7()),
        "tenant": tenant.as_str(),
        "action": TEST_ACTION,
        "category": "bitacora",
        "severity": "low",
        "actor": {"id": requested_by, "type": "service"},
        "target": {"type": "destination", "id": record.id, "name": record.name},
        "description": format!("A test delivery to destination {}", record.name),
        "context": {"source": "bitacora"},
    });
    let sealed = alert::seal_firing(&policy, &body).map_err(|e| e.to_string())?;
    let stored = bitacora_store::StoredEvent {
        seq: 0,
        leaf_hash: sealed.leaf_hash,
        body: sealed.body.clone(),
    };
    let batch = send::Batch {
        id: format!("msg_test_{}", uuid::Uuid::now_v7().simple()),
        tenant: tenant.as_str().to_owned(),
        from_seq: 0,
        to_seq: 0,
        checkpoint: None,
        events: vec![format::render(spec.format, &stored, Some(&sealed.event))],
        meta: vec![send::ItemMeta::of(0, &sealed.event)],
        test: true,
    };
    let mut links = stream::Links::default();
    match stream::deliver(&shared, &spec, &batch, &mut links).await {
        send::Outcome::Accepted => Ok(()),
        send::Outcome::Gone(e) => Err(e),
        send::Outcome::Retry { error, .. } => Err(error),
    }
}

/// A destination's health in one tenant, for `GET /v1/destinations`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantHealth {
    pub tenant: String,
    /// The last `seq` examined and delivered (or skipped by the filter); `None` before the
    /// first.
    pub last_delivered_seq: Option<u64>,
    /// Events of the log past the position.
    pub lag: u64,
    /// Age of the oldest event not yet examined, in seconds (0 when caught up).
    pub lag_seconds: f64,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

/// The destination's health in every tenant it serves, from the store (so every server
/// shows the same, whichever delivers).
pub async fn health(
    store: &dyn Store,
    destination: &DestinationRecord,
) -> Result<Vec<TenantHealth>, StoreError> {
    let positions = store.delivery_positions(&destination.id).await?;
    let tenants = match &destination.tenant {
        Some(t) => vec![t.clone()],
        None => store.tenants().await?,
    };
    let mut out = Vec::new();
    for tenant in tenants {
        let p = positions.iter().find(|p| p.tenant == tenant);
        let next = p.map_or(0, |p| p.next_seq);
        let size = store.log_size(&tenant).await?;
        let lag_seconds = if next < size {
            match store.event_by_seq(&tenant, next).await? {
                Some(e) => serde_json::from_str::<bitacora_core::Event>(&e.body)
                    .map(|e| {
                        ((now_micros() - e.received_at.timestamp_micros()).max(0) as f64) / 1e6
                    })
                    .unwrap_or(0.0),
                None => 0.0,
            }
        } else {
            0.0
        };
        out.push(TenantHealth {
            tenant: tenant.as_str().to_owned(),
            last_delivered_seq: next.checked_sub(1),
            lag: size.saturating_sub(next),
            lag_seconds,
            last_success_at: p.and_then(|p| p.last_success_at),
            last_error: p.and_then(|p| p.last_error.clone()),
            last_error_at: p.and_then(|p| p.last_error_at),
        });
    }
    Ok(out)
}
