//! `/api/grants…`: the owner's grants, read, changed, revoked, and their audit log. Only the
//! owner (a session, or a carte the owner signed with the `grant` scope) or a controller
//! acting for an owner it created may use it.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::http::api::access::{
    audit_on_behalf, authorize, carte_header, missing, owner_session, Actor, MAX_JSON_BYTES,
};
use crate::http::response::{json_value, param, query_params, read_body};
use crate::http::{ApiError, Body};
use crate::name::Name;
use crate::node::grants::{self as node_grants, Change, Edit, Expiry};
use crate::node::NodeState;
use crate::registry::RegistryError;
use crate::scope::Scope;
use crate::store::{self, grants::Grant};

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
    Ok(Name::parse(&crate::http::response::path_segment(raw)?)?)
}

/// Routes `/api/grants…`.
pub async fn grants(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    // An unsupported method is 405 whoever asks: checked before the credentials.
    let allow = match rest {
        [] => "GET, DELETE",
        [_] => "GET, PUT, DELETE",
        [_, "history"] => "GET",
        _ => return Err(ApiError::not_found()),
    };
    if !allow.split(", ").any(|m| m == req.method().as_str()) {
        return Err(ApiError::method_not_allowed(allow));
    }
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
                .await
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
            // Whether there is a grant to revoke is decided by the writer, on the row it
            // revokes: a check made here could be stale by the time the revoke is written.
            change(state, peer, &actor, &app, Edit::Revoke { must_exist: true }).await?;
            Ok(json_value(
                StatusCode::OK,
                &json!({ "application": app, "revoked": true }),
            ))
        }
        (Method::GET, [app, "history"]) => {
            let app = app_name(app)?;
            // A name the registry does not know has no history: 404, as for a grant change.
            state
                .mirror
                .record_or_sync(&app)
                .await?
                .ok_or(RegistryError::NameUnknown)?;
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
        (_, [] | [_] | [_, "history"]) => Err(ApiError::method_not_allowed(allow)),
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
    let mut revoked = 0;
    for (app, _) in &all {
        // Counted from what each revoke found, not from the list read before it.
        let o = change(state, peer, actor, app, Edit::Revoke { must_exist: false }).await?;
        revoked += usize::from(o.before.is_some_and(|g| !g.scope.is_empty()));
    }
    Ok(json_value(StatusCode::OK, &json!({ "revoked": revoked })))
}

/// Scope names in a JSON body: an array of names (what every answer uses), or one string of
/// names separated by commas or spaces, as in URLs. Both mean the same.
#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeNames {
    List(Vec<String>),
    Text(String),
}

impl Default for ScopeNames {
    fn default() -> ScopeNames {
        ScopeNames::List(Vec::new())
    }
}

impl ScopeNames {
    fn parse(&self, scopes: &crate::scope::Catalogue) -> Result<Scope, ApiError> {
        Ok(match self {
            ScopeNames::List(names) => scopes.parse_list(names)?,
            ScopeNames::Text(text) => scopes.parse(text)?,
        })
    }

    fn is_empty(&self) -> bool {
        match self {
            ScopeNames::List(names) => names.is_empty(),
            ScopeNames::Text(text) => text.trim().is_empty(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantUpdate {
    #[serde(default)]
    add: ScopeNames,
    #[serde(default)]
    remove: ScopeNames,
    scope: Option<ScopeNames>,
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
    let add = u.add.parse(scopes)?;
    let remove = u.remove.parse(scopes)?;
    let set = u.scope.as_ref().map(|s| s.parse(scopes)).transpose()?;
    let now = state.config.clock.now();
    if let Some(Some(e)) = u.expires {
        if e <= now {
            return Err(ApiError::bad_request(
                "grant.bad-expiry",
                "expires must be in the future",
            ));
        }
    }
    if add.contains(Scope::GRANT) || set.is_some_and(|s| s.contains(Scope::GRANT)) {
        return Err(ApiError::bad_request(
            "grant.scope-not-grantable",
            "the grant scope is never given to an application",
        ));
    }
    let record = state
        .mirror
        .record_or_sync(&app)
        .await?
        .ok_or(RegistryError::NameUnknown)?;
    let expires = match u.expires {
        Some(e) => Expiry::Set(e),
        None => Expiry::Keep,
    };
    // The new scope is computed by the writer from the grant it holds locked, never here
    // from a read that another change could overtake.
    let edit = match set {
        Some(scope) => Edit::Set { scope, expires },
        None => Edit::Delta {
            add,
            remove,
            expires,
        },
    };
    let outcome = node_grants::apply(
        state,
        Change {
            owner: actor.owner.clone(),
            app: app.clone(),
            edit,
            actor: actor.label.clone(),
            address: Some(peer.ip().to_string()),
        },
        Some(record.node_uri),
    )
    .await
    .map_err(ApiError::failed)?;
    Ok(json_value(
        StatusCode::OK,
        &grant_json(state, &app, outcome.after.as_ref()),
    ))
}

/// Applies a grant change made by `actor`, notifying the application at its registered URI.
pub(crate) async fn change(
    state: &NodeState,
    peer: SocketAddr,
    actor: &Actor,
    app: &Name,
    edit: Edit,
) -> Result<node_grants::Outcome, ApiError> {
    node_grants::change(
        state,
        &actor.owner,
        app,
        edit,
        &actor.label,
        Some(peer.ip().to_string()),
    )
    .await
    .map_err(ApiError::failed)
}
