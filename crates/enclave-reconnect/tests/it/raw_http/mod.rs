//! A minimal HTTP/1.1 side for the reconnecting client's fake servers: reading one request
//! head and body (bounded), finding a header, and the NDJSON lines of a plain test session.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A request line, its headers (names lowercased) and its body.
pub(crate) type Head = (String, Vec<(String, String)>, Vec<u8>);

pub(crate) async fn read_head(socket: &mut TcpStream) -> Option<Head> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length.min(1024 * 1024) {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((request_line, headers, body))
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn line(session: &str, seq: u64, total: u64) -> String {
    let (kind, payload) = if seq == 1 {
        (
            "session_init",
            format!(
                r#"{{"cancelUrl":"/sessions/{session}/cancel","expiresAt":"2030-01-01T00:00:00.000Z","encryption":{{"enabled":false}}}}"#
            ),
        )
    } else if seq == total {
        ("final", r#"{"ok":true}"#.to_owned())
    } else {
        ("stdout", format!(r#"{{"chunk":"event {seq}"}}"#))
    };
    format!(
        r#"{{"protocolVersion":2,"sessionId":"{session}","seq":{seq},"type":"{kind}","payload":{payload}}}"#
    ) + "\n"
}
