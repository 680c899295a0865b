//! `enclave serve`: an EnclaveJS stream server for tests, demos and clients under development.
//!
//! Serves HTTP NDJSON and WebSocket on one port (the session hub of `enclave-reconnect`
//! behind the transport server of `enclave-transport`). Its first line on standard output is
//! `listening http://HOST:PORT` (`https` with TLS; `http://[::1]:PORT` for IPv6), so a script
//! can start it on port 0 and read where it is. Every new session gets its `session_init`,
//! then the events of `--events FILE` (re-sequenced) or `--generate N` generated events, then
//! `final`. With `--static DIR` it also serves the files of DIR on every path the protocol
//! routes leave free (`/` is `DIR/index.html`), so a browser page can be loaded from the
//! stream server. Logs go to standard error through `tracing` (`RUST_LOG` filters them). It
//! serves until SIGINT or SIGTERM, then stops accepting, ends every stream so clients resume
//! elsewhere, and exits 0. With `--store redis://…` several `enclave serve` processes share
//! their sessions through Redis: any of them serves any session.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use enclave_crypto::SigningKey;
use enclave_reconnect::store::Store;
use enclave_reconnect::{
    AcceptedSession, Hub, HubConfig, HubMetrics, Limit, OverflowPolicy, ServerBuilder,
};
use enclave_redis::{RedisStore, RedisStoreConfig};
use enclave_transport::ServerConfig;
use enclave_types::{FinalPayload, RuntimeChannelPayload};

use crate::generate::{load_events, Script};
use crate::input::{report, EXIT_FAILURE, EXIT_OK};

/// How long streams get to end once a shutdown signal arrives.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Arguments of `enclave serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(
        help_heading = "Listening",
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    listen: String,

    /// Also serve `GET /metrics` (Prometheus text) on this address, without the other routes
    /// (port 0 picks a free one; the second line of output says `metrics http://HOST:PORT`).
    /// The main port serves `/metrics` too.
    #[arg(help_heading = "Listening", long, value_name = "ADDR")]
    metrics_listen: Option<String>,

    /// Stream this file's events in every session (re-sequenced; its own `session_init`,
    /// `final` and `enc` lines are skipped).
    #[arg(
        help_heading = "What sessions stream",
        long,
        value_name = "FILE",
        conflicts_with = "generate"
    )]
    events: Option<PathBuf>,

    /// Stream N generated events in every session (a mix of every type but `heartbeat`).
    #[arg(help_heading = "What sessions stream", long, value_name = "N")]
    generate: Option<u64>,

    /// At most this many events per second per session (default: as fast as clients read).
    #[arg(
        help_heading = "What sessions stream",
        long,
        value_name = "EVENTS_PER_S"
    )]
    rate: Option<f64>,

    /// Encrypt when the client asks (`optional`), always (`required`) or never (`disabled`).
    #[arg(
        help_heading = "Encryption",
        long,
        value_enum,
        default_value = "optional"
    )]
    encryption: crate::Encryption,

    /// Sign every ServerHello with this key (PKCS#8 PEM, P-256; see `enclave keygen`).
    #[arg(help_heading = "Encryption", long, value_name = "FILE")]
    signing_key: Option<PathBuf>,

    /// Serve https/wss with this certificate chain (PEM); needs --tls-key.
    #[arg(
        help_heading = "Listening",
        long,
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(
        help_heading = "Listening",
        long,
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// Interval of `heartbeat` events, in ms (0 turns them off).
    #[arg(
        help_heading = "Sessions",
        long,
        value_name = "MS",
        default_value_t = 15_000
    )]
    heartbeat_ms: u64,

    /// Let clients resume by session id alone, without a resume token (what unmodified
    /// TypeScript clients need; see docs/SECURITY.md for what it gives up).
    #[arg(help_heading = "Sessions", long)]
    allow_tokenless_resume: bool,

    /// Serve `GET /sessions`, the list of every session (off by default: it names every
    /// session to anyone who can reach the server; see docs/SECURITY.md).
    #[arg(help_heading = "Sessions", long)]
    enable_session_list: bool,

    /// Events a session retains for resumes (and for backpressure).
    #[arg(help_heading = "Sessions", long, value_name = "N", default_value_t = HubConfig::default().max_buffered_events)]
    max_buffered_events: u64,

    /// Bytes of events a session retains.
    #[arg(help_heading = "Sessions", long, value_name = "BYTES", default_value_t = HubConfig::default().max_buffered_bytes)]
    max_buffered_bytes: u64,

    /// When retention is full of unacknowledged events: make the producer wait, or drop the
    /// oldest (a later resume from before it is refused with `too_far_behind`).
    #[arg(help_heading = "Sessions", long, value_enum, default_value = "wait")]
    overflow: Overflow,

    /// How long a session outlives its last connection, in ms.
    #[arg(help_heading = "Sessions", long, value_name = "MS", default_value_t = duration_ms(HubConfig::default().session_grace))]
    session_grace_ms: u64,

    /// Where sessions live: `memory` (this process) or `redis://[:PASSWORD@]HOST:PORT[/DB]`
    /// (also `rediss://…` for TLS, `redis+unix:///PATH`), shared by every server on that Redis
    /// and key prefix, so any of them serves any session.
    #[arg(
        help_heading = "Store",
        long,
        value_name = "URL",
        default_value = "memory"
    )]
    store: String,

    /// For `rediss://`: trust this PEM file's certificates (a private CA) instead of the
    /// system's roots.
    #[arg(help_heading = "Store", long, value_name = "FILE")]
    store_ca: Option<PathBuf>,

    /// Key prefix in the Redis store (deployments sharing one Redis keep apart by prefix).
    #[arg(
        help_heading = "Store",
        long,
        value_name = "PREFIX",
        default_value = "enclave:"
    )]
    store_prefix: String,

    /// Producer lease in the Redis store, in ms: a session whose server stops renewing it
    /// (it died or lost Redis) ends with `final {ok: false}` (`PRODUCER_LOST`).
    #[arg(
        help_heading = "Store",
        long,
        value_name = "MS",
        default_value_t = 10_000
    )]
    store_lease_ms: u64,

    /// How long, in ms, a store operation that fails (Redis down, restarting or full) is
    /// tried again before the publish fails; the session then ends with `final {ok: false}`
    /// (`STORE_UNAVAILABLE`), recorded once the store answers again.
    #[arg(
        help_heading = "Store",
        long,
        value_name = "MS",
        default_value_t = 5_000
    )]
    store_retry_ms: u64,

    /// Also serve the files of DIR (GET/HEAD; `/` is DIR/index.html) on every path the
    /// protocol routes leave free, e.g. the browser example
    /// `crates/enclave-stream/examples/browser`. Nothing outside DIR is reachable.
    #[arg(help_heading = "Listening", long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,

    /// Most concurrent connections (WebSockets included); past it and its reserve a new
    /// connection is answered 503 at once.
    #[arg(help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)", long, value_name = "N", default_value_t = enclave_transport::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Most concurrent connections from one IP address; past it, 503 at once.
    #[arg(help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)", long, value_name = "N", default_value_t = enclave_transport::DEFAULT_MAX_CONNECTIONS_PER_PEER)]
    max_connections_per_peer: usize,

    /// Connections accepted past --max-connections for everything but new sessions
    /// (/health, resumes, messages), so a full server stays reachable.
    #[arg(help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)", long, value_name = "N", default_value_t = enclave_transport::DEFAULT_CONNECTION_RESERVE)]
    connection_reserve: usize,

    /// How long a connection may take to send a request head (idle ones are closed then), ms.
    #[arg(
        help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)",
        long,
        value_name = "MS",
        default_value_t = 10_000
    )]
    header_timeout_ms: u64,

    /// How long a request body may take to arrive (slower: 408), ms.
    #[arg(
        help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)",
        long,
        value_name = "MS",
        default_value_t = 30_000
    )]
    body_timeout_ms: u64,

    /// How long after a ping a WebSocket peer has to be heard from before it is closed, ms.
    #[arg(
        help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)",
        long,
        value_name = "MS",
        default_value_t = 10_000
    )]
    ws_pong_timeout_ms: u64,

    /// How long a WebSocket client message may take from its first frame to its last, ms;
    /// an unfinished one closes the connection (1008).
    #[arg(
        help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)",
        long,
        value_name = "MS",
        default_value_t = 10_000
    )]
    ws_message_timeout_ms: u64,

    /// Most live sessions (not finished, deleted or expired); past it, creates get 503.
    #[arg(
        help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)",
        long,
        value_name = "N",
        default_value_t = 10_000
    )]
    max_sessions: usize,

    /// Most sessions created per second (0: no limit); past it, creates get 503.
    #[arg(
        help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)",
        long,
        value_name = "N",
        default_value_t = 1_000
    )]
    max_session_creations_per_sec: u32,

    /// Most live sessions created from one IP address (0: no limit, e.g. behind a proxy);
    /// past it, creates from that address get 503.
    #[arg(
        help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)",
        long,
        value_name = "N",
        default_value_t = 100
    )]
    max_sessions_per_peer: usize,

    /// The largest request body accepted (`POST /sessions`, messages, cancel), in bytes; a
    /// larger one is answered 413.
    #[arg(help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)", long, value_name = "BYTES", default_value_t = enclave_transport::wire::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// The longest NDJSON line read or written, in bytes; a client WebSocket message is
    /// bounded by the smaller of this and --max-body-bytes (larger: close 1009).
    #[arg(help_heading = "Limits (past each: a refusal, a 503 with Retry-After, a 408 or a close)", long, value_name = "BYTES", default_value_t = enclave_ndjson::DEFAULT_MAX_LINE_LENGTH)]
    max_line_length: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Overflow {
    Wait,
    DropOldest,
}

/// A default duration as the whole milliseconds a flag takes.
fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Runs `enclave serve`.
pub(crate) fn run(args: ServeArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return usage(&format!("cannot start the runtime: {err}")),
    };
    runtime.block_on(serve(args))
}

fn usage(message: &str) -> ExitCode {
    report(format_args!("enclave serve: {message}"));
    ExitCode::from(EXIT_FAILURE)
}

async fn serve(args: ServeArgs) -> ExitCode {
    let script = match (&args.events, args.generate) {
        (Some(path), _) => match load_events(path) {
            Ok(events) => Script::Events(Arc::new(events)),
            Err(err) => return usage(&err),
        },
        (None, n) => Script::Generate(n.unwrap_or(10)),
    };
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return usage("--rate must be a positive number of events per second");
        }
    }
    let (mut server_config, scheme) = match server_config(&args) {
        Ok(config) => config,
        Err(message) => return usage(&message),
    };
    let (transport_metrics, hub_metrics, registry) = match metrics_registry() {
        Ok(metrics) => metrics,
        Err(message) => return usage(&message),
    };
    server_config = server_config.with_metrics(transport_metrics, Arc::clone(&registry));
    let hub_config = match hub_config(&args, hub_metrics).await {
        Ok(config) => config,
        Err(message) => return usage(&message),
    };

    let listener = match bind(&args.listen).await {
        Ok(listener) => listener,
        Err(err) => return usage(&format!("cannot listen on {}: {err}", args.listen)),
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(err) => return usage(&format!("cannot read the listening address: {err}")),
    };
    // The contract's first line: scripts read it to learn the port.
    let announced = {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "listening {}", url(scheme, local)).and_then(|()| stdout.flush())
    };
    if let Err(err) = announced {
        return usage(&format!("cannot write to standard output: {err}"));
    }
    // The metrics listener stops when this function returns (the sender drops).
    let _stop_metrics = match serve_metrics(args.metrics_listen.as_deref(), &registry).await {
        Ok(stop) => stop,
        Err(message) => return usage(&message),
    };
    tracing::info!(%local, "serving");
    if let Some(dir) = &args.static_dir {
        tracing::info!(dir = %dir.display(), "serving static files");
    }

    let running = ServerBuilder::new()
        .hub_config(hub_config)
        .server_config(server_config.with_shutdown_grace(SHUTDOWN_GRACE))
        .limits(limits(&args))
        .serve(listener, async {
            shutdown_signal().await;
            tracing::info!("shutting down: ending streams so clients resume elsewhere");
        });
    let running = match running {
        Ok(running) => running,
        Err(err) => return usage(&format!("cannot serve on {local}: {err}")),
    };
    let application = tokio::spawn(run_sessions(running.hub().clone(), script, args.rate));
    let served = running.finished().await;
    application.abort();
    match served {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => {
            report(format_args!("enclave serve: {err}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Every limit flag, as the builder's option of the same meaning.
fn limits(args: &ServeArgs) -> [Limit; 16] {
    let ms = Duration::from_millis;
    [
        Limit::MaxConnections(args.max_connections),
        Limit::MaxConnectionsPerPeer(args.max_connections_per_peer),
        Limit::ConnectionReserve(args.connection_reserve),
        Limit::HeaderReadTimeout(ms(args.header_timeout_ms)),
        Limit::BodyTimeout(ms(args.body_timeout_ms)),
        Limit::MaxBodyBytes(args.max_body_bytes),
        Limit::MaxLineLength(args.max_line_length),
        Limit::WsPongTimeout(ms(args.ws_pong_timeout_ms)),
        Limit::WsMessageTimeout(ms(args.ws_message_timeout_ms)),
        Limit::MaxSessions(args.max_sessions),
        Limit::MaxSessionsPerPeer(args.max_sessions_per_peer),
        Limit::MaxSessionCreationsPerSec(args.max_session_creations_per_sec),
        Limit::MaxRetainedEvents(args.max_buffered_events),
        Limit::MaxRetainedBytes(args.max_buffered_bytes),
        Limit::SessionGrace(ms(args.session_grace_ms)),
        Limit::Heartbeat(Some(ms(args.heartbeat_ms))),
    ]
}

/// The transport's settings from the listening, encryption and limit flags, and the URL
/// scheme they serve (`https` with a certificate).
fn server_config(args: &ServeArgs) -> Result<(ServerConfig, &'static str), String> {
    let mut server_config = ServerConfig::default()
        .with_encryption(args.encryption.into())
        .with_session_list(args.enable_session_list);
    let scheme = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match enclave_transport::tls_config_from_pem(cert, key) {
            Ok(tls) => {
                server_config = server_config.with_tls(tls);
                "https"
            }
            Err(err) => return Err(err.to_string()),
        },
        _ => "http",
    };
    if let Some(dir) = &args.static_dir {
        if !dir.is_dir() {
            return Err(format!("--static {}: not a directory", dir.display()));
        }
        server_config = server_config.with_static_dir(dir);
    }
    if let Some(path) = &args.signing_key {
        match SigningKey::from_pkcs8_pem_file(path) {
            Ok(key) => server_config = server_config.with_signing_key(Arc::new(key)),
            Err(err) => return Err(err.to_string()),
        }
    }
    Ok((server_config, scheme))
}

/// The registry `GET /metrics` serves (names prefixed `enclave_`), with the transport's and
/// the hub's metrics in it.
fn metrics_registry() -> Result<
    (
        enclave_transport::metrics::TransportMetrics,
        HubMetrics,
        Arc<prometheus::Registry>,
    ),
    String,
> {
    let registry = prometheus::Registry::new_custom(Some("enclave".to_owned()), None)
        .map_err(|err| format!("cannot make the metrics registry: {err}"))?;
    let transport = enclave_transport::metrics::TransportMetrics::new();
    transport
        .register(&registry)
        .map_err(|err| format!("cannot register the metrics: {err}"))?;
    let hub = HubMetrics::new();
    hub.register(&registry)
        .map_err(|err| format!("cannot register the metrics: {err}"))?;
    Ok((transport, hub, Arc::new(registry)))
}

/// `--metrics-listen`: `GET /metrics` alone on `addr`, announced on the second line of output,
/// until the returned sender drops.
async fn serve_metrics(
    addr: Option<&str>,
    registry: &Arc<prometheus::Registry>,
) -> Result<Option<tokio::sync::oneshot::Sender<()>>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = bind(addr)
        .await
        .map_err(|err| format!("cannot listen on {addr} (--metrics-listen): {err}"))?;
    let local = listener
        .local_addr()
        .map_err(|err| format!("cannot read the metrics address: {err}"))?;
    {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "metrics {}", url("http", local))
            .and_then(|()| stdout.flush())
            .map_err(|err| format!("cannot write to standard output: {err}"))?;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let registry = Arc::clone(registry);
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stopped.await;
        };
        if let Err(err) = enclave_transport::metrics::serve(listener, registry, stopped).await {
            tracing::error!("the metrics listener failed: {err}");
        }
    });
    Ok(Some(stop))
}

/// The hub's settings from the session flags, its store and metrics included.
async fn hub_config(args: &ServeArgs, metrics: HubMetrics) -> Result<HubConfig, String> {
    let mut config = HubConfig::default()
        .with_store_retry(Duration::from_millis(args.store_retry_ms))
        .with_allow_tokenless_resume(args.allow_tokenless_resume)
        .with_overflow(match args.overflow {
            Overflow::Wait => OverflowPolicy::Wait,
            Overflow::DropOldest => OverflowPolicy::DropOldest,
        });
    if let Some(store) = open_store(args, &metrics).await? {
        config = config.with_store(store);
    }
    Ok(config.with_metrics(metrics))
}

/// The session store `--store` names; `None` for the in-memory default.
async fn open_store(
    args: &ServeArgs,
    metrics: &HubMetrics,
) -> Result<Option<Arc<dyn Store>>, String> {
    let url = args.store.trim();
    if url == "memory" {
        return Ok(None);
    }
    // The value may hold a password: messages name its scheme, never the rest.
    let redis = ["redis://", "rediss://", "redis+unix://", "unix://"];
    if !redis.iter().any(|scheme| url.starts_with(scheme)) {
        let scheme = url.split_once("://").map_or("(none)", |(scheme, _)| scheme);
        return Err(format!(
            "--store: expected `memory` or a Redis URL (redis://HOST:PORT[/DB], rediss://… or \
             redis+unix:///PATH), got the scheme {scheme:?}"
        ));
    }
    let mut config = RedisStoreConfig::default()
        .with_prefix(args.store_prefix.clone())
        .with_lease(Duration::from_millis(args.store_lease_ms))
        .with_metrics(metrics.clone());
    if let Some(ca) = &args.store_ca {
        config = config.with_ca_file(ca.clone());
    }
    let store = RedisStore::connect(url, config)
        .await
        .map_err(|err| format!("--store: {err}"))?;
    tracing::info!(prefix = %args.store_prefix, "sessions on Redis");
    Ok(Some(Arc::new(store)))
}

/// `http://127.0.0.1:PORT`, `http://[::1]:PORT`.
fn url(scheme: &str, addr: SocketAddr) -> String {
    format!("{scheme}://{addr}")
}

async fn bind(listen: &str) -> io::Result<tokio::net::TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address");
    for addr in tokio::net::lookup_host(listen).await? {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(%err, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The application: one task per new session, streaming the script.
async fn run_sessions(hub: Hub, script: Script, rate: Option<f64>) {
    while let Some(session) = hub.accept().await {
        tokio::spawn(run_session(session, script.clone(), rate));
    }
}

async fn run_session(session: AcceptedSession, script: Script, rate: Option<f64>) {
    let AcceptedSession {
        handle,
        mut messages,
        ..
    } = session;
    let id = handle.session_id().clone();
    // Client messages are logged: this server runs no code and calls no tools.
    let log_messages = {
        let id = id.clone();
        tokio::spawn(async move {
            while let Some(message) = messages.recv().await {
                match &message.payload {
                    RuntimeChannelPayload::ToolResultSubmit(result) => {
                        tracing::info!(session = %id, seq = ?message.seq, call = %result.call_id, ok = result.ok, "tool result received");
                    }
                    other => {
                        tracing::info!(session = %id, seq = ?message.seq, kind = %other.message_type(), "message received");
                    }
                }
            }
        })
    };
    let mut pace = rate.map(|rate| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    for index in 0..script.len() {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        tokio::select! {
            published = handle.publish(script.payload(index)) => {
                if let Err(err) = published {
                    log_publish_failure(&id, &err, "session closed while streaming");
                    log_messages.abort();
                    return;
                }
            }
            () = handle.cancelled() => {
                // The session ended itself (`error` SESSION_CANCELLED, then `final`).
                tracing::debug!(session = %id, "session cancelled");
                log_messages.abort();
                return;
            }
        }
    }
    if let Err(err) = handle.finish(FinalPayload::new(true)).await {
        log_publish_failure(&id, &err, "session closed before its final event");
    }
    log_messages.abort();
}

/// A publish that failed: at DEBUG when the session simply ended (closed, or the server
/// shuts down), at WARN when something failed (the store refused it).
fn log_publish_failure(id: &enclave_types::SessionId, err: &enclave_reconnect::Error, what: &str) {
    match err {
        enclave_reconnect::Error::SessionClosed(_) | enclave_reconnect::Error::ShuttingDown => {
            tracing::debug!(session = %id, %err, "{what}");
        }
        _ => tracing::warn!(session = %id, %err, "{what}"),
    }
}
