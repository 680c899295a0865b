//! The WebSocket carrier: `GET /sessions/ws` upgraded, the `open`/`opened` exchange, then
//! text messages of whole NDJSON lines both ways.

use bytes::Bytes;
use enclave_crypto::ClientHandshake;
use enclave_types::{excerpt, SessionId, MESSAGE_EXCERPT_CHARS};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::net::{dial, BoxIo, Target};
use super::{refusal_from_json, Carrier, ClientConfig, Keys, Open, Opened};
use crate::service::{Refusal, RefusalReason};
use crate::wire::{self, Control, ResumeFrom, WsOpen};
use crate::Error;

/// Room for several lines in one message beyond the line limit.
const MESSAGE_SLACK: usize = 1 << 20;

/// An open WebSocket after the opening exchange.
pub(super) struct WsCarrier {
    ws: WebSocketStream<BoxIo>,
    closed: bool,
}

fn ws_error(
    what: &'static str,
    session: &str,
    source: tokio_tungstenite::tungstenite::Error,
) -> Error {
    Error::WebSocket {
        what,
        session: session.to_owned(),
        source: Box::new(source),
    }
}

/// The refusal a close code stands for, when it names one unambiguously.
fn refusal_for_close(code: u16, reason: &str) -> Option<Error> {
    let reason_kind = match code {
        4401 => RefusalReason::MissingToken,
        4403 => RefusalReason::BadToken,
        4404 => RefusalReason::UnknownSession,
        4410 => RefusalReason::Expired,
        1012 => RefusalReason::ShuttingDown,
        1013 => RefusalReason::Unavailable,
        _ => return None,
    };
    Some(Error::Refused {
        refusal: Refusal::new(reason_kind, excerpt(reason, MESSAGE_EXCERPT_CHARS)),
        status: code,
    })
}

/// Upgrades, sends `open` and reads `opened` (or a refusal).
// One exchange read top to bottom; splitting it would scatter the contract's steps.
#[allow(clippy::too_many_lines)]
pub(super) async fn open(
    target: &Target,
    config: &ClientConfig,
    open: &Open,
    handshake: Option<ClientHandshake>,
) -> Result<Opened, Error> {
    let session = crate::session_name(open.session_id());
    let scheme = if target.tls { "wss" } else { "ws" };
    let url = format!(
        "{scheme}://{}{}",
        target.authority,
        target.path(wire::PATH_WS)
    );
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|err| ws_error("building the upgrade request", &session, err))?;
    for (name, value) in &config.headers {
        request.headers_mut().append(name, value.clone());
    }
    let io = dial(target, config.tls.as_ref(), config.connect_timeout).await?;
    let limit = config.max_line_length.saturating_add(MESSAGE_SLACK);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let exchange = async {
        let (mut ws, _response) =
            tokio_tungstenite::client_async_with_config(request, io, Some(ws_config))
                .await
                .map_err(|err| match err {
                    tokio_tungstenite::tungstenite::Error::Http(response) => {
                        let status = response.status().as_u16();
                        let body = response.body().as_deref().unwrap_or_default();
                        super::with_retry_after(
                            super::refusal_or_status(
                                &format!("GET {}", target.path(wire::PATH_WS)),
                                status,
                                body,
                            ),
                            response.headers(),
                        )
                    }
                    other => ws_error("upgrade", &session, other),
                })?;
        let mut first = WsOpen {
            features: if config.resume_feature {
                vec!["resume".to_owned()]
            } else {
                Vec::new()
            },
            encryption: handshake
                .as_ref()
                .map(|h| super::handshake::offer(config.encryption, h)),
            filter: config.filter.as_ref().map(|f| Box::new(f.config().clone())),
            ..WsOpen::default()
        };
        match open {
            Open::New(new) => {
                first.session_id.clone_from(&new.session_id);
                first.code.clone_from(&new.code);
                first.config.clone_from(&new.config);
            }
            Open::Resume(at) => {
                first.session_id = Some(at.session_id.clone());
                first.resume = Some(ResumeFrom::new(at.from, at.token.clone(), at.epoch));
            }
        }
        let text =
            serde_json::to_string(&Control::Open(first)).expect("an open message serializes");
        ws.send(Message::text(text))
            .await
            .map_err(|err| ws_error("sending open", &session, err))?;
        loop {
            let message = ws
                .next()
                .await
                .ok_or_else(|| Error::Protocol {
                    session: session.clone(),
                    reason: "the server closed the WebSocket before answering open".to_owned(),
                })?
                .map_err(|err| ws_error("reading opened", &session, err))?;
            match message {
                Message::Text(text) => {
                    if let Ok(Control::Opened(opened)) =
                        serde_json::from_str::<Control>(text.as_str())
                    {
                        return Ok((ws, opened));
                    }
                    return Err(refusal_from_json(text.as_bytes(), 0).unwrap_or_else(|| {
                        Error::Protocol {
                            session: session.clone(),
                            reason: format!(
                                "expected opened, got {:?}",
                                excerpt(text.as_str(), MESSAGE_EXCERPT_CHARS)
                            ),
                        }
                    }));
                }
                Message::Close(frame) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    return Err(refusal_for_close(code, &reason).unwrap_or_else(|| {
                        Error::Status {
                            what: "WebSocket open".to_owned(),
                            status: code,
                            body: excerpt(&reason, MESSAGE_EXCERPT_CHARS),
                        }
                    }));
                }
                _ => {}
            }
        }
    };
    let (ws, opened) = tokio::time::timeout(config.connect_timeout, exchange)
        .await
        .map_err(|_| Error::Timeout {
            what: "waiting for opened from",
            addr: target.authority.clone(),
            after: config.connect_timeout,
        })??;
    if let Some(wanted) = open.session_id() {
        if *wanted != opened.session_id {
            return Err(Error::Protocol {
                session,
                reason: format!("asked for session {wanted}, got {}", opened.session_id),
            });
        }
    }
    Ok(Opened {
        session_id: opened.session_id,
        token: Some(opened.token),
        epoch: Some(opened.epoch),
        resumed: opened.resumed,
        keys: Keys::Done(opened.server_hello, handshake),
        carrier: Carrier::Ws(Box::new(WsCarrier { ws, closed: false })),
    })
}

impl WsCarrier {
    /// The lines of the next data message (with a final `\n`); `None` once closed.
    pub(super) async fn read_chunk(&mut self, session: &SessionId) -> Result<Option<Bytes>, Error> {
        if self.closed {
            return Ok(None);
        }
        loop {
            let Some(message) = self.ws.next().await else {
                self.closed = true;
                return Ok(None);
            };
            let message = message.map_err(|err| ws_error("reading", session.as_str(), err))?;
            let data: Bytes = match message {
                Message::Text(text) => Bytes::from(text),
                Message::Binary(data) => data,
                Message::Close(frame) => {
                    self.closed = true;
                    let Some(frame) = frame else { return Ok(None) };
                    if frame.code == CloseCode::Normal && frame.reason == "superseded" {
                        // The same as HTTP's last control line: a newer connection has it.
                        return Ok(Some(Bytes::from_static(b"{\"type\":\"superseded\"}\n")));
                    }
                    if matches!(frame.code, CloseCode::Normal | CloseCode::Away) {
                        return Ok(None);
                    }
                    return match refusal_for_close(u16::from(frame.code), &frame.reason) {
                        Some(err) => Err(err),
                        None => Ok(None),
                    };
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            if data.ends_with(b"\n") {
                return Ok(Some(data));
            }
            // One JSON value without a newline is one line.
            let mut line = Vec::with_capacity(data.len() + 1);
            line.extend_from_slice(&data);
            line.push(b'\n');
            return Ok(Some(Bytes::from(line)));
        }
    }

    /// Sends one text message.
    pub(super) async fn send_text(
        &mut self,
        text: String,
        session: &SessionId,
    ) -> Result<(), Error> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|err| ws_error("sending", session.as_str(), err))
    }

    /// Starts the close handshake and waits briefly for the server's close.
    pub(super) async fn close(&mut self) {
        if self.ws.close(None).await.is_ok() {
            let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
        }
        self.closed = true;
    }
}
