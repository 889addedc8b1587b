//! The server's configuration: one [`Config`] with a section per concern, layered
//! built-in defaults → TOML file (`--config`) → `BITACORA_*` environment → command-line flags.
//!
//! The environment is read two ways: the three variables of CONTRACT §1 (`BITACORA_DATA`,
//! `BITACORA_DATABASE_URL`, `BITACORA_LISTEN`) plus `BITACORA_LOG_LEVEL`/`BITACORA_LOG_FORMAT`
//! and `BITACORA_SIGNING_KEY_FILE` by name, and any setting by its path with `__` between section and key
//! (`BITACORA_SERVER__REQUEST_TIMEOUT_SECS=5`, `BITACORA_INGEST__DEFAULT_TENANT=acme`). Other
//! `BITACORA_*` variables (for example the binary's own `BITACORA_CONFIG`) are not settings and
//! are ignored here.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bitacora_core::{IngestPolicy, Severity, TenantName};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A commented example configuration holding every default; `bitacora config print-default`
/// prints it. A unit test proves it parses into [`Config::default`].
pub const DEFAULT_CONFIG_TOML: &str = r#"# bitacora configuration.
#
# Every value below is the built-in default: keep only what you change. Precedence, lowest first:
# built-in defaults < this file (--config FILE) < BITACORA_* environment variables < flags.
# Any setting can also be given as BITACORA_<SECTION>__<KEY>, e.g. BITACORA_SERVER__LISTEN.

[server]
# Address and port to listen on (--listen, BITACORA_LISTEN).
listen = "127.0.0.1:8480"
# Reverse proxies (addresses or CIDR blocks) whose X-Forwarded-For / X-Real-IP headers are
# believed. From anyone else those headers are ignored and the connection's address is used.
trusted_proxies = []
# A connection must send each request's head (request line and headers) within this many
# seconds of opening or of its previous response, or it is closed: slow-header clients
# (slowloris) cannot hold connections open, and idle keep-alive connections are closed.
header_read_timeout_secs = 20
# A request still unanswered after this many seconds gets 503. Exports stream their body and
# are not cut by it.
request_timeout_secs = 30
# After SIGTERM: how long in-flight requests may take to finish before connections are closed.
# Queued writes are committed either way.
shutdown_grace_secs = 10
# Failed authentications allowed per client address and minute before answering 429.
auth_failures_per_minute = 20
# The address people reach this server at, used in viewer URLs (`POST /v1/viewer-tokens`).
# Unset: the request's Host header (and http/https as this server serves).
# public_url = "https://audit.example.com"

# Serve HTTPS directly (rustls), for deployments without a TLS-terminating proxy in front.
# Both files are PEM; the certificate file may hold the whole chain.
# [server.tls]
# cert_file = "/etc/bitacora/cert.pem"
# key_file = "/etc/bitacora/key.pem"

[auth]
# Viewer tokens (`POST /v1/viewer-tokens`): the lifetime when the request names none, and the
# longest one may ask for.
viewer_token_ttl_secs = 3600
viewer_token_max_ttl_secs = 86400

# JSON Web Tokens signed by your own application, so its login can open the viewer. Repeat the
# section for several issuers. The algorithm comes from the entry (HS256 for `hs256_secret`,
# RS256 or EdDSA for the PEM public key), never from the token; `alg: none` is refused. `exp` is
# required, `nbf` checked, both with `leeway_secs`; `iss`/`aud` when set here. A token grants
# READ access to the one tenant its `tenant_claim` names, when its `scope` claim contains
# "read" or its `permissions` claim contains "view_logs"; a token without the tenant claim is
# refused (403). JWTs never grant ingest or admin.
# [[auth.jwt]]
# issuer = "https://app.example.com"
# audience = "bitacora"
# hs256_secret = "a long random secret shared with the application"
# # or: public_key_file = "/etc/bitacora/app-jwt.pem"   (RSA or Ed25519 public key)
# tenant_claim = "tenant"
# leeway_secs = 30

[store]
# The embedded SQLite store's folder (--data, BITACORA_DATA).
data = "./bitacora-data"
# PostgreSQL instead of the embedded store (--database-url, BITACORA_DATABASE_URL).
# database_url = "postgres://bitacora@localhost/bitacora"
# SQLite durability: "full" (an acknowledged event survives power loss), "normal" (survives a
# crash of bitacora, not of the machine) or "off" (benchmarks only).
synchronous = "full"
# Most events the writer commits in one transaction (unset: the store's default).
# max_batch_events = 50000
# Milliseconds a numbered page (`page=`) may spend counting its total: totals of filters the
# store keeps no counter for are counted up to this budget, and the rest estimated from
# samples; such a page says `"total_exact": false`. 0 estimates every such total.
total_budget_ms = 25

[ingest]
# The tenant of an event that names none, sent with a key that is not pinned to a tenant.
default_tenant = "default"

# Severity of an event that names none, by exact action or by prefix ending in `*`. Exact names
# win over prefixes, longer prefixes over shorter ones; anything else is "low".
[ingest.severity]
# "user.role_change" = "critical"
# "user.*" = "medium"

[integrity]
# The Ed25519 key that signs each tenant's checkpoints (CONTRACT section 4). It lives OUTSIDE the
# store, so whoever can edit the database cannot also re-sign it; back it up separately.
# Created (mode 0600) on first start. Default: the data folder's path plus ".signing-key", a
# sibling of the folder (`./bitacora-data.signing-key` for the default data folder). Required
# with a PostgreSQL store (--signing-key-file, BITACORA_SIGNING_KEY_FILE).
# signing_key_file = "./bitacora-data.signing-key"
# The key file's own name, and that of the verifier key `/v1/log/public-key` serves
# (`bitacora+<id>+<base64>`). Each log's checkpoints are signed under the log's origin as key
# name (what C2SP witnesses and tlog-policy files expect; `GET /v1/log` gives its `verifier_key`);
# checkpoints from before that were signed under this name, and still verify.
signing_key_name = "bitacora"
# While true, new checkpoints of a log whose latest checkpoint carries a signature under
# `signing_key_name` (a log from before key names followed origins) carry that signature line too,
# after the origin-named one, so verifiers and witnesses still configured with the old key keep
# working. Set false once they all use the logs' own verifier keys (docs/TRANSPARENCY.md).
legacy_key_name_signatures = true
# Verifier keys of rotated-out signing keys that still vouch for old checkpoints: each a key
# string (`bitacora+1a2b3c4d+AX...`) or a file of them, one a line. See "Key rotation" in the
# bitacora-log crate docs.
retired_keys = []
# How often growing logs are signed (milliseconds).
checkpoint_interval_ms = 1000
# Serve each tenant's checkpoint and hash tiles under /logs/<tenant>/ (C2SP tlog-tiles) to anyone,
# for monitors and witnesses; entry bundles (the events) always need the tenant's `read`
# credential. Level-0 hashes of guessable events can then be confirmed by brute force: see
# docs/TRANSPARENCY.md before turning this on.
public_tiles = false
# Full hash tiles (8 KiB each) kept in memory for /logs/<tenant>/tile/...
tile_cache_tiles = 4096
# The prefix of each tenant's checkpoint origin, `<prefix>/<tenant>` (CONTRACT section 11). Fixed
# for a log when its first checkpoint is signed: changing it later only affects new logs. Set a
# unique one (e.g. "audit.example.com/bitacora") before submitting checkpoints to public witnesses.
origin_prefix = "bitacora"
# Witnesses (CONTRACT section 11, docs/TRANSPARENCY.md): a C2SP tlog-policy file naming the
# witnesses to submit each tenant's checkpoints to (`witness <name> <vkey> <url>` lines) and the
# quorum their cosignatures must meet. Unset: no witnessing.
# witness_policy_file = "/etc/bitacora/witnesses.policy"
# Least time between two submissions of a tenant's checkpoints to one witness (milliseconds).
witness_interval_ms = 300000
# How long one add-checkpoint request to a witness may take (milliseconds).
witness_timeout_ms = 10000

# Database change capture (docs/CAPTURE.md): drain the outbox that `bitacora capture install`
# set up in an application's PostgreSQL database into a tenant's log. One section per database;
# each `serve --capture-database-url URL` adds one more, for tenant "default".
# [[capture]]
# database_url = "postgres://bitacora_drain@app-db/shop"
# tenant = "default"
# # Longest wait between passes when no NOTIFY arrives (milliseconds).
# poll_interval_ms = 1000
# # Outbox rows per pass.
# batch_size = 500
# # The source's name in logs, /metrics and /readyz (default: dbname@host:port).
# name = "shop"

[retention]
# Data lifecycle (docs/LIFECYCLE.md, CONTRACT section 9). Nothing is purged unless a default or a
# rule below says so. Ages are counted from `received_at` and written <n>s, <n>m, <n>h or <n>d.
# default = "400d"
# How often each server looks for expired events.
check_interval = "1h"
# Where purged events are archived (zstd-compressed bundles) before their content is removed:
# file:///path (a folder) or s3://bucket/prefix (AWS S3 or an S3-compatible server). Default for
# the embedded store: a folder beside the data folder (`./bitacora-data.archive`); required with
# PostgreSQL.
# archive_url = "file:///var/lib/bitacora/archive"
# For s3:// archives: an S3-compatible server (MinIO, Ceph, ...; default: AWS, or the
# AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT variables) and the bucket's region (default: AWS_REGION,
# else us-east-1). Credentials only from the environment: AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or a web identity / ECS task role / instance profile.
# s3_endpoint = "https://minio.internal:9000"
# s3_region = "eu-west-1"
# A new or changed rule set starts purging only this long after a server first ran with it.
min_delay = "7d"
# Most events in one archive object (and one `bitacora.retention.purge` announcement).
batch_size = 2000
# Archived batches are announced together and purged by one store transaction once they hold
# this many events (`= batch_size`: one transaction per batch; larger purges faster and holds
# the embedded store's write lock longer).
transaction_size = 20000
# PostgreSQL month partitions dropped whole: after each archived batch, the walk pauses this
# percentage of the batch's own time, so ingest keeps its share of the CPU (0: no pause).
partition_pause_percent = 200
# More specific rules win (tenant, category, action: an exact action or a prefix with *).
# keep = "forever" exempts what a rule matches.
# [[retention.rule]]
# tenant = "acme"
# category = "auth"
# keep = "90d"

[log]
# "pretty" for people, "json" for log collectors (--log-format, BITACORA_LOG_FORMAT).
format = "pretty"
# A tracing filter: "info", "debug", "bitacora_server=debug,info", ... (--log-level,
# BITACORA_LOG_LEVEL).
level = "info"

[delivery]
# Streams and alert rules (docs/DELIVERY.md); destinations and rules are managed over the API.
enabled = true
# Allow destinations on loopback, private and link-local addresses (refused with 422 otherwise).
allow_private_destinations = false
# How often an idle worker or the alert evaluator looks for new events (milliseconds).
poll_interval_ms = 200
# Time allowed for one delivery request.
timeout_secs = 10
# Events read per batch.
max_batch = 500
# Longest wait between retries of a failing destination.
max_backoff_secs = 60
# How long a dead server keeps a destination before another server takes over.
lease_secs = 15

# The SMTP relay `email` destinations send through (without it they are refused). Every server
# sharing a store needs the same. Give the password by environment:
# BITACORA_DELIVERY__SMTP__PASSWORD.
# [delivery.smtp]
# host = "smtp.example.com"
# port = 587                 # default: 587 (starttls), 465 (tls), 25 (none)
# security = "starttls"      # starttls | tls | none
# username = "bitacora"
# from = "bitacora <alerts@example.com>"
"#;

/// Everything `bitacora serve` can be told.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub store: StoreConfig,
    pub ingest: IngestConfig,
    pub integrity: IntegrityConfig,
    pub log: LogConfig,
    /// `[[capture]]`: application databases whose captured changes `serve` drains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capture: Vec<CaptureConfig>,
    /// `[delivery]`: destinations, streams and alert rules (CONTRACT §10).
    pub delivery: bitacora_delivery::DeliveryConfig,
    /// `[retention]`: data lifecycle (docs/LIFECYCLE.md).
    pub retention: bitacora_lifecycle::RetentionConfig,
}

/// One capture source (`[[capture]]`, or `serve --capture-database-url`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// The application's database. May hold a password: never shown by `Debug`.
    pub database_url: String,
    /// The tenant its events go to.
    #[serde(default = "TenantName::default_tenant")]
    pub tenant: TenantName,
    /// Longest wait between passes when no notification arrives.
    #[serde(default = "CaptureConfig::default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Outbox rows per pass.
    #[serde(default = "CaptureConfig::default_batch_size")]
    pub batch_size: usize,
    /// The name shown in logs, metrics and `/readyz` (default `dbname@host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl CaptureConfig {
    fn default_poll_interval_ms() -> u64 {
        1000
    }

    fn default_batch_size() -> usize {
        500
    }

    /// A source for `url` with every default (what `--capture-database-url` adds).
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            tenant: TenantName::default_tenant(),
            poll_interval_ms: Self::default_poll_interval_ms(),
            batch_size: Self::default_batch_size(),
            name: None,
        }
    }

    /// The drain's settings.
    pub fn drain_config(&self) -> bitacora_capture::DrainConfig {
        let mut drain =
            bitacora_capture::DrainConfig::new(self.database_url.clone(), self.tenant.clone());
        if let Some(name) = &self.name {
            drain.name = name.clone();
        }
        drain.poll_interval = std::time::Duration::from_millis(self.poll_interval_ms.max(10));
        drain.batch_size = self.batch_size.clamp(1, 10_000);
        drain
    }
}

impl fmt::Debug for CaptureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureConfig")
            .field("database_url", &"<redacted>")
            .field("tenant", &self.tenant)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("batch_size", &self.batch_size)
            .field("name", &self.name)
            .finish()
    }
}

/// Checkpoint signing (CONTRACT §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntegrityConfig {
    /// The signing key file; `None` means the data folder's sibling
    /// ([`Config::signing_key_path`]). Only the path is here, never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    pub signing_key_name: String,
    /// Whether pre-existing logs' new checkpoints also carry a signature under
    /// `signing_key_name` (see [`bitacora_log::Naming`]).
    pub legacy_key_name_signatures: bool,
    /// Verifier keys (or files of them) of retired signing keys.
    pub retired_keys: Vec<String>,
    pub checkpoint_interval_ms: u64,
    /// Whether `/logs/<tenant>/checkpoint` and the hash tiles need no credential (entry
    /// bundles always need `read`).
    pub public_tiles: bool,
    /// How many full hash tiles the in-memory cache of `/logs/` keeps (0: none).
    pub tile_cache_tiles: usize,
    /// New logs' checkpoint origin is `<origin_prefix>/<tenant>` (fixed per log).
    pub origin_prefix: String,
    /// The C2SP `tlog-policy` file of the witnesses to submit checkpoints to; `None`: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness_policy_file: Option<PathBuf>,
    /// Least time between two submissions of one tenant's checkpoints to one witness.
    pub witness_interval_ms: u64,
    /// How long one `add-checkpoint` request may take.
    pub witness_timeout_ms: u64,
}

impl Default for IntegrityConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            signing_key_name: "bitacora".to_owned(),
            legacy_key_name_signatures: true,
            retired_keys: Vec::new(),
            checkpoint_interval_ms: 1000,
            public_tiles: false,
            tile_cache_tiles: 4096,
            origin_prefix: bitacora_log::DEFAULT_ORIGIN_PREFIX.to_owned(),
            witness_policy_file: None,
            witness_interval_ms: 300_000,
            witness_timeout_ms: 10_000,
        }
    }
}

impl IntegrityConfig {
    /// How the checkpointer names logs and their keys.
    pub fn naming(&self) -> bitacora_log::Naming {
        bitacora_log::Naming {
            origin_prefix: self.origin_prefix.clone(),
            legacy_key_name: self.legacy_key_name_signatures,
        }
    }

    /// Checks `origin_prefix`: `<prefix>/<tenant>` must be a valid checkpoint origin and note
    /// key name (no spaces, `+` or control characters), and not end with `/`.
    pub fn validate(&self) -> Result<(), String> {
        let p = &self.origin_prefix;
        if p.is_empty()
            || p.ends_with('/')
            || p.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '+')
        {
            return Err(format!(
                "`integrity.origin_prefix` = {p:?}: it must be non-empty, without spaces, `+` or \
                 control characters, and not end with `/` (e.g. \"audit.example.com/bitacora\")"
            ));
        }
        Ok(())
    }

    pub fn checkpoint_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.checkpoint_interval_ms.max(10))
    }

    /// The witness policy (`witness_policy_file`), read and parsed; `None` without one. A
    /// missing or malformed file is a startup error naming the file and the line.
    pub fn witness_policy(&self) -> anyhow::Result<Option<bitacora_core::witness::Policy>> {
        let Some(path) = &self.witness_policy_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read `integrity.witness_policy_file` `{}`: {e}",
                path.display()
            )
        })?;
        let policy = bitacora_core::witness::Policy::parse(&text).map_err(|e| {
            anyhow::anyhow!("`integrity.witness_policy_file` `{}`: {e}", path.display())
        })?;
        Ok(Some(policy))
    }

    /// The witnessing task's settings for `policy`.
    pub fn witness_config(
        &self,
        policy: bitacora_core::witness::Policy,
    ) -> bitacora_witness::WitnessConfig {
        bitacora_witness::WitnessConfig {
            policy: std::sync::Arc::new(policy),
            interval: std::time::Duration::from_millis(self.witness_interval_ms.max(100)),
            timeout: std::time::Duration::from_millis(self.witness_timeout_ms.max(100)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Only from these peers are `X-Forwarded-For`/`X-Real-IP` believed: anyone else could
    /// write any address into an audit record.
    pub trusted_proxies: Vec<IpNet>,
    /// Time a connection has to send a request head, from opening or from its last response.
    pub header_read_timeout_secs: u64,
    /// Time to produce a response's head; a streamed body (export) is not limited by it.
    pub request_timeout_secs: u64,
    /// How long in-flight requests may run on after shutdown begins.
    pub shutdown_grace_secs: u64,
    /// Failed authentications per client address and minute before `429`.
    pub auth_failures_per_minute: u32,
    /// The base of viewer URLs; `None` uses the request's `Host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Serve HTTPS with these files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: PEM files for rustls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[auth]`: viewer tokens and application JWTs (CONTRACT §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub viewer_token_ttl_secs: u64,
    pub viewer_token_max_ttl_secs: u64,
    /// `[[auth.jwt]]`: each a trusted issuer of application tokens.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt: Vec<JwtConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            viewer_token_ttl_secs: 3600,
            viewer_token_max_ttl_secs: 86_400,
            jwt: Vec::new(),
        }
    }
}

/// One `[[auth.jwt]]` entry. Exactly one of `hs256_secret` and `public_key_file`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Never shown by `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hs256_secret: Option<String>,
    /// A PEM public key: RSA (RS256) or Ed25519 (EdDSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_tenant_claim() -> String {
    "tenant".to_owned()
}

fn default_leeway() -> u64 {
    30
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("public_key_file", &self.public_key_file)
            .field("tenant_claim", &self.tenant_claim)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8480)),
            trusted_proxies: Vec::new(),
            header_read_timeout_secs: 20,
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
            auth_failures_per_minute: 20,
            public_url: None,
            tls: None,
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The embedded store's folder; also where `initial-admin-key` is written.
    pub data: PathBuf,
    /// PostgreSQL URL; when set it wins over `data`. May hold a password, so it is never
    /// shown by `Debug`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    pub synchronous: SyncMode,
    /// Upper bound of one group commit; `None` keeps the store's own default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_events: Option<usize>,
    /// Milliseconds a numbered page may spend counting its total; past them the rest of the
    /// total is estimated and the page says `"total_exact": false`. 0 estimates every total
    /// the store does not keep counted.
    pub total_budget_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from("./bitacora-data"),
            database_url: None,
            synchronous: SyncMode::Full,
            max_batch_events: None,
            total_budget_ms: bitacora_store::total::DEFAULT_BUDGET.as_millis() as u64,
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("data", &self.data)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .field("synchronous", &self.synchronous)
            .field("max_batch_events", &self.max_batch_events)
            .field("total_budget_ms", &self.total_budget_ms)
            .finish()
    }
}

/// SQLite's `synchronous` pragma, as far as durability goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    Off,
    Normal,
    #[default]
    Full,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    pub default_tenant: TenantName,
    /// Action (or `prefix.*`) → severity for events that name none.
    pub severity: BTreeMap<String, Severity>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            default_tenant: TenantName::default_tenant(),
            severity: BTreeMap::new(),
        }
    }
}

impl IngestConfig {
    pub fn policy(&self) -> IngestPolicy {
        IngestPolicy {
            severity_by_action: self.severity.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// What command-line flags can set; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    pub signing_key_file: Option<PathBuf>,
}

/// A configuration that cannot be used; the message names the setting, and the flag or
/// environment variable that sets it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Defaults → `file` → environment → `overrides`.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        if let Some(path) = file.filter(|p| !p.is_file()) {
            return Err(ConfigError(format!(
                "configuration file `{}` does not exist (given with --config or BITACORA_CONFIG)",
                path.display()
            )));
        }
        let config = Self::figment(file, overrides)
            .extract::<Config>()
            .map_err(describe)?;
        config.retention.validate().map_err(ConfigError)?;
        config.integrity.validate().map_err(ConfigError)?;
        if let Some(smtp) = &config.delivery.smtp {
            smtp.check().map_err(ConfigError)?;
        }
        Ok(config)
    }

    /// The layered [`Figment`], for callers that add layers of their own.
    pub fn figment(file: Option<&Path>, overrides: Overrides) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(Env::raw().filter_map(|key| {
                let path = match key.as_str().to_ascii_uppercase().as_str() {
                    "BITACORA_DATA" => "store.data",
                    "BITACORA_DATABASE_URL" => "store.database_url",
                    "BITACORA_LISTEN" => "server.listen",
                    "BITACORA_LOG_LEVEL" => "log.level",
                    "BITACORA_LOG_FORMAT" => "log.format",
                    "BITACORA_SIGNING_KEY_FILE" => "integrity.signing_key_file",
                    _ => return None,
                };
                Some(path.into())
            }))
            .merge(
                Env::prefixed("BITACORA_")
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            );
        let o = overrides;
        if let Some(v) = o.data {
            figment = figment.merge(Serialized::default("store.data", v));
        }
        if let Some(v) = o.database_url {
            figment = figment.merge(Serialized::default("store.database_url", v));
        }
        if let Some(v) = o.listen {
            figment = figment.merge(Serialized::default("server.listen", v));
        }
        if let Some(v) = o.log_level {
            figment = figment.merge(Serialized::default("log.level", v));
        }
        if let Some(v) = o.log_format {
            figment = figment.merge(Serialized::default("log.format", v));
        }
        if let Some(v) = o.signing_key_file {
            figment = figment.merge(Serialized::default("integrity.signing_key_file", v));
        }
        figment
    }

    /// Where the checkpoint signing key lives: `integrity.signing_key_file`, else a sibling of
    /// the data folder named after it plus `.signing-key` (`./bitacora-data` →
    /// `./bitacora-data.signing-key`): outside the store, one key per store. A PostgreSQL
    /// store has no folder, so the setting is required then.
    pub fn signing_key_path(&self) -> Result<PathBuf, ConfigError> {
        if let Some(path) = &self.integrity.signing_key_file {
            return Ok(path.clone());
        }
        if self.store.database_url.is_some() {
            return Err(ConfigError(
                "a PostgreSQL store needs the checkpoint signing key file named: set \
                 --signing-key-file, BITACORA_SIGNING_KEY_FILE or `integrity.signing_key_file` \
                 in the config file (it is created on first start)"
                    .into(),
            ));
        }
        let data = &self.store.data;
        let named = |p: &Path| {
            p.file_name().map(|name| {
                let mut name = name.to_os_string();
                name.push(".signing-key");
                p.with_file_name(name)
            })
        };
        named(data)
            .or_else(|| std::fs::canonicalize(data).ok().and_then(|p| named(&p)))
            .ok_or_else(|| {
                ConfigError(format!(
                    "cannot place the signing key file beside the data folder `{}`: set \
                     --signing-key-file, BITACORA_SIGNING_KEY_FILE or `integrity.signing_key_file`",
                    data.display()
                ))
            })
    }
}

/// The flag and environment variable that set a setting, for error messages.
fn how_to_set(path: &str) -> String {
    let named = match path {
        "store.data" => Some(("--data", "BITACORA_DATA")),
        "store.database_url" => Some(("--database-url", "BITACORA_DATABASE_URL")),
        "server.listen" => Some(("--listen", "BITACORA_LISTEN")),
        "log.level" => Some(("--log-level", "BITACORA_LOG_LEVEL")),
        "log.format" => Some(("--log-format", "BITACORA_LOG_FORMAT")),
        "integrity.signing_key_file" => Some(("--signing-key-file", "BITACORA_SIGNING_KEY_FILE")),
        _ => None,
    };
    let env = path.replace('.', "__").to_ascii_uppercase();
    match named {
        Some((flag, var)) => format!("set it with {flag}, {var} or `{path}` in the config file"),
        None => format!("set it with BITACORA_{env} or `{path}` in the config file"),
    }
}

fn describe(err: figment::Error) -> ConfigError {
    let messages: Vec<String> = err
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if path.is_empty() {
                format!("invalid configuration{source}: {}", e.kind)
            } else {
                format!(
                    "invalid setting `{path}`{source}: {}; {}",
                    e.kind,
                    how_to_set(&path)
                )
            }
        })
        .collect();
    ConfigError(messages.join("\n"))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn default_toml_parses_into_the_defaults() {
        let parsed: Config = Figment::from(Toml::string(DEFAULT_CONFIG_TOML))
            .extract()
            .unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn layers_apply_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "bitacora.toml",
                r#"
                [server]
                listen = "0.0.0.0:1"
                request_timeout_secs = 7
                trusted_proxies = ["10.0.0.0/8"]
                [store]
                data = "/from/file"
                [ingest.severity]
                "user.*" = "high"
                "#,
            )?;
            let file = Path::new("bitacora.toml");

            let c = Config::load(Some(file), Overrides::default()).unwrap();
            assert_eq!(c.server.listen.to_string(), "0.0.0.0:1");
            assert_eq!(c.server.request_timeout_secs, 7);
            assert_eq!(c.store.data, PathBuf::from("/from/file"));
            assert_eq!(
                c.ingest.policy().default_severity("user.login"),
                Severity::High
            );
            assert_eq!(c.server.trusted_proxies.len(), 1);

            jail.set_env("BITACORA_DATA", "/from/env");
            jail.set_env("BITACORA_LISTEN", "127.0.0.1:2");
            jail.set_env("BITACORA_SERVER__REQUEST_TIMEOUT_SECS", "9");
            jail.set_env("BITACORA_CONFIG", "ignored: not a setting");
            let c = Config::load(Some(file), Overrides::default()).unwrap();
            assert_eq!(c.store.data, PathBuf::from("/from/env"));
            assert_eq!(c.server.listen.to_string(), "127.0.0.1:2");
            assert_eq!(c.server.request_timeout_secs, 9);

            let c = Config::load(
                Some(file),
                Overrides {
                    data: Some("/from/flag".into()),
                    listen: Some("127.0.0.1:3".parse().unwrap()),
                    ..Overrides::default()
                },
            )
            .unwrap();
            assert_eq!(c.store.data, PathBuf::from("/from/flag"));
            assert_eq!(c.server.listen.to_string(), "127.0.0.1:3");
            // Untouched by the flags: still the file's.
            assert_eq!(c.server.trusted_proxies.len(), 1);
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_setting_flag_and_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("BITACORA_LISTEN", "not-an-address");
            let err = Config::load(None, Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("server.listen"), "{err}");
            assert!(err.contains("--listen"), "{err}");
            assert!(err.contains("BITACORA_LISTEN"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[store]\nsynchronous = \"sometimes\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml")), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("store.synchronous"), "{err}");
            assert!(err.contains("BITACORA_STORE__SYNCHRONOUS"), "{err}");
            Ok(())
        });
        let err = Config::load(Some(Path::new("/no/such/file.toml")), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--config"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[server]\nlisten_addr = \"127.0.0.1:1\"\n")?;
            assert!(Config::load(Some(Path::new("typo.toml")), Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn the_signing_key_defaults_to_a_sibling_of_the_data_folder() {
        let mut c = Config::default();
        assert_eq!(
            c.signing_key_path().unwrap(),
            PathBuf::from("./bitacora-data.signing-key")
        );
        c.store.data = "/srv/audit/data/".into();
        assert_eq!(
            c.signing_key_path().unwrap(),
            PathBuf::from("/srv/audit/data.signing-key")
        );
        c.integrity.signing_key_file = Some("/etc/bitacora/key".into());
        assert_eq!(
            c.signing_key_path().unwrap(),
            PathBuf::from("/etc/bitacora/key")
        );
        c.integrity.signing_key_file = None;
        c.store.database_url = Some("postgres://db/x".into());
        let err = c.signing_key_path().unwrap_err().to_string();
        assert!(err.contains("--signing-key-file"), "{err}");
        assert!(err.contains("BITACORA_SIGNING_KEY_FILE"), "{err}");
        c.store.database_url = None;
        c.store.data = "/".into();
        assert!(c.signing_key_path().is_err());
    }

    #[test]
    fn integrity_settings_from_env_and_flags() {
        Jail::expect_with(|jail| {
            jail.set_env("BITACORA_SIGNING_KEY_FILE", "/from/env.key");
            jail.set_env("BITACORA_INTEGRITY__CHECKPOINT_INTERVAL_MS", "250");
            let c = Config::load(None, Overrides::default()).unwrap();
            assert_eq!(
                c.integrity.signing_key_file,
                Some(PathBuf::from("/from/env.key"))
            );
            assert_eq!(c.integrity.checkpoint_interval_ms, 250);
            let c = Config::load(
                None,
                Overrides {
                    signing_key_file: Some("/from/flag.key".into()),
                    ..Overrides::default()
                },
            )
            .unwrap();
            assert_eq!(
                c.signing_key_path().unwrap(),
                PathBuf::from("/from/flag.key")
            );
            Ok(())
        });
    }

    #[test]
    fn auth_sections_parse() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "auth.toml",
                r#"
                [server]
                public_url = "https://audit.example.com"
                [server.tls]
                cert_file = "c.pem"
                key_file = "k.pem"
                [auth]
                viewer_token_ttl_secs = 60
                [[auth.jwt]]
                issuer = "https://app.example.com"
                audience = "bitacora"
                hs256_secret = "s3cret"
                [[auth.jwt]]
                public_key_file = "app.pem"
                tenant_claim = "org"
                "#,
            )?;
            let c = Config::load(Some(Path::new("auth.toml")), Overrides::default()).unwrap();
            assert_eq!(
                c.server.public_url.as_deref(),
                Some("https://audit.example.com")
            );
            assert_eq!(c.server.tls.unwrap().key_file, PathBuf::from("k.pem"));
            assert_eq!(c.auth.viewer_token_ttl_secs, 60);
            assert_eq!(c.auth.viewer_token_max_ttl_secs, 86_400);
            assert_eq!(c.auth.jwt.len(), 2);
            assert_eq!(c.auth.jwt[0].tenant_claim, "tenant");
            assert_eq!(c.auth.jwt[0].leeway_secs, 30);
            assert_eq!(c.auth.jwt[1].tenant_claim, "org");
            Ok(())
        });
    }

    #[test]
    fn capture_sources_come_from_the_file_and_the_flag() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "capture.toml",
                r#"
                [[capture]]
                database_url = "postgres://app:pw@db/shop"
                tenant = "acme"
                poll_interval_ms = 250
                name = "shop"
                "#,
            )?;
            let mut c =
                Config::load(Some(Path::new("capture.toml")), Overrides::default()).unwrap();
            // What `serve --capture-database-url` adds.
            c.capture
                .push(CaptureConfig::for_url("postgres://postgres@127.0.0.1/crm"));
            assert_eq!(c.capture.len(), 2);
            assert_eq!(c.capture[0].tenant.as_str(), "acme");
            let drain = c.capture[0].drain_config();
            assert_eq!(drain.name, "shop");
            assert_eq!(drain.poll_interval, std::time::Duration::from_millis(250));
            assert_eq!(c.capture[1].tenant.as_str(), "default");
            assert_eq!(c.capture[1].drain_config().name, "crm@127.0.0.1:5432");
            assert!(!format!("{c:?}").contains("pw@"));

            jail.create_file(
                "bad.toml",
                "[[capture]]\ndatabase_url = \"postgres://db/x\"\ntenant = \"not a tenant!\"\n",
            )?;
            let err = Config::load(Some(Path::new("bad.toml")), Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("capture"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn debug_never_shows_the_database_url() {
        let mut c = Config::default();
        c.auth.jwt.push(JwtConfig {
            issuer: None,
            audience: None,
            hs256_secret: Some("hunter2".into()),
            public_key_file: None,
            tenant_claim: "tenant".into(),
            leeway_secs: 30,
        });
        c.store.database_url = Some("postgres://u:hunter2@db/bitacora".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
