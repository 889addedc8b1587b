//! The viewer's static files, compiled into the binary (nothing is fetched from another
//! host), served under names that carry a hash of their content (`ui.3f2a9c1b0d.css`), so
//! browsers may cache them for a year and a new build is picked up at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    bytes: &'static [u8],
    content_type: &'static str,
}

const FILES: &[Asset] = &[
    Asset {
        name: "ui.css",
        bytes: include_bytes!("../../assets/ui.css"),
        content_type: "text/css; charset=utf-8",
    },
    Asset {
        name: "ui.js",
        bytes: include_bytes!("../../assets/ui.js"),
        content_type: "text/javascript; charset=utf-8",
    },
    Asset {
        name: "theme.js",
        bytes: include_bytes!("../../assets/theme.js"),
        content_type: "text/javascript; charset=utf-8",
    },
    Asset {
        name: "favicon.svg",
        bytes: include_bytes!("../../assets/favicon.svg"),
        content_type: "image/svg+xml",
    },
];

/// `(hashed file name, URL, asset)` for every file.
static HASHED: LazyLock<Vec<(String, &'static str, &'static Asset)>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|a| {
            let digest = hex::encode(&Sha256::digest(a.bytes)[..5]);
            let (stem, ext) = a.name.rsplit_once('.').unwrap_or((a.name, ""));
            let file = format!("{stem}.{digest}.{ext}");
            // Leaked once per asset, at first use: the URLs live as long as the process.
            let url: &'static str = Box::leak(format!("/ui/assets/{file}").into_boxed_str());
            (file, url, a)
        })
        .collect()
});

/// The URL of an embedded asset by its plain name (`ui.css`).
pub fn url(name: &str) -> &'static str {
    HASHED
        .iter()
        .find(|(_, _, a)| a.name == name)
        .map(|(_, url, _)| *url)
        .unwrap_or("/ui/assets/missing")
}

/// `GET /ui/assets/{file}`: a hashed name is immutable; the plain name is served too (for
/// hand-written links) but must be revalidated.
pub async fn serve(Path(file): Path<String>) -> Response {
    let (asset, immutable) = match HASHED.iter().find(|(f, _, _)| *f == file) {
        Some((_, _, a)) => (*a, true),
        None => match FILES.iter().find(|a| a.name == file) {
            Some(a) => (a, false),
            None => {
                return super::error_page(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "There is no such file.",
                );
            }
        },
    };
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut r = asset.bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_hashed_url() {
        for a in FILES {
            let u = url(a.name);
            assert!(u.starts_with("/ui/assets/"), "{u}");
            assert_ne!(u, format!("/ui/assets/{}", a.name));
            let ext = a.name.rsplit_once('.').unwrap().1;
            assert!(u.ends_with(&format!(".{ext}")), "{u}");
        }
        assert_eq!(url("nope"), "/ui/assets/missing");
    }
}
