//! Server-rendered HTML: the page frame, and the headers every HTML response sends.
//!
//! Pages are built with `maud::html!`, which escapes every value spliced into text or an
//! attribute by its type: a `&str` or `String` is always escaped, and only [`Markup`] (what
//! `html!` itself produced) is placed as it is. There is no escaping function to forget.
//! Pages use no JavaScript. Every HTML response forbids framing (CSP `frame-ancestors 'none'`
//! and `X-Frame-Options: DENY`), leaks no referrer (cartes travel in URLs) and is not cached.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::{Response, StatusCode};
pub use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::http::Body;

/// The Content-Security-Policy of every page.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers every HTML response (and every redirect) carries.
pub fn secure<B>(resp: &mut Response<B>) {
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#222}\
h1{font-size:1.4rem}label{display:block;margin:.6rem 0 .2rem}input[type=text],input[type=password]{width:100%;padding:.4rem;font-size:1rem}\
button{font-size:1rem;padding:.5rem 1.2rem;margin:.8rem .6rem 0 0}.error{color:#a00}.code{font-family:monospace;color:#555}\
.scopes li{margin:.3rem 0}.note{color:#555;font-size:.9rem}";

/// A complete page. Everything a page shows lies in its one `main` landmark: a body that does
/// not open with its own `<main>` is wrapped in one.
pub fn page(status: StatusCode, title: &str, body: Markup) -> Response<Body> {
    let body = if body.0.starts_with("<main") {
        body
    } else {
        html! { main { (body) } }
    };
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(html.into_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(&mut resp);
    resp
}

/// A plain error page: what went wrong, its stable code, and no way onward but back.
pub fn error_page(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    page(
        status,
        "Request refused",
        html! {
            h1 { "This request cannot be completed" }
            p.error { (message) }
            p.code { "error: " (code) }
            p.note { "Nothing was changed. Return to the application and start again." }
        },
    )
}

/// A `303 See Other` to `location`, with the security headers.
pub fn see_other(location: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            resp.headers_mut().insert(LOCATION, v);
        }
        Err(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "request.bad-redirect",
                "the redirect target is not a valid header value",
            )
        }
    }
    secure(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spliced_text_and_attributes_are_escaped_by_type() {
        let hostile = r#"<script>alert('x')</script>&"y""#;
        let markup = html! { p title=(hostile) { (hostile) } };
        assert_eq!(
            markup.into_string(),
            "<p title=\"&lt;script&gt;alert('x')&lt;/script&gt;&amp;&quot;y&quot;\">\
             &lt;script&gt;alert('x')&lt;/script&gt;&amp;&quot;y&quot;</p>"
        );
    }
}
