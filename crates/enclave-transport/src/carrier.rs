//! Byte-stream carriers: the Framed stack (NDJSON lines, then the encryption layer) over any
//! `AsyncRead + AsyncWrite` — TCP, Unix sockets, the process's standard streams, an in-memory
//! duplex — and the opening exchange that precedes it.
//!
//! This module just brings tokio support: the protocol lives in `enclave-ndjson` (lines) and
//! `enclave-crypto` ([`EncryptedCodec`], [`EncryptionLayer`]); the functions here put them on
//! the right IO and read or write the first lines.
//!
//! # The opening exchange
//!
//! A byte stream carries exactly what a WebSocket carries, one NDJSON line per message:
//!
//! 1. The client's first line is `{"type":"open", …}` ([`Control::Open`] with a [`WsOpen`]):
//!    the session to create or resume, and an [`EncryptionOffer`] with a fresh `ClientHello`.
//! 2. The server answers with one line: `{"type":"opened", …}` ([`Control::Opened`] with a
//!    [`WsOpened`], carrying the `ServerHello` when the connection is encrypted), or a refusal
//!    body `{"code", "message", "reason"}` (see [`Refusal::to_json`]), after which it closes.
//! 3. From then on the server writes events and the client writes runtime channel messages,
//!    each an `enc` envelope when encrypted, through [`ServerCodec`] / [`ClientCodec`].
//!
//! [`handshake_client`] does the client's half; [`accept_open`] reads the server's first
//! line and hands the [`WsOpen`] to the caller, who decides what session it means (no
//! session layer is involved here) and answers with [`Opening::accept`] or
//! [`Opening::refuse`]. Both halves bound the first line by the line limit. Neither has a
//! timeout of its own: wrap them in `tokio::time::timeout` where a peer may stall.
//!
//! After the exchange, a line that fails (not JSON, a plaintext message once keys are up, an
//! envelope that does not open) is an `Err` *item* and the stream goes on; the stream's own
//! `Err` is an I/O fault, after which it ends. Line numbers in item errors count from the
//! first line after the exchange.
//!
//! ```no_run
//! # async fn demo() -> Result<(), enclave_transport::Error> {
//! use enclave_transport::carrier::{self, tcp};
//! use enclave_transport::client::ClientConfig;
//! use enclave_transport::wire::WsOpen;
//! use enclave_transport::EncryptionMode;
//! use futures::StreamExt as _;
//!
//! // Server: accept, read `open`, answer `opened`, then write events.
//! let listener = tcp::Listener::bind("127.0.0.1:0").await.map_err(enclave_transport::Error::bind)?;
//! let addr = listener.local_addr().map_err(enclave_transport::Error::bind)?;
//! tokio::spawn(async move {
//!     let (stream, _peer) = listener.accept().await?;
//!     let opening = carrier::accept_open(stream, carrier::DEFAULT_MAX_LINE_LENGTH).await?;
//!     let session_id = opening.open().session_id.clone().unwrap_or_else(enclave_types::SessionId::generate);
//!     let opened = enclave_transport::wire::WsOpened::new(session_id, "token".into(), 1, false);
//!     let _events = opening.accept(opened, EncryptionMode::Optional, None).await?;
//!     Ok::<_, enclave_transport::Error>(())
//! });
//!
//! // Client: connect, open, read events (decrypted).
//! let (mut events, opened) = tcp::connect(addr, WsOpen::default(), &ClientConfig::default()).await?;
//! while let Some(item) = events.next().await { /* … */ }
//! # Ok(()) }
//! ```

use std::fmt;

use enclave_crypto::{
    ClientCodec, ClientEncryption, ClientHandshake, EncryptedCodec, EncryptionLayer, ServerCodec,
    ServerEncryption, SigningKey,
};
use enclave_ndjson::NdjsonCodec;
use enclave_types::{
    EncryptionMode, Frame, MessageFrame, RuntimeChannelMessage, SessionId, StreamEvent,
};
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize as _;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, Join, Stdin, Stdout};
use tokio_util::codec::{Encoder, Framed, FramedParts};

use crate::client::{handshake, ClientConfig};
use crate::server::negotiate::{negotiate, Offer};
use crate::service::{Refusal, RefusalReason};
use crate::session_name;
use crate::wire::{self, Control, EncryptionOffer, WsOpen, WsOpened};
use crate::Error;

pub use enclave_ndjson::DEFAULT_MAX_LINE_LENGTH;

/// The server's end after the opening exchange: reads runtime channel messages (each item an
/// `Opened<RuntimeChannelMessage>` or the line's error), writes `&StreamEvent`.
pub type ServerFramed<IO> = Framed<IO, ServerCodec>;
/// The client's end after the opening exchange: reads events (each item an
/// `Opened<StreamEvent>` or the line's error), writes `&RuntimeChannelMessage`.
pub type ClientFramed<IO> = Framed<IO, ClientCodec>;
/// A plaintext-only server end, without the encryption layer: reads [`MessageFrame`]s as
/// they come (an `enc` envelope stays an envelope), writes `&StreamEvent`.
pub type PlainServerFramed<IO> = Framed<IO, NdjsonCodec<MessageFrame, StreamEvent>>;
/// A plaintext-only client end, without the encryption layer: reads [`Frame`]s as they come,
/// writes `&RuntimeChannelMessage`.
pub type PlainClientFramed<IO> = Framed<IO, NdjsonCodec<Frame, RuntimeChannelMessage>>;

/// The codec of the opening lines: any JSON value in, any JSON value out.
type OpeningCodec = NdjsonCodec<serde_json::Value, serde_json::Value>;

/// The server's Framed stack over `io`: NDJSON lines of at most `max_line_length` bytes
/// under `layer` (mode, and the keys of a handshake done elsewhere, if any).
pub fn server_framed<IO>(
    io: IO,
    layer: ServerEncryption,
    max_line_length: usize,
) -> ServerFramed<IO>
where
    IO: AsyncRead + AsyncWrite,
{
    Framed::new(
        io,
        EncryptedCodec::new(NdjsonCodec::with_max_line_length(max_line_length), layer),
    )
}

/// The client's Framed stack over `io`: NDJSON lines of at most `max_line_length` bytes
/// under `layer`.
pub fn client_framed<IO>(
    io: IO,
    layer: ClientEncryption,
    max_line_length: usize,
) -> ClientFramed<IO>
where
    IO: AsyncRead + AsyncWrite,
{
    Framed::new(
        io,
        EncryptedCodec::new(NdjsonCodec::with_max_line_length(max_line_length), layer),
    )
}

/// A plaintext server end over `io`, without the encryption layer.
pub fn plain_server_framed<IO>(io: IO, max_line_length: usize) -> PlainServerFramed<IO>
where
    IO: AsyncRead + AsyncWrite,
{
    Framed::new(io, NdjsonCodec::with_max_line_length(max_line_length))
}

/// A plaintext client end over `io`, without the encryption layer.
pub fn plain_client_framed<IO>(io: IO, max_line_length: usize) -> PlainClientFramed<IO>
where
    IO: AsyncRead + AsyncWrite,
{
    Framed::new(io, NdjsonCodec::with_max_line_length(max_line_length))
}

/// One duplex stream over two halves: what [`stdio`] uses, and what a test uses to stand in
/// for it.
pub fn over<R, W>(reader: R, writer: W) -> Join<R, W>
where
    R: AsyncRead,
    W: AsyncWrite,
{
    tokio::io::join(reader, writer)
}

/// The process's standard input and output as one stream, e.g. for a runtime launched as a
/// child process: `accept_open(stdio(), …)` on the child's side, `handshake_client` over the
/// parent's `over(child_stdout, child_stdin)`. Nothing else may write to stdout meanwhile.
pub fn stdio() -> Join<Stdin, Stdout> {
    over(tokio::io::stdin(), tokio::io::stdout())
}

/// A connected `(server, client)` pair over an in-memory duplex of `capacity` bytes each
/// way, for tests, without an opening exchange. With `encrypted_for`, a handshake for that
/// session is done in memory and both ends require encryption; without, both carry
/// plaintext.
pub fn memory_pair(
    capacity: usize,
    max_line_length: usize,
    encrypted_for: Option<&SessionId>,
) -> Result<(ServerFramed<DuplexStream>, ClientFramed<DuplexStream>), Error> {
    let (server_io, client_io) = tokio::io::duplex(capacity);
    let (server_layer, client_layer) = match encrypted_for {
        None => (
            ServerEncryption::new(EncryptionMode::Disabled),
            ClientEncryption::new(EncryptionMode::Disabled),
        ),
        Some(session_id) => {
            let fail = |err| Error::encryption(Some(session_id), err);
            let client = ClientHandshake::start().map_err(fail)?;
            let (server_hello, server_keys) =
                enclave_crypto::accept_client_hello(client.client_hello(), session_id)
                    .map_err(fail)?;
            let client_keys = client.finish(&server_hello, session_id).map_err(fail)?;
            let (server_sealer, server_opener) = server_keys.into_ciphers().map_err(fail)?;
            let (client_sealer, client_opener) = client_keys.into_ciphers().map_err(fail)?;
            (
                EncryptionLayer::with_ciphers(
                    EncryptionMode::Required,
                    server_sealer,
                    server_opener,
                ),
                EncryptionLayer::with_ciphers(
                    EncryptionMode::Required,
                    client_sealer,
                    client_opener,
                ),
            )
        }
    };
    Ok((
        server_framed(server_io, server_layer, max_line_length),
        client_framed(client_io, client_layer, max_line_length),
    ))
}

/// Reads one line of the opening exchange: `Ok(None)` at end of stream.
async fn read_first<IO>(
    framed: &mut Framed<IO, OpeningCodec>,
    what: &'static str,
    session: Option<&SessionId>,
) -> Result<serde_json::Value, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match framed.next().await {
        None => Err(Error::ClosedEarly { what }),
        Some(Err(err)) => Err(Error::io(format!("reading {what}"), err)),
        Some(Ok(Err(err))) => Err(Error::protocol(
            session,
            format!("the first line is not {what}: {err}"),
        )),
        Some(Ok(Ok(value))) => Ok(value),
    }
}

/// Writes one line of the opening exchange and flushes it.
async fn write_first<IO>(
    framed: &mut Framed<IO, OpeningCodec>,
    value: &serde_json::Value,
    what: &'static str,
    session: Option<&SessionId>,
) -> Result<(), Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    framed.send(value).await.map_err(|err| match err {
        enclave_ndjson::WriteError::Io(source) => Error::io(format!("writing {what}"), source),
        other => Error::protocol(session, format!("cannot write {what}: {other}")),
    })
}

/// Moves `framed`'s IO and buffers under `codec`. The read buffer may already hold lines
/// that followed the first (a peer need not wait): `from_parts` marks it readable, so they
/// are decoded before the IO is polled again.
fn restack<IO, C, I>(framed: Framed<IO, OpeningCodec>, codec: C) -> Framed<IO, C>
where
    IO: AsyncRead + AsyncWrite,
    C: Encoder<I>,
{
    let parts = framed.into_parts();
    let mut next = FramedParts::new::<I>(parts.io, codec);
    next.read_buf = parts.read_buf;
    next.write_buf = parts.write_buf;
    Framed::from_parts(next)
}

/// The client's half of the opening exchange over `io`: sends `open` (with a fresh
/// `ClientHello` unless `config.encryption` is `Disabled`, replacing any `encryption` in
/// `open`; `config.filter` when `open` has none), reads `opened` or a refusal, checks the
/// answer, and returns the client's Framed stack with the session keys installed, and the
/// `opened` message. Of `config`, a byte stream uses the encryption, the pinned server key,
/// the filter and the line limit (headers, TLS and the resume feature are HTTP's and
/// WebSocket's); [`tcp::connect`] and [`unix::connect`] also bound the whole by its
/// `connect_timeout`.
///
/// Refused: [`Error::Refused`]. An `opened` for another session than the one asked for, or
/// a line that is neither, is [`Error::Protocol`]; a missing `ServerHello` where encryption
/// is required is [`Error::EncryptionDowngrade`], one that does not verify against the
/// pinned key [`Error::ServerIdentity`].
pub async fn handshake_client<IO>(
    io: IO,
    mut open: WsOpen,
    config: &ClientConfig,
) -> Result<(ClientFramed<IO>, WsOpened), Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mode = if config.server_key.is_some() {
        EncryptionMode::Required
    } else {
        config.encryption
    };
    let asked = open.session_id.clone();
    let handshake = handshake::start(mode, asked.as_ref())?;
    open.encryption = Some(match &handshake {
        Some(handshake) => handshake::offer(mode, handshake),
        None => EncryptionOffer::new(mode, None),
    });
    if open.filter.is_none() {
        open.filter = config.filter.as_ref().map(|f| Box::new(f.config().clone()));
    }
    let expect = handshake::Expect {
        mode,
        // The mode the server's signature binds: `required` for every resume, else the offer's.
        bound: if open.resume.is_some() {
            EncryptionMode::Required
        } else {
            mode
        },
        pinned: config.server_key.as_ref(),
        missing: "opened carries no ServerHello",
    };

    let mut framed = Framed::new(
        io,
        OpeningCodec::with_max_line_length(config.max_line_length),
    );
    let first = serde_json::to_value(Control::Open(open))
        .map_err(|err| Error::protocol(asked.as_ref(), format!("cannot write open: {err}")))?;
    write_first(&mut framed, &first, "open", asked.as_ref()).await?;
    let answer = read_first(&mut framed, "opened", asked.as_ref()).await?;
    let Ok(Control::Opened(opened)) = Control::deserialize(&answer) else {
        return Err(refusal_or_protocol(&answer, asked.as_ref()));
    };
    if let Some(asked) = &asked {
        if *asked != opened.session_id {
            return Err(Error::protocol(
                Some(asked),
                format!("asked for session {asked}, got {}", opened.session_id),
            ));
        }
    }
    let mut layer = ClientEncryption::new(mode);
    handshake::finish(
        handshake,
        opened.server_hello.as_ref(),
        &opened.session_id,
        &expect,
        &mut layer,
    )?;
    let codec = EncryptedCodec::new(
        NdjsonCodec::with_max_line_length(config.max_line_length),
        layer,
    );
    Ok((
        restack::<_, _, &RuntimeChannelMessage>(framed, codec),
        opened,
    ))
}

/// A refusal line read back ([`wire::read_refusal`]), or a protocol error quoting the line.
fn refusal_or_protocol(answer: &serde_json::Value, session: Option<&SessionId>) -> Error {
    match wire::read_refusal(answer, 0) {
        Some(refusal) => refused(refusal),
        None => Error::protocol(
            session,
            format!(
                "expected opened, got {:?}",
                enclave_types::excerpt(&answer.to_string(), enclave_types::MESSAGE_EXCERPT_CHARS)
            ),
        ),
    }
}

/// [`Error::Refused`] for a byte stream, which has no status of its own: the reason's.
fn refused(refusal: Refusal) -> Error {
    Error::Refused {
        status: refusal.reason.http_status(),
        refusal,
    }
}

/// The server's half of the opening exchange, after the client's `open` was read (see
/// [`accept_open`]): the caller decides what session it means, then answers.
pub struct Opening<IO> {
    framed: Framed<IO, OpeningCodec>,
    open: WsOpen,
    max_line_length: usize,
}

impl<IO> fmt::Debug for Opening<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opening")
            .field("open", &self.open)
            .field("max_line_length", &self.max_line_length)
            .finish_non_exhaustive()
    }
}

/// Reads the client's first line over `io`, which must be `{"type":"open", …}`; the line is
/// bounded by `max_line_length`. A line that is not an `open` gets an `invalid_request`
/// refusal line before the error is returned.
pub async fn accept_open<IO>(io: IO, max_line_length: usize) -> Result<Opening<IO>, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = Framed::new(io, OpeningCodec::with_max_line_length(max_line_length));
    let first = read_first(&mut framed, "open", None).await;
    let refusal = match first {
        Ok(value) => match serde_json::from_value::<Control>(value) {
            Ok(Control::Open(open)) => {
                return Ok(Opening {
                    framed,
                    open,
                    max_line_length,
                })
            }
            Ok(_) => "the first line must be {\"type\":\"open\", …}".to_owned(),
            Err(err) => format!("the first line is not an open message: {err}"),
        },
        Err(Error::Protocol { reason, .. }) => reason,
        Err(other) => return Err(other),
    };
    let refusal = Refusal::new(RefusalReason::InvalidRequest, refusal);
    // Best effort: the client learns why; the error returned says the same.
    let _ = write_first(&mut framed, &refusal.to_json(), "a refusal", None).await;
    Err(refused(refusal))
}

impl<IO> Opening<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// The client's `open`: the session to create or resume, its settings and encryption
    /// offer.
    pub fn open(&self) -> &WsOpen {
        &self.open
    }

    /// Answers `opened` (the caller's `session_id`, `token`, `epoch`, `resumed`; any
    /// `server_hello` in it is replaced) and returns the server's Framed stack.
    ///
    /// The encryption is decided from the client's offer under `policy`, for
    /// `opened.session_id`, as on WebSocket: with a usable `ClientHello` the connection is
    /// encrypted (and `opened` carries the `ServerHello`, signed with `signing_key` if
    /// given, binding `required` for a resume and the offered mode otherwise); without one,
    /// plaintext, unless the policy or the client requires encryption, in which case the
    /// client gets the `ENCRYPTION_REQUIRED` refusal line and this returns
    /// [`Error::Refused`].
    pub async fn accept(
        mut self,
        mut opened: WsOpened,
        policy: EncryptionMode,
        signing_key: Option<&SigningKey>,
    ) -> Result<ServerFramed<IO>, Error> {
        let session_id = opened.session_id.clone();
        let offer = Offer::of(self.open.encryption.as_ref());
        // Every resume binds `required`, a create the offer's mode.
        let bound = if self.open.resume.is_some() {
            Some(EncryptionMode::Required)
        } else {
            offer.mode
        };
        let handshake = match negotiate(policy, offer, &session_id, signing_key.zip(bound)) {
            Ok(handshake) => handshake,
            Err(refusal) => {
                self.refuse(&refusal).await?;
                return Err(refused(refusal));
            }
        };
        let mode = policy;
        let mut layer = ServerEncryption::new(mode);
        opened.server_hello = None;
        if let Some(handshake) = handshake {
            opened.server_hello = Some(handshake.server_hello);
            layer.set_ciphers(handshake.sealer, handshake.opener);
        }
        let line = serde_json::to_value(Control::Opened(opened)).map_err(|err| {
            Error::protocol(Some(&session_id), format!("cannot write opened: {err}"))
        })?;
        write_first(&mut self.framed, &line, "opened", Some(&session_id)).await?;
        let codec = EncryptedCodec::new(
            NdjsonCodec::with_max_line_length(self.max_line_length),
            layer,
        );
        Ok(restack::<_, _, &StreamEvent>(self.framed, codec))
    }

    /// Answers with `refusal`'s body (`{"code", "message", "reason"}`) as one line, then
    /// shuts the stream's write side down.
    pub async fn refuse(mut self, refusal: &Refusal) -> Result<(), Error> {
        tracing::info!(session = %session_name(self.open.session_id.as_ref()), "byte-stream open refused: {refusal}");
        let session = self.open.session_id.clone();
        write_first(
            &mut self.framed,
            &refusal.to_json(),
            "a refusal",
            session.as_ref(),
        )
        .await?;
        let mut io = self.framed.into_inner();
        tokio::io::AsyncWriteExt::shutdown(&mut io)
            .await
            .map_err(|err| Error::io("closing after a refusal", err))
    }
}

/// `connect` (dialing `addr` and the opening exchange) within `limit`: [`Error::Timeout`]
/// when it takes longer.
async fn within<T>(
    limit: std::time::Duration,
    addr: String,
    connect: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(limit, connect)
        .await
        .map_err(|_| Error::Timeout {
            what: "connect to",
            addr,
            after: limit,
        })?
}

/// TCP: a listener that hands out accepted streams, and a connect that does the client's
/// half of the opening exchange.
pub mod tcp {
    use std::io;
    use std::net::SocketAddr;

    use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

    use super::{handshake_client, ClientFramed};
    use crate::client::ClientConfig;
    use crate::wire::{WsOpen, WsOpened};
    use crate::Error;

    /// Connects to `addr` (Nagle off: lines go out as written) and runs
    /// [`handshake_client`], both within `config.connect_timeout`.
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Debug,
        open: WsOpen,
        config: &ClientConfig,
    ) -> Result<(ClientFramed<TcpStream>, WsOpened), Error> {
        let addr_text = format!("{addr:?}");
        let what = format!("connect to {addr_text}");
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|err| Error::io(what.clone(), err))?;
            stream
                .set_nodelay(true)
                .map_err(|err| Error::io(what.clone(), err))?;
            handshake_client(stream, open, config).await
        };
        super::within(config.connect_timeout, addr_text, connect).await
    }

    /// A TCP listener. [`accept`](Self::accept) only accepts: run
    /// [`accept_open`](super::accept_open) on the stream in the connection's own task, so a
    /// slow client never holds up the next.
    #[derive(Debug)]
    pub struct Listener {
        inner: TcpListener,
    }

    impl Listener {
        /// Binds `addr` (port 0 picks a free port).
        pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
            Ok(Self {
                inner: TcpListener::bind(addr).await?,
            })
        }

        /// The bound address.
        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.inner.local_addr()
        }

        /// The next connection (Nagle off) and its peer's address.
        pub async fn accept(&self) -> Result<(TcpStream, SocketAddr), Error> {
            let (stream, peer) = self
                .inner
                .accept()
                .await
                .map_err(|err| Error::io("accepting a TCP connection", err))?;
            stream
                .set_nodelay(true)
                .map_err(|err| Error::io(format!("configuring {peer}"), err))?;
            Ok((stream, peer))
        }
    }
}

/// Unix domain sockets: the same shapes as [`tcp`], over a socket path.
#[cfg(unix)]
pub mod unix {
    use std::io;
    use std::path::{Path, PathBuf};

    use tokio::net::{UnixListener, UnixStream};

    use super::{handshake_client, ClientFramed};
    use crate::client::ClientConfig;
    use crate::wire::{WsOpen, WsOpened};
    use crate::Error;

    /// Connects to the socket at `path` and runs [`handshake_client`], both within
    /// `config.connect_timeout`.
    pub async fn connect(
        path: impl AsRef<Path>,
        open: WsOpen,
        config: &ClientConfig,
    ) -> Result<(ClientFramed<UnixStream>, WsOpened), Error> {
        let path = path.as_ref();
        let what = format!("connect to {}", path.display());
        let connect = async {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|err| Error::io(what.clone(), err))?;
            handshake_client(stream, open, config).await
        };
        super::within(config.connect_timeout, path.display().to_string(), connect).await
    }

    /// A Unix socket listener; it removes its socket file when dropped. Like
    /// [`tcp::Listener`](super::tcp::Listener), it only accepts.
    #[derive(Debug)]
    pub struct Listener {
        inner: UnixListener,
        path: PathBuf,
    }

    impl Listener {
        /// Binds a socket at `path`, which must not exist yet.
        pub fn bind(path: impl AsRef<Path>) -> io::Result<Self> {
            let path = path.as_ref().to_owned();
            Ok(Self {
                inner: UnixListener::bind(&path)?,
                path,
            })
        }

        /// The socket's path.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// The next connection.
        pub async fn accept(&self) -> Result<UnixStream, Error> {
            let (stream, _addr) =
                self.inner.accept().await.map_err(|err| {
                    Error::io(format!("accepting on {}", self.path.display()), err)
                })?;
            Ok(stream)
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            // The socket file outlives the listener otherwise, and a later bind would fail.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
