//! The console's page for one application's grant: what it holds and what the registry says
//! of the application, its history and its notifications' delivery; the form that narrows,
//! widens or expires it, and revoking it (after a confirmation page). The shared console
//! pieces (session check, CSRF fields, navigation) are [`super::console`]'s.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::console::*;
use super::html::{error_page, esc, page, see_other};
use super::login::field;
use super::{ApiError, Body};
use crate::grant::statement::Notification;
use crate::name::Name;
use crate::node::grants::{Edit, Expiry};
use crate::node::NodeState;
use crate::scope::Scope;
use crate::store;

/// What a name needs escaped in a path segment: everything but the unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(super) fn app_path(app: &Name) -> String {
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
