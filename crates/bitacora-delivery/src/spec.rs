//! What an admin asks for: the settings of a destination and of an alert rule, checked once
//! when they are created ([`DestinationSpec::check`], [`RuleSpec::check`]) and stored as the
//! JSON of these types (the store keeps them opaque).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bitacora_core::TenantName;
use bitacora_core::event::Severity;
use bitacora_core::query::{EventFilter, EventQuery};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

/// A request that cannot be accepted, naming the field (the server answers `422`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How a destination receives: the kinds this build delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// HTTP(S) POST signed per the Standard Webhooks specification.
    Webhook,
    /// A Slack incoming webhook: one message per event, text escaped as Slack requires.
    Slack,
    /// Splunk's HTTP Event Collector (`/services/collector/event`), one JSON object per event.
    SplunkHec,
    /// NATS JetStream: `nats://host:port/<subject>`, one message per event with the event id
    /// as `Nats-Msg-Id`, so JetStream drops a redelivered duplicate within its window.
    Nats,
    /// Syslog: `syslog://host[:514]` (TCP) or `syslogs://host[:6514]` (TLS), one RFC 5424
    /// message per event, octet-counted (see [`crate::syslog`]).
    Syslog,
    /// Email over the SMTP relay of `[delivery.smtp]`: `mailto:a@example.com,b@example.com`,
    /// alert firings only (see [`crate::email`]).
    Email,
}

impl Kind {
    pub const ACCEPTED: &'static str = "webhook, slack, splunk_hec, nats, syslog, email";

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Slack => "slack",
            Kind::SplunkHec => "splunk_hec",
            Kind::Nats => "nats",
            Kind::Syslog => "syslog",
            Kind::Email => "email",
        }
    }
}

/// How events are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The event as `GET /v1/events/{id}` returns it (it carries `tenant`).
    #[default]
    Bitacora,
    /// OCSF 1.x (see [`crate::format::ocsf`]).
    Ocsf,
}

/// The search parameters a stored filter may use (the pagination and order ones are the
/// stream's business, and the tenant is the destination's).
pub const FILTER_PARAMETERS: &[&str] = &[
    "action",
    "category",
    "severity",
    "min_severity",
    "outcome",
    "actor_id",
    "actor",
    "target_type",
    "target_id",
    "ip",
    "source",
    "since",
    "until",
    "q",
];

/// A search filter as the API takes it: `{"action": "user.*", "min_severity": "high"}`.
pub type FilterParams = BTreeMap<String, String>;

/// Parses stored filter parameters into the search filter they mean.
pub fn parse_filter(params: &FilterParams, field: &str) -> Result<EventFilter, SpecError> {
    if let Some(name) = params
        .keys()
        .find(|k| !FILTER_PARAMETERS.contains(&k.as_str()))
    {
        return Err(SpecError::new(
            format!("{field}.{name}"),
            format!(
                "`{name}` is not a filter (accepted: {})",
                FILTER_PARAMETERS.join(", ")
            ),
        ));
    }
    let pairs = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    EventQuery::parse(pairs, &TenantName::default_tenant())
        .map(|q| q.filter)
        .map_err(|e| {
            SpecError::new(
                format!("{field}.{}", e.field.unwrap_or_default()),
                e.message,
            )
        })
}

/// A destination's settings, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    pub kind: Kind,
    pub url: String,
    #[serde(default)]
    pub format: Format,
    /// Which events a stream receives (empty: all).
    #[serde(default)]
    pub filter: FilterParams,
    /// True: every matching event is delivered (a stream). False: only the firings of the
    /// alert rules that name this destination.
    #[serde(default)]
    pub stream: bool,
    /// Webhook signing secrets (`whsec_` + base64), the newest first: every one signs each
    /// delivery, so a receiver can move to a new secret without missing a delivery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Splunk HEC token (`Authorization: Splunk <token>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Webhooks being rotated: when the older of the two `secrets` stops signing (µs since
    /// the epoch). `None` with two secrets: both sign until one is retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<i64>,
    /// `syslogs://`: certificates (PEM) trusted besides the public authorities, for a
    /// receiver with a private or self-signed certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Syslog: the RFC 5424 facility (0-23; default 13, "log audit").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<u8>,
    /// `syslogs://` with mutual TLS: the certificate chain (PEM) presented to a receiver that
    /// asks for a client certificate, leaf first; with `client_key_pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `client_cert_pem`. A secret, like
    /// `secrets` and `token`: stored, never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_pem: Option<String>,
}

/// A new `whsec_` secret: 32 random bytes, base64, as the Standard Webhooks libraries expect.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!("whsec_{}", STANDARD.encode(key))
}

/// The key bytes of a `whsec_` secret.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let raw = secret.strip_prefix("whsec_")?;
    STANDARD
        .decode(raw)
        .ok()
        .filter(|k| (16..=64).contains(&k.len()))
}

impl DestinationSpec {
    /// Checks everything that does not need the network (the address check is
    /// [`crate::ssrf::check_url`], done by the caller).
    pub fn check(&self) -> Result<(), SpecError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| SpecError::new("url", format!("not a URL: {e}")))?;
        match (self.kind, url.scheme()) {
            (Kind::Nats, "nats" | "tls") => {
                if nats_subject(&url).is_none() {
                    return Err(SpecError::new(
                        "url",
                        "the path must be a NATS subject: nats://host:4222/bitacora.events",
                    ));
                }
            }
            (Kind::Nats, _) => {
                return Err(SpecError::new("url", "must be a nats:// or tls:// URL"));
            }
            (Kind::Syslog, "syslog" | "syslogs") => {
                if !matches!(url.path(), "" | "/") || url.query().is_some() {
                    return Err(SpecError::new(
                        "url",
                        "a syslog URL is only a host and port: syslogs://siem.example.com:6514",
                    ));
                }
            }
            (Kind::Syslog, _) => {
                return Err(SpecError::new(
                    "url",
                    "must be a syslog:// (TCP) or syslogs:// (TLS) URL",
                ));
            }
            (Kind::Email, "mailto") => {
                crate::email::recipients(&url).map_err(|m| SpecError::new("url", m))?;
            }
            (Kind::Email, _) => {
                return Err(SpecError::new(
                    "url",
                    "must be a mailto: URL listing the recipients: mailto:soc@example.com,oncall@example.com",
                ));
            }
            (_, "http" | "https") => {}
            _ => return Err(SpecError::new("url", "must be an http:// or https:// URL")),
        }
        if self.kind != Kind::Email && url.host_str().is_none_or(str::is_empty) {
            return Err(SpecError::new("url", "has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(SpecError::new(
                "url",
                "must not hold credentials (use the destination's secret or token)",
            ));
        }
        parse_filter(&self.filter, "filter")?;
        if self.secrets.len() > 2 {
            return Err(SpecError::new(
                "secrets",
                "at most two (the new one and the one being retired)",
            ));
        }
        for (i, s) in self.secrets.iter().enumerate() {
            if secret_key(s).is_none() {
                return Err(SpecError::new(
                    format!("secrets[{i}]"),
                    "expected `whsec_` followed by 16 to 64 bytes in base64",
                ));
            }
        }
        if let Some(pem) = &self.ca_pem {
            if url.scheme() != "syslogs" {
                return Err(SpecError::new(
                    "ca_pem",
                    "only syslogs:// destinations take certificates to trust",
                ));
            }
            crate::syslog::parse_ca(pem).map_err(|m| SpecError::new("ca_pem", m))?;
        }
        match (&self.client_cert_pem, &self.client_key_pem) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(SpecError::new(
                    "client_key_pem",
                    "a client certificate needs its private key",
                ));
            }
            (None, Some(_)) => {
                return Err(SpecError::new(
                    "client_cert_pem",
                    "a private key needs its client certificate",
                ));
            }
            (Some(cert), Some(key)) => {
                if self.kind != Kind::Syslog || url.scheme() != "syslogs" {
                    return Err(SpecError::new(
                        "client_cert_pem",
                        "only syslogs:// destinations present a client certificate",
                    ));
                }
                crate::syslog::client_identity(cert, key)
                    .map_err(|(field, m)| SpecError::new(field, m))?;
            }
        }
        if let Some(f) = self.facility {
            if self.kind != Kind::Syslog {
                return Err(SpecError::new(
                    "facility",
                    "only syslog destinations have one",
                ));
            }
            if f > 23 {
                return Err(SpecError::new("facility", "an RFC 5424 facility, 0 to 23"));
            }
        }
        match self.kind {
            Kind::Email if self.stream => Err(SpecError::new(
                "stream",
                "email destinations receive alert firings only (use a rule naming them)",
            )),
            Kind::Webhook if self.token.is_some() => Err(SpecError::new(
                "token",
                "webhooks are signed with `secrets`, not a token",
            )),
            Kind::SplunkHec if self.token.as_deref().is_none_or(str::is_empty) => Err(
                SpecError::new("token", "a Splunk HEC destination needs its HEC token"),
            ),
            Kind::Slack | Kind::SplunkHec | Kind::Nats | Kind::Syslog | Kind::Email
                if !self.secrets.is_empty() =>
            {
                Err(SpecError::new(
                    "secrets",
                    "only webhook destinations are signed",
                ))
            }
            Kind::Syslog | Kind::Email if self.token.is_some() => Err(SpecError::new(
                "token",
                "only splunk_hec destinations take a token",
            )),
            _ => Ok(()),
        }
    }
}

impl DestinationSpec {
    /// The secrets that sign a delivery at `now` (µs): the newest, and the previous one until
    /// it expires.
    pub fn signing_secrets(&self, now: i64) -> Vec<String> {
        self.secrets
            .iter()
            .enumerate()
            .filter(|(i, _)| *i == 0 || self.previous_secret_expires_at.is_none_or(|at| now < at))
            .map(|(_, s)| s.clone())
            .collect()
    }
}

/// The subject a `nats://host:port/<subject>` URL publishes to.
pub fn nats_subject(url: &reqwest::Url) -> Option<String> {
    let subject = url.path().trim_start_matches('/');
    let valid = !subject.is_empty()
        && subject.len() <= 256
        && subject.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        });
    valid.then(|| subject.to_owned())
}

/// `match.changes`: the event changed `field` (to `to`, when given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeMatch {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<serde_json::Value>,
}

/// `match`: search filters, plus an optional field change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MatchSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeMatch>,
    #[serde(flatten)]
    pub filter: FilterParams,
}

/// `threshold`: fire once `count` matches with the same `group_by` value fall within `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub count: u32,
    /// `<n>s|m|h|d`.
    pub window: String,
    /// An event field by its JSON path (`actor.id`, `context.ip`); absent: one group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
}

/// An alert rule's settings, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(rename = "match", default)]
    pub matcher: MatchSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Disabled by an admin: not evaluated, fires nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// When an admin last enabled it again (µs): it evaluates the events received since, and
    /// nothing of the time it was disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_at: Option<i64>,
    /// When an admin last disabled it (µs), kept after it is enabled again: an evaluator that
    /// read the rule before the change drops a firing completed by an event received since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
}

/// Most matches a threshold may count (the evaluator keeps that many seqs per group).
pub const MAX_THRESHOLD: u32 = 10_000;

impl RuleSpec {
    /// Checks the rule; `destination_exists` tells whether a destination id is known.
    pub fn check(&self, destination_exists: impl Fn(&str) -> bool) -> Result<(), SpecError> {
        parse_filter(&self.matcher.filter, "match")?;
        if let Some(c) = &self.matcher.changes
            && (c.field.is_empty() || c.field.len() > 128)
        {
            return Err(SpecError::new("match.changes.field", "1 to 128 characters"));
        }
        if let Some(t) = &self.threshold {
            if !(1..=MAX_THRESHOLD).contains(&t.count) {
                return Err(SpecError::new(
                    "threshold.count",
                    format!("from 1 to {MAX_THRESHOLD}"),
                ));
            }
            parse_duration(&t.window).map_err(|m| SpecError::new("threshold.window", m))?;
            if let Some(path) = &t.group_by
                && (path.is_empty() || path.len() > 128 || path.split('.').any(|p| p.is_empty()))
            {
                return Err(SpecError::new(
                    "threshold.group_by",
                    "a dotted JSON path such as `actor.id` or `context.ip`",
                ));
            }
        }
        if let Some(s) = &self.suppress_for {
            parse_duration(s).map_err(|m| SpecError::new("suppress_for", m))?;
        }
        if self.destinations.len() > 16 {
            return Err(SpecError::new("destinations", "at most 16"));
        }
        for (i, d) in self.destinations.iter().enumerate() {
            if !destination_exists(d) {
                return Err(SpecError::new(
                    format!("destinations[{i}]"),
                    format!("no destination `{d}`"),
                ));
            }
        }
        Ok(())
    }
}

/// `<n>s|m|h|d` in microseconds (at least one second, at most a year).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad = || format!("`{s}`: expected a duration such as `30s`, `10m`, `2h` or `7d`");
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => n,
        'm' => n.checked_mul(60).ok_or_else(bad)?,
        'h' => n.checked_mul(3600).ok_or_else(bad)?,
        'd' => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if !(1..=366 * 86_400).contains(&secs) {
        return Err(format!("`{s}`: from 1 second to 366 days"));
    }
    Ok(secs * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str) -> DestinationSpec {
        DestinationSpec {
            kind: Kind::Webhook,
            url: url.into(),
            format: Format::Bitacora,
            filter: FilterParams::new(),
            stream: true,
            secrets: vec![new_secret()],
            token: None,
            previous_secret_expires_at: None,
            ca_pem: None,
            client_cert_pem: None,
            client_key_pem: None,
            facility: None,
        }
    }

    #[test]
    fn destinations_are_checked_field_by_field() {
        assert!(webhook("https://siem.example.com/in").check().is_ok());
        for (url, field) in [
            ("ftp://x.example.com/", "url"),
            ("not a url", "url"),
            ("https://u:p@x.example.com/", "url"),
        ] {
            assert_eq!(webhook(url).check().unwrap_err().field, field, "{url}");
        }
        let mut d = webhook("https://x.example.com/");
        d.filter.insert("limit".into(), "5".into());
        assert_eq!(d.check().unwrap_err().field, "filter.limit");
        d.filter.clear();
        d.filter.insert("severity".into(), "huge".into());
        assert_eq!(d.check().unwrap_err().field, "filter.severity");
        let mut d = webhook("https://x.example.com/");
        d.secrets = vec!["whsec_short".into()];
        assert_eq!(d.check().unwrap_err().field, "secrets[0]");
        let mut d = webhook("https://x.example.com/");
        d.kind = Kind::SplunkHec;
        d.secrets.clear();
        assert_eq!(d.check().unwrap_err().field, "token");
    }

    #[test]
    fn secrets_are_whsec_base64_of_32_bytes() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).unwrap().len(), 32);
        assert_ne!(new_secret(), s);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), 600_000_000);
        assert_eq!(parse_duration("1d").unwrap(), 86_400_000_000);
        for bad in ["", "10", "0s", "5w", "-3s", "400d", "m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_are_checked() {
        let rule: RuleSpec = serde_json::from_value(serde_json::json!({
            "match": {"action": "user.login", "outcome": "failure"},
            "threshold": {"count": 5, "window": "10m", "group_by": "context.ip"},
            "suppress_for": "1h",
            "destinations": ["d1"]
        }))
        .unwrap();
        assert!(rule.check(|d| d == "d1").is_ok());
        assert_eq!(rule.check(|_| false).unwrap_err().field, "destinations[0]");
        let mut r = rule.clone();
        r.threshold.as_mut().unwrap().count = 0;
        assert_eq!(r.check(|_| true).unwrap_err().field, "threshold.count");
        let mut r = rule.clone();
        r.threshold.as_mut().unwrap().group_by = Some("actor..id".into());
        assert_eq!(r.check(|_| true).unwrap_err().field, "threshold.group_by");
        let mut r = rule;
        r.matcher.filter.insert("order".into(), "asc".into());
        assert_eq!(r.check(|_| true).unwrap_err().field, "match.order");
    }
}
