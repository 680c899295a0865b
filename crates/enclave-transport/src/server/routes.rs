//! The HTTP routes of the network contract, with CORS on every response and the
//! deployment's authorization hook in front of every route but preflights and `/health`.
//!
//! Stacking, outermost first: CORS (answers preflights, decorates every response, refusals
//! included) → authorization → the route.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use enclave_types::{EncryptionMode, MessageFrame, SessionId};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::body::{FirstLine, StreamBody};
use super::listener::{reserve_refusal, ConnectionGuard};
use super::negotiate::{negotiate, Handshake, InitSigner, Offer};
use super::responses::{json_response, refusal_response, retry_after_secs};
use super::{static_files, ws, Shared};
use crate::metrics::Carrier;
use crate::service::{
    Attachment, CreateSession, Features, Refusal, RefusalReason, ResumeSession, SessionInfo, Submit,
};
use crate::wire;

type AppState = State<Arc<Shared>>;

/// The router of every route, with its middleware, bound to `shared`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(wire::PATH_HEALTH, get(health))
        .route(wire::PATH_READY, get(ready))
        .route(wire::PATH_SESSIONS, post(create).get(list))
        .route(wire::PATH_WS, get(ws::upgrade))
        .route(wire::PATH_SESSION, get(info).delete(delete))
        .route(wire::PATH_STREAM, get(stream))
        .route(wire::PATH_MESSAGES, post(messages))
        .route(wire::PATH_CANCEL, post(cancel))
        .route(wire::PATH_METRICS, get(metrics))
        .fallback(no_route)
        .layer(middleware::from_fn(reserve))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            count_refusals,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            authorize,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), cors))
        .with_state(shared)
}

// ---------------------------------------------------------------------------------------
// Responses

fn invalid(message: impl Into<String>) -> Response {
    refusal_response(&bad_request(message))
}

fn bad_request(message: impl Into<String>) -> Refusal {
    wire::invalid_request(message)
}

fn not_found(message: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "code": "NOT_FOUND", "message": message }),
    )
}

/// What no route claims: a static file when [`ServerConfig::with_static_dir`] is set, else `404`.
///
/// [`ServerConfig::with_static_dir`]: super::ServerConfig::with_static_dir
async fn no_route(State(shared): AppState, method: Method, uri: http::Uri) -> Response {
    if let Some(dir) = &shared.config.static_dir {
        if let Some(response) = static_files::serve(dir, &method, uri.path()).await {
            return response;
        }
        return not_found(&format!("no route or file for {method} {}", uri.path()));
    }
    not_found(&format!("no route for {method} {}", uri.path()))
}

// ---------------------------------------------------------------------------------------
// Middleware

/// Answers preflights and puts the CORS headers on every response.
async fn cors(State(shared): AppState, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    match &shared.config.allowed_origins {
        None => {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        Some(allowed) => {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
            if let Some(origin) = origin.filter(|origin| {
                origin
                    .to_str()
                    .is_ok_and(|origin| allowed.iter().any(|allowed| allowed == origin))
            }) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            }
        }
    }
    for (name, value) in [
        (
            header::ACCESS_CONTROL_ALLOW_METHODS,
            wire::CORS_ALLOW_METHODS,
        ),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            wire::CORS_ALLOW_HEADERS,
        ),
        (
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            wire::CORS_EXPOSE_HEADERS,
        ),
        (header::ACCESS_CONTROL_MAX_AGE, "86400"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Counts every refusal, whichever route (or the hook, or the reserve) made it, by the
/// route's pattern (never a concrete path, which would name a session) and the reason
/// [`refusal_response`] left on the response.
async fn count_refusals(State(shared): AppState, request: Request, next: Next) -> Response {
    // A clone of the router's own pattern (shared), not a copy of it per request.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("other", MatchedPath::as_str);
    let response = next.run(request).await;
    let refused = response.extensions().get::<RefusalReason>().copied();
    if let Some(reason) = refused {
        shared.config.metrics.refused(route, reason);
    }
    let is_resume = route == wire::PATH_STREAM;
    if is_resume {
        shared.config.metrics.resume(Carrier::Http, refused);
    }
    response
}

/// `GET /metrics`: the registry of [`ServerConfig::with_metrics`] in the Prometheus text
/// format; `404` when the server has none.
///
/// [`ServerConfig::with_metrics`]: super::ServerConfig::with_metrics
async fn metrics(State(shared): AppState) -> Response {
    let Some(registry) = &shared.config.metrics_registry else {
        return not_found("this server serves no metrics");
    };
    crate::metrics::exposition(registry)
}

/// Runs the deployment's hook on every route but preflights (answered by [`cors`] before
/// this runs), `/health` and `/ready` (a load balancer's probes carry no credentials).
async fn authorize(State(shared): AppState, request: Request, next: Next) -> Response {
    if let Some(hook) = &shared.config.authorize {
        let path = request.uri().path();
        if path != wire::PATH_HEALTH && path != wire::PATH_READY {
            if let Err(refusal) = hook(request.headers()) {
                return refusal_response(&refusal);
            }
        }
    }
    next.run(request).await
}

/// On a connection of [`ServerConfig::with_connection_reserve`], refuses new sessions (`503`
/// with `Retry-After`) and serves every other route.
///
/// [`ServerConfig::with_connection_reserve`]: super::ServerConfig::with_connection_reserve
async fn reserve(request: Request, next: Next) -> Response {
    let in_reserve = request
        .extensions()
        .get::<Arc<ConnectionGuard>>()
        .is_some_and(|guard| guard.reserve);
    if in_reserve && request.method() == Method::POST && request.uri().path() == wire::PATH_SESSIONS
    {
        return refusal_response(&reserve_refusal());
    }
    next.run(request).await
}

// ---------------------------------------------------------------------------------------
// Request helpers

/// Reads a body of at most [`ServerConfig::max_body_bytes`] within
/// [`ServerConfig::with_body_timeout`]: over the limit, `413 PAYLOAD_TOO_LARGE`; too slow, `408
/// REQUEST_TIMEOUT` (both with reason `invalid_request`, and the connection is closed).
///
/// Each frame is copied into one buffer and dropped: a frame shares the allocation hyper
/// read it into, so keeping frames would cost a read buffer per TCP segment (kilobytes for a
/// body sent one byte at a time) instead of the body's own bytes.
///
/// [`ServerConfig::max_body_bytes`]: super::ServerConfig::max_body_bytes
/// [`ServerConfig::with_body_timeout`]: super::ServerConfig::with_body_timeout
async fn read_body(mut body: Body, config: &super::ServerConfig) -> Result<Bytes, Response> {
    let limit = config.max_body_bytes;
    let too_large = || {
        body_refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            &format!("the request body is larger than {limit} bytes"),
        )
    };
    let announced = axum::body::HttpBody::size_hint(&body).lower();
    if announced > limit as u64 {
        return Err(too_large());
    }
    let read = async {
        // What the client announced (within the limit), so a body sent whole grows no buffer.
        let mut buffer = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|err| invalid(format!("cannot read the request body: {err}")))?;
            if let Ok(data) = frame.into_data() {
                if data.len() > limit - buffer.len() {
                    return Err(too_large());
                }
                buffer.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(buffer))
    };
    match tokio::time::timeout(config.body_timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(body_refusal(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            &format!(
                "the request body did not arrive within {} ms",
                config.body_timeout.as_millis()
            ),
        )),
    }
}

/// A refusal of a request body: its status, `{"code","message","reason":"invalid_request"}`,
/// and `Connection: close` (the rest of the body is not read).
fn body_refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = json_response(
        status,
        &serde_json::json!({
            "code": code,
            "message": message,
            "reason": RefusalReason::InvalidRequest.as_str(),
        }),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    // Counted with the other refusals (`enclave_refusals_total`, reason `invalid_request`).
    response
        .extensions_mut()
        .insert(RefusalReason::InvalidRequest);
    response
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Refusal> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map(str::trim)
                .map_err(|_| bad_request(format!("header {name} is not visible ASCII")))
        })
        .transpose()
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, Refusal> {
    header_str(headers, name)?
        .map(|value| wire::parse_number(name, value))
        .transpose()
}

fn features(headers: &HeaderMap) -> Features {
    headers
        .get(wire::HEADER_FEATURES)
        .and_then(|value| value.to_str().ok())
        .map(Features::parse)
        .unwrap_or_default()
}

/// A path id: one that is not a well-formed session id ([`wire::check_session_id`]) is a
/// malformed request (`400 INVALID_REQUEST`), answered before anything looks the session up.
fn path_id(id: &str) -> Result<SessionId, Refusal> {
    wire::check_session_id(id)
}

/// Whether a request may read or end `session_id` (`GET`/`DELETE /sessions/:id`,
/// `POST /sessions/:id/cancel`): the deployment's session-access hook, else the session's
/// resume token in `X-Enclave-Resume-Token`, checked by the session layer before anything
/// says whether the session exists, and never consumed.
async fn check_access(
    shared: &Shared,
    session_id: &SessionId,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    if let Some(hook) = &shared.config.session_access {
        if hook(headers, session_id) {
            return Ok(());
        }
    }
    let token = header_str(headers, wire::HEADER_RESUME_TOKEN)?;
    shared.service.check_access(session_id, token).await
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    } else {
        tracing::error!(header = name, "value is not a valid header value: dropped");
    }
}

/// The `200` NDJSON response for an attachment.
fn stream_response(
    shared: &Arc<Shared>,
    attachment: Attachment,
    handshake: Option<Handshake>,
    first_line: FirstLine,
    signer: Option<InitSigner>,
    features: Features,
) -> Response {
    let Attachment {
        session_id,
        token,
        epoch,
        events,
        ..
    } = attachment;
    let (sealer, opener, server_hello) = match handshake {
        Some(handshake) => (
            Some(handshake.sealer),
            Some(Arc::new(Mutex::new(handshake.opener))),
            Some(handshake.server_hello),
        ),
        None => (None, None, None),
    };
    let registry = shared.registry.attach(&session_id, opener);
    let metrics = shared
        .config
        .metrics
        .stream(Carrier::Http, sealer.is_some());
    let mut response = StreamBody {
        metrics,
        session_id: session_id.clone(),
        source: Some(events),
        sealer,
        first_line,
        signer,
        features,
        max_line_length: shared.config.max_line_length,
        shutdown: shared.shutdown.clone(),
        _registry: Some(registry),
    }
    .into_body()
    .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(wire::NDJSON_CONTENT_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set_header(headers, wire::HEADER_SESSION_ID, session_id.as_str());
    set_header(headers, wire::HEADER_RESUME_TOKEN, &token);
    set_header(headers, wire::HEADER_EPOCH, &epoch.to_string());
    if first_line == FirstLine::AsTheRest {
        if let Some(hello) = server_hello {
            match wire::encode_hello_header(&hello) {
                Ok(value) => set_header(headers, wire::HEADER_SERVER_HELLO, &value),
                Err(err) => {
                    tracing::error!(session = %session_id, "cannot encode the ServerHello: {err}");
                }
            }
        }
    }
    response
}

// ---------------------------------------------------------------------------------------
// Routes

async fn health() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// `GET /ready`: `200 {"status":"ready"}` while this server accepts sessions and its session
/// state answers; `503` with the refusal (and `"status":"unavailable"`) while it shuts down
/// or its store does not answer, with `Retry-After` as on any `503` refusal (the refusal's
/// own delay, else [`wire::RETRY_AFTER_SECS`]).
async fn ready(State(shared): AppState) -> Response {
    let refusal = if shared.shutdown.is_cancelled() {
        Some(Refusal::new(
            RefusalReason::ShuttingDown,
            "the server is shutting down",
        ))
    } else {
        shared.service.ready().await.err()
    };
    match refusal {
        None => json_response(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Some(refusal) => {
            let mut body = refusal.to_json();
            body["status"] = serde_json::Value::from("unavailable");
            let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, &body);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(refusal.retry_after)),
            );
            response
        }
    }
}

/// `POST /sessions`.
async fn create(
    State(shared): AppState,
    guard: Option<Extension<Arc<ConnectionGuard>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(body, &shared.config).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    // An empty body asks for a session with every default (`code` is optional here).
    let request = match wire::parse_create_body(&bytes) {
        Ok(request) => request,
        Err(refusal) => return refusal_response(&refusal),
    };
    // This response's event filter, checked before the session exists.
    let filter = match wire::parse_filter(request.filter.as_ref()) {
        Ok(filter) => filter,
        Err(refusal) => return refusal_response(&refusal),
    };
    let session_id = match request.session_id {
        Some(id) => match wire::check_session_id(id.as_str()) {
            Ok(id) => id,
            Err(refusal) => return refusal_response(&refusal),
        },
        None => SessionId::generate(),
    };
    let offer = Offer::of(request.encryption.as_ref());
    // The `session_init` is signed instead of the hello (`InitSigner`, below).
    let handshake = match negotiate(shared.config.encryption, offer, &session_id, None) {
        Ok(handshake) => handshake,
        Err(refusal) => return refusal_response(&refusal),
    };
    let features = features(&headers);
    let mut create = CreateSession::new(session_id);
    create.code = request.code;
    create.config = request.config.unwrap_or_default();
    create.features = features;
    create.peer = guard.map(|guard| guard.peer_ip());
    if let Some(handshake) = &handshake {
        create.encryption = handshake.encryption_config();
        create.encrypted = true;
    }
    // The transcript binds the mode the client asked for; a handshake implies an offer.
    let signer = match (&shared.config.signing_key, &handshake, offer.mode) {
        (Some(key), Some(handshake), Some(mode)) => Some(InitSigner {
            key: Arc::clone(key),
            client_hello: handshake.client_hello.clone(),
            mode,
        }),
        _ => None,
    };
    let encrypted = handshake.is_some();
    match shared.service.create(create).await {
        Ok(mut attachment) => {
            attachment.events = super::filter::apply(attachment.events, filter, encrypted);
            stream_response(
                &shared,
                attachment,
                handshake,
                FirstLine::Plaintext,
                signer,
                features,
            )
        }
        Err(refusal) => refusal_response(&refusal),
    }
}

/// `GET /sessions/:id/stream?fromSeq=N` (also `?from=N`), `&filter=<JSON>` for this
/// connection's event filter.
async fn stream(
    State(shared): AppState,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let session_id = match path_id(&id) {
        Ok(id) => id,
        Err(refusal) => return refusal_response(&refusal),
    };
    let from = match query.get("fromSeq").or_else(|| query.get("from")) {
        None => 1,
        // `0` and `1` both mean "from the start".
        Some(value) => match wire::parse_number("fromSeq", value) {
            Ok(from) => from.max(1),
            Err(refusal) => return refusal_response(&refusal),
        },
    };
    let filter = match wire::parse_filter_query(query.get("filter").map_or("", String::as_str)) {
        Ok(filter) => filter,
        Err(refusal) => return refusal_response(&refusal),
    };
    let (token, epoch, hello) = match (
        header_str(&headers, wire::HEADER_RESUME_TOKEN),
        header_u64(&headers, wire::HEADER_EPOCH),
        header_str(&headers, wire::HEADER_CLIENT_HELLO),
    ) {
        (Ok(token), Ok(epoch), Ok(hello)) => (token.map(str::to_owned), epoch, hello),
        (Err(refusal), _, _) | (_, Err(refusal), _) | (_, _, Err(refusal)) => {
            return refusal_response(&refusal)
        }
    };
    let hello = match hello.map(wire::decode_client_hello_header).transpose() {
        Ok(hello) => hello,
        Err(refusal) => return refusal_response(&refusal),
    };
    // A resume of an encrypted session always requires encryption, and this request has no
    // mode field: the transcript binds `required` (see `ServerConfig::signing_key`).
    let offer = Offer {
        mode: None,
        hello: hello.as_ref(),
    };
    let sign = shared
        .config
        .signing_key
        .as_deref()
        .map(|key| (key, EncryptionMode::Required));
    let handshake = match negotiate(shared.config.encryption, offer, &session_id, sign) {
        Ok(handshake) => handshake,
        Err(refusal) => return refusal_response(&refusal),
    };
    let features = features(&headers);
    let mut resume = ResumeSession::new(session_id, from);
    resume.token = token;
    resume.epoch = epoch;
    resume.encrypted = handshake.is_some();
    resume.features = features;
    match shared.service.resume(resume).await {
        Ok(mut attachment) => {
            attachment.events = super::filter::apply(attachment.events, filter, false);
            stream_response(
                &shared,
                attachment,
                handshake,
                FirstLine::AsTheRest,
                None,
                features,
            )
        }
        Err(refusal) => refusal_response(&refusal),
    }
}

/// `POST /sessions/:id/messages`.
async fn messages(
    State(shared): AppState,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let session_id = match path_id(&id) {
        Ok(id) => id,
        Err(refusal) => return refusal_response(&refusal),
    };
    let (token, ack) = match (
        header_str(&headers, wire::HEADER_RESUME_TOKEN),
        header_u64(&headers, wire::HEADER_ACK),
    ) {
        (Ok(token), Ok(ack)) => (token.map(str::to_owned), ack),
        (Err(refusal), _) | (_, Err(refusal)) => return refusal_response(&refusal),
    };
    let bytes = match read_body(body, &shared.config).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let opener = shared.registry.opener(&session_id);
    let mut submit = Submit::new(session_id, token);
    submit.ack = ack;
    submit.encrypted = opener.is_some();
    let frames = match wire::parse_messages_body(
        &bytes,
        &submit.session_id,
        shared.config.max_line_length,
    ) {
        Ok(frames) => frames,
        Err(refusal) => return refusal_response(&refusal),
    };
    // What counts is a line received; an acknowledgement alone (`X-Enclave-Ack`) is one too.
    let lines = frames.len() as u64 + u64::from(frames.is_empty() && ack.is_some());
    shared
        .config
        .metrics
        .messages_received(Carrier::Http, lines);
    for (number, frame) in frames {
        let at = || format!("session {}, line {number}", submit.session_id);
        match (frame, &opener) {
            (MessageFrame::Encrypted(envelope), Some(opener)) => {
                let mut opener = opener.lock().unwrap_or_else(PoisonError::into_inner);
                if opener.last_seq().is_some_and(|last| envelope.seq <= last) {
                    // Already opened and handed over on this connection: a retry of a
                    // request whose answer was lost is acknowledged again, not refused.
                    continue;
                }
                match opener.open(&envelope) {
                    Ok(message) => submit.messages.push(message),
                    Err(err) => {
                        return invalid(format!(
                            "{}, seq {}: the envelope does not open ({}): {err}",
                            at(),
                            envelope.seq,
                            err.code()
                        ))
                    }
                }
            }
            (MessageFrame::Encrypted(envelope), None) => {
                return refusal_response(&Refusal::new(
                    RefusalReason::Unavailable,
                    format!(
                        "{}, seq {}: a sealed message, but no encrypted stream connection is \
                         attached to the session: resume it, then send again",
                        at(),
                        envelope.seq
                    ),
                ))
            }
            (MessageFrame::Message(message), None) => submit.messages.push(message),
            (MessageFrame::Message(message), Some(_)) => {
                return invalid(format!(
                    "{}, seq {:?}: a plaintext message for an encrypted session",
                    at(),
                    message.seq
                ))
            }
            (other, _) => {
                return invalid(format!(
                    "{}: unsupported message type {:?}",
                    at(),
                    other.type_str()
                ))
            }
        }
    }
    match shared.service.submit(submit).await {
        Ok(receipt) => json_response(StatusCode::OK, &serde_json::json!({ "ack": receipt.ack })),
        Err(refusal) => refusal_response(&refusal),
    }
}

/// The broker's session summary.
pub(crate) fn info_json(info: &SessionInfo) -> serde_json::Value {
    serde_json::json!({
        "sessionId": info.session_id.as_str(),
        "state": info.state,
        "createdAt": info.created_at_ms,
        "expiresAt": info.expires_at_ms,
        "stats": {
            "duration": info.duration_ms,
            "toolCallCount": info.tool_call_count,
        },
    })
}

/// `GET /sessions/:id` (with the session's token or the session-access hook's consent).
async fn info(State(shared): AppState, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let session_id = match path_id(&id) {
        Ok(id) => id,
        Err(refusal) => return refusal_response(&refusal),
    };
    if let Err(refusal) = check_access(&shared, &session_id, &headers).await {
        return refusal_response(&refusal);
    }
    match shared.service.info(&session_id).await {
        Ok(info) => json_response(StatusCode::OK, &info_json(&info)),
        Err(refusal) => refusal_response(&refusal),
    }
}

/// `GET /sessions` (404 when turned off).
async fn list(State(shared): AppState) -> Response {
    if !shared.config.session_list {
        return not_found("the session list is turned off on this server");
    }
    match shared.service.list().await {
        Ok(sessions) => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "sessions": sessions.iter().map(info_json).collect::<Vec<_>>(),
                "total": sessions.len(),
            }),
        ),
        Err(refusal) => refusal_response(&refusal),
    }
}

/// `DELETE /sessions/:id` (with the session's token or the session-access hook's consent).
async fn delete(State(shared): AppState, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let session_id = match path_id(&id) {
        Ok(id) => id,
        Err(refusal) => return refusal_response(&refusal),
    };
    if let Err(refusal) = check_access(&shared, &session_id, &headers).await {
        return refusal_response(&refusal);
    }
    match shared.service.delete(&session_id).await {
        Ok(()) => json_response(
            StatusCode::OK,
            &serde_json::json!({ "success": true, "sessionId": session_id.as_str() }),
        ),
        Err(refusal) => refusal_response(&refusal),
    }
}

/// The body of `POST /sessions/:id/cancel` (sent as `text/plain` by the TypeScript client).
#[derive(Deserialize)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /sessions/:id/cancel`: any content type, body `{"reason"?}` or empty (with the
/// session's token or the session-access hook's consent).
async fn cancel(
    State(shared): AppState,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let session_id = match path_id(&id) {
        Ok(id) => id,
        Err(refusal) => return refusal_response(&refusal),
    };
    if let Err(refusal) = check_access(&shared, &session_id, &headers).await {
        return refusal_response(&refusal);
    }
    let bytes = match read_body(body, &shared.config).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let reason = if bytes.trim_ascii().is_empty() {
        None
    } else {
        match serde_json::from_slice::<CancelBody>(&bytes) {
            Ok(body) => body.reason,
            Err(err) => return invalid(format!("the body is not {{\"reason\"?}}: {err}")),
        }
    };
    match shared.service.cancel(&session_id, reason).await {
        Ok(()) => json_response(
            StatusCode::OK,
            &serde_json::json!({ "success": true, "sessionId": session_id.as_str() }),
        ),
        Err(refusal) => refusal_response(&refusal),
    }
}
