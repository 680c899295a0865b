//! The real server for the end-to-end tests: a [`Hub`] behind the transport's [`Server`] on
//! a loopback port, a client configuration with fast retries, a mix of event payloads, and
//! bounded waits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use enclave_reconnect::{Hub, HubConfig, ReconnectPolicy, StreamConfig};
use enclave_transport::client::ClientConfig;
use enclave_transport::{Server, ServerConfig, SessionService};
use enclave_types::{
    CallId, EncryptionMode, EventPayload, LogLevel, LogPayload, PartialResultPayload, RawJson,
    StdoutPayload, ToolCallPayload,
};
use tokio::task::JoinHandle;

/// A session hub served over HTTP and WebSocket on `127.0.0.1`.
pub(crate) struct Live {
    pub(crate) hub: Hub,
    pub(crate) server: Server,
    pub(crate) addr: SocketAddr,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Live {
    /// A hub with `config` behind a server that requires encryption, on a port of its own.
    pub(crate) async fn start(config: HubConfig) -> Self {
        Self::start_with(config, EncryptionMode::Required, "127.0.0.1:0").await
    }

    /// A hub with `config` behind a server with `policy`, listening on `addr`.
    pub(crate) async fn start_with(config: HubConfig, policy: EncryptionMode, addr: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let hub = Hub::new(config);
        let server = Server::new(
            Arc::new(hub.clone()) as Arc<dyn SessionService>,
            ServerConfig::default()
                .with_encryption(policy)
                .with_shutdown_grace(Duration::from_secs(1)),
        );
        let task = tokio::spawn(server.clone().serve(listener, std::future::pending()));
        Self {
            hub,
            server,
            addr,
            task: Some(task),
        }
    }

    pub(crate) fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Shuts the server and the hub down and waits (bounded) for the server to return.
    pub(crate) async fn stop(mut self) {
        self.server.shutdown();
        self.hub.shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("the server stops within 5 s")
                .expect("the server task ends cleanly")
                .expect("serve returns Ok");
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.server.shutdown();
        self.hub.shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Fast retries: 10 attempts from 20 ms, at most 200 ms apart; encryption required.
pub(crate) fn fast_client() -> StreamConfig {
    StreamConfig::new()
        .with_client(
            ClientConfig::new()
                .with_encryption(EncryptionMode::Required)
                .with_connect_timeout(Duration::from_secs(3)),
        )
        .with_policy(
            ReconnectPolicy::new()
                .with_max_attempts(10)
                .with_initial_delay(Duration::from_millis(20))
                .with_max_delay(Duration::from_millis(200)),
        )
        .with_heartbeat_timeout(Duration::from_secs(5))
}

/// The `i`-th event of the application's stream: stdout of varying length, a log line, a
/// tool call, a partial result — each naming `i`, so a misplaced one shows.
pub(crate) fn payload(i: u64) -> EventPayload {
    match i % 4 {
        0 => {
            let pad = "x".repeat(usize::try_from(i * 7 % 200).unwrap_or(0));
            EventPayload::Stdout(StdoutPayload::new(format!("line {i}: {pad}\n")))
        }
        1 => EventPayload::Log(LogPayload::new(
            LogLevel::Info,
            format!("step {i} of the chaos run: still going"),
        )),
        2 => EventPayload::ToolCall(ToolCallPayload::new(
            CallId::new(format!("c_{i}")).expect("a valid call id"),
            "fetch",
            RawJson::from_value(&serde_json::json!({"i": i, "url": "https://example.com/item"}))
                .expect("JSON args"),
        )),
        _ => EventPayload::PartialResult(PartialResultPayload::new(
            vec!["items".to_owned(), i.to_string()],
            true,
        )),
    }
}

/// The number in an environment variable, or `default`.
pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}
