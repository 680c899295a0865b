//! A real browser as the peer: headless Chromium loads the example page
//! (`crates/enclave-stream/examples/browser`) from one `enclave serve --static` (the page's
//! origin) and reads an encrypted session from another `enclave serve` (the stream's origin:
//! another port, so another origin, so every request goes through CORS). The page negotiates
//! keys with Web Crypto, reads the stream with fetch streaming, decrypts every event, checks
//! the seqs and `final`, and POSTs its verdict to a receiver in this test.
//!
//! Chromium is required: a browser that is missing or cannot run fails the test with a message
//! saying so, never skips it. `ENCLAVE_TEST_CHROMIUM` names another binary than
//! `/usr/bin/chromium` (Debian's `chromium` package, which `.ci/run` installs).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::served;

use served::Served;

/// How long the page gets to report, from Chromium's start.
const REPORT_TIMEOUT: Duration = Duration::from_mins(1);

const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// Numbers the browser profiles of this process, so parallel tests never share one.
static PROFILES: AtomicUsize = AtomicUsize::new(0);

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../enclave-stream/examples/browser")
}

/// The receiver of the page's verdict: a tiny HTTP server on a port the OS picked. Each `POST`
/// body is sent down the channel as JSON and answered `204` with CORS, so the page's
/// cross-origin `fetch` succeeds.
struct ReportReceiver {
    url: String,
    reports: mpsc::Receiver<Value>,
}

impl ReportReceiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the report receiver");
        let url = format!(
            "http://{}/report",
            listener.local_addr().expect("the receiver's address")
        );
        let (tx, reports) = mpsc::channel();
        // The thread ends with the test process; it holds no child process.
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                if let Err(err) = receive(connection, &tx) {
                    eprintln!("report receiver: {err}");
                }
            }
        });
        Self { url, reports }
    }
}

/// One request on `connection`: a `POST`'s body goes down `tx`.
fn receive(connection: TcpStream, tx: &mpsc::Sender<Value>) -> std::io::Result<()> {
    connection.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(connection.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let status = if request_line.starts_with("POST ") {
        let report = serde_json::from_slice(&body).unwrap_or_else(|err| {
            Value::String(format!(
                "a report that is not JSON ({err}): {}",
                String::from_utf8_lossy(&body)
            ))
        });
        let _ = tx.send(report);
        "204 No Content"
    } else if request_line.starts_with("OPTIONS ") {
        "204 No Content"
    } else {
        "404 Not Found"
    };
    let mut connection = connection;
    write!(
        connection,
        "HTTP/1.1 {status}\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: POST\r\n\
         Access-Control-Allow-Headers: Content-Type\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// Headless Chromium on one URL, with a fresh profile; killed (with every process it started)
/// and its profile removed when dropped, a failing test included.
struct Browser {
    child: Child,
    profile: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Browser {
    fn open(url: &str) -> Self {
        let binary = std::env::var_os("ENCLAVE_TEST_CHROMIUM")
            .map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
        assert!(
            binary.is_file(),
            "chromium not found at {}: install Debian's `chromium` package (`apt-get install \
             chromium`; .ci/run does), or name another binary in ENCLAVE_TEST_CHROMIUM",
            binary.display()
        );
        let profile = std::env::temp_dir().join(format!(
            "enclave-browser-{}-{}",
            std::process::id(),
            PROFILES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("a fresh profile directory");
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                // Without these Chromium reaches for Google's services and gets refused.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // The page's console (its errors, uncaught exceptions) goes to stderr, which a
                // failure message quotes.
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so the guard can stop the renderers and helpers too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "chromium at {} cannot start: {err}; install Debian's `chromium` package \
                     (.ci/run does)",
                    binary.display()
                )
            });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut chunk = [0; 4096];
            while let Ok(read @ 1..) = pipe.read(&mut chunk) {
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend_from_slice(&chunk[..read]);
            }
        });
        Self {
            child,
            profile,
            stderr,
        }
    }

    /// The end of what Chromium wrote to stderr, for failure messages.
    fn stderr_tail(&self) -> String {
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let text = String::from_utf8_lossy(&stderr);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The page's verdict, waiting at most [`REPORT_TIMEOUT`]; fails the test loudly when
    /// Chromium exits first or the page never reports.
    fn wait_for_report(&mut self, receiver: &ReportReceiver) -> Value {
        let deadline = Instant::now() + REPORT_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(report) = receiver.reports.recv_timeout(Duration::from_millis(200)) {
                return report;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread drain what the browser wrote before it died.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "chromium exited ({status}) before the page reported: the browser cannot \
                     run here. Its stderr:\n{}",
                    self.stderr_tail()
                );
            }
        }
        panic!(
            "the page sent no report within {REPORT_TIMEOUT:?}. Chromium's stderr:\n{}",
            self.stderr_tail()
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group (browser, zygotes, renderers, utilities) by its id, then the browser
        // itself in case the group could not be signalled.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `value` percent-encoded for a query string.
fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Loads the page from `page` with `stream` as its server and returns its verdict.
fn run_page(page: &Served, stream: &Served) -> Value {
    assert_ne!(page.url, stream.url, "two origins");
    let receiver = ReportReceiver::start();
    let url = format!(
        "{}/?server={}&report={}",
        page.url,
        query_value(&stream.url),
        query_value(&receiver.url)
    );
    let started = Instant::now();
    let mut browser = Browser::open(&url);
    let report = browser.wait_for_report(&receiver);
    eprintln!(
        "the page reported after {:.1} s: {report}",
        started.elapsed().as_secs_f64()
    );
    report
}

#[test]
fn chromium_reads_an_encrypted_session_across_origins_and_decrypts_every_event() {
    const GENERATED: u64 = 100;
    let page = Served::start(&["--static", example_dir().to_str().expect("a UTF-8 path")]);
    let stream = Served::start(&[
        "--generate",
        &GENERATED.to_string(),
        "--encryption",
        "required",
        // No heartbeats: the stream is exactly session_init, the events, final.
        "--heartbeat-ms",
        "0",
    ]);
    let report = run_page(&page, &stream);

    assert!(report["error"].is_null(), "the page failed: {report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["encrypted"], true, "{report}");
    assert_eq!(report["pageOrigin"], page.url.as_str(), "{report}");
    assert_eq!(report["server"], stream.url.as_str(), "{report}");
    let total = GENERATED + 2;
    assert_eq!(report["events"], total, "{report}");
    let seqs: Vec<u64> = report["seqs"]
        .as_array()
        .unwrap_or_else(|| panic!("seqs in {report}"))
        .iter()
        .map(|seq| seq.as_u64().expect("a seq"))
        .collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "{report}");
    assert_eq!(report["final"]["ok"], true, "{report}");
    assert_eq!(report["finalLast"], true, "{report}");
    assert_eq!(report["inOrder"], true, "{report}");
    assert_eq!(report["types"]["session_init"], 1, "{report}");
    assert_eq!(report["types"]["final"], 1, "{report}");
    assert!(
        report["sessionId"]
            .as_str()
            .is_some_and(|id| id.starts_with("s_")),
        "{report}"
    );
    assert!(
        report["keyId"]
            .as_str()
            .is_some_and(|id| id.starts_with("k_")),
        "{report}"
    );
}

#[test]
fn chromium_reports_a_server_that_will_not_encrypt_as_a_failure() {
    let page = Served::start(&["--static", example_dir().to_str().expect("a UTF-8 path")]);
    let stream = Served::start(&["--generate", "5", "--encryption", "disabled"]);
    let report = run_page(&page, &stream);

    // The refusal reached the page with its status and code: CORS holds on refusals too.
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["encrypted"], false, "{report}");
    assert_eq!(report["events"], 0, "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("400 ENCRYPTION_REQUIRED"),
        "the page names the refusal: {report}"
    );
}
