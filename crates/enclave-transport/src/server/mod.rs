//! The server side: an HTTP/1.1 + WebSocket server, embeddable in any tokio application,
//! serving the routes of the network contract on top of an `Arc<dyn SessionService>`.
//!
//! | route | what |
//! |---|---|
//! | `POST /sessions` | creates a session; `200` NDJSON stream of its events |
//! | `GET /sessions/:id/stream?fromSeq=N` (or `from=N`) | resumes from `N` (inclusive) |
//! | `POST /sessions/:id/messages` | NDJSON client messages and `X-Enclave-Ack`; `{"ack": M}` |
//! | `GET /sessions/:id`, `GET /sessions`, `DELETE /sessions/:id`, `POST /sessions/:id/cancel` | the broker's shapes |
//! | `GET /sessions/ws` | WebSocket: `open` / `opened`, then NDJSON lines both ways |
//! | `GET /health` | `{"status":"ok"}` |
//! | `OPTIONS *` | CORS preflight, `204` |
//! | `GET`/`HEAD` of any other path | a file of [`ServerConfig::with_static_dir`], when set |
//!
//! Choices the contract leaves open, made here:
//! - A body over [`ServerConfig::max_body_bytes`] is answered `413` with
//!   `{"code":"PAYLOAD_TOO_LARGE","message":…,"reason":"invalid_request"}`. An empty
//!   `POST /sessions` body asks for a session with every default.
//! - A path id that cannot be a session id is `400 INVALID_REQUEST` on the routes that check a
//!   token first (`/stream`, `/messages`), so the answer never depends on whether a session
//!   exists; on the broker's routes (`GET`/`DELETE /sessions/:id`, `/cancel`) it is `404
//!   NOT_FOUND`, as the broker answers.
//! - `fromSeq=0` means the same as `fromSeq=1`.
//! - An offered `ClientHello` that the handshake refuses is unusable: plaintext under policy
//!   `Optional` (logged), `ENCRYPTION_REQUIRED` under `Required` or when the client's mode is
//!   `required`. A malformed `X-Enclave-Client-Hello` header is `400 INVALID_REQUEST`.
//! - On HTTP, events of an encrypted connection are sealed with the connection's
//!   [`Sealer`](enclave_crypto::Sealer) directly; its [`Opener`](enclave_crypto::Opener) goes
//!   to the messages route, which opens envelopes under the key of the session's *current*
//!   stream connection (replaced by each resume, forgotten when the stream ends). A sealed
//!   message while no encrypted stream is attached is `503 SERVICE_UNAVAILABLE` (retry after
//!   resuming); a plaintext one for an encrypted connection is `400`. An envelope whose `seq`
//!   was already opened on that connection is skipped and acknowledged again.
//! - A stream ended by shutdown, supersession or a refusal ends its chunked body cleanly;
//!   an event that cannot be written aborts the response (the client sees an error and
//!   resumes rather than a silent gap).
//! - On WebSocket, an event counts as written (`EventSource::written`) once it is in the
//!   text message about to be handed to the socket; on HTTP once hyper has taken its chunk.
//!   A bad client line is logged and dropped; the connection goes on. A stream that ends
//!   after its `final` closes with 1000; supersession closes with 1000 `superseded`;
//!   shutdown sends the `shutting_down` refusal and closes with 1012.
#![allow(clippy::module_name_repetitions)]

mod body;
mod config;
mod filter;
mod limits;
mod listener;
pub(crate) mod negotiate;
mod pump;
mod responses;
mod routes;
mod static_files;
mod ws;
mod ws_watch;

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{
    tls_config_from_pem, AuthorizationHook, ServerConfig, SessionAccessHook,
    DEFAULT_CONNECTION_RESERVE, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_PEER,
};

use crate::service::SessionService;
use listener::Tracker;
use negotiate::OpenerRegistry;

/// What every route and connection of one server shares.
pub(crate) struct Shared {
    pub(crate) service: Arc<dyn SessionService>,
    pub(crate) config: ServerConfig,
    pub(crate) registry: Arc<OpenerRegistry>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: Arc<Tracker>,
}

/// The HTTP + WebSocket server.
///
/// Cheap to clone: clones share the service, the configuration and the shutdown signal.
///
/// ```no_run
/// # async fn run(service: std::sync::Arc<dyn enclave_transport::SessionService>) -> std::io::Result<()> {
/// use enclave_transport::{Server, ServerConfig};
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let server = Server::new(service, ServerConfig::default());
/// // Anything that resolves when the application wants to stop (here: a oneshot).
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// # drop(stop);
/// server
///     .serve(listener, async {
///         let _ = stopped.await;
///     })
///     .await
/// # }
/// ```
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// A server for `service` with `config`.
    pub fn new(service: Arc<dyn SessionService>, config: ServerConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                service,
                config,
                registry: Arc::default(),
                shutdown: CancellationToken::new(),
                tracker: Arc::default(),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Every route, with CORS and the authorization hook, to embed in another axum
    /// application or serve with any hyper-based server. WebSocket upgrades need the
    /// connection served with upgrades enabled. The connection cap and TLS belong to
    /// [`serve`](Self::serve) and do not apply here; [`shutdown`](Self::shutdown) does.
    pub fn router(&self) -> axum::Router {
        routes::router(Arc::clone(&self.shared))
    }

    /// Serves HTTP/1.1 and WebSocket (https/wss when [`ServerConfig::with_tls`] is set) on
    /// `listener` until `shutdown` resolves or [`Server::shutdown`] is called. Then it stops
    /// accepting, ends every attached stream (HTTP bodies end, WebSockets get the
    /// `shutting_down` refusal and close 1012) so clients resume elsewhere, and waits at most
    /// [`ServerConfig::with_shutdown_grace`] for connections to finish.
    ///
    /// Bytes that are not HTTP cost only their connection. Errors: only a failure of the
    /// connection cap's semaphore, which cannot happen while the server lives.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        listener::serve(self.shared, listener, shutdown).await
    }

    /// Starts a graceful shutdown: [`serve`](Self::serve) stops accepting, and every
    /// stream served by this server — through `serve` or [`router`](Self::router) — ends.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Whether [`shutdown`](Self::shutdown) was called or `serve`'s signal fired.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.shared.config)
            .field("live_connections", &self.shared.tracker.live())
            .field("shutting_down", &self.shared.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}
