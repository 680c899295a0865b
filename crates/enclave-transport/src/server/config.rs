//! What a deployment can set on the server: limits, CORS origins, the session list, the
//! encryption policy, the server's identity key, an authorization hook, TLS and a directory
//! of static files.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use enclave_crypto::SigningKey;
use enclave_types::{EncryptionMode, SessionId};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::TransportMetrics;
use crate::service::Refusal;
use crate::wire::DEFAULT_MAX_BODY_BYTES;

/// The deployment's authorization hook: a function of the request's headers that refuses
/// (with a [`Refusal`], usually [`RefusalReason::Unauthorized`](crate::RefusalReason)) or
/// lets the request through. It runs on every route except CORS preflights (`OPTIONS`) and
/// `GET /health`, the WebSocket upgrade included.
pub type AuthorizationHook =
    Arc<dyn Fn(&http::HeaderMap) -> Result<(), Refusal> + Send + Sync + 'static>;

/// The deployment's session-access hook: a function of a request's headers and the session
/// it names that, by returning `true`, lets the request read or end that session
/// (`GET /sessions/:id`, `DELETE /sessions/:id`, `POST /sessions/:id/cancel`) without the
/// session's resume token, e.g. for an operator's credential. `false` leaves the decision
/// to the token (see [`ServerConfig::with_session_access`]).
pub type SessionAccessHook =
    Arc<dyn Fn(&http::HeaderMap, &SessionId) -> bool + Send + Sync + 'static>;

/// Server settings, built in the builder style from [`ServerConfig::default`].
///
/// ```
/// use enclave_transport::{EncryptionMode, ServerConfig};
///
/// let config = ServerConfig::default()
///     .with_max_body_bytes(64 * 1024)
///     .with_allowed_origins(["https://app.example"])
///     .with_session_list(false)
///     .with_encryption(EncryptionMode::Required)
///     .with_max_connections(512);
/// assert_eq!(config.max_body_bytes(), 64 * 1024);
/// ```
///
/// A server identity key (see [`with_signing_key`](Self::with_signing_key)) is loaded with
/// `enclave_crypto::SigningKey`: from a PKCS#8 PEM file
/// ([`SigningKey::from_pkcs8_pem_file`], as `enclave keygen` or `openssl genpkey -algorithm
/// EC -pkeyopt ec_paramgen_curve:P-256` write it), from PEM text
/// ([`SigningKey::from_pkcs8_pem`]) or DER ([`SigningKey::from_pkcs8_der`]); clients pin
/// [`SigningKey::verifying_key`] (its SPKI PEM: `VerifyingKey::to_spki_pem`).
///
/// ```no_run
/// use std::sync::Arc;
/// use enclave_crypto::SigningKey;
/// use enclave_transport::{EncryptionMode, ServerConfig};
///
/// # fn load() -> Result<(), enclave_crypto::Error> {
/// let key = SigningKey::from_pkcs8_pem_file("server-key.pem".as_ref())?;
/// println!("pin this:\n{}", key.verifying_key().to_spki_pem());
/// let config = ServerConfig::default()
///     .with_encryption(EncryptionMode::Required)
///     .with_signing_key(Arc::new(key));
/// assert!(config.signing_key().is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    pub(crate) max_body_bytes: usize,
    pub(crate) allowed_origins: Option<Vec<String>>,
    pub(crate) session_list: bool,
    pub(crate) encryption: EncryptionMode,
    pub(crate) signing_key: Option<Arc<SigningKey>>,
    pub(crate) authorize: Option<AuthorizationHook>,
    pub(crate) session_access: Option<SessionAccessHook>,
    pub(crate) max_line_length: usize,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) max_connections: usize,
    pub(crate) shutdown_grace: Duration,
    pub(crate) ws_open_timeout: Duration,
    pub(crate) ws_ping_interval: Duration,
    pub(crate) tls_handshake_timeout: Duration,
    pub(crate) static_dir: Option<PathBuf>,
    pub(crate) body_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_connections_per_peer: usize,
    pub(crate) connection_reserve: usize,
    pub(crate) ws_pong_timeout: Duration,
    pub(crate) ws_message_timeout: Duration,
    pub(crate) metrics: TransportMetrics,
    /// What `GET /metrics` serves; none: the route is not there.
    pub(crate) metrics_registry: Option<Arc<prometheus::Registry>>,
}

/// The default cap on concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The default cap on concurrent connections from one peer IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 256;

/// The default number of connections accepted past the cap for everything but new sessions.
pub const DEFAULT_CONNECTION_RESERVE: usize = 64;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allowed_origins: None,
            session_list: false,
            encryption: EncryptionMode::Optional,
            signing_key: None,
            authorize: None,
            session_access: None,
            max_line_length: enclave_ndjson::DEFAULT_MAX_LINE_LENGTH,
            tls: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: Duration::from_secs(10),
            ws_open_timeout: Duration::from_secs(10),
            ws_ping_interval: Duration::from_secs(15),
            tls_handshake_timeout: Duration::from_secs(10),
            static_dir: None,
            body_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            connection_reserve: DEFAULT_CONNECTION_RESERVE,
            ws_pong_timeout: Duration::from_secs(10),
            ws_message_timeout: Duration::from_secs(10),
            metrics: TransportMetrics::new(),
            metrics_registry: None,
        }
    }
}

impl ServerConfig {
    /// The largest request body accepted (`POST /sessions`, messages, cancel); default
    /// 1 MiB. A larger body is answered `413` with
    /// `{"code":"PAYLOAD_TOO_LARGE","message":…,"reason":"invalid_request"}`: the status and
    /// code say what happened, the `reason` is the refusal reason a client already knows (a
    /// request it must not retry as is).
    #[must_use]
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The body limit in force.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Origins allowed cross-origin. By default any (`Access-Control-Allow-Origin: *`); with
    /// a list, a listed request `Origin` is echoed back with `Vary: Origin`, and any other
    /// gets no `Access-Control-Allow-Origin` at all.
    #[must_use]
    pub fn with_allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Allows every origin (`*`), the default.
    #[must_use]
    pub fn with_any_origin(mut self) -> Self {
        self.allowed_origins = None;
        self
    }

    /// Whether `GET /sessions` is served (default `false`: `enclave serve
    /// --enable-session-list` turns it on); when off it answers `404 NOT_FOUND`, as a route
    /// that does not exist. The list names every session to whoever passes the
    /// [`authorize`](Self::with_authorize) hook, so turn it on only where that is acceptable: an
    /// id alone still opens nothing unless tokenless resume is allowed.
    #[must_use]
    pub fn with_session_list(mut self, enabled: bool) -> Self {
        self.session_list = enabled;
        self
    }

    /// Counts into `metrics` (registered by the caller in `registry`, beside the session
    /// layer's and the store's) and serves `registry` on `GET /metrics` in the Prometheus
    /// text format, behind the authorization hook like every route but the probes. Without
    /// this the server still counts (into metrics nobody reads) and has no `/metrics`.
    #[must_use]
    pub fn with_metrics(
        mut self,
        metrics: TransportMetrics,
        registry: Arc<prometheus::Registry>,
    ) -> Self {
        self.metrics = metrics;
        self.metrics_registry = Some(registry);
        self
    }

    /// The transport's metrics (see [`with_metrics`](Self::with_metrics)).
    pub fn metrics(&self) -> &TransportMetrics {
        &self.metrics
    }

    /// The encryption policy (`enclave serve --encryption`), default `Optional`:
    /// - `Disabled`: never encrypt; a `ClientHello` is ignored, and a client whose mode is
    ///   `required` is refused with `ENCRYPTION_REQUIRED`.
    /// - `Optional`: encrypt when the client offers a usable `ClientHello`; plaintext
    ///   otherwise.
    /// - `Required`: refuse, before any event, every connection without a usable
    ///   `ClientHello` (`400 ENCRYPTION_REQUIRED`, WebSocket close 4400).
    #[must_use]
    pub fn with_encryption(mut self, policy: EncryptionMode) -> Self {
        self.encryption = policy;
        self
    }

    /// The policy in force.
    pub fn encryption(&self) -> EncryptionMode {
        self.encryption
    }

    /// The server's long-term identity key: with it, every encrypted connection's
    /// `ServerHello` carries `signatureB64`, so a client that pins
    /// [`SigningKey::verifying_key`] detects a man in the middle, a downgrade or a redirect
    /// before it accepts any envelope (`docs/PROTOCOL.md`, "Server identity"). Plaintext
    /// connections carry no hello and nothing is signed. Default: none (anonymous ECDH).
    ///
    /// What is signed, per route (the transcript of [`enclave_crypto::HelloTranscript`]):
    ///
    /// | route | where the hello travels | `mode` in the transcript | `sessionInitDigest` |
    /// |---|---|---|---|
    /// | `POST /sessions` | the plaintext `session_init` (first line) | `encryption.mode` of the request body | the `session_init` event ([`SessionInitDigest::of_event`](enclave_crypto::SessionInitDigest::of_event)) |
    /// | `GET /sessions/:id/stream` (resume) | `X-Enclave-Server-Hello` | always `required` | none ([`SessionInitDigest::none`](enclave_crypto::SessionInitDigest::none)) |
    /// | WebSocket `open` without `resume` (create) | `opened.serverHello` | `encryption.mode` of the `open` message | none |
    /// | WebSocket `open` with `resume` | `opened.serverHello` | always `required` | none |
    ///
    /// A resume of an encrypted session always requires encryption (the session layer
    /// refuses a plaintext resume of an encrypted session), and the HTTP resume request has
    /// no mode field, so every resume binds `required`, on both carriers; a client rebuilding
    /// the transcript uses `required` for any resume. The session id is the session's (on a
    /// create without one, the id the server generated, which the client learns from
    /// `X-Session-ID`, `session_init` or `opened`); the `ClientHello` is the one received.
    ///
    /// On `POST /sessions` the server signs a copy of the `session_init` event as it writes
    /// the line; the session layer keeps its unsigned copy (a later replay is sealed and
    /// carries no signature).
    #[must_use]
    pub fn with_signing_key(mut self, key: Arc<SigningKey>) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// The identity key in force, if any.
    pub fn signing_key(&self) -> Option<&Arc<SigningKey>> {
        self.signing_key.as_ref()
    }

    /// Installs the authorization hook, run on every route except `OPTIONS` and
    /// `GET /health`. A refusal is answered with its status and body (on a WebSocket
    /// upgrade too: the refusal comes before the upgrade).
    #[must_use]
    pub fn with_authorize<F>(mut self, hook: F) -> Self
    where
        F: Fn(&http::HeaderMap) -> Result<(), Refusal> + Send + Sync + 'static,
    {
        self.authorize = Some(Arc::new(hook));
        self
    }

    /// Installs the session-access hook: a request it accepts (`true`) may read or end the
    /// session it names (`GET /sessions/:id`, `DELETE /sessions/:id`,
    /// `POST /sessions/:id/cancel`) without that session's resume token. Without the hook,
    /// or when it answers `false`, these routes need the session's resume token in
    /// `X-Enclave-Resume-Token`, checked by the session layer
    /// ([`SessionService::check_access`](crate::SessionService::check_access)): `401
    /// RESUME_REFUSED` when missing, `403` when wrong, whether the session exists or not.
    /// The hook runs after [`authorize`](Self::with_authorize) and after the id was found well
    /// formed; it never sees a token the session layer checks.
    #[must_use]
    pub fn with_session_access<F>(mut self, hook: F) -> Self
    where
        F: Fn(&http::HeaderMap, &SessionId) -> bool + Send + Sync + 'static,
    {
        self.session_access = Some(Arc::new(hook));
        self
    }

    /// The longest NDJSON line read or written, without its `\n` (default
    /// [`enclave_ndjson::DEFAULT_MAX_LINE_LENGTH`]). A WebSocket message (and frame) from a
    /// client is bounded by the smaller of this and
    /// [`max_body_bytes`](Self::max_body_bytes), as an HTTP body is; a larger one, finished
    /// or not, closes the connection with 1009.
    #[must_use]
    pub fn with_max_line_length(mut self, bytes: usize) -> Self {
        self.max_line_length = bytes;
        self
    }

    /// Serves https and wss with this rustls configuration (see [`tls_config_from_pem`]).
    #[must_use]
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// The cap on concurrent connections (default [`DEFAULT_MAX_CONNECTIONS`]); past it and
    /// its [`connection_reserve`](Self::with_connection_reserve), a new connection is answered
    /// `503` (with `Retry-After`) and closed at once. WebSocket sessions count until they
    /// close.
    #[must_use]
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How long a graceful shutdown waits for connections to finish once their streams were
    /// ended (default 10 s); connections still open then are dropped.
    #[must_use]
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long a WebSocket client has to send its `open` message (default 10 s).
    #[must_use]
    pub fn with_ws_open_timeout(mut self, timeout: Duration) -> Self {
        self.ws_open_timeout = timeout;
        self
    }

    /// How often the server pings an open WebSocket (default 15 s).
    #[must_use]
    pub fn with_ws_ping_interval(mut self, interval: Duration) -> Self {
        self.ws_ping_interval = interval;
        self
    }

    /// Serves the files of `dir` (`GET` and `HEAD`) on every path no route claims, so a
    /// browser page can be loaded from the stream server itself; `/` and a directory's `/`
    /// serve its `index.html`. The protocol routes keep priority, CORS and the authorization
    /// hook apply as on every route, and nothing outside `dir` is reachable: not through `..`
    /// (raw or percent-encoded), hidden (dot) names or symbolic links that lead out of it. A
    /// miss is `404 NOT_FOUND`. Default: none (every other path is `404`).
    #[must_use]
    pub fn with_static_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.static_dir = Some(dir.into());
        self
    }

    /// How long a request body may take to arrive, from the end of the request head to the
    /// last byte of the body (default 30 s). A slower body is answered `408` with
    /// `{"code":"REQUEST_TIMEOUT","message":…,"reason":"invalid_request"}` and the connection
    /// is closed. A body costs the server its own bytes and no more, however it is cut into
    /// TCP segments.
    #[must_use]
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// How long a connection may take to send each request head, the first one included
    /// (default 10 s); a connection idle that long between requests is closed too.
    #[must_use]
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// The cap on concurrent connections from one IP address (default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_PEER`]); past it, a new connection from that address is
    /// answered `503` (with `Retry-After`) and closed at once, so one client cannot fill the
    /// server's cap. WebSockets count until they close.
    #[must_use]
    pub fn with_max_connections_per_peer(mut self, connections: usize) -> Self {
        self.max_connections_per_peer = connections.max(1);
        self
    }

    /// Connections accepted past [`max_connections`](Self::with_max_connections) (default
    /// [`DEFAULT_CONNECTION_RESERVE`]), so that `/health`, resumes, messages and lookups stay
    /// reachable when the cap is full: on a reserve connection, a new session (`POST
    /// /sessions`, a WebSocket `open` without `resume`) is refused `503 SERVICE_UNAVAILABLE`
    /// (WebSocket close 1013) with `Retry-After`. Past the reserve too, a connection is
    /// answered `503` at once and closed instead of waiting in the listen queue.
    #[must_use]
    pub fn with_connection_reserve(mut self, connections: usize) -> Self {
        self.connection_reserve = connections;
        self
    }

    /// How long after a ping a WebSocket peer has to be heard from (a pong or any message)
    /// before the server closes the connection with 1001 (default 10 s): a silent peer is
    /// closed at most [`ws_ping_interval`](Self::with_ws_ping_interval) + this after it went
    /// quiet.
    #[must_use]
    pub fn with_ws_pong_timeout(mut self, timeout: Duration) -> Self {
        self.ws_pong_timeout = timeout;
        self
    }

    /// How long a WebSocket client message may take from its first frame's header to its
    /// last frame's last byte (default 10 s; at least 1 ms): a message, fragmented or not,
    /// that is not finished by then closes the connection with 1008. Without it a peer that
    /// answers pings could hold an unfinished message (up to the message limit) forever.
    #[must_use]
    pub fn with_ws_message_timeout(mut self, timeout: Duration) -> Self {
        self.ws_message_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The directory of static files in force, if any.
    pub fn static_dir(&self) -> Option<&Path> {
        self.static_dir.as_deref()
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("allowed_origins", &self.allowed_origins)
            .field("session_list", &self.session_list)
            .field("encryption", &self.encryption)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|key| key.verifying_key()),
            )
            .field("authorize", &self.authorize.is_some())
            .field("session_access", &self.session_access.is_some())
            .field("max_line_length", &self.max_line_length)
            .field("tls", &self.tls.is_some())
            .field("max_connections", &self.max_connections)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("static_dir", &self.static_dir)
            .field("body_timeout", &self.body_timeout)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("connection_reserve", &self.connection_reserve)
            .field("ws_pong_timeout", &self.ws_pong_timeout)
            .field("ws_message_timeout", &self.ws_message_timeout)
            .field("metrics", &self.metrics_registry.is_some())
            .finish_non_exhaustive()
    }
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`) from a
/// PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
///
/// Errors name the file and what was wrong with it.
pub fn tls_config_from_pem(
    cert_file: &Path,
    key_file: &Path,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let invalid = |file: &Path, what: &dyn fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", file.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|err| invalid(cert_file, &err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(cert_file, &err))?;
    if certs.is_empty() {
        return Err(invalid(cert_file, &"no CERTIFICATE in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|err| invalid(key_file, &err))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| io::Error::other(format!("TLS protocol versions: {err}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| {
            invalid(
                key_file,
                &format_args!("does not match the certificate: {err}"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
