//! Support for the server identity tests: a signing key and pinned keys, a bounded reader of
//! a client connection, the check that a refusal is the identity one, and a loopback proxy
//! that rewrites the first bytes the server sends (a man in the middle).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use enclave_crypto::{accept_client_hello, ClientHandshake, SigningKey, VerifyingKey};
use enclave_transport::client::{ClientConfig, Connection, Received};
use enclave_transport::Error as TransportError;
use enclave_types::{EventPayload, SessionId, StreamEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Every wait in these tests is bounded by this.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// The most a proxy buffers while it looks for what to rewrite.
const PROXY_BUFFER: usize = 256 * 1024;

/// A fresh server key, shared as the server configuration wants it.
pub(crate) fn server_key() -> Arc<SigningKey> {
    Arc::new(SigningKey::generate().unwrap())
}

/// A client configuration pinning `key`, with a short connect timeout.
pub(crate) fn pinned(key: &VerifyingKey) -> ClientConfig {
    ClientConfig::new()
        .with_server_key(key.clone())
        .with_connect_timeout(Duration::from_secs(5))
}

/// Reads a connection to its end (bounded): the events delivered (and whether each came
/// sealed), and the fatal error that ended it, if one did.
pub(crate) async fn read_all(
    conn: &mut Connection,
) -> (Vec<(StreamEvent, bool)>, Option<TransportError>) {
    let mut events = Vec::new();
    loop {
        let item = tokio::time::timeout(WAIT, conn.next())
            .await
            .expect("the connection yields within the wait");
        match item {
            None => return (events, None),
            Some(Ok(Received::Event {
                event, encrypted, ..
            })) => events.push((event, encrypted)),
            Some(Ok(_)) => {}
            Some(Err(err)) if err.is_item() => panic!("unexpected item error: {err}"),
            Some(Err(err)) => {
                // A fatal error ends the connection: nothing follows it.
                let after = tokio::time::timeout(WAIT, conn.next()).await.unwrap();
                assert!(after.is_none(), "an item after a fatal error: {after:?}");
                return (events, Some(err));
            }
        }
    }
}

/// Reads a connection that must be refused for the server's identity before delivering any
/// event.
pub(crate) async fn assert_refused_before_any_event(conn: &mut Connection) {
    let (events, err) = read_all(conn).await;
    assert!(events.is_empty(), "events were delivered: {events:?}");
    assert_identity_refused(&err.expect("the connection is refused"));
}

/// Checks a session of `stdout` lines as the test service makes them: `session_init`, then
/// `line 0` … `line {n-1}`, then `final`; with `encrypted`, everything after `session_init`
/// arrived sealed (`session_init` too when it is `sealed_init`).
pub(crate) fn assert_session(
    events: &[(StreamEvent, bool)],
    first_seq: u64,
    n: usize,
    sealed_init: bool,
) {
    assert!(!events.is_empty(), "no event received");
    for (offset, (event, encrypted)) in events.iter().enumerate() {
        let seq = first_seq + offset as u64;
        assert_eq!(event.seq, seq, "events in order");
        match &event.payload {
            EventPayload::SessionInit(_) => {
                assert_eq!(seq, 1);
                assert_eq!(*encrypted, sealed_init, "session_init sealing");
            }
            EventPayload::Stdout(out) => {
                assert_eq!(out.chunk, format!("line {}\n", seq - 2));
                assert!(*encrypted, "seq {seq} arrived in plaintext");
            }
            EventPayload::Final(_) => {
                assert_eq!(seq, n as u64 + 2, "final after every line");
                assert!(*encrypted, "final arrived in plaintext");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(
        matches!(events.last().unwrap().0.payload, EventPayload::Final(_)),
        "the session ran to its final"
    );
}

/// Checks that `err` is the server identity refusal, with the TypeScript error code.
pub(crate) fn assert_identity_refused(err: &TransportError) {
    match err {
        TransportError::ServerIdentity { source, .. } => assert_eq!(
            source.code().as_str(),
            "ENCRYPTION_SIGNATURE_VERIFICATION_FAILED",
            "{err}"
        ),
        other => panic!("expected a server identity refusal, got {other:?}"),
    }
    assert!(!err.is_item(), "an identity refusal ends the connection");
}

/// A fresh ephemeral server key in base64, as a man in the middle would answer with.
pub(crate) fn impostor_ephemeral_key(session_id: &SessionId) -> String {
    let client = ClientHandshake::start().unwrap();
    let (hello, _keys) = accept_client_hello(client.client_hello(), session_id).unwrap();
    hello.server_ephemeral_pub_key_b64
}

/// What a proxy does with the bytes the server sent so far, after a [`Rewrite`] saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Keep them and wait for more.
    Hold,
    /// Forward the first `n` bytes untouched (the client may need them to go on) and keep
    /// looking at what follows.
    Forward(usize),
    /// Rewritten: forward everything, and from then on only relay.
    Done,
}

impl From<bool> for Step {
    fn from(done: bool) -> Self {
        if done {
            Self::Done
        } else {
            Self::Hold
        }
    }
}

/// Looks at (and may rewrite) the bytes the server sent so far.
pub(crate) type Rewrite = Arc<dyn Fn(&mut Vec<u8>) -> Step + Send + Sync>;

/// A loopback TCP proxy in front of a server that rewrites the start of every answer.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    /// Whether a rewrite happened (so a test knows its tampering took place).
    pub(crate) rewrote: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr, rewrite: Rewrite) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rewrote = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&rewrote);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(relay(
                    client,
                    upstream,
                    Arc::clone(&rewrite),
                    Arc::clone(&flag),
                ));
            }
        });
        Self {
            addr,
            rewrote,
            task,
        }
    }

    pub(crate) fn rewrote(&self) -> bool {
        self.rewrote.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every relay.
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    rewrite: Rewrite,
    rewrote: Arc<AtomicBool>,
) {
    let Ok(Ok(server)) = tokio::time::timeout(WAIT, TcpStream::connect(upstream)).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let downward = async move {
        let mut buffer = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let mut done = false;
        loop {
            let n = match server_read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if done {
                if client_write.write_all(&chunk[..n]).await.is_err() {
                    break;
                }
                continue;
            }
            buffer.extend_from_slice(&chunk[..n]);
            let forward = match rewrite(&mut buffer) {
                Step::Done => {
                    rewrote.store(true, Ordering::SeqCst);
                    done = true;
                    buffer.len()
                }
                Step::Forward(n) => n.min(buffer.len()),
                Step::Hold if buffer.len() < PROXY_BUFFER => continue,
                Step::Hold => {
                    // Nothing to rewrite in the first bytes: forward as is.
                    done = true;
                    buffer.len()
                }
            };
            if client_write.write_all(&buffer[..forward]).await.is_err() {
                break;
            }
            buffer.drain(..forward);
        }
        if !buffer.is_empty() {
            let _ = client_write.write_all(&buffer).await;
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upward, downward);
}

/// Replaces the first `from` in `buffer` with `to`; `false` when `from` is not there yet.
pub(crate) fn replace_once(buffer: &mut Vec<u8>, from: &[u8], to: &[u8]) -> bool {
    match buffer.windows(from.len()).position(|window| window == from) {
        Some(at) => {
            buffer.splice(at..at + from.len(), to.iter().copied());
            true
        }
        None => false,
    }
}
