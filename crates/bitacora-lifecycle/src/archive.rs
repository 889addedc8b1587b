//! The archive: where purged events go, as zstd-compressed bundles (`.bundle.zst`), before
//! their content leaves the store.
//!
//! Written through the `object_store` crate's `ObjectStore` trait, to a local folder
//! (`file:///path`) or an S3 bucket (`s3://bucket/prefix`, AWS or any S3-compatible server:
//! MinIO, Ceph, moto, …). A `put` returns only once the object is complete — the local store
//! writes a temporary file and renames it; S3 answers a single `PUT` with `200` only once the
//! object is stored — which is what "the archive write is confirmed" means before a purge.
//!
//! **S3 settings.** Credentials come only from the environment, as every AWS tool reads them
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; else a web identity, ECS
//! task role or instance profile) — never from the configuration file. The endpoint and region
//! come from `retention.s3_endpoint` / `retention.s3_region`, else `AWS_ENDPOINT_URL_S3` /
//! `AWS_ENDPOINT` / `AWS_REGION` / `AWS_DEFAULT_REGION`; an `http://` endpoint (a server on a
//! private network) is allowed because it was written out.
//!
//! **TLS.** The S3 client is `object_store`'s own (reqwest 0.13 over rustls). The workspace
//! compiles one rustls crypto provider, *ring* (`rustls` with `ring`, reqwest 0.12
//! `rustls-tls`, tokio-rustls `ring`). `object_store`'s `aws` feature would add reqwest 0.13's
//! default `rustls` feature, which compiles aws-lc-rs beside ring: with two providers rustls
//! cannot choose one and panics when a client is built without an explicit one. So this crate
//! enables `aws-base` + `reqwest` + `ring` (request signing with ring) instead of `aws`, and
//! reqwest 0.13's `rustls-no-provider`; that reqwest takes rustls's process-default provider,
//! which [`install_tls_provider`] sets to ring before the first S3 client is built. One
//! provider is compiled (`cargo tree -i aws-lc-rs` finds nothing).
//!
//! Object names: `<tenant>/<first seq>-<last seq>-<root prefix>.bundle.zst`, seqs zero-padded to
//! 12 digits so names sort in log order. The same purge written twice (after a crash between
//! the archive and the purge) gets the same name.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig};
use url::Url;

use crate::LifecycleError;

/// An opened archive.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("url", &self.url).finish()
    }
}

/// One archived object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedObject {
    /// The object's full URL (`file:///…/default/000000000000-000000000099-1a2b3c4d.bundle.zst`).
    pub url: String,
    /// Its name under the archive (`default/000000000000-…`).
    pub name: String,
    pub size: u64,
    /// RFC 3339.
    pub last_modified: String,
}

/// How an S3 archive is reached, besides what the environment says (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveOptions {
    /// `retention.s3_endpoint`: an S3-compatible server's URL (`https://minio.internal:9000`).
    pub s3_endpoint: Option<String>,
    /// `retention.s3_region`.
    pub s3_region: Option<String>,
}

/// Checks that `url` names an archive bitacora can write to, without opening it.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "file" => {
            if parsed.to_file_path().is_err() {
                return Err(format!("`{url}` is not an absolute file:// path"));
            }
            Ok(())
        }
        "s3" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(format!("`{url}`: name the bucket (s3://bucket/prefix)"));
            }
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(format!(
                    "`{url}`: no query or fragment (s3://bucket/prefix; the endpoint and \
                     region are retention.s3_endpoint and retention.s3_region)"
                ));
            }
            ObjectPath::parse(parsed.path().trim_matches('/'))
                .map_err(|e| format!("`{url}`: not a usable object prefix: {e}"))?;
            Ok(())
        }
        "gs" | "az" | "azure" => Err(format!(
            "`{url}`: Google Cloud Storage and Azure archives are not built in (use s3:// — \
             both offer S3-compatible access — or file:///path)"
        )),
        other => Err(format!(
            "`{url}`: unsupported scheme `{other}` (use file:///path or s3://bucket/prefix)"
        )),
    }
}

/// Checks `retention.s3_endpoint`.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let parsed = Url::parse(endpoint).map_err(|e| format!("`{endpoint}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "`{endpoint}`: an http:// or https:// URL of an S3-compatible server"
        ));
    }
    Ok(())
}

/// Sets rustls's process-wide crypto provider to *ring*, the one provider this workspace
/// compiles, unless one is set already (see the module docs: the S3 client's reqwest is built
/// with `rustls-no-provider` and takes this default). Idempotent; call it before building a
/// TLS client that relies on the default.
pub fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one between the check and here: also fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn store_error(e: object_store::Error) -> LifecycleError {
    LifecycleError::Archive(e.to_string())
}

impl Archive {
    /// Opens the archive at `url` (creating a local folder if needed), with the S3 settings of
    /// the environment alone.
    pub fn open(url: &str) -> Result<Self, LifecycleError> {
        Self::open_with(url, &ArchiveOptions::default())
    }

    /// Opens the archive at `url`. Nothing is sent to an object store yet: a bucket that is
    /// unreachable or refuses the credentials fails the first write (and so that purge).
    pub fn open_with(url: &str, options: &ArchiveOptions) -> Result<Self, LifecycleError> {
        check_url(url).map_err(LifecycleError::Archive)?;
        let parsed = Url::parse(url).map_err(|e| LifecycleError::Archive(e.to_string()))?;
        if parsed.scheme() == "s3" {
            return Self::open_s3(url, &parsed, options);
        }
        let dir = parsed
            .to_file_path()
            .map_err(|()| LifecycleError::Archive(format!("`{url}` is not a path")))?;
        std::fs::create_dir_all(&dir).map_err(|e| {
            LifecycleError::Archive(format!("cannot create {}: {e}", dir.display()))
        })?;
        let fs =
            object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(store_error)?;
        Ok(Self {
            store: Arc::new(fs),
            prefix: ObjectPath::default(),
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    fn open_s3(url: &str, parsed: &Url, options: &ArchiveOptions) -> Result<Self, LifecycleError> {
        install_tls_provider();
        let bucket = parsed.host_str().unwrap_or_default();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            // A pass that cannot reach the bucket fails within about half a minute and is
            // retried at the next `check_interval`, rather than holding the purger for the
            // client's default three minutes of retries.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 4,
                retry_timeout: Duration::from_secs(30),
            });
        if let Some(endpoint) = &options.s3_endpoint {
            check_endpoint(endpoint).map_err(LifecycleError::Archive)?;
            // As `s3_endpoint`, which wins over `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT` (the
            // configuration file says where this store's archive is).
            builder = builder.with_config(
                AmazonS3ConfigKey::S3Endpoint,
                endpoint.trim_end_matches('/'),
            );
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        }
        if let Some(region) = &options.s3_region {
            builder = builder.with_region(region);
        }
        let s3 = builder.build().map_err(store_error)?;
        let prefix = ObjectPath::parse(parsed.path().trim_matches('/'))
            .map_err(|e| LifecycleError::Archive(format!("`{url}`: {e}")))?;
        Ok(Self {
            store: Arc::new(s3),
            prefix,
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, name: &str) -> ObjectPath {
        name.split('/')
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    /// The object name of a purge of `tenant` covering `first..=last` with this root.
    pub fn object_name(tenant: &str, first: u64, last: u64, root: &[u8; 32]) -> String {
        format!(
            "{tenant}/{first:012}-{last:012}-{}.bundle.zst",
            hex::encode(&root[..4])
        )
    }

    /// Writes `bytes` as `name` and returns the object's URL once the write is complete.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<String, LifecycleError> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map_err(store_error)?;
        Ok(format!("{}/{name}", self.url))
    }

    /// Reads an object back.
    pub async fn get(&self, name: &str) -> Result<Bytes, LifecycleError> {
        self.store
            .get(&self.path(name))
            .await
            .map_err(store_error)?
            .bytes()
            .await
            .map_err(store_error)
    }

    /// Every archived bundle, of one tenant or all, in name order.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<ArchivedObject>, LifecycleError> {
        let under = match tenant {
            Some(t) => self.prefix.clone().join(t),
            None => self.prefix.clone(),
        };
        let prefix_parts = self.prefix.parts().count();
        let mut out: Vec<ArchivedObject> = self
            .store
            .list(Some(&under))
            .map_ok(|meta| {
                let name = meta
                    .location
                    .parts()
                    .skip(prefix_parts)
                    .map(|p| p.as_ref().to_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                ArchivedObject {
                    url: format!("{}/{name}", self.url),
                    name,
                    size: meta.size,
                    last_modified: meta.last_modified.to_rfc3339(),
                }
            })
            .try_collect()
            .await
            .map_err(store_error)?;
        out.retain(|o| o.name.ends_with(".bundle.zst") || o.name.ends_with(".bundle"));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// The zstd level of archive objects. Measured on an archive batch of 2,000 events (3.2 MB
/// of bundle, most of it proof hashes repeated from line to line; BENCHMARKS.md, "PostgreSQL
/// partition drop: a cheaper archive walk"): level 1 makes the smaller object (179 KB against
/// 201 KB at level 3) at twice the speed; higher levels find nothing more in it.
const LEVEL: i32 = 1;

/// Compresses a bundle for the archive: one zstd frame made in one call over the whole
/// buffer (the streaming encoder copied it through its window in chunks).
pub fn compress(bundle: &[u8]) -> Result<Vec<u8>, LifecycleError> {
    zstd::bulk::compress(bundle, LEVEL).map_err(|e| LifecycleError::Archive(format!("zstd: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_object_is_one_zstd_frame_any_decoder_reads() {
        let bundle = "{\"bitacora_bundle\":1}\n".repeat(10_000).into_bytes();
        let compressed = compress(&bundle).unwrap();
        assert!(compressed.len() < bundle.len() / 10);
        // As `bitacora verify-bundle` reads it (a streaming decoder) and in one call.
        let mut streamed = Vec::new();
        std::io::copy(
            &mut zstd::stream::read::Decoder::new(&compressed[..]).unwrap(),
            &mut streamed,
        )
        .unwrap();
        assert_eq!(streamed, bundle);
        assert_eq!(zstd::decode_all(&compressed[..]).unwrap(), bundle);
    }

    #[test]
    fn an_s3_archive_builds_its_client_on_the_one_compiled_provider() {
        let archive = Archive::open_with(
            "s3://audit-archive/bitacora/prod/",
            &ArchiveOptions {
                s3_endpoint: Some("https://s3.example.internal:9000".into()),
                s3_region: Some("eu-west-1".into()),
            },
        )
        .unwrap();
        assert_eq!(archive.url(), "s3://audit-archive/bitacora/prod");
        assert_eq!(
            archive.path("acme/x.bundle.zst").as_ref(),
            "bitacora/prod/acme/x.bundle.zst"
        );
        // Building the client installed ring as the process default (reqwest 0.13 is built
        // with `rustls-no-provider` and takes it from there).
        let installed = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(
            format!("{:?}", installed.cipher_suites),
            format!("{:?}", ring.cipher_suites)
        );
        for bad in [
            "s3://",
            "s3:///prefix",
            "s3://b/p?x=1",
            "gs://b/p",
            "ftp://b/p",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_endpoint("minio:9000").is_err());
        assert!(check_endpoint("http://10.0.0.5:9000").is_ok());
    }
}
