//! The owner's pages: log in, log out, set a password from a one-time link, and the home page.
//!
//! The login form is protected against cross-site submission twice: a `SameSite=Strict`
//! cookie whose value the form must echo (double submit), and the `Origin` check. Failed
//! logins are rate-limited per name and per address; an unknown name costs the same argon2
//! work as a wrong password, so timing does not reveal which names are owners here.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::auth;
use crate::http::pages::html::{error_page, html, page, see_other, Markup};
use crate::http::session::{self, LOGIN_COOKIE};
use crate::http::{ApiError, Body};
use crate::name::Name;
use crate::node::NodeState;
use crate::store;

/// Largest form body accepted.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// A decoded form body.
pub async fn form(req: Request<Incoming>) -> Result<Vec<(String, String)>, ApiError> {
    let body = crate::http::response::read_body(req, MAX_FORM_BYTES, "request.too-large").await?;
    Ok(form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// The single value of a form field.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut values = form.iter().filter(|(k, _)| k == name);
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Some(first.1.as_str())
}

/// A local path to return to after login; anything else becomes `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn login_form(name: &str, next: &str, csrf: &str, error: Option<&str>) -> Markup {
    html! {
        h1 { "Log in" }
        @if let Some(e) = error { p.error { (e) } }
        form method="post" action="/login" {
            label for="name" { "Name" }
            input type="text" id="name" name="name" value=(name) autocomplete="username" required;
            label for="password" { "Password" }
            input type="password" id="password" name="password" autocomplete="current-password" required;
            input type="hidden" name="next" value=(next);
            input type="hidden" name="login_csrf" value=(csrf);
            button type="submit" { "Log in" }
        }
    }
}

/// `GET /login?name=&next=`.
pub async fn show(state: &NodeState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let params = crate::http::response::query_params(req.uri().query())?;
    let name = crate::http::response::param(&params, "name").unwrap_or("");
    let next = safe_next(crate::http::response::param(&params, "next"));
    login_page(state, StatusCode::OK, name, &next, None)
}

fn login_page(
    state: &NodeState,
    status: StatusCode,
    name: &str,
    next: &str,
    error: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let (csrf, _) = auth::new_token();
    let mut resp = page(status, "Log in", login_form(name, next, &csrf, error));
    session::set_cookie(
        &mut resp,
        session::cookie_header(state, LOGIN_COOKIE, &csrf, 3600, "/login")?,
    );
    Ok(resp)
}

/// `POST /login`.
pub async fn submit(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if let Err(e) = session::check_origin(state, req.headers()) {
        return Ok(error_page(e.status, e.code, &e.message));
    }
    let headers = req.headers().clone();
    let form = form(req).await?;
    let sent = field(&form, "login_csrf").unwrap_or("");
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if sent.is_empty() || !auth::same(sent, expected) {
        return Ok(error_page(
            StatusCode::FORBIDDEN,
            "csrf.bad-token",
            "the login form expired or came from another site; open the login page again",
        ));
    }
    let raw_name = field(&form, "name").unwrap_or("");
    let password = field(&form, "password").unwrap_or("").to_owned();
    let next = safe_next(field(&form, "next"));
    let Ok(name) = Name::parse(raw_name) else {
        return login_page(
            state,
            StatusCode::UNAUTHORIZED,
            raw_name,
            &next,
            Some("wrong name or password"),
        );
    };
    let who = name.clone();
    let owner = state
        .db
        .run(move |c| store::owners::owner(c, &who).map_err(ApiError::from))
        .await?;
    let hash = owner.as_ref().and_then(|o| o.password_hash.clone());
    let controlled_without_password = owner
        .as_ref()
        .is_some_and(|o| o.password_hash.is_none() && o.controller.is_some());
    match check_password(state, &name, peer.ip(), password, hash).await {
        PasswordCheck::Right => {}
        PasswordCheck::Refused(resp) => return Ok(resp),
        PasswordCheck::Wrong if controlled_without_password => {
            return Ok(error_page(
                StatusCode::UNAUTHORIZED,
                "login.no-password",
                "this account has no password; log in through the service that manages it",
            ));
        }
        PasswordCheck::Wrong => {
            return login_page(
                state,
                StatusCode::UNAUTHORIZED,
                raw_name,
                &next,
                Some("wrong name or password"),
            );
        }
    }
    let cookie = session::start(state, &name, Some(&headers), Some(peer.ip())).await?;
    let mut resp = see_other(&next);
    session::set_cookie(&mut resp, cookie);
    session::set_cookie(
        &mut resp,
        session::cookie_header(state, LOGIN_COOKIE, "", 0, "/login")?,
    );
    Ok(resp)
}

/// How a password check under the limiter and the hash gate ended.
pub(crate) enum PasswordCheck {
    Right,
    Wrong,
    /// Not checked: rate-limited (429) or the node too busy (503); the page says which.
    Refused(Response<Body>),
}

/// Checks `password` against `stored` for `name`, from `addr`. The attempt is counted before
/// the check, so parallel guesses cannot slip under the limit; argon2 then runs behind the
/// hash gate. A wrong password keeps its count, a right one (or one never checked because the
/// node was busy) gives it back. No stored hash costs the same work as a real check, so timing
/// does not tell names apart. Every password check a person can trigger goes through here.
pub(crate) async fn check_password(
    state: &NodeState,
    name: &Name,
    addr: std::net::IpAddr,
    password: String,
    stored: Option<String>,
) -> PasswordCheck {
    let now = state.config.clock.now();
    let reservation = match reserve(state, name, addr, now).await {
        Ok(Ok(r)) => r,
        Ok(Err(wait)) => {
            let mut resp = error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "login.rate-limited",
                &format!(
                    "too many password attempts; try again in {} minutes",
                    wait.div_ceil(60)
                ),
            );
            retry_after(&mut resp, wait);
            return PasswordCheck::Refused(resp);
        }
        Err(e) => {
            // The budget cannot be read: no password is checked without it.
            let e = ApiError::from(e);
            return PasswordCheck::Refused(error_page(e.status, e.code, &e.message));
        }
    };
    let checked = state
        .hash_gate
        .run(move || match stored {
            Some(h) => auth::verify_password(&password, &h),
            None => {
                let _ = auth::verify_password(&password, dummy_hash());
                false
            }
        })
        .await;
    match checked {
        Ok(true) => {
            give_back(state, reservation, true).await;
            PasswordCheck::Right
        }
        Ok(false) => PasswordCheck::Wrong,
        Err(auth::Busy) => {
            give_back(state, reservation, false).await;
            PasswordCheck::Refused(busy())
        }
    }
}

/// A reserved password check: counted in this process's memory (one process on SQLite), or
/// in the shared database (PostgreSQL), so the budget holds across processes.
enum Reserved {
    Memory(auth::Reservation),
    Shared(store::login_budget::Counted),
}

async fn reserve(
    state: &NodeState,
    name: &Name,
    addr: std::net::IpAddr,
    now: u64,
) -> Result<Result<Reserved, u64>, store::StoreError> {
    if state.coherence.is_none() {
        return Ok(state.limiter.reserve(name, addr, now).map(Reserved::Memory));
    }
    let (n, a) = (name.to_string(), addr.to_string());
    let r = state
        .db
        .run(move |c| store::login_budget::reserve(c, &n, &a, now))
        .await?;
    Ok(r.map(Reserved::Shared))
}

async fn give_back(state: &NodeState, r: Reserved, succeeded: bool) {
    match r {
        Reserved::Memory(r) if succeeded => state.limiter.succeeded(r),
        Reserved::Memory(r) => state.limiter.release(r),
        Reserved::Shared(c) => {
            let done = state
                .db
                .run(move |conn| store::login_budget::give_back(conn, &c, succeeded))
                .await;
            if let Err(e) = done {
                // Erring towards fewer guesses: the count stays until its window ends.
                tracing::warn!(error = %e, "giving back a login reservation failed");
            }
        }
    }
}

/// `503 login.busy`: every password-check slot is taken and the queue is full.
pub fn busy() -> Response<Body> {
    let mut resp = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "login.busy",
        "the node is busy checking other passwords; try again in a moment",
    );
    retry_after(&mut resp, 1);
    resp
}

fn retry_after(resp: &mut Response<Body>, seconds: u64) {
    resp.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from(seconds),
    );
}

/// An argon2id hash of a random password, made once, for constant-work failures.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let (random, _) = auth::new_token();
        auth::hash_password(&random).unwrap_or_default()
    })
}

/// `POST /logout`.
///
/// With a live session the form's CSRF token must match (purpose `logout`), so another site
/// cannot log the owner out; without one there is nothing to end and the cookie is cleared.
pub async fn logout(state: &NodeState, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if let Err(e) = session::check_origin(state, req.headers()) {
        return Ok(error_page(e.status, e.code, &e.message));
    }
    let headers = req.headers().clone();
    let current = session::current(state, &headers).await?;
    let fields = form(req).await?;
    if let Some(s) = &current {
        let expected = session::csrf_token(s, b"logout");
        if !auth::same(field(&fields, "csrf").unwrap_or(""), &expected) {
            return Ok(error_page(
                StatusCode::FORBIDDEN,
                "csrf.bad-token",
                "this form did not come from your console; open the page again",
            ));
        }
    }
    let cookie = session::end(state, &headers).await?;
    let mut resp = see_other("/login");
    session::set_cookie(&mut resp, cookie);
    Ok(resp)
}

/// `GET /setup?token=`: the form to set a password from a one-time link.
pub async fn setup_form(
    state: &NodeState,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let params = crate::http::response::query_params(req.uri().query())?;
    let token = crate::http::response::param(&params, "token")
        .unwrap_or("")
        .to_owned();
    let now = state.config.clock.now();
    let owner = match auth::token_hash(&token) {
        Some(hash) => {
            state
                .db
                .run(move |c| {
                    store::owners::peek_setup_token(c, &hash, now).map_err(ApiError::from)
                })
                .await?
        }
        None => None,
    };
    let Some(owner) = owner else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            "setup.invalid-token",
            "this link is not valid: it was used already or has expired",
        ));
    };
    Ok(page(
        StatusCode::OK,
        "Set your password",
        html! {
            h1 { "Set the password for " (owner.as_str()) }
            form method="post" action="/setup" {
                input type="hidden" name="token" value=(token);
                label for="password" { "New password (at least 8 characters)" }
                input type="password" id="password" name="password" autocomplete="new-password" required;
                button type="submit" { "Set password" }
            }
        },
    ))
}

/// `POST /setup`: sets the password, consumes the link and logs the owner in.
pub async fn setup_submit(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if let Err(e) = session::check_origin(state, req.headers()) {
        return Ok(error_page(e.status, e.code, &e.message));
    }
    let headers = req.headers().clone();
    let form = form(req).await?;
    let password = field(&form, "password").unwrap_or("").to_owned();
    if let Err(why) = auth::check_new_password(&password) {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "setup.weak-password",
            why,
        ));
    }
    let Some(hash) = field(&form, "token").and_then(auth::token_hash) else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            "setup.invalid-token",
            "this link is not valid",
        ));
    };
    let phc = match state
        .hash_gate
        .run(move || auth::hash_password(&password))
        .await
    {
        Ok(phc) => phc.map_err(ApiError::internal)?,
        Err(auth::Busy) => return Ok(busy()),
    };
    let now = state.config.clock.now();
    let owner = state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            let owner = store::owners::take_setup_token(&tx, &hash, now)?;
            if let Some(o) = &owner {
                store::owners::set_password(&tx, o, &phc)?;
            }
            tx.commit()?;
            Ok::<_, ApiError>(owner)
        })
        .await?;
    let Some(owner) = owner else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            "setup.invalid-token",
            "this link is not valid: it was used already or has expired",
        ));
    };
    let cookie = session::start(state, &owner, Some(&headers), Some(peer.ip())).await?;
    // The owner's name gets recovery words now: a new updating key derived from them, shown
    // once on the next page. If that cannot be done (the registry out of reach), the password
    // is set all the same and the console opens; the key stays the one made at creation.
    let mut with_cookie = hyper::HeaderMap::new();
    with_cookie.insert(
        hyper::header::COOKIE,
        cookie
            .to_str()
            .ok()
            .and_then(|c| c.split(';').next())
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| ApiError::internal("a session cookie that does not parse"))?,
    );
    let session = session::current(state, &with_cookie).await?;
    let mut resp = match (
        session,
        crate::node::owners::rekey_with_words(state, &owner).await,
    ) {
        (Some(s), Ok(words)) => crate::http::pages::words::show(&s, &words)?,
        (_, Err(e)) => {
            tracing::error!(owner = %owner, error = %format!("{e:#}"), "recovery words not made");
            page(
                StatusCode::OK,
                "Password set",
                html! {
                    h1 { "Your password is set" }
                    p.error role="alert" {
                        "Recovery words could not be made just now (the registry did not \
                         answer). Ask the node's administrator to try again."
                    }
                    p { a href="/" { "Open your console" } }
                },
            )
        }
        (None, Ok(_)) => return Err(ApiError::internal("a new session is not found")),
    };
    session::set_cookie(&mut resp, cookie);
    Ok(resp)
}

/// A header value for a redirect back into this node after login.
pub fn login_redirect(next: &str, name: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(n) = name {
        q.append_pair("name", n);
    }
    q.append_pair("next", next);
    format!("/login?{}", q.finish())
}
