//! Senders, one per kind: how a batch becomes a request, and what the answer means.
//!
//! | answer | meaning |
//! |---|---|
//! | 2xx | accepted: the position advances |
//! | 410 Gone | the receiver is gone for good: the destination is disabled |
//! | 429, 503 | throttled: retried after `Retry-After` (else the backoff) |
//! | anything else, 3xx included (redirects are not followed), timeouts, refused connections | retried with exponential backoff, forever |
//!
//! Nothing is dropped after some number of failures: a stream's events stay in the log, and
//! the destination's position waits for the receiver (its lag shows in the health).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bitacora_core::Event;
use bitacora_core::event::Severity;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::spec::{DestinationSpec, Kind, secret_key};
use crate::ssrf;

/// One request's worth of events of one tenant.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Stable across retries of this batch (the `webhook-id`).
    pub id: String,
    pub tenant: String,
    /// The `seq` range this delivery covers (events in it that the filter excludes are not
    /// sent, but the receiver knows none was skipped silently).
    pub from_seq: u64,
    pub to_seq: u64,
    /// The latest signed checkpoint of the tenant's log (C2SP signed note), if any.
    pub checkpoint: Option<String>,
    /// Each event's JSON text, as its destination's format writes it (see
    /// [`crate::format::render`]); written into the request as it is.
    pub events: Vec<String>,
    /// What the syslog and email senders say about each event, parallel to `events` for those
    /// kinds (see [`needs_meta`]); empty for the others, which do not read it.
    pub meta: Vec<ItemMeta>,
    /// A test delivery (`POST /v1/destinations/{id}/test`), not events of the log.
    pub test: bool,
}

/// True when a sender of `kind` reads [`Batch::meta`].
pub fn needs_meta(kind: Kind) -> bool {
    matches!(kind, Kind::Syslog | Kind::Email)
}

/// An event's facts a sender needs beside its rendered form.
#[derive(Debug, Clone)]
pub struct ItemMeta {
    pub seq: u64,
    pub id: String,
    pub action: String,
    pub severity: Severity,
    /// `occurred_at`.
    pub time: DateTime<Utc>,
    /// Set for `bitacora.alert.fired` events.
    pub firing: Option<FiringMeta>,
}

/// What a firing event says (its `metadata`).
#[derive(Debug, Clone)]
pub struct FiringMeta {
    pub rule_id: String,
    pub rule_name: String,
    pub group_by: Option<String>,
    pub group: String,
    pub count: u64,
    pub seqs: Vec<u64>,
}

impl ItemMeta {
    pub fn of(seq: u64, e: &Event) -> Self {
        let firing = (e.action == crate::alert::ALERT_FIRED).then(|| {
            let m = |k: &str| e.metadata.get(k);
            let text = |k: &str| m(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            FiringMeta {
                rule_id: text("rule_id"),
                rule_name: text("rule_name"),
                group_by: m("group_by").and_then(Value::as_str).map(str::to_owned),
                group: text("group"),
                count: m("count").and_then(Value::as_u64).unwrap_or(0),
                seqs: m("seqs")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default(),
            }
        });
        Self {
            seq,
            id: e.id.to_string(),
            action: e.action.to_string(),
            severity: e.severity,
            time: e.occurred_at,
            firing,
        }
    }
}

/// What the receiver's answer means for the batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted,
    /// `410 Gone`: stop delivering to this destination.
    Gone(String),
    /// Try the same batch again, after `after` when the receiver said when.
    Retry {
        after: Option<Duration>,
        error: String,
    },
}

/// The Standard Webhooks signature header value: `v1,<base64 HMAC-SHA256>` of
/// `{id}.{timestamp}.{body}` with each secret, space-separated.
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|s| secret_key(s))
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Slack's escaping of message text: `&`, `<` and `>` only (the rest is literal).
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_line(e: &Value) -> String {
    let s = |v: &Value| v.as_str().map(str::to_owned);
    let alert = e["action"] == "bitacora.alert.fired";
    let mut line = if alert {
        format!(
            ":rotating_light: *{}* (group `{}`, {} events)",
            slack_escape(&s(&e["metadata"]["rule_name"]).unwrap_or_default()),
            slack_escape(&s(&e["metadata"]["group"]).unwrap_or_default()),
            e["metadata"]["count"]
        )
    } else {
        format!(
            "*{}* `{}`",
            slack_escape(&s(&e["severity"]).unwrap_or_default()),
            slack_escape(&s(&e["action"]).unwrap_or_default())
        )
    };
    if let Some(actor) = s(&e["actor"]["name"]).or_else(|| s(&e["actor"]["id"])) {
        line.push_str(&format!(" by {}", slack_escape(&actor)));
    }
    if let Some(d) = s(&e["description"]) {
        line.push_str(&format!(": {}", slack_escape(&d)));
    }
    line
}

/// Appends `items` (JSON texts) to `out` as a JSON array.
fn json_array(items: &[String], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.as_bytes());
    }
    out.push(b']');
}

/// The fields of a rendered event the Splunk HEC body reads: OCSF's `time` (milliseconds) or
/// the `bitacora` format's `occurred_at`.
#[derive(serde::Deserialize)]
struct TimeFields<'a> {
    time: Option<i64>,
    #[serde(borrow)]
    occurred_at: Option<std::borrow::Cow<'a, str>>,
}

/// The request body for `kind`. The events' texts are copied in as they are, not parsed and
/// serialized again (a stream's batches are large).
pub fn body(kind: Kind, batch: &Batch) -> Vec<u8> {
    let text = |s: &str| serde_json::to_vec(s).expect("JSON");
    match kind {
        Kind::Webhook => {
            let size: usize = batch.events.iter().map(|e| e.len() + 1).sum();
            let mut out =
                Vec::with_capacity(size + 256 + batch.checkpoint.as_ref().map_or(0, String::len));
            out.extend_from_slice(br#"{"type":"#);
            out.extend(text(if batch.test {
                "bitacora.test"
            } else {
                "bitacora.events"
            }));
            out.extend_from_slice(br#","tenant":"#);
            out.extend(text(&batch.tenant));
            out.extend_from_slice(
                format!(
                    r#","from_seq":{},"to_seq":{},"checkpoint":"#,
                    batch.from_seq, batch.to_seq
                )
                .as_bytes(),
            );
            match &batch.checkpoint {
                Some(c) => out.extend(text(c)),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(br#","events":"#);
            json_array(&batch.events, &mut out);
            out.push(b'}');
            out
        }
        Kind::Slack => {
            const MAX_LINES: usize = 20;
            let mut lines: Vec<String> = batch
                .events
                .iter()
                .take(MAX_LINES)
                .map(|e| slack_line(&serde_json::from_str(e).unwrap_or(Value::Null)))
                .collect();
            if batch.events.len() > MAX_LINES {
                lines.push(format!("… and {} more", batch.events.len() - MAX_LINES));
            }
            serde_json::to_vec(&json!({
                "text": format!("bitacora ({}):\n{}", slack_escape(&batch.tenant), lines.join("\n"))
            }))
            .expect("JSON")
        }
        // One message per event (see `send_nats`, `crate::syslog`); an email is text (see
        // `crate::email`): the events are what this body would hold.
        Kind::Nats | Kind::Syslog | Kind::Email => {
            let mut out = Vec::new();
            json_array(&batch.events, &mut out);
            out
        }
        Kind::SplunkHec => {
            // HEC takes several event objects concatenated in one body.
            let mut out = Vec::new();
            for e in &batch.events {
                let fields: Option<TimeFields> = serde_json::from_str(e).ok();
                let time = fields.and_then(|f| {
                    f.time.map(|ms| ms as f64 / 1000.0).or_else(|| {
                        f.occurred_at
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                            .map(|t| t.timestamp_micros() as f64 / 1e6)
                    })
                });
                out.extend_from_slice(
                    br#"{"source":"bitacora","sourcetype":"_json","host":"bitacora","event":"#,
                );
                out.extend_from_slice(e.as_bytes());
                if let Some(t) = time {
                    out.extend_from_slice(br#","time":"#);
                    out.extend(serde_json::to_vec(&t).expect("JSON"));
                }
                out.extend_from_slice(b"}\n");
            }
            out
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `Retry-After` in seconds (the HTTP-date form is rare for webhooks; it falls back to the
/// backoff), capped at an hour.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// Sends one batch and says what the answer means.
pub async fn send(
    client: &reqwest::Client,
    spec: &DestinationSpec,
    batch: &Batch,
    allow_private: bool,
) -> Outcome {
    let url = match reqwest::Url::parse(&spec.url) {
        Ok(u) => u,
        Err(e) => {
            return Outcome::Retry {
                after: None,
                error: format!("bad URL: {e}"),
            };
        }
    };
    if let Err(e) = ssrf::check_literal(&url, allow_private) {
        return Outcome::Retry {
            after: None,
            error: e,
        };
    }
    let body = body(spec.kind, batch);
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    match spec.kind {
        Kind::Webhook => {
            let ts = now_secs();
            request = request
                .header("webhook-id", &batch.id)
                .header("webhook-timestamp", ts.to_string())
                .header(
                    "webhook-signature",
                    signature(
                        &spec.signing_secrets(crate::now_micros()),
                        &batch.id,
                        ts,
                        &body,
                    ),
                );
        }
        Kind::SplunkHec => {
            let token = spec.token.as_deref().unwrap_or_default();
            request = request
                .header(reqwest::header::AUTHORIZATION, format!("Splunk {token}"))
                .header("X-Splunk-Request-Channel", uuid::Uuid::new_v4().to_string());
        }
        Kind::Slack | Kind::Nats | Kind::Syslog | Kind::Email => {}
    }
    match request.body(body).send().await {
        Ok(r) if r.status().is_success() => Outcome::Accepted,
        Ok(r) if r.status() == reqwest::StatusCode::GONE => {
            Outcome::Gone("the receiver answered 410 Gone".into())
        }
        Ok(r) => {
            let status = r.status();
            let after = matches!(status.as_u16(), 429 | 503)
                .then(|| retry_after(r.headers()))
                .flatten();
            Outcome::Retry {
                after,
                error: format!("the receiver answered {status}"),
            }
        }
        Err(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            Outcome::Retry {
                after: None,
                error: if e.is_timeout() {
                    format!("timed out: {message}")
                } else {
                    message
                },
            }
        }
    }
}

/// The fields of a rendered event that hold its id: `id` (`bitacora`) or `metadata.uid`
/// (OCSF). The rest is skipped, not parsed into values.
#[derive(serde::Deserialize)]
struct IdFields<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    metadata: Option<&'a serde_json::value::RawValue>,
}

/// A rendered event's id (its JetStream message id); empty when it has none.
fn message_id(event: &str) -> std::borrow::Cow<'_, str> {
    match serde_json::from_str::<IdFields>(event) {
        Ok(IdFields { id: Some(id), .. }) => id,
        Ok(IdFields {
            metadata: Some(m), ..
        }) => serde_json::from_str::<Value>(m.get())
            .ok()
            .and_then(|m| m["uid"].as_str().map(str::to_owned))
            .map_or(std::borrow::Cow::Borrowed(""), std::borrow::Cow::Owned),
        _ => std::borrow::Cow::Borrowed(""),
    }
}

/// Publishes each event of the batch to JetStream and waits for every acknowledgement. The
/// message id is the event's id (its `metadata.uid` in OCSF), so a batch sent again after a
/// failure or a restart is deduplicated by JetStream within its duplicate window.
pub async fn send_nats(
    jetstream: &async_nats::jetstream::Context,
    subject: &str,
    batch: &Batch,
) -> Outcome {
    let mut acks = Vec::with_capacity(batch.events.len());
    for e in &batch.events {
        let id = message_id(e);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_ref());
        headers.insert("Bitacora-Tenant", batch.tenant.as_str());
        let payload = Vec::from(e.as_bytes());
        match jetstream
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await
        {
            Ok(ack) => acks.push(ack),
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    error: format!("NATS publish: {e}"),
                };
            }
        }
    }
    for ack in acks {
        if let Err(e) = ack.await {
            return Outcome::Retry {
                after: None,
                error: format!("JetStream did not acknowledge: {e}"),
            };
        }
    }
    Outcome::Accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The Standard Webhooks specification's example (its test vectors).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = 1614265330;
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(std::slice::from_ref(&secret), id, ts, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // Two secrets: two signatures, space-separated.
        let two = signature(&[secret.clone(), secret], id, ts, body);
        assert_eq!(two.split(' ').count(), 2);
    }

    fn batch(events: Vec<String>) -> Batch {
        Batch {
            id: "msg_1".into(),
            tenant: "ac\"me".into(),
            from_seq: 3,
            to_seq: 4,
            checkpoint: Some("origin\n5\nroot\n".into()),
            events,
            meta: Vec::new(),
            test: false,
        }
    }

    #[test]
    fn bodies_carry_the_events_bytes_as_they_are() {
        // An event as stored: canonical text, a float written as RFC 8785 writes it.
        let a = r#"{"seq":3,"leaf_hash":"ab","id":"e-3","metadata":{"x":1e+21},"occurred_at":"2026-01-20T10:30:00.5Z"}"#;
        let b =
            r#"{"seq":4,"leaf_hash":"cd","id":"e-\u00e9","occurred_at":"2026-01-20T10:30:01Z"}"#;
        let batch = batch(vec![a.to_owned(), b.to_owned()]);
        let body = body(Kind::Webhook, &batch);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "bitacora.events");
        assert_eq!(v["tenant"], "ac\"me");
        assert_eq!(
            (v["from_seq"].as_u64(), v["to_seq"].as_u64()),
            (Some(3), Some(4))
        );
        assert_eq!(v["checkpoint"], "origin\n5\nroot\n");
        assert_eq!(v["events"][1]["id"], "e-é");
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains(&format!(r#""events":[{a},{b}]}}"#)), "{text}");
        let none = Batch {
            checkpoint: None,
            test: true,
            ..batch.clone()
        };
        let v: Value = serde_json::from_slice(&super::body(Kind::Webhook, &none)).unwrap();
        assert!(v["checkpoint"].is_null());
        assert_eq!(v["type"], "bitacora.test");

        let nats: Value = serde_json::from_slice(&super::body(Kind::Nats, &batch)).unwrap();
        assert_eq!(nats.as_array().unwrap().len(), 2);

        let hec = String::from_utf8(super::body(Kind::SplunkHec, &batch)).unwrap();
        let lines: Vec<Value> = hec
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["time"], 1768905000.5);
        assert_eq!(lines[0]["sourcetype"], "_json");
        assert_eq!(lines[1]["event"]["id"], "e-é");
        assert!(hec.contains(a));
    }

    #[test]
    fn message_ids_are_the_event_ids_in_either_format() {
        assert_eq!(
            message_id(r#"{"actor":{"id":"u"},"id":"e-1","metadata":{"uid":7}}"#),
            "e-1"
        );
        assert_eq!(message_id(r#"{"id":"e-\u00e9"}"#), "e-é");
        // OCSF: `metadata.uid`.
        assert_eq!(
            message_id(r#"{"class_uid":3002,"metadata":{"uid":"e-2","sequence":1}}"#),
            "e-2"
        );
        assert_eq!(message_id("null"), "");
    }

    #[test]
    fn slack_text_is_escaped() {
        assert_eq!(
            slack_escape("<@U1> & <!channel>"),
            "&lt;@U1&gt; &amp; &lt;!channel&gt;"
        );
        let batch = Batch {
            id: "x".into(),
            tenant: "acme".into(),
            from_seq: 0,
            to_seq: 0,
            checkpoint: None,
            events: vec![
                json!({"action": "user.login", "severity": "high",
                       "actor": {"name": "<!here>"}, "description": "a > b"})
                .to_string(),
            ],
            meta: Vec::new(),
            test: false,
        };
        let v: Value = serde_json::from_slice(&body(Kind::Slack, &batch)).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("by &lt;!here&gt;: a &gt; b"), "{text}");
        assert!(!text.contains("<!here>"));
    }
}
