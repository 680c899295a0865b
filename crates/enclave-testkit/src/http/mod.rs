//! HTTP/1.1 by hand, for tests that must see or send the bytes themselves (a path an HTTP
//! client would normalize, a body read as it streams, a fake server that cuts a line in half):
//! building a request, parsing a request or response head, decoding a chunked body. The I/O
//! around them: [`client`] (tokio), [`blocking`] (std) and [`server`] (the fake servers' side).
//!
//! The parsers are strict enough for tests and no more: every read is bounded
//! ([`MAX_HEAD`], [`MAX_BODY`]), and what is not HTTP panics with the bytes in the message.

use std::fmt::Write as _;

pub mod blocking;
pub mod client;
pub mod server;

/// The longest head (request or status line and headers) read before giving up.
pub const MAX_HEAD: usize = 64 * 1024;

/// The longest body read before giving up.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Where the blank line that ends a head starts in `bytes`, if it came yet.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|window| window == b"\r\n\r\n")
}

/// The bytes of a request: `METHOD target HTTP/1.1`, `Host`, the `headers` in order, and a
/// `Content-Length` for `body` (also when it is empty), then the body.
///
/// Add `("Connection", "close")` to read the answer to its end.
pub fn request(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut bytes = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        let _ = write!(bytes, "{name}: {value}\r\n");
    }
    let _ = write!(bytes, "Content-Length: {}\r\n\r\n", body.len());
    let mut bytes = bytes.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `name: value` lines of a head (after its first line), names lowercased, values trimmed.
fn headers<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect()
}

/// The value of the header `name` (any case) among `headers` (as [`Request::headers`] and
/// [`Response::headers`] hold them).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// A request as a fake server read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request line as sent, `POST /sessions HTTP/1.1`.
    pub line: String,
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// The headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes of it).
    pub body: Vec<u8>,
}

impl Request {
    /// The value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Parses a head (without its blank line): `None` if it is not a request head.
    fn parse_head(head: &[u8]) -> Option<Self> {
        let head = std::str::from_utf8(head).ok()?;
        let mut lines = head.split("\r\n");
        let line = lines.next()?;
        let mut first = line.split(' ');
        let method = first.next()?.to_owned();
        let target = first.next()?.to_owned();
        Some(Self {
            line: line.to_owned(),
            method,
            target,
            headers: headers(lines),
            body: Vec::new(),
        })
    }

    /// The body length its `Content-Length` announces (0 without one).
    fn content_length(&self) -> Option<usize> {
        self.header("content-length")
            .map_or(Some(0), |value| value.parse().ok())
    }
}

/// A response as a test client read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The head as it came, status line to the blank line that ends it (included).
    pub head: String,
    /// The status code.
    pub status: u16,
    /// The headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as sent: de-chunked when it came `Transfer-Encoding: chunked`, its
    /// `Content-Length` bytes when it has one, else everything up to the close.
    pub body: Vec<u8>,
}

impl Response {
    /// Parses a whole response read to the end of its connection. A chunked body is decoded
    /// up to its last chunk or as far as it came (a stream cut off by the server).
    ///
    /// # Panics
    /// If `raw` has no complete head or no status code: that is not an HTTP answer.
    pub fn parse(raw: &[u8]) -> Self {
        let shown = || String::from_utf8_lossy(raw).into_owned();
        let end = head_end(raw).unwrap_or_else(|| panic!("no end of head in {:?}", shown()));
        let head = std::str::from_utf8(&raw[..end + 4])
            .unwrap_or_else(|_| panic!("a head that is not UTF-8: {:?}", shown()));
        let mut lines = head[..end].split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {:?}", shown()));
        let headers = headers(lines);
        let rest = &raw[end + 4..];
        let chunked = header(&headers, "transfer-encoding")
            .is_some_and(|value| value.eq_ignore_ascii_case("chunked"));
        let length = header(&headers, "content-length").and_then(|value| value.parse().ok());
        let body = match length {
            _ if chunked => dechunk(rest).0,
            Some(length) => rest[..rest.len().min(length)].to_vec(),
            None => rest.to_vec(),
        };
        Self {
            head: head.to_owned(),
            status,
            headers,
            body,
        }
    }

    /// The value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// If it is not JSON, with the body in the message.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("a JSON body ({err}): {:?}", self.text()))
    }

    /// The body's lines, each parsed as JSON (NDJSON; blank lines skipped).
    ///
    /// # Panics
    /// If a line is not JSON, with the line in the message.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("a JSON line ({err}): {line:?}"))
            })
            .collect()
    }
}

/// Decodes a chunked body: the data of its chunks, and whether the last chunk (size 0) came.
/// A body cut off mid-chunk gives the data up to the cut.
///
/// # Panics
/// If a chunk size is not hex: that is not a chunked body.
pub fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|window| window == b"\r\n") else {
            return (data, false);
        };
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        // Chunk extensions (`;name=value`) are allowed and mean nothing here.
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .unwrap_or_else(|_| panic!("a chunk size that is not hex: {size_text:?}"));
        if size == 0 {
            return (data, true);
        }
        let rest = &raw[line_end + 2..];
        if rest.len() < size {
            data.extend_from_slice(rest);
            return (data, false);
        }
        data.extend_from_slice(&rest[..size]);
        raw = rest.get(size + 2..).unwrap_or_default();
    }
}

/// One chunk of a chunked body: the size in hex, `bytes`, and the line ends around them.
pub fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
    framed.extend_from_slice(bytes);
    framed.extend_from_slice(b"\r\n");
    framed
}

/// The last chunk of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A response head: `HTTP/1.1 status reason`, the `headers` in order, the blank line.
pub fn response_head(status: u16, reason: &str, headers: &[(&str, &str)]) -> String {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_its_host_headers_and_length() {
        let bytes = request("POST", "/sessions", "h:1", &[("X-A", "b")], b"{}");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /sessions HTTP/1.1\r\nHost: h:1\r\nX-A: b\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn a_chunked_response_is_decoded_and_a_cut_one_as_far_as_it_came() {
        let mut raw = response_head(200, "OK", &[("Transfer-Encoding", "chunked")]).into_bytes();
        raw.extend(chunk(b"{\"a\":1}\n"));
        raw.extend(chunk(b"{\"a\":2}\n"));
        let whole = [raw.as_slice(), LAST_CHUNK].concat();
        let response = Response::parse(&whole);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("TRANSFER-ENCODING"), Some("chunked"));
        assert_eq!(response.json_lines().len(), 2);
        assert!(response.head.ends_with("\r\n\r\n"));
        let body_start = head_end(&whole).unwrap() + 4;
        assert!(dechunk(&whole[body_start..]).1, "the last chunk came");
        assert!(!dechunk(&raw[body_start..]).1, "no last chunk yet");
        let cut = Response::parse(&raw[..raw.len() - 5]);
        assert_eq!(cut.text(), "{\"a\":1}\n{\"a\":");
        assert_eq!(
            dechunk(b"3;x=y\r\nabc\r\n0\r\n\r\n"),
            (b"abc".to_vec(), true)
        );
    }

    #[test]
    fn a_request_head_is_parsed_with_lowercase_names() {
        let request = Request::parse_head(b"GET /s?from=2 HTTP/1.1\r\nX-Enclave-Ack: 3").unwrap();
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("GET", "/s?from=2")
        );
        assert_eq!(
            request.headers,
            [("x-enclave-ack".to_owned(), "3".to_owned())]
        );
        assert_eq!(request.header("X-Enclave-Ack"), Some("3"));
        assert_eq!(request.content_length(), Some(0));
    }
}
