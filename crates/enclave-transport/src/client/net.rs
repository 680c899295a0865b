//! Where a client connects: the base URL's scheme, host and port, and a TCP (or TLS over
//! TCP) stream to it, dialed within the connect timeout.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use enclave_types::{excerpt, MESSAGE_EXCERPT_CHARS};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::Error;

/// A byte stream to the server: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed [`Io`], so each carrier has one stream type whatever the scheme.
pub(crate) type BoxIo = Box<dyn Io>;

/// The carrier a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// HTTP/1.1 chunked NDJSON.
    Http,
    /// WebSocket.
    Ws,
}

/// A parsed base URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) carrier: Carrier,
    pub(crate) tls: bool,
    /// The host without IPv6 brackets (for DNS and the TLS server name).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `host:port` as written in URLs and the `Host` header (brackets kept).
    pub(crate) authority: String,
    /// A path prefix before `/sessions` (empty, or `/prefix` without a trailing `/`).
    pub(crate) prefix: String,
}

impl Target {
    /// Reads `http(s)://HOST:PORT[/prefix]` or `ws(s)://HOST:PORT[/prefix]`.
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: excerpt(url, MESSAGE_EXCERPT_CHARS),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        let (carrier, tls, default_port) = match uri.scheme_str() {
            Some("http") => (Carrier::Http, false, 80),
            Some("https") => (Carrier::Http, true, 443),
            Some("ws") => (Carrier::Ws, false, 80),
            Some("wss") => (Carrier::Ws, true, 443),
            Some(_) => return Err(invalid("the scheme must be http, https, ws or wss")),
            None => return Err(invalid("no scheme (http://, https://, ws:// or wss://)")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("credentials in the URL are not supported"));
        }
        let bracketed = authority.host();
        let host = bracketed
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = authority.port_u16().unwrap_or(default_port);
        if uri.query().is_some() {
            return Err(invalid("a base URL has no query"));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            carrier,
            tls,
            authority: format!("{bracketed}:{port}"),
            host,
            port,
            prefix,
        })
    }

    /// The path of a route under the prefix.
    pub(crate) fn path(&self, route: &str) -> String {
        format!("{}{route}", self.prefix)
    }
}

/// Builds a rustls client configuration (ring provider) that trusts the certificates of a
/// PEM file.
pub fn tls_config_from_ca_file(path: &Path) -> Result<Arc<rustls::ClientConfig>, Error> {
    let tls = |reason: String| Error::Tls { reason };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| tls(format!("cannot read CA file {}: {err}", path.display())))?;
    for cert in certs {
        let cert =
            cert.map_err(|err| tls(format!("bad PEM in CA file {}: {err}", path.display())))?;
        roots
            .add(cert)
            .map_err(|err| tls(format!("bad certificate in {}: {err}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(tls(format!(
            "CA file {} holds no certificate",
            path.display()
        )));
    }
    tls_config_with_roots(roots)
}

/// A rustls client configuration on the ring provider with `roots` as its trust store.
pub(crate) fn tls_config_with_roots(
    roots: rustls::RootCertStore,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Tls {
            reason: err.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Dials `target` (TCP, then TLS when the scheme says so) within `timeout`.
pub(crate) async fn dial(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<BoxIo, Error> {
    let addr = target.authority.clone();
    let connect = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|source| Error::io(format!("connect to {addr}"), source))?;
        // Lines are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        if !target.tls {
            return Ok(Box::new(tcp) as BoxIo);
        }
        let config = tls.ok_or_else(|| Error::Tls {
            reason: format!(
                "{addr} needs TLS and no trust store is configured (give a CA file or a rustls configuration)"
            ),
        })?;
        let name = ServerName::try_from(target.host.clone()).map_err(|err| Error::Tls {
            reason: format!("{:?} is not a valid server name: {err}", target.host),
        })?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
            .map_err(|source| Error::io(format!("TLS handshake with {addr}"), source))?;
        Ok(Box::new(stream) as BoxIo)
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| Error::Timeout {
            what: "connect to",
            addr: target.authority.clone(),
            after: timeout,
        })?
}
