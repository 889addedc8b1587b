//! Destination workers: one task per enabled destination, each walking every tenant's log
//! in `seq` order from the destination's stored position.
//!
//! A worker reads up to `max_batch` events past its position, keeps those it must deliver
//! (a stream's filter matches them, or they are firings of a rule that names the
//! destination), and sends them as one batch, retried with the same `webhook-id` until the
//! receiver accepts it; only then is the position saved past the batch. So the receiver
//! sees every event at least once and in order; after a crash, the batch in flight is sent
//! again (a duplicate, never a gap). The batch is whatever the log holds past the position,
//! up to `max_batch`: small when the stream keeps up, full-sized when it has a backlog.
//! A batch none of whose events is for the destination is not sent; the next one sent covers
//! its range too (`from_seq`, remembered in [`Shared`] so that a worker restarted for new
//! settings keeps it), so consecutive deliveries leave no hole in `seq` (except across a
//! restart of the server, which starts from the stored position). A remembered start older
//! than another server's deliveries only makes a range start earlier, never hides a gap.
//!
//! With several servers on one store, a worker delivers only while it holds the
//! destination's lease, renewed every pass; a server that dies stops renewing, and another
//! takes over from the stored position once the lease runs out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bitacora_core::{Event, TenantName};
use bitacora_store::{DeliveryPosition, DestinationRecord, StoreError, StoredEvent};
use serde_json::Value;

use crate::alert::{ALERT_FIRED, read_from};
use crate::format::{needs_event, render};
use crate::send::{Batch, ItemMeta, Outcome, needs_meta, send, send_nats};
use crate::spec::{DestinationSpec, Kind, nats_subject, parse_filter};
use crate::{Shared, now_micros, sleep_or_cancel};

/// How a firing's action appears in its stored (canonical) body.
const FIRED_IN_BODY: &str = "\"action\":\"bitacora.alert.fired\"";

/// At most this many tenants' next batches are read ahead at a time, per worker.
const READ_AHEAD_TENANTS: usize = 8;

/// What a worker was started with; a change restarts it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub record: DestinationRecord,
    /// The rules whose firings it delivers.
    pub rules: HashSet<String>,
}

/// Exponential backoff from 500 ms, doubling to `max`.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(500),
            max,
        }
    }

    fn step(&mut self) -> Duration {
        let d = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = Duration::from_millis(500);
    }
}

enum Stop {
    /// Cancelled, or the destination was disabled.
    Done,
    /// The lease went to another server.
    LostLease,
}

pub(crate) async fn run(shared: Arc<Shared>, plan: Plan) {
    let mut links = Links::default();
    work(&shared, &plan, &mut links).await;
    links.saved().await;
}

async fn work(shared: &Arc<Shared>, plan: &Plan, links: &mut Links) {
    let id = plan.record.id.clone();
    let spec: DestinationSpec = match serde_json::from_str(&plan.record.spec) {
        Ok(s) => s,
        Err(e) => {
            shared
                .status
                .destination_error(&id, &format!("unreadable settings: {e}"));
            return;
        }
    };
    let filter = match parse_filter(&spec.filter, "filter") {
        Ok(f) => f,
        Err(e) => {
            shared.status.destination_error(&id, &e.to_string());
            return;
        }
    };
    let mut positions: HashMap<TenantName, DeliveryPosition> = HashMap::new();
    let mut leader = false;
    let mut backoff = Backoff::new(shared.config.max_backoff());
    loop {
        if shared.cancel.is_cancelled() {
            return;
        }
        match shared.lease(&format!("destination:{id}")).await {
            Ok(true) if !leader => {
                // This worker's own last save first, so that it reads what it saved.
                links.saved().await;
                match shared.store.delivery_positions(&id).await {
                    Ok(stored) => {
                        positions = stored.into_iter().map(|p| (p.tenant.clone(), p)).collect();
                        leader = true;
                        shared.status.destination_state(&id, "running");
                    }
                    Err(e) => {
                        tracing::warn!(destination = %id, error = %e, "cannot read positions")
                    }
                }
            }
            Ok(true) => {}
            Ok(false) => {
                leader = false;
                shared.status.destination_state(&id, "standby");
            }
            Err(e) => {
                leader = false;
                tracing::warn!(destination = %id, error = %e, "cannot take the destination's lease");
            }
        }
        let mut worked = false;
        if leader {
            let tenants = match &plan.record.tenant {
                Some(t) => Ok(vec![t.clone()]),
                None => shared.store.tenants().await,
            };
            match tenants {
                Ok(tenants) => {
                    for tenant in tenants {
                        let position =
                            positions
                                .entry(tenant.clone())
                                .or_insert_with(|| DeliveryPosition {
                                    destination_id: id.clone(),
                                    tenant: tenant.clone(),
                                    next_seq: 0,
                                    last_success_at: None,
                                    last_error: None,
                                    last_error_at: None,
                                });
                        match step(shared, plan, &spec, &filter, position, &mut backoff, links)
                            .await
                        {
                            Ok(Some(true)) => worked = true,
                            Ok(Some(false)) => {}
                            Ok(None) => return,
                            Err(Stop::Done) => return,
                            Err(Stop::LostLease) => {
                                leader = false;
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list tenants"),
            }
        }
        if !worked && !sleep_or_cancel(&shared.cancel, shared.config.poll_interval()).await {
            return;
        }
    }
}

/// One batch for one tenant: `Some(true)` when something was read, `Some(false)` when the
/// position is at the head.
async fn step(
    shared: &Shared,
    plan: &Plan,
    spec: &DestinationSpec,
    filter: &bitacora_core::EventFilter,
    position: &mut DeliveryPosition,
    backoff: &mut Backoff,
    links: &mut Links,
) -> Result<Option<bool>, Stop> {
    let id = &plan.record.id;
    let store = &*shared.store;
    let tenant = position.tenant.clone();
    let warn = |e: StoreError| {
        tracing::warn!(destination = %id, tenant = %tenant, error = %e, "delivery cannot read the store");
        Ok(Some(false))
    };
    let size = match store.log_size(&tenant).await {
        Ok(s) => s,
        Err(e) => return warn(e),
    };
    shared
        .status
        .lag(id, &tenant, size.saturating_sub(position.next_seq));
    if position.next_seq >= size {
        return Ok(Some(false));
    }
    let limit = shared.config.max_batch;
    // The batch read ahead while the previous one was sent, when it starts at the position
    // (the log is append-only: what was read is what is there); else a fresh read.
    let ahead = match links.next.remove(&tenant) {
        Some(p) if p.from == position.next_seq => match p.task.await {
            Ok(Ok(events)) if !events.is_empty() => Some(events),
            _ => None,
        },
        _ => None,
    };
    let events = match ahead {
        Some(events) => events,
        None => match read_from(store, &tenant, position.next_seq, limit).await {
            Ok(e) => e,
            Err(e) => return warn(e),
        },
    };
    let (Some(first), Some(last)) = (events.first().map(|e| e.seq), events.last().map(|e| e.seq))
    else {
        return Ok(Some(false));
    };
    // With more in the log past this batch (a backlog), the next batch is read while this
    // one is prepared and sent: the store's read overlaps the receiver's round trip. For a
    // few tenants at a time, so that the batches read ahead stay a bounded amount of memory.
    if size > last + 1 && links.next.len() < READ_AHEAD_TENANTS {
        let (store, t, from) = (shared.store.clone(), tenant.clone(), last + 1);
        links.next.insert(
            tenant.clone(),
            ReadAhead {
                from,
                task: tokio::spawn(async move { read_from(&*store, &t, from, limit).await }),
            },
        );
    }
    // Parsing a stored event is most of a stream's CPU per event: it is done only when
    // something reads the parsed event — a filter, the OCSF format, the syslog and email
    // senders' facts, or a firing (whose rule decides whether it is for this destination).
    // A stream of every event in the `bitacora` format copies the stored text as it is.
    let parse_all = !filter.is_empty() || needs_event(spec.format) || needs_meta(spec.kind);
    let mut items: Vec<String> = Vec::new();
    let mut meta: Vec<ItemMeta> = Vec::new();
    for stored in &events {
        // A firing's canonical body (RFC 8785) always holds its action written this way, so
        // a destination that only carries alerts skips every other event unparsed.
        let firing = stored.body.contains(FIRED_IN_BODY);
        if !spec.stream && !firing {
            continue;
        }
        if !parse_all && !firing {
            // A stream with no filter: every event is for it.
            items.push(render(spec.format, stored, None));
            continue;
        }
        let Ok(event) = serde_json::from_str::<Event>(&stored.body) else {
            tracing::error!(destination = %id, seq = stored.seq, "an unreadable event in the log");
            continue;
        };
        let alert_for_us = event.action == ALERT_FIRED
            && event
                .metadata
                .get("rule_id")
                .and_then(Value::as_str)
                .is_some_and(|r| plan.rules.contains(r));
        if alert_for_us || (spec.stream && crate::matcher::matches(filter, &event)) {
            items.push(render(spec.format, stored, Some(&event)));
            if needs_meta(spec.kind) {
                meta.push(ItemMeta::of(stored.seq, &event));
            }
        }
    }
    let carry = (id.clone(), tenant.clone());
    if items.is_empty() {
        shared
            .unsent_from
            .lock()
            .expect("unsent_from lock")
            .entry(carry)
            .or_insert(first);
    } else {
        // Read, not taken: the remembered start is forgotten only once a delivery covering
        // it is accepted, so a worker stopped while retrying (new settings, a secret
        // rotation) leaves it for the next worker, whose first batch starts past it.
        let first = shared
            .unsent_from
            .lock()
            .expect("unsent_from lock")
            .get(&carry)
            .copied()
            .unwrap_or(first);
        let checkpoint = store
            .latest_checkpoint(&tenant)
            .await
            .ok()
            .flatten()
            .map(|c| c.note);
        let batch = Batch {
            id: format!("msg_{id}_{tenant}_{first}_{last}"),
            tenant: tenant.as_str().to_owned(),
            from_seq: first,
            to_seq: last,
            checkpoint,
            events: items,
            meta,
            test: false,
        };
        loop {
            let outcome = deliver(shared, spec, &batch, links).await;
            match outcome {
                Outcome::Accepted => {
                    shared
                        .unsent_from
                        .lock()
                        .expect("unsent_from lock")
                        .remove(&carry);
                    shared.status.delivered(id, batch.events.len() as u64);
                    position.last_success_at = Some(now_micros());
                    backoff.reset();
                    break;
                }
                Outcome::Gone(reason) => {
                    tracing::warn!(destination = %id, "the receiver is gone (410): disabling the destination");
                    if let Err(e) = store.disable_destination(id, &reason).await {
                        tracing::warn!(destination = %id, error = %e, "cannot disable the destination");
                    }
                    shared.status.destination_state(id, "disabled");
                    shared.status.destination_error(id, &reason);
                    return Err(Stop::Done);
                }
                Outcome::Retry { after, error } => {
                    shared.status.failed(id, &error);
                    tracing::debug!(destination = %id, error = %error, "delivery failed; retrying");
                    position.last_error = Some(error.chars().take(500).collect());
                    position.last_error_at = Some(now_micros());
                    links.saved().await;
                    if let Err(e) = store.save_delivery_position(position).await {
                        tracing::warn!(destination = %id, error = %e, "cannot record a delivery error");
                    }
                    let wait = after.unwrap_or_else(|| backoff.step());
                    if !sleep_or_cancel(&shared.cancel, wait).await {
                        return Err(Stop::Done);
                    }
                    match shared.lease(&format!("destination:{id}")).await {
                        Ok(true) => {}
                        _ => return Err(Stop::LostLease),
                    }
                }
            }
        }
    }
    position.next_seq = last + 1;
    // Saved while the next batch is read and sent (one save in flight at a time, so they
    // land in order; the store keeps the greatest `next_seq` anyway). A save that never lands
    // (a crash) only means the receiver gets the batch again (at least once).
    links.saved().await;
    let (store, saved, dest) = (shared.store.clone(), position.clone(), id.clone());
    links.saving = Some(tokio::spawn(async move {
        if let Err(e) = store.save_delivery_position(&saved).await {
            tracing::warn!(destination = %dest, error = %e, "cannot save the position");
        }
    }));
    shared
        .status
        .lag(id, &tenant, size.saturating_sub(position.next_seq));
    Ok(Some(true))
}

/// The connections a worker keeps between batches, and the batch it reads ahead.
#[derive(Default)]
pub(crate) struct Links {
    nats: Option<async_nats::jetstream::Context>,
    syslog: Option<crate::syslog::Conn>,
    /// Per tenant (a worker steps through every tenant in turn).
    next: HashMap<TenantName, ReadAhead>,
    /// The position save in flight.
    saving: Option<tokio::task::JoinHandle<()>>,
}

impl Links {
    /// Waits for the position save in flight, if any.
    pub(crate) async fn saved(&mut self) {
        if let Some(save) = self.saving.take() {
            let _ = save.await;
        }
    }
}

/// A read of a tenant's events from `from` on, started before they are needed.
pub(crate) struct ReadAhead {
    from: u64,
    task: tokio::task::JoinHandle<Result<Vec<StoredEvent>, StoreError>>,
}

/// Sends one batch to the destination, by its kind. A failed NATS or syslog connection is
/// dropped, to be opened again by the next attempt.
pub(crate) async fn deliver(
    shared: &Shared,
    spec: &DestinationSpec,
    batch: &Batch,
    links: &mut Links,
) -> Outcome {
    let outcome = match spec.kind {
        Kind::Nats => match nats_context(shared, spec, &mut links.nats).await {
            Ok(js) => send_nats(js, &nats_subject_of(spec), batch).await,
            Err(error) => Outcome::Retry { after: None, error },
        },
        Kind::Syslog => send_syslog(shared, spec, batch, &mut links.syslog).await,
        Kind::Email => match (&shared.mailer, reqwest::Url::parse(&spec.url)) {
            (Ok(mailer), Ok(url)) => match crate::email::recipients(&url) {
                Ok(to) => mailer.send(&to, batch).await,
                Err(error) => Outcome::Retry { after: None, error },
            },
            (Err(error), _) => Outcome::Retry {
                after: None,
                error: error.clone(),
            },
            (_, Err(e)) => Outcome::Retry {
                after: None,
                error: format!("bad URL: {e}"),
            },
        },
        Kind::Webhook | Kind::Slack | Kind::SplunkHec => {
            send(
                &shared.client,
                spec,
                batch,
                shared.config.allow_private_destinations,
            )
            .await
        }
    };
    if matches!(outcome, Outcome::Retry { .. }) {
        links.nats = None;
        links.syslog = None;
    }
    outcome
}

/// Writes the batch as octet-counted RFC 5424 messages on the worker's connection, opening
/// one when there is none or the receiver closed it.
async fn send_syslog(
    shared: &Shared,
    spec: &DestinationSpec,
    batch: &Batch,
    conn: &mut Option<crate::syslog::Conn>,
) -> Outcome {
    let timeout = Duration::from_secs(shared.config.timeout_secs.max(1));
    if let Some(c) = conn.as_mut()
        && !c.alive().await
    {
        *conn = None;
    }
    if conn.is_none() {
        match crate::syslog::connect(
            &spec.url,
            spec.ca_pem.as_deref(),
            spec.client_cert_pem
                .as_deref()
                .zip(spec.client_key_pem.as_deref()),
            shared.config.allow_private_destinations,
            timeout,
        )
        .await
        {
            Ok(c) => *conn = Some(c),
            Err(error) => return Outcome::Retry { after: None, error },
        }
    }
    let facility = spec.facility.unwrap_or(crate::syslog::DEFAULT_FACILITY);
    let mut frames = Vec::new();
    for (event, meta) in batch.events.iter().zip(&batch.meta) {
        let msg = crate::syslog::message(
            facility,
            &shared.hostname,
            std::process::id(),
            &batch.tenant,
            meta,
            event.as_bytes(),
        );
        crate::syslog::frame(&msg, &mut frames);
    }
    match conn
        .as_mut()
        .expect("connected above")
        .write(&frames, timeout)
        .await
    {
        Ok(()) => Outcome::Accepted,
        Err(error) => Outcome::Retry { after: None, error },
    }
}

fn nats_subject_of(spec: &DestinationSpec) -> String {
    reqwest::Url::parse(&spec.url)
        .ok()
        .and_then(|u| nats_subject(&u))
        .unwrap_or_else(|| "bitacora.events".to_owned())
}

/// The worker's JetStream context, connecting on first use (after the address guard).
async fn nats_context<'a>(
    shared: &Shared,
    spec: &DestinationSpec,
    nats: &'a mut Option<async_nats::jetstream::Context>,
) -> Result<&'a async_nats::jetstream::Context, String> {
    if nats.is_none() {
        crate::ssrf::check_url(&spec.url, shared.config.allow_private_destinations).await?;
        let mut url = reqwest::Url::parse(&spec.url).map_err(|e| e.to_string())?;
        url.set_path("");
        let timeout = Duration::from_secs(shared.config.timeout_secs.max(1));
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .connect(url.as_str())
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))?;
        *nats = Some(async_nats::jetstream::new(client));
    }
    Ok(nats.as_ref().expect("set above"))
}
