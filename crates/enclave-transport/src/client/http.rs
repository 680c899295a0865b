//! The HTTP/1.1 carrier: `POST /sessions` or `GET /sessions/:id/stream` for the chunked
//! NDJSON stream on one connection, and `POST /sessions/:id/messages` for the upstream on a
//! second one (an HTTP/1.1 connection carries one request at a time, and the stream's never
//! ends while the session runs).

use bytes::Bytes;
use enclave_crypto::ClientHandshake;
use enclave_types::{excerpt, SessionId, EXCERPT_CHARS};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use super::net::{dial, Target};
use super::{refusal_or_status, with_retry_after, Carrier, ClientConfig, Keys, Open, Opened};
use crate::wire::{self, CreateBody};
use crate::Error;
use crate::RefusalReason;

/// The most of an error answer or a `{"ack": M}` answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How many connections one `POST /sessions/:id/messages` may try while servers answer 503.
pub(super) const POST_ATTEMPTS: u32 = 4;

/// The answer to `POST /sessions/:id/messages`.
#[derive(serde::Deserialize)]
struct AckAnswer {
    ack: u64,
}

/// Aborts the task driving a hyper connection when the carrier goes away.
#[derive(Debug)]
struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The stream's body and the connection for upstream requests.
pub(super) struct HttpCarrier {
    body: Incoming,
    _driver: Driver,
    poster: Option<(SendRequest<Full<Bytes>>, Driver)>,
}

/// Sends `request` on a new connection and returns the answer's head and body.
async fn request(
    target: &Target,
    config: &ClientConfig,
    request: Request<Full<Bytes>>,
    what: &str,
    session: &str,
) -> Result<(Response<Incoming>, SendRequest<Full<Bytes>>, Driver), Error> {
    let io = dial(target, config.tls.as_ref(), config.connect_timeout).await?;
    let http_error = |source| Error::Http {
        what: what.to_owned(),
        session: session.to_owned(),
        source,
    };
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(http_error)?;
        let driver = Driver(tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "HTTP connection ended");
            }
        }));
        let response = sender.send_request(request).await.map_err(http_error)?;
        Ok((response, sender, driver))
    };
    tokio::time::timeout(config.connect_timeout, exchange)
        .await
        .map_err(|_| Error::Timeout {
            what: "waiting for the answer of",
            addr: target.authority.clone(),
            after: config.connect_timeout,
        })?
}

/// A request with the headers every request carries.
fn builder(
    target: &Target,
    config: &ClientConfig,
    method: &str,
    path: &str,
) -> http::request::Builder {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, target.authority.as_str());
    if config.resume_feature {
        builder = builder.header(wire::HEADER_FEATURES, "resume");
    }
    for (name, value) in &config.headers {
        builder = builder.header(name, value);
    }
    builder
}

fn header_str<'a>(response: &'a Response<Incoming>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads a bounded answer body.
async fn read_answer(body: Incoming) -> Bytes {
    match Limited::new(body, MAX_ANSWER_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

/// Opens the stream: `POST /sessions` or `GET /sessions/:id/stream?from=N&fromSeq=N`.
// One exchange read top to bottom; splitting it would scatter the contract's steps.
#[allow(clippy::too_many_lines)]
pub(super) async fn open(
    target: &Target,
    config: &ClientConfig,
    open: &Open,
    handshake: Option<ClientHandshake>,
) -> Result<Opened, Error> {
    let session = crate::session_name(open.session_id());
    let (req, what) = match open {
        Open::New(new) => {
            let body = CreateBody {
                session_id: new.session_id.clone(),
                code: new.code.clone(),
                config: new.config.clone(),
                filter: config.filter.as_ref().map(|f| f.config().clone()),
                encryption: handshake
                    .as_ref()
                    .map(|h| super::handshake::offer(config.encryption, h)),
            };
            let body = serde_json::to_vec(&body).expect("a create body serializes");
            let path = target.path(wire::PATH_SESSIONS);
            let req = builder(target, config, "POST", &path)
                .header(http::header::ACCEPT, wire::NDJSON_CONTENT_TYPE)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)));
            (req, format!("POST {path}"))
        }
        Open::Resume(at) => {
            // `from` is the TypeScript client's name, `fromSeq` the broker's: the broker
            // ignores `from`, so both go, and ours accepts either.
            let stream = target.path(&wire::stream_path(&at.session_id));
            let mut path = format!("{stream}?from={}&fromSeq={}", at.from, at.from);
            // The filter goes again on every resume: it is the connection's, not the session's.
            if let Some(filter) = &config.filter {
                path.push_str("&filter=");
                path.push_str(&wire::percent_encode_query(&filter.config().to_string()));
            }
            let mut req = builder(target, config, "GET", &path)
                .header(http::header::ACCEPT, wire::NDJSON_CONTENT_TYPE);
            if let Some(token) = &at.token {
                req = req.header(wire::HEADER_RESUME_TOKEN, token.as_str());
            }
            if let Some(epoch) = at.epoch {
                req = req.header(wire::HEADER_EPOCH, epoch);
            }
            if let Some(h) = &handshake {
                let value =
                    wire::encode_hello_header(h.client_hello()).expect("a hello serializes");
                req = req.header(wire::HEADER_CLIENT_HELLO, value);
            }
            let what = format!("GET {stream}");
            (req.body(Full::new(Bytes::new())), what)
        }
    };
    let req = req.map_err(|err| Error::Protocol {
        session: session.clone(),
        reason: format!("cannot build the request (a configured header?): {err}"),
    })?;
    let (response, _sender, driver) = request(target, config, req, &what, &session).await?;
    let status = response.status();
    if !status.is_success() {
        let headers = response.headers().clone();
        let body = read_answer(response.into_body()).await;
        return Err(with_retry_after(
            refusal_or_status(&what, status.as_u16(), &body),
            &headers,
        ));
    }
    let protocol = |reason: String| Error::Protocol {
        session: session.clone(),
        reason,
    };
    let session_id = match (header_str(&response, wire::HEADER_SESSION_ID), open) {
        (Some(id), _) => SessionId::new(id).map_err(|err| {
            protocol(format!(
                "bad X-Session-ID {:?}: {err}",
                excerpt(id, EXCERPT_CHARS)
            ))
        })?,
        (None, Open::Resume(at)) => at.session_id.clone(),
        (None, Open::New(new)) => new
            .session_id
            .clone()
            .ok_or_else(|| protocol(format!("{what}: the answer has no X-Session-ID")))?,
    };
    if let Some(wanted) = open.session_id() {
        if *wanted != session_id {
            return Err(protocol(format!(
                "asked for session {wanted}, got {session_id}"
            )));
        }
    }
    let token = header_str(&response, wire::HEADER_RESUME_TOKEN).map(str::to_owned);
    let epoch = match header_str(&response, wire::HEADER_EPOCH) {
        Some(e) => Some(e.parse().map_err(|_| {
            protocol(format!(
                "bad X-Enclave-Epoch {:?}",
                excerpt(e, EXCERPT_CHARS)
            ))
        })?),
        None => None,
    };
    let (resumed, keys) = match open {
        Open::New(_) => (false, Keys::InFirstLine(handshake)),
        Open::Resume(_) => {
            let hello = match header_str(&response, wire::HEADER_SERVER_HELLO) {
                Some(encoded) => Some(
                    wire::decode_server_hello_header(encoded)
                        .map_err(|refusal| protocol(refusal.message))?,
                ),
                None => None,
            };
            (true, Keys::Done(hello, handshake))
        }
    };
    Ok(Opened {
        session_id,
        token,
        epoch,
        resumed,
        keys,
        carrier: Carrier::Http(HttpCarrier {
            body: response.into_body(),
            _driver: driver,
            poster: None,
        }),
    })
}

impl HttpCarrier {
    /// The next chunk of the stream's body; `None` at its end.
    pub(super) async fn read_chunk(&mut self, session: &SessionId) -> Result<Option<Bytes>, Error> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
                Some(Err(source)) => {
                    return Err(Error::Http {
                        what: "reading the stream".to_owned(),
                        session: session.as_str().to_owned(),
                        source,
                    })
                }
            }
        }
    }

    /// `POST /sessions/:id/messages` with `body` (NDJSON, maybe empty) and `X-Enclave-Ack`;
    /// returns the server's `{"ack": M}`, if it answered one.
    ///
    /// Behind a load balancer without sticky sessions the POST may reach another server than
    /// the stream's, which cannot open messages sealed under the stream connection's key and
    /// answers 503 `unavailable`: the POST is then tried again on a new connection (the
    /// balancer picks again), up to [`POST_ATTEMPTS`] times, before it fails.
    pub(super) async fn post_messages(
        &mut self,
        target: &Target,
        config: &ClientConfig,
        session: &SessionId,
        token: Option<&str>,
        body: Bytes,
        ack: Option<u64>,
    ) -> Result<Option<u64>, Error> {
        let mut attempt = 1;
        loop {
            match self
                .post_once(target, config, session, token, body.clone(), ack)
                .await
            {
                Err(err)
                    if attempt < POST_ATTEMPTS
                        && err
                            .refusal()
                            .is_some_and(|r| r.reason == RefusalReason::Unavailable) =>
                {
                    tracing::debug!(session = %session, attempt, %err, "POST answered 503; trying a new connection");
                    self.poster = None;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn post_once(
        &mut self,
        target: &Target,
        config: &ClientConfig,
        session: &SessionId,
        token: Option<&str>,
        body: Bytes,
        ack: Option<u64>,
    ) -> Result<Option<u64>, Error> {
        let path = target.path(&wire::messages_path(session));
        let what = format!("POST {path}");
        let mut req = builder(target, config, "POST", &path)
            .header(http::header::CONTENT_TYPE, wire::NDJSON_CONTENT_TYPE);
        if let Some(seq) = ack {
            req = req.header(wire::HEADER_ACK, seq);
        }
        if let Some(token) = token {
            req = req.header(wire::HEADER_RESUME_TOKEN, token);
        }
        let req = req.body(Full::new(body)).map_err(|err| Error::Protocol {
            session: session.as_str().to_owned(),
            reason: format!("cannot build the request: {err}"),
        })?;
        // Reuse the upstream connection while it is open; dial a new one otherwise.
        // Every wait of the exchange is bounded: a server that takes the request and then
        // neither answers nor closes (a session that just ended) must not hold the client,
        // whose `close` acknowledges through here after `final`.
        let reusable = match &mut self.poster {
            Some((sender, _)) if !sender.is_closed() => {
                matches!(
                    tokio::time::timeout(config.connect_timeout, sender.ready()).await,
                    Ok(Ok(()))
                )
            }
            _ => false,
        };
        let response = if reusable {
            let (sender, _) = self.poster.as_mut().expect("checked above");
            let sent = tokio::time::timeout(config.connect_timeout, sender.send_request(req)).await;
            match sent {
                Ok(Ok(response)) => response,
                Ok(Err(source)) => {
                    self.poster = None;
                    return Err(Error::Http {
                        what,
                        session: session.as_str().to_owned(),
                        source,
                    });
                }
                Err(_) => {
                    self.poster = None;
                    return Err(Error::Timeout {
                        what: "waiting for the answer of",
                        addr: target.authority.clone(),
                        after: config.connect_timeout,
                    });
                }
            }
        } else {
            let (response, sender, driver) =
                request(target, config, req, &what, session.as_str()).await?;
            self.poster = Some((sender, driver));
            response
        };
        let status = response.status();
        let headers = response.headers().clone();
        let Ok(answer) =
            tokio::time::timeout(config.connect_timeout, read_answer(response.into_body())).await
        else {
            self.poster = None;
            return Err(Error::Timeout {
                what: "reading the answer of",
                addr: target.authority.clone(),
                after: config.connect_timeout,
            });
        };
        if !status.is_success() {
            return Err(with_retry_after(
                refusal_or_status(&what, status.as_u16(), &answer),
                &headers,
            ));
        }
        Ok(serde_json::from_slice::<AckAnswer>(&answer)
            .ok()
            .map(|a| a.ack))
    }
}
