//! What an owner signs about a grant: the **receipt** handed to the application through the
//! redirect, and the **grant-updated notification** posted to the application's node URI.
//!
//! Both are the envelope `[payload, signature]` (see [`crate::cbor`]), base64url-encoded for
//! URLs, signed by the owner's registered signing key under their own domain-separation prefix,
//! so an application verifies them against the registry like any carte.
//!
//! Receipt payload: `[1, "receipt", owner, application, scope, time, state]`.
//! Notification payload: `[1, "grant-updated", owner, application, scope, expires|null, time]`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciborium::Value;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::cbor;
use crate::name::Name;
use crate::scope::Scope;

pub const RECEIPT_PREFIX: &[u8] = b"grant-node receipt v1\0";
pub const NOTIFICATION_PREFIX: &[u8] = b"grant-node notification v1\0";

/// Why a receipt or notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatementError {
    #[error("malformed: {0}")]
    Malformed(&'static str),
    #[error("the signature does not verify with the owner's key")]
    BadSignature,
}

impl StatementError {
    pub fn code(&self) -> &'static str {
        match self {
            StatementError::Malformed(_) => "receipt.malformed",
            StatementError::BadSignature => "receipt.bad-signature",
        }
    }
}

/// An owner's statement that it granted `scope` to `application`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub owner: Name,
    pub application: Name,
    /// The application's whole grant after this approval.
    pub scope: Scope,
    pub time: u64,
    pub state: String,
}

/// An owner's statement that `application`'s grant is now `scope` (empty: revoked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub owner: Name,
    pub application: Name,
    pub scope: Scope,
    pub expires: Option<u64>,
    pub time: u64,
}

impl Receipt {
    fn value(&self) -> Value {
        Value::Array(vec![
            1u64.into(),
            Value::Text("receipt".into()),
            Value::Text(self.owner.as_str().into()),
            Value::Text(self.application.as_str().into()),
            self.scope.bits().into(),
            self.time.into(),
            Value::Text(self.state.clone()),
        ])
    }

    /// Signs and returns the base64url envelope.
    pub fn sign(&self, key: &SigningKey) -> String {
        URL_SAFE_NO_PAD.encode(seal(&self.value(), RECEIPT_PREFIX, key))
    }

    /// Decodes without checking the signature (to learn whose key to fetch).
    pub fn decode(wire: &str) -> Result<(Receipt, Opened), StatementError> {
        let opened = open(wire.as_bytes(), true)?;
        let f = fields(&opened.payload, 7, "receipt")?;
        let m = StatementError::Malformed;
        Ok((
            Receipt {
                owner: name(&f[2])?,
                application: name(&f[3])?,
                scope: Scope::from_bits(cbor::uint(&f[4], "scope must be an integer").map_err(m)?),
                time: cbor::uint(&f[5], "time must be an integer").map_err(m)?,
                state: cbor::text(&f[6], "state must be text").map_err(m)?,
            },
            opened,
        ))
    }

    /// Decodes and verifies against the owner's key.
    pub fn verify(wire: &str, owner_key: &VerifyingKey) -> Result<Receipt, StatementError> {
        let (receipt, opened) = Receipt::decode(wire)?;
        opened.check(RECEIPT_PREFIX, owner_key)?;
        Ok(receipt)
    }
}

impl Notification {
    fn value(&self) -> Value {
        Value::Array(vec![
            1u64.into(),
            Value::Text("grant-updated".into()),
            Value::Text(self.owner.as_str().into()),
            Value::Text(self.application.as_str().into()),
            self.scope.bits().into(),
            self.expires.map(Value::from).unwrap_or(Value::Null),
            self.time.into(),
        ])
    }

    /// Signs and returns the raw envelope bytes (posted as `application/cbor`).
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        seal(&self.value(), NOTIFICATION_PREFIX, key)
    }

    pub fn decode(bytes: &[u8]) -> Result<(Notification, Opened), StatementError> {
        let opened = open(bytes, false)?;
        let f = fields(&opened.payload, 7, "grant-updated")?;
        let m = StatementError::Malformed;
        Ok((
            Notification {
                owner: name(&f[2])?,
                application: name(&f[3])?,
                scope: Scope::from_bits(cbor::uint(&f[4], "scope must be an integer").map_err(m)?),
                expires: cbor::opt(&f[5], |v| cbor::uint(v, "expires must be an integer"))
                    .map_err(m)?,
                time: cbor::uint(&f[6], "time must be an integer").map_err(m)?,
            },
            opened,
        ))
    }

    pub fn verify(bytes: &[u8], owner_key: &VerifyingKey) -> Result<Notification, StatementError> {
        let (n, opened) = Notification::decode(bytes)?;
        opened.check(NOTIFICATION_PREFIX, owner_key)?;
        Ok(n)
    }
}

/// An opened envelope whose signature is still to be checked.
#[derive(Debug, Clone)]
pub struct Opened {
    payload: Vec<u8>,
    signature: Signature,
}

impl Opened {
    fn check(&self, prefix: &[u8], key: &VerifyingKey) -> Result<(), StatementError> {
        key.verify_strict(
            &cbor::signed_message(prefix, &self.payload),
            &self.signature,
        )
        .map_err(|_| StatementError::BadSignature)
    }
}

fn seal(value: &Value, prefix: &[u8], key: &SigningKey) -> Vec<u8> {
    let payload = cbor::encode(value);
    let sig = key.sign(&cbor::signed_message(prefix, &payload));
    cbor::envelope(&payload, &sig.to_bytes())
}

fn open(input: &[u8], base64: bool) -> Result<Opened, StatementError> {
    if input.len() > 8192 {
        return Err(StatementError::Malformed("larger than 8192 bytes"));
    }
    let bytes = if base64 {
        URL_SAFE_NO_PAD
            .decode(input)
            .map_err(|_| StatementError::Malformed("not unpadded base64url"))?
    } else {
        input.to_vec()
    };
    let (payload, sig) = cbor::open_envelope(&bytes).map_err(StatementError::Malformed)?;
    Ok(Opened {
        payload,
        signature: Signature::from_bytes(&sig),
    })
}

fn fields(payload: &[u8], n: usize, kind: &str) -> Result<Vec<Value>, StatementError> {
    let m = StatementError::Malformed;
    let f = cbor::array(
        cbor::decode_canonical(payload).map_err(m)?,
        n,
        "wrong number of fields",
    )
    .map_err(m)?;
    if cbor::uint(&f[0], "").ok() != Some(1) || f[1] != Value::Text(kind.into()) {
        return Err(m("wrong version or kind"));
    }
    Ok(f)
}

fn name(v: &Value) -> Result<Name, StatementError> {
    let t = cbor::text(v, "a name must be text").map_err(StatementError::Malformed)?;
    Name::parse_canonical(&t).map_err(|_| StatementError::Malformed("a name is not canonical"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            owner: Name::parse("alice").unwrap(),
            application: Name::parse("app").unwrap(),
            scope: Scope::from_bits(0x80000),
            time: 1000,
            state: "xyz".into(),
        }
    }

    #[test]
    fn receipt_round_trips_and_is_bound_to_the_key() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let wire = receipt().sign(&key);
        assert_eq!(
            Receipt::verify(&wire, &key.verifying_key()).unwrap(),
            receipt()
        );
        let other = SigningKey::from_bytes(&[2; 32]).verifying_key();
        assert_eq!(
            Receipt::verify(&wire, &other).unwrap_err().code(),
            "receipt.bad-signature"
        );
    }

    #[test]
    fn a_receipt_is_not_a_notification() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let wire = receipt().sign(&key);
        let bytes = URL_SAFE_NO_PAD.decode(wire).unwrap();
        assert!(Notification::verify(&bytes, &key.verifying_key()).is_err());
    }
}
