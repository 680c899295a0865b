//! The accept loop, in the shape of mini-redis: a semaphore caps live connections, every
//! connection (and every WebSocket it upgrades to) is tracked, and shutdown is one
//! broadcast ([`CancellationToken`]) that every connection and stream selects on, after
//! which the server waits, for a bounded time, for them to finish.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tracing::Instrument as _;

use super::limits::LogBudget;
use super::Shared;
use crate::service::{Refusal, RefusalReason};

/// How long a refused connection's `503` may take to write before the socket is dropped.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Live connections per peer IP address, for [`ServerConfig::with_max_connections_per_peer`].
///
/// [`ServerConfig::with_max_connections_per_peer`]: super::ServerConfig::with_max_connections_per_peer
#[derive(Debug, Default)]
struct Peers {
    live: Mutex<HashMap<IpAddr, usize>>,
}

impl Peers {
    /// Counts one more connection from `ip` until the guard drops; `None` when `ip` holds
    /// `limit` already.
    fn enter(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<PeerGuard> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let count = live.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(PeerGuard {
            peers: Arc::clone(self),
            ip,
        })
    }
}

/// One live connection of a peer, for [`Peers`].
#[derive(Debug)]
struct PeerGuard {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let mut live = self
            .peers
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = live.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                live.remove(&self.ip);
            }
        }
    }
}

/// Counts live connections so shutdown can wait for them.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    live: AtomicUsize,
    idle: Notify,
}

impl Tracker {
    /// Counts one more live connection until the guard drops.
    pub(crate) fn track(self: &Arc<Self>) -> TrackGuard {
        self.live.fetch_add(1, Ordering::SeqCst);
        TrackGuard(Arc::clone(self))
    }

    /// Waits until no connection is live.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// How many connections are live.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// One live connection, for the [`Tracker`].
#[derive(Debug)]
pub(crate) struct TrackGuard(Arc<Tracker>);

impl Drop for TrackGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What an accepted connection holds while it lives: its slot under the connection cap (or
/// in the reserve) and its place among its peer's connections. Shared with the WebSocket it
/// may upgrade to, through the request's extensions, so both are freed only when both are
/// done.
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    _permit: OwnedSemaphorePermit,
    peer: PeerGuard,
    /// A slot of [`ServerConfig::with_connection_reserve`]: no new sessions on this connection.
    ///
    /// [`ServerConfig::with_connection_reserve`]: super::ServerConfig::with_connection_reserve
    pub(crate) reserve: bool,
}

impl ConnectionGuard {
    /// The peer's IP address (what a new session's [`CreateSession::peer`] says).
    ///
    /// [`CreateSession::peer`]: crate::service::CreateSession::peer
    pub(crate) fn peer_ip(&self) -> IpAddr {
        self.peer.ip
    }
}

/// The refusal of a new session on a reserve connection (`503`, WebSocket close 1013).
pub(crate) fn reserve_refusal() -> Refusal {
    Refusal::new(
        RefusalReason::Unavailable,
        "the server is at its connection cap: only existing sessions are served, retry later",
    )
}

/// Answers a connection the server will not serve with a `503` (plain HTTP only; a TLS
/// client just sees the close), then drops it.
async fn refuse_connection<S>(mut stream: S, tls: bool, why: &str)
where
    S: AsyncWrite + Unpin,
{
    if !tls {
        let body = Refusal::new(RefusalReason::Unavailable, why)
            .to_json()
            .to_string();
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\n\
             retry-after: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            crate::wire::RETRY_AFTER_SECS,
            body.len()
        );
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await
        })
        .await;
    }
}

/// Who gets a connection slot: the cap, its reserve, and the per-address cap.
struct Admission {
    slots: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    peers: Arc<Peers>,
    max_per_peer: usize,
    /// A flood of refused connections logs a few lines, not one per connection.
    refused: LogBudget,
}

impl Admission {
    /// The slot of a connection from `peer`, or why it is refused.
    fn admit(&mut self, peer: SocketAddr) -> Result<ConnectionGuard, &'static str> {
        let Some(peer_guard) = self.peers.enter(peer.ip(), self.max_per_peer) else {
            self.refused
                .log(|| tracing::warn!(%peer, "connection refused: too many from this address"));
            return Err("too many connections from this address, retry later");
        };
        let (permit, reserve) = if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            (permit, false)
        } else if let Ok(permit) = Arc::clone(&self.reserve).try_acquire_owned() {
            (permit, true)
        } else {
            self.refused.log(|| {
                tracing::warn!(%peer, "connection refused: the connection cap and its reserve are full");
            });
            return Err("the server is at its connection cap, retry later");
        };
        Ok(ConnectionGuard {
            _permit: permit,
            peer: peer_guard,
            reserve,
        })
    }
}

/// Accepts until `shutdown` resolves, then ends every stream and waits (at most the
/// configured grace) for connections to finish.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let router = super::routes::router(Arc::clone(&shared));
    let mut admission = Admission {
        slots: Arc::new(Semaphore::new(shared.config.max_connections)),
        reserve: Arc::new(Semaphore::new(shared.config.connection_reserve)),
        peers: Arc::default(),
        max_per_peer: shared.config.max_connections_per_peer,
        refused: LogBudget::default(),
    };
    let tls = shared
        .config
        .tls
        .clone()
        .map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Every connection is accepted and answered at once, so a full server says so
        // quickly instead of leaving clients in the listen queue.
        let guard = match admission.admit(peer) {
            Ok(guard) => Arc::new(guard),
            Err(why) => {
                shared.config.metrics.connection_refused();
                tokio::spawn(refuse_connection(stream, tls.is_some(), why));
                continue;
            }
        };
        let counted = shared.config.metrics.connection();
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {err}");
        }
        let track = shared.tracker.track();
        let service = router.clone().map_request({
            let guard = Arc::clone(&guard);
            move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(Arc::clone(&guard));
                request
            }
        });
        let service = TowerToHyperService::new(service);
        let shutdown = shared.shutdown.clone();
        let tls = tls.clone();
        let handshake_timeout = shared.config.tls_handshake_timeout;
        let header_timeout = shared.config.header_read_timeout;
        let span = tracing::info_span!("connection", %peer, tls = tls.is_some());
        tokio::spawn(
            async move {
                let _track = track;
                let _guard = guard;
                let _counted = counted;
                tracing::debug!("connection accepted");
                match tls {
                    None => serve_connection(stream, service, shutdown, header_timeout).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
                            Ok(Ok(stream)) => {
                                serve_connection(stream, service, shutdown, header_timeout).await;
                            }
                            Ok(Err(err)) => tracing::debug!(%peer, "TLS handshake failed: {err}"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    tracing::info!(
        live = shared.tracker.live(),
        "shutting down: ending every stream"
    );
    shared.shutdown.cancel();
    if tokio::time::timeout(shared.config.shutdown_grace, shared.tracker.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            live = shared.tracker.live(),
            "connections still open after the shutdown grace: dropped"
        );
    }
    Ok(())
}

/// Serves HTTP/1.1 (with upgrades) on one connection until it ends or shutdown.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    shutdown: CancellationToken,
    header_timeout: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = axum::response::Response>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            // Finish the response in flight (its stream ends on the same signal), then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        // Bytes that are not HTTP, a peer that went away: it costs only this connection.
        tracing::debug!("connection ended: {err}");
    }
}
