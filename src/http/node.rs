//! The node's router: one `match` on method and path. Every error becomes a JSON error (API)
//! or an HTML error page (pages); every request is counted by route and status.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::api::registry::{self as registry_api, RegistryView};
use super::api::{
    access as api, grants as grants_api, owners as owners_api, witness as witness_api,
};
use super::pages::{account, console, console_grant, grant_page, login};
use super::response::{error, json, json_value, read_body, Body};
use super::ApiError;
use crate::carte;
use crate::node::NodeState;
use crate::store::{self, owners::Document};

/// The OpenAPI 3.1 description of every JSON endpoint (`data/openapi.json`, checked by
/// `tests/openapi.rs` against a validator and against the live node's answers).
pub const OPENAPI: &str = include_str!("../../data/openapi.json");

/// The protocol version this node speaks, published in discovery.
pub const PROTOCOL_VERSION: u32 = 1;

impl NodeState {
    fn registry_view(self: &Arc<Self>) -> RegistryView {
        match &self.authority {
            Some(a) => RegistryView::Authority(a.clone()),
            None => RegistryView::Mirror(self.mirror.clone()),
        }
    }
}

/// Routes one request.
pub async fn route(
    state: Arc<NodeState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let (label, result) = match client_address(&state.config.trusted_proxies, peer, req.headers()) {
        Ok(client) => dispatch(&state, client, req).await,
        Err(e) => ("other", Err(e)),
    };
    let mut resp = result.unwrap_or_else(|e| {
        if label.starts_with("page:") {
            super::pages::html::error_page(e.status, e.code, &e.message)
        } else {
            error(e)
        }
    });
    if resp.status() == StatusCode::UNAUTHORIZED {
        // A client whose carte was refused for its times needs this node's clock: send the
        // node's own idea of now (hyper would send the machine's).
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(state.config.clock.now());
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
            resp.headers_mut().insert(hyper::header::DATE, v);
        }
    }
    if state.public_url.starts_with("https://") {
        // Browsers reach this node over https only from now on (a year, the usual value).
        resp.headers_mut().insert(
            hyper::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    state.metrics.request(label, resp.status().as_u16());
    resp
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the one its
/// `X-Forwarded-For` or `Forwarded` header names. The chain is read from the right (the hop
/// nearest this node), skipping trusted proxies: an entry further left was written by the
/// client itself and proves nothing. From any other peer both headers are ignored. When a
/// trusted proxy sends both headers and they name different clients, the request is refused:
/// which one counts would depend on the reader.
pub fn client_address(
    trusted: &[crate::outbound::Cidr],
    peer: SocketAddr,
    headers: &hyper::HeaderMap,
) -> Result<SocketAddr, ApiError> {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer.ip()) {
        return Ok(peer);
    }
    let bad = |what: &str| {
        ApiError::bad_request(
            "request.bad-forwarded",
            format!("the proxy's {what} header does not parse"),
        )
    };
    let pick = |entries: Vec<std::net::IpAddr>| {
        entries
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(*ip))
            .map(|ip| SocketAddr::new(ip, 0))
    };
    let mut xff = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = value.to_str().map_err(|_| bad("X-Forwarded-For"))?;
        for part in text.split(',') {
            xff.push(parse_forwarded_ip(part.trim()).ok_or_else(|| bad("X-Forwarded-For"))?);
        }
    }
    let mut fwd = Vec::new();
    for value in headers.get_all("forwarded") {
        let text = value.to_str().map_err(|_| bad("Forwarded"))?;
        for element in text.split(',') {
            for pair in element.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("for") {
                    let v = v.trim().trim_matches('"');
                    fwd.push(parse_forwarded_ip(v).ok_or_else(|| bad("Forwarded"))?);
                }
            }
        }
    }
    let (from_xff, from_fwd) = (pick(xff.clone()), pick(fwd.clone()));
    match (xff.is_empty(), fwd.is_empty()) {
        (true, true) => Ok(peer),
        (false, true) => Ok(from_xff.unwrap_or(peer)),
        (true, false) => Ok(from_fwd.unwrap_or(peer)),
        (false, false) if from_xff == from_fwd => Ok(from_xff.unwrap_or(peer)),
        (false, false) => Err(ApiError::bad_request(
            "request.forwarded-conflict",
            "X-Forwarded-For and Forwarded name different clients",
        )),
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
pub fn parse_forwarded_ip(text: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    text.strip_prefix('[')
        .and_then(|t| t.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

/// An application's name from a console path segment.
fn page_name(raw: &str) -> Result<crate::name::Name, ApiError> {
    Ok(crate::name::Name::parse(&super::response::path_segment(
        raw,
    )?)?)
}

/// The most header bytes a request may carry (names and values together).
const MAX_HEADER_BYTES: usize = 32 * 1024;

async fn dispatch(
    state: &Arc<NodeState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> (&'static str, Result<Response<Body>, ApiError>) {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return (
            "other",
            Err(ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request.headers-too-large",
                "the request headers are larger than 32 KiB",
            )),
        );
    }
    let path = req.uri().path().to_owned();
    if registry_api::owns(&path) {
        let is_op = req.method() == Method::POST && path == "/registry/ops";
        let resp = registry_api::route(&state.registry_view(), req).await;
        if is_op && resp.as_ref().is_ok_and(|r| r.status().is_success()) {
            // The embedded registry changed: bring the mirror along before answering, so the
            // new name verifies on this node at once.
            if let Err(e) = state.mirror.sync().await {
                tracing::warn!(error = %e, "mirror sync after a local registration failed");
            }
        }
        return ("registry", resp);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (_, ["witness", rest @ ..]) => ("witness", witness_api::route(state, req, rest).await),
        (&Method::GET, ["healthz"]) => ("healthz", Ok(healthz(state))),
        (&Method::GET, ["metrics"]) => ("metrics", metrics(state).await),
        (&Method::GET, [".well-known", "grant-node"]) => ("discovery", Ok(discovery(state))),
        (&Method::GET, ["openapi.json"]) => ("openapi", Ok(json(StatusCode::OK, OPENAPI))),
        (&Method::GET, [""]) => ("page:home", console::home(state, &req).await),
        (&Method::GET, ["grants", app]) => match page_name(app) {
            Ok(app) => (
                "page:console",
                console_grant::app_page(state, &req, &app).await,
            ),
            Err(e) => ("page:console", Err(e)),
        },
        (&Method::POST, ["grants", app]) => match page_name(app) {
            Ok(app) => (
                "page:console",
                console_grant::app_update(state, peer, req, &app).await,
            ),
            Err(e) => ("page:console", Err(e)),
        },
        (&Method::GET, ["grants", app, "revoke"]) => match page_name(app) {
            Ok(app) => (
                "page:console",
                console_grant::revoke_confirm(state, &req, &app).await,
            ),
            Err(e) => ("page:console", Err(e)),
        },
        (&Method::POST, ["grants", app, "revoke"]) => match page_name(app) {
            Ok(app) => (
                "page:console",
                console_grant::revoke(state, peer, req, &app).await,
            ),
            Err(e) => ("page:console", Err(e)),
        },
        (&Method::GET, ["revoke-all"]) => (
            "page:console",
            account::revoke_all_confirm(state, &req).await,
        ),
        (&Method::POST, ["revoke-all"]) => {
            ("page:console", account::revoke_all(state, peer, req).await)
        }
        (&Method::GET, ["sessions"]) => ("page:console", account::sessions(state, &req).await),
        (&Method::POST, ["sessions", "end-others"]) => {
            ("page:console", account::end_others(state, req).await)
        }
        (&Method::GET, ["password"]) => ("page:console", account::password_form(state, &req).await),
        (&Method::POST, ["password"]) => (
            "page:console",
            account::password_change(state, peer, req).await,
        ),
        (&Method::GET, ["admin"]) => ("page:console", account::admin(state, &req).await),
        (&Method::GET, ["login"]) => ("page:login", login::show(state, &req).await),
        (&Method::POST, ["login"]) => ("page:login", login::submit(state, peer, req).await),
        (&Method::POST, ["logout"]) => ("page:logout", login::logout(state, req).await),
        (&Method::GET, ["setup"]) => ("page:setup", login::setup_form(state, &req).await),
        (&Method::POST, ["setup"]) => ("page:setup", login::setup_submit(state, peer, req).await),
        (&Method::POST, ["setup", "words"]) => {
            ("page:setup", super::pages::words::confirm(state, req).await)
        }
        (&Method::GET, ["grant"]) => ("page:grant", grant_page::show(state, peer, req).await),
        (&Method::POST, ["grant"]) => ("page:grant", grant_page::answer(state, peer, req).await),
        (_, ["api", "grants", rest @ ..]) => {
            let rest: Vec<&str> = rest.to_vec();
            (
                "api:grants",
                grants_api::grants(state, peer, req, &rest).await,
            )
        }
        (_, ["api", "profile"]) => (
            "api:profile",
            api::document(state, peer, req, Document::Profile).await,
        ),
        (_, ["api", "settings"]) => (
            "api:settings",
            api::document(state, peer, req, Document::Settings).await,
        ),
        (&Method::GET, ["auth", "check"]) => ("auth:check", api::check(state, peer, &req).await),
        (&Method::POST, ["api", "owners"]) => {
            ("api:owners", owners_api::create(state, peer, req).await)
        }
        (&Method::DELETE, ["api", "owners", name]) => {
            let name = name.to_string();
            (
                "api:owners",
                owners_api::delete(state, peer, &req, &name).await,
            )
        }
        (&Method::POST, ["auth", "login"]) => (
            "auth:login",
            owners_api::proxy_login(state, peer, req).await,
        ),
        (&Method::OPTIONS, ["auth", "login"]) => ("auth:login", owners_api::preflight(state, &req)),
        (&Method::GET, ["auth", "continue"]) => (
            "page:login",
            owners_api::continue_login(state, peer, &req).await,
        ),
        (&Method::GET, ["signup"]) => ("page:signup", owners_api::signup_form(state)),
        (&Method::POST, ["signup"]) => ("page:signup", owners_api::signup(state, peer, req).await),
        (&Method::POST, ["api", "cartes", "verify"]) => {
            ("api:verify", verify_for_peer(state, peer, req).await)
        }
        (_, path) => match allowed(path) {
            Some(allow) => ("other", Err(ApiError::method_not_allowed(allow))),
            None => ("other", Err(ApiError::not_found())),
        },
    }
}

/// The methods a node path allows, for the `Allow` of its 405; `None` for no such path.
/// It lists every route of [`route`] (the registry's and the witness's answer for
/// themselves), and `every_405_names_the_allowed_methods` checks it against them.
fn allowed(path: &[&str]) -> Option<&'static str> {
    Some(match path {
        ["" | "healthz" | "metrics" | "openapi.json" | "admin" | "sessions"] => "GET",
        [".well-known", "grant-node"] | ["auth", "check" | "continue"] => "GET",
        ["login" | "setup" | "grant" | "signup" | "revoke-all" | "password"] => "GET, POST",
        ["grants", _] | ["grants", _, "revoke"] => "GET, POST",
        ["logout"]
        | ["sessions", "end-others"]
        | ["setup", "words"]
        | ["api", "owners"]
        | ["api", "cartes", "verify"] => "POST",
        ["api", "owners", _] => "DELETE",
        ["auth", "login"] => "POST, OPTIONS",
        _ => return None,
    })
}

fn healthz(state: &NodeState) -> Response<Body> {
    let mirror = state.mirror.status();
    let backup = state.config.backups.as_ref().map(|schedule| {
        let status = state.backups.get();
        let degraded = crate::node::backups::degraded(
            schedule,
            &status,
            state.started,
            state.config.clock.now(),
        );
        (status, degraded)
    });
    let backup_degraded = backup.as_ref().and_then(|(_, d)| d.clone());
    let status = if mirror.degraded.is_some() || backup_degraded.is_some() {
        "degraded"
    } else {
        "ok"
    };
    let mut body = json!({ "status": status, "registry": mirror });
    if let Some((s, degraded)) = backup {
        body["backups"] = json!({
            "last_ok": s.last_ok,
            "last_error": s.last_error,
            "degraded": degraded,
        });
    }
    json_value(StatusCode::OK, &body)
}

async fn metrics(state: &NodeState) -> Result<Response<Body>, ApiError> {
    let outbox = state
        .db
        .run(|c| store::grants::outbox_len(c).map_err(ApiError::from))
        .await?;
    let mut text = state
        .metrics
        .render(&state.mirror.status(), state.cartes.len(), outbox);
    if state.config.backups.is_some() {
        // Since the last good backup (or since start, when none was made yet).
        let b = state.backups.get();
        let since = b.last_ok.unwrap_or(state.started);
        let age = state.config.clock.now().saturating_sub(since);
        text.push_str(&format!(
            "# TYPE grant_node_backup_age_seconds gauge\ngrant_node_backup_age_seconds {age}\n\
             # TYPE grant_node_backup_last_failed gauge\ngrant_node_backup_last_failed {}\n",
            u8::from(b.last_error.is_some())
        ));
    }
    let mut resp = json(StatusCode::OK, text);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(resp)
}

fn discovery(state: &NodeState) -> Response<Body> {
    let scopes: Vec<_> = state
        .config
        .scopes
        .defs()
        .map(|d| json!({ "name": d.name, "bit": d.bit, "description": d.description }))
        .collect();
    let owners: Vec<String> = {
        let mut o: Vec<String> = state
            .owners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|n| n.to_string())
            .collect();
        o.sort();
        o
    };
    json_value(
        StatusCode::OK,
        &json!({
            "protocol_version": PROTOCOL_VERSION,
            "software": concat!("grant-node ", env!("CARGO_PKG_VERSION")),
            "node_name": state.node_name(),
            "url": state.public_url,
            "owners": owners,
            "registry": {
                "embedded": state.authority.is_some(),
                "public_key": hex::encode(state.mirror.registry_key().as_bytes()),
            },
            "scopes": scopes,
            "endpoints": {
                "grant": "/grant",
                "openapi": "/openapi.json",
                "grants": "/api/grants",
                "profile": "/api/profile",
                "settings": "/api/settings",
                "check": "/auth/check",
                "verify": "/api/cartes/verify",
                "registry_log": "/registry/log",
                "registry_checkpoint": "/registry/checkpoint",
            },
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
    let scopes = &state.config.scopes;
    Ok(json_value(
        StatusCode::OK,
        &json!({
            "principal": verified.principal(),
            "audience": c.audience,
            "subject": c.subject,
            "beginning": c.beginning,
            "deadline": c.deadline,
            "client_scope": scopes.names(c.client_scope),
            "admin_scope": scopes.names(c.admin_scope),
        }),
    ))
}
