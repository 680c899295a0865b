//! `CutProxy`: a loopback TCP proxy that forwards both ways and, on every connection, after
//! a number of server→client bytes drawn from a range, either cuts the connection (both
//! sides closed, usually in the middle of a line), resets it (both sides aborted, so what
//! the client had not read yet is lost too) or goes silent (keeps it open and forwards
//! nothing more, which only a heartbeat timeout notices).
//!
//! Connections are spread over the targets round-robin, so two servers behind one proxy see
//! a client bounce between them at every reconnect. Every task the proxy starts ends when it
//! is dropped or [`CutProxy::stop`] is called.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::rng::SplitMix64;

/// What happens to a connection once its byte budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close both sides.
    Cut,
    /// Stop forwarding in either direction but keep both sockets open.
    Silence,
    /// Abort both sockets (`RST`, as a proxy or load balancer that drops a connection does):
    /// what sits unread in the client's receive buffer is lost with it, not only what the
    /// proxy and the server's send buffer held.
    Reset,
}

/// How a [`CutProxy`] behaves.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where connections go, round-robin.
    pub targets: Vec<SocketAddr>,
    /// Server→client bytes a connection may carry before its fault, drawn per connection
    /// from this inclusive range; `None` forwards everything.
    pub fault_after_bytes: Option<(u64, u64)>,
    /// What the fault is.
    pub fault: Fault,
    /// At most this many faults in all; later connections are left alone.
    pub max_faults: u64,
    /// Seed of the generator that draws the budgets.
    pub seed: u64,
}

impl ProxyConfig {
    /// A proxy to `target` that forwards everything.
    pub fn new(target: SocketAddr) -> Self {
        Self {
            targets: vec![target],
            fault_after_bytes: None,
            fault: Fault::Cut,
            max_faults: u64::MAX,
            seed: 1,
        }
    }

    /// Cut (or silence, with [`ProxyConfig::fault`]) each connection after a number of
    /// server→client bytes in `low..=high`.
    #[must_use]
    pub fn fault_after(mut self, low: u64, high: u64) -> Self {
        self.fault_after_bytes = Some((low, high));
        self
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    faults: AtomicU64,
    downstream_bytes: AtomicU64,
}

/// A running proxy on `127.0.0.1`, on a port the system picked.
#[derive(Debug)]
pub struct CutProxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    /// Bumped by [`cut_all`](Self::cut_all): every connection open then ends at once.
    cut: watch::Sender<u64>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl CutProxy {
    /// Binds `127.0.0.1:0` and starts forwarding.
    pub async fn start(config: ProxyConfig) -> io::Result<Self> {
        if config.targets.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no target"));
        }
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let (cut, cuts) = watch::channel(0);
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let accept = accept_loop(
            listener,
            config,
            Arc::clone(&counters),
            stopped,
            cuts,
            Arc::clone(&tasks),
        );
        lock(&tasks).spawn(accept);
        Ok(Self {
            addr,
            counters,
            stop,
            cut,
            tasks,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Faults (cuts or silences) so far.
    pub fn faults(&self) -> u64 {
        self.counters.faults.load(Ordering::Relaxed)
    }

    /// Server→client bytes forwarded so far, over every connection (how tests size
    /// [`ProxyConfig::fault_after_bytes`] and report bytes per event).
    pub fn downstream_bytes(&self) -> u64 {
        self.counters.downstream_bytes.load(Ordering::Relaxed)
    }

    /// Cuts every connection open now, at once (a reconnect storm: a balancer or a node
    /// dropping all its clients); each counts as a fault. New connections go on being
    /// accepted and forwarded.
    pub fn cut_all(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// Stops accepting, closes every connection and waits for the proxy's tasks.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        while tasks.join_next().await.is_some() {}
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        lock(&self.tasks).abort_all();
    }
}

fn lock(tasks: &Mutex<JoinSet<()>>) -> std::sync::MutexGuard<'_, JoinSet<()>> {
    tasks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept_loop(
    listener: TcpListener,
    config: ProxyConfig,
    counters: Arc<Counters>,
    mut stopped: watch::Receiver<bool>,
    cuts: watch::Receiver<u64>,
    tasks: Arc<Mutex<JoinSet<()>>>,
) {
    let next_target = AtomicUsize::new(0);
    let mut rng = SplitMix64::new(config.seed);
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
            _ = stopped.changed() => return,
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let target =
            config.targets[next_target.fetch_add(1, Ordering::Relaxed) % config.targets.len()];
        let budget = match config.fault_after_bytes {
            Some((low, high)) if counters.faults.load(Ordering::Relaxed) < config.max_faults => {
                Some(rng.between(low, high))
            }
            _ => None,
        };
        let connection = forward(
            client,
            target,
            budget,
            config.fault,
            Arc::clone(&counters),
            config.max_faults,
            Ends {
                stopped: stopped.clone(),
                cuts: cuts.clone(),
            },
        );
        lock(&tasks).spawn(connection);
    }
}

/// What ends every connection from outside: the proxy stopping, and [`CutProxy::cut_all`].
struct Ends {
    stopped: watch::Receiver<bool>,
    cuts: watch::Receiver<u64>,
}

/// Forwards one connection until either side closes, the budget is spent, or the proxy stops.
async fn forward(
    client: TcpStream,
    target: SocketAddr,
    budget: Option<u64>,
    fault: Fault,
    counters: Arc<Counters>,
    max_faults: u64,
    ends: Ends,
) {
    let Ends {
        mut stopped,
        mut cuts,
    } = ends;
    // A cut ordered before this connection was accepted is not its own.
    cuts.mark_unchanged();
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set once the link goes silent: from then on nothing is forwarded either way, and the
    // connection lives until the client closes it (or the proxy stops).
    let silenced = AtomicBool::new(false);
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) if silenced.load(Ordering::Relaxed) => {}
                Ok(n) => {
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut left = budget;
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let allowed = left.map_or(n, |left| n.min(usize::try_from(left).unwrap_or(usize::MAX)));
            if client_write.write_all(&buf[..allowed]).await.is_err() {
                break;
            }
            counters
                .downstream_bytes
                .fetch_add(allowed as u64, Ordering::Relaxed);
            if let Some(rest) = left.as_mut() {
                *rest -= allowed as u64;
            }
            if left == Some(0) {
                // Past `max_faults` (other connections spent them meanwhile) the connection
                // goes on unharmed, forwarding everything, and the count stays exact.
                left = None;
                let counted = counters
                    .faults
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                        (f < max_faults).then_some(f + 1)
                    })
                    .is_ok();
                if counted {
                    if fault == Fault::Silence {
                        // Hold both sockets open, forwarding nothing, until the client gives
                        // up on this connection (the upstream half sees its end) or the
                        // proxy stops. Reading what the client sends, as the upstream half
                        // goes on doing, is not an end: a WebSocket client sends acks.
                        silenced.store(true, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_mins(10)).await;
                    }
                    if fault == Fault::Reset {
                        // A zero linger makes the close that follows (every half is dropped
                        // on return) an abort. Failing to set it leaves an ordinary cut.
                        let _ = client_write.as_ref().set_zero_linger();
                        let _ = server_read.as_ref().set_zero_linger();
                    }
                    return;
                }
                // What the budget held back of this read goes on too.
                if client_write.write_all(&buf[allowed..n]).await.is_err() {
                    break;
                }
                counters
                    .downstream_bytes
                    .fetch_add((n - allowed) as u64, Ordering::Relaxed);
            }
        }
        let _ = client_write.shutdown().await;
    };
    // Whichever direction ends first ends the connection: every half is dropped, and with
    // them both sockets. A cut is exactly that, mid-stream.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
        _ = stopped.changed() => {}
        _ = cuts.changed() => {
            counters.faults.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // Sends 10,000 bytes, then echoes.
                    let _ = socket.write_all(&[b'x'; 10_000]).await;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    async fn read_until_closed(socket: &mut TcpStream) -> usize {
        let mut total = 0;
        let mut buf = [0u8; 4096];
        loop {
            let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
                .await
                .expect("the proxy forwards or closes within 5 s");
            match read {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    }

    #[tokio::test]
    async fn cuts_each_connection_inside_its_budget() {
        let (server, task) = echo_server().await;
        let proxy = CutProxy::start(ProxyConfig::new(server).fault_after(100, 300))
            .await
            .unwrap();
        for _ in 0..3 {
            let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
            let got = read_until_closed(&mut socket).await;
            assert!((100..=300).contains(&got), "{got} bytes before the cut");
        }
        assert_eq!(proxy.faults(), 3);
        assert_eq!(proxy.connections(), 3);
        assert!((300..=900).contains(&proxy.downstream_bytes()));
        proxy.stop().await;
        task.abort();
    }

    #[tokio::test]
    async fn cut_all_ends_every_open_connection_at_once_and_later_ones_go_on() {
        let (server, task) = echo_server().await;
        let proxy = CutProxy::start(ProxyConfig::new(server)).await.unwrap();
        let mut open = Vec::new();
        for _ in 0..3 {
            let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
            let mut first = vec![0u8; 10_000];
            tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut first))
                .await
                .expect("the server's bytes within 5 s")
                .unwrap();
            open.push(socket);
        }
        proxy.cut_all();
        for socket in &mut open {
            assert_eq!(
                read_until_closed(socket).await,
                0,
                "cut: nothing more, then the end"
            );
        }
        assert_eq!(proxy.faults(), 3);
        // A connection made after the cut is forwarded as usual.
        let mut later = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = vec![0u8; 10_000];
        tokio::time::timeout(Duration::from_secs(5), later.read_exact(&mut buf))
            .await
            .expect("all 10,000 bytes within 5 s")
            .unwrap();
        assert_eq!(proxy.faults(), 3);
        proxy.stop().await;
        task.abort();
    }

    #[tokio::test]
    async fn forwards_everything_without_a_budget_and_after_max_faults() {
        let (server, task) = echo_server().await;
        let mut config = ProxyConfig::new(server).fault_after(50, 50);
        config.max_faults = 1;
        let proxy = CutProxy::start(config).await.unwrap();
        let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(read_until_closed(&mut first).await, 50);
        let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = vec![0u8; 10_000];
        tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut buf))
            .await
            .expect("all 10,000 bytes within 5 s")
            .unwrap();
        second.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&echo, b"ping");
        proxy.stop().await;
        task.abort();
    }

    #[tokio::test]
    async fn silence_keeps_the_connection_open_and_forwards_nothing() {
        let (server, task) = echo_server().await;
        let mut config = ProxyConfig::new(server).fault_after(10, 10);
        config.fault = Fault::Silence;
        let proxy = CutProxy::start(config).await.unwrap();
        let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = [0u8; 10];
        socket.read_exact(&mut buf).await.unwrap();
        let mut more = [0u8; 1];
        let waited = tokio::time::timeout(Duration::from_millis(300), socket.read(&mut more)).await;
        assert!(waited.is_err(), "a silent link neither sends nor closes");
        // What the client sends goes nowhere either, and does not end the silence.
        socket.write_all(b"ping").await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), socket.read(&mut more)).await;
        assert!(
            waited.is_err(),
            "a silent link stays silent after the client writes"
        );
        proxy.stop().await;
        task.abort();
    }
}
