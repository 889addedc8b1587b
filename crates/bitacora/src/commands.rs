//! What each subcommand does, once its configuration is loaded.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use bitacora_core::TenantName;
use bitacora_core::query::EventQuery;
use bitacora_server::Config;
use bitacora_store::{ApiKeyRecord, Scope, Store};
use chrono::{DateTime, SecondsFormat};
use futures::StreamExt as _;

use crate::check_data_dir;

/// `bitacora serve`: binds, announces the URLs, serves until SIGTERM/SIGINT, drains, exits 0.
pub async fn serve(config: Config) -> Result<()> {
    bitacora_server::telemetry::init_tracing(config.log.format, &config.log.level);
    check_data_dir(&config)?;

    // Listen for signals before announcing anything: a SIGTERM that arrives right after the
    // "listening" line must start a graceful shutdown, not kill the process.
    let shutdown = shutdown_signal()?;

    let addr = config.server.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: set --listen or BITACORA_LISTEN to a free address")
    })?;
    let local = listener.local_addr()?;
    {
        // Scripts and tests parse this first line: keep its shape.
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{local}")?;
        writeln!(out, "  API docs: http://{local}/docs")?;
        writeln!(out, "  OpenAPI:  http://{local}/openapi.json")?;
        writeln!(
            out,
            "  health:   http://{local}/healthz   metrics: http://{local}/metrics"
        )?;
        out.flush()?;
    }
    // On an empty store, `serve` creates the initial admin key and prints it (once).
    bitacora_server::serve(config, listener, shutdown).await?;
    std::io::stdout().flush().ok();
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    check_data_dir(config)?;
    let opened = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || bitacora_server::open_store(&config))
            .await
            .context("opening the store panicked")?
    };
    opened.with_context(|| match &config.store.database_url {
        Some(_) => "cannot open the PostgreSQL store: check --database-url / BITACORA_DATABASE_URL"
            .to_owned(),
        None => format!(
            "cannot open the store in `{}`: check --data / BITACORA_DATA",
            config.store.data.display()
        ),
    })
}

/// `bitacora keys create`.
pub async fn keys_create(
    config: &Config,
    scope: Scope,
    tenant: Option<&str>,
    name: &str,
) -> Result<()> {
    let tenant = tenant
        .map(|t| TenantName::parse(t).map_err(|m| anyhow!("--tenant `{t}`: {m}")))
        .transpose()?;
    if name.trim().is_empty() {
        bail!("--name must not be empty");
    }
    let store = open_store(config).await?;
    let (secret, record) = bitacora_server::auth::generate_api_key(name, scope, tenant);
    let result = store.insert_api_key(&record).await;
    store.close().await.ok();
    result.context("cannot store the new key")?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "created {} key `{}` (id {}){}",
        record.scope.as_str(),
        record.name,
        record.id,
        record
            .tenant
            .as_ref()
            .map(|t| format!(", pinned to tenant `{t}`"))
            .unwrap_or_default()
    )?;
    writeln!(
        out,
        "the secret is shown once, on the next line; store it now:"
    )?;
    writeln!(out, "{secret}")?;
    out.flush()?;
    Ok(())
}

/// The JSON shape of one key in `keys list --json` (CONTRACT §1): never the secret.
#[derive(serde::Serialize)]
struct KeyView<'a> {
    id: &'a str,
    name: &'a str,
    scope: &'static str,
    tenant: Option<&'a str>,
    created_at: String,
    last_used_at: Option<String>,
    revoked: bool,
}

impl<'a> KeyView<'a> {
    fn of(k: &'a ApiKeyRecord) -> Self {
        Self {
            id: &k.id,
            name: &k.name,
            scope: k.scope.as_str(),
            tenant: k.tenant.as_ref().map(TenantName::as_str),
            created_at: format_micros(k.created_at),
            last_used_at: k.last_used_at.map(format_micros),
            revoked: k.revoked,
        }
    }
}

fn format_micros(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| micros.to_string())
}

/// `bitacora keys list [--json]`.
pub async fn keys_list(config: &Config, json: bool) -> Result<()> {
    let store = open_store(config).await?;
    let keys = store.api_keys().await;
    store.close().await.ok();
    let keys = keys.context("cannot read the keys")?;
    let views: Vec<KeyView<'_>> = keys.iter().map(KeyView::of).collect();

    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &views)?;
        writeln!(out)?;
    } else if views.is_empty() {
        writeln!(out, "no keys")?;
    } else {
        let rows: Vec<[String; 7]> = views
            .iter()
            .map(|k| {
                [
                    k.id.to_owned(),
                    k.name.to_owned(),
                    k.scope.to_owned(),
                    k.tenant.unwrap_or("-").to_owned(),
                    k.created_at.clone(),
                    k.last_used_at.clone().unwrap_or_else(|| "never".into()),
                    if k.revoked { "revoked" } else { "active" }.to_owned(),
                ]
            })
            .collect();
        let header = [
            "ID",
            "NAME",
            "SCOPE",
            "TENANT",
            "CREATED",
            "LAST USED",
            "STATUS",
        ];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[&str]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        writeln!(out, "{}", line(&header))?;
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            writeln!(out, "{}", line(&cells))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `bitacora keys revoke ID`.
pub async fn keys_revoke(config: &Config, id: &str) -> Result<()> {
    let store = open_store(config).await?;
    let revoked = store.revoke_api_key(id).await;
    store.close().await.ok();
    if !revoked.context("cannot revoke the key")? {
        bail!("there is no key with id `{id}` (see `bitacora keys list`)");
    }
    println!("revoked key {id}");
    Ok(())
}

/// `bitacora export`: the search, streamed to stdout.
pub async fn export(config: &Config, csv: bool, params: &[(&'static str, &str)]) -> Result<()> {
    let query =
        EventQuery::parse(params.iter().copied(), &config.ingest.default_tenant).map_err(|e| {
            match &e.field {
                Some(f) => anyhow!("--{}: {}", f.replace('_', "-"), e.message),
                None => anyhow!("{}", e.message),
            }
        })?;
    let store = open_store(config).await?;
    let result = write_export(store.clone(), query, csv).await;
    store.close().await.ok();
    result
}

async fn write_export(store: Arc<dyn Store>, query: EventQuery, csv: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let mut pages = std::pin::pin!(bitacora_server::export::export_pages(store, query, None));
    let mut first = true;
    while let Some(page) = pages.next().await {
        let page = page.context("the export failed part way")?;
        if csv {
            out.write_all(&bitacora_server::export::csv_chunk(&page, first)?)?;
        } else {
            out.write_all(&bitacora_server::export::ndjson_chunk(&page))?;
        }
        first = false;
    }
    if csv && first {
        // No events: still a valid CSV file, with its header.
        out.write_all(&bitacora_server::export::csv_chunk(&[], true)?)?;
    }
    out.flush()?;
    Ok(())
}
