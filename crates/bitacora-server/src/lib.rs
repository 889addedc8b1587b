//! bitacora's HTTP server: the API of CONTRACT §3 over any [`Store`].
//!
//! - [`serve`] runs the server on a listener until a shutdown future resolves (tests pass a
//!   port-0 listener and a oneshot), then drains: stop accepting, let in-flight requests
//!   finish within `shutdown_grace_secs`, and close the store, which commits queued writes.
//! - [`open_store`] opens the configured store (the CLI's commands reuse it).
//! - [`config`]: the layered [`Config`]. [`error`]: [`ApiError`](error::ApiError), the only
//!   place that knows status codes. [`auth`]: the one authentication and tenancy layer, and
//!   API key generation. [`api`]: the router and handlers. [`export`]: the export walk and
//!   CSV/NDJSON encoders, shared with `bitacora export`. [`integrity`]: the checkpoint keys
//!   the configuration names. [`ui`]: the viewer under `/ui/` (CONTRACT §7). [`demo`]: the
//!   sample month `bitacora serve --demo` loads.
//!
//! Besides the HTTP server, `serve` runs the checkpointer (`bitacora_log`), which signs each
//! growing log at least once a second; it is stopped, with a final signing pass, before the
//! store is closed, so every acknowledged event is covered by a signed checkpoint. It also
//! runs one capture drain (`bitacora_capture`) per `[[capture]]` source; they stop first,
//! each finishing its pass, so the checkpointer's last pass covers what they appended.
//!
//! **Invariant:** a handler never reads a tenant from the request itself; it asks the
//! [`Principal`](auth::Principal) the auth layer resolved.

pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
mod conn;
pub mod demo;
pub mod error;
pub mod export;
pub mod integrity;
pub mod metrics;
pub mod openapi;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod ui;

#[cfg(test)]
mod isolation_tests;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bitacora_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, DEFAULT_CONFIG_TOML, Overrides};
pub use state::AppState;
pub use store::open_store;

/// The whole HTTP application: the API (`/v1`, docs, health, metrics) and the viewer (`/ui`).
pub fn app(state: AppState) -> axum::Router {
    api::router(state.clone()).merge(ui::router(state))
}

/// Opens the configured store and serves until `shutdown` resolves, then drains and closes it.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_store(&config))
            .await
            .context("opening the store panicked")??
    };
    serve_with_store(config, store, listener, shutdown).await
}

/// [`serve`] with a store the caller opened.
pub async fn serve_with_store(
    config: Config,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let base = base_url(addr, config.server.tls.is_some());
    // Checked before anything else starts: a bad certificate is a startup error.
    let tls = match config
        .server
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()
    {
        Ok(tls) => tls,
        Err(e) => {
            store.close().await.ok();
            return Err(e);
        }
    };
    let keys = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || integrity::load_or_create_keys(&config))
            .await
            .context("loading the signing key panicked")
            .and_then(|loaded| loaded)
    };
    let keys = match keys {
        Ok(keys) => keys,
        Err(e) => {
            store.close().await.ok();
            return Err(e);
        }
    };
    let witness_policy = match config.integrity.witness_policy() {
        Ok(policy) => policy,
        Err(e) => {
            store.close().await.ok();
            return Err(e);
        }
    };
    let data_dir = store::is_embedded(&config).then(|| config.store.data.clone());
    let initial_key = auth::ensure_initial_admin_key(&*store, data_dir.as_deref())
        .await
        .context("cannot create the initial admin key")?;
    if let Some(secret) = initial_key {
        let file = match &data_dir {
            Some(dir) => format!(
                " (also written to {})",
                dir.join(auth::INITIAL_KEY_FILE).display()
            ),
            None => String::new(),
        };
        // Shown once, on stdout, on purpose: this is how the operator gets in.
        println!(
            "Created the initial admin API key{file}. It is shown only this once:\n\n    {secret}\n\n\
             API docs: {base}/docs\nAPI:      {base}/v1/events  \
             (Authorization: Bearer <key>)\n"
        );
    }
    // Auditors and `bitacora verify-bundle --trusted-key` need this string; witnesses need
    // each log's own key (named by its origin), which `GET /v1/log` gives.
    println!(
        "  checkpoint key: {}   ({base}/v1/log/public-key; each log's own key, named by its \
         origin, for witnesses: {base}/v1/log?tenant=T, `verifier_key`)",
        keys.public_key()
    );
    tracing::info!(
        key = %keys.public_key(),
        key_file = %config.signing_key_path()?.display(),
        retired = keys.retired().len(),
        "checkpoint signing key loaded"
    );
    // Install the metrics recorder before the first request records anything.
    metrics::handle();

    let mut state = match AppState::try_new(store.clone(), config.clone(), keys) {
        Ok(state) => state,
        Err(e) => {
            store.close().await.ok();
            return Err(e);
        }
    };
    let background = CancellationToken::new();
    // Capture drains stop (finishing their pass) before the store closes, like the
    // checkpointer; a source that is down never stops the server.
    let capture = CancellationToken::new();
    let mut drains = Vec::new();
    let mut capture_status = Vec::new();
    if !config.capture.is_empty() {
        bitacora_capture::drain::describe_metrics();
    }
    for source in &config.capture {
        let drain = source.drain_config();
        tracing::info!(source = %drain.name, tenant = %drain.tenant, "draining captured changes");
        let (task, status) = bitacora_capture::spawn_drain(
            drain,
            store.clone(),
            state.policy.clone(),
            capture.clone(),
        );
        drains.push(task);
        capture_status.push(status);
    }
    state.capture = Arc::new(capture_status);
    // Streams and alert rules; stopped with the capture drains, before the store closes.
    bitacora_delivery::describe_metrics();
    let (delivery, delivery_status) = bitacora_delivery::spawn_delivery(
        store.clone(),
        state.policy.clone(),
        config.delivery.clone(),
        capture.clone(),
    );
    state.delivery = delivery_status;
    // Witnessing (CONTRACT §11): off the ingest and signing paths; it only reads stored
    // checkpoints and stores cosignatures.
    let witnessing = witness_policy.map(|policy| {
        integrity::describe_witnessing(&policy, &state.keys, &config.integrity.origin_prefix);
        bitacora_witness::describe_metrics();
        let (task, status) = bitacora_witness::spawn_witnessing(
            store.clone(),
            config.integrity.witness_config(policy),
            background.clone(),
        );
        state.witnesses = status;
        task
    });
    let flusher = state.auth.clone().spawn_usage_flusher(background.clone());
    let checkpointer = bitacora_log::spawn_checkpointer_named(
        store.clone(),
        state.signer.clone(),
        config.integrity.checkpoint_interval(),
        background.clone(),
        state.tails.clone(),
        config.integrity.naming(),
    );
    // Retention (docs/LIFECYCLE.md): one pass every `check_interval`; it stops with the other
    // background tasks, between batches.
    let retention = if config.retention.enabled() {
        let Some(url) = store::archive_url(&config) else {
            store.close().await.ok();
            anyhow::bail!(
                "retention needs `retention.archive_url` with a PostgreSQL store (file:///path or s3://bucket/prefix)"
            );
        };
        let archive =
            match bitacora_lifecycle::Archive::open_with(&url, &config.retention.archive_options())
            {
                Ok(a) => a,
                Err(e) => {
                    store.close().await.ok();
                    return Err(anyhow::anyhow!("cannot open the retention archive: {e}"));
                }
            };
        bitacora_lifecycle::describe_metrics();
        tracing::info!(archive = %url, "retention enabled");
        let (task, status) = bitacora_lifecycle::spawn_retention(
            bitacora_lifecycle::Retention {
                store: store.clone(),
                config: config.retention.clone(),
                archive,
                bundle: bitacora_log::BundleOptions {
                    origin_prefix: config.integrity.origin_prefix.clone(),
                    ..bitacora_log::BundleOptions::new(state.signer.clone(), state.keys.verifiers())
                },
                policy: state.policy.clone(),
            },
            background.clone(),
        );
        state.retention = status;
        Some(task)
    } else {
        None
    };
    let app = app(state);

    println!("  viewer:         {base}/ui/");
    tracing::info!(%addr, viewer = %format!("{base}/ui/"), docs = %format!("{base}/docs"), "bitacora listening");

    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let stopping = CancellationToken::new();
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing in-flight requests");
            stopping.cancel();
        }
    };
    let header_timeout = Duration::from_secs(config.server.header_read_timeout_secs.max(1));
    let server: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = match tls {
        None => {
            use axum::serve::ListenerExt as _;
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            });
            Box::pin(conn::serve(listener, app, header_timeout, signal))
        }
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls)?;
            Box::pin(conn::serve(listener, app, header_timeout, signal))
        }
    };
    tokio::select! {
        () = server => {}
        () = async { stopping.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still running after the grace period; closing them");
        }
    }

    capture.cancel();
    for drain in drains {
        if let Err(e) = drain.await {
            tracing::error!(error = %e, "a capture drain failed");
        }
    }
    if let Err(e) = delivery.await {
        tracing::error!(error = %e, "delivery failed");
    }
    background.cancel();
    if let Some(task) = retention
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "the retention task failed");
    }
    if let Some(task) = witnessing
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "the witnessing task failed");
    }
    if let Err(e) = flusher.await {
        tracing::warn!(error = %e, "the key usage flusher failed");
    }
    // Its final pass signs what the last requests appended; it needs the store open.
    if let Err(e) = checkpointer.await {
        tracing::error!(error = %e, "the checkpointer failed");
    }
    // Commits whatever the writer still has queued: every acknowledged event is durable
    // already; this finishes the ones whose requests were cut by the grace period.
    store.close().await.context("closing the store")?;
    tracing::info!("stopped");
    Ok(())
}

/// The current checkpoint verifier key.
/// `http(s)://host:port` to show people: an unspecified address becomes loopback.
fn base_url(addr: SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A minimal HTTP/1.1 exchange, so this crate needs no HTTP client.
    async fn http(addr: SocketAddr, request: String) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serve_creates_the_initial_key_serves_and_shuts_down() {
        telemetry::init_test_tracing();
        let root = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.store.data = root.path().join("data");
        config.store.synchronous = config::SyncMode::Off;
        let dir = config.store.data.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(config.clone(), listener, async {
            let _ = stopped.await;
        }));

        let key_file = dir.join(auth::INITIAL_KEY_FILE);
        for _ in 0..100 {
            if key_file.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secret = std::fs::read_to_string(&key_file)
            .unwrap()
            .trim()
            .to_owned();
        assert!(secret.starts_with("bk_"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let body = r#"{"id":"s-1","action":"user.login"}"#;
        let reply = http(
            addr,
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
        let reply = http(
            addr,
            format!(
                "GET /v1/events/s-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n\
                 Connection: close\r\n\r\n"
            ),
        )
        .await;
        // The connection's address is recorded.
        assert!(reply.contains(r#""ip":"127.0.0.1""#), "{reply}");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();

        // A second start finds a key and creates none; the event is still there.
        let store = open_store(&config).unwrap();
        assert_eq!(store.api_keys().await.unwrap().len(), 1);
        assert!(
            auth::ensure_initial_admin_key(&*store, Some(&dir))
                .await
                .unwrap()
                .is_none()
        );
        let tenant = bitacora_core::TenantName::default_tenant();
        assert!(store.event_by_id(&tenant, "s-1").await.unwrap().is_some());
        // The checkpointer's final pass signed the event before the store closed, with the
        // key created beside (not inside) the data folder.
        let cp = store.latest_checkpoint(&tenant).await.unwrap().unwrap();
        assert_eq!(cp.size, 1);
        let signing_key = root.path().join("data.signing-key");
        assert!(signing_key.is_file());
        let keys = integrity::load_existing_keys(&config).unwrap();
        // Signed under the log's origin as key name: the log's own verifier key opens it by
        // the signed-note rules alone.
        let vkey = keys.verifier_for("bitacora/default").unwrap();
        assert!(vkey.to_string().starts_with("bitacora/default+"));
        bitacora_core::checkpoint::open_checkpoint(&cp.note, "bitacora/default", &[vkey]).unwrap();
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn serves_https_with_the_configured_certificate() {
        telemetry::init_test_tracing();
        let root = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_file = root.path().join("cert.pem");
        let key_file = root.path().join("key.pem");
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
        let mut config = Config::default();
        config.store.data = root.path().join("data");
        config.store.synchronous = config::SyncMode::Off;
        config.server.tls = Some(config::TlsConfig {
            cert_file,
            key_file,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(config.clone(), listener, async {
            let _ = stopped.await;
        }));
        let key_file = config.store.data.join(auth::INITIAL_KEY_FILE);
        for _ in 0..100 {
            if key_file.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secret = std::fs::read_to_string(&key_file)
            .unwrap()
            .trim()
            .to_owned();

        let trusting = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        let base = format!("https://localhost:{port}");
        let r = trusting
            .post(format!("{base}/v1/events"))
            .bearer_auth(&secret)
            .json(&serde_json::json!({"id": "tls-1", "action": "user.login"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = trusting
            .get(format!("{base}/v1/events/tls-1"))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // The client address still reaches the event over TLS.
        let event: serde_json::Value = r.json().await.unwrap();
        assert_eq!(event["context"]["ip"], "127.0.0.1");
        // A client that does not trust the certificate cannot connect; plain HTTP gets no
        // answer either.
        let untrusting = reqwest::Client::new();
        assert!(
            untrusting
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_err()
        );
        let plain = reqwest::Client::new()
            .get(format!("http://localhost:{port}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_bad_certificate_is_a_startup_error() {
        let root = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.store.data = root.path().join("data");
        config.server.tls = Some(config::TlsConfig {
            cert_file: root.path().join("missing.pem"),
            key_file: root.path().join("missing-key.pem"),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = serve(config, listener, async {}).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("server.tls.cert_file"),
            "{err:#}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_postgres_fails_clearly_without_echoing_the_url() {
        let mut config = Config::default();
        // Port 1: nothing listens there, so the connection is refused at once.
        config.store.database_url = Some("postgres://u:hunter2@127.0.0.1:1/db".into());
        let err = tokio::task::spawn_blocking(move || open_store(&config))
            .await
            .unwrap()
            .err()
            .unwrap();
        let err = format!("{err:#}");
        assert!(err.contains("cannot open the PostgreSQL store"), "{err}");
        assert!(err.contains("BITACORA_DATABASE_URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn other_database_schemes_are_refused() {
        let mut config = Config::default();
        config.store.database_url = Some("mysql://u:p@localhost/db".into());
        let err = open_store(&config).err().unwrap().to_string();
        assert!(
            err.contains("unsupported database URL scheme `mysql`"),
            "{err}"
        );
        assert!(!err.contains("u:p"), "{err}");
    }

    #[test]
    fn base_urls_show_loopback_for_unspecified_addresses() {
        assert_eq!(
            base_url("0.0.0.0:8480".parse().unwrap(), false),
            "http://127.0.0.1:8480"
        );
        assert_eq!(base_url("[::]:1".parse().unwrap(), false), "http://[::1]:1");
        assert_eq!(
            base_url("10.1.2.3:80".parse().unwrap(), true),
            "https://10.1.2.3:80"
        );
    }
}
