//! The audit event: what a client sends ([`EventInput`]), how it is checked and completed
//! ([`EventInput::into_event`]), and what is stored and returned ([`Event`]).
//!
//! Validation happens in two steps. Deserialization ([`EventInput::from_json`]) rejects
//! malformed JSON, wrong types, unknown fields and unknown enum values, naming the field.
//! [`EventInput::into_event`] then checks what types cannot express (the action's alphabet,
//! IP addresses, timestamps, lengths) and fills the defaults (tenant, category, severity,
//! outcome, `id`, `occurred_at`). The result is an [`Event`] whose serialization is stable:
//! re-reading and re-serializing it yields the same canonical bytes, which is what the
//! Merkle leaf hash is computed over.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::FieldError;

/// Longest client-chosen event id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest action name, in bytes (ASCII only).
pub const MAX_ACTION_LEN: usize = 128;
/// Longest value of the short, indexable strings (ids, names, types, sources).
pub const MAX_SHORT_CHARS: usize = 512;
/// Longest free-text value (description, user agent).
pub const MAX_TEXT_CHARS: usize = 16_384;
/// Largest accepted JSON for one event, in bytes.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Most events in one batch request.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Largest batch request body, in bytes.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// The action prefix reserved for events bitacora records about itself.
pub const RESERVED_ACTION_PREFIX: &str = "bitacora.";

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown value `{other}`, expected one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// How much an event matters; ordered, so `min_severity` is a comparison.
    Severity { Low => "low", Medium => "medium", High => "high", Critical => "critical" }
);
string_enum!(
    /// Whether the audited action succeeded.
    Outcome { Success => "success", Failure => "failure" }
);
string_enum!(
    /// What kind of principal acted.
    ActorType { User => "user", Service => "service", System => "system", Anonymous => "anonymous" }
);

impl Severity {
    /// A small integer for storage and comparison (`low` = 0 ... `critical` = 3).
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn from_rank(rank: u8) -> Option<Self> {
        Self::ALL.get(usize::from(rank)).copied()
    }
}

impl Outcome {
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn from_rank(rank: u8) -> Option<Self> {
        Self::ALL.get(usize::from(rank)).copied()
    }
}

// The enum comes from `string_enum!`, which cannot mark a `#[default]` variant.
#[allow(clippy::derivable_impls)]
impl Default for ActorType {
    fn default() -> Self {
        Self::User
    }
}

/// A tenant's name: `[A-Za-z0-9_.-]{1,64}`. Each tenant has its own log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantName(String);

impl TenantName {
    pub const DEFAULT: &'static str = "default";

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err("must be 1 to 64 characters".into());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err("may contain only letters, digits, `_`, `.` and `-`".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Actor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: ActorType,
}

/// The record acted upon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One field-level change. `old`/`new` absent means "not applicable" (an insert has no
/// `old`); `null` means the value was null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    /// Any JSON value.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    pub old: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    /// Any JSON value.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    pub new: Option<Value>,
}

/// Keeps an explicit JSON `null` as `Some(Value::Null)`; only an absent field is `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Where the action came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Context {
    pub fn is_empty(&self) -> bool {
        self.ip.is_none()
            && self.user_agent.is_none()
            && self.request_id.is_none()
            && self.source.is_none()
    }

    /// The parsed client address, if any (always valid in a stored event).
    pub fn ip_addr(&self) -> Option<IpAddr> {
        self.ip.as_deref().and_then(|ip| ip.parse().ok())
    }
}

/// An event as a client sends it. Only `action` is required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// Client-chosen id (1-128 characters), the idempotency key; a UUIDv7 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// RFC 3339; defaults to the time the server received the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub tenant: Option<TenantName>,
    /// `[A-Za-z0-9_.:-]{1,128}`, e.g. `user.role_change` or `ROLE_CHANGE`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Map<String, Value>>,
}

/// A stored event, exactly as `GET /v1/events/{id}` returns it. Its canonical form (RFC 8785
/// JSON without `seq` and `leaf_hash`) is the Merkle leaf's preimage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: String,
    /// 0-based position in the tenant's log; absent in the canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tenant: TenantName,
    #[serde(with = "timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub occurred_at: DateTime<Utc>,
    #[serde(with = "timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub received_at: DateTime<Utc>,
    pub action: String,
    pub category: String,
    pub severity: Severity,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Context::is_empty")]
    pub context: Context,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
    /// Lowercase hex SHA-256 Merkle leaf hash; absent in the canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
}

/// Timestamps are UTC, microsecond precision, RFC 3339 with a `Z` and only as many fractional
/// digits as needed, so that parsing and formatting a stored value is the identity.
pub mod timestamp {
    use super::*;

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// Parses RFC 3339 (any offset) and normalizes to UTC microseconds.
    pub fn parse(s: &str) -> Result<DateTime<Utc>, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
            .map_err(|_| format!("`{s}` is not an RFC 3339 timestamp (e.g. 2026-01-20T10:30:00Z)"))
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Server-side rules applied while completing an event.
#[derive(Debug, Clone, Default)]
pub struct IngestPolicy {
    /// Severity for an event that names none: exact action names, or prefixes written
    /// `user.*`. The longest matching prefix wins; exact names win over prefixes.
    pub severity_by_action: HashMap<String, Severity>,
}

impl IngestPolicy {
    pub fn default_severity(&self, action: &str) -> Severity {
        if let Some(s) = self.severity_by_action.get(action) {
            return *s;
        }
        self.severity_by_action
            .iter()
            .filter_map(|(pattern, s)| {
                let prefix = pattern.strip_suffix('*')?;
                action.starts_with(prefix).then_some((prefix.len(), *s))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, s)| s)
            .unwrap_or(Severity::Low)
    }
}

/// Where an event is being written from: what the server knows besides the body.
#[derive(Debug, Clone)]
pub struct IngestContext<'a> {
    /// The tenant the credential is pinned to, if any: the event may only go there.
    pub pinned_tenant: Option<&'a TenantName>,
    /// When the request arrived.
    pub received_at: DateTime<Utc>,
    /// The client's address, recorded when the event carries none.
    pub client_ip: Option<IpAddr>,
    /// Whether `bitacora.*` actions are allowed (only for the server's own events).
    pub allow_reserved: bool,
}

impl EventInput {
    /// Parses one event from JSON, naming the field at fault on error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FieldError> {
        // serde would also read a struct from an array; an event is an object, say so.
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => {}
            Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                return Err(FieldError::whole(
                    "invalid_event",
                    "an event must be a JSON object",
                ));
            }
            _ => {
                return Err(FieldError::whole(
                    "invalid_json",
                    "malformed JSON: expected an object",
                ));
            }
        }
        // The common case first: a plain parse is about twice as fast as one that tracks the
        // path. Only a failed parse is repeated with the path, to name the field at fault.
        if let Ok(input) = serde_json::from_slice(bytes) {
            return Ok(input);
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed: Result<Self, _> = serde_path_to_error::deserialize(&mut de);
        match parsed {
            Ok(input) => {
                de.end().map_err(|e| {
                    FieldError::whole("invalid_json", format!("malformed JSON: {e}"))
                })?;
                Ok(input)
            }
            Err(err) => Err(describe_serde_error(err, bytes)),
        }
    }

    /// Checks everything types cannot, fills the defaults, and returns the event to store.
    pub fn into_event(
        self,
        policy: &IngestPolicy,
        ctx: &IngestContext<'_>,
    ) -> Result<Event, FieldError> {
        let id = match self.id {
            Some(id) => {
                check_chars("id", &id, 1, MAX_ID_CHARS)?;
                id
            }
            None => uuid::Uuid::now_v7().to_string(),
        };

        check_action(&self.action)?;
        if !ctx.allow_reserved && is_reserved_name(&self.action) {
            return Err(FieldError::new(
                "reserved_action",
                "action",
                "actions in the `bitacora` namespace (`bitacora.*`, any case) are reserved for \
                 the server's own events",
            ));
        }

        let tenant = match (self.tenant, ctx.pinned_tenant) {
            (Some(t), Some(pinned)) if &t != pinned => {
                return Err(FieldError::new(
                    "tenant_forbidden",
                    "tenant",
                    format!("this credential may only write to tenant `{pinned}`"),
                ));
            }
            (Some(t), _) => t,
            (None, Some(pinned)) => pinned.clone(),
            (None, None) => TenantName::default_tenant(),
        };

        let occurred_at = match self.occurred_at {
            Some(s) => timestamp::parse(&s).map_err(|m| FieldError::invalid("occurred_at", m))?,
            None => ctx.received_at,
        };

        let category = match self.category {
            Some(c) => {
                check_chars("category", &c, 1, MAX_SHORT_CHARS)?;
                c
            }
            None => default_category(&self.action).to_owned(),
        };
        if !ctx.allow_reserved && is_reserved_name(&category) {
            return Err(FieldError::new(
                "reserved_action",
                "category",
                "the category `bitacora` is reserved for the server's own events",
            ));
        }

        let actor = self.actor.map(check_actor).transpose()?;
        let target = self.target.map(check_target).transpose()?;
        for (i, change) in self.changes.iter().enumerate() {
            check_change(change).map_err(|e| e.within(&format!("changes[{i}]")))?;
        }
        if let Some(d) = &self.description {
            check_chars("description", d, 0, MAX_TEXT_CHARS)?;
        }
        let mut context = self
            .context
            .map(check_context)
            .transpose()
            .map_err(|e| e.within("context"))?
            .unwrap_or_default();
        if context.ip.is_none() {
            context.ip = ctx.client_ip.map(|ip| normalize_ip(ip).to_string());
        }
        if !ctx.allow_reserved && context.source.as_deref().is_some_and(is_reserved_name) {
            return Err(FieldError::new(
                "reserved_action",
                "context.source",
                "the source `bitacora` is reserved for the server's own events",
            ));
        }

        Ok(Event {
            id,
            seq: None,
            tenant,
            occurred_at,
            received_at: ctx.received_at,
            severity: self
                .severity
                .unwrap_or_else(|| policy.default_severity(&self.action)),
            outcome: self.outcome.unwrap_or(Outcome::Success),
            action: self.action,
            category,
            actor,
            target,
            changes: self.changes,
            description: self.description,
            context,
            metadata: self.metadata.unwrap_or_default(),
            leaf_hash: None,
        })
    }
}

/// Whether a name (an action, a category, a source) is in the namespace bitacora keeps for its
/// own events: `bitacora` itself or `bitacora` followed by a separator (`bitacora.x`,
/// `bitacora_x`, `bitacora:x`), in any case. So a client can neither send an event that reads
/// like self-audit (`BITACORA.key.revoked`) nor one whose default category would be
/// `bitacora` (`bitacora_key`). Words that merely begin with it (`bitacoras`) are free.
pub fn is_reserved_name(name: &str) -> bool {
    const NAMESPACE: &str = "bitacora";
    let Some(head) = name.get(..NAMESPACE.len()) else {
        return false;
    };
    head.eq_ignore_ascii_case(NAMESPACE)
        && name[NAMESPACE.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric())
}

/// The category an action implies: the part before the first `.` or `_`
/// (`user.role_change` → `user`, `ROLE_CHANGE` → `ROLE`), or the whole action.
pub fn default_category(action: &str) -> &str {
    action
        .split(['.', '_'])
        .next()
        .filter(|c| !c.is_empty())
        .unwrap_or(action)
}

/// IPv4-mapped IPv6 addresses are shown and matched as the IPv4 address they carry.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn check_action(action: &str) -> Result<(), FieldError> {
    if action.is_empty() || action.len() > MAX_ACTION_LEN {
        return Err(FieldError::invalid(
            "action",
            format!("must be 1 to {MAX_ACTION_LEN} characters"),
        ));
    }
    if let Some(bad) = action
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(FieldError::invalid(
            "action",
            format!("may contain only letters, digits, `_`, `.`, `:` and `-` (found {bad:?})"),
        ));
    }
    Ok(())
}

fn check_chars(field: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(FieldError::invalid(
            field,
            if min == 0 {
                format!("must be at most {max} characters")
            } else {
                format!("must be {min} to {max} characters")
            },
        ));
    }
    if field != "description" && value.chars().any(char::is_control) {
        return Err(FieldError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn check_opt(field: &str, value: &Option<String>, max: usize) -> Result<(), FieldError> {
    match value {
        Some(v) => check_chars(field, v, 1, max),
        None => Ok(()),
    }
}

fn check_actor(actor: Actor) -> Result<Actor, FieldError> {
    check_opt("actor.id", &actor.id, MAX_SHORT_CHARS)?;
    check_opt("actor.name", &actor.name, MAX_SHORT_CHARS)?;
    check_opt("actor.email", &actor.email, MAX_SHORT_CHARS)?;
    Ok(actor)
}

fn check_target(target: Target) -> Result<Target, FieldError> {
    check_chars("target.type", &target.kind, 1, MAX_SHORT_CHARS)?;
    check_opt("target.id", &target.id, MAX_SHORT_CHARS)?;
    check_opt("target.name", &target.name, MAX_SHORT_CHARS)?;
    Ok(target)
}

fn check_change(change: &Change) -> Result<(), FieldError> {
    check_chars("field", &change.field, 1, MAX_SHORT_CHARS)?;
    check_opt("label", &change.label, MAX_SHORT_CHARS)
}

fn check_context(mut context: Context) -> Result<Context, FieldError> {
    if let Some(ip) = &context.ip {
        let parsed: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| FieldError::invalid("ip", format!("`{ip}` is not an IP address")))?;
        context.ip = Some(normalize_ip(parsed).to_string());
    }
    if let Some(ua) = &context.user_agent {
        check_chars("user_agent", ua, 1, MAX_TEXT_CHARS)?;
    }
    check_opt("request_id", &context.request_id, MAX_SHORT_CHARS)?;
    check_opt("source", &context.source, MAX_SHORT_CHARS)?;
    Ok(context)
}

/// Turns a serde error into a field error: syntax errors are `invalid_json` (400), the
/// rest (types, unknown fields and values) are `invalid_field`/`missing_field`/`unknown_field`.
fn describe_serde_error(
    err: serde_path_to_error::Error<serde_json::Error>,
    bytes: &[u8],
) -> FieldError {
    use serde_json::error::Category;

    let path = err.path().to_string();
    let inner = err.into_inner();
    let message = strip_position(&inner.to_string());
    let at = |path: String| {
        if path == "." {
            "event".to_owned()
        } else {
            path
        }
    };
    match inner.classify() {
        // Valid JSON that serde_json still cannot hold: say which limit, not "wrong type".
        Category::Syntax if message.starts_with("recursion limit exceeded") => FieldError::new(
            "invalid_field",
            at(path),
            "is nested too deeply (JSON nesting is limited to 127 levels inside the event)",
        ),
        Category::Syntax if message.starts_with("number out of range") => FieldError::new(
            "invalid_field",
            at(path),
            "holds a number out of range (larger than a 64-bit floating-point number can hold)",
        ),
        // serde_json reports a number or boolean where an enum's string belongs as a syntax
        // error; if the document is valid JSON, it is the field's type that is wrong.
        Category::Syntax
            if path != "." && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() =>
        {
            FieldError::invalid(path, "has the wrong type: expected a string")
        }
        Category::Syntax | Category::Eof | Category::Io => {
            FieldError::whole("invalid_json", format!("malformed JSON: {message}"))
        }
        Category::Data => {
            let parent = if path == "." { String::new() } else { path };
            let join = |name: &str| {
                if parent.is_empty() {
                    name.to_owned()
                } else {
                    format!("{parent}.{name}")
                }
            };
            if let Some(name) = backticked_after(&message, "missing field `") {
                FieldError::new("missing_field", join(name), format!("`{name}` is required"))
            } else if message.starts_with("unknown field `") {
                // The path already ends with the unknown field's name.
                FieldError::new("unknown_field", parent, message.clone())
            } else if parent.is_empty() {
                FieldError::whole("invalid_event", message)
            } else {
                FieldError::invalid(parent, message)
            }
        }
    }
}

fn backticked_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// serde_json appends " at line L column C"; for a field error the path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_of_valid_json_are_named() {
        let deep = format!(
            r#"{{"action":"x","metadata":{{"a":{}1{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let err = EventInput::from_json(deep.as_bytes()).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{err}");
        assert!(
            err.field.as_deref().unwrap().starts_with("metadata"),
            "{err}"
        );
        let err = EventInput::from_json(br#"{"action":"x","metadata":{"n":1e400}}"#).unwrap_err();
        assert!(err.message.contains("out of range"), "{err}");
        assert_eq!(err.field.as_deref(), Some("metadata.n"), "{err}");
    }

    #[test]
    fn the_bitacora_namespace_is_reserved_in_any_case() {
        for name in [
            "bitacora",
            "bitacora.x",
            "BITACORA.key.revoked",
            "Bitacora_key",
            "bitacora:x",
            "bitacora-x",
        ] {
            assert!(is_reserved_name(name), "{name}");
        }
        for name in [
            "bitacoras",
            "bitacorax.y",
            "user.bitacora",
            "mi_bitacora",
            "bitacor",
            "",
            "é",
        ] {
            assert!(!is_reserved_name(name), "{name}");
        }
    }

    fn ctx() -> IngestContext<'static> {
        IngestContext {
            pinned_tenant: None,
            received_at: timestamp::parse("2026-01-20T10:30:00.123456789Z").unwrap(),
            client_ip: Some("10.0.0.9".parse().unwrap()),
            allow_reserved: false,
        }
    }

    fn complete(json: &str) -> Result<Event, FieldError> {
        EventInput::from_json(json.as_bytes())?.into_event(&IngestPolicy::default(), &ctx())
    }

    #[test]
    fn only_action_is_required_and_defaults_are_filled() {
        let e = complete(r#"{"action":"user.role_change"}"#).unwrap();
        assert_eq!(e.tenant.as_str(), "default");
        assert_eq!(e.category, "user");
        assert_eq!(e.severity, Severity::Low);
        assert_eq!(e.outcome, Outcome::Success);
        assert_eq!(e.occurred_at, e.received_at);
        assert_eq!(e.context.ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(uuid::Uuid::parse_str(&e.id).unwrap().get_version_num(), 7);
        assert_eq!(
            timestamp::format(&e.received_at),
            "2026-01-20T10:30:00.123456Z"
        );
    }

    #[test]
    fn category_defaults_from_the_action() {
        assert_eq!(default_category("user.role_change"), "user");
        assert_eq!(default_category("ROLE_CHANGE"), "ROLE");
        assert_eq!(default_category("login"), "login");
        assert_eq!(default_category(".odd"), ".odd");
    }

    #[test]
    fn severity_map_prefers_exact_then_longest_prefix() {
        let policy = IngestPolicy {
            severity_by_action: [
                ("user.*".to_owned(), Severity::Medium),
                ("user.role_*".to_owned(), Severity::High),
                ("user.role_change".to_owned(), Severity::Critical),
            ]
            .into(),
        };
        assert_eq!(
            policy.default_severity("user.role_change"),
            Severity::Critical
        );
        assert_eq!(policy.default_severity("user.role_drop"), Severity::High);
        assert_eq!(policy.default_severity("user.login"), Severity::Medium);
        assert_eq!(policy.default_severity("device.create"), Severity::Low);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"action":"a b"}"#, "invalid_field", Some("action")),
            (r#"{}"#, "missing_field", Some("action")),
            (
                r#"{"action":"x","severity":"urgent"}"#,
                "invalid_field",
                Some("severity"),
            ),
            (
                r#"{"action":"x","actor":{"type":"robot"}}"#,
                "invalid_field",
                Some("actor.type"),
            ),
            (
                r#"{"action":"x","context":{"ip":"999.1.1.1"}}"#,
                "invalid_field",
                Some("context.ip"),
            ),
            (
                r#"{"action":"x","changes":[{"old":1}]}"#,
                "missing_field",
                Some("changes[0].field"),
            ),
            (
                r#"{"action":"x","acter":{}}"#,
                "unknown_field",
                Some("acter"),
            ),
            (
                r#"{"action":"x","occurred_at":"yesterday"}"#,
                "invalid_field",
                Some("occurred_at"),
            ),
            (
                r#"{"action":"x","tenant":"a/b"}"#,
                "invalid_field",
                Some("tenant"),
            ),
            (r#"{"action":42}"#, "invalid_field", Some("action")),
            (
                r#"{"action":"x","severity":3}"#,
                "invalid_field",
                Some("severity"),
            ),
            (
                r#"{"action":"x","outcome":true}"#,
                "invalid_field",
                Some("outcome"),
            ),
            (
                r#"{"action":"x","actor":{"type":1}}"#,
                "invalid_field",
                Some("actor.type"),
            ),
            (
                r#"{"action":"bitacora.key_created"}"#,
                "reserved_action",
                Some("action"),
            ),
            (
                r#"{"action":"BITACORA.key.revoked"}"#,
                "reserved_action",
                Some("action"),
            ),
            (
                r#"{"action":"bitacora"}"#,
                "reserved_action",
                Some("action"),
            ),
            (
                r#"{"action":"Bitacora_key"}"#,
                "reserved_action",
                Some("action"),
            ),
            (
                r#"{"action":"bitacora:x"}"#,
                "reserved_action",
                Some("action"),
            ),
            (
                r#"{"action":"x","category":"Bitacora"}"#,
                "reserved_action",
                Some("category"),
            ),
            (
                r#"{"action":"x","context":{"source":"bitacora"}}"#,
                "reserved_action",
                Some("context.source"),
            ),
            (r#"{"action":"x","id":""}"#, "invalid_field", Some("id")),
            (r#"{"action":"x""#, "invalid_json", None),
            (r#"[1]"#, "invalid_event", None),
            (r#"{"action":"x"} trailing"#, "invalid_json", None),
        ];
        for (json, code, field) in cases {
            let err = complete(json).unwrap_err();
            assert_eq!(
                (err.code, err.field.as_deref()),
                (code, field),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn explicit_null_differs_from_absent_in_changes() {
        let e = complete(r#"{"action":"x","changes":[{"field":"a","old":null,"new":1}]}"#).unwrap();
        assert_eq!(e.changes[0].old, Some(Value::Null));
        let json = serde_json::to_string(&e.changes[0]).unwrap();
        assert_eq!(json, r#"{"field":"a","old":null,"new":1}"#);
    }

    #[test]
    fn pinned_tenant_is_the_default_and_the_only_choice() {
        let pinned = TenantName::parse("acme").unwrap();
        let c = IngestContext {
            pinned_tenant: Some(&pinned),
            ..ctx()
        };
        let policy = IngestPolicy::default();
        let e = EventInput::from_json(br#"{"action":"x"}"#)
            .unwrap()
            .into_event(&policy, &c)
            .unwrap();
        assert_eq!(e.tenant, pinned);
        let err = EventInput::from_json(br#"{"action":"x","tenant":"other"}"#)
            .unwrap()
            .into_event(&policy, &c)
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("tenant"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_normalized() {
        let e = complete(r#"{"action":"x","context":{"ip":"::ffff:192.168.1.100"}}"#).unwrap();
        assert_eq!(e.context.ip.as_deref(), Some("192.168.1.100"));
    }
}
