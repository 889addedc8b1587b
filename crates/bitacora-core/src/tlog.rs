//! The C2SP transparency-log formats a tenant's log is served and proved in, besides
//! bitacora's own JSON (CONTRACT §11), with no I/O:
//!
//! - [`TilePath`]: the resource paths of C2SP `tlog-tiles` (`tile/<L>/<N>[.p/<W>]` and
//!   `tile/entries/<N>[.p/<W>]`), parsed strictly (one spelling per resource) and written;
//! - [`write_entry`] / [`parse_entry_bundle`]: entry bundles, each entry a big-endian
//!   `u16` length and the event's canonical bytes, so an entry is at most
//!   [`MAX_ENTRY_BYTES`] long (which is why ingest refuses bigger canonical forms);
//! - [`TlogProof`]: C2SP `tlog-proof@v1`, one event's inclusion proof with the signed
//!   checkpoint it leads to, and its offline check.
//!
//! The tree is the same RFC 6962 tree as [`crate::merkle`]: a hash tile is another encoding of
//! its complete nodes. The `n`-th tile of level `l` lists the nodes at tree level `8·l`, indices
//! `n·256 .. n·256 + w`; a level-0 tile lists leaf hashes.
//!
//! Written here rather than taken from a crate: the one Rust implementation of these specs
//! (`tlog_tiles`/`signed_note`, cloudflare/azul) is what the tests check this code against, so
//! it must stay independent of it; and the Go sumdb path form it implements carries a tile
//! height that C2SP paths do not.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use thiserror::Error;

use crate::canonical::Hash;
use crate::checkpoint::{Checkpoint, NoteError, NoteVerifier, open_log_checkpoint};
use crate::merkle::{self, NodeId, ProofError};

/// Hashes in a full tile (`2^8`): a tile covers 8 levels of the tree.
pub const TILE_WIDTH: u16 = 256;
/// Tree levels per tile level.
pub const TILE_HEIGHT: u8 = 8;
/// The longest entry an entry bundle can hold (its length prefix is a `u16`).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// Which kind of resource a tile path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// A hash tile of tile level `level` (0..=63).
    Hashes { level: u8 },
    /// An entry bundle (the entries whose leaf hashes a level-0 tile lists).
    Entries,
}

/// One `tlog-tiles` resource below a log's prefix: a hash tile or an entry bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TilePath {
    pub kind: TileKind,
    /// The tile's index within its level.
    pub index: u64,
    /// 1..=256; 256 is a full tile, anything less a partial one (`.p/<W>`).
    pub width: u16,
}

/// Why a path is not a `tlog-tiles` resource. Each names what is wrong, for a 404 body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a tlog-tiles path: {0}")]
pub struct TilePathError(pub &'static str);

impl TilePath {
    /// Parses `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`. Only the spec's one
    /// spelling of each resource is accepted (no leading zeros in `L` or `W`, no `x000`
    /// element before the first significant group, exactly three digits per group), so a
    /// cache never holds one resource under two names.
    pub fn parse(path: &str) -> Result<Self, TilePathError> {
        let rest = path
            .strip_prefix("tile/")
            .ok_or(TilePathError("it does not start with `tile/`"))?;
        let (head, rest) = rest
            .split_once('/')
            .ok_or(TilePathError("it has no tile index"))?;
        let kind = if head == "entries" {
            TileKind::Entries
        } else {
            let level = decimal(head).ok_or(TilePathError("the level is not a decimal"))?;
            if level > 63 {
                return Err(TilePathError("the level is above 63"));
            }
            TileKind::Hashes { level: level as u8 }
        };
        let mut parts: Vec<&str> = rest.split('/').collect();
        let mut width = TILE_WIDTH;
        if parts.len() >= 2 && parts[parts.len() - 2].ends_with(".p") {
            let w = decimal(parts[parts.len() - 1])
                .ok_or(TilePathError("the width is not a decimal"))?;
            if !(1..u64::from(TILE_WIDTH)).contains(&w) {
                return Err(TilePathError("a partial width is 1 to 255"));
            }
            width = w as u16;
            parts.pop();
            let last = parts.len() - 1;
            parts[last] = parts[last].strip_suffix(".p").unwrap_or(parts[last]);
        }
        // u64::MAX has 20 digits: 7 groups of 3.
        if parts.is_empty() || parts.len() > 7 {
            return Err(TilePathError("the index has too many elements"));
        }
        let mut index: u64 = 0;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let digits = if last {
                *part
            } else {
                part.strip_prefix('x').ok_or(TilePathError(
                    "all but the last index element start with `x`",
                ))?
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(TilePathError("an index element is not three digits"));
            }
            if i == 0 && !last && digits == "000" {
                return Err(TilePathError("the index has a leading `x000` element"));
            }
            let group: u64 = digits.parse().map_err(|_| TilePathError("bad index"))?;
            index = index
                .checked_mul(1000)
                .and_then(|n| n.checked_add(group))
                .ok_or(TilePathError("the index is too big"))?;
        }
        Ok(Self { kind, index, width })
    }

    /// The path, as [`TilePath::parse`] reads it.
    pub fn to_path(&self) -> String {
        let level = match self.kind {
            TileKind::Hashes { level } => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        let mut out = format!("tile/{level}/{}", encode_index(self.index));
        if self.width < TILE_WIDTH {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }

    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The tree level of the hashes this resource lists (0 for entries: their leaf hashes).
    pub fn tree_level(&self) -> u32 {
        match self.kind {
            TileKind::Hashes { level } => u32::from(level) * u32::from(TILE_HEIGHT),
            TileKind::Entries => 0,
        }
    }

    /// The nodes a hash tile lists (for entries, the leaves), left to right; `None` when
    /// they lie beyond what a `u64` tree size can reach (no such tile can ever exist).
    pub fn nodes(&self) -> Option<Vec<NodeId>> {
        let level = u8::try_from(self.tree_level()).ok().filter(|l| *l < 64)?;
        let first = self.index.checked_mul(u64::from(TILE_WIDTH))?;
        self.tree_size_needed()?;
        Some(
            (0..u64::from(self.width))
                .map(|i| NodeId::new(level, first + i))
                .collect(),
        )
    }

    /// The smallest tree size in which every hash of this resource is complete (for
    /// entries: the size that includes its last entry); `None` beyond `u64`.
    pub fn tree_size_needed(&self) -> Option<u64> {
        let end = u128::from(self.index) * u128::from(TILE_WIDTH) + u128::from(self.width);
        let shift = self.tree_level();
        // end < 2^64 and shift < 64: the product fits a u128 (`<<` would drop bits silently).
        if shift >= 64 || end > u128::from(u64::MAX) {
            return None;
        }
        u64::try_from(end << shift).ok()
    }

    /// For an entry bundle: the `seq`s of its entries, `[begin, end)`.
    pub fn entry_range(&self) -> Option<(u64, u64)> {
        let begin = self.index.checked_mul(u64::from(TILE_WIDTH))?;
        Some((begin, begin.checked_add(u64::from(self.width))?))
    }
}

/// `<N>` of a tile path: zero-padded 3-digit groups, all but the last prefixed with `x`
/// (1234067 is `x001/x234/067`).
pub fn encode_index(mut n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    while n >= 1000 {
        n /= 1000;
        groups.push(format!("x{:03}", n % 1000));
    }
    groups.reverse();
    groups.join("/")
}

/// A decimal with no sign and no leading zeros (`0` itself is allowed).
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// An entry longer than an entry bundle's `u16` length prefix can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("an entry of {0} bytes does not fit an entry bundle (at most {MAX_ENTRY_BYTES})")]
pub struct EntryTooLarge(pub usize);

/// Appends one entry to an entry bundle: its length as a big-endian `u16`, then its bytes.
pub fn write_entry(out: &mut Vec<u8>, entry: &[u8]) -> Result<(), EntryTooLarge> {
    let len = u16::try_from(entry.len()).map_err(|_| EntryTooLarge(entry.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(entry);
    Ok(())
}

/// Splits an entry bundle into its entries; `None` when a length runs past the end.
pub fn parse_entry_bundle(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return None;
        }
        out.push(&rest[..len]);
        bytes = &rest[len..];
    }
    Some(out)
}

/// The first line of every `tlog-proof@v1`.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// At most this many proof hashes are read (a tree of `u64` size needs at most 64).
const MAX_PROOF_HASHES: usize = 64;

/// A C2SP `tlog-proof@v1`: the entry's index, its RFC 6962 inclusion proof, and the signed
/// checkpoint (possibly cosigned) the proof leads to, verbatim.
///
/// ```text
/// c2sp.org/tlog-proof@v1
/// index 41
/// <base64 hash, leaf's sibling first>
/// ...
///
/// <the checkpoint note, verbatim>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated extra data (`extra <base64>`); bitacora writes none.
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub hashes: Vec<Hash>,
    /// The signed note, as the log served it.
    pub checkpoint: String,
}

/// Why a `tlog-proof` was refused.
#[derive(Debug, Error)]
pub enum TlogProofError {
    #[error("malformed tlog-proof: {0}")]
    Malformed(&'static str),
    #[error("the proof's checkpoint does not verify: {0}")]
    Checkpoint(#[from] NoteError),
    #[error("the inclusion proof does not lead to the checkpoint's root: {0}")]
    Inclusion(#[from] ProofError),
}

impl TlogProof {
    /// The proof's text.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(64 + 45 * self.hashes.len() + self.checkpoint.len());
        out.push_str(TLOG_PROOF_HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&BASE64.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&BASE64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a proof, strictly: it comes from whoever hands it over.
    pub fn parse(text: &str) -> Result<Self, TlogProofError> {
        let bad = TlogProofError::Malformed;
        let (header, mut rest) = text.split_once('\n').ok_or(bad("it has one line"))?;
        if header != TLOG_PROOF_HEADER {
            return Err(bad("the first line is not `c2sp.org/tlog-proof@v1`"));
        }
        fn next_line<'t>(rest: &mut &'t str) -> Result<&'t str, TlogProofError> {
            let (line, tail) = rest
                .split_once('\n')
                .ok_or(TlogProofError::Malformed("it ends before the checkpoint"))?;
            *rest = tail;
            Ok(line)
        }
        let mut line = next_line(&mut rest)?;
        let mut extra = None;
        if let Some(data) = line.strip_prefix("extra ") {
            extra = Some(
                BASE64
                    .decode(data)
                    .map_err(|_| bad("the extra data is not base64"))?,
            );
            line = next_line(&mut rest)?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(decimal)
            .ok_or(bad("no `index N` line"))?;
        let mut hashes = Vec::new();
        loop {
            let line = next_line(&mut rest)?;
            if line.is_empty() {
                break;
            }
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(bad("more than 64 proof hashes"));
            }
            let bytes = BASE64
                .decode(line)
                .map_err(|_| bad("a proof line is not base64"))?;
            hashes.push(
                Hash::try_from(bytes.as_slice())
                    .map_err(|_| bad("a proof hash is not 32 bytes"))?,
            );
        }
        if rest.is_empty() {
            return Err(bad("there is no checkpoint after the proof"));
        }
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint: rest.to_owned(),
        })
    }

    /// Checks that the entry whose leaf hash is `leaf` is at [`TlogProof::index`] of the tree
    /// a checkpoint of `origin` signed by one of `verifiers` commits to; returns that
    /// checkpoint. Each verifier's key counts under its own name or the origin's
    /// ([`crate::checkpoint::log_verifiers`]). Cosignatures are not checked here (a quorum is
    /// the caller's policy).
    pub fn verify(
        &self,
        leaf: &Hash,
        origin: &str,
        verifiers: &[NoteVerifier],
    ) -> Result<Checkpoint, TlogProofError> {
        let (checkpoint, _) = open_log_checkpoint(&self.checkpoint, origin, verifiers)?;
        merkle::verify_inclusion(
            leaf,
            self.index,
            checkpoint.size,
            &self.hashes,
            &checkpoint.root,
        )?;
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::leaf_hash;
    use crate::checkpoint::NoteSigner;

    #[test]
    fn index_encoding_matches_the_spec_examples() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(5), "005");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
    }

    #[test]
    fn paths_round_trip_and_only_one_spelling_parses() {
        for (path, kind, index, width) in [
            ("tile/0/000", TileKind::Hashes { level: 0 }, 0, 256),
            (
                "tile/0/x001/x234/067.p/1",
                TileKind::Hashes { level: 0 },
                1234067,
                1,
            ),
            (
                "tile/3/x001/000.p/255",
                TileKind::Hashes { level: 3 },
                1000,
                255,
            ),
            ("tile/entries/012", TileKind::Entries, 12, 256),
            ("tile/entries/x001/002.p/17", TileKind::Entries, 1002, 17),
            (
                "tile/63/x018/x446/x744/x073/x709/x551/615",
                TileKind::Hashes { level: 63 },
                u64::MAX,
                256,
            ),
        ] {
            let t = TilePath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(t, TilePath { kind, index, width }, "{path}");
            assert_eq!(t.to_path(), path);
        }
        for bad in [
            "tile/0/5",
            "tile/00/005",
            "tile/64/000",
            "tile/0/x000/005",
            "tile/0/001/002",
            "tile/0/x1/002",
            "tile/0/005.p/0",
            "tile/0/005.p/256",
            "tile/0/005.p/07",
            "tile/0/005.p",
            "tile/0/005/",
            "tile/0/",
            "tile/-1/000",
            "tile/entries",
            "tiles/0/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x001/x001/x001/x001/x001/x001/x001/001",
            "tile/0/+12",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn tile_geometry() {
        // Level 1 tile 0 lists nodes of tree level 8: each covers 256 leaves.
        let t = TilePath::parse("tile/1/000.p/17").unwrap();
        assert_eq!(t.tree_size_needed(), Some(17 * 256));
        assert_eq!(t.nodes().unwrap()[16], NodeId::new(8, 16));
        let t = TilePath::parse("tile/0/x001/000").unwrap();
        assert_eq!(t.tree_size_needed(), Some(1001 * 256));
        assert_eq!(t.nodes().unwrap()[0], NodeId::new(0, 256_000));
        // Tiles at level 8 and above need more than 2^64 leaves.
        assert_eq!(TilePath::parse("tile/8/000.p/1").unwrap().nodes(), None);
        assert_eq!(
            TilePath::parse("tile/7/000.p/1")
                .unwrap()
                .tree_size_needed(),
            Some(1 << 56)
        );
        assert_eq!(
            TilePath::parse("tile/7/001").unwrap().tree_size_needed(),
            None
        );
        let e = TilePath::parse("tile/entries/002.p/3").unwrap();
        assert_eq!(e.entry_range(), Some((512, 515)));
        assert_eq!(e.tree_size_needed(), Some(515));
    }

    #[test]
    fn entry_bundles_round_trip_and_refuse_long_entries() {
        let mut out = Vec::new();
        write_entry(&mut out, b"{}").unwrap();
        write_entry(&mut out, b"").unwrap();
        write_entry(&mut out, &vec![b'a'; MAX_ENTRY_BYTES]).unwrap();
        assert_eq!(&out[..4], &[0, 2, b'{', b'}']);
        let entries = parse_entry_bundle(&out).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].len(), MAX_ENTRY_BYTES);
        assert_eq!(
            write_entry(&mut out, &vec![b'a'; MAX_ENTRY_BYTES + 1]),
            Err(EntryTooLarge(MAX_ENTRY_BYTES + 1))
        );
        assert_eq!(parse_entry_bundle(&[0, 3, b'a']), None);
        assert_eq!(parse_entry_bundle(&[0]), None);
    }

    fn signed_tree(n: u64) -> (Vec<Hash>, NoteSigner, String) {
        let leaves: Vec<Hash> = (0..n)
            .map(|i| leaf_hash(format!("e{i}").as_bytes()))
            .collect();
        let root = merkle::root_from_leaves(&leaves);
        let signer = NoteSigner::from_seed("bitacora", [7; 32]).unwrap();
        let note = signer
            .sign_checkpoint(&Checkpoint::new("bitacora/acme", n, root))
            .unwrap();
        (leaves, signer, note)
    }

    #[test]
    fn proofs_round_trip_and_verify() {
        let (leaves, signer, note) = signed_tree(11);
        for index in [0u64, 5, 10] {
            let hashes = merkle::inclusion_proof::<ProofError>(index, 11, |id| {
                let (b, e) = id.leaf_range().unwrap();
                Ok(merkle::root_from_leaves(&leaves[b as usize..e as usize]))
            })
            .unwrap();
            let proof = TlogProof {
                extra: None,
                index,
                hashes,
                checkpoint: note.clone(),
            };
            let text = proof.to_text();
            assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex "));
            let parsed = TlogProof::parse(&text).unwrap();
            assert_eq!(parsed, proof);
            let cp = parsed
                .verify(
                    &leaves[index as usize],
                    "bitacora/acme",
                    &[signer.verifier()],
                )
                .unwrap();
            assert_eq!(cp.size, 11);
            // Another leaf, another origin, another key: refused.
            assert!(
                parsed
                    .verify(
                        &leaves[(index as usize + 1) % 11],
                        "bitacora/acme",
                        &[signer.verifier()]
                    )
                    .is_err()
            );
            assert!(
                parsed
                    .verify(
                        &leaves[index as usize],
                        "bitacora/other",
                        &[signer.verifier()]
                    )
                    .is_err()
            );
            let stranger = NoteSigner::from_seed("bitacora", [8; 32]).unwrap();
            assert!(
                parsed
                    .verify(
                        &leaves[index as usize],
                        "bitacora/acme",
                        &[stranger.verifier()]
                    )
                    .is_err()
            );
        }
        let with_extra = TlogProof {
            extra: Some(b"ctx".to_vec()),
            index: 0,
            hashes: vec![],
            checkpoint: note,
        };
        assert_eq!(TlogProof::parse(&with_extra.to_text()).unwrap(), with_extra);
    }

    #[test]
    fn malformed_proofs_are_refused() {
        let (_, _, note) = signed_tree(2);
        let h = BASE64.encode([1u8; 32]);
        for bad in [
            String::new(),
            "c2sp.org/tlog-proof@v2\nindex 0\n\n".to_owned() + &note,
            "c2sp.org/tlog-proof@v1\nindex 01\n\n".to_owned() + &note,
            "c2sp.org/tlog-proof@v1\nindex -1\n\n".to_owned() + &note,
            "c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\n".to_owned() + &note,
            format!("c2sp.org/tlog-proof@v1\nindex 0\n{}\n\n{note}", &h[..20]),
            format!("c2sp.org/tlog-proof@v1\nindex 0\n{h}\n"),
            format!("c2sp.org/tlog-proof@v1\nindex 0\n{h}\n\n"),
            format!(
                "c2sp.org/tlog-proof@v1\nindex 0\n{}\n{note}",
                format!("{h}\n").repeat(65)
            ),
        ] {
            assert!(TlogProof::parse(&bad).is_err(), "{bad:?} parsed");
        }
    }
}
