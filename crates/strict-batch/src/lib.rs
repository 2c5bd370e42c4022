//! Batched Ed25519 verification whose answers are exactly `verify_strict`'s.
//!
//! `ed25519_dalek::verify_batch` is not the same predicate as `verify_strict`. It checks one
//! random combination of the signatures' equations, so it cannot see a small-order part of a
//! point: an `R` that is a valid `R` plus a point of order 2, 4 or 8 (which `verify_strict`'s
//! cofactorless equation refuses) is cancelled whenever its coefficient is a multiple of that
//! order, which happens with probability ½ or more, and its coefficients are derived from the
//! signatures themselves, so the signer can grind until they are. Nor does it refuse
//! small-order `A` or `R`, or a non-canonical encoding of `R`. Two verifiers that batch
//! differently could then disagree about the same signature.
//!
//! This module batches only what cannot make the two differ, and answers the rest itself:
//!
//! - the key must be a [`StrongKey`]: canonical encoding, not small order, no small-order
//!   component (checked once per key, by the caller's cache);
//! - `S` must be canonical (`< ℓ`): otherwise `verify_strict` refuses, and so do we;
//! - `R` must be the canonical encoding of a point with no small-order component, other than the
//!   identity: otherwise `verify_strict` refuses (its `[s]B − [k]A` is then a point of prime
//!   order, whose only encoding is canonical, and the identity is refused as small-order), and
//!   so do we, without a batch.
//!
//! Every point left is in the prime-order subgroup, where a random combination is exact up to
//! its coefficients: the coefficients are 128-bit numbers from the operating system's random
//! source, drawn afresh for every batch, so a batch with a bad signature passes with
//! probability at most 2⁻¹²⁸, whoever made the signatures and whatever shares the batch. When a
//! batch fails, every signature in it is checked on its own with `verify_strict`.
//!
//! The price is the test for a small-order component of `R`: a multiplication by ℓ, two thirds
//! of a `verify_strict`, which is more than batching saves. Measured in one run (`cargo bench
//! --bench sig_batch`, 2026-11-26): `verify_strict` 38.1 µs; `verify_batch` 19.6 µs a
//! signature in batches of 64; this module 44.9 µs a signature in batches of 64, of which the
//! test is 25.3 µs. So nothing on a hot path uses it: the registry mirror checks its pages'
//! signatures with `verify_strict`, spread over the cores, and the node checks each new carte
//! with `verify_strict`. It stays, tested and fuzzed against `verify_strict`, for the day a
//! cheaper exact test for the prime-order subgroup (by field arithmetic, as in Pornin's point
//! halving, which curve25519-dalek does not expose) makes it pay.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

pub use grant_wire::registry::points::{canonical_point, has_prime_order_or_identity};

/// A verifying key that may join a batch: its encoding is canonical and its point has prime
/// order. Only [`StrongKey::check`] builds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrongKey {
    key: VerifyingKey,
    point: EdwardsPoint,
}

impl StrongKey {
    /// The key, if it is strong; `None` for a small-order point, a non-canonical encoding or a
    /// point with a small-order component. One multiplication by ℓ: callers keep the answer.
    pub fn check(key: &VerifyingKey) -> Option<StrongKey> {
        let point = key.to_edwards();
        let strong = canonical_point(key.as_bytes())
            && !point.is_identity()
            && has_prime_order_or_identity(&point);
        strong.then_some(StrongKey { key: *key, point })
    }

    /// The key itself.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// One signature to check.
#[derive(Clone, Copy)]
pub struct Item<'a> {
    pub key: &'a StrongKey,
    pub message: &'a [u8],
    pub signature: &'a Signature,
}

/// `verify_strict`'s answer for every item, in order.
pub fn verify_each(items: &[Item<'_>]) -> Vec<bool> {
    let prepared: Vec<Option<Prepared>> = items.iter().map(prepare).collect();
    let batch: Vec<&Prepared> = prepared.iter().flatten().collect();
    if batch_holds(&batch) {
        return prepared.iter().map(Option::is_some).collect();
    }
    items
        .iter()
        .zip(&prepared)
        .map(|(item, p)| p.is_some() && single(item))
        .collect()
}

/// Whether `verify_strict` accepts every item. Cheaper than [`verify_each`] when the answer is
/// no: it stops at the first item that cannot verify, and does not look for the others.
pub fn verify_all(items: &[Item<'_>]) -> bool {
    let mut batch = Vec::with_capacity(items.len());
    for item in items {
        match prepare(item) {
            Some(p) => batch.push(p),
            None => return false,
        }
    }
    let refs: Vec<&Prepared> = batch.iter().collect();
    batch_holds(&refs) || items.iter().all(single)
}

/// One item's terms of the batch equation `[s]B = R + [k]A`.
struct Prepared {
    r: EdwardsPoint,
    a: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// The item's terms, or `None` when `verify_strict` refuses it whatever the equation says.
fn prepare(item: &Item<'_>) -> Option<Prepared> {
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*item.signature.s_bytes()))?;
    let r_bytes = item.signature.r_bytes();
    if !canonical_point(r_bytes) {
        return None;
    }
    let r = CompressedEdwardsY(*r_bytes).decompress()?;
    if r.is_identity() || !has_prime_order_or_identity(&r) {
        return None;
    }
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(r_bytes)
            .chain_update(item.key.key.as_bytes())
            .chain_update(item.message),
    );
    Some(Prepared {
        r,
        a: item.key.point,
        s,
        k,
    })
}

/// Whether `Σ zᵢ·(Rᵢ + [kᵢ]Aᵢ − [sᵢ]B) = 0` for fresh random 128-bit `zᵢ`. An empty batch holds.
/// `false` also when the random source fails: the caller then checks one by one.
fn batch_holds(batch: &[&Prepared]) -> bool {
    if batch.is_empty() {
        return true;
    }
    let mut random = vec![0u8; 16 * batch.len()];
    if getrandom::getrandom(&mut random).is_err() {
        return false;
    }
    let z: Vec<Scalar> = random
        .chunks_exact(16)
        .map(|c| {
            let mut wide = [0u8; 32];
            wide[..16].copy_from_slice(c);
            Scalar::from_bytes_mod_order(wide)
        })
        .collect();
    let b_coefficient: Scalar = -batch.iter().zip(&z).map(|(p, z)| z * p.s).sum::<Scalar>();
    let scalars = std::iter::once(b_coefficient)
        .chain(z.iter().copied())
        .chain(batch.iter().zip(&z).map(|(p, z)| z * p.k));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(batch.iter().map(|p| p.r))
        .chain(batch.iter().map(|p| p.a));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

fn single(item: &Item<'_>) -> bool {
    item.key
        .key
        .verify_strict(item.message, item.signature)
        .is_ok()
}

pub mod forge;
#[cfg(test)]
mod tests;
