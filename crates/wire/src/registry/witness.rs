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
    /// 409: the old size is not the size last cosigned (the body tells it).
    #[error("the witness holds size {0}")]
    Conflict(u64),
    /// 422: the consistency proof does not verify (a non-empty proof from size 0 or between
    /// equal sizes never does), or the checkpoint's root is not the one its size requires
    /// (the empty tree's at size 0, the cosigned root at the size held).
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
    // C2SP tlog-witness: a checkpoint of size 0 has the empty tree's root; from size 0 the
    // proof is empty; at the size held, the roots match and the proof is empty (RFC 6962's
    // proof between equal sizes). Anything else is 422.
    if cp.size == 0 && cp.root != empty_root() {
        return Err(Refusal::BadProof);
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
            Err(Refusal::BadProof)
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

/// RFC 6962's root of the empty tree: SHA-256 of the empty string.
fn empty_root() -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest([]).into()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::note::Checkpoint;

    fn request(old: u64, proof: &[&str], size: u64, root: [u8; 32]) -> AddCheckpoint {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let cp = Checkpoint {
            origin: crate::registry::note::origin_for(&key.verifying_key()),
            size,
            root,
            map_root: [0; 32],
            time: 1,
        };
        let note = cp.sign(&key);
        AddCheckpoint {
            old,
            proof: proof.iter().map(|s| s.to_string()).collect(),
            checkpoint: SignedCheckpoint::verify(&note, &key.verifying_key())
                .expect("our own note verifies"),
        }
    }

    const JUNK: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn the_size_held_with_a_junk_proof_or_another_root_is_422_not_409() {
        let held = Some((5, [9; 32]));
        assert_eq!(decide(&request(5, &[], 5, [9; 32]), held), Ok(()));
        assert_eq!(
            decide(&request(5, &[JUNK], 5, [9; 32]), held),
            Err(Refusal::BadProof)
        );
        assert_eq!(
            decide(&request(5, &[], 5, [8; 32]), held),
            Err(Refusal::BadProof)
        );
        // Another old size than the one held is the conflict.
        assert_eq!(
            decide(&request(4, &[], 5, [9; 32]), held),
            Err(Refusal::Conflict(5))
        );
    }

    #[test]
    fn from_nothing_the_proof_is_empty_and_size_zero_has_the_empty_root() {
        assert_eq!(decide(&request(0, &[], 3, [1; 32]), None), Ok(()));
        assert_eq!(
            decide(&request(0, &[JUNK], 3, [1; 32]), None),
            Err(Refusal::BadProof)
        );
        assert_eq!(decide(&request(0, &[], 0, empty_root()), None), Ok(()));
        assert_eq!(
            decide(&request(0, &[], 0, [1; 32]), None),
            Err(Refusal::BadProof)
        );
    }
}

/// Which witnesses a mirror trusts, how many must cosign a checkpoint, and where to ask
/// each witness what it cosigned (to catch a registry showing others another tree).
#[derive(Debug, Clone, Default)]
pub struct WitnessPolicy {
    pub witnesses: Vec<super::note::Witness>,
    /// Base URLs of the witnesses to compare checkpoints with (`GET {url}/witness/latest`).
    pub urls: Vec<String>,
    pub quorum: usize,
}
