//! Signed checkpoints: C2SP `tlog-checkpoint` bodies in C2SP `signed-note`s, with Ed25519.
//!
//! # Why these formats
//!
//! A checkpoint is the log's signed promise "tenant T's log had N events and this root
//! hash". bitacora uses the formats of the transparency-log ecosystem (Go's sumdb, Sigstore,
//! Trillian-Tessera, witnesses) rather than its own, so that a checkpoint can be checked
//! with tools nobody here wrote:
//!
//! ```text
//! bitacora/acme
//! 1042
//! <base64 of the 32-byte root hash>
//!
//! — bitacora/acme <base64 of the 4-byte key id and the 64-byte Ed25519 signature>
//! ```
//!
//! - The body ([`Checkpoint`]) is the origin (`bitacora/<tenant>`, [`tenant_origin`]), the
//!   tree size in decimal and the base64 RFC 6962 root, each on its own line, then optional
//!   extension lines (<https://c2sp.org/tlog-checkpoint>).
//! - The note ([`sign_note`], [`verify_note`]) is the body, a blank line, and one line per
//!   signature: `— <key name> base64(key id || signature)`, where the em dash is U+2014 and
//!   the key id is the first four bytes of `SHA-256(name || "\n" || 0x01 || public key)`
//!   (<https://c2sp.org/signed-note>). The parser follows the spec and the Go reference
//!   implementation (`golang.org/x/mod/sumdb/note`) rule for rule, because it reads notes
//!   from untrusted bundles: it never panics, and it rejects rather than guesses.
//!
//! # Keys
//!
//! Keys are written in the Go `note` encodings, so Go tooling can read them:
//!
//! - verifier key ([`NoteVerifier`], what `GET /v1/log/public-key` serves):
//!   `<name>+<8 hex digits key id>+<base64(0x01 || 32-byte Ed25519 public key)>`;
//! - private key file ([`NoteSigner::to_private_key`], [`NoteSigner::from_private_key`]):
//!   one line `PRIVATE+KEY+<name>+<8 hex digits key id>+<base64(0x01 || 32-byte seed)>`,
//!   optionally followed by a newline. The file is the secret: keep it mode 0600, outside
//!   the store.
//!
//! The key name is part of the key id. One Ed25519 key can sign every tenant's checkpoints
//! under the tenant's own origin as key name ([`NoteSigner::with_name`]), which is what
//! tlog-checkpoint recommends (the key name matches the origin line).
//!
//! # Key rotation
//!
//! A verifier ignores signatures from keys it does not know and accepts a note as soon as
//! one known key's signature verifies. So rotation needs no flag day: sign with the old and
//! the new key together for a while ([`sign_note`] takes several signers), publish the new
//! verifier key, and keep the old verifier key in verifiers' lists for as long as old
//! checkpoints must be checked.
//!
//! This module does no I/O: generating a key takes the 32 random seed bytes from the caller,
//! and key files are read and written by the caller.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::canonical::Hash;

/// Origin lines of bitacora checkpoints are `bitacora/<tenant>`.
pub const ORIGIN_PREFIX: &str = "bitacora/";

/// The signed-note signature type byte for Ed25519.
pub const ALG_ED25519: u8 = 0x01;

/// At most this many signature lines are read from a note (the Go reference limit; the spec
/// asks verifiers to accept at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// What starts every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// The checkpoint origin of a tenant's log.
pub fn tenant_origin(tenant: &str) -> String {
    format!("{ORIGIN_PREFIX}{tenant}")
}

/// A problem with a checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    #[error("a checkpoint body must end with a newline")]
    MissingFinalNewline,
    #[error("a checkpoint body must not contain control characters")]
    ControlCharacter,
    #[error("a checkpoint body needs an origin, a tree size and a root hash line")]
    TooFewLines,
    #[error("the checkpoint origin is empty or spans lines")]
    BadOrigin,
    #[error("the checkpoint tree size is not a decimal number without leading zeroes")]
    BadSize,
    #[error("the checkpoint root hash is not the base64 of 32 bytes")]
    BadRootHash,
    #[error("checkpoint extension lines must be non-empty single lines")]
    BadExtension,
    #[error("the checkpoint is for origin {found:?}, not {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

/// A problem with a signed note or a note key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("malformed note key: {0}")]
    MalformedKey(&'static str),
    #[error("key names must be non-empty, without spaces, plus signs or control characters")]
    InvalidName,
    #[error("note key id {found:08x} does not match the key (expected {expected:08x})")]
    KeyIdMismatch { expected: u32, found: u32 },
    #[error("unsupported note signature type {0:#04x}")]
    UnsupportedAlgorithm(u8),
    #[error("invalid signature for key {name}+{key_id:08x}")]
    InvalidSignature { name: String, key_id: u32 },
    #[error("ambiguous key {name}+{key_id:08x}: several known keys share this name and id")]
    AmbiguousKey { name: String, key_id: u32 },
    #[error("note has no verifiable signatures")]
    NoVerifiedSignature,
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// A tree head: the body of a checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which log: `bitacora/<tenant>` for bitacora's logs.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root hash of the first `size` leaves.
    pub root: Hash,
    /// Opaque extra lines (the spec discourages them; bitacora writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Checks that [`Checkpoint::to_body`] will produce a body that parses back to `self`.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.is_empty() || self.origin.chars().any(char::is_control) {
            return Err(CheckpointError::BadOrigin);
        }
        for ext in &self.extensions {
            if ext.is_empty() || ext.chars().any(char::is_control) {
                return Err(CheckpointError::BadExtension);
            }
        }
        Ok(())
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n`, then each extension line.
    /// Only meaningful for a checkpoint that [`validate`](Checkpoint::validate)s.
    pub fn to_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for ext in &self.extensions {
            body.push_str(ext);
            body.push('\n');
        }
        body
    }

    /// Parses a checkpoint body (the text of a verified note).
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        if body.chars().any(|c| c.is_control() && c != '\n') {
            return Err(CheckpointError::ControlCharacter);
        }
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::TooFewLines);
        };
        if origin.is_empty() {
            return Err(CheckpointError::BadOrigin);
        }
        let size = parse_tree_size(size).ok_or(CheckpointError::BadSize)?;
        let root = parse_root(root).ok_or(CheckpointError::BadRootHash)?;
        let extensions = lines
            .map(|line| {
                if line.is_empty() {
                    Err(CheckpointError::BadExtension)
                } else {
                    Ok(line.to_owned())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// ASCII decimal, no sign, no leading zero unless the size is `0`.
fn parse_tree_size(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn parse_root(s: &str) -> Option<Hash> {
    // 32 bytes are always 44 base64 characters; checking first bounds the work.
    if s.len() != 44 {
        return None;
    }
    BASE64.decode(s).ok()?.try_into().ok()
}

/// Whether `name` may be a note key name: non-empty, no Unicode spaces, no `+`, and (a
/// stricter reading than Go's, since a note may not contain them anyway) no control
/// characters.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The signed-note key id: the first four bytes, big-endian, of
/// `SHA-256(name || "\n" || type byte || public key)`; `typed_key` is the type byte and the
/// key together.
pub fn key_id(name: &str, typed_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(typed_key);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn ed25519_key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut typed = [0u8; 33];
    typed[0] = ALG_ED25519;
    typed[1..].copy_from_slice(key.as_bytes());
    key_id(name, &typed)
}

/// Parses exactly eight hex digits (Go's `ParseUint(s, 16, 32)` with a length check; Rust's
/// `from_str_radix` alone would also take a sign).
fn parse_key_id(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Splits `name+<hex id>+<base64>` (the base64 may itself contain `+`).
pub(crate) fn split_key(s: &str) -> Option<(&str, u32, Vec<u8>)> {
    let (name, rest) = s.split_once('+')?;
    let (id, b64) = rest.split_once('+')?;
    let id = parse_key_id(id)?;
    let key = BASE64.decode(b64).ok()?;
    Some((name, id, key))
}

/// An Ed25519 verifier key for signed notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn new(name: impl Into<String>, key: VerifyingKey) -> Result<Self, NoteError> {
        let name = name.into();
        if !is_valid_key_name(&name) {
            return Err(NoteError::InvalidName);
        }
        let key_id = ed25519_key_id(&name, &key);
        Ok(Self { name, key_id, key })
    }

    /// Parses `<name>+<hex key id>+<base64(0x01 || public key)>`, checking the key id.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, typed) =
            split_key(vkey).ok_or(NoteError::MalformedKey("expected name+id+key"))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidName);
        }
        let Some((&alg, key)) = typed.split_first() else {
            return Err(NoteError::MalformedKey("empty key"));
        };
        let expected = key_id(name, &typed);
        if id != expected {
            return Err(NoteError::KeyIdMismatch {
                expected,
                found: id,
            });
        }
        if alg != ALG_ED25519 {
            return Err(NoteError::UnsupportedAlgorithm(alg));
        }
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| NoteError::MalformedKey("an Ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(key)
            .map_err(|_| NoteError::MalformedKey("not an Ed25519 public key"))?;
        Ok(Self {
            name: name.to_owned(),
            key_id: id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The same key under another name (e.g. a log's origin); the key id changes with it.
    pub fn with_name(&self, name: impl Into<String>) -> Result<Self, NoteError> {
        Self::new(name, self.key)
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match Signature::from_slice(sig) {
            Ok(sig) => self.key.verify_strict(msg, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

/// The verifier key string, `<name>+<hex key id>+<base64(0x01 || public key)>`.
impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut typed = [0u8; 33];
        typed[0] = ALG_ED25519;
        typed[1..].copy_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            BASE64.encode(typed)
        )
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An Ed25519 signing key with its note key name.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

/// Never prints the key.
impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    pub fn new(name: impl Into<String>, key: SigningKey) -> Result<Self, NoteError> {
        let name = name.into();
        if !is_valid_key_name(&name) {
            return Err(NoteError::InvalidName);
        }
        let key_id = ed25519_key_id(&name, &key.verifying_key());
        Ok(Self { name, key_id, key })
    }

    /// A signer from a 32-byte Ed25519 seed. To generate a key, take the seed from the
    /// operating system's CSPRNG (e.g. `rand::rngs::OsRng` or `getrandom`).
    pub fn from_seed(name: impl Into<String>, seed: [u8; 32]) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::from_bytes(&seed))
    }

    /// The same key under another name (e.g. a tenant's origin); the key id changes with it.
    pub fn with_name(&self, name: impl Into<String>) -> Result<Self, NoteError> {
        Self::new(name, self.key.clone())
    }

    /// Parses a private key in the Go `note` format,
    /// `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>`, as read from a key
    /// file: one trailing newline (`\n` or `\r\n`) is allowed. The key id must match.
    pub fn from_private_key(skey: &str) -> Result<Self, NoteError> {
        let skey = skey
            .strip_suffix('\n')
            .map(|s| s.strip_suffix('\r').unwrap_or(s))
            .unwrap_or(skey);
        let rest = skey
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or(NoteError::MalformedKey("expected PRIVATE+KEY+name+id+key"))?;
        let (name, id, typed) =
            split_key(rest).ok_or(NoteError::MalformedKey("expected PRIVATE+KEY+name+id+key"))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidName);
        }
        let Some((&alg, seed)) = typed.split_first() else {
            return Err(NoteError::MalformedKey("empty key"));
        };
        if alg != ALG_ED25519 {
            return Err(NoteError::UnsupportedAlgorithm(alg));
        }
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| NoteError::MalformedKey("an Ed25519 seed is 32 bytes"))?;
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != id {
            return Err(NoteError::KeyIdMismatch {
                expected: signer.key_id,
                found: id,
            });
        }
        Ok(signer)
    }

    /// The private key in the Go `note` format (no trailing newline). This string is the
    /// secret.
    pub fn to_private_key(&self) -> String {
        let mut typed = [0u8; 33];
        typed[0] = ALG_ED25519;
        typed[1..].copy_from_slice(self.key.as_bytes());
        format!(
            "{PRIVATE_KEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            BASE64.encode(typed)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The key of this signer's commit seals ([`crate::seal`]): derived from the Ed25519
    /// seed, so whoever can sign checkpoints can seal commits and nobody else can, and it
    /// never needs a file or a store row of its own.
    pub fn commit_key(&self) -> crate::seal::CommitKey {
        crate::seal::CommitKey::derive(self.key.as_bytes())
    }

    /// The matching verifier; its `to_string()` is the verifier key to publish.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` (which must end in a newline) as a note with this key alone.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        sign_note(text, &[self])
    }

    /// Signs a checkpoint body as a note.
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, NoteError> {
        checkpoint.validate()?;
        self.sign(&checkpoint.to_body())
    }

    fn signature_line(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(blob))
    }
}

/// Checks that `text` can be the text of a note: ends in a newline, no other control
/// characters.
fn check_note_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text must end with a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character in the text"));
    }
    Ok(())
}

/// Signs `text` with every signer, in order: `text`, a blank line, one signature line each.
pub fn sign_note(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    check_note_text(text)?;
    if signers.is_empty() {
        return Err(NoteError::Malformed("a note needs at least one signature"));
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(NoteError::Malformed("too many signatures"));
    }
    let mut note = String::with_capacity(text.len() + 1 + signers.len() * 128);
    note.push_str(text);
    note.push('\n');
    for signer in signers {
        note.push_str(&signer.signature_line(text));
    }
    Ok(note)
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The signature bytes after the key id.
    pub signature: Vec<u8>,
}

/// A note split into its text and signatures, none of them checked yet.
///
/// The spec says the text MUST be ignored unless a trusted key signed it: use
/// [`verify_note`] unless you only need to see who signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The text, including its final newline.
    pub text: String,
    /// Every signature line, in order, duplicates included.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Splits a note, rejecting anything the signed-note spec does not allow.
    pub fn parse(note: &[u8]) -> Result<Self, NoteError> {
        let note = std::str::from_utf8(note).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed("control character"));
        }
        // The text ends at the last blank line; signature lines never contain one.
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::Malformed(
                "the signatures must be non-empty lines ending with a newline",
            ));
        };
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let line = line
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or(NoteError::Malformed(
                    "a signature line must start with \"— \"",
                ))?;
            let (name, b64) = line.split_once(' ').unwrap_or((line, ""));
            if !is_valid_key_name(name) {
                return Err(NoteError::Malformed("invalid key name in a signature line"));
            }
            let blob = BASE64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("a signature is too short"));
            }
            let (id, signature) = blob.split_at(4);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
                signature: signature.to_vec(),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }
}

/// A note at least one known key signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    /// The text, including its final newline.
    pub text: String,
    /// Signatures by known keys, all verified (one per key).
    pub verified: Vec<NoteSignature>,
    /// Signatures by keys not in the verifier list, unchecked (identical lines once).
    pub unverified: Vec<NoteSignature>,
}

/// Opens a signed note: parses it strictly and checks the signatures of the known keys.
///
/// A signature whose key name and id match no verifier is ignored (kept in `unverified`);
/// one that matches a verifier must verify, or the whole note is rejected; a repeated
/// signature by the same key is checked once. The note is accepted when at least one known
/// key's signature verified. These are the signed-note rules as Go's `note.Open` applies them.
pub fn verify_note(
    note: impl AsRef<[u8]>,
    verifiers: &[NoteVerifier],
) -> Result<VerifiedNote, NoteError> {
    let parsed = SignedNote::parse(note.as_ref())?;
    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut unverified: Vec<NoteSignature> = Vec::new();
    for sig in parsed.signatures {
        let mut known = verifiers
            .iter()
            .filter(|v| v.name == sig.name && v.key_id == sig.key_id);
        let Some(verifier) = known.next() else {
            if !unverified.contains(&sig) {
                unverified.push(sig);
            }
            continue;
        };
        if known.next().is_some() {
            return Err(NoteError::AmbiguousKey {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        if verified
            .iter()
            .any(|v| v.name == sig.name && v.key_id == sig.key_id)
        {
            continue;
        }
        if !verifier.verify(parsed.text.as_bytes(), &sig.signature) {
            return Err(NoteError::InvalidSignature {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        verified.push(sig);
    }
    if verified.is_empty() {
        return Err(NoteError::NoVerifiedSignature);
    }
    Ok(VerifiedNote {
        text: parsed.text,
        verified,
        unverified,
    })
}

/// Opens a signed checkpoint of the log `origin`: verifies the note ([`verify_note`]),
/// parses its body and checks that it is for that log.
pub fn open_checkpoint(
    note: impl AsRef<[u8]>,
    origin: &str,
    verifiers: &[NoteVerifier],
) -> Result<(Checkpoint, VerifiedNote), NoteError> {
    let verified = verify_note(note, verifiers)?;
    let checkpoint = Checkpoint::parse_body(&verified.text)?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::WrongOrigin {
            expected: origin.to_owned(),
            found: checkpoint.origin,
        }
        .into());
    }
    Ok((checkpoint, verified))
}

/// The verifiers that vouch for the log `origin`: each trusted key under the origin's name
/// first (the C2SP convention, which bitacora signs with: a log's key is named by its
/// origin), then each under its own name (checkpoints signed before that convention, under
/// the key file's name, e.g. `bitacora`). Keys whose name is not a valid key name are kept
/// under their own name only; duplicates are dropped.
///
/// **Why trusting a key under the origin's name is sound:** the key name is a label, the
/// trust is in the Ed25519 key, and the origin is inside the signed text, which
/// [`open_log_checkpoint`] checks. A key that signs several logs (one per tenant) cannot
/// make one log's checkpoint pass for another's.
pub fn log_verifiers(origin: &str, verifiers: &[NoteVerifier]) -> Vec<NoteVerifier> {
    let mut out: Vec<NoteVerifier> = Vec::with_capacity(verifiers.len() * 2);
    let named = verifiers.iter().filter_map(|v| v.with_name(origin).ok());
    for v in named.chain(verifiers.iter().cloned()) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Opens a checkpoint of bitacora's log `origin` with trusted keys given under any name:
/// [`open_checkpoint`] with [`log_verifiers`]. A signature under the origin's name or the
/// key's own name counts; one under another name (another log's) does not.
pub fn open_log_checkpoint(
    note: impl AsRef<[u8]>,
    origin: &str,
    verifiers: &[NoteVerifier],
) -> Result<(Checkpoint, VerifiedNote), NoteError> {
    open_checkpoint(note, origin, &log_verifiers(origin, verifiers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The example key and note of Go's golang.org/x/mod/sumdb/note (note.go docs and
    // note_test.go), the reference implementation of signed notes.
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    // The examples of the C2SP specs (signed-note and tlog-checkpoint), whose keys are not
    // published: they must parse, and verify against no key.
    const C2SP_NOTE: &str = "Ognuno sta solo sul cuor della terra\n\
        trafitto da un raggio di sole:\n\
        \n\
        ed è subito sera.\n\
        \n\
        \u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";
    const C2SP_CHECKPOINT: &str = "example.com/behind-the-sofa\n\
        20852163\n\
        CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
        \n\
        \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    fn peter() -> NoteVerifier {
        NoteVerifier::parse(PETER_VKEY).unwrap()
    }

    fn enoch() -> NoteVerifier {
        NoteVerifier::parse(ENOCH_VKEY).unwrap()
    }

    fn sig(name: &str, key_id: u32, line: &str) -> NoteSignature {
        let b64 = line.trim_end().rsplit(' ').next().unwrap();
        NoteSignature {
            name: name.into(),
            key_id,
            signature: BASE64.decode(b64).unwrap()[4..].to_vec(),
        }
    }

    #[test]
    fn go_reference_key_and_note_byte_for_byte() {
        let signer = NoteSigner::from_private_key(PETER_SKEY).unwrap();
        assert_eq!(signer.name(), "PeterNeumann");
        assert_eq!(signer.key_id(), 0xc74f20a3);
        assert_eq!(signer.to_private_key(), PETER_SKEY);
        assert_eq!(signer.verifier().to_string(), PETER_VKEY);
        assert_eq!(signer.verifier(), peter());
        assert_eq!(
            signer.sign(TEXT).unwrap(),
            format!("{TEXT}\n{PETER_SIG}"),
            "Ed25519 is deterministic, so the note must match Go's exactly"
        );
        let opened = verify_note(format!("{TEXT}\n{PETER_SIG}"), &[peter()]).unwrap();
        assert_eq!(opened.text, TEXT);
        assert_eq!(
            opened.verified,
            vec![sig("PeterNeumann", 0xc74f20a3, PETER_SIG)]
        );
        assert!(opened.unverified.is_empty());
        // A key file with a trailing newline loads too.
        let from_file = NoteSigner::from_private_key(&format!("{PETER_SKEY}\n")).unwrap();
        assert_eq!(from_file.verifier(), peter());
        assert!(!format!("{signer:?}").contains("AYEKF"));
    }

    #[test]
    fn go_open_cases() {
        let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let peter_sig = sig("PeterNeumann", 0xc74f20a3, PETER_SIG);
        let enoch_sig = sig("EnochRoot", 0xaf0cfe78, ENOCH_SIG);

        // One signature verified, one not.
        let n = verify_note(&both, &[peter()]).unwrap();
        assert_eq!(n.text, TEXT);
        assert_eq!(n.verified, vec![peter_sig.clone()]);
        assert_eq!(n.unverified, vec![enoch_sig.clone()]);

        // Both verified.
        let n = verify_note(&both, &[peter(), enoch()]).unwrap();
        assert_eq!(n.verified, vec![peter_sig.clone(), enoch_sig.clone()]);
        assert!(n.unverified.is_empty());

        // Both unverified.
        assert_eq!(verify_note(&both, &[]), Err(NoteError::NoVerifiedSignature));

        // A duplicated verifier is ambiguous only when a signature needs it.
        assert!(matches!(
            verify_note(format!("{TEXT}\n{ENOCH_SIG}"), &[enoch(), peter(), enoch()]),
            Err(NoteError::AmbiguousKey { .. })
        ));
        assert!(verify_note(format!("{TEXT}\n{PETER_SIG}"), &[enoch(), peter(), enoch()]).is_ok());

        // Too many signatures, known or not.
        let many = format!("{TEXT}\n{}", PETER_SIG.repeat(101));
        assert!(matches!(
            verify_note(&many, &[peter()]),
            Err(NoteError::Malformed(_))
        ));
        assert!(matches!(
            verify_note(&many, &[]),
            Err(NoteError::Malformed(_))
        ));
        let hundred = format!("{TEXT}\n{}", PETER_SIG.repeat(100));
        assert!(verify_note(&hundred, &[peter()]).is_ok());

        // An invalid signature by a known key rejects the note.
        let bad = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert_eq!(
            verify_note(&bad, &[peter()]),
            Err(NoteError::InvalidSignature {
                name: "PeterNeumann".into(),
                key_id: 0xc74f20a3
            })
        );

        // Repeated signatures are dropped; distinct unknown ones are kept.
        let enoch_abcd = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
        let msg = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{enoch_abcd}");
        let n = verify_note(&msg, &[peter()]).unwrap();
        assert_eq!(n.verified, vec![peter_sig]);
        assert_eq!(
            n.unverified,
            vec![enoch_sig, sig("EnochRoot", 0xaf0cfe78, &enoch_abcd)]
        );

        // Malformed messages.
        let bad_msgs: Vec<Vec<u8>> = vec![
            TEXT.into(),
            format!("{TEXT}\n").into(),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]).into(),
            format!("\x01{TEXT}\n{PETER_SIG}").into(),
            [b"\xff".as_slice(), format!("{TEXT}\n{PETER_SIG}").as_bytes()].concat(),
            format!("{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=").into(),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n").into(),
        ];
        for msg in bad_msgs {
            assert!(
                matches!(verify_note(&msg, &[peter()]), Err(NoteError::Malformed(_))),
                "accepted {:?}",
                String::from_utf8_lossy(&msg)
            );
        }
    }

    #[test]
    fn more_malformed_notes() {
        let good = format!("{TEXT}\n{PETER_SIG}");
        let b64 = &PETER_SIG["\u{2014} PeterNeumann ".len()..PETER_SIG.len() - 1];
        for msg in [
            // A hyphen, or an en dash, instead of the em dash.
            good.replace('\u{2014}', "-"),
            good.replace('\u{2014}', "\u{2013}"),
            // No space after the dash, two spaces before the signature, a missing signature.
            good.replace("\u{2014} ", "\u{2014}"),
            good.replace("Neumann ", "Neumann  "),
            format!("{TEXT}\n\u{2014} PeterNeumann\n"),
            format!("{TEXT}\n\u{2014} PeterNeumann \n"),
            // Names with a plus or a non-ASCII space.
            good.replace("PeterNeumann", "Peter+Neumann"),
            good.replace("PeterNeumann", "Peter\u{a0}Neumann"),
            // Base64 that is not canonical, has no padding, or is too short.
            good.replace(b64, &b64[..b64.len() - 1]),
            format!("{TEXT}\n\u{2014} PeterNeumann AAAAAA==\n"),
            // Control characters anywhere.
            good.replace("problem,", "problem,\r"),
            good.replace("problem,", "problem,\t"),
            format!("{TEXT}\n{PETER_SIG}\n"),
            // No text at all is fine only with the blank line; without it there is no split.
            PETER_SIG.to_string(),
            String::new(),
        ] {
            assert!(
                matches!(verify_note(&msg, &[peter()]), Err(NoteError::Malformed(_))),
                "accepted {msg:?}"
            );
        }
        // Tampered text.
        let tampered = good.replace("cryptography", "cryptographY");
        assert!(matches!(
            verify_note(&tampered, &[peter()]),
            Err(NoteError::InvalidSignature { .. })
        ));
        // Same name, other key id (a rotated key, say): ignored, not an error by itself.
        let other = NoteSigner::from_seed("PeterNeumann", [9; 32]).unwrap();
        assert_eq!(
            verify_note(&good, &[other.verifier()]),
            Err(NoteError::NoVerifiedSignature)
        );
    }

    #[test]
    fn go_key_manglings_are_rejected() {
        assert!(NoteVerifier::parse(PETER_VKEY).is_ok());
        assert!(NoteSigner::from_private_key(PETER_SKEY).is_ok());
        for key in [PETER_VKEY, PETER_SKEY] {
            let b = key.as_bytes();
            let parse = |s: &str| {
                if key == PETER_VKEY {
                    NoteVerifier::parse(s).is_ok()
                } else {
                    NoteSigner::from_private_key(s).is_ok()
                }
            };
            for i in 0..=b.len() {
                for j in i + 1..=b.len() {
                    if i == 0 && j == b.len() {
                        continue;
                    }
                    let s = std::str::from_utf8(&b[i..j]).unwrap();
                    assert!(!parse(s), "accepted {s:?}");
                }
            }
            for i in 0..b.len() {
                let mut m = b.to_vec();
                m[i] += 1;
                let s = String::from_utf8(m).unwrap();
                assert!(!parse(&s), "accepted {s:?}");
            }
        }
        // Wrong key length and unknown algorithm, each with an adjusted key id.
        assert!(
            NoteVerifier::parse(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            )
            .is_err()
        );
        assert_eq!(
            NoteVerifier::parse(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(NoteError::UnsupportedAlgorithm(0x65))
        );
        // A signed hex id is not eight hex digits.
        assert!(
            NoteVerifier::parse("a+-74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err()
        );
    }

    #[test]
    fn c2sp_examples_parse_and_need_a_known_key() {
        let note = SignedNote::parse(C2SP_NOTE.as_bytes()).unwrap();
        assert_eq!(
            note.text,
            "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
        );
        assert_eq!(note.signatures.len(), 1);
        assert_eq!(note.signatures[0].name, "quasimodo.example/salvatore");
        assert_eq!(note.signatures[0].signature.len(), 64);
        assert_eq!(
            verify_note(C2SP_NOTE, &[peter()]),
            Err(NoteError::NoVerifiedSignature)
        );

        let note = SignedNote::parse(C2SP_CHECKPOINT.as_bytes()).unwrap();
        let cp = Checkpoint::parse_body(&note.text).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20852163);
        assert_eq!(
            BASE64.encode(cp.root),
            "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
        );
        assert!(cp.extensions.is_empty());
        assert_eq!(cp.to_body(), note.text);
    }

    #[test]
    fn signed_checkpoint_round_trip() {
        let key = NoteSigner::from_seed("bitacora", [7; 32]).unwrap();
        let signer = key.with_name(tenant_origin("acme")).unwrap();
        assert_ne!(signer.key_id(), key.key_id());
        let cp = Checkpoint::new(tenant_origin("acme"), 1042, [0xab; 32]);
        let note = signer.sign_checkpoint(&cp).unwrap();
        assert!(note.starts_with("bitacora/acme\n1042\nq6ur"));
        let vkey = signer.verifier().to_string();
        assert!(vkey.starts_with("bitacora/acme+"));
        let verifier: NoteVerifier = vkey.parse().unwrap();
        let (opened, verified) =
            open_checkpoint(&note, "bitacora/acme", std::slice::from_ref(&verifier)).unwrap();
        assert_eq!(opened, cp);
        assert_eq!(verified.verified[0].key_id, signer.key_id());
        assert!(matches!(
            open_checkpoint(&note, "bitacora/other", std::slice::from_ref(&verifier)),
            Err(NoteError::Checkpoint(CheckpointError::WrongOrigin { .. }))
        ));
        // The tenant key does not verify under the bare key's name by the signed-note rules...
        assert_eq!(
            open_checkpoint(&note, "bitacora/acme", &[key.verifier()]),
            Err(NoteError::NoVerifiedSignature)
        );
        // ...but bitacora's log opener trusts the key under the log's origin too.
        let (opened, verified) =
            open_log_checkpoint(&note, "bitacora/acme", &[key.verifier()]).unwrap();
        assert_eq!(opened, cp);
        assert_eq!(verified.verified[0].name, "bitacora/acme");
        // Never under another log's name: a checkpoint of `bitacora/acme` signed under the
        // name `bitacora/other` (by the same key) is not one of acme's.
        let misnamed = key
            .with_name("bitacora/other")
            .unwrap()
            .sign_checkpoint(&cp)
            .unwrap();
        assert_eq!(
            open_log_checkpoint(&misnamed, "bitacora/acme", &[key.verifier()]),
            Err(NoteError::NoVerifiedSignature)
        );
        // Nor for another origin than the one asked for: the key is trusted under that
        // origin's name, which did not sign.
        assert_eq!(
            open_log_checkpoint(&note, "bitacora/other", &[key.verifier()]),
            Err(NoteError::NoVerifiedSignature)
        );
        // A legacy checkpoint (signed under the key's own name) still opens.
        let legacy = key.sign_checkpoint(&cp).unwrap();
        assert!(open_log_checkpoint(&legacy, "bitacora/acme", &[key.verifier()]).is_ok());
        // The verifier list: origin-named first, no duplicates.
        let list = log_verifiers("bitacora/acme", &[key.verifier(), signer.verifier()]);
        assert_eq!(list, vec![signer.verifier(), key.verifier()]);
        // A signed note whose body is not a checkpoint.
        let not_cp = signer.sign("hello\n").unwrap();
        assert!(matches!(
            open_checkpoint(&not_cp, "bitacora/acme", &[verifier]),
            Err(NoteError::Checkpoint(CheckpointError::TooFewLines))
        ));
        // Private key file round trip.
        let again = NoteSigner::from_private_key(&signer.to_private_key()).unwrap();
        assert_eq!(again.sign_checkpoint(&cp).unwrap(), note);
    }

    #[test]
    fn key_rotation_signs_with_both_and_verifies_with_either() {
        let old = NoteSigner::from_seed("bitacora/acme", [1; 32]).unwrap();
        let new = NoteSigner::from_seed("bitacora/acme", [2; 32]).unwrap();
        let body = Checkpoint::new("bitacora/acme", 5, [3; 32]).to_body();
        let note = sign_note(&body, &[&old, &new]).unwrap();
        for verifiers in [
            vec![old.verifier()],
            vec![new.verifier()],
            vec![old.verifier(), new.verifier()],
        ] {
            let (cp, _) = open_checkpoint(&note, "bitacora/acme", &verifiers).unwrap();
            assert_eq!(cp.size, 5);
        }
        assert!(sign_note(&body, &[]).is_err());
        assert!(sign_note("no newline", &[&old]).is_err());
        assert!(sign_note("tab\there\n", &[&old]).is_err());
        assert!(NoteSigner::from_seed("has space", [1; 32]).is_err());
        assert!(NoteSigner::from_seed("", [1; 32]).is_err());
        assert!(NoteSigner::from_seed("a+b", [1; 32]).is_err());
    }

    #[test]
    fn checkpoint_body_rejections() {
        let root = BASE64.encode([5u8; 32]);
        let ok = format!("o\n1\n{root}\n");
        assert!(Checkpoint::parse_body(&ok).is_ok());
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n0\n{root}\n"))
                .unwrap()
                .size,
            0
        );
        let with_ext = Checkpoint::parse_body(&format!("o\n1\n{root}\nx\ny z\n")).unwrap();
        assert_eq!(with_ext.extensions, vec!["x", "y z"]);
        assert_eq!(
            Checkpoint::parse_body(&with_ext.to_body()).unwrap(),
            with_ext
        );
        let max = Checkpoint::parse_body(&format!("o\n18446744073709551615\n{root}\n")).unwrap();
        assert_eq!(max.size, u64::MAX);
        use CheckpointError::*;
        for (body, err) in [
            (format!("o\n1\n{root}"), MissingFinalNewline),
            (format!("o\n1\n{root}\n\n"), BadExtension),
            (format!("o\n1\n{root}\nx\n\ny\n"), BadExtension),
            ("o\n1\n".to_string(), TooFewLines),
            ("\n".to_string(), TooFewLines),
            (String::new(), MissingFinalNewline),
            (format!("\n1\n{root}\n"), BadOrigin),
            (format!("o\n01\n{root}\n"), BadSize),
            (format!("o\n+1\n{root}\n"), BadSize),
            (format!("o\n-1\n{root}\n"), BadSize),
            (format!("o\n 1\n{root}\n"), BadSize),
            (format!("o\n\n{root}\n"), BadSize),
            (format!("o\n18446744073709551616\n{root}\n"), BadSize),
            (format!("o\n1x\n{root}\n"), BadSize),
            ("o\n1\nAAAA\n".to_string(), BadRootHash),
            (format!("o\n1\n{}\n", BASE64.encode([5u8; 31])), BadRootHash),
            (format!("o\n1\n{}\n", BASE64.encode([5u8; 33])), BadRootHash),
            (format!("o\n1\n{}\n", root.replace('=', "")), BadRootHash),
            // The last character carries two unused bits: they must be zero.
            (format!("o\n1\n{}\n", non_canonical(&root)), BadRootHash),
            (format!("o\r\n1\n{root}\n"), ControlCharacter),
        ] {
            assert_eq!(Checkpoint::parse_body(&body), Err(err), "{body:?}");
        }
        let mut cp = Checkpoint::new("", 1, [0; 32]);
        assert_eq!(cp.validate(), Err(BadOrigin));
        cp.origin = "a\nb".into();
        assert_eq!(cp.validate(), Err(BadOrigin));
        cp.origin = "a".into();
        cp.extensions = vec![String::new()];
        assert_eq!(cp.validate(), Err(BadExtension));
        let signer = NoteSigner::from_seed("a", [1; 32]).unwrap();
        assert!(signer.sign_checkpoint(&cp).is_err());
    }

    /// The same base64 with the unused low bit of its last character set.
    fn non_canonical(b64: &str) -> String {
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let data = b64.trim_end_matches('=');
        let last = data.chars().last().unwrap();
        let pos = ALPHABET.find(last).unwrap();
        let bumped = ALPHABET.chars().nth(pos | 1).unwrap();
        assert_ne!(bumped, last, "the unused bits were not zero");
        format!("{}{bumped}{}", &data[..data.len() - 1], &b64[data.len()..])
    }

    fn signed_fixture() -> (NoteSigner, String) {
        let signer = NoteSigner::from_seed("bitacora/t", [4; 32]).unwrap();
        let note = signer
            .sign_checkpoint(&Checkpoint::new("bitacora/t", 77, [8; 32]))
            .unwrap();
        (signer, note)
    }

    proptest! {
        #[test]
        fn checkpoint_body_round_trips(
            origin in "[^\\p{Cc}]{1,40}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            extensions in prop::collection::vec("[^\\p{Cc}]{1,20}", 0..3),
        ) {
            let cp = Checkpoint { origin, size, root, extensions };
            prop_assert!(cp.validate().is_ok());
            prop_assert_eq!(Checkpoint::parse_body(&cp.to_body()).unwrap(), cp.clone());
            let signer = NoteSigner::from_seed("k", [1; 32]).unwrap();
            let note = signer.sign_checkpoint(&cp).unwrap();
            let (opened, _) = open_checkpoint(&note, &cp.origin, &[signer.verifier()]).unwrap();
            prop_assert_eq!(opened, cp);
        }

        #[test]
        fn any_single_byte_change_is_rejected(pos in any::<prop::sample::Index>(), delta in 1u8..=255) {
            let (signer, note) = signed_fixture();
            let mut bytes = note.into_bytes();
            let i = pos.index(bytes.len());
            bytes[i] = bytes[i].wrapping_add(delta);
            prop_assert!(open_checkpoint(&bytes, "bitacora/t", &[signer.verifier()]).is_err());
        }

        #[test]
        fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), s in "\\PC{0,200}") {
            let (signer, note) = signed_fixture();
            let _ = verify_note(&bytes, &[signer.verifier()]);
            let _ = SignedNote::parse(&bytes);
            let _ = Checkpoint::parse_body(&s);
            let _ = NoteVerifier::parse(&s);
            let _ = NoteSigner::from_private_key(&s);
            // Arbitrary text around a valid note.
            let _ = verify_note(format!("{s}{note}"), &[signer.verifier()]);
            let _ = verify_note(format!("{note}{s}"), &[signer.verifier()]);
        }
    }
}
