//! Viewer tokens: short-lived, read-only credentials pinned to one tenant, issued by an admin
//! (`POST /v1/viewer-tokens`) to open the viewer without handing out an API key.
//!
//! Design: a random secret (`bv_` + base64url of 32 bytes) whose SHA-256 is stored with the
//! tenant and expiry, exactly like an API key, rather than a self-contained signed token.
//! Every server sharing the store then accepts it and sees its revocation within the 1 s
//! credential cache, with no signing key to distribute and no revocation list to sync.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bitacora_core::TenantName;
use bitacora_store::ViewerTokenRecord;
use rand::RngCore as _;

use super::hash_secret;

/// Prefix of every viewer token, so a leaked one is recognisable.
pub const VIEWER_TOKEN_PREFIX: &str = "bv_";

/// A new token valid for `ttl_secs` from `now_micros`: the secret (shown once) and the record
/// to store (which holds only its hash).
pub fn generate_viewer_token(
    tenant: TenantName,
    ttl_secs: u64,
    created_by: &str,
    now_micros: i64,
) -> (String, ViewerTokenRecord) {
    let mut rng = rand::rngs::OsRng;
    let mut secret_bytes = [0u8; 32];
    rng.fill_bytes(&mut secret_bytes);
    let mut id_bytes = [0u8; 8];
    rng.fill_bytes(&mut id_bytes);
    let secret = format!(
        "{VIEWER_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(secret_bytes)
    );
    let ttl_micros = i64::try_from(ttl_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    let record = ViewerTokenRecord {
        id: format!("vt_{}", hex::encode(id_bytes)),
        tenant,
        secret_hash: hash_secret(&secret),
        created_at: now_micros,
        expires_at: now_micros.saturating_add(ttl_micros),
        created_by: created_by.to_owned(),
        revoked: false,
    };
    (secret, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_shape() {
        let (secret, record) =
            generate_viewer_token(TenantName::parse("acme").unwrap(), 60, "k1", 1_000_000);
        assert!(secret.starts_with("bv_"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret[3..]).unwrap().len(), 32);
        assert!(record.id.starts_with("vt_"));
        assert_eq!(record.expires_at, 61_000_000);
        assert_eq!(record.secret_hash, hash_secret(&secret));
        assert!(!record.revoked);
    }
}
