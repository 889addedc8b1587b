//! Test harness: the real server on port 0 with a temporary data folder, driven through
//! `bitacora-client`.
//!
//! - [`spawn_app`] runs `bitacora_server::serve` in-process (fast; most tests).
//! - [`spawn_binary`] runs the `bitacora serve` executable as a child process, for what only a
//!   real process can show: signals, `kill -9`, restarts on the same data folder.
//!
//! Server logs are silent unless `TEST_LOG` is set.
#![allow(dead_code)]

pub mod receiver;
pub mod syslog;
pub mod witness;

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitacora_client::{Client, ClientError, SearchParams, StatusCode};
use bitacora_core::EventInput;
use futures::TryStreamExt as _;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen "soon" (startup, full-text index).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A server running inside the test process.
pub struct TestApp {
    pub client: Client,
    pub addr: SocketAddr,
    pub admin_key: String,
    /// Kept so the folder outlives the server; dropped (deleted) with the app. The store is
    /// its `data/` subfolder ([`data_folder`]), so the signing key the server creates beside
    /// it (`data.signing-key`) is deleted with it too.
    pub data: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store's folder.
    pub fn data_dir(&self) -> PathBuf {
        data_folder(self.data.path())
    }

    /// Stops the server gracefully and waits until it has drained and released the store.
    pub async fn stop(mut self) -> Arc<TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("the server stops within 30 s")
                .expect("the server task does not panic")
                .expect("the server stops cleanly");
        }
        self.data.clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The data folder tests use inside a temporary `root`: `root/data`, so that the default
/// signing key file (`root/data.signing-key`, a sibling of the data folder) stays inside `root`.
pub fn data_folder(root: &Path) -> PathBuf {
    root.join("data")
}

pub fn init_test_log() {
    bitacora_server::telemetry::init_test_tracing();
}

/// Starts the server in-process on `127.0.0.1:0` with a fresh temporary data folder and
/// returns a client logged in with the initial admin key.
pub async fn spawn_app() -> TestApp {
    spawn_app_in(Arc::new(tempfile::tempdir().expect("a temp dir"))).await
}

/// Starts the server in-process on an existing data folder (e.g. after a restart).
pub async fn spawn_app_in(data: Arc<TempDir>) -> TestApp {
    spawn_app_configured(data, |_| {}).await
}

/// [`spawn_app`] with a configuration changed by `configure` (the data folder is set after).
pub async fn spawn_app_with(configure: impl FnOnce(&mut bitacora_server::Config)) -> TestApp {
    spawn_app_configured(
        Arc::new(tempfile::tempdir().expect("a temp dir")),
        configure,
    )
    .await
}

/// [`spawn_app_in`] with a configuration changed by `configure` (e.g. a restart with the
/// same settings).
pub async fn spawn_app_in_with(
    data: Arc<TempDir>,
    configure: impl FnOnce(&mut bitacora_server::Config),
) -> TestApp {
    spawn_app_configured(data, configure).await
}

async fn spawn_app_configured(
    data: Arc<TempDir>,
    configure: impl FnOnce(&mut bitacora_server::Config),
) -> TestApp {
    init_test_log();
    let mut config = bitacora_server::Config::default();
    configure(&mut config);
    config.store.data = data_folder(data.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    let handle = tokio::spawn(bitacora_server::serve(config, listener, shutdown));

    let admin_key = wait_for_admin_key(&data_folder(data.path()), || handle.is_finished()).await;
    let client = Client::new(format!("http://{addr}"), &admin_key).unwrap();
    wait_until_healthy(&client).await;
    TestApp {
        client,
        addr,
        admin_key,
        data,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

/// The initial admin key `serve` writes to `DATA/initial-admin-key`.
async fn wait_for_admin_key(dir: &Path, gave_up: impl Fn() -> bool) -> String {
    let file = dir.join("initial-admin-key");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let key = text.trim();
            if !key.is_empty() {
                return key.to_owned();
            }
        }
        assert!(
            !gave_up(),
            "the server stopped before writing {}",
            file.display()
        );
        assert!(
            Instant::now() < deadline,
            "no initial admin key in {} after {PATIENCE:?}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_until_healthy(client: &Client) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if client.readyz().await.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server is not ready after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `bitacora serve` as a child process.
pub struct BinaryApp {
    pub child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub client: Client,
    /// Every stdout line the server printed so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
}

impl BinaryApp {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }

    /// Waits for the process to exit (at most `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BinaryApp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `bitacora serve --listen 127.0.0.1:0 --data DIR`, waits for its `listening on` line and
/// returns a client logged in with the admin key of `DIR/initial-admin-key`.
pub async fn spawn_binary(data: &Path) -> BinaryApp {
    spawn_binary_with(data, &[]).await
}

/// [`spawn_binary`] with more `serve` arguments (e.g. `--capture-database-url URL`).
pub async fn spawn_binary_with(data: &Path, args: &[&str]) -> BinaryApp {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitacora"));
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BITACORA_") {
            cmd.env_remove(k);
        }
    }
    if std::env::var_os("TEST_LOG").is_some() {
        cmd.stderr(Stdio::inherit());
    } else {
        cmd.stderr(Stdio::null()).env("BITACORA_LOG_LEVEL", "warn");
    }
    let mut child = cmd.spawn().expect("spawn bitacora serve");

    // Read stdout on a thread: the listening line first, then keep draining so the server
    // never blocks on a full pipe.
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("listening on http://")
                    && let Ok(addr) = rest.trim().parse::<SocketAddr>()
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
    }
    let addr = match rx.recv_timeout(PATIENCE) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "no `listening on http://ADDR` line within {PATIENCE:?}; stdout: {:?}",
                lines.lock().unwrap()
            );
        }
    };
    let admin_key = wait_for_admin_key(data, || false).await;
    let client = Client::new(format!("http://{addr}"), admin_key).unwrap();
    wait_until_healthy(&client).await;
    BinaryApp {
        child,
        addr,
        data: data.to_path_buf(),
        client,
        stdout: lines,
    }
}

// ---- test data -----------------------------------------------------------------------------

/// An event from JSON (panics on a shape the SDK type cannot hold).
pub fn event(value: Value) -> EventInput {
    serde_json::from_value(value).expect("a valid EventInput")
}

/// The tenant the scenario lives in, apart from `acme-1` (tenant `acme`).
pub const SEED_TENANT: &str = "tutoria";

/// Scenarios from the seed documents: role changes (both naming styles), a ban, devices
/// created and disabled with a reason, logins and failed logins, Spanish text with accents.
/// Every field a filter looks at is explicit (severity, IP), so no server default matters.
/// In tenant `tutoria` they get seqs 0..=8 in this order.
pub fn seed_events() -> Vec<EventInput> {
    vec![
        event(json!({
            "id": "role-1", "tenant": SEED_TENANT, "occurred_at": "2026-01-20T10:30:00Z",
            "action": "user.role_change", "category": "users", "severity": "critical",
            "actor": {"id": "42", "name": "admin", "email": "admin@example.com", "type": "user"},
            "target": {"type": "user", "id": "456", "name": "Juan Pérez"},
            "changes": [{"field": "role", "label": "Rol", "old": "user", "new": "admin"}],
            "description": "Rol cambiado de user a admin",
            "context": {"ip": "192.168.1.100", "user_agent": "Mozilla/5.0", "request_id": "r-1", "source": "admin_panel"},
            "metadata": {"reason": "Solicitud administrativa manual"}
        })),
        event(json!({
            "id": "role-2", "tenant": SEED_TENANT, "occurred_at": "2026-01-21T09:00:00Z",
            "action": "ROLE_CHANGE", "severity": "high",
            "actor": {"id": "7", "name": "Dr. Nexo", "email": "nexo@tutoria.example"},
            "target": {"type": "user", "id": "456", "name": "Juan Pérez"},
            "changes": [{"field": "role", "old": "Viewer", "new": "Admin"}],
            "context": {"ip": "10.0.2.45", "source": "api"},
            "metadata": {"previous_roles": ["Viewer"], "new_role_requested": "Admin",
                         "reason": "Solicitud administrativa manual"}
        })),
        event(json!({
            "id": "ban-1", "tenant": SEED_TENANT, "occurred_at": "2026-01-21T15:45:00Z",
            "action": "BAN_USER", "severity": "high",
            "actor": {"id": "7", "name": "Dr. Nexo", "email": "nexo@tutoria.example"},
            "target": {"type": "user", "id": "789", "name": "María García"},
            "changes": [{"field": "banned", "old": false, "new": true},
                        {"field": "banReason", "old": null, "new": "spam reiterado"}],
            "context": {"ip": "10.0.2.45", "source": "admin_panel"}
        })),
        event(json!({
            "id": "dev-1", "tenant": SEED_TENANT, "occurred_at": "2026-01-22T08:00:00Z",
            "action": "device.create", "severity": "low",
            "actor": {"id": "15", "name": "Ana Torres", "email": "ana.torres@example.com"},
            "target": {"type": "device", "id": "SW-01", "name": "Switch 01"},
            "context": {"ip": "172.16.0.10", "source": "web"}
        })),
        event(json!({
            "id": "dev-2", "tenant": SEED_TENANT, "occurred_at": "2026-01-22T18:30:00+02:00",
            "action": "device.disable", "severity": "medium",
            "actor": {"id": "15", "name": "Ana Torres", "email": "ana.torres@example.com"},
            "target": {"type": "device", "id": "SW-01", "name": "Switch 01"},
            "description": "Dispositivo deshabilitado",
            "context": {"ip": "172.16.0.10", "source": "web"},
            "metadata": {"reason": "Equipo en mantenimiento"}
        })),
        event(json!({
            "id": "login-1", "tenant": SEED_TENANT, "occurred_at": "2026-01-23T07:00:00Z",
            "action": "user.login", "severity": "low", "outcome": "success",
            "actor": {"id": "42", "name": "admin", "email": "admin@example.com"},
            "description": "Usuario inició sesión",
            "context": {"ip": "2001:db8::1", "source": "web"}
        })),
        event(json!({
            "id": "login-fail-1", "tenant": SEED_TENANT, "occurred_at": "2026-01-23T23:59:59Z",
            "action": "user.login_failed", "severity": "medium", "outcome": "failure",
            "actor": {"name": "Juan Pérez", "email": "juan@example.com", "type": "anonymous"},
            "description": "Intento de login fallido",
            "context": {"ip": "2001:db8:0:1::5", "source": "web"}
        })),
        event(json!({
            "id": "login-fail-2", "tenant": SEED_TENANT, "occurred_at": "2026-01-24T00:00:00Z",
            "action": "auth_failed", "severity": "high", "outcome": "failure",
            "context": {"ip": "203.0.113.9", "source": "web"}
        })),
        event(json!({
            "id": "audit-1", "tenant": SEED_TENANT, "occurred_at": "2026-01-25T12:00:00Z",
            "action": "report.generate", "category": "reports", "severity": "low",
            "actor": {"id": "15", "name": "Ana Torres", "email": "ana.torres@example.com"},
            "description": "Reporte de auditoría mensual generado",
            "context": {"ip": "10.0.2.46", "source": "cron"}
        })),
        event(json!({
            "id": "acme-1", "tenant": "acme", "occurred_at": "2026-01-20T11:00:00Z",
            "action": "user.role_change", "severity": "critical",
            "actor": {"id": "99", "name": "root"},
            "target": {"type": "user", "id": "1"},
            "context": {"ip": "192.168.1.100", "source": "admin_panel"}
        })),
    ]
}

/// Stores the seed events and checks every one was stored.
pub async fn seed(client: &Client) {
    let resp = client.send_batch(&seed_events()).await.expect("seed batch");
    for (i, item) in resp.results.iter().enumerate() {
        match item {
            bitacora_core::api::BatchItem::Stored(ack) => assert!(!ack.duplicate, "{ack:?}"),
            other => panic!("seed event {i} was rejected: {other:?}"),
        }
    }
}

/// The ids of the events matching `params` (in the seed tenant unless it names one), in the
/// order the server returned them, all pages.
pub async fn ids(client: &Client, params: SearchParams) -> Vec<String> {
    let params = if params.get("tenant").is_none() {
        params.tenant(SEED_TENANT)
    } else {
        params
    };
    let events: Vec<_> = client
        .search_all(&params)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("search {params:?} failed: {e}"));
    events.into_iter().map(|e| e.id).collect()
}

/// Retries `check` until it returns `Some` or [`PATIENCE`] runs out (for the full-text index,
/// which may trail acknowledgements by up to a second).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    Instant::now() < deadline,
                    "{what}: still not true after {PATIENCE:?}: {last}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Asserts an API error: exact status, a JSON error body, and (when given) the named field.
#[track_caller]
pub fn assert_api_error(
    result: Result<impl std::fmt::Debug, ClientError>,
    status: u16,
    field: Option<&str>,
) -> bitacora_core::api::ErrorDetail {
    match result {
        Err(ClientError::Api { status: s, body }) => {
            assert_eq!(s, StatusCode::from_u16(status).unwrap(), "{body:?}");
            if let Some(field) = field {
                assert_eq!(body.error.field.as_deref(), Some(field), "{body:?}");
            }
            assert!(!body.error.code.is_empty() && !body.error.message.is_empty());
            body.error
        }
        other => panic!("expected HTTP {status} with a JSON error, got {other:?}"),
    }
}

/// `n` small events in `tenant` with ids `{prefix}-{i}`.
pub fn numbered(tenant: &str, prefix: &str, n: usize) -> Vec<EventInput> {
    (0..n)
        .map(|i| {
            event(json!({
                "id": format!("{prefix}-{i}"), "tenant": tenant, "action": "item.touch",
                "severity": "low", "actor": {"id": format!("u{}", i % 7)},
                "context": {"ip": "10.9.0.1"}
            }))
        })
        .collect()
}
