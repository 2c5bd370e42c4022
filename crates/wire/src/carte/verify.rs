//! Carte verification: a pure function from a wire form, a time and what the caller expects,
//! to a [`VerifiedCarte`] or the first check that failed.
//!
//! The checks run in a fixed order (see [`verify`]): the cheap, key-free ones first, so that a
//! stale or misaddressed carte never costs a key look-up or a signature check, and the single
//! expensive step, the Ed25519 signature, last.

use std::net::IpAddr;

use ed25519_dalek::VerifyingKey;

use super::codec::{decode, signed_message};
use super::{Carte, CarteError};
use crate::name::Name;

/// The answer to "which key did NAME hold at time T".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAt {
    /// The key valid at that time.
    Valid(VerifyingKey),
    /// The name is not registered.
    UnknownName,
    /// The name is registered but held no key at that time (e.g. before its first key).
    NoValidKey,
    /// The key valid at that time has been marked compromised: nothing it signed counts.
    Compromised,
    /// The registry could not be asked (and nothing local knows the name).
    Unavailable,
}

/// Answers key look-ups for verification: the registry mirror in the node, a fixed table in
/// tests and golden vectors.
pub trait KeyResolver {
    /// The key `name` held at Unix second `at`.
    fn key_at(&self, name: &Name, at: u64) -> KeyAt;
}

/// What the verifier expects of a carte beyond its own consistency.
#[derive(Clone, Copy)]
pub struct Expectations<'a> {
    /// Whether a carte addressed to this name is addressed to this node (one of its owners,
    /// or the node's own name).
    pub accepts_audience: &'a (dyn Fn(&Name) -> bool + Sync),
    /// The address the carte arrived from, when known.
    pub peer: Option<IpAddr>,
    /// Allowed clock difference, in seconds, on both ends of the validity window.
    pub skew: u64,
    /// The longest `deadline − beginning` accepted, in seconds.
    pub max_lifetime: u64,
}

/// The default allowed clock skew: one minute.
pub const DEFAULT_SKEW: u64 = 60;
/// The default maximum carte lifetime: one hour.
pub const DEFAULT_MAX_LIFETIME: u64 = 3600;

/// A carte that passed every check. Only [`verify`] builds one, so code that takes a
/// `VerifiedCarte` cannot be handed an unchecked carte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCarte {
    carte: Carte,
}

impl VerifiedCarte {
    /// The verified content.
    pub fn carte(&self) -> &Carte {
        &self.carte
    }

    /// The principal: the registered name that signed the carte.
    pub fn principal(&self) -> &Name {
        &self.carte.owner
    }
}

/// Checks 2–5 of [`verify`]: time, lifetime, audience, address. Cheap and key-free; the
/// node re-runs them on every use of a cached [`VerifiedCarte`], whose signature and key were
/// checked once.
pub fn check_claims(carte: &Carte, now: u64, expect: &Expectations<'_>) -> Result<(), CarteError> {
    if now.saturating_add(expect.skew) < carte.beginning {
        return Err(CarteError::NotBegun);
    }
    if now > carte.deadline.saturating_add(expect.skew) {
        return Err(CarteError::Expired);
    }
    if carte.deadline - carte.beginning > expect.max_lifetime {
        return Err(CarteError::LifetimeTooLong);
    }
    match &carte.audience {
        Some(audience) if !(expect.accepts_audience)(audience) => {
            return Err(CarteError::WrongNode)
        }
        None if !carte.admin_scope.is_empty() => return Err(CarteError::WrongNode),
        _ => {}
    }
    if let Some(addresses) = &carte.addresses {
        let allowed = expect.peer.is_some_and(|peer| {
            let peer = peer.to_canonical();
            addresses.iter().any(|a| a.to_canonical() == peer)
        });
        if !allowed {
            return Err(CarteError::AddressMismatch);
        }
    }
    Ok(())
}

/// Verifies a carte's wire form. Checks, in order, each with its error code:
///
/// 1. format (`carte.malformed`), then version (`carte.unsupported-version`);
/// 2. `now < beginning − skew` → `carte.not-begun`; `now > deadline + skew` → `carte.expired`;
/// 3. `deadline − beginning > max_lifetime` → `carte.lifetime-too-long`;
/// 4. audience set and not accepted, or unset with a non-zero admin scope → `carte.wrong-node`;
/// 5. addresses set and the peer not among them (or unknown) → `carte.address-mismatch`;
/// 6. the owner's key at `beginning`: unknown name → `carte.unknown-signer`; no key then, or a
///    compromised one → `carte.key-not-valid`; registry unreachable → `registry.unavailable`;
/// 7. the Ed25519 signature (`verify_strict`) → `carte.bad-signature`.
pub fn verify(
    wire_form: &str,
    now: u64,
    expect: &Expectations<'_>,
    keys: &dyn KeyResolver,
) -> Result<VerifiedCarte, CarteError> {
    let decoded = decode(wire_form)?;
    let carte = &decoded.carte;
    check_claims(carte, now, expect)?;
    let key = match keys.key_at(&carte.owner, carte.beginning) {
        KeyAt::Valid(key) => key,
        KeyAt::UnknownName => return Err(CarteError::UnknownSigner),
        KeyAt::NoValidKey | KeyAt::Compromised => return Err(CarteError::KeyNotValid),
        KeyAt::Unavailable => return Err(CarteError::RegistryUnavailable),
    };
    key.verify_strict(&signed_message(&decoded.payload), &decoded.signature)
        .map_err(|_| CarteError::BadSignature)?;
    Ok(VerifiedCarte {
        carte: decoded.carte,
    })
}
