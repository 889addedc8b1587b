//! Proof verification: the inclusion and consistency verifiers never panic on any input, and
//! never accept a proof made wrong by mutating a valid one (a changed hash, a hash dropped,
//! added, swapped or duplicated, another leaf, another index, another root).
//!
//! Tree sizes are not mutated while the roots are kept: the size and root of a proof's tree
//! come from one signed checkpoint, and RFC 9162's verifier does not (and need not) bind a
//! size to a root by itself (an inclusion proof of leaf 0 in a tree of 3 also "verifies" for
//! size 4 against the size-3 root, a root no size-4 tree has).
#![no_main]

use arbitrary::Arbitrary;
use bitacora_core::canonical::{Hash, leaf_hash};
use bitacora_core::merkle::{
    ProofError, consistency_proof, inclusion_proof, root_from_leaves, verify_consistency,
    verify_inclusion,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Mutation {
    FlipByte { which: u8, at: u8, xor: u8 },
    Drop { which: u8 },
    Append { fill: u8 },
    Swap { a: u8, b: u8 },
    Duplicate { which: u8 },
    OtherLeaf,
    OtherIndex { delta: u8 },
    OtherRoot { at: u8, xor: u8 },
}

#[derive(Arbitrary, Debug)]
enum Input {
    Inclusion {
        size: u16,
        index: u16,
        mutation: Mutation,
    },
    Consistency {
        size1: u16,
        size2: u16,
        mutation: Mutation,
    },
    /// Arbitrary values straight into the verifiers.
    Raw {
        a: u64,
        b: u64,
        proof: Vec<[u8; 32]>,
        r1: [u8; 32],
        r2: [u8; 32],
    },
}

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// Hashes of the tree's complete nodes, computed from the leaves.
fn node(leaves: &[Hash], id: bitacora_core::merkle::NodeId) -> Result<Hash, ProofError> {
    let (b, e) = id.leaf_range().unwrap();
    Ok(root_from_leaves(&leaves[b as usize..e as usize]))
}

/// Mutates `proof` (and the claims); `None` when the mutation would change nothing.
fn mutate(
    proof: &mut Vec<Hash>,
    leaf: &mut Hash,
    index: &mut u64,
    root: &mut Hash,
    size: u64,
    m: Mutation,
) -> Option<()> {
    match m {
        Mutation::FlipByte { which, at, xor } => {
            if proof.is_empty() || xor == 0 {
                return None;
            }
            let n = proof.len();
            proof[usize::from(which) % n][usize::from(at) % 32] ^= xor;
        }
        Mutation::Drop { which } => {
            if proof.is_empty() {
                return None;
            }
            let n = proof.len();
            proof.remove(usize::from(which) % n);
        }
        Mutation::Append { fill } => proof.push([fill; 32]),
        Mutation::Swap { a, b } => {
            if proof.is_empty() {
                return None;
            }
            let n = proof.len();
            let (a, b) = (usize::from(a) % n, usize::from(b) % n);
            if proof[a] == proof[b] {
                return None;
            }
            proof.swap(a, b);
        }
        Mutation::Duplicate { which } => {
            if proof.is_empty() {
                return None;
            }
            let n = proof.len();
            let h = proof[usize::from(which) % n];
            proof.insert(usize::from(which) % n, h);
        }
        Mutation::OtherLeaf => leaf[0] ^= 1,
        Mutation::OtherIndex { delta } => {
            let d = u64::from(delta % 255) + 1;
            let other = if size <= 1 {
                *index + d
            } else {
                (*index + d) % size
            };
            if other == *index {
                return None;
            }
            *index = other;
        }
        Mutation::OtherRoot { at, xor } => {
            if xor == 0 {
                return None;
            }
            root[usize::from(at) % 32] ^= xor;
        }
    }
    Some(())
}

fuzz_target!(|input: Input| match input {
    Input::Inclusion {
        size,
        index,
        mutation,
    } => {
        let size = u64::from(size % 1024) + 1;
        let index = u64::from(index) % size;
        let leaves = leaves(size);
        let root = root_from_leaves(&leaves);
        let proof = inclusion_proof::<ProofError>(index, size, |id| node(&leaves, id)).unwrap();
        verify_inclusion(&leaves[index as usize], index, size, &proof, &root)
            .expect("a valid inclusion proof verifies");
        let (mut p, mut leaf, mut i, mut r) = (proof, leaves[index as usize], index, root);
        if mutate(&mut p, &mut leaf, &mut i, &mut r, size, mutation).is_none() {
            return;
        }
        assert!(
            verify_inclusion(&leaf, i, size, &p, &r).is_err(),
            "a mutated inclusion proof verified: {mutation:?}"
        );
    }
    Input::Consistency {
        size1,
        size2,
        mutation,
    } => {
        let size2 = u64::from(size2 % 1024) + 1;
        let size1 = u64::from(size1) % size2 + 1;
        let leaves = leaves(size2);
        let root1 = root_from_leaves(&leaves[..size1 as usize]);
        let root2 = root_from_leaves(&leaves);
        let proof = consistency_proof::<ProofError>(size1, size2, |id| node(&leaves, id)).unwrap();
        verify_consistency(size1, size2, &proof, &root1, &root2)
            .expect("a valid consistency proof verifies");
        let (mut p, mut r1, mut r2) = (proof, root1, root2);
        let (mut unused_leaf, mut unused_index) = ([0u8; 32], 0);
        let m = match mutation {
            // No leaf or index in a consistency proof: change the new root instead.
            Mutation::OtherLeaf | Mutation::OtherIndex { .. } => {
                r2[0] ^= 1;
                Some(())
            }
            // Odd positions hit the new root, even ones the old root.
            Mutation::OtherRoot { at, .. } if at % 2 == 1 => mutate(
                &mut p,
                &mut unused_leaf,
                &mut unused_index,
                &mut r2,
                size2,
                mutation,
            ),
            _ => mutate(
                &mut p,
                &mut unused_leaf,
                &mut unused_index,
                &mut r1,
                size2,
                mutation,
            ),
        };
        if m.is_none() {
            return;
        }
        assert!(
            verify_consistency(size1, size2, &p, &r1, &r2).is_err(),
            "a mutated consistency proof verified: {mutation:?} ({size1}, {size2})"
        );
    }
    Input::Raw {
        a,
        b,
        proof,
        r1,
        r2,
    } => {
        let _ = verify_inclusion(&r1, a, b, &proof, &r2);
        let _ = verify_consistency(a, b, &proof, &r1, &r2);
    }
});
