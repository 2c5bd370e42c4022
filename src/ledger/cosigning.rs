//! The registry's side of witnessing: after every new checkpoint, ask each configured witness
//! to cosign it (C2SP tlog-witness `add-checkpoint`, with a consistency proof from the size
//! that witness last cosigned), and add the cosignatures that verify to the checkpoint it
//! serves. A witness that holds another size answers 409 with it; the registry then retries
//! once from that size. A witness that refuses or cannot be reached is retried on the next
//! round; the registry never waits for witnesses before accepting an operation.

use std::collections::HashMap;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::Method;

use super::authority::Authority;
use crate::outbound::HttpClient;
use crate::registry::note::Witness;
use crate::registry::witness;
use crate::store;

/// A witness the registry asks, at `url` (its `/witness` prefix is added).
#[derive(Debug, Clone)]
pub struct WitnessEndpoint {
    pub url: String,
    pub witness: Witness,
}

impl WitnessEndpoint {
    /// Parses `URL,VKEY` (the `registry-stub --witness` form).
    pub fn parse(s: &str) -> Result<WitnessEndpoint, String> {
        let (url, vkey) = s
            .rsplit_once(',')
            .ok_or_else(|| format!("{s:?}: expected URL,VKEY"))?;
        Ok(WitnessEndpoint {
            url: url.trim_end_matches('/').to_owned(),
            witness: Witness::parse_vkey(vkey)?,
        })
    }
}

/// Gathers cosignatures for `authority`'s checkpoints until `stop`, waking on every new
/// checkpoint and every `every` (to retry witnesses that were down).
pub async fn run(
    authority: Authority,
    witnesses: Vec<WitnessEndpoint>,
    client: HttpClient,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let changed = authority.changed();
    loop {
        round(&authority, &witnesses, &client, &mut sizes).await;
        tokio::select! {
            _ = &mut stop => return,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One round: every witness whose cosignature the latest checkpoint lacks is asked once.
pub async fn round(
    authority: &Authority,
    witnesses: &[WitnessEndpoint],
    client: &HttpClient,
    sizes: &mut HashMap<String, u64>,
) {
    let a = authority.clone();
    let Ok(Ok(current)) = tokio::task::spawn_blocking(move || a.checkpoint_blocking()).await else {
        return;
    };
    let list: Vec<Witness> = witnesses.iter().map(|w| w.witness.clone()).collect();
    let have = current.cosigned_by(&list);
    for w in witnesses {
        if have.contains(&&w.witness) {
            continue;
        }
        let size = current.checkpoint.size;
        for _attempt in 0..2 {
            let old = sizes.get(&w.witness.name).copied().unwrap_or(0).min(size);
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                let db = authority.db().clone();
                match db
                    .run(move |c| store::registry::consistency_proof(c, old, size))
                    .await
                {
                    Ok(p) => p,
                    Err(_) => break,
                }
            };
            let body = witness::request(old, &proof, &current.note);
            let url = format!("{}/witness/add-checkpoint", w.url);
            let reply = match client
                .send(Method::POST, &url, &[], Bytes::from(body))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(url, error = %e, "witness unreachable");
                    break;
                }
            };
            match reply.status.as_u16() {
                200 => {
                    let ok = current
                        .with_cosignatures(&reply.body)
                        .is_ok_and(|c| c.cosigned_by(std::slice::from_ref(&w.witness)).len() == 1);
                    if !ok {
                        tracing::warn!(url, "witness answered a cosignature that does not verify");
                        break;
                    }
                    sizes.insert(w.witness.name.clone(), size);
                    let a = authority.clone();
                    let lines = reply.body.to_vec();
                    let _ = tokio::task::spawn_blocking(move || {
                        a.add_cosignatures_blocking(size, &lines)
                    })
                    .await;
                    break;
                }
                409 => {
                    let held = std::str::from_utf8(&reply.body)
                        .ok()
                        .and_then(|t| t.trim().parse::<u64>().ok());
                    match held {
                        Some(h) if h <= size && Some(&h) != sizes.get(&w.witness.name) => {
                            sizes.insert(w.witness.name.clone(), h);
                        }
                        _ => {
                            tracing::error!(
                                url,
                                ?held,
                                size,
                                "witness refuses this checkpoint: it holds a conflicting tree"
                            );
                            break;
                        }
                    }
                }
                status => {
                    tracing::warn!(url, status, "witness refused the checkpoint");
                    break;
                }
            }
        }
    }
}
