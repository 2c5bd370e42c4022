//! The owner's console: server-rendered pages to see, narrow, expire and revoke grants, read a
//! grant's history and its notifications' delivery, end sessions, change the password, and,
//! for the node's administrator, see owners, controllers and the registry mirror.
//!
//! No JavaScript. Every form carries a CSRF token bound to the session and to the form's
//! purpose, and every POST passes the same-origin check first; a refused form changes nothing.
//! Pages that change something use 303 See Other back to a page that shows the result.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

pub use super::dates::{date, parse_date, when};
use super::html::{error_page, esc, page, see_other};
use super::login::{field, form};
use super::session;
use super::{ApiError, Body};
use crate::auth;
use crate::grant::statement::Notification;
use crate::name::Name;
use crate::node::grants::{Edit, Expiry};
use crate::node::NodeState;
use crate::scope::Scope;
use crate::store::{self, owners::Session};

/// The logged-in session, or the login page to go to.
pub(super) async fn logged_in(
    state: &NodeState,
    req: &Request<Incoming>,
) -> Result<Result<Session, Response<Body>>, ApiError> {
    match session::current(state, req.headers()).await? {
        Some(s) => Ok(Ok(s)),
        None => {
            let next = req.uri().path_and_query().map_or("/", |p| p.as_str());
            Ok(Err(see_other(&super::login::login_redirect(
                &super::login::safe_next(Some(next)),
                None,
            ))))
        }
    }
}

/// A hidden CSRF field for the form with this purpose.
pub(super) fn csrf_field(s: &Session, purpose: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&session::csrf_token(s, purpose.as_bytes()))
    )
}

/// The checks every console POST passes before anything else: our origin, a session, and the
/// form's CSRF token for `purpose`. On success, the session and the form's fields.
pub(super) async fn checked_post(
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
pub(super) fn nav(state: &NodeState, s: &Session) -> String {
    let admin = if is_admin(state, &s.owner) {
        " · <a href=\"/admin\">Node</a>"
    } else {
        ""
    };
    format!(
        "<nav><a href=\"/\">Grants</a> · <a href=\"/sessions\">Sessions</a> · \
         <a href=\"/password\">Password</a>{admin}</nav>\
         <form method=\"post\" action=\"/logout\">{}<button type=\"submit\">Log out</button></form>",
        csrf_field(s, "logout")
    )
}

/// Whether `owner` administers this node: listed in `admins`, or, with no list, the first owner.
pub fn is_admin(state: &NodeState, owner: &Name) -> bool {
    if state.config.admins.is_empty() {
        state.node_name().as_ref() == Some(owner)
    } else {
        state.config.admins.contains(owner)
    }
}

pub(super) fn plain_words(state: &NodeState, scope: Scope) -> String {
    let words: Vec<String> = state
        .config
        .scopes
        .describe(scope)
        .iter()
        .map(|(_, w)| esc(w))
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
    let rows: String = grants
        .iter()
        .map(|(app, g)| {
            let expiry = match g.expires {
                Some(e) if e <= now => format!("expired {}", when(e)),
                // Stored as the midnight (UTC) that ends the chosen day.
                Some(e) => format!("end of {} (UTC)", date(e.saturating_sub(1))),
                None => "never".to_owned(),
            };
            let used = usage
                .get(app.as_str())
                .map_or("not yet".to_owned(), |t| when(*t));
            format!(
                "<tr><th scope=\"row\"><a href=\"/grants/{}\">{}</a></th><td>{}</td><td>{}</td>\
                 <td>{expiry}</td><td>{used}</td></tr>",
                esc(&app_path(app)),
                esc(app.as_str()),
                plain_words(state, g.effective(now)),
                when(g.created),
            )
        })
        .collect();
    let table = if rows.is_empty() {
        "<p>No application holds a grant from you.</p>".to_owned()
    } else {
        format!(
            "<table><caption>Applications you granted</caption><thead><tr><th scope=\"col\">Application</th>\
             <th scope=\"col\">May</th><th scope=\"col\">Granted</th><th scope=\"col\">Expires</th>\
             <th scope=\"col\">Last used</th></tr></thead><tbody>{rows}</tbody></table>\
             <p class=\"note\">{}</p><p><a href=\"/revoke-all\">Revoke every grant…</a></p>",
            freshness(state)
        )
    };
    Ok(page(
        StatusCode::OK,
        "Your grants",
        &format!(
            "<main><h1>Logged in as {}</h1>{}{table}</main>",
            esc(s.owner.as_str()),
            nav(state, &s)
        ),
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

/// What a name needs escaped in a path segment: everything but the unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn app_path(app: &Name) -> String {
    percent_encoding::utf8_percent_encode(app.as_str(), SEGMENT).to_string()
}

/// `GET /grants/{app}`.
pub async fn app_page(
    state: &NodeState,
    req: &Request<Incoming>,
    app: &Name,
) -> Result<Response<Body>, ApiError> {
    let s = match logged_in(state, req).await? {
        Ok(s) => s,
        Err(to_login) => return Ok(to_login),
    };
    let (owner, a) = (s.owner.clone(), app.clone());
    let (grant, history, outbox) = state
        .db
        .run(move |c| {
            Ok::<_, ApiError>((
                store::grants::grant(c, &owner, &a)?,
                store::grants::audit(c, &owner, Some(&a))?,
                store::grants::outbox_all(c)?,
            ))
        })
        .await?;
    let now = state.config.clock.now();
    let scopes = &state.config.scopes;
    let held = grant.map(|g| g.effective(now)).unwrap_or(Scope::NONE);
    // First what the application holds and what it was ever granted (its requests as the
    // owner answered them); the rest of the catalogue behind a disclosure.
    let granted_before = history.iter().fold(Scope::NONE, |acc, e| {
        acc.union(Scope::from_bits(e.new_scope))
    });
    let first = held.union(granted_before);
    let checkbox = |d: &crate::scope::ScopeDef| {
        let bit = Scope::from_bits(1u64 << d.bit);
        format!(
            "<li><label><input type=\"checkbox\" name=\"scope\" value=\"{}\"{}> {}</label></li>",
            esc(&d.name),
            if held.contains(bit) { " checked" } else { "" },
            esc(&d.description)
        )
    };
    let grantable = || scopes.defs().filter(|d| d.name != "grant");
    let in_first = |d: &&crate::scope::ScopeDef| first.contains(Scope::from_bits(1u64 << d.bit));
    let boxes: String = grantable().filter(in_first).map(checkbox).collect();
    let others: String = grantable().filter(|d| !in_first(d)).map(checkbox).collect();
    let boxes = if boxes.is_empty() {
        "<li>It holds nothing now.</li>".to_owned()
    } else {
        boxes
    };
    let others = if others.is_empty() {
        String::new()
    } else {
        format!(
            "<details><summary>Other scopes this node knows</summary><ul class=\"scopes\">{others}</ul></details>"
        )
    };
    // What the form was drawn from: the change it submits is computed against these, so a
    // change made elsewhere meanwhile is kept (see `app_update`).
    let shown: String = grantable()
        .filter(|d| held.contains(Scope::from_bits(1u64 << d.bit)))
        .map(|d| {
            format!(
                "<input type=\"hidden\" name=\"held\" value=\"{}\">",
                esc(&d.name)
            )
        })
        .collect();
    // Stored as the midnight that ends the chosen day; shown as that day.
    let expiry = grant
        .and_then(|g| g.expires)
        .map(|e| date(e.saturating_sub(1)))
        .unwrap_or_default();
    let path = app_path(app);
    let record = state.mirror.record(app).await.ok().flatten();
    let registry = match &record {
        Some(r) => {
            let current = r.keys.last();
            let fingerprint = current
                .map(|k| hex::encode(&blake3::hash(k.key.as_bytes()).as_bytes()[..8]))
                .unwrap_or_default();
            let warning = if r.keys.iter().any(|k| k.compromised.is_some()) {
                "<p class=\"error\" role=\"alert\"><strong>Warning:</strong> a key of this \
                 application is marked compromised in the registry. Cartes it signed with that \
                 key are refused, but whoever held it may have acted before; consider revoking.</p>"
            } else {
                ""
            };
            format!(
                "<h2>What the registry says</h2>{warning}<dl><dt>Node URI</dt><dd>{}</dd>\
                 <dt>Registered since</dt><dd>{}</dd><dt>Current key fingerprint</dt><dd><code>{}</code></dd></dl>",
                esc(&r.node_uri),
                when(r.created),
                esc(&fingerprint)
            )
        }
        None => "<h2>What the registry says</h2><p>This name is not in the registry.</p>".into(),
    };
    let rows: String = history
        .iter()
        .rev()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                when(e.at),
                esc(&e.actor),
                esc(&e.action),
                esc(&scopes.format(Scope::from_bits(e.old_scope))),
                esc(&scopes.format(Scope::from_bits(e.new_scope))),
                esc(e.address.as_deref().unwrap_or(""))
            )
        })
        .collect();
    let pending: Vec<_> = outbox
        .iter()
        .filter(|o| {
            Notification::decode(&o.body)
                .ok()
                .is_some_and(|(n, _)| n.owner == s.owner && &n.application == app)
        })
        .collect();
    let dropped = history
        .iter()
        .rev()
        .find(|e| e.action.starts_with("notification "))
        .map(|e| e.action.clone());
    let delivery = if let Some(p) = pending.first() {
        format!(
            "Pending: {} notification(s) waiting; attempts so far {}{}.",
            pending.len(),
            p.attempts,
            p.last_error
                .as_deref()
                .map(|e| format!(", last error: {}", esc(e)))
                .unwrap_or_default()
        )
    } else if let Some(d) = dropped {
        format!("Given up: {}.", esc(&d))
    } else {
        "Delivered: no notification is waiting.".to_owned()
    };
    let body = format!(
        "<main><h1>{name}</h1>{nav}\
         <h2>What it may do</h2>\
         <form method=\"post\" action=\"/grants/{path}\">{csrf}{shown}\
         <input type=\"hidden\" name=\"held_expires\" value=\"{expiry}\">\
         <fieldset><legend>Scopes granted to {name}</legend><ul class=\"scopes\">{boxes}</ul>{others}</fieldset>\
         <label for=\"expires\">Expires after (leave empty for never)</label>\
         <input type=\"date\" id=\"expires\" name=\"expires\" value=\"{expiry}\">\
         <button type=\"submit\">Save</button></form>\
         <p><a href=\"/grants/{path}/revoke\">Revoke this grant…</a></p>\
         {registry}\
         <h2>Notifications</h2><p>{delivery}</p>\
         <h2>History</h2><table><caption>Changes to this grant, newest first</caption><thead><tr>\
         <th scope=\"col\">Time</th><th scope=\"col\">Who</th><th scope=\"col\">Action</th>\
         <th scope=\"col\">Before</th><th scope=\"col\">After</th><th scope=\"col\">Address</th></tr></thead>\
         <tbody>{rows}</tbody></table></main>",
        name = esc(app.as_str()),
        nav = nav(state, &s),
        csrf = csrf_field(&s, &format!("grant:{app}")),
    );
    Ok(page(StatusCode::OK, app.as_str(), &body))
}

/// Applies a change made in the console, by the owner in person: the node's operation, as
/// the grant API applies it.
pub(super) async fn change(
    state: &NodeState,
    owner: &Name,
    app: &Name,
    edit: Edit,
    peer: SocketAddr,
) -> Result<crate::node::grants::Outcome, ApiError> {
    crate::node::grants::change(
        state,
        owner,
        app,
        edit,
        "owner",
        Some(peer.ip().to_string()),
    )
    .await
    .map_err(ApiError::failed)
}

/// `POST /grants/{app}`: narrow or widen the grant, and set or clear its expiry.
///
/// The form says what it was drawn from (`held`, `held_expires`), and the change is the
/// difference between that and what was chosen, applied by the writer to the grant as it is
/// then: a scope granted elsewhere after the page was drawn stays granted. A post without
/// `held_expires` sets the scope and expiry it gives, as they are.
pub async fn app_update(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
    app: &Name,
) -> Result<Response<Body>, ApiError> {
    let (s, fields) = match checked_post(state, req, &format!("grant:{app}")).await? {
        Ok(ok) => ok,
        Err(refused) => return Ok(refused),
    };
    let values = |key: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let scope = state.config.scopes.parse_list(&values("scope"))?;
    let held = state.config.scopes.parse_list(&values("held"))?;
    if scope.contains(Scope::GRANT) {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "grant.scope-not-grantable",
            "the grant scope cannot be given to an application",
        ));
    }
    for key in ["expires", "held_expires"] {
        if values(key).len() > 1 {
            return Ok(error_page(
                StatusCode::BAD_REQUEST,
                "request.duplicate-parameter",
                &format!("{key} is given more than once"),
            ));
        }
    }
    let now = state.config.clock.now();
    let chosen_date = field(&fields, "expires").unwrap_or("").trim();
    let expires = match chosen_date {
        "" => None,
        text => match parse_date(text) {
            Some(t) if t > now => Some(t),
            _ => {
                return Ok(error_page(
                    StatusCode::BAD_REQUEST,
                    "grant.bad-expiry",
                    "the expiry must be a date (YYYY-MM-DD) in the future",
                ))
            }
        },
    };
    if state.mirror.record(app).await.ok().flatten().is_none() {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            "name.unknown",
            "this application is not in the registry",
        ));
    }
    let edit = match field(&fields, "held_expires") {
        Some(shown) => Edit::Delta {
            add: scope.difference(held),
            remove: held.difference(scope),
            expires: if shown.trim() == chosen_date {
                Expiry::Keep
            } else {
                Expiry::Set(expires)
            },
        },
        None => Edit::Set {
            scope,
            expires: Expiry::Set(expires),
        },
    };
    change(state, &s.owner, app, edit, peer).await?;
    Ok(see_other(&format!("/grants/{}", app_path(app))))
}

/// `GET /grants/{app}/revoke`: the confirmation step.
pub async fn revoke_confirm(
    state: &NodeState,
    req: &Request<Incoming>,
    app: &Name,
) -> Result<Response<Body>, ApiError> {
    let s = match logged_in(state, req).await? {
        Ok(s) => s,
        Err(to_login) => return Ok(to_login),
    };
    Ok(page(
        StatusCode::OK,
        "Revoke?",
        &format!(
            "<main><h1>Revoke {name}’s grant?</h1>{nav}<p>{name} will not be able to act for you \
             any more; its next request is refused.</p>\
             <form method=\"post\" action=\"/grants/{path}/revoke\">{csrf}\
             <button type=\"submit\">Revoke</button></form><p><a href=\"/grants/{path}\">Cancel</a></p></main>",
            name = esc(app.as_str()),
            nav = nav(state, &s),
            path = app_path(app),
            csrf = csrf_field(&s, &format!("revoke:{app}")),
        ),
    ))
}

/// `POST /grants/{app}/revoke`.
pub async fn revoke(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
    app: &Name,
) -> Result<Response<Body>, ApiError> {
    let (s, _) = match checked_post(state, req, &format!("revoke:{app}")).await? {
        Ok(ok) => ok,
        Err(refused) => return Ok(refused),
    };
    change(
        state,
        &s.owner,
        app,
        Edit::Revoke { must_exist: false },
        peer,
    )
    .await?;
    Ok(see_other("/"))
}
