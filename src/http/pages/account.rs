//! The owner's account pages (revoke everything, sessions, password) and the administrator's
//! node page, part of
//! the console (see [`crate::http::pages::console`] for the rules every console page follows).

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::auth;
use crate::http::pages::console::{
    checked_post, csrf_field, is_admin, logged_in, nav, plain_words, when,
};
use crate::http::pages::console_grant::change;
use crate::http::pages::html::{error_page, html, page, see_other};
use crate::http::pages::login::{field, PasswordCheck};
use crate::http::{ApiError, Body};
use crate::node::NodeState;
use crate::store::{self, owners::Session};

/// `GET /sessions`.
pub async fn sessions(
    state: &NodeState,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let s = match logged_in(state, req).await? {
        Ok(s) => s,
        Err(to_login) => return Ok(to_login),
    };
    let (owner, now) = (s.owner.clone(), state.config.clock.now());
    let list = state
        .db
        .run(move |c| store::sessions::list(c, &owner, now).map_err(ApiError::from))
        .await?;
    Ok(page(
        StatusCode::OK,
        "Sessions",
        html! {
            main {
                h1 { "Where you are logged in" }
                (nav(state, &s))
                table {
                    caption { "Your sessions" }
                    thead { tr {
                        th scope="col" { "Started" } th scope="col" { "Last seen" }
                        th scope="col" { "Address" } th scope="col" { "Browser" }
                    } }
                    tbody {
                        @for i in &list {
                            tr {
                                td {
                                    (when(i.created))
                                    @if i.id_hash == s.id_hash { " (this browser)" }
                                }
                                td { (i.last_seen.map(when).unwrap_or_default()) }
                                td { (i.address.as_deref().unwrap_or("")) }
                                td { (i.user_agent.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
                form method="post" action="/sessions/end-others" {
                    (csrf_field(&s, "end-others"))
                    button type="submit" { "Log out everywhere else" }
                }
            }
        },
    ))
}

/// `POST /sessions/end-others`.
pub async fn end_others(
    state: &NodeState,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (s, _) = match checked_post(state, req, "end-others").await? {
        Ok(ok) => ok,
        Err(refused) => return Ok(refused),
    };
    let (owner, keep) = (s.owner.clone(), s.id_hash);
    state
        .db
        .run(move |c| store::sessions::end_others(c, &owner, &keep).map_err(ApiError::from))
        .await?;
    Ok(see_other("/sessions"))
}

/// `GET /password`.
pub async fn password_form(
    state: &NodeState,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let s = match logged_in(state, req).await? {
        Ok(s) => s,
        Err(to_login) => return Ok(to_login),
    };
    Ok(password_page(state, &s, StatusCode::OK, None))
}

fn password_page(
    state: &NodeState,
    s: &Session,
    status: StatusCode,
    error: Option<&str>,
) -> Response<Body> {
    page(
        status,
        "Change your password",
        html! {
            main {
                h1 { "Change your password" }
                (nav(state, s))
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/password" {
                    (csrf_field(s, "password"))
                    label for="current" { "Current password" }
                    input type="password" id="current" name="current" autocomplete="current-password" required;
                    label for="new" { "New password (at least 8 characters)" }
                    input type="password" id="new" name="new" autocomplete="new-password" required;
                    button type="submit" { "Change password" }
                }
                p.note { "Every other session ends when the password changes." }
            }
        },
    )
}

/// `POST /password`: needs the current password; ends every other session.
pub async fn password_change(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (s, fields) = match checked_post(state, req, "password").await? {
        Ok(ok) => ok,
        Err(refused) => return Ok(refused),
    };
    let current = field(&fields, "current").unwrap_or("").to_owned();
    let new = field(&fields, "new").unwrap_or("").to_owned();
    if let Err(why) = auth::check_new_password(&new) {
        return Ok(password_page(state, &s, StatusCode::BAD_REQUEST, Some(why)));
    }
    let who = s.owner.clone();
    let stored = state
        .db
        .run(move |c| store::owners::owner(c, &who).map_err(ApiError::from))
        .await?
        .and_then(|o| o.password_hash);
    let checked = stored.clone();
    // The current password is checked like a login's: counted first, then gated.
    match crate::http::pages::login::check_password(state, &s.owner, peer.ip(), current, stored)
        .await
    {
        PasswordCheck::Right => {}
        PasswordCheck::Refused(resp) => return Ok(resp),
        PasswordCheck::Wrong => {
            return Ok(password_page(
                state,
                &s,
                StatusCode::UNAUTHORIZED,
                Some("the current password is not right"),
            ))
        }
    }
    let phc = match state.hash_gate.run(move || auth::hash_password(&new)).await {
        Ok(phc) => phc.map_err(ApiError::internal)?,
        Err(auth::Busy) => return Ok(crate::http::pages::login::busy()),
    };
    let (owner, keep) = (s.owner.clone(), s.id_hash);
    // Written only if the hash is still the one the current password was checked against:
    // two changes racing with the same current password cannot both be acknowledged.
    let replaced = state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            if !store::owners::replace_password(&tx, &owner, checked.as_deref(), &phc)? {
                return Ok::<_, ApiError>(false);
            }
            store::sessions::end_others(&tx, &owner, &keep)?;
            tx.commit()?;
            Ok(true)
        })
        .await?;
    if !replaced {
        return Ok(password_page(
            state,
            &s,
            StatusCode::CONFLICT,
            Some("the password was changed meanwhile; nothing was changed now"),
        ));
    }
    Ok(page(
        StatusCode::OK,
        "Password changed",
        html! {
            main {
                h1 { "Password changed" }
                (nav(state, &s))
                p { "Your other sessions have ended." }
            }
        },
    ))
}

/// `GET /admin`: owners, controllers and the registry mirror, for the node's administrator.
pub async fn admin(state: &NodeState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let s = match logged_in(state, req).await? {
        Ok(s) => s,
        Err(to_login) => return Ok(to_login),
    };
    if !is_admin(state, &s.owner) {
        return Ok(error_page(
            StatusCode::FORBIDDEN,
            "console.not-admin",
            "only the node's administrator may see this page",
        ));
    }
    let (owners, controllers) = state
        .db
        .run(|c| {
            let names = store::owners::owner_names(c)?;
            let mut owners = Vec::new();
            for n in names {
                if let Some(o) = store::owners::owner(c, &n)? {
                    owners.push(o);
                }
            }
            Ok::<_, ApiError>((owners, store::controllers::list(c)?))
        })
        .await?;
    let fault = state
        .mirror
        .db()
        .run(|c| store::registry::latest_fault(c))
        .await?;
    let m = state.mirror.status();
    let body = html! {
        main {
            h1 { "This node" }
            (nav(state, &s))
            h2 { "Owners" }
            table {
                caption { "Owners on this node" }
                thead { tr {
                    th scope="col" { "Owner" } th scope="col" { "Managed by" }
                    th scope="col" { "Since" }
                } }
                tbody {
                    @for o in &owners {
                        tr {
                            td { (o.name.as_str()) }
                            td { (o.controller.as_ref().map_or("— (the node)", |c| c.as_str())) }
                            td { (when(o.created)) }
                        }
                    }
                }
            }
            h2 { "Controllers" }
            table {
                caption { "Platforms that create and drive owners" }
                thead { tr { th scope="col" { "Controller" } th scope="col" { "May at most" } } }
                tbody {
                    @for c in &controllers {
                        tr { td { (c.name.as_str()) } td { (plain_words(state, c.max_scope)) } }
                    }
                }
            }
            h2 { "Registry mirror" }
            @match (&m.degraded, &fault) {
                (Some(_), Some((at, reason, _))) => {
                    p.error role="alert" {
                        strong { "The registry misbehaved." }
                        " On " (when(*at)) " the mirror refused what the registry sent: " (reason)
                        ". The evidence is kept in the database (table " code { "registry_faults" }
                        "); the mirror serves what it verified before. Tell the registry's \
                         operators and other node owners, and keep the evidence."
                    }
                }
                (Some(d), None) => { p.error role="alert" { "Degraded: " (d) } }
                _ => { p { "Healthy: every checkpoint verified." } }
            }
            dl {
                dt { "Entries verified" } dd { (m.size) }
                dt { "Registry size" } dd { (m.registry_size) }
                dt { "Last sync" } dd { (m.last_sync.map(when).unwrap_or_else(|| "never".into())) }
                dt { "Last error" } dd { (m.last_error.as_deref().unwrap_or("none")) }
            }
        }
    };
    Ok(page(StatusCode::OK, "This node", body))
}

/// `GET /revoke-all`: the confirmation, naming how many applications lose access.
pub async fn revoke_all_confirm(
    state: &NodeState,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let s = match logged_in(state, req).await? {
        Ok(s) => s,
        Err(to_login) => return Ok(to_login),
    };
    let owner = s.owner.clone();
    let now = state.config.clock.now();
    let n = state
        .db
        .run(move |c| store::grants::grants(c, &owner).map_err(ApiError::from))
        .await?
        .iter()
        .filter(|(_, g)| !g.effective(now).is_empty())
        .count();
    if n == 0 {
        return Ok(page(
            StatusCode::OK,
            "Nothing to revoke",
            html! {
                main {
                    h1 { "Nothing to revoke" }
                    (nav(state, &s))
                    p { "No application holds a grant from you, so there is nothing to revoke." }
                    p { a href="/" { "Back to your grants" } }
                }
            },
        ));
    }
    Ok(page(
        StatusCode::OK,
        "Revoke every grant?",
        html! {
            main {
                h1 { "Revoke every grant?" }
                (nav(state, &s))
                p {
                    (n) " application" @if n != 1 { "s" }
                    " will lose access to your account at once."
                }
                form method="post" action="/revoke-all" {
                    (csrf_field(&s, "revoke-all"))
                    button type="submit" { "Revoke all " (n) }
                }
                p { a href="/" { "Cancel" } }
            }
        },
    ))
}

/// `POST /revoke-all`.
pub async fn revoke_all(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (s, _) = match checked_post(state, req, "revoke-all").await? {
        Ok(ok) => ok,
        Err(refused) => return Ok(refused),
    };
    let owner = s.owner.clone();
    let all = state
        .db
        .run(move |c| store::grants::grants(c, &owner).map_err(ApiError::from))
        .await?;
    for (app, _) in &all {
        change(
            state,
            &s.owner,
            app,
            crate::node::grants::Edit::Revoke { must_exist: false },
            peer,
        )
        .await?;
    }
    Ok(see_other("/"))
}
