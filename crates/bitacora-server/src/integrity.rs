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
