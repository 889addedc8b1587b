//! A table of bad inputs: each gets the exact 4xx, a JSON error body and the named field —
//! never a 5xx.

use bitacora_client::{ClientError, Method};
use serde_json::{Value, json};

use crate::common::*;

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// The field the error must name (`None`: the error concerns the input as a whole and
    /// any or no field is accepted).
    field: Option<&'static str>,
    /// The error code, when the contract or the core fixes it.
    code: Option<&'static str>,
}

fn post_event(name: &'static str, body: &str, status: u16, field: Option<&'static str>) -> Case {
    Case {
        name,
        method: Method::POST,
        path: "/v1/events".into(),
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        field,
        code: None,
    }
}

fn search(name: &'static str, query: &str, field: &'static str) -> Case {
    Case {
        name,
        method: Method::GET,
        path: format!("/v1/events?{query}"),
        content_type: None,
        body: Vec::new(),
        status: 400,
        field: Some(field),
        code: None,
    }
}

fn with_code(mut case: Case, code: &'static str) -> Case {
    case.code = Some(code);
    case
}

/// Runs every case and reports all failures at once.
async fn run(app: &TestApp, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        // One connection per case: after refusing an oversized body early (413) the server
        // closes the connection without reading the rest, and a pooled connection reused by
        // the next case could be that closed one (a transport error that is the pool's race,
        // not the server's answer).
        let mut req = app
            .client
            .request(case.method.clone(), &case.path)
            .header("connection", "close");
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        if !case.body.is_empty() {
            req = req.body(case.body.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: transport error {e}", case.name));
                continue;
            }
        };
        match bitacora_client::decode::<Value>(resp).await {
            Err(ClientError::Api { status, body }) => {
                let e = &body.error;
                if status.as_u16() != case.status {
                    failures.push(format!(
                        "{}: status {status}, want {} ({e:?})",
                        case.name, case.status
                    ));
                } else if case.field.is_some() && e.field.as_deref() != case.field {
                    failures.push(format!(
                        "{}: field {:?}, want {:?} ({e:?})",
                        case.name, e.field, case.field
                    ));
                } else if case.code.is_some_and(|c| c != e.code) {
                    failures.push(format!(
                        "{}: code {}, want {:?}",
                        case.name, e.code, case.code
                    ));
                } else if e.message.is_empty() || e.code.is_empty() {
                    failures.push(format!("{}: empty code or message", case.name));
                }
            }
            other => failures.push(format!(
                "{}: expected HTTP {} with a JSON error, got {other:?}",
                case.name, case.status
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_4xx_naming_the_field() {
    let app = spawn_app().await;
    let long = "a".repeat(129);
    let action_too_long = format!(r#"{{"action":"{long}"}}"#);
    let id_too_long = format!(r#"{{"action":"x","id":"{long}"}}"#);
    let cases = vec![
        with_code(
            post_event("malformed JSON", r#"{"action":"#, 400, None),
            "invalid_json",
        ),
        with_code(
            post_event("trailing garbage", r#"{"action":"x"} x"#, 400, None),
            "invalid_json",
        ),
        post_event("not an object", r#"[{"action":"x"}]"#, 422, None),
        post_event("empty body", "", 400, None),
        with_code(
            post_event("missing action", "{}", 422, Some("action")),
            "missing_field",
        ),
        post_event(
            "action of the wrong type",
            r#"{"action":42}"#,
            422,
            Some("action"),
        ),
        post_event(
            "action with a space",
            r#"{"action":"a b"}"#,
            422,
            Some("action"),
        ),
        post_event("empty action", r#"{"action":""}"#, 422, Some("action")),
        post_event("action too long", &action_too_long, 422, Some("action")),
        with_code(
            post_event(
                "reserved action",
                r#"{"action":"bitacora.key_created"}"#,
                422,
                Some("action"),
            ),
            "reserved_action",
        ),
        post_event(
            "unknown severity",
            r#"{"action":"x","severity":"urgent"}"#,
            422,
            Some("severity"),
        ),
        post_event(
            "severity of the wrong type",
            r#"{"action":"x","severity":3}"#,
            422,
            Some("severity"),
        ),
        post_event(
            "unknown outcome",
            r#"{"action":"x","outcome":"maybe"}"#,
            422,
            Some("outcome"),
        ),
        post_event(
            "unknown actor type",
            r#"{"action":"x","actor":{"type":"robot"}}"#,
            422,
            Some("actor.type"),
        ),
        post_event(
            "actor of the wrong type",
            r#"{"action":"x","actor":"ana"}"#,
            422,
            Some("actor"),
        ),
        post_event(
            "target without type",
            r#"{"action":"x","target":{"id":"1"}}"#,
            422,
            Some("target.type"),
        ),
        post_event(
            "changes not a list",
            r#"{"action":"x","changes":"role"}"#,
            422,
            Some("changes"),
        ),
        post_event(
            "change without field",
            r#"{"action":"x","changes":[{"old":1}]}"#,
            422,
            Some("changes[0].field"),
        ),
        post_event(
            "bad IP",
            r#"{"action":"x","context":{"ip":"999.1.1.1"}}"#,
            422,
            Some("context.ip"),
        ),
        post_event(
            "IP with a prefix",
            r#"{"action":"x","context":{"ip":"10.0.0.0/8"}}"#,
            422,
            Some("context.ip"),
        ),
        post_event(
            "bad occurred_at",
            r#"{"action":"x","occurred_at":"yesterday"}"#,
            422,
            Some("occurred_at"),
        ),
        post_event(
            "impossible date",
            r#"{"action":"x","occurred_at":"2026-13-01T00:00:00Z"}"#,
            422,
            Some("occurred_at"),
        ),
        post_event(
            "date without time",
            r#"{"action":"x","occurred_at":"2026-01-20"}"#,
            422,
            Some("occurred_at"),
        ),
        post_event(
            "bad tenant",
            r#"{"action":"x","tenant":"a/b"}"#,
            422,
            Some("tenant"),
        ),
        post_event("empty id", r#"{"action":"x","id":""}"#, 422, Some("id")),
        post_event("id too long", &id_too_long, 422, Some("id")),
        post_event(
            "metadata not an object",
            r#"{"action":"x","metadata":[1]}"#,
            422,
            Some("metadata"),
        ),
        with_code(
            post_event(
                "unknown field",
                r#"{"action":"x","acter":{}}"#,
                422,
                Some("acter"),
            ),
            "unknown_field",
        ),
    ];
    run(&app, cases).await;
    // Nothing of that was stored.
    assert!(
        ids(
            &app.client,
            bitacora_client::SearchParams::new()
                .tenant("default")
                .action("x,a b,bitacora.key_created")
        )
        .await
        .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_and_content_types() {
    let app = spawn_app().await;
    let big_event =
        serde_json::to_vec(&json!({"action": "x", "metadata": {"blob": "x".repeat(65 * 1024)}}))
            .unwrap();
    let many: Vec<Value> = (0..10_001).map(|_| json!({"action": "x"})).collect();
    let many = serde_json::to_vec(&many).unwrap();
    // 17 MiB of events that are each under 64 KiB.
    let chunk = "y".repeat(60 * 1024);
    let heavy: Vec<Value> = (0..290)
        .map(|_| json!({"action": "x", "metadata": {"blob": chunk}}))
        .collect();
    let heavy = serde_json::to_vec(&heavy).unwrap();
    assert!(heavy.len() > 16 * 1024 * 1024);
    let ndjson_many: Vec<u8> = "{\"action\":\"x\"}\n".repeat(10_001).into_bytes();

    let batch = |name, ct: &'static str, body: Vec<u8>, status| Case {
        name,
        method: Method::POST,
        path: "/v1/events/batch".into(),
        content_type: Some(ct),
        body,
        status,
        field: None,
        code: None,
    };
    let one = |name, ct: &'static str, body: &[u8], status| Case {
        name,
        method: Method::POST,
        path: "/v1/events".into(),
        content_type: Some(ct),
        body: body.to_vec(),
        status,
        field: None,
        code: None,
    };
    let cases = vec![
        one("oversize event", "application/json", &big_event, 413),
        batch("batch of 10,001 events", "application/json", many, 413),
        batch(
            "NDJSON batch of 10,001 events",
            "application/x-ndjson",
            ndjson_many,
            413,
        ),
        batch("batch over 16 MiB", "application/json", heavy, 413),
        one(
            "event as text/plain",
            "text/plain",
            br#"{"action":"x"}"#,
            415,
        ),
        one(
            "event as form",
            "application/x-www-form-urlencoded",
            b"action=x",
            415,
        ),
        batch(
            "batch as text/csv",
            "text/csv",
            b"action\nx\n".to_vec(),
            415,
        ),
        batch(
            "malformed batch",
            "application/json",
            br#"[{"action":"x"},"#.to_vec(),
            400,
        ),
    ];
    run(&app, cases).await;
    // A batch at the limit is fine.
    let max: Vec<_> = (0..10_000)
        .map(|i| event(json!({"action": "x", "tenant": "max", "id": format!("m{i}")})))
        .collect();
    let resp = app.client.send_batch(&max).await.unwrap();
    assert_eq!(resp.results.len(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_search_parameters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    app.client
        .send(&event(json!({"action": "x"})))
        .await
        .unwrap();
    let cases = vec![
        with_code(
            search("unknown parameter", "acton=x", "acton"),
            "unknown_parameter",
        ),
        search("bad IP", "ip=999.1.1.1", "ip"),
        search("bad IP text", "ip=localhost", "ip"),
        search("bad CIDR v4", "ip=10.0.0.0/33", "ip"),
        search("bad CIDR v6", "ip=2001:db8::/129", "ip"),
        search("bad since", "since=yesterday", "since"),
        search("bad until", "until=2026-13-01", "until"),
        search(
            "until before since",
            "since=2026-02-01&until=2026-01-01",
            "until",
        ),
        search("bad cursor", "cursor=garbage", "cursor"),
        search(
            "cursor of the other order",
            "order=asc&cursor=djFkMTA",
            "cursor",
        ),
        search("cursor with page", "page=2&cursor=djFkMTA", "cursor"),
        search("limit 0", "limit=0", "limit"),
        search("limit 1001", "limit=1001", "limit"),
        search("limit not a number", "limit=ten", "limit"),
        search("page 0", "page=0", "page"),
        search("per_page 1001", "per_page=1001", "per_page"),
        search("unknown severity", "severity=urgent", "severity"),
        search(
            "unknown min_severity",
            "min_severity=extreme",
            "min_severity",
        ),
        search("unknown outcome", "outcome=maybe", "outcome"),
        search("unknown order", "order=sideways", "order"),
        search("bad action pattern", "action=us*er", "action"),
        search("bad tenant", "tenant=../etc", "tenant"),
        search("repeated parameter", "action=a&action=b", "action"),
        Case {
            name: "export in an unknown format",
            method: Method::GET,
            path: "/v1/export?format=xml".into(),
            content_type: None,
            body: Vec::new(),
            status: 400,
            field: Some("format"),
            code: None,
        },
        Case {
            name: "export with a bad filter",
            method: Method::GET,
            path: "/v1/export?format=ndjson&ip=1.2.3".into(),
            content_type: None,
            body: Vec::new(),
            status: 400,
            field: Some("ip"),
            code: None,
        },
    ];
    run(&app, cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_invalid_keys_are_401() {
    let app = spawn_app().await;
    let c = &app.client;
    for (name, req) in [
        (
            "no key, search",
            c.request_without_key(Method::GET, "/v1/events"),
        ),
        (
            "no key, ingest",
            c.request_without_key(Method::POST, "/v1/events")
                .json(&json!({"action": "x"})),
        ),
        (
            "no key, export",
            c.request_without_key(Method::GET, "/v1/export?format=ndjson"),
        ),
        (
            "wrong key",
            c.with_api_key("bk_not-a-real-key")
                .request(Method::GET, "/v1/events"),
        ),
        (
            "not bearer",
            c.request_without_key(Method::GET, "/v1/events")
                .header("authorization", format!("Basic {}", app.admin_key)),
        ),
    ] {
        let resp = req.send().await.unwrap();
        let result = bitacora_client::decode::<Value>(resp).await;
        let err = assert_api_error(result, 401, None);
        assert!(
            !err.message.contains(&app.admin_key),
            "{name}: the key is echoed back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_event_id_is_404() {
    let app = spawn_app().await;
    assert_api_error(app.client.event("no-such-id", None).await, 404, None);
    assert_api_error(app.client.event("a/b?c", Some("acme")).await, 404, None);
}
