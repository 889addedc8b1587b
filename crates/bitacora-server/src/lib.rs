//! bitacora's HTTP server: the API of CONTRACT §3 over any [`Store`].
//!
//! - [`serve`] runs the server on a listener until a shutdown future resolves (tests pass a
//!   port-0 listener and a oneshot), then drains: stop accepting, let in-flight requests
//!   finish within `shutdown_grace_secs`, and close the store, which commits queued writes.
//! - [`open_store`] opens the configured store (the CLI's commands reuse it).
//! - [`config`]: the layered [`Config`]. [`error`]: [`ApiError`](error::ApiError), the only
//!   place that knows status codes. [`auth`]: the one authentication and tenancy layer, and
//!   API key generation. [`api`]: the router and handlers. [`export`]: the export walk and
//!   CSV/NDJSON encoders, shared with `bitacora export`.
//!
//! **Invariant:** a handler never reads a tenant from the request itself; it asks the
//! [`Principal`](auth::Principal) the auth layer resolved.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod export;
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
             Viewer:   {base}/ui/\nAPI docs: {base}/docs\nAPI:      {base}/v1/events  \
             (Authorization: Bearer <key>)\n"
        );
    }
    // Install the metrics recorder before the first request records anything.
    metrics::handle();

    let state = AppState::new(store.clone(), config.clone());
    let background = CancellationToken::new();
    let flusher = state.auth.clone().spawn_usage_flusher(background.clone());
    let app = api::router(state);

    tracing::info!(%addr, ui = %format!("{base}/ui/"), docs = %format!("{base}/docs"), "bitacora listening");

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

    background.cancel();
    if let Err(e) = flusher.await {
        tracing::warn!(error = %e, "the key usage flusher failed");
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
