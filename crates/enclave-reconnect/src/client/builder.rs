//! The seed's way to make a [`ReconnectingStream`]: one builder with the URL, the session,
//! the reconnect knobs and the callbacks, ending in `connect().await`.

use std::fmt;
use std::time::Duration;

use enclave_transport::client::{ClientConfig, NewSession, ResumeAt};
use enclave_types::{SessionId, StreamEvent};

use super::{ReconnectingStream, StreamConfig, StreamError};

/// Where a built stream starts.
#[derive(Debug)]
enum Start {
    New(NewSession),
    Resume(ResumeAt),
}

/// Builds a [`ReconnectingStream`]; see [`ReconnectingStream::builder`].
///
/// The reconnect knobs ([`max_attempts`](Self::max_attempts),
/// [`initial_delay`](Self::initial_delay), [`max_delay`](Self::max_delay),
/// [`backoff_multiplier`](Self::backoff_multiplier)) are applied over
/// [`config`](Self::config)'s policy whatever the order of the calls.
pub struct ReconnectingStreamBuilder {
    url: String,
    start: Start,
    config: StreamConfig,
    client: Option<ClientConfig>,
    max_attempts: Option<u32>,
    initial_delay: Option<Duration>,
    max_delay: Option<Duration>,
    multiplier: Option<f64>,
    on_reconnect: Option<Box<dyn FnMut(u32) + Send>>,
    on_message: Option<Box<dyn FnMut(StreamEvent) + Send>>,
}

impl ReconnectingStreamBuilder {
    pub(super) fn new(url: String) -> Self {
        Self {
            url,
            start: Start::New(NewSession::new()),
            config: StreamConfig::default(),
            client: None,
            max_attempts: None,
            initial_delay: None,
            max_delay: None,
            multiplier: None,
            on_reconnect: None,
            on_message: None,
        }
    }

    /// Joins the existing session `id` from its first event, without a resume token (the
    /// server must allow tokenless resume); [`resume`](Self::resume) gives a token, a
    /// position or an epoch. Without either, the stream creates a new session.
    #[must_use]
    pub fn session_id(mut self, id: SessionId) -> Self {
        self.start = Start::Resume(ResumeAt::new(id, 1));
        self
    }

    /// Resumes an existing session at `position` (its token, the next seq, its epoch).
    #[must_use]
    pub fn resume(mut self, position: ResumeAt) -> Self {
        self.start = Start::Resume(position);
        self
    }

    /// Creates a new session with these parameters (the default: a new session with none).
    #[must_use]
    pub fn new_session(mut self, session: NewSession) -> Self {
        self.start = Start::New(session);
        self
    }

    /// Everything else: heartbeat timeout, acknowledgements, message backlog, the
    /// transport client's settings and a whole [`ReconnectPolicy`](super::ReconnectPolicy).
    #[must_use]
    pub fn config(mut self, config: StreamConfig) -> Self {
        self.config = config;
        self
    }

    /// The transport client's settings (encryption mode, pinned server key, TLS roots).
    #[must_use]
    pub fn client(mut self, client: ClientConfig) -> Self {
        self.client = Some(client);
        self
    }

    /// Failed attempts in a row before giving up (default 5).
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// The delay before the first retry (default 1 s).
    #[must_use]
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = Some(delay);
        self
    }

    /// The longest delay between retries (default 30 s).
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = Some(delay);
        self
    }

    /// How much longer each delay is than the one before (default 2).
    #[must_use]
    pub fn backoff_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = Some(multiplier);
        self
    }

    /// Calls `f(attempt)` each time a connection after the first one is up; see
    /// [`ReconnectingStream::on_reconnect`].
    #[must_use]
    pub fn on_reconnect(mut self, f: impl FnMut(u32) + Send + 'static) -> Self {
        self.on_reconnect = Some(Box::new(f));
        self
    }

    /// Hands every event to `f` while [`ReconnectingStream::run`] drives the stream; see
    /// [`ReconnectingStream::on_message`].
    #[must_use]
    pub fn on_message(mut self, f: impl FnMut(StreamEvent) + Send + 'static) -> Self {
        self.on_message = Some(Box::new(f));
        self
    }

    /// The stream, not connected yet: it connects at its first use.
    pub fn build(self) -> ReconnectingStream {
        let mut config = self.config;
        if let Some(client) = self.client {
            config.client = client;
        }
        let policy = &mut config.policy;
        policy.max_attempts = self.max_attempts.unwrap_or(policy.max_attempts);
        policy.initial_delay = self.initial_delay.unwrap_or(policy.initial_delay);
        policy.max_delay = self.max_delay.unwrap_or(policy.max_delay);
        policy.multiplier = self.multiplier.unwrap_or(policy.multiplier);
        let mut stream = match self.start {
            Start::New(session) => ReconnectingStream::new(self.url, session, config),
            Start::Resume(position) => ReconnectingStream::resume(self.url, position, config),
        };
        stream.hooks.on_reconnect = self.on_reconnect;
        stream.hooks.on_message = self.on_message;
        stream
    }

    /// Builds the stream and makes its first connection, retrying as the policy allows;
    /// see [`ReconnectingStream::connect`].
    pub async fn connect(self) -> Result<ReconnectingStream, StreamError> {
        let mut stream = self.build();
        stream.connect().await?;
        Ok(stream)
    }
}

impl fmt::Debug for ReconnectingStreamBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingStreamBuilder")
            .field("url", &self.url)
            .field("start", &self.start)
            .field("max_attempts", &self.max_attempts)
            .field("initial_delay", &self.initial_delay)
            .field("max_delay", &self.max_delay)
            .field("multiplier", &self.multiplier)
            .field("on_reconnect", &self.on_reconnect.is_some())
            .field("on_message", &self.on_message.is_some())
            .finish_non_exhaustive()
    }
}
