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
use serde::Deserialize;
use serde_json::json;

use super::response::{json_value, param, query_params, read_body};
use super::session;
use super::{ApiError, Body};
use crate::carte::CarteError;
use crate::name::Name;
use crate::node::access::{AccessError, Principal};
use crate::node::grants::{self as node_grants, Change};
use crate::node::NodeState;
use crate::registry::RegistryError;
use crate::scope::Scope;
use crate::store::{self, grants::Grant, owners::Document};

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
            AccessError::Internal(detail) => ApiError::internal(detail),
        }
    }
}

/// The carte in the `Authorization` header, if there is one.
pub fn carte_header(headers: &HeaderMap) -> Option<Result<&str, ApiError>> {
    let value = headers.get(AUTHORIZATION)?;
    let bad = || {
        ApiError::from(CarteError::Malformed(
            "Authorization must be \"Carte <carte>\" or \"Bearer carte:<carte>\"",
        ))
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

fn missing(state: &NodeState, scope: Scope) -> ApiError {
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
struct Actor {
    owner: Name,
    /// For the audit log: `owner`, `owner-carte`, or the application's name.
    label: String,
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
async fn audit_on_behalf(
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

async fn owner_session(state: &NodeState, req: &Request<Incoming>) -> Result<Actor, ApiError> {
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

/// The owner, for the grant API: a session, or the owner's own carte with `grant`.
async fn grant_actor(
    state: &NodeState,
    req: &Request<Incoming>,
    peer: SocketAddr,
) -> Result<Actor, ApiError> {
    if carte_header(req.headers()).is_some() {
        let p = authorize(state, req.headers(), peer, Scope::GRANT).await?;
        if p.controller {
            // A controller whose maximum includes `grant` manages its owners' grants.
            let label = format!("controller:{}", p.app);
            audit_on_behalf(state, &p, &label, req, peer).await?;
            return Ok(Actor {
                owner: p.owner,
                label,
            });
        }
        if p.app != p.owner {
            return Err(missing(state, Scope::GRANT));
        }
        return Ok(Actor {
            owner: p.owner,
            label: "owner-carte".into(),
        });
    }
    owner_session(state, req).await
}

fn grant_json(state: &NodeState, app: &Name, g: Option<&Grant>) -> serde_json::Value {
    match g {
        Some(g) => json!({
            "application": app,
            "scope": state.config.scopes.names(g.scope),
            "expires": g.expires,
            "created": g.created,
            "updated": g.updated,
        }),
        None => json!({ "application": app, "scope": [], "expires": null }),
    }
}

fn app_name(raw: &str) -> Result<Name, ApiError> {
    Ok(Name::parse(&super::response::path_segment(raw)?)?)
}

/// Routes `/api/grants…`.
pub async fn grants(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let actor = grant_actor(state, &req, peer).await?;
    match (req.method().clone(), rest) {
        (Method::GET, []) => {
            let owner = actor.owner.clone();
            let all = state
                .db
                .run(move |c| store::grants::grants(c, &owner).map_err(ApiError::from))
                .await?;
            let list: Vec<_> = all
                .iter()
                .map(|(app, g)| grant_json(state, app, Some(g)))
                .collect();
            Ok(json_value(StatusCode::OK, &json!({ "grants": list })))
        }
        (Method::DELETE, []) => revoke_all(state, peer, &req, &actor).await,
        (Method::GET, [app]) => {
            let app = app_name(app)?;
            let g = state
                .grants
                .get(&state.db, &actor.owner, &app)
                .map_err(ApiError::from)?;
            match g {
                Some(g) => Ok(json_value(
                    StatusCode::OK,
                    &grant_json(state, &app, Some(&g)),
                )),
                None => Err(no_grant()),
            }
        }
        (Method::PUT, [app]) => {
            let app = app_name(app)?;
            update(state, peer, req, &actor, app).await
        }
        (Method::DELETE, [app]) => {
            let app = app_name(app)?;
            let before = state
                .grants
                .get(&state.db, &actor.owner, &app)
                .map_err(ApiError::from)?;
            if before.is_none() {
                return Err(no_grant());
            }
            change(state, peer, &actor, &app, Scope::NONE, None, "revoke").await?;
            Ok(json_value(
                StatusCode::OK,
                &json!({ "application": app, "revoked": true }),
            ))
        }
        (Method::GET, [app, "history"]) => {
            let app = app_name(app)?;
            let owner = actor.owner.clone();
            let a = app.clone();
            let entries = state
                .db
                .run(move |c| store::grants::audit(c, &owner, Some(&a)).map_err(ApiError::from))
                .await?;
            let scopes = &state.config.scopes;
            let entries: Vec<_> = entries
                .iter()
                .map(|e| {
                    json!({
                        "actor": e.actor,
                        "action": e.action,
                        "old_scope": scopes.names(Scope::from_bits(e.old_scope)),
                        "new_scope": scopes.names(Scope::from_bits(e.new_scope)),
                        "expires": e.expires,
                        "address": e.address,
                        "at": e.at,
                    })
                })
                .collect();
            Ok(json_value(
                StatusCode::OK,
                &json!({ "application": app, "entries": entries }),
            ))
        }
        (_, [] | [_] | [_, "history"]) => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::not_found()),
    }
}

fn no_grant() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "grant.not-found",
        "this application holds no grant",
    )
}

async fn revoke_all(
    state: &NodeState,
    peer: SocketAddr,
    req: &Request<Incoming>,
    actor: &Actor,
) -> Result<Response<Body>, ApiError> {
    let params = query_params(req.uri().query())?;
    if param(&params, "all") != Some("true") {
        return Err(ApiError::bad_request(
            "grant.all-required",
            "revoking every grant needs ?all=true",
        ));
    }
    let owner = actor.owner.clone();
    let all = state
        .db
        .run(move |c| store::grants::grants(c, &owner).map_err(ApiError::from))
        .await?;
    for (app, _) in &all {
        change(state, peer, actor, app, Scope::NONE, None, "revoke").await?;
    }
    Ok(json_value(StatusCode::OK, &json!({ "revoked": all.len() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantUpdate {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
    scope: Option<Vec<String>>,
    /// Absent: keep; null: no expiry; a number: Unix seconds.
    #[serde(default, deserialize_with = "some")]
    expires: Option<Option<u64>>,
}

fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

async fn update(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
    actor: &Actor,
    app: Name,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(req, MAX_JSON_BYTES, "request.too-large").await?;
    let u: GrantUpdate = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "request.malformed",
            format!("expected {{\"add\"?, \"remove\"?, \"scope\"?, \"expires\"?}}: {e}"),
        )
    })?;
    if u.scope.is_some() && (!u.add.is_empty() || !u.remove.is_empty()) {
        return Err(ApiError::bad_request(
            "request.malformed",
            "give either scope, or add and remove",
        ));
    }
    let scopes = &state.config.scopes;
    let add = scopes.parse_list(&u.add)?;
    let remove = scopes.parse_list(&u.remove)?;
    let set = u
        .scope
        .as_deref()
        .map(|s| scopes.parse_list(s))
        .transpose()?;
    let now = state.config.clock.now();
    if let Some(Some(e)) = u.expires {
        if e <= now {
            return Err(ApiError::bad_request(
                "grant.bad-expiry",
                "expires must be in the future",
            ));
        }
    }
    let record = state
        .mirror
        .record_or_sync(&app)
        .await?
        .ok_or(RegistryError::NameUnknown)?;
    let before = state
        .grants
        .get(&state.db, &actor.owner, &app)
        .map_err(ApiError::from)?;
    let current = before.map(|g| g.effective(now)).unwrap_or(Scope::NONE);
    let scope = match set {
        Some(s) => s,
        None => current.union(add).difference(remove),
    };
    if scope.contains(Scope::GRANT) {
        return Err(ApiError::bad_request(
            "grant.scope-not-grantable",
            "the grant scope is never given to an application",
        ));
    }
    let expires = match u.expires {
        Some(e) => e,
        None => before.and_then(|g| g.expires).filter(|e| *e > now),
    };
    let action = if scope.is_empty() { "revoke" } else { "update" };
    let outcome = node_grants::apply(
        state,
        Change {
            owner: actor.owner.clone(),
            app: app.clone(),
            scope,
            expires,
            actor: actor.label.clone(),
            action,
            address: Some(peer.ip().to_string()),
        },
        Some(record.node_uri),
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(json_value(
        StatusCode::OK,
        &grant_json(state, &app, outcome.after.as_ref()),
    ))
}

async fn change(
    state: &NodeState,
    peer: SocketAddr,
    actor: &Actor,
    app: &Name,
    scope: Scope,
    expires: Option<u64>,
    action: &'static str,
) -> Result<(), ApiError> {
    let node_uri = state
        .mirror
        .record(app)
        .await
        .ok()
        .flatten()
        .map(|r| r.node_uri);
    node_grants::apply(
        state,
        Change {
            owner: actor.owner.clone(),
            app: app.clone(),
            scope,
            expires,
            actor: actor.label.clone(),
            action,
            address: Some(peer.ip().to_string()),
        },
        node_uri,
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(())
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
            state
                .db
                .run(move |c| {
                    store::owners::set_document(c, &owner, doc, &text).map_err(ApiError::from)
                })
                .await?;
            Ok(json_value(
                StatusCode::OK,
                &json!({ "owner": actor.owner, "document": value }),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `GET /auth/check`: forward authentication for nginx `auth_request`, Traefik ForwardAuth or
/// Envoy ext_authz. The scope needed comes from `X-Required-Scope` or `?scope=`.
pub async fn check(
    state: &NodeState,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let params = query_params(req.uri().query())?;
    let header = req
        .headers()
        .get("x-required-scope")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| ApiError::bad_request("request.malformed", "X-Required-Scope is not text"))?;
    let wanted = header.as_deref().or(param(&params, "scope")).unwrap_or("");
    let needed = state.config.scopes.parse(wanted)?;
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
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    Ok(resp)
}
