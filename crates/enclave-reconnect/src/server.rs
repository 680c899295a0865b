//! [`ServerBuilder`]: a session server in a few lines — the hub, with any session store,
//! behind the transport's HTTP NDJSON and WebSocket server.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use enclave_transport::metrics::TransportMetrics;
use enclave_transport::{Server, ServerConfig, SessionService};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::store::Store;
use crate::{Hub, HubConfig, HubMetrics, Limit};

/// Builds a [`Hub`] and the transport [`Server`] in front of it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use std::sync::Arc;
/// use enclave_reconnect::store::MemoryStore;
/// use enclave_reconnect::ServerBuilder;
///
/// let running = ServerBuilder::new()
///     .store(Arc::new(MemoryStore::new())) // or a shared store: enclave-redis's RedisStore
///     .bind("127.0.0.1:0")
///     .await?;
/// println!("listening http://{}", running.addr());
/// running.stop().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerBuilder {
    hub: HubConfig,
    server: ServerConfig,
    /// Set by [`ServerBuilder::store`]; wins over the hub settings' store whatever the
    /// order of the calls.
    store: Option<Arc<dyn Store>>,
    /// Set by [`ServerBuilder::with_metrics`]; wins over both settings' metrics whatever the
    /// order of the calls.
    metrics: Option<Metrics>,
    /// Set by [`ServerBuilder::limit`], in call order; applied over both settings.
    limits: Vec<Limit>,
}

/// The metrics [`ServerBuilder::with_metrics`] registered.
#[derive(Debug, Clone)]
struct Metrics {
    transport: TransportMetrics,
    hub: HubMetrics,
    registry: Arc<Registry>,
}

impl ServerBuilder {
    /// Defaults: an in-memory store, the hub's and the server's default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// The hub's settings (its store included, unless [`ServerBuilder::store`] names one, in
    /// either order).
    #[must_use]
    pub fn hub_config(mut self, config: HubConfig) -> Self {
        self.hub = config;
        self
    }

    /// The transport server's settings.
    #[must_use]
    pub fn server_config(mut self, config: ServerConfig) -> Self {
        self.server = config;
        self
    }

    /// One of the server's limits ([`Limit`] lists them all, with their defaults): set in
    /// the settings of the layer that enforces it, over [`hub_config`](Self::hub_config) and
    /// [`server_config`](Self::server_config) in either order; a later call for the same
    /// limit wins.
    #[must_use]
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limits.push(limit);
        self
    }

    /// [`limit`](Self::limit) for each of `limits`, in order.
    #[must_use]
    pub fn limits(mut self, limits: impl IntoIterator<Item = Limit>) -> Self {
        self.limits.extend(limits);
        self
    }

    /// Where session state lives: [`MemoryStore`](crate::store::MemoryStore) by default, or
    /// a store shared by several servers (a Redis Streams store) so that any of them serves
    /// any session.
    #[must_use]
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Prometheus metrics: the transport's ([`TransportMetrics`]) and the hub's
    /// ([`HubMetrics`]) are made and registered in `registry`, and `GET /metrics` serves it
    /// (register the application's own metrics there too). Wins over metrics set in
    /// [`hub_config`](Self::hub_config) or [`server_config`](Self::server_config), in either
    /// order. Fails if one of the names is taken in `registry` (registered twice).
    ///
    /// A shared store that ends sessions whose producer died counts them in the hub's
    /// metrics when given them ([`hub_metrics`](Self::hub_metrics); enclave-redis's
    /// `RedisStoreConfig::with_metrics`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use enclave_reconnect::ServerBuilder;
    ///
    /// let registry = Arc::new(prometheus::Registry::new_custom(Some("enclave".into()), None)?);
    /// let running = ServerBuilder::new()
    ///     .with_metrics(Arc::clone(&registry))?
    ///     .bind("127.0.0.1:0")
    ///     .await?;
    /// // GET http://{addr}/metrics serves enclave_streams, enclave_sessions, …
    /// let text = enclave_transport::metrics::encode(&registry)?;
    /// assert!(text.contains("enclave_sessions_created_total 0"));
    /// running.stop().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_metrics(mut self, registry: Arc<Registry>) -> prometheus::Result<Self> {
        let transport = TransportMetrics::new();
        transport.register(&registry)?;
        let hub = HubMetrics::new();
        hub.register(&registry)?;
        self.metrics = Some(Metrics {
            transport,
            hub,
            registry,
        });
        Ok(self)
    }

    /// The hub's metrics [`with_metrics`](Self::with_metrics) registered, if it was called:
    /// what a shared store counts lost producer leases into.
    pub fn hub_metrics(&self) -> Option<&HubMetrics> {
        self.metrics.as_ref().map(|metrics| &metrics.hub)
    }

    /// The hub and the server, for an application that serves them itself (an axum
    /// router of its own: [`Server::router`]). Needs a Tokio runtime (the hub starts tasks).
    pub fn build(self) -> (Hub, Server) {
        let mut config = match self.store {
            Some(store) => self.hub.with_store(store),
            None => self.hub,
        };
        let mut server_config = self.server;
        for limit in self.limits {
            limit.apply(&mut config, &mut server_config);
        }
        if let Some(metrics) = self.metrics {
            config = config.with_metrics(metrics.hub);
            server_config = server_config.with_metrics(metrics.transport, metrics.registry);
        }
        let hub = Hub::new(config);
        let server = Server::new(
            Arc::new(hub.clone()) as Arc<dyn SessionService>,
            server_config,
        );
        (hub, server)
    }

    /// Binds `addr` (port 0 picks one) and serves until [`RunningServer::stop`].
    pub async fn bind(self, addr: &str) -> io::Result<RunningServer> {
        let listener = TcpListener::bind(addr).await?;
        self.serve(listener, std::future::pending())
    }

    /// Serves on `listener` until `shutdown` resolves or [`RunningServer::stop`].
    ///
    /// # Panics
    /// Outside a Tokio runtime (the server and the hub start tasks).
    pub fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<RunningServer> {
        let addr = listener.local_addr()?;
        let (hub, server) = self.build();
        let signal_hub = hub.clone();
        let task = tokio::spawn(server.clone().serve(listener, async move {
            shutdown.await;
            signal_hub.shutdown();
        }));
        Ok(RunningServer {
            hub,
            server,
            addr,
            task: Some(task),
        })
    }
}

/// A server started by [`ServerBuilder::bind`]: its hub (accept sessions from it), its
/// address, and a graceful stop. Dropping it stops it too, without waiting.
#[derive(Debug)]
pub struct RunningServer {
    hub: Hub,
    server: Server,
    addr: SocketAddr,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// The hub: [`Hub::accept`] hands over each new session.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The transport server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends every stream (clients resume elsewhere), shuts the hub down and
    /// waits for the server to return (at most its shutdown grace).
    pub async fn stop(mut self) -> io::Result<()> {
        self.server.shutdown();
        self.hub.shutdown();
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }

    /// Waits until the server returns by itself: its `shutdown` future (given to
    /// [`ServerBuilder::serve`]) resolved and the streams were ended, or it failed. What a
    /// binary that stops on a signal awaits.
    pub async fn finished(mut self) -> io::Result<()> {
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.server.shutdown();
        self.hub.shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
