//! The body of an NDJSON stream response: one line per event, pulled from the session's
//! [`EventSource`] only as hyper polls the body, so a slow reader holds at most one line in
//! this process (plus hyper's write buffer) and back-pressures the session layer.
//!
//! Hyper polls the body again as long as the socket takes bytes, so events that are already
//! available go out together in one write, and a line is never held back waiting for the
//! next one.

use std::io;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use enclave_crypto::Sealer;
use enclave_ndjson::StreamEncoder;
use enclave_types::{SessionId, StreamEvent};
use tokio_util::sync::CancellationToken;

use super::negotiate::{InitSigner, RegistryGuard};
use crate::service::{CloseReason, EventSource, Features, Outgoing};
use crate::wire::Control;

/// How the first event of the connection is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstLine {
    /// Like every other (plaintext sessions, and encrypted resumes: all sealed).
    AsTheRest,
    /// In plaintext even when the rest is sealed: the `session_init` of `POST /sessions`,
    /// which carries the `ServerHello`.
    Plaintext,
}

/// One HTTP stream connection's writer.
pub(crate) struct StreamBody {
    pub(crate) session_id: SessionId,
    pub(crate) source: Box<dyn EventSource>,
    pub(crate) sealer: Option<Sealer<StreamEvent>>,
    pub(crate) first_line: FirstLine,
    /// Signs the plaintext first line (`session_init`) when the server has an identity key
    /// and the connection is encrypted.
    pub(crate) signer: Option<InitSigner>,
    pub(crate) features: Features,
    pub(crate) max_line_length: usize,
    pub(crate) shutdown: CancellationToken,
    /// Keeps this connection's opener registered for the messages route while it streams.
    pub(crate) _registry: Option<RegistryGuard>,
}

/// The state carried between two polls of the body.
struct Pump {
    body: StreamBody,
    plain: StreamEncoder<StreamEvent>,
    lines: u64,
    /// The `seq` of the last event handed to hyper, reported as written at the next poll
    /// (hyper polls again only once it has taken the previous chunk).
    handed: Option<u64>,
}

impl StreamBody {
    /// The response body.
    pub(crate) fn into_body(mut self) -> Body {
        if let Some(sealer) = &mut self.sealer {
            sealer.set_max_line_length(self.max_line_length);
        }
        let pump = Pump {
            plain: StreamEncoder::with_max_line_length(self.max_line_length),
            body: self,
            lines: 0,
            handed: None,
        };
        Body::from_stream(futures::stream::unfold(Some(pump), |pump| async move {
            let mut pump = pump?;
            match pump.next_chunk().await {
                Some(Ok(chunk)) => Some((Ok(chunk), Some(pump))),
                Some(Err(err)) => Some((Err(err), None)),
                None => None,
            }
        }))
    }
}

impl Pump {
    /// The next chunk: one line, or `None` when the stream is over.
    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if let Some(seq) = self.handed.take() {
            self.body.source.written(seq);
        }
        loop {
            let item = tokio::select! {
                biased;
                () = self.body.shutdown.cancelled() => {
                    tracing::debug!(session = %self.body.session_id, "server shutting down: stream ended");
                    return None;
                }
                item = self.body.source.next() => item?,
            };
            match item {
                Outgoing::Event(event) => {
                    let line = self.event_line(&event);
                    if line.is_ok() {
                        self.handed = Some(event.seq);
                    }
                    return Some(line);
                }
                Outgoing::ReplayComplete { last_seq } => {
                    if let Some(line) = self.control_line(&Control::ReplayComplete { last_seq }) {
                        return Some(Ok(line));
                    }
                }
                Outgoing::Ack { seq } => {
                    if let Some(line) = self.control_line(&Control::Ack { seq }) {
                        return Some(Ok(line));
                    }
                }
                Outgoing::Close(reason) => {
                    match reason {
                        CloseReason::Refused(refusal) => tracing::info!(
                            session = %self.body.session_id,
                            "stream ended by the session layer: {refusal}"
                        ),
                        other => tracing::debug!(
                            session = %self.body.session_id,
                            reason = ?other,
                            "stream ended by the session layer"
                        ),
                    }
                    return None;
                }
            }
        }
    }

    /// Writes one event as a line: sealed once keys exist, except a plaintext first line.
    fn event_line(&mut self, event: &StreamEvent) -> io::Result<Bytes> {
        self.lines += 1;
        let first_in_plaintext = self.lines == 1 && self.body.first_line == FirstLine::Plaintext;
        let written = match &mut self.body.sealer {
            Some(sealer) if !first_in_plaintext => {
                let mut line = BytesMut::new();
                sealer
                    .seal_line(event, &mut line)
                    .map(|()| line.freeze())
                    .map_err(|err| format!("{} ({err})", err.code()))
            }
            _ => match self.body.signer.as_ref().filter(|_| first_in_plaintext) {
                Some(signer) => signer
                    .sign(event)
                    .map_err(|err| format!("cannot sign session_init ({}): {err}", err.code()))
                    .and_then(|signed| {
                        self.plain
                            .encode(&signed)
                            .map(|()| self.plain.take())
                            .map_err(|err| err.to_string())
                    }),
                None => self
                    .plain
                    .encode(event)
                    .map(|()| self.plain.take())
                    .map_err(|err| err.to_string()),
            },
        };
        written.map_err(|err| {
            // A line that cannot be written cannot be skipped either (the client would see a
            // gap): abort the response so the client notices and resumes.
            tracing::error!(
                session = %self.body.session_id,
                seq = event.seq,
                "cannot write event: {err}"
            );
            io::Error::other(format!(
                "session {}, seq {}: cannot write event: {err}",
                self.body.session_id, event.seq
            ))
        })
    }

    /// A control line, only for clients with the `resume` feature.
    fn control_line(&self, control: &Control) -> Option<Bytes> {
        if !self.body.features.resume {
            return None;
        }
        let mut line = BytesMut::new();
        match serde_json::to_writer((&mut line).writer(), control) {
            Ok(()) => {
                line.put_u8(b'\n');
                Some(line.freeze())
            }
            Err(err) => {
                tracing::error!(session = %self.body.session_id, "cannot write control line: {err}");
                None
            }
        }
    }
}
