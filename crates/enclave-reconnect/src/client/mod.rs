//! The reconnecting client: a session's events in order and exactly once, across any number
//! of reconnects, and messages to the server that survive them too.
//!
//! [`ReconnectingStream`] sits on `enclave_transport::client::Connection` (HTTP or WebSocket,
//! encrypted or not, a fresh handshake on every connection). Everything happens inside the
//! caller's [`next`](ReconnectingStream::next) and [`send`](ReconnectingStream::send): there
//! is no background task, so nothing runs once the stream is dropped.
//!
//! - **Exactly once, in order.** It remembers the last `seq` delivered, resumes from the one
//!   after it, drops any `seq` at or below it as a duplicate and stops with
//!   [`StreamError::Gap`] rather than skip one.
//! - **Acknowledgements.** Every 64 events or 100 ms after an unacknowledged one (both
//!   configurable) it tells the server what it holds; a resume from N acknowledges the rest.
//! - **Messages.** `send` numbers messages from 1 and keeps each until the server
//!   acknowledges it; after a resume it sends the kept ones again (the server drops the seqs
//!   it already holds).
//! - **Retries** follow the [`ReconnectPolicy`]; the attempt count starts over after each
//!   successful connection. A refusal other than "shutting down" or "unavailable", an
//!   encryption downgrade or a protocol violation is terminal and surfaced, never retried.
//! - **Heartbeat monitor.** A connection silent for longer than the heartbeat timeout is
//!   treated as dead and resumed.
//! - **Observable.** [`ConnectionState`] and [`ConnectionEvent`]s (a `tokio::sync::broadcast`
//!   from [`events`](ReconnectingStream::events)), and an
//!   [`on_reconnect`](ReconnectingStream::on_reconnect) callback.
//! - [`close`](ReconnectingStream::close) never triggers a retry.
//! - **The seed's shape.** [`ReconnectingStream::builder`] takes the URL, the session, the
//!   knobs and the callbacks; [`connect`](ReconnectingStream::connect) makes the first
//!   connection and [`run`](ReconnectingStream::run) hands each event to the
//!   [`on_message`](ReconnectingStream::on_message) callback.

mod builder;
mod error;
mod policy;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use enclave_transport::client::{
    connect, ClientConfig, Connection, NewSession, Open, Received, ResumeAt,
};
use enclave_transport::Error as TransportError;
use enclave_types::{
    EventPayload, RuntimeChannelMessage, RuntimeChannelPayload, SessionId, StreamEvent,
};
use tokio::sync::broadcast;
use tokio::time::{Instant, Sleep};

pub use self::builder::ReconnectingStreamBuilder;
pub use self::error::StreamError;
pub use self::policy::{ReconnectPolicy, RetrySchedule, MAX_RETRY_AFTER};

/// The connection states of the TypeScript client's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// No connection, none being made.
    Disconnected,
    /// Making the first connection.
    Connecting,
    /// Connected.
    Connected,
    /// Making a later connection (a resume, or a retry).
    Reconnecting,
    /// Given up: out of attempts or refused.
    Failed,
    /// Closed by its owner, or the session ended with `final`.
    Closed,
}

/// What happens to the connection, as the TypeScript client's state machine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The state changed.
    StateChange {
        /// The state before.
        from: ConnectionState,
        /// The state now.
        to: ConnectionState,
    },
    /// A retry will start after `delay`.
    RetryScheduled {
        /// The attempt's number (from 1 after each success).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// A retry starts now.
    RetryStarted {
        /// The attempt's number.
        attempt: u32,
    },
    /// A connection is up.
    Connected {
        /// The session.
        session_id: SessionId,
        /// Whether it resumed the session.
        resumed: bool,
    },
    /// A connection was lost.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The stream gave up.
    Failed {
        /// Why.
        reason: String,
    },
}

/// How a [`ReconnectingStream`] connects and retries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamConfig {
    /// How each connection is made (encryption, TLS, headers, limits).
    pub client: ClientConfig,
    /// When to retry.
    pub policy: ReconnectPolicy,
    /// How long a connection may stay silent before it is treated as dead. Default 30 s.
    pub heartbeat_timeout: Duration,
    /// Acknowledge after this many unacknowledged events. Default 64.
    pub ack_every: u64,
    /// Acknowledge this long after the first unacknowledged event. Default 100 ms.
    pub ack_interval: Duration,
    /// The most messages kept for the server's acknowledgement. Default 4096.
    pub max_unacked: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            policy: ReconnectPolicy::default(),
            heartbeat_timeout: Duration::from_secs(30),
            ack_every: 64,
            ack_interval: Duration::from_millis(100),
            max_unacked: 4096,
        }
    }
}

impl StreamConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how each connection is made.
    #[must_use]
    pub fn with_client(mut self, client: ClientConfig) -> Self {
        self.client = client;
        self
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn with_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the heartbeat timeout.
    #[must_use]
    pub fn with_heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout;
        self
    }

    /// Sets when events are acknowledged: after `every` events or `interval`.
    #[must_use]
    pub fn with_acks(mut self, every: u64, interval: Duration) -> Self {
        self.ack_every = every.max(1);
        self.ack_interval = interval;
        self
    }

    /// Sets the bound on messages awaiting acknowledgement.
    #[must_use]
    pub fn with_max_unacked(mut self, max_unacked: usize) -> Self {
        self.max_unacked = max_unacked;
        self
    }
}

/// Capacity of the connection-event channel; a subscriber that lags loses the oldest.
const EVENT_CHANNEL: usize = 256;

/// What the select in [`ReconnectingStream::next`] woke up for.
// Lives for one loop turn on the stack; boxing events would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Step {
    Item(Option<Result<Received, Box<TransportError>>>),
    Silent,
    AckDue,
}

/// One connection attempt: [`connect`] with its own copies of the URL and configuration, so
/// it outlives the `next()` call that started it.
type Attempt = Pin<Box<dyn Future<Output = Result<Connection, TransportError>> + Send>>;

/// A session's events across reconnects. See the [module docs](self).
pub struct ReconnectingStream {
    url: String,
    config: StreamConfig,
    new_session: NewSession,
    /// Where the stream is in the session: what the next connection resumes from.
    position: Position,
    conn: Option<Connection>,
    /// How connections are made and retried.
    dialer: Dialer,
    /// Over once `Failed` or `Closed` ([`done`](Self::done)).
    state: ConnectionState,
    hooks: Hooks,
    /// Messages sent and kept for the server's acknowledgement.
    outbox: Outbox,
    /// Acknowledgements of the events delivered.
    acks: Acks,
    heartbeat: Heartbeat,
    /// `final` was delivered: the next `next()` (or `close()`) acknowledges it and closes.
    finished: bool,
}

/// The session a stream follows and how far it got: what a resume presents.
/// Not `Debug`: it holds the token.
#[derive(Default)]
struct Position {
    session_id: Option<SessionId>,
    /// The latest resume token (rotated at every resume).
    token: Option<String>,
    epoch: Option<u64>,
    /// The last `seq` delivered (or passed over by the server's filter).
    last_delivered: Option<u64>,
}

impl Position {
    /// The seq a connection resumes from, and the next one to deliver.
    fn next_seq(&self) -> u64 {
        self.last_delivered.map_or(1, |last| last + 1)
    }
}

/// Making connections: the retry schedule and what is under way across `next()` calls.
struct Dialer {
    schedule: RetrySchedule,
    /// The next connection waits for the policy's delay first.
    need_delay: bool,
    last_error: Option<TransportError>,
    ever_connected: bool,
    /// A scheduled retry (its attempt number and when it starts), kept across cancelled
    /// `next()` calls.
    retry_at: Option<(u32, tokio::time::Instant)>,
    /// The connection attempt under way, kept across cancelled `next()` calls: dropping it
    /// would drop a connection the server may already have opened a session on, and the
    /// next attempt would open another one (the application serving the first would wait
    /// for a reader that never comes).
    attempt: Option<Attempt>,
}

/// Whom the stream tells what happens.
struct Hooks {
    events: broadcast::Sender<ConnectionEvent>,
    on_reconnect: Option<Box<dyn FnMut(u32) + Send>>,
    on_message: Option<Box<dyn FnMut(StreamEvent) + Send>>,
}

/// Client messages: the next seq to number one with, and those the server has not
/// acknowledged yet (sent again after a resume).
struct Outbox {
    next_seq: u64,
    unacked: VecDeque<RuntimeChannelMessage>,
}

/// The acknowledgement of delivered events.
#[derive(Default)]
struct Acks {
    /// Events delivered since the last acknowledgement.
    pending: u64,
    /// When the acknowledgement is due (`ack_interval` after the first pending event).
    due: Option<Instant>,
    /// An acknowledgement to send at the start of the next `next()` (kept out of the path
    /// that returns an event, so dropping a `next()` future never loses one).
    now: bool,
    /// The acknowledgement timer, kept like [`Heartbeat::timer`], and the deadline it is set
    /// to.
    timer: Option<(Pin<Box<Sleep>>, Instant)>,
}

impl Acks {
    /// One more event delivered: the acknowledgement is due `interval` after the first.
    fn count(&mut self, interval: Duration) {
        self.pending += 1;
        if self.due.is_none() {
            self.due = Some(Instant::now() + interval);
        }
    }
}

/// The heartbeat monitor.
struct Heartbeat {
    /// When the connection last received something.
    last_activity: Instant,
    /// The monitor's timer, made at the first `next()` (a timer needs the runtime) and
    /// kept: it may run early (activity since it was set pushes the deadline on) and is set
    /// again only when it fires, not at every event — registering a timer per event wakes
    /// the runtime's driver (a system call) per event.
    timer: Option<Pin<Box<Sleep>>>,
}

impl ReconnectingStream {
    /// A stream that creates a new session on `url` at its first use.
    pub fn new(url: impl Into<String>, session: NewSession, config: StreamConfig) -> Self {
        let (events, _) = broadcast::channel(EVENT_CHANNEL);
        Self {
            url: url.into(),
            dialer: Dialer {
                schedule: config.policy.schedule(),
                need_delay: false,
                last_error: None,
                ever_connected: false,
                retry_at: None,
                attempt: None,
            },
            config,
            new_session: session,
            position: Position::default(),
            conn: None,
            state: ConnectionState::Disconnected,
            hooks: Hooks {
                events,
                on_reconnect: None,
                on_message: None,
            },
            outbox: Outbox {
                next_seq: 1,
                unacked: VecDeque::new(),
            },
            acks: Acks::default(),
            heartbeat: Heartbeat {
                last_activity: Instant::now(),
                timer: None,
            },
            finished: false,
        }
    }

    /// A builder with the seed's knobs: the session, the reconnect policy, the callbacks.
    pub fn builder(url: impl Into<String>) -> ReconnectingStreamBuilder {
        ReconnectingStreamBuilder::new(url.into())
    }

    /// A stream that resumes an existing session on `url` at its first use.
    pub fn resume(url: impl Into<String>, position: ResumeAt, config: StreamConfig) -> Self {
        let mut stream = Self::new(url, NewSession::new(), config);
        stream.position = Position {
            session_id: Some(position.session_id),
            token: position.token,
            epoch: position.epoch,
            last_delivered: position.from.checked_sub(1).filter(|&last| last > 0),
        };
        stream
    }

    /// Calls `f(attempt)` each time a connection after the first one is up; `attempt` is
    /// the number of the retry that made it.
    pub fn on_reconnect(&mut self, f: impl FnMut(u32) + Send + 'static) {
        self.hooks.on_reconnect = Some(Box::new(f));
    }

    /// Hands every event to `f` while [`run`](Self::run) drives the stream (events taken
    /// with [`next`](Self::next) are returned, not handed to `f`).
    pub fn on_message(&mut self, f: impl FnMut(StreamEvent) + Send + 'static) {
        self.hooks.on_message = Some(Box::new(f));
    }

    /// Makes the first connection now (creating or resuming the session), retrying as the
    /// policy allows, instead of at the first [`next`](Self::next). Returns at once when a
    /// connection is already up.
    pub async fn connect(&mut self) -> Result<(), StreamError> {
        self.ensure_connected().await
    }

    /// Drives the stream to its end, handing each event to the
    /// [`on_message`](Self::on_message) callback (without one, events are only counted);
    /// returns how many events were delivered, after `final` or [`close`](Self::close).
    /// Item errors ([`StreamError::Item`], a line that could not be read) are logged as
    /// warnings and the stream goes on; a terminal error ends the run. Spawn it to run
    /// in the background, as the TypeScript client's callbacks do.
    pub async fn run(&mut self) -> Result<u64, StreamError> {
        let mut delivered = 0;
        while let Some(item) = self.next().await {
            match item {
                Ok(event) => {
                    delivered += 1;
                    if let Some(on_message) = &mut self.hooks.on_message {
                        on_message(event);
                    }
                }
                Err(err) if !err.is_terminal() => {
                    tracing::warn!(%err, session = %self.session_name(), "skipped a line");
                }
                Err(err) => return Err(err),
            }
        }
        Ok(delivered)
    }

    /// A receiver of the connection events from now on.
    pub fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.hooks.events.subscribe()
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// The session, once known.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.position.session_id.as_ref()
    }

    /// The latest resume token (rotated at every resume).
    pub fn token(&self) -> Option<&str> {
        self.position.token.as_deref()
    }

    /// The session's epoch, once known.
    pub fn epoch(&self) -> Option<u64> {
        self.position.epoch
    }

    /// The last `seq` delivered by [`next`](Self::next).
    pub fn last_delivered(&self) -> Option<u64> {
        self.position.last_delivered
    }

    /// Messages sent and not yet acknowledged by the server.
    pub fn unacked_len(&self) -> usize {
        self.outbox.unacked.len()
    }

    /// Whether the current connection is encrypted.
    pub fn encrypted(&self) -> bool {
        self.conn.as_ref().is_some_and(Connection::encrypted)
    }

    /// The next event, exactly once and in order; `None` after `final`, after
    /// [`close`](Self::close), or after a terminal error was returned. An item error
    /// ([`StreamError::Item`]) leaves the stream going.
    ///
    /// Cancel safe: once an event has been taken off the connection, the call returns it
    /// without another await (acknowledgements go out at the start of the next call), so a
    /// `next()` dropped in a `select!` never loses an event, and one dropped while it waits
    /// to retry resumes the same wait on the next call (no attempt is spent), and one dropped
    /// while a connection attempt is under way resumes that attempt (a new session is
    /// opened once, never twice).
    pub async fn next(&mut self) -> Option<Result<StreamEvent, StreamError>> {
        self.next_item(false)
            .await
            .map(|item| item.map(|(event, _)| event))
    }

    /// [`next`](Self::next), with the event's JSON as received (the `json` of
    /// [`Received::Event`]: one line, the received line or the opened plaintext), for a caller
    /// that passes events on without writing them again. Cancel safe as `next` is.
    pub async fn next_with_json(&mut self) -> Option<Result<(StreamEvent, Bytes), StreamError>> {
        let item = self.next_item(true).await?;
        Some(item.map(|(event, json)| {
            // `next_item` asks the connection to keep it before the line is read, so every
            // event has it; writing the event is only the answer a type needs for `None`.
            let json = json.unwrap_or_else(|| {
                serde_json::to_vec(&event)
                    .map(Bytes::from)
                    .unwrap_or_default()
            });
            (event, json)
        }))
    }

    /// The next event, with its JSON when `keep_json` asks the connection to keep it.
    async fn next_item(
        &mut self,
        keep_json: bool,
    ) -> Option<Result<(StreamEvent, Option<Bytes>), StreamError>> {
        loop {
            if self.finished && !self.done() {
                self.finish().await;
            }
            if self.done() {
                return None;
            }
            if self.acks.now {
                self.send_ack().await;
            }
            if let Err(err) = self.ensure_connected().await {
                return Some(Err(err));
            }
            if let Some(conn) = &mut self.conn {
                conn.set_keep_json(keep_json);
            }
            let heartbeat_at = self.heartbeat.last_activity + self.config.heartbeat_timeout;
            let heartbeat = self
                .heartbeat
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(heartbeat_at)));
            let ack_due = self.acks.due;
            let ack_timer = match (ack_due, &mut self.acks.timer) {
                (None, _) => None,
                (Some(due), Some((timer, set_for))) => {
                    if *set_for != due {
                        timer.as_mut().reset(due);
                        *set_for = due;
                    }
                    Some(timer)
                }
                (Some(due), timer @ None) => Some(
                    &mut timer
                        .insert((Box::pin(tokio::time::sleep_until(due)), due))
                        .0,
                ),
            };
            let conn = self.conn.as_mut()?;
            let step = tokio::select! {
                // What is received comes first: the timers are only looked at (and only
                // registered) when nothing is ready.
                biased;
                item = conn.next() => Step::Item(item.map(|r| r.map_err(Box::new))),
                () = heartbeat.as_mut() => Step::Silent,
                () = poll_some(ack_timer), if ack_due.is_some() => Step::AckDue,
            };
            match step {
                Step::Item(None) => {
                    self.lost("the server ended the stream before final".to_owned(), None);
                }
                Step::Item(Some(Err(err))) if err.is_item() => {
                    self.heartbeat.last_activity = Instant::now();
                    return Some(Err(StreamError::Item(err)));
                }
                Step::Item(Some(Err(err))) => {
                    let err = *err;
                    if is_terminal(&err) {
                        return Some(Err(self.fail(err)));
                    }
                    self.lost(err.to_string(), Some(err));
                }
                Step::Item(Some(Ok(received))) => {
                    self.heartbeat.last_activity = Instant::now();
                    if let Some(result) = self.receive(received) {
                        return Some(result);
                    }
                }
                Step::Silent => {
                    let deadline = self.heartbeat.last_activity + self.config.heartbeat_timeout;
                    if Instant::now() < deadline {
                        // Set early (there was activity since): wait for the real deadline.
                        if let Some(timer) = &mut self.heartbeat.timer {
                            timer.as_mut().reset(deadline);
                        }
                        continue;
                    }
                    if let Some(timer) = &mut self.heartbeat.timer {
                        // The next connection's silence counts from its own start.
                        timer
                            .as_mut()
                            .reset(Instant::now() + self.config.heartbeat_timeout);
                    }
                    self.lost(
                        format!(
                            "no data for {:?} (heartbeat timeout)",
                            self.config.heartbeat_timeout
                        ),
                        None,
                    );
                }
                Step::AckDue => self.send_ack().await,
            }
        }
    }

    /// Sends a message to the server under the next client `seq` (from 1), which it
    /// returns. The message is kept until the server acknowledges it and sent again after a
    /// resume; while no connection is up it waits for the next one.
    pub async fn send(&mut self, payload: RuntimeChannelPayload) -> Result<u64, StreamError> {
        if self.done() {
            return Err(StreamError::Closed);
        }
        if self.outbox.unacked.len() >= self.config.max_unacked {
            return Err(StreamError::Backlog {
                session: self.session_name(),
                limit: self.config.max_unacked,
            });
        }
        if self.position.session_id.is_none() {
            self.ensure_connected().await?;
        }
        let session_id = self
            .position
            .session_id
            .clone()
            .ok_or(StreamError::Closed)?;
        let seq = self.outbox.next_seq;
        self.outbox.next_seq += 1;
        let message = RuntimeChannelMessage::new(session_id, payload).with_seq(seq);
        self.outbox.unacked.push_back(message.clone());
        if let Some(conn) = &mut self.conn {
            if let Err(err) = conn.send(&message).await {
                self.lost(format!("sending message {seq}: {err}"), Some(err));
            }
        }
        Ok(seq)
    }

    /// Closes the stream: acknowledges what was delivered and closes the connection. No
    /// retry follows.
    pub async fn close(&mut self) {
        self.finished = false;
        self.dialer.attempt = None;
        if let Some(mut conn) = self.conn.take() {
            if let Some(last) = self.position.last_delivered {
                let _ = conn.ack(last).await;
            }
            conn.close().await;
        }
        self.set_state(ConnectionState::Closed);
    }

    /// Handles one thing received; `Some` when it is for the caller. No await: what needs the
    /// network afterwards (an acknowledgement, closing after `final`) is left for the next
    /// call, so the event is never lost to a cancelled future.
    fn receive(
        &mut self,
        received: Received,
    ) -> Option<Result<(StreamEvent, Option<Bytes>), StreamError>> {
        match received {
            Received::Event { event, json, .. } => {
                let expected = self.position.next_seq();
                if event.seq < expected {
                    tracing::trace!(seq = event.seq, "duplicate event dropped");
                    return None;
                }
                if event.seq > expected {
                    let err = StreamError::Gap {
                        session: self.session_name(),
                        expected,
                        got: event.seq,
                    };
                    self.give_up(&err);
                    return Some(Err(err));
                }
                self.position.last_delivered = Some(event.seq);
                self.acks.count(self.config.ack_interval);
                if matches!(event.payload, EventPayload::Final(_)) {
                    self.finished = true;
                } else if self.acks.pending >= self.config.ack_every {
                    self.acks.now = true;
                }
                Some(Ok((event, json)))
            }
            Received::Ack { seq } => {
                while self
                    .outbox
                    .unacked
                    .front()
                    .is_some_and(|m| m.seq.unwrap_or(0) <= seq)
                {
                    self.outbox.unacked.pop_front();
                }
                None
            }
            Received::ReplayComplete { last_seq } => {
                tracing::debug!(last_seq, session = %self.session_name(), "replay complete");
                None
            }
            Received::Superseded => {
                // Taking the session back would supersede the newer connection in turn.
                let err = StreamError::Superseded {
                    session: self.session_name(),
                };
                self.give_up(&err);
                Some(Err(err))
            }
            // Seqs the server's filter left out: passed over like delivered events (and
            // acknowledged), so the gap check stays exact for what the filter lets through.
            // Only a stream that asked for a filter accepts them; any other is told a gap.
            Received::Filtered { through } => {
                let expected = self.position.next_seq();
                if self.config.client.filter.is_none() {
                    let err = StreamError::Gap {
                        session: self.session_name(),
                        expected,
                        got: through.saturating_add(1),
                    };
                    self.give_up(&err);
                    return Some(Err(err));
                }
                if through >= expected {
                    self.position.last_delivered = Some(through);
                    self.acks.count(self.config.ack_interval);
                }
                None
            }
            _ => None,
        }
    }

    /// The session ended with `final`: acknowledge it and close, without retrying.
    async fn finish(&mut self) {
        self.send_ack().await;
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        self.set_state(ConnectionState::Closed);
    }

    async fn send_ack(&mut self) {
        self.acks.due = None;
        self.acks.now = false;
        self.acks.pending = 0;
        let (Some(conn), Some(last)) = (&mut self.conn, self.position.last_delivered) else {
            return;
        };
        if let Err(err) = conn.ack(last).await {
            self.lost(format!("acknowledging seq {last}: {err}"), Some(err));
        }
    }

    /// Makes sure a connection is up, retrying under the policy.
    async fn ensure_connected(&mut self) -> Result<(), StreamError> {
        loop {
            if self.done() {
                return Err(StreamError::Closed);
            }
            if self.conn.is_some() {
                return Ok(());
            }
            if self.dialer.need_delay {
                // The deadline lives in `self`, so a `next()` dropped while it waits (in a
                // `select!`) resumes the same wait instead of spending another attempt.
                let (attempt, deadline) = if let Some(pending) = self.dialer.retry_at {
                    pending
                } else {
                    // A server that said when to come back (`Retry-After`) is not asked sooner.
                    let retry_after = match &self.dialer.last_error {
                        Some(TransportError::Refused { refusal, .. }) => refusal.retry_after,
                        _ => None,
                    };
                    let Some((attempt, delay)) =
                        self.dialer.schedule.next_delay_at_least(retry_after)
                    else {
                        let attempts = self.dialer.schedule.attempts();
                        let last =
                            self.dialer
                                .last_error
                                .take()
                                .unwrap_or(TransportError::Closed {
                                    session: self.session_name(),
                                });
                        let err = StreamError::OutOfAttempts {
                            session: self.session_name(),
                            attempts,
                            last: Box::new(last),
                        };
                        self.give_up(&err);
                        return Err(err);
                    };
                    self.emit(ConnectionEvent::RetryScheduled { attempt, delay });
                    let pending = (attempt, tokio::time::Instant::now() + delay);
                    self.dialer.retry_at = Some(pending);
                    pending
                };
                tokio::time::sleep_until(deadline).await;
                self.dialer.retry_at = None;
                self.dialer.need_delay = false;
                self.emit(ConnectionEvent::RetryStarted { attempt });
            }
            let attempt = if let Some(attempt) = &mut self.dialer.attempt {
                attempt
            } else {
                self.set_state(
                    if self.dialer.ever_connected || self.dialer.schedule.attempts() > 0 {
                        ConnectionState::Reconnecting
                    } else {
                        ConnectionState::Connecting
                    },
                );
                let open = match &self.position.session_id {
                    Some(id) => Open::Resume(
                        ResumeAt::new(id.clone(), self.position.next_seq())
                            .with_token(self.position.token.clone())
                            .with_epoch(self.position.epoch),
                    ),
                    None => Open::New(self.new_session.clone()),
                };
                let url = self.url.clone();
                let config = self.config.client.clone();
                self.dialer
                    .attempt
                    .insert(Box::pin(async move { connect(&url, open, &config).await }))
            };
            let result = attempt.as_mut().await;
            self.dialer.attempt = None;
            match result {
                Ok(conn) => self.connected(conn).await,
                Err(err) if is_terminal(&err) => return Err(self.fail(err)),
                Err(err) => {
                    tracing::debug!(%err, session = %self.session_name(), "connection attempt failed");
                    self.dialer.last_error = Some(err);
                    self.dialer.need_delay = true;
                }
            }
        }
    }

    /// A connection is up: adopt its session, token and epoch, and resend what the server
    /// has not acknowledged.
    async fn connected(&mut self, mut conn: Connection) {
        self.position.session_id = Some(conn.session_id().clone());
        if let Some(token) = conn.token() {
            self.position.token = Some(token.to_owned());
        }
        if conn.epoch().is_some() {
            self.position.epoch = conn.epoch();
        }
        let attempt = self.dialer.schedule.attempts();
        let reconnect = self.dialer.ever_connected;
        self.dialer.schedule.reset();
        self.dialer.ever_connected = true;
        self.heartbeat.last_activity = Instant::now();
        self.set_state(ConnectionState::Connected);
        self.emit(ConnectionEvent::Connected {
            session_id: conn.session_id().clone(),
            resumed: conn.resumed(),
        });
        if reconnect {
            if let Some(callback) = &mut self.hooks.on_reconnect {
                callback(attempt.max(1));
            }
        }
        if !self.outbox.unacked.is_empty() {
            let pending: Vec<_> = self.outbox.unacked.iter().cloned().collect();
            if let Err(err) = conn.send_all(&pending).await {
                self.lost(
                    format!("resending {} messages: {err}", pending.len()),
                    Some(err),
                );
                return;
            }
        }
        self.conn = Some(conn);
    }

    /// The connection is gone; the next call retries after the policy's delay.
    fn lost(&mut self, reason: String, err: Option<TransportError>) {
        self.conn = None;
        self.dialer.need_delay = true;
        if err.is_some() {
            self.dialer.last_error = err;
        }
        tracing::debug!(%reason, session = %self.session_name(), "connection lost");
        self.emit(ConnectionEvent::Disconnected { reason });
        self.set_state(ConnectionState::Disconnected);
    }

    /// A terminal transport error: give up and say why.
    fn fail(&mut self, err: TransportError) -> StreamError {
        let session = self.session_name();
        let err = match err {
            TransportError::Refused { refusal, status } => StreamError::Refused {
                session,
                refusal,
                status,
            },
            other => StreamError::Fatal {
                session,
                source: Box::new(other),
            },
        };
        self.give_up(&err);
        err
    }

    fn give_up(&mut self, err: &StreamError) {
        self.conn = None;
        self.emit(ConnectionEvent::Failed {
            reason: err.to_string(),
        });
        self.set_state(ConnectionState::Failed);
    }

    fn set_state(&mut self, to: ConnectionState) {
        if self.state != to {
            let from = std::mem::replace(&mut self.state, to);
            self.emit(ConnectionEvent::StateChange { from, to });
        }
    }

    fn emit(&self, event: ConnectionEvent) {
        // No subscriber is fine: the events are for whoever wants them.
        let _ = self.hooks.events.send(event);
    }

    /// Whether the stream is over: it failed or was closed (the state says so, and is never
    /// left once there).
    fn done(&self) -> bool {
        matches!(
            self.state,
            ConnectionState::Failed | ConnectionState::Closed
        )
    }

    fn session_name(&self) -> String {
        TransportError::session_name(self.position.session_id.as_ref())
    }
}

/// Waits for `timer`, or forever without one (the select guards that branch).
async fn poll_some(timer: Option<&mut Pin<Box<Sleep>>>) {
    match timer {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Whether no retry can fix `err`.
///
/// Only failures of the link itself are retried; everything else is terminal, a server whose
/// identity does not verify against the pinned key ([`TransportError::ServerIdentity`],
/// `ENCRYPTION_SIGNATURE_VERIFICATION_FAILED`) and an encryption downgrade included: a
/// retry would reach the same impostor or the same plaintext server (the test below keeps
/// it so).
fn is_terminal(err: &TransportError) -> bool {
    match err {
        TransportError::Refused { refusal, .. } => !refusal.reason.is_retryable(),
        TransportError::Status { status, .. } => !(*status >= 500 || *status == 429),
        TransportError::Io { .. }
        | TransportError::Timeout { .. }
        | TransportError::Http { .. }
        | TransportError::WebSocket { .. }
        | TransportError::Closed { .. } => false,
        _ => true,
    }
}

impl fmt::Debug for ReconnectingStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingStream")
            .field("url", &self.url)
            .field("session_id", &self.position.session_id)
            .field("state", &self.state)
            .field("epoch", &self.position.epoch)
            .field("last_delivered", &self.position.last_delivered)
            .field("unacked", &self.outbox.unacked.len())
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::is_terminal;
    use enclave_transport::Error as TransportError;

    #[test]
    fn an_unverified_server_identity_is_terminal() {
        let identity = TransportError::ServerIdentity {
            session: "s_pinned".to_owned(),
            source: Box::new(enclave_crypto::Error::SignatureInvalid {
                reason: "the ServerHello has no signatureB64".into(),
            }),
        };
        assert!(!identity.is_item());
        assert!(is_terminal(&identity));
        let downgrade = TransportError::EncryptionDowngrade {
            session: "s_pinned".to_owned(),
            reason: "no ServerHello in the server's answer",
        };
        assert!(is_terminal(&downgrade));
        let cut = TransportError::Closed {
            session: "s_pinned".to_owned(),
        };
        assert!(!is_terminal(&cut), "a closed connection is retried");
    }
}
