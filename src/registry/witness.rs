//! The witness side of C2SP tlog-witness `add-checkpoint`, pure: parse the request, decide.
//!
//! A request is `old <size>\n`, the consistency proof from that size (one base64 hash a line),
//! a blank line, then the checkpoint note. The witness cosigns only a checkpoint the registry
//! signed, whose old size is the size it last cosigned, and which a consistency proof shows
//! to extend that tree; one size is never cosigned with two roots. The caller persists the new
//! size (compare-and-swap on the old one) before it answers with the cosignature.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::VerifyingKey;

use super::light::{check_consistency, Trusted};
use super::note::SignedCheckpoint;

/// Largest request body a witness reads.
pub const MAX_REQUEST: usize = 16 * 1024;
/// Most proof lines a request may carry (a consistency proof is at most ~2·log₂ n hashes).
const MAX_PROOF: usize = 128;

/// An `add-checkpoint` request, parsed.
#[derive(Debug, Clone)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<String>,
    pub checkpoint: SignedCheckpoint,
}

/// Why a witness refused; each maps to the status C2SP tlog-witness names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// 403: the registry's signature does not verify, or the log is not this witness's.
    #[error("the checkpoint is not signed by this witness's registry")]
    NotSigned,
    /// 409: the old size is not the size last cosigned (the body tells it), or the same size
    /// with another root.
    #[error("the witness holds size {0}")]
    Conflict(u64),
    /// 422.
    #[error("the consistency proof does not verify")]
    BadProof,
}

/// Parses a request body; checks the registry's signature.
pub fn parse(body: &[u8], registry_key: &VerifyingKey) -> Result<AddCheckpoint, Refusal> {
    let m = Refusal::Malformed;
    let text = std::str::from_utf8(body).map_err(|_| m("not UTF-8"))?;
    let (head, note) = text.split_once("\n\n").ok_or(m("no blank line"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .filter(|n| !n.starts_with('0') || *n == "0")
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or(m("the first line must be old <size>"))?;
    let proof: Vec<String> = lines.map(str::to_owned).collect();
    if proof.len() > MAX_PROOF
        || proof
            .iter()
            .any(|p| STANDARD.decode(p).map_or(true, |b| b.len() != 32))
    {
        return Err(m("proof lines must be base64 hashes"));
    }
    let checkpoint =
        SignedCheckpoint::verify(note.as_bytes(), registry_key).map_err(|_| Refusal::NotSigned)?;
    Ok(AddCheckpoint {
        old,
        proof,
        checkpoint,
    })
}

/// Decides a request against what the witness last cosigned (`held`: size and root, or none).
pub fn decide(req: &AddCheckpoint, held: Option<(u64, [u8; 32])>) -> Result<(), Refusal> {
    let (held_size, held_root) = held.unwrap_or((0, [0; 32]));
    if req.old != held_size {
        return Err(Refusal::Conflict(held_size));
    }
    let cp = &req.checkpoint.checkpoint;
    if cp.size < req.old {
        return Err(Refusal::Malformed(
            "the checkpoint is smaller than the old size",
        ));
    }
    if held.is_none() || held_size == 0 {
        return if req.proof.is_empty() {
            Ok(())
        } else {
            Err(Refusal::BadProof)
        };
    }
    if cp.size == held_size {
        return if cp.root == held_root && req.proof.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Conflict(held_size))
        };
    }
    check_consistency(
        Trusted {
            size: held_size,
            root: held_root,
        },
        Trusted {
            size: cp.size,
            root: cp.root,
        },
        &req.proof,
    )
    .map_err(|_| Refusal::BadProof)
}

/// The request body for `add-checkpoint`.
pub fn request(old: u64, proof: &[[u8; 32]], note: &[u8]) -> Vec<u8> {
    let mut body = format!("old {old}\n").into_bytes();
    for h in proof {
        body.extend(format!("{}\n", STANDARD.encode(h)).into_bytes());
    }
    body.push(b'\n');
    body.extend_from_slice(note);
    body
}
