//! Static files beside the protocol routes ([`ServerConfig::with_static_dir`]): a page and its
//! scripts served from one directory, so a browser client under development can be loaded
//! from the stream server itself (`enclave serve --static DIR`).
//!
//! It is the router's fallback, so the protocol routes keep priority: a file named `health`
//! is never served at `/health`. Only `GET` and `HEAD` reach it. A request path names a file
//! only through plain name segments: a `.` or `..` segment, a hidden (dot) name, a backslash,
//! a NUL or a `%` that is not a valid escape — raw or percent-encoded — names nothing. The file
//! found must still lie under the directory once symbolic links are resolved, so a link that
//! points out of it names nothing either. Every miss is the routes' `404 NOT_FOUND` JSON.
//!
//! [`ServerConfig::with_static_dir`]: super::ServerConfig::with_static_dir

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt as _;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use tokio_util::codec::{BytesCodec, FramedRead};

/// The response for `path` under `root`, or `None` when it names no servable file.
pub(crate) async fn serve(root: &Path, method: &Method, path: &str) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let relative = relative_path(path)?;
    // Canonical forms on both sides: `starts_with` then compares resolved paths, which is
    // what catches a symbolic link that leads out of the directory.
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let mut file = contained(&root, &root.join(&relative)).await?;
    let mut metadata = tokio::fs::metadata(&file).await.ok()?;
    if metadata.is_dir() {
        if !path.ends_with('/') {
            // `/docs` → `/docs/`, so the page's relative links resolve inside the directory.
            return Some(redirect(&format!("{path}/")));
        }
        file = contained(&root, &file.join("index.html")).await?;
        metadata = tokio::fs::metadata(&file).await.ok()?;
    }
    if !metadata.is_file() {
        return None;
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let opened = match tokio::fs::File::open(&file).await {
            Ok(opened) => opened,
            Err(err) => {
                tracing::warn!(file = %file.display(), %err, "cannot open a static file");
                return None;
            }
        };
        // Streamed in chunks: a large file costs a buffer, not its size in memory.
        Body::from_stream(
            FramedRead::new(opened, BytesCodec::new()).map_ok(bytes::BytesMut::freeze),
        )
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(metadata.len()));
    // A page under development changes between loads; the browser checks back every time.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Some(response)
}

/// `candidate` resolved, if it exists and lies under the canonical `root`.
async fn contained(root: &Path, candidate: &Path) -> Option<PathBuf> {
    let resolved = tokio::fs::canonicalize(candidate).await.ok()?;
    if resolved.starts_with(root) {
        Some(resolved)
    } else {
        tracing::debug!(
            path = %candidate.display(),
            "a static path resolves outside the directory: not served"
        );
        None
    }
}

/// The request path as a relative path of plain name segments, each percent-decoded; `None`
/// for anything else. Empty segments (`//`) are skipped, so no segment can make it absolute.
fn relative_path(path: &str) -> Option<PathBuf> {
    let mut relative = PathBuf::new();
    for raw in path.split('/').filter(|segment| !segment.is_empty()) {
        let segment = percent_decode(raw)?;
        if segment.starts_with('.') || segment.contains(['/', '\\', '\0']) {
            return None;
        }
        relative.push(segment);
    }
    Some(relative)
}

/// `%XX` escapes decoded; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_owned());
    }
    let mut bytes = Vec::with_capacity(segment.len());
    let mut rest = segment.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The content type of a file, by its extension: the types a browser page is made of.
fn content_type(file: &Path) -> &'static str {
    let extension = file
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_segments_make_a_relative_path() {
        assert_eq!(relative_path("/"), Some(PathBuf::new()));
        assert_eq!(
            relative_path("/js/app.js"),
            Some(PathBuf::from("js/app.js"))
        );
        assert_eq!(
            relative_path("//etc/passwd"),
            Some(PathBuf::from("etc/passwd"))
        );
        assert_eq!(
            relative_path("/a%20b.html"),
            Some(PathBuf::from("a b.html"))
        );
    }

    #[test]
    fn traversal_and_hidden_names_name_nothing() {
        for path in [
            "/../secret",
            "/a/../../secret",
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/a/..%2f..%2fsecret",
            "/%2fetc%2fpasswd",
            "/..%5csecret",
            "/a\\..\\secret",
            "/./index.html",
            "/.git/config",
            "/%2egit/config",
            "/a%00.html",
            "/a%2",
            "/a%zz",
            "/%ff",
        ] {
            assert_eq!(relative_path(path), None, "{path}");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        for (file, expected) in [
            ("index.html", "text/html; charset=utf-8"),
            ("app.JS", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("data.json", "application/json"),
            ("logo.svg", "image/svg+xml"),
            ("logo.png", "image/png"),
            ("LICENSE", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(file)), expected, "{file}");
        }
    }
}
