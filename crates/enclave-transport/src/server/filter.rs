//! A connection's event filter, applied once for both carriers: an [`EventSource`] that wraps
//! the session's and leaves out the events the filter does not send.
//!
//! Left-out events keep their seq (the session is never renumbered). Before the next thing
//! the connection writes after some were left out — and whenever it would otherwise wait —
//! the source yields [`Outgoing::Filtered`] with the highest left-out seq: the writers count
//! it as written (so a client that does not acknowledge never holds the session's retention)
//! and send it as a `filtered` control line to clients with the `resume` feature, which
//! acknowledge it like an event. So every seq reaches such a client as an event or inside a
//! `filtered` range, and its gap check stays exact.

use enclave_types::{EventFilter, EventType};
use futures::future::BoxFuture;
use futures::FutureExt as _;

use crate::service::{EventSource, Outgoing};

/// `events` with `filter` applied; as it is without one. `keep_first_init`: the connection's
/// first line is the plaintext `session_init` that carries the `ServerHello`, which the
/// client needs whatever the filter says.
pub(super) fn apply(
    events: Box<dyn EventSource>,
    filter: Option<EventFilter>,
    keep_first_init: bool,
) -> Box<dyn EventSource> {
    match filter {
        None => events,
        Some(filter) => Box::new(Filtered {
            inner: events,
            filter,
            keep_first_init,
            held: Held::Nothing,
            skipped: None,
        }),
    }
}

struct Filtered {
    inner: Box<dyn EventSource>,
    filter: EventFilter,
    keep_first_init: bool,
    /// What came after a left-out run, held while the `Filtered` for that run goes first.
    held: Held,
    /// The highest seq left out and not yet reported.
    skipped: Option<u64>,
}

/// What waits behind a `Filtered`: nothing, an item, or the end of the stream.
enum Held {
    Nothing,
    Item(Outgoing),
    End,
}

enum Step {
    Yield(Option<Outgoing>),
    Skip,
}

impl Filtered {
    fn step(&mut self, item: Option<Outgoing>) -> Step {
        if let Some(Outgoing::Event(event)) = &item {
            let init = event.event_type() == EventType::SessionInit;
            let keep = init && std::mem::take(&mut self.keep_first_init);
            if !keep
                && !self
                    .filter
                    .should_send(event.event_type().as_str(), event.json())
            {
                self.skipped = Some(event.seq);
                return Step::Skip;
            }
        }
        self.keep_first_init = false;
        match self.skipped.take() {
            Some(through) => {
                self.held = item.map_or(Held::End, Held::Item);
                Step::Yield(Some(Outgoing::Filtered { through }))
            }
            None => Step::Yield(item),
        }
    }
}

impl EventSource for Filtered {
    fn next(&mut self) -> BoxFuture<'_, Option<Outgoing>> {
        async move {
            match std::mem::replace(&mut self.held, Held::Nothing) {
                Held::Item(item) => return Some(item),
                Held::End => return None,
                Held::Nothing => {}
            }
            loop {
                let item = if self.skipped.is_some() {
                    match self.inner.next_ready() {
                        Some(item) => Some(item),
                        // Nothing more at hand: report the run now, not at the next event,
                        // which may be long in coming.
                        None => {
                            return self
                                .skipped
                                .take()
                                .map(|through| Outgoing::Filtered { through })
                        }
                    }
                } else {
                    self.inner.next().await
                };
                if let Step::Yield(out) = self.step(item) {
                    return out;
                }
            }
        }
        .boxed()
    }

    fn next_ready(&mut self) -> Option<Outgoing> {
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Item(item) => return Some(item),
            // The end of the stream is for `next` to say.
            Held::End => {
                self.held = Held::End;
                return None;
            }
            Held::Nothing => {}
        }
        loop {
            let Some(item) = self.inner.next_ready() else {
                return self
                    .skipped
                    .take()
                    .map(|through| Outgoing::Filtered { through });
            };
            if let Step::Yield(out) = self.step(Some(item)) {
                return out;
            }
        }
    }

    fn written(&mut self, seq: u64) {
        self.inner.written(seq);
    }
}
