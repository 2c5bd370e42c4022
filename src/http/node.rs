//! The node's router: one `match` on method and path, and the handlers that are not big
//! enough for a file of their own.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::registry_api::{self, RegistryView};
use super::response::{error, json_value, read_body, Body};
use super::ApiError;
use crate::carte::{self, CarteError, Expectations, VerifiedCarte};
use crate::config::Config;
use crate::name::Name;
use crate::registry::authority::Authority;
use crate::registry::mirror::Mirror;
use crate::scope::Catalogue;
use crate::store::Db;

/// The protocol version this node speaks, published in discovery.
pub const PROTOCOL_VERSION: u32 = 1;

/// Everything a request handler can see.
pub struct NodeState {
    pub config: Config,
    pub scopes: Catalogue,
    pub db: Db,
    pub mirror: Arc<Mirror>,
    /// The embedded registry, when this node runs one.
    pub authority: Option<Authority>,
}

impl NodeState {
    fn registry_view(&self) -> RegistryView {
        match &self.authority {
            Some(a) => RegistryView::Authority(a.clone()),
            None => RegistryView::Mirror(self.mirror.clone()),
        }
    }

    /// Whether a carte addressed to `name` is addressed to this node.
    pub fn accepts_audience(&self, name: &Name) -> bool {
        self.config.node_name.as_ref() == Some(name)
    }

    /// Verifies a carte against the mirror. A signer the mirror does not know triggers a sync
    /// first; if the registry cannot be reached then, the answer is `registry.unavailable`.
    pub async fn verify_carte(
        &self,
        wire: &str,
        peer: SocketAddr,
    ) -> Result<VerifiedCarte, CarteError> {
        let accepts = |n: &Name| self.accepts_audience(n);
        let expect = Expectations {
            accepts_audience: &accepts,
            peer: Some(peer.ip()),
            skew: self.config.carte_skew,
            max_lifetime: self.config.carte_max_lifetime,
        };
        let now = self.config.clock.now();
        match carte::verify(wire, now, &expect, self.mirror.keys().as_ref()) {
            Err(CarteError::UnknownSigner) => {
                let owner = carte::decode(wire)?.carte.owner;
                match self.mirror.ensure_known(&owner).await {
                    Ok(true) => carte::verify(wire, now, &expect, self.mirror.keys().as_ref()),
                    Ok(false) => Err(CarteError::UnknownSigner),
                    Err(_) => Err(CarteError::RegistryUnavailable),
                }
            }
            other => other,
        }
    }
}

/// Routes one request. Every error becomes a JSON error response.
pub async fn route(
    state: Arc<NodeState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let result = dispatch(&state, peer, req).await;
    result.unwrap_or_else(error)
}

async fn dispatch(
    state: &Arc<NodeState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path();
    if registry_api::owns(path) {
        let is_op = req.method() == Method::POST && path == "/registry/ops";
        let resp = registry_api::route(&state.registry_view(), req).await?;
        if is_op && resp.status().is_success() {
            // The embedded registry changed: bring the mirror along before answering, so the
            // new name verifies on this node at once.
            if let Err(e) = state.mirror.sync().await {
                tracing::warn!(error = %e, "mirror sync after a local registration failed");
            }
        }
        return Ok(resp);
    }
    match (req.method(), path) {
        (&Method::GET, "/healthz") => Ok(healthz(state)),
        (&Method::GET, "/.well-known/grant-node") => Ok(discovery(state)),
        (&Method::POST, "/api/cartes/verify") => verify_for_peer(state, peer, req).await,
        (_, "/healthz" | "/.well-known/grant-node" | "/api/cartes/verify") => {
            Err(ApiError::method_not_allowed())
        }
        _ => Err(ApiError::not_found()),
    }
}

fn healthz(state: &NodeState) -> Response<Body> {
    let mirror = state.mirror.status();
    let status = if mirror.degraded.is_some() {
        "degraded"
    } else {
        "ok"
    };
    json_value(
        StatusCode::OK,
        &json!({ "status": status, "registry": mirror }),
    )
}

fn discovery(state: &NodeState) -> Response<Body> {
    let scopes: Vec<_> = state
        .scopes
        .defs()
        .map(|d| json!({ "name": d.name, "bit": d.bit, "description": d.description }))
        .collect();
    json_value(
        StatusCode::OK,
        &json!({
            "protocol_version": PROTOCOL_VERSION,
            "software": concat!("grant-node ", env!("CARGO_PKG_VERSION")),
            "node_name": state.config.node_name,
            "registry": {
                "embedded": state.authority.is_some(),
                "public_key": hex::encode(state.mirror.registry_key().as_bytes()),
            },
            "scopes": scopes,
            "limits": {
                "carte_max_bytes": carte::MAX_WIRE_LEN,
                "carte_max_lifetime": state.config.carte_max_lifetime,
                "carte_skew": state.config.carte_skew,
            },
        }),
    )
}

/// `POST /api/cartes/verify` with `{"carte": "…"}`: the principal of a carte addressed to this
/// node, for peers that hold no token of their own.
async fn verify_for_peer(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    #[derive(serde::Deserialize)]
    struct VerifyRequest {
        carte: String,
    }
    let body = read_body(req, 8 * 1024, "request.too-large").await?;
    let request: VerifyRequest = serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_request(
            "request.malformed",
            "expected a JSON body {\"carte\": \"…\"}",
        )
    })?;
    let verified = state.verify_carte(&request.carte, peer).await?;
    let c = verified.carte();
    Ok(json_value(
        StatusCode::OK,
        &json!({
            "principal": verified.principal(),
            "audience": c.audience,
            "subject": c.subject,
            "beginning": c.beginning,
            "deadline": c.deadline,
            "client_scope": state.scopes.names(c.client_scope),
            "admin_scope": state.scopes.names(c.admin_scope),
        }),
    ))
}
