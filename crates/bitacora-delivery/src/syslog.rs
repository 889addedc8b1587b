//! Syslog destinations: one RFC 5424 message per event, over TCP (`syslog://host[:514]`) or
//! TLS (`syslogs://host[:6514]`, RFC 5425), framed by octet counting (RFC 6587 §3.4.1, the
//! only framing RFC 5425 allows): `MSG-LEN SP SYSLOG-MSG`.
//!
//! Written by hand rather than with `fasyslog` (which builds here): that crate writes with
//! blocking `std::net` sockets, frames TCP by a trailing newline (non-transparent framing, which
//! an event's text can break), and stamps every message with the time of sending; a stream
//! needs async sockets under the delivery timeout, octet counting, and the event's own time.
//!
//! A message: `<PRI>1 TIMESTAMP HOSTNAME bitacora PROCID MSGID [bitacora@32473 tenant=".."
//! seq=".." id=".."] BOM MSG`, where PRI is the destination's facility (default 13, "log
//! audit") with the event's severity (`low` 6 informational, `medium` 5 notice, `high` 4
//! warning, `critical` 2 critical), TIMESTAMP the event's `occurred_at`, MSGID its action, and
//! MSG the event in the destination's format (JSON, UTF-8, so it starts with the BOM RFC 5424
//! §6.4 asks for). The SD-ID uses 32473, the private enterprise number RFC 5612 reserves for
//! documentation, since bitacora has none of its own.
//!
//! **Acceptance.** Syslog has no acknowledgement: a batch counts as accepted once every byte
//! was written and flushed to the connection. Before each batch the connection is checked for
//! an end-of-stream or error from the receiver (a receiver never sends on a syslog
//! connection), so a receiver that closed or restarted gets the batch on a new connection,
//! not into a dead socket. A receiver that crashes with bytes it had not read yet can lose
//! them; that is inherent in RFC 5425/6587 (use `webhook` or `nats` where a delivery must be
//! confirmed by the receiver).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bitacora_core::event::Severity;
use chrono::SecondsFormat;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::send::ItemMeta;

/// The structured-data id of bitacora's parameters (see the module doc for the number).
pub const SD_ID: &str = "bitacora@32473";
/// RFC 5424 facility 13: log audit.
pub const DEFAULT_FACILITY: u8 = 13;

/// RFC 5424 severity of an event severity.
pub fn severity_code(s: Severity) -> u8 {
    match s {
        Severity::Low => 6,
        Severity::Medium => 5,
        Severity::High => 4,
        Severity::Critical => 2,
    }
}

/// `s` as a header field: printable US-ASCII (33..=126) only, at most `max` octets, `-` when
/// empty (RFC 5424 §6: header fields are PRINTUSASCII, NILVALUE when absent).
fn header_field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .take(max)
        .collect();
    if out.is_empty() { "-".into() } else { out }
}

/// An SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn param_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// This machine's host name, for the HOSTNAME field (Linux; `-` elsewhere).
pub fn local_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    header_field(name.trim(), 255)
}

/// One RFC 5424 message (without its frame). `body` is the event in the destination's format.
pub fn message(
    facility: u8,
    hostname: &str,
    procid: u32,
    tenant: &str,
    item: &ItemMeta,
    body: &[u8],
) -> Vec<u8> {
    let pri = u16::from(facility.min(23)) * 8 + u16::from(severity_code(item.severity));
    let time = item.time.to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut out = format!(
        "<{pri}>1 {time} {host} bitacora {procid} {msgid} [{SD_ID} tenant=\"{tenant}\" seq=\"{seq}\" id=\"{id}\"] ",
        host = header_field(hostname, 255),
        msgid = header_field(&item.action, 32),
        tenant = param_value(tenant),
        seq = item.seq,
        id = param_value(&item.id),
    )
    .into_bytes();
    out.extend_from_slice("\u{feff}".as_bytes());
    out.extend_from_slice(body);
    out
}

/// Appends `msg` octet-counted: its length in decimal, a space, the message.
pub fn frame(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// Where a `syslog://` or `syslogs://` URL points, with its default port.
pub fn endpoint(url: &reqwest::Url) -> Option<(String, u16, bool)> {
    let tls = match url.scheme() {
        "syslog" => false,
        "syslogs" => true,
        _ => return None,
    };
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((
        host.to_owned(),
        url.port().unwrap_or(if tls { 6514 } else { 514 }),
        tls,
    ))
}

/// The PEM certificates of `ca_pem`, or why they cannot be used.
pub fn parse_ca(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no certificate (expected -----BEGIN CERTIFICATE-----)".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs.clone());
    if added == 0 {
        return Err("holds no usable certificate".into());
    }
    Ok(certs)
}

/// A client certificate chain and its private key (mutual TLS), checked to belong together,
/// or the field at fault (`client_cert_pem`, `client_key_pem`) and why.
pub fn client_identity(
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), (&'static str, String)> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("client_cert_pem", format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err((
            "client_cert_pem",
            "holds no certificate (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ("client_key_pem", format!("not a PEM private key: {e}")))?;
    // Loads the key and compares its public half with the leaf certificate's.
    rustls::sign::CertifiedKey::from_der(
        certs.clone(),
        key.clone_key(),
        &rustls::crypto::ring::default_provider(),
    )
    .map_err(|e| {
        (
            "client_key_pem",
            format!("not a usable key for the client certificate: {e}"),
        )
    })?;
    Ok((certs, key))
}

trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// An open connection to a receiver.
pub struct Conn {
    stream: Pin<Box<dyn Duplex>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("syslog::Conn")
    }
}

/// Connects to the URL's receiver: the host's addresses are resolved once and checked by the
/// address guard, then connected to (so the name cannot be re-pointed in between); TLS is
/// checked against the public roots, plus `ca_pem` when given; `client` is the certificate and
/// key (PEM) presented to a receiver that asks for one (mutual TLS).
pub async fn connect(
    url: &str,
    ca_pem: Option<&str>,
    client: Option<(&str, &str)>,
    allow_private: bool,
    timeout: Duration,
) -> Result<Conn, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
    let (host, port, tls) = endpoint(&parsed).ok_or("not a syslog:// or syslogs:// URL")?;
    let addrs: Vec<SocketAddr> = crate::ssrf::resolve_checked(&host, port, allow_private).await?;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&addrs[..]))
        .await
        .map_err(|_| format!("connecting to {host}:{port} timed out"))?
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if !tls {
        return Ok(Conn {
            stream: Box::pin(tcp),
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        roots.add_parsable_certificates(parse_ca(pem)?);
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (certs, key) =
                client_identity(cert, key).map_err(|(field, m)| format!("TLS {field}: {m}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("TLS client certificate: {e}"))?
        }
    };
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("TLS name `{host}`: {e}"))?;
    let stream = tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| format!("the TLS handshake with {host}:{port} timed out"))?
    .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
    let mut stream = stream;
    if stream.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        settle(&mut stream, SETTLE.min(timeout))
            .await
            .map_err(|e| format!("TLS: {host}:{port} refused the session after the handshake (a client certificate it does not accept?): {e}"))?;
    }
    Ok(Conn {
        stream: Box::pin(stream),
    })
}

/// How long a new TLS 1.3 connection waits for the receiver to accept or refuse it.
const SETTLE: Duration = Duration::from_secs(1);

/// TLS 1.3 ends the client's side of the handshake before the server has checked the client's
/// certificate: a receiver that refuses it says so only afterwards, with an alert. A syslog
/// receiver never answers, so every batch written to such a connection would count as
/// delivered, and be lost. Waits until the receiver shows it accepted the session (its session
/// tickets come after its check), refuses it (an alert, a close), or `limit` passes.
async fn settle(
    stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
    limit: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 512];
    loop {
        if stream.get_ref().1.tls13_tickets_received() > 0 {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match tokio::time::timeout(left.min(Duration::from_millis(20)), stream.read(&mut buf)).await
        {
            // Nothing yet, or bytes a syslog receiver should not send: look again.
            Err(_) | Ok(Ok(1..)) => {}
            Ok(Ok(0)) => return Err("it closed the connection".into()),
            Ok(Err(e)) => return Err(e.to_string()),
        }
    }
}

impl Conn {
    /// False when the receiver closed the connection or it failed: a syslog receiver never
    /// sends, so anything readable now is an end of stream or an error (TLS records such as
    /// session tickets are consumed by the TLS layer and never surface here).
    pub async fn alive(&mut self) -> bool {
        let mut buf = [0u8; 512];
        loop {
            // A zero timeout polls the read once: pending means nothing to read, alive.
            match tokio::time::timeout(Duration::ZERO, self.stream.read(&mut buf)).await {
                Err(_) => return true,
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                // Unexpected bytes from the receiver: ignore them, look again.
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// Writes the framed messages and flushes them, within `timeout`.
    pub async fn write(&mut self, frames: &[u8], timeout: Duration) -> Result<(), String> {
        let io = async {
            self.stream.write_all(frames).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(timeout, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("syslog write: {e}")),
            Err(_) => Err("syslog write timed out".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::{DateTime, Utc};

    const TENANT: &str = "ac\"me]";

    fn item() -> ItemMeta {
        ItemMeta {
            seq: 7,
            id: "e\\1".into(),
            action: "user.login attempt ñ".into(),
            severity: Severity::High,
            time: DateTime::parse_from_rfc3339("2026-01-20T10:30:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
            firing: None,
        }
    }

    #[test]
    fn messages_follow_rfc_5424() {
        let m = message(
            13,
            "host one",
            42,
            TENANT,
            &item(),
            r#"{"a":"ü"}"#.as_bytes(),
        );
        let text = String::from_utf8(m).unwrap();
        // PRI = 13 * 8 + 4 (warning); header fields printable ASCII; SD values escaped.
        assert_eq!(
            text,
            "<108>1 2026-01-20T10:30:00.500000Z host_one bitacora 42 user.login_attempt__ \
             [bitacora@32473 tenant=\"ac\\\"me\\]\" seq=\"7\" id=\"e\\\\1\"] \u{feff}{\"a\":\"ü\"}"
        );
        let long = ItemMeta {
            action: "x".repeat(100),
            ..item()
        };
        let text = String::from_utf8(message(23, "", 1, TENANT, &long, b"{}")).unwrap();
        assert!(text.starts_with("<188>1 "), "{text}");
        assert!(
            text.contains(&format!(" - bitacora 1 {} [", "x".repeat(32))),
            "{text}"
        );
    }

    #[test]
    fn frames_count_octets_not_characters() {
        let mut out = Vec::new();
        frame("ñ".as_bytes(), &mut out);
        frame(b"ab", &mut out);
        assert_eq!(out, b"2 \xc3\xb12 ab");
    }

    #[test]
    fn urls_and_default_ports() {
        let u = |s: &str| endpoint(&reqwest::Url::parse(s).unwrap());
        assert_eq!(
            u("syslog://siem.example.com"),
            Some(("siem.example.com".into(), 514, false))
        );
        assert_eq!(
            u("syslogs://siem.example.com"),
            Some(("siem.example.com".into(), 6514, true))
        );
        assert_eq!(u("syslogs://[::1]:7000"), Some(("::1".into(), 7000, true)));
        assert_eq!(u("https://siem.example.com"), None);
        assert!(parse_ca("not pem").is_err());
    }
}
