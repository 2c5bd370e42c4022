//! Delivering grant-updated notifications from the outbox table.
//!
//! Each notification is posted (`application/cbor`) to the application's registered node URI
//! through the guarded client: the URL is registry data, so its address must be public (unless
//! the operator allowed private targets), it is resolved once and pinned, no redirect is
//! followed and at most 64 KiB of the reply is read. A 2xx answer removes the entry; any other
//! answer or a network failure schedules another attempt, with exponential back-off counted
//! from the time of the failure (2, 4, 8 … seconds, at most an hour). A target the guard
//! refuses is a permanent failure, and so is an entry still undelivered after `outbox_give_up`
//! (default three days); both are removed, counted in `/metrics` and written to the grant's
//! history. Entries live in the database, so a restart resumes where the node stopped; with
//! several processes on PostgreSQL each entry is claimed by one of them (see `start_due`).
//!
//! Deliveries to different targets run concurrently, at most [`MAX_IN_FLIGHT`] at once and one
//! per target (its host and port), so a target that never answers holds one slot for at most
//! the client's timeout and delays no other application's notifications.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Bytes;
use hyper::Method;

use super::NodeState;
use crate::grant::statement::Notification;
use crate::outbound::ClientError;
use crate::store;

/// Longest pause between attempts, seconds.
const MAX_BACKOFF: u64 = 3600;
/// Deliveries in flight at once, across all targets.
pub const MAX_IN_FLIGHT: usize = 16;

/// What is being delivered right now: entry ids and targets.
#[derive(Default)]
struct InFlight {
    ids: HashSet<i64>,
    targets: HashSet<String>,
}

/// Runs until `stop` resolves.
pub async fn run(state: Arc<NodeState>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let in_flight = Arc::new(Mutex::new(InFlight::default()));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut deliveries = tokio::task::JoinSet::new();
    loop {
        start_due(&state, &in_flight, &slots, &mut deliveries).await;
        tokio::select! {
            _ = &mut stop => break,
            _ = state.outbox_wake.notified() => {}
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    deliveries.abort_all();
}

/// The part of a target URL that identifies it: scheme, host and port.
fn target_key(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(uri) => format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map(|a| a.as_str()).unwrap_or("")
        ),
        Err(_) => url.to_owned(),
    }
}

async fn start_due(
    state: &Arc<NodeState>,
    in_flight: &Arc<Mutex<InFlight>>,
    slots: &Arc<tokio::sync::Semaphore>,
    deliveries: &mut tokio::task::JoinSet<()>,
) {
    let now = state.config.clock.now();
    // Several processes on one shared database claim what they deliver (each entry by
    // one process; a process that dies mid-delivery leaves it to be claimed again after
    // `outbox_claim`). One process alone reads what is due: its in-flight set is the claim.
    let shared = store::coherence::shared(&state.db);
    let room = slots.available_permits().min(256) as u32;
    // A claim lasts longer than one attempt can take (the outbound client's time-out), and
    // is short enough that a process killed mid-delivery delays the entry only this much.
    let claim = state.config.outbox_claim;
    if room == 0 {
        return;
    }
    let due = match state
        .db
        .run(move |c| {
            if shared {
                store::grants::claim_due(c, now, room, claim)
            } else {
                store::grants::due(c, now, 256)
            }
        })
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "reading the outbox failed");
            return;
        }
    };
    let mut handed_back = Vec::new();
    for entry in due {
        let key = target_key(&entry.target);
        {
            let mut f = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let permit = if f.ids.contains(&entry.id) || f.targets.contains(&key) {
                None
            } else {
                slots.clone().try_acquire_owned().ok()
            };
            let Some(permit) = permit else {
                if shared {
                    handed_back.push(entry.id);
                }
                continue;
            };
            f.ids.insert(entry.id);
            f.targets.insert(key.clone());
            let state = state.clone();
            let in_flight = in_flight.clone();
            deliveries.spawn(async move {
                deliver(&state, entry.clone()).await;
                let mut f = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                f.ids.remove(&entry.id);
                f.targets.remove(&key);
                drop(permit);
                state.outbox_wake.notify_one();
            });
        }
    }
    if !handed_back.is_empty() {
        // Claimed but not started here: due again for the next round.
        let _ = state
            .db
            .run(move |c| {
                for id in handed_back {
                    store::grants::release(c, id, now + 1)?;
                }
                Ok::<_, store::StoreError>(())
            })
            .await;
    }
}

/// How one attempt ended.
enum Outcome {
    Delivered,
    Retry(String),
    /// A permanent failure: refused by the guard, or given up.
    Drop {
        result: &'static str,
        why: String,
    },
}

async fn deliver(state: &NodeState, entry: store::grants::OutboxEntry) {
    let result = state
        .targets
        .send(
            Method::POST,
            &entry.target,
            &[("content-type", "application/cbor")],
            Bytes::from(entry.body.clone()),
        )
        .await;
    // The time of the failure, not of the attempt's start: a slow target must not make the
    // next attempt due at once.
    let now = state.config.clock.now();
    let outcome = match result {
        Ok(reply) if reply.status.is_success() => Outcome::Delivered,
        Err(ClientError::Refused { refused, .. }) => Outcome::Drop {
            result: "refused",
            why: format!("notification refused: {refused}"),
        },
        Err(ClientError::PlainHttp(url)) => Outcome::Drop {
            result: "refused",
            why: format!("notification refused: {url} is plain http"),
        },
        Ok(reply) => Outcome::Retry(format!("answered {}", reply.status)),
        Err(e) => Outcome::Retry(e.to_string()),
    };
    let outcome = match outcome {
        Outcome::Retry(error)
            if now.saturating_sub(entry.created) >= state.config.outbox_give_up =>
        {
            Outcome::Drop {
                result: "given-up",
                why: format!(
                    "notification given up after {} attempts: {error}",
                    entry.attempts + 1
                ),
            }
        }
        other => other,
    };
    let id = entry.id;
    let write = match outcome {
        Outcome::Delivered => {
            tracing::debug!(target = %entry.target, "notification delivered");
            state.metrics.notification("delivered");
            state.db.run(move |c| store::grants::delivered(c, id)).await
        }
        Outcome::Retry(error) => {
            let backoff = 2u64.saturating_pow(entry.attempts + 1).min(MAX_BACKOFF);
            tracing::debug!(target = %entry.target, %error, backoff, "notification not delivered");
            state.metrics.notification("failed");
            state
                .db
                .run(move |c| store::grants::retry_later(c, id, now + backoff, &error))
                .await
        }
        Outcome::Drop { result, why } => {
            tracing::warn!(target = %entry.target, %why, "notification dropped");
            let target = entry.target.clone();
            let body = entry.body.clone();
            let outcome = state
                .db
                .run(move |c| {
                    let tx = c.transaction()?;
                    // A refused address refuses every notification waiting for it: drop them
                    // all in this one transaction (one fsync), not one by one.
                    let bodies = if result == "refused" {
                        store::grants::drop_target(&tx, &target)?
                    } else {
                        store::grants::delivered(&tx, id)?;
                        vec![body]
                    };
                    for body in &bodies {
                        let Ok((n, _)) = Notification::decode(body) else {
                            continue;
                        };
                        let audit = store::grants::AuditEntry {
                            app: n.application.to_string(),
                            actor: "node".into(),
                            action: why.clone(),
                            old_scope: n.scope.bits(),
                            new_scope: n.scope.bits(),
                            expires: n.expires,
                            address: None,
                            at: now,
                        };
                        store::grants::insert_audit(&tx, &n.owner, &audit)?;
                    }
                    tx.commit()?;
                    Ok::<_, store::StoreError>(bodies.len())
                })
                .await;
            outcome.map(|n| {
                for _ in 0..n.max(1) {
                    state.metrics.notification(result);
                }
            })
        }
    };
    if let Err(e) = write {
        tracing::warn!(error = %e, "updating the outbox failed");
    }
}
