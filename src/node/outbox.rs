//! Delivering grant-updated notifications from the outbox table.
//!
//! Each notification is posted (`application/cbor`) to the application's registered node URI.
//! A 2xx answer removes it; anything else schedules another attempt with exponential back-off
//! (2, 4, 8 … seconds, at most an hour). Entries live in SQLite, so a restart resumes where the
//! node stopped: nothing queued is lost.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::Method;

use super::NodeState;
use crate::outbound::HttpClient;
use crate::store;

/// Longest pause between attempts, seconds.
const MAX_BACKOFF: u64 = 3600;

/// Runs until `stop` resolves.
pub async fn run(state: Arc<NodeState>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let client = HttpClient::new();
    loop {
        deliver_due(&state, &client).await;
        tokio::select! {
            _ = &mut stop => return,
            _ = state.outbox_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn deliver_due(state: &NodeState, client: &HttpClient) {
    let now = state.config.clock.now();
    let due = match state.db.run(move |c| store::grants::due(c, now, 100)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "reading the outbox failed");
            return;
        }
    };
    for entry in due {
        let result = client
            .send(
                Method::POST,
                &entry.target,
                &[("content-type", "application/cbor")],
                Bytes::from(entry.body.clone()),
            )
            .await;
        let outcome = match result {
            Ok(reply) if reply.status.is_success() => None,
            Ok(reply) => Some(format!("answered {}", reply.status)),
            Err(e) => Some(e.to_string()),
        };
        let id = entry.id;
        let write = match outcome {
            None => {
                tracing::debug!(target = %entry.target, "notification delivered");
                state.db.run(move |c| store::grants::delivered(c, id)).await
            }
            Some(error) => {
                let backoff = 2u64.saturating_pow(entry.attempts + 1).min(MAX_BACKOFF);
                tracing::debug!(target = %entry.target, %error, backoff, "notification not delivered");
                state
                    .db
                    .run(move |c| store::grants::retry_later(c, id, now + backoff, &error))
                    .await
            }
        };
        if let Err(e) = write {
            tracing::warn!(error = %e, "updating the outbox failed");
        }
    }
}
