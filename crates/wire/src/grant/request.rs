//! The `/grant` request: its parameters and the checks that need no I/O.
//!
//! The HTTP layer verifies the carte (that needs the registry mirror) and looks up the
//! application's record; [`check`] then decides, purely, whether the verified carte, the record
//! and the URL agree. A request that fails here gets an error page, never a redirect: until
//! these checks pass, `redirect_uri` is not known to be the application's.

use super::GrantError;
use crate::carte::VerifiedCarte;
use crate::name::Name;
use crate::registry::NameRecord;
use crate::scope::{Catalogue, Scope};
use crate::uri::CheckedUri;

/// The query parameters of `GET /grant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantParams {
    pub client_id: String,
    pub client_secret: String,
    pub scope: String,
    pub redirect_uri: String,
    pub state: String,
    pub owner: Option<String>,
}

/// Longest query string `/grant` reads (a carte is at most 4 KiB, and it is in there).
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

impl GrantParams {
    /// Parses the query string. Unknown parameters are ignored; a known one given twice is
    /// refused, since which copy counts would otherwise depend on the reader.
    pub fn parse(query: &str) -> Result<GrantParams, GrantError> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(GrantError::TooLarge);
        }
        let mut fields: [Option<String>; 6] = Default::default();
        const NAMES: [&str; 6] = [
            "client_id",
            "client_secret",
            "scope",
            "redirect_uri",
            "state",
            "owner",
        ];
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if let Some(i) = NAMES.iter().position(|n| *n == k) {
                if fields[i].is_some() {
                    return Err(GrantError::DuplicateParameter(NAMES[i].to_owned()));
                }
                fields[i] = Some(v.into_owned());
            }
        }
        let [client_id, client_secret, scope, redirect_uri, state, owner] = fields;
        Ok(GrantParams {
            client_id: client_id.ok_or(GrantError::MissingParameter("client_id"))?,
            client_secret: client_secret.ok_or(GrantError::MissingParameter("client_secret"))?,
            scope: scope.ok_or(GrantError::MissingParameter("scope"))?,
            redirect_uri: redirect_uri.ok_or(GrantError::MissingParameter("redirect_uri"))?,
            state: state.ok_or(GrantError::MissingParameter("state"))?,
            owner: owner.filter(|o| !o.trim().is_empty()),
        })
    }

    /// The query string, re-encoded (with `owner` replaced), for redirects that must keep
    /// every parameter intact.
    pub fn to_query(&self, owner: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("client_id", &self.client_id)
            .append_pair("client_secret", &self.client_secret)
            .append_pair("scope", &self.scope)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", &self.state);
        if let Some(o) = owner.or(self.owner.as_deref()) {
            q.append_pair("owner", o);
        }
        q.finish()
    }
}

/// A request that passed every check: what the consent page shows and records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRequest {
    pub app: Name,
    pub scope: Scope,
    pub redirect_uri: CheckedUri,
    pub state: String,
}

/// Checks that the verified carte, the application's registry record and the URL agree.
/// Order: who signed, what kind of carte, the binding of every URL parameter, the redirect
/// target, and last what may be granted.
pub fn check(
    params: &GrantParams,
    app: &NameRecord,
    carte: &VerifiedCarte,
    scopes: &Catalogue,
) -> Result<CheckedRequest, GrantError> {
    let c = carte.carte();
    if c.owner != app.name {
        return Err(GrantError::ClientMismatch);
    }
    if !c.client_scope.contains(Scope::GRANT) {
        return Err(GrantError::NotAGrantCarte);
    }
    let request = c
        .request
        .as_ref()
        .ok_or(GrantError::RequestMismatch("request"))?;
    // A scope name this node does not define is refused as such, never dropped.
    let scope = scopes
        .parse(&params.scope)
        .map_err(|e| GrantError::UnknownScope(e.to_string()))?;
    if request.scope != scope {
        return Err(GrantError::RequestMismatch("scope"));
    }
    if request.redirect_uri != params.redirect_uri {
        return Err(GrantError::RequestMismatch("redirect_uri"));
    }
    if request.state != params.state {
        return Err(GrantError::RequestMismatch("state"));
    }
    let redirect = CheckedUri::parse_redirect(&params.redirect_uri)
        .map_err(|_| GrantError::RedirectNotRegistered)?;
    let registered = app
        .redirect_uris
        .iter()
        .filter_map(|r| CheckedUri::parse_redirect(r).ok())
        .any(|r| redirect.allowed_by(&r));
    if !registered {
        return Err(GrantError::RedirectNotRegistered);
    }
    if scope.is_empty() {
        return Err(GrantError::ScopeNotGrantable("nothing".into()));
    }
    if scope.contains(Scope::GRANT) {
        return Err(GrantError::ScopeNotGrantable("grant".into()));
    }
    let beyond = scope.difference(scopes.all());
    if !beyond.is_empty() {
        return Err(GrantError::ScopeNotGrantable(format!(
            "bits {:#x} are not defined here",
            beyond.bits()
        )));
    }
    Ok(CheckedRequest {
        app: app.name.clone(),
        scope,
        redirect_uri: redirect,
        state: params.state.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_duplicate_parameters_are_refused() {
        let q = "client_id=a&client_secret=b&scope=c&redirect_uri=d&state=e";
        assert!(GrantParams::parse(q).is_ok());
        assert_eq!(
            GrantParams::parse("client_id=a").unwrap_err(),
            GrantError::MissingParameter("client_secret")
        );
        assert_eq!(
            GrantParams::parse(&format!("{q}&client_id=x"))
                .unwrap_err()
                .code(),
            "grant.duplicate-parameter"
        );
    }

    #[test]
    fn reencoding_can_grow_so_redirects_forward_the_raw_query() {
        // Regression (fuzz target grant_query): a query under the limit whose raw ':' and '/'
        // re-encode as %3A and %2F grows past it. The node therefore forwards raw queries.
        let redirect = format!("https://app.example/{}", "a/".repeat(2600));
        let q = format!("client_id=a&client_secret=b&scope=c&state=d&redirect_uri={redirect}");
        assert!(q.len() <= MAX_QUERY_BYTES);
        let p = GrantParams::parse(&q).unwrap();
        assert!(p.to_query(None).len() > MAX_QUERY_BYTES);
        assert_eq!(
            GrantParams::parse(&p.to_query(None)).unwrap_err(),
            GrantError::TooLarge
        );
    }

    #[test]
    fn query_round_trips() {
        let q = "client_id=a&client_secret=b%2Bc&scope=view-profile+react&redirect_uri=https%3A%2F%2Fx.example%2Fcb&state=%3Cs%3E";
        let p = GrantParams::parse(q).unwrap();
        assert_eq!(p.state, "<s>");
        let again = GrantParams::parse(&p.to_query(Some("bob"))).unwrap();
        assert_eq!(again.owner.as_deref(), Some("bob"));
        assert_eq!(again.client_secret, "b+c");
        assert_eq!(again.scope, "view-profile react");
    }
}
