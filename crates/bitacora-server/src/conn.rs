//! The accept loop: every connection the listener (plain TCP or [`crate::tls::TlsListener`])
//! hands over is served by hyper, with a header-read timeout, and drained gracefully at shutdown.
//!
//! `axum::serve` gives hyper no timer, so a client that trickles a request head one byte at a
//! time (slowloris) could hold a connection and a file descriptor for as long as it kept
//! trickling. Here hyper has a timer and `header_read_timeout`: a connection must deliver each
//! request head within that time — counted from when the connection opens or goes idle after
//! a response — or it is closed. So the same limit also closes idle keep-alive connections.
//! Bodies are bounded elsewhere (`api::deadline`), and the request timeout bounds handlers.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt as _;

/// Serves `app` on every connection `listener` accepts until `shutdown` resolves; then stops
/// accepting and waits for the open connections to finish their in-flight requests (idle ones
/// are closed at once). The caller bounds that wait.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: Listener<Addr = SocketAddr>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // `Listener::accept` retries failed accepts itself (out of descriptors and the like).
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = tower::service_fn(move |mut request: hyper::Request<Incoming>| {
            // What `into_make_service_with_connect_info` would provide: the peer address, for
            // rate limits and for the IP recorded when no trusted proxy names one.
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Header timeouts, resets and malformed requests: the client's business.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
