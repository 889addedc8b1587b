//! The checkpoint signing key and the verifier keys trusted besides it.
//!
//! # Why a file outside the store
//!
//! A checkpoint is only evidence if whoever can edit the database cannot also sign: an
//! attacker with the store and the key could rewrite history and re-sign it. So the key
//! lives in its own file (config `signing_key_file`), created on first start with mode 0600
//! and refused if group or others can read it. Back it up separately from the data.
//!
//! The file holds one line in the Go `note` private-key format,
//! `PRIVATE+KEY+<name>+<key id>+<base64>` ([`NoteSigner::to_private_key`]), so Go tooling
//! (`golang.org/x/mod/sumdb/note`) can read it too.
//!
//! # One key, one key name per log
//!
//! One Ed25519 key signs every tenant's checkpoints, each under the key name the C2SP specs
//! and witness implementations expect: the log's origin (`<origin_prefix>/<tenant>`). A
//! witness or a `tlog-policy` lists a log as `log <vkey>` and finds a checkpoint's key by
//! its origin, so each tenant has its own verifier key string
//! ([`LogKeys::verifier_for`], served by `GET /v1/log` as `verifier_key`); the key id
//! differs by name, the key does not.
//!
//! The key file keeps its own name (`integrity.signing_key_name`, default `bitacora`), and
//! `GET /v1/log/public-key` serves the key under that name, as before. Checkpoints signed
//! before per-origin names were signed under it, and keep verifying with it: bitacora's
//! verifiers trust a key under its own name and under the origin of the log being checked
//! (`bitacora_core::checkpoint::log_verifiers`). During the transition, new checkpoints of
//! a log whose latest checkpoint carries a signature under the key file's name carry that
//! signature too (`integrity.legacy_key_name_signatures`, on by default), so verifiers and
//! witnesses configured with the old key keep working until they move to the per-log key.
//!
//! # Retired keys
//!
//! After a key rotation (see the crate docs) the old key's verifier key stays trusted, so
//! checkpoints it signed still verify. [`LogKeys`] is the signer plus those retired keys.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bitacora_core::checkpoint::{NoteError, NoteSigner, NoteVerifier, is_valid_key_name};
use rand::RngCore as _;

/// The key name used when the configuration names none.
pub const DEFAULT_KEY_NAME: &str = "bitacora";

/// A problem with a key file or a key string; the message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {action} signing key file {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "signing key file {} is readable by group or others (mode {mode:o}); \
         run `chmod 600 {}` (and check who may have copied it)",
        path.display(), path.display()
    )]
    Permissive { path: PathBuf, mode: u32 },
    #[error("signing key file {} is not a note private key: {source}", path.display())]
    Malformed { path: PathBuf, source: NoteError },
    #[error(
        "signing key file {} holds key `{found}` but the configuration names `{expected}`; \
         keep the name, or rotate to a new key file (see key rotation in the docs)",
        path.display()
    )]
    NameMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("`{0}` is not a valid key name (no spaces, `+` or control characters)")]
    InvalidName(String),
    #[error(
        "trusted key `{source_text}` is neither a verifier key nor a readable key file: {reason}"
    )]
    BadTrustedKey { source_text: String, reason: String },
}

/// The signing key file.
#[derive(Debug)]
pub struct SigningKeyFile;

impl SigningKeyFile {
    /// Loads the key at `path`, or creates it (with a fresh Ed25519 key named `name`, mode
    /// 0600, parent directories created) when there is none.
    ///
    /// An existing file must not be readable by group or others, and must hold a key named
    /// `name`.
    pub fn load_or_create(path: &Path, name: &str) -> Result<NoteSigner, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::InvalidName(name.to_owned()));
        }
        match Self::load(path) {
            Ok(signer) => {
                if signer.name() != name {
                    return Err(KeyError::NameMismatch {
                        path: path.to_owned(),
                        expected: name.to_owned(),
                        found: signer.name().to_owned(),
                    });
                }
                Ok(signer)
            }
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                match Self::create(path, name) {
                    // Another process created it first: use theirs.
                    Err(KeyError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        Self::load_or_create(path, name)
                    }
                    other => other,
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Loads an existing key file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<NoteSigner, KeyError> {
        let io = |action| {
            let path = path.to_owned();
            move |source| KeyError::Io {
                action,
                path,
                source,
            }
        };
        let meta = std::fs::metadata(path).map_err(io("read"))?;
        check_private(path, &meta)?;
        let text = std::fs::read_to_string(path).map_err(io("read"))?;
        NoteSigner::from_private_key(&text).map_err(|source| KeyError::Malformed {
            path: path.to_owned(),
            source,
        })
    }

    /// Creates a new key file; fails if one exists.
    pub fn create(path: &Path, name: &str) -> Result<NoteSigner, KeyError> {
        let io = |action| {
            let path = path.to_owned();
            move |source| KeyError::Io {
                action,
                path,
                source,
            }
        };
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let signer =
            NoteSigner::from_seed(name, seed).map_err(|_| KeyError::InvalidName(name.into()))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io("create the directory of"))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io("create"))?;
        let mut line = signer.to_private_key();
        line.push('\n');
        file.write_all(line.as_bytes()).map_err(io("write"))?;
        file.sync_all().map_err(io("write"))?;
        tracing::info!(
            key.name = signer.name(),
            key.id = format_args!("{:08x}", signer.key_id()),
            path = %path.display(),
            "created a new checkpoint signing key"
        );
        Ok(signer)
    }
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissive {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), KeyError> {
    Ok(())
}

/// The signing key and the retired verifier keys that are still trusted.
#[derive(Debug, Clone)]
pub struct LogKeys {
    signer: NoteSigner,
    retired: Vec<NoteVerifier>,
}

impl LogKeys {
    pub fn new(signer: NoteSigner, retired: Vec<NoteVerifier>) -> Self {
        let current = signer.verifier();
        let mut unique: Vec<NoteVerifier> = Vec::with_capacity(retired.len());
        for v in retired {
            // A verifier listed twice (or the current key listed as retired) would make
            // signature lookup ambiguous; keep each key once.
            if v != current && !unique.contains(&v) {
                unique.push(v);
            }
        }
        Self {
            signer,
            retired: unique,
        }
    }

    /// Loads (or creates) the signing key file and the retired keys. Each `retired` entry
    /// is a verifier key string (`name+id+base64`), or the path of a file holding verifier
    /// keys one per line (blank lines and `#` comments ignored) or an old private key file
    /// (only its public half is used).
    pub fn load(path: &Path, name: &str, retired: &[String]) -> Result<Self, KeyError> {
        let signer = SigningKeyFile::load_or_create(path, name)?;
        let retired = parse_trusted_keys(retired)?;
        Ok(Self::new(signer, retired))
    }

    pub fn signer(&self) -> &NoteSigner {
        &self.signer
    }

    /// The key of the commit seals the stores write (see `bitacora_core::seal`), derived
    /// from the signing key.
    pub fn commit_key(&self) -> bitacora_core::seal::CommitKey {
        self.signer.commit_key()
    }

    /// The current verifier key string (what `GET /v1/log/public-key` serves).
    pub fn public_key(&self) -> String {
        self.signer.verifier().to_string()
    }

    pub fn retired(&self) -> &[NoteVerifier] {
        &self.retired
    }

    /// Every trusted verifier: the current key first, then the retired ones, each under its
    /// own name.
    pub fn verifiers(&self) -> Vec<NoteVerifier> {
        let mut out = Vec::with_capacity(1 + self.retired.len());
        out.push(self.signer.verifier());
        out.extend(self.retired.iter().cloned());
        out
    }

    /// The signer of the log `origin`: the signing key under the origin's name.
    pub fn signer_for(&self, origin: &str) -> Result<NoteSigner, NoteError> {
        self.signer.with_name(origin)
    }

    /// The verifier key of the log `origin` (`<origin>+<key id>+<key>`): what a witness or a
    /// `tlog-policy` `log` line names the log by.
    pub fn verifier_for(&self, origin: &str) -> Result<NoteVerifier, NoteError> {
        self.signer.verifier().with_name(origin)
    }

    /// Every verifier the checkpoints of the log `origin` verify with: each trusted key under
    /// the origin's name first (the current key's is [`LogKeys::verifier_for`]), then under
    /// its own name (checkpoints from before per-origin names, and legacy signature lines).
    pub fn verifiers_for(&self, origin: &str) -> Vec<NoteVerifier> {
        bitacora_core::checkpoint::log_verifiers(origin, &self.verifiers())
    }
}

/// Parses trusted verifier keys: each entry a key string or a file of them (see
/// [`LogKeys::load`]).
pub fn parse_trusted_keys(entries: &[String]) -> Result<Vec<NoteVerifier>, KeyError> {
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.trim();
        if let Ok(v) = NoteVerifier::parse(entry) {
            out.push(v);
            continue;
        }
        let bad = |reason: String| KeyError::BadTrustedKey {
            source_text: entry.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(entry).map_err(|e| bad(e.to_string()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let v = if line.starts_with("PRIVATE+KEY+") {
                NoteSigner::from_private_key(line).map(|s| s.verifier())
            } else {
                NoteVerifier::parse(line)
            };
            out.push(v.map_err(|e| bad(format!("line {}: {e}", n + 1)))?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_key_file_once_and_reloads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/nested/signing.key");
        let a = SigningKeyFile::load_or_create(&path, DEFAULT_KEY_NAME).unwrap();
        let b = SigningKeyFile::load_or_create(&path, DEFAULT_KEY_NAME).unwrap();
        assert_eq!(a.verifier(), b.verifier());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("PRIVATE+KEY+bitacora+"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let err = SigningKeyFile::load_or_create(&path, "other").unwrap_err();
        assert!(matches!(err, KeyError::NameMismatch { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        SigningKeyFile::load_or_create(&path, "bitacora").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKeyFile::load_or_create(&path, "bitacora").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("readable by group or others"), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
    }

    #[test]
    fn retired_keys_from_strings_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let old = NoteSigner::from_seed("bitacora", [7; 32]).unwrap();
        let older = NoteSigner::from_seed("bitacora", [8; 32]).unwrap();
        let file = dir.path().join("retired.txt");
        std::fs::write(&file, format!("# old keys\n\n{}\n", older.verifier())).unwrap();
        let keys = LogKeys::load(
            &dir.path().join("k"),
            "bitacora",
            &[
                old.verifier().to_string(),
                file.display().to_string(),
                old.verifier().to_string(),
            ],
        )
        .unwrap();
        assert_eq!(keys.retired(), &[old.verifier(), older.verifier()]);
        assert_eq!(keys.verifiers().len(), 3);
        assert_eq!(keys.verifiers()[0].to_string(), keys.public_key());
        let err = parse_trusted_keys(&["nope+1234".into()]).unwrap_err();
        assert!(err.to_string().contains("nope+1234"), "{err}");

        // Per log: the current key under the origin's name first, then every trusted key
        // under the origin's name, then under their own.
        let origin = "audit.example.com/bitacora/acme";
        let vkey = keys.verifier_for(origin).unwrap();
        assert!(
            vkey.to_string().starts_with(&format!("{origin}+")),
            "{vkey}"
        );
        assert_eq!(vkey.verifying_key(), keys.verifiers()[0].verifying_key());
        assert_ne!(vkey.key_id(), keys.verifiers()[0].key_id());
        assert_eq!(keys.signer_for(origin).unwrap().verifier(), vkey);
        let all = keys.verifiers_for(origin);
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], vkey);
        assert_eq!(all[1], old.verifier().with_name(origin).unwrap());
        assert_eq!(&all[3..], &keys.verifiers()[..]);
    }
}
