//! `GET /sessions/ws`: one WebSocket per attached connection.
//!
//! The first message each way replaces what HTTP carries in bodies and headers: the
//! client's `{"type":"open", …}` (within [`ServerConfig::with_ws_open_timeout`]) creates or
//! resumes a session, the server's `{"type":"opened", …}` answers with the id, token, epoch
//! and, when encrypted, the `ServerHello`. From then on every event is sealed when the
//! connection is encrypted (`session_init` too: the hello travelled in `opened`), and each
//! text message holds one or more whole NDJSON lines, both ways. Acknowledgements both ways
//! are `{"type":"ack","seq":N}`. A refusal is its JSON body as a text message, then a close
//! with [`RefusalReason::ws_close_code`].
//!
//! [`ServerConfig::with_ws_open_timeout`]: super::ServerConfig::with_ws_open_timeout

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use axum::Extension;
use bytes::BytesMut;
use enclave_crypto::{EncryptionLayer, ServerEncryption};
use enclave_types::{EncryptionMode, MessageFrame, SessionId};
use futures::{SinkExt as _, StreamExt as _};
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::limits::LogBudget;
use super::listener::{reserve_refusal, ConnectionGuard};
use super::negotiate::{negotiate, Handshake, Offer};
use super::pump::{gather, pull, sort, Pull, Put, Sorted};
use super::responses::refusal_response;
use super::ws_watch::{MessageClock, Watched};
use super::Shared;
use crate::metrics::{Carrier, CloseCause};
use crate::service::{
    Attachment, CloseReason, CreateSession, EncodedEvent, EventSource, Features, Outgoing, Refusal,
    RefusalReason, ResumeSession, Upstream,
};
use crate::wire::{self, Classified, Control, WsOpen, WsOpened};
use tracing::Instrument as _;

/// Events already available are sent together, in messages of about this size.
const BATCH_BYTES: usize = 64 * 1024;

/// Upgrades, bounding every message by the line limit.
/// How long a closing server waits for the client's close frame.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

///
/// The upgrade is done here rather than by axum's extractor so the codec reads through a
/// [`Watched`] connection: the server learns when a client message began and closes one not
/// finished within [`ServerConfig::with_ws_message_timeout`](super::ServerConfig::with_ws_message_timeout).
pub(crate) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    guard: Option<Extension<Arc<ConnectionGuard>>>,
    mut request: Request,
) -> Response {
    let accept = match accept_key(request.headers()) {
        Ok(accept) => accept,
        Err(message) => return refusal_response(&wire::invalid_request(message)),
    };
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        let mut response = refusal_response(&wire::invalid_request(
            "this connection cannot be upgraded to a WebSocket",
        ));
        *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
        return response;
    };
    // A client message is bounded as an HTTP body is: a fragmented message is held (by
    // tungstenite) only up to this, then the connection closes with 1009.
    let limit = shared
        .config
        .max_line_length
        .min(shared.config.max_body_bytes);
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let reserve = guard.as_ref().is_some_and(|guard| guard.reserve);
    let peer = guard.as_ref().map(|guard| guard.peer_ip());
    // Every line this socket logs carries its session (recorded once the `open` names it),
    // the carrier and the encryption, inside the TCP connection's span (the peer).
    let span = tracing::info_span!(
        "stream",
        carrier = "ws",
        session = tracing::field::Empty,
        encrypted = tracing::field::Empty,
    );
    tokio::spawn(
        async move {
            // The connection's slot (and the shutdown tracking) lasts as long as the socket.
            let _guard = guard;
            let _track = shared.tracker.track();
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    tracing::debug!("WebSocket upgrade failed: {err}");
                    return;
                }
            };
            let clock = Arc::new(MessageClock::default());
            let io = Watched::new(TokioIo::new(upgraded), Arc::clone(&clock));
            let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            Connection::open(shared, socket, clock, reserve, peer).await;
        }
        .instrument(span),
    );
    let mut response = Body::empty().into_response();
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The `Sec-WebSocket-Accept` of an HTTP/1.1 upgrade request (RFC 6455 §4.2.1), or what is
/// wrong with the request.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|item| item.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has(header::CONNECTION, "upgrade") {
        return Err("a WebSocket request needs `Connection: upgrade`");
    }
    if !has(header::UPGRADE, "websocket") {
        return Err("a WebSocket request needs `Upgrade: websocket`");
    }
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return Err("a WebSocket request needs `Sec-WebSocket-Version: 13`");
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("a WebSocket request needs `Sec-WebSocket-Key`")?;
    HeaderValue::from_str(&tungstenite::handshake::derive_accept_key(key.as_bytes()))
        .map_err(|_| "the Sec-WebSocket-Key cannot be answered")
}

/// The server's side of one WebSocket, read through a [`Watched`] connection.
type Socket = WebSocketStream<Watched<TokioIo<hyper::upgrade::Upgraded>>>;

/// The session-facing half of one WebSocket.
struct Connection {
    shared: Arc<Shared>,
    socket: Socket,
    /// When the client message being received began (for the message timeout).
    clock: Arc<MessageClock>,
    session_id: Option<SessionId>,
    /// On a reserve connection: no new session.
    reserve: bool,
    /// The peer's IP address, for a new session's [`CreateSession::peer`].
    peer: Option<std::net::IpAddr>,
    /// Bounds this connection's WARN lines about what its peer sends.
    log: LogBudget,
}

/// The close a read error deserves: 1009 for a message or frame over the limit, 1002 for a
/// protocol violation, 1007 for a text message that is not UTF-8; `None` when the
/// connection is gone (nothing can be sent).
fn read_error_close(err: &tungstenite::Error) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::Error;
    match err {
        Error::Capacity(_) => Some((1009, "message too big")),
        Error::Protocol(_) => Some((1002, "protocol error")),
        Error::Utf8(_) => Some((1007, "text message is not UTF-8")),
        _ => None,
    }
}

impl Connection {
    async fn open(
        shared: Arc<Shared>,
        socket: Socket,
        clock: Arc<MessageClock>,
        reserve: bool,
        peer: Option<std::net::IpAddr>,
    ) {
        let mut connection = Self {
            shared,
            socket,
            clock,
            session_id: None,
            reserve,
            peer,
            log: LogBudget::default(),
        };
        let timeout = connection.shared.config.ws_open_timeout;
        let open = match tokio::time::timeout(timeout, connection.first_open()).await {
            Ok(Ok(Some(open))) => open,
            Ok(Ok(None)) => return,
            Ok(Err(Opening::Refused(refusal))) => return connection.refuse(&refusal).await,
            Ok(Err(Opening::Broken(code, reason))) => return connection.close(code, reason).await,
            Err(_) => {
                let refusal = Refusal::new(
                    RefusalReason::InvalidRequest,
                    format!("no open message within {} ms", timeout.as_millis()),
                );
                return connection.refuse(&refusal).await;
            }
        };
        let features = Features::parse(&open.features.join(","));
        let resuming = open.resume.is_some();
        let metrics = connection.shared.config.metrics.clone();
        let attached = connection.attach(open, features).await;
        if resuming {
            metrics.resume(Carrier::Ws, attached.as_ref().err().map(|r| r.reason));
        }
        match attached {
            Ok((attachment, handshake)) => connection.run(attachment, handshake, features).await,
            Err(refusal) => connection.refuse(&refusal).await,
        }
    }

    /// Reads the client's first message, which must be `{"type":"open", …}`.
    /// `Ok(None)`: the client went away first.
    async fn first_open(&mut self) -> Result<Option<WsOpen>, Opening> {
        loop {
            let text = match self.socket.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => {
                    return Err(Opening::Refused(Refusal::new(
                        RefusalReason::InvalidRequest,
                        "the open message must be a text message",
                    )))
                }
                Some(Err(err)) => {
                    tracing::debug!(%err, "WebSocket read failed before open");
                    return match read_error_close(&err) {
                        Some((code, reason)) => Err(Opening::Broken(code, reason)),
                        None => Ok(None),
                    };
                }
                Some(Ok(Message::Close(_))) | None => return Ok(None),
            };
            return match serde_json::from_str::<Control>(text.as_str().trim()) {
                Ok(Control::Open(open)) => Ok(Some(open)),
                Ok(_) => Err(Opening::Refused(Refusal::new(
                    RefusalReason::InvalidRequest,
                    "the first message must be {\"type\":\"open\", …}",
                ))),
                Err(err) => Err(Opening::Refused(Refusal::new(
                    RefusalReason::InvalidRequest,
                    format!("the open message is malformed: {err}"),
                ))),
            };
        }
    }

    /// Creates or resumes the session the `open` names.
    async fn attach(
        &mut self,
        open: WsOpen,
        features: Features,
    ) -> Result<(Attachment, Option<Handshake>), Refusal> {
        let offer = Offer::of(open.encryption.as_ref());
        let policy = self.shared.config.encryption;
        let key = self.shared.config.signing_key.as_deref();
        let session_id = open
            .session_id
            .as_ref()
            .map(|id| wire::check_session_id(id.as_str()))
            .transpose()?;
        // Checked before anything is created or resumed; applies to this connection only.
        let filter = wire::parse_filter(open.filter.as_deref())?;
        if let Some(resume) = open.resume {
            let session_id = session_id.ok_or_else(|| {
                Refusal::new(
                    RefusalReason::InvalidRequest,
                    "a resume needs the sessionId of the session",
                )
            })?;
            self.session_id = Some(session_id.clone());
            tracing::Span::current().record("session", tracing::field::display(&session_id));
            // Every resume binds `required` (see `ServerConfig::signing_key`).
            let sign = key.map(|key| (key, EncryptionMode::Required));
            let handshake = negotiate(policy, offer, &session_id, sign)?;
            let mut request = ResumeSession::new(session_id, resume.from.max(1));
            request.token = resume.token;
            request.epoch = resume.epoch;
            request.encrypted = handshake.is_some();
            request.features = features;
            let mut attachment = self.shared.service.resume(request).await?;
            attachment.events = super::filter::apply(attachment.events, filter, false);
            Ok((attachment, handshake))
        } else {
            if self.reserve {
                return Err(reserve_refusal());
            }
            let session_id = session_id.unwrap_or_else(SessionId::generate);
            self.session_id = Some(session_id.clone());
            tracing::Span::current().record("session", tracing::field::display(&session_id));
            let handshake = negotiate(policy, offer, &session_id, key.zip(offer.mode))?;
            let mut request = CreateSession::new(session_id);
            request.code = open.code;
            request.config = open.config.unwrap_or_default();
            request.features = features;
            request.peer = self.peer;
            if let Some(handshake) = &handshake {
                request.encryption = handshake.encryption_config();
                request.encrypted = true;
            }
            let mut attachment = self.shared.service.create(request).await?;
            attachment.events = super::filter::apply(attachment.events, filter, false);
            Ok((attachment, handshake))
        }
    }

    /// Sends `opened`, then events out and client messages in until either side ends.
    // One select loop read top to bottom: events out, messages in, pings, shutdown.
    #[allow(clippy::too_many_lines)]
    async fn run(
        mut self,
        attachment: Attachment,
        handshake: Option<Handshake>,
        features: Features,
    ) {
        let Attachment {
            session_id,
            token,
            epoch,
            resumed,
            events,
            upstream,
            ..
        } = attachment;
        self.session_id = Some(session_id.clone());
        let mut opened = WsOpened::new(session_id.clone(), token, epoch, resumed);
        let mut layer = match handshake {
            Some(handshake) => {
                opened.server_hello = Some(handshake.server_hello);
                EncryptionLayer::with_ciphers(
                    EncryptionMode::Required,
                    handshake.sealer,
                    handshake.opener,
                )
            }
            None => ServerEncryption::new(EncryptionMode::Disabled),
        };
        layer.set_max_line_length(self.shared.config.max_line_length);
        if !self.send_opened(opened).await {
            return;
        }
        // Why it ends, set before each return; a return without one: the client left.
        tracing::Span::current().record("encrypted", layer.is_encrypted());
        tracing::debug!("WebSocket stream opened");
        let mut stream = self
            .shared
            .config
            .metrics
            .stream(Carrier::Ws, layer.is_encrypted());
        let mut pump = Pump {
            session_id,
            layer,
            features,
            upstream,
            batch: BytesMut::new(),
            lines_received: 0,
            events_in_batch: 0,
            max_line_length: self.shared.config.max_line_length,
        };
        let mut next = pull(events);
        let ping_period = self.shared.config.ws_ping_interval;
        let pong_timeout = self.shared.config.ws_pong_timeout;
        let message_timeout = self.shared.config.ws_message_timeout;
        // Ticks often enough to notice a silent peer within its timeout, and an unfinished
        // message within half its timeout more.
        let mut ping = tokio::time::interval(
            ping_period
                .min(pong_timeout)
                .min(message_timeout / 2)
                .max(Duration::from_millis(10)),
        );
        ping.reset();
        let mut last_ping = Instant::now();
        let mut heard = Instant::now();
        let shutdown = self.shared.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    stream.close(CloseCause::Shutdown);
                    let refusal = Refusal::new(RefusalReason::ShuttingDown, "the server is shutting down: resume elsewhere");
                    return self.refuse(&refusal).await;
                }
                (source, item) = &mut next => {
                    let end = pump.collect(source, item, &mut next);
                    if !pump.batch.is_empty() {
                        let text = pump.take_text();
                        stream.written(std::mem::take(&mut pump.events_in_batch), text.len() as u64);
                        if let Err(err) = self.socket.send(Message::Text(text)).await {
                            tracing::debug!(session = %pump.session_id, %err, "WebSocket gone while sending events");
                            return;
                        }
                    }
                    match end {
                        Some(End::Finished) => {
                            stream.close(CloseCause::Finished);
                            return self.close(1000, "final").await;
                        }
                        Some(End::Superseded) => {
                            stream.close(CloseCause::Superseded);
                            return self.close(1000, "superseded").await;
                        }
                        Some(End::Refused(refusal)) => {
                            stream.close(if refusal.reason == RefusalReason::ShuttingDown {
                                CloseCause::Shutdown
                            } else {
                                CloseCause::Error
                            });
                            return self.refuse(&refusal).await;
                        }
                        Some(End::Failed) => {
                            stream.close(CloseCause::Error);
                            return self.close(1011, "cannot write an event").await;
                        }
                        None => {}
                    }
                }
                message = self.socket.next() => {
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            heard = Instant::now();
                            self.log.log(|| tracing::warn!(session = %pump.session_id, "binary message ignored: lines travel in text messages"));
                            continue;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                            heard = Instant::now();
                            continue;
                        }
                        Some(Ok(Message::Close(frame))) => {
                            tracing::debug!(session = %pump.session_id, ?frame, "the client closed the WebSocket");
                            return;
                        }
                        Some(Err(err)) => {
                            tracing::debug!(session = %pump.session_id, %err, "WebSocket read failed");
                            if let Some((code, reason)) = read_error_close(&err) {
                                // The client broke the protocol (too big, not UTF-8, …).
                                stream.close(CloseCause::Error);
                                return self.close(code, reason).await;
                            }
                            return;
                        }
                        None => {
                            tracing::debug!(session = %pump.session_id, "WebSocket ended without a close");
                            return;
                        }
                    };
                    heard = Instant::now();
                    let before = pump.lines_received;
                    let reply = pump.receive(text.as_str(), &mut self.log).await;
                    self.shared
                        .config
                        .metrics
                        .messages_received(Carrier::Ws, pump.lines_received - before);
                    if let Some(reply) = reply {
                        match reply {
                            Ok(Some(ack)) => {
                                if let Err(err) = self.socket.send(Message::Text(ack.into())).await {
                                    tracing::debug!(session = %pump.session_id, %err, "WebSocket gone while acknowledging");
                                    return;
                                }
                            }
                            Ok(None) => {}
                            Err(refusal) => {
                                stream.close(CloseCause::Error);
                                return self.refuse(&refusal).await;
                            }
                        }
                    }
                }
                _ = ping.tick() => {
                    // A message begun and not finished in time (a last fragment that never
                    // comes): it would hold its bytes, up to the message limit, for ever.
                    if self.clock.started().is_some_and(|began| began.elapsed() >= message_timeout) {
                        tracing::debug!(session = %pump.session_id, "a client message not finished within {message_timeout:?}: closing");
                        stream.close(CloseCause::Timeout);
                        return self.close(1008, "message not finished in time").await;
                    }
                    let answered = heard >= last_ping;
                    // Nothing heard since the last ping, not even its pong: the peer is gone.
                    if !answered && last_ping.elapsed() >= pong_timeout {
                        tracing::debug!(session = %pump.session_id, "no pong or message within {pong_timeout:?} of a ping: closing");
                        stream.close(CloseCause::Timeout);
                        return self.close(1001, "ping timeout").await;
                    }
                    if answered && last_ping.elapsed() >= ping_period {
                        if let Err(err) = self.socket.send(Message::Ping(bytes::Bytes::new())).await {
                            tracing::debug!(session = %pump.session_id, %err, "WebSocket gone while pinging");
                            return;
                        }
                        last_ping = Instant::now();
                    }
                }
            }
        }
    }

    /// Sends `{"type":"opened", …}`; `false` when the connection is gone.
    async fn send_opened(&mut self, opened: WsOpened) -> bool {
        match serde_json::to_string(&Control::Opened(opened)) {
            Ok(opened) => self.socket.send(Message::Text(opened.into())).await.is_ok(),
            Err(err) => {
                tracing::error!(session = ?self.session_id.as_ref().map(SessionId::as_str), "cannot write the opened message: {err}");
                let frame = CloseFrame {
                    code: 1011.into(),
                    reason: Utf8Bytes::from_static("internal error"),
                };
                let _ = self.socket.send(Message::Close(Some(frame))).await;
                false
            }
        }
    }

    /// Sends the refusal body, then closes with its code.
    async fn refuse(mut self, refusal: &Refusal) {
        self.shared
            .config
            .metrics
            .refused(wire::PATH_WS, refusal.reason);
        tracing::info!(session = ?self.session_id.as_ref().map(SessionId::as_str), "WebSocket refused: {refusal}");
        let body = refusal.to_json().to_string();
        if self.socket.send(Message::Text(body.into())).await.is_ok() {
            self.close(refusal.reason.ws_close_code(), refusal.reason.as_str())
                .await;
        }
    }

    async fn close(mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: Utf8Bytes::from_static(reason),
        };
        // The peer may be gone already; nothing more to do then.
        if self.socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        // Wait (bounded) for the client's close, reading what it still sends (acks). Dropping
        // the socket at once would close it with the client's messages unread, and the kernel
        // would answer with a reset that destroys the events still in flight to the client:
        // the tail of the stream, `final` included, lost on the wire.
        let drained = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(message)) = self.socket.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::debug!(session = ?self.session_id.as_ref().map(SessionId::as_str), "no close from the client within {CLOSE_WAIT:?}");
        }
    }
}

/// Why no `open` was read.
enum Opening {
    /// A message that is not a usable `open`: refused with its close code.
    Refused(Refusal),
    /// The peer broke the WebSocket protocol: closed with this code and reason.
    Broken(u16, &'static str),
}

/// Why the outgoing side ended.
enum End {
    /// The session's stream is over (after its `final`).
    Finished,
    /// A newer connection resumed the session.
    Superseded,
    /// The session layer refused to go on (server shutdown included).
    Refused(Refusal),
    /// An event could not be written.
    Failed,
}

/// The encoding state of one WebSocket.
struct Pump {
    session_id: SessionId,
    layer: ServerEncryption,
    features: Features,
    upstream: Arc<dyn Upstream>,
    batch: BytesMut,
    lines_received: u64,
    /// Events in the batch being built, for the metrics.
    events_in_batch: u64,
    max_line_length: usize,
}

impl Pump {
    /// Encodes `item` and every item already available after it (up to [`BATCH_BYTES`])
    /// into the batch; leaves `next` pending on the source. Each event is reported
    /// written once it is in the batch about to be handed to the socket.
    fn collect(
        &mut self,
        source: Box<dyn EventSource>,
        item: Option<Outgoing>,
        next: &mut Pull,
    ) -> Option<End> {
        let gathered = gather(source, item, |item, written| {
            match self.put(item, written) {
                Some(end) => Put::End(end),
                None if self.batch.len() >= BATCH_BYTES => Put::Full,
                None => Put::More,
            }
        });
        *next = gathered.next;
        gathered.end
    }

    /// Appends one item's line to the batch (`written` becomes an event's seq once its line
    /// is in); `Some` when the stream ends with it.
    fn put(&mut self, item: Option<Outgoing>, written: &mut Option<u64>) -> Option<End> {
        let resume = self.features.resume;
        match sort(item, &mut self.batch, resume, &self.session_id, written) {
            Sorted::Event(event) => match self.encode(&event) {
                Ok(()) => {
                    *written = Some(event.seq);
                    self.events_in_batch += 1;
                    None
                }
                Err(()) => Some(End::Failed),
            },
            Sorted::Written => None,
            Sorted::Finished => Some(End::Finished),
            Sorted::Closed(CloseReason::Superseded) => Some(End::Superseded),
            Sorted::Closed(CloseReason::ShuttingDown) => Some(End::Refused(Refusal::new(
                RefusalReason::ShuttingDown,
                "the server is shutting down: resume elsewhere",
            ))),
            Sorted::Closed(CloseReason::Refused(refusal)) => Some(End::Refused(refusal)),
        }
    }

    /// Appends `event`'s line to the batch: its JSON as encoded where it was published,
    /// sealed when the connection is encrypted.
    fn encode(&mut self, event: &EncodedEvent) -> Result<(), ()> {
        self.layer
            .encode_json(event.event(), event.json(), &mut self.batch)
            .map_err(|err| {
            tracing::error!(session = %self.session_id, seq = event.seq, code = %err.code(), "cannot write event: {err}");
        })
    }

    fn take_text(&mut self) -> Utf8Bytes {
        let bytes = self.batch.split().freeze();
        if bytes.len() < BATCH_BYTES {
            // A batch that took everything available ends a burst: the buffer goes with it,
            // so an idle connection holds none (a busy one reuses it for the next batch).
            self.batch = BytesMut::new();
        }
        // Every line is JSON written by serde: UTF-8 by construction.
        match Utf8Bytes::try_from(bytes) {
            Ok(text) => text,
            Err(err) => {
                tracing::error!(session = %self.session_id, "batch is not UTF-8: {err}");
                Utf8Bytes::default()
            }
        }
    }

    /// Handles one client text message: its lines are acknowledgements or runtime channel
    /// messages (plaintext, or `enc` when encrypted). A bad line is logged and dropped;
    /// the connection goes on. Returns the ack line to send back, for `resume` clients.
    async fn receive(
        &mut self,
        text: &str,
        log: &mut LogBudget,
    ) -> Option<Result<Option<String>, Refusal>> {
        let mut messages = Vec::new();
        for line in wire::split_lines(text.as_bytes(), self.max_line_length) {
            self.lines_received += 1;
            let number = self.lines_received;
            let line = match line {
                Ok(line) => line,
                Err(err) => {
                    log.log(|| tracing::warn!(session = %self.session_id, line = number, "line dropped: {err}"));
                    continue;
                }
            };
            match wire::classify_client_line(line.value.get().as_bytes()) {
                Classified::Data(frame) => {
                    if let (MessageFrame::Encrypted(envelope), Some(opener)) =
                        (&frame, self.layer.opener())
                    {
                        if opener.last_seq().is_some_and(|last| envelope.seq <= last) {
                            tracing::debug!(session = %self.session_id, line = number, seq = envelope.seq, "message already received: dropped");
                            continue;
                        }
                    }
                    match self.layer.open(frame) {
                        Ok(opened) if opened.message.session_id == self.session_id => {
                            messages.push(opened.message);
                        }
                        Ok(opened) => log.log(|| {
                            tracing::warn!(
                                session = %self.session_id,
                                line = number,
                                "message of session {} dropped",
                                opened.message.session_id
                            );
                        }),
                        Err(err) => log.log(|| {
                            tracing::warn!(
                                session = %self.session_id,
                                line = number,
                                code = %err.code(),
                                "message dropped: {err}"
                            );
                        }),
                    }
                }
                Classified::Control(Control::Ack { seq }) => self.upstream.ack(seq),
                Classified::Control(other) => log.log(|| {
                    tracing::warn!(
                        session = %self.session_id,
                        line = number,
                        "control line {other:?} is not expected here: dropped"
                    );
                }),
                Classified::Unreadable(message_err) => log.log(|| {
                    tracing::warn!(
                        session = %self.session_id,
                        line = number,
                        "neither a client message nor a control line: dropped ({message_err})"
                    );
                }),
            }
        }
        if messages.is_empty() {
            return None;
        }
        Some(match self.upstream.deliver(messages).await {
            Ok(held) if self.features.resume => {
                Ok(serde_json::to_string(&Control::Ack { seq: held })
                    .map(|mut line| {
                        line.push('\n');
                        line
                    })
                    .ok())
            }
            Ok(_) => Ok(None),
            Err(refusal) => Err(refusal),
        })
    }
}
