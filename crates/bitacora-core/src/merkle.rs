//! RFC 6962 / RFC 9162 Merkle tree math for a tenant's append-only log, with no storage.
//!
//! # Why this shape
//!
//! A log that must answer an inclusion or consistency proof in a couple of milliseconds at
//! ten million entries cannot rehash leaves to answer a request. Instead the store keeps
//! every **complete subtree hash**: the node at `(level, index)` covers the leaves
//! `[index * 2^level, (index + 1) * 2^level)` and, once all of those leaves exist, its hash
//! never changes again. That makes the stored nodes append-only, like the events themselves,
//! and lets this module stay storage-agnostic:
//!
//! - **Appending** a leaf completes `1 + trailing_ones(size)` nodes (amortised two per leaf).
//!   [`CompactRange`] (the right-edge frontier of perfect subtrees, as in
//!   transparency-dev/merkle's `compact.Range`) produces them without reading anything;
//!   [`append_nodes`] produces the same nodes by reading the left siblings from the store.
//! - **A proof** is at most `2 * log2(n)` node hashes. [`inclusion_proof_nodes`] and
//!   [`consistency_proof_nodes`] say which ones as [`NodeRef`]s: either one stored
//!   [`NodeRef::Complete`] node, or, on the ragged right edge of a tree whose size is not a
//!   power of two, a [`NodeRef::Ragged`] range whose hash is folded from at most `log2(n)`
//!   stored complete nodes. [`resolve_proof`] turns them into hashes given a node lookup, so a
//!   store can fetch the nodes one by one or all at once ([`required_nodes`]).
//! - **Roots** of any past size are folded from at most `log2(n)` complete nodes
//!   ([`root_nodes`], [`root_from_nodes`]), so every checkpoint ever signed can be re-checked.
//!
//! The verifiers ([`verify_inclusion`], [`verify_consistency`]) are the RFC 9162 §2.1.3.2
//! and §2.1.4.2 algorithms, so a proof from bitacora is checked exactly as any other
//! transparency-log client would check it.
//!
//! Every function here is total: sizes and indexes may come from untrusted requests or
//! bundles, and a bad one is an error, never a panic or an overflow.

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::canonical::{Hash, node_hash};

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// A leaf index that is not in the tree (`index >= size`).
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof asked from a bigger tree to a smaller one.
    #[error("tree size {first} is bigger than tree size {second}")]
    SizesOutOfOrder { first: u64, second: u64 },
    /// A proof with more or fewer hashes than the tree sizes call for.
    #[error("the proof has {actual} hashes where {expected} are expected")]
    WrongProofLength { expected: usize, actual: usize },
    /// The proof is well formed but does not lead to the expected root hash.
    #[error("the proof does not match the root hash")]
    RootMismatch,
    /// A compact range whose hashes do not match its size.
    #[error("a compact range of size {size} needs {expected} hashes, not {actual}")]
    MalformedRange {
        size: u64,
        expected: usize,
        actual: usize,
    },
    /// The tree already holds `u64::MAX` leaves.
    #[error("the tree is full")]
    TreeFull,
}

/// The root of the empty tree: `SHA-256("")` (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// A node of the tree: the one at `level` (0 = leaves) and `index` (from the left, within
/// that level) covers leaves `[index * 2^level, (index + 1) * 2^level)`.
///
/// A node is *complete* in a tree of size `n` when all of its leaves exist; complete nodes
/// never change, which is why they are what a store keeps. Levels never exceed 63: a node at
/// level 64 would cover 2^64 leaves, more than a `u64` size can count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }

    /// The leaf at position `index` (a log `seq`).
    pub const fn leaf(index: u64) -> Self {
        Self { level: 0, index }
    }

    /// The leaves this node covers, `[begin, end)`; `None` if the range does not fit in a
    /// `u64` (which no node of a real tree does).
    pub fn leaf_range(self) -> Option<(u64, u64)> {
        if self.level > 63 {
            return None;
        }
        let begin = u128::from(self.index) << self.level;
        let end = begin + (1u128 << self.level);
        Some((u64::try_from(begin).ok()?, u64::try_from(end).ok()?))
    }
}

/// One element of a proof, before it is read from storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRef {
    /// A complete node, stored as is.
    Complete(NodeId),
    /// The node on the ragged right edge of the tree that covers leaves `[begin, end)`,
    /// where `end` is the tree size. It is not complete, so it is not stored; its hash is
    /// the RFC 6962 hash of those leaves, folded from the complete nodes of
    /// [`NodeRef::nodes`] (`h = n_last; h = node_hash(n_i, h)` right to left).
    Ragged { begin: u64, end: u64 },
}

impl NodeRef {
    /// The complete nodes this element is made of, left to right.
    pub fn nodes(&self) -> Vec<NodeId> {
        match *self {
            NodeRef::Complete(id) => vec![id],
            NodeRef::Ragged { begin, end } => range_nodes(begin, end),
        }
    }
}

/// Splits the leaves `[begin, end)` into the fewest aligned perfect subtrees, left to right
/// (empty when `begin >= end`).
///
/// For `[0, n)` these are the subtrees whose hashes fold into the root of a tree of size
/// `n`; for a ragged right-edge node they are the subtrees its hash folds from.
pub fn range_nodes(begin: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut pos = begin;
    while pos < end {
        // The biggest block that starts at `pos` (aligned) and still fits before `end`.
        let align = if pos == 0 { 63 } else { pos.trailing_zeros() };
        let fit = 63 - (end - pos).leading_zeros();
        let level = align.min(fit);
        out.push(NodeId {
            level: level as u8,
            index: pos >> level,
        });
        // Cannot overflow: pos + 2^level <= end.
        pos += 1u64 << level;
    }
    out
}

/// The complete nodes whose hashes fold into the root of a tree of `size` leaves, left to
/// right: one per set bit of `size`, biggest first.
pub fn root_nodes(size: u64) -> Vec<NodeId> {
    range_nodes(0, size)
}

/// Folds the hashes of perfect subtrees listed left to right (each at least as big as the
/// next, as [`range_nodes`] gives them for a tree or a ragged node) into one hash:
/// the rightmost two are joined first, as RFC 6962's MTH does.
fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// The root of a tree of `size` leaves from its stored complete nodes ([`root_nodes`]):
/// at most 64 lookups. The empty tree's root is [`empty_root`].
pub fn root_from_nodes<E>(
    size: u64,
    mut get: impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Hash, E> {
    let hashes = root_nodes(size)
        .into_iter()
        .map(&mut get)
        .collect::<Result<Vec<_>, E>>()?;
    Ok(fold_right(&hashes).unwrap_or_else(empty_root))
}

/// The RFC 6962 root of a list of leaf hashes (`MTH`), computed level by level in O(n).
///
/// For verifying bundles and for tests; a server never needs to rehash its whole log.
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return empty_root();
    }
    // Pairing left to right and carrying an odd last node up unchanged yields exactly the
    // RFC 6962 tree, whose left subtrees are always perfect.
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        let pairs = level.chunks_exact(2);
        let carry = pairs.remainder().to_vec();
        let mut next: Vec<Hash> = pairs.map(|p| node_hash(&p[0], &p[1])).collect();
        next.extend(carry);
        level = next;
    }
    level[0]
}

/// Walks from the node `(level, index)` up to the root of a tree of `size` leaves and
/// emits the sibling of each node on the way, bottom up (the RFC 9162 PATH order).
///
/// A node whose sibling lies wholly beyond the tree has no sibling at that level (RFC 6962
/// promotes it unchanged); a sibling that straddles the end is the ragged right edge.
/// Caller guarantees: `level <= 63` and the node's first leaf is `< size`.
fn path_siblings(level: u8, index: u64, size: u64, mut emit: impl FnMut(NodeRef)) {
    let size = u128::from(size);
    let last = size - 1;
    let mut i = u128::from(index);
    let mut l = u32::from(level);
    // The node at (l, i) is the root once it covers the last leaf from index 0.
    while l < 64 && (last >> l) != 0 {
        let sibling = i ^ 1;
        let begin = sibling << l;
        if begin <= last {
            let end = begin + (1u128 << l);
            if end <= size {
                emit(NodeRef::Complete(NodeId {
                    level: l as u8,
                    index: sibling as u64,
                }));
            } else {
                emit(NodeRef::Ragged {
                    begin: begin as u64,
                    end: size as u64,
                });
            }
        }
        i >>= 1;
        l += 1;
    }
}

/// Number of hashes in an inclusion proof; `None` for an index outside the tree.
fn inclusion_len(index: u64, size: u64) -> Option<usize> {
    if index >= size {
        return None;
    }
    let mut n = 0;
    path_siblings(0, index, size, |_| n += 1);
    Some(n)
}

/// Which nodes make the inclusion proof of leaf `index` in the tree of `size` leaves
/// (RFC 9162 §2.1.3.1), in proof order (the leaf's sibling first).
pub fn inclusion_proof_nodes(index: u64, size: u64) -> Result<Vec<NodeRef>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::with_capacity(64);
    path_siblings(0, index, size, |r| out.push(r));
    Ok(out)
}

/// The node a consistency proof from `size1` starts from: the last perfect subtree of the
/// old tree, `None` when `size1` is a power of two (the verifier already has that hash: it is
/// the old root).
fn consistency_start(size1: u64) -> (NodeId, bool) {
    let level = size1.trailing_zeros() as u8;
    let index = (size1 - 1) >> level;
    (NodeId { level, index }, index != 0)
}

/// Which nodes make the consistency proof between the trees of `size1` and `size2` leaves
/// (RFC 9162 §2.1.4.1, `SUBPROOF(size1, D[size2], true)`), in proof order.
///
/// The proof is empty when `size1 == size2` or `size1 == 0` (every tree extends the empty
/// tree).
pub fn consistency_proof_nodes(size1: u64, size2: u64) -> Result<Vec<NodeRef>, ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder {
            first: size1,
            second: size2,
        });
    }
    if size1 == 0 || size1 == size2 {
        return Ok(Vec::new());
    }
    let (start, include_start) = consistency_start(size1);
    let mut out = Vec::with_capacity(65);
    if include_start {
        out.push(NodeRef::Complete(start));
    }
    path_siblings(start.level, start.index, size2, |r| out.push(r));
    Ok(out)
}

/// Number of hashes in a consistency proof for `0 < size1 < size2`.
fn consistency_len(size1: u64, size2: u64) -> usize {
    let (start, include_start) = consistency_start(size1);
    let mut n = usize::from(include_start);
    path_siblings(start.level, start.index, size2, |_| n += 1);
    n
}

/// Every complete node a proof needs, in proof order (for a store that fetches them in one
/// query and then resolves from a map).
pub fn required_nodes(refs: &[NodeRef]) -> Vec<NodeId> {
    refs.iter().flat_map(NodeRef::nodes).collect()
}

/// Turns proof elements into hashes, reading complete nodes with `get`.
pub fn resolve_proof<E>(
    refs: &[NodeRef],
    mut get: impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut out = Vec::with_capacity(refs.len());
    let mut parts = Vec::new();
    for r in refs {
        match *r {
            NodeRef::Complete(id) => out.push(get(id)?),
            NodeRef::Ragged { begin, end } => {
                parts.clear();
                for id in range_nodes(begin, end) {
                    parts.push(get(id)?);
                }
                // An empty ragged range cannot come from this module; hash it as the
                // empty tree rather than panic if a caller builds one.
                out.push(fold_right(&parts).unwrap_or_else(empty_root));
            }
        }
    }
    Ok(out)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves, reading stored complete
/// nodes with `get`: at most `2 * 64` lookups.
pub fn inclusion_proof<E: From<ProofError>>(
    index: u64,
    size: u64,
    get: impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let refs = inclusion_proof_nodes(index, size)?;
    resolve_proof(&refs, get)
}

/// The consistency proof between the trees of `size1` and `size2` leaves, reading stored
/// complete nodes with `get`.
pub fn consistency_proof<E: From<ProofError>>(
    size1: u64,
    size2: u64,
    get: impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let refs = consistency_proof_nodes(size1, size2)?;
    resolve_proof(&refs, get)
}

/// The nodes that become complete when `leaf` is appended to a tree of `size_before`
/// leaves, bottom up: the leaf itself at `(0, size_before)`, then each parent it completes.
/// The left siblings are read with `get`; [`CompactRange::append`] does the same from memory.
pub fn append_nodes<E: From<ProofError>>(
    size_before: u64,
    leaf: Hash,
    mut get: impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<(NodeId, Hash)>, E> {
    if size_before == u64::MAX {
        return Err(ProofError::TreeFull.into());
    }
    let mut out = vec![(NodeId::leaf(size_before), leaf)];
    let mut hash = leaf;
    let mut index = size_before;
    let mut level = 0u8;
    // Each trailing one bit of the index is a complete left sibling waiting for this node.
    while index & 1 == 1 {
        let left = get(NodeId {
            level,
            index: index - 1,
        })?;
        hash = node_hash(&left, &hash);
        index >>= 1;
        level += 1;
        out.push((NodeId { level, index }, hash));
    }
    Ok(out)
}

/// The right edge of a tree: the hashes of the perfect subtrees of [`root_nodes`]`(size)`,
/// biggest first. It is all an appender needs to keep in memory: appending completes nodes
/// without reading storage, and the root is a fold of at most 64 hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl Default for CompactRange {
    fn default() -> Self {
        Self::new()
    }
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> Self {
        Self {
            size: 0,
            hashes: Vec::new(),
        }
    }

    /// A range from a size and the hashes of its [`root_nodes`], biggest first.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, ProofError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(ProofError::MalformedRange {
                size,
                expected,
                actual: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Loads the range of a stored tree of `size` leaves: reads its [`root_nodes`].
    pub fn load<E>(size: u64, mut get: impl FnMut(NodeId) -> Result<Hash, E>) -> Result<Self, E> {
        let hashes = root_nodes(size)
            .into_iter()
            .map(&mut get)
            .collect::<Result<Vec<_>, E>>()?;
        Ok(Self { size, hashes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier hashes, biggest subtree first (the nodes of [`root_nodes`]`(size)`).
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The RFC 6962 root hash of the tree.
    pub fn root(&self) -> Hash {
        fold_right(&self.hashes).unwrap_or_else(empty_root)
    }

    /// Appends a leaf hash and returns the nodes it completes, bottom up (see
    /// [`append_nodes`]); a store persists them.
    pub fn append(&mut self, leaf: Hash) -> Result<Vec<(NodeId, Hash)>, ProofError> {
        let mut out = Vec::with_capacity(1 + self.size.trailing_ones() as usize);
        self.append_with(leaf, |id, h| out.push((id, *h)))?;
        Ok(out)
    }

    /// Like [`CompactRange::append`], handing each completed node to `visit` instead of
    /// allocating.
    pub fn append_with(
        &mut self,
        leaf: Hash,
        mut visit: impl FnMut(NodeId, &Hash),
    ) -> Result<(), ProofError> {
        if self.size == u64::MAX {
            return Err(ProofError::TreeFull);
        }
        let mut index = self.size;
        let mut level = 0u8;
        let mut hash = leaf;
        visit(NodeId::leaf(index), &hash);
        while index & 1 == 1 {
            // The frontier ends with the left sibling: one hash per set bit of the size,
            // and the lowest set bits are the trailing ones of the index.
            let Some(left) = self.hashes.pop() else {
                return Err(ProofError::MalformedRange {
                    size: self.size,
                    expected: self.size.count_ones() as usize,
                    actual: 0,
                });
            };
            hash = node_hash(&left, &hash);
            index >>= 1;
            level += 1;
            visit(NodeId { level, index }, &hash);
        }
        self.hashes.push(hash);
        self.size += 1;
        Ok(())
    }
}

/// The root hash an inclusion proof leads to (RFC 9162 §2.1.3.2, steps 1-4).
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    let Some(expected) = inclusion_len(index, size) else {
        return Err(ProofError::IndexOutOfRange { index, size });
    };
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    Ok(r)
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is
/// `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion_proof(leaf_hash, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Checks that the tree of `size2` leaves with root `root2` extends the tree of `size1`
/// leaves with root `root1` (RFC 9162 §2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots; any tree extends the empty one
/// (`size1 == 0`, empty proof; `root1` is not consulted).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder {
            first: size1,
            second: size2,
        });
    }
    if size1 == size2 || size1 == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        return if size1 == 0 || root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let expected = consistency_len(size1, size2);
    let wrong_length = ProofError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // Step 2: when size1 is a power of two the old root is the first node of the path.
    let (first, rest) = if size1.is_power_of_two() {
        (*root1, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(wrong_length),
        }
    };
    let mut fnode = size1 - 1;
    let mut snode = size2 - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = first;
    let mut sr = first;
    for c in rest {
        if snode == 0 {
            return Err(wrong_length);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_length);
    }
    if fr == *root1 && sr == *root2 {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::leaf_hash;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::convert::Infallible;

    fn h(s: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    // ---- RFC 6962 test vectors (transparency-dev/merkle testonly/constants.go and
    // proof/verify_test.go, which carry certificate-transparency-go's) ----

    fn vector_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| leaf_hash(&hex::decode(s).unwrap()))
        .collect()
    }

    /// NodeHashes(): every complete node of the 8-leaf tree, per level.
    fn vector_nodes() -> Vec<Vec<Hash>> {
        vec![
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
                h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
                h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
            ],
            vec![
                h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            ],
            vec![
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
            vec![h(
                "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
            )],
        ]
    }

    /// RootHashes(): the root for each size 0..=8.
    fn vector_roots() -> Vec<Hash> {
        vec![
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
            h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
            h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
            h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
            h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
        ]
    }

    /// inclusionProofs: (0-based leaf index, tree size, proof).
    fn vector_inclusion_proofs() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (0, 1, vec![]),
            (
                0,
                8,
                vec![
                    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
                ],
            ),
            (
                5,
                8,
                vec![
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                2,
                3,
                vec![h(
                    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                )],
            ),
            (
                1,
                5,
                vec![
                    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
        ]
    }

    /// consistencyProofs: (size1, size2, proof).
    fn vector_consistency_proofs() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (1, 1, vec![]),
            (
                1,
                8,
                vec![
                    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
                ],
            ),
            (
                6,
                8,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                2,
                5,
                vec![
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
            (
                6,
                7,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
        ]
    }

    /// An in-memory store of complete nodes, filled through [`CompactRange::append`].
    struct Store {
        leaves: Vec<Hash>,
        nodes: HashMap<NodeId, Hash>,
    }

    impl Store {
        fn new(leaves: &[Hash]) -> Self {
            let mut range = CompactRange::new();
            let mut nodes = HashMap::new();
            for leaf in leaves {
                for (id, hash) in range.append(*leaf).unwrap() {
                    assert!(
                        nodes.insert(id, hash).is_none(),
                        "node {id:?} completed twice"
                    );
                }
            }
            Self {
                leaves: leaves.to_vec(),
                nodes,
            }
        }

        fn get(&self) -> impl FnMut(NodeId) -> Result<Hash, ProofError> + '_ {
            |id| {
                Ok(*self
                    .nodes
                    .get(&id)
                    .unwrap_or_else(|| panic!("node {id:?} is not complete")))
            }
        }
    }

    #[test]
    fn vector_nodes_and_roots() {
        let leaves = vector_leaves();
        let nodes = vector_nodes();
        assert_eq!(leaves, nodes[0]);
        let store = Store::new(&leaves);
        assert_eq!(store.nodes.len(), 15);
        for (level, row) in nodes.iter().enumerate() {
            for (index, hash) in row.iter().enumerate() {
                assert_eq!(store.nodes[&NodeId::new(level as u8, index as u64)], *hash);
            }
        }
        let roots = vector_roots();
        assert_eq!(empty_root(), roots[0]);
        let mut range = CompactRange::new();
        assert_eq!(range.root(), roots[0]);
        for (size, root) in roots.iter().enumerate().skip(1) {
            range.append(leaves[size - 1]).unwrap();
            assert_eq!(range.root(), *root, "compact range root at size {size}");
            assert_eq!(root_from_leaves(&leaves[..size]), *root);
            assert_eq!(root_from_nodes(size as u64, store.get()).unwrap(), *root);
        }
    }

    #[test]
    fn vector_compact_trees() {
        // CompactTrees(): the frontier for each size, as (level, index) of NodeHashes().
        let nh = vector_nodes();
        let want: Vec<Vec<Hash>> = vec![
            vec![],
            vec![nh[0][0]],
            vec![nh[1][0]],
            vec![nh[1][0], nh[0][2]],
            vec![nh[2][0]],
            vec![nh[2][0], nh[0][4]],
            vec![nh[2][0], nh[1][2]],
            vec![nh[2][0], nh[1][2], nh[0][6]],
            vec![nh[3][0]],
        ];
        let mut range = CompactRange::new();
        for (size, frontier) in want.iter().enumerate() {
            assert_eq!(range.hashes(), frontier.as_slice(), "size {size}");
            if let Some(leaf) = nh[0].get(size) {
                range.append(*leaf).unwrap();
            }
        }
    }

    #[test]
    fn vector_inclusion() {
        let leaves = vector_leaves();
        let roots = vector_roots();
        let store = Store::new(&leaves);
        for (index, size, want) in vector_inclusion_proofs() {
            let got = inclusion_proof(index, size, store.get()).unwrap();
            assert_eq!(got, want, "inclusion proof ({index}, {size})");
            let leaf = leaves[index as usize];
            let root = roots[size as usize];
            verify_inclusion(&leaf, index, size, &want, &root).unwrap();
            for (desc, probe) in corrupt_inclusion(index, size, &want, &root, &leaf) {
                assert!(
                    verify_inclusion(
                        &probe.leaf,
                        probe.index,
                        probe.size,
                        &probe.proof,
                        &probe.root
                    )
                    .is_err(),
                    "({index}, {size}) verified with {desc}"
                );
            }
        }
    }

    #[test]
    fn vector_consistency() {
        let leaves = vector_leaves();
        let roots = vector_roots();
        let store = Store::new(&leaves);
        for (size1, size2, want) in vector_consistency_proofs() {
            let got = consistency_proof(size1, size2, store.get()).unwrap();
            assert_eq!(got, want, "consistency proof ({size1}, {size2})");
            let (r1, r2) = (roots[size1 as usize], roots[size2 as usize]);
            verify_consistency(size1, size2, &want, &r1, &r2).unwrap();
            if want.is_empty() {
                continue;
            }
            for (desc, p) in corrupt_consistency(size1, size2, &want, &r1, &r2) {
                assert!(
                    verify_consistency(p.size1, p.size2, &p.proof, &p.root1, &p.root2).is_err(),
                    "({size1}, {size2}) verified with {desc}"
                );
            }
        }
    }

    #[test]
    fn verify_consistency_edge_cases() {
        // transparency-dev/merkle TestVerifyConsistency: sizes that are always consistent,
        // time travel, missing and superfluous proofs.
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let empty = empty_root();
        assert!(verify_consistency(0, 0, &[], &a, &a).is_ok());
        assert!(verify_consistency(0, 1, &[], &a, &b).is_ok());
        assert!(verify_consistency(1, 1, &[], &b, &b).is_ok());
        assert!(verify_consistency(1, 1, &[], &a, &b).is_err());
        assert!(verify_consistency(1, 0, &[], &a, &b).is_err());
        assert!(verify_consistency(2, 1, &[], &a, &b).is_err());
        assert!(verify_consistency(1, 2, &[], &a, &b).is_err());
        assert!(verify_consistency(0, 0, &[empty], &empty, &empty).is_err());
        assert!(verify_consistency(0, 1, &[empty], &empty, &empty).is_err());
        assert!(verify_consistency(1, 1, &[empty], &empty, &empty).is_err());
    }

    #[test]
    fn verify_inclusion_edge_cases() {
        let some = [7u8; 32];
        for (index, size) in [(0, 0), (1, 0), (2, 1), (u64::MAX, u64::MAX)] {
            assert_eq!(
                verify_inclusion(&some, index, size, &[], &some),
                Err(ProofError::IndexOutOfRange { index, size })
            );
        }
        // A one-leaf tree: the root is the leaf and the proof is empty.
        let leaf = leaf_hash(b"data");
        assert!(verify_inclusion(&leaf, 0, 1, &[], &leaf).is_ok());
        assert!(verify_inclusion(&leaf, 0, 1, &[], &some).is_err());
        assert!(verify_inclusion(&leaf, 0, 1, &[leaf], &leaf).is_err());
        assert!(verify_inclusion(&some, 0, 1, &[], &leaf).is_err());
        assert_eq!(
            inclusion_proof_nodes(3, 3),
            Err(ProofError::IndexOutOfRange { index: 3, size: 3 })
        );
        assert_eq!(
            consistency_proof_nodes(4, 3),
            Err(ProofError::SizesOutOfOrder {
                first: 4,
                second: 3
            })
        );
    }

    struct InclusionProbe {
        leaf: Hash,
        index: u64,
        size: u64,
        proof: Vec<Hash>,
        root: Hash,
    }

    /// transparency-dev/merkle's corruptInclusionProof, with hashes that are always 32 bytes.
    fn corrupt_inclusion(
        index: u64,
        size: u64,
        proof: &[Hash],
        root: &Hash,
        leaf: &Hash,
    ) -> Vec<(String, InclusionProbe)> {
        let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        let p = |leaf: Hash, index: u64, size: u64, proof: Vec<Hash>, root: Hash| InclusionProbe {
            leaf,
            index,
            size,
            proof,
            root,
        };
        let mut out = vec![
            (
                "index - 1".into(),
                p(*leaf, index.wrapping_sub(1), size, proof.to_vec(), *root),
            ),
            (
                "index + 1".into(),
                p(*leaf, index + 1, size, proof.to_vec(), *root),
            ),
            (
                "index ^ 2".into(),
                p(*leaf, index ^ 2, size, proof.to_vec(), *root),
            ),
            (
                "size * 2".into(),
                p(*leaf, index, size * 2, proof.to_vec(), *root),
            ),
            (
                "size / 2".into(),
                p(*leaf, index, size / 2, proof.to_vec(), *root),
            ),
            (
                "wrong leaf".into(),
                p(leaf_hash(b"WrongLeaf"), index, size, proof.to_vec(), *root),
            ),
            (
                "empty root".into(),
                p(*leaf, index, size, proof.to_vec(), empty_root()),
            ),
            (
                "random root".into(),
                p(*leaf, index, size, proof.to_vec(), some),
            ),
            (
                "trailing root".into(),
                p(*leaf, index, size, [proof, &[*root]].concat(), *root),
            ),
            (
                "preceding root".into(),
                p(*leaf, index, size, [&[*root], proof].concat(), *root),
            ),
        ];
        for i in 0..proof.len() {
            let mut wrong = proof.to_vec();
            wrong[i][0] ^= 8;
            out.push((
                format!("proof[{i}] bit 3"),
                p(*leaf, index, size, wrong, *root),
            ));
        }
        if let Some((_, head)) = proof.split_last() {
            out.push((
                "removed component".into(),
                p(*leaf, index, size, head.to_vec(), *root),
            ));
        }
        if proof.len() > 1 {
            let mut wrong = vec![proof[0], some];
            wrong.extend_from_slice(&proof[1..]);
            out.push((
                "inserted component".into(),
                p(*leaf, index, size, wrong, *root),
            ));
        }
        out
    }

    struct ConsistencyProbe {
        size1: u64,
        size2: u64,
        proof: Vec<Hash>,
        root1: Hash,
        root2: Hash,
    }

    /// transparency-dev/merkle's corruptConsistencyProof.
    fn corrupt_consistency(
        size1: u64,
        size2: u64,
        proof: &[Hash],
        root1: &Hash,
        root2: &Hash,
    ) -> Vec<(String, ConsistencyProbe)> {
        let wrong_root = leaf_hash(b"WrongRoot");
        let p = |size1, size2, proof: Vec<Hash>, root1, root2| ConsistencyProbe {
            size1,
            size2,
            proof,
            root1,
            root2,
        };
        let v = proof.to_vec();
        let mut out = vec![
            (
                "size1 - 1".into(),
                p(size1 - 1, size2, v.clone(), *root1, *root2),
            ),
            (
                "size1 + 1".into(),
                p(size1 + 1, size2, v.clone(), *root1, *root2),
            ),
            (
                "size1 ^ 2".into(),
                p(size1 ^ 2, size2, v.clone(), *root1, *root2),
            ),
            (
                "size2 * 2".into(),
                p(size1, size2 * 2, v.clone(), *root1, *root2),
            ),
            (
                "size2 / 2".into(),
                p(size1, size2 / 2, v.clone(), *root1, *root2),
            ),
            (
                "wrong root1".into(),
                p(size1, size2, v.clone(), wrong_root, *root2),
            ),
            (
                "wrong root2".into(),
                p(size1, size2, v.clone(), *root1, wrong_root),
            ),
            (
                "swapped roots".into(),
                p(size1, size2, v.clone(), *root2, *root1),
            ),
            (
                "empty proof".into(),
                p(size1, size2, vec![], *root1, *root2),
            ),
            (
                "trailing root1".into(),
                p(size1, size2, [proof, &[*root1]].concat(), *root1, *root2),
            ),
            (
                "trailing root2".into(),
                p(size1, size2, [proof, &[*root2]].concat(), *root1, *root2),
            ),
            (
                "preceding root1".into(),
                p(size1, size2, [&[*root1], proof].concat(), *root1, *root2),
            ),
            (
                "preceding root2".into(),
                p(size1, size2, [&[*root2], proof].concat(), *root1, *root2),
            ),
            (
                "preceding proof[0]".into(),
                p(size1, size2, [&proof[..1], proof].concat(), *root1, *root2),
            ),
            (
                "truncated proof".into(),
                p(
                    size1,
                    size2,
                    proof[..proof.len() - 1].to_vec(),
                    *root1,
                    *root2,
                ),
            ),
        ];
        for i in 0..proof.len() {
            let mut wrong = v.clone();
            wrong[i][0] ^= 16;
            out.push((
                format!("proof[{i}] bit 4"),
                p(size1, size2, wrong, *root1, *root2),
            ));
        }
        out
    }

    // ---- An independent, naive implementation straight from RFC 6962 §2.1 ----

    mod naive {
        use crate::canonical::{Hash, node_hash};
        use sha2::{Digest, Sha256};

        /// The largest power of two smaller than n (n > 1).
        fn split(n: usize) -> usize {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            k
        }

        /// MTH(D[n]) over leaf hashes.
        pub fn mth(d: &[Hash]) -> Hash {
            match d.len() {
                0 => Sha256::digest(b"").into(),
                1 => d[0],
                n => {
                    let k = split(n);
                    node_hash(&mth(&d[..k]), &mth(&d[k..]))
                }
            }
        }

        /// PATH(m, D[n]).
        pub fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
            let n = d.len();
            if n <= 1 {
                return vec![];
            }
            let k = split(n);
            if m < k {
                let mut p = path(m, &d[..k]);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = path(m - k, &d[k..]);
                p.push(mth(&d[..k]));
                p
            }
        }

        /// PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
        pub fn proof(m: usize, d: &[Hash]) -> Vec<Hash> {
            subproof(m, d, true)
        }

        fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
            let n = d.len();
            if m == n {
                return if b { vec![] } else { vec![mth(d)] };
            }
            let k = split(n);
            if m <= k {
                let mut p = subproof(m, &d[..k], b);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = subproof(m - k, &d[k..], false);
                p.push(mth(&d[..k]));
                p
            }
        }
    }

    fn test_leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("event {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn matches_naive_rfc6962_for_every_index_and_size_up_to_64() {
        let leaves = test_leaves(64);
        let store = Store::new(&leaves);
        for n in 1..=64usize {
            let d = &leaves[..n];
            let root = naive::mth(d);
            assert_eq!(root_from_nodes(n as u64, store.get()).unwrap(), root);
            assert_eq!(root_from_leaves(d), root);
            for (m, leaf) in d.iter().enumerate() {
                let want = naive::path(m, d);
                let got = inclusion_proof(m as u64, n as u64, store.get()).unwrap();
                assert_eq!(got, want, "PATH({m}, D[{n}])");
                verify_inclusion(leaf, m as u64, n as u64, &got, &root).unwrap();
            }
            for m in 1..=n {
                let want = naive::proof(m, d);
                let got = consistency_proof(m as u64, n as u64, store.get()).unwrap();
                assert_eq!(got, want, "PROOF({m}, D[{n}])");
                verify_consistency(m as u64, n as u64, &got, &naive::mth(&leaves[..m]), &root)
                    .unwrap();
            }
            assert!(
                consistency_proof(0, n as u64, store.get())
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[test]
    fn append_nodes_from_storage_matches_compact_range() {
        let leaves = test_leaves(70);
        let mut nodes: HashMap<NodeId, Hash> = HashMap::new();
        let mut range = CompactRange::new();
        for (i, leaf) in leaves.iter().enumerate() {
            let from_store =
                append_nodes::<ProofError>(i as u64, *leaf, |id| Ok(nodes[&id])).unwrap();
            let from_range = range.append(*leaf).unwrap();
            assert_eq!(from_store, from_range);
            assert_eq!(from_range.len(), 1 + (i as u64).trailing_ones() as usize);
            nodes.extend(from_range);
            let reloaded =
                CompactRange::load::<Infallible>(i as u64 + 1, |id| Ok(nodes[&id])).unwrap();
            assert_eq!(reloaded, range);
            assert_eq!(
                CompactRange::from_parts(range.size(), range.hashes().to_vec()).unwrap(),
                range
            );
        }
        assert!(CompactRange::from_parts(3, vec![[0; 32]]).is_err());
        let mut full = CompactRange::from_parts(u64::MAX, vec![[0; 32]; 64]).unwrap();
        assert_eq!(full.append([1; 32]), Err(ProofError::TreeFull));
        assert!(append_nodes::<ProofError>(u64::MAX, [0; 32], |_| Ok([0; 32])).is_err());
    }

    #[test]
    fn range_nodes_cover_exactly() {
        for begin in 0..40u64 {
            for end in begin..80u64 {
                let nodes = range_nodes(begin, end);
                let mut pos = begin;
                for id in &nodes {
                    let (b, e) = id.leaf_range().unwrap();
                    assert_eq!(b, pos);
                    pos = e;
                }
                assert_eq!(pos, end);
            }
        }
        assert_eq!(root_nodes(u64::MAX).len(), 64);
        assert_eq!(range_nodes(5, 5), vec![]);
        assert_eq!(range_nodes(7, 3), vec![]);
    }

    /// A tree of any size whose leaves are all the same hash: every complete node at a level
    /// has the same hash, so proofs can be built and checked at sizes up to `u64::MAX`.
    fn uniform_node(level: u8) -> Hash {
        let mut hash = leaf_hash(b"uniform");
        for _ in 0..level {
            hash = node_hash(&hash, &hash);
        }
        hash
    }

    fn uniform_get(id: NodeId) -> Result<Hash, ProofError> {
        Ok(uniform_node(id.level))
    }

    fn shared_store() -> &'static Store {
        static STORE: std::sync::OnceLock<Store> = std::sync::OnceLock::new();
        STORE.get_or_init(|| Store::new(&test_leaves(1024)))
    }

    proptest! {
        #[test]
        fn inclusion_proofs_verify_and_a_flipped_bit_fails(
            (size, index) in (1u64..=1024).prop_flat_map(|s| (Just(s), 0..s)),
            which in any::<prop::sample::Index>(),
            bit in 0u8..8,
            byte in 0usize..32,
        ) {
            let store = shared_store();
            let leaf = store.leaves[index as usize];
            let root = root_from_nodes(size, store.get()).unwrap();
            let proof = inclusion_proof(index, size, store.get()).unwrap();
            prop_assert!(proof.len() <= 2 * 64);
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_ok());
            let mut bad_leaf = leaf;
            bad_leaf[byte] ^= 1 << bit;
            prop_assert!(verify_inclusion(&bad_leaf, index, size, &proof, &root).is_err());
            let mut bad_root = root;
            bad_root[byte] ^= 1 << bit;
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &bad_root).is_err());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                bad[which.index(proof.len())][byte] ^= 1 << bit;
                prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
            }
            if index + 1 < size {
                let other = store.leaves[index as usize + 1];
                prop_assert!(verify_inclusion(&other, index + 1, size, &proof, &root).is_err());
            }
        }

        #[test]
        fn consistency_proofs_verify_and_a_flipped_bit_fails(
            (size2, size1) in (1u64..=1024).prop_flat_map(|s| (Just(s), 1..=s)),
            which in any::<prop::sample::Index>(),
            bit in 0u8..8,
            byte in 0usize..32,
        ) {
            let store = shared_store();
            let root1 = root_from_nodes(size1, store.get()).unwrap();
            let root2 = root_from_nodes(size2, store.get()).unwrap();
            let proof = consistency_proof(size1, size2, store.get()).unwrap();
            prop_assert!(verify_consistency(size1, size2, &proof, &root1, &root2).is_ok());
            let mut bad_root1 = root1;
            bad_root1[byte] ^= 1 << bit;
            prop_assert!(verify_consistency(size1, size2, &proof, &bad_root1, &root2).is_err());
            let mut bad_root2 = root2;
            bad_root2[byte] ^= 1 << bit;
            prop_assert!(verify_consistency(size1, size2, &proof, &root1, &bad_root2).is_err());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                bad[which.index(proof.len())][byte] ^= 1 << bit;
                prop_assert!(verify_consistency(size1, size2, &bad, &root1, &root2).is_err());
            }
        }

        #[test]
        fn proofs_at_any_size_verify_in_a_uniform_tree(
            size2 in 1u64..=u64::MAX,
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            let index = a % size2;
            let size1 = 1 + b % size2;
            let leaf = uniform_node(0);
            let root2 = root_from_nodes(size2, uniform_get).unwrap();
            let refs = inclusion_proof_nodes(index, size2).unwrap();
            for r in &refs {
                // Complete nodes really are complete; ragged ones end at the tree's end.
                match *r {
                    NodeRef::Complete(id) => {
                        let (_, end) = id.leaf_range().unwrap();
                        prop_assert!(end <= size2);
                    }
                    NodeRef::Ragged { begin, end } => {
                        prop_assert!(begin < end && end == size2);
                    }
                }
            }
            let proof = resolve_proof(&refs, uniform_get).unwrap();
            prop_assert!(verify_inclusion(&leaf, index, size2, &proof, &root2).is_ok());
            let root1 = root_from_nodes(size1, uniform_get).unwrap();
            let proof = consistency_proof(size1, size2, uniform_get).unwrap();
            prop_assert!(verify_consistency(size1, size2, &proof, &root1, &root2).is_ok());
        }

        #[test]
        fn verifiers_never_panic(
            index in any::<u64>(),
            size in any::<u64>(),
            size2 in any::<u64>(),
            proof in prop::collection::vec(any::<[u8; 32]>(), 0..70),
            r1 in any::<[u8; 32]>(),
            r2 in any::<[u8; 32]>(),
        ) {
            let _ = verify_inclusion(&r1, index, size, &proof, &r2);
            let _ = verify_consistency(size, size2, &proof, &r1, &r2);
            let _ = inclusion_proof_nodes(index, size);
            let _ = consistency_proof_nodes(size, size2);
        }

        #[test]
        fn root_from_leaves_matches_naive_mth(n in 0usize..300) {
            let leaves = test_leaves(n);
            prop_assert_eq!(root_from_leaves(&leaves), naive::mth(&leaves));
        }
    }
}
