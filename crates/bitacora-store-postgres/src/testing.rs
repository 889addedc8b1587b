//! Throwaway databases for tests (feature `testing`).
//!
//! Each test gets its own database, `bitacora_test_<random>`, on the server named by
//! `BITACORA_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`), dropped when the
//! [`TestDatabase`] is. When PostgreSQL is unreachable, [`TestDatabase::create`] returns
//! `None` after printing why, so a developer without PostgreSQL can still run the rest; when
//! the environment variable `CI` is set it panics instead: in CI a PostgreSQL test must fail,
//! never skip.
//!
//! Tests that stop, restart or crash PostgreSQL get a [`PrivateCluster`] of their own instead.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use rand::Rng as _;
use tokio_postgres::NoTls;

/// The server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("BITACORA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// How test database names start: `BITACORA_TEST_DB_PREFIX` (a lowercase letter, then
/// lowercase letters, digits and `_`), so that several people sharing one PostgreSQL server
/// each keep to their own names; by default `bitacora_test_`.
fn database_prefix() -> String {
    std::env::var("BITACORA_TEST_DB_PREFIX")
        .ok()
        .filter(|p| {
            p.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .unwrap_or_else(|| "bitacora_test_".to_owned())
}

/// A database that exists for as long as this value does.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

async fn admin_client() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::from_str(&server_url())?;
    config.dbname("postgres");
    config.connect_timeout(std::time::Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl TestDatabase {
    /// Creates a fresh, empty database; `None` (with the reason printed) when PostgreSQL is
    /// unreachable outside CI.
    pub async fn create() -> Option<Self> {
        let client = match admin_client().await {
            Ok(c) => c,
            Err(e) => {
                let reason = format!(
                    "PostgreSQL at {} is unreachable ({e}); set BITACORA_TEST_POSTGRES",
                    server_url()
                );
                assert!(std::env::var_os("CI").is_none(), "{reason}");
                eprintln!("SKIPPED: {reason}");
                return None;
            }
        };
        let name = format!(
            "{}{:016x}",
            database_prefix(),
            rand::thread_rng().r#gen::<u64>()
        );
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let url = url_of(&server_url(), &name);
        Some(Self { name, url })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `base` (a server URL) with its database, if any, replaced by `name`.
fn url_of(base: &str, name: &str) -> String {
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let end = base[authority_start..]
        .find(['/', '?'])
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}", &base[..end])
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime that cannot block, so the DROP runs on its own
        // thread with its own small runtime.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                let client = admin_client().await?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// How a [`PrivateCluster`] is shut down (`pg_ctl -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// `fast`: sessions are ended and open transactions rolled back, then a clean checkpoint.
    Fast,
    /// `immediate`: every process quits at once, as in a crash; the next start replays WAL.
    Immediate,
}

impl Shutdown {
    fn mode(self) -> &'static str {
        match self {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL cluster of its own, for tests that stop, restart or crash the server (which
/// cannot be done to the shared one while other tests use it).
///
/// `initdb` into a fresh directory, trust authentication, listening on a free port of
/// 127.0.0.1 (its socket in the same directory), small settings, `fsync` on so that a crash
/// (`Shutdown::Immediate`) is a real one. When the tests run as root (as in CI),
/// `initdb` and `postgres` refuse to, so they run as the `postgres` OS user
/// (`runuser -u postgres --`) and the directory is given to that user. Dropping the value
/// stops the cluster (`-m immediate`) and removes the directory.
///
/// The binaries are found with `pg_config --bindir`, else in the newest
/// `/usr/lib/postgresql/*/bin`, else on `PATH`. Without them, [`PrivateCluster::create`]
/// follows [`TestDatabase`]'s convention: `None` with the reason printed, or a panic when
/// `CI` is set.
#[derive(Debug)]
pub struct PrivateCluster {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    /// Whether commands run as the `postgres` OS user (we are root).
    as_postgres: bool,
}

/// The OS user the server runs as when the tests run as root.
const POSTGRES_USER: &str = "postgres";

impl PrivateCluster {
    /// Creates and starts a cluster; `None` (with the reason printed) when the PostgreSQL
    /// server binaries are not installed, outside CI.
    pub async fn create() -> Option<Self> {
        let Some(bindir) = server_bindir() else {
            let reason = "the PostgreSQL server binaries (initdb, pg_ctl) are not installed; \
                          install them or put `pg_config` on PATH";
            assert!(std::env::var_os("CI").is_none(), "{reason}");
            eprintln!("SKIPPED: {reason}");
            return None;
        };
        let as_postgres = effective_uid_is_root().await;
        let dir = std::env::temp_dir().join(format!(
            "bitacora-pg-{:016x}",
            rand::thread_rng().r#gen::<u64>()
        ));
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut cluster = Self {
            dir,
            bindir,
            port: 0,
            as_postgres,
        };
        if as_postgres {
            let chown = tokio::process::Command::new("chown")
                .arg(format!("{POSTGRES_USER}:"))
                .arg(&cluster.dir)
                .status()
                .await;
            assert!(
                matches!(chown, Ok(s) if s.success()),
                "cannot give {} to the `{POSTGRES_USER}` user ({chown:?}); \
                 running the tests as root needs that user",
                cluster.dir.display()
            );
        }
        let data = cluster.data_dir();
        let os = std::ffi::OsStr::new;
        cluster
            .run(
                "initdb",
                &[
                    os("-D"),
                    data.as_os_str(),
                    os("-U"),
                    os("postgres"),
                    os("-A"),
                    os("trust"),
                    os("-E"),
                    os("UTF8"),
                    os("--locale=C"),
                    // The files initdb writes need not survive a power cut, only the cluster
                    // once it runs (fsync stays on below).
                    os("--no-sync"),
                ],
            )
            .await;
        // A free port can be taken by someone else before the server binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            cluster.write_settings();
            match cluster.pg_ctl(&["start"]).await {
                Ok(()) => return Some(cluster),
                Err(e) => last = e,
            }
        }
        panic!("cannot start a private PostgreSQL cluster: {last}");
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `name` on this cluster.
    pub fn url_for(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let (client, connection) = tokio_postgres::connect(&self.url(), NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the private cluster: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        self.url_for(name)
    }

    /// Stops the server (`pg_ctl stop -m fast|immediate`) and waits until it has.
    pub async fn stop(&self, how: Shutdown) {
        self.pg_ctl(&["stop", "-m", how.mode()])
            .await
            .unwrap_or_else(|e| panic!("pg_ctl stop: {e}"));
    }

    /// Starts a stopped server and waits until it accepts connections (after replaying WAL
    /// when it crashed).
    pub async fn start(&self) {
        self.pg_ctl(&["start"])
            .await
            .unwrap_or_else(|e| panic!("pg_ctl start: {e}"));
    }

    /// `pg_ctl restart -m fast|immediate`: returns once the server accepts connections again.
    pub async fn restart(&self, how: Shutdown) {
        self.pg_ctl(&["restart", "-m", how.mode()])
            .await
            .unwrap_or_else(|e| panic!("pg_ctl restart: {e}"));
    }

    /// The server's log so far (for failure messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The settings, in `postgresql.conf` (so `pg_ctl restart` keeps them).
    fn write_settings(&self) {
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", conf.display()));
        if let Some(i) = text.find(SETTINGS_MARK) {
            text.truncate(i);
        }
        text.push_str(&format!(
            "{SETTINGS_MARK}
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket}'
max_connections = 60
shared_buffers = 16MB
max_wal_size = 256MB
fsync = on
synchronous_commit = on
full_page_writes = on
# After a crash, sync the data directory with one syncfs rather than a fsync per file.
recovery_init_sync_method = syncfs
logging_collector = off
",
            port = self.port,
            socket = self.dir.display(),
        ));
        std::fs::write(&conf, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
    }

    async fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.dir.join("server.log");
        let os = std::ffi::OsStr::new;
        let mut all = vec![
            os("-D"),
            data.as_os_str(),
            os("-l"),
            log.as_os_str(),
            os("-w"),
            os("-t"),
            os("60"),
        ];
        all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        let out = self
            .command("pg_ctl", &all)
            .output()
            .await
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let log = self.server_log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            Err(format!(
                "pg_ctl {args:?} failed ({}): {}{}\nserver log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        }
    }

    async fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let out = self
            .command(program, args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn command(&self, program: &str, args: &[&std::ffi::OsStr]) -> tokio::process::Command {
        let program = self.bindir.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", POSTGRES_USER, "--"]).arg(program);
            c
        } else {
            tokio::process::Command::new(program)
        };
        cmd.args(args).stdin(std::process::Stdio::null());
        cmd
    }
}

/// Everything from this line down in `postgresql.conf` is ours.
const SETTINGS_MARK: &str = "\n# --- bitacora PrivateCluster ---\n";

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let pg_ctl = self.bindir.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", POSTGRES_USER, "--"]).arg(pg_ctl);
            c
        } else {
            std::process::Command::new(pg_ctl)
        };
        // Stopped already is fine; whatever happens, the directory goes.
        let _ = cmd
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn server_bindir() -> Option<PathBuf> {
    fn has_server(dir: &Path) -> bool {
        dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    // Debian and Ubuntu keep the server binaries per major version.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| has_server(dir)))
}

async fn effective_uid_is_root() -> bool {
    let out = tokio::process::Command::new("id").arg("-u").output().await;
    matches!(out, Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A TCP port of 127.0.0.1 free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}
