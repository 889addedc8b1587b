//! A syslog receiver for the delivery tests: TCP, or TLS with a self-signed certificate made
//! for the test (rcgen), reading octet-counted frames (RFC 6587 §3.4.1, RFC 5425 §4.3) and
//! parsing each RFC 5424 message strictly. Anything malformed is recorded as an error (the
//! tests assert there is none) and ends the connection, as a strict receiver would.
//!
//! [`SyslogListener::stop`] is a receiver going down for maintenance: it stops accepting,
//! tells each connection it is closing (FIN, or TLS `close_notify`), reads what the sender had
//! already written, then closes. [`SyslogListener::restart`] listens again on the same port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// One parsed RFC 5424 message.
#[derive(Debug, Clone)]
pub struct Message {
    pub facility: u16,
    pub severity: u16,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    /// `(SD-ID, [(name, value)])`, values unescaped.
    pub sd: Vec<(String, Vec<(String, String)>)>,
    /// The MSG (after its BOM), parsed as JSON.
    pub body: Value,
}

impl Message {
    /// The value of `name` in the structured-data element `id`.
    pub fn param(&self, id: &str, name: &str) -> Option<&str> {
        self.sd
            .iter()
            .find(|(i, _)| i == id)?
            .1
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Seen {
    messages: Vec<Message>,
    errors: Vec<String>,
    /// TLS handshakes that failed (a client that does not trust the certificate): not
    /// errors of the stream.
    handshake_failures: Vec<String>,
    connections: usize,
}

pub struct SyslogListener {
    pub port: u16,
    /// The certificate's PEM, to trust in the destination (`ca_pem`), when TLS.
    pub ca_pem: Option<String>,
    /// With mutual TLS ([`SyslogListener::start_mutual`]): a client certificate (PEM) its
    /// client CA signed, and that certificate's private key (PEM).
    pub client_identity: Option<(String, String)>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    seen: Arc<Mutex<Seen>>,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl SyslogListener {
    /// Listens on 127.0.0.1 (port chosen by the system); TLS with a certificate for
    /// `localhost` when `tls`.
    pub async fn start(tls: bool) -> Self {
        Self::start_with(tls, false).await
    }

    /// TLS that requires a client certificate signed by a CA made for the test (mutual
    /// TLS); the certificate to present is [`SyslogListener::client_identity`].
    pub async fn start_mutual() -> Self {
        Self::start_with(true, true).await
    }

    async fn start_with(tls: bool, mutual: bool) -> Self {
        let (acceptor, ca_pem, client_identity) = if tls {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap();
            let (builder, client_identity) = if mutual {
                let (ca, identity) = client_ca_and_identity();
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .unwrap();
                (builder.with_client_cert_verifier(verifier), Some(identity))
            } else {
                (builder.with_no_client_auth(), None)
            };
            let config = builder
                .with_single_cert(vec![cert.cert.der().clone()], key)
                .unwrap();
            (
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                Some(cert.cert.pem()),
                client_identity,
            )
        } else {
            (None, None, None)
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut me = Self {
            port,
            ca_pem,
            client_identity,
            tls: acceptor,
            seen: Arc::default(),
            running: None,
        };
        me.run(listener);
        me
    }

    /// The PEM of a client certificate signed by another CA than the listener trusts, with
    /// its key: a well-formed identity the listener refuses.
    pub fn foreign_identity() -> (String, String) {
        client_ca_and_identity().1
    }

    /// `syslog://127.0.0.1:port`, or `syslogs://localhost:port` with TLS.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("syslogs://localhost:{}", self.port),
            None => format!("syslog://127.0.0.1:{}", self.port),
        }
    }

    fn run(&mut self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let (seen, tls, token) = (self.seen.clone(), self.tls.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        seen.lock().unwrap().connections += 1;
                        let (seen, token, tls) = (seen.clone(), token.clone(), tls.clone());
                        connections.push(tokio::spawn(async move {
                            match tls {
                                Some(acceptor) => match acceptor.accept(tcp).await {
                                    Ok(stream) => serve(stream, seen, token).await,
                                    Err(e) => seen.lock().unwrap().handshake_failures.push(format!("TLS: {e}")),
                                },
                                None => serve(tcp, seen, token).await,
                            }
                        }));
                    }
                }
            }
            drop(listener);
            // Read what senders had written before they saw the close, then give up on
            // connections that stay open and silent.
            for c in connections {
                let abort = c.abort_handle();
                if tokio::time::timeout(Duration::from_secs(2), c)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
        });
        self.running = Some((stop, task));
    }

    /// The receiver goes down: no new connections, open ones closed after a drain.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    /// The receiver comes back on the same port.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.run(listener);
    }

    pub fn messages(&self) -> Vec<Message> {
        self.seen.lock().unwrap().messages.clone()
    }

    pub fn errors(&self) -> Vec<String> {
        self.seen.lock().unwrap().errors.clone()
    }

    pub fn handshake_failures(&self) -> Vec<String> {
        self.seen.lock().unwrap().handshake_failures.clone()
    }

    pub fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }
}

impl Drop for SyslogListener {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            task.abort();
        }
    }
}

async fn serve<S>(stream: S, seen: Arc<Mutex<Seen>>, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, mut write) = tokio::io::split(stream);
    // Closing is announced from a task of its own, so a frame being read is never cut.
    let closer = tokio::spawn(async move {
        stop.cancelled().await;
        let _ = write.shutdown().await;
        write
    });
    let mut read = BufReader::new(read);
    loop {
        match read_frame(&mut read).await {
            Ok(None) => break,
            Ok(Some(frame)) => match parse(&frame) {
                Ok(m) => seen.lock().unwrap().messages.push(m),
                Err(e) => {
                    seen.lock().unwrap().errors.push(e);
                    break;
                }
            },
            Err(e) => {
                seen.lock().unwrap().errors.push(e);
                break;
            }
        }
    }
    closer.abort();
}

/// `MSG-LEN SP SYSLOG-MSG`, MSG-LEN = NONZERO-DIGIT 0*DIGIT; `None` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, String> {
    let mut len: usize = 0;
    let mut digits = 0;
    loop {
        let b = match r.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && digits == 0 => {
                return Ok(None);
            }
            // A sender whose connection was reset mid-frame: not a framing error.
            Err(_) if digits == 0 => return Ok(None),
            Err(e) => return Err(format!("end of stream inside a frame's length: {e}")),
        };
        match b {
            b'0'..=b'9' if digits == 0 && b == b'0' => {
                return Err("MSG-LEN starts with 0".into());
            }
            b'0'..=b'9' => {
                digits += 1;
                if digits > 6 {
                    return Err("MSG-LEN longer than 6 digits".into());
                }
                len = len * 10 + usize::from(b - b'0');
            }
            b' ' if digits > 0 => break,
            other => return Err(format!("unexpected byte {other:#04x} in MSG-LEN")),
        }
    }
    let mut frame = vec![0u8; len];
    r.read_exact(&mut frame)
        .await
        .map_err(|e| format!("frame of {len} octets cut short: {e}"))?;
    Ok(Some(frame))
}

fn field<'a>(rest: &mut &'a [u8], name: &str, max: usize) -> Result<&'a str, String> {
    let end = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or(format!("{name}: no space after it"))?;
    let value = &rest[..end];
    if value.is_empty() || value.len() > max || !value.iter().all(|b| (33..=126).contains(b)) {
        return Err(format!(
            "{name}: {:?} is not 1..={max} printable ASCII",
            String::from_utf8_lossy(value)
        ));
    }
    *rest = &rest[end + 1..];
    Ok(std::str::from_utf8(value).expect("ASCII"))
}

/// RFC 5424 §6, strictly.
fn parse(frame: &[u8]) -> Result<Message, String> {
    let mut rest = frame;
    if rest.first() != Some(&b'<') {
        return Err("no PRI".into());
    }
    let close = rest
        .iter()
        .position(|&b| b == b'>')
        .ok_or("PRI not closed")?;
    let pri_text = std::str::from_utf8(&rest[1..close]).map_err(|e| e.to_string())?;
    if pri_text.is_empty()
        || pri_text.len() > 3
        || (pri_text.len() > 1 && pri_text.starts_with('0'))
    {
        return Err(format!("bad PRIVAL {pri_text:?}"));
    }
    let pri: u16 = pri_text
        .parse()
        .map_err(|_| format!("bad PRIVAL {pri_text:?}"))?;
    if pri > 191 {
        return Err(format!("PRIVAL {pri} > 191"));
    }
    rest = &rest[close + 1..];
    if !rest.starts_with(b"1 ") {
        return Err("VERSION is not 1".into());
    }
    rest = &rest[2..];
    let timestamp = field(&mut rest, "TIMESTAMP", 32)?.to_owned();
    if timestamp != "-" {
        chrono::DateTime::parse_from_rfc3339(&timestamp)
            .map_err(|e| format!("TIMESTAMP {timestamp:?}: {e}"))?;
        if !timestamp.contains('T') || timestamp.contains('t') || timestamp.contains('z') {
            return Err(format!("TIMESTAMP {timestamp:?}: not RFC 5424's form"));
        }
    }
    let hostname = field(&mut rest, "HOSTNAME", 255)?.to_owned();
    let app_name = field(&mut rest, "APP-NAME", 48)?.to_owned();
    let procid = field(&mut rest, "PROCID", 128)?.to_owned();
    let msgid = field(&mut rest, "MSGID", 32)?.to_owned();
    let mut sd = Vec::new();
    if rest.first() == Some(&b'-') {
        rest = &rest[1..];
    } else {
        while rest.first() == Some(&b'[') {
            rest = &rest[1..];
            let (element, after) = sd_element(rest)?;
            sd.push(element);
            rest = after;
        }
        if sd.is_empty() {
            return Err("STRUCTURED-DATA is neither `-` nor elements".into());
        }
    }
    let body = match rest {
        [] => Value::Null,
        [b' ', msg @ ..] => {
            let msg = msg
                .strip_prefix("\u{feff}".as_bytes())
                .ok_or("a UTF-8 MSG must start with the BOM (RFC 5424 §6.4)")?;
            let text = std::str::from_utf8(msg).map_err(|e| format!("MSG is not UTF-8: {e}"))?;
            serde_json::from_str(text).map_err(|e| format!("MSG is not JSON: {e}"))?
        }
        _ => return Err("no space before MSG".into()),
    };
    Ok(Message {
        facility: pri / 8,
        severity: pri % 8,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd,
        body,
    })
}

type Element = (String, Vec<(String, String)>);

fn sd_name(rest: &[u8], what: &str) -> Result<(String, usize), String> {
    let end = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b'=' | b']' | b'"'))
        .ok_or(format!("{what} not ended"))?;
    let name = &rest[..end];
    if name.is_empty() || name.len() > 32 || !name.iter().all(|b| (33..=126).contains(b)) {
        return Err(format!("bad {what} {:?}", String::from_utf8_lossy(name)));
    }
    Ok((String::from_utf8(name.to_vec()).expect("ASCII"), end))
}

/// One element after its `[`: `SD-ID *(SP PARAM-NAME="value")]`.
fn sd_element(rest: &[u8]) -> Result<(Element, &[u8]), String> {
    let (id, n) = sd_name(rest, "SD-ID")?;
    let mut rest = &rest[n..];
    let mut params = Vec::new();
    loop {
        match rest.first() {
            Some(b']') => return Ok(((id, params), &rest[1..])),
            Some(b' ') => {
                rest = &rest[1..];
                let (name, n) = sd_name(rest, "PARAM-NAME")?;
                rest = &rest[n..];
                if !rest.starts_with(b"=\"") {
                    return Err(format!("PARAM-NAME {name} not followed by =\""));
                }
                rest = &rest[2..];
                let mut value = Vec::new();
                loop {
                    match rest.first() {
                        None => return Err("PARAM-VALUE not closed".into()),
                        Some(b'\\') if matches!(rest.get(1), Some(b'"' | b'\\' | b']')) => {
                            value.push(rest[1]);
                            rest = &rest[2..];
                        }
                        Some(b'"') => {
                            rest = &rest[1..];
                            break;
                        }
                        Some(b']') => return Err("an unescaped ] in PARAM-VALUE".into()),
                        Some(&b) => {
                            value.push(b);
                            rest = &rest[1..];
                        }
                    }
                }
                let value =
                    String::from_utf8(value).map_err(|e| format!("PARAM-VALUE not UTF-8: {e}"))?;
                params.push((name, value));
            }
            _ => return Err(format!("bad structured data after {id}")),
        }
    }
}

/// A client CA (its DER, for the listener's trust) and a client certificate it signed, with
/// the certificate's private key (both PEM, as an admin would paste them).
fn client_ca_and_identity() -> (rustls::pki_types::CertificateDer<'static>, (String, String)) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bitacora test client CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(vec!["bitacora".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    (ca.der().clone(), (client.pem(), client_key.serialize_pem()))
}
