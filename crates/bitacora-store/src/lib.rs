//! The storage boundary: the [`Store`] trait every backend implements (embedded SQLite,
//! PostgreSQL), the records that cross it, and [`StoreError`].
//!
//! **API boundary.** Only store crates know SQL. The server holds an `Arc<dyn Store>` chosen
//! at startup and never matches on which one it is. Events are append-only: no method here
//! updates or deletes an event's content, except [`Store::purge`] (retention, CONTRACT §9),
//! which removes the content of events and keeps each one's `seq` and leaf hash.
//!
//! With the `conformance` feature, [`conformance`] holds the behavioural suite that every
//! implementation runs in its own tests, so both stores answer every query the same way.

use async_trait::async_trait;
use bitacora_core::TenantName;
use bitacora_core::api::{ActionSummary, ActorSummary, Stats};
use bitacora_core::canonical::{Hash, SealedEvent};
use bitacora_core::merkle::NodeId;
use bitacora_core::query::EventQuery;
use bitacora_core::seal::{CommitKey, CommitSeal};
use chrono_free::Timestamp;

/// The last of `count` (> 0) consecutive nodes at `level` from node `first` when all of them
/// are complete in a log of `size` events (what [`Store::level_nodes`] may read), `Corrupt`
/// otherwise.
pub fn last_of_complete_run(level: u8, first: u64, count: u64, size: u64) -> StoreResult<NodeId> {
    count
        .checked_sub(1)
        .and_then(|n| first.checked_add(n))
        .map(|i| NodeId::new(level, i))
        .filter(|id| id.leaf_range().is_some_and(|(_, end)| end <= size))
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{count} nodes of level {level} from {first} are not complete in a log of \
                 {size} events"
            ))
        })
}

pub mod check;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod derive;
pub mod postings;
pub mod sketch;
pub mod total;
pub mod window;

/// Times at this boundary are microseconds since the Unix epoch (UTC), so this crate needs
/// no date library.
pub mod chrono_free {
    pub type Timestamp = i64;
}

/// What went wrong in a store. The server maps `Unavailable` to 503 and the rest to 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take the request now (disk full, database down, shutting down);
    /// the client may retry. Nothing was acknowledged.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The stored data contradicts itself (a bug or tampering).
    #[error("store data is inconsistent: {0}")]
    Corrupt(String),
    /// Anything else: a bug, an I/O error.
    #[error("store error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An event as stored: its position, leaf hash and canonical body (RFC 8785 JSON without
/// `seq` and `leaf_hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    pub leaf_hash: Hash,
    pub body: String,
}

impl StoredEvent {
    /// The event's JSON as the API returns it: the body with `seq` and `leaf_hash` added.
    /// Built by splicing, so the hashed bytes are never re-serialized.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.body.len() + 100);
        self.write_json(&mut out);
        out
    }

    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write as _;
        debug_assert!(self.body.starts_with('{') && self.body.len() > 2);
        let _ = write!(
            out,
            "{{\"seq\":{},\"leaf_hash\":\"{}\",",
            self.seq,
            bitacora_core::canonical::hex_hash(&self.leaf_hash)
        );
        out.push_str(&self.body[1..]);
    }
}

/// What happened to one appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Newly stored at `seq`.
    Stored {
        id: String,
        seq: u64,
        leaf_hash: Hash,
    },
    /// An identical event with this id was already stored; nothing was written.
    Duplicate {
        id: String,
        seq: u64,
        leaf_hash: Hash,
    },
    /// Another event with this id and different content is stored; nothing was written.
    Conflict { id: String },
}

/// One page of a search.
#[derive(Debug, Clone, Default)]
pub struct SearchResult {
    pub events: Vec<StoredEvent>,
    /// The `seq` to continue after, when more events may follow (cursor pagination).
    pub next_after: Option<u64>,
    /// The number of matches (numbered pagination only): exact unless `estimated`.
    pub total: Option<u64>,
    /// `total` is an estimate: counting it exactly would have taken longer than the store's
    /// total budget ([`total`]).
    pub estimated: bool,
}

/// One event of a log as a whole-log walk (`bitacora verify`) re-checks it, computed by the
/// store while it reads the row, so the walk never holds event bodies in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafCheck {
    pub seq: u64,
    /// The leaf hash stored with the event.
    pub stored: Hash,
    /// `SHA-256(0x00 || body)`, recomputed from the stored body.
    pub recomputed: Hash,
    /// Whether the body is an event of the tenant whose log was read (see
    /// [`LeafCheck::of_row`]).
    pub in_tenant: bool,
    /// The first value the store keeps beside the body (an indexed column, the fingerprint,
    /// the full-text entry) that is not what the writer derives from the body, by name
    /// (a column, or [`check::FULL_TEXT`]). `None` when all agree, or when the store does
    /// not check them (the default [`Store::check_leaves`]).
    pub index: Option<&'static str>,
    /// The event's content was removed by a retention purge: only its stored leaf hash is
    /// left (`recomputed` is that hash), which the tree still covers. The walk accounts for
    /// every purged leaf against the purge records ([`Store::purges`]).
    pub purged: bool,
}

impl LeafCheck {
    /// The `suffix` every body of `tenant`'s log ends with: in the RFC 8785 form `"tenant"`
    /// is always the last member (no member of an event sorts after it), and a tenant name
    /// (`[A-Za-z0-9_.-]`) needs no JSON escaping.
    pub fn tenant_suffix(tenant: &TenantName) -> Vec<u8> {
        format!(",\"tenant\":\"{tenant}\"}}").into_bytes()
    }

    /// Checks one stored row. The body is not parsed: the signed tree covers its bytes, so a
    /// body that hashes into the tree is the body that was appended; what is left to check is
    /// that the row belongs to this tenant's log, a suffix comparison.
    pub fn of_row(seq: u64, stored: Hash, body: &[u8], tenant_suffix: &[u8]) -> Self {
        Self {
            seq,
            stored,
            recomputed: bitacora_core::canonical::leaf_hash(body),
            in_tenant: body.ends_with(tenant_suffix),
            index: None,
            purged: false,
        }
    }

    /// A purged event: its leaf hash is all that is left to put in the tree.
    pub fn purged(seq: u64, stored: Hash) -> Self {
        Self {
            seq,
            stored,
            recomputed: stored,
            in_tenant: true,
            index: None,
            purged: true,
        }
    }
}

/// One retention purge of a tenant's log (CONTRACT §9), kept forever. It is identified by
/// the `seq` of its own `bitacora.retention.purge` event, appended to the same log before the
/// content goes, which carries the same ranges, count and root: the signed log vouches for
/// every purge, so a row deleted behind the server's back cannot pass for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRecord {
    /// The `seq` of the `bitacora.retention.purge` event that announced it.
    pub event_seq: u64,
    /// The purged seqs, as inclusive ranges in ascending order.
    pub ranges: Vec<(u64, u64)>,
    pub count: u64,
    /// The RFC 6962 root over the purged leaf hashes, in `seq` order.
    pub root: Hash,
    /// Where the purged events were archived (an object URL).
    pub archive: String,
    pub created_at: Timestamp,
}

impl PurgeRecord {
    /// Every purged seq, in order.
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| a..=b)
    }

    /// The ranges as stored: `"3-7,9-9"`.
    pub fn ranges_text(&self) -> String {
        self.ranges
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses [`PurgeRecord::ranges_text`].
    pub fn parse_ranges(text: &str) -> StoreResult<Vec<(u64, u64)>> {
        text.split(',')
            .filter(|r| !r.is_empty())
            .map(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                match (a.parse::<u64>(), b.parse::<u64>()) {
                    (Ok(a), Ok(b)) if a <= b => Ok((a, b)),
                    _ => Err(StoreError::Corrupt(format!("bad purge range `{r}`"))),
                }
            })
            .collect()
    }

    /// Inclusive ranges covering sorted, distinct seqs.
    pub fn ranges_of(seqs: &[u64]) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &s in seqs {
            match out.last_mut() {
                Some((_, b)) if *b + 1 == s => *b = s,
                _ => out.push((s, s)),
            }
        }
        out
    }
}

/// A store partition holding every event received in one span of time (PostgreSQL: a month
/// of `events`), as retention sees it: what it holds, summarized by what the retention rules
/// look at, so the lifecycle crate can tell whether all of it has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSummary {
    /// The partition's name (`events_2026_01`).
    pub name: String,
    /// It holds the events with `from <= received_at < to` (microseconds since the epoch).
    pub from: Timestamp,
    pub to: Timestamp,
    /// Per tenant, category and action: how many events, and the newest `received_at`.
    pub groups: Vec<PartitionGroup>,
    /// Per tenant: the seqs it holds lie in `first_seq..=last_seq`; `count` of them.
    pub tenants: Vec<PartitionTenant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionGroup {
    pub tenant: TenantName,
    pub category: String,
    pub action: String,
    pub count: u64,
    pub newest_received_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTenant {
    pub tenant: TenantName,
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u64,
}

/// A legal hold (CONTRACT §9): the events of `tenant` matching `filter` are never purged
/// while it is in force (`released_at` is `None`). Released holds are kept, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHoldRecord {
    pub id: String,
    pub tenant: TenantName,
    pub name: String,
    pub reason: String,
    /// The search filters of CONTRACT §3, as a JSON object of parameter → value.
    pub filter: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub released_at: Option<Timestamp>,
    pub released_by: Option<String>,
}

/// A signed checkpoint of a tenant's log, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The tree size it commits to.
    pub size: u64,
    pub root: Hash,
    /// The C2SP signed note (checkpoint body and signature lines).
    pub note: String,
    pub created_at: Timestamp,
}

/// A witness's cosignature of one of a tenant's checkpoints, as stored (CONTRACT §11). The
/// caller verified it against the witness's key before storing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCosignature {
    /// The tree size of the checkpoint it cosigns (a log signs each size at most once).
    pub size: u64,
    /// The witness's key name and key id, as in the signature line.
    pub witness: String,
    pub key_id: u32,
    /// The `cosignature/v1` timestamp (seconds since the Unix epoch, the witness's clock).
    pub time: u64,
    /// The signature line, `— <name> <base64>`, without its newline.
    pub line: String,
    /// When this server received it.
    pub received_at: Timestamp,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// A stored API key. The secret itself is never stored, only `secret_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// The tenant the key is pinned to, if any.
    pub tenant: Option<TenantName>,
    pub secret_hash: Hash,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked: bool,
}

/// A stored viewer token: read-only, pinned to one tenant, valid until `expires_at`. The
/// secret itself is never stored, only `secret_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerTokenRecord {
    pub id: String,
    pub tenant: TenantName,
    pub secret_hash: Hash,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Who issued it (an API key id, or a JWT subject).
    pub created_by: String,
    pub revoked: bool,
}

/// A delivery destination (CONTRACT §10), as stored. The store keeps its settings as opaque
/// JSON: `bitacora-delivery` owns their shape, so a new kind needs no migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRecord {
    pub id: String,
    pub name: String,
    /// The one tenant it serves; `None`: every tenant.
    pub tenant: Option<TenantName>,
    /// Kind, URL, format, filter, `stream`, signing secrets: JSON written by `bitacora-delivery`.
    pub spec: String,
    pub created_at: Timestamp,
    /// Why deliveries stopped (a receiver answered `410 Gone`), if they did.
    pub disabled: Option<String>,
}

/// An alert rule (CONTRACT §10), as stored; `spec` is its JSON, owned by `bitacora-delivery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRuleRecord {
    pub id: String,
    pub name: String,
    /// The one tenant it watches; `None`: every tenant.
    pub tenant: Option<TenantName>,
    pub spec: String,
    pub created_at: Timestamp,
}

/// Where a destination stands in one tenant's log: every event before `next_seq` was accepted
/// by the receiver (or did not match its filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPosition {
    pub destination_id: String,
    pub tenant: TenantName,
    pub next_seq: u64,
    pub last_success_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
}

/// A whole-partition drop in progress ([`Store::begin_partition_drop`]).
#[async_trait]
pub trait PartitionDrop: Send {
    /// More of the partition's purge records, announced: the store may check and copy the
    /// leaf hashes they cover now, in steps of their own (a copy counts for nothing until
    /// its purge is recorded by [`PartitionDrop::finish`]). Refused when a record is not
    /// the record of the partition's events it names (count, root) or overlaps one before.
    async fn stage(&mut self, records: &[(TenantName, PurgeRecord)]) -> StoreResult<()>;

    /// Drops the partition, which every record staged must together cover exactly: the
    /// records stored, the summaries' share taken out and the partition dropped in one
    /// transaction, or nothing purged.
    async fn finish(self: Box<Self>) -> StoreResult<()>;
}

/// The persistence every bitacora server needs. Implementations must be safe to share
/// between tasks; writes go through one sequencer per tenant so `seq` has no gaps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends events in order and returns one outcome each, in order, only once they are
    /// durable. Events of one call are committed together (possibly with other calls').
    async fn append(&self, events: Vec<SealedEvent>) -> StoreResult<Vec<AppendOutcome>>;

    /// The event with this client id in this tenant.
    async fn event_by_id(&self, tenant: &TenantName, id: &str) -> StoreResult<Option<StoredEvent>>;

    /// The event at this position of the tenant's log.
    async fn event_by_seq(&self, tenant: &TenantName, seq: u64)
    -> StoreResult<Option<StoredEvent>>;

    /// One page of matching events. Full-text matching may trail appends by up to a second.
    async fn search(&self, query: &EventQuery) -> StoreResult<SearchResult>;

    /// The distinct actions with their category and count, most frequent first.
    async fn actions(&self, tenant: &TenantName) -> StoreResult<Vec<ActionSummary>>;

    /// The distinct actors (by `actor.id`) with count and last seen, most recent first.
    async fn actors(&self, tenant: &TenantName, limit: u32) -> StoreResult<Vec<ActorSummary>>;

    /// Activity counts for `since <= occurred_at < until`.
    async fn stats(
        &self,
        tenant: &TenantName,
        since: Timestamp,
        until: Timestamp,
        top: u32,
    ) -> StoreResult<Stats>;

    /// The number of events in the tenant's log (its next `seq`).
    async fn log_size(&self, tenant: &TenantName) -> StoreResult<u64>;

    /// Hashes of complete subtrees of the tenant's Merkle tree (RFC 6962), in the order
    /// asked. Each node must be complete within the current log (`Corrupt` otherwise).
    async fn tree_nodes(&self, tenant: &TenantName, nodes: &[NodeId]) -> StoreResult<Vec<Hash>>;

    /// The hashes of `count` consecutive complete nodes at `level`, from node `first`: what a
    /// C2SP tlog-tiles hash tile lists (256 nodes at level 8·L; fewer for a partial tile).
    /// Equal to [`Store::tree_nodes`] on those ids, which is the default; a store overrides
    /// it to read a run of nodes together (the embedded store keeps every full level-0 tile
    /// as one row).
    async fn level_nodes(
        &self,
        tenant: &TenantName,
        level: u8,
        first: u64,
        count: u64,
    ) -> StoreResult<Vec<Hash>> {
        let ids: Vec<NodeId> = (first..first.saturating_add(count))
            .map(|i| NodeId::new(level, i))
            .collect();
        self.tree_nodes(tenant, &ids).await
    }

    /// Stores a signed checkpoint. Storing one for a size already signed is a no-op.
    async fn add_checkpoint(
        &self,
        tenant: &TenantName,
        checkpoint: &StoredCheckpoint,
    ) -> StoreResult<()>;

    /// The checkpoint with the largest tree size.
    async fn latest_checkpoint(&self, tenant: &TenantName)
    -> StoreResult<Option<StoredCheckpoint>>;

    /// Checkpoints with `size > after_size`, smallest first, at most `limit`.
    async fn checkpoints(
        &self,
        tenant: &TenantName,
        after_size: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredCheckpoint>>;

    /// Stores a witness's cosignature of the tenant's checkpoint of `cosignature.size`.
    /// Storing one the same witness key already gave for that size is a no-op (the first
    /// is kept).
    async fn add_cosignature(
        &self,
        tenant: &TenantName,
        cosignature: &StoredCosignature,
    ) -> StoreResult<()>;

    /// The cosignatures of the tenant's checkpoint of `size`, by witness name and key id.
    async fn cosignatures(
        &self,
        tenant: &TenantName,
        size: u64,
    ) -> StoreResult<Vec<StoredCosignature>>;

    /// The origin line recorded for the tenant's log ([`Store::fix_log_origin`]), if any.
    async fn log_origin(&self, tenant: &TenantName) -> StoreResult<Option<String>>;

    /// Records `origin` as the tenant's log origin unless one is recorded already, and
    /// returns the recorded one (so two servers racing to sign a log's first checkpoint agree).
    async fn fix_log_origin(&self, tenant: &TenantName, origin: &str) -> StoreResult<String>;

    /// Each witness key's cosignature of the tenant's largest checkpoint it cosigned, by
    /// witness name and key id.
    async fn latest_cosignatures(&self, tenant: &TenantName)
    -> StoreResult<Vec<StoredCosignature>>;
    /// Events `from..` of the tenant's log in `seq` order, at most `limit`, each checked as
    /// [`LeafCheck::of_row`] does: every row in the tenant's range is returned, including rows
    /// past the log's recorded size (which a walk must report as inserted).
    ///
    /// The default reads through [`Store::search`]; a store can stream its rows instead.
    async fn check_leaves(
        &self,
        tenant: &TenantName,
        from: u64,
        limit: u32,
    ) -> StoreResult<Vec<LeafCheck>> {
        use bitacora_core::query::{EventFilter, Order, Pagination};
        let page = self
            .search(&EventQuery {
                tenant: tenant.clone(),
                filter: EventFilter::default(),
                order: Order::Asc,
                page: Pagination::Cursor {
                    limit,
                    after: from.checked_sub(1),
                },
            })
            .await?;
        let suffix = LeafCheck::tenant_suffix(tenant);
        Ok(page
            .events
            .iter()
            .map(|e| LeafCheck::of_row(e.seq, e.leaf_hash, e.body.as_bytes(), &suffix))
            .collect())
    }

    /// Compares the tenant's summaries (`action_counts`, `actor_stats`: what `/v1/actions`
    /// and `/v1/actors` read) with the events they summarize, in one snapshot, and returns
    /// the first that disagrees. Meant to run after a walk whose [`Store::check_leaves`]
    /// checked every row's columns against its body, so that summing columns is summing
    /// bodies. The default checks nothing.
    async fn check_summaries(
        &self,
        tenant: &TenantName,
    ) -> StoreResult<Option<check::SummaryMismatch>> {
        let _ = tenant;
        Ok(None)
    }

    /// Every tenant that has a log.
    async fn tenants(&self) -> StoreResult<Vec<TenantName>>;

    /// Installs the key this process seals its commits with (`bitacora_core::seal`), or
    /// removes it. From then on, every commit that appends to a tenant also upserts that
    /// tenant's [`CommitSeal`] in the same transaction. The key is never stored. A store
    /// without a key writes no seals (the default: stores that cannot seal ignore it).
    fn set_commit_key(&self, _key: Option<CommitKey>) {}

    /// The key installed with [`Store::set_commit_key`], if any. When there is one, the
    /// checkpointer signs only what a seal explains.
    fn commit_key(&self) -> Option<CommitKey> {
        None
    }

    /// The tenant's commit seal, if one was ever written.
    async fn commit_seal(&self, _tenant: &TenantName) -> StoreResult<Option<CommitSeal>> {
        Ok(None)
    }

    /// Replaces the tenant's commit seal with `seal`, only if the log still has exactly
    /// `seal.size` events (false otherwise, and nothing is written). This is how an operator
    /// vouches for a tail no seal explains, after investigating it (`bitacora verify
    /// --accept-tail`); writers never call it.
    async fn replace_commit_seal(
        &self,
        _tenant: &TenantName,
        _seal: &CommitSeal,
    ) -> StoreResult<bool> {
        Err(StoreError::Internal(
            "this store keeps no commit seals".into(),
        ))
    }

    /// Removes the content of the events `record` lists (their rows, search and full-text
    /// index entries, and their share of every summary), keeps each one's `seq` and leaf hash
    /// (so every node, checkpoint and proof stays valid), and stores `record`: all in one
    /// transaction. Refused, with nothing changed, when a listed event has no content
    /// (already purged, or not in the log) or when the count or the root over their leaf
    /// hashes is not the record's.
    async fn purge(&self, tenant: &TenantName, record: &PurgeRecord) -> StoreResult<()>;

    /// Several purges of one tenant, as [`Store::purge`] does each, in order. A store that can
    /// overrides this to run them in one transaction (all or none), which costs less than one
    /// transaction each (the embedded store); the default runs one transaction per record, so
    /// a failure leaves the records before it purged and none after.
    async fn purge_many(&self, tenant: &TenantName, records: &[PurgeRecord]) -> StoreResult<()> {
        for record in records {
            self.purge(tenant, record).await?;
        }
        Ok(())
    }

    /// The tenant's purges, oldest first.
    async fn purges(&self, tenant: &TenantName) -> StoreResult<Vec<PurgeRecord>>;

    /// The partitions holding only events received before `before` (none for a store without
    /// partitions), oldest first, each summarized ([`PartitionSummary`]); empty ones are left
    /// out.
    async fn expired_partitions(&self, _before: Timestamp) -> StoreResult<Vec<PartitionSummary>> {
        Ok(Vec::new())
    }

    /// Purges a whole partition at once: every event it holds is covered by exactly one of
    /// `records` (each a purge of one tenant, announced and archived like any other), their
    /// leaf hashes are kept and the records stored as [`Store::purge`] does, the summaries
    /// lose their share, and the partition is detached and dropped. The leaf hashes may be
    /// copied beforehand, in steps of their own; the records, the summaries and the drop
    /// are one transaction, so the events are purged all at once or not at all. Refused,
    /// with nothing purged, when the partition holds an event no record covers or a record
    /// names an event it does not hold (or a root that is not theirs).
    ///
    /// All records at once: [`Store::begin_partition_drop`], one
    /// [`PartitionDrop::stage`] and [`PartitionDrop::finish`].
    async fn drop_partition(
        &self,
        name: &str,
        records: &[(TenantName, PurgeRecord)],
    ) -> StoreResult<()> {
        let mut dropping = self.begin_partition_drop(name).await?;
        dropping.stage(records).await?;
        dropping.finish().await
    }

    /// Starts [`Store::drop_partition`] of the partition `name` with no records yet: the
    /// caller hands them over as they are announced ([`PartitionDrop::stage`]), so that the
    /// store's work that grows with the partition runs while the rest is still being
    /// archived, and then drops it ([`PartitionDrop::finish`]). Dropping the handle without
    /// finishing drops nothing.
    async fn begin_partition_drop(&self, _name: &str) -> StoreResult<Box<dyn PartitionDrop>> {
        Err(StoreError::Internal(
            "this store has no partitions to drop".into(),
        ))
    }

    /// The `(seq, leaf_hash)` of the events the purge announced at `event_seq` removed, in
    /// `seq` order, as stored.
    async fn purged_leaves(
        &self,
        tenant: &TenantName,
        event_seq: u64,
    ) -> StoreResult<Vec<(u64, Hash)>>;

    /// The `(seq, leaf_hash)` of the purged event with this client id, if one was purged.
    async fn purged_event(&self, tenant: &TenantName, id: &str)
    -> StoreResult<Option<(u64, Hash)>>;

    /// Stores a new legal hold.
    async fn insert_legal_hold(&self, hold: &LegalHoldRecord) -> StoreResult<()>;

    /// Legal holds of one tenant or all, oldest first; released ones too when asked.
    async fn legal_holds(
        &self,
        tenant: Option<&TenantName>,
        include_released: bool,
    ) -> StoreResult<Vec<LegalHoldRecord>>;

    /// Releases a hold in force, only if it belongs to `tenant` when one is given; `None`
    /// when there is no such hold in force, else its record as released.
    async fn release_legal_hold(
        &self,
        id: &str,
        tenant: Option<&TenantName>,
        at: Timestamp,
        by: &str,
    ) -> StoreResult<Option<LegalHoldRecord>>;

    /// When a retention rule set (named by its fingerprint) was first seen by any server
    /// sharing this store, recording `now` if never. A changed rule set purges only
    /// `retention.min_delay` after it was first seen.
    async fn rules_first_seen(&self, fingerprint: &str, now: Timestamp) -> StoreResult<Timestamp>;

    /// Succeeds when the store can serve requests (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Stops taking writes, commits what is queued, and releases the store.
    async fn close(&self) -> StoreResult<()>;

    /// Stores a new API key.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;

    /// The key whose secret hashes to `secret_hash`, revoked or not.
    async fn api_key_by_hash(&self, secret_hash: &Hash) -> StoreResult<Option<ApiKeyRecord>>;

    /// Every key, oldest first.
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;

    /// Revokes a key; false when there is no such key.
    async fn revoke_api_key(&self, id: &str) -> StoreResult<bool>;

    /// Records when keys were last used (batched by the caller; not one write per request).
    async fn touch_api_keys(&self, used: &[(String, Timestamp)]) -> StoreResult<()>;

    /// Stores a new viewer token.
    async fn insert_viewer_token(&self, token: &ViewerTokenRecord) -> StoreResult<()>;

    /// The viewer token whose secret hashes to `secret_hash`, revoked or expired or not.
    async fn viewer_token_by_hash(
        &self,
        secret_hash: &Hash,
    ) -> StoreResult<Option<ViewerTokenRecord>>;

    /// Viewer tokens that expire after `expiring_after` (µs), of one tenant or all, newest
    /// first.
    async fn viewer_tokens(
        &self,
        tenant: Option<&TenantName>,
        expiring_after: Timestamp,
    ) -> StoreResult<Vec<ViewerTokenRecord>>;

    /// Revokes a viewer token, only if it belongs to `tenant` when one is given; `None` when
    /// there is no such token (in that tenant), else its record as it was before.
    async fn revoke_viewer_token(
        &self,
        id: &str,
        tenant: Option<&TenantName>,
    ) -> StoreResult<Option<ViewerTokenRecord>>;
    // --- Delivery (CONTRACT §10): destinations, stream positions, alert rules, leases. ---

    /// Stores a new destination.
    async fn insert_destination(&self, destination: &DestinationRecord) -> StoreResult<()>;

    /// Every destination, oldest first.
    async fn destinations(&self) -> StoreResult<Vec<DestinationRecord>>;

    /// Deletes a destination and its positions; false when there is no such destination.
    async fn delete_destination(&self, id: &str) -> StoreResult<bool>;

    /// Marks a destination disabled with `reason`; false when there is no such destination.
    async fn disable_destination(&self, id: &str, reason: &str) -> StoreResult<bool>;

    /// Replaces a destination's settings (a webhook's secrets being rotated); false when there
    /// is no such destination.
    async fn update_destination_spec(&self, id: &str, spec: &str) -> StoreResult<bool>;

    /// The destination's position in each tenant it has delivered to (or tried to).
    async fn delivery_positions(&self, destination_id: &str) -> StoreResult<Vec<DeliveryPosition>>;

    /// Upserts a position. `next_seq` never moves backwards: the larger of the stored and the
    /// given one is kept, so a late writer cannot make a stream re-send or skip.
    async fn save_delivery_position(&self, position: &DeliveryPosition) -> StoreResult<()>;

    /// Stores a new alert rule.
    async fn insert_alert_rule(&self, rule: &AlertRuleRecord) -> StoreResult<()>;

    /// Every alert rule, oldest first.
    async fn alert_rules(&self) -> StoreResult<Vec<AlertRuleRecord>>;

    /// Deletes a rule and its evaluation state; false when there is no such rule.
    async fn delete_alert_rule(&self, id: &str) -> StoreResult<bool>;

    /// Replaces a rule's settings (disabled, enabled again); false when there is no such rule.
    async fn update_alert_rule_spec(&self, id: &str, spec: &str) -> StoreResult<bool>;

    /// The rule's evaluation state in one tenant (JSON owned by `bitacora-delivery`).
    async fn alert_state(&self, rule_id: &str, tenant: &TenantName) -> StoreResult<Option<String>>;

    /// Replaces the rule's evaluation state in one tenant.
    async fn save_alert_state(
        &self,
        rule_id: &str,
        tenant: &TenantName,
        state: &str,
    ) -> StoreResult<()>;

    /// Replaces the states of several rules in one tenant, `(rule_id, state)` each, together
    /// (one transaction where the store has them: the evaluator saves every rule after each
    /// batch). The default saves them one by one.
    async fn save_alert_states(
        &self,
        tenant: &TenantName,
        states: &[(String, String)],
    ) -> StoreResult<()> {
        for (rule_id, state) in states {
            self.save_alert_state(rule_id, tenant, state).await?;
        }
        Ok(())
    }

    /// Takes or renews the lease `name` for `holder` until `now + ttl_micros`: true when
    /// `holder` has it (it was free, expired, or already held by `holder`), false when another
    /// holder's lease is still running. With several servers on one store, exactly one holds
    /// a destination's lease, and another takes over once a dead holder's lease runs out.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl_micros: i64,
    ) -> StoreResult<bool>;
}
