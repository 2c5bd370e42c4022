//! Controlled accounts: a platform (a designated controller) creates owners, removes them,
//! and logs them in to this node's pages (proxy login); and, when the administrator opens it,
//! public sign-up.
//!
//! A controller authenticates with a carte it signs, addressed to this node's name. It only
//! ever controls the owners it created. CORS on `POST /auth/login` is allowed only for origins
//! listed in `cors_origins`, with credentials, never `*`.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::auth;
use crate::carte::CarteError;
use crate::http::api::access::{authorize, carte_header};
use crate::http::pages::html::{error_page, html, page, see_other};
use crate::http::pages::login::{field, form};
use crate::http::response::{json_value, read_body};
use crate::http::session::{self, LOGIN_COOKIE};
use crate::http::{ApiError, Body};
use crate::name::Name;
use crate::node::owners::{create_owner, OwnerError};
use crate::node::NodeState;
use crate::scope::Scope;
use crate::store::{self, controllers::Controller};

impl From<OwnerError> for ApiError {
    fn from(e: OwnerError) -> ApiError {
        let status = match &e {
            OwnerError::Exists(_) | OwnerError::Taken(_) => StatusCode::CONFLICT,
            OwnerError::Registry(_) => StatusCode::SERVICE_UNAVAILABLE,
            OwnerError::Other(_) => return ApiError::internal(e),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// The designated controller that signed the request's carte (addressed to this node).
async fn controller(
    state: &NodeState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Controller, ApiError> {
    let wire = match carte_header(headers) {
        Some(w) => w?,
        None => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "carte.missing",
                "send Authorization: Carte <controller carte>",
            ))
        }
    };
    let verified = state.verify_carte(wire, peer).await?;
    let c = verified.carte();
    if c.audience.is_none() || c.audience != state.node_name() {
        return Err(CarteError::WrongNode.into());
    }
    let signer = c.owner.clone();
    state
        .db
        .run(move |conn| store::controllers::get(conn, &signer).map_err(ApiError::from))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "controller.unknown",
                format!("{} is not a controller on this node", c.owner),
            )
        })
}

fn owner_json(state: &NodeState, o: &store::owners::Owner) -> serde_json::Value {
    json!({
        "name": o.name,
        "controller": o.controller,
        "email": o.email,
        "created": o.created,
        "node_uri": format!("{}/", state.public_url),
        "password_set": o.password_hash.is_some(),
    })
}

/// `POST /api/owners` `{"name", "email"?}`.
pub async fn create(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let ctrl = controller(state, req.headers(), peer).await?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewOwner {
        name: String,
        email: Option<String>,
    }
    let body = read_body(req, 4096, "request.too-large").await?;
    let new: NewOwner = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "request.malformed",
            format!("expected {{\"name\", \"email\"?}}: {e}"),
        )
    })?;
    let name = Name::parse(&new.name)?;
    if let Some(email) = &new.email {
        let plausible = email.len() <= 254
            && email
                .split_once('@')
                .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !plausible {
            return Err(ApiError::bad_request(
                "owner.bad-email",
                "not an e-mail address",
            ));
        }
    }
    let owner = create_owner(state, &name, Some(ctrl.name.clone()), new.email).await?;
    tracing::info!(owner = %name, controller = %ctrl.name, "controller created an owner");
    Ok(json_value(StatusCode::CREATED, &owner_json(state, &owner)))
}

/// `DELETE /api/owners/{name}`: removes an owner this controller created.
pub async fn delete(
    state: &NodeState,
    peer: SocketAddr,
    req: &Request<Incoming>,
    raw: &str,
) -> Result<Response<Body>, ApiError> {
    let ctrl = controller(state, req.headers(), peer).await?;
    let name = Name::parse(&crate::http::response::path_segment(raw)?)?;
    let who = name.clone();
    let owner = state
        .db
        .run(move |c| store::owners::owner(c, &who).map_err(ApiError::from))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "owner.unknown", "no such owner"))?;
    if owner.controller.as_ref() != Some(&ctrl.name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "controller.not-yours",
            format!("{name} was not created by {}", ctrl.name),
        ));
    }
    let (who, by) = (name.clone(), ctrl.name.clone());
    let deleted = state
        .write_announced(
            crate::node::coherence::Change::Owner(who.to_string()),
            move |c| store::controllers::delete_owner(c, &who, &by),
        )
        .await?;
    if !deleted {
        // Removed meanwhile by another request: the check above is re-made by the delete.
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "owner.unknown",
            "no such owner",
        ));
    }
    state
        .owners
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&name);
    state.grants.invalidate_owner(&name);
    Ok(json_value(StatusCode::OK, &json!({ "deleted": name })))
}

/// The CORS headers for an allowed origin; `Err` for an origin that is not listed.
fn cors(state: &NodeState, headers: &HeaderMap) -> Result<Option<HeaderValue>, ApiError> {
    let refuse = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cors.origin-not-allowed",
            "this origin may not call this endpoint",
        )
    };
    let Some(origin) = crate::http::response::single_header(headers, "origin", refuse)? else {
        return Ok(None);
    };
    let listed = origin
        .to_str()
        .ok()
        .filter(|o| state.config.cors_origins.iter().any(|c| c == o));
    match listed {
        Some(_) => Ok(Some(origin.clone())),
        None => Err(refuse()),
    }
}

fn with_cors(resp: &mut Response<Body>, origin: Option<HeaderValue>) {
    if let Some(o) = origin {
        let h = resp.headers_mut();
        h.insert("access-control-allow-origin", o);
        h.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
        h.insert("vary", HeaderValue::from_static("Origin"));
    }
}

/// `OPTIONS /auth/login`: the CORS preflight.
pub fn preflight(state: &NodeState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let origin = cors(state, req.headers())?;
    let mut resp = json_value(StatusCode::NO_CONTENT, &json!({}));
    *resp.body_mut() = Default::default();
    with_cors(&mut resp, origin);
    let h = resp.headers_mut();
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert("access-control-max-age", HeaderValue::from_static("600"));
    Ok(resp)
}

/// `POST /auth/login` with a controller carte whose subject is the owner: sets that owner's
/// session cookie. An optional `{"redirect_after_login": URL}` must point into this node.
pub async fn proxy_login(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let origin = cors(state, req.headers())?;
    let principal = authorize(state, req.headers(), peer, Scope::NONE).await?;
    if !principal.controller {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "controller.subject-required",
            "proxy login needs a controller carte whose subject is the owner",
        ));
    }
    let body = read_body(req, 4096, "request.too-large").await?;
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Login {
        redirect_after_login: Option<String>,
    }
    let login: Login = if body.is_empty() {
        Login::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "request.malformed",
                format!("expected {{\"redirect_after_login\"?}}: {e}"),
            )
        })?
    };
    let redirect = match login.redirect_after_login {
        Some(url) => Some(into_this_node(state, &url)?),
        None => None,
    };
    let cookie = session::start_cross_site(state, &principal.owner).await?;
    // A browser that blocks third-party cookies (most do, or will) does not keep the cookie
    // above: it came from a cross-site response. The login link does not depend on it: the
    // platform sends the browser there, a top-level navigation to this node, which sets its
    // own first-party cookie and continues to `redirect`.
    let (token, hash) = auth::new_token();
    let now = state.config.clock.now();
    let who = principal.owner.clone();
    let to = redirect.clone().unwrap_or_else(|| "/".to_owned());
    state
        .db
        .run(move |c| {
            store::owners::insert_login_token(
                c,
                &hash,
                &who,
                &to,
                now + store::owners::LOGIN_TOKEN_TTL,
            )
            .map_err(ApiError::from)
        })
        .await?;
    let mut resp = json_value(
        StatusCode::OK,
        &json!({
            "owner": principal.owner,
            "expires": now + state.config.session_ttl,
            "redirect": redirect,
            "login_url": format!("{}/auth/continue?token={token}", state.public_url),
        }),
    );
    session::set_cookie(&mut resp, cookie);
    with_cors(&mut resp, origin);
    Ok(resp)
}

/// `url` if it points into this node (same origin, a path); otherwise `login.bad-redirect`.
pub fn into_this_node(state: &NodeState, url: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "login.bad-redirect",
            "redirect_after_login must point into this node",
        )
    };
    let rest = url
        .strip_prefix(state.public_url.as_str())
        .ok_or_else(bad)?;
    if !rest.starts_with('/')
        || rest.starts_with("//")
        || rest.contains('\\')
        || rest.chars().any(|c| c.is_control() || c == '@')
    {
        return Err(bad());
    }
    Ok(url.to_owned())
}

/// `GET /signup`, open only with `public_registration = true`.
pub fn signup_form(state: &NodeState) -> Result<Response<Body>, ApiError> {
    if !state.config.public_registration {
        return Ok(closed());
    }
    let (csrf, _) = auth::new_token();
    let mut resp = page(
        StatusCode::OK,
        "Sign up",
        html! {
            h1 { "Create an account" }
            form method="post" action="/signup" {
                label for="name" { "Name" }
                input type="text" id="name" name="name" required;
                label for="password" { "Password (at least 8 characters)" }
                input type="password" id="password" name="password" autocomplete="new-password" required;
                input type="hidden" name="login_csrf" value=(csrf);
                button type="submit" { "Sign up" }
            }
        },
    );
    // Scoped to /signup as the login form's is to /login: with `Path=/` a browser that
    // opened this page sent two `gn_login` cookies to /login, which refuses duplicates, so
    // logging in failed for an hour.
    session::set_cookie(
        &mut resp,
        session::cookie_header(state, LOGIN_COOKIE, &csrf, 3600, "/signup")?,
    );
    Ok(resp)
}

fn closed() -> Response<Body> {
    error_page(
        StatusCode::NOT_FOUND,
        "registration.closed",
        "this node does not take sign-ups",
    )
}

/// `POST /signup`.
pub async fn signup(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if !state.config.public_registration {
        return Ok(closed());
    }
    session::check_origin(state, req.headers())?;
    let headers = req.headers().clone();
    let form = form(req).await?;
    let sent = field(&form, "login_csrf").unwrap_or("");
    if sent.is_empty() || !auth::same(sent, session::cookie(&headers, LOGIN_COOKIE).unwrap_or("")) {
        return Ok(error_page(
            StatusCode::FORBIDDEN,
            "csrf.bad-token",
            "the form expired; open it again",
        ));
    }
    let name = Name::parse(field(&form, "name").unwrap_or(""))?;
    let password = field(&form, "password").unwrap_or("").to_owned();
    if let Err(why) = auth::check_new_password(&password) {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "setup.weak-password",
            why,
        ));
    }
    // Hashed before the owner exists: a busy node then changes nothing.
    let phc = match state
        .hash_gate
        .run(move || auth::hash_password(&password))
        .await
    {
        Ok(phc) => phc.map_err(ApiError::internal)?,
        Err(auth::Busy) => return Ok(crate::http::pages::login::busy()),
    };
    create_owner(state, &name, None, None).await?;
    let who = name.clone();
    state
        .db
        .run(move |c| store::owners::set_password(c, &who, &phc).map_err(ApiError::from))
        .await?;
    let cookie = session::start(state, &name, Some(&headers), Some(peer.ip())).await?;
    let mut resp = see_other("/");
    session::set_cookie(&mut resp, cookie);
    Ok(resp)
}

/// `GET /auth/continue?token=`: a login link from `POST /auth/login`. Used once, within a
/// minute: the browser gets the owner's session (a first-party cookie) and goes on to the
/// redirect that was checked when the link was made.
pub async fn continue_login(
    state: &NodeState,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let params = crate::http::response::query_params(req.uri().query())?;
    let token = crate::http::response::param(&params, "token").unwrap_or("");
    let now = state.config.clock.now();
    let taken = match auth::token_hash(token) {
        Some(hash) => {
            state
                .db
                .run(move |c| {
                    store::owners::take_login_token(c, &hash, now).map_err(ApiError::from)
                })
                .await?
        }
        None => None,
    };
    let Some((owner, redirect)) = taken else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            "login.invalid-token",
            "this login link is not valid: it was used already or has expired",
        ));
    };
    let cookie = session::start(state, &owner, Some(req.headers()), Some(peer.ip())).await?;
    let mut resp = crate::http::pages::html::see_other(&redirect);
    session::set_cookie(&mut resp, cookie);
    Ok(resp)
}
