//! `enclave serve --static DIR`: the files of DIR beside the protocol routes, with their content
//! types, and nothing outside DIR — requests are written byte for byte on a raw socket, since
//! an HTTP client would normalize the `..` away before sending.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use enclave_testkit::http::{self, blocking, Response};

use crate::served;

use served::Served;

const SECRET: &str = "the secret beside the static directory";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

/// A directory tree for one test, removed when dropped:
///
/// ```text
/// base/secret.txt
/// base/site/{index.html, app.js, style.css, data.json, logo.svg, logo.png, health, sessions,
///            .hidden, sub/index.html, alias.js -> app.js,
///            leak.txt -> ../secret.txt, up -> .., etc -> /etc}
/// ```
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new(name: &str) -> Self {
        let base =
            std::env::temp_dir().join(format!("enclave-static-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let tree = Self { base };
        let site = tree.site();
        std::fs::create_dir_all(site.join("sub")).expect("create the tree");
        let write = |path: &str, bytes: &[u8]| {
            std::fs::write(site.join(path), bytes).expect("write a file of the tree");
        };
        write("index.html", b"<!doctype html><title>root</title>");
        write("app.js", b"export const answer = 42;\n");
        write("style.css", b"body { color: black; }\n");
        write("data.json", b"{\"ok\":true}");
        write("logo.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>");
        write("logo.png", PNG);
        write("health", b"a file named like a route");
        write("sessions", b"a file named like a route");
        write(".hidden", SECRET.as_bytes());
        write("sub/index.html", b"<!doctype html><title>sub</title>");
        std::fs::write(tree.base.join("secret.txt"), SECRET).expect("write the secret");
        symlink("app.js", site.join("alias.js")).expect("symlink inside");
        symlink("../secret.txt", site.join("leak.txt")).expect("symlink out");
        symlink("..", site.join("up")).expect("symlink to the parent");
        symlink("/etc", site.join("etc")).expect("absolute symlink");
        tree
    }

    fn site(&self) -> PathBuf {
        self.base.join("site")
    }

    fn site_arg(&self) -> String {
        self.site().to_str().expect("a UTF-8 temp dir").to_owned()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// `METHOD TARGET HTTP/1.1` sent as is (`Connection: close`), the response read to its end.
fn request(authority: &str, method: &str, target: &str) -> Response {
    let close = [("Connection", "close")];
    let reply = blocking::exchange(
        authority,
        &http::request(method, target, authority, &close, b""),
    );
    assert_ne!(
        reply.header("transfer-encoding"),
        Some("chunked"),
        "{method} {target}: these responses have a length"
    );
    reply
}

fn assert_not_found(served: &Served, method: &str, target: &str) {
    let reply = request(served.authority(), method, target);
    assert_eq!(reply.status, 404, "{method} {target}: {}", reply.text());
    assert!(
        !reply.text().contains(SECRET),
        "{method} {target} leaked the secret"
    );
    if method != "HEAD" {
        let body = reply.json();
        assert_eq!(body["code"], "NOT_FOUND", "{method} {target}: {body}");
        assert!(body["message"].is_string(), "{method} {target}: {body}");
    }
    assert!(
        reply
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/json")),
        "{method} {target}: {reply:?}"
    );
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read a file of the tree")
}

#[test]
fn files_are_served_with_their_content_type_and_index_html_for_directories() {
    let tree = Tree::new("types");
    let served = Served::start(&["--static", &tree.site_arg()]);
    let site = tree.site();
    for (target, file, content_type) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/index.html", "index.html", "text/html; charset=utf-8"),
        ("/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/alias.js", "app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "style.css", "text/css; charset=utf-8"),
        ("/data.json", "data.json", "application/json"),
        ("/logo.svg", "logo.svg", "image/svg+xml"),
        ("/logo.png", "logo.png", "image/png"),
        ("/sub/", "sub/index.html", "text/html; charset=utf-8"),
        (
            "/sub/index.html?v=2",
            "sub/index.html",
            "text/html; charset=utf-8",
        ),
        ("/%61pp.js", "app.js", "text/javascript; charset=utf-8"),
    ] {
        let expected = read(&site.join(file));
        let reply = request(served.authority(), "GET", target);
        assert_eq!(reply.status, 200, "GET {target}: {}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some(content_type),
            "GET {target}"
        );
        assert_eq!(reply.body, expected, "GET {target}");
        assert_eq!(
            reply.header("content-length"),
            Some(expected.len().to_string().as_str()),
            "GET {target}"
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        // CORS as on every route: a page of another origin may fetch these too.
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));

        let head = request(served.authority(), "HEAD", target);
        assert_eq!(head.status, 200, "HEAD {target}");
        assert_eq!(
            head.header("content-type"),
            Some(content_type),
            "HEAD {target}"
        );
        assert_eq!(
            head.header("content-length"),
            Some(expected.len().to_string().as_str()),
            "HEAD {target}"
        );
        assert!(head.body.is_empty(), "HEAD {target} has no body");
    }

    // A directory without its slash is redirected, so the page's relative links resolve.
    let reply = request(served.authority(), "GET", "/sub");
    assert_eq!(reply.status, 308, "{}", reply.text());
    assert_eq!(reply.header("location"), Some("/sub/"));

    assert_not_found(&served, "GET", "/missing.html");
    assert_not_found(&served, "GET", "/sub/missing.js");
    // Files are read, never written: other methods find nothing.
    assert_not_found(&served, "POST", "/index.html");
    assert_not_found(&served, "DELETE", "/app.js");
}

#[test]
fn protocol_routes_keep_priority_over_files_of_the_same_name() {
    let tree = Tree::new("priority");
    let served = Served::start(&[
        "--static",
        &tree.site_arg(),
        "--generate",
        "1",
        "--enable-session-list",
    ]);
    let health = request(served.authority(), "GET", "/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), serde_json::json!({ "status": "ok" }));
    let list = request(served.authority(), "GET", "/sessions");
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(list.json()["sessions"].is_array(), "{}", list.text());
    let preflight = request(served.authority(), "OPTIONS", "/index.html");
    assert_eq!(preflight.status, 204);
    drop(served);
    // Without --enable-session-list the route is off (issue 16), and still not the file.
    let served = Served::start(&["--static", &tree.site_arg(), "--generate", "1"]);
    let list = request(served.authority(), "GET", "/sessions");
    assert_eq!(list.status, 404, "{}", list.text());
    assert_eq!(list.json()["code"], "NOT_FOUND", "{}", list.text());
}

#[test]
fn nothing_outside_the_directory_is_reachable() {
    let tree = Tree::new("traversal");
    let served = Served::start(&["--static", &tree.site_arg()]);
    let secret = tree.base.join("secret.txt");
    let secret = secret.to_str().expect("a UTF-8 temp dir");
    for target in [
        // `..`, raw and percent-encoded, in any case, whole or with encoded slashes.
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%5csecret.txt",
        "/sub\\..\\..\\secret.txt",
        // Absolute paths, through empty segments and encoded slashes.
        &format!("/{secret}"),
        &format!("/{}", secret.replace('/', "%2f")),
        "//etc/passwd",
        "/%2fetc/passwd",
        // Symbolic links that lead out, relative and absolute.
        "/leak.txt",
        "/up/secret.txt",
        "/etc/passwd",
        // Hidden names, bad escapes, NUL.
        "/.hidden",
        "/%2ehidden",
        "/index.html%00.js",
        "/%zz",
        "/%c3",
    ] {
        assert_not_found(&served, "GET", target);
        assert_not_found(&served, "HEAD", target);
    }
    // An absolute-form request target is a path like any other.
    let absolute_form = format!("http://{}/../secret.txt", served.authority());
    assert_not_found(&served, "GET", &absolute_form);
}

#[test]
fn without_static_nothing_but_the_routes_is_served_and_a_bad_dir_is_refused() {
    let served = Served::start(&[]);
    assert_not_found(&served, "GET", "/");
    assert_not_found(&served, "GET", "/index.html");

    let missing = std::env::temp_dir().join(format!("enclave-static-none-{}", std::process::id()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args(["serve", "--listen", "127.0.0.1:0", "--static"])
        .arg(&missing)
        .output()
        .expect("enclave serve runs");
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(output.stdout.is_empty(), "no `listening` line");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--static") && stderr.contains("not a directory"),
        "{stderr}"
    );
}
