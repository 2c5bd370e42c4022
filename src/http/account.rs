//! The owner's account pages (revoke everything, sessions, password) and the administrator's
//! node page, part of
//! the console (see [`super::console`] for the rules every console page follows).

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::console::{checked_post, csrf_field, is_admin, logged_in, nav, plain_words, when};
use super::console_grant::change;
use super::html::{error_page, esc, page, see_other};
use super::login::{field, PasswordCheck};
use super::{ApiError, Body};
use crate::auth;
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
    let rows: String = list
        .iter()
        .map(|i| {
            let this = if i.id_hash == s.id_hash {
                " (this browser)"
            } else {
                ""
            };
            format!(
                "<tr><td>{}{this}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                when(i.created),
                i.last_seen.map(when).unwrap_or_default(),
                esc(i.address.as_deref().unwrap_or("")),
                esc(i.user_agent.as_deref().unwrap_or("")),
            )
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        "Sessions",
        &format!(
            "<main><h1>Where you are logged in</h1>{}<table><caption>Your sessions</caption><thead><tr>\
             <th scope=\"col\">Started</th><th scope=\"col\">Last seen</th><th scope=\"col\">Address</th>\
             <th scope=\"col\">Browser</th></tr></thead><tbody>{rows}</tbody></table>\
             <form method=\"post\" action=\"/sessions/end-others\">{}\
             <button type=\"submit\">Log out everywhere else</button></form></main>",
            nav(state, &s),
            csrf_field(&s, "end-others"),
        ),
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
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        status,
        "Change your password",
        &format!(
            "<main><h1>Change your password</h1>{}{error}<form method=\"post\" action=\"/password\">{}\
             <label for=\"current\">Current password</label>\
             <input type=\"password\" id=\"current\" name=\"current\" autocomplete=\"current-password\" required>\
             <label for=\"new\">New password (at least 8 characters)</label>\
             <input type=\"password\" id=\"new\" name=\"new\" autocomplete=\"new-password\" required>\
             <button type=\"submit\">Change password</button></form>\
             <p class=\"note\">Every other session ends when the password changes.</p></main>",
            nav(state, s),
            csrf_field(s, "password"),
        ),
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
    match super::login::check_password(state, &s.owner, peer.ip(), current, stored).await {
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
        Err(auth::Busy) => return Ok(super::login::busy()),
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
        &format!(
            "<main><h1>Password changed</h1>{}<p>Your other sessions have ended.</p></main>",
            nav(state, &s)
        ),
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
    let owner_rows: String = owners
        .iter()
        .map(|o| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(o.name.as_str()),
                esc(o.controller.as_ref().map_or("— (the node)", |c| c.as_str())),
                when(o.created)
            )
        })
        .collect();
    let controller_rows: String = controllers
        .iter()
        .map(|c| {
            format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(c.name.as_str()),
                plain_words(state, c.max_scope)
            )
        })
        .collect();
    let m = state.mirror.status();
    let health = match (&m.degraded, fault) {
        (Some(_), Some((at, reason, _))) => format!(
            "<p class=\"error\" role=\"alert\"><strong>The registry misbehaved.</strong> On {} the \
             mirror refused what the registry sent: {}. The evidence is kept in the database \
             (table <code>registry_faults</code>); the mirror serves what it verified before. \
             Tell the registry's operators and other node owners, and keep the evidence.</p>",
            when(at),
            esc(&reason)
        ),
        (Some(d), None) => format!("<p class=\"error\" role=\"alert\">Degraded: {}</p>", esc(d)),
        _ => "<p>Healthy: every checkpoint verified.</p>".to_owned(),
    };
    let body = format!(
        "<main><h1>This node</h1>{}\
         <h2>Owners</h2><table><caption>Owners on this node</caption><thead><tr><th scope=\"col\">Owner</th>\
         <th scope=\"col\">Managed by</th><th scope=\"col\">Since</th></tr></thead><tbody>{owner_rows}</tbody></table>\
         <h2>Controllers</h2><table><caption>Platforms that create and drive owners</caption><thead><tr>\
         <th scope=\"col\">Controller</th><th scope=\"col\">May at most</th></tr></thead><tbody>{controller_rows}</tbody></table>\
         <h2>Registry mirror</h2>{health}<dl><dt>Entries verified</dt><dd>{}</dd><dt>Registry size</dt><dd>{}</dd>\
         <dt>Last sync</dt><dd>{}</dd><dt>Last error</dt><dd>{}</dd></dl></main>",
        nav(state, &s),
        m.size,
        m.registry_size,
        m.last_sync.map(when).unwrap_or_else(|| "never".into()),
        esc(m.last_error.as_deref().unwrap_or("none")),
    );
    Ok(page(StatusCode::OK, "This node", &body))
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
            &format!(
                "<main><h1>Nothing to revoke</h1>{}<p>No application holds a grant from you,                  so there is nothing to revoke.</p><p><a href=\"/\">Back to your grants</a></p></main>",
                nav(state, &s),
            ),
        ));
    }
    Ok(page(
        StatusCode::OK,
        "Revoke every grant?",
        &format!(
            "<main><h1>Revoke every grant?</h1>{}<p>{n} application{} will lose access to your \
             account at once.</p><form method=\"post\" action=\"/revoke-all\">{}\
             <button type=\"submit\">Revoke all {n}</button></form><p><a href=\"/\">Cancel</a></p></main>",
            nav(state, &s),
            if n == 1 { "" } else { "s" },
            csrf_field(&s, "revoke-all"),
        ),
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
