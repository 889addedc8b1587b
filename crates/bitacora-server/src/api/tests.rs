//! Handler tests: the real router over a real SQLite store in a temporary folder, driven
//! in-process with `oneshot` (the black-box suite drives the binary over a socket).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use bitacora_core::TenantName;
use bitacora_store::{Scope, Store};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::auth::generate_api_key;
use crate::config::{Config, SyncMode};
use crate::state::AppState;

struct TestApp {
    router: Router,
    store: Arc<dyn Store>,
    keys: bitacora_log::LogKeys,
    admin: String,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// `(status, error.code, error.field)` of an error reply.
    fn error(&self) -> (u16, String, Option<String>) {
        let v = self.json();
        let e = &v["error"];
        (
            self.status.as_u16(),
            e["code"]
                .as_str()
                .unwrap_or_else(|| panic!("no error code: {v}"))
                .to_owned(),
            e["field"].as_str().map(str::to_owned),
        )
    }
}

async fn app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    crate::telemetry::init_test_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data = dir.path().to_owned();
    config.store.synchronous = SyncMode::Off;
    configure(&mut config);
    let store = crate::open_store(&config).unwrap();
    let (admin, record) = generate_api_key("test admin", Scope::Admin, None);
    store.insert_api_key(&record).await.unwrap();
    let signer = bitacora_core::checkpoint::NoteSigner::from_seed("bitacora", [9; 32]).unwrap();
    let keys = bitacora_log::LogKeys::new(signer, Vec::new());
    let router = super::router(AppState::new(store.clone(), config, keys.clone()));
    TestApp {
        router,
        store,
        keys,
        admin,
        _dir: dir,
    }
}

async fn app() -> TestApp {
    app_with(|_| {}).await
}

impl TestApp {
    async fn key(&self, scope: Scope, tenant: Option<&str>) -> String {
        let (secret, record) =
            generate_api_key("test", scope, tenant.map(|t| TenantName::parse(t).unwrap()));
        self.store.insert_api_key(&record).await.unwrap();
        secret
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn request(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        self.send(builder.body(body.into()).unwrap()).await
    }

    async fn get(&self, uri: &str, key: &str) -> Reply {
        self.request(Method::GET, uri, Some(key), None, Body::empty())
            .await
    }

    async fn post_json(&self, uri: &str, key: &str, body: &Value) -> Reply {
        self.request(
            Method::POST,
            uri,
            Some(key),
            Some("application/json"),
            body.to_string(),
        )
        .await
    }
}

#[tokio::test]
async fn ingest_then_read_back() {
    let app = app().await;
    let event = json!({
        "id": "e-1", "action": "user.role_change", "actor": {"id": "42", "name": "admin"},
        "target": {"type": "user", "id": "456"}, "changes": [{"field": "role", "old": "user", "new": "admin"}],
        "context": {"ip": "192.168.1.100"}
    });
    let r = app.post_json("/v1/events", &app.admin, &event).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let ack = r.json();
    assert_eq!(ack["id"], "e-1");
    assert_eq!(ack["seq"], 0);
    assert_eq!(ack["duplicate"], false);
    assert_eq!(ack["leaf_hash"].as_str().unwrap().len(), 64);

    // The same event again: a duplicate, 200, same seq and hash.
    let r = app.post_json("/v1/events", &app.admin, &event).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["duplicate"], true);
    assert_eq!(r.json()["leaf_hash"], ack["leaf_hash"]);

    // Same id, other content: 409 naming `id`.
    let mut other = event.clone();
    other["action"] = json!("user.delete");
    let r = app.post_json("/v1/events", &app.admin, &other).await;
    assert_eq!(r.error(), (409, "conflict".into(), Some("id".into())));

    let r = app.get("/v1/events/e-1", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    let got = r.json();
    assert_eq!(got["seq"], 0);
    assert_eq!(got["leaf_hash"], ack["leaf_hash"]);
    assert_eq!(got["tenant"], "default");
    assert_eq!(got["category"], "user");
    // What GET returns re-canonicalizes to the hashed bytes.
    let canonical = bitacora_core::canonical::canonicalize_json(&r.body).unwrap();
    assert_eq!(
        hex::encode(bitacora_core::canonical::leaf_hash(&canonical)),
        ack["leaf_hash"].as_str().unwrap()
    );

    let r = app.get("/v1/events/nope", &app.admin).await;
    assert_eq!(r.error().0, 404);

    let r = app.get("/v1/targets/user/456/history", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["events"][0]["changes"][0]["new"], "admin");
}

#[tokio::test]
async fn bad_single_events_get_the_right_4xx() {
    let app = app().await;
    let key = app.admin.as_str();
    let post = |ct: Option<&'static str>, body: String| {
        app.request(Method::POST, "/v1/events", Some(key), ct, body)
    };
    let json = Some("application/json");

    let r = post(None, r#"{"action":"x"}"#.into()).await;
    assert_eq!(r.error().0, 415);
    let r = post(Some("text/plain"), r#"{"action":"x"}"#.into()).await;
    assert_eq!(r.error().0, 415);
    let r = post(
        Some("application/json; charset=utf-8"),
        r#"{"action":"x"}"#.into(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let cases: &[(&str, u16, &str, Option<&str>)] = &[
        (r#"{"action":"x""#, 400, "invalid_json", None),
        ("", 400, "invalid_json", None),
        (r#"{}"#, 422, "missing_field", Some("action")),
        (r#"{"action":"a b"}"#, 422, "invalid_field", Some("action")),
        (
            r#"{"action":"x","severity":"urgent"}"#,
            422,
            "invalid_field",
            Some("severity"),
        ),
        (
            r#"{"action":"x","context":{"ip":"999.1.1.1"}}"#,
            422,
            "invalid_field",
            Some("context.ip"),
        ),
        (
            r#"{"action":"x","acter":{}}"#,
            422,
            "unknown_field",
            Some("acter"),
        ),
        (
            r#"{"action":"bitacora.key_created"}"#,
            422,
            "reserved_action",
            Some("action"),
        ),
        (r#"[{"action":"x"}]"#, 422, "invalid_event", None),
    ];
    for (body, status, code, field) in cases {
        let r = post(json, (*body).to_owned()).await;
        assert_eq!(
            r.error(),
            (*status, (*code).to_owned(), field.map(str::to_owned)),
            "{body}"
        );
    }

    let huge = json!({"action": "x", "description": "a".repeat(70 * 1024)}).to_string();
    let r = post(json, huge).await;
    assert_eq!(r.error().0, 413);
}

#[tokio::test]
async fn batches_store_good_items_and_report_bad_ones_in_order() {
    let app = app().await;
    let big = json!({"action": "x", "metadata": {"blob": "a".repeat(65 * 1024)}});
    let batch = json!([
        {"id": "b-1", "action": "a.one"},
        {"action": "bad action"},
        big,
        {"id": "b-2", "action": "a.two", "tenant": "other"},
        "not an object",
    ]);
    let r = app.post_json("/v1/events/batch", &app.admin, &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["id"], "b-1");
    assert_eq!(results[0]["seq"], 0);
    assert_eq!(results[1]["index"], 1);
    assert_eq!(results[1]["error"]["field"], "action");
    assert_eq!(results[2]["index"], 2);
    assert_eq!(results[2]["error"]["code"], "too_large");
    assert_eq!(results[3]["id"], "b-2");
    assert_eq!(results[3]["seq"], 0, "first event of tenant `other`");
    assert_eq!(results[4]["error"]["code"], "invalid_event");

    // A conflict is a per-item error too.
    let again = json!([{"id": "b-1", "action": "a.changed"}, {"id": "b-3", "action": "a.three"}]);
    let r = app.post_json("/v1/events/batch", &app.admin, &again).await;
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results[0]["error"]["code"], "conflict");
    assert_eq!(results[1]["seq"], 1);

    // NDJSON.
    let ndjson = "{\"action\":\"n.one\"}\n\n{\"action\":\"n.two\"}\n";
    let r = app
        .request(
            Method::POST,
            "/v1/events/batch",
            Some(&app.admin),
            Some("application/x-ndjson"),
            ndjson,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["results"].as_array().unwrap().len(), 2);

    // Refused whole: not an array, malformed, too many, wrong type.
    let r = app
        .post_json("/v1/events/batch", &app.admin, &json!({"action": "x"}))
        .await;
    assert_eq!(r.error().0, 400);
    let too_many = format!("[{}]", vec![r#"{"action":"x"}"#; 10_001].join(","));
    let r = app
        .request(
            Method::POST,
            "/v1/events/batch",
            Some(&app.admin),
            Some("application/json"),
            too_many,
        )
        .await;
    assert_eq!(r.error().0, 413);
    let r = app
        .request(
            Method::POST,
            "/v1/events/batch",
            Some(&app.admin),
            Some("text/csv"),
            "a,b",
        )
        .await;
    assert_eq!(r.error().0, 415);
}

#[tokio::test]
async fn large_batches_are_sealed_in_parallel_and_keep_order() {
    let app = app().await;
    let items: Vec<Value> = (0..3000)
        .map(|i| {
            if i % 1000 == 999 {
                json!({"id": format!("p-{i}"), "action": "bad action"})
            } else {
                json!({"id": format!("p-{i}"), "action": "bulk.insert", "metadata": {"i": i}})
            }
        })
        .collect();
    let r = app
        .post_json("/v1/events/batch", &app.admin, &Value::Array(items))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3000);
    let mut seq = 0;
    for (i, item) in results.iter().enumerate() {
        if i % 1000 == 999 {
            assert_eq!(item["index"], i);
        } else {
            assert_eq!(item["id"], format!("p-{i}"));
            assert_eq!(item["seq"], seq);
            seq += 1;
        }
    }
}

#[tokio::test]
async fn search_pages_by_cursor_and_by_number() {
    let app = app().await;
    let events: Vec<Value> = (0..25)
        .map(|i| {
            json!({"action": if i % 2 == 0 { "user.login" } else { "doc.edit" },
                   "actor": {"id": format!("{}", i % 3), "name": "Ana"}})
        })
        .collect();
    let r = app
        .post_json("/v1/events/batch", &app.admin, &Value::Array(events))
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Cursor pages, newest first, nothing skipped or repeated.
    let mut seen = Vec::new();
    let mut uri = "/v1/events?limit=10".to_owned();
    loop {
        let r = app.get(&uri, &app.admin).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let page = r.json();
        for e in page["events"].as_array().unwrap() {
            seen.push(e["seq"].as_u64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/events?limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..25).rev().collect::<Vec<u64>>());

    let r = app
        .get(
            "/v1/events?action=user.*&page=2&per_page=5&order=asc",
            &app.admin,
        )
        .await;
    let page = r.json();
    assert_eq!(page["total"], 13);
    assert_eq!(page["page"], 2);
    assert_eq!(page["per_page"], 5);
    assert_eq!(page["total_pages"], 3);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["events"][0]["seq"], 10);

    // Bad parameters are 400s naming the parameter.
    for (q, field) in [
        ("acton=x", "acton"),
        ("limit=0", "limit"),
        ("cursor=garbage", "cursor"),
        ("since=yesterday", "since"),
        ("ip=10.0.0.0/33", "ip"),
        ("tenant=../x", "tenant"),
    ] {
        let r = app.get(&format!("/v1/events?{q}"), &app.admin).await;
        let (status, _, f) = r.error();
        assert_eq!((status, f.as_deref()), (400, Some(field)), "{q}");
    }

    let r = app.get("/v1/actions", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["actions"].as_array().unwrap().len(), 2);
    let r = app.get("/v1/actors?limit=2", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["actors"].as_array().unwrap().len() <= 2);
    let r = app.get("/v1/actors?limit=5000", &app.admin).await;
    assert_eq!(r.error().0, 400);
    let r = app.get("/v1/stats", &app.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["total"], 25);
    let r = app
        .get("/v1/stats?since=2020-01-01&until=2020-01-02", &app.admin)
        .await;
    assert_eq!(r.json()["total"], 0);
}

#[tokio::test]
async fn export_streams_ndjson_and_csv() {
    let app = app().await;
    let events: Vec<Value> = (0..2500)
        .map(|i| json!({"action": "e.x", "description": if i == 7 { "=cmd()" } else { "ok" }}))
        .collect();
    app.post_json("/v1/events/batch", &app.admin, &Value::Array(events))
        .await;

    let r = app
        .get("/v1/export?format=ndjson&limit=5", &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/x-ndjson");
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2500,
        "limit is ignored: an export has every match"
    );
    assert_eq!(lines[0]["seq"], 2499);
    assert_eq!(lines[2499]["seq"], 0);

    // `action=e.*`: the first export's own `bitacora.export` record is in the log now.
    let r = app
        .get("/v1/export?format=csv&order=asc&action=e.*", &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        crate::export::CSV_COLUMNS
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2500);
    assert_eq!(&rows[7][0], "7");
    assert_eq!(&rows[7][20], "'=cmd()");

    let r = app.get("/v1/export?format=xml", &app.admin).await;
    assert_eq!(
        r.error(),
        (400, "unsupported_format".into(), Some("format".into()))
    );

    // A bundle verifies offline with the server's key; its
    // checkpoint was signed on demand (no checkpointer runs here).
    let r = app
        .get("/v1/export?format=bundle&order=asc&action=e.*", &app.admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/x-ndjson");
    let report = bitacora_log::verify_bundle(&r.body[..], Some(&app.keys.verifiers())).unwrap();
    assert_eq!(report.events, 2500);

    // An empty tenant exports a header only.
    let r = app
        .get("/v1/export?format=csv&tenant=empty", &app.admin)
        .await;
    assert_eq!(r.text().lines().count(), 1);
}

#[tokio::test]
async fn scopes_and_pinned_tenants() {
    let app = app().await;
    let ingest = app.key(Scope::Ingest, None).await;
    let read = app.key(Scope::Read, None).await;
    let acme_ingest = app.key(Scope::Ingest, Some("acme")).await;
    let acme_read = app.key(Scope::Read, Some("acme")).await;
    let event = json!({"action": "x"});

    // ingest ⊄ read, read ⊄ ingest, admin does both.
    assert_eq!(
        app.post_json("/v1/events", &ingest, &event).await.status,
        201
    );
    assert_eq!(
        app.post_json("/v1/events", &read, &event).await.error().0,
        403
    );
    assert_eq!(app.get("/v1/events", &ingest).await.error().0, 403);
    assert_eq!(app.get("/v1/events", &read).await.status, 200);
    for path in [
        "/v1/actions",
        "/v1/actors",
        "/v1/stats",
        "/v1/export",
        "/v1/targets/a/b/history",
    ] {
        assert_eq!(app.get(path, &ingest).await.error().0, 403, "{path}");
        assert_eq!(app.get(path, &read).await.status, 200, "{path}");
    }

    // A pinned key writes and reads its tenant only.
    let r = app.post_json("/v1/events", &acme_ingest, &event).await;
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = app
        .post_json(
            "/v1/events",
            &acme_ingest,
            &json!({"action": "x", "tenant": "other"}),
        )
        .await;
    assert_eq!(
        r.error(),
        (403, "tenant_forbidden".into(), Some("tenant".into()))
    );
    let r = app.get("/v1/events", &acme_read).await;
    let page = r.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["tenant"], "acme");
    assert_eq!(
        app.get("/v1/events?tenant=default", &acme_read)
            .await
            .error()
            .0,
        403
    );
    assert_eq!(
        app.get(&format!("/v1/events/{id}"), &acme_read)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/v1/events/{id}"), &read).await.error().0,
        404
    );
    assert_eq!(
        app.get(&format!("/v1/events/{id}?tenant=acme"), &read)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get("/v1/export?tenant=default", &acme_read)
            .await
            .error()
            .0,
        403
    );
    assert_eq!(
        app.get("/v1/stats?tenant=default", &acme_read)
            .await
            .error()
            .0,
        403
    );
}

#[tokio::test]
async fn unauthenticated_and_revoked_keys_get_401() {
    let app = app().await;
    let r = app
        .request(Method::GET, "/v1/events", None, None, Body::empty())
        .await;
    assert_eq!(r.error().0, 401);
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    let r = app.get("/v1/events", "bk_not-a-key").await;
    assert_eq!(r.error().0, 401);

    let read = app.key(Scope::Read, None).await;
    assert_eq!(app.get("/v1/events", &read).await.status, 200);
    let keys = app.store.api_keys().await.unwrap();
    let id = &keys.last().unwrap().id;
    assert!(app.store.revoke_api_key(id).await.unwrap());
    // Revocation is effective once the one-second cache expires.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get("/v1/events", &read).await.error().0, 401);
}

#[tokio::test]
async fn failed_authentication_is_rate_limited_per_address() {
    let app = app_with(|c| c.server.auth_failures_per_minute = 3).await;
    let from = |ip: [u8; 4]| {
        let mut request = Request::builder()
            .uri("/v1/events")
            .header(header::AUTHORIZATION, "Bearer bk_wrong")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 5000))));
        request
    };
    for _ in 0..3 {
        assert_eq!(app.send(from([10, 0, 0, 1])).await.status, 401);
    }
    let r = app.send(from([10, 0, 0, 1])).await;
    assert_eq!(r.error().0, 429);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // Another address is unaffected.
    assert_eq!(app.send(from([10, 0, 0, 2])).await.status, 401);

    // Failures are limited, successes never: a valid key from the limited address is served
    // (anyone behind the same NAT could otherwise stop its ingestion), and a bad one still
    // gets 429 after it.
    let ingest = app.key(Scope::Ingest, None).await;
    for i in 0..30 {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {ingest}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(format!(
                r#"{{"action":"nat.write","id":"nat-{i}"}}"#
            )))
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 5001))));
        assert_eq!(app.send(request).await.status, 201, "write {i}");
    }
    assert_eq!(app.send(from([10, 0, 0, 1])).await.status, 429);
}

#[tokio::test]
async fn the_client_address_is_recorded_when_the_event_has_none() {
    let app = app().await;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/v1/events")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
        .header(header::CONTENT_TYPE, "application/json")
        // Not from a trusted proxy: ignored.
        .header("x-forwarded-for", "6.6.6.6")
        .body(Body::from(r#"{"id":"ip-1","action":"x"}"#))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 4000))));
    assert_eq!(app.send(request).await.status, 201);
    let r = app.get("/v1/events/ip-1", &app.admin).await;
    assert_eq!(r.json()["context"]["ip"], "192.0.2.7");
}

#[tokio::test]
async fn errors_outside_handlers_are_json_too() {
    let app = app().await;
    let r = app.get("/v1/nothing-here", &app.admin).await;
    assert_eq!(r.error().0, 404);
    let r = app
        .request(
            Method::DELETE,
            "/v1/events",
            Some(&app.admin),
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(r.error().0, 405);
    let r = app
        .request(Method::GET, "/", None, None, Body::empty())
        .await;
    assert!(r.status.is_redirection());
    assert_eq!(r.headers[header::LOCATION], "/ui/");
    // Request ids are set and echoed.
    let r = app.get("/healthz", "").await;
    assert!(r.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn operations_endpoints() {
    let app = app().await;
    let r = app
        .request(Method::GET, "/healthz", None, None, Body::empty())
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .request(Method::GET, "/readyz", None, None, Body::empty())
        .await;
    assert_eq!(r.json()["status"], "ready");
    app.post_json("/v1/events", &app.admin, &json!({"action": "m"}))
        .await;
    crate::metrics::handle();
    app.post_json("/v1/events", &app.admin, &json!({"action": "m"}))
        .await;
    let r = app
        .request(Method::GET, "/metrics", None, None, Body::empty())
        .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("bitacora_http_requests_total"), "{text}");
    assert!(text.contains("bitacora_events_ingested_total"), "{text}");
    // Labelled by route pattern, not raw path.
    assert!(text.contains(r#"route="/v1/events""#), "{text}");
    assert!(
        text.contains("bitacora_http_request_duration_seconds_bucket"),
        "{text}"
    );

    let r = app
        .request(Method::GET, "/docs/", None, None, Body::empty())
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("swagger"),
        "the page is served from the binary"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = app().await;
    let r = app
        .request(Method::GET, "/openapi.json", None, None, Body::empty())
        .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/healthz",
            "/metrics",
            "/readyz",
            "/v1/actions",
            "/v1/actors",
            "/v1/alert-rules",
            "/v1/alert-rules/test",
            "/v1/alert-rules/{id}",
            "/v1/alert-rules/{id}/disable",
            "/v1/alert-rules/{id}/enable",
            "/v1/alerts",
            "/v1/destinations",
            "/v1/destinations/{id}",
            "/v1/destinations/{id}/retire-secret",
            "/v1/destinations/{id}/rotate-secret",
            "/v1/destinations/{id}/test",
            "/v1/events",
            "/v1/events/batch",
            "/v1/events/{id}",
            "/v1/events/{id}/inclusion",
            "/v1/events/{id}/proof",
            "/v1/export",
            "/v1/legal-holds",
            "/v1/legal-holds/{id}",
            "/v1/log",
            "/v1/log/checkpoint",
            "/v1/log/proof/consistency",
            "/v1/log/proof/inclusion",
            "/v1/log/public-key",
            "/v1/retention",
            "/v1/stats",
            "/v1/targets/{type}/{id}/history",
            "/v1/viewer-tokens",
            "/v1/viewer-tokens/{id}",
        ]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Every /v1 operation needs the key and documents its errors with ErrorBody.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            // The verifier key is public on purpose.
            if !path.starts_with("/v1") || path == "/v1/log/public-key" {
                continue;
            }
            assert!(op["security"].is_array(), "{method} {path}");
            for status in ["401", "403", "503"] {
                let schema =
                    &op["responses"][status]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
}

#[tokio::test]
async fn checkpoints_and_proofs() {
    let app = app().await;
    let reader = app.key(Scope::Read, Some("acme")).await;
    let tenant = TenantName::parse("acme").unwrap();

    // The public key needs no credential: current key first.
    let r = app
        .request(Method::GET, "/v1/log/public-key", None, None, Body::empty())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(r.text(), format!("{}\n", app.keys.public_key()));

    // No events, no checkpoint: a JSON 404 with its own code.
    let r = app.get("/v1/log/checkpoint", &reader).await;
    assert_eq!(r.error(), (404, "no_checkpoint".into(), None));
    let r = app.get("/v1/log/proof/inclusion?seq=0", &reader).await;
    assert_eq!(r.error(), (404, "no_checkpoint".into(), None));

    let events: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("e{i}"), "tenant": "acme", "action": "x.y"}))
        .collect();
    let r = app
        .post_json("/v1/events/batch", &app.admin, &json!(events))
        .await;
    assert_eq!(r.status, 200);
    let signer = app.keys.signer().clone();
    bitacora_log::checkpoint_tenant(&*app.store, &signer, &tenant, 1)
        .await
        .unwrap()
        .unwrap();

    let r = app.get("/v1/log/checkpoint", &reader).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    let (signed, _) = bitacora_core::checkpoint::open_checkpoint(
        r.text(),
        "bitacora/acme",
        &app.keys.verifiers_for("bitacora/acme"),
    )
    .unwrap();
    assert_eq!(signed.size, 20);

    let r = app.get("/v1/log/proof/inclusion?seq=3", &reader).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["leaf_index"].as_u64(), v["tree_size"].as_u64()),
        (Some(3), Some(20))
    );
    let r = app
        .get("/v1/log/proof/consistency?first=5&second=20", &reader)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["first"], 5);

    let r = app.get("/v1/events/e3/inclusion", &reader).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["state"], "verified", "{v}");
    assert_eq!(v["verified"], true);
    assert_eq!(v["seq"], 3);
    let r = app.get("/v1/events/nope/inclusion", &reader).await;
    assert_eq!(r.error().0, 404);

    // Bad numbers are 400s naming the parameter, never 5xx.
    for (uri, field) in [
        ("/v1/log/proof/inclusion", "seq"),
        ("/v1/log/proof/inclusion?seq=-1", "seq"),
        ("/v1/log/proof/inclusion?seq=abc", "seq"),
        ("/v1/log/proof/inclusion?seq=18446744073709551616", "seq"),
        ("/v1/log/proof/inclusion?seq=1&tree_size=x", "tree_size"),
        ("/v1/log/proof/inclusion?seq=1&tree_size=21", "tree_size"),
        ("/v1/log/proof/inclusion?seq=20&tree_size=20", "seq"),
        ("/v1/log/proof/inclusion?seq=1&tree_size=0", "seq"),
        ("/v1/log/proof/inclusion?seq=1&size=3", "size"),
        ("/v1/log/proof/consistency?second=3", "first"),
        ("/v1/log/proof/consistency?first=3", "second"),
        ("/v1/log/proof/consistency?first=3&second=99", "second"),
        ("/v1/log/proof/consistency?first=9&second=3", "first"),
        ("/v1/log/proof/consistency?first=1.5&second=3", "first"),
        ("/v1/log/checkpoint?tenant=a%20b", "tenant"),
    ] {
        let r = app.get(uri, &reader).await;
        let (status, _, f) = r.error();
        assert_eq!(
            (status, f.as_deref()),
            (400, Some(field)),
            "{uri}: {}",
            r.text()
        );
    }

    // A pinned key cannot reach another tenant's log.
    for uri in [
        "/v1/log/checkpoint?tenant=other",
        "/v1/log/proof/inclusion?seq=0&tree_size=1&tenant=other",
        "/v1/log/proof/consistency?first=0&second=1&tenant=other",
        "/v1/events/e3/inclusion?tenant=other",
    ] {
        let r = app.get(uri, &reader).await;
        assert_eq!(r.error().0, 403, "{uri}");
    }
    // ... and an ingest key cannot read proofs at all.
    let ingest = app.key(Scope::Ingest, None).await;
    let r = app.get("/v1/log/checkpoint?tenant=acme", &ingest).await;
    assert_eq!(r.error().0, 403);
}

mod access;
mod lifecycle;
