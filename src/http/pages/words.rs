//! The recovery words an owner is given at set-up, and the check that they were written down.
//!
//! Right after the password is chosen, the node replaces the owner's updating key with one
//! derived from 24 fresh recovery words (see `node::owners::rekey_with_words`) and shows them
//! once. The owner then types back three of them. The words are kept nowhere: the form
//! carries the three positions and a MAC, under the session's own secret, of those positions
//! and the words expected there, and the answer is checked against that MAC. No JavaScript.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::auth;
use crate::http::pages::console::{checked_post, csrf_field};
use crate::http::pages::html::{error_page, html, page, see_other, Markup};
use crate::http::pages::login::field;
use crate::http::session;
use crate::http::{ApiError, Body};
use crate::node::NodeState;
use crate::recovery::RecoveryWords;
use crate::store::owners::Session;

/// The MAC of `positions` (1-based) and the words expected there.
fn check_mac(s: &Session, positions: &[usize], words: &[&str]) -> String {
    let text = format!(
        "setup-words-check:{}:{}",
        positions
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
        words.join(",")
    );
    session::csrf_token(s, text.as_bytes())
}

/// Three distinct positions out of 24, at random.
fn positions() -> anyhow::Result<Vec<usize>> {
    let mut chosen = Vec::new();
    while chosen.len() < 3 {
        let mut b = [0u8; 1];
        getrandom::getrandom(&mut b).map_err(|e| anyhow::anyhow!("random: {e}"))?;
        let p = usize::from(b[0] % 24) + 1;
        if !chosen.contains(&p) {
            chosen.push(p);
        }
    }
    chosen.sort_unstable();
    Ok(chosen)
}

fn question(s: &Session, positions: &[usize], check: &str, error: Option<&str>) -> Markup {
    let pos = positions
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    html! {
        h2 { "Check that you wrote them down" }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form method="post" action="/setup/words" {
            (csrf_field(s, "setup-words"))
            input type="hidden" name="positions" value=(pos);
            input type="hidden" name="check" value=(check);
            @for (i, p) in positions.iter().enumerate() {
                label for={ "w" (i) } { "Word number " (p) }
                input type="text" id={ "w" (i) } name={ "w" (i) } autocomplete="off"
                    autocapitalize="none" spellcheck="false" required;
            }
            button type="submit" { "Continue" }
        }
    }
}

/// The page that shows `words` once and asks for three of them back.
pub fn show(s: &Session, words: &RecoveryWords) -> Result<Response<Body>, ApiError> {
    let list = words.words();
    let at = positions().map_err(ApiError::internal)?;
    let expected: Vec<&str> = at.iter().map(|p| list[p - 1]).collect();
    let check = check_mac(s, &at, &expected);
    Ok(page(
        StatusCode::OK,
        "Your recovery words",
        html! {
            h1 { "Your recovery words" }
            p {
                strong {
                    "Write these 24 words down, in order, on paper, and keep them somewhere \
                     safe and offline."
                }
                " They are the only way to take your name (" (s.owner.as_str()) ") back if \
                 this node is lost, and anyone who has them can take it from you. They are shown \
                 this once and kept nowhere."
            }
            ol.words { @for w in list.iter() { li { code { (w) } } } }
            (question(s, &at, &check, None))
        },
    ))
}

/// `POST /setup/words`: the three words typed back.
pub async fn confirm(
    state: &NodeState,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (s, fields) = match checked_post(state, req, "setup-words").await? {
        Ok(ok) => ok,
        Err(refused) => return Ok(refused),
    };
    let at: Vec<usize> = field(&fields, "positions")
        .unwrap_or("")
        .split(',')
        .filter_map(|p| p.parse().ok())
        .filter(|p| (1..=24).contains(p))
        .collect();
    let check = field(&fields, "check").unwrap_or("");
    if at.len() != 3 || check.is_empty() {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "request.malformed",
            "this form is incomplete; open your console",
        ));
    }
    let typed: Vec<String> = (0..3)
        .map(|i| {
            field(&fields, &format!("w{i}"))
                .unwrap_or("")
                .trim()
                .to_lowercase()
        })
        .collect();
    let typed: Vec<&str> = typed.iter().map(String::as_str).collect();
    if auth::same(&check_mac(&s, &at, &typed), check) {
        return Ok(see_other("/"));
    }
    let mut resp = page(
        StatusCode::BAD_REQUEST,
        "Check your recovery words",
        html! {
            h1 { "Check your recovery words" }
            (question(
                &s,
                &at,
                check,
                Some("Those are not the words at those positions (error: setup.words-mismatch). Look at what you wrote down and try again.")
            ))
        },
    );
    resp.headers_mut().insert(
        "x-error-code",
        hyper::header::HeaderValue::from_static("setup.words-mismatch"),
    );
    Ok(resp)
}
