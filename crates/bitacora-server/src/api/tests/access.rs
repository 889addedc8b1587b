//! Access control (CONTRACT §6, issue 5): the scope × tenant-pin × endpoint matrix, tenant
//! isolation on every read path, viewer tokens, application JWTs, self-audit, secrets kept out
//! of logs and of the store, and hostile filter values.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;
use crate::config::JwtConfig;

const HS_SECRET: &str = "an application secret of at least thirty-two bytes";
const RSA_PRIVATE: &str = include_str!("../../../testdata/jwt-rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../../../testdata/jwt-rsa-public.pem");
const ED_PRIVATE: &str = include_str!("../../../testdata/jwt-ed25519-private.pem");

fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn jwt_entry(hs: Option<&str>, key_file: Option<&str>) -> JwtConfig {
    JwtConfig {
        issuer: Some("https://app.example.com".into()),
        audience: Some("bitacora".into()),
        hs256_secret: hs.map(str::to_owned),
        public_key_file: key_file.map(testdata),
        tenant_claim: "tenant".into(),
        leeway_secs: 30,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims that pass every check of [`jwt_entry`]; tests change one thing at a time.
fn good_claims() -> Value {
    json!({
        "sub": "user-42",
        "iss": "https://app.example.com",
        "aud": "bitacora",
        "exp": now() + 600,
        "tenant": "acme",
        "scope": "openid read",
    })
}

fn hs_token(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn rs_token(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn ed_token(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::EdDSA),
        claims,
        &EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token whose header says `alg: none`, with an empty signature.
fn none_token(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

impl TestApp {
    async fn delete(&self, uri: &str, key: &str) -> Reply {
        self.request(Method::DELETE, uri, Some(key), None, Body::empty())
            .await
    }

    /// Issues a viewer token with the admin key; returns the whole reply body.
    async fn viewer_token(&self, tenant: &str, ttl: u64) -> Value {
        let r = self
            .post_json(
                "/v1/viewer-tokens",
                &self.admin,
                &json!({"tenant": tenant, "ttl_seconds": ttl}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    }

    /// Seeds one event per tenant named, the first ones with a shared target, and signs
    /// each tenant's checkpoint.
    async fn seed(&self, tenants: &[(&str, usize)]) {
        for (tenant, n) in tenants {
            let events: Vec<Value> = (0..*n)
                .map(|i| {
                    json!({
                        "id": format!("{tenant}-{i}"),
                        "tenant": tenant,
                        "action": format!("{tenant}.did"),
                        "actor": {"id": format!("{tenant}-actor"), "name": format!("{tenant} person")},
                        "target": {"type": "user", "id": "shared"},
                        "context": {"ip": if *tenant == "acme" { "10.1.1.1" } else { "10.2.2.2" }},
                        "description": format!("secret of {tenant}"),
                    })
                })
                .collect();
            let r = self
                .post_json("/v1/events/batch", &self.admin, &json!(events))
                .await;
            assert_eq!(r.status, 200);
            let t = TenantName::parse(tenant).unwrap();
            bitacora_log::checkpoint_tenant(&*self.store, self.keys.signer(), &t, 1)
                .await
                .unwrap();
        }
    }
}

/// The status a request ends with; for a batch, the status its one item would have had on
/// its own (a batch answers 200 and reports each item).
fn outcome(r: &Reply, batch: bool) -> u16 {
    if batch && r.status == 200 {
        let item = &r.json()["results"][0];
        if let Some(code) = item["error"]["code"].as_str() {
            return crate::error::field_status(code).as_u16();
        }
        return 201;
    }
    r.status.as_u16()
}

/// A matrix row: label, secret (none: anonymous), scope, pinned tenant.
type Credential<'a> = (String, Option<String>, Option<Scope>, Option<&'a str>);

#[tokio::test]
async fn access_matrix() {
    let app = app_with(|c| c.auth.jwt.push(jwt_entry(Some(HS_SECRET), None))).await;
    app.seed(&[("acme", 2), ("zeta", 2)]).await;
    let token_id = app.viewer_token("acme", 600).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // (method, uri, body, scope needed, status when allowed)
    let endpoints: Vec<(Method, String, Option<Value>, Scope, u16)> = vec![
        (
            Method::POST,
            "/v1/events".into(),
            Some(json!({"action": "m.x", "tenant": "acme"})),
            Scope::Ingest,
            201,
        ),
        (
            Method::POST,
            "/v1/events/batch".into(),
            Some(json!([{"action": "m.x", "tenant": "acme"}])),
            Scope::Ingest,
            201,
        ),
        (
            Method::GET,
            "/v1/events?tenant=acme".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/events/acme-0?tenant=acme".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/actions?tenant=acme".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/actors?tenant=acme".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/stats?tenant=acme".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/targets/user/shared/history?tenant=acme".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/export?tenant=acme".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/export?tenant=acme&format=csv".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/export?tenant=acme&format=bundle".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/log/checkpoint?tenant=acme".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/retention?tenant=acme".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/legal-holds?tenant=acme".into(),
            None,
            Scope::Admin,
            200,
        ),
        (
            Method::GET,
            "/v1/log/proof/inclusion?tenant=acme&seq=0&tree_size=2".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/log/proof/consistency?tenant=acme&first=1&second=2".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::GET,
            "/v1/events/acme-0/inclusion?tenant=acme".into(),
            None,
            Scope::Read,
            200,
        ),
        (
            Method::POST,
            "/v1/viewer-tokens".into(),
            Some(json!({"tenant": "acme", "ttl_seconds": 60})),
            Scope::Admin,
            201,
        ),
        (
            Method::GET,
            "/v1/viewer-tokens?tenant=acme".into(),
            None,
            Scope::Admin,
            200,
        ),
        (
            Method::DELETE,
            format!("/v1/viewer-tokens/{token_id}"),
            None,
            Scope::Admin,
            204,
        ),
    ];

    // Credentials: every scope × unpinned / pinned to acme / pinned to zeta, then a viewer
    // token and a JWT (both read-only, acme), then none at all.
    let mut credentials: Vec<Credential<'_>> = Vec::new();
    for scope in [Scope::Ingest, Scope::Read, Scope::Admin] {
        for pin in [None, Some("acme"), Some("zeta")] {
            let key = app.key(scope, pin).await;
            credentials.push((
                format!("{} key pinned {pin:?}", scope.as_str()),
                Some(key),
                Some(scope),
                pin,
            ));
        }
    }
    let viewer = app.viewer_token("acme", 600).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    credentials.push((
        "viewer token (acme)".into(),
        Some(viewer),
        Some(Scope::Read),
        Some("acme"),
    ));
    credentials.push((
        "JWT (acme)".into(),
        Some(hs_token(&good_claims())),
        Some(Scope::Read),
        Some("acme"),
    ));
    credentials.push(("no credential".into(), None, None, None));

    let mut failures = Vec::new();
    let mut checked = 0;
    for (label, secret, scope, pin) in &credentials {
        for (method, uri, body, need, ok) in &endpoints {
            let expected = match scope {
                None => 401,
                Some(have) if !crate::auth::allows(*have, *need) => 403,
                // The pinned credential names another tenant: forbidden; a revocation
                // scoped to its own tenant simply finds no such token.
                Some(_) if pin.is_some_and(|p| p != "acme") => {
                    if *method == Method::DELETE {
                        404
                    } else {
                        403
                    }
                }
                Some(_) => *ok,
            };
            let r = app
                .request(
                    method.clone(),
                    uri,
                    secret.as_deref(),
                    body.as_ref().map(|_| "application/json"),
                    body.as_ref().map(Value::to_string).unwrap_or_default(),
                )
                .await;
            let got = outcome(&r, uri.ends_with("/batch"));
            checked += 1;
            if got != expected {
                failures.push(format!(
                    "{label}: {method} {uri} → {got}, expected {expected}: {}",
                    String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
                ));
            }
        }
    }
    assert_eq!(checked, credentials.len() * endpoints.len());
    assert!(
        failures.is_empty(),
        "{} of {checked} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_pinned_credential_sees_only_its_tenant_on_every_read_path() {
    let app = app().await;
    app.seed(&[("acme", 1), ("zeta", 40)]).await;
    let acme_key = app.key(Scope::Read, Some("acme")).await;
    let viewer = app.viewer_token("acme", 600).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for reader in [&acme_key, &viewer] {
        let page = app.get("/v1/events", reader).await.json();
        let events = page["events"].as_array().unwrap();
        assert!(events.iter().all(|e| e["tenant"] == "acme"), "{page}");
        assert!(events.iter().any(|e| e["id"] == "acme-0"), "{page}");
        // Full-text search cannot reach the other tenant either.
        let r = app.get("/v1/events?q=zeta", reader).await;
        assert_eq!(r.json()["events"], json!([]));
        // By id: the other tenant's event is not found in this one, and asking for that
        // tenant is forbidden.
        assert_eq!(app.get("/v1/events/zeta-0", reader).await.error().0, 404);
        for path in [
            "/v1/events/zeta-0?tenant=zeta",
            "/v1/events?tenant=zeta",
            "/v1/export?tenant=zeta",
            "/v1/export?tenant=zeta&format=bundle",
            "/v1/stats?tenant=zeta",
            "/v1/actions?tenant=zeta",
            "/v1/actors?tenant=zeta",
            "/v1/targets/user/shared/history?tenant=zeta",
            "/v1/log/checkpoint?tenant=zeta",
            "/v1/log/proof/inclusion?tenant=zeta&seq=0",
            "/v1/log/proof/consistency?tenant=zeta&first=1&second=40",
            "/v1/events/zeta-0/inclusion?tenant=zeta",
        ] {
            let r = app.get(path, reader).await;
            assert_eq!(
                r.error(),
                (403, "tenant_forbidden".into(), Some("tenant".into())),
                "{path}"
            );
        }
        let export = app.get("/v1/export", reader).await.text();
        assert!(!export.contains("zeta"), "{export}");
        // acme's one event, besides the server's own records of tokens and exports.
        let own: Vec<&str> = export
            .lines()
            .filter(|l| !l.contains(r#""category":"bitacora""#))
            .collect();
        assert_eq!(own.len(), 1, "{export}");
        let stats = app.get("/v1/stats?since=2000-01-01", reader).await.json();
        assert!(!stats.to_string().contains("zeta"), "{stats}");
        assert!(!stats.to_string().contains("10.2.2.2"), "{stats}");
        let actions = app.get("/v1/actions", reader).await.json();
        assert!(!actions.to_string().contains("zeta"), "{actions}");
        let actors = app.get("/v1/actors", reader).await.json();
        assert!(!actors.to_string().contains("zeta"), "{actors}");
        let history = app
            .get("/v1/targets/user/shared/history", reader)
            .await
            .json();
        let events = history["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{history}");
        assert_eq!(events[0]["tenant"], "acme");
        let checkpoint = app.get("/v1/log/checkpoint", reader).await.text();
        assert!(checkpoint.starts_with("bitacora/acme\n1\n"), "{checkpoint}");
        // Proofs are of acme's small tree (its event and the server's own records): zeta's
        // size 40 is out of reach.
        let r = app
            .get("/v1/log/proof/inclusion?seq=35&tree_size=40", reader)
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        let r = app
            .get("/v1/log/proof/consistency?first=1&second=40", reader)
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
    }
}

#[tokio::test]
async fn viewer_tokens_are_read_only_expire_and_revoke_within_a_second_everywhere() {
    let app = app_with(|c| {
        c.server.public_url = Some("https://audit.example.com/".into());
        c.auth.viewer_token_max_ttl_secs = 7200;
    })
    .await;
    app.seed(&[("acme", 1)]).await;
    let issued = app.viewer_token("acme", 600).await;
    let token = issued["token"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("bv_"));
    assert_eq!(issued["tenant"], "acme");
    assert_eq!(
        issued["url"],
        format!("https://audit.example.com/ui/login?token={token}")
    );
    let expires =
        chrono::DateTime::parse_from_rfc3339(issued["expires_at"].as_str().unwrap()).unwrap();
    let left = expires.timestamp() - now();
    assert!((590..=601).contains(&left), "{left}");

    // Reads its tenant; writes nothing, administers nothing.
    assert_eq!(app.get("/v1/events", &token).await.status, 200);
    let r = app
        .post_json("/v1/events", &token, &json!({"action": "x"}))
        .await;
    assert_eq!(r.error().0, 403);
    let r = app.post_json("/v1/viewer-tokens", &token, &json!({})).await;
    assert_eq!(r.error().0, 403);

    // Listed without its secret.
    let list = app.get("/v1/viewer-tokens", &app.admin).await;
    assert_eq!(list.status, 200);
    assert!(!list.text().contains(&token));
    assert_eq!(list.json()["tokens"][0]["id"], id.as_str());

    // A second server over the same store: revocation on the first reaches it within 1 s.
    let other = super::super::router(AppState::new(
        app.store.clone(),
        Config::default(),
        app.keys.clone(),
    ));
    let on_other = |key: String| {
        let other = other.clone();
        async move {
            let request = Request::builder()
                .uri("/v1/events?tenant=acme")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap();
            other.oneshot(request).await.unwrap().status()
        }
    };
    assert_eq!(on_other(token.clone()).await, 200);
    let r = app
        .delete(&format!("/v1/viewer-tokens/{id}"), &app.admin)
        .await;
    assert_eq!(r.status, 204);
    // At once on the server that revoked it...
    assert_eq!(app.get("/v1/events", &token).await.error().0, 401);
    // ...and within a second on the other.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(on_other(token.clone()).await, 401);
    // Revoking twice is fine; an unknown id is 404.
    assert_eq!(
        app.delete(&format!("/v1/viewer-tokens/{id}"), &app.admin)
            .await
            .status,
        204
    );
    assert_eq!(
        app.delete("/v1/viewer-tokens/vt_nope", &app.admin)
            .await
            .error()
            .0,
        404
    );

    // Expiry.
    let short = app.viewer_token("acme", 1).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.get("/v1/events", &short).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get("/v1/events", &short).await.error().0, 401);

    // Bad requests name the field.
    for (body, field) in [
        (json!({"ttl_seconds": 0}), "ttl_seconds"),
        (json!({"ttl_seconds": 7201}), "ttl_seconds"),
        (json!({"ttl_seconds": -5}), "ttl_seconds"),
        (json!({"ttl_seconds": "1h"}), "ttl_seconds"),
        (json!({"tenant": 3}), "tenant"),
        (json!({"tenant": "../x"}), "tenant"),
        (json!({"tenannt": "acme"}), "tenannt"),
    ] {
        let r = app.post_json("/v1/viewer-tokens", &app.admin, &body).await;
        let (status, _, got) = r.error();
        assert!((400..500).contains(&status), "{body}: {status}");
        assert_eq!(got.as_deref(), Some(field), "{body}");
    }
    let r = app
        .request(
            Method::POST,
            "/v1/viewer-tokens",
            Some(&app.admin),
            Some("text/plain"),
            "{}",
        )
        .await;
    assert_eq!(r.error().0, 415);
    // An empty body takes the defaults; the URL comes from the Host without public_url.
    let plain = app_with(|_| {}).await;
    let r = plain
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/viewer-tokens")
                .header(header::AUTHORIZATION, format!("Bearer {}", plain.admin))
                .header(header::HOST, "audit.internal:8480")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["tenant"], "default");
    assert!(
        v["url"]
            .as_str()
            .unwrap()
            .starts_with("http://audit.internal:8480/ui/login?token=bv_")
    );
}

#[tokio::test]
async fn application_jwts() {
    let app = app_with(|c| {
        c.auth.jwt.push(jwt_entry(Some(HS_SECRET), None));
        c.auth.jwt.push(jwt_entry(None, Some("jwt-rsa-public.pem")));
        c.auth
            .jwt
            .push(jwt_entry(None, Some("jwt-ed25519-public.pem")));
        // Dozens of refusals from one (in-process) address follow: the limiter is tested
        // on its own.
        c.server.auth_failures_per_minute = 0;
    })
    .await;
    app.seed(&[("acme", 1), ("zeta", 1)]).await;

    // Accepted: each algorithm, scope or permissions, within the leeway.
    assert_eq!(
        app.get("/v1/events", &hs_token(&good_claims()))
            .await
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        app.get("/v1/events", &rs_token(&good_claims()))
            .await
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        app.get("/v1/events", &ed_token(&good_claims()))
            .await
            .status
            .as_u16(),
        200
    );
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove("scope");
    c["permissions"] = json!(["view_logs"]);
    assert_eq!(
        app.get("/v1/events", &hs_token(&c)).await.status.as_u16(),
        200
    );
    let mut c = good_claims();
    c["exp"] = json!(now() - 10);
    assert_eq!(
        app.get("/v1/events", &hs_token(&c)).await.status.as_u16(),
        200,
        "10 s past exp is within the 30 s leeway"
    );
    // Pinned to its tenant.
    let r = app.get("/v1/events", &hs_token(&good_claims())).await;
    assert!(
        r.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant"] == "acme")
    );
    assert_eq!(
        app.get("/v1/events?tenant=zeta", &hs_token(&good_claims()))
            .await
            .error()
            .0,
        403
    );
    // Read-only, whatever the claims say.
    let mut c = good_claims();
    c["scope"] = json!("read ingest admin");
    let admin_claims = hs_token(&c);
    assert_eq!(
        app.post_json("/v1/events", &admin_claims, &json!({"action": "x"}))
            .await
            .error()
            .0,
        403
    );
    assert_eq!(
        app.post_json("/v1/viewer-tokens", &admin_claims, &json!({}))
            .await
            .error()
            .0,
        403
    );

    // Refused: 401 for what is not valid, 403 for what grants nothing.
    let mut cases: Vec<(&str, String, u16)> = Vec::new();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good_claims();
        f(&mut c);
        c
    };
    cases.push((
        "expired",
        hs_token(&with(&|c| c["exp"] = json!(now() - 120))),
        401,
    ));
    cases.push((
        "no exp",
        hs_token(&with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        })),
        401,
    ));
    cases.push((
        "not yet valid",
        hs_token(&with(&|c| c["nbf"] = json!(now() + 120))),
        401,
    ));
    cases.push((
        "wrong audience",
        hs_token(&with(&|c| c["aud"] = json!("other"))),
        401,
    ));
    cases.push((
        "wrong issuer",
        hs_token(&with(&|c| c["iss"] = json!("https://evil.example"))),
        401,
    ));
    // A configured issuer and audience are required, not only compared when present.
    cases.push((
        "no iss",
        hs_token(&with(&|c| {
            c.as_object_mut().unwrap().remove("iss");
        })),
        401,
    ));
    cases.push((
        "iss null",
        hs_token(&with(&|c| c["iss"] = Value::Null)),
        401,
    ));
    cases.push((
        "iss a number",
        hs_token(&with(&|c| c["iss"] = json!(7))),
        401,
    ));
    cases.push((
        "no aud",
        hs_token(&with(&|c| {
            c.as_object_mut().unwrap().remove("aud");
        })),
        401,
    ));
    cases.push((
        "aud null",
        hs_token(&with(&|c| c["aud"] = Value::Null)),
        401,
    ));
    cases.push((
        "aud list without ours",
        hs_token(&with(&|c| c["aud"] = json!(["other", "more"]))),
        401,
    ));
    cases.push((
        "wrong signature",
        {
            encode(
                &Header::new(Algorithm::HS256),
                &good_claims(),
                &EncodingKey::from_secret(b"another secret of thirty-two bytes or more"),
            )
            .unwrap()
        },
        401,
    ));
    cases.push((
        "tampered claims",
        {
            let t = hs_token(&good_claims());
            let parts: Vec<&str> = t.split('.').collect();
            let mut c = good_claims();
            c["tenant"] = json!("zeta");
            format!(
                "{}.{}.{}",
                parts[0],
                b64(c.to_string().as_bytes()),
                parts[2]
            )
        },
        401,
    ));
    cases.push(("alg none", none_token(&good_claims()), 401));
    cases.push((
        "alg none, signature kept",
        format!(
            "{}{}",
            none_token(&good_claims()),
            hs_token(&good_claims()).rsplit('.').next().unwrap()
        ),
        401,
    ));
    // Algorithm confusion: HS256 keyed with the RSA public key's PEM, which an implementation
    // taking the algorithm from the header would verify with the public key as HMAC secret.
    cases.push((
        "HS256 with the RSA public key as secret",
        encode(
            &Header::new(Algorithm::HS256),
            &good_claims(),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        )
        .unwrap(),
        401,
    ));
    cases.push(("not a JWT", "a.b.c".into(), 401));
    cases.push((
        "no read permission",
        hs_token(&with(&|c| c["scope"] = json!("openid profile"))),
        403,
    ));
    cases.push((
        "no tenant claim",
        hs_token(&with(&|c| {
            c.as_object_mut().unwrap().remove("tenant");
        })),
        403,
    ));
    cases.push((
        "bad tenant claim",
        hs_token(&with(&|c| c["tenant"] = json!("../etc"))),
        403,
    ));
    for (label, token, expected) in cases {
        let r = app.get("/v1/events", &token).await;
        assert_eq!(r.status.as_u16(), expected, "{label}: {}", r.text());
        assert!(!r.text().contains(&token), "{label}: the token is echoed");
    }
    // With several issuers configured, the refusal is the one of the issuer whose key
    // verified the token, not whichever issuer came last.
    for (label, claims, says) in [
        (
            "expired",
            with(&|c| c["exp"] = json!(now() - 120)),
            "expired",
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("other")),
            "audience",
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
            "issuer",
        ),
        (
            "no iss",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            "iss",
        ),
    ] {
        for token in [hs_token(&claims), rs_token(&claims), ed_token(&claims)] {
            let message = app.get("/v1/events", &token).await.json()["error"]["message"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(message.contains(says), "{label}: {message}");
        }
    }
    let r = app
        .get(
            "/v1/events",
            &hs_token(&with(&|c| {
                c.as_object_mut().unwrap().remove("tenant");
            })),
        )
        .await;
    assert!(
        r.error().0 == 403 && r.text().contains("tenant"),
        "{}",
        r.text()
    );

    // Without [[auth.jwt]] a JWT is just an unknown credential.
    let plain = app_with(|_| {}).await;
    assert_eq!(
        plain
            .get("/v1/events", &hs_token(&good_claims()))
            .await
            .error()
            .0,
        401
    );
}

#[test]
fn bad_jwt_configuration_is_refused_at_startup() {
    use crate::auth::jwt::JwtVerifier;
    let short = jwt_entry(Some("short"), None);
    assert!(
        JwtVerifier::load(&short)
            .err()
            .unwrap()
            .to_string()
            .contains("32 bytes")
    );
    let both = jwt_entry(Some(HS_SECRET), Some("jwt-rsa-public.pem"));
    assert!(JwtVerifier::load(&both).is_err());
    let neither = jwt_entry(None, None);
    assert!(JwtVerifier::load(&neither).is_err());
    let missing = jwt_entry(None, Some("no-such.pem"));
    assert!(
        JwtVerifier::load(&missing)
            .err()
            .unwrap()
            .to_string()
            .contains("no-such.pem")
    );
    let not_a_key = jwt_entry(None, Some("README.md"));
    assert!(JwtVerifier::load(&not_a_key).is_err());
}

#[tokio::test]
async fn the_server_audits_itself_and_clients_cannot_forge_it() {
    let app = app().await;
    app.seed(&[("acme", 1)]).await;
    let admin_id = app.store.api_keys().await.unwrap()[0].id.clone();
    let from = |mut request: Request<Body>| {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 5000))));
        request
    };
    let r = app
        .send(from(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/viewer-tokens")
                .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"tenant":"acme","ttl_seconds":60}"#))
                .unwrap(),
        ))
        .await;
    assert_eq!(r.status, 201);
    let token_id = r.json()["id"].as_str().unwrap().to_owned();
    let r = app
        .delete(&format!("/v1/viewer-tokens/{token_id}"), &app.admin)
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .get(
            "/v1/export?tenant=acme&format=csv&action=acme.*",
            &app.admin,
        )
        .await;
    assert_eq!(r.status, 200);
    // The viewer's hook for a refused login.
    let state = AppState::new(app.store.clone(), Config::default(), app.keys.clone());
    crate::audit::failed_viewer_login(
        &state,
        None,
        Some("198.51.100.9".parse().unwrap()),
        "unknown_credential",
    )
    .await;

    let page = app
        .get(
            "/v1/events?tenant=acme&action=bitacora.*&order=asc",
            &app.admin,
        )
        .await
        .json();
    let events = page["events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "bitacora.viewer_token.issued",
            "bitacora.viewer_token.revoked",
            "bitacora.export"
        ]
    );
    for e in events {
        assert_eq!(e["category"], "bitacora");
        assert_eq!(e["actor"]["id"], admin_id.as_str());
        assert_eq!(e["actor"]["type"], "service");
    }
    assert_eq!(events[0]["context"]["ip"], "192.0.2.7");
    assert_eq!(
        events[0]["target"],
        json!({"type": "viewer_token", "id": token_id})
    );
    assert_eq!(events[0]["severity"], "medium");
    assert_eq!(events[1]["severity"], "low");
    assert_eq!(events[2]["metadata"]["format"], "csv");
    assert_eq!(events[2]["metadata"]["filters"]["action"], "acme.*");
    // No secret in any of them.
    assert!(!page.to_string().contains("bv_"), "{page}");
    // The failed login went to `default`.
    let page = app
        .get("/v1/events?action=bitacora.viewer_login.failed", &app.admin)
        .await
        .json();
    let failed = &page["events"][0];
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["context"]["ip"], "198.51.100.9");
    assert_eq!(failed["metadata"]["reason"], "unknown_credential");

    // Clients cannot send `bitacora.` actions, alone or in a batch.
    let r = app
        .post_json(
            "/v1/events",
            &app.admin,
            &json!({"action": "bitacora.key.created"}),
        )
        .await;
    assert_eq!(
        r.error(),
        (422, "reserved_action".into(), Some("action".into()))
    );
    let r = app
        .post_json(
            "/v1/events/batch",
            &app.admin,
            &json!([{"action": "ok.one"}, {"action": "bitacora.export"}]),
        )
        .await;
    assert_eq!(r.status, 200);
    let results = r.json()["results"].clone();
    assert!(results[0]["seq"].is_u64(), "{results}");
    assert_eq!(results[1]["index"], 1);
    assert_eq!(results[1]["error"]["code"], "reserved_action");
    assert_eq!(results[1]["error"]["field"], "action");
    let ndjson = "{\"action\":\"bitacora.export\"}\n";
    let r = app
        .request(
            Method::POST,
            "/v1/events/batch",
            Some(&app.admin),
            Some("application/x-ndjson"),
            ndjson,
        )
        .await;
    assert_eq!(r.json()["results"][0]["error"]["field"], "action");
}

/// A `MakeWriter` that keeps everything written, to search the logs for secrets.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn secrets_stay_out_of_logs_and_the_store() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = app_with(|c| c.auth.jwt.push(jwt_entry(Some(HS_SECRET), None))).await;
    app.seed(&[("acme", 1)]).await;
    let read = app.key(Scope::Read, None).await;
    let issued = app.viewer_token("acme", 60).await;
    let token = issued["token"].as_str().unwrap().to_owned();
    let jwt = hs_token(&good_claims());
    for secret in [&app.admin, &read, &token, &jwt] {
        assert_eq!(app.get("/v1/events?tenant=acme", secret).await.status, 200);
    }
    // Failed attempts with near-miss secrets.
    let wrong_key = format!("{}x", read);
    let wrong_token = format!("{}x", token);
    for secret in [&wrong_key, &wrong_token] {
        assert_eq!(app.get("/v1/events", secret).await.status, 401);
    }
    app.store.close().await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("viewer token issued"),
        "the capture works: {logs}"
    );
    let mut files = Vec::new();
    for entry in std::fs::read_dir(app._dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    assert!(
        files
            .iter()
            .any(|(name, _)| name.ends_with(bitacora_store_sqlite::DB_FILE)),
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for secret in [
        &app.admin,
        &read,
        &token,
        &jwt,
        &wrong_key,
        &wrong_token,
        &HS_SECRET.to_owned(),
    ] {
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
        // The random part alone, in case a prefix were stripped.
        let core = &secret[secret.len() - 20..];
        assert!(!logs.contains(core), "a secret is in the logs");
        for (name, bytes) in &files {
            assert!(
                !bytes.windows(core.len()).any(|w| w == core.as_bytes()),
                "a secret is stored in plain text in {name}"
            );
        }
    }
}

/// How many `bitacora.*` events acme's log holds.
async fn audited(app: &TestApp) -> u64 {
    let r = app
        .get(
            "/v1/events?tenant=acme&action=bitacora.*&page=1&per_page=1",
            &app.admin,
        )
        .await;
    r.json()["total"].as_u64().unwrap()
}

#[tokio::test]
async fn hostile_filter_values_never_get_a_5xx_nor_change_the_store() {
    let app = app().await;
    app.seed(&[("acme", 3)]).await;
    let tenant = TenantName::parse("acme").unwrap();
    let before = app.get("/v1/export?tenant=acme", &app.admin).await.text();
    let size = app.store.log_size(&tenant).await.unwrap();
    let audited_before = audited(&app).await;
    let long = "a".repeat(5000);
    let hostile: Vec<String> = vec![
        "' OR 1=1 --".into(),
        "'; DROP TABLE events; --".into(),
        "\" OR \"\"=\"".into(),
        "\"".into(),
        "*".into(),
        "a*".into(),
        "NEAR(".into(),
        "NEAR(a b, 2)".into(),
        "a AND".into(),
        "OR".into(),
        "(".into(),
        ")".into(),
        "^a".into(),
        "col:a".into(),
        "{a b}".into(),
        "%".into(),
        "_".into(),
        "\\".into(),
        "\0".into(),
        "a\0b".into(),
        "🔥💥".into(),
        "\u{202e}evil".into(),
        long,
    ];
    let params = [
        "q",
        "action",
        "category",
        "severity",
        "min_severity",
        "outcome",
        "actor_id",
        "actor",
        "target_type",
        "target_id",
        "ip",
        "source",
        "since",
        "until",
        "cursor",
        "order",
        "limit",
        "page",
        "tenant",
    ];
    let mut checked = 0;
    for value in &hostile {
        let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        for name in params {
            for path in ["/v1/events", "/v1/export"] {
                let r = app
                    .get(&format!("{path}?tenant=acme&{name}={encoded}"), &app.admin)
                    .await;
                // `tenant` given twice is a 400 too, never a 5xx.
                assert!(
                    r.status.as_u16() < 500,
                    "{path} {name}={value:.40}: {}",
                    r.status
                );
                checked += 1;
            }
        }
        for path in [
            format!("/v1/events/{encoded}"),
            format!("/v1/targets/{encoded}/{encoded}/history"),
            format!("/v1/stats?since={encoded}"),
            format!("/v1/actors?limit={encoded}"),
            format!("/v1/log/proof/inclusion?seq={encoded}"),
        ] {
            let r = app.get(&path, &app.admin).await;
            assert!(r.status.as_u16() < 500, "{path:.60}: {}", r.status);
            checked += 1;
        }
    }
    assert!(checked > 800);
    // Nothing was written but the exports' own records; acme's events are as they were.
    let added = audited(&app).await - audited_before;
    assert!(added > 0);
    assert_eq!(app.store.log_size(&tenant).await.unwrap(), size + added);
    let after = app.get("/v1/export?tenant=acme", &app.admin).await.text();
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.contains("\"bitacora."))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(strip(&before), strip(&after));
}
