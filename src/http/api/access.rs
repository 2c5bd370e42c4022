//! The JSON API: the owner's grants, the resources the node protects (`/api/profile`,
//! `/api/settings`), and forward authentication (`/auth/check`) for other backends.
//!
//! Callers authenticate with `Authorization: Carte <carte>` (also `Bearer carte:<carte>` for
//! Moera-style clients) or, for the owner in a browser, the session cookie; state-changing
//! cookie requests must pass the same-origin check. The grant API is the owner's alone: a
//! session, or a carte the owner signed itself holding the `grant` admin scope.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::json;

use crate::carte::CarteError;
use crate::http::response::{json_value, param, query_params, read_body};
use crate::http::session;
use crate::http::{ApiError, Body};
use crate::name::Name;
use crate::node::access::{AccessError, Principal};
use crate::node::NodeState;
use crate::scope::Scope;
use crate::store::{self, owners::Document};

/// Largest JSON body accepted by the API.
pub const MAX_JSON_BYTES: usize = 16 * 1024;

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> ApiError {
        match e {
            AccessError::Carte(c) => c.into(),
            AccessError::Missing(scope) => ApiError::new(
                StatusCode::FORBIDDEN,
                "grant.missing-scope",
                format!("the grant does not include scope bits {:#x}", scope.bits()),
            ),
            AccessError::Forbidden(code, message) => {
                ApiError::new(StatusCode::FORBIDDEN, code, message)
            }
            AccessError::Moved(owner, uri) => ApiError::moved(&owner, Some(&uri)),
            AccessError::Store(e) => e.into(),
        }
    }
}

/// The carte in the `Authorization` header, if there is one.
pub fn carte_header(headers: &HeaderMap) -> Option<Result<&str, ApiError>> {
    let bad = || {
        ApiError::from(CarteError::Malformed(
            "Authorization must be \"Carte <carte>\" or \"Bearer carte:<carte>\", once",
        ))
    };
    let value = match crate::http::response::single_header(headers, AUTHORIZATION.as_str(), bad) {
        Ok(v) => v?,
        Err(e) => return Some(Err(e)),
    };
    let Ok(text) = value.to_str() else {
        return Some(Err(bad()));
    };
    let carte = text
        .strip_prefix("Carte ")
        .or_else(|| text.strip_prefix("Bearer carte:"))
        .map(str::trim);
    Some(carte.ok_or_else(bad))
}

pub(crate) fn missing(state: &NodeState, scope: Scope) -> ApiError {
    let names = state.config.scopes.names(scope);
    ApiError::new(
        StatusCode::FORBIDDEN,
        "grant.missing-scope",
        format!("the grant does not include: {}", names.join(", ")),
    )
    .with(json!({ "missing": names }))
}

fn access(state: &NodeState, e: AccessError) -> ApiError {
    match e {
        AccessError::Missing(scope) => missing(state, scope),
        other => other.into(),
    }
}

/// Authorizes an application's carte for `needed`.
pub async fn authorize(
    state: &NodeState,
    headers: &HeaderMap,
    peer: SocketAddr,
    needed: Scope,
) -> Result<Principal, ApiError> {
    let wire = match carte_header(headers) {
        Some(w) => w?,
        None => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "carte.missing",
                "send Authorization: Carte <carte>",
            ))
        }
    };
    state
        .authorize(wire, peer, needed)
        .await
        .map_err(|e| access(state, e))
}

/// Who acts on an owner's resources, and on whose.
pub(crate) struct Actor {
    pub(crate) owner: Name,
    /// For the audit log: `owner`, `owner-carte`, or the application's name.
    pub(crate) label: String,
}

/// A session (same-origin for writes) or a carte allowed `needed`.
async fn resource_actor(
    state: &NodeState,
    req: &Request<Incoming>,
    peer: SocketAddr,
    needed: Scope,
) -> Result<Actor, ApiError> {
    if carte_header(req.headers()).is_some() {
        let p = authorize(state, req.headers(), peer, needed).await?;
        let label = if p.controller {
            let label = format!("controller:{}", p.app);
            audit_on_behalf(state, &p, &label, req, peer).await?;
            label
        } else if p.app == p.owner {
            "owner-carte".to_owned()
        } else {
            p.app.to_string()
        };
        return Ok(Actor {
            owner: p.owner,
            label,
        });
    }
    owner_session(state, req).await
}

/// Every request a controller makes on an owner's behalf goes into that owner's audit log.
pub(crate) async fn audit_on_behalf(
    state: &NodeState,
    p: &Principal,
    label: &str,
    req: &Request<Incoming>,
    peer: SocketAddr,
) -> Result<(), ApiError> {
    let entry = store::grants::AuditEntry {
        app: p.app.to_string(),
        actor: label.to_owned(),
        action: format!("{} {}", req.method(), req.uri().path()),
        old_scope: 0,
        new_scope: p.allowed.bits(),
        expires: None,
        address: Some(peer.ip().to_string()),
        at: state.config.clock.now(),
    };
    let owner = p.owner.clone();
    state
        .db
        .run(move |c| store::grants::insert_audit(c, &owner, &entry).map_err(ApiError::from))
        .await
}

pub(crate) async fn owner_session(
    state: &NodeState,
    req: &Request<Incoming>,
) -> Result<Actor, ApiError> {
    let Some(s) = session::current(state, req.headers()).await? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "carte.missing",
            "send Authorization: Carte <carte>, or log in",
        ));
    };
    if req.method() != Method::GET {
        session::check_origin(state, req.headers())?;
    }
    Ok(Actor {
        owner: s.owner,
        label: "owner".into(),
    })
}

/// `/api/profile` and `/api/settings`: a JSON object per owner.
pub async fn document(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
    doc: Document,
) -> Result<Response<Body>, ApiError> {
    let (view, update) = match doc {
        Document::Profile => ("view-profile", "update-profile"),
        Document::Settings => ("view-settings", "update-settings"),
    };
    let scopes = &state.config.scopes;
    match req.method().clone() {
        Method::GET => {
            let actor = resource_actor(state, &req, peer, scopes.parse(view)?).await?;
            let owner = actor.owner.clone();
            let text = state
                .db
                .run(move |c| store::owners::document(c, &owner, doc).map_err(ApiError::from))
                .await?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(ApiError::internal)?;
            Ok(json_value(
                StatusCode::OK,
                &json!({ "owner": actor.owner, "document": value }),
            ))
        }
        Method::PUT => {
            let actor = resource_actor(state, &req, peer, scopes.parse(update)?).await?;
            let body = read_body(req, MAX_JSON_BYTES, "request.too-large").await?;
            let value: serde_json::Value = serde_json::from_slice(&body)
                .ok()
                .filter(serde_json::Value::is_object)
                .ok_or_else(|| {
                    ApiError::bad_request("request.malformed", "the body must be a JSON object")
                })?;
            let owner = actor.owner.clone();
            let text = value.to_string();
            let written = state
                .db
                .run(move |c| {
                    store::owners::set_document(c, &owner, doc, &text).map_err(ApiError::from)
                })
                .await?;
            if !written {
                // The owner moved away between the check and the write: nothing was written.
                return Err(ApiError::moved(
                    &actor.owner,
                    state.moved_to(&actor.owner).as_deref(),
                ));
            }
            Ok(json_value(
                StatusCode::OK,
                &json!({ "owner": actor.owner, "document": value }),
            ))
        }
        _ => Err(ApiError::method_not_allowed("GET, PUT")),
    }
}

/// The scope a forward-auth check requires, from `X-Required-Scope` and `?scope=`.
///
/// The caller of `/auth/check` is a proxy, but the headers it forwards may be the client's
/// (Traefik ForwardAuth passes them through by default), so the client must not be able to
/// choose a weaker requirement: the scope must name at least one scope, a header given twice
/// is refused, and when both sources are present they must name the same scopes.
fn required_scope(
    state: &NodeState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Scope, ApiError> {
    let mut values = headers.get_all("x-required-scope").iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "request.scope-conflict",
            "X-Required-Scope is given more than once",
        ));
    }
    let header = header
        .map(|v| v.to_str())
        .transpose()
        .map_err(|_| ApiError::bad_request("request.malformed", "X-Required-Scope is not text"))?;
    let parse = |text: &str| -> Result<Scope, ApiError> {
        let scope = state.config.scopes.parse(text)?;
        if scope.is_empty() {
            return Err(ApiError::bad_request(
                "request.scope-required",
                "the required scope is empty: name at least one scope",
            ));
        }
        Ok(scope)
    };
    match (header, query) {
        (None, None) => Err(ApiError::bad_request(
            "request.scope-required",
            "name the required scope in X-Required-Scope or ?scope=",
        )),
        (Some(h), None) => parse(h),
        (None, Some(q)) => parse(q),
        (Some(h), Some(q)) => {
            let (h, q) = (parse(h)?, parse(q)?);
            if h != q {
                return Err(ApiError::bad_request(
                    "request.scope-conflict",
                    "X-Required-Scope and ?scope= name different scopes",
                ));
            }
            Ok(h)
        }
    }
}

/// `GET /auth/check`: forward authentication for nginx `auth_request`, Traefik ForwardAuth or
/// Envoy ext_authz. The scope needed comes from `X-Required-Scope` or `?scope=` (see
/// [`required_scope`] for the rules).
pub async fn check(
    state: &NodeState,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    // No credentials is 401 whatever else is wrong with the request: a proxy learns first
    // that it must authenticate.
    if carte_header(req.headers()).is_none() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "carte.missing",
            "send Authorization: Carte <carte>",
        ));
    }
    let params = query_params(req.uri().query())?;
    let needed = required_scope(state, req.headers(), param(&params, "scope"))?;
    let p = authorize(state, req.headers(), peer, needed).await?;
    let allowed = state.config.scopes.format(p.allowed);
    let mut resp = json_value(
        StatusCode::OK,
        &json!({ "client": p.app, "owner": p.owner, "scope": state.config.scopes.names(p.allowed) }),
    );
    let h = resp.headers_mut();
    for (k, v) in [
        ("x-grant-client", p.app.as_str()),
        ("x-grant-owner", p.owner.as_str()),
        ("x-grant-scope", allowed.as_str()),
    ] {
        // Names may be non-ASCII; header values are bytes, so those travel percent-encoded
        // (UTF-8), which every proxy passes through untouched.
        let encoded =
            percent_encoding::utf8_percent_encode(v, percent_encoding::CONTROLS).to_string();
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            h.insert(k, v);
        }
    }
    Ok(resp)
}
