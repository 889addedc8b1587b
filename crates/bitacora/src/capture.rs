//! `bitacora capture install | status | uninstall` (CONTRACT §1, §5): capture in an
//! application's PostgreSQL database, through `bitacora_capture`.
//!
//! Here `--database-url` names the *application's* database, as the contract writes it. The
//! top-level `--database-url` (bitacora's own store) is declared with the same argument id,
//! so clap does not propagate the global flag into these commands: inside `capture`, the flag
//! means the application database and nothing else, and `BITACORA_DATABASE_URL` (the store)
//! is never read for it. It has no environment variable on purpose: clap merges a global
//! argument's value across levels by source (flag over environment), so only a flag is sure
//! to win over the store's variable.

use anyhow::{Context as _, Result};
use bitacora_capture::{InstallOptions, Status, TableStatus};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum CaptureCommand {
    /// Install row-change capture on tables of an application's PostgreSQL database (or
    /// upgrade it, or change a table's settings). Installing twice changes nothing.
    Install(InstallArgs),
    /// Show what is installed, on which tables, and how many changes wait to be drained.
    Status(StatusArgs),
    /// Remove capture: from the named tables, or (with no --table) every trigger and the
    /// bitacora_capture schema. Application tables and their data are never touched.
    Uninstall(UninstallArgs),
}

#[derive(Debug, Args)]
pub struct AppDatabase {
    /// The application's PostgreSQL database (postgres://...), where the triggers go; not
    /// bitacora's own store.
    #[arg(
        id = "database_url",
        long = "database-url",
        value_name = "URL",
        required = true
    )]
    pub url: String,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub db: AppDatabase,
    /// Tables to capture (`SCHEMA.TABLE`, or `TABLE` on the search path; quote mixed-case
    /// names as in SQL: '"MyTable"'). Each needs a primary key (composite keys are fine).
    #[arg(long = "table", value_name = "SCHEMA.TABLE", required = true, num_args = 1..)]
    pub tables: Vec<String>,
    /// Columns never recorded (`TABLE.COLUMN` or `SCHEMA.TABLE.COLUMN`).
    #[arg(long = "exclude-column", value_name = "TABLE.COLUMN", num_args = 1..)]
    pub exclude: Vec<String>,
    /// Columns recorded as a keyed hash (HMAC-SHA256) of their value, never the value.
    #[arg(long = "mask-column", value_name = "TABLE.COLUMN", num_args = 1..)]
    pub mask: Vec<String>,
    /// Also record the whole row before and after (`metadata.before`/`metadata.after`).
    #[arg(long)]
    pub full_rows: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: AppDatabase,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub db: AppDatabase,
    /// Stop capturing these tables only (their triggers and settings).
    #[arg(long = "table", value_name = "SCHEMA.TABLE", num_args = 1..)]
    pub tables: Vec<String>,
    /// Uninstall even though captured changes have not been drained yet (they are lost).
    #[arg(long)]
    pub force: bool,
}

pub async fn run(command: &CaptureCommand) -> Result<()> {
    match command {
        CaptureCommand::Install(args) => install(args).await,
        CaptureCommand::Status(args) => status(args).await,
        CaptureCommand::Uninstall(args) => uninstall(args).await,
    }
}

async fn install(args: &InstallArgs) -> Result<()> {
    let where_ = bitacora_capture::describe_url(&args.db.url);
    let options = InstallOptions {
        tables: args.tables.clone(),
        exclude_columns: args.exclude.clone(),
        mask_columns: args.mask.clone(),
        full_rows: args.full_rows,
    };
    let report = bitacora_capture::install(&args.db.url, &options)
        .await
        .with_context(|| format!("capture install in {where_} failed"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let what = match report.previous_version {
        0 => "installed".to_owned(),
        v if v == report.schema_version => "already installed; tables updated".to_owned(),
        v => format!("upgraded from schema version {v}"),
    };
    println!(
        "bitacora capture {what} in {where_} (schema version {}, install id {})",
        report.schema_version, report.install_id
    );
    for table in &report.tables {
        println!("  {}", describe_table(table));
    }
    println!(
        "\nSet who acts in each transaction, before its writes:\n  SELECT set_config('bitacora.actor_id', '42', true), \
         set_config('bitacora.ip', '192.168.1.100', true);\n\
         Drain the changes into bitacora:\n  bitacora serve --capture-database-url '<this URL>'"
    );
    Ok(())
}

async fn status(args: &StatusArgs) -> Result<()> {
    let where_ = bitacora_capture::describe_url(&args.db.url);
    let status = bitacora_capture::status(&args.db.url)
        .await
        .with_context(|| format!("capture status of {where_} failed"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    print_status(&where_, &status);
    Ok(())
}

fn print_status(where_: &str, status: &Status) {
    if !status.installed {
        println!("bitacora capture is not installed in {where_}");
        return;
    }
    println!(
        "bitacora capture is installed in {where_} (schema version {}, install id {})",
        status
            .schema_version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into()),
        status.install_id.as_deref().unwrap_or("?")
    );
    if status.tables.is_empty() {
        println!("  no tables are captured");
    }
    for table in &status.tables {
        println!("  {}", describe_table(table));
    }
    match status.oldest_pending_seconds {
        Some(age) if status.pending > 0 => println!(
            "{} changes wait to be drained (the oldest for {age:.1} s)",
            status.pending
        ),
        _ => println!("no changes wait to be drained"),
    }
}

fn describe_table(t: &TableStatus) -> String {
    let mut line = format!("{}  key ({})", t.table, t.key_columns.join(", "));
    if !t.excluded.is_empty() {
        line.push_str(&format!("  excluded: {}", t.excluded.join(", ")));
    }
    if !t.masked.is_empty() {
        line.push_str(&format!("  masked: {}", t.masked.join(", ")));
    }
    if t.full_rows {
        line.push_str("  full rows");
    }
    if !t.triggers_ok {
        line.push_str("  TRIGGERS MISSING OR DISABLED: run `bitacora capture install` again");
    }
    line
}

async fn uninstall(args: &UninstallArgs) -> Result<()> {
    let where_ = bitacora_capture::describe_url(&args.db.url);
    let report = bitacora_capture::uninstall(&args.db.url, &args.tables, args.force)
        .await
        .with_context(|| format!("capture uninstall in {where_} failed"))?;
    if report.tables.is_empty() && !report.schema_dropped {
        println!("bitacora capture was not installed in {where_}: nothing to do");
        return Ok(());
    }
    for table in &report.tables {
        println!("  stopped capturing {table}");
    }
    if report.schema_dropped {
        println!("bitacora capture uninstalled from {where_} (schema bitacora_capture dropped)");
        if report.discarded > 0 {
            println!(
                "{} undrained changes were discarded (--force)",
                report.discarded
            );
        }
    }
    Ok(())
}
