//! The async Rust SDK for bitacora's HTTP API (CONTRACT §3).
//!
//! Every request and response is typed on the wire types of [`bitacora_core::api`] and on
//! [`EventInput`] / [`Event`], the same definitions the server compiles against, so a change to
//! the API that breaks this SDK breaks the build, not a customer. bitacora's own black-box tests
//! drive the server through this crate, so the SDK is exercised by every test run.
//!
//! ```no_run
//! use bitacora_client::{Client, SearchParams};
//! use bitacora_core::{Actor, EventInput, Severity};
//! use futures::TryStreamExt as _;
//!
//! # async fn demo() -> Result<(), bitacora_client::ClientError> {
//! let client = Client::new("http://127.0.0.1:8480", "bk_...")?;
//!
//! // Record who did what. Only `action` is required.
//! let ack = client
//!     .send(&EventInput {
//!         action: "user.role_change".into(),
//!         severity: Some(Severity::Critical),
//!         actor: Some(Actor {
//!             id: Some("42".into()),
//!             name: Some("admin".into()),
//!             email: None,
//!             kind: Default::default(),
//!         }),
//!         description: Some("Rol cambiado de user a admin".into()),
//!         ..Default::default()
//!     })
//!     .await?;
//! println!("stored at seq {} with leaf hash {}", ack.seq, ack.leaf_hash);
//!
//! // Search: one page, or every matching event following the cursor.
//! let params = SearchParams::new().action("user.*").min_severity("high").limit(100);
//! let page = client.search(&params).await?;
//! println!("{} events on the first page", page.events.len());
//! let all: Vec<_> = client.search_all(&params).try_collect().await?;
//! println!("{} events in total", all.len());
//! # Ok(())
//! # }
//! ```
//!
//! Errors the server sends are [`ClientError::Api`], carrying the HTTP status and the parsed
//! `{"error":{"code","message","field"}}` body; [`Client::request`] is an escape hatch that
//! returns a [`reqwest::RequestBuilder`] with authentication applied, for anything the typed
//! methods do not cover (or deliberately malformed input in tests).

#[cfg(any(feature = "tokio-postgres", feature = "sqlx"))]
pub mod capture;

use std::pin::Pin;
use std::time::Duration;

use bitacora_core::api::{
    Ack, ActionList, ActorList, BatchResponse, ErrorBody, EventPage, History, Stats,
};

use bitacora_core::{Event, EventInput, Order};
use bytes::Bytes;
use futures::{Stream, StreamExt as _, TryStreamExt as _, stream};
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use serde::de::DeserializeOwned;

pub use reqwest::{Method, StatusCode};

/// A stream of bytes of an export, in the order the server sends them.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ClientError>> + Send>>;

/// Everything that can go wrong talking to bitacora.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status and a JSON error body.
    #[error("HTTP {status}: {} ({}){}", body.error.code, body.error.message,
        body.error.field.as_deref().map(|f| format!(" [field `{f}`]")).unwrap_or_default())]
    Api { status: StatusCode, body: ErrorBody },
    /// The request did not complete: connection refused, reset, timeout, TLS.
    #[error("transport error: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered, but not with what the API promises (e.g. an error status with a
    /// body that is not a JSON error, or a success body of the wrong shape).
    #[error("cannot decode the response (HTTP {status}): {message}")]
    Decode {
        status: StatusCode,
        message: String,
        /// The start of the body, for diagnosis.
        body: String,
    },
    /// The base URL given to [`Client::new`] cannot be used.
    #[error("invalid base URL `{url}`: {message}")]
    InvalidUrl { url: String, message: String },
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } | ClientError::Decode { status, .. } => Some(*status),
            ClientError::Transport(e) => e.status(),
            ClientError::InvalidUrl { .. } => None,
        }
    }

    /// The machine-readable error code of an API error (`invalid_field`, `conflict`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.error.code),
            _ => None,
        }
    }

    /// The field or parameter an API error names, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => body.error.field.as_deref(),
            _ => None,
        }
    }
}

/// The formats of `GET /v1/export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One event (as `GET /v1/events/{id}` returns it) per line.
    Ndjson,
    /// A header line, then one flattened row per event.
    Csv,
    /// NDJSON with a signed checkpoint and inclusion proofs (CONTRACT §4).
    Bundle,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Csv => "csv",
            ExportFormat::Bundle => "bundle",
        }
    }
}

/// The filters and pagination of `GET /v1/events` and `GET /v1/export`, built fluently.
///
/// Each setter names its query parameter (CONTRACT §3); setting one twice keeps the last value.
/// List-valued filters (`action`, `category`, `severity`) take a comma-separated list.
///
/// ```
/// use bitacora_client::SearchParams;
/// let p = SearchParams::new().tenant("acme").action("user.*,ROLE_CHANGE").until("2026-01-31");
/// assert_eq!(p.get("until"), Some("2026-01-31"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchParams {
    pairs: Vec<(String, String)>,
}

macro_rules! string_params {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(self, value: impl Into<String>) -> Self {
                self.set(stringify!($name), value)
            }
        )+
    };
}

impl SearchParams {
    pub fn new() -> Self {
        Self::default()
    }

    string_params!(
        /// The tenant to search (default: the credential's tenant, else `default`).
        tenant,
        /// Comma list of actions; `user.*` matches a prefix.
        action,
        /// Comma list of categories.
        category,
        /// Comma list of severities (`low`, `medium`, `high`, `critical`).
        severity,
        /// The lowest severity to include.
        min_severity,
        /// `success` or `failure`.
        outcome,
        /// Exact `actor.id`.
        actor_id,
        /// Case-insensitive part of the actor's name or email.
        actor,
        target_type,
        target_id,
        /// An address or a CIDR block (IPv4 or IPv6).
        ip,
        /// Exact `context.source`.
        source,
        /// `occurred_at >= since`: RFC 3339 or `YYYY-MM-DD`.
        since,
        /// `occurred_at <= until`: RFC 3339 or `YYYY-MM-DD` (a bare date includes the whole day).
        until,
        /// Full-text terms over description, actor and target names, changes and metadata.
        q,
        /// The opaque `next_cursor` of the previous page.
        cursor,
    );

    /// `desc` (newest first, the default) or `asc`, by `seq`.
    pub fn order(self, order: Order) -> Self {
        self.set(
            "order",
            match order {
                Order::Desc => "desc",
                Order::Asc => "asc",
            },
        )
    }

    /// Events per page with cursor pagination (1..1000, default 50).
    pub fn limit(self, limit: u32) -> Self {
        self.set("limit", limit.to_string())
    }

    /// Numbered pagination: the 1-based page (the response then carries `total`).
    pub fn page(self, page: u32) -> Self {
        self.set("page", page.to_string())
    }

    /// Numbered pagination: events per page (1..1000).
    pub fn per_page(self, per_page: u32) -> Self {
        self.set("per_page", per_page.to_string())
    }

    /// Sets any parameter by name, known to this SDK or not (for newer servers).
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        let value = value.into();
        match self.pairs.iter_mut().find(|(k, _)| *k == name) {
            Some(pair) => pair.1 = value,
            None => self.pairs.push((name, value)),
        }
        self
    }

    /// Removes a parameter.
    pub fn unset(mut self, name: &str) -> Self {
        self.pairs.retain(|(k, _)| k != name);
        self
    }

    /// The value of a parameter, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The parameters as `name=value` pairs, in the order they were first set.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A bitacora server and the API key to use with it. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The base URL without a trailing slash, e.g. `http://127.0.0.1:8480`.
    base: String,
    api_key: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8480`) using `api_key`
    /// as the bearer credential.
    pub fn new(base_url: impl AsRef<str>, api_key: impl Into<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("bitacora-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Self::with_http_client(http, base_url, api_key)
    }

    /// Like [`Client::new`] with a preconfigured [`reqwest::Client`] (proxies, timeouts, TLS).
    pub fn with_http_client(
        http: reqwest::Client,
        base_url: impl AsRef<str>,
        api_key: impl Into<String>,
    ) -> Result<Self, ClientError> {
        let raw = base_url.as_ref();
        let url = Url::parse(raw).map_err(|e| ClientError::InvalidUrl {
            url: raw.to_owned(),
            message: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(ClientError::InvalidUrl {
                url: raw.to_owned(),
                message: "expected an http:// or https:// URL".into(),
            });
        }
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            api_key: api_key.into(),
        })
    }

    /// The same server with another credential.
    pub fn with_api_key(&self, api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            ..self.clone()
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request to `path` (e.g. `/v1/events?limit=1`) with the API key applied: the escape
    /// hatch for anything the typed methods do not cover.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_without_key(method, path)
            .bearer_auth(&self.api_key)
    }

    /// A request to `path` without any credential.
    pub fn request_without_key(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let sep = if path.starts_with('/') { "" } else { "/" };
        self.http
            .request(method, format!("{}{sep}{path}", self.base))
    }

    /// The URL of `segments` under the base, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = Url::parse(&self.base).expect("the base URL was checked in new()");
        url.path_segments_mut()
            .expect("the base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn get(&self, segments: &[&str]) -> reqwest::RequestBuilder {
        self.http.get(self.url(segments)).bearer_auth(&self.api_key)
    }

    // ---- ingest ---------------------------------------------------------------------------

    /// `POST /v1/events`: stores one event once it is durable.
    pub async fn send(&self, event: &EventInput) -> Result<Ack, ClientError> {
        let resp = self
            .http
            .post(self.url(&["v1", "events"]))
            .bearer_auth(&self.api_key)
            .json(event)
            .send()
            .await?;
        decode(resp).await
    }

    /// `POST /v1/events/batch` with a JSON array: one result per event, in order.
    pub async fn send_batch(&self, events: &[EventInput]) -> Result<BatchResponse, ClientError> {
        let resp = self
            .http
            .post(self.url(&["v1", "events", "batch"]))
            .bearer_auth(&self.api_key)
            .json(events)
            .send()
            .await?;
        decode(resp).await
    }

    /// `POST /v1/events/batch` with NDJSON (`application/x-ndjson`): one event a line.
    pub async fn send_ndjson(&self, events: &[EventInput]) -> Result<BatchResponse, ClientError> {
        let mut body = Vec::with_capacity(events.len() * 256);
        for event in events {
            serde_json::to_writer(&mut body, event).map_err(|e| ClientError::Decode {
                status: StatusCode::OK,
                message: format!("cannot serialize an event: {e}"),
                body: String::new(),
            })?;
            body.push(b'\n');
        }
        self.send_ndjson_raw(body).await
    }

    /// `POST /v1/events/batch` with an NDJSON body as given (e.g. read from a file).
    pub async fn send_ndjson_raw(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> Result<BatchResponse, ClientError> {
        let resp = self
            .http
            .post(self.url(&["v1", "events", "batch"]))
            .bearer_auth(&self.api_key)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            )
            .body(body)
            .send()
            .await?;
        decode(resp).await
    }

    // ---- read -----------------------------------------------------------------------------

    /// `GET /v1/events/{id}` in the credential's tenant, or in `tenant`.
    pub async fn event(&self, id: &str, tenant: Option<&str>) -> Result<Event, ClientError> {
        let resp = self.event_request(id, tenant).send().await?;
        decode(resp).await
    }

    /// `GET /v1/events/{id}` as the exact bytes the server sent: what an independent verifier
    /// canonicalizes and hashes.
    pub async fn event_json(&self, id: &str, tenant: Option<&str>) -> Result<Bytes, ClientError> {
        let resp = check(self.event_request(id, tenant).send().await?).await?;
        Ok(resp.bytes().await?)
    }

    fn event_request(&self, id: &str, tenant: Option<&str>) -> reqwest::RequestBuilder {
        let req = self.get(&["v1", "events", id]);
        match tenant {
            Some(t) => req.query(&[("tenant", t)]),
            None => req,
        }
    }

    /// `GET /v1/events`: one page of matching events.
    pub async fn search(&self, params: &SearchParams) -> Result<EventPage, ClientError> {
        let resp = self
            .get(&["v1", "events"])
            .query(&params.pairs)
            .send()
            .await?;
        decode(resp).await
    }

    /// Every matching event, following `next_cursor` page after page. Numbered pagination
    /// parameters are ignored; without a `limit`, pages of 1000 are fetched.
    pub fn search_all(
        &self,
        params: &SearchParams,
    ) -> impl Stream<Item = Result<Event, ClientError>> + Send + '_ {
        let mut first = params.clone().unset("page").unset("per_page");
        if first.get("limit").is_none() {
            first = first.limit(1000);
        }
        stream::try_unfold(Some(first), move |state| async move {
            let Some(params) = state else {
                return Ok::<_, ClientError>(None);
            };
            let page = self.search(&params).await?;
            let next = page.next_cursor.map(|c| params.clone().cursor(c));
            Ok(Some((page.events, next)))
        })
        .map_ok(|events| stream::iter(events.into_iter().map(Ok::<_, ClientError>)))
        .try_flatten()
    }

    /// `GET /v1/actions`: the distinct actions with category and count.
    pub async fn actions(&self, tenant: Option<&str>) -> Result<ActionList, ClientError> {
        let resp = with_tenant(self.get(&["v1", "actions"]), tenant)
            .send()
            .await?;
        decode(resp).await
    }

    /// `GET /v1/actors`: the distinct actors with count and last seen.
    pub async fn actors(&self, tenant: Option<&str>) -> Result<ActorList, ClientError> {
        let resp = with_tenant(self.get(&["v1", "actors"]), tenant)
            .send()
            .await?;
        decode(resp).await
    }

    /// `GET /v1/stats` over `since`/`until` (RFC 3339 or `YYYY-MM-DD`; the server picks a
    /// default window for an absent bound) in the credential's tenant.
    pub async fn stats(
        &self,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Stats, ClientError> {
        self.stats_in(None, since, until).await
    }

    /// `GET /v1/stats` in a given tenant.
    pub async fn stats_in(
        &self,
        tenant: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Stats, ClientError> {
        let query: Vec<(&str, &str)> = [("tenant", tenant), ("since", since), ("until", until)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let resp = self.get(&["v1", "stats"]).query(&query).send().await?;
        decode(resp).await
    }

    /// `GET /v1/targets/{type}/{id}/history`: every event on one record, oldest first.
    pub async fn history(
        &self,
        target_type: &str,
        target_id: &str,
    ) -> Result<History, ClientError> {
        self.history_in(None, target_type, target_id).await
    }

    /// `GET /v1/targets/{type}/{id}/history` in a given tenant.
    pub async fn history_in(
        &self,
        tenant: Option<&str>,
        target_type: &str,
        target_id: &str,
    ) -> Result<History, ClientError> {
        let req = self.get(&["v1", "targets", target_type, target_id, "history"]);
        let resp = with_tenant(req, tenant).send().await?;
        decode(resp).await
    }

    /// `GET /v1/export`: the search as a byte stream, in constant memory on both sides.
    pub async fn export(
        &self,
        format: ExportFormat,
        params: &SearchParams,
    ) -> Result<ByteStream, ClientError> {
        let resp = self
            .get(&["v1", "export"])
            .query(&params.pairs)
            .query(&[("format", format.as_str())])
            .send()
            .await?;
        let resp = check(resp).await?;
        Ok(Box::pin(resp.bytes_stream().map_err(ClientError::from)))
    }

    /// [`Client::export`] collected in memory (for small exports and tests).
    pub async fn export_bytes(
        &self,
        format: ExportFormat,
        params: &SearchParams,
    ) -> Result<Vec<u8>, ClientError> {
        let mut stream = self.export(format, params).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    // ---- integrity (CONTRACT §4) ----------------------------------------------------------

    /// `GET /v1/log/checkpoint`: the tenant's latest signed checkpoint (a signed note; check it
    /// with `bitacora_core::checkpoint::open_log_checkpoint` and [`Client::public_key`], or
    /// with any signed-note verifier and the log's `verifier_key` from `GET /v1/log`).
    pub async fn checkpoint(&self, tenant: Option<&str>) -> Result<String, ClientError> {
        let resp = with_tenant(self.get(&["v1", "log", "checkpoint"]), tenant)
            .send()
            .await?;
        Ok(check(resp).await?.text().await?)
    }

    /// `GET /v1/log/proof/inclusion`: the proof that the event at `seq` is in the tree of
    /// `tree_size` events (default: the latest checkpoint's size).
    pub async fn inclusion_proof(
        &self,
        seq: u64,
        tree_size: Option<u64>,
        tenant: Option<&str>,
    ) -> Result<InclusionProof, ClientError> {
        let mut req = self
            .get(&["v1", "log", "proof", "inclusion"])
            .query(&[("seq", seq)]);
        if let Some(size) = tree_size {
            req = req.query(&[("tree_size", size)]);
        }
        decode(with_tenant(req, tenant).send().await?).await
    }

    /// `GET /v1/log/proof/consistency`: the proof that the tree of `second` events extends
    /// the tree of `first` events.
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
        tenant: Option<&str>,
    ) -> Result<ConsistencyProof, ClientError> {
        let req = self
            .get(&["v1", "log", "proof", "consistency"])
            .query(&[("first", first), ("second", second)]);
        decode(with_tenant(req, tenant).send().await?).await
    }

    /// `GET /v1/log/public-key` (no credential): the verifier keys, the current one first,
    /// then retired ones still trusted.
    pub async fn public_key(&self) -> Result<Vec<String>, ClientError> {
        let text = self.text(&["v1", "log", "public-key"]).await?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// `GET /v1/events/{id}/inclusion`: whether the event is provably in the signed log.
    pub async fn event_inclusion(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<InclusionStatus, ClientError> {
        let req = with_tenant(self.get(&["v1", "events", id, "inclusion"]), tenant);
        decode(req.send().await?).await
    }

    // ---- operations -----------------------------------------------------------------------

    /// `GET /healthz`: liveness.
    pub async fn healthz(&self) -> Result<String, ClientError> {
        self.text(&["healthz"]).await
    }

    /// `GET /readyz`: readiness (the store is reachable).
    pub async fn readyz(&self) -> Result<String, ClientError> {
        self.text(&["readyz"]).await
    }

    /// `GET /metrics`: Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        self.text(&["metrics"]).await
    }

    /// `GET /openapi.json`: the OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        let resp = self.http.get(self.url(&["openapi.json"])).send().await?;
        decode(resp).await
    }

    async fn text(&self, segments: &[&str]) -> Result<String, ClientError> {
        let resp = self.http.get(self.url(segments)).send().await?;
        Ok(check(resp).await?.text().await?)
    }
}

pub use bitacora_core::api::{ConsistencyProof, InclusionProof, InclusionState, InclusionStatus};

fn with_tenant(req: reqwest::RequestBuilder, tenant: Option<&str>) -> reqwest::RequestBuilder {
    match tenant {
        Some(t) => req.query(&[("tenant", t)]),
        None => req,
    }
}

/// Passes a success response through; turns an error response into [`ClientError::Api`]
/// (or [`ClientError::Decode`] when its body is not the promised JSON error).
pub async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let bytes = resp.bytes().await?;
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(ClientError::Api { status, body }),
        Err(e) => Err(ClientError::Decode {
            status,
            message: format!("the error body is not a JSON error: {e}"),
            body: snippet(&bytes),
        }),
    }
}

/// Checks the status and decodes a JSON success body.
pub async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let resp = check(resp).await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        status,
        message: e.to_string(),
        body: snippet(&bytes),
    })
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_replace_and_keep_order() {
        let p = SearchParams::new()
            .action("user.*")
            .limit(10)
            .action("login")
            .order(Order::Asc);
        let pairs: Vec<_> = p.pairs().collect();
        assert_eq!(
            pairs,
            vec![("action", "login"), ("limit", "10"), ("order", "asc")]
        );
        assert_eq!(p.clone().unset("limit").get("limit"), None);
    }

    #[test]
    fn urls_encode_segments_and_keep_a_base_path() {
        let c = Client::new("http://example.invalid/audit/", "k").unwrap();
        assert_eq!(
            c.url(&["v1", "events", "a/b c"]).as_str(),
            "http://example.invalid/audit/v1/events/a%2Fb%20c"
        );
        let c = Client::new("http://example.invalid", "k").unwrap();
        assert_eq!(
            c.url(&["healthz"]).as_str(),
            "http://example.invalid/healthz"
        );
        assert!(Client::new("ftp://x", "k").is_err());
        assert!(Client::new("not a url", "k").is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let c = Client::new("http://example.invalid", "bk_secret").unwrap();
        assert!(!format!("{c:?}").contains("bk_secret"));
    }

    #[test]
    fn error_accessors() {
        let e = ClientError::Api {
            status: StatusCode::BAD_REQUEST,
            body: ErrorBody {
                error: bitacora_core::api::ErrorDetail {
                    code: "invalid_field".into(),
                    message: "bad".into(),
                    field: Some("context.ip".into()),
                },
            },
        };
        assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(e.code(), Some("invalid_field"));
        assert_eq!(e.field(), Some("context.ip"));
        assert!(e.to_string().contains("context.ip"));
    }
}
