//! `bitacora retention run`, `bitacora archive list` and `bitacora backup` (CONTRACT §9,
//! docs/LIFECYCLE.md).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use bitacora_core::TenantName;
use bitacora_lifecycle::{Archive, Retention};
use bitacora_server::{Config, integrity};
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Purge what the retention rules say has expired, now (archiving it first), or with
    /// --dry-run say what would go. Respects legal holds and `retention.min_delay`.
    Run {
        /// Change nothing: list what would be purged.
        #[arg(long)]
        dry_run: bool,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// List the bundles in the retention archive (`retention.archive_url`).
    List {
        /// Only this tenant's bundles.
        #[arg(long)]
        tenant: Option<String>,
        /// A JSON array of `{name,url,size,last_modified}`.
        #[arg(long)]
        json: bool,
    },
}

fn archive_url(config: &Config) -> Result<String> {
    bitacora_server::store::archive_url(config)
        .ok_or_else(|| anyhow!("set `retention.archive_url` (file:///path or s3://bucket/prefix) for a PostgreSQL store"))
}

/// `bitacora retention run [--dry-run] [--tenant T]`.
pub async fn retention_run(config: &Config, dry_run: bool, tenant: Option<&str>) -> Result<()> {
    let tenant = tenant
        .map(|t| TenantName::parse(t).map_err(|m| anyhow!("--tenant `{t}`: {m}")))
        .transpose()?;
    if !config.retention.enabled() {
        println!(
            "retention is off: no `retention.default` and no rule with an age (nothing is purged)"
        );
        return Ok(());
    }
    let keys = integrity::load_existing_keys(config)?;
    let archive = Archive::open_with(&archive_url(config)?, &config.retention.archive_options())
        .context("cannot open the archive")?;
    let store = crate::commands::open_store_for(config).await?;
    store.set_commit_key(Some(keys.commit_key()));
    let retention = Retention {
        store: store.clone(),
        config: config.retention.clone(),
        archive,
        bundle: bitacora_log::BundleOptions {
            origin_prefix: config.integrity.origin_prefix.clone(),
            ..bitacora_log::BundleOptions::new(Arc::new(keys.signer().clone()), keys.verifiers())
        },
        policy: Arc::new(config.ingest.policy()),
    };
    let result = retention
        .pass(
            chrono::Utc::now().timestamp_micros(),
            dry_run,
            tenant.as_ref(),
            &CancellationToken::new(),
        )
        .await;
    store.close().await.ok();
    let report = result.map_err(|e| anyhow!("the retention pass failed: {e}"))?;
    for (tenant, when) in &report.delayed {
        println!(
            "tenant {tenant}: the retention rules changed recently; purging starts at {when} (retention.min_delay)"
        );
    }
    let verb = if dry_run { "would purge" } else { "purged" };
    for p in &report.purges {
        if dry_run {
            println!(
                "tenant {}: {verb} {} events (seqs {})",
                p.tenant, p.count, p.ranges
            );
        } else {
            println!(
                "tenant {}: {verb} {} events (seqs {}), archived to {}",
                p.tenant, p.count, p.ranges, p.archive
            );
        }
    }
    if dry_run {
        for (name, events) in report
            .dropped_partitions
            .iter()
            .zip(&report.partition_events)
        {
            println!(
                "partition {name}: would archive its {events} events, then drop the whole partition"
            );
        }
    } else {
        for name in &report.dropped_partitions {
            println!("partition {name}: every event archived, then the partition dropped");
        }
    }
    let whole: u64 = report.partition_events.iter().sum();
    println!(
        "{verb} {} events in {} batches{}; {} expired events kept by legal holds",
        report.purged() + whole,
        report.purges.len(),
        if whole > 0 {
            format!(
                " and {} whole partitions ({whole} events)",
                report.dropped_partitions.len()
            )
        } else {
            String::new()
        },
        report.held
    );
    Ok(())
}

/// `bitacora archive list [--tenant T] [--json]`.
pub async fn archive_list(config: &Config, tenant: Option<&str>, json: bool) -> Result<()> {
    if let Some(t) = tenant {
        TenantName::parse(t).map_err(|m| anyhow!("--tenant `{t}`: {m}"))?;
    }
    let archive = Archive::open_with(&archive_url(config)?, &config.retention.archive_options())
        .context("cannot open the archive")?;
    let objects = archive
        .list(tenant)
        .await
        .map_err(|e| anyhow!("cannot list the archive: {e}"))?;
    if json {
        let list: Vec<serde_json::Value> = objects
            .iter()
            .map(|o| {
                serde_json::json!({"name": o.name, "url": o.url, "size": o.size,
                                   "last_modified": o.last_modified})
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if objects.is_empty() {
        println!("{}: no archived bundles", archive.url());
    }
    for o in &objects {
        println!("{}\t{} bytes\t{}", o.name, o.size, o.last_modified);
    }
    Ok(())
}

/// `bitacora backup --to DIR`: a consistent copy of the embedded store.
pub fn backup(config: &Config, to: &Path) -> Result<()> {
    if config.store.database_url.is_some() {
        bail!(
            "`bitacora backup` copies the embedded store; back up PostgreSQL with its own tools (pg_dump, pg_basebackup)"
        );
    }
    bitacora_store_sqlite::backup(&config.store.data, to)
        .with_context(|| format!("cannot back up `{}`", config.store.data.display()))?;
    let key = config
        .signing_key_path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "the signing key file".into());
    println!(
        "backed up `{}` to `{}` (use it as --data). The checkpoint signing key ({key}) is not \
         in the backup: keep it apart, see docs/LIFECYCLE.md",
        config.store.data.display(),
        to.display()
    );
    Ok(())
}
