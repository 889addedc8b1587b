//! Application JWTs (CONTRACT §6 `[[auth.jwt]]`): tokens an application signs for its own
//! users, so its login can open bitacora's viewer without a bitacora key.
//!
//! Each `[[auth.jwt]]` entry becomes one [`JwtVerifier`] whose algorithm is fixed by the entry:
//! HS256 for `hs256_secret`, RS256 or EdDSA for the PEM key in `public_key_file`. The token's
//! own `alg` header is only compared with it, never trusted, so `alg: none` and algorithm
//! confusion (an RS256 key's public PEM used as an HS256 secret) fail. `exp` is required;
//! `exp` and `nbf` are checked with the entry's leeway; `iss` and `aud` when configured.
//!
//! What a verified token grants, decided here once:
//! - **read** on one tenant, never more: `scope` (a space-separated string or an array)
//!   containing `read`, or `permissions` containing `view_logs`. Claims asking for `ingest`
//!   or `admin` are ignored: an application's login may open the viewer, it may not write
//!   the audit trail nor administer bitacora.
//! - the tenant is the `tenant_claim` claim (default `tenant`); a token without it is refused
//!   with 403, because an unpinned reader would see every tenant.

use std::path::Path;

use anyhow::Context as _;
use bitacora_core::TenantName;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, errors::ErrorKind};
use serde_json::{Map, Value};

use crate::config::JwtConfig;

/// One trusted issuer.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    tenant_claim: String,
    /// Checked again on the decoded claims (see [`JwtVerifier::verify`]).
    issuer: Option<String>,
    audience: Option<String>,
}

/// A verified token's identity and grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    /// `sub`, or `"unknown"`.
    pub subject: String,
    pub tenant: TenantName,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtRejection {
    /// Not valid (signature, algorithm, expiry, issuer, audience...): a failed authentication.
    Invalid(Invalid),
    /// Valid, but it grants nothing here (no read permission, no or bad tenant claim).
    Forbidden(String),
}

/// Why a token is not valid for one issuer, and how telling that is when several issuers are
/// configured and each refuses it: a token whose signature this issuer's key verified but
/// whose claims failed (expired, wrong audience) says more than another issuer's "signed with
/// another algorithm".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    /// 0: not this issuer's algorithm or not a token; 1: this issuer's algorithm, bad
    /// signature; 2: signed by this issuer, claims refused.
    pub relevance: u8,
}

impl Invalid {
    pub fn new(message: impl Into<String>, relevance: u8) -> Self {
        Self {
            message: message.into(),
            relevance,
        }
    }
}

impl JwtVerifier {
    pub fn load(entry: &JwtConfig) -> anyhow::Result<Self> {
        let (key, algorithm) = match (&entry.hs256_secret, &entry.public_key_file) {
            (Some(secret), None) => {
                anyhow::ensure!(
                    secret.len() >= 32,
                    "[[auth.jwt]] hs256_secret must be at least 32 bytes (HS256 with a short \
                     secret can be brute-forced)"
                );
                (
                    DecodingKey::from_secret(secret.as_bytes()),
                    Algorithm::HS256,
                )
            }
            (None, Some(file)) => load_public_key(file)?,
            _ => anyhow::bail!(
                "each [[auth.jwt]] entry needs exactly one of `hs256_secret` and `public_key_file`"
            ),
        };
        anyhow::ensure!(
            !entry.tenant_claim.is_empty(),
            "[[auth.jwt]] tenant_claim must not be empty"
        );
        let mut validation = Validation::new(algorithm);
        validation.leeway = entry.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        // A configured issuer or audience is required, not only compared when present: a
        // token that leaves it out (or sets it to null) was not made for this server.
        let mut required = vec!["exp"];
        if entry.issuer.is_some() {
            required.push("iss");
        }
        if entry.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match &entry.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &entry.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self {
            key,
            validation,
            tenant_claim: entry.tenant_claim.clone(),
            issuer: entry.issuer.clone(),
            audience: entry.audience.clone(),
        })
    }

    /// Verifies `token` and reads what it grants.
    pub fn verify(&self, token: &str) -> Result<JwtIdentity, JwtRejection> {
        let data = decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| JwtRejection::Invalid(describe(e.kind())))?;
        let claims = data.claims;
        // The library checks these too; checked here again on what was decoded, so a
        // configured `iss`/`aud` is enforced whatever the library makes of absent, null or
        // oddly typed claims.
        if let Some(iss) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(iss.as_str())
        {
            return Err(JwtRejection::Invalid(Invalid::new(
                "the token's issuer is not trusted (`iss` must be present and equal the configured issuer)",
                2,
            )));
        }
        if let Some(aud) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => a == aud,
                Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(aud)),
                _ => false,
            };
            if !ok {
                return Err(JwtRejection::Invalid(Invalid::new(
                    "the token's audience is not this server (`aud` must be present and name the configured audience)",
                    2,
                )));
            }
        }
        let grants_read = claim_contains(&claims, "scope", "read")
            || claim_contains(&claims, "permissions", "view_logs");
        if !grants_read {
            return Err(JwtRejection::Forbidden(
                "this token grants no read access: it needs a `scope` claim containing `read` \
                 or a `permissions` claim containing `view_logs`"
                    .into(),
            ));
        }
        let tenant = match claims.get(&self.tenant_claim) {
            Some(Value::String(t)) => TenantName::parse(t).map_err(|m| {
                JwtRejection::Forbidden(format!("the token's `{}` claim: {m}", self.tenant_claim))
            })?,
            _ => {
                return Err(JwtRejection::Forbidden(format!(
                    "this token names no tenant: it needs a `{}` claim (a string)",
                    self.tenant_claim
                )));
            }
        };
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.chars().take(128).collect(),
            _ => "unknown".to_owned(),
        };
        Ok(JwtIdentity { subject, tenant })
    }
}

/// A PEM public key: RSA → RS256, Ed25519 → EdDSA.
fn load_public_key(file: &Path) -> anyhow::Result<(DecodingKey, Algorithm)> {
    let pem = std::fs::read(file).with_context(|| {
        format!(
            "[[auth.jwt]] cannot read public_key_file `{}`",
            file.display()
        )
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        return Ok((key, Algorithm::EdDSA));
    }
    anyhow::bail!(
        "[[auth.jwt]] public_key_file `{}` is not a PEM RSA or Ed25519 public key",
        file.display()
    )
}

/// Whether a claim (a space-separated string or an array of strings) holds `wanted`.
fn claim_contains(claims: &Map<String, Value>, name: &str, wanted: &str) -> bool {
    match claims.get(name) {
        Some(Value::String(s)) => s.split_whitespace().any(|p| p == wanted),
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(wanted)),
        _ => false,
    }
}

/// A short reason, without echoing the token.
fn describe(kind: &ErrorKind) -> Invalid {
    // jsonwebtoken checks the signature before the claims: a claim error means this issuer's
    // key verified the token.
    match kind {
        ErrorKind::ExpiredSignature => Invalid::new("the token has expired", 2),
        ErrorKind::ImmatureSignature => Invalid::new("the token is not valid yet (`nbf`)", 2),
        ErrorKind::InvalidIssuer => Invalid::new("the token's issuer is not trusted", 2),
        ErrorKind::InvalidAudience => Invalid::new("the token's audience is not this server", 2),
        ErrorKind::MissingRequiredClaim(c) => {
            Invalid::new(format!("the token has no `{c}` claim"), 2)
        }
        ErrorKind::InvalidSignature => Invalid::new("the token's signature is invalid", 1),
        ErrorKind::InvalidAlgorithm => {
            Invalid::new("the token's algorithm is not the configured one", 0)
        }
        _ => Invalid::new("the token is malformed or not signed as configured", 0),
    }
}

/// Whether `secret` has the shape of a JWT (three base64url parts), so other credentials
/// never reach the verifiers.
pub fn looks_like_jwt(secret: &str) -> bool {
    secret.len() <= 16 * 1024
        && secret.split('.').count() == 3
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}
