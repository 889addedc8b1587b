//! `bitacora`: the tamper-evident audit-trail server and its command line (CONTRACT §1).
//!
//! A thin clap layer over the library crates: `serve` ends in [`bitacora_server::serve`];
//! `keys`, `export` and `verify` open the store directly (beside a running server or
//! without one); `verify-bundle` needs nothing but the file; `config
//! print-default` prints the commented default configuration; `capture` works on an
//! application's PostgreSQL database (`bitacora_capture`), never on the store. Settings are layered built-in
//! defaults → TOML (`--config`) → `BITACORA_*` environment → flags, by
//! [`bitacora_server::Config`]; this crate only turns flags into the last layer.
//!
//! `anyhow` lives here and nowhere else: every error that reaches `main` is printed once, with
//! the flag or environment variable that fixes it.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use bitacora_server::{Config, Overrides};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod capture;
mod commands;
mod lifecycle;

// Ingest allocates per event (parsing, the canonical body, the response); mimalloc measured
// 1.28x glibc's malloc on that path (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Makes mimalloc return freed memory to the OS at once instead of after 10 ms. Batches are
/// sealed on many threads, each with its own heap, and the delay let their freed pages pile
/// up: peak RSS under batch ingest went from 178 MB to 129 MB, at the same throughput
/// (BENCHMARKS.md).
#[allow(unsafe_code)]
fn tune_allocator() {
    // libmimalloc-sys names no constant for `mi_option_purge_delay`; in mimalloc's option
    // enum (v2 and v3 alike) it is the member just before `mi_option_use_numa_nodes`.
    let purge_delay = libmimalloc_sys::mi_option_use_numa_nodes - 1;
    // SAFETY: `mi_option_set` only stores an integer option; mimalloc allows it at any time
    // from any thread, and `purge_delay` is a valid option for which 0 is a valid value.
    unsafe { libmimalloc_sys::mi_option_set(purge_delay, 0) };
}

/// bitacora: a tamper-evident audit trail. Applications send it who did what to which record,
/// when and from where; administrators search it, export it and prove it was not altered.
#[derive(Debug, Parser)]
#[command(name = "bitacora", version)]
struct Cli {
    /// A TOML configuration file (see `bitacora config print-default`).
    #[arg(long, global = true, env = "BITACORA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// The embedded store's folder [default: ./bitacora-data].
    #[arg(long, global = true, env = "BITACORA_DATA", value_name = "DIR")]
    data: Option<PathBuf>,

    /// A PostgreSQL store instead of the embedded one (postgres://...).
    #[arg(
        long,
        global = true,
        env = "BITACORA_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// Log filter: `info`, `debug`, `bitacora_server=debug,info`, ...
    #[arg(long, global = true, env = "BITACORA_LOG_LEVEL", value_name = "FILTER")]
    log_level: Option<String>,

    /// Log format.
    #[arg(long, global = true, env = "BITACORA_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormatArg>,

    /// The checkpoint signing key file [default: the data folder's path + `.signing-key`].
    #[arg(
        long,
        global = true,
        env = "BITACORA_SIGNING_KEY_FILE",
        value_name = "FILE"
    )]
    signing_key_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Pretty,
    Json,
}

// Parsed once per process: the size of the biggest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (API, docs, metrics) until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Stream events to stdout, with the same filters as `GET /v1/events`.
    Export(ExportArgs),
    /// Re-check the whole stored log: every event's leaf hash, the Merkle tree and every
    /// signed checkpoint. Exit 0 when intact, 1 naming the first bad seq.
    Verify(VerifyArgs),
    /// Verify an exported bundle (`.bundle`, or an archived `.bundle.zst`) offline: no server,
    /// no store, no configuration needed.
    /// Exit 0 when every event checks out, 1 naming the first bad line.
    VerifyBundle(VerifyBundleArgs),
    /// Verify one event's C2SP tlog-proof (`GET /v1/events/{id}/proof`) offline against a
    /// verifier key. Exit 0 when it holds, 1 saying what does not.
    VerifyProof(VerifyProofArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Capture row changes of an application's PostgreSQL tables (docs/CAPTURE.md).
    #[command(subcommand)]
    Capture(capture::CaptureCommand),
    /// Retention: purge expired events now, archiving them first (docs/LIFECYCLE.md).
    #[command(subcommand)]
    Retention(lifecycle::RetentionCommand),
    /// The retention archive (`retention.archive_url`).
    #[command(subcommand)]
    Archive(lifecycle::ArchiveCommand),
    /// Write a consistent copy of the embedded store (while a server runs), usable as --data.
    /// The signing key is not copied: keep it apart (docs/LIFECYCLE.md).
    Backup {
        /// An empty (or new) folder.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address and port to listen on [default: 127.0.0.1:8480].
    #[arg(long, env = "BITACORA_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Load a month of sample activity in three tenants (`acme`, `netops`, `tutoria`) before
    /// serving, to explore the viewer. Only into an empty store.
    #[arg(long)]
    demo: bool,

    /// Drain the changes captured in this application database (set up with `bitacora
    /// capture install`) into tenant `default`; repeatable. `[[capture]]` in the config file
    /// sets other tenants and timings.
    #[arg(long = "capture-database-url", value_name = "URL")]
    capture_database_url: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create an API key and print its secret, once, on the last line.
    Create {
        /// What the key may do.
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// Pin the key to one tenant: it then sees and writes that tenant alone.
        #[arg(long)]
        tenant: Option<String>,
        /// A name to recognise the key by (who or what uses it).
        #[arg(long)]
        name: String,
    },
    /// List the keys (never their secrets).
    List {
        /// A JSON array of `{id,name,scope,tenant,created_at,last_used_at,revoked}`.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScopeArg {
    Admin,
    Read,
    Ingest,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Verify this tenant only [default: every tenant in the store].
    #[arg(long)]
    tenant: Option<String>,
    /// Check checkpoint signatures with these verifier keys (`name+id+base64`, or a file of
    /// them, one a line) instead of the configured signing key file and retired keys.
    #[arg(long = "trusted-key", value_name = "KEY")]
    trusted_keys: Vec<String>,
    /// A C2SP tlog-policy file: the stored witness cosignatures must verify with its witness
    /// keys, and some checkpoint of each log must be cosigned by witnesses that meet its
    /// quorum (the summary says up to which size the log is witnessed). Its `log` keys are
    /// trusted too.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Recovery from an unexplained tail (events no commit seal explains, which the server
    /// refuses to sign): after investigating them, vouch for them. Verifies the tenant's log
    /// first and accepts only if everything else is intact; recorded as a
    /// `bitacora.integrity.tail_accepted` event. Needs --tenant and the signing key file.
    #[arg(long)]
    accept_tail: bool,
}

#[derive(Debug, Args)]
struct VerifyBundleArgs {
    /// The bundle (`-` for standard input).
    file: PathBuf,
    /// Only accept a checkpoint signed by one of these verifier keys (`name+id+base64`, as
    /// `GET /v1/log/public-key` serves them, or a file of them). Without it the bundle's own
    /// keys are used: that proves the events match the checkpoint, not who signed it.
    #[arg(long = "trusted-key", value_name = "KEY")]
    trusted_keys: Vec<String>,
    /// A C2SP tlog-policy file: the bundle's checkpoint must be signed by one of its logs
    /// and cosigned (`cosignature/v1`) by witnesses that meet its quorum.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct VerifyProofArgs {
    /// The event as `GET /v1/events/{id}` returns it (`-` for standard input).
    event: PathBuf,
    /// Its tlog-proof, as `GET /v1/events/{id}/proof` returns it.
    proof: PathBuf,
    /// Accept a checkpoint signed by one of these verifier keys (`name+id+base64`, as
    /// `GET /v1/log/public-key` serves them, or a file of them). This or `--policy` is
    /// required: a proof is only as good as the key it is checked against.
    #[arg(
        long = "trusted-key",
        value_name = "KEY",
        required_unless_present = "policy"
    )]
    trusted_keys: Vec<String>,
    /// A C2SP tlog-policy file: the checkpoint must be signed by one of its logs and
    /// cosigned (`cosignature/v1`) by witnesses that meet its quorum.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    Ndjson,
    Csv,
    /// NDJSON with a signed checkpoint and every event's inclusion proof (docs/BUNDLE.md).
    Bundle,
}

/// The search filters, named like the query parameters of `GET /v1/events` (CONTRACT §3).
#[derive(Debug, Args)]
struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Tenant to export [default: the configured default tenant].
    #[arg(long)]
    tenant: Option<String>,
    /// Comma list of actions; `user.*` matches a prefix.
    #[arg(long)]
    action: Option<String>,
    /// Comma list of categories.
    #[arg(long)]
    category: Option<String>,
    /// Comma list of severities.
    #[arg(long)]
    severity: Option<String>,
    /// The lowest severity to include.
    #[arg(long, alias = "min_severity")]
    min_severity: Option<String>,
    /// `success` or `failure`.
    #[arg(long)]
    outcome: Option<String>,
    /// Exact actor id.
    #[arg(long, alias = "actor_id")]
    actor_id: Option<String>,
    /// Case-insensitive part of the actor's name or email.
    #[arg(long)]
    actor: Option<String>,
    /// Exact `target.type` (e.g. `user`, `device`).
    #[arg(long, alias = "target_type")]
    target_type: Option<String>,
    /// Exact `target.id`.
    #[arg(long, alias = "target_id")]
    target_id: Option<String>,
    /// An IP address or CIDR block.
    #[arg(long)]
    ip: Option<String>,
    /// Exact `context.source`.
    #[arg(long)]
    source: Option<String>,
    /// `occurred_at` from (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    since: Option<String>,
    /// `occurred_at` up to (RFC 3339, or YYYY-MM-DD for the whole day).
    #[arg(long)]
    until: Option<String>,
    /// Full-text terms.
    #[arg(long)]
    q: Option<String>,
    /// `desc` (newest first, the default) or `asc`, by seq.
    #[arg(long)]
    order: Option<String>,
}

impl ExportArgs {
    /// The filters as query-parameter pairs, for [`bitacora_core::EventQuery::parse`].
    fn params(&self) -> Vec<(&'static str, &str)> {
        [
            ("tenant", &self.tenant),
            ("action", &self.action),
            ("category", &self.category),
            ("severity", &self.severity),
            ("min_severity", &self.min_severity),
            ("outcome", &self.outcome),
            ("actor_id", &self.actor_id),
            ("actor", &self.actor),
            ("target_type", &self.target_type),
            ("target_id", &self.target_id),
            ("ip", &self.ip),
            ("source", &self.source),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
            ("order", &self.order),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a commented configuration file holding every default.
    PrintDefault,
}

impl Cli {
    fn load_config(&self, listen: Option<SocketAddr>) -> Result<Config> {
        let overrides = Overrides {
            data: self.data.clone(),
            database_url: self.database_url.clone(),
            listen,
            log_level: self.log_level.clone(),
            log_format: self.log_format.map(|f| match f {
                LogFormatArg::Pretty => bitacora_server::config::LogFormat::Pretty,
                LogFormatArg::Json => bitacora_server::config::LogFormat::Json,
            }),
            signing_key_file: self.signing_key_file.clone(),
        };
        Ok(Config::load(self.config.as_deref(), overrides)?)
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Serve(args) => {
            let mut config = cli.load_config(args.listen)?;
            config.capture.extend(
                args.capture_database_url
                    .iter()
                    .map(bitacora_server::config::CaptureConfig::for_url),
            );
            commands::serve(config, args.demo).await
        }
        Command::Keys(cmd) => {
            let config = cli.load_config(None)?;
            match cmd {
                KeysCommand::Create {
                    scope,
                    tenant,
                    name,
                } => {
                    let scope = match scope {
                        ScopeArg::Admin => bitacora_store::Scope::Admin,
                        ScopeArg::Read => bitacora_store::Scope::Read,
                        ScopeArg::Ingest => bitacora_store::Scope::Ingest,
                    };
                    commands::keys_create(&config, scope, tenant.as_deref(), name).await
                }
                KeysCommand::List { json } => commands::keys_list(&config, *json).await,
                KeysCommand::Revoke { id } => commands::keys_revoke(&config, id).await,
            }
        }
        Command::Export(args) => {
            let config = cli.load_config(None)?;
            commands::export(&config, args.format, &args.params()).await
        }
        Command::Verify(args) => {
            let config = cli.load_config(None)?;
            commands::verify(
                &config,
                args.tenant.as_deref(),
                &args.trusted_keys,
                args.policy.as_deref(),
                args.accept_tail,
            )
            .await
        }
        // Deliberately no configuration: a bundle is checked on its own.
        Command::VerifyBundle(args) => {
            commands::verify_bundle(&args.file, &args.trusted_keys, args.policy.as_deref())
        }
        // Likewise offline: the event, its proof and the keys are all it needs.
        Command::VerifyProof(args) => commands::verify_proof(
            &args.event,
            &args.proof,
            &args.trusted_keys,
            args.policy.as_deref(),
        ),
        // The application's database only: no store, no configuration file.
        Command::Capture(cmd) => capture::run(cmd).await,
        Command::Retention(lifecycle::RetentionCommand::Run { dry_run, tenant }) => {
            let config = cli.load_config(None)?;
            lifecycle::retention_run(&config, *dry_run, tenant.as_deref()).await
        }
        Command::Archive(lifecycle::ArchiveCommand::List { tenant, json }) => {
            let config = cli.load_config(None)?;
            lifecycle::archive_list(&config, tenant.as_deref(), *json).await
        }
        Command::Backup { to } => {
            let config = cli.load_config(None)?;
            lifecycle::backup(&config, to)
        }
        Command::Config(ConfigCommand::PrintDefault) => {
            let mut out = std::io::stdout().lock();
            out.write_all(bitacora_server::DEFAULT_CONFIG_TOML.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

/// Fails with a message naming `--data`/`BITACORA_DATA` when the data folder is unusable.
fn check_data_dir(config: &Config) -> Result<()> {
    if config.store.database_url.is_some() {
        return Ok(());
    }
    let dir: &Path = &config.store.data;
    if dir.exists() && !dir.is_dir() {
        bail!(
            "the data folder `{}` is not a folder: set --data or BITACORA_DATA to a folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the data folder `{}`: set --data or BITACORA_DATA to a writable folder",
            dir.display()
        )
    })
}
