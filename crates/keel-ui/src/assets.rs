//! The stylesheet and script, compiled into the binary and served with a
//! content hash in their URL, so browsers may cache them for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const CSS: &str = "ui.css";
pub const JS: &str = "ui.js";

const FILES: [(&str, &str, &str); 2] = [
    (
        CSS,
        "text/css; charset=utf-8",
        include_str!("../assets/ui.css"),
    ),
    (
        JS,
        "text/javascript; charset=utf-8",
        include_str!("../assets/ui.js"),
    ),
];

/// FNV-1a of both files: changes whenever either does.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash: u64 = 0xcbf29ce484222325;
    for (_, _, text) in FILES {
        for byte in text.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x100000001b3);
        }
    }
    format!("{:012x}", hash >> 16)
});

/// The URL of an asset, versioned by content.
pub fn url(file: &str) -> String {
    format!("/static/{file}?v={}", *VERSION)
}

pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, mime, text)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            *text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
