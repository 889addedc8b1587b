//! Checkpoint and signed-note parsing: any bytes an auditor may be handed.
//!
//! Never panics; a parsed note or checkpoint body re-serializes to the same text; a note
//! accepted by `verify_note` carries a valid signature by the one known key, so mutating a
//! genuinely signed checkpoint is never accepted unless its signed text is unchanged.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use bitacora_core::checkpoint::{
    Checkpoint, NoteSigner, NoteVerifier, SignedNote, open_checkpoint, verify_note,
};
use libfuzzer_sys::fuzz_target;

static SIGNER: LazyLock<NoteSigner> =
    LazyLock::new(|| NoteSigner::from_seed("bitacora-fuzz", [7u8; 32]).unwrap());

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    /// Raw bytes as a note, a checkpoint body, a verifier key and a private key.
    Raw(&'a [u8]),
    /// A signed checkpoint with one byte changed.
    Mutate {
        size: u64,
        root: [u8; 32],
        at: usize,
        byte: u8,
    },
}

fuzz_target!(|input: Input<'_>| {
    let verifiers = [SIGNER.verifier()];
    match input {
        Input::Raw(data) => {
            if let Ok(note) = SignedNote::parse(data) {
                assert!(note.text.ends_with('\n'));
            }
            let _ = verify_note(data, &verifiers);
            let _ = open_checkpoint(data, "bitacora/default", &verifiers);
            if let Ok(text) = std::str::from_utf8(data) {
                if let Ok(cp) = Checkpoint::parse_body(text) {
                    assert_eq!(cp.to_body(), text, "a checkpoint body does not round-trip");
                    assert!(cp.validate().is_ok());
                }
                if let Ok(v) = NoteVerifier::parse(text) {
                    assert_eq!(v.to_string(), text, "a verifier key does not round-trip");
                }
                if let Ok(s) = NoteSigner::from_private_key(text) {
                    assert_eq!(
                        s.to_private_key(),
                        text,
                        "a private key does not round-trip"
                    );
                }
            }
        }
        Input::Mutate {
            size,
            root,
            at,
            byte,
        } => {
            let cp = Checkpoint::new("bitacora/default", size, root);
            let note = SIGNER.sign_checkpoint(&cp).expect("signs");
            let (opened, _) = open_checkpoint(&note, "bitacora/default", &verifiers)
                .expect("a freshly signed checkpoint opens");
            assert_eq!(opened, cp);
            let mut bytes = note.clone().into_bytes();
            let i = at % bytes.len();
            if bytes[i] == byte {
                return;
            }
            bytes[i] = byte;
            if let Ok((mutated, _)) = open_checkpoint(&bytes, "bitacora/default", &verifiers) {
                // Only a change outside the signed text (e.g. a duplicated signature line's
                // ignored copy) may still open, and then it says exactly the same.
                assert_eq!(mutated, cp, "a mutated note opened with different content");
                let text_len = cp.to_body().len();
                assert!(i >= text_len, "the signed text changed and still verified");
            }
        }
    }
});
