//! The console's page for one application's grant: what it holds and what the registry says
//! of the application, its history and its notifications' delivery; the form that narrows,
//! widens or expires it, and revoking it (after a confirmation page). The shared console
//! pieces (session check, CSRF fields, navigation) are [`crate::http::pages::console`]'s.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::grant::statement::Notification;
use crate::http::pages::console::*;
use crate::http::pages::html::{error_page, html, page, see_other, Markup};
use crate::http::pages::login::field;
use crate::http::{ApiError, Body};
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

pub(crate) fn app_path(app: &Name) -> String {
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
    let checkbox = |d: &crate::scope::ScopeDef| -> Markup {
        let bit = Scope::from_bits(1u64 << d.bit);
        html! {
            li { label {
                input type="checkbox" name="scope" value=(d.name) checked[held.contains(bit)];
                " " (d.description)
            } }
        }
    };
    let grantable = || scopes.defs().filter(|d| d.name != "grant");
    let in_first = |d: &&crate::scope::ScopeDef| first.contains(Scope::from_bits(1u64 << d.bit));
    let boxes: Vec<Markup> = grantable().filter(in_first).map(checkbox).collect();
    let others: Vec<Markup> = grantable().filter(|d| !in_first(d)).map(checkbox).collect();
    // What the form was drawn from: the change it submits is computed against these, so a
    // change made elsewhere meanwhile is kept (see `app_update`).
    let shown: Vec<&str> = grantable()
        .filter(|d| held.contains(Scope::from_bits(1u64 << d.bit)))
        .map(|d| d.name.as_str())
        .collect();
    // Stored as the midnight that ends the chosen day; shown as that day.
    let expiry = grant
        .and_then(|g| g.expires)
        .map(|e| date(e.saturating_sub(1)))
        .unwrap_or_default();
    let path = app_path(app);
    let record = state.mirror.record(app).await.ok().flatten();
    let registry = html! {
        h2 { "What the registry says" }
        @match &record {
            Some(r) => {
                @if r.keys.iter().any(|k| k.compromised.is_some()) {
                    p.error role="alert" {
                        strong { "Warning:" }
                        " a key of this application is marked compromised in the registry. \
                         Cartes it signed with that key are refused, but whoever held it may \
                         have acted before; consider revoking."
                    }
                }
                dl {
                    dt { "Node URI" } dd { (r.node_uri) }
                    dt { "Registered since" } dd { (when(r.created)) }
                    dt { "Current key fingerprint" }
                    dd { code { (r.keys.last().map(|k| hex::encode(&blake3::hash(k.key.as_bytes()).as_bytes()[..8])).unwrap_or_default()) } }
                }
            }
            None => { p { "This name is not in the registry." } }
        }
    };
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
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        )
    } else if let Some(d) = dropped {
        format!("Given up: {d}.")
    } else {
        "Delivered: no notification is waiting.".to_owned()
    };
    let name = app.as_str();
    let body = html! {
        main {
            h1 { (name) }
            (nav(state, &s))
            h2 { "What it may do" }
            form method="post" action={ "/grants/" (path) } {
                (csrf_field(&s, &format!("grant:{app}")))
                @for held in &shown { input type="hidden" name="held" value=(held); }
                input type="hidden" name="held_expires" value=(expiry);
                fieldset {
                    legend { "Scopes granted to " (name) }
                    ul.scopes {
                        @if boxes.is_empty() { li { "It holds nothing now." } }
                        @for b in &boxes { (b) }
                    }
                    @if !others.is_empty() {
                        details {
                            summary { "Other scopes this node knows" }
                            ul.scopes { @for b in &others { (b) } }
                        }
                    }
                }
                label for="expires" { "Expires after (leave empty for never)" }
                input type="date" id="expires" name="expires" value=(expiry);
                button type="submit" { "Save" }
            }
            p { a href={ "/grants/" (path) "/revoke" } { "Revoke this grant…" } }
            (registry)
            h2 { "Notifications" }
            p { (delivery) }
            h2 { "History" }
            table {
                caption { "Changes to this grant, newest first" }
                thead { tr {
                    th scope="col" { "Time" } th scope="col" { "Who" } th scope="col" { "Action" }
                    th scope="col" { "Before" } th scope="col" { "After" } th scope="col" { "Address" }
                } }
                tbody {
                    @for e in history.iter().rev() {
                        tr {
                            td { (when(e.at)) }
                            td { (e.actor) }
                            td { (e.action) }
                            td { (scopes.format(Scope::from_bits(e.old_scope))) }
                            td { (scopes.format(Scope::from_bits(e.new_scope))) }
                            td { (e.address.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(StatusCode::OK, app.as_str(), body))
}

/// Applies a change made in the console, by the owner in person: the node's operation, as
/// the grant API applies it.
pub(crate) async fn change(
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
        html! {
            main {
                h1 { "Revoke " (app.as_str()) "’s grant?" }
                (nav(state, &s))
                p {
                    (app.as_str())
                    " will not be able to act for you any more; its next request is refused."
                }
                form method="post" action={ "/grants/" (app_path(app)) "/revoke" } {
                    (csrf_field(&s, &format!("revoke:{app}")))
                    button type="submit" { "Revoke" }
                }
                p { a href={ "/grants/" (app_path(app)) } { "Cancel" } }
            }
        },
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
