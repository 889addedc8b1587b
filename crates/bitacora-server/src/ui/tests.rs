//! Viewer handler tests: the whole application (API + viewer) over a real SQLite store in a
//! temporary folder, driven in-process with `oneshot`. The browser suite
//! (`tests/ui_browser.rs`) drives the same pages in a real Chromium.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use bitacora_core::{EventInput, IngestContext, IngestPolicy, SealedEvent, TenantName};
use bitacora_store::{Scope, Store};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::CSP;
use super::view::is_safe_href;
use crate::auth::generate_api_key;
use crate::config::{Config, SyncMode};
use crate::state::AppState;

struct TestApp {
    router: Router,
    store: Arc<dyn Store>,
    state: AppState,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookie(&self) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn app() -> TestApp {
    app_with(|_| {}).await
}

async fn app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    crate::telemetry::init_test_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data = dir.path().to_owned();
    config.store.synchronous = SyncMode::Off;
    configure(&mut config);
    let store = crate::open_store(&config).unwrap();
    let signer = bitacora_core::checkpoint::NoteSigner::from_seed("bitacora", [7; 32]).unwrap();
    let keys = bitacora_log::LogKeys::new(signer, Vec::new());
    let state = AppState::new(store.clone(), config, keys);
    TestApp {
        router: crate::app(state.clone()),
        store,
        state,
        _dir: dir,
    }
}

impl TestApp {
    async fn key(&self, scope: Scope, tenant: Option<&str>) -> String {
        let (secret, record) =
            generate_api_key("test", scope, tenant.map(|t| TenantName::parse(t).unwrap()));
        self.store.insert_api_key(&record).await.unwrap();
        secret
    }

    async fn append(&self, events: &[Value]) {
        let sealed: Vec<SealedEvent> = events
            .iter()
            .map(|v| {
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
        self.store.append(sealed).await.unwrap();
    }

    async fn sign(&self, tenant: &str) {
        bitacora_log::checkpoint_tenant(
            &*self.store,
            &self.state.signer,
            &TenantName::parse(tenant).unwrap(),
            bitacora_log::now_micros(),
        )
        .await
        .unwrap();
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body: named_entities(&String::from_utf8_lossy(&body)),
        }
    }

    async fn get(&self, uri: &str, session: Option<&str>) -> Reply {
        let mut b = Request::builder().uri(uri);
        if let Some(s) = session {
            b = b.header(header::COOKIE, format!("bitacora_session={s}"));
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn post_form(&self, uri: &str, form: &str, headers: &[(&str, &str)]) -> Reply {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::from(form.to_owned())).unwrap())
            .await
    }
}

/// askama writes `&#60;`-style entities; the assertions read better with named ones.
fn named_entities(html: &str) -> String {
    html.replace("&#60;", "&lt;")
        .replace("&#62;", "&gt;")
        .replace("&#38;", "&amp;")
        .replace("&#34;", "&quot;")
        .replace("&#39;", "&#x27;")
}

/// Every `href`/`src`/`action` in a page, unescaped.
fn urls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\"", "action=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].replace("&amp;", "&").replace("&#x2f;", "/"));
            rest = &rest[end..];
        }
    }
    out
}

/// What no viewer page may ever contain: inline script, inline style, event handlers. Only
/// real tags are looked at (escaped text has no `<`).
fn assert_no_inline_code(html: &str) {
    let lower = html.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find('<') {
        let Some(len) = rest[i..].find('>') else {
            break;
        };
        let tag = &rest[i..i + len];
        if tag.starts_with("<script") {
            assert!(tag.contains(" src="), "inline script: {tag}");
        }
        assert!(!tag.starts_with("<style"), "inline style element");
        for name in attribute_names(tag) {
            assert!(!name.starts_with("on"), "inline event handler: {tag}");
            assert_ne!(name, "style", "inline style attribute: {tag}");
        }
        rest = &rest[i + len..];
    }
}

/// The attribute names of one tag (`<a href="x" title='y' hidden`), quotes respected.
fn attribute_names(tag: &str) -> Vec<String> {
    let chars: Vec<char> = tag.chars().collect();
    let mut i = chars
        .iter()
        .position(|c| c.is_whitespace())
        .unwrap_or(chars.len());
    let mut names = Vec::new();
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        if i > start {
            names.push(chars[start..i].iter().collect());
        }
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let quote = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
            }
        }
    }
    names
}

fn assert_viewer_headers(r: &Reply) {
    let h = |n: &str| {
        r.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(h("content-security-policy"), CSP);
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("referrer-policy"), "no-referrer");
    assert_eq!(h("x-frame-options"), "DENY");
}

#[tokio::test]
async fn pages_require_a_session_and_send_strict_headers() {
    let app = app().await;
    let r = app.get("/ui/", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/ui/login");
    assert_viewer_headers(&r);
    let r = app.get("/ui/dashboard?since=2026-01-01", None).await;
    assert_eq!(
        r.location(),
        "/ui/login?next=%2Fui%2Fdashboard%3Fsince%3D2026-01-01"
    );

    let r = app.get("/ui/login", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_viewer_headers(&r);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert!(r.body.contains("name=\"key\""));
    assert_no_inline_code(&r.body);

    // `/` and `/ui` lead to the list.
    let r = app.get("/", None).await;
    assert_eq!(r.location(), "/ui/");
    let r = app.get("/ui", None).await;
    assert_eq!(r.location(), "/ui/");

    // Unknown viewer paths are HTML 404s with the same headers.
    let r = app.get("/ui/nope", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_viewer_headers(&r);
}

#[tokio::test]
async fn assets_are_embedded_hashed_and_cached() {
    let app = app().await;
    let css = super::assets::url("ui.css");
    let r = app.get(css, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert_eq!(
        r.headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_viewer_headers(&r);
    let r = app.get(super::assets::url("ui.js"), None).await;
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let r = app.get("/ui/assets/ui.css", None).await;
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-cache");
    let r = app.get("/ui/assets/ui.0000000000.css", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Nothing refers to another host.
    let js = app.get(super::assets::url("ui.js"), None).await.body;
    let css = app.get(super::assets::url("ui.css"), None).await.body;
    for text in [&js, &css] {
        assert!(!text.contains("http://") && !text.contains("https://"));
        assert!(!text.contains("@import"));
    }
}

#[tokio::test]
async fn login_with_a_key_sets_a_strict_cookie() {
    let app = app().await;
    let read = app.key(Scope::Read, None).await;
    let same = [("sec-fetch-site", "same-origin")];

    let r = app
        .post_form("/ui/login", "key=bk_wrong&next=%2Fui%2F", &same)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("was not accepted"));
    assert!(r.set_cookie().is_empty());
    // The refusal is audited in `default` (CONTRACT §6), without the credential.
    let audited = app
        .store
        .event_by_seq(&TenantName::default_tenant(), 0)
        .await
        .unwrap()
        .expect("a bitacora.viewer_login.failed event");
    assert!(
        audited
            .body
            .contains("\"action\":\"bitacora.viewer_login.failed\""),
        "{}",
        audited.body
    );
    assert!(audited.body.contains("unknown_credential"));
    assert!(!audited.body.contains("bk_wrong"));

    // A `next` that cannot be a Location header as is (control characters) goes to the
    // list, never to a 500 (the cookie was already set when the redirect failed).
    for bad in [
        "%2Fui%2F%01",
        "%2Fui%2F%00",
        "%2Fui%2F%0b",
        "%2Fui%2F%7F",
        "%2Fui%2F%0d%0aX:1",
    ] {
        let r = app
            .post_form("/ui/login", &format!("key={read}&next={bad}"), &same)
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{bad}: {}", r.body);
        assert_eq!(r.location(), "/ui/", "{bad}");
        let r = app.get(&format!("/ui/login?next={bad}"), None).await;
        assert_eq!(r.status, StatusCode::OK, "{bad}");
    }

    let form = format!("key={read}&next=%2Fui%2Fdashboard");
    let r = app.post_form("/ui/login", &form, &same).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/ui/dashboard");
    let cookie = r.set_cookie();
    assert!(
        cookie.starts_with(&format!("bitacora_session={read};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");

    // Over HTTPS (as the browser's Origin says) the cookie is Secure.
    let r = app
        .post_form(
            "/ui/login",
            &format!("key={read}"),
            &[
                ("origin", "https://audit.example"),
                ("host", "audit.example"),
            ],
        )
        .await;
    assert!(r.set_cookie().contains("; Secure"), "{}", r.set_cookie());

    // An open redirect is not possible.
    let r = app
        .post_form(
            "/ui/login",
            &format!("key={read}&next=https%3A%2F%2Fevil.example"),
            &same,
        )
        .await;
    assert_eq!(r.location(), "/ui/");

    // A form posted from another site is refused, whatever it carries.
    let r = app
        .post_form(
            "/ui/login",
            &format!("key={read}"),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie().is_empty());
    let r = app
        .post_form(
            "/ui/login",
            &format!("key={read}"),
            &[
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:8480"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // An ingest-only key cannot read.
    let ingest = app.key(Scope::Ingest, None).await;
    let r = app
        .post_form("/ui/login", &format!("key={ingest}"), &same)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("read"));

    // The session works, and logout clears it.
    let r = app.get("/ui/", Some(&read)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.post_form("/ui/logout", "", &same).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.set_cookie().contains("Max-Age=0"));
    let r = app
        .post_form("/ui/logout", "", &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_viewer_url_signs_in_and_drops_the_token_from_the_address() {
    let app = app().await;
    // Until viewer tokens exist (issue 5), `auth::resolve` accepts API keys; the URL path is
    // the same one a viewer token takes.
    let read = app.key(Scope::Read, Some("acme")).await;
    let r = app.get(&format!("/ui/login?token={read}"), None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/ui/");
    assert!(
        r.set_cookie()
            .contains(&format!("bitacora_session={read};"))
    );

    let r = app.get("/ui/login?token=bk_revoked_or_unknown", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.set_cookie().is_empty());
    // The token never comes back in the page.
    assert!(!r.body.contains("bk_revoked_or_unknown"));

    // A revoked key's session ends (within the auth cache's second).
    let key = app.key(Scope::Read, None).await;
    assert_eq!(app.get("/ui/", Some(&key)).await.status, StatusCode::OK);
    let id = app
        .store
        .api_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.secret_hash == crate::auth::hash_secret(&key))
        .unwrap()
        .id;
    app.store.revoke_api_key(&id).await.unwrap();
    tokio::time::sleep(crate::auth::KEY_CACHE_TTL + Duration::from_millis(100)).await;
    let r = app.get("/ui/", Some(&key)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/ui/login?expired=1");
    assert!(r.set_cookie().contains("Max-Age=0"));
}

fn hostile() -> Value {
    let x = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">";
    json!({
        "id": "javascript:alert(1)",
        "tenant": "default",
        "action": "user.update",
        "category": "<b>cat</b>",
        "actor": {"id": "\"><svg onload=alert(1)>", "name": x, "email": "a@b.c\" onmouseover=\"alert(1)"},
        "target": {"type": "javascript:alert(1)//", "id": "<iframe src=javascript:alert(1)>", "name": x},
        "changes": [{"field": "<i>f</i>", "label": x, "old": x, "new": {"k": "</pre><script>alert(1)</script>"}}],
        "description": x,
        "context": {"ip": "10.0.0.1", "user_agent": x, "request_id": "javascript:alert(1)", "source": "javascript:alert(1)"},
        "metadata": {"url": "javascript:alert(1)", "</pre>": x}
    })
}

#[tokio::test]
async fn event_content_is_always_text() {
    let app = app().await;
    app.append(&[hostile()]).await;
    app.sign("default").await;
    let key = app.key(Scope::Read, None).await;
    let pages = [
        "/ui/".to_owned(),
        "/ui/?q=script".to_owned(),
        "/ui/events/javascript%3Aalert(1)".to_owned(),
        format!(
            "/ui/targets/{}/{}",
            "javascript%3Aalert(1)%2F%2F", "%3Ciframe%20src%3Djavascript%3Aalert(1)%3E"
        ),
        "/ui/dashboard".to_owned(),
        "/ui/integrity".to_owned(),
    ];
    for page in pages {
        let r = app.get(&page, Some(&key)).await;
        assert_eq!(r.status, StatusCode::OK, "{page}: {}", r.body);
        assert_viewer_headers(&r);
        assert_no_inline_code(&r.body);
        assert!(!r.body.contains("<script>window"), "{page}");
        assert!(!r.body.contains("<img src=x"), "{page}");
        assert!(!r.body.contains("<iframe"), "{page}");
        assert!(!r.body.contains("<svg onload"), "{page}");
        for url in urls(&r.body) {
            assert!(
                is_safe_href(&url) || url.starts_with('#'),
                "{page}: unsafe url {url}"
            );
        }
        if page.starts_with("/ui/events/") || page == "/ui/" {
            assert!(
                r.body
                    .contains("&lt;script&gt;window.__pwned=1&lt;&#x2f;script&gt;")
                    || r.body
                        .contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;"),
                "{page}"
            );
        }
    }
    // The event page verified the proof server-side.
    let r = app
        .get("/ui/events/javascript%3Aalert(1)", Some(&key))
        .await;
    assert!(r.body.contains("state-verified"), "{}", r.body);
    assert!(r.body.contains("tree size <strong>1</strong>"));
    assert!(r.body.contains("&quot;leaf_index&quot;: 0"));
}

#[tokio::test]
async fn a_pinned_credential_sees_only_its_tenant() {
    let app = app().await;
    app.append(&[
        json!({"id": "a-1", "tenant": "acme", "action": "user.login", "description": "acme login"}),
        json!({"id": "o-1", "tenant": "other", "action": "user.login", "description": "other login"}),
    ])
    .await;
    let pinned = app.key(Scope::Read, Some("acme")).await;
    let r = app.get("/ui/", Some(&pinned)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("acme login"));
    assert!(!r.body.contains("other login"));
    assert!(
        !r.body.contains("tenant-switch"),
        "no switcher for a pinned credential"
    );
    for page in [
        "/ui/?tenant=other",
        "/ui/events/o-1?tenant=other",
        "/ui/dashboard?tenant=other",
        "/ui/integrity?tenant=other",
        "/ui/export?format=csv&tenant=other",
        "/ui/tail?tenant=other",
    ] {
        let r = app.get(page, Some(&pinned)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{page}");
        assert!(!r.body.contains("other login"));
    }
    // Ids are looked up in the pinned tenant.
    assert_eq!(
        app.get("/ui/events/o-1", Some(&pinned)).await.status,
        StatusCode::NOT_FOUND
    );
    let r = app.get("/ui/integrity", Some(&pinned)).await;
    assert!(
        r.body.contains("Tenant <a href=\"/ui/\">acme</a>"),
        "{}",
        r.body
    );
    assert!(!r.body.contains(">other<"));
    let r = app.get("/ui/export?format=ndjson", Some(&pinned)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("\"a-1\"") && !r.body.contains("\"o-1\""));

    // An unpinned credential gets a switcher and picks a tenant with a log.
    let admin = app.key(Scope::Admin, None).await;
    let r = app.get("/ui/", Some(&admin)).await;
    assert!(r.body.contains("tenant-switch"));
    assert!(r.body.contains("acme login"), "first tenant with a log");
    let r = app.get("/ui/?tenant=other", Some(&admin)).await;
    assert!(r.body.contains("other login"));
    assert!(r.body.contains("<option value=\"other\" selected>"));
}

#[tokio::test]
async fn filters_live_in_the_url_with_the_api_names() {
    let app = app().await;
    app.append(&[
        json!({"id": "e1", "action": "user.login", "severity": "low", "actor": {"id": "1", "name": "Ana"}, "context": {"ip": "10.1.2.3"}}),
        json!({"id": "e2", "action": "user.role_change", "severity": "critical", "actor": {"id": "2", "name": "Bob"}, "context": {"ip": "192.168.1.5"}}),
        json!({"id": "e3", "action": "device_disable", "severity": "high", "target": {"type": "device", "id": "SW-1"}}),
    ])
    .await;
    let key = app.key(Scope::Read, None).await;

    // A submitted form is redirected to its canonical URL.
    let r = app
        .get(
            "/ui/?q=&action=user.*&severity=critical&severity=high&order=desc&limit=50&ip=",
            Some(&key),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/ui/?action=user.*&severity=high%2Ccritical");

    let r = app
        .get("/ui/?action=user.*&severity=high%2Ccritical", Some(&key))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("data-seq=\"1\""));
    assert!(!r.body.contains("data-seq=\"0\""));
    assert!(!r.body.contains("data-seq=\"2\""));
    // Chips remove one filter each; row values link to a narrower list.
    assert!(
        r.body.contains("href=\"/ui/?severity=high%2Ccritical\""),
        "remove action chip"
    );
    assert!(
        r.body.contains(
            "href=\"/ui/?action=user.*&amp;severity=high%2Ccritical&amp;ip=192.168.1.5\""
        )
    );
    assert!(
        r.body
            .contains("href=\"/ui/?action=user.*&amp;severity=high%2Ccritical&amp;actor_id=2\"")
    );
    // The exports carry the same filters (and the tenant).
    assert!(r.body.contains(
        "/ui/export?format=csv&amp;tenant=default&amp;action=user.*&amp;severity=high%2Ccritical"
    ));

    // CIDR and paging.
    let r = app.get("/ui/?ip=10.0.0.0%2F8", Some(&key)).await;
    assert!(r.body.contains("data-seq=\"0\"") && !r.body.contains("data-seq=\"1\""));
    let r = app.get("/ui/?limit=20", Some(&key)).await;
    assert!(r.body.contains("<option value=\"20\" selected>"));
    let r = app.get("/ui/?limit=1", Some(&key)).await;
    let next = r.body.split("id=\"next-page\"").next().unwrap();
    let href = next
        .rsplit("href=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(href.starts_with("/ui/?limit=1&cursor="), "{href}");
    let r2 = app.get(&href, Some(&key)).await;
    assert!(r2.body.contains("data-seq=\"1\""));
    assert!(r2.body.contains("« Newest"));

    // A bad value is a 400 page naming the filter, not an error page.
    let r = app.get("/ui/?ip=not-an-ip", Some(&key)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("IP (ip)"), "{}", r.body);
    assert!(r.body.contains("name=\"ip\" value=\"not-an-ip\""));
    let r = app.get("/ui/?bogus=1", Some(&key)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // The target history shows the record's events with their diffs.
    let r = app.get("/ui/targets/device/SW-1", Some(&key)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("device_disable"));

    // Exports stream through the API's code with the session's credential.
    let r = app
        .get("/ui/export?format=csv&severity=critical", Some(&key))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        r.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    assert_eq!(r.body.lines().count(), 2, "{}", r.body);
    assert!(r.body.contains("e2"));
    let r = app.get("/ui/export?format=xml", Some(&key)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn the_dashboard_draws_its_charts() {
    let app = app().await;
    let now = chrono::Utc::now();
    let at = |h: i64| bitacora_core::event::timestamp::format(&(now - chrono::Duration::hours(h)));
    app.append(&[
        json!({"action": "user.login", "occurred_at": at(30), "actor": {"id": "1", "name": "Ana"}, "context": {"ip": "10.0.0.1"}}),
        json!({"action": "user.login_failed", "outcome": "failure", "occurred_at": at(29), "context": {"ip": "203.0.113.7"}}),
        json!({"action": "auth_failed", "occurred_at": at(5)}),
        json!({"action": "user.role_change", "severity": "critical", "occurred_at": at(2), "actor": {"id": "2", "name": "Bob"}}),
    ])
    .await;
    let key = app.key(Scope::Read, None).await;
    let r = app.get("/ui/dashboard", Some(&key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for id in [
        "chart-per-day",
        "chart-severity",
        "chart-actors",
        "chart-ips",
        "chart-failed-logins",
        "latest-critical",
    ] {
        assert!(r.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(r.body.contains("<rect class=\"bar cat-"));
    assert!(r.body.contains("<rect class=\"bar fail\""));
    assert!(
        r.body.contains("2 in this window"),
        "failed logins counted: {}",
        r.body
    );
    assert!(r.body.contains("user.role_change"));
    let r = app
        .get(
            "/ui/dashboard?since=2026-02-01&until=2026-01-01",
            Some(&key),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn verify_now_runs_in_the_background() {
    let app = app().await;
    app.append(&[json!({"action": "a"}), json!({"action": "b"})])
        .await;
    app.sign("default").await;
    let key = app.key(Scope::Read, None).await;
    let r = app.get("/ui/integrity", Some(&key)).await;
    assert!(r.body.contains("Not verified since this server started"));
    assert!(r.body.contains("Signature verified"));

    let b = Request::builder()
        .method(Method::POST)
        .uri("/ui/integrity/verify")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .header(header::COOKIE, format!("bitacora_session={key}"));
    let r = app.send(b.body(Body::from("tenant=")).unwrap()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let mut done = false;
    for _ in 0..100 {
        let p: Value =
            serde_json::from_str(&app.get("/ui/integrity/progress", Some(&key)).await.body)
                .unwrap();
        if p["running"] == false {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done);
    let r = app.get("/ui/integrity", Some(&key)).await;
    assert!(r.body.contains("Intact"), "{}", r.body);
    assert!(r.body.contains("tenant default: intact: 2 events"));
}

/// A numbered page whose total the store estimated (its budget spent) says "about", and
/// offers the next page while pages are full; counted totals (the tenant's size, the facets'
/// counts) read as before.
#[tokio::test]
async fn an_estimated_total_reads_about() {
    let app = app_with(|c| c.store.total_budget_ms = 0).await;
    let events: Vec<Value> = (0..20_000)
        .map(|i| {
            json!({"action": "user.login",
                   "actor": {"id": if i % 3 == 0 { "a" } else { "b" }},
                   "outcome": if i % 3 == 0 { "failure" } else { "success" }})
        })
        .collect();
    app.append(&events).await;
    let read = app.key(Scope::Read, None).await;

    // No counter knows an actor's events in a filter: estimated.
    let r = app
        .get("/ui/?actor_id=a&page=2&per_page=50", Some(&read))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Page 2 of about "), "{}", r.body);
    assert!(r.body.contains("page=3"), "the next page is offered");

    let r = app.get("/ui/?page=2&per_page=50", Some(&read)).await;
    assert!(
        r.body.contains("Page 2 of 400 · 20000 events"),
        "{}",
        r.body
    );
    // The facets count outcomes exactly.
    let r = app
        .get("/ui/?outcome=failure&page=2&per_page=50", Some(&read))
        .await;
    assert!(r.body.contains("Page 2 of 134 · 6667 events"), "{}", r.body);
}

#[tokio::test]
async fn the_live_tail_streams_new_rows() {
    let app = app().await;
    app.append(&[json!({"action": "old.event"})]).await;
    let key = app.key(Scope::Read, None).await;
    let request = Request::builder()
        .uri("/ui/tail?action=new.*&from=1")
        .header(header::COOKIE, format!("bitacora_session={key}"))
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    app.append(&[
        json!({"action": "other.event"}),
        json!({"action": "new.event", "description": "<b>fresh</b>"}),
    ])
    .await;
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("event: row") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("a row within 10 s")
            .unwrap()
            .unwrap();
        text.push_str(&named_entities(&String::from_utf8_lossy(&chunk)));
    }
    assert!(text.contains("id: 2"), "{text}");
    assert!(
        text.contains("&lt;b&gt;fresh&lt;&#x2f;b&gt;") || text.contains("&lt;b&gt;fresh&lt;/b&gt;"),
        "{text}"
    );
    assert!(!text.contains("other.event"));
}

/// Templates never mark anything safe and never carry inline code.
#[test]
fn templates_have_no_escape_hatches() {
    for (name, text) in [
        ("base", include_str!("../../templates/ui/base.html")),
        ("list", include_str!("../../templates/ui/list.html")),
        ("row", include_str!("../../templates/ui/row.html")),
        ("event", include_str!("../../templates/ui/event.html")),
        ("target", include_str!("../../templates/ui/target.html")),
        (
            "dashboard",
            include_str!("../../templates/ui/dashboard.html"),
        ),
        ("chart", include_str!("../../templates/ui/chart.html")),
        (
            "integrity",
            include_str!("../../templates/ui/integrity.html"),
        ),
        ("login", include_str!("../../templates/ui/login.html")),
        ("error", include_str!("../../templates/ui/error.html")),
        ("macros", include_str!("../../templates/ui/macros.html")),
    ] {
        assert!(
            !text.contains("|safe") && !text.contains("| safe"),
            "{name}"
        );
        assert!(!text.contains("escape=\"none\""), "{name}");
        assert_no_inline_code(text);
    }
}

#[tokio::test]
async fn alerts_and_destinations_pages_show_firings_rules_and_health() {
    let app = app().await;
    app.append(&[
        json!({"id": "f-1", "action": "user.login", "outcome": "failure", "context": {"ip": "10.0.0.7"}}),
        json!({"id": "f-2", "action": "user.login", "outcome": "failure", "context": {"ip": "10.0.0.7"}}),
        json!({"id": "f-3", "action": "user.login", "outcome": "failure", "context": {"ip": "10.0.0.7"}}),
        json!({"id": "ok-1", "action": "user.login", "outcome": "success"}),
    ])
    .await;
    // A firing as the evaluator writes it, naming the events that fired it.
    let firing = json!({
        "id": "alert-r1-2", "action": "bitacora.alert.fired", "category": "bitacora",
        "severity": "critical", "actor": {"id": "bitacora.alerts", "type": "system"},
        "metadata": {"rule_id": "r1", "rule_name": "<b>brute</b> force", "group_by": "context.ip",
                     "group": "10.0.0.7", "count": 3, "seqs": [0, 1, 2]}
    });
    let sealed = bitacora_delivery::alert::seal_firing(&IngestPolicy::default(), &firing).unwrap();
    app.store.append(vec![sealed]).await.unwrap();
    let destination = bitacora_store::DestinationRecord {
        id: "d1".into(),
        name: "siem <main>".into(),
        tenant: None,
        spec: json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook", "stream": true,
                     "secrets": [bitacora_delivery::spec::new_secret()]})
        .to_string(),
        created_at: 1,
        disabled: None,
    };
    app.store.insert_destination(&destination).await.unwrap();

    // Readers see firings, linked to the events that fired them; not the rules, not the
    // destinations.
    let read = app.key(Scope::Read, None).await;
    let r = app.get("/ui/alerts", Some(&read)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_no_inline_code(&r.body);
    assert!(r.body.contains("&lt;b&gt;brute&lt;/b&gt; force"), "escaped");
    assert!(!r.body.contains("<b>brute"));
    let links = urls(&r.body);
    for id in ["f-1", "f-2", "f-3", "alert-r1-2"] {
        assert!(
            links.iter().any(|u| u == &format!("/ui/events/{id}")),
            "{id}: {links:?}"
        );
    }
    assert!(!r.body.contains("h-rules"));
    assert!(!links.iter().any(|u| u.starts_with("/ui/destinations")));
    assert_eq!(
        app.get("/ui/destinations", Some(&read)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/ui/destinations/d1", Some(&read)).await.status,
        StatusCode::FORBIDDEN
    );

    // Admins: the destinations with their health, and a send-test button.
    let admin = app.key(Scope::Admin, None).await;
    let cookie = format!("bitacora_session={admin}");
    let same = [
        ("sec-fetch-site", "same-origin"),
        ("cookie", cookie.as_str()),
    ];
    let r = app.get("/ui/destinations", Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_no_inline_code(&r.body);
    assert!(r.body.contains("siem &lt;main&gt;"));
    assert!(urls(&r.body).contains(&"/ui/destinations/d1".to_owned()));
    let r = app.get("/ui/destinations/d1", Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("id=\"h-health\""));
    assert!(
        r.body.contains("<th scope=\"row\">default</th>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("5 events"), "the lag: {}", r.body);
    assert_eq!(
        app.get("/ui/destinations/nope", Some(&admin)).await.status,
        StatusCode::NOT_FOUND
    );
    // The test delivery goes through the address guard (a loopback receiver is refused
    // here), and the page says why.
    let r = app.post_form("/ui/destinations/d1/test", "", &same).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().contains("test=failed"), "{}", r.location());
    let r = app.get(r.location(), Some(&admin)).await;
    assert!(r.body.contains("id=\"test-result\""), "{}", r.body);
    assert!(r.body.contains("allow_private_destinations"), "{}", r.body);
    // From another site: refused.
    let cross = [
        ("sec-fetch-site", "cross-site"),
        ("cookie", cookie.as_str()),
    ];
    let r = app.post_form("/ui/destinations/d1/test", "", &cross).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Test a rule before creating it: "would have fired once" over the three failures.
    let form = "name=brute&action=user.login&outcome=failure&count=3&window=10m\
                &group_by=context.ip&lookback=7d";
    let r = app.post_form("/ui/alerts/test", form, &same).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("Would have fired <strong>1</strong> time"),
        "{}",
        r.body
    );
    assert!(urls(&r.body).contains(&"/ui/events/f-3".to_owned()));
    // Create it (with the destination), then disable and enable it.
    let r = app
        .post_form("/ui/alerts/rules", &format!("{form}&destination=d1"), &same)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rules = app.store.alert_rules().await.unwrap();
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert!(
        rule.spec.contains("\"destinations\":[\"d1\"]"),
        "{}",
        rule.spec
    );
    let r = app.get("/ui/alerts", Some(&admin)).await;
    assert!(r.body.contains("id=\"h-rules\""));
    assert!(r.body.contains("3 in 10m by context.ip"), "{}", r.body);
    let toggle = format!("/ui/alerts/rules/{}/disable", rule.id);
    assert!(urls(&r.body).contains(&toggle), "{:?}", urls(&r.body));
    let r = app.post_form(&toggle, "", &same).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        app.store.alert_rules().await.unwrap()[0]
            .spec
            .contains("\"disabled\":true")
    );
    let r = app.get(r.location(), Some(&admin)).await;
    assert!(r.body.contains("The rule was disabled."));
    assert!(urls(&r.body).contains(&format!("/ui/alerts/rules/{}/enable", rule.id)));
    // The stored rule, tested by id.
    let r = app
        .post_form(
            &format!("/ui/alerts/test?rule_id={}", rule.id),
            "lookback=1d",
            &same,
        )
        .await;
    assert!(
        r.body.contains("Would have fired <strong>1</strong> time"),
        "{}",
        r.body
    );
    // Read keys change nothing.
    let read_cookie = format!("bitacora_session={read}");
    let as_reader = [
        ("sec-fetch-site", "same-origin"),
        ("cookie", read_cookie.as_str()),
    ];
    for (path, body) in [
        (format!("/ui/alerts/rules/{}/enable", rule.id), ""),
        ("/ui/alerts/rules".to_owned(), form),
        ("/ui/alerts/test".to_owned(), form),
        ("/ui/destinations/d1/test".to_owned(), ""),
    ] {
        let r = app.post_form(&path, body, &as_reader).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    // A bad form is a 4xx page, never a 500.
    let r = app
        .post_form("/ui/alerts/rules", "name=x&min_severity=huge", &same)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = app.post_form("/ui/alerts/rules", "bogus=1", &same).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
