//! URIs that the registry records and the node redirects to.
//!
//! A redirect is the one place an authorization server hands control to a URL it did not make,
//! so the rules are strict and the comparison is dumb on purpose: registered redirect URIs must
//! already be in one canonical spelling, and a requested `redirect_uri` must equal a registered
//! one *as a string*. The single exception is RFC 8252's loopback rule: for `http://127.0.0.1`
//! and `http://[::1]` the port may differ. No prefix, case, dot-segment or percent-decoding
//! tricks can match, because nothing is normalised at match time.

use std::net::IpAddr;

use http::Uri;

/// Longest URI accepted anywhere.
pub const MAX_URI_LEN: usize = 2048;

/// Why a string is not an acceptable URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    #[error("URI is longer than {MAX_URI_LEN} bytes")]
    TooLong,
    #[error("URI is not an absolute http or https URI")]
    NotAbsolute,
    #[error("URI may not contain {0}")]
    Forbidden(&'static str),
    #[error("URI must be in canonical form: lowercase scheme and host, no default port")]
    NotCanonical,
    #[error("plain http is only allowed for loopback hosts; use https")]
    InsecureHttp,
}

/// A URI that passed the rules: absolute http(s), no userinfo, no fragment, no dot segments,
/// no control characters or spaces, lowercase scheme and host, no trailing dot on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUri {
    raw: String,
    https: bool,
    host: String,
    port: Option<u16>,
    path_and_query: String,
}

impl CheckedUri {
    /// Checks a URI for use as a node URI (plain http allowed: a node may sit behind a proxy
    /// that terminates TLS, and tests run on loopback).
    pub fn parse_node(input: &str) -> Result<CheckedUri, UriError> {
        check(input)
    }

    /// Normalises a configured base URL (a registry's, a node's public URL): with or without
    /// a trailing `/` it is the same base, checked as a node URI and returned without the
    /// trailing `/`, ready for `base + "/path"`.
    pub fn base_url(input: &str) -> Result<String, UriError> {
        let with_slash = if input.ends_with('/') {
            input.to_owned()
        } else {
            format!("{input}/")
        };
        check(&with_slash)?;
        Ok(with_slash.trim_end_matches('/').to_owned())
    }

    /// Checks a URI for registration as a redirect URI: as a node URI, and plain http only
    /// for loopback hosts (RFC 8252 §7.3).
    pub fn parse_redirect(input: &str) -> Result<CheckedUri, UriError> {
        let uri = check(input)?;
        if !uri.https && !uri.is_loopback() {
            return Err(UriError::InsecureHttp);
        }
        Ok(uri)
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The origin (`https://host[:port]`), as shown on the consent page.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(p) => format!("{scheme}://{}:{p}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }

    /// Whether the host is a loopback IP literal (`127.0.0.0/8` or `[::1]`) or `localhost`.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.loopback_ip()
    }

    fn loopback_ip(&self) -> bool {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether a requested redirect URI (`self`) is allowed by a registered one: the same
    /// string, or, for a registered `http` loopback IP literal, the same string but for the
    /// port (RFC 8252 §7.3). `localhost` gets no port freedom: RFC 8252 §8.3 advises against it.
    pub fn allowed_by(&self, registered: &CheckedUri) -> bool {
        if self.raw == registered.raw {
            return true;
        }
        !registered.https
            && !self.https
            && registered.loopback_ip()
            && self.host == registered.host
            && self.path_and_query == registered.path_and_query
    }
}

fn check(input: &str) -> Result<CheckedUri, UriError> {
    if input.len() > MAX_URI_LEN {
        return Err(UriError::TooLong);
    }
    if input.bytes().any(|b| b <= b' ' || b == 0x7f) || !input.is_ascii() {
        return Err(UriError::Forbidden(
            "spaces, control or non-ASCII characters",
        ));
    }
    if input.contains('#') {
        return Err(UriError::Forbidden("a fragment"));
    }
    if input.contains('\\') {
        return Err(UriError::Forbidden("a backslash"));
    }
    let uri: Uri = input.parse().map_err(|_| UriError::NotAbsolute)?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(UriError::NotAbsolute),
    };
    if !input.starts_with(if https { "https://" } else { "http://" }) {
        return Err(UriError::NotCanonical);
    }
    let authority = uri.authority().ok_or(UriError::NotAbsolute)?;
    if authority.as_str().contains('@') {
        return Err(UriError::Forbidden("user information"));
    }
    let host = authority.host().to_owned();
    if host.is_empty() {
        return Err(UriError::NotAbsolute);
    }
    if host.ends_with('.') {
        return Err(UriError::Forbidden("a trailing dot on the host"));
    }
    if host != host.to_ascii_lowercase() {
        return Err(UriError::NotCanonical);
    }
    let port = authority.port_u16();
    let default_port = if https { 443 } else { 80 };
    if port == Some(default_port) || (authority.port().is_some() && port.is_none()) {
        return Err(UriError::NotCanonical);
    }
    let path = uri.path();
    if path
        .split('/')
        .any(|seg| seg == "." || seg == ".." || seg.contains(';'))
    {
        return Err(UriError::Forbidden(
            "dot segments or ';' parameters in the path",
        ));
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c") {
        return Err(UriError::Forbidden("encoded dots or slashes in the path"));
    }
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // http::Uri turns "http://host" into path "/"; require the spelling to be what it parsed,
    // so that two strings never name one registered URI.
    let rebuilt = match port {
        Some(p) => format!(
            "{}://{host}:{p}{path_and_query}",
            uri.scheme_str().unwrap_or("")
        ),
        None => format!(
            "{}://{host}{path_and_query}",
            uri.scheme_str().unwrap_or("")
        ),
    };
    if rebuilt != input {
        return Err(UriError::NotCanonical);
    }
    Ok(CheckedUri {
        raw: input.to_owned(),
        https,
        host,
        port,
        path_and_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> CheckedUri {
        CheckedUri::parse_redirect(s).unwrap()
    }

    #[test]
    fn canonical_uris_are_accepted() {
        for ok in [
            "https://app.example/cb",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1:4000/cb",
            "http://[::1]:4000/cb",
            "http://localhost:3000/",
        ] {
            assert_eq!(reg(ok).as_str(), ok);
        }
    }

    #[test]
    fn tricks_are_refused_at_registration() {
        for bad in [
            "https://app.example",           // no path: spelled two ways
            "HTTPS://app.example/cb",        // case
            "https://App.example/cb",        // case
            "https://app.example:443/cb",    // default port
            "https://app.example./cb",       // trailing dot
            "https://evil@app.example/cb",   // userinfo
            "https://app.example/cb#frag",   // fragment
            "https://app.example/a/../cb",   // dot segment
            "https://app.example/..;/cb",    // Tomcat path parameter trick
            "https://app.example/%2e%2e/cb", // encoded dot segment
            "https://app.example/cb path",   // space
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://app.example/cb",
            "/relative/cb",
            "http://app.example/cb", // plain http off loopback
        ] {
            assert!(CheckedUri::parse_redirect(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_exact_strings_match() {
        let r = reg("https://app.example/cb");
        assert!(reg("https://app.example/cb").allowed_by(&r));
        for other in [
            "https://app.example/cb/more",
            "https://app.example/cb?x=1",
            "https://app.example:8443/cb",
            "https://app.example.evil.example/cb",
        ] {
            assert!(!reg(other).allowed_by(&r), "{other}");
        }
    }

    #[test]
    fn loopback_ip_may_vary_only_in_port() {
        let r = reg("http://127.0.0.1:4000/cb");
        assert!(reg("http://127.0.0.1:5555/cb").allowed_by(&r));
        assert!(!reg("http://127.0.0.1:5555/other").allowed_by(&r));
        assert!(!reg("http://127.0.0.2:4000/cb").allowed_by(&r));
        assert!(!reg("http://localhost:4000/cb").allowed_by(&r));
        let v6 = reg("http://[::1]:4000/cb");
        assert!(reg("http://[::1]:1/cb").allowed_by(&v6));
        let named = reg("http://localhost:3000/cb");
        assert!(!reg("http://localhost:3001/cb").allowed_by(&named));
    }
}
