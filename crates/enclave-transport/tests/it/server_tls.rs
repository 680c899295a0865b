//! https and wss: the server's TLS configuration from PEM files, served over loopback and
//! reached with a rustls client (ring provider) that trusts the test certificate.
//!
//! `data/test-cert.pem` / `data/test-key.pem`: a self-signed P-256 certificate for
//! `localhost` and `127.0.0.1`, valid for 100 years, made for these tests only.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Running, WAIT};
use enclave_transport::{tls_config_from_pem, ServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn connector() -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(data("test-cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn https_serves_the_routes_and_a_stream() {
    let tls = tls_config_from_pem(&data("test-cert.pem"), &data("test-key.pem")).unwrap();
    let server = Running::start(2, ServerConfig::default().with_tls(tls)).await;
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = tokio::time::timeout(WAIT, connector().connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    stream
        .write_all(b"POST /sessions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    // A TLS peer may close without close_notify once the body ended; what arrived counts.
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains(r#""type":"session_init""#), "{response}");
    assert!(response.contains(r#""type":"final""#), "{response}");

    // Plain HTTP to a TLS port costs only that connection.
    let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut sink))
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&sink).contains("200 OK"));
    server.stop().await;
}

#[test]
fn pem_errors_name_the_file() {
    let missing = data("missing.pem");
    let err = tls_config_from_pem(&missing, &data("test-key.pem")).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    // A certificate file given as the key: no private key in it.
    let err = tls_config_from_pem(&data("test-cert.pem"), &data("test-cert.pem")).unwrap_err();
    assert!(err.to_string().contains("test-cert.pem"), "{err}");
}

/// Our own client over https and wss, trusting the test certificate through `with_ca_file`,
/// encryption required on top of TLS: every event arrives, in order, to `final`.
#[tokio::test]
async fn our_client_reads_a_stream_over_https_and_wss() {
    use enclave_transport::client::{connect, ClientConfig, NewSession, Open, Received};
    use enclave_types::{EncryptionMode, EventPayload};

    let tls = tls_config_from_pem(&data("test-cert.pem"), &data("test-key.pem")).unwrap();
    let server = Running::start(5, ServerConfig::default().with_tls(tls)).await;
    let config = ClientConfig::new()
        .with_ca_file(&data("test-cert.pem"))
        .unwrap()
        .with_encryption(EncryptionMode::Required);
    for scheme in ["https", "wss"] {
        let url = format!("{scheme}://localhost:{}", server.addr.port());
        let mut connection =
            tokio::time::timeout(WAIT, connect(&url, Open::New(NewSession::new()), &config))
                .await
                .unwrap()
                .unwrap_or_else(|err| panic!("{url}: {err}"));
        let mut seqs = Vec::new();
        loop {
            let item = tokio::time::timeout(WAIT, connection.next())
                .await
                .unwrap_or_else(|_| panic!("{url}: no event in time"));
            match item {
                Some(Ok(Received::Event {
                    event, encrypted, ..
                })) => {
                    assert!(encrypted || event.seq == 1, "{url}: seq {}", event.seq);
                    seqs.push(event.seq);
                    if matches!(event.payload, EventPayload::Final(_)) {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{url}");
        assert!(seqs.len() >= 7, "{url}: {seqs:?}");
        assert!(connection.encrypted(), "{url}");
        connection.close().await;
    }
    server.stop().await;
}
