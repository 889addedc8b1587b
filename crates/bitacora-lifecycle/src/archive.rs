//! The archive: where purged events go, as zstd-compressed bundles (`.bundle.zst`), before
//! their content leaves the store.
//!
//! Written through the `object_store` crate's `ObjectStore` trait. This build opens a local
//! folder (`file:///path`); an S3 store plugs in behind the same trait (its `aws` feature is
//! left off for now, see docs/LIFECYCLE.md, "Limits"). A `put` returns only once the object is
//! complete (the local store writes a temporary file and renames it), which is what "the
//! archive write is confirmed" means before a purge.
//!
//! Object names: `<tenant>/<first seq>-<last seq>-<root prefix>.bundle.zst`, seqs zero-padded to
//! 12 digits so names sort in log order. The same purge written twice (after a crash between
//! the archive and the purge) gets the same name.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
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
        "s3" | "gs" | "az" | "azure" => Err(format!(
            "`{url}`: object stores other than a local folder are not built in yet (use file:///path; \
             see docs/LIFECYCLE.md)"
        )),
        other => Err(format!(
            "`{url}`: unsupported scheme `{other}` (use file:///path)"
        )),
    }
}

fn store_error(e: object_store::Error) -> LifecycleError {
    LifecycleError::Archive(e.to_string())
}

impl Archive {
    /// Opens the archive at `url` (creating the folder if needed).
    pub fn open(url: &str) -> Result<Self, LifecycleError> {
        check_url(url).map_err(LifecycleError::Archive)?;
        let parsed = Url::parse(url).map_err(|e| LifecycleError::Archive(e.to_string()))?;
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

/// Compresses a bundle for the archive.
pub fn compress(bundle: &[u8]) -> Result<Vec<u8>, LifecycleError> {
    zstd::encode_all(bundle, 3).map_err(|e| LifecycleError::Archive(format!("zstd: {e}")))
}
