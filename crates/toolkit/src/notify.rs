//! A receiver for grant-updated notifications: a hyper handler an application mounts at its
//! registered node URI. It verifies each notification against the owner's registered key and
//! updates the grant book.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

/// How long a notification's body may take to arrive.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

use super::{App, ClientError};
use grant_wire::grant::statement::Notification;

/// Handles `POST` of a notification (`application/cbor`): 204 when applied, 400 when
/// malformed or not for this application, 401 when the signature does not verify.
pub async fn handle(app: &App, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match accept(app, req).await {
        Ok(()) => reply(StatusCode::NO_CONTENT, ""),
        Err((status, code)) => reply(status, &format!("{{\"error\":\"{code}\"}}")),
    }
}

async fn accept(app: &App, req: Request<Incoming>) -> Result<(), (StatusCode, &'static str)> {
    let collect = Limited::new(req.into_body(), 8192).collect();
    let body = tokio::time::timeout(BODY_DEADLINE, collect)
        .await
        .map_err(|_| (StatusCode::REQUEST_TIMEOUT, "request.timeout"))?
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "request.too-large"))?
        .to_bytes();
    app.accept_notification(&body)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            ClientError::BadReceipt(_) => (StatusCode::UNAUTHORIZED, "notification.bad-signature"),
            ClientError::Refused { .. } => (StatusCode::BAD_REQUEST, "notification.not-for-us"),
            _ => (StatusCode::BAD_REQUEST, "notification.malformed"),
        })
}

impl App {
    /// Verifies a notification body and applies it to the grant book.
    pub async fn accept_notification(&self, body: &[u8]) -> Result<Notification, ClientError> {
        let (claimed, _) =
            Notification::decode(body).map_err(|e| ClientError::Storage(e.to_string()))?;
        if claimed.application != *self.name() {
            return Err(ClientError::Refused {
                status: 400,
                code: "notification.not-for-us".into(),
                message: "addressed to another application".into(),
            });
        }
        let key = self.owner_key(&claimed.owner, claimed.time).await?;
        let n =
            Notification::verify(body, &key).map_err(|e| ClientError::BadReceipt(e.to_string()))?;
        self.record_update(&n.owner, n.scope, n.expires, n.time)
            .await?;
        Ok(n)
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r
}
