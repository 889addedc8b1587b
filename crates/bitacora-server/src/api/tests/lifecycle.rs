//! The data lifecycle over HTTP (CONTRACT §9): legal holds (admin, validated, audited),
//! `GET /v1/retention`, and a purged event answering 410 with its seq and leaf hash while
//! its inclusion proof still verifies.

use bitacora_core::merkle;
use bitacora_lifecycle::{Archive, Retention};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;

const RULES: &str = r#"
    default = "1d"
    min_delay = "0s"
    [[rule]]
    category = "auth"
    keep = "forever"
    [[rule]]
    category = "bitacora"
    keep = "forever"
"#;

fn two_days_later() -> i64 {
    chrono::Utc::now().timestamp_micros() + 2 * 86_400_000_000
}

impl TestApp {
    fn retention(&self) -> Retention {
        Retention {
            store: self.store.clone(),
            config: toml::from_str(RULES).unwrap(),
            archive: Archive::open(&format!("file://{}/archive", self._dir.path().display()))
                .unwrap(),
            bundle: bitacora_log::BundleOptions::new(
                std::sync::Arc::new(self.keys.signer().clone()),
                self.keys.verifiers(),
            ),
            policy: std::sync::Arc::new(Default::default()),
        }
    }

    async fn sign(&self) {
        let signer = self.keys.signer().clone();
        bitacora_log::checkpoint_tenant(&*self.store, &signer, &TenantName::default_tenant(), 1)
            .await
            .unwrap();
    }
}

async fn delete(app: &TestApp, uri: &str, key: &str) -> Reply {
    app.request(Method::DELETE, uri, Some(key), None, Body::empty())
        .await
}

#[tokio::test]
async fn holds_retention_and_purged_events() {
    let app = app_with(|c| c.retention = toml::from_str(RULES).unwrap()).await;
    let reader = app.key(Scope::Read, None).await;
    let acme_admin = app.key(Scope::Admin, Some("acme")).await;
    let events = json!([
        {"id": "gone", "action": "user.update", "actor": {"id": "1"}},
        {"id": "held", "action": "user.update", "actor": {"id": "2"}},
        {"id": "auth", "action": "auth.login", "actor": {"id": "1"}},
    ]);
    let r = app.post_json("/v1/events/batch", &app.admin, &events).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let acks = r.json();
    let gone_leaf = acks["results"][0]["leaf_hash"].as_str().unwrap().to_owned();

    // Placing a hold: admin only, validated, unique names in force.
    let hold =
        json!({"name": "case-7", "reason": "litigation 2026/7", "filter": {"actor_id": "2"}});
    let r = app.post_json("/v1/legal-holds", &reader, &hold).await;
    assert_eq!(r.status, 403);
    for (body, field) in [
        (
            json!({"name": "x", "reason": "y", "filter": {"nope": "1"}}),
            "filter.nope",
        ),
        (
            json!({"name": "x", "reason": "y", "filter": {"since": "yesterday"}}),
            "filter.since",
        ),
        (
            json!({"name": "x", "reason": "y", "filter": {"tenant": "acme"}}),
            "filter.tenant",
        ),
        (
            json!({"name": "x", "reason": "y", "filter": {"actor_id": true}}),
            "filter.actor_id",
        ),
        (json!({"name": "", "reason": "y", "filter": {}}), "name"),
        (json!({"reason": "y", "filter": {}}), "name"),
        (json!({"name": "x", "reason": "y"}), "filter"),
        (
            json!({"name": "x", "reason": "y", "filter": [], }),
            "filter",
        ),
        (
            json!({"name": "x", "reason": "y", "filter": {}, "keep": true}),
            "keep",
        ),
    ] {
        let r = app.post_json("/v1/legal-holds", &app.admin, &body).await;
        let (status, _, f) = r.error();
        assert!(status == 422 || status == 400, "{body}: {}", r.text());
        assert_eq!(f.as_deref(), Some(field), "{body}: {}", r.text());
    }
    let r = app
        .post_json(
            "/v1/legal-holds",
            &acme_admin,
            &json!({"tenant": "default", "name": "x", "reason": "y", "filter": {}}),
        )
        .await;
    assert_eq!(r.status, 403, "a pinned admin cannot hold another tenant");
    let r = app.post_json("/v1/legal-holds", &app.admin, &hold).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let placed = r.json();
    let hold_id = placed["id"].as_str().unwrap().to_owned();
    assert!(hold_id.starts_with("lh_"));
    assert_eq!(placed["filter"], json!({"actor_id": "2"}));
    let r = app.post_json("/v1/legal-holds", &app.admin, &hold).await;
    assert_eq!(r.error().0, 409);
    let r = app.get("/v1/legal-holds", &app.admin).await;
    assert_eq!(r.json()["holds"].as_array().unwrap().len(), 1);
    let r = app.get("/v1/legal-holds", &acme_admin).await;
    assert_eq!(
        r.json()["holds"],
        json!([]),
        "pinned to acme: sees acme's holds only"
    );
    assert_eq!(app.get("/v1/legal-holds", &reader).await.status, 403);

    // Two days later the default rule (1d) has expired `gone` and `held`; the hold keeps
    // `held`, the auth rule keeps `auth`.
    app.sign().await;
    let report = app
        .retention()
        .pass(two_days_later(), false, None, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.purged(), 1, "{report:?}");
    assert_eq!(report.held, 1);

    let r = app.get("/v1/events/gone", &reader).await;
    assert_eq!(r.status, 410, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"]["code"], "purged");
    assert_eq!(body["error"]["seq"], 0);
    assert_eq!(body["error"]["leaf_hash"], gone_leaf.as_str());
    assert_eq!(app.get("/v1/events/held", &reader).await.status, 200);
    assert_eq!(app.get("/v1/events/auth", &reader).await.status, 200);
    assert_eq!(app.get("/v1/events/never", &reader).await.status, 404);
    let r = app.get("/v1/events?action=user.update", &reader).await;
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 1);

    // The purged event's place in the tree still proves: its inclusion proof, with the leaf
    // hash from the 410, verifies against the signed root.
    app.sign().await;
    let cp = app
        .store
        .latest_checkpoint(&TenantName::default_tenant())
        .await
        .unwrap()
        .unwrap();
    let r = app
        .get(
            &format!("/v1/log/proof/inclusion?seq=0&tree_size={}", cp.size),
            &reader,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let hashes: Vec<[u8; 32]> = r.json()["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| bitacora_core::canonical::parse_hex_hash(h.as_str().unwrap()).unwrap())
        .collect();
    let leaf = bitacora_core::canonical::parse_hex_hash(&gone_leaf).unwrap();
    merkle::verify_inclusion(&leaf, 0, cp.size, &hashes, &cp.root).unwrap();
    // Served as a tlog-tiles log, the partial entry bundle that held it is pruned (404 with a
    // JSON body that says so), while the hash tile still holds its leaf hash.
    let r = app
        .get(
            &format!("/logs/default/tile/entries/000.p/{}", cp.size),
            &reader,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pruned")
    );
    let r = app
        .get(&format!("/logs/default/tile/0/000.p/{}", cp.size), &reader)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body[..32], leaf[..]);

    // GET /v1/retention: rules, horizon, holds, purges.
    let r = app.get("/v1/retention", &reader).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let t = v["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "default")
        .unwrap()
        .clone();
    assert_eq!(t["default"], "1d");
    assert_eq!(
        t["rules"],
        json!([{"category": "auth", "keep": "forever"}, {"category": "bitacora", "keep": "forever"}])
    );
    assert_eq!(t["horizon"]["seq"], 1);
    assert_eq!(t["horizon"]["id"], "held");
    assert_eq!(t["purged_events"], 1);
    assert_eq!(t["holds"][0]["id"], hold_id.as_str());
    assert!(
        t["last_purge_archive"]
            .as_str()
            .unwrap()
            .ends_with(".bundle.zst")
    );
    assert_eq!(v["min_delay"], "0s");
    let r = app.get("/v1/retention?bogus=1", &reader).await;
    assert_eq!(r.error().0, 400);

    // The viewer shows the horizon on the list and the holds on the integrity page.
    let config = Config {
        retention: toml::from_str(RULES).unwrap(),
        ..Config::default()
    };
    let viewer = crate::ui::router(AppState::new(app.store.clone(), config, app.keys.clone()));
    let page = |uri: &'static str| {
        Request::builder()
            .uri(uri)
            .header(header::COOKIE, format!("bitacora_session={reader}"))
            .body(Body::empty())
            .unwrap()
    };
    let show = |uri: &'static str| {
        let (viewer, request) = (viewer.clone(), page(uri));
        async move {
            let response = viewer.oneshot(request).await.unwrap();
            let body = axum::body::to_bytes(response.into_body(), 1 << 24)
                .await
                .unwrap();
            String::from_utf8(body.to_vec()).unwrap()
        }
    };
    let html = show("/ui/").await;
    assert!(html.contains("id=\"horizon\""), "{html}");
    assert!(
        html.contains("the oldest event still held is seq 1"),
        "{html}"
    );
    let html = show("/ui/integrity").await;
    assert!(
        html.contains("case-7") && html.contains("litigation 2026/7"),
        "{html}"
    );
    assert!(html.contains("1 events were purged by retention"), "{html}");

    // Releasing: admin only, once; then the event goes at the next pass.
    assert_eq!(
        delete(&app, &format!("/v1/legal-holds/{hold_id}"), &reader)
            .await
            .status,
        403
    );
    assert_eq!(
        delete(&app, &format!("/v1/legal-holds/{hold_id}"), &acme_admin)
            .await
            .status,
        404
    );
    let r = delete(&app, &format!("/v1/legal-holds/{hold_id}"), &app.admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["released_at"].is_string());
    assert_eq!(
        delete(&app, &format!("/v1/legal-holds/{hold_id}"), &app.admin)
            .await
            .status,
        404
    );
    let r = app
        .get("/v1/legal-holds?include_released=true", &app.admin)
        .await;
    assert_eq!(
        r.json()["holds"][0]["released_by"]
            .as_str()
            .map(|s| !s.is_empty()),
        Some(true)
    );
    app.sign().await;
    app.retention()
        .pass(two_days_later(), false, None, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(app.get("/v1/events/held", &reader).await.status, 410);

    // Every step was audited in the tenant's log.
    let r = app
        .get(
            "/v1/events?action=bitacora.legal_hold.*,bitacora.retention.purge&order=asc",
            &reader,
        )
        .await;
    let actions: Vec<Value> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(
        actions,
        [
            "bitacora.legal_hold.placed",
            "bitacora.retention.purge",
            "bitacora.legal_hold.released",
            "bitacora.retention.purge"
        ]
    );
}
