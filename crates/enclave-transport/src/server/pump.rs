//! What both stream writers (the HTTP body and the WebSocket) do with a session's
//! [`EventSource`]: keep one pending pull across writes, fill a write with every item at
//! hand without a future per item, and write the control lines and find the end of the
//! stream alike ([`sort`]). What differs is left to each writer: how an event's line is
//! encoded (the HTTP body's plaintext first line) and how a close is said (a `superseded`
//! line and the end of the body, or a WebSocket close frame).

use std::sync::Arc;

use bytes::{BufMut as _, BytesMut};
use enclave_types::SessionId;
use futures::future::BoxFuture;
use futures::FutureExt as _;

use crate::service::{CloseReason, EncodedEvent, EventSource, Outgoing};
use crate::wire::Control;

/// A pending `next()` of the event source, owning it so it can be kept across writes (and
/// polled in a `select!`) without being dropped half-way.
pub(super) type Pull = BoxFuture<'static, (Box<dyn EventSource>, Option<Outgoing>)>;

pub(super) fn pull(mut source: Box<dyn EventSource>) -> Pull {
    async move {
        let item = source.next().await;
        (source, item)
    }
    .boxed()
}

/// What a writer did with one item.
pub(super) enum Put<E> {
    /// Written; the write has room for more.
    More,
    /// Written; the write is full, the rest waits for the next one.
    Full,
    /// The stream ends with this item (after writing what it could).
    End(E),
}

/// A write's worth of items handed over by [`gather`].
pub(super) struct Gathered<E> {
    /// The pull for the next write, pending.
    pub(super) next: Pull,
    /// Why the stream ends, if it does.
    pub(super) end: Option<E>,
    /// Whether the write filled up (more items were likely at hand).
    pub(super) full: bool,
}

/// Hands `item` (just pulled from `source`) and then every item already at hand to `put`,
/// until it says the write is full or the stream ends, or nothing more is at hand. Items the
/// source holds come through [`EventSource::next_ready`]; only when it runs dry is a pull
/// made, and taken at once if it is ready. `put` sets `written` to the seq of an event it
/// wrote; the source hears of the last one once, before the next pull.
pub(super) fn gather<E>(
    mut source: Box<dyn EventSource>,
    mut item: Option<Outgoing>,
    mut put: impl FnMut(Option<Outgoing>, &mut Option<u64>) -> Put<E>,
) -> Gathered<E> {
    let mut written = None;
    loop {
        let step = put(item, &mut written);
        if matches!(step, Put::More) {
            if let Some(ready) = source.next_ready() {
                item = Some(ready);
                continue;
            }
        }
        if let Some(seq) = written.take() {
            source.written(seq);
        }
        let mut next = pull(source);
        match step {
            Put::Full => {
                return Gathered {
                    next,
                    end: None,
                    full: true,
                }
            }
            Put::End(end) => {
                return Gathered {
                    next,
                    end: Some(end),
                    full: false,
                }
            }
            Put::More => {}
        }
        if let Some((again, following)) = (&mut next).now_or_never() {
            source = again;
            item = following;
        } else {
            return Gathered {
                next,
                end: None,
                full: false,
            };
        }
    }
}

/// One item as [`sort`] left it for the writer.
pub(super) enum Sorted {
    /// An event: the writer encodes its line (and then sets `written` to its seq).
    Event(Arc<EncodedEvent>),
    /// A control line, written (or left out for a client without the `resume` feature).
    Written,
    /// The source is over: the session's stream ended.
    Finished,
    /// The session layer closed the stream.
    Closed(CloseReason),
}

/// Does what both writers do alike with `item`: a control line (`replay_complete`, `ack`,
/// `filtered`) appended to `out` for a client with the `resume` feature — `written` becomes a
/// `filtered` line's `through`, which counts as written — and the end of the stream. An
/// event is handed back for the writer's own encoding.
pub(super) fn sort(
    item: Option<Outgoing>,
    out: &mut BytesMut,
    resume: bool,
    session: &SessionId,
    written: &mut Option<u64>,
) -> Sorted {
    let control = match item {
        None => return Sorted::Finished,
        Some(Outgoing::Event(event)) => return Sorted::Event(event),
        Some(Outgoing::Close(reason)) => return Sorted::Closed(reason),
        Some(Outgoing::ReplayComplete { last_seq }) => Control::ReplayComplete { last_seq },
        Some(Outgoing::Ack { seq }) => Control::Ack { seq },
        Some(Outgoing::Filtered { through }) => {
            *written = Some(through);
            Control::Filtered { through }
        }
    };
    if resume {
        control_line(&control, out, session);
    }
    Sorted::Written
}

/// Appends `control` as one line to `out`; on an error (logged) `out` is left as it was.
pub(super) fn control_line(control: &Control, out: &mut BytesMut, session: &SessionId) {
    let start = out.len();
    match serde_json::to_writer(out.writer(), control) {
        Ok(()) => out.put_u8(b'\n'),
        Err(err) => {
            out.truncate(start);
            tracing::error!(session = %session, "cannot write control line: {err}");
        }
    }
}
