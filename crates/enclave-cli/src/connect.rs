//! `enclave connect URL`: a client that survives disconnects.
//!
//! Opens a session (or resumes one with `--session ID --from SEQ --token TOKEN`) over HTTP
//! NDJSON (`http(s)://`) or WebSocket (`ws(s)://`), reconnects and resumes on its own, and
//! prints every event exactly once, in order, as one NDJSON line on standard output
//! (`session_init` and heartbeats included): the event's JSON as it was received and
//! validated (for a sealed event, the opened plaintext), not written again. Lines typed on standard input (runtime
//! channel messages: `tool_result_submit`, `cancel`) go to the server; the end of standard
//! input ends sending, not receiving.
//!
//! Standard output is buffered: events that arrive together leave in one write, and whatever
//! is buffered is flushed as soon as no further event is ready, before waiting for one — so a
//! reader sees each event of a sparse stream at once, and a fast stream costs one system call
//! per buffer, not per event. Everything runs on one thread: no event crosses threads on its
//! way from the socket to standard output.
//!
//! Standard error gets `session ID token TOKEN epoch EPOCH` when the session opens and
//! whenever the token changes, the connection's state changes, and the reason of a failure.
//! Exit status: 0 after `final`, 1 when refused or out of attempts, 2 on usage errors.

use std::future::Future;
use std::io::{self, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use enclave_crypto::VerifyingKey;
use enclave_reconnect::{
    ConnectionEvent, ReconnectPolicy, ReconnectingStream, ResumeAt, StreamConfig,
};
use enclave_transport::client::{ClientConfig, NewSession};
use enclave_types::{EventPayload, RuntimeChannelMessage, SessionId, StreamEvent};
use tokio::io::AsyncBufReadExt as _;

use crate::input::{report, EXIT_BAD_LINES, EXIT_FAILURE, EXIT_OK};

/// Arguments of `enclave connect`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    /// The server's base URL: `http(s)://HOST:PORT` (NDJSON) or `ws(s)://HOST:PORT` (WebSocket).
    url: String,

    /// Ask for encryption (`optional`: if the server offers it), insist on it (`required`),
    /// or not (`disabled`).
    #[arg(long, value_enum, default_value = "optional")]
    encryption: crate::Encryption,

    /// Pin the server's signing key (SPKI PEM, as `enclave keygen` prints it): a missing or
    /// wrong ServerHello signature is refused before any event is accepted.
    #[arg(long, value_name = "FILE")]
    server_key: Option<PathBuf>,

    /// Trust this CA (PEM) for https/wss.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,

    /// Resume this session instead of opening a new one (with --from and --token).
    #[arg(long, value_name = "ID", requires = "from")]
    session: Option<String>,

    /// With --session: the first seq wanted (inclusive).
    #[arg(long, value_name = "SEQ", requires = "session")]
    from: Option<u64>,

    /// With --session: the resume token.
    // Tokens are base64url: one in 64 starts with `-`, which is still the token.
    #[arg(
        long,
        value_name = "TOKEN",
        requires = "session",
        allow_hyphen_values = true
    )]
    pub(crate) token: Option<String>,

    /// With --session: the epoch the session's seqs belong to.
    #[arg(long, value_name = "E", requires = "session")]
    epoch: Option<u64>,

    /// Reconnection attempts before giving up.
    #[arg(long, value_name = "N", default_value_t = 5)]
    max_attempts: u32,

    /// First delay between attempts, in ms (doubling, with ±30% jitter).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    initial_delay_ms: u64,

    /// Longest delay between attempts, in ms.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    max_delay_ms: u64,

    /// A connection silent this long (ms) is treated as dead and resumed.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    heartbeat_timeout_ms: u64,
}

/// Runs `enclave connect`.
pub(crate) fn run(args: &ConnectArgs) -> ExitCode {
    let config = match config(args) {
        Ok(config) => config,
        Err(message) => {
            report(format_args!("enclave connect: {message}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let stream = match &args.session {
        Some(id) => {
            let id = match SessionId::new(id.clone()) {
                Ok(id) => id,
                Err(err) => {
                    report(format_args!("enclave connect: --session: {err}"));
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            let position = ResumeAt::new(id, args.from.unwrap_or(1))
                .with_token(args.token.clone())
                .with_epoch(args.epoch);
            ReconnectingStream::resume(args.url.clone(), position, config)
        }
        None => ReconnectingStream::new(args.url.clone(), NewSession::new(), config),
    };
    // One thread: the connection's driver, the stream and the printer hand events to each
    // other without waking another thread (standard input's reads run on tokio's blocking
    // pool, and only wake this thread when a line arrives).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report(format_args!(
                "enclave connect: cannot start the runtime: {err}"
            ));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // Spawned, not run by `block_on` itself: waking `block_on`'s own future always goes
    // through the runtime's parker (an eventfd write), waking a task of the runtime from
    // within it does not.
    let code = runtime.block_on(async {
        tokio::spawn(connect(stream)).await.unwrap_or_else(|err| {
            report(format_args!("enclave connect: {err}"));
            ExitCode::from(EXIT_FAILURE)
        })
    });
    // Standard input's read may still block a pool thread (nobody closed our stdin): the
    // stream is over, so do not wait for it, as dropping the runtime would.
    runtime.shutdown_background();
    code
}

/// Closes the stream once its end is printed, waiting at most 2 s: what is left is a
/// courtesy to the server (a close frame, the connection's shutdown), and a peer that never
/// answers must not keep `enclave connect` from exiting.
async fn close(stream: &mut ReconnectingStream) {
    if tokio::time::timeout(Duration::from_secs(2), stream.close())
        .await
        .is_err()
    {
        tracing::debug!("the connection did not close within 2 s; exiting anyway");
    }
}

fn config(args: &ConnectArgs) -> Result<StreamConfig, String> {
    let mut client = ClientConfig::new().with_encryption(args.encryption.into());
    if let Some(path) = &args.ca_file {
        client = client.with_ca_file(path).map_err(|err| err.to_string())?;
    }
    if let Some(path) = &args.server_key {
        let key = VerifyingKey::from_spki_pem_file(path).map_err(|err| err.to_string())?;
        client = client.with_server_key(key);
    }
    if args.max_attempts == 0 {
        return Err("--max-attempts must be at least 1".to_owned());
    }
    let policy = ReconnectPolicy::new()
        .with_max_attempts(args.max_attempts)
        .with_initial_delay(Duration::from_millis(args.initial_delay_ms))
        .with_max_delay(Duration::from_millis(
            args.max_delay_ms.max(args.initial_delay_ms),
        ));
    Ok(StreamConfig::new()
        .with_client(client)
        .with_policy(policy)
        .with_acks(ACK_EVERY, ACK_INTERVAL)
        .with_heartbeat_timeout(Duration::from_millis(args.heartbeat_timeout_ms.max(1))))
}

/// Events between acknowledgements. Each one is a round trip (over HTTP a `POST
/// /sessions/:id/messages` the server answers) during which no event is read: at the
/// library's default of 64, a fast stream of 200,000 events cost 3,125 of them and about a
/// third of the rate. 1,024 events are far below the server's retention bound (100,000
/// events or 16 MiB by default), so the producer is never held up waiting for one.
const ACK_EVERY: u64 = 1024;

/// Acknowledge at the latest this long after an unacknowledged event (the library's
/// default): a sparse stream is acknowledged as often as before.
const ACK_INTERVAL: Duration = Duration::from_millis(100);

async fn connect(mut stream: ReconnectingStream) -> ExitCode {
    // State changes are printed by a task of their own: a select! branch for them would
    // wake the loop (and drop `next`'s future) on every change.
    let mut states = stream.events();
    let printer = tokio::spawn(async move {
        loop {
            match states.recv().await {
                Ok(event) => print_state(&event),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    let code = run_stream(&mut stream).await;
    printer.abort();
    code
}

/// What one turn of [`run_stream`]'s loop woke up for.
enum Turn {
    /// An event's JSON line and whether it is `final` (the parsed event itself is dropped
    /// where it is received: moving it on, a few hundred bytes each time, would cost more
    /// than the test).
    Item(Option<Result<(Bytes, bool), enclave_reconnect::StreamError>>),
    Line(io::Result<Option<String>>),
    /// Flushing standard output failed while waiting for the next event.
    Output(io::Error),
}

async fn run_stream(stream: &mut ReconnectingStream) -> ExitCode {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut announced: Option<(String, Option<String>)> = None;
    let mut printer = Printer::new(io::stdout());
    loop {
        let turn = {
            // `next_with_json` is cancel safe: a line typed meanwhile never costs an event.
            let next = stream.next_with_json();
            tokio::pin!(next);
            let next = FlushWhenIdle {
                next: next.as_mut(),
                printer: &mut printer,
                yielded: false,
            };
            tokio::select! {
                // Events first: the stream is drained before standard input is looked at, and
                // standard input still gets its turn whenever no event is ready.
                biased;
                turn = next => turn,
                line = stdin.next_line(), if stdin_open => Turn::Line(line),
            }
        };
        match turn {
            Turn::Item(item) => {
                announce(stream, &mut announced);
                match item {
                    Some(Ok((json, is_final))) => {
                        let mut written = printer.line(&json);
                        if is_final {
                            written = written.and_then(|()| printer.flush());
                        }
                        if let Err(err) = written {
                            if err.kind() != io::ErrorKind::BrokenPipe {
                                report(format_args!("enclave connect: {err}"));
                            }
                            close(stream).await;
                            return ExitCode::from(EXIT_FAILURE);
                        }
                        if is_final {
                            close(stream).await;
                            return ExitCode::from(EXIT_OK);
                        }
                    }
                    Some(Err(err)) if err.is_terminal() => {
                        let _ = printer.flush();
                        report(format_args!("enclave connect: {err}"));
                        return ExitCode::from(EXIT_BAD_LINES);
                    }
                    Some(Err(err)) => report(format_args!("enclave connect: skipped: {err}")),
                    None => {
                        let _ = printer.flush();
                        report(format_args!(
                            "enclave connect: the stream ended without a final event"
                        ));
                        return ExitCode::from(EXIT_BAD_LINES);
                    }
                }
            }
            Turn::Output(err) => {
                if err.kind() != io::ErrorKind::BrokenPipe {
                    report(format_args!("enclave connect: {err}"));
                }
                close(stream).await;
                return ExitCode::from(EXIT_FAILURE);
            }
            Turn::Line(line) => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => {
                    match serde_json::from_str::<RuntimeChannelMessage>(line.trim()) {
                        Ok(message) => {
                            if let Err(err) = stream.send(message.payload).await {
                                report(format_args!("enclave connect: cannot send: {err}"));
                            }
                        }
                        Err(err) => report(format_args!(
                            "enclave connect: standard input: not a runtime channel message: {err}"
                        )),
                    }
                }
                // End of input ends sending, not receiving.
                Ok(None) | Err(_) => stdin_open = false,
            },
        }
    }
}

/// Buffered event lines for standard output.
///
/// Lines collect in memory and leave in one write when [`flush`](Self::flush) is called (the
/// stream has nothing more ready) or when [`FLUSH_AT`] bytes are waiting, so memory stays
/// bounded however fast events come.
struct Printer<W: Write> {
    out: W,
    buf: Vec<u8>,
}

/// Buffered bytes that are written out even while further events are ready.
const FLUSH_AT: usize = 64 * 1024;

impl<W: Write> Printer<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
        }
    }

    /// Adds `json` (one line, without its line break) as one NDJSON line.
    fn line(&mut self, json: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(json);
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out what is buffered.
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self
            .out
            .write_all(&self.buf)
            .and_then(|()| self.out.flush());
        self.buf.clear();
        written
    }
}

/// [`ReconnectingStream::next_with_json`] that flushes the printer whenever it would wait: what was
/// printed reaches the reader before the wait, not after the next event.
///
/// "Would wait" is decided after one yield: an HTTP stream's body comes from hyper's
/// connection task one chunk (one event) at a time, so `next` is pending for a moment before
/// nearly every event of a fast stream. Yielding once lets that task (woken by this very
/// poll) run first; only when `next` is still pending after it is the stream idle.
struct FlushWhenIdle<'a, F, W: Write> {
    next: Pin<&'a mut F>,
    printer: &'a mut Printer<W>,
    yielded: bool,
}

impl<F, W> Future for FlushWhenIdle<'_, F, W>
where
    F: Future<Output = Option<Result<(StreamEvent, Bytes), enclave_reconnect::StreamError>>>,
    W: Write,
{
    type Output = Turn;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Turn> {
        if let Poll::Ready(item) = self.next.as_mut().poll(cx) {
            return Poll::Ready(Turn::Item(item.map(|item| {
                item.map(|(event, json)| (json, matches!(event.payload, EventPayload::Final(_))))
            })));
        }
        if self.printer.buf.is_empty() {
            return Poll::Pending;
        }
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match self.printer.flush() {
            Ok(()) => Poll::Pending,
            Err(err) => Poll::Ready(Turn::Output(err)),
        }
    }
}

fn print_state(event: &ConnectionEvent) {
    match event {
        ConnectionEvent::StateChange { from, to } => {
            report(format_args!("enclave connect: state {from:?} -> {to:?}"));
        }
        ConnectionEvent::RetryScheduled { attempt, delay } => {
            report(format_args!(
                "enclave connect: retry {attempt} in {} ms",
                delay.as_millis()
            ));
        }
        ConnectionEvent::Disconnected { reason } => {
            report(format_args!("enclave connect: disconnected: {reason}"));
        }
        ConnectionEvent::Failed { reason } => {
            report(format_args!("enclave connect: failed: {reason}"));
        }
        _ => {}
    }
}

/// Writes `session ID token TOKEN epoch EPOCH` when the session opens and whenever the token
/// changes.
fn announce(stream: &ReconnectingStream, announced: &mut Option<(String, Option<String>)>) {
    let Some(id) = stream.session_id() else {
        return;
    };
    // Checked without allocating: this runs for every event.
    if announced
        .as_ref()
        .is_some_and(|(i, t)| i == id.as_str() && t.as_deref() == stream.token())
    {
        return;
    }
    let now = (id.as_str().to_owned(), stream.token().map(str::to_owned));
    if announced.as_ref() != Some(&now) {
        report(format_args!(
            "session {} token {} epoch {}",
            now.0,
            now.1.as_deref().unwrap_or("-"),
            stream
                .epoch()
                .map_or_else(|| "-".to_owned(), |epoch| epoch.to_string()),
        ));
        *announced = Some(now);
    }
}
