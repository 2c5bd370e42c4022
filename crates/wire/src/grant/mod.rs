//! Grants: the pure rules of the `/grant` request, and the two statements an owner signs about
//! a grant: the receipt (returned to the application through the redirect) and the
//! grant-updated notification (sent to the application's node URI).

pub mod request;
pub mod statement;

/// Why a grant request or decision was refused. Codes are stable; the `/grant` page shows
/// them on a plain error page and never redirects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    #[error("the request is longer than {} bytes", request::MAX_QUERY_BYTES)]
    TooLarge,
    #[error("the request lacks the {0} parameter")]
    MissingParameter(&'static str),
    #[error("the {0} parameter is given more than once")]
    DuplicateParameter(String),
    #[error("client_id is not a registered name")]
    UnknownClient,
    #[error("the carte in client_secret was not signed by client_id")]
    ClientMismatch,
    #[error("the carte in client_secret does not carry the grant client scope")]
    NotAGrantCarte,
    #[error("the request's {0} does not match the one signed into the carte")]
    RequestMismatch(&'static str),
    #[error("redirect_uri is not one of the application's registered redirect URIs")]
    RedirectNotRegistered,
    #[error("{0}")]
    UnknownScope(String),
    #[error("the application asks for scopes that cannot be granted: {0}")]
    ScopeNotGrantable(String),
    #[error("this grant carte was used already; start again from the application")]
    Replayed,
    #[error("this request has expired or was answered already; start again from the application")]
    RequestExpired,
    #[error("no owner of that name")]
    UnknownOwner,
    #[error("choose at least one scope to allow, or Deny")]
    NothingChosen,
}

impl GrantError {
    pub fn code(&self) -> &'static str {
        match self {
            GrantError::TooLarge => "request.too-large",
            GrantError::MissingParameter(_) => "grant.missing-parameter",
            GrantError::DuplicateParameter(_) => "grant.duplicate-parameter",
            GrantError::UnknownClient => "grant.unknown-client",
            GrantError::ClientMismatch => "grant.client-mismatch",
            GrantError::NotAGrantCarte => "grant.not-a-grant-carte",
            GrantError::RequestMismatch(_) => "grant.request-mismatch",
            GrantError::RedirectNotRegistered => "grant.redirect-uri-not-registered",
            GrantError::UnknownScope(_) => "scope.unknown",
            GrantError::ScopeNotGrantable(_) => "grant.scope-not-grantable",
            GrantError::Replayed => "carte.replayed",
            GrantError::RequestExpired => "grant.request-expired",
            GrantError::UnknownOwner => "grant.unknown-owner",
            GrantError::NothingChosen => "grant.nothing-chosen",
        }
    }
}
