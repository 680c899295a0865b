//! The transport's Prometheus metrics: connections by carrier and encryption, what they
//! write and read, refusals by route and reason, resumes by outcome, and why connections
//! close. One place per step (the stream writers, the routes' refusal middleware, the accept
//! loop) records each; docs/OPERATIONS.md lists them.
//!
//! A [`TransportMetrics`] is a set of handles (cheap to clone) on metrics registered in a
//! `prometheus::Registry` the deployment owns, so the session layer and the store register
//! theirs beside them and one `GET /metrics` serves all ([`encode`]). Without one the server
//! counts into metrics nobody reads: the cost of a count is one atomic add, and the per-event
//! counts are added once per chunk or WebSocket batch, not per event. No label carries a
//! session id, a token or a peer address.

use std::fmt;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::service::RefusalReason;

/// The carrier label: `http` (chunked NDJSON) or `ws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    Http,
    Ws,
}

impl Carrier {
    fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Ws => "ws",
        }
    }
}

/// Why a stream connection closed (the `cause` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseCause {
    /// The session's stream ended (its `final` was written).
    Finished,
    /// The client went away (closed, reset, or dropped the response).
    Client,
    /// A newer connection resumed the session.
    Superseded,
    /// A timeout: no pong, a WebSocket message not finished in time.
    Timeout,
    /// The server is shutting down.
    Shutdown,
    /// The session layer refused to go on, or an event could not be written.
    Error,
}

impl CloseCause {
    const ALL: [Self; 6] = [
        Self::Finished,
        Self::Client,
        Self::Superseded,
        Self::Timeout,
        Self::Shutdown,
        Self::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Client => "client",
            Self::Superseded => "superseded",
            Self::Timeout => "timeout",
            Self::Shutdown => "shutdown",
            Self::Error => "error",
        }
    }
}

/// The transport's metrics (see the [module docs](self)).
#[derive(Clone)]
pub struct TransportMetrics {
    streams: IntGaugeVec,
    streams_opened: IntCounterVec,
    streams_closed: IntCounterVec,
    events_written: IntCounterVec,
    bytes_written: IntCounterVec,
    messages_received: IntCounterVec,
    refusals: IntCounterVec,
    resumes: IntCounterVec,
    connections_refused: IntCounter,
    connections: IntGauge,
}

impl fmt::Debug for TransportMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportMetrics")
            .field("connections", &self.connections.get())
            .finish_non_exhaustive()
    }
}

impl Default for TransportMetrics {
    /// Metrics in no registry: counted, never served.
    fn default() -> Self {
        Self::new()
    }
}

impl TransportMetrics {
    /// Metrics in no registry yet ([`register`](Self::register) puts them in one).
    ///
    /// # Panics
    ///
    /// Never in practice: the names, help texts and labels are constants that the crate's
    /// tests build (a metric definition is refused only for an invalid name or label).
    pub fn new() -> Self {
        let counters = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition")
        };
        Self {
            streams: IntGaugeVec::new(
                Opts::new(
                    "streams",
                    "Stream connections open now (HTTP stream responses and WebSockets).",
                ),
                &["carrier", "encrypted"],
            )
            .expect("a valid metric definition"),
            streams_opened: counters(
                "streams_opened_total",
                "Stream connections opened (a create or a resume that was served).",
                &["carrier", "encrypted"],
            ),
            streams_closed: counters(
                "streams_closed_total",
                "Stream connections closed, by cause: finished, client, superseded, timeout, shutdown, error.",
                &["carrier", "cause"],
            ),
            events_written: counters(
                "events_written_total",
                "Events written to stream connections (each connection counts its own).",
                &["carrier"],
            ),
            bytes_written: counters(
                "written_bytes_total",
                "Bytes of event and control lines written to stream connections.",
                &["carrier"],
            ),
            messages_received: counters(
                "client_messages_received_total",
                "Client lines received: runtime channel messages and acknowledgements.",
                &["carrier"],
            ),
            refusals: counters(
                "refusals_total",
                "Requests refused, by route and by the refusal reason of the network contract.",
                &["route", "reason"],
            ),
            resumes: counters(
                "resumes_total",
                "Resume requests, by outcome: ok, or the refusal reason.",
                &["carrier", "outcome"],
            ),
            connections_refused: IntCounter::new(
                "connections_refused_total",
                "TCP connections answered 503 at once: the connection cap (and its reserve) or the per-address cap was full.",
            )
            .expect("a valid metric definition"),
            connections: IntGauge::new(
                "connections",
                "TCP connections open now (every route, streams included).",
            )
            .expect("a valid metric definition"),
        }
        .with_every_series()
    }

    /// Makes every series of a fixed label set exist from the start (at 0), so a scrape
    /// shows each family and a `rate()` over it is defined before the first event.
    fn with_every_series(self) -> Self {
        for carrier in [Carrier::Http, Carrier::Ws] {
            let c = carrier.label();
            for encrypted in ["true", "false"] {
                self.streams.with_label_values(&[c, encrypted]);
                self.streams_opened.with_label_values(&[c, encrypted]);
            }
            for cause in CloseCause::ALL {
                self.streams_closed.with_label_values(&[c, cause.label()]);
            }
            self.events_written.with_label_values(&[c]);
            self.bytes_written.with_label_values(&[c]);
            self.messages_received.with_label_values(&[c]);
            self.resumes.with_label_values(&[c, "ok"]);
        }
        self
    }

    /// Registers every metric in `registry` (names prefixed as the registry says, e.g.
    /// `enclave_`). Fails if one of the names is taken there.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.streams.clone()))?;
        registry.register(Box::new(self.streams_opened.clone()))?;
        registry.register(Box::new(self.streams_closed.clone()))?;
        registry.register(Box::new(self.events_written.clone()))?;
        registry.register(Box::new(self.bytes_written.clone()))?;
        registry.register(Box::new(self.messages_received.clone()))?;
        registry.register(Box::new(self.refusals.clone()))?;
        registry.register(Box::new(self.resumes.clone()))?;
        registry.register(Box::new(self.connections_refused.clone()))?;
        registry.register(Box::new(self.connections.clone()))?;
        Ok(())
    }

    /// A stream connection opened: counted until the returned guard is closed or dropped.
    pub(crate) fn stream(&self, carrier: Carrier, encrypted: bool) -> StreamMetrics {
        let encrypted = if encrypted { "true" } else { "false" };
        self.streams_opened
            .with_label_values(&[carrier.label(), encrypted])
            .inc();
        let open = self
            .streams
            .with_label_values(&[carrier.label(), encrypted]);
        open.inc();
        StreamMetrics {
            metrics: self.clone(),
            carrier,
            open,
            events: self.events_written.with_label_values(&[carrier.label()]),
            bytes: self.bytes_written.with_label_values(&[carrier.label()]),
            closed: None,
        }
    }

    /// `lines` client lines received on `carrier`.
    pub(crate) fn messages_received(&self, carrier: Carrier, lines: u64) {
        self.messages_received
            .with_label_values(&[carrier.label()])
            .inc_by(lines);
    }

    /// A request to `route` refused for `reason`.
    pub(crate) fn refused(&self, route: &str, reason: RefusalReason) {
        self.refusals
            .with_label_values(&[route, reason.as_str()])
            .inc();
    }

    /// A resume on `carrier`: served (`None`) or refused for the reason given.
    pub(crate) fn resume(&self, carrier: Carrier, refused: Option<RefusalReason>) {
        let outcome = refused.map_or("ok", RefusalReason::as_str);
        self.resumes
            .with_label_values(&[carrier.label(), outcome])
            .inc();
    }

    /// A TCP connection refused at once by a connection cap.
    pub(crate) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A TCP connection admitted: counted until the guard drops.
    pub(crate) fn connection(&self) -> ConnectionCount {
        self.connections.inc();
        ConnectionCount {
            gauge: self.connections.clone(),
        }
    }
}

/// One open TCP connection in [`TransportMetrics`]'s gauge; leaves it when dropped.
pub(crate) struct ConnectionCount {
    gauge: IntGauge,
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// One stream connection's metrics: its counters resolved once, so a write adds to them
/// without a label lookup. Leaves the open-streams gauge when dropped, counting its close
/// cause ([`close`](Self::close); a guard dropped without one closed because the client went
/// away).
pub(crate) struct StreamMetrics {
    metrics: TransportMetrics,
    carrier: Carrier,
    open: IntGauge,
    events: IntCounter,
    bytes: IntCounter,
    closed: Option<CloseCause>,
}

impl StreamMetrics {
    /// `events` events in `bytes` bytes (their lines and any control lines) were written.
    pub(crate) fn written(&self, events: u64, bytes: u64) {
        if events > 0 {
            self.events.inc_by(events);
        }
        self.bytes.inc_by(bytes);
    }

    /// Why the stream ends; the first cause given counts.
    pub(crate) fn close(&mut self, cause: CloseCause) {
        self.closed.get_or_insert(cause);
    }
}

impl Drop for StreamMetrics {
    fn drop(&mut self) {
        self.open.dec();
        let cause = self.closed.unwrap_or(CloseCause::Client);
        self.metrics
            .streams_closed
            .with_label_values(&[self.carrier.label(), cause.label()])
            .inc();
    }
}

/// The Prometheus text exposition (format 0.0.4) of everything in `registry`.
pub fn encode(registry: &Registry) -> Result<String, prometheus::Error> {
    let mut out = String::new();
    prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out)?;
    Ok(out)
}

/// The `Content-Type` of [`encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Serves `registry` on `GET /metrics` (and nothing else) on `listener` until `shutdown`
/// resolves: the separate port a deployment scrapes (`enclave serve --metrics-listen`),
/// reachable only where the operator binds it, so it has no authorization hook.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: std::sync::Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = axum::Router::new().route(
        crate::wire::PATH_METRICS,
        axum::routing::get(move || {
            let registry = std::sync::Arc::clone(&registry);
            async move { exposition(&registry) }
        }),
    );
    axum::serve(listener, router.into_make_service())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The answer of `GET /metrics`: the text, or `500` if it cannot be encoded.
pub(crate) fn exposition(registry: &Registry) -> axum::response::Response {
    use axum::response::IntoResponse as _;

    match encode(registry) {
        Ok(text) => ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::error!("cannot encode the metrics: {err}");
            (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_register_and_encode_with_their_names_and_no_session_labels() {
        let registry = Registry::new_custom(Some("enclave".to_owned()), None).unwrap();
        let metrics = TransportMetrics::new();
        metrics.register(&registry).unwrap();
        // A second registration of the same names is refused, not silently doubled.
        assert!(TransportMetrics::new().register(&registry).is_err());
        {
            let mut stream = metrics.stream(Carrier::Ws, true);
            stream.written(3, 300);
            stream.close(CloseCause::Superseded);
            stream.close(CloseCause::Error);
        }
        drop(metrics.stream(Carrier::Http, false));
        metrics.refused(crate::wire::PATH_STREAM, RefusalReason::TooFarBehind);
        metrics.resume(Carrier::Http, None);
        let text = encode(&registry).unwrap();
        for line in [
            "enclave_events_written_total{carrier=\"ws\"} 3",
            "enclave_written_bytes_total{carrier=\"ws\"} 300",
            // The first cause counts; a stream dropped without one: the client left.
            "enclave_streams_closed_total{carrier=\"ws\",cause=\"superseded\"} 1",
            "enclave_streams_closed_total{carrier=\"http\",cause=\"client\"} 1",
            "enclave_streams{carrier=\"ws\",encrypted=\"true\"} 0",
            "enclave_resumes_total{carrier=\"http\",outcome=\"ok\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let refused = format!(
            "enclave_refusals_total{{reason=\"too_far_behind\",route=\"{}\"}} 1",
            crate::wire::PATH_STREAM
        );
        assert!(text.contains(&refused), "{refused} missing from\n{text}");
        assert!(!text.contains("=\"s_"), "no session id in a label: {text}");
    }
}
