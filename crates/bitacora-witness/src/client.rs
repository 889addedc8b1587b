//! The client side of C2SP `tlog-witness`: one `add-checkpoint` call to one witness, and the
//! check of the `cosignature/v1` lines it answers with (C2SP `tlog-cosignature`).
//!
//! ```text
//! POST <submission prefix>/add-checkpoint
//!
//! old 1024
//! <base64 consistency proof hash>        (none when the old size is 0)
//! ...
//!                                        (an empty line)
//! <the signed checkpoint note>
//! ```
//!
//! The witness answers `200` with one or more signature lines, `409 Conflict` with the size it
//! last cosigned for the log (`text/x.tlog.size`) when the old size is not that one (or with
//! the same size and another root: a fork), `403` when no signature of the note is by a key it
//! trusts for the origin, `404` when it does not know the origin, `422` when the consistency
//! proof does not verify, `400` for a malformed request.
//!
//! Written here rather than taken from a crate: no Rust client of the spec is published; the
//! formats are a few lines, and the cosignature check reuses `bitacora_core::witness`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bitacora_core::canonical::Hash;
use bitacora_core::checkpoint::{NoteSignature, SignedNote};
use bitacora_core::witness::CosignerKey;
use thiserror::Error;

/// The longest consistency proof the spec lets a client send.
pub const MAX_PROOF_LINES: usize = 63;

/// The `Content-Type` of a 409 answer's body.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Bodies longer than this are not read (a cosignature line is about 150 bytes).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why a witness did not cosign.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubmitError {
    /// `409`: the old size was not the witness's latest cosigned size for the log (which it
    /// says, when it does), or it was, with the same size and a different root hash.
    #[error("409 Conflict: the witness's latest cosigned size is {}", .witness_size.map_or("not given".to_owned(), |s| s.to_string()))]
    Conflict { witness_size: Option<u64> },
    /// `403`: no signature on the checkpoint is by a key the witness trusts for its origin.
    #[error("403 Forbidden: the witness does not trust this log's key for the origin")]
    Forbidden,
    /// `404`: the witness does not know the origin.
    #[error("404 Not Found: the witness does not know this log's origin")]
    UnknownLog,
    /// `422`: the consistency proof did not verify.
    #[error("422 Unprocessable Entity: the witness refused the consistency proof")]
    BadProof,
    /// `400`: the witness could not read the request.
    #[error("400 Bad Request: {0}")]
    BadRequest(String),
    /// Any other status.
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed.
    #[error("cannot reach the witness: {0}")]
    Transport(String),
    /// A `200` whose body holds no valid cosignature by the witness's key, or a line by its
    /// key that does not verify.
    #[error("bad answer: {0}")]
    BadResponse(String),
    /// The request could not be made (a checkpoint without a text, a proof too long).
    #[error("cannot build the request: {0}")]
    Request(String),
}

/// One verified cosignature from a witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness's key name and key id.
    pub name: String,
    pub key_id: u32,
    /// The `cosignature/v1` timestamp.
    pub time: u64,
    /// The signature line, without its newline.
    pub line: String,
}

/// The body of an `add-checkpoint` request.
pub fn add_checkpoint_body(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old_size}\n");
    for hash in proof {
        body.push_str(&BASE64.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// A witness as the log sees it: its key (to check its cosignatures) and its submission
/// prefix.
#[derive(Debug, Clone)]
pub struct WitnessClient {
    key: CosignerKey,
    url: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl WitnessClient {
    /// A client of the witness at `submission_prefix` (the URL `add-checkpoint` is appended
    /// to) whose cosignatures verify with `key`.
    pub fn new(key: CosignerKey, submission_prefix: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("bitacora/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self::with_http(key, submission_prefix, http, timeout)
    }

    /// [`WitnessClient::new`] sharing an HTTP client (its connection pool: keep-alive).
    pub fn with_http(
        key: CosignerKey,
        submission_prefix: &str,
        http: reqwest::Client,
        timeout: Duration,
    ) -> Self {
        Self {
            key,
            url: format!("{}/add-checkpoint", submission_prefix.trim_end_matches('/')),
            http,
            timeout,
        }
    }

    pub fn key(&self) -> &CosignerKey {
        &self.key
    }

    /// The `add-checkpoint` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Submits the signed checkpoint `note` with a consistency proof from `old_size`, and
    /// returns the witness's cosignatures of it, each verified with the witness's key
    /// (lines by other keys are ignored, as the spec says).
    pub async fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Hash],
        note: &str,
    ) -> Result<Vec<Cosignature>, SubmitError> {
        if proof.len() > MAX_PROOF_LINES {
            return Err(SubmitError::Request(format!(
                "a consistency proof of {} hashes (at most {MAX_PROOF_LINES})",
                proof.len()
            )));
        }
        let text = SignedNote::parse(note.as_bytes())
            .map_err(|e| SubmitError::Request(format!("the checkpoint note: {e}")))?
            .text;
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(add_checkpoint_body(old_size, proof, note))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let body = read_limited(response)
            .await
            .map_err(|e| self.transport(e))?;
        match status {
            200 => self.cosignatures(&text, &body),
            409 => Err(SubmitError::Conflict {
                witness_size: parse_size(&body),
            }),
            403 => Err(SubmitError::Forbidden),
            404 => Err(SubmitError::UnknownLog),
            422 => Err(SubmitError::BadProof),
            400 => Err(SubmitError::BadRequest(excerpt(&body))),
            status => Err(SubmitError::Status {
                status,
                body: excerpt(&body),
            }),
        }
    }

    fn transport(&self, e: reqwest::Error) -> SubmitError {
        if e.is_timeout() {
            SubmitError::Timeout(self.timeout)
        } else {
            // Without the URL: the status shows which witness it is.
            SubmitError::Transport(e.without_url().to_string())
        }
    }

    /// The witness's valid cosignatures of `text` in a `200` body.
    fn cosignatures(&self, text: &str, body: &[u8]) -> Result<Vec<Cosignature>, SubmitError> {
        let body = std::str::from_utf8(body)
            .map_err(|_| SubmitError::BadResponse("the body is not UTF-8".into()))?;
        if body.is_empty() || !body.ends_with('\n') {
            return Err(SubmitError::BadResponse(
                "the body is not signature lines ending with a newline".into(),
            ));
        }
        // The spec's suggested parse: the lines appended to the checkpoint make a note.
        let parsed = SignedNote::parse(format!("{text}\n{body}").as_bytes())
            .map_err(|e| SubmitError::BadResponse(format!("not signature lines: {e}")))?;
        let mut out: Vec<Cosignature> = Vec::new();
        for sig in &parsed.signatures {
            if sig.name != self.key.name() || sig.key_id != self.key.key_id() {
                continue;
            }
            let Some(time) = self.key.verify(text, sig) else {
                return Err(SubmitError::BadResponse(format!(
                    "a cosignature by {} does not verify with the policy's key",
                    self.key.name()
                )));
            };
            let line = signature_line(sig);
            if !out.iter().any(|c| c.line == line) {
                out.push(Cosignature {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                    time,
                    line,
                });
            }
        }
        if out.is_empty() {
            return Err(SubmitError::BadResponse(format!(
                "no cosignature by the policy's key {}+{:08x}",
                self.key.name(),
                self.key.key_id()
            )));
        }
        Ok(out)
    }
}

/// A signature line as the note has it, without its newline.
pub fn signature_line(sig: &NoteSignature) -> String {
    let mut blob = Vec::with_capacity(4 + sig.signature.len());
    blob.extend_from_slice(&sig.key_id.to_be_bytes());
    blob.extend_from_slice(&sig.signature);
    format!("\u{2014} {} {}", sig.name, BASE64.encode(blob))
}

/// A 409 body: a decimal size and a newline.
fn parse_size(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let digits = text.strip_suffix('\n').unwrap_or(text);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// The start of a body, for an error message (one line, at most 200 characters).
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitacora_core::checkpoint::{Checkpoint, NoteSigner};
    use bitacora_core::witness::Cosigner;

    #[test]
    fn request_bodies_follow_the_spec() {
        let note = "o\n1\nAAAA\n\n\u{2014} o sig\n";
        assert_eq!(
            add_checkpoint_body(0, &[], note),
            format!("old 0\n\n{note}")
        );
        let body = add_checkpoint_body(5, &[[0; 32], [255; 32]], note);
        assert_eq!(
            body,
            format!(
                "old 5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
                 //////////////////////////////////////////8=\n\n{note}"
            )
        );
    }

    #[test]
    fn sizes_are_strict_decimals() {
        assert_eq!(parse_size(b"42\n"), Some(42));
        assert_eq!(parse_size(b"0\n"), Some(0));
        assert_eq!(parse_size(b"042\n"), None);
        assert_eq!(parse_size(b"-1\n"), None);
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"1 2\n"), None);
    }

    #[test]
    fn only_valid_cosignatures_by_the_witness_key_are_kept() {
        let log = NoteSigner::from_seed("bitacora", [1; 32]).unwrap();
        let note = log
            .sign_checkpoint(&Checkpoint::new("bitacora/acme", 3, [7; 32]))
            .unwrap();
        let text = SignedNote::parse(note.as_bytes()).unwrap().text;
        let witness = Cosigner::from_seed("w.example/1", [2; 32]).unwrap();
        let stranger = Cosigner::from_seed("w.example/2", [3; 32]).unwrap();
        let client = WitnessClient::new(
            witness.key().clone(),
            "http://127.0.0.1:1/",
            Duration::from_secs(1),
        );
        assert_eq!(client.url(), "http://127.0.0.1:1/add-checkpoint");
        let good = witness.cosign(&text, 1_700_000_000);
        let other = stranger.cosign(&text, 1_700_000_000);
        let got = client
            .cosignatures(&text, format!("{other}{good}{good}").as_bytes())
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].time, 1_700_000_000);
        assert_eq!(format!("{}\n", got[0].line), good);
        // Only a stranger's line: no cosignature.
        assert!(matches!(
            client.cosignatures(&text, other.as_bytes()),
            Err(SubmitError::BadResponse(_))
        ));
        // The witness's line over another checkpoint: refused.
        let other_note = log
            .sign_checkpoint(&Checkpoint::new("bitacora/acme", 4, [7; 32]))
            .unwrap();
        let other_text = SignedNote::parse(other_note.as_bytes()).unwrap().text;
        let wrong = witness.cosign(&other_text, 1);
        assert!(matches!(
            client.cosignatures(&text, wrong.as_bytes()),
            Err(SubmitError::BadResponse(_))
        ));
        // Not signature lines.
        assert!(client.cosignatures(&text, b"hello\n").is_err());
        assert!(client.cosignatures(&text, b"").is_err());
    }
}
