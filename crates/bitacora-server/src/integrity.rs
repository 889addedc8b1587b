//! The checkpoint keys as the configuration names them (`[integrity]`), for `serve` and for
//! the CLI commands that verify or export bundles.
//!
//! `serve` creates the signing key file on first start; everything else only reads it, so a
//! typo in `--signing-key-file` given to `bitacora verify` is an error, not a new key.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use bitacora_core::checkpoint::NoteVerifier;
use bitacora_log::signing::parse_trusted_keys;
use bitacora_log::{LogKeys, SigningKeyFile};

use crate::config::Config;

/// The signing key file's path (see [`Config::signing_key_path`]).
pub fn key_path(config: &Config) -> anyhow::Result<PathBuf> {
    Ok(config.signing_key_path()?)
}

/// Loads the signing key, creating it (mode 0600) when there is none, and the retired keys.
pub fn load_or_create_keys(config: &Config) -> anyhow::Result<LogKeys> {
    let path = key_path(config)?;
    LogKeys::load(
        &path,
        &config.integrity.signing_key_name,
        &config.integrity.retired_keys,
    )
    .with_context(|| {
        format!(
            "cannot load the checkpoint signing key (set its file with --signing-key-file, \
             BITACORA_SIGNING_KEY_FILE or `integrity.signing_key_file`; now `{}`)",
            path.display()
        )
    })
}

/// Loads the existing signing key and the retired keys; never creates a key.
pub fn load_existing_keys(config: &Config) -> anyhow::Result<LogKeys> {
    let path = key_path(config)?;
    if !path.exists() {
        bail!(
            "there is no checkpoint signing key at `{}`: `bitacora serve` creates it on first \
             start; name the right file with --signing-key-file or BITACORA_SIGNING_KEY_FILE",
            path.display()
        );
    }
    let signer = SigningKeyFile::load(&path)?;
    let retired = parse_trusted_keys(&config.integrity.retired_keys)
        .context("a key in `integrity.retired_keys` is unusable")?;
    Ok(LogKeys::new(signer, retired))
}

/// Verifier keys given on the command line (`--trusted-key`): key strings or files of them.
pub fn parse_verifiers(entries: &[String]) -> anyhow::Result<Vec<NoteVerifier>> {
    Ok(parse_trusted_keys(entries)?)
}

/// The text of `GET /v1/log/public-key`: the current verifier key on the first line, then
/// the retired ones still trusted, one a line.
pub fn public_key_text(keys: &LogKeys) -> String {
    let mut out = String::new();
    for v in keys.verifiers() {
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// Logs what witnessing will do with `policy`: which witnesses it submits to, and the
/// problems an operator should fix (a witness without a URL is never asked; a policy that
/// names none of this server's logs makes every `verify --policy` fail).
///
/// A policy's `log` lines name each log's verifier key, whose name is the log's origin
/// (`GET /v1/log` serves it as `verifier_key`). A line with the key under the key file's own
/// name only checks checkpoints that carry the legacy signature line.
pub fn describe_witnessing(
    policy: &bitacora_core::witness::Policy,
    keys: &LogKeys,
    origin_prefix: &str,
) {
    for (name, _, url) in policy.witness_urls() {
        match url {
            Some(url) => {
                tracing::info!(witness = %name, %url, "submitting checkpoints to a witness")
            }
            None => tracing::warn!(
                witness = %name,
                "the witness policy gives no URL for this witness: its cosignatures are never asked for"
            ),
        }
    }
    let key = keys.signer().verifier();
    let ours: Vec<&NoteVerifier> = policy
        .logs()
        .iter()
        .filter(|l| l.verifying_key() == key.verifying_key())
        .collect();
    if ours.is_empty() {
        let example = keys
            .verifier_for(&format!("{origin_prefix}/TENANT"))
            .map(|k| k.to_string())
            .unwrap_or_default();
        tracing::warn!(
            key = %key,
            "the witness policy has no `log` line with this server's checkpoint key: add one per \
             tenant with the log's `verifier_key` from `GET /v1/log` (e.g. `log {example}` for \
             tenant TENANT) so that verifiers using the policy accept its checkpoints"
        );
    } else if ours.iter().all(|l| l.name() == key.name()) {
        tracing::warn!(
            key = %key,
            "the witness policy names this server's key only under the key file's name: new logs \
             sign under their origin as key name, so add each tenant's `verifier_key` from \
             `GET /v1/log` as a `log` line"
        );
    }
}

/// The tenant's checkpoint `note` with the stored witness cosignatures of its `size`
/// appended: what every endpoint serving a checkpoint serves (CONTRACT §11). The
/// cosignatures were verified against the policy's keys before they were stored.
pub async fn cosigned_note(
    store: &dyn bitacora_store::Store,
    tenant: &bitacora_core::TenantName,
    checkpoint: &bitacora_store::StoredCheckpoint,
) -> Result<String, bitacora_store::StoreError> {
    let cosignatures = store.cosignatures(tenant, checkpoint.size).await?;
    let mut note = checkpoint.note.clone();
    for c in cosignatures {
        note.push_str(&c.line);
        note.push('\n');
    }
    Ok(note)
}

/// Adds `more` to `verifiers`, skipping keys already there (a `--trusted-key` or the key file
/// that a policy's `log` line repeats): two entries for one key make a note ambiguous.
pub fn add_verifiers(verifiers: &mut Vec<NoteVerifier>, more: &[NoteVerifier]) {
    for v in more {
        if !verifiers.iter().any(|k| {
            k.name() == v.name()
                && k.key_id() == v.key_id()
                && k.verifying_key() == v.verifying_key()
        }) {
            verifiers.push(v.clone());
        }
    }
}
