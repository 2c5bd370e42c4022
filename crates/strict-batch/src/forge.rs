//! Signatures with a chosen `R`, for tests of verifiers: the torsion-shifted and small-order
//! `R`s that separate `verify_strict` from a plain batch equation.

use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, SigningKey};
use sha2::{Digest, Sha512};

/// A signature by `key` on `message` whose `R` is `r_bytes` and whose `S` is `r + k·a`, with
/// `k` computed over `r_bytes` as Ed25519 does: valid exactly when `r_bytes` encodes `[r]B`.
pub fn sign_with_r_bytes(
    key: &SigningKey,
    message: &[u8],
    r: Scalar,
    r_bytes: [u8; 32],
) -> Signature {
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(r_bytes)
            .chain_update(key.verifying_key().as_bytes())
            .chain_update(message),
    );
    let s = r + k * key.to_scalar();
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&r_bytes);
    bytes[32..].copy_from_slice(s.as_bytes());
    Signature::from_bytes(&bytes)
}
