//! The client side on tokio: send the bytes of a request, read the answer to the end of the
//! connection (the request says `Connection: close`), within a time limit.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{request, Response, MAX_BODY, MAX_HEAD};

/// How long [`exchange`] and [`status`] wait for the whole answer.
pub const TIMEOUT: Duration = Duration::from_mins(1);

/// Sends `request` (its bytes, as [`super::request`] builds them) on a fresh connection to
/// `addr` and reads the answer until the server closes the connection, within [`TIMEOUT`].
///
/// # Panics
/// If the connection fails, the answer does not end in time, is larger than the bounds, or
/// is not HTTP.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let read = async {
        let mut socket = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
        socket
            .write_all(request)
            .await
            .unwrap_or_else(|err| panic!("write the request to {addr}: {err}"));
        let mut raw = Vec::new();
        let limit = u64::try_from(MAX_HEAD + MAX_BODY).unwrap_or(u64::MAX);
        // A reset after the answer (the server closing with unread bytes) ends it too.
        let _ = (&mut socket).take(limit).read_to_end(&mut raw).await;
        raw
    };
    let raw = tokio::time::timeout(TIMEOUT, read)
        .await
        .unwrap_or_else(|_| panic!("no whole answer from {addr} within {TIMEOUT:?}"));
    Response::parse(&raw)
}

/// `method target` on `addr` with an empty body, the `headers` and `Connection: close`:
/// the status code.
///
/// # Panics
/// As [`exchange`].
pub async fn status(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> u16 {
    let mut all = headers.to_vec();
    all.push(("Connection", "close"));
    let host = addr.to_string();
    exchange(addr, &request(method, target, &host, &all, b""))
        .await
        .status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::server::{read_request, write_response};

    #[tokio::test]
    async fn a_status_is_read_off_a_fake_that_answers_and_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let request = read_request(&mut socket).await.expect("a request");
            write_response(
                &mut socket,
                204,
                "No Content",
                &[("Connection", "close")],
                b"",
            )
            .await
            .unwrap();
            request
        });
        assert_eq!(status(addr, "DELETE", "/s/1", &[("X-T", "t")]).await, 204);
        let request = server.await.unwrap();
        assert_eq!(
            (request.method.as_str(), request.header("x-t")),
            ("DELETE", Some("t"))
        );
    }
}
