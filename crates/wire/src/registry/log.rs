//! The registry log's entries, chained by blake3.
//!
//! Entry N is the canonical CBOR array `[N, time, prev_hash, difficulty, op]`, where `op` is
//! the operation envelope as submitted and `prev_hash` is the hash of entry N−1 (32 zero bytes
//! for entry 0). An entry's hash is blake3 over [`ENTRY_PREFIX`] and the entry bytes. The same
//! entry bytes are the leaves of the log's RFC 6962 tree, whose root the checkpoints sign
//! ([`super::note`]).

use ciborium::Value;

use super::RegistryError;
use crate::cbor;

/// Domain separation for entry hashes.
pub const ENTRY_PREFIX: &[u8] = b"grant-node registry entry v1\0";
/// Domain separation for per-name digests.
pub const DIGEST_PREFIX: &[u8] = b"grant-node name digest v1\0";

/// The hash before the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    /// Registry time when the operation was accepted (Unix seconds).
    pub time: u64,
    pub prev_hash: [u8; 32],
    /// The proof-of-work difficulty in force when the operation was accepted.
    pub difficulty: u32,
    /// The operation envelope.
    pub op: Vec<u8>,
}

impl LogEntry {
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&Value::Array(vec![
            self.seq.into(),
            self.time.into(),
            Value::Bytes(self.prev_hash.to_vec()),
            u64::from(self.difficulty).into(),
            Value::Bytes(self.op.clone()),
        ]))
    }

    pub fn decode(bytes: &[u8]) -> Result<LogEntry, RegistryError> {
        let m = RegistryError::Malformed;
        let f = cbor::array(
            cbor::decode_canonical(bytes).map_err(m)?,
            5,
            "log entry must be an array of 5",
        )
        .map_err(m)?;
        let difficulty = cbor::uint(&f[3], "difficulty must be an unsigned integer").map_err(m)?;
        Ok(LogEntry {
            seq: cbor::uint(&f[0], "seq must be an unsigned integer").map_err(m)?,
            time: cbor::uint(&f[1], "time must be an unsigned integer").map_err(m)?,
            prev_hash: cbor::bytes(&f[2], "prev_hash must be 32 bytes").map_err(m)?,
            difficulty: u32::try_from(difficulty).map_err(|_| m("difficulty out of range"))?,
            op: match &f[4] {
                Value::Bytes(b) => b.clone(),
                _ => return Err(m("op must be a byte string")),
            },
        })
    }

    /// The hash the next entry chains to.
    pub fn hash(&self) -> [u8; 32] {
        entry_hash(&self.encode())
    }
}

/// The hash of an encoded entry.
pub fn entry_hash(entry_bytes: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(ENTRY_PREFIX);
    h.update(entry_bytes);
    *h.finalize().as_bytes()
}

/// The digest of a name after an operation: chains the previous digest and the operation.
pub fn next_digest(previous: &[u8; 32], op_envelope: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(DIGEST_PREFIX);
    h.update(previous);
    h.update(op_envelope);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips_and_chains() {
        let e = LogEntry {
            seq: 0,
            time: 5,
            prev_hash: GENESIS,
            difficulty: 0,
            op: vec![1, 2, 3],
        };
        assert_eq!(LogEntry::decode(&e.encode()).unwrap(), e);
        let mut other = e.clone();
        other.op = vec![1, 2, 4];
        assert_ne!(e.hash(), other.hash());
    }
}
