//! The body of an NDJSON stream response: one line per event, pulled from the session's
//! [`EventSource`] only as hyper polls the body, so a slow reader holds at most one line in
//! this process (plus hyper's write buffer) and back-pressures the session layer.
//!
//! Hyper polls the body again as long as the socket takes bytes, so events that are already
//! available go out together in one write, and a line is never held back waiting for the
//! next one.

use std::io;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use enclave_crypto::Sealer;
use enclave_ndjson::StreamEncoder;
use enclave_types::{SessionId, StreamEvent};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::negotiate::{InitSigner, RegistryGuard};
use super::pump::{control_line, gather, pull, sort, Pull, Put, Sorted};
use crate::metrics::{CloseCause, StreamMetrics};
use crate::service::{CloseReason, EncodedEvent, EventSource, Features, Outgoing};
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
    /// What it wrote and why it ended (a body dropped before its end: the client left).
    pub(crate) metrics: StreamMetrics,
    pub(crate) session_id: SessionId,
    /// Taken by [`StreamBody::into_body`]; always `Some` before.
    pub(crate) source: Option<Box<dyn EventSource>>,
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
    /// The pending pull from the session layer, kept across chunks so taking "what is already
    /// there" never drops an item.
    next: Option<Pull>,
    plain: StreamEncoder<StreamEvent>,
    /// What chunks are built in (see [`Pump::next_chunk`]).
    buffer: BytesMut,
    lines: u64,
    /// Events written into the chunk being built, for the metrics (as the WebSocket's
    /// `events_in_batch`).
    events_in_chunk: u64,
    /// An event that could not be written after earlier lines of its chunk: the chunk goes
    /// out first, then the response is aborted with this.
    failed: Option<io::Error>,
    ended: bool,
    /// The stream's span (session, carrier, encryption), which its log lines carry.
    span: tracing::Span,
}

impl Drop for Pump {
    fn drop(&mut self) {
        let (lines, ended) = (self.lines, self.ended);
        self.span.in_scope(|| {
            tracing::debug!(lines, finished = ended, "stream closed");
        });
    }
}

/// The most a chunk holds before it is handed to hyper (more lines wait for the next one).
const CHUNK_BYTES: usize = 64 * 1024;

impl StreamBody {
    pub(crate) fn into_body(mut self) -> Body {
        if let Some(sealer) = &mut self.sealer {
            sealer.set_max_line_length(self.max_line_length);
        }
        let Some(source) = self.source.take() else {
            tracing::error!(session = %self.session_id, "a stream body without its source: empty response");
            return Body::empty();
        };
        // Every line the stream logs carries its session, carrier and encryption (inside the
        // TCP connection's span, which has the peer).
        let span = tracing::info_span!(
            "stream",
            carrier = "http",
            session = %self.session_id,
            encrypted = self.sealer.is_some(),
        );
        span.in_scope(|| tracing::debug!(first_line = ?self.first_line, "stream opened"));
        let pump = Pump {
            plain: StreamEncoder::with_max_line_length(self.max_line_length),
            body: self,
            next: Some(pull(source)),
            buffer: BytesMut::new(),
            lines: 0,
            events_in_chunk: 0,
            failed: None,
            ended: false,
            span: span.clone(),
        };
        Body::from_stream(futures::stream::unfold(Some(pump), move |pump| {
            let span = span.clone();
            async move {
                let mut pump = pump?;
                match pump.next_chunk().instrument(span).await {
                    Some(Ok(chunk)) => Some((Ok(chunk), Some(pump))),
                    Some(Err(err)) => Some((Err(err), None)),
                    None => None,
                }
            }
        }))
    }
}

impl Pump {
    /// The next chunk: one item waited for, then every item already available, up to
    /// [`CHUNK_BYTES`], so a fast stream goes out in large chunks and a slow one line by line
    /// without delay. An event counts as written once it is in a chunk handed to hyper.
    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if let Some(err) = self.failed.take() {
            return Some(Err(err));
        }
        if self.ended {
            return None;
        }
        let pending = self.next.as_mut()?;
        let (source, item) = tokio::select! {
            biased;
            () = self.body.shutdown.cancelled() => {
                tracing::debug!(session = %self.body.session_id, "server shutting down: stream ended");
                self.body.metrics.close(CloseCause::Shutdown);
                return None;
            }
            pulled = pending => pulled,
        };
        // While the stream is busy, one buffer for every chunk: each is split off it, and once
        // hyper has written and dropped one, its room is used again (no allocation per chunk,
        // no growth copies). A chunk that took everything available ends a burst: the buffer
        // goes with it, so an idle connection holds none.
        let mut chunk = std::mem::take(&mut self.buffer);
        let gathered = gather(source, item, |item, written| {
            if self.put(item, &mut chunk, written) {
                Put::End(())
            } else if chunk.len() >= CHUNK_BYTES {
                Put::Full
            } else {
                Put::More
            }
        });
        self.next = Some(gathered.next);
        self.ended |= gathered.end.is_some();
        let out = chunk.split().freeze();
        let events = std::mem::take(&mut self.events_in_chunk);
        self.body.metrics.written(events, out.len() as u64);
        if gathered.full {
            self.buffer = chunk;
        }
        if out.is_empty() {
            return self.failed.take().map(Err);
        }
        Some(Ok(out))
    }

    /// Appends one item's line to `chunk`; `true` when the stream ends with it.
    /// `written` becomes the event's seq once its line is in `chunk`.
    fn put(
        &mut self,
        item: Option<Outgoing>,
        chunk: &mut BytesMut,
        written: &mut Option<u64>,
    ) -> bool {
        let resume = self.body.features.resume;
        match sort(item, chunk, resume, &self.body.session_id, written) {
            Sorted::Event(event) => match self.event_line(&event, chunk) {
                Ok(()) => {
                    *written = Some(event.seq);
                    self.events_in_chunk += 1;
                    false
                }
                Err(err) => {
                    self.failed = Some(err);
                    self.body.metrics.close(CloseCause::Error);
                    true
                }
            },
            Sorted::Written => false,
            Sorted::Finished => {
                self.body.metrics.close(CloseCause::Finished);
                true
            }
            Sorted::Closed(reason) => {
                self.body.metrics.close(match reason {
                    CloseReason::Superseded => CloseCause::Superseded,
                    CloseReason::ShuttingDown => CloseCause::Shutdown,
                    _ => CloseCause::Error,
                });
                // A resume client learns why its stream ends: another connection has it.
                if reason == CloseReason::Superseded && resume {
                    control_line(&Control::Superseded, chunk, &self.body.session_id);
                }
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
                true
            }
        }
    }

    /// Appends `event`'s line to `chunk`: its JSON as the hub encoded it (plaintext), or
    /// sealed from that same JSON (encrypted), so the event is not serialized again here.
    /// The signed plaintext `session_init` is the one line built anew. On error `chunk` is
    /// left as it was.
    fn event_line(&mut self, event: &EncodedEvent, chunk: &mut BytesMut) -> io::Result<()> {
        self.lines += 1;
        let first_in_plaintext = self.lines == 1 && self.body.first_line == FirstLine::Plaintext;
        let limit = self.body.max_line_length;
        let written = if let Some(signer) = self.body.signer.as_ref().filter(|_| first_in_plaintext)
        {
            signer
                .sign(event)
                .map_err(|err| format!("cannot sign session_init ({}): {err}", err.code()))
                .and_then(|signed| {
                    self.plain
                        .encode(&signed)
                        .map(|()| chunk.extend_from_slice(&self.plain.take()))
                        .map_err(|err| err.to_string())
                })
        } else {
            let sealer = self.body.sealer.as_mut().filter(|_| !first_in_plaintext);
            enclave_crypto::write_json_line(sealer, event.event(), event.json(), chunk, limit)
                .map_err(|err| format!("{err} ({})", err.code()))
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
}
