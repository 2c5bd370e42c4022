//! Response building and request reading helpers shared by the routers.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use percent_encoding::percent_decode_str;

use super::ApiError;

pub type Body = Full<Bytes>;

/// A JSON response that no cache keeps.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A serializable value as a JSON response.
pub fn json_value<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => json(status, body),
        Err(e) => error(ApiError::internal(e)),
    }
}

/// An error as its JSON response. A 401 carries `WWW-Authenticate: Carte error="<code>"`.
pub fn error(e: ApiError) -> Response<Body> {
    let mut resp = json(e.status, e.body());
    if let Some(allow) = e.allow {
        resp.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    }
    if e.status == StatusCode::UNAUTHORIZED {
        if let Ok(v) = HeaderValue::from_str(&format!("Carte error=\"{}\"", e.code)) {
            resp.headers_mut()
                .insert(hyper::header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}

/// Reads a request body of at most `max` bytes; a larger one is refused with 413 and `code`.
pub async fn read_body(
    req: Request<Incoming>,
    max: usize,
    code: &'static str,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code,
            format!("the request body is larger than {max} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max as u64 {
            return Err(too_large());
        }
    }
    let collect = Limited::new(req.into_body(), max).collect();
    match tokio::time::timeout(BODY_DEADLINE, collect).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => Err(too_large()),
        // A body trickling in a byte at a time holds a socket and a task: cut it off.
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request.timeout",
            format!(
                "the request body did not arrive within {} seconds",
                BODY_DEADLINE.as_secs()
            ),
        )),
    }
}

/// How long a whole request body may take to arrive.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// The query string's parameters, decoded. A parameter given twice is an error: which one
/// counts would otherwise depend on who reads it.
pub fn query_params(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if out.iter().any(|(name, _)| *name == k) {
            return Err(ApiError::bad_request(
                "request.duplicate-parameter",
                format!("parameter {k:?} is given more than once"),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// The one value of header `name`, if present. A header sent twice is refused with `refuse`:
/// which copy counts would otherwise depend on who reads it (a proxy may read the last, we the
/// first).
pub fn single_header<'a>(
    headers: &'a hyper::HeaderMap,
    name: &str,
    refuse: impl FnOnce() -> ApiError,
) -> Result<Option<&'a HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(refuse());
    }
    Ok(first)
}

/// One parameter from [`query_params`]' output.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A percent-decoded path segment.
pub fn path_segment(raw: &str) -> Result<String, ApiError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request("request.bad-path", "the path is not valid UTF-8"))
}

/// `uri` with these query parameters appended.
pub fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", q.finish())
}

/// The largest integer a query parameter may carry: 2^53 - 1, the largest every JSON and
/// JavaScript client holds exactly (and the `maximum` `/openapi.json` states).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A query integer: ASCII digits only (no sign, no spaces), at most [`MAX_SAFE_INTEGER`].
pub fn safe_integer(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| *n <= MAX_SAFE_INTEGER)
}
