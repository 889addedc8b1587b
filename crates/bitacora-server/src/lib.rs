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
//!   the configuration names.
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
pub mod auth;
pub mod config;
pub mod error;
pub mod export;
pub mod integrity;
pub mod metrics;
pub mod openapi;
pub mod state;
pub mod store;
pub mod telemetry;

use std::future::{Future, IntoFuture as _};
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
    let base = base_url(addr);
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
    // Auditors and `bitacora verify-bundle --trusted-key` need this string.
    println!(
        "  checkpoint key: {}   ({base}/v1/log/public-key)",
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

    let mut state = AppState::new(store.clone(), config.clone(), keys);
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
    let flusher = state.auth.clone().spawn_usage_flusher(background.clone());
    let checkpointer = bitacora_log::spawn_checkpointer(
        store.clone(),
        state.signer.clone(),
        config.integrity.checkpoint_interval(),
        background.clone(),
    );
    let app = api::router(state);

    // The viewer (`/ui/`) is not served yet; advertise only what answers.
    tracing::info!(%addr, docs = %format!("{base}/docs"), "bitacora listening");

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
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .into_future();
    let served = tokio::select! {
        result = server => result.context("the HTTP server failed"),
        () = async { stopping.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still running after the grace period; closing them");
            Ok(())
        }
    };

    capture.cancel();
    for drain in drains {
        if let Err(e) = drain.await {
            tracing::error!(error = %e, "a capture drain failed");
        }
    }
    background.cancel();
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
    served
}

/// `http://host:port` to show people: an unspecified address becomes loopback.
fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
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
        bitacora_core::checkpoint::open_checkpoint(&cp.note, "bitacora/default", &keys.verifiers())
            .unwrap();
        store.close().await.unwrap();
    }

    #[test]
    fn postgres_is_refused_with_a_clear_message() {
        let mut config = Config::default();
        config.store.database_url = Some("postgres://u:p@localhost/db".into());
        let err = open_store(&config).err().unwrap().to_string();
        assert!(
            err.contains("PostgreSQL store is not available in this build yet"),
            "{err}"
        );
        assert!(err.contains("BITACORA_DATABASE_URL"), "{err}");
        assert!(!err.contains("u:p"), "{err}");
    }

    #[test]
    fn base_urls_show_loopback_for_unspecified_addresses() {
        assert_eq!(
            base_url("0.0.0.0:8480".parse().unwrap()),
            "http://127.0.0.1:8480"
        );
        assert_eq!(base_url("[::]:1".parse().unwrap()), "http://[::1]:1");
        assert_eq!(
            base_url("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80"
        );
    }
}
