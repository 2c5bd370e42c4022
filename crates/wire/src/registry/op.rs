//! Registry operations: `register` and `update`, their canonical CBOR form, signatures and
//! proof of work. Pure: checking an operation against the registry's current state is
//! [`super::rules`]'s job.
//!
//! An operation travels as the envelope `[payload, signature]` (see [`crate::cbor`]); the
//! signature covers [`OP_PREFIX`] followed by the payload.

use ciborium::Value;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::RegistryError;
use crate::cbor;
use crate::name::Name;

/// Domain-separation prefix of operation signatures.
pub const OP_PREFIX: &[u8] = b"grant-node registry op v1\0";
/// Largest operation envelope accepted.
pub const MAX_OP_BYTES: usize = 8192;
/// Default proof-of-work difficulty, in leading zero bits of blake3: about a second of one core.
pub const DEFAULT_POW_BITS: u32 = 20;
/// Most redirect URIs a name may register.
pub const MAX_REDIRECT_URIS: usize = 16;

/// Claim a new name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub name: Name,
    /// The key that authorises later changes; it signs this operation (proof of possession).
    pub updating_key: VerifyingKey,
    /// The first signing key (what cartes are signed with).
    pub signing_key: VerifyingKey,
    /// Unix seconds from which `signing_key` signs for the name.
    pub valid_from: u64,
    pub node_uri: String,
    pub redirect_uris: Vec<String>,
    /// Chosen so that blake3(payload) has enough leading zero bits.
    pub pow_nonce: [u8; 8],
}

/// Change a registered name. At least one change must be present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub name: Name,
    /// The name's digest this update was made against (optimistic concurrency, and replay
    /// protection: the digest changes with every accepted operation).
    pub previous_digest: [u8; 32],
    /// A new signing key and the time from which it signs.
    pub new_signing_key: Option<(VerifyingKey, u64)>,
    pub node_uri: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub new_updating_key: Option<VerifyingKey>,
    /// A signing key of this name to mark compromised.
    pub compromised_key: Option<VerifyingKey>,
    /// From when (Unix seconds) its signatures stop counting; `None`: from its first day.
    /// Only with `compromised_key`; encoded as a tenth field only when present, so updates
    /// without it keep their nine-field form.
    pub compromised_since: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Register(Register),
    Update(Update),
}

impl Operation {
    pub fn name(&self) -> &Name {
        match self {
            Operation::Register(r) => &r.name,
            Operation::Update(u) => &u.name,
        }
    }

    /// The canonical payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&self.to_value())
    }

    /// Signs the operation: returns the envelope bytes to submit.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        let payload = self.encode();
        let signature = key.sign(&cbor::signed_message(OP_PREFIX, &payload));
        cbor::envelope(&payload, &signature.to_bytes())
    }

    fn to_value(&self) -> Value {
        let key = |k: &VerifyingKey| Value::Bytes(k.as_bytes().to_vec());
        let uris = |u: &[String]| Value::Array(u.iter().map(|s| Value::Text(s.clone())).collect());
        let opt = |v: Option<Value>| v.unwrap_or(Value::Null);
        match self {
            Operation::Register(r) => Value::Array(vec![
                1u64.into(),
                Value::Text("register".into()),
                Value::Text(r.name.as_str().into()),
                key(&r.updating_key),
                key(&r.signing_key),
                r.valid_from.into(),
                Value::Text(r.node_uri.clone()),
                uris(&r.redirect_uris),
                Value::Bytes(r.pow_nonce.to_vec()),
            ]),
            Operation::Update(u) => {
                let mut fields = vec![
                    1u64.into(),
                    Value::Text("update".into()),
                    Value::Text(u.name.as_str().into()),
                    Value::Bytes(u.previous_digest.to_vec()),
                    opt(u
                        .new_signing_key
                        .map(|(k, t)| Value::Array(vec![key(&k), t.into()]))),
                    opt(u.node_uri.clone().map(Value::Text)),
                    opt(u.redirect_uris.as_deref().map(uris)),
                    opt(u.new_updating_key.as_ref().map(key)),
                    opt(u.compromised_key.as_ref().map(key)),
                ];
                if let Some(since) = u.compromised_since {
                    fields.push(since.into());
                }
                Value::Array(fields)
            }
        }
    }
}

/// An operation as submitted: decoded, with the exact bytes it arrived as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOp {
    pub op: Operation,
    pub payload: Vec<u8>,
    pub signature: Signature,
    /// The envelope bytes, as stored in the log.
    pub bytes: Vec<u8>,
}

impl SignedOp {
    /// Decodes an envelope strictly (canonical CBOR, exact fields, canonical names).
    pub fn decode(bytes: &[u8]) -> Result<SignedOp, RegistryError> {
        if bytes.len() > MAX_OP_BYTES {
            return Err(RegistryError::TooLarge);
        }
        let (payload, signature) = cbor::open_envelope(bytes).map_err(RegistryError::Malformed)?;
        let op = parse(cbor::decode_lax(&payload).map_err(RegistryError::Malformed)?)?;
        if op.encode() != payload {
            return Err(RegistryError::Malformed("operation is not canonical CBOR"));
        }
        Ok(SignedOp {
            op,
            payload,
            signature: Signature::from_bytes(&signature),
            bytes: bytes.to_vec(),
        })
    }

    /// The message the signature covers.
    pub fn signed_message(&self) -> Vec<u8> {
        cbor::signed_message(OP_PREFIX, &self.payload)
    }

    /// Checks the signature against `key` (strict Ed25519).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), RegistryError> {
        key.verify_strict(&self.signed_message(), &self.signature)
            .map_err(|_| RegistryError::BadSignature)
    }
}

fn parse(value: Value) -> Result<Operation, RegistryError> {
    use RegistryError::Malformed;
    let Value::Array(f) = value else {
        return Err(Malformed("operation must be an array"));
    };
    if f.len() < 3 || cbor::uint(&f[0], "").ok() != Some(1) {
        return Err(Malformed("operation must start with version 1"));
    }
    let m = |e: cbor::Malformed| Malformed(e);
    let name_text = cbor::text(&f[2], "name must be text").map_err(m)?;
    let name = Name::parse(&name_text).map_err(RegistryError::NameInvalid)?;
    if name.as_str() != name_text {
        return Err(RegistryError::NameInvalid(
            crate::name::NameError::NotCanonical(name.as_str().to_owned()),
        ));
    }
    match &f[1] {
        Value::Text(kind) if kind == "register" => {
            if f.len() != 9 {
                return Err(Malformed("register has exactly 9 fields"));
            }
            Ok(Operation::Register(Register {
                name,
                updating_key: key(&f[3])?,
                signing_key: key(&f[4])?,
                valid_from: cbor::uint(&f[5], "valid_from must be an unsigned integer")
                    .map_err(m)?,
                node_uri: cbor::text(&f[6], "node_uri must be text").map_err(m)?,
                redirect_uris: uris(&f[7])?,
                pow_nonce: cbor::bytes(&f[8], "pow nonce must be 8 bytes").map_err(m)?,
            }))
        }
        Value::Text(kind) if kind == "update" => {
            if f.len() != 9 && f.len() != 10 {
                return Err(Malformed(
                    "update has 9 fields, or 10 with compromised_since",
                ));
            }
            let new_signing_key = cbor::opt(&f[4], |v| match v {
                Value::Array(pair) if pair.len() == 2 => Ok(pair.clone()),
                _ => Err("new_signing_key must be [key, valid_from]"),
            })
            .map_err(m)?
            .map(|pair| -> Result<_, RegistryError> {
                Ok((
                    key(&pair[0])?,
                    cbor::uint(&pair[1], "valid_from must be an unsigned integer").map_err(m)?,
                ))
            })
            .transpose()?;
            let update = Update {
                name,
                previous_digest: cbor::bytes(&f[3], "previous_digest must be 32 bytes")
                    .map_err(m)?,
                new_signing_key,
                node_uri: cbor::opt(&f[5], |v| cbor::text(v, "node_uri must be text"))
                    .map_err(m)?,
                redirect_uris: match &f[6] {
                    Value::Null => None,
                    v => Some(uris(v)?),
                },
                new_updating_key: opt_key(&f[7])?,
                compromised_key: opt_key(&f[8])?,
                compromised_since: f
                    .get(9)
                    .map(|v| cbor::uint(v, "compromised_since must be an unsigned integer"))
                    .transpose()
                    .map_err(m)?,
            };
            if update.compromised_since.is_some() && update.compromised_key.is_none() {
                return Err(Malformed("compromised_since without compromised_key"));
            }
            if update.new_signing_key.is_none()
                && update.node_uri.is_none()
                && update.redirect_uris.is_none()
                && update.new_updating_key.is_none()
                && update.compromised_key.is_none()
            {
                return Err(Malformed("update changes nothing"));
            }
            Ok(Operation::Update(update))
        }
        _ => Err(Malformed("kind must be \"register\" or \"update\"")),
    }
}

fn key(value: &Value) -> Result<VerifyingKey, RegistryError> {
    let bytes: [u8; 32] =
        cbor::bytes(value, "a key must be 32 bytes").map_err(RegistryError::Malformed)?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| RegistryError::Malformed("a key is not a valid Ed25519 public key"))
}

fn opt_key(value: &Value) -> Result<Option<VerifyingKey>, RegistryError> {
    match value {
        Value::Null => Ok(None),
        v => key(v).map(Some),
    }
}

fn uris(value: &Value) -> Result<Vec<String>, RegistryError> {
    let Value::Array(items) = value else {
        return Err(RegistryError::Malformed("redirect_uris must be an array"));
    };
    items
        .iter()
        .map(|v| cbor::text(v, "a redirect URI must be text").map_err(RegistryError::Malformed))
        .collect()
}

/// The number of leading zero bits of blake3(payload).
pub fn pow_bits(payload: &[u8]) -> u32 {
    let hash = blake3::hash(payload);
    let mut bits = 0;
    for byte in hash.as_bytes() {
        if *byte == 0 {
            bits += 8;
        } else {
            bits += byte.leading_zeros();
            break;
        }
    }
    bits
}

/// Finds a proof-of-work nonce for `register` with at least `difficulty` leading zero bits,
/// calling `progress(attempts)` every 65,536 attempts. The nonce is the last 8 bytes of the
/// payload, so each attempt patches those bytes and hashes, without re-encoding.
pub fn solve_pow(register: &mut Register, difficulty: u32, mut progress: impl FnMut(u64)) {
    register.pow_nonce = [0; 8];
    let mut payload = Operation::Register(register.clone()).encode();
    let at = payload.len() - 8;
    let mut attempt: u64 = 0;
    loop {
        payload[at..].copy_from_slice(&attempt.to_be_bytes());
        if pow_bits(&payload) >= difficulty {
            register.pow_nonce = attempt.to_be_bytes();
            return;
        }
        attempt = attempt.wrapping_add(1);
        if attempt % 65_536 == 0 {
            progress(attempt);
        }
    }
}
