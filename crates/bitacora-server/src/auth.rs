//! Authentication and tenancy: the one layer every `/v1` request passes.
//!
//! [`authenticate`] reads `Authorization: Bearer <credential>` and hands it to [`resolve`], the
//! one entry point every surface (API middleware, viewer session) calls: it applies the
//! failure limiter, recognises the credential by its shape — an API key (`bk_`), a viewer
//! token (`bv_`, [`viewer`]) or an application JWT ([`jwt`]) — checks its scope against the
//! route's, and returns a [`Principal`]. Keys and viewer tokens are found by the SHA-256 of
//! their secret (only hashes are stored). Handlers never read a tenant from the request themselves: they ask
//! [`Principal::resolve_tenant`], so a key pinned to a tenant can only ever reach that tenant.
//!
//! Three costs are kept off the hot path: key lookups are cached for [`KEY_CACHE_TTL`] (so a
//! revocation takes effect within a second), `last_used_at` is collected in memory and written
//! every [`USAGE_FLUSH_INTERVAL`], and failed attempts are counted per client address in a
//! token bucket: once it is exhausted, failing attempts get `429` (a valid credential from
//! that address is still served: the limiter limits failures, never successes).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bitacora_core::canonical::Hash;
use bitacora_core::{FieldError, TenantName};
use bitacora_store::{ApiKeyRecord, Scope, Store, StoreResult, ViewerTokenRecord};
use ipnet::IpNet;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::state::AppState;

pub mod jwt;
pub mod viewer;

pub use viewer::{VIEWER_TOKEN_PREFIX, generate_viewer_token};

/// How long a looked-up key is trusted without asking the store again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// How often `last_used_at` is written.
pub const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Prefix of every API key secret, so a leaked one is recognizable in logs and scanners.
pub const KEY_PREFIX: &str = "bk_";
/// The file `serve` writes the first admin key to, inside the data folder.
pub const INITIAL_KEY_FILE: &str = "initial-admin-key";
/// Cap on remembered addresses and cached keys, so neither map can grow without bound.
const MAX_TRACKED: usize = 10_000;

/// What kind of credential a request came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    ApiKey,
    ViewerToken,
    Jwt,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "api_key",
            CredentialKind::ViewerToken => "viewer_token",
            CredentialKind::Jwt => "jwt",
        }
    }
}

/// Who is calling: the credential, what it may do, and the tenant it is pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The credential's id: an API key id, a viewer token id (`vt_...`), or a JWT's `sub`.
    pub key_id: String,
    /// A name for people (the key's name; for tokens, what they are).
    pub name: String,
    pub kind: CredentialKind,
    pub scope: Scope,
    /// Pinned keys see and write this tenant alone.
    pub tenant: Option<TenantName>,
    /// The tenant of a request that names none: the pinned one, else the configured default.
    pub default_tenant: TenantName,
}

impl Principal {
    /// The tenant a request acts on: `requested` (a `tenant` parameter) if the credential may
    /// use it, else the credential's default. Every handler goes through here.
    pub fn resolve_tenant(&self, requested: Option<&str>) -> Result<TenantName, ApiError> {
        let requested = requested.map(str::trim).filter(|t| !t.is_empty());
        let Some(requested) = requested else {
            return Ok(self.default_tenant.clone());
        };
        let tenant = TenantName::parse(requested)
            .map_err(|m| FieldError::new("invalid_query", "tenant", m))?;
        match &self.tenant {
            Some(pinned) if *pinned != tenant => Err(FieldError::new(
                "tenant_forbidden",
                "tenant",
                format!("this credential may only access tenant `{pinned}`"),
            )
            .into()),
            _ => Ok(tenant),
        }
    }

    pub fn pinned(&self) -> Option<&TenantName> {
        self.tenant.as_ref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Only `authenticate` inserts it; a route without that layer refuses to run.
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("authentication required".into()))
    }
}

/// The client's address: the connection's peer, or what a trusted proxy says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or_default())
    }
}

/// Whether a key with `have` may call a route that needs `need`. `ingest` and `read` are
/// disjoint; `admin` may do everything.
pub fn allows(have: Scope, need: Scope) -> bool {
    have == Scope::Admin || have == need
}

/// SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> Hash {
    Sha256::digest(secret.as_bytes()).into()
}

/// A new key: the secret (`bk_` + base64url of 32 random bytes), shown once, and the record
/// to store (which holds only its hash).
pub fn generate_api_key(
    name: &str,
    scope: Scope,
    tenant: Option<TenantName>,
) -> (String, ApiKeyRecord) {
    let mut rng = rand::rngs::OsRng;
    let mut secret_bytes = [0u8; 32];
    rng.fill_bytes(&mut secret_bytes);
    let mut id_bytes = [0u8; 6];
    rng.fill_bytes(&mut id_bytes);
    let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret_bytes));
    let record = ApiKeyRecord {
        id: hex::encode(id_bytes),
        name: name.to_owned(),
        scope,
        tenant,
        secret_hash: hash_secret(&secret),
        created_at: now_micros(),
        last_used_at: None,
        revoked: false,
    };
    (secret, record)
}

/// When the store holds no key at all, creates an admin key, writes its secret to
/// `DATA/initial-admin-key` (mode 0600) when `data_dir` is given, and returns the secret so the
/// caller can show it once. `None` when keys already exist.
pub async fn ensure_initial_admin_key(
    store: &dyn Store,
    data_dir: Option<&Path>,
) -> anyhow::Result<Option<String>> {
    if !store.api_keys().await?.is_empty() {
        return Ok(None);
    }
    let (secret, record) = generate_api_key("initial admin", Scope::Admin, None);
    // The file first: a key that exists only in the store and was never seen is useless.
    if let Some(dir) = data_dir {
        write_secret_file(&dir.join(INITIAL_KEY_FILE), &secret)?;
    }
    store.insert_api_key(&record).await?;
    Ok(Some(secret))
}

fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // `mode` applies only to a new file; an old one keeps its permissions unless reset.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{secret}")?;
    file.sync_all()?;
    Ok(())
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Equal without an early exit, so timing says nothing about how much of a hash matched.
fn hashes_equal(a: &Hash, b: &Hash) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A stored credential as looked up (keys and viewer tokens share the cache).
#[derive(Clone)]
enum Cached {
    Key(ApiKeyRecord),
    Viewer(ViewerTokenRecord),
}

impl Cached {
    fn secret_hash(&self) -> &Hash {
        match self {
            Cached::Key(k) => &k.secret_hash,
            Cached::Viewer(v) => &v.secret_hash,
        }
    }
}

/// The authentication state shared by all requests.
pub struct Auth {
    store: Arc<dyn Store>,
    proxies: ProxyPolicy,
    cache: Mutex<HashMap<Hash, (Cached, Instant)>>,
    /// key id → latest use (µs), waiting for the next flush.
    used: Mutex<HashMap<String, i64>>,
    failures: FailureLimiter,
    jwt: Vec<jwt::JwtVerifier>,
}

impl Auth {
    pub fn new(
        store: Arc<dyn Store>,
        trusted_proxies: Vec<IpNet>,
        failures_per_minute: u32,
    ) -> Self {
        Self {
            store,
            proxies: ProxyPolicy::new(trusted_proxies),
            cache: Mutex::new(HashMap::new()),
            used: Mutex::new(HashMap::new()),
            failures: FailureLimiter::new(failures_per_minute),
            jwt: Vec::new(),
        }
    }

    /// Also accept application JWTs from these issuers.
    pub fn with_jwt(mut self, verifiers: Vec<jwt::JwtVerifier>) -> Self {
        self.jwt = verifiers;
        self
    }

    /// The client address as the proxy policy decides it.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        self.proxies.client_ip(peer, headers)
    }

    /// The key whose secret this is, if it exists and is not revoked.
    async fn lookup(&self, secret: &str) -> StoreResult<Option<ApiKeyRecord>> {
        // Not our format: no need to ask the store.
        if !secret.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        Ok(match self.lookup_stored(secret).await? {
            Some(Cached::Key(k)) if !k.revoked => Some(k),
            _ => None,
        })
    }

    /// The viewer token whose secret this is, if it exists, is not revoked and has not expired.
    async fn lookup_viewer(&self, secret: &str) -> StoreResult<Option<ViewerTokenRecord>> {
        if !secret.starts_with(VIEWER_TOKEN_PREFIX) {
            return Ok(None);
        }
        let now = now_micros();
        Ok(match self.lookup_stored(secret).await? {
            Some(Cached::Viewer(v)) if !v.revoked && v.expires_at > now => Some(v),
            _ => None,
        })
    }

    /// A key or viewer token by its secret, through the 1 s cache.
    async fn lookup_stored(&self, secret: &str) -> StoreResult<Option<Cached>> {
        if secret.len() > 256 {
            return Ok(None);
        }
        let hash = hash_secret(secret);
        let now = Instant::now();
        let cached = {
            let cache = self.cache.lock().expect("auth cache lock");
            cache
                .get(&hash)
                .filter(|(_, at)| now.duration_since(*at) < KEY_CACHE_TTL)
                .map(|(r, _)| r.clone())
        };
        let record = match cached {
            Some(r) => Some(r),
            None => {
                let found = if secret.starts_with(VIEWER_TOKEN_PREFIX) {
                    self.store
                        .viewer_token_by_hash(&hash)
                        .await?
                        .map(Cached::Viewer)
                } else {
                    self.store.api_key_by_hash(&hash).await?.map(Cached::Key)
                };
                if let Some(r) = &found {
                    let mut cache = self.cache.lock().expect("auth cache lock");
                    if cache.len() >= MAX_TRACKED {
                        cache.retain(|_, (_, at)| now.duration_since(*at) < KEY_CACHE_TTL);
                    }
                    cache.insert(hash, (r.clone(), now));
                }
                found
            }
        };
        Ok(record.filter(|r| hashes_equal(r.secret_hash(), &hash)))
    }

    /// Forgets cached credentials, so a revocation made by this server applies at once here
    /// (other servers see it within [`KEY_CACHE_TTL`]).
    pub fn forget_cached(&self) {
        self.cache.lock().expect("auth cache lock").clear();
    }

    fn mark_used(&self, key_id: &str) {
        let now = now_micros();
        let mut used = self.used.lock().expect("usage lock");
        if let Some(at) = used.get_mut(key_id) {
            *at = now;
        } else {
            used.insert(key_id.to_owned(), now);
        }
    }

    /// Writes the collected `last_used_at` values.
    pub async fn flush_usage(&self) -> StoreResult<()> {
        let used: Vec<(String, i64)> = {
            let mut map = self.used.lock().expect("usage lock");
            map.drain().collect()
        };
        if used.is_empty() {
            return Ok(());
        }
        self.store.touch_api_keys(&used).await
    }

    /// Flushes `last_used_at` every [`USAGE_FLUSH_INTERVAL`] until `cancel`, then once more.
    pub fn spawn_usage_flusher(
        self: Arc<Self>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(USAGE_FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = cancel.cancelled() => break,
                }
                if let Err(e) = self.flush_usage().await {
                    tracing::warn!(error = %e, "cannot record API key use");
                }
            }
            if let Err(e) = self.flush_usage().await {
                tracing::warn!(error = %e, "cannot record API key use");
            }
        })
    }
}

/// Decides the client's address: the connection's peer, unless the peer is a trusted proxy
/// that says who it forwards for.
#[derive(Debug, Clone, Default)]
pub struct ProxyPolicy {
    trusted: Vec<IpNet>,
}

impl ProxyPolicy {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.map(bitacora_core::event::normalize_ip)?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        // X-Forwarded-For: client, proxy1, proxy2. Walk from the right past our own proxies;
        // the first address not ours is the client (anything left of it is client-supplied).
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| parse_forwarded_ip(s.trim()))
            .collect();
        if let Some(ip) = forwarded.iter().rev().find(|ip| !self.is_trusted(**ip)) {
            return Some(*ip);
        }
        if let Some(first) = forwarded.first() {
            return Some(*first);
        }
        headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_forwarded_ip(v.trim()))
            .or(Some(peer))
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))?;
    Some(bitacora_core::event::normalize_ip(ip))
}

/// Counts failed authentications per address: a bucket of `per_minute` tokens refilled
/// continuously; an empty bucket means `429` until a token is back.
struct FailureLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl FailureLimiter {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate_per_sec(&self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }

    fn refilled(&self, tokens: f64, since: Instant, now: Instant) -> f64 {
        let capacity = f64::from(self.per_minute);
        (tokens + now.duration_since(since).as_secs_f64() * self.rate_per_sec()).min(capacity)
    }

    /// Seconds to wait, when this address has used up its failures.
    fn retry_after(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        if self.per_minute == 0 {
            return None;
        }
        let buckets = self.buckets.lock().expect("limiter lock");
        let (tokens, at) = *buckets.get(&ip)?;
        let tokens = self.refilled(tokens, at, now);
        (tokens < 1.0).then(|| ((1.0 - tokens) / self.rate_per_sec()).ceil().max(1.0) as u64)
    }

    fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        let capacity = f64::from(self.per_minute);
        let mut buckets = self.buckets.lock().expect("limiter lock");
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            // Forget addresses whose bucket is full again: they are not limited any more.
            buckets.retain(|_, (tokens, at)| self.refilled(*tokens, *at, now) < capacity);
        }
        let (tokens, at) = buckets.get(&ip).copied().unwrap_or((capacity, now));
        let tokens = (self.refilled(tokens, at, now) - 1.0).max(0.0);
        buckets.insert(ip, (tokens, now));
    }
}

/// The secret of `Authorization: Bearer <secret>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| secret.trim())
        .filter(|s| !s.is_empty())
}

/// Authenticates `secret` for a request that needs `need`: the one entry point of every
/// surface (the `/v1` middleware, the viewer's login and session). Applies the failure limiter
/// of `client_ip` (429), recognises an API key, a viewer token or an application JWT (401 when
/// none matches, counted as a failure), checks the scope (403) and records the key's use.
pub async fn resolve(
    state: &AppState,
    secret: &str,
    client_ip: Option<IpAddr>,
    need: Scope,
) -> Result<Principal, ApiError> {
    let auth = &state.auth;
    // In-process callers (tests) have no address; they share one bucket.
    let limiter_key = client_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let now = Instant::now();
    // Failures are limited, successes never: a valid credential is served even from an
    // address whose failures are used up (anyone behind the same NAT or untrusted proxy could
    // otherwise stop that address's audit ingestion by sending bad keys). Only a credential
    // that fails to authenticate is answered 429 there instead of 401.
    let refused = |message: String| -> ApiError {
        let limited = auth.failures.retry_after(limiter_key, now);
        auth.failures.record_failure(limiter_key, now);
        match limited {
            Some(retry_after_secs) => ApiError::TooManyRequests { retry_after_secs },
            None => ApiError::Unauthorized(message),
        }
    };
    let secret = secret.trim();
    let default_tenant = &state.config.ingest.default_tenant;
    let principal = if secret.starts_with(KEY_PREFIX) {
        auth.lookup(secret).await?.map(|key| Principal {
            default_tenant: key.tenant.clone().unwrap_or_else(|| default_tenant.clone()),
            name: key.name,
            kind: CredentialKind::ApiKey,
            key_id: key.id,
            scope: key.scope,
            tenant: key.tenant,
        })
    } else if secret.starts_with(VIEWER_TOKEN_PREFIX) {
        auth.lookup_viewer(secret).await?.map(|t| Principal {
            default_tenant: t.tenant.clone(),
            name: "viewer token".into(),
            kind: CredentialKind::ViewerToken,
            key_id: t.id,
            scope: Scope::Read,
            tenant: Some(t.tenant),
        })
    } else if !auth.jwt.is_empty() && jwt::looks_like_jwt(secret) {
        match verify_jwt(&auth.jwt, secret) {
            Ok(identity) => Some(Principal {
                default_tenant: identity.tenant.clone(),
                name: format!("jwt:{}", identity.subject),
                kind: CredentialKind::Jwt,
                key_id: identity.subject,
                scope: Scope::Read,
                tenant: Some(identity.tenant),
            }),
            Err(jwt::JwtRejection::Forbidden(message)) => {
                return Err(ApiError::Forbidden(message));
            }
            Err(jwt::JwtRejection::Invalid(invalid)) => return Err(refused(invalid.message)),
        }
    } else {
        None
    };
    let Some(principal) = principal else {
        return Err(refused("unknown, expired or revoked credential".into()));
    };
    if !allows(principal.scope, need) {
        return Err(ApiError::Forbidden(format!(
            "this {} has scope `{}`; this endpoint needs `{}`",
            match principal.kind {
                CredentialKind::ApiKey => "key",
                CredentialKind::ViewerToken => "viewer token",
                CredentialKind::Jwt => "token",
            },
            principal.scope.as_str(),
            need.as_str()
        )));
    }
    if principal.kind == CredentialKind::ApiKey {
        auth.mark_used(&principal.key_id);
    }
    Ok(principal)
}

/// The first configured issuer that accepts the token; otherwise the most telling refusal:
/// a valid token without permission says so, and among invalid ones the issuer whose key
/// verified the signature explains best (an expired token is "expired", not "signed with
/// another algorithm" from the next issuer in the list).
fn verify_jwt(
    verifiers: &[jwt::JwtVerifier],
    token: &str,
) -> Result<jwt::JwtIdentity, jwt::JwtRejection> {
    let mut refusal: Option<jwt::Invalid> = None;
    for verifier in verifiers {
        match verifier.verify(token) {
            Ok(identity) => return Ok(identity),
            Err(e @ jwt::JwtRejection::Forbidden(_)) => return Err(e),
            Err(jwt::JwtRejection::Invalid(e)) => {
                if refusal.as_ref().is_none_or(|r| e.relevance > r.relevance) {
                    refusal = Some(e);
                }
            }
        }
    }
    Err(jwt::JwtRejection::Invalid(refusal.unwrap_or_else(|| {
        jwt::Invalid::new("no JWT issuer is configured", 0)
    })))
}

impl Auth {
    /// Whether `ip` is one of the configured trusted proxies.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.proxies
            .is_trusted(bitacora_core::event::normalize_ip(ip))
    }
}

/// The middleware of every `/v1` route, layered with the scope that route needs.
pub async fn authenticate(
    State((state, need)): State<(AppState, Scope)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client_ip = state.auth.proxies.client_ip(peer, request.headers());
    let Some(secret) = bearer(request.headers()) else {
        let limiter_key = client_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Some(retry_after_secs) = state.auth.failures.retry_after(limiter_key, Instant::now())
        {
            return Err(ApiError::TooManyRequests { retry_after_secs });
        }
        return Err(ApiError::Unauthorized(
            "send an API key or token as `Authorization: Bearer <credential>`".into(),
        ));
    };
    let principal = resolve(&state, secret, client_ip, need).await?;
    tracing::Span::current().record("key.id", principal.key_id.as_str());
    request.extensions_mut().insert(principal);
    request.extensions_mut().insert(ClientIp(client_ip));
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(pinned: Option<&str>) -> Principal {
        let tenant = pinned.map(|t| TenantName::parse(t).unwrap());
        Principal {
            key_id: "k".into(),
            name: "k".into(),
            kind: CredentialKind::ApiKey,
            scope: Scope::Read,
            default_tenant: tenant.clone().unwrap_or_else(TenantName::default_tenant),
            tenant,
        }
    }

    #[test]
    fn scope_matrix() {
        use Scope::*;
        for (have, need, ok) in [
            (Ingest, Ingest, true),
            (Ingest, Read, false),
            (Ingest, Admin, false),
            (Read, Ingest, false),
            (Read, Read, true),
            (Read, Admin, false),
            (Admin, Ingest, true),
            (Admin, Read, true),
            (Admin, Admin, true),
        ] {
            assert_eq!(allows(have, need), ok, "{have:?} for {need:?}");
        }
    }

    #[test]
    fn pinned_credentials_resolve_only_their_tenant() {
        let p = principal(Some("acme"));
        assert_eq!(p.resolve_tenant(None).unwrap().as_str(), "acme");
        assert_eq!(p.resolve_tenant(Some("acme")).unwrap().as_str(), "acme");
        let err = p.resolve_tenant(Some("other")).unwrap_err();
        assert_eq!(err.status(), 403);
        assert_eq!(err.detail().field.as_deref(), Some("tenant"));

        let p = principal(None);
        assert_eq!(p.resolve_tenant(None).unwrap().as_str(), "default");
        assert_eq!(p.resolve_tenant(Some(" ")).unwrap().as_str(), "default");
        assert_eq!(p.resolve_tenant(Some("other")).unwrap().as_str(), "other");
        assert_eq!(p.resolve_tenant(Some("../x")).unwrap_err().status(), 400);
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let (secret, record) = generate_api_key("ci", Scope::Ingest, None);
        assert!(secret.starts_with("bk_"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret[3..]).unwrap().len(), 32);
        assert_eq!(record.id.len(), 12);
        assert!(record.id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(record.secret_hash, hash_secret(&secret));
        let (other, _) = generate_api_key("ci", Scope::Ingest, None);
        assert_ne!(secret, other);
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer bk_abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("bk_abc"));
        h.insert(header::AUTHORIZATION, "bearer   bk_abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("bk_abc"));
        h.insert(header::AUTHORIZATION, "Basic dXNlcg==".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn failure_limiter_blocks_then_refills() {
        let limiter = FailureLimiter::new(3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.retry_after(ip, t0), None);
            limiter.record_failure(ip, t0);
        }
        let wait = limiter.retry_after(ip, t0).unwrap();
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(limiter.retry_after("10.0.0.2".parse().unwrap(), t0), None);
        // 3 per minute: one token back after 20 s.
        assert_eq!(limiter.retry_after(ip, t0 + Duration::from_secs(21)), None);
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_proxies() {
        let policy = ProxyPolicy::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.2".parse().unwrap(),
        );
        h.insert("x-real-ip", "7.7.7.7".parse().unwrap());
        // From an untrusted peer the headers are ignored.
        assert_eq!(
            policy.client_ip(Some(ip("192.168.1.1")), &h),
            Some(ip("192.168.1.1"))
        );
        // From a trusted proxy: the rightmost address that is not one of ours.
        assert_eq!(
            policy.client_ip(Some(ip("10.0.0.1")), &h),
            Some(ip("1.2.3.4"))
        );
        h.remove("x-forwarded-for");
        assert_eq!(
            policy.client_ip(Some(ip("10.0.0.1")), &h),
            Some(ip("7.7.7.7"))
        );
        h.remove("x-real-ip");
        assert_eq!(
            policy.client_ip(Some(ip("10.0.0.1")), &h),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            policy.client_ip(Some(ip("::ffff:192.168.1.1")), &h),
            Some(ip("192.168.1.1"))
        );
        assert_eq!(policy.client_ip(None, &h), None);
        assert_eq!(
            parse_forwarded_ip("[::ffff:1.2.3.4]:80"),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(parse_forwarded_ip("1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_forwarded_ip("unknown"), None);
    }
}
