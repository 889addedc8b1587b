//! Witnessing (CONTRACT §11): gets each tenant's signed checkpoints cosigned by the witnesses
//! of a C2SP `tlog-policy`, with the C2SP `tlog-witness` protocol, and stores the verified
//! `cosignature/v1` lines so the server can serve the checkpoint with them.
//!
//! # Why witnesses
//!
//! A checkpoint signed by the log alone does not stop a split view: whoever holds the log's
//! key can sign two histories and show each to different people. A witness cosigns a
//! checkpoint only if it is consistent with every checkpoint of that log it cosigned before,
//! so a checkpoint cosigned by a quorum of independent witnesses is one everybody relying on
//! those witnesses sees (`bitacora_core::witness` has the policy check).
//!
//! # How
//!
//! [`spawn_witnessing`] starts one task. Every second it reads each tenant's latest
//! checkpoint, and for each witness of the policy that has a submission URL and has not
//! cosigned that checkpoint, and whose turn for that tenant has come (`interval` after the
//! previous submission, success or not: a public witness network tolerates a few requests
//! per log and minute, not one per checkpoint), it spawns one submission:
//! `add-checkpoint` with the size the witness last cosigned (as far as this server knows:
//! its newest stored cosignature, else 0) and the consistency proof from it. A `409` names
//! the witness's size: the submission is made once more from that size. Cosignatures that
//! verify with the policy's key are stored (`Store::add_cosignature`); anything else is
//! recorded in the [`StatusHandle`] and the metrics, and retried at the next turn.
//!
//! **Invariant:** witness traffic is off the ingest and signing paths. The task only reads
//! checkpoints the checkpointer already stored and writes cosignature rows; a submission runs
//! in its own task with a timeout, so a witness that is down or slow delays its own
//! cosignatures and nothing else.
//!
//! With several servers on one store, one submits at a time: the task holds the store lease
//! [`LEASE`] (the others stand by and take over when it lapses).

pub mod client;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitacora_core::TenantName;
use bitacora_core::witness::{CosignerKey, Policy};
use bitacora_store::{Store, StoredCheckpoint, StoredCosignature};
use serde::Serialize;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use client::{Cosignature, SubmitError, WitnessClient, add_checkpoint_body};

/// The store lease held by the server that submits checkpoints to witnesses.
pub const LEASE: &str = "witnessing";

/// How often the task looks for checkpoints to submit.
const TICK: Duration = Duration::from_secs(1);

/// What the task needs.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    pub policy: Arc<Policy>,
    /// Least time between two submissions of one tenant's checkpoints to one witness.
    pub interval: Duration,
    /// How long one `add-checkpoint` call may take.
    pub timeout: Duration,
}

/// One witness of the policy as this server last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WitnessStatus {
    /// Its name in the policy.
    pub name: String,
    /// Its verifier key (`<name>+<id>+<base64>`).
    pub key: String,
    /// Its submission prefix; `None`: the policy gives none, so this server never submits to
    /// it (its cosignatures still count when a checkpoint carries them).
    pub url: Option<String>,
    /// `idle` (nothing cosigned yet), `ok` (the last submission of every tenant was
    /// cosigned), `failing` (that of some tenant failed: see `failing`), `standby` (another
    /// server sharing the store submits) or `no url`.
    pub state: String,
    /// The tenants whose last submission failed, with why.
    pub failing: BTreeMap<String, String>,
    /// The latest cosigned checkpoint size per tenant.
    pub cosigned: BTreeMap<String, u64>,
    /// When a submission was last cosigned (µs since the epoch).
    pub last_success_at: Option<i64>,
    /// The last failure, `<tenant>: <what happened>`, and when.
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Failed submissions since the last success.
    pub failures: u64,
}

/// The witnesses' status, shared with the server (`/readyz`, the viewer). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<Vec<WitnessStatus>>>);

impl StatusHandle {
    /// One entry per witness of the policy, in policy order (empty without a policy).
    pub fn snapshot(&self) -> Vec<WitnessStatus> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<WitnessStatus>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with(&self, witness: usize, f: impl FnOnce(&mut WitnessStatus)) {
        if let Some(w) = self.lock().get_mut(witness) {
            f(w);
        }
    }
}

/// Metric names.
pub const REQUESTS: &str = "bitacora_witness_requests_total";
pub const COSIGNED_SIZE: &str = "bitacora_witness_cosigned_size";
pub const LAST_SUCCESS: &str = "bitacora_witness_last_success_timestamp_seconds";
pub const UP: &str = "bitacora_witness_up";

/// Describes the metrics (once, when a policy is configured).
pub fn describe_metrics() {
    metrics::describe_counter!(
        REQUESTS,
        "add-checkpoint requests to a witness, by outcome (cosigned, conflict, refused, \
         bad_response, unreachable)"
    );
    metrics::describe_gauge!(
        COSIGNED_SIZE,
        "The largest checkpoint size of a tenant's log a witness cosigned"
    );
    metrics::describe_gauge!(
        LAST_SUCCESS,
        metrics::Unit::Seconds,
        "When a witness last cosigned a checkpoint (Unix time)"
    );
    metrics::describe_gauge!(
        UP,
        "1 when the last submission to a witness was cosigned, 0 when it failed"
    );
}

/// Starts witnessing; stop it by cancelling `cancel` and awaiting the handle (it returns at
/// once, abandoning the submissions in flight and handing the store lease over). Await it
/// before closing the store.
pub fn spawn_witnessing(
    store: Arc<dyn Store>,
    config: WitnessConfig,
    cancel: CancellationToken,
) -> (JoinHandle<()>, StatusHandle) {
    let status = StatusHandle::default();
    *status.lock() = config
        .policy
        .witness_urls()
        .map(|(name, key, url)| WitnessStatus {
            name: name.to_owned(),
            key: key.to_string(),
            url: url.map(str::to_owned),
            state: if url.is_some() { "idle" } else { "no url" }.to_owned(),
            ..WitnessStatus::default()
        })
        .collect();
    let http = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .user_agent(concat!("bitacora/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    let witnesses: Vec<(String, Option<WitnessClient>)> = config
        .policy
        .witness_urls()
        .map(|(name, key, url)| {
            let client =
                url.map(|u| WitnessClient::with_http(key.clone(), u, http.clone(), config.timeout));
            (name.to_owned(), client)
        })
        .collect();
    let task = Runner {
        store,
        witnesses: Arc::new(witnesses),
        interval: config.interval,
        status: status.clone(),
        holder: uuid::Uuid::new_v4().to_string(),
        slots: HashMap::new(),
    };
    (tokio::spawn(task.run(cancel)), status)
}

/// Where one tenant stands with one witness.
#[derive(Debug, Clone, Default)]
struct Slot {
    /// The witness's latest cosigned size for the log as far as this server knows (`None`:
    /// not looked up in the store yet).
    known: Option<u64>,
    /// The largest size it cosigned for us.
    cosigned: u64,
    next_due: Option<Instant>,
    in_flight: bool,
}

struct Runner {
    store: Arc<dyn Store>,
    /// `(policy name, client)`; no client when the policy gives no URL.
    witnesses: Arc<Vec<(String, Option<WitnessClient>)>>,
    interval: Duration,
    status: StatusHandle,
    holder: String,
    slots: HashMap<(TenantName, usize), Slot>,
}

/// What one submission ended with.
struct Done {
    tenant: TenantName,
    witness: usize,
    /// The witness's size after it (its cosigned size, or what its 409 said).
    known: Option<u64>,
    result: Result<u64, String>,
}

impl Runner {
    async fn run(mut self, cancel: CancellationToken) {
        if self.witnesses.iter().all(|(_, w)| w.is_none()) {
            return;
        }
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running: JoinSet<Done> = JoinSet::new();
        // Renewed every tick; a server that died is replaced within 10 s.
        let lease_ttl = (TICK * 10).as_micros() as i64;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(done) = running.join_next() => {
                    if let Ok(done) = done {
                        self.finish(done);
                    }
                }
                _ = ticker.tick() => {
                    match self.store.acquire_lease(LEASE, &self.holder, bitacora_log::now_micros(), lease_ttl).await {
                        Ok(true) => {
                            self.active();
                            self.pass(&mut running).await;
                        }
                        Ok(false) => self.standby(),
                        Err(e) => tracing::debug!(error = %e, "witnessing: cannot take the lease"),
                    }
                }
            }
        }
        // Submissions in flight are dropped: shutdown never waits for a witness. A cosignature
        // lost this way is asked for again by the next start (the witness answers 409 with the
        // size it cosigned, and cosigns the same checkpoint again).
        running.abort_all();
        // Hands the lease over at once (a lease that ends now), so a server started next on
        // the same store submits without waiting for it to lapse.
        if let Err(e) = self
            .store
            .acquire_lease(LEASE, &self.holder, bitacora_log::now_micros(), -1)
            .await
        {
            tracing::debug!(error = %e, "witnessing: cannot hand the lease over");
        }
    }

    fn standby(&self) {
        for (i, (_, w)) in self.witnesses.iter().enumerate() {
            if w.is_some() {
                self.status.with(i, |s| s.state = "standby".into());
            }
        }
    }

    /// Back from standby: the state as the recorded outcomes say.
    fn active(&self) {
        for (i, (_, w)) in self.witnesses.iter().enumerate() {
            if w.is_some() {
                self.status.with(i, |s| {
                    if s.state == "standby" {
                        s.state = if !s.failing.is_empty() {
                            "failing"
                        } else if s.last_success_at.is_some() {
                            "ok"
                        } else {
                            "idle"
                        }
                        .into();
                    }
                });
            }
        }
    }

    /// Spawns a submission for every (tenant, witness) whose turn has come.
    async fn pass(&mut self, running: &mut JoinSet<Done>) {
        let tenants = match self.store.tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(error = %e, "witnessing: cannot list tenants");
                return;
            }
        };
        let now = Instant::now();
        for tenant in tenants {
            let cp = match self.store.latest_checkpoint(&tenant).await {
                Ok(Some(cp)) => cp,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(tenant = %tenant, error = %e, "witnessing: cannot read the checkpoint");
                    continue;
                }
            };
            let mut stored: Option<Vec<StoredCosignature>> = None;
            for (i, (_, witness)) in self.witnesses.iter().enumerate() {
                let Some(witness) = witness else { continue };
                let slot = self.slots.entry((tenant.clone(), i)).or_default();
                if slot.in_flight
                    || slot.cosigned >= cp.size
                    || slot.next_due.is_some_and(|due| now < due)
                {
                    continue;
                }
                if slot.known.is_none() {
                    // Where this witness stood, from the cosignatures stored before (by this
                    // server or another sharing the store).
                    if stored.is_none() {
                        match self.store.latest_cosignatures(&tenant).await {
                            Ok(list) => stored = Some(list),
                            Err(e) => {
                                tracing::debug!(tenant = %tenant, error = %e, "witnessing: cannot read cosignatures");
                                break;
                            }
                        }
                    }
                    let size = stored
                        .iter()
                        .flatten()
                        .find(|c| same_key(c, witness.key()))
                        .map(|c| c.size);
                    slot.known = Some(size.unwrap_or(0));
                    slot.cosigned = size.unwrap_or(0);
                    if slot.cosigned >= cp.size {
                        continue;
                    }
                }
                slot.in_flight = true;
                slot.next_due = Some(now + self.interval);
                running.spawn(submit(
                    self.store.clone(),
                    self.witnesses.clone(),
                    i,
                    tenant.clone(),
                    cp.clone(),
                    slot.known.unwrap_or(0),
                ));
            }
        }
    }

    fn finish(&mut self, done: Done) {
        let Done {
            tenant,
            witness,
            known,
            result,
        } = done;
        let slot = self.slots.entry((tenant.clone(), witness)).or_default();
        slot.in_flight = false;
        if known.is_some() {
            slot.known = known;
        }
        let name = self.witnesses[witness].0.clone();
        let now = bitacora_log::now_micros();
        match result {
            Ok(size) => {
                slot.cosigned = slot.cosigned.max(size);
                let cosigned = slot.cosigned;
                metrics::counter!(REQUESTS, "witness" => name.clone(), "outcome" => "cosigned")
                    .increment(1);
                metrics::gauge!(COSIGNED_SIZE, "witness" => name.clone(), "tenant" => tenant.to_string())
                    .set(cosigned as f64);
                metrics::gauge!(LAST_SUCCESS, "witness" => name.clone()).set(now as f64 / 1e6);
                metrics::gauge!(UP, "witness" => name.clone()).set(1.0);
                self.status.with(witness, |s| {
                    if s.failing.remove(tenant.as_str()).is_some() {
                        tracing::info!(witness = %name, tenant = %tenant, "witness cosigning again");
                    }
                    s.state = if s.failing.is_empty() { "ok" } else { "failing" }.into();
                    s.cosigned.insert(tenant.to_string(), cosigned);
                    s.last_success_at = Some(now);
                    s.failures = 0;
                });
                tracing::debug!(witness = %name, tenant = %tenant, size = cosigned, "checkpoint cosigned");
            }
            Err(message) => {
                metrics::gauge!(UP, "witness" => name.clone()).set(0.0);
                self.status.with(witness, |s| {
                    if !s.failing.contains_key(tenant.as_str()) {
                        tracing::warn!(witness = %name, tenant = %tenant, error = %message, "a witness did not cosign; retrying at the next interval");
                    }
                    s.failing.insert(tenant.to_string(), message.clone());
                    s.state = "failing".into();
                    s.last_error = Some(format!("{tenant}: {message}"));
                    s.last_error_at = Some(now);
                    s.failures += 1;
                });
            }
        }
    }
}

fn same_key(c: &StoredCosignature, key: &CosignerKey) -> bool {
    c.witness == key.name() && c.key_id == key.key_id()
}

/// One submission, with one resubmission from the size a `409` names.
async fn submit(
    store: Arc<dyn Store>,
    witnesses: Arc<Vec<(String, Option<WitnessClient>)>>,
    witness: usize,
    tenant: TenantName,
    cp: StoredCheckpoint,
    known: u64,
) -> Done {
    let done = |known: Option<u64>, result: Result<u64, String>| Done {
        tenant: tenant.clone(),
        witness,
        known,
        result,
    };
    let Some((name, Some(client))) = witnesses.get(witness) else {
        return done(None, Err("no submission URL".into()));
    };
    let outcome = |o: &'static str| {
        metrics::counter!(REQUESTS, "witness" => name.clone(), "outcome" => o).increment(1);
    };
    let mut old = known.min(cp.size);
    for attempt in 0..2 {
        let proof = if old == 0 || old == cp.size {
            Vec::new()
        } else {
            match bitacora_log::consistency_proof(&*store, &tenant, old, cp.size).await {
                Ok(p) => p.hashes,
                Err(e) => return done(None, Err(format!("cannot prove {old} → {}: {e}", cp.size))),
            }
        };
        match client.add_checkpoint(old, &proof, &cp.note).await {
            Ok(cosignatures) => {
                let received_at = bitacora_log::now_micros();
                for c in cosignatures {
                    let row = StoredCosignature {
                        size: cp.size,
                        witness: c.name,
                        key_id: c.key_id,
                        time: c.time,
                        line: c.line,
                        received_at,
                    };
                    if let Err(e) = store.add_cosignature(&tenant, &row).await {
                        return done(
                            Some(cp.size),
                            Err(format!("cannot store the cosignature: {e}")),
                        );
                    }
                }
                return done(Some(cp.size), Ok(cp.size));
            }
            Err(SubmitError::Conflict {
                witness_size: Some(size),
            }) => {
                outcome("conflict");
                if size > cp.size {
                    tracing::warn!(
                        witness = %name, tenant = %tenant, witness_size = size, checkpoint = cp.size,
                        "a witness has cosigned a bigger tree of this log than its latest checkpoint"
                    );
                    return done(
                        Some(size),
                        Err(format!(
                            "the witness has cosigned a tree of {size} entries, bigger than the latest \
                         checkpoint ({}): it was shown a checkpoint this store does not hold",
                            cp.size
                        )),
                    );
                }
                if size == old {
                    // Same old size, still a conflict: at the checkpoint's size, another root.
                    tracing::error!(
                        witness = %name, tenant = %tenant, size,
                        "INTEGRITY: a witness holds a different tree of this log at the same size"
                    );
                    return done(
                        Some(size),
                        Err(format!(
                            "the witness holds a different tree of {size} entries (a fork)"
                        )),
                    );
                }
                if attempt == 0 {
                    old = size;
                    continue;
                }
                return done(
                    Some(size),
                    Err(format!("409 twice; the witness is at {size}")),
                );
            }
            Err(e) => {
                outcome(match e {
                    SubmitError::Conflict { .. } => "conflict",
                    SubmitError::Forbidden
                    | SubmitError::UnknownLog
                    | SubmitError::BadProof
                    | SubmitError::BadRequest(_) => "refused",
                    SubmitError::BadResponse(_) => "bad_response",
                    SubmitError::Timeout(_) | SubmitError::Transport(_) => "unreachable",
                    SubmitError::Status { .. } | SubmitError::Request(_) => "refused",
                });
                return done(None, Err(e.to_string()));
            }
        }
    }
    done(None, Err("409 twice".into()))
}
