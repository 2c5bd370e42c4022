//! `/witness/*`: this node as a C2SP tlog-witness for its registry (`witness_name` set).
//!
//! - `POST /witness/add-checkpoint`: cosigns a checkpoint of the node's registry that extends
//!   what it cosigned before (see [`crate::registry::witness`]); answers the `cosignature/v1`
//!   line, or 400/403/409/422 as the specification says (409 carries the size it holds, as
//!   `text/x.tlog.size`).
//! - `GET /witness/latest`: the last checkpoint it cosigned, with its cosignature, so nodes can
//!   compare what the registry showed them with what it showed this witness.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::http::response::{read_body, Body};
use crate::http::ApiError;
use crate::node::NodeState;
use crate::registry::note;
use crate::registry::witness::{self, Refusal};
use crate::store::{self, StoreError};

/// Handles `/witness/*` (404 when this node is not a witness).
pub async fn route(
    state: &NodeState,
    req: Request<Incoming>,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let Some(w) = &state.witness else {
        return Err(ApiError::not_found());
    };
    let origin = note::origin_for(&state.mirror.registry_key());
    match (req.method(), rest) {
        (&Method::GET, ["latest"]) => {
            let o = origin.clone();
            let held = state
                .db
                .run(move |c| store::witness::get(c, &o).map_err(ApiError::from))
                .await?;
            match held {
                Some(h) => Ok(text(StatusCode::OK, h.note, "text/plain; charset=utf-8")),
                None => Err(ApiError::not_found()),
            }
        }
        (&Method::POST, ["add-checkpoint"]) => {
            let body = read_body(req, witness::MAX_REQUEST, "request.too-large").await?;
            let parsed = match witness::parse(&body, &state.mirror.registry_key()) {
                Ok(p) => p,
                Err(e) => return Ok(refusal(e)),
            };
            let o = origin.clone();
            let held = state
                .db
                .run(move |c| store::witness::get(c, &o).map_err(ApiError::from))
                .await?;
            if let Err(e) = witness::decide(&parsed, held.as_ref().map(|h| (h.size, h.root))) {
                if let Refusal::Conflict(_) = e {
                    tracing::warn!(
                        size = parsed.checkpoint.checkpoint.size,
                        "witness refused a checkpoint that conflicts with what it cosigned"
                    );
                }
                return Ok(refusal(e));
            }
            let line = note::cosign(
                &w.name,
                &w.key,
                &parsed.checkpoint.text,
                state.config.clock.now(),
            );
            let cosigned = parsed
                .checkpoint
                .with_cosignatures(line.as_bytes())
                .map_err(ApiError::from)?;
            let cp = parsed.checkpoint.checkpoint.clone();
            let old = parsed.old;
            // Persisted before answering: a crash after this line cannot make the witness
            // forget a size it cosigned.
            let moved = state
                .db
                .run(move |c| {
                    if store::witness::advance(
                        c,
                        &origin,
                        old,
                        (cp.size, &cp.root, &cosigned.note),
                    )? {
                        Ok::<_, StoreError>(None)
                    } else {
                        Ok(Some(store::witness::get(c, &origin)?.map_or(0, |h| h.size)))
                    }
                })
                .await
                .map_err(ApiError::from)?;
            match moved {
                None => Ok(text(
                    StatusCode::OK,
                    line.into_bytes(),
                    "text/plain; charset=utf-8",
                )),
                Some(size) => Ok(refusal(Refusal::Conflict(size))),
            }
        }
        (_, ["latest"]) => Err(ApiError::method_not_allowed("GET")),
        (_, ["add-checkpoint"]) => Err(ApiError::method_not_allowed("POST")),
        _ => Err(ApiError::not_found()),
    }
}

fn text(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn refusal(e: Refusal) -> Response<Body> {
    match e {
        Refusal::Conflict(size) => text(
            StatusCode::CONFLICT,
            format!("{size}\n").into_bytes(),
            "text/x.tlog.size",
        ),
        Refusal::Malformed(_) => text(
            StatusCode::BAD_REQUEST,
            e.to_string().into_bytes(),
            "text/plain",
        ),
        Refusal::NotSigned => text(
            StatusCode::FORBIDDEN,
            e.to_string().into_bytes(),
            "text/plain",
        ),
        Refusal::BadProof => text(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string().into_bytes(),
            "text/plain",
        ),
    }
}
