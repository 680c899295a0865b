//! The client side on std's blocking sockets, for tests without a runtime: send the bytes of
//! a request, read the answer to the end of the connection or only its head, every read
//! under a timeout.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use super::{head_end, request, Response, MAX_BODY, MAX_HEAD};

/// The read timeout of every socket opened here.
pub const TIMEOUT: Duration = Duration::from_mins(1);

/// A connection to `authority` (`host:port`) with [`TIMEOUT`] on its reads.
///
/// # Panics
/// If the connection fails.
pub fn connect(authority: &str) -> TcpStream {
    let socket =
        TcpStream::connect(authority).unwrap_or_else(|err| panic!("connect to {authority}: {err}"));
    socket
        .set_read_timeout(Some(TIMEOUT))
        .unwrap_or_else(|err| panic!("a read timeout on {authority}: {err}"));
    socket
}

/// Sends `request` (its bytes, as [`super::request`] builds them) on a fresh connection to
/// `authority` and reads the answer until the server closes the connection (or a read times
/// out: what came by then is the answer).
///
/// # Panics
/// If the connection or the write fails, or what came is not HTTP.
pub fn exchange(authority: &str, request: &[u8]) -> Response {
    let mut socket = connect(authority);
    socket
        .write_all(request)
        .unwrap_or_else(|err| panic!("write the request to {authority}: {err}"));
    let mut raw = Vec::new();
    let limit = u64::try_from(MAX_HEAD + MAX_BODY).unwrap_or(u64::MAX);
    // A reset after the answer (the server closing with unread bytes) ends it too.
    let _ = (&mut socket).take(limit).read_to_end(&mut raw);
    Response::parse(&raw)
}

/// `method target` on `authority` with an empty body, the `headers` and
/// `Connection: close`: the status code.
///
/// # Panics
/// As [`exchange`].
pub fn status(authority: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> u16 {
    let mut all = headers.to_vec();
    all.push(("Connection", "close"));
    exchange(authority, &request(method, target, authority, &all, b"")).status
}

/// Reads a response head off `socket`, a byte at a time so that nothing of the body is
/// consumed: the head up to and including its blank line, or what came before the
/// connection ended (or a read timed out, or [`super::MAX_HEAD`] bytes came).
pub fn read_head(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while head_end(&head).is_none() && head.len() < MAX_HEAD {
        match socket.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_read_without_the_body_and_a_whole_answer_to_its_end() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut socket, _) = listener.accept().unwrap();
                let mut seen = Vec::new();
                let mut buf = [0_u8; 1024];
                while head_end(&seen).is_none() {
                    let n = socket.read(&mut buf).unwrap();
                    seen.extend_from_slice(&buf[..n]);
                }
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody")
                    .unwrap();
            }
        });
        let mut socket = connect(&authority);
        socket
            .write_all(&request("GET", "/", &authority, &[], b""))
            .unwrap();
        assert_eq!(
            read_head(&mut socket),
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"
        );
        let mut body = [0_u8; 4];
        socket.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"body");
        let response = exchange(&authority, &request("GET", "/", &authority, &[], b""));
        assert_eq!((response.status, response.text().as_str()), (200, "body"));
        server.join().unwrap();
    }
}
