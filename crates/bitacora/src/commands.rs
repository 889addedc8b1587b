//! What each subcommand does, once its configuration is loaded.

use std::io::{BufRead, IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use bitacora_core::TenantName;
use bitacora_core::query::EventQuery;
use bitacora_log::{BundleOptions, VerifyOptions, VerifyOutcome, verify_tenant};
use bitacora_server::audit::{self, AuditActor, AuditEvent};
use bitacora_server::{Config, integrity};
use bitacora_store::{ApiKeyRecord, Scope, Store};
use chrono::{DateTime, SecondsFormat};
use futures::StreamExt as _;

use crate::{ExportFormat, check_data_dir};

/// `bitacora serve`: binds, announces the URLs, serves until SIGTERM/SIGINT, drains, exits 0.
pub async fn serve(config: Config, demo: bool) -> Result<()> {
    bitacora_server::telemetry::init_tracing(config.log.format, &config.log.level);
    check_data_dir(&config)?;
    if demo {
        load_demo(&config).await?;
    }

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

/// `serve --demo`: the sample month, through the normal append path, into an empty store.
async fn load_demo(config: &Config) -> Result<()> {
    let store = open_sealing_store(config).await?;
    let started = Instant::now();
    let loaded =
        bitacora_server::demo::load(&*store, &config.ingest.policy(), chrono::Utc::now()).await;
    store.close().await.context("closing the store")?;
    let summary = loaded?;
    let tenants: Vec<String> = summary
        .per_tenant
        .iter()
        .map(|(t, n)| format!("{t} ({n})"))
        .collect();
    println!(
        "demo: loaded {} events over the last {} days into tenants {} in {:.1} s",
        summary.total,
        bitacora_server::demo::DAYS,
        tenants.join(", "),
        started.elapsed().as_secs_f64()
    );
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

/// Opens the store for a command that appends (self-audit events, the demo month), with the
/// commit key of the signing key `serve` uses installed, so the server later signs what this
/// command wrote (an append without it would be a tail no seal explains, which the server
/// refuses to sign). Creates the key file when there is none, as `serve` does.
/// The store, for the lifecycle commands.
pub(crate) async fn open_store_for(config: &Config) -> Result<Arc<dyn Store>> {
    open_store(config).await
}

async fn open_sealing_store(config: &Config) -> Result<Arc<dyn Store>> {
    let keys = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || integrity::load_or_create_keys(&config))
            .await
            .context("loading the signing key panicked")??
    };
    let store = open_store(config).await?;
    store.set_commit_key(Some(keys.commit_key()));
    Ok(store)
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
    let store = open_sealing_store(config).await?;
    let (secret, record) = bitacora_server::auth::generate_api_key(name, scope, tenant);
    // Audited first: a key bitacora could not record is not created.
    let mut metadata = serde_json::Map::new();
    metadata.insert("scope".into(), record.scope.as_str().into());
    if let Some(t) = &record.tenant {
        metadata.insert("pinned_tenant".into(), t.as_str().into());
    }
    let result = async {
        audit::append(
            &*store,
            &config.ingest.policy(),
            AuditEvent {
                tenant: record.tenant.as_ref(),
                action: audit::KEY_CREATED,
                actor: AuditActor::cli(),
                client_ip: None,
                target: Some(serde_json::json!({
                    "type": "api_key", "id": record.id, "name": record.name
                })),
                metadata,
                outcome_failure: false,
            },
        )
        .await
        .context("cannot record the key's creation in the audit log")?;
        store
            .insert_api_key(&record)
            .await
            .context("cannot store the new key")
    }
    .await;
    store.close().await.ok();
    result?;

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
    let store = open_sealing_store(config).await?;
    let result = revoke_and_audit(config, &*store, id).await;
    store.close().await.ok();
    result?;
    println!("revoked key {id}");
    Ok(())
}

async fn revoke_and_audit(config: &Config, store: &dyn Store, id: &str) -> Result<()> {
    let keys = store.api_keys().await.context("cannot read the keys")?;
    let Some(key) = keys.into_iter().find(|k| k.id == id) else {
        bail!("there is no key with id `{id}` (see `bitacora keys list`)");
    };
    // Revoked before it is recorded: taking a key away must never wait on anything else.
    store
        .revoke_api_key(id)
        .await
        .context("cannot revoke the key")?;
    if key.revoked {
        return Ok(());
    }
    let mut metadata = serde_json::Map::new();
    metadata.insert("scope".into(), key.scope.as_str().into());
    audit::append(
        store,
        &config.ingest.policy(),
        AuditEvent {
            tenant: key.tenant.as_ref(),
            action: audit::KEY_REVOKED,
            actor: AuditActor::cli(),
            client_ip: None,
            target: Some(serde_json::json!({"type": "api_key", "id": key.id, "name": key.name})),
            metadata,
            outcome_failure: false,
        },
    )
    .await
    .context("the key is revoked, but its revocation could not be recorded in the audit log")
}

/// `bitacora export`: the search, streamed to stdout.
pub async fn export(
    config: &Config,
    format: ExportFormat,
    params: &[(&'static str, &str)],
) -> Result<()> {
    // The operator names the tenant (`--tenant`), else the configured default; the query
    // reads that tenant alone.
    let tenant = match params
        .iter()
        .find(|(k, v)| *k == "tenant" && !v.trim().is_empty())
    {
        Some((_, t)) => TenantName::parse(t.trim()).map_err(|m| anyhow!("--tenant: {m}"))?,
        None => config.ingest.default_tenant.clone(),
    };
    let query = EventQuery::parse(params.iter().copied(), &tenant).map_err(|e| match &e.field {
        Some(f) => anyhow!("--{}: {}", f.replace('_', "-"), e.message),
        None => anyhow!("{}", e.message),
    })?;
    if format == ExportFormat::Bundle {
        let keys = integrity::load_existing_keys(config)?;
        let mut options = BundleOptions::new(Arc::new(keys.signer().clone()), keys.verifiers());
        options.origin_prefix = config.integrity.origin_prefix.clone();
        options.filter = serde_json::Value::Object(
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
                .collect(),
        );
        let store = open_store(config).await?;
        store.set_commit_key(Some(keys.commit_key()));
        let tenant = query.tenant.clone();
        let mut result = write_bundle(store.clone(), query, options).await;
        if result.is_ok() {
            result = record_export(config, &*store, &tenant, "bundle", params).await;
        }
        store.close().await.ok();
        return result;
    }
    let store = open_sealing_store(config).await?;
    let tenant = query.tenant.clone();
    let mut result = write_export(store.clone(), query, format == ExportFormat::Csv).await;
    if result.is_ok() {
        let name = if format == ExportFormat::Csv {
            "csv"
        } else {
            "ndjson"
        };
        result = record_export(config, &*store, &tenant, name, params).await;
    }
    store.close().await.ok();
    result
}

/// The `bitacora.export` self-audit event of a CLI export, written once it completed (the
/// export then never holds its own record).
async fn record_export(
    config: &Config,
    store: &dyn Store,
    tenant: &TenantName,
    format: &str,
    params: &[(&'static str, &str)],
) -> Result<()> {
    audit::append(
        store,
        &config.ingest.policy(),
        AuditEvent {
            tenant: Some(tenant),
            action: audit::EXPORT,
            actor: AuditActor::cli(),
            client_ip: None,
            target: None,
            metadata: audit::export_metadata(format, params.iter().copied()),
            outcome_failure: false,
        },
    )
    .await
    .context("the export completed, but it could not be recorded in the audit log")
}

async fn write_bundle(
    store: Arc<dyn Store>,
    query: EventQuery,
    options: BundleOptions,
) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let mut chunks = std::pin::pin!(bitacora_log::bundle_stream(store, query, options));
    while let Some(chunk) = chunks.next().await {
        out.write_all(&chunk.context("the bundle export failed part way")?)?;
    }
    out.flush()?;
    Ok(())
}

/// `bitacora verify [--tenant T] [--accept-tail]`: re-checks every tenant's log (or one), one
/// summary line each on stdout; fails naming the first bad `seq`. With `--accept-tail`, vouches
/// for a tail no commit seal explains (see [`accept_tail`]).
pub async fn verify(
    config: &Config,
    tenant: Option<&str>,
    trusted: &[String],
    policy: Option<&Path>,
    accept: bool,
) -> Result<()> {
    let policy = policy.map(read_policy).transpose()?;
    let tenant = tenant
        .map(|t| TenantName::parse(t).map_err(|m| anyhow!("--tenant `{t}`: {m}")))
        .transpose()?;
    if accept {
        let Some(tenant) = tenant else {
            bail!(
                "--accept-tail needs --tenant T: vouch for one tenant's tail at a time, after investigating it"
            );
        };
        if !trusted.is_empty() || policy.is_some() {
            bail!("--accept-tail needs the signing key file, not --trusted-key or --policy");
        }
        return accept_tail(config, &tenant).await;
    }
    // With the signing key at hand, its commit key tells a tail the writer sealed (not signed
    // yet) from one nobody vouches for.
    let (mut verifiers, commit_key) = if trusted.is_empty() {
        let keys = integrity::load_existing_keys(config)?;
        (keys.verifiers(), Some(keys.commit_key()))
    } else {
        (
            integrity::parse_verifiers(trusted).context("--trusted-key")?,
            None,
        )
    };
    if let Some(policy) = &policy {
        integrity::add_verifiers(&mut verifiers, policy.logs());
    }
    let store = open_store(config).await?;
    let mut result = verify_store(store.as_ref(), tenant.clone(), &verifiers, commit_key).await;
    if result.is_ok()
        && let Some(policy) = &policy
    {
        result = verify_witnessed(store.as_ref(), tenant, policy).await;
    }
    store.close().await.ok();
    result
}

/// Reads and parses a C2SP tlog-policy file (`--policy`).
fn read_policy(path: &Path) -> Result<bitacora_core::witness::Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy `{}`", path.display()))?;
    bitacora_core::witness::Policy::parse(&text)
        .with_context(|| format!("the policy `{}`", path.display()))
}

/// `bitacora verify --policy`: every stored cosignature of a policy witness must verify over
/// the checkpoint it is stored for (a row that does not was written by someone else than
/// the server, which verified each one before storing it), and the newest checkpoint that
/// meets the policy's quorum says up to where each log is witnessed; a log with none fails.
async fn verify_witnessed(
    store: &dyn Store,
    tenant: Option<TenantName>,
    policy: &bitacora_core::witness::Policy,
) -> Result<()> {
    let tenants = match tenant {
        Some(t) => vec![t],
        None => store.tenants().await.context("cannot list the tenants")?,
    };
    let mut first_bad: Option<String> = None;
    for tenant in &tenants {
        let line = witnessed_line(store, tenant, policy).await?;
        match line {
            Ok(ok) => println!("{ok}"),
            Err(bad) => {
                println!("{bad}");
                first_bad.get_or_insert(bad);
            }
        }
    }
    std::io::stdout().flush().ok();
    match first_bad {
        Some(message) => bail!(message),
        None => Ok(()),
    }
}

/// One tenant's witnessing verdict: `Ok(summary)` or `Err(what is wrong)`.
async fn witnessed_line(
    store: &dyn Store,
    tenant: &TenantName,
    policy: &bitacora_core::witness::Policy,
) -> Result<std::result::Result<String, String>> {
    use bitacora_core::checkpoint::SignedNote;
    // The sizes witnesses cosigned, newest first.
    let mut sizes: Vec<u64> = Vec::new();
    let mut after = 0u64;
    loop {
        let page = store
            .checkpoints(tenant, after, 1000)
            .await
            .with_context(|| format!("cannot read the checkpoints of tenant `{tenant}`"))?;
        let Some(last) = page.last() else { break };
        after = last.size;
        for cp in page {
            let cosignatures = store
                .cosignatures(tenant, cp.size)
                .await
                .with_context(|| format!("cannot read the cosignatures of tenant `{tenant}`"))?;
            if cosignatures.is_empty() {
                continue;
            }
            let text = SignedNote::parse(cp.note.as_bytes())
                .map_err(|e| anyhow!("tenant `{tenant}`: checkpoint {}: {e}", cp.size))?
                .text;
            for c in &cosignatures {
                let Some((_, key)) = policy
                    .witnesses()
                    .iter()
                    .find(|(_, k)| k.name() == c.witness && k.key_id() == c.key_id)
                else {
                    continue;
                };
                let line = format!(
                    "{text}
{}
",
                    c.line
                );
                let good = SignedNote::parse(line.as_bytes())
                    .ok()
                    .and_then(|n| n.signatures.into_iter().next())
                    .and_then(|sig| key.verify(&text, &sig));
                if good.is_none() {
                    return Ok(Err(format!(
                        "tenant {tenant}: the stored cosignature of witness {} for the checkpoint at tree size {} does not verify",
                        c.witness, cp.size
                    )));
                }
            }
            sizes.push(cp.size);
        }
    }
    for &size in sizes.iter().rev() {
        let Some(cp) = store
            .checkpoints(tenant, size - 1, 1)
            .await?
            .into_iter()
            .find(|c| c.size == size)
        else {
            continue;
        };
        let note = bitacora_server::integrity::cosigned_note(store, tenant, &cp).await?;
        if let Ok(check) = policy.check(&note) {
            return Ok(Ok(format!(
                "tenant {tenant}: witnessed up to tree size {size}, cosigned by {}",
                if check.cosigned.is_empty() {
                    "none needed (quorum none)".to_owned()
                } else {
                    check.cosigned.join(", ")
                }
            )));
        }
    }
    let latest = store.latest_checkpoint(tenant).await?;
    if let Some(cp) = latest.filter(|_| !policy.needs_cosignatures()) {
        return Ok(Ok(format!(
            "tenant {tenant}: the policy needs no cosignature (quorum none); latest checkpoint at tree size {}",
            cp.size
        )));
    }
    Ok(Err(format!(
        "tenant {tenant}: no checkpoint meets the policy's quorum ({} cosigned checkpoints)",
        sizes.len()
    )))
}

async fn verify_store(
    store: &dyn Store,
    tenant: Option<TenantName>,
    verifiers: &[bitacora_core::checkpoint::NoteVerifier],
    commit_key: Option<bitacora_core::seal::CommitKey>,
) -> Result<()> {
    let tenants = match tenant {
        Some(t) => vec![t],
        None => store.tenants().await.context("cannot list the tenants")?,
    };
    if tenants.is_empty() {
        println!("no tenants: the store holds no events");
        return Ok(());
    }
    let options = VerifyOptions {
        commit_key,
        ..VerifyOptions::default()
    };
    let mut first_bad: Option<String> = None;
    for tenant in &tenants {
        let mut progress = Progress::new(tenant);
        let report = verify_tenant(store, tenant, verifiers, &options, |done, total| {
            progress.update(done, total)
        })
        .await;
        progress.finish();
        let report = report.with_context(|| format!("cannot read the log of tenant `{tenant}`"))?;
        println!("{}", report.summary());
        if first_bad.is_none() {
            first_bad = match &report.outcome {
                VerifyOutcome::Intact => None,
                VerifyOutcome::Tampered { seq, .. } => Some(format!(
                    "the log of tenant `{tenant}` was altered: first bad seq {seq}"
                )),
                VerifyOutcome::BadCheckpoint { size, .. } => Some(format!(
                    "the log of tenant `{tenant}` has a checkpoint that does not verify (tree size {size})"
                )),
                VerifyOutcome::Unsigned { seq, .. } => Some(format!(
                    "the log of tenant `{tenant}` has events no checkpoint covers yet: first unsigned seq {seq} \
                     (sealed by bitacora; start the server to sign them)"
                )),
                VerifyOutcome::Unexplained { seq, .. } => Some(format!(
                    "the log of tenant `{tenant}` has an unexplained tail: first seq nobody vouches for {seq} \
                     (investigate, then `bitacora verify --tenant {tenant} --accept-tail`)"
                )),
                VerifyOutcome::BadSummary { summary, key, .. } => Some(format!(
                    "the summaries of tenant `{tenant}` were altered: {summary} ({key}) does not match the events"
                )),
            };
        }
    }
    std::io::stdout().flush().ok();
    match first_bad {
        Some(message) => bail!(message),
        None => Ok(()),
    }
}

/// `bitacora verify --tenant T --accept-tail`: the recovery from an unexplained tail.
///
/// Runs the full verification; only if everything but the tail checks out, writes a fresh
/// commit seal vouching for every event from the latest signed checkpoint on (the operator
/// has investigated the tail and takes responsibility for it), then records that as a
/// `bitacora.integrity.tail_accepted` self-audit event naming the accepted seq range. The
/// server signs the log again from its next checkpoint on.
async fn accept_tail(config: &Config, tenant: &TenantName) -> Result<()> {
    let keys = integrity::load_existing_keys(config)?;
    let store = open_store(config).await?;
    store.set_commit_key(Some(keys.commit_key()));
    let result = accept_tail_in(config, &*store, tenant, &keys).await;
    store.close().await.ok();
    result
}

async fn accept_tail_in(
    config: &Config,
    store: &dyn Store,
    tenant: &TenantName,
    keys: &bitacora_log::LogKeys,
) -> Result<()> {
    let key = keys.commit_key();
    let options = VerifyOptions {
        commit_key: Some(key.clone()),
        unsigned_grace: Duration::ZERO,
        ..VerifyOptions::default()
    };
    let mut progress = Progress::new(tenant);
    let report = verify_tenant(store, tenant, &keys.verifiers(), &options, |done, total| {
        progress.update(done, total)
    })
    .await;
    progress.finish();
    let report = report.with_context(|| format!("cannot read the log of tenant `{tenant}`"))?;
    println!("{}", report.summary());
    let first = match &report.outcome {
        VerifyOutcome::Intact => {
            println!("nothing to accept: every event of tenant `{tenant}` is signed");
            return Ok(());
        }
        VerifyOutcome::Unsigned { .. } => {
            println!(
                "nothing to accept: the unsigned events of tenant `{tenant}` were sealed by bitacora; \
                 the server signs them when it runs"
            );
            return Ok(());
        }
        VerifyOutcome::Unexplained { seq, .. } => *seq,
        VerifyOutcome::Tampered { seq, .. } => bail!(
            "refusing to accept the tail of tenant `{tenant}`: the log was altered (first bad seq {seq}); \
             an unexplained tail can only be accepted when everything else is intact"
        ),
        VerifyOutcome::BadCheckpoint { size, .. } => bail!(
            "refusing to accept the tail of tenant `{tenant}`: a checkpoint does not verify (tree size {size})"
        ),
        VerifyOutcome::BadSummary { summary, key, .. } => bail!(
            "refusing to accept the tail of tenant `{tenant}`: the summary {summary} ({key}) was altered"
        ),
    };
    let size = report.events;
    let signed = report.signed_size;
    let root = bitacora_log::root_at(store, tenant, size)
        .await
        .with_context(|| format!("cannot read the tree of tenant `{tenant}`"))?;
    // Vouches for every event from the latest signature on: the sealed part before `first`
    // and the tail the operator accepts.
    let seal = key.seal(tenant.as_str(), size, root, signed);
    if !store
        .replace_commit_seal(tenant, &seal)
        .await
        .context("cannot write the commit seal")?
    {
        bail!(
            "the log of tenant `{tenant}` grew while it was being verified; run the command again"
        );
    }
    let mut metadata = serde_json::Map::new();
    metadata.insert("first_seq".into(), first.into());
    metadata.insert("last_seq".into(), (size - 1).into());
    metadata.insert("log_size".into(), size.into());
    metadata.insert("signed_size".into(), signed.into());
    audit::append(
        store,
        &config.ingest.policy(),
        AuditEvent {
            tenant: Some(tenant),
            action: audit::TAIL_ACCEPTED,
            actor: AuditActor::cli(),
            client_ip: None,
            target: Some(serde_json::json!({"type": "log", "id": tenant.as_str()})),
            metadata,
            outcome_failure: false,
        },
    )
    .await
    .context("the tail is accepted, but the acceptance could not be recorded in the audit log")?;
    println!(
        "accepted events {first}..{size} (seq {first} to {}) of tenant `{tenant}`: the server signs the log again from its next checkpoint; the acceptance is recorded as a {} event",
        size - 1,
        audit::TAIL_ACCEPTED
    );
    Ok(())
}

/// A progress line on stderr for big logs, only when stderr is a terminal.
struct Progress {
    tenant: String,
    enabled: bool,
    shown: bool,
    last: Instant,
    started: Instant,
}

impl Progress {
    /// Logs smaller than this finish before a bar would be worth drawing.
    const MIN_EVENTS: u64 = 200_000;

    fn new(tenant: &TenantName) -> Self {
        let now = Instant::now();
        Self {
            tenant: tenant.to_string(),
            enabled: std::io::stderr().is_terminal(),
            shown: false,
            last: now,
            started: now,
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        if !self.enabled || total < Self::MIN_EVENTS {
            return;
        }
        let now = Instant::now();
        if self.shown && now.duration_since(self.last) < Duration::from_millis(200) {
            return;
        }
        self.last = now;
        self.shown = true;
        let pct = (done.min(total) as f64 / total as f64) * 100.0;
        let width = 30usize;
        let filled = ((pct / 100.0) * width as f64) as usize;
        let rate = done as f64 / now.duration_since(self.started).as_secs_f64().max(1e-3);
        eprint!(
            "\r\x1b[2Kverifying {}: [{}{}] {done}/{total} events ({pct:.0}%, {:.0}/s)",
            self.tenant,
            "#".repeat(filled),
            "-".repeat(width - filled),
            rate
        );
    }

    fn finish(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

/// `bitacora verify-bundle FILE`: no store, no server, no configuration.
pub fn verify_bundle(file: &Path, trusted: &[String], policy: Option<&Path>) -> Result<()> {
    let policy = policy.map(read_policy).transpose()?;
    let mut trusted = if trusted.is_empty() {
        None
    } else {
        Some(integrity::parse_verifiers(trusted).context("--trusted-key")?)
    };
    if let Some(policy) = &policy {
        integrity::add_verifiers(trusted.get_or_insert_with(Vec::new), policy.logs());
    }
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::io::stdin().lock(),
        ))
    } else {
        let f = std::fs::File::open(file)
            .with_context(|| format!("cannot open the bundle `{}`", file.display()))?;
        if file.extension().is_some_and(|e| e == "zst") {
            // An archived bundle (retention, docs/LIFECYCLE.md): zstd-compressed.
            let decoder = zstd::stream::read::Decoder::new(f)
                .with_context(|| format!("`{}` is not a zstd file", file.display()))?;
            Box::new(std::io::BufReader::with_capacity(1 << 20, decoder))
        } else {
            Box::new(std::io::BufReader::with_capacity(1 << 20, f))
        }
    };
    match bitacora_log::verify_bundle(reader, trusted.as_deref()) {
        Ok(report) => {
            let witnessed = match &policy {
                Some(policy) => match policy.check(&report.checkpoint) {
                    Ok(check) if check.cosigned.is_empty() => {
                        "; the policy needs no cosignature".to_owned()
                    }
                    Ok(check) => format!(
                        "; cosigned by {} (the policy's quorum is met)",
                        check.cosigned.join(", ")
                    ),
                    Err(e) => bail!(
                        "the bundle's events verify, but its checkpoint (tree size {}) does not satisfy the policy: {e}",
                        report.tree_size
                    ),
                },
                None => String::new(),
            };
            println!("{}{witnessed}", report.summary());
            Ok(())
        }
        Err(e) => bail!("the bundle does not verify: {e}"),
    }
}

/// `bitacora verify-proof EVENT PROOF`: no store, no server, no configuration.
///
/// The event's leaf hash is recomputed from its JSON (RFC 8785 form without `seq` and
/// `leaf_hash`), and the proof must lead from it, at the event's `seq`, to the root of a
/// checkpoint of the event's tenant signed by a trusted key.
pub fn verify_proof(
    event: &Path,
    proof: &Path,
    trusted: &[String],
    policy: Option<&Path>,
) -> Result<()> {
    use bitacora_core::canonical::{canonicalize_json, leaf_hash, parse_hex_hash};
    use bitacora_core::checkpoint::tenant_origin;
    use bitacora_core::tlog::TlogProof;

    #[derive(serde::Deserialize)]
    struct Fields {
        seq: Option<u64>,
        leaf_hash: Option<String>,
        tenant: String,
    }

    let mut verifiers = if trusted.is_empty() {
        Vec::new()
    } else {
        integrity::parse_verifiers(trusted).context("--trusted-key")?
    };
    let policy = match policy {
        Some(path) => {
            let policy = read_policy(path)?;
            integrity::add_verifiers(&mut verifiers, policy.logs());
            Some(policy)
        }
        None => None,
    };
    let read = |path: &Path, what: &str| -> Result<Vec<u8>> {
        if path == Path::new("-") {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)?;
            Ok(buf)
        } else {
            std::fs::read(path)
                .with_context(|| format!("cannot read the {what} `{}`", path.display()))
        }
    };
    let event = read(event, "event")?;
    let proof_text = read(proof, "proof")?;
    let fields: Fields =
        serde_json::from_slice(&event).context("the event is not an event's JSON")?;
    let canonical = canonicalize_json(&event).context("the event cannot be canonicalized")?;
    let leaf = leaf_hash(&canonical);
    if let Some(stated) = &fields.leaf_hash
        && parse_hex_hash(stated) != Some(leaf)
    {
        bail!("the event's content does not match its leaf_hash (the event was altered)");
    }
    let proof_text = std::str::from_utf8(&proof_text).context("the proof is not UTF-8 text")?;
    let proof = TlogProof::parse(proof_text)?;
    if let Some(seq) = fields.seq
        && seq != proof.index
    {
        bail!(
            "the proof is for index {}, the event has seq {seq}",
            proof.index
        );
    }
    // The origin is `<prefix>/<tenant>` (CONTRACT §11); the prefix is the log's, read from the
    // checkpoint, which a trusted key must have signed.
    let origin = bitacora_core::checkpoint::SignedNote::parse(proof.checkpoint.as_bytes())
        .ok()
        .and_then(|n| bitacora_core::checkpoint::Checkpoint::parse_body(&n.text).ok())
        .map(|c| c.origin)
        .filter(|o| bitacora_log::bundle::is_origin_of(o, &fields.tenant))
        .unwrap_or_else(|| tenant_origin(&fields.tenant));
    let witnessed = match &policy {
        Some(policy) => match policy.check(&proof.checkpoint) {
            Ok(check) if check.cosigned.is_empty() => String::new(),
            Ok(check) => format!(", cosigned by {}", check.cosigned.join(", ")),
            Err(e) => bail!("the proof's checkpoint does not satisfy the policy: {e}"),
        },
        None => String::new(),
    };
    match proof.verify(&leaf, &origin, &verifiers) {
        Ok(cp) => {
            println!(
                "ok: the event is entry {} of {origin}, in the signed tree of {} entries{witnessed}",
                proof.index, cp.size
            );
            Ok(())
        }
        Err(e) => bail!("the proof does not verify: {e}"),
    }
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
