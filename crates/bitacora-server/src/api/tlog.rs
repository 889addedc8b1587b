//! The log on the transparency-log standards (CONTRACT §11): each tenant's log as a C2SP
//! `tlog-tiles` log under `/logs/<tenant>/`, and `GET /v1/events/{id}/proof`, one event's
//! C2SP `tlog-proof@v1`. The formats are `bitacora_core::tlog`; this module only serves them.
//!
//! - `checkpoint`: the latest signed note, `Cache-Control: no-store` (kept in memory for
//!   200 ms, [`NOTE_TTL`]).
//! - `tile/<L>/<N>[.p/<W>]`: the complete tree nodes the store already keeps, read as one run
//!   ([`Store::level_nodes`](bitacora_store::Store::level_nodes): the embedded store keeps
//!   each full level-0 tile as one row, and a full higher tile is 16 consecutive stored
//!   16-wide tiles), never rehashed from events. A tile is served once the latest
//!   checkpoint's tree contains all of it, so
//!   every tile served belongs to a signed tree, and is immutable from then on: full tiles
//!   are kept in an in-memory LRU ([`TileCache`]) and every tile is sent with a year-long
//!   `immutable` cache lifetime.
//! - `tile/entries/<N>[.p/<W>]`: the events' canonical bytes, each prefixed with its length.
//!
//! Access: the tenant's `read` credential (a pinned one only for its tenant). With
//! `integrity.public_tiles`, the checkpoint and hash tiles need none (for monitors and
//! witnesses); entry bundles never become public. These routes are not in the OpenAPI
//! document: their shape is the C2SP spec's, documented in `docs/TRANSPARENCY.md`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use bitacora_core::api::ErrorBody;
use bitacora_core::canonical::Hash;
use bitacora_core::query::{EventFilter, EventQuery, Order, Pagination};
use bitacora_core::tlog::{TILE_WIDTH, TileKind, TilePath, TlogProof};
use bitacora_core::{FieldError, TenantName};
use bitacora_store::Scope;
use lru::LruCache;

use super::log::TenantParam;
use super::{check_params, param, query_pairs};
use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::state::AppState;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const OCTET_STREAM: &str = "application/octet-stream";
const IMMUTABLE_PUBLIC: &str = "public, max-age=31536000, immutable";
/// Behind a credential, only the client itself may keep a copy: a shared cache would hand
/// it to anyone.
const IMMUTABLE_PRIVATE: &str = "private, max-age=31536000, immutable";

/// A full hash tile's `(tenant, tile level, index)`.
type TileKey = (TenantName, u8, u64);

/// How long a tenant's latest checkpoint note is served from memory before the store is asked
/// again. The checkpointer signs at most once per `integrity.checkpoint_interval_ms` (1 s by
/// default), and tlog-tiles only asks that a checkpoint not be cached beyond a few seconds; this
/// spares the store (and a hop to its reader threads) on every monitor's poll.
const NOTE_TTL: Duration = Duration::from_millis(200);

/// Full hash tiles by `(tenant, tile level, index)`. A full tile never changes once the tree
/// holds it, so entries are never invalidated, only evicted. Also each tenant's latest
/// checkpoint note, for [`NOTE_TTL`] (only tenants that have one: the map cannot be grown by
/// asking for made-up tenants).
pub struct TileCache {
    tiles: Option<Mutex<LruCache<TileKey, Bytes>>>,
    notes: Mutex<HashMap<TenantName, (Instant, Bytes)>>,
    /// The largest tree size each tenant's store had signed when last asked. A signed size
    /// never shrinks, so a resource it covers stays covered: a tile request asks the store
    /// (one more hop to its reader threads) only when this is too small.
    signed: Mutex<HashMap<TenantName, u64>>,
}

impl TileCache {
    /// A cache of at most `capacity` tiles (8 KiB each); 0 caches nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            tiles: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
            notes: Mutex::new(HashMap::new()),
            signed: Mutex::new(HashMap::new()),
        }
    }

    fn signed(&self, tenant: &TenantName) -> u64 {
        let signed = self.signed.lock().unwrap_or_else(|p| p.into_inner());
        signed.get(tenant).copied().unwrap_or(0)
    }

    /// Records a size the store has signed (only for tenants that have a checkpoint).
    fn put_signed(&self, tenant: &TenantName, size: u64) {
        if size == 0 {
            return;
        }
        let mut signed = self.signed.lock().unwrap_or_else(|p| p.into_inner());
        match signed.get_mut(tenant) {
            Some(known) => *known = (*known).max(size),
            None => {
                signed.insert(tenant.clone(), size);
            }
        }
    }

    fn note(&self, tenant: &TenantName) -> Option<Bytes> {
        let notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        notes
            .get(tenant)
            .filter(|(at, _)| at.elapsed() < NOTE_TTL)
            .map(|(_, note)| note.clone())
    }

    fn put_note(&self, tenant: TenantName, note: Bytes) {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, (Instant::now(), note));
    }

    fn get(&self, key: &TileKey) -> Option<Bytes> {
        let mut tiles = self
            .tiles
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        tiles.get(key).cloned()
    }

    fn put(&self, key: TileKey, tile: Bytes) {
        if let Some(tiles) = &self.tiles {
            tiles
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(key, tile);
        }
    }
}

/// The `/logs/` routes, each behind the `read` credential unless `integrity.public_tiles`
/// opens the checkpoint and the hash tiles.
pub fn router(state: &AppState) -> Router<AppState> {
    let read = from_fn_with_state((state.clone(), Scope::Read), auth::authenticate);
    let entries = Router::new()
        .route("/logs/{tenant}/tile/entries/{*index}", get(entry_bundle))
        .route_layer(read.clone());
    let mut open = Router::new()
        .route("/logs/{tenant}/checkpoint", get(checkpoint))
        .route("/logs/{tenant}/tile/{level}/{*index}", get(hash_tile));
    if !state.config.integrity.public_tiles {
        open = open.route_layer(read);
    }
    entries.merge(open)
}

/// The tenant named in the path, if the caller may read it: any valid tenant for a public
/// resource (no credential was asked), else only what the credential may see.
fn tenant_for(request: &Request, raw: &str) -> Result<TenantName, ApiError> {
    match request.extensions().get::<Principal>() {
        Some(principal) => principal.resolve_tenant(Some(raw)),
        None => {
            TenantName::parse(raw).map_err(|m| FieldError::new("invalid_query", "tenant", m).into())
        }
    }
}

fn with_headers(
    body: impl Into<axum::body::Body>,
    content_type: &'static str,
    cache: &'static str,
) -> Response {
    let mut r = (StatusCode::OK, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn no_such_tile(path: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::NotFound(format!("no tile `{path}`: {why}"))
}

/// The size of the latest signed tree (0 when none is signed yet).
async fn signed_size(state: &AppState, tenant: &TenantName) -> Result<u64, ApiError> {
    Ok(state
        .store
        .latest_checkpoint(tenant)
        .await?
        .map_or(0, |cp| cp.size))
}

/// Refuses a resource the latest checkpoint does not cover yet (or never can), asking the
/// store only when the signed size last seen does not cover it.
async fn ensure_covered(
    state: &AppState,
    tenant: &TenantName,
    tile: &TilePath,
    path: &str,
) -> Result<(), ApiError> {
    if tile
        .tree_size_needed()
        .is_some_and(|needed| needed <= state.tiles.signed(tenant))
    {
        return Ok(());
    }
    let size = signed_size(state, tenant).await?;
    state.tiles.put_signed(tenant, size);
    covered(tile, path, size)
}

/// Refuses a resource a signed tree of `size` does not cover (or never can).
fn covered(tile: &TilePath, path: &str, size: u64) -> Result<(), ApiError> {
    match tile.tree_size_needed() {
        Some(needed) if needed <= size => Ok(()),
        Some(needed) => Err(no_such_tile(
            path,
            format!("it needs a signed tree of {needed} entries; the latest checkpoint has {size}"),
        )),
        None => Err(no_such_tile(path, "no tree can be that big")),
    }
}

/// `GET /logs/{tenant}/checkpoint`: the latest signed note.
async fn checkpoint(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let tenant = tenant_for(&request, &tenant)?;
    if let Some(note) = state.tiles.note(&tenant) {
        return Ok(with_headers(note, TEXT_PLAIN, "no-store"));
    }
    match state.store.latest_checkpoint(&tenant).await? {
        Some(cp) => {
            state.tiles.put_signed(&tenant, cp.size);
            let note = crate::integrity::cosigned_note(&*state.store, &tenant, &cp).await?;
            let note = Bytes::from(note);
            state.tiles.put_note(tenant, note.clone());
            Ok(with_headers(note, TEXT_PLAIN, "no-store"))
        }
        None => Err(ApiError::NoCheckpoint(format!(
            "the log of tenant `{tenant}` has no signed checkpoint yet"
        ))),
    }
}

/// `GET /logs/{tenant}/tile/{level}/{index}`: a hash tile.
async fn hash_tile(
    State(state): State<AppState>,
    Path((tenant, level, index)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let tenant = tenant_for(&request, &tenant)?;
    let path = format!("tile/{level}/{index}");
    let tile = TilePath::parse(&path).map_err(|e| no_such_tile(&path, e))?;
    let TileKind::Hashes { level } = tile.kind else {
        return Err(no_such_tile(&path, "not a hash tile"));
    };
    let cache_control = if request.extensions().get::<Principal>().is_some() {
        IMMUTABLE_PRIVATE
    } else {
        IMMUTABLE_PUBLIC
    };
    let key = (tenant.clone(), level, tile.index);
    if tile.is_full()
        && let Some(bytes) = state.tiles.get(&key)
    {
        metrics::counter!(TILES_SERVED, "kind" => "hashes", "cache" => "hit").increment(1);
        return Ok(with_headers(bytes, OCTET_STREAM, cache_control));
    }
    ensure_covered(&state, &tenant, &tile, &path).await?;
    let (tree_level, first) = u8::try_from(tile.tree_level())
        .ok()
        .zip(tile.index.checked_mul(u64::from(TILE_WIDTH)))
        .ok_or_else(|| no_such_tile(&path, "no tree can be that big"))?;
    let hashes: Vec<Hash> = state
        .store
        .level_nodes(&tenant, tree_level, first, u64::from(tile.width))
        .await?;
    let bytes = Bytes::from(hashes.concat());
    if tile.is_full() {
        state.tiles.put(key, bytes.clone());
    }
    metrics::counter!(TILES_SERVED, "kind" => "hashes", "cache" => "miss").increment(1);
    Ok(with_headers(bytes, OCTET_STREAM, cache_control))
}

/// `GET /logs/{tenant}/tile/entries/{index}`: an entry bundle.
async fn entry_bundle(
    State(state): State<AppState>,
    Path((tenant, index)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let tenant = tenant_for(&request, &tenant)?;
    let path = format!("tile/entries/{index}");
    let tile = TilePath::parse(&path).map_err(|e| no_such_tile(&path, e))?;
    ensure_covered(&state, &tenant, &tile, &path).await?;
    let (begin, end) = tile
        .entry_range()
        .ok_or_else(|| no_such_tile(&path, "no tree can be that big"))?;
    let page = state
        .store
        .search(&EventQuery {
            tenant: tenant.clone(),
            filter: EventFilter::default(),
            order: Order::Asc,
            page: Pagination::Cursor {
                limit: u32::from(tile.width),
                after: begin.checked_sub(1),
            },
        })
        .await?;
    let mut out = Vec::with_capacity(page.events.iter().map(|e| e.body.len() + 2).sum());
    let mut expected = begin;
    for event in page.events.iter().take_while(|e| e.seq < end) {
        if event.seq != expected {
            return Err(missing_entries(&state, &tenant, &path, expected).await);
        }
        bitacora_core::tlog::write_entry(&mut out, event.body.as_bytes()).map_err(|e| {
            ApiError::internal(format!(
                "entry bundle {path} of tenant {tenant}, seq {expected}: {e}"
            ))
        })?;
        expected += 1;
    }
    if expected != end {
        return Err(missing_entries(&state, &tenant, &path, expected).await);
    }
    metrics::counter!(TILES_SERVED, "kind" => "entries", "cache" => "miss").increment(1);
    Ok(with_headers(out, OCTET_STREAM, IMMUTABLE_PRIVATE))
}

/// Why an entry bundle lacks the event at `seq`. An event purged by retention (archived
/// first, its leaf hash kept) makes the bundle pruned, which tlog-tiles allows a log to do:
/// 404, and the hash tiles still prove everything. Anything else is a store that lost an event.
async fn missing_entries(state: &AppState, tenant: &TenantName, path: &str, seq: u64) -> ApiError {
    match state.store.purges(tenant).await {
        Ok(purges)
            if purges
                .iter()
                .any(|p| p.ranges.iter().any(|&(a, b)| (a..=b).contains(&seq))) =>
        {
            no_such_tile(
                path,
                format_args!(
                    "pruned: event {seq} was purged by retention (archived first); the hash \
                     tiles still cover it"
                ),
            )
        }
        Ok(_) => ApiError::internal(format!(
            "entry bundle {path} of tenant {tenant}: event {seq} is missing from the store"
        )),
        Err(e) => e.into(),
    }
}

/// Tiles and entry bundles served, by `kind` and whether the in-memory cache answered.
pub const TILES_SERVED: &str = "bitacora_tlog_tiles_served_total";

/// One event's C2SP `tlog-proof@v1`.
///
/// The event's index, its RFC 6962 inclusion proof and, after an empty line, a signed
/// checkpoint with its witness cosignatures: the newest one witnesses cosigned that covers
/// the event, else the latest. Anyone holding the event's canonical bytes (the event as
/// `GET /v1/events/{id}` returns it, minus `seq` and `leaf_hash`, in RFC 8785 form) and the
/// log's verifier key can check it offline with any implementation of the spec, or with
/// `bitacora verify-proof`. `404 no_checkpoint` while the event is newer than the latest
/// checkpoint (the server signs within about a second).
#[utoipa::path(
    get,
    path = "/v1/events/{id}/proof",
    tag = "integrity",
    params(("id" = String, Path, description = "The event's id"), TenantParam),
    responses(
        (status = 200, description = "The tlog-proof", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 400, description = "Unknown parameter or invalid tenant", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Key lacks the `read` scope, or is pinned to another tenant", body = ErrorBody),
        (status = 404, description = "No event with this id in this tenant (`not_found`), or not signed yet (`no_checkpoint`)", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn event_proof(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    check_params(&pairs, &["tenant"])?;
    let tenant = principal.resolve_tenant(param(&pairs, "tenant"))?;
    let Some(event) = state.store.event_by_id(&tenant, &id).await? else {
        return Err(ApiError::NotFound(format!(
            "no event with id `{id}` in tenant `{tenant}`"
        )));
    };
    let cp = match cosigned_checkpoint(&state, &tenant, event.seq).await? {
        Some(cp) => Some(cp),
        None => state.store.latest_checkpoint(&tenant).await?,
    };
    let Some(cp) = cp.filter(|cp| cp.size > event.seq) else {
        return Err(ApiError::NoCheckpoint(format!(
            "event `{id}` (seq {}) is not covered by a signed checkpoint yet; retry in a second",
            event.seq
        )));
    };
    let proof = bitacora_log::inclusion_proof(&*state.store, &tenant, event.seq, cp.size).await?;
    let checkpoint = crate::integrity::cosigned_note(&*state.store, &tenant, &cp).await?;
    let text = TlogProof {
        extra: None,
        index: event.seq,
        hashes: proof.hashes,
        checkpoint,
    }
    .to_text();
    Ok(with_headers(text, TEXT_PLAIN, "no-store"))
}

/// The newest checkpoint that witnesses cosigned and that covers `seq`, if any: a proof to it
/// can be checked against a witness policy's quorum, which one to a newer checkpoint not
/// cosigned yet cannot.
async fn cosigned_checkpoint(
    state: &AppState,
    tenant: &TenantName,
    seq: u64,
) -> Result<Option<bitacora_store::StoredCheckpoint>, ApiError> {
    let Some(size) = state
        .store
        .latest_cosignatures(tenant)
        .await?
        .iter()
        .map(|c| c.size)
        .max()
        .filter(|&size| size > seq)
    else {
        return Ok(None);
    };
    Ok(state
        .store
        .checkpoints(tenant, size - 1, 1)
        .await?
        .into_iter()
        .find(|cp| cp.size == size))
}
