//! `/grant`: where an owner approves or denies an application's request.
//!
//! `GET /grant` finds whose request this is (the `owner` parameter or the logged-in owner;
//! otherwise it asks for a name), sends owners of other nodes home with every parameter
//! intact, sends owners of this node who are not logged in to the login page, then checks the
//! request and shows the consent page. Until every check has passed the page never redirects
//! to `redirect_uri`; failures get a plain error page with a stable code.
//!
//! `POST /grant` answers a consent page: it checks the `Origin`, the session and the CSRF token
//! bound to the session and to that one request, records an Allow durably, and redirects (303)
//! with the owner's signed receipt, or with `error=access_denied` on Deny.

use std::net::SocketAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::carte::{self, CarteError};
use crate::grant::request::{self, CheckedRequest, GrantParams};
use crate::grant::statement::Receipt;
use crate::grant::GrantError;
use crate::http::pages::consent::consent_page;
use crate::http::pages::html::{error_page, html, page, see_other};
use crate::http::pages::login::{field, form, login_redirect};
use crate::http::response::with_query;
use crate::http::session;
use crate::http::{ApiError, Body};
use crate::name::Name;
use crate::node::grants::{self as node_grants, Change, Edit};
use crate::node::NodeState;
use crate::scope::Scope;
use crate::store::{self, grants::Pending, owners::Session};
use crate::uri::CheckedUri;

/// How long a consent page stays answerable.
const PENDING_TTL: u64 = 10 * 60;

fn refused(e: GrantError) -> Response<Body> {
    let status = match e {
        GrantError::TooLarge => StatusCode::URI_TOO_LONG,
        _ => StatusCode::BAD_REQUEST,
    };
    error_page(status, e.code(), &e.to_string())
}

fn carte_refused(e: CarteError) -> Response<Body> {
    let status = match e {
        CarteError::RegistryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    error_page(status, e.code(), &e.to_string())
}

fn api_refused(e: ApiError) -> Response<Body> {
    error_page(e.status, e.code, &e.message)
}

/// `GET /grant`.
pub async fn show(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = req.uri().query().unwrap_or("").to_owned();
    let params = match GrantParams::parse(&query) {
        Ok(p) => p,
        Err(e) => return Ok(refused(e)),
    };
    let session = session::current(state, req.headers()).await?;
    let owner = match (&params.owner, &session) {
        (Some(raw), _) => match Name::parse(raw) {
            Ok(n) => Some(n),
            Err(_) => return Ok(refused(GrantError::UnknownOwner)),
        },
        (None, Some(s)) => Some(s.owner.clone()),
        (None, None) => None,
    };
    // Every check that does not need the owner's own node runs before the browser is sent
    // anywhere (to log in, or home) and before any page names the client: the client is
    // registered, its carte verifies and is bound to these parameters, and the redirect URI is
    // registered. Only the single-use mark waits for the owner's home node.
    let checked = match check(state, peer, &params, owner.as_ref()).await {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let Some(owner) = owner else {
        return Ok(name_prompt(&params, &checked.app));
    };
    if !state.hosts_now(&owner).await? {
        return Ok(send_home(state, &query, &owner).await);
    }
    let session = match session {
        Some(s) if s.owner == owner => s,
        _ => {
            // The owner came from the query (a session's owner is hosted here), so the raw
            // query already names it: forward it byte for byte. Re-encoding could lengthen it
            // past the limit (found by fuzzing), and "intact" means intact.
            let here = format!("/grant?{query}");
            if let Some(platform) = platform_login(state, &owner, &here).await? {
                return Ok(see_other(&platform));
            }
            return Ok(see_other(&login_redirect(&here, Some(owner.as_str()))));
        }
    };
    let verified_deadline = carte::decode(&params.client_secret)
        .map(|d| d.carte.deadline)
        .unwrap_or(0);
    consent(
        state,
        &session,
        &owner,
        checked,
        &params.client_secret,
        verified_deadline,
    )
    .await
}

/// For an owner created by a controller, with `login_redirect` configured: the platform's
/// login URL, carrying `redirect_after_login` back to this very request on this node.
async fn platform_login(
    state: &NodeState,
    owner: &Name,
    here: &str,
) -> Result<Option<String>, ApiError> {
    let Some(platform) = &state.config.login_redirect else {
        return Ok(None);
    };
    let who = owner.clone();
    let row = state
        .db
        .run(move |c| store::owners::owner(c, &who).map_err(ApiError::from))
        .await?;
    if row.and_then(|o| o.controller).is_none() {
        return Ok(None);
    }
    let resume = format!("{}{here}", state.public_url);
    Ok(Some(with_query(
        platform,
        &[("redirect_after_login", &resume)],
    )))
}

/// The page that asks a visitor who is not logged in for their name. `app` is the client's
/// registered name, whose carte has verified: nothing unverified appears on the page.
fn name_prompt(params: &GrantParams, app: &Name) -> Response<Body> {
    let hidden = [
        ("client_id", &params.client_id),
        ("client_secret", &params.client_secret),
        ("scope", &params.scope),
        ("redirect_uri", &params.redirect_uri),
        ("state", &params.state),
    ];
    page(
        StatusCode::OK,
        "Who are you?",
        html! {
            h1 { (app.as_str()) " asks for access to your account" }
            form method="get" action="/grant" {
                @for (k, v) in hidden { input type="hidden" name=(k) value=(v); }
                label for="owner" { "Your name" }
                input type="text" id="owner" name="owner" autocomplete="username" required;
                button type="submit" { "Continue" }
            }
            p.note { "If your account lives on another node, you will be sent there." }
        },
    )
}

/// 303 to the owner's home node with the request's query exactly as it came (it names the
/// owner already): every parameter intact.
async fn send_home(state: &NodeState, query: &str, owner: &Name) -> Response<Body> {
    let mut record = match state.mirror.record_or_sync(owner).await {
        Ok(Some(r)) => r,
        Ok(None) => return refused(GrantError::UnknownOwner),
        Err(e) => return api_refused(e.into()),
    };
    let here = format!("{}/", state.public_url);
    if record.node_uri == here && state.moved_to(owner).is_some() {
        // The owner moved away from here a moment ago: the registry may already say where.
        if state.mirror.sync().await.is_ok() {
            if let Ok(Some(r)) = state.mirror.record_or_sync(owner).await {
                record = r;
            }
        }
    }
    let Ok(home) = CheckedUri::parse_node(&record.node_uri) else {
        return refused(GrantError::UnknownOwner);
    };
    let base = home.as_str().trim_end_matches('/');
    if base == state.public_url {
        // The registry says this node is home, but the owner is not here.
        return refused(GrantError::UnknownOwner);
    }
    see_other(&format!("{base}/grant?{query}"))
}

/// Every check of point 3 that needs no single-use mark, in order; a failure is the error
/// page to show. A grant carte may name its owner as audience; while the owner is not known
/// yet (the name prompt) any audience passes here, and it is checked once the owner is named.
async fn check(
    state: &NodeState,
    peer: SocketAddr,
    params: &GrantParams,
    owner: Option<&Name>,
) -> Result<CheckedRequest, Response<Body>> {
    let client = Name::parse(&params.client_id).map_err(|_| refused(GrantError::UnknownClient))?;
    let record = match state.mirror.record_or_sync(&client).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(refused(GrantError::UnknownClient)),
        Err(e) => return Err(api_refused(e.into())),
    };
    let accepts = |audience: &Name| match owner {
        Some(o) => audience == o,
        None => true,
    };
    let verified = state
        .verify_carte_for(&params.client_secret, peer, &accepts)
        .await
        .map_err(carte_refused)?;
    request::check(params, &record, &verified, &state.config.scopes).map_err(refused)
}

/// Records the carte as used and shows the consent page (or re-shows it to the same session).
async fn consent(
    state: &NodeState,
    session: &Session,
    owner: &Name,
    checked: CheckedRequest,
    carte_wire: &str,
    carte_deadline: u64,
) -> Result<Response<Body>, ApiError> {
    let now = state.config.clock.now();
    // Marked used by its signed payload, so a second signature over the same payload is the
    // same carte; a mark by wire form (as earlier versions wrote them, kept until the carte's
    // deadline) still counts.
    let legacy = carte::fingerprint(carte_wire);
    let fingerprint = carte::replay_id(carte_wire).unwrap_or(legacy);
    let pending = Pending {
        id: crate::auth::random_bytes(),
        session_hash: session.id_hash,
        owner: owner.clone(),
        app: checked.app.clone(),
        scope: checked.scope,
        redirect_uri: checked.redirect_uri.as_str().to_owned(),
        state: checked.state.clone(),
        expires: now + PENDING_TTL,
    };
    let forget_after = carte_deadline.saturating_add(state.config.carte_skew);
    let row = pending.clone();
    let shown = state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            let used = match store::grants::use_carte(&tx, &fingerprint, forget_after, &row.id)? {
                Ok(()) => match store::grants::carte_mark(&tx, &legacy)? {
                    Some(previous) if legacy != fingerprint => Err(previous),
                    _ => Ok(()),
                },
                used => used,
            };
            let outcome = match used {
                Ok(()) => {
                    store::grants::insert_pending(&tx, &row)?;
                    Some(row)
                }
                // Used before: a reload by the same session still waiting to answer sees its
                // page again; anyone else is refused.
                Err(Some(previous)) => store::grants::pending(&tx, &previous)?
                    .filter(|p| p.session_hash == row.session_hash && p.expires >= now),
                Err(None) => None,
            };
            tx.commit()?;
            Ok::<_, ApiError>(outcome)
        })
        .await?;
    let Some(pending) = shown else {
        return Ok(refused(GrantError::Replayed));
    };
    let app = pending.app.clone();
    let who = owner.clone();
    let existing = state
        .db
        .run(move |c| store::grants::grant(c, &who, &app).map_err(ApiError::from))
        .await?
        .map(|g| g.effective(now))
        .unwrap_or(Scope::NONE);
    Ok(consent_page(
        state,
        session,
        &pending,
        &checked.redirect_uri,
        existing,
    ))
}

/// `POST /grant`.
pub async fn answer(
    state: &NodeState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if let Err(e) = session::check_origin(state, req.headers()) {
        return Ok(api_refused(e));
    }
    let Some(session) = session::current(state, req.headers()).await? else {
        return Ok(error_page(
            StatusCode::FORBIDDEN,
            "session.required",
            "you are not logged in (or your session ended); start again from the application",
        ));
    };
    let form = form(req).await?;
    let bad_token = || {
        error_page(
            StatusCode::FORBIDDEN,
            "csrf.bad-token",
            "this form did not come from your consent page",
        )
    };
    let Some(id) = field(&form, "request_id")
        .and_then(|r| URL_SAFE_NO_PAD.decode(r).ok())
        .and_then(|r| <[u8; 32]>::try_from(r).ok())
    else {
        return Ok(bad_token());
    };
    let expected = session::csrf_token(&session, &[b"grant:".as_slice(), &id].concat());
    if !crate::auth::same(field(&form, "csrf").unwrap_or(""), &expected) {
        return Ok(bad_token());
    }
    let now = state.config.clock.now();
    let pending = state
        .db
        .run(move |c| store::grants::pending(c, &id).map_err(ApiError::from))
        .await?;
    let pending = match pending {
        Some(p) if p.session_hash == session.id_hash && p.expires >= now => p,
        Some(p) if p.session_hash != session.id_hash => return Ok(bad_token()),
        _ => return Ok(refused(GrantError::RequestExpired)),
    };
    let decision = field(&form, "decision").unwrap_or("");
    let chosen = if decision == "allow" {
        let names: Vec<&str> = form
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str())
            .collect();
        let chosen = state
            .config
            .scopes
            .parse_list(&names)
            .map_err(ApiError::from)?
            .intersection(pending.scope);
        if chosen.is_empty() {
            return Ok(refused(GrantError::NothingChosen));
        }
        Some(chosen)
    } else if decision == "deny" {
        None
    } else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "grant.bad-decision",
            "answer with Allow or Deny",
        ));
    };
    let taken = state
        .db
        .run(move |c| store::grants::take_pending(c, &id).map_err(ApiError::from))
        .await?;
    if !taken {
        return Ok(refused(GrantError::RequestExpired));
    }
    let Some(chosen) = chosen else {
        return Ok(see_other(&with_query(
            &pending.redirect_uri,
            &[("error", "access_denied"), ("state", &pending.state)],
        )));
    };
    let node_uri = state
        .mirror
        .record(&pending.app)
        .await
        .ok()
        .flatten()
        .map(|r| r.node_uri);
    let outcome = node_grants::apply(
        state,
        Change {
            owner: pending.owner.clone(),
            app: pending.app.clone(),
            // Joined to what is held by the writer, not here: a change made meanwhile stays.
            edit: Edit::Consent { add: chosen },
            actor: "owner".into(),
            address: Some(peer.ip().to_string()),
        },
        node_uri,
    )
    .await
    .map_err(ApiError::failed)?;
    let scope = outcome.scope();
    let key = state
        .signing_key(&pending.owner)
        .await
        .map_err(ApiError::internal)?;
    let receipt = Receipt {
        owner: pending.owner.clone(),
        application: pending.app.clone(),
        scope,
        time: now,
        state: pending.state.clone(),
    }
    .sign(&key);
    let scope_text = state.config.scopes.format(scope);
    Ok(see_other(&with_query(
        &pending.redirect_uri,
        &[
            ("state", &pending.state),
            ("node", pending.owner.as_str()),
            ("scope", &scope_text),
            ("receipt", &receipt),
        ],
    )))
}
