//! Live interop with a Web Crypto peer: `tests/interop/peer.mjs` runs the client side in a
//! `node` child over stdin/stdout pipes (no network), and this test is the server.
//!
//! Fails with a clear message if `node` is not on PATH, unless `ENCLAVE_SKIP_NODE_INTEROP=1`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use enclave_crypto::accept_client_hello;
use enclave_testkit::events::{cancel, stdout as event};
use enclave_types::{ClientHello, Frame, SessionId, StreamEvent};

/// The whole exchange must finish well within this.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the peer's stdout lines on a thread so every read can time out.
struct Lines(mpsc::Receiver<std::io::Result<String>>);

impl Lines {
    fn spawn(stdout: ChildStdout) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self(rx)
    }

    fn next(&self, child: &mut Child, what: &str) -> String {
        match self.0.recv_timeout(TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(err)) => panic!("reading {what} from the node peer: {err}"),
            Err(_) => {
                let _ = child.kill();
                let output = child.wait_with_output_stderr();
                panic!("no {what} from the node peer within {TIMEOUT:?}; its stderr:\n{output}");
            }
        }
    }
}

trait StderrOf {
    fn wait_with_output_stderr(&mut self) -> String;
}

impl StderrOf for Child {
    fn wait_with_output_stderr(&mut self) -> String {
        let _ = self.wait();
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    }
}

/// Kills the child if the test panics, so it cannot outlive the test run.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn chunk_of(event: &StreamEvent) -> &str {
    match &event.payload {
        enclave_types::EventPayload::Stdout(stdout) => &stdout.chunk,
        other => panic!("not a stdout event: {other:?}"),
    }
}

#[test]
fn node_web_crypto_peer_speaks_the_same_protocol() {
    if std::env::var("ENCLAVE_SKIP_NODE_INTEROP").as_deref() == Ok("1") {
        eprintln!("ENCLAVE_SKIP_NODE_INTEROP=1: skipping the node interop test");
        return;
    }
    let peer = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/peer.mjs");
    let mut child = match Command::new("node")
        .arg(peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => panic!(
            "could not start `node` ({err}): the live interop test needs Node.js 20+ on PATH \
             (set ENCLAVE_SKIP_NODE_INTEROP=1 to skip it)"
        ),
    };
    let mut stdin = child.stdin.take().unwrap();
    let lines = Lines::spawn(child.stdout.take().unwrap());
    let mut guard = KillOnDrop(Some(child));
    let child = guard.0.as_mut().unwrap();

    let session_id = SessionId::generate();
    writeln!(
        stdin,
        "{}",
        serde_json::json!({ "sessionId": session_id.as_str() })
    )
    .unwrap();

    let hello: ClientHello = serde_json::from_str(&lines.next(child, "ClientHello")).unwrap();
    let (server_hello, keys) = accept_client_hello(&hello, &session_id).unwrap();
    writeln!(stdin, "{}", serde_json::to_string(&server_hello).unwrap()).unwrap();
    // The server seals events (s2c) and opens runtime channel messages (c2s).
    let (mut sealer, mut opener) = keys.into_ciphers().unwrap();

    // Non-ASCII text, JSON escapes, and 64 KiB payloads (ASCII and multi-byte).
    let events = vec![
        event(&session_id, 1, "hello, wörld ✓ — 日本語 🔐\n".to_owned()),
        event(
            &session_id,
            2,
            "quote \" backslash \\ tab \t nul-ish \u{1}".to_owned(),
        ),
        event(&session_id, 3, "x".repeat(64 * 1024)),
        event(&session_id, 4, "é".repeat(32 * 1024)),
        event(&session_id, 5, "🦀".repeat(16 * 1024)),
    ];
    let mut line = bytes::BytesMut::new();
    for event in &events {
        line.clear();
        sealer.seal_line(event, &mut line).unwrap();
        stdin.write_all(&line).unwrap();
    }
    stdin.flush().unwrap();
    drop(stdin);

    // Each event comes back as a `cancel` with the event's seq and its chunk as the reason.
    for (i, sent) in events.iter().enumerate() {
        let text = lines.next(child, &format!("echo of event {}", i + 1));
        let Frame::Encrypted(envelope) = Frame::parse_line(text.as_bytes()).unwrap() else {
            panic!("the peer sent plaintext: {text}");
        };
        assert_eq!(envelope.payload.kid, server_hello.key_id);
        assert_eq!(envelope.seq, sent.seq);
        let echoed = opener
            .open(&envelope)
            .unwrap_or_else(|err| panic!("echo of event {}: {err}", i + 1));
        assert_eq!(
            echoed,
            cancel(&session_id, sent.seq, chunk_of(sent)),
            "event {} came back different",
            i + 1
        );
    }
    let own = lines.next(child, "the peer's own message");
    let Frame::Encrypted(envelope) = Frame::parse_line(own.as_bytes()).unwrap() else {
        panic!("the peer sent plaintext: {own}");
    };
    let own = opener.open(&envelope).unwrap();
    assert_eq!(
        own,
        cancel(
            &session_id,
            1000,
            "peer opened 5 envelopes: grüße, 日本語, emoji 🔐, quote \" and newline \n"
        )
    );
    // The peer's envelopes are replays once opened.
    assert_eq!(
        opener.open(&envelope).unwrap_err().code(),
        "ENCRYPTION_NONCE_REUSE"
    );

    let mut child = guard.0.take().unwrap();
    let status = child.wait().unwrap();
    let stderr = child.wait_with_output_stderr();
    assert!(
        status.success(),
        "the node peer failed ({status}):\n{stderr}"
    );
}
