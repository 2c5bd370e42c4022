//! The router: one `match` on method and path, and the small response helpers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::{ApiError, AppState};

/// The protocol version this node speaks, published in discovery.
pub const PROTOCOL_VERSION: u32 = 1;

pub type Body = Full<Bytes>;

/// Routes one request. Never fails: every error becomes a JSON error response.
pub async fn route(
    state: Arc<AppState>,
    _peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let result = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => Ok(json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned())),
        (&Method::GET, "/.well-known/grant-node") => Ok(discovery(&state)),
        (_, "/healthz" | "/.well-known/grant-node") => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::not_found()),
    };
    Ok(result.unwrap_or_else(|e| json(e.status, e.body())))
}

fn discovery(state: &AppState) -> Response<Body> {
    let scopes: Vec<_> = state
        .scopes
        .defs()
        .map(|d| {
            serde_json::json!({
                "name": d.name, "bit": d.bit, "description": d.description
            })
        })
        .collect();
    let body = serde_json::json!({
        "protocol_version": PROTOCOL_VERSION,
        "software": concat!("grant-node ", env!("CARGO_PKG_VERSION")),
        "scopes": scopes,
        "limits": {
            "carte_max_bytes": crate::carte::MAX_WIRE_LEN,
            "carte_max_lifetime": state.config.carte_max_lifetime,
            "carte_skew": state.config.carte_skew,
        },
    });
    json(StatusCode::OK, body.to_string())
}

/// A JSON response that no cache keeps.
pub fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
