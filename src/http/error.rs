//! The one table from domain errors to HTTP statuses and JSON bodies.
//!
//! Domain modules know nothing of HTTP; each error has a stable code (`carte.expired`), and
//! this file decides its status. A 500 tells the client only "internal error"; the detail goes
//! to the log.

use hyper::StatusCode;

use crate::carte::CarteError;
use crate::name::NameError;
use crate::registry::RegistryError;
use crate::scope::ScopeError;
use crate::store::StoreError;

/// An error on its way to the client: status, stable code, human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields for the JSON body (e.g. the missing scopes of a 403).
    pub extra: Option<serde_json::Value>,
    /// For a 405: the methods the resource allows, sent as `Allow` (RFC 9110 §15.5.6).
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
            allow: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
    }

    /// 405, naming the methods `allow`ed (`"GET, PUT"`): a 405 never goes without them.
    pub fn method_not_allowed(allow: &'static str) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!("this resource allows {allow}"),
        );
        e.allow = Some(allow);
        e
    }

    /// `410 owner.moved`: `owner` is no longer hosted here; `node_uri` is where it went, when
    /// known. Clients look the owner's node up in the registry again rather than trust it.
    pub fn moved(owner: &crate::name::Name, node_uri: Option<&str>) -> ApiError {
        ApiError::new(
            StatusCode::GONE,
            "owner.moved",
            match node_uri {
                Some(uri) => {
                    format!("{owner} has moved to {uri}; look its node up in the registry")
                }
                None => {
                    format!("{owner} is no longer hosted here; look its node up in the registry")
                }
            },
        )
        .with(serde_json::json!({ "owner": owner.as_str(), "node_uri": node_uri }))
    }

    /// An internal failure: logged in full, reported as nothing more than "internal error".
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(%detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The database out of reach (PostgreSQL restarting, say): `503 store.unavailable`, a
    /// moment's retry away. The detail goes to the log.
    pub fn unavailable(detail: impl std::fmt::Display) -> ApiError {
        tracing::warn!(%detail, "storage unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store.unavailable",
            "the database is unavailable; try again in a moment",
        )
    }

    /// A failure from a step that reports `anyhow` errors: `store.unavailable` when the
    /// database was out of reach, internal otherwise.
    pub fn failed(e: anyhow::Error) -> ApiError {
        match e.downcast_ref() {
            Some(crate::node::grants::ChangeError::NoGrant) => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    "grant.not-found",
                    "this application holds no grant",
                )
            }
            Some(crate::node::grants::ChangeError::NoOwner(owner)) => {
                return ApiError::moved(owner, None)
            }
            None => {}
        }
        match e.chain().find_map(|c| c.downcast_ref::<StoreError>()) {
            Some(StoreError::Unavailable(detail)) => ApiError::unavailable(detail),
            _ => ApiError::internal(format!("{e:#}")),
        }
    }

    /// Adds fields to the JSON body.
    pub fn with(mut self, extra: serde_json::Value) -> ApiError {
        self.extra = Some(extra);
        self
    }

    /// The JSON body: `{"error": code, "message": message, …extra}`.
    pub fn body(&self) -> String {
        let mut body = serde_json::json!({ "error": self.code, "message": self.message });
        if let (Some(serde_json::Value::Object(extra)), serde_json::Value::Object(map)) =
            (&self.extra, &mut body)
        {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
        body.to_string()
    }
}

impl From<CarteError> for ApiError {
    fn from(e: CarteError) -> ApiError {
        // Every carte failure is an authentication failure (401) except an unreachable
        // registry, which is the node's problem, not the caller's (503).
        let status = match e {
            CarteError::RegistryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    }
}

impl From<ScopeError> for ApiError {
    fn from(e: ScopeError) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        let status = match e {
            RegistryError::NameInvalid(_)
            | RegistryError::Malformed(_)
            | RegistryError::BadUri(_)
            | RegistryError::PowInsufficient { .. }
            | RegistryError::ValidFromInPast
            | RegistryError::WeakKey(_) => StatusCode::BAD_REQUEST,
            RegistryError::BadSignature => StatusCode::FORBIDDEN,
            RegistryError::NameTaken
            | RegistryError::NameConfusable(_)
            | RegistryError::StaleDigest => StatusCode::CONFLICT,
            RegistryError::NameUnknown => StatusCode::NOT_FOUND,
            RegistryError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RegistryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RegistryError::Untrusted(_) => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(detail) => ApiError::unavailable(detail),
            other => ApiError::internal(other),
        }
    }
}
