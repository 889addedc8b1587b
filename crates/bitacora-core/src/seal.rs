//! Commit seals: a store writer's own record of what it committed, which someone holding only
//! the database cannot forge.
//!
//! # Why
//!
//! The checkpointer signs whatever log it finds in the store. Without a record of its own, a
//! row appended to the database by hand (a correct leaf hash, the log's size bumped) would be
//! signed at the next tick and from then on look genuine to `bitacora verify`. Anything kept
//! only in the store is forgeable by whoever can write the store, so the record is keyed by a
//! secret kept outside it: the [`CommitKey`], derived from the checkpoint signing key
//! ([`crate::checkpoint::NoteSigner::commit_key`]), which lives in its own file.
//!
//! # What a seal says
//!
//! In the same transaction as every commit, a writer that holds the key upserts, for each
//! tenant it appended to, one [`CommitSeal`] `(size, root, base, mac)`: "after my commit the
//! log had `size` events and root `root`, and every event from `base` on was written by a
//! holder of the commit key, in an unbroken chain of seals", with
//!
//! ```text
//! mac = HMAC-SHA256(commit key, "bitacora-commit-seal/v1" || len(tenant) as u32 BE || tenant
//!                               || size as u64 BE || root || base as u64 BE)
//! ```
//!
//! A writer carries `base` from the seal it finds only when the seal verifies and describes
//! exactly the log it is about to extend (same size, same root); otherwise it cannot vouch for
//! rows it did not write and starts a new chain at the current size. The checkpointer then
//! signs a size only when a seal explains it: `base` is at or below the latest signed
//! checkpoint (so every event past the signature was sealed) and the stored tree still has the
//! sealed root at the sealed size.

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::canonical::Hash;

/// The domain string that starts every seal's MAC input.
const SEAL_DOMAIN: &[u8] = b"bitacora-commit-seal/v1";
/// The domain string of the commit key's derivation from a signing key seed.
const KEY_DOMAIN: &[u8] = b"bitacora-commit-key/v1\n";

/// The secret that keys commit seals. Never stored: derived at run time from the checkpoint
/// signing key and handed to the store (`Store::set_commit_key`).
#[derive(Clone, PartialEq, Eq)]
pub struct CommitKey([u8; 32]);

/// Never prints the key.
impl std::fmt::Debug for CommitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitKey(..)")
    }
}

impl CommitKey {
    /// The commit key of an Ed25519 signing key seed: `SHA-256(domain || seed)`, so that the
    /// seal MAC and the checkpoint signature never use the same secret directly.
    pub fn derive(seed: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        h.update(seed);
        Self(h.finalize().into())
    }

    /// A key from raw bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self, tenant: &str, size: u64, root: &Hash, base: u64) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.0).expect("HMAC takes any key size");
        mac.update(SEAL_DOMAIN);
        mac.update(&(tenant.len() as u32).to_be_bytes());
        mac.update(tenant.as_bytes());
        mac.update(&size.to_be_bytes());
        mac.update(root);
        mac.update(&base.to_be_bytes());
        mac
    }

    /// Seals tenant `tenant`'s log at `size` events with root `root`, vouching for every event
    /// from `base` on.
    pub fn seal(&self, tenant: &str, size: u64, root: Hash, base: u64) -> CommitSeal {
        let mac = self
            .mac(tenant, size, &root, base)
            .finalize()
            .into_bytes()
            .into();
        CommitSeal {
            size,
            root,
            base,
            mac,
        }
    }

    /// Whether `seal` was made with this key for this tenant (compared in constant time).
    pub fn verifies(&self, tenant: &str, seal: &CommitSeal) -> bool {
        self.mac(tenant, seal.size, &seal.root, seal.base)
            .verify_slice(&seal.mac)
            .is_ok()
    }

    /// The `base` a writer about to extend a log of `size` events with root `root` may carry:
    /// the seal's own when it verifies and describes exactly that log, else `size` (the writer
    /// cannot vouch for rows it did not write).
    pub fn carried_base(
        &self,
        tenant: &str,
        seal: Option<&CommitSeal>,
        size: u64,
        root: &Hash,
    ) -> u64 {
        match seal {
            Some(s) if s.size == size && s.root == *root && self.verifies(tenant, s) => {
                s.base.min(size)
            }
            _ => size,
        }
    }
}

/// One tenant's commit seal, as stored (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitSeal {
    /// The log's size after the sealed commit.
    pub size: u64,
    /// The tree root at `size`.
    pub root: Hash,
    /// Every event from `base` to `size` was sealed by a holder of the commit key.
    pub base: u64,
    /// HMAC-SHA256 over the tenant and the three fields above.
    pub mac: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_verifies_only_for_its_tenant_fields_and_key() {
        let key = CommitKey::derive(&[7; 32]);
        let seal = key.seal("acme", 10, [1; 32], 3);
        assert!(key.verifies("acme", &seal));
        assert!(!key.verifies("globex", &seal));
        assert!(!CommitKey::derive(&[8; 32]).verifies("acme", &seal));
        for forged in [
            CommitSeal { size: 11, ..seal },
            CommitSeal {
                root: [2; 32],
                ..seal
            },
            CommitSeal { base: 0, ..seal },
        ] {
            assert!(!key.verifies("acme", &forged), "{forged:?}");
        }
        // The tenant is length-prefixed: moving bytes between it and the size is not a
        // collision.
        assert_ne!(
            key.seal("a", 1, [0; 32], 0).mac,
            key.seal("a\0", 1, [0; 32], 0).mac
        );
    }

    #[test]
    fn a_writer_carries_a_base_only_from_a_seal_of_the_log_it_extends() {
        let key = CommitKey::derive(&[7; 32]);
        let seal = key.seal("acme", 10, [1; 32], 3);
        assert_eq!(key.carried_base("acme", Some(&seal), 10, &[1; 32]), 3);
        // A row appended by hand: the size (and the root) moved past the seal.
        assert_eq!(key.carried_base("acme", Some(&seal), 11, &[2; 32]), 11);
        assert_eq!(key.carried_base("acme", Some(&seal), 10, &[2; 32]), 10);
        assert_eq!(key.carried_base("acme", None, 10, &[1; 32]), 10);
        assert_eq!(key.carried_base("globex", Some(&seal), 10, &[1; 32]), 10);
        assert_eq!(key.carried_base("acme", None, 0, &[0; 32]), 0);
    }
}
