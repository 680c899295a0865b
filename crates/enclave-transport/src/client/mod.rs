//! The client side: one connection to a server (ours or the TypeScript broker) over HTTP/1.1
//! chunked NDJSON or WebSocket, for a new session or a resumed one, with a fresh encryption
//! handshake on every connection.
//!
//! A [`Connection`] is one carrier connection; it does not reconnect (that is
//! `enclave-reconnect`'s `ReconnectingStream`, built on this). What it does:
//! - opens the session as the network contract says (`POST /sessions`,
//!   `GET /sessions/:id/stream?from=N&fromSeq=N`, or the WebSocket `open`/`opened` exchange),
//!   reading a refusal into [`Error::Refused`];
//! - completes the handshake where the contract puts it (the first `session_init` line on an
//!   HTTP create, `X-Enclave-Server-Hello` on an HTTP resume, `opened` on WebSocket) and from
//!   then on accepts only envelopes;
//! - yields events and control lines in the order received; a bad line is an item error and
//!   the stream goes on;
//! - sends runtime channel messages and acknowledgements (HTTP: `POST
//!   /sessions/:id/messages`; WebSocket: text messages);
//! - with a pinned server key ([`ClientConfig::with_server_key`]), verifies the
//!   `ServerHello`'s signature before deriving any key or accepting any event.
//!
//! # Server identity: what the client verifies, per route
//!
//! With a pinned key the client requires encryption (its offers say `required`) and
//! rebuilds the signed transcript from its own values ([`ClientHandshake::transcript`]):
//!
//! | route | hello from | session id | mode | `sessionInitDigest` |
//! |---|---|---|---|---|
//! | HTTP create | the first line, `session_init` | `X-Session-ID` | the offer's (`required`) | of the received `session_init` |
//! | HTTP resume | `X-Enclave-Server-Hello` | the resumed one | `required` | none |
//! | WebSocket create | `opened.serverHello` | `opened.sessionId` | the offer's (`required`) | none |
//! | WebSocket resume | `opened.serverHello` | the resumed one | `required` | none |
//!
//! The server's rule is the same (`ServerConfig::signing_key` on the server side): every
//! resume binds `required`. On a create without a session id the server chose the id, and
//! the client takes it from the answer (`X-Session-ID` or `opened`; a create that asked for
//! an id refuses any other): the transcript binds the id, and on HTTP the `session_init`
//! digest binds it too, so a rewritten id fails the signature like any other change. Any
//! failure is [`Error::ServerIdentity`] (`ENCRYPTION_SIGNATURE_VERIFICATION_FAILED`);
//! an answer without any `ServerHello` is [`Error::EncryptionDowngrade`]. Both end the
//! connection before any event is delivered.

pub(crate) mod handshake;
mod http;
mod net;
mod ws;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use enclave_crypto::{ClientEncryption, ClientHandshake, VerifyingKey};
use enclave_ndjson::{StreamDecoder, DEFAULT_MAX_LINE_LENGTH};
use enclave_types::{
    EncryptionMode, EventFilter, EventPayload, Frame, RuntimeChannelMessage, ServerHello,
    SessionId, StreamEvent,
};

pub use self::net::tls_config_from_ca_file;
use self::net::{Carrier as CarrierKind, Target};
use crate::wire::{self, Classified, Control, CreateConfig};
use crate::Error;

/// How a client connects: encryption, headers, features, TLS, limits.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// What the client wants: `Disabled` sends no hello, `Optional` encrypts when the server
    /// answers the hello, `Required` refuses a connection without encryption. Default
    /// `Optional`.
    pub encryption: EncryptionMode,
    /// Headers added to every HTTP request and to the WebSocket upgrade (credentials for a
    /// deployment's authorization hook, …).
    pub headers: Vec<(::http::HeaderName, ::http::HeaderValue)>,
    /// Whether to ask for control lines and acknowledgements (`X-Enclave-Features: resume`).
    /// Default `true`.
    pub resume_feature: bool,
    /// The TLS configuration for `https`/`wss` (ring provider). `None`: such URLs fail.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The longest line accepted, in bytes. Default 16 MiB.
    pub max_line_length: usize,
    /// How long dialing (TCP and TLS) and the opening exchange may take. Default 10 s.
    pub connect_timeout: Duration,
    /// The server's pinned identity key (see [`with_server_key`](Self::with_server_key)).
    /// Default: none (the ECDH is anonymous).
    pub server_key: Option<VerifyingKey>,
    /// The event filter sent on every connection (`filter` of `POST /sessions` and of the
    /// WebSocket `open`, `?filter=` of a resume). Default: none.
    pub filter: Option<EventFilter>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            encryption: EncryptionMode::Optional,
            headers: Vec::new(),
            resume_feature: true,
            tls: None,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            connect_timeout: Duration::from_secs(10),
            server_key: None,
            filter: None,
        }
    }
}

impl ClientConfig {
    /// The default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the server to send only what `filter` lets through, on every connection. Events
    /// left out still take their seq; the server reports them in `filtered` lines
    /// ([`Received::Filtered`]), which only a client with a filter accepts.
    #[must_use]
    pub fn with_filter(mut self, filter: EventFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Sets the encryption mode.
    #[must_use]
    pub fn with_encryption(mut self, mode: EncryptionMode) -> Self {
        self.encryption = mode;
        self
    }

    /// Adds a header to every request.
    #[must_use]
    pub fn with_header(mut self, name: ::http::HeaderName, value: ::http::HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Whether to send `X-Enclave-Features: resume` (control lines, acknowledgements).
    #[must_use]
    pub fn with_resume_feature(mut self, on: bool) -> Self {
        self.resume_feature = on;
        self
    }

    /// Uses `tls` for `https`/`wss`.
    #[must_use]
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Trusts the certificates of a PEM file for `https`/`wss`.
    pub fn with_ca_file(self, path: &std::path::Path) -> Result<Self, Error> {
        Ok(self.with_tls(tls_config_from_ca_file(path)?))
    }

    /// Sets the longest line accepted.
    #[must_use]
    pub fn with_max_line_length(mut self, max_line_length: usize) -> Self {
        self.max_line_length = max_line_length;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Pins the server's identity key (`--server-key FILE`: load it with
    /// [`VerifyingKey::from_spki_pem_file`]). Every connection then requires encryption —
    /// [`encryption`](Self::encryption) is set to `Required`, and a connection is made as if
    /// it were whatever it is set to later — and verifies the `ServerHello`'s signature
    /// before it derives a key or accepts an event; see the [module docs](self) for what is
    /// verified on each route. A missing or wrong signature is
    /// [`Error::ServerIdentity`], a plaintext answer
    /// [`Error::EncryptionDowngrade`].
    #[must_use]
    pub fn with_server_key(mut self, key: VerifyingKey) -> Self {
        self.server_key = Some(key);
        self.encryption = EncryptionMode::Required;
        self
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("encryption", &self.encryption)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("resume_feature", &self.resume_feature)
            .field("tls", &self.tls.is_some())
            .field("max_line_length", &self.max_line_length)
            .field("connect_timeout", &self.connect_timeout)
            .field("server_key", &self.server_key)
            .field("filter", &self.filter.as_ref().map(EventFilter::config))
            .finish()
    }
}

/// A new session: the `POST /sessions` body's fields (or the WebSocket `open`'s).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewSession {
    /// The id to create the session under (`s_…`), or none to let the server choose.
    pub session_id: Option<SessionId>,
    /// The code to run.
    pub code: Option<String>,
    /// Session settings.
    pub config: Option<CreateConfig>,
}

impl NewSession {
    /// A new session with nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for this session id.
    #[must_use]
    pub fn with_session_id(mut self, session_id: SessionId) -> Self {
        self.session_id = Some(session_id);
        self
    }

    /// Sets the code to run.
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the session settings.
    #[must_use]
    pub fn with_config(mut self, config: CreateConfig) -> Self {
        self.config = Some(config);
        self
    }
}

/// Where to resume an existing session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResumeAt {
    /// The session.
    pub session_id: SessionId,
    /// The first `seq` wanted (inclusive).
    pub from: u64,
    /// The resume token from the last connection.
    pub token: Option<String>,
    /// The epoch from the last connection.
    pub epoch: Option<u64>,
}

impl ResumeAt {
    /// Resume `session_id` from `from` (inclusive), without token or epoch.
    pub fn new(session_id: SessionId, from: u64) -> Self {
        Self {
            session_id,
            from,
            token: None,
            epoch: None,
        }
    }

    /// Presents `token`.
    #[must_use]
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Presents `epoch`.
    #[must_use]
    pub fn with_epoch(mut self, epoch: Option<u64>) -> Self {
        self.epoch = epoch;
        self
    }
}

/// What a connection opens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Open {
    /// Create a session.
    New(NewSession),
    /// Resume one.
    Resume(ResumeAt),
}

impl Open {
    /// The session this opens, when known before the server answers.
    pub fn session_id(&self) -> Option<&SessionId> {
        match self {
            Self::New(new) => new.session_id.as_ref(),
            Self::Resume(at) => Some(&at.session_id),
        }
    }
}

/// One thing received on a connection.
// Events are nearly everything received; boxing them would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Received {
    /// An event, opened if it came sealed.
    Event {
        /// The event.
        event: StreamEvent,
        /// Whether it came in an `enc` envelope.
        encrypted: bool,
        /// The event's JSON as received, as one line without its line break, when the
        /// connection keeps it ([`Connection::set_keep_json`]; `None` otherwise, so readers
        /// that do not pass lines on pay no copy per event): the received line (trimmed) for
        /// a plaintext event, the opened plaintext for a sealed one (trimmed, any line break
        /// in it made a space). It is the JSON `event` was read from and validated as, so it
        /// can be passed on as is — key order, spacing and fields this version does not know
        /// included.
        json: Option<Bytes>,
    },
    /// The replay of a resume is over: what follows is live.
    ReplayComplete {
        /// The last replayed `seq`.
        last_seq: u64,
    },
    /// The server holds every client message up to `seq`.
    Ack {
        /// The highest client `seq` the server holds.
        seq: u64,
    },
    /// A newer connection resumed the session: this one ends here (an HTTP `superseded`
    /// control line, or a WebSocket close `1000 superseded`).
    Superseded,
    /// Every event up to `through` not received on this connection was left out by its
    /// event filter.
    Filtered {
        /// The highest `seq` left out.
        through: u64,
    },
}

/// Connects to `url` (`http(s)://HOST:PORT` or `ws(s)://HOST:PORT`, optionally with a path
/// prefix) and opens a session.
pub async fn connect(url: &str, open: Open, config: &ClientConfig) -> Result<Connection, Error> {
    let target = Arc::new(Target::parse(url)?);
    // A pinned key means encryption is required, whatever the mode says.
    let pinned_config;
    let config = if config.server_key.is_some() && config.encryption != EncryptionMode::Required {
        pinned_config = config.clone().with_encryption(EncryptionMode::Required);
        &pinned_config
    } else {
        config
    };
    tracing::debug!(
        server = %target.authority,
        carrier = ?target.carrier,
        resume = matches!(open, Open::Resume(_)),
        "connecting"
    );
    let handshake = handshake::start(config.encryption, open.session_id())?;
    let opened = match target.carrier {
        CarrierKind::Http => http::open(&target, config, &open, handshake).await?,
        CarrierKind::Ws => ws::open(&target, config, &open, handshake).await?,
    };
    let mut conn = Connection {
        target,
        config: config.clone(),
        session_id: opened.session_id,
        token: opened.token,
        epoch: opened.epoch,
        resumed: opened.resumed,
        layer: ClientEncryption::new(config.encryption),
        pending_handshake: None,
        awaiting_init: false,
        decoder: StreamDecoder::with_max_line_length(config.max_line_length),
        last_seq: None,
        queued: VecDeque::new(),
        carrier: opened.carrier,
        ended: false,
        failed: false,
        keep_json: false,
    };
    conn.layer.set_max_line_length(config.max_line_length);
    match opened.keys {
        Keys::Done(server_hello, handshake) => {
            let expect = handshake::Expect {
                mode: config.encryption,
                // The mode the transcript binds: `required` for every resume, else the offer's.
                bound: match &open {
                    Open::Resume(_) => EncryptionMode::Required,
                    Open::New(_) => config.encryption,
                },
                pinned: config.server_key.as_ref(),
                missing: "no ServerHello in the server's answer",
            };
            handshake::finish(
                handshake,
                server_hello.as_ref(),
                &conn.session_id,
                &expect,
                &mut conn.layer,
            )?;
        }
        Keys::InFirstLine(handshake) => {
            conn.pending_handshake = handshake;
            conn.awaiting_init = true;
        }
    }
    tracing::debug!(
        session = %conn.session_id,
        resumed = conn.resumed,
        encrypted = conn.encrypted() || conn.awaiting_init && conn.pending_handshake.is_some(),
        "connected"
    );
    Ok(conn)
}

/// Where the handshake stands once the opening exchange is over.
enum Keys {
    /// The answer carried the ServerHello (or none): finish now.
    Done(Option<ServerHello>, Option<ClientHandshake>),
    /// HTTP create: the ServerHello comes in the first line, `session_init`.
    InFirstLine(Option<ClientHandshake>),
}

/// What a carrier's opening exchange produced.
struct Opened {
    session_id: SessionId,
    token: Option<String>,
    epoch: Option<u64>,
    resumed: bool,
    keys: Keys,
    carrier: Carrier,
}

/// The carrier of an open connection.
enum Carrier {
    Http(http::HttpCarrier),
    Ws(Box<ws::WsCarrier>),
}

/// One open connection to a session. See the [module docs](self).
pub struct Connection {
    target: Arc<Target>,
    config: ClientConfig,
    session_id: SessionId,
    token: Option<String>,
    epoch: Option<u64>,
    resumed: bool,
    layer: ClientEncryption,
    pending_handshake: Option<ClientHandshake>,
    /// HTTP create: the first line must be the plaintext `session_init`.
    awaiting_init: bool,
    /// Splits the stream into lines; each is parsed once, by [`read_line`].
    decoder: StreamDecoder<Frame>,
    last_seq: Option<u64>,
    queued: VecDeque<Received>,
    carrier: Carrier,
    ended: bool,
    failed: bool,
    /// Whether events come with their JSON ([`Received::Event`]'s `json`).
    keep_json: bool,
}

impl Connection {
    /// The session.
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// The resume token for the next resume (none from servers without resume, such as the
    /// TypeScript broker).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The session's epoch, when the server told it.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Whether this connection resumed an existing session.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Whether this connection is encrypted (keys installed).
    pub fn encrypted(&self) -> bool {
        self.layer.is_encrypted()
    }

    /// The highest event `seq` received on this connection.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Whether the events read from now on carry their JSON as received
    /// ([`Received::Event`]'s `json`): one copy of each event's line (or opened plaintext),
    /// for a reader that passes lines on instead of writing events again. Off by default.
    pub fn set_keep_json(&mut self, keep: bool) {
        self.keep_json = keep;
    }

    /// The next event or control line; `None` once the server ended the stream or after a
    /// fatal error. An item error ([`Error::is_item`]) leaves the stream going.
    pub async fn next(&mut self) -> Option<Result<Received, Error>> {
        loop {
            if let Some(received) = self.queued.pop_front() {
                return Some(Ok(received));
            }
            if self.failed {
                return None;
            }
            let keep_json = self.keep_json;
            if let Some(item) = self
                .decoder
                .next_line_with(|text| read_line_keeping(text, keep_json))
            {
                let result = match item {
                    Ok(line) => self.classify(line),
                    Err(source) => Err(Error::Line {
                        session: self.session_id.as_str().to_owned(),
                        source: Box::new(source),
                    }),
                };
                if let Err(err) = &result {
                    if !err.is_item() {
                        self.failed = true;
                    }
                }
                return Some(result);
            }
            if self.ended {
                if self.decoder.has_pending() {
                    // The server ends every line; a partial one means the link was cut.
                    tracing::debug!(session = %self.session_id, "stream cut inside a line");
                    self.decoder.reset();
                }
                return None;
            }
            let chunk = match &mut self.carrier {
                Carrier::Http(http) => http.read_chunk(&self.session_id).await,
                Carrier::Ws(ws) => ws.read_chunk(&self.session_id).await,
            };
            match chunk {
                Ok(Some(bytes)) => self.decoder.feed(&bytes),
                Ok(None) => self.ended = true,
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
        }
    }

    /// Sends one runtime channel message (sealed when the connection is encrypted).
    pub async fn send(&mut self, message: &RuntimeChannelMessage) -> Result<(), Error> {
        self.send_all(std::slice::from_ref(message)).await
    }

    /// Sends messages in one request (HTTP) or one WebSocket message. On HTTP the server's
    /// answer `{"ack": M}` comes back through [`next`](Self::next) as [`Received::Ack`].
    pub async fn send_all(&mut self, messages: &[RuntimeChannelMessage]) -> Result<(), Error> {
        let mut body = BytesMut::new();
        for message in messages {
            self.layer
                .encode(message, &mut body)
                .map_err(|source| Error::encryption(Some(&self.session_id), source))?;
        }
        self.post(body.freeze(), self.last_seq).await
    }

    /// Acknowledges every event up to `seq`.
    pub async fn ack(&mut self, seq: u64) -> Result<(), Error> {
        match &mut self.carrier {
            Carrier::Http(_) => self.post(Bytes::new(), Some(seq)).await,
            Carrier::Ws(ws) => {
                let line = format!(r#"{{"type":"ack","seq":{seq}}}"#);
                ws.send_text(line, &self.session_id).await
            }
        }
    }

    /// Closes the connection (a WebSocket close handshake; HTTP just drops it).
    pub async fn close(mut self) {
        if let Carrier::Ws(ws) = &mut self.carrier {
            ws.close().await;
        }
    }

    async fn post(&mut self, body: Bytes, ack: Option<u64>) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Closed {
                session: self.session_id.as_str().to_owned(),
            });
        }
        match &mut self.carrier {
            Carrier::Http(http) => {
                let ack = http
                    .post_messages(
                        &self.target,
                        &self.config,
                        &self.session_id,
                        self.token.as_deref(),
                        body,
                        ack,
                    )
                    .await?;
                if let Some(seq) = ack {
                    self.queued.push_back(Received::Ack { seq });
                }
                Ok(())
            }
            Carrier::Ws(ws) => {
                if body.is_empty() {
                    return Ok(());
                }
                let text = String::from_utf8(body.to_vec()).map_err(|_| Error::Protocol {
                    session: self.session_id.as_str().to_owned(),
                    reason: "an encoded message is not UTF-8".to_owned(),
                })?;
                ws.send_text(text, &self.session_id).await
            }
        }
    }

    /// Turns one line into an event or a control line.
    fn classify(&mut self, (read, json): (Line, Option<Bytes>)) -> Result<Received, Error> {
        let line = self.decoder.line_number();
        let classified = match read {
            Line::Classified(classified) => classified,
            Line::Refusal(refusal) => {
                self.failed = true;
                return Err(refusal);
            }
        };
        let frame = match classified {
            Classified::Data(frame) => frame,
            Classified::Control(Control::Ack { seq }) => return Ok(Received::Ack { seq }),
            Classified::Control(Control::ReplayComplete { last_seq }) => {
                return Ok(Received::ReplayComplete { last_seq })
            }
            Classified::Control(Control::Superseded) => return Ok(Received::Superseded),
            Classified::Control(Control::Filtered { through }) => {
                self.last_seq = Some(self.last_seq.map_or(through, |last| last.max(through)));
                return Ok(Received::Filtered { through });
            }
            Classified::Control(other) => {
                let source = enclave_types::Error::InvalidField {
                    field: "type",
                    reason: format!("a server does not send {other:?} mid-stream"),
                };
                return Err(self.unreadable(line, source));
            }
            Classified::Unreadable(source) => return Err(self.unreadable(line, source)),
        };
        if self.awaiting_init {
            self.awaiting_init = false;
            if let Frame::Event(event) = frame {
                return self.first_line(event, json);
            }
            if self.config.encryption == EncryptionMode::Required {
                return Err(Error::EncryptionDowngrade {
                    session: self.session_id.as_str().to_owned(),
                    reason: "the first line is not a plaintext session_init",
                });
            }
            self.pending_handshake = None;
        }
        let refused = |source| Error::RefusedLine {
            session: self.session_id.as_str().to_owned(),
            line,
            source: Box::new(source),
        };
        // Only a reader that keeps JSON pays for the plaintext's copy.
        let (opened, json) = if self.keep_json {
            let (opened, plaintext) = self.layer.open_with_json(frame).map_err(refused)?;
            (
                opened,
                plaintext.map(|plaintext| one_line(&plaintext)).or(json),
            )
        } else {
            (self.layer.open(frame).map_err(refused)?, None)
        };
        self.accept(opened.message, opened.encrypted, json)
    }

    /// The first line of an HTTP create: the plaintext `session_init`, which carries the
    /// ServerHello when the server encrypts.
    ///
    /// With a pinned key the whole line is verified first: the signature covers the hello,
    /// the session, the mode and the line itself, so a flipped `encryption.enabled`, a
    /// removed hello or a rewritten `cancelUrl` is refused before anything is accepted.
    fn first_line(&mut self, event: StreamEvent, json: Option<Bytes>) -> Result<Received, Error> {
        let handshake = self.pending_handshake.take();
        if event.session_id != self.session_id {
            return Err(Error::Protocol {
                session: self.session_id.as_str().to_owned(),
                reason: format!("the first line belongs to session {}", event.session_id),
            });
        }
        if let (Some(pinned), Some(handshake)) = (&self.config.server_key, &handshake) {
            let verified = pinned.verify_session_init(
                &event,
                &self.session_id,
                handshake.client_hello(),
                self.config.encryption,
            );
            if let Err(source) = verified {
                return Err(Error::identity(&self.session_id, source));
            }
        }
        let server_hello = match &event.payload {
            EventPayload::SessionInit(init) if init.encryption.enabled => {
                init.encryption.server_hello.as_ref()
            }
            _ => None,
        };
        let expect = handshake::Expect {
            mode: self.config.encryption,
            bound: self.config.encryption,
            // The whole line, hello included, was verified above.
            pinned: None,
            missing: "session_init carries no ServerHello",
        };
        // An error here is fatal: `next` ends the connection.
        handshake::finish(
            handshake,
            server_hello,
            &self.session_id,
            &expect,
            &mut self.layer,
        )?;
        self.accept(event, false, json)
    }

    fn accept(
        &mut self,
        event: StreamEvent,
        encrypted: bool,
        json: Option<Bytes>,
    ) -> Result<Received, Error> {
        if event.session_id != self.session_id {
            return Err(Error::Protocol {
                session: self.session_id.as_str().to_owned(),
                reason: format!(
                    "event seq {} belongs to session {}",
                    event.seq, event.session_id
                ),
            });
        }
        self.last_seq = Some(self.last_seq.map_or(event.seq, |last| last.max(event.seq)));
        Ok(Received::Event {
            event,
            encrypted,
            json,
        })
    }

    fn unreadable(&self, line: u64, source: enclave_types::Error) -> Error {
        Error::Unreadable {
            session: self.session_id.as_str().to_owned(),
            line,
            source: Box::new(source),
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.target.authority)
            .field(
                "carrier",
                match self.carrier {
                    Carrier::Http(_) => &"http",
                    Carrier::Ws(_) => &"ws",
                },
            )
            .field("session_id", &self.session_id)
            .field("epoch", &self.epoch)
            .field("resumed", &self.resumed)
            .field("encrypted", &self.encrypted())
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

/// One line of the server's stream, as [`read_line`] found it.
// Made and consumed once per line, on the stack: boxing the usual variant would cost an
// allocation per line to save bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
enum Line {
    /// An event, envelope or control line, or why the line is none of them.
    Classified(Classified<Frame>),
    /// A refusal `{"code", "message", …}` in place of an event: the server ends the stream
    /// with it (fatal).
    Refusal(Error),
}

/// Reads one line of the server's stream (UTF-8 checked and trimmed by the decoder): parsed
/// once as an event or envelope, and only when it is not one, as a control line or a refusal.
fn read_line(text: &str) -> Line {
    match wire::classify_server_text(text) {
        Classified::Unreadable(source) => match refusal_from_json(text.as_bytes(), 0) {
            Some(refusal) => Line::Refusal(refusal),
            None => Line::Classified(Classified::Unreadable(source)),
        },
        classified => Line::Classified(classified),
    }
}

/// [`read_line`], with a copy of the line when `keep` asks for it and it is a plaintext
/// event (its JSON, for [`Received::Event`]'s `json`).
fn read_line_keeping(text: &str, keep: bool) -> (Line, Option<Bytes>) {
    let line = read_line(text);
    let json = match &line {
        Line::Classified(Classified::Data(Frame::Event(_))) if keep => {
            Some(Bytes::copy_from_slice(text.as_bytes()))
        }
        _ => None,
    };
    (line, json)
}

/// An opened plaintext as one line: trimmed, and any line break in it made a space. That
/// changes nothing of the JSON: a raw line break cannot be inside a JSON string (it must be
/// escaped there), so where valid JSON has one it is whitespace between values.
fn one_line(plaintext: &Bytes) -> Bytes {
    let start = plaintext
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(plaintext.len());
    let end = plaintext
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |last| last + 1);
    let trimmed = plaintext.slice(start..end);
    if trimmed.iter().any(|&b| b == b'\n' || b == b'\r') {
        trimmed
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect::<Vec<u8>>()
            .into()
    } else {
        trimmed
    }
}

/// A refusal body `{"code", "message", "reason"?}` read back ([`wire::read_refusal`]), as
/// the error it is; `status` 0 (no HTTP status: a line of the stream) takes the reason's.
fn refusal_from_json(body: &[u8], status: u16) -> Option<Error> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let refusal = wire::read_refusal(&body, status)?;
    let status = if status == 0 {
        refusal.reason.http_status()
    } else {
        status
    };
    Some(Error::Refused { refusal, status })
}

/// `err` with the `Retry-After` (delay in seconds) of the answer it came from, when it is a
/// refusal and the header is there; an HTTP date is not read (the client's backoff applies).
fn with_retry_after(err: Error, headers: &::http::HeaderMap) -> Error {
    let delay = headers
        .get(::http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs);
    match (err, delay) {
        (Error::Refused { refusal, status }, Some(delay)) => Error::Refused {
            refusal: refusal.with_retry_after(delay),
            status,
        },
        (err, _) => err,
    }
}

/// A refusal from an error answer, or [`Error::Status`] when it is not one.
fn refusal_or_status(what: &str, status: u16, body: &[u8]) -> Error {
    refusal_from_json(body, status).unwrap_or_else(|| Error::Status {
        what: what.to_owned(),
        status,
        body: enclave_types::excerpt(
            &String::from_utf8_lossy(body),
            enclave_types::MESSAGE_EXCERPT_CHARS,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opened_plaintext_is_passed_on_as_one_line_of_the_same_json() {
        let pretty =
            Bytes::from_static(b" \r\n{\"seq\":1,\r\n  \"payload\": {\"chunk\": \"a\\nb\"}\n}\n ");
        let line = one_line(&pretty);
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r'), "{line:?}");
        assert_eq!(line.first(), Some(&b'{'));
        assert_eq!(line.last(), Some(&b'}'));
        let parsed: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"seq": 1, "payload": {"chunk": "a\nb"}})
        );
        // Already one line: handed on as is, not copied.
        let compact = Bytes::from_static(b"{\"seq\":2}");
        assert_eq!(one_line(&compact).as_ptr(), compact.as_ptr());
    }
}
