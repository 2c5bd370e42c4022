//! Login sessions over cookies, and the same-origin checks for state-changing requests.
//!
//! The session cookie (`gn_session`) is `HttpOnly`, `SameSite=Lax`, and `Secure` unless the
//! node runs over plain http on loopback. Its value is 32 random bytes; the database keeps only
//! their hash. A new session is created at every login (the id is never carried over), so a
//! session cannot be fixed by an attacker.

use hyper::header::{HeaderValue, COOKIE, SET_COOKIE};
use hyper::{HeaderMap, Response, StatusCode};

use super::{ApiError, Body};
use crate::auth;
use crate::name::Name;
use crate::node::NodeState;
use crate::store::{self, owners::Session};

pub const SESSION_COOKIE: &str = "gn_session";
pub const LOGIN_COOKIE: &str = "gn_login";

/// The value of cookie `name`, if sent once. A cookie sent twice is ignored: a second copy can
/// come from a sibling subdomain and must not decide anything.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for part in text.split(';') {
            let Some((k, v)) = part.trim().split_once('=') else {
                continue;
            };
            if k == name {
                if found.is_some() {
                    return None;
                }
                found = Some(v);
            }
        }
    }
    found
}

/// The live session named by the request's cookie.
pub async fn current(state: &NodeState, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(hash) = cookie(headers, SESSION_COOKIE).and_then(auth::token_hash) else {
        return Ok(None);
    };
    let now = state.config.clock.now();
    state
        .db
        .run(move |c| {
            let session = store::owners::session(c, &hash, now)?;
            if session.is_some() {
                store::sessions::touch(c, &hash, now)?;
            }
            Ok::<_, crate::store::StoreError>(session)
        })
        .await
        .map_err(ApiError::from)
}

/// Starts a session for `owner`: stores it and returns the `Set-Cookie` value. Any session the
/// browser already had is ended first.
pub async fn start(
    state: &NodeState,
    owner: &Name,
    previous: Option<&HeaderMap>,
    address: Option<std::net::IpAddr>,
) -> Result<HeaderValue, ApiError> {
    let token = start_session(state, owner, previous, address).await?;
    cookie_header(state, SESSION_COOKIE, &token, state.config.session_ttl, "/")
}

/// Starts a session from a platform's page on another site (`POST /auth/login` with
/// credentials). Browsers refuse to store a `SameSite=Lax` cookie set by a cross-site
/// response, so this one is `SameSite=None`, which browsers accept only with `Secure`: over
/// https. (The session is then sent on cross-site requests too; every state-changing request
/// still needs this node's `Origin` and, for forms, the session-bound CSRF token.) Over plain
/// http it stays `Lax`, and only a same-site platform can use it.
pub async fn start_cross_site(state: &NodeState, owner: &Name) -> Result<HeaderValue, ApiError> {
    let token = start_session(state, owner, None, None).await?;
    let ttl = state.config.session_ttl;
    if !state.public_url.starts_with("https://") {
        return cookie_header(state, SESSION_COOKIE, &token, ttl, "/");
    }
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=None; Secure"
    ))
    .map_err(ApiError::internal)
}

async fn start_session(
    state: &NodeState,
    owner: &Name,
    previous: Option<&HeaderMap>,
    address: Option<std::net::IpAddr>,
) -> Result<String, ApiError> {
    // What the sessions page shows of this browser: its address and, shortened, its name.
    let user_agent: Option<String> = previous
        .and_then(|h| h.get(hyper::header::USER_AGENT))
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(200).collect());
    let address = address.map(|a| a.to_string());
    let old = previous
        .and_then(|h| cookie(h, SESSION_COOKIE))
        .and_then(auth::token_hash);
    let (token, hash) = auth::new_token();
    let now = state.config.clock.now();
    let session = Session {
        id_hash: hash,
        owner: owner.clone(),
        csrf_secret: auth::random_bytes(),
        expires: now + state.config.session_ttl,
    };
    state
        .db
        .run(move |c| {
            if let Some(old) = old {
                store::owners::delete_session(c, &old)?;
            }
            store::owners::insert_session(c, &session, now)?;
            store::sessions::describe(
                c,
                &session.id_hash,
                address.as_deref(),
                user_agent.as_deref(),
                now,
            )
        })
        .await
        .map_err(ApiError::from)?;
    Ok(token)
}

/// Ends the request's session, if any, and returns the cookie that clears it.
pub async fn end(state: &NodeState, headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    if let Some(hash) = cookie(headers, SESSION_COOKIE).and_then(auth::token_hash) {
        state
            .db
            .run(move |c| store::owners::delete_session(c, &hash).map_err(ApiError::from))
            .await?;
    }
    cookie_header(state, SESSION_COOKIE, "", 0, "/")
}

/// A `Set-Cookie` value with this node's attributes.
pub fn cookie_header(
    state: &NodeState,
    name: &str,
    value: &str,
    max_age: u64,
    path: &str,
) -> Result<HeaderValue, ApiError> {
    let secure = if state.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let same_site = if name == LOGIN_COOKIE {
        "Strict"
    } else {
        "Lax"
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    ))
    .map_err(ApiError::internal)
}

/// Adds a `Set-Cookie` header to a response.
pub fn set_cookie(resp: &mut Response<Body>, value: HeaderValue) {
    resp.headers_mut().append(SET_COOKIE, value);
}

/// Refuses a state-changing browser request from another origin.
///
/// `Sec-Fetch-Site`, when present, must be `same-origin` or `none`. `Origin`, when present,
/// must be this node's origin, except `null`: every page here sends `Referrer-Policy:
/// no-referrer` (cartes travel in URLs), and under that policy browsers send `Origin: null`
/// even for the node's own forms, so `null` is accepted only when `Sec-Fetch-Site` vouches
/// that the request is same-origin.
pub fn check_origin(state: &NodeState, headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf.bad-origin",
            "this request came from another site",
        )
    };
    // Each header once: with two, the browser's and an attacker's, which one counts would
    // depend on the reader.
    let site = super::response::single_header(headers, "sec-fetch-site", refuse)?
        .map(|v| v.to_str().unwrap_or("invalid"));
    if let Some(site) = site {
        if site != "same-origin" && site != "none" {
            return Err(refuse());
        }
    }
    if let Some(origin) = super::response::single_header(headers, "origin", refuse)? {
        match origin.to_str() {
            Ok("null") if site == Some("same-origin") => {}
            Ok(o) if o == state.origin() => {}
            _ => return Err(refuse()),
        }
    }
    Ok(())
}

/// The CSRF token that binds a form to a session and a purpose.
pub fn csrf_token(session: &Session, purpose: &[u8]) -> String {
    auth::mac(&session.csrf_secret, purpose)
}
