//! A strict C2SP `tlog-witness` for the tests, written from the spec
//! (<https://c2sp.org/tlog-witness>, <https://c2sp.org/tlog-cosignature>), sharing no code
//! with bitacora: the log's signature is checked with the `signed_note` crate, consistency
//! proofs with `tlog_tiles::check_tree` (both cloudflare/azul, ports of Go's `note` and
//! `tlog`), cosignatures are made here with `ed25519-dalek`.
//!
//! For each log it knows (by its verifier key, whose name is the log's origin: the standard
//! configuration), it keeps the size and root of the
//! latest checkpoint it cosigned, and answers `add-checkpoint` by the spec's rules: `400` for
//! a malformed request or an old size above the checkpoint's, `404` for an unknown origin,
//! `403` when no signature verifies with the log's key, `409` with its size
//! (`text/x.tlog.size`) when the old size is not its own, `409` for the same size with
//! another root (a fork), `422` when the consistency proof does not verify (another fork),
//! and otherwise `200` with one `cosignature/v1` line, after recording the new checkpoint
//! under the same lock as the check (no rollback race).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash, check_tree};

/// One answer, for the tests to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub old: Option<u64>,
    pub size: Option<u64>,
}

pub struct TestWitness {
    pub name: String,
    key: SigningKey,
    /// Trusted log verifier keys by origin.
    logs: Mutex<HashMap<String, String>>,
    /// Latest cosigned `(size, root)` by origin.
    state: Mutex<HashMap<String, (u64, [u8; 32])>>,
    answers: Mutex<Vec<Answer>>,
}

const COSIGNATURE_V1: u8 = 0x04;

impl TestWitness {
    pub fn new(name: &str, seed: u8) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&[seed; 32]),
            logs: Mutex::new(HashMap::new()),
            state: Mutex::new(HashMap::new()),
            answers: Mutex::new(Vec::new()),
        })
    }

    /// Trusts the log whose verifier key is `vkey` (`<name>+<id>+<key>`), configured the
    /// standard way: the key's name is the log's origin, and checkpoints are matched to it by
    /// their origin line (as C2SP witnesses and the witness network's log lists do).
    pub fn trust(&self, vkey: &str) {
        let origin = vkey.split('+').next().expect("a verifier key").to_owned();
        self.logs.lock().unwrap().insert(origin, vkey.to_owned());
    }

    fn typed_key(&self) -> Vec<u8> {
        let mut typed = vec![COSIGNATURE_V1];
        typed.extend_from_slice(self.key.verifying_key().as_bytes());
        typed
    }

    pub fn key_id(&self) -> u32 {
        signed_note::key_id(&self.name, &self.typed_key())
    }

    /// The witness's verifier key, `<name>+<id>+<base64(0x04 || key)>`.
    pub fn vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id(),
            BASE64.encode(self.typed_key())
        )
    }

    /// A verifier of this witness's cosignatures for `signed_note`.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            id: self.key_id(),
            key: self.key.verifying_key(),
        }
    }

    /// The latest `(size, root)` it cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Option<(u64, [u8; 32])> {
        self.state.lock().unwrap().get(origin).copied()
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// Serves `POST /add-checkpoint` on an ephemeral port; returns the submission prefix.
    pub async fn spawn(self: &Arc<Self>) -> String {
        let app = axum::Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        format!("http://{addr}")
    }

    /// The spec's `add-checkpoint`, on a request body.
    pub fn handle(&self, body: &[u8]) -> (u16, Vec<u8>) {
        let mut answer = Answer {
            status: 0,
            old: None,
            size: None,
        };
        let (status, reply) = self.decide(body, &mut answer);
        answer.status = status;
        self.answers.lock().unwrap().push(answer);
        (status, reply)
    }

    fn decide(&self, body: &[u8], answer: &mut Answer) -> (u16, Vec<u8>) {
        let bad = |why: &str| (400, why.as_bytes().to_vec());
        let Ok(body) = std::str::from_utf8(body) else {
            return bad("not UTF-8");
        };
        // old <size>\n, up to 63 proof lines, an empty line, the checkpoint.
        let Some((old_line, rest)) = body.split_once('\n') else {
            return bad("no old size line");
        };
        let Some(old) = old_line.strip_prefix("old ").and_then(decimal) else {
            return bad("bad old size line");
        };
        answer.old = Some(old);
        let mut rest = rest;
        let mut proof: Vec<Hash> = Vec::new();
        loop {
            let Some((line, after)) = rest.split_once('\n') else {
                return bad("no empty line before the checkpoint");
            };
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == 63 {
                return bad("more than 63 proof lines");
            }
            match BASE64.decode(line) {
                Ok(bytes) if bytes.len() == 32 => proof.push(Hash(bytes.try_into().unwrap())),
                _ => return bad("a proof line is not a base64 hash"),
            }
        }
        let Ok(note) = Note::from_bytes(rest.as_bytes()) else {
            return bad("not a signed note");
        };
        let Ok(checkpoint) = Checkpoint::from_bytes(note.text()) else {
            return bad("not a checkpoint");
        };
        let (origin, size) = (checkpoint.origin().to_owned(), checkpoint.size());
        answer.size = Some(size);
        let Some(vkey) = self.logs.lock().unwrap().get(&origin).cloned() else {
            return (404, b"unknown origin".to_vec());
        };
        let log = VerifierList::new(vec![Box::new(StandardVerifier::new(&vkey).unwrap())]);
        if note.verify(&log).is_err() {
            return (403, b"no signature by a trusted key".to_vec());
        }
        if old > size {
            return bad("the old size is bigger than the checkpoint's");
        }
        let root = checkpoint.hash().0;
        // Check and update under one lock.
        let mut state = self.state.lock().unwrap();
        let (known, known_root) = state.get(&origin).copied().unwrap_or((0, [0; 32]));
        if old != known {
            return (409, format!("{known}\n").into_bytes());
        }
        if old == size {
            if old > 0 && root != known_root {
                return (409, format!("{known}\n").into_bytes());
            }
            if !proof.is_empty() {
                return (422, b"a proof between equal sizes".to_vec());
            }
        } else if old == 0 {
            if !proof.is_empty() {
                return (422, b"a proof from size 0".to_vec());
            }
        } else if check_tree(&proof, size, Hash(root), old, Hash(known_root)).is_err() {
            return (422, b"the consistency proof does not verify".to_vec());
        }
        state.insert(origin, (size, root));
        drop(state);
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut message = format!("cosignature/v1\ntime {time}\n").into_bytes();
        message.extend_from_slice(note.text());
        let signature = self.key.sign(&message);
        let mut blob = self.key_id().to_be_bytes().to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        (
            200,
            format!("\u{2014} {} {}\n", self.name, BASE64.encode(blob)).into_bytes(),
        )
    }
}

/// A decimal without a sign or leading zeros.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

async fn add_checkpoint(State(w): State<Arc<TestWitness>>, body: Bytes) -> Response {
    let (status, reply) = w.handle(&body);
    let status = StatusCode::from_u16(status).unwrap();
    let content_type = if status == StatusCode::CONFLICT && reply.ends_with(b"\n") {
        "text/x.tlog.size"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, content_type)], reply).into_response()
}

/// Verifies `cosignature/v1` signatures for `signed_note` (which knows only the log's own
/// signature types): the signature is an 8-byte big-endian timestamp and an Ed25519
/// signature over `cosignature/v1\ntime <t>\n` and the note's text.
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 72 {
            return false;
        }
        let time = u64::from_be_bytes(sig[..8].try_into().unwrap());
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&sig[8..]) else {
            return false;
        };
        let mut message = format!("cosignature/v1\ntime {time}\n").into_bytes();
        message.extend_from_slice(msg);
        self.key.verify(&message, &signature).is_ok()
    }
}
