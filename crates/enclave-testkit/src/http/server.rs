//! The fake servers' side on tokio: [`LoopbackServer`] accepts connections on a loopback port
//! and hands each to a handler of the test's; the handler reads requests with
//! [`read_request`] and answers with [`write_response`], or streams with
//! [`write_chunked_head`] (or [`write_stream_head`], a session stream's head as our server
//! writes it), [`write_chunk`] and [`write_last_chunk`]. [`FakeServer`] adds the
//! state a fake keeps (its script, what it saw) and the test reads back.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::{chunk, head_end, response_head, Request, LAST_CHUNK, MAX_BODY, MAX_HEAD};

/// Reads one request off `socket`: its head and its `Content-Length` bytes of body, and not
/// a byte more.
///
/// `None` when the connection ends (or fails) before a whole request came, when the head is
/// longer than [`MAX_HEAD`] or not a request head, or the body longer than [`MAX_BODY`]: a
/// keep-alive handler loops `while let Some(request)`, a one-shot one says what it expected.
/// There is no time limit: the test bounds the whole exchange, and an idle keep-alive
/// connection waits as long as its client keeps it.
pub async fn read_request<S: AsyncRead + Unpin>(socket: &mut S) -> Option<Request> {
    // The head a byte at a time: nothing past this request is consumed, so a client that
    // sends the next request before the answer (pipelining) loses nothing.
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    let end = loop {
        if let Some(at) = head_end(&head) {
            break at;
        }
        if head.len() > MAX_HEAD {
            return None;
        }
        if socket.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    };
    let mut request = Request::parse_head(&head[..end])?;
    let length = request.content_length()?;
    if length > MAX_BODY {
        return None;
    }
    let mut body = vec![0_u8; length];
    socket.read_exact(&mut body).await.ok()?;
    request.body = body;
    Some(request)
}

/// Writes a whole response: the head with `headers` and a `Content-Length`, then `body`.
pub async fn write_response<S: AsyncWrite + Unpin>(
    socket: &mut S,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let length = body.len().to_string();
    let mut all = headers.to_vec();
    all.push(("Content-Length", &length));
    let mut bytes = response_head(status, reason, &all).into_bytes();
    bytes.extend_from_slice(body);
    socket.write_all(&bytes).await
}

/// Writes the head of a streamed response: `headers` and `Transfer-Encoding: chunked`.
pub async fn write_chunked_head<S: AsyncWrite + Unpin>(
    socket: &mut S,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
) -> io::Result<()> {
    let mut all = headers.to_vec();
    all.push(("Transfer-Encoding", "chunked"));
    socket
        .write_all(response_head(status, reason, &all).as_bytes())
        .await
}

/// Writes the head our server answers a session's stream with (create or resume): `200 OK`,
/// `Content-Type: application/x-ndjson`, chunked, `X-Session-ID`, `X-Enclave-Resume-Token`
/// and `X-Enclave-Epoch`, then the `extra` headers (a resume's `X-Enclave-Server-Hello`, …).
pub async fn write_stream_head<S: AsyncWrite + Unpin>(
    socket: &mut S,
    session: &str,
    token: &str,
    epoch: u64,
    extra: &[(&str, &str)],
) -> io::Result<()> {
    let epoch = epoch.to_string();
    let mut headers = vec![
        ("Content-Type", "application/x-ndjson"),
        ("X-Session-ID", session),
        ("X-Enclave-Resume-Token", token),
        ("X-Enclave-Epoch", epoch.as_str()),
    ];
    headers.extend_from_slice(extra);
    write_chunked_head(socket, 200, "OK", &headers).await
}

/// Writes `bytes` as one chunk of a chunked body.
pub async fn write_chunk<S: AsyncWrite + Unpin>(socket: &mut S, bytes: &[u8]) -> io::Result<()> {
    socket.write_all(&chunk(bytes)).await
}

/// Writes the last chunk: the body ends there.
pub async fn write_last_chunk<S: AsyncWrite + Unpin>(socket: &mut S) -> io::Result<()> {
    socket.write_all(LAST_CHUNK).await
}

/// A fake server on a loopback port (port 0): every connection it accepts goes to a handler
/// of the test's, in a task of its own. Dropping it stops accepting and aborts every handler.
#[derive(Debug)]
pub struct LoopbackServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl LoopbackServer {
    /// Binds `127.0.0.1:0` and serves each connection with `handler`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start<H, F>(handler: H) -> Self
    where
        H: Fn(TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("bind a loopback port: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("the bound port's address: {err}"));
        let task = tokio::spawn(async move {
            // The handlers live in the set, so aborting this task stops them too.
            let mut handlers = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                handlers.spawn(handler(socket));
                // Forget the handlers that ended, so a long test does not keep them all.
                while handlers.try_join_next().is_some() {}
            }
        });
        Self { addr, task }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and its address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A [`LoopbackServer`] whose handlers share a state `S` with the test: the fake's script
/// (what to serve, where to fail) and what it saw, read back with [`FakeServer::state`].
#[derive(Debug)]
pub struct FakeServer<S> {
    state: Arc<Mutex<S>>,
    server: LoopbackServer,
}

impl<S: Send + 'static> FakeServer<S> {
    /// Serves each connection with `handler(socket, state)`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start<H, F>(state: S, handler: H) -> Self
    where
        H: Fn(TcpStream, Arc<Mutex<S>>) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let state = Arc::new(Mutex::new(state));
        let shared = Arc::clone(&state);
        let server =
            LoopbackServer::start(move |socket| handler(socket, Arc::clone(&shared))).await;
        Self { state, server }
    }

    /// The state, locked.
    ///
    /// # Panics
    /// If a handler panicked while it held the lock.
    pub fn state(&self) -> MutexGuard<'_, S> {
        self.state
            .lock()
            .unwrap_or_else(|_| panic!("a handler of the fake panicked holding its state"))
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://` and its address.
    pub fn url(&self) -> String {
        self.server.url()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client::exchange;
    use crate::http::request;

    #[tokio::test]
    async fn a_fake_reads_keep_alive_requests_and_streams_chunks() {
        let server = LoopbackServer::start(|mut socket| async move {
            while let Some(request) = read_request(&mut socket).await {
                if request.method == "POST" {
                    write_response(&mut socket, 200, "OK", &[], &request.body)
                        .await
                        .unwrap();
                    continue;
                }
                write_chunked_head(&mut socket, 200, "OK", &[("Connection", "close")])
                    .await
                    .unwrap();
                write_chunk(&mut socket, b"one\n").await.unwrap();
                write_chunk(&mut socket, b"two\n").await.unwrap();
                write_last_chunk(&mut socket).await.unwrap();
                return;
            }
        })
        .await;
        let host = server.addr().to_string();
        let mut two = request("POST", "/m", &host, &[], b"echo");
        two.extend(request("GET", "/s", &host, &[], b""));
        let response = exchange(server.addr(), &two).await;
        assert_eq!((response.status, response.text().as_str()), (200, "echo"));
        let streamed = exchange(server.addr(), &request("GET", "/s", &host, &[], b"")).await;
        assert_eq!(streamed.text(), "one\ntwo\n");
    }

    #[tokio::test]
    async fn a_stream_head_names_the_session_token_and_epoch() {
        let mut head = Vec::new();
        let hello = [("X-Enclave-Server-Hello", "h")];
        write_stream_head(&mut head, "s_1", "t", 9, &hello)
            .await
            .unwrap();
        let response = crate::http::Response::parse(&head);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("transfer-encoding"), Some("chunked"));
        assert_eq!(response.header("x-session-id"), Some("s_1"));
        assert_eq!(response.header("x-enclave-resume-token"), Some("t"));
        assert_eq!(response.header("x-enclave-epoch"), Some("9"));
        assert_eq!(response.header("x-enclave-server-hello"), Some("h"));
    }

    #[tokio::test]
    async fn a_fake_keeps_what_it_saw_for_the_test() {
        let fake = FakeServer::start(Vec::new(), |mut socket, seen| async move {
            // One request a connection: the answer says `Connection: close`, and closes.
            if let Some(request) = read_request(&mut socket).await {
                seen.lock().unwrap().push(request.target);
                let close = [("Connection", "close")];
                write_response(&mut socket, 204, "No Content", &close, b"")
                    .await
                    .unwrap();
            }
        })
        .await;
        let status = crate::http::client::status(fake.addr(), "GET", "/seen", &[]).await;
        assert_eq!(status, 204);
        assert_eq!(*fake.state(), ["/seen"]);
        assert!(fake.url().ends_with(&fake.addr().port().to_string()));
    }
}
