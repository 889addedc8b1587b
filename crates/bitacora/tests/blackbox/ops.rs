//! Operations endpoints: health, readiness, Prometheus metrics, the OpenAPI document and the
//! interactive docs page (whose assets come from the binary alone).

use bitacora_client::{Method, SearchParams};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_need_no_key() {
    let app = spawn_app().await;
    let anonymous = app.client.with_api_key("");
    anonymous.healthz().await.unwrap();
    anonymous.readyz().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_ingest_store_and_query_figures() {
    let app = spawn_app().await;
    seed(&app.client).await;
    app.client
        .search(&SearchParams::new().tenant(SEED_TENANT))
        .await
        .unwrap();
    let text = app.client.with_api_key("").metrics().await.unwrap();
    for name in METRIC_NAMES {
        assert!(
            text.lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name)),
            "no sample of `{name}` in /metrics:\n{text}"
        );
    }
}

/// What `/metrics` must show (issue 2): events ingested, batch sizes, commit latency, writer
/// queue depth, query latency.
const METRIC_NAMES: &[&str] = &[
    "bitacora_events_ingested_total",
    "bitacora_ingest_batch_events",
    "bitacora_commit_duration_seconds",
    "bitacora_writer_queue_depth",
    "bitacora_query_duration_seconds",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_is_3_1_and_lists_every_path() {
    let app = spawn_app().await;
    let doc = app.client.openapi().await.unwrap();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi: {version}");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/events",
        "/v1/events/batch",
        "/v1/events/{id}",
        "/v1/actions",
        "/v1/actors",
        "/v1/stats",
        "/v1/targets/{type}/{id}/history",
        "/v1/export",
        "/v1/log/checkpoint",
        "/v1/log/proof/inclusion",
        "/v1/log/proof/consistency",
        "/v1/log/public-key",
        "/v1/events/{id}/inclusion",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(
        doc["components"]["schemas"].get("ErrorBody").is_some(),
        "the error body is documented"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_page_loads_nothing_from_other_hosts() {
    let app = spawn_app().await;
    let resp = app
        .client
        .request_without_key(Method::GET, "/docs")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let page_url = resp.url().clone();
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/html"), "{ctype}");
    let html = resp.text().await.unwrap();

    let mut assets = Vec::new();
    for tag in ["<script", "<link"] {
        for (i, _) in html.match_indices(tag) {
            let end = html[i..].find('>').map(|e| i + e).unwrap_or(html.len());
            let element = &html[i..end];
            for attr in ["src=", "href="] {
                if let Some(a) = element.find(attr) {
                    let value = element[a + attr.len()..]
                        .trim_start_matches(['"', '\''])
                        .split(['"', '\'', ' '])
                        .next()
                        .unwrap_or_default();
                    assets.push(value.to_owned());
                }
            }
        }
    }
    for asset in &assets {
        let lower = asset.to_ascii_lowercase();
        assert!(
            !(lower.starts_with("http://")
                || lower.starts_with("https://")
                || lower.starts_with("//")),
            "/docs loads `{asset}` from another host"
        );
    }
    // Every script and stylesheet it names is served by the binary itself.
    for asset in assets
        .iter()
        .filter(|a| !a.is_empty() && !a.starts_with("data:"))
    {
        let url = page_url.join(asset).unwrap();
        let resp = app.client.http().get(url.clone()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
    }
}
