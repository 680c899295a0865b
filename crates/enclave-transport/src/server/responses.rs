//! The HTTP answers every route and the WebSocket upgrade share: a refusal with its status
//! (and `Retry-After` on a `503`), and a JSON body with its content type.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};

use crate::service::Refusal;
use crate::wire;

/// A refusal: its status and `{"code","message","reason"}`.
/// A `503` carries `Retry-After`: the refusal's own ([`Refusal::retry_after`], in whole
/// seconds rounded up, at least 1), else [`wire::RETRY_AFTER_SECS`].
pub(crate) fn refusal_response(refusal: &Refusal) -> Response {
    let status =
        StatusCode::from_u16(refusal.reason.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_response(status, &refusal.to_json());
    // For the metrics middleware: the reason, whichever route refused.
    response.extensions_mut().insert(refusal.reason);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(refusal.retry_after)),
        );
    }
    response
}

/// The `Retry-After` seconds for a delay: rounded up (a client must not come back before
/// the delay), at least 1; none given is [`wire::RETRY_AFTER_SECS`].
pub(crate) fn retry_after_secs(delay: Option<std::time::Duration>) -> u64 {
    delay.map_or(wire::RETRY_AFTER_SECS, |delay| {
        let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        secs.max(1)
    })
}

pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
