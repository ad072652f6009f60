//! Per-request checks in front of every route, each failure an OpenAI-style JSON error:
//!
//! - header block over [`MAX_HEADER_BYTES`] or [`MAX_HEADERS`] headers: 431;
//! - without an API key, a `Host` that names neither this machine's loopback / bound address
//!   nor `localhost`: 403 (DNS-rebinding protection: a web page whose name resolves to
//!   127.0.0.1 still sends its own name as `Host`);
//! - without an API key, a POST whose `Content-Type` is not `application/json`: 415 (a
//!   browser's cross-origin "simple" POST can only send form or text types);
//! - the body read whole here, within `body_timeout` (408) and `max_body_bytes` (413; a
//!   `Content-Length` over the limit is refused before reading).
//!
//! With an API key the Host and content-type checks are off: a cross-origin page cannot send
//! the `Authorization` header without a CORS preflight, which this server never grants.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::error::ApiError;

/// Most bytes of request headers (names + values) answered with JSON; hyper refuses a head over
/// its buffer (about 400 KiB) with a bare 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 100;

/// What the guard checks against.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    pub body_timeout: Duration,
    pub max_body_bytes: usize,
    /// `None` with an API key: any `Host`, any content type.
    pub allowed_hosts: Option<AllowedHosts>,
}

/// The `Host` values a keyless server answers.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// The address the server listens on (`--host`).
    bound: String,
}

impl AllowedHosts {
    pub fn new(bound: &str) -> Self {
        AllowedHosts { bound: bound.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase() }
    }

    /// `localhost`, a loopback IP, the bound address; when bound to every interface
    /// (`0.0.0.0`, `::`) any IP literal. Never another DNS name.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        if name == "localhost" || name == self.bound {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => {
                ip.is_loopback() || self.bound.parse::<IpAddr>().is_ok_and(|b| b.is_unspecified() || b == ip)
            }
            Err(_) => false,
        }
    }
}

/// The name part of a `Host` value: without the port and the IPv6 brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn error(status: StatusCode, message: String) -> Response {
    let mut e = ApiError::invalid("", message);
    e.status = status;
    e.into_response()
}

fn header_size_error(h: &HeaderMap) -> Option<Response> {
    let bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if h.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request headers too large: {} headers, {bytes} bytes (at most {MAX_HEADERS} headers, {MAX_HEADER_BYTES} bytes)",
                h.len()
            ),
        ));
    }
    None
}

fn is_json(h: &HeaderMap) -> bool {
    let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json"
}

/// The guard middleware (`axum::middleware::from_fn_with_state`).
pub async fn guard(State(cfg): State<Arc<GuardConfig>>, req: Request, next: Next) -> Response {
    if let Some(r) = header_size_error(req.headers()) {
        return r;
    }
    if let Some(allowed) = &cfg.allowed_hosts {
        let host = req.headers().get(header::HOST).map(|v| v.to_str().unwrap_or("(not text)"));
        let host = host.or_else(|| req.uri().authority().map(|a| a.as_str()));
        if let Some(h) = host.filter(|h| !allowed.allows(h)) {
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{h}` is not served: without --api-key this server answers only requests \
                     addressed to localhost or its own address (DNS-rebinding protection); start it \
                     with --api-key to serve other names"
                ),
            );
        }
        if req.method() == Method::POST && !is_json(req.headers()) {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "POST bodies must be sent as `Content-Type: application/json`".into(),
            );
        }
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let limit = cfg.max_body_bytes;
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let bytes = match tokio::time::timeout(cfg.body_timeout, read_body(body, limit)).await {
        Err(_) => {
            return closing(error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {:?}", cfg.body_timeout),
            ))
        }
        Ok(Err(BodyError::TooLarge)) => return too_large(limit),
        Ok(Err(BodyError::Read(e))) => {
            return closing(error(StatusCode::BAD_REQUEST, format!("reading the request body: {e}")))
        }
        Ok(Ok(b)) => b,
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn too_large(limit: usize) -> Response {
    closing(error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over {limit} bytes (the server's --max-body-bytes)"),
    ))
}

/// The connection closes after this response: the rest of an unread body is never read.
fn closing(mut r: Response) -> Response {
    r.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    r
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_a_keyless_server_answers() {
        let local = AllowedHosts::new("127.0.0.1");
        for ok in [
            "localhost",
            "localhost:8000",
            "LOCALHOST.",
            "127.0.0.1",
            "127.0.0.1:8000",
            "[::1]:8000",
            "127.5.0.1",
        ] {
            assert!(local.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "10.0.0.5",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!local.allows(bad), "{bad}");
        }
        let any = AllowedHosts::new("0.0.0.0");
        assert!(any.allows("10.0.0.5:8000") && any.allows("[fe80::1]") && !any.allows("box.lan:8000"));
        let named = AllowedHosts::new("box.lan");
        assert!(named.allows("box.lan:8000") && named.allows("localhost") && !named.allows("other.lan"));
        let v6 = AllowedHosts::new("[::1]");
        assert!(v6.allows("[::1]:8000") && !v6.allows("[::2]"));
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (ct, want) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            h.insert(header::CONTENT_TYPE, ct.parse().expect("header value"));
            assert_eq!(is_json(&h), want, "{ct}");
        }
    }

    #[test]
    fn oversized_header_blocks_are_431() {
        let mut h = HeaderMap::new();
        h.insert("x-a", "b".parse().expect("header value"));
        assert!(header_size_error(&h).is_none());
        h.insert("x-big", "v".repeat(MAX_HEADER_BYTES).parse().expect("header value"));
        let r = header_size_error(&h).expect("431");
        assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
}
