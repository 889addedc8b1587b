//! `bitacora capture install | status | uninstall`: the capture objects in an application's
//! database.
//!
//! Everything runs in one transaction under an advisory lock, so two installs at once
//! serialize and a failed install leaves nothing behind. The tables are versioned
//! (`bitacora_capture.meta.schema_version`, migrations in `sql/v*.sql`); the functions
//! (`sql/functions.sql`) are re-created by every install. Uninstall drops bitacora_capture's
//! triggers and objects only, never an application table.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::Digest as _;
use tokio_postgres::Transaction;

use crate::{CaptureError, connect};

/// The schema version this build installs and understands.
pub const SCHEMA_VERSION: i32 = 3;
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../sql/v1.sql")),
    (2, include_str!("../sql/v2.sql")),
    (3, include_str!("../sql/v3.sql")),
];
const FUNCTIONS: &str = include_str!("../sql/functions.sql");
/// `pg_advisory_xact_lock` key serializing installs and uninstalls ("bitcap").
const INSTALL_LOCK: i64 = 0x6269_7463_6170;
/// AFTER INSERT OR DELETE (installs of schema version 1 made it fire on UPDATE too).
pub(crate) const ROW_TRIGGER: &str = "bitacora_capture_row";
/// AFTER UPDATE, only when the row's binary image changed (since schema version 2).
pub(crate) const UPDATE_TRIGGER: &str = "bitacora_capture_update";
pub(crate) const TRUNCATE_TRIGGER: &str = "bitacora_capture_truncate";

/// What `bitacora capture install` was asked.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// `SCHEMA.TABLE` or `TABLE` (resolved with the search path); SQL identifier syntax, so
    /// `'"MixedCase"'` names a mixed-case table.
    pub tables: Vec<String>,
    /// `TABLE.COLUMN` (or `SCHEMA.TABLE.COLUMN`): never recorded.
    pub exclude_columns: Vec<String>,
    /// `TABLE.COLUMN`: recorded as a keyed hash of the value.
    pub mask_columns: Vec<String>,
    /// Also record whole rows before and after (`metadata.before`/`after`).
    pub full_rows: bool,
}

/// One captured table, as configured and as found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableStatus {
    /// `schema.table`.
    pub table: String,
    pub key_columns: Vec<String>,
    pub excluded: Vec<String>,
    pub masked: Vec<String>,
    pub full_rows: bool,
    /// Its triggers are present and enabled, and between them fire on insert, update, delete
    /// and truncate (false: the table was recreated, or someone disabled or dropped a trigger;
    /// re-run install).
    pub triggers_ok: bool,
}

/// What `install` did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    pub schema_version: i32,
    /// The version found before (0: a fresh install).
    pub previous_version: i32,
    pub install_id: String,
    /// The tables this install configured.
    pub tables: Vec<TableStatus>,
}

/// What `status` found.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub installed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_id: Option<String>,
    pub tables: Vec<TableStatus>,
    /// Captured changes not yet drained.
    pub pending: u64,
    /// Age of the oldest of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_pending_seconds: Option<f64>,
}

/// What `uninstall` removed.
#[derive(Debug, Clone, Serialize, Default)]
pub struct UninstallReport {
    /// `schema.table` of every table whose triggers were dropped.
    pub tables: Vec<String>,
    /// Whether the `bitacora_capture` schema itself was dropped.
    pub schema_dropped: bool,
    /// Undrained changes discarded (only with `force`).
    pub discarded: u64,
}

/// Installs (or upgrades, or re-configures) capture on `options.tables`.
pub async fn install(url: &str, options: &InstallOptions) -> Result<InstallReport, CaptureError> {
    if options.tables.is_empty() {
        return Err(CaptureError::Invalid(
            "name at least one table to capture (--table SCHEMA.TABLE)".into(),
        ));
    }
    let mut client = connect(url).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| CaptureError::pg("cannot begin", &e))?;
    lock(&tx).await?;
    let previous_version = installed_version(&tx).await?.unwrap_or(0);
    if previous_version > SCHEMA_VERSION {
        return Err(CaptureError::Invalid(format!(
            "capture schema version {previous_version} was installed by a newer bitacora; this \
             one knows up to version {SCHEMA_VERSION}: upgrade bitacora"
        )));
    }
    for (version, sql) in MIGRATIONS {
        if *version > previous_version {
            tx.batch_execute(sql)
                .await
                .map_err(|e| CaptureError::pg(format!("migration v{version} failed"), &e))?;
        }
    }
    tx.execute(
        "INSERT INTO bitacora_capture.meta (key, value) VALUES ('schema_version', $1) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&SCHEMA_VERSION.to_string()],
    )
    .await
    .map_err(|e| CaptureError::pg("cannot record the schema version", &e))?;
    let fresh_id = hex::encode(rand::random::<[u8; 16]>());
    tx.execute(
        "INSERT INTO bitacora_capture.meta (key, value) VALUES ('install_id', $1), \
         ('installed_at', now()::text) ON CONFLICT (key) DO NOTHING",
        &[&fresh_id],
    )
    .await
    .map_err(|e| CaptureError::pg("cannot record the install id", &e))?;
    let (inner, outer) = hmac_pads(&rand::random::<[u8; 32]>());
    tx.execute(
        "INSERT INTO bitacora_capture.mask_key (inner_pad, outer_pad) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
        &[&inner.as_slice(), &outer.as_slice()],
    )
    .await
    .map_err(|e| CaptureError::pg("cannot create the masking key", &e))?;
    tx.batch_execute(FUNCTIONS)
        .await
        .map_err(|e| CaptureError::pg("cannot create the trigger functions", &e))?;
    let install_id: String = tx
        .query_one(
            "SELECT value FROM bitacora_capture.meta WHERE key = 'install_id'",
            &[],
        )
        .await
        .map_err(|e| CaptureError::pg("cannot read the install id", &e))?
        .get(0);

    let mut resolved = Vec::new();
    for name in &options.tables {
        let table = resolve_table(&tx, name).await?;
        if !resolved.iter().any(|t: &Resolved| t.relid == table.relid) {
            resolved.push(table);
        }
    }
    let mut excluded: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut masked: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (list, into, flag) in [
        (&options.exclude_columns, &mut excluded, "--exclude-column"),
        (&options.mask_columns, &mut masked, "--mask-column"),
    ] {
        for spec in list {
            let (relid, column) = resolve_column(&tx, &resolved, spec, flag).await?;
            let cols = into.entry(relid).or_default();
            if !cols.contains(&column) {
                cols.push(column);
            }
        }
    }

    let mut tables = Vec::new();
    for table in &resolved {
        let excl = excluded.remove(&table.relid).unwrap_or_default();
        let mask = masked.remove(&table.relid).unwrap_or_default();
        if let Some(both) = excl.iter().find(|c| mask.contains(c)) {
            return Err(CaptureError::Invalid(format!(
                "column `{}.{both}` is both excluded and masked: choose one",
                table.qualified()
            )));
        }
        configure_table(&tx, table, &excl, &mask, options.full_rows).await?;
        tables.push(TableStatus {
            table: table.qualified(),
            key_columns: table.key_columns.clone(),
            excluded: excl,
            masked: mask,
            full_rows: options.full_rows,
            triggers_ok: true,
        });
    }
    tx.commit()
        .await
        .map_err(|e| CaptureError::pg("cannot commit the install", &e))?;
    Ok(InstallReport {
        schema_version: SCHEMA_VERSION,
        previous_version,
        install_id,
        tables,
    })
}

/// What is installed, on which tables, and how much is waiting to be drained.
pub async fn status(url: &str) -> Result<Status, CaptureError> {
    let client = connect(url).await?;
    let installed = client
        .query_one(
            "SELECT to_regclass('bitacora_capture.meta') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| CaptureError::pg("cannot read the catalog", &e))?
        .get::<_, bool>(0);
    if !installed {
        return Ok(Status {
            installed: false,
            schema_version: None,
            install_id: None,
            tables: Vec::new(),
            pending: 0,
            oldest_pending_seconds: None,
        });
    }
    let meta: BTreeMap<String, String> = client
        .query("SELECT key, value FROM bitacora_capture.meta", &[])
        .await
        .map_err(|e| CaptureError::pg("cannot read bitacora_capture.meta", &e))?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let rows = client
        .query(
            // tgtype bits: 4 insert, 8 delete, 16 update, 32 truncate. A table installed by
            // schema version 1 and not re-installed since has one row trigger for all three.
            "SELECT t.schema_name, t.table_name, t.key_columns, t.excluded, t.masked, t.full_rows, \
                    (SELECT coalesce(bit_or(g.tgtype::int) & 60 = 60, false) FROM pg_trigger g \
                      WHERE g.tgrelid = t.relid AND g.tgenabled <> 'D' \
                        AND g.tgname IN ($1, $2, $3)) \
             FROM bitacora_capture.tables t ORDER BY t.schema_name, t.table_name",
            &[&ROW_TRIGGER, &UPDATE_TRIGGER, &TRUNCATE_TRIGGER],
        )
        .await
        .map_err(|e| CaptureError::pg("cannot read bitacora_capture.tables", &e))?;
    let tables = rows
        .into_iter()
        .map(|r| TableStatus {
            table: format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)),
            key_columns: r.get(2),
            excluded: r.get(3),
            masked: r.get(4),
            full_rows: r.get(5),
            triggers_ok: r.get(6),
        })
        .collect();
    let (pending, oldest) = outbox_depth(&client).await?;
    Ok(Status {
        installed: true,
        schema_version: meta.get("schema_version").and_then(|v| v.parse().ok()),
        install_id: meta.get("install_id").cloned(),
        tables,
        pending,
        oldest_pending_seconds: oldest,
    })
}

/// Removes capture: from `tables` only (their triggers and configuration), or, with no
/// tables, everything (every trigger using the capture functions, then the schema). Refuses
/// while captured changes wait to be drained, unless `force`.
pub async fn uninstall(
    url: &str,
    tables: &[String],
    force: bool,
) -> Result<UninstallReport, CaptureError> {
    let mut client = connect(url).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| CaptureError::pg("cannot begin", &e))?;
    lock(&tx).await?;
    if installed_version(&tx).await?.is_none() {
        return Ok(UninstallReport::default());
    }
    let mut report = UninstallReport::default();
    if tables.is_empty() {
        let pending: i64 = tx
            .query_one("SELECT count(*) FROM bitacora_capture.outbox", &[])
            .await
            .map_err(|e| CaptureError::pg("cannot count the outbox", &e))?
            .get(0);
        if pending > 0 && !force {
            return Err(CaptureError::Invalid(format!(
                "{pending} captured changes have not been drained into bitacora yet; let \
                 `bitacora serve --capture-database-url` drain them, or pass --force to \
                 discard them"
            )));
        }
        report.discarded = pending as u64;
        // Every trigger that calls a capture function, configured or not.
        let triggers = tx
            .query(
                "SELECT g.tgname::text, n.nspname::text, c.relname::text \
                 FROM pg_trigger g \
                 JOIN pg_class c ON c.oid = g.tgrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_proc p ON p.oid = g.tgfoid \
                 JOIN pg_namespace pn ON pn.oid = p.pronamespace \
                 WHERE pn.nspname = 'bitacora_capture' AND NOT g.tgisinternal \
                 ORDER BY 2, 3, 1",
                &[],
            )
            .await
            .map_err(|e| CaptureError::pg("cannot list the capture triggers", &e))?;
        for t in &triggers {
            let (name, schema, table): (String, String, String) = (t.get(0), t.get(1), t.get(2));
            drop_trigger(&tx, &name, &schema, &table).await?;
            let qualified = format!("{schema}.{table}");
            if !report.tables.contains(&qualified) {
                report.tables.push(qualified);
            }
        }
        // Object by object, without CASCADE: if an application object depends on one of
        // ours (a view over the outbox), this fails and names it instead of dropping it.
        tx.batch_execute(
            "DROP FUNCTION bitacora_capture.capture_row(); \
             DROP FUNCTION bitacora_capture.capture_truncate(); \
             DROP FUNCTION bitacora_capture.mask_columns(jsonb, text[]); \
             DROP FUNCTION bitacora_capture.mask(jsonb, bytea, bytea); \
             DROP TABLE bitacora_capture.outbox; \
             DROP TABLE bitacora_capture.drain_state; \
             DROP TABLE bitacora_capture.tables; \
             DROP TABLE bitacora_capture.mask_key; \
             DROP TABLE bitacora_capture.meta; \
             DROP SCHEMA bitacora_capture",
        )
        .await
        .map_err(|e| CaptureError::pg("cannot drop the bitacora_capture schema", &e))?;
        report.schema_dropped = true;
    } else {
        for name in tables {
            let table = resolve_table(&tx, name).await?;
            for trigger in [ROW_TRIGGER, UPDATE_TRIGGER, TRUNCATE_TRIGGER] {
                drop_trigger(&tx, trigger, &table.schema, &table.name).await?;
            }
            tx.execute(
                "DELETE FROM bitacora_capture.tables WHERE relid = $1",
                &[&table.relid],
            )
            .await
            .map_err(|e| CaptureError::pg("cannot update bitacora_capture.tables", &e))?;
            report.tables.push(table.qualified());
        }
    }
    tx.commit()
        .await
        .map_err(|e| CaptureError::pg("cannot commit the uninstall", &e))?;
    Ok(report)
}

/// Rows waiting in the outbox (counted up to a million, so a huge backlog stays cheap to
/// measure) and the age in seconds of the oldest.
pub(crate) async fn outbox_depth(
    client: &tokio_postgres::Client,
) -> Result<(u64, Option<f64>), CaptureError> {
    let row = client
        .query_one(
            "SELECT count(*), \
                    extract(epoch FROM clock_timestamp() - min(occurred_at))::float8 \
             FROM (SELECT occurred_at FROM bitacora_capture.outbox ORDER BY id LIMIT 1000000) w",
            &[],
        )
        .await
        .map_err(|e| CaptureError::pg("cannot measure the outbox", &e))?;
    let count: i64 = row.get(0);
    let oldest: Option<f64> = row.get(1);
    Ok((count as u64, oldest.map(|s| s.max(0.0))))
}

/// HMAC-SHA256's two padded keys for `key` (RFC 2104): `key ⊕ ipad`, `key ⊕ opad`.
pub fn hmac_pads(key: &[u8]) -> ([u8; 64], [u8; 64]) {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = [0u8; 64];
    let mut outer = [0u8; 64];
    for i in 0..64 {
        inner[i] = block[i] ^ 0x36;
        outer[i] = block[i] ^ 0x5c;
    }
    (inner, outer)
}

async fn lock(tx: &Transaction<'_>) -> Result<(), CaptureError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK])
        .await
        .map_err(|e| CaptureError::pg("cannot take the install lock", &e))?;
    Ok(())
}

async fn installed_version(tx: &Transaction<'_>) -> Result<Option<i32>, CaptureError> {
    let exists: bool = tx
        .query_one(
            "SELECT to_regclass('bitacora_capture.meta') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| CaptureError::pg("cannot read the catalog", &e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = tx
        .query_opt(
            "SELECT value FROM bitacora_capture.meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(|e| CaptureError::pg("cannot read bitacora_capture.meta", &e))?;
    Ok(Some(
        row.and_then(|r| r.get::<_, String>(0).parse().ok())
            .unwrap_or(0),
    ))
}

struct Resolved {
    relid: u32,
    schema: String,
    name: String,
    key_columns: Vec<String>,
    columns: Vec<String>,
}

impl Resolved {
    fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

async fn resolve_table(tx: &Transaction<'_>, name: &str) -> Result<Resolved, CaptureError> {
    let row = tx
        .query_opt(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($1)",
            &[&name],
        )
        .await
        .map_err(|e| {
            // to_regclass raises on malformed names ("a.b.c.d", unbalanced quotes).
            CaptureError::Invalid(format!(
                "`{name}` is not a table name: {}",
                crate::pg_message(&e)
            ))
        })?
        .ok_or_else(|| {
            CaptureError::Invalid(format!(
                "table `{name}` does not exist (name it SCHEMA.TABLE; quote mixed-case names: \
                 '\"MyTable\"')"
            ))
        })?;
    let (relid, schema, table, kind): (u32, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if kind != "r" && kind != "p" {
        return Err(CaptureError::Invalid(format!(
            "`{schema}.{table}` is not a table (views and other relations cannot be captured)"
        )));
    }
    if schema == crate::SCHEMA {
        return Err(CaptureError::Invalid(
            "bitacora_capture's own tables cannot be captured".into(),
        ));
    }
    let key_columns: Option<Vec<String>> = tx
        .query_one(
            "SELECT array_agg(a.attname::text ORDER BY k.ord) \
             FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.indisprimary",
            &[&relid],
        )
        .await
        .map_err(|e| CaptureError::pg("cannot read the primary key", &e))?
        .get(0);
    let key_columns = key_columns.filter(|k| !k.is_empty()).ok_or_else(|| {
        CaptureError::Invalid(format!(
            "`{schema}.{table}` has no primary key: capture names each changed row by its \
             primary key; add one (any, composite included) and install again"
        ))
    })?;
    let columns = tx
        .query(
            "SELECT attname::text FROM pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&relid],
        )
        .await
        .map_err(|e| CaptureError::pg("cannot read the columns", &e))?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Resolved {
        relid,
        schema,
        name: table,
        key_columns,
        columns,
    })
}

/// `TABLE.COLUMN` or `SCHEMA.TABLE.COLUMN` (SQL identifier syntax) → one of `tables` and a
/// column of it that is not part of its key.
async fn resolve_column(
    tx: &Transaction<'_>,
    tables: &[Resolved],
    spec: &str,
    flag: &str,
) -> Result<(u32, String), CaptureError> {
    let parts: Vec<String> = tx
        .query_one("SELECT parse_ident($1)", &[&spec])
        .await
        .map_err(|e| {
            CaptureError::Invalid(format!(
                "{flag} `{spec}`: expected TABLE.COLUMN ({})",
                crate::pg_message(&e)
            ))
        })?
        .get(0);
    let (schema, table, column) = match parts.as_slice() {
        [t, c] => (None, t, c),
        [s, t, c] => (Some(s), t, c),
        _ => {
            return Err(CaptureError::Invalid(format!(
                "{flag} `{spec}`: expected TABLE.COLUMN or SCHEMA.TABLE.COLUMN"
            )));
        }
    };
    let matches: Vec<&Resolved> = tables
        .iter()
        .filter(|t| &t.name == table && schema.is_none_or(|s| &t.schema == s))
        .collect();
    let target = match matches.as_slice() {
        [one] => *one,
        [] => {
            return Err(CaptureError::Invalid(format!(
                "{flag} `{spec}`: table `{table}` is not among the --table tables of this install"
            )));
        }
        _ => {
            return Err(CaptureError::Invalid(format!(
                "{flag} `{spec}`: `{table}` is in several schemas; write SCHEMA.TABLE.COLUMN"
            )));
        }
    };
    if !target.columns.contains(column) {
        return Err(CaptureError::Invalid(format!(
            "{flag} `{spec}`: `{}` has no column `{column}`",
            target.qualified()
        )));
    }
    if target.key_columns.contains(column) {
        return Err(CaptureError::Invalid(format!(
            "{flag} `{spec}`: `{column}` is part of the primary key of `{}`, which names the \
             row in every event; it cannot be excluded or masked",
            target.qualified()
        )));
    }
    Ok((target.relid, column.clone()))
}

async fn configure_table(
    tx: &Transaction<'_>,
    table: &Resolved,
    excluded: &[String],
    masked: &[String],
    full_rows: bool,
) -> Result<(), CaptureError> {
    let fail = |e: tokio_postgres::Error| {
        CaptureError::pg(format!("cannot configure `{}`", table.qualified()), &e)
    };
    // A table dropped and created again under the same name has a new oid.
    tx.execute(
        "DELETE FROM bitacora_capture.tables \
         WHERE (schema_name = $1 AND table_name = $2 AND relid <> $3) \
            OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = relid)",
        &[&table.schema, &table.name, &table.relid],
    )
    .await
    .map_err(fail)?;
    tx.execute(
        "INSERT INTO bitacora_capture.tables \
            (relid, schema_name, table_name, key_columns, excluded, masked, full_rows) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (relid) DO UPDATE SET schema_name = EXCLUDED.schema_name, \
            table_name = EXCLUDED.table_name, key_columns = EXCLUDED.key_columns, \
            excluded = EXCLUDED.excluded, masked = EXCLUDED.masked, \
            full_rows = EXCLUDED.full_rows, installed_at = now()",
        &[
            &table.relid,
            &table.schema,
            &table.name,
            &table.key_columns,
            &excluded,
            &masked,
            &full_rows,
        ],
    )
    .await
    .map_err(fail)?;
    // PostgreSQL quotes the identifiers and the trigger arguments itself.
    //
    // UPDATE has a trigger of its own so that it can say `WHEN (OLD *<> NEW)`: an update that
    // leaves the row's binary image as it was (an ORM saving an unchanged object) does not even
    // queue the trigger. `*<>` (record_image_ne) works for every column type, unlike `IS
    // DISTINCT FROM`, which fails on types without equality (json, point); and equal images
    // always have equal JSON, so it never skips a change the trigger would record. The
    // trigger still compares the rows' JSON without the excluded columns.
    let ddl: String = tx
        .query_one(
            "SELECT format(\
               'DROP TRIGGER IF EXISTS %3$I ON %1$I.%2$I; \
                CREATE TRIGGER %3$I AFTER INSERT OR DELETE ON %1$I.%2$I \
                  FOR EACH ROW EXECUTE FUNCTION bitacora_capture.capture_row(%6$L, %7$L, %8$L, %9$L); \
                DROP TRIGGER IF EXISTS %4$I ON %1$I.%2$I; \
                CREATE TRIGGER %4$I AFTER UPDATE ON %1$I.%2$I \
                  FOR EACH ROW WHEN (OLD *<> NEW) \
                  EXECUTE FUNCTION bitacora_capture.capture_row(%6$L, %7$L, %8$L, %9$L); \
                DROP TRIGGER IF EXISTS %5$I ON %1$I.%2$I; \
                CREATE TRIGGER %5$I AFTER TRUNCATE ON %1$I.%2$I \
                  FOR EACH STATEMENT EXECUTE FUNCTION bitacora_capture.capture_truncate()', \
               $1::text, $2::text, $3::text, $4::text, $5::text, $6::text[]::text, \
               $7::text[]::text, $8::text[]::text, $9::text)",
            &[
                &table.schema,
                &table.name,
                &ROW_TRIGGER,
                &UPDATE_TRIGGER,
                &TRUNCATE_TRIGGER,
                &table.key_columns,
                &excluded,
                &masked,
                &if full_rows { "t" } else { "f" },
            ],
        )
        .await
        .map_err(fail)?
        .get(0);
    tx.batch_execute(&ddl).await.map_err(fail)?;
    Ok(())
}

async fn drop_trigger(
    tx: &Transaction<'_>,
    trigger: &str,
    schema: &str,
    table: &str,
) -> Result<(), CaptureError> {
    let ddl: String = tx
        .query_one(
            "SELECT format('DROP TRIGGER IF EXISTS %I ON %I.%I', $1::text, $2::text, $3::text)",
            &[&trigger, &schema, &table],
        )
        .await
        .map_err(|e| CaptureError::pg("cannot drop a trigger", &e))?
        .get(0);
    tx.batch_execute(&ddl)
        .await
        .map_err(|e| CaptureError::pg(format!("cannot drop trigger on `{schema}.{table}`"), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_pads_follow_rfc_2104() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let (inner, outer) = hmac_pads(b"Jefe");
        let mut h = sha2::Sha256::new();
        h.update(inner);
        h.update(b"what do ya want for nothing?");
        let inner_hash = h.finalize();
        let mut h = sha2::Sha256::new();
        h.update(outer);
        h.update(inner_hash);
        assert_eq!(
            hex::encode(h.finalize()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
