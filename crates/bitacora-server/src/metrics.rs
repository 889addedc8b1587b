//! Prometheus metrics: the recorder, the `/metrics` handler, and the request middleware.
//!
//! A process can install one global recorder only, and tests start many servers in one
//! process, so the recorder is installed on first use and shared ([`handle`]). Names:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `bitacora_http_requests_total` | counter | `method`, `route`, `status` |
//! | `bitacora_http_request_duration_seconds` | histogram | `route` |
//! | `bitacora_events_ingested_total` | counter | `outcome` = `stored`/`duplicate`/`rejected` |
//! | `bitacora_ingest_batch_events` | histogram | |
//! | `bitacora_query_duration_seconds` | histogram | `kind` |
//!
//! With a witness policy, `bitacora-witness` adds `bitacora_witness_requests_total`
//! (`witness`, `outcome`), `bitacora_witness_cosigned_size` (`witness`, `tenant`),
//! `bitacora_witness_last_success_timestamp_seconds` and `bitacora_witness_up` (`witness`).
//!
//! The stores add `bitacora_writer_queue_depth`, `bitacora_commit_duration_seconds` and
//! `bitacora_commit_events`. `route` is the route's pattern (`/v1/events/{id}`), never the raw
//! path, so labels stay few.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "bitacora_http_requests_total";
pub const HTTP_DURATION: &str = "bitacora_http_request_duration_seconds";
pub const EVENTS_INGESTED: &str = "bitacora_events_ingested_total";
pub const BATCH_EVENTS: &str = "bitacora_ingest_batch_events";
pub const QUERY_DURATION: &str = "bitacora_query_duration_seconds";

/// Seconds: from a cached read (100 µs) to a slow export page (10 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Events per batch or commit.
const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0,
    50000.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the global recorder on first call.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_EVENTS.into()), SIZE_BUCKETS))
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full("bitacora_commit_events".into()), SIZE_BUCKETS)
            })
            .expect("bucket lists are non-empty");
        match builder.install_recorder() {
            Ok(handle) => {
                describe();
                handle
            }
            Err(e) => {
                // Someone else (an embedding program) owns the global recorder: serve an empty
                // page rather than refuse to start.
                tracing::warn!(error = %e, "metrics recorder already installed; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests answered");
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request (until the response head)"
    );
    metrics::describe_counter!(EVENTS_INGESTED, "Events received, by outcome");
    metrics::describe_histogram!(BATCH_EVENTS, "Events per batch request");
    metrics::describe_histogram!(
        QUERY_DURATION,
        metrics::Unit::Seconds,
        "Time spent in store reads, by kind"
    );
    metrics::describe_gauge!(
        "bitacora_log_unexplained_events",
        "Events of a tenant's log that no commit seal explains, which the server refuses to sign \
         (0 when none; see README, Integrity)"
    );
}

/// `GET /metrics`: the Prometheus text format.
pub async fn render() -> Response {
    let handle = handle();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// Counts and times every request by its route pattern.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

pub fn ingested(outcome: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(EVENTS_INGESTED, "outcome" => outcome).increment(n);
    }
}

pub fn batch_size(n: usize) {
    metrics::histogram!(BATCH_EVENTS).record(n as f64);
}

/// Records a store read's duration under `kind` (`search`, `by_id`, `stats`, ...).
pub fn query(kind: &'static str, started: Instant) {
    metrics::histogram!(QUERY_DURATION, "kind" => kind).record(started.elapsed().as_secs_f64());
}
