//! The consent page `GET /grant` shows once every check of the request has passed: pure
//! rendering, every value escaped by the template. What leads to it and what answers it is in `grant_page`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::{Response, StatusCode};
use unicode_script::{Script, UnicodeScript};

use crate::http::pages::html::{html, page, Markup};
use crate::http::{session, Body};
use crate::name::Name;
use crate::node::NodeState;
use crate::scope::Scope;
use crate::store::{grants::Pending, owners::Session};
use crate::uri::CheckedUri;

/// The application name's script, when it is not Latin: a hint against look-alike names.
fn script_note(name: &Name) -> Markup {
    let script = name
        .as_str()
        .chars()
        .map(|c| c.script())
        .find(|s| !matches!(s, Script::Common | Script::Inherited | Script::Unknown));
    html! {
        @match script {
            Some(Script::Latin) | None => {}
            Some(s) => { " " span.note { "(" (s.full_name()) " script)" } }
        }
    }
}

/// The consent page for one pending request: the application (with its script when not
/// Latin), the scopes asked for (each a checkbox, marked when already granted), what the
/// application holds already, where the browser goes next, and the CSRF token bound to the
/// session and to this request.
pub(crate) fn consent_page(
    state: &NodeState,
    session: &Session,
    pending: &Pending,
    redirect: &CheckedUri,
    existing: Scope,
) -> Response<Body> {
    let scopes = &state.config.scopes;
    let adds = pending.scope.difference(existing);
    let id = URL_SAFE_NO_PAD.encode(pending.id);
    let csrf = session::csrf_token(session, &[b"grant:".as_slice(), &pending.id].concat());
    page(
        StatusCode::OK,
        "Allow access?",
        html! {
            h1 {
                b { (pending.app.as_str()) } (script_note(&pending.app))
                " asks to act for " (pending.owner.as_str())
            }
            @if existing.is_empty() {
                p { "This application holds no grant from you yet." }
            } @else {
                p {
                    "This application already may: " (scopes.format(existing)) ". Allowing adds: "
                    @if adds.is_empty() { "nothing new" } @else { (scopes.format(adds)) }
                    "."
                }
            }
            form method="post" action="/grant" {
                p { "It will be able to:" }
                ul.scopes {
                    @for (name, words) in scopes.describe(pending.scope).iter() {
                        li { label {
                            input type="checkbox" name="scope" value=(name) checked;
                            " " (words)
                            @if existing.contains(scopes.parse(name).unwrap_or(Scope::NONE)) {
                                " " span.note { "(already allowed)" }
                            }
                        } }
                    }
                }
                p { "After you answer, your browser returns to " b { (redirect.origin()) } "." }
                input type="hidden" name="request_id" value=(id);
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" name="decision" value="allow" { "Allow" }
                button type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    )
}
