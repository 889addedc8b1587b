//! Self-verifying bundles (`format=bundle`, CONTRACT §4): an export an auditor can check
//! offline, with no server, no database and no trust in whoever handed it over.
//!
//! # Why this shape
//!
//! A bundle is NDJSON so it streams in constant memory both ways and survives `grep`,
//! `split` and `jq`. It carries one signed checkpoint (the trust anchor, verified with a
//! known Ed25519 key) and, per event, the RFC 6962 inclusion proof of that event in the
//! checkpoint's tree, so every event is checked on its own: a filtered export proves each
//! event it contains without revealing the others. A trailer with the event count makes a
//! truncated file fail instead of looking like a smaller export.
//!
//! ```text
//! {"bitacora_bundle":1,"tenant":"acme","origin":"bitacora/acme","tree_size":1042,
//!  "checkpoint":"bitacora/acme\n1042\n<b64 root>\n\n— bitacora/acme <b64 sig>\n",
//!  "verifier_keys":["bitacora/acme+5e6f7a8b+AX...","bitacora+1a2b3c4d+AX..."],
//!  "filter":{"action":"user.*"}}
//! {"event":{"seq":7,"leaf_hash":"…","id":"…",…},"proof":["<hex>",…]}
//! …
//! {"end":true,"events":2}
//! ```
//!
//! The full format, precise enough to write an independent verifier, is `docs/BUNDLE.md`;
//! `tests/verify_bundle.py` is such a verifier, written from that page.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;

use bitacora_core::canonical::{Hash, canonicalize_json, leaf_hash, parse_hex_hash};
use bitacora_core::checkpoint::{
    Checkpoint, NoteSigner, NoteVerifier, log_verifiers, open_log_checkpoint,
};
use bitacora_core::merkle::{self, NodeId};
use bitacora_core::query::{EventQuery, Order, Pagination};
use bitacora_store::{Store, StoreError, StoredEvent};
use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::LogError;

/// The bundle format version written in the header.
pub const BUNDLE_VERSION: u64 = 1;

/// What a bundle needs besides the query.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// Signs a first checkpoint when the tenant has none yet.
    pub signer: Arc<NoteSigner>,
    /// Embedded in the header so the bundle verifies on its own: the current verifier key
    /// and any retired ones ([`crate::LogKeys::verifiers`]).
    pub verifier_keys: Vec<NoteVerifier>,
    /// The query as the user gave it (e.g. the request's parameters), echoed in the header.
    pub filter: serde_json::Value,
    /// Events read (and proved) per store call.
    pub page_size: u32,
    /// The origin prefix a log that has no checkpoint yet gets (`integrity.origin_prefix`).
    pub origin_prefix: String,
}

impl BundleOptions {
    pub fn new(signer: Arc<NoteSigner>, verifier_keys: Vec<NoteVerifier>) -> Self {
        Self {
            signer,
            verifier_keys,
            filter: serde_json::Value::Object(Default::default()),
            page_size: 1000,
            origin_prefix: crate::DEFAULT_ORIGIN_PREFIX.to_owned(),
        }
    }
}

/// Line 1 of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleHeader {
    pub bitacora_bundle: u64,
    pub tenant: String,
    pub origin: String,
    pub tree_size: u64,
    /// The signed note (C2SP tlog-checkpoint in a signed-note).
    pub checkpoint: String,
    pub verifier_keys: Vec<String>,
    #[serde(default)]
    pub filter: serde_json::Value,
}

/// The last line of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trailer {
    end: bool,
    events: u64,
}

enum Phase {
    Header,
    Events,
    Trailer,
    Done,
}

struct State {
    store: Arc<dyn Store>,
    query: EventQuery,
    options: BundleOptions,
    phase: Phase,
    tree_size: u64,
    after: Option<u64>,
    count: u64,
    /// No more pages to read.
    finished: bool,
}

/// Streams a bundle of the events `query` matches (in its order; its pagination is ignored
/// except a cursor, which sets where to start), bounded at the tenant's latest checkpoint:
/// events appended after it are left out. If the tenant has no checkpoint yet, one is
/// signed first. Each item is one or more complete lines; memory stays constant.
pub fn bundle_stream(
    store: Arc<dyn Store>,
    query: EventQuery,
    options: BundleOptions,
) -> impl Stream<Item = Result<Bytes, LogError>> + Send + 'static {
    let after = match query.page {
        Pagination::Cursor { after, .. } => after,
        Pagination::Numbered { .. } => None,
    };
    let state = State {
        store,
        query,
        options,
        phase: Phase::Header,
        tree_size: 0,
        after,
        count: 0,
        finished: false,
    };
    futures::stream::try_unfold(state, |mut st| async move {
        loop {
            match st.phase {
                Phase::Header => {
                    let bytes = header(&mut st).await?;
                    st.phase = Phase::Events;
                    return Ok(Some((bytes, st)));
                }
                Phase::Events => match page(&mut st).await? {
                    Some(bytes) if !bytes.is_empty() => return Ok(Some((bytes, st))),
                    Some(_) => continue,
                    None => st.phase = Phase::Trailer,
                },
                Phase::Trailer => {
                    let mut line = serde_json::to_vec(&Trailer {
                        end: true,
                        events: st.count,
                    })
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                    line.push(b'\n');
                    st.phase = Phase::Done;
                    return Ok(Some((Bytes::from(line), st)));
                }
                Phase::Done => return Ok(None),
            }
        }
    })
}

async fn header(st: &mut State) -> Result<Bytes, LogError> {
    let tenant = st.query.tenant.clone();
    let store = st.store.as_ref();
    let mut latest = store.latest_checkpoint(&tenant).await?;
    if latest.is_none() {
        latest = match crate::checkpoint_tenant_with_prefix(
            store,
            &st.options.signer,
            &tenant,
            crate::now_micros(),
            &st.options.origin_prefix,
        )
        .await?
        {
            crate::Signing::Signed(cp) => Some(cp),
            crate::Signing::Unexplained(_) | crate::Signing::UpToDate => None,
        };
    }
    let origin = match latest {
        Some(_) => crate::log_origin(store, &tenant).await?,
        // An empty log: its origin is not fixed until its first event is signed.
        None => match store.log_origin(&tenant).await? {
            Some(origin) => origin,
            None => format!("{}/{tenant}", st.options.origin_prefix),
        },
    };
    let (tree_size, note) = match latest {
        // With the witnesses' cosignatures of that checkpoint, if any (CONTRACT §11), so
        // `verify-bundle --policy` can check the policy's quorum offline.
        Some(cp) => {
            let mut note = cp.note;
            for c in store.cosignatures(&tenant, cp.size).await? {
                note.push_str(&c.line);
                note.push('\n');
            }
            (cp.size, note)
        }
        // An empty log: its checkpoint (size 0, the empty root) is signed for the bundle,
        // under the origin as key name like every new log's.
        None => (
            0,
            crate::sign_log_checkpoint(
                &st.options.signer,
                &Checkpoint::new(origin.clone(), 0, merkle::empty_root()),
                false,
            )?,
        ),
    };
    st.tree_size = tree_size;
    if st.query.order == Order::Desc {
        // Newest first: start just below the checkpoint's size.
        st.after = Some(st.after.map_or(tree_size, |a| a.min(tree_size)));
    }
    // The log's own keys (named by its origin) first, then the keys under their own names,
    // so a signed-note verifier that matches names exactly finds its key.
    let verifier_keys = log_verifiers(&origin, &st.options.verifier_keys)
        .iter()
        .map(ToString::to_string)
        .collect();
    let header = BundleHeader {
        bitacora_bundle: BUNDLE_VERSION,
        tenant: tenant.to_string(),
        origin,
        tree_size,
        checkpoint: note,
        verifier_keys,
        filter: st.options.filter.clone(),
    };
    let mut line = serde_json::to_vec(&header).map_err(|e| StoreError::Internal(e.to_string()))?;
    line.push(b'\n');
    Ok(Bytes::from(line))
}

/// The next page of event lines; `None` when there are no more.
async fn page(st: &mut State) -> Result<Option<Bytes>, LogError> {
    if st.finished || st.tree_size == 0 || (st.query.order == Order::Desc && st.after == Some(0)) {
        return Ok(None);
    }
    let mut q = st.query.clone();
    q.page = Pagination::Cursor {
        limit: st.options.page_size.max(1),
        after: st.after,
    };
    let result = st.store.search(&q).await?;
    let tree_size = st.tree_size;
    let mut events: Vec<StoredEvent> = result.events;
    let mut finished = result.next_after.is_none();
    if st.query.order == Order::Asc
        && let Some(i) = events.iter().position(|e| e.seq >= tree_size)
    {
        events.truncate(i);
        finished = true;
    }
    events.retain(|e| e.seq < tree_size);
    st.after = result.next_after;
    if events.is_empty() {
        st.finished = finished;
        return Ok(if finished { None } else { Some(Bytes::new()) });
    }
    let proofs = page_proofs(st.store.as_ref(), &st.query.tenant, &events, tree_size).await?;
    let mut out = String::with_capacity(events.len() * 1200);
    write_event_lines(&mut out, &events, proofs);
    st.count += events.len() as u64;
    st.finished = finished;
    Ok(Some(Bytes::from(out)))
}

/// One `{"event":…,"proof":[…]}` line per event.
fn write_event_lines(out: &mut String, events: &[StoredEvent], proofs: Vec<Vec<Hash>>) {
    // Neighbouring events' proofs share most of their hashes, position by position (see
    // [`page_proofs`]): each position keeps the last hash it wrote in hex.
    let mut last: Vec<(Hash, [u8; 64])> = Vec::new();
    for (e, proof) in events.iter().zip(proofs) {
        out.push_str("{\"event\":");
        e.write_json(out);
        out.push_str(",\"proof\":[");
        for (i, h) in proof.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if last.len() <= i {
                last.push((*h, hex_digits(h)));
            } else if last[i].0 != *h {
                last[i] = (*h, hex_digits(h));
            }
            out.push('"');
            out.push_str(std::str::from_utf8(&last[i].1).expect("hex digits are ASCII"));
            out.push('"');
        }
        out.push_str("]}\n");
    }
}

/// `h` in lowercase hex, on the stack.
fn hex_digits(h: &Hash) -> [u8; 64] {
    let mut hex = [0u8; 64];
    hex::encode_to_slice(h, &mut hex).expect("32 bytes are 64 hex digits");
    hex
}

/// A bundle of exactly `events` (of `tenant`, in ascending `seq` order), in memory: what the
/// retention archive writes before a purge. Every event must lie below the tenant's latest
/// signed checkpoint, which is the bundle's trust anchor (an error otherwise: nothing is
/// signed here, so a purge never waits on, or races with, the checkpointer).
pub async fn bundle_of_events(
    store: Arc<dyn Store>,
    tenant: &bitacora_core::TenantName,
    events: &[StoredEvent],
    options: BundleOptions,
) -> Result<Vec<u8>, LogError> {
    let mut query = EventQuery::tenant(tenant.clone());
    query.order = Order::Asc;
    let mut st = State {
        store,
        query,
        options,
        phase: Phase::Header,
        tree_size: 0,
        after: None,
        count: 0,
        finished: false,
    };
    let signed = st
        .store
        .latest_checkpoint(tenant)
        .await?
        .map_or(0, |cp| cp.size);
    if events.iter().any(|e| e.seq >= signed) {
        return Err(StoreError::Internal(
            "events past the latest signed checkpoint cannot be bundled yet".into(),
        )
        .into());
    }
    let mut out = String::from_utf8(header(&mut st).await?.to_vec())
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    out.reserve(events.iter().map(|e| e.body.len() + 1_600).sum());
    // One store call for the whole batch: the nodes inside its runs of consecutive seqs are
    // folded here from the events' own leaf hashes, so only the few nodes outside them (about
    // one per level) are read.
    let proofs = page_proofs(st.store.as_ref(), tenant, events, st.tree_size).await?;
    // Writing the lines is most of a bundle's time (megabytes of JSON and hex for a batch of
    // 2,000): on a blocking thread, so that the async tasks beside it (the server's requests
    // and its writer) are not queued behind it on the runtime's few workers.
    let events = events.to_vec();
    tokio::task::spawn_blocking(move || {
        write_event_lines(&mut out, &events, proofs);
        let trailer = serde_json::to_string(&Trailer {
            end: true,
            events: events.len() as u64,
        })
        .map_err(|e| StoreError::Internal(e.to_string()))?;
        out.push_str(&trailer);
        out.push('\n');
        Ok(out.into_bytes())
    })
    .await
    .map_err(|e| StoreError::Internal(format!("writing a bundle: {e}")))?
}

/// The complete subtrees that lie wholly within `events` (ascending seqs, all below the
/// tree's size), folded from the events' leaf hashes, level by level, per run of consecutive
/// seqs: every node of a proof below the run's own subtrees. A node is found by a binary
/// search over the runs and an index into its level (no hashing of node ids).
#[derive(Debug, Default)]
struct LocalTree {
    runs: Vec<Run>,
}

/// Leaves `[begin, end)` and their complete subtrees: `levels[l][k]` is the node at level
/// `l` and index `first(l) + k`, where `first(l)` is the first index at that level whose
/// leaves all lie in the run.
#[derive(Debug)]
struct Run {
    begin: u64,
    end: u64,
    levels: Vec<Vec<Hash>>,
}

impl Run {
    fn first(&self, level: u8) -> u64 {
        // ceil(begin / 2^level), without overflow (level <= 63).
        (self.begin >> level) + u64::from(self.begin & ((1u64 << level) - 1) != 0)
    }
}

impl LocalTree {
    fn new(events: &[StoredEvent]) -> Self {
        let mut runs: Vec<Run> = Vec::new();
        let mut i = 0;
        while i < events.len() {
            let begin = events[i].seq;
            let mut j = i + 1;
            while j < events.len() && events[j].seq == events[j - 1].seq + 1 {
                j += 1;
            }
            let leaves: Vec<Hash> = events[i..j].iter().map(|e| e.leaf_hash).collect();
            let mut run = Run {
                begin,
                end: events[j - 1].seq + 1,
                levels: vec![leaves],
            };
            let mut level = 0u8;
            while level < 63 {
                let below = &run.levels[usize::from(level)];
                let first = run.first(level);
                // Level `level + 1` nodes whose two children are both in `below`.
                let from = first.div_ceil(2);
                let to = (first + below.len() as u64) / 2;
                if from >= to {
                    break;
                }
                let next: Vec<Hash> = (from..to)
                    .map(|k| {
                        let left = (2 * k - first) as usize;
                        bitacora_core::canonical::node_hash(&below[left], &below[left + 1])
                    })
                    .collect();
                run.levels.push(next);
                level += 1;
            }
            runs.push(run);
            i = j;
        }
        Self { runs }
    }

    /// The node's hash if all of its leaves lie in one run.
    fn get(&self, id: NodeId) -> Option<Hash> {
        let (begin, end) = id.leaf_range()?;
        let r = self
            .runs
            .partition_point(|r| r.begin <= begin)
            .checked_sub(1)?;
        let run = &self.runs[r];
        if end > run.end {
            return None;
        }
        let nodes = run.levels.get(usize::from(id.level))?;
        let k = id.index.checked_sub(run.first(id.level))?;
        nodes.get(usize::try_from(k).ok()?).copied()
    }
}

/// The inclusion proofs of a page of events (ascending seqs), with one store call for all
/// their nodes that the page's own leaves do not give.
///
/// One pass over the page: the proofs of neighbouring events share every node above the
/// level where their seqs part, so each position of a proof keeps the node it resolved last
/// and an event resolves only the nodes that differ from its predecessor's (about two per event in a run
/// of consecutive seqs, instead of its whole path). A ragged right-edge node is folded once
/// per page, not once per event. The proofs are those of [`merkle::inclusion_proof`] for each
/// event, node for node (tested below).
async fn page_proofs(
    store: &dyn Store,
    tenant: &bitacora_core::TenantName,
    events: &[StoredEvent],
    tree_size: u64,
) -> Result<Vec<Vec<Hash>>, LogError> {
    let local = LocalTree::new(events);
    let ids = external_nodes(events, tree_size, &local)?;
    let hashes = if ids.is_empty() {
        Vec::new()
    } else {
        store.tree_nodes(tenant, &ids).await?
    };
    if hashes.len() != ids.len() {
        return Err(
            StoreError::Corrupt("the store returned a wrong number of nodes".into()).into(),
        );
    }
    let external: HashMap<NodeId, Hash> = ids.into_iter().zip(hashes).collect();
    batch_proofs(events, tree_size, &local, &external)
}

/// The complete nodes the proofs of `events` need that `local` does not hold, each once:
/// what must be read from the store. Walks the proofs with the same per-position memory as
/// [`batch_proofs`], so a proof element shared by neighbouring events is looked at once.
fn external_nodes(
    events: &[StoredEvent],
    tree_size: u64,
    local: &LocalTree,
) -> Result<Vec<NodeId>, LogError> {
    let mut seen: Vec<Option<merkle::NodeRef>> = vec![None; 64];
    let mut ids: Vec<NodeId> = Vec::new();
    let mut listed: std::collections::HashSet<NodeId> = std::collections::HashSet::new();
    for e in events {
        let refs = merkle::inclusion_proof_nodes(e.seq, tree_size)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        for (position, r) in refs.iter().enumerate() {
            if seen[position] == Some(*r) {
                continue;
            }
            seen[position] = Some(*r);
            for id in r.nodes() {
                if local.get(id).is_none() && listed.insert(id) {
                    ids.push(id);
                }
            }
        }
    }
    Ok(ids)
}

/// The proofs of `events`, every node taken from `local` or `external` (see [`page_proofs`]).
fn batch_proofs(
    events: &[StoredEvent],
    tree_size: u64,
    local: &LocalTree,
    external: &HashMap<NodeId, Hash>,
) -> Result<Vec<Vec<Hash>>, LogError> {
    let get = |id: NodeId| {
        local
            .get(id)
            .or_else(|| external.get(&id).copied())
            .ok_or_else(|| StoreError::Internal("missing proof node".into()))
    };
    // Per position in a proof (the i-th element is a sibling at level i or above: the same
    // level for neighbouring events, whose paths differ only below some level): the last
    // element resolved there and its hash. Compared by element, so reuse is always exact.
    let mut last: Vec<Option<(merkle::NodeRef, Hash)>> = vec![None; 64];
    let mut proofs = Vec::with_capacity(events.len());
    for e in events {
        let refs = merkle::inclusion_proof_nodes(e.seq, tree_size)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut proof = Vec::with_capacity(refs.len());
        for (position, r) in refs.iter().enumerate() {
            let hash = match last[position] {
                Some((seen, hash)) if seen == *r => hash,
                _ => {
                    let hash = merkle::resolve_proof(std::slice::from_ref(r), get)?[0];
                    last[position] = Some((*r, hash));
                    hash
                }
            };
            proof.push(hash);
        }
        proofs.push(proof);
    }
    Ok(proofs)
}

/// A bundle that does not verify: the first bad line (1-based) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BundleError {
    pub line: u64,
    pub reason: String,
}

/// Which keys vouched for the bundle's checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The keys embedded in the bundle itself: proves integrity, not origin (whoever made
    /// the bundle chose the keys). Pass trusted keys to prove it came from your server.
    Embedded,
    /// Keys the verifier was given.
    Trusted,
}

/// A verified bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleReport {
    pub tenant: String,
    pub tree_size: u64,
    pub root: Hash,
    pub events: u64,
    pub keys: KeySource,
    /// The keys whose signatures verified, as `name+id`.
    pub signed_by: Vec<String>,
    pub filter: serde_json::Value,
    /// The header's signed note as it is (with any witness cosignatures), for a caller that
    /// also checks a witness policy (`bitacora verify-bundle --policy`).
    pub checkpoint: String,
}

impl BundleReport {
    /// One line for the CLI.
    pub fn summary(&self) -> String {
        let keys = match self.keys {
            KeySource::Embedded => {
                "with the bundle's own keys; pass trusted keys to check who signed"
            }
            KeySource::Trusted => "with trusted keys",
        };
        format!(
            "bundle OK: {} events of tenant {} verified against the checkpoint at tree size {} signed by {} ({keys})",
            self.events,
            self.tenant,
            self.tree_size,
            self.signed_by.join(", ")
        )
    }
}

#[derive(Deserialize)]
struct EventLine<'a> {
    #[serde(borrow)]
    event: &'a RawValue,
    proof: Vec<String>,
}

#[derive(Deserialize)]
struct EventFields {
    seq: u64,
    leaf_hash: String,
    tenant: String,
}

/// Verifies a bundle with no store and no server: the header's checkpoint signature (with
/// `trusted` keys if given, else the embedded ones), then every event's leaf hash from its
/// canonical form and its inclusion proof to the signed root, then the trailer's count.
pub fn verify_bundle(
    reader: impl BufRead,
    trusted: Option<&[NoteVerifier]>,
) -> Result<BundleReport, BundleError> {
    let mut lines = reader.lines();
    let mut n = 0u64;
    let mut next = |n: &mut u64| -> Result<Option<String>, BundleError> {
        *n += 1;
        match lines.next() {
            None => Ok(None),
            Some(Ok(l)) => Ok(Some(l)),
            Some(Err(e)) => Err(BundleError {
                line: *n,
                reason: format!("cannot read: {e}"),
            }),
        }
    };
    let fail = |line: u64, reason: String| Err(BundleError { line, reason });

    let Some(first) = next(&mut n)? else {
        return fail(1, "empty file: no bundle header".into());
    };
    let header: BundleHeader = match serde_json::from_str(&first) {
        Ok(h) => h,
        Err(e) => return fail(1, format!("not a bitacora bundle header: {e}")),
    };
    if header.bitacora_bundle != BUNDLE_VERSION {
        return fail(
            1,
            format!("unsupported bundle version {}", header.bitacora_bundle),
        );
    }
    // `<prefix>/<tenant>` (CONTRACT §11: the prefix is configurable, `bitacora` by default).
    if !is_origin_of(&header.origin, &header.tenant) {
        return fail(
            1,
            format!(
                "origin `{}` is not the log of tenant `{}`",
                header.origin, header.tenant
            ),
        );
    }
    let (keys, source) = match trusted {
        Some(t) => (t.to_vec(), KeySource::Trusted),
        None => {
            let parsed = header
                .verifier_keys
                .iter()
                .map(|k| NoteVerifier::parse(k).map_err(|e| format!("verifier key `{k}`: {e}")))
                .collect::<Result<Vec<_>, _>>();
            match parsed {
                Ok(k) => (k, KeySource::Embedded),
                Err(e) => return fail(1, e),
            }
        }
    };
    // A trusted key counts under its own name or the log's origin (the name it signs under).
    let (checkpoint, verified) =
        match open_log_checkpoint(&header.checkpoint, &header.origin, &keys) {
            Ok(c) => c,
            Err(e) => return fail(1, format!("the checkpoint does not verify: {e}")),
        };
    if checkpoint.size != header.tree_size {
        return fail(
            1,
            format!(
                "tree_size {} differs from the signed checkpoint's {}",
                header.tree_size, checkpoint.size
            ),
        );
    }
    let root = checkpoint.root;

    let mut events = 0u64;
    loop {
        let Some(line) = next(&mut n)? else {
            return fail(
                n,
                "the bundle ends without its trailer: it was truncated".into(),
            );
        };
        if let Ok(trailer) = serde_json::from_str::<Trailer>(&line) {
            if !trailer.end || trailer.events != events {
                return fail(
                    n,
                    format!(
                        "the trailer counts {} events but the bundle has {events}: lines are missing",
                        trailer.events
                    ),
                );
            }
            break;
        }
        check_event_line(&line, &header.tenant, checkpoint.size, &root)
            .map_err(|reason| BundleError { line: n, reason })?;
        events += 1;
    }
    while let Some(extra) = next(&mut n)? {
        if !extra.trim().is_empty() {
            return fail(n, "content after the trailer".into());
        }
    }
    Ok(BundleReport {
        tenant: header.tenant,
        tree_size: checkpoint.size,
        root,
        events,
        keys: source,
        signed_by: verified
            .verified
            .iter()
            .map(|s| format!("{}+{:08x}", s.name, s.key_id))
            .collect(),
        filter: header.filter,
        checkpoint: header.checkpoint,
    })
}

fn check_event_line(line: &str, tenant: &str, tree_size: u64, root: &Hash) -> Result<(), String> {
    let parsed: EventLine<'_> =
        serde_json::from_str(line).map_err(|e| format!("not an event line of a bundle: {e}"))?;
    let fields: EventFields = serde_json::from_str(parsed.event.get())
        .map_err(|e| format!("the event lacks seq, leaf_hash or tenant: {e}"))?;
    let seq = fields.seq;
    let canonical = canonicalize_json(parsed.event.get().as_bytes())
        .map_err(|e| format!("seq {seq}: the event cannot be canonicalized: {e}"))?;
    let leaf = leaf_hash(&canonical);
    if parse_hex_hash(&fields.leaf_hash) != Some(leaf) {
        return Err(format!(
            "seq {seq}: the event's content does not match its leaf_hash (the event was altered)"
        ));
    }
    if fields.tenant != tenant {
        return Err(format!(
            "seq {seq}: the event belongs to tenant `{}`, not `{tenant}`",
            fields.tenant
        ));
    }
    if seq >= tree_size {
        return Err(format!(
            "seq {seq}: not in the checkpoint's tree of {tree_size} events"
        ));
    }
    let proof = parsed
        .proof
        .iter()
        .map(|h| parse_hex_hash(h).ok_or_else(|| format!("seq {seq}: `{h}` is not a hex hash")))
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify_inclusion(&leaf, seq, tree_size, &proof, root)
        .map_err(|e| format!("seq {seq}: the inclusion proof does not verify: {e}"))
}

/// Whether `origin` names the log of `tenant`: `<prefix>/<tenant>` with a non-empty prefix
/// (CONTRACT §11). The signature over the checkpoint is what ties it to the log's operator.
pub fn is_origin_of(origin: &str, tenant: &str) -> bool {
    origin
        .strip_suffix(tenant)
        .and_then(|p| p.strip_suffix('/'))
        .is_some_and(|prefix| !prefix.is_empty())
}

#[cfg(test)]
mod origin_tests {
    use super::is_origin_of;

    #[test]
    fn an_origin_is_a_prefix_a_slash_and_the_tenant() {
        assert!(is_origin_of("bitacora/acme", "acme"));
        assert!(is_origin_of("audit.example.com/bitacora/acme", "acme"));
        assert!(!is_origin_of("/acme", "acme"));
        assert!(!is_origin_of("acme", "acme"));
        assert!(!is_origin_of("bitacora/xacme", "acme"));
        assert!(!is_origin_of("bitacora/acme2", "acme"));
    }
}

#[cfg(test)]
mod tests {
    use bitacora_core::canonical::leaf_hash;
    use bitacora_core::merkle::root_from_leaves;

    use super::*;

    fn event(seq: u64) -> StoredEvent {
        let body = format!("{{\"n\":{seq}}}");
        StoredEvent {
            seq,
            leaf_hash: leaf_hash(body.as_bytes()),
            body,
        }
    }

    #[test]
    fn local_nodes_are_the_subtrees_inside_the_runs() {
        let leaves: Vec<Hash> = (0..16).map(|i| event(i).leaf_hash).collect();
        // Two runs: 3..=11 and 13..=13.
        let events: Vec<StoredEvent> = (3..=11).chain([13]).map(event).collect();
        let known = LocalTree::new(&events);
        // Leaves of the runs, and nothing else at level 0.
        for i in 0..16u64 {
            let inside = (3..=11).contains(&i) || i == 13;
            assert_eq!(
                known.get(NodeId::leaf(i)),
                inside.then(|| leaves[i as usize])
            );
        }
        // Complete subtrees wholly inside a run, with their RFC 6962 hashes.
        let subtree = |level: u8, index: u64| {
            let (a, b) = NodeId::new(level, index).leaf_range().unwrap();
            root_from_leaves(&leaves[a as usize..b as usize])
        };
        for (level, index) in [(1, 2), (1, 3), (1, 4), (1, 5), (2, 1), (2, 2), (3, 1)] {
            let inside = {
                let (a, b) = NodeId::new(level, index).leaf_range().unwrap();
                a >= 3 && b <= 12
            };
            assert_eq!(
                known.get(NodeId::new(level, index)),
                inside.then(|| subtree(level, index)),
                "node ({level}, {index})"
            );
        }
        // Straddling a run's edge or a gap: not local.
        for (level, index) in [(1, 1), (1, 6), (2, 0), (2, 3), (3, 0), (4, 0)] {
            assert!(
                known.get(NodeId::new(level, index)).is_none(),
                "({level}, {index})"
            );
        }
    }

    /// The batch's proofs against the per-event proofs of [`merkle::inclusion_proof`] over
    /// the whole tree, for every tree size up to 70 and many sets of events: one run, runs
    /// with gaps, single events, the ragged right edge, the last leaf.
    #[test]
    fn batch_proofs_equal_the_per_event_proofs() {
        let all: Vec<StoredEvent> = (0..70).map(event).collect();
        let leaves: Vec<Hash> = all.iter().map(|e| e.leaf_hash).collect();
        let node = |id: NodeId| -> Result<Hash, merkle::ProofError> {
            let (a, b) = id.leaf_range().unwrap();
            Ok(root_from_leaves(&leaves[a as usize..b as usize]))
        };
        // A small deterministic generator: which seqs of the tree a page holds.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut checked = 0;
        for size in 1..=70u64 {
            let mut pages: Vec<Vec<u64>> = vec![
                (0..size).collect(),
                vec![size - 1],
                vec![0],
                (size / 3..size).collect(),
                (size / 2..size.div_ceil(2).max(size / 2 + 1)).collect(),
            ];
            for _ in 0..12 {
                // Runs with gaps: each seq kept with probability 1/2 .. 7/8.
                let keep = 2 + next() % 7;
                pages.push((0..size).filter(|_| next() % keep != 0).collect());
                let a = next() % size;
                let b = a + 1 + next() % (size - a);
                pages.push((a..b).collect());
            }
            for seqs in pages {
                if seqs.is_empty() {
                    continue;
                }
                let events: Vec<StoredEvent> =
                    seqs.iter().map(|&s| all[s as usize].clone()).collect();
                let local = LocalTree::new(&events);
                let ids = external_nodes(&events, size, &local).unwrap();
                // Each node the store is asked for is asked once and is not local.
                let unique: std::collections::HashSet<NodeId> = ids.iter().copied().collect();
                assert_eq!(unique.len(), ids.len(), "size {size}, seqs {seqs:?}");
                assert!(ids.iter().all(|&id| local.get(id).is_none()));
                let external: HashMap<NodeId, Hash> =
                    ids.iter().map(|&id| (id, node(id).unwrap())).collect();
                let proofs = batch_proofs(&events, size, &local, &external).unwrap();
                for (e, proof) in events.iter().zip(&proofs) {
                    let expected = merkle::inclusion_proof(e.seq, size, node).unwrap();
                    assert_eq!(
                        proof, &expected,
                        "size {size}, seq {}, page {seqs:?}",
                        e.seq
                    );
                    let root = root_from_leaves(&leaves[..size as usize]);
                    merkle::verify_inclusion(&e.leaf_hash, e.seq, size, proof, &root).unwrap();
                    checked += 1;
                }
            }
        }
        assert!(checked > 30_000, "{checked}");
    }

    /// The lines as written before the hex of shared nodes was reused: each hash as
    /// `hex_hash` writes it.
    #[test]
    fn event_lines_write_every_hash_in_lowercase_hex() {
        let events: Vec<StoredEvent> = (0..5).map(event).collect();
        let proofs: Vec<Vec<Hash>> = vec![
            vec![event(9).leaf_hash, event(10).leaf_hash],
            vec![event(9).leaf_hash, event(11).leaf_hash, event(12).leaf_hash],
            vec![event(13).leaf_hash, event(11).leaf_hash],
            vec![],
            vec![event(13).leaf_hash],
        ];
        let mut out = String::new();
        write_event_lines(&mut out, &events, proofs.clone());
        let mut expected = String::new();
        for (e, proof) in events.iter().zip(&proofs) {
            expected.push_str("{\"event\":");
            e.write_json(&mut expected);
            let hex: Vec<String> = proof
                .iter()
                .map(|h| format!("\"{}\"", bitacora_core::canonical::hex_hash(h)))
                .collect();
            expected.push_str(&format!(",\"proof\":[{}]}}\n", hex.join(",")));
        }
        assert_eq!(out, expected);
    }
}
