//! Ingest: one event, a JSON array batch, NDJSON, and idempotency by `id`.

use bitacora_client::{Method, SearchParams};
use bitacora_core::api::{Ack, BatchItem};
use bitacora_core::canonical::{canonicalize_json, hex_hash, leaf_hash};
use serde_json::json;

use crate::common::*;

fn stored(item: &BatchItem) -> &Ack {
    match item {
        BatchItem::Stored(ack) => ack,
        other => panic!("expected a stored event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_acknowledged_with_201_and_completed_with_defaults() {
    let app = spawn_app().await;
    let resp = app
        .client
        .request(Method::POST, "/v1/events")
        .json(&json!({"action": "user.role_change", "tenant": "solo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let ack: Ack = resp.json().await.unwrap();
    assert_eq!(ack.seq, 0, "the first event of a tenant is seq 0");
    assert!(!ack.duplicate);
    assert_eq!(ack.leaf_hash.len(), 64);
    assert!(
        ack.leaf_hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // A server-generated id is a UUIDv7.
    assert_eq!(ack.id.len(), 36);
    assert_eq!(&ack.id[14..15], "7", "{}", ack.id);

    let e = app.client.event(&ack.id, Some("solo")).await.unwrap();
    assert_eq!(e.seq, Some(0));
    assert_eq!(e.leaf_hash.as_deref(), Some(ack.leaf_hash.as_str()));
    assert_eq!(e.tenant.as_str(), "solo");
    assert_eq!(e.category, "user");
    assert_eq!(e.severity.as_str(), "low");
    assert_eq!(e.outcome.as_str(), "success");
    assert_eq!(e.occurred_at, e.received_at);
    assert_eq!(
        e.context.ip.as_deref(),
        Some("127.0.0.1"),
        "the connection's address"
    );

    // The second one gets the next seq.
    let ack2 = app
        .client
        .send(&event(json!({"action": "x", "tenant": "solo"})))
        .await
        .unwrap();
    assert_eq!(ack2.seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_hash_is_sha256_of_the_canonical_event_as_returned() {
    let app = spawn_app().await;
    let ack = app.client.send(&seed_events()[0]).await.unwrap();
    let raw = app
        .client
        .event_json(&ack.id, Some(SEED_TENANT))
        .await
        .unwrap();
    let canonical = canonicalize_json(&raw).unwrap();
    assert_eq!(hex_hash(&leaf_hash(&canonical)), ack.leaf_hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_array_stores_each_in_order_and_reports_bad_ones_by_index() {
    let app = spawn_app().await;
    let mut events = numbered("b", "arr", 3);
    let bad = event(json!({"action": "x", "tenant": "b", "context": {"ip": "10.0.0.1"}}));
    events.insert(1, bad);
    // Make the inserted one invalid in a way the SDK type can carry.
    events[1].context.as_mut().unwrap().ip = Some("not-an-ip".into());

    let resp = app
        .client
        .request(Method::POST, "/v1/events/batch")
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: bitacora_core::api::BatchResponse = resp.json().await.unwrap();
    assert_eq!(body.results.len(), 4);
    assert_eq!(stored(&body.results[0]).id, "arr-0");
    match &body.results[1] {
        BatchItem::Rejected { index, error } => {
            assert_eq!(*index, 1);
            assert_eq!(error.field.as_deref(), Some("context.ip"), "{error:?}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let seqs: Vec<u64> = [0, 2, 3]
        .iter()
        .map(|&i| stored(&body.results[i]).seq)
        .collect();
    assert_eq!(
        seqs,
        vec![0, 1, 2],
        "good events are stored in order, gapless"
    );
    assert_eq!(
        ids(&app.client, SearchParams::new().tenant("b")).await,
        vec!["arr-2", "arr-1", "arr-0"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_ndjson_stores_each_in_order() {
    let app = spawn_app().await;
    let resp = app
        .client
        .send_ndjson(&numbered("nd", "nd", 5))
        .await
        .unwrap();
    let acks: Vec<&Ack> = resp.results.iter().map(stored).collect();
    assert_eq!(
        acks.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(acks[4].id, "nd-4");

    // Blank lines (and a final line without a newline) are fine; a bad line is one error.
    let body = "{\"id\":\"nd-a\",\"action\":\"x\",\"tenant\":\"nd\"}\n\n{\"action\":\"x\",\"tenant\":\"nd\",\"severity\":\"urgent\"}\n{\"id\":\"nd-b\",\"action\":\"x\",\"tenant\":\"nd\"}";
    let resp = app.client.send_ndjson_raw(body).await.unwrap();
    let errors: Vec<_> = resp
        .results
        .iter()
        .filter_map(|r| match r {
            BatchItem::Rejected { error, .. } => Some(error.field.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors, vec![Some("severity".to_owned())], "{resp:?}");
    let stored_ids: Vec<_> = resp
        .results
        .iter()
        .filter_map(|r| match r {
            BatchItem::Stored(a) => Some(a.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(stored_ids, vec!["nd-a", "nd-b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_id_and_content_is_a_duplicate_with_the_same_seq() {
    let app = spawn_app().await;
    let e = seed_events()[0].clone();
    let first = app.client.send(&e).await.unwrap();
    assert!(!first.duplicate);
    let again = app.client.send(&e).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.id.as_str(), again.seq, again.leaf_hash.as_str()),
        (first.id.as_str(), first.seq, first.leaf_hash.as_str())
    );
    // Nothing new was stored: the next event takes the next seq.
    let next = app.client.send(&seed_events()[1]).await.unwrap();
    assert_eq!(next.seq, first.seq + 1);
    assert_eq!(
        ids(&app.client, SearchParams::new()).await,
        vec!["role-2", "role-1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_id_with_other_content_is_409() {
    let app = spawn_app().await;
    let e = seed_events()[0].clone();
    app.client.send(&e).await.unwrap();
    let mut other = e.clone();
    other.description = Some("otra cosa".into());
    let err = assert_api_error(app.client.send(&other).await, 409, None);
    assert_eq!(err.code, "conflict");
    assert_eq!(err.field.as_deref(), Some("id"), "{err:?}");
    // The stored event is unchanged.
    let stored = app.client.event("role-1", Some(SEED_TENANT)).await.unwrap();
    assert_eq!(
        stored.description.as_deref(),
        Some("Rol cambiado de user a admin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_in_another_tenant_is_another_event() {
    let app = spawn_app().await;
    let a = event(json!({"id": "shared", "tenant": "t1", "action": "x"}));
    let b = event(json!({"id": "shared", "tenant": "t2", "action": "x"}));
    assert!(!app.client.send(&a).await.unwrap().duplicate);
    assert!(!app.client.send(&b).await.unwrap().duplicate);
    assert_eq!(
        app.client
            .event("shared", Some("t2"))
            .await
            .unwrap()
            .tenant
            .as_str(),
        "t2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_inside_one_batch() {
    let app = spawn_app().await;
    let a = event(json!({"id": "in-a", "tenant": "dup", "action": "x"}));
    let b = event(json!({"id": "in-b", "tenant": "dup", "action": "x"}));
    let a_changed = event(json!({"id": "in-a", "tenant": "dup", "action": "y"}));
    let resp = app
        .client
        .send_batch(&[a.clone(), a.clone(), b, a_changed])
        .await
        .unwrap();
    let first = stored(&resp.results[0]);
    let dup = stored(&resp.results[1]);
    assert!(!first.duplicate);
    assert!(dup.duplicate, "{resp:?}");
    assert_eq!((dup.seq, &dup.leaf_hash), (first.seq, &first.leaf_hash));
    assert_eq!(
        stored(&resp.results[2]).seq,
        first.seq + 1,
        "a duplicate takes no seq"
    );
    match &resp.results[3] {
        BatchItem::Rejected { index, error } => {
            assert_eq!(*index, 3);
            assert_eq!(error.code, "conflict", "{error:?}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // And across batches: the whole batch again is all duplicates.
    let resp = app.client.send_batch(&[a]).await.unwrap();
    assert!(stored(&resp.results[0]).duplicate);
    assert_eq!(
        ids(&app.client, SearchParams::new().tenant("dup")).await,
        vec!["in-b", "in-a"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_event_inside_a_batch_is_rejected_alone() {
    let app = spawn_app().await;
    let big = "x".repeat(70 * 1024);
    let events = vec![
        event(json!({"id": "ok-1", "tenant": "big", "action": "x"})),
        event(json!({"id": "big-1", "tenant": "big", "action": "x", "metadata": {"blob": big}})),
        event(json!({"id": "ok-2", "tenant": "big", "action": "x"})),
    ];
    let resp = app.client.send_batch(&events).await.unwrap();
    assert_eq!(stored(&resp.results[0]).id, "ok-1");
    match &resp.results[1] {
        BatchItem::Rejected { index, error } => {
            assert_eq!(*index, 1);
            assert_eq!(error.code, "too_large", "{error:?}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(stored(&resp.results[2]).id, "ok-2");
}
