//! `/registry/*`: the registry's HTTP API.
//!
//! Served by `registry-stub` and by a node with an embedded registry (from the [`Authority`]),
//! and, read-only, by every node from its verified mirror, so peers can sync from peers.
//! Operations are posted as raw CBOR envelopes (`application/cbor`); everything else is JSON.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::response::{self, json_value, param, path_segment, query_params, read_body, Body};
use super::ApiError;
use crate::name::Name;
use crate::registry::authority::Authority;
use crate::registry::log::Checkpoint;
use crate::registry::mirror::Mirror;
use crate::registry::op::{MAX_OP_BYTES, MAX_REDIRECT_URIS};
use crate::registry::source::{CheckpointJson, LogPageJson, MAX_LOG_PAGE};
use crate::registry::{NameRecord, RegistryError};
use crate::store::{self, Local};

/// What answers registry requests here.
#[derive(Clone)]
pub enum RegistryView {
    /// The registry itself: accepts operations.
    Authority(Authority),
    /// A node's verified mirror: read-only.
    Mirror(Arc<Mirror>),
}

impl RegistryView {
    fn db(&self) -> &Local {
        match self {
            RegistryView::Authority(a) => a.db(),
            RegistryView::Mirror(m) => m.db(),
        }
    }

    async fn record(&self, name: &Name) -> Result<Option<NameRecord>, RegistryError> {
        match self {
            RegistryView::Mirror(m) => m.record_or_sync(name).await,
            RegistryView::Authority(a) => {
                let name = name.clone();
                a.db()
                    .run(move |c| store::registry::record(c, &name).map_err(RegistryError::from))
                    .await
            }
        }
    }
}

/// Whether `path` belongs to this API.
pub fn owns(path: &str) -> bool {
    path.starts_with("/registry/")
}

/// Handles a `/registry/*` request.
pub async fn route(
    view: &RegistryView,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::POST, ["registry", "ops"]) => submit(view, req).await,
        (&Method::GET, ["registry", "metadata"]) => metadata(view),
        (&Method::GET, ["registry", "checkpoint"]) => checkpoint(view).await,
        (&Method::GET, ["registry", "log"]) => log(view, req.uri().query()).await,
        (&Method::GET, ["registry", "names", name]) => {
            let record = lookup(view, name).await?;
            Ok(json_value(StatusCode::OK, &record.to_json()))
        }
        (&Method::GET, ["registry", "names", name, "key"]) => {
            let record = lookup(view, name).await?;
            key_at(&record, req.uri().query())
        }
        (_, ["registry", "ops" | "metadata" | "checkpoint" | "log"])
        | (_, ["registry", "names", _])
        | (_, ["registry", "names", _, "key"]) => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::not_found()),
    }
}

async fn submit(view: &RegistryView, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let RegistryView::Authority(authority) = view else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "registry.read-only",
            "this node mirrors its registry; submit operations to the registry itself",
        ));
    };
    let body = read_body(req, MAX_OP_BYTES, "op.too-large").await?;
    let record = authority.submit(body.to_vec()).await?;
    Ok(json_value(StatusCode::CREATED, &record.to_json()))
}

fn metadata(view: &RegistryView) -> Result<Response<Body>, ApiError> {
    let RegistryView::Authority(authority) = view else {
        return Err(ApiError::not_found());
    };
    let config = authority.config();
    Ok(json_value(
        StatusCode::OK,
        &json!({
            "public_key": hex::encode(authority.public_key().as_bytes()),
            "pow_bits": config.pow_bits,
            "skew": config.params.skew,
            "limits": {
                "max_op_bytes": MAX_OP_BYTES,
                "max_redirect_uris": MAX_REDIRECT_URIS,
                "max_log_page": MAX_LOG_PAGE,
            },
        }),
    ))
}

async fn checkpoint(view: &RegistryView) -> Result<Response<Body>, ApiError> {
    let envelope = view
        .db()
        .run(|c| store::registry::checkpoint(c).map_err(ApiError::from))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "registry.unavailable",
                "no verified checkpoint yet",
            )
        })?;
    // The stored envelope was signed here or verified on arrival; decode its fields for
    // readers who do not want to parse CBOR. The signature check is cheap and keeps this honest.
    let key = match view {
        RegistryView::Authority(a) => a.public_key(),
        RegistryView::Mirror(m) => m.registry_key(),
    };
    let cp = Checkpoint::verify(&envelope, &key)?;
    Ok(json_value(
        StatusCode::OK,
        &CheckpointJson {
            size: cp.size,
            head_hash: hex::encode(cp.head_hash),
            time: cp.time,
            checkpoint: URL_SAFE_NO_PAD.encode(&envelope),
        },
    ))
}

async fn log(view: &RegistryView, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let params = query_params(query)?;
    let number = |name: &str, default: u64| -> Result<u64, ApiError> {
        match param(&params, name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError::bad_request(
                    "request.bad-parameter",
                    format!("{name} must be a non-negative integer"),
                )
            }),
        }
    };
    let from = number("from", 0)?;
    let limit = number("limit", MAX_LOG_PAGE)?.min(MAX_LOG_PAGE);
    let entries = view
        .db()
        .run(move |c| store::registry::entries(c, from, limit).map_err(ApiError::from))
        .await?;
    Ok(json_value(
        StatusCode::OK,
        &LogPageJson {
            from,
            entries: entries.iter().map(|e| URL_SAFE_NO_PAD.encode(e)).collect(),
        },
    ))
}

async fn lookup(view: &RegistryView, raw: &str) -> Result<NameRecord, ApiError> {
    let name = Name::parse(&path_segment(raw)?)?;
    view.record(&name)
        .await?
        .ok_or_else(|| RegistryError::NameUnknown.into())
}

fn key_at(record: &NameRecord, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let params = query_params(query)?;
    let at: u64 = param(&params, "at")
        .ok_or_else(|| ApiError::bad_request("request.missing-parameter", "at is required"))?
        .parse()
        .map_err(|_| ApiError::bad_request("request.bad-parameter", "at must be Unix seconds"))?;
    match record.keys.iter().rev().find(|k| k.valid_from <= at) {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "registry.no-key-at",
            "the name held no key at that time",
        )),
        Some(k) => Ok(json_value(
            StatusCode::OK,
            &json!({
                "name": record.name,
                "at": at,
                "key": hex::encode(k.key.as_bytes()),
                "valid_from": k.valid_from,
                "compromised": k.compromised,
            }),
        )),
    }
}

/// Serves the registry alone (what `registry-stub` runs) on `listener` until `shutdown`.
pub async fn serve_standalone(
    listener: tokio::net::TcpListener,
    authority: Authority,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    serve_standalone_tls(listener, authority, shutdown, None).await
}

/// [`serve_standalone`], over TLS when `tls` is given.
pub async fn serve_standalone_tls(
    listener: tokio::net::TcpListener,
    authority: Authority,
    shutdown: impl std::future::Future<Output = ()>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let view = RegistryView::Authority(authority);
    let handler = move |req: Request<Incoming>, _peer| {
        let view = view.clone();
        async move {
            if !owns(req.uri().path()) {
                return response::error(ApiError::not_found());
            }
            route(&view, req).await.unwrap_or_else(response::error)
        }
    };
    super::serve(
        listener,
        handler,
        shutdown,
        super::Limits::from_descriptors(),
        tls,
    )
    .await
}
