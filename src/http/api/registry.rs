//! `/registry/*`: the registry's HTTP API.
//!
//! Served by `registry-stub` and by a node with an embedded registry (from the [`Authority`]),
//! and, read-only, by every node from its verified mirror, so peers can sync from peers.
//! Operations are posted as raw CBOR envelopes (`application/cbor`); everything else is JSON.

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::http::response::{self, json_value, param, path_segment, query_params, read_body, Body};
use crate::http::ApiError;
use crate::ledger::authority::Authority;
use crate::ledger::mirror::Mirror;
use crate::ledger::source::{CheckpointJson, LogPageJson, MAX_LOG_PAGE};
use crate::name::Name;
use crate::registry::op::{MAX_OP_BYTES, MAX_REDIRECT_URIS};
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
                    .read(move |c| store::registry::record(c, &name).map_err(RegistryError::from))
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
    // What the registry publishes is public and read without credentials, so any web page may
    // read it: a browser proves a name against a checkpoint itself (the JavaScript client's
    // light look-ups) instead of trusting a server of its own to do it.
    let read = req.method() == Method::GET;
    let mut resp = dispatch(view, req).await?;
    if read {
        resp.headers_mut().insert(
            "access-control-allow-origin",
            hyper::header::HeaderValue::from_static("*"),
        );
    }
    Ok(resp)
}

async fn dispatch(view: &RegistryView, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::POST, ["registry", "ops"]) => submit(view, req).await,
        (&Method::GET, ["registry", "metadata"]) => metadata(view),
        (&Method::GET, ["registry", "checkpoint"]) => checkpoint(view, &req).await,
        (&Method::GET, ["registry", "tile", rest @ ..]) => tile(view, rest).await,
        (&Method::GET, ["registry", "proof", kind]) => proof(view, kind, req.uri().query()).await,
        (&Method::GET, ["registry", "names", name, "proof"]) => {
            name_proof(view, name, req.uri().query()).await
        }
        (&Method::GET, ["registry", "log"]) => log(view, req.uri().query()).await,
        (&Method::GET, ["registry", "names", name]) => {
            let record = lookup(view, name).await?;
            Ok(json_value(StatusCode::OK, &record.to_json()))
        }
        (&Method::GET, ["registry", "names", name, "key"]) => {
            let record = lookup(view, name).await?;
            key_at(&record, req.uri().query())
        }
        (_, ["registry", "ops"]) => Err(ApiError::method_not_allowed("POST")),
        (_, ["registry", "metadata" | "checkpoint" | "log"])
        | (_, ["registry", "tile", ..])
        | (_, ["registry", "proof", _])
        | (_, ["registry", "names", _])
        | (_, ["registry", "names", _, "key" | "proof"]) => {
            Err(ApiError::method_not_allowed("GET"))
        }
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

async fn checkpoint(
    view: &RegistryView,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let note = view
        .db()
        .read(|c| store::registry::checkpoint(c).map_err(ApiError::from))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "registry.unavailable",
                "no verified checkpoint yet",
            )
        })?;
    // The stored note was signed here or verified on arrival; decode its fields for readers
    // who do not want to parse it. The signature check is cheap and keeps this honest.
    let signed = match view {
        RegistryView::Authority(a) => a.verify_note(&note)?,
        RegistryView::Mirror(m) => m.verify_note(&note)?,
    };
    // Several Accept headers are one list (RFC 9110 §5.3), so every one counts.
    let wants_note = req
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|a| a.contains("text/plain"));
    if wants_note {
        return Ok(text(note, "text/plain; charset=utf-8"));
    }
    let cp = &signed.checkpoint;
    Ok(json_value(
        StatusCode::OK,
        &CheckpointJson {
            size: cp.size,
            root_hash: STANDARD.encode(cp.root),
            map_root: STANDARD.encode(cp.map_root),
            time: cp.time,
            checkpoint: URL_SAFE_NO_PAD.encode(&note),
        },
    ))
}

fn text(body: Vec<u8>, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::new(body.into()));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

/// `GET /registry/tile/<L>/<N>[.p/<W>]` and `/registry/tile/entries/<N>[.p/<W>]` (C2SP
/// tlog-tiles, height 8). A tile past the log's size is 404; full tiles never change.
async fn tile(view: &RegistryView, rest: &[&str]) -> Result<Response<Body>, ApiError> {
    let bad = || ApiError::not_found();
    let tile = parse_tile_path(rest).ok_or_else(bad)?;
    let full = tile.width() == 256;
    // A full hash tile is stored once the log covers it, and never changes: one row read,
    // without the blocking pool's hand-off when a reader is free.
    let stored = if full && !tile.is_data() {
        view.db()
            .read_now(|c| store::registry::stored_tile(c, &tile))
            .transpose()
            .map_err(ApiError::from)?
            .flatten()
    } else {
        None
    };
    let body = match stored {
        Some(data) => data,
        None => view
            .db()
            .read(move |c| {
                // A full hash tile is stored once the log covers it: found, it is in the log.
                if full && !tile.is_data() {
                    if let Some(data) = store::registry::stored_tile(c, &tile)? {
                        return Ok(Some(data));
                    }
                }
                let size = store::registry::log_size(c)?;
                // The last entry the tile covers must be in the log (u128: no overflow for any
                // index a path can name).
                let end = ((u128::from(tile.level_index()) << 8) + u128::from(tile.width()))
                    << (8 * u32::from(tile.level()));
                if end > u128::from(size) {
                    return Ok(None);
                }
                if tile.is_data() {
                    let from = tile.level_index() << 8;
                    let entries = store::registry::entries(c, from, u64::from(tile.width()))?;
                    let mut out = Vec::new();
                    for e in entries {
                        out.extend_from_slice(&(e.len() as u16).to_be_bytes());
                        out.extend_from_slice(&e);
                    }
                    Ok(Some(out))
                } else {
                    store::registry::tile(c, &tile).map(Some)
                }
            })
            .await
            .map_err(ApiError::from)?
            .ok_or_else(bad)?,
    };
    let mut resp = text(body, "application/octet-stream");
    if full {
        resp.headers_mut().insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
    }
    Ok(resp)
}

/// The tile a path after `/registry/tile/` names (`<L>/<N>[.p/<W>]`, `entries/<N>[.p/<W>]`),
/// or `None`. Pure: the fuzz target `tile_path` drives it.
pub fn parse_tile_path(rest: &[&str]) -> Option<tlog_tiles::Tile> {
    // Only the canonical C2SP tlog-tiles spelling: a level (`0`–`7` here, height 8) or
    // `entries`; the index as `x` + three digits per element and three digits last; a partial
    // width `.p/W` with W from 1 to 255 in plain decimal. `tlog_tiles` parses with Rust's
    // integer parsing, which also takes `+0` as a width, then panics on a width of 0 (found by
    // the fuzz target `tile_path`): nothing else reaches it.
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let (level, tail) = rest.split_first()?;
    let level = match *level {
        "entries" => "data",
        l if l.len() == 1 && (b'0'..=b'7').contains(&l.as_bytes()[0]) => l,
        _ => return None,
    };
    let (index, width) = match tail {
        [index @ .., last, w] if last.ends_with(".p") => {
            let ok = !w.is_empty()
                && w.len() <= 3
                && w.bytes().all(|b| b.is_ascii_digit())
                && !w.starts_with('0')
                && w.parse::<u16>().is_ok_and(|w| w < 256);
            if !ok {
                return None;
            }
            let mut index = index.to_vec();
            index.push(last.strip_suffix(".p")?);
            (index, Some(*w))
        }
        _ => (tail.to_vec(), None),
    };
    let (last, upper) = index.split_last()?;
    if !digits(last, 3)
        || !upper
            .iter()
            .all(|e| e.strip_prefix('x').is_some_and(|d| digits(d, 3)))
    {
        return None;
    }
    let go_path = format!("tile/8/{level}/{}", tail.join("/"));
    let tile = tlog_tiles::Tile::from_path(&go_path).ok()?;
    debug_assert!(width.is_none() || tile.width() < 256);
    Some(tile)
}

fn number(params: &[(String, String)], name: &str) -> Result<Option<u64>, ApiError> {
    param(params, name)
        .map(|v| {
            crate::http::response::safe_integer(v).ok_or_else(|| {
                ApiError::bad_request(
                    "request.bad-parameter",
                    format!("{name} must be an integer from 0 to 2^53-1, in plain decimal"),
                )
            })
        })
        .transpose()
}

fn required(params: &[(String, String)], name: &str) -> Result<u64, ApiError> {
    number(params, name)?.ok_or_else(|| {
        ApiError::bad_request("request.missing-parameter", format!("{name} is required"))
    })
}

/// `GET /registry/proof/inclusion?index=I&size=N` and `/registry/proof/consistency?from=M&to=N`:
/// RFC 6962 proofs over the log's tree, hashes in standard base64.
async fn proof(
    view: &RegistryView,
    kind: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let params = query_params(query)?;
    let (a, b, inclusion) = match kind {
        "inclusion" => (
            required(&params, "index")?,
            required(&params, "size")?,
            true,
        ),
        "consistency" => (required(&params, "from")?, required(&params, "to")?, false),
        _ => return Err(ApiError::not_found()),
    };
    let hashes = view
        .db()
        .read(move |c| {
            let size = store::registry::log_size(c)?;
            let valid = if inclusion { a < b && b <= size } else { a <= b && b <= size };
            if !valid {
                return Ok(None);
            }
            if inclusion {
                store::registry::inclusion_proof(c, a, b).map(Some)
            } else if a == 0 || a == b {
                Ok(Some(Vec::new()))
            } else {
                store::registry::consistency_proof(c, a, b).map(Some)
            }
        })
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| {
            ApiError::bad_request(
                "request.bad-parameter",
                "the sizes are outside the log (inclusion: index < size <= log size; consistency: from <= to <= log size)",
            )
        })?;
    let hashes: Vec<String> = hashes.iter().map(|h| STANDARD.encode(h)).collect();
    Ok(json_value(StatusCode::OK, &json!({ "hashes": hashes })))
}

/// `GET /registry/names/{name}/proof[?known=N]`: the record (or null), a map proof against the
/// latest checkpoint, the checkpoint note, and a consistency proof from size `known`.
async fn name_proof(
    view: &RegistryView,
    raw: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let RegistryView::Authority(authority) = view else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "registry.no-map",
            "name proofs are served by the registry itself",
        ));
    };
    let name = Name::parse(&path_segment(raw)?)?;
    let known = number(&query_params(query)?, "known")?;
    let a = authority.clone();
    let p = tokio::task::spawn_blocking(move || a.prove_blocking(&name, known))
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
        .map_err(|e| match e {
            RegistryError::Malformed(m) => ApiError::bad_request("request.bad-parameter", m),
            e => e.into(),
        })?;
    Ok(json_value(
        StatusCode::OK,
        &crate::registry::light::NameProofJson::from(&p),
    ))
}

async fn log(view: &RegistryView, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let params = query_params(query)?;
    let from = number(&params, "from")?.unwrap_or(0);
    let limit = number(&params, "limit")?
        .unwrap_or(MAX_LOG_PAGE)
        .min(MAX_LOG_PAGE);
    let entries = view
        .db()
        .read(move |c| store::registry::entries(c, from, limit).map_err(ApiError::from))
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
    let at: u64 = number(&params, "at")?
        .ok_or_else(|| ApiError::bad_request("request.missing-parameter", "at is required"))?;
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
                // Whether what it signed at that time is void.
                "compromised": k.compromised.is_some_and(|from| at >= from),
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
    crate::http::serve(
        listener,
        handler,
        shutdown,
        crate::http::Limits::from_descriptors(),
        tls,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::parse_tile_path;

    fn parse(path: &str) -> Option<(u8, u64, u32, bool)> {
        let parts: Vec<&str> = path.split('/').collect();
        parse_tile_path(&parts).map(|t| (t.level(), t.level_index(), t.width(), t.is_data()))
    }

    #[test]
    fn only_canonical_tile_paths_parse_and_none_panics() {
        assert_eq!(parse("0/000"), Some((0, 0, 256, false)));
        assert_eq!(parse("1/x001/234.p/7"), Some((1, 1234, 7, false)));
        assert_eq!(parse("entries/005.p/255"), Some((0, 5, 255, true)));
        // What the fuzz target found (a width of `+0…`, which tlog_tiles took as 0 and then
        // panicked on), and its relatives.
        for bad in [
            "1/000001/0.p/+0000000000000",
            "0/000.p/+1",
            "0/000.p/0",
            "0/000.p/00",
            "0/000.p/256",
            "0/000.p/01",
            "+1/000",
            "8/000",
            "64/000",
            "0/+00",
            "0/x+01/000",
            "0/00",
            "0/0000",
            "0/x1/000",
            "0/",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
