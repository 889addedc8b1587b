//! The viewer in a real headless Chromium, driven over WebDriver (chromedriver + fantoccini),
//! against the real server on port 0 with the demo month loaded and hostile events added.
//!
//! Run: `cargo test -p bitacora-server --test ui_browser` (needs Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them). Without them the test is skipped locally and
//! FAILS when the environment variable `CI` is set. Screenshots of every step are kept in
//! `target/ui-screenshots/`. `TEST_LOG=1` shows the server's logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitacora_core::TenantName;
use bitacora_server::auth::generate_api_key;
use bitacora_server::{Config, config::SyncMode};
use bitacora_store::{Scope, Store};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The webhook receiver of the delivery tests (`webhook_receiver.py`: every signature checked
/// with the reference Standard Webhooks library; failures on cue).
#[allow(dead_code)]
#[path = "../../bitacora/tests/common/receiver.rs"]
mod receiver;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PATIENCE: Duration = Duration::from_secs(15);

/// The demo month ends here, whatever today's date: the demo's content (which day the bulk role
/// change falls on, which weekdays are quiet) follows its anchor, so a test that loaded it
/// relative to now would see a different log every day. Dashboard pages are opened with the
/// demo's window ([`DEMO_WINDOW`]) instead of their default "last 30 days from today".
const DEMO_ANCHOR: &str = "2026-03-18T15:30:00Z";
const DEMO_WINDOW: &str = "since=2026-02-17&until=2026-03-18";

/// `chromedriver`, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The browser binaries, or why the test cannot run.
fn browser_binaries() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var("BITACORA_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
    let driver = std::env::var("BITACORA_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
    for p in [&chromium, &driver] {
        if !Path::new(p).exists() {
            return Err(format!(
                "{p} is missing: install Debian's `chromium` and `chromium-driver` \
                 (`apt-get install -y chromium chromium-driver`; .ci/run does it)"
            ));
        }
    }
    Ok((chromium.into(), driver.into()))
}

async fn start_driver(driver: &Path) -> Driver {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + PATIENCE;
    while http.get(format!("{url}/status")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer on {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { child, url }
}

async fn start_browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1366,900",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": args}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

fn demo_anchor() -> chrono::DateTime<chrono::Utc> {
    DEMO_ANCHOR.parse().unwrap()
}

/// A dashboard page over the demo month.
fn dashboard(tenant: &str) -> String {
    format!("/ui/dashboard?tenant={tenant}&{DEMO_WINDOW}")
}

/// The server with the demo month, an admin key, a read key pinned to `acme`, and hostile
/// events in tenant `evil`.
struct Server {
    base: String,
    admin: String,
    acme_reader: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            bitacora_server::telemetry::init_test_tracing();
        }
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.store.data = dir.path().join("data");
        config.store.synchronous = SyncMode::Off;
        let store = bitacora_server::open_store(&config).unwrap();
        // Sealed with the key the server will use, as `serve --demo` does: the server signs
        // only what a key holder's writer sealed.
        let keys = bitacora_server::integrity::load_or_create_keys(&config).unwrap();
        store.set_commit_key(Some(keys.commit_key()));
        let summary = bitacora_server::demo::load(&*store, &config.ingest.policy(), demo_anchor())
            .await
            .unwrap();
        assert!(summary.total > 1500, "{summary:?}");
        let (admin, record) = generate_api_key("admin", Scope::Admin, None);
        store.insert_api_key(&record).await.unwrap();
        let (acme_reader, record) = generate_api_key(
            "acme auditor",
            Scope::Read,
            Some(TenantName::parse("acme").unwrap()),
        );
        store.insert_api_key(&record).await.unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let store: Arc<dyn Store> = store;
        let handle = tokio::spawn(bitacora_server::serve_with_store(
            config,
            store,
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        while http.get(format!("{base}/readyz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let server = Server {
            base,
            admin,
            acme_reader,
            stop: Some(stop),
            handle: Some(handle),
            _dir: dir,
        };
        server.send(&hostile_events()).await;
        server
    }

    /// Sends events through the API (the normal ingest path); their `seq`s.
    async fn send(&self, events: &[Value]) -> Vec<u64> {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/events/batch", self.base))
            .bearer_auth(&self.admin)
            .json(events)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                assert!(item.get("error").is_none(), "{item}");
                item["seq"].as_u64().unwrap()
            })
            .collect()
    }

    /// `GET path` with the admin key, as JSON.
    async fn api(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

/// Script tags, event-handler attributes and `javascript:` URLs in every field.
fn hostile_events() -> Vec<Value> {
    let script = "<script>window.__pwned=1;alert(1)</script>";
    let img = "<img src=x onerror=\"window.__pwned=2;alert(2)\">";
    let both = format!("{script}{img}");
    vec![json!({
        "id": "evil-1",
        "tenant": "evil",
        "action": "user.update",
        "category": "<b>cat</b>",
        "severity": "critical",
        "actor": {"id": "\"><svg onload=alert(3)>", "name": both, "email": "x@y.z\" onmouseover=\"alert(4)"},
        "target": {"type": "javascript:alert(5)//", "id": "javascript:alert(6)", "name": img},
        "changes": [{"field": "<i>f</i>", "label": both, "old": script, "new": {"k": "</pre><script>alert(7)</script>"}}],
        "description": both,
        "context": {"ip": "203.0.113.66", "user_agent": img, "request_id": "javascript:alert(8)", "source": "javascript:alert(9)"},
        "metadata": {"url": "javascript:alert(10)", "html": both}
    })]
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

/// Waits until `script` (an expression) is true in the page.
async fn until(c: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if js(c, &format!("return !!({script});")).await == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page's own checks: scripts and styles from this server only, script ran, nothing
/// hostile ran, no sideways scroll.
async fn check_page(c: &Client, server: &Server, page: &str) {
    let origin = server.base.clone();
    let foreign = js(
        c,
        &format!(
            "return performance.getEntries().map(e => e.name)
                .filter(n => /^(https?|wss?):/.test(n) && !n.startsWith({origin:?}));"
        ),
    )
    .await;
    assert_eq!(foreign, json!([]), "{page}: requests to another host");
    assert_eq!(
        js(
            c,
            "return document.querySelectorAll('script:not([src])').length;"
        )
        .await,
        json!(0),
        "{page}"
    );
    assert_eq!(
        js(
            c,
            "return document.documentElement.classList.contains('js');"
        )
        .await,
        json!(true),
        "{page}: ui.js/theme.js did not run (CSP?)"
    );
    assert_eq!(
        js(c, "return typeof window.__pwned;").await,
        json!("undefined"),
        "{page}: hostile script ran"
    );
    assert!(
        c.get_alert_text().await.is_err(),
        "{page}: an alert is open"
    );
    let bad_links = js(
        c,
        "return Array.from(document.querySelectorAll('a[href]'))
            .filter(a => a.protocol !== 'http:' || a.host !== location.host)
            .map(a => a.getAttribute('href'));",
    )
    .await;
    assert_eq!(bad_links, json!([]), "{page}: links off the viewer");
    let overflow = js(
        c,
        "return [document.documentElement.scrollWidth, window.innerWidth];",
    )
    .await;
    let (scroll, inner) = (overflow[0].as_u64().unwrap(), overflow[1].as_u64().unwrap());
    assert!(
        scroll <= inner,
        "{page}: sideways scroll ({scroll} > {inner})"
    );
}

async fn goto(c: &Client, server: &Server, path: &str) {
    c.goto(&server.url(path)).await.unwrap();
    until(c, "document.readyState === 'complete'", path).await;
}

async fn path_and_query(c: &Client) -> String {
    let u = c.current_url().await.unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_in_a_real_browser() {
    let (chromium, driver_bin) = match browser_binaries() {
        Ok(b) => b,
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI needs the browser: {why}"),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let server = Server::start().await;
    let driver = start_driver(&driver_bin).await;
    let profile = tempfile::tempdir().unwrap();
    let c = start_browser(&driver, &chromium, profile.path()).await;
    let result = steps(&c, &server).await;
    // Always close the browser; then report.
    let _ = c.close().await;
    drop(driver);
    server.stop().await;
    result.unwrap();
}

/// Every step; a failing assertion panics inside and is reported by the caller.
async fn steps(c: &Client, server: &Server) -> Result<(), String> {
    // 1. Signing in with an API key.
    goto(c, server, "/ui/?tenant=acme").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/ui/login");
    shot(c, "01-login").await;
    c.find(Locator::Css("#key"))
        .await
        .unwrap()
        .send_keys("bk_not-a-key")
        .await
        .unwrap();
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "document.querySelector('#login-error') !== null",
        "a login error",
    )
    .await;
    c.find(Locator::Css("#key"))
        .await
        .unwrap()
        .send_keys(&server.admin)
        .await
        .unwrap();
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "location.pathname === '/ui/'",
        "the list after signing in",
    )
    .await;
    assert_eq!(
        path_and_query(c).await,
        "/ui/?tenant=acme",
        "back where we were going"
    );
    assert_eq!(count(c, "#event-rows tr.ev").await, 50);
    // The cookie is HttpOnly: script cannot read it.
    assert_eq!(js(c, "return document.cookie;").await, json!(""));
    check_page(c, server, "list").await;
    shot(c, "02-list").await;

    // 2. Filtering: a form, its canonical URL with the API's names, chips.
    c.find(Locator::Css("#f-action"))
        .await
        .unwrap()
        .send_keys("user.role_change")
        .await
        .unwrap();
    c.find(Locator::Css("input[name=severity][value=critical]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css(".filter-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "location.search.includes('action=user.role_change')",
        "the filtered list",
    )
    .await;
    assert_eq!(
        path_and_query(c).await,
        "/ui/?tenant=acme&action=user.role_change&severity=critical"
    );
    let actions = js(c, "return Array.from(document.querySelectorAll('#event-rows .action code')).map(e => e.textContent);").await;
    let actions = actions.as_array().unwrap();
    assert!(!actions.is_empty());
    assert!(
        actions.iter().all(|a| a == "user.role_change"),
        "{actions:?}"
    );
    assert_eq!(count(c, ".chip").await, 2);
    shot(c, "03-filtered").await;
    // Remove the action chip.
    c.find(Locator::Css(".chip .chip-x"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "!location.search.includes('action=')",
        "the chip removed",
    )
    .await;
    assert!(path_and_query(c).await.contains("severity=critical"));
    // Click an actor to filter by them.
    c.find(Locator::Css("#event-rows a.actor"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "location.search.includes('actor_id=')",
        "the actor filter",
    )
    .await;
    let ids = js(c, "return new Set(Array.from(document.querySelectorAll('#event-rows .actor-name')).map(e => e.textContent)).size;").await;
    assert_eq!(ids, json!(1), "one actor");
    // Click an IP.
    goto(c, server, "/ui/?tenant=acme").await;
    c.find(Locator::Css("#event-rows td.c-ip a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(c, "location.search.includes('ip=')", "the IP filter").await;
    check_page(c, server, "ip filter").await;

    // 3. Paging: 20 per page, then the next page by cursor.
    goto(c, server, "/ui/?tenant=acme").await;
    c.find(Locator::Css("#f-limit"))
        .await
        .unwrap()
        .select_by(Locator::Css("option[value='20']"))
        .await
        .unwrap();
    c.find(Locator::Css(".filter-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(c, "location.search.includes('limit=20')", "20 per page").await;
    assert_eq!(count(c, "#event-rows tr.ev").await, 20);
    let last_seq = js(c, "const r = document.querySelectorAll('#event-rows tr.ev'); return Number(r[r.length-1].dataset.seq);").await;
    c.find(Locator::Css("#next-page"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(c, "location.search.includes('cursor=')", "the next page").await;
    assert_eq!(count(c, "#event-rows tr.ev").await, 20);
    let first_seq = js(
        c,
        "return Number(document.querySelector('#event-rows tr.ev').dataset.seq);",
    )
    .await;
    assert!(
        first_seq.as_u64() < last_seq.as_u64(),
        "{first_seq} < {last_seq}"
    );

    // 4. One event: a role change, its diff, its verified proof.
    goto(
        c,
        server,
        "/ui/?tenant=acme&action=user.role_change&limit=20",
    )
    .await;
    // Chosen by what it is, not by position: a role change of one user (it has a diff), not
    // the bulk operation's summary (which names the users and changes no field itself).
    c.find(Locator::XPath(
        "//tr[contains(@class,'ev')][not(contains(., 'bulk_operation'))]\
         [contains(., 'Rol cambiado de')]//a[contains(@class,'desc-link')]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    until(
        c,
        "location.pathname.startsWith('/ui/events/')",
        "the event page",
    )
    .await;
    // The checkpointer signs within a second of start; reload until the proof verifies.
    let deadline = Instant::now() + PATIENCE;
    while count(c, ".integrity-card.state-verified").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the event's proof never verified"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.refresh().await.unwrap();
    }
    let verdict = c
        .find(Locator::Css(".integrity-card .verdict"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        verdict.contains("Verified") && verdict.contains("tree size"),
        "{verdict}"
    );
    let proof = c
        .find(Locator::Css("#proof-json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let proof: Value = serde_json::from_str(&proof).unwrap();
    assert!(proof["hashes"].as_array().is_some_and(|h| !h.is_empty()));
    assert!(count(c, "table.diff del").await >= 1 && count(c, "table.diff ins").await >= 1);
    check_page(c, server, "event").await;
    shot(c, "04-event").await;

    // 5. The record's history.
    c.find(Locator::Css("a.btn.small[href^='/ui/targets/']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "location.pathname.startsWith('/ui/targets/')",
        "the history",
    )
    .await;
    assert!(count(c, ".timeline .tl-item").await >= 1);
    assert!(count(c, ".timeline table.diff").await >= 1);
    check_page(c, server, "history").await;
    shot(c, "05-history").await;

    // 6. The dashboard's charts.
    goto(c, server, &dashboard("acme")).await;
    assert!(count(c, "#chart-per-day svg rect.bar").await > 20);
    assert!(count(c, "#chart-failed-logins svg rect.bar.fail").await >= 1);
    assert!(count(c, "#chart-actors .ranks li").await >= 5);
    assert!(count(c, "#chart-ips .ranks li").await >= 5);
    assert!(count(c, "#chart-severity .ranks li").await == 4);
    assert!(count(c, "#latest-critical tr.ev").await >= 1);
    check_page(c, server, "dashboard").await;
    shot(c, "06-dashboard").await;

    // 7. Integrity: verify every tenant now, with progress, until each says intact.
    goto(c, server, "/ui/integrity").await;
    assert!(count(c, ".tenant-panel").await >= 4);
    c.find(Locator::Css("#verify-now"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let intact = js(c, "return Array.from(document.querySelectorAll('.tenant-panel')).filter(p => p.textContent.includes('Intact')).length;").await;
        let panels = count(c, ".tenant-panel").await;
        if intact.as_u64() == Some(panels as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "verification did not finish");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    check_page(c, server, "integrity").await;
    shot(c, "07-integrity").await;

    // 8. Hostile content is text, everywhere.
    for page in [
        "/ui/?tenant=evil",
        "/ui/events/evil-1?tenant=evil",
        "/ui/targets/javascript%3Aalert(5)%2F%2F/javascript%3Aalert(6)?tenant=evil",
        "/ui/dashboard?tenant=evil",
    ] {
        goto(c, server, page).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        check_page(c, server, page).await;
        let text = js(c, "return document.body.innerText;").await;
        assert!(
            text.as_str()
                .unwrap()
                .contains("<script>window.__pwned=1;alert(1)</script>"),
            "{page}: the script is shown as text"
        );
    }
    shot(c, "08-hostile").await;

    // 9. Live tail: new events appear without reloading.
    goto(c, server, "/ui/?tenant=acme").await;
    c.find(Locator::Css("label.switch"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "document.querySelector('#live-toggle').checked",
        "live on",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .send(&[json!({"tenant": "acme", "action": "user.login", "description": "Live tail arrival",
                       "actor": {"id": "u_live", "name": "Live Tester"}, "context": {"ip": "192.168.1.77"}})])
        .await;
    until(
        c,
        "document.querySelector('#event-rows tr.ev').textContent.includes('Live tail arrival')",
        "the live row",
    )
    .await;
    assert!(
        js(
            c,
            "return document.querySelector('#live-status').textContent;"
        )
        .await
        .as_str()
        .unwrap()
        .contains("1 new event")
    );
    shot(c, "09-live").await;
    c.find(Locator::Css("label.switch"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // 10. Phone width: no sideways scroll on any page.
    let netops_dashboard = dashboard("netops");
    c.set_window_size(390, 844).await.unwrap();
    for (page, name) in [
        ("/ui/?tenant=acme", "10-phone-list"),
        (
            "/ui/?tenant=tutoria&action=estudiante.update",
            "11-phone-db-changes",
        ),
        ("/ui/events/evil-1?tenant=evil", "12-phone-hostile-event"),
        (netops_dashboard.as_str(), "13-phone-dashboard"),
        ("/ui/integrity", "14-phone-integrity"),
        (
            "/ui/targets/device/SW-CORE-01?tenant=netops",
            "15-phone-history",
        ),
    ] {
        goto(c, server, page).await;
        let inner = js(c, "return window.innerWidth;").await;
        assert!(inner.as_u64().unwrap() <= 420, "phone width: {inner}");
        check_page(c, server, page).await;
        shot(c, name).await;
    }
    c.set_window_size(1366, 900).await.unwrap();

    // 11. Keyboard: the skip link is the first stop; "/" focuses the text search.
    goto(c, server, "/ui/?tenant=netops").await;
    c.execute("document.activeElement.blur();", vec![])
        .await
        .unwrap();
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("/")
        .await
        .unwrap();
    until(
        c,
        "document.activeElement && document.activeElement.id === 'f-q'",
        "the search box focused",
    )
    .await;
    let unlabelled = js(c, "return Array.from(document.querySelectorAll('input:not([type=hidden]), select')).filter(e => !e.labels || e.labels.length === 0).map(e => e.name || e.id);").await;
    assert_eq!(unlabelled, json!([]), "every control has a label");

    // 12. Dark theme toggle, kept across pages.
    c.find(Locator::Css("#theme-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#theme-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        js(c, "return document.documentElement.dataset.theme;").await,
        json!("dark")
    );
    goto(c, server, &dashboard("netops")).await;
    assert_eq!(
        js(c, "return document.documentElement.dataset.theme;").await,
        json!("dark")
    );
    let bg = js(c, "return getComputedStyle(document.body).backgroundColor;").await;
    assert_eq!(bg, json!("rgb(14, 18, 23)"));
    shot(c, "16-dark-dashboard").await;
    goto(c, server, "/ui/?tenant=tutoria").await;
    shot(c, "17-dark-list").await;
    c.find(Locator::Css("#theme-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // 13. Sign out; then a viewer URL with a credential pinned to acme.
    c.find(Locator::Css("form.logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(c, "location.pathname === '/ui/login'", "signed out").await;
    goto(c, server, "/ui/").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/ui/login");
    // Until viewer tokens land (issue 5), `auth::resolve` accepts an API key in their place.
    goto(
        c,
        server,
        &format!("/ui/login?token={}", server.acme_reader),
    )
    .await;
    until(c, "location.pathname === '/ui/'", "signed in by viewer URL").await;
    let url = c.current_url().await.unwrap().to_string();
    assert!(
        !url.contains("token"),
        "the token left the address bar: {url}"
    );
    let pin = c
        .find(Locator::Css(".tenant-pin"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pin.contains("acme"), "{pin}");
    assert_eq!(count(c, "#tenant-switch").await, 0);
    goto(c, server, "/ui/?tenant=netops").await;
    let heading = c
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Not allowed");
    goto(c, server, "/ui/integrity").await;
    assert_eq!(count(c, ".tenant-panel").await, 1);
    goto(c, server, "/ui/events/evil-1?tenant=evil").await;
    assert_eq!(
        c.find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Not allowed"
    );
    shot(c, "18-pinned").await;
    Ok(())
}

/// A server whose tenant `acme` lost its 20 oldest events to a retention purge (archived
/// first) and holds 5 recent ones, with no demo data.
async fn start_purged_server() -> Server {
    use bitacora_core::{EventInput, IngestContext, SealedEvent};
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data = dir.path().join("data");
    config.store.synchronous = SyncMode::Off;
    let store = bitacora_server::open_store(&config).unwrap();
    let keys = bitacora_server::integrity::load_or_create_keys(&config).unwrap();
    store.set_commit_key(Some(keys.commit_key()));
    let policy = config.ingest.policy();
    let acme = TenantName::parse("acme").unwrap();
    let now = chrono::Utc::now();
    let sealed = |i: usize, received: chrono::DateTime<chrono::Utc>| {
        let input = EventInput::from_json(
            json!({"id": format!("r-{i}"), "tenant": "acme", "action": "user.update",
                   "actor": {"id": format!("u{}", i % 3)}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        SealedEvent::prepare(
            input,
            &policy,
            &IngestContext {
                pinned_tenant: None,
                received_at: chrono::SubsecRound::trunc_subsecs(received, 6),
                client_ip: None,
                allow_reserved: false,
            },
        )
        .unwrap()
    };
    let old: Vec<_> = (0..20)
        .map(|i| sealed(i, now - chrono::Duration::days(10)))
        .collect();
    store.append(old).await.unwrap();
    let recent: Vec<_> = (20..25).map(|i| sealed(i, now)).collect();
    store.append(recent).await.unwrap();
    bitacora_log::checkpoint_tenant(&*store, keys.signer(), &acme, 1)
        .await
        .unwrap()
        .expect("a checkpoint");
    let retention_config: bitacora_lifecycle::RetentionConfig =
        toml::from_str("default = \"5d\"\nmin_delay = \"0s\"").unwrap();
    retention_config.validate().unwrap();
    let store: Arc<dyn Store> = store;
    let report = bitacora_lifecycle::Retention {
        store: store.clone(),
        config: retention_config,
        archive: bitacora_lifecycle::Archive::open(&format!(
            "file://{}",
            dir.path().join("archive").display()
        ))
        .unwrap(),
        bundle: bitacora_log::BundleOptions::new(Arc::new(keys.signer().clone()), keys.verifiers()),
        policy: Arc::new(policy),
    }
    .pass(
        now.timestamp_micros(),
        false,
        None,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.purged(), 20, "{report:?}");
    let (admin, record) = generate_api_key("admin", Scope::Admin, None);
    store.insert_api_key(&record).await.unwrap();

    serve_on_port_0(config, store, admin, dir).await
}

/// Serves `store` on `127.0.0.1:0` with `admin` as both credentials, once it answers.
async fn serve_on_port_0(
    config: Config,
    store: Arc<dyn Store>,
    admin: String,
    dir: tempfile::TempDir,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(bitacora_server::serve_with_store(
        config,
        store,
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + PATIENCE;
    while http.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        base,
        admin: admin.clone(),
        acme_reader: admin,
        stop: Some(stop),
        handle: Some(handle),
        _dir: dir,
    }
}

/// The retention horizon on the list page and the legal holds on the integrity page
/// (docs/LIFECYCLE.md), in the real browser: shown, escaped, and gone when released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_shows_the_retention_horizon_and_legal_holds() {
    let (chromium, driver_bin) = match browser_binaries() {
        Ok(b) => b,
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI needs the browser: {why}"),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let server = start_purged_server().await;
    let http = reqwest::Client::new();
    let placed: Value = http
        .post(server.url("/v1/legal-holds"))
        .bearer_auth(&server.admin)
        .json(&json!({"tenant": "acme", "name": "case-42",
                      "reason": "Court order <b>7</b> <script>window.__pwned=3</script>",
                      "filter": {"actor_id": "u1"}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let hold_id = placed["id"].as_str().unwrap().to_owned();
    let driver = start_driver(&driver_bin).await;
    let profile = tempfile::tempdir().unwrap();
    let c = start_browser(&driver, &chromium, profile.path()).await;
    let result = retention_steps(&c, &server, &hold_id).await;
    let _ = c.close().await;
    drop(driver);
    server.stop().await;
    result.unwrap();
}

async fn retention_steps(c: &Client, server: &Server, hold_id: &str) -> Result<(), String> {
    goto(c, server, "/ui/login").await;
    c.find(Locator::Css("#key"))
        .await
        .unwrap()
        .send_keys(&server.admin)
        .await
        .unwrap();
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "location.pathname === '/ui/'",
        "the list after signing in",
    )
    .await;

    // The list says where the log's content now begins, and why an empty search before it
    // proves nothing.
    goto(c, server, "/ui/?tenant=acme").await;
    let horizon = c
        .find(Locator::Css("#horizon"))
        .await
        .map_err(|e| format!("no #horizon on the list page: {e}"))?
        .text()
        .await
        .unwrap();
    assert!(
        horizon.contains("oldest event still held is seq 20"),
        "{horizon}"
    );
    assert!(
        horizon.contains("not evidence that nothing happened"),
        "{horizon}"
    );
    assert!(
        js(
            c,
            "return document.querySelector('#horizon').offsetHeight > 0;"
        )
        .await
            == json!(true),
        "the horizon notice is visible"
    );
    // The purged events are not listed; the 5 recent ones and the purge announcement are.
    let rows = js(c, "return document.body.innerText.includes('r-3');").await;
    assert_eq!(rows, json!(false), "a purged event is listed");
    check_page(c, server, "list with horizon").await;
    shot(c, "20-retention-horizon").await;

    // The integrity page lists the hold in force, its reason as text (never markup).
    goto(c, server, "/ui/integrity").await;
    let holds = c
        .find(Locator::Css("#holds-acme"))
        .await
        .map_err(|e| format!("no #holds-acme on the integrity page: {e}"))?
        .text()
        .await
        .unwrap();
    assert!(holds.contains("case-42"), "{holds}");
    assert!(holds.contains("Court order <b>7</b>"), "{holds}");
    assert!(holds.contains("actor_id"), "{holds}");
    assert_eq!(
        count(c, "#holds-acme b").await,
        0,
        "the reason was not escaped"
    );
    let purged = c
        .find(Locator::Css("#purged-acme"))
        .await
        .map_err(|e| format!("no #purged-acme: {e}"))?
        .text()
        .await
        .unwrap();
    assert!(purged.starts_with("20 events were purged"), "{purged}");
    check_page(c, server, "integrity with holds").await;
    shot(c, "21-legal-holds").await;

    // Released, it is no longer shown as in force.
    let released = reqwest::Client::new()
        .delete(server.url(&format!("/v1/legal-holds/{hold_id}")))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert!(released.status().is_success(), "{released:?}");
    goto(c, server, "/ui/integrity").await;
    assert_eq!(count(c, "#holds-acme").await, 0);
    let text = js(c, "return document.body.innerText;").await;
    assert!(
        text.as_str().unwrap().contains("No legal hold in force."),
        "{text}"
    );
    shot(c, "22-hold-released").await;
    Ok(())
}

/// A server without demo data whose delivery workers may reach this machine's receivers
/// (`allow_private_destinations`) and poll every 50 ms, so the waits stay short.
async fn start_delivery_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data = dir.path().join("data");
    config.store.synchronous = SyncMode::Off;
    config.delivery.allow_private_destinations = true;
    config.delivery.poll_interval_ms = 50;
    config.delivery.timeout_secs = 2;
    config.delivery.max_backoff_secs = 1;
    let store = bitacora_server::open_store(&config).unwrap();
    let (admin, record) = generate_api_key("admin", Scope::Admin, None);
    store.insert_api_key(&record).await.unwrap();
    serve_on_port_0(config, store, admin, dir).await
}

/// `n` failed logins in tenant `acme` by actor `actor`.
fn failed_logins(actor: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"tenant": "acme", "action": "user.login", "outcome": "failure",
                   "actor": {"id": actor}, "context": {"ip": format!("198.51.100.{i}")}})
        })
        .collect()
}

/// Waits until `check` gives `Some`, asking again every 100 ms.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The alert and destination pages (CONTRACT §10) in the real browser, against a real
/// webhook receiver that verifies every signature: the destination's health and "send
/// test" (accepted, then refused), and an alert rule an admin tests against past events
/// ("would have fired 2 times"), creates, disables and enables again — its firing then
/// reaches the receiver and is listed with links to the events that fired it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_alert_rules_and_destinations_in_the_viewer() {
    let (chromium, driver_bin) = match browser_binaries() {
        Ok(b) => b,
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI needs the browser: {why}"),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let receiver = receiver::Receiver::start();
    let server = start_delivery_server().await;
    // The past the rule is tested against: 7 failed logins by actor 42, 5 by actor 7, and
    // successes, which the rule does not match.
    let mut past = failed_logins("42", 7);
    past.extend(failed_logins("7", 5));
    past.extend((0..3).map(|_| {
        json!({"tenant": "acme", "action": "user.login", "outcome": "success",
               "actor": {"id": "42"}})
    }));
    server.send(&past).await;
    let d: Value = reqwest::Client::new()
        .post(server.url("/v1/destinations"))
        .bearer_auth(&server.admin)
        .json(
            &json!({"name": "siem <b>east</b>", "kind": "webhook", "tenant": "acme",
                      "stream": true, "url": receiver.url("/hook"),
                      "filter": {"action": "user.*"}}),
        )
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    receiver.control(json!({"secret": d["secret"]})).await;
    let driver = start_driver(&driver_bin).await;
    let profile = tempfile::tempdir().unwrap();
    let c = start_browser(&driver, &chromium, profile.path()).await;
    let result = delivery_steps(&c, &server, &receiver).await;
    let _ = c.close().await;
    drop(driver);
    server.stop().await;
    result.unwrap();
}

async fn sign_in(c: &Client, server: &Server) {
    goto(c, server, "/ui/login").await;
    c.find(Locator::Css("#key"))
        .await
        .unwrap()
        .send_keys(&server.admin)
        .await
        .unwrap();
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "location.pathname === '/ui/'",
        "the list after signing in",
    )
    .await;
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// `s` with each run of white space made one space.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// The "New rule" form of `/ui/alerts`: five failed logins by one actor within ten minutes,
/// delivered to the page's only destination.
async fn fill_rule_form(c: &Client) {
    for (css, value) in [
        ("#r-name", "Brute force"),
        ("#r-action", "user.login"),
        ("#r-count", "5"),
        ("#r-window", "10m"),
        ("#r-group", "actor.id"),
    ] {
        c.find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    c.find(Locator::Css("#r-outcome"))
        .await
        .unwrap()
        .select_by_label("failure")
        .await
        .unwrap();
    click(c, "input[name=destination]").await;
}

/// The webhook deliveries the receiver accepted and verified: every event, in arrival order.
async fn hook_events(receiver: &receiver::Receiver) -> Vec<Value> {
    receiver
        .accepted("/hook")
        .await
        .iter()
        .flat_map(|d| {
            d["payload"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

async fn delivery_steps(
    c: &Client,
    server: &Server,
    receiver: &receiver::Receiver,
) -> Result<(), String> {
    sign_in(c, server).await;

    // 1. The stream caught up: the 15 logins reached the receiver; the health says so.
    wait_for("the 15 logins at the receiver", || async {
        let n = hook_events(receiver)
            .await
            .iter()
            .filter(|e| e["action"] == "user.login")
            .count();
        (n == 15).then_some(())
    })
    .await;
    let position = wait_for("no lag", || async {
        let list = server.api("/v1/destinations").await;
        let health = &list["destinations"][0]["health"][0];
        (health["lag"] == 0).then(|| health["last_delivered_seq"].as_u64().unwrap())
    })
    .await;
    goto(c, server, "/ui/destinations").await;
    assert_eq!(count(c, "tr.destination").await, 1);
    let row = text(c, "tr.destination").await;
    assert!(row.contains("siem <b>east</b>"), "{row}");
    assert_eq!(count(c, "tr.destination b").await, 0, "the name as markup");
    assert!(row.contains("webhook"), "{row}");
    assert!(row.contains("stream (bitacora)"), "{row}");
    assert!(row.contains("0 events"), "{row}");
    assert!(!row.contains("never"), "no last success: {row}");
    check_page(c, server, "destinations").await;
    shot(c, "30-destinations").await;

    // 2. The destination's page: its position per tenant, no lag, no error.
    click(c, "tr.destination th a").await;
    until(
        c,
        "location.pathname.startsWith('/ui/destinations/')",
        "the destination's page",
    )
    .await;
    let health = text(c, "table.health tbody tr").await;
    assert!(health.starts_with("acme"), "{health}");
    assert!(health.contains(&format!("seq {position}")), "{health}");
    assert!(health.contains("0 events"), "{health}");
    assert!(health.ends_with("none"), "an error shown: {health}");
    check_page(c, server, "destination").await;
    shot(c, "31-destination").await;

    // 3. "Send test": the receiver gets a signed test delivery (its library verified the
    // signature) and the page says it was accepted.
    let before = receiver.accepted("/hook").await.len();
    click(c, "#send-test").await;
    until(
        c,
        "document.querySelector('#test-result') !== null",
        "the test's outcome",
    )
    .await;
    assert_eq!(
        text(c, "#test-result").await,
        "The receiver accepted the test event."
    );
    let accepted = receiver.accepted("/hook").await;
    assert_eq!(accepted.len(), before + 1, "one test delivery");
    let test = &accepted[before]["payload"];
    assert_eq!(test["type"], "bitacora.test", "{test}");
    assert_eq!(test["events"][0]["action"], "bitacora.destination.test");
    assert_eq!(receiver.received().await["bad_signatures"], 0);
    shot(c, "32-send-test-ok").await;
    // A receiver that fails: the page shows the failure and the receiver's answer.
    receiver.control(json!({"queue": ["500"]})).await;
    click(c, "#send-test").await;
    until(
        c,
        "(document.querySelector('#test-result') || {textContent: ''}).textContent.includes('not accepted')",
        "the failed test",
    )
    .await;
    let failed = text(c, "#test-result").await;
    assert!(failed.contains("500"), "{failed}");
    assert_eq!(receiver.accepted("/hook").await.len(), before + 1);
    check_page(c, server, "destination after a failed test").await;
    shot(c, "33-send-test-failed").await;

    // 4. A new rule, tested against the past before it exists: actor 42 crossed 5 failures
    // once (not once per failure after the 5th), actor 7 once.
    goto(c, server, "/ui/alerts?tenant=acme").await;
    assert_eq!(count(c, "#no-firings").await, 1);
    fill_rule_form(c).await;
    click(c, "#test-rule").await;
    until(
        c,
        "location.pathname === '/ui/alerts/test'",
        "the test page",
    )
    .await;
    // The count is set apart (a block of its own): compare the words.
    let verdict = words(&text(c, "#would-fire").await);
    assert!(
        verdict.starts_with("Would have fired 2 times over the last 7d (12 matching events)"),
        "{verdict}"
    );
    assert_eq!(
        count(c, "table.kv tbody tr").await,
        2,
        "one example per firing"
    );
    check_page(c, server, "rule test").await;
    shot(c, "34-rule-test").await;

    // 5. Created: listed, enabled; it evaluates from now on, so the past does not fire.
    goto(c, server, "/ui/alerts?tenant=acme").await;
    fill_rule_form(c).await;
    click(c, "#create-rule").await;
    until(
        c,
        "location.search.includes('done=created')",
        "the rule created",
    )
    .await;
    assert!(text(c, "p.notice").await.contains("The rule was created"));
    assert_eq!(count(c, "tr.rule").await, 1);
    let rule = text(c, "tr.rule").await;
    assert!(rule.starts_with("Brute force"), "{rule}");
    assert!(rule.contains("5 in 10m by actor.id"), "{rule}");
    assert!(rule.contains("siem <b>east</b>"), "{rule}");
    assert!(rule.contains("enabled"), "{rule}");
    let rules = server.api("/v1/alert-rules").await;
    assert_eq!(rules["rules"].as_array().unwrap().len(), 1, "{rules}");
    assert_eq!(rules["rules"][0]["disabled"], false, "{rules}");
    check_page(c, server, "alerts with a rule").await;
    shot(c, "35-rule-created").await;

    // 6. The stored rule tested from its row: the same answer.
    click(c, "tr.rule form[action*='/ui/alerts/test'] button").await;
    until(
        c,
        "location.pathname === '/ui/alerts/test'",
        "the rule's test",
    )
    .await;
    assert_eq!(text(c, "h1").await, "Brute force");
    let verdict = words(&text(c, "#would-fire").await);
    assert!(verdict.starts_with("Would have fired 2 times"), "{verdict}");

    // 7. Disabled: shown so, and failures meanwhile fire nothing.
    goto(c, server, "/ui/alerts?tenant=acme").await;
    click(c, "tr.rule form[action*='/disable'] button").await;
    until(
        c,
        "location.search.includes('done=disabled')",
        "the rule disabled",
    )
    .await;
    assert_eq!(text(c, "tr.rule .badge.fail").await, "disabled");
    assert_eq!(
        text(c, "tr.rule form[action*='/enable'] button").await,
        "Enable"
    );
    assert_eq!(
        server.api("/v1/alert-rules").await["rules"][0]["disabled"],
        true
    );
    shot(c, "36-rule-disabled").await;
    server.send(&failed_logins("99", 5)).await;
    // The stream carries them (so the workers have read past them) before the check.
    wait_for("the disabled time's failures delivered", || async {
        let n = hook_events(receiver)
            .await
            .iter()
            .filter(|e| e["actor"]["id"] == "99")
            .count();
        (n == 5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alerts = server.api("/v1/alerts?tenant=acme").await;
    assert_eq!(
        alerts["alerts"],
        json!([]),
        "fired while created or disabled"
    );

    // 8. Enabled again: five new failures fire once, from the new events alone.
    click(c, "tr.rule form[action*='/enable'] button").await;
    until(
        c,
        "location.search.includes('done=enabled')",
        "the rule enabled",
    )
    .await;
    assert_eq!(count(c, "tr.rule .badge.fail").await, 0, "still disabled");
    assert!(text(c, "tr.rule").await.contains("enabled"));
    assert_eq!(
        server.api("/v1/alert-rules").await["rules"][0]["disabled"],
        false
    );
    let fresh = server.send(&failed_logins("99", 5)).await;
    let firing = wait_for("the firing", || async {
        let alerts = server.api("/v1/alerts?tenant=acme").await;
        alerts["alerts"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(firing["metadata"]["rule_name"], "Brute force");
    assert_eq!(firing["metadata"]["group"], "99");
    assert_eq!(firing["metadata"]["seqs"], json!(fresh), "{firing}");
    // Delivered through the rule's destination, signed.
    let delivered = wait_for("the firing at the receiver", || async {
        hook_events(receiver)
            .await
            .into_iter()
            .find(|e| e["action"] == "bitacora.alert.fired")
    })
    .await;
    assert_eq!(delivered["id"], firing["id"]);
    assert_eq!(receiver.received().await["bad_signatures"], 0);

    // 9. Listed on the alerts page, linked to the events that fired it.
    goto(c, server, "/ui/alerts?tenant=acme").await;
    assert_eq!(count(c, "tr.firing").await, 1);
    let row = text(c, "tr.firing").await;
    assert!(row.contains("Brute force"), "{row}");
    assert!(row.contains("actor.id = 99"), "{row}");
    assert_eq!(count(c, "tr.firing a.trigger").await, 5);
    check_page(c, server, "alerts with a firing").await;
    shot(c, "37-firing").await;
    click(c, "tr.firing a.trigger").await;
    until(
        c,
        "location.pathname.startsWith('/ui/events/')",
        "the event that fired it",
    )
    .await;
    let body = js(c, "return document.body.innerText;").await;
    let body = body.as_str().unwrap();
    assert!(body.contains("user.login") && body.contains("99"), "{body}");
    assert!(body.contains(&format!("seq {}", fresh[0])), "{body}");
    Ok(())
}
