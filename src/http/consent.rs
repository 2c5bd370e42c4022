//! The consent page `GET /grant` shows once every check of the request has passed: pure
//! rendering, every value escaped. What leads to it and what answers it is in `grant_page`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::{Response, StatusCode};
use unicode_script::{Script, UnicodeScript};

use super::html::{esc, page};
use super::{session, Body};
use crate::name::Name;
use crate::node::NodeState;
use crate::scope::Scope;
use crate::store::{grants::Pending, owners::Session};
use crate::uri::CheckedUri;

/// The application name's script, when it is not Latin: a hint against look-alike names.
fn script_note(name: &Name) -> String {
    let script = name
        .as_str()
        .chars()
        .map(|c| c.script())
        .find(|s| !matches!(s, Script::Common | Script::Inherited | Script::Unknown));
    match script {
        Some(Script::Latin) | None => String::new(),
        Some(s) => format!(
            " <span class=\"note\">({} script)</span>",
            esc(s.full_name())
        ),
    }
}

/// The consent page for one pending request: the application (with its script when not
/// Latin), the scopes asked for (each a checkbox, marked when already granted), what the
/// application holds already, where the browser goes next, and the CSRF token bound to the
/// session and to this request.
pub(super) fn consent_page(
    state: &NodeState,
    session: &Session,
    pending: &Pending,
    redirect: &CheckedUri,
    existing: Scope,
) -> Response<Body> {
    let scopes = &state.config.scopes;
    let items: String = scopes
        .describe(pending.scope)
        .iter()
        .map(|(name, words)| {
            let bit = scopes.parse(name).unwrap_or(Scope::NONE);
            let already = if existing.contains(bit) {
                " <span class=\"note\">(already allowed)</span>"
            } else {
                ""
            };
            format!(
                "<li><label><input type=\"checkbox\" name=\"scope\" value=\"{}\" checked> {}{already}</label></li>",
                esc(name),
                esc(words)
            )
        })
        .collect();
    let held = if existing.is_empty() {
        "<p>This application holds no grant from you yet.</p>".to_owned()
    } else {
        let adds = pending.scope.difference(existing);
        format!(
            "<p>This application already may: {}. Allowing adds: {}.</p>",
            esc(&scopes.format(existing)),
            if adds.is_empty() {
                "nothing new".to_owned()
            } else {
                esc(&scopes.format(adds))
            }
        )
    };
    let id = URL_SAFE_NO_PAD.encode(pending.id);
    let csrf = session::csrf_token(session, &[b"grant:".as_slice(), &pending.id].concat());
    page(
        StatusCode::OK,
        "Allow access?",
        &format!(
            "<h1><b>{}</b>{} asks to act for {}</h1>{held}\
             <form method=\"post\" action=\"/grant\">\
             <p>It will be able to:</p><ul class=\"scopes\">{items}</ul>\
             <p>After you answer, your browser returns to <b>{}</b>.</p>\
             <input type=\"hidden\" name=\"request_id\" value=\"{}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            esc(pending.app.as_str()),
            script_note(&pending.app),
            esc(pending.owner.as_str()),
            esc(&redirect.origin()),
            esc(&id),
            esc(&csrf)
        ),
    )
}
