//! Witness cosignatures and trust policies, with no I/O: C2SP `tlog-cosignature` (the Ed25519
//! `cosignature/v1` type) and C2SP `tlog-policy`.
//!
//! A checkpoint signed by the log alone does not stop a **split view**: whoever holds the
//! log's key can sign two different histories and show each to a different auditor. A
//! witness cosigns a checkpoint only if it is consistent with every checkpoint of that log the
//! witness cosigned before, so a checkpoint cosigned by a quorum of independent witnesses is
//! one that everyone relying on the same witnesses sees too. A policy says which logs and
//! witnesses are trusted and which set of cosignatures is enough ([`Policy::check`]).
//!
//! - A cosignature is a signed-note signature line `— <witness name> base64(key id ||
//!   u64 timestamp || Ed25519 signature)`, key id `SHA-256(name || "\n" || 0x04 || key)[:4]`,
//!   signing `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint's text.
//! - A policy is lines `log <vkey> [url]`, `witness <name> <vkey> [url]`,
//!   `group <name> all|any|<k> <member>...` and exactly one `quorum <name>` (`none` for no
//!   cosignature), members defined on earlier lines, `#` comments.
//!
//! Hand-written: no crate on this registry implements either spec (the `signed_note` crate
//! verifies the log's own `0x01` signatures only).

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::checkpoint::{NoteError, NoteSignature, NoteVerifier, SignedNote, key_id, verify_note};

/// The signed-note signature type of Ed25519 `cosignature/v1`.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// An Ed25519 `cosignature/v1` verifier key of a witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl CosignerKey {
    pub fn new(name: impl Into<String>, key: VerifyingKey) -> Result<Self, NoteError> {
        let name = name.into();
        if !crate::checkpoint::is_valid_key_name(&name) {
            return Err(NoteError::InvalidName);
        }
        let key_id = key_id(&name, &typed(&key));
        Ok(Self { name, key_id, key })
    }

    /// Parses `<name>+<hex key id>+<base64(0x04 || public key)>`, checking the key id.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, typed_key) = crate::checkpoint::split_key(vkey)
            .ok_or(NoteError::MalformedKey("expected name+id+key"))?;
        let Some((&alg, key)) = typed_key.split_first() else {
            return Err(NoteError::MalformedKey("empty key"));
        };
        if alg != ALG_COSIGNATURE_V1 {
            return Err(NoteError::UnsupportedAlgorithm(alg));
        }
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| NoteError::MalformedKey("an Ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(key)
            .map_err(|_| NoteError::MalformedKey("not an Ed25519 public key"))?;
        let parsed = Self::new(name, key)?;
        if parsed.key_id != id {
            return Err(NoteError::KeyIdMismatch {
                expected: parsed.key_id,
                found: id,
            });
        }
        Ok(parsed)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The time of `sig` if it is this witness's valid cosignature of the note `text`.
    pub fn verify(&self, text: &str, sig: &NoteSignature) -> Option<u64> {
        if sig.name != self.name || sig.key_id != self.key_id || sig.signature.len() != 72 {
            return None;
        }
        let (time, signature) = sig.signature.split_at(8);
        let time = u64::from_be_bytes(time.try_into().ok()?);
        let signature = Signature::from_slice(signature).ok()?;
        self.key
            .verify_strict(&cosignature_message(text, time), &signature)
            .is_ok()
            .then_some(time)
    }
}

impl std::fmt::Display for CosignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            BASE64.encode(typed(&self.key))
        )
    }
}

fn typed(key: &VerifyingKey) -> [u8; 33] {
    let mut out = [0u8; 33];
    out[0] = ALG_COSIGNATURE_V1;
    out[1..].copy_from_slice(key.as_bytes());
    out
}

/// What a `cosignature/v1` signs: `cosignature/v1\ntime <t>\n` then the checkpoint's text.
pub fn cosignature_message(text: &str, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{text}").into_bytes()
}

/// A witness's signing key (what a witness, or a test standing in for one, cosigns with).
#[derive(Debug, Clone)]
pub struct Cosigner {
    key: CosignerKey,
    signing: SigningKey,
}

impl Cosigner {
    pub fn from_seed(name: impl Into<String>, seed: [u8; 32]) -> Result<Self, NoteError> {
        let signing = SigningKey::from_bytes(&seed);
        Ok(Self {
            key: CosignerKey::new(name, signing.verifying_key())?,
            signing,
        })
    }

    pub fn key(&self) -> &CosignerKey {
        &self.key
    }

    /// The signature line (with its newline) cosigning the checkpoint `text` at `time`.
    pub fn cosign(&self, text: &str, time: u64) -> String {
        let signature = self.signing.sign(&cosignature_message(text, time));
        let mut blob = Vec::with_capacity(76);
        blob.extend_from_slice(&self.key.key_id.to_be_bytes());
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        format!("\u{2014} {} {}\n", self.key.name, BASE64.encode(blob))
    }
}

/// Why a policy file was refused, with its line number (from 1).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("tlog-policy line {line}: {message}")]
pub struct PolicyError {
    pub line: usize,
    pub message: String,
}

/// Why a checkpoint does not satisfy a policy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyViolation {
    #[error("no log of the policy signed the checkpoint: {0}")]
    NotSignedByALog(NoteError),
    #[error("the policy's quorum is not met: cosigned by {cosigned:?}")]
    QuorumNotMet { cosigned: Vec<String> },
}

#[derive(Debug, Clone)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Debug, Clone)]
struct Group {
    threshold: usize,
    members: Vec<Member>,
}

/// A parsed C2SP `tlog-policy`.
#[derive(Debug, Clone)]
pub struct Policy {
    logs: Vec<NoteVerifier>,
    /// `(policy name, key)`.
    witnesses: Vec<(String, CosignerKey)>,
    /// The submission URL prefix of each witness (same order), when the policy gives one.
    urls: Vec<Option<String>>,
    groups: Vec<(String, Group)>,
    /// `None`: `quorum none`.
    quorum: Option<Member>,
}

/// What a checkpoint that satisfies a policy was signed and cosigned by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCheck {
    /// The policy's logs whose signature verified (key names).
    pub logs: Vec<String>,
    /// The policy's witnesses (policy names) whose cosignature verified.
    pub cosigned: Vec<String>,
}

impl Policy {
    /// Parses a policy file, strictly (the spec's character set, names defined before use,
    /// no duplicate keys or members, exactly one quorum).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut policy = Policy {
            logs: Vec::new(),
            witnesses: Vec::new(),
            urls: Vec::new(),
            groups: Vec::new(),
            quorum: None,
        };
        let mut quorum_seen = false;
        // Witness keys, and the log keys' Ed25519 keys (a log may list one under several names).
        let mut keys_seen: HashSet<[u8; 32]> = HashSet::new();
        let mut log_keys: HashSet<[u8; 32]> = HashSet::new();
        for (i, raw) in text.split('\n').enumerate() {
            let err = |message: String| PolicyError {
                line: i + 1,
                message,
            };
            if raw.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(err("a control character other than tab".into()));
            }
            let words: Vec<&str> = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            let Some((&keyword, args)) = words.split_first() else {
                continue;
            };
            if keyword.starts_with('#') {
                continue;
            }
            match keyword {
                "log" => {
                    let [vkey, rest @ ..] = args else {
                        return Err(err("expected `log <vkey> [<url>]`".into()));
                    };
                    if rest.len() > 1 {
                        return Err(err("expected `log <vkey> [<url>]`".into()));
                    }
                    let key =
                        NoteVerifier::parse(vkey).map_err(|e| err(format!("log key: {e}")))?;
                    // One Ed25519 key may sign several logs, each under its origin as key
                    // name (bitacora signs every tenant's log with one key): a log key is a
                    // duplicate only with the same name, and never a witness's key.
                    if policy.logs.contains(&key)
                        || policy
                            .witnesses
                            .iter()
                            .any(|(_, w)| w.key == *key.verifying_key())
                    {
                        return Err(err("a duplicate key".into()));
                    }
                    log_keys.insert(key.verifying_key().to_bytes());
                    policy.logs.push(key);
                }
                "witness" => {
                    let [name, vkey, rest @ ..] = args else {
                        return Err(err("expected `witness <name> <vkey> [<url>]`".into()));
                    };
                    if rest.len() > 1 {
                        return Err(err("expected `witness <name> <vkey> [<url>]`".into()));
                    }
                    if policy.defined(name) || *name == "none" {
                        return Err(err(format!("the name `{name}` is already defined")));
                    }
                    let key =
                        CosignerKey::parse(vkey).map_err(|e| err(format!("witness key: {e}")))?;
                    if log_keys.contains(&key.key.to_bytes())
                        || !keys_seen.insert(key.key.to_bytes())
                    {
                        return Err(err("a duplicate key".into()));
                    }
                    let url = match rest.first() {
                        Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                            Some((*url).to_owned())
                        }
                        Some(url) => {
                            return Err(err(format!(
                                "the witness URL `{url}` is not an http(s) URL"
                            )));
                        }
                        None => None,
                    };
                    policy.witnesses.push(((*name).to_owned(), key));
                    policy.urls.push(url);
                }
                "group" => {
                    let [name, threshold, members @ ..] = args else {
                        return Err(err("expected `group <name> all|any|<k> <name>...`".into()));
                    };
                    if members.is_empty() {
                        return Err(err("a group needs at least one member".into()));
                    }
                    if policy.defined(name) || *name == "none" {
                        return Err(err(format!("the name `{name}` is already defined")));
                    }
                    let mut resolved = Vec::new();
                    for (j, m) in members.iter().enumerate() {
                        if members[..j].contains(m) {
                            return Err(err(format!("`{m}` is listed twice")));
                        }
                        resolved.push(
                            policy
                                .member(m)
                                .ok_or_else(|| err(format!("`{m}` is not defined above")))?,
                        );
                    }
                    let n = resolved.len();
                    let threshold = match *threshold {
                        "all" => n,
                        "any" => 1,
                        text => match text.parse::<usize>() {
                            // Decimal with no sign or leading zero: what it prints back as.
                            Ok(k) if (1..=n).contains(&k) && k.to_string() == text => k,
                            _ => return Err(err(format!("threshold `{text}` is not 1 to {n}"))),
                        },
                    };
                    policy.groups.push((
                        (*name).to_owned(),
                        Group {
                            threshold,
                            members: resolved,
                        },
                    ));
                }
                "quorum" => {
                    let [name] = args else {
                        return Err(err("expected `quorum <name>`".into()));
                    };
                    if quorum_seen {
                        return Err(err("a second quorum line".into()));
                    }
                    quorum_seen = true;
                    policy.quorum = if *name == "none" {
                        None
                    } else {
                        Some(
                            policy
                                .member(name)
                                .ok_or_else(|| err(format!("`{name}` is not defined above")))?,
                        )
                    };
                }
                other => return Err(err(format!("unknown keyword `{other}`"))),
            }
        }
        if !quorum_seen {
            return Err(PolicyError {
                line: 0,
                message: "the policy has no quorum line".into(),
            });
        }
        Ok(policy)
    }

    fn defined(&self, name: &str) -> bool {
        self.member(name).is_some()
    }

    fn member(&self, name: &str) -> Option<Member> {
        self.witnesses
            .iter()
            .position(|(n, _)| n == name)
            .map(Member::Witness)
            .or_else(|| {
                self.groups
                    .iter()
                    .position(|(n, _)| n == name)
                    .map(Member::Group)
            })
    }

    /// The log keys of the policy (any of them may sign).
    pub fn logs(&self) -> &[NoteVerifier] {
        &self.logs
    }

    /// The witnesses, `(policy name, key)`.
    pub fn witnesses(&self) -> &[(String, CosignerKey)] {
        &self.witnesses
    }

    /// The witnesses with their submission URL prefix (`None` when the policy gives none):
    /// `(policy name, key, url)`.
    pub fn witness_urls(&self) -> impl Iterator<Item = (&str, &CosignerKey, Option<&str>)> {
        self.witnesses
            .iter()
            .zip(&self.urls)
            .map(|((name, key), url)| (name.as_str(), key, url.as_deref()))
    }

    /// Whether the policy has a quorum (`quorum none` has none: no cosignature is needed).
    pub fn needs_cosignatures(&self) -> bool {
        self.quorum.is_some()
    }

    /// Checks a signed checkpoint: one of the policy's logs signed it, and the witnesses
    /// whose `cosignature/v1` over its text verifies meet the quorum. A cosignature that
    /// does not verify is ignored (it counts as absent), as a bad one from a witness the
    /// policy does not list is.
    pub fn check(&self, note: &str) -> Result<PolicyCheck, PolicyViolation> {
        let opened = verify_note(note, &self.logs).map_err(PolicyViolation::NotSignedByALog)?;
        let parsed =
            SignedNote::parse(note.as_bytes()).map_err(PolicyViolation::NotSignedByALog)?;
        let cosigned: Vec<bool> = self
            .witnesses
            .iter()
            .map(|(_, key)| {
                parsed
                    .signatures
                    .iter()
                    .any(|sig| key.verify(&parsed.text, sig).is_some())
            })
            .collect();
        let names: Vec<String> = self
            .witnesses
            .iter()
            .zip(&cosigned)
            .filter(|(_, c)| **c)
            .map(|((n, _), _)| n.clone())
            .collect();
        let met = match &self.quorum {
            None => true,
            Some(m) => self.witnessed(m, &cosigned),
        };
        if !met {
            return Err(PolicyViolation::QuorumNotMet { cosigned: names });
        }
        Ok(PolicyCheck {
            logs: opened.verified.into_iter().map(|s| s.name).collect(),
            cosigned: names,
        })
    }

    /// Groups only refer to earlier groups, so this recursion ends.
    fn witnessed(&self, member: &Member, cosigned: &[bool]) -> bool {
        match member {
            Member::Witness(i) => cosigned[*i],
            Member::Group(g) => {
                let group = &self.groups[*g].1;
                group
                    .members
                    .iter()
                    .filter(|m| self.witnessed(m, cosigned))
                    .count()
                    >= group.threshold
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, NoteSigner};

    fn witnesses() -> Vec<Cosigner> {
        (1..=3)
            .map(|i| Cosigner::from_seed(format!("witness{i}.example"), [i; 32]).unwrap())
            .collect()
    }

    fn note() -> (NoteSigner, String) {
        let log = NoteSigner::from_seed("bitacora", [42; 32]).unwrap();
        let note = log
            .sign_checkpoint(&Checkpoint::new("bitacora/acme", 7, [9; 32]))
            .unwrap();
        (log, note)
    }

    /// The note with cosignature lines appended.
    fn cosigned(note: &str, by: &[&Cosigner]) -> String {
        let text = &note[..note.rfind("\n\n").unwrap() + 1];
        let mut out = note.to_owned();
        for w in by {
            out.push_str(&w.cosign(text, 1_700_000_000));
        }
        out
    }

    fn policy(log: &NoteSigner, w: &[Cosigner], rules: &str) -> String {
        format!(
            "# test policy\nlog {}\n\twitness A {}  https://a.example/\nwitness B {}\nwitness C {}\n{rules}\n",
            log.verifier(),
            w[0].key(),
            w[1].key(),
            w[2].key()
        )
    }

    #[test]
    fn cosigner_keys_round_trip_and_bind_their_name() {
        let w = &witnesses()[0];
        let text = w.key().to_string();
        assert_eq!(CosignerKey::parse(&text).unwrap(), *w.key());
        // A log key (type 0x01) is not a cosigner key, and a wrong id is refused.
        let (log, _) = note();
        assert!(CosignerKey::parse(&log.verifier().to_string()).is_err());
        let (name, rest) = text.split_once('+').unwrap();
        let bad = format!("{name}+00000000+{}", rest.split_once('+').unwrap().1);
        assert!(matches!(
            CosignerKey::parse(&bad),
            Err(NoteError::KeyIdMismatch { .. })
        ));
    }

    #[test]
    fn quorums_count_valid_cosignatures_only() {
        let w = witnesses();
        let (log, note) = note();
        let p = Policy::parse(&policy(&log, &w, "group two 2 A B C\nquorum two")).unwrap();
        assert!(matches!(
            p.check(&note),
            Err(PolicyViolation::QuorumNotMet { .. })
        ));
        assert!(p.check(&cosigned(&note, &[&w[0]])).is_err());
        let ok = p.check(&cosigned(&note, &[&w[0], &w[2]])).unwrap();
        assert_eq!(ok.cosigned, ["A", "C"]);
        assert_eq!(ok.logs, ["bitacora"]);
        // The same witness twice is one witness.
        assert!(p.check(&cosigned(&note, &[&w[1], &w[1]])).is_err());
        // A cosignature over another checkpoint does not count.
        let (_, other) = {
            let log = NoteSigner::from_seed("bitacora", [42; 32]).unwrap();
            let n = log
                .sign_checkpoint(&Checkpoint::new("bitacora/acme", 8, [9; 32]))
                .unwrap();
            (log, n)
        };
        let other_text = &other[..other.rfind("\n\n").unwrap() + 1];
        let forged = format!(
            "{}{}",
            cosigned(&note, &[&w[0]]),
            w[1].cosign(other_text, 1)
        );
        assert!(p.check(&forged).is_err());
        // Not signed by the policy's log: refused whatever the cosignatures.
        let stranger = NoteSigner::from_seed("bitacora", [43; 32]).unwrap();
        let theirs = stranger
            .sign_checkpoint(&Checkpoint::new("bitacora/acme", 7, [9; 32]))
            .unwrap();
        assert!(matches!(
            p.check(&cosigned(&theirs, &[&w[0], &w[1], &w[2]])),
            Err(PolicyViolation::NotSignedByALog(_))
        ));
    }

    #[test]
    fn nested_groups_any_all_and_none() {
        let w = witnesses();
        let (log, note) = note();
        let p = Policy::parse(&policy(
            &log,
            &w,
            "group AB any A B\ngroup both all AB C\nquorum both",
        ))
        .unwrap();
        assert!(p.check(&cosigned(&note, &[&w[0], &w[1]])).is_err());
        assert!(p.check(&cosigned(&note, &[&w[1], &w[2]])).is_ok());
        let single = Policy::parse(&policy(&log, &w, "quorum B")).unwrap();
        assert!(single.check(&cosigned(&note, &[&w[1]])).is_ok());
        assert!(single.check(&cosigned(&note, &[&w[0]])).is_err());
        let none = Policy::parse(&policy(&log, &w, "quorum none")).unwrap();
        assert!(none.check(&note).is_ok());
        assert!(!none.needs_cosignatures() && single.needs_cosignatures());
    }

    #[test]
    fn witness_urls_are_kept_and_must_be_http() {
        let w = witnesses();
        let (log, _) = note();
        let p = Policy::parse(&policy(&log, &w, "quorum none")).unwrap();
        let urls: Vec<(&str, Option<&str>)> = p.witness_urls().map(|(n, _, u)| (n, u)).collect();
        assert_eq!(
            urls,
            [("A", Some("https://a.example/")), ("B", None), ("C", None)]
        );
        let bad = format!(
            "witness D {} ftp://d.example\nquorum none",
            Cosigner::from_seed("d.example", [4; 32]).unwrap().key()
        );
        assert!(Policy::parse(&policy(&log, &w, &bad)).is_err());
    }

    #[test]
    fn malformed_policies_are_refused() {
        let w = witnesses();
        let (log, _) = note();
        for rules in [
            "",                           // no quorum
            "quorum none\nquorum none",   // two
            "quorum D",                   // undefined
            "group g 2 A\nquorum g",      // k > n
            "group g 0 A B\nquorum g",    // k < 1
            "group g 01 A B\nquorum g",   // leading zero
            "group g any\nquorum g",      // no member
            "group g any A A\nquorum g",  // twice
            "group g any none\nquorum g", // none is not a member
            "group A any B\nquorum A",    // name taken
            "quorum g\ngroup g any A",    // used before defined
            "frobnicate\nquorum none",    // unknown keyword
            "quorum none extra",          // extra word
        ] {
            assert!(
                Policy::parse(&policy(&log, &w, rules)).is_err(),
                "{rules:?} parsed"
            );
        }
        let dup = format!("witness D {}\nquorum none", w[0].key());
        assert!(
            Policy::parse(&policy(&log, &w, &dup)).is_err(),
            "duplicate key"
        );
        // The same log key twice under one name is a duplicate; under another name (another
        // log's origin) it is not, and it is never a witness's key.
        let again = format!("log {}\nquorum none", log.verifier());
        assert!(Policy::parse(&policy(&log, &w, &again)).is_err());
        let acme = log.verifier().with_name("bitacora/acme").unwrap();
        let both_logs = format!("log {acme}\nquorum none");
        let parsed = Policy::parse(&policy(&log, &w, &both_logs)).unwrap();
        assert_eq!(parsed.logs().len(), 2);
        let as_witness = format!(
            "log {acme}\nwitness L {}\nquorum none",
            Cosigner::from_seed("l.example", [42; 32]).unwrap().key()
        );
        assert!(Policy::parse(&policy(&log, &w, &as_witness)).is_err());
        assert!(Policy::parse("quorum none\u{7}\n").is_err());
        assert!(Policy::parse("quorum none\n").is_ok());
    }
}
