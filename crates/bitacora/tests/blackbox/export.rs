//! `GET /v1/export`: the same events as the search, as NDJSON or CSV, streamed.

use bitacora_client::{ExportFormat, SearchParams};
use bitacora_core::{Event, Order};
use futures::StreamExt as _;

use crate::common::*;

fn seed_params() -> SearchParams {
    SearchParams::new().tenant(SEED_TENANT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_export_is_the_search_one_event_a_line() {
    let app = spawn_app().await;
    seed(&app.client).await;
    for params in [
        seed_params(),
        seed_params().action("user.*"),
        seed_params().min_severity("high").order(Order::Asc),
        seed_params().ip("10.0.0.0/8").since("2026-01-21"),
    ] {
        // Searched first: each export appends its own `bitacora.export` record after it.
        let searched = ids(&app.client, params.clone()).await;
        let bytes = app
            .client
            .export_bytes(ExportFormat::Ndjson, &params)
            .await
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let exported: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let exported_ids: Vec<_> = exported.iter().map(|e| e.id.clone()).collect();
        assert_eq!(
            exported_ids,
            searched,
            "{:?}",
            params.pairs().collect::<Vec<_>>()
        );
        // Each line is the event exactly as GET /v1/events/{id} returns it.
        if let Some(first) = exported.first() {
            let one = app
                .client
                .event(&first.id, Some(SEED_TENANT))
                .await
                .unwrap();
            assert_eq!(&one, first);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_export_parses_and_matches_the_search() {
    let app = spawn_app().await;
    seed(&app.client).await;
    let params = seed_params().outcome("failure");
    let bytes = app
        .client
        .export_bytes(ExportFormat::Csv, &params)
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no `{name}` column in {headers:?}"))
    };
    let (id, action, seq) = (col("id"), col("action"), col("seq"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let ids_csv: Vec<_> = rows.iter().map(|r| r[id].to_owned()).collect();
    assert_eq!(ids_csv, ids(&app.client, params).await);
    assert_eq!(&rows[0][action], "auth_failed");
    assert_eq!(&rows[0][seq], "7");

    // Text with commas, quotes, newlines and accents survives the round trip.
    let tricky = event(serde_json::json!({
        "id": "csv-1", "tenant": "csv", "action": "x",
        "description": "línea 1, \"citada\"\nlínea 2"
    }));
    app.client.send(&tricky).await.unwrap();
    let bytes = app
        .client
        .export_bytes(ExportFormat::Csv, &SearchParams::new().tenant("csv"))
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let description = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "description")
        .expect("a description column");
    let row = reader.records().next().unwrap().unwrap();
    assert_eq!(&row[description], "línea 1, \"citada\"\nlínea 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_many_events() {
    let app = spawn_app().await;
    for chunk in numbered("many", "m", 5000).chunks(2500) {
        app.client.send_batch(chunk).await.unwrap();
    }
    let mut stream = app
        .client
        .export(ExportFormat::Ndjson, &SearchParams::new().tenant("many"))
        .await
        .unwrap();
    let mut lines = 0usize;
    let mut chunks = 0usize;
    let mut tail = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        chunks += 1;
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        tail = chunk.to_vec();
    }
    assert_eq!(lines, 5000);
    assert!(tail.ends_with(b"\n"));
    assert!(
        chunks > 1,
        "the export arrives in pieces, not as one buffered body"
    );
}
