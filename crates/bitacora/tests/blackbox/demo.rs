//! `bitacora serve --demo`: a month of sample activity loaded through the normal append path
//! into an empty store, served at once; refused on a store that holds events.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bitacora_client::{Client, SearchParams};

use crate::common::{PATIENCE, data_folder};

#[tokio::test]
async fn serve_demo_loads_a_month_then_refuses_a_second_time() {
    let root = tempfile::tempdir().unwrap();
    let data = data_folder(root.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("BITACORA_LOG_LEVEL", "warn")
        .env("BITACORA_STORE__SYNCHRONOUS", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut demo_line = None;
    let mut addr = None;
    let deadline = Instant::now() + PATIENCE * 6;
    while addr.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("serve --demo prints its lines");
        if line.starts_with("demo: loaded") {
            demo_line = Some(line.clone());
        }
        if let Some(a) = line.strip_prefix("listening on http://") {
            addr = Some(a.trim().to_owned());
        }
    }
    let demo_line = demo_line.expect("a `demo: loaded` line before `listening on`");
    assert!(
        demo_line.contains("acme (")
            && demo_line.contains("netops (")
            && demo_line.contains("tutoria ("),
        "{demo_line}"
    );

    let key_file = data.join("initial-admin-key");
    let deadline = Instant::now() + PATIENCE;
    while !key_file.exists() {
        assert!(Instant::now() < deadline, "no initial admin key");
        std::thread::sleep(Duration::from_millis(50));
    }
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    let addr = addr.unwrap();
    let client = Client::new(format!("http://{addr}"), &key).unwrap();
    for tenant in ["acme", "netops", "tutoria"] {
        let page = client
            .search(&SearchParams::new().tenant(tenant).limit(5))
            .await
            .unwrap();
        assert_eq!(page.events.len(), 5, "{tenant}");
    }
    let captured = client
        .search(
            &SearchParams::new()
                .tenant("tutoria")
                .category("db")
                .source("db_trigger")
                .limit(1),
        )
        .await
        .unwrap();
    assert_eq!(captured.events.len(), 1);
    // The viewer answers.
    let login = reqwest::get(format!("http://{addr}/ui/login"))
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());

    // The store now holds events: --demo refuses, says why, and changes nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_bitacora"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("BITACORA_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only into an empty store"), "{stderr}");
    assert!(stderr.contains("--data"), "{stderr}");
}
