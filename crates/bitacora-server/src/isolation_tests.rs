//! Tenant isolation on **every** route, generated from the router (issue 14, finding 1).
//!
//! The routes come from what the server is built from — the OpenAPI document the API router
//! generates and [`crate::ui::routes`] the viewer is built from — never from a hand-written
//! list, so a page or endpoint added tomorrow is covered the day it lands. Each is tried with
//! every method the server has, as a credential pinned to one tenant (API key, viewer token,
//! viewer session), with repeated, empty and percent-encoded `tenant` parameters and with the
//! other tenant named outright. What must hold:
//!
//! - a repeated parameter is refused with `400` before anything reads it (the old break: the
//!   viewer's session checked the first `tenant=`, its search read the last);
//! - no response ever carries the other tenant's events, and none is a 5xx.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use bitacora_core::{EventInput, IngestContext, IngestPolicy, SealedEvent, TenantName};
use bitacora_store::Scope;
use futures::StreamExt as _;
use serde_json::json;
use tower::ServiceExt as _;

use crate::auth::generate_api_key;
use crate::config::{Config, SyncMode};
use crate::state::AppState;

const ACME_SECRET: &str = "ACMEONLYMARKER";
const GLOBEX_SECRET: &str = "GLOBEXONLYMARKER";

struct World {
    router: Router,
    /// (label, secret, tenant it is pinned to)
    credentials: Vec<(&'static str, String, &'static str)>,
    routes: Vec<String>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    crate::telemetry::init_test_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data = dir.path().to_owned();
    config.store.synchronous = SyncMode::Off;
    let store = crate::open_store(&config).unwrap();
    let signer = bitacora_core::checkpoint::NoteSigner::from_seed("bitacora", [3; 32]).unwrap();
    let keys = bitacora_log::LogKeys::new(signer, Vec::new());
    let state = AppState::new(store.clone(), config, keys);

    for (tenant, secret) in [("acme", ACME_SECRET), ("globex", GLOBEX_SECRET)] {
        let events: Vec<SealedEvent> = (0..3)
            .map(|i| {
                let v = json!({
                    "id": format!("{tenant}-{i}"), "tenant": tenant, "action": "user.update",
                    "description": format!("{secret} event {i}"),
                    "actor": {"id": format!("{tenant}-actor"), "name": format!("{secret} actor")},
                    "target": {"type": "user", "id": "shared-target"},
                    "changes": [{"field": "role", "old": "user", "new": secret}],
                    "context": {"ip": "10.9.8.7", "source": "isolation"},
                });
                SealedEvent::prepare(
                    EventInput::from_json(v.to_string().as_bytes()).unwrap(),
                    &IngestPolicy::default(),
                    &IngestContext {
                        pinned_tenant: None,
                        received_at: chrono::Utc::now(),
                        client_ip: None,
                        allow_reserved: false,
                    },
                )
                .unwrap()
            })
            .collect();
        store.append(events).await.unwrap();
        bitacora_log::checkpoint_tenant(
            &*store,
            &state.signer,
            &TenantName::parse(tenant).unwrap(),
            bitacora_log::now_micros(),
        )
        .await
        .unwrap();
    }

    let mut credentials = Vec::new();
    for (label, scope, tenant) in [
        ("acme read key", Scope::Read, "acme"),
        ("acme ingest key", Scope::Ingest, "acme"),
        ("globex read key", Scope::Read, "globex"),
    ] {
        let (secret, record) =
            generate_api_key(label, scope, Some(TenantName::parse(tenant).unwrap()));
        store.insert_api_key(&record).await.unwrap();
        credentials.push((label, secret, tenant));
    }
    let router = crate::app(state.clone());

    // A viewer token for globex, issued through the API as an administrator would.
    let (admin, record) = generate_api_key("admin", Scope::Admin, None);
    store.insert_api_key(&record).await.unwrap();
    let response = router
        .clone()
        .oneshot(
            Request::post("/v1/viewer-tokens")
                .header(header::AUTHORIZATION, format!("Bearer {admin}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"tenant":"globex","ttl_seconds":600}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    credentials.push((
        "globex viewer token",
        token["token"].as_str().unwrap().to_owned(),
        "globex",
    ));

    // Every route the server has: the API's from the OpenAPI document its router generates,
    // the viewer's from the list its router is built from, and the few others.
    let (_, openapi) = crate::api::build(state);
    let mut routes: Vec<String> = openapi.paths.paths.keys().cloned().collect();
    routes.extend(crate::ui::routes().into_iter().map(|(p, _)| p.to_owned()));
    routes.extend(["/", "/openapi.json", "/docs", "/docs/"].map(str::to_owned));
    // The C2SP tlog-tiles routes (api/tlog.rs), outside the OpenAPI document.
    routes.extend(
        [
            "/logs/{tenant}/checkpoint",
            "/logs/{tenant}/tile/{level}/{index}",
            "/logs/{tenant}/tile/entries/{index}",
        ]
        .map(str::to_owned),
    );
    assert!(routes.len() > 30, "{routes:?}");

    World {
        router,
        credentials,
        routes,
        _dir: dir,
    }
}

/// A concrete path for a route pattern: each `{param}` filled with a value that names the
/// *other* tenant's data where it can (its event ids, the target both tenants have).
fn concrete(pattern: &str, other: &str) -> String {
    pattern
        .split('/')
        .map(|part| match part {
            "{id}" if pattern.contains("/targets/") => "shared-target".to_owned(),
            "{id}" => format!("{other}-0"),
            "{type}" | "{kind}" => "user".to_owned(),
            "{file}" => "ui.css".to_owned(),
            "{tenant}" => other.to_owned(),
            "{level}" => "0".to_owned(),
            "{index}" => "000.p/1".to_owned(),
            p if p.starts_with('{') => "x".to_owned(),
            p => p.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

struct Seen {
    status: StatusCode,
    body: String,
}

/// Sends one request and reads its body for at most a moment (the live tail never ends).
async fn send(router: &Router, method: &Method, uri: &str, secret: &str) -> Seen {
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::COOKIE, format!("bitacora_session={secret}"));
    let body = if *method == Method::POST {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
        Body::from(r#"{"action":"probe.isolation","tenant_hint":"x"}"#)
    } else {
        Body::empty()
    };
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        router.clone().oneshot(builder.body(body).unwrap()),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {uri}: no response head within 10 s"))
    .unwrap();
    let status = response.status();
    let mut body = response.into_body().into_data_stream();
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Some(Ok(data))) = tokio::time::timeout_at(deadline, body.next()).await {
        bytes.extend_from_slice(&data);
        if bytes.len() > 4 << 20 {
            break;
        }
    }
    Seen {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_lets_a_pinned_credential_reach_another_tenant() {
    let w = world().await;
    let methods = [Method::GET, Method::POST, Method::DELETE];
    let mut failures = Vec::new();
    let mut tried = 0;
    for (label, secret, mine) in &w.credentials {
        let other = if *mine == "acme" { "globex" } else { "acme" };
        let leaked = if other == "globex" {
            GLOBEX_SECRET
        } else {
            ACME_SECRET
        };
        // Each name given twice, one way or another: refused before anything reads it.
        let repeated = [
            format!("tenant={mine}&tenant={other}"),
            format!("tenant=&tenant={other}"),
            format!("tenant={other}&tenant={mine}"),
            format!("tenant={mine}&tenant="),
            format!("ten%61nt={mine}&tenant={other}"),
            format!("tenant={mine}&%74enant={other}"),
            format!("tenant={mine}&tenant={mine}"),
            format!("action=x&tenant={mine}&limit=5&tenant={other}"),
        ];
        // Named once: the other tenant is refused or simply not shown.
        let single = [
            format!("tenant={other}"),
            format!("tenant=%20{other}"),
            format!("tenant={}", other.to_uppercase()),
            String::new(),
        ];
        for route in &w.routes {
            let path = concrete(route, other);
            for method in &methods {
                for q in &repeated {
                    tried += 1;
                    let uri = format!("{path}?{q}");
                    let seen = send(&w.router, method, &uri, secret).await;
                    if seen.status != StatusCode::BAD_REQUEST {
                        failures.push(format!(
                            "{label}: {method} {uri}: {} (expected 400)",
                            seen.status
                        ));
                    }
                    if seen.body.contains(leaked) {
                        failures.push(format!("{label}: {method} {uri}: LEAKS {other}"));
                    }
                }
                for q in &single {
                    tried += 1;
                    let uri = if q.is_empty() {
                        path.clone()
                    } else {
                        format!("{path}?{q}")
                    };
                    let seen = send(&w.router, method, &uri, secret).await;
                    if seen.status.is_server_error() {
                        failures.push(format!("{label}: {method} {uri}: {}", seen.status));
                    }
                    if seen.body.contains(leaked) {
                        failures.push(format!(
                            "{label}: {method} {uri}: {} LEAKS {other}",
                            seen.status
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} requests broke isolation:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Not vacuous: the same credentials do read their own tenant on the same routes.
    let (_, acme_reader, _) = &w.credentials[0];
    for uri in [
        "/v1/events?tenant=acme",
        "/v1/events/acme-0",
        "/v1/export?format=ndjson",
        "/ui/?tenant=acme",
        "/ui/events/acme-0",
        "/logs/acme/tile/entries/000.p/1",
    ] {
        let seen = send(&w.router, &Method::GET, uri, acme_reader).await;
        assert_eq!(seen.status, StatusCode::OK, "{uri}");
        assert!(seen.body.contains(ACME_SECRET), "{uri}: {}", seen.body);
    }
    let tail = send(
        &w.router,
        &Method::GET,
        "/ui/tail?tenant=acme&from=0",
        acme_reader,
    )
    .await;
    assert_eq!(tail.status, StatusCode::OK);
    assert!(tail.body.contains(ACME_SECRET), "{}", tail.body);
}

mod properties {
    //! The same promise for generated query strings: random parameter names (plain, empty,
    //! percent-encoded, upper-case) and values (the other tenant, encoded separators, NUL),
    //! repeated or not, on random routes, as random pinned credentials.

    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;

    fn runtime() -> &'static tokio::runtime::Runtime {
        static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        })
    }

    fn shared() -> &'static World {
        static WORLD: OnceLock<World> = OnceLock::new();
        WORLD.get_or_init(|| runtime().block_on(world()))
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("tenant".to_owned()),
            Just("tenant".to_owned()),
            Just("ten%61nt".to_owned()),
            Just("%74enant".to_owned()),
            Just("TENANT".to_owned()),
            Just("tenant%00".to_owned()),
            Just(String::new()),
            Just("action".to_owned()),
            Just("q".to_owned()),
            Just("limit".to_owned()),
            Just("from".to_owned()),
            Just("next".to_owned()),
            Just("format".to_owned()),
            Just("cursor".to_owned()),
            "[a-z_%0-9]{1,8}",
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("acme".to_owned()),
            Just("globex".to_owned()),
            Just("GLOBEX".to_owned()),
            Just(String::new()),
            Just("%20globex".to_owned()),
            Just("globex%00".to_owned()),
            Just("acme%26tenant%3Dglobex".to_owned()),
            Just("ndjson".to_owned()),
            Just("0".to_owned()),
            "[a-z0-9%.*,:=;+-]{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn generated_queries_never_cross_tenants(
            params in prop::collection::vec((name(), value()), 0..6),
            route in any::<prop::sample::Index>(),
            credential in 0usize..4,
            post in any::<bool>(),
        ) {
            let w = shared();
            let (label, secret, mine) = &w.credentials[credential];
            let other = if *mine == "acme" { "globex" } else { "acme" };
            let leaked = if other == "globex" { GLOBEX_SECRET } else { ACME_SECRET };
            let path = concrete(&w.routes[route.index(w.routes.len())], other);
            let query: Vec<String> = params.iter().map(|(n, v)| format!("{n}={v}")).collect();
            let uri = format!("{path}?{}", query.join("&"));
            let method = if post { Method::POST } else { Method::GET };
            let seen = runtime().block_on(send(&w.router, &method, &uri, secret));
            prop_assert!(!seen.status.is_server_error(), "{label}: {method} {uri}: {}", seen.status);
            prop_assert!(!seen.body.contains(leaked), "{label}: {method} {uri}: leaks {other}");
            // What every reader of the query sees: decoded names, each at most once.
            let decoded: Vec<String> = form_urlencoded::parse(uri.split_once('?').unwrap().1.as_bytes())
                .map(|(n, _)| n.into_owned())
                .collect();
            let repeated = decoded.iter().enumerate().any(|(i, n)| decoded[..i].contains(n));
            if repeated {
                prop_assert_eq!(seen.status, StatusCode::BAD_REQUEST, "{}: {} {}", label, method, uri);
            }
        }
    }
}
