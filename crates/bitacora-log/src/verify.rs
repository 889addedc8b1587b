//! `bitacora verify`: re-checks a whole stored log and names the first bad `seq`.
//!
//! # What is checked, and why each check is needed
//!
//! The walk reads the tenant's events in `seq` order, in pages, and for each one:
//!
//! - **its position**: seqs must be exactly `0..n`: a gap is a deleted row, a repeat or a
//!   step back a reordered or inserted one, a row at or past the recorded size an insertion;
//! - **its leaf**: `SHA-256(0x00 || body)` is recomputed from the stored body and compared
//!   with the stored `leaf_hash` (catches an edited field), and the body must parse as an
//!   event of this tenant (catches a row moved between tenants);
//! - **what is kept beside it** (by the store, [`LeafCheck::index`]): every indexed column
//!   (action, category, severity, outcome, actor, target, IP, source, `occurred_at`,
//!   `event_id`, dictionary terms), the fingerprint, and the full-text entry are re-derived
//!   from the body. The tree covers only the body: a column changed behind the server's back
//!   leaves every hash intact but hides the event from filtered searches, exports and `q=`;
//! - **the tree**: a [`CompactRange`] is rebuilt from the *recomputed* leaves, and every
//!   complete subtree it produces at level 4 and above is compared with the stored node
//!   (catches an altered node table, which would make proofs lie, and locates a consistent
//!   rewrite of events to a 16-event block);
//! - **the checkpoints**: at every stored checkpoint size, the signed note must verify with a
//!   trusted key (under the log's origin as key name, or the key's own name for checkpoints
//!   signed before key names followed origins) and the log's origin (`<prefix>/<tenant>`),
//!   the signed root must equal the stored
//!   `root` column and the root recomputed from the events;
//! - **the summaries** (after the walk, [`Store::check_summaries`]): `action_counts` and
//!   `actor_stats`, what `/v1/actions` and `/v1/actors` read, must add up to the events; on
//!   the embedded store also the zone map, facets and rollups, and the leaf tiles (what
//!   `/logs/<tenant>/tile/0/<N>` serves): one row per complete run of 256 events, each the
//!   leaf hashes of its events.
//!
//! A swap of two rows, or an edit whose leaf hash was rewritten to match, leaves every row
//! self-consistent: only the tree sees it. The stored level-4 nodes then say which 16-event
//! block differs, and if the change is a swap, trying the swaps within (or between) the
//! differing blocks names the two seqs.
//!
//! Events after the latest checkpoint are not covered by any signature: a row forged at the
//! end of the log is indistinguishable from a genuine one until a checkpoint commits to it.
//! A running server signs within a second, so the walk waits up to
//! [`VerifyOptions::unsigned_grace`] for a checkpoint to cover the tail, then reports the
//! unsigned events as suspect.
//!
//! With the commit key ([`VerifyOptions::commit_key`], derived from the signing key), the
//! walk also asks whether a writer holding the key sealed the unsigned tail
//! (`bitacora_core::seal`): a sealed tail is only *not signed yet* ([`VerifyOutcome::Unsigned`],
//! the server signs it when it next runs), while a tail no seal explains is reported at once
//! as [`VerifyOutcome::Unexplained`], naming the first `seq` nobody vouches for — the server
//! refuses to sign it.
//!
//! # Speed
//!
//! The store checks each row as it reads it ([`Store::check_leaves`]: the leaf recomputed
//! from the body in place, the tenant suffix compared, the body parsed and its columns
//! compared), so no body is ever copied or kept.
//! Pages of 16,384 events are read as two halves on two reader connections while the
//! previous page extends the tree, and a page's stored nodes are fetched in one store call.
//! Re-deriving the indexed values means parsing each body where it is read: that, not the
//! reading or the hashing, is what bounds the walk now (`tests/throughput.rs`, BENCHMARKS.md).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bitacora_core::canonical::Hash;
use bitacora_core::checkpoint::{NoteVerifier, log_verifiers, open_checkpoint};
use bitacora_core::merkle::{self, CompactRange, NodeId};
use bitacora_core::seal::CommitKey;
use bitacora_core::{Event, TenantName};
use bitacora_store::{LeafCheck, Store, StoreError, StoredCheckpoint};

use crate::LogError;

/// Stored tree nodes are compared from this level up (a level-4 node covers 16 events).
const NODE_LEVEL: u8 = 4;
/// Checkpoints are read this many at a time.
const CHECKPOINT_PAGE: u32 = 1000;
/// How many differing level-4 blocks are kept to locate a swap.
const MAX_BLOCKS: usize = 2;

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// How long to wait for a checkpoint covering events appended after the latest one
    /// (a live server signs within a second). Zero for a store no server is writing to.
    pub unsigned_grace: Duration,
    /// Events read per page (a multiple of 16 keeps blocks within one page).
    pub page_size: u32,
    /// The commit key (derived from the signing key), to tell a tail the store's writer
    /// sealed from one nobody vouches for. Without it an unsigned tail is reported as before.
    pub commit_key: Option<CommitKey>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            unsigned_grace: Duration::from_secs(3),
            page_size: 16_384,
            commit_key: None,
        }
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Every event, node and checkpoint checks out.
    Intact,
    /// The first bad event, and why (the reason starts with `seq N`).
    Tampered { seq: u64, reason: String },
    /// A stored checkpoint is itself bad (signature, or its stored columns), while the events
    /// up to it are consistent.
    BadCheckpoint { size: u64, reason: String },
    /// Every event checks out, but events from `seq` on are not covered by a signed
    /// checkpoint yet; a writer holding the commit key sealed them, so the server signs them
    /// when it next runs.
    Unsigned { seq: u64, reason: String },
    /// Events from `seq` on are neither signed nor sealed by a writer holding the commit key:
    /// nobody vouches for them, and the server refuses to sign them (recovery: investigate,
    /// then `bitacora verify --accept-tail`).
    Unexplained { seq: u64, reason: String },
    /// Every event checks out, but a summary the API reads (`action_counts` behind
    /// `/v1/actions`, `actor_stats` behind `/v1/actors`) disagrees with them.
    BadSummary {
        summary: String,
        key: String,
        reason: String,
    },
}

/// What `verify_tenant` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub tenant: TenantName,
    /// Events checked.
    pub events: u64,
    /// Checkpoints whose signature and root were verified.
    pub checkpoints: u64,
    /// The biggest verified checkpoint size.
    pub signed_size: u64,
    pub outcome: VerifyOutcome,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.outcome == VerifyOutcome::Intact
    }

    /// One line for the CLI.
    pub fn summary(&self) -> String {
        match &self.outcome {
            VerifyOutcome::Intact => format!(
                "tenant {}: intact: {} events, {} signed checkpoints verified (latest at size {})",
                self.tenant, self.events, self.checkpoints, self.signed_size
            ),
            VerifyOutcome::Tampered { reason, .. } => {
                format!("tenant {}: TAMPERED: {reason}", self.tenant)
            }
            VerifyOutcome::BadCheckpoint { reason, .. } => {
                format!("tenant {}: BAD CHECKPOINT: {reason}", self.tenant)
            }
            VerifyOutcome::Unsigned { reason, .. } => {
                format!("tenant {}: NOT SIGNED YET: {reason}", self.tenant)
            }
            VerifyOutcome::Unexplained { reason, .. } => {
                format!("tenant {}: UNEXPLAINED TAIL: {reason}", self.tenant)
            }
            VerifyOutcome::BadSummary {
                summary,
                key,
                reason,
            } => format!(
                "tenant {}: TAMPERED: summary {summary} ({key}) does not match the events: {reason}",
                self.tenant
            ),
        }
    }
}

/// A stored node that differs from the one recomputed from the events.
#[derive(Debug, Clone)]
struct NodeMismatch {
    id: NodeId,
    begin: u64,
    end: u64,
}

/// A differing 16-event block: its recomputed leaves and its stored hash.
#[derive(Debug, Clone)]
struct Block {
    begin: u64,
    leaves: Vec<Hash>,
    stored: Hash,
}

/// The stored checkpoints, read lazily in size order.
struct CheckpointFeed {
    buf: VecDeque<StoredCheckpoint>,
    after: u64,
    exhausted: bool,
}

impl CheckpointFeed {
    /// Makes sure every checkpoint with `size <= upto` is buffered.
    async fn fill(
        &mut self,
        store: &dyn Store,
        tenant: &TenantName,
        upto: u64,
    ) -> Result<(), LogError> {
        while !self.exhausted && self.after <= upto {
            let page = store
                .checkpoints(tenant, self.after, CHECKPOINT_PAGE)
                .await?;
            self.exhausted = page.len() < CHECKPOINT_PAGE as usize;
            if let Some(last) = page.last() {
                self.after = last.size;
            }
            self.buf.extend(page);
        }
        Ok(())
    }

    fn sizes_upto(&self, upto: u64) -> Vec<u64> {
        self.buf
            .iter()
            .map(|c| c.size)
            .take_while(|&s| s <= upto)
            .collect()
    }
}

/// A row-level problem.
enum Problem {
    /// The reason, starting with `seq N`.
    Text(String),
    /// The row's body is not an event of this tenant; the walk reads it again to say whose.
    Foreign,
}

/// What hashing one page produced.
struct PageResult {
    range: CompactRange,
    next_seq: u64,
    /// Complete nodes at level >= 4, in completion order.
    nodes: Vec<(NodeId, Hash)>,
    /// Recomputed roots at the checkpoint sizes reached in this page.
    roots: Vec<(u64, Hash)>,
    /// Recomputed leaves of the page, from `first_seq`.
    first_seq: u64,
    leaves: Vec<Hash>,
    /// The first row-level problem, if any (checks stop there).
    problem: Option<(u64, Problem)>,
    /// The first row at or past the walk's target size.
    beyond: Option<u64>,
    /// The first row whose body is genuine but whose indexed values are not (the walk goes
    /// on: a rewrite of bodies and leaves also leaves stale columns behind, and the tree and
    /// the checkpoints say more about it).
    index_problem: Option<(u64, String)>,
    /// The purged events of the page (leaf hash only), as inclusive seq ranges.
    purged: Vec<(u64, u64)>,
}

/// Re-checks the tenant's whole log. `progress(done, total)` is called after each page.
///
/// Errors are reserved for a store that cannot be read; anything wrong with the data is a
/// [`VerifyOutcome`] in the report.
pub async fn verify_tenant(
    store: &dyn Store,
    tenant: &TenantName,
    verifiers: &[NoteVerifier],
    options: &VerifyOptions,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<VerifyReport, LogError> {
    let page_size = options.page_size.max(16);
    let origin = crate::log_origin(store, tenant).await?;
    // Each trusted key under the origin's name and its own ([`log_verifiers`]).
    let verifiers = log_verifiers(&origin, verifiers);
    let mut v = Walk {
        store,
        tenant,
        origin,
        verifiers: &verifiers,
        feed: CheckpointFeed {
            buf: VecDeque::new(),
            after: 0,
            exhausted: false,
        },
        checkpoints: 0,
        signed_size: 0,
        mismatches: Vec::new(),
        blocks: Vec::new(),
    };
    let mut range = CompactRange::new();
    let mut index_problem: Option<(u64, String)> = None;
    // Every purged seq the walk met, as ranges, to account for against the purge records.
    let mut purged: Vec<(u64, u64)> = Vec::new();
    let mut next_seq = 0u64;
    let mut target = store.log_size(tenant).await?;
    let grace_deadline = Instant::now() + options.unsigned_grace;
    let report = |v: &Walk<'_>, events: u64, outcome: VerifyOutcome| VerifyReport {
        tenant: tenant.clone(),
        events,
        checkpoints: v.checkpoints,
        signed_size: v.signed_size,
        outcome,
    };
    progress(0, target);

    // A checkpoint of the empty log commits to the empty root.
    v.feed.fill(store, tenant, 0).await?;
    while let Some(cp) = v.feed.buf.pop_front() {
        if cp.size != 0 {
            v.feed.buf.push_front(cp);
            break;
        }
        if let Some(outcome) = v.check_checkpoint(&cp, &merkle::empty_root()).await? {
            return Ok(report(&v, 0, outcome));
        }
    }

    loop {
        // Walk the events up to `target`.
        let mut fetched: Option<Vec<LeafCheck>> = None;
        let mut beyond: Option<u64> = None;
        while next_seq < target {
            let page = match fetched.take() {
                Some(p) => p,
                None => fetch_page(store, tenant, next_seq, page_size).await?,
            };
            if page.is_empty() {
                break;
            }
            let last_seq = page.last().map_or(0, |e| e.seq);
            let page_end = next_seq.saturating_add(page.len() as u64);
            v.feed.fill(store, tenant, page_end).await?;
            let cp_sizes = v.feed.sizes_upto(page_end);
            let prefetch = page.len() >= page_size as usize && last_seq.saturating_add(1) < target;
            let cpu = tokio::task::spawn_blocking(move || {
                hash_page(page, range, next_seq, target, &cp_sizes)
            });
            let (next, done) = if prefetch {
                let next = fetch_page(store, tenant, last_seq.saturating_add(1), page_size);
                let (next, done) = tokio::join!(next, cpu);
                (Some(next?), done)
            } else {
                (None, cpu.await)
            };
            let mut done =
                done.map_err(|e| StoreError::Internal(format!("hashing failed: {e}")))?;
            if let Some((seq, Problem::Foreign)) = done.problem {
                let reason = describe_foreign(store, tenant, seq).await?;
                done.problem = Some((seq, Problem::Text(reason)));
            }
            fetched = next;
            range = done.range.clone();
            next_seq = done.next_seq;
            beyond = beyond.or(done.beyond);
            if index_problem.is_none() {
                index_problem = done.index_problem.take();
            }
            for &(a, b) in &done.purged {
                for seq in a..=b {
                    add_seq(&mut purged, seq);
                }
            }
            if let Some(outcome) = v.check_page(&done).await? {
                return Ok(report(&v, next_seq, outcome));
            }
            progress(next_seq, target);
            if done.beyond.is_some() {
                break;
            }
        }

        if next_seq < target {
            let reason = if next_seq == 0 {
                format!("seq 0: missing (the log records {target} events but none is stored)")
            } else {
                format!(
                    "seq {next_seq}: missing (the log records {target} events but ends at seq {})",
                    next_seq - 1
                )
            };
            return Ok(report(
                &v,
                next_seq,
                VerifyOutcome::Tampered {
                    seq: next_seq,
                    reason,
                },
            ));
        }
        if let Some(seq) = beyond {
            let now = store.log_size(tenant).await?;
            if seq >= now {
                return Ok(report(
                    &v,
                    next_seq,
                    VerifyOutcome::Tampered {
                        seq,
                        reason: format!(
                            "seq {seq}: a row beyond the log's recorded size of {now} events (an inserted row)"
                        ),
                    },
                ));
            }
        }

        // Checkpoints beyond what is stored, or signed after the walk started.
        v.feed.exhausted = false;
        v.feed.fill(store, tenant, u64::MAX - 1).await?;
        if let Some(cp) = v.feed.buf.front().cloned() {
            if cp.size == range.size() {
                v.feed.buf.pop_front();
                if let Some(outcome) = v.check_checkpoint(&cp, &range.root()).await? {
                    return Ok(report(&v, next_seq, outcome));
                }
                continue;
            }
            let now = store.log_size(tenant).await?;
            if cp.size > now {
                return Ok(report(
                    &v,
                    next_seq,
                    VerifyOutcome::Tampered {
                        seq: now,
                        reason: format!(
                            "seq {now}: missing (a checkpoint signed the log at {} events, but it now has {now}: rows were removed)",
                            cp.size
                        ),
                    },
                ));
            }
            // A live log grew past the walk and was signed: extend the walk to it.
            target = cp.size;
            continue;
        }

        // Still unsigned events at the end?
        if v.signed_size >= next_seq {
            break;
        }
        if let Some(m) = v.mismatches.first() {
            return Ok(report(&v, next_seq, unsigned_tree_mismatch(m)));
        }
        let mut sealed = false;
        if let Some(key) = &options.commit_key {
            match explain_tail(store, tenant, key, v.signed_size, next_seq, &range).await? {
                Tail::Sealed => sealed = true,
                Tail::Grown(size) => {
                    // A live log grew past the walk and sealed it: extend the walk to it.
                    target = size;
                    continue;
                }
                Tail::Bad(outcome) => {
                    // A row whose columns disagree with its body is the more precise finding
                    // (and an unexplained tail may only be accepted when there is none).
                    let outcome = match index_problem.take() {
                        Some((seq, reason)) => VerifyOutcome::Tampered { seq, reason },
                        None => outcome,
                    };
                    return Ok(report(&v, next_seq, outcome));
                }
            }
        }
        if Instant::now() >= grace_deadline && sealed {
            let first = v.signed_size;
            return Ok(report(
                &v,
                next_seq,
                VerifyOutcome::Unsigned {
                    seq: first,
                    reason: format!(
                        "seq {first}: not covered by a signed checkpoint yet (events {first}..{next_seq} \
                         were sealed by bitacora's writer; the server signs them when it runs)"
                    ),
                },
            ));
        }
        if Instant::now() >= grace_deadline {
            let first = v.signed_size;
            return Ok(report(
                &v,
                next_seq,
                VerifyOutcome::Tampered {
                    seq: first,
                    reason: format!(
                        "seq {first}: not covered by any signed checkpoint (events {first}..{next_seq} were \
                         never signed: appended outside the server, or the server stopped before signing)"
                    ),
                },
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The events are what was signed: a row whose columns disagree with it is the problem.
    if let Some((seq, reason)) = index_problem {
        return Ok(report(
            &v,
            next_seq,
            VerifyOutcome::Tampered { seq, reason },
        ));
    }
    // Every purged event (a leaf hash without content) must be one a recorded purge removed,
    // and every purge must be the one its signed announcement in the log describes.
    if let Some((seq, reason)) = check_purges(store, tenant, &purged).await? {
        return Ok(report(
            &v,
            next_seq,
            VerifyOutcome::Tampered { seq, reason },
        ));
    }
    // The events are what was signed and every row's columns are what its body gives, so
    // the summaries must be what the columns add up to.
    if let Some(m) = store.check_summaries(tenant).await? {
        return Ok(report(
            &v,
            next_seq,
            VerifyOutcome::BadSummary {
                summary: m.summary.to_owned(),
                key: m.key,
                reason: m.reason,
            },
        ));
    }
    Ok(report(&v, next_seq, VerifyOutcome::Intact))
}

/// Extends sorted inclusive ranges with `seq`, which is past all of them.
fn add_seq(ranges: &mut Vec<(u64, u64)>, seq: u64) {
    match ranges.last_mut() {
        Some((_, b)) if *b + 1 == seq => *b = seq,
        _ => ranges.push((seq, seq)),
    }
}

/// The action of the event that announces each purge (`bitacora_lifecycle` appends it).
pub const PURGE_ACTION: &str = "bitacora.retention.purge";

/// Accounts for the purged events the walk met (`walked`, sorted ranges) with the store's
/// purge records: each record's events must be exactly the ones purged under it, hash to its
/// root, and match the `bitacora.retention.purge` event at its `event_seq` (which the walk
/// checked against the signed tree); together the records must cover exactly `walked`.
/// An event deleted behind the server's back and dressed up as purged has no signed
/// announcement, and a purge that removed more than it announced does not add up.
async fn check_purges(
    store: &dyn Store,
    tenant: &TenantName,
    walked: &[(u64, u64)],
) -> Result<Option<(u64, String)>, LogError> {
    let records = store.purges(tenant).await?;
    let mut recorded: Vec<u64> = Vec::new();
    for r in &records {
        let leaves = store.purged_leaves(tenant, r.event_seq).await?;
        let listed: Vec<u64> = r.seqs().collect();
        let stored: Vec<u64> = leaves.iter().map(|l| l.0).collect();
        if listed.len() as u64 != r.count || stored != listed {
            let seq = first_difference(&listed, &stored).unwrap_or(r.event_seq);
            return Ok(Some((
                seq,
                format!(
                    "seq {seq}: the purge announced at seq {} lists {} events ({}) but {} were purged under it",
                    r.event_seq,
                    r.count,
                    r.ranges_text(),
                    stored.len()
                ),
            )));
        }
        let hashes: Vec<Hash> = leaves.iter().map(|l| l.1).collect();
        if merkle::root_from_leaves(&hashes) != r.root {
            return Ok(Some((
                listed.first().copied().unwrap_or(r.event_seq),
                format!(
                    "seq {}: the events purged under the purge at seq {} do not hash to its root",
                    listed.first().copied().unwrap_or(r.event_seq),
                    r.event_seq
                ),
            )));
        }
        if let Some(reason) = announcement_mismatch(store, tenant, r).await? {
            return Ok(Some((r.event_seq, reason)));
        }
        recorded.extend(listed);
    }
    recorded.sort_unstable();
    let walked: Vec<u64> = walked.iter().flat_map(|&(a, b)| a..=b).collect();
    if recorded != walked {
        let seq = first_difference(&walked, &recorded).unwrap_or(0);
        return Ok(Some((
            seq,
            format!(
                "seq {seq}: its content is gone, but no recorded purge accounts for it                  ({} events purged, {} accounted for by purge records)",
                walked.len(),
                recorded.len()
            ),
        )));
    }
    Ok(None)
}

/// The smallest seq in one sorted list and not the other.
fn first_difference(a: &[u64], b: &[u64]) -> Option<u64> {
    a.iter()
        .zip(b)
        .find(|(x, y)| x != y)
        .map(|(x, y)| *x.min(y))
        .or_else(|| a.get(b.len()).copied())
        .or_else(|| b.get(a.len()).copied())
}

/// Why the event at `r.event_seq` is not the announcement of purge `r`, if it is not.
async fn announcement_mismatch(
    store: &dyn Store,
    tenant: &TenantName,
    r: &bitacora_store::PurgeRecord,
) -> Result<Option<String>, LogError> {
    let at = r.event_seq;
    let Some(event) = store.event_by_seq(tenant, at).await? else {
        return Ok(Some(format!(
            "seq {at}: the announcement of a purge is missing (a purge record without its signed event)"
        )));
    };
    let body: serde_json::Value = serde_json::from_str(&event.body).unwrap_or_default();
    let meta = &body["metadata"];
    let ok = body["action"] == PURGE_ACTION
        && meta["ranges"] == r.ranges_text().as_str()
        && meta["count"] == r.count
        && meta["root"] == bitacora_core::canonical::hex_hash(&r.root).as_str();
    Ok((!ok).then(|| {
        format!(
            "seq {at}: not the announcement of the purge recorded for it              (a purge record the signed log does not vouch for)"
        )
    }))
}

/// What the commit seal says of a tail no checkpoint covers.
enum Tail {
    /// A writer holding the key sealed exactly the walked log.
    Sealed,
    /// The seal covers more events than the walk reached (a live log grew): walk on to it.
    Grown(u64),
    /// Nobody vouches for it (or the seal says rows were removed).
    Bad(VerifyOutcome),
}

/// Checks the tenant's commit seal against the walked log of `size` events (`range`), of
/// which the first `signed` are covered by a verified checkpoint. The stored nodes already
/// matched the events (the caller checks), so roots read from them are the events' own.
async fn explain_tail(
    store: &dyn Store,
    tenant: &TenantName,
    key: &CommitKey,
    signed: u64,
    size: u64,
    range: &CompactRange,
) -> Result<Tail, LogError> {
    let unexplained = |first: u64, why: String| {
        Tail::Bad(VerifyOutcome::Unexplained {
            seq: first,
            reason: format!(
                "seq {first}: events {first}..{size} are neither signed nor sealed by bitacora's \
                 writer ({why}); the server will not sign them. Investigate (were rows added to \
                 the database by hand?), then vouch for them with `bitacora verify --tenant \
                 {tenant} --accept-tail`"
            ),
        })
    };
    let Some(seal) = store.commit_seal(tenant).await? else {
        return Ok(unexplained(signed, "the log has no commit seal".into()));
    };
    if !key.verifies(tenant.as_str(), &seal) {
        return Ok(unexplained(
            signed,
            "its commit seal does not verify with the signing key's commit key".into(),
        ));
    }
    if seal.size > size {
        let now = store.log_size(tenant).await?;
        if seal.size > now {
            return Ok(Tail::Bad(VerifyOutcome::Tampered {
                seq: now,
                reason: format!(
                    "seq {now}: missing (the writer sealed the log at {} events, but it now has {now}: rows were removed)",
                    seal.size
                ),
            }));
        }
        return Ok(Tail::Grown(seal.size));
    }
    if seal.base > signed {
        return Ok(unexplained(
            signed,
            format!(
                "the writer's chain of seals starts at seq {}: it did not write the events before it",
                seal.base
            ),
        ));
    }
    if seal.size == size {
        return Ok(if seal.root == range.root() {
            Tail::Sealed
        } else {
            unexplained(
                signed,
                "the sealed root differs from the events' root".into(),
            )
        });
    }
    // Sealed up to `seal.size`, then rows no sealing writer appended.
    let root_ok =
        seal.size == 0 || crate::proofs::root_at(store, tenant, seal.size).await? == seal.root;
    Ok(if root_ok {
        unexplained(
            seal.size.max(signed),
            format!("the writer's last seal covers {} events", seal.size),
        )
    } else {
        unexplained(
            signed,
            format!(
                "the writer's last seal, at {} events, has another root",
                seal.size
            ),
        )
    })
}

fn unsigned_tree_mismatch(m: &NodeMismatch) -> VerifyOutcome {
    VerifyOutcome::Tampered {
        seq: m.begin,
        reason: format!(
            "seq {}..{}: the stored Merkle tree does not match the events (stored node level {}, index {}), \
             and no signed checkpoint covers them yet",
            m.begin, m.end, m.id.level, m.id.index
        ),
    }
}

/// Reads and checks up to `limit` events from `from` as two half pages on two reader
/// connections at once: verification is bound by reading, and the store has several readers.
///
/// The second half starts at an arithmetic position. If a row is missing, the first half runs
/// one event into the second and that event appears twice at the seam; the walk reports the
/// gap, which lies inside the first half, before it reaches the seam.
async fn fetch_page(
    store: &dyn Store,
    tenant: &TenantName,
    from: u64,
    limit: u32,
) -> Result<Vec<LeafCheck>, StoreError> {
    let half = limit / 2;
    if half < 1024 {
        return store.check_leaves(tenant, from, limit).await;
    }
    let (first, second) = tokio::join!(
        store.check_leaves(tenant, from, half),
        store.check_leaves(tenant, from.saturating_add(u64::from(half)), limit - half)
    );
    let mut page = first?;
    if page.len() < half as usize {
        // The log ends within the first half.
        return Ok(page);
    }
    page.extend(second?);
    Ok(page)
}

/// Says whose event a row outside this tenant's log is (the rare path: parses the body).
async fn describe_foreign(
    store: &dyn Store,
    tenant: &TenantName,
    seq: u64,
) -> Result<String, StoreError> {
    let Some(row) = store.event_by_seq(tenant, seq).await? else {
        return Ok(format!(
            "seq {seq}: the row vanished while it was being verified"
        ));
    };
    Ok(match serde_json::from_str::<Event>(&row.body) {
        Ok(ev) => format!(
            "seq {seq}: the event belongs to tenant `{}`, not `{tenant}`",
            ev.tenant
        ),
        Err(err) => format!("seq {seq}: the stored event is not a valid event: {err}"),
    })
}

/// State of the walk that outlives one page.
struct Walk<'a> {
    store: &'a dyn Store,
    tenant: &'a TenantName,
    origin: String,
    verifiers: &'a [NoteVerifier],
    feed: CheckpointFeed,
    checkpoints: u64,
    signed_size: u64,
    /// Stored nodes that differ from the recomputed ones, in order (first few only).
    mismatches: Vec<NodeMismatch>,
    /// The first differing level-4 blocks, to locate a swap.
    blocks: Vec<Block>,
}

impl Walk<'_> {
    /// Compares the page's stored nodes, checks the checkpoints it reached, then reports its
    /// row-level problem if any.
    async fn check_page(&mut self, page: &PageResult) -> Result<Option<VerifyOutcome>, LogError> {
        if let Some(outcome) = self.check_nodes(page).await? {
            return Ok(Some(outcome));
        }
        for (size, root) in &page.roots {
            let Some(cp) = self.feed.buf.pop_front() else {
                break;
            };
            debug_assert_eq!(cp.size, *size);
            if let Some(outcome) = self.check_checkpoint(&cp, root).await? {
                return Ok(Some(outcome));
            }
        }
        if let Some((seq, reason)) = &page.problem {
            if let Some(m) = self.mismatches.first().filter(|m| m.begin < *seq) {
                return Ok(Some(unsigned_tree_mismatch(m)));
            }
            let reason = match reason {
                Problem::Text(r) => r.clone(),
                Problem::Foreign => format!("seq {seq}: not an event of this tenant"),
            };
            return Ok(Some(VerifyOutcome::Tampered { seq: *seq, reason }));
        }
        Ok(None)
    }

    async fn check_nodes(&mut self, page: &PageResult) -> Result<Option<VerifyOutcome>, LogError> {
        if page.nodes.is_empty() {
            return Ok(None);
        }
        let ids: Vec<NodeId> = page.nodes.iter().map(|(id, _)| *id).collect();
        let stored = match self.store.tree_nodes(self.tenant, &ids).await {
            Ok(s) if s.len() == ids.len() => s,
            Ok(_) | Err(StoreError::Corrupt(_)) => {
                // Find the node that cannot be read.
                for id in &ids {
                    if self.store.tree_nodes(self.tenant, &[*id]).await.is_err() {
                        let (b, e) = id.leaf_range().unwrap_or((0, 0));
                        return Ok(Some(VerifyOutcome::Tampered {
                            seq: b,
                            reason: format!(
                                "seq {b}..{e}: the stored Merkle node (level {}, index {}) is missing or unreadable",
                                id.level, id.index
                            ),
                        }));
                    }
                }
                return Err(StoreError::Corrupt(
                    "the store returned a wrong number of nodes".into(),
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        for ((id, recomputed), stored) in page.nodes.iter().zip(stored) {
            if *recomputed == stored {
                continue;
            }
            let (begin, end) = id.leaf_range().unwrap_or((0, 0));
            if self.mismatches.len() < 64 {
                self.mismatches.push(NodeMismatch {
                    id: *id,
                    begin,
                    end,
                });
            }
            if id.level == NODE_LEVEL && self.blocks.len() < MAX_BLOCKS && begin >= page.first_seq {
                let from = (begin - page.first_seq) as usize;
                if let Some(leaves) = page.leaves.get(from..from + 16) {
                    self.blocks.push(Block {
                        begin,
                        leaves: leaves.to_vec(),
                        stored,
                    });
                }
            }
        }
        Ok(None)
    }

    /// Checks one stored checkpoint against the root recomputed at its size.
    async fn check_checkpoint(
        &mut self,
        cp: &StoredCheckpoint,
        recomputed: &Hash,
    ) -> Result<Option<VerifyOutcome>, LogError> {
        let size = cp.size;
        let bad = |reason: String| Ok(Some(VerifyOutcome::BadCheckpoint { size, reason }));
        let signed = match open_checkpoint(&cp.note, &self.origin, self.verifiers) {
            Ok((c, _)) => c,
            Err(e) => {
                return bad(format!(
                    "checkpoint at size {size}: does not verify with the trusted keys: {e}"
                ));
            }
        };
        if signed.size != size {
            return bad(format!(
                "checkpoint at size {size}: the signed note is for size {}",
                signed.size
            ));
        }
        if signed.root != cp.root {
            return bad(format!(
                "checkpoint at size {size}: the stored root column differs from the signed root"
            ));
        }
        if signed.root != *recomputed {
            return Ok(Some(self.locate(size, &signed.root).await?));
        }
        // The events below `size` are exactly what was signed: a stored node below it that
        // differs was altered in the node table.
        if let Some(m) = self.mismatches.iter().find(|m| m.end <= size) {
            return Ok(Some(VerifyOutcome::Tampered {
                seq: m.begin,
                reason: format!(
                    "seq {}..{}: the stored Merkle node (level {}, index {}) was altered \
                     (the events match the checkpoint signed at size {size}, the node table does not)",
                    m.begin, m.end, m.id.level, m.id.index
                ),
            }));
        }
        self.checkpoints += 1;
        self.signed_size = self.signed_size.max(size);
        Ok(None)
    }

    /// The events below `size` do not lead to the signed root: say where, as precisely as the
    /// stored nodes allow.
    async fn locate(&self, size: u64, signed_root: &Hash) -> Result<VerifyOutcome, LogError> {
        let head = format!(
            "checkpoint at size {size} does not match the events: an event below seq {size} was altered"
        );
        let Some(first) = self.mismatches.iter().find(|m| m.end <= size) else {
            let from = self.signed_size;
            return Ok(VerifyOutcome::Tampered {
                seq: from,
                reason: format!(
                    "seq {from}: {head} — it lies in seq {from}..{size} (the stored tree agrees with \
                     the altered events, so it was rewritten too)"
                ),
            });
        };
        let stored_root = crate::proofs::root_at(self.store, self.tenant, size).await;
        let trust = match stored_root {
            Ok(r) if r == *signed_root => "",
            _ => " (the stored tree was altered as well, so this location is a best effort)",
        };
        if let Some((a, b)) = locate_swap(&self.blocks) {
            return Ok(VerifyOutcome::Tampered {
                seq: a,
                reason: format!("seq {a}: {head} — seq {a} and seq {b} were swapped{trust}"),
            });
        }
        Ok(VerifyOutcome::Tampered {
            seq: first.begin,
            reason: format!(
                "seq {}: {head} — first differing stored subtree covers seq {}..{}{trust}",
                first.begin, first.begin, first.end
            ),
        })
    }
}

/// Tries the swaps of two leaves within the first differing block, then between the first
/// two, that make the blocks match their stored hashes.
fn locate_swap(blocks: &[Block]) -> Option<(u64, u64)> {
    let first = blocks.first()?;
    let n = first.leaves.len();
    let mut l = first.leaves.clone();
    for i in 0..n {
        for j in i + 1..n {
            l.swap(i, j);
            if merkle::root_from_leaves(&l) == first.stored {
                return Some((first.begin + i as u64, first.begin + j as u64));
            }
            l.swap(i, j);
        }
    }
    let second = blocks.get(1)?;
    let mut r = second.leaves.clone();
    for i in 0..n {
        for j in 0..r.len() {
            std::mem::swap(&mut l[i], &mut r[j]);
            if merkle::root_from_leaves(&l) == first.stored
                && merkle::root_from_leaves(&r) == second.stored
            {
                return Some((first.begin + i as u64, second.begin + j as u64));
            }
            std::mem::swap(&mut l[i], &mut r[j]);
        }
    }
    None
}

/// Why a row whose body is genuine is still reported: a value kept beside it disagrees.
fn index_reason(seq: u64, column: &str) -> String {
    match column {
        bitacora_store::check::FULL_TEXT => format!(
            "seq {seq}: the full-text index does not find the event by its own text \
             (`q=` searches would miss it)"
        ),
        "body" => format!("seq {seq}: the stored body is not a valid event"),
        "fingerprint" => format!(
            "seq {seq}: the stored fingerprint is not the event's (retries of it would be \
             refused as conflicts, or another event's accepted as its duplicate)"
        ),
        column => format!(
            "seq {seq}: the indexed column `{column}` does not match the event \
             (filtered searches, exports and counts would miss or misplace it)"
        ),
    }
}

/// Checks a page's positions and leaves (the store recomputed each leaf while reading it),
/// and extends the tree.
fn hash_page(
    events: Vec<LeafCheck>,
    mut range: CompactRange,
    mut next_seq: u64,
    target: u64,
    cp_sizes: &[u64],
) -> PageResult {
    let first_seq = next_seq;
    let mut out = PageResult {
        range: CompactRange::new(),
        next_seq,
        nodes: Vec::with_capacity(events.len() / 8 + 8),
        roots: Vec::new(),
        first_seq,
        leaves: Vec::with_capacity(events.len()),
        problem: None,
        beyond: None,
        index_problem: None,
        purged: Vec::new(),
    };
    let mut cps = cp_sizes.iter().peekable();
    while cps.next_if(|&&s| s <= next_seq).is_some() {}
    for e in &events {
        let leaf = e.recomputed;
        if e.seq >= target && e.seq == next_seq {
            out.beyond = Some(e.seq);
            break;
        }
        let problem = if e.seq > next_seq {
            Some(Problem::Text(if next_seq == 0 {
                format!("seq 0: missing (the log starts at seq {})", e.seq)
            } else {
                format!(
                    "seq {next_seq}: missing (log jumps from {} to {})",
                    next_seq - 1,
                    e.seq
                )
            }))
        } else if e.seq < next_seq {
            Some(Problem::Text(format!(
                "seq {}: out of order (read after seq {})",
                e.seq,
                next_seq.saturating_sub(1)
            )))
        } else if leaf != e.stored {
            Some(Problem::Text(format!(
                "seq {next_seq}: stored leaf hash does not match the event"
            )))
        } else if !e.in_tenant {
            Some(Problem::Foreign)
        } else {
            None
        };
        if let Some(p) = problem {
            out.problem = Some((next_seq.min(e.seq), p));
            break;
        }
        let nodes = &mut out.nodes;
        if range
            .append_with(leaf, |id, h| {
                if id.level >= NODE_LEVEL {
                    nodes.push((id, *h));
                }
            })
            .is_err()
        {
            out.problem = Some((
                next_seq,
                Problem::Text(format!("seq {next_seq}: the tree is full")),
            ));
            break;
        }
        out.leaves.push(leaf);
        if e.purged {
            add_seq(&mut out.purged, e.seq);
        }
        if let (None, Some(column)) = (&out.index_problem, e.index) {
            out.index_problem = Some((next_seq, index_reason(next_seq, column)));
        }
        next_seq += 1;
        while let Some(&&s) = cps.peek() {
            if s > next_seq {
                break;
            }
            if s == next_seq {
                out.roots.push((s, range.root()));
            }
            cps.next();
        }
    }
    out.range = range;
    out.next_seq = next_seq;
    out
}
