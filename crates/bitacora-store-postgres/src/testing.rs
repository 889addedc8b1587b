//! Throwaway databases for tests (feature `testing`).
//!
//! Each test gets its own database, `bitacora_test_<random>`, on the server named by
//! `BITACORA_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`), dropped when the
//! [`TestDatabase`] is. When PostgreSQL is unreachable, [`TestDatabase::create`] returns
//! `None` after printing why, so a developer without PostgreSQL can still run the rest; when
//! the environment variable `CI` is set it panics instead: in CI a PostgreSQL test must fail,
//! never skip.

use std::str::FromStr as _;

use rand::Rng as _;
use tokio_postgres::NoTls;

/// The server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("BITACORA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
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
        let name = format!("bitacora_test_{:016x}", rand::thread_rng().r#gen::<u64>());
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
