//! Email destinations: alert firings mailed through the SMTP relay of `[delivery.smtp]`.
//!
//! The relay (host, port, TLS, credentials, sender) is the operator's, set in the server's
//! configuration, so its password never sits in the store and an admin creating a
//! destination over the API chooses only the recipients: `mailto:soc@example.com,oncall@example.com`.
//! Every server sharing a store needs the same `[delivery.smtp]` (whichever holds the
//! destination's lease sends).
//!
//! One message per batch of firings, plain text: a summary of each firing (rule, severity,
//! group, the `seq`s of the events that fired it), then the firings themselves as JSON in the
//! destination's format. Its `Message-ID` is derived from the batch id, stable across retries,
//! so a mail system that saw a retried message can tell it is the same one. The relay's
//! `250` after the data is the acceptance; any failure (4xx, 5xx, timeout, refused
//! connection) is retried with backoff, like every other kind.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::send::{Batch, Outcome};

/// Recipients per destination at most.
pub const MAX_RECIPIENTS: usize = 20;

/// `[delivery.smtp]`: the relay email destinations send through.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The relay's host name (or address).
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `starttls` (default: upgrade to TLS, refuse a relay that cannot), `tls` (TLS from the
    /// first byte, "SMTPS"), or `none` (plain text: a relay on the same host or network only).
    pub security: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Set it from the environment: `BITACORA_DELIVERY__SMTP__PASSWORD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The sender: `bitacora <alerts@example.com>` or `alerts@example.com`.
    pub from: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: None,
            security: "starttls".into(),
            username: None,
            password: None,
            from: String::new(),
        }
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .finish()
    }
}

impl SmtpConfig {
    /// Why the settings cannot be used, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("[delivery.smtp] host: the relay's host name is required".into());
        }
        if !matches!(self.security.as_str(), "starttls" | "tls" | "none") {
            return Err(format!(
                "[delivery.smtp] security: `{}`: expected starttls, tls or none",
                self.security
            ));
        }
        self.from
            .parse::<Mailbox>()
            .map_err(|e| format!("[delivery.smtp] from: `{}`: {e}", self.from))?;
        if self.username.is_some() != self.password.is_some() {
            return Err("[delivery.smtp] username and password go together".into());
        }
        Ok(())
    }
}

/// The recipients of a `mailto:` URL (comma-separated addresses, no headers).
pub fn recipients(url: &reqwest::Url) -> Result<Vec<Address>, String> {
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a mailto: URL lists addresses only (no ?subject= or other headers)".into());
    }
    let path = url.path().replace("%20", " ");
    let mut out = Vec::new();
    for raw in path.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let address: Address = raw
            .parse()
            .map_err(|e| format!("`{raw}` is not an email address: {e}"))?;
        out.push(address);
    }
    if out.is_empty() {
        return Err("a mailto: URL needs at least one address".into());
    }
    if out.len() > MAX_RECIPIENTS {
        return Err(format!("at most {MAX_RECIPIENTS} recipients"));
    }
    Ok(out)
}

/// A connection pool to the relay, built from `[delivery.smtp]`.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    pub fn new(config: &SmtpConfig, timeout: Duration) -> Result<Self, String> {
        config.check()?;
        let host = config.host.trim();
        let builder = match config.security.as_str() {
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            "none" => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                host,
            )),
            _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
        }
        .map_err(|e| format!("[delivery.smtp]: {e}"))?;
        let port = config.port.unwrap_or(match config.security.as_str() {
            "tls" => 465,
            "none" => 25,
            _ => 587,
        });
        let mut builder = builder.port(port).timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from: config.from.parse().map_err(|e| format!("from: {e}"))?,
        })
    }

    /// Mails the batch to `to`.
    pub async fn send(&self, to: &[Address], batch: &Batch) -> Outcome {
        let message = match compose(&self.from, to, batch) {
            Ok(m) => m,
            Err(error) => return Outcome::Retry { after: None, error },
        };
        match self.transport.send(message).await {
            Ok(_) => Outcome::Accepted,
            Err(e) => {
                let mut error = format!("SMTP: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    error = format!("{error}: {cause}");
                    source = cause.source();
                }
                Outcome::Retry { after: None, error }
            }
        }
    }
}

/// Control characters out (a subject is one header line).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The subject and text of the message for a batch.
pub fn text(batch: &Batch) -> (String, String) {
    let firings: Vec<_> = batch.meta.iter().filter(|m| m.firing.is_some()).collect();
    let subject = match firings.as_slice() {
        [one] => {
            let f = one.firing.as_ref().expect("filtered");
            format!(
                "[bitacora] {} alert: {} ({}, group {})",
                one.severity.as_str(),
                f.rule_name,
                batch.tenant,
                f.group
            )
        }
        many => format!(
            "[bitacora] {} alerts in {}",
            many.len().max(batch.events.len()),
            batch.tenant
        ),
    };
    let mut body = String::new();
    for m in &batch.meta {
        match &m.firing {
            Some(f) => {
                body.push_str(&format!(
                    "Alert rule \"{}\" fired ({} severity) in tenant {}.\n",
                    f.rule_name,
                    m.severity.as_str(),
                    batch.tenant
                ));
                match &f.group_by {
                    Some(path) => body.push_str(&format!("Group: {path} = {}\n", f.group)),
                    None => body.push_str(&format!("Group: {}\n", f.group)),
                }
                body.push_str(&format!(
                    "Events that fired it ({}): seq {}\n",
                    f.count,
                    f.seqs
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                body.push_str(&format!(
                    "Rule id: {}\nFiring: event {} (seq {}) at {}\n\n",
                    f.rule_id,
                    m.id,
                    m.seq,
                    m.time.to_rfc3339()
                ));
            }
            None => body.push_str(&format!(
                "Event {} (seq {}): {} ({})\n\n",
                m.id,
                m.seq,
                m.action,
                m.severity.as_str()
            )),
        }
    }
    body.push_str(&format!(
        "-- \nThe same, as delivered to every destination (tenant {}, seq {} to {}):\n",
        batch.tenant, batch.from_seq, batch.to_seq
    ));
    for e in &batch.events {
        let value: serde_json::Value = serde_json::from_str(e).unwrap_or_default();
        body.push_str(&serde_json::to_string_pretty(&value).unwrap_or_default());
        body.push('\n');
    }
    (one_line(&subject), body)
}

fn compose(from: &Mailbox, to: &[Address], batch: &Batch) -> Result<Message, String> {
    let (subject, body) = text(batch);
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject)
        .message_id(Some(format!("<{}@bitacora>", batch.id)))
        .header(ContentType::TEXT_PLAIN);
    for address in to {
        builder = builder.to(Mailbox::new(None, address.clone()));
    }
    builder
        .body(body)
        .map_err(|e| format!("cannot build the message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_come_from_the_mailto_url() {
        let r = |s: &str| recipients(&reqwest::Url::parse(s).unwrap());
        assert_eq!(r("mailto:a@example.com,b@example.org").unwrap().len(), 2);
        assert!(r("mailto:").is_err());
        assert!(r("mailto:not-an-address").is_err());
        assert!(r("mailto:a@example.com?subject=x").is_err());
    }

    #[test]
    fn smtp_settings_are_checked_and_the_password_never_shown() {
        let mut c = SmtpConfig {
            host: "smtp.example.com".into(),
            from: "bitacora <alerts@example.com>".into(),
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ..SmtpConfig::default()
        };
        assert_eq!(c.check(), Ok(()));
        assert!(!format!("{c:?}").contains("hunter2"));
        c.security = "ssl".into();
        assert!(c.check().unwrap_err().contains("security"));
        c.security = "tls".into();
        c.from = "nobody".into();
        assert!(c.check().unwrap_err().contains("from"));
    }
}
