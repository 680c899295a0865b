//! The accept loop, in the shape of mini-redis: a semaphore caps live connections, every
//! connection (and every WebSocket it upgrades to) is tracked, and shutdown is one
//! broadcast ([`CancellationToken`]) that every connection and stream selects on, after
//! which the server waits, for a bounded time, for them to finish.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::Shared;

/// How long a client has to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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

/// What an accepted connection holds while it lives: its slot under the connection cap.
/// Shared with the WebSocket it may upgrade to, through the request's extensions, so the
/// slot is freed only when both are done.
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    _permit: OwnedSemaphorePermit,
}

/// Accepts until `shutdown` resolves, then ends every stream and waits (at most the
/// configured grace) for connections to finish.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let router = super::routes::router(Arc::clone(&shared));
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let tls = shared
        .config
        .tls
        .clone()
        .map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            () = shared.shutdown.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => permit.map_err(io::Error::other)?,
        };
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
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {err}");
        }
        let guard = Arc::new(ConnectionGuard { _permit: permit });
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
        tokio::spawn(async move {
            let _track = track;
            let _guard = guard;
            match tls {
                None => serve_connection(stream, service, shutdown).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, service, shutdown).await,
                        Ok(Err(err)) => tracing::debug!(%peer, "TLS handshake failed: {err}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
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
async fn serve_connection<I, S>(io: I, service: S, shutdown: CancellationToken)
where
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
        .header_read_timeout(HEADER_READ_TIMEOUT);
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
