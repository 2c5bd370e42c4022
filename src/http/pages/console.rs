//! The owner's console: server-rendered pages to see, narrow, expire and revoke grants, read a
//! grant's history and its notifications' delivery, end sessions, change the password, and,
//! for the node's administrator, see owners, controllers and the registry mirror.
//!
//! No JavaScript. Every form carries a CSRF token bound to the session and to the form's
//! purpose, and every POST passes the same-origin check first; a refused form changes nothing.
//! Pages that change something use 303 See Other back to a page that shows the result.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::auth;
pub use crate::http::pages::dates::{date, parse_date, when};
use crate::http::pages::html::{error_page, html, page, see_other, Markup};
use crate::http::pages::login::{field, form};
use crate::http::session;
use crate::http::{ApiError, Body};
use crate::name::Name;
use crate::node::NodeState;
use crate::scope::Scope;
use crate::store::{self, owners::Session};

/// The logged-in session, or the login page to go to.
pub(crate) async fn logged_in(
    state: &NodeState,
    req: &Request<Incoming>,
) -> Result<Result<Session, Response<Body>>, ApiError> {
    match session::current(state, req.headers()).await? {
        Some(s) => Ok(Ok(s)),
        None => {
            let next = req.uri().path_and_query().map_or("/", |p| p.as_str());
            Ok(Err(see_other(&crate::http::pages::login::login_redirect(
                &crate::http::pages::login::safe_next(Some(next)),
                None,
            ))))
        }
    }
}

/// A hidden CSRF field for the form with this purpose.
pub(crate) fn csrf_field(s: &Session, purpose: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(session::csrf_token(s, purpose.as_bytes())); }
}

/// The checks every console POST passes before anything else: our origin, a session, and the
/// form's CSRF token for `purpose`. On success, the session and the form's fields.
pub(crate) async fn checked_post(
    state: &NodeState,
    req: Request<Incoming>,
    purpose: &str,
) -> Result<Result<(Session, Vec<(String, String)>), Response<Body>>, ApiError> {
    if let Err(e) = session::check_origin(state, req.headers()) {
        return Ok(Err(error_page(e.status, e.code, &e.message)));
    }
    let Some(s) = session::current(state, req.headers()).await? else {
        return Ok(Err(error_page(
            StatusCode::FORBIDDEN,
            "session.required",
            "you are not logged in (or your session ended); log in and try again",
        )));
    };
    let fields = form(req).await?;
    let expected = session::csrf_token(&s, purpose.as_bytes());
    if !auth::same(field(&fields, "csrf").unwrap_or(""), &expected) {
        return Ok(Err(error_page(
            StatusCode::FORBIDDEN,
            "csrf.bad-token",
            "this form did not come from your console; open the page again",
        )));
    }
    Ok(Ok((s, fields)))
}

/// The console's navigation, on every page.
pub(crate) fn nav(state: &NodeState, s: &Session) -> Markup {
    html! {
        nav {
            a href="/" { "Grants" } " · " a href="/sessions" { "Sessions" } " · "
            a href="/password" { "Password" }
            @if is_admin(state, &s.owner) { " · " a href="/admin" { "Node" } }
        }
        form method="post" action="/logout" {
            (csrf_field(s, "logout"))
            button type="submit" { "Log out" }
        }
    }
}

/// Whether `owner` administers this node: listed in `admins`, or, with no list, the first owner.
pub fn is_admin(state: &NodeState, owner: &Name) -> bool {
    if state.config.admins.is_empty() {
        state.node_name().as_ref() == Some(owner)
    } else {
        state.config.admins.contains(owner)
    }
}

pub(crate) fn plain_words(state: &NodeState, scope: Scope) -> String {
    let words: Vec<String> = state
        .config
        .scopes
        .describe(scope)
        .iter()
        .map(|(_, w)| w.to_string())
        .collect();
    if words.is_empty() {
        "nothing".to_owned()
    } else {
        words.join("; ")
    }
}

/// `GET /`: one row per application the owner granted.
pub async fn home(state: &NodeState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let s = match logged_in(state, req).await? {
        Ok(s) => s,
        Err(to_login) => return Ok(to_login),
    };
    let owner = s.owner.clone();
    let (grants, usage) = state
        .db
        .run(move |c| {
            Ok::<_, ApiError>((
                store::grants::grants(c, &owner)?,
                store::sessions::usage(c, &owner)?,
            ))
        })
        .await?;
    let now = state.config.clock.now();
    let expiry = |expires: Option<u64>| match expires {
        Some(e) if e <= now => format!("expired {}", when(e)),
        // Stored as the midnight (UTC) that ends the chosen day.
        Some(e) => format!("end of {} (UTC)", date(e.saturating_sub(1))),
        None => "never".to_owned(),
    };
    let used = |app: &Name| {
        usage
            .get(app.as_str())
            .map_or("not yet".to_owned(), |t| when(*t))
    };
    let table = html! {
        @if grants.is_empty() {
            p { "No application holds a grant from you." }
        } @else {
            table {
                caption { "Applications you granted" }
                thead { tr {
                    th scope="col" { "Application" } th scope="col" { "May" }
                    th scope="col" { "Granted" } th scope="col" { "Expires" }
                    th scope="col" { "Last used" }
                } }
                tbody {
                    @for (app, g) in &grants {
                        tr {
                            th scope="row" {
                                a href={ "/grants/" (crate::http::pages::console_grant::app_path(app)) } { (app.as_str()) }
                            }
                            td { (plain_words(state, g.effective(now))) }
                            td { (when(g.created)) }
                            td { (expiry(g.expires)) }
                            td { (used(app)) }
                        }
                    }
                }
            }
            p.note { (freshness(state)) }
            p { a href="/revoke-all" { "Revoke every grant…" } }
        }
    };
    Ok(page(
        StatusCode::OK,
        "Your grants",
        html! {
            main {
                h1 { "Logged in as " (s.owner.as_str()) }
                (nav(state, &s))
                (table)
            }
        },
    ))
}

/// How fresh "last used" is: written in batches once a minute.
fn freshness(state: &NodeState) -> String {
    let at = state
        .usage_flushed
        .load(std::sync::atomic::Ordering::Relaxed);
    let every = state.config.usage_flush.as_secs();
    if at == 0 {
        format!("“Last used” is written down every {every} s; not yet since the node started.")
    } else {
        format!(
            "“Last used” is written down every {every} s; last at {}.",
            when(at)
        )
    }
}
